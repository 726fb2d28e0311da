"""Zones, watermarks, buddy split/merge, per-CPU lists and GFP semantics (linux-mm.md §1)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page import PG_buddy, PG_lru
from guestkernel.page_alloc import (
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    KernelBug,
    KernelPanic,
    int_sqrt,
    validate_buddy,
)


def free_lists(zone, mt: int | None = None) -> list[list[int]]:
    """pfns on each order's free list of migratetype `mt`, head first (mt None: every
    type's list, one after the other)."""
    if mt is not None:
        return [area.free_list[mt].pfns() for area in zone.free_area]
    return [[p for fl in area.free_list for p in fl.pfns()] for area in zone.free_area]


def zone_named(k: Kernel, name: str, nid: int = 0):
    return next(z for z in k.page_alloc.nodes[nid].zones if z.name == name)


def empty_zone(k: Kernel, zone) -> None:
    """Take every free block out of `zone` (as if allocated), leaving its lists empty."""
    alloc = k.page_alloc
    k.drain_all_pages()
    for order in range(10, -1, -1):
        while zone.free_area[order].nr_free:
            page = alloc._rmqueue_smallest(zone, order)
            page._count = 1
    assert zone.nr_free == 0


def give_block(k: Kernel, pfn: int, order: int) -> None:
    """Free an order-`order` block at `pfn` into an emptied zone (as its owner would)."""
    page = k.pfn_to_page(pfn)
    page._count = 1
    free_block(k, page, order)


def free_block(k: Kernel, page, order: int) -> None:
    """Free a block all the way to the buddy lists: orders 0..3 and pageblock order land
    on a per-CPU list first (6.1 pcp_allowed_order; 2.6.20: order 0) and
    free_pcppages_bulk hands them to __free_one_page."""
    k.free_pages(page, order)
    if order in k.page_alloc.pcp_orders:
        k.drain_all_pages()


@pytest.fixture
def dma_world():
    """A 64 MiB guest whose DMA zone is empty and has zero watermarks, so that GFP_DMA
    allocations and frees act on exactly the blocks a test gives it."""
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1))
    zone = zone_named(k, "DMA")
    assert zone.watermark == [0, 0, 0]
    empty_zone(k, zone)
    return k, zone


# ---------------------------------------------------------------------------- zones


def test_int_sqrt():
    assert [int_sqrt(x) for x in (0, 1, 3, 4, 15, 16, 17)] == [0, 1, 1, 2, 3, 4, 4]
    assert int_sqrt(14270464) == 3777  # 3777**2 = 14265729, 3778**2 = 14273284


def test_x86_64_4gib_zones_and_watermarks_6x():
    k = Kernel(KernelConfig(memory="4GiB", arch="x86_64"))
    alloc = k.page_alloc
    dma, dma32, normal = alloc.nodes[0].zones
    assert [z.name for z in (dma, dma32, normal)] == ["DMA", "DMA32", "Normal"]
    # DMA = pfn 0..4096 (16 MiB); DMA32 = 4096..1048576 (4 GiB); Normal empty.
    assert (dma.zone_start_pfn, dma.spanned_pages) == (0, 4096)
    assert (dma32.zone_start_pfn, dma32.spanned_pages) == (4096, 1044480)
    assert normal.present_pages == 0 and not normal.populated()
    # Reserved: first 1 MiB (256 pages, DMA); 16 MiB kernel image at 16 MiB (4096 pages,
    # DMA32); memmap 1048576 * 64 B = 64 MiB (16384 pages) at the top of DMA32.
    assert dma.managed_pages == 4096 - 256 == 3840
    assert dma32.managed_pages == 1044480 - 4096 - 16384 == 1024000
    # min_free_kbytes = int_sqrt(lowmem_kbytes * 16) = int_sqrt(1027840 * 4 * 16) = 8110
    assert alloc.min_free_kbytes == 8110
    # pages_min = 8110 >> 2 = 2027; tmp = 2027 * managed / 1027840
    # DMA:   tmp = 7;    dist = max(7 >> 2, 3840 * 10 / 10000 = 3) = 3
    # DMA32: tmp = 2019; dist = max(2019 >> 2 = 504, 1024000 * 10 / 10000 = 1024) = 1024
    assert dma.watermark == [7, 10, 13]
    assert dma32.watermark == [2019, 3043, 4067]
    # lowmem_reserve[j] = managed(i+1..j) / ratio[i]: DMA 1024000/256 = 4000
    assert dma.lowmem_reserve == [0, 4000, 4000]
    assert dma32.lowmem_reserve == [0, 0, 0]  # Normal is empty
    assert normal.lowmem_reserve == [0, 0, 0]  # an empty zone is cleared
    # totalreserve = sum of min(max reserve + high, managed):
    # DMA min(4000 + 13, 3840) = 3840; DMA32 0 + 4067
    assert alloc.totalreserve_pages == 3840 + 4067
    validate_buddy(alloc)


def test_i386_2gib_zones_and_watermarks_6x():
    k = Kernel(KernelConfig(memory="2GiB", arch="i386"))
    alloc = k.page_alloc
    dma, normal, high = alloc.nodes[0].zones
    assert [z.name for z in (dma, normal, high)] == ["DMA", "Normal", "HighMem"]
    # DMA 0..4096, Normal 4096..229376 (896 MiB), HighMem 229376..524288 (2 GiB)
    assert (normal.zone_start_pfn, normal.spanned_pages) == (4096, 225280)
    assert (high.zone_start_pfn, high.spanned_pages) == (229376, 294912)
    # Reserved: 256 (low 1 MiB) in DMA; 8 MiB image (2048) and the memmap
    # 524288 * 32 B = 16 MiB (4096 pages) in Normal (lowmem). HighMem untouched.
    assert dma.managed_pages == 3840
    assert normal.managed_pages == 225280 - 2048 - 4096 == 219136
    assert high.managed_pages == 294912
    # lowmem = 3840 + 219136 = 222976 pages = 891904 kB; int_sqrt(891904 * 16) = 3777
    assert alloc.min_free_kbytes == 3777
    # pages_min = 944.  DMA: tmp = 944*3840//222976 = 16, dist = max(4, 3) = 4
    assert dma.watermark == [16, 20, 24]
    # Normal: tmp = 944*219136//222976 = 927, dist = max(231, 219) = 231
    assert normal.watermark == [927, 1158, 1389]
    # HighMem: MIN = clamp(294912/1024 = 288, 32, 128) = 128;
    #          tmp = 944*294912//222976 = 1248, dist = max(312, 294) = 312
    assert high.watermark == [128, 440, 752]
    # DMA: 219136/256 = 856, (219136+294912)/256 = 2008; Normal: 294912/32 = 9216
    assert dma.lowmem_reserve == [0, 856, 2008]
    assert normal.lowmem_reserve == [0, 0, 9216]
    assert high.lowmem_reserve == [0, 0, 0]  # ratio 0


def test_i386_2gib_watermarks_26():
    k = Kernel(KernelConfig(memory="2GiB", arch="i386", era="2.6"))
    dma, normal, high = k.page_alloc.nodes[0].zones
    # 2.6.20 uses present pages: lowmem = 229376 pages = 917504 kB -> int_sqrt(*16) = 3831
    assert k.page_alloc.min_free_kbytes == 3831
    # pages_min = 957; LOW = MIN + tmp/4, HIGH = MIN + tmp/2
    # DMA:    tmp = 957*4096//229376 = 17
    # Normal: tmp = 957*225280//229376 = 939
    # HighMem: MIN = 128, tmp = 957*294912//229376 = 1230
    assert dma.watermark == [17, 21, 25]
    assert normal.watermark == [939, 1173, 1408]
    assert high.watermark == [128, 435, 743]
    assert dma.lowmem_reserve == [0, 880, 2032]
    assert normal.lowmem_reserve == [0, 0, 9216]


def test_reference_lowmem_reserve_example_26():
    # linux-mm.md: 16 MiB DMA + 880 MiB NORMAL + 1 GiB HIGHMEM (4096/225280/262144 pages)
    k = Kernel(KernelConfig(memory=f"{16 + 880 + 1024}MiB", arch="i386", era="2.6"))
    dma, normal, high = k.page_alloc.nodes[0].zones
    assert (dma.present_pages, normal.present_pages, high.present_pages) == (4096, 225280, 262144)
    assert dma.lowmem_reserve[1:] == [880, 1904]
    assert normal.lowmem_reserve[2] == 8192


def test_min_free_kbytes_clamps():
    # 6.x clamps to [128, 262144]; a small guest sits above the floor
    k = Kernel(KernelConfig(memory="64MiB"))
    lowmem_kb = k.page_alloc.lowmem_managed() * 4
    assert k.page_alloc.min_free_kbytes == max(128, int_sqrt(lowmem_kb * 16))
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=1000))
    assert k.page_alloc.min_free_kbytes == 1000


def test_numa_nodes_split_memory_and_list_every_node():
    k = Kernel(KernelConfig(memory="1GiB", nodes=2, cpus=4))
    n0, n1 = k.page_alloc.nodes
    assert (n0.node_start_pfn, n0.node_spanned_pages) == (0, 131072)
    assert (n1.node_start_pfn, n1.node_spanned_pages) == (131072, 131072)
    assert n0.cpus == [0, 1] and n1.cpus == [2, 3]
    assert [z.name for z in n1.populated_zones()] == ["DMA32"]
    buddy = k.procfs.read("/proc/buddyinfo").splitlines()
    assert [line.split(",")[0] for line in buddy] == ["Node 0", "Node 0", "Node 1"]
    zoneinfo = k.procfs.read("/proc/zoneinfo")
    assert "Node 1, zone    DMA32" in zoneinfo and "Node 0, zone      DMA" in zoneinfo
    # An allocation from a CPU of node 1 comes from node 1, and falls back to node 0
    page = k.alloc_pages(G.GFP_KERNEL, 0, cpu=2)
    assert page.pfn >= 131072
    assert k.page_alloc.zonelist(G.GFP_KERNEL, nid=1) == [
        zone_named(k, "DMA32", 1), zone_named(k, "DMA32", 0), zone_named(k, "DMA", 0)
    ]
    assert k.page_alloc.zonelist(G.GFP_KERNEL | G.__GFP_THISNODE, nid=1) == [zone_named(k, "DMA32", 1)]


def test_numa_fallback_by_distance():
    dist = ((10, 20, 40), (20, 10, 30), (40, 30, 10))
    k = Kernel(KernelConfig(memory="768MiB", nodes=3, cpus=3, numa_distance=dist))
    order = [z.node.nid for z in k.page_alloc.zonelist(G.GFP_KERNEL, nid=2) if z.name == "DMA32"]
    assert order == [2, 1, 0]


def test_zonelists_by_gfp_modifier():
    k = Kernel(KernelConfig(memory="2GiB", arch="i386"))
    names = lambda gfp: [z.name for z in k.page_alloc.zonelist(gfp)]  # noqa: E731
    assert names(G.GFP_KERNEL) == ["Normal", "DMA"]
    assert names(G.GFP_HIGHUSER) == ["HighMem", "Normal", "DMA"]
    assert names(G.GFP_DMA) == ["DMA"]
    assert names(G.GFP_KERNEL | G.GFP_DMA32) == ["Normal", "DMA"]  # no DMA32 on i386
    k = Kernel(KernelConfig(memory="5GiB"))
    names = lambda gfp: [z.name for z in k.page_alloc.zonelist(gfp)]  # noqa: E731
    assert names(G.GFP_KERNEL) == ["Normal", "DMA32", "DMA"]
    assert names(G.GFP_HIGHUSER_MOVABLE) == ["Normal", "DMA32", "DMA"]  # no HighMem on 64-bit
    assert names(G.GFP_DMA32) == ["DMA32", "DMA"]


def test_boot_reservations_account_for_all_memory():
    k = Kernel(KernelConfig(memory="256MiB"))
    alloc = k.page_alloc
    assert alloc.reserved_pages == 256 + alloc.kernel_image_pages + alloc.memmap_pages
    assert alloc.memmap_pages == 65536 * 64 // 4096
    assert alloc.totalram_pages() + alloc.reserved_pages == k.nr_pages
    # after boot, every managed page is free, on a per-CPU list, in the slab caches that
    # boot created (cache_cache, kmalloc caches, the kernel's own objects), or init's:
    # its anonymous pages, page-cache pages, page tables and kernel stack (KiB in vmstat)
    vm = k.vmstat
    slab_pages = vm["nr_slab_reclaimable"] + vm["nr_slab_unreclaimable"]
    pcp = sum(z.pcp_count() for z in alloc.zones)
    other = vm["nr_page_table_pages"] + vm["nr_anon_pages"] + vm["nr_file_pages"]
    other += vm["nr_kernel_stack"] // 4
    assert alloc.nr_free_pages() + pcp + slab_pages + other == alloc.totalram_pages()
    assert k.pfn_to_page(4096).flag_names() == ["reserved"]  # first page of the kernel image


# ---------------------------------------------------------------------------- buddy


def test_boot_free_lists_6x_ascending_from_head():
    # 6.x frees boot memory to the tail: the order-10 list runs in ascending pfn order
    k = Kernel(KernelConfig(memory="64MiB"))
    dma32 = zone_named(k, "DMA32")
    pfns = free_lists(dma32, MIGRATE_MOVABLE)[10]
    # The 16 MiB image ends at pfn 8192, and memmap_init marks every pageblock MOVABLE.
    # Boot's first unmovable allocation (a slab page) finds no UNMOVABLE block and steals
    # the largest MOVABLE block, the list's first (__rmqueue_fallback): the order-10 block
    # at 8192, whose two pageblocks become UNMOVABLE (change_pageblock_range); its first
    # reclaimable one (a SLAB_RECLAIM_ACCOUNT cache) steals the next, at 9216.
    assert pfns == sorted(pfns) and pfns[0] == 10240
    mt = k.page_alloc.pageblock_mt
    assert list(mt[16:21]) == [MIGRATE_UNMOVABLE] * 2 + [MIGRATE_RECLAIMABLE] * 2 + [MIGRATE_MOVABLE]
    k = Kernel(KernelConfig(memory="64MiB", era="2.6"))
    pfns = free_lists(zone_named(k, "DMA32"))[10]
    assert pfns == sorted(pfns, reverse=True)  # 2.6 adds at the head


def test_split_gives_lowest_block_and_returns_upper_halves(dma_world):
    k, zone = dma_world
    # pfn  1024 ........ 1031
    #      [    order 3    ]          free_area[3] = [1024]
    give_block(k, 1024, 3)
    assert free_lists(zone)[3] == [1024]
    # alloc order 1: 8 -> 4+4 (1028 to order 2) -> 2+2 (1026 to order 1); caller gets 1024
    #      AA [1026] [  1028   ]
    page = k.alloc_pages(G.GFP_DMA, 1)
    assert page.pfn == 1024 and page._count == 1 and not page.flags & PG_buddy
    assert free_lists(zone)[:4] == [[], [1026], [1028], []]
    assert zone.nr_free == 6
    # alloc order 1 again takes the order-1 head
    #      AA BB [  1028   ]
    assert k.alloc_pages(G.GFP_DMA, 1).pfn == 1026
    assert free_lists(zone)[:4] == [[], [], [1028], []]
    # alloc order 0 (through the buddy, by calling the zone directly): 4 -> 2 -> 1
    #      AA BB C [1029] [1030 1031]
    p = k.page_alloc._rmqueue_smallest(zone, 0)
    assert p.pfn == 1028
    assert free_lists(zone)[:4] == [[1029], [1030], [], []]
    validate_buddy(k.page_alloc)


def test_free_merges_with_buddies(dma_world):
    k, zone = dma_world
    give_block(k, 1024, 3)
    a = k.alloc_pages(G.GFP_DMA, 1)  # 1024
    b = k.alloc_pages(G.GFP_DMA, 1)  # 1026
    c = k.alloc_pages(G.GFP_DMA, 2)  # 1028
    assert (a.pfn, b.pfn, c.pfn) == (1024, 1026, 1028) and zone.nr_free == 0
    # free 1026: its buddy 1026 ^ 2 = 1024 is allocated, no merge
    #      AA [1026] CCCC
    free_block(k, b, 1)
    assert free_lists(zone)[:4] == [[], [1026], [], []]
    # free 1024: buddy 1026 free at order 1 -> merge to 1024/2; buddy 1024 ^ 4 = 1028 allocated
    #      [1024      ] CCCC
    free_block(k, a, 1)
    assert free_lists(zone)[:4] == [[], [], [1024], []]
    # free 1028 order 2: buddy 1024 free at order 2 -> 1024/3; buddy 1032 is not free
    free_block(k, c, 2)
    assert free_lists(zone)[:4] == [[], [], [], [1024]]
    assert zone.nr_free == 8
    validate_buddy(k.page_alloc)


def test_merge_stops_at_block_of_different_order(dma_world):
    k, zone = dma_world
    # 1024/2 free, then 1028 freed as two order-1 halves: 1028 + 1030 merge to 1028/2, then 1024/3.
    give_block(k, 1024, 2)
    give_block(k, 1030, 1)
    assert free_lists(zone)[:4] == [[], [1030], [1024], []]
    give_block(k, 1028, 1)
    assert free_lists(zone)[:4] == [[], [], [], [1024]]


def test_free_inserts_at_tail_when_merge_likely_6x(dma_world):
    k, zone = dma_world
    give_block(k, 1056, 2)  # buddy of 1056/3 is 1064: not free -> head
    give_block(k, 1024, 3)
    assert free_lists(zone)[2:4] == [[1056], [1024]]
    # 1036/2: buddy 1032 not free; next-higher block 1032/3 has buddy 1024/3 free -> tail
    give_block(k, 1036, 2)
    assert free_lists(zone)[2] == [1056, 1036]


def test_free_always_inserts_at_head_26():
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1, era="2.6"))
    zone = zone_named(k, "DMA")
    empty_zone(k, zone)
    give_block(k, 1056, 2)
    give_block(k, 1024, 3)
    give_block(k, 1036, 2)
    assert free_lists(zone)[2] == [1036, 1056]


def test_largest_order_blocks_do_not_merge_further(dma_world):
    k, zone = dma_world
    give_block(k, 1024, 10)
    give_block(k, 2048, 10)  # buddies at order 10 but MAX_ORDER is 10 inclusive
    assert free_lists(zone)[10] == [1024, 2048] or free_lists(zone)[10] == [2048, 1024]
    assert zone.free_area[10].nr_free == 2


def test_double_free_and_bad_state_are_bugs(dma_world):
    k, zone = dma_world
    give_block(k, 1024, 1)
    page = k.alloc_pages(G.GFP_DMA, 1)
    k.free_pages(page, 1)  # to the per-CPU order-1 list, _count 0
    with pytest.raises(KernelBug):
        k.free_pages(page, 1)
    k.drain_all_pages()  # an empty zone fails the watermark test whatever its pcp holds
    page = k.alloc_pages(G.GFP_DMA, 1)
    page.flags |= PG_lru
    with pytest.raises(KernelBug):
        k.free_pages(page, 1)


def test_order_out_of_range():
    k = Kernel(KernelConfig(memory="64MiB"))
    with pytest.raises(ValueError):
        k.alloc_pages(G.GFP_KERNEL, 11)


# ---------------------------------------------------------------------------- per-CPU lists


def test_pcp_batch_and_high_2620():
    k = Kernel(KernelConfig(memory="4GiB", cpus=2, era="2.6"))
    dma, dma32 = zone_named(k, "DMA"), zone_named(k, "DMA32")
    # DMA32: present 1044480 -> /1024 = 1020 -> capped at 512 KiB = 128 -> /4 = 32
    #        -> (1 << (fls(32 + 16) - 1)) - 1 = 31
    hot, cold = dma32.pcp[1]
    assert (hot.high, hot.batch, cold.high, cold.batch) == (186, 31, 62, 15)
    # DMA: 4096/1024 = 4 -> /4 = 1 -> (1 << (fls(1) - 1)) - 1 = 0: high 0, batch max(1, 0)
    hot, cold = dma.pcp[0]
    assert (hot.high, hot.batch, cold.high, cold.batch) == (0, 1, 0, 1)


@pytest.fixture
def dma32_world():
    """A 64 MiB 2.6 guest (hot and cold lists) whose DMA and DMA32 zones are empty and
    have zero watermarks."""
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1, era="2.6"))
    for zone in k.page_alloc.zones:
        empty_zone(k, zone)
    zone = zone_named(k, "DMA32")
    assert zone.watermark == [0, 0, 0]  # min_free_kbytes 0: every mark 0 (2.6 formulas)
    return k, zone


def test_pcp_refill_take_free_and_spill(dma32_world):
    k, zone = dma32_world
    hot, cold = zone.pcp[0]
    # present 12288 -> 12 -> /4 = 3 -> (1 << (fls(4) - 1)) - 1 = 3: hot high 18, cold high 6
    assert (hot.high, hot.batch, cold.high, cold.batch) == (18, 3, 6, 1)
    give_block(k, 10240, 6)  # 64 pages
    # empty hot list: refill batch = 3 pages from the buddy, in ascending order from the
    # head (10240 splits 64 -> ... -> 1; then 10241; then 10242 splits to 10242 + 10243)
    p1 = k.alloc_pages(G.GFP_KERNEL)
    assert p1.pfn == 10240
    assert hot.count == 2 and [p.pfn for p in reversed(hot.pages)] == [10241, 10242]
    assert zone.nr_free == 64 - 3  # pages on per-CPU lists are not free pages
    assert free_lists(zone)[:6] == [[10243], [], [10244], [10248], [10256], [10272]]
    p2 = k.alloc_pages(G.GFP_KERNEL)
    assert p2.pfn == 10241
    # a free goes to the head of the hot list
    k.free_pages(p1)
    assert [p.pfn for p in reversed(hot.pages)] == [10240, 10242]
    # __GFP_COLD takes from the cold list (batch 1: one page from the buddy)
    c = k.alloc_pages(G.GFP_KERNEL | G.__GFP_COLD)
    assert c.pfn == 10243 and cold.count == 0
    k.free_cold_page(c)
    assert [p.pfn for p in cold.pages] == [10243]
    validate_buddy(k.page_alloc)
    assert k.drain_all_pages() == 3  # 10240, 10242 (hot) and 10243 (cold)
    assert hot.count == cold.count == 0
    k.free_pages(p2)
    k.drain_all_pages()
    assert free_lists(zone)[6] == [10240] and zone.nr_free == 64
    validate_buddy(k.page_alloc)


def test_pcp_spill_returns_tail_batch(dma32_world):
    k, zone = dma32_world
    hot, _ = zone.pcp[0]
    give_block(k, 10240, 5)
    pages = [k.alloc_pages(G.GFP_KERNEL) for _ in range(18)]
    k.drain_all_pages()
    for page in pages[:17]:
        k.free_pages(page)
    assert hot.count == 17
    head_first = [p.pfn for p in reversed(hot.pages)]
    assert head_first == [p.pfn for p in reversed(pages[:17])]
    # count reaches high = 18: batch = 3 pages leave from the tail (the oldest frees)
    k.free_pages(pages[17])
    assert hot.count == 15
    assert [p.pfn for p in reversed(hot.pages)] == [pages[17].pfn] + head_first[:14]
    assert zone.nr_free == 32 - 18 + 3
    validate_buddy(k.page_alloc)


# ---------------------------------------------------------------------------- GFP semantics


def allocator_alone(k: Kernel) -> None:
    """Detach reclaim and the OOM killer from the slow path, to test the allocator alone
    (tests that want them set their own hooks)."""
    alloc = k.page_alloc
    alloc.wake_kswapd_hook = alloc.direct_reclaim_hook = alloc.oom_hook = None


def squeeze(k: Kernel, target_of_min) -> list:
    """Bring every populated zone's free pages to target_of_min(zone) by pulling single
    pages out of the buddy lists (as if allocated); returns the pulled pages. The
    allocator is tested alone (see allocator_alone)."""
    allocator_alone(k)
    k.drain_all_pages()
    pulled = []
    for zone in k.page_alloc.zones:
        want = target_of_min(zone)
        while zone.nr_free > want:
            page = k.page_alloc._rmqueue_smallest(zone, 0)
            page._count = 1
            pulled.append(page)
    return pulled


def test_atomic_dips_below_min_where_kernel_fails():
    k = Kernel(KernelConfig(memory="256MiB"))
    dma32 = zone_named(k, "DMA32")
    wmin = dma32.min_wmark()
    assert wmin > 100
    # free = 0.45 x MIN: below MIN and below __GFP_HIGH's 0.5 x MIN, above ATOMIC's 0.375
    squeeze(k, lambda z: (z.min_wmark() * 45) // 100)
    assert k.alloc_pages(G.GFP_KERNEL) is None
    assert k.alloc_pages(G.GFP_NOWAIT) is None  # never sleeps, no reserves (6.x)
    assert k.alloc_pages(G.GFP_KERNEL | G.__GFP_HIGH) is None  # blocking HIGH: 0.5 x MIN
    page = k.alloc_pages(G.GFP_ATOMIC)
    assert page is not None and k.page_alloc.zone_of(page.pfn) is dma32
    assert k.vmstat["pgalloc_fail"] == 3


def test_atomic_floor_is_three_eighths_of_min():
    k = Kernel(KernelConfig(memory="256MiB"))
    dma32 = zone_named(k, "DMA32")
    m = dma32.min_wmark()
    floor = m - m // 2  # __GFP_HIGH: min -= min / 2
    floor -= floor // 4  # non-blocking: min -= min / 4  -> about 0.375 x MIN
    assert floor == m - m // 2 - (m - m // 2) // 4
    # the check is `free > floor + lowmem_reserve` (DMA32's reserve for Normal is 0 here)
    squeeze(k, lambda z: floor if z is dma32 else 0)
    assert k.alloc_pages(G.GFP_ATOMIC) is None
    squeeze(k, lambda z: 0)
    k2 = Kernel(KernelConfig(memory="256MiB"))
    squeeze(k2, lambda z: floor + 1 if z.name == "DMA32" else 0)
    assert k2.alloc_pages(G.GFP_ATOMIC) is not None


def test_watermark_ok_26_high_order_rule():
    k = Kernel(KernelConfig(memory="64MiB", era="2.6"))
    zone = zone_named(k, "DMA32")
    alloc = k.page_alloc
    # free 100 pages all as order-0 blocks: an order-1 request removes them at step o=0
    empty_zone(k, zone)
    for pfn in range(8192, 8392, 2):
        give_block(k, pfn, 0)
    assert zone.nr_free == 100 and zone.free_area[0].nr_free == 100
    assert alloc.zone_watermark_ok(zone, 0, 10, 2, 0)
    assert not alloc.zone_watermark_ok(zone, 1, 10, 2, 0)
    # 6.x: order 1 needs a free block of order >= 1 too
    k6 = Kernel(KernelConfig(memory="64MiB"))
    z6 = zone_named(k6, "DMA32")
    empty_zone(k6, z6)
    for pfn in range(10240, 10440, 2):  # (boot's slab took the pageblocks at 8192-10239)
        give_block(k6, pfn, 0)
    assert k6.page_alloc.zone_watermark_ok(z6, 0, 10, 2, 0)
    assert not k6.page_alloc.zone_watermark_ok(z6, 1, 10, 2, 0)


def test_slow_path_wakes_kswapd_then_reclaims_then_ooms():
    k = Kernel(KernelConfig(memory="256MiB"))
    log = []
    alloc = k.page_alloc
    squeeze(k, lambda z: z.min_wmark() // 2)
    alloc.wake_kswapd_hook = lambda node, order, hz, gfp: log.append(("kswapd", node.nid, order))
    alloc.direct_reclaim_hook = lambda gfp, order, zl, hz: log.append(("reclaim", order)) or 0
    alloc.oom_hook = lambda gfp, order, hz: log.append(("oom", order)) or False
    assert k.alloc_pages(G.GFP_KERNEL) is None
    # kswapd woken at slow-path entry and at each retry; one direct reclaim pass, no
    # progress: the 16-retry budget only applies while reclaim makes progress, so the
    # allocator goes to the OOM killer, which frees nothing
    assert log == [("kswapd", 0, 0), ("kswapd", 0, 0), ("reclaim", 0), ("oom", 0)]
    assert k.vmstat["allocstall_normal"] == 1
    assert k.vmstat["oom_call"] == 1
    assert k.vmstat["kswapd_wake"] == 2


def test_reclaim_progress_lets_the_allocation_succeed():
    k = Kernel(KernelConfig(memory="256MiB"))
    held = squeeze(k, lambda z: z.min_wmark() - 10 if z.name == "DMA32" else 0)

    def reclaim(gfp, order, zl, hz):
        for page in held[-40:]:  # reclaim frees 40 pages: DMA32 rises to MIN + 30
            k.free_pages(page)
        del held[-40:]
        return 40

    k.page_alloc.direct_reclaim_hook = reclaim
    assert k.alloc_pages(G.GFP_KERNEL) is not None
    assert k.vmstat["allocstall_normal"] == 1 and k.vmstat["oom_call"] == 0


def test_noretry_fails_after_one_reclaim_without_oom():
    k = Kernel(KernelConfig(memory="256MiB"))
    calls = []
    squeeze(k, lambda z: z.min_wmark() // 2)
    k.page_alloc.direct_reclaim_hook = lambda *a: calls.append("reclaim") or 0
    k.page_alloc.oom_hook = lambda *a: calls.append("oom") or False
    assert k.alloc_pages(G.GFP_HIGHUSER | G.__GFP_NORETRY | G.__GFP_NOWARN) is None
    assert calls == ["reclaim"]


def test_no_oom_for_costly_orders_or_nofs():
    k = Kernel(KernelConfig(memory="256MiB"))
    calls = []
    squeeze(k, lambda z: z.min_wmark() // 2)
    k.page_alloc.direct_reclaim_hook = lambda *a: 0
    k.page_alloc.oom_hook = lambda *a: calls.append("oom") or False
    assert k.alloc_pages(G.GFP_KERNEL, 4) is None
    assert k.alloc_pages(G.GFP_NOFS) is None
    assert k.alloc_pages(G.GFP_KERNEL | G.__GFP_RETRY_MAYFAIL) is None
    assert calls == []
    assert k.alloc_pages(G.GFP_KERNEL, 3) is None  # order 3 is not costly: OOM is tried
    assert calls == ["oom"]


def test_oom_kill_that_frees_memory_leads_to_success():
    k = Kernel(KernelConfig(memory="256MiB"))
    victim = squeeze(k, lambda z: z.min_wmark() // 2)
    k.page_alloc.direct_reclaim_hook = lambda *a: 0

    def oom(gfp, order, hz):
        for page in victim:
            k.free_pages(page)
        victim.clear()
        return True

    k.page_alloc.oom_hook = oom
    assert k.alloc_pages(G.GFP_KERNEL) is not None
    assert k.vmstat["oom_call"] == 1


def test_nofail_dips_into_reserves_or_panics():
    k = Kernel(KernelConfig(memory="256MiB"))
    squeeze(k, lambda z: z.min_wmark() // 2)
    assert k.alloc_pages(G.GFP_NOFS | G.__GFP_NOFAIL) is not None
    squeeze(k, lambda z: 0)
    with pytest.raises(KernelPanic):
        k.alloc_pages(G.GFP_NOFS | G.__GFP_NOFAIL)


def test_memalloc_context_ignores_watermarks():
    k = Kernel(KernelConfig(memory="256MiB"))
    squeeze(k, lambda z: 5)
    assert k.alloc_pages(G.GFP_KERNEL) is None
    k.page_alloc.pf_memalloc = True
    assert k.alloc_pages(G.GFP_KERNEL) is not None
    k.page_alloc.pf_memalloc = False
    assert k.alloc_pages(G.GFP_KERNEL | G.__GFP_MEMALLOC) is not None


def test_oom_victim_gets_half_min():
    k = Kernel(KernelConfig(memory="256MiB"))
    squeeze(k, lambda z: (z.min_wmark() * 6) // 10)
    assert k.alloc_pages(G.GFP_KERNEL) is None
    assert k.alloc_pages(G.GFP_KERNEL, oom_victim=True) is not None


def test_kswapd_not_woken_when_node_balanced():
    k = Kernel(KernelConfig(memory="256MiB"))
    woken = []
    squeeze(k, lambda z: (z.min_wmark() + z.low_wmark()) // 2)
    k.page_alloc.wake_kswapd_hook = lambda *a: woken.append(a)
    # between MIN and LOW: the fast path fails, the slow path at MIN succeeds, and the
    # node is unbalanced (below HIGH) so kswapd is woken
    assert k.alloc_pages(G.GFP_KERNEL) is not None
    assert len(woken) == 1
    # a GFP without __GFP_KSWAPD_RECLAIM never wakes it
    assert k.alloc_pages(G.GFP_KERNEL & ~G.__GFP_KSWAPD_RECLAIM) is not None
    assert len(woken) == 1


def test_gfp_zero_writes_zero_pages_beneath_the_guest():
    from guestkernel.physmem import ZERO_PAGE

    class Recorder:
        def __init__(self, n):
            self.nr_frames = n
            self.stored = []

        def store(self, pfn, data, from_disk=False):
            self.stored.append((pfn, data is ZERO_PAGE))
            return 1e-6

        def zero(self, pfn):  # (PhysicalMemory.zero: kernel_init_pages zeroes through it)
            return self.store(pfn, ZERO_PAGE)

        def zero_bytes(self, nbytes):  # (PhysicalMemory.zero_bytes: a slab object's memset)
            return 0.0

        def touch(self, pfn, write):
            return 0.0

        def load(self, pfn):
            return ZERO_PAGE

        def release(self, pfn):
            pass

    cfg = KernelConfig(memory="64MiB")
    phys = Recorder(cfg.nr_pages)
    k = Kernel(cfg, phys=phys)
    k.take_stall()
    phys.stored.clear()  # what boot (init) wrote
    page = k.alloc_pages(G.GFP_KERNEL | G.__GFP_ZERO, 1)
    assert phys.stored == [(page.pfn, True), (page.pfn + 1, True)]
    assert k.take_stall() == pytest.approx(2e-6)


# ---------------------------------------------------------------------------- properties


def _snapshot(k):
    return {(z.node.nid, z.name): [sorted(l) for l in free_lists(z)] for z in k.page_alloc.zones}


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 5), st.integers(0, 10**6)), max_size=120),
       st.sampled_from(["6.x", "2.6"]))
def test_random_alloc_free_keeps_invariants(ops, era):
    k = Kernel(KernelConfig(memory="64MiB", cpus=2, era=era))
    k.drain_all_pages()
    initial = _snapshot(k)
    # what boot itself holds (slab caches) stays allocated throughout
    managed = k.page_alloc.nr_free_pages()
    live: list[tuple] = []
    for is_alloc, order, pick in ops:
        if is_alloc or not live:
            gfp = (G.GFP_KERNEL, G.GFP_DMA, G.GFP_ATOMIC, G.GFP_KERNEL | G.__GFP_COLD)[pick % 4]
            page = k.alloc_pages(gfp, order, cpu=pick % 2)
            if page is not None:
                assert page.pfn % (1 << order) == 0
                live.append((page, order))
        else:
            page, o = live.pop(pick % len(live))
            k.free_pages(page, o)
        allocated = sum(1 << o for _, o in live)
        pcp = sum(z.pcp_count() for z in k.page_alloc.zones)
        assert k.page_alloc.nr_free_pages() + pcp + allocated == managed
    validate_buddy(k.page_alloc)
    spans = sorted((p.pfn, p.pfn + (1 << o)) for p, o in live)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no overlap
    for page, o in live:
        k.free_pages(page, o)
    k.drain_all_pages()
    validate_buddy(k.page_alloc)
    assert _snapshot(k) == initial
