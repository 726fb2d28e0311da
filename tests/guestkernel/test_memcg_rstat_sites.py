"""Which statistics updates count towards the root memory cgroup's flush (6.1
mm/memcontrol.c: __mod_memcg_lruvec_state, __mod_memcg_state and __count_memcg_events
each call memcg_rstat_updated(memcg, val), which counts abs(val)), at the call sites of
linux-source-6.1 that make them for a charged page:

- a write fault on an anonymous page: handle_mm_fault's count_memcg_event_mm(PGFAULT),
  the charge's PGPGIN (mem_cgroup_charge -> mem_cgroup_charge_statistics: one per
  folio), page_add_new_anon_rmap's NR_ANON_MAPPED and lruvec_add_folio's
  update_lru_size: 4 pages;
- its unmapping and free: page_remove_rmap's NR_ANON_MAPPED, lruvec_del_folio's
  update_lru_size, uncharge_batch's PGPGOUT (one per folio): 3;
- a THP fault (do_huge_pmd_anonymous_page): PGFAULT 1, PGPGIN 1 (a big page's pagein is
  one event), NR_ANON_THPS 512 and NR_ANON_MAPPED 512 (page_add_new_anon_rmap), the
  folio's update_lru_size 512, THP_FAULT_ALLOC 1;
- a write() into a new page-cache page: PGPGIN, NR_FILE_PAGES (__filemap_add_folio),
  update_lru_size, NR_FILE_DIRTY (folio_account_dirtied): 4;
- a file mapping's read fault on a cached page: PGFAULT and NR_FILE_MAPPED
  (page_add_file_rmap): 2;
- add_to_swap: mem_cgroup_try_charge_swap's MEMCG_SWAP (cgroup v2) and
  add_to_swap_cache's NR_SWAPCACHE (its NR_FILE_PAGES is __node_stat_mod_folio: the
  node's only); the slot and cache freed: NR_SWAPCACHE and MEMCG_SWAP again;
- a writeback: NR_WRITEBACK at __folio_start_writeback and at __folio_end_writeback.

The count is read under 6.8's rules as the memcg's atomic plus the CPUs' pending counts,
from a flush (zero) with the needs-flush gate out of reach, so every abs(val) shows.
`rstat_ones(n)` is checked against n single calls under both rule sets."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memcontrol import MEMCG_CHARGE_BATCH
from guestkernel.vmscan import init_reclaim

PAGE = 4096
HPAGE_PMD_NR = 512


def boot(clock: bool = True, **kw) -> Kernel:
    kw.setdefault("thp_enabled", "never")
    k = Kernel(KernelConfig(memory="64MiB", cpus=1, memcg_stats_flush="6.8", **kw),
               env=simpy.Environment() if clock else None)
    init_reclaim(k)
    return k


def counted(k) -> int:
    mc = k.memcg
    return mc.stats_updates + sum(mc.pcpu)


def reset(k) -> None:
    """A flush, and the gate (memcg_vmstats_needs_flush) out of reach for the count."""
    mc = k.memcg
    mc.css_rstat_flush()
    mc.threshold = 1 << 40


def anon(t, npages: int) -> int:
    return t.mmap(0, npages * PAGE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)


def test_anonymous_write_faults_count_pgfault_the_charge_the_rmap_and_the_lru():
    k = boot()
    t = k.init_task
    addr = anon(t, 40)
    reset(k)
    t.access_range(addr, 30 * PAGE, True)  # the inlined demand-zero run
    assert counted(k) == 30 * 4
    reset(k)
    for i in range(30, 40):  # one page at a time
        t.access(addr + i * PAGE, True)
    assert counted(k) == 10 * 4
    reset(k)
    assert t.munmap(addr, 40 * PAGE) == 0
    assert counted(k) == 40 * 3  # NR_ANON_MAPPED, update_lru_size, PGPGOUT


def test_a_copy_on_write_fault_counts_the_copy_and_the_old_pages_unmapping():
    k = boot()
    t = k.init_task
    addr = anon(t, 1)
    t.access(addr, True)
    assert t.fork() > 0
    reset(k)
    t.access(addr, True)
    # PGFAULT; the copy: PGPGIN, NR_ANON_MAPPED, update_lru_size; the old page stays
    # mapped by the child (no NR_ANON_MAPPED change: its mapcount only drops)
    assert counted(k) == 4


def test_a_thp_fault_counts_its_folio_once_and_its_pages_by_512():
    k = boot(thp_enabled="always")
    t = k.init_task
    addr = t.mmap(0, 4 << 20, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    huge = (addr + (2 << 20) - 1) & ~((2 << 20) - 1)
    reset(k)
    t.access(huge, True)
    assert k.vmstat["thp_fault_alloc"] == 1
    # PGFAULT, PGPGIN, THP_FAULT_ALLOC; NR_ANON_THPS, NR_ANON_MAPPED, update_lru_size
    assert counted(k) == 3 + 3 * HPAGE_PMD_NR


def test_a_write_into_a_new_file_page_counts_cache_charge_lru_and_dirty():
    k = boot()
    t = k.init_task
    buf = anon(t, 1)
    t.access(buf, True)
    fd = t.open("/f", U.O_RDWR | U.O_CREAT)
    reset(k)
    assert t.write(fd, buf, PAGE) == PAGE
    assert k.vmstat["nr_dirty"] == 1
    assert counted(k) == 4


def test_a_mapped_read_of_a_cached_file_page_counts_pgfault_and_nr_file_mapped():
    k = boot()
    t = k.init_task
    buf = anon(t, 1)
    t.access(buf, True)
    fd = t.open("/f", U.O_RDWR | U.O_CREAT)
    t.write(fd, buf, PAGE)
    m = t.mmap(0, PAGE, U.PROT_READ, U.MAP_SHARED, fd)
    reset(k)
    t.access(m, False)
    assert k.vmstat["nr_mapped"] == 1
    assert counted(k) == 2
    reset(k)
    act = k.vmstat["pgactivate"]
    assert t.munmap(m, PAGE) == 0
    # page_remove_rmap: NR_FILE_MAPPED; zap_pte_range's mark_page_accessed of the young
    # PTE's page activates it (folio_activate: lruvec_del_folio, lruvec_add_folio and
    # PGACTIVATE, 3)
    assert k.vmstat["pgactivate"] - act == 1
    assert counted(k) == 1 + 3


def test_swap_cache_and_swap_slot_count_nr_swapcache_and_memcg_swap():
    k = boot(swap="8MiB")
    t = k.init_task
    addr = anon(t, 1)
    t.access(addr, True)
    page = k.mem_map[t.mm.pgtable.ptes[addr >> 12] >> 12]
    sw = k.swap
    reset(k)
    assert sw.add_to_swap(page)
    assert counted(k) == 2  # MEMCG_SWAP, NR_SWAPCACHE
    reset(k)
    sw.delete_from_swap_cache(page)  # no PTE refers to the slot: it is freed too
    page._count -= 1
    assert counted(k) == 2  # NR_SWAPCACHE, MEMCG_SWAP


def test_writeback_counts_nr_writeback_at_its_start_and_its_end():
    k = boot(clock=False)  # (the write ends at complete_io)
    t = k.init_task
    buf = anon(t, 1)
    t.access(buf, True)
    inode = k.fs.create("/g", 0)
    fd = t.open("/g", U.O_RDWR)
    t.write(fd, buf, PAGE)
    reset(k)
    assert k.reclaim.filemap_flush(inode.mapping) == 1
    k.reclaim.complete_io()
    assert k.vmstat["nr_writeback"] == 0 and k.vmstat["nr_dirty"] == 0
    # NR_FILE_DIRTY (folio_clear_dirty_for_io), NR_WRITEBACK twice
    assert counted(k) == 3


def single_calls(mc, n: int) -> None:
    for _ in range(n):
        mc.rstat_updated(1)


def state(mc) -> tuple:
    return (list(mc.pcpu), mc.stats_updates, getattr(mc, "flush_threshold", None), mc.nr_flushes)


@pytest.mark.parametrize("rules", ["6.1", "6.8"])
@settings(max_examples=40, deadline=None)
@given(runs=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 300)), max_size=8),
       pollers=st.integers(0, 1))
def test_rstat_ones_counts_as_single_calls(rules, runs, pollers):
    # memcg_rstat_updated(memcg, 1) n times: 6.8 moves the CPU's count at 64 and stops
    # counting once memcg_vmstats_needs_flush; 6.1 moves one batch at the 65th call
    # (x > MEMCG_CHARGE_BATCH) while stats_flush_threshold <= num_online_cpus
    ks = [Kernel(KernelConfig(memory="64MiB", cpus=2, memcg_stats_flush=rules)) for _ in range(2)]
    for k in ks:
        init_reclaim(k)
        k.memcg.pcpu[:] = [0, 0]
        k.memcg.pollers = pollers
    a, b = (k.memcg for k in ks)
    for cpu, n in runs:
        for k in ks:
            k.current_cpu = cpu
        a.rstat_ones(n)
        single_calls(b, n)
        assert state(a) == state(b)


def test_6_1_a_batch_moves_at_the_65th_single_call():
    k = Kernel(KernelConfig(memory="64MiB", cpus=2, memcg_stats_flush="6.1"))
    init_reclaim(k)
    mc = k.memcg
    mc.pcpu[:] = [0, 0]
    mc.flush_threshold = 0
    mc.rstat_ones(MEMCG_CHARGE_BATCH)
    assert (mc.pcpu[0], mc.flush_threshold) == (64, 0)
    mc.rstat_ones(1)
    assert (mc.pcpu[0], mc.flush_threshold) == (0, 1)


# ------------------------------------------------------------------ the boot's flushes
# The root memcg comes online at boot (cgroup_init -> mem_cgroup_css_online), which queues
# flush_memcg_stats_dwork FLUSH_TIME (2 s, 500 jiffies at HZ 250) later; each flush
# queues the next FLUSH_TIME on. A guest whose clock starts `boot_uptime` seconds after
# its boot has flushed at uptime 2, 4, ... s; 6.1's __mem_cgroup_flush_stats sets
# flush_next_time = jiffies + 2 * FLUSH_TIME at each.
def clocked(rules: str, **kw) -> Kernel:
    k = Kernel(KernelConfig(memory="64MiB", cpus=1, memcg_stats_flush=rules, **kw),
               env=simpy.Environment())
    init_reclaim(k)
    return k


@pytest.mark.parametrize("rules", ["6.1", "6.8"])
def test_a_guest_up_5_5_s_has_flushed_at_4_s_and_flushes_next_at_6_s(rules):
    k = clocked(rules, boot_uptime=5.5)
    mc = k.memcg
    env = k.env
    assert mc.jiffies() == 1375  # 5.5 s of uptime
    inode = k.fs.create("/f", 8 * PAGE)
    from guestkernel.filemap import filemap_get_page
    for i in range(8):  # the boot's page cache, in place when the clock starts
        filemap_get_page(k, inode, i, 1)
    env.run(until=0.25)
    # the boot's flushes at uptime 2 and 4 s: the last one's values are what the boot left
    assert mc.nr_flushes == 2 and mc.flush_last_time == 1000
    assert mc.state[0][2] == 8  # NR_INACTIVE_FILE as flushed
    if rules == "6.1":
        assert mc.flush_next_time == 1000 + 1000
    env.run(until=0.49)
    assert mc.nr_flushes == 2
    env.run(until=0.51)  # uptime 6 s
    assert mc.nr_flushes == 3 and mc.flush_last_time == 1500
    env.run(until=2.51)  # uptime 8 s
    assert mc.nr_flushes == 4 and mc.flush_last_time == 2000


def test_6_1_the_boots_last_flush_delays_workingset_refaults_flush():
    # mem_cgroup_flush_stats_delayed: no flush until jiffies are past flush_next_time, the
    # boot's last flush (uptime 2 s) + 2 * FLUSH_TIME = uptime 4 s
    k = clocked("6.1", boot_uptime=3.0)
    mc = k.memcg
    k.env.run(until=0.01)
    assert (mc.flush_last_time, mc.flush_next_time) == (500, 1500)
    mc.flush_threshold = mc.threshold + 1  # flushable by the threshold
    mc.mem_cgroup_flush_stats_delayed()
    assert mc.nr_flushes == 1  # (the boot's) not past flush_next_time at 750
    k.env.run(until=0.99)  # the periodic flush at uptime 4 s (t = 1 s) is still ahead
    mc.mem_cgroup_flush_stats_delayed()
    assert mc.nr_flushes == 1
    k.env.run(until=1.01)
    assert mc.nr_flushes == 2 and mc.flush_next_time == 1000 + 1000


def test_boot_uptime_0_starts_the_clock_at_the_boot():
    k = clocked("6.8", boot_uptime=0)
    mc = k.memcg
    k.env.run(until=1.99)
    assert (mc.nr_flushes, mc.flush_last_time, mc.jiffies()) == (0, 0, 497)
    k.env.run(until=2.01)
    assert (mc.nr_flushes, mc.flush_last_time) == (1, 500)


def test_by_default_the_uptime_is_over_one_period_and_its_phase_comes_from_the_seed():
    ups = [clocked("6.1", seed=s).memcg.uptime for s in (0, 0, 1)]
    assert ups[0] == ups[1] and ups[0] != ups[2]
    assert all(2.0 <= u < 4.0 for u in ups)
    k = clocked("6.1", seed=1)
    k.env.run(until=0.001)
    assert k.memcg.nr_flushes == 1 and k.memcg.flush_last_time == 500
    with pytest.raises(ValueError, match=r"^boot_uptime: must be a number of seconds >= 0, got -1$"):
        KernelConfig(memory="64MiB", boot_uptime=-1)
