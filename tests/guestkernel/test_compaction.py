"""Compaction (mm/compaction.c and mm/migrate.c of Linux 6.1): scanners, migration,
suitability, deferral, direct compaction in the slow path, kcompactd, compact_memory.

Exact scenarios are built by hand in the DMA zone of a 64 MiB guest with zero watermarks:
pfn 0..4095, pageblocks of 512 (0..7), pfn 0..255 reserved at boot; empty_zone takes every
free block out (as allocated, not on the LRU), and the test places free blocks and LRU
page-cache pages where the scanners' rules make the result follow.

    pageblock  0        1        2  3  4  5        6        7
    pfn        0        512      1024 ...          3072     3584
               rrrr.... ..F.F..F                   ff.f     ........
    (r reserved, . allocated not LRU, F LRU file page, f free block)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel.compaction import CompactControl, Compaction
from guestkernel.config import KernelConfig
from guestkernel.filemap import AddressSpace
from guestkernel.kernel import Kernel
from guestkernel.migrate import MIGRATE_SYNC
from guestkernel.page import PG_active, PG_lru, PG_uptodate
from guestkernel.page_alloc import (
    COMPACT_COMPLETE,
    COMPACT_CONTINUE,
    COMPACT_SKIPPED,
    COMPACT_SUCCESS,
    MIGRATE_MOVABLE,
    validate_buddy,
)

from .test_page_alloc import empty_zone, free_lists, give_block, zone_named

FIXTURE = Path(__file__).parent.parent / "data" / "compaction" / "compact_memory.txt"
COUNTERS = ("pgmigrate_success", "pgmigrate_fail", "compact_migrate_scanned", "compact_free_scanned",
            "compact_isolated", "compact_stall", "compact_fail", "compact_success",
            "compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned")


@pytest.fixture
def dma():
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1))
    zone = zone_named(k, "DMA")
    assert zone.watermark == [0, 0, 0]
    empty_zone(k, zone)
    return k, zone


class _Host:
    """An inode stand-in for a page-cache mapping."""


def file_page(k, mapping, pfn: int, index: int, data: bytes):
    """Make the (allocated) page at pfn a clean, unmapped page-cache page on the LRU."""
    page = k.pfn_to_page(pfn)
    page._count = 1  # the page cache's reference
    page.mapping, page.index = mapping, index
    page.flags |= PG_uptodate
    mapping.pages[index] = page
    k.phys.store(pfn, data)
    k.reclaim.lru_cache_add(page)
    assert page.flags & PG_lru
    return page


def counters(k) -> dict:
    return {n: k.vmstat[n] for n in COUNTERS}


def delta(k, before) -> dict:
    return {n: k.vmstat[n] - before[n] for n in COUNTERS if k.vmstat[n] != before[n]}


# ---------------------------------------------------------------------------- the scanners


def test_compact_zone_whole_zone_sync_exact(dma):
    k, zone = dma
    c = k.compaction
    mapping = AddressSpace(_Host())
    data = {600: b"A" * 4096, 601: b"B" * 4096, 700: b"C" * 4096}
    for i, (pfn, d) in enumerate(data.items()):
        file_page(k, mapping, pfn, i, d)
    give_block(k, 3072, 3)  # 8 free pages
    give_block(k, 3200, 2)  # 4 free pages
    before = counters(k)
    cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC, whole_zone=True, ignore_skip_hint=True)
    assert c.compact_zone(cc) == COMPACT_COMPLETE
    # migrate scanner, one pageblock per isolate_migratepages: block 0 (512 pfns, nothing),
    # block 1 (512 pfns; 600, 601, 700 isolated, fewer than COMPACT_CLUSTER_MAX), then the
    # free scanner from the last pageblock: block 7 (512 pfns, no free page; stride then
    # doubles to 2), block 6: the order-3 block at 3072 (1 + 7 scanned) is enough for 3.
    # split_map_pages hands out 3079 first; migrate_pages takes the isolated list from its
    # head (the last isolated): 700 -> 3079, 601 -> 3078, 600 -> 3077. The migrate scanner
    # goes on over blocks 2..5 (4 x 512) and meets the free scanner (3080) in block 6.
    assert delta(k, before) == {
        "pgmigrate_success": 3,
        "compact_migrate_scanned": 512 * 6,
        "compact_free_scanned": 512 + 8,
        "compact_isolated": 3 + 8,
    }
    moved = {3079: 700, 3078: 601, 3077: 600}
    for new, old in moved.items():
        page = k.mem_map[new]
        assert mapping.pages[page.index] is page and page.flags & PG_lru
        assert k.phys.load(new) == data[old]  # the copy the host sees
        assert not k.mem_map[old].flags & PG_lru and k.mem_map[old]._count == 0
    # the old frames are free (600 + 601 merged), and so are the unused targets
    # 3072..3076 (released: order 2 + order 0); the order-2 block at 3200 was not touched
    k.drain_all_pages()
    free = free_lists(zone)
    assert 600 in free[1] and 700 in free[0]
    assert 3072 in free[2] and 3076 in free[0] and 3200 in free[2]
    assert zone.compact_cached_free_pfn == 3584  # reset_cached_positions at the meeting
    validate_buddy(k.page_alloc)
    k.reclaim.validate()


def test_pinned_and_non_lru_pages_are_not_isolated(dma):
    k, zone = dma
    c = k.compaction
    mapping = AddressSpace(_Host())
    pinned = file_page(k, mapping, 600, 0, b"P" * 4096)
    pinned.flags |= 1 << 1  # PG_writeback: async isolation skips it, migration fails
    give_block(k, 3072, 3)
    before = counters(k)
    cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC, whole_zone=True, ignore_skip_hint=True)
    c.compact_zone(cc)
    d = delta(k, before)
    # sync mode isolates a page under writeback, migrate_pages then fails it (-EBUSY)
    assert d["pgmigrate_fail"] == 1 and "pgmigrate_success" not in d
    assert k.mem_map[600] is pinned and pinned.flags & PG_lru and mapping.pages[0] is pinned


# ---------------------------------------------------------------------------- suitability


def test_fragmentation_index_formula(dma):
    k, zone = dma
    c = k.compaction
    # 8 free order-0 pages and 2 free order-1 blocks: 12 pages in 10 blocks
    for pfn in range(1024, 1040, 2):
        give_block(k, pfn, 0)
    give_block(k, 2048, 1)
    give_block(k, 2052, 1)
    # order 2 (4 pages): 1000 - (1000 + 12 * 1000 / 4) / 10 = 1000 - 4000 / 10 = 600
    assert Compaction.fragmentation_index(zone, 2) == 600
    # order 1 has a suitable block: -1000
    assert Compaction.fragmentation_index(zone, 1) == -1000
    # order 4 (16 pages): 1000 - (1000 + 12000 / 16) / 10 = 1000 - 1750 / 10 = 825
    assert Compaction.fragmentation_index(zone, 4) == 825
    # compaction_suitable for costly order 4: LOW 0 + compact_gap 32 >= 12 free: skipped
    assert c.compaction_suitable(zone, 4, 0, 0) == COMPACT_SKIPPED
    for i in range(40):  # 40 more single pages: 52 pages in 50 blocks
        give_block(k, 2561 + 2 * i, 0)
    # 1000 - (1000 + 52000 / 16) / 50 = 1000 - 4250 / 50 = 915 > extfrag_threshold 500
    assert Compaction.fragmentation_index(zone, 4) == 915
    assert c.compaction_suitable(zone, 4, 0, 0) == COMPACT_CONTINUE
    k.procfs.write("/proc/sys/vm/extfrag_threshold", "915")
    assert c.compaction_suitable(zone, 4, 0, 0) == COMPACT_SKIPPED  # fragindex <= threshold
    # a met watermark for the order: nothing to do
    assert c.compaction_suitable(zone, 1, 0, 0) == COMPACT_SUCCESS


def test_deferral_backs_off_exponentially():
    class Z:
        compact_considered = 0
        compact_defer_shift = 0
        compact_order_failed = 0

    z = Z()
    # never failed: not deferred
    assert not Compaction.compaction_deferred(z, 2)
    Compaction.defer_compaction(z, 2)  # shift 1: the next 1 attempt is skipped
    assert (z.compact_defer_shift, z.compact_order_failed) == (1, 0)
    assert [Compaction.compaction_deferred(z, 2) for _ in range(3)] == [True, False, False]
    Compaction.defer_compaction(z, 2)  # shift 2: skip 3 of 4
    assert [Compaction.compaction_deferred(z, 2) for _ in range(5)] == [True, True, True, False, False]
    for _ in range(10):
        Compaction.defer_compaction(z, 2)
    assert z.compact_defer_shift == 6  # COMPACT_MAX_DEFER_SHIFT
    # a success at order 2 resets; orders below compact_order_failed are never deferred
    Compaction.compaction_defer_reset(z, 2, True)
    assert (z.compact_considered, z.compact_defer_shift, z.compact_order_failed) == (0, 0, 3)
    z.compact_defer_shift = 3
    assert not Compaction.compaction_deferred(z, 2)


# ---------------------------------------------------------------------------- direct compaction


def test_direct_compaction_in_the_slow_path_makes_the_block(dma):
    k, zone = dma
    a = k.page_alloc
    a.wake_kswapd_hook = a.direct_reclaim_hook = a.oom_hook = None
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1024, 0, b"M" * 4096)
    give_block(k, 1025, 0)
    give_block(k, 1026, 1)
    give_block(k, 3072, 1)
    for i in range(10):  # scattered free pages: enough order-0 pages for compact_gap(2)
        give_block(k, 2561 + 2 * i, 0)
    before = counters(k)
    page = k.alloc_pages(G.GFP_HIGHUSER_MOVABLE | G.GFP_DMA, 2)
    # no free order-2 block; reclaim finds nothing; direct compaction (async, movable
    # pageblocks): 1024 moves to 3073, its frame frees and merges with 1025..1027, and the
    # migrate scanner finishes pageblock 2 before compact_finished finds the block
    assert page is not None and page.pfn == 1024
    d = delta(k, before)
    assert d["compact_stall"] == 1 and d["compact_success"] == 1 and d["pgmigrate_success"] == 1
    assert mapping.pages[0] is k.mem_map[3073] and k.phys.load(3073) == b"M" * 4096
    assert zone.compact_considered == 0 and zone.compact_order_failed == 3  # defer reset
    validate_buddy(a)


def test_no_compaction_in_the_2_6_era():
    k = Kernel(KernelConfig(memory="64MiB", era="2.6"))
    assert k.compaction is None and k.page_alloc.compaction is None
    assert not k.procfs.exists("/proc/sys/vm/compact_memory")


# ---------------------------------------------------------------------------- procfs, kcompactd


def test_compact_memory_and_sysctls():
    k = Kernel(KernelConfig(memory="64MiB"))
    assert k.procfs.read("/proc/sys/vm/extfrag_threshold") == "500\n"
    with pytest.raises(ValueError):
        k.procfs.write("/proc/sys/vm/extfrag_threshold", "1001")
    with pytest.raises(PermissionError):
        k.procfs.read("/proc/sys/vm/compact_memory")
    k.procfs.write("/proc/sys/vm/compact_memory", "1")
    assert k.vmstat["compact_migrate_scanned"] > 0


def _fixture_vmstat(which: str) -> dict:
    text = FIXTURE.read_text()
    section = text.split(f"== vmstat {which} ==\n")[1].split("==")[0]
    return {n: int(v) for n, v in (line.split() for line in section.splitlines() if line)}


def test_compact_memory_moves_the_counters_as_the_real_kernel_does():
    # this machine's kernel: compact_memory raised the scanners', isolation and migration
    # counters, and left the direct-compaction and kcompactd ones alone
    real_before, real_after = _fixture_vmstat("before"), _fixture_vmstat("after")
    real_up = {n for n in real_before if real_after[n] > real_before[n]}
    real_same = {n for n in real_before if real_after[n] == real_before[n]}
    assert {"compact_migrate_scanned", "compact_free_scanned", "compact_isolated", "pgmigrate_success"} <= real_up
    # an hvsim guest with fragmented memory: anonymous pages written, every other one dropped
    k = Kernel(KernelConfig(memory="128MiB"))
    t = k.spawn("frag")
    import guestkernel.uapi as U

    size = 32 << 20
    addr = t.mmap(0, size, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS, -1, 0)
    for off in range(0, size, 4096):
        t.access(addr + off, True, (off // 4096).to_bytes(4, "little") * 8)
    for off in range(0, size, 8192):
        t.madvise(addr + off, 4096, U.MADV_DONTNEED)
    kept = {off: (off // 4096).to_bytes(4, "little") * 8 for off in range(4096, size, 8192)}
    pfns_before = {off: t.mm.pgtable.ptes[(addr + off) >> 12] >> 12 for off in kept}
    k.drain_all_pages()
    top_before = sum(z.free_area[10].nr_free for z in k.page_alloc.zones)
    before = counters(k)
    k.procfs.write("/proc/sys/vm/compact_memory", "1")
    up = {n for n in COUNTERS if k.vmstat[n] > before[n]}
    same = {n for n in COUNTERS if k.vmstat[n] == before[n]}
    # pgmigrate_fail aside (36 real failures: pages pinned or busy at that instant)
    either = {"pgmigrate_fail"}
    assert up - either == (real_up & set(COUNTERS)) - either
    assert same - either == (real_same & set(COUNTERS)) - either
    # the number of free order-10 blocks does not fall (real: 1519 -> 2213 in Normal)
    assert sum(z.free_area[10].nr_free for z in k.page_alloc.zones) > top_before
    # the process still reads its data, through PTEs that now map other frames
    moved = sum(t.mm.pgtable.ptes[(addr + off) >> 12] >> 12 != pfn for off, pfn in pfns_before.items())
    assert moved == k.vmstat["pgmigrate_success"] - before["pgmigrate_success"] > 0
    assert all(t.peek(addr + off, 32) == data for off, data in kept.items())
    validate_buddy(k.page_alloc)
    from guestkernel.memory import validate_pages

    validate_pages(k)


def test_kcompactd_work_compacts_for_the_order_kswapd_asked(dma):
    k, zone = dma
    c = k.compaction
    node = zone.node
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1024, 0, b"K" * 4096)
    give_block(k, 1025, 0)
    give_block(k, 1026, 1)
    give_block(k, 3072, 1)
    for i in range(10):
        give_block(k, 2561 + 2 * i, 0)
    # no kcompactd thread without a simulation: wakeup records the order only
    assert not c.wakeup_kcompactd(node, 0, 0)
    assert not c.wakeup_kcompactd(node, 2, 0) and node.kcompactd_max_order == 2
    before = counters(k)
    c.kcompactd_do_work(node)
    # MIGRATE_SYNC_LIGHT from the zone start (whole zone): blocks 0, 1 and 2 scanned
    # (1024 isolated; in block 2 the free order-1 block at 1026 counts once, its second
    # page is stepped over: 3 * 512 - 1); the free scanner's fast_isolate_freepages
    # (order 2 > 0): search order 1, scan start (free_pfn 3584 >= compact_init_free_pfn 0,
    # limit 256), low_pfn = pageblock_start(3584 - 3584/4) = 2560, min_pfn 1536; the
    # MOVABLE order-1 list from its tail: 1026 (below min_pfn), 3072 (>= low_pfn: taken,
    # 2 scanned + 1 for its second page); enough targets, so no fast_isolate_around and no
    # linear scan; 1024 -> 3073; its freed frame merges into an order-2 block at 1024, and
    # at the end of pageblock 2 compact_finished finds it on the MOVABLE list: SUCCESS
    assert delta(k, before) == {
        "compact_daemon_wake": 1,
        "pgmigrate_success": 1,
        "compact_migrate_scanned": 3 * 512 - 1,
        "compact_daemon_migrate_scanned": 3 * 512 - 1,
        "compact_free_scanned": 2 + 1,
        "compact_daemon_free_scanned": 2 + 1,
        "compact_isolated": 1 + 2,
    }
    assert mapping.pages[0] is k.mem_map[3073]
    assert node.kcompactd_max_order == 0
    assert 1024 in free_lists(zone, MIGRATE_MOVABLE)[2]
    assert zone.compact_order_failed == 3  # compaction_defer_reset(zone, 2, false)
    validate_buddy(k.page_alloc)


def test_kswapd_going_to_sleep_wakes_kcompactd():
    import simpy

    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1), env=env)
    zone = zone_named(k, "DMA")
    empty_zone(k, zone)
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1024, 0, b"K" * 4096)
    give_block(k, 1025, 0)
    give_block(k, 1026, 1)
    give_block(k, 3072, 1)
    for i in range(10):
        give_block(k, 2561 + 2 * i, 0)
    node = zone.node
    kd = k.compaction.kcompactd[node.nid]
    # kswapd_try_to_sleep on a balanced node after an order-2 wakeup for DMA
    k.kswapd_sleep_hook(node, 2, 0)
    env.run(until=1.0)
    assert kd.wakeups == 1 and k.vmstat["compact_daemon_wake"] == 1
    assert 1024 in free_lists(zone, MIGRATE_MOVABLE)[2]
    # an order-0 sleep wakes nothing
    k.kswapd_sleep_hook(node, 0, 0)
    env.run(until=2.0)
    assert kd.wakeups == 1


def test_a_balanced_node_leaves_a_non_reclaiming_high_order_request_to_kcompactd():
    import simpy

    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1), env=env)
    a = k.page_alloc
    for z in a.zones:
        empty_zone(k, z)
    zone = zone_named(k, "DMA")
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1024, 0, b"T" * 4096)
    give_block(k, 1025, 0)
    give_block(k, 1026, 1)
    give_block(k, 3072, 1)
    for i in range(10):
        give_block(k, 2561 + 2 * i, 0)
    kd = k.compaction.kcompactd[zone.node.nid]
    # GFP_TRANSHUGE_LIGHT-like: no direct reclaim, wakes kswapd; order 2 fails (no block)
    gfp = (G.GFP_HIGHUSER_MOVABLE | G.GFP_DMA | G.__GFP_KSWAPD_RECLAIM) & ~G.__GFP_DIRECT_RECLAIM
    # the node is balanced at order 0 (zero watermarks) but not at order 2: kswapd is woken
    # (it cannot make the block); a node balanced at the order wakes kcompactd instead
    assert not a.node_balanced(zone.node, 2, 0)
    zone.node.kswapd_failures = 16  # hopeless for kswapd (MAX_RECLAIM_RETRIES)
    assert k.alloc_pages(gfp, 2) is None
    env.run(until=1.0)
    assert kd.wakeups == 1 and k.vmstat["compact_daemon_wake"] == 1
    assert 1024 in free_lists(zone, MIGRATE_MOVABLE)[2]


@settings(max_examples=12, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(1, 8), st.booleans()), min_size=4, max_size=40),
       st.integers(0, 2**32 - 1))
def test_compaction_keeps_every_invariant_and_every_byte(ops, seed):
    # random anonymous mappings written with known bytes, some unmapped again, a fork
    # (pages mapped twice), then compact_memory: the buddy, the page tables' mapcounts,
    # the LRU and every byte a process reads are as before
    import guestkernel.uapi as U
    from guestkernel.memory import validate_pages

    k = Kernel(KernelConfig(memory="64MiB"))
    t = k.spawn("p")
    size = 256 * 4096
    base = t.mmap(0, size, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS, -1, 0)
    data = {}
    for page, n, unmap in ops:
        for i in range(page, min(page + n, 256)):
            addr = base + i * 4096
            if unmap:
                t.munmap(addr, 4096)
                data.pop(i, None)
            else:
                t.mmap(addr, 4096, U.PROT_READ | U.PROT_WRITE,
                       U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED, -1, 0)
                word = ((seed + i) & 0xFFFFFFFF).to_bytes(4, "little") * 4
                t.access(addr, True, word)
                data[i] = word
    child = k.tasks[t.fork()]
    k.drain_all_pages()
    k.procfs.write("/proc/sys/vm/compact_memory", "1")
    validate_buddy(k.page_alloc)
    validate_pages(k)
    k.reclaim.validate()
    for i, word in data.items():
        assert t.peek(base + i * 4096, 16) == word
        assert child.peek(base + i * 4096, 16) == word


def test_transparent_huge_pages_are_not_migrated_and_are_skipped_whole():
    # a THP's subpages sit on the LRU one by one (huge_memory.py) but are one compound
    # page: isolate_migratepages_block skips it whole from its head (PageCompound)
    import guestkernel.uapi as U
    from guestkernel.memory import validate_pages

    k = Kernel(KernelConfig(memory="256MiB"))
    t = k.spawn("t")
    base = 0x40000000
    t.mmap(base, 1024 * 4096, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.madvise(base, 1024 * 4096, U.MADV_HUGEPAGE)
    t.access(base, True, b"\x07" * 16)
    head = t.mm.pgtable.ptes[base >> 12] >> 12
    assert head % 512 == 0 and k.vmstat["thp_fault_alloc"] == 1
    small = t.mmap(0, 64 * 4096, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(64):
        t.access(small + i * 4096, True, bytes([i]) * 16)
    for i in range(0, 64, 2):
        t.madvise(small + i * 4096, 4096, U.MADV_DONTNEED)
    k.procfs.write("/proc/sys/vm/compact_memory", "1")
    assert all(t.mm.pgtable.ptes[(base >> 12) + i] >> 12 == head + i for i in range(512))
    assert t.peek(base, 16) == b"\x07" * 16
    assert all(t.peek(small + i * 4096, 16) == bytes([i]) * 16 for i in range(1, 64, 2))
    validate_pages(k)
    validate_buddy(k.page_alloc)


# ---------------------------------------------------------------------------- putback and aging


def test_compaction_putback_and_migration_do_not_age_the_workingset(dma):
    """putback_movable_pages and migrate_pages' folio_putback_lru go through folio_add_lru,
    which never calls workingset_age_nonresident (only reclaim's move_folios_to_lru ages
    the LRU for the active pages it puts back)."""
    k, zone = dma
    c = k.compaction
    mapping = AddressSpace(_Host())
    moved = file_page(k, mapping, 600, 0, b"A" * 4096)
    stays = file_page(k, mapping, 601, 1, b"B" * 4096)
    for page in (moved, stays):
        k.reclaim.activate_page(page)
        assert page.flags & PG_active
    stays.flags |= 1 << 1  # PG_writeback: isolated in sync mode, fails, is put back
    give_block(k, 3072, 3)
    give_block(k, 3200, 2)  # __isolate_free_page keeps MIN + the block free: 4 more
    lv = k.reclaim.lruvec_of(moved)
    age = lv.nonresident_age
    before = counters(k)
    cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC, whole_zone=True, ignore_skip_hint=True)
    c.compact_zone(cc)
    d = delta(k, before)
    assert d["pgmigrate_success"] == 1 and d["pgmigrate_fail"] == 1
    new = mapping.pages[0]
    assert new.pfn != 600 and new.flags & PG_lru
    assert lv.nonresident_age == age
    k.reclaim.validate()


# ---------------------------------------------------------------------------- capture


def _record_captures(a):
    got = []
    orig = a._capture

    def capture(capc, zone, pfn, order, mt):
        ok = orig(capc, zone, pfn, order, mt)
        got.append((pfn, order, mt, ok))
        return ok

    a._capture = capture
    return got


def test_direct_compaction_captures_the_block_its_migration_frees(dma):
    """compact_zone_order installs a capture_control; __free_one_page, draining the
    migrated page's old frame (check_drain), merges 1024 + 1025 + 1026..1027 and at the
    requested order hands the block to the compactor (compaction_capture) instead of
    freeing it: the allocation gets it, prepped, without a free-list search."""
    k, zone = dma
    a = k.page_alloc
    a.wake_kswapd_hook = a.direct_reclaim_hook = a.oom_hook = None
    a.set_pageblock_migratetype(1024, 0)  # pageblock 2 UNMOVABLE
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1024, 0, b"U" * 4096)
    give_block(k, 1025, 0)
    give_block(k, 1026, 1)
    give_block(k, 3072, 1)  # the target: async free scanning strides 32 pfns from 3072
    for i in range(10):  # scattered free pages: enough order-0 pages for compact_gap(2)
        give_block(k, 2561 + 2 * i, 0)
    got = _record_captures(a)
    before = counters(k)
    page = k.alloc_pages(G.GFP_KERNEL | G.GFP_DMA, 2)
    assert page is not None and page.pfn == 1024 and page._count == 1
    # the drained frame 1024 merged with 1025 (order 1) and 1026..1027 (order 2): only the
    # requested order is offered to compaction_capture, and taken (UNMOVABLE pageblock)
    assert got == [(1024, 2, 0, True)]
    d = delta(k, before)
    assert d["compact_stall"] == 1 and d["compact_success"] == 1 and d["pgmigrate_success"] == 1
    assert "compact_fail" not in d
    assert a.capture_control is None  # uninstalled after the run
    assert 1024 not in [p for lst in free_lists(zone) for p in lst]
    validate_buddy(a)


def test_no_capture_below_pageblock_order_from_a_movable_pageblock(dma):
    """compaction_capture: order < pageblock_order from a MOVABLE pageblock is not
    captured (the request would pollute a movable pageblock): the allocation then finds
    the block on the free lists (test_direct_compaction_in_the_slow_path_makes_the_block)."""
    k, zone = dma
    a = k.page_alloc
    a.wake_kswapd_hook = a.direct_reclaim_hook = a.oom_hook = None
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1024, 0, b"M" * 4096)
    give_block(k, 1025, 0)
    give_block(k, 1026, 1)
    give_block(k, 3072, 1)
    for i in range(10):
        give_block(k, 2561 + 2 * i, 0)
    got = _record_captures(a)
    page = k.alloc_pages(G.GFP_HIGHUSER_MOVABLE | G.GFP_DMA, 2)
    assert page is not None and page.pfn == 1024
    assert (1024, 2, MIGRATE_MOVABLE, False) in got and not any(ok for *_x, ok in got)
    validate_buddy(a)


# ---------------------------------------------------------------------------- fast searches


def _cc(zone, order, *, direct=False, mode=MIGRATE_SYNC, migrate_pfn=0, free_pfn=3584, nr_migrate=4,
        gfp=G.GFP_HIGHUSER_MOVABLE):
    cc = CompactControl(zone, order, gfp, mode, direct_compaction=direct)
    cc.migratetype = MIGRATE_MOVABLE if gfp & G.MOVABLE else 0
    cc.migrate_pfn, cc.free_pfn, cc.nr_migratepages = migrate_pfn, free_pfn, nr_migrate
    return cc


def test_fast_isolate_freepages_takes_the_highest_in_the_top_half(dma):
    """fast_isolate_freepages: order 4 searches from order 3 (search_order = min(order - 1,
    search_order)); low_pfn = pageblock_start(3584 - 3584/4) = 2560, min_pfn = 1536. The
    order-3 MOVABLE list from its tail: 512 (below min_pfn), 2048 (in the top half, below
    low_pfn: the candidate, limit halves); none at or above low_pfn, so 2048 is taken; the
    order-2 block at 3200 (above low_pfn) is not reached: one order is searched per call
    once a page is found."""
    k, zone = dma
    c = k.compaction
    give_block(k, 512, 3)
    give_block(k, 2048, 3)
    give_block(k, 3200, 2)
    cc = _cc(zone, 4)
    blocks = []
    before = k.vmstat["compact_isolated"]
    assert c.fast_isolate_freepages(cc, blocks) == 2048
    assert [(p.pfn, o) for p, o in blocks] == [(2048, 3)]
    assert cc.nr_freepages == 8 and k.vmstat["compact_isolated"] - before == 8
    assert cc.total_free_scanned == 2 + 7  # two entries, and the block's other 7 pages
    assert cc.search_order == 3 and cc.fast_search_fail == 0
    assert free_lists(zone, MIGRATE_MOVABLE)[3] == [512] and free_lists(zone, MIGRATE_MOVABLE)[2] == [3200]
    validate_buddy(k.page_alloc)


def test_fast_isolate_freepages_failure_round_robin_and_fallbacks(dma):
    """Nothing in the top half: every order from search_order 3 down to 0 is searched,
    next_search_order wraps to order - 1 = 3 = search_order, which then steps down to 2 for
    the next call; fast_search_fail counts the miss. At the scan's start a direct
    compactor goes on from min_pfn (1536), kcompactd from where it was."""
    k, zone = dma
    c = k.compaction
    give_block(k, 512, 3)
    give_block(k, 520, 2)
    cc = _cc(zone, 4)
    assert c.fast_isolate_freepages(cc, []) == 3584 and cc.free_pfn == 3584
    assert cc.search_order == 2 and cc.fast_search_fail == 1 and cc.nr_freepages == 0
    assert cc.total_free_scanned == 2
    cc = _cc(zone, 4, direct=True, mode=0)
    assert c.fast_isolate_freepages(cc, []) == 1536 and cc.free_pfn == 1536
    # order <= 0 (compact_memory, proactive) does no fast search
    cc = _cc(zone, -1)
    assert c.fast_isolate_freepages(cc, []) == 3584 and cc.total_free_scanned == 0
    # after a skip-hint reset set compact_init_free_pfn, a search below it is not a scan
    # start: limit = max(1, freelist_scan_limit / 2) = 16 and no fallback pfn
    zone.compact_init_free_pfn = 3584
    cc = _cc(zone, 4, direct=True, mode=0, free_pfn=3072)
    assert c.fast_isolate_freepages(cc, []) == 3072
    assert c.freelist_scan_limit(cc) == (32 >> 1) + 1  # fast_search_fail 1 now


def test_fast_find_migrateblock_picks_a_partly_free_movable_pageblock(dma):
    """fast_find_migrateblock, kcompactd at order 9 from the zone start: high_pfn =
    pageblock_start(0 + (3584 - 0) / 2) = 1536; the MOVABLE lists of orders 8..3 from their
    heads: 2048 (not below high_pfn), then 1040 (below, pageblock 2 not skipped): migrate
    from pageblock 2, which is marked skipped, and fast_start_pfn remembers 1040."""
    k, zone = dma
    c = k.compaction
    give_block(k, 2048, 4)
    give_block(k, 1040, 4)
    a = k.page_alloc
    lst = zone.free_area[4].free_list[MIGRATE_MOVABLE]
    assert lst.pfns() == [1040, 2048]  # freed at the head, 1040 last
    cc = _cc(zone, 9)
    assert c.fast_find_migrateblock(cc) == 1024
    assert a.pageblock_skip[2] == 1 and cc.fast_start_pfn == 1040 and cc.fast_search_fail == 0
    assert cc.total_migrate_scanned == 1
    assert lst.pfns() == [2048, 1040]  # move_freelist_tail: the one taken goes last
    # 6.1 marks the found pageblock skipped before isolate_migratepages_block, whose own
    # skip test at the pageblock start then abandons it (fixed upstream in 6.3 by not
    # marking it): the migrate scanner ends past pageblock 2, nothing isolated
    mapping = AddressSpace(_Host())
    file_page(k, mapping, 1030, 0, b"x" * 4096)
    cc = _cc(zone, 9, nr_migrate=0)
    a.pageblock_skip[2] = 0
    assert not c.isolate_migratepages(cc)
    assert cc.migrate_pfn == 1536 and cc.nr_migratepages == 0


def test_fast_find_migrateblock_when_it_does_not_search_and_when_it_fails(dma):
    k, zone = dma
    c = k.compaction
    give_block(k, 1040, 4)
    for cc in (_cc(zone, 3),  # order <= PAGE_ALLOC_COSTLY_ORDER: linear scan
               _cc(zone, 9, direct=True, gfp=G.GFP_KERNEL),  # direct, not movable
               _cc(zone, 9, migrate_pfn=1030)):  # not at a pageblock start: a continuation
        pfn = cc.migrate_pfn
        assert c.fast_find_migrateblock(cc) == pfn and cc.fast_search_fail == 0
    cc = _cc(zone, 9)
    cc.ignore_skip_hint = True
    assert c.fast_find_migrateblock(cc) == 0
    # nothing below high_pfn: a miss; the linear scan restarts at fast_start_pfn once
    k.page_alloc.pageblock_skip[2] = 1
    cc = _cc(zone, 9, migrate_pfn=512)
    cc.fast_start_pfn = 700
    assert c.fast_find_migrateblock(cc) == 700 and cc.migrate_pfn == 700
    assert cc.fast_search_fail == 1 and cc.fast_start_pfn == 1 << 62
    cc.migrate_pfn = 1024
    assert c.fast_find_migrateblock(cc) == 1024  # used once only


# ---------------------------------------------------------------------------- balloon pages


def test_compaction_migrates_balloon_pages_through_the_driver():
    """Balloon compaction (6.1 isolate_migratepages_block -> isolate_movable_page ->
    balloon_page_isolate; migrate_pages -> virtballoon_migratepage): the layout of
    test_compact_zone_whole_zone_sync_exact with balloon pages at 600, 601 and 700: the same
    scan and the same targets (700 -> 3079, 601 -> 3078, 600 -> 3077); each new page is
    enqueued at the balloon list's head and inflated to the host before the old one is
    deflated; no bytes are copied; pgmigrate_success and balloon_migrate count 3."""
    from guestkernel.balloon import BalloonDriver
    from guestkernel.page import PG_balloon
    from guestkernel.physmem import BareMetal

    events = []

    class Phys(BareMetal):
        def release(self, pfn, kind=1):
            events.append(("inflate", pfn))
            return super().release(pfn, kind)

        def reuse(self, pfn):
            events.append(("deflate", pfn))

        def copy(self, dst, src):
            events.append(("copy", dst, src))
            return super().copy(dst, src)

    cfg = KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1)
    k = Kernel(cfg, phys=Phys(cfg.nr_pages))
    zone = zone_named(k, "DMA")
    empty_zone(k, zone)
    d = BalloonDriver(k)
    for pfn in (600, 601, 700):  # inflated earlier: allocated, marked, on the list
        page = k.pfn_to_page(pfn)
        page._count = 1  # the balloon's reference
        page.flags |= PG_balloon
        d.pages.add(page)
    give_block(k, 3072, 3)
    give_block(k, 3200, 2)
    before = counters(k)
    v0 = k.vmstat.get("balloon_migrate", 0)
    cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC, whole_zone=True, ignore_skip_hint=True)
    assert k.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert delta(k, before) == {
        "pgmigrate_success": 3,
        "compact_migrate_scanned": 512 * 6,
        "compact_free_scanned": 512 + 8,
        "compact_isolated": 3 + 8,
    }
    assert k.vmstat["balloon_migrate"] - v0 == 3
    assert events == [("inflate", 3079), ("deflate", 700), ("inflate", 3078), ("deflate", 601),
                      ("inflate", 3077), ("deflate", 600)]
    assert d.pages.pfns() == [3077, 3078, 3079] and d.actual == 3 and d.isolated_pages == 0
    for pfn in (3077, 3078, 3079):
        page = k.mem_map[pfn]
        assert page.flags & PG_balloon and not page.flags & PG_lru and page._count == 1
    k.drain_all_pages()
    for pfn in (600, 601, 700):
        assert not k.mem_map[pfn].flags & PG_balloon and k.mem_map[pfn]._count == 0
    free = free_lists(zone)
    assert 600 in free[1] and 700 in free[0]
    validate_buddy(k.page_alloc)


def test_a_skip_hint_reset_clears_only_blocks_worth_scanning_and_restarts_there(dma):
    # __reset_isolation_suitable (6.1): only with compact_blockskip_flush; the migrate
    # side from pfn 0, the free side from the zone's last pfn 4095, a pageblock a step
    # each, sampling every 8th page (__reset_isolation_pfn): block 1 holds an LRU page at
    # 600 (offset 88), block 6 a free block at 3072: their bits are cleared and they
    # become the scanners' starts (compact_init_*_pfn; the free side's is its pfn,
    # 3583); blocks 2-5 (bits set, nothing on the LRU or free) keep their bits; the
    # walk ends when the sides pass (2048 > 2047)
    k, zone = dma
    c = k.compaction
    a = k.page_alloc
    file_page(k, AddressSpace(_Host()), 600, 0, b"A" * 4096)
    give_block(k, 3072, 3)
    assert a.get_pageblock_migratetype(3583) == MIGRATE_MOVABLE
    a.pageblock_skip[0:8] = b"\x01" * 8
    c.reset_isolation_suitable(zone.node)  # no flush pending: nothing happens
    assert bytes(a.pageblock_skip[0:8]) == b"\x01" * 8
    zone.compact_blockskip_flush = True
    c.reset_isolation_suitable(zone.node)
    assert bytes(a.pageblock_skip[0:8]) == b"\x01\x00\x01\x01\x01\x01\x00\x01"
    assert zone.compact_cached_migrate_pfn == [512, 512] and zone.compact_cached_free_pfn == 3583
    assert (zone.compact_init_migrate_pfn, zone.compact_init_free_pfn) == (512, 3583)
    assert not zone.compact_blockskip_flush
