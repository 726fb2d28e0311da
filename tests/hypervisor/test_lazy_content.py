"""Page contents held as LazyPages (their recipe, not their bytes) behave exactly as the
bytes they stand for: the scanner hashes and compares the real bytes, compression
compresses them, host swap gives them back, the guest reads bytes; the simulator keeps
the small recipe wherever nothing needed the bytes."""

from __future__ import annotations

import xxhash
import zstandard

from guestkernel.physmem import LazyPage, page_bytes
from hypervisor.compression import CompressionCache
from hypervisor.machine import MachineMemory
from hypervisor.p2m import P2M_COMPRESSED, P2M_PRIVATE, P2M_SHARED, P2M_SWAPPED
from hypervisor.sharing import PageSharing
from hypervisor.swap import HostSwap
from hypervisor.vm import VM

from .helpers import half_compressible_page, page, random_page


class Recipe(LazyPage):
    """A test LazyPage: one of the helpers' pages, made on demand (and counted)."""

    __slots__ = ("kind", "i")
    made = 0

    def __init__(self, kind: str, i: int) -> None:
        self.kind = kind
        self.i = i

    def materialize(self) -> bytes:
        Recipe.made += 1
        if self.kind == "half":
            return half_compressible_page(self.i)
        if self.kind == "random":
            return random_page(self.i, "lazy")
        return page(self.i)


def test_page_bytes_and_equality_use_the_real_bytes():
    r = Recipe("page", 3)
    assert len(r) == 4096 and page_bytes(r) == page(3) and bytes(r) == page(3)
    assert r == page(3) and page(3) == r and r == Recipe("page", 3) and r != page(4)
    assert r != None and r != 3  # noqa: E711 - not a page: unequal, no error
    assert page_bytes(page(5)) is page(5) or page_bytes(page(5)) == page(5)


def test_lazy_pages_merge_with_equal_bytes_and_the_ksm_frame_holds_bytes():
    m = MachineMemory(16)
    ksm = PageSharing(m, smart_scan=False)
    a, b = VM(m, "a", 3, vmid=0), VM(m, "b", 3, vmid=1)
    for pfn in range(3):
        a.store(pfn, Recipe("page", pfn))  # lazily held
    b.store(0, page(0))  # the same bytes, held as bytes
    b.store(1, Recipe("page", 1))  # another recipe object for the same contents
    b.store(2, Recipe("page", 9))  # different contents
    for vm in (a, b):
        ksm.add_vm(vm)
    assert isinstance(m.content[a.p2m.mpn[0]], Recipe)  # stored as it came
    ksm.full_pass()
    ksm.full_pass()
    # pfn 0 and 1 merged across the VMs, pfn 2 differs: checksums of the real bytes
    assert (ksm.pages_shared, ksm.pages_sharing, ksm.pages_unshared) == (2, 2, 2)
    for pfn in (0, 1):
        assert a.p2m.state[pfn] == b.p2m.state[pfn] == P2M_SHARED
        held = m.content[a.p2m.mpn[pfn]]
        assert type(held) is bytes and held == page(pfn)
    assert m.csum[a.p2m.mpn[2]] == xxhash.xxh3_64_intdigest(page(2)) & 0xFFFFFFFF
    # the guest reads bytes
    assert type(a.load(2)) is bytes and a.load(2) == page(2) and b.load(2) == page(9)
    ksm.validate()
    m.validate()


def test_compression_and_host_swap_take_lazy_pages_and_give_the_bytes_back():
    m = MachineMemory(16)
    vm = VM(m, "vm", 4)
    vm.zcache = CompressionCache(m, max_frames=2)
    vm.swap = HostSwap(8)
    vm.store(0, Recipe("half", 1))
    vm.store(1, Recipe("random", 2))
    vm.store(2, Recipe("half", 3))
    # batch eviction and single eviction both compress the real bytes
    vm.evict_many([0, 1])
    vm.evict(2)
    assert vm.p2m.state[0] == vm.p2m.state[2] == P2M_COMPRESSED
    assert vm.p2m.state[1] == P2M_SWAPPED  # incompressible: over the 2048-byte threshold
    sizes = [len(zstandard.ZstdCompressor(level=vm.zcache.level).compress(half_compressible_page(i)))
             for i in (1, 3)]
    assert vm.zcache.stored_bytes == sum(sizes)
    # reads while evicted, then faults back in: the same bytes
    assert vm.load(0) == half_compressible_page(1) and vm.load(1) == random_page(2, "lazy")
    for pfn in range(3):
        vm.touch(pfn, False)
        assert vm.p2m.state[pfn] == P2M_PRIVATE
    assert [vm.load(p) for p in range(3)] == [half_compressible_page(1), random_page(2, "lazy"),
                                              half_compressible_page(3)]
    m.validate()


def test_a_lazily_held_page_costs_its_recipe_until_something_reads_it():
    m = MachineMemory(8)
    vm = VM(m, "vm", 4)
    Recipe.made = 0
    for pfn in range(4):
        vm.store(pfn, Recipe("page", pfn))
        vm.touch(pfn, True)
    assert Recipe.made == 0  # stores and touches never need the bytes
    vm.load(1)
    assert Recipe.made == 1
