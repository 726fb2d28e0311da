"""The VMA set, split and merge rules (pure: a stand-in mm without a kernel), and a
property test of mmap/munmap/mprotect against a page-by-page model."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.vma import (
    VM_ACCOUNT,
    VM_IO,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_READ,
    VM_WRITE,
    AnonVMA,
    MMInvariantError,
    VMASet,
    split_vma,
    validate_mm,
    vm_area_alloc,
    vma_account,
    vma_link,
    vma_merge_new_range,
    vma_modify,
)

P = 4096
RWF = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_ACCOUNT
RF = VM_READ | VM_MAYREAD | VM_MAYWRITE


class FakeMM:
    """Just what vma.py needs of an mm_struct."""

    def __init__(self):
        self.mm_mt = VMASet()
        self.task_size = 1 << 47
        self.total_vm = self.locked_vm = self.data_vm = self.exec_vm = self.stack_vm = 0

    def max_map_count(self):
        return 8


def add(mm, first, last, flags=RWF):
    """A new anonymous mapping of pages [first, last) with merging, as mmap_region does."""
    v = vma_merge_new_range(mm, first * P, last * P, flags, None, first)
    if v is None:
        v = vm_area_alloc(mm, first * P, last * P, flags, first)
        vma_link(mm, v)
    mm.total_vm += last - first
    if flags & VM_WRITE:
        mm.data_vm += last - first
    return v


def layout(mm):
    return [(v.vm_start // P, v.vm_end // P) for v in mm.mm_mt.vmas]


def test_vmaset_lookups():
    mm = FakeMM()
    add(mm, 2, 4)
    add(mm, 6, 9)
    mt = mm.mm_mt
    assert mt.find_vma(0).vm_start == 2 * P
    assert mt.find_vma(4 * P).vm_start == 6 * P  # in a gap: the next VMA
    assert mt.find_vma(9 * P) is None
    assert mt.lookup(5 * P) is None and mt.lookup(8 * P + 5).vm_start == 6 * P
    assert [v.vm_start // P for v in mt.intersecting(3 * P, 7 * P)] == [2, 6]
    assert mt.prev_of_addr(6 * P).vm_start == 2 * P


def test_merge_new_range_cases():
    mm = FakeMM()
    # ..aa..bb    then [4,6): prev and next and the new range merge: ..aaaaaa
    add(mm, 2, 4)
    add(mm, 6, 8)
    add(mm, 4, 6)
    assert layout(mm) == [(2, 8)]
    # next only: [0,2) merges into the VMA starting at 2
    add(mm, 0, 2)
    assert layout(mm) == [(0, 8)]
    # different flags: no merge
    add(mm, 8, 9, RF)
    assert layout(mm) == [(0, 8), (8, 9)]
    # VM_SPECIAL never merges
    add(mm, 9, 10, RF | VM_IO)
    add(mm, 10, 11, RF | VM_IO)
    assert layout(mm) == [(0, 8), (8, 9), (9, 10), (10, 11)]
    validate_mm(mm)


def test_pgoff_discontinuity_prevents_merge():
    mm = FakeMM()
    v = vm_area_alloc(mm, 0, 2 * P, RWF, 100)  # as after an mremap move: pgoff kept
    vma_link(mm, v)
    mm.total_vm += 2
    mm.data_vm += 2
    add(mm, 2, 4)  # pgoff 2 != 100 + 2
    assert layout(mm) == [(0, 2), (2, 4)]


def test_anon_vma_rules():
    mm = FakeMM()
    a = add(mm, 0, 2)
    b = add(mm, 3, 5)
    a.anon_vma = AnonVMA()
    a.anon_vma_chain = [a.anon_vma]
    a.anon_vma.vmas[a] = None
    b.anon_vma = AnonVMA()
    b.anon_vma_chain = [b.anon_vma]
    b.anon_vma.vmas[b] = None
    # [2,3) touches both; each side could take it alone, but a's and b's anon_vmas differ
    add(mm, 2, 3)
    assert layout(mm) == [(0, 3), (3, 5)]
    validate_mm(mm)


def test_modify_split_and_merge():
    mm = FakeMM()
    v = add(mm, 0, 6)
    # aaaaaa -> aa bb aa : the middle changes
    mid = vma_modify(mm, v, 2 * P, 4 * P, RF)
    assert layout(mm) == [(0, 2), (2, 4), (4, 6)] and mid.vm_flags == RF
    assert [x.vm_pgoff for x in mm.mm_mt.vmas] == [0, 2, 4]
    # back: one VMA again (merge with prev and next)
    whole = vma_modify(mm, mid, 2 * P, 4 * P, RWF)
    assert layout(mm) == [(0, 6)] and whole.vm_pgoff == 0


def test_split_respects_max_map_count():
    mm = FakeMM()
    v = add(mm, 0, 100)
    for i in range(1, 8):
        split_vma(mm, mm.mm_mt.lookup((i - 1) * P), i * P, False)
    assert len(mm.mm_mt) == 8
    with pytest.raises(OSError) as e:
        split_vma(mm, mm.mm_mt.lookup(50 * P), 50 * P, False)
    assert e.value.errno == U.ENOMEM
    del v


def test_validate_mm_catches_bad_counts():
    mm = FakeMM()
    add(mm, 0, 2)
    mm.total_vm += 1
    with pytest.raises(MMInvariantError):
        validate_mm(mm)
    mm.total_vm -= 1
    v = vm_area_alloc(mm, P, 3 * P, RWF, 1)
    mm.mm_mt.vmas.append(v)
    mm.mm_mt.starts.append(v.vm_start)
    vma_account(mm, v, 1)
    with pytest.raises(MMInvariantError):
        validate_mm(mm)  # overlap


# --- property test: the VMA layout equals a page-by-page model ------------------------------
BASE = 0x10000000
NPAGES = 24

ops = st.lists(
    st.tuples(st.sampled_from(["mmap_rw", "mmap_r", "munmap", "prot_r", "prot_rw", "touch"]),
              st.integers(0, NPAGES - 1), st.integers(1, 6)),
    min_size=1, max_size=25)


@pytest.fixture(scope="module")
def kernel():
    k = Kernel(KernelConfig(memory="64MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    return k


@settings(max_examples=40, deadline=None)
@given(ops)
def test_random_ops_match_model(kernel, seq):
    t = kernel.spawn("h")
    model = [None] * NPAGES  # per page: None, "r" or "rw"
    try:
        for op, first, n in seq:
            n = min(n, NPAGES - first)
            addr, length = BASE + first * P, n * P
            if op in ("mmap_rw", "mmap_r"):
                prot = U.PROT_READ | (U.PROT_WRITE if op == "mmap_rw" else 0)
                t.mmap(addr, length, prot, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
                model[first:first + n] = ["rw" if op == "mmap_rw" else "r"] * n
            elif op == "munmap":
                t.munmap(addr, length)
                model[first:first + n] = [None] * n
            elif op == "touch":
                for i in range(first, first + n):
                    if model[i] == "rw":
                        t.access(BASE + i * P, True)
                    elif model[i] == "r":
                        t.access(BASE + i * P, False)
            else:
                want = "r" if op == "prot_r" else "rw"
                prot = U.PROT_READ | (U.PROT_WRITE if want == "rw" else 0)
                try:
                    t.mprotect(addr, length, prot)
                    assert all(model[i] is not None for i in range(first, first + n))
                except OSError as e:
                    assert e.errno == U.ENOMEM
                # pages up to the first hole are changed
                for i in range(first, first + n):
                    if model[i] is None:
                        break
                    model[i] = want
            validate_mm(t.mm)
            got = [None] * NPAGES
            for v in t.mm.mm_mt.intersecting(BASE, BASE + NPAGES * P):
                for i in range((v.vm_start - BASE) // P, (v.vm_end - BASE) // P):
                    got[i] = "rw" if v.vm_flags & VM_WRITE else "r"
            assert got == model
            assert t.state == "running"
    finally:
        t.exit(0)
