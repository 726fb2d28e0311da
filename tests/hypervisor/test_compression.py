import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE
from hypervisor.compression import CompressionCache, compressed_size
from hypervisor.machine import OWNER_ZIP, MachineMemory
from hypervisor.p2m import P2M_COMPRESSED, P2M_PRIVATE, P2M_SWAPPED
from hypervisor.swap import HostSwap
from hypervisor.vm import VM

from .helpers import half_compressible_page, page, random_page


@pytest.mark.parametrize("keep", [False, True])
def test_small_results_take_quarter_slots_medium_half_slots_large_are_refused(keep):
    m = MachineMemory(8)
    z = CompressionCache(m, max_frames=4, keep_compressed=keep)
    small = page(1)  # a repeated 8-byte pattern: tens of bytes
    medium = half_compressible_page(1)
    assert compressed_size(small) <= 1024 < compressed_size(medium) <= 2048
    s1 = z.store(small)
    assert s1 >= 0 and z.compress_time == z.compress_cost
    s2 = z.store(small)
    assert s1 >> 2 == s2 >> 2  # four quarter slots per frame
    s3 = z.store(medium)
    assert s3 >> 2 != s1 >> 2 and s3 & 3 in (0, 2)  # half slots live in their own frames
    assert z.store(random_page(1, "x")) == -1 and z.rejected == 1
    assert z.nr_frames == 2 and m.owner[z.frame_of(s1)] == OWNER_ZIP
    assert z.nr_stored == 3 and z.reclaimed == 1
    assert z.take(s1) == small and z.zswpin == 1 and z.nr_stored == 2
    assert z.peek(s3) == medium
    assert z.stored_bytes == compressed_size(small) + compressed_size(medium)
    if keep:  # the real zstd frame is held
        assert len(z._data[s3]) == compressed_size(medium)


def test_cache_is_bounded_by_max_frames_and_empty_frames_are_returned():
    m = MachineMemory(8)
    z = CompressionCache(m, max_frames=1)
    slots = [z.store(page(i)) for i in range(4)]
    assert all(s >= 0 for s in slots)
    assert z.store(page(9)) == -1 and z.full == 1
    assert z.compress_time == 5 * z.compress_cost
    for s in slots:
        z.free(s)
    assert z.nr_frames == 0 and m.nr_free == 8 and z.stored_bytes == 0
    m.validate()
    # the cache's frame number is reused, on whatever machine frame comes next
    again = z.store(page(3))
    assert again >> 2 == slots[0] >> 2 and z.nr_frames == 1 and z.peek(again) == page(3)
    with pytest.raises(ValueError, match="freed twice"):
        z.free(slots[1])


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="level"):
        CompressionCache(MachineMemory(1), 1, level=0)
    with pytest.raises(ValueError, match="thresholds"):
        CompressionCache(MachineMemory(1), 1, threshold=3000)


def test_compressible_page_is_stored_compressed_incompressible_goes_to_swap():
    m = MachineMemory(16)
    vm = VM(m, "vm", 4)
    vm.zcache = CompressionCache(m, max_frames=2)
    vm.swap = HostSwap(8, latency=100e-6, bandwidth=400 << 20)
    vm.store(0, half_compressible_page(3))
    vm.store(1, random_page(3, "data"))
    assert vm.evict(0) == vm.zcache.compress_cost
    assert vm.p2m.state[0] == P2M_COMPRESSED and vm.zswpout == 1
    cost = vm.evict(1)
    assert cost == vm.zcache.compress_cost + vm.swap.page_io_time
    assert vm.p2m.state[1] == P2M_SWAPPED and vm.pswpout == 1
    # access decompresses: counted and timed
    assert vm.touch(0, False) == vm.decompress_cost + 0.0
    assert vm.p2m.state[0] == P2M_PRIVATE and vm.load(0) == half_compressible_page(3)
    assert vm.zswpin == 1 and vm.zcache.nr_stored == 0 and vm.zcache.nr_frames == 0
    m.validate()


def test_whole_page_write_to_a_compressed_page_drops_it_without_decompressing():
    m = MachineMemory(16)
    vm = VM(m, "vm", 2)
    vm.zcache = CompressionCache(m, max_frames=2)
    vm.store(0, ZERO_PAGE)
    vm.evict(0)
    assert vm.store(0, page(1)) == vm.fault_cost
    assert vm.zswpin == 0 and vm.load(0) == page(1) and vm.zcache.nr_stored == 0


def test_evict_many_compresses_swaps_the_rest_and_keeps_what_can_go_nowhere():
    m = MachineMemory(16)
    vm = VM(m, "vm", 8)
    vm.zcache = CompressionCache(m, max_frames=1)  # two half-page slots
    vm.swap = HostSwap(2)
    data = [half_compressible_page(i) for i in range(3)] + [random_page(i, "v") for i in range(3)]
    for pfn, d in enumerate(data):
        vm.store(pfn, d)
    #  pfn:   0  1  2  3  4  5
    #  page:  h  h  h  r  r  r     h: ~1.5 KiB after zstd, r: incompressible
    #  goes:  S  Z  Z  S  -  -     Z cache (full after two: pfn 2 makes room by sending the
    #                              oldest, pfn 0, to swap: ESX's age-based replacement),
    #                              S swap (full after two)
    done, cost = vm.evict_many(range(6))
    assert done == 4
    assert [vm.p2m.state[p] for p in range(6)] == [
        P2M_SWAPPED, P2M_COMPRESSED, P2M_COMPRESSED, P2M_SWAPPED, P2M_PRIVATE, P2M_PRIVATE,
    ]
    # compressing all six, decompressing pfn 0 to move it, writing pfn 3 (pfn 0's write
    # is made from the decompressed copy: no guest frame waits for it)
    assert cost == pytest.approx(6 * vm.zcache.compress_cost + vm.decompress_cost + vm.swap.page_io_time)
    assert vm.zcache.full == 1 and vm.zcache.rejected == 3 and vm.zswpout == 3
    assert vm.zip_replaced == 1 and vm.pswpout == 2
    assert [vm.load(p) for p in range(6)] == data
    vm.p2m.validate()
    m.validate()


# -- store_frames is `store` page by page, frame for frame -------------------------------------

_KINDS = {"q": lambda i: page(i), "h": half_compressible_page, "r": lambda i: random_page(i, "r")}


def _world(spec):
    """A machine and cache in the state `spec` builds: pages stored one by one, some slots
    freed again (partly used and returned frames), then a batch of private frames."""
    nr_machine, max_frames, before, freed, batch, _ = spec
    m = MachineMemory(nr_machine)
    z = CompressionCache(m, max_frames=max_frames)
    slots = [z.store(_KINDS[k](100 + i)) for i, k in enumerate(before)]
    for i in freed:
        if i < len(slots) and slots[i] >= 0:
            z.free(slots[i])
            slots[i] = -1
    mpns = []
    for i, k in enumerate(batch):
        mpn = m.alloc(0, _KINDS[k](i))
        if mpn < 0:
            break
        mpns.append(mpn)
    return m, z, mpns


def _state(m, z):
    used = [i for i in range(len(m.content)) if m.owner[i] != -1]
    return (
        m.content, m.refcount, m.owner, [m.csum[i] for i in used], m._free, m.nr_free,
        m.min_free, m.frames_allocated, m.frames_freed,
        z._data, list(z._size), z.frame_mpn, bytes(z._quarter), z._spare, z._free_q, z._free_h,
        z.nr_frames, z.nr_stored, z.stored_bytes, z.zswpout, z.rejected, z.full,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.tuples(
        st.integers(4, 40),
        st.integers(0, 8),
        st.lists(st.sampled_from("qhr"), max_size=10),
        st.lists(st.integers(0, 9), max_size=6),
        st.lists(st.sampled_from("qqhhr"), min_size=0, max_size=30),
        st.lists(st.booleans(), min_size=30, max_size=30),
    )
)
@example((40, 8, [], [], list("qqqqq"), [True] * 30))  # one kind: a frame left part used
@example((40, 8, [], [], list("hhh"), [True] * 30))
@example((40, 8, list("qh"), [], list("qqqqqqhhh"), [True] * 30))  # reused slots first
@example((40, 8, list("qqhh"), [0, 2], list("qqqqhhhhq"), [True] * 30))
@example((12, 2, list("qqqqq"), [], list("hhhhh"), [False] * 30))  # the cache fills
def test_store_frames_is_store_page_by_page(spec):
    swappable = spec[5]  # whether the host could swap the i-th refused page (frees its frame)

    def run(batched):
        m, z, mpns = _world(spec)
        calls = []

        def refused(i):
            calls.append(i)
            if swappable[i]:
                m.free(mpns[i])

        if batched:
            out = z.store_frames(mpns, refused)
        else:
            out = []
            for i, mpn in enumerate(mpns):
                slot = z.store(m.content[mpn])
                out.append(slot)
                if slot >= 0:
                    m.free(mpn)
                else:
                    refused(i)
        m.validate()
        return out, calls, _state(m, z)

    assert run(True) == run(False)


def _full_cache_vm():
    m = MachineMemory(16)
    vm = VM(m, "vm", 6)
    vm.zcache = CompressionCache(m, max_frames=1)  # one frame: two half-page slots
    vm.swap = HostSwap(8)
    for pfn in range(4):
        vm.store(pfn, half_compressible_page(pfn + 10))
    assert compressed_size(half_compressible_page(10)) > vm.zcache.quarter
    return m, vm


@pytest.mark.parametrize("bulk", [False, True])
def test_a_full_cache_replaces_its_oldest_page_to_swap(bulk):
    # ESX: when the compression cache is full, the oldest compressed page is
    # decompressed and written to swap to make room for the new one (age-based
    # replacement), instead of refusing new pages
    m, vm = _full_cache_vm()
    vm.evict(1)
    vm.evict(0)  # the cache's frame is full: pfn 1 is the oldest, then pfn 0
    assert vm.zcache.nr_stored == 2 and vm.zcache.nr_frames == 1
    if bulk:
        assert vm.evict_many([2, 3]) == (2, pytest.approx(2 * vm.zcache.compress_cost + 2 * vm.decompress_cost))
    else:
        assert vm.evict(2) == pytest.approx(vm.zcache.compress_cost + vm.decompress_cost)
        assert vm.evict(3) == pytest.approx(vm.zcache.compress_cost + vm.decompress_cost)
    state = vm.p2m.state
    assert [state[p] for p in range(4)] == [P2M_SWAPPED, P2M_SWAPPED, P2M_COMPRESSED, P2M_COMPRESSED]
    assert vm.zip_replaced == 2 and vm.zcache.replaced == 2 and vm.pswpout == 2
    assert vm.zcache.nr_frames == 1  # never above max_frames
    # the replaced pages' contents went to swap intact
    assert vm.load(1) == half_compressible_page(11) and vm.load(0) == half_compressible_page(10)
    assert vm.load(2) == half_compressible_page(12)
    m.validate()
    vm.p2m.validate()


def test_replacement_skips_pages_no_longer_compressed():
    m, vm = _full_cache_vm()
    vm.evict(1)
    vm.evict(0)
    vm.touch(1, False)  # decompressed on access: no longer the oldest compressed page
    vm.evict(1)  # compressed again into the freed slot: now the youngest
    vm.evict(2)  # full: pfn 0 is the oldest still compressed
    state = vm.p2m.state
    assert [state[p] for p in range(3)] == [P2M_SWAPPED, P2M_COMPRESSED, P2M_COMPRESSED]
    m.validate()
