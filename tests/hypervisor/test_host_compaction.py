"""Host compaction (hypervisor/compaction.py): a KVM host's Linux compaction over machine
memory in 2 MiB regions (its pageblocks).

Rules (Linux 6.1 mm/compaction.c, mm/page_alloc.c, mm/huge_memory.c): compact_zone runs
the migrate scanner up from the zone's start and the free scanner down from its end; the
free scanner takes free frames only from partly used pageblocks (suitable_migration_target
refuses a free order-9 block); compact_finished reports success at a pageblock boundary
once an order-9 block is free, and the scanners meeting ends the run (COMPACT_COMPLETE
when it began at the zone's ends) and resets the cached positions. A direct compactor
gives up an order-9 block at its first frame it cannot isolate (skip_on_failure); a THP
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

COPY = 1.6e-6  # HostConfig.page_copy_cost
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
    # the migrate scanner isolates region 0's 10 frames, the free scanner takes 10 free
    # frames of region 3 (the top), the 10 copies stall the faulting vCPU; region 0 is
    # then a free order-9 block: COMPACT_SUCCESS at the async attempt, and the THP
    assert b.touch(0, True) == pytest.approx(LP_FAULT + 10 * COPY)
    assert b.p2m.large[0] == LP_BACKED and b.lp_base[0] == 0
    c = host.lp.compaction
    assert (c.compact_stall, c.compact_success, c.compact_fail) == (1, 1, 0)
    assert c.pgmigrate_success == 10 and c.compact_isolated == 20
    assert c.compact_migrate_scanned == 512 and c.compact_free_scanned == 512
    assert host.lp.thp_fault_alloc == 1 and host.lp.thp_fault_fallback == 0
    # a's pages moved with their contents; regions 1-2 untouched
    assert all(a.p2m.mpn[p] >> 9 == 3 for p in range(10))
    assert all(a.load(p) == page(p) for p in range(2048) if a.p2m.state[p] == P2M_PRIVATE)
    assert private_frames(a)[:20] == list(range(512, 522)) + list(range(1024, 1034))
    # the cached positions: the migrate scanner past region 0, the free scanner at 3
    assert (c.migrate_r, c.free_r) == (1, 3)
    host.validate()


def test_a_direct_compactor_skips_a_region_at_its_first_unmovable_frame_and_defers():
    host = kvm()
    fragment(host, zip_at=5)
    b = vm_on(host, "b", 2048)
    c = host.lp.compaction
    cost = b.touch(0, True)
    # async: every region given up at offset 5 (its 5 isolated frames put back), the
    # scanners meet: COMPACT_COMPLETE, not deferred; sync-light: the same, deferred
    assert c.pgmigrate_success == 0
    assert (c.compact_stall, c.compact_success, c.compact_fail) == (2, 0, 2)
    assert (c.defer_shift, c.considered) == (1, 0)
    assert b.p2m.large[0] == LP_NONE and host.lp.thp_fault_fallback == 1
    assert cost == pytest.approx(host.config.fault_cost)  # nothing copied
    # the next fault: compaction_deferred (considered 1 < 1 << 1) skips the async
    # attempt (a stall and a failure all the same), the sync-light one runs and defers
    b.touch(512, True)
    assert (c.compact_stall, c.compact_fail) == (4, 4)
    assert (c.defer_shift, c.considered) == (2, 0)
    # 1 << 2 = 4 attempts considered before the next one runs: 3 deferred, then it runs
    for r in (2, 3):
        b.touch(r * 512, True)
    assert (c.compact_stall, c.compact_fail, c.defer_shift) == (8, 8, 3)
    host.machine.validate()
    host.lp.validate(host.vms)


def test_a_direct_compactor_migrates_cluster_by_cluster_until_the_unmovable_frame():
    # a's frames at offsets 0-49 of every region, a compression frame at 40: the migrate
    # scanner isolates 32 frames (COMPACT_CLUSTER_MAX) and migrates them, isolates 8 more,
    # meets the unmovable frame at 40, puts the 8 back and leaves the region
    host = kvm()
    fragment(host, keep=50, zip_at=40)
    b = vm_on(host, "b", 2048)
    b.touch(0, True)
    c = host.lp.compaction
    # async: regions 0-2 lose 32 frames each to region 3, the scanners meet; sync-light
    # (positions reset): 8 isolated in each region, put back, nothing migrated
    assert c.pgmigrate_success == 3 * 32
    assert c.compact_migrate_scanned == 2 * 3 * 41  # up to and including offset 40
    # compact_isolated: 96 migrated and their 96 targets (a put-back isolation resets
    # nr_isolated before isolate_migratepages_block counts it)
    assert c.compact_free_scanned == 512 and c.compact_isolated == 2 * 96
    assert (c.compact_stall, c.compact_fail) == (2, 2) and b.p2m.large[0] == LP_NONE
    host.machine.validate()


def test_kcompactd_steps_over_unmovable_frames_and_migrates_the_rest():
    host = kvm()
    a = fragment(host, zip_at=5)
    c = host.lp.compaction
    cost = c.kcompactd_do_work()
    # not direct: regions 0, 1 and 2 each have their 9 movable frames migrated into
    # region 3 (the free scanner's), then the scanners meet there: COMPACT_COMPLETE,
    # none whole (each keeps its compression frame), deferred, positions reset
    assert c.pgmigrate_success == 27 and host.machine.whole_regions() == 0
    assert c.compact_migrate_scanned == 3 * 512 and c.compact_free_scanned == 512
    assert c.compact_isolated == 2 * 27
    assert cost == pytest.approx(27 * COPY)
    assert c.compact_stall == 0  # (not a direct compactor)
    assert c.compact_daemon_migrate_scanned == 3 * 512 and c.compact_daemon_free_scanned == 512
    assert (c.defer_shift, c.migrate_r, c.free_r) == (1, 0, 3)
    assert sorted({a.p2m.mpn[p] >> 9 for p in range(2048) if a.p2m.state[p] == P2M_PRIVATE}) == [3]
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
    assert c.pgmigrate_success == 10 and c.compact_daemon_migrate_scanned == 512
    assert host.daemons[-1].proactive_passes == 1
    env.run(until=10)  # 73 <= 90: no more passes
    assert host.daemons[-1].proactive_passes == 1
    assert host.cpus.busy_s()["zeroing"] == pytest.approx(10 * COPY)
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
    a = vm_on(host, "a", 1536, small=True)
    b = vm_on(host, "b", 1528, small=True)
    for pfn in range(1528):  # a and b interleaved over all six regions
        a.store(pfn, page(pfn))
        b.store(pfn, page(pfn + 5000))
    a.lp = b.lp = host.lp
    for pfn in range(1528):
        b._release(pfn)
    assert host.machine.whole_regions() == 0
    env.run(until=1)
    c = host.lp.compaction
    assert host.lp.pages_collapsed >= 1 and c.compact_success >= 1
    assert all(a.load(p) == page(p) for p in range(1528))
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
@given(frees=st.lists(st.integers(0, 2047), max_size=1600), direct=st.booleans())
def test_compaction_keeps_every_page_and_every_count(frees, direct):
    host = kvm(compaction_proactiveness=0)
    a = vm_on(host, "a", 2048, small=True)
    for pfn in range(2048):
        a.store(pfn, page(pfn))
    for pfn in set(frees):
        a._release(pfn)
    c = host.lp.compaction
    c.compact_zone(1, direct=direct)
    c.compact_zone(1, direct=direct)
    host.validate()
    for pfn in range(2048):
        if a.p2m.state[pfn] == P2M_PRIVATE:
            assert a.load(pfn) == page(pfn)
    assert c.pgmigrate_success * COPY == pytest.approx(c.compact_cpu_s)


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
