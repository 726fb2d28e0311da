"""Dirty throttling per task, and the wb's estimates, as 6.1's mm/page-writeback.c:
balance_dirty_pages_ratelimited_flags (current->nr_dirtied / nr_dirtied_pause,
bdp_ratelimits against ratelimit_pages, dirty_throttle_leaks), wb_update_write_bandwidth
and wb_update_dirty_ratelimit (values by hand from their C integer arithmetic, HZ = 250),
and a writer whose estimates converge to its disk's rate."""

from __future__ import annotations

import simpy

from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.vmscan import (
    INIT_BW,
    init_reclaim,
    start_reclaim_daemons,
    wb_update_dirty_ratelimit,
    wb_update_write_bandwidth,
)

P = 4096
RW = U.PROT_READ | U.PROT_WRITE


def test_init_bw():
    assert INIT_BW == 25600  # 100 << (20 - PAGE_SHIFT): 100 MB/s in pages


def test_wb_update_write_bandwidth():
    # period = roundup_pow_of_two(3 * 250) = 1024; 200 pages in 50 jiffies:
    # bw = (200 * 250 + 25600 * (1024 - 50)) >> 10 = 24984400 >> 10 = 24398; avg == old
    assert wb_update_write_bandwidth(25600, 25600, 50, 200) == (24398, 25600)
    # next: bw = (50000 + 24398 * 974) >> 10 = 23813652 >> 10 = 23255; avg 25600 > old
    # 24398 >= bw: avg -= (25600 - 24398) >> 3 = 150
    assert wb_update_write_bandwidth(24398, 25600, 50, 200) == (23255, 25450)
    # avg below old and old <= bw: avg += (old - avg) >> 3
    assert wb_update_write_bandwidth(1000, 800, 50, 400) == ((100000 + 1000 * 974) >> 10, 825)
    # elapsed over a period: bw = written * HZ / elapsed, avg = bw
    assert wb_update_write_bandwidth(25600, 25600, 2000, 4000) == (500, 500)
    assert wb_update_write_bandwidth(25600, 25600, 2000, 0) == (0, 1)  # avg kept > 0


def test_wb_update_dirty_ratelimit():
    # dirty_rate = 2560 * 250 / 50 = 12800; task_ratelimit = 25600 * 1024 >> 10, + 1;
    # balanced = 25601 * 1024 / 12801 = 2047 > write_bw: 1024. Above the setpoint with
    # task_ratelimit above dirty_ratelimit: no step
    assert wb_update_dirty_ratelimit(25600, 25600, 1024, 1024, 2560, 50, 1800, 1750) == (25600, 1024)
    # pos_ratio 0.5: task_ratelimit 12801, balanced = 12801 * 1024 / 12801 = 1024;
    # x = max3(1024, 1024, 12801); step = 25600 - 12801 = 12799; shift = 25600 / 25599
    # = 1; step = DIV_ROUND_UP(12799 >> 1, 8) = 800
    assert wb_update_dirty_ratelimit(25600, 1024, 1024, 512, 2560, 50, 1800, 1750) == (24800, 1024)
    # below the setpoint: dirty_rate 500, task_ratelimit 1001, balanced = 1025024 / 501
    # = 2045 -> 1024; x = min3(1000, 1024, 1001) = 1000; step 500, shift 500 / 1001 = 0,
    # DIV_ROUND_UP(500, 8) = 63
    assert wb_update_dirty_ratelimit(500, 1000, 1024, 2048, 100, 50, 1000, 1750) == (563, 1024)
    # never below 1
    assert wb_update_dirty_ratelimit(1, 1, 1024, 0, 100000, 1, 1800, 1750)[0] == 1


def _kernel(env=None, **kw):
    k = Kernel(**{"memory": "64MiB", **kw}, env=env)
    init_reclaim(k)
    if env is not None:
        start_reclaim_daemons(k)
    if 1 not in k.tasks:
        k.spawn("init")
    return k


def _writer(k, name, path):
    t = k.spawn(name)
    fd = t.open(path, U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 64 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 64 * P, True)
    return t, fd, buf


def _spy(r):
    calls = []
    real = r.balance_dirty_pages

    def spy(pages_dirtied=32, task=None):
        calls.append((task.comm if task is not None else None, pages_dirtied))
        return real(pages_dirtied, task)

    r.balance_dirty_pages = spy
    return calls


def test_throttling_state_is_per_task():
    """Two tasks dirtying 16 pages each: 32 pages in the guest, but each task's
    nr_dirtied (16) is under its nr_dirtied_pause (32, copy_process): no check."""
    env = simpy.Environment()
    k = _kernel(env)
    r = k.reclaim
    a, fa, ba = _writer(k, "a", "/data/a")
    b, fb, bb = _writer(k, "b", "/data/b")
    assert a.nr_dirtied_pause == 32 and a.nr_dirtied == 0
    calls = _spy(r)
    r.writeback_set_ratelimit()
    assert r.ratelimit_pages > 32  # dirty_thresh / (1 CPU * 32) of a 64 MiB guest
    assert a.write(fa, ba, 16 * P) == 16 * P
    assert b.write(fb, bb, 16 * P) == 16 * P
    assert (a.nr_dirtied, b.nr_dirtied) == (16, 16) and calls == []
    assert a.write(fa, ba, 16 * P) == 16 * P  # a reaches 32: balance_dirty_pages(32)
    assert calls == [("a", 32)]
    assert a.nr_dirtied == 0 and b.nr_dirtied == 16
    # below the freerun ceiling: nr_dirtied_pause = dirty_poll_interval
    bg, thresh = r.dirty_thresholds()
    dirty = k.vmstat["nr_dirty"] + k.vmstat["nr_writeback"]
    assert a.nr_dirtied_pause == 1 << ((thresh - dirty).bit_length() - 1 >> 1)
    # b exits with 16 pages unthrottled: dirty_throttle_leaks, taken by the next dirtier
    b.exit(0)
    assert k.dirty_throttle_leaks == [16]  # (one CPU)
    assert a.write(fa, ba, P) == P
    assert a.nr_dirtied == 17 and k.dirty_throttle_leaks == [0]


def test_bdp_ratelimits_forces_a_check():
    """Tasks each dirtying fewer pages than their nr_dirtied_pause: once the CPU's
    bdp_ratelimits reaches ratelimit_pages, the task dirtying then is checked
    (ratelimit 0) with its own nr_dirtied."""
    env = simpy.Environment()
    k = _kernel(env)
    r = k.reclaim
    r.writeback_set_ratelimit()
    thresh = r.dirty_thresholds()[1]
    assert r.ratelimit_pages == max(thresh // 32, 16)
    assert r.dirty_limit == thresh  # writeback_set_ratelimit sets dom->dirty_limit
    calls = _spy(r)
    writers = [_writer(k, f"w{i}", f"/data/w{i}") for i in range(r.ratelimit_pages // 16 + 1)]
    dirtied = 0
    for t, fd, buf in writers:
        for _ in range(16):
            t.write(fd, buf, P)
            dirtied += 1
            if calls:
                break
        if calls:
            break
    # folio_account_dirtied counts the page in bdp_ratelimits, then
    # balance_dirty_pages_ratelimited finds it at ratelimit_pages: that page's task is
    # checked with what it dirtied itself
    assert dirtied == r.ratelimit_pages
    assert calls == [(t.comm, dirtied % 16 or 16)]


def test_bdp_ratelimits_and_dirty_throttle_leaks_are_per_cpu():
    """6.1 balance_dirty_pages_ratelimited_flags reads this_cpu_ptr(&bdp_ratelimits) and
    this_cpu_ptr(&dirty_throttle_leaks), folio_account_dirtied and do_exit add to the
    running CPU's. On a 2-CPU guest, fork placement (the idlest CPU) alternates the
    writers: w0 on CPU 1 beside init on CPU 0, w1 on CPU 0, ... Each writer dirties 16
    pages, under its nr_dirtied_pause (32), so only a CPU's count can force a check: the
    page that brings its CPU's count to ratelimit_pages; the other CPU's pages do not
    count towards it. An exited writer's pages wait on its own CPU."""
    env = simpy.Environment()
    k = _kernel(env, cpus=2)
    r = k.reclaim
    r.writeback_set_ratelimit()
    rl = r.ratelimit_pages
    assert rl == max(r.dirty_thresholds()[1] // (2 * 32), 16)  # thresh / (2 CPUs * 32)
    writers = [_writer(k, f"w{i}", f"/data/w{i}") for i in range(2 * (rl // 16 + 1))]
    assert k.tasks[1].cpu == 0 and [t.cpu for t, _, _ in writers] == [1, 0] * (len(writers) // 2)
    calls = _spy(r)
    # the rule, page by page: the first page at which its CPU's count reaches rl
    count = [0, 0]
    want = None
    for t, _, _ in writers:
        for j in range(1, 17):
            count[t.cpu] += 1
            if count[t.cpu] == rl:
                want = (t.comm, j, sum(count))
                break
        if want:
            break
    dirtied = 0
    for t, fd, buf in writers:
        for _ in range(16):
            t.write(fd, buf, P)
            dirtied += 1
            if calls:
                break
        if calls:
            break
    assert calls == [want[:2]] and dirtied == want[2] > rl  # one counter: checked at rl
    w0, w1, w2 = (w[0] for w in writers[:3])
    assert (w0.nr_dirtied, w1.nr_dirtied, w2.nr_dirtied) == (16, 16, 16)
    assert k.bdp_ratelimits[0] == count[0] and k.bdp_ratelimits[1] == 0  # (reset by the check)
    # w0 exits on CPU 1: its 16 pages wait there; w1's next page (CPU 0) takes none
    w0.exit(0)
    assert k.dirty_throttle_leaks == [0, 16]
    w1.write(writers[1][1], writers[1][2], P)
    assert w1.nr_dirtied == 17 and k.dirty_throttle_leaks == [0, 16]
    # w2's next page (CPU 1): charged up to its ratelimit, min(16, 32 - 17) = 15, which
    # brings it to 32: balance_dirty_pages(32)
    w2.write(writers[2][1], writers[2][2], P)
    assert k.dirty_throttle_leaks == [0, 1] and calls[-1] == ("w2", 32)


def test_shared_mapping_write_faults_count_for_the_faulting_task():
    env = simpy.Environment()
    k = _kernel(env)
    calls = _spy(k.reclaim)
    t = k.spawn("m")
    fd = t.open("/data/m", U.O_RDWR | U.O_CREAT)
    t.ftruncate(fd, 64 * P)
    a = t.mmap(0, 64 * P, RW, U.MAP_SHARED, fd, 0)
    t.access_range(a, 31 * P, True)
    assert t.nr_dirtied == 31 and calls == []
    t.access_range(a + 31 * P, P, True)
    assert calls == [("m", 32)]


def test_writer_estimates_converge_to_the_disk():
    """A task writing to a 4 MiB/s disk (1024 pages/s) for 60 simulated seconds:
    avg_write_bandwidth, from 100 MB/s (INIT_BW), follows the pages whose writes ended
    to the disk's rate; dirty_ratelimit, the rate one dirtier is let through, follows the
    balanced rate write_bw / N with N = 1 ("balanced_dirty_ratelimit ~= (write_bw / N)")."""
    env = simpy.Environment()
    k = _kernel(env)
    k.fs.bandwidth = 4 << 20
    r = k.reclaim
    t, fd, buf = _writer(k, "dd", "/data/big")
    end = 60.0
    while env.now < end:
        t.write(fd, buf, 64 * P)
        env.run(until=max(env.now, t.bdp_clock) + 1e-3)
    # (the write bandwidth's period is roundup_pow_of_two(3 * HZ) = 4.1 s and the
    # average moves 1/8 of the gap a step: from 25600 it takes tens of seconds)
    assert abs(r.wb_avg_write_bandwidth - 1024) <= 1024 * 0.05
    assert abs(r.wb_dirty_ratelimit - 1024) <= 1024 * 0.1
