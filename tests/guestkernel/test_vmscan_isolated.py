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
    """16 tasks on a 16-vCPU 48 MiB guest (fork placement: one per CPU) write anonymous
    memory at the same moments: their direct reclaimers run beside each other, and a
    reclaimer finding the batches the others hold isolated at its own time over an
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

        def proc(t):
            a = t.mmap(0, 2048 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
            for n in range(0, 2048, 64):
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
