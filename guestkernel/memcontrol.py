"""The root memory cgroup's statistics and their rstat flushing (mm/memcontrol.c; 6.x era
only: a 2.6-era guest has no memory cgroups and reads its node counters directly). Two
sets of flush rules, the kernel setting `memcg_stats_flush`: "6.1" (`MemCgroup61`, the
default: hvsim's 6.x guests are Debian 12's 6.1) and "6.8" (`MemCgroup`, Linux 6.8 and
later, as this machine's 6.18 that recorded the hot-file fixture). The overview below is
6.8's; 6.1's differences are in `MemCgroup61`'s docstring.

Overview
--------
A 6.x guest (CONFIG_MEMCG) charges every user page to a memory cgroup; with no cgroup of
its own, to the root one, so reclaim's target lruvec (mem_cgroup_lruvec(NULL, pgdat)) is
the root memcg's lruvec of the node. Its statistics are kept per CPU and folded into the
totals that readers see only when they are *flushed* (css_rstat_flush): between flushes a
reader sees the values of the last flush.

- Every update (mod_memcg_lruvec_state / mod_memcg_state / count_memcg_events) calls
  memcg_rstat_updated(memcg, val, cpu), which counts abs(val) (in pages) in the CPU's
  `stats_updates`; once that reaches MEMCG_CHARGE_BATCH (64) it is moved to the memcg's
  atomic `stats_updates`. An update made while the memcg already needs a flush
  (memcg_vmstats_needs_flush: atomic > MEMCG_CHARGE_BATCH * num_online_cpus) counts
  nothing.
- `mem_cgroup_flush_stats` flushes only when the memcg needs it (the threshold); a flush
  folds every CPU's pending deltas, so the totals become exact, and clears the counts; a
  flush of the root records `flush_last_time`.
- `flush_memcg_stats_dwork` flushes the root unconditionally every FLUSH_TIME (2 s) from
  boot (`StatsFlusher`, a daemon, with a clock only). The clock starts with the guest
  already up for `boot_uptime` seconds (KernelConfig; by default more than one period,
  its phase drawn from the seed): the boot's last flush is the clock's start's (its
  time, flush_last_time, in the past), the next comes when the period says, and jiffies
  count the uptime.
- `mem_cgroup_flush_stats_ratelimited` (reclaim's prepare_scan_control,
  workingset_test_recent, count_shadow_nodes) flushes, by the threshold, only when the
  periodic flusher is one full cycle late: jiffies past flush_last_time + 2 * FLUSH_TIME.
  A guest without a clock has no periodic flusher and its time does not pass: there the
  lag is not modelled, and a ratelimited read flushes (the values it reads are exact, as
  before 6.x's rstat); memory.stat reads keep the threshold.
- Readers of flushed values (`lruvec_page_state`): inactive_is_low, prepare_scan_count's
  WORKINGSET_ACTIVATE_* and NR_INACTIVE_FILE (cache_trim_mode), snapshot_refaults,
  workingset_test_recent's workingset size. Exact values: get_scan_count's list sizes
  (lruvec_lru_size: mem_cgroup_get_zone_lru_size, kept by update_lru_size under the LRU
  lock), prepare_scan_count's file_is_tiny (node counters). (count_shadow_nodes reads
  the memcg's flushed LRU and slab pages from 6.11; hvsim's shadow nodes are 6.1's, swap
  cache included, and it counts the node's exact pages.)
- `memory_stat` is a read of memory.stat: mem_cgroup_flush_stats, then the flushed values.
  `pollers`: processes reading memory.stat without pause (as measure_workingset.py's
  poller does); each read flushes by the threshold, so the moment the memcg needs a flush
  one of them flushes it.

What is counted: every update 6.1 makes through __mod_memcg_lruvec_state,
__mod_memcg_state or __count_memcg_events for a charged page, one memcg_rstat_updated
call each (abs(val) pages; `rstat_ones(n)`: n calls of one page, exactly), where the guest
makes the same update:
- update_lru_size for every LRU add, delete, isolation, putback and move (THP 512);
- the charge's PGPGIN (mem_cgroup_charge_statistics, one per folio: an anonymous fault, a
  copy-on-write copy, a page-cache or shmem page, a swap-in page, a THP fault or
  collapse, a migration's new page) and the uncharge's PGPGOUT (uncharge_batch, one per
  folio freed: free_user_page, a THP freed whole); PGFAULT and PGMAJFAULT
  (count_memcg_event_mm), THP_FAULT_ALLOC, THP_COLLAPSE_ALLOC;
- NR_ANON_MAPPED / NR_FILE_MAPPED (page_add_*_rmap, page_remove_rmap at the first
  mapping and the last unmapping), NR_ANON_THPS, NR_SHMEM_PMDMAPPED / NR_FILE_PMDMAPPED;
- NR_FILE_PAGES and NR_SHMEM (__filemap_add_folio, filemap_unaccount_folio, shmem's
  swap-out and swap-in), NR_SHMEM_THPS / NR_FILE_THPS, NR_FILE_DIRTY
  (folio_account_dirtied, folio_clear_dirty_for_io / folio_account_cleaned),
  NR_WRITEBACK (__folio_start_writeback, __folio_end_writeback), NR_SWAPCACHE
  (add_to_swap_cache, __delete_from_swap_cache; their NR_FILE_PAGES is the node's only);
- MEMCG_SWAP (cgroup v2, Debian 12's hierarchy: mem_cgroup_try_charge_swap when a slot
  is allocated, mem_cgroup_uncharge_swap when it is freed);
- WORKINGSET_REFAULT/ACTIVATE/RESTORE (workingset_refault); PGACTIVATE (folio_activate,
  shrink_folio_list), PGREFILL and PGDEACTIVATE (shrink_active_list), PGSCAN_* and
  PGSTEAL_* (shrink_inactive_list), PGLAZYFREE, PGLAZYFREED.
The guest's own granularity is kept where it differs from 6.1's: a PMD-mapped file THP
maps and unmaps its 512 subpages one by one (512 calls of one page where 6.1 makes one of
512), and a collapse that fails after its allocation frees the folio without counting
its uncharge. Not counted: kernel memory's updates (a root task's slab and page tables
are the node's only: the root has no objcg in 6.1; a child memcg's MEMCG_KMEM and
NR_SLAB_* through mod_objcg_state are not counted yet).

Invariant: after a flush every flushed value equals its exact counterpart.
"""

from __future__ import annotations

import xxhash

from .list_lru import memcg_reparent_list_lrus
from .page import PG_lru, PG_thp
from .units import PAGE_SHIFT, PAGE_SIZE

MEMCG_CHARGE_BATCH = 64  # pages: include/linux/memcontrol.h
HZ = 250  # jiffies per second (CONFIG_HZ_250, as vmscan.py)
FLUSH_TIME = 2 * HZ  # jiffies: the periodic flusher's interval (2UL*HZ)

# the flushed statistics of a lruvec (indices into MemCgroup.state[nid]): the five LRU
# lists (NR_INACTIVE_ANON .. NR_UNEVICTABLE, as Lruvec.lists) and WORKINGSET_ACTIVATE_ANON,
# WORKINGSET_ACTIVATE_FILE
ST_ACTIVATE_ANON = 5
ST_ACTIVATE_FILE = 6


class MemCgroup:
    """The root memory cgroup's rstat state (struct memcg_vmstats, memcg_vmstats_percpu).

    `pcpu[cpu]`: the CPU's stats_updates (pages); `stats_updates`: the memcg's atomic
    count; `state[nid]`: the flushed values of node nid's lruvec (lruvec_stats.state);
    `flush_last_time`: jiffies of the root's last flush."""

    __slots__ = ("kernel", "reclaim", "alloc", "pcpu", "stats_updates", "threshold", "state",
                 "flush_last_time", "pollers", "nr_flushes", "t0", "uptime")

    def __init__(self, kernel, reclaim) -> None:
        self.kernel = kernel
        self.reclaim = reclaim
        self.alloc = kernel.page_alloc  # its current_cpu is smp_processor_id()
        cpus = max(int(getattr(kernel.config, "cpus", 1)), 1)
        self.pcpu = [0] * cpus
        self.stats_updates = 0
        self.threshold = MEMCG_CHARGE_BATCH * cpus  # num_online_cpus
        self.state = [[0] * 7 for _ in reclaim.lruvecs]
        self.flush_last_time = 0  # jiffies (the root memcg comes online at boot)
        self.pollers = 0  # processes reading memory.stat without pause
        self.nr_flushes = 0  # css_rstat_flush calls (hvsim's count)
        for lv, st in zip(reclaim.lruvecs, self.state):
            lv.stat = st
        env = kernel.env
        self.t0 = env.now if env is not None else 0.0  # the clock's start (seconds)
        self.uptime = boot_uptime(kernel.config)  # the guest's uptime then (seconds)

    # ------------------------------------------------------------------ updates
    def rstat_updated(self, val: int) -> None:
        """memcg_rstat_updated(memcg, val, smp_processor_id()): `val` pages (> 0, the
        caller's abs) updated on the current CPU."""
        if self.stats_updates > self.threshold:
            return  # already flushable: nothing counted
        pc = self.pcpu
        cpu = self.alloc.current_cpu
        n = pc[cpu] + val
        if n < MEMCG_CHARGE_BATCH:
            pc[cpu] = n
            return
        pc[cpu] = 0
        self.stats_updates += n
        if self.pollers and self.stats_updates > self.threshold:
            self.css_rstat_flush()  # a poller's next read of memory.stat

    def rstat_ones(self, calls: int) -> None:
        """`calls` consecutive memcg_rstat_updated(memcg, 1) calls on the current CPU (a
        run of single-page updates counted at once, exactly as one by one)."""
        pc = self.pcpu
        cpu = self.alloc.current_cpu
        while calls > 0:
            if self.stats_updates > self.threshold:
                return  # flushable: the rest count nothing
            c = pc[cpu]
            need = MEMCG_CHARGE_BATCH - c  # calls that bring the CPU's count to the batch
            if calls < need:
                pc[cpu] = c + calls
                return
            calls -= need
            pc[cpu] = 0
            self.stats_updates += MEMCG_CHARGE_BATCH
            if self.pollers and self.stats_updates > self.threshold:
                self.css_rstat_flush()

    def needs_flush(self) -> bool:
        """memcg_vmstats_needs_flush"""
        return self.stats_updates > self.threshold

    # ------------------------------------------------------------------ flushing
    def _fold_lruvecs(self) -> None:
        """cgroup_rstat_flush's effect on the root: every lruvec's flushed LRU sizes and
        workingset activations become exact."""
        if self.reclaim.memcg_tree is not None:
            self._fold_hierarchy()
            return
        for lv, st in zip(self.reclaim.lruvecs, self.state):
            lists = lv.lists
            st[0] = lists[0].nr
            st[1] = lists[1].nr
            st[2] = lists[2].nr
            st[3] = lists[3].nr
            st[4] = lists[4].nr
            st[ST_ACTIVATE_ANON] = lv.activate[0]
            st[ST_ACTIVATE_FILE] = lv.activate[1]

    def _fold_hierarchy(self) -> None:
        """With child memcgs: the root's lruvec_stats are hierarchical, the sums over
        every memcg's lruvec of the node."""
        r = self.reclaim
        for nid, st in enumerate(self.state):
            lvs = r.node_lruvecs(nid)
            for i in range(5):
                st[i] = sum(lv.lists[i].nr for lv in lvs)
            st[ST_ACTIVATE_ANON] = sum(lv.activate[0] for lv in lvs)
            st[ST_ACTIVATE_FILE] = sum(lv.activate[1] for lv in lvs)

    def css_rstat_flush(self) -> None:
        """Fold every CPU's deltas: the flushed values become exact, the counts clear;
        the root's flush records flush_last_time."""
        self._fold_lruvecs()
        pc = self.pcpu
        for i in range(len(pc)):
            pc[i] = 0
        self.stats_updates = 0
        self.flush_last_time = self.jiffies()
        self.nr_flushes += 1

    def mem_cgroup_flush_stats(self) -> None:
        """Flush if the pending updates exceed MEMCG_CHARGE_BATCH * num_online_cpus."""
        if self.stats_updates > self.threshold:
            self.css_rstat_flush()

    def mem_cgroup_flush_stats_ratelimited(self) -> None:
        """Flush (by the threshold) only if the periodic flusher is one full cycle late.
        Without a clock: flush (the lag is not modelled, readers see exact values)."""
        if self.kernel.env is None:
            self.css_rstat_flush()
        elif (self.stats_updates > self.threshold
              and self.jiffies() > self.flush_last_time + 2 * FLUSH_TIME):
            self.css_rstat_flush()

    def flush_memcg_stats_dwork(self) -> None:
        """The periodic flush: the root, whatever the threshold."""
        self.css_rstat_flush()

    def prepare_scan_count_flush(self) -> None:
        """prepare_scan_count's flush (6.8+: prepare_scan_control's
        mem_cgroup_flush_stats_ratelimited)."""
        self.mem_cgroup_flush_stats_ratelimited()

    def workingset_refault_flush(self) -> None:
        """workingset_test_recent's flush: mem_cgroup_flush_stats_ratelimited."""
        self.mem_cgroup_flush_stats_ratelimited()

    def jiffies(self) -> int:
        """jiffies since the boot (the guest's uptime in jiffies; 0 without a clock)."""
        env = self.kernel.env
        return int((env.now - self.t0 + self.uptime) * HZ) if env is not None else 0

    def boot_flushes(self) -> float:
        """The periodic flushes the boot made before the clock started: the last of them
        (at uptime 2 s * n, n >= 1) becomes this instant's flush (hvsim's boot happens at
        the clock's start, so the values it folds are those the boot left), with its own
        time. Returns the seconds until the next periodic flush."""
        period = FLUSH_TIME / HZ
        n = int(self.uptime // period)
        if n:
            self.css_rstat_flush()
            self.flush_last_time = n * FLUSH_TIME
            self.nr_flushes += n - 1
        return (n + 1) * period - self.uptime

    # ------------------------------------------------------------------ readers
    def memory_stat(self) -> dict:
        """A read of memory.stat (memcg_stat_show: mem_cgroup_flush_stats first), the
        root's LRU sizes in pages, summed over nodes, as flushed."""
        self.mem_cgroup_flush_stats()
        names = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
        out = {n: sum(st[i] for st in self.state) for i, n in enumerate(names)}
        out["workingset_activate_anon"] = sum(st[ST_ACTIVATE_ANON] for st in self.state)
        out["workingset_activate_file"] = sum(st[ST_ACTIVATE_FILE] for st in self.state)
        return out


class MemCgroup61(MemCgroup):
    """The root memory cgroup's rstat state under 6.1's rules (mm/memcontrol.c of
    linux-source-6.1: memcg_rstat_updated, __mem_cgroup_flush_stats,
    mem_cgroup_flush_stats, mem_cgroup_flush_stats_delayed, flush_memcg_stats_dwork).

    - memcg_rstat_updated: the CPU's stats_updates += abs(val); once that is above
      MEMCG_CHARGE_BATCH, `flush_threshold` (the global stats_flush_threshold, in
      batches) += x / MEMCG_CHARGE_BATCH, only while it is at most num_online_cpus, and
      the CPU's count resets. The CPUs keep counting whatever the threshold (6.1 has no
      memcg_vmstats_needs_flush gate). The 6.8 atomic `stats_updates` stays 0.
    - __mem_cgroup_flush_stats (`css_rstat_flush`): flush_next_time = jiffies +
      2 * FLUSH_TIME, the flush (values exact), threshold 0; the CPUs' counts stay.
    - mem_cgroup_flush_stats: flush when the threshold is above num_online_cpus.
    - mem_cgroup_flush_stats_delayed: as mem_cgroup_flush_stats, only when jiffies are
      after flush_next_time (at boot always: jiffies_64 starts far past 0).
    - flush_memcg_stats_dwork: every FLUSH_TIME from boot (`StatsFlusher`).
    - Readers: prepare_scan_count (mem_cgroup_flush_stats: reclaim sees at most about
      num_online_cpus batches of staleness), workingset_refault
      (mem_cgroup_flush_stats_delayed), memory.stat (mem_cgroup_flush_stats);
      inactive_is_low's other callers and snapshot_refaults read without a flush.
    Without a clock the lag is not modelled (as `MemCgroup`): reclaim's and refault's
    flushes flush; memory.stat keeps the threshold."""

    __slots__ = ("flush_threshold", "flush_next_time")

    def __init__(self, kernel, reclaim) -> None:
        super().__init__(kernel, reclaim)
        self.threshold = len(self.pcpu)  # num_online_cpus
        self.flush_threshold = 0  # stats_flush_threshold, in batches
        self.flush_next_time = -1  # jiffies: any time is after it until the first flush

    def rstat_updated(self, val: int) -> None:
        """memcg_rstat_updated(memcg, val) on the current CPU (`val` > 0, the caller's
        abs). (lru_cache_add's inlined count stops at x < MEMCG_CHARGE_BATCH and calls
        here at 64, which stays on the CPU: the same counts.)"""
        pc = self.pcpu
        cpu = self.alloc.current_cpu
        x = pc[cpu] + val
        if x <= MEMCG_CHARGE_BATCH:
            pc[cpu] = x
            return
        if self.flush_threshold <= self.threshold:
            self.flush_threshold += x // MEMCG_CHARGE_BATCH
        pc[cpu] = 0
        if self.pollers and self.flush_threshold > self.threshold:
            self.css_rstat_flush()  # a poller's next read of memory.stat

    def rstat_ones(self, calls: int) -> None:
        """`calls` consecutive memcg_rstat_updated(memcg, 1) calls on the current CPU: the
        CPU's count moves at the call that takes it past MEMCG_CHARGE_BATCH (65), one
        batch each time."""
        pc = self.pcpu
        cpu = self.alloc.current_cpu
        while calls > 0:
            c = pc[cpu]
            need = MEMCG_CHARGE_BATCH + 1 - c
            if calls < need:
                pc[cpu] = c + calls
                return
            calls -= need
            pc[cpu] = 0
            if self.flush_threshold <= self.threshold:
                self.flush_threshold += 1
            if self.pollers and self.flush_threshold > self.threshold:
                self.css_rstat_flush()

    def needs_flush(self) -> bool:
        """atomic_read(&stats_flush_threshold) > num_online_cpus()"""
        return self.flush_threshold > self.threshold

    def boot_flushes(self) -> float:
        """As MemCgroup's; flush_next_time follows the boot's last flush."""
        wait = super().boot_flushes()
        if self.uptime >= FLUSH_TIME / HZ:
            self.flush_next_time = self.flush_last_time + 2 * FLUSH_TIME
        return wait

    def css_rstat_flush(self) -> None:
        """__mem_cgroup_flush_stats: flush_next_time, the flush, threshold 0 (the CPUs'
        stats_updates stay as they are)."""
        self.flush_next_time = self.jiffies() + 2 * FLUSH_TIME
        self._fold_lruvecs()
        self.flush_threshold = 0
        self.flush_last_time = self.jiffies()
        self.nr_flushes += 1

    def mem_cgroup_flush_stats(self) -> None:
        """Flush if stats_flush_threshold > num_online_cpus."""
        if self.flush_threshold > self.threshold:
            self.css_rstat_flush()

    def mem_cgroup_flush_stats_delayed(self) -> None:
        """mem_cgroup_flush_stats, only if jiffies are after flush_next_time."""
        if self.jiffies() > self.flush_next_time:
            self.mem_cgroup_flush_stats()

    def prepare_scan_count_flush(self) -> None:
        """prepare_scan_count: mem_cgroup_flush_stats (without a clock: a flush)."""
        if self.kernel.env is None:
            self.css_rstat_flush()
        elif self.flush_threshold > self.threshold:
            self.css_rstat_flush()

    def workingset_refault_flush(self) -> None:
        """workingset_refault: mem_cgroup_flush_stats_delayed (without a clock: a flush)."""
        if self.kernel.env is None:
            self.css_rstat_flush()
        else:
            self.mem_cgroup_flush_stats_delayed()


def boot_uptime(config) -> float:
    """The guest's uptime (seconds) when its clock starts: config.boot_uptime, or (None)
    one flush period plus a phase within the next drawn from the seed (xxh64 of the
    component name): the root memcg comes online at boot (cgroup_init ->
    mem_cgroup_css_online queues flush_memcg_stats_dwork 2 s later, and each flush
    queues the next 2 s on); a booted guest has been up more than 2 s when its workload
    starts, at a point of the flusher's period the boot's length decides."""
    up = getattr(config, "boot_uptime", None)
    if up is not None:
        return float(up)
    seed = int(getattr(config, "seed", 0))
    u = xxhash.xxh64_intdigest(f"{seed}/memcg/boot_uptime".encode()) / 2.0 ** 64
    period = FLUSH_TIME / HZ
    return period + period * u


def make_memcg(kernel, reclaim) -> MemCgroup:
    """The root memcg under the kernel's `memcg_stats_flush` rules ("6.1" or "6.8")."""
    rules = getattr(kernel.config, "memcg_stats_flush", "6.1")
    return MemCgroup(kernel, reclaim) if rules == "6.8" else MemCgroup61(kernel, reclaim)


class StatsFlusher:
    """flush_memcg_stats_dwork: flushes the root memcg every FLUSH_TIME from boot (the
    boot's own flushes: MemCgroup.boot_flushes)."""

    def __init__(self, env, memcg: MemCgroup) -> None:
        self.env = env
        self.memcg = memcg
        self.process = env.process(self._run())

    def _run(self):
        interval = FLUSH_TIME / HZ
        # (this first step runs once the clock's start has done its synchronous work:
        # the boot's content is in place)
        yield self.env.timeout(self.memcg.boot_flushes())
        while True:
            self.memcg.flush_memcg_stats_dwork()
            yield self.env.timeout(interval)


# ---------------------------------------------------------------------------------------
# The memory cgroup hierarchy: page counters, charging, limit reclaim, the memcg OOM
# killer (6.1: mm/page_counter.c, mm/memcontrol.c). 6.x era only.
#
# A child memcg has a `PageCounter` (usage, max, high, failcnt, watermark) linked to its
# parent's; a charge walks it to the root counter (the root's own counter is never
# charged: try_charge_memcg returns at once for the root memcg, and memory.usage_in_bytes
# of the root reads the node statistics). A page charged to a child memcg is recorded in
# `MemCgroupTree.folio_memcg` (pfn -> MemCg: folio->memcg_data); a page not there belongs
# to the root, so a guest that never creates a child cgroup keeps its one root lruvec per
# node and takes none of these paths (`active` False).

MAX_RECLAIM_RETRIES = 16  # mm/internal.h
PAGE_COUNTER_MAX = ((1 << 63) - 1) // 4096  # LONG_MAX / PAGE_SIZE (x86-64)
PAGE_ALLOC_COSTLY_ORDER = 3
MEMCG_RECLAIM_MAY_SWAP = 1
# enum memcg_memory_event (6.1), the order memory.events prints them
MEMCG_EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill")
# MEMCG_SWAP_HIGH, MEMCG_SWAP_MAX, MEMCG_SWAP_FAIL: v2 memory.swap.events (high, max, fail)
MEMCG_SWAP_EVENTS = ("swap_high", "swap_max", "swap_fail")
MEMCG_VMEVENTS = ("pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct")
MEMCG_DELAY_PRECISION_SHIFT = 20
MEMCG_DELAY_SCALING_SHIFT = 14
MEMCG_MAX_HIGH_DELAY_JIFFIES = 2 * HZ
ENOMEM = 12
EBUSY = 16
EINVAL = 22


class PageCounter:
    """struct page_counter (mm/page_counter.c): pages in use, the limits, failcnt and the
    high watermark; `parent` is the parent memcg's counter, `memcg` the owner
    (mem_cgroup_from_counter)."""

    __slots__ = ("usage", "max", "high", "low", "min", "failcnt", "watermark", "parent", "memcg",
                 "min_usage", "low_usage", "children_min_usage", "children_low_usage",
                 "emin", "elow")

    def __init__(self, parent: PageCounter | None, memcg=None) -> None:
        self.usage = 0
        self.max = PAGE_COUNTER_MAX
        self.high = PAGE_COUNTER_MAX
        self.low = 0
        self.min = 0
        self.failcnt = 0
        self.watermark = 0
        self.parent = parent
        self.memcg = memcg
        # memory.min / memory.low: the protected part of usage (propagated to the
        # parent's children_*_usage) and the effective protection reclaim computed
        self.min_usage = self.low_usage = 0
        self.children_min_usage = self.children_low_usage = 0
        self.emin = self.elow = 0

    def propagate_protected_usage(self, usage: int) -> None:
        """propagate_protected_usage: min(usage, min) and min(usage, low) into the
        parent's children_min_usage / children_low_usage."""
        p = self.parent
        if p is None:
            return
        protected = min(usage, self.min)
        if protected != self.min_usage:
            p.children_min_usage += protected - self.min_usage
            self.min_usage = protected
        protected = min(usage, self.low)
        if protected != self.low_usage:
            p.children_low_usage += protected - self.low_usage
            self.low_usage = protected

    def charge(self, nr_pages: int) -> None:
        """page_counter_charge: every level, whatever its max; watermarks follow."""
        c = self
        while c is not None:
            c.usage += nr_pages
            if c.min or c.low or c.min_usage or c.low_usage:
                c.propagate_protected_usage(c.usage)
            if c.usage > c.watermark:
                c.watermark = c.usage
            c = c.parent

    def try_charge(self, nr_pages: int) -> PageCounter | None:
        """page_counter_try_charge: charge every level up to the root unless one would go
        above its max; that level's failcnt counts, the levels below it are cancelled,
        and it is returned (None: charged)."""
        c = self
        while c is not None:
            new = c.usage + nr_pages
            if new > c.max:
                c.failcnt += 1
                d = self
                while d is not c:
                    d.cancel(nr_pages)
                    d = d.parent
                return c
            c.usage = new
            if c.min or c.low or c.min_usage or c.low_usage:
                c.propagate_protected_usage(new)
            if new > c.watermark:
                c.watermark = new
            c = c.parent
        return None

    def cancel(self, nr_pages: int) -> None:
        """page_counter_cancel: usage down (an underflow is clamped to 0, as the WARN)."""
        new = self.usage - nr_pages
        self.usage = new if new >= 0 else 0
        if self.min or self.low or self.min_usage or self.low_usage:
            self.propagate_protected_usage(self.usage)

    def uncharge(self, nr_pages: int) -> None:
        """page_counter_uncharge: every level."""
        c = self
        while c is not None:
            c.cancel(nr_pages)
            c = c.parent

    def set_min(self, nr_pages: int) -> None:
        """page_counter_set_min"""
        self.min = nr_pages
        self._propagate_up()

    def set_low(self, nr_pages: int) -> None:
        """page_counter_set_low"""
        self.low = nr_pages
        self._propagate_up()

    def _propagate_up(self) -> None:
        """set_min / set_low's walk: propagate_protected_usage at every level."""
        c = self
        while c is not None:
            c.propagate_protected_usage(c.usage)
            c = c.parent

    def set_max(self, nr_pages: int) -> int:
        """page_counter_set_max: -EBUSY while usage is above the new max, else 0."""
        if self.usage > nr_pages:
            return -EBUSY
        self.max = nr_pages
        return 0


class MemCg:
    """struct mem_cgroup: one cgroup of the memory controller. `lruvecs[nid]`: its LRU
    lists per node (mem_cgroup_lruvec; the root's are Reclaim.lruvecs); `tasks`: the
    tasks attached to it (cgroup.procs); `events`: memory.events (hierarchical),
    `events_local`; `pgpgin`/`pgpgout`: v1's page events, local."""

    def __init__(self, tree, name: str, parent: MemCg | None, lruvecs: list) -> None:
        self.tree = tree
        self.name = name
        self.parent = parent
        self.children: list[MemCg] = []
        self.memory = PageCounter(parent.memory if parent is not None else None, self)
        # v2 memory.swap.* (memcg->swap) and v1 memory.memsw.* (memcg->memsw: memory and
        # swap together); the tree's version decides which one is charged
        self.swap = PageCounter(parent.swap if parent is not None else None, self)
        self.memsw = PageCounter(parent.memsw if parent is not None else None, self)
        self.lruvecs = lruvecs
        for lv in lruvecs:
            lv.memcg = self
        self.tasks: list = []
        self.events = dict.fromkeys(MEMCG_EVENTS + MEMCG_SWAP_EVENTS, 0)
        self.events_local = dict.fromkeys(MEMCG_EVENTS + MEMCG_SWAP_EVENTS, 0)
        self.pgpgin = 0
        self.pgpgout = 0
        # its tasks' faults (handle_mm_fault's count_memcg_event_mm: PGFAULT, PGMAJFAULT)
        self.pgfault = 0
        self.pgmajfault = 0
        # reclaim's events on the memcg's lruvecs (__count_memcg_events), local
        self.vmevents = dict.fromkeys(MEMCG_VMEVENTS, 0)
        # workingset_refault's mod_lruvec_state(WORKINGSET_REFAULT_ANON/FILE) on the
        # refaulting folio's lruvec of this memcg, local (v1 memory.stat)
        self.workingset_refault = {"workingset_refault_anon": 0, "workingset_refault_file": 0}
        self.swappiness = parent.swappiness if parent is not None else None
        self.move_charge_at_immigrate = 0
        self.oom_kill_disable = 0
        self.under_oom = 0  # mem_cgroup_mark_under_oom's count (oom_control reads it as a bool)
        self.oom_lock = False  # mem_cgroup_oom_trylock
        self.online = True
        self.id = 0
        # kernel memory (CONFIG_MEMCG_KMEM): its obj_cgroup (none for the root), v1's kmem
        # counter (memory.kmem.*), and its local MEMCG_KMEM (pages), NR_KERNEL_STACK_KB,
        # NR_PAGETABLE (pages), NR_SLAB_(UN)RECLAIMABLE_B (bytes)
        self.objcg = None
        self.kmem = PageCounter(parent.kmem if parent is not None else None, self)
        self.kstat = dict.fromkeys(KMEM_STATS, 0)

    @property
    def path(self) -> str:
        if self.parent is None:
            return "/"
        p = self.parent.path
        return (p if p != "/" else "") + "/" + self.name

    def is_root(self) -> bool:
        return self.parent is None

    def lruvec(self, nid: int):
        """mem_cgroup_lruvec(memcg, pgdat)"""
        lvs = self.lruvecs
        return lvs[nid] if len(lvs) > 1 else lvs[0]

    def iter(self):
        """mem_cgroup_iter(self, ...): self, then its descendants in pre-order (css_next_
        descendant_pre), children in the order they were created."""
        stack = [self]
        while stack:
            m = stack.pop()
            yield m
            stack.extend(reversed(m.children))

    def is_descendant(self, root: MemCg) -> bool:
        """mem_cgroup_is_descendant"""
        m = self
        while m is not None:
            if m is root:
                return True
            m = m.parent
        return False

    def memory_event(self, event: str) -> None:
        """memcg_memory_event: the local count, and the hierarchical one of the memcg and
        each ancestor below the root."""
        self.events_local[event] += 1
        m = self
        while m is not None and m.parent is not None:
            m.events[event] += 1
            m = m.parent

    def __repr__(self) -> str:
        return f"MemCg({self.path!r})"


class MemCgroupTree:
    """The memory controller of one 6.x guest: the root memcg and its descendants, the
    per-CPU charge stock (memcg_stock_pcp: one cached memcg and its pre-charged pages per
    CPU), folio_memcg (pfn -> the child memcg a page is charged to), charging and
    uncharging, limit reclaim and the memcg OOM killer."""

    def __init__(self, kernel, reclaim) -> None:
        self.kernel = kernel
        self.reclaim = reclaim
        self.root = MemCg(self, "", None, reclaim.lruvecs)
        self.root.swappiness = None  # the root follows vm.swappiness
        ncpu = max(int(getattr(kernel.config, "cpus", 1)), 1)
        self.stock_cached: list[MemCg | None] = [None] * ncpu  # memcg_stock_pcp.cached
        self.stock_nr = [0] * ncpu  # memcg_stock_pcp.nr_pages
        self.folio_memcg: dict[int, MemCg] = {}
        self.swap_cgroup: dict[int, MemCg] = {}  # swap entry -> memcg (swap_cgroup)
        self.root.id = 0  # the root's shadow entries carry id 0 (workingset.py)
        self.by_id: dict[int, MemCg] = {}  # mem_cgroup_from_id
        self._next_id = 2  # css ids: the root's is 1
        self.active = False  # a child memcg exists (or did): pages may be charged to it
        # the hierarchy the guest mounts (kernel setting cgroup_version): 1 (the memory
        # controller's own, /sys/fs/cgroup/memory) or 2 (unified, /sys/fs/cgroup)
        self.version = int(getattr(kernel.config, "cgroup_version", 2))
        # CGRP_ROOT_MEMORY_RECURSIVE_PROT: the cgroup2 mount's memory_recursiveprot (as
        # Debian 12's systemd mounts it; v1 has no memory.min / memory.low)
        self.recursive_prot = self.version == 2
        # do_memsw_account: v1 charges memory+swap to memsw with every page (swapaccount
        # on, 6.1's default); v2 charges swap slots to memcg->swap instead
        self.memsw_account = self.version == 1
        self._current = None  # the task last found in the kernel (current)
        # memcg_oom_waitq: the tasks asleep in mem_cgroup_oom_synchronize (v1
        # oom_kill_disable), each with task.memcg_oom_wait = the memcg it waits on
        self.oom_waitq: list = []
        self.obj_stock = None  # per CPU ObjStock once a child memcg is online (kmem)
        self.kmem_pages: dict = {}
        self.slab_objcgs: dict = {}

    # ------------------------------------------------------------------ hierarchy
    def mkdir(self, parent: MemCg, name: str) -> MemCg:
        """mem_cgroup_css_alloc + online: a child of `parent` with lruvecs of its own;
        swappiness and the other v1 settings inherited."""
        if any(c.name == name for c in parent.children):
            raise FileExistsError(name)
        lruvec = type(self.reclaim.lruvecs[0])  # vmscan.Lruvec (no import back up)
        lvs = [lruvec(node) for node in self.kernel.page_alloc.nodes]
        m = MemCg(self, name, parent, lvs)
        m.id = self._next_id
        self._next_id += 1
        self.by_id[m.id] = m
        m.move_charge_at_immigrate = parent.move_charge_at_immigrate if parent.parent else 0
        m.oom_kill_disable = parent.oom_kill_disable if parent.parent else 0
        parent.children.append(m)
        memcg_online_kmem(self, m)
        if not self.active:
            self.active = True
            self.reclaim.memcg_tree = self
        return m

    def rmdir(self, memcg: MemCg) -> None:
        """cgroup_rmdir: EBUSY with tasks or children; offline: the charges it still has
        move to the parent (mem_cgroup_css_offline -> memcg_reparent_objcgs; its LRU
        pages are reparented when reclaim meets them: hvsim moves them at once)."""
        if memcg.parent is None or memcg.tasks or memcg.children:
            raise OSError(EBUSY, f"rmdir {memcg.path}: busy")
        self.drain_all_stock(memcg)
        parent = memcg.parent
        for nid, lv in enumerate(memcg.lruvecs):
            plv = parent.lruvec(nid)
            for lru, lst in enumerate(lv.lists):
                dst = plv.lists[lru]
                for page in list(lst):
                    lst.remove(page)
                    dst.add_tail(page)
        fm = self.folio_memcg
        for pfn in [pfn for pfn, m in fm.items() if m is memcg]:
            if parent.parent is None:
                del fm[pfn]
            else:
                fm[pfn] = parent
        memcg_reparent_objcgs(self, memcg, parent)
        # memcg_offline_kmem: then memcg_reparent_list_lrus; reparent_shrinker_deferred
        memcg_reparent_list_lrus(self.kernel, memcg, parent)
        shrinkers = getattr(self.kernel, "shrinkers", None)
        if shrinkers is not None:
            shrinkers.reparent_shrinker_deferred(memcg, parent)
        n = memcg.memory.usage
        memcg.memory.uncharge(n)
        if parent.parent is not None:
            parent.memory.charge(n)
        if self.memsw_account:
            # the pages' memsw charge moves with them; the swap slots' stays with the
            # offline memcg until they are freed (__mem_cgroup_uncharge_swap)
            memcg.memsw.uncharge(n)
            if parent.parent is not None:
                parent.memsw.charge(n)
        parent.children.remove(memcg)
        memcg.online = False
        del self.by_id[memcg.id]

    def current_task(self):
        """current: the task inside the kernel now (its system call or fault), if any."""
        t = self._current
        if t is not None and t._kdepth > 0:
            return t
        for t in self.kernel.tasks.values():
            if t._kdepth > 0:
                self._current = t
                return t
        return None

    @staticmethod
    def task_memcg(task) -> MemCg | None:
        return getattr(task, "memcg", None)

    def current_memcg(self) -> MemCg:
        """get_mem_cgroup_from_mm(current->mm): the memcg of the task in the kernel (the
        root for a kernel thread)."""
        t = self.current_task()
        m = getattr(t, "memcg", None) if t is not None else None
        return m if m is not None else self.root

    def attach(self, task, memcg: MemCg) -> None:
        """cgroup_attach_task (writing the pid to cgroup.procs / tasks): the task moves;
        its pages stay charged where they are (v1 without move_charge_at_immigrate, and
        always in v2)."""
        old = getattr(task, "memcg", None) or self.root
        if task in old.tasks:
            old.tasks.remove(task)
        memcg.tasks.append(task)
        task.memcg = memcg if memcg.parent is not None else None

    def exit_task(self, task) -> None:
        if getattr(task, "memcg_oom_wait", None) is not None:
            self._oom_wait_done(task)  # TASK_KILLABLE: the fatal signal ends the sleep
        m = getattr(task, "memcg", None) or self.root
        if task in m.tasks:
            m.tasks.remove(task)

    # ------------------------------------------------------------------ charge stock
    def consume_stock(self, memcg: MemCg, nr_pages: int) -> bool:
        if nr_pages > MEMCG_CHARGE_BATCH:
            return False
        cpu = self.kernel.page_alloc.current_cpu
        if self.stock_cached[cpu] is memcg and self.stock_nr[cpu] >= nr_pages:
            self.stock_nr[cpu] -= nr_pages
            return True
        return False

    def drain_stock(self, cpu: int) -> None:
        old = self.stock_cached[cpu]
        if old is None:
            return
        if self.stock_nr[cpu]:
            old.memory.uncharge(self.stock_nr[cpu])
            if self.memsw_account:
                old.memsw.uncharge(self.stock_nr[cpu])
            self.stock_nr[cpu] = 0
        self.stock_cached[cpu] = None

    def refill_stock(self, memcg: MemCg, nr_pages: int) -> None:
        """__refill_stock: the CPU's stock changes hands (the old one drained), grows,
        and is drained once above MEMCG_CHARGE_BATCH."""
        cpu = self.kernel.page_alloc.current_cpu
        if self.stock_cached[cpu] is not memcg:
            self.drain_stock(cpu)
            self.stock_cached[cpu] = memcg
        self.stock_nr[cpu] += nr_pages
        if self.stock_nr[cpu] > MEMCG_CHARGE_BATCH:
            self.drain_stock(cpu)

    def drain_all_stock(self, root_memcg: MemCg) -> None:
        """drain_all_stock: every CPU whose stock holds a memcg of root_memcg's subtree."""
        drain_all_obj_stock(self, root_memcg)
        for cpu, m in enumerate(self.stock_cached):
            if m is not None and self.stock_nr[cpu] and m.is_descendant(root_memcg):
                self.drain_stock(cpu)

    # ------------------------------------------------------------------ charging
    def margin(self, memcg: MemCg) -> int:
        """mem_cgroup_margin: room under memory.max (and under memsw.max with v1's memsw
        accounting)."""
        c = memcg.memory
        m = c.max - c.usage if c.usage < c.max else 0
        if self.memsw_account:
            c = memcg.memsw
            m = min(m, c.max - c.usage if c.usage < c.max else 0)
        return m

    def try_charge_memcg(self, memcg: MemCg, gfp: int, nr_pages: int) -> int:
        """try_charge_memcg (6.1): the stock, a batch of max(MEMCG_CHARGE_BATCH, nr_pages)
        (the rest refills the stock), else nr_pages alone; over a limit: MEMCG_MAX,
        try_to_free_mem_cgroup_pages on the memcg over its limit, retry while the margin
        suffices, once after draining the stocks, while reclaim makes progress (at most
        order 3), MAX_RECLAIM_RETRIES more times, then the memcg OOM killer (retries
        renewed while it kills); -ENOMEM, or a forced charge for __GFP_NOFAIL/__GFP_HIGH
        and from inside reclaim (PF_MEMALLOC). Returns 0 or -ENOMEM."""
        from . import gfp as G

        batch = max(MEMCG_CHARGE_BATCH, nr_pages)
        nr_retries = MAX_RECLAIM_RETRIES
        passed_oom = drained = raised_max_event = False
        reclaim_options = MEMCG_RECLAIM_MAY_SWAP
        memsw = self.memsw_account
        while True:
            if self.consume_stock(memcg, nr_pages):
                return 0
            if memsw:
                # memsw first: over it, reclaim may not swap (that would not lower it)
                counter = memcg.memsw.try_charge(batch)
                if counter is None:
                    counter = memcg.memory.try_charge(batch)
                    if counter is not None:
                        memcg.memsw.uncharge(batch)
                else:
                    reclaim_options &= ~MEMCG_RECLAIM_MAY_SWAP
            else:
                counter = memcg.memory.try_charge(batch)
            if counter is None:
                if batch > nr_pages:
                    self.refill_stock(memcg, batch - nr_pages)
                self._check_high(memcg, batch)
                return 0
            over = counter.memcg
            if batch > nr_pages:
                batch = nr_pages
                continue
            if self.reclaim.in_reclaim:
                break  # PF_MEMALLOC: force
            task = self.current_task()
            if task is not None and getattr(task, "memcg_in_oom", None) is not None:
                return self._nomem(memcg, gfp, nr_pages, raised_max_event, over)
            if not gfp & G.DIRECT_RECLAIM:
                return self._nomem(memcg, gfp, nr_pages, raised_max_event, over)
            over.memory_event("max")
            raised_max_event = True
            nr_reclaimed = self.reclaim.try_to_free_mem_cgroup_pages(
                over, nr_pages, gfp, reclaim_options)
            if self.margin(over) >= nr_pages:
                continue
            if not drained:
                self.drain_all_stock(over)
                drained = True
                continue
            if gfp & G.NORETRY:
                return self._nomem(memcg, gfp, nr_pages, raised_max_event, over)
            if nr_reclaimed and nr_pages <= (1 << PAGE_ALLOC_COSTLY_ORDER):
                continue
            if nr_retries:
                nr_retries -= 1
                continue
            if gfp & G.RETRY_MAYFAIL:
                return self._nomem(memcg, gfp, nr_pages, raised_max_event, over)
            if passed_oom and task is not None and task.fatal_signal_pending():
                return self._nomem(memcg, gfp, nr_pages, raised_max_event, over)
            order = max((nr_pages - 1).bit_length(), 0)
            if self.mem_cgroup_oom(over, gfp, order):
                passed_oom = True
                nr_retries = MAX_RECLAIM_RETRIES
                continue
            return self._nomem(memcg, gfp, nr_pages, raised_max_event, over)
        return self._force(memcg, nr_pages, raised_max_event, over)

    def _nomem(self, memcg, gfp, nr_pages, raised, over) -> int:
        from . import gfp as G

        if not gfp & (G.NOFAIL | G.HIGH):
            return -ENOMEM
        return self._force(memcg, nr_pages, raised, over)

    def _force(self, memcg, nr_pages, raised, over) -> int:
        if not raised:
            over.memory_event("max")
        memcg.memory.charge(nr_pages)
        if self.memsw_account:
            memcg.memsw.charge(nr_pages)
        return 0

    def _check_high(self, memcg: MemCg, batch: int) -> None:
        """try_charge_memcg after a charge: the first level (memcg or an ancestor) above
        its memory.high makes current's memcg_nr_pages_over_high grow by the batch
        (set_notify_resume: mem_cgroup_handle_over_high on return to user)."""
        m = memcg
        while m is not None and m.parent is not None:
            if m.memory.usage > m.memory.high:
                t = self.current_task()
                if t is not None:
                    t.memcg_nr_pages_over_high = getattr(t, "memcg_nr_pages_over_high", 0) + batch
                break
            m = m.parent

    def reclaim_high(self, memcg: MemCg, nr_pages: int, gfp: int) -> int:
        """reclaim_high: each level up to the root's child that is above memory.high
        counts MEMCG_HIGH and is reclaimed by nr_pages."""
        got = 0
        m = memcg
        while m is not None and m.parent is not None:
            if m.memory.usage > m.memory.high:
                m.memory_event("high")
                got += self.reclaim.try_to_free_mem_cgroup_pages(m, nr_pages, gfp,
                                                                 MEMCG_RECLAIM_MAY_SWAP)
            m = m.parent
        return got

    @staticmethod
    def mem_find_max_overage(memcg: MemCg) -> int:
        """mem_find_max_overage: the largest (usage - high) << 20 / high of the memcg and
        its ancestors (calculate_overage)."""
        best = 0
        m = memcg
        while m is not None and m.parent is not None:
            usage, high = m.memory.usage, m.memory.high
            if usage > high:
                high = max(high, 1)
                best = max(best, ((usage - high) << MEMCG_DELAY_PRECISION_SHIFT) // high)
            m = m.parent
        return best

    @staticmethod
    def calculate_high_delay(nr_pages: int, max_overage: int) -> int:
        """calculate_high_delay: jiffies, quadratic in the overage, by the pages the task
        charged over high (per MEMCG_CHARGE_BATCH)."""
        if not max_overage:
            return 0
        penalty = max_overage * max_overage * HZ
        penalty >>= MEMCG_DELAY_PRECISION_SHIFT
        penalty >>= MEMCG_DELAY_SCALING_SHIFT
        return penalty * nr_pages // MEMCG_CHARGE_BATCH

    def mem_cgroup_handle_over_high(self, task) -> None:
        """mem_cgroup_handle_over_high (6.1): reclaim the task's memcg levels above high
        by the pages it charged over them (SWAP_CLUSTER_MAX on a retry), then sleep the
        penalty (at most MEMCG_MAX_HIGH_DELAY_JIFFIES; nothing at HZ/100 or less),
        retrying while reclaim makes progress or MAX_RECLAIM_RETRIES times. The sleep
        goes to kernel.iowait_throttle (the task asleep, its vCPU free)."""
        nr_pages = getattr(task, "memcg_nr_pages_over_high", 0)
        if not nr_pages:
            return
        memcg = getattr(task, "memcg", None)
        task.memcg_nr_pages_over_high = 0
        if memcg is None:
            return
        gfp = self._gfp_kernel()
        nr_retries = MAX_RECLAIM_RETRIES
        in_retry = False
        while True:
            got = self.reclaim_high(memcg, 32 if in_retry else nr_pages, gfp)
            penalty = self.calculate_high_delay(nr_pages, self.mem_find_max_overage(memcg))
            penalty = min(penalty, MEMCG_MAX_HIGH_DELAY_JIFFIES)
            if penalty <= HZ // 100:
                return
            if got or nr_retries:
                if not got:
                    nr_retries -= 1
                in_retry = True
                continue
            break
        k = self.kernel
        k.iowait_throttle = getattr(k, "iowait_throttle", 0.0) + penalty / HZ

    def charge(self, page, nr_pages: int, gfp: int, memcg: MemCg | None = None) -> bool:
        """mem_cgroup_charge (__mem_cgroup_charge: charge_memcg, commit_charge): charge the
        folio of `nr_pages` (from `page`'s pfn) to `memcg` (default: current's). False:
        -ENOMEM (the caller frees the folio and fails as if the allocation had)."""
        if memcg is None:
            memcg = self.current_memcg()
        if memcg.parent is None:
            return True  # the root memcg: no page counter
        if self.try_charge_memcg(memcg, gfp, nr_pages):
            return False
        t = self.current_task()
        if t is not None and getattr(t, "memcg_nr_pages_over_high", 0) and not self.reclaim.in_reclaim:
            # the return to user that follows a fault's charge (resume_user_mode_work);
            # try_charge_memcg's own call above MEMCG_CHARGE_BATCH pages over high is
            # the same call earlier
            self.mem_cgroup_handle_over_high(t)
        fm = self.folio_memcg
        pfn = page.pfn
        for i in range(nr_pages):
            fm[pfn + i] = memcg
        memcg.pgpgin += nr_pages  # memcg1_commit_charge -> mem_cgroup_charge_statistics
        return True

    def uncharge(self, page) -> None:
        """mem_cgroup_uncharge of one page (uncharge_folio, uncharge_batch)."""
        m = self.folio_memcg.pop(page.pfn, None)
        if m is not None:
            m.memory.uncharge(1)
            if self.memsw_account:
                m.memsw.uncharge(1)
            m.pgpgout += 1
            if self.oom_waitq:
                self.memcg_oom_recover(m)  # uncharge_batch

    def uncharge_range(self, pfn: int, nr: int) -> None:
        """mem_cgroup_uncharge of a folio's pages still charged."""
        fm = self.folio_memcg
        for p in range(pfn, pfn + nr):
            m = fm.pop(p, None)
            if m is not None:
                m.memory.uncharge(1)
                if self.memsw_account:
                    m.memsw.uncharge(1)
                m.pgpgout += 1
                if self.oom_waitq:
                    self.memcg_oom_recover(m)  # uncharge_batch

    def migrate(self, old, new) -> None:
        """mem_cgroup_migrate: the new page takes the old one's charge."""
        m = self.folio_memcg.pop(old.pfn, None)
        if m is not None:
            self.folio_memcg[new.pfn] = m

    def page_memcg(self, page) -> MemCg:
        """folio_memcg (the root for a page charged to no child)"""
        return self.folio_memcg.get(page.pfn, self.root)

    # ------------------------------------------------------------------ limits
    def resize_max(self, memcg: MemCg, max_pages: int, memsw: bool = False) -> int:
        """mem_cgroup_resize_max (v1 memory.limit_in_bytes, memory.memsw.limit_in_bytes
        with `memsw`): -EINVAL if memory.max <= memsw.max would break; set the limit;
        while usage is above it, drain the stocks once, then try_to_free_mem_cgroup_pages
        (memcg, 1) (without swapping for memsw) until it fits (-EBUSY when reclaim frees
        nothing)."""
        counter = memcg.memsw if memsw else memcg.memory
        drained = False
        while True:
            if memsw:
                if max_pages < memcg.memory.max:
                    return -EINVAL
            elif max_pages > memcg.memsw.max:
                return -EINVAL
            enlarge = max_pages > counter.max
            if counter.set_max(max_pages) == 0:
                if enlarge:
                    self.memcg_oom_recover(memcg)
                return 0
            if not drained:
                self.drain_all_stock(memcg)
                drained = True
                continue
            if not self.reclaim.try_to_free_mem_cgroup_pages(
                    memcg, 1, self._gfp_kernel(), 0 if memsw else MEMCG_RECLAIM_MAY_SWAP):
                return -EBUSY

    def memory_max_write(self, memcg: MemCg, max_pages: int) -> None:
        """memory_max_write (v2 memory.max): the limit set at once; while usage is above
        it, drain, reclaim (MAX_RECLAIM_RETRIES failed reclaims), then memcg OOM kills
        until it fits or none is possible."""
        memcg.memory.max = max_pages
        nr_reclaims = MAX_RECLAIM_RETRIES
        drained = False
        while True:
            nr = memcg.memory.usage
            if nr <= max_pages:
                break
            if not drained:
                self.drain_all_stock(memcg)
                drained = True
                continue
            if nr_reclaims:
                if not self.reclaim.try_to_free_mem_cgroup_pages(
                        memcg, nr - max_pages, self._gfp_kernel(), MEMCG_RECLAIM_MAY_SWAP):
                    nr_reclaims -= 1
                continue
            memcg.memory_event("oom")
            if not self.mem_cgroup_out_of_memory(memcg, self._gfp_kernel(), 0):
                break

    def memory_high_write(self, memcg: MemCg, high_pages: int) -> None:
        """memory_high_write: the high limit set; reclaim down to it (MAX_RECLAIM_RETRIES
        reclaims without progress at most)."""
        memcg.memory.high = high_pages
        nr_retries = MAX_RECLAIM_RETRIES
        drained = False
        while True:
            nr = memcg.memory.usage
            if nr <= high_pages:
                break
            if not drained:
                self.drain_all_stock(memcg)
                drained = True
                continue
            got = self.reclaim.try_to_free_mem_cgroup_pages(
                memcg, nr - high_pages, self._gfp_kernel(), MEMCG_RECLAIM_MAY_SWAP)
            if not got:
                if not nr_retries:
                    break
                nr_retries -= 1

    @staticmethod
    def _gfp_kernel() -> int:
        from . import gfp as G

        return G.GFP_KERNEL

    # ------------------------------------------------------------------ protection
    def effective_protection(self, usage: int, parent_usage: int, setting: int,
                             parent_effective: int, siblings_protected: int) -> int:
        """effective_protection (6.1): the memcg's share of its parent's effective
        protection; with memory_recursiveprot (v2 as Debian 12's systemd mounts it) the
        parent's unclaimed protection too, by the memcg's unprotected usage."""
        protected = min(usage, setting)
        if siblings_protected > parent_effective:
            return protected * parent_effective // siblings_protected
        ep = protected
        if not self.recursive_prot:
            return ep
        if (parent_effective > siblings_protected and parent_usage > siblings_protected
                and usage > protected):
            unclaimed = parent_effective - siblings_protected
            unclaimed *= usage - protected
            unclaimed //= parent_usage - siblings_protected
            ep += unclaimed
        return ep

    def calculate_protection(self, root: MemCg | None, memcg: MemCg) -> None:
        """mem_cgroup_calculate_protection: memcg's emin and elow under reclaim of root's
        subtree (None: global reclaim)."""
        if root is None:
            root = self.root
        if memcg is root:
            return
        c = memcg.memory
        usage = c.usage
        if not usage:
            return
        parent = memcg.parent
        if parent is root:
            c.emin = c.min
            c.elow = c.low
            return
        p = parent.memory
        c.emin = self.effective_protection(usage, p.usage, c.min, p.emin, p.children_min_usage)
        c.elow = self.effective_protection(usage, p.usage, c.low, p.elow, p.children_low_usage)

    @staticmethod
    def protection(root: MemCg | None, memcg: MemCg) -> tuple[int, int]:
        """mem_cgroup_protection: (emin, elow); none for the target of limit reclaim."""
        if root is memcg or memcg.parent is None:
            return 0, 0
        return memcg.memory.emin, memcg.memory.elow

    @staticmethod
    def below_min(memcg: MemCg) -> bool:
        return memcg.parent is not None and memcg.memory.emin >= memcg.memory.usage

    @staticmethod
    def below_low(memcg: MemCg) -> bool:
        return memcg.parent is not None and memcg.memory.elow >= memcg.memory.usage

    # ------------------------------------------------------------------ OOM
    def get_max(self, memcg: MemCg) -> int:
        """mem_cgroup_get_max: memory.max plus the swap the memcg may use while its
        swappiness is not 0: min(swap.max, total_swap_pages) on v2, min(memsw.max -
        memory.max, total_swap_pages) on v1."""
        m = memcg.memory.max
        swappiness = memcg.swappiness if memcg.swappiness is not None else self.kernel.config.swappiness
        if swappiness:
            room = memcg.swap.max if self.version == 2 else memcg.memsw.max - m
            m += min(room, self.kernel.total_swap_pages())
        return m

    def mem_cgroup_oom(self, memcg: MemCg, gfp: int, order: int) -> bool:
        """mem_cgroup_oom: MEMCG_OOM counted; orders above PAGE_ALLOC_COSTLY_ORDER and v1's
        oom_kill_disable do not kill; else mem_cgroup_out_of_memory."""
        if order > PAGE_ALLOC_COSTLY_ORDER:
            return False
        memcg.memory_event("oom")
        if memcg.oom_kill_disable:
            # v1: remember the OOM for the end of the user fault, where the task sleeps
            # (mem_cgroup_oom_synchronize); elsewhere the charge just fails
            t = self.current_task()
            if t is not None and getattr(t, "in_user_fault", False):
                t.memcg_in_oom = memcg
                t.memcg_oom_gfp_mask = gfp
                t.memcg_oom_order = order
            return False
        self.mark_under_oom(memcg)
        locked = self.oom_trylock(memcg)
        self.unmark_under_oom(memcg)
        ret = self.mem_cgroup_out_of_memory(memcg, gfp, order)
        if locked:
            self.oom_unlock(memcg)
        return ret

    # -- the v1 OOM wait queue (oom_kill_disable) ------------------------------------
    @staticmethod
    def mark_under_oom(memcg: MemCg) -> None:
        """mem_cgroup_mark_under_oom: the memcg and its descendants"""
        for m in memcg.iter():
            m.under_oom += 1

    @staticmethod
    def unmark_under_oom(memcg: MemCg) -> None:
        """mem_cgroup_unmark_under_oom"""
        for m in memcg.iter():
            if m.under_oom > 0:
                m.under_oom -= 1

    @staticmethod
    def oom_trylock(memcg: MemCg) -> bool:
        """mem_cgroup_oom_trylock: the subtree's oom_lock, unless a memcg of it holds it."""
        if any(m.oom_lock for m in memcg.iter()):
            return False
        for m in memcg.iter():
            m.oom_lock = True
        return True

    @staticmethod
    def oom_unlock(memcg: MemCg) -> None:
        """mem_cgroup_oom_unlock"""
        for m in memcg.iter():
            m.oom_lock = False

    def oom_synchronize(self, task, handle: bool = True) -> bool:
        """mem_cgroup_oom_synchronize (pagefault_out_of_memory): nothing (False) unless
        the fault met a memcg OOM with oom_kill_disable (task.memcg_in_oom). Else the
        task goes on memcg_oom_waitq and marks its memcg's subtree under_oom; with the
        OOM lock and oom_kill_disable cleared meanwhile it runs the memcg OOM killer
        instead; else it sleeps (task.memcg_oom_wait: the fault is retried once
        memcg_oom_recover wakes it). True: handled."""
        memcg = getattr(task, "memcg_in_oom", None)
        if memcg is None:
            return False
        if handle:
            self.mark_under_oom(memcg)
            locked = self.oom_trylock(memcg)
            if locked and not memcg.oom_kill_disable:
                self.unmark_under_oom(memcg)
                self.mem_cgroup_out_of_memory(memcg, task.memcg_oom_gfp_mask, task.memcg_oom_order)
                self.oom_unlock(memcg)
                self.memcg_oom_recover(memcg)
            else:
                task.memcg_oom_wait = memcg  # schedule() (TASK_KILLABLE)
                task.memcg_oom_locked = locked
                self.oom_waitq.append(task)
                return True
        task.memcg_in_oom = None
        return True

    def _oom_wait_done(self, task) -> None:
        """The rest of mem_cgroup_oom_synchronize once the task is woken (or killed):
        unmark, finish_wait, unlock and wake the others (memcg_oom_recover)."""
        memcg = task.memcg_oom_wait
        task.memcg_oom_wait = None
        task.memcg_in_oom = None
        if task in self.oom_waitq:
            self.oom_waitq.remove(task)
        self.unmark_under_oom(memcg)
        if task.memcg_oom_locked:
            task.memcg_oom_locked = False
            self.oom_unlock(memcg)
            self.memcg_oom_recover(memcg)

    def memcg_oom_recover(self, memcg: MemCg) -> None:
        """memcg_oom_recover: with the memcg under OOM, wake the waiters whose memcg is
        an ancestor or a descendant of it (memcg_oom_wake_function)."""
        if not memcg.under_oom:
            return
        for task in list(self.oom_waitq):
            w = task.memcg_oom_wait
            if w is not None and task in self.oom_waitq and (
                    memcg.is_descendant(w) or w.is_descendant(memcg)):
                self._oom_wait_done(task)

    def mem_cgroup_out_of_memory(self, memcg: MemCg, gfp: int, order: int) -> bool:
        """mem_cgroup_out_of_memory -> out_of_memory(oc with memcg): nothing if the margin
        now suffices; a dying current task: True; else the task of the memcg's subtree
        with the highest oom_badness (totalpages: mem_cgroup_get_max) is killed;
        panic_on_oom 2 panics (1 does not, for a constrained OOM). False: no victim."""
        if self.margin(memcg) >= (1 << order):
            return True
        oom = self.reclaim.oom
        cur = self.current_task()
        if cur is not None and cur.mm is not None and cur.fatal_signal_pending():
            cur.oom_victim = True
            return True
        if self.kernel.config.panic_on_oom == 2:
            oom._panic("Out of memory: compulsory panic_on_oom is enabled")
        totalpages = self.get_max(memcg) or 1
        chosen, chosen_points = None, None
        tasks = sorted((t for m in memcg.iter() for t in m.tasks), key=lambda t: t.pid)
        for task in tasks:
            if oom.is_oom_victim(task) and task.mm is not None:
                return True  # a victim is exiting: abort, retry
            points = oom.badness(task, totalpages)
            if points is None:
                continue
            if chosen_points is None or points >= chosen_points:
                chosen, chosen_points = task, points
        if chosen is None:
            return False
        victim_memcg = getattr(chosen, "memcg", None) or self.root
        victim_memcg.memory_event("oom_kill")  # memcg_memory_event_mm(MEMCG_OOM_KILL)
        oom.oom_kill_process(chosen, totalpages, cur, "Memory cgroup out of memory")
        return True

    # ------------------------------------------------------------------ invariants
    def validate(self) -> None:
        """Each child memcg's usage is its charged pages, its descendants' and its
        stock; every charged page is in use."""
        own: dict[int, int] = {}
        mem_map = self.kernel.mem_map
        for pfn, m in self.folio_memcg.items():
            page = mem_map[pfn]
            assert page is not None and (page._count > 0 or page.flags & (PG_lru | PG_thp)), (
                f"pfn {pfn:#x}: charged to {m} but free")
            own[id(m)] = own.get(id(m), 0) + 1
        for cpu, m in enumerate(self.stock_cached):
            if m is not None:
                own[id(m)] = own.get(id(m), 0) + self.stock_nr[cpu]
        kmem = kmem_own_pages(self)
        for k, n in kmem.items():
            own[k] = own.get(k, 0) + n

        def total(m) -> int:
            return own.get(id(m), 0) + sum(total(c) for c in m.children)

        slots: dict[int, int] = {}
        for m in self.swap_cgroup.values():
            while not m.online:  # an offline memcg's slots: charged in its parent's counters
                m = m.parent
            slots[id(m)] = slots.get(id(m), 0) + 1

        def swapped(m) -> int:
            return slots.get(id(m), 0) + sum(swapped(c) for c in m.children)

        for m in self.root.iter():
            if m.parent is not None:
                assert m.memory.usage == total(m), (
                    f"{m}: usage {m.memory.usage} but {total(m)} pages charged")
                if self.version == 2:
                    assert m.swap.usage == swapped(m), (
                        f"{m}: swap.current {m.swap.usage} but {swapped(m)} slots recorded")
                elif self.memsw_account:
                    assert m.memsw.usage == total(m) + swapped(m), (
                        f"{m}: memsw {m.memsw.usage} but {total(m)} pages and "
                        f"{swapped(m)} slots charged")

        def ktotal(m) -> int:
            return kmem.get(id(m), 0) + sum(ktotal(c) for c in m.children)

        for m in self.root.iter():
            if m.parent is not None:
                assert m.kstat["kernel"] == kmem.get(id(m), 0), (
                    f"{m}: MEMCG_KMEM {m.kstat['kernel']} but {kmem.get(id(m), 0)} kernel pages")
                if self.version == 1:
                    assert m.kmem.usage == ktotal(m), (
                        f"{m}: kmem usage {m.kmem.usage} but {ktotal(m)} kernel pages")

    # ------------------------------------------------------------------ swap
    def try_charge_swap(self, page, entry: int, nr_pages: int = 1) -> int:
        """__mem_cgroup_try_charge_swap (v2 only; folio_alloc_swap after the slots were
        found): `entry` 0 (no slot) counts MEMCG_SWAP_FAIL; a folio of a child memcg
        charges its swap counter, and over a swap.max counts MEMCG_SWAP_MAX and
        MEMCG_SWAP_FAIL and fails (-ENOMEM: the caller frees the slots, add_to_swap
        fails); else the slots are recorded for the memcg (swap_cgroup_record). A root
        folio is not recorded (hvsim keeps records for children only)."""
        if self.version != 2:
            return 0
        m = self.folio_memcg.get(page.pfn)
        if m is None:
            return 0
        if not entry:
            m.memory_event("swap_fail")
            return 0
        if m.swap.try_charge(nr_pages) is not None:
            m.memory_event("swap_max")
            m.memory_event("swap_fail")
            return -ENOMEM
        sc = self.swap_cgroup
        for i in range(nr_pages):
            sc[entry + i] = m
        return 0

    def swapout(self, page, entry: int) -> None:
        """mem_cgroup_swapout (v1 only; v2 recorded the slot at add_to_swap): reclaim
        takes the page out of the swap cache; its memcg is recorded for the slot
        (swap_cgroup_record), the page is no longer charged (folio->memcg_data = 0) and
        its memory charge goes (its memsw charge stays with the slot); PGPGOUT."""
        if self.version != 1:
            return
        m = self.folio_memcg.pop(page.pfn, None)
        if m is not None:
            self.swap_cgroup[entry] = m
            m.memory.uncharge(1)
            m.pgpgout += 1

    def swap_released(self, entry: int) -> None:
        """__mem_cgroup_uncharge_swap: the slot's record goes, and its charge: swap (v2)
        or memsw (v1)."""
        m = self.swap_cgroup.pop(entry, None)
        if m is not None:
            (m.swap if self.version == 2 else m.memsw).uncharge(1)

    def swapin_charge(self, page, entry: int, gfp: int) -> bool:
        """mem_cgroup_swapin_charge_folio: charge to the memcg recorded for the slot if it
        is online, else to current's; v1 then drops the slot's memsw charge and record
        (mem_cgroup_swapin_uncharge_swap: the page holds the memsw charge now)."""
        m = self.swap_cgroup.get(entry)
        if m is not None and not m.online:
            m = None
        if not self.charge(page, 1, gfp, m):
            return False
        if self.memsw_account:
            self.swap_released(entry)
        return True

    def get_nr_swap_pages(self, memcg: MemCg, nr_swap_pages: int) -> int:
        """mem_cgroup_get_nr_swap_pages: v2 limits the free swap by each level's room
        under swap.max, up to the root's child."""
        if self.version != 2:
            return nr_swap_pages
        m = memcg
        while m is not None and m.parent is not None:
            nr_swap_pages = min(nr_swap_pages, m.swap.max - m.swap.usage)
            m = m.parent
        return nr_swap_pages

    def swap_full(self, page) -> bool:
        """mem_cgroup_swap_full without vm_swap_full (the caller's): v2, a level of the
        page's memcg whose swap use is at least half its swap.max."""
        if self.version != 2:
            return False
        m = self.folio_memcg.get(page.pfn)
        while m is not None and m.parent is not None:
            u = m.swap.usage
            if u * 2 >= m.swap.high or u * 2 >= m.swap.max:
                return True
            m = m.parent
        return False


def mem_cgroup_charge(kernel, page, nr_pages: int, gfp: int) -> bool:
    """mem_cgroup_charge(folio, mm, gfp) for current's memcg: True at once while no
    child memcg exists (every page is the root's). False: the charge failed (-ENOMEM)."""
    t = kernel.memcgs
    if t is None or not t.active:
        return True
    return t.charge(page, nr_pages, gfp)


def mem_cgroup_uncharge(kernel, page) -> None:
    """mem_cgroup_uncharge of one page being freed."""
    t = kernel.memcgs
    if t is not None and t.active:
        t.uncharge(page)


# ---------------------------------------------------------------------- kernel memory (6.1)
# CONFIG_MEMCG_KMEM (mm/memcontrol.c, mm/slab.h): kernel memory charged to the memcg of
# current, never to the root (get_obj_cgroup_from_current stops at root_mem_cgroup: the
# root has no obj_cgroup). Whole pages allocated with __GFP_ACCOUNT (user page tables:
# GFP_PGTABLE_USER; kernel stacks: memcg_charge_kernel_stack) are charged one by one
# (__memcg_kmem_charge_page); slab objects of SLAB_ACCOUNT caches or allocated with
# __GFP_ACCOUNT are charged by the byte (obj_full_size: the object and its obj_cgroup
# pointer) through the per-CPU obj_stock, which charges and uncharges the memcg in whole
# pages. Every page charged moves the memory counter (try_charge_memcg, the page stock on
# uncharge) and MEMCG_KMEM; on cgroup v1 also the memcg's kmem counter
# (memory.kmem.usage_in_bytes; kmem.limit_in_bytes has no effect in 6.1).
KMEM_STATS = ("kernel", "kernel_stack", "pagetables", "slab_reclaimable", "slab_unreclaimable")
NR_SLAB_RECLAIMABLE_B = "slab_reclaimable"
NR_SLAB_UNRECLAIMABLE_B = "slab_unreclaimable"


class ObjCgroup:
    """struct obj_cgroup: what a charged kernel page (page->memcg_data | MEMCG_DATA_KMEM)
    or slab object (slab_objcgs(slab)[off]) points to. `memcg`: its memcg (the parent's
    once the memcg is removed: memcg_reparent_objcgs); `nr_charged_bytes`: bytes of pages
    charged through it that no object and no CPU's stock holds (drain_obj_stock's
    leftover)."""

    __slots__ = ("memcg", "nr_charged_bytes")

    def __init__(self, memcg) -> None:
        self.memcg = memcg
        self.nr_charged_bytes = 0


class ObjStock:
    """memcg_stock_pcp's byte part, per CPU: cached_objcg, nr_bytes (pre-charged bytes of
    it), cached_pgdat and the slab vmstat bytes not yet pushed to the memcg."""

    __slots__ = ("cached_objcg", "nr_bytes", "cached_pgdat", "nr_slab_reclaimable_b",
                 "nr_slab_unreclaimable_b")

    def __init__(self) -> None:
        self.cached_objcg = None
        self.nr_bytes = 0
        self.cached_pgdat = None
        self.nr_slab_reclaimable_b = 0
        self.nr_slab_unreclaimable_b = 0


def memcg_online_kmem(tree: MemCgroupTree, memcg: MemCg) -> None:
    """memcg_online_kmem: the new memcg's obj_cgroup; the first one turns
    memcg_kmem_enabled on (the slab hooks run from then on)."""
    memcg.objcg = ObjCgroup(memcg)
    if tree.obj_stock is None:
        tree.obj_stock = [ObjStock() for _ in tree.stock_nr]
        tree.kmem_pages = {}  # head pfn -> (objcg, pages): page->memcg_data | MEMCG_DATA_KMEM
        tree.slab_objcgs = {}  # object -> (objcg, obj_full_size, vmstat item)
        slab = getattr(tree.kernel, "slab", None)
        if slab is not None:
            slab.memcg_kmem = tree


def memcg_reparent_objcgs(tree: MemCgroupTree, memcg: MemCg, parent: MemCg) -> None:
    """memcg_offline_kmem at rmdir: the memcg's obj_cgroup (and any reparented to it) now
    charges and uncharges the parent; its kmem charge moves with the memory charge (to
    nothing when the parent is the root, whose counters hvsim does not keep). The byte
    stocks were drained before (drain_all_stock)."""
    if tree.obj_stock is None:
        return
    for o in _objcgs(tree):
        if o.memcg is memcg:
            o.memcg = parent
    n = memcg.kmem.usage
    memcg.kmem.uncharge(n)
    if parent.parent is not None:
        parent.kmem.charge(n)
        for k in KMEM_STATS:
            parent.kstat[k] += memcg.kstat[k]
    memcg.objcg = None


def _objcgs(tree: MemCgroupTree) -> set:
    out = {m.objcg for m in tree.root.iter() if m.objcg is not None}
    out.update(o for o, _ in tree.kmem_pages.values())
    out.update(r[0] for r in tree.slab_objcgs.values())
    out.update(st.cached_objcg for st in tree.obj_stock if st.cached_objcg is not None)
    return out


def get_obj_cgroup_from_current(tree: MemCgroupTree) -> ObjCgroup | None:
    """The obj_cgroup of current's memcg; None for the root (and for kernel threads,
    memcg_kmem_bypass: current_memcg is the root without a task in the kernel)."""
    m = tree.current_memcg()
    while m is not None and m.parent is not None:
        if m.objcg is not None:
            return m.objcg
        m = m.parent
    return None


def memcg_account_kmem(tree: MemCgroupTree, memcg: MemCg, nr_pages: int) -> None:
    """MEMCG_KMEM, and on cgroup v1 the kmem page counter (forced: page_counter_charge)."""
    memcg.kstat["kernel"] += nr_pages
    if tree.version == 1:
        if nr_pages > 0:
            memcg.kmem.charge(nr_pages)
        else:
            memcg.kmem.uncharge(-nr_pages)


def obj_cgroup_charge_pages(tree: MemCgroupTree, objcg: ObjCgroup, gfp: int, nr_pages: int) -> int:
    """try_charge_memcg on the objcg's memcg (the memory counter, its stock, its limit
    reclaim and OOM), then memcg_account_kmem. 0 or -ENOMEM."""
    memcg = objcg.memcg
    if memcg.parent is None:
        return 0  # reparented to the root: hvsim keeps no root counter
    ret = tree.try_charge_memcg(memcg, gfp, nr_pages)
    if ret:
        return ret
    memcg_account_kmem(tree, memcg, nr_pages)
    return 0


def obj_cgroup_uncharge_pages(tree: MemCgroupTree, objcg: ObjCgroup, nr_pages: int) -> None:
    """memcg_account_kmem(-nr_pages), and the pages go to the CPU's page stock
    (refill_stock), not straight back to the counter."""
    memcg = objcg.memcg
    if memcg.parent is None:
        return
    memcg_account_kmem(tree, memcg, -nr_pages)
    tree.refill_stock(memcg, nr_pages)


def memcg_kmem_charge_page(kernel, page, gfp: int, order: int = 0) -> int:
    """__memcg_kmem_charge_page (__alloc_pages with __GFP_ACCOUNT): charge 1 << order pages
    to current's obj_cgroup. 0, or -ENOMEM (the caller frees the page and fails)."""
    tree = getattr(kernel, "memcgs", None)
    if tree is None or tree.obj_stock is None:
        return 0
    objcg = get_obj_cgroup_from_current(tree)
    if objcg is None:
        return 0
    ret = obj_cgroup_charge_pages(tree, objcg, gfp, 1 << order)
    if not ret:
        tree.kmem_pages[page.pfn] = (objcg, 1 << order)
    return ret


def memcg_kmem_uncharge_page(kernel, page, order: int = 0) -> None:
    """__memcg_kmem_uncharge_page (free_pages_prepare of a PageMemcgKmem page)."""
    tree = getattr(kernel, "memcgs", None)
    if tree is None or tree.obj_stock is None:
        return
    rec = tree.kmem_pages.pop(page.pfn, None)
    if rec is not None:
        obj_cgroup_uncharge_pages(tree, rec[0], rec[1])


def mod_kmem_page_state(kernel, page, item: str, val: int) -> None:
    """mod_lruvec_page_state of a kernel page for its memcg (NR_PAGETABLE from the page
    table constructors, NR_KERNEL_STACK_KB from account_kernel_stack): counted in the
    memcg the page is charged to, nothing for a page charged to none."""
    tree = getattr(kernel, "memcgs", None)
    if tree is None or tree.obj_stock is None:
        return
    rec = tree.kmem_pages.get(page.pfn)
    if rec is not None and rec[0].memcg.parent is not None:
        rec[0].memcg.kstat[item] += val


# -- the obj_stock ---------------------------------------------------------------------------
def _this_obj_stock(tree: MemCgroupTree) -> ObjStock:
    return tree.obj_stock[tree.kernel.page_alloc.current_cpu]


def _mod_objcg_mlstate(objcg: ObjCgroup, item: str, nr: int) -> None:
    m = objcg.memcg
    if m.parent is not None:
        m.kstat[item] += nr


def drain_obj_stock(tree: MemCgroupTree, stock: ObjStock) -> ObjCgroup | None:
    """drain_obj_stock: whole pages of the stock's bytes are uncharged into the page
    stock (__refill_stock), the rest goes to the objcg's nr_charged_bytes; the slab
    vmstat bytes are pushed to the memcg."""
    old = stock.cached_objcg
    if old is None:
        return None
    if stock.nr_bytes:
        nr_pages, nr_bytes = stock.nr_bytes >> PAGE_SHIFT, stock.nr_bytes & (PAGE_SIZE - 1)
        if nr_pages and old.memcg.parent is not None:
            memcg_account_kmem(tree, old.memcg, -nr_pages)
            tree.refill_stock(old.memcg, nr_pages)
        old.nr_charged_bytes += nr_bytes
        stock.nr_bytes = 0
    if stock.nr_slab_reclaimable_b:
        _mod_objcg_mlstate(old, NR_SLAB_RECLAIMABLE_B, stock.nr_slab_reclaimable_b)
        stock.nr_slab_reclaimable_b = 0
    if stock.nr_slab_unreclaimable_b:
        _mod_objcg_mlstate(old, NR_SLAB_UNRECLAIMABLE_B, stock.nr_slab_unreclaimable_b)
        stock.nr_slab_unreclaimable_b = 0
    stock.cached_pgdat = None
    stock.cached_objcg = None
    return old


def _take_objcg(stock: ObjStock, objcg: ObjCgroup) -> None:
    stock.cached_objcg = objcg
    stock.nr_bytes = objcg.nr_charged_bytes
    objcg.nr_charged_bytes = 0


def consume_obj_stock(tree: MemCgroupTree, objcg: ObjCgroup, nr_bytes: int) -> bool:
    stock = _this_obj_stock(tree)
    if stock.cached_objcg is objcg and stock.nr_bytes >= nr_bytes:
        stock.nr_bytes -= nr_bytes
        return True
    return False


def refill_obj_stock(tree: MemCgroupTree, objcg: ObjCgroup, nr_bytes: int,
                     allow_uncharge: bool) -> None:
    """refill_obj_stock: the bytes go to the CPU's stock (which changes hands, the old
    one drained, the objcg's nr_charged_bytes taken); above PAGE_SIZE, when allowed (an
    uncharge, or the objcg changed), its whole pages are uncharged."""
    stock = _this_obj_stock(tree)
    if stock.cached_objcg is not objcg:
        drain_obj_stock(tree, stock)
        _take_objcg(stock, objcg)
        allow_uncharge = True
    stock.nr_bytes += nr_bytes
    nr_pages = 0
    if allow_uncharge and stock.nr_bytes > PAGE_SIZE:
        nr_pages = stock.nr_bytes >> PAGE_SHIFT
        stock.nr_bytes &= PAGE_SIZE - 1
    if nr_pages:
        obj_cgroup_uncharge_pages(tree, objcg, nr_pages)


def obj_cgroup_charge(tree: MemCgroupTree, objcg: ObjCgroup, gfp: int, size: int) -> int:
    """obj_cgroup_charge: from the stock if it holds `size` bytes of this objcg; else
    ceil(size / PAGE_SIZE) pages charged, the unused part of the last refilling the
    stock (allow_uncharge false: it may exceed a page). 0 or -ENOMEM."""
    if consume_obj_stock(tree, objcg, size):
        return 0
    nr_pages, nr_bytes = size >> PAGE_SHIFT, size & (PAGE_SIZE - 1)
    if nr_bytes:
        nr_pages += 1
    ret = obj_cgroup_charge_pages(tree, objcg, gfp, nr_pages)
    if not ret and nr_bytes:
        refill_obj_stock(tree, objcg, PAGE_SIZE - nr_bytes, False)
    return ret


def obj_cgroup_uncharge(tree: MemCgroupTree, objcg: ObjCgroup, size: int) -> None:
    refill_obj_stock(tree, objcg, size, True)


def mod_objcg_state(tree: MemCgroupTree, objcg: ObjCgroup, pgdat: int, item: str, nr: int) -> None:
    """mod_objcg_state: the slab bytes wait in the CPU's stock (the first change of an
    item is cached whole, later ones pushed when the sum passes PAGE_SIZE either way; a
    change of objcg drains, a change of node pushes what is cached)."""
    stock = _this_obj_stock(tree)
    if stock.cached_objcg is not objcg:
        drain_obj_stock(tree, stock)
        _take_objcg(stock, objcg)
        stock.cached_pgdat = pgdat
    elif stock.cached_pgdat != pgdat:
        if stock.nr_slab_reclaimable_b:
            _mod_objcg_mlstate(objcg, NR_SLAB_RECLAIMABLE_B, stock.nr_slab_reclaimable_b)
            stock.nr_slab_reclaimable_b = 0
        if stock.nr_slab_unreclaimable_b:
            _mod_objcg_mlstate(objcg, NR_SLAB_UNRECLAIMABLE_B, stock.nr_slab_unreclaimable_b)
            stock.nr_slab_unreclaimable_b = 0
        stock.cached_pgdat = pgdat
    attr = "nr_slab_reclaimable_b" if item == NR_SLAB_RECLAIMABLE_B else "nr_slab_unreclaimable_b"
    cur = getattr(stock, attr)
    if not cur:
        setattr(stock, attr, nr)
        nr = 0
    else:
        cur += nr
        if abs(cur) > PAGE_SIZE:
            nr, cur = cur, 0
        else:
            nr = 0
        setattr(stock, attr, cur)
    if nr:
        _mod_objcg_mlstate(objcg, item, nr)


def drain_all_obj_stock(tree: MemCgroupTree, root_memcg: MemCg) -> None:
    """drain_all_stock's obj_stock_flush_required: the byte stocks of root_memcg's
    subtree drained (drain_local_stock drains the byte stock before the page stock)."""
    if tree.obj_stock is None:
        return
    for cpu, st in enumerate(tree.obj_stock):
        o = st.cached_objcg
        if o is not None and o.memcg.is_descendant(root_memcg):
            pa = tree.kernel.page_alloc
            saved, pa.current_cpu = pa.current_cpu, cpu
            try:
                drain_obj_stock(tree, st)
            finally:
                pa.current_cpu = saved


# -- the slab hooks (mm/slab.h) --------------------------------------------------------------
def memcg_slab_pre_alloc_hook(tree: MemCgroupTree, cachep, gfp: int, full: int):
    """memcg_slab_pre_alloc_hook for one object of an accounted cache (SLAB_ACCOUNT or
    __GFP_ACCOUNT: the caller tests): obj_cgroup_charge(objcg, gfp, obj_full_size).
    The objcg, None (the root: nothing charged) or False (the allocation fails)."""
    objcg = get_obj_cgroup_from_current(tree)
    if objcg is None:
        return None
    if obj_cgroup_charge(tree, objcg, gfp, full):
        return False
    return objcg


def memcg_slab_post_alloc_hook(tree: MemCgroupTree, cachep, objcg: ObjCgroup, obj, full: int,
                               item: str, nid: int) -> None:
    """memcg_slab_post_alloc_hook: the object records its objcg and its bytes count in
    NR_SLAB_(UN)RECLAIMABLE_B; a failed allocation gives the bytes back."""
    if obj is None:
        obj_cgroup_uncharge(tree, objcg, full)
        return
    tree.slab_objcgs[obj] = (objcg, full, item, nid)
    mod_objcg_state(tree, objcg, nid, item, full)


def memcg_slab_free_hook(tree: MemCgroupTree, obj) -> None:
    """memcg_slab_free_hook: an object that recorded an objcg uncharges its
    obj_full_size through the stock and leaves the slab statistics."""
    rec = tree.slab_objcgs.pop(obj, None)
    if rec is None:
        return
    objcg, full, item, nid = rec
    obj_cgroup_uncharge(tree, objcg, full)
    mod_objcg_state(tree, objcg, nid, item, -full)


def kmem_own_pages(tree: MemCgroupTree) -> dict:
    """For validate: id(memcg) -> the kernel pages charged to it (kmem pages, and the
    bytes of its objcgs' live objects, stocks and nr_charged_bytes, which come to whole
    pages: every charge is in pages)."""
    own: dict = {}
    if tree.obj_stock is None:
        return own
    for objcg, n in tree.kmem_pages.values():
        own[id(objcg.memcg)] = own.get(id(objcg.memcg), 0) + n
    nbytes: dict = {}
    for objcg, full, _, _ in tree.slab_objcgs.values():
        nbytes[objcg] = nbytes.get(objcg, 0) + full
    for st in tree.obj_stock:
        if st.cached_objcg is not None:
            nbytes[st.cached_objcg] = nbytes.get(st.cached_objcg, 0) + st.nr_bytes
    for o in _objcgs(tree):
        nbytes[o] = nbytes.get(o, 0) + o.nr_charged_bytes
    for o, b in nbytes.items():
        if o.memcg.parent is None:
            continue
        assert b % PAGE_SIZE == 0, f"{o.memcg}: {b} bytes of kernel objects charged"
        own[id(o.memcg)] = own.get(id(o.memcg), 0) + b // PAGE_SIZE
    return own
