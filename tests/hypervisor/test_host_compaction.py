"""Host compaction (hypervisor/compaction.py): a KVM host's Linux compaction over machine
memory in 2 MiB regions (its pageblocks).

Rules (Linux 6.1 mm/compaction.c, mm/page_alloc.c, mm/huge_memory.c): compact_zone runs
the migrate scanner up from the zone's start and the free scanner down from its end; the
free scanner takes free frames only from partly used pageblocks (suitable_migration_target
refuses a free order-9 block); compact_finished reports success at a pageblock boundary
once an order-9 block is free, and the scanners meeting ends the run (COMPACT_COMPLETE
when it began at the zone's ends) and resets the cached positions. An async direct
compactor gives up an order-9 block at its first frame it cannot isolate
(skip_on_failure); pageblock skip bits keep later runs out of blocks that gave nothing
or were isolated from (isolation_suitable, test_and_set_skip, update_pageblock_skip)
until __reset_isolation_suitable; compaction_suitable skips a failure the fragmentation
index puts down to lack of memory (extfrag_threshold); the scanners count pages as
isolate_migratepages_block and isolate_freepages_block do, and each page scanned costs
compact_scan_cost of host CPU besides the copies; a THP
fault with defrag "madvise" on a MADV_HUGEPAGE VMA (QEMU's guest RAM) tries async, then
sync-light compaction; only a failed sync-light attempt defers (defer_compaction:
compact_considered = 0, compact_defer_shift + 1), and compaction_deferred skips
attempts until compact_considered reaches 1 << compact_defer_shift; every attempt that
was not skipped counts a compact_stall and a compact_success or compact_fail. kcompactd
compacts proactively every 500 ms while the fragmentation score (extfrag for order 9)
is above 100 - proactiveness + 10, until it is at most 100 - proactiveness. An ESX host
does not compact (hypervisor.md describes none)."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE
from hypervisor.compaction import HPAGE_FRAG_CHECK_INTERVAL
from hypervisor.host import Host, HostConfig
from hypervisor.largepage import LP_BACKED, LP_NONE
from hypervisor.machine import OWNER_ZIP
from hypervisor.p2m import P2M_PRIVATE, P2M_SHARED

from .helpers import page

COPY = HostConfig().page_copy_cost  # seconds a 4 KiB copy
SCAN = HostConfig().compact_scan_cost  # host CPU per page a scanner visits
LP_FAULT = 100e-6  # HostConfig.large_page_fault_cost


def kvm(memory="8MiB", env=None, **kw) -> Host:
    # minFree 8 frames: the low watermark; compaction needs 8 + 1024 frames free
    kw.setdefault("sharing", False)
    return Host(HostConfig(memory=memory, min_free=f"{8 * PAGE_SIZE}", large_pages=True, kind="kvm",
                           ballooning=False, **kw), env=env)


def vm_on(host, name, pages, small=False):
    vm = host._new_vm(name, pages)
    host._add_vm(vm)
    if small:
        vm.lp = None
    return vm


def fragment(host, keep=10, zip_at=None):
    """VM "a" fills machine memory with small pages, in address order (pfn i in frame i),
    then releases all but the first `keep` frames of every region. `zip_at`: a
    compression-cache frame (zbud pages are not movable) at that offset of every region
    instead of a's (a's frame released while the region is full, taken back at once)."""
    m = host.machine
    nr = m.nr_frames
    a = vm_on(host, "a", nr, small=True)
    for pfn in range(nr):
        a.store(pfn, page(pfn))
    assert all(a.p2m.mpn[pfn] == pfn for pfn in range(nr))
    if zip_at is not None:
        for r in range(m.nr_regions):
            a._release(r * 512 + zip_at)
            assert m.alloc(OWNER_ZIP, ZERO_PAGE) == r * 512 + zip_at
    for pfn in range(nr):
        if pfn % 512 >= keep:
            a._release(pfn)
    a.lp = host.lp
    return a


def private_frames(vm):
    return sorted(vm.p2m.mpn[p] for p in range(vm.nr_pages) if vm.p2m.state[p] == P2M_PRIVATE)


def test_a_thp_fault_compacts_the_lowest_region_into_the_highest_partly_used_one():
    # 8 MiB = regions 0-3, each holding a's frames 0-9: 2008 frames free, no region whole
    host = kvm()
    a = fragment(host)
    m = host.machine
    assert m.nr_free == 2008 and m.whole_regions() == 0
    b = vm_on(host, "b", 1024)
    c = host.lp.compaction
    # fragmentation_index(9): each region's free frames 10-511 are 7 buddy blocks (orders
    # 1, 2, 4, 5, 6, 7, 8 at offsets 10, 12, 16, 32, 64, 128, 256): 28 blocks, 2008
    # pages: 1000 - (1000 + 2008 * 1000 / 512) / 28 = 1000 - 4921 / 28 = 825 > 500
    assert c.free_blocks() == (2008, 28, 0) and c.fragmentation_index() == 825
    # the migrate scanner isolates region 0's 10 frames (its first isolation, at the
    # block's first pfn, sets the block's skip bit: test_and_set_skip) and steps over
    # the 7 free blocks: 17 pages scanned; the async free scanner (stride 32) from region
    # 3 (the top) scans frame 1536 (in use), then 1568, the head of a free order-5
    # block: its 32 pages isolated, 33 scanned; the 10 copies and 50 pages scanned
    # stall the faulting vCPU; region 0 is then a free order-9 block: COMPACT_SUCCESS
    # at the async attempt, and the THP
    assert b.touch(0, True) == pytest.approx(LP_FAULT + 10 * COPY + 50 * SCAN)
    assert b.p2m.large[0] == LP_BACKED and b.lp_base[0] == 0
    assert (c.compact_stall, c.compact_success, c.compact_fail) == (1, 1, 0)
    assert c.pgmigrate_success == 10 and c.compact_isolated == 10 + 32
    assert c.compact_migrate_scanned == 17 and c.compact_free_scanned == 33
    assert host.lp.thp_fault_alloc == 1 and host.lp.thp_fault_fallback == 0
    # a's pages moved with their contents; regions 1-2 untouched
    assert all(a.p2m.mpn[p] >> 9 == 3 for p in range(10))
    assert all(a.load(p) == page(p) for p in range(2048) if a.p2m.state[p] == P2M_PRIVATE)
    assert private_frames(a)[:20] == list(range(512, 522)) + list(range(1024, 1034))
    # the cached positions: the migrate scanner's stays (update_cached_migrate only for a
    # block that gave nothing), the free scanner's at 3; region 0 skipped (now a THP)
    assert (c.cached_migrate, c.free_r) == ([0, 0], 3) and c.skip[0] == 1
    host.validate()


def test_a_direct_compactor_skips_a_region_at_its_first_unmovable_frame_and_defers():
    host = kvm()
    fragment(host, zip_at=5)
    b = vm_on(host, "b", 2048)
    c = host.lp.compaction
    cost = b.touch(0, True)
    # async (skip_on_failure: cc->direct_compaction and MIGRATE_ASYNC): every region
    # given up at offset 5, 6 pages scanned, its 5 isolated frames put back; its first
    # isolation set its skip bit (test_and_set_skip); the scanners meet:
    # COMPACT_COMPLETE, not deferred, compact_blockskip_flush set. sync-light: the
    # skipped blocks are not scanned again (isolation_suitable): COMPACT_COMPLETE
    # at once, deferred
    assert c.pgmigrate_success == 0 and c.compact_migrate_scanned == 3 * 6
    assert bytes(c.skip) == b"\x01\x01\x01\x00" and c.blockskip_flush
    assert (c.compact_stall, c.compact_success, c.compact_fail) == (2, 0, 2)
    assert (c.defer_shift, c.considered) == (1, 0)
    assert b.p2m.large[0] == LP_NONE and host.lp.thp_fault_fallback == 1
    assert cost == pytest.approx(host.config.fault_cost + 18 * SCAN)  # nothing copied
    # the next fault: compaction_deferred (considered 1 < 1 << 1) skips the async
    # attempt (a stall and a failure all the same), the sync-light one runs and defers
    b.touch(512, True)
    assert (c.compact_stall, c.compact_fail) == (4, 4)
    assert (c.defer_shift, c.considered) == (2, 0)
    # 1 << 2 = 4 attempts considered before the next one runs: 3 deferred, then it runs
    for r in (2, 3):
        b.touch(r * 512, True)
    assert (c.compact_stall, c.compact_fail, c.defer_shift) == (8, 8, 3)
    assert c.compact_migrate_scanned == 18  # every later run skipped the blocks
    host.machine.validate()
    host.lp.validate(host.vms)


def test_a_direct_compactor_migrates_cluster_by_cluster_until_the_unmovable_frame():
    # a's frames at offsets 0-49 of every region, a compression frame at 40: the async
    # migrate scanner isolates 32 frames (COMPACT_CLUSTER_MAX) and migrates them; the
    # next call in the same block (a rescan) isolates 8 more, meets the unmovable frame
    # at 40, puts the 8 back and leaves the region
    host = kvm()
    fragment(host, keep=50, zip_at=40)
    b = vm_on(host, "b", 2048)
    b.touch(0, True)
    c = host.lp.compaction
    # async: regions 0-2 lose 32 frames each to region 3, 32 + 9 pages scanned in each;
    # the free scanner (stride 32) finds in region 3 frame 1536 and 1568 in use, 1600
    # the head of a free order-6 block (64 pages isolated, 66 scanned), and later
    # 1664, an order-7 block (128 isolated and scanned); the scanners meet.
    # sync-light: regions 0-2 skipped (their bits set at their first isolation), the
    # scanners meet at once; nothing more migrated
    assert c.pgmigrate_success == 3 * 32
    assert c.compact_migrate_scanned == 3 * (32 + 9)
    # compact_isolated: 96 migrated and 64 + 128 targets (a put-back isolation resets
    # nr_isolated before isolate_migratepages_block counts it)
    assert c.compact_free_scanned == 66 + 128 and c.compact_isolated == 96 + 64 + 128
    assert (c.compact_stall, c.compact_fail) == (2, 2) and b.p2m.large[0] == LP_NONE
    host.machine.validate()


def test_kcompactd_steps_over_unmovable_frames_and_migrates_the_rest():
    host = kvm()
    a = fragment(host, zip_at=5)
    c = host.lp.compaction
    cost = c.kcompactd_do_work()
    # not direct (no skip_on_failure): in each of regions 0, 1 and 2 the migrate
    # scanner isolates the 9 movable frames, steps over the compression frame and the 7
    # free blocks (17 pages scanned); the sync free scanner (stride 1) scans region 3's
    # 10 used frames, then isolates the free blocks at offsets 10 (order 1), 12 (2) and
    # 16 (4): 22 pages, 32 scanned. Region 2's migration runs out of them after 4: the
    # free scanner may not go below the block above the migrate scanner's (region 2
    # scanned to its end: pageblock_end_pfn is region 3's end), so compaction_alloc
    # fails (-ENOMEM), the other 5 are put back, the scanners have met: COMPACT_COMPLETE,
    # deferred, positions reset; kcompactd leaves compact_blockskip_flush alone
    assert c.pgmigrate_success == 22 and host.machine.whole_regions() == 0
    assert [host.machine._rfree[r] for r in range(4)] == [511, 511, 506, 480]
    assert c.compact_migrate_scanned == 3 * 17 and c.compact_free_scanned == 32
    assert c.compact_isolated == 27 + 22
    assert cost == pytest.approx(22 * COPY + (51 + 32) * SCAN)
    assert c.compact_stall == 0  # (not a direct compactor)
    assert c.compact_daemon_migrate_scanned == 51 and c.compact_daemon_free_scanned == 32
    assert (c.defer_shift, c.cached_migrate, c.free_r, c.blockskip_flush) == (1, [0, 0], 3, False)
    assert sorted({a.p2m.mpn[p] >> 9 for p in range(2048) if a.p2m.state[p] == P2M_PRIVATE}) == [2, 3]
    assert all(a.load(p) == page(p) for p in range(2048) if a.p2m.state[p] == P2M_PRIVATE)
    host.machine.validate()


def test_kcompactd_compacts_proactively_until_the_score_is_at_most_the_low_mark():
    env = simpy.Environment()
    host = kvm(env=env, khugepaged=False)
    fragment(host)
    c = host.lp.compaction
    # fragmentation score: 2008 free, none in a free 2 MiB block: 100 > 90 (high mark
    # with proactiveness 20)
    assert c.fragmentation_score() == 100 * 2048 // 2049 and c.wmark(False) == 90 and c.wmark(True) == 80
    env.run(until=HPAGE_FRAG_CHECK_INTERVAL + 0.01)
    # one region freed: (2008 - 512) * 100 // 2008 = 74, weighted 74 * 2048 // 2049 =
    # 73 <= 80: compact_finished ends the proactive run
    assert host.machine.whole_regions() == 1 and c.fragmentation_score() == 73
    # region 0: 10 frames and 7 free blocks scanned; region 3 (stride 1): 10 used
    # frames, then blocks of order 1, 2 and 4 (offsets 10, 12, 16): 22 pages, 32 scanned
    assert c.pgmigrate_success == 10 and c.compact_daemon_migrate_scanned == 17
    assert c.compact_daemon_free_scanned == 32
    assert host.daemons[-1].proactive_passes == 1
    env.run(until=10)  # 73 <= 90: no more passes
    assert host.daemons[-1].proactive_passes == 1
    assert host.cpus.busy_s()["zeroing"] == pytest.approx(10 * COPY + (17 + 32) * SCAN)
    host.validate()


def test_defrag_defer_falls_back_at_once_and_wakes_kcompactd():
    env = simpy.Environment()
    host = kvm(env=env, thp_defrag="defer", compaction_proactiveness=0, khugepaged=False)
    fragment(host)
    b = vm_on(host, "b", 2048)
    assert b.touch(0, True) == pytest.approx(host.config.fault_cost)
    c = host.lp.compaction
    assert b.p2m.large[0] == LP_NONE and c.compact_stall == 0 and c.compact_daemon_wake == 1
    env.run(until=0.1)  # kcompactd_do_work: region 0 freed
    assert host.machine.whole_regions() == 1 and c.pgmigrate_success == 10
    assert b.touch(512, True) == pytest.approx(LP_FAULT)
    assert b.p2m.large[1] == LP_BACKED
    host.validate()


def test_defrag_never_only_falls_back_and_esx_does_not_compact():
    host = kvm(thp_defrag="never", compaction_proactiveness=0)
    fragment(host)
    b = vm_on(host, "b", 2048)
    b.touch(0, True)
    assert b.p2m.large[0] == LP_NONE and host.lp.compaction.compact_stall == 0
    assert host.lp.thp_fault_fallback == 1
    esx = Host(HostConfig(memory="8MiB", min_free=f"{8 * PAGE_SIZE}", large_pages=True, kind="esx",
                          sharing=False, ballooning=False))
    assert esx.lp.compaction is None and "compact_stall" not in esx.counters()


def test_compaction_is_skipped_unless_free_frames_exceed_the_low_watermark_plus_compact_gap():
    # __compaction_suitable for order 9: free > low (minFree, 8) + compact_gap(9) (1024)
    host = kvm()
    fragment(host, keep=253)  # 2048 - 4 x 253 = 1036 free
    assert host.lp.compaction.suitable() == 4  # COMPACT_CONTINUE
    host = kvm()
    fragment(host, keep=254)  # 1032 free: COMPACT_SKIPPED, no stall, a small page
    assert host.lp.compaction.suitable() == 1
    b = vm_on(host, "b", 2048)
    assert b.touch(0, True) == pytest.approx(host.config.fault_cost)
    assert host.lp.compaction.compact_stall == 0 and host.lp.thp_fault_fallback == 1


def test_khugepaged_compacts_to_collapse_once_memory_is_fragmented():
    # the counterpart of test_largepage's no-compaction case: scattered frees leave no
    # region whole; khugepaged's allocation (khugepaged/defrag 1) compacts
    env = simpy.Environment()
    host = Host(HostConfig(memory="12MiB", min_free=f"{8 * PAGE_SIZE}", large_pages=True, kind="kvm",
                           sharing=False, ballooning=False, compaction_proactiveness=0), env=env)
    a = vm_on(host, "a", 1528, small=True)
    b = vm_on(host, "b", 1536, small=True)
    for pfn in range(1528):  # a and b interleaved over all six regions
        a.store(pfn, page(pfn))
        b.store(pfn, page(pfn + 5000))
    a.lp = b.lp = host.lp
    for pfn in range(1528):  # a's frames, the even ones: where the async free scanner's
        a._release(pfn)      # stride of COMPACT_CLUSTER_MAX lands (fast_isolate_freepages,
    assert host.machine.whole_regions() == 0  # which finds any, is not modelled)
    env.run(until=1)
    c = host.lp.compaction
    assert host.lp.pages_collapsed >= 1 and c.compact_success >= 1
    assert all(b.load(p) == page(p + 5000) for p in range(1528))
    assert host.lp.collapse_cpu_s == pytest.approx(host.lp.pages_collapsed * LP_FAULT + c.compact_cpu_s)
    host.validate()


def test_a_ksm_frame_migrates_with_every_sharer_remapped():
    # ksm_migrate_page: the stable node and every mapping follow the KSM frame
    host = kvm(sharing=True, compaction_proactiveness=0)
    s = vm_on(host, "s", 8, small=True)
    s.store(0, page(3))  # frames 0 and 1
    s.store(1, page(3))
    a = vm_on(host, "a", 2046, small=True)
    for pfn in range(2046):  # frames 2..2047
        a.store(pfn, page(pfn))
    for pfn in range(2046):
        if (pfn + 2) % 512 >= 10:
            a._release(pfn)
    for _ in range(3):
        host.sharing.scan(4096)
    frame = s.p2m.mpn[0]
    assert s.p2m.state[0] == s.p2m.state[1] == a.p2m.state[3] == P2M_SHARED
    assert s.p2m.mpn[1] == a.p2m.mpn[3] == frame and frame >> 9 == 0 and host.machine.refcount[frame] == 3
    c = host.lp.compaction
    # region 0: the KSM frame and a's 7 other frames (its pfn 0-7 in frames 2-9)
    assert c.compact_zone(1, direct=False)[0] == 8  # COMPACT_SUCCESS: region 0 free
    assert c.pgmigrate_success == 8
    new = a.p2m.mpn[3]
    assert new >> 9 == 3 and s.p2m.mpn[0] == s.p2m.mpn[1] == new and host.machine.refcount[new] == 3
    assert a.load(3) == s.load(0) == page(3) and host.machine._rfree[0] == 512
    host.validate()


@settings(max_examples=25, deadline=None)
@given(frees=st.lists(st.integers(0, 2047), max_size=1600), direct=st.booleans(),
       modes=st.lists(st.sampled_from([0, 1]), min_size=2, max_size=4))
def test_compaction_keeps_every_page_and_every_count(frees, direct, modes):
    # async and sync-light runs in turn, the skip bits reset before the last
    host = kvm(compaction_proactiveness=0)
    a = vm_on(host, "a", 2048, small=True)
    for pfn in range(2048):
        a.store(pfn, page(pfn))
    for pfn in set(frees):
        a._release(pfn)
    c = host.lp.compaction
    for mode in modes[:-1]:
        c.compact_zone(mode, direct=direct)
    c.blockskip_flush = True
    c.reset_isolation_suitable()
    c.compact_zone(modes[-1], direct=direct)
    host.validate()
    assert c._free_block_exists() == (host.machine.whole_regions() > 0)
    for pfn in range(2048):
        if a.p2m.state[pfn] == P2M_PRIVATE:
            assert a.load(pfn) == page(pfn)
    assert c.compact_cpu_s == pytest.approx(c.pgmigrate_success * COPY
                                            + (c.compact_migrate_scanned + c.compact_free_scanned) * SCAN)


def test_kcompactd_does_not_compact_proactively_while_the_host_reclaims(monkeypatch):
    # should_proactive_compact_node: false while kswapd runs (the host in its hard state)
    from hypervisor.states import HARD

    env = simpy.Environment()
    host = kvm(env=env, khugepaged=False)
    fragment(host)
    host.states.state = HARD
    monkeypatch.setattr(host.states, "update", lambda *a, **k: HARD)
    env.run(until=5)
    assert host.lp.compaction.pgmigrate_success == 0 and host.daemons[-1].proactive_passes == 0


@settings(max_examples=15, deadline=None)
@given(frees=st.lists(st.integers(0, 2047), max_size=1600), kinds=st.integers(2, 40), direct=st.booleans())
def test_compaction_of_ksm_frames_keeps_every_page_and_every_count(frees, kinds, direct):
    # pages of `kinds` distinct contents, merged by KSM, then scattered frees
    host = kvm(sharing=True, compaction_proactiveness=0)
    a = vm_on(host, "a", 2048, small=True)
    for pfn in range(2048):
        a.store(pfn, page(pfn % kinds))
    for pfn in set(frees):
        a._release(pfn)
    for _ in range(3):
        host.sharing.scan(4096)
    c = host.lp.compaction
    c.compact_zone(1, direct=direct)
    c.compact_zone(1, direct=direct)
    host.validate()
    for pfn in range(2048):
        if a.p2m.state[pfn] in (P2M_PRIVATE, P2M_SHARED):
            assert a.load(pfn) == page(pfn % kinds)


def test_extfrag_threshold_skips_compaction_when_the_failure_is_for_lack_of_memory():
    # compaction_suitable for order 9 (> PAGE_ALLOC_COSTLY_ORDER): fragmentation_index
    # in [0, extfrag_threshold] means the failure is for lack of memory: COMPACT_SKIPPED
    # (no stall). 16 MiB: regions 0-7, each keeping frames 0-255: its free frames one
    # order-8 block: 2048 free, 8 blocks: 1000 - (1000 + 2048 * 1000 / 512) / 8 = 375
    host = kvm(memory="16MiB")
    fragment(host, keep=256)
    c = host.lp.compaction
    assert c.free_blocks() == (2048, 8, 0) and c.fragmentation_index() == 375
    assert c.suitable() == 1  # COMPACT_SKIPPED: 375 <= 500
    b = vm_on(host, "b", 4096)
    assert b.touch(0, True) == pytest.approx(host.config.fault_cost)
    assert (c.compact_stall, c.compact_migrate_scanned) == (0, 0) and b.p2m.large[0] == LP_NONE
    # vm.extfrag_threshold 374: 375 is above it, compaction runs (async: region 0's 256
    # frames into region 7's order-8 block) and the THP is allocated
    host = kvm(memory="16MiB", extfrag_threshold=374)
    fragment(host, keep=256)
    c = host.lp.compaction
    assert c.suitable() == 4  # COMPACT_CONTINUE
    b = vm_on(host, "b", 4096)
    b.touch(0, True)
    assert (c.compact_stall, c.compact_success, c.pgmigrate_success) == (1, 1, 256)
    assert b.p2m.large[0] == LP_BACKED
    host.validate()


def test_fragmentation_index_counts_free_regions_as_order_9_and_10_blocks():
    # fill_contig_page_info: two wholly free regions r, r + 1 (r even) are one order-10
    # block; any free block of order >= 9 makes the index -1000 (the request would
    # succeed but for the watermark); nothing free: 0
    host = kvm()
    a = vm_on(host, "a", 2048, small=True)
    c = host.lp.compaction
    assert c.free_blocks() == (2048, 2, 4) and c.fragmentation_index() == -1000
    for pfn in range(2048):
        a.store(pfn, page(pfn))
    assert c.free_blocks() == (0, 0, 0) and c.fragmentation_index() == 0
    for pfn in range(1024, 2048):  # regions 2 and 3: one order-10 block
        a._release(pfn)
    a._release(3)  # region 0: one order-0 block
    assert c.free_blocks() == (1025, 2, 2)


def test_skip_bits_are_reset_when_compaction_restarts_after_the_longest_deferral():
    # compaction_restarting (compact_defer_shift at COMPACT_MAX_DEFER_SHIFT and
    # compact_considered at 1 << it) makes compact_zone call __reset_isolation_suitable,
    # which acts because a direct compactor's scanners met (compact_blockskip_flush)
    host = kvm()
    fragment(host, zip_at=5)
    b = vm_on(host, "b", 2048)
    c = host.lp.compaction
    b.touch(0, True)  # async gives up regions 0-2 and sets their bits; sync-light skips them
    assert bytes(c.skip) == b"\x01\x01\x01\x00" and c.blockskip_flush
    c.defer_shift, c.considered = 6, 64
    assert c.restarting()
    # the reset's walk: region 0 (an LRU page at offset 0) becomes the migrate
    # scanner's start, region 3 (a buddy page at offset 16) the free scanner's; every
    # bit cleared; then sync-light compaction (no skip_on_failure) migrates regions
    # 0-2's movable frames: 9, 9 and 4 of region 2's (see the kcompactd test)
    result, _ = c.compact_zone(1, direct=True)
    assert result == 5 and c.pgmigrate_success == 22  # COMPACT_COMPLETE
    assert c.blockskip_flush  # (set again: the direct compactor's scanners met)
    assert c.init_migrate_r == 0 and c.init_free_r == 3
    host.machine.validate()


def test_skip_bits_are_reset_when_the_host_reclaim_goes_back_to_sleep():
    # kswapd_try_to_sleep: reset_isolation_suitable once kswapd (the host's reclaim in
    # its hard and low states) sleeps; only after a direct compactor's scanners met
    from hypervisor.states import HARD

    host = kvm()
    fragment(host, zip_at=5)
    c = host.lp.compaction
    c.skip[1] = 1
    host.states.state = HARD
    host.check_state()  # plenty free: the state drops, but no flush pending
    assert c.skip[1] == 1
    b = vm_on(host, "b", 2048)
    b.touch(0, True)
    assert bytes(c.skip) == b"\x01\x01\x01\x00" and c.blockskip_flush
    host.check_state()  # not reclaiming before: nothing to reset
    assert bytes(c.skip) == b"\x01\x01\x01\x00"
    host.states.state = HARD
    host.check_state()
    assert bytes(c.skip) == b"\x00\x00\x00\x00" and not c.blockskip_flush


def test_the_free_scanner_marks_a_block_it_scanned_to_its_end():
    # update_pageblock_skip: a block isolate_freepages_block scanned to its end gets its
    # skip bit (and would lower compact_cached_free_pfn, at region 3 already). kcompactd (stride 1): region 3 keeps
    # frames 0-509 (2 free: one order-1 block), regions 0-2 frames 0-9: the 10 frames of
    # region 0 need 10 targets: region 3's 2 (its 512 pages scanned: 510 in use, the 2
    # of the block isolated), then region 2's blocks of order 1, 2, 4 (offsets 10, 12,
    # 16: 22 pages isolated, 10 + 22 scanned)
    host = kvm()
    a = fragment(host)
    for pfn in range(1536 + 10, 1536 + 510):
        a.store(pfn, page(pfn))
    assert host.machine._rfree[3] == 2
    c = host.lp.compaction
    c.compact_zone(1, direct=False)
    assert c.skip[3] == 1 and c.skip[2] == 0
    assert c.pgmigrate_success >= 10 and host.machine._rfree[0] == 512
    assert c.compact_free_scanned == 512 + 32
    host.validate()



def test_a_direct_compactor_that_gets_its_page_clears_the_pending_skip_reset():
    # __alloc_pages_direct_compact: the page allocated after compaction clears
    # compact_blockskip_flush (and resets the deferral); the skip bits stay
    host = kvm()
    fragment(host)
    c = host.lp.compaction
    c.blockskip_flush = True
    c.defer_shift, c.considered = 1, 1  # (considered reaches 1 << 1: this attempt runs)
    b = vm_on(host, "b", 2048)
    b.touch(0, True)
    assert (c.compact_stall, c.compact_success) == (1, 1) and b.p2m.large[0] == LP_BACKED
    assert not c.blockskip_flush and (c.defer_shift, c.considered) == (0, 0) and c.skip[0] == 1
    host.validate()


def test_proactive_compaction_ignores_skip_bits_and_starts_at_the_zones_ends():
    # proactive_compact_node: cc.ignore_skip_hint and cc.whole_zone (the scanners from
    # the zone's start and end, not the cached positions)
    host = kvm()
    fragment(host)
    c = host.lp.compaction
    c.skip[:] = b"\x01" * 4
    c.cached_migrate, c.free_r = [2, 2], 2
    c.proactive()
    assert host.machine._rfree[0] == 512 and c.pgmigrate_success == 10
    assert all(host.lp.compaction.machine.owner[f] >= 0 for f in range(1536, 1546))
    host.validate()


def test_a_reset_that_finds_no_block_worth_scanning_leaves_the_scanners_met():
    # __reset_isolation_suitable: regions 0-2 live THPs (pageblock_skip_persistent),
    # region 3 compression frames but at offsets 1-7 (free: no buddy page among the
    # sampled offsets 0, 8, 16, ...): none is a source or a target: "leave no distance",
    # the scanners' cached positions where the walk ended (migrate side at pfn 1024,
    # free side at 2047 - 2 x 512 = 1023)
    host = kvm()
    b = vm_on(host, "b", 2048)
    for r in range(3):
        b.touch(r * 512, True)
    assert host.lp.large_pages == 3
    m = host.machine
    assert [m.alloc(OWNER_ZIP, ZERO_PAGE) for _ in range(512)] == list(range(1536, 2048))
    for f in range(1537, 1544):
        m.free(f)
    c = host.lp.compaction
    c.skip[:] = b"\x01" * 4
    c.blockskip_flush = True
    c.reset_isolation_suitable()
    assert (c.cached_migrate, c.free_r, bytes(c.skip)) == ([2, 2], 1, b"\x01" * 4)
    assert c.compact_zone(1, direct=False)[0] == 6  # COMPACT_PARTIAL_SKIPPED: met at once
