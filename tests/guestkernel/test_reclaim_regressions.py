"""Reclaim regressions: small scenarios that once corrupted the LRU or the free lists."""

from __future__ import annotations

import simpy

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page import PG_active, PG_lru, PG_reclaim, PG_swapcache, PG_writeback
from guestkernel.page_alloc import validate_buddy
from guestkernel.swap import validate_swap
from guestkernel.vmscan import (
    DEF_PRIORITY,
    LRU_ACTIVE_ANON,
    LRU_INACTIVE_ANON,
    ScanControl,
    init_reclaim,
    page_lru,
)

RW = U.PROT_READ | U.PROT_WRITE
N = 8


def test_direct_reclaim_waiting_on_a_write_that_frees_the_page_leaves_it_free():
    """balloon-swap anchor crash ('NoneType' has no attribute 'lru_prev').

    kswapd writes N anonymous pages to swap asynchronously (swap cache + PG_writeback,
    back on the inactive list with PG_reclaim). Their process unmaps them while the
    write is in flight: swap_free leaves the swap-cache pages alone (under writeback),
    so each is held by the swap cache and the I/O only (_count 2, unmapped, no swap PTE).
    Direct reclaim under pressure (priority < DEF_PRIORITY - 2) isolates them and waits
    for the write; its end frees each page (the I/O and the cache held the last
    references). Reclaim must count it reclaimed and leave it alone: putting the freed
    page (on a per-CPU free list) back on the LRU linked it on two lists at once."""
    env = simpy.Environment()  # no daemons started: the writes stay in flight
    # the 2.6 era: new anonymous pages start active, so the inactive list holds only
    # the pages this test deactivates
    k = Kernel(KernelConfig(memory="64MiB", swap="64MiB", era="2.6"), env=env)
    r = init_reclaim(k)
    lv = r.lruvecs[0]
    t = k.spawn("app")
    before = set(map(id, lv.lists[LRU_ACTIVE_ANON]))
    a = t.mmap(0, N * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, N * 4096, True)
    pages = [p for p in lv.lists[LRU_ACTIVE_ANON] if id(p) not in before]
    assert len(pages) == N
    # kswapd's pass over exactly these pages, deactivated: asynchronous writes to swap
    for p in pages:
        r._isolate(p, page_lru(p))
        p.flags &= ~PG_active
    kswapd = ScanControl(N, G.GFP_KERNEL, True, 1, False)
    assert r.shrink_page_list(pages, kswapd, ignore_references=True) == 0
    assert all(p.flags & (PG_writeback | PG_reclaim | PG_swapcache | PG_lru)
               == PG_writeback | PG_reclaim | PG_swapcache | PG_lru for p in pages)
    assert lv.lists[LRU_INACTIVE_ANON].nr == N and k.vmstat["nr_writeback"] == N
    # the owner lets go while the writes are in flight
    t.munmap(a, N * 4096)
    assert [(p._count, p._mapcount) for p in pages] == [(2, -1)] * N
    free_before = k.page_alloc.nr_free_pages() + sum(
        pcp.count for z in k.page_alloc.zones for cpu in z.pcp for pcp in cpu)
    # direct reclaim at a priority that waits on writeback
    direct = ScanControl(32, G.GFP_KERNEL, False, 1, True)
    direct.priority = DEF_PRIORITY - 3
    assert r.shrink_inactive_list(N, lv, direct, LRU_INACTIVE_ANON) == N
    assert [(p._count, p.flags & PG_lru, p.lru_prev) for p in pages] == [(0, 0, None)] * N
    assert lv.lists[LRU_INACTIVE_ANON].nr == 0
    assert k.vmstat["nr_writeback"] == 0 and not r.inflight
    free_after = k.page_alloc.nr_free_pages() + sum(
        pcp.count for z in k.page_alloc.zones for cpu in z.pcp for pcp in cpu)
    assert free_after - free_before == N
    assert r.swap.free_swap_pages() == r.swap.total_swap_pages()
    r.validate()
    validate_swap(r.swap)
    validate_buddy(k.page_alloc)


def _swapped_out_page(k: Kernel):
    """A process with one written anonymous page, reclaimed to swap (page freed, PTE holds
    the swap entry)."""
    t = k.spawn("p")
    a = t.mmap(0, 4096, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access(a, True, b"x" * 4096)
    page = k.pfn_to_page(t.mm.pgtable.ptes[a >> 12] >> 12)
    assert k.reclaim.reclaim_pages([page]) == 1
    assert k.swap.si.inuse_pages == 1
    return t, a


def test_exclusive_write_swapin_frees_the_slot():
    # do_swap_page passes the write to the swap-in: a write fault on a page no one else
    # maps takes it out of the swap cache and frees its slot (linux-mm.md section 4)
    k = Kernel(KernelConfig(memory="64MiB", swap="16MiB"))
    t, a = _swapped_out_page(k)
    t.access(a, True, b"y" * 4096)
    assert k.swap.si.inuse_pages == 0
    page = k.pfn_to_page(t.mm.pgtable.ptes[a >> 12] >> 12)
    assert not page.flags & PG_swapcache
    validate_swap(k.swap)


def test_read_swapin_keeps_the_slot():
    k = Kernel(KernelConfig(memory="64MiB", swap="16MiB"))
    t, a = _swapped_out_page(k)
    t.access(a, False)
    assert k.swap.si.inuse_pages == 1  # clean swap-cache copy: the slot stays valid
    validate_swap(k.swap)


def test_oom_victim_faults_dip_into_the_reserves():
    k = Kernel(KernelConfig(memory="64MiB"))
    t = k.spawn("victim")
    a = t.mmap(0, 16 * 4096, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access(a, True)  # the page table exists: the next fault needs only its page
    rss = t.mm.rss[1]
    alloc = k.page_alloc
    alloc.wake_kswapd_hook = alloc.direct_reclaim_hook = alloc.oom_hook = None
    k.drain_all_pages()
    for zone in alloc.zones:  # every zone down to 60 % of MIN: below what GFP_USER may use
        while zone.nr_free > zone.min_wmark() * 6 // 10:
            alloc._rmqueue_smallest(zone, 0)._count = 1
    assert k.alloc_pages(G.GFP_HIGHUSER_MOVABLE) is None
    t.oom_victim = True  # the OOM killer chose it: it may use half of MIN to exit
    t.access(a + 4096, True)
    assert t.state == "running" and t.mm.rss[1] == rss + 1
