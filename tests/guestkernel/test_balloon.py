import simpy

from guestkernel.balloon import (
    GFP_BALLOON,
    VIRTIO_BALLOON_S_NAMES,
    BalloonDaemon,
    BalloonDriver,
    update_balloon_stats,
)
from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_NOMEMALLOC, __GFP_NORETRY, __GFP_NOWARN, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE
from guestkernel.kernel import Kernel
from guestkernel.page import PG_balloon
from guestkernel.physmem import BareMetal


class RecordingPhys(BareMetal):
    def __init__(self, n):
        super().__init__(n)
        self.released = []
        self.reused = []

    def release(self, pfn, kind=1):
        self.released.append(pfn)
        return super().release(pfn, kind)

    def reuse(self, pfn):
        self.reused.append(pfn)


def boot(memory="64MiB", env=None):
    cfg = KernelConfig(memory=memory)
    phys = RecordingPhys(cfg.nr_pages)
    return Kernel(cfg, phys=phys, env=env, name="g"), phys


def test_gfp_mask_is_balloon_page_alloc_s():
    # mm/balloon_compaction.c balloon_page_alloc(): balloon_mapping_gfp_mask() (GFP_HIGHUSER
    # without CONFIG_BALLOON_COMPACTION) | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN
    assert GFP_BALLOON == GFP_HIGHUSER | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN


def test_inflate_allocates_marks_and_releases_each_page_to_the_host():
    k, phys = boot()
    free0 = k.page_alloc.nr_free_pages()
    d = BalloonDriver(k)
    d.set_target(300)
    assert d.step(100) == 100  # at most max_pages per step
    assert d.step(1000) == 200 and d.step(1000) == 0
    assert d.actual == 300 and d.inflated == 300
    assert sorted(phys.released) == sorted(p.pfn for p in d.pages)
    assert len(set(phys.released)) == 300
    assert all(p.flags & PG_balloon and p._count == 1 for p in d.pages)
    assert k.vmstat["balloon_inflate"] == 300 and k.vmstat["nr_balloon_pages"] == 300
    assert k.page_alloc.nr_free_pages() <= free0 - 300


def test_deflate_gives_the_pages_back_to_the_allocator():
    k, phys = boot()
    d = BalloonDriver(k)
    d.set_target(200)
    d.step(1000)
    held = [p.pfn for p in d.pages][::-1]  # enqueue order (the list iterates from its head)
    d.set_target(50)
    assert d.step(1000) == -150
    assert d.actual == 50 and [p.pfn for p in d.pages][::-1] == held[:50]
    assert k.vmstat["balloon_deflate"] == 150 and k.vmstat["nr_balloon_pages"] == 50
    freed = k.pfn_to_page(held[-1])
    assert not freed.flags & PG_balloon and freed._count == 0
    # leak_balloon: balloon_page_dequeue takes the list head (the most recently enqueued
    # first) and tell_host(deflate_vq) names each page before release_pages_balloon
    assert phys.reused == held[50:][::-1]


def test_target_is_clamped_to_guest_memory():
    k, _ = boot()
    d = BalloonDriver(k)
    d.set_target(10**9)
    assert d.target == k.nr_pages
    d.set_target(-5)
    assert d.target == 0


def test_inflation_stops_at_a_failed_allocation_without_oom_kill():
    k, _ = boot()
    d = BalloonDriver(k)
    d.set_target(k.nr_pages)
    got = d.step(k.nr_pages)
    assert 0 < got < k.nr_pages and d.alloc_failures == 1
    assert k.vmstat.get("oom_kill", 0) == 0 and k.panicked is None


def test_deflate_on_oom_gives_back_256_pages_per_notification():
    k, _ = boot()
    calls = []
    k.page_alloc.oom_hook = lambda gfp, order, highest: calls.append(1) or False
    d = BalloonDriver(k, deflate_on_oom=True)
    d.set_target(600)
    d.step(600)
    hook = k.page_alloc.oom_hook
    assert hook(0, 0, 0) is True and d.actual == 344 and d.oom_deflated == 256
    assert d.target == 344  # the host does not inflate them straight back
    assert hook(0, 0, 0) is True and hook(0, 0, 0) is True and d.actual == 0
    assert hook(0, 0, 0) is False and calls == [1]  # empty balloon: the old hook decides


def test_daemon_is_rate_limited():
    env = simpy.Environment()
    k, _ = boot(env=env)
    d = BalloonDriver(k, rate=1000)
    BalloonDaemon(env, d, interval=0.01)
    d.set_target(2000)
    env.run(until=0.505)
    assert d.actual == 510  # 10 pages per 10 ms, from t=0 to t=0.50 inclusive
    d.set_target(0)
    env.run(until=1.005)
    assert d.actual == 10


def test_inflation_takes_page_cache_before_swapping():
    from guestkernel import uapi as U
    from guestkernel.filemap import filemap_get_page
    from guestkernel.vmscan import init_reclaim

    k = Kernel(KernelConfig(memory="64MiB", swap="64MiB"), name="g")
    init_reclaim(k)  # (idempotent: a no-op once Kernel wires reclaim at boot)
    k.spawn("init")
    t = k.spawn("app")
    anon = 4 << 20
    a = t.mmap(0, anon, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, anon, True)
    inode = k.fs.create("/data", 4096 * 4096)
    for i in range(4096):  # 16 MiB of clean page cache
        filemap_get_page(k, inode, i, 1)
    file0 = k.vmstat["nr_file_pages"]
    assert file0 >= 4096 and k.vmstat["pswpout"] == 0
    d = BalloonDriver(k)
    # more than is free: the rest must come from reclaim, and the cache goes first
    d.set_target(k.page_alloc.nr_free_pages() + 2048)
    while d.step(4096) > 0:
        pass
    assert d.actual == d.target
    assert k.vmstat["nr_file_pages"] <= file0 - 2048
    assert k.vmstat["pswpout"] == 0
    # once the cache is (nearly) gone, inflating further swaps anonymous memory out
    d.set_target(d.actual + k.vmstat["nr_file_pages"] + 512)
    while d.step(4096) > 0:
        pass
    assert k.vmstat["pswpout"] > 0


def test_inflation_takes_recently_freed_pages_first():
    """balloon_page_alloc -> rmqueue_pcplist: the hot per-CPU list of the balloon's
    migratetype (MOVABLE in 6.x: GFP_HIGHUSER_MOVABLE under CONFIG_BALLOON_COMPACTION) is
    taken first, last freed first; those are pages user space just freed, which a host
    backs (ballooning them gives it memory back)."""
    from guestkernel.gfp import __GFP_ZERO
    from guestkernel.page_alloc import MIGRATE_MOVABLE

    k, _ = boot()
    pages = [k.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_ZERO) for _ in range(200)]
    used = {p.pfn for p in pages}
    for p in pages:  # freed: on the per-CPU hot list (and, past pcp->high, the buddy lists)
        k.free_pages(p)
    zone = k.page_alloc.zone_of(pages[0].pfn)
    hot = [p.pfn for p in reversed(zone.pcp[0][0].lists[MIGRATE_MOVABLE])]  # from the head
    assert hot and set(hot) <= used
    d = BalloonDriver(k)
    d.set_target(200)
    d.step(200)
    taken = [p.pfn for p in d.pages][::-1]  # in allocation order
    assert taken[: len(hot)] == hot
    assert hot == [p.pfn for p in pages[::-1][: len(hot)]]  # the last freed first


def meminfo(k):
    out = {}
    for line in k.procfs.read("/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        out[key] = int(rest.split()[0])
    return out


def test_inflation_without_deflate_on_oom_shrinks_managed_memory():
    """fill_balloon: without VIRTIO_BALLOON_F_DEFLATE_ON_OOM, adjust_managed_page_count(page,
    -1) per page: totalram_pages falls, so MemTotal, CommitLimit (totalram * ratio / 100 +
    swap) and the OOM killer's totalpages (totalram + swap) fall with it; leak_balloon's
    release_pages_balloon adds them back."""
    k, _ = boot()
    total0 = k.page_alloc.totalram_pages()
    mem0 = meminfo(k)
    oom0 = k.oom.totalpages()
    d = BalloonDriver(k)
    d.set_target(1000)
    assert d.step(1000) == 1000
    assert k.page_alloc.totalram_pages() == total0 - 1000
    mem = meminfo(k)
    assert mem["MemTotal"] == mem0["MemTotal"] - 4000  # kB
    # CommitLimit = totalram * overcommit_ratio (50) / 100 + swap (none here)
    assert mem["CommitLimit"] == (total0 - 1000) * 50 // 100 * 4
    assert k.oom.totalpages() == oom0 - 1000
    d.set_target(400)
    d.step(1000)
    assert k.page_alloc.totalram_pages() == total0 - 400
    assert meminfo(k)["MemTotal"] == mem0["MemTotal"] - 1600


def test_inflation_with_deflate_on_oom_leaves_managed_memory_alone():
    """With DEFLATE_ON_OOM the balloon's pages count as used, not removed: MemTotal stays."""
    k, _ = boot()
    total0 = k.page_alloc.totalram_pages()
    mem0 = meminfo(k)
    d = BalloonDriver(k, deflate_on_oom=True)
    d.set_target(1000)
    d.step(1000)
    assert k.page_alloc.totalram_pages() == total0
    assert meminfo(k)["MemTotal"] == mem0["MemTotal"]
    assert k.vmstat["nr_balloon_pages"] == 1000  # counted as used, not removed


def test_out_of_puff_sleeps_200ms_after_a_failed_allocation():
    """fill_balloon: a failed balloon_page_alloc() prints "Out of puff!" and msleep(200)s
    before the work retries, instead of retrying every request period."""
    env = simpy.Environment()
    k, _ = boot(env=env)
    d = BalloonDriver(k, rate=10**7)
    BalloonDaemon(env, d, interval=0.01)
    d.set_target(k.nr_pages)  # more than the guest can ever give
    env.run(until=0.99)
    # attempts at t = 0, 0.2, 0.4, 0.6, 0.8: one failure each
    assert d.alloc_failures == 5
    held = d.actual
    assert 0 < held < k.nr_pages


def test_stats_queue_has_the_16_stats_of_linux_6_12_in_the_driver_s_order():
    """update_balloon_stats (6.12): swap in/out (bytes), major/minor faults, oom kills,
    allocation stalls summed over the zones, kswapd/direct scans and steals (bytes), the
    hugetlb pair, then free, total, available memory and disk caches (bytes)."""
    k, _ = boot()
    vm = k.vmstat
    vm.update(pswpin=3, pswpout=5, pgmajfault=7, pgfault=11, oom_kill=2,
              allocstall_dma32=4, allocstall_normal=6, pgscan_kswapd=100, pgscan_direct=30,
              pgsteal_kswapd=90, pgsteal_direct=20)
    stats = update_balloon_stats(k)
    assert [tag for tag, _ in stats] == [0, 1, 2, 3, 10, 11, 12, 13, 14, 15, 8, 9, 4, 5, 6, 7]
    named = {VIRTIO_BALLOON_S_NAMES[tag]: v for tag, v in stats}
    assert len(VIRTIO_BALLOON_S_NAMES) == 16 and len(named) == 16
    assert named["swap-in"] == 3 * 4096 and named["swap-out"] == 5 * 4096
    assert named["major-faults"] == 7 and named["minor-faults"] == 11
    assert named["oom-kills"] == 2 and named["alloc-stalls"] == 10
    assert named["async-scans"] == 100 * 4096 and named["direct-scans"] == 30 * 4096
    assert named["async-reclaims"] == 90 * 4096 and named["direct-reclaims"] == 20 * 4096
    assert named["hugetlb-allocations"] == named["hugetlb-failures"] == 0
    assert named["free-memory"] == k.page_alloc.nr_free_pages() * 4096
    assert named["total-memory"] == k.page_alloc.totalram_pages() * 4096
    assert named["available-memory"] == k.si_mem_available() * 4096
    assert named["disk-caches"] == vm["nr_file_pages"] * 4096


# ---------------------------------------------------------------- balloon compaction


def test_balloon_pages_are_movable_in_6x_and_unmovable_in_2_6():
    """balloon_page_alloc with CONFIG_BALLOON_COMPACTION (Debian, Ubuntu): balloon_mapping_
    gfp_mask() is GFP_HIGHUSER_MOVABLE, so balloon pages come from MOVABLE pageblocks;
    2.6.20 (before balloon compaction, 3.8) asks GFP_HIGHUSER."""
    from guestkernel.balloon import GFP_BALLOON_MOVABLE
    from guestkernel.page_alloc import MIGRATE_MOVABLE

    assert GFP_BALLOON_MOVABLE == GFP_HIGHUSER_MOVABLE | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN
    k, _ = boot()
    d = BalloonDriver(k)
    assert d.movable and d.gfp == GFP_BALLOON_MOVABLE
    d.set_target(300)
    d.step(300)
    a = k.page_alloc
    assert all(a.get_pageblock_migratetype(p.pfn) == MIGRATE_MOVABLE for p in d.pages)
    k26 = Kernel(KernelConfig(memory="64MiB", era="2.6"), phys=RecordingPhys(16384))
    d26 = BalloonDriver(k26)
    assert not d26.movable and d26.gfp == GFP_BALLOON


def test_a_failed_balloon_migration_puts_the_page_back():
    from guestkernel import migrate as M

    k, phys = boot()
    d = BalloonDriver(k)
    d.set_target(10)
    d.step(10)
    page = next(iter(d.pages))
    assert d.isolate(page) and d.actual == 10 and d.pages.nr == 9
    k.kernel_balloon = None
    # migrate_pages with no target frame: -ENOMEM, the page stays on the caller's list
    pages = [page]
    ok, failed, err, _ = M.migrate_pages(k, pages, lambda: None, lambda p: None, M.MIGRATE_SYNC)
    assert (ok, failed, err) == (0, 1, M.ENOMEM) and pages == [page]
    d.putback(page)
    assert d.pages.nr == 10 and d.pages.first() is page and d.isolated_pages == 0
