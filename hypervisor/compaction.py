"""Host compaction: a KVM host's Linux compaction (mm/compaction.c, 6.1) over machine
memory, so that a host THP (largepage.py) finds a free aligned 2 MiB region again once
machine memory is fragmented.

Overview
--------
Machine memory on a host with large pages is aligned regions of 512 frames (RegionMemory,
machine.py): a region is the host's pageblock, and a free region is a free order-9 buddy
block. compact_zone runs two scanners over the regions, as Linux runs them over a zone's
pageblocks: the migrate scanner upward from `migrate_r` (zone->compact_cached_migrate_pfn)
isolates movable frames, COMPACT_CLUSTER_MAX (32) at a time; the free scanner downward
from `free_r` (compact_cached_free_pfn) isolates free frames as migration targets, only
in regions that are partly used (suitable_migration_target: a wholly free region is a free
order-9 block, never broken up for a target); each isolated frame is migrated (a copy into
the target frame, its mapping moved: the P2M entry of a private frame, every sharer's of
a KSM frame) and freed. At each region boundary compact_finished reports COMPACT_SUCCESS
if a region is wholly free; when the scanners meet, COMPACT_COMPLETE (a run that began at
the zone's ends) or COMPACT_PARTIAL_SKIPPED, and the cached positions are reset to the ends.

Movable (isolate_migratepages_block): a guest's private frame (an anonymous page of
QEMU's guest RAM, on the LRU) and a KSM frame (ksm_migrate_page). Not movable: a frame of
a live large page (a compound page: the scanner steps over the whole THP), a compression
cache frame (zswap's default zpool in 6.1 is zbud, whose pages are not movable: mm/Kconfig
ZSWAP_ZPOOL_DEFAULT_ZBUD), the shared zero page, a frame whose write to swap is in flight
(under writeback). A direct compactor fails the whole order-9 block at the first frame it
cannot isolate (skip_on_failure: cc->direct_compaction and mode != MIGRATE_SYNC), putting
back what it isolated of the block; kcompactd (not direct) steps over such frames and
migrates the rest.

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
  every HPAGE_FRAG_CHECK_INTERVAL_MSEC (500 ms) it compacts proactively while the
  fragmentation score is above the high mark (compaction_proactiveness, default 20: score
  > 90, until <= 80) and kswapd is not running (the host not reclaiming: its hard and
  low states), backing off 500 ms << COMPACT_MAX_DEFER_SHIFT when a pass did not lower
  the score.

compaction_suitable: COMPACT_SUCCESS if a region is wholly free with the low watermark (the
host's room for a THP: its minFree) kept; else the free frames must exceed the low
watermark plus compact_gap(9) = 1024, or COMPACT_SKIPPED (no stall counted). Not
modelled: the fragmentation index test (extfrag_threshold), the pageblock skip bits, the
fast free/migrate block searches, the pressure stat thresholds, and the scanners' work
other than the copies (its CPU is not charged).

Counters (/proc/vmstat names): compact_stall, compact_success, compact_fail (direct
compaction: one stall per attempt, a deferred attempt included), compact_migrate_scanned
and compact_free_scanned (frames the scanners visited; a live large page counts 1, its
head), compact_isolated (frames isolated by both scanners), pgmigrate_success,
compact_daemon_wake, compact_daemon_migrate_scanned, compact_daemon_free_scanned; and
compact_cpu_s, host CPU seconds of the copies (one `copy_cost` a frame).
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

# enum compact_result (the ones this model gives), in their kernel order
COMPACT_SKIPPED, COMPACT_DEFERRED, COMPACT_CONTINUE, COMPACT_COMPLETE, \
    COMPACT_PARTIAL_SKIPPED, COMPACT_SUCCESS = 1, 2, 4, 5, 6, 8

# modes (enum migrate_mode)
MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC = 0, 1, 2

_ORDER_FAILED_NONE = 0  # compact_order_failed of a zeroed struct zone
OWNER_ISOLATED = -6  # owner[mpn] of a free frame the free scanner isolated (this run only)


class HostCompaction:
    """Compaction of the host's RegionMemory `machine` for its VMs (the host's `vms` list,
    read at each call). `low`: callable() -> the low watermark in frames (the room a THP
    must leave free); `copy_cost`: host CPU seconds per 4 KiB frame migrated."""

    def __init__(self, machine, vms, sharing=None, copy_cost: float = 1.6e-6, low=None,
                 defrag: str = DEFRAG_DEFAULT,
                 proactiveness: int = COMPACTION_PROACTIVENESS, khugepaged_defrag: bool = True) -> None:
        if defrag not in DEFRAG_MODES:
            raise ValueError(f"thp_defrag: must be one of {', '.join(DEFRAG_MODES)}, got {defrag!r}")
        if not 0 <= proactiveness <= 100:
            raise ValueError(f"compaction_proactiveness: must be 0..100, got {proactiveness}")
        self.machine = machine
        self.vms = vms
        self.sharing = sharing
        self.copy_cost = copy_cost  # seconds of host CPU per frame migrated
        self.low = low
        self.defrag = defrag  # /sys/kernel/mm/transparent_hugepage/defrag
        self.proactiveness = proactiveness  # /proc/sys/vm/compaction_proactiveness
        self.khugepaged_defrag = khugepaged_defrag  # .../transparent_hugepage/khugepaged/defrag
        self.kcompactd = None  # the Kcompactd daemon, once started (woken by "defer")
        # struct zone's compaction state (one zone: machine memory)
        self.migrate_r = 0  # compact_cached_migrate_pfn, as a region
        self.free_r = machine.nr_regions - 1  # compact_cached_free_pfn, as a region
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
        self.compact_cpu_s = 0.0  # host CPU seconds of the copies, all callers
        self._free_entered = -1  # the region the free scanner last entered, this run

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
        return COMPACT_CONTINUE

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
        compaction was skipped, and success or failure. Returns (a region is wholly free
        now, host CPU seconds of the copies)."""
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
            if result == COMPACT_SUCCESS:
                # the allocation gets the page: compaction_defer_reset(..., true)
                self.defer_reset(alloc_success=True)
                self.compact_success += 1
                return True, cost
            self.compact_fail += 1
        return False, cost

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

    # -- compact_zone ---------------------------------------------------------------------------

    def compact_zone(self, mode: int, direct: bool, proactive: bool = False) -> tuple[int, float]:
        """compact_zone for order 9 (or proactively): the scanners from the cached
        positions until a region is wholly free (COMPACT_SUCCESS; proactive: the score
        at or below the low mark) or they meet. Returns (result, host CPU seconds)."""
        m = self.machine
        rfree = m._rfree
        nreg = m.nr_regions
        whole_zone = self.migrate_r == 0 and self.free_r == nreg - 1
        mr = self.migrate_r
        fr = self.free_r
        targets: list[int] = []  # free frames isolated by the free scanner
        copies0 = self.pgmigrate_success
        self._free_entered = -1
        skip_on_failure = direct and mode != MIGRATE_SYNC
        low_mark = self.wmark(True)
        result = COMPACT_CONTINUE
        try:
            while True:
                if mr >= fr:  # compact_scanners_met
                    self.migrate_r = 0
                    self.free_r = nreg - 1
                    result = COMPACT_COMPLETE if whole_zone else COMPACT_PARTIAL_SKIPPED
                    break
                if proactive:
                    if self.fragmentation_score() <= low_mark:
                        result = COMPACT_SUCCESS
                        break
                fr = self._migrate_region(mr, fr, targets, skip_on_failure)
                mr += 1
                self.migrate_r = mr
                self.free_r = fr
                if not proactive and rfree[mr - 1] == REGION_PAGES and mr - 1 < len(m._rlist):
                    result = COMPACT_SUCCESS  # a free order-9 block
                    break
        finally:
            self._release_targets(targets)
        copies = self.pgmigrate_success - copies0
        cost = copies * self.copy_cost
        self.compact_cpu_s += cost
        return result, cost

    def _migrate_region(self, r: int, fr: int, targets: list[int], skip_on_failure: bool) -> int:
        """isolate_migratepages_block over region `r` and migrate_pages of what it isolates,
        COMPACT_CLUSTER_MAX at a time, targets from the free scanner (from region `fr`
        down, above `r`). Returns the free scanner's region."""
        m = self.machine
        if r >= len(m._rlist):
            return fr  # never used: wholly free, nothing to migrate (a free block)
        base = r << REGION_SHIFT
        owner = m.owner
        rfree = m._rfree
        if rfree[r] == REGION_PAGES:
            self.compact_migrate_scanned += 1  # one free order-9 buddy block
            return fr
        if m.lp_region[r]:
            self.compact_migrate_scanned += 1  # a THP: its head, then low_pfn += 511
            return fr
        private, ksm = self._region_rmap(r)
        batch: list[int] = []
        scanned = 0
        for mpn in range(base, base + REGION_PAGES):
            scanned += 1
            o = owner[mpn]
            if o == OWNER_FREE:  # a buddy page
                continue
            if (o >= 0 and mpn in private) or (o == OWNER_SHARED and mpn in ksm):
                batch.append(mpn)
                if len(batch) >= COMPACT_CLUSTER_MAX:
                    self.compact_isolated += len(batch)
                    fr = self._migrate(batch, r, fr, targets, private, ksm)
                    batch = []
                continue
            if skip_on_failure:
                batch = []  # putback: the block cannot be freed
                break
        self.compact_migrate_scanned += scanned
        if batch:
            self.compact_isolated += len(batch)
            fr = self._migrate(batch, r, fr, targets, private, ksm)
        return fr

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

    def _isolate_free(self, r: int, fr: int, targets: list[int], need: int) -> int:
        """isolate_freepages: from region `fr` down to just above `r`, the free frames of
        partly used regions (suitable_migration_target: not a free order-9 block; a live
        large page has none) until `need` are isolated. A region counts in
        compact_free_scanned when the scanner enters it: 512 frames, 1 for a THP (its
        head), 0 for a wholly free one (not a suitable target: not scanned). Returns the
        region it stopped in."""
        m = self.machine
        rlist = m._rlist
        rfree = m._rfree
        lp_region = m.lp_region
        while len(targets) < need and fr > r:
            if fr >= len(rlist) or rfree[fr] == REGION_PAGES:
                fr -= 1  # wholly free (or never used): not a target
                continue
            if fr != self._free_entered:
                self._free_entered = fr
                self.compact_free_scanned += 1 if lp_region[fr] else REGION_PAGES
            if not rfree[fr]:
                fr -= 1
                continue
            lst = rlist[fr]
            n = min(need - len(targets), len(lst))
            got = [lst.pop() for _ in range(n)]
            rfree[fr] -= n
            m.nr_free -= n
            owner = m.owner
            for mpn in got:
                owner[mpn] = OWNER_ISOLATED
            targets.extend(got)
            self.compact_isolated += n
            if not rfree[fr]:
                fr -= 1
        return fr

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

    def _migrate(self, batch: list[int], r: int, fr: int, targets: list[int], private: dict,
                 ksm: dict) -> int:
        """migrate_pages: each frame of `batch` copied into a target frame (the last
        isolated first), its mappings moved (remove_migration_ptes; a KSM frame's stable
        node too: ksm_migrate_page), the old frame freed. A frame with no target left
        stays (the scanners are about to meet). Returns the free scanner's region."""
        if len(targets) < len(batch):
            fr = self._isolate_free(r, fr, targets, len(batch))
        m = self.machine
        content = m.content
        csum = m.csum
        owner = m.owner
        refcount = m.refcount
        for old in batch:
            if not targets:
                break
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
        return fr

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
