"""Memory compaction (mm/compaction.c, Linux 6.1): make free blocks of high order by
moving movable pages out of the way.

Overview
--------
`compact_zone` runs two scanners towards each other over one zone:

- the migrate scanner walks pageblocks up from the zone start (or its cached position)
  and isolates movable pages: LRU pages, not pinned (more references than mappings), for
  a request without __GFP_FS no page-cache pages, in async mode none under writeback
  (`isolate_migratepages_block`), at most COMPACT_CLUSTER_MAX (32) at a time. A free
  block is skipped whole, a scanned page counts in compact_migrate_scanned;
- the free scanner walks pageblocks down from the zone end and, in MOVABLE pageblocks
  not free whole, takes free blocks off the buddy lists (`isolate_freepages_block`,
  __isolate_free_page: only while the zone stays above MIN + the block) until there are
  as many free pages as pages to migrate; the blocks are split into order-0 pages
  (split_map_pages), the last one isolated handed out first (compaction_alloc).

Each batch is migrated (migrate.py: a host-visible copy). Compaction stops when the
scanners meet (COMPACT_COMPLETE for a whole-zone pass, else COMPACT_PARTIAL_SKIPPED), or
for a request of order >= 0 at a pageblock boundary where a free block of the order is
on the request's list or one it could steal (COMPACT_SUCCESS). A pageblock where
isolation found nothing gets PB_migrate_skip and is passed over until the skip bits are
reset (kswapd going to sleep, or deferral restarting); the scanners' positions are cached
per zone (compact_cached_migrate_pfn[async/sync], compact_cached_free_pfn).

Entry points: direct compaction from the allocator's slow path (`try_to_compact_pages`,
with priorities async -> sync light -> sync full and per-zone deferral:
defer_compaction / compaction_deferred / compaction_defer_reset), kcompactd woken by
kswapd when it goes to sleep after a high-order wakeup, and `/proc/sys/vm/compact_memory`
(every zone, whole, MIGRATE_SYNC, order -1). `compaction_suitable` decides whether a zone
is worth compacting: not if the order's watermark is met already (SUCCESS), not if order-0
free pages are below MIN (LOW for costly orders) + 2 << order (SKIPPED), and for costly
orders not if the fragmentation index is at most `extfrag_threshold` (500: the failure
would be for lack of memory, not fragmentation).

A direct compactor installs a capture_control: the block of its order that migration
frees (merged in __free_one_page) is handed to it instead of the free lists
(compaction_capture). Proactive compaction: kcompactd, every 500 ms, compacts a node whose
fragmentation score (extfrag_for_order at the huge page order, zones weighted by present
pages) is above fragmentation_score_wmark's high mark, zone by zone down to the low mark,
backing off 32 s after a pass that did not lower the score (compaction_proactiveness).

The free-list fast searches (5.1+): the free scanner first looks on the MOVABLE free lists
below the request's order for a block high in the zone (fast_isolate_freepages), and for an
order above PAGE_ALLOC_COSTLY_ORDER the migrate scanner jumps to a partly free MOVABLE
pageblock low in the zone (fast_find_migrateblock; 6.1 marks that pageblock skipped first,
so isolate_migratepages_block abandons it: an upstream bug, fixed in 6.3, kept here).

Too many pages isolated (too_many_isolated: more on the node than half its LRU, counting
the batches direct reclaimers on other CPUs and kswapd hold at the compactor's own time):
an async run, or one holding pages, gives up (COMPACT_CONTENDED); a sync one sleeps in
reclaim_throttle(VMSCAN_THROTTLE_ISOLATED) until they are back, kcompactd spins; a check
that finds few wakes the node's throttled reclaimers (wake_throttle_isolated).

Left out (listed in the README): lock contention.
"""

from __future__ import annotations

from . import gfp as G
from .migrate import COMPOUND, COMPOUND_ORDER, ENOMEM, MIGRATE_ASYNC, MIGRATE_SYNC, MIGRATE_SYNC_LIGHT, migrate_pages
from .page import PG_anon, PG_balloon, PG_buddy, PG_lru, PG_swapbacked, PG_swapcache, PG_unevictable, PG_writeback
from .page_alloc import (  # the compact_result and compact_priority enums live there
    ALLOC_WMARK_MASK,
    COMPACT_COMPLETE,
    COMPACT_CONTENDED,
    COMPACT_CONTINUE,
    COMPACT_DEFERRED,
    COMPACT_PARTIAL_SKIPPED,
    COMPACT_PRIO_ASYNC,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    MIGRATE_MOVABLE,
    MIN_COMPACT_PRIORITY,
    NR_ORDERS,
    PAGE_ALLOC_COSTLY_ORDER,
    WMARK_LOW,
    WMARK_MIN,
)
from .page_reporting import _rotate_to_front

COMPACT_RESULT_NAMES = ("not_suitable_zone", "skipped", "deferred", "no_suitable_page", "continue",
                        "complete", "partial_skipped", "contended", "success")

COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX: pages isolated per migration batch
KTHREAD_CPU = -2  # kcompactd's CPU in the isolated-pages log: any reclaimer's batch counts
NR_ISOLATED = ("nr_isolated_file", "nr_isolated_anon")  # by PG_swapbacked (page_is_file_lru)
FAST_START_DONE = 1 << 62  # cc->fast_start_pfn = ULONG_MAX: the linear scan restarted there
COMPACT_MAX_DEFER_SHIFT = 6
EXTFRAG_THRESHOLD = 500  # /proc/sys/vm/extfrag_threshold default, 0..1000
HPAGE_FRAG_CHECK_INTERVAL_MSEC = 500  # kcompactd's proactive-compaction period, ms
COMPACTION_PROACTIVENESS = 20  # /proc/sys/vm/compaction_proactiveness default, 0..100


def compaction_made_progress(result: int) -> bool:
    return result == COMPACT_SUCCESS


def compaction_failed(result: int) -> bool:
    return result == COMPACT_COMPLETE


def compaction_needs_reclaim(result: int) -> bool:
    return result == COMPACT_SKIPPED


def compaction_withdrawn(result: int) -> bool:
    return result in (COMPACT_DEFERRED, COMPACT_CONTENDED, COMPACT_PARTIAL_SKIPPED)


class CompactControl:
    """struct compact_control: one compaction run over one zone."""

    __slots__ = (
        "order", "gfp_mask", "zone", "mode", "alloc_flags", "highest_zoneidx",
        "direct_compaction", "whole_zone", "ignore_skip_hint", "ignore_block_suitable",
        "migratetype", "migrate_pfn", "free_pfn", "migratepages", "freepages",
        "nr_migratepages", "nr_freepages", "total_migrate_scanned", "total_free_scanned",
        "rescan", "cost", "proactive_compaction", "search_order", "fast_search_fail",
        "fast_start_pfn", "t0", "sleep", "cpu", "kswapd", "kthread",
    )

    def __init__(self, zone, order: int, gfp_mask: int, mode: int, *, alloc_flags: int = 0,
                 highest_zoneidx: int = 0, direct_compaction: bool = False, whole_zone: bool = False,
                 ignore_skip_hint: bool = False, ignore_block_suitable: bool = False) -> None:
        self.zone = zone
        self.order = order  # -1: compact everything (/proc/sys/vm/compact_memory)
        self.gfp_mask = gfp_mask
        self.mode = mode
        self.alloc_flags = alloc_flags
        self.highest_zoneidx = highest_zoneidx
        self.direct_compaction = direct_compaction
        self.whole_zone = whole_zone
        self.ignore_skip_hint = ignore_skip_hint
        self.ignore_block_suitable = ignore_block_suitable
        self.migratetype = MIGRATE_MOVABLE
        self.migrate_pfn = self.free_pfn = 0
        self.migratepages: list = []  # isolated pages, the list head last (list_add)
        self.freepages: list = []  # split free pages, the list head last
        self.nr_migratepages = self.nr_freepages = 0
        self.total_migrate_scanned = self.total_free_scanned = 0
        self.rescan = False
        self.cost = 0.0  # seconds: migration copies beneath the guest
        self.proactive_compaction = False
        self.search_order = max(order, 0)  # fast_isolate_freepages: the order to search first
        self.fast_search_fail = 0  # fast searches that found nothing (shrinks their limit)
        self.fast_start_pfn = 0  # lowest pfn fast_find_migrateblock chose (FAST_START_DONE: used)
        # the compactor's own clock when the run began (its time runs on by `cost` and
        # `sleep`, as a direct reclaimer's ScanControl: reclaim_throttle reads these);
        # None: no clock. kthread: kcompactd (PF_KTHREAD: reclaim_throttle does not sleep)
        self.t0: float | None = None
        self.sleep = 0.0  # seconds asleep in reclaim_throttle(VMSCAN_THROTTLE_ISOLATED)
        self.cpu = 0
        self.kswapd = False
        self.kthread = False


class CaptureControl:
    """struct capture_control: the compaction run of a direct compactor, and the block
    of its order freed meanwhile (page_alloc's __free_one_page fills `page`)."""

    __slots__ = ("cc", "page")

    def __init__(self, cc: CompactControl) -> None:
        self.cc = cc
        self.page = None


class Compaction:
    """Compaction of one guest kernel's zones; counters in kernel.vmstat."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.alloc = kernel.page_alloc
        self.vmstat = kernel.vmstat
        self.extfrag_threshold = EXTFRAG_THRESHOLD
        self.compaction_proactiveness = getattr(kernel.config, "compaction_proactiveness",
                                                COMPACTION_PROACTIVENESS)
        self.compact_unevictable_allowed = 1  # /proc/sys/vm/compact_unevictable_allowed
        self.kcompactd: dict = {}  # nid -> Kcompactd (with a simulation)
        from .vmscan import VMSCAN_THROTTLE_ISOLATED, page_lru  # (reclaim sits beside compaction; no import cycle)

        self._throttle_isolated = VMSCAN_THROTTLE_ISOLATED

        self._page_lru = page_lru
        for node in self.alloc.nodes:
            node.kcompactd_max_order = 0
            node.kcompactd_highest_zoneidx = len(node.zones) - 1
            node.proactive_compact_trigger = False
            for zone in node.zones:
                reset_cached_positions(self.alloc, zone)

    # ------------------------------------------------------------------ deferral
    @staticmethod
    def defer_compaction(zone, order: int) -> None:
        zone.compact_considered = 0
        zone.compact_defer_shift += 1
        if order < zone.compact_order_failed:
            zone.compact_order_failed = order
        if zone.compact_defer_shift > COMPACT_MAX_DEFER_SHIFT:
            zone.compact_defer_shift = COMPACT_MAX_DEFER_SHIFT

    @staticmethod
    def compaction_deferred(zone, order: int) -> bool:
        defer_limit = 1 << zone.compact_defer_shift
        if order < zone.compact_order_failed:
            return False
        zone.compact_considered += 1
        if zone.compact_considered >= defer_limit:
            zone.compact_considered = defer_limit
            return False
        return True

    @staticmethod
    def compaction_defer_reset(zone, order: int, alloc_success: bool) -> None:
        if alloc_success:
            zone.compact_considered = 0
            zone.compact_defer_shift = 0
        if order >= zone.compact_order_failed:
            zone.compact_order_failed = order + 1

    @staticmethod
    def compaction_restarting(zone, order: int) -> bool:
        if order < zone.compact_order_failed:
            return False
        return (zone.compact_defer_shift == COMPACT_MAX_DEFER_SHIFT
                and zone.compact_considered >= 1 << zone.compact_defer_shift)

    # ------------------------------------------------------------------ suitability
    @staticmethod
    def fragmentation_index(zone, order: int) -> int:
        """fragmentation_index (mm/vmstat.c): -1000 if a block of the order is free;
        towards 0 the failure would be for lack of memory, towards 1000 fragmentation."""
        requested = 1 << order
        free_blocks_total = free_pages = free_blocks_suitable = 0
        for o, area in enumerate(zone.free_area):
            blocks = area.nr_free
            free_blocks_total += blocks
            free_pages += blocks << o
            if o >= order:
                free_blocks_suitable += blocks << (o - order)
        if not free_blocks_total:
            return 0
        if free_blocks_suitable:
            return -1000
        return 1000 - (1000 + free_pages * 1000 // requested) // free_blocks_total

    # ---- external fragmentation (mm/vmstat.c) and proactive compaction's scores
    @staticmethod
    def contig_page_info(zone, order: int) -> tuple[int, int, int]:
        """fill_contig_page_info: (free pages, free blocks, free blocks of `order` that
        the free blocks of at least that order make)."""
        free_pages = free_blocks_total = free_blocks_suitable = 0
        for o, area in enumerate(zone.free_area):
            blocks = area.nr_free
            free_blocks_total += blocks
            free_pages += blocks << o
            if o >= order:
                free_blocks_suitable += blocks << (o - order)
        return free_pages, free_blocks_total, free_blocks_suitable

    @classmethod
    def unusable_free_index(cls, zone, order: int) -> int:
        """unusable_free_index: thousandths of the free memory in blocks below `order`
        (1000 for a zone with none free)."""
        free_pages, _total, suitable = cls.contig_page_info(zone, order)
        if not free_pages:
            return 1000
        return (free_pages - (suitable << order)) * 1000 // free_pages

    @classmethod
    def extfrag_for_order(cls, zone, order: int) -> int:
        """extfrag_for_order: percent of the free pages in blocks smaller than `order`."""
        free_pages, _total, suitable = cls.contig_page_info(zone, order)
        if not free_pages:
            return 0
        return (free_pages - (suitable << order)) * 100 // free_pages

    def fragmentation_score_zone(self, zone) -> int:
        """fragmentation_score_zone: extfrag_for_order at COMPACTION_HPAGE_ORDER (the huge
        page order: the pageblock order here)."""
        return self.extfrag_for_order(zone, self.alloc.pageblock_order)

    def fragmentation_score_node(self, node) -> int:
        """fragmentation_score_node: each zone's score weighted by its share of the node's
        present pages (present * score // (node_present_pages + 1)), summed."""
        node_present = sum(z.present_pages for z in node.zones)
        return sum(z.present_pages * self.fragmentation_score_zone(z) // (node_present + 1)
                   for z in node.zones)

    def fragmentation_score_wmark(self, low: bool) -> int:
        wmark_low = max(100 - self.compaction_proactiveness, 5)
        return wmark_low if low else min(wmark_low + 10, 100)

    def kswapd_is_running(self, node) -> bool:
        kswapd = getattr(self.kernel.reclaim, "kswapds", {}).get(node.nid)
        return kswapd is not None and kswapd.running

    def should_proactive_compact_node(self, node) -> bool:
        if not self.compaction_proactiveness or self.kswapd_is_running(node):
            return False
        return self.fragmentation_score_node(node) > self.fragmentation_score_wmark(False)

    def proactive_compact_node(self, node) -> float:
        """proactive_compact_node: every populated zone, whole, MIGRATE_SYNC_LIGHT, order
        -1, until its score is at the low mark (compact_finished). 6.1 counts no
        compact_daemon_* events here. Returns the copies' seconds."""
        cost = 0.0
        for zone in node.zones:
            if not zone.populated():
                continue
            cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC_LIGHT, whole_zone=True,
                                ignore_skip_hint=True)
            cc.proactive_compaction = True
            self._set_clock(cc, True, cost)
            self.compact_zone(cc)
            cost += cc.cost
        return cost

    def set_compaction_proactiveness(self, value: int) -> None:
        """compaction_proactiveness_sysctl_handler: a non-zero write triggers a proactive
        pass on every node now (proactive_compact_trigger)."""
        self.compaction_proactiveness = value
        if value:
            for node in self.alloc.nodes:
                if node.proactive_compact_trigger:
                    continue
                node.proactive_compact_trigger = True
                kd = self.kcompactd.get(node.nid)
                if kd is not None:
                    kd.kick()

    def compaction_suitable(self, zone, order: int, alloc_flags: int, highest_zoneidx: int) -> int:
        alloc = self.alloc
        if order == -1:
            return COMPACT_CONTINUE
        watermark = zone.watermark[alloc_flags & ALLOC_WMARK_MASK]
        if alloc.zone_watermark_ok(zone, order, watermark, highest_zoneidx, alloc_flags):
            return COMPACT_SUCCESS
        # order-0 pages above MIN (LOW for costly orders) + compact_gap(order) to isolate
        # migration targets from
        watermark = zone.watermark[WMARK_LOW if order > PAGE_ALLOC_COSTLY_ORDER else WMARK_MIN]
        watermark += 2 << order
        if not alloc.zone_watermark_ok(zone, 0, watermark, highest_zoneidx, 0):
            return COMPACT_SKIPPED
        if order > PAGE_ALLOC_COSTLY_ORDER:
            fragindex = self.fragmentation_index(zone, order)
            if 0 <= fragindex <= self.extfrag_threshold:
                return COMPACT_SKIPPED  # COMPACT_NOT_SUITABLE_ZONE, reported as SKIPPED
        return COMPACT_CONTINUE

    def compaction_zonelist_suitable(self, order: int, alloc_flags: int, zonelist, highest: int) -> bool:
        """Would reclaim let compaction run in some zone? Counts a zone's free pages plus
        its reclaimable LRU pages / order (hvsim's LRU is per node: the node's pages in
        proportion to the zone's managed share)."""
        alloc = self.alloc
        reclaim = self.kernel.reclaim
        for zone in zonelist:
            node = zone.node
            lv = reclaim.lruvecs[node.nid] if len(reclaim.lruvecs) > 1 else reclaim.lruvecs[0]
            lru = lv.size(2) + lv.size(3)  # file
            if reclaim.can_reclaim_anon():
                lru += lv.size(0) + lv.size(1)
            managed = sum(z.managed_pages for z in node.zones) or 1
            available = lru * zone.managed_pages // managed // order + zone.nr_free
            if alloc.zone_watermark_ok(zone, order, zone.watermark[alloc_flags & ALLOC_WMARK_MASK],
                                       highest, alloc_flags):
                return True
            watermark = zone.watermark[WMARK_LOW if order > PAGE_ALLOC_COSTLY_ORDER else WMARK_MIN]
            watermark += 2 << order
            if available - zone.nr_reserved_highatomic > watermark + zone.lowmem_reserve[highest]:
                return True
        return False

    # ------------------------------------------------------------------ skip hints
    def isolation_suitable(self, cc: CompactControl, pfn: int) -> bool:
        return cc.ignore_skip_hint or not self.alloc.pageblock_skip[pfn >> self.alloc.pageblock_order]

    def update_cached_migrate(self, cc: CompactControl, pfn: int) -> None:
        nb = self.alloc.pageblock_nr_pages
        pfn = (pfn + nb - 1) & ~(nb - 1) if pfn & (nb - 1) else pfn  # pageblock_end_pfn
        zone = cc.zone
        if pfn > zone.compact_cached_migrate_pfn[0]:
            zone.compact_cached_migrate_pfn[0] = pfn
        if cc.mode != MIGRATE_ASYNC and pfn > zone.compact_cached_migrate_pfn[1]:
            zone.compact_cached_migrate_pfn[1] = pfn

    def update_pageblock_skip(self, cc: CompactControl, pfn: int) -> None:
        self.alloc.pageblock_skip[pfn >> self.alloc.pageblock_order] = 1
        if pfn < cc.zone.compact_cached_free_pfn:
            cc.zone.compact_cached_free_pfn = pfn

    def reset_isolation_suitable(self, node) -> None:
        """kswapd going to sleep: clear the skip hints of zones direct compaction marked."""
        for zone in node.zones:
            if zone.populated() and zone.compact_blockskip_flush:
                self._reset_isolation_suitable(zone)

    def _reset_isolation_pfn(self, zone, pfn: int, check_source: bool, check_target: bool) -> bool:
        """__reset_isolation_pfn: a pageblock a compound page of pageblock order or more
        holds keeps its bit (pageblock_skip_persistent); with both checks a clear bit is
        clear already; a target-only check refuses a block not MOVABLE; else the bit is
        cleared if one page in every 1 << PAGE_ALLOC_COSTLY_ORDER (8), from the block's
        first pfn in the zone to its last, is on the LRU (a source) or a buddy page (a
        target)."""
        alloc = self.alloc
        mem_map = alloc.mem_map
        nb = alloc.pageblock_nr_pages
        sh = alloc.pageblock_order
        # (a struct page not created yet, None, is a page with no flags: every pfn of a
        # zone is valid here)
        page = mem_map[pfn]
        if page is not None and page.flags & COMPOUND and COMPOUND_ORDER >= sh:
            return False
        skip = alloc.pageblock_skip
        if check_source and check_target and not skip[pfn >> sh]:
            return True
        if not check_source and check_target and alloc.get_pageblock_migratetype(pfn) != MIGRATE_MOVABLE:
            return False
        pfn = max(pfn & ~(nb - 1), zone.zone_start_pfn)
        end = min((pfn | (nb - 1)), zone.end_pfn - 1)
        for p in range(pfn, end + 1, 1 << PAGE_ALLOC_COSTLY_ORDER):
            page = mem_map[p]
            if page is None:
                continue
            if check_source and page.flags & PG_lru:
                skip[p >> sh] = 0
                return True
            if check_target and page.flags & PG_buddy:
                skip[p >> sh] = 0
                return True
        return False

    def _reset_isolation_suitable(self, zone) -> None:
        """__reset_isolation_suitable (only once a direct compactor's scanners met:
        compact_blockskip_flush): one pageblock from each end of the zone a step, the
        migrate side from the zone's start looking for LRU pages, the free side from its
        last pfn for buddy pages (and, once a side found its first block, for both);
        each clears the bits of the blocks it finds worth scanning, and the first such
        block of each side becomes the scanner's cached start and compact_init_*_pfn; if
        no block was found, both scanners start where the walk ended."""
        if not zone.compact_blockskip_flush:
            return
        zone.compact_blockskip_flush = False
        nb = self.alloc.pageblock_nr_pages
        migrate_pfn = zone.zone_start_pfn
        free_pfn = zone.end_pfn - 1
        reset_migrate, reset_free = free_pfn, migrate_pfn
        source_set = free_set = False
        while migrate_pfn < free_pfn:
            if self._reset_isolation_pfn(zone, migrate_pfn, True, source_set) and migrate_pfn < reset_migrate:
                source_set = True
                reset_migrate = migrate_pfn
                zone.compact_init_migrate_pfn = reset_migrate
                zone.compact_cached_migrate_pfn[0] = zone.compact_cached_migrate_pfn[1] = reset_migrate
            if self._reset_isolation_pfn(zone, free_pfn, free_set, True) and free_pfn > reset_free:
                free_set = True
                reset_free = free_pfn
                zone.compact_init_free_pfn = reset_free
                zone.compact_cached_free_pfn = reset_free
            migrate_pfn += nb
            free_pfn -= nb
        if reset_migrate >= reset_free:  # leave no distance if no suitable block was reset
            zone.compact_cached_migrate_pfn[0] = zone.compact_cached_migrate_pfn[1] = migrate_pfn
            zone.compact_cached_free_pfn = free_pfn

    # ------------------------------------------------------------------ migrate scanner
    def _set_clock(self, cc: CompactControl, kthread: bool, elapsed: float = 0.0) -> None:
        """The run's own clock (6.x with a simulation): a task's (direct compaction, a write
        to compact_memory) starts where its CPU's direct reclaim left off (direct_clock),
        as a direct reclaimer's does; kcompactd's from the simulation's now plus what its
        wake-up has spent (`elapsed`), on no CPU of its own (every CPU's batches count)."""
        k = self.kernel
        reclaim = k.reclaim
        if k.env is None or reclaim is None or not reclaim.v6:
            return
        if kthread:
            cc.kthread = True
            cc.cpu = KTHREAD_CPU
            cc.t0 = k.env.now + elapsed
        else:
            cc.cpu = cpu = k.current_cpu
            cc.t0 = max(k.env.now, reclaim.direct_clock[cpu]) + elapsed

    def _throttled(self, cc: CompactControl) -> None:
        """A task's sleeps in reclaim_throttle are its I/O wait, as a direct reclaimer's."""
        if cc.sleep:
            k = self.kernel
            k.iowait_throttle = getattr(k, "iowait_throttle", 0.0) + cc.sleep

    def too_many_isolated(self, cc: CompactControl) -> bool:
        """too_many_isolated (6.1 mm/compaction.c): more pages isolated on the zone's node
        (NR_ISOLATED_FILE + NR_ISOLATED_ANON) than half its LRU pages (inactive + active,
        anon and file). Not too many: wake_throttle_isolated(pgdat), as vmscan's, wakes
        the node's reclaimers asleep on VMSCAN_THROTTLE_ISOLATED (`isolated_wakes`).
        hvsim: the isolated pages are NR_ISOLATED_* now and the batches that direct
        reclaimers and compactors on other CPUs, kswapd, kcompactd and khugepaged hold on
        the node at the compactor's own time (vmscan's `isolating`: a pass runs whole,
        its time runs on from the simulation's)."""
        reclaim = self.kernel.reclaim
        vm = self.vmstat
        isolated = vm["nr_isolated_file"] + vm["nr_isolated_anon"]
        nid = cc.zone.node.nid
        t = None
        if cc.t0 is not None:
            t = cc.t0 + cc.cost + cc.sleep
            isolated += sum(e[2] for e in reclaim.isolated_batches(t, cc.cpu, nid))
        lru = 0
        for lv in reclaim.node_lruvecs(nid):  # (every memcg's lruvec on the node)
            lists = lv.lists
            lru += lists[0].nr + lists[1].nr + lists[2].nr + lists[3].nr  # (LRU_INACTIVE_ANON..LRU_ACTIVE_FILE)
        if isolated > lru // 2:
            return True
        if t is not None and len(reclaim.direct_clock) > 1:
            wakes = reclaim.isolated_wakes
            if len(wakes) >= 256:
                now = self.kernel.env.now
                wakes[:] = [w for w in wakes if w[0] > now]
            wakes.append((t, cc.cpu, nid))
        return False

    def throttle_isolated(self, cc: CompactControl) -> bool:
        """isolate_migratepages_block's entry (6.1): while too_many_isolated, a run holding
        pages of its own stops (-EAGAIN), an async one aborts (-EAGAIN), a sync one waits
        in reclaim_throttle(pgdat, VMSCAN_THROTTLE_ISOLATED) (HZ/50, or woken earlier by
        wake_throttle_isolated) and checks again; kcompactd, a kernel thread, does not sleep
        there (reclaim_throttle returns at once for PF_KTHREAD): it spins (cond_resched)
        until the pages are back. -EAGAIN makes isolate_migratepages ISOLATE_ABORT and
        compact_zone COMPACT_CONTENDED. Returns True for -EAGAIN. hvsim: the loop ends as
        the other isolators' batches end at the compactor's own time; pages counted in
        NR_ISOLATED_* with no batch behind them cannot come back while the run goes on
        (nothing else runs meanwhile), so a run still finding too many after a wait gives
        up as an async one does."""
        reclaim = self.kernel.reclaim
        if reclaim is None or not reclaim.v6:
            return False
        stalled = False
        while self.too_many_isolated(cc):
            if cc.nr_migratepages or cc.mode == MIGRATE_ASYNC or cc.t0 is None:
                return True
            t = cc.t0 + cc.cost + cc.sleep
            ends = [e[1] for e in reclaim.isolated_batches(t, cc.cpu, cc.zone.node.nid)]
            if not ends and stalled:
                return True  # nothing in hvsim can bring those pages back meanwhile
            stalled = True
            if cc.kthread:
                if not ends:
                    return True
                cc.cost += min(ends) - t  # cond_resched and check again: busy until one is back
                continue
            nid = cc.zone.node.nid if len(reclaim.lruvecs) > 1 else 0
            reclaim.reclaim_throttle(reclaim.lruvecs[nid], self._throttle_isolated, cc)
        return False

    def isolate_migratepages_block(self, cc: CompactControl, low_pfn: int, end_pfn: int) -> bool:
        """isolate_migratepages_block (6.1). Returns True for -EAGAIN (throttle_isolated)."""
        if self.throttle_isolated(cc):
            return True
        alloc = self.alloc
        mem_map = alloc.mem_map
        reclaim = self.kernel.reclaim
        nb = alloc.pageblock_nr_pages
        sh = alloc.pageblock_order
        skip = alloc.pageblock_skip
        async_mode = cc.mode == MIGRATE_ASYNC
        unevictable_ok = self.compact_unevictable_allowed
        nofs = not cc.gfp_mask & G.FS
        balloon = getattr(self.kernel, "balloon_driver", None)
        vm = self.vmstat
        nr_scanned = nr_isolated = 0
        valid_page = -1
        skip_updated = False
        skip_on_failure = cc.direct_compaction and async_mode
        next_skip_pfn = 0
        order = max(cc.order, 0)
        if skip_on_failure:
            next_skip_pfn = (low_pfn + (1 << order)) & ~((1 << order) - 1)  # block_end_pfn
        isolated_here: list = []
        cc.migrate_pfn = low_pfn
        aborted = False
        while low_pfn < end_pfn:
            if skip_on_failure and low_pfn >= next_skip_pfn:
                if nr_isolated:
                    break
                next_skip_pfn = (low_pfn + (1 << order)) & ~((1 << order) - 1)
            nr_scanned += 1
            page = mem_map[low_pfn]
            if valid_page < 0 and not low_pfn & (nb - 1):
                if not cc.ignore_skip_hint and skip[low_pfn >> sh]:
                    low_pfn = end_pfn
                    aborted = True
                    break
                valid_page = low_pfn
            ok = False
            if page is None:
                pass
            elif page.flags & PG_buddy:
                o = page.private
                if 0 < o < NR_ORDERS:
                    low_pfn += (1 << o) - 1
                low_pfn += 1
                continue
            else:
                f = page.flags
                if f & COMPOUND:
                    # a compound page (a THP) stays; from its head, skip it whole
                    if not low_pfn & ((1 << COMPOUND_ORDER) - 1):
                        low_pfn += (1 << COMPOUND_ORDER) - 1
                elif not f & PG_lru:
                    # a non-LRU movable page (__PageMovable): a balloon page, isolated
                    # through its driver (isolate_movable_page: no skip-hint update)
                    if f & PG_balloon and balloon is not None and balloon.isolate(page):
                        ok = 2
                elif f & PG_anon and not f & PG_swapcache and page._count > page._mapcount + 1:
                    pass  # pinned: more references than mappings
                elif nofs and not f & PG_anon and page.mapping is not None:
                    pass
                elif not unevictable_ok and f & PG_unevictable:
                    pass
                elif async_mode and f & PG_writeback:
                    pass
                else:
                    if not skip_updated:
                        skip_updated = True
                        # test_and_set_skip: only on a pageblock-aligned pfn
                        if not cc.ignore_skip_hint and not low_pfn & (nb - 1):
                            if skip[low_pfn >> sh]:
                                aborted = True
                                break
                            skip[low_pfn >> sh] = 1
                    ok = True
            if ok:
                if ok is True:
                    reclaim._isolate(page, self._page_lru(page))
                    # counted until migrated or put back (not a balloon page: non-LRU)
                    vm[NR_ISOLATED[page.flags & PG_swapbacked != 0]] += 1
                isolated_here.append(page)
                cc.migratepages.append(page)
                cc.nr_migratepages += 1
                nr_isolated += 1
                if cc.nr_migratepages >= COMPACT_CLUSTER_MAX and not cc.rescan:
                    low_pfn += 1
                    break
                low_pfn += 1
                continue
            # isolate_fail
            if skip_on_failure:
                if nr_isolated:
                    self.putback(cc, isolated_here)
                    nr_isolated = 0
                if low_pfn < next_skip_pfn:
                    low_pfn = next_skip_pfn - 1
                    next_skip_pfn += 1 << order
            low_pfn += 1
        if low_pfn > end_pfn:
            low_pfn = end_pfn
        if low_pfn == end_pfn and (not nr_isolated or cc.rescan):
            if valid_page >= 0 and not skip_updated and not aborted:
                skip[valid_page >> sh] = 1
            self.update_cached_migrate(cc, low_pfn)
        cc.total_migrate_scanned += nr_scanned
        if nr_isolated:
            self.vmstat["compact_isolated"] += nr_isolated
        cc.migrate_pfn = low_pfn

    def putback(self, cc: CompactControl, pages: list) -> None:
        """putback_movable_pages for `pages` (a subset of cc.migratepages)."""
        for page in pages:
            cc.migratepages.remove(page)
            self._putback_movable(page)
        cc.nr_migratepages -= len(pages)
        pages.clear()

    def putback_all(self, cc: CompactControl) -> None:
        for page in reversed(cc.migratepages):  # from the head
            self._putback_movable(page)
        cc.migratepages.clear()
        cc.nr_migratepages = 0

    def _putback_movable(self, page) -> None:
        """putback_movable_pages for one page: a balloon page to its driver's list
        (balloon_page_putback), an LRU page to its LRU list (folio_putback_lru)."""
        if page.flags & PG_balloon and not page.flags & PG_lru:
            self.kernel.balloon_driver.putback(page)
        else:
            self.vmstat[NR_ISOLATED[page.flags & PG_swapbacked != 0]] -= 1
            self.kernel.reclaim._putback(page, age=False)

    def suitable_migration_source(self, cc: CompactControl, pfn: int) -> bool:
        if cc.mode != MIGRATE_ASYNC or not cc.direct_compaction:
            return True
        block_mt = self.alloc.pageblock_mt[pfn >> self.alloc.pageblock_order]
        if cc.migratetype == MIGRATE_MOVABLE:
            return block_mt == MIGRATE_MOVABLE
        return block_mt == cc.migratetype

    # ---- the free-list fast searches (5.1+, as 6.1)
    @staticmethod
    def freelist_scan_limit(cc: CompactControl) -> int:
        return (COMPACT_CLUSTER_MAX >> min(63, cc.fast_search_fail)) + 1

    @staticmethod
    def move_freelist_head(freelist, page) -> None:
        """Rotate the list so that `page` is its first entry (the entries before it go to
        the tail, in order): a later reverse search starts with the unscanned ones.
        list_rotate_to_front, as page reporting uses it."""
        _rotate_to_front(freelist, page)

    @staticmethod
    def move_freelist_tail(freelist, page) -> None:
        """Rotate the list so that `page` is its last entry (it and the entries before it
        go to the tail, in order)."""
        if freelist.lru_prev is page:
            return
        prev, nxt = freelist.lru_prev, freelist.lru_next
        prev.lru_next = nxt
        nxt.lru_prev = prev
        after = page.lru_next
        page.lru_next = freelist
        freelist.lru_prev = page
        freelist.lru_next = after
        after.lru_prev = freelist

    def fast_find_migrateblock(self, cc: CompactControl) -> int:
        """fast_find_migrateblock: for an order above PAGE_ALLOC_COSTLY_ORDER (kcompactd, or a
        direct compactor for movable pages), at a pageblock start, look on the MOVABLE free
        lists of orders cc.order - 1 down to 3 (at most freelist_scan_limit entries) for a
        free block below the first half (first eighth once started) of the scan space whose
        pageblock is not skipped: migrate from that pageblock, which is partly free already
        (marking it skipped). On failure the linear scan restarts at the lowest pfn found
        before (reinit_migrate_pfn). Returns the pfn to scan from."""
        alloc = self.alloc
        zone = cc.zone
        nb = alloc.pageblock_nr_pages
        sh = alloc.pageblock_order
        pfn = cc.migrate_pfn
        if cc.ignore_skip_hint:
            return pfn
        if pfn != zone.zone_start_pfn and pfn != pfn & ~(nb - 1):
            return pfn  # a continuation after COMPACT_CLUSTER_MAX
        if cc.order <= PAGE_ALLOC_COSTLY_ORDER:
            return pfn
        if cc.direct_compaction and cc.migratetype != MIGRATE_MOVABLE:
            return pfn
        limit = self.freelist_scan_limit(cc)
        nr_scanned = 0
        distance = (cc.free_pfn - cc.migrate_pfn) >> 1
        if cc.migrate_pfn != zone.zone_start_pfn:
            distance >>= 2
        high_pfn = (cc.migrate_pfn + distance) & ~(nb - 1)
        skip = alloc.pageblock_skip
        found = False
        order = cc.order - 1
        while order >= PAGE_ALLOC_COSTLY_ORDER and not found and nr_scanned < limit:
            area = zone.free_area[order]
            order -= 1
            if not area.nr_free:
                continue
            freelist = area.free_list[MIGRATE_MOVABLE]
            freepage = freelist.lru_next
            while freepage is not freelist:
                nr_scanned += 1
                if nr_scanned > limit:
                    self.move_freelist_tail(freelist, freepage)
                    break
                free_pfn = freepage.pfn
                if free_pfn < high_pfn:
                    if skip[free_pfn >> sh]:
                        freepage = freepage.lru_next
                        continue
                    self.move_freelist_tail(freelist, freepage)
                    # update_fast_start_pfn
                    if cc.fast_start_pfn != FAST_START_DONE:
                        if not cc.fast_start_pfn or free_pfn < cc.fast_start_pfn:
                            cc.fast_start_pfn = free_pfn
                    pfn = max(free_pfn & ~(nb - 1), zone.zone_start_pfn)
                    cc.fast_search_fail = 0
                    found = True
                    skip[free_pfn >> sh] = 1
                    break
                freepage = freepage.lru_next
        cc.total_migrate_scanned += nr_scanned
        if not found:
            cc.fast_search_fail += 1
            # reinit_migrate_pfn
            if cc.fast_start_pfn and cc.fast_start_pfn != FAST_START_DONE:
                cc.migrate_pfn = cc.fast_start_pfn
                cc.fast_start_pfn = FAST_START_DONE
            pfn = cc.migrate_pfn
        return pfn

    def isolate_migratepages(self, cc: CompactControl) -> bool:
        """One pageblock's isolation from the pfn fast_find_migrateblock picks (else
        cc.migrate_pfn); True if pages were isolated, None for ISOLATE_ABORT
        (isolate_migratepages_block's -EAGAIN)."""
        nb = self.alloc.pageblock_nr_pages
        zone = cc.zone
        low_pfn = self.fast_find_migrateblock(cc)
        block_start = max(low_pfn & ~(nb - 1), zone.zone_start_pfn)
        # the fast search marked its pageblock skipped: do not test the hint there
        fast_find_block = low_pfn != cc.migrate_pfn and not cc.fast_search_fail
        block_end = (low_pfn & ~(nb - 1)) + nb
        while block_end <= cc.free_pfn:
            aligned = not low_pfn & (nb - 1)
            if aligned and not fast_find_block and not self.isolation_suitable(cc, block_start):
                pass  # isolation failed here recently: PB_migrate_skip
            elif not self.suitable_migration_source(cc, block_start):
                self.update_cached_migrate(cc, block_end)
            else:
                if self.isolate_migratepages_block(cc, low_pfn, block_end):
                    return None
                break
            fast_find_block = False
            cc.migrate_pfn = low_pfn = block_end
            block_start = block_end
            block_end += nb
        return cc.nr_migratepages > 0

    # ------------------------------------------------------------------ free scanner
    def suitable_migration_target(self, cc: CompactControl, pfn: int) -> bool:
        alloc = self.alloc
        page = alloc.mem_map[pfn]
        if page is not None and page.flags & PG_buddy and page.private >= alloc.pageblock_order:
            return False
        if cc.ignore_block_suitable:
            return True
        return alloc.pageblock_mt[pfn >> alloc.pageblock_order] == MIGRATE_MOVABLE

    def isolate_freepages_block(self, cc: CompactControl, start_pfn: int, end_pfn: int,
                                blocks: list, stride: int) -> tuple[int, int]:
        """Take free blocks of [start_pfn, end_pfn) off the buddy lists into `blocks`;
        returns (pages isolated, where the scan stopped)."""
        alloc = self.alloc
        zone = cc.zone
        mem_map = alloc.mem_map
        nr_scanned = total_isolated = 0
        blockpfn = start_pfn
        while blockpfn < end_pfn:
            nr_scanned += 1
            page = mem_map[blockpfn]
            if page is not None and page.flags & COMPOUND and not blockpfn & ((1 << COMPOUND_ORDER) - 1):
                # a compound page (a THP) from its head: skipped whole, counted whole
                blockpfn += (1 << COMPOUND_ORDER) - 1
                nr_scanned += (1 << COMPOUND_ORDER) - 1
            elif page is not None and page.flags & PG_buddy:
                order = page.private
                if not self.isolate_free_page(zone, page, order):
                    break
                isolated = 1 << order
                nr_scanned += isolated - 1
                total_isolated += isolated
                cc.nr_freepages += isolated
                blocks.append((page, order))
                if cc.nr_migratepages <= cc.nr_freepages:
                    blockpfn += isolated
                    break
                blockpfn += isolated - 1
            blockpfn += stride
        if blockpfn > end_pfn:
            blockpfn = end_pfn
        cc.total_free_scanned += nr_scanned
        if total_isolated:
            self.vmstat["compact_isolated"] += total_isolated
        return total_isolated, blockpfn

    def isolate_free_page(self, zone, page, order: int) -> bool:
        """__isolate_free_page: take a free block off its list if the zone stays above its
        (unboosted) MIN with it gone, as if allocating it; a block of at least half a
        pageblock makes its pageblocks MOVABLE (unless HIGHATOMIC/ISOLATE)."""
        alloc = self.alloc
        sh = alloc.pageblock_order
        watermark = zone.watermark[WMARK_MIN] - zone.watermark_boost + (1 << order)
        if not alloc.zone_watermark_ok(zone, 0, watermark, 0, 0):
            return False
        alloc._del_page_from_free_list(zone, page, order)
        if order >= sh - 1:
            pfn = page.pfn
            for b in range(pfn, pfn + (1 << order), alloc.pageblock_nr_pages):
                if alloc.pageblock_mt[b >> sh] < 3:  # migratetype_is_mergeable
                    alloc.set_pageblock_migratetype(b, MIGRATE_MOVABLE)
        return True

    def fast_isolate_freepages(self, cc: CompactControl, blocks: list) -> int:
        """fast_isolate_freepages (6.1): for a request of order > 0, search the MOVABLE free
        lists of orders below cc.order (from cc.search_order, round robin downwards,
        tail first, at most freelist_scan_limit / 2 entries shrinking per order; a
        pageblock's worth at the scan's start) for a block in the top quarter of the scan
        space (else the highest in the top half), isolate it, and its pageblock around it
        (fast_isolate_around, not for async direct compaction). Each list searched is
        rotated so that the next search starts with entries not scanned. Returns the pfn
        the free scanner goes on from."""
        alloc = self.alloc
        zone = cc.zone
        nb = alloc.pageblock_nr_pages
        if cc.order <= 0:
            return cc.free_pfn
        limit = max(1, self.freelist_scan_limit(cc) >> 1)
        scan_start = False
        if cc.free_pfn >= zone.compact_init_free_pfn:
            limit = nb >> 1
            scan_start = True
        distance = cc.free_pfn - cc.migrate_pfn
        low_pfn = (cc.free_pfn - (distance >> 2)) & ~(nb - 1)
        min_pfn = (cc.free_pfn - (distance >> 1)) & ~(nb - 1)
        if min_pfn > low_pfn:
            low_pfn = min_pfn
        cc.search_order = min(cc.order - 1, cc.search_order)
        nr_scanned = highest = 0
        page = None
        order = cc.search_order
        while page is None and order >= 0:
            area = zone.free_area[order]
            if area.nr_free:
                freelist = area.free_list[MIGRATE_MOVABLE]
                order_scanned = high_pfn = 0
                freepage = freelist.lru_prev  # list_for_each_entry_reverse
                while freepage is not freelist:
                    order_scanned += 1
                    nr_scanned += 1
                    pfn = freepage.pfn
                    if pfn >= highest:
                        highest = max(pfn & ~(nb - 1), zone.zone_start_pfn)
                    if pfn >= low_pfn:
                        cc.fast_search_fail = 0
                        cc.search_order = order
                        page = freepage
                        break
                    if pfn >= min_pfn and pfn > high_pfn:
                        high_pfn = pfn
                        limit >>= 1  # a candidate: shorten the scan
                    if order_scanned >= limit:
                        break
                    freepage = freepage.lru_prev
                if page is None and high_pfn:
                    page = freepage = alloc.mem_map[high_pfn]
                if freepage is not freelist:
                    self.move_freelist_head(freelist, freepage)
                if page is not None:
                    if self.isolate_free_page(zone, page, order):
                        nr_isolated = 1 << order
                        nr_scanned += nr_isolated - 1
                        cc.nr_freepages += nr_isolated
                        blocks.append((page, order))
                        self.vmstat["compact_isolated"] += nr_isolated
                    else:
                        order = cc.search_order + 1  # isolation failed: abort the search
                        page = None
                if order_scanned >= limit:
                    limit = max(1, limit >> 1)
            # next_search_order (the for loop's step, run after every pass)
            order -= 1
            if order < 0:
                order = cc.order - 1
            if order == cc.search_order:
                cc.search_order -= 1
                if cc.search_order < 0:
                    cc.search_order = cc.order - 1
                order = -1
        if page is None:
            cc.fast_search_fail += 1
            if scan_start:
                # the highest pfn seen in the top half, else (direct compaction) min_pfn
                if highest >= min_pfn:
                    page = alloc.mem_map[highest] or alloc.pfn_to_page(highest)
                    cc.free_pfn = highest
                elif cc.direct_compaction and zone.zone_start_pfn <= min_pfn < zone.end_pfn:
                    page = alloc.mem_map[min_pfn] or alloc.pfn_to_page(min_pfn)
                    cc.free_pfn = min_pfn
        if highest and highest >= zone.compact_cached_free_pfn:
            highest -= nb
            zone.compact_cached_free_pfn = highest
        cc.total_free_scanned += nr_scanned
        if page is None:
            return cc.free_pfn
        low_pfn = page.pfn
        self.fast_isolate_around(cc, low_pfn, blocks)
        return low_pfn

    def fast_isolate_around(self, cc: CompactControl, pfn: int, blocks: list) -> None:
        """fast_isolate_around: the rest of the free pages of pfn's pageblock, unless there
        are enough or the compaction is async direct; a block left short is skipped."""
        if cc.nr_freepages >= cc.nr_migratepages:
            return
        if cc.direct_compaction and cc.mode == MIGRATE_ASYNC:
            return
        nb = self.alloc.pageblock_nr_pages
        zone = cc.zone
        start = max(pfn & ~(nb - 1), zone.zone_start_pfn)
        end = min((pfn & ~(nb - 1)) + nb, zone.end_pfn)
        self.isolate_freepages_block(cc, start, end, blocks, 1)
        if cc.nr_freepages < cc.nr_migratepages:
            self.alloc.pageblock_skip[start >> self.alloc.pageblock_order] = 1

    def isolate_freepages(self, cc: CompactControl) -> None:
        alloc = self.alloc
        zone = cc.zone
        nb = alloc.pageblock_nr_pages
        blocks: list = []
        # a small search of the free lists first
        self.fast_isolate_freepages(cc, blocks)
        if cc.nr_freepages:
            self._split_map_pages(cc, blocks)
            return
        isolate_start = cc.free_pfn
        block_start = isolate_start & ~(nb - 1)
        block_end = min(block_start + nb, zone.end_pfn)
        low_pfn = (cc.migrate_pfn & ~(nb - 1)) + nb  # pageblock_end_pfn(migrate_pfn)
        stride = COMPACT_CLUSTER_MAX if cc.mode == MIGRATE_ASYNC else 1
        while block_start >= low_pfn:
            if self.suitable_migration_target(cc, block_start) and self.isolation_suitable(cc, block_start):
                nr_isolated, isolate_start = self.isolate_freepages_block(
                    cc, isolate_start, block_end, blocks, stride)
                if isolate_start == block_end:
                    self.update_pageblock_skip(cc, block_start)
                if cc.nr_freepages >= cc.nr_migratepages:
                    if isolate_start >= block_end:
                        isolate_start = block_start - nb
                    break
                if isolate_start < block_end:
                    break
                if nr_isolated:
                    stride = 1
                else:
                    stride = min(COMPACT_CLUSTER_MAX, stride << 1)
            block_end = block_start
            block_start -= nb
            isolate_start = block_start
        cc.free_pfn = isolate_start
        self._split_map_pages(cc, blocks)

    def _split_map_pages(self, cc: CompactControl, blocks: list) -> None:
        """split_map_pages: every block becomes order-0 pages with a reference, each
        list_add-ed to a list spliced onto freepages: the last page isolated is the head."""
        freepages = cc.freepages
        pfn_to_page = self.alloc.pfn_to_page
        for page, order in blocks:
            base = page.pfn
            for pfn in range(base, base + (1 << order)):
                p = pfn_to_page(pfn)
                p._count = 1
                freepages.append(p)

    def compaction_alloc(self, cc: CompactControl):
        if not cc.freepages:
            self.isolate_freepages(cc)
            if not cc.freepages:
                return None
        cc.nr_freepages -= 1
        return cc.freepages.pop()

    def compaction_free(self, cc: CompactControl, page) -> None:
        cc.freepages.append(page)
        cc.nr_freepages += 1

    def release_freepages(self, cc: CompactControl) -> int:
        high = 0
        free_pages = self.kernel.free_pages
        for page in reversed(cc.freepages):
            high = max(high, page.pfn)
            free_pages(page)
        cc.freepages.clear()
        cc.nr_freepages = 0
        return high

    # ------------------------------------------------------------------ the run
    def compact_scanners_met(self, cc: CompactControl) -> bool:
        sh = self.alloc.pageblock_order
        return (cc.free_pfn >> sh) <= (cc.migrate_pfn >> sh)

    def compact_finished(self, cc: CompactControl) -> int:
        alloc = self.alloc
        zone = cc.zone
        if self.compact_scanners_met(cc):
            reset_cached_positions(alloc, zone)
            if cc.direct_compaction:
                zone.compact_blockskip_flush = True
            return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
        if cc.proactive_compaction:
            if self.kswapd_is_running(zone.node):
                return COMPACT_PARTIAL_SKIPPED
            if self.fragmentation_score_zone(zone) > self.fragmentation_score_wmark(True):
                return COMPACT_CONTINUE
            return COMPACT_SUCCESS
        if cc.order == -1:
            return COMPACT_CONTINUE
        if cc.migrate_pfn & (alloc.pageblock_nr_pages - 1):
            return COMPACT_CONTINUE  # always finish a pageblock
        mt = cc.migratetype
        for order in range(cc.order, NR_ORDERS):
            area = zone.free_area[order]
            if area.free_list[mt]:
                return COMPACT_SUCCESS
            if alloc.find_suitable_fallback(area, order, mt, True)[0] != -1:
                return COMPACT_SUCCESS
        return COMPACT_CONTINUE  # COMPACT_NO_SUITABLE_PAGE

    def compact_zone(self, cc: CompactControl, capc: CaptureControl | None = None) -> int:
        alloc = self.alloc
        zone = cc.zone
        nb = alloc.pageblock_nr_pages
        start_pfn, end_pfn = zone.zone_start_pfn, zone.end_pfn
        sync = cc.mode != MIGRATE_ASYNC
        cc.migratetype = alloc.gfp_migratetype(cc.gfp_mask)
        ret = self.compaction_suitable(zone, cc.order, cc.alloc_flags, cc.highest_zoneidx)
        if ret in (COMPACT_SUCCESS, COMPACT_SKIPPED):
            return ret
        if self.compaction_restarting(zone, cc.order):
            self._reset_isolation_suitable(zone)
        if cc.whole_zone:
            cc.migrate_pfn = start_pfn
            cc.free_pfn = (end_pfn - 1) & ~(nb - 1)
        else:
            cc.migrate_pfn = zone.compact_cached_migrate_pfn[1 if sync else 0]
            cc.free_pfn = zone.compact_cached_free_pfn
            if not start_pfn <= cc.free_pfn < end_pfn:
                cc.free_pfn = (end_pfn - 1) & ~(nb - 1)
                zone.compact_cached_free_pfn = cc.free_pfn
            if not start_pfn <= cc.migrate_pfn < end_pfn:
                cc.migrate_pfn = start_pfn
                zone.compact_cached_migrate_pfn[0] = zone.compact_cached_migrate_pfn[1] = start_pfn
            # compact_init_migrate_pfn: where the last skip-hint reset restarted the
            # migrate scanner, the zone start before any reset
            if cc.migrate_pfn <= max(start_pfn, zone.compact_init_migrate_pfn):
                cc.whole_zone = True
        last_migrated_pfn = 0
        # Linux tests last_migrated_pfn for "migrated since the last drain"; a zone here
        # may start at pfn 0 (x86's DMA starts at 1), so that test is this flag
        migrated = False
        update_cached = not sync and zone.compact_cached_migrate_pfn[0] == zone.compact_cached_migrate_pfn[1]
        order = max(cc.order, 0)
        # the batches isolators on other CPUs may see (as vmscan's: kcompactd beside any
        # task; a task's run beside those on the guest's other CPUs)
        log_batches = cc.t0 is not None and (cc.kthread or len(self.kernel.reclaim.direct_clock) > 1)
        while True:
            ret = self.compact_finished(cc)
            if ret != COMPACT_CONTINUE:
                break
            iteration_start = cc.migrate_pfn
            cc.rescan = (last_migrated_pfn & ~(nb - 1)) == (iteration_start & ~(nb - 1))
            isolated = self.isolate_migratepages(cc)
            if isolated is None:  # ISOLATE_ABORT
                ret = COMPACT_CONTENDED
                self.putback_all(cc)
                cc.nr_migratepages = 0
                break
            if not isolated:
                if update_cached:
                    zone.compact_cached_migrate_pfn[1] = zone.compact_cached_migrate_pfn[0]
            else:
                update_cached = False
                last_migrated_pfn = iteration_start
                migrated = True
                if log_batches:
                    at = cc.t0 + cc.cost + cc.sleep
                    nr_anon = nr_file = 0
                    for page in cc.migratepages:
                        f = page.flags
                        if f & PG_balloon:
                            continue  # non-LRU movable: not counted
                        if f & PG_swapbacked:
                            nr_anon += 1
                        else:
                            nr_file += 1
                _ok, failed, err, cost = migrate_pages(
                    self.kernel, cc.migratepages, lambda: self.compaction_alloc(cc),
                    lambda p: self.compaction_free(cc, p), cc.mode)
                cc.cost += cost
                cc.nr_migratepages = 0
                if cc.migratepages:
                    self.putback_all(cc)
                if log_batches:
                    # the batch counted in NR_ISOLATED_* from its isolation until the last
                    # page is migrated or put back, in the compactor's own time
                    until = cc.t0 + cc.cost + cc.sleep
                    note = self.kernel.reclaim.note_isolated
                    note(at, until, nr_anon, False, cc.cpu, zone.node.nid)
                    note(at, until, nr_file, True, cc.cpu, zone.node.nid)
                if err:
                    if err == ENOMEM and not self.compact_scanners_met(cc):
                        ret = COMPACT_CONTENDED
                        break
                    if cc.direct_compaction and cc.mode == MIGRATE_ASYNC:
                        # block_end_pfn(migrate_pfn - 1, order)
                        cc.migrate_pfn = ((cc.migrate_pfn - 1) | ((1 << order) - 1)) + 1
                        last_migrated_pfn = 0
                        migrated = False
            # check_drain: pages freed to the per-CPU lists may complete a block
            if order > 0 and migrated:
                if last_migrated_pfn < cc.migrate_pfn & ~((1 << order) - 1):
                    alloc.drain_all_pages(zone)
                    last_migrated_pfn = 0
                    migrated = False
            if capc is not None and capc.page is not None:
                ret = COMPACT_SUCCESS  # a page has been captured
                break
        if cc.freepages:
            free_pfn = self.release_freepages(cc) & ~(nb - 1)
            if free_pfn > zone.compact_cached_free_pfn:
                zone.compact_cached_free_pfn = free_pfn
        self.vmstat["compact_migrate_scanned"] += cc.total_migrate_scanned
        self.vmstat["compact_free_scanned"] += cc.total_free_scanned
        return ret

    # ------------------------------------------------------------------ entry points
    def compact_zone_order(self, zone, order: int, gfp: int, prio: int, alloc_flags: int,
                           highest_zoneidx: int, elapsed: float = 0.0) -> tuple[int, float, object]:
        """One zone for a direct compactor, with its capture_control installed (the task's
        current->capture_control) while compact_zone runs. Returns (result, seconds, the
        captured page or None); a capture makes the result COMPACT_SUCCESS. `elapsed`: the
        seconds this compactor spent on the zonelist's earlier zones (its own clock)."""
        full = prio == MIN_COMPACT_PRIORITY
        cc = CompactControl(
            zone, order, gfp, MIGRATE_ASYNC if prio == COMPACT_PRIO_ASYNC else MIGRATE_SYNC_LIGHT,
            alloc_flags=alloc_flags, highest_zoneidx=highest_zoneidx, direct_compaction=True,
            whole_zone=full, ignore_skip_hint=full, ignore_block_suitable=full)
        self._set_clock(cc, False, elapsed)
        capc = CaptureControl(cc)
        alloc = self.alloc
        alloc.capture_control = capc
        try:
            ret = self.compact_zone(cc, capc)
        finally:
            alloc.capture_control = None
        self._throttled(cc)
        if capc.page is not None:
            ret = COMPACT_SUCCESS
        return ret, cc.cost, capc.page

    def try_to_compact_pages(self, gfp: int, order: int, alloc_flags: int, zonelist,
                             highest_zoneidx: int, prio: int) -> tuple[int, object]:
        """Direct compaction over the zonelist; the copies' seconds go to the allocator's
        stall (the caller's time). Returns (result, page captured or None)."""
        rc = COMPACT_SKIPPED
        if not gfp & G.IO:
            return rc, None
        page = None
        spent = 0.0
        for zone in zonelist:
            if prio > MIN_COMPACT_PRIORITY and self.compaction_deferred(zone, order):
                rc = max(COMPACT_DEFERRED, rc)
                continue
            status, cost, page = self.compact_zone_order(zone, order, gfp, prio, alloc_flags, highest_zoneidx,
                                                         spent)
            spent += cost
            self.alloc.stall += cost
            rc = max(status, rc)
            if status == COMPACT_SUCCESS:
                self.compaction_defer_reset(zone, order, False)
                break
            if prio != COMPACT_PRIO_ASYNC and status in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
                self.defer_compaction(zone, order)
        return rc, page

    def compact_node(self, node) -> float:
        """compact_node: every populated zone, whole, MIGRATE_SYNC, order -1. Returns the
        copies' seconds (the throttled sleeps go to kernel.iowait_throttle)."""
        cost = slept = 0.0
        for zone in node.zones:
            if not zone.populated():
                continue
            cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC, whole_zone=True,
                                ignore_skip_hint=True)
            self._set_clock(cc, False, cost + slept)
            self.compact_zone(cc)
            self._throttled(cc)
            cost += cc.cost
            slept += cc.sleep
        return cost

    def compact_nodes(self) -> float:
        """Writing /proc/sys/vm/compact_memory. Returns the copies' seconds."""
        self.kernel.page_alloc.drain_all_pages()  # lru_add_drain_all's pcp part
        return sum(self.compact_node(node) for node in self.alloc.nodes)

    # ------------------------------------------------------------------ kcompactd
    def kcompactd_node_suitable(self, node) -> bool:
        highest = node.kcompactd_highest_zoneidx
        for zone in node.zones[: highest + 1]:
            if zone.populated() and self.compaction_suitable(
                    zone, node.kcompactd_max_order, 0, highest) == COMPACT_CONTINUE:
                return True
        return False

    def wakeup_kcompactd(self, node, order: int, highest_zoneidx: int) -> bool:
        """kswapd going to sleep after a high-order wakeup; True if kcompactd was woken."""
        if not order:
            return False
        if node.kcompactd_max_order < order:
            node.kcompactd_max_order = order
        if node.kcompactd_highest_zoneidx > highest_zoneidx:
            node.kcompactd_highest_zoneidx = highest_zoneidx
        kd = self.kcompactd.get(node.nid)
        if kd is None or kd.running:
            return False
        if not self.kcompactd_node_suitable(node):
            return False
        kd.wake()
        return True

    def kcompactd_do_work(self, node) -> float:
        order = node.kcompactd_max_order
        highest = node.kcompactd_highest_zoneidx
        vm = self.vmstat
        vm["compact_daemon_wake"] += 1
        cost = 0.0
        for zoneid, zone in enumerate(node.zones[: highest + 1]):
            if not zone.populated():
                continue
            if self.compaction_deferred(zone, order):
                continue
            if self.compaction_suitable(zone, order, 0, zoneid) != COMPACT_CONTINUE:
                continue
            cc = CompactControl(zone, order, G.GFP_KERNEL, MIGRATE_SYNC_LIGHT, highest_zoneidx=highest)
            self._set_clock(cc, True, cost)
            status = self.compact_zone(cc)
            cost += cc.cost
            if status == COMPACT_SUCCESS:
                self.compaction_defer_reset(zone, order, False)
            elif status in (COMPACT_PARTIAL_SKIPPED, COMPACT_COMPLETE):
                self.alloc.drain_all_pages(zone)
                self.defer_compaction(zone, order)
            vm["compact_daemon_migrate_scanned"] += cc.total_migrate_scanned
            vm["compact_daemon_free_scanned"] += cc.total_free_scanned
        if node.kcompactd_max_order <= order:
            node.kcompactd_max_order = 0
        if node.kcompactd_highest_zoneidx >= highest:
            node.kcompactd_highest_zoneidx = len(node.zones) - 1
        return cost


def reset_cached_positions(alloc, zone) -> None:
    nb = alloc.pageblock_nr_pages
    zone.compact_cached_migrate_pfn[0] = zone.compact_cached_migrate_pfn[1] = zone.zone_start_pfn
    zone.compact_cached_free_pfn = (max(zone.end_pfn, 1) - 1) & ~(nb - 1)


class Kcompactd:
    """kcompactd for one node (kcompactd() of 6.1): sleeps until kswapd wakes it
    (wakeup_kcompactd) or HPAGE_FRAG_CHECK_INTERVAL_MSEC pass. Woken for an order, it
    compacts the node's zones for it (kcompactd_do_work); on the timeout, or a write to
    compaction_proactiveness, it compacts proactively while the node's fragmentation
    score is above the high mark (should_proactive_compact_node), backing off to
    500 ms << COMPACT_MAX_DEFER_SHIFT (32 s) when a pass did not lower the score. With
    compaction_proactiveness 0 it sleeps until woken. Its copies take their time."""

    def __init__(self, env, compaction: Compaction, node) -> None:
        self.env = env
        self.compaction = compaction
        self.node = node
        self.running = False
        self.wakeups = 0
        self.proactive_passes = 0
        self._wakeup = env.event()
        self.process = env.process(self._run())

    def wake(self) -> None:
        if not self.running and not self._wakeup.triggered:
            self.wakeups += 1
            self._wakeup.succeed()

    def kick(self) -> None:
        """wake_up_interruptible for the proactive trigger (no wakeup counted)."""
        if not self.running and not self._wakeup.triggered:
            self._wakeup.succeed()

    def _run(self):
        env = self.env
        c = self.compaction
        node = self.node
        default_timeout = HPAGE_FRAG_CHECK_INTERVAL_MSEC / 1000
        timeout = default_timeout
        while True:
            if not c.compaction_proactiveness:
                timeout = None  # MAX_SCHEDULE_TIMEOUT
            if timeout is None:
                yield self._wakeup
            elif not self._wakeup.triggered:
                yield self._wakeup | env.timeout(timeout)
            if self._wakeup.triggered:
                self._wakeup = env.event()
            # kcompactd_work_requested(): an order asked, or the proactive trigger
            work = node.kcompactd_max_order > 0 or node.proactive_compact_trigger
            self.running = True
            kernel = c.kernel
            # (wait_event_freezable_timeout is true if the condition holds at the timeout
            # too: an order asked while kcompactd was not woken for it)
            if work and not node.proactive_compact_trigger:
                mark = kernel.stall_mark()
                cost = c.kcompactd_do_work(node)
                if cost > 0:  # its copies on one of the VM's vCPUs (beneath a hypervisor): the
                    # host faults and copies it met hold the vCPU (run_kernel_work's `since`)
                    yield kernel.run_kernel_work(cost, since=mark)
                self.running = False
                timeout = default_timeout
                continue
            timeout = default_timeout
            if c.should_proactive_compact_node(node):
                mark = kernel.stall_mark()
                prev_score = c.fragmentation_score_node(node)
                cost = c.proactive_compact_node(node)
                self.proactive_passes += 1
                if c.fragmentation_score_node(node) >= prev_score:
                    timeout = default_timeout * (1 << COMPACT_MAX_DEFER_SHIFT)
                if cost > 0:
                    yield kernel.run_kernel_work(cost, since=mark)
            node.proactive_compact_trigger = False
            self.running = False


def init_compaction(kernel) -> Compaction:
    """Install compaction on a 6.x kernel (after reclaim): the allocator's direct
    compaction, kswapd's sleep hook, /proc/sys/vm/compact_memory, extfrag_threshold and
    compact_unevictable_allowed. Returns the `Compaction` (also kernel.compaction)."""
    from .procfs import Sysctl

    c = Compaction(kernel)
    kernel.compaction = c
    kernel.page_alloc.compaction = c

    def kswapd_sleep(node, order: int, highest: int) -> None:
        c.reset_isolation_suitable(node)
        c.wakeup_kcompactd(node, order, highest)

    kernel.kswapd_sleep_hook = kswapd_sleep
    procfs = kernel.procfs

    def compact_memory_read() -> str:
        raise PermissionError("/proc/sys/vm/compact_memory: Permission denied (EACCES, mode 0200)")

    def compact_memory_write(text: str) -> None:
        # sysctl_compaction_handler: any write compacts every node
        kernel.page_alloc.stall += c.compact_nodes()

    procfs.register("/proc/sys/vm/compact_memory", compact_memory_read, compact_memory_write)

    def set_threshold(v: int) -> None:
        c.extfrag_threshold = v

    def set_unevictable(v: int) -> None:
        c.compact_unevictable_allowed = v

    procfs.register_sysctl(Sysctl("extfrag_threshold", 0, 1000, lambda: c.extfrag_threshold, set_threshold))
    procfs.register_sysctl(Sysctl("compaction_proactiveness", 0, 100,
                                  lambda: c.compaction_proactiveness, c.set_compaction_proactiveness))
    procfs.register("/sys/kernel/debug/extfrag/unusable_index", lambda: extfrag_text(c, False))
    procfs.register("/sys/kernel/debug/extfrag/extfrag_index", lambda: extfrag_text(c, True))
    procfs.register_sysctl(Sysctl("compact_unevictable_allowed", 0, 1,
                                  lambda: c.compact_unevictable_allowed, set_unevictable))
    return c


def extfrag_line(nid: int, zone: str, indices, signed: bool) -> str:
    """One line of /sys/kernel/debug/extfrag/{unusable,extfrag}_index (mm/vmstat.c:
    unusable_show_print "%d.%03d ", extfrag_show_print "%2d.%03d "), C's truncating / and %."""
    out = [f"Node {nid}, zone {zone:>8} "]
    for i in indices:
        q, r = int(i / 1000), abs(i) % 1000 * (1 if i >= 0 else -1)
        out.append(f"{q:2d}.{r:03d} " if signed else f"{q:d}.{r:03d} ")
    return "".join(out) + "\n"


def extfrag_text(c: Compaction, extfrag: bool) -> str:
    """The debugfs file for every populated zone (walk_zones_in_node)."""
    out = []
    for node in c.alloc.nodes:
        for zone in node.zones:
            if not zone.populated():
                continue
            if extfrag:
                idx = [c.fragmentation_index(zone, o) for o in range(NR_ORDERS)]
            else:
                idx = [c.unusable_free_index(zone, o) for o in range(NR_ORDERS)]
            out.append(extfrag_line(node.nid, zone.name, idx, extfrag))
    return "".join(out)


def start_kcompactd(kernel) -> list:
    """One kcompactd per node on kernel.env (once)."""
    c = kernel.compaction
    if c is None or kernel.env is None or c.kcompactd:
        return []
    started = []
    for node in kernel.page_alloc.nodes:
        kd = Kcompactd(kernel.env, c, node)
        c.kcompactd[node.nid] = kd
        started.append(kd)
    kernel.daemons.extend(started)
    return started
