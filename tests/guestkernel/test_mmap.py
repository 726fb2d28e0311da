"""mmap, munmap, mprotect, brk, mremap, madvise and the stack: VMA layouts after each step.

Diagrams: one character per page from the base address B; letters are VMAs (a new letter
for each distinct VMA), '.' is unmapped. `rw` = PROT_READ|PROT_WRITE.
"""

import pytest

from guestkernel import uapi as U
from guestkernel.mmap import STACK_GUARD_GAP, mmap_base_for
from guestkernel.vma import VM_ACCOUNT, VM_MERGEABLE, validate_mm

from .helpers import boot

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
R = U.PROT_READ
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
FIX = ANON | U.MAP_FIXED
B = 0x10000000  # a base far from the binary, the heap and the stack


def around(t, lo=B, hi=B + 64 * P):
    """[(first page, last page + 1, perms)] of the VMAs in [lo, hi), pages from B."""
    out = []
    for v in t.mm.mm_mt.vmas:
        if v.vm_end > lo and v.vm_start < hi:
            perms = ("r" if v.vm_flags & 1 else "-") + ("w" if v.vm_flags & 2 else "-")
            out.append(((v.vm_start - B) // P, (v.vm_end - B) // P, perms))
    return out


def committed(k):
    """Pages Committed_AS should hold: VM_ACCOUNT VMAs of every mm plus shmem charges."""
    n = 0
    for task in k.tasks.values():
        if task.mm is not None:
            n += sum(v.vma_pages() for v in task.mm.mm_mt.vmas if v.vm_flags & VM_ACCOUNT)
    return n


# --- mmap ----------------------------------------------------------------------------------
def test_mmap_anon_topdown_below_mmap_base(k, t):
    base = mmap_base_for((1 << 47) - P, 8 << 20)
    assert base == 0x7FFFF7FFF000 == t.mm.mmap_base
    # execve put [vvar] [vvar_vclock] [vdso] (8 pages) at the top of the mmap area first
    assert t.mm.vdso == base - 2 * P
    a = t.mmap(0, 3 * P, RW, ANON)
    assert a == base - 8 * P - 3 * P
    b = t.mmap(0, P, RW, ANON)
    # b a a a   : the second mapping lands just below and merges with the first
    assert b == a - P
    assert [(v.vm_start, v.vm_end) for v in t.mm.mm_mt.vmas if v.vm_start >= b - P * 100][:1] == [(b, a + 3 * P)]
    validate_mm(t.mm)


def test_mmap_errors(k, t):
    with pytest.raises(OSError) as e:
        t.mmap(0, 0, RW, ANON)
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.mmap(B + 1, P, RW, FIX)
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.mmap(0, P, RW, U.MAP_ANONYMOUS)  # neither shared nor private
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.mmap(0, P, R, U.MAP_PRIVATE, 7, 0)
    assert e.value.errno == U.EBADF
    with pytest.raises(OSError) as e:
        t.mmap(0, 1 << 48, RW, ANON)
    assert e.value.errno == U.ENOMEM


def test_mmap_merge_cases(k, t):
    # 0123456
    # aa          mmap [0,2)
    # aa..b       mmap [4,5): not adjacent, separate
    # aaaab       mmap [2,4): three-way merge -> one VMA [0,5)
    t.mmap(B, 2 * P, RW, FIX)
    t.mmap(B + 4 * P, P, RW, FIX)
    assert around(t) == [(0, 2, "rw"), (4, 5, "rw")]
    t.mmap(B + 2 * P, 2 * P, RW, FIX)
    assert around(t) == [(0, 5, "rw")]
    validate_mm(t.mm)
    # aaaaab      mmap [5,6) read-only: different flags, no merge
    t.mmap(B + 5 * P, P, R, FIX)
    assert around(t) == [(0, 5, "rw"), (5, 6, "r-")]
    validate_mm(t.mm)


def test_vm_account_prevents_merge(k, t):
    # a created read-only (no VM_ACCOUNT), then made writable (charged, VM_ACCOUNT);
    # b created writable: same permissions now, still different VM_ACCOUNT history?
    # No: mprotect to writable sets VM_ACCOUNT, so they merge. A private read-only
    # mapping next to a writable one created with MAP_NORESERVE stays apart.
    t.mmap(B, P, RW, FIX | U.MAP_NORESERVE)
    t.mmap(B + P, P, RW, FIX)
    assert around(t) == [(0, 1, "rw"), (1, 2, "rw")]
    v0, v1 = t.mm.mm_mt.vmas[t.mm.mm_mt.index(t.mm.mm_mt.lookup(B)):][:2]
    assert not v0.vm_flags & VM_ACCOUNT and v1.vm_flags & VM_ACCOUNT
    validate_mm(t.mm)


def test_map_fixed_replaces_and_noreplace(k, t):
    # aaaa      then MAP_FIXED [1,3) read-only: a b b a
    t.mmap(B, 4 * P, RW, FIX)
    t.access_range(B, 4 * P, True)
    anon_before = t.mm.rss[1]
    t.mmap(B + P, 2 * P, R, FIX)
    assert around(t) == [(0, 1, "rw"), (1, 3, "r-"), (3, 4, "rw")]
    assert t.mm.rss[1] == anon_before - 2  # the replaced pages were freed
    with pytest.raises(OSError) as e:
        t.mmap(B + 3 * P, P, RW, ANON | U.MAP_FIXED_NOREPLACE)
    assert e.value.errno == U.EEXIST
    assert t.mmap(B + 8 * P, P, RW, ANON | U.MAP_FIXED_NOREPLACE) == B + 8 * P
    validate_mm(t.mm)


def test_mmap_hint_used_if_free_else_topdown(k, t):
    assert t.mmap(B + 16 * P, P, RW, ANON) == B + 16 * P
    a = t.mmap(B + 16 * P, P, RW, ANON)  # taken: placed top-down instead
    assert a != B + 16 * P and a < t.mm.mmap_base
    with pytest.raises(OSError) as e:
        t.mmap(0x1000, P, RW, FIX)  # below mmap_min_addr (65536)
    assert e.value.errno == U.EPERM
    assert t.mmap(0x1000, P, RW, ANON) >= 0x10000  # a low hint is raised to mmap_min_addr
    validate_mm(t.mm)


def test_commit_charge_on_mmap_and_munmap(k, t):
    c0 = k.committed_as
    t.mmap(B, 10 * P, RW, FIX)  # private writable: charged
    assert k.committed_as == c0 + 10
    t.mmap(B + 20 * P, 10 * P, R, FIX)  # read-only private: not charged
    assert k.committed_as == c0 + 10
    t.mmap(B + 40 * P, 4 * P, RW, FIX | U.MAP_NORESERVE)  # NORESERVE outside mode 2
    assert k.committed_as == c0 + 10
    t.mmap(B + 50 * P, 4 * P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS | U.MAP_FIXED)  # shmem
    assert k.committed_as == c0 + 14
    t.munmap(B + 2 * P, 3 * P)
    assert k.committed_as == c0 + 11
    t.munmap(B + 50 * P, 4 * P)
    assert k.committed_as == c0 + 7
    assert committed(k) + 0 == k.committed_as


def test_overcommit_mode2_refuses(k, t):
    # CommitLimit = 1% of ~120 MiB of RAM, about 300 pages: two processes (45 pages of
    # data, bss and stack each) fit, 1 MiB more does not
    k2 = boot(overcommit_memory=2, overcommit_ratio=1, admin_reserve_kbytes=0,
              user_reserve_kbytes=0)
    t2 = k2.spawn("t")
    with pytest.raises(OSError) as e:
        t2.mmap(0, 1 << 20, RW, ANON)
    assert e.value.errno == U.ENOMEM
    # read-only private mappings are not charged
    assert t2.mmap(0, 1 << 20, R, ANON) > 0
    validate_mm(t2.mm)


# --- munmap ----------------------------------------------------------------------------------
def test_munmap_split_cases(k, t):
    # aaaaaaaa   munmap [2,4): aa..aaaa (split, two VMAs)
    t.mmap(B, 8 * P, RW, FIX)
    t.munmap(B + 2 * P, 2 * P)
    assert around(t) == [(0, 2, "rw"), (4, 8, "rw")]
    # munmap of the head [0,1) and the tail [7,8)
    t.munmap(B, P)
    t.munmap(B + 7 * P, P)
    assert around(t) == [(1, 2, "rw"), (4, 7, "rw")]
    # a range spanning a hole and both VMAs: [1,5) -> only [5,7) remains
    t.munmap(B + P, 4 * P)
    assert around(t) == [(5, 7, "rw")]
    # unmapped range: 0
    assert t.munmap(B + 30 * P, P) == 0
    validate_mm(t.mm)


def test_munmap_errors(k, t):
    for addr, ln in ((B + 1, P), (B, 0)):
        with pytest.raises(OSError) as e:
            t.munmap(addr, ln)
        assert e.value.errno == U.EINVAL


def test_munmap_frees_pages_and_page_tables(k, t):
    pt_pages = k.vmstat["nr_page_table_pages"]
    a = t.mmap(B, 64 * P, RW, FIX)
    t.access_range(a, 64 * P, True)
    assert t.mm.rss[1] >= 64
    free_before = k.page_alloc.nr_free_pages()
    # nothing was mapped below 1 GiB yet: a PUD, a PMD and a PTE table were allocated
    assert k.vmstat["nr_page_table_pages"] == pt_pages + 3
    assert t.mm.pgtables_bytes == 6 * P  # the stack's PUD/PMD/PTE and these three
    t.munmap(a, 64 * P)
    # the PTE table goes; the PMD and PUD also span the binary's VMAs below: they stay
    assert k.vmstat["nr_page_table_pages"] == pt_pages + 2
    assert t.mm.pgtables_bytes == 5 * P
    assert k.page_alloc.nr_free_pages() + sum(
        p.count for z in k.page_alloc.zones for pair in z.pcp for p in pair) >= free_before + 64
    validate_mm(t.mm)


# --- mprotect --------------------------------------------------------------------------------
def test_mprotect_split_and_merge_back(k, t):
    # aaaaaa      mprotect [2,4) r: aabbcc ; back to rw: aaaaaa (one VMA again)
    t.mmap(B, 6 * P, RW, FIX)
    t.mprotect(B + 2 * P, 2 * P, R)
    assert around(t) == [(0, 2, "rw"), (2, 4, "r-"), (4, 6, "rw")]
    validate_mm(t.mm)
    t.mprotect(B + 2 * P, 2 * P, RW)
    assert around(t) == [(0, 6, "rw")]
    validate_mm(t.mm)


def test_mprotect_merge_with_prev_and_next(k, t):
    # aabb   mprotect [2,3) rw: a grows over it (merge with prev): aaab
    t.mmap(B, 2 * P, RW, FIX)
    t.mmap(B + 2 * P, 2 * P, R, FIX)
    t.mmap(B + 4 * P, 2 * P, RW, FIX)
    # rw rw r r rw rw
    t.mprotect(B + 2 * P, P, RW)
    assert around(t) == [(0, 3, "rw"), (3, 4, "r-"), (4, 6, "rw")]
    # the remaining r page merges with both neighbours
    t.mprotect(B + 3 * P, P, RW)
    assert around(t) == [(0, 6, "rw")]
    validate_mm(t.mm)
    # [4,6) to r: merge into nothing, split off the tail
    t.mprotect(B + 4 * P, 2 * P, R)
    assert around(t) == [(0, 4, "rw"), (4, 6, "r-")]
    # and the next: [3,4) to r merges with next
    t.mprotect(B + 3 * P, P, R)
    assert around(t) == [(0, 3, "rw"), (3, 6, "r-")]
    validate_mm(t.mm)


def test_mprotect_hole_leaves_earlier_vmas_changed(k, t):
    # aa.bb    mprotect [0,5) r -> ENOMEM, but [0,2) is read-only now
    t.mmap(B, 2 * P, RW, FIX)
    t.mmap(B + 3 * P, 2 * P, RW, FIX)
    with pytest.raises(OSError) as e:
        t.mprotect(B, 5 * P, R)
    assert e.value.errno == U.ENOMEM
    assert around(t) == [(0, 2, "r-"), (3, 5, "rw")]
    with pytest.raises(OSError) as e:
        t.mprotect(B + 2 * P, P, R)  # nothing at start
    assert e.value.errno == U.ENOMEM
    with pytest.raises(OSError) as e:
        t.mprotect(B + 1, P, R)
    assert e.value.errno == U.EINVAL
    assert t.mprotect(B, 0, R) == 0
    validate_mm(t.mm)


def test_mprotect_eacces_without_vm_maywrite(k, t):
    fd = t.open("/ro", U.O_RDONLY | U.O_CREAT)
    k.fs.lookup("/ro").size = 4 * P
    a = t.mmap(0, 4 * P, R, U.MAP_SHARED, fd, 0)
    with pytest.raises(OSError) as e:
        t.mprotect(a, P, RW)
    assert e.value.errno == U.EACCES
    # a private mapping of the same file may become writable (CoW), and is charged
    c0 = k.committed_as
    b = t.mmap(0, 4 * P, R, U.MAP_PRIVATE, fd, 0)
    t.mprotect(b, 2 * P, RW)
    assert k.committed_as == c0 + 2
    validate_mm(t.mm)


def test_mprotect_write_charge_and_uncharge(k, t):
    c0 = k.committed_as
    t.mmap(B, 4 * P, R, FIX)
    t.mprotect(B, 4 * P, RW)
    assert k.committed_as == c0 + 4
    # removing write from an anonymous VMA that never had pages drops VM_ACCOUNT
    t.mprotect(B, 4 * P, R)
    assert k.committed_as == c0
    validate_mm(t.mm)


# --- brk -------------------------------------------------------------------------------------
def test_brk_grow_shrink(k, t):
    mm = t.mm
    start = t.brk(0)
    assert start == mm.start_brk
    # brk keeps the unaligned value; the heap VMA ends at PAGE_ALIGN(brk)
    assert t.brk(start + 5000) == start + 5000
    heap = mm.mm_mt.lookup(start)
    assert (heap.vm_start, heap.vm_end) == (start, start + 2 * P)
    assert t.brk(start + 3 * P + 1) == start + 3 * P + 1
    assert mm.mm_mt.lookup(start).vm_end == start + 4 * P
    validate_mm(mm)
    t.access_range(start, 4 * P, True)
    assert t.brk(start + P) == start + P  # shrink unmaps [PAGE_ALIGN(new), old end)
    assert mm.mm_mt.lookup(start).vm_end == start + P
    assert mm.rss[1] == 1 + 1  # the heap page and the stack page
    assert t.brk(start - P) == start + P  # below start_brk: old brk returned
    validate_mm(mm)


def test_brk_stops_before_next_mapping(k, t):
    start = t.brk(0)
    t.mmap(start + 8 * P, P, RW, FIX)
    # growing must leave a page before the next VMA
    assert t.brk(start + 7 * P) == start + 7 * P
    assert t.brk(start + 8 * P) == start + 7 * P
    validate_mm(t.mm)


def test_brk_charges_commit(k, t):
    c0 = k.committed_as
    start = t.brk(0)
    t.brk(start + 10 * P)
    assert k.committed_as == c0 + 10
    t.brk(start + 4 * P)
    assert k.committed_as == c0 + 4


# --- stack -----------------------------------------------------------------------------------
def test_stack_growth_and_guard_gap(k, t):
    mm = t.mm
    stack = mm.mm_mt.lookup(mm.start_stack)
    assert stack.vm_end - stack.vm_start == 33 * P  # argument page + 128 KiB
    c0 = k.committed_as
    # touching below the stack grows it
    t.access(stack.vm_start - 5 * P, True)
    assert t.state == "running"
    assert stack.vm_start == (stack.vm_end - 38 * P)
    assert mm.stack_vm == 38 and k.committed_as == c0 + 5
    validate_mm(mm)
    # a mapping placed within the guard gap below the stack blocks growth
    guard = stack.vm_start - STACK_GUARD_GAP
    t.mmap(guard - P, 2 * P, RW, FIX)  # ends one page inside the gap
    t.access(stack.vm_start - P, True)
    assert t.state == "dead" and t.term_signal == U.SIGSEGV and t.si_code == U.SEGV_MAPERR


def test_stack_rlimit(k, t):
    mm = t.mm
    t.setrlimit(U.RLIMIT_STACK, 64 * P)
    stack = mm.mm_mt.lookup(mm.start_stack)
    t.access(stack.vm_end - 64 * P, True)  # exactly the limit: fine
    assert t.state == "running"
    t.access(stack.vm_end - 65 * P, True)
    assert t.state == "dead" and t.si_code == U.SEGV_MAPERR


# --- mremap ------------------------------------------------------------------------------------
def test_mremap_grow_in_place_shrink_and_move(k, t):
    a = t.mmap(B, 4 * P, RW, FIX)
    t.access_range(a, 4 * P, True, data=b"x" * P)
    assert t.mremap(a, 4 * P, 8 * P, 0) == a  # free space after: grows in place
    assert around(t) == [(0, 8, "rw")]
    assert t.mremap(a, 8 * P, 2 * P, 0) == a  # shrink
    assert around(t) == [(0, 2, "rw")]
    t.mmap(B + 2 * P, P, R, FIX)  # blocks growth in place
    with pytest.raises(OSError) as e:
        t.mremap(a, 2 * P, 6 * P, 0)
    assert e.value.errno == U.ENOMEM
    new = t.mremap(a, 2 * P, 6 * P, U.MREMAP_MAYMOVE)
    assert new != a
    assert t.peek(new, 1) == b"x" and t.peek(new + P, 1) == b"x"
    assert t.mm.mm_mt.lookup(a) is None
    validate_mm(t.mm)
    fixed = t.mremap(new, 6 * P, 6 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, B + 32 * P)
    assert fixed == B + 32 * P and t.peek(fixed, 1) == b"x"
    validate_mm(t.mm)
    with pytest.raises(OSError) as e:
        t.mremap(B + 40 * P, P, 2 * P, U.MREMAP_MAYMOVE)
    assert e.value.errno == U.EFAULT
    with pytest.raises(OSError) as e:
        t.mremap(fixed, P, 2 * P, U.MREMAP_FIXED)
    assert e.value.errno == U.EINVAL


def test_mremap_commit_moves_with_mapping(k, t):
    c0 = k.committed_as
    a = t.mmap(B, 4 * P, RW, FIX)
    t.mmap(B + 4 * P, P, R, FIX)
    t.mremap(a, 4 * P, 6 * P, U.MREMAP_MAYMOVE)
    assert k.committed_as == c0 + 6
    assert committed(k) == k.committed_as


# --- madvise -----------------------------------------------------------------------------------
def test_madvise_dontneed_zaps(k, t):
    a = t.mmap(B, 4 * P, RW, FIX)
    t.access_range(a, 4 * P, True, data=b"y" * P)
    anon = t.mm.rss[1]
    t.madvise(a, 2 * P, U.MADV_DONTNEED)
    assert t.mm.rss[1] == anon - 2
    assert t.peek(a, 1) == b"\0" and t.peek(a + 2 * P, 1) == b"y"
    t.access(a, False)  # re-read after DONTNEED: the zero page
    assert t.mm.rss[1] == anon - 2
    validate_mm(t.mm)


def test_madvise_free_and_hole(k, t):
    a = t.mmap(B, 4 * P, RW, FIX)
    t.access_range(a, 4 * P, True)
    t.madvise(a, 4 * P, U.MADV_FREE)
    assert k.vmstat["pglazyfree"] == 4
    t.mmap(B + 5 * P, P, RW, FIX)
    with pytest.raises(OSError) as e:  # a hole: applied where mapped, then ENOMEM
        t.madvise(B, 6 * P, U.MADV_DONTNEED)
    assert e.value.errno == U.ENOMEM
    assert t.mm.rss[1] == 1  # only the stack page is left
    with pytest.raises(OSError) as e:
        t.madvise(B, P, 999)
    assert e.value.errno == U.EINVAL


def test_madvise_mergeable_splits_vma(k, t):
    a = t.mmap(B, 4 * P, RW, FIX)
    t.madvise(a + P, 2 * P, U.MADV_MERGEABLE)
    vmas = [v for v in t.mm.mm_mt.vmas if B <= v.vm_start < B + 4 * P]
    assert [(v.vm_start - B) // P for v in vmas] == [0, 1, 3]
    assert [bool(v.vm_flags & VM_MERGEABLE) for v in vmas] == [False, True, False]
    assert t.mm.ksm_mergeable
    t.madvise(a + P, 2 * P, U.MADV_UNMERGEABLE)
    assert around(t) == [(0, 4, "rw")]
    validate_mm(t.mm)


def test_map_growsdown_region_grows_on_access(k, t):
    a = t.mmap(B + 64 * P, 2 * P, RW, FIX | U.MAP_GROWSDOWN)
    t.access(a - 3 * P, True)
    v = t.mm.mm_mt.lookup(a - 3 * P)
    assert t.state == "running" and v.vm_start == a - 3 * P and v.vm_end == a + 2 * P
    assert v.vm_pgoff == (a >> 12) - 3
    validate_mm(t.mm)
    with pytest.raises(OSError) as e:
        t.mmap(0, P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS | U.MAP_GROWSDOWN)
    assert e.value.errno == U.EINVAL


def test_madvise_willneed_reads_file_ahead(k, t):
    k.fs.create("/big", 64 * P)
    fd = t.open("/big")
    a = t.mmap(0, 64 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.madvise(a + 8 * P, 8 * P, U.MADV_WILLNEED)
    assert sorted(k.fs.lookup("/big").mapping.pages) == list(range(8, 16))
    assert t.mm.rss[0] == 0  # read into the cache, not mapped
    maj = k.vmstat["pgmajfault"]
    t.access(a + 9 * P, False)
    assert k.vmstat["pgmajfault"] == maj


def test_madvise_random_disables_read_around(k, t):
    k.fs.create("/rnd", 64 * P)
    fd = t.open("/rnd")
    a = t.mmap(0, 64 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.madvise(a, 64 * P, U.MADV_RANDOM)
    t.access(a + 20 * P, False)
    assert list(k.fs.lookup("/rnd").mapping.pages) == [20]


def test_populate_flag(k, t):
    anon = t.mm.rss[1]
    t.mmap(B, 8 * P, RW, FIX | U.MAP_POPULATE)
    assert t.mm.rss[1] == anon + 8 and k.vmstat["fault_demand_zero"] >= 8


# --- placement: top-down search against a brute-force model ------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def highest_fit(mm, length, low):
    """The highest page-aligned start below mmap_base of a free range of `length`,
    keeping the guard gap below growsdown VMAs: brute force over the gaps."""
    best = -1
    prev_end = 0
    for v in list(mm.mm_mt.vmas) + [None]:
        gap_end = mm.mmap_base if v is None else min(
            mm.mmap_base, v.vm_start - (STACK_GUARD_GAP if v.vm_flags & 0x100 else 0))
        gap_start = max(prev_end, low)
        if gap_end - gap_start >= length:
            best = max(best, gap_end - length)
        if v is not None:
            prev_end = v.vm_end
    return best


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 64)), min_size=1, max_size=40))
def test_topdown_placement_matches_model(seq):
    k = boot()
    t = k.spawn("p")
    mapped = []
    for unmap, n in seq:
        if unmap and mapped:
            a, ln = mapped.pop(n % len(mapped))
            t.munmap(a, ln)
            continue
        want = highest_fit(t.mm, n * P, 0x10000)
        a = t.mmap(0, n * P, RW if n % 3 else R, ANON)
        assert a == want
        mapped.append((a, n * P))
    validate_mm(t.mm)


def test_madvise_remove_punches_shmem_hole(k, t):
    a = t.mmap(0, 4 * P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS)
    t.access_range(a, 4 * P, True, data=b"s" * P)
    child = k.tasks[t.fork()]
    child.access_range(a, 4 * P, False)
    assert k.vmstat["nr_shmem"] == 4
    t.madvise(a + P, 2 * P, U.MADV_REMOVE)
    assert k.vmstat["nr_shmem"] == 2 and child.mm.rss[3] == 2
    child.access(a + P, False)
    assert child.peek(a + P, 1) == b"\0" and child.peek(a, 1) == b"s"
    t.mmap(B, P, RW, FIX)
    with pytest.raises(OSError) as e:  # private anonymous: nothing to punch
        t.madvise(B, P, U.MADV_REMOVE)
    assert e.value.errno == U.EINVAL
    validate_mm(t.mm)
    validate_mm(child.mm)


# --- the vDSO (special mappings) ----------------------------------------------------------------
def _special(t):
    """{name: VMA} of the task's special mappings."""
    return {v.vm_ops.name(v): v for v in t.mm.mm_mt.vmas
            if v.vm_ops is not None and getattr(v.vm_ops, "fault", None)}


@pytest.mark.parametrize("arch, base", [("x86_64", 0x7FFFF7FFF000), ("i386", 0xB8000000)])
def test_execve_maps_vvar_vvar_vclock_and_vdso_below_mmap_base(arch, base):
    from guestkernel.vma import (
        VM_DONTDUMP,
        VM_DONTEXPAND,
        VM_EXEC,
        VM_IO,
        VM_MAYEXEC,
        VM_MAYREAD,
        VM_MAYWRITE,
        VM_PFNMAP,
        VM_READ,
        VM_SOFTDIRTY,
    )

    k = boot(arch=arch)
    c0 = k.committed_as
    t = k.spawn("t")
    mm = t.mm
    assert mm.mmap_base == base
    #   base-8P      base-4P  base-2P  base      (top-down, the last thing execve maps)
    #   [vvar 4 pages][vclock 2][vdso 2]
    sp = _special(t)
    assert {n: (v.vm_start, v.vm_end) for n, v in sp.items()} == {
        "[vvar]": (base - 8 * P, base - 4 * P),
        "[vvar_vclock]": (base - 4 * P, base - 2 * P),
        "[vdso]": (base - 2 * P, base)}
    assert mm.vdso == base - 2 * P
    data = VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP | VM_DONTEXPAND | VM_SOFTDIRTY
    assert sp["[vvar]"].vm_flags == sp["[vvar_vclock]"].vm_flags == data
    assert sp["[vdso]"].vm_flags == (VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
                                     | VM_DONTEXPAND | VM_SOFTDIRTY)
    assert all(v.vm_pgoff == 0 and v.vm_file is None for v in sp.values())
    # counted in total_vm (8 pages) and exec_vm (the 2 text pages), never charged
    assert mm.total_vm == (512 + 16 + 32 + 132) // 4 + 8
    assert mm.exec_vm == 512 // 4 + 2
    assert k.committed_as - c0 == (16 + 32 + 132) // 4  # data, bss, stack only
    smaps = k.procfs.read(f"/proc/{t.pid}/smaps")
    assert "VmFlags: rd mr pf io de dd sd \n" in smaps  # vvar, vvar_vclock
    assert "VmFlags: rd ex mr mw me de sd \n" in smaps  # vdso
    validate_mm(mm)


def test_vdso_cannot_grow_or_be_split_but_moves_and_unmaps_whole(k, t):
    sp = _special(t)
    vdso, vvar = sp["[vdso]"], sp["[vvar]"]
    lo, hi = vdso.vm_start, vdso.vm_end
    # VM_DONTEXPAND: mremap may not grow it
    with pytest.raises(OSError) as e:
        t.mremap(lo, 2 * P, 3 * P, U.MREMAP_MAYMOVE)
    assert e.value.errno == U.EFAULT
    # special_mapping_split: no partial munmap, mprotect or shrinking mremap
    for call in (lambda: t.munmap(lo, P), lambda: t.mprotect(hi - P, P, U.PROT_READ),
                 lambda: t.mremap(lo, 2 * P, P)):
        with pytest.raises(OSError) as e:
            call()
        assert e.value.errno == U.EINVAL
    assert (vdso.vm_start, vdso.vm_end) == (lo, hi)
    with pytest.raises(OSError) as e:  # VM_DONTEXPAND | VM_PFNMAP: [vvar] cannot grow
        t.mremap(vvar.vm_start, 4 * P, 5 * P, U.MREMAP_MAYMOVE)
    assert e.value.errno == U.EFAULT
    # vvar has no VM_MAYWRITE: mprotect to writable is refused
    with pytest.raises(OSError) as e:
        t.mprotect(vvar.vm_start, 4 * P, RW)
    assert e.value.errno == U.EACCES
    # mremap of the whole vDSO to another place is allowed (CRIU does it), same size
    new = t.mremap(lo, 2 * P, 2 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, B)
    assert new == B and t.mm.mm_mt.lookup(B).vm_ops.name(None) == "[vdso]"
    assert t.mm.vdso == B
    total = t.mm.total_vm
    assert t.munmap(vvar.vm_start, 4 * P) == 0
    assert t.mm.total_vm == total - 4 and "[vvar]" not in _special(t)
    validate_mm(t.mm)


def test_touching_the_vdso_maps_kernel_frames_not_anonymous_memory(k, t):
    # a call into __vdso_clock_gettime maps the vDSO's text page (a kernel-image page:
    # RssFile and nr_mapped, like a file page); it reads the time data in [vvar],
    # PFN-mapped (no struct page: no counter moves). RssAnon never changes.
    from guestkernel.memory import validate_pages

    sp = _special(t)
    vdso, vvar = sp["[vdso]"], sp["[vvar]"]
    rss = list(t.mm.rss)
    f0, a0, m0 = k.vmstat["fault_special"], k.vmstat["nr_anon_pages"], k.vmstat["nr_mapped"]
    t.access(vdso.vm_start, False, execute=True)
    t.access(vvar.vm_start, False)
    assert t.state == "running"
    assert k.vmstat["fault_special"] - f0 == 2
    assert t.mm.rss == [rss[0] + 1] + rss[1:]  # MM_FILEPAGES + 1
    assert k.vmstat["nr_anon_pages"] == a0 and k.vmstat["nr_mapped"] == m0 + 1
    status = k.procfs.read(f"/proc/{t.pid}/status")
    assert f"RssAnon:\t{rss[1] * 4:8d} kB\n" in status and "RssFile:\t       4 kB\n" in status
    page = k.vdso_pages[0]
    assert t.mm.pgtable.ptes[vdso.vm_start >> 12] >> 12 == page.pfn
    assert (page._count, page._mapcount) == (2, 0)  # the kernel's reference + one PTE
    # a child does not inherit the vDSO's PTEs (no anon_vma: it faults them again)
    child = k.tasks[t.fork()]
    assert child.mm.rss[0] == 0
    validate_pages(k)
    child.exit(0)
    t.munmap(vdso.vm_start, 2 * P)
    assert t.mm.rss == rss and k.vmstat["nr_mapped"] == m0 and page._count == 1
    validate_pages(k)
    validate_mm(t.mm)
    # a store into [vvar_vclock] (no VM_WRITE) is a protection fault
    t.access(sp["[vvar_vclock]"].vm_start, False)
    t.access(sp["[vvar_vclock]"].vm_start, True)
    assert t.state != "running" and t.term_signal == U.SIGSEGV and t.si_code == U.SEGV_ACCERR


def test_fork_copies_the_vdso_and_exec_maps_a_fresh_one(k, t):
    child = k.tasks[t.fork()]
    assert {n: (v.vm_start, v.vm_end) for n, v in _special(child).items()} == {
        n: (v.vm_start, v.vm_end) for n, v in _special(t).items()}
    assert child.mm.vdso == t.mm.vdso
    k.fs.create("/bin/sh", 0)
    child.execve("/bin/sh")
    assert len(_special(child)) == 3 and child.mm.vdso == child.mm.mmap_base - 2 * P
    validate_mm(child.mm)
    validate_mm(t.mm)


# --- a failed MAP_FIXED leaves the address space as it was ------------------------------------------
def _snapshot(k, t):
    """Everything a process can observe of its memory: maps, status, page contents."""
    pages = {v: t.peek(v << 12, P) for v in sorted(t.mm.pgtable.ptes)}
    return (k.procfs.read(f"/proc/{t.pid}/maps"), k.procfs.read(f"/proc/{t.pid}/status"),
            pages, list(t.mm.rss), k.committed_as)


def _strict():
    # mode 2, CommitLimit = 1% of RAM (~300 pages), no reserves
    return boot(overcommit_memory=2, overcommit_ratio=1, admin_reserve_kbytes=0,
                user_reserve_kbytes=0)


def test_failed_map_fixed_over_whole_vmas_leaves_maps_byte_identical():
    # aaaabb..    a: rw anonymous, written; b: read-only file mapping, read
    # mmap(B, 1 MiB, rw, MAP_FIXED) would replace both, but the commit charge fails:
    # __mmap_region only unmaps once the new VMA can be set up (vms_abort_munmap_vmas)
    k = _strict()
    t = k.spawn("t")
    t.mmap(B, 4 * P, RW, FIX)
    t.access_range(B, 4 * P, True, [bytes([i + 1]) * P for i in range(4)])
    k.fs.create("/data", 2 * P, content=b"f" * 2 * P)
    fd = t.open("/data")
    t.mmap(B + 4 * P, 2 * P, R, U.MAP_PRIVATE | U.MAP_FIXED, fd, 0)
    t.access_range(B + 4 * P, 2 * P, False)
    before = _snapshot(k, t)
    with pytest.raises(OSError) as e:
        t.mmap(B, 1 << 20, RW, FIX)
    assert e.value.errno == U.ENOMEM
    assert _snapshot(k, t) == before
    assert t.peek(B + 2 * P, 1) == b"\x03" and t.peek(B + 4 * P, 2) == b"ff"
    validate_mm(t.mm)


def test_failed_map_fixed_through_part_of_a_vma_keeps_its_pages_split_as_linux():
    # aaaaaaaa    mmap(B+2P, 1 MiB, rw, MAP_FIXED): the gather splits a at B+2P, the
    # charge fails, the pieces are reattached (not merged again):
    # aaAAAAAA    same pages, same contents, same rights, two VMAs
    k = _strict()
    t = k.spawn("t")
    t.mmap(B, 8 * P, RW, FIX)
    t.access_range(B, 8 * P, True, [bytes([i + 1]) * P for i in range(8)])
    pages, rss, c0 = dict(t.mm.pgtable.ptes), list(t.mm.rss), k.committed_as
    with pytest.raises(OSError) as e:
        t.mmap(B + 2 * P, 1 << 20, RW, FIX)
    assert e.value.errno == U.ENOMEM
    assert around(t) == [(0, 2, "rw"), (2, 8, "rw")]
    assert {v: pte for v, pte in t.mm.pgtable.ptes.items() if v in pages} == pages
    assert [t.peek(B + i * P, 1)[0] for i in range(8)] == list(range(1, 9))
    assert t.mm.rss == rss and k.committed_as == c0
    validate_mm(t.mm)


def test_map_fixed_counts_only_net_growth_against_rlimit_as(k, t):
    # aaaa    RLIMIT_AS = total_vm + 2 pages: replacing a (4 pages) by 6 pages is 2 more
    #         (may_expand_vm(pglen - vms.nr_pages)); 7 pages is 3 more: ENOMEM, a intact
    t.mmap(B, 4 * P, RW, FIX)
    t.access(B, True, b"x" * P)
    t.setrlimit(U.RLIMIT_AS, (t.mm.total_vm + 2) * P)
    before = _snapshot(k, t)
    with pytest.raises(OSError) as e:
        t.mmap(B, 7 * P, RW, FIX)
    assert e.value.errno == U.ENOMEM
    assert _snapshot(k, t) == before
    assert t.mmap(B, 6 * P, RW, FIX) == B
    assert around(t) == [(0, 6, "rw")] and t.peek(B, 1) == b"\0"  # replaced: fresh zeros
    validate_mm(t.mm)


def test_map_fixed_over_a_charged_range_charges_only_the_difference():
    # aaaa (charged 4 pages) replaced by a charged 4-page mapping: charged = pglen -
    # vms.nr_accounted = 0, so it succeeds even with Committed_AS at the limit, and
    # Committed_AS does not move; a read-only replacement returns the 4 pages
    k = _strict()
    t = k.spawn("t")
    t.mmap(B, 4 * P, RW, FIX)
    # fill the commit limit: a one-page writable mapping at a time until refused
    while True:
        try:
            t.mmap(0, P, RW, ANON)
        except OSError:
            break
    c0 = k.committed_as
    with pytest.raises(OSError):
        t.mmap(B + 8 * P, P, RW, FIX)  # a fresh charge is refused
    assert t.mmap(B, 4 * P, RW, FIX) == B
    assert k.committed_as == c0 == committed(k)
    assert t.mmap(B, 4 * P, R, FIX) == B
    assert k.committed_as == c0 - 4 == committed(k)
    validate_mm(t.mm)


# --- RLIMIT_DATA ------------------------------------------------------------------------------------------
def test_rlimit_data_limits_brk_and_private_writable_mappings(k, t):
    # data_vm = data 4 + bss 8 pages; RLIMIT_DATA = 16 pages leaves 4 (may_expand_vm)
    mm = t.mm
    assert mm.data_vm == 12
    t.setrlimit(U.RLIMIT_DATA, 16 * P)
    start = t.brk(0)
    assert t.brk(start + 5 * P) == start  # 17 pages of data: refused, brk unchanged
    assert t.brk(start + 3 * P) == start + 3 * P  # 15
    with pytest.raises(OSError) as e:
        t.mmap(0, 2 * P, RW, ANON)  # 17
    assert e.value.errno == U.ENOMEM
    assert t.mmap(B, P, RW, FIX) == B  # 16: exactly the limit
    assert mm.data_vm == 16
    # not data mappings: read-only, shared, stack (growsdown) and read-only file mappings
    assert t.mmap(0, 8 * P, R, ANON) > 0
    assert t.mmap(0, 8 * P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS) > 0
    assert t.mmap(0, 8 * P, RW, ANON | U.MAP_GROWSDOWN) > 0
    k.fs.create("/f", 8 * P)
    fd = t.open("/f", U.O_RDWR)
    assert t.mmap(0, 8 * P, R, U.MAP_PRIVATE, fd, 0) > 0
    with pytest.raises(OSError) as e:
        t.mmap(0, P, RW, U.MAP_PRIVATE, fd, 0)  # a private writable file mapping is data
    assert e.value.errno == U.ENOMEM
    assert t.mmap(0, P, RW, U.MAP_SHARED, fd, 0) > 0
    # mprotect turning a read-only mapping into data is refused over the limit
    a = t.mmap(0, P, R, ANON)
    with pytest.raises(OSError) as e:
        t.mprotect(a, P, RW)
    assert e.value.errno == U.ENOMEM
    assert mm.data_vm == 16
    validate_mm(mm)


def test_brk_checks_heap_plus_data_segment_even_when_shrinking(k, t):
    # check_data_rlimit runs before the shrink path: (brk - start_brk) + (end_data -
    # start_data) must fit, so with the limit lowered to the data segment alone (16 KiB)
    # even a shrinking brk that keeps some heap is refused; brk(start_brk) is allowed
    start = t.brk(0)
    t.brk(start + 8 * P)
    t.setrlimit(U.RLIMIT_DATA, 16 << 10)
    assert t.brk(start + 4 * P) == start + 8 * P
    assert t.brk(start + 1) == start + 8 * P  # one byte over: the check is on bytes
    assert t.brk(start) == start
    validate_mm(t.mm)


def test_rlimit_data_zero_soft_limit_is_valgrinds_exception(k, t):
    # soft limit 0 with a larger hard limit: allowed up to the hard limit
    t.setrlimit(U.RLIMIT_DATA, 0, 14 * P)
    assert t.mmap(0, 2 * P, RW, ANON) > 0  # data_vm 14
    with pytest.raises(OSError) as e:
        t.mmap(0, P, RW, ANON)
    assert e.value.errno == U.ENOMEM


def test_rlimit_data_limits_mremap_growth_but_not_stack_growth(k, t):
    t.setrlimit(U.RLIMIT_DATA, 14 * P)
    a = t.mmap(B, 2 * P, RW, FIX)  # data_vm 14
    with pytest.raises(OSError) as e:
        t.mremap(a, 2 * P, 3 * P, U.MREMAP_MAYMOVE)
    assert e.value.errno == U.ENOMEM
    # the stack is not data: it still grows on a fault below it
    stack = t.mm.mm_mt.vmas[-1]
    s0, data = stack.vm_start, t.mm.data_vm
    t.access(s0 - P, True)
    assert t.state == "running" and stack.vm_start == s0 - P and t.mm.data_vm == data


# --- mremap MREMAP_DONTUNMAP --------------------------------------------------------------------------
def _status_kb(k, t, key):
    for line in k.procfs.read(f"/proc/{t.pid}/status").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def test_mremap_dontunmap_moves_pages_and_lock_keeps_both_charges(k, t):
    # before   B: LLLL (4 pages, mlocked, written)          C: ....
    # after    B: oooo (VMA kept, empty, unlocked)          C: LLLL (the pages, locked)
    from guestkernel.vma import VM_LOCKED

    C = B + 32 * P
    t.mmap(B, 4 * P, RW, FIX)
    t.access_range(B, 4 * P, True, [bytes([i + 1]) * P for i in range(4)])
    t.mlock(B, 4 * P)
    mm = t.mm
    lck, total, c0, rss = _status_kb(k, t, "VmLck"), mm.total_vm, k.committed_as, list(mm.rss)
    assert lck == 16
    assert t.mremap(B, 4 * P, 4 * P, U.MREMAP_MAYMOVE | U.MREMAP_DONTUNMAP | U.MREMAP_FIXED, C) == C
    old, new = mm.mm_mt.lookup(B), mm.mm_mt.lookup(C)
    assert (old.vm_start, old.vm_end, new.vm_start, new.vm_end) == (B, B + 4 * P, C, C + 4 * P)
    assert not old.vm_flags & VM_LOCKED and old.vm_flags & VM_ACCOUNT
    assert new.vm_flags & VM_LOCKED and new.vm_flags & VM_ACCOUNT
    # locked_vm moved to the new VMA: VmLck unchanged; Committed_AS: the new VMA is
    # charged for all of it (to_account = new_len), the old one keeps its charge
    assert _status_kb(k, t, "VmLck") == 16 and mm.locked_vm == 4
    assert k.committed_as == c0 + 4 == committed(k)
    assert mm.total_vm == total + 4
    # the pages went with the PTEs: same RSS, data at C, nothing mapped at B
    assert mm.rss == rss
    assert [t.peek(C + i * P, 1)[0] for i in range(4)] == [1, 2, 3, 4]
    assert not any(B >> 12 <= v < (B >> 12) + 4 for v in mm.pgtable.ptes)
    assert old.anon_vma is None and old.anon_vma_chain == []  # unlink_anon_vmas
    t.access(B, False)
    assert t.peek(B, 1) == b"\0" and mm.rss == rss  # a read there maps the zero page
    validate_mm(mm)
    # unmapping the old VMA returns its charge and leaves VmLck alone
    t.munmap(B, 4 * P)
    assert k.committed_as == c0 == committed(k) and _status_kb(k, t, "VmLck") == 16
    validate_mm(mm)


def test_mremap_dontunmap_of_part_of_a_locked_vma_unlocks_all_of_it(k, t):
    # LLLLLLLL  mremap [2,4) DONTUNMAP to C: dontunmap_complete clears VM_LOCKED on the
    # whole old VMA, yet locked_vm (VmLck) stays 8 pages: 2 for the new VMA and 6 that
    # Linux keeps counting for pages no VM_LOCKED VMA holds any more
    from guestkernel.vma import VM_LOCKED

    C = B + 32 * P
    t.mmap(B, 8 * P, RW, FIX)
    t.mlock(B, 8 * P)
    mm = t.mm
    assert t.mremap(B + 2 * P, 2 * P, 2 * P, U.MREMAP_MAYMOVE | U.MREMAP_DONTUNMAP
                    | U.MREMAP_FIXED, C) == C
    assert around(t) == [(0, 8, "rw"), (32, 34, "rw")]
    assert not mm.mm_mt.lookup(B).vm_flags & VM_LOCKED
    assert mm.mm_mt.lookup(C).vm_flags & VM_LOCKED
    assert _status_kb(k, t, "VmLck") == 32 and mm.locked_vm_orphaned == 6
    assert mm.mm_mt.lookup(B).anon_vma is not None  # not all of it moved: links kept
    validate_mm(mm)


def test_mremap_dontunmap_rules(k, t):
    t.mmap(B, 4 * P, RW, FIX)
    # old_len must equal new_len, and MREMAP_MAYMOVE is required
    for args in ((B, 4 * P, 8 * P, U.MREMAP_MAYMOVE | U.MREMAP_DONTUNMAP),
                 (B, 4 * P, 4 * P, U.MREMAP_DONTUNMAP)):
        with pytest.raises(OSError) as e:
            t.mremap(*args)
        assert e.value.errno == U.EINVAL
    # it maps old_len more: RLIMIT_AS counts it (may_expand_vm in mremap_to)
    t.setrlimit(U.RLIMIT_AS, (t.mm.total_vm + 3) * P)
    before = _snapshot(k, t)
    with pytest.raises(OSError) as e:
        t.mremap(B, 4 * P, 4 * P, U.MREMAP_MAYMOVE | U.MREMAP_DONTUNMAP)
    assert e.value.errno == U.ENOMEM
    assert _snapshot(k, t) == before
    t.setrlimit(U.RLIMIT_AS, (t.mm.total_vm + 4) * P)
    a = t.mremap(B, 4 * P, 4 * P, U.MREMAP_MAYMOVE | U.MREMAP_DONTUNMAP)
    assert a != B and t.mm.mm_mt.lookup(a).vm_end == a + 4 * P
    validate_mm(t.mm)


def test_mremap_move_does_not_raise_vmpeak(k, t):
    # move_vma raises total_vm for a moment (old + new) and restores hiwater_vm after
    t.mmap(B, 4 * P, RW, FIX)
    peak = _status_kb(k, t, "VmPeak")
    t.mremap(B, 4 * P, 4 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, B + 32 * P)
    assert _status_kb(k, t, "VmPeak") == peak == _status_kb(k, t, "VmSize")
