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
                                        "scan", "break", "reuse"]),
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
