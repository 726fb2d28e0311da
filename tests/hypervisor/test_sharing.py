"""KSM rules (linux-mm.md section 9) on VMs driven directly through touch/store."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE
from hypervisor.machine import OWNER_SHARED, MachineMemory
from hypervisor.p2m import P2M_PRIVATE, P2M_SHARED, P2M_ZERO
from hypervisor.sharing import RMAP_ITEM_SIZE, PageSharing, page_checksum, skip_age
from hypervisor.vm import VM

from .helpers import page


def setup(contents_per_vm, frames=None, **kw):
    """One VM per list of page contents (None: leave the frame untouched)."""
    total = sum(len(c) for c in contents_per_vm)
    m = MachineMemory(frames or total + 4)
    ksm = PageSharing(m, **kw)
    vms = []
    for i, contents in enumerate(contents_per_vm):
        vm = VM(m, f"vm{i}", len(contents), vmid=i)
        for pfn, data in enumerate(contents):
            if data is not None:
                vm.store(pfn, data)
        ksm.add_vm(vm)
        vms.append(vm)
    return m, ksm, vms


def counters(ksm):
    return (ksm.pages_shared, ksm.pages_sharing, ksm.pages_unshared, ksm.pages_volatile)


def test_two_identical_vms_merge_on_the_second_pass():
    n = 10
    m, ksm, (a, b) = setup([[page(i) for i in range(n)]] * 2, smart_scan=False)
    ksm.full_pass()
    # pass 1: every page gets an rmap item and a checksum: all volatile
    assert ksm.full_scans == 1 and ksm.rmap_items == 2 * n
    assert counters(ksm) == (0, 0, 0, 2 * n)
    ksm.full_pass()
    # pass 2: vm0's pages enter the unstable tree, vm1's meet them and merge
    assert counters(ksm) == (n, n, 0, 0)
    assert m.nr_free == m.nr_frames - n  # n frames saved
    for pfn in range(n):
        assert a.p2m.state[pfn] == b.p2m.state[pfn] == P2M_SHARED
        assert a.p2m.mpn[pfn] == b.p2m.mpn[pfn]
        assert m.owner[a.p2m.mpn[pfn]] == OWNER_SHARED and m.refcount[a.p2m.mpn[pfn]] == 2
        assert a.load(pfn) == b.load(pfn) == page(pfn)
    assert ksm.general_profit == n * PAGE_SIZE - 2 * n * RMAP_ITEM_SIZE
    ksm.full_pass()
    assert counters(ksm) == (n, n, 0, 0) and ksm.merges == n
    ksm.validate()
    m.validate()


def test_write_to_a_shared_page_copies_it():
    m, ksm, (a, b) = setup([[page(1)], [page(1)]], smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    shared = a.p2m.mpn[0]
    assert counters(ksm) == (1, 1, 0, 0)
    assert a.touch(0, False) == 0.0  # reading a shared page costs nothing
    cost = a.touch(0, True)
    assert cost == a.cow_cost
    assert a.p2m.state[0] == P2M_PRIVATE and a.p2m.mpn[0] != shared
    # the copy then takes the write: page(1) with one 16-byte value changed (a write of
    # unknown data to bytes with no recipe, guestkernel.physmem.WrittenPage)
    new = a.load(0)
    diff = [i for i in range(PAGE_SIZE) if new[i] != page(1)[i]]
    assert diff and diff[0] // 16 == diff[-1] // 16 and b.p2m.mpn[0] == shared
    assert b.load(0) == page(1)
    assert a.cow_ksm == 1 and ksm.cow_ksm == 1
    # the KSM page keeps its last mapping: still one stable page, nothing sharing
    assert (ksm.pages_shared, ksm.pages_sharing) == (1, 0)
    b.store(0, page(2))  # a whole-page write breaks without a copy
    assert b.load(0) == page(2) and b.cow_ksm == 1
    assert (ksm.pages_shared, ksm.pages_sharing) == (0, 0)
    assert m.owner[shared] == -1  # the KSM frame went back to the free list
    ksm.validate()
    m.validate()


def test_a_page_that_changes_between_passes_does_not_merge():
    m, ksm, (a, b) = setup([[page(1)], [page(1)]], smart_scan=False)
    ksm.full_pass()
    a.store(0, page(5))
    b.store(0, page(5))
    ksm.full_pass()  # checksums changed since pass 1: both volatile again
    assert counters(ksm) == (0, 0, 0, 2)
    ksm.full_pass()
    assert counters(ksm) == (1, 1, 0, 0)


def test_a_new_page_equal_to_a_stable_page_merges_at_once():
    # mm/ksm.c searches the stable tree before the checksum test
    m, ksm, (a, b) = setup([[page(1), None], [page(1)]], smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    a.store(1, page(1))
    ksm.full_pass()
    assert counters(ksm) == (1, 2, 0, 0) and m.refcount[a.p2m.mpn[1]] == 3


@pytest.mark.parametrize(
    "n,limit",
    [(2, 2), (3, 2), (4, 2), (5, 2), (7, 3), (8, 3), (9, 3), (10, 4), (1, 2), (300, 256)],
)
def test_max_page_sharing_gives_floor_n_over_m_dups_plus_one_for_two_or_more_left(n, limit):
    m, ksm, _ = setup([[page(0)] * n], max_page_sharing=limit, smart_scan=False)
    for _ in range(4):
        ksm.full_pass()
    dups = n // limit + (1 if n % limit >= 2 else 0)
    lone = 1 if n % limit == 1 else 0
    assert ksm.pages_shared == dups
    assert ksm.pages_sharing == n - dups - lone
    assert ksm.pages_unshared == lone  # the lone page waits in the unstable tree
    assert ksm.pages_volatile == 0
    assert ksm.stable_node_dups == (dups if dups > 1 else 0)
    assert ksm.stable_node_chains == (1 if dups > 1 else 0)
    ksm.validate()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(2, 9), st.integers(1, 3))
def test_max_page_sharing_rule_holds_for_any_split_over_vms(n, limit, nvms):
    per = [n // nvms + (1 if i < n % nvms else 0) for i in range(nvms)]
    m, ksm, _ = setup([[page(0)] * k for k in per if k], max_page_sharing=limit)
    for _ in range(3):
        ksm.full_pass()
    assert ksm.pages_shared == n // limit + (1 if n % limit >= 2 else 0)
    assert ksm.pages_sharing + ksm.pages_shared == n - (1 if n % limit == 1 else 0)
    ksm.validate()


def test_use_zero_pages_maps_zero_pages_to_the_zero_page():
    contents = [ZERO_PAGE, page(1), ZERO_PAGE, ZERO_PAGE]
    m, ksm, (vm,) = setup([contents], use_zero_pages=True, smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    assert ksm.ksm_zero_pages == 3 and ksm.pages_shared == 0
    assert [vm.p2m.state[i] for i in range(4)] == [P2M_ZERO, P2M_PRIVATE, P2M_ZERO, P2M_ZERO]
    assert m.nr_used == 1 and vm.load(0) is ZERO_PAGE
    # rmap items of zero-mapped pages go at the next visit (they are no longer anon)
    assert ksm.rmap_items == 4
    ksm.full_pass()
    assert ksm.rmap_items == 1
    assert ksm.general_profit == 3 * PAGE_SIZE - 1 * RMAP_ITEM_SIZE
    vm.touch(2, True)
    written = vm.load(2)  # the zero page's copy, written: no longer all zeros
    assert ksm.ksm_zero_pages == 2 and vm.cow_zero == 1 and written != ZERO_PAGE
    assert written.count(0) >= PAGE_SIZE - 16
    ksm.validate()


def test_without_use_zero_pages_zero_pages_merge_like_any_page():
    m, ksm, _ = setup([[ZERO_PAGE] * 3], smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    assert (ksm.pages_shared, ksm.pages_sharing, ksm.ksm_zero_pages) == (1, 2, 0)


def test_per_vm_salting_shares_only_within_a_vm():
    same = [page(1), page(1), page(2)]
    m, ksm, _ = setup([same, same], salting="per-vm", smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    # each VM merges its own two page(1)s; page(2) never meets its twin across VMs
    assert counters(ksm) == (2, 2, 2, 0)
    m, ksm, _ = setup([same, same], salting="none", smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    assert counters(ksm) == (2, 4, 0, 0)


def test_smart_scan_skips_unmerged_pages_1_2_4_8_passes():
    m, ksm, _ = setup([[page(1)]])
    skipped = []
    for _ in range(14):
        ksm.full_pass()
        skipped.append(ksm.pages_skipped)
    # visit p has age p-1: age 3 sets 1 skip, age 5 sets 2, age 8 sets 4, age 13 sets 8
    assert skipped == [0, 0, 0, 0, 1, 1, 2, 3, 3, 4, 5, 6, 7, 7]
    assert [skip_age(a) for a in (3, 4, 5, 6, 8, 9, 200)] == [1, 2, 2, 4, 4, 8, 8]


def test_smart_scan_never_skips_pages_that_keep_merging_and_volatile_pages_age():
    m, ksm, (a, b) = setup([[page(1)], [page(1)]])
    for _ in range(12):
        ksm.full_pass()
    assert ksm.pages_skipped == 0 and counters(ksm) == (1, 1, 0, 0)


def test_pages_to_scan_bounds_a_batch_and_the_cursor_resumes():
    m, ksm, _ = setup([[page(i) for i in range(5)], [page(i) for i in range(3)]], pages_to_scan=3)
    ksm.scan()
    assert ksm.pages_scanned == 3 and ksm.rmap_items == 3 and ksm.full_scans == 0
    ksm.scan()
    ksm.scan()  # 3 requested, 2 left: ksm_do_scan returns where the full scan ends
    assert ksm.full_scans == 1 and ksm.pages_scanned == 8 and ksm.rmap_items == 8
    assert ksm.scan_time == pytest.approx(8 * ksm.hash_cost)
    ksm.scan()  # the next batch starts the next pass
    assert ksm.full_scans == 1 and ksm.pages_scanned == 11


def test_unbacked_frames_are_not_scanned_and_released_pages_lose_their_items():
    m, ksm, (vm,) = setup([[page(1), None, page(2)]], smart_scan=False)
    ksm.full_pass()
    assert ksm.rmap_items == 2 and ksm.pages_scanned == 2
    vm.release(0)
    ksm.full_pass()
    assert ksm.rmap_items == 1


def _colliding_pages():
    seen = {}
    i = 0
    while True:
        p = page(10_000 + i)
        c = page_checksum(p)
        if c in seen:
            return seen[c], p
        seen[c] = p
        i += 1


def test_hash_collision_is_counted_and_never_merges():
    p, q = _colliding_pages()
    assert p != q and page_checksum(p) == page_checksum(q)
    m, ksm, _ = setup([[p, q, q]], smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    # p enters the unstable tree; q compares unequal (collision) and joins the bucket;
    # the second q compares with p (collision) then with q and merges
    assert ksm.hash_collisions == 2
    assert counters(ksm) == (1, 1, 1, 0)
    ksm.validate()


def test_salting_is_checked():
    with pytest.raises(ValueError, match="salting"):
        PageSharing(MachineMemory(1), salting="per-host")
    with pytest.raises(ValueError, match="max_page_sharing"):
        PageSharing(MachineMemory(1), max_page_sharing=1)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["store", "write", "release", "scan"]), st.integers(0, 11), st.integers(0, 3)),
        max_size=80,
    ),
    st.booleans(),
    st.integers(2, 4),
)
def test_counters_stay_exact_under_random_guest_activity(ops, zero, limit):
    contents = [ZERO_PAGE, page(1), page(2), page(3)]
    m, ksm, vms = setup(
        [[contents[i % 4] for i in range(6)], [contents[i % 3] for i in range(6)]],
        frames=64,
        use_zero_pages=zero,
        max_page_sharing=limit,
    )
    for op, pfn, c in ops:
        vm = vms[pfn // 6]
        pfn %= 6
        if op == "store":
            vm.store(pfn, contents[c])
        elif op == "write":
            vm.touch(pfn, True)
        elif op == "release":
            vm.release(pfn)
        else:
            ksm.scan(c * 3 + 1)
        ksm.validate()
        m.validate()
        for v in vms:
            v.p2m.validate()


def _held(m, vm, pfn):
    """What a frame holds, without folding a pending write (which would make its new
    content here rather than where the scanner makes it): (written?, bytes held)."""
    from guestkernel.physmem import page_bytes
    from hypervisor.machine import WRITTEN

    if vm.p2m.state[pfn] in (P2M_PRIVATE, P2M_SHARED):
        mpn = vm.p2m.mpn[pfn]
        return m.csum[mpn] == WRITTEN, page_bytes(m.content[mpn])
    return False, vm.load(pfn)


def _snapshot(m, ksm, vms):
    state = {k: v for k, v in ksm.counters().items() if k not in ("scan_time", "pages_hashed")}
    for vm in vms:
        kv = vm._ksm
        state[vm.name] = (
            bytes(vm.p2m.state), list(kv.oldsum), bytes(kv.flags), bytes(kv.age),
            bytes(kv.skips), [_held(m, vm, p) for p in range(vm.nr_pages)],
        )
    state["unstable"] = dict(ksm._unstable)
    return state


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 60), min_size=8, max_size=24),
    st.lists(
        st.tuples(st.sampled_from(["store", "write", "release", "scan", "pass"]), st.integers(0, 47),
                  st.integers(0, 60)),
        max_size=40,
    ),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["none", "per-vm"]),
    st.integers(1, 60),
    st.booleans(),
    st.booleans(),
    st.integers(0, 3),
)
def test_fast_paths_have_exactly_the_per_page_outcome(
    layout, ops, zero, smart, salting, kinds, distinct, cross, holes
):
    # `kinds` distinct contents: few kinds merge a lot, distinct layouts and VMs that share
    # nothing (not `cross`) let bulk windows through
    contents = [ZERO_PAGE] + [page(i) for i in range(1, 122)]
    if distinct:
        layout = list(range(len(layout)))
        kinds = max(kinds, len(layout))
    layout = [c % kinds for c in layout]
    ops = [(op, pfn, c % kinds) for op, pfn, c in ops]
    other = 0 if cross else 61

    def run(fast):
        a = [contents[c] for c in layout]
        if holes:  # leave frames untouched: sparse windows
            a = [None if i % (holes + 1) else d for i, d in enumerate(a)]
        m, ksm, vms = setup(
            [a, [contents[(c * 7) % kinds + other] for c in layout]],
            frames=128, use_zero_pages=zero, smart_scan=smart, salting=salting,
            max_page_sharing=3,
        )
        ksm.bulk_min = 4
        ksm.fast_paths = fast
        snaps = []
        for op, pfn, c in ops:
            vm = vms[pfn % 2]
            pfn %= vm.nr_pages
            if op == "store":
                vm.store(pfn, contents[c])
            elif op == "write":  # new content, made where the scanner (or a CoW) reads it
                vm.touch(pfn, True)
            elif op == "release":
                vm.release(pfn)
            elif op == "scan":
                ksm.scan(c % 6 * 7 + 1)
            else:
                ksm.full_pass()
            snaps.append(_snapshot(m, ksm, vms))
        snaps.append(m.write_folds)
        for _ in range(4):
            ksm.full_pass()
            snaps.append(_snapshot(m, ksm, vms))
        ksm.validate()
        return snaps

    assert run(True) == run(False)


def test_a_panicked_guest_leaves_no_rmap_items():
    """guest_panicked gives every frame back (P2M_NONE) and frees the VM's rmap items, as
    ksm_exit does for an exiting mm: counters stay exact and the scanner, which skips
    unbacked frames, is never left with items it cannot reach."""
    shared = [page(i) for i in range(6)]
    m, ksm, (a, b) = setup([shared + [page(100), page(101)], shared + [page(200), None]],
                           smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()
    assert ksm.pages_shared == 6 and ksm.pages_sharing == 6
    assert ksm.rmap_items == 15 and ksm.pages_unshared == 3  # b's pfn 7 never backed
    b.guest_panicked("test")
    ksm.validate()
    # a's 8 items stay: its 6 pages now alone on their KSM frames, 2 in the unstable tree
    assert ksm.rmap_items == 8 and ksm.pages_unshared == 2
    assert ksm.pages_shared == 6 and ksm.pages_sharing == 0
    assert list(b._ksm.oldsum) == [-1] * 8
    ksm.full_pass()
    ksm.validate()


@given(st.lists(st.booleans(), min_size=1, max_size=200), st.integers(1, 200))
def test_nth_set_byte_is_the_index_of_the_nth_set_frame(bits, n):
    from hypervisor.sharing import _nth_set_byte

    mask = bytes(map(int, bits))
    ones = [i for i, b in enumerate(bits) if b]
    if n <= len(ones):
        assert _nth_set_byte(mask, n) == ones[n - 1]


def test_stable_node_dup_takes_the_first_dup_with_room_and_the_fullest_when_pruning():
    """stable_node_dup (mm/ksm.c): a lookup takes the first dup of the chain with room
    and moves it to the head while it has room for one more; at most every
    stable_node_chains_prune_millisecs (2 s) a lookup walks all dups and takes the fullest
    with room. New dups go to the head (stable_node_chain_add_dup)."""
    m, ksm, (vm,) = setup([[page(0)] * 12], max_page_sharing=4, smart_scan=False)
    ksm.full_pass()
    ksm.full_pass()  # at t=0 (first lookup: a full walk, chain_prune_time = 0)
    chain = next(iter(ksm._stable.values()))
    a, b, c = chain.dups  # created last first: c holds pfns 0-3, b 4-7, a 8-11
    assert [vm.p2m.mpn[p] for p in (0, 4, 8)] == [c, b, a]

    def rcs():
        return [m.refcount[d] for d in chain.dups]

    def merge(pfn, now):
        ksm.now = now
        assert ksm.try_stable_merge(vm, pfn)
        return vm.p2m.mpn[pfn]

    # sharing is broken by whole-page writes of the same bytes, so that the pages can
    # merge again at once
    vm.store(4, page(0))
    vm.store(5, page(0))  # b has 2 sharers left
    assert chain.dups == [a, b, c] and rcs() == [4, 2, 4]
    assert merge(4, 1.0) == b  # the first with room; 3 < 4: to the head
    assert chain.dups == [b, a, c] and rcs() == [3, 4, 4]
    for pfn in (8, 9, 10):
        vm.store(pfn, page(0))  # a keeps 1
    vm.store(0, page(0))  # c keeps 3
    assert rcs() == [3, 1, 3]
    assert merge(8, 1.5) == b  # the first with room (the head), now full
    assert chain.dups == [b, a, c] and rcs() == [4, 1, 3]
    assert merge(9, 2.5) == c  # 2 s since the last walk: the fullest with room
    assert chain.dups == [b, a, c] and rcs() == [4, 1, 4]  # full: stays where it is
    assert merge(0, 3.0) == a  # within 2 s of that walk: the first with room
    assert chain.dups == [a, b, c] and rcs() == [2, 4, 4]
    ksm.validate()


# -- pages the guests write (issue 12, section 1) ------------------------------------------


def _two_guests_with_the_same_profile_data(n: int, smart_scan: bool = True):
    """A host with two guests whose processes hold the same n pages of profile data
    (one input, no ASLR: byte-identical in both), merged by KSM. Returns the host, the
    tasks and the address of their data."""
    from experiments.content import ContentSource, DataProfile
    from guestkernel.config import KernelConfig
    from hypervisor.host import Host, HostConfig

    # structured pages only (no zero or same-filled ones, which would all merge into one)
    profile = DataProfile("rows", "test: row records, all structured", corpus="database",
                          random_mean=0.1)
    host = Host(HostConfig(memory="256MiB", compression=False, ballooning=False,
                           smart_scan=smart_scan))
    tasks = []
    for name in ("a", "b"):
        src = ContentSource(7, name, input="shared", randomize_va_space=0)
        vm = host.create_vm(name, KernelConfig(memory="64MiB"))
        t = vm.kernel.spawn("db")
        addr = t.mmap(0, n * PAGE_SIZE, 3, 0x22, -1, 0)  # PROT_READ|WRITE, PRIVATE|ANONYMOUS
        t.access_range(addr, n * PAGE_SIZE, True,
                       [src.app_page(profile, f"row/{i}", 0, True) for i in range(n)])
        tasks.append(t)
    return host, tasks, addr


def _ksm(host, name):
    return int(host.sysfs.read(f"/sys/kernel/mm/ksm/{name}"))


def test_merged_pages_written_by_a_profile_do_not_merge_again_while_their_content_differs():
    """mm/ksm.c, cmp_and_merge_page: a page whose checksum (calc_checksum) differs from
    the one stored at the last visit is volatile and not inserted in the unstable tree; a
    merged page the guest writes is copied (cow_ksm) and then holds new data. So 2048
    merged pages that a workload writes leave pages_sharing, are volatile for one pass,
    unshared (in the unstable tree, with no twin) once they have stayed the same over two
    visits, and never merge again while their bytes differ from every other page's;
    pages written again between visits stay volatile. (The old model copied the page and
    merged it straight back: same bytes.)"""
    n = 2048
    host, (ta, tb), addr = _two_guests_with_the_same_profile_data(n)
    ksm = host.sharing
    ksm.full_pass()
    ksm.full_pass()
    sharing0 = _ksm(host, "pages_sharing")
    assert sharing0 >= n  # each row page of a maps b's (and the guests' own zero pages)
    volatile0 = _ksm(host, "pages_volatile")
    unshared0 = _ksm(host, "pages_unshared")
    ta.access_range(addr, n * PAGE_SIZE, True)  # the workload updates every row page
    vm_a = host.vm("a")
    assert vm_a.cow_ksm == n
    assert _ksm(host, "pages_sharing") == sharing0 - n
    ksm.full_pass()  # first visit since the write: new checksum, volatile
    assert _ksm(host, "pages_volatile") == volatile0 + n
    assert _ksm(host, "pages_sharing") == sharing0 - n
    ksm.full_pass()  # unchanged over two visits: into the unstable tree, no twin
    assert _ksm(host, "pages_unshared") == unshared0 + n
    assert _ksm(host, "pages_volatile") == volatile0
    for _ in range(3):  # written again before every visit: volatile, never merged
        ta.access_range(addr, n * PAGE_SIZE, True)
        ksm.full_pass()
        assert _ksm(host, "pages_sharing") == sharing0 - n
    assert _ksm(host, "pages_volatile") >= volatile0 + n - _ksm(host, "pages_skipped")
    ksm.validate()
    host.validate()


def test_a_written_page_merges_again_when_its_content_equals_another_page():
    """stable_tree_search comes first in cmp_and_merge_page: a page whose new content
    equals a KSM page's merges at its next visit. (smart_scan off: no visit skipped.)"""
    n = 64
    host, (ta, tb), addr = _two_guests_with_the_same_profile_data(n, smart_scan=False)
    ksm = host.sharing
    ksm.full_pass()
    ksm.full_pass()
    sharing0 = _ksm(host, "pages_sharing")
    ta.access_range(addr, n * PAGE_SIZE, True)  # new data: sharing broken
    ksm.full_pass()
    ksm.full_pass()
    assert _ksm(host, "pages_sharing") == sharing0 - n
    # a's process writes back what b holds (explicit bytes): equal to the KSM pages again
    vm_b = host.vm("b")
    pages = [vm_b.load(tb.mm.pgtable.ptes[(addr >> 12) + i] >> 12) for i in range(n)]
    ta.access_range(addr, n * PAGE_SIZE, True, pages)
    ksm.full_pass()
    assert _ksm(host, "pages_sharing") == sharing0
    ksm.validate()


def test_an_unstable_tree_page_written_after_its_insertion_matches_only_its_new_bytes():
    """unstable_tree_search_insert compares the tree pages' bytes as they are now
    (memcmp): a tree page the guest wrote after its insertion no longer matches the
    content it was inserted with (and that is no hash collision)."""
    m, ksm, (a, b) = setup([[page(1)], [page(1)]], smart_scan=False)
    ksm.full_pass()  # both new: volatile
    ksm.scan(1)  # a unchanged over two visits: into the unstable tree
    assert ksm.pages_unshared == 1
    a.touch(0, True)  # a writes it: new bytes, still a node of this pass's tree
    ksm.scan(1)  # b, unchanged: finds a's node, whose page no longer holds page(1)
    assert ksm.pages_sharing == 0 and ksm.pages_shared == 0 and ksm.hash_collisions == 0
    assert ksm.pages_unshared == 2
    ksm.validate()
    ksm.full_pass()  # (ends the pass both were visited in)
    ksm.full_pass()  # a's new checksum: volatile; b alone in the tree
    assert ksm.pages_sharing == 0 and ksm.pages_unshared == 1 and ksm.pages_volatile == 1
    ksm.validate()


@given(st.lists(st.integers(0, 3), max_size=40))
def test_bulk_checksums_are_the_scanner_checksum_of_each_page(kinds):
    """checksums (the first-visit bulk window's hashing) gives page_checksum, XXH3-64 of
    the page's bytes truncated to 32 bits, for each page in order, whether the pages are
    bytes or recipes (a LazyPage anywhere: it and the pages after it hashed on their
    bytes)."""
    from array import array

    import xxhash

    from guestkernel.physmem import WrittenPage
    from hypervisor.sharing import checksums

    datas = [ZERO_PAGE if k == 0 else page(i) if k == 1 else WrittenPage(page(i), i) if k == 2
             else WrittenPage(ZERO_PAGE, i * 7 + 1) for i, k in enumerate(kinds)]
    want = [xxhash.xxh3_64_intdigest(bytes(d)) & 0xFFFFFFFF for d in datas]
    got = checksums(datas)
    assert got.typecode == "q" and got == array("q", want)
    assert list(got) == [page_checksum(bytes(d)) for d in datas]
