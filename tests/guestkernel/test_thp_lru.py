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
from guestkernel.page import PG_active, PG_referenced
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
    # the THP is the oldest anonymous memory: move it to the tail as a block
    for p in pages:
        lst.remove(p)
        lst.add_tail(p)
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
    for p in pages:
        lst.remove(p)
        lst.add_tail(p)
    r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_ANON)
    assert k.vmstat["pgactivate"] - a0 == 512
    assert all(p.flags & PG_active for p in pages)
    assert sum(1 for p in lv.lists[LRU_ACTIVE_ANON] if p in set(pages)) == 512
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
