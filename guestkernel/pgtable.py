"""Page tables: PTEs as ints, page-table pages from the page allocator (arch/x86 pgtable).

A PTE is an int: `pfn << 12 | bits`. The low twelve bits follow x86 where x86 has the bit
(present, RW, user, accessed, dirty); hvsim places NX (bit 63 on x86) and its software
bits in bits 8-10 so every PTE stays a small int. A swap entry is a non-present PTE with
_PAGE_SWP set and the entry (an int of the swap subsystem's choosing) above bit 12; a PTE
marker (a guard region's) is a non-present PTE with _PAGE_MARKER set. A PROT_NONE
mapping keeps its page with _PAGE_PROTNONE instead of _PAGE_PRESENT, as x86 does: present
for the kernel (pte_present), not for the MMU.

Overview
--------
The PTEs of one mm live in one dict vpn -> pte (vpn = address >> 12), which makes the
per-access path one dict lookup. The tree above them is kept only as bookkeeping, one
dict per level: table key -> Page, and key -> number of used entries. A key at level l is
vpn >> shift[l]: 512 entries per table on x86_64 (4 levels: PTE, PMD, PUD below the PGD)
and on i386 PAE (3 levels: PTE, PMD below a 4-entry PGD whose three user PMDs are
preallocated, as pgd_alloc does); 1024 on i386 (2 levels: PTE tables below the PGD).

Page-table pages come from `kernel.alloc_pages(GFP_KERNEL | __GFP_ZERO)` and are freed by
`free_pgtables` when munmap leaves a table with no VMA over its span, and all at exit.
Their bytes on the host are a `kmem.PgtablePage` each: the entries in the arch's format,
derived when something reads the frame; installing or clearing a PTE, and changing one
in place (`pte_changed`: accessed or dirty set, accessed cleared, write-protect, a swap
entry over it), only tests whether a host has read that table since (`fresh`), and if
so writes the frame once.
Every table below the PGD adds PAGE_SIZE to `pgtables_bytes`
(VmPTE, oom_badness); every table including the PGD counts in nr_page_table_pages.

Invariants (`validate`): counts equal the PTEs and child tables present; no PTE outside
a VMA; the mm's RSS counters equal what its PTEs map.
"""

from __future__ import annotations

from . import gfp as G
from .kmem import PgtablePage
from .memcontrol import memcg_kmem_charge_page, memcg_kmem_uncharge_page, mod_kmem_page_state
from .page import PG_anon, PG_pgtable, PG_swapbacked, PG_zero
from .units import PAGE_SHIFT, PAGE_SIZE

_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PSE = 0x080  # one of the 512 entries standing for a PMD mapping (x86's PSE bit there)
_PAGE_PROTNONE = 0x100  # pte_present() for the kernel, not the MMU (x86 reuses _PAGE_GLOBAL)
_PAGE_NX = 0x200  # no-execute (x86: bit 63)
_PAGE_SWP = 0x400  # non-present PTE holding a swap entry (hvsim)
_PAGE_MARKER = 0x800  # non-present PTE holding a PTE marker (hvsim, see below)
PTE_FLAGS_MASK = 0xFFF
# PTE markers (include/linux/swapops.h): Linux stores them as swap entries of the type
# SWP_PTE_MARKER; hvsim gives them their own non-present bit, so no swap path mistakes
# one for a swap slot, with the marker bits above bit 12. A guard marker (6.13,
# MADV_GUARD_INSTALL) makes a touch SIGSEGV and GUP fail with EFAULT; it is no page, so
# it counts in no RSS counter.
PTE_MARKER_UFFD_WP = 0x1
PTE_MARKER_POISONED = 0x2
PTE_MARKER_GUARD = 0x4
PTE_GUARD = (PTE_MARKER_GUARD << 12) | _PAGE_MARKER
PTE_PRESENT_MASK = _PAGE_PRESENT | _PAGE_PROTNONE

HPAGE_PMD_ORDER = 9  # a PMD maps 2 MiB (x86_64)
HPAGE_PMD_NR = 1 << HPAGE_PMD_ORDER

NO_DEPOSIT = -1  # PageTable.huge: a PMD mapping with no deposited table (a file THP on x86)
MM_FILEPAGES = 0
MM_ANONPAGES = 1
MM_SWAPENTS = 2
MM_SHMEMPAGES = 3
NR_MM_COUNTERS = 4

GFP_PGTABLE_USER = G.GFP_KERNEL_ACCOUNT | G.__GFP_ZERO
_NEVER_FRESH: frozenset = frozenset()  # a PageTable without kernel content: never fresh


def pte_pfn(pte: int) -> int:
    return pte >> PAGE_SHIFT


def pte_present(pte: int) -> bool:
    return bool(pte & PTE_PRESENT_MASK)


def is_swap_pte(pte: int) -> bool:
    return bool(pte & _PAGE_SWP) and not pte & PTE_PRESENT_MASK


def is_guard_pte(pte: int) -> bool:
    return bool(pte & _PAGE_MARKER) and bool((pte >> PAGE_SHIFT) & PTE_MARKER_GUARD)


def swp_entry_to_pte(entry: int) -> int:
    return (entry << PAGE_SHIFT) | _PAGE_SWP


def pte_to_swp_entry(pte: int) -> int:
    return pte >> PAGE_SHIFT


def mk_pte(pfn: int, accessible: bool, writable: bool, executable: bool) -> int:
    """A PTE for `pfn`. `accessible` False gives a PROT_NONE PTE."""
    pte = (pfn << PAGE_SHIFT) | _PAGE_USER | _PAGE_ACCESSED
    pte |= _PAGE_PRESENT if accessible else _PAGE_PROTNONE
    if writable:
        pte |= _PAGE_RW
    if not executable:
        pte |= _PAGE_NX
    return pte


# Per-arch geometry: shifts of the table keys below the PGD, lowest level first.
def table_shifts(arch: str, pae: bool) -> tuple[int, ...]:
    if arch == "x86_64":
        return (9, 18, 27)  # PTE, PMD, PUD tables; PGD on top: 4 levels
    if pae:
        return (9, 18)  # PTE, PMD; 4-entry PGD: 3 levels
    return (10,)  # PTE tables of 1024 entries under the PGD: 2 levels


def pgtable_levels(arch: str, pae: bool) -> int:
    return len(table_shifts(arch, pae)) + 1


class PageTable:
    """The page table of one mm. `ptes` is the hot dict vpn -> pte."""

    __slots__ = ("kernel", "ptes", "shifts", "tables", "counts", "pte_shift", "pte_counts",
                 "pgd", "bytes", "pinned", "nr_tables", "kmem", "fresh", "huge", "recipes")

    def __init__(self, kernel, arch: str = "x86_64", pae: bool = False) -> None:
        self.kernel = kernel
        self.ptes: dict[int, int] = {}
        self.shifts = table_shifts(arch, pae)
        self.tables: list[dict] = [{} for _ in self.shifts]
        self.counts: list[dict] = [{} for _ in self.shifts]
        self.pte_shift = self.shifts[0]
        self.pte_counts = self.counts[0]
        self.bytes = 0  # pgtables_bytes: tables below the PGD, bytes
        self.nr_tables = 0  # every table page including the PGD
        self.pinned: set = set()  # (level, key) never freed before teardown (PAE PMDs)
        # PMD mappings (huge_memory.py): PMD key (vpn >> 9) -> the page-table page
        # deposited for its split (pgtable_trans_huge_deposit); its 512 PTE-dict entries
        # carry _PAGE_PSE and no PTE table lies below
        self.huge: dict = {}
        # the tables' bytes on the host (kmem.PgtablePage); `fresh`: frames a host has
        # read since their last change (the per-PTE test: is it empty?)
        self.kmem = kmem = getattr(kernel, "kmem", None)
        self.fresh = kmem.fresh if kmem is not None else _NEVER_FRESH
        # table page pfn -> its PgtablePage, one per table while it lives (its bytes cache
        # carries from one write of the frame to the next)
        self.recipes: dict[int, PgtablePage] = {}
        self.pgd = self._alloc_table_page()
        if self.pgd is False:
            raise MemoryError("pgd_alloc: out of memory")
        if kmem is not None and self.pgd is not None:
            recipe = self.recipes[self.pgd.pfn] = PgtablePage(kmem, self, len(self.shifts), 0, self.pgd)
            kmem.store(self.pgd.pfn, recipe)
        if arch == "i386" and pae:
            # pgd_alloc preallocates the PMDs of the 3 GiB user part (PREALLOCATED_PMDS)
            top = len(self.shifts) - 1
            for key in range(3):
                if not self._alloc_table(top, key):
                    raise MemoryError("pgd_alloc: out of memory")
                self.pinned.add((top, key))

    # -- table pages -------------------------------------------------------------------
    def _alloc_table_page(self):
        k = self.kernel
        if k is None:
            page = None
        else:
            page = k.alloc_pages(GFP_PGTABLE_USER)
            if page is None:
                return False
            # __alloc_pages' __GFP_ACCOUNT: charged to current's memcg (not the root's)
            if memcg_kmem_charge_page(k, page, GFP_PGTABLE_USER, 0):
                k.free_pages(page)
                return False
            mod_kmem_page_state(k, page, "pagetables", 1)
            page.flags |= PG_pgtable
            k.vmstat["nr_page_table_pages"] += 1
        self.nr_tables += 1
        return page

    def _free_table_page(self, page) -> None:
        k = self.kernel
        self.nr_tables -= 1
        if k is None or page is None:
            return
        self.recipes.pop(page.pfn, None)
        page.flags &= ~PG_pgtable
        k.vmstat["nr_page_table_pages"] -= 1
        mod_kmem_page_state(k, page, "pagetables", -1)
        memcg_kmem_uncharge_page(k, page, 0)  # free_pages_prepare: PageMemcgKmem
        k.free_pages(page)

    def _alloc_table(self, level: int, key: int) -> bool:
        page = self._alloc_table_page()
        if page is False:
            return False
        self.tables[level][key] = page
        self.counts[level][key] = 0
        self.bytes += PAGE_SIZE
        if level + 1 < len(self.shifts):
            up = self.counts[level + 1]
            pkey = key >> (self.shifts[level + 1] - self.shifts[level])
            up[pkey] += 1
        else:
            pkey = 0
        kmem = self.kmem
        if kmem is not None and page is not None:
            recipe = self.recipes[page.pfn] = PgtablePage(kmem, self, level, key, page)
            kmem.store(page.pfn, recipe)
            if self.fresh:
                self._table_changed(level + 1, pkey)
        return True

    def _table_changed(self, level: int, key: int) -> None:
        """A table's entries changed: if a host has read its frame since, write it again."""
        page = self.pgd if level == len(self.shifts) else self.tables[level].get(key)
        if page is not None and page.pfn in self.fresh:
            self.kmem.changed(page.pfn, self._recipe(level, key, page))

    def _recipe(self, level: int, key: int, page) -> PgtablePage:
        recipe = self.recipes.get(page.pfn)
        if recipe is None or recipe.page is not page or recipe.level != level or recipe.key != key:
            recipe = self.recipes[page.pfn] = PgtablePage(self.kmem, self, level, key, page)
        return recipe

    def _free_table(self, level: int, key: int) -> None:
        page = self.tables[level].pop(key)
        del self.counts[level][key]
        self.bytes -= PAGE_SIZE
        self._free_table_page(page)
        if level + 1 < len(self.shifts):
            pkey = key >> (self.shifts[level + 1] - self.shifts[level])
            self.counts[level + 1][pkey] -= 1
        else:
            pkey = 0
        if self.fresh:
            self._table_changed(level + 1, pkey)

    def alloc_pte_table(self, vpn: int) -> bool:
        """Make sure the tables down to the PTE table for `vpn` exist (__pte_alloc)."""
        shifts = self.shifts
        for level in range(len(shifts) - 1, -1, -1):
            key = vpn >> shifts[level]
            if key not in self.counts[level] and not self._alloc_table(level, key):
                return False
        return True

    # -- PTEs ------------------------------------------------------------------------------
    def set_pte_new(self, vpn: int, pte: int) -> bool:
        """Install a PTE where there was none; False if a table page could not be had."""
        key = vpn >> self.pte_shift
        c = self.pte_counts.get(key)
        if c is None:
            if not self.alloc_pte_table(vpn):
                return False
            c = 0
        self.pte_counts[key] = c + 1
        self.ptes[vpn] = pte
        if self.fresh:
            self._table_changed(0, key)
        return True

    def pte_changed(self, vpn: int) -> None:
        """The installed PTE at `vpn` changed in place (accessed or dirty set by an
        access, accessed cleared by page_referenced, write-protected by fork, mprotect
        or clear_refs, a swap entry written over it or a page mapped over its swap
        entry): if a host has read its PTE table since the table last changed, write
        that frame once (kmem.changed). Called on each such transition, never per
        access: an access that finds its bits already set changes nothing."""
        if self.fresh:
            key = vpn >> self.pte_shift
            page = self.tables[0].get(key)
            if page is not None:
                if page.pfn in self.fresh:
                    self.kmem.changed(page.pfn, self._recipe(0, key, page))
            elif key in self.huge and not vpn & (HPAGE_PMD_NR - 1):
                # a PMD mapping: its entry in the PMD table shows the first subpage's bits
                self._table_changed(1, vpn >> self.shifts[1])

    def clear_pte(self, vpn: int) -> int:
        """pte_clear: remove the PTE (which must exist); returns the old value."""
        pte = self.ptes.pop(vpn)
        self.pte_counts[vpn >> self.pte_shift] -= 1
        if self.fresh:
            self._table_changed(0, vpn >> self.pte_shift)
        return pte

    # -- PMD mappings (transparent huge pages) ---------------------------------------------
    def set_pmd_huge(self, hvpn: int, pfn: int, bits: int, deposit: bool = True) -> bool:
        """Map 512 frames from `pfn` at the 2 MiB-aligned `hvpn` with one PMD entry
        (set_pmd_at) and deposit a zeroed table page for its split (counted in
        pgtables_bytes: mm_inc_nr_ptes). `deposit` False: a file PMD, which x86 maps
        without one (arch_needs_pgtable_deposit; its split clears the PMD): NO_DEPOSIT
        stands in `huge`. False if a table page could not be had."""
        shifts = self.shifts
        for level in range(len(shifts) - 1, 0, -1):
            key = hvpn >> shifts[level]
            if key not in self.counts[level] and not self._alloc_table(level, key):
                return False
        if deposit:
            dep = self._alloc_table_page()
            if dep is False:
                return False
            self.bytes += PAGE_SIZE
        else:
            dep = NO_DEPOSIT
        self.huge[hvpn >> shifts[0]] = dep
        pkey = hvpn >> shifts[1]
        self.counts[1][pkey] += 1
        ptes = self.ptes
        low = (bits & PTE_FLAGS_MASK) | _PAGE_PSE
        for i in range(HPAGE_PMD_NR):
            ptes[hvpn + i] = ((pfn + i) << PAGE_SHIFT) | low
        if self.fresh:
            self._table_changed(1, pkey)
        return True

    def zap_pmd_huge(self, hvpn: int) -> None:
        """Remove the PMD mapping at hvpn and free its deposited table (zap_deposited_table)."""
        key = hvpn >> self.shifts[0]
        dep = self.huge.pop(key)
        ptes = self.ptes
        for v in range(hvpn, hvpn + HPAGE_PMD_NR):
            del ptes[v]
        pkey = hvpn >> self.shifts[1]
        self.counts[1][pkey] -= 1
        if dep is not NO_DEPOSIT:
            self.bytes -= PAGE_SIZE
            self._free_table_page(dep)
        if self.fresh:
            self._table_changed(1, pkey)

    def move_pmd_huge(self, hvpn: int, new_hvpn: int) -> bool:
        """move_huge_pmd: the PMD mapping and its deposited table move to new_hvpn
        (2 MiB-aligned, no mapping there). False if a table page could not be had."""
        shifts = self.shifts
        for level in range(len(shifts) - 1, 0, -1):
            key = new_hvpn >> shifts[level]
            if key not in self.counts[level] and not self._alloc_table(level, key):
                return False
        dep = self.huge.pop(hvpn >> shifts[0])
        self.huge[new_hvpn >> shifts[0]] = dep
        old_p, new_p = hvpn >> shifts[1], new_hvpn >> shifts[1]
        self.counts[1][old_p] -= 1
        self.counts[1][new_p] += 1
        ptes = self.ptes
        for i in range(HPAGE_PMD_NR):
            ptes[new_hvpn + i] = ptes.pop(hvpn + i)
        if self.fresh:
            self._table_changed(1, old_p)
            self._table_changed(1, new_p)
        return True

    def collapse_pmd_huge(self, hvpn: int, pfn: int, bits: int) -> None:
        """collapse_huge_page's end: the (emptied) PTE table under the PMD is deposited
        and the PMD maps 512 frames from `pfn` (pgtable_trans_huge_deposit, set_pmd_at)."""
        key = hvpn >> self.shifts[0]
        dep = self.tables[0].pop(key)
        del self.pte_counts[key]
        self.huge[key] = dep
        ptes = self.ptes
        low = (bits & PTE_FLAGS_MASK) | _PAGE_PSE
        for i in range(HPAGE_PMD_NR):
            ptes[hvpn + i] = ((pfn + i) << PAGE_SHIFT) | low
        kmem = self.kmem
        if kmem is not None and dep is not None and dep.pfn in self.fresh:
            kmem.changed(dep.pfn, PgtablePage(kmem, self, 0, key, dep))  # now all zeros
        if self.fresh:
            self._table_changed(1, hvpn >> self.shifts[1])

    def split_pmd_huge(self, hvpn: int, zero_pfn: int) -> None:
        """__split_huge_pmd_locked: the deposited table becomes the PTE table under the
        PMD with the 512 entries in it (pgtable_trans_huge_withdraw + pmd_populate).
        `zero_pfn` >= 0: the huge zero page's entries become the 4 KiB zero page's."""
        key = hvpn >> self.shifts[0]
        dep = self.huge.pop(key)
        self.tables[0][key] = dep
        self.pte_counts[key] = HPAGE_PMD_NR
        ptes = self.ptes
        if zero_pfn >= 0:
            for v in range(hvpn, hvpn + HPAGE_PMD_NR):
                ptes[v] = (zero_pfn << PAGE_SHIFT) | (ptes[v] & PTE_FLAGS_MASK & ~_PAGE_PSE)
        else:
            for v in range(hvpn, hvpn + HPAGE_PMD_NR):
                ptes[v] &= ~_PAGE_PSE
        kmem = self.kmem
        if kmem is not None and dep is not None:
            kmem.store(dep.pfn, PgtablePage(kmem, self, 0, key, dep))
        if self.fresh:
            self._table_changed(1, hvpn >> self.shifts[1])

    def free_pgtables(self, start: int, end: int, floor: int, ceiling: int) -> int:
        """Free the empty tables over [start, end) whose whole span lies in [floor, ceiling)
        (free_pgd_range: the neighbouring VMAs' tables stay). Addresses in bytes.
        Returns the number of table pages freed."""
        freed = 0
        svpn, evpn = start >> PAGE_SHIFT, (end + PAGE_SIZE - 1) >> PAGE_SHIFT
        fvpn, cvpn = floor >> PAGE_SHIFT, ceiling >> PAGE_SHIFT
        for level, shift in enumerate(self.shifts):
            counts = self.counts[level]
            lo, hi = svpn >> shift, ((evpn - 1) >> shift) + 1
            if hi - lo > len(counts):
                keys = [k for k in counts if lo <= k < hi]
            else:
                keys = [k for k in range(lo, hi) if k in counts]
            for key in sorted(keys):
                if counts[key] or (level, key) in self.pinned:
                    continue
                if (key << shift) >= fvpn and ((key + 1) << shift) <= cvpn:
                    self._free_table(level, key)
                    freed += 1
        return freed

    def free_all(self) -> None:
        """Tear the whole tree down (exit_mmap after every PTE is gone)."""
        for key in sorted(self.huge):
            dep = self.huge.pop(key)
            if dep is not NO_DEPOSIT:
                self.bytes -= PAGE_SIZE
                self._free_table_page(dep)
        for level in range(len(self.shifts)):
            for key in sorted(self.tables[level]):
                page = self.tables[level].pop(key)
                self.bytes -= PAGE_SIZE
                self._free_table_page(page)
            self.counts[level].clear()
        self.pinned.clear()
        if self.pgd is not None:
            self._free_table_page(self.pgd)
        else:
            self.nr_tables -= 1
        self.pgd = None

    # -- invariants ---------------------------------------------------------------------------
    def validate(self, mm) -> None:
        from .vma import MMInvariantError

        want: dict[int, int] = {}
        huge = self.huge
        for vpn, pte in self.ptes.items():
            k = vpn >> self.pte_shift
            if k in huge:
                if not pte & _PAGE_PSE:
                    raise MMInvariantError(f"validate_mm: PTE at {vpn << PAGE_SHIFT:#x} under a huge PMD")
                if mm is not None and mm.mm_mt.lookup(vpn << PAGE_SHIFT) is None:
                    raise MMInvariantError(f"validate_mm: PMD mapping at {vpn << PAGE_SHIFT:#x} outside any VMA")
                continue
            if pte & _PAGE_PSE:
                raise MMInvariantError(f"validate_mm: PSE entry at {vpn << PAGE_SHIFT:#x} without a PMD mapping")
            want[k] = want.get(k, 0) + 1
            if mm is not None and mm.mm_mt.lookup(vpn << PAGE_SHIFT) is None:
                raise MMInvariantError(f"validate_mm: PTE at {vpn << PAGE_SHIFT:#x} outside any VMA")
        for k, n in self.pte_counts.items():
            if want.get(k, 0) != n:
                raise MMInvariantError(f"validate_mm: PTE table {k:#x} counts {n}, has {want.get(k, 0)}")
        for k in want:
            if k not in self.pte_counts:
                raise MMInvariantError(f"validate_mm: PTEs without a PTE table at key {k:#x}")
        for k in huge:
            if k in self.pte_counts:
                raise MMInvariantError(f"validate_mm: PMD {k:#x} both huge and a PTE table")
            hv = k << HPAGE_PMD_ORDER
            vma = mm.mm_mt.lookup(hv << PAGE_SHIFT) if mm is not None else None
            if mm is not None and (vma is None or vma.vm_end < (hv + HPAGE_PMD_NR) << PAGE_SHIFT):
                raise MMInvariantError(f"validate_mm: PMD mapping {k:#x} not inside one VMA")
            for v in range(hv, hv + HPAGE_PMD_NR):
                if not self.ptes.get(v, 0) & _PAGE_PSE:
                    raise MMInvariantError(f"validate_mm: PMD mapping {k:#x} lacks entry {v - hv}")
        for level in range(1, len(self.shifts)):
            d = self.shifts[level] - self.shifts[level - 1]
            kids: dict[int, int] = {}
            for k in self.counts[level - 1]:
                kids[k >> d] = kids.get(k >> d, 0) + 1
            if level == 1:
                for k in huge:
                    kids[k >> d] = kids.get(k >> d, 0) + 1
            for k, n in self.counts[level].items():
                if kids.get(k, 0) != n:
                    raise MMInvariantError(f"validate_mm: level {level} table {k:#x} counts {n}")
            for k in kids:
                if k not in self.counts[level]:
                    raise MMInvariantError(f"validate_mm: level {level} table {k:#x} missing")
        ntab = sum(len(t) for t in self.counts) + sum(1 for d in huge.values() if d is not NO_DEPOSIT)
        if self.bytes != ntab * PAGE_SIZE:
            raise MMInvariantError(f"validate_mm: pgtables_bytes {self.bytes} for {ntab} tables")
        if mm is None or self.kernel is None:
            return
        rss = [0] * NR_MM_COUNTERS
        mem_map = self.kernel.mem_map
        for pte in self.ptes.values():
            if pte & PTE_PRESENT_MASK:
                page = mem_map[pte >> PAGE_SHIFT]
                if page.flags & PG_zero:
                    continue
                if page.flags & PG_anon:
                    rss[MM_ANONPAGES] += 1
                elif page.flags & PG_swapbacked:
                    rss[MM_SHMEMPAGES] += 1
                else:
                    rss[MM_FILEPAGES] += 1
            elif pte & _PAGE_SWP:
                rss[MM_SWAPENTS] += 1
        if rss != list(mm.rss):
            raise MMInvariantError(f"validate_mm: rss counters {list(mm.rss)} but PTEs map {rss}")
