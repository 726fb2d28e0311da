"""Shrinkers: caches outside the LRU that reclaim asks to give memory back (mm/vmscan.c
shrink_slab / do_shrink_slab, Linux 6.1; mm/shrinker.c from 6.7, same arithmetic).

A cache registers a `Shrinker` with `count_objects(sc)` (objects it could free, or
SHRINK_EMPTY) and `scan_objects(sc)` (free up to sc.nr_to_scan, return how many, or
SHRINK_STOP). Reclaim calls `shrink_slab(gfp, nid, priority)` once per node pass, which
calls every shrinker's do_shrink_slab:

    freeable    = count_objects()                       (0 or SHRINK_EMPTY: skip)
    nr          = nr_deferred, taken (xchg_nr_deferred)
    delta       = (freeable >> priority) * 4 / seeks    (seeks 0: freeable / 2)
    total_scan  = min((nr >> priority) + delta, 2 * freeable)
    while total_scan >= batch or total_scan >= freeable:
        scan min(batch, total_scan) objects             (batch: shrinker's, else 128)
        slabs_scanned += nr_scanned; total_scan -= nr_scanned
    nr_deferred += min(max(nr + delta - scanned, 0), 2 * freeable)

The objects freed go back to their slab caches; the slab pages that frees are what reclaim
counts (reclaim_state->reclaimed_slab: slab.reclaimed_slab).

Memory cgroups (6.1 CONFIG_MEMCG): `shrink_slab(gfp, nid, priority, kswapd, memcg)`.
For the root memcg (or a guest without child memcgs: memcg None) every shrinker runs with
the root's lists; for a child memcg only shrink_slab_memcg: the SHRINKER_MEMCG_AWARE
shrinkers whose bit is set in the memcg's shrinker_info map (set_shrinker_bit when one of
its list_lrus gets its first item; cleared when do_shrink_slab finds it SHRINK_EMPTY, and
set again if a second call finds items), in shrinker id order, each with sc.memcg and the
memcg's own nr_deferred (shrinker_info->nr_deferred). An offline memcg is not shrunk;
its nr_deferred goes to its parent at rmdir (reparent_shrinker_deferred). The root's
nr_deferred stays in the shrinker (the kernel keeps a memcg-aware shrinker's in the
root's shrinker_info: the same count, only ever used for the root). hvsim's list_lrus
have one node: shrinker_info is kept per memcg, not per memcg and node.
"""

from __future__ import annotations

from collections.abc import Callable

SHRINK_BATCH = 128  # objects per scan_objects call unless the shrinker sets its own
DEFAULT_SEEKS = 2  # a typical object costs a seek to recreate
SHRINK_STOP = -1  # scan_objects: cannot make progress now (~0UL)
SHRINK_EMPTY = -2  # count_objects: nothing cached ((~0UL) - 1)
SHRINKER_NUMA_AWARE = 1 << 1
SHRINKER_MEMCG_AWARE = 1 << 2  # counts and scans sc->memcg's list_lrus (has an id)


class ShrinkControl:
    """struct shrink_control."""

    __slots__ = ("gfp_mask", "nid", "nr_to_scan", "nr_scanned", "kswapd", "memcg")

    def __init__(self, gfp_mask: int, nid: int = 0, kswapd: bool = False,
                 memcg=None) -> None:
        self.gfp_mask = gfp_mask
        self.nid = nid
        self.memcg = memcg  # the memcg whose lists to count and scan (None: the root)
        self.nr_to_scan = 0  # objects to scan in this call
        self.nr_scanned = 0  # objects scanned (scan_objects may lower it)
        self.kswapd = kswapd  # current_is_kswapd()


class Shrinker:
    """struct shrinker."""

    def __init__(self, name: str, count_objects: Callable[[ShrinkControl], int],
                 scan_objects: Callable[[ShrinkControl], int], seeks: int = DEFAULT_SEEKS,
                 batch: int = 0, flags: int = 0) -> None:
        self.name = name
        self.flags = flags  # SHRINKER_MEMCG_AWARE, SHRINKER_NUMA_AWARE
        self.id = -1  # shrinker_idr id (memcg-aware shrinkers only)
        self.count_objects = count_objects
        self.scan_objects = scan_objects
        self.seeks = seeks
        self.batch = batch  # 0: SHRINK_BATCH
        self.nr_deferred = 0  # scan work left over from earlier calls (one node here)

    def __repr__(self) -> str:
        return f"<Shrinker {self.name} seeks={self.seeks} batch={self.batch or SHRINK_BATCH}>"


class ShrinkerInfo:
    """struct shrinker_info of one memcg: map (the ids of the memcg-aware shrinkers that
    may have objects of it) and nr_deferred (per shrinker id)."""

    __slots__ = ("map", "nr_deferred")

    def __init__(self) -> None:
        self.map: set[int] = set()
        self.nr_deferred: dict[int, int] = {}


class ShrinkerList:
    """The kernel's shrinker_list, shrinker_idr and the memcgs' shrinker_info."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.shrinkers: list[Shrinker] = []
        self.shrinker_idr: dict[int, Shrinker] = {}
        self.info: dict = {}  # memcg -> ShrinkerInfo (memcg->nodeinfo[nid]->shrinker_info)
        self.list_lrus: list = []  # list_lru.c's memcg_list_lrus
        kernel.vmstat.setdefault("slabs_scanned", 0)

    def register_shrinker(self, shrinker: Shrinker) -> None:
        if shrinker.flags & SHRINKER_MEMCG_AWARE:
            # prealloc_memcg_shrinker: idr_alloc, the lowest free id
            i = 0
            while i in self.shrinker_idr:
                i += 1
            shrinker.id = i
            self.shrinker_idr[i] = shrinker
        self.shrinkers.append(shrinker)

    def unregister_shrinker(self, shrinker: Shrinker) -> None:
        self.shrinkers.remove(shrinker)
        if shrinker.id >= 0:
            del self.shrinker_idr[shrinker.id]
            shrinker.id = -1

    def shrinker_info(self, memcg) -> ShrinkerInfo:
        """shrinker_info_protected(memcg, nid) (alloc_shrinker_info at online)."""
        info = self.info.get(memcg)
        if info is None:
            info = self.info[memcg] = ShrinkerInfo()
        return info

    def set_shrinker_bit(self, memcg, shrinker_id: int) -> None:
        """set_shrinker_bit: a memcg-aware list_lru of `memcg` got its first item."""
        if shrinker_id >= 0 and memcg is not None and memcg.parent is not None:
            self.shrinker_info(memcg).map.add(shrinker_id)

    def reparent_shrinker_deferred(self, memcg, parent) -> None:
        """reparent_shrinker_deferred (mem_cgroup_css_offline): the memcg's nr_deferred of
        each shrinker added to the parent's (the shrinker's own for the root)."""
        info = self.info.pop(memcg, None)
        if info is None:
            return
        for i, nr in info.nr_deferred.items():
            shrinker = self.shrinker_idr.get(i)
            if not nr or shrinker is None:
                continue
            if parent.parent is None:
                shrinker.nr_deferred += nr
            else:
                d = self.shrinker_info(parent).nr_deferred
                d[i] = d.get(i, 0) + nr

    def do_shrink_slab(self, sc: ShrinkControl, shrinker: Shrinker, priority: int) -> int:
        """One shrinker's share of a reclaim pass; objects freed (or SHRINK_EMPTY)."""
        batch_size = shrinker.batch or SHRINK_BATCH
        freeable = shrinker.count_objects(sc)
        if freeable == 0 or freeable == SHRINK_EMPTY:
            return freeable
        memcg = sc.memcg
        if memcg is not None and memcg.parent is not None and shrinker.flags & SHRINKER_MEMCG_AWARE:
            deferred = self.shrinker_info(memcg).nr_deferred  # xchg_nr_deferred_memcg
            nr = deferred.get(shrinker.id, 0)
            deferred[shrinker.id] = 0
        else:
            deferred = None
            nr = shrinker.nr_deferred
            shrinker.nr_deferred = 0
        if shrinker.seeks:
            delta = (freeable >> priority) * 4 // shrinker.seeks
        else:
            delta = freeable // 2
        total_scan = min((nr >> priority) + delta, 2 * freeable)
        freed = scanned = 0
        vm = self.kernel.vmstat
        while total_scan >= batch_size or total_scan >= freeable:
            nr_to_scan = min(batch_size, total_scan)
            sc.nr_to_scan = nr_to_scan
            sc.nr_scanned = nr_to_scan
            ret = shrinker.scan_objects(sc)
            if ret == SHRINK_STOP:
                break
            freed += ret
            vm["slabs_scanned"] += sc.nr_scanned
            total_scan -= sc.nr_scanned
            scanned += sc.nr_scanned
            if not nr_to_scan:
                break  # (total_scan 0 with freeable 0 cannot happen: freeable > 0 here)
        next_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
        if deferred is None:
            shrinker.nr_deferred += next_deferred
        else:
            deferred[shrinker.id] = deferred.get(shrinker.id, 0) + next_deferred
        return freed

    def shrink_slab(self, gfp: int, nid: int, priority: int, kswapd: bool = False,
                    memcg=None) -> int:
        """shrink_slab(gfp, nid, memcg, priority): for a child memcg shrink_slab_memcg;
        for the root (None: no child memcgs) every registered shrinker once, with the
        root's lists; objects freed."""
        if memcg is not None and memcg.parent is not None:
            return self.shrink_slab_memcg(gfp, nid, memcg, priority, kswapd)
        freed = 0
        for shrinker in list(self.shrinkers):
            sc = ShrinkControl(gfp, nid, kswapd, memcg)
            ret = self.do_shrink_slab(sc, shrinker, priority)
            if ret == SHRINK_EMPTY:
                ret = 0
            freed += ret
        return freed

    def shrink_slab_memcg(self, gfp: int, nid: int, memcg, priority: int,
                          kswapd: bool = False) -> int:
        """shrink_slab_memcg: the memcg-aware shrinkers set in the memcg's shrinker_info
        map, in id order; a SHRINK_EMPTY one has its bit cleared, then is called once more
        and its bit set again if it has objects after all. An offline memcg: nothing."""
        if not memcg.online:
            return 0
        info = self.info.get(memcg)
        if info is None:
            return 0
        freed = 0
        for i in sorted(info.map):
            shrinker = self.shrinker_idr.get(i)
            if shrinker is None:
                info.map.discard(i)
                continue
            sc = ShrinkControl(gfp, nid, kswapd, memcg)
            ret = self.do_shrink_slab(sc, shrinker, priority)
            if ret == SHRINK_EMPTY:
                info.map.discard(i)
                ret = self.do_shrink_slab(sc, shrinker, priority)
                if ret == SHRINK_EMPTY:
                    ret = 0
                else:
                    self.set_shrinker_bit(memcg, i)
            freed += ret
        return freed

    def drop_slab(self, gfp: int) -> int:
        """drop_slab_node (echo 2 > drop_caches): rounds of shrink_slab at priority 0, each
        over every memcg (mem_cgroup_iter from the root, pre-order), while
        (freed >> shift++) > 1; objects freed."""
        total = 0
        shift = 0
        tree = getattr(self.kernel, "memcgs", None)
        while True:
            if tree is None or not tree.active:
                freed = self.shrink_slab(gfp, 0, 0)
            else:
                freed = 0
                for memcg in list(tree.root.iter()):
                    freed += self.shrink_slab(gfp, 0, 0, False, memcg)
            total += freed
            if (freed >> shift) <= 1:
                return total
            shift += 1
