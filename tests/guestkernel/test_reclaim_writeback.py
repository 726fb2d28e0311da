"""Who writes during reclaim, and who waits: 6.1's shrink_folio_list / shrink_node rules
(mm/vmscan.c) against 2.6.24's shrink_page_list, and reclaim_throttle."""

from __future__ import annotations

import simpy

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.filemap import filemap_get_page, set_page_dirty
from guestkernel.kernel import Kernel
from guestkernel.page import PG_active, PG_dirty, PG_lru, PG_reclaim, PG_writeback
from guestkernel.vmscan import (
    DEF_PRIORITY,
    HZ,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    VMSCAN_THROTTLE_WRITEBACK,
    ScanControl,
    init_reclaim,
    page_lru,
)

RW = U.PROT_READ | U.PROT_WRITE
N = 8


def kernel(era="6.x", env=None, **kw):
    k = Kernel(KernelConfig(memory="64MiB", swap="64MiB", era=era, **kw), env=env)
    init_reclaim(k)
    return k


def dirty_file_pages(k, n=N):
    inode = k.fs.create("/d", n * 4096)
    pages = [filemap_get_page(k, inode, i)[0] for i in range(n)]
    for p in pages:
        set_page_dirty(k, p)
    return inode, pages


def test_6x_direct_reclaim_leaves_dirty_file_pages_to_the_flusher():
    """6.1 shrink_folio_list: not kswapd -> NR_VMSCAN_IMMEDIATE, folio_set_reclaim,
    activate_locked; shrink_inactive_list: nr_unqueued_dirty == nr_taken ->
    wakeup_flusher_threads (no flusher thread without daemons: nothing written)."""
    k = kernel(env=simpy.Environment())
    r = k.reclaim
    lv = r.lruvecs[0]
    _, pages = dirty_file_pages(k)
    sc = ScanControl(32, G.GFP_KERNEL, False, 1, False)
    assert r.shrink_inactive_list(N, lv, sc, LRU_INACTIVE_FILE) == 0
    assert all(p.flags & (PG_dirty | PG_active | PG_reclaim | PG_writeback)
               == PG_dirty | PG_active | PG_reclaim for p in pages)
    vm = k.vmstat
    assert (vm["nr_vmscan_immediate_reclaim"], vm["nr_vmscan_write"], vm["nr_writeback"]) == (N, 0, 0)
    assert (sc.nr_dirty, sc.nr_unqueued_dirty, sc.nr_taken, sc.nr_file_taken) == (N, N, N, N)
    assert lv.lists[LRU_ACTIVE_FILE].nr == N and lv.lists[LRU_INACTIVE_FILE].nr == 0
    r.validate()


def test_26_direct_reclaim_writes_dirty_file_pages_and_waits():
    """2.6.24 shrink_page_list: pageout() from any reclaimer; direct reclaim waits for
    the write (synchronous here) and frees the pages."""
    k = kernel(era="2.6", env=simpy.Environment())
    r = k.reclaim
    lv = r.lruvecs[0]
    inode, pages = dirty_file_pages(k)
    sc = ScanControl(32, G.GFP_KERNEL, False, 1, True)
    assert r.shrink_inactive_list(N, lv, sc, LRU_INACTIVE_FILE) == N
    assert not inode.mapping.pages and sorted(inode.disk) == list(range(N))
    assert k.vmstat["nr_vmscan_write"] == N and k.vmstat["nr_writeback"] == 0
    r.validate()


def test_kswapd_writes_dirty_file_pages_only_once_pgdat_dirty_and_marked():
    """6.1: kswapd's first pass over an all-dirty inactive file list marks the pages
    PG_reclaim and activates them; shrink_node then sets PGDAT_DIRTY
    (nr_unqueued_dirty == nr_file_taken). Met again (aged back to the inactive list),
    PG_reclaim and PGDAT_DIRTY: kswapd writes them (pageout, nr_vmscan_write), and
    does not wait: they stay under writeback, back on the inactive list."""
    k = kernel(env=simpy.Environment())
    r = k.reclaim
    lv = r.lruvecs[0]
    inode, pages = dirty_file_pages(k)
    sc = ScanControl(32, G.GFP_KERNEL, True, 1, False)
    sc.priority = 0  # (N >> DEF_PRIORITY would scan nothing)
    r.shrink_node(lv, sc)
    assert sc.nr_file_taken == N and sc.nr_unqueued_dirty == N
    assert lv.pgdat_dirty and not lv.pgdat_writeback
    assert all(p.flags & PG_active and p.flags & PG_reclaim for p in pages)
    assert k.vmstat["nr_vmscan_write"] == 0
    for p in pages:  # shrink_active_list's work: back to the inactive list
        r._move(p, False)
    sc = ScanControl(32, G.GFP_KERNEL, True, 1, False)
    assert r.shrink_inactive_list(N, lv, sc, LRU_INACTIVE_FILE) == 0
    assert k.vmstat["nr_vmscan_write"] == N and k.vmstat["nr_writeback"] == N
    assert all(p.flags & (PG_writeback | PG_reclaim | PG_lru | PG_active)
               == PG_writeback | PG_reclaim | PG_lru for p in pages)
    assert sorted(inode.disk) == list(range(N))
    # the writes end: folio_rotate_reclaimable puts each on the inactive tail, clean
    r.complete_io(float("inf"))
    assert [p.index for p in lv.lists[LRU_INACTIVE_FILE]][-N:] == list(range(N))
    assert not any(p.flags & (PG_reclaim | PG_writeback | PG_dirty) for p in pages)
    # kswapd balanced: clear_pgdat_congested
    r.clear_pgdat_congested(lv)
    assert not (lv.pgdat_dirty or lv.pgdat_writeback or lv.congested)
    r.validate()


def test_direct_reclaim_does_not_write_even_when_pgdat_dirty():
    k = kernel(env=simpy.Environment())
    r = k.reclaim
    lv = r.lruvecs[0]
    _, pages = dirty_file_pages(k)
    lv.pgdat_dirty = True
    for p in pages:
        p.flags |= PG_reclaim
    sc = ScanControl(32, G.GFP_KERNEL, False, 1, False)
    assert r.shrink_inactive_list(N, lv, sc, LRU_INACTIVE_FILE) == 0
    assert k.vmstat["nr_vmscan_write"] == 0 and k.vmstat["nr_vmscan_immediate_reclaim"] == N


def _anon_under_writeback(k):
    """N anonymous pages written to swap by kswapd, asynchronously: in flight."""
    r = k.reclaim
    lv = r.lruvecs[0]
    t = k.spawn("app")
    a = t.mmap(0, N * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, N * 4096, True)
    pages = [k.pfn_to_page(t.mm.pgtable.ptes[(a >> 12) + i] >> 12) for i in range(N)]
    for p in pages:
        r._isolate(p, page_lru(p))
        p.flags &= ~PG_active
    kswapd = ScanControl(N, G.GFP_KERNEL, True, 1, False)
    assert r.shrink_page_list(pages, kswapd, ignore_references=True) == 0
    assert k.vmstat["nr_writeback"] == N
    return lv, pages


def test_6x_direct_reclaim_under_pressure_does_not_wait_on_writeback():
    """6.1 shrink_folio_list, folio under writeback, global reclaim (case 2): mark it
    PG_reclaim, count nr_writeback, activate it; never folio_wait_writeback (2.6.24 waited
    at DEF_PRIORITY - 3: test_reclaim_regressions)."""
    k = kernel(env=simpy.Environment())
    r = k.reclaim
    lv, pages = _anon_under_writeback(k)
    assert lv.lists[LRU_INACTIVE_ANON].nr >= N
    for p in pages:
        r._isolate(p, page_lru(p))
    sc = ScanControl(32, G.GFP_KERNEL, False, 1, False)
    sc.priority = DEF_PRIORITY - 3
    assert r.shrink_page_list(pages, sc) == 0
    assert sc.nr_writeback == N and sc.cost == 0.0
    assert k.vmstat["nr_writeback"] == N and len(r.inflight) >= 1
    assert all(p.flags & (PG_writeback | PG_reclaim | PG_active) ==
               PG_writeback | PG_reclaim | PG_active for p in pages)
    r.validate()


def test_kswapd_immediate_pages_throttle_on_writeback():
    """6.1: kswapd meeting PG_reclaim pages under writeback on a PGDAT_WRITEBACK node
    counts them nr_immediate (activated) and shrink_node calls
    reclaim_throttle(VMSCAN_THROTTLE_WRITEBACK): asleep until more than SWAP_CLUSTER_MAX
    pages are written, or HZ/10. Here only N = 8 pages are in flight: the full HZ/10."""
    env = simpy.Environment()
    k = kernel(env=env)
    r = k.reclaim
    lv, pages = _anon_under_writeback(k)
    lv.pgdat_writeback = True
    for p in pages:
        r._isolate(p, page_lru(p))
    sc = ScanControl(32, G.GFP_KERNEL, True, 1, False)
    assert r.shrink_page_list(pages, sc) == 0
    assert sc.nr_immediate == N and sc.nr_writeback == 0
    assert all(p.flags & PG_active for p in pages)
    assert r.reclaim_throttle(lv, VMSCAN_THROTTLE_WRITEBACK, sc) == 1.0 / 10
    assert sc.sleep == 1.0 / 10 and k.vmstat["nr_writeback"] == N  # kswapd sleeps in time
    assert HZ == 250
    # the N writes end during the sleep: __acct_reclaim_writeback counts them in
    # NR_THROTTLED_WRITTEN (N <= SWAP_CLUSTER_MAX: no early wake-up); one throttle
    assert max(b.done_at for b in r.inflight) < env.now + 1.0 / 10
    assert k.vmstat["nr_throttled_written"] == N
    assert k.vmstat["vmscan_throttle_writeback"] == 1


def test_6x_try_to_free_pages_submits_without_waiting():
    """With a clock, 6.x direct reclaim's ScanControl writes asynchronously; 2.6's
    synchronously (it waits, the time in kernel.stall)."""
    for era, sync in (("6.x", False), ("2.6", True)):
        k = kernel(era=era, env=simpy.Environment())
        r = k.reclaim
        seen = []
        shrink_node = r.shrink_node
        r.shrink_node = lambda lv, sc, seen=seen, shrink_node=shrink_node: (seen.append(sc.sync_io),
                                                                            shrink_node(lv, sc))
        r.try_to_free_pages(G.GFP_KERNEL, 0, k.page_alloc.zonelist(G.GFP_KERNEL), 1)
        assert seen and set(seen) == {sync}


def test_6x_direct_reclaim_makes_progress_on_its_own_writes_without_oom():
    """A task writing anonymous memory beyond the guest's, in bursts with no kswapd:
    6.x direct reclaim submits its swap writes without waiting, and the writes the
    device ends while the reclaimer works on (its own time: scan cost, throttled sleeps)
    are done for it, so the allocator's retries make progress instead of ending in the
    OOM killer; some writes are still in flight after a burst."""
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="48MiB", swap="128MiB"), env=env)
    init_reclaim(k)
    t = k.spawn("hog")
    n = 72 * (1 << 20) // 4096
    a = t.mmap(0, n * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    in_flight = 0
    for i in range(0, n, 1024):
        for j in range(i, min(n, i + 1024)):
            t.access(a + j * 4096, True, b"x" * 8)
        in_flight = max(in_flight, k.vmstat["nr_writeback"])
        env.run(until=env.now + 0.001)
    assert t.state == "running" and k.vmstat["oom_kill"] == 0
    assert k.vmstat["pgsteal_direct"] > 0 and in_flight > 0
    k.reclaim.validate()
