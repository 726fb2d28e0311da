"""Watermark boosting (Linux 6.1: mm/page_alloc.c boost_watermark, steal_suitable_fallback,
rmqueue's ZONE_BOOSTED_WATERMARK wakeup, zone_watermark_fast; mm/vmscan.c balance_pgdat's
boosted reclaim, wakeup_kswapd's pgdat_watermark_boosted).

Hand-built zones: the DMA zone of a 64 MiB guest (managed 3840 pages, pageblocks of 512),
emptied, with watermarks the test sets, as in test_page_alloc_migratetype.py.
"""

from __future__ import annotations

import pytest

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.filemap import filemap_get_page, set_page_dirty
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import (
    ALLOC_KSWAPD,
    MIGRATE_UNMOVABLE,
    validate_buddy,
)

from .test_page_alloc import empty_zone, free_lists, give_block, zone_named


@pytest.fixture
def dma():
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1))
    zone = zone_named(k, "DMA")
    empty_zone(k, zone)
    assert zone.managed_pages == 3840
    return k, zone


def set_marks(k, zone, marks):
    zone.watermark = list(marks)
    k.page_alloc._invalidate_fast_plans()


def test_boost_watermark_rule(dma):
    """boost_watermark: + pageblock_nr_pages per call, capped at
    max(pageblock_nr_pages, mult_frac(_watermark[HIGH], watermark_boost_factor, 10000))."""
    k, zone = dma
    a = k.page_alloc
    set_marks(k, zone, [100, 150, 250])
    assert a.watermark_boost_factor == 15000  # the 6.1 default
    # 250 * 15000 / 10000 = 375 < 512: the cap is a pageblock
    assert a.boost_watermark(zone) and zone.watermark_boost == 512
    assert zone.watermark == [612, 662, 762]  # wmark_pages(): _watermark + boost
    assert a.boost_watermark(zone) and zone.watermark_boost == 512
    # factor 30000 of HIGH 250 (unboosted) = 750: 512, then min(1024, 750)
    a.set_watermark_boost(zone, 0)
    a.set_watermark_boost_factor(30000)
    assert a.boost_watermark(zone) and zone.watermark_boost == 512
    assert a.boost_watermark(zone) and zone.watermark_boost == 750
    assert zone.watermark == [850, 900, 1000]
    # off: factor 0; early boot: HIGH 0 gives max_boost 0
    a.set_watermark_boost(zone, 0)
    a.set_watermark_boost_factor(0)
    assert not a.boost_watermark(zone) and zone.watermark_boost == 0
    a.set_watermark_boost_factor(15000)
    set_marks(k, zone, [0, 0, 0])
    assert not a.boost_watermark(zone)
    # a zone of fewer than four pageblocks (pageblock_nr_pages * 4 > managed) never boosts
    set_marks(k, zone, [100, 150, 250])
    zone.managed_pages = 2047
    assert not a.boost_watermark(zone)
    zone.managed_pages = 2048
    assert a.boost_watermark(zone)


def test_fallback_steal_boosts_and_wakes_kswapd_once(dma):
    """steal_suitable_fallback boosts the zone on a fallback below pageblock order and, with
    ALLOC_KSWAPD (__GFP_KSWAPD_RECLAIM), sets ZONE_BOOSTED_WATERMARK; rmqueue then wakes
    kswapd (wakeup_kswapd(zone, 0, 0, zone_idx)) although the zone is above its watermarks;
    pgdat_watermark_boosted keeps a balanced node from being skipped."""
    k, zone = dma
    a = k.page_alloc
    woken = []
    a.wake_kswapd_hook = lambda node, order, highest, gfp: woken.append((node.nid, order, highest, gfp))
    give_block(k, 1024, 9)  # a whole MOVABLE pageblock (2)
    give_block(k, 2048, 8)  # half of MOVABLE pageblock 4
    set_marks(k, zone, [10, 20, 30])
    # an unmovable order-0 request: the fallback takes the largest block (1024, order 9:
    # a whole pageblock, claimed without boosting)
    page = k.alloc_pages(G.GFP_KERNEL | G.GFP_DMA)
    assert a.pageblock_mt[2] == MIGRATE_UNMOVABLE and zone.watermark_boost == 0 and not woken
    k.free_pages(page)
    k.drain_all_pages()
    # take pageblock 2 out again so the next steal is below pageblock order
    for order in range(10, -1, -1):
        for pfn in free_lists(zone, MIGRATE_UNMOVABLE)[order]:
            a._del_page_from_free_list(zone, k.mem_map[pfn], order)
            k.mem_map[pfn]._count = 1
    page = k.alloc_pages(G.GFP_KERNEL | G.GFP_DMA)
    # 2048 (order 8) stolen: max_boost = max(512, 30 * 15000 // 10000) = 512
    assert page.pfn == 2048 and a.pageblock_mt[4] == MIGRATE_UNMOVABLE
    assert zone.watermark_boost == 512 and zone.watermark == [522, 532, 542]
    assert not zone.boosted_watermark
    assert woken == [(0, 0, 0, 0)]  # node 0, order 0, zone_idx(DMA) = 0, no gfp flags
    assert "boost    512" in k.procfs.read("/proc/zoneinfo").split("zone   DMA32")[0]
    # without __GFP_KSWAPD_RECLAIM the boost is made but kswapd is not woken for it
    k.free_pages(page)
    k.drain_all_pages()
    a.set_watermark_boost(zone, 0)
    for order in range(10, -1, -1):
        for pfn in free_lists(zone, MIGRATE_UNMOVABLE)[order]:
            a._del_page_from_free_list(zone, k.mem_map[pfn], order)
            k.mem_map[pfn]._count = 1
    give_block(k, 3072, 8)
    woken.clear()
    page = a.alloc_pages(G.GFP_DMA, 0)  # GFP_NOWAIT without KSWAPD_RECLAIM: no flags at all
    assert page.pfn == 3072 and zone.watermark_boost == 512 and woken == []
    validate_buddy(a)


def test_a_boosted_balanced_node_is_not_skipped_by_wakeup_kswapd(dma):
    k, zone = dma
    a = k.page_alloc
    woken = []
    a.wake_kswapd_hook = lambda node, order, highest, gfp: woken.append(order)
    node = zone.node
    a.wakeup_kswapd(node, 0, G.GFP_KERNEL, 2)
    assert a.node_balanced(node, 0, 2) and woken == []
    a.set_watermark_boost(zone_named(k, "DMA32"), 1)
    assert a.pgdat_watermark_boosted(node, 2) and not a.pgdat_watermark_boosted(node, 0)
    a.wakeup_kswapd(node, 0, G.GFP_KERNEL, 2)
    assert woken == [0]


def test_gfp_atomic_order0_ignores_the_boost_at_min(dma):
    """zone_watermark_fast: an order-0 request with reserve rights checked at MIN that fails
    with the boost retries at the unboosted MIN (_watermark[WMARK_MIN]). 6.1 tests
    __GFP_ATOMIC, 6.3+ ALLOC_MIN_RESERVE (__GFP_HIGH): hvsim's GFP flags are 6.3+'s."""
    k, zone = dma
    a = k.page_alloc
    a.wake_kswapd_hook = None
    give_block(k, 1024, 6)  # 64 free pages
    set_marks(k, zone, [40, 50, 60])
    a.set_watermark_boost(zone, 100)  # MIN 140: above the free pages
    # GFP_KERNEL | __GFP_HIGH (ALLOC_MIN_RESERVE, may block): boosted MIN 140 - 70 = 70
    # >= 64 free fails; unboosted 40 - 20 = 20 < 64 passes
    zl = a.zonelist(G.GFP_DMA)
    flags = a._gfp_to_alloc_flags(G.GFP_KERNEL | G.HIGH | G.GFP_DMA, 0)
    assert not a.zone_watermark_ok(zone, 0, zone.watermark[0], 0, flags)
    page = a._get_page_from_freelist(G.GFP_KERNEL | G.HIGH | G.GFP_DMA, 0, 0, zl, 0, 0, flags)
    assert page is not None
    # order 1 gets no such exception
    assert a._get_page_from_freelist(G.GFP_KERNEL | G.HIGH | G.GFP_DMA, 1, 0, zl, 0, 0, flags) is None
    # nor a request without __GFP_HIGH (ALLOC_MIN_RESERVE)
    flags = a._gfp_to_alloc_flags(G.GFP_KERNEL | G.GFP_DMA, 0)
    assert a._get_page_from_freelist(G.GFP_KERNEL | G.GFP_DMA, 0, 0, zl, 0, 0, flags) is None
    assert flags & ALLOC_KSWAPD


def _page_cache(k, pages: int, dirty: bool = False):
    inode = k.fs.create("/f", pages * 4096)
    got = [filemap_get_page(k, inode, i, 1)[0] for i in range(pages)]
    if dirty:
        for p in got:
            set_page_dirty(k, p)
    return got


def test_kswapd_reclaims_the_boost_without_writeback_then_wakes_kcompactd():
    """balance_pgdat (6.1): the boosts of the node's zones are reclaimed while the node is
    balanced, with may_writepage and may_swap off; the boosts (left in place meanwhile)
    are then taken off, and kcompactd is woken for pageblock_order."""
    k = Kernel(KernelConfig(memory="128MiB"))
    r = k.reclaim
    a = k.page_alloc
    zone = zone_named(k, "DMA32")
    node = zone.node
    # enough page cache that priority 12..10 scans something (lru_size >> priority; 6.1's
    # get_scan_count scans nothing of a smaller list, and a boosted pass that reclaims
    # nothing ends at once)
    _page_cache(k, 8192)
    assert r.kswapd_balanced(node, 0, 2)
    marks = list(zone.watermark)
    a.set_watermark_boost(zone, 100)
    assert zone.watermark == [w + 100 for w in marks]
    assert r.kswapd_balanced(node, 0, 2)  # free is far above HIGH + 100
    steal0 = k.vmstat["pgsteal_kswapd"]
    node.kcompactd_max_order = 0
    r.balance_pgdat(node, 0, 2)
    # clean page cache reclaimed by at least the boost, in SWAP_CLUSTER_MAX batches
    assert k.vmstat["pgsteal_kswapd"] - steal0 >= 100
    assert zone.watermark_boost == 0 and zone.watermark == marks
    assert node.kcompactd_max_order == a.pageblock_order  # wakeup_kcompactd(pgdat, pageblock_order, ...)


def test_boosted_reclaim_writes_nothing_and_stops_when_it_reclaims_nothing():
    # dirty limits high enough that the writer itself writes nothing back (no flusher
    # without a simulation): the page cache stays dirty
    k = Kernel(KernelConfig(memory="128MiB", dirty_ratio=100, dirty_background_ratio=90))
    r = k.reclaim
    a = k.page_alloc
    zone = zone_named(k, "DMA32")
    node = zone.node
    _page_cache(k, 8192, dirty=True)  # only dirty page cache: nothing reclaimable without IO
    a.set_watermark_boost(zone, 64)
    assert r.kswapd_balanced(node, 0, 2)
    assert k.vmstat["nr_dirty"] >= 8192
    # reclaim itself writes nothing (nr_vmscan_write: its pageout) and swaps nothing; the
    # flusher it wakes on finding only dirty pages (wakeup_flusher_threads) may write them
    before = {n: k.vmstat[n] for n in ("pgsteal_kswapd", "nr_vmscan_write", "pswpout")}
    r.balance_pgdat(node, 0, 2)
    assert {n: k.vmstat[n] for n in before} == before  # no pageout, no swap, nothing freed
    assert zone.watermark_boost == 0  # zone->watermark_boost -= zone_boosts[i] regardless


def test_imbalanced_node_ignores_the_boost_and_reclaims_normally():
    """balance_pgdat: !balanced && nr_boost_reclaim -> nr_boost_reclaim = 0, restart: an
    ordinary pass (writeback allowed) up to the boosted HIGH; the boost is cleared at the end."""
    k = Kernel(KernelConfig(memory="64MiB"))
    r = k.reclaim
    a = k.page_alloc
    zone = zone_named(k, "DMA32")
    node = zone.node
    _page_cache(k, 1000)
    a.set_watermark_boost(zone, zone.nr_free)  # HIGH + boost above the free pages
    assert not r.kswapd_balanced(node, 0, 2)
    r.balance_pgdat(node, 0, 2)
    assert zone.watermark_boost == 0
    assert k.vmstat["pgsteal_kswapd"] > 0
