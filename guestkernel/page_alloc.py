"""Zones, watermarks, the buddy allocator and per-CPU hot/cold lists (mm/page_alloc.c).

Overview
--------
Guest memory is split into NUMA nodes, each node into zones by physical address (x86_64:
DMA < 16 MiB, DMA32 < 4 GiB, Normal above; i386: DMA, Normal to 896 MiB, HighMem above).
Every zone has:

- `free_area[0..10]`: one list of free blocks per order. A free block's head page carries
  PG_buddy and its order in `page.private`; blocks are aligned (pfn % 2**order == 0).
  Allocation (`_rmqueue_smallest`) takes the first block of the smallest order that has
  one and `_expand`s it: the upper halves go back on the lower lists, the caller gets the
  lowest-addressed sub-block. Freeing (`_free_one_page`) merges with the buddy at
  pfn ^ (1 << order) while that buddy is free with the same order, then inserts at the head
  (2.6) or, in 6.x, at the tail when the next-higher buddy is free too (merge likely).
- per-CPU hot and cold lists for order-0 pages (2.6.20): a free goes to the head of the
  hot list (cold with `free_cold_page`); when a list reaches `high`, `batch` pages from its
  tail go back to the buddy lists. An order-0 allocation takes the head of the hot list
  (cold with __GFP_COLD), refilling `batch` pages from the buddy when empty. Pages on these
  lists are not in NR_FREE_PAGES and watermark checks do not see them.
- watermarks MIN/LOW/HIGH and `lowmem_reserve[]` from min_free_kbytes (6.x or 2.6 formulas).

Grouping pages by mobility (6.x; 2.6.24 introduced it, so the 2.6 era, which is 2.6.20 here,
has none: `page_group_by_mobility_disabled`, every block and request UNMOVABLE, one list)
-----------------------------------------------------------------------------------------
Memory is cut into pageblocks of 2**pageblock_order pages (9 on x86_64 and i386 PAE, the
huge page order; 10 = MAX_ORDER on i386 without PAE) and every pageblock has a migratetype
(`pageblock_mt`): UNMOVABLE, MOVABLE, RECLAIMABLE, HIGHATOMIC (or ISOLATE, which nothing
here sets). Boot marks every pageblock MOVABLE. Each `free_area[order]` has one free list
per migratetype (`free_list[mt]`); a free block's head records the list it is on in
`page.index` (Linux finds it from the list pointer). A request's migratetype comes from its
GFP flags (`gfp_migratetype`: __GFP_MOVABLE -> MOVABLE, __GFP_RECLAIMABLE -> RECLAIMABLE,
else UNMOVABLE). `__rmqueue` takes the smallest block of its own type; failing that,
`__rmqueue_fallback` steals from another type in the `fallbacks` order, largest block
first: a whole pageblock's free pages move to the stealer's lists when the block is
large enough or the stealer is unmovable/reclaimable (`can_steal_fallback`), and the
pageblock changes type when at least half its pages are free or compatible
(`steal_suitable_fallback`). ALLOC_NOFRAGMENT (Normal with a populated DMA32 below)
first refuses to steal less than a pageblock, falling back to the lower zone instead.
A non-blocking order > 0 allocation reserves its pageblock as HIGHATOMIC (at most 1 % of
the zone plus one pageblock); the slow path gives reserves back before the OOM killer.
Watermark boosting (5.0+): a fallback below pageblock order raises the zone's watermarks by
a pageblock (`boost_watermark`, at most watermark_boost_factor/10000 of HIGH) and, for a
request that may wake kswapd, wakes it at the end of that rmqueue; kswapd reclaims the
boost without writeback or swap (vmscan.balance_pgdat), clears it and wakes kcompactd.
Per-CPU lists hold one list per PCP migratetype (6.x: lists[] by migratetype, order 0
only here); a freed page goes to its pageblock's list (HIGHATOMIC ones to MOVABLE's), and
the bulk free returns it to its pageblock's type as it is then (6.10+).

`alloc_pages` tries every zone of the zonelist at LOW (fast path), then the slow path: wake
kswapd, retry at MIN with the caller's reserve rights (GFP_ATOMIC down to 0.375 x MIN),
direct reclaim, drain the per-CPU lists, retry while reclaim progresses, then the OOM
killer. kswapd, reclaim and the OOM killer are hooks wired by kernel.py; without them the
allocator counts the attempt and fails cleanly.

Invariants (checked by `validate_buddy`): every managed page is exactly once either in a
free block, on a per-CPU list, or allocated; zone.nr_free == sum of 2**order over its free
blocks; no free block overlaps another; buddies of equal order are never both free.
"""

from __future__ import annotations

from collections.abc import Callable

from . import gfp as G
from .config import (
    EARLY_RESERVED,
    KERNEL_LOAD_ADDR,
    LOW_RESERVED,
    PAGES_PER_SECTION,
    PERCPU_PAGES_PER_CPU,
    STRUCT_PAGE_SIZE,
    KernelConfig,
)
from .page import (
    PAGE_FLAGS_CHECK_AT_FREE,
    Page,
    PageList,
    PG_buddy,
    PG_highmem,
    PG_lru,
    PG_reported,
    PG_reserved,
)
from .physmem import PhysicalMemory
from .units import PAGE_SHIFT, PAGE_SIZE

MAX_ORDER = 10  # MAX_PAGE_ORDER, inclusive: the largest block is 2**10 pages (4 MiB)
NR_ORDERS = MAX_ORDER + 1
MAX_ORDER_NR_PAGES = 1 << MAX_ORDER
PAGE_ALLOC_COSTLY_ORDER = 3
MAX_RECLAIM_RETRIES = 16
SWAP_CLUSTER_MAX = 32

WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2

# Migratetypes (include/linux/mmzone.h, 6.x; CONFIG_CMA off, as on this machine's kernel)
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3  # the types with per-CPU lists
MIGRATE_HIGHATOMIC = MIGRATE_PCPTYPES
MIGRATE_ISOLATE = 4  # never set here (no memory hot-remove or alloc_contig_range)
MIGRATE_TYPES = 5
MIGRATETYPE_NAMES = ("Unmovable", "Movable", "Reclaimable", "HighAtomic", "Isolate")
# fallbacks[] (mm/page_alloc.c): the order in which another type's lists are raided
FALLBACKS = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)
GFP_MOVABLE_SHIFT = 3  # (__GFP_MOVABLE | __GFP_RECLAIMABLE) >> 3 is the migratetype
# 6.1's per-CPU lists (include/linux/mmzone.h, CONFIG_TRANSPARENT_HUGEPAGE): one list per
# PCP migratetype and order 0..PAGE_ALLOC_COSTLY_ORDER, plus two for pageblock order
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP = 2
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP
PCP_BATCH_SCALE_MAX = 5  # CONFIG_PCP_BATCH_SCALE_MAX default (mm/Kconfig, 6.1.y)

# enum compact_result (include/linux/compaction.h), in its order; compaction.py runs it
(
    COMPACT_NOT_SUITABLE_ZONE,
    COMPACT_SKIPPED,
    COMPACT_DEFERRED,
    COMPACT_NO_SUITABLE_PAGE,
    COMPACT_CONTINUE,
    COMPACT_COMPLETE,
    COMPACT_PARTIAL_SKIPPED,
    COMPACT_CONTENDED,
    COMPACT_SUCCESS,
) = range(9)
# enum compact_priority: lower is more thorough
COMPACT_PRIO_SYNC_FULL = MIN_COMPACT_PRIORITY = 0
COMPACT_PRIO_SYNC_LIGHT = MIN_COMPACT_COSTLY_PRIORITY = DEF_COMPACT_PRIORITY = 1
COMPACT_PRIO_ASYNC = INIT_COMPACT_PRIORITY = 2
MAX_COMPACT_RETRIES = 16
_GFP_ZERO = G.ZERO  # a module constant: the order-0 fast path tests it per page
# cleared when a block leaves its free list: del_page_from_free_list also clears
# PageReported (mm/page_reporting.c), at no extra cost here
_NOT_FREE = ~(PG_buddy | PG_reported)

# alloc_flags (mm/internal.h)
ALLOC_WMARK_MIN = WMARK_MIN
ALLOC_WMARK_LOW = WMARK_LOW
ALLOC_WMARK_HIGH = WMARK_HIGH
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08  # an OOM victim: may go to MIN/2 of the reserves
ALLOC_NON_BLOCK = 0x10  # cannot sleep (6.x); 2.6's ALLOC_HARDER
ALLOC_MIN_RESERVE = 0x20  # __GFP_HIGH; 2.6's ALLOC_HIGH
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_OOM
ALLOC_NOFRAGMENT = 0x100  # do not steal less than a pageblock from another type
ALLOC_HIGHATOMIC = 0x200  # a non-blocking order > 0 request: may reserve and use HIGHATOMIC
ALLOC_KSWAPD = 0x800  # __GFP_KSWAPD_RECLAIM: may wake kswapd (a boosted zone's does)
WATERMARK_BOOST_FACTOR = 15000  # vm.watermark_boost_factor default: 1/10000 of HIGH

# Zone types per arch, lowest first (index = zone_idx, as lowmem_reserve[] is indexed).
ZONE_LAYOUT = {
    "x86_64": ((G.ZONE_DMA, 16 << 20), (G.ZONE_DMA32, 4 << 30), (G.ZONE_NORMAL, None)),
    "i386": ((G.ZONE_DMA, 16 << 20), (G.ZONE_NORMAL, 896 << 20), (G.ZONE_HIGHMEM, None)),
}
PAGE_OFFSET = {"x86_64": 0xFFFF888000000000, "i386": 0xC0000000}


class KernelBug(Exception):
    """The kernel hit BUG() or a bad page state: a bug in the simulated kernel or its caller."""


class KernelPanic(Exception):
    """The guest kernel panicked (e.g. panic_on_oom, or a __GFP_NOFAIL request that cannot
    be met). The guest stops; the simulation around it goes on."""


def int_sqrt(x: int) -> int:
    """Integer square root, rounded down (lib/math/int_sqrt.c)."""
    if x < 0:
        raise ValueError("int_sqrt of a negative number")
    r = int(x**0.5)
    while r * r > x:
        r -= 1
    while (r + 1) * (r + 1) <= x:
        r += 1
    return r


def fls(x: int) -> int:
    """Find last set bit, 1-based (fls(0) = 0)."""
    return x.bit_length()


def mult_frac(x: int, numer: int, denom: int) -> int:
    """x * numer / denom without overflow, as the kernel macro computes it."""
    q, r = divmod(x, denom)
    return q * numer + (r * numer) // denom


class FreeArea:
    """free_area[order]: one list of free blocks per migratetype, and their number."""

    __slots__ = ("free_list", "nr_free")

    def __init__(self, order: int) -> None:
        self.free_list = [PageList(f"order-{order} {name}") for name in MIGRATETYPE_NAMES]
        self.nr_free = 0


def order_to_pindex(migratetype: int, order: int) -> int:
    """order_to_pindex() (6.1, CONFIG_TRANSPARENT_HUGEPAGE): the per-CPU list of an
    order <= PAGE_ALLOC_COSTLY_ORDER block of `migratetype`, or, at pageblock order, one of
    the two THP lists (movable or not)."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (migratetype == MIGRATE_MOVABLE)
    return MIGRATE_PCPTYPES * order + migratetype


def pindex_to_order(pindex: int, pageblock_order: int = 9) -> int:
    """pindex_to_order(): the order of the blocks on per-CPU list `pindex`."""
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return pageblock_order
    return pindex // MIGRATE_PCPTYPES


def pageset_update(pcp: PerCpuPages, high: int, batch: int, reclaim_active: bool = False) -> None:
    """pageset_update(): set a list's high and batch (and the order-0 fast path's limit)."""
    pcp.batch = batch
    pcp.high = high
    pcp.high_now = min(batch << 2, high) if reclaim_active and high else high


class PerCpuPages:
    """per_cpu_pages. 2.6.20: one hot or cold list of order-0 pages, kept as one list per
    PCP migratetype (`lists[mt]`). 6.1: NR_PCP_LISTS lists, one per (order <= 3,
    migratetype) and two for pageblock-order (THP) blocks, indexed by `order_to_pindex`.
    `lists[i][-1]` is a list's head, `[0]` its tail. `count` is in pages (a block of
    order o counts 1 << o); `high` and `batch` apply to the whole; `free_factor` (6.1)
    doubles the bulk free after consecutive frees and halves on every allocation.

    `expire` (6.1, CONFIG_NUMA): vmstat's countdown to draining a remote zone's list
    (refresh_cpu_vm_stats). Whether this CPU holds a diff of the zone's counters that
    vmstat has not folded yet (vm_stat_diff nonzero): `free_diff`, this CPU's
    NR_FREE_PAGES diff, which the bulk moves between the list and the buddy lists change
    as __mod_zone_page_state does (folded into the zone, and back to 0, once past
    `stat_threshold`), or a change of `count` since vmstat last folded (`stat_count`):
    taking a page off the list or putting one on moves no zone counter itself, the
    page's own counters (the LRU's NR_ZONE_*) move with it, so an allocation and a free
    of a page in the same interval cancel as they do in vm_stat_diff (their thresholds
    are not modelled)."""

    __slots__ = ("count", "high", "batch", "free_factor", "lists", "orders", "high_now",
                 "expire", "free_diff", "stat_threshold", "stat_count")

    def __init__(self, high: int, batch: int, nr_lists: int = MIGRATE_PCPTYPES,
                 pageblock_order: int = 9) -> None:
        self.count = 0
        self.high = high
        self.high_now = high  # nr_pcp_high() for order 0: high, capped under reclaim
        self.batch = batch
        self.free_factor = 0
        self.expire = 0  # vmstat intervals left before a remote list is drained (0: none)
        self.free_diff = 0  # this CPU's unfolded NR_FREE_PAGES change for the zone, pages
        self.stat_threshold = 0  # calculate_normal_threshold (zone_pcp_update sets it)
        self.stat_count = 0  # `count` when vmstat last folded this CPU's diffs
        self.lists: list[list[Page]] = [[] for _ in range(nr_lists)]
        # pindex_to_order for each list
        self.orders = tuple(pindex_to_order(i, pageblock_order) for i in range(nr_lists))

    @property
    def pages(self) -> list[Page]:
        """Every block head on the lists, tail first per list (for tests and /proc)."""
        return [p for lst in self.lists for p in lst]


class Zone:
    """struct zone."""

    def __init__(self, node: Node, name: str, idx: int, start_pfn: int, end_pfn: int) -> None:
        self.node = node
        self.name = name
        self.idx = idx  # zone_idx within the node: index into lowmem_reserve
        self.zone_start_pfn = start_pfn
        self.spanned_pages = max(0, end_pfn - start_pfn)
        self.present_pages = self.spanned_pages
        self.managed_pages = 0  # present minus boot reservations
        self.is_highmem = name == G.ZONE_HIGHMEM
        self.free_area = [FreeArea(o) for o in range(NR_ORDERS)]
        self.nr_free = 0  # NR_FREE_PAGES
        self.watermark = [0, 0, 0]  # MIN, LOW, HIGH, pages
        self.lowmem_reserve: list[int] = []
        # per CPU: (hot, cold) in the 2.6 era; (per_cpu_pages,) in 6.x
        self.pcp: list[tuple[PerCpuPages, ...]] = []
        self.pcp_batch = 1
        # ZONE_RECLAIM_ACTIVE (6.x): kswapd is reclaiming for this zone; a per-CPU list
        # then holds at most 4 x batch pages (nr_pcp_high)
        self.reclaim_active = False
        self.pgalloc = 0  # vmstat pgalloc_<zone>: pages allocated from this zone
        self.nr_reserved_highatomic = 0  # pages in HIGHATOMIC pageblocks
        # watermark_boost: pages added to every watermark after a fallback stole from
        # another type's pageblock (boost_watermark); `watermark` includes it, as 6.1's
        # wmark_pages() do; ZONE_BOOSTED_WATERMARK: kswapd to be woken for it
        self.watermark_boost = 0
        self.boosted_watermark = False
        # compaction state (mm/compaction.c): cached scanner positions, deferral
        self.compact_cached_free_pfn = 0
        self.compact_cached_migrate_pfn = [0, 0]  # [async, sync]
        self.compact_considered = 0
        self.compact_defer_shift = 0
        self.compact_order_failed = 0
        self.compact_blockskip_flush = False
        # where a skip-hint reset restarted the scanners (0 until one has: the struct
        # zone is zeroed); fast_isolate_freepages searches deeper from there
        self.compact_init_migrate_pfn = 0
        self.compact_init_free_pfn = 0

    @property
    def end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def populated(self) -> bool:
        return self.present_pages > 0

    def pcp_count(self) -> int:
        return sum(p.count for lists in self.pcp for p in lists)

    def min_wmark(self) -> int:
        return self.watermark[WMARK_MIN]

    def low_wmark(self) -> int:
        return self.watermark[WMARK_LOW]

    def high_wmark(self) -> int:
        return self.watermark[WMARK_HIGH]

    def __repr__(self) -> str:
        return f"<Zone node{self.node.nid} {self.name} pfn {self.zone_start_pfn:#x}+{self.spanned_pages}>"


class Node:
    """pglist_data: one NUMA node with its zones (all zone types of the arch, some empty)."""

    def __init__(self, nid: int, start_pfn: int, end_pfn: int) -> None:
        self.nid = nid
        self.node_start_pfn = start_pfn
        self.node_spanned_pages = end_pfn - start_pfn
        self.zones: list[Zone] = []
        self.cpus: list[int] = []
        self.kswapd_order = 0
        self.kswapd_highest_zoneidx = 0
        self.kswapd_failures = 0

    def populated_zones(self) -> list[Zone]:
        return [z for z in self.zones if z.populated()]


class PageAllocator:
    """The zoned buddy allocator of one guest. `phys` is written on __GFP_ZERO."""

    def __init__(self, config: KernelConfig, phys: PhysicalMemory, vmstat: dict) -> None:
        self.config = config
        self.phys = phys
        self.vmstat = vmstat
        # smp_processor_id(): the CPU of the task in the kernel now (Kernel.current_cpu;
        # 0: none, a kernel thread); allocations and frees without a `cpu` use its lists
        self.current_cpu = 0
        self.arch = config.arch
        self.era = config.era
        self.nr_pages = config.nr_pages
        self.page_offset = PAGE_OFFSET[self.arch]
        self.init_on_alloc = bool(getattr(config, "init_on_alloc", False))  # zero every allocation
        self.init_on_free = bool(getattr(config, "init_on_free", False))  # zero every freed block
        self.stall = 0.0  # seconds of the current caller's zeroing: its CPU and stalls beneath the guest
        self.pf_memalloc = False  # set while reclaim runs: its allocations ignore watermarks
        self.min_free_kbytes = 0
        self.user_min_free_kbytes = config.min_free_kbytes
        self.watermark_scale_factor = config.watermark_scale_factor
        self.watermark_boost_factor = getattr(config, "watermark_boost_factor", WATERMARK_BOOST_FACTOR)
        self.lowmem_reserve_ratio = list(config.lowmem_reserve_ratio)
        # vm.percpu_pagelist_high_fraction (6.x): 0 sizes pcp->high from LOW
        self.percpu_pagelist_high_fraction = 0
        self.totalreserve_pages = 0
        self.reserved_pages = 0  # boot reservations: low 1 MiB, kernel image, memmap
        self.kernel_image_pages = 0
        self.memmap_pages = 0
        # Hooks the composition root (kernel.py) connects. Defaults count and do nothing.
        self.wake_kswapd_hook: Callable[[Node, int, int, int], None] | None = None
        self.direct_reclaim_hook: Callable[[int, int, list[Zone], int], int] | None = None
        self.oom_hook: Callable[[int, int, int], bool] | None = None
        # compaction.Compaction (6.x; compaction came in 2.6.35): direct compaction
        self.compaction = None
        # current->capture_control while direct compaction runs (compaction.CaptureControl):
        # __free_one_page hands it a block of the requested order instead of freeing it
        self.capture_control = None
        # zone_reclaimable_pages(zone), from reclaim (should_reclaim_retry); None: 0
        self.zone_reclaimable_hook: Callable[[Zone], int] | None = None
        # free page reporting (page_reporting.py): notified when __free_one_page makes a
        # block of at least this order; never until a reporting device registers
        self.page_reporting_order = NR_ORDERS
        self.page_reporting_notify: Callable[[], None] | None = None
        # kmem: told when a struct page is created (its memmap bytes change), or None
        self.page_created_hook: Callable[[int], None] | None = None
        self._build_nodes()
        # memmap: one struct page per frame, created on first use (pfn_to_page). Heads of
        # free blocks always exist, so a missing descriptor is never a free buddy.
        self.mem_map: list[Page | None] = [None] * self.nr_pages
        self.reserved = bytearray(self.nr_pages)  # 1: memblock-reserved at boot
        self.highmem_start = min(
            [z.zone_start_pfn for z in self.zones if z.is_highmem] or [self.nr_pages]
        )
        # zone of a pfn, per MAX_ORDER block (zone and node boundaries are block-aligned)
        self._zone_of_block: list[Zone] = [None] * (
            (self.nr_pages + MAX_ORDER_NR_PAGES - 1) >> MAX_ORDER
        )
        for z in self.zones:
            for b in range(z.zone_start_pfn >> MAX_ORDER, (z.end_pfn + MAX_ORDER_NR_PAGES - 1) >> MAX_ORDER):
                self._zone_of_block[b] = z
        self._plans: dict[tuple[int, int], tuple] = {}
        self._fast_plans: list[dict[int, tuple]] = [{} for _ in self.nodes]
        # pageblocks: HUGETLB_PAGE_ORDER capped at MAX_ORDER (6.1: MAX_ORDER - 1 of its
        # exclusive MAX_ORDER): 2 MiB huge pages on x86_64 and i386 PAE, 4 MiB without PAE
        self.pageblock_order = 9 if self.arch == "x86_64" or getattr(config, "pae", False) else 10
        self.pageblock_nr_pages = 1 << self.pageblock_order
        nblocks = (self.nr_pages + self.pageblock_nr_pages - 1) >> self.pageblock_order
        # memmap_init_range() marks every pageblock MOVABLE; with grouping by mobility
        # disabled set_pageblock_migratetype() stores UNMOVABLE instead
        self.page_group_by_mobility_disabled = self.era != "6.x"
        self.pageblock_mt = bytearray(
            [MIGRATE_UNMOVABLE if self.page_group_by_mobility_disabled else MIGRATE_MOVABLE]
        ) * nblocks
        self.pageblock_skip = bytearray(nblocks)  # PB_migrate_skip (compaction)
        # free_cold_page: 2.6.20's cold list; 6.x has one set of lists (4.15 dropped cold)
        self._cold_list = 1 if self.era != "6.x" else 0
        # pcp_allowed_order(): 2.6.20 caches order 0 only; 6.1 orders up to
        # PAGE_ALLOC_COSTLY_ORDER and, with CONFIG_TRANSPARENT_HUGEPAGE (hvsim builds
        # THP on x86_64 only, as huge_memory.init_thp), pageblock order
        if self.era != "6.x":
            self.pcp_orders = frozenset((0,))
        else:
            self.pcp_orders = frozenset(range(PAGE_ALLOC_COSTLY_ORDER + 1))
            if self.arch == "x86_64":
                self.pcp_orders |= {self.pageblock_order}

    # ------------------------------------------------------------------ layout
    def _build_nodes(self) -> None:
        cfg = self.config
        n = cfg.nodes
        # Node boundaries on MAX_ORDER blocks; the last node takes the remainder.
        per_node = (self.nr_pages // n) & ~(MAX_ORDER_NR_PAGES - 1)
        self.nodes: list[Node] = []
        for nid in range(n):
            start = nid * per_node
            end = self.nr_pages if nid == n - 1 else start + per_node
            node = Node(nid, start, end)
            lo = 0
            for idx, (name, limit) in enumerate(ZONE_LAYOUT[self.arch]):
                hi_pfn = self.nr_pages if limit is None else limit >> PAGE_SHIFT
                zs, ze = max(start, lo), min(end, hi_pfn)
                if ze < zs:
                    ze = zs
                zone = Zone(node, name, idx, zs if ze > zs else zs, ze)
                node.zones.append(zone)
                lo = hi_pfn
            self.nodes.append(node)
        for cpu in range(cfg.cpus):
            self.nodes[cpu * n // cfg.cpus].cpus.append(cpu)
        self.cpu_to_node = [cpu * n // cfg.cpus for cpu in range(cfg.cpus)]
        if cfg.numa_distance is not None:
            self.distance = [list(r) for r in cfg.numa_distance]
        else:
            self.distance = [[10 if i == j else 20 for j in range(n)] for i in range(n)]
        self.zones: list[Zone] = [z for node in self.nodes for z in node.zones if z.populated()]
        self.all_zones: list[Zone] = [z for node in self.nodes for z in node.zones]

    def pfn_to_page(self, pfn: int) -> Page:
        """The struct page of a frame, created on first use."""
        page = self.mem_map[pfn]
        if page is None:
            flags = PG_reserved if self.reserved[pfn] else 0
            if pfn >= self.highmem_start:
                flags |= PG_highmem
            page = self.mem_map[pfn] = Page(pfn, flags)
            if self.page_created_hook is not None:
                self.page_created_hook(pfn)
        return page

    def zone_of(self, pfn: int) -> Zone:
        return self._zone_of_block[pfn >> MAX_ORDER]

    def page_address(self, page: Page) -> int:
        """Kernel virtual address of a lowmem page in the direct map."""
        if page.flags & PG_highmem:
            raise KernelBug(f"page_address of highmem page pfn {page.pfn:#x} without kmap")
        return self.page_offset + (page.pfn << PAGE_SHIFT)

    def virt_to_page(self, addr: int) -> Page:
        pfn = (addr - self.page_offset) >> PAGE_SHIFT
        if not 0 <= pfn < self.nr_pages:
            raise KernelBug(f"virt_to_page: {addr:#x} is not in the direct map")
        return self.pfn_to_page(pfn)

    # ------------------------------------------------------------------ boot
    def boot(self) -> None:
        """Reserve low memory, the kernel image and the memmap; free the rest to the buddy
        lists; size per-CPU lists; compute min_free_kbytes, watermarks and reserves."""
        cfg = self.config
        reserved = self.reserved
        for pfn in range(min(LOW_RESERVED >> PAGE_SHIFT, self.nr_pages)):
            reserved[pfn] = 1
        k0 = KERNEL_LOAD_ADDR >> PAGE_SHIFT
        k1 = k0 + (cfg.kernel_image >> PAGE_SHIFT)
        reserved[k0:k1] = b"\x01" * (k1 - k0)
        self.kernel_image_pages = k1 - k0
        # memmap: sizeof(struct page) per frame of each node, allocated top-down in the
        # node's highest lowmem zone (memblock allocates from the top). A distribution's
        # SPARSEMEM_VMEMMAP kernel allocates it per whole 128 MiB section.
        per = STRUCT_PAGE_SIZE[self.arch]
        distro = cfg.distro != "none"
        self.memmap_pages = 0
        self.memmap_frames: list[tuple[int, int]] = []  # (memmap pfn, first pfn it describes)
        for node in self.nodes:
            spanned = node.node_spanned_pages
            if distro:
                spanned = -(-spanned // PAGES_PER_SECTION) * PAGES_PER_SECTION
            pages = -(-(spanned * per) // PAGE_SIZE)
            got = self._memblock_alloc_top(node, pages)
            self.memmap_pages += len(got)
            per_frame = PAGE_SIZE // per
            for j, pfn in enumerate(sorted(got)):
                self.memmap_frames.append((pfn, node.node_start_pfn + j * per_frame))
        self.early_reserved_pages = 0
        if distro:
            # the rest of the distribution kernel's early (memblock) allocations
            early = EARLY_RESERVED // PAGE_SIZE + PERCPU_PAGES_PER_CPU * cfg.cpus
            early += sum(self.large_system_hash_pages())
            self.early_reserved_pages = len(self._memblock_alloc_top(self.nodes[0], early))
        for zone in self.zones:
            zone.managed_pages = zone.present_pages - sum(
                reserved[zone.zone_start_pfn : zone.end_pfn]
            )
        self.reserved_pages = sum(reserved)
        if self.totalram_pages() < self.pageblock_nr_pages * MIGRATE_TYPES:
            # build_all_zonelists(): too little memory to group by mobility
            self.page_group_by_mobility_disabled = True
            self.pageblock_mt[:] = bytes(len(self.pageblock_mt))
        # Hand the rest to the buddy: maximal aligned runs, order by order, like
        # memblock_free_all(); 6.x frees boot memory to the tail of the lists.
        to_tail = self.era == "6.x"
        for zone in self.zones:
            pfn, end = zone.zone_start_pfn, zone.end_pfn
            while pfn < end:
                if reserved[pfn]:
                    pfn += 1
                    continue
                order = MAX_ORDER
                while order and (pfn & ((1 << order) - 1) or pfn + (1 << order) > end):
                    order -= 1
                while order and any(reserved[pfn : pfn + (1 << order)]):
                    order -= 1
                self._free_one_page(zone, self.pfn_to_page(pfn), pfn, order, to_tail)
                pfn += 1 << order
        self._setup_pcp()
        self.init_min_free_kbytes()

    def _memblock_alloc_top(self, node: Node, pages: int) -> list[int]:
        """Reserve `pages` free frames from the top of the node's highest lowmem zone
        (node 0's for an all-highmem node), as memblock allocates; their pfns."""
        reserved = self.reserved
        lowmem = [z for z in node.zones if z.populated() and not z.is_highmem]
        if not lowmem:  # an all-highmem node keeps its memmap on node 0's lowmem
            lowmem = [z for z in self.nodes[0].zones if z.populated() and not z.is_highmem]
        top = lowmem[-1].end_pfn
        got = []
        while pages and top > 0:
            top -= 1
            if not reserved[top]:
                reserved[top] = 1
                got.append(top)
                pages -= 1
        return got

    def large_system_hash_pages(self) -> tuple[int, int]:
        """Pages of the dentry and inode hash tables a 6.x kernel allocates at boot
        (alloc_large_system_hash for "Dentry cache" (scale 13) and "Inode-cache" (scale
        14), 8-byte buckets): one bucket per 2**scale bytes of nr_kernel_pages, rounded
        to a power of two, at most 1/16 of memory."""
        per = STRUCT_PAGE_SIZE[self.arch]
        nr_kernel_pages = 0
        for zone in self.zones:  # free_area_init_core: present less the zone's memmap
            if zone.present_pages and not zone.is_highmem:
                memmap = -(-(zone.spanned_pages * per) // PAGE_SIZE)
                nr_kernel_pages += max(zone.present_pages - memmap, 0)
        out = []
        for scale in (13, 14):
            n = -(-nr_kernel_pages // 256) * 256  # round_up to 1 MiB of pages
            n >>= scale - PAGE_SHIFT
            n = 1 << max(n - 1, 0).bit_length()  # roundup_pow_of_two
            n = min(n, (self.nr_pages << PAGE_SHIFT >> 4) // 8)
            n = 1 << (n.bit_length() - 1)  # ilog2
            out.append(-(-(8 * n) // PAGE_SIZE))
        return tuple(out)

    def _setup_pcp(self) -> None:
        ncpu = self.config.cpus
        if self.era == "6.x":
            # setup_zone_pageset(): one per_cpu_pages per CPU with NR_PCP_LISTS lists;
            # high and batch are set by zone_pcp_update() once the watermarks exist
            for zone in self.zones:
                zone.pcp = [(PerCpuPages(0, 1, NR_PCP_LISTS, self.pageblock_order),)
                            for _ in range(ncpu)]
            return
        for zone in self.zones:
            # zone_batchsize() of 2.6.20
            batch = zone.present_pages // 1024
            if batch * PAGE_SIZE > 512 * 1024:
                batch = (512 * 1024) // PAGE_SIZE
            batch //= 4
            if batch < 1:
                batch = 1
            batch = (1 << (fls(batch + batch // 2) - 1)) - 1
            zone.pcp_batch = batch
            zone.pcp = [
                (PerCpuPages(6 * batch, max(1, batch)), PerCpuPages(2 * batch, max(1, batch // 2)))
                for _ in range(ncpu)
            ]

    def zone_pcp_update(self, zone: Zone) -> None:
        """zone_set_pageset_high_and_batch(zone, 0) (6.1): zone_batchsize() =
        min(managed >> 10, 1 MiB of pages) / 4, clamped to 2^n - 1, at least 1;
        zone_highsize() = the zone's LOW watermark (or managed /
        percpu_pagelist_high_fraction) split over the node's CPUs, at least 4 x batch."""
        batch = min(zone.managed_pages >> 10, (1 << 20) // PAGE_SIZE) // 4
        if batch < 1:
            batch = 1
        batch = (1 << ((batch + batch // 2).bit_length() - 1)) - 1  # rounddown_pow_of_two - 1
        batch = max(1, batch)
        if self.percpu_pagelist_high_fraction:
            total = zone.managed_pages // self.percpu_pagelist_high_fraction
        else:
            total = zone.watermark[WMARK_LOW]
        ncpus = len(zone.node.cpus) or self.config.cpus
        high = max(total // ncpus, batch << 2)
        zone.pcp_batch = batch
        threshold = self.stat_threshold(zone)  # (refresh_zone_stat_thresholds)
        for (pcp,) in zone.pcp:
            pageset_update(pcp, high, batch, zone.reclaim_active)
            pcp.stat_threshold = threshold

    def set_percpu_pagelist_high_fraction(self, fraction: int) -> None:
        """vm.percpu_pagelist_high_fraction (6.x): 0 (default) sizes pcp->high from the
        LOW watermark; else managed / fraction, at least MIN_PERCPU_PAGELIST_HIGH_FRACTION
        (8)."""
        if fraction and fraction < 8:
            raise ValueError("/proc/sys/vm/percpu_pagelist_high_fraction: 0 or at least 8 (EINVAL)")
        if fraction == self.percpu_pagelist_high_fraction:
            return
        self.percpu_pagelist_high_fraction = fraction
        if self.era == "6.x":
            for zone in self.zones:
                self.zone_pcp_update(zone)

    def lowmem_managed(self) -> int:
        return sum(z.managed_pages for z in self.zones if not z.is_highmem)

    def init_min_free_kbytes(self) -> None:
        """init_per_zone_wmark_min(): min_free_kbytes from lowmem, then watermarks."""
        if self.era == "6.x":
            # nr_free_buffer_pages() at init: managed lowmem pages (high watermarks are 0)
            lowmem_kbytes = self.lowmem_managed() * (PAGE_SIZE >> 10)
            hi_clamp = 262144
        else:
            lowmem_kbytes = sum(z.present_pages for z in self.zones if not z.is_highmem) * (
                PAGE_SIZE >> 10
            )
            hi_clamp = 65536
        computed = min(max(int_sqrt(lowmem_kbytes * 16), 128), hi_clamp)
        if self.user_min_free_kbytes is not None:
            self.min_free_kbytes = self.user_min_free_kbytes
        else:
            self.min_free_kbytes = computed
        self.setup_per_zone_wmarks()
        self.setup_per_zone_lowmem_reserve()

    def setup_per_zone_wmarks(self) -> None:
        pages_min = self.min_free_kbytes >> (PAGE_SHIFT - 10)
        if self.era == "6.x":
            lowmem_pages = sum(z.managed_pages for z in self.zones if not z.is_highmem)
        else:
            lowmem_pages = sum(z.present_pages for z in self.zones if not z.is_highmem)
        for zone in self.all_zones:
            size = zone.managed_pages if self.era == "6.x" else zone.present_pages
            tmp = pages_min * size // lowmem_pages if lowmem_pages else 0
            if zone.is_highmem:
                wmin = min(max(size // 1024, SWAP_CLUSTER_MAX), 128)
            else:
                wmin = tmp
            zone.watermark_boost = 0  # __setup_per_zone_wmarks resets the boost
            if self.era == "6.x":
                dist = max(tmp >> 2, mult_frac(size, self.watermark_scale_factor, 10000))
                zone.watermark = [wmin, wmin + dist, wmin + 2 * dist]
            else:
                zone.watermark = [wmin, wmin + (tmp >> 2), wmin + (tmp >> 1)]
        self._calculate_totalreserve_pages()
        for plans in self._fast_plans:
            plans.clear()
        if self.era == "6.x" and self.zones and self.zones[0].pcp:
            # the watermarks changed: update the pcp batch and high limits
            for zone in self.zones:
                self.zone_pcp_update(zone)

    def setup_per_zone_lowmem_reserve(self) -> None:
        for node in self.nodes:
            zones = node.zones
            nz = len(zones)
            for i, zone in enumerate(zones):
                zone.lowmem_reserve = [0] * nz
                ratio = self.lowmem_reserve_ratio[i]
                size_i = zone.managed_pages if self.era == "6.x" else zone.present_pages
                clear = ratio == 0 or size_i == 0
                upper = 0
                for j in range(i + 1, nz):
                    upper += zones[j].managed_pages if self.era == "6.x" else zones[j].present_pages
                    zone.lowmem_reserve[j] = 0 if clear else upper // ratio
        self._calculate_totalreserve_pages()
        self._plans.clear()
        for plans in self._fast_plans:
            plans.clear()

    def _calculate_totalreserve_pages(self) -> None:
        total = 0
        for zone in self.all_zones:
            if not zone.lowmem_reserve:
                continue
            mx = max(zone.lowmem_reserve[zone.idx :] or [0]) + zone.high_wmark()
            total += min(mx, zone.managed_pages)
        self.totalreserve_pages = total

    def set_min_free_kbytes(self, kbytes: int) -> None:
        """Writing /proc/sys/vm/min_free_kbytes recomputes every watermark."""
        self.user_min_free_kbytes = kbytes
        self.min_free_kbytes = kbytes
        self.setup_per_zone_wmarks()

    def set_watermark_scale_factor(self, factor: int) -> None:
        self.watermark_scale_factor = factor
        self.setup_per_zone_wmarks()

    def set_watermark_boost_factor(self, factor: int) -> None:
        """/proc/sys/vm/watermark_boost_factor (0 disables boosting); boosts already made stay."""
        self.watermark_boost_factor = factor

    def set_watermark_boost(self, zone: Zone, boost: int) -> None:
        """zone->watermark_boost = boost: every watermark moves with it (wmark_pages)."""
        d = boost - zone.watermark_boost
        if d:
            zone.watermark_boost = boost
            zone.watermark = [w + d for w in zone.watermark]
            self._invalidate_fast_plans()

    def boost_watermark(self, zone: Zone) -> bool:
        """boost_watermark (mm/page_alloc.c 6.1): raise the zone's watermarks by a
        pageblock, at most watermark_boost_factor/10000 of its unboosted HIGH (at least a
        pageblock); not in zones smaller than four pageblocks, nor before HIGH is set."""
        if not self.watermark_boost_factor:
            return False
        nb = self.pageblock_nr_pages
        if nb * 4 > zone.managed_pages:
            return False
        max_boost = mult_frac(zone.watermark[WMARK_HIGH] - zone.watermark_boost,
                              self.watermark_boost_factor, 10000)
        if not max_boost:
            return False
        max_boost = max(nb, max_boost)
        self.set_watermark_boost(zone, min(zone.watermark_boost + nb, max_boost))
        return True

    def _boosted_wakeup(self, zone: Zone) -> None:
        """rmqueue's out: a zone boosted by this allocation's fallback wakes kswapd
        (wakeup_kswapd(zone, 0, 0, zone_idx)): the node may be balanced otherwise."""
        zone.boosted_watermark = False
        self.wakeup_kswapd(zone.node, 0, 0, zone.idx)

    def set_lowmem_reserve_ratio(self, ratios: list[int]) -> None:
        self.lowmem_reserve_ratio = list(ratios)
        self.setup_per_zone_lowmem_reserve()

    # ------------------------------------------------------------------ buddy core
    def get_pageblock_migratetype(self, pfn: int) -> int:
        return self.pageblock_mt[pfn >> self.pageblock_order]

    def set_pageblock_migratetype(self, pfn: int, mt: int) -> None:
        if self.page_group_by_mobility_disabled and mt < MIGRATE_PCPTYPES:
            mt = MIGRATE_UNMOVABLE
        self.pageblock_mt[pfn >> self.pageblock_order] = mt

    def gfp_migratetype(self, gfp: int) -> int:
        """gfp_migratetype(): MOVABLE for __GFP_MOVABLE, RECLAIMABLE for __GFP_RECLAIMABLE,
        else UNMOVABLE (always UNMOVABLE with grouping by mobility disabled)."""
        if self.page_group_by_mobility_disabled:
            return MIGRATE_UNMOVABLE
        mt = (gfp & (G.MOVABLE | G.RECLAIMABLE)) >> GFP_MOVABLE_SHIFT
        if mt == MIGRATE_PCPTYPES:
            raise KernelBug(f"gfp {G.format_gfp(gfp)}: both __GFP_MOVABLE and __GFP_RECLAIMABLE")
        return mt

    def _free_one_page(self, zone: Zone, page: Page, pfn: int, order: int, to_tail: bool = False,
                       report: bool = True, mt: int | None = None) -> None:
        """__free_one_page: merge with free buddies, then insert the (merged) block on the
        free list of `mt` (default: the pageblock's type, as free_one_page looks it up);
        page_reporting_notify_free(order) unless `report` is False (FPI_SKIP_REPORT_NOTIFY)."""
        mem_map = self.mem_map
        if mt is None:
            mt = self.pageblock_mt[pfn >> self.pageblock_order]
        pb_order = self.pageblock_order
        start, end = zone.zone_start_pfn, zone.zone_start_pfn + zone.spanned_pages
        zone.nr_free += 1 << order
        capc = self.capture_control
        if capc is not None and (capc.page is not None or capc.cc.zone is not zone):
            capc = None  # task_capc(): only the compacting zone, until one is captured
        buddy_pfn = pfn ^ (1 << order)
        while order < MAX_ORDER:
            if capc is not None and capc.cc.order == order and self._capture(capc, zone, pfn, order, mt):
                return
            buddy_pfn = pfn ^ (1 << order)
            if not start <= buddy_pfn < end:
                break
            buddy = mem_map[buddy_pfn]
            if buddy is None or not buddy.flags & PG_buddy or buddy.private != order:
                break
            if order >= pb_order:
                # no merge between an isolated pageblock and a normal one
                bmt = self.pageblock_mt[buddy_pfn >> pb_order]
                if bmt != mt and (mt == MIGRATE_ISOLATE or bmt == MIGRATE_ISOLATE):
                    break
            area = zone.free_area[order]
            area.free_list[buddy.index].remove(buddy)
            area.nr_free -= 1
            buddy.flags &= _NOT_FREE
            buddy.private = 0
            buddy.index = 0
            pfn &= buddy_pfn
            order += 1
        page = mem_map[pfn]
        if page is None:
            page = self.pfn_to_page(pfn)
        page.flags |= PG_buddy
        page.private = order
        page.index = mt
        area = zone.free_area[order]
        if not to_tail and self.era == "6.x" and order < MAX_ORDER - 1:
            # buddy_merge_likely(): is the buddy of the next-higher block free?
            higher = buddy_pfn & pfn
            hb = higher ^ (1 << (order + 1))
            if start <= hb < end:
                b = mem_map[hb]
                to_tail = b is not None and bool(b.flags & PG_buddy) and b.private == order + 1
        if to_tail:
            area.free_list[mt].add_tail(page)
        else:
            area.free_list[mt].add(page)
        area.nr_free += 1
        if order >= self.page_reporting_order and report:
            self.page_reporting_notify()

    def _capture(self, capc, zone: Zone, pfn: int, order: int, mt: int) -> bool:
        """compaction_capture(): the block being freed at the order direct compaction asks
        for goes to the compacting task (capc.page), not on a free list; not from an
        isolated pageblock, nor below pageblock order from a MOVABLE one (a smaller
        request must not pollute a movable pageblock)."""
        if mt == MIGRATE_ISOLATE or (order < self.pageblock_order and mt == MIGRATE_MOVABLE):
            return False
        page = self.mem_map[pfn]
        if page is None:
            page = self.pfn_to_page(pfn)
        capc.page = page
        zone.nr_free -= 1 << order  # __mod_zone_freepage_state(zone, -(1 << order))
        return True

    def _del_page_from_free_list(self, zone: Zone, page: Page, order: int) -> None:
        area = zone.free_area[order]
        area.free_list[page.index].remove(page)
        area.nr_free -= 1
        page.flags &= _NOT_FREE
        page.private = 0
        page.index = 0
        zone.nr_free -= 1 << order

    def _rmqueue_smallest(self, zone: Zone, order: int, migratetype: int | None = None) -> Page | None:
        """__rmqueue_smallest + expand: lowest-addressed part of the first fitting block
        on the free lists of `migratetype`; the upper halves go back on that type's lists.
        migratetype None takes from any type's lists (a helper for tests and tools)."""
        if migratetype is None:
            for mt in range(MIGRATE_TYPES):
                page = self._rmqueue_smallest(zone, order, mt)
                if page is not None:
                    return page
            return None
        free_area = zone.free_area
        for current in range(order, NR_ORDERS):
            area = free_area[current]
            head = area.free_list[migratetype]
            page = head.lru_next
            if page is head:
                continue
            head.remove(page)
            area.nr_free -= 1
            page.flags &= _NOT_FREE
            page.private = 0
            zone.nr_free -= 1 << order
            # expand(): hand the upper halves back, highest first
            pfn = page.pfn
            high = current
            size = 1 << high
            mem_map = self.mem_map
            while high > order:
                high -= 1
                size >>= 1
                half = mem_map[pfn + size]
                if half is None:
                    half = self.pfn_to_page(pfn + size)
                a = free_area[high]
                a.free_list[migratetype].add(half)
                a.nr_free += 1
                half.flags |= PG_buddy
                half.private = high
                half.index = migratetype
            return page
        return None

    # ---- fallback stealing (mm/page_alloc.c 6.1)
    def can_steal_fallback(self, order: int, start_mt: int) -> bool:
        if order >= self.pageblock_order:
            return True
        return (
            order >= self.pageblock_order // 2
            or start_mt == MIGRATE_RECLAIMABLE
            or start_mt == MIGRATE_UNMOVABLE
            or self.page_group_by_mobility_disabled
        )

    def find_suitable_fallback(self, area: FreeArea, order: int, migratetype: int,
                               only_stealable: bool) -> tuple[int, bool]:
        """(fallback migratetype or -1, can_steal)."""
        can_steal = False
        if area.nr_free == 0:
            return -1, False
        for fallback_mt in FALLBACKS[migratetype]:
            if not area.free_list[fallback_mt]:
                continue
            if self.can_steal_fallback(order, migratetype):
                can_steal = True
            if not only_stealable:
                return fallback_mt, can_steal
            if can_steal:
                return fallback_mt, can_steal
        return -1, can_steal

    def move_freepages_block(self, zone: Zone, pfn: int, migratetype: int,
                             count_movable: bool = False) -> tuple[int, int]:
        """move_freepages_block: every free block inside the pageblock of `pfn` to the
        tail of `migratetype`'s lists. Returns (pages moved, allocated LRU pages seen)."""
        nr = self.pageblock_nr_pages
        start = pfn & ~(nr - 1)
        end = start + nr - 1
        if not zone.zone_start_pfn <= start < zone.end_pfn:
            start = pfn
        if not zone.zone_start_pfn <= end < zone.end_pfn:
            return 0, 0
        mem_map = self.mem_map
        moved = movable = 0
        p = start
        while p <= end:
            page = mem_map[p]
            if page is None or not page.flags & PG_buddy:
                if count_movable and page is not None and page.flags & PG_lru:
                    movable += 1
                p += 1
                continue
            order = page.private
            area = zone.free_area[order]
            area.free_list[page.index].remove(page)  # move_to_free_list: list_move_tail
            area.free_list[migratetype].add_tail(page)
            page.index = migratetype
            p += 1 << order
            moved += 1 << order
        return moved, movable

    def steal_suitable_fallback(self, zone: Zone, page: Page, alloc_flags: int, start_type: int,
                                whole_block: bool) -> None:
        current_order = page.private
        pfn = page.pfn
        old_block_type = self.pageblock_mt[pfn >> self.pageblock_order]
        if old_block_type != MIGRATE_HIGHATOMIC:
            if current_order >= self.pageblock_order:
                # change_pageblock_range(): take ownership of every pageblock
                for b in range(pfn, pfn + (1 << current_order), self.pageblock_nr_pages):
                    self.set_pageblock_migratetype(b, start_type)
                whole_block = False
            # boost the watermarks to reclaim before the next fallback; kswapd is woken
            # at the end of this rmqueue as the node may be balanced overall
            elif self.boost_watermark(zone) and alloc_flags & ALLOC_KSWAPD:
                zone.boosted_watermark = True
            if whole_block:
                free_pages, movable_pages = self.move_freepages_block(zone, pfn, start_type, True)
                if free_pages:
                    if start_type == MIGRATE_MOVABLE:
                        alike_pages = movable_pages
                    elif old_block_type == MIGRATE_MOVABLE:
                        alike_pages = self.pageblock_nr_pages - (free_pages + movable_pages)
                    else:
                        alike_pages = 0
                    if (free_pages + alike_pages >= (1 << (self.pageblock_order - 1))
                            or self.page_group_by_mobility_disabled):
                        self.set_pageblock_migratetype(pfn, start_type)
                    return
        # single_page: move_to_free_list
        area = zone.free_area[current_order]
        area.free_list[page.index].remove(page)
        area.free_list[start_type].add_tail(page)
        page.index = start_type

    def _rmqueue_fallback(self, zone: Zone, order: int, start_mt: int, alloc_flags: int) -> bool:
        """__rmqueue_fallback: put a block of another type on start_mt's lists (stealing
        its pageblock where the rules allow); True if one was found."""
        if start_mt >= MIGRATE_PCPTYPES:
            return False
        min_order = self.pageblock_order if alloc_flags & ALLOC_NOFRAGMENT else order
        free_area = zone.free_area
        current = MAX_ORDER
        found = -1
        while current >= min_order:
            found, can_steal = self.find_suitable_fallback(free_area[current], current, start_mt, False)
            if found != -1:
                break
            current -= 1
        if found == -1:
            return False
        if not can_steal and start_mt == MIGRATE_MOVABLE and current > order:
            # find_smallest: a movable request that cannot steal the pageblock splits the
            # smallest block instead of the largest
            for current in range(order, NR_ORDERS):
                found, can_steal = self.find_suitable_fallback(free_area[current], current, start_mt, False)
                if found != -1:
                    break
        page = free_area[current].free_list[found].lru_next
        self.steal_suitable_fallback(zone, page, alloc_flags, start_mt, can_steal)
        self.vmstat["pgalloc_extfrag"] = self.vmstat.get("pgalloc_extfrag", 0) + 1
        return True

    def _rmqueue_buddy(self, zone: Zone, order: int, mt: int, alloc_flags: int) -> Page | None:
        """__rmqueue (plus rmqueue_buddy's HIGHATOMIC first for ALLOC_HIGHATOMIC)."""
        if order and alloc_flags & ALLOC_HIGHATOMIC:
            page = self._rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
            if page is not None:
                return page
        while True:
            page = self._rmqueue_smallest(zone, order, mt)
            if page is not None:
                return page
            if not self._rmqueue_fallback(zone, order, mt, alloc_flags):
                if alloc_flags & ALLOC_OOM and order:
                    # failing now is worse than failing a high-order atomic later
                    return self._rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
                return None

    def _rmqueue_bulk_plain(self, zone: Zone, count: int, pcp: PerCpuPages, mt: int,
                            alloc_flags: int = 0) -> int:
        """rmqueue_bulk, one __rmqueue per page: the twin of the inlined `_rmqueue_bulk`."""
        got = []
        for _ in range(count):
            page = self._rmqueue_buddy(zone, 0, mt, alloc_flags & ~ALLOC_HIGHATOMIC)
            if page is None:
                break
            got.append(page)
        got.reverse()
        pcp.lists[mt][:0] = got
        pcp.count += len(got)
        x = pcp.free_diff - len(got)  # __mod_zone_page_state(NR_FREE_PAGES, -i)
        pcp.free_diff = 0 if -x > pcp.stat_threshold else x
        return len(got)

    def _rmqueue_bulk(self, zone: Zone, count: int, pcp: PerCpuPages, mt: int = MIGRATE_UNMOVABLE,
                      alloc_flags: int = 0) -> int:
        """Refill the per-CPU list of `mt` with `count` order-0 pages, in ascending order
        from its head (rmqueue_bulk adds each at the tail, so the head is taken first)."""
        # NOTE: __rmqueue_smallest(zone, 0, mt) + expand + pfn_to_page inlined for speed
        # (the refill of every 'batch' order-0 pages of every fault): the same list
        # operations in the same order as `_rmqueue_bulk_plain`, which a hypothesis test
        # compares with it; the fallback (a steal, rare) goes through the plain code.
        free_area = zone.free_area
        mem_map = self.mem_map
        reserved = self.reserved
        highmem_start = self.highmem_start
        orders = range(NR_ORDERS)
        got = []
        append = got.append
        for _ in range(count):
            while True:
                for current in orders:
                    area = free_area[current]
                    head = area.free_list[mt]
                    page = head.lru_next
                    if page is not head:
                        break
                else:
                    if self._rmqueue_fallback(zone, 0, mt, alloc_flags):
                        continue
                    page = None
                break
            if page is None:
                break
            # head.remove(page)
            prev = page.lru_prev
            nxt = page.lru_next
            prev.lru_next = nxt
            nxt.lru_prev = prev
            page.lru_prev = page.lru_next = None
            head.nr -= 1
            area.nr_free -= 1
            page.flags &= _NOT_FREE
            page.private = 0
            zone.nr_free -= 1
            if current:
                # expand(): hand the upper halves back, highest first
                pfn = page.pfn
                size = 1 << current
                high = current
                while high:
                    high -= 1
                    size >>= 1
                    hpfn = pfn + size
                    half = mem_map[hpfn]
                    if half is None:  # pfn_to_page()
                        flags = PG_reserved if reserved[hpfn] else 0
                        if hpfn >= highmem_start:
                            flags |= PG_highmem
                        half = mem_map[hpfn] = Page(hpfn, flags)
                        if self.page_created_hook is not None:
                            self.page_created_hook(hpfn)
                    a = free_area[high]
                    lst = a.free_list[mt]
                    # lst.add(half)
                    nxt = lst.lru_next
                    half.lru_prev = lst
                    half.lru_next = nxt
                    nxt.lru_prev = half
                    lst.lru_next = half
                    lst.nr += 1
                    a.nr_free += 1
                    half.flags |= PG_buddy
                    half.private = high
                    half.index = mt
            append(page)
        got.reverse()  # pages[-1] is the head: the first one taken
        pcp.lists[mt][:0] = got
        pcp.count += len(got)
        x = pcp.free_diff - len(got)  # __mod_zone_page_state(NR_FREE_PAGES, -i)
        pcp.free_diff = 0 if -x > pcp.stat_threshold else x
        return len(got)

    def _free_pages_bulk(self, zone: Zone, count: int, pcp: PerCpuPages, pindex: int = 0) -> None:
        """free_pcppages_bulk: return `count` pages to the buddy lists from the tails of
        the per-CPU lists, round-robin from list `pindex` (lists found empty narrow the
        [min_pindex, max_pindex] range), each list drained while count lasts, a block of
        order o counting 1 << o (so count may go below zero on a high-order list); a
        block goes back to its pageblock's type as it is now (6.10+: no cached pcppage
        migratetype; 6.1 kept the type seen at free time in page->index). Each block
        adds 1 << order to this CPU's NR_FREE_PAGES diff (__free_one_page's
        __mod_zone_freepage_state), folded past the stat threshold."""
        count = min(count, pcp.count)
        t = pcp.stat_threshold
        x = pcp.free_diff
        lists = pcp.lists
        orders = pcp.orders
        min_pindex, max_pindex = 0, len(lists) - 1
        pindex -= 1
        while count > 0:
            while True:
                pindex += 1
                if pindex > max_pindex:
                    pindex = min_pindex
                if lists[pindex]:
                    break
                if pindex == max_pindex:
                    max_pindex -= 1
                if pindex == min_pindex:
                    min_pindex += 1
            pages = lists[pindex]
            order = orders[pindex]
            n = min(-(-count >> order), len(pages))
            victims = pages[:n]
            del pages[:n]
            pcp.count -= n << order
            count -= n << order
            for page in victims:  # list_last_entry first: the oldest
                self._free_one_page(zone, page, page.pfn, order)
            if order:
                step = 1 << order
                for _ in range(n):
                    x += step
                    if x > t or -x > t:
                        x = 0
            else:  # n steps of +1 from x (|x| <= t): folded each time it reaches t + 1
                first = t + 1 - x
                x = x + n if n < first else (n - first) % (t + 1)
        pcp.free_diff = x

    @staticmethod
    def _nr_pcp_free(pcp: PerCpuPages, high: int, batch: int, free_high: bool) -> int:
        """nr_pcp_free() (6.1): how many pages a free past `high` returns: everything
        when batch-freeing high-order pages; 1 with the list disabled; else batch <<
        free_factor (free_factor grows by one per such free, up to
        CONFIG_PCP_BATCH_SCALE_MAX, while below high - batch), clamped to
        [batch, high - batch]."""
        if free_high:
            return pcp.count
        if high < batch:
            return 1
        min_nr_free = batch
        max_nr_free = high - batch
        batch <<= pcp.free_factor
        if batch < max_nr_free and pcp.free_factor < PCP_BATCH_SCALE_MAX:
            pcp.free_factor += 1
        return min(max(batch, min_nr_free), max_nr_free)

    # ---- high-atomic reserve
    def reserve_highatomic_pageblock(self, page: Page, zone: Zone) -> None:
        max_managed = zone.managed_pages // 100 + self.pageblock_nr_pages
        if zone.nr_reserved_highatomic >= max_managed:
            return
        mt = self.pageblock_mt[page.pfn >> self.pageblock_order]
        if mt < MIGRATE_PCPTYPES:  # migratetype_is_mergeable(): not CMA, ISOLATE or reserved
            zone.nr_reserved_highatomic += self.pageblock_nr_pages
            self.set_pageblock_migratetype(page.pfn, MIGRATE_HIGHATOMIC)
            self.move_freepages_block(zone, page.pfn, MIGRATE_HIGHATOMIC)
            self._invalidate_fast_plans()

    def unreserve_highatomic_pageblock(self, zonelist, highest: int, migratetype: int,
                                       force: bool) -> bool:
        """Give one HIGHATOMIC pageblock with free pages back to `migratetype` (keeping one
        pageblock per zone unless `force`); True if free pages moved."""
        for zone in zonelist:
            if not force and zone.nr_reserved_highatomic <= self.pageblock_nr_pages:
                continue
            for order in range(NR_ORDERS):
                page = zone.free_area[order].free_list[MIGRATE_HIGHATOMIC].first()
                if page is None:
                    continue
                pfn = page.pfn
                if self.pageblock_mt[pfn >> self.pageblock_order] == MIGRATE_HIGHATOMIC:
                    zone.nr_reserved_highatomic -= min(self.pageblock_nr_pages,
                                                       zone.nr_reserved_highatomic)
                    self._invalidate_fast_plans()
                self.set_pageblock_migratetype(pfn, migratetype)
                if self.move_freepages_block(zone, pfn, migratetype)[0]:
                    return True
        return False

    def _invalidate_fast_plans(self) -> None:
        for plans in self._fast_plans:
            plans.clear()

    # ------------------------------------------------------------------ watermarks
    def zone_watermark_ok(self, zone: Zone, order: int, mark: int, highest_zoneidx: int,
                          alloc_flags: int, free: int | None = None) -> bool:
        """__zone_watermark_ok (6.x) or zone_watermark_ok (2.6.20). `free`: pages to test
        instead of the zone's free pages (should_reclaim_retry's free + reclaimable)."""
        free_pages = (zone.nr_free if free is None else free) - ((1 << order) - 1)
        mn = mark
        if self.era == "6.x":
            if alloc_flags & ALLOC_RESERVES:
                if alloc_flags & ALLOC_MIN_RESERVE:
                    mn -= mn // 2
                    if alloc_flags & ALLOC_NON_BLOCK:
                        mn -= mn // 4
                if alloc_flags & ALLOC_OOM:
                    mn -= mn // 2
            else:
                # __zone_watermark_unusable_free(): the high-atomic reserve is not free
                # for ordinary requests
                free_pages -= zone.nr_reserved_highatomic
            if free_pages <= mn + zone.lowmem_reserve[highest_zoneidx]:
                return False
            if not order:
                return True
            # a block of at least `order` on a list the request may take from
            highatomic = alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM)
            for o in range(order, NR_ORDERS):
                area = zone.free_area[o]
                if not area.nr_free:
                    continue
                fl = area.free_list
                if fl[0] or fl[1] or fl[2]:
                    return True
                if highatomic and fl[MIGRATE_HIGHATOMIC]:
                    return True
            return False
        # 2.6.20
        if alloc_flags & ALLOC_MIN_RESERVE:
            mn -= mn // 2
        if alloc_flags & ALLOC_NON_BLOCK:
            mn -= mn // 4
        if alloc_flags & ALLOC_OOM:
            mn -= mn // 2
        if free_pages <= mn + zone.lowmem_reserve[highest_zoneidx]:
            return False
        for o in range(order):
            free_pages -= zone.free_area[o].nr_free << o
            mn >>= 1
            if free_pages <= mn:
                return False
        return True

    # ------------------------------------------------------------------ zonelists
    def _plan(self, gfp: int, nid: int) -> tuple:
        """Zonelist and highest zone index for a gfp mask allocating on node `nid`."""
        key = (gfp & (G.GFP_ZONEMASK | G.THISNODE), nid)
        plan = self._plans.get(key)
        if plan is not None:
            return plan
        want = G.gfp_zone(gfp)
        names = [name for name, _ in ZONE_LAYOUT[self.arch]]
        if want not in names:  # DMA32 on i386 and HIGHMEM on x86_64 fall back to Normal
            want = G.ZONE_NORMAL
        highest = names.index(want)
        n = len(self.nodes)
        if gfp & G.THISNODE:
            order = [nid]
        else:
            order = sorted(range(n), key=lambda j: (self.distance[nid][j], (j - nid) % n))
        zonelist = []
        for j in order:
            for z in reversed(self.nodes[j].zones[: highest + 1]):
                if z.populated():
                    zonelist.append(z)
        plan = (tuple(zonelist), highest)
        self._plans[key] = plan
        return plan

    def zonelist(self, gfp: int, nid: int = 0) -> list[Zone]:
        return list(self._plan(gfp, nid)[0])

    # ------------------------------------------------------------------ allocation
    def alloc_pages(self, gfp: int, order: int = 0, cpu: int | None = None,
                    nid: int | None = None, oom_victim: bool = False) -> Page | None:
        """__alloc_pages: a block of 2**order pages, or None. The head page has _count 1.
        `cpu`: the allocating CPU (default: the current one, whose per-CPU lists serve
        it and whose node is the local one: numa_node_id())."""
        if cpu is None:
            cpu = self.current_cpu
        if nid is None:
            nid = self.cpu_to_node[cpu]
        plan = self._fast_plans[nid].get(gfp)
        if plan is None:
            plan = self._fast_plan(gfp, nid)
        marks, zonelist, highest, cold, zero, mt, flags = plan
        if order == 0:
            # NOTE: get_page_from_freelist + rmqueue_pcplist + prep_new_page inlined for
            # speed: this is the per-page path of every fault and slab refill. `marks`
            # hold LOW + lowmem_reserve + the high-atomic reserve (zone_watermark_fast);
            # with ALLOC_NOFRAGMENT only the local node's zones (a remote zone restarts
            # the walk without it, below).
            for zone, low in marks:
                if zone.nr_free <= low:
                    continue
                pcp = zone.pcp[cpu][cold]
                if pcp.free_factor:  # 6.1 rmqueue_pcplist halves it (0 in the 2.6 era)
                    pcp.free_factor >>= 1
                lst = pcp.lists[mt]
                if not lst:
                    self._rmqueue_bulk(zone, pcp.batch, pcp, mt, flags)
                    if zone.boosted_watermark:  # only a refill can steal (and boost)
                        self._boosted_wakeup(zone)
                    if not lst:
                        continue
                pcp.count -= 1
                page = lst.pop()
                page._count = 1
                zone.pgalloc += 1
                if zero:  # post_alloc_hook -> kernel_init_pages (inlined, one page)
                    self.stall += self.phys.zero(page.pfn)
                return page
        elif not 0 < order <= MAX_ORDER:
            raise ValueError(f"alloc_pages: order must be 0..{MAX_ORDER}, got {order}")
        else:
            for zone, _low in marks:
                if not self.zone_watermark_ok(zone, order, zone.watermark[WMARK_LOW], highest, flags):
                    continue
                page = self._rmqueue(zone, order, cpu, cold, mt, flags)
                if page is not None:
                    return self._prep_new_page(page, order, gfp, zone)
        if flags & ALLOC_NOFRAGMENT:
            # get_page_from_freelist: no zone without fragmenting; retry allowing it
            page = self._get_page_from_freelist(gfp, order, cpu, zonelist, highest, cold,
                                                ALLOC_WMARK_LOW | flags & ALLOC_KSWAPD)
            if page is not None:
                return page
        return self._alloc_slowpath(gfp, order, cpu, zonelist, highest, cold, oom_victim)

    def _fast_plan(self, gfp: int, nid: int) -> tuple:
        """Per (node, gfp): the zonelist with each zone's LOW mark + lowmem_reserve (+ the
        high-atomic reserve), the request's migratetype and its fast-path alloc_flags
        (ALLOC_NOFRAGMENT, ALLOC_KSWAPD)."""
        zonelist, highest = self._plan(gfp, nid)
        nofrag = self._alloc_flags_nofragment(zonelist, nid)
        fast_zones = [z for z in zonelist if z.node.nid == nid] if nofrag else zonelist
        if gfp & G.KSWAPD_RECLAIM:  # alloc_flags_nofragment() also sets ALLOC_KSWAPD
            nofrag |= ALLOC_KSWAPD
        marks = tuple(
            (z, z.watermark[WMARK_LOW] + z.lowmem_reserve[highest] + z.nr_reserved_highatomic)
            for z in fast_zones
        )
        zero = self._want_init(gfp)
        # __GFP_COLD selects 2.6.20's cold list; 4.15 removed it (6.x: one list set)
        cold = 1 if gfp & G.COLD and self.era != "6.x" else 0
        plan = (marks, zonelist, highest, cold, zero,
                self.gfp_migratetype(gfp), nofrag)
        self._fast_plans[nid][gfp] = plan
        return plan

    def _alloc_flags_nofragment(self, zonelist, nid: int) -> int:
        """alloc_flags_nofragment(): ALLOC_NOFRAGMENT when the preferred zone is Normal and
        the DMA32 zone below it is populated (CONFIG_ZONE_DMA32: x86_64 only)."""
        if self.page_group_by_mobility_disabled or self.arch != "x86_64" or not zonelist:
            return 0
        zone = zonelist[0]
        if zone.name != G.ZONE_NORMAL:
            return 0
        if len(self.nodes) > 1 and not zone.node.zones[zone.idx - 1].populated():
            return 0
        return ALLOC_NOFRAGMENT

    def _rmqueue(self, zone: Zone, order: int, cpu: int, cold: int,
                 mt: int = MIGRATE_UNMOVABLE, alloc_flags: int = 0) -> Page | None:
        """rmqueue: an order in `pcp_orders` from the per-CPU list of (order, `mt`); an
        order > 0 the list cannot give (6.1) and every other order from the buddy lists."""
        if order in self.pcp_orders:
            page = self._rmqueue_pcplist(zone, order, cpu, cold, mt, alloc_flags)
            if page is not None or order == 0:
                return page
        page = self._rmqueue_buddy(zone, order, mt, alloc_flags)
        if zone.boosted_watermark:
            self._boosted_wakeup(zone)
        return page

    def _rmqueue_pcplist(self, zone: Zone, order: int, cpu: int, cold: int, mt: int,
                         alloc_flags: int) -> Page | None:
        """rmqueue_pcplist + __rmqueue_pcplist: halve free_factor; an empty list is
        refilled with `batch` blocks (6.1: batch >> order, at least 2, when batch > 1);
        the head is taken."""
        pcp = zone.pcp[cpu][cold]
        pcp.free_factor >>= 1
        if order == 0:
            lst = pcp.lists[mt]
            if not lst:
                self._rmqueue_bulk(zone, pcp.batch, pcp, mt, alloc_flags)
                if zone.boosted_watermark:
                    self._boosted_wakeup(zone)
                if not lst:
                    return None
            pcp.count -= 1
            return lst.pop()
        pindex = order_to_pindex(mt, order)
        lst = pcp.lists[pindex]
        if not lst:
            batch = pcp.batch
            if batch > 1:
                batch = max(batch >> order, 2)
            self._rmqueue_bulk_order(zone, order, batch, pcp, pindex, mt, alloc_flags)
            if zone.boosted_watermark:
                self._boosted_wakeup(zone)
            if not lst:
                return None
        pcp.count -= 1 << order
        return lst.pop()

    def _rmqueue_bulk_order(self, zone: Zone, order: int, count: int, pcp: PerCpuPages,
                            pindex: int, mt: int, alloc_flags: int = 0) -> int:
        """rmqueue_bulk for order > 0: `count` blocks by __rmqueue, each added at the tail
        of list `pindex` (the first one taken is at the head)."""
        got = []
        for _ in range(count):
            page = self._rmqueue_buddy(zone, order, mt, alloc_flags & ~ALLOC_HIGHATOMIC)
            if page is None:
                break
            got.append(page)
        got.reverse()
        pcp.lists[pindex][:0] = got
        pcp.count += len(got) << order
        x = pcp.free_diff - (len(got) << order)  # __mod_zone_page_state(NR_FREE_PAGES, -(i << order))
        pcp.free_diff = 0 if -x > pcp.stat_threshold else x
        return len(got)

    def _prep_new_page(self, page: Page, order: int, gfp: int, zone: Zone) -> Page:
        page._count = 1
        page.private = 0
        zone.pgalloc += 1 << order
        if self._want_init(gfp):  # post_alloc_hook
            self.stall += self._kernel_init_pages(page.pfn, 1 << order)
        return page

    def _want_init(self, gfp: int) -> bool:
        """post_alloc_hook's `init`: !want_init_on_free() && want_init_on_alloc(gfp) (a
        block zeroed when it was freed is not zeroed again; __GFP_ZERO or init_on_alloc)."""
        return not self.init_on_free and bool(gfp & _GFP_ZERO or self.init_on_alloc)

    def _kernel_init_pages(self, pfn: int, n: int) -> float:
        """kernel_init_pages: clear_highpage of each of the `n` pages from `pfn`, on the
        CPU that allocates or frees them: `phys.zero` (a VM charges its page_zero_cost of
        guest CPU a page beside any stall beneath the guest). Returns seconds."""
        zero = self.phys.zero
        cost = 0.0
        for p in range(pfn, pfn + n):
            cost += zero(p)
        return cost

    def _get_page_from_freelist(self, gfp: int, order: int, cpu: int, zonelist, highest: int,
                                cold: int, alloc_flags: int) -> Page | None:
        wmark = alloc_flags & ALLOC_WMARK_MASK
        mt = self.gfp_migratetype(gfp)
        for zone in zonelist:
            if not alloc_flags & ALLOC_NO_WATERMARKS:
                if not self.zone_watermark_ok(zone, order, zone.watermark[wmark], highest, alloc_flags):
                    # zone_watermark_fast: an order-0 __GFP_HIGH request (GFP_ATOMIC) at
                    # MIN ignores the boost: MIN is where boosting stops
                    if not (order == 0 and zone.watermark_boost and wmark == WMARK_MIN
                            and alloc_flags & ALLOC_MIN_RESERVE
                            and self.zone_watermark_ok(zone, 0, zone.watermark[WMARK_MIN] - zone.watermark_boost,
                                                       highest, alloc_flags)):
                        continue
            page = self._rmqueue(zone, order, cpu, cold, mt, alloc_flags)
            if page is not None:
                if order and alloc_flags & ALLOC_HIGHATOMIC:
                    self.reserve_highatomic_pageblock(page, zone)
                return self._prep_new_page(page, order, gfp, zone)
        return None

    def _gfp_to_alloc_flags(self, gfp: int, order: int) -> int:
        flags = ALLOC_WMARK_MIN
        if gfp & G.KSWAPD_RECLAIM:
            flags |= ALLOC_KSWAPD
        if gfp & G.HIGH:
            flags |= ALLOC_MIN_RESERVE
        if not gfp & G.DIRECT_RECLAIM and not gfp & G.NOMEMALLOC:
            flags |= ALLOC_NON_BLOCK
            if order > 0 and not self.page_group_by_mobility_disabled:
                flags |= ALLOC_HIGHATOMIC  # 6.3+ (6.1: ALLOC_HARDER for __GFP_ATOMIC)
        return flags

    def node_balanced(self, node: Node, order: int, highest_zoneidx: int) -> bool:
        """pgdat_balanced(): 6.x any eligible zone at HIGH; 2.6 every zone at HIGH."""
        eligible = [z for z in node.zones[: highest_zoneidx + 1] if z.managed_pages]
        if not eligible:
            return True
        ok = [self.zone_watermark_ok(z, order, z.high_wmark(), highest_zoneidx, 0) for z in eligible]
        return any(ok) if self.era == "6.x" else all(ok)

    def wake_all_kswapds(self, order: int, gfp: int, zonelist, highest: int) -> None:
        seen = set()
        for zone in zonelist:
            node = zone.node
            if node.nid in seen:
                continue
            seen.add(node.nid)
            self.wakeup_kswapd(node, order, gfp, highest)

    def pgdat_watermark_boosted(self, node: Node, highest: int) -> bool:
        return any(z.watermark_boost for z in node.zones[: highest + 1] if z.managed_pages)

    def wakeup_kswapd(self, node: Node, order: int, gfp: int, highest: int) -> None:
        balanced = self.node_balanced(node, order, highest) and not self.pgdat_watermark_boosted(node, highest)
        if balanced or node.kswapd_failures >= MAX_RECLAIM_RETRIES:
            # a balanced (and unboosted) or hopeless node leaves a high-order request
            # that cannot reclaim itself to kcompactd (compaction_suitable decides)
            if order and not gfp & G.DIRECT_RECLAIM and self.compaction is not None:
                self.compaction.wakeup_kcompactd(node, order, highest)
            if balanced:
                return
        self.vmstat["kswapd_wake"] = self.vmstat.get("kswapd_wake", 0) + 1
        if self.wake_kswapd_hook is not None:
            self.wake_kswapd_hook(node, order, highest, gfp)

    def _alloc_slowpath(self, gfp: int, order: int, cpu: int, zonelist, highest: int,
                        cold: int, oom_victim: bool) -> Page | None:
        """__alloc_pages_slowpath, without compaction."""
        vm = self.vmstat
        can_reclaim = bool(gfp & G.DIRECT_RECLAIM)
        alloc_flags = self._gfp_to_alloc_flags(gfp, order)
        if oom_victim:
            alloc_flags |= ALLOC_OOM
        if gfp & G.KSWAPD_RECLAIM:
            self.wake_all_kswapds(order, gfp, zonelist, highest)
        page = self._get_page_from_freelist(gfp, order, cpu, zonelist, highest, cold, alloc_flags)
        if page is not None:
            return page
        # Costly orders, and non-movable high orders (to keep their pageblocks), try
        # direct compaction before reclaim: there may be enough base pages already.
        costly = order > PAGE_ALLOC_COSTLY_ORDER
        compact = [COMPACT_SKIPPED, INIT_COMPACT_PRIORITY, 0]  # result, priority, retries
        pfmemalloc = (gfp & G.MEMALLOC or self.pf_memalloc) and not gfp & G.NOMEMALLOC
        if can_reclaim and (costly or order and self.gfp_migratetype(gfp) != MIGRATE_MOVABLE) and not pfmemalloc:
            page = self._alloc_pages_direct_compact(gfp, order, alloc_flags, cpu, zonelist, highest,
                                                    cold, compact)
            if page is not None:
                return page
            if costly and gfp & G.NORETRY:
                # a pageblock-sized request compaction skipped or deferred fails now
                if compact[0] in (COMPACT_SKIPPED, COMPACT_DEFERRED):
                    return self._nopage(gfp, order, cpu, zonelist, highest, cold)
                compact[1] = INIT_COMPACT_PRIORITY
        no_progress_loops = 0
        oom_rounds = 0
        while True:
            if gfp & G.KSWAPD_RECLAIM:
                self.wake_all_kswapds(order, gfp, zonelist, highest)
            # Reserve access: PF_MEMALLOC / __GFP_MEMALLOC ignore watermarks.
            if (gfp & G.MEMALLOC or self.pf_memalloc) and not gfp & G.NOMEMALLOC:
                page = self._get_page_from_freelist(
                    gfp, order, cpu, zonelist, highest, cold, ALLOC_NO_WATERMARKS
                )
                if page is not None:
                    return page
            if not can_reclaim or self.pf_memalloc:
                return self._nopage(gfp, order, cpu, zonelist, highest, cold)
            # Direct reclaim
            # counted against the highest zone the request may use (sc->reclaim_idx)
            stall_key = "allocstall_" + ZONE_LAYOUT[self.arch][highest][0].lower()
            vm[stall_key] = vm.get(stall_key, 0) + 1
            progress = 0
            if self.direct_reclaim_hook is not None:
                self.pf_memalloc = True
                try:
                    progress = self.direct_reclaim_hook(gfp, order, list(zonelist), highest)
                finally:
                    self.pf_memalloc = False
            if progress:
                # __alloc_pages_direct_reclaim: only after progress; a failure then may be
                # pages pinned on per-CPU lists or in the high-atomic reserve: give back
                # one reserved pageblock (keeping one), drain, try once more
                page = self._get_page_from_freelist(gfp, order, cpu, zonelist, highest, cold, alloc_flags)
                if page is None:
                    self.unreserve_highatomic_pageblock(zonelist, highest, self.gfp_migratetype(gfp), False)
                    self.drain_all_pages()
                    page = self._get_page_from_freelist(gfp, order, cpu, zonelist, highest, cold, alloc_flags)
                if page is not None:
                    return page
            # Direct compaction, then allocating
            page = self._alloc_pages_direct_compact(gfp, order, alloc_flags, cpu, zonelist, highest,
                                                    cold, compact)
            if page is not None:
                return page
            if gfp & G.NORETRY:
                return self._nopage(gfp, order, cpu, zonelist, highest, cold)
            if order > PAGE_ALLOC_COSTLY_ORDER and not gfp & G.RETRY_MAYFAIL:
                return self._nopage(gfp, order, cpu, zonelist, highest, cold)
            if self.era == "6.x":
                retry, no_progress_loops = self.should_reclaim_retry(
                    order, zonelist, highest, alloc_flags, progress > 0, no_progress_loops,
                    self.gfp_migratetype(gfp))
                if retry:
                    continue
            elif progress:
                # 2.6.24 __alloc_pages: retry as long as reclaim frees something (order
                # <= 3); the OOM killer as soon as a pass frees nothing
                continue
            if progress and self._should_compact_retry(order, compact, alloc_flags, zonelist, highest):
                continue
            # __alloc_pages_may_oom: one last try at HIGH, then the OOM killer.
            page = self._get_page_from_freelist(
                gfp, order, cpu, zonelist, highest, cold, ALLOC_WMARK_HIGH
            )
            if page is not None:
                return page
            if (
                order > PAGE_ALLOC_COSTLY_ORDER
                or gfp & G.RETRY_MAYFAIL
                or highest < self._normal_idx()
                or not gfp & G.FS
            ):
                # No OOM kill for costly orders, RETRY_MAYFAIL, lowmem-only or !__GFP_FS
                # requests. (Linux loops forever on !__GFP_FS small allocations; with no
                # other task to free memory meanwhile, hvsim fails them instead.)
                return self._nopage(gfp, order, cpu, zonelist, highest, cold)
            vm["oom_call"] = vm.get("oom_call", 0) + 1
            killed = False
            if self.oom_hook is not None:
                killed = self.oom_hook(gfp, order, highest)
            oom_rounds += 1
            if killed and oom_rounds < 64:
                no_progress_loops = 0
                continue
            return self._nopage(gfp, order, cpu, zonelist, highest, cold)

    def _alloc_pages_direct_compact(self, gfp: int, order: int, alloc_flags: int, cpu: int, zonelist,
                                    highest: int, cold: int, compact: list) -> Page | None:
        """__alloc_pages_direct_compact: compact at priority compact[1], then allocate;
        compact[0] gets the result. compact_stall counts a compaction that ran."""
        if not order or self.compaction is None:
            return None
        result, page = self.compaction.try_to_compact_pages(
            gfp, order, alloc_flags, zonelist, highest, compact[1])
        compact[0] = result
        if result == COMPACT_SKIPPED:
            return None
        vm = self.vmstat
        vm["compact_stall"] += 1
        if page is not None:  # captured while compacting: prep it
            page = self._prep_new_page(page, order, gfp, self._zone_of_block[page.pfn >> MAX_ORDER])
        else:
            page = self._get_page_from_freelist(gfp, order, cpu, zonelist, highest, cold, alloc_flags)
        if page is not None:
            zone = self._zone_of_block[page.pfn >> MAX_ORDER]
            zone.compact_blockskip_flush = False
            self.compaction.compaction_defer_reset(zone, order, True)
            vm["compact_success"] += 1
            return page
        vm["compact_fail"] += 1
        return None

    def _should_compact_retry(self, order: int, compact: list, alloc_flags: int, zonelist,
                              highest: int) -> bool:
        """should_compact_retry: retry while compaction progresses (at most
        MAX_COMPACT_RETRIES, a quarter for costly orders), raising the priority when it
        failed or withdrew; for a skipped compaction, whether reclaim can help."""
        if not order or self.compaction is None:
            return False
        result, priority, retries = compact
        if result == COMPACT_SUCCESS:
            retries += 1
            compact[2] = retries
        if result not in (COMPACT_COMPLETE, COMPACT_DEFERRED, COMPACT_CONTENDED, COMPACT_PARTIAL_SKIPPED):
            if result == COMPACT_SKIPPED:
                # compaction_zonelist_suitable: reclaim would let some zone compact
                return self.compaction.compaction_zonelist_suitable(order, alloc_flags, zonelist, highest)
            max_retries = MAX_COMPACT_RETRIES
            if order > PAGE_ALLOC_COSTLY_ORDER:
                max_retries //= 4
            if retries <= max_retries:
                return True
        # check_priority
        min_priority = MIN_COMPACT_COSTLY_PRIORITY if order > PAGE_ALLOC_COSTLY_ORDER else MIN_COMPACT_PRIORITY
        if priority > min_priority:
            compact[1] = priority - 1
            compact[2] = 0
            return True
        return False

    def should_reclaim_retry(self, order: int, zonelist, highest: int, alloc_flags: int,
                             did_some_progress: bool, no_progress_loops: int,
                             migratetype: int = MIGRATE_MOVABLE) -> tuple[bool, int]:
        """should_reclaim_retry (6.1): progress resets the count of passes without
        progress, except for costly orders (> PAGE_ALLOC_COSTLY_ORDER), whose progress
        may not make their order available: those always count. Past MAX_RECLAIM_RETRIES
        (16) such passes, no retry. Otherwise retry if some zone of the zonelist would meet
        its MIN watermark for this order with all its reclaimable pages freed
        (__zone_watermark_ok with free + zone_reclaimable_pages). Before saying no (its
        `out:` label), exhaust the high-atomic reserve: a pageblock given back to
        `migratetype` means retry (unreserve_highatomic_pageblock(ac, true)). Returns
        (retry, loops)."""
        if did_some_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
            no_progress_loops = 0
        else:
            no_progress_loops += 1
        if no_progress_loops <= MAX_RECLAIM_RETRIES:
            hook = self.zone_reclaimable_hook
            for zone in zonelist:
                available = zone.nr_free + (hook(zone) if hook is not None else 0)
                if self.zone_watermark_ok(zone, order, zone.min_wmark(), highest, alloc_flags,
                                          available):
                    return True, no_progress_loops
        return self.unreserve_highatomic_pageblock(zonelist, highest, migratetype, True), no_progress_loops

    def _normal_idx(self) -> int:
        names = [name for name, _ in ZONE_LAYOUT[self.arch]]
        return names.index(G.ZONE_NORMAL)

    def _nopage(self, gfp: int, order: int, cpu: int, zonelist, highest: int, cold: int) -> Page | None:
        if gfp & G.NOFAIL:
            # __GFP_NOFAIL never fails: dip into the reserves, as the kernel finally does.
            page = self._get_page_from_freelist(
                gfp, order, cpu, zonelist, highest, cold, ALLOC_NO_WATERMARKS
            )
            if page is not None:
                return page
            raise KernelPanic(f"__GFP_NOFAIL order-{order} allocation cannot be satisfied")
        self.vmstat["pgalloc_fail"] = self.vmstat.get("pgalloc_fail", 0) + 1
        return None

    # ------------------------------------------------------------------ freeing
    def free_pages(self, page: Page, order: int = 0, cold: bool = False, cpu: int | None = None) -> None:
        """__free_pages: drop a reference; free the block when the count reaches zero."""
        if page._count <= 0:
            raise KernelBug(f"BUG: Bad page state: freeing free page pfn {page.pfn:#x}")
        page._count -= 1
        if page._count:
            return
        if page.flags & PAGE_FLAGS_CHECK_AT_FREE or page._mapcount != -1:
            page._count = 1
            raise KernelBug(
                f"BUG: Bad page state in free_pages: pfn {page.pfn:#x} flags "
                f"{page.flag_names()} mapcount {page._mapcount + 1}"
            )
        page.mapping = None
        page.index = 0
        page.private = 0
        self.vmstat["pgfree"] += 1 << order
        if self.init_on_free:
            # free_pages_prepare: want_init_on_free() zeroes the block as it is freed
            self.stall += self._kernel_init_pages(page.pfn, 1 << order)
        zone = self._zone_of_block[page.pfn >> MAX_ORDER]
        if order == 0:
            # free_hot_cold_page() / free_unref_page(): the list of the pageblock's type
            mt = self.pageblock_mt[page.pfn >> self.pageblock_order]
            if mt >= MIGRATE_PCPTYPES:
                if mt == MIGRATE_ISOLATE:
                    self._free_one_page(zone, page, page.pfn, 0, mt=mt)
                    return
                mt = MIGRATE_MOVABLE
            # NOTE: the order-0 case of free_unref_page_commit inlined (the free of every
            # page); a list reaching `high_now` (high, or 4 x batch under
            # ZONE_RECLAIM_ACTIVE) takes the plain path
            pcp = zone.pcp[self.current_cpu if cpu is None else cpu][self._cold_list if cold else 0]
            lst = pcp.lists[mt]
            lst.append(page)
            pcp.count += 1
            if pcp.count >= pcp.high_now:
                pcp.count -= 1
                lst.pop()
                self._free_unref_page_commit(zone, pcp, page, mt, 0)
            return
        if order in self.pcp_orders:
            mt = self.pageblock_mt[page.pfn >> self.pageblock_order]
            if mt >= MIGRATE_PCPTYPES:
                if mt == MIGRATE_ISOLATE:
                    self._free_one_page(zone, page, page.pfn, order, mt=mt)
                    return
                mt = MIGRATE_MOVABLE
            self._free_unref_page_commit(zone, zone.pcp[self.current_cpu if cpu is None else cpu][0],
                                         page, mt, order)
            return
        self._free_one_page(zone, page, page.pfn, order)

    def set_reclaim_active(self, zone: Zone, active: bool) -> None:
        """set_reclaim_active / clear_reclaim_active (6.x vmscan): ZONE_RECLAIM_ACTIVE,
        under which nr_pcp_high() caps the zone's lists at 4 x batch."""
        zone.reclaim_active = active
        for lists in zone.pcp:
            for pcp in lists:
                pageset_update(pcp, pcp.high, pcp.batch, active)

    def _free_unref_page_commit(self, zone: Zone, pcp: PerCpuPages, page: Page, mt: int,
                                order: int) -> None:
        """free_unref_page_commit: the block goes to the head of list (order, mt); once
        count reaches high, free_pcppages_bulk from that list. 2.6.20 returns `batch`
        pages; 6.1 nr_pcp_free() pages, against nr_pcp_high(): 0 for an order 1..3 block
        while free_factor is set (high-order pages fragment: free them all), 4 x batch
        while kswapd reclaims the zone (ZONE_RECLAIM_ACTIVE)."""
        pindex = order_to_pindex(mt, order) if order else mt
        pcp.lists[pindex].append(page)
        pcp.count += 1 << order
        if self.era != "6.x":
            if pcp.count >= pcp.high:
                self._free_pages_bulk(zone, pcp.batch, pcp, mt)
            return
        free_high = bool(pcp.free_factor) and 0 < order <= PAGE_ALLOC_COSTLY_ORDER
        if free_high:
            high = 0
        else:
            high = pcp.high
            if zone.reclaim_active and high:
                high = min(pcp.batch << 2, high)
        if pcp.count >= high:
            self._free_pages_bulk(zone, self._nr_pcp_free(pcp, high, pcp.batch, free_high),
                                  pcp, pindex)

    # ---- vmstat's per-CPU work (mm/vmstat.c, 6.1; vmstat.VmstatWork runs it)
    def stat_threshold(self, zone: Zone) -> int:
        """calculate_normal_threshold(): the per-CPU counter drift a zone tolerates before
        a CPU folds its diff into the zone: 2 x fls(online CPUs) x (1 + fls(managed
        memory in 128 MiB units)), at most 125."""
        mem = zone.managed_pages >> (27 - PAGE_SHIFT)
        return min(2 * fls(self.config.cpus) * (1 + fls(mem)), 125)

    def need_update(self, cpu: int) -> bool:
        """need_update(): does `cpu` hold a counter diff for any zone (see PerCpuPages)?"""
        for zone in self.zones:
            pcp = zone.pcp[cpu][0]
            if pcp.free_diff or pcp.count != pcp.stat_count:
                return True
        return False

    def refresh_cpu_vm_stats(self, cpu: int, do_pagesets: bool = True) -> int:
        """refresh_cpu_vm_stats() on `cpu` (6.1, CONFIG_NUMA): fold each zone's diff, and
        a zone with a diff gets expire = 3 ("3 seconds idle till flush"); then, with
        do_pagesets, a list with pages and expire set is counted down, its expire
        cleared instead if the zone is on the CPU's own node, and at zero
        drain_zone_pages frees min(count, batch) of it. Returns the changes (zones whose
        diffs were folded plus drains): vmstat_update requeues itself when nonzero."""
        changes = 0
        nid = self.cpu_to_node[cpu]
        for zone in self.zones:
            pcp = zone.pcp[cpu][0]
            if pcp.free_diff or pcp.count != pcp.stat_count:
                pcp.free_diff = 0
                pcp.stat_count = pcp.count
                pcp.expire = 3
                changes += 1
            if not do_pagesets:
                continue
            if not pcp.expire or not pcp.count:
                continue
            if zone.node.nid == nid:  # never drain zones local to this processor
                pcp.expire = 0
                continue
            pcp.expire -= 1
            if pcp.expire:
                continue
            if pcp.count:
                self.drain_zone_pages(zone, pcp)
                changes += 1
        return changes

    def drain_zone_pages(self, zone: Zone, pcp: PerCpuPages) -> int:
        """drain_zone_pages(): free min(count, batch) pages of a remote list. The frees
        change NR_FREE_PAGES on this CPU (__mod_zone_freepage_state per block), from a diff
        just folded to 0: the diff folds into the zone whenever it passes the stat
        threshold, so it is left nonzero unless the last block took it exactly there.
        Returns the pages freed (vmstat pcp_remote_drain)."""
        to_drain = min(pcp.count, pcp.batch)
        if to_drain <= 0:
            return 0
        before = pcp.count
        self._free_pages_bulk(zone, to_drain, pcp, 0)
        pcp.stat_count = pcp.count  # (the drain moved no page's own counters)
        freed = before - pcp.count
        self.vmstat["pcp_remote_drain"] += freed
        return freed

    def drain_node_pages(self, cpu: int, nid: int) -> int:
        """drain_node_pages(nodeid) of 2.6.20 (CONFIG_NUMA; slab's cache_reap calls it
        for one remote node a pass: SlabAllocator.next_reap_node): for every populated
        zone of node `nid`, each of `cpu`'s lists (hot, then cold) with pages frees
        min(count, batch) of them (free_pages_bulk from the list's tail). Returns the
        pages freed (counted in pcp_remote_drain)."""
        freed = 0
        for zone in self.nodes[nid].zones:
            if not zone.populated():
                continue
            for pcp in zone.pcp[cpu]:
                if pcp.count:
                    to_drain = min(pcp.count, pcp.batch)
                    before = pcp.count
                    self._free_pages_bulk(zone, to_drain, pcp, 0)
                    pcp.stat_count = pcp.count
                    freed += before - pcp.count
        self.vmstat["pcp_remote_drain"] += freed
        return freed

    def drain_all_pages(self, zone: Zone | None = None) -> int:
        """Return every per-CPU page to the buddy lists; returns how many."""
        n = 0
        for z in [zone] if zone is not None else self.zones:
            for lists in z.pcp:
                for pcp in lists:
                    n += pcp.count
                    self._free_pages_bulk(z, pcp.count, pcp)
        return n

    # ------------------------------------------------------------------ accounting
    def nr_free_pages(self) -> int:
        return sum(z.nr_free for z in self.zones)

    def totalram_pages(self) -> int:
        return sum(z.managed_pages for z in self.zones)

    def totalhigh_pages(self) -> int:
        return sum(z.managed_pages for z in self.zones if z.is_highmem)

    def free_high_pages(self) -> int:
        return sum(z.nr_free for z in self.zones if z.is_highmem)

    def wmark_low_total(self) -> int:
        return sum(z.low_wmark() for z in self.zones)


def validate_buddy(alloc: PageAllocator) -> None:
    """Check the allocator's invariants; raises AssertionError naming the first violation."""
    mem_map = alloc.mem_map
    owner = bytearray(alloc.nr_pages)  # 1 free block, 2 per-CPU list
    for zone in alloc.zones:
        total = 0
        for order, area in enumerate(zone.free_area):
            n = 0
            for mt, fl in enumerate(area.free_list):
                prev = fl
                nfl = 0
                for page in fl:
                    assert page.lru_prev is prev, f"{zone}: broken list link at pfn {page.pfn:#x}"
                    prev = page
                    n += 1
                    nfl += 1
                    pfn = page.pfn
                    assert page.index == mt, (
                        f"{zone}: pfn {pfn:#x} on the {MIGRATETYPE_NAMES[mt]} list records {page.index}"
                    )
                    assert page.flags & PG_buddy, f"{zone}: pfn {pfn:#x} on order-{order} list without PG_buddy"
                    assert page.private == order, f"{zone}: pfn {pfn:#x} order {page.private} on list {order}"
                    assert pfn & ((1 << order) - 1) == 0, f"{zone}: pfn {pfn:#x} misaligned for order {order}"
                    assert zone.zone_start_pfn <= pfn and pfn + (1 << order) <= zone.end_pfn, (
                        f"{zone}: block {pfn:#x}/{order} outside the zone"
                    )
                    for p in range(pfn, pfn + (1 << order)):
                        assert not owner[p], f"{zone}: pfn {p:#x} in two free blocks"
                        owner[p] = 1
                        if p != pfn and mem_map[p] is not None:
                            assert not mem_map[p].flags & PG_buddy, f"pfn {p:#x}: PG_buddy inside a block"
                    assert mem_map[pfn]._count == 0, f"free block {pfn:#x} has _count {mem_map[pfn]._count}"
                    if order < MAX_ORDER:
                        b = pfn ^ (1 << order)
                        if zone.zone_start_pfn <= b < zone.end_pfn:
                            bp = mem_map[b]
                            assert bp is None or not (bp.flags & PG_buddy and bp.private == order), (
                                f"{zone}: buddies {pfn:#x} and {b:#x} both free at order {order}, unmerged"
                            )
                    total += 1 << order
                assert nfl == fl.nr, f"{zone}: order {order} {MIGRATETYPE_NAMES[mt]} list nr {fl.nr}, {nfl} listed"
            assert n == area.nr_free, (
                f"{zone}: order {order} nr_free {area.nr_free} but {n} blocks listed"
            )
        assert total == zone.nr_free, f"{zone}: nr_free {zone.nr_free} but {total} pages in free blocks"
        nb = alloc.pageblock_nr_pages
        highatomic = sum(
            nb for b in range(zone.zone_start_pfn // nb, -(-zone.end_pfn // nb))
            if alloc.pageblock_mt[b] == MIGRATE_HIGHATOMIC
        )
        assert zone.nr_reserved_highatomic == highatomic, (
            f"{zone}: nr_reserved_highatomic {zone.nr_reserved_highatomic}, {highatomic} in HIGHATOMIC pageblocks"
        )
        for lists in zone.pcp:
            for pcp in lists:
                npages = sum(len(lst) << pcp.orders[i] for i, lst in enumerate(pcp.lists))
                assert pcp.count == npages, f"{zone}: pcp count {pcp.count} != {npages}"
                for i, lst in enumerate(pcp.lists):
                    order = pcp.orders[i]
                    for page in lst:
                        assert alloc.zone_of(page.pfn) is zone, f"pfn {page.pfn:#x} on another zone's pcp"
                        assert page.pfn & ((1 << order) - 1) == 0, f"pfn {page.pfn:#x} misaligned on pcp {i}"
                        for p in range(page.pfn, page.pfn + (1 << order)):
                            assert not owner[p], f"pfn {p:#x} both free and on a pcp list"
                            owner[p] = 2
                        assert page._count == 0 and not page.flags & (PG_buddy | PG_reported)
