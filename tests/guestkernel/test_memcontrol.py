"""The root memory cgroup's statistics and their rstat flushing (mm/memcontrol.c), under
both rule sets of the kernel setting memcg_stats_flush:

- "6.8" (6.8+: memcg_rstat_updated, memcg_vmstats_needs_flush, mem_cgroup_flush_stats,
  mem_cgroup_flush_stats_ratelimited, flush_memcg_stats_dwork): the threshold
  MEMCG_CHARGE_BATCH * num_online_cpus updates;
- "6.1" (linux-source-6.1 mm/memcontrol.c: memcg_rstat_updated, __mem_cgroup_flush_stats,
  mem_cgroup_flush_stats, mem_cgroup_flush_stats_delayed, flush_memcg_stats_dwork;
  vmscan.c prepare_scan_count's mem_cgroup_flush_stats; workingset.c workingset_refault's
  mem_cgroup_flush_stats_delayed): stats_flush_threshold in batches of more than
  MEMCG_CHARGE_BATCH updates, a flush above num_online_cpus, flush_next_time = jiffies +
  2 * FLUSH_TIME;

and the readers that see the flushed values (lruvec_page_state: inactive_is_low,
prepare_scan_count, workingset_test_recent / workingset_refault). Every expected value
follows those functions: MEMCG_CHARGE_BATCH = 64, FLUSH_TIME = 2 * HZ (HZ 250), and the
updates one page-cache page makes when it is read in: the charge's PGPGIN
(memcg1_commit_charge), NR_FILE_PAGES (__filemap_add_folio) and its LRU size (lru_add:
lruvec_add_folio), one memcg_rstat_updated call of 1 each."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.config import KernelConfig
from guestkernel.filemap import filemap_get_page
from guestkernel.gfp import GFP_HIGHUSER_MOVABLE
from guestkernel.kernel import Kernel
from guestkernel.memcontrol import FLUSH_TIME, HZ, MEMCG_CHARGE_BATCH, MemCgroup61, StatsFlusher
from guestkernel.page import PG_active, PG_anon, PG_swapbacked
from guestkernel.vmscan import LRU_INACTIVE_FILE, ScanControl, init_reclaim


def boot(cpus: int = 2, clock: bool = True, rules: str = "6.8", flushed: bool = True, **kw):
    """A guest under `rules` whose statistics were just flushed (boot's own pages are in
    the flushed values); `flushed` False: as booted, never flushed. The per-CPU counts
    start from 0 (6.1's flush leaves them: boot's residue is cleared here). The clock
    starts as the kernel boots (boot_uptime 0: the first periodic flush 2 s in; the
    boot's own flushes are test_memcg_rstat_sites.py's)."""
    kw.setdefault("boot_uptime", 0)
    env = simpy.Environment() if clock else None
    k = Kernel(KernelConfig(memory="64MiB", cpus=cpus, memcg_stats_flush=rules, **kw), env=env)
    init_reclaim(k)
    if flushed:
        k.memcg.css_rstat_flush()
    k.memcg.pcpu[:] = [0] * cpus
    return k


def test_6_1_rules_are_the_default():
    k = Kernel(KernelConfig(memory="64MiB"))
    init_reclaim(k)
    assert type(k.memcg) is MemCgroup61
    with pytest.raises(ValueError, match=r"^memcg_stats_flush: must be one of 6.1, 6.8, got '6.5'$"):
        KernelConfig(memory="64MiB", memcg_stats_flush="6.5")


def read_in(k, inode, first: int, n: int) -> list:
    return [filemap_get_page(k, inode, i, 1)[0] for i in range(first, first + n)]


def test_updates_move_to_the_memcg_in_per_cpu_batches_and_stop_once_flushable():
    # memcg_rstat_updated: a CPU's stats_updates moves to the memcg's atomic count when
    # it reaches MEMCG_CHARGE_BATCH; memcg_vmstats_needs_flush: atomic > 64 * 2 CPUs;
    # once flushable, updates count nothing
    k = boot(cpus=2)
    mc = k.memcg
    assert MEMCG_CHARGE_BATCH == 64 and mc.threshold == 128
    inode = k.fs.create("/f", 256 * 4096)
    k.current_cpu = 0
    read_in(k, inode, 0, 21)  # 63 updates on CPU 0
    assert (mc.pcpu, mc.stats_updates) == ([63, 0], 0)
    read_in(k, inode, 21, 1)  # the 64th moves all 64; two more stay on the CPU
    assert (mc.pcpu, mc.stats_updates) == ([2, 0], 64)
    k.current_cpu = 1
    read_in(k, inode, 22, 22)  # 66 on CPU 1: 64 move at the 64th
    assert (mc.pcpu, mc.stats_updates) == ([2, 2], 128)
    assert not mc.needs_flush()  # 128 is not above 64 * 2
    # 63 calls on CPU 1: the 62nd brings it to 64, which move (192 > 128: flushable),
    # and the 63rd counts nothing
    read_in(k, inode, 44, 21)
    assert (mc.pcpu, mc.stats_updates) == ([2, 0], 192)
    assert mc.needs_flush()
    read_in(k, inode, 65, 30)  # flushable: nothing counted
    assert (mc.pcpu, mc.stats_updates) == ([2, 0], 192)


def test_memory_stat_flushes_only_past_the_threshold():
    # memcg_stat_show -> mem_cgroup_flush_stats: no flush while the pending updates are
    # at most 64 * num_online_cpus (here 1 CPU: 64); a flush makes the values exact and
    # clears the counts
    k = boot(cpus=1)
    mc = k.memcg
    inode = k.fs.create("/f", 64 * 4096)
    read_in(k, inode, 0, 21)  # 63 updates: all on the CPU
    assert mc.memory_stat()["inactive_file"] == 0  # stale: the boot-time flush
    read_in(k, inode, 21, 1)  # 64 moved: 64 is not above 64
    assert (mc.pcpu, mc.stats_updates) == ([2], 64)
    assert mc.memory_stat()["inactive_file"] == 0
    read_in(k, inode, 22, 21)  # the 62nd call moves 64: 128 > 64; the 63rd is not counted
    assert (mc.pcpu, mc.stats_updates) == ([0], 128)
    assert mc.memory_stat()["inactive_file"] == 43 == k.reclaim.lruvecs[0].lists[LRU_INACTIVE_FILE].nr
    assert (mc.pcpu, mc.stats_updates) == ([0], 0)


def test_periodic_flush_every_flush_time_whatever_the_threshold():
    # flush_memcg_stats_dwork: __mem_cgroup_flush_stats(root, force) every FLUSH_TIME
    # (2 * HZ) from boot; a reader before it sees the boot-time values
    k = boot(cpus=2)
    assert any(isinstance(d, StatsFlusher) for d in k.daemons)
    assert FLUSH_TIME == 2 * HZ == 500
    mc = k.memcg
    inode = k.fs.create("/f", 16 * 4096)
    read_in(k, inode, 0, 10)  # 30 updates: far below the threshold
    k.env.run(until=1.999)
    assert mc.memory_stat()["inactive_file"] == 0
    k.env.run(until=2.001)
    assert mc.memory_stat()["inactive_file"] == 10
    assert mc.flush_last_time == 500  # jiffies of the root's flush
    read_in(k, inode, 10, 5)
    k.env.run(until=3.999)
    assert mc.memory_stat()["inactive_file"] == 10
    k.env.run(until=4.001)
    assert mc.memory_stat()["inactive_file"] == 15
    assert mc.flush_last_time == 1000


def test_ratelimited_flush_only_when_the_periodic_flusher_is_a_cycle_late():
    # mem_cgroup_flush_stats_ratelimited: flush (by the threshold) only if jiffies are
    # after flush_last_time + 2 * FLUSH_TIME
    k = boot(cpus=1)
    mc = k.memcg
    inode = k.fs.create("/f", 64 * 4096)
    k.env.run(until=4.5)  # periodic flushes at 2 s and 4 s: flush_last_time 1000
    read_in(k, inode, 0, 50)  # 150 updates: past the threshold (64)
    assert mc.needs_flush()
    mc.mem_cgroup_flush_stats_ratelimited()  # the flusher is on time: no flush
    assert mc.state[0][LRU_INACTIVE_FILE] == 0
    # the deferrable periodic work last ran at jiffy 0 (its CPU idle since): at jiffy
    # 1125 it is more than a full cycle (2 * FLUSH_TIME = 1000) late
    mc.flush_last_time = 0
    mc.mem_cgroup_flush_stats_ratelimited()
    assert mc.state[0][LRU_INACTIVE_FILE] == 50
    assert mc.flush_last_time == 1125
    # late, but at most 64 pending: no flush
    mc.flush_last_time = 0
    read_in(k, inode, 50, 10)
    mc.mem_cgroup_flush_stats_ratelimited()
    assert mc.state[0][LRU_INACTIVE_FILE] == 50


def test_inactive_is_low_reads_the_flushed_sizes():
    # inactive_is_low reads lruvec_page_state (the flushed values), not the lists:
    # 10 inactive and 40 active file pages are low (10 * 1 < 40) only once flushed
    k = boot(cpus=2)
    r = k.reclaim
    lv = r.lruvecs[0]
    inode = k.fs.create("/f", 64 * 4096)
    pages = read_in(k, inode, 0, 50)
    for p in pages[:40]:
        k.mark_page_accessed(p)
        k.mark_page_accessed(p)
    assert (lv.lists[2].nr, lv.lists[3].nr) == (10, 40)
    assert not r.inactive_is_low(lv, LRU_INACTIVE_FILE)  # flushed: 0 and 0
    k.env.run(until=2.001)
    assert r.inactive_is_low(lv, LRU_INACTIVE_FILE)


def test_workingset_refault_reads_the_flushed_workingset_size():
    # workingset_test_recent: refault distance against lruvec_page_state(NR_ACTIVE_FILE)
    # after mem_cgroup_flush_stats_ratelimited (no flush: the flusher is on time). A
    # page evicted and read back at once has distance 1 (an eviction and nothing else
    # since): against the boot-time 0 it is not recent; after the periodic flush
    # shows the 2 active pages, the same refault activates
    k = boot(cpus=2)
    r = k.reclaim
    inode = k.fs.create("/f", 8 * 4096)
    pages = read_in(k, inode, 0, 4)
    for p in pages[:2]:
        k.mark_page_accessed(p)
        k.mark_page_accessed(p)
    assert r.reclaim_pages([pages[2]]) == 1
    page = read_in(k, inode, 2, 1)[0]
    assert not page.flags & PG_active and k.vmstat["workingset_refault_file"] == 1
    k.env.run(until=2.001)
    assert r.reclaim_pages([page]) == 1
    page = read_in(k, inode, 2, 1)[0]
    assert page.flags & PG_active and k.vmstat["workingset_activate_file"] == 1


def test_without_a_clock_ratelimited_readers_see_exact_values():
    k = boot(cpus=1, clock=False)
    r = k.reclaim
    lv = r.lruvecs[0]
    inode = k.fs.create("/f", 64 * 4096)
    pages = read_in(k, inode, 0, 12)
    for p in pages[:10]:
        k.mark_page_accessed(p)
        k.mark_page_accessed(p)
    k.memcg.mem_cgroup_flush_stats_ratelimited()
    assert lv.stat[:5] == [lst.nr for lst in lv.lists]
    assert lv.stat[2:4] == [2, 10]
    assert r.inactive_is_low(lv, LRU_INACTIVE_FILE)


def test_a_2_6_guest_has_no_memcg_and_reads_its_lists():
    k = Kernel(memory="64MiB", era="2.6", arch="i386")
    r = init_reclaim(k)
    assert k.memcg is None and r.lruvecs[0].stat is None
    inode = k.fs.create("/f", 64 * 4096)
    pages = read_in(k, inode, 0, 12)
    for p in pages[:10]:
        k.mark_page_accessed(p)
        k.mark_page_accessed(p)
    assert r.inactive_is_low(r.lruvecs[0], LRU_INACTIVE_FILE)


def counts(mc) -> tuple:
    return list(mc.pcpu), mc.stats_updates, getattr(mc, "flush_threshold", None)


@pytest.mark.parametrize("rules", ["6.1", "6.8"])
@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1), min_size=1, max_size=400))
def test_lru_cache_add_inlined_count_matches_rstat_updated(rules, cpus_of_pages):
    # lru_cache_add's inlined memcg_rstat_updated(1) against its plain twin: the same
    # per-CPU and memcg counts after the same updates on the same CPUs
    k = boot(cpus=2, clock=False, rules=rules)
    twin = boot(cpus=2, clock=False, rules=rules)
    r = k.reclaim
    for cpu in cpus_of_pages:
        page = k.alloc_pages(GFP_HIGHUSER_MOVABLE)
        page.flags |= PG_anon | PG_swapbacked
        k.current_cpu = twin.current_cpu = cpu
        r.lru_cache_add(page)
        twin.memcg.rstat_updated(1)
        assert counts(k.memcg) == counts(twin.memcg)


# ------------------------------------------------------------------ 6.1's rules
def test_6_1_updates_count_batches_above_64_into_the_threshold_while_at_most_num_online_cpus():
    # 6.1 memcg_rstat_updated: x = this CPU's stats_updates + abs(val); when x > 64,
    # stats_flush_threshold += x / 64 (only while it is <= num_online_cpus) and the CPU's
    # count resets; the CPUs keep counting whatever the threshold
    k = boot(cpus=2, rules="6.1")
    mc = k.memcg
    inode = k.fs.create("/f", 256 * 4096)
    k.current_cpu = 0
    read_in(k, inode, 0, 21)  # 63 updates on CPU 0
    assert counts(mc) == ([63, 0], 0, 0)
    # the 64th stays (64 is not above 64); the 65th moves one batch; the 66th stays
    read_in(k, inode, 21, 1)
    assert counts(mc) == ([1, 0], 0, 1)
    assert not mc.needs_flush()
    k.current_cpu = 1
    mc.rstat_updated(200)  # x = 200: 200 / 64 = 3 batches at once
    assert counts(mc) == ([1, 0], 0, 4)
    assert mc.needs_flush()  # 4 > num_online_cpus 2
    mc.rstat_updated(200)  # above num_online_cpus: not added, the CPU's count resets
    assert counts(mc) == ([1, 0], 0, 4)
    mc.rstat_updated(10)  # still counted on the CPU
    assert counts(mc) == ([1, 10], 0, 4)
    # at exactly num_online_cpus the whole x / 64 is still added
    mc.flush_threshold = 2
    mc.rstat_updated(640)  # x = 650
    assert counts(mc) == ([1, 0], 0, 12)


def test_6_1_memory_stat_flushes_when_the_threshold_is_above_num_online_cpus():
    # memcg_stat_show -> mem_cgroup_flush_stats: flush when stats_flush_threshold >
    # num_online_cpus (1 here: two batches); __mem_cgroup_flush_stats sets the threshold
    # to 0 and leaves the CPUs' stats_updates as they are
    k = boot(cpus=1, rules="6.1")
    mc = k.memcg
    inode = k.fs.create("/f", 64 * 4096)
    read_in(k, inode, 0, 22)  # 66 updates: one batch at the 65th, 1 left on the CPU
    assert counts(mc) == ([1], 0, 1)
    assert mc.memory_stat()["inactive_file"] == 0  # stale: the boot-time flush
    read_in(k, inode, 22, 22)  # 66 more: the 64th of them moves the second batch
    assert counts(mc) == ([2], 0, 2)
    assert mc.memory_stat()["inactive_file"] == 44 == k.reclaim.lruvecs[0].lists[LRU_INACTIVE_FILE].nr
    assert counts(mc) == ([2], 0, 0)


def test_6_1_delayed_flush_only_after_flush_next_time():
    # mem_cgroup_flush_stats_delayed: mem_cgroup_flush_stats only if jiffies are after
    # (time_after64: strictly) flush_next_time, which every flush sets to jiffies +
    # 2 * FLUSH_TIME; before any flush (jiffies_64 starts far past 0) any time is after
    k = boot(cpus=1, rules="6.1", flushed=False)
    mc = k.memcg
    inode = k.fs.create("/f", 128 * 4096)
    read_in(k, inode, 0, 50)  # 150 updates: 2 batches (65 each), 20 on the CPU
    assert counts(mc) == ([20], 0, 2)
    mc.mem_cgroup_flush_stats_delayed()  # never flushed: flushes by the threshold
    assert mc.state[0][LRU_INACTIVE_FILE] == 50
    assert mc.flush_next_time == 0 + 2 * FLUSH_TIME == 1000
    k.env.run(until=4.5)  # periodic flushes at 2 s and 4 s: flush_next_time 1000 + 1000
    assert mc.flush_next_time == 2000
    read_in(k, inode, 50, 50)  # 150 more (170 on the CPU): 2 batches, 40 left
    assert counts(mc) == ([40], 0, 2)
    mc.mem_cgroup_flush_stats_delayed()  # jiffy 1125 is not after 2000: no flush
    assert mc.state[0][LRU_INACTIVE_FILE] == 50
    mc.flush_next_time = 1125  # not strictly after: no flush
    mc.mem_cgroup_flush_stats_delayed()
    assert mc.state[0][LRU_INACTIVE_FILE] == 50
    mc.flush_next_time = 1124
    mc.mem_cgroup_flush_stats_delayed()
    assert mc.state[0][LRU_INACTIVE_FILE] == 100
    assert mc.flush_next_time == 1125 + 1000
    # after flush_next_time, but the threshold not above 1: no flush
    mc.flush_next_time = 0
    read_in(k, inode, 100, 10)  # 30 more: 40 + 25 = 65 moves a batch, 5 left
    assert counts(mc) == ([5], 0, 1)
    mc.mem_cgroup_flush_stats_delayed()
    assert mc.state[0][LRU_INACTIVE_FILE] == 100


def test_6_1_periodic_flush_every_flush_time_whatever_the_threshold():
    # flush_memcg_stats_dwork: __mem_cgroup_flush_stats every FLUSH_TIME from boot, each
    # setting flush_next_time = jiffies + 2 * FLUSH_TIME and the threshold to 0
    k = boot(cpus=2, rules="6.1")
    assert any(isinstance(d, StatsFlusher) for d in k.daemons)
    mc = k.memcg
    inode = k.fs.create("/f", 16 * 4096)
    read_in(k, inode, 0, 10)  # 30 updates: far below a batch
    k.env.run(until=1.999)
    assert mc.memory_stat()["inactive_file"] == 0
    k.env.run(until=2.001)
    assert mc.memory_stat()["inactive_file"] == 10
    assert mc.flush_next_time == 500 + 1000
    mc.flush_threshold = 2  # not above num_online_cpus: memory.stat does not flush
    read_in(k, inode, 10, 5)
    k.env.run(until=3.999)
    assert mc.memory_stat()["inactive_file"] == 10
    k.env.run(until=4.001)
    assert mc.memory_stat()["inactive_file"] == 15
    assert (mc.flush_next_time, mc.flush_threshold) == (2000, 0)
    assert counts(mc)[0] == [45, 0]  # the CPU's count: no flush resets it


def test_6_1_prepare_scan_count_flushes_by_the_threshold():
    # 6.1 prepare_scan_count: mem_cgroup_flush_stats() (not the ratelimited or delayed
    # flush), then lruvec_page_state: inactive_is_low and cache_trim_mode read the
    # values flushed once more than num_online_cpus (2) batches are pending, whatever
    # the time since the last flush
    k = boot(cpus=2, rules="6.1")
    r = k.reclaim
    lv = r.lruvecs[0]
    mc = k.memcg
    inode = k.fs.create("/f", 128 * 4096)
    read_in(k, inode, 0, 65)  # 195 updates: 3 batches would need 3 * 65
    assert counts(mc) == ([0, 0], 0, 3)
    mc.flush_threshold = 2  # one batch short
    sc = ScanControl(32, 0, True, 1, True)
    sc.priority = 6  # 65 >> 6 = 1: cache_trim_mode once the 65 pages are seen
    r._prepare_scan(lv, sc)
    assert lv.stat[LRU_INACTIVE_FILE] == 0 and not sc.cache_trim_mode
    mc.flush_threshold = 3
    r._prepare_scan(lv, sc)  # at jiffy 0, flushed at jiffy 0
    assert lv.stat[LRU_INACTIVE_FILE] == 65 and sc.cache_trim_mode
    assert mc.flush_threshold == 0


def test_6_1_workingset_refault_reads_sizes_after_the_delayed_flush():
    # 6.1 workingset_refault: mem_cgroup_flush_stats_delayed, then the eviction lruvec's
    # NR_ACTIVE_FILE as flushed. A page evicted and read back at once has distance 1;
    # before any flush (any jiffy is after flush_next_time) the threshold decides: below
    # it the 2 active pages are not seen (not recent); above it they are (activated)
    k = boot(cpus=2, rules="6.1", flushed=False)
    r = k.reclaim
    mc = k.memcg
    inode = k.fs.create("/f", 8 * 4096)
    pages = read_in(k, inode, 0, 4)
    for p in pages[:2]:
        k.mark_page_accessed(p)
        k.mark_page_accessed(p)
    assert r.reclaim_pages([pages[2]]) == 1
    assert not mc.needs_flush()
    page = read_in(k, inode, 2, 1)[0]
    assert not page.flags & PG_active and k.vmstat["workingset_refault_file"] == 1
    assert r.reclaim_pages([page]) == 1
    mc.flush_threshold = 3  # three batches pending
    page = read_in(k, inode, 2, 1)[0]
    assert page.flags & PG_active and k.vmstat["workingset_activate_file"] == 1
    assert mc.flush_next_time == 1000
