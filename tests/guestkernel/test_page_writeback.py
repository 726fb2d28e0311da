"""Dirty throttling as 6.1's mm/page-writeback.c: the formulas checked against values
computed by hand from its code (integer C arithmetic, HZ = 250), then a writer throttled
in simulated time."""

from __future__ import annotations

import simpy

from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.vmscan import (
    HZ,
    MAX_PAUSE,
    dirty_poll_interval,
    domain_dirty_limits,
    init_reclaim,
    pos_ratio_polynom,
    start_reclaim_daemons,
    wb_max_pause,
    wb_min_pause,
    wb_position_ratio,
)

RW = U.PROT_READ | U.PROT_WRITE


def test_domain_dirty_limits():
    # ratio = 20 * 4096 / 100 = 819; thresh = 819 * 100000 / 4096 = 19995
    # bg_ratio = 409; bg_thresh = 409 * 100000 / 4096 = 9985
    assert domain_dirty_limits(100000, 20, 10) == (19995, 9985)
    # bg >= thresh: half the threshold
    assert domain_dirty_limits(100000, 10, 20) == (9985, 4992)
    # vm.dirty_bytes wins: DIV_ROUND_UP(10 MiB + 1, 4096) = 2561
    assert domain_dirty_limits(100000, 20, 10, dirty_bytes=(10 << 20) + 1) == (2561, 1280)
    assert domain_dirty_limits(100000, 20, 10, dirty_background_bytes=4 << 20) == (19995, 1024)


def test_pos_ratio_polynom():
    # setpoint 1750, limit 2000: x = (50 << 10) / 251 = 203; 203*203 >> 10 = 40;
    # 40*203 >> 10 = 7; 1024 + 7 = 1031
    assert pos_ratio_polynom(1750, 1700, 2000) == 1031
    # x = (-200 << 10) / 251 = -815 (truncated); -815*-815 >> 10 = 648;
    # 648*-815 >> 10 = -516 (arithmetic shift); 1024 - 516 = 508
    assert pos_ratio_polynom(1750, 1950, 2000) == 508
    assert pos_ratio_polynom(1750, 1750, 2000) == 1024  # at the setpoint: 1.0
    assert pos_ratio_polynom(1750, 0, 2000) == 2048  # clamped to 2.0


def test_wb_position_ratio():
    # thresh 2000, bg 1000: freerun 1500, limit 2000, setpoint 1750; one wb (wb_thresh =
    # thresh), write_bw 2560 pages/s: x = (2000 << 16) / 2001 = 65503; wb_setpoint =
    # 1750 * 65503 >> 16 = 1749; span = 8 * 2560 * 65503 >> 16 = 20469; x_intercept =
    # 22218; dirty 1950 < 22218 - 5117: pos = 508 * (22218 - 1950) / 20469 = 503
    assert wb_position_ratio(2000, 1000, 1950, 2000, 2000, 1950, 2560) == 503
    # write_bw 25600: span = 204800 * 65503 >> 16 = 204696, x_intercept 206445;
    # dirty 1700: pos = 1031 * 204745 / 204697 = 1031
    assert wb_position_ratio(2000, 1000, 1700, 2000, 2000, 1700, 25600) == 1031
    # at the limit: 0 (the task pauses max_pause and looks again)
    assert wb_position_ratio(2000, 1000, 2000, 2000, 2000, 2000, 2560) == 0
    # below half wb_thresh the wb's ratio is boosted: wb_dirty 400 of wb_thresh 2000 at
    # a global dirty of 1700: x_intercept = 1000, 400 > 1000/8: pos * 1000 / 400
    base = wb_position_ratio(2000, 1000, 1700, 2000, 2000, 1000, 2560)
    assert wb_position_ratio(2000, 1000, 1700, 2000, 2000, 400, 2560) == (
        1031 * (22218 - 400) // 20469) * 1000 // 400
    assert base == 1031 * (22218 - 1000) // 20469


def test_pauses():
    assert MAX_PAUSE == 50 and HZ == 250  # HZ / 5: 200 ms
    # wb_max_pause: roundup_pow_of_two(1 + 250 / 8) = 32; 1950 / (1 + 2560 / 32) + 1 = 25
    assert wb_max_pause(1950, 2560) == 25
    assert wb_max_pause(1950, 25600) == 3  # 1950 / 801 + 1
    assert wb_max_pause(100000, 2560) == MAX_PAUSE  # 1235, clamped
    # wb_min_pause(25, task 1257, dirty_ratelimit 2560, bw 2560): hi = lo = 11, t = 2;
    # pages = 2560 * 2 / 256 = 20 < 32 -> t = 25, pages = 250 > 32 -> pages 32,
    # t = 250 * 32 / 2560 = 3; pause = 8000 / 1258 = 6 <= 25; pages >= 32: 1 + 3 / 2
    assert wb_min_pause(25, 1257, 2560, 2560) == (2, 32)
    # bw 25600: t = 2, pages = 25600 * 2 / 256 = 200; 1 + 2 / 2
    assert wb_min_pause(3, 12675, 25600, 25600) == (2, 200)
    # dirty_poll_interval: 1 << (ilog2(2000 - 1000) >> 1) = 1 << 4
    assert dirty_poll_interval(1000, 2000) == 16
    assert dirty_poll_interval(2500, 2000) == 1


def _kernel(env, **kw):
    k = Kernel(**{"memory": "64MiB", **kw}, env=env)
    init_reclaim(k)
    start_reclaim_daemons(k)
    k.spawn("init")
    return k


def test_balance_dirty_pages_pause_by_hand():
    """One call of balance_dirty_pages with the state set by hand: dirty 1950 of
    thresh 2000 / bg 1000 at 10 MiB/s (2560 pages/s): pos_ratio 503, task_ratelimit
    2560 * 503 >> 10 = 1257; 32 pages dirtied: period = 250 * 32 / 1257 = 6 jiffies,
    over min_pause 2 and under max_pause 25: the task sleeps 6 / HZ = 24 ms."""
    env = simpy.Environment()
    k = _kernel(env, swap_bandwidth="10MiB")
    r = k.reclaim
    vm = k.vmstat
    import guestkernel.vmscan as V  # the limits, through the function the code calls

    real = V.domain_dirty_limits
    V.domain_dirty_limits = lambda avail, *a, **kw: (2000, 1000)
    t = k.spawn("writer")
    try:
        # the wb's estimates as a 10 MiB/s disk's, just updated (no update this call)
        r.wb_avg_write_bandwidth = r.wb_write_bandwidth = r.wb_dirty_ratelimit = 2560
        r._writeback_during = lambda until, bg: None  # nothing written meanwhile
        vm["nr_dirty"], vm["nr_writeback"] = 1950, 0
        before = k.iowait_throttle
        t.nr_dirtied = 32
        slept = r.balance_dirty_pages(32, t)
    finally:
        V.domain_dirty_limits = real
    assert slept == 6 / HZ and k.iowait_throttle - before == 6 / HZ
    # the task's state: current->nr_dirtied_pause, dirty_paused_when, nr_dirtied
    assert t.nr_dirtied_pause == 32 and t.dirty_paused_when == 6 and t.nr_dirtied == 0
    assert r.dirty_exceeded is False  # 1950 <= thresh


def test_writer_throttled_to_the_disk_in_simulated_time():
    """A task writing 32 MiB to a 4 MiB/s disk in a 64 MiB guest: the dirty + writeback
    pages stay below the hard limit, the writer sleeps throttled (iowait_throttle), and
    /proc/vmstat shows the thresholds global_dirty_limits computes."""
    env = simpy.Environment()
    k = _kernel(env, swap_bandwidth="4MiB")
    k.fs.bandwidth = 4 << 20
    r = k.reclaim
    t = k.spawn("writer")
    fd = t.open("/data/big", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 256 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 256 * 4096, True)
    peak = 0
    for _ in range(32):  # 32 x 1 MiB
        t.write(fd, buf, 256 * 4096)
        bg, thresh = r.dirty_thresholds()
        vm = k.vmstat
        peak = max(peak, vm["nr_dirty"] + vm["nr_writeback"] - max(thresh, r.dirty_limit))
        env.run(until=env.now + 1e-3)
    assert k.iowait_throttle > 0
    assert peak <= 32  # at most one check's worth of pages above the limit
    text = k.procfs.read("/proc/vmstat")
    bg, thresh = r.dirty_thresholds()
    assert f"nr_dirty_threshold {thresh}\n" in text
    assert f"nr_dirty_background_threshold {bg}\n" in text
    # all data reached the file once flushed
    r.writeback_dirty(force=True)
    env.run(until=env.now + 30)
    assert len(k.fs.lookup("/data/big").disk) == 8192
