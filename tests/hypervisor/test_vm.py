import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE
from hypervisor.machine import MachineMemory
from hypervisor.p2m import (
    P2M_BALLOONED,
    P2M_NONE,
    P2M_PRIVATE,
)
from hypervisor.vm import FAULT_COST, NOMEM_STALL, VM, ImageError

from .helpers import page


def make(frames=8, pages=4):
    m = MachineMemory(frames)
    return m, VM(m, "vm0", pages, vmid=3)


def test_first_touch_backs_a_zeroed_frame_once():
    m, vm = make()
    assert vm.load(0) is ZERO_PAGE and m.nr_free == 8  # untouched: reads zeros, no frame
    assert vm.touch(0, False) == FAULT_COST
    assert vm.touch(0, True) == 0.0  # already private
    assert vm.p2m.state[0] == P2M_PRIVATE and m.owner[vm.p2m.mpn[0]] == 3
    assert vm.first_touch == 1 and m.nr_free == 7 and vm.p2m.accessed[0] == 1
    assert vm.stall_time == FAULT_COST


def test_store_then_load_roundtrips_and_store_backs_unbacked_frames():
    m, vm = make()
    assert vm.store(1, page(1)) == FAULT_COST
    assert vm.store(1, page(2)) == 0.0
    assert vm.load(1) == page(2) and vm.first_touch == 1
    with pytest.raises(ValueError, match="4096 bytes"):
        vm.store(2, b"short")


def test_release_frees_the_frame_and_a_later_touch_refaults():
    m, vm = make()
    vm.store(0, page(1))
    vm.release(0)
    assert vm.p2m.state[0] == P2M_BALLOONED and m.nr_free == 8 and vm.released == 1
    assert vm.load(0) is ZERO_PAGE
    vm.release(0)  # releasing again changes nothing
    assert vm.released == 1
    assert vm.touch(0, False) == FAULT_COST
    assert vm.balloon_refault == 1 and vm.first_touch == 1 and vm.load(0) is ZERO_PAGE
    vm.release(3)  # a never-touched frame can be released too
    assert vm.p2m.nr[P2M_NONE] == 2 and vm.p2m.nr[P2M_BALLOONED] == 1


def test_full_machine_calls_reclaim_then_stalls_and_overdraws():
    m, vm = make(frames=2, pages=4)
    calls = []

    def reclaim(v):
        calls.append(v.name)
        return 0.5  # seconds spent reclaiming, frees nothing here

    vm.reclaim_hook = reclaim
    vm.touch(0, True)
    vm.touch(1, True)
    cost = vm.touch(2, True)
    assert calls == ["vm0"]
    assert cost == FAULT_COST + 0.5 + NOMEM_STALL
    assert vm.nomem_stalls == 1 and m.overdraft_allocs == 1 and m.nr_free == -1


def test_reclaim_that_frees_a_frame_avoids_the_stall():
    m, vm = make(frames=1, pages=2)
    other = VM(m, "other", 1, vmid=4)
    other.touch(0, True)

    def reclaim(v):
        other.release(0)
        return 0.25

    vm.reclaim_hook = reclaim
    assert vm.touch(0, True) == FAULT_COST + 0.25
    assert vm.nomem_stalls == 0 and m.nr_free == 0


def test_low_state_penalty_is_charged_and_counted():
    m, vm = make()
    vm.alloc_penalty = 0.01
    assert vm.touch(0, True) == FAULT_COST + 0.01
    assert vm.low_state_stalls == 1


def test_image_vm_holds_the_file_pages_in_order_with_identical_pages_interned(tmp_path):
    img = tmp_path / "mem.raw"
    img.write_bytes(page(1) + ZERO_PAGE + page(1) + page(2))
    m = MachineMemory(16)
    intern = {}
    vm = VM.from_image(m, "img", img, vmid=1, intern=intern)
    assert vm.nr_pages == 4 and vm.p2m.nr[P2M_PRIVATE] == 4
    assert [vm.load(i) for i in range(4)] == [page(1), ZERO_PAGE, page(1), page(2)]
    assert vm.load(0) is vm.load(2) and vm.load(1) is ZERO_PAGE
    vm2 = VM.from_image(m, "img2", img, vmid=2, intern=intern)
    assert vm2.load(3) is vm.load(3)  # interned across images too


@pytest.mark.parametrize(
    "size,message",
    [(None, "no such image file"), (0, "image is empty"), (PAGE_SIZE + 1, "not a multiple")],
)
def test_bad_images_give_one_line_errors(tmp_path, size, message):
    img = tmp_path / "bad.raw"
    if size is not None:
        img.write_bytes(b"x" * size)
    with pytest.raises(ImageError, match=message) as e:
        VM.from_image(MachineMemory(4), "bad", img)
    assert "\n" not in str(e.value) and str(img) in str(e.value)


def test_releases_that_took_something_back_are_counted_until_refault():
    m, vm = make()
    vm.store(0, page(1))
    vm.release(0)  # backed: a frame goes back
    vm.release(1)  # never touched: nothing goes back
    assert vm.released == 2 and vm.nr_released_backed == 1
    assert list(vm.p2m.released_backed[:2]) == [1, 0]
    vm.touch(0, False)  # the guest uses it again
    assert vm.nr_released_backed == 0 and vm.p2m.released_backed[0] == 0
    vm.store(1, page(2))
    assert vm.nr_released_backed == 0 and vm.balloon_refault == 2


def test_touch_many_is_touch_frame_by_frame():
    from hypervisor.compression import CompressionCache

    def build():
        m = MachineMemory(16)
        vm = VM(m, "vm", 8, vmid=1)
        vm.zcache = CompressionCache(m, max_frames=2)
        for pfn in range(6):
            vm.store(pfn, ZERO_PAGE if pfn == 4 else page(pfn))
            vm.p2m.accessed[pfn] = 0
        vm.p2m.disk_clean[2] = 1
        return m, vm

    def state(m, vm):
        p = vm.p2m
        return (bytes(p.state), bytes(p.accessed), bytes(p.disk_clean), vm.first_touch, vm.zswpin,
                vm.stall_time, m.nr_free)

    # all private: only the accessed and disk-clean bits change, no cost
    m, vm = build()
    assert vm.touch_many([0, 2, 3], True) == 0.0
    assert vm.p2m.accessed[:4] == bytearray([1, 0, 1, 1]) and vm.p2m.disk_clean[2] == 0
    # a run with an unbacked frame and a compressed one: exactly the per-frame outcome
    for write in (False, True):
        m1, a = build()
        m2, b = build()
        a.evict(1)
        b.evict(1)
        run = [0, 1, 6, 2, 5]
        cost = a.touch_many(run, write)
        assert cost == sum(b.touch(pfn, write) for pfn in run) and cost > 0
        assert state(m1, a) == state(m2, b)
    # a dead VM's touches cost nothing and change nothing
    m, vm = build()
    vm.guest_panicked("test")
    assert vm.touch_many([0, 1], True) == 0.0 and vm.p2m.state[0] == P2M_NONE


# a frame's starting state in test_touch_many_mixed_states_is_touch_frame_by_frame
_KINDS = ("none", "private", "same", "zero", "compressed", "ballooned")


@settings(max_examples=60, deadline=None)
@given(kinds=st.lists(st.sampled_from(_KINDS), min_size=1, max_size=24),
       order=st.randoms(use_true_random=False), write=st.booleans(), spare=st.integers(0, 3))
def test_touch_many_mixed_states_is_touch_frame_by_frame(kinds, order, write, spare):
    """touch_many over frames in any mix of states (private, KSM-shared, zero-mapped,
    compressed, unbacked, ballooned), in any order, on a host short of frames whose reclaim
    hook evicts a private frame (possibly one still to be touched), leaves exactly what
    touch() frame by frame leaves: states, bits, counters, costs and machine frames."""
    from hypervisor.compression import CompressionCache
    from hypervisor.sharing import PageSharing

    n = len(kinds)
    pfns = list(range(n))
    order.shuffle(pfns)

    def build():
        # frames: the VM's private and shared pages, plus `spare` free ones
        m = MachineMemory(2 * n + 2)
        ksm = PageSharing(m, use_zero_pages=True, smart_scan=False)
        vm = VM(m, "vm", n, vmid=1)
        vm.zcache = CompressionCache(m, max_frames=n)
        for pfn, kind in enumerate(kinds):
            if kind in ("private", "compressed", "ballooned"):
                vm.store(pfn, page(pfn))
            elif kind == "same":
                vm.store(pfn, page(1000))  # identical pages: KSM merges them
            elif kind == "zero":
                vm.store(pfn, ZERO_PAGE)
        ksm.add_vm(vm)
        ksm.full_pass()
        ksm.full_pass()
        for pfn, kind in enumerate(kinds):
            if kind == "compressed":
                vm.evict(pfn)
            elif kind == "ballooned":
                vm.release(pfn)
        vm.p2m.accessed[:] = bytes(n)
        # the host is full but for `spare` frames; its reclaim evicts the highest private pfn
        while m.nr_free > spare:
            m.alloc(9, page(2000))  # frames of another VM (owner 9)

        def reclaim(v):
            private = [p for p in range(n) if v.p2m.state[p] == P2M_PRIVATE]
            return v.evict(private[-1]) if private else 0.0

        vm.reclaim_hook = reclaim
        return m, vm

    def snapshot(m, vm):
        p = vm.p2m
        return (bytes(p.state), bytes(p.accessed), bytes(p.disk_clean), list(p.mpn), vm.first_touch,
                vm.cow_ksm, vm.cow_zero, vm.zswpin, vm.zswpout, vm.balloon_refault, vm.nomem_stalls,
                vm.stall_time, m.nr_free)

    m1, a = build()
    m2, b = build()
    assert snapshot(m1, a) == snapshot(m2, b)
    cost = a.touch_many(pfns, write)
    assert cost == sum(b.touch(pfn, write) for pfn in pfns)
    assert snapshot(m1, a) == snapshot(m2, b)
    # the same frames marked written, and the same bytes once the writes are folded in
    assert m1.csum == m2.csum
    assert [a.load(pfn) for pfn in range(n)] == [b.load(pfn) for pfn in range(n)]
    assert m1.write_folds == m2.write_folds and (m1.write_folds > 0) == write


def test_release_credits_the_holder_and_reuse_takes_the_credit_away():
    """Credit per page: the technique holding a released page now, if the release took
    something back. The balloon taking a reported page takes its credit over; the deflateq
    (reuse) ends the credit without backing the frame."""
    from guestkernel.physmem import RELEASE_BALLOON, RELEASE_REPORTED
    from hypervisor.p2m import P2M_BALLOONED

    m, vm = make()
    vm.store(0, page(1))
    vm.store(1, page(2))
    assert vm.release(0, RELEASE_REPORTED) == 1
    assert vm.release(2, RELEASE_BALLOON) == 0  # never backed: no credit
    assert (vm.nr_reported_backed, vm.nr_balloon_backed) == (1, 0)
    assert vm.release(0, RELEASE_BALLOON) == 0  # the balloon takes the reported page
    assert (vm.nr_reported_backed, vm.nr_balloon_backed) == (0, 1)
    assert vm.release(1, RELEASE_BALLOON) == 1
    assert vm.nr_balloon_backed == 2 and vm.nr_released_backed == 2
    vm.reuse(1)  # deflated: the guest holds it again, still unbacked
    assert vm.nr_balloon_backed == 1 and vm.p2m.state[1] == P2M_BALLOONED
    assert vm.release(1, RELEASE_BALLOON) == 0  # ballooned again untouched: nothing new
    assert vm.nr_balloon_backed == 1 and vm.nr_released_backed == 1
