"""Splitting and collapsing shmem THPs across their mappings (Linux 6.1).

split_huge_page -> unmap_folio: a file folio is unmapped with try_to_unmap(TTU_SPLIT_HUGE_PMD
| TTU_IGNORE_MLOCK), not with migration entries, and remap_page restores only anon folios:
after a shmem split no PTE maps any of its subpages, mlocked or not, and later accesses
refault them by PTEs. __split_huge_page_tail gives every tail the head's PG_dirty.
mlock_vma_folio: a PTE mapping of a large folio does not mlock it, a PMD mapping does.
collapse_file unmaps the small pages with try_to_unmap(TTU_IGNORE_MLOCK): VM_LOCKED VMAs
are collapsed too.
"""

from __future__ import annotations

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.page import PG_dirty
from guestkernel.page_alloc import validate_buddy
from guestkernel.pgtable import _PAGE_PSE, MM_SHMEMPAGES
from guestkernel.vma import validate_mm

P = 4096
H = 2 << 20
BASE = 0x40000000  # 2 MiB-aligned
D = "/sys/kernel/mm/transparent_hugepage"


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    kw.setdefault("thp_shmem_enabled", "always")
    return Kernel(KernelConfig(**kw))


def meminfo(k) -> dict:
    return {ln.split(":")[0]: int(ln.split()[1]) for ln in k.procfs.read("/proc/meminfo").splitlines()}


def check(k) -> None:
    for t in k.tasks.values():
        if t.mm is not None:
            validate_mm(t.mm)
    validate_pages(k)
    validate_buddy(k.page_alloc)


def shm_pair(k, size=H):
    """One SysV segment: task a attaches it 2 MiB-aligned (PMD-mapped when huge), task b
    one page off (its PTEs map the subpages)."""
    a = k.spawn("a")
    sid = a.shmget(U.IPC_PRIVATE, size, U.IPC_CREAT | 0o600)
    assert a.shmat(sid, BASE) == BASE
    b = k.spawn("b")
    assert b.shmat(sid, BASE + H + P) == BASE + H + P
    return a, b, sid


def test_split_unmaps_every_pte_of_the_folio_and_the_pages_refault():
    # a PMD-maps the folio, b maps its 512 subpages by PTEs (unaligned: do_set_pmd cannot).
    # MADV_REMOVE of one page in a: its PMD is zapped (a file PMD is cleared), the hole
    # punched (shmem_undo_range splits the folio it cuts) and unmap_folio's try_to_unmap
    # takes b's 512 PTEs too; remap_page restores none (a file folio). b's next access
    # faults again and finds the data in the 511 remaining order-0 pages.
    k = boot()
    a, b, _ = shm_pair(k)
    m0 = meminfo(k)
    for i in range(512):
        a.access(BASE + i * P, True, (i + 1).to_bytes(4, "little"))
    for i in range(512):
        b.access(BASE + H + P + i * P, False)
    assert a.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    assert b.mm.rss[MM_SHMEMPAGES] == 512 and meminfo(k)["ShmemHugePages"] == 2048
    assert meminfo(k)["Mapped"] - m0["Mapped"] == 2048
    a.madvise(BASE + 3 * P, P, U.MADV_REMOVE)
    assert k.vmstat["thp_split_page"] == 1 and meminfo(k)["ShmemHugePages"] == 0
    assert a.mm.rss[MM_SHMEMPAGES] == 0 and b.mm.rss[MM_SHMEMPAGES] == 0
    assert meminfo(k)["Mapped"] == m0["Mapped"]  # NR_FILE_MAPPED: nothing maps them now
    bptes = b.mm.pgtable.ptes
    assert not any((BASE + H + P >> 12) + i in bptes for i in range(512))
    assert meminfo(k)["Shmem"] - m0["Shmem"] == 511 * 4
    f0 = k.vmstat["pgfault"]
    b.access(BASE + H + P + 200 * P, False)
    assert k.vmstat["pgfault"] - f0 == 1  # a refault (fault_file_minor)
    assert b.peek(BASE + H + P + 200 * P, 4) == (201).to_bytes(4, "little")
    assert b.peek(BASE + H + P + 3 * P, 4) == bytes(4)  # the hole
    check(k)


def test_split_gives_every_subpage_the_folio_dirty_bit():
    # write(2) of 8 bytes at offset 0 into a 2 MiB memfd takes a huge folio
    # (shmem_write_begin) and dirties it (folio_mark_dirty: the folio's one PG_dirty);
    # a truncate to 2 MiB - 4 KiB cuts it: split_huge_page, and __split_huge_page_tail
    # copies the head's PG_dirty to each tail: the 511 pages left are all dirty
    k = boot()
    t = k.spawn("t")
    fd = t.memfd_create("d")
    t.ftruncate(fd, H)
    buf = t.mmap(0, P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access(buf, True, b"dirtyone")
    assert t.write(fd, buf, 8) == 8
    inode = t.files[fd].inode
    assert inode.mapping.pages[0].pfn in k.thp.shmem_folios
    t.ftruncate(fd, H - P)
    assert k.vmstat["thp_split_page"] == 1
    pages = inode.mapping.pages
    assert len(pages) == 511 and all(pages[i].flags & PG_dirty for i in range(511))
    check(k)


def test_a_pte_mapped_shmem_thp_is_not_mlocked_and_its_split_pages_refault_mlocked():
    # b mlocks its unaligned mapping: mlock populates the 512 subpages by PTEs, and
    # mlock_vma_folio does not mlock a large folio mapped by a PTE (Mlocked 0); a's PMD
    # in a locked VMA would (compound). MADV_REMOVE of a page in a splits the folio:
    # TTU_IGNORE_MLOCK unmaps b's locked PTEs too; b's refaults map order-0 pages,
    # which mlock_vma_folio mlocks, one page each
    k = boot()
    a, b, _ = shm_pair(k)
    assert b.mlock(BASE + H + P, H) == 0
    assert b.mm.rss[MM_SHMEMPAGES] == 512 and meminfo(k)["ShmemHugePages"] == 2048
    assert meminfo(k)["Mlocked"] == 0
    a.madvise(BASE + 3 * P, P, U.MADV_REMOVE)
    assert k.vmstat["thp_split_page"] == 1
    assert b.mm.rss[MM_SHMEMPAGES] == 0 and meminfo(k)["Mlocked"] == 0
    for i in (0, 1, 2):
        b.access(BASE + H + P + i * P, False)
    assert b.mm.rss[MM_SHMEMPAGES] >= 3
    assert meminfo(k)["Mlocked"] == 4 * b.mm.rss[MM_SHMEMPAGES]
    check(k)


def test_khugepaged_collapses_a_locked_shmem_range_and_the_pmd_refault_mlocks_it():
    # 512 small pages (shmem_enabled never) of a segment mlocked in t: Mlocked 2048 kB.
    # shmem_enabled advise + MADV_HUGEPAGE: khugepaged's collapse_file unmaps them with
    # try_to_unmap(TTU_IGNORE_MLOCK) (page_remove_rmap munlocks: Mlocked 0) and puts the
    # huge folio in their place; retract_page_tables frees t's PTE table (no anon_vma),
    # so t's next access maps it by a PMD, and mlock_vma_folio(compound) mlocks the 512
    # pages: Mlocked 2048 kB, unevictable_pgs_mlocked +512. Reclaim then culls the
    # folio to the unevictable list whole (Unevictable 2048 kB).
    from guestkernel import gfp as G
    from guestkernel.vmscan import LRU_INACTIVE_ANON, ScanControl, init_reclaim

    k = boot(thp_shmem_enabled="never", thp_enabled="madvise", swap="64MiB")
    init_reclaim(k)
    t = k.spawn("t")
    sid = t.shmget(U.IPC_PRIVATE, H, U.IPC_CREAT | 0o600)
    assert t.shmat(sid, BASE) == BASE
    for i in range(512):
        t.access(BASE + i * P, True, (i + 1).to_bytes(4, "little"))
    assert t.mlock(BASE, H) == 0
    vm = k.vmstat
    assert meminfo(k)["Mlocked"] == 2048
    k.procfs.write(f"{D}/shmem_enabled", "advise")
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    assert t.mm in k.khugepaged.mm_slots
    k.khugepaged.do_scan()
    assert k.thp.pages_collapsed == 1 and vm["thp_collapse_alloc"] == 1
    assert meminfo(k)["ShmemHugePages"] == 2048 and meminfo(k)["Mlocked"] == 0
    pt = t.mm.pgtable
    assert (BASE >> 12) >> pt.pte_shift not in pt.pte_counts  # retract_page_tables
    m0 = vm["unevictable_pgs_mlocked"]
    t.access(BASE + 9 * P, False)
    assert pt.ptes[BASE >> 12] & _PAGE_PSE and meminfo(k)["ShmemPmdMapped"] == 2048
    assert meminfo(k)["Mlocked"] == 2048 and vm["unevictable_pgs_mlocked"] - m0 == 512
    for i in (0, 300, 511):
        assert t.peek(BASE + i * P, 4) == (i + 1).to_bytes(4, "little")
    r = k.reclaim
    lv = r.lruvecs[0]
    lst = lv.lists[LRU_INACTIVE_ANON]
    head = k.mem_map[pt.ptes[BASE >> 12] >> 12]
    lst.remove(head)  # the folio at the tail: the next scan takes it
    lst.add_tail(head)
    c0 = vm["unevictable_pgs_culled"]
    r.shrink_inactive_list(32, lv, ScanControl(32, G.GFP_KERNEL, False, 1, True), LRU_INACTIVE_ANON)
    assert meminfo(k)["Unevictable"] == 2048 and vm["unevictable_pgs_culled"] - c0 == 512
    assert k.vmstat["thp_split_page"] == 0
    k.reclaim.validate()
    check(k)
