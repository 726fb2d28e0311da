"""Host large pages (hypervisor/largepage.py): ESX large pages and KVM host THP.

Rules: a large page reserves its whole 2 MiB at the first touch of its region (one host
fault), later first touches in it take a reserved frame without a fault; a split frees
the untouched frames (and on KVM the zero-filled ones, which read the shared zero page:
remap_page(RMP_USE_SHARED_ZEROPAGE) after split_huge_page, Linux 6.12+); ESX breaks
large pages when free memory is below 400 % of minFree (states.py) at a limited rate;
KSM on a KVM host splits a THP when one of its subpages merges (try_to_merge_one_page),
checked against this machine's kernel (tests/data/ksm_thp)."""

from __future__ import annotations

from pathlib import Path

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE
from hypervisor.host import Host, HostConfig
from hypervisor.largepage import LP_BACKED, LP_BROKEN, LP_NONE
from hypervisor.p2m import P2M_NONE, P2M_PRIVATE, P2M_SHARED

from .helpers import page, random_page

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "ksm_thp" / "ksm_thp.out"
MIB = 1 << 20


def esx(memory="64MiB", min_free="1MiB", **kw) -> Host:
    return Host(HostConfig(memory=memory, min_free=min_free, large_pages=True, **kw))


def vm_on(host, name="g", pages=2048):
    vm = host._new_vm(name, pages)
    host._add_vm(vm)
    return vm


# -- backing ---------------------------------------------------------------------------------


def test_first_touch_reserves_the_whole_2mib_with_one_fault():
    host = esx(large_page_fault_cost="100us", fault_cost="2us")
    vm = vm_on(host)
    assert vm.touch(5, True) == pytest.approx(100e-6)  # one host fault for 512 frames
    assert host.machine.nr_used == 512  # the whole 2 MiB is in use from the first touch
    assert vm.p2m.large[0] == LP_BACKED and vm.lp_res[0] == 511
    # the rest of the region: frames from the large page, no fault
    assert vm.touch(6, True) == 0.0 and vm.store(511, page(1)) == 0.0
    assert host.machine.nr_used == 512 and vm.lp_res[0] == 509
    assert vm.first_touch == 3 and host.lp.thp_fault_alloc == 1 and host.lp.large_pages == 1
    # another region: another large page
    assert vm.touch(512, False) == pytest.approx(100e-6)
    assert host.machine.nr_used == 1024
    host.validate()


def test_a_region_already_partly_backed_gets_small_pages():
    host = esx()
    vm = vm_on(host)
    vm.lp = None  # (backed small, as before large pages were turned on)
    vm.touch(3, True)
    vm.lp = host.lp
    assert vm.touch(4, True) == pytest.approx(host.config.fault_cost)
    assert vm.p2m.large[0] == LP_NONE and host.machine.nr_used == 2
    assert host.lp.thp_fault_fallback == 0  # (not an untouched region: no fallback)
    host.validate()


def test_esx_backs_a_large_page_only_while_free_memory_stays_above_400_pct_of_min_free():
    # 4 MiB host = 1024 frames, minFree 64 frames: 400 % = 256 frames must stay free
    host = esx(memory="4MiB", min_free=f"{64 * PAGE_SIZE}")
    vm = vm_on(host)
    vm.touch(0, True)  # 1024 - 512 = 512 >= 256: large
    assert vm.p2m.large[0] == LP_BACKED
    vm.touch(512, True)  # 512 - 512 = 0 < 256: small page
    assert vm.p2m.large[1] == LP_NONE and host.lp.thp_fault_fallback == 1
    assert host.machine.nr_used == 513
    host.validate()


def test_kvm_backs_a_thp_while_min_free_stays_free():
    host = Host(HostConfig(memory="4MiB", min_free=f"{64 * PAGE_SIZE}", large_pages=True, kind="kvm"))
    vm = vm_on(host)
    vm.touch(0, True)
    vm.touch(512, True)  # 1024 - 512 - 512 = 0 < 64: small
    assert [vm.p2m.large[0], vm.p2m.large[1]] == [LP_BACKED, LP_NONE]
    host.validate()


def test_large_pages_off_change_nothing_on_the_fault_path():
    host = Host(HostConfig(memory="64MiB", large_pages=False))
    vm = vm_on(host)
    assert vm.lp is None and vm.touch(0, True) == pytest.approx(host.config.fault_cost)
    assert host.machine.nr_used == 1 and host.machine.reserved == 0


# -- splitting and breaking ----------------------------------------------------------------


def test_breaking_frees_the_untouched_part_and_keeps_the_touched_pages():
    host = esx()
    vm = vm_on(host)
    for pfn in range(10):
        vm.store(pfn, page(pfn) if pfn else ZERO_PAGE)
    assert host.machine.nr_used == 512
    assert vm.break_large_pages() == 1
    assert host.machine.nr_used == 10 and host.lp.lp_frames_freed == 502
    assert vm.p2m.large[0] == LP_BROKEN and vm.p2m.nr[P2M_PRIVATE] == 10  # ESX keeps zero-filled ones
    # a broken region stays small
    assert vm.touch(100, True) == pytest.approx(host.config.fault_cost)
    host.validate()


def test_kvm_split_maps_zero_filled_subpages_to_the_zero_page():
    host = Host(HostConfig(memory="64MiB", min_free="1MiB", large_pages=True, kind="kvm"))
    vm = vm_on(host)
    for pfn in range(10):
        vm.store(pfn, page(pfn) if pfn % 2 else ZERO_PAGE)
    host.lp.split(vm, 0)
    # 502 never touched + 5 zero-filled freed; the 5 others stay private
    assert host.machine.nr_used == 5 and host.lp.lp_frames_freed == 507
    assert [vm.p2m.state[p] for p in range(4)] == [P2M_NONE, P2M_PRIVATE, P2M_NONE, P2M_PRIVATE]
    assert vm.load(0) == ZERO_PAGE and vm.load(1) == page(1)
    host.validate()


def test_releasing_or_evicting_a_subpage_splits_its_large_page_first():
    host = esx(swap_size="4MiB", compression=False, admission_control=False)
    vm = vm_on(host)
    vm.store(0, page(0))
    vm.store(512, page(1))
    vm.store(513, page(2))
    vm.release(0)
    assert vm.p2m.large[0] == LP_BROKEN and host.lp.thp_split_release == 1
    assert vm.evict(513) >= 0
    assert vm.p2m.large[1] == LP_BROKEN and host.lp.thp_split_reclaim == 1
    assert host.machine.nr_used == 1 + host.swap.nr_inflight  # page 512 (513 written out)
    host.validate()


def test_a_victim_under_a_large_page_is_broken_out_then_shared_before_it_is_swapped():
    """ESX's order for a page it must reclaim: the large page is broken first, and the
    small page then goes through sharing before host swap ("ESX tries to share a page
    before paging it out", Waldspurger 2002 sec. 4; hypervisor.md): a subpage identical
    to a stable frame merges (no I/O), the other is swapped."""
    host = esx(swap_size="4MiB", compression=False, admission_control=False,
               victim_policy="clock", smart_scan=False)
    vm = vm_on(host, pages=1024)
    vm.store(0, page(1))
    vm.store(1, page(1))
    host.lp.split(vm, 0)  # region 0 small pages: its two copies of page(1) can merge
    host.sharing.full_pass()
    host.sharing.full_pass()
    assert host.sharing.pages_sharing == 1 and vm.p2m.state[0] == vm.p2m.state[1] == P2M_SHARED
    vm.store(512, page(1))  # under the live large page of region 1
    vm.store(513, random_page(2, "g"))
    assert vm.p2m.large[1] == LP_BACKED
    for pfn in (512, 513):
        vm.p2m.accessed[pfn] = 0
    done, _ = host.evict(2)
    assert done == 2 and vm.p2m.large[1] == LP_BROKEN and host.lp.thp_split_reclaim == 1
    assert host.shared_before_swap == 1 and host.pages_evicted == 1
    assert vm.p2m.state[512] == P2M_SHARED and vm.p2m.state[513] == P2M_SWAPPED
    assert host.sharing.pages_sharing == 2 and host.swap.pswpout == 1
    host.validate()


def test_esx_breaks_large_pages_below_400_pct_of_min_free_at_its_rate_with_its_cpu():
    # 16 MiB = 4096 frames, minFree 256 frames: large pages are broken below 1024 free
    env = simpy.Environment()
    host = Host(HostConfig(memory="16MiB", min_free=f"{256 * PAGE_SIZE}", large_pages=True,
                           large_page_break_rate=20, large_page_break_cost="40us",
                           sharing=False, ballooning=False), env=env)
    vm = vm_on(host, pages=4096)
    for r in range(5):  # 5 large pages: 2560 frames, 1536 free (>= 1024: kept)
        vm.touch(r * 512, True)
    env.run(until=1.05)
    assert host.lp.large_pages == 5 and host.lp.large_pages_broken == 0
    vm.lp = None
    for pfn in range(2560, 2560 + 600):  # small pages: 936 free, below 1024
        vm.touch(pfn, True)
    vm.lp = host.lp
    cpu0 = host.cpus.busy_s()["zeroing"]
    env.run(until=2.25)  # the monitor sees it at t = 2; the job breaks 20 a second
    # each break frees 511 untouched frames: the first lifts free memory above 400 %
    assert host.lp.large_pages_broken == 1 and host.lp.large_pages == 4
    assert host.machine.nr_free == 936 + 511
    assert host.cpus.busy_s()["zeroing"] - cpu0 == pytest.approx(40e-6)
    assert host.lp.break_cpu_s == pytest.approx(40e-6)
    host.validate()


def test_the_break_rate_limits_how_many_go_per_interval():
    host = esx(memory="16MiB", min_free=f"{256 * PAGE_SIZE}", large_page_break_rate=2)
    vm = vm_on(host, pages=4096)
    for r in range(5):
        vm.touch(r * 512, True)
    vm.lp = None
    for pfn in range(2560, 2560 + 600):
        vm.touch(pfn, True)
    vm.lp = host.lp
    host.lp.room = lambda: 1 << 30  # (nothing may back anew)
    host.states.large_pages_min = 1 << 30  # below 400 % whatever is freed
    host.check_state()  # synchronous: rate x state_interval (1 s) = 2
    assert host.lp.large_pages_broken == 2 and host.lp.large_pages == 3
    host.validate()


def test_tlb_factor_discounts_the_share_of_memory_under_large_pages():
    host = esx(large_page_tlb_discount=0.1)
    vm = vm_on(host)
    vm.touch(0, True)
    vm.lp = None
    for pfn in range(1024, 1024 + 511):
        vm.touch(pfn, True)
    vm.lp = host.lp
    # 1 page touched under the large page, 512 backed in all: 1/512 of accesses
    assert vm.tlb_factor() == pytest.approx(1 - 0.1 * 1 / 512)
    for pfn in range(1, 512):
        vm.touch(pfn, True)
    assert vm.tlb_factor() == pytest.approx(1 - 0.1 * 512 / 1023)


# -- sharing ---------------------------------------------------------------------------------


def test_kvm_ksm_splits_a_thp_when_a_subpage_merges_and_not_before():
    host = Host(HostConfig(memory="64MiB", min_free="1MiB", large_pages=True, kind="kvm",
                           pages_to_scan=100_000))
    a, b = vm_on(host, "a", 512), vm_on(host, "b", 512)
    for vm, tag in ((a, "a"), (b, "b")):
        for pfn in range(512):
            vm.store(pfn, page(pfn) if pfn < 4 else random_page(pfn, tag))
    host.sharing.full_pass()  # first visits: volatile
    assert a.lp_live == b.lp_live == 1 and host.sharing.pages_sharing == 0
    host.sharing.full_pass()  # unchanged: a's pages enter the unstable tree, b's match
    assert a.lp_live == b.lp_live == 0 and host.lp.thp_split_ksm == 2
    assert host.sharing.pages_shared == 4 and host.sharing.pages_sharing == 4
    assert a.p2m.state[0] == P2M_SHARED
    host.validate()


def test_kvm_thp_without_any_match_is_never_split():
    host = Host(HostConfig(memory="64MiB", min_free="1MiB", large_pages=True, kind="kvm",
                           pages_to_scan=100_000))
    a = vm_on(host, "a", 512)
    for pfn in range(512):
        a.store(pfn, random_page(pfn, "u"))
    for _ in range(6):
        host.sharing.full_pass()
    assert a.lp_live == 1 and host.sharing.rmap_items == 512 and host.sharing.pages_unshared == 512
    host.validate()


def _fixture():
    facts, rows, cols = {}, [], None
    for line in FIXTURE.read_text().splitlines():
        if line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        if key == "columns":
            cols = rest.split()
        elif key == "row":
            rows.append(dict(zip(cols, map(float, rest.split()), strict=True)))
        else:
            facts[key] = rest
    return facts, rows


def _model_of_fixture():
    """ksm_thp.c's five ranges as five KVM VMs of 512 pages in KSM's scan order (ascending
    address: mmap placed them top-down, so E, D, C, B, A); D is MADV_NOHUGEPAGE (small)."""
    host = Host(HostConfig(memory="64MiB", min_free="1MiB", large_pages=True, kind="kvm",
                           pages_to_scan=1000, max_page_sharing=256, use_zero_pages=False,
                           smart_scan=True))
    vms = {}
    for name in "EDCBA":
        vms[name] = vm = vm_on(host, name, 512)
        if name == "D":
            vm.lp = None
    for name, vm in vms.items():
        for i in range(512):
            if name == "E" or (name in "AB" and 128 <= i < 256):
                data = ZERO_PAGE
            elif name in "ABD" and i < 128:
                data = random_page(1000 + i, "pattern")
            else:
                data = random_page(i, f"unique-{name}")
            vm.store(i, data)
    return host, vms


def test_kvm_ksm_on_thp_matches_this_machines_kernel():
    """tests/data/ksm_thp: which THPs ksmd split, in which full scan, and the steady state."""
    facts, rows = _fixture()
    assert facts["kernel"].startswith("6.")
    host, vms = _model_of_fixture()
    # before MADV_MERGEABLE: every range but D was a THP
    for name in "ABCDE":
        assert int(facts[f"anon_huge_kb_before_{name}"]) == (2048 if vms[name].lp_live else 0)
    split_at = {}
    for n in range(1, 11):
        host.sharing.full_pass()
        for name, vm in vms.items():
            if vm.lp is not None and not vm.lp_live:
                split_at.setdefault(name, n)
        host.validate()
    for name in "ABCE":
        # the kernel's sample rows bound the scan that split it: after the last row still
        # huge (full_scans k0 completed) and by the first row split (k completed, k + 1
        # under way)
        before = [r for r in rows if r[f"AH_{name}"] == 2048]
        after = [r for r in rows if r[f"AH_{name}"] == 0]
        if not after:
            assert name not in split_at  # C: no subpage ever matched, never split
            continue
        k0, k = before[-1]["full_scans"], after[0]["full_scans"]
        assert k0 < split_at[name] <= k + 1, (name, split_at.get(name), k0, k)
    last = rows[-1]
    sh = host.sharing
    assert sh.pages_shared == last["pages_shared"] == 128
    assert sh.pages_sharing == last["pages_sharing"] == 256
    assert sh.ksm_zero_pages == last["ksm_zero_pages"] == 0  # zero-filled: the split's zero page
    # rmap items not merged (unique pages): a row read while ksmd runs may catch a
    # batch half-counted, so the value most rows show after the splits
    late = [int(r["pages_unshared"] + r["pages_volatile"]) for r in rows if r["t_s"] >= 1.0]
    assert sh.pages_unshared + sh.pages_volatile == max(set(late), key=late.count) == 1408


# -- invariants --------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(["esx", "kvm"]),
    st.lists(st.tuples(st.sampled_from(["store", "zero", "write", "read", "release", "evict",
                                        "scan", "break", "reuse", "khugepaged", "evict_many"]),
                       st.integers(0, 1535), st.integers(0, 3)), max_size=60),
)
def test_frames_reservations_and_counters_add_up_under_random_activity(kind, ops):
    host = Host(HostConfig(memory="8MiB", min_free=f"{16 * PAGE_SIZE}", large_pages=True, kind=kind, admission_control=False,
                           swap_size="1MiB", zip_max_pct=5, reclaim_batch=4, pages_to_scan=700,
                           use_zero_pages=kind == "kvm"))
    vms = [vm_on(host, "a", 1536), vm_on(host, "b", 1536)]
    for op, pfn, k in ops:
        vm = vms[k % 2]
        s = vm.p2m.state[pfn]
        if op == "store":
            vm.store(pfn, page(k))
        elif op == "zero":
            vm.store(pfn, ZERO_PAGE)
        elif op in ("write", "read"):
            vm.touch(pfn, op == "write")
        elif op == "release":
            vm.release(pfn)
        elif op == "reuse":
            vm.reuse(pfn)
        elif op == "evict" and s == P2M_PRIVATE:
            vm.evict(pfn)
        elif op == "scan":
            host.sharing.scan(700)
        elif op == "break":
            vm.break_large_pages()
        elif op == "evict_many":
            # the compression cache's bulk path frees frames back into their regions
            privs = [p for p in range(pfn, min(pfn + 64, 1536)) if vm.p2m.state[p] == P2M_PRIVATE]
            vm.evict_many(privs)
        elif op == "khugepaged" and kind == "kvm":
            host.lp.scan_pmd(vm, pfn >> 9)
        host.validate()
    # every frame of a live region is unbacked or private, and the machine adds up
    assert host.machine.reserved == sum(vm.lp_reserved for vm in vms)


# -- contiguity (machine.RegionMemory) -------------------------------------------------------


def test_a_large_page_is_one_aligned_machine_region_its_subpages_in_place():
    host = esx()
    vm = vm_on(host)
    vm.touch(5, True)
    vm.touch(300, False)
    vm.touch(512 + 7, True)
    base0, base1 = vm.lp_base[0], vm.lp_base[1]
    assert base0 % 512 == 0 and base1 % 512 == 0 and base0 != base1
    assert vm.p2m.mpn[5] == base0 + 5 and vm.p2m.mpn[300] == base0 + 300
    assert vm.p2m.mpn[512 + 7] == base1 + 7
    host.validate()


def test_fragmented_machine_memory_refuses_a_large_page_with_frames_to_spare():
    # 8 MiB host = 4 regions of 512 frames; minFree 16 frames (400 %: 64 stay free)
    host = esx(memory="8MiB", min_free=f"{16 * PAGE_SIZE}")
    a = vm_on(host, "a", 2048)
    a.lp = None  # (a's frames: small pages, filling the four regions)
    for pfn in range(2048):
        a.touch(pfn, True)
    # a gives back every frame but one per region (a balloon): 2044 frames free
    keep = {a.p2m.mpn[pfn] for pfn in range(2048) if a.p2m.mpn[pfn] % 512 == 100}
    for pfn in range(2048):
        if a.p2m.mpn[pfn] not in keep:
            a._release(pfn)
    assert host.machine.nr_free == 2044
    b = vm_on(host, "b", 1024)
    b.touch(0, True)  # room for 512 + 64, but no wholly free region: a small page
    assert b.p2m.large[0] == LP_NONE and host.lp.thp_fault_fallback == 1
    assert host.machine.region_alloc_failed == 1
    # freeing a's last frame of region 2 makes it whole: b's next region gets it
    pfn2 = next(pfn for pfn in range(2048) if a.p2m.mpn[pfn] == 2 * 512 + 100)
    a._release(pfn2)
    b.touch(512, True)
    assert b.p2m.large[1] == LP_BACKED and b.lp_base[1] == 2 * 512
    host.validate()


def test_breaking_leaves_touched_frames_in_place_and_small_frames_fill_the_rest():
    host = esx()
    vm = vm_on(host)
    for pfn in (0, 1, 2):
        vm.touch(pfn, True)
    base = vm.lp_base[0]
    other = vm_on(host, "o", 1024)
    other.lp = None
    other.touch(0, True)  # a small frame: from a partly used region, not the large page
    assert other.p2m.mpn[0] >> 9 != base >> 9
    assert vm.break_large_pages() == 1
    assert [vm.p2m.mpn[p] for p in (0, 1, 2)] == [base, base + 1, base + 2]  # not moved
    # the broken region is partly used now: once o's current region is full, small
    # frames come from it, not from a never-used region
    for pfn in range(1, 512):
        other.touch(pfn, True)
    assert {other.p2m.mpn[p] >> 9 for p in range(512)} == {other.p2m.mpn[0] >> 9}
    other.touch(512, True)
    assert other.p2m.mpn[512] >> 9 == base >> 9
    assert host.machine.whole_regions() == 32 - 2  # 64 MiB: nothing else broken up
    host.validate()


# -- khugepaged (KVM host) ---------------------------------------------------------------------
#
# hpage_collapse_scan_pmd and collapse_huge_page (Linux 6.12 mm/khugepaged.c), the host's
# defaults: max_ptes_none 511, max_ptes_swap 64, max_ptes_shared 256, pages_to_scan 4096.

from hypervisor.largepage import (  # noqa: E402
    SCAN_ALLOC_HUGE_PAGE_FAIL,
    SCAN_EXCEED_NONE_PTE,
    SCAN_EXCEED_SHARED_PTE,
    SCAN_EXCEED_SWAP_PTE,
    SCAN_LACK_REFERENCED_PAGE,
    SCAN_PAGE_RO,
    SCAN_PMD_MAPPED,
    SCAN_PMD_NULL,
    SCAN_SUCCEED,
)
from hypervisor.p2m import P2M_BALLOONED, P2M_SWAPPED  # noqa: E402


def kvm(memory="64MiB", **kw) -> Host:
    return Host(HostConfig(memory=memory, min_free="1MiB", large_pages=True, kind="kvm", **kw))


def small_vm(host, name="g", pages=2048):
    """A VM whose frames were first touched while no large page could be had."""
    vm = vm_on(host, name, pages)
    vm.lp = None
    return vm


def test_khugepaged_collapses_a_range_with_one_young_writable_page():
    host = kvm()
    vm = small_vm(host)
    vm.store(7, page(7))  # one private page, 511 none: max_ptes_none 511 allows it
    vm.lp = host.lp
    old = vm.p2m.mpn[7]
    assert host.lp.scan_pmd(vm, 0) == SCAN_SUCCEED
    base = vm.lp_base[0]
    assert vm.p2m.large[0] == LP_BACKED and vm.p2m.mpn[7] == base + 7 and vm.load(7) == page(7)
    assert host.machine.owner[old] == -1  # the old small frame is freed
    assert host.machine.nr_used == 512 and vm.lp_res[0] == 511  # the rest: zero-filled
    assert host.lp.pages_collapsed == 1 and host.lp.thp_collapse_alloc == 1
    assert host.lp.scan_pmd(vm, 0) == SCAN_PMD_MAPPED
    # the zero-filled subpages are the large page's: a first touch costs no fault
    assert vm.touch(8, True) == 0.0
    host.validate()


def test_khugepaged_leaves_an_untouched_range_and_one_without_young_or_writable_pages():
    host = kvm(swap_size="8MiB", compression=False)
    vm = small_vm(host)
    assert host.lp.scan_pmd(vm, 0) == SCAN_PMD_NULL  # no page table: nothing counted
    vm.store(0, page(0))
    vm.p2m.accessed[0] = 0  # the host sampled its accessed bit since
    vm.lp = host.lp
    assert host.lp.scan_pmd(vm, 0) == SCAN_LACK_REFERENCED_PAGE
    assert host.lp.thp_scan_exceed_none_pte == 0
    host.validate()


def test_khugepaged_max_ptes_none_swap_and_shared_in_address_order():
    host = kvm(swap_size="8MiB", compression=False)
    lp = host.lp
    vm = small_vm(host)
    # region 0: 65 swapped pages first, then one young private page: swap exceeded (65 > 64)
    for pfn in range(66):
        vm.store(pfn, page(pfn))
    for pfn in range(65):
        vm.evict(pfn, compress=False)
    assert lp.scan_pmd(vm, 0) == SCAN_EXCEED_SWAP_PTE and lp.thp_scan_exceed_swap_pte == 1
    # one swapped page fewer (64 <= 64) but only 1 young page of 256 needed: lack of referenced
    vm.touch(0, False)  # swapped in: 64 swapped remain, 2 young pages
    assert vm.p2m.state[0] != P2M_SWAPPED
    assert lp.scan_pmd(vm, 0) == SCAN_LACK_REFERENCED_PAGE
    # region 1: 512 discarded balloon pages: none_or_zero 512 > 511
    for pfn in range(512, 1024):
        vm.store(pfn, page(pfn))
        vm._release(pfn)
    assert vm.p2m.state[512] == P2M_BALLOONED
    assert lp.scan_pmd(vm, 1) == SCAN_EXCEED_NONE_PTE and lp.thp_scan_exceed_none_pte == 1
    host.validate()


def _ksm_pair(host, shared: int):
    """VMs a and b of 512 small pages, the first `shared` of them identical in both and
    merged by KSM, the rest distinct."""
    a, b = small_vm(host, "a", 512), small_vm(host, "b", 512)
    for vm, tag in ((a, "a"), (b, "b")):
        for pfn in range(512):
            vm.store(pfn, page(pfn) if pfn < shared else random_page(pfn, tag))
    host.sharing.full_pass()
    host.sharing.full_pass()
    assert host.sharing.pages_sharing == shared
    a.lp = b.lp = host.lp
    return a, b


def test_khugepaged_counts_ksm_pages_against_max_ptes_shared():
    host = kvm(pages_to_scan=100_000)
    a, b = _ksm_pair(host, 257)
    assert host.lp.scan_pmd(a, 0) == SCAN_EXCEED_SHARED_PTE  # 257 > 256
    assert host.lp.thp_scan_exceed_share_pte == 1
    host.validate()


def test_khugepaged_collapse_copies_ksm_pages_and_undoes_their_sharing():
    host = kvm(pages_to_scan=100_000)
    a, b = _ksm_pair(host, 256)
    used = host.machine.nr_used
    assert host.lp.scan_pmd(a, 0) == SCAN_SUCCEED  # 256 <= 256
    # a's 256 KSM mappings become private copies inside the huge page: b's stay shared
    # (pages_sharing 256 -> 0: each stable frame is left with b's mapping only)
    assert a.p2m.nr[P2M_PRIVATE] == 512 and host.sharing.pages_sharing == 0
    assert a.load(3) == page(3) and b.p2m.state[3] == P2M_SHARED
    assert host.machine.nr_used == used + 256  # 256 private frames moved, 256 copies made
    host.validate()


def test_khugepaged_of_an_all_ksm_range_is_read_only():
    host = kvm(pages_to_scan=100_000)
    a, b = _ksm_pair(host, 511)
    a._release(511)  # 511 KSM pages and one discarded page: nothing writable
    assert host.lp.scan_pmd(a, 0) == SCAN_EXCEED_SHARED_PTE
    host.lp.max_ptes_shared = 511
    assert host.lp.scan_pmd(a, 0) == SCAN_PAGE_RO  # no writable PTE
    host.validate()


def test_khugepaged_swaps_in_and_backs_ballooned_pages_again():
    host = kvm(swap_size="8MiB", compression=False)
    vm = small_vm(host)
    for pfn in range(512):
        vm.store(pfn, page(pfn))
    for pfn in range(10):
        vm.evict(pfn, compress=False)
    for pfn in range(10, 20):
        vm._release(pfn)
    assert vm.nr_balloon_backed == 10
    vm.lp = host.lp
    assert host.lp.scan_pmd(vm, 0) == SCAN_SUCCEED  # 10 swapped <= 64, 502 young >= 256
    assert vm.pswpin == 10 and vm.load(3) == page(3) and vm.p2m.mpn[3] == vm.lp_base[0] + 3
    # the balloon's discarded pages are zero-filled memory of the huge page again
    assert vm.nr_balloon_backed == 0 and vm.balloon_refault == 10 and vm.lp_res[0] == 10
    assert host.machine.nr_used == 512
    host.validate()


def test_khugepaged_needs_a_wholly_free_region():
    # 4 MiB = 2 regions, both partly used by small pages: no huge page for a collapse
    host = Host(HostConfig(memory="4MiB", min_free=f"{8 * PAGE_SIZE}", large_pages=True, kind="kvm"))
    vm = small_vm(host, pages=1024)
    for pfn in range(1024):
        vm.store(pfn, page(pfn))
    for pfn in range(1024):
        if vm.p2m.mpn[pfn] % 512 != 0:
            vm._release(pfn)
    vm.lp = host.lp
    vm.store(1, page(1))
    assert host.lp.scan_pmd(vm, 0) == SCAN_ALLOC_HUGE_PAGE_FAIL
    assert host.lp.thp_collapse_alloc_failed == 1 and host.machine.region_alloc_failed == 1
    host.validate()


def test_khugepaged_wake_scans_pages_to_scan_ptes_and_counts_full_scans():
    host = kvm()
    vm = small_vm(host, pages=20 * 512)
    for r in range(20):
        vm.store(r * 512, page(r))
    vm.lp = host.lp
    done, res = host.lp.khugepaged_scan(host.vms, 4096)
    assert done == 4096 and host.lp.pages_collapsed == 8  # 4096 / 512 ranges a wake
    host.lp.khugepaged_scan(host.vms, 4096)
    host.lp.khugepaged_scan(host.vms, 4096)  # 4 ranges left, then the head: a full scan
    assert host.lp.pages_collapsed == 20 and host.lp.full_scans == 1
    host.validate()


def _daemon_host(env):
    # 12 MiB = 6 regions; minFree 8 frames
    return Host(HostConfig(memory="12MiB", min_free=f"{8 * PAGE_SIZE}", large_pages=True, kind="kvm",
                           sharing=False, ballooning=False), env=env)


def test_khugepaged_daemon_collapses_once_a_region_is_wholly_free_again():
    env = simpy.Environment()
    host = _daemon_host(env)
    a = small_vm(host, "a", 1024)  # regions 0-1, small pages
    b = small_vm(host, "b", 2040)  # regions 2-5 but 8 frames
    for pfn in range(1024):
        a.store(pfn, page(pfn))
    for pfn in range(2040):
        b.store(pfn, page(pfn + 5000))
    a.lp = b.lp = host.lp
    env.run(until=25)  # the wake at 0 failed twice (alloc_sleep 60 s between)
    assert host.lp.pages_collapsed == 0 and host.lp.thp_collapse_alloc_failed == 1
    for pfn in range(2040):
        b._release(pfn)  # b gives its memory back: regions 2-5 wholly free
    env.run(until=61)  # the wake goes on after alloc_sleep: a's two ranges collapse
    assert host.lp.pages_collapsed == 2 and a.lp_live == 2
    assert host.lp.thp_collapse_alloc_failed == 1
    assert all(a.load(p) == page(p) for p in (0, 511, 512, 1023))
    assert host.cpus is not None and host.lp.collapse_cpu_s == pytest.approx(2 * host.config.large_page_fault_cost)
    host.validate()


def test_khugepaged_without_compaction_cannot_use_half_free_regions():
    # with compaction off (khugepaged/defrag 0, transparent_hugepage/defrag never,
    # compaction_proactiveness 0): frees scattered over every region leave memory free
    # but no region whole, and khugepaged keeps failing (test_host_compaction: with it)
    env = simpy.Environment()
    host = Host(HostConfig(memory="12MiB", min_free=f"{8 * PAGE_SIZE}", large_pages=True, kind="kvm",
                           sharing=False, ballooning=False, khugepaged_defrag=False, thp_defrag="never",
                           compaction_proactiveness=0), env=env)
    a = small_vm(host, "a", 1536)
    b = small_vm(host, "b", 1528)
    for pfn in range(1528):  # a and b interleaved over all six regions
        a.store(pfn, page(pfn))
        b.store(pfn, page(pfn + 5000))
    a.lp = b.lp = host.lp
    for pfn in range(1528):
        b._release(pfn)
    env.run(until=200)
    assert host.machine.nr_free >= 1500 and host.machine.whole_regions() == 0
    assert host.lp.pages_collapsed == 0 and host.lp.thp_collapse_alloc_failed >= 2
    host.validate()


def _khugepaged_fixture():
    facts, rows, cols = {}, [], None
    for line in (FIXTURE.parent / "khugepaged_ksm.out").read_text().splitlines():
        if line.startswith("#"):
            continue
        key, _, rest = line.partition(" ")
        if key == "columns":
            cols = rest.split()
        elif key == "row":
            rows.append(dict(zip(cols, map(float, rest.split()), strict=True)))
        else:
            facts[key] = rest
    return facts, rows


def test_khugepaged_and_ksm_compete_as_on_this_machines_kernel():
    """tests/data/ksm_thp/khugepaged_ksm.out (record_khugepaged.sh): four MADV_HUGEPAGE
    ranges, A and B with 200 common subpages, C and D with 300; ksmd splits all four;
    khugepaged (host defaults) collapses A and B again (200 KSM pages <= max_ptes_shared
    256) and ksmd splits them again at once while they still match, never C and D (300 >
    256); once A's 200 subpages are rewritten, A and B are collapsed at khugepaged's next
    wake and stay huge (B's KSM pages, mapped once, are not shared PTEs any more)."""
    facts, rows = _khugepaged_fixture()
    assert facts["kernel"].startswith("6.")
    for key, value in (("max_ptes_none", 511), ("max_ptes_swap", 64), ("max_ptes_shared", 256),
                       ("pages_to_scan", 4096), ("scan_sleep_millisecs", 10000)):
        assert int(facts[f"khugepaged_{key}"]) == value  # the host defaults the model uses
    diverge = float(facts["diverge_s"])
    # -- the kernel's facts, read from the rows
    early = [r for r in rows if 1.0 <= r["t_s"] < diverge]
    late = [r for r in rows if r["t_s"] >= diverge]
    assert all(r["AH_C"] == r["AH_D"] == 0 for r in rows[1:])  # C, D: never a THP again
    assert all(r["AH_A"] == r["AH_B"] == 0 for r in early)  # A, B: re-split between samples
    resplits = int(early[-1]["thp_split_page"]) - 4  # (machine-wide: A's and B's here)
    assert resplits >= 2 and resplits % 2 == 0
    collapsed_at = next(r["t_s"] for r in late if r["AH_A"] == 2048)
    assert all(r["AH_A"] == r["AH_B"] == 2048 for r in late if r["t_s"] >= collapsed_at)
    assert late[-1]["pages_shared"] == late[-1]["pages_sharing"] == 300
    period = 12.5  # seconds between khugepaged's wakes as the rows show (10 s sleep + scan)
    assert collapsed_at - diverge <= period

    # -- the model: the same four ranges as four VMs of a KVM host, ksmd as record_khugepaged.sh set it
    env = simpy.Environment()
    host = Host(HostConfig(memory="64MiB", min_free="1MiB", large_pages=True, kind="kvm",
                           pages_to_scan=1000, sleep_millisecs=20, max_page_sharing=256,
                           use_zero_pages=False, smart_scan=True, ballooning=False), env=env)
    vms = {name: vm_on(host, name, 512) for name in "DCBA"}  # (top-down mmap: D lowest)
    for name, vm in vms.items():
        for i in range(512):
            if name in "AB" and i < 200:
                data = random_page(1 + i, "pattern")
            elif name in "CD" and i < 300:
                data = random_page(1000 + i, "pattern")
            else:
                data = random_page(i, f"unique-{name}")
            vm.store(i, data)
    assert all(vm.lp_live == 1 for vm in vms.values())
    lp = host.lp
    samples = []

    def sampler():
        # every 10 ms: how long a collapsed A or B lasts is measured, not sampled
        while True:
            samples.append((env.now, {n: v.lp_live for n, v in vms.items()},
                            host.sharing.pages_shared, host.sharing.pages_sharing, lp.pages_collapsed))
            yield env.timeout(0.01)

    def diverger():
        yield env.timeout(diverge)
        for i in range(200):
            vms["A"].store(i, random_page(i, "diverged"))

    env.process(sampler())
    env.process(diverger())
    env.run(until=float(rows[-1]["t_s"]))
    m_early = [s for s in samples if 1.0 <= s[0] < diverge]
    m_late = [s for s in samples if s[0] >= diverge]
    assert all(s[1]["C"] == s[1]["D"] == 0 for s in samples if s[0] >= 1.0)
    assert lp.thp_scan_exceed_share_pte > 0  # C and D refused: 300 > 256
    # A and B huge again for less than the kernel's sample period each time (every early
    # row showed them split)
    runs, start = [], None
    for t, live, *_ in m_early:
        if live["A"] and start is None:
            start = t
        elif not live["A"] and start is not None:
            runs.append(t - start)
            start = None
    assert runs and start is None and max(runs) < 0.2
    m_collapses = m_early[-1][4]
    assert m_collapses >= 2 and m_collapses % 2 == 0  # A and B, every wake
    assert lp.thp_split_ksm - 4 >= m_collapses  # each collapse split again by ksmd
    m_collapsed_at = next(s[0] for s in m_late if s[1]["A"] == 1)
    assert m_collapsed_at - diverge <= period
    assert all(s[1]["A"] == s[1]["B"] == 1 for s in m_late if s[0] >= m_collapsed_at)
    assert host.sharing.pages_shared == host.sharing.pages_sharing == 300
    host.validate()


@pytest.mark.parametrize("key,value", [("khugepaged_max_ptes_none", 512), ("khugepaged_max_ptes_shared", -1),
                                       ("khugepaged_pages_to_scan", 0), ("khugepaged_scan_sleep_millisecs", -5)])
def test_khugepaged_settings_out_of_range_are_refused_naming_the_key(key, value):
    # the kernel's own bounds: max_ptes_* <= HPAGE_PMD_NR - 1 (max_ptes_none_store), pages_to_scan >= 1
    with pytest.raises(ValueError, match=key):
        HostConfig(large_pages=True, kind="kvm", **{key: value})


def test_khugepaged_gives_up_when_a_swap_in_made_the_host_evict_a_page_of_the_range(monkeypatch):
    # collapse_huge_page: the swap-ins come first; if one's allocation made the host
    # reclaim a page of this very range, __collapse_huge_page_isolate finds a PTE not
    # present and the collapse fails (SCAN_PTE_NON_PRESENT), its huge page given back
    from hypervisor.largepage import SCAN_PTE_NON_PRESENT

    host = kvm(swap_size="8MiB", compression=False)
    vm = small_vm(host)
    for pfn in range(512):
        vm.store(pfn, page(pfn))
    vm.evict(0, compress=False)
    vm.lp = host.lp
    real = vm._touch_slow

    def swap_in_under_pressure(pfn, write, s):
        cost = real(pfn, write, s)
        vm.evict(100, compress=False)  # the host's reclaim picked a page of the range
        return cost

    monkeypatch.setattr(vm, "_touch_slow", swap_in_under_pressure)
    free = host.machine.nr_free
    assert host.lp.scan_pmd(vm, 0) == SCAN_PTE_NON_PRESENT
    assert vm.p2m.large[0] == LP_NONE and host.lp.pages_collapsed == 0
    assert host.machine.reserved == 0 and host.machine.nr_free == free  # (0 in, 100 out)
    host.validate()
