"""VMSCAN_THROTTLE_ISOLATED as 6.1's shrink_inactive_list / too_many_isolated /
reclaim_throttle: a direct reclaimer finding more pages of the type isolated than on the
inactive list (an eighth of it for a __GFP_IO | __GFP_FS caller) sleeps HZ/50 once, and,
still too many, leaves the list alone; kswapd never throttles here. In hvsim a reclaim
pass runs whole within one call, so the isolated pages another reclaimer would hold are
set by hand (NR_ISOLATED_FILE), as a second reclaimer would find them."""

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
