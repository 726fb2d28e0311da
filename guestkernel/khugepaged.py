"""khugepaged: collapsing 4 KiB mappings into transparent huge pages (mm/khugepaged.c, 6.1).

Overview
--------
An mm joins khugepaged's list (`enter`: khugepaged_enter_vma) when one of its VMAs may
have huge pages (hugepage_vma_check with the sysfs setting enforced, the VMA holding at
least one aligned 2 MiB): at mmap, brk, MADV_HUGEPAGE, a huge fault, and at fork if the
parent was on the list. The daemon wakes every `scan_sleep_millisecs` and examines up to
`pages_to_scan` pages (khugepaged_do_scan): mm by mm in list order, VMA by VMA from where
it stopped, each aligned 2 MiB of an eligible VMA costing 512 pages of progress and each
VMA or mm visited one (khugepaged_scan_mm_slot); passing the list's end counts a full
scan (full_scans).

A 2 MiB range is collapsed (hpage_collapse_scan_pmd) only if a PTE table maps it (a PMD
that is none or already huge is skipped) and its 512 PTEs allow it: at most
`max_ptes_none` empty or zero-page PTEs (thp_scan_exceed_none_pte), at most
`max_ptes_swap` swap entries (thp_scan_exceed_swap_pte), at most `max_ptes_shared` pages
mapped more than once (thp_scan_exceed_share_pte); every present page anonymous, on the
LRU and without extra references; at least one PTE writable; at least one page young
(accessed bit, PG_referenced), at least half of them if any PTE is swapped out.

collapse_huge_page then allocates the huge page (GFP_TRANSHUGE with khugepaged/defrag
set, else GFP_TRANSHUGE_LIGHT: thp_collapse_alloc or thp_collapse_alloc_failed, after
which the daemon sleeps `alloc_sleep_millisecs`), reads the swapped-out pages back,
copies every present page into it and zeroes the rest (512 writes the host sees; each
copy costs the VM's page_copy_cost and each zeroing its page_zero_cost of khugepaged's
CPU on a vCPU), frees
the small pages, and maps the 2 MiB with one PMD; the emptied PTE table becomes the
deposited one. pages_collapsed counts the huge pages made.

Shmem (6.1 hpage_collapse_scan_file, collapse_file, retract_page_tables). A shmem VMA is
eligible where shmem_huge_enabled says so (shmem_is_huge at its pgoff, its start and pgoff
agreeing modulo 2 MiB); the mm joins the list as an anonymous one does (with
transparent_hugepage/enabled not never). Its aligned 2 MiB is scanned in the page cache,
not the page table: the 512 indices from the range's file offset, counting swap entries
(more than max_ptes_swap: thp_scan_exceed_swap_pte) and present pages, each on the LRU
with no reference but the cache's and its mappings' (SCAN_PAGE_LRU, SCAN_PAGE_COUNT); a
page of a huge folio ends the scan (SCAN_PTE_MAPPED_HUGEPAGE when that folio starts at
the range, else SCAN_PAGE_COMPOUND); fewer than 512 - max_ptes_none present:
thp_scan_exceed_none_pte. collapse_file allocates the huge page (thp_collapse_alloc /
_failed), swaps the swapped indices in (shmem_get_folio SGP_NOALLOC), unmaps every
present page from every PTE (try_to_unmap with TTU_IGNORE_MLOCK: a VM_LOCKED VMA's too,
the page munlocked; a PMD fault there mlocks the new folio), copies each into its subpage and zeroes the
holes (khugepaged's CPU as above; Shmem and the file pages grow by the holes), puts the
new folio in the cache in their place (dirty, on the LRU as one entry, ShmemHugePages),
and retract_page_tables frees the emptied PTE table of every mapping with the range
2 MiB-aligned and no anon_vma, so the next fault there maps the folio by one PMD. The
file scan drops mmap_lock: the mm's scan stops after it and resumes there. A range whose
huge folio a PTE table maps (SCAN_PTE_MAPPED_HUGEPAGE) is queued on the mm's slot (at
most 8, counted in pages_collapsed) and at the slot's next scan collapse_pte_mapped_thp
drops those PTEs and frees the table, so the next fault maps a PMD.

Regular files (CONFIG_READ_ONLY_THP_FOR_FS, 6.1). A file VMA is eligible where
file_thp_enabled holds (VM_EXEC, the inode open for writing by no struct file, a regular
file) and the sysfs setting allows it (always; madvise with VM_HUGEPAGE). The scan is
shmem's, a shadow entry (an xarray value) counting as shmem's swap entries do. collapse_file
then reads the missing indices in (page_cache_sync_readahead over the rest of the range:
its I/O is khugepaged's wait) and fails on a page dirty (starting the file's writeback:
filemap_flush) or under writeback,
off the LRU, or with references beyond the cache's once unmapped (page_ref_freeze at 3:
the scan's, the cache's, the isolation's); it copies every page (no hole: nr_none is 0),
puts the clean folio in the cache (nr_file_hugepages, the mapping's nr_thps; on the file
LRU as one entry) unless the file was opened for writing meanwhile (SCAN_FAIL), and
retracts the page tables. thp_file_alloc is not counted (6.1 counts it for shmem only).
retract_page_tables returns the scanning mapping's own result, which is what
pages_collapsed counts (a collapse whose scanner had no PTE table there, or an anon_vma,
is not counted).

MADV_COLLAPSE (madvise_collapse, 6.1) runs the same scans and collapses synchronously in
the caller, with collapse_control.is_khugepaged false: hugepage_vma_check without the sysfs
setting, no max_ptes_* limits and no young-page test, GFP_TRANSHUGE, and the caller's PMD
installed at once (retract_page_tables' set_huge_pmd; collapse_pte_mapped_thp with
install_pmd); 0 when every aligned 2 MiB of the range is a THP, else ENOMEM, EAGAIN or
EINVAL as madvise_collapse_errno says.
"""

from __future__ import annotations

from . import uapi as U
from .huge_memory import GFP_TRANSHUGE, GFP_TRANSHUGE_LIGHT, HPAGE_PMD_SIZE, add_new_anon_huge_rmap
from .memory import (
    VM_FAULT_ERROR,
    handle_mm_fault,
    page_remove_rmap,
    put_page,
    vma_pte_bits,
)
from .page import PG_anon, PG_lru, PG_referenced, PG_swapbacked, PG_swapcache, PG_thpfile, PG_uptodate
from .pgtable import (
    _PAGE_ACCESSED,
    _PAGE_RW,
    _PAGE_SWP,
    HPAGE_PMD_NR,
    HPAGE_PMD_ORDER,
    MM_ANONPAGES,
    PTE_PRESENT_MASK,
)
from .units import PAGE_SHIFT
from .vma import VM_WRITE

KHUGEPAGED_CPU = -3  # khugepaged's CPU in vmscan's isolated-pages log (a kernel thread)

SCAN_SUCCEED = "succeed"
SCAN_PMD_NULL = "pmd_null"  # no PTE table: nothing to collapse
SCAN_PMD_MAPPED = "pmd_mapped"  # already a huge page
SCAN_EXCEED_NONE_PTE = "exceed_none_pte"
SCAN_EXCEED_SWAP_PTE = "exceed_swap_pte"
SCAN_EXCEED_SHARED_PTE = "exceed_shared_pte"
SCAN_PAGE_RO = "page_ro"
SCAN_LACK_REFERENCED_PAGE = "lack_referenced_page"
SCAN_PAGE_NULL = "page_null"
SCAN_PAGE_LRU = "page_lru"
SCAN_PAGE_ANON = "page_anon"
SCAN_PAGE_COUNT = "page_count"
SCAN_ALLOC_HUGE_PAGE_FAIL = "alloc_huge_page_fail"
SCAN_CGROUP_CHARGE_FAIL = "cgroup_charge_fail"
SCAN_VMA_CHECK = "vma_check"
SCAN_FAIL = "fail"
SCAN_PTE_MAPPED_HUGEPAGE = "pte_mapped_hugepage"
SCAN_PAGE_COMPOUND = "page_compound"
SCAN_PTE_NON_PRESENT = "pte_non_present"
MAX_PTE_MAPPED_THP = 8  # an mm slot's queue of PTE-mapped THPs (mm/khugepaged.c)
# madvise_collapse's "whitelisted set of results where continuing OK" (6.1; hvsim has no
# uffd-wp, page lock or separate LRU-isolation result)
_MADV_COLLAPSE_GO_ON = frozenset({SCAN_PMD_NULL, SCAN_PTE_NON_PRESENT, SCAN_PAGE_RO,
                                  SCAN_LACK_REFERENCED_PAGE, SCAN_PAGE_NULL, SCAN_PAGE_COUNT,
                                  SCAN_PAGE_COMPOUND, SCAN_PAGE_LRU})


class Khugepaged:
    """The scan state (khugepaged_scan) and its list of mms (mm_slots)."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.thp = kernel.thp
        self.mm_slots: dict = {}  # mm -> None, in the order they entered
        self.mm_slot = None  # khugepaged_scan.mm_slot: the mm being scanned
        self.address = 0  # khugepaged_scan.address, bytes
        self.daemon = None  # the SimPy process, once started
        self.cost = 0.0  # seconds of copying and zeroing not yet slept off
        self.iowait = 0.0  # seconds of file reads (collapse_file's readahead) not yet slept off
        # collapse_control.is_khugepaged: false while madvise_collapse runs (MADV_COLLAPSE:
        # no max_ptes_* limits, no young-page test, GFP_TRANSHUGE, the PMD installed)
        self.is_khugepaged = True
        self.pte_mapped_thp: dict = {}  # mm -> addresses queued (mm_slot->pte_mapped_thp)

    # -- the list --------------------------------------------------------------------------
    def enter_vma(self, vma) -> None:
        """khugepaged_enter_vma: put the VMA's mm on the list if the VMA may collapse."""
        mm = vma.vm_mm
        if mm in self.mm_slots or not self.thp.on:
            return
        if self.thp.vma_allowed(vma, in_pf=False):
            self.enter(mm)

    def enter(self, mm) -> None:
        """__khugepaged_enter: the first mm on an empty list wakes the daemon."""
        if mm in self.mm_slots:
            return
        wake = not self.mm_slots
        self.mm_slots[mm] = None
        if wake and self.daemon is not None:
            self.daemon.wake()

    def fork(self, mm, oldmm) -> None:
        """khugepaged_fork: the child joins if the parent is on the list."""
        if oldmm in self.mm_slots:
            self.enter(mm)

    def exit(self, mm) -> None:
        """khugepaged_exit: an exiting mm leaves the list."""
        if mm in self.mm_slots:
            if self.mm_slot is mm:
                self._next_slot(mm)
            self.mm_slots.pop(mm, None)
            self.pte_mapped_thp.pop(mm, None)

    def wake(self) -> None:
        """A sysfs write of a sleep time wakes the daemon (wake_up_interruptible)."""
        if self.daemon is not None:
            self.daemon.wake()

    def has_work(self) -> bool:
        return bool(self.mm_slots) and self.thp.on

    def _next_slot(self, mm) -> None:
        slots = list(self.mm_slots)
        i = slots.index(mm)
        if i + 1 < len(slots):
            self.mm_slot = slots[i + 1]
            self.address = 0
        else:
            self.mm_slot = None
            self.thp.full_scans += 1

    # -- one wake-up ----------------------------------------------------------------------
    def do_scan(self) -> str:
        """khugepaged_do_scan: up to pages_to_scan pages of progress. Returns the last
        result (SCAN_ALLOC_HUGE_PAGE_FAIL makes the daemon sleep alloc_sleep_millisecs)."""
        pages = self.thp.pages_to_scan
        progress = 0
        pass_through_head = 0
        result = SCAN_SUCCEED
        while True:
            if self.mm_slot is None:
                pass_through_head += 1
            if self.has_work() and pass_through_head < 2:
                p, result = self.scan_mm_slot(pages - progress)
                progress += p
            else:
                progress = pages
            if progress >= pages:
                break
            if result == SCAN_ALLOC_HUGE_PAGE_FAIL:
                break  # (Linux sleeps alloc_sleep once in here; the daemon does it)
        return result

    def scan_mm_slot(self, pages: int) -> tuple[int, str]:
        """khugepaged_scan_mm_slot: continue with the current mm from `address`."""
        if self.mm_slot is None or self.mm_slot not in self.mm_slots:
            self.mm_slot = next(iter(self.mm_slots))
            self.address = 0
        mm = self.mm_slot
        self.collapse_pte_mapped_thps(mm)
        result = SCAN_FAIL
        progress = 1
        thp = self.thp
        done_mm = True
        for vma in list(mm.mm_mt.vmas):
            if vma.vm_end <= self.address:
                continue
            if not thp.vma_allowed(vma, in_pf=False):
                progress += 1
                continue
            hstart = (vma.vm_start + HPAGE_PMD_SIZE - 1) & ~(HPAGE_PMD_SIZE - 1)
            hend = vma.vm_end & ~(HPAGE_PMD_SIZE - 1)
            if self.address > hend:
                progress += 1
                continue
            if self.address < hstart:
                self.address = hstart
            stop = False
            file = vma.vm_file is not None  # (!vma_is_anonymous: shmem or a regular file)
            while self.address < hend:
                if file:
                    # hpage_collapse_scan_file: mmap_lock dropped, the mm's scan stops
                    result, collapsed_tried = self.scan_file(vma, self.address), True
                else:
                    result, collapsed_tried = self.scan_pmd(mm, vma, self.address)
                if result == SCAN_PTE_MAPPED_HUGEPAGE:
                    # a huge folio mapped by PTEs here: queued for
                    # collapse_pte_mapped_thp if a PTE table maps the range (counted
                    # as collapsed then)
                    result = self._find_pmd(mm, self.address)
                    if result == SCAN_SUCCEED and self.add_pte_mapped_thp(mm, self.address):
                        thp.pages_collapsed += 1
                elif result == SCAN_SUCCEED:
                    thp.pages_collapsed += 1
                self.address += HPAGE_PMD_SIZE
                progress += HPAGE_PMD_NR
                if collapsed_tried or progress >= pages:
                    # collapse_huge_page dropped mmap_lock: break out, resume here later
                    stop = True
                    break
            if stop:
                done_mm = False
                break
        if done_mm:
            self._next_slot(mm)
        return progress, result

    # -- one PMD -----------------------------------------------------------------------------
    def scan_pmd(self, mm, vma, address: int) -> tuple[str, bool]:
        """hpage_collapse_scan_pmd; then collapse_huge_page if the range qualifies.
        Returns (result, whether a collapse was attempted)."""
        k = self.kernel
        thp = self.thp
        vm = k.vmstat
        pt = mm.pgtable
        hvpn = address >> PAGE_SHIFT
        key = hvpn >> pt.pte_shift
        if key in pt.huge:
            return SCAN_PMD_MAPPED, False
        if key not in pt.pte_counts:
            return SCAN_PMD_NULL, False
        ptes = pt.ptes
        mem_map = k.mem_map
        zero_pfn = k.zero_pfn
        none_or_zero = unmapped = shared = referenced = 0
        writable = False
        for v in range(hvpn, hvpn + HPAGE_PMD_NR):
            pte = ptes.get(v, 0)
            if pte & _PAGE_SWP and not pte & PTE_PRESENT_MASK:
                unmapped += 1
                if not self.is_khugepaged or unmapped <= thp.max_ptes_swap:
                    continue
                vm["thp_scan_exceed_swap_pte"] += 1
                return SCAN_EXCEED_SWAP_PTE, False
            if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
                if pte and not pte & PTE_PRESENT_MASK:
                    return SCAN_PAGE_NULL, False  # a marker (guard region)
                none_or_zero += 1
                if not self.is_khugepaged or none_or_zero <= thp.max_ptes_none:
                    continue
                vm["thp_scan_exceed_none_pte"] += 1
                return SCAN_EXCEED_NONE_PTE, False
            if pte & _PAGE_RW:
                writable = True
            page = mem_map[pte >> PAGE_SHIFT]
            if page._mapcount > 0 and self.is_khugepaged:
                shared += 1
                if shared > thp.max_ptes_shared:
                    vm["thp_scan_exceed_share_pte"] += 1
                    return SCAN_EXCEED_SHARED_PTE, False
            f = page.flags
            if not f & PG_lru:
                return SCAN_PAGE_LRU, False
            if not f & PG_anon:
                return SCAN_PAGE_ANON, False
            if page._count != page._mapcount + 1 + (1 if f & PG_swapcache else 0):
                return SCAN_PAGE_COUNT, False  # is_refcount_suitable
            if pte & _PAGE_ACCESSED or f & PG_referenced:
                referenced += 1
        if not writable:
            return SCAN_PAGE_RO, False
        if self.is_khugepaged and (not referenced or (unmapped and referenced < HPAGE_PMD_NR // 2)):
            return SCAN_LACK_REFERENCED_PAGE, False
        return self.collapse_huge_page(mm, vma, address, unmapped), True

    def collapse_huge_page(self, mm, vma, address: int, unmapped: int) -> str:
        k = self.kernel
        thp = self.thp
        vm = k.vmstat
        gfp = GFP_TRANSHUGE if thp.khugepaged_defrag or not self.is_khugepaged else GFP_TRANSHUGE_LIGHT
        head = thp.alloc_folio(gfp)
        if head is None:
            vm["thp_collapse_alloc_failed"] += 1
            return SCAN_ALLOC_HUGE_PAGE_FAIL
        vm["thp_collapse_alloc"] += 1
        base = head.pfn
        memcgs = getattr(k, "memcgs", None)
        if memcgs is not None and memcgs.active:
            # alloc_charge_hpage: mem_cgroup_charge(hpage, mm): the mm owner's memcg
            owner = next((t for t in k.tasks.values() if t.mm is mm), None)
            memcg = memcgs.task_memcg(owner) if owner is not None else None
            if not memcgs.charge(head, HPAGE_PMD_NR, gfp, memcg or memcgs.root):
                self._drop(base)
                return SCAN_CGROUP_CHARGE_FAIL
        if k.memcg is not None:
            # alloc_charge_hpage: the charge's PGPGIN, count_memcg_page_event
            # (THP_COLLAPSE_ALLOC). (A collapse that fails later frees the folio
            # without counting its uncharge.)
            k.memcg.rstat_ones(2)
        # hugepage_vma_revalidate
        if (mm.mm_mt.lookup(address) is not vma
                or not thp.vma_allowed(vma, in_pf=False, enforce=self.is_khugepaged)
                or address < vma.vm_start or address + HPAGE_PMD_SIZE > vma.vm_end):
            self._drop(base)
            return SCAN_VMA_CHECK
        pt = mm.pgtable
        ptes = pt.ptes
        hvpn = address >> PAGE_SHIFT
        if unmapped:
            # __collapse_huge_page_swapin: fault the swapped-out pages back in
            task = next((t for t in k.tasks.values() if t.mm is mm), None)
            for v in range(hvpn, hvpn + HPAGE_PMD_NR):
                pte = ptes.get(v, 0)
                if pte & _PAGE_SWP and not pte & PTE_PRESENT_MASK:
                    if task is None or handle_mm_fault(task, vma, v << PAGE_SHIFT, False) & VM_FAULT_ERROR:
                        self._drop(base)
                        return SCAN_FAIL
        mem_map = k.mem_map
        zero_pfn = k.zero_pfn
        # __collapse_huge_page_isolate: the pages must still qualify
        shared = nr_isolated = 0
        for v in range(hvpn, hvpn + HPAGE_PMD_NR):
            pte = ptes.get(v, 0)
            if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
                if pte and not pte & PTE_PRESENT_MASK:
                    self._drop(base)
                    return SCAN_FAIL
                continue
            page = mem_map[pte >> PAGE_SHIFT]
            f = page.flags
            if page._mapcount > 0 and self.is_khugepaged:
                shared += 1
                if shared > thp.max_ptes_shared:
                    self._drop(base)
                    return SCAN_EXCEED_SHARED_PTE
            if (not f & PG_anon or not f & PG_lru
                    or page._count != page._mapcount + 1 + (1 if f & PG_swapcache else 0)):
                self._drop(base)
                return SCAN_PAGE_COUNT
            nr_isolated += 1
        # __collapse_huge_page_copy: copy or zero each subpage, release the small pages
        phys = k.phys
        cost = 0.0
        rss = mm.rss
        # the pages __collapse_huge_page_isolate took count in NR_ISOLATED_ANON until
        # each is copied and released (6.1 mod_node_page_state; release_pte_page): the
        # seconds into the copy at which each is released, for reclaimers beside
        # khugepaged (a kernel thread) or beside MADV_COLLAPSE's task on another CPU
        reclaim = getattr(k, "reclaim", None)
        released = ([] if reclaim is not None and reclaim.v6 and k.env is not None
                     and (self.is_khugepaged or len(reclaim.direct_clock) > 1) else None)
        first_src = -1
        vm["nr_isolated_anon"] += nr_isolated
        for i in range(HPAGE_PMD_NR):
            v = hvpn + i
            dst = base + i
            pte = ptes.get(v, 0)
            if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
                cost += phys.zero(dst)  # clear_user_highpage: page_zero_cost of CPU
                if pte:
                    pt.clear_pte(v)
                continue
            src = pte >> PAGE_SHIFT
            cost += phys.touch(src, False)
            cost += phys.copy(dst, src)  # copy_user_highpage
            if released is not None:
                released.append(cost)
                if first_src < 0:
                    first_src = src
            pt.clear_pte(v)
            page = mem_map[src]
            page_remove_rmap(k, page)
            if page.flags & PG_swapcache and page._mapcount == -1:
                fsc = getattr(k, "free_swap_cache", None)
                if fsc is not None:
                    fsc(page)
            rss[MM_ANONPAGES] -= 1
            put_page(k, page)
        vm["nr_isolated_anon"] -= nr_isolated
        if released:
            self._note_isolated(reclaim, released, first_src)
        self.cost += cost
        if pt.pte_counts.get(hvpn >> pt.pte_shift):
            raise AssertionError("collapse_huge_page: PTEs left in the table")
        # the emptied PTE table becomes the deposited one; one PMD maps the folio
        pt.collapse_pmd_huge(hvpn, base, vma_pte_bits(vma.vm_flags, bool(vma.vm_flags & VM_WRITE)))
        av = vma.anon_vma
        add_new_anon_huge_rmap(k, vma, av, base, address)
        thp.pmd_mapped(thp.folios[base])
        vm["nr_anon_pages"] += HPAGE_PMD_NR
        if k.memcg is not None:
            k.memcg.rstat_updated(HPAGE_PMD_NR)  # page_add_new_anon_rmap: NR_ANON_MAPPED
        rss[MM_ANONPAGES] += HPAGE_PMD_NR
        return SCAN_SUCCEED

    def _note_isolated(self, reclaim, released: list, pfn: int) -> None:
        """Log the collapse's isolated anonymous pages (vmscan's `isolating`) from the
        copy's start in khugepaged's own time (now + the scan's cost so far) until each
        is released, in groups of COMPACT_CLUSTER_MAX pages each counted until its last
        page is released (hvsim: at most 31 copies' time longer than Linux)."""
        k = self.kernel
        at = k.env.now + self.cost
        cpu = KHUGEPAGED_CPU if self.is_khugepaged else k.current_cpu
        nid = k.page_alloc.zone_of(pfn).node.nid
        note = reclaim.note_isolated
        for j in range(0, len(released), 32):
            chunk = released[j:j + 32]
            note(at, at + chunk[-1], len(chunk), False, cpu, nid)

    # -- shmem: one aligned 2 MiB of the page cache -------------------------------------
    def scan_file(self, vma, address: int) -> str:
        """hpage_collapse_scan_file (6.1) over the 512 indices the aligned 2 MiB at
        `address` maps; collapse_file if they qualify."""
        thp = self.thp
        vm = self.kernel.vmstat
        mapping = vma.vm_file.inode.mapping
        start = vma.vm_pgoff + ((address - vma.vm_start) >> PAGE_SHIFT)
        pages = mapping.pages
        sw = mapping.swapped
        if not vma.vm_file.inode.shmem and mapping.ws is not None and mapping.ws.shadows:
            sw = mapping.ws.shadows  # a regular file's values are shadow entries
        present = swap = 0
        for i in range(start, start + HPAGE_PMD_NR):
            if sw and i in sw:  # xa_is_value: a swap entry
                swap += 1
                if self.is_khugepaged and swap > thp.max_ptes_swap:
                    vm["thp_scan_exceed_swap_pte"] += 1
                    return SCAN_EXCEED_SWAP_PTE
                continue
            page = pages.get(i)
            if page is None:
                continue
            if page.flags & PG_thpfile:  # PageTransCompound
                folio = thp.shmem_folio_of(page.pfn)
                return SCAN_PTE_MAPPED_HUGEPAGE if folio.index == start else SCAN_PAGE_COMPOUND
            if not page.flags & PG_lru:
                return SCAN_PAGE_LRU
            if page._count != 1 + page._mapcount + 1:  # 1 + page_mapcount (+ private: none)
                return SCAN_PAGE_COUNT
            present += 1
        if self.is_khugepaged and present < HPAGE_PMD_NR - thp.max_ptes_none:
            vm["thp_scan_exceed_none_pte"] += 1
            return SCAN_EXCEED_NONE_PTE
        if not vma.vm_file.inode.shmem:
            return self.collapse_file_ro(vma, start)
        return self.collapse_file(vma, mapping, start)

    def collapse_file(self, vma, mapping, start: int) -> str:
        """collapse_file (6.1) for shmem: a new 2 MiB folio takes the place of the small
        pages of indices [start, start + 512)."""
        from .filemap import delete_from_page_cache, set_page_dirty, shmem_acct_block, shmem_charge_blocks
        from .memory import try_to_unmap

        k = self.kernel
        vm = k.vmstat
        head, result = self._alloc_charge_hpage(vma)
        if head is None:
            return result
        base = head.pfn
        pages = mapping.pages
        end = start + HPAGE_PMD_NR
        # swapped indices: shmem_get_folio(SGP_NOALLOC) swaps them in
        sw = mapping.swapped
        if sw:
            for i in range(start, end):
                if i in sw:
                    page, _wait, _major = k.swap.shmem_swapin(mapping, i)
                    if page is None:
                        self._free_hpage(head)
                        return SCAN_FAIL
        old = [pages.get(i) for i in range(start, end)]
        for page in old:  # (the scan's tests again, under the xarray lock)
            if page is None:
                continue
            if page.flags & PG_thpfile or not page.flags & PG_lru:
                self._free_hpage(head)
                return SCAN_PAGE_LRU
            if page._count != 1 + page._mapcount + 1:
                self._free_hpage(head)
                return SCAN_PAGE_COUNT
        host = mapping.host
        nr_none = sum(p is None for p in old)
        if host.noreserve and nr_none and not shmem_acct_block(k, host, nr_none):
            self._free_hpage(head)
            return SCAN_FAIL  # shmem_charge of the holes: ENOSPC (a full tmpfs mount)
        for page in old:
            # try_to_unmap(TTU_IGNORE_MLOCK | TTU_BATCH_FLUSH): the PTEs go, those of
            # VM_LOCKED VMAs too (the page munlocked with its last mapping); they refault
            if page is not None and page._mapcount >= 0:
                try_to_unmap(k, page, None, ignore_mlock=True)
        # copy the present pages, zero the holes (clear_highpage), drop the small pages
        phys = k.phys
        cost = 0.0
        for i, page in enumerate(old):
            dst = base + i
            if page is None:
                cost += phys.zero(dst)
                continue
            cost += phys.touch(page.pfn, False)
            cost += phys.copy(dst, page.pfn)  # copy_highpage
            delete_from_page_cache(k, page)
        if host.noreserve:
            shmem_charge_blocks(k, host, HPAGE_PMD_NR - nr_none)  # (the copied pages' blocks)
        self.cost += cost
        # the new folio in the page cache: uptodate, dirty, one LRU entry
        subpages = self._add_folio_to_cache(base, mapping, start, PG_swapbacked)
        vm["nr_file_pages"] += HPAGE_PMD_NR
        vm["nr_shmem"] += HPAGE_PMD_NR
        vm["nr_shmem_hugepages"] += 1
        if k.memcg is not None:
            # collapse_file: NR_SHMEM_THPS; NR_FILE_PAGES and NR_SHMEM (the folio's pages)
            k.memcg.rstat_updated(HPAGE_PMD_NR)
            k.memcg.rstat_updated(HPAGE_PMD_NR)
            k.memcg.rstat_updated(HPAGE_PMD_NR)
        for p in subpages:
            set_page_dirty(k, p)  # (folio_mark_dirty)
        k.lru_cache_add(subpages[0])
        return self.retract_page_tables(mapping, start, vma.vm_mm, self._linear_address(vma, start))

    def _alloc_charge_hpage(self, vma=None):
        """alloc_charge_hpage: the order-9 block of a collapse (GFP_TRANSHUGE, or
        GFP_TRANSHUGE_LIGHT for khugepaged with khugepaged/defrag 0), counted in
        thp_collapse_alloc / thp_collapse_alloc_failed, then charged to the memcg of the
        VMA's mm owner (mem_cgroup_charge; current's without one). Returns (head, None),
        or (None, SCAN_ALLOC_HUGE_PAGE_FAIL / SCAN_CGROUP_CHARGE_FAIL)."""
        k = self.kernel
        light = self.is_khugepaged and not self.thp.khugepaged_defrag
        gfp = GFP_TRANSHUGE_LIGHT if light else GFP_TRANSHUGE
        head = k.alloc_pages(gfp, HPAGE_PMD_ORDER)
        k.vmstat["thp_collapse_alloc_failed" if head is None else "thp_collapse_alloc"] += 1
        if head is None:
            return None, SCAN_ALLOC_HUGE_PAGE_FAIL
        memcgs = getattr(k, "memcgs", None)
        if memcgs is not None and memcgs.active:
            mm = vma.vm_mm if vma is not None else None
            owner = next((t for t in k.tasks.values() if t.mm is mm), None) if mm is not None else None
            memcg = (memcgs.task_memcg(owner) or memcgs.root) if owner is not None else None
            if not memcgs.charge(head, HPAGE_PMD_NR, gfp, memcg):
                k.free_pages(head, HPAGE_PMD_ORDER)
                return None, SCAN_CGROUP_CHARGE_FAIL
        if k.memcg is not None:
            # the charge's PGPGIN, count_memcg_page_event(THP_COLLAPSE_ALLOC)
            k.memcg.rstat_ones(2)
        return head, None

    def _free_hpage(self, head) -> None:
        """A collapse target that was not used: uncharged (if it was), freed."""
        k = self.kernel
        memcgs = getattr(k, "memcgs", None)
        if memcgs is not None and memcgs.active:
            memcgs.uncharge_range(head.pfn, HPAGE_PMD_NR)
        if k.memcg is not None:
            k.memcg.rstat_updated(1)  # the uncharge's PGPGOUT (one per folio)
        k.free_pages(head, HPAGE_PMD_ORDER)

    def _add_folio_to_cache(self, base: int, mapping, start: int, flags: int) -> list:
        """The collapsed folio at pfn `base` takes indices [start, start + 512) of the
        page cache (the multi-index xas_store): each subpage uptodate, PG_thpfile (and
        `flags`), the cache's one reference; the folio registered whole. Returns its
        subpages."""
        from .huge_memory import ShmemFolio

        pfn_to_page = self.kernel.page_alloc.pfn_to_page
        pages = mapping.pages
        subpages = []
        for i in range(HPAGE_PMD_NR):
            p = pfn_to_page(base + i)
            p._count = 1
            p.flags |= PG_uptodate | PG_thpfile | flags
            p.mapping = mapping
            p.index = start + i
            pages[start + i] = p
            subpages.append(p)
        self.thp.shmem_folios[base] = ShmemFolio(base, mapping, start)
        return subpages

    @staticmethod
    def _linear_address(vma, pgoff: int) -> int:
        return vma.vm_start + ((pgoff - vma.vm_pgoff) << PAGE_SHIFT)

    def collapse_file_ro(self, vma, start: int) -> str:
        """collapse_file (6.1) for a regular file (READ_ONLY_THP_FOR_FS): a clean 2 MiB
        folio takes the place of the pages of indices [start, start + 512), every one of
        them read in first."""
        from .filemap import delete_from_page_cache
        from .memory import try_to_unmap
        from .page import PG_dirty, PG_writeback
        from .readahead import page_cache_sync_ra

        k = self.kernel
        thp = self.thp
        vm = k.vmstat
        file = vma.vm_file
        inode = file.inode
        mapping = inode.mapping
        head, result = self._alloc_charge_hpage(vma)
        if head is None:
            return result
        base = head.pfn
        pages = mapping.pages
        end = start + HPAGE_PMD_NR
        old = []
        for index in range(start, end):
            page = pages.get(index)
            if page is None:
                # page_cache_sync_readahead(mapping, &file->f_ra, file, index, end - index),
                # then find_lock_page (none: beyond EOF, or no memory)
                _, cost = page_cache_sync_ra(k, inode, file.f_ra, file.fmode_random, index, end - index)
                self.iowait += cost
                page = pages.get(index)
                if page is None:
                    self._free_hpage(head)
                    return SCAN_FAIL
            f = page.flags
            if f & (PG_dirty | PG_writeback):
                self._free_hpage(head)
                if f & PG_dirty and getattr(k, "reclaim", None) is not None:
                    # written since the last writeback (a read-only fd now): filemap_flush
                    # starts the file's writeback, a later visit may find it clean
                    k.reclaim.filemap_flush(mapping)
                return SCAN_FAIL
            if f & PG_thpfile:
                folio = thp.shmem_folio_of(page.pfn)
                self._free_hpage(head)
                return SCAN_PTE_MAPPED_HUGEPAGE if folio.index == start else SCAN_PAGE_COMPOUND
            if not f & PG_lru:
                self._free_hpage(head)
                return SCAN_FAIL  # folio_isolate_lru failed: SCAN_DEL_PAGE_LRU
            old.append(page)
        for page in old:
            # try_to_unmap(TTU_IGNORE_MLOCK: VM_LOCKED mappings too, the page munlocked
            # with its last one), then page_ref_freeze(page, 3): nothing but the cache may
            # hold it once unmapped
            if page._mapcount >= 0:
                try_to_unmap(k, page, None, ignore_mlock=True)
            if page._count != 1 or page._mapcount >= 0:
                self._free_hpage(head)
                return SCAN_PAGE_COUNT
        if inode.i_writecount > 0:
            # the file was opened for writing meanwhile (the smp_mb() pairing with
            # do_dentry_open): roll back
            self._free_hpage(head)
            return SCAN_FAIL
        phys = k.phys
        cost = 0.0
        for i, page in enumerate(old):
            cost += phys.touch(page.pfn, False)
            cost += phys.copy(base + i, page.pfn)  # copy_highpage
            delete_from_page_cache(k, page)
        self.cost += cost
        subpages = self._add_folio_to_cache(base, mapping, start, 0)  # (not swap-backed, not dirty)
        vm["nr_file_pages"] += HPAGE_PMD_NR
        vm["nr_file_hugepages"] += 1  # NR_FILE_THPS
        if k.memcg is not None:
            k.memcg.rstat_updated(HPAGE_PMD_NR)  # collapse_file: NR_FILE_THPS
            k.memcg.rstat_updated(HPAGE_PMD_NR)  # NR_FILE_PAGES (the folio's pages)
        if not inode.fs.large_folios:
            mapping.nr_thps += 1  # filemap_nr_thps_inc
        k.lru_cache_add(subpages[0])  # lru_cache_add: the file LRU, one entry
        return self.retract_page_tables(mapping, start, vma.vm_mm, self._linear_address(vma, start))

    # -- MADV_COLLAPSE ---------------------------------------------------------------------
    def madvise_collapse(self, vma, start: int, end: int) -> int:
        """madvise_collapse (6.1) over [start, end) inside `vma`: the same scans and
        collapses as khugepaged's, run synchronously with collapse_control.is_khugepaged
        false (hugepage_vma_check without the sysfs setting; no max_ptes_none/swap/shared
        limit, no young-page test; GFP_TRANSHUGE; the target's PMD installed at once).
        Each aligned 2 MiB: SCAN_SUCCEED or SCAN_PMD_MAPPED counts a THP;
        SCAN_PTE_MAPPED_HUGEPAGE runs collapse_pte_mapped_thp with install_pmd; the
        whitelisted failures go on to the next range; any other ends the walk. Returns 0
        when every range is a THP, else madvise_collapse_errno of the last failure
        (ENOMEM: no huge page; EAGAIN: a page busy or off the LRU; EINVAL otherwise)."""
        from .huge_memory import HPAGE_PMD_MASK, transhuge_vma_suitable

        thp = self.thp
        if not thp.vma_allowed(vma, in_pf=False, enforce=False):
            return U.EINVAL
        mm = vma.vm_mm
        hstart = (start + HPAGE_PMD_SIZE - 1) & HPAGE_PMD_MASK
        hend = end & HPAGE_PMD_MASK
        thps = 0
        last_fail = SCAN_FAIL
        locked = True
        self.is_khugepaged = False
        try:
            addr = hstart
            while addr < hend:
                if not locked:  # hugepage_vma_revalidate after mmap_lock was dropped
                    vma = mm.mm_mt.find_vma(addr)
                    if vma is None or vma.vm_start > addr:
                        last_fail = "vma_null"
                        break
                    if not transhuge_vma_suitable(vma, addr):
                        last_fail = "address_range"
                        break
                    if not thp.vma_allowed(vma, in_pf=False, enforce=False):
                        last_fail = SCAN_VMA_CHECK
                        break
                    hend = min(hend, vma.vm_end & HPAGE_PMD_MASK)
                    locked = True
                if vma.vm_file is not None:
                    result = self.scan_file(vma, addr)
                    locked = False
                else:
                    result, tried = self.scan_pmd(mm, vma, addr)
                    locked = not tried  # collapse_huge_page drops mmap_lock
                if result == SCAN_PTE_MAPPED_HUGEPAGE:
                    result = self.collapse_pte_mapped_thp(mm, addr, install_pmd=True)
                if result in (SCAN_SUCCEED, SCAN_PMD_MAPPED):
                    thps += 1
                elif result in _MADV_COLLAPSE_GO_ON:
                    last_fail = result
                else:
                    last_fail = result
                    break
                addr += HPAGE_PMD_SIZE
        finally:
            self.is_khugepaged = True
        if thps == (hend - hstart) >> (PAGE_SHIFT + HPAGE_PMD_ORDER):
            return 0
        if last_fail == SCAN_ALLOC_HUGE_PAGE_FAIL:
            return U.ENOMEM
        if last_fail in (SCAN_PAGE_COUNT, SCAN_PAGE_LRU):  # (and SCAN_PAGE_LOCK, _DEL_PAGE_LRU)
            return U.EAGAIN
        return U.EINVAL

    @staticmethod
    def _find_pmd(mm, addr: int) -> str:
        """find_pmd_or_thp_or_none: a PTE table (SCAN_SUCCEED), a huge PMD or none."""
        pt = mm.pgtable
        key = (addr >> PAGE_SHIFT) >> pt.pte_shift
        if key in pt.huge:
            return SCAN_PMD_MAPPED
        return SCAN_SUCCEED if key in pt.pte_counts else SCAN_PMD_NULL

    def add_pte_mapped_thp(self, mm, addr: int) -> bool:
        """khugepaged_add_pte_mapped_thp: at most MAX_PTE_MAPPED_THP a slot."""
        q = self.pte_mapped_thp.setdefault(mm, [])
        if len(q) >= MAX_PTE_MAPPED_THP:
            return False
        q.append(addr)
        return True

    def collapse_pte_mapped_thps(self, mm) -> None:
        """khugepaged_collapse_pte_mapped_thps: the slot's queue, at the start of its scan."""
        q = self.pte_mapped_thp.pop(mm, None)
        if q:
            for addr in q:
                self.collapse_pte_mapped_thp(mm, addr)

    def collapse_pte_mapped_thp(self, mm, haddr: int, install_pmd: bool = False) -> str:
        """collapse_pte_mapped_thp (6.1): where every present PTE of the aligned 2 MiB
        maps its subpage of the huge folio at that file offset, the PTEs go
        (page_remove_rmap, the mappings' references and MM_SHMEMPAGES / MM_FILEPAGES) and
        the table is freed (collapse_and_free_pmd), so the next fault maps a PMD;
        `install_pmd` (MADV_COLLAPSE) maps it now (set_huge_pmd -> do_set_pmd)."""
        from .huge_memory import transhuge_vma_suitable
        from .pgtable import MM_FILEPAGES, MM_SHMEMPAGES
        from .vma import VM_NOHUGEPAGE

        k = self.kernel
        thp = self.thp
        pt = mm.pgtable
        hvpn = haddr >> PAGE_SHIFT
        key = hvpn >> pt.pte_shift
        if key in pt.huge:
            return SCAN_PMD_MAPPED
        vma = mm.mm_mt.lookup(haddr)
        if (vma is None or vma.vm_file is None or haddr < vma.vm_start
                or haddr + HPAGE_PMD_SIZE > vma.vm_end):
            return SCAN_VMA_CHECK
        inode = vma.vm_file.inode
        # hugepage_vma_check without the sysfs setting: shmem_huge_enabled(force), or a
        # regular file's file_thp_enabled
        if (vma.vm_flags & VM_NOHUGEPAGE or getattr(mm, "thp_disabled", False)
                or (inode.shmem and thp.shmem_enabled == "deny")
                or (not inode.shmem and not thp.file_thp_enabled(vma))
                or not transhuge_vma_suitable(vma, vma.vm_end - HPAGE_PMD_SIZE)
                or ((vma.vm_start >> PAGE_SHIFT) - vma.vm_pgoff) & (HPAGE_PMD_NR - 1)):
            return SCAN_VMA_CHECK
        page = inode.mapping.pages.get(vma.vm_pgoff + ((haddr - vma.vm_start) >> PAGE_SHIFT))
        if page is None:
            return SCAN_PAGE_NULL
        folio = thp.shmem_folio_of(page.pfn)
        if folio is None or folio.pfn != page.pfn:
            return SCAN_FAIL  # not a huge folio's head
        if key not in pt.pte_counts:
            # SCAN_PMD_NONE: nothing to remove
            return self._set_huge_pmd(mm, vma, haddr, folio) if install_pmd else SCAN_SUCCEED
        ptes = pt.ptes
        count = 0
        for i in range(HPAGE_PMD_NR):  # step 1: every mapped PTE to the right subpage
            pte = ptes.get(hvpn + i, 0)
            if not pte:
                continue
            if not pte & PTE_PRESENT_MASK:
                return SCAN_PTE_NON_PRESENT
            if pte >> PAGE_SHIFT != folio.pfn + i:
                return SCAN_FAIL
            count += 1
        mem_map = k.mem_map
        for i in range(HPAGE_PMD_NR):  # step 2-4: rmap, references, counters, PTEs
            if ptes.get(hvpn + i, 0):
                pt.clear_pte(hvpn + i)
                p = mem_map[folio.pfn + i]
                page_remove_rmap(k, p)
                p._count -= 1
        mm.rss[MM_SHMEMPAGES if inode.shmem else MM_FILEPAGES] -= count
        pt.free_pgtables(haddr, haddr + HPAGE_PMD_SIZE, haddr, haddr + HPAGE_PMD_SIZE)
        return self._set_huge_pmd(mm, vma, haddr, folio) if install_pmd else SCAN_SUCCEED

    def _set_huge_pmd(self, mm, vma, haddr: int, folio) -> str:
        """set_huge_pmd (6.1): do_set_pmd as a read fault would (thp_file_mapped)."""
        from .huge_memory import do_set_pmd

        return SCAN_FAIL if do_set_pmd(self.kernel, mm, vma, haddr, folio, False, False) else SCAN_SUCCEED

    def retract_page_tables(self, mapping, pgoff: int, target_mm=None, target_addr: int = -1) -> str:
        """retract_page_tables (6.1): every VMA mapping index pgoff at a 2 MiB-aligned
        address with the whole 2 MiB inside it, and no anon_vma, has its (now empty) PTE
        table there freed (collapse_and_free_pmd), so a fault maps the folio by a PMD.
        MADV_COLLAPSE (not khugepaged) retracts only the target mapping, installing its PMD
        at once (set_huge_pmd), and queues the others on their mm's slot
        (khugepaged_add_pte_mapped_thp). Returns the target's result (SCAN_FAIL if no
        VMA at the target was reached; a missing PTE table is SCAN_PMD_NULL, as
        _find_pmd says)."""
        target_result = SCAN_FAIL
        folio = None
        for vma in list(mapping.i_mmap):
            if vma.anon_vma is not None or pgoff < vma.vm_pgoff:
                continue  # (SCAN_PAGE_ANON / not in the interval: never the target's result)
            addr = vma.vm_start + ((pgoff - vma.vm_pgoff) << PAGE_SHIFT)
            if addr & (HPAGE_PMD_SIZE - 1) or vma.vm_end < addr + HPAGE_PMD_SIZE:
                continue  # SCAN_VMA_CHECK
            mm = vma.vm_mm
            is_target = mm is target_mm and addr == target_addr
            result = self._find_pmd(mm, addr)
            if result == SCAN_SUCCEED:
                pt = mm.pgtable
                key = (addr >> PAGE_SHIFT) >> pt.pte_shift
                if not (self.is_khugepaged or is_target):
                    if mm in self.mm_slots:
                        self.add_pte_mapped_thp(mm, addr)  # khugepaged will retract it
                    continue
                if pt.pte_counts.get(key, 0):
                    result = SCAN_FAIL  # (entries left under the table: not retracted)
                else:
                    pt.free_pgtables(addr, addr + HPAGE_PMD_SIZE, addr, addr + HPAGE_PMD_SIZE)
                    if not self.is_khugepaged and is_target:
                        if folio is None:
                            folio = self.thp.shmem_folio_of(mapping.pages[pgoff].pfn)
                        result = self._set_huge_pmd(mm, vma, addr, folio)
            if is_target:
                target_result = result
        return target_result

    def _drop(self, base: int) -> None:
        """Give an unused collapse target back (put_page of the new folio)."""
        k = self.kernel
        mem_map = k.mem_map
        for pfn in range(base, base + HPAGE_PMD_NR):
            mem_map[pfn]._count = 0
        folio = self.thp.folios[base]
        folio.held = HPAGE_PMD_NR - 1
        self.thp.free_subpage(mem_map[base])


# ---------------------------------------------------------------------------- the daemon
class KhugepagedDaemon:
    """The khugepaged kernel thread: a scan per wake-up, then scan_sleep_millisecs (or
    alloc_sleep_millisecs after a failed huge allocation); asleep while no mm is listed."""

    def __init__(self, env, khugepaged: Khugepaged) -> None:
        self.env = env
        self.k = khugepaged
        khugepaged.daemon = self
        self.wakeups = 0
        self._wakeup = env.event()
        self.process = env.process(self._run())

    def wake(self) -> None:
        if not self._wakeup.triggered:
            self._wakeup.succeed()

    def _run(self):
        env = self.env
        k = self.k
        thp = k.thp
        while True:
            if not k.has_work():
                yield self._wakeup
                self._wakeup = env.event()
                continue
            self.wakeups += 1
            mark = k.kernel.stall_mark()
            result = k.do_scan()
            cost, k.cost = k.cost, 0.0
            io, k.iowait = k.iowait, 0.0
            if io:  # collapse_file's reads: khugepaged sleeps in D state, no vCPU held
                yield env.timeout(io)
            if cost:  # its copies on one of the VM's vCPUs (beneath a hypervisor): the
                # host faults and copies it met hold the vCPU (run_kernel_work's `since`)
                yield k.kernel.run_kernel_work(cost, since=mark)
            ms = thp.alloc_sleep_millisecs if result == SCAN_ALLOC_HUGE_PAGE_FAIL else thp.scan_sleep_millisecs
            if ms:
                yield env.any_of([env.timeout(ms / 1000.0), self._wakeup])
                if self._wakeup.triggered:
                    self._wakeup = env.event()
