"""MADV_COLD and MADV_PAGEOUT as mm/madvise.c's madvise_cold_or_pageout_pte_range:
deactivate or reclaim the pages this process alone maps, EINVAL on locked VMAs."""

import json
from pathlib import Path

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page import PG_active, PG_referenced, PG_workingset
from guestkernel.pgtable import _PAGE_ACCESSED, _PAGE_PRESENT
from guestkernel.vmscan import LRU_INACTIVE_ANON, init_reclaim

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS


def guest():
    # the 2.6 era: new anonymous pages start active, so MADV_COLD has something to move
    k = Kernel(KernelConfig(memory="64MiB", swap="32MiB", era="2.6"))
    init_reclaim(k)
    if 1 not in k.tasks:
        k.spawn("init")
    return k, k.spawn("app")


def pages_of(k, t, a, n):
    ptes = t.mm.pgtable.ptes
    return [k.pfn_to_page(ptes[(a >> 12) + i] >> 12) for i in range(n)]


def test_madv_cold_deactivates_to_the_inactive_head_and_clears_young():
    """folio_deactivate: an active page goes to the head of its inactive list
    (pgdeactivate, the course's arc 2 for an anonymous page), PG_referenced and the PTE's
    accessed bit cleared, PG_workingset set (it was active)."""
    k, t = guest()
    a = t.mmap(0, 8 * P, RW, ANON)
    t.access_range(a, 8 * P, True)
    pages = pages_of(k, t, a, 8)
    assert all(p.flags & PG_active for p in pages)
    d0, arc2 = k.vmstat["pgdeactivate"], k.vmstat["pgstate_2"]
    assert t.madvise(a, 4 * P, U.MADV_COLD) == 0
    lv = k.reclaim.lruvecs[0]
    assert [p for p in lv.lists[LRU_INACTIVE_ANON]][:4] == pages[3::-1]  # head: the last moved
    assert all(not p.flags & (PG_active | PG_referenced) and p.flags & PG_workingset for p in pages[:4])
    assert all(p.flags & PG_active for p in pages[4:])
    ptes = t.mm.pgtable.ptes
    assert all(not ptes[(a >> 12) + i] & _PAGE_ACCESSED for i in range(4))
    assert (k.vmstat["pgdeactivate"] - d0, k.vmstat["pgstate_2"] - arc2) == (4, 4)
    assert k.vmstat["pswpout"] == 0  # nothing reclaimed
    k.reclaim.validate()


def test_madv_pageout_swaps_out_exclusive_anon_pages_only():
    """reclaim_pages on the pages mapped once: written to swap (pswpout), their PTEs
    swap entries; a page also mapped by a forked child is left alone."""
    k, t = guest()
    a = t.mmap(0, 8 * P, RW, ANON)
    t.access_range(a, 8 * P, True)
    child = k.tasks[t.fork()]
    t.access_range(a + 4 * P, 4 * P, True)  # copy-on-write: pages 4..7 exclusive again
    rss = t.mm.rss[1]
    assert t.madvise(a, 8 * P, U.MADV_PAGEOUT) == 0
    ptes = t.mm.pgtable.ptes
    present = [bool(ptes[(a >> 12) + i] & _PAGE_PRESENT) for i in range(8)]
    assert present == [True] * 4 + [False] * 4
    assert k.vmstat["pswpout"] == 4 and t.mm.rss[1] == rss - 4
    cptes = child.mm.pgtable.ptes
    assert all(cptes[(a >> 12) + i] & _PAGE_PRESENT for i in range(4))  # shared: untouched
    t.access_range(a + 4 * P, P, False)  # swapped back in
    assert ptes[(a >> 12) + 4] & _PAGE_PRESENT and k.vmstat["pswpin"] >= 1
    k.reclaim.validate()


def test_madv_pageout_frees_clean_file_pages():
    k, t = guest()
    k.fs.create("/f", 8 * P, b"x" * (8 * P))
    fd = t.open("/f")
    m = t.mmap(0, 8 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.access_range(m, 8 * P, False)
    inode = k.fs.lookup("/f")
    mapped = [i for i in range(8) if (m >> 12) + i in t.mm.pgtable.ptes]
    assert t.madvise(m, 8 * P, U.MADV_PAGEOUT) == 0
    assert not any(i in inode.mapping.pages for i in mapped)
    k.reclaim.validate()


@pytest.mark.parametrize("advice", [U.MADV_COLD, U.MADV_PAGEOUT])
def test_locked_vma_is_einval(advice):
    """can_madv_lru_vma: VM_LOCKED, VM_PFNMAP and VM_HUGETLB VMAs -> EINVAL."""
    k, t = guest()
    a = t.mmap(0, 4 * P, RW, ANON)
    t.mlock(a, 4 * P)
    with pytest.raises(OSError) as e:
        t.madvise(a, 4 * P, advice)
    assert e.value.errno == U.EINVAL


PAGEOUT = json.loads((Path(__file__).parent.parent / "data" / "madvise" / "pageout_restore.json").read_text())


def test_madv_pageout_of_active_file_pages_as_this_machines_kernel():
    """MADV_PAGEOUT of active, mapped file pages, then a read() of the file, as recorded by
    tests/data/madvise/measure_pageout_restore.py (Linux 6.18, /proc/vmstat deltas, five
    runs). reclaim_pages only clears PG_active (folio_clear_active): no pgdeactivate. The
    pages are evicted PG_workingset (madvise_cold_or_pageout_pte_range marks an active
    folio workingset, 6.18): their refaults are activations and restores. The recording
    machine's active file list holds gigabytes, so every refault distance is within the
    workingset; the guest gets one too (a 2048-page file read twice)."""
    runs = PAGEOUT["runs"]
    n = PAGEOUT["file_pages"]
    for run in runs:
        pageout, read = run
        assert pageout["cached"] == 0 and read["cached"] == n
        assert pageout["delta"] == {"workingset_refault_file": 0, "workingset_activate_file": 0,
                                    "workingset_restore_file": 0, "pgdeactivate": 0}
        # (global counters: other processes' refaults may add a few)
        assert read["delta"]["workingset_restore_file"] > n // 2
    k = Kernel(KernelConfig(memory="256MiB"))
    init_reclaim(k)
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("t")
    buf = t.mmap(0, 1 << 16, RW, ANON)
    hot = k.fs.create("/hot", 2048 * P)
    fh = t.open("/hot")
    inode = k.fs.create("/f", n * P, lambda i: b"\x5a" * P)
    fd = t.open("/f")
    m = t.mmap(0, n * P, U.PROT_READ, U.MAP_SHARED, fd, 0)

    def read_all(f):
        t.lseek(f, 0, U.SEEK_SET)
        while t.read(f, buf, 1 << 16):
            pass

    for f in (fh, fh, fd, fd):  # read() twice: the second touch activates
        read_all(f)
    assert len(hot.mapping.pages) == 2048
    t.access_range(m, n * P, False)
    names = ("workingset_refault_file", "workingset_activate_file", "workingset_restore_file",
             "pgdeactivate")
    vm = k.vmstat
    before = {c: vm[c] for c in names}
    assert t.madvise(m, n * P, U.MADV_PAGEOUT) == 0
    assert len(inode.mapping.pages) == 0
    assert {c: vm[c] - before[c] for c in names} == dict.fromkeys(names, 0)
    before = {c: vm[c] for c in names}
    read_all(fd)
    assert len(inode.mapping.pages) == n
    assert {c: vm[c] - before[c] for c in names} == {
        "workingset_refault_file": n, "workingset_activate_file": n,
        "workingset_restore_file": n, "pgdeactivate": 0}
    k.reclaim.validate()


def test_madv_cold_in_6x_moves_active_pages_only():
    """6.x: a new anonymous page starts inactive (lru_cache_add_inactive_or_unevictable), so
    MADV_COLD only clears its PTE's young bit and PG_referenced; deactivate_page ->
    lru_deactivate_fn moves a page only if it is active (to the head of the inactive list,
    PG_active and PG_referenced cleared, PGDEACTIVATE per page)."""
    k = Kernel(KernelConfig(memory="64MiB", swap="32MiB"))
    init_reclaim(k)
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("app")
    a = t.mmap(0, 8 * P, RW, ANON)
    t.access_range(a, 8 * P, True)
    pages = pages_of(k, t, a, 8)
    lv = k.reclaim.lruvecs[0]
    assert not any(p.flags & PG_active for p in pages)
    for p in pages[4:]:
        k.reclaim.activate_page(p)
    inactive = list(lv.lists[LRU_INACTIVE_ANON])
    d0 = k.vmstat["pgdeactivate"]
    assert t.madvise(a, 8 * P, U.MADV_COLD) == 0
    assert k.vmstat["pgdeactivate"] - d0 == 4
    ptes = t.mm.pgtable.ptes
    assert not any(ptes[(a >> 12) + i] & _PAGE_ACCESSED for i in range(8))
    assert not any(p.flags & (PG_active | PG_referenced) for p in pages)
    # the four active ones at the head in the order they were moved; the others where they were
    assert list(lv.lists[LRU_INACTIVE_ANON]) == pages[7:3:-1] + inactive
    k.reclaim.validate()
