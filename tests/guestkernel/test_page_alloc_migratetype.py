"""Grouping pages by mobility: migratetypes, pageblocks, fallback stealing, the high-atomic
reserve, per-CPU lists per migratetype and /proc/pagetypeinfo (mm/page_alloc.c and
mm/vmstat.c of Linux 6.1; the high-atomic flag rule of 6.3).

Scenarios are built by hand in an emptied DMA zone (64 MiB guest, zero watermarks): the
zone spans pfn 0..4095, pageblocks of 512 pages (0..7), pfn 0..255 reserved at boot.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page import PG_buddy, PG_lru
from guestkernel.page_alloc import (
    ALLOC_NOFRAGMENT,
    MIGRATE_HIGHATOMIC,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    MIGRATETYPE_NAMES,
    KernelBug,
    order_to_pindex,
    pageset_update,
    validate_buddy,
)
from guestkernel.procfs import (
    pagetypeinfo_block_header,
    pagetypeinfo_block_line,
    pagetypeinfo_free_line,
    pagetypeinfo_header,
)

from .test_page_alloc import empty_zone, free_lists, give_block, zone_named

FIXTURE = Path(__file__).parent.parent / "data" / "compaction" / "compact_memory.txt"


@pytest.fixture
def dma():
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1))
    zone = zone_named(k, "DMA")
    assert zone.watermark == [0, 0, 0]
    empty_zone(k, zone)
    return k, zone


def held(k, pfn: int, lru: bool = False):
    """The page at pfn, inside a block empty_zone took, as an allocated order-0 page
    (split_page), optionally an LRU page."""
    page = k.pfn_to_page(pfn)
    assert not page.flags & PG_buddy
    page._count = 1
    if lru:
        page.flags |= PG_lru
    return page


# ---------------------------------------------------------------------------- basics


def test_gfp_migratetype_from_the_mobility_flags():
    k = Kernel(KernelConfig(memory="64MiB"))
    a = k.page_alloc
    assert a.gfp_migratetype(G.GFP_HIGHUSER_MOVABLE) == MIGRATE_MOVABLE  # user anon, page cache
    assert a.gfp_migratetype(G.GFP_KERNEL) == MIGRATE_UNMOVABLE
    assert a.gfp_migratetype(G.GFP_ATOMIC) == MIGRATE_UNMOVABLE
    assert a.gfp_migratetype(G.GFP_KERNEL | G.__GFP_RECLAIMABLE) == MIGRATE_RECLAIMABLE
    with pytest.raises(KernelBug):
        a.gfp_migratetype(G.__GFP_MOVABLE | G.__GFP_RECLAIMABLE)
    # SLAB_RECLAIM_ACCOUNT caches allocate __GFP_RECLAIMABLE (__kmem_cache_create)
    dentry = k.slab.find_cache("dentry")
    assert dentry.gfpflags & G.__GFP_RECLAIMABLE


def test_2_6_20_has_no_grouping_by_mobility():
    # grouping by mobility came in 2.6.24: the 2.6 era (2.6.20) keeps one list per order
    k = Kernel(KernelConfig(memory="64MiB", era="2.6"))
    a = k.page_alloc
    assert a.page_group_by_mobility_disabled
    assert a.gfp_migratetype(G.GFP_HIGHUSER_MOVABLE) == MIGRATE_UNMOVABLE
    assert set(a.pageblock_mt) == {MIGRATE_UNMOVABLE}
    for zone in a.zones:
        assert all(not fl for area in zone.free_area for fl in area.free_list[1:])
    assert not k.procfs.exists("/proc/pagetypeinfo")


@pytest.mark.parametrize("arch,pae,order", [("x86_64", None, 9), ("i386", True, 9), ("i386", False, 10)])
def test_pageblock_order_is_the_huge_page_order(arch, pae, order):
    # pageblock_order = min(HUGETLB_PAGE_ORDER, MAX_ORDER - 1): 2 MiB pages on x86_64 and
    # PAE, 4 MiB (HPAGE_SHIFT 22) on i386 without PAE
    cfg = KernelConfig(memory="64MiB", arch=arch, pae=pae) if pae is not None else KernelConfig(
        memory="64MiB", arch=arch)
    a = Kernel(cfg).page_alloc
    assert a.pageblock_order == order and a.pageblock_nr_pages == 1 << order


def test_boot_marks_every_pageblock_movable_and_frees_onto_movable_lists():
    k = Kernel(KernelConfig(memory="64MiB"))
    dma = zone_named(k, "DMA")
    # DMA is untouched by boot's allocations: all of its free memory is on MOVABLE lists
    assert list(k.page_alloc.pageblock_mt[0:8]) == [MIGRATE_MOVABLE] * 8
    assert free_lists(dma, MIGRATE_MOVABLE) == free_lists(dma)
    validate_buddy(k.page_alloc)


# ---------------------------------------------------------------------------- fallback


def test_unmovable_request_steals_the_largest_movable_block_and_claims_its_pageblock(dma):
    k, zone = dma
    a = k.page_alloc
    # a free order-8 block in pageblock 2 (pfn 1024..1535), an order-3 one in pageblock 3
    give_block(k, 1024, 8)
    give_block(k, 1600, 3)
    assert a.pageblock_mt[2] == a.pageblock_mt[3] == MIGRATE_MOVABLE
    page = k.alloc_pages(G.GFP_DMA)  # unmovable, order 0 (per-CPU batch 1 in DMA)
    # __rmqueue_fallback takes the largest MOVABLE block (order 8 at 1024); an unmovable
    # request may steal (can_steal_fallback); the pageblock has 256 free pages and no
    # movable ones, so alike = 512 - 256 = 256 and 256 + 256 >= 256: claimed
    assert page.pfn == 1024
    assert a.pageblock_mt[2] == MIGRATE_UNMOVABLE and a.pageblock_mt[3] == MIGRATE_MOVABLE
    un = free_lists(zone, MIGRATE_UNMOVABLE)
    assert un[:8] == [[1025], [1026], [1028], [1032], [1040], [1056], [1088], [1152]]
    assert free_lists(zone, MIGRATE_MOVABLE)[3] == [1600]
    # a page freed into the claimed pageblock goes to the UNMOVABLE lists
    k.free_pages(page)
    k.drain_all_pages()
    assert free_lists(zone, MIGRATE_UNMOVABLE)[8] == [1024]
    validate_buddy(a)


def test_steal_moves_free_pages_but_keeps_a_mostly_movable_pageblock(dma):
    k, zone = dma
    a = k.page_alloc
    # pageblock 2: 64 + 32 free pages, 300 allocated LRU (movable) pages
    give_block(k, 1024, 6)
    give_block(k, 1088, 5)
    for pfn in range(1200, 1500):
        held(k, pfn, lru=True)
    page = k.alloc_pages(G.GFP_DMA)
    # move_freepages_block: 96 free pages move to UNMOVABLE, 300 movable seen; alike =
    # 512 - (96 + 300) = 116 and 96 + 116 = 212 < 256: the pageblock stays MOVABLE.
    # __rmqueue_smallest then takes the smallest UNMOVABLE block: order 5 at 1088
    assert page.pfn == 1088
    assert a.pageblock_mt[2] == MIGRATE_MOVABLE
    assert free_lists(zone, MIGRATE_UNMOVABLE)[:7] == [[1089], [1090], [1092], [1096], [1104], [], [1024]]
    assert all(not lst for lst in free_lists(zone, MIGRATE_MOVABLE))
    # freed, the page goes to its pageblock's type, merging with its free buddies
    # whatever list they are on: order 5 at 1088 on the MOVABLE list
    k.free_pages(page)
    k.drain_all_pages()
    assert free_lists(zone, MIGRATE_MOVABLE)[5] == [1088]
    assert free_lists(zone, MIGRATE_UNMOVABLE)[6] == [1024]
    validate_buddy(a)


def test_movable_request_that_cannot_steal_splits_the_smallest_block(dma):
    k, zone = dma
    a = k.page_alloc
    # two UNMOVABLE pageblocks' free blocks: order 3 in pageblock 2, order 2 in pageblock 4
    a.set_pageblock_migratetype(1024, MIGRATE_UNMOVABLE)
    a.set_pageblock_migratetype(2048, MIGRATE_UNMOVABLE)
    give_block(k, 1024, 3)
    give_block(k, 2048, 2)
    page = a.alloc_pages(G.GFP_HIGHUSER_MOVABLE | G.GFP_DMA, 1)
    # the largest fallback block has order 3 < pageblock_order / 2 and the request is
    # MOVABLE: can_steal_fallback(3, MOVABLE) is false, so __rmqueue_fallback goes to
    # find_smallest from order 1: the order-2 block at 2048 moves alone
    # to the MOVABLE list (steal_suitable_fallback, single_page) and is split there
    assert page.pfn == 2048
    assert a.pageblock_mt[4] == a.pageblock_mt[2] == MIGRATE_UNMOVABLE
    assert free_lists(zone, MIGRATE_MOVABLE)[1] == [2050]
    assert free_lists(zone, MIGRATE_UNMOVABLE)[3] == [1024]
    validate_buddy(a)


def test_a_request_of_half_a_pageblock_steals_for_movable_too(dma):
    k, zone = dma
    a = k.page_alloc
    a.set_pageblock_migratetype(1024, MIGRATE_UNMOVABLE)
    give_block(k, 1024, 8)
    page = a.alloc_pages(G.GFP_HIGHUSER_MOVABLE | G.GFP_DMA, 4)
    # order 4 >= pageblock_order / 2 (9 // 2 = 4): can steal; 256 free >= 256: claimed
    assert page.pfn == 1024 and a.pageblock_mt[2] == MIGRATE_MOVABLE
    validate_buddy(a)


def test_stealing_a_block_larger_than_a_pageblock_claims_every_pageblock(dma):
    k, zone = dma
    a = k.page_alloc
    give_block(k, 2048, 10)
    page = a.alloc_pages(G.GFP_DMA | G.__GFP_RECLAIMABLE, 0)
    # current_order 10 >= pageblock_order: change_pageblock_range over both pageblocks
    assert page.pfn == 2048
    assert list(a.pageblock_mt[4:6]) == [MIGRATE_RECLAIMABLE] * 2
    assert free_lists(zone, MIGRATE_RECLAIMABLE)[9] == [2560]
    validate_buddy(a)


def test_nofragment_prefers_the_lower_zone_to_fragmenting_normal():
    # 5 GiB x86_64: Normal (preferred for GFP_KERNEL) with DMA32 below it populated
    k = Kernel(KernelConfig(memory="5GiB", min_free_kbytes=0, watermark_scale_factor=1,
                            lowmem_reserve_ratio=(0, 0, 0)))
    a = k.page_alloc
    normal, dma32 = zone_named(k, "Normal"), zone_named(k, "DMA32")
    assert a._alloc_flags_nofragment(a.zonelist(G.GFP_KERNEL), 0) == ALLOC_NOFRAGMENT
    assert a._alloc_flags_nofragment(a.zonelist(G.GFP_DMA32), 0) == 0
    for z in (normal, dma32):
        empty_zone(k, z)
        z.watermark = [0, 0, 0]
    # Normal: one free MOVABLE order-0 page; DMA32: one free MOVABLE pageblock
    n0 = normal.zone_start_pfn + 4096
    give_block(k, n0, 0)
    d0 = 0x40000
    give_block(k, d0, 9)
    assert a.pageblock_mt[d0 >> 9] == MIGRATE_MOVABLE
    a._invalidate_fast_plans()
    page = k.alloc_pages(G.GFP_KERNEL)
    # ALLOC_NOFRAGMENT: no stealing below pageblock_order, so not Normal's order-0 page
    # but DMA32's pageblock (which the steal claims, order 9 >= pageblock_order)
    assert page.pfn == d0 and a.pageblock_mt[d0 >> 9] == MIGRATE_UNMOVABLE
    assert free_lists(normal, MIGRATE_MOVABLE)[0] == [n0]
    validate_buddy(a)


# ---------------------------------------------------------------------------- high-atomic


def test_highatomic_reserve_taken_by_a_non_blocking_high_order_request(dma):
    k, zone = dma
    a = k.page_alloc
    k.page_alloc.wake_kswapd_hook = None
    # the first request steals from a MOVABLE pageblock: without boosting (tested in
    # test_watermark_boost.py) its watermarks stay those set here
    a.watermark_boost_factor = 0
    give_block(k, 1024, 7)  # 128 free pages in pageblock 2
    # LOW above the free pages: the fast path fails; the slow path's MIN test for
    # GFP_ATOMIC (ALLOC_MIN_RESERVE | ALLOC_NON_BLOCK): 120 - 60 - 15 = 45 < 128 - 1
    zone.watermark = [120, 200, 250]
    a._invalidate_fast_plans()
    page = k.alloc_pages(G.GFP_ATOMIC | G.GFP_DMA, 1)
    assert page is not None and page.pfn == 1024
    # reserve_highatomic_pageblock: at most managed/100 + 512 = 3840/100 + 512 = 550
    assert zone.nr_reserved_highatomic == 512 and a.pageblock_mt[2] == MIGRATE_HIGHATOMIC
    assert free_lists(zone, MIGRATE_HIGHATOMIC)[:7] == [[], [1026], [1028], [1032], [1040], [1056], [1088]]
    # the reserve is not free for ordinary requests (__zone_watermark_unusable_free)
    assert not a.zone_watermark_ok(zone, 0, 0, 0, 0)
    # a further atomic order-1 request takes from the HIGHATOMIC lists first
    page2 = k.alloc_pages(G.GFP_ATOMIC | G.GFP_DMA, 1)
    assert page2.pfn == 1026 and zone.nr_reserved_highatomic == 512  # no second block
    # freed, it goes to the per-CPU order-1 list of MOVABLE (free_unref_page: HIGHATOMIC
    # pages are kept as movable), and drained, back to its pageblock's type: HIGHATOMIC
    k.free_pages(page2, 1)
    assert [p.pfn for p in zone.pcp[0][0].lists[order_to_pindex(MIGRATE_MOVABLE, 1)]] == [1026]
    k.drain_all_pages()
    assert free_lists(zone, MIGRATE_HIGHATOMIC)[1] == [1026]
    validate_buddy(a)
    # unreserve keeps the last pageblock unless forced; forced, it moves the free pages
    zl = a.zonelist(G.GFP_DMA)
    assert not a.unreserve_highatomic_pageblock(zl, 0, MIGRATE_UNMOVABLE, False)
    assert a.unreserve_highatomic_pageblock(zl, 0, MIGRATE_UNMOVABLE, True)
    assert zone.nr_reserved_highatomic == 0 and a.pageblock_mt[2] == MIGRATE_UNMOVABLE
    assert all(not lst for lst in free_lists(zone, MIGRATE_HIGHATOMIC))
    validate_buddy(a)


def test_transhuge_light_never_reserves_highatomic(dma):
    k, zone = dma
    a = k.page_alloc
    assert not a._gfp_to_alloc_flags(G.GFP_TRANSHUGE_LIGHT, 9) & 0x200  # __GFP_NOMEMALLOC
    assert a._gfp_to_alloc_flags(G.GFP_NOWAIT, 1) & 0x200
    assert not a._gfp_to_alloc_flags(G.GFP_NOWAIT, 0) & 0x200


# ---------------------------------------------------------------------------- per-CPU


def test_pcp_lists_per_migratetype_and_round_robin_bulk_free():
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1))
    a = k.page_alloc
    for z in a.zones:
        empty_zone(k, z)
    zone = zone_named(k, "DMA32")
    (hot,) = zone.pcp[0]
    pageset_update(hot, 18, 3)  # 6.1's list of a 64 MiB zone is smaller
    a.set_pageblock_migratetype(10240, MIGRATE_UNMOVABLE)
    # 10 held pages in an UNMOVABLE pageblock, 8 in a MOVABLE one
    un = [held(k, p) for p in range(10240, 10250)]
    mv = [held(k, p) for p in range(11264, 11272)]
    for page in un:
        k.free_pages(page)
    for page in mv[:7]:
        k.free_pages(page)
    assert [len(lst) for lst in hot.lists[:3]] == [10, 7, 0] and hot.count == 17
    # the 18th free reaches high: free_pcppages_bulk(nr_pcp_free: batch 3 << free_factor
    # 0) from the list just freed to (MOVABLE), its tail (oldest) first
    k.free_pages(mv[7])
    assert [len(lst) for lst in hot.lists[:3]] == [10, 5, 0]
    freed = {p for o, lst in enumerate(free_lists(zone, MIGRATE_MOVABLE)) for b in lst for p in range(b, b + (1 << o))}
    assert freed == {11264, 11265, 11266}
    # a movable allocation takes the head of the MOVABLE list: the last page freed
    page = k.alloc_pages(G.GFP_HIGHUSER_MOVABLE)
    assert page.pfn == 11271
    validate_buddy(a)


# ---------------------------------------------------------------------------- twins


def _world(ops, seed_pfns):
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1))
    a = k.page_alloc
    for z in a.zones:
        empty_zone(k, z)
    for pfn, order, mt in seed_pfns:
        a.set_pageblock_migratetype(pfn, mt)
        give_block(k, pfn, order)
    return k


def _state(k):
    zone = zone_named(k, "DMA32")
    return ([free_lists(zone, mt) for mt in range(5)], bytes(k.page_alloc.pageblock_mt),
            [[p.pfn for p in lst] for lst in zone.pcp[0][0].lists], zone.nr_free)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10), st.integers(0, 9), st.sampled_from([0, 1, 2])),
                min_size=1, max_size=12, unique_by=lambda t: t[0]),
       st.sampled_from([0, 1, 2]), st.integers(1, 40), st.booleans())
def test_inlined_rmqueue_bulk_matches_its_plain_twin(blocks, mt, count, nofrag):
    # free blocks in DMA32 pageblocks 20..30 (below: the kernel image and boot's slab
    # pageblocks; above: the memmap)
    seeds = [((20 + b) * 512, order, bmt) for b, order, bmt in blocks]
    k1, k2 = _world(None, seeds), _world(None, seeds)
    flags = ALLOC_NOFRAGMENT if nofrag else 0
    z1, z2 = zone_named(k1, "DMA32"), zone_named(k2, "DMA32")
    n1 = k1.page_alloc._rmqueue_bulk(z1, count, z1.pcp[0][0], mt, flags)
    n2 = k2.page_alloc._rmqueue_bulk_plain(z2, count, z2.pcp[0][0], mt, flags)
    assert n1 == n2
    assert _state(k1) == _state(k2)
    validate_buddy(k1.page_alloc)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 9), st.integers(0, 10**6)), max_size=150))
def test_random_mixed_mobility_traffic_keeps_invariants(ops):
    k = Kernel(KernelConfig(memory="64MiB", cpus=2))
    k.page_alloc.wake_kswapd_hook = k.page_alloc.direct_reclaim_hook = k.page_alloc.oom_hook = None
    gfps = (G.GFP_KERNEL, G.GFP_HIGHUSER_MOVABLE, G.GFP_KERNEL | G.__GFP_RECLAIMABLE,
            G.GFP_ATOMIC, G.GFP_NOWAIT, G.GFP_DMA)
    live = []
    for is_alloc, order, pick in ops:
        if is_alloc or not live:
            page = k.alloc_pages(gfps[pick % len(gfps)], order, cpu=pick % 2)
            if page is not None:
                live.append((page, order))
        else:
            page, o = live.pop(pick % len(live))
            k.free_pages(page, o, cpu=pick % 2)
    validate_buddy(k.page_alloc)
    for page, o in live:
        k.free_pages(page, o)
    k.drain_all_pages()
    validate_buddy(k.page_alloc)


# ---------------------------------------------------------------------------- pagetypeinfo


def _fixture_sections():
    text = FIXTURE.read_text()
    parts = re.split(r"^== (.+) ==\n", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _parse_pagetypeinfo(text):
    free = re.findall(r"^Node\s+(\d+), zone\s+(\S+), type\s+(\S+) ((?:\s*>?\d+ )+)$", text, re.M)
    blocks = re.findall(r"^Node (\d+), zone\s+(\S+) ((?:\s+\d+ )+)$", text, re.M)
    order = int(re.search(r"^Page block order: (\d+)$", text, re.M).group(1))
    return order, free, blocks


def test_pagetypeinfo_lines_render_the_real_kernels_text():
    # this machine's kernel (tests/data/compaction/measure.sh): re-rendering its parsed
    # numbers with hvsim's formatters gives its text back, byte for byte
    text = _fixture_sections()["pagetypeinfo before"]
    order, free, blocks = _parse_pagetypeinfo(text)
    assert order == 9
    out = pagetypeinfo_header(order)
    nid = None
    for n, zone, mtname, cells in free:
        counts = [int(c.lstrip(">")) for c in cells.split()]
        out += pagetypeinfo_free_line(int(n), zone, mtname, counts)
        nid = n
    out += pagetypeinfo_block_header()
    for n, zone, cells in blocks:
        out += pagetypeinfo_block_line(int(n), zone, [int(c) for c in cells.split()])
    assert out == text
    assert nid == "0"
    # the real kernel (no CONFIG_CMA) lists the same migratetypes, in the same order
    assert [m for _, z, m, _ in free if z == "Normal"] == list(MIGRATETYPE_NAMES)


def test_guest_pagetypeinfo_counts_its_free_lists_and_pageblocks():
    k = Kernel(KernelConfig(memory="64MiB"))
    a = k.page_alloc
    text = k.procfs.read("/proc/pagetypeinfo")
    order, free, blocks = _parse_pagetypeinfo(text)
    assert order == 9
    zones = {z.name: z for z in a.zones}
    assert [(z, m) for _, z, m, _ in free] == [(z, m) for z in zones for m in MIGRATETYPE_NAMES]
    for _, zname, mtname, cells in free:
        mt = MIGRATETYPE_NAMES.index(mtname)
        assert [int(c) for c in cells.split()] == [area.free_list[mt].nr for area in zones[zname].free_area]
    for _, zname, cells in blocks:
        z = zones[zname]
        counts = [int(c) for c in cells.split()]
        assert sum(counts) == -(-z.spanned_pages // 512)
        assert counts == [sum(1 for b in range(z.zone_start_pfn >> 9, -(-z.end_pfn // 512))
                              if a.pageblock_mt[b] == mt) for mt in range(5)]
    # /proc/buddyinfo's counts are the sums over the migratetypes
    buddy = k.procfs.read("/proc/buddyinfo")
    for line in buddy.splitlines():
        zname = line.split()[3]
        nums = [int(x) for x in line.split()[4:]]
        per = [[int(c) for c in cells.split()] for _, z, _, cells in free if z == zname]
        assert nums == [sum(col) for col in zip(*per)]


def test_should_reclaim_retry_exhausts_the_highatomic_reserve_before_saying_no(dma):
    """should_reclaim_retry (6.1): when no zone would meet MIN with its reclaimable pages,
    or after MAX_RECLAIM_RETRIES passes without progress, its `out:` label gives back a
    HIGHATOMIC pageblock (unreserve_highatomic_pageblock(ac, true)) and retries if free
    pages moved; while a zone would meet MIN, the reserve stays."""
    k, zone = dma
    a = k.page_alloc
    a.zone_reclaimable_hook = None
    give_block(k, 1024, 7)
    a.set_pageblock_migratetype(1024, MIGRATE_HIGHATOMIC)
    a.move_freepages_block(zone, 1024, MIGRATE_HIGHATOMIC)
    zone.nr_reserved_highatomic = 512
    zl = a.zonelist(G.GFP_DMA)
    # free 128, MIN 0: the order-0 check passes for an ALLOC_OOM request (the reserve counts)
    assert a.should_reclaim_retry(0, zl, 0, 0x08, True, 0, MIGRATE_MOVABLE) == (True, 0)
    assert zone.nr_reserved_highatomic == 512
    # an ordinary request: 128 - 512 reserved is below MIN: no; the reserve goes to MOVABLE
    assert a.should_reclaim_retry(0, zl, 0, 0, True, 0, MIGRATE_MOVABLE) == (True, 0)
    assert zone.nr_reserved_highatomic == 0 and a.pageblock_mt[2] == MIGRATE_MOVABLE
    assert free_lists(zone, MIGRATE_MOVABLE)[7] == [1024]
    # nothing left to give back: now it is no
    zone.watermark = [200, 200, 200]
    assert a.should_reclaim_retry(0, zl, 0, 0, True, 0, MIGRATE_MOVABLE) == (False, 0)
    validate_buddy(a)


def test_direct_reclaim_without_progress_neither_drains_nor_unreserves(dma):
    """__alloc_pages_direct_reclaim: no progress goes straight to `out` (no drain, no
    unreserve); with progress, a failed retry gives back one HIGHATOMIC pageblock unless
    it is the zone's last (force false) and drains the per-CPU lists."""
    k, zone = dma
    a = k.page_alloc
    a.wake_kswapd_hook = a.oom_hook = None
    calls = []
    a.direct_reclaim_hook = lambda gfp, order, zl, hi: calls.append(order) or 0
    drains = []
    orig = a.drain_all_pages
    a.drain_all_pages = lambda zone=None: drains.append(zone) or orig(zone)
    assert k.alloc_pages(G.GFP_KERNEL | G.GFP_DMA | G.NORETRY, 0) is None
    assert calls == [0] and drains == []
    a.direct_reclaim_hook = lambda gfp, order, zl, hi: calls.append(order) or 1
    assert k.alloc_pages(G.GFP_KERNEL | G.GFP_DMA | G.NORETRY, 0) is None
    assert calls == [0, 0] and drains == [None]
