"""VMSCAN_THROTTLE_ISOLATED as 6.1's shrink_inactive_list / too_many_isolated /
reclaim_throttle: a direct reclaimer finding more pages of the type isolated than on the
inactive list (an eighth of it for a __GFP_IO | __GFP_FS caller) sleeps HZ/50 once, and,
still too many, leaves the list alone; kswapd never throttles here. In hvsim a reclaim
pass runs whole within one call, but a direct reclaimer's own time runs on from the
simulation's now as it works, so reclaimers on other CPUs overlap it: the unit tests set
the isolated pages by hand (NR_ISOLATED_FILE), as a second reclaimer would find them; the
last test reaches the rule through ordinary allocations of tasks on many vCPUs."""

from __future__ import annotations

import simpy

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.vmscan import (
    HZ,
    LRU_INACTIVE_FILE,
    ScanControl,
    init_reclaim,
    start_reclaim_daemons,
)

P = 4096


def _kernel():
    env = simpy.Environment()
    k = Kernel(memory="64MiB", swap=0, env=env)
    init_reclaim(k)
    start_reclaim_daemons(k)
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("reader")
    k.fs.create("/data/f", 2048 * P)
    fd = t.open("/data/f", U.O_RDONLY)
    buf = t.mmap(0, 64 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 64 * P, True)
    while t.read(fd, buf, 64 * P) > 0:
        pass
    return k, env


def _sc(k, env, gfp, kswapd=False):
    sc = ScanControl(32, gfp, kswapd, len(k.page_alloc.nodes[0].zones) - 1, False)
    if not kswapd:
        sc.t0 = env.now
    return sc


def test_too_many_isolated_sleeps_once_and_gives_up():
    k, env = _kernel()
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    inactive = lv.lists[LRU_INACTIVE_FILE].nr
    assert inactive >= 1024
    vm["nr_isolated_file"] = (inactive >> 3) + 1  # another reclaimer's batch
    sc = _sc(k, env, G.GFP_KERNEL)
    assert r.shrink_inactive_list(32, lv, sc, LRU_INACTIVE_FILE) == 0
    assert sc.sleep == (HZ // 50) / HZ == 0.02 and sc.nr_scanned == 0
    assert vm["vmscan_throttle_isolated"] == 1
    assert lv.lists[LRU_INACTIVE_FILE].nr == inactive  # nothing taken


def test_gfp_nofs_may_isolate_more():
    # without __GFP_FS the whole inactive list is the bound: isolated <= inactive goes on
    k, env = _kernel()
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    inactive = lv.lists[LRU_INACTIVE_FILE].nr
    vm["nr_isolated_file"] = inactive >> 1
    sc = _sc(k, env, G.GFP_NOFS)
    r.shrink_inactive_list(32, lv, sc, LRU_INACTIVE_FILE)
    assert sc.sleep == 0.0 and sc.nr_scanned == 32
    assert vm["vmscan_throttle_isolated"] == 0
    assert vm["nr_isolated_file"] == inactive >> 1  # its own batch counted and back
    # the same count with GFP_KERNEL: over an eighth, throttled
    sc = _sc(k, env, G.GFP_KERNEL)
    r.shrink_inactive_list(32, lv, sc, LRU_INACTIVE_FILE)
    assert vm["vmscan_throttle_isolated"] == 1


def test_kswapd_never_throttles_on_isolated():
    k, env = _kernel()
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    vm["nr_isolated_file"] = lv.lists[LRU_INACTIVE_FILE].nr
    sc = _sc(k, env, G.GFP_KERNEL, kswapd=True)
    r.shrink_inactive_list(32, lv, sc, LRU_INACTIVE_FILE)
    assert sc.nr_scanned == 32 and vm["vmscan_throttle_isolated"] == 0


def test_counters_in_proc_vmstat():
    k, env = _kernel()
    text = k.procfs.read("/proc/vmstat")
    names = [line.split()[0] for line in text.splitlines()]
    # node items in Linux's order: nr_dirtied, nr_written, nr_throttled_written
    i = names.index("nr_written")
    assert names[i - 1] == "nr_dirtied" and names[i + 1] == "nr_throttled_written"
    for reason in ("writeback", "isolated", "noprogress", "congested"):
        assert f"vmscan_throttle_{reason}" in names


def test_reclaimers_on_other_cpus_throttle_each_other_through_ordinary_allocations():
    """16 tasks on a 16-vCPU 48 MiB guest (fork placement: one per CPU) write 3 MiB of
    anonymous memory each at the same moments: their direct reclaimers run beside each
    other, and a reclaimer finding the batches the others hold isolated at its own time over an
    eighth of the inactive list sleeps (VMSCAN_THROTTLE_ISOLATED). Each such sleep is
    checked against the rule when it is taken: NR_ISOLATED_* itself is 0 (no batch of
    its own, no compaction), the pages are the other CPUs' batches. A 1-vCPU guest
    running the same tasks never throttles here: one reclaimer at a time."""
    from guestkernel.vmscan import VMSCAN_THROTTLE_ISOLATED

    def run(cpus):
        env = simpy.Environment()
        k = Kernel(memory="48MiB", swap="256MiB", cpus=cpus, env=env)
        r = k.reclaim
        tasks = [k.spawn(f"t{i}") for i in range(16)]
        seen = []
        real = r.reclaim_throttle

        def spy(lv, reason, sc):
            if reason == VMSCAN_THROTTLE_ISOLATED:
                # the list being shrunk is one of the two: at least one is over the bound
                event = []
                for file in (False, True):
                    if r.too_many_isolated(lv, file, sc):
                        lst = lv.lists[LRU_INACTIVE_FILE if file else 0]
                        event.append((k.vmstat["nr_isolated_file" if file else "nr_isolated_anon"],
                                      r._isolated_elsewhere(file, sc), lst.nr))
                seen.append(event)
            return real(lv, reason, sc)

        r.reclaim_throttle = spy

        # 768 pages each: 48 MiB written into the 48 MiB guest, every writer in direct
        # reclaim within the second (2048 pages each ran for minutes: every isolated batch
        # stays in `isolating` while the reclaimers' own time runs ahead of the now)
        def proc(t):
            a = t.mmap(0, 768 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
            for n in range(0, 768, 64):
                t.access_range(a + n * P, 64 * P, True)
                yield env.timeout(1e-3)

        for t in tasks:
            env.process(proc(t))
        env.run(until=1.0)
        r.validate()
        return k, tasks, seen

    k, tasks, seen = run(16)
    assert sorted(t.cpu for t in tasks) == list(range(16))
    assert k.vmstat["vmscan_throttle_isolated"] == len(seen) > 0
    for event in seen:
        assert event
        for own, others, inactive in event:
            assert own == 0 and others > inactive >> 3  # GFP_HIGHUSER_MOVABLE: IO | FS
    k1, _, seen1 = run(1)
    assert k1.vmstat["vmscan_throttle_isolated"] == 0 and seen1 == []


def _small_cache_kernel(cpus):
    """A guest whose inactive file list holds fewer than 8 * SWAP_CLUSTER_MAX pages, so
    one batch of 32 isolated pages is over the __GFP_IO | __GFP_FS bound (inactive >> 3)."""
    env = simpy.Environment()
    k = Kernel(memory="64MiB", swap=0, cpus=cpus, env=env)
    init_reclaim(k)
    start_reclaim_daemons(k)
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("reader")
    k.fs.create("/data/f", 160 * P)
    fd = t.open("/data/f", U.O_RDONLY)
    buf = t.mmap(0, 32 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 32 * P, True)
    while t.read(fd, buf, 32 * P) > 0:
        pass
    return k, env


def test_kswapds_isolated_batch_counts_for_direct_reclaimers():
    """too_many_isolated reads NR_ISOLATED_FILE (node_page_state), which kswapd's batch
    raises too: kswapd's pass runs whole at the simulation's now, its batch isolated in
    its own time from the pass's start (SCAN_COST a page while isolated), and a direct
    reclaimer on any CPU whose own time falls inside sees its 32 pages; kswapd itself
    never throttles (current_is_kswapd: too_many_isolated returns 0)."""
    from guestkernel.vmscan import SCAN_COST

    for cpus in (1, 2):
        k, env = _small_cache_kernel(cpus)
        r = k.reclaim
        lv = r.lruvecs[0]
        vm = k.vmstat
        assert 32 < lv.lists[LRU_INACTIVE_FILE].nr < 8 * 32 + 32
        ks = _sc(k, env, G.GFP_KERNEL, kswapd=True)
        ks.cost = 1e-3  # kswapd 1 ms into its pass
        r.shrink_inactive_list(32, lv, ks, LRU_INACTIVE_FILE)
        assert ks.nr_scanned == 32 and vm["nr_isolated_file"] == 0  # back (hvsim: at once)
        inactive = lv.lists[LRU_INACTIVE_FILE].nr
        assert 32 > inactive >> 3
        begin, end = 1e-3, 1e-3 + 32 * SCAN_COST  # the batch's interval, kswapd's time
        for cpu in range(cpus):
            for t, inside in ((begin - 1e-7, False), (begin, True), (end - 1e-7, True), (end, False)):
                sc = _sc(k, env, G.GFP_KERNEL)
                sc.t0, sc.cpu = t, cpu
                assert r._isolated_elsewhere(True, sc) == (32 if inside else 0)
                assert r._isolated_elsewhere(False, sc) == 0  # (a file batch)
                assert r.too_many_isolated(lv, True, sc) is inside
        # GFP_NOFS: the whole inactive list is the bound, 32 pages are not over it
        sc = _sc(k, env, G.GFP_NOFS)
        sc.t0 = begin
        assert not r.too_many_isolated(lv, True, sc)
        # a second kswapd batch meanwhile is not throttled by the first
        ks2 = _sc(k, env, G.GFP_KERNEL, kswapd=True)
        ks2.cost = begin
        assert not r.too_many_isolated(lv, True, ks2)


def test_wake_throttle_isolated_ends_the_sleep_early():
    """reclaim_throttle(VMSCAN_THROTTLE_ISOLATED) sleeps until HZ/50 or until
    wake_throttle_isolated: a direct reclaimer on another CPU of the node calling
    too_many_isolated and finding few isolated pages (6.1 too_many_isolated: `if
    (!too_many) wake_throttle_isolated(pgdat)`). Here that reclaimer's own time is
    5 ms after the sleep begins: the sleeper wakes then (5000 us delayed, the
    mm_vmscan_throttled tracepoint's usec_delayed), finds the pages still isolated and
    gives up on the list."""
    k, env = _kernel_cpus(2)
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    other = _sc(k, env, G.GFP_KERNEL)
    other.t0, other.cpu = 0.005, 1
    assert not r.too_many_isolated(lv, True, other)  # wake_throttle_isolated at 5 ms
    inactive = lv.lists[LRU_INACTIVE_FILE].nr
    vm["nr_isolated_file"] = (inactive >> 3) + 1  # then a batch is isolated elsewhere
    sc = _sc(k, env, G.GFP_KERNEL)
    assert sc.t0 == 0.0 and sc.cpu == 0
    assert r.shrink_inactive_list(32, lv, sc, LRU_INACTIVE_FILE) == 0
    assert sc.sleep == 0.005 and sc.nr_scanned == 0
    assert vm["vmscan_throttle_isolated"] == 1
    assert vm["vmscan_throttle_isolated_usec"] == 5000


def test_wake_throttle_isolated_only_from_other_cpus_of_the_node_within_the_timeout():
    """Wakes that cannot end the sleep leave it at HZ/50 (20000 us): a call on the
    sleeper's own CPU (its CPU runs one reclaimer at a time), one at or before the
    sleep's start, one after its timeout, kswapd's (too_many_isolated returns 0 before
    waking anyone), and a GFP check that found too many (no wake)."""
    k, env = _kernel_cpus(2)
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    for t, cpu in ((0.005, 0), (0.0, 1), (0.02, 1), (0.021, 1)):
        other = _sc(k, env, G.GFP_KERNEL)
        other.t0, other.cpu = t, cpu
        assert not r.too_many_isolated(lv, True, other)
    ks = _sc(k, env, G.GFP_KERNEL, kswapd=True)
    ks.cost = 0.005
    n = len(r.isolated_wakes)
    assert not r.too_many_isolated(lv, True, ks) and len(r.isolated_wakes) == n
    inactive = lv.lists[LRU_INACTIVE_FILE].nr
    vm["nr_isolated_file"] = (inactive >> 3) + 1
    busy = _sc(k, env, G.GFP_KERNEL)
    busy.t0, busy.cpu = 0.005, 1
    assert r.too_many_isolated(lv, True, busy) and len(r.isolated_wakes) == n
    sc = _sc(k, env, G.GFP_KERNEL)
    assert r.shrink_inactive_list(32, lv, sc, LRU_INACTIVE_FILE) == 0
    assert sc.sleep == (HZ // 50) / HZ == 0.02
    assert vm["vmscan_throttle_isolated_usec"] == 20000


def _kernel_cpus(cpus):
    env = simpy.Environment()
    k = Kernel(memory="64MiB", swap=0, cpus=cpus, env=env)
    init_reclaim(k)
    start_reclaim_daemons(k)
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("reader")
    k.fs.create("/data/f", 2048 * P)
    fd = t.open("/data/f", U.O_RDONLY)
    buf = t.mmap(0, 64 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 64 * P, True)
    while t.read(fd, buf, 64 * P) > 0:
        pass
    return k, env


def test_active_list_batches_count_in_nr_isolated():
    """6.1 shrink_active_list adds the pages isolate_lru_folios took to NR_ISOLATED_*
    (__mod_node_page_state(pgdat, NR_ISOLATED_ANON + file, nr_taken)) until
    move_folios_to_lru has put them back: kswapd's batch of 32 active file pages, taken
    1 ms into its pass, counts over [1 ms, 1 ms + 32 * SCAN_COST) for direct reclaimers
    on any CPU; a direct reclaimer's batch on CPU 1 counts for CPU 0 over its own time,
    never for CPU 1."""
    from guestkernel.vmscan import KSWAPD_CPU, LRU_ACTIVE_FILE, SCAN_COST

    k, env = _small_cache_kernel(2)
    t = k.tasks[max(k.tasks)]
    fd = t.open("/data/f", U.O_RDONLY)
    buf = t.mmap(0, 32 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    while t.read(fd, buf, 32 * P) > 0:  # a second read: mark_page_accessed activates
        pass
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    assert lv.lists[LRU_ACTIVE_FILE].nr >= 64
    r.isolating.clear()
    ks = _sc(k, env, G.GFP_KERNEL, kswapd=True)
    ks.cost = 1e-3
    r.shrink_active_list(32, lv, ks, LRU_ACTIVE_FILE)
    assert vm["nr_isolated_file"] == 0
    assert r.isolating == [(1e-3, 1e-3 + 32 * SCAN_COST, 32, True, KSWAPD_CPU, 0)]
    for cpu in (0, 1):
        sc = _sc(k, env, G.GFP_KERNEL)
        sc.t0, sc.cpu = 1e-3, cpu
        assert r._isolated_elsewhere(True, sc) == 32 and r._isolated_elsewhere(False, sc) == 0
    r.isolating.clear()
    direct = _sc(k, env, G.GFP_KERNEL)
    direct.t0, direct.cpu, direct.cost = 0.0, 1, 2e-3
    r.shrink_active_list(32, lv, direct, LRU_ACTIVE_FILE)
    assert r.isolating == [(2e-3, 2e-3 + 32 * SCAN_COST, 32, True, 1, 0)]
    for cpu, seen in ((0, 32), (1, 0)):
        sc = _sc(k, env, G.GFP_KERNEL)
        sc.t0, sc.cpu = 2e-3, cpu
        assert r._isolated_elsewhere(True, sc) == seen
