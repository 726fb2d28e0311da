"""The root memory cgroup's statistics and their rstat flushing (mm/memcontrol.c, 6.8+:
memcg_rstat_updated, memcg_vmstats_needs_flush, mem_cgroup_flush_stats,
mem_cgroup_flush_stats_ratelimited, flush_memcg_stats_dwork) and the readers that see
the flushed values (lruvec_page_state: inactive_is_low, workingset_test_recent). Every
expected value follows those functions: MEMCG_CHARGE_BATCH = 64, the threshold
MEMCG_CHARGE_BATCH * num_online_cpus, FLUSH_TIME = 2 * HZ (HZ 250), and the updates one
page-cache page makes when it is read in: the charge's PGPGIN (memcg1_commit_charge),
NR_FILE_PAGES (__filemap_add_folio) and its LRU size (lru_add: lruvec_add_folio), one
memcg_rstat_updated call of 1 each."""

from __future__ import annotations

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.config import KernelConfig
from guestkernel.filemap import filemap_get_page
from guestkernel.gfp import GFP_HIGHUSER_MOVABLE
from guestkernel.kernel import Kernel
from guestkernel.memcontrol import FLUSH_TIME, HZ, MEMCG_CHARGE_BATCH, StatsFlusher
from guestkernel.page import PG_active, PG_anon, PG_swapbacked
from guestkernel.vmscan import LRU_INACTIVE_FILE, init_reclaim


def boot(cpus: int = 2, clock: bool = True, **kw):
    """A guest whose statistics were just flushed (the counts start from 0; boot's own
    pages are in the flushed values)."""
    env = simpy.Environment() if clock else None
    k = Kernel(KernelConfig(memory="64MiB", cpus=cpus, **kw), env=env)
    init_reclaim(k)
    k.memcg.css_rstat_flush()
    return k


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


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=1), min_size=1, max_size=400))
def test_lru_cache_add_inlined_count_matches_rstat_updated(cpus_of_pages):
    # lru_cache_add's inlined memcg_rstat_updated(1) against its plain twin: the same
    # per-CPU and memcg counts after the same updates on the same CPUs
    k = boot(cpus=2, clock=False)
    twin = boot(cpus=2, clock=False)
    r = k.reclaim
    for cpu in cpus_of_pages:
        page = k.alloc_pages(GFP_HIGHUSER_MOVABLE)
        page.flags |= PG_anon | PG_swapbacked
        k.current_cpu = twin.current_cpu = cpu
        r.lru_cache_add(page)
        twin.memcg.rstat_updated(1)
        assert (k.memcg.pcpu, k.memcg.stats_updates) == (twin.memcg.pcpu, twin.memcg.stats_updates)
