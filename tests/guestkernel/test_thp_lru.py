"""A THP ages on the LRU as one folio (Linux 6.1 mm/vmscan.c isolate_lru_folios,
folio_check_references; mm/rmap.c folio_referenced_one): the folio is isolated whole and
counts its 512 pages in the scan, its references are taken once (one young bit per PMD
mapping, referenced counted per VMA), and the verdict moves all its pages together."""

from __future__ import annotations

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.page import PG_active, PG_lru, PG_referenced, PG_workingset
from guestkernel.pgtable import _PAGE_ACCESSED, _PAGE_PSE
from guestkernel.vmscan import (
    LRU_ACTIVE_ANON,
    LRU_INACTIVE_ANON,
    PAGEREF_ACTIVATE,
    PAGEREF_KEEP,
    PAGEREF_RECLAIM,
    ScanControl,
)

P = 4096
H = 2 << 20
BASE = 0x40000000


def boot():
    return Kernel(KernelConfig(memory="256MiB", swap="64MiB", thp_enabled="madvise"))


def thp_task(k, name="t"):
    t = k.spawn(name)
    t.mmap(BASE, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    t.access_range(BASE, H, True)
    return t


def subpages(k, t):
    ptes = t.mm.pgtable.ptes
    head = ptes[BASE >> 12] >> 12
    return [k.mem_map[head + i] for i in range(512)]


def young(t):
    ptes = t.mm.pgtable.ptes
    return sum(1 for i in range(512) if ptes.get((BASE >> 12) + i, 0) & _PAGE_ACCESSED)


def sc():
    return ScanControl(32, G.GFP_KERNEL, False, 1, True)


def test_isolation_takes_the_whole_folio_and_counts_its_512_pages():
    """isolate_lru_folios: `scan += nr_pages` -- a THP at the list's tail is taken whole
    by a scan of SWAP_CLUSTER_MAX (32); its PMD was young (the fault), so the folio is
    kept with PG_referenced (folio_check_references: referenced_ptes 1, folio not yet
    referenced) -- all 512 pages, back on the inactive list, the PMD made old."""
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    t = thp_task(k)
    pages = subpages(k, t)
    lst = lv.lists[LRU_INACTIVE_ANON]
    # the THP is the oldest anonymous memory: its one entry to the tail
    lst.remove(pages[0])
    lst.add_tail(pages[0])
    s0 = k.vmstat["pgscan_anon"]
    assert r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON) == 0
    assert k.vmstat["pgscan_anon"] - s0 == 512
    assert all(p.flags & PG_referenced and not p.flags & PG_active for p in pages)
    assert young(t) == 0
    assert all(t.mm.pgtable.ptes[(BASE >> 12) + i] & _PAGE_PSE for i in range(512))
    r.validate()
    validate_pages(k)


def test_one_young_subpage_makes_the_whole_folio_referenced():
    """The PMD has one accessed bit for 2 MiB: after an access to one 4 KiB page of
    the THP the folio is referenced as a whole (KEEP, then ACTIVATE with PG_referenced),
    and every one of its pages moves to the active list (pgactivate counts 512)."""
    k = boot()
    r = k.reclaim
    t = thp_task(k)
    pages = subpages(k, t)
    cache = {}
    assert r.check_folio_references(pages[7], cache) == PAGEREF_KEEP  # young from the fault
    assert cache == {pages[0].pfn: PAGEREF_KEEP}
    assert r.check_folio_references(pages[300], cache) == PAGEREF_KEEP  # the folio's verdict
    assert all(p.flags & PG_referenced for p in pages)
    # nothing touched since: not referenced, and PG_referenced cleared
    assert r.check_folio_references(pages[0], {}) == PAGEREF_RECLAIM
    assert not any(p.flags & PG_referenced for p in pages)
    # one subpage read twice with a check in between: KEEP, then ACTIVATE
    t.access(BASE + 100 * P, False)
    assert r.check_folio_references(pages[400], {}) == PAGEREF_KEEP
    t.access(BASE + 100 * P, False)
    assert young(t) == 1
    a0 = k.vmstat["pgactivate"]
    lv = r.lruvecs[0]
    lst = lv.lists[LRU_INACTIVE_ANON]
    lst.remove(pages[0])
    lst.add_tail(pages[0])
    r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON)
    assert k.vmstat["pgactivate"] - a0 == 512
    assert all(p.flags & PG_active for p in pages)
    assert [p for p in lv.lists[LRU_ACTIVE_ANON] if p in set(pages)] == [pages[0]]  # one entry
    r.validate()
    validate_pages(k)


def test_pte_mapped_thp_counts_one_reference_per_vma():
    """folio_referenced_one counts a VMA once however many of its PTEs were young
    (pra->referenced++ once per call): a PTE-mapped THP whose 511 PTEs are all young in
    one VMA is referenced 1 (KEEP), where 511 order-0 pages would each be."""
    k = boot()
    r = k.reclaim
    t = thp_task(k)
    pages = subpages(k, t)
    t.madvise(BASE + 511 * P, P, U.MADV_DONTNEED)  # split the PMD, the folio stays whole
    assert pages[0].pfn in k.thp.folios
    t.access_range(BASE, 511 * P, False)
    assert young(t) == 511
    assert k.thp.folio_referenced(pages[0].pfn)[0] == 1
    assert young(t) == 0
    t.access_range(BASE, 511 * P, False)
    assert r.check_folio_references(pages[0], {}) == PAGEREF_KEEP
    validate_pages(k)


def test_a_thp_young_in_two_mms_is_activated_at_once():
    """Parent and child each map the THP with a PMD (copy_huge_pmd makes the child's
    old); both young: referenced_ptes 2 -> ACTIVATE on the first check."""
    k = boot()
    r = k.reclaim
    t = thp_task(k)
    pages = subpages(k, t)
    child = k.tasks[t.fork()]
    assert k.thp.folios[pages[0].pfn].pmd_maps == 2
    child.access(BASE + 5 * P, False)
    assert r.check_folio_references(pages[0], {}) == PAGEREF_ACTIVATE
    assert r.check_folio_references(pages[0], {}) == PAGEREF_RECLAIM
    child.access(BASE + 5 * P, False)
    assert r.check_folio_references(pages[0], {}) == PAGEREF_KEEP
    validate_pages(k)


# -- a THP is one LRU entry (6.1 folio_add_lru, lru_add_fn, lruvec_add_folio) ---------------
def entries(lst, pages):
    mine = set(pages)
    return [p for p in lst if p in mine]


def test_a_thp_is_one_lru_entry_counting_its_512_pages():
    """lru_add_fn -> lruvec_add_folio: the folio goes on the list as one entry and
    update_lru_size adds folio_nr_pages (512) to the list and NR_INACTIVE_ANON; its tail
    pages are not linked (PageLRU of a tail reads the head's flag: each carries it)."""
    k = boot()
    r = k.reclaim
    lst = r.lruvecs[0].lists[LRU_INACTIVE_ANON]
    t = k.spawn("t")
    t.mmap(BASE, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    n0, v0 = lst.nr, k.vmstat["nr_inactive_anon"]
    t.access(BASE, True)  # one huge fault
    pages = subpages(k, t)
    assert entries(lst, pages) == [pages[0]]
    assert lst.nr - n0 == 512 and k.vmstat["nr_inactive_anon"] - v0 == 512
    assert all(p.flags & PG_lru for p in pages)
    assert all(p.lru_next is None for p in pages[1:])
    assert k.thp.folios[pages[0].pfn].lru == LRU_INACTIVE_ANON
    r.validate()
    # __folio_put -> lruvec_del_folio: freed whole, the 512 pages leave the count at once
    t.munmap(BASE, H)
    assert lst.nr == n0 and k.vmstat["nr_inactive_anon"] == v0
    r.validate()
    validate_pages(k)


def test_activating_one_subpage_moves_the_whole_folio():
    """folio_activate (lru_activate): the folio moves to the active list as one entry,
    PGACTIVATE counting its nr_pages, NR_*_ANON moving by 512."""
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    t = thp_task(k)
    pages = subpages(k, t)
    a0, i0, c0 = k.vmstat["pgactivate"], k.vmstat["nr_inactive_anon"], k.vmstat["nr_active_anon"]
    r.activate_page(pages[300])
    assert k.vmstat["pgactivate"] - a0 == 512
    assert i0 - k.vmstat["nr_inactive_anon"] == 512 and k.vmstat["nr_active_anon"] - c0 == 512
    assert entries(lv.lists[LRU_ACTIVE_ANON], pages) == [pages[0]]
    assert all(p.flags & PG_active for p in pages)
    r.validate()
    validate_pages(k)


def test_an_unmapped_subpage_stays_in_the_folio_on_the_lru_until_the_split():
    """A subpage whose PTE goes (MADV_DONTNEED of 4 KiB: the PMD is split, the folio
    stays whole on the deferred split queue) stays counted in the folio's 512 pages on
    the LRU (NR_INACTIVE_ANON unchanged; NR_ANON_MAPPED drops by one). split_huge_page
    then puts the subpages on the list where the folio was (lru_add_page_tail:
    list_add_tail(tail, head) for i = 511 down to 1, so from the list's tail end: head,
    1, 2, ...) and frees the unmapped one, which leaves the count."""
    k = boot()
    r = k.reclaim
    lst = r.lruvecs[0].lists[LRU_INACTIVE_ANON]
    t = thp_task(k)
    pages = subpages(k, t)
    v0, m0 = k.vmstat["nr_inactive_anon"], k.vmstat["nr_anon_pages"]
    t.madvise(BASE + 7 * P, P, U.MADV_DONTNEED)
    folio = k.thp.folios[pages[0].pfn]
    assert folio.held == 1 and folio.queued
    assert k.vmstat["nr_inactive_anon"] == v0 and k.vmstat["nr_anon_pages"] == m0 - 1
    assert entries(lst, pages) == [pages[0]]
    assert not pages[7].flags & PG_lru
    r.validate()
    assert k.thp.split_huge_page(pages[0].pfn)
    assert k.vmstat["nr_inactive_anon"] == v0 - 1
    live = [p for i, p in enumerate(pages) if i != 7]
    assert [p for p in lst.reversed() if p in set(live)] == live  # head, 1, ..., 6, 8, ..., 511
    r.validate()
    validate_pages(k)


def test_swap_out_of_a_thp_without_a_cluster_splits_it_on_the_reclaim_list():
    """shrink_folio_list (6.1) on a rotational swap device (no clusters): the isolated
    folio is split (split_folio_to_list, thp_swpout_fallback), its subpages staying on
    reclaim's private list (lru_add_page_tail's `list` case) and swapped 4 KiB each;
    the LRU counted 512 pages for it before, none after."""
    k = Kernel(KernelConfig(memory="256MiB", swap="64MiB", thp_enabled="madvise", swap_rotational=True))
    r = k.reclaim
    lv = r.lruvecs[0]
    lst = lv.lists[LRU_INACTIVE_ANON]
    t = thp_task(k)
    pages = subpages(k, t)
    lst.remove(pages[0])
    lst.add_tail(pages[0])
    v0 = k.vmstat["nr_inactive_anon"]
    # (the PMD was young from the fault: the first pass keeps it and makes it old)
    r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON)
    r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON)
    assert k.vmstat["thp_swpout_fallback"] == 1 and k.vmstat["thp_split_page"] == 1
    assert k.vmstat["pswpout"] == 512 and k.vmstat["thp_swpout"] == 0
    assert k.vmstat["nr_inactive_anon"] == v0 - 512
    assert not entries(lst, pages)
    r.validate()
    validate_pages(k)


def test_the_active_scan_deactivates_a_thp_as_one_folio():
    """shrink_active_list (6.1): the folio is isolated whole (pgrefill += 512), its
    references taken once (folio_referenced), and move_folios_to_lru puts it on the
    inactive list as one entry, PGDEACTIVATE counting its 512 pages; PG_workingset
    marks every page."""
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    t = thp_task(k)
    pages = subpages(k, t)
    r.activate_page(pages[0])
    act = lv.lists[LRU_ACTIVE_ANON]
    act.remove(pages[0])
    act.add_tail(pages[0])
    f0, d0 = k.vmstat["pgrefill"], k.vmstat["pgdeactivate"]
    r.shrink_active_list(32, lv, sc(), LRU_ACTIVE_ANON)
    assert k.vmstat["pgrefill"] - f0 == 512 and k.vmstat["pgdeactivate"] - d0 == 512
    assert entries(lv.lists[LRU_INACTIVE_ANON], pages) == [pages[0]]
    assert all(p.flags & PG_workingset and not p.flags & PG_active for p in pages)
    r.validate()
    validate_pages(k)


def test_page_states_count_a_thps_pages_not_its_entry():
    """summary.json's page_state_pages counts user pages: a THP's one entry stands for its
    512 pages (all inactive dirty: anonymous, not in the swap cache); a subpage its folio
    holds after its last PTE went is no user page (it left the states when it was
    unmapped) though the LRU still counts it in the folio's 512."""
    from experiments.metrics import page_state_pages

    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    t = k.spawn("t")
    t.mmap(BASE, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    before = page_state_pages(k)
    t.access(BASE, True)  # one huge fault
    after = page_state_pages(k)
    assert after["inactive dirty"] - before["inactive dirty"] == 512
    lru_pages = sum(lst.nr for lst in lv.lists)
    assert sum(after.values()) == lru_pages
    t.madvise(BASE + 9 * P, P, U.MADV_DONTNEED)
    assert sum(lst.nr for lst in lv.lists) == lru_pages
    assert sum(page_state_pages(k).values()) == lru_pages - 1
