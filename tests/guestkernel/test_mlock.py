"""mlock, mlock2, munlock, mlockall, munlockall: population, limits, VMA splits."""

import pytest

from guestkernel import uapi as U
from guestkernel.page import PG_mlocked
from guestkernel.vma import VM_LOCKED, VM_LOCKONFAULT, validate_mm

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
FIX = ANON | U.MAP_FIXED
B = 0x40000000


def locked_flags(t):
    return [(( v.vm_start - B) // P, (v.vm_end - B) // P, bool(v.vm_flags & VM_LOCKED))
            for v in t.mm.mm_mt.vmas if B <= v.vm_start < B + (1 << 30)]


def test_mlock_populates_with_real_pages_and_splits(k, t):
    # aaaaaaaa    mlock [2,5): a a L L L a a a  (three VMAs), pages 2..4 present
    t.mmap(B, 8 * P, RW, FIX)
    anon = t.mm.rss[1]
    t.mlock(B + 2 * P, 3 * P)
    assert locked_flags(t) == [(0, 2, False), (2, 5, True), (5, 8, False)]
    assert t.mm.locked_vm == 3 and t.mm.rss[1] == anon + 3
    for i in range(2, 5):
        pte = t.mm.pgtable.ptes[(B >> 12) + i]
        assert pte >> 12 != k.zero_pfn  # writable private: real pages, not the zero page
        assert k.mem_map[pte >> 12].flags & PG_mlocked
    assert k.vmstat["nr_mlock"] == 3
    validate_mm(t.mm)
    # munlock merges back and clears PG_mlocked
    t.munlock(B + 2 * P, 3 * P)
    assert locked_flags(t) == [(0, 8, False)]
    assert t.mm.locked_vm == 0 and k.vmstat["nr_mlock"] == 0
    validate_mm(t.mm)


def test_mlock_unaligned_start_rounds(k, t):
    t.mmap(B, 4 * P, RW, FIX)
    t.mlock(B + 100, P)  # covers pages 0 and 1
    assert locked_flags(t) == [(0, 2, True), (2, 4, False)]


def test_mlock_readonly_maps_zero_page(k, t):
    t.mmap(B, 2 * P, U.PROT_READ, FIX)
    rss = list(t.mm.rss)
    t.mlock(B, 2 * P)
    assert t.mm.rss == rss
    assert t.mm.pgtable.ptes[B >> 12] >> 12 == k.zero_pfn


def test_mlock_limits(k, t):
    t.mmap(B, 4096 * P, RW, FIX)  # 16 MiB
    with pytest.raises(OSError) as e:  # over RLIMIT_MEMLOCK (8 MiB)
        t.mlock(B, 2049 * P)
    assert e.value.errno == U.ENOMEM
    assert t.mm.locked_vm == 0
    t.mlock(B, 2048 * P)  # exactly the limit
    assert t.mm.locked_vm == 2048
    t.mlock(B, 2048 * P)  # already locked pages are not counted twice
    with pytest.raises(OSError) as e:
        t.mlock(B + 2048 * P, P)
    assert e.value.errno == U.ENOMEM
    t.caps.add(U.CAP_IPC_LOCK)
    t.mlock(B + 2048 * P, P)
    assert t.mm.locked_vm == 2049
    validate_mm(t.mm)


def test_mlock_eperm_without_rlimit(k, t):
    t.mmap(B, P, RW, FIX)
    t.setrlimit(U.RLIMIT_MEMLOCK, 0)
    with pytest.raises(OSError) as e:
        t.mlock(B, P)
    assert e.value.errno == U.EPERM
    with pytest.raises(OSError) as e:
        t.mlockall(U.MCL_CURRENT)
    assert e.value.errno == U.EPERM


def test_mlock_hole_leaves_earlier_locked(k, t):
    t.mmap(B, 2 * P, RW, FIX)
    t.mmap(B + 3 * P, 2 * P, RW, FIX)
    with pytest.raises(OSError) as e:
        t.mlock(B, 5 * P)
    assert e.value.errno == U.ENOMEM
    assert locked_flags(t) == [(0, 2, True), (3, 5, False)]
    with pytest.raises(OSError) as e:
        t.mlock(B + 2 * P, P)  # nothing at start
    assert e.value.errno == U.ENOMEM
    validate_mm(t.mm)


def test_mlock2_onfault_does_not_populate(k, t):
    t.mmap(B, 4 * P, RW, FIX)
    anon = t.mm.rss[1]
    t.mlock2(B, 4 * P, U.MLOCK_ONFAULT)
    v = t.mm.mm_mt.lookup(B)
    assert v.vm_flags & VM_LOCKED and v.vm_flags & VM_LOCKONFAULT
    assert t.mm.rss[1] == anon and t.mm.locked_vm == 4
    t.access(B, True)  # a fault in a locked VMA mlocks the new page
    page = k.mem_map[t.mm.pgtable.ptes[B >> 12] >> 12]
    assert page.flags & PG_mlocked
    with pytest.raises(OSError) as e:
        t.mlock2(B, P, 2)
    assert e.value.errno == U.EINVAL


def test_mlockall_current_and_future(k, t):
    with pytest.raises(OSError) as e:
        t.mlockall(U.MCL_ONFAULT)
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.mlockall(0)
    assert e.value.errno == U.EINVAL
    t.mmap(B, 4 * P, RW, FIX)
    t.mlockall(U.MCL_CURRENT | U.MCL_FUTURE)
    mm = t.mm
    # every VMA but the special mappings (VM_SPECIAL: mlock_fixup leaves them unlocked)
    special = {"[vvar]", "[vvar_vclock]", "[vdso]"}
    named = [(v, v.vm_ops.name(v) if v.vm_ops is not None else None) for v in mm.mm_mt.vmas]
    assert all(bool(v.vm_flags & VM_LOCKED) == (n not in special) for v, n in named)
    assert sorted(n for _, n in named if n in special) == sorted(special)
    assert mm.locked_vm == mm.total_vm - 8  # vvar 4 + vvar_vclock 2 + vdso 2 pages
    assert mm.def_flags & VM_LOCKED
    # future mappings are locked and populated
    anon = mm.rss[1]
    a = t.mmap(0, 2 * P, RW, ANON)
    assert mm.mm_mt.lookup(a).vm_flags & VM_LOCKED and mm.rss[1] == anon + 2
    start = t.brk(0)
    t.brk(start + 3 * P)
    assert mm.rss[1] == anon + 5
    validate_mm(mm)
    # over the limit: EAGAIN from mmap
    with pytest.raises(OSError) as e:
        t.mmap(0, 4096 * P, RW, ANON)
    assert e.value.errno == U.EAGAIN
    t.munlockall()
    assert mm.locked_vm == 0 and mm.def_flags == 0
    assert not any(v.vm_flags & VM_LOCKED for v in mm.mm_mt.vmas)
    validate_mm(mm)


def test_mlockall_current_over_limit(k, t):
    t.mmap(B, 4096 * P, U.PROT_READ, FIX)
    with pytest.raises(OSError) as e:
        t.mlockall(U.MCL_CURRENT)
    assert e.value.errno == U.ENOMEM


def test_madvise_dontneed_refused_on_locked(k, t):
    t.mmap(B, P, RW, FIX)
    t.mlock(B, P)
    with pytest.raises(OSError) as e:
        t.madvise(B, P, U.MADV_DONTNEED)
    assert e.value.errno == U.EINVAL


def test_munmap_of_locked_range_releases(k, t):
    t.mmap(B, 4 * P, RW, FIX)
    t.mlock(B, 4 * P)
    t.munmap(B + P, 2 * P)
    assert t.mm.locked_vm == 2 and k.vmstat["nr_mlock"] == 2
    validate_mm(t.mm)


def test_unmapping_the_locked_mapping_munlocks_pages_still_mapped_elsewhere(k, t):
    t.mmap(B, 2 * P, RW, FIX)
    t.access_range(B, 2 * P, False)  # zero page: nothing to lock yet
    t.mlock(B, 2 * P)
    child = k.tasks[t.fork()]  # shares the pages, VM_LOCKED dropped in the child
    page = k.mem_map[t.mm.pgtable.ptes[B >> 12] >> 12]
    assert page.flags & PG_mlocked and page.page_mapcount() == 2
    t.munmap(B, 2 * P)
    assert not page.flags & PG_mlocked and k.vmstat["nr_mlock"] == 0
    assert page.page_mapcount() == 1 and child.peek(B, 1) == b"\0"
