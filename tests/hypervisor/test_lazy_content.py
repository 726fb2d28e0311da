"""Page contents held as LazyPages (their recipe, not their bytes) behave exactly as the
bytes they stand for: the scanner hashes and compares the real bytes, compression
compresses them, host swap gives them back, the guest reads bytes; the simulator keeps
the small recipe wherever nothing needed the bytes."""

from __future__ import annotations

import xxhash
import zstandard

from guestkernel.physmem import LazyPage, WrittenPage, page_bytes
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


# -- writes of unknown data (issue 12, section 1) ------------------------------------------


def _diff(a: bytes, b: bytes) -> list[int]:
    return [i for i in range(len(a)) if a[i] != b[i]]


def test_a_write_gives_the_frame_new_content_made_only_when_read():
    """touch(pfn, True) with no store marks the frame WRITTEN: nothing is made then; the
    next read folds the write into a new recipe (guestkernel.physmem.written), the same
    for the same seed, frame and generation, different for another seed."""
    from hypervisor.machine import WRITTEN

    def run(seed: int):
        m = MachineMemory(8)
        m.write_seed = seed
        vm = VM(m, "vm", 4)
        vm.store(0, Recipe("plain", 3))
        Recipe.made = 0
        for _ in range(5):
            assert vm.touch(0, True) == 0.0
        vm.touch_many([0], True)
        mpn = vm.p2m.mpn[0]
        assert m.csum[mpn] == WRITTEN and Recipe.made == 0  # marked, nothing made
        assert isinstance(m.content[mpn], Recipe)
        data = vm.load(0)  # the guest reads it: the writes are folded once
        assert m.write_folds == 1 and m.csum[mpn] == -1
        assert vm.load(0) == data and m.write_folds == 1  # no write since: same bytes
        return data

    old = page(3)
    a = run(1)
    diff = _diff(a, old)
    # bytes with no profile: one 16-byte aligned value changed, the rest kept
    assert len(diff) > 0 and diff[0] // 16 == diff[-1] // 16
    assert run(1) == a  # deterministic from the seed
    assert run(2) != a


def test_a_store_after_the_write_replaces_it_and_each_read_after_a_write_is_new():
    m = MachineMemory(8)
    vm = VM(m, "vm", 4)
    vm.store(0, page(1))
    vm.touch(0, True)
    vm.store(0, page(2))  # a whole-page store: its bytes, the write's mark dropped
    assert vm.load(0) == page(2) and m.write_folds == 0
    seen = {vm.load(0)}
    for _ in range(20):  # every generation is new content
        vm.touch(0, True)
        seen.add(vm.load(0))
    assert len(seen) == 21 and m.write_folds == 20
    # a flat recipe however often it was written: one WrittenPage over the stored bytes
    from guestkernel.physmem import WrittenPage

    data = m.content[vm.p2m.mpn[0]]
    assert type(data) is WrittenPage and data.base == page(2)


def test_writes_to_unbacked_shared_compressed_and_swapped_frames_change_the_bytes():
    """Whatever backs the frame, a write's copy or swap-in holds the old bytes and then
    takes the write: a new content for the frame, the other mappings untouched."""
    m = MachineMemory(16)
    ksm = PageSharing(m, smart_scan=False)
    vm = VM(m, "vm", 6)
    vm.zcache = CompressionCache(m, max_frames=4)
    vm.swap = HostSwap(64)
    for pfn in range(5):
        vm.store(pfn, page(7) if pfn < 2 else half_compressible_page(pfn))
    ksm.add_vm(vm)
    ksm.full_pass()
    ksm.full_pass()
    assert vm.p2m.state[0] == vm.p2m.state[1] == P2M_SHARED
    vm.evict(2)
    vm.evict(3, compress=False)
    assert vm.p2m.state[2] == P2M_COMPRESSED and vm.p2m.state[3] == P2M_SWAPPED
    for pfn in (0, 2, 3, 5):
        vm.touch(pfn, True)
        assert vm.p2m.state[pfn] == P2M_PRIVATE
    assert vm.load(1) == page(7)  # the KSM frame keeps its bytes
    assert vm.load(0) != page(7)
    assert vm.load(2) != half_compressible_page(2) and vm.load(3) != half_compressible_page(3)
    assert vm.load(5) != bytes(4096)  # a fresh page written: no longer all zeros
    assert vm.load(4) == half_compressible_page(4)  # not written: unchanged
    m.validate()
    ksm.validate()


def test_an_evicted_written_frame_is_compressed_and_swapped_with_its_new_bytes():
    m = MachineMemory(16)
    vm = VM(m, "vm", 4)
    vm.zcache = CompressionCache(m, max_frames=4)
    vm.swap = HostSwap(16)
    for pfn in range(4):
        vm.store(pfn, half_compressible_page(pfn))
        vm.touch(pfn, True)
    expect = []
    for pfn in range(4):  # what the frames hold now, read on a twin memory
        m2 = MachineMemory(16)
        twin = VM(m2, "vm", 4)
        for p in range(4):
            twin.store(p, half_compressible_page(p))
            twin.touch(p, True)
        for p in range(pfn):
            twin.load(p)  # the same fold order: the same generations
        expect.append(twin.load(pfn))
    assert vm.evict_many([0, 1])[0] == 2  # folded before the cache compresses them
    vm.evict(2)
    vm.evict(3, compress=False)
    assert [vm.load(p) for p in range(4)] == expect


def test_bare_metal_writes_change_the_bytes_as_the_hypervisor_does():
    """BareMetal (a guest without a hypervisor) folds a write into new content the same
    way: new bytes at the next read, none after a store, deterministic per seed."""
    from guestkernel.physmem import ZERO_PAGE, BareMetal

    def run(seed):
        bm = BareMetal(4, write_seed=seed)
        bm.store(1, page(1))
        bm.touch(1, True)
        bm.touch_many([2], True)  # a fresh frame written: no longer zeros
        bm.touch(3, False)
        return bm, [bm.load(p) for p in range(4)]

    bm, got = run(5)
    assert got[0] is ZERO_PAGE and got[3] is ZERO_PAGE
    assert got[1] != page(1) and len(_diff(got[1], page(1))) <= 16
    assert got[2] != ZERO_PAGE and got[2].count(0) >= 4096 - 16
    assert run(5)[1] == got and run(6)[1] != got
    bm.touch(1, True)
    bm.store(1, page(9))
    assert bm.load(1) == page(9) and bm.write_generation == 2


def test_a_guest_copy_passes_the_recipe_on_without_making_the_bytes():
    """copy(dst, src) (the guest's copy_user_highpage on a CoW break) stores src's
    content as held: a recipe is not made into bytes, and a written frame's new content
    is copied, equal in both frames."""
    from guestkernel.physmem import BareMetal

    m = MachineMemory(8)
    vm = VM(m, "vm", 4)
    vm.store(0, Recipe("plain", 4))
    Recipe.made = 0
    vm.copy(1, 0)
    assert Recipe.made == 0 and m.content[vm.p2m.mpn[1]] is m.content[vm.p2m.mpn[0]]
    vm.touch(0, True)
    vm.copy(2, 0)
    assert vm.load(2) == vm.load(0) != page(4) and vm.load(1) == page(4)
    bm = BareMetal(4)
    bm.store(0, Recipe("plain", 5))
    bm.touch(0, True)
    bm.copy(1, 0)
    assert bm.frames[1] is bm.frames[0] and bm.load(1) == bm.load(0) != page(5)


def test_a_lazy_pages_hash_is_its_bytes_xxh3_whatever_the_python_hash_seed():
    # House rule (DESIGN.md "Time, cost and randomness"): nothing may depend on Python's
    # salted hash(). A LazyPage hashes as XXH3-64 of its bytes: equal contents, equal
    # hashes, the same under every PYTHONHASHSEED.
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from guestkernel.physmem import WrittenPage, ZERO_PAGE;"
        "from experiments.content import ContentSource, AppPage;"
        "import sys;"
        "p=ContentSource(5,'vm').app_page('webserver','k',1);"
        "print(hash(WrittenPage(ZERO_PAGE,12345)), hash(WrittenPage(p,7,64,128)))"
    )
    root = Path(__file__).resolve().parents[2]
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root,
                       env={"PYTHONHASHSEED": seed, "PATH": ""}, check=True).stdout
        for seed in ("1", "2")
    }
    assert len(outs) == 1
    w = WrittenPage(page(3), 12345)
    assert hash(w) == hash(xxhash.xxh3_64_intdigest(w.materialize()))
    assert hash(w) == hash(WrittenPage(page(3), 12345)) and w == WrittenPage(page(3), 12345)
