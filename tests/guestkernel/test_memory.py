"""memory.py: rmap, anon_vma reuse, reclaim helpers, KSM scan order, page accounting."""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import (
    ksm_scan_order,
    page_referenced,
    rmap_walk,
    try_to_unmap,
)
from guestkernel.page import PG_anon, PG_dirty
from guestkernel.pgtable import _PAGE_ACCESSED
from guestkernel.vma import validate_mm

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
FIX = U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED
B = 0x18000000


def page_at(k, t, addr):
    return k.mem_map[t.mm.pgtable.ptes[addr >> 12] >> 12]


def test_anon_page_rmap_fields(k, t):
    t.mmap(B, 2 * P, RW, FIX)
    t.access(B + P, True)
    page = page_at(k, t, B + P)
    vma = t.mm.mm_mt.lookup(B)
    assert page.flags & PG_anon and page.mapping is vma.anon_vma
    assert page.index == (B + P) >> 12  # private anon: vm_pgoff = addr >> PAGE_SHIFT
    assert page.page_mapcount() == 1 and page._count == 1


def test_rmap_walk_after_mremap_move(k, t):
    t.mmap(B, 2 * P, RW, FIX)
    t.access(B + P, True)
    page = page_at(k, t, B + P)
    new = t.mremap(B, 2 * P, 2 * P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, B + 64 * P)
    seen = []
    rmap_walk(k, page, lambda mm, vma, addr: seen.append(addr))
    assert seen == [new + P]
    validate_mm(t.mm)


def test_file_page_rmap_through_i_mmap(k, t):
    k.fs.create("/f", 8 * P)
    fd = t.open("/f")
    a = t.mmap(0, 8 * P, U.PROT_READ, U.MAP_SHARED, fd, 0)
    b = t.mmap(0, 4 * P, U.PROT_READ, U.MAP_SHARED, fd, 4 * P)
    t.access(a + 5 * P, False)
    t.access(b + P, False)
    page = k.fs.lookup("/f").mapping.pages[5]
    seen = []
    rmap_walk(k, page, lambda mm, vma, addr: seen.append(addr))
    assert sorted(seen) == sorted([a + 5 * P, b + P])
    assert page.page_mapcount() == 2 and page._count == 3  # cache + 2 PTEs


def test_find_mergeable_anon_vma_lets_vmas_merge_later(k, t):
    # aa bb  (bb is rw + exec): separate VMAs. Touching both: bb reuses aa's anon_vma,
    # so after mprotect(bb, rw) the two merge.
    t.mmap(B, 2 * P, RW, FIX)
    t.mmap(B + 2 * P, 2 * P, RW | U.PROT_EXEC, FIX)
    t.access(B, True)
    t.access(B + 2 * P, True)
    v1, v2 = t.mm.mm_mt.lookup(B), t.mm.mm_mt.lookup(B + 2 * P)
    assert v1 is not v2 and v1.anon_vma is v2.anon_vma
    t.mprotect(B + 2 * P, 2 * P, RW)
    assert t.mm.mm_mt.lookup(B).vm_end == B + 4 * P
    validate_mm(t.mm)


def test_different_anon_vmas_do_not_merge(k, t):
    # after fork, the child's VMAs are chained to two anon_vmas: a neighbour with no
    # anon_vma may not merge into them
    t.mmap(B, 2 * P, RW, FIX)
    t.access(B, True)
    child = k.tasks[t.fork()]
    child.mmap(B + 2 * P, 2 * P, RW, FIX)
    assert child.mm.mm_mt.lookup(B).vm_end == B + 2 * P
    assert child.mm.mm_mt.lookup(B + 2 * P).vm_start == B + 2 * P
    validate_mm(child.mm)


def test_page_referenced_clears_accessed(k, t):
    t.mmap(B, P, RW, FIX)
    t.access(B, True)
    page = page_at(k, t, B)
    assert page_referenced(k, page)[0] == 1
    assert not t.mm.pgtable.ptes[B >> 12] & _PAGE_ACCESSED
    assert page_referenced(k, page)[0] == 0
    t.access(B, False)
    assert page_referenced(k, page)[0] == 1


def test_try_to_unmap_file_page_dirties_it(k, t):
    k.fs.create("/g", 2 * P)
    fd = t.open("/g", U.O_RDWR)
    a = t.mmap(0, 2 * P, RW, U.MAP_SHARED, fd, 0)
    t.access(a, True)
    page = k.fs.lookup("/g").mapping.pages[0]
    assert try_to_unmap(k, page)
    assert page.flags & PG_dirty and page.page_mapcount() == 0 and page._count == 1
    assert t.mm.rss[0] == 0
    validate_mm(t.mm)


def test_try_to_unmap_refuses_mlocked(k, t):
    t.mmap(B, P, RW, FIX)
    t.mlock(B, P)
    page = page_at(k, t, B)
    page._count += 1
    assert not try_to_unmap(k, page, swap_entry=5)
    assert t.mm.pgtable.ptes[B >> 12] >> 12 == page.pfn
    with pytest.raises(ValueError):
        try_to_unmap(k, page)


def test_ksm_scan_order_only_mergeable(k, t):
    t.mmap(B, 3 * P, RW, FIX)
    t.access_range(B, 3 * P, True)
    u = k.spawn("u")
    u.mmap(B, 2 * P, RW, FIX)
    u.access_range(B, 2 * P, True)
    assert list(ksm_scan_order(k)) == []
    t.madvise(B + P, 2 * P, U.MADV_MERGEABLE)
    u.madvise(B, 2 * P, U.MADV_MERGEABLE)
    order = [(task.pid, addr) for task, addr, _ in ksm_scan_order(k)]
    assert order == [(t.pid, B + P), (t.pid, B + 2 * P), (u.pid, B), (u.pid, B + P)]


def test_node_counters_follow_mappings(k, t):
    vm = k.vmstat
    anon0, mapped0 = vm["nr_anon_pages"], vm["nr_mapped"]
    t.mmap(B, 4 * P, RW, FIX)
    t.access_range(B, 4 * P, True)
    assert vm["nr_anon_pages"] == anon0 + 4
    child = k.tasks[t.fork()]
    assert vm["nr_anon_pages"] == anon0 + 4  # pages mapped twice still count once
    child.exit(0)
    t.munmap(B, 4 * P)
    assert vm["nr_anon_pages"] == anon0 and vm["nr_mapped"] == mapped0


# --- property test: page references stay consistent under fork/write/unmap/exit ------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guestkernel.memory import validate_pages  # noqa: E402

NP = 16
step = st.tuples(st.sampled_from(["fork", "write", "read", "exit", "dontneed", "munmap",
                                  "mprotect_ro", "mprotect_rw", "remap", "fileread",
                                  "filewrite"]),
                 st.integers(0, 7), st.integers(0, NP - 1), st.integers(1, 4))


@pytest.fixture(scope="module")
def kmod():
    k = Kernel(KernelConfig(memory="64MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    k.fs.create("/shared.bin", NP * P)
    return k


@settings(max_examples=40, deadline=None)
@given(st.lists(step, min_size=1, max_size=30))
def test_random_ops_keep_page_references(kmod, steps):
    k = kmod
    root = k.spawn("root")
    root.mmap(B, NP * P, RW, FIX)
    fd = root.open("/shared.bin", U.O_RDWR)
    f = root.mmap(B + 2 * NP * P, NP * P, RW, U.MAP_SHARED | U.MAP_FIXED, fd, 0)
    procs = [root]
    try:
        for op, who, page, n in steps:
            procs = [p for p in procs if p.state == "running"]
            if not procs:
                break
            t = procs[who % len(procs)]
            addr = B + page * P
            n = min(n, NP - page)
            try:
                if op == "fork" and len(procs) < 6:
                    procs.append(k.tasks[t.fork()])
                elif op == "write":
                    t.access_range(addr, n * P, True)
                elif op == "read":
                    t.access_range(addr, n * P, False)
                elif op == "fileread":
                    t.access_range(f + page * P, n * P, False)
                elif op == "filewrite":
                    t.access_range(f + page * P, n * P, True)
                elif op == "exit" and t is not root:
                    t.exit(0)
                elif op == "dontneed":
                    t.madvise(addr, n * P, U.MADV_DONTNEED)
                elif op == "munmap":
                    t.munmap(addr, n * P)
                elif op == "mprotect_ro":
                    t.mprotect(addr, n * P, U.PROT_READ)
                elif op == "mprotect_rw":
                    t.mprotect(addr, n * P, RW)
                elif op == "remap":
                    t.mremap(addr, P, P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED, B + (NP + page) * P)
            except OSError:
                pass  # ENOMEM on holes, EFAULT on unmapped: fine, state must stay sound
            for p in procs:
                if p.mm is not None:
                    validate_mm(p.mm)
            validate_pages(k)
    finally:
        for p in procs:
            p.exit(0)
        root.exit(0)
    validate_pages(k)


def test_lru_hooks_see_every_user_page(k, t):
    added, deleted, accessed = [], [], []
    real_add, real_del = k.lru_cache_add, k.lru_del
    k.lru_cache_add = lambda p: (added.append(p.pfn), real_add(p))
    k.lru_del = lambda p: (deleted.append(p.pfn), real_del(p))
    k.mark_page_accessed = lambda p: accessed.append(p.pfn)
    t.mmap(B, 4 * P, RW, FIX)
    t.access_range(B, 4 * P, True)
    k.fs.create("/h", 2 * P)
    fd = t.open("/h")
    buf = B
    t.read(fd, buf, 2 * P)  # the cache pages: added; read() marks them accessed
    cache = [p.pfn for p in k.fs.lookup("/h").mapping.pages.values()]
    assert sorted(accessed) == sorted(cache)
    assert sorted(added) == sorted([t.mm.pgtable.ptes[(B >> 12) + i] >> 12 for i in range(4)]
                                   + cache)
    t.munmap(B, 4 * P)
    assert sorted(deleted) == sorted(added[:4])  # off the LRU before being freed
