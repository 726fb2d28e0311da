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
  boot (`StatsFlusher`, a daemon, with a clock only).
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

What is counted (each call abs(val) pages, as memcg_rstat_updated): update_lru_size for
every LRU add, delete and move (lruvec_add_folio / lruvec_del_folio); NR_FILE_PAGES when
a page enters or leaves the page cache (__filemap_add_folio, filemap_unaccount_folio);
the charge's PGPGIN and the uncharge's PGPGOUT (CONFIG_MEMCG_V1: memcg1_commit_charge,
memcg1_uncharge_batch) for a page-cache page; WORKINGSET_REFAULT/ACTIVATE/RESTORE
(workingset_refault); PGACTIVATE (folio_activate, shrink_folio_list), PGREFILL and
PGDEACTIVATE (shrink_active_list), PGSCAN_* and PGSTEAL_* (shrink_inactive_list). Not
counted yet (the counts are low by them): NR_ANON_MAPPED / NR_FILE_MAPPED, PGFAULT and
PGMAJFAULT of faults, NR_FILE_DIRTY, NR_WRITEBACK, NR_SWAPCACHE, PSWPIN/PSWPOUT and the
anonymous pages' charges.

Invariant: after a flush every flushed value equals its exact counterpart.
"""

from __future__ import annotations

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
                 "flush_last_time", "pollers", "nr_flushes")

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

    def needs_flush(self) -> bool:
        """memcg_vmstats_needs_flush"""
        return self.stats_updates > self.threshold

    # ------------------------------------------------------------------ flushing
    def _fold_lruvecs(self) -> None:
        """cgroup_rstat_flush's effect on the root: every lruvec's flushed LRU sizes and
        workingset activations become exact."""
        for lv, st in zip(self.reclaim.lruvecs, self.state):
            lists = lv.lists
            st[0] = lists[0].nr
            st[1] = lists[1].nr
            st[2] = lists[2].nr
            st[3] = lists[3].nr
            st[4] = lists[4].nr
            st[ST_ACTIVATE_ANON] = lv.activate[0]
            st[ST_ACTIVATE_FILE] = lv.activate[1]

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
        env = self.kernel.env
        if env is None:
            self.css_rstat_flush()
        elif (self.stats_updates > self.threshold
              and int(env.now * HZ) > self.flush_last_time + 2 * FLUSH_TIME):
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
        env = self.kernel.env
        return int(env.now * HZ) if env is not None else 0

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

    def needs_flush(self) -> bool:
        """atomic_read(&stats_flush_threshold) > num_online_cpus()"""
        return self.flush_threshold > self.threshold

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


def make_memcg(kernel, reclaim) -> MemCgroup:
    """The root memcg under the kernel's `memcg_stats_flush` rules ("6.1" or "6.8")."""
    rules = getattr(kernel.config, "memcg_stats_flush", "6.1")
    return MemCgroup(kernel, reclaim) if rules == "6.8" else MemCgroup61(kernel, reclaim)


class StatsFlusher:
    """flush_memcg_stats_dwork: flushes the root memcg every FLUSH_TIME from boot."""

    def __init__(self, env, memcg: MemCgroup) -> None:
        self.env = env
        self.memcg = memcg
        self.process = env.process(self._run())

    def _run(self):
        interval = FLUSH_TIME / HZ
        while True:
            yield self.env.timeout(interval)
            self.memcg.flush_memcg_stats_dwork()
