"""LRU lists, two-touch activation, aging, scan balance, writeback and the course's page
states. Lists are written head -> tail as page-cache indexes (or page names)."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.filemap import clear_page_dirty, filemap_get_page, set_page_dirty
from guestkernel.kernel import Kernel
from guestkernel.page import (
    Page,
    PG_active,
    PG_dirty,
    PG_highmem,
    PG_lru,
    PG_reclaim,
    PG_referenced,
    PG_unevictable,
    PG_writeback,
)
from guestkernel.page_alloc import validate_buddy
from guestkernel.swap import validate_swap
from guestkernel.vmscan import (
    DEF_PRIORITY,
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    LRU_UNEVICTABLE,
    ST_ACTIVE,
    ST_CLEAN,
    ST_DIRTY,
    ST_WRITEBACK,
    Lruvec,
    ScanControl,
    init_reclaim,
    page_state,
    start_reclaim_daemons,
)

RW = U.PROT_READ | U.PROT_WRITE
MiB = 1 << 20
ARCS = [f"pgstate_{i}" for i in range(1, 10)]


def boot(env=None, **kw):
    k = Kernel(**{"memory": "64MiB", **kw}, env=env)
    init_reclaim(k)
    if env is not None:
        start_reclaim_daemons(k)
    return k


def names(k, lru):
    """Page-cache indexes of the pages on a list, head to tail."""
    return [p.index for p in k.reclaim.lruvecs[0].lists[lru]]


def arcs(k):
    return [k.vmstat[a] for a in ARCS]


def cache_pages(k, n, path="/f"):
    inode = k.fs.create(path, n * 4096)
    pages = []
    for i in range(n):
        page, _, _ = filemap_get_page(k, inode, i, 1)
        pages.append(page)
    return inode, pages


def sc_for(k, priority=DEF_PRIORITY, kswapd=False):
    sc = ScanControl(32, G.GFP_KERNEL, kswapd, 1, True)
    sc.priority = priority
    return sc


# ------------------------------------------------------------------ placement, two-touch
def test_two_touch_activation_exact_lists():
    k = boot()
    r = k.reclaim
    _, (a, b, c) = cache_pages(k, 3)
    # page-cache pages start inactive (use-once): head is the newest
    assert names(k, LRU_INACTIVE_FILE) == [2, 1, 0]
    assert k.vmstat["pgstate_free_clean"] == 3  # free -> inactive clean, not arc 1
    r.mark_page_accessed(a)  # first touch: PG_referenced only
    assert a.flags & PG_referenced and not a.flags & PG_active
    assert names(k, LRU_INACTIVE_FILE) == [2, 1, 0]
    r.mark_page_accessed(a)  # second touch: activated, PG_referenced cleared
    assert names(k, LRU_ACTIVE_FILE) == [0]
    assert names(k, LRU_INACTIVE_FILE) == [2, 1]
    assert not a.flags & PG_referenced
    r.mark_page_accessed(c)
    r.mark_page_accessed(c)
    assert names(k, LRU_ACTIVE_FILE) == [2, 0]
    assert k.vmstat["pgactivate"] == 2
    assert k.vmstat["pgstate_7"] == 2  # inactive clean -> active, twice
    assert (k.vmstat["nr_active_file"], k.vmstat["nr_inactive_file"]) == (2, 1)
    r.validate()


@pytest.mark.parametrize("era", ["2.6", "6.x"])
def test_new_anon_pages_start_active_in_2_6_inactive_in_6_x(era):
    """2.6: lru_cache_add_active for a new anonymous page (the course's arc 1); since 5.9
    (b518154e59aa, "mm/vmscan: protect the workingset on anonymous LRU") lru_cache_add
    puts it on the inactive list: free -> inactive dirty (no copy in swap)."""
    k = boot(era=era)
    k.spawn("init")
    t = k.spawn("app")
    base = k.vmstat["pgstate_1"], k.vmstat["pgstate_free_dirty"]
    a = t.mmap(0, 4 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 4 * 4096, True)
    lru = LRU_ACTIVE_ANON if era == "2.6" else LRU_INACTIVE_ANON
    if era == "2.6":
        assert (k.vmstat["pgstate_1"], k.vmstat["pgstate_free_dirty"]) == (base[0] + 4, base[1])
    else:
        assert (k.vmstat["pgstate_1"], k.vmstat["pgstate_free_dirty"]) == (base[0], base[1] + 4)
    lst = k.reclaim.lruvecs[0].lists[lru]
    assert [p.index for p in lst][:4] == [(a >> 12) + i for i in (3, 2, 1, 0)]
    k.reclaim.validate()


def test_active_aging_moves_tail_pages_to_inactive_head():
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    _, pages = cache_pages(k, 5)
    for p in pages:
        r.mark_page_accessed(p)
        r.mark_page_accessed(p)
    assert names(k, LRU_ACTIVE_FILE) == [4, 3, 2, 1, 0]
    set_page_dirty(k, pages[1])
    r.shrink_active_list(2, lv, sc_for(k), LRU_ACTIVE_FILE)
    # the two oldest (0, then 1) leave the tail; each goes to the inactive head
    assert names(k, LRU_ACTIVE_FILE) == [4, 3, 2]
    assert names(k, LRU_INACTIVE_FILE) == [1, 0]
    assert k.vmstat["pgdeactivate"] == 2 and k.vmstat["pgrefill"] == 2
    assert (k.vmstat["pgstate_8"], k.vmstat["pgstate_2"]) == (1, 1)
    r.validate()


def test_inactive_is_low_ratio_int_sqrt_10_gb():
    lv = Lruvec(node=None)
    inactive, active = lv.lists[LRU_INACTIVE_FILE], lv.lists[LRU_ACTIVE_FILE]
    # under 1 GiB: ratio 1
    inactive.nr, active.nr = 1000, 1000
    assert not k_low(lv)
    active.nr = 1001
    assert k_low(lv)
    # 1 GiB (262144 pages) of file pages: ratio int_sqrt(10) = 3
    inactive.nr, active.nr = 65536, 196608
    assert not k_low(lv)  # 65536 * 3 = 196608, not < 196608
    inactive.nr, active.nr = 65535, 196609
    assert k_low(lv)
    # 10 GiB (2621440 pages): ratio int_sqrt(100) = 10
    inactive.nr, active.nr = 238313, 2383130
    assert not k_low(lv)
    active.nr += 1
    assert k_low(lv)
    # just under 10 GiB: 9 GB, ratio int_sqrt(90) = 9
    inactive.nr, active.nr = 262143, 2359287
    assert not k_low(lv)  # 262143 * 9 = 2359287


def k_low(lv):
    from guestkernel.vmscan import Reclaim

    return Reclaim.inactive_is_low(lv, LRU_INACTIVE_FILE)


# ------------------------------------------------------------------ scan balance
def test_scan_fractions_section_8():
    """6.1 get_scan_count: total_cost = a + f; anon_cost = total + a; file_cost = total + f;
    total_cost = anon_cost + file_cost; ap = swappiness * (total_cost + 1) / (anon_cost + 1),
    fp = (200 - swappiness) * (total_cost + 1) / (file_cost + 1)."""
    k = boot(swap="16MiB", swappiness=60)
    r = k.reclaim
    lv = Lruvec(node=None)
    lv.anon_cost, lv.file_cost = 10, 30
    # total 40; anon_cost 50, file_cost 70, total_cost 120;
    # ap = 60 * 121 // 51 = 142; fp = 140 * 121 // 71 = 238
    assert r.scan_fractions(lv) == (142, 238)
    lv.anon_cost = lv.file_cost = 0
    assert r.scan_fractions(lv) == (60, 140)
    k.config.swappiness = 200
    assert r.scan_fractions(lv)[1] == 0


def test_get_scan_count_fract_equal_file_only():
    k = boot(swap="16MiB", swappiness=60)
    r = k.reclaim
    lv = Lruvec(node=None)
    lv.anon_cost, lv.file_cost = 10, 30
    for lru, n in ((LRU_INACTIVE_ANON, 4000), (LRU_ACTIVE_ANON, 4000),
                   (LRU_INACTIVE_FILE, 4000), (LRU_ACTIVE_FILE, 8000)):
        lv.lists[lru].nr = n
    sc = sc_for(k, priority=2)
    sc.anon_cost, sc.file_cost = 10, 30  # prepare_scan_count's snapshot of the lruvec's
    # 4000 >> 2 = 1000; SCAN_FRACT divides rounding down (div64_u64: the root memory
    # cgroup is online): anon 1000 * 142 // 380 = 373; file 1000 * 238 // 380 = 626;
    # active file 2000 * 238 // 380 = 1252
    nr = r.get_scan_count(lv, sc)
    assert nr[:4] == [373, 373, 626, 1252]
    sc.priority = 0  # at priority 0 both types equally, the whole lists
    assert r.get_scan_count(lv, sc)[:4] == [4000, 4000, 4000, 8000]
    sc.priority = 2
    sc.cache_trim_mode = True  # plenty of inactive file pages: leave anon alone
    assert r.get_scan_count(lv, sc)[:4] == [0, 0, 1000, 2000]
    sc.cache_trim_mode = False
    sc.file_is_tiny = True
    assert r.get_scan_count(lv, sc)[:4] == [1000, 1000, 0, 0]
    k2 = boot(swappiness=60)  # no swap: file only
    assert k2.reclaim.get_scan_count(lv, sc_for(k2, 2))[:4] == [0, 0, 1000, 2000]


# ------------------------------------------------------------------ inactive scan
def test_second_chance_for_mapped_pages_then_activation():
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    k.spawn("init")
    t = k.spawn("reader")
    # start from an empty inactive file list (the binaries' pages are paged out)
    r.reclaim_pages(list(lv.lists[LRU_INACTIVE_FILE]))
    assert lv.lists[LRU_INACTIVE_FILE].nr == 0
    base9 = k.vmstat["pgstate_9"]
    inode = k.fs.create("/lib/x.so", 2 * 4096)
    fd = t.open("/lib/x.so")
    # a one-page mapping: the retried fault's fault-around stops at the VMA's end
    a = t.mmap(0, 4096, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.access(a, False)  # maps page 0 (its PTE accessed); page 1 only read ahead
    p0, p1 = inode.mapping.pages[0], inode.mapping.pages[1]
    assert (p0.page_mapcount(), p1.page_mapcount()) == (1, 0)
    assert names(k, LRU_INACTIVE_FILE) == [1, 0]
    sc = sc_for(k)
    # scan 2 from the tail: page 0 referenced once by its PTE -> PG_referenced and kept
    # (second chance, back to the head); page 1, never used -> reclaimed at once
    assert r.shrink_inactive_list(2, lv, sc, LRU_INACTIVE_FILE) == 1
    assert p0.flags & PG_referenced
    assert names(k, LRU_INACTIVE_FILE) == [0]
    assert 1 not in inode.mapping.pages and p1._count == 0
    assert k.vmstat["pgstate_9"] == base9 + 1 and k.vmstat["pgsteal_direct"] == 1
    # touched again: accessed PTE + PG_referenced -> activate
    t.access(a, False)
    assert r.shrink_inactive_list(1, lv, sc, LRU_INACTIVE_FILE) == 0
    assert names(k, LRU_ACTIVE_FILE) == [0] and names(k, LRU_INACTIVE_FILE) == []
    assert k.vmstat["pgstate_7"] == 1  # inactive clean -> active
    # aged back to inactive (arc 8; aging clears the accessed bit), then not touched:
    # no young PTE -> reclaimed, unmapped from the reader
    r.shrink_active_list(1, lv, sc, LRU_ACTIVE_FILE)
    assert k.vmstat["pgstate_8"] == 1 and names(k, LRU_INACTIVE_FILE) == [0]
    assert r.shrink_inactive_list(1, lv, sc, LRU_INACTIVE_FILE) == 1
    assert t.mm.rss[0] == 0 and inode.mapping.nrpages == 0
    t.access(a, False)  # refaults from the file
    assert t.peek(a, 11) == b"/lib/x.so:0"
    r.validate()
    validate_buddy(k.page_alloc)


def test_dirty_file_page_written_to_its_file_before_it_is_freed():
    """2.6.24 shrink_page_list: reclaim writes a dirty file page itself (pageout, here
    synchronously) and frees it once clean."""
    k = boot(era="2.6")
    r = k.reclaim
    k.spawn("init")
    t = k.spawn("writer")
    fd = t.open("/data/out", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access(buf, True, b"hello")
    t.write(fd, buf, 4096)
    inode = k.fs.lookup("/data/out")
    page = inode.mapping.pages[0]
    assert page_state(page) == ST_DIRTY and k.vmstat["nr_dirty"] == 1
    before = arcs(k)
    assert r.reclaim_pages([page]) == 1
    assert inode.disk[0][:5] == b"hello"
    assert 0 not in inode.mapping.pages
    # inactive dirty -> being written (4) -> inactive clean (6) -> free (9)
    assert [x - y for x, y in zip(arcs(k), before)] == [0, 0, 0, 1, 0, 1, 0, 0, 1]
    assert k.vmstat["nr_dirty"] == 0 and k.vmstat["nr_writeback"] == 0
    assert k.stall > 0  # the synchronous write's time
    # read back from the file
    assert t.lseek(fd, 0) == 0
    assert t.read(fd, buf, 4096) == 4096
    assert t.peek(buf, 5) == b"hello"


def test_6x_reclaim_leaves_a_dirty_file_page_to_the_flusher():
    """6.1 shrink_folio_list: a dirty file folio is written by reclaim only from kswapd,
    when it is already PG_reclaim and the node is PGDAT_DIRTY; anyone else (here
    MADV_PAGEOUT's reclaim_pages) marks it PG_reclaim, counts nr_vmscan_immediate_reclaim
    and activates it. The flusher's write ends with folio_rotate_reclaimable: clean and
    PG_reclaim, it is deactivated to the inactive tail (pgrotated), and the next reclaim
    frees it without I/O."""
    k = boot()
    r = k.reclaim
    k.spawn("init")
    t = k.spawn("writer")
    fd = t.open("/data/out", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access(buf, True, b"hello")
    t.write(fd, buf, 4096)
    inode = k.fs.lookup("/data/out")
    page = inode.mapping.pages[0]
    vm = k.vmstat
    written0 = vm["pgwriteback_file"]
    assert r.reclaim_pages([page]) == 0
    assert page.flags & PG_dirty and page.flags & PG_active and page.flags & PG_reclaim
    assert (vm["nr_vmscan_immediate_reclaim"], vm["nr_vmscan_write"]) == (1, 0)
    assert vm["pgwriteback_file"] == written0 and 0 not in inode.disk
    assert names(k, LRU_ACTIVE_FILE) == [0]
    rotated = vm["pgrotated"]
    assert r.writeback_dirty(force=True) == 1  # the flusher (no clock: at once)
    assert inode.disk[0][:5] == b"hello"
    assert not page.flags & (PG_dirty | PG_active | PG_reclaim | PG_writeback)
    assert names(k, LRU_INACTIVE_FILE)[-1] == 0 and vm["pgrotated"] == rotated + 1
    assert r.reclaim_pages([page]) == 1
    assert 0 not in inode.mapping.pages and vm["nr_vmscan_write"] == 0
    r.validate()


def test_inactive_dirty_to_active_arc_3():
    k = boot()
    r = k.reclaim
    _, (p,) = cache_pages(k, 1)
    set_page_dirty(k, p)
    r.mark_page_accessed(p)
    r.mark_page_accessed(p)
    assert k.vmstat["pgstate_3"] == 1 and page_state(p) == ST_ACTIVE


def test_mlocked_pages_culled_to_unevictable_and_never_reclaimed():
    k = boot(swap="32MiB")
    r = k.reclaim
    lv = r.lruvecs[0]
    k.spawn("init")
    t = k.spawn("locker")
    a = t.mmap(0, 8 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.mlock(a, 4 * 4096)  # populated already locked: straight to the unevictable list
    assert lv.lists[LRU_UNEVICTABLE].nr == 4
    t.access_range(a + 4 * 4096, 4 * 4096, True)
    t.mlock(a + 4 * 4096, 4 * 4096)  # present pages mlocked in place: where they were
    assert lv.lists[LRU_UNEVICTABLE].nr == 4
    vpns = range((a >> 12) + 4, (a >> 12) + 8)
    late = [k.pfn_to_page(t.mm.pgtable.ptes[v] >> 12) for v in vpns]
    assert all(not p.flags & (PG_active | PG_unevictable) for p in late)  # 6.x: inactive
    assert r.reclaim_pages(late) == 0  # reclaim finds them mlocked: culled
    assert lv.lists[LRU_UNEVICTABLE].nr == 8
    assert k.vmstat["unevictable_pgs_culled"] == 4
    assert k.vmstat["nr_unevictable"] == 8
    r.reclaim_pages(list(lv.lists[LRU_ACTIVE_ANON]) + list(lv.lists[LRU_INACTIVE_ANON]))
    ptes = t.mm.pgtable.ptes
    assert all(ptes[v] & 1 for v in range(a >> 12, (a >> 12) + 8))  # all still present
    t.munlock(a, 8 * 4096)
    assert r.rescue_unevictable(lv) == 8
    assert lv.lists[LRU_UNEVICTABLE].nr == 0 and k.vmstat["unevictable_pgs_rescued"] == 8
    r.validate()


def test_shmem_and_no_swap_pages_go_back_to_active():
    k = boot()  # no swap
    r = k.reclaim
    k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 4 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 4 * 4096, True)
    lv = r.lruvecs[0]
    pages = list(lv.lists[LRU_ACTIVE_ANON])[:4]
    assert r.reclaim_pages(pages) == 0
    assert all(p.flags & PG_active for p in pages)
    r.validate()


# ------------------------------------------------------------------ writeback in time
def test_writeback_in_simulated_time_arcs_4_5_6():
    env = simpy.Environment()
    k = boot(env=env, swap_latency="1ms", swap_bandwidth="4MiB")
    r = k.reclaim
    _, pages = cache_pages(k, 3)
    for p in pages:
        set_page_dirty(k, p)
    # the flusher's pass, forced (sync(2)): one request of 3 pages to the file's disk
    assert r.writeback_dirty(force=True) == 3
    assert all(p.flags & PG_writeback for p in pages)
    assert k.vmstat["nr_writeback"] == 3 and k.vmstat["pgstate_4"] == 3
    done = k.fs.latency + 3 * 4096 / k.fs.bandwidth
    assert r.inflight[0].done_at == pytest.approx(done)
    # page 0 is touched twice while being written: back to active (arc 5)
    r.mark_page_accessed(pages[0])
    r.mark_page_accessed(pages[0])
    assert k.vmstat["pgstate_5"] == 1 and pages[0].flags & PG_active
    env.run(until=done * 0.99)
    assert k.vmstat["nr_writeback"] == 3
    env.run(until=done * 1.01)
    assert k.vmstat["nr_writeback"] == 0
    # the two inactive pages are now inactive clean (arc 6); the active one stays active
    assert k.vmstat["pgstate_6"] == 2
    assert [page_state(p) for p in pages] == [ST_ACTIVE, ST_CLEAN, ST_CLEAN]
    r.validate()


def test_kswapd_writes_anon_pages_async_and_frees_them_after_completion():
    env = simpy.Environment()
    k = boot(env=env, swap="64MiB", era="2.6")  # new anon pages active (arc 1), then aged
    r = k.reclaim
    lv = r.lruvecs[0]
    k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 64 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 64 * 4096, True)
    # age everything, then clear the accessed bits by one aging pass
    r.shrink_active_list(64, lv, sc_for(k), LRU_ACTIVE_ANON)
    sc = ScanControl(64, G.GFP_KERNEL, True, 1, False)  # kswapd: asynchronous writes
    reclaimed = r.shrink_inactive_list(64, lv, sc, LRU_INACTIVE_ANON)
    assert reclaimed == 0 and k.vmstat["nr_writeback"] == 64
    states = [page_state(p) for p in lv.lists[LRU_INACTIVE_ANON]]
    assert states.count(ST_WRITEBACK) == 64
    env.run(until=1.0)
    assert k.vmstat["nr_writeback"] == 0 and k.vmstat["pgstate_6"] == 64
    assert k.vmstat["pgrotated"] == 64  # written for reclaim: rotated to the tail
    # the next scan frees them (clean swap-cache pages)
    assert r.shrink_inactive_list(64, lv, sc, LRU_INACTIVE_ANON) == 64
    # (the oldest anon pages: init's and the app's stacks, then the app's buffer)
    assert k.vmstat["pgstate_9"] == 64
    assert sum(task.mm.rss[2] for task in k.tasks.values()) == 64
    validate_swap(r.swap)
    r.validate()


def test_flusher_writes_expired_dirty_pages():
    env = simpy.Environment()
    k = boot(env=env, dirty_expire_centisecs=1000, dirty_writeback_centisecs=200)
    r = k.reclaim
    _, pages = cache_pages(k, 4)
    for p in pages:
        set_page_dirty(k, p)
    # passes at 2, 4, 6, ...: the inode is first seen dirty at t=2, expires at t=12
    env.run(until=11.9)
    assert k.vmstat["nr_dirty"] == 4
    env.run(until=12.5)
    assert k.vmstat["nr_dirty"] == 0 and k.vmstat["nr_writeback"] == 0
    assert r.flusher.pages_written == 4
    assert k.vmstat["pgstate_4"] == 4 and k.vmstat["pgstate_6"] == 4


def test_an_inode_cleaned_meanwhile_starts_a_new_age_when_dirtied_again():
    """An inode's age counts from the first pass that finds it dirty since it was last
    clean: a pass that finds no dirty page anywhere (nr_dirty 0) forgets every age."""
    env = simpy.Environment()
    k = boot(env=env, dirty_expire_centisecs=1000, dirty_writeback_centisecs=200)
    _, pages = cache_pages(k, 2)
    set_page_dirty(k, pages[0])
    env.run(until=2.5)  # first seen dirty at t=2
    assert len(k.reclaim.inode_dirtied) == 1
    clear_page_dirty(k, pages[0])  # cleaned (say, by fsync) before it expired
    env.run(until=4.5)  # the pass at t=4 finds nothing dirty
    assert k.vmstat["nr_dirty"] == 0 and k.reclaim.inode_dirtied == {}
    set_page_dirty(k, pages[1])
    env.run(until=13.9)  # seen dirty again at t=6: expires at t=16, not at t=12
    assert k.vmstat["nr_dirty"] == 1
    env.run(until=16.5)
    assert k.vmstat["nr_dirty"] == 0 and k.reclaim.flusher.pages_written == 1


def _dirty(k, pages, indices):
    """write() dirtying: the page dirty, then the inode's dirtied_when stamped."""
    for i in indices:
        set_page_dirty(k, pages[i])
        k.reclaim.balance_dirty_pages_ratelimited(pages[i])


def _written(batch):
    return [(p.mapping.host.path, p.index) for p in batch.pages]


def test_flusher_writes_inodes_oldest_dirtied_first_each_in_index_order():
    """fs/fs-writeback.c: queue_io moves the dirty inodes oldest dirtied_when first onto
    b_io, and writeback_sb_inodes writes each in turn; write_cache_pages writes an inode's
    pages tagged PAGECACHE_TAG_DIRTY in index order. /b is cached after /a (nearer the
    LRU head) but dirtied first. The pass runs inside a blk_plug (wb_writeback,
    generic_writepages): a page's bio joins the request that ends where it starts
    (blk_attempt_plug_merge, bio_attempt_back_merge; a file's blocks lie in index order),
    so the pass makes one request per run of consecutive pages."""
    env = simpy.Environment()
    k = boot(env=env)
    r = k.reclaim
    _, a = cache_pages(k, 4, "/a")
    _, b = cache_pages(k, 3, "/b")
    _dirty(k, b, [2, 0])
    env.run(until=1.0)
    _dirty(k, a, [3, 1, 0])
    _dirty(k, b, [1])
    assert r.writeback_dirty(force=True) == 6  # wakeup_flusher_threads: every dirty page
    assert [_written(batch) for batch in r.inflight] == [
        [("/b", 0), ("/b", 1), ("/b", 2)], [("/a", 0), ("/a", 1)], [("/a", 3)]]
    assert k.vmstat["nr_dirty"] == 0 and k.b_dirty == {}
    r.validate()


def test_background_writeback_stops_at_the_limit_and_resumes_where_it_stopped():
    """wb_writeback: expired inodes are written whole (for_kupdate), younger ones only
    while nr_dirty is over the background limit; write_cache_pages with range_cyclic
    goes on from mapping->writeback_index, where the last pass stopped, to the end and
    then wraps to the start of the file."""
    env = simpy.Environment()
    k = boot(env=env, dirty_expire_centisecs=100)
    r = k.reclaim
    _, a = cache_pages(k, 2, "/a")
    _, b = cache_pages(k, 6, "/b")
    _dirty(k, a, [1, 0])
    env.run(until=1.5)
    _dirty(k, b, [4, 1, 2, 5])
    # /a expired (dirty 1.5 s > 1 s): both pages; /b young: until 2 are left dirty
    assert r.writeback_dirty(limit=2) == 4
    assert [_written(b) for b in r.inflight] == [[("/a", 0), ("/a", 1)], [("/b", 1), ("/b", 2)]]
    assert b[4].flags & PG_dirty and b[5].flags & PG_dirty
    assert k.b_dirty == {b[0].mapping: None} and list(r.inode_dirtied) == [b[0].mapping.host]
    _dirty(k, b, [0])  # dirtied before where the last pass stopped
    sent = len(r.inflight)
    assert r.writeback_dirty(limit=0) == 3
    assert [_written(b) for b in r.inflight[sent:]] == [[("/b", 4), ("/b", 5)], [("/b", 0)]]
    assert k.b_dirty == {} and r.inode_dirtied == {}
    r.validate()


def test_flusher_background_threshold():
    env = simpy.Environment()
    k = boot(env=env, dirty_background_ratio=0, dirty_writeback_centisecs=100)
    _, pages = cache_pages(k, 2)
    for p in pages:
        set_page_dirty(k, p)
    env.run(until=1.5)  # above the background limit (0): written at the first pass
    assert k.vmstat["nr_dirty"] == 0 and k.reclaim.flusher.passes == 1


# ------------------------------------------------------------------ shrinkers, drop_caches
def test_drop_caches_frees_clean_unmapped_cache_only():
    k = boot()
    _, pages = cache_pages(k, 4)
    set_page_dirty(k, pages[2])
    free = k.page_alloc.nr_free_pages() + sum(z.pcp_count() for z in k.page_alloc.zones)
    k.procfs.write("/proc/sys/vm/drop_caches", "1")
    assert names(k, LRU_INACTIVE_FILE) == [2]
    assert k.vmstat["nr_file_pages"] == 1 and k.vmstat["drop_pagecache"] == 1
    assert k.page_alloc.nr_free_pages() + sum(z.pcp_count() for z in k.page_alloc.zones) == free + 3
    k.reclaim.validate()



def test_drop_caches_deactivates_what_it_cannot_drop_lru_deactivate_file_fn():
    """6.1 drop_pagecache_sb -> invalidate_mapping_pages(0, -1): each page
    mapping_evict_folio cannot drop goes to deactivate_file_folio, and
    lru_deactivate_file_fn (mm/swap.c) leaves a mapped page where it is, takes PG_active
    and PG_referenced from the others and puts a dirty one at the head of the inactive
    list with PG_reclaim (in index order: the last one ends at the head); PGDEACTIVATE
    counts those that were active, PGROTATED none (no clean page kept)."""
    k = boot()
    r = k.reclaim
    _, pages = cache_pages(k, 6)
    for i in (1, 2, 4, 5):
        r.activate_page(pages[i])
    pages[3].flags |= PG_referenced
    for i in (2, 3, 5):
        set_page_dirty(k, pages[i])
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("t")
    fd = t.open("/f")
    a = t.mmap(0, 4096, U.PROT_READ, U.MAP_SHARED, fd, 4 * 4096)  # page 4 alone
    t.access(a, False)
    assert pages[4]._mapcount == 0
    assert names(k, LRU_ACTIVE_FILE) == [5, 4, 2, 1]
    assert names(k, LRU_INACTIVE_FILE) == [3, 0]
    before = {c: k.vmstat[c] for c in ("pgdeactivate", "pgrotated")}
    k.procfs.write("/proc/sys/vm/drop_caches", "1")
    assert names(k, LRU_ACTIVE_FILE) == [4]  # mapped: left alone
    assert names(k, LRU_INACTIVE_FILE) == [5, 3, 2]  # 0 and 1 dropped
    assert [bool(pages[i].flags & PG_reclaim) for i in (2, 3, 4, 5)] == [True, True, False, True]
    assert not any(pages[i].flags & (PG_active | PG_referenced) for i in (2, 3, 5))
    assert {c: k.vmstat[c] - before[c] for c in before} == {"pgdeactivate": 2, "pgrotated": 0}
    r.validate()


def test_invalidate_mapping_pages_deactivates_kept_pages_lru_deactivate_file_fn():
    """6.1 invalidate_mapping_pagevec: find_lock_entries skips a page under writeback
    (nor dropped nor deactivated); a clean unmapped page someone holds (an extra
    reference: mapping_evict_folio fails) goes to the inactive tail, PGROTATED and, being
    active, PGDEACTIVATE (lru_deactivate_file_fn); a dirty one to the inactive head with
    PG_reclaim; clean unheld pages are dropped."""
    from guestkernel.filemap import invalidate_mapping_pages

    k = boot(simpy.Environment())  # (a clock: the write stays in flight)
    r = k.reclaim
    inode, pages = cache_pages(k, 5)
    for i in range(5):
        r.activate_page(pages[i])
    set_page_dirty(k, pages[1])
    set_page_dirty(k, pages[3])
    r.filemap_flush(inode.mapping, 3, 3)  # page 3 under writeback
    assert pages[3].flags & PG_writeback and not pages[1].flags & PG_writeback
    pages[2]._count += 1  # held (folio_get)
    assert names(k, LRU_ACTIVE_FILE) == [4, 3, 2, 1, 0]
    before = {c: k.vmstat[c] for c in ("pgdeactivate", "pgrotated")}
    assert invalidate_mapping_pages(k, inode, 0, 4) == 2  # pages 0 and 4
    assert names(k, LRU_ACTIVE_FILE) == [3]
    assert names(k, LRU_INACTIVE_FILE) == [1, 2]  # 1 at the head, 2 at the tail
    assert pages[1].flags & PG_reclaim and not pages[2].flags & PG_reclaim
    assert {c: k.vmstat[c] - before[c] for c in before} == {"pgdeactivate": 2, "pgrotated": 1}
    pages[2]._count -= 1
    r.validate()

def test_shrink_slab_runs_the_registered_shrinkers_at_the_pass_priority():
    """shrink_node -> shrink_slab: each registered shrinker's do_shrink_slab at the pass's
    priority (delta = (freeable >> priority) * 4 / seeks); the slab pages freed by the
    objects it frees count as reclaimed (reclaim_state->reclaimed_slab)."""
    from guestkernel.shrinker import Shrinker

    k = boot()
    r = k.reclaim
    k.shrinkers.shrinkers[:] = []  # this test's shrinker only
    cache = k.kmem_cache_create("reclaimable_test", 192, flags=0x00020000)  # SLAB_RECLAIM_ACCOUNT
    objs = [k.kmem_cache_alloc(cache) for _ in range(2000)]
    calls = []

    def scan(sc):
        calls.append(sc.nr_to_scan)
        n = min(sc.nr_to_scan, len(objs))
        for _ in range(n):
            k.kmem_cache_free(cache, objs.pop())
        return n

    k.shrinkers.register_shrinker(Shrinker("test", lambda sc: len(objs), scan))
    lv = r.lruvecs[0]
    scanned0 = k.vmstat["slabs_scanned"]
    assert r.shrink_slab(lv, sc_for(k, DEF_PRIORITY)) == 0 and calls == []  # 2000 >> 12 == 0
    sc = sc_for(k, 0)
    reclaimable = k.vmstat["nr_slab_reclaimable"]
    freed = r.shrink_slab(lv, sc)
    # delta = 2000 * 4 / 2 = 4000 = 2 * freeable: batches of 128 while total_scan >= 128
    assert calls == [128] * 31 and k.vmstat["slabs_scanned"] - scanned0 == 31 * 128
    assert objs == []
    assert freed > 0 and sc.nr_reclaimed == freed
    assert k.vmstat["nr_slab_reclaimable"] == reclaimable - freed


# ------------------------------------------------------------------ direct reclaim hook
def test_direct_reclaim_from_the_allocator_frees_page_cache():
    k = boot()
    inode = k.fs.create("/big", 80 * MiB)
    for i in range(80 * 256):  # far more cache than memory: reclaim must make room
        page, _, _ = filemap_get_page(k, inode, i, 32)
        assert page is not None
    assert k.vmstat["allocstall_normal"] + k.vmstat.get("allocstall_dma32", 0) > 0
    assert k.vmstat["pgsteal_direct"] > 0 and k.vmstat["oom_kill"] == 0
    k.reclaim.validate()
    validate_buddy(k.page_alloc)


def test_every_arc_is_exercised():
    """Arcs 1..9 each counted at least once across the runs above, in one guest (the
    2.6 era: new anonymous pages start active, arc 1)."""
    env = simpy.Environment()
    k = boot(env=env, swap="32MiB", era="2.6")
    r = k.reclaim
    lv = r.lruvecs[0]
    k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 16 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 16 * 4096, True)  # 1
    r.shrink_active_list(16, lv, sc_for(k), LRU_ACTIVE_ANON)  # 2 (anon: dirty)
    anon = list(lv.lists[LRU_INACTIVE_ANON])
    r.mark_page_accessed(anon[0])
    r.mark_page_accessed(anon[0])  # 3
    _, files = cache_pages(k, 3)
    r.mark_page_accessed(files[0])
    r.mark_page_accessed(files[0])  # 7
    r.shrink_active_list(1, lv, sc_for(k), LRU_ACTIVE_FILE)  # 8
    sc = ScanControl(32, G.GFP_KERNEL, True, 1, False)
    r.shrink_inactive_list(8, lv, sc, LRU_INACTIVE_ANON)  # 4, in flight
    wb = [p for p in lv.lists[LRU_INACTIVE_ANON] if p.flags & PG_writeback]
    assert wb
    r.activate_page(wb[0])  # 5
    env.run(until=1.0)  # 6
    r.reclaim_pages(list(lv.lists[LRU_INACTIVE_FILE]))  # 9
    assert all(k.vmstat[a] > 0 for a in ARCS), arcs(k)
    r.validate()
    validate_swap(r.swap)


# ------------------------------------------------------------------ invariants
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from("afmsrdk"), st.integers(0, 63)), max_size=40))
@example([("k", 0), ("a", 0), ("k", 0)])  # the task dies of SIGSEGV half-way
def test_lru_invariants_under_random_operations(ops):
    k = boot(memory="48MiB", swap="16MiB")
    r = k.reclaim
    lv = r.lruvecs[0]
    k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 64 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    inode, files = cache_pages(k, 8)
    for op, i in ops:
        if t.state != "running":
            break  # touched an unmapped page: SIGSEGV
        if op == "a":
            t.access(a + i * 4096, bool(i & 1))
        elif op == "f":
            p = inode.mapping.pages.get(i % 8)
            if p is not None:
                r.mark_page_accessed(p)
        elif op == "m":
            r.shrink_active_list(i % 8 + 1, lv, sc_for(k), LRU_ACTIVE_ANON if i & 1 else LRU_ACTIVE_FILE)
        elif op == "s":
            r.shrink_inactive_list(i % 16 + 1, lv, sc_for(k, i % 13),
                                   LRU_INACTIVE_ANON if i & 1 else LRU_INACTIVE_FILE)
        elif op == "r":
            r.reclaim_pages([p for p in lv.lists[LRU_INACTIVE_ANON]][: i % 4 + 1])
        elif op == "d":
            r.drop_caches(1)
        elif op == "k":
            t.munmap(a + i * 4096, 4096)
        r.validate()
    validate_swap(r.swap)
    validate_buddy(k.page_alloc)
    # every LRU page is a live user page
    for lst in lv.lists:
        for p in lst:
            assert p.flags & PG_lru and p._count > 0


def test_page_state_derivation():
    p = Page(1)
    p.flags = PG_lru
    assert page_state(p) == ST_CLEAN
    p.flags |= PG_dirty
    assert page_state(p) == ST_DIRTY
    p.flags = PG_lru | PG_writeback
    assert page_state(p) == ST_WRITEBACK
    p.flags |= PG_active
    assert page_state(p) == ST_ACTIVE


# ------------------------------------------------------------------ dirty limits
def _writer(k, npages):
    k.spawn("init")
    t = k.spawn("writer")
    fd = t.open("/data/log", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, npages * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, npages * 4096, True)
    return t, fd, buf


def test_writer_above_the_dirty_limit_writes_back_itself_without_env():
    k = boot(dirty_ratio=1, dirty_background_ratio=2)
    t, fd, buf = _writer(k, 256)
    bg, thresh = k.reclaim.dirty_thresholds()
    # 6.1 global_dirtyable_memory: free - min(free, totalreserve) + file LRU + 1;
    # domain_dirty_limits: ratio = dirty_ratio * PAGE_SIZE / 100 = 40, thresh = ratio *
    # avail / PAGE_SIZE; background >= limit: halved
    alloc = k.page_alloc
    free = alloc.nr_free_pages()
    avail = free - min(free, alloc.totalreserve_pages) + k.vmstat["nr_inactive_file"] \
        + k.vmstat["nr_active_file"] + 1
    assert thresh == 40 * avail // 4096 and bg == thresh // 2
    k.take_stall()
    t.write(fd, buf, 256 * 4096)
    vm = k.vmstat
    # writeback_set_ratelimit: ratelimit_pages = max(thresh / (1 CPU * 32), 16) = 16,
    # under the task's nr_dirtied_pause (32): the CPU's bdp_ratelimits forces a check
    # every 16 pages dirtied, 16 checks; those at 16, 32, ... up to bg are under it
    assert thresh // 32 < 16 and k.reclaim.ratelimit_pages == 16
    assert bg <= 32 * 2 and vm["balance_dirty_pages"] == 16 - bg // 16
    assert vm["pgwriteback_file"] > 0 and t.last_cost > 0
    assert vm["nr_dirty"] <= bg + 32
    assert k.fs.lookup("/data/log").disk  # the pages written reached the file


def test_flusher_woken_early_above_the_background_limit():
    env = simpy.Environment()
    k = boot(env=env, dirty_background_ratio=1, dirty_ratio=90,
             dirty_writeback_centisecs=500)
    t, fd, buf = _writer(k, 256)
    bg, _ = k.reclaim.dirty_thresholds()
    t.write(fd, buf, 256 * 4096)
    assert k.vmstat["nr_dirty"] == 256 > bg  # the writer is not throttled
    env.run(until=0.5)  # long before the 5 s period: the flusher ran on its kick
    assert k.reclaim.flusher.passes == 1
    assert k.vmstat["nr_dirty"] <= bg and k.vmstat["nr_writeback"] == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from("wrakstfu"), st.integers(0, 31)), max_size=40))
def test_async_writeback_invariants_under_random_operations(ops):
    """kswapd-style asynchronous writes with pages touched, unmapped, truncated and
    re-read while in flight; time advances between steps."""
    env = simpy.Environment()
    k = boot(env=env, memory="48MiB", swap="64KiB", swap_latency="2ms",
             swap_bandwidth="1MiB")
    r = k.reclaim
    lv = r.lruvecs[0]
    k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 32 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    fd = t.open("/data/f", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access(buf, True, b"x")
    model = {}
    for op, i in ops:
        if t.state != "running":
            break
        addr = a + i * 4096
        if op == "w":
            t.access(addr, True, bytes([i + 1]))
            model[i] = bytes([i + 1])
        elif op == "r":
            t.access(addr, False)
            assert t.peek(addr, 1) == model.get(i, b"\0")
        elif op == "a":
            r.shrink_active_list(i + 1, lv, sc_for(k), LRU_ACTIVE_ANON if i & 1 else LRU_ACTIVE_FILE)
        elif op == "k":
            sc = ScanControl(32, G.GFP_KERNEL, True, 1, False)
            r.shrink_inactive_list(i + 1, lv, sc, LRU_INACTIVE_ANON if i & 1 else LRU_INACTIVE_FILE)
        elif op == "s":
            t.lseek(fd, (i % 8) * 4096)
            t.write(fd, buf, 4096)
            r.writeback_dirty(force=True)
        elif op == "t":
            t.ftruncate(fd, (i % 8) * 4096)
        elif op == "f":
            env.run(until=env.now + (i + 1) * 1e-3)
        elif op == "u":
            t.munmap(addr, 4096)
            t.mmap(addr, 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
            model.pop(i, None)
        r.validate()
        validate_swap(r.swap)
    env.run(until=env.now + 1.0)
    assert k.vmstat["nr_writeback"] == 0 and not r.inflight
    if t.state == "running":
        for i in range(32):
            t.access(a + i * 4096, False)
            assert t.peek(a + i * 4096, 1) == model.get(i, b"\0")
    r.validate()
    validate_swap(r.swap)
    validate_buddy(k.page_alloc)


# ------------------------------------------------------------------ kswapd targets, eras
@pytest.mark.parametrize("era", ["6.x", "2.6"])
def test_kswapd_shortfall_by_era(era):
    k = boot(memory="256MiB", era=era)
    r = k.reclaim
    node = k.page_alloc.nodes[0]
    dma, dma32 = node.zones[0], node.zones[1]
    highest = 2  # GFP_HIGHUSER on x86_64: up to Normal (empty here)
    dma.nr_free, dma32.nr_free = 10, 100  # as if allocated down
    if era == "6.x":
        # only the highest eligible populated zone (DMA32), against HIGH + its reserve
        want = dma32.high_wmark() + dma32.lowmem_reserve[highest] - 100 + 1
    else:
        # every zone up to its own HIGH
        want = (dma.high_wmark() - 10 + 1) + (dma32.high_wmark() - 100 + 1)
    assert r._shortfall(node, highest) == want
    dma32.nr_free = dma32.high_wmark() + dma32.lowmem_reserve[highest] + 1
    assert r.kswapd_balanced(node, 0, highest) == (era == "6.x")


def test_i386_highmem_pages_swap_out_and_back():
    k = Kernel(memory="1100MiB", arch="i386", swap="64MiB")
    init_reclaim(k)
    k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 8 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(8):
        t.access(a + i * 4096, True, bytes([i + 7]) * 8)
    pages = [k.pfn_to_page(t.mm.pgtable.ptes[(a >> 12) + i] >> 12) for i in range(8)]
    assert all(p.flags & PG_highmem for p in pages)  # user pages come from HighMem
    assert k.reclaim.reclaim_pages(pages) == 8
    for i in range(8):
        t.access(a + i * 4096, False)
        assert t.peek(a + i * 4096, 8) == bytes([i + 7]) * 8
    validate_swap(k.swap)
    k.reclaim.validate()


# ------------------------------------------------------------------ daemons
def test_daemons_only_with_an_env_one_kswapd_per_node():
    k = boot(memory="256MiB", nodes=2, cpus=2)
    assert start_reclaim_daemons(k) == [] and k.reclaim.kswapds == {}
    env = simpy.Environment()
    k2 = boot(env=env, memory="256MiB", nodes=2, cpus=2)
    r = k2.reclaim
    assert sorted(r.kswapds) == [0, 1] and r.flusher is not None
    assert start_reclaim_daemons(k2) == []  # once only
    assert [d.node.nid for d in k2.daemons if type(d).__name__ == "Kswapd"] == [0, 1]
    # and one kcompactd per node (compaction.py)
    assert [d.node.nid for d in k2.daemons if type(d).__name__ == "Kcompactd"] == [0, 1]


def test_kswapd_wakes_below_low_reclaims_to_high_and_sleeps():
    env = simpy.Environment()
    # without watermark boosting: a page-cache fallback into a non-movable pageblock would
    # boost the watermarks and wake kswapd above LOW (test_watermark_boost.py)
    k = boot(env=env, watermark_boost_factor=0)
    r = k.reclaim
    zone = k.page_alloc.zones[-1]
    kswapd = r.kswapds[0]
    inode = k.fs.create("/big", 80 * MiB)
    i = 0
    # fill the page cache until the allocator drops below LOW and wakes kswapd
    while not kswapd.wakeups:
        filemap_get_page(k, inode, i, 1)
        i += 1
    assert zone.nr_free <= zone.low_wmark()
    env.run(until=0.1)
    assert kswapd.passes >= 1 and not kswapd.running
    assert zone.high_wmark() < zone.nr_free <= zone.high_wmark() + 2 * 32
    assert k.vmstat["pgsteal_kswapd"] > 0 and k.vmstat["pgsteal_direct"] == 0
    assert r.kswapd_balanced(zone.node, 0, 2)


def test_flusher_expiry_counts_from_the_write():
    env = simpy.Environment()
    k = boot(env=env, dirty_expire_centisecs=1000, dirty_writeback_centisecs=200)
    t, fd, buf = _writer(k, 4)

    def later():
        yield env.timeout(1.0)
        t.write(fd, buf, 4 * 4096)  # dirtied at t = 1

    env.process(later())
    env.run(until=10.5)  # passes at 2, 4, ..., 10: 9 s old at the pass at t = 10
    assert k.vmstat["nr_dirty"] == 4
    env.run(until=12.5)  # 11 s old at the pass at t = 12: written
    assert k.vmstat["nr_dirty"] == 0 and k.reclaim.flusher.pages_written == 4


def test_global_dirtyable_memory_leaves_out_highmem_file_pages_with_highmem_full():
    """6.1 highmem_dirtyable_memory (mm/page-writeback.c): for each populated highmem
    zone, NR_FREE_PAGES less min(that, high_wmark_pages) plus the zone's inactive and
    active file pages, summed, at most the total; global_dirtyable_memory subtracts it
    (vm_highmem_is_dirtyable 0). The zone's file pages count even when its free pages are
    at or below the high watermark (the case here)."""
    from guestkernel.page import PG_swapbacked

    k = boot(arch="i386", memory="1GiB")
    high = k.page_alloc.zones[-1]
    assert high.is_highmem and high.populated()
    k.spawn("init")
    t = k.spawn("reader")
    k.fs.create("/data/big", 2048 * 4096)
    fd = t.open("/data/big", U.O_RDONLY)
    buf = t.mmap(0, 2048 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.read(fd, buf, 2048 * 4096)
    held = []
    while high.nr_free > high.high_wmark():  # highmem taken down to its high watermark
        held.append(k.alloc_pages(G.GFP_HIGHUSER))
    alloc = k.page_alloc
    file_lru = [p for p in k.mem_map if p is not None and p.flags & PG_lru
                and not p.flags & (PG_swapbacked | PG_unevictable)]
    high_file = sum(1 for p in file_lru if p.flags & PG_highmem)
    assert high_file > 0 and high.nr_free <= high.high_wmark()
    free = alloc.nr_free_pages()
    x = free - min(free, alloc.totalreserve_pages) + len(file_lru)
    h = high.nr_free - min(high.nr_free, high.high_wmark()) + high_file
    assert h == high_file
    assert k.reclaim.global_dirtyable_memory() == x - min(h, x) + 1
