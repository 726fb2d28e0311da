"""The guest swap device, swap entries, the swap cache and swap-in (mm/swapfile.c,
mm/swap_state.c, mm/page_io.c).

Overview
--------
One swap area per guest (`KernelConfig.swap` bytes, /proc/swaps shows it as the partition
/dev/vda2, priority -2). Like Linux, slot 0 holds the swap header, so an area of N pages
offers N - 1 slots: a 512 MiB area shows 524284 KiB in /proc/swaps and SwapTotal.

- `swap_map[offset]` counts the references to a slot: one per swap PTE (swap_duplicate on
  unmap and fork, swap_free on swap-in and zap) plus the SWAP_HAS_CACHE bit while a page
  of the swap cache stands for it. A slot whose count and bit are both clear is free.
- Slots are handed out next-fit from `cluster_next` (scan_swap_map_slots without clusters),
  so a burst of swap-outs lands on consecutive slots and swap-in readahead finds neighbours.
  A non-rotational device (`swap_rotational = false`: SWP_SOLIDSTATE) has swap clusters
  of 512 slots (cluster_info, free_clusters): order-0 slots come from the CPU's cluster
  (scan_swap_map_try_ssd_cluster) and a THP takes a wholly free one (swap_alloc_cluster).
- A swap entry is an int `type << SWP_TYPE_SHIFT | offset`; pgtable.py puts it in a
  non-present PTE (swp_entry_to_pte).
- The swap cache maps entry -> page. A page in it has PG_swapcache, its entry in
  `page.private`, and one reference held by the cache (like the page cache's).
- Page contents survive: writing a slot stores `phys.load(pfn)` (a bytes object; identical
  contents share one object across slots), swap-in writes them back with `phys.store`.
  Swap-out never calls `phys.release`: the frame simply goes back to the buddy allocator.

Swap-in (`swapin`, installed as kernel.swapin_hook): a swap-cache hit is a minor fault; a
miss reads the aligned window of 2**page_cluster slots around the entry in one request
(swap_cluster_readahead), the neighbours counted in swap_ra. Every page read goes to the
inactive list in the 6.x era (6.1 __read_swap_cache_async -> folio_add_lru; the faulting
page starts on the active list only when its shadow entry's refault distance makes it a
workingset refault, workingset.py); in the 2.6 era the faulting page, anonymous again,
goes to the active list like every new anonymous page (the course's arc 1) and the
neighbours to the inactive list (2.6.20's read_swap_cache_async put every page it read on
the active list: hvsim does not follow it for the neighbours). The request costs device latency + bytes / bandwidth,
queued behind writes still in flight on the device. After mapping, the slot is freed
from the cache (should_try_to_free_swap) when swap is at least half full, the VMA is
mlocked, or the fault is an exclusive write; the page is then dirty (its only copy).

shmem (tmpfs, memfd, SysV segments): reclaim's `shmem_writepage` moves a dirty, unmapped
shmem page from its mapping to the swap cache, the mapping keeping the swap entry and a
reference on the slot; `shmem_swapin` reads it back (the same cluster readahead) into the
mapping, dirty, and frees the slot; `shmem_free_swap` drops the entries of a truncated
range (shmem_undo_range).

Counters: pswpin, pswpout, swap_ra, nr_swapcached (vmstat; swap-cache pages also count in
nr_file_pages, as in Linux, so /proc/meminfo's Cached excludes them); SwapTotal/SwapFree/
SwapCached.
"""

from __future__ import annotations

from collections import deque

from . import gfp as G
from .blk import REQ_OP_READ, blk_finish_plug, blk_flush_plug, blk_start_plug
from .filemap import free_user_page
from .page import PG_anon, PG_dirty, PG_swapbacked, PG_swapcache, PG_thpfile, PG_writeback
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import VM_LOCKED
from .vmstat import page_restate

SWAP_HAS_CACHE = 0x40  # swap_map flag: a swap-cache page stands for the slot
SWAP_MAP_BAD = 0x3F  # the header slot (and bad blocks): never handed out
SWAPFILE_CLUSTER = 512  # slots per swap cluster (HPAGE_PMD_NR with CONFIG_THP_SWAP)
SWP_TYPE_SHIFT = 32
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1
# do_swap_page's swapin_readahead(entry, GFP_HIGHUSER_MOVABLE): the faulting page and its
# readahead neighbours alike (6.1 __read_swap_cache_async allocates each page of the
# window with the caller's gfp_mask, so a neighbour may enter direct reclaim; 2.6.20's
# read_swap_cache_async: alloc_page_vma(GFP_HIGHUSER))
GFP_SWAPIN = G.GFP_HIGHUSER_MOVABLE
SWAP_DEVICE_NAME = "/dev/vda2"
SWAP_PRIORITY = -2  # swapon without -p: the first area gets -2 (6.x)

SWAP_VMSTAT = ("pswpin", "pswpout", "swap_ra", "nr_swapcached")


def swp_entry(type_: int, offset: int) -> int:
    return (type_ << SWP_TYPE_SHIFT) | offset


def swp_type(entry: int) -> int:
    return entry >> SWP_TYPE_SHIFT


def swp_offset(entry: int) -> int:
    return entry & SWP_OFFSET_MASK


# The guest disk's request queue (virtio-blk under blk-mq, 6.1): queue_depth is the
# virtqueue's size, 128 here (/sys/block/vda/mq/0/nr_tags on this machine's virtio disk);
# with an I/O scheduler (mq-deadline) blk_mq_init_sched gives nr_requests = 2 *
# min(queue_depth, BLKDEV_DEFAULT_RQ 128) = 256 (this machine's
# /sys/block/vda/queue/nr_requests reads 256). 2.6.20: BLKDEV_MAX_RQ = 128.
NR_REQUESTS = {"6.x": 256, "2.6": 128}
# the largest request, KiB: 6.1 BLK_DEF_MAX_SECTORS 2560 sectors (this 6.18 kernel reads
# 4096 KiB: a later default); 2.6.20 BLK_DEF_MAX_SECTORS 1024
MAX_SECTORS_KB = {"6.x": 1280, "2.6": 512}


class BlockQueue:
    """A device request queue in simulated time: requests transfer one after another at
    `bandwidth` bytes/s, and each completes `latency` seconds after its transfer ends.
    A submission is split into requests of at most `max_pages`; each request holds one of
    `nr_requests` tags (blk_mq_get_tag) from its submission to its completion, and a
    submitter finding every tag taken sleeps until the oldest request completes: `blocked`
    holds the seconds the last submission waited for tags (0: `nr_requests` 0, no limit)."""

    __slots__ = ("latency", "bandwidth", "busy_until", "nr_requests", "max_pages", "inflight",
                 "blocked")

    def __init__(self, latency: float, bandwidth: float, nr_requests: int = 0,
                 max_pages: int = 0) -> None:
        self.latency = latency  # seconds per request
        self.bandwidth = bandwidth  # bytes per second
        self.busy_until = 0.0  # simulated time the last queued transfer ends
        self.nr_requests = nr_requests  # tags: requests in flight at most (0: unlimited)
        self.max_pages = max_pages  # pages per request at most (max_sectors_kb; 0: any)
        self.inflight: deque[float] = deque()  # completion times of requests holding tags
        self.blocked = 0.0  # seconds the last submitter slept waiting for a tag

    def cost(self, npages: int) -> float:
        """Seconds for one request of `npages` pages on an idle device."""
        return self.latency + (npages << PAGE_SHIFT) / self.bandwidth

    def submit(self, npages: int, now: float | None) -> float:
        """Queue `npages` at `now`; returns the completion time of the last request (the
        requests are served in order). Without a clock (now None) the device is idle for
        every request and the result is the cost; nothing is queued."""
        self.blocked = 0.0
        if now is None:
            return self.cost(npages)
        depth = self.nr_requests
        if not depth:
            start = self.busy_until if self.busy_until > now else now
            self.busy_until = start + (npages << PAGE_SHIFT) / self.bandwidth
            return self.busy_until + self.latency
        maxp = self.max_pages or npages
        inflight = self.inflight
        t = now
        done = now
        while True:
            n = npages if npages <= maxp else maxp
            while inflight and inflight[0] <= t:
                inflight.popleft()
            if len(inflight) >= depth:
                t = inflight.popleft()  # asleep until the oldest request completes
            done = self._do_transfer(n, t)
            inflight.append(done)
            npages -= n
            if npages <= 0:
                break
        self.blocked = t - now
        return done

    def _do_transfer(self, npages: int, t: float) -> float:
        """One request of `npages` issued at `t` on the device: its completion time (the
        transfer after those queued before it, then the latency)."""
        start = self.busy_until if self.busy_until > t else t
        self.busy_until = start + (npages << PAGE_SHIFT) / self.bandwidth
        return self.busy_until + self.latency


def queue_limits(kernel) -> tuple[int, int]:
    """The guest's request queue limits: (nr_requests tags, config nr_requests or
    NR_REQUESTS of its era; max pages a request, config max_sectors_kb or its era's)."""
    cfg = kernel.config
    era = getattr(cfg, "era", "6.x")
    depth = getattr(cfg, "nr_requests", None)
    if depth is None:
        depth = NR_REQUESTS[era]
    kb = getattr(cfg, "max_sectors_kb", None)
    if kb is None:
        kb = MAX_SECTORS_KB[era]
    return depth, max(kb >> (PAGE_SHIFT - 10), 1)


def guest_queue(kernel, latency: float, bandwidth: float) -> BlockQueue:
    """A request queue of the guest's virtio disk with the kernel's queue_limits."""
    return BlockQueue(latency, bandwidth, *queue_limits(kernel))


def _issue_read(rq, at: float) -> None:
    """A plugged swap read request sent to its device at `at`."""
    rq.done_at = rq.queue.submit(len(rq.pages), at)


class SwapInfo:
    """swap_info_struct: one swap area."""

    def __init__(self, type_: int, size: int, latency: float, bandwidth: float,
                 name: str = SWAP_DEVICE_NAME, prio: int = SWAP_PRIORITY,
                 rotational: bool = True, queue: BlockQueue | None = None) -> None:
        self.type = type_
        self.name = name
        self.prio = prio
        self.max = size >> PAGE_SHIFT  # slots including the header
        self.pages = max(self.max - 1, 0)  # usable slots
        self.swap_map: list[int] = [0] * self.max
        if self.max:
            self.swap_map[0] = SWAP_MAP_BAD
        self.data: list[bytes | None] = [None] * self.max  # slot contents
        self.inuse_pages = 0
        self.cluster_next = 1
        self.queue = queue if queue is not None else BlockQueue(latency, bandwidth)
        # SWP_SOLIDSTATE (swapon of a non-rotational device, 6.1 setup_clusters): slots in
        # use per cluster of SWAPFILE_CLUSTER (cluster_info; the header slot and the slots
        # past the end count), the wholly free clusters in list order (free_clusters:
        # ascending at swapon, a cluster freed later joins the tail), and the cluster
        # order-0 slots come from (percpu_cluster, one CPU's; -1: none) and where in it
        self.cluster_info: list[int] | None = None
        self.free_clusters: dict[int, None] | None = None
        self.percpu_cluster = -1
        self.percpu_next = 0
        if not rotational and self.max:
            nc = -(-self.max // SWAPFILE_CLUSTER)
            ci = [0] * nc
            ci[0] = 1
            ci[-1] += nc * SWAPFILE_CLUSTER - self.max
            self.cluster_info = ci
            self.free_clusters = {c: None for c in range(nc) if not ci[c]}

    def free_pages(self) -> int:
        return self.pages - self.inuse_pages


class SwapState:
    """The swap subsystem of one guest: its area, the swap cache, content store."""

    def __init__(self, kernel, reclaim=None) -> None:
        self.kernel = kernel
        self.reclaim = reclaim  # vmscan.Reclaim: LRU placement and activation
        cfg = kernel.config
        self.si = SwapInfo(0, cfg.swap, cfg.swap_latency, cfg.swap_bandwidth,
                           rotational=getattr(cfg, "swap_rotational", True),
                           queue=guest_queue(kernel, cfg.swap_latency, cfg.swap_bandwidth))
        self.swap_cache: dict[int, object] = {}  # entry -> Page
        self.ws = None  # workingset.ShadowSlots: shadow entries of evicted pages, by entry
        # content store: identical page contents share one bytes object
        self._contents: dict[bytes, list] = {}  # data -> [data, slots]
        vm = kernel.vmstat
        for name in SWAP_VMSTAT:
            vm.setdefault(name, 0)

    # ------------------------------------------------------------------ accounting
    def total_swap_pages(self) -> int:
        return self.si.pages

    def free_swap_pages(self) -> int:
        """nr_swap_pages: slots neither referenced nor cached."""
        return self.si.free_pages()

    def vm_swap_full(self) -> bool:
        """At least half the swap space is in use (mm/swap.h vm_swap_full)."""
        si = self.si
        return si.free_pages() * 2 < si.pages

    def swap_count(self, entry: int) -> int:
        """References to the slot from swap PTEs (without the cache bit)."""
        return self.si.swap_map[swp_offset(entry)] & ~SWAP_HAS_CACHE

    # ------------------------------------------------------------------ slots
    def get_swap_page(self) -> int:
        """Allocate a slot for the swap cache (SWAP_HAS_CACHE); 0 if swap is full."""
        si = self.si
        if si.inuse_pages >= si.pages:
            return 0
        smap = si.swap_map
        if si.cluster_info is not None:
            off = self._ssd_cluster_slot(si)
            if off:
                smap[off] = SWAP_HAS_CACHE
                si.inuse_pages += 1
                self._cluster_inc(si, off)
                self._memcg_swap(1)
                return swp_entry(si.type, off)
        n = si.max
        off = si.cluster_next
        for _ in range(n):
            if off >= n:
                off = 1
            if not smap[off]:
                smap[off] = SWAP_HAS_CACHE
                si.inuse_pages += 1
                si.cluster_next = off + 1
                if si.cluster_info is not None:
                    self._cluster_inc(si, off)
                self._memcg_swap(1)
                return swp_entry(si.type, off)
            off += 1
        return 0

    # -- swap clusters (SWP_SOLIDSTATE) --------------------------------------------------------
    @staticmethod
    def _ssd_cluster_slot(si) -> int:
        """scan_swap_map_try_ssd_cluster: the next free slot of the CPU's cluster, which
        is taken from the head of free_clusters when it has none or is used up; 0 when
        no cluster is free (the caller then scans the whole map)."""
        smap = si.swap_map
        while True:
            c = si.percpu_cluster
            if c < 0:
                if not si.free_clusters:
                    return 0
                c = si.percpu_cluster = next(iter(si.free_clusters))
                si.percpu_next = c * SWAPFILE_CLUSTER
            off = si.percpu_next
            end = min((c + 1) * SWAPFILE_CLUSTER, si.max)
            while off < end and smap[off]:
                off += 1
            if off < end:
                si.percpu_next = off + 1
                return off
            si.percpu_cluster = -1

    @staticmethod
    def _cluster_inc(si, off: int) -> None:
        """inc_cluster_info_page: a free cluster's first slot taken (alloc_cluster)."""
        c = off // SWAPFILE_CLUSTER
        if not si.cluster_info[c]:
            del si.free_clusters[c]
        si.cluster_info[c] += 1

    @staticmethod
    def _cluster_dec(si, off: int) -> None:
        """dec_cluster_info_page: a cluster's last slot freed joins free_clusters' tail."""
        c = off // SWAPFILE_CLUSTER
        si.cluster_info[c] -= 1
        if not si.cluster_info[c]:
            si.free_clusters[c] = None

    def get_swap_cluster(self) -> int:
        """get_swap_pages(1, &entry, HPAGE_PMD_NR) -> swap_alloc_cluster (6.1): the first
        entry of a wholly free cluster, its SWAPFILE_CLUSTER slots taken for the swap
        cache; 0 if the area has no clusters (rotational) or none is free, or fewer free
        slots than a cluster."""
        si = self.si
        if not si.free_clusters or si.free_pages() < SWAPFILE_CLUSTER:
            return 0
        c = next(iter(si.free_clusters))
        del si.free_clusters[c]
        si.cluster_info[c] = SWAPFILE_CLUSTER
        off = c * SWAPFILE_CLUSTER
        smap = si.swap_map
        for o in range(off, off + SWAPFILE_CLUSTER):
            smap[o] = SWAP_HAS_CACHE
        si.inuse_pages += SWAPFILE_CLUSTER
        self._memcg_swap(SWAPFILE_CLUSTER)
        return swp_entry(si.type, off)

    def _memcg_swap(self, nr: int) -> None:
        """The root memcg's MEMCG_SWAP moves by `nr` (cgroup v2, Debian 12's hierarchy:
        folio_alloc_swap's mem_cgroup_try_charge_swap, swap_entry_free's
        mem_cgroup_uncharge_swap): one memcg_rstat_updated."""
        mc = self.kernel.memcg
        if mc is not None:
            mc.rstat_updated(nr)

    def _slot_released(self, off: int) -> None:
        si = self.si
        memcgs = getattr(self.kernel, "memcgs", None)
        if memcgs is not None and memcgs.active:
            memcgs.swap_released(swp_entry(si.type, off))  # mem_cgroup_uncharge_swap
        si.inuse_pages -= 1
        self._memcg_swap(1)
        if si.cluster_info is not None:
            self._cluster_dec(si, off)
        ws = self.ws
        if ws is not None and ws.count:  # swap_range_free: clear_shadow_from_swap_cache
            self.kernel.workingset.clear_shadow(ws, swp_entry(si.type, off))
        data = si.data[off]
        if data is not None:
            si.data[off] = None
            ent = self._contents.get(data)
            if ent is not None:
                ent[1] -= 1
                if not ent[1]:
                    del self._contents[data]

    def swap_duplicate(self, entry: int) -> None:
        """One more swap PTE refers to the slot (unmap, fork)."""
        off = swp_offset(entry)
        smap = self.si.swap_map
        if not smap[off] or smap[off] == SWAP_MAP_BAD:
            raise ValueError(f"swap_duplicate: bad swap entry {entry:#x}")
        smap[off] += 1

    def swap_free(self, entry: int) -> None:
        """A swap PTE referring to the slot is gone (free_swap_and_cache on zap, swap_free
        on swap-in). When only the swap cache still holds the slot and its page is not
        mapped or used, the page and the slot are freed too."""
        off = swp_offset(entry)
        smap = self.si.swap_map
        count = smap[off] & ~SWAP_HAS_CACHE
        if not count or smap[off] == SWAP_MAP_BAD:
            raise ValueError(f"swap_free: swap entry {entry:#x} has no references")
        smap[off] -= 1
        if smap[off] == 0:
            self._slot_released(off)
        elif smap[off] == SWAP_HAS_CACHE:
            page = self.swap_cache.get(entry)
            if (page is not None and page._mapcount == -1 and page._count == 1
                    and not page.flags & PG_writeback):
                self.delete_from_swap_cache(page)
                self._free_page(page)

    def _free_page(self, page) -> None:
        free_user_page(self.kernel, page)

    # ------------------------------------------------------------------ swap cache
    def put_swap_page(self, entry: int) -> None:
        """put_swap_folio of one slot get_swap_page gave: its cache bit goes, and the
        slot with it when nothing else refers to it."""
        off = swp_offset(entry)
        smap = self.si.swap_map
        smap[off] &= ~SWAP_HAS_CACHE
        if not smap[off]:
            self._slot_released(off)

    def folio_alloc_swap(self, page) -> int:
        """folio_alloc_swap for one page: a slot (get_swap_page), then the memcg's swap
        charge (mem_cgroup_try_charge_swap: v2 swap.max); a refused charge frees the
        slot (put_swap_folio). 0: none."""
        entry = self.get_swap_page()
        memcgs = getattr(self.kernel, "memcgs", None)
        if memcgs is not None and memcgs.active and memcgs.try_charge_swap(page, entry):
            self.put_swap_page(entry)
            return 0
        return entry

    def add_to_swap(self, page) -> bool:
        """Give an anonymous page a slot and put it in the swap cache (it takes a
        reference); the page is dirty until written. False if swap is full or the
        memcg's swap.max refuses it (the caller keeps the page)."""
        entry = self.folio_alloc_swap(page)
        if not entry:
            return False
        self.add_to_swap_cache(page, entry)
        page._count += 1
        page.flags |= PG_dirty
        page_restate(self.kernel.vmstat, page)
        return True

    def add_to_swap_cache(self, page, entry: int) -> int | None:
        """Insert without taking a reference (the caller's becomes the cache's). Returns
        the shadow entry the slot held, if any (removed)."""
        self.swap_cache[entry] = page
        ws = self.ws
        shadow = self.kernel.workingset.take_shadow(ws, entry) if ws is not None and ws.count else None
        page.flags |= PG_swapcache | PG_swapbacked
        page.private = entry
        vm = self.kernel.vmstat
        vm["nr_swapcached"] += 1
        vm["nr_file_pages"] += 1  # Linux counts swap-cache pages in NR_FILE_PAGES too
        mc = self.kernel.memcg
        if mc is not None:
            # __lruvec_stat_mod_folio(NR_SWAPCACHE) (NR_FILE_PAGES: the node's only)
            mc.rstat_updated(1)
        return shadow

    def delete_from_swap_cache(self, page, shadow: int | None = None) -> None:
        """Take the page out of the cache and clear the slot's cache bit (the slot is
        freed if no PTE refers to it, and with it any shadow). The cache's reference
        passes to the caller, who frees the page or counts its new state (page_restate).
        `shadow`: reclaim's shadow entry (workingset_eviction) left in the slot."""
        entry = page.private
        del self.swap_cache[entry]
        if shadow is not None:
            memcgs = getattr(self.kernel, "memcgs", None)
            if memcgs is not None and memcgs.active:
                memcgs.swapout(page, entry)  # mem_cgroup_swapout
            ws = self.ws
            if ws is None:
                ws = self.ws = self.kernel.workingset.new_slots(self.swap_cache)
            self.kernel.workingset.store_shadow(ws, entry, shadow)
        page.flags &= ~PG_swapcache
        page.private = 0
        vm = self.kernel.vmstat
        vm["nr_swapcached"] -= 1
        vm["nr_file_pages"] -= 1
        mc = self.kernel.memcg
        if mc is not None:
            mc.rstat_updated(1)  # __delete_from_swap_cache: NR_SWAPCACHE
        off = swp_offset(entry)
        smap = self.si.swap_map
        smap[off] &= ~SWAP_HAS_CACHE
        if not smap[off]:
            self._slot_released(off)

    def try_to_free_swap(self, page) -> bool:
        """folio_free_swap: drop the swap copy of a page no swap PTE refers to any more.
        The page becomes dirty (it holds the only copy); the cache's reference is put."""
        if not page.flags & PG_swapcache or page.flags & PG_writeback:
            return False
        if self.swap_count(page.private):
            return False
        self.delete_from_swap_cache(page)
        page.flags |= PG_dirty
        page_restate(self.kernel.vmstat, page)
        page._count -= 1  # the cache's reference; the caller holds another
        return True

    def free_swap_cache(self, page) -> bool:
        """free_page_and_swap_cache's first half: a swap-cache page whose last PTE is
        being zapped leaves the cache (and its slot is freed) if no swap PTE refers to
        the slot. Drops the cache's reference; the caller then puts its own."""
        if (not page.flags & PG_swapcache or page._mapcount != -1
                or page.flags & PG_writeback or self.swap_count(page.private)):
            return False
        self.delete_from_swap_cache(page)
        page._count -= 1
        return True

    def lookup_swap_cache(self, entry: int):
        return self.swap_cache.get(entry)

    # ------------------------------------------------------------------ I/O
    def _store_slot(self, off: int, data: bytes) -> None:
        si = self.si
        old = si.data[off]
        if old is not None:  # rewritten: release the previous contents
            ent = self._contents.get(old)
            if ent is not None:
                ent[1] -= 1
                if not ent[1]:
                    del self._contents[old]
        ent = self._contents.get(data)
        if ent is None:
            ent = self._contents[data] = [data, 0]
        ent[1] += 1
        si.data[off] = ent[0]

    def swap_writepage(self, page) -> None:
        """Copy the page to its slot (the I/O itself is timed by the caller's batch).
        Clears PG_dirty; counts pswpout."""
        self._store_slot(swp_offset(page.private), self.kernel.phys.load(page.pfn))
        page.flags &= ~PG_dirty
        page_restate(self.kernel.vmstat, page)
        self.kernel.vmstat["pswpout"] += 1

    def slot_data(self, entry: int) -> bytes | None:
        return self.si.data[swp_offset(entry)]

    def distinct_contents(self) -> int:
        return len(self._contents)

    def _now(self) -> float | None:
        env = self.kernel.env
        return env.now if env is not None else None

    def _read_into_new_page(self, entry: int, gfp: int = GFP_SWAPIN):
        page = self.kernel.alloc_pages(gfp)
        if page is None:
            return None
        memcgs = getattr(self.kernel, "memcgs", None)
        if memcgs is not None and memcgs.active and not memcgs.swapin_charge(page, entry, gfp):
            self.kernel.free_pages(page)  # mem_cgroup_swapin_charge_folio failed
            return None
        mc = self.kernel.memcg
        if mc is not None:
            mc.rstat_updated(1)  # mem_cgroup_swapin_charge_folio: the charge's PGPGIN
        data = self.si.data[swp_offset(entry)]
        if data is not None:
            # read from the guest's swap device: a disk read, as far as the host can tell
            self.kernel.stall += self.kernel.phys.store(page.pfn, data, True)
        shadow = self.add_to_swap_cache(page, entry)
        if shadow is not None:  # __read_swap_cache_async: an anon refault
            self.kernel.workingset.refault(page, shadow)
        return page

    def swapin(self, task, vma, addr: int, pte: int, write: bool = False):
        """kernel.swapin_hook: bring back the page of a swap PTE. Returns (page, seconds,
        major) with one reference for the caller's new PTE; the PTE's slot reference is
        dropped here. page is None if no memory could be had."""
        reclaim = self.reclaim
        if reclaim is not None:
            reclaim.complete_io()
        entry = pte >> PAGE_SHIFT
        page = self.swap_cache.get(entry)
        cost = 0.0
        major = False
        if page is not None:
            page._count += 1
            if reclaim is not None and not reclaim.v6:
                # 2.6.24 do_swap_page: mark_page_accessed (its swap-cache pages start
                # active); 6.1's swap_cache_get_folio only counts a readahead hit
                reclaim.activate_page(page)
        else:
            page, cost = self.swap_cluster_readahead(entry, True)
            if page is None:
                return None, 0.0, True
            major = True
        self.swap_free(entry)
        # should_try_to_free_swap
        exclusive = page._mapcount == -1 and page._count == 2
        memcgs = getattr(self.kernel, "memcgs", None)
        if (self.vm_swap_full() or (memcgs is not None and memcgs.active and memcgs.swap_full(page))
                or vma.vm_flags & VM_LOCKED or (write and exclusive)):
            self.try_to_free_swap(page)
        return page, cost, major

    def swap_cluster_readahead(self, entry: int, anon: bool):
        """swap_cluster_readahead: read the slot and the used slots of its aligned window
        of 2**page_cluster in one request, into the swap cache (the neighbours counted in
        swap_ra); the task sleeps on the device (iowait_swap). `anon`: the page is for a
        process's PTE (do_swap_page): PG_anon and that PTE's reference, set before any
        neighbour is allocated. Every page of the window is allocated with the fault's
        gfp, so a neighbour's allocation may reclaim; the pages read so far are held
        meanwhile (Linux's stay locked until their read ends: shrink_folio_list's trylock
        fails and keeps them). Returns (page with the cache's reference, seconds), page
        None if no memory could be had."""
        k = self.kernel
        si = self.si
        off = swp_offset(entry)
        cluster = 1 << k.config.page_cluster
        start = max(off & ~(cluster - 1), 1)
        end = min((off & ~(cluster - 1)) + cluster, si.max)
        outer = k.stall  # costs of this read (allocation, stores) go into `cost`
        k.stall = 0.0
        npages = 0
        vm = k.vmstat
        page = None
        held = []
        # the window is allocated and read inside a blk_plug (not a window of one page):
        # the writes of a reclaim an allocation enters are held in it with the reads
        now = self._now()
        plug = blk_start_plug(k) if cluster > 1 else None
        plugged = k.plug if now is not None else None
        reads = []
        for o in [off] + [o for o in range(start, end) if o != off]:
            e = swp_entry(si.type, o)
            if o != off:
                smap = si.swap_map[o]
                if not smap or smap & SWAP_HAS_CACHE or smap == SWAP_MAP_BAD:
                    continue
            new = self._read_into_new_page(e, GFP_SWAPIN)
            if new is None:
                if o == off:
                    blk_finish_plug(k, plug, None if now is None else now + k.stall)
                    k.stall = outer
                    return None, 0.0
                break
            if plugged is not None:  # swap_readpage: the read's bio
                rq, fresh = plugged.submit_bio(si.queue, REQ_OP_READ, new, False,
                                               _issue_read, now + k.stall)
                if fresh:
                    reads.append(rq)
            si.swap_map[o] |= SWAP_HAS_CACHE
            new._count += 1  # held while the window is read
            held.append(new)
            npages += 1
            if o == off:
                page = new
                if anon:
                    page.flags |= PG_anon  # do_swap_page sets mapping and index
                    page._count += 1  # the new PTE's reference, before anything can reclaim it
            else:
                vm["swap_ra"] += 1
            k.lru_cache_add(new)
        for p in held:
            p._count -= 1
        vm["pswpin"] += npages
        if plugged is not None:
            # blk_finish_plug sends the reads with the held writes (an outer plug: the
            # task's sleep on the page's lock sends it), at the task's time
            blk_finish_plug(k, plug, now + k.stall)
            blk_flush_plug(k, now + k.stall)
            done = max(rq.done_at for rq in reads)
            wait = max(done - now - k.stall, 0.0)
        else:
            done = si.queue.submit(npages, now)
            wait = done - now if now is not None else done
        k.iowait_swap += wait
        cost = wait + k.stall
        k.stall = outer
        return page, cost

    def read_swap_cache_async(self, entry: int) -> bool:
        """read_swap_cache_async (6.1 mm/swap_state.c) for MADV_WILLNEED: a slot whose page
        is not in the swap cache gets a new page there (charged, a shadow's refault
        noted), on the LRU, its read submitted (swap_readpage without polling: PSWPIN) and
        not waited for; nothing maps it. A slot already cached (or free) is left alone.
        Returns True if a read was started."""
        if entry in self.swap_cache or swp_type(entry) != self.si.type:
            return False
        si = self.si
        off = swp_offset(entry)
        if not 0 < off < si.max:
            return False
        smap = si.swap_map[off]
        if not smap or smap & SWAP_HAS_CACHE or smap == SWAP_MAP_BAD:
            return False  # (__read_swap_cache_async: swapcache_prepare fails)
        k = self.kernel
        page = self._read_into_new_page(entry, GFP_SWAPIN)
        if page is None:
            return False
        si.swap_map[off] |= SWAP_HAS_CACHE
        now = self._now()
        plugged = k.plug if now is not None else None
        if plugged is not None:  # swap_readpage's bio, in madvise's blk_plug
            plugged.submit_bio(si.queue, REQ_OP_READ, page, False, _issue_read, now + k.stall)
        else:
            si.queue.submit(1, now)
        k.lru_cache_add(page)
        k.vmstat["pswpin"] += 1
        return True  # (the page's one reference is the swap cache's: put_page done)

    # ------------------------------------------------------------------ shmem
    def shmem_writepage(self, page) -> bool:
        """shmem_writepage (6.1): an unmapped shmem page reclaim is writing goes to swap:
        a slot, the swap cache in place of the page cache — the mapping's slot at its
        index holds the swap entry (mapping.swapped; the inode's `swapped` count) and a
        reference on the slot (swap_shmem_alloc) — so nr_shmem falls and nr_swapcached
        rises. The caller then writes it (swap_writepage) and frees it once clean. False
        (redirty: the caller activates it) if the mapping is SHM_LOCK'd or swap is full."""
        mapping = page.mapping
        if mapping is None or mapping.unevictable or not self.si.pages:
            return False
        if page.flags & PG_thpfile:
            # a huge folio is split first, all its subpages kept dirty (SetPageDirty on
            # the folio, split_huge_page, ClearPageDirty on this one below)
            self.kernel.thp.shmem_split(page, dirty=True)
        entry = self.folio_alloc_swap(page)
        if not entry:
            return False
        index = page.index
        del mapping.pages[index]  # shmem_delete_from_page_cache
        vm = self.kernel.vmstat
        vm["nr_file_pages"] -= 1
        vm["nr_shmem"] -= 1
        if self.kernel.memcg is not None:
            self.kernel.memcg.rstat_ones(2)  # NR_FILE_PAGES, NR_SHMEM
        sw = mapping.swapped
        if sw is None:
            sw = mapping.swapped = {}
        sw[index] = entry
        mapping.host.swapped += 1
        self.add_to_swap_cache(page, entry)  # the page cache's reference becomes the cache's
        self.si.swap_map[swp_offset(entry)] += 1  # swap_shmem_alloc
        page.mapping = None
        return True

    def shmem_swapin(self, mapping, index: int):
        """shmem_swapin_folio (6.1): the shmem page at `index` is on swap: take it from
        the swap cache or read it (swap_cluster_readahead), wait for a write still in
        flight, and put it back in the page cache in place of the entry, dirty (its only
        copy from now on); the slot is freed (delete_from_swap_cache, swap_free). Returns
        (page or None if out of memory, seconds, major)."""
        entry = mapping.swapped[index]
        k = self.kernel
        reclaim = self.reclaim
        if reclaim is not None:
            reclaim.complete_io()
        page = self.swap_cache.get(entry)
        cost = 0.0
        major = False
        if page is None:
            page, cost = self.swap_cluster_readahead(entry, False)
            if page is None:
                return None, cost, True
            major = True
        if page.flags & PG_writeback and reclaim is not None:
            # folio_wait_writeback: the write ends now, the task sleeps until it would
            b = reclaim.inflight_by_page.get(page.pfn)
            if b is not None:
                now = self._now()
                blk_flush_plug(k, now)  # its sleep (io_schedule) sends the task's plug
                if now is not None and b.done_at > now:
                    k.iowait_swap += b.done_at - now
                    cost += b.done_at - now
                page._count += 1
                reclaim.inflight.remove(b)
                reclaim._end_batch(b)
                page._count -= 1
        del mapping.swapped[index]
        mapping.host.swapped -= 1
        self.delete_from_swap_cache(page)  # its reference becomes the page cache's
        page.mapping = mapping
        page.index = index
        mapping.pages[index] = page
        vm = k.vmstat
        vm["nr_file_pages"] += 1
        vm["nr_shmem"] += 1
        if k.memcg is not None:
            k.memcg.rstat_ones(2)  # shmem_add_to_page_cache: NR_FILE_PAGES, NR_SHMEM
        page.flags |= PG_dirty  # folio_mark_dirty
        page_restate(vm, page)
        self.swap_free(entry)  # the mapping's reference: the slot is free
        return page, cost, major

    def shmem_free_swap(self, mapping, start: int, end: int | None = None) -> int:
        """shmem_undo_range's swap entries (truncate, hole punch, the last unlink): the
        entries of [start, end) are dropped from the mapping and their slots freed
        (free_swap_and_cache: a clean swap-cache copy goes too). Returns how many."""
        sw = mapping.swapped
        if not sw:
            return 0
        idx = [i for i in sw if i >= start and (end is None or i < end)]
        for i in idx:
            entry = sw.pop(i)
            mapping.host.swapped -= 1
            self.swap_free(entry)
        return len(idx)

    # ------------------------------------------------------------------ /proc
    def proc_swaps(self) -> str:
        out = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        si = self.si
        if si.pages:
            size = si.pages << (PAGE_SHIFT - 10)
            used = si.inuse_pages << (PAGE_SHIFT - 10)
            pad = 40 - len(si.name) if len(si.name) < 40 else 1
            tab_size = "\t" if size < 10000000 else ""
            tab_used = "\t" if used < 10000000 else ""
            out += f"{si.name}{' ' * pad}partition\t{size}\t{tab_size}{used}\t{tab_used}{si.prio}\n"
        return out


def validate_swap(swap: SwapState) -> None:
    """Check the swap invariants: inuse_pages counts the non-free slots; every cached
    entry has SWAP_HAS_CACHE and its page PG_swapcache with the entry in private; slots
    with data are in use; the content store's counts match the slots."""
    si = swap.si
    inuse = sum(1 for o in range(1, si.max) if si.swap_map[o])
    assert inuse == si.inuse_pages, f"swap: inuse_pages {si.inuse_pages} but {inuse} slots used"
    for o in range(1, si.max):
        m = si.swap_map[o]
        e = swp_entry(si.type, o)
        assert bool(m & SWAP_HAS_CACHE) == (e in swap.swap_cache), (
            f"swap: slot {o} cache bit {bool(m & SWAP_HAS_CACHE)} vs cache {e in swap.swap_cache}"
        )
        if not m:
            assert si.data[o] is None, f"swap: free slot {o} still holds data"
    for e, page in swap.swap_cache.items():
        assert page.flags & PG_swapcache and page.private == e, f"swap: bad cache page {page}"
    counts: dict[int, int] = {}
    for d in si.data:
        if d is not None:
            counts[id(d)] = counts.get(id(d), 0) + 1
    for obj, n in swap._contents.values():
        assert counts.get(id(obj), 0) == n, "swap: content store count mismatch"
    assert swap.kernel.vmstat["nr_swapcached"] == len(swap.swap_cache)
    if si.cluster_info is not None:
        for c, n in enumerate(si.cluster_info):
            lo, hi = c * SWAPFILE_CLUSTER, (c + 1) * SWAPFILE_CLUSTER
            used = sum(1 for o in range(lo, min(hi, si.max)) if si.swap_map[o]) + max(hi - si.max, 0)
            assert n == used, f"swap: cluster {c} counts {n} slots, {used} in use"
            assert (c in si.free_clusters) == (not n), f"swap: cluster {c} free list"


__all__ = [
    "SWAPFILE_CLUSTER",
    "SWAP_HAS_CACHE",
    "BlockQueue",
    "guest_queue",
    "SwapInfo",
    "SwapState",
    "swp_entry",
    "swp_offset",
    "swp_type",
    "validate_swap",
    "PAGE_SIZE",
]
