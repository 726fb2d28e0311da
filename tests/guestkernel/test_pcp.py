"""6.1's per-CPU page lists (mm/page_alloc.c): NR_PCP_LISTS lists per CPU and zone, one
per (order 0..PAGE_ALLOC_COSTLY_ORDER, PCP migratetype) plus two for pageblock-order
THPs (order_to_pindex); zone_batchsize / zone_highsize; rmqueue_pcplist's refill of
batch >> order blocks; free_unref_page_commit with nr_pcp_high / nr_pcp_free (free_factor,
CONFIG_PCP_BATCH_SCALE_MAX 5, ZONE_RECLAIM_ACTIVE, free_high for orders 1..3) and
free_pcppages_bulk draining whole high-order blocks. The 2.6.20 hot/cold lists are
tested in test_page_alloc.py."""

from __future__ import annotations

import pytest

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import (
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    NR_PCP_LISTS,
    order_to_pindex,
    pindex_to_order,
    validate_buddy,
)

from .test_page_alloc import empty_zone, free_lists, give_block, zone_named

BASE = 65536  # pfn of a 4 MiB-aligned block in the DMA32 zone of a 1 GiB guest


def rounddown_pow_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def zone_batchsize(managed: int) -> int:
    """6.1 zone_batchsize(), as written there."""
    batch = min(managed >> 10, (1 << 20) // 4096) // 4
    batch = max(batch, 1)
    return max(1, rounddown_pow_of_two(batch + batch // 2) - 1)


def test_order_to_pindex_layout():
    # include/linux/mmzone.h: NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (3 + 1) = 12,
    # NR_PCP_THP = 2
    assert NR_PCP_LISTS == 14
    assert [order_to_pindex(mt, o) for o in range(4) for mt in range(3)] == list(range(12))
    assert order_to_pindex(MIGRATE_UNMOVABLE, 9) == 12
    assert order_to_pindex(MIGRATE_RECLAIMABLE, 9) == 12
    assert order_to_pindex(MIGRATE_MOVABLE, 9) == 13
    assert [pindex_to_order(i) for i in range(14)] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 9, 9]


def test_batch_and_high_follow_zone_batchsize_and_zone_highsize():
    k = Kernel(KernelConfig(memory="4GiB", cpus=2))
    a = k.page_alloc
    for zone in a.zones:
        for (pcp,) in zone.pcp:
            assert len(pcp.lists) == 14
            assert pcp.batch == zone_batchsize(zone.managed_pages)
            # zone_highsize: LOW split over the node's 2 CPUs, at least 4 x batch
            assert pcp.high == max(zone.watermark[1] // 2, 4 * pcp.batch)
    dma, dma32 = zone_named(k, "DMA"), zone_named(k, "DMA32")
    # DMA32 >= 1 GiB: min(managed >> 10, 256) = 256 -> 64 -> rounddown(96) - 1 = 63
    assert dma32.managed_pages >> 10 >= 256 and dma32.pcp[0][0].batch == 63
    # DMA (< 4 MiB of pages >> 10 = 3): 3 / 4 = 0 -> 1 -> rounddown(1) - 1 = 0 -> max(1, 0)
    assert dma.managed_pages >> 10 == 3 and dma.pcp[1][0].batch == 1
    # the watermarks change: setup_per_zone_wmarks() -> zone_pcp_update()
    a.set_min_free_kbytes(4 * a.min_free_kbytes)
    assert dma32.pcp[0][0].high == max(dma32.watermark[1] // 2, 4 * 63)
    # vm.percpu_pagelist_high_fraction: managed / fraction, split over the CPUs
    a.set_percpu_pagelist_high_fraction(8)
    assert dma32.pcp[1][0].high == dma32.managed_pages // 8 // 2
    with pytest.raises(ValueError):
        a.set_percpu_pagelist_high_fraction(7)  # below MIN_PERCPU_PAGELIST_HIGH_FRACTION


@pytest.fixture
def world():
    """A 1 GiB one-CPU 6.x guest with an empty DMA32 zone (LOW 24: min_free_kbytes 0,
    watermark_scale_factor 1) and two free 4 MiB blocks, BASE at the head, BASE + 1024."""
    k = Kernel(KernelConfig(memory="1GiB", cpus=1, min_free_kbytes=0, watermark_scale_factor=1))
    k.page_alloc.wake_kswapd_hook = None
    zone = zone_named(k, "DMA32")
    empty_zone(k, zone)
    give_block(k, BASE + 1024, 10)
    give_block(k, BASE, 10)  # at the head of the order-10 list (no merge is likely)
    (pcp,) = zone.pcp[0]
    assert (pcp.high, pcp.batch) == (4 * 63, 63)  # LOW 24 / 1 CPU < 4 x batch
    return k, zone, pcp


def heads(lst) -> list[int]:
    return [p.pfn for p in reversed(lst)]


def test_high_order_refill_take_and_bulk_free(world):
    k, zone, pcp = world
    # order 2, movable: list 3*2 + 1 = 7, refilled with batch >> 2 = 15 blocks by __rmqueue,
    # each added at the tail: ascending from the head; the head is taken
    a = k.alloc_pages(G.GFP_HIGHUSER_MOVABLE, 2)
    assert a.pfn == BASE
    assert heads(pcp.lists[7]) == [BASE + 4 * i for i in range(1, 15)]
    assert pcp.count == 14 * 4 and zone.nr_free == 2048 - 15 * 4  # pcp pages are not free
    # a THP: list 13, refilled with max(63 >> 9, 2) = 2 blocks: the order-9 half of the
    # first 4 MiB block, then the lower half of the second
    b = k.alloc_pages(G.GFP_HIGHUSER_MOVABLE, 9)
    assert b.pfn == BASE + 512 and heads(pcp.lists[13]) == [BASE + 1024]
    assert pcp.count == 56 + 512 and zone.nr_free == 2048 - 60 - 1024
    validate_buddy(k.page_alloc)
    # freeing the THP: count 56 + 1024 >= high 252 -> free_pcppages_bulk(nr_pcp_free =
    # clamp(63 << 0, 63, 189) = 63) from list 13's tail: one whole 512-page block, count
    # below zero ends it; free_factor 0 -> 1
    k.free_pages(b, 9)
    assert heads(pcp.lists[13]) == [BASE + 512] and pcp.count == 56 + 512
    assert pcp.free_factor == 1
    assert zone.nr_free == 2048 - 60 - 512
    # an order-2 free with free_factor set: free_high, high 0, everything goes
    # (nr_pcp_free returns pcp->count)
    k.free_pages(a, 2)
    assert pcp.count == 0 and all(not lst for lst in pcp.lists)
    assert zone.nr_free == 2048 and sorted(free_lists(zone)[10]) == [BASE, BASE + 1024]
    validate_buddy(k.page_alloc)


def test_free_factor_doubles_the_bulk_free_and_allocation_halves_it(world):
    k, zone, pcp = world
    pages = [k.alloc_pages(G.GFP_HIGHUSER_MOVABLE) for _ in range(500)]
    k.drain_all_pages()
    for page in pages:
        k.free_pages(page)
    # frees reach high 252 at the 252nd free: 63 << 0 = 63 go, free_factor 1 (count 189);
    # again at the 315th: 63 << 1 = 126 go, free_factor 2 (count 126); at the 441st:
    # 63 << 2 = 252 is not below high - batch = 189: clamped to 189, free_factor stays 2
    # (count 63); 59 more frees: 122
    assert pcp.count == 500 - 63 - 126 - 189 and pcp.free_factor == 2
    assert zone.nr_free == 2048 - 500 + 63 + 126 + 189
    k.alloc_pages(G.GFP_HIGHUSER_MOVABLE)  # rmqueue_pcplist: free_factor >>= 1
    assert pcp.free_factor == 1 and pcp.count == 121
    validate_buddy(k.page_alloc)


def test_reclaim_active_caps_the_list_at_four_batches():
    k = Kernel(KernelConfig(memory="1GiB", cpus=1, min_free_kbytes=0, watermark_scale_factor=1))
    k.page_alloc.wake_kswapd_hook = None
    a = k.page_alloc
    zone = zone_named(k, "DMA32")
    a.set_percpu_pagelist_high_fraction(8)
    (pcp,) = zone.pcp[0]
    assert pcp.high == zone.managed_pages // 8
    empty_zone(k, zone)
    give_block(k, BASE, 10)
    pages = [k.alloc_pages(G.GFP_HIGHUSER_MOVABLE) for _ in range(300)]
    k.drain_all_pages()
    for page in pages[:260]:
        k.free_pages(page)
    assert pcp.count == 260  # far below high
    # kswapd reclaiming (ZONE_RECLAIM_ACTIVE): nr_pcp_high = min(batch << 2, high) = 252
    a.set_reclaim_active(zone, True)
    k.free_pages(pages[260])
    assert pcp.count == 261 - 63 and pcp.free_factor == 1
    a.set_reclaim_active(zone, False)
    for page in pages[261:]:
        k.free_pages(page)
    assert pcp.count == 300 - 63
    validate_buddy(a)


def test_kswapd_sets_reclaim_active_while_it_runs():
    k = Kernel(KernelConfig(memory="256MiB", cpus=1))
    seen = []
    r = k.reclaim
    orig = r.shrink_node

    def spy(lv, sc):
        seen.append([z.reclaim_active for z in k.page_alloc.zones])
        return orig(lv, sc)

    r.shrink_node = spy
    node = k.page_alloc.nodes[0]
    # a shortfall: ask for more than is free above HIGH
    big = [k.alloc_pages(G.GFP_HIGHUSER_MOVABLE) for _ in range(10)]
    for z in k.page_alloc.zones:
        z.watermark[2] = z.nr_free + 1000
    r.balance_pgdat(node, 0)
    assert seen and all(all(s) for s in seen)
    assert not any(z.reclaim_active for z in k.page_alloc.zones)
    for p in big:
        k.free_pages(p)


def test_drain_takes_lists_round_robin_from_pindex():
    k = Kernel(KernelConfig(memory="1GiB", cpus=1, min_free_kbytes=0, watermark_scale_factor=1))
    a = k.page_alloc
    zone = zone_named(k, "DMA32")
    empty_zone(k, zone)
    give_block(k, BASE, 10)
    (pcp,) = zone.pcp[0]
    o0 = [k.alloc_pages(G.GFP_HIGHUSER_MOVABLE) for _ in range(3)]
    o1 = [k.alloc_pages(G.GFP_HIGHUSER_MOVABLE, 1) for _ in range(2)]
    k.drain_all_pages()
    for p in o0:
        k.free_pages(p)
    for p in o1:
        k.free_pages(p, 1)
    assert [len(lst) for lst in pcp.lists[:6]] == [0, 3, 0, 0, 2, 0] and pcp.count == 7
    # free_pcppages_bulk(count 4, pindex 4): list 4 first, its tail (oldest) first, while
    # count lasts: both order-1 blocks (4 pages); then stop
    a._free_pages_bulk(zone, 4, pcp, 4)
    assert [len(lst) for lst in pcp.lists[:6]] == [0, 3, 0, 0, 0, 0] and pcp.count == 3
    # count 2 from pindex 5: lists 5.. are empty, wrap to 0, then list 1: two oldest
    a._free_pages_bulk(zone, 2, pcp, 5)
    assert heads(pcp.lists[1]) == [o0[2].pfn] and pcp.count == 1
    validate_buddy(a)


def test_pcp_allowed_orders():
    """pcp_allowed_order(): order <= PAGE_ALLOC_COSTLY_ORDER, and pageblock order where
    CONFIG_TRANSPARENT_HUGEPAGE is built (hvsim: x86_64); 2.6.20: order 0 only."""
    assert Kernel(KernelConfig(memory="256MiB")).page_alloc.pcp_orders == {0, 1, 2, 3, 9}
    assert Kernel(KernelConfig(memory="256MiB", arch="i386")).page_alloc.pcp_orders == {0, 1, 2, 3}
    assert Kernel(KernelConfig(memory="256MiB", era="2.6")).page_alloc.pcp_orders == {0}
def test_percpu_pagelist_high_fraction_sysctl():
    """/proc/sys/vm/percpu_pagelist_high_fraction (6.x): 0 by default; 8 or more sets
    pcp->high to managed / fraction over the node's CPUs (at least 4 x batch); 1..7 is
    EINVAL (MIN_PERCPU_PAGELIST_HIGH_FRACTION); 0 goes back to the LOW watermark."""
    k = Kernel(KernelConfig(memory="1GiB", cpus=2))
    dma32 = zone_named(k, "DMA32")
    assert k.procfs.read("/proc/sys/vm/percpu_pagelist_high_fraction") == "0\n"
    k.procfs.write("/proc/sys/vm/percpu_pagelist_high_fraction", "16")
    assert dma32.pcp[0][0].high == dma32.managed_pages // 16 // 2
    with pytest.raises(ValueError, match="EINVAL"):
        k.procfs.write("/proc/sys/vm/percpu_pagelist_high_fraction", "4")
    assert k.procfs.read("/proc/sys/vm/percpu_pagelist_high_fraction") == "16\n"
    k.procfs.write("/proc/sys/vm/percpu_pagelist_high_fraction", "0")
    assert dma32.pcp[0][0].high == max(dma32.watermark[1] // 2, 4 * 63)
