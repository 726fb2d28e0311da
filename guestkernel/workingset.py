"""Workingset detection: shadow entries and refault distances (mm/workingset.c, Linux 6.1
without MGLRU; the 2.6 era has none of it: it came in 3.15).

Overview
--------
Every node's `Lruvec` keeps `nonresident_age`, a counter of the LRU's aging: it grows by
one for every page evicted from the inactive lists and every page activated
(folio_mark_accessed's second touch, a page put back on the active list by reclaim, a
refault that is activated). On eviction (`__remove_mapping` from shrink_folio_list) a
page-cache page leaves a *shadow entry* in its slot of the mapping and a swap-cache page one
in its slot of the swap cache: the counter at eviction (shifted right by `bucket_order`),
the node, and whether the page was PG_workingset (active before it was deactivated), packed
into one integer as pack_shadow does:

    shadow = ((((eviction & EVICTION_MASK) << MEM_CGROUP_ID_SHIFT | memcgid)
               << NODES_SHIFT | nid) << WORKINGSET_SHIFT) | workingset

When the page is read back (`filemap_add_folio`, `__read_swap_cache_async`) and its slot
holds a shadow, `workingset_refault` measures the refault distance
`(nonresident_age - eviction) & EVICTION_MASK`: the pages the LRU aged by while this one
was out. It counts workingset_refault_{anon,file}; if the distance is at most the workingset
size (the eviction lruvec's active file pages; plus its inactive file pages for an anon
refault; plus active anon, and inactive anon for a file refault, when swap has free slots)
the page starts on the active list (workingset_activate_*, the age advances), and if it was
PG_workingset it is marked so again, counted as workingset_restore_* and charged to its
type's reclaim cost (lru_note_cost). A write (__GFP_WRITE) that recreates a page drops its
shadow without a refault.

Shadows cost the simulator memory only for evicted pages: one dict entry per shadow. The
xarray's nodes (64 slots, XA_CHUNK_SHIFT 6) that hold only shadow entries are tracked as
Linux's `shadow_nodes` list_lru (workingset_update_node: a node joins when its last page
leaves and a shadow is in it, leaves when a page enters or its last shadow goes), counted
in workingset_nodes; the "mm-shadow" shrinker (count_shadow_nodes, seeks 0) lets at most
one such node per 8 pages of the node's LRU and slab (pages >> (XA_CHUNK_SHIFT - 3)) live
and frees the oldest beyond that with all their shadows (workingset_nodereclaim).
Truncation and invalidation (POSIX_FADV_DONTNEED, drop_caches) remove the shadows of the
range, as does freeing a swap slot (clear_shadow_from_swap_cache).

`bucket_order` (workingset_init): the eviction counter has BITS_PER_LONG - EVICTION_SHIFT
bits; if totalram_pages needs more (max_order = fls(totalram - 1)), evictions are grouped
in buckets of 2**(max_order - timestamp_bits). x86-64 (NODES_SHIFT 6): 40 bits, never
bucketed; i386 (32-bit, NODES_SHIFT 0): 14 bits, so a 2 GiB guest has bucket_order 5.
"""

from __future__ import annotations

from .page import PG_active, PG_swapbacked, PG_workingset
from .shrinker import SHRINK_EMPTY, Shrinker

WORKINGSET_SHIFT = 1
MEM_CGROUP_ID_SHIFT = 16
XA_CHUNK_SHIFT = 6  # 64 slots per xarray node
NODES_SHIFT = {"x86_64": 6, "i386": 0}  # CONFIG_NODES_SHIFT (x86-64 default; i386 without NUMA)
BITS_PER_LONG = {"x86_64": 64, "i386": 32}

WORKINGSET_VMSTAT = (
    "workingset_nodes", "workingset_refault_anon", "workingset_refault_file",
    "workingset_activate_anon", "workingset_activate_file", "workingset_restore_anon",
    "workingset_restore_file", "workingset_nodereclaim",
)


class ShadowSlots:
    """The shadow entries of one xarray (a file's mapping, or the swap cache): index ->
    packed shadow, and per xarray node how many shadows it holds. `pages` is the dict of
    the same xarray's pages (index -> Page)."""

    __slots__ = ("pages", "shadows", "count")

    def __init__(self, pages: dict) -> None:
        self.pages = pages
        self.shadows: dict[int, int] = {}
        self.count: dict[int, int] = {}  # xarray node (index >> 6) -> shadows in it

    def node_has_page(self, node: int, hint: int | None = None) -> bool:
        """Does the xarray node hold a page? `hint`: the index that just changed; the
        search starts after it (reclaim evicts a file's pages in order, so the next
        index is the likely one)."""
        pages = self.pages
        base = node << XA_CHUNK_SHIFT
        end = base + (1 << XA_CHUNK_SHIFT)
        if hint is not None:
            for i in range(hint + 1, end):
                if i in pages:
                    return True
            end = hint + 1
        for i in range(base, end):
            if i in pages:
                return True
        return False


class Workingset:
    """Workingset detection for one guest kernel (installed by vmscan.init_reclaim)."""

    def __init__(self, kernel, reclaim) -> None:
        self.kernel = kernel
        self.reclaim = reclaim
        self.vmstat = vm = kernel.vmstat
        for name in WORKINGSET_VMSTAT:
            vm.setdefault(name, 0)
        arch = kernel.config.arch
        self.nodes_shift = NODES_SHIFT[arch]
        bits = BITS_PER_LONG[arch]
        bits_per_xa_value = bits - 1
        eviction_shift = (bits - bits_per_xa_value) + WORKINGSET_SHIFT + self.nodes_shift \
            + MEM_CGROUP_ID_SHIFT
        self.timestamp_bits = bits - eviction_shift
        self.eviction_mask = (1 << self.timestamp_bits) - 1
        max_order = (kernel.page_alloc.totalram_pages() - 1).bit_length()
        self.bucket_order = max(max_order - self.timestamp_bits, 0)
        # shadow_nodes (list_lru): (id(slots), node) -> slots, oldest first
        self.shadow_nodes: dict[tuple[int, int], ShadowSlots] = {}
        self.shrinker = None
        shrinkers = getattr(kernel, "shrinkers", None)
        if shrinkers is not None:
            self.shrinker = Shrinker("mm-shadow", self.count_shadow_nodes,
                                     self.scan_shadow_nodes, seeks=0)
            shrinkers.register_shrinker(self.shrinker)

    @staticmethod
    def new_slots(pages: dict) -> ShadowSlots:
        return ShadowSlots(pages)

    # ------------------------------------------------------------------ packing
    def pack_shadow(self, nid: int, eviction: int, workingset: bool, memcgid: int = 0) -> int:
        eviction &= self.eviction_mask
        eviction = (eviction << MEM_CGROUP_ID_SHIFT) | memcgid  # id 0: the root memcg
        eviction = (eviction << self.nodes_shift) | nid
        return (eviction << WORKINGSET_SHIFT) | int(workingset)

    def unpack_shadow(self, shadow: int) -> tuple[int, int, bool]:
        """(nid, eviction, workingset)"""
        workingset = bool(shadow & 1)
        shadow >>= WORKINGSET_SHIFT
        nid = shadow & ((1 << self.nodes_shift) - 1)
        shadow >>= self.nodes_shift
        shadow >>= MEM_CGROUP_ID_SHIFT
        return nid, shadow, workingset

    # ------------------------------------------------------------------ aging
    @staticmethod
    def age_nonresident(lv, nr: int = 1) -> None:
        """workingset_age_nonresident"""
        lv.nonresident_age += nr

    def eviction(self, page, lv, nr: int = 1) -> int:
        """workingset_eviction: the shadow entry for a folio of `nr` pages reclaim is
        about to free (workingset_age_nonresident by folio_nr_pages: the lruvec and its
        parent memcgs' lruvecs of the node), with the memcg's id (0: the root)."""
        eviction = lv.nonresident_age >> self.bucket_order
        m = lv.memcg
        if m is None or m.parent is None:
            lv.nonresident_age += nr
            return self.pack_shadow(lv.node.nid, eviction, bool(page.flags & PG_workingset))
        self.age_lruvec_parents(lv, nr)
        return self.pack_shadow(lv.node.nid, eviction, bool(page.flags & PG_workingset), m.id)

    @staticmethod
    def age_lruvec_parents(lv, nr: int) -> None:
        """workingset_age_nonresident: `lv` and every parent memcg's lruvec of its node."""
        m = lv.memcg
        nid = lv.node.nid
        lv.nonresident_age += nr
        m = m.parent if m is not None else None
        while m is not None:
            m.lruvec(nid).nonresident_age += nr
            m = m.parent

    def refault(self, page, shadow: int) -> None:
        """workingset_refault: a page read back into a slot that held `shadow`, not yet on
        the LRU. Counts the refault; sets PG_active (and PG_workingset) if it is one."""
        r = self.reclaim
        vm = self.vmstat
        file = not page.flags & PG_swapbacked
        nid, eviction, workingset = self.unpack_shadow(shadow)
        eviction <<= self.bucket_order
        lvs = r.lruvecs
        eviction_lv = lvs[nid] if nid < len(lvs) else lvs[0]
        memcgid = (shadow >> (WORKINGSET_SHIFT + self.nodes_shift)) & ((1 << MEM_CGROUP_ID_SHIFT) - 1)
        if memcgid:
            # the eviction memcg's lruvec (mem_cgroup_from_id; gone: the root's)
            em = r.memcgs.by_id.get(memcgid)
            if em is not None and em.online:
                eviction_lv = em.lruvec(nid)
        refault_distance = (eviction_lv.nonresident_age - eviction) & self.eviction_mask
        lv = r.lruvec_of(page)
        key = "workingset_refault_file" if file else "workingset_refault_anon"
        vm[key] += 1
        if lv.memcg is not None and lv.memcg.parent is not None:
            lv.memcg.workingset_refault[key] += 1  # the memcg's own (v1 memory.stat)
        mc = r.memcg
        mc.rstat_updated(1)  # mod_lruvec_state(WORKINGSET_REFAULT_*)
        # the eviction lruvec's sizes as lruvec_page_state reads them, after 6.1's
        # mem_cgroup_flush_stats_delayed (6.8+ workingset_test_recent's
        # mem_cgroup_flush_stats_ratelimited): flushed values, up to a periodic flush's
        # interval old; LRU indices: 0 inactive_anon, 1 active_anon, 2 inactive_file,
        # 3 active_file
        mc.workingset_refault_flush()
        sizes = eviction_lv.stat
        if sizes is None:  # a child memcg's lruvec: its own lists (its statistics exact)
            sizes = [lst.nr for lst in eviction_lv.lists]
        workingset_size = sizes[3]
        if not file:
            workingset_size += sizes[2]
        if r.swap.free_swap_pages() > 0:
            workingset_size += sizes[1]
            if file:
                workingset_size += sizes[0]
        if refault_distance > workingset_size:
            return
        page.flags |= PG_active
        if lv.memcg is None or lv.memcg.parent is None:
            lv.nonresident_age += 1
        else:
            self.age_lruvec_parents(lv, 1)  # workingset_age_nonresident
        lv.activate[file] += 1
        vm["workingset_activate_file" if file else "workingset_activate_anon"] += 1
        mc.rstat_updated(1)  # WORKINGSET_ACTIVATE_*
        if workingset:
            page.flags |= PG_workingset
            r.lru_note_cost(lv, file, 1)  # lru_note_cost_folio (6.1)
            vm["workingset_restore_file" if file else "workingset_restore_anon"] += 1
            mc.rstat_updated(1)  # WORKINGSET_RESTORE_*

    # ------------------------------------------------------------------ shadow slots
    def store_shadow(self, slots: ShadowSlots, index: int, shadow: int) -> None:
        """The page at `index` has left `slots.pages` (already deleted) and `shadow` takes
        its slot (workingset_update_node)."""
        old = slots.shadows.get(index)
        slots.shadows[index] = shadow
        node = index >> XA_CHUNK_SHIFT
        if old is None:
            slots.count[node] = slots.count.get(node, 0) + 1
        key = (id(slots), node)
        if key not in self.shadow_nodes and not slots.node_has_page(node, index):
            self.shadow_nodes[key] = slots
            self.vmstat["workingset_nodes"] += 1

    def page_removed(self, slots: ShadowSlots, index: int) -> None:
        """A page left its slot without a shadow (truncation, invalidation): its node may
        now hold only shadows."""
        node = index >> XA_CHUNK_SHIFT
        if not slots.count.get(node):
            return
        key = (id(slots), node)
        if key not in self.shadow_nodes and not slots.node_has_page(node, index):
            self.shadow_nodes[key] = slots
            self.vmstat["workingset_nodes"] += 1

    def take_shadow(self, slots: ShadowSlots, index: int) -> int | None:
        """A page is being inserted at `index`: its node holds a page again; returns the
        slot's shadow (removed) or None."""
        node = index >> XA_CHUNK_SHIFT
        key = (id(slots), node)
        if key in self.shadow_nodes:
            del self.shadow_nodes[key]
            self.vmstat["workingset_nodes"] -= 1
        shadow = slots.shadows.pop(index, None)
        if shadow is not None:
            self._uncount(slots, node)
        return shadow

    def clear_shadow(self, slots: ShadowSlots, index: int) -> None:
        """clear_shadow_entry / clear_shadow_from_swap_cache."""
        if slots.shadows.pop(index, None) is None:
            return
        node = index >> XA_CHUNK_SHIFT
        self._uncount(slots, node)
        if not slots.count.get(node):
            key = (id(slots), node)
            if key in self.shadow_nodes:
                del self.shadow_nodes[key]
                self.vmstat["workingset_nodes"] -= 1

    def clear_range(self, slots: ShadowSlots, start: int, end: int | None = None) -> None:
        """Remove the shadows with start <= index (< end)."""
        for i in [i for i in slots.shadows if i >= start and (end is None or i < end)]:
            self.clear_shadow(slots, i)

    @staticmethod
    def _uncount(slots: ShadowSlots, node: int) -> None:
        n = slots.count[node] - 1
        if n:
            slots.count[node] = n
        else:
            del slots.count[node]

    # ------------------------------------------------------------------ the shrinker
    def count_shadow_nodes(self, sc) -> int:
        """count_shadow_nodes (CONFIG_MEMCG): nodes beyond one per 8 pages of the node's LRU
        lists and slab."""
        nodes = len(self.shadow_nodes)
        if not nodes:
            return SHRINK_EMPTY
        r = self.reclaim
        vm = self.vmstat
        pages = sum(lv.nr_pages() + lv.lists[4].nr for lv in r.all_lruvecs())
        pages += vm.get("nr_slab_reclaimable", 0) + vm.get("nr_slab_unreclaimable", 0)
        max_nodes = pages >> (XA_CHUNK_SHIFT - 3)
        if nodes <= max_nodes:
            return 0
        return nodes - max_nodes

    def scan_shadow_nodes(self, sc) -> int:
        """shadow_lru_isolate over the oldest nr_to_scan nodes: each is deleted with its
        shadows (xa_delete_node), counted in workingset_nodereclaim."""
        freed = 0
        vm = self.vmstat
        for key in list(self.shadow_nodes)[: sc.nr_to_scan]:
            slots = self.shadow_nodes.pop(key)
            vm["workingset_nodes"] -= 1
            node = key[1]
            base = node << XA_CHUNK_SHIFT
            shadows = slots.shadows
            for i in range(base, base + (1 << XA_CHUNK_SHIFT)):
                shadows.pop(i, None)
            slots.count.pop(node, None)
            vm["workingset_nodereclaim"] += 1
            freed += 1
        return freed

    def validate(self) -> None:
        """Every node listed holds shadows and no page; counts match the shadows."""
        for (_, node), slots in self.shadow_nodes.items():
            assert slots.count.get(node), f"workingset: shadow node {node} holds no shadow"
            assert not slots.node_has_page(node), f"workingset: shadow node {node} holds a page"
        assert self.vmstat["workingset_nodes"] == len(self.shadow_nodes)
