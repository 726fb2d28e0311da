"""Reclaim in simulated time: a memory hog drives kswapd, then direct reclaim, then swap,
then the OOM killer; a file streamer beside a working set is handled by kswapd alone."""

from __future__ import annotations

import simpy

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import validate_buddy
from guestkernel.swap import validate_swap
from guestkernel.vmscan import init_reclaim, start_reclaim_daemons

RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
MiB = 1 << 20
PAGE = 4096


def boot(env, **kw):
    k = Kernel(KernelConfig(**kw), env=env)
    init_reclaim(k)
    start_reclaim_daemons(k)  # no-op once kernel.py starts them itself
    k.spawn("init")
    return k


def test_memory_hog_kswapd_then_direct_then_swap_then_oom():
    """A hog writes memory at memset speed (2.5 pages/us) in a 64 MiB guest holding
    16 MiB of page cache, with 32 MiB of swap. kswapd (1 us per page) cannot keep up
    once free memory reaches LOW, so the hog enters direct reclaim while page cache
    remains; swap-out starts when the cache is nearly gone; when swap is full too, the
    OOM killer kills the hog."""
    env = simpy.Environment()
    # LOW - MIN wide enough (watermark_scale_factor 1 %) that one burst of the hog
    # cannot cross it: kswapd is woken and runs before anyone reclaims directly
    k = boot(env, memory="64MiB", swap="32MiB", overcommit_memory=1,
             watermark_scale_factor=100)
    vm = k.vmstat
    reader = k.spawn("reader")
    k.fs.create("/var/cache.db", 16 * MiB)
    fd = reader.open("/var/cache.db")
    buf = reader.mmap(0, 64 * 1024, RW, ANON)
    while reader.read(fd, buf, 64 * 1024):
        pass
    assert vm["nr_file_pages"] >= 4096
    hog = k.spawn("hog")
    size = 256 * MiB
    a = hog.mmap(0, size, RW, ANON)
    first: dict[str, int] = {}
    # user allocations may use the Normal zone: direct reclaim counts allocstall_normal
    watch = {"kswapd": "pgsteal_kswapd", "direct": "allocstall_normal", "swap": "pswpout",
             "oom": "oom_kill"}
    burst = 64

    def hog_proc():
        i = 0
        for off in range(0, size, burst * PAGE):
            cost = hog.access_range(a + off, burst * PAGE, True)
            i += 1
            for name, counter in watch.items():
                if name not in first and vm[counter]:
                    first[name] = i
            if hog.state != "running":
                return
            yield env.timeout(max(cost, burst / 2.5e6))

    swap_free_at_oom = []
    oom_hook = k.page_alloc.oom_hook

    def watching_oom_hook(*args):
        swap_free_at_oom.append(k.swap.free_swap_pages())
        return oom_hook(*args)

    k.page_alloc.oom_hook = watching_oom_hook
    env.process(hog_proc())
    env.run(until=5.0)
    assert set(first) == set(watch), first
    # each stage begins strictly after the previous one (burst numbers)
    assert first["kswapd"] < first["direct"] < first["swap"] < first["oom"], first
    assert vm["oom_kill"] == 1 and k.oom.victims == [hog]
    assert hog.term_signal == U.SIGKILL
    assert reader.state == "running"
    assert swap_free_at_oom[0] == 0  # swap was full when the OOM killer was called
    # the hog is gone: the slots still in use are the survivors' swap entries (init's,
    # the reader's) and swap-cache pages
    swapents = sum(t.mm.rss[2] for t in k.tasks.values() if t.mm is not None)
    assert swapents <= k.swap.si.inuse_pages <= swapents + vm["nr_swapcached"]
    assert k.swap.si.inuse_pages < 100
    k.reclaim.validate()
    validate_swap(k.swap)
    validate_buddy(k.page_alloc)


def streamer_and_working_set(memcg_stats_flush: str, **kw):
    """256 MiB guest, 512 MiB swap: one process streams a 1 GiB file with read(), one
    keeps touching a 128 MiB working set. Returns (env, kernel, working-set process,
    wsize, zone, samples of the zone's free pages every 10 ms)."""
    env = simpy.Environment()
    k = boot(env, memory="256MiB", swap="512MiB", memcg_stats_flush=memcg_stats_flush, **kw)
    zone = k.page_alloc.zones[-1]  # DMA32: where user pages come from
    ws = k.spawn("ws")
    st = k.spawn("stream")
    page = b"\x5a" * PAGE
    k.fs.create("/data/stream", 1 << 30, content=lambda i: page)
    fd = st.open("/data/stream")
    buf = st.mmap(0, 64 * 1024, RW, ANON)
    wsize = 128 * MiB
    wa = ws.mmap(0, wsize, RW, ANON)
    ws.access_range(wa, wsize, True)
    samples = []

    def working_set():
        while True:
            cost = ws.access_range(wa, wsize, False)
            yield env.timeout(cost + 0.05)

    def streamer():
        while True:
            if not st.read(fd, buf, 64 * 1024):
                st.lseek(fd, 0)
            yield env.timeout(st.last_cost)

    def sampler():
        while True:
            yield env.timeout(0.01)
            samples.append((env.now, zone.nr_free))

    env.process(working_set())
    env.process(streamer())
    env.process(sampler())
    return env, k, ws, wsize, zone, samples


def assert_between_low_and_high(zone, steady) -> None:
    # between LOW and HIGH: below LOW only by what one read() allocates before kswapd
    # runs (32 pages of readahead) and one per-CPU list refill (rmqueue_bulk takes
    # `batch` pages from the buddy lists at once); above HIGH by at most kswapd's last
    # batch of 32 and one per-CPU list flush (freed pages reach the buddy lists `batch`
    # at a time)
    wmin, wlow, whigh = zone.watermark
    pcp_batch = zone.pcp[0][0].batch
    assert min(steady) >= wlow - 32 - pcp_batch, (min(steady), wlow)
    assert max(steady) <= whigh + 32 + pcp_batch, (max(steady), whigh)
    assert min(steady) < whigh and max(steady) > wlow  # it really oscillates


def test_streamer_and_working_set_kswapd_keeps_free_between_low_and_high():
    """kswapd alone keeps the Normal-allocation zone between LOW and HIGH (no direct
    reclaim), taking the use-once file pages; the working set is never scanned or
    swapped out. (6.1, the default: prepare_scan_count's mem_cgroup_flush_stats flushes
    the root memcg's statistics once more than num_online_cpus batches of 64 updates are
    pending, so kswapd sees the streamed inactive file pages within ~200 updates and
    is in cache_trim_mode.)"""
    env, k, ws, wsize, zone, samples = streamer_and_working_set("6.1")
    vm = k.vmstat
    env.run(until=0.8)
    steady = [f for t, f in samples if t > 0.4]  # memory has been full since ~0.25 s
    assert vm["pgsteal_kswapd"] > 20000
    assert vm["allocstall_normal"] == 0 and vm["pgsteal_direct"] == 0
    assert_between_low_and_high(zone, steady)
    # the working set stayed resident: nothing swapped out, every page mapped
    assert vm["pswpout"] == 0
    assert ws.mm.rss[1] >= wsize // PAGE and ws.mm.rss[2] == 0
    assert vm["pgscan_anon"] == 0
    k.reclaim.validate()


def test_streamer_and_working_set_under_6_8_flush_rules_scans_anon_until_the_first_flush():
    """The same under 6.8+'s rules: prepare_scan_control's
    mem_cgroup_flush_stats_ratelimited does not flush while the periodic flusher is on
    time, so until its first flush at 2 s kswapd reads the boot's statistics, with no
    inactive file pages: not cache_trim_mode, it scans anon at swappiness's share. After
    the flush it keeps free memory between LOW and HIGH without scanning anon. (The
    clock starts as the kernel boots, boot_uptime 0: the flusher's first flush is 2 s
    in, its statistics empty until then.)"""
    env, k, ws, wsize, zone, samples = streamer_and_working_set("6.8", boot_uptime=0)
    vm = k.vmstat
    env.run(until=2.05)  # memory has been full since ~0.25 s; flushed at 2 s
    assert vm["pgscan_anon"] > 0  # the boot-time statistics: not cache_trim_mode
    assert k.memcg.flush_last_time == 500  # jiffies: flush_memcg_stats_dwork at 2 s
    scan_anon, swapped, steal = vm["pgscan_anon"], vm["pswpout"], vm["pgsteal_kswapd"]
    env.run(until=2.85)
    steady = [f for t, f in samples if t > 2.05]
    assert vm["pgsteal_kswapd"] - steal > 20000
    assert vm["allocstall_normal"] == 0 and vm["pgsteal_direct"] == 0
    assert_between_low_and_high(zone, steady)
    # the working set stays resident: nothing swapped out or scanned, every page mapped
    assert vm["pswpout"] == swapped
    # (the process's pages swapped out before the flush that it does not touch again
    # stay on swap)
    assert ws.mm.rss[1] >= wsize // PAGE and ws.mm.rss[2] <= swapped
    assert vm["pgscan_anon"] == scan_anon
    k.reclaim.validate()
