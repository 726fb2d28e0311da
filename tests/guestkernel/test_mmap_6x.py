"""Linux 6.10-6.17 address-space interfaces: guard markers (MADV_GUARD_INSTALL/REMOVE,
mm/madvise.c), MAP_DROPPABLE (mm/mmap.c do_mmap, mm/rmap.c try_to_unmap_one),
MADV_POPULATE_* errors (mm/gup.c check_vma_flags), MADV_REMOVE (madvise_remove), memfd
seals (mm/memfd.c) and multi-VMA mremap moves (mm/mremap.c remap_move).

Expected results are those the real kernel (6.18) gave to tests/data/traces/new_mm.c,
recorded in new_mm.trace (line numbers cited); the layouts are those of new_mm.smaps.
"""


from guestkernel import uapi as U
from guestkernel.pgtable import PTE_GUARD, is_guard_pte
from guestkernel.vma import (
    VM_DONTDUMP,
    VM_DROPPABLE,
    VM_LOCKED,
    VM_MAYBE_GUARD,
    VM_MAYWRITE,
    VM_NORESERVE,
    VM_WIPEONFORK,
    validate_mm,
    vm_flag_names,
)

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def vmas(t, lo, hi):
    """[(first page, end page, VmFlags)] of the VMAs in [lo, hi), pages from lo."""
    return [((v.vm_start - lo) // P, (v.vm_end - lo) // P, vm_flag_names(v.vm_flags))
            for v in t.mm.mm_mt.vmas if v.vm_end > lo and v.vm_start < hi]


# --- guard markers ---------------------------------------------------------------------
def test_guard_install_zaps_and_marks_then_populate_is_efault(k, t):
    g = t.mmap(0, 8 * P, RW, ANON)
    rss0 = t.mm.rss[1]
    t.access_range(g, 8 * P, True)
    assert t.mm.rss[1] == rss0 + 8
    # trace line 31: madvise(g + 2, 2 pages, MADV_GUARD_INSTALL) = 0
    assert t.madvise(g + 2 * P, 2 * P, U.MADV_GUARD_INSTALL) == 0
    ptes = t.mm.pgtable.ptes
    assert [is_guard_pte(ptes.get((g >> 12) + i, 0)) for i in range(8)] == [
        False, False, True, True, False, False, False, False]
    assert t.mm.rss[1] == rss0 + 6  # the two pages were zapped; a marker is no page
    # 6.18: the whole VMA says it may hold markers ("gu"), without a split
    assert vmas(t, g, g + 8 * P) == [(0, 8, "rd wr mr mw me gu ac")]
    # line 32: MADV_POPULATE_READ over the range = -1 EFAULT (handle_pte_marker SIGSEGV)
    assert errno_of(t.madvise, g, 8 * P, U.MADV_POPULATE_READ) == U.EFAULT
    # line 33: populating the two pages before the guard succeeds
    assert t.madvise(g, 2 * P, U.MADV_POPULATE_WRITE) == 0
    # line 34-35: MADV_DONTNEED keeps the markers
    assert t.madvise(g, 8 * P, U.MADV_DONTNEED) == 0
    assert ptes[(g >> 12) + 3] == PTE_GUARD
    assert errno_of(t.madvise, g + 3 * P, P, U.MADV_POPULATE_WRITE) == U.EFAULT
    validate_mm(t.mm)


def test_guard_page_touch_is_sigsegv_maperr_and_kernel_access_efault(k, t):
    g = t.mmap(0, 4 * P, RW, ANON)
    t.madvise(g + P, P, U.MADV_GUARD_INSTALL)
    # a read from the kernel (copy_to_user target, e.g. read(2)) is EFAULT, not a signal
    from guestkernel.fault import copy_to_user

    assert copy_to_user(t, g + P, b"x") == 0
    assert t.state == "running"
    # trace lines 57-61: the child's store to the guard page: SIGSEGV, si_code SEGV_MAPERR
    t.access(g + P, True)
    assert t.term_signal == U.SIGSEGV
    assert k.vmstat["fault_sigsegv_maperr"] == 1


def test_guard_markers_survive_fork_and_mremap_and_go_with_munmap(k, t):
    g = t.mmap(0, 8 * P, RW, ANON)
    t.madvise(g + 2 * P, 2 * P, U.MADV_GUARD_INSTALL)
    # lines 36-42: the forked child's MADV_POPULATE_READ on g + 2 = -1 EFAULT
    child = k.tasks[t.fork()]
    assert errno_of(child.madvise, g + 2 * P, P, U.MADV_POPULATE_READ) == U.EFAULT
    # lines 45-47: moved with the PTEs by mremap
    dst = t.mmap(0, 8 * P, U.PROT_NONE, ANON)
    g = t.mremap(g, 8 * P, 8 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, dst)
    assert errno_of(t.madvise, g + 2 * P, P, U.MADV_POPULATE_READ) == U.EFAULT
    # line 48: mlock's populate hits the guard: EFAULT, which mlock reports as ENOMEM
    assert errno_of(t.mlock, g, 8 * P) == U.ENOMEM
    assert t.mm.mm_mt.lookup(g).vm_flags & VM_LOCKED  # the VMA was locked all the same
    # line 49: no install on a VM_LOCKED VMA; line 50: removal is allowed there
    assert errno_of(t.madvise, g, P, U.MADV_GUARD_INSTALL) == U.EINVAL
    assert t.madvise(g + 2 * P, P, U.MADV_GUARD_REMOVE) == 0
    t.munlock(g, 8 * P)
    # lines 52-53: g + 3 still guarded, g + 2 populates again
    assert errno_of(t.madvise, g + 2 * P, 2 * P, U.MADV_POPULATE_WRITE) == U.EFAULT
    assert t.madvise(g + 2 * P, P, U.MADV_POPULATE_WRITE) == 0
    # munmap drops the markers (ZAP_FLAG_DROP_MARKER) with the VMA
    t.munmap(g, 8 * P)
    assert not [v for v in t.mm.pgtable.ptes if g >> 12 <= v < (g >> 12) + 8]
    validate_mm(t.mm)
    validate_mm(child.mm)


def test_guard_install_over_a_hole_and_on_a_file_mapping(k, t):
    g = t.mmap(0, 6 * P, RW, ANON)
    t.munmap(g + 5 * P, P)
    # lines 54-56: ENOMEM for the hole, the mapped part guarded all the same
    assert errno_of(t.madvise, g + 4 * P, 2 * P, U.MADV_GUARD_INSTALL) == U.ENOMEM
    assert errno_of(t.madvise, g + 4 * P, P, U.MADV_POPULATE_READ) == U.EFAULT
    # lines 64-68: 6.15+ installs guards in file mappings too
    k.fs.create("/data", 4 * P)
    fd = t.open("/data", U.O_RDWR)
    f = t.mmap(0, 4 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    assert t.madvise(f + P, P, U.MADV_GUARD_INSTALL) == 0
    assert errno_of(t.madvise, f, 4 * P, U.MADV_POPULATE_READ) == U.EFAULT
    # and a forked child has them (vma_needs_copy: VM_MAYBE_GUARD, no anon_vma needed)
    child = k.tasks[t.fork()]
    assert child.mm.mm_mt.lookup(f).vm_flags & VM_MAYBE_GUARD
    assert errno_of(child.madvise, f + P, P, U.MADV_POPULATE_READ) == U.EFAULT
    validate_mm(t.mm)


# --- MAP_DROPPABLE ---------------------------------------------------------------------
def test_map_droppable_flags_and_refusals(k, t):
    # line 99: mmap(NULL, 4 pages, rw, MAP_DROPPABLE|MAP_ANONYMOUS) -> "nr wf dd dp" and no "ac"
    d = t.mmap(0, 4 * P, RW, U.MAP_DROPPABLE | U.MAP_ANONYMOUS)
    v = t.mm.mm_mt.lookup(d)
    assert vm_flag_names(v.vm_flags) == "rd wr mr mw me nr wf dd dp"
    assert v.vm_flags & (VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP)
    # lines 100-102: MAP_LOCKED, MAP_GROWSDOWN, a file: EINVAL
    assert errno_of(t.mmap, 0, P, RW, U.MAP_DROPPABLE | U.MAP_ANONYMOUS | U.MAP_LOCKED) == U.EINVAL
    assert errno_of(t.mmap, 0, P, RW, U.MAP_DROPPABLE | U.MAP_ANONYMOUS | U.MAP_GROWSDOWN) == U.EINVAL
    k.fs.create("/f", P)
    fd = t.open("/f", U.O_RDWR)
    assert errno_of(t.mmap, 0, P, RW, U.MAP_DROPPABLE, fd, 0) == U.EINVAL
    # line 103: mlock succeeds, populates, but never locks it (smaps Locked: 0 kB, Rss 16 kB)
    assert t.mlock(d, 4 * P) == 0
    v = t.mm.mm_mt.lookup(d)
    assert not v.vm_flags & VM_LOCKED and t.mm.locked_vm == 0
    assert sum(1 for i in range(4) if t.mm.pgtable.ptes.get((d >> 12) + i, 0) & 1) == 4
    validate_mm(t.mm)


def test_reclaim_drops_droppable_pages_even_dirty_and_they_read_back_as_zeros(k, t):
    from guestkernel.memory import try_to_unmap
    from guestkernel.page import PG_swapbacked

    d = t.mmap(0, 2 * P, RW, U.MAP_DROPPABLE | U.MAP_ANONYMOUS)
    t.access(d, True, b"\x07" * P)
    pte = t.mm.pgtable.ptes[d >> 12]
    page = k.mem_map[pte >> 12]
    assert pte & 0x40 and not page.flags & PG_swapbacked  # dirty, never swap-backed
    # try_to_unmap_one: a VM_DROPPABLE page is discarded even dirty, no swap entry needed
    assert try_to_unmap(k, page) is True
    assert d >> 12 not in t.mm.pgtable.ptes
    assert t.peek(d, 4) == b"\0\0\0\0"
    t.access(d, False)
    assert t.peek(d, 4) == b"\0\0\0\0"
    validate_mm(t.mm)


def test_madv_free_page_written_again_is_kept_and_swap_backed(k, t):
    from guestkernel.memory import try_to_unmap
    from guestkernel.page import PG_swapbacked

    a = t.mmap(0, P, RW, ANON)
    t.access(a, True, b"\x01" * P)
    t.madvise(a, P, U.MADV_FREE)
    page = k.mem_map[t.mm.pgtable.ptes[a >> 12] >> 12]
    assert not page.flags & PG_swapbacked
    t.access(a, True, b"\x02" * P)  # redirtied since MADV_FREE
    assert try_to_unmap(k, page) is False
    assert page.flags & PG_swapbacked and t.peek(a, 1) == b"\x02"


# --- MADV_POPULATE_(READ|WRITE) -----------------------------------------------------------
def test_populate_checks_the_vma_rights(k, t):
    # line 105-106: PROT_NONE, POPULATE_READ -> EINVAL
    pn = t.mmap(0, 2 * P, U.PROT_NONE, ANON)
    assert errno_of(t.madvise, pn, 2 * P, U.MADV_POPULATE_READ) == U.EINVAL
    # lines 107-109: read-only anon: POPULATE_WRITE EINVAL, POPULATE_READ 0 (zero page)
    ro = t.mmap(0, 2 * P, U.PROT_READ, ANON)
    assert errno_of(t.madvise, ro, 2 * P, U.MADV_POPULATE_WRITE) == U.EINVAL
    assert t.madvise(ro, 2 * P, U.MADV_POPULATE_READ) == 0
    assert t.mm.pgtable.ptes[ro >> 12] >> 12 == k.zero_pfn
    # an address with no VMA: ENOMEM
    assert errno_of(t.madvise, 0x100000000, P, U.MADV_POPULATE_READ) == U.ENOMEM
    # lines 111-113: a shared mapping of a file opened read-only: POPULATE_WRITE EINVAL
    k.fs.create("/dat", 4 * P)
    rofd = t.open("/dat", U.O_RDONLY)
    fs = t.mmap(0, 2 * P, U.PROT_READ, U.MAP_SHARED, rofd, 0)
    assert errno_of(t.madvise, fs, 2 * P, U.MADV_POPULATE_WRITE) == U.EINVAL
    # lines 114-115: 8 pages of a 4-page file: SIGBUS beyond EOF is EFAULT, the 4 done stay
    eof = t.mmap(0, 8 * P, U.PROT_READ, U.MAP_PRIVATE, rofd, 0)
    assert errno_of(t.madvise, eof, 8 * P, U.MADV_POPULATE_READ) == U.EFAULT
    assert all(t.mm.pgtable.ptes.get((eof >> 12) + i, 0) & 1 for i in range(4))
    # a write populate of a private writable file mapping breaks CoW: anonymous pages
    fw = t.mmap(0, 2 * P, RW, U.MAP_PRIVATE, rofd, 0)
    rss0 = t.mm.rss[1]
    assert t.madvise(fw, 2 * P, U.MADV_POPULATE_WRITE) == 0
    assert t.mm.rss[1] == rss0 + 2
    validate_mm(t.mm)


def test_populate_ignores_lock_on_fault(k, t):
    a = t.mmap(0, 2 * P, RW, ANON)
    rss0 = t.mm.rss[1]
    t.mlock2(a, 2 * P, U.MLOCK_ONFAULT)
    assert t.mm.rss[1] == rss0
    assert t.madvise(a, 2 * P, U.MADV_POPULATE_WRITE) == 0
    assert t.mm.rss[1] == rss0 + 2


# --- MADV_REMOVE ------------------------------------------------------------------------------
def test_madv_remove_punches_a_hole_in_a_shared_file_mapping(k, t):
    k.fs.create("/dat", 4 * P)
    fd = t.open("/dat", U.O_RDWR)
    fw = t.mmap(0, 4 * P, RW, U.MAP_SHARED, fd, 0)
    t.access_range(fw, 4 * P, True, b"\x02" * P)
    # line 117: = 0 (ext4 punches the hole); the range reads back as zeros, size kept
    assert t.madvise(fw + P, 2 * P, U.MADV_REMOVE) == 0
    inode = k.fs.lookup("/dat")
    assert inode.size == 4 * P
    assert sorted(inode.mapping.pages) == [0, 3]
    t.access(fw + P, False)
    assert t.peek(fw + P, 2) == b"\0\0" and t.peek(fw, 1) == b"\x02"
    # line 118: a shared mapping of a file opened read-only -> EACCES
    rofd = t.open("/dat", U.O_RDONLY)
    rs = t.mmap(0, P, U.PROT_READ, U.MAP_SHARED, rofd, 0)
    assert errno_of(t.madvise, rs, P, U.MADV_REMOVE) == U.EACCES
    # line 119-120: a private mapping -> EACCES; line 121: anonymous -> EINVAL
    fp = t.mmap(0, P, RW, U.MAP_PRIVATE, fd, 0)
    assert errno_of(t.madvise, fp, P, U.MADV_REMOVE) == U.EACCES
    an = t.mmap(0, P, RW, ANON)
    assert errno_of(t.madvise, an, P, U.MADV_REMOVE) == U.EINVAL
    # lines 122-123: a locked VMA -> EINVAL
    t.mlock(fw, P)
    assert errno_of(t.madvise, fw, P, U.MADV_REMOVE) == U.EINVAL
    # a file system without hole punching: EOPNOTSUPP
    k.fs.punch_hole = False
    assert errno_of(t.madvise, fw + 3 * P, P, U.MADV_REMOVE) == U.EOPNOTSUPP
    validate_mm(t.mm)


# --- memfd seals ---------------------------------------------------------------------------
def test_memfd_is_shmem_with_write_seal_rules(k, t):
    # lines 124-135
    fd = t.memfd_create("sealed", U.MFD_ALLOW_SEALING)
    t.ftruncate(fd, 4 * P)
    mw = t.mmap(0, 4 * P, RW, U.MAP_SHARED, fd, 0)
    inode = t.files[fd].inode
    assert inode.shmem and inode.name == "/memfd:sealed (deleted)"
    assert errno_of(t.fcntl, fd, U.F_ADD_SEALS, U.F_SEAL_WRITE) == U.EBUSY
    t.munmap(mw, 4 * P)
    assert t.fcntl(fd, U.F_ADD_SEALS, U.F_SEAL_WRITE | U.F_SEAL_SHRINK) == 0
    assert errno_of(t.mmap, 0, 4 * P, RW, U.MAP_SHARED, fd, 0) == U.EPERM
    mr = t.mmap(0, 4 * P, U.PROT_READ, U.MAP_SHARED, fd, 0)
    # smaps line "r--s ... VmFlags: rd sh mr me ms": VM_MAYWRITE cleared
    assert not t.mm.mm_mt.lookup(mr).vm_flags & VM_MAYWRITE
    assert errno_of(t.mprotect, mr, 4 * P, RW) == U.EACCES
    assert t.mmap(0, 4 * P, RW, U.MAP_PRIVATE, fd, 0) > 0
    assert errno_of(t.ftruncate, fd, P) == U.EPERM
    assert errno_of(t.madvise, mr, P, U.MADV_REMOVE) == U.EACCES
    assert t.fcntl(fd, U.F_GET_SEALS) == U.F_SEAL_WRITE | U.F_SEAL_SHRINK
    # without MFD_ALLOW_SEALING: F_SEAL_SEAL, no seal may be added
    fd2 = t.memfd_create("plain", 0)
    assert errno_of(t.fcntl, fd2, U.F_ADD_SEALS, U.F_SEAL_WRITE) == U.EPERM
    validate_mm(t.mm)


# --- mremap of several VMAs (6.17) -----------------------------------------------------------
def test_mremap_moves_several_vmas_and_keeps_the_gaps(k, t):
    # lines 136-145
    m = t.mmap(0, 6 * P, RW, ANON)
    t.mprotect(m + 2 * P, P, U.PROT_READ)
    t.munmap(m + 4 * P, P)
    tgt = t.mmap(0, 6 * P, U.PROT_NONE, ANON)
    # a resize over several VMAs is still refused (overlap first here: EINVAL, line 140)
    assert errno_of(t.mremap, m, 6 * P, 7 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, tgt) == U.EINVAL
    assert errno_of(t.mremap, m, 6 * P, 7 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED,
                    tgt - 64 * P) == U.EFAULT
    # line 141: same size without FIXED: nothing to do, the address back
    assert t.mremap(m, 6 * P, 6 * P, U.MREMAP_MAYMOVE) == m
    # line 142: moved; the target's PROT_NONE page opposite the gap stays (smaps)
    assert t.mremap(m, 6 * P, 6 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, tgt) == tgt
    assert vmas(t, tgt, tgt + 6 * P) == [
        (0, 2, "rd wr mr mw me ac"), (2, 3, "rd mr mw me"), (3, 4, "rd wr mr mw me ac"),
        (4, 5, "mr mw me"), (5, 6, "rd wr mr mw me ac")]
    assert t.mm.mm_mt.intersecting(m, m + 6 * P) == []
    # line 144: a range starting in a gap: EFAULT
    u = t.mmap(0, 6 * P, U.PROT_NONE, ANON)
    assert errno_of(t.mremap, tgt - P, 7 * P, 7 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED,
                    u + 64 * P) == U.EFAULT
    # line 145: with MREMAP_DONTUNMAP the sources stay (empty)
    assert t.mremap(tgt, 6 * P, 6 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED | U.MREMAP_DONTUNMAP,
                    u) == u
    assert len(vmas(t, tgt, tgt + 6 * P)) == 5
    validate_mm(t.mm)


def test_guard_markers_kept_by_madv_free_mprotect_and_madv_remove(k, t):
    # tests/data/traces/guard_keep.c, output guard_keep.out (Linux 6.18): after each of
    # these a MADV_POPULATE_READ of the guarded page is still -1 EFAULT
    from pathlib import Path

    out = (Path(__file__).parents[1] / "data" / "traces" / "guard_keep.out").read_text()
    assert out.splitlines() == ["MADV_FREE: -1 Bad address", "mprotect: -1 Bad address",
                                "install on a shared memfd mapping: 0",
                                "MADV_REMOVE: -1 Bad address"]
    g = t.mmap(0, 4 * P, RW, ANON)
    t.access_range(g, 4 * P, True)
    t.madvise(g + P, P, U.MADV_GUARD_INSTALL)
    t.madvise(g, 4 * P, U.MADV_FREE)
    assert errno_of(t.madvise, g + P, P, U.MADV_POPULATE_READ) == U.EFAULT
    t.mprotect(g, 4 * P, U.PROT_READ)
    assert errno_of(t.madvise, g + P, P, U.MADV_POPULATE_READ) == U.EFAULT
    fd = t.memfd_create("x", 0)
    t.ftruncate(fd, 4 * P)
    s = t.mmap(0, 4 * P, RW, U.MAP_SHARED, fd, 0)
    assert t.madvise(s + P, P, U.MADV_GUARD_INSTALL) == 0
    assert t.madvise(s, 4 * P, U.MADV_REMOVE) == 0
    assert errno_of(t.madvise, s + P, P, U.MADV_POPULATE_READ) == U.EFAULT
    validate_mm(t.mm)


def test_thp_aligned_placement_of_2mib_multiples(k, t):
    # __get_unmapped_area (6.18): a private anonymous mapping without a hint whose length
    # is a multiple of PMD_SIZE is THP-aligned (placement.trace lines 20-21:
    # mmap(NULL, 2 MiB) = 0x7ffff7a00000 below a mapping at 0x7ffff7dd1000, then
    # mmap(NULL, 6 MiB) = 0x7ffff7400000: the padded search's start plus PMD_SIZE)
    M2 = 2 << 20
    low = min(v.vm_start for v in t.mm.mm_mt.vmas if v.vm_start > 1 << 40)
    a = t.mmap(0, M2, RW, ANON)
    assert a % M2 == 0 and a + M2 <= low and low - (a + M2) < M2
    b = t.mmap(0, 3 * M2, U.PROT_READ, ANON)
    assert b == a - 3 * M2
    c = t.mmap(0, M2 + P, RW, ANON)  # not a multiple: plain top-down, right below b
    assert c == b - M2 - P
    # a disk file's mapping too (ext4: thp_get_unmapped_area; measured: a 6 MiB file
    # mapping lands 2 MiB-aligned)
    k.fs.create("/big", 6 << 20)
    fd = t.open("/big", U.O_RDONLY)
    f = t.mmap(0, 6 << 20, U.PROT_READ, U.MAP_SHARED, fd, 0)
    assert f % M2 == 0
