"""Host compaction: a KVM host's Linux compaction (mm/compaction.c, 6.1) over machine
memory, so that a host THP (largepage.py) finds a free aligned 2 MiB region again once
machine memory is fragmented.

Overview
--------
Machine memory on a host with large pages is aligned regions of 512 frames (RegionMemory,
machine.py): a region is the host's pageblock, and a free region is a free order-9 buddy
block (two wholly free regions r, r + 1 with r even: one order-10 block). The buddy state
is not kept: it follows from the free frames (every free frame lies in the largest
aligned free block around it), and `_buddy_order` reads it where a scanner needs PageBuddy
and buddy_order. compact_zone runs two scanners, as Linux runs them over a zone:

- the migrate scanner upward from the cached position (compact_cached_migrate_pfn[async,
  sync]: `cached_migrate`), one pageblock at a time (isolate_migratepages): a block whose
  skip bit is set is passed over at its first pfn (isolation_suitable), a live THP's
  block is not a source (pageblock_skip_persistent; update_cached_migrate moves past it).
  isolate_migratepages_block counts one page scanned for each page and for each free
  buddy block, which it steps over; it isolates movable pages, COMPACT_CLUSTER_MAX (32)
  a call unless the block is being rescanned (cc->rescan: the last migration was from
  this block), and the call's first isolation at the block's first pfn sets the block's
  skip bit (test_and_set_skip); a call that reaches the block's end with nothing
  isolated (or rescanning) sets the bit and moves the cached position past the block.
- the free scanner downward from compact_cached_free_pfn (`free_r`), only above the
  migrate scanner's block, in blocks that are suitable targets (not a free order-9
  block: suitable_migration_target) and not skipped: isolate_freepages_block visits
  every stride-th page (async: COMPACT_CLUSTER_MAX, then 1 after a block that gave
  pages, doubled after one that did not; sync: 1), isolating whole buddy blocks (each
  of their pages counted scanned) until the pages being migrated have targets; a block
  scanned to its end gets its skip bit and lowers the cached position
  (update_pageblock_skip); unused targets go back (release_freepages) and the cached
  position rises to the highest of them.
- migrate_pages copies each isolated page, the last isolated first, into the next
  target (the highest pfn of the last isolated block first: split_map_pages reverses
  them), moves its mappings (the P2M entry of a private frame, every sharer's of a KSM
  frame) and frees it. No target left (-ENOMEM): COMPACT_CONTENDED unless the scanners
  have met.
- compact_finished: the scanners meeting ends the run, COMPACT_COMPLETE if it began at
  the zone's start (compact_init_migrate_pfn) else COMPACT_PARTIAL_SKIPPED; the cached
  positions go back to the zone's ends, and a direct compactor sets
  compact_blockskip_flush. At a pageblock boundary a free block of order 9 or more is
  COMPACT_SUCCESS (proactive: the score at or below the low mark).
- skip bits are cleared by __reset_isolation_suitable, only once compact_blockskip_flush
  is set: when the host's reclaim (kswapd: its hard and low states) goes back to sleep
  (kswapd_try_to_sleep; Host.check_state), and when compaction restarts after the
  longest deferral (compaction_restarting: compact_defer_shift 6, 64 considered). It
  walks from both ends, clearing the bits of blocks that hold an LRU page (sources) or
  a buddy page (targets) in a sample of every 8th page, and moves the cached positions
  (and compact_init_*_pfn) to the first such blocks.

Not modelled: fast_isolate_freepages and fast_find_migrateblock, which search the buddy
free lists in their list order (machine memory keeps free frames per region, not buddy
lists in the order Linux's frees leave them; without them an async free scanner can
stride past order-0 fragments that the fast search would find); too_many_isolated; lock
contention; the zone's migratetypes (every host block is movable).

Movable (isolate_migratepages_block): a guest's private frame (an anonymous page of
QEMU's guest RAM, on the LRU) and a KSM frame (ksm_migrate_page). Not movable: a live
large page (its block is no migration source; the free scanner counts its head and
steps over it), a compression
cache frame (zswap's default zpool in 6.1 is zbud, whose pages are not movable: mm/Kconfig
ZSWAP_ZPOOL_DEFAULT_ZBUD), the shared zero page, a frame whose write to swap is in flight
(under writeback). An async direct compactor fails the whole order-9 block at the first
frame it cannot isolate (skip_on_failure: cc->direct_compaction and MIGRATE_ASYNC),
putting back what it isolated of the block; a sync-light one and kcompactd step over such
frames and migrate the rest.

When (a KVM host; ESX: hypervisor.md and VMware's KBs describe no compaction, so an ESX
host does not compact, and a large page needs a region that happens to be wholly free):
- direct compaction on a THP fault of guest RAM, as /sys/kernel/mm/transparent_hugepage/
  defrag says for a MADV_HUGEPAGE VMA (QEMU marks guest RAM so): "always", "madvise" and
  "defer+madvise" stall the faulting vCPU in __alloc_pages_slowpath: an async attempt
  (COMPACT_PRIO_ASYNC) and, after it fails, a sync-light one (DEF_COMPACT_PRIORITY); the
  async attempt never defers, a failed sync-light one does (defer_compaction). "defer"
  wakes kcompactd and falls back at once; "never" does neither. Host direct reclaim
  between the two attempts is not modelled (the host's reclaim is its own states.py).
- khugepaged's huge page allocation (khugepaged/defrag = 1: GFP_TRANSHUGE), the same two
  attempts, their copies charged to khugepaged.
- kcompactd (`Kcompactd`): woken by a "defer" fault, it compacts for order 9 in
  MIGRATE_SYNC_LIGHT (kcompactd_do_work: deferred and suitable checks, defer on failure);
  every HPAGE_FRAG_CHECK_INTERVAL_MSEC (500 ms) it compacts proactively (the whole zone,
  skip bits ignored: proactive_compact_node's cc) while the
  fragmentation score is above the high mark (compaction_proactiveness, default 20: score
  > 90, until <= 80) and kswapd is not running (the host not reclaiming: its hard and
  low states), backing off 500 ms << COMPACT_MAX_DEFER_SHIFT when a pass did not lower
  the score.

compaction_suitable: COMPACT_SUCCESS if a region is wholly free with the low watermark (the
host's room for a THP: its minFree) kept; else the free frames must exceed the low
watermark plus compact_gap(9) = 1024, or COMPACT_SKIPPED (no stall counted); then, order 9
being above PAGE_ALLOC_COSTLY_ORDER, the fragmentation index (fragmentation_index:
1000 - (1000 + free x 1000 / 512) / free blocks; -1000 with a free block of order 9 or
more) decides: at or below vm.extfrag_threshold (`extfrag_threshold`, default 500) the
failure is for lack of memory, not fragmentation, and compaction is skipped.

Counters (/proc/vmstat names): compact_stall, compact_success, compact_fail (direct
compaction: one stall per attempt, a deferred attempt included), compact_migrate_scanned
and compact_free_scanned (pages the scanners visited, as isolate_migratepages_block and
isolate_freepages_block count them: a free buddy block stepped over counts 1, an
isolated one all its pages, a live large page 1), compact_isolated (pages isolated by
both scanners; a migration isolation put back uncounted), pgmigrate_success,
compact_daemon_wake, compact_daemon_migrate_scanned, compact_daemon_free_scanned; and
compact_cpu_s, host CPU seconds of the copies (one `copy_cost` a frame) and of the scanning
(one `scan_cost`, HostConfig.compact_scan_cost, a page counted in compact_migrate_scanned
or compact_free_scanned): a direct compactor's stalls the faulting vCPU (or is
khugepaged's CPU), kcompactd's runs on a host CPU.
"""

from __future__ import annotations

from .machine import OWNER_FREE, OWNER_SHARED, REGION_PAGES, REGION_SHIFT
from .p2m import P2M_PRIVATE, P2M_SHARED
from .states import HARD

HPAGE_ORDER = 9  # COMPACTION_HPAGE_ORDER: a 2 MiB region
COMPACT_CLUSTER_MAX = 32  # SWAP_CLUSTER_MAX: pages isolated per migrate_pages call
COMPACT_MAX_DEFER_SHIFT = 6
HPAGE_FRAG_CHECK_INTERVAL = 0.5  # seconds (HPAGE_FRAG_CHECK_INTERVAL_MSEC)
COMPACTION_PROACTIVENESS = 20  # vm.compaction_proactiveness default
DEFRAG_MODES = ("always", "defer", "defer+madvise", "madvise", "never")
DEFRAG_DEFAULT = "madvise"  # CONFIG_TRANSPARENT_HUGEPAGE_MADVISE distributions' default

EXTFRAG_THRESHOLD = 500  # vm.extfrag_threshold default (sysctl_extfrag_threshold)
PAGE_ALLOC_COSTLY_ORDER = 3
MAX_ORDER = 11  # buddy orders 0..10

# enum compact_result (the ones this model gives), in their kernel order
COMPACT_SKIPPED, COMPACT_DEFERRED, COMPACT_CONTINUE, COMPACT_COMPLETE, \
    COMPACT_PARTIAL_SKIPPED, COMPACT_CONTENDED, COMPACT_SUCCESS = 1, 2, 4, 5, 6, 7, 8

# modes (enum migrate_mode)
MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC = 0, 1, 2

_ORDER_FAILED_NONE = 0  # compact_order_failed of a zeroed struct zone
OWNER_ISOLATED = -6  # owner[mpn] of a free frame the free scanner isolated (this run only)


class _Control:
    """struct compact_control: one compact_zone run's state (pfns are machine frames)."""

    __slots__ = ("mode", "direct", "proactive", "migrate_pfn", "free_pfn", "whole_zone", "rescan",
                 "ignore_skip_hint", "migratepages", "freepages", "nr_migratepages", "rmap")

    def __init__(self, mode: int, direct: bool, proactive: bool) -> None:
        self.mode = mode
        self.direct = direct  # cc->direct_compaction
        self.proactive = proactive  # cc->proactive_compaction
        self.migrate_pfn = 0
        self.free_pfn = 0
        self.whole_zone = proactive  # (proactive_compact_node: the whole zone, no skip hints)
        self.ignore_skip_hint = proactive
        self.rescan = False
        self.migratepages: list[int] = []  # isolated pages, the last isolated at the end
        self.freepages: list[int] = []  # isolated free pages, the next target at the end
        self.nr_migratepages = 0
        self.rmap: dict[int, tuple[dict, dict]] = {}  # region -> _region_rmap, this run


class HostCompaction:
    """Compaction of the host's RegionMemory `machine` for its VMs (the host's `vms` list,
    read at each call). `low`: callable() -> the low watermark in frames (the room a THP
    must leave free); `copy_cost`: host CPU seconds per 4 KiB frame migrated."""

    def __init__(self, machine, vms, sharing=None, copy_cost: float = 1.6e-6, low=None,
                 defrag: str = DEFRAG_DEFAULT,
                 proactiveness: int = COMPACTION_PROACTIVENESS, khugepaged_defrag: bool = True,
                 scan_cost: float = 0.0, extfrag_threshold: int = EXTFRAG_THRESHOLD) -> None:
        if defrag not in DEFRAG_MODES:
            raise ValueError(f"thp_defrag: must be one of {', '.join(DEFRAG_MODES)}, got {defrag!r}")
        if not 0 <= proactiveness <= 100:
            raise ValueError(f"compaction_proactiveness: must be 0..100, got {proactiveness}")
        if not 0 <= extfrag_threshold <= 1000:
            raise ValueError(f"extfrag_threshold: must be 0..1000, got {extfrag_threshold}")
        self.machine = machine
        self.vms = vms
        self.sharing = sharing
        self.copy_cost = copy_cost  # seconds of host CPU per frame migrated
        self.scan_cost = scan_cost  # seconds of host CPU per page a scanner visits
        self.extfrag_threshold = extfrag_threshold  # /proc/sys/vm/extfrag_threshold
        self.low = low
        self.defrag = defrag  # /sys/kernel/mm/transparent_hugepage/defrag
        self.proactiveness = proactiveness  # /proc/sys/vm/compaction_proactiveness
        self.khugepaged_defrag = khugepaged_defrag  # .../transparent_hugepage/khugepaged/defrag
        self.kcompactd = None  # the Kcompactd daemon, once started (woken by "defer")
        # struct zone's compaction state (one zone: machine memory)
        self.cached_migrate = [0, 0]  # compact_cached_migrate_pfn[async, sync], as regions
        self.free_r = machine.nr_regions - 1  # compact_cached_free_pfn, as a region
        self.init_migrate_r = 0  # compact_init_migrate_pfn (set by a reset), as a region
        self.init_free_r = 0  # compact_init_free_pfn
        self.blockskip_flush = False  # compact_blockskip_flush
        self.skip = bytearray(machine.nr_regions)  # PB_migrate_skip of each pageblock
        self.considered = 0  # compact_considered
        self.defer_shift = 0  # compact_defer_shift
        self.order_failed = _ORDER_FAILED_NONE  # compact_order_failed
        # counters
        self.compact_stall = 0
        self.compact_success = 0
        self.compact_fail = 0
        self.compact_migrate_scanned = 0
        self.compact_free_scanned = 0
        self.compact_isolated = 0
        self.pgmigrate_success = 0
        self.compact_daemon_wake = 0
        self.compact_daemon_migrate_scanned = 0
        self.compact_daemon_free_scanned = 0
        self.compact_cpu_s = 0.0  # host CPU seconds of the copies and the scanning, all callers

    # -- deferral (compaction_deferred, defer_compaction, compaction_defer_reset) ---------------

    def deferred(self, order: int = HPAGE_ORDER) -> bool:
        if order < self.order_failed:
            return False
        limit = 1 << self.defer_shift
        self.considered += 1
        if self.considered >= limit:
            self.considered = limit
            return False
        return True

    def defer(self, order: int = HPAGE_ORDER) -> None:
        self.considered = 0
        self.defer_shift = min(self.defer_shift + 1, COMPACT_MAX_DEFER_SHIFT)
        if order < self.order_failed:
            self.order_failed = order

    def defer_reset(self, order: int = HPAGE_ORDER, alloc_success: bool = False) -> None:
        if alloc_success:
            self.considered = 0
            self.defer_shift = 0
        if order >= self.order_failed:
            self.order_failed = order + 1

    # -- checks ---------------------------------------------------------------------------------

    def suitable(self) -> int:
        """__compaction_suitable for order 9: COMPACT_SUCCESS if the allocation would
        succeed already (a wholly free region, the low watermark kept), COMPACT_SKIPPED
        unless the free frames exceed the low watermark + compact_gap(9) (2 << 9), else
        COMPACT_CONTINUE."""
        low = self.low() if self.low is not None else 0
        m = self.machine
        if m.nr_free - REGION_PAGES >= low and m.whole_regions():
            return COMPACT_SUCCESS
        if m.nr_free <= low + (2 << HPAGE_ORDER):
            return COMPACT_SKIPPED
        # order 9 > PAGE_ALLOC_COSTLY_ORDER: only a failure for fragmentation compacts
        fragindex = self.fragmentation_index()
        if 0 <= fragindex <= self.extfrag_threshold:
            return COMPACT_SKIPPED  # (COMPACT_NOT_SUITABLE_ZONE, reported as skipped)
        return COMPACT_CONTINUE

    def free_blocks(self) -> tuple[int, int, int]:
        """fill_contig_page_info for order 9: (free pages, free buddy blocks of every
        order, free blocks of order 9 or more counted in order-9 units). Wholly free
        regions pair into order-10 blocks (r even, r + 1); a partly free region's free
        frames make the largest aligned blocks they fill."""
        import numpy as np

        m = self.machine
        nreg = m.nr_regions
        rfree = m._rfree
        grown = min(len(rfree), nreg)
        whole = [rfree[r] == REGION_PAGES for r in range(grown)] + [True] * (nreg - grown)
        partial = [r for r in range(grown) if 0 < rfree[r] < REGION_PAGES]
        free = sum(rfree[r] for r in partial)
        total = 0
        suitable = 0
        r = 0
        while r < nreg:
            if whole[r]:
                if not r & 1 and r + 1 < nreg and whole[r + 1]:
                    total += 1  # one order-10 block
                    suitable += 2
                    free += 2 * REGION_PAGES
                    r += 2
                    continue
                total += 1
                suitable += 1
                free += REGION_PAGES
            r += 1
        if partial:
            from itertools import chain

            rlist = m._rlist
            mpns = np.fromiter(chain.from_iterable(rlist[r] for r in partial), dtype=np.int64)
            rows = np.searchsorted(np.array(partial, dtype=np.int64), mpns >> REGION_SHIFT)
            mask = np.zeros((len(partial), REGION_PAGES), dtype=bool)
            mask[rows, mpns & (REGION_PAGES - 1)] = True
            # a_k: aligned 2^k-blocks wholly free; those of order k not inside a free
            # block of order k + 1: a_k - 2 a_(k+1)
            a = [int(mask.sum())]
            for k in range(1, HPAGE_ORDER + 1):
                a.append(int(mask.reshape(len(partial), REGION_PAGES >> k, 1 << k).all(axis=2).sum()))
            total += sum(a[k] - 2 * a[k + 1] for k in range(HPAGE_ORDER)) + a[HPAGE_ORDER]
        return free, total, suitable

    def fragmentation_index(self) -> int:
        """fragmentation_index(zone, 9) (__fragmentation_index): 0 when nothing is free,
        -1000 when a free block of order 9 exists, else 1000 - (1000 + free * 1000 / 512)
        / blocks: towards 0 a failure for lack of memory, towards 1000 for fragmentation."""
        free, total, suitable = self.free_blocks()
        if not total:
            return 0
        if suitable:
            return -1000
        return 1000 - (1000 + free * 1000 // (1 << HPAGE_ORDER)) // total

    def fragmentation_score(self) -> int:
        """fragmentation_score_node of the host's one zone: extfrag_for_order(9), the
        free frames outside wholly free regions per 100 free frames, weighted by the
        zone's share of the node (present / (node present + 1))."""
        m = self.machine
        free = m.nr_free
        if free <= 0:
            return 0
        score = (free - m.whole_regions() * REGION_PAGES) * 100 // free
        return score * m.nr_frames // (m.nr_frames + 1)

    def wmark(self, low: bool) -> int:
        """fragmentation_score_wmark: low = max(100 - proactiveness, 5), high = low + 10
        (at most 100)."""
        wl = max(100 - self.proactiveness, 5)
        return wl if low else min(wl + 10, 100)

    # -- direct compaction ----------------------------------------------------------------------

    def direct(self) -> tuple[bool, float]:
        """__alloc_pages_slowpath's compaction for a THP (GFP_TRANSHUGE): an async attempt,
        then a sync-light one; each __alloc_pages_direct_compact counts a stall unless
        compaction was skipped, then tries the allocation (get_page_from_freelist: a
        wholly free region, the low watermark kept, whatever compaction returned): a
        compact_success (compact_blockskip_flush cleared, the deferral reset) or a
        compact_fail. Returns (a region can be allocated now, host CPU seconds)."""
        cost = 0.0
        for mode in (MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT):
            # try_to_compact_pages: prio > MIN_COMPACT_PRIORITY checks the deferral
            if self.deferred():
                result = COMPACT_DEFERRED
            else:
                result = self.suitable()
                if result == COMPACT_CONTINUE:
                    result, c = self.compact_zone(mode, direct=True)
                    cost += c
                    if result == COMPACT_SUCCESS:
                        self.defer_reset(alloc_success=False)
                    elif mode != MIGRATE_ASYNC and result in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
                        self.defer()
            if result == COMPACT_SKIPPED:
                continue  # (no stall counted)
            self.compact_stall += 1
            if self.can_allocate():
                self.blockskip_flush = False
                self.defer_reset(alloc_success=True)
                self.compact_success += 1
                return True, cost
            self.compact_fail += 1
        return False, cost

    def can_allocate(self) -> bool:
        """An order-9 allocation would succeed: a wholly free region, the low watermark
        kept beyond its 512 frames (alloc_region's test)."""
        low = self.low() if self.low is not None else 0
        return self.machine.nr_free - REGION_PAGES >= low and self._free_block_exists()

    def _free_block_exists(self) -> bool:
        """A free block of order 9 or more in the zone (free_area[9..10] not empty)."""
        m = self.machine
        rfree = m._rfree
        nreg = m.nr_regions
        # (every wholly free region is on the `_whole` stack, or never used)
        return len(m._rlist) < nreg or any(rfree[r] == REGION_PAGES and r < nreg for r in reversed(m._whole))

    def thp_fault(self) -> tuple[bool, float]:
        """A THP fault of guest RAM (MADV_HUGEPAGE) found no wholly free region: what the
        defrag setting does. Returns (a region is free now, seconds the vCPU stalled)."""
        d = self.defrag
        if d == "never":
            return False, 0.0
        if d == "defer":
            self.wake_kcompactd()
            return False, 0.0
        return self.direct()  # always, madvise, defer+madvise (madvised guest RAM)

    def wake_kcompactd(self) -> None:
        if self.kcompactd is not None:
            self.kcompactd.wake()

    # -- kcompactd ------------------------------------------------------------------------------

    def kcompactd_do_work(self) -> float:
        """kcompactd_do_work for order 9 (MIGRATE_SYNC_LIGHT, not direct). Returns host CPU
        seconds of the copies."""
        if self.deferred() or self.suitable() != COMPACT_CONTINUE:
            return 0.0
        m0, f0 = self.compact_migrate_scanned, self.compact_free_scanned
        result, cost = self.compact_zone(MIGRATE_SYNC_LIGHT, direct=False)
        if result == COMPACT_SUCCESS:
            self.defer_reset()
        elif result in (COMPACT_COMPLETE, COMPACT_PARTIAL_SKIPPED):
            self.defer()
        self.compact_daemon_migrate_scanned += self.compact_migrate_scanned - m0
        self.compact_daemon_free_scanned += self.compact_free_scanned - f0
        return cost

    def proactive(self) -> float:
        """proactive_compact_node: compact_zone with cc.proactive_compaction (finished once
        the score is at most the low mark). Returns host CPU seconds of the copies."""
        m0, f0 = self.compact_migrate_scanned, self.compact_free_scanned
        _, cost = self.compact_zone(MIGRATE_SYNC_LIGHT, direct=False, proactive=True)
        self.compact_daemon_migrate_scanned += self.compact_migrate_scanned - m0
        self.compact_daemon_free_scanned += self.compact_free_scanned - f0
        return cost

    # -- pageblock skip bits (isolation_suitable, __reset_isolation_suitable) -----------------

    def _whole(self, r: int) -> bool:
        """Region `r` is wholly free (a free order-9 block, or half of an order-10 one)."""
        return r >= len(self.machine._rlist) or self.machine._rfree[r] == REGION_PAGES

    def _buddy_order(self, pfn: int) -> int:
        """PageBuddy(pfn) and buddy_order: the order of the free buddy block whose first
        frame is `pfn`, or -1 (in use, isolated, or inside a free block). The buddy state
        follows from the free frames: every free frame is in the largest aligned free
        block that contains it (orders up to MAX_ORDER - 1 = 10: two wholly free
        regions r, r + 1 with r even are one order-10 block)."""
        r = pfn >> REGION_SHIFT
        off = pfn & (REGION_PAGES - 1)
        nreg = self.machine.nr_regions
        if self._whole(r):
            if off:
                return -1
            if r & 1:
                return -1 if self._whole(r - 1) else HPAGE_ORDER
            return HPAGE_ORDER + 1 if r + 1 < nreg and self._whole(r + 1) else HPAGE_ORDER
        owner = self.machine.owner
        if owner[pfn] != OWNER_FREE:
            return -1
        k = 0
        while k < HPAGE_ORDER:
            size = 1 << k
            if off & size or owner[pfn + size:pfn + 2 * size].count(OWNER_FREE) != size:
                break
            k += 1
        if k < HPAGE_ORDER and off & (1 << k):
            size = 1 << k
            if owner[pfn - size:pfn].count(OWNER_FREE) == size:
                return -1  # the upper half of a larger free block
        return k

    def _is_lru(self, pfn: int) -> bool:
        """PageLRU: a guest's page (private, or a KSM page: both on the host's anon LRU)."""
        o = self.machine.owner[pfn]
        return o >= 0 or o == OWNER_SHARED

    def _reset_isolation_pfn(self, r: int, check_source: bool, check_target: bool) -> bool:
        """__reset_isolation_pfn for region `r`: a live THP keeps its bit
        (pageblock_skip_persistent); a clear bit is clear already; else the bit is
        cleared if a sample of the block's pages, one every 1 << PAGE_ALLOC_COSTLY_ORDER
        (8), finds an LRU page (a migration source) or a buddy page (a target)."""
        m = self.machine
        if r < len(m._rlist) and m.lp_region[r]:
            return False
        if check_source and check_target and not self.skip[r]:
            return True
        base = r << REGION_SHIFT
        for pfn in range(base, base + REGION_PAGES, 1 << PAGE_ALLOC_COSTLY_ORDER):
            if check_source and not self._whole(r) and self._is_lru(pfn):
                self.skip[r] = 0
                return True
            if check_target and self._buddy_order(pfn) >= 0:
                self.skip[r] = 0
                return True
        return False

    def reset_isolation_suitable(self) -> None:
        """__reset_isolation_suitable: only if a direct compactor's scanners met since the
        last reset (compact_blockskip_flush). The migrate scanner's side walks up from
        the zone's start, the free scanner's down from its end, one pageblock each step
        until they pass; each clears the skip bits of blocks worth scanning, and the
        first such block of each side becomes the cached start (compact_init_*_pfn); if
        no block was found, both scanners start where the walk ended."""
        if not self.blockskip_flush:
            return
        self.blockskip_flush = False
        # in pfns, as the kernel walks: the free side from the zone's last pfn
        migrate_pfn = 0
        free_pfn = (self.machine.nr_regions << REGION_SHIFT) - 1
        reset_migrate, reset_free = free_pfn, migrate_pfn
        source_set = free_set = False
        while migrate_pfn < free_pfn:
            if self._reset_isolation_pfn(migrate_pfn >> REGION_SHIFT, True, source_set) \
                    and migrate_pfn < reset_migrate:
                source_set = True
                reset_migrate = migrate_pfn
                self.init_migrate_r = migrate_pfn >> REGION_SHIFT
                self.cached_migrate = [self.init_migrate_r] * 2
            if self._reset_isolation_pfn(free_pfn >> REGION_SHIFT, free_set, True) and free_pfn > reset_free:
                free_set = True
                reset_free = free_pfn
                self.init_free_r = self.free_r = free_pfn >> REGION_SHIFT
            migrate_pfn += REGION_PAGES
            free_pfn -= REGION_PAGES
        if reset_migrate >= reset_free:  # leave no distance if no suitable block was reset
            self.cached_migrate = [migrate_pfn >> REGION_SHIFT] * 2
            self.free_r = free_pfn >> REGION_SHIFT

    def restarting(self, order: int = HPAGE_ORDER) -> bool:
        """compaction_restarting: the deferral has run its longest cycle."""
        if order < self.order_failed:
            return False
        return self.defer_shift == COMPACT_MAX_DEFER_SHIFT and self.considered >= 1 << self.defer_shift

    def _update_cached_migrate(self, end_r: int, sync: bool) -> None:
        if end_r > self.cached_migrate[0]:
            self.cached_migrate[0] = end_r
        if sync and end_r > self.cached_migrate[1]:
            self.cached_migrate[1] = end_r

    # -- compact_zone ---------------------------------------------------------------------------

    def compact_zone(self, mode: int, direct: bool, proactive: bool = False) -> tuple[int, float]:
        """compact_zone for order 9 (or proactively, order -1), region by region: see the
        module docstring. Returns (result, host CPU seconds: the copies and the scanning)."""
        m = self.machine
        nreg = m.nr_regions
        sync = mode != MIGRATE_ASYNC
        if not proactive and self.restarting():
            self.reset_isolation_suitable()
        cc = _Control(mode, direct, proactive)
        if cc.whole_zone:
            cc.migrate_pfn = 0
            cc.free_pfn = (nreg - 1) << REGION_SHIFT
        else:
            cc.migrate_pfn = self.cached_migrate[sync] << REGION_SHIFT
            cc.free_pfn = self.free_r << REGION_SHIFT
            if not 0 <= self.free_r < nreg:
                self.free_r = nreg - 1
                cc.free_pfn = self.free_r << REGION_SHIFT
            cc.whole_zone = cc.migrate_pfn >> REGION_SHIFT <= self.init_migrate_r
        update_cached = not sync and self.cached_migrate[0] == self.cached_migrate[1]
        copies0 = self.pgmigrate_success
        scanned0 = self.compact_migrate_scanned + self.compact_free_scanned
        low_mark = self.wmark(True)
        last_migrated = -1
        targets = cc.freepages
        result = COMPACT_CONTINUE
        try:
            while True:
                result = self._compact_finished(cc, low_mark)
                if result != COMPACT_CONTINUE:
                    break
                start = cc.migrate_pfn
                cc.rescan = last_migrated >= 0 and last_migrated >> REGION_SHIFT == start >> REGION_SHIFT
                if not self._isolate_migratepages(cc):
                    if update_cached:
                        self.cached_migrate[1] = self.cached_migrate[0]
                    continue
                update_cached = False
                last_migrated = start
                if not self._migrate_pages(cc):
                    # -ENOMEM: compaction_alloc found no free page
                    met = cc.free_pfn >> REGION_SHIFT <= cc.migrate_pfn >> REGION_SHIFT
                    if not met:
                        result = COMPACT_CONTENDED
                        break
                    if direct and mode == MIGRATE_ASYNC:
                        cc.migrate_pfn = ((cc.migrate_pfn - 1) | (REGION_PAGES - 1)) + 1
                        last_migrated = -1
        finally:
            if targets:
                high = max(targets)
                self._release_targets(targets)
                if high >> REGION_SHIFT > self.free_r:
                    self.free_r = high >> REGION_SHIFT
        copies = self.pgmigrate_success - copies0
        scanned = self.compact_migrate_scanned + self.compact_free_scanned - scanned0
        cost = copies * self.copy_cost + scanned * self.scan_cost
        self.compact_cpu_s += cost
        return result, cost

    def _compact_finished(self, cc: _Control, low_mark: int) -> int:
        """__compact_finished for order 9: the scanners met (the cached positions reset to
        the zone's ends; a direct compactor flags the skip bits for a reset); proactive:
        the score at or below the low mark; else, at a pageblock boundary, a free block of
        order 9 or more is COMPACT_SUCCESS."""
        if cc.free_pfn >> REGION_SHIFT <= cc.migrate_pfn >> REGION_SHIFT:
            self.cached_migrate = [0, 0]
            self.free_r = self.machine.nr_regions - 1
            if cc.direct:
                self.blockskip_flush = True
            return COMPACT_COMPLETE if cc.whole_zone else COMPACT_PARTIAL_SKIPPED
        if cc.proactive:
            return COMPACT_SUCCESS if self.fragmentation_score() <= low_mark else COMPACT_CONTINUE
        if cc.migrate_pfn & (REGION_PAGES - 1):
            return COMPACT_CONTINUE
        if self._free_block_exists():
            return COMPACT_SUCCESS
        return COMPACT_CONTINUE

    def _isolate_migratepages(self, cc: _Control) -> bool:
        """isolate_migratepages: from the migrate scanner's pfn, the first pageblock below
        the free scanner's that is not skipped (isolation_suitable, checked at a block's
        first pfn only) and is a suitable source (not a live THP:
        pageblock_skip_persistent; every host block is movable), then
        isolate_migratepages_block there. Returns whether anything was isolated
        (ISOLATE_SUCCESS). (fast_find_migrateblock is not modelled.)"""
        m = self.machine
        low = cc.migrate_pfn
        r = low >> REGION_SHIFT
        while (r + 1) << REGION_SHIFT <= cc.free_pfn:
            aligned = not low & (REGION_PAGES - 1)
            if aligned and self.skip[r] and not cc.ignore_skip_hint:
                r += 1
                cc.migrate_pfn = low = r << REGION_SHIFT
                continue
            if r < len(m._rlist) and m.lp_region[r]:
                self._update_cached_migrate(r + 1, cc.mode != MIGRATE_ASYNC)
                r += 1
                cc.migrate_pfn = low = r << REGION_SHIFT
                continue
            self._isolate_migratepages_block(cc, low, (r + 1) << REGION_SHIFT)
            break
        return bool(cc.migratepages)

    def _isolate_migratepages_block(self, cc: _Control, low: int, end: int) -> None:
        """isolate_migratepages_block over [low, end) of one region: a free buddy block
        counts one page scanned and is stepped over; a movable page is isolated (the
        first isolation of a call that starts at the block's first pfn sets the block's
        skip bit: test_and_set_skip), and a call stops after COMPACT_CLUSTER_MAX unless
        rescanning; a page that cannot be isolated makes an async direct compactor give
        up the block (skip_on_failure: what it isolated there is put back), others step
        over it. A call that reaches the block's end with nothing isolated (or
        rescanning) marks the block skipped and moves the cached migrate position past
        it (update_cached_migrate)."""
        m = self.machine
        r = low >> REGION_SHIFT
        owner = m.owner
        skip_on_failure = cc.direct and cc.mode == MIGRATE_ASYNC
        valid = False
        skip_updated = False
        nr_scanned = 0
        isolated: list[int] = []
        pfn = low
        if r not in cc.rmap:
            cc.rmap[r] = self._region_rmap(r) if not self._whole(r) else ({}, {})
        private, ksm = cc.rmap[r]
        while pfn < end:
            nr_scanned += 1
            aligned = not pfn & (REGION_PAGES - 1)
            if not valid and aligned:
                if self.skip[r] and not cc.ignore_skip_hint:  # isolation_suitable
                    pfn = end
                    break
                valid = True
            if self._whole(r):
                pfn = end  # a free order-9 (or 10) block: low_pfn += (1 << order) - 1
                break
            o = owner[pfn]
            if o == OWNER_FREE:
                k = self._buddy_order(pfn)
                if k >= 0:
                    pfn += 1 << k
                    continue
            elif (o >= 0 and pfn in private) or (o == OWNER_SHARED and pfn in ksm):
                if not skip_updated:
                    skip_updated = True
                    if aligned and not cc.ignore_skip_hint:  # test_and_set_skip
                        if self.skip[r]:
                            break
                        self.skip[r] = 1
                isolated.append(pfn)
                pfn += 1
                if len(cc.migratepages) + len(isolated) >= COMPACT_CLUSTER_MAX and not cc.rescan:
                    break
                continue
            # isolate_fail
            if skip_on_failure:
                isolated = []  # putback_movable_pages: the order-9 block cannot be freed
                pfn = end
                break
            pfn += 1
        if pfn > end:
            pfn = end
        if pfn == end and (not isolated or cc.rescan):
            if valid and not skip_updated:
                self.skip[r] = 1
            self._update_cached_migrate(end >> REGION_SHIFT, cc.mode != MIGRATE_ASYNC)
        self.compact_migrate_scanned += nr_scanned
        self.compact_isolated += len(isolated)
        # list_add: the last isolated is at the list's head, migrated first
        cc.migratepages.extend(isolated)
        cc.migrate_pfn = pfn

    def _migrate_pages(self, cc: _Control) -> bool:
        """migrate_pages of the isolated pages, the last isolated first: each copied into
        a free page from compaction_alloc (isolate_freepages when the list is empty; the
        highest pfn of the last isolated block first), its mappings moved
        (remove_migration_ptes; a KSM frame's stable node too: ksm_migrate_page), the old
        frame freed. False if a page found no free page (-ENOMEM; the rest put back)."""
        m = self.machine
        content = m.content
        csum = m.csum
        owner = m.owner
        refcount = m.refcount
        batch = cc.migratepages
        targets = cc.freepages
        nr_migratepages = len(batch)
        ok = True
        while batch:
            old = batch.pop()
            if not targets:
                self._isolate_freepages(cc, nr_migratepages)
                if not targets:
                    batch.clear()
                    ok = False
                    break
            private, ksm = cc.rmap[old >> REGION_SHIFT]
            new = targets.pop()
            o = owner[old]
            content[new] = content[old]
            csum[new] = csum[old]  # (the same bytes; a pending write stays pending)
            owner[new] = o
            refcount[new] = refcount[old]
            m.frames_allocated += 1
            if o >= 0:
                vm, pfn = private.pop(old)
                vm.p2m.mpn[pfn] = new
            else:
                sh = self.sharing
                chain = sh._chain_of.pop(old)
                chain.dups[chain.dups.index(old)] = new
                sh._chain_of[new] = chain
                for vm, pfn in ksm.pop(old):
                    vm.p2m.mpn[pfn] = new
            m.free(old)  # (its content and mappings moved)
            self.pgmigrate_success += 1
        return ok

    def _isolate_freepages(self, cc: _Control, need: int) -> None:
        """isolate_freepages (without fast_isolate_freepages): from the free scanner's pfn
        down to the block above the migrate scanner's, blocks that are suitable targets
        (not a free order-9 block: suitable_migration_target) and not skipped; each
        scanned by isolate_freepages_block with a stride (async: COMPACT_CLUSTER_MAX,
        halved to 1 once a block gave pages, doubled after an empty one; sync: 1) until
        `need` pages are isolated. A block scanned to its end gets its skip bit and lowers
        the cached free position (update_pageblock_skip); the scanner records where it
        stopped (cc->free_pfn)."""
        start = cc.free_pfn
        r = start >> REGION_SHIFT
        low_r = (cc.migrate_pfn >> REGION_SHIFT) + 1  # pageblock_end_pfn(migrate_pfn)
        stride = COMPACT_CLUSTER_MAX if cc.mode == MIGRATE_ASYNC else 1
        while r >= low_r:
            end = (r + 1) << REGION_SHIFT
            if r < self.machine.nr_regions and self._buddy_order(r << REGION_SHIFT) < HPAGE_ORDER \
                    and (not self.skip[r] or cc.ignore_skip_hint):
                start, n = self._isolate_freepages_block(cc, start, end, stride, need)
                if start == end:  # update_pageblock_skip
                    self.skip[r] = 1
                    if r < self.free_r:
                        self.free_r = r
                if len(cc.freepages) >= need:
                    if start >= end:
                        start = (r - 1) << REGION_SHIFT
                    cc.free_pfn = start
                    return
                if start < end:
                    cc.free_pfn = start
                    return
                stride = 1 if n else min(COMPACT_CLUSTER_MAX, stride << 1)
            r -= 1
            start = r << REGION_SHIFT
        cc.free_pfn = start

    def _isolate_freepages_block(self, cc: _Control, start: int, end: int, stride: int,
                                 need: int) -> tuple[int, int]:
        """isolate_freepages_block (not strict): from `start`, every `stride`-th page; a
        live THP counts one page and ends the block; a buddy block's pages are isolated
        whole (each counted scanned) unless __isolate_free_page refuses (order-0
        watermark: the low watermark plus the block kept free), ending the scan, which
        also ends once `need` pages are isolated. Returns (where it stopped, pages
        isolated)."""
        m = self.machine
        r = start >> REGION_SHIFT
        owner = m.owner
        low = self.low() if self.low is not None else 0
        nr_scanned = 0
        total = 0
        pfn = start
        got: list[int] = []
        while pfn < end:
            nr_scanned += 1
            if m.lp_region[r]:  # PageCompound: blockpfn += (1 << order) - 1
                pfn = end
                break
            k = self._buddy_order(pfn) if owner[pfn] == OWNER_FREE else -1
            if k < 0:
                pfn += stride
                continue
            n = 1 << k
            if m.nr_free - n < low:
                break  # __isolate_free_page: the zone's order-0 watermark
            blk = list(range(pfn, pfn + n))
            for f in blk:
                owner[f] = OWNER_ISOLATED
            m.nr_free -= n
            m._rfree[r] -= n
            got.extend(blk)
            cc.freepages.extend(blk)
            nr_scanned += n - 1
            total += n
            if len(cc.freepages) >= need:
                pfn += n
                break
            pfn += n - 1 + stride
        if got:
            taken = set(got)
            lst = m._rlist[r]
            lst[:] = [f for f in lst if f not in taken]
        if pfn > end:
            pfn = end
        self.compact_free_scanned += nr_scanned
        self.compact_isolated += total
        return pfn, total

    def _region_rmap(self, r: int) -> tuple[dict, dict]:
        """rmap_walk for the frames of region `r`: {mpn: (VM, pfn)} of its private frames
        (their one mapping, found in the owning VMs' P2Ms) and {mpn: [(VM, pfn), ...]} of
        its KSM frames (every sharer's; none without page sharing). A frame found in
        neither is not movable (a write to swap in flight holds it). Vectorised: a pass
        over the owning VMs' P2Ms (every VM's for KSM frames), not a Python step per
        guest page."""
        import numpy as np

        m = self.machine
        lo = r << REGION_SHIFT
        hi = lo + REGION_PAGES
        owners = set(m.owner[lo:hi])
        private: dict[int, tuple] = {}
        ksm: dict[int, list] = {}
        by_id = {vm.vmid: vm for vm in self.vms}
        for vmid in owners:
            vm = by_id.get(vmid) if vmid >= 0 else None
            if vm is None or not vm.p2m.nr[P2M_PRIVATE]:
                continue
            st = np.frombuffer(vm.p2m.state, dtype=np.uint8)
            mp = np.frombuffer(vm.p2m.mpn, dtype=np.int32)
            mpns = vm.p2m.mpn
            for pfn in np.flatnonzero((mp >= lo) & (mp < hi) & (st == P2M_PRIVATE)).tolist():
                private[mpns[pfn]] = (vm, pfn)
        if OWNER_SHARED in owners and self.sharing is not None:
            for vm in self.vms:
                if not vm.p2m.nr[P2M_SHARED]:
                    continue
                st = np.frombuffer(vm.p2m.state, dtype=np.uint8)
                mp = np.frombuffer(vm.p2m.mpn, dtype=np.int32)
                mpns = vm.p2m.mpn
                for pfn in np.flatnonzero((mp >= lo) & (mp < hi) & (st == P2M_SHARED)).tolist():
                    ksm.setdefault(mpns[pfn], []).append((vm, pfn))
        return private, ksm

    def _release_targets(self, targets: list[int]) -> None:
        """release_freepages: isolated free frames not used go back to their regions."""
        if not targets:
            return
        m = self.machine
        owner = m.owner
        for mpn in targets:
            owner[mpn] = OWNER_FREE
        m.nr_free += len(targets)
        m._free_frames(targets)
        targets.clear()

    def counters(self) -> dict[str, int | float]:
        return {
            "compact_stall": self.compact_stall,
            "compact_success": self.compact_success,
            "compact_fail": self.compact_fail,
            "compact_migrate_scanned": self.compact_migrate_scanned,
            "compact_free_scanned": self.compact_free_scanned,
            "compact_isolated": self.compact_isolated,
            "pgmigrate_success": self.pgmigrate_success,
            "compact_daemon_wake": self.compact_daemon_wake,
            "compact_daemon_migrate_scanned": self.compact_daemon_migrate_scanned,
            "compact_daemon_free_scanned": self.compact_daemon_free_scanned,
            "compact_cpu_s": self.compact_cpu_s,
        }


class Kcompactd:
    """The host's kcompactd (SimPy process; kcompactd() of 6.1): sleeps until woken
    (a THP fault under defrag "defer") or HPAGE_FRAG_CHECK_INTERVAL_MSEC pass. Woken, it
    compacts for order 9 (kcompactd_do_work); on the timeout it compacts proactively while
    the fragmentation score is above the high mark, backing off to 500 ms <<
    COMPACT_MAX_DEFER_SHIFT (32 s) when a pass did not lower the score. With
    compaction_proactiveness 0 it sleeps until woken. Its copies run on a host CPU."""

    def __init__(self, env, host, compaction: HostCompaction) -> None:
        self.env = env
        self.host = host
        self.c = compaction
        self.running = False
        self.proactive_passes = 0
        self._wakeup = env.event()
        self._requested = False
        compaction.kcompactd = self
        self.process = env.process(self._run())

    def kswapd_running(self) -> bool:
        """kswapd_is_running(): should_proactive_compact_node does not compact while the
        node reclaims; the host reclaims in its hard and low states (states.py)."""
        states = getattr(self.host, "states", None)
        return states is not None and states.state >= HARD

    def wake(self) -> None:
        """wakeup_kcompactd: counted when it is asleep."""
        self._requested = True
        if not self.running and not self._wakeup.triggered:
            self.c.compact_daemon_wake += 1
            self._wakeup.succeed()

    def _run(self):
        env = self.env
        c = self.c
        default_timeout = HPAGE_FRAG_CHECK_INTERVAL
        timeout = default_timeout
        while True:
            if not c.proactiveness:
                yield self._wakeup
            elif not self._wakeup.triggered:
                yield self._wakeup | env.timeout(timeout)
            if self._wakeup.triggered:
                self._wakeup = env.event()
            self.running = True
            timeout = default_timeout
            if self._requested:
                self._requested = False
                cost = c.kcompactd_do_work()
            elif c.proactiveness and not self.kswapd_running() and c.fragmentation_score() > c.wmark(False):
                prev = c.fragmentation_score()
                cost = c.proactive()
                self.proactive_passes += 1
                if c.fragmentation_score() >= prev:
                    timeout = default_timeout * (1 << COMPACT_MAX_DEFER_SHIFT)
            else:
                cost = 0.0
            if cost > 0.0:
                self.host.large_pages_cpu(cost)
                yield env.timeout(cost)
            self.running = False
