"""Transparent huge pages and khugepaged (guestkernel/huge_memory.py, khugepaged.py),
rule by rule from Linux 6.1's mm/huge_memory.c, mm/khugepaged.c and mm/memory.c. The
user-visible behaviour measured on this machine's kernel is test_thp_fixture.py's."""

from __future__ import annotations

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.huge_memory import GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.page_alloc import validate_buddy
from guestkernel.pgtable import _PAGE_PSE
from guestkernel.physmem import ZERO_PAGE
from guestkernel.vma import validate_mm

P = 4096
H = 2 << 20
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
BASE = 0x40000000  # 2 MiB-aligned


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    return Kernel(KernelConfig(**kw))


def check(k):
    for t in k.tasks.values():
        if t.mm is not None:
            validate_mm(t.mm)
    validate_pages(k)
    validate_buddy(k.page_alloc)


def thp(k):
    return {n: v for n, v in k.vmstat.items() if n.startswith("thp_") and v}


def hugemap(k, pages=1024, advise=True):
    t = k.spawn("t")
    t.mmap(BASE, pages * P, RW, ANON | U.MAP_FIXED)
    if advise:
        t.madvise(BASE, pages * P, U.MADV_HUGEPAGE)
    return t


def smaps_kb(t, field):
    return sum(int(line.split()[1]) for line in t.kernel.procfs.read(f"/proc/{t.pid}/smaps").splitlines()
               if line.startswith(field + ":"))


def test_gfp_mask_follows_defrag():
    # vma_thp_gfp_mask (mm/huge_memory.c): per defrag mode, (not madvised, madvised)
    want = {
        "always": (GFP_TRANSHUGE | G.__GFP_NORETRY, GFP_TRANSHUGE),
        "defer": (GFP_TRANSHUGE_LIGHT | G.__GFP_KSWAPD_RECLAIM,) * 2,
        "defer+madvise": (GFP_TRANSHUGE_LIGHT | G.__GFP_KSWAPD_RECLAIM,
                          GFP_TRANSHUGE_LIGHT | G.__GFP_DIRECT_RECLAIM),
        "madvise": (GFP_TRANSHUGE_LIGHT, GFP_TRANSHUGE_LIGHT | G.__GFP_DIRECT_RECLAIM),
        "never": (GFP_TRANSHUGE_LIGHT,) * 2,
    }
    # GFP_TRANSHUGE_LIGHT: (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC |
    # __GFP_NOWARN) & ~__GFP_RECLAIM (include/linux/gfp_types.h)
    assert GFP_TRANSHUGE_LIGHT & G.__GFP_RECLAIM == 0
    assert GFP_TRANSHUGE == GFP_TRANSHUGE_LIGHT | G.__GFP_DIRECT_RECLAIM
    k = boot()
    t = k.spawn("t")
    t.mmap(BASE, 2 * H, RW, ANON | U.MAP_FIXED)
    t.madvise(BASE + H, H, U.MADV_HUGEPAGE)
    plain, madv = t.mm.mm_mt.lookup(BASE), t.mm.mm_mt.lookup(BASE + H)
    assert plain is not madv
    for mode, (a, b) in want.items():
        k.procfs.write("/sys/kernel/mm/transparent_hugepage/defrag", mode)
        assert (k.thp.gfp_mask(plain), k.thp.gfp_mask(madv)) == (a, b), mode
        assert f"[{mode}]" in k.procfs.read("/sys/kernel/mm/transparent_hugepage/defrag")


def test_sysfs_files_and_defaults():
    k = boot()
    r = k.procfs.read
    d = "/sys/kernel/mm/transparent_hugepage"
    assert r(f"{d}/enabled") == "always [madvise] never\n"
    assert r(f"{d}/defrag") == "always defer defer+madvise [madvise] never\n"
    assert r(f"{d}/use_zero_page") == "1\n"
    assert r(f"{d}/hpage_pmd_size") == "2097152\n"
    # khugepaged's defaults (mm/khugepaged.c: HPAGE_PMD_NR * 8, 10000, 60000, 511, 64, 256)
    assert [r(f"{d}/khugepaged/{n}") for n in ("pages_to_scan", "scan_sleep_millisecs",
                                                 "alloc_sleep_millisecs", "max_ptes_none",
                                                 "max_ptes_swap", "max_ptes_shared")] == [
        "4096\n", "10000\n", "60000\n", "511\n", "64\n", "256\n"]
    k.procfs.write(f"{d}/enabled", "never")
    assert r(f"{d}/enabled") == "always madvise [never]\n"
    try:
        k.procfs.write(f"{d}/enabled", "sometimes")
    except ValueError as e:
        assert "EINVAL" in str(e)
    else:
        raise AssertionError("a bad mode must be refused")
    assert r(f"{d}/enabled") == "always madvise [never]\n"
    # 2.6-era kernels have no THP (it arrived in 2.6.38)
    old = boot(era="2.6")
    assert old.thp is None and not old.procfs.exists(f"{d}/enabled")
    assert "thp_fault_alloc" not in old.procfs.read("/proc/vmstat")


def test_huge_fault_maps_a_zeroed_2mib_page_with_one_pmd():
    k = boot()
    t = hugemap(k)
    # dirty every free frame first, so zeroing shows in the frames' bytes
    from guestkernel.page import PG_buddy

    for head in [p for p in k.mem_map if p is not None and p.flags & PG_buddy]:
        for pfn in range(head.pfn, head.pfn + (1 << head.private)):
            k.phys.store(pfn, b"\x55" * P)
    pt = t.mm.pgtable
    tables = [len(x) for x in pt.tables]
    t.access(BASE + 5 * P, True, b"\x01" * P)
    ptes = t.mm.pgtable.ptes
    pfn0 = ptes[BASE >> 12] >> 12
    assert pfn0 % 512 == 0
    assert all(ptes[(BASE >> 12) + i] >> 12 == pfn0 + i and ptes[(BASE >> 12) + i] & _PAGE_PSE
               for i in range(512))
    # clear_huge_page: all 512 frames written with zeros, then the store of page 5
    assert [k.phys.load(pfn0 + i) == ZERO_PAGE for i in range(512)] == [i != 5 for i in range(512)]
    # a PUD and a PMD table (the first mapping in this 512 GiB) and the deposited table
    # (pgtable_trans_huge_deposit), no PTE table under the PMD; RSS 512 pages;
    # AnonHugePages 2048 kB; one thp_fault_alloc
    assert [len(x) for x in pt.tables] == [tables[0], tables[1] + 1, tables[2] + 1]
    assert list(pt.huge) == [BASE >> 21]
    assert t.mm.rss[1] == 512 + 1  # and the stack's page
    assert thp(k) == {"thp_fault_alloc": 1}
    assert "AnonHugePages:      2048 kB" in k.procfs.read("/proc/meminfo")
    # the PMD table's frame holds one PSE entry: the huge page's frame, RW, user,
    # accessed, dirty, PSE (bit 7), soft-dirty (bit 11: pmd_mkdirty sets it), NX (bit 63)
    pmd_table = t.mm.pgtable.tables[1][BASE >> 30]
    raw = k.phys.load(pmd_table.pfn)
    idx = (BASE >> 21) & 511
    entry = int.from_bytes(raw[idx * 8:idx * 8 + 8], "little")
    assert entry == (pfn0 << 12) | 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x80 | 0x800 | (1 << 63)
    check(k)


def test_pmd_table_bytes_follow_huge_mappings_after_a_read():
    # the PMD table's frame, read before and after each change, shows the PSE entry
    # while the PMD mapping exists (the cached bytes are made again when it changes)
    k = boot()
    t = hugemap(k, 1024)
    t.access(BASE + H, True)  # a THP in the second 2 MiB: the PMD table exists
    pt = t.mm.pgtable
    frame = pt.tables[1][BASE >> 30].pfn
    i0, i1 = (BASE >> 21) & 511, ((BASE + H) >> 21) & 511

    def entry(i):
        raw = k.phys.load(frame)
        return int.from_bytes(raw[i * 8:i * 8 + 8], "little")

    assert entry(i0) == 0 and entry(i1) & 0x80
    t.access(BASE, True)
    assert entry(i0) & 0x80 and entry(i0) >> 12 & ((1 << 40) - 1) == pt.ptes[BASE >> 12] >> 12
    t.munmap(BASE, H)  # zap_huge_pmd
    assert entry(i0) == 0 and entry(i1) & 0x80
    t.mprotect(BASE + H + P, P, U.PROT_READ)  # split: a PTE table now
    assert entry(i1) & 0xFFF == 0x067 and entry(i1) >> 12 == pt.tables[0][(BASE + H) >> 21].pfn
    check(k)


def test_huge_fault_needs_pmd_none_and_the_whole_2mib_in_the_vma():
    k = boot(thp_enabled="always")
    t = k.spawn("t")
    # [BASE, BASE + 3 MiB): the second 2 MiB is not whole inside: 4 KiB pages there
    t.mmap(BASE, 3 << 20, RW, ANON | U.MAP_FIXED)
    t.access(BASE + (2 << 20), True)
    assert thp(k) == {}
    t.access(BASE, True)
    assert thp(k) == {"thp_fault_alloc": 1}
    # a PTE table already there (pmd not none): 4 KiB (__handle_mm_fault)
    t.mmap(BASE + (4 << 20), H, RW, ANON | U.MAP_FIXED)
    t.madvise(BASE + (4 << 20), P, U.MADV_NOHUGEPAGE)
    t.access(BASE + (4 << 20), True)  # VM_NOHUGEPAGE: 4 KiB, and a PTE table
    t.madvise(BASE + (4 << 20), P, U.MADV_HUGEPAGE)
    t.access(BASE + (4 << 20) + 8 * P, True)
    assert thp(k) == {"thp_fault_alloc": 1}
    check(k)


def test_a_droppable_thp_is_not_swap_backed():
    # folio_add_new_anon_rmap: VM_DROPPABLE (6.11) folios never get PG_swapbacked
    from guestkernel.page import PG_anon, PG_swapbacked

    k = boot(thp_enabled="always")
    t = k.spawn("t")
    t.mmap(BASE, H, RW, U.MAP_DROPPABLE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.access(BASE, True)
    assert thp(k) == {"thp_fault_alloc": 1}
    pfn = t.mm.pgtable.ptes[BASE >> 12] >> 12
    assert {k.mem_map[pfn + i].flags & (PG_anon | PG_swapbacked) for i in range(512)} == {PG_anon}
    check(k)


def test_allocation_failure_falls_back_to_4kib():
    # do_huge_pmd_anonymous_page: no order-9 block -> thp_fault_fallback, 4 KiB page
    k = boot(memory="128MiB", thp_defrag="never")
    held = []
    while True:
        page = k.alloc_pages(G.GFP_KERNEL | G.__GFP_NORETRY | G.__GFP_NOWARN, 9)
        if page is None:
            break
        held.append(page)
    t = hugemap(k)
    t.access(BASE, True)
    assert thp(k) == {"thp_fault_fallback": 1}
    assert not t.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    assert t.mm.rss[1] == 2  # one 4 KiB page and the stack's
    check(k)


def test_read_fault_maps_the_huge_zero_page_once_allocated():
    k = boot()
    t = hugemap(k)
    pgalloc = sum(z.pgalloc for z in k.page_alloc.zones)
    tables = t.mm.pgtable.nr_tables
    t.access(BASE, False)
    # mm_get_huge_zero_page: allocated on first use (thp_zero_page_alloc), 512 frames,
    # and the tables: the deposited one and those above the PMD (PUD, PMD)
    assert thp(k) == {"thp_zero_page_alloc": 1}
    assert t.mm.pgtable.nr_tables - tables == 3
    assert sum(z.pgalloc for z in k.page_alloc.zones) - pgalloc == 512 + 3
    assert t.mm.rss[1] == 1  # not in RSS
    assert smaps_kb(t, "Rss") == 4 and smaps_kb(t, "AnonHugePages") == 0
    u = hugemap(k) if False else k.spawn("u")
    u.mmap(BASE, H, RW, ANON | U.MAP_FIXED)
    u.madvise(BASE, H, U.MADV_HUGEPAGE)
    u.access(BASE + 7 * P, False)
    assert thp(k) == {"thp_zero_page_alloc": 1}  # the same huge zero page
    assert u.mm.pgtable.ptes[(BASE >> 12) + 7] >> 12 == t.mm.pgtable.ptes[(BASE >> 12) + 7] >> 12
    # a write (6.1 do_huge_pmd_wp_page): split the PMD, copy 4 KiB of zeros
    u.access(BASE + 7 * P, True)
    assert thp(k) == {"thp_zero_page_alloc": 1, "thp_split_pmd": 1}
    assert u.peek(BASE + 7 * P, 4) == b"\0\0\0\0"
    k.procfs.write("/sys/kernel/mm/transparent_hugepage/use_zero_page", "0")
    v = k.spawn("v")
    v.mmap(BASE, H, RW, ANON | U.MAP_FIXED)
    v.madvise(BASE, H, U.MADV_HUGEPAGE)
    v.access(BASE, False)  # use_zero_page 0: a read allocates a THP
    assert k.vmstat["thp_fault_alloc"] == 1
    check(k)


def test_huge_zero_page_is_freed_by_its_shrinker_once_no_mm_holds_it():
    from guestkernel.shrinker import ShrinkControl

    k = boot()
    t = hugemap(k, 512)
    t.access(BASE, False)
    zs = next(s for s in k.shrinkers.shrinkers if s.name == "thp-zero")
    sc = ShrinkControl(G.GFP_KERNEL)
    # the mm holds its reference (MMF_HUGE_ZERO_PAGE) until it exits, even unmapped
    t.munmap(BASE, H)
    assert zs.count_objects(sc) == 0
    pgfree = k.vmstat["pgfree"]
    t.exit(0)
    assert zs.count_objects(sc) == 512  # shrink_huge_zero_page_count: HPAGE_PMD_NR
    assert zs.scan_objects(sc) == 512
    assert k.vmstat["pgfree"] - pgfree >= 512 and k.thp.huge_zero_pfn == -1
    # the next read fault allocates it again
    u = hugemap(k, 512)
    u.access(BASE, False)
    assert thp(k) == {"thp_zero_page_alloc": 2}
    check(k)


def test_partial_munmap_defers_the_split_to_the_shrinker():
    k = boot()
    t = hugemap(k, 512)
    t.access_range(BASE, H, True)
    pgfree = k.vmstat["pgfree"]
    t.munmap(BASE + 100 * P, P)
    # __split_huge_pmd, then page_remove_rmap -> deferred_split_huge_page: the unmapped
    # subpage's memory stays with the folio
    assert thp(k) == {"thp_fault_alloc": 1, "thp_split_pmd": 1, "thp_deferred_split_page": 1}
    assert k.vmstat["pgfree"] == pgfree
    assert len(k.thp.split_queue) == 1
    check(k)
    # deferred_split_scan through shrink_slab: split_huge_page frees the unmapped one
    ds = next(s for s in k.shrinkers.shrinkers if s.name == "thp-deferred_split")
    from guestkernel.shrinker import ShrinkControl

    sc = ShrinkControl(G.GFP_KERNEL)
    assert ds.count_objects(sc) == 1
    sc.nr_to_scan = 1
    assert ds.scan_objects(sc) == 1
    assert k.vmstat["thp_split_page"] == 1 and not k.thp.split_queue and not k.thp.folios
    assert k.vmstat["pgfree"] == pgfree + 1
    assert smaps_kb(t, "Rss") == 2044 + 4
    check(k)
    # the 511 order-0 pages left are freed one by one
    t.munmap(BASE, H)
    check(k)


def test_zapping_a_whole_pmd_frees_the_folio_at_once():
    k = boot()
    t = hugemap(k, 512)
    t.access(BASE, True)
    pgfree = k.vmstat["pgfree"]
    tables = t.mm.pgtable.nr_tables
    t.munmap(BASE, H)
    assert thp(k) == {"thp_fault_alloc": 1}  # zap_huge_pmd: no split
    # the folio (one order-9 block), the deposited table (zap_deposited_table), and the
    # tables free_pgtables finds empty (the PMD table here)
    assert k.vmstat["pgfree"] - pgfree == 512 + 1 + (tables - 1 - t.mm.pgtable.nr_tables)
    assert tables - t.mm.pgtable.nr_tables == 2
    assert not k.thp.folios
    check(k)


def test_fork_shares_the_pmd_and_a_write_splits_it_then_reuse_after_exit():
    k = boot()
    t = hugemap(k, 512)
    t.access_range(BASE, H, True)
    c = k.tasks[t.fork()]
    # copy_huge_pmd: the child maps the same THP by its own PMD, both write-protected
    assert c.mm.pgtable.ptes[BASE >> 12] >> 12 == t.mm.pgtable.ptes[BASE >> 12] >> 12
    assert (BASE >> 21) in c.mm.pgtable.huge
    assert smaps_kb(c, "AnonHugePages") == 2048
    c.access(BASE + 3 * P, True)  # split the child's PMD, CoW 4 KiB
    assert thp(k) == {"thp_fault_alloc": 1, "thp_split_pmd": 1}
    assert smaps_kb(c, "AnonHugePages") == 0 and smaps_kb(t, "AnonHugePages") == 2048
    check(k)
    c.exit(0)
    # the parent's PMD is read-only but the THP is exclusive again: reused whole
    # (6.1: the child's split set PG_double_map, so its unmaps left every subpage
    # mapped through the parent's PMD: no deferred split)
    t.access(BASE + 9 * P, True)
    assert thp(k) == {"thp_fault_alloc": 1, "thp_split_pmd": 1}
    assert k.vmstat["pgreuse"] >= 1
    assert smaps_kb(t, "AnonHugePages") == 2048
    check(k)


def test_madvise_free_splits_a_partly_covered_thp():
    k = boot()
    t = hugemap(k)
    t.access_range(BASE, 2 * H, True)
    t.madvise(BASE, H, U.MADV_FREE)  # the whole first THP: lazily free, still huge
    assert thp(k) == {"thp_fault_alloc": 2}
    assert smaps_kb(t, "LazyFree") == 2048 and smaps_kb(t, "AnonHugePages") == 4096
    t.madvise(BASE + H, 16 * P, U.MADV_FREE)  # madvise_free_huge_pmd: split_folio
    assert thp(k) == {"thp_fault_alloc": 2, "thp_split_pmd": 1, "thp_split_page": 1}
    assert smaps_kb(t, "LazyFree") == 2048 + 64 and smaps_kb(t, "AnonHugePages") == 2048
    check(k)


def test_madvise_free_over_a_pte_mapped_thp_splits_it_if_exclusive_else_stops():
    """madvise_free_pte_range (6.1) meeting a large folio under a PTE table: with one
    estimated sharer (folio_estimated_sharers: its head's mapcount) it is split
    (split_folio) and the covered pages are lazily freed 4 KiB each; shared (mapped by
    a child after fork) the walk of that PMD stops (`break`): nothing is lazily freed
    and nothing splits."""
    k = boot()
    t = hugemap(k, 512)
    t.access_range(BASE, H, True)
    t.madvise(BASE + 100 * P, P, U.MADV_DONTNEED)  # the PMD split: PTE-mapped, whole
    assert thp(k) == {"thp_fault_alloc": 1, "thp_split_pmd": 1, "thp_deferred_split_page": 1}
    u = hugemap(k, 512)
    u.access_range(BASE, H, True)
    u.madvise(BASE + 100 * P, P, U.MADV_DONTNEED)
    child = k.tasks[u.fork()]
    lz0 = k.vmstat["pglazyfree"]
    u.madvise(BASE + 8 * P, 16 * P, U.MADV_FREE)  # shared with the child: break
    assert k.vmstat["pglazyfree"] == lz0 and k.vmstat["thp_split_page"] == 0
    assert smaps_kb(u, "LazyFree") == 0
    t.madvise(BASE + 8 * P, 16 * P, U.MADV_FREE)  # exclusive: split_folio, then 4 KiB
    assert k.vmstat["thp_split_page"] == 1 and k.vmstat["pglazyfree"] - lz0 == 16
    assert smaps_kb(t, "LazyFree") == 64
    assert child.mm is not None
    check(k)


def test_madv_cold_over_a_whole_thp_deactivates_the_folio_and_clears_its_pmd_young():
    """madvise_cold_or_pageout_pte_range (6.1), PMD-mapped THP wholly covered: the PMD's
    young bit is cleared (pmd_mkold), PG_referenced too, and deactivate_page moves the
    folio to the inactive list (PGDEACTIVATE counts its 512 pages); nothing splits."""
    from guestkernel.page import PG_active, PG_referenced
    from guestkernel.pgtable import _PAGE_ACCESSED

    k = boot()
    t = hugemap(k, 512)
    t.access_range(BASE, H, True)
    ptes = t.mm.pgtable.ptes
    pages = [k.mem_map[ptes[(BASE >> 12) + i] >> 12] for i in range(512)]
    for p in pages:
        k.reclaim.activate_page(p)
    d0 = k.vmstat["pgdeactivate"]
    assert t.madvise(BASE, H, U.MADV_COLD) == 0
    assert k.vmstat["pgdeactivate"] - d0 == 512
    assert not any(p.flags & (PG_active | PG_referenced) for p in pages)
    assert not any(ptes[(BASE >> 12) + i] & _PAGE_ACCESSED for i in range(512))
    assert all(ptes[(BASE >> 12) + i] & _PAGE_PSE for i in range(512))
    assert thp(k) == {"thp_fault_alloc": 1}
    check(k)


def test_madv_cold_stops_under_a_pmd_at_a_shared_pte_mapped_thp():
    """madvise_cold_or_pageout_pte_range (6.1), PTE level: a subpage of a still-whole THP
    mapped by another mm too (page_mapcount != 1) ends the walk of that PMD (`break`):
    nothing under it is split or deactivated; the next PMD, PMD-mapped, exclusive and
    covered in part, is split (split_huge_page)."""
    from guestkernel.page import PG_active

    k = boot()
    t = hugemap(k, 1024)
    t.access_range(BASE, 2 * H, True)
    t.mprotect(BASE + H - P, P, U.PROT_READ)  # first THP: PTE-mapped, folio whole
    child = k.tasks[t.fork()]
    child.munmap(BASE + H, H)  # the second THP is the parent's alone again
    t.access(BASE + 300 * P, True)  # CoW: an exclusive 4 KiB page under the first PMD
    ptes = t.mm.pgtable.ptes
    first = [k.mem_map[ptes[(BASE >> 12) + i] >> 12] for i in range(512)]
    assert first[300]._mapcount == 0 and first[8]._mapcount == 1
    for p in first:
        k.reclaim.activate_page(p)
    before = thp(k)
    t.madvise(BASE + 8 * P, H, U.MADV_COLD)  # the first THP's tail, the second's head
    got = thp(k)
    assert got["thp_split_page"] - before.get("thp_split_page", 0) == 1  # the second only
    assert len(k.thp.folios) == 1 and (first[0].pfn in k.thp.folios)
    assert all(p.flags & PG_active for p in first)  # the exclusive page 300 too
    assert smaps_kb(t, "AnonHugePages") == 0
    check(k)


def test_reclaim_splits_a_thp_before_swapping_it():
    k = boot(swap="64MiB")
    t = hugemap(k, 512)
    t.access_range(BASE, H, True)
    t.madvise(BASE, H, U.MADV_PAGEOUT)
    # shrink_folio_list: a rotational swap device has no clusters -> split the folio
    # (its PMD too: unmap_folio) and swap 4 KiB pages (thp_swpout_fallback)
    got = thp(k)
    assert got["thp_split_page"] == 1 and got["thp_split_pmd"] == 1
    assert got["thp_swpout_fallback"] == 1
    assert not k.thp.folios
    assert k.vmstat["pswpout"] >= 1
    check(k)


def test_khugepaged_collapses_within_max_ptes_none():
    k = boot()
    t = k.spawn("t")
    t.mmap(BASE, H, RW, ANON | U.MAP_FIXED)
    for i in range(0, 200, 2):  # 100 pages touched before the madvise: a PTE table
        t.access(BASE + i * P, True, bytes([i]) * P)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    k.procfs.write("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", "411")
    k.khugepaged.do_scan()
    # 412 empty PTEs > 411: thp_scan_exceed_none_pte, nothing collapsed
    assert thp(k) == {"thp_scan_exceed_none_pte": 1}
    k.procfs.write("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", "412")
    k.khugepaged.do_scan()
    assert thp(k) == {"thp_scan_exceed_none_pte": 1, "thp_collapse_alloc": 1}
    assert k.procfs.read("/sys/kernel/mm/transparent_hugepage/khugepaged/pages_collapsed") == "1\n"
    # the contents were copied, the holes zeroed; RSS is the whole 2 MiB now
    assert [t.peek(BASE + i * P, 1) for i in (0, 1, 198, 199, 300)] == [
        b"\x00", b"\x00", bytes([198]), b"\x00", b"\x00"]
    assert t.peek(BASE + 2 * P, 1) == b"\x02"
    assert smaps_kb(t, "AnonHugePages") == 2048 and smaps_kb(t, "Rss") == 2048 + 4
    check(k)


def test_khugepaged_needs_a_young_writable_page_and_respects_shared_limit():
    k = boot()
    t = k.spawn("t")
    t.mmap(BASE, H, RW, ANON | U.MAP_FIXED)
    t.access_range(BASE, 300 * P, True)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    c = k.tasks[t.fork()]  # 300 pages mapped twice: > max_ptes_shared (256)
    k.khugepaged.do_scan()
    # the parent's range and the child's (khugepaged_fork put the child on the list)
    assert thp(k) == {"thp_scan_exceed_share_pte": 2}
    c.exit(0)
    kh = k.khugepaged
    vma = t.mm.mm_mt.lookup(BASE)
    # every PTE still write-protected since the fork: SCAN_PAGE_RO
    assert kh.scan_pmd(t.mm, vma, BASE) == ("page_ro", False)
    t.access_range(BASE, 300 * P, True)  # exclusive again: do_wp_page reuses, writable
    # no accessed bit and no PG_referenced anywhere: SCAN_LACK_REFERENCED_PAGE
    ptes = t.mm.pgtable.ptes
    for v in range(BASE >> 12, (BASE >> 12) + 300):
        ptes[v] &= ~0x20
        k.mem_map[ptes[v] >> 12].flags &= ~(1 << 2)
    assert kh.scan_pmd(t.mm, vma, BASE) == ("lack_referenced_page", False)
    kh.do_scan()
    assert k.vmstat["thp_collapse_alloc"] == 0
    t.access(BASE, False)  # one young PTE is enough
    kh.do_scan()
    assert k.vmstat["thp_collapse_alloc"] == 1
    check(k)


def test_khugepaged_daemon_sleeps_scan_sleep_millisecs():
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="256MiB"), env=env)
    t = k.spawn("t")
    t.mmap(BASE, H, RW, ANON | U.MAP_FIXED)
    t.access_range(BASE, 10 * P, True)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)  # joins khugepaged's list, wakes it
    env.run(until=0.5)
    assert k.vmstat["thp_collapse_alloc"] == 1  # the first scan runs at once
    t.munmap(BASE, H)
    t.mmap(BASE, H, RW, ANON | U.MAP_FIXED)
    t.access_range(BASE, 10 * P, True)
    t.madvise(BASE, H, U.MADV_HUGEPAGE)
    env.run(until=9.9)
    assert k.vmstat["thp_collapse_alloc"] == 1
    env.run(until=10.5)  # the next wake-up, scan_sleep_millisecs later
    assert k.vmstat["thp_collapse_alloc"] == 2
    check(k)


def test_mprotect_whole_pmd_keeps_it_huge_part_splits_it():
    k = boot()
    t = hugemap(k)
    t.access_range(BASE, 2 * H, True)
    t.mprotect(BASE, H, U.PROT_READ)  # change_huge_pmd
    assert thp(k) == {"thp_fault_alloc": 2}
    t.mprotect(BASE + H + 10 * P, P, U.PROT_READ)  # vma_adjust_trans_huge
    assert thp(k) == {"thp_fault_alloc": 2, "thp_split_pmd": 1}
    assert smaps_kb(t, "AnonHugePages") == 2048
    check(k)


def test_a_vma_boundary_moved_by_a_merge_splits_the_pmd_under_it():
    # __vma_adjust -> vma_adjust_trans_huge: mprotect of [BASE + 1 MiB, BASE + 2 MiB) to
    # read-only merges it into the read-only VMA after it: the boundary moves into the
    # first THP, whose PMD is split; the second THP is not touched
    k = boot()
    t = k.spawn("t")
    t.mmap(BASE, 2 * H, RW, ANON | U.MAP_FIXED)
    t.madvise(BASE, 2 * H, U.MADV_HUGEPAGE)
    t.access_range(BASE, 2 * H, True)
    t.mprotect(BASE + H, H, U.PROT_READ)  # on 2 MiB: change_huge_pmd, no split
    assert t.mm.mm_mt.lookup(BASE).vm_end == BASE + H
    t.mprotect(BASE + (1 << 20), 1 << 20, U.PROT_READ)
    assert t.mm.mm_mt.lookup(BASE + (1 << 20)).vm_end == BASE + 2 * H  # merged
    assert thp(k) == {"thp_fault_alloc": 2, "thp_split_pmd": 1}
    assert smaps_kb(t, "AnonHugePages") == 2048
    check(k)


# --- the inlined first-touch path and its plain twin ------------------------------------
layout = st.lists(st.tuples(st.integers(0, 1023), st.sampled_from(["w", "r", "nohuge"])),
                  max_size=6)


@settings(max_examples=25, deadline=None)
@given(layout, st.integers(0, 1023), st.integers(1, 1024), st.sampled_from(["always", "madvise"]))
def test_access_range_with_thp_equals_the_fault_handler_page_by_page(pre, start, n, mode):
    # access_range's inlined demand-zero runs must leave exactly what handle_mm_fault
    # leaves page by page (MADV_POPULATE_WRITE) with THP on: same PTEs (PMD mappings
    # included), page fields, counters and RSS
    n = min(n, 1024 - start)
    states = []
    for populate in (False, True):
        k = boot(thp_enabled=mode)
        t = k.spawn("t")
        t.mmap(BASE, 1024 * P, RW, ANON | U.MAP_FIXED)
        if mode == "madvise":
            t.madvise(BASE, 1024 * P, U.MADV_HUGEPAGE)
        for page, what in pre:
            if what == "nohuge":
                t.madvise(BASE + page * P, P, U.MADV_NOHUGEPAGE)
            else:
                t.access(BASE + page * P, what == "w")
        if populate:
            t.madvise(BASE + start * P, n * P, U.MADV_POPULATE_WRITE)
        t.access_range(BASE + start * P, n * P, True)
        mm = t.mm
        pages = [(k.mem_map[pte >> 12].flags, k.mem_map[pte >> 12].index,
                  k.mem_map[pte >> 12]._mapcount, k.mem_map[pte >> 12]._count)
                 for v, pte in sorted(mm.pgtable.ptes.items()) if pte >> 12 != k.zero_pfn]
        states.append((dict(mm.pgtable.ptes), list(mm.rss), dict(k.vmstat), pages,
                       mm.pgtables_bytes, sorted(mm.pgtable.huge)))
        check(k)
    assert states[0] == states[1]
