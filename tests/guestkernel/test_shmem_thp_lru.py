"""A shmem THP on the LRU (6.1): one folio, one entry (folio_add_lru / lruvec_add_folio).

Shmem is swap-backed, so its folios live on the anon lists (folio_is_file_lru is
!folio_test_swapbacked): a 2 MiB shmem folio's head is the entry, counting 512 pages in
the list and NR_INACTIVE_ANON / NR_ACTIVE_ANON; it is isolated, activated and put back
whole with one verdict (folio_referenced over the file rmap: rmap_walk_file over the
i_mmap VMAs, one reference a VMA); shrink_folio_list splits it ("Split shmem folio":
split_folio_to_list onto reclaim's list) before shmem_writepage writes 4 KiB pages.
"""

from __future__ import annotations

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.page import PG_active, PG_lru, PG_thpfile
from guestkernel.pgtable import _PAGE_ACCESSED, _PAGE_PSE
from guestkernel.vmscan import (
    LRU_ACTIVE_ANON,
    LRU_INACTIVE_ANON,
    PAGEREF_ACTIVATE,
    PAGEREF_RECLAIM,
    ScanControl,
)

P = 4096
H = 2 << 20
BASE = 0x40000000  # 2 MiB-aligned


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    kw.setdefault("swap", "64MiB")
    return Kernel(KernelConfig(thp_shmem_enabled="always", **kw))


def segment(k, name="t", addr=BASE, size=H, touch=True):
    t = k.spawn(name)
    sid = t.shmget(U.IPC_PRIVATE, size, U.IPC_CREAT | 0o600)
    assert t.shmat(sid, addr) == addr
    if touch:
        for off in range(0, size, P):
            t.access(addr + off, True, (off + 1).to_bytes(8, "little"))
    return t, sid


def subpages(k, t, addr=BASE):
    head = t.mm.pgtable.ptes[addr >> 12] >> 12
    return [k.mem_map[head + i] for i in range(512)]


def entries(lst, pages):
    mine = set(pages)
    return [p for p in lst if p in mine]


def to_tail(lst, page):
    lst.remove(page)
    lst.add_tail(page)


def sc():
    return ScanControl(32, G.GFP_KERNEL, False, 1, True)


def test_a_shmem_thp_is_one_entry_counting_512_pages_on_the_anon_list():
    """shmem_add_to_page_cache + folio_add_lru: the new 2 MiB folio goes on the inactive
    anon list (swap-backed) as one entry, update_lru_size adding folio_nr_pages: 512 in
    the list and NR_INACTIVE_ANON, NR_SHMEM 512; every subpage carries PG_lru. Freed
    whole (IPC_RMID), the 512 pages leave the counts."""
    k = boot()
    lst = k.reclaim.lruvecs[0].lists[LRU_INACTIVE_ANON]
    vm = k.vmstat
    t, sid = segment(k, touch=False)
    n0, v0, s0 = lst.nr, vm["nr_inactive_anon"], vm["nr_shmem"]
    t.access(BASE, True)  # one huge fault
    pages = subpages(k, t)
    assert t.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    assert entries(lst, pages) == [pages[0]]
    assert lst.nr - n0 == 512 and vm["nr_inactive_anon"] - v0 == 512 and vm["nr_shmem"] - s0 == 512
    assert all(p.flags & PG_lru and p.flags & PG_thpfile for p in pages)
    assert all(p.lru_next is None for p in pages[1:])
    assert k.thp.shmem_folios[pages[0].pfn].lru == LRU_INACTIVE_ANON
    k.reclaim.validate()
    validate_pages(k)
    t.shmdt(BASE)
    t.shmctl(sid, U.IPC_RMID)
    assert lst.nr == n0 and vm["nr_inactive_anon"] == v0 and vm["nr_shmem"] == s0
    k.reclaim.validate()
    validate_pages(k)


def test_activating_one_shmem_subpage_moves_the_whole_folio():
    """folio_activate: the folio moves as one entry, PGACTIVATE counting 512, NR_*_ANON
    moving by 512."""
    k = boot()
    r = k.reclaim
    t, _ = segment(k)
    pages = subpages(k, t)
    vm = k.vmstat
    a0, i0, c0 = vm["pgactivate"], vm["nr_inactive_anon"], vm["nr_active_anon"]
    r.activate_page(pages[300])
    assert vm["pgactivate"] - a0 == 512
    assert i0 - vm["nr_inactive_anon"] == 512 and vm["nr_active_anon"] - c0 == 512
    assert entries(r.lruvecs[0].lists[LRU_ACTIVE_ANON], pages) == [pages[0]]
    assert all(p.flags & PG_active for p in pages)
    assert k.thp.shmem_folios[pages[0].pfn].lru == LRU_ACTIVE_ANON
    r.validate()
    validate_pages(k)


def test_one_verdict_over_the_file_rmap_one_reference_a_vma():
    """folio_referenced on a shmem folio walks i_mmap (rmap_walk_file): each VMA where a
    PMD or a PTE of the folio is young counts once. Two tasks each PMD-mapping it, both
    young from their faults: referenced 2 -> ACTIVATE at once (folio_check_references:
    referenced_ptes > 1); then nothing young: RECLAIM. A PTE-mapped attach (unaligned)
    with 511 young PTEs counts 1."""
    k = boot()
    r = k.reclaim
    t, sid = segment(k)
    u = k.spawn("u")
    assert u.shmat(sid, BASE) == BASE
    u.access(BASE + 9 * P, False)
    pages = subpages(k, t)
    assert subpages(k, u) == pages
    base = pages[0].pfn
    assert r.check_folio_references(pages[5], {}) == PAGEREF_ACTIVATE
    assert not any(t.mm.pgtable.ptes[(BASE >> 12) + i] & _PAGE_ACCESSED for i in range(512))
    assert r.check_folio_references(pages[5], {}) == PAGEREF_RECLAIM
    # an unaligned attach maps the folio by PTEs: one VMA, one reference
    w = k.spawn("w")
    addr = BASE + 64 * (2 << 20) + P
    assert w.shmat(sid, addr) == addr
    for i in range(511):
        w.access(addr + i * P, False)
    assert not w.mm.pgtable.ptes[addr >> 12] & _PAGE_PSE
    assert k.thp.folio_referenced(base)[0] == 1
    r.validate()
    validate_pages(k)


def test_the_inactive_scan_takes_the_folio_whole_and_activates_it_once():
    """isolate_lru_folios counts the folio's 512 pages in the scan (pgscan_anon 512 for
    one entry); one young PMD (the fault) with the folio not yet referenced: KEEP; young
    again: ACTIVATE, pgactivate 512, the folio one entry on the active list."""
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    lst = lv.lists[LRU_INACTIVE_ANON]
    t, _ = segment(k)
    pages = subpages(k, t)
    vm = k.vmstat
    to_tail(lst, pages[0])
    s0, a0 = vm["pgscan_anon"], vm["pgactivate"]
    assert r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON) == 0
    assert vm["pgscan_anon"] - s0 == 512 and vm["pgactivate"] == a0
    assert entries(lst, pages) == [pages[0]]
    t.access(BASE + 77 * P, False)
    to_tail(lst, pages[0])
    assert r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON) == 0
    assert vm["pgactivate"] - a0 == 512
    assert entries(lv.lists[LRU_ACTIVE_ANON], pages) == [pages[0]]
    assert vm["thp_split_page"] == 0
    r.validate()
    validate_pages(k)


def test_the_active_scan_deactivates_a_shmem_thp_as_one_folio():
    """shrink_active_list: pgrefill 512 for the one entry, its references taken once,
    PGDEACTIVATE 512, back on the inactive list as one entry."""
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    t, _ = segment(k)
    pages = subpages(k, t)
    r.activate_page(pages[0])
    to_tail(lv.lists[LRU_ACTIVE_ANON], pages[0])
    f0, d0 = k.vmstat["pgrefill"], k.vmstat["pgdeactivate"]
    r.shrink_active_list(32, lv, sc(), LRU_ACTIVE_ANON)
    assert k.vmstat["pgrefill"] - f0 == 512 and k.vmstat["pgdeactivate"] - d0 == 512
    assert entries(lv.lists[LRU_INACTIVE_ANON], pages) == [pages[0]]
    assert not any(p.flags & PG_active for p in pages)
    r.validate()
    validate_pages(k)


def test_swap_out_splits_the_folio_on_the_reclaim_list_then_writes_512_entries():
    """shrink_folio_list (6.1), verdict RECLAIM: "Split shmem folio" (split_folio_to_list:
    thp_split_page 1, the file PMD cleared, its dirty bit on every subpage), then each
    4 KiB page is unmapped and written by shmem_writepage: 512 swap entries in the
    mapping, NR_SHMEM down 512, pswpout 512 once written; the data reads back."""
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    lst = lv.lists[LRU_INACTIVE_ANON]
    t, _ = segment(k)
    pages = subpages(k, t)
    inode = t.mm.mm_mt.lookup(BASE).vm_file.inode
    vm = k.vmstat
    s0, n0 = vm["nr_shmem"], vm["nr_inactive_anon"]
    to_tail(lst, pages[0])
    r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON)  # young from the faults: KEEP
    assert vm["thp_split_page"] == 0
    to_tail(lst, pages[0])
    r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON)
    r.complete_io()
    assert vm["thp_split_page"] == 1 and vm["thp_split_pmd"] == 1
    assert not k.thp.shmem_folios and vm["nr_shmem_hugepages"] == 0
    assert len(inode.mapping.swapped) == 512 and inode.swapped == 512
    assert s0 - vm["nr_shmem"] == 512 and vm["pswpout"] == 512
    assert n0 - vm["nr_inactive_anon"] == 512
    assert not entries(lst, pages)
    r.validate()
    validate_pages(k)
    for off in range(0, H, P):
        t.access(BASE + off, False)
        assert t.peek(BASE + off, 8) == (off + 1).to_bytes(8, "little")
    r.validate()
    validate_pages(k)


def test_a_split_puts_the_512_subpages_where_the_folio_was():
    """split_huge_page of a folio on the LRU (not isolated): lru_add_page_tail replaces
    the one entry by its 512 subpages in place (head, 1, 2, ... from the tail end), each
    counting one page, the list's count unchanged."""
    k = boot()
    r = k.reclaim
    lst = r.lruvecs[0].lists[LRU_INACTIVE_ANON]
    t, sid = segment(k)
    pages = subpages(k, t)
    inode = t.mm.mm_mt.lookup(BASE).vm_file.inode
    n0 = lst.nr
    t.shmdt(BASE)
    k.thp.shmem_split(pages[0])
    assert k.vmstat["thp_split_page"] == 1
    assert [p for p in lst.reversed() if p in set(pages)] == pages
    assert lst.nr == n0
    assert all(p.flags & PG_lru and not p.flags & PG_thpfile for p in pages)
    assert inode.mapping.pages[0] is pages[0]
    r.validate()
    validate_pages(k)


# --- khugepaged: collapse_file for shmem (6.1) ------------------------------------------
D = "/sys/kernel/mm/transparent_hugepage"


def small_segment(k, written: int, size=H):
    """A segment whose first `written` pages are 4 KiB pages (shmem_enabled never), then
    shmem_enabled advise and MADV_HUGEPAGE: the mm joins khugepaged's list."""
    k.procfs.write(f"{D}/shmem_enabled", "never")
    t, sid = segment(k, touch=False, size=size)
    for i in range(written):
        t.access(BASE + i * P, True, (i + 1).to_bytes(8, "little"))
    k.procfs.write(f"{D}/shmem_enabled", "advise")
    t.madvise(BASE, size, U.MADV_HUGEPAGE)
    assert t.mm in k.khugepaged.mm_slots
    return t, sid


def test_khugepaged_collapses_a_shmem_range_copying_present_pages_and_zeroing_holes():
    """hpage_collapse_scan_file: 300 present pages >= 512 - max_ptes_none (511);
    collapse_file: thp_collapse_alloc 1, 300 copies and 212 zeroed holes (Shmem +212
    pages: NR_SHMEM / NR_FILE_PAGES grow by nr_none), the folio in the cache in their
    place (ShmemHugePages 2 MiB, one LRU entry), the small pages freed, their PTEs gone;
    retract_page_tables frees the aligned mapping's PTE table, so the next fault maps
    the folio by one PMD (thp_file_mapped). pages_collapsed 1."""
    from guestkernel.pgtable import _PAGE_PSE

    k = boot(thp_enabled="madvise")
    t, _ = small_segment(k, 300)
    inode = t.mm.mm_mt.lookup(BASE).vm_file.inode
    old = [inode.mapping.pages[i] for i in range(300)]
    vm = k.vmstat
    s0, f0 = vm["nr_shmem"], vm["nr_file_pages"]
    pt = t.mm.pgtable
    key = (BASE >> 12) >> pt.pte_shift
    assert pt.pte_counts[key] == 300
    k.khugepaged.do_scan()
    assert vm["thp_collapse_alloc"] == 1 and k.thp.pages_collapsed == 1
    assert k.procfs.read(f"{D}/khugepaged/pages_collapsed") == "1\n"
    assert vm["nr_shmem"] - s0 == 212 and vm["nr_file_pages"] - f0 == 212
    assert vm["nr_shmem_hugepages"] == 1
    head = inode.mapping.pages[0]
    assert head.pfn % 512 == 0 and head.pfn in k.thp.shmem_folios
    assert all(inode.mapping.pages[i].pfn == head.pfn + i for i in range(512))
    assert all(p._count == 0 for p in old)  # freed
    assert key not in pt.pte_counts  # retract_page_tables
    lst = k.reclaim.lruvecs[0].lists[LRU_INACTIVE_ANON]
    sub = [k.mem_map[head.pfn + i] for i in range(512)]
    assert entries(lst, sub) == [head]
    m0 = vm["thp_file_mapped"]
    t.access(BASE + 7 * P, False)
    assert pt.ptes[BASE >> 12] & _PAGE_PSE and vm["thp_file_mapped"] - m0 == 1
    for i in (0, 150, 299):
        assert t.peek(BASE + i * P, 8) == (i + 1).to_bytes(8, "little")
    assert t.peek(BASE + 300 * P, 8) == bytes(8) and t.peek(BASE + 511 * P, 8) == bytes(8)
    k.reclaim.validate()
    validate_pages(k)


def test_khugepaged_shmem_max_ptes_none_bounds_the_holes():
    """present < HPAGE_PMD_NR - max_ptes_none -> SCAN_EXCEED_NONE_PTE
    (thp_scan_exceed_none_pte): with max_ptes_none 411, 100 present pages do not
    collapse, 101 do."""
    k = boot(thp_enabled="madvise")
    k.procfs.write(f"{D}/khugepaged/max_ptes_none", "411")
    t, _ = small_segment(k, 100)
    k.khugepaged.do_scan()
    assert k.vmstat["thp_scan_exceed_none_pte"] == 1 and k.thp.pages_collapsed == 0
    assert not k.thp.shmem_folios
    t.access(BASE + 100 * P, True)
    k.khugepaged.do_scan()
    assert k.thp.pages_collapsed == 1 and k.vmstat["thp_collapse_alloc"] == 1
    assert k.vmstat["thp_scan_exceed_none_pte"] == 1
    k.reclaim.validate()
    validate_pages(k)


def test_shmem_collapse_copies_and_zeroings_cost_khugepaged_cpu_on_the_vcpu():
    """collapse_file's copy_highpage of each present page and clear_highpage of each
    hole run in khugepaged (a guest kernel thread): page_copy_cost a copy, page_zero_cost
    a zeroing of the VM's CPU. 300 present + 212 holes: 300 copies, 212 zeroings."""
    import pytest
    import simpy

    from hypervisor.host import Host, HostConfig

    env = simpy.Environment()
    host = Host(HostConfig(memory="512MiB", sharing=False, compression=False, ballooning=False,
                           page_copy_cost="7us", page_zero_cost="3us"), env=env)
    vm = host.create_vm("g", KernelConfig(memory="256MiB", thp_enabled="madvise"), balloon=False)
    k = vm.kernel
    t = k.spawn("t")
    sid = t.shmget(U.IPC_PRIVATE, H, U.IPC_CREAT | 0o600)
    assert t.shmat(sid, BASE) == BASE
    for i in range(300):
        t.access(BASE + i * P, True)
    env.run(until=0.1)
    c0, z0 = vm.copy_cpu, vm.zero_cpu
    k.procfs.write(f"{D}/shmem_enabled", "advise")
    t.madvise(BASE, H, U.MADV_HUGEPAGE)  # joins khugepaged's list, wakes it
    env.run(until=0.5)
    assert k.vmstat["thp_collapse_alloc"] == 1 and k.thp.pages_collapsed == 1
    assert vm.copy_cpu - c0 == pytest.approx(300 * 7e-6)
    assert vm.zero_cpu - z0 == pytest.approx(212 * 3e-6)


def test_khugepaged_shmem_swap_entries_bounded_by_max_ptes_swap_and_swapped_in():
    """hpage_collapse_scan_file counts the range's swap entries: more than
    max_ptes_swap -> SCAN_EXCEED_SWAP_PTE (thp_scan_exceed_swap_pte); within it,
    collapse_file swaps them in (shmem_get_folio SGP_NOALLOC) and copies them: 20 of
    300 written pages on swap, max_ptes_swap 19 refuses, 20 collapses with the data."""
    k = boot(thp_enabled="madvise")
    t, _ = small_segment(k, 300)
    inode = t.mm.mm_mt.lookup(BASE).vm_file.inode
    mapping = inode.mapping
    t.madvise(BASE, 20 * P, U.MADV_DONTNEED)  # unmapped: only the cache holds them
    victims = [mapping.pages[i] for i in range(20)]
    k.reclaim.reclaim_pages(victims)
    k.reclaim.complete_io()
    assert sorted(mapping.swapped) == list(range(20))
    k.procfs.write(f"{D}/khugepaged/max_ptes_swap", "19")
    k.khugepaged.do_scan()
    assert k.vmstat["thp_scan_exceed_swap_pte"] == 1 and k.thp.pages_collapsed == 0
    k.procfs.write(f"{D}/khugepaged/max_ptes_swap", "20")
    k.khugepaged.do_scan()
    assert k.thp.pages_collapsed == 1 and not mapping.swapped and inode.swapped == 0
    head = mapping.pages[0]
    assert head.pfn in k.thp.shmem_folios
    t.access(BASE, False)  # the next fault maps the folio by a PMD
    assert t.mm.pgtable.ptes[BASE >> 12] >> 12 == head.pfn
    for i in (0, 19, 20, 299):
        assert t.peek(BASE + i * P, 8) == (i + 1).to_bytes(8, "little")
    k.reclaim.validate()
    validate_pages(k)


def test_a_pte_mapped_shmem_thp_is_queued_then_its_ptes_and_table_dropped():
    """A huge folio a PTE table maps (an empty table left under the range, as a
    retract_page_tables that could not take the mm's lock leaves it): the file scan
    finds the folio at the range's start (SCAN_PTE_MAPPED_HUGEPAGE), find_pmd_or_thp_or_
    none finds the table: the address is queued (pages_collapsed counts it, 6.1's
    fallthrough); the slot's next scan runs collapse_pte_mapped_thp: each PTE maps its
    subpage, so the 16 PTEs go (rmap, references, MM_SHMEMPAGES by 16) and the table is
    freed; the next fault maps the folio by one PMD."""
    from guestkernel.pgtable import MM_SHMEMPAGES

    k = boot(thp_enabled="madvise")
    t, _ = small_segment(k, 300)
    k.khugepaged.do_scan()
    assert k.thp.pages_collapsed == 1
    pt = t.mm.pgtable
    key = (BASE >> 12) >> pt.pte_shift
    assert key not in pt.pte_counts
    assert pt.alloc_pte_table(BASE >> 12)  # (an empty table left under the range)
    for i in range(10):
        t.access(BASE + i * P, False)
    head = t.mm.mm_mt.lookup(BASE).vm_file.inode.mapping.pages[0]
    # (do_fault_around: fault_around_bytes 64 KiB maps pages 0-15 with the first fault)
    assert pt.pte_counts[key] == 16 and pt.ptes[BASE >> 12] >> 12 == head.pfn
    assert not pt.ptes[BASE >> 12] & _PAGE_PSE
    rss0 = t.mm.rss[MM_SHMEMPAGES]
    assert head._mapcount == 0 and head._count == 2
    kh = k.khugepaged
    kh.mm_slot, kh.address = None, 0  # (a fresh pass over the list)
    kh.do_scan()
    assert k.thp.pages_collapsed == 2
    assert key not in pt.pte_counts  # queued, then dropped on the next scan of the slot
    assert t.mm.rss[MM_SHMEMPAGES] == rss0 - 16
    assert head._mapcount == -1 and head._count == 1
    assert k.vmstat["nr_shmem_hugepages"] == 1
    t.access(BASE + 3 * P, False)
    assert pt.ptes[BASE >> 12] & _PAGE_PSE
    k.reclaim.validate()
    validate_pages(k)
