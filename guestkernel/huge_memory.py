"""Transparent huge pages for anonymous memory (mm/huge_memory.c, Linux 6.1).

Overview
--------
`/sys/kernel/mm/transparent_hugepage/enabled` (always, madvise, never) decides which
anonymous VMAs may get a 2 MiB page (hugepage_vma_check): never none; madvise only those
with VM_HUGEPAGE (MADV_HUGEPAGE); always all but VM_NOHUGEPAGE ones. `defrag` decides the
GFP mask of the allocation (vma_thp_gfp_mask): always GFP_TRANSHUGE (direct reclaim and
compaction; __GFP_NORETRY unless madvised), defer GFP_TRANSHUGE_LIGHT | kswapd, defer+madvise
and madvise direct reclaim for madvised VMAs only, never GFP_TRANSHUGE_LIGHT.

An anonymous fault whose PMD is none (no PTE table yet over its 2 MiB) in an eligible VMA
that holds the whole aligned 2 MiB (transhuge_vma_suitable) takes
`do_huge_pmd_anonymous_page`: a read maps the huge zero page (use_zero_page), a write
allocates an order-9 page, zeroes its 512 frames (each a write the host sees), deposits
a page-table page for a later split (pgtable_trans_huge_deposit: counted in VmPTE and
nr_page_table_pages, as mm_inc_nr_ptes does) and maps the 2 MiB with one PMD entry. An
allocation failure falls back to 4 KiB pages (thp_fault_fallback).

Representation. hvsim keeps every PTE of an mm in one dict vpn -> pte, which the per-access
path reads. A PMD mapping is held there as its 512 entries, each carrying _PAGE_PSE (the
bit x86 sets in a huge PMD) and pointing at its own subpage, so loads and stores need no
new test; the page table's bookkeeping (`PageTable.huge`) says that no PTE table lies
below that PMD and which page is deposited for it, and the table frames' bytes show one
PSE entry in the PMD table. A THP's subpages are ordinary `Page`s each counting the PMD
mapping as one mapping (_count 1, _mapcount 0 per PMD map), flagged PG_thp while they
belong to the folio. The folio sits on the LRU as one entry, its head page, counting its
512 pages in the list and in nr_*_anon (folio_add_lru; vmscan.py keeps PG_lru and the
list's flags on every subpage in use, as Linux's tail pages read the head's); a subpage
no PTE maps any more stays counted in it until the folio is freed whole or split
(lru_add_page_tail puts the subpages in use on the list where the folio was). Reclaim
isolates the whole folio (its 512 pages count in the scan), takes its references once
(folio_referenced: the PMD's young bit, which is the 512 PSE entries' accessed bits
together, counted once per VMA) and moves all its pages by the one verdict (vmscan's
check_folio_references). `Thp.folios` holds per THP what Linux keeps in the head page:
how many PMDs map it (entire mapcount), how many subpages nothing maps any more but the
folio still holds, and its LRU list.

Splitting. `split_huge_pmd` turns a PMD mapping into 512 PTEs in the deposited table
(thp_split_pmd): a partial munmap, mprotect, mremap or MADV_DONTNEED, a VMA split inside
the 2 MiB (vma_adjust_trans_huge), a write to a shared huge page after fork (6.1 splits
and copies 4 KiB) or to the huge zero page. The folio stays whole: a subpage whose last
PTE goes is kept (its memory is not freed) and the folio joins the deferred split queue
(thp_deferred_split_page), which the deferred-split shrinker works off under reclaim:
`split_huge_page` turns the folio into 512 order-0 pages and frees the unmapped ones
(thp_split_page). Zapping a whole PMD frees the folio at once as one order-9 block.

Reclaim (shrink_folio_list, 6.1; add_to_swap_folio). A THP no PMD maps is split before
swap-out. A PMD-mapped one takes a swap cluster, 512 consecutive slots, where the swap
device is non-rotational (SWP_SOLIDSTATE) and a cluster is wholly free: its subpages
enter the swap cache together, the PMD is split (TTU_SPLIT_HUGE_PMD) and each PTE
becomes its subpage's swap entry, the 512 pages are written in one request
(thp_swpout) and, written, leave the swap cache one by one, the folio freed whole with
the last. Otherwise it is split and swapped 4 KiB (thp_swpout_fallback). Swap-in is
4 KiB (6.1's do_swap_page maps order-0). MADV_COLD / MADV_PAGEOUT split a THP the
range covers in part and treat one it covers whole as one folio
(madvise_cold_pageout_ranges). prctl(PR_SET_THP_DISABLE) sets the mm's thp_disabled
(MMF_DISABLE_THP), which vma_allowed refuses.

Invariants: a folio's subpages are 512 aligned frames; each PMD mapping is 512 PSE
entries over them in one VMA; a folio with pmd_maps 0 is mapped by PTEs only.

Shmem THP (mm/shmem.c, 6.1; the internal mount: shared anonymous mappings, SysV shm,
memfd; and tmpfs mounts). `shmem_enabled` (always, within_size, advise, never, deny,
force) sets the internal mount's huge option (deny and force override it). A shmem fault at a missing index that
shmem_is_huge allows allocates a 2 MiB folio for the aligned 512 indices
(shmem_alloc_hugefolio: none if any of them holds a page or a swap entry; no order-9 block:
thp_file_fallback), zeroed and charged as shmem (Shmem 512 pages, ShmemHugePages), each
index resolving to its subpage (PG_thpfile). do_set_pmd maps it with one PMD where no PTE
table lies there and the VMA holds the aligned 2 MiB at the file's alignment
(thp_file_mapped, ShmemPmdMapped): writable in a shared mapping, read-only in a private one
(a write copies 4 KiB); x86 deposits no table for it. Splitting a file PMD clears it (the
pages refault by PTEs). A PTE mapping of a shmem THP does not mlock it, a PMD mapping in a
VM_LOCKED VMA does (mlock_vma_folio). split_huge_page of a shmem THP unmaps every mapping
of the folio, PMDs and its subpages' PTEs, mlocked ones too (unmap_folio: try_to_unmap
with TTU_IGNORE_MLOCK; remap_page restores anon folios only), so later accesses refault
by PTEs; each subpage keeps the folio's dirty bit. It (thp_split_page) comes from
shmem_writepage (the folio kept dirty), a truncate or MADV_REMOVE cutting it (one wholly
inside is freed whole), or the shrinker of folios reaching past i_size
(shmem_unused_huge_shrink); the pages past EOF then leave the cache. shmem_get_unmapped_area
aligns mappings of 2 MiB or more. A shmem THP is one LRU entry (folio_add_lru), on the
anon lists as shmem is swap-backed: its head counts 512 pages, it is isolated, activated
and put back whole by one verdict (folio_referenced over i_mmap: one reference a VMA
where a PMD or PTE of it was young); reclaim splits it before writing (6.1
shrink_folio_list's "Split shmem folio", onto its own list) and the subpages make their
own pass. khugepaged collapses shmem ranges (khugepaged.py: collapse_file). Files of a
user tmpfs mount (mount.py) follow their mount's huge= instead of the internal mount's,
and a huge folio counts 512 blocks against its size= (none left: 4 KiB pages).

File THP (CONFIG_READ_ONLY_THP_FOR_FS, 6.1; `read_only_thp_for_fs`). Only khugepaged and
MADV_COLLAPSE make them (no fault allocates one): a regular file's VMA is eligible outside a fault when
file_thp_enabled holds (VM_EXEC, no struct file has the inode open for writing, a regular
file) and the sysfs setting allows it (always, or madvise with VM_HUGEPAGE); collapse_file
puts a clean 2 MiB folio in the page cache (khugepaged.py). Such a folio sits with the
shmem THPs in `shmem_folios` (a page-cache THP: PG_thpfile subpages, one LRU entry, on
the file lists as it is not swap-backed), counted in nr_file_hugepages (NR_FILE_THPS,
meminfo FileHugePages) and the mapping's nr_thps (filemap_nr_thps, unless the file system
supports large folios). A fault in a page of it where no PTE table lies under the PMD
maps the folio by one PMD (filemap_map_pages -> filemap_map_pmd, finish_fault ->
do_set_pmd: thp_file_mapped; nr_file_pmdmapped, FilePmdMapped, while a PMD maps it),
read-only unless the fault writes a shared mapping; a private write copies 4 KiB after
the PMD is split (cleared). Opening the file for writing while it has THPs unmaps its
page-cache pages from every mapping (private copies stay) and drops its page cache
(do_dentry_open: unmap_mapping_range + truncate_inode_pages). Splits, truncation and
reclaim take the shmem THP paths above, with the file counters, except that reclaim
(shrink_folio_list, __remove_mapping) and invalidation (POSIX_FADV_DONTNEED, drop_caches:
mapping_evict_folio) free a clean, unmapped file THP whole, never split.
"""

from __future__ import annotations

from . import gfp as G
from .filemap import delete_from_page_cache, set_page_dirty, shmem_acct_block, shmem_unacct_blocks
from .memory import (
    VM_FAULT_OOM,
    _vpns_in,
    anon_vma_prepare,
    fault_dirty_shared_page,
    mlock_page,
    mm_counter,
    page_add_rmap,
    page_remove_rmap,
    put_page,
    try_to_unmap,
    update_hiwater_rss,
    vma_pte_bits,
)
from .page import (
    PG_anon,
    PG_dirty,
    PG_highmem,
    PG_lru,
    PG_mlocked,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_thp,
    PG_thpfile,
    PG_uptodate,
    PG_writeback,
    PG_zero,
)
from .pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PSE,
    _PAGE_RW,
    HPAGE_PMD_NR,
    HPAGE_PMD_ORDER,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    PTE_PRESENT_MASK,
)
from .shrinker import SHRINK_STOP, Shrinker
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import (
    VM_DROPPABLE,
    VM_EXEC,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_LOCKED,
    VM_NOHUGEPAGE,
    VM_SHARED,
    VM_SPECIAL,
    VM_WRITE,
)
from .vmstat import page_restate

HPAGE_PMD_SHIFT = PAGE_SHIFT + HPAGE_PMD_ORDER
HPAGE_PMD_SIZE = 1 << HPAGE_PMD_SHIFT
HPAGE_PMD_MASK = ~(HPAGE_PMD_SIZE - 1)

GFP_TRANSHUGE_LIGHT = G.GFP_TRANSHUGE_LIGHT
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | G.DIRECT_RECLAIM

ENABLED = ("always", "madvise", "never")
DEFRAG = ("always", "defer", "defer+madvise", "madvise", "never")
# shmem_enabled (mm/shmem.c, 6.1: SHMEM_HUGE_*, in shmem_enabled_show's order): which shmem
# of the internal mount (shared anonymous mappings, SysV shm) gets huge folios; "deny"
# and "force" are the emergency / testing overrides of every mount's huge= option
SHMEM_ENABLED = ("always", "within_size", "advise", "never", "deny", "force")

# /proc/vmstat names (include/linux/vm_event_item.h, 6.1), listed when THP is built in
THP_EVENTS = (
    "thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
    "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_file_alloc",
    "thp_file_fallback", "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page",
    "thp_split_page_failed", "thp_deferred_split_page", "thp_split_pmd",
    "thp_scan_exceed_none_pte", "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte",
    "thp_split_pud", "thp_zero_page_alloc", "thp_zero_page_alloc_failed", "thp_swpout",
    "thp_swpout_fallback",
)


class Folio:
    """What Linux keeps in a THP's head page. `pmd_maps`: PMDs mapping it (entire
    mapcount + 1); `held`: subpages no PTE maps any more, kept until the folio is freed
    or split; `queued`: on the deferred split queue; `lru`: the LRU list its head is the
    one entry of (vmscan.py: PG_lru and the list's flags mirrored on its subpages in
    use), -1 while off the LRU (isolated, or not yet added)."""

    __slots__ = ("pfn", "pmd_maps", "held", "queued", "lru")

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn
        self.pmd_maps = 0
        self.held = 0
        self.queued = False
        self.lru = -1


class ShmemFolio:
    """A shmem THP (2 MiB folio in the page cache of `mapping` from `index`, its head at
    `pfn`): its 512 subpages are PG_thpfile page-cache pages; `pmd_maps` PMDs map it;
    `lru`: the LRU list its head is the one entry of (as Folio's), -1 while off it."""

    __slots__ = ("pfn", "mapping", "index", "pmd_maps", "lru")

    def __init__(self, pfn: int, mapping, index: int) -> None:
        self.pfn = pfn
        self.mapping = mapping
        self.index = index
        self.pmd_maps = 0
        self.lru = -1


class Thp:
    """One kernel's THP state: the sysfs settings, its THPs, the deferred split queue and
    the huge zero page. Settings carry their sysfs names."""

    def __init__(self, kernel, enabled: str = "madvise", defrag: str = "madvise",
                 use_zero_page: bool = True, shmem_enabled: str = "never") -> None:
        self.kernel = kernel
        self.enabled = enabled  # /sys/kernel/mm/transparent_hugepage/enabled
        self.shmem_enabled = shmem_enabled  # .../shmem_enabled (shmem_huge)
        self.defrag = defrag  # .../defrag
        self.use_zero_page = use_zero_page  # .../use_zero_page (0/1)
        # khugepaged/ (mm/khugepaged.c defaults)
        self.pages_to_scan = HPAGE_PMD_NR * 8  # PTEs (pages) examined per wake-up
        self.scan_sleep_millisecs = 10000  # ms between wake-ups
        self.alloc_sleep_millisecs = 60000  # ms to wait after a failed huge allocation
        self.max_ptes_none = HPAGE_PMD_NR - 1  # empty PTEs a collapse may fill
        self.max_ptes_swap = HPAGE_PMD_NR // 8  # swapped-out PTEs a collapse may read in
        self.max_ptes_shared = HPAGE_PMD_NR // 2  # PTEs of pages shared with another mm
        self.khugepaged_defrag = True  # khugepaged/defrag: collapse allocations may compact
        self.full_scans = 0  # khugepaged/full_scans
        self.pages_collapsed = 0  # khugepaged/pages_collapsed
        self.folios: dict[int, Folio] = {}  # head pfn -> folio, while the THP is whole
        self.split_queue: dict[int, None] = {}  # head pfns, queue order (deferred_split)
        self.huge_zero_pfn = -1  # the huge zero page's first frame, once allocated
        self.huge_zero_maps = 0  # PMDs mapping it
        self.huge_zero_mms: set = set()  # mms holding a reference (MMF_HUGE_ZERO_PAGE)
        self.on = enabled != "never"  # the fault path's one test
        # shmem THP (shmem_huge and the internal mount's SHMEM_SB(shm_mnt)->huge, which
        # deny and force leave as it was); head pfn -> ShmemFolio while whole
        self.shmem_mount_huge = "never"
        self.user_mounts_huge = False  # a tmpfs mount (mount.py) has huge= other than never
        self.shmem_on = False  # the shmem fault path's one test
        self.set_shmem_enabled(shmem_enabled)
        # (also the regular files' THPs of READ_ONLY_THP_FOR_FS: page-cache THPs alike)
        self.shmem_folios: dict[int, ShmemFolio] = {}
        self.read_only_thp_for_fs = False  # CONFIG_READ_ONLY_THP_FOR_FS
        # sbinfo->shrinklist of the internal mount: inodes whose huge folio reaches past
        # i_size (insertion order), split under pressure (shmem_unused_huge_shrink)
        self.shmem_shrinklist: dict = {}
        vm = kernel.vmstat
        for name in THP_EVENTS:
            vm.setdefault(name, 0)
        vm.setdefault("nr_anon_transparent_hugepages", 0)
        vm.setdefault("nr_shmem_hugepages", 0)  # NR_SHMEM_THPS, in THPs as /proc/vmstat shows it
        vm.setdefault("nr_shmem_pmdmapped", 0)  # NR_SHMEM_PMDMAPPED, in THPs
        vm.setdefault("nr_file_hugepages", 0)  # NR_FILE_THPS, in THPs
        vm.setdefault("nr_file_pmdmapped", 0)  # NR_FILE_PMDMAPPED, in THPs

    def set_enabled(self, mode: str) -> None:
        if mode not in ENABLED:
            raise ValueError(f"transparent_hugepage/enabled: must be one of {', '.join(ENABLED)}, got {mode!r}")
        self.enabled = mode
        self.on = mode != "never"

    def set_shmem_enabled(self, mode: str) -> None:
        if mode not in SHMEM_ENABLED:
            raise ValueError(f"transparent_hugepage/shmem_enabled: must be one of {', '.join(SHMEM_ENABLED)}, "
                             f"got {mode!r}")
        self.shmem_enabled = mode
        if mode not in ("deny", "force"):  # shmem_enabled_store: shmem_huge > SHMEM_HUGE_DENY
            self.shmem_mount_huge = mode
        self._shmem_update()

    def set_user_mounts_huge(self, any_huge: bool) -> None:
        """The mount table's news: whether some tmpfs mount has huge= other than never."""
        self.user_mounts_huge = any_huge
        self._shmem_update()

    def _shmem_update(self) -> None:
        mode = self.shmem_enabled
        self.shmem_on = mode == "force" or (mode != "deny" and (
            self.shmem_mount_huge != "never" or self.user_mounts_huge))

    def set_defrag(self, mode: str) -> None:
        if mode not in DEFRAG:
            raise ValueError(f"transparent_hugepage/defrag: must be one of {', '.join(DEFRAG)}, got {mode!r}")
        self.defrag = mode

    # -- policy -------------------------------------------------------------------------------
    def vma_allowed(self, vma, in_pf: bool = True, smaps: bool = False, enforce: bool = True) -> bool:
        """hugepage_vma_check: an anonymous VMA, or (not in a fault: khugepaged, smaps) a
        shmem one by shmem_huge_enabled or a regular file's by file_thp_enabled; the sysfs
        setting enforced unless `enforce` is false (MADV_COLLAPSE: shmem_is_huge forced
        past all but deny)."""
        flags = vma.vm_flags
        if flags & VM_NOHUGEPAGE or getattr(vma.vm_mm, "thp_disabled", False):
            return False
        if flags & (VM_SPECIAL | VM_HUGETLB):  # VM_NO_KHUGEPAGED
            return False
        if not in_pf and not transhuge_vma_suitable(vma, vma.vm_end - HPAGE_PMD_SIZE):
            return False
        file = vma.vm_file
        if not in_pf and file is not None and file.inode.shmem:
            # shmem_huge_enabled (6.1: before the sysfs check, shmem has its own flags):
            # shmem_is_huge at the VMA's pgoff; a file VMA's start and pgoff agree
            # modulo 2 MiB (transhuge_vma_suitable)
            if ((vma.vm_start >> PAGE_SHIFT) - vma.vm_pgoff) & (HPAGE_PMD_NR - 1):
                return False
            if not enforce:
                return self.shmem_enabled != "deny"  # shmem_is_huge(shmem_huge_force)
            return self.shmem_is_huge(vma, file.inode, vma.vm_pgoff)
        if enforce and (self.enabled == "never" or (self.enabled == "madvise" and not flags & VM_HUGEPAGE)):
            return False
        if not in_pf and file is not None and self.file_thp_enabled(vma):
            return True  # "Only regular file is valid"
        if vma.vm_file is not None or vma.vm_ops is not None:
            return False  # only anonymous memory here (no file or shmem THP)
        if vma.anon_vma is None:
            return smaps or in_pf
        return True

    def file_thp_enabled(self, vma) -> bool:
        """file_thp_enabled (6.1): READ_ONLY_THP_FOR_FS built, an executable VMA, its
        inode not open for writing (inode_is_open_for_write), a regular file."""
        file = vma.vm_file
        return bool(self.read_only_thp_for_fs and file is not None and vma.vm_flags & VM_EXEC
                    and not file.inode.shmem and file.inode.i_writecount <= 0)

    def gfp_mask(self, vma) -> int:
        """vma_thp_gfp_mask: the GFP mask of a huge fault by `defrag`."""
        madvised = bool(vma is not None and vma.vm_flags & VM_HUGEPAGE)
        d = self.defrag
        if d == "always":
            return GFP_TRANSHUGE | (0 if madvised else G.NORETRY)
        if d == "defer":
            return GFP_TRANSHUGE_LIGHT | G.KSWAPD_RECLAIM
        if d == "defer+madvise":
            return GFP_TRANSHUGE_LIGHT | (G.DIRECT_RECLAIM if madvised else G.KSWAPD_RECLAIM)
        if d == "madvise":
            return GFP_TRANSHUGE_LIGHT | (G.DIRECT_RECLAIM if madvised else 0)
        return GFP_TRANSHUGE_LIGHT

    # -- folio life ---------------------------------------------------------------------------
    def alloc_folio(self, gfp: int):
        """An order-9 block with every subpage holding one reference, or None."""
        k = self.kernel
        head = k.alloc_pages(gfp, HPAGE_PMD_ORDER)
        if head is None:
            return None
        pfn_to_page = k.page_alloc.pfn_to_page  # tail descriptors are made on first use
        base = head.pfn
        for pfn in range(base, base + HPAGE_PMD_NR):
            p = pfn_to_page(pfn)
            p._count = 1
            p.flags |= PG_thp
        self.folios[base] = Folio(base)
        return head

    def free_subpage(self, page) -> None:
        """free_user_page of a subpage still in its folio: the folio keeps it. The last
        one frees the folio whole (one order-9 block); before that, the folio waits on
        the deferred split queue (page_remove_rmap -> deferred_split_huge_page)."""
        base = page.pfn & ~(HPAGE_PMD_NR - 1)
        folio = self.folios[base]
        page.flags &= PG_highmem | PG_thp
        page.mapping = None
        page._count = 0
        folio.held += 1
        if folio.held == HPAGE_PMD_NR:
            self._free_folio(folio)
        elif folio.pmd_maps == 0 and not folio.queued:
            self.deferred_split(folio)

    def _free_folio(self, folio) -> None:
        k = self.kernel
        mem_map = k.mem_map
        base = folio.pfn
        if folio.lru >= 0:
            k.reclaim.folio_lru_del(folio)  # (off its list whole, with its last subpage)
        memcgs = getattr(k, "memcgs", None)
        if memcgs is not None and memcgs.active:
            memcgs.uncharge_range(base, HPAGE_PMD_NR)  # mem_cgroup_uncharge of the folio
        for pfn in range(base, base + HPAGE_PMD_NR):
            mem_map[pfn].flags &= ~PG_thp
        del self.folios[base]
        self.split_queue.pop(base, None)
        head = mem_map[base]
        head._count = 1
        if k.memcg is not None:
            k.memcg.rstat_updated(1)  # the uncharge's PGPGOUT (one per folio)
        k.free_pages(head, HPAGE_PMD_ORDER)

    def deferred_split(self, folio) -> None:
        """deferred_split_huge_page: queue the folio once (thp_deferred_split_page)."""
        if folio.queued:
            return
        if self.kernel.mem_map[folio.pfn].flags & PG_swapcache:
            return  # reclaim is handling it
        folio.queued = True
        self.split_queue[folio.pfn] = None
        self.kernel.vmstat["thp_deferred_split_page"] += 1

    def pmd_mapped(self, folio) -> None:
        folio.pmd_maps += 1
        if folio.pmd_maps == 1:
            self.kernel.vmstat["nr_anon_transparent_hugepages"] += 1
            if self.kernel.memcg is not None:
                self.kernel.memcg.rstat_updated(HPAGE_PMD_NR)  # page_add_anon_rmap: NR_ANON_THPS

    def pmd_unmapped(self, folio) -> None:
        folio.pmd_maps -= 1
        if folio.pmd_maps == 0:
            self.kernel.vmstat["nr_anon_transparent_hugepages"] -= 1
            if self.kernel.memcg is not None:
                self.kernel.memcg.rstat_updated(HPAGE_PMD_NR)  # NR_ANON_THPS

    def anon_huge_pages(self) -> int:
        """NR_ANON_THPS in pages: THPs mapped by at least one PMD (meminfo AnonHugePages)."""
        return self.kernel.vmstat["nr_anon_transparent_hugepages"] * HPAGE_PMD_NR

    # -- huge zero page -------------------------------------------------------------------------
    def get_huge_zero_page(self, mm=None) -> int:
        """mm_get_huge_zero_page: the huge zero page's first pfn, allocated on first use
        (GFP_TRANSHUGE | __GFP_ZERO) & ~__GFP_MOVABLE, thp_zero_page_alloc), or -1. The
        mm keeps a reference until it exits (mm_put_huge_zero_page)."""
        if mm is not None:
            self.huge_zero_mms.add(mm)
        if self.huge_zero_pfn >= 0:
            return self.huge_zero_pfn
        k = self.kernel
        head = k.alloc_pages((GFP_TRANSHUGE | G.ZERO) & ~G.MOVABLE, HPAGE_PMD_ORDER)
        if head is None:
            k.vmstat["thp_zero_page_alloc_failed"] += 1
            return -1
        k.vmstat["thp_zero_page_alloc"] += 1
        pfn_to_page = k.page_alloc.pfn_to_page  # (the allocator zeroed it: __GFP_ZERO)
        for pfn in range(head.pfn, head.pfn + HPAGE_PMD_NR):
            p = pfn_to_page(pfn)
            p.flags |= PG_zero
            p._count = 1
        self.huge_zero_pfn = head.pfn
        return head.pfn

    def mm_exit(self, mm) -> None:
        """mm_put_huge_zero_page at exit_mmap."""
        self.huge_zero_mms.discard(mm)

    def huge_zero_count(self, sc) -> int:
        """shrink_huge_zero_page_count: freeable only when no mm holds it."""
        return HPAGE_PMD_NR if self.huge_zero_pfn >= 0 and not self.huge_zero_mms else 0

    def huge_zero_scan(self, sc) -> int:
        """shrink_huge_zero_page_scan: free the huge zero page (one order-9 block)."""
        if self.huge_zero_pfn < 0 or self.huge_zero_mms:
            return 0
        k = self.kernel
        base = self.huge_zero_pfn
        mem_map = k.mem_map
        for pfn in range(base, base + HPAGE_PMD_NR):
            p = mem_map[pfn]
            p.flags &= ~PG_zero
            p._count = 0
        self.huge_zero_pfn = -1
        mem_map[base]._count = 1
        k.free_pages(mem_map[base], HPAGE_PMD_ORDER)
        return HPAGE_PMD_NR

    # -- shmem THP (mm/shmem.c) -----------------------------------------------------------------
    def shmem_is_huge(self, vma, inode, index: int) -> bool:
        """shmem_is_huge (6.1): may the fault at `index` get a huge folio? By the
        inode's mount's huge= (SHMEM_SB(inode->i_sb)->huge: a tmpfs mount's, else the
        internal mount's, which shmem_enabled sets), unless shmem_enabled is deny or
        force."""
        if vma is not None and (vma.vm_flags & VM_NOHUGEPAGE or getattr(vma.vm_mm, "thp_disabled", False)):
            return False
        mode = self.shmem_enabled
        if mode == "deny":
            return False
        if mode == "force":
            return True
        sb = inode.sb
        huge = self.shmem_mount_huge if sb is None else sb.huge
        if huge == "always":
            return True
        if huge == "within_size":
            # the whole huge page holding index lies inside i_size
            end = (index + HPAGE_PMD_NR) & ~(HPAGE_PMD_NR - 1)
            if (inode.size + PAGE_SIZE - 1) >> PAGE_SHIFT >= end:
                return True
        if huge in ("within_size", "advise"):
            return bool(vma is not None and vma.vm_flags & VM_HUGEPAGE)
        return False

    def shmem_huge_fault(self, task, vma, addr: int, index: int, write: bool) -> int:
        return shmem_huge_fault(task, vma, addr, index, write)

    def unused_huge_shrink(self, sb, nr_to_split: int) -> int:
        """shmem_unused_huge_shrink(sbinfo, NULL, nr_to_split) of one tmpfs mount (filemap's
        ENOSPC retry); SHRINK_STOP if none of its inodes is on the list."""
        return shmem_unused_huge_shrink(self.kernel, 0, sb, nr_to_split)

    def shmem_write_folio(self, task, inode, index: int):
        """shmem_get_folio(SGP_WRITE) for write(2) at a missing index: the subpage of a
        new huge folio if shmem_is_huge (no VMA) allows one and it can be had, else None
        (the caller takes 4 KiB). A swapped index is the caller's (swap-in)."""
        sw = inode.mapping.swapped
        if (sw and index in sw) or not self.shmem_is_huge(None, inode, index):
            return None
        return shmem_alloc_hugefolio(task, None, inode, index)

    def shmem_folio_of(self, pfn: int):
        """The whole shmem THP holding frame pfn, or None."""
        return self.shmem_folios.get(pfn & ~(HPAGE_PMD_NR - 1)) if self.shmem_folios else None

    def shmem_split(self, page, dirty: bool = False) -> None:
        """split_huge_page of the shmem THP holding `page` (shmem_writepage with `dirty`:
        the folio is marked dirty first, so every subpage stays dirty)."""
        folio = self.shmem_folio_of(page.pfn)
        if folio is not None:
            shmem_split_folio(self.kernel, folio, dirty)

    def shmem_undo_range(self, mapping, start: int, end: int | None) -> None:
        """shmem_undo_range's huge folios over [start, end) (end None: to EOF): one wholly
        inside is freed whole with its pages (not split); one the range cuts is split
        (split_huge_page; a truncate's partial folio)."""
        if not self.shmem_folios:
            return
        k = self.kernel
        for folio in [f for f in self.shmem_folios.values() if f.mapping is mapping]:
            first, last = folio.index, folio.index + HPAGE_PMD_NR
            if last <= start or (end is not None and first >= end):
                continue
            if start <= first and (end is None or last <= end):
                _shmem_unmap_folio(k, folio)
                _shmem_forget(k, folio)  # freed whole by the caller's deletions
            else:
                shmem_split_folio(k, folio, False, drop_eof=True)

    def shmem_unmap_pmds(self, page) -> None:
        """try_to_unmap's TTU_SPLIT_HUGE_PMD for a shmem THP: its PMD mappings go."""
        folio = self.shmem_folio_of(page.pfn)
        if folio is not None and folio.pmd_maps:
            _shmem_unmap_folio(self.kernel, folio)

    def shmem_huge_pages(self) -> int:
        """NR_SHMEM_THPS in pages (meminfo ShmemHugePages)."""
        return self.kernel.vmstat["nr_shmem_hugepages"] * HPAGE_PMD_NR

    def shmem_pmd_mapped(self) -> int:
        """NR_SHMEM_PMDMAPPED in pages (meminfo ShmemPmdMapped)."""
        return self.kernel.vmstat["nr_shmem_pmdmapped"] * HPAGE_PMD_NR

    # -- file THP (READ_ONLY_THP_FOR_FS) ---------------------------------------------------------
    def file_huge_pages(self) -> int:
        """NR_FILE_THPS in pages (meminfo FileHugePages)."""
        return self.kernel.vmstat["nr_file_hugepages"] * HPAGE_PMD_NR

    def file_pmd_mapped(self) -> int:
        """NR_FILE_PMDMAPPED in pages (meminfo FilePmdMapped)."""
        return self.kernel.vmstat["nr_file_pmdmapped"] * HPAGE_PMD_NR

    def filemap_map_pmd(self, task, vma, addr: int, index: int, write: bool) -> int:
        return filemap_map_pmd(task, vma, addr, index, write)

    def remove_file_folio(self, folio, shadow: int | None) -> None:
        """__remove_mapping of a whole, unmapped regular-file THP (6.1
        __filemap_remove_folio + free): off the LRU if on it, its 512 indices leave the
        cache, `shadow` (reclaim's workingset entry) in each slot; NR_FILE_PAGES -512,
        NR_FILE_THPS -1, the mapping's nr_thps -1; the folio is freed as one order-9
        block."""
        k = self.kernel
        mapping = folio.mapping
        base = folio.pfn
        mem_map = k.mem_map
        vm = k.vmstat
        if folio.lru >= 0:
            k.reclaim.folio_lru_del(folio)
        del self.shmem_folios[base]
        vm["nr_file_hugepages"] -= 1
        mc = k.memcg
        if mc is not None:
            # filemap_unaccount_folio: NR_FILE_PAGES and NR_FILE_THPS (-512 each); the
            # uncharge's PGPGOUT (one per folio)
            mc.rstat_updated(HPAGE_PMD_NR)
            mc.rstat_updated(HPAGE_PMD_NR)
            mc.rstat_updated(1)
        if not mapping.host.fs.large_folios:
            mapping.nr_thps -= 1
        pages = mapping.pages
        ws = mapping.ws
        if shadow is not None and ws is None:
            ws = mapping.ws = k.workingset.new_slots(pages)
        for i in range(HPAGE_PMD_NR):
            p = mem_map[base + i]
            del pages[folio.index + i]
            if shadow is not None:
                k.workingset.store_shadow(ws, folio.index + i, shadow)
            elif ws is not None and ws.count:
                k.workingset.page_removed(ws, folio.index + i)
            k.lru_del(p)  # (the folio was isolated: the flags only)
            if p.flags & PG_mlocked:
                vm["nr_mlock"] -= 1
            p.flags &= PG_highmem
            p.mapping = None
            p._count = 0
        vm["nr_file_pages"] -= HPAGE_PMD_NR
        memcgs = getattr(k, "memcgs", None)
        if memcgs is not None and memcgs.active:
            memcgs.uncharge_range(base, HPAGE_PMD_NR)
        mem_map[base]._count = 1
        k.free_pages(mem_map[base], HPAGE_PMD_ORDER)

    def evict_file_folio(self, page, start: int, end: int) -> int:
        """invalidate_mapping_pagevec's view of the regular-file THP holding `page`
        (6.1): find_lock_entries leaves out a large folio reaching outside [start, end];
        mapping_evict_folio removes one that is clean, not under writeback and held by
        nothing but the cache (remove_mapping: 512 pages, no split). Returns the pages
        removed (0 or 512)."""
        folio = self.shmem_folio_of(page.pfn)
        if folio is None or folio.index < start or folio.index + HPAGE_PMD_NR - 1 > end:
            return 0
        mem_map = self.kernel.mem_map
        for pfn in range(folio.pfn, folio.pfn + HPAGE_PMD_NR):
            p = mem_map[pfn]
            if p._count != 1 or p._mapcount != -1 or p.flags & (PG_dirty | PG_writeback):
                return 0
        self.remove_file_folio(folio, None)
        return HPAGE_PMD_NR

    def open_for_write(self, inode) -> None:
        """do_dentry_open of a regular file for writing (fs/open.c, 6.1): with huge folios
        in its cache (filemap_nr_thps), its page-cache pages leave every mapping
        (unmap_mapping_range without even_cows: private copies stay) and the page cache
        is dropped (truncate_inode_pages from 0: the disk keeps the data)."""
        if inode.mapping.nr_thps:
            drop_file_page_cache(self.kernel, inode)

    # -- splitting a folio --------------------------------------------------------------------
    def split_huge_page(self, base: int) -> bool:
        """split_huge_page: the folio at `base` becomes 512 order-0 pages; its PMD
        mappings are split first (unmap_folio); subpages no PTE maps are freed.
        Returns True (thp_split_page) or False if it has gone."""
        folio = self.folios.get(base)
        if folio is None:
            return False
        k = self.kernel
        mem_map = k.mem_map
        if folio.pmd_maps:
            _split_pmd_mappings(k, folio)
        if folio.lru >= 0:
            k.reclaim.split_folio_lru(folio)  # lru_add_page_tail: 512 entries now
        del self.folios[base]
        self.split_queue.pop(base, None)
        held = []
        for pfn in range(base, base + HPAGE_PMD_NR):
            p = mem_map[pfn]
            p.flags &= ~PG_thp
            if not p._count:
                held.append(p)
        k.vmstat["thp_split_page"] += 1
        memcgs = getattr(k, "memcgs", None)
        for p in held:
            if memcgs is not None and memcgs.active:
                memcgs.uncharge(p)
            p._count = 1
            k.free_pages(p)
        return True

    # -- entry points for the layers below (memory.py, vma.py call through kernel.thp) ---------
    def do_huge_pmd_anonymous_page(self, task, vma, addr: int, write: bool) -> int:
        return do_huge_pmd_anonymous_page(task, vma, addr, write)

    def do_huge_pmd_wp_page(self, task, vma, addr: int, pte: int) -> int:
        return do_huge_pmd_wp_page(task, vma, addr, pte)

    def zap_huge_range(self, mm, start: int, end: int) -> int:
        return zap_huge_range(self.kernel, mm, start, end)

    def move_huge_range(self, mm, old_start: int, new_start: int, length: int) -> bool:
        return move_huge_range(self.kernel, mm, old_start, new_start, length)

    def copy_huge_pmd(self, dst_mm, src_mm, hvpn: int) -> bool:
        return copy_huge_pmd(self.kernel, dst_mm, src_mm, hvpn)

    def split_huge_pmds_at(self, mm, addr: int) -> None:
        split_huge_pmds_at(self.kernel, mm, addr)

    def split_pmd_at(self, mm, addr: int) -> None:
        """split_huge_pmd of the PMD mapping over addr."""
        split_huge_pmd(self.kernel, mm, (addr >> PAGE_SHIFT) & ~(HPAGE_PMD_NR - 1))

    def madvise_free_ranges(self, mm, start: int, end: int) -> list:
        """madvise_free_pte_range's THP part (6.1), PMD by PMD over [start, end): a
        PMD-mapped THP the range covers only in part is split (split_folio) if this PMD
        is its only mapping (madvise_free_huge_pmd); a whole one is marked lazily free as
        one folio by the caller (folio_mark_lazyfree). Under a PTE table, a subpage of a
        still-whole THP splits that THP if the folio has one sharer
        (folio_estimated_sharers: its head's mapcount) and otherwise ends the walk of
        that PMD (the loop's `break`). Returns the [s, e) ranges whose PTEs the caller
        then walks."""
        pt = mm.pgtable
        ptes = pt.ptes
        huge = pt.huge
        mem_map = self.kernel.mem_map
        folios = self.folios
        out = []
        addr = start
        while addr < end:
            nxt = min((addr & HPAGE_PMD_MASK) + HPAGE_PMD_SIZE, end)
            key = addr >> HPAGE_PMD_SHIFT
            stop = nxt
            if key in huge:
                if nxt - addr != HPAGE_PMD_SIZE:
                    base = ptes[key << HPAGE_PMD_ORDER] >> PAGE_SHIFT
                    folio = folios.get(base)
                    if folio is not None and folio.pmd_maps == 1 and mem_map[base]._mapcount == 0:
                        self.split_huge_page(base)
            elif folios:
                for vpn in _vpns_in(ptes, addr >> PAGE_SHIFT, nxt >> PAGE_SHIFT):
                    pte = ptes[vpn]
                    if not pte & PTE_PRESENT_MASK:
                        continue
                    page = mem_map[pte >> PAGE_SHIFT]
                    if not page.flags & PG_thp:
                        continue
                    base = page.pfn & ~(HPAGE_PMD_NR - 1)
                    if base not in folios:
                        continue
                    if mem_map[base]._mapcount != 0:
                        stop = vpn << PAGE_SHIFT  # folio_estimated_sharers != 1: break
                        break
                    self.split_huge_page(base)
            if stop > addr:
                if out and out[-1][1] == addr:
                    out[-1] = (out[-1][0], stop)
                else:
                    out.append((addr, stop))
            addr = nxt
        return out

    def madvise_cold_pageout_ranges(self, mm, start: int, end: int) -> list:
        """madvise_cold_or_pageout_pte_range's THP part (6.1), PMD by PMD over [start,
        end): a PMD mapping of the huge zero page, or of a THP mapped elsewhere too
        (page_mapcount != 1), is left alone; one the range covers whole is handled as
        one folio (its 512 entries, by the caller); one covered in part is split
        (split_huge_page) and its covered PTEs handled as 4 KiB pages. Under a PTE table,
        a subpage of a still-whole THP splits that THP if this is its only mapping, and
        otherwise ends the walk of that PMD (the loop's `break`). Returns the [s, e)
        ranges whose PTEs the caller then walks (madvise_pageout)."""
        pt = mm.pgtable
        ptes = pt.ptes
        huge = pt.huge
        mem_map = self.kernel.mem_map
        folios = self.folios
        out = []
        addr = start
        while addr < end:
            nxt = min((addr & HPAGE_PMD_MASK) + HPAGE_PMD_SIZE, end)
            key = addr >> HPAGE_PMD_SHIFT
            stop = nxt
            if key in huge:
                base = ptes[key << HPAGE_PMD_ORDER] >> PAGE_SHIFT
                if base == self.huge_zero_pfn or mem_map[base]._mapcount != 0:
                    stop = addr  # huge_unlock: nothing done under this PMD
                elif nxt - addr != HPAGE_PMD_SIZE:
                    self.split_huge_page(base)  # then regular_page over [addr, nxt)
            elif folios:
                for vpn in _vpns_in(ptes, addr >> PAGE_SHIFT, nxt >> PAGE_SHIFT):
                    pte = ptes[vpn]
                    if not pte & PTE_PRESENT_MASK:
                        continue
                    page = mem_map[pte >> PAGE_SHIFT]
                    if not page.flags & PG_thp:
                        continue
                    base = page.pfn & ~(HPAGE_PMD_NR - 1)
                    if base not in folios:
                        continue
                    if page._mapcount != 0:
                        stop = vpn << PAGE_SHIFT  # PageTransCompound, mapped elsewhere: break
                        break
                    self.split_huge_page(base)
            if stop > addr:
                if out and out[-1][1] == addr:
                    out[-1] = (out[-1][0], stop)
                else:
                    out.append((addr, stop))
            addr = nxt
        return out

    # -- reclaim ------------------------------------------------------------------------------
    def add_to_swap_folio(self, swap, page):
        """shrink_folio_list's large-folio steps (6.1) for a subpage of an anonymous THP
        not in the swap cache: a folio no PMD maps is split at once (its tail pages may
        go without I/O); a PMD-mapped one gets a swap cluster (add_to_swap ->
        get_swap_pages with HPAGE_PMD_NR: a non-rotational block device with a wholly
        free cluster) and enters the swap cache whole, 512 consecutive slots, each
        subpage dirty and holding the cache's reference; without a cluster it is split
        (split_folio_to_list, thp_swpout_fallback). Returns the folio's pages, in the
        swap cache, or None (the page is order-0 now: swap it 4 KiB)."""
        base = page.pfn & ~(HPAGE_PMD_NR - 1)
        folio = self.folios.get(base)
        if folio is None:
            return None
        if not folio.pmd_maps:
            self.split_huge_page(base)
            return None
        entry = swap.get_swap_cluster()
        memcgs = getattr(self.kernel, "memcgs", None)
        if (entry and memcgs is not None and memcgs.active
                and memcgs.try_charge_swap(page, entry, HPAGE_PMD_NR)):
            # mem_cgroup_try_charge_swap refused the folio (v2 swap.max): put_swap_folio
            for i in range(HPAGE_PMD_NR):
                swap.put_swap_page(entry + i)
            entry = 0
        if not entry:
            self.split_huge_page(base)
            self.kernel.vmstat["thp_swpout_fallback"] += 1
            return None
        k = self.kernel
        mem_map = k.mem_map
        vm = k.vmstat
        pages = [mem_map[pfn] for pfn in range(base, base + HPAGE_PMD_NR)]
        for i, p in enumerate(pages):
            swap.add_to_swap_cache(p, entry + i)
            p._count += 1
            p.flags |= PG_dirty
            page_restate(vm, p)
        # written and freed whole: no deferred split while its subpages go one by one
        folio.queued = True
        return pages

    def folio_referenced(self, base: int) -> tuple[int, int]:
        """folio_referenced for a whole THP (6.1 folio_referenced_one), VMA by VMA: where
        a PMD maps it, the PMD's one young bit (here the 512 PSE entries' accessed bits
        together) is tested and cleared; where PTEs map it, every young PTE of its
        subpages is. Counts the VMAs where it was young (not the PTEs) and ORs their
        vm_flags. A PMD mapping in a VM_LOCKED VMA stops the walk with VM_LOCKED set
        (the caller mlocks the folio); PTE mappings of a large folio are not mlocked
        here. Returns (referenced, vm_flags)."""
        mem_map = self.kernel.mem_map
        first = None
        for pfn in range(base, base + HPAGE_PMD_NR):
            if mem_map[pfn].mapping is not None:
                first = mem_map[pfn]
                break
        if first is None:
            return 0, 0
        index0 = first.index - (first.pfn - base)
        referenced = 0
        vm_flags = 0
        mapping = first.mapping
        # (rmap_walk_anon over the anon_vma's VMAs; rmap_walk_file over i_mmap for shmem)
        for vma in list(mapping.vmas if first.flags & PG_anon else mapping.i_mmap):
            hv = (vma.vm_start >> PAGE_SHIFT) + index0 - vma.vm_pgoff
            lo = max(hv, vma.vm_start >> PAGE_SHIFT)
            hi = min(hv + HPAGE_PMD_NR, vma.vm_end >> PAGE_SHIFT)
            if lo >= hi:
                continue
            pt = vma.vm_mm.pgtable
            ptes = pt.ptes
            young = False
            pte = ptes.get(hv, 0) if lo == hv else 0
            if pte & _PAGE_PSE and pte & PTE_PRESENT_MASK and pte >> PAGE_SHIFT == base:
                if vma.vm_flags & VM_LOCKED:
                    return referenced, vm_flags | VM_LOCKED
                for v in range(hv, hv + HPAGE_PMD_NR):  # pmdp_clear_flush_young
                    e = ptes[v]
                    if e & _PAGE_ACCESSED:
                        ptes[v] = e & ~_PAGE_ACCESSED
                        young = True
                if young:
                    pt.pte_changed(hv)
            else:
                delta = base - hv
                for v in range(lo, hi):  # ptep_clear_flush_young per subpage PTE
                    e = ptes.get(v, 0)
                    if e & _PAGE_ACCESSED and e & PTE_PRESENT_MASK and (e >> PAGE_SHIFT) == v + delta:
                        ptes[v] = e & ~_PAGE_ACCESSED
                        pt.pte_changed(v)
                        young = True
            if young:
                referenced += 1
                vm_flags |= vma.vm_flags
        return referenced, vm_flags

    def split_pmds(self, folio) -> None:
        """try_to_unmap's TTU_SPLIT_HUGE_PMD: every PMD mapping of the folio becomes 512
        PTEs (thp_split_pmd); the folio stays whole."""
        _split_pmd_mappings(self.kernel, folio)

    # -- the deferred split shrinker ------------------------------------------------------------
    def deferred_split_count(self, sc) -> int:
        return len(self.split_queue)

    def deferred_split_scan(self, sc) -> int:
        """deferred_split_scan: split up to nr_to_scan queued folios, oldest first."""
        split = 0
        for base in list(self.split_queue)[:sc.nr_to_scan]:
            if self.split_huge_page(base):
                split += 1
        if not split and not self.split_queue:
            return SHRINK_STOP
        return split


def transhuge_vma_suitable(vma, addr: int) -> bool:
    """The aligned 2 MiB around addr lies inside the VMA; a file VMA's start and pgoff
    agree modulo 2 MiB (anonymous: no pgoff test)."""
    if vma.vm_file is not None and ((vma.vm_start >> PAGE_SHIFT) - vma.vm_pgoff) & (HPAGE_PMD_NR - 1):
        return False
    haddr = addr & HPAGE_PMD_MASK
    return haddr >= vma.vm_start and haddr + HPAGE_PMD_SIZE <= vma.vm_end


def thp_of(kernel):
    return getattr(kernel, "thp", None)


# --- faults ----------------------------------------------------------------------------------
def _free_fault_folio(k, thp, head) -> None:
    """A THP fault's folio that will not be mapped goes back whole: its subpages lose
    PG_thp and their references, and the order-9 block is freed."""
    base = head.pfn
    mem_map = k.mem_map
    for pfn in range(base, base + HPAGE_PMD_NR):
        mem_map[pfn]._count = 0
        mem_map[pfn].flags &= ~PG_thp
    del thp.folios[base]
    head._count = 1
    k.free_pages(head, HPAGE_PMD_ORDER)


def do_huge_pmd_anonymous_page(task, vma, addr: int, write: bool) -> int:
    """Returns 0 (mapped), VM_FAULT_OOM, or -1 (VM_FAULT_FALLBACK: take 4 KiB)."""
    if not transhuge_vma_suitable(vma, addr):
        return -1
    k = task.kernel
    thp = k.thp
    mm = task.mm
    pt = mm.pgtable
    haddr = addr & HPAGE_PMD_MASK
    hvpn = haddr >> PAGE_SHIFT
    av = vma.anon_vma
    if av is None:
        av = anon_vma_prepare(vma)
    kh = k.khugepaged
    if kh is not None:
        kh.enter_vma(vma)
    if not write and thp.use_zero_page:
        zpfn = thp.get_huge_zero_page(mm)
        if zpfn < 0:
            k.vmstat["thp_fault_fallback"] += 1
            return -1
        if not pt.set_pmd_huge(hvpn, zpfn, vma_pte_bits(vma.vm_flags, False) & ~_PAGE_DIRTY):
            return VM_FAULT_OOM
        thp.huge_zero_maps += 1
        k.vmstat["fault_zero_page"] += 1  # (hvsim's outcome counter: the huge one)
        return 0
    gfp = thp.gfp_mask(vma)
    head = thp.alloc_folio(gfp)
    if head is None:
        k.vmstat["thp_fault_fallback"] += 1
        return -1
    base = head.pfn
    folio = thp.folios[base]
    memcgs = k.memcgs
    if memcgs is not None and memcgs.active and not memcgs.charge(head, HPAGE_PMD_NR, gfp):
        # mem_cgroup_charge failed: the folio goes, 4 KiB pages instead
        _free_fault_folio(k, thp, head)
        k.vmstat["thp_fault_fallback"] += 1
        k.vmstat["thp_fault_fallback_charge"] += 1
        return -1
    # clear_huge_page: 512 frames zeroed (clear_user_highpage), each a write the host sees
    # and page_zero_cost of the faulting vCPU's CPU (phys.zero)
    zero = k.phys.zero
    cost = 0.0
    for pfn in range(base, base + HPAGE_PMD_NR):
        cost += zero(pfn)
    task.cost += cost
    bits = vma_pte_bits(vma.vm_flags, True)
    if not pt.set_pmd_huge(hvpn, base, bits):
        # pte_alloc_one failed: release the folio
        if memcgs is not None and memcgs.active:
            memcgs.uncharge_range(base, HPAGE_PMD_NR)
        _free_fault_folio(k, thp, head)
        return VM_FAULT_OOM
    # page_add_new_anon_rmap (compound) + lru_cache_add_inactive_or_unevictable
    add_new_anon_huge_rmap(k, vma, av, base, haddr)
    mc = k.memcg
    if mc is not None:
        mc.rstat_updated(1)  # mem_cgroup_charge's PGPGIN (one per folio)
    thp.pmd_mapped(folio)
    k.vmstat["nr_anon_pages"] += HPAGE_PMD_NR
    mm.rss[MM_ANONPAGES] += HPAGE_PMD_NR
    k.vmstat["thp_fault_alloc"] += 1
    if mc is not None:
        mc.rstat_updated(HPAGE_PMD_NR)  # page_add_new_anon_rmap: NR_ANON_MAPPED
        mc.rstat_updated(1)  # count_memcg_event_mm(THP_FAULT_ALLOC)
    k.vmstat["fault_demand_zero"] += 1  # (hvsim's outcome counter: one fault, 512 pages)
    return 0


def do_huge_pmd_wp_page(task, vma, addr: int, pte: int) -> int:
    """A write to a read-only PMD mapping. An exclusive anonymous THP is made writable in
    place (reuse); the huge zero page and a THP shared with another mm (after fork) have
    their PMD split, and the caller continues with 4 KiB (VM_FAULT_FALLBACK). Returns
    0 if reused, else the 4 KiB PTE now at addr."""
    k = task.kernel
    thp = k.thp
    mm = task.mm
    pt = mm.pgtable
    vpn = addr >> PAGE_SHIFT
    hvpn = vpn & ~(HPAGE_PMD_NR - 1)
    pfn = pte >> PAGE_SHIFT
    base = pfn & ~(HPAGE_PMD_NR - 1)
    if base != thp.huge_zero_pfn:
        folio = thp.folios.get(base)
        if folio is not None and folio.pmd_maps == 1:
            mem_map = k.mem_map
            exclusive = True
            for p in range(base, base + HPAGE_PMD_NR):
                pg = mem_map[p]
                if pg._count != 1 or pg._mapcount != 0:
                    exclusive = False
                    break
            if exclusive:
                ptes = pt.ptes
                for v in range(hvpn, hvpn + HPAGE_PMD_NR):
                    ptes[v] |= _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED
                pt.pte_changed(hvpn)  # (the PMD entry's bits: kmem)
                k.vmstat["fault_cow_reuse"] += 1
                k.vmstat["pgreuse"] += 1
                return 0
    split_huge_pmd(k, mm, hvpn)
    return pt.ptes[vpn]


# --- PMD mappings ------------------------------------------------------------------------------
def split_huge_pmd(kernel, mm, hvpn: int) -> None:
    """__split_huge_pmd: the PMD mapping at hvpn becomes 512 PTEs in its deposited table
    (thp_split_pmd). The huge zero page's becomes 512 PTEs of the 4 KiB zero page."""
    thp = kernel.thp
    pt = mm.pgtable
    kernel.vmstat["thp_split_pmd"] += 1
    pfn = pt.ptes[hvpn] >> PAGE_SHIFT
    if pfn == thp.huge_zero_pfn:
        pt.split_pmd_huge(hvpn, kernel.zero_pfn)
        thp.huge_zero_maps -= 1
        return
    folio = thp.folios.get(pfn)
    if folio is None:  # a shmem THP: a file PMD is cleared, not remapped by PTEs
        _shmem_zap_pmd(kernel, mm, hvpn, thp.shmem_folios[pfn])
        return
    pt.split_pmd_huge(hvpn, -1)
    thp.pmd_unmapped(folio)


def split_huge_pmds_at(kernel, mm, addr: int) -> None:
    """split_huge_pmd_address at a boundary that does not fall on 2 MiB (a VMA split,
    vma_adjust_trans_huge; either end of a partial zap, mprotect or move)."""
    if not addr & (HPAGE_PMD_SIZE - 1):
        return
    hvpn = (addr & HPAGE_PMD_MASK) >> PAGE_SHIFT
    if (hvpn >> HPAGE_PMD_ORDER) in mm.pgtable.huge:
        split_huge_pmd(kernel, mm, hvpn)


def zap_huge_pmd(kernel, mm, hvpn: int) -> None:
    """zap_huge_pmd: remove a whole PMD mapping; the folio is freed as one block once
    nothing else maps it."""
    thp = kernel.thp
    pt = mm.pgtable
    base = pt.ptes[hvpn] >> PAGE_SHIFT
    if thp.shmem_folios and base in thp.shmem_folios:
        _shmem_zap_pmd(kernel, mm, hvpn, thp.shmem_folios[base])  # the page cache keeps it
        return
    update_hiwater_rss(mm)
    pt.zap_pmd_huge(hvpn)
    if base == thp.huge_zero_pfn:
        thp.huge_zero_maps -= 1
        return
    folio = thp.folios[base]
    thp.pmd_unmapped(folio)
    mm.rss[MM_ANONPAGES] -= HPAGE_PMD_NR
    mem_map = kernel.mem_map
    queued = folio.queued
    folio.queued = True  # page_remove_anon_compound_rmap queues at most once, below
    for pfn in range(base, base + HPAGE_PMD_NR):
        page = mem_map[pfn]
        page_remove_rmap(kernel, page)
        put_page(kernel, page)
        if base not in thp.folios:
            return  # freed whole with its last subpage
    folio.queued = queued
    if folio.held and folio.pmd_maps == 0:
        # DoubleMap: some subpages went, others are still PTE-mapped elsewhere
        thp.deferred_split(folio)


def _split_pmd_mappings(kernel, folio) -> None:
    """unmap_folio's PMD part: split every PMD mapping the folio's anon_vma reaches."""
    base = folio.pfn
    head = kernel.mem_map[base]
    av = head.mapping
    if av is None:
        for p in range(base, base + HPAGE_PMD_NR):
            av = kernel.mem_map[p].mapping
            if av is not None:
                head = kernel.mem_map[p]
                break
    if av is None:
        return
    index = head.index - (head.pfn - base)
    for vma in list(av.vmas):
        addr = vma.vm_start + ((index - vma.vm_pgoff) << PAGE_SHIFT)
        if addr < vma.vm_start or addr >= vma.vm_end:
            continue
        mm = vma.vm_mm
        hvpn = addr >> PAGE_SHIFT
        pte = mm.pgtable.ptes.get(hvpn, 0)
        if pte & _PAGE_PSE and pte >> PAGE_SHIFT == base:
            split_huge_pmd(kernel, mm, hvpn)
        if not folio.pmd_maps:
            return


def zap_huge_range(kernel, mm, start: int, end: int) -> int:
    """zap_pmd_range's huge part: whole PMD mappings inside [start, end) are zapped,
    ones straddling an end are split (the PTE loop then takes their part)."""
    huge = mm.pgtable.huge
    lo = start >> HPAGE_PMD_SHIFT
    hi = (end - 1) >> HPAGE_PMD_SHIFT
    keys = [key for key in huge if lo <= key <= hi] if hi - lo > len(huge) else [
        key for key in range(lo, hi + 1) if key in huge]
    zapped = 0
    for key in keys:
        hvpn = key << HPAGE_PMD_ORDER
        if (hvpn << PAGE_SHIFT) >= start and ((hvpn + HPAGE_PMD_NR) << PAGE_SHIFT) <= end:
            zap_huge_pmd(kernel, mm, hvpn)
            zapped += HPAGE_PMD_NR
        else:
            split_huge_pmd(kernel, mm, hvpn)
    return zapped


def split_huge_range(kernel, mm, start: int, end: int) -> None:
    """Split every PMD mapping over [start, end) (paths that work PTE by PTE)."""
    huge = mm.pgtable.huge
    lo = start >> HPAGE_PMD_SHIFT
    hi = (end - 1) >> HPAGE_PMD_SHIFT
    for key in sorted(k for k in huge if lo <= k <= hi):
        split_huge_pmd(kernel, mm, key << HPAGE_PMD_ORDER)


def move_huge_range(kernel, mm, old_start: int, new_start: int, length: int) -> bool:
    """move_page_tables' huge part: a PMD mapping wholly inside the moved range, moving
    to a 2 MiB-aligned place, keeps its PMD and deposited table (move_huge_pmd); others
    are split for the PTE loop. False if a table page could not be had."""
    pt = mm.pgtable
    huge = pt.huge
    end = old_start + length
    lo = old_start >> HPAGE_PMD_SHIFT
    hi = (end - 1) >> HPAGE_PMD_SHIFT
    aligned = not (new_start - old_start) & (HPAGE_PMD_SIZE - 1)
    delta = (new_start - old_start) >> PAGE_SHIFT
    for key in sorted((k for k in huge if lo <= k <= hi), reverse=delta > 0):
        hvpn = key << HPAGE_PMD_ORDER
        inside = (hvpn << PAGE_SHIFT) >= old_start and ((hvpn + HPAGE_PMD_NR) << PAGE_SHIFT) <= end
        if inside and aligned:
            if not pt.move_pmd_huge(hvpn, hvpn + delta):
                return False
        else:
            split_huge_pmd(kernel, mm, hvpn)
    return True


def copy_huge_pmd(kernel, dst_mm, src_mm, hvpn: int) -> bool:
    """copy_huge_pmd at fork: the child maps the same THP (or the huge zero page) with
    its own PMD and deposited table; both PMDs are write-protected. False: no memory
    for the child's table."""
    thp = kernel.thp
    sptes = src_mm.pgtable.ptes
    pte = sptes[hvpn]
    base = pte >> PAGE_SHIFT
    if thp.shmem_folios and base in thp.shmem_folios:
        return True  # a file PMD is not copied: the child faults it in (vma_is_anonymous)
    child = pte & ~(_PAGE_RW | _PAGE_ACCESSED | _PAGE_PSE)
    if not dst_mm.pgtable.set_pmd_huge(hvpn, base, child & 0xFFF):
        return False
    if base == thp.huge_zero_pfn:
        thp.huge_zero_maps += 1
        thp.huge_zero_mms.add(dst_mm)  # (the child's own reference)
        return True
    for v in range(hvpn, hvpn + HPAGE_PMD_NR):
        sptes[v] &= ~_PAGE_RW
    src_mm.pgtable.pte_changed(hvpn)  # (fork write-protects the parent's PMD entry: kmem)
    mem_map = kernel.mem_map
    for pfn in range(base, base + HPAGE_PMD_NR):
        page = mem_map[pfn]
        page._count += 1
        page._mapcount += 1
    dst_mm.rss[mm_counter(mem_map[base])] += HPAGE_PMD_NR
    thp.pmd_mapped(thp.folios[base])
    return True


# --- shmem THP (mm/shmem.c shmem_get_folio_gfp, mm/memory.c do_set_pmd) -----------------------
def shmem_alloc_hugefolio(task, vma, inode, index: int):
    """shmem_alloc_hugefolio + shmem_add_to_page_cache: a 2 MiB folio for the aligned
    512 indices around `index`, zeroed (clear_highpage of each subpage, a write the host
    sees), in the page cache (each index resolves to its subpage), charged as shmem
    (Shmem +512, ShmemHugePages +1 THP) and on the LRU. None if any index of the range
    holds an entry (a page or a swap entry: xa_find) or no order-9 block could be had
    (thp_file_fallback)."""
    k = task.kernel
    thp = k.thp
    mapping = inode.mapping
    hindex = index & ~(HPAGE_PMD_NR - 1)
    pages = mapping.pages
    sw = mapping.swapped
    ws = mapping.ws
    for i in range(hindex, hindex + HPAGE_PMD_NR):
        if i in pages or (sw and i in sw):
            return None
    if ws is not None and ws.shadows and any(i in ws.shadows for i in range(hindex, hindex + HPAGE_PMD_NR)):
        return None  # (a shadow entry is an xarray entry too)
    noreserve = inode.noreserve
    if noreserve and not shmem_acct_block(k, inode, HPAGE_PMD_NR):
        return None  # shmem_alloc_and_acct_folio: ENOSPC for 512 (the caller tries 4 KiB)
    gfp = thp.gfp_mask(vma)
    head = k.alloc_pages(gfp, HPAGE_PMD_ORDER)
    memcgs = k.memcgs
    if head is not None and memcgs is not None and memcgs.active and not memcgs.charge(
            head, HPAGE_PMD_NR, gfp):
        # shmem_get_folio_gfp: mem_cgroup_charge failed (THP_FILE_FALLBACK_CHARGE); the
        # caller tries 4 KiB
        k.free_pages(head, HPAGE_PMD_ORDER)
        head = None
        k.vmstat["thp_file_fallback_charge"] += 1
    if head is None:
        if noreserve:
            shmem_unacct_blocks(k, inode, HPAGE_PMD_NR)
        k.vmstat["thp_file_fallback"] += 1
        return None
    base = head.pfn
    pfn_to_page = k.page_alloc.pfn_to_page
    zero = k.phys.zero
    cost = 0.0
    subpages = []
    for i in range(HPAGE_PMD_NR):
        p = pfn_to_page(base + i)
        # shmem_get_folio_gfp: a new folio not uptodate is cleared (clear_highpage), a
        # page_zero_cost of CPU each on the faulting vCPU
        cost += zero(base + i)
        p._count = 1  # the page cache's reference
        p.flags |= PG_uptodate | PG_swapbacked | PG_thpfile
        p.mapping = mapping
        p.index = hindex + i
        pages[hindex + i] = p
        subpages.append(p)
    task.cost += cost
    thp.shmem_folios[base] = ShmemFolio(base, mapping, hindex)
    vm = k.vmstat
    vm["nr_file_pages"] += HPAGE_PMD_NR
    vm["nr_shmem"] += HPAGE_PMD_NR
    vm["nr_shmem_hugepages"] += 1
    vm["thp_file_alloc"] += 1
    mc = k.memcg
    if mc is not None:
        # shmem_add_to_page_cache: the charge's PGPGIN, NR_SHMEM_THPS, NR_FILE_PAGES,
        # NR_SHMEM
        mc.rstat_updated(1)
        mc.rstat_updated(HPAGE_PMD_NR)
        mc.rstat_updated(HPAGE_PMD_NR)
        mc.rstat_updated(HPAGE_PMD_NR)
    if (inode.size + PAGE_SIZE - 1) >> PAGE_SHIFT < hindex + HPAGE_PMD_NR - 1:
        thp.shmem_shrinklist.setdefault(inode, None)  # part of it beyond i_size
    # folio_add_lru: the folio is one LRU entry of 512 pages (vmscan.py), added by its
    # first subpage
    k.lru_cache_add(subpages[0])
    return subpages[index - hindex]


def shmem_huge_fault(task, vma, addr: int, index: int, write: bool) -> int:
    """shmem_fault + finish_fault's do_set_pmd for a shmem page not yet mapped at addr.
    A missing page whose index shmem_is_huge allows gets a huge folio (else, or if that
    fails, -1: the 4 KiB path takes it). A page of a whole shmem THP is mapped by one
    PMD (thp_file_mapped; ShmemPmdMapped counts the folio while a PMD maps it) where no
    PTE table lies under the PMD and the VMA holds the aligned 2 MiB with its file offset
    aligned alike; a private mapping's write fault copies 4 KiB (do_cow_fault). Returns
    0 when mapped by the PMD, VM_FAULT_OOM, or -1 (the caller maps by PTE: the page is in
    the cache now)."""
    k = task.kernel
    thp = k.thp
    inode = vma.vm_file.inode
    mapping = inode.mapping
    page = mapping.pages.get(index)
    if page is None:
        sw = mapping.swapped
        if sw and index in sw:
            return -1  # shmem_swapin_folio: 4 KiB
        if not thp.shmem_on or not thp.shmem_is_huge(vma, inode, index):
            return -1
        page = shmem_alloc_hugefolio(task, vma, inode, index)
        if page is None:
            return -1
    folio = thp.shmem_folio_of(page.pfn)
    shared = vma.vm_flags & VM_SHARED
    if folio is None or (write and not shared):
        return -1  # (do_cow_fault: a 4 KiB private copy)
    # do_set_pmd (a shared mapping of shmem maps writable even on a read: no dirty
    # tracking; a private one read-only, its first write splitting the PMD to copy 4 KiB)
    return _pmd_fault(task, vma, addr, page, folio, bool(shared and (write or vma.vm_flags & VM_WRITE)), write)


def _pmd_fault(task, vma, addr: int, page, folio, writable: bool, write: bool) -> int:
    """do_set_pmd, then the fault's accounting: a minor fault; a write (do_shared_fault)
    dirties the folio."""
    k = task.kernel
    ret = do_set_pmd(k, task.mm, vma, addr, folio, writable, write)
    if ret:
        return ret
    k.vmstat["fault_file_minor"] += 1
    if write:
        mem_map = k.mem_map
        for pfn in range(folio.pfn, folio.pfn + HPAGE_PMD_NR):
            set_page_dirty(k, mem_map[pfn], task)
        fault_dirty_shared_page(k, page, task)
    return 0


def do_set_pmd(k, mm, vma, addr: int, folio, writable: bool, write: bool) -> int:
    """do_set_pmd (6.1 mm/memory.c): map the page-cache THP `folio` at addr's aligned
    2 MiB by one PMD where the PMD is none (no PTE table, no PMD mapping) and the VMA
    holds the 2 MiB at the file's alignment (transhuge_vma_suitable): page_add_file_rmap
    of the compound (NR_FILE_MAPPED by 512; nr_shmem_pmdmapped / nr_file_pmdmapped when
    the first PMD maps it), MM_SHMEMPAGES / MM_FILEPAGES by 512, thp_file_mapped; x86
    deposits no table. Returns 0, VM_FAULT_OOM, or -1 (VM_FAULT_FALLBACK)."""
    pt = mm.pgtable
    hvpn = (addr >> PAGE_SHIFT) & ~(HPAGE_PMD_NR - 1)
    key = hvpn >> HPAGE_PMD_ORDER
    if key in pt.pte_counts or key in pt.huge or not transhuge_vma_suitable(vma, addr):
        return -1
    bits = vma_pte_bits(vma.vm_flags, writable)
    if not write:
        bits &= ~_PAGE_DIRTY
    base = folio.pfn
    if not pt.set_pmd_huge(hvpn, base, bits, deposit=False):
        return VM_FAULT_OOM
    mem_map = k.mem_map
    locked = vma.vm_flags & VM_LOCKED
    for pfn in range(base, base + HPAGE_PMD_NR):
        p = mem_map[pfn]
        page_add_rmap(k, p)
        if locked:
            mlock_page(k, p)
    shmem = folio.mapping.host.shmem
    mm.rss[MM_SHMEMPAGES if shmem else MM_FILEPAGES] += HPAGE_PMD_NR
    folio.pmd_maps += 1
    vm = k.vmstat
    if folio.pmd_maps == 1:
        vm["nr_shmem_pmdmapped" if shmem else "nr_file_pmdmapped"] += 1
        if k.memcg is not None:
            k.memcg.rstat_updated(HPAGE_PMD_NR)  # page_add_file_rmap: NR_*_PMDMAPPED
    vm["thp_file_mapped"] += 1
    return 0


def filemap_map_pmd(task, vma, addr: int, index: int, write: bool) -> int:
    """A regular file's fault at `index` (READ_ONLY_THP_FOR_FS): where the cached page is
    a subpage of a whole file THP, filemap_map_pages' filemap_map_pmd (a read) or
    finish_fault (a shared write) maps it by do_set_pmd; a private write copies 4 KiB
    (do_cow_fault). Returns 0 (mapped: a minor fault), VM_FAULT_OOM, or -1 (the caller's
    4 KiB path)."""
    k = task.kernel
    page = vma.vm_file.inode.mapping.pages.get(index)
    if page is None or not page.flags & PG_thpfile:
        return -1
    shared = vma.vm_flags & VM_SHARED
    if write and not shared:
        return -1
    folio = k.thp.shmem_folio_of(page.pfn)
    if folio is None:
        return -1
    # vm_page_prot: a regular file's shared writable mapping is write-notified, so the
    # PMD is writable only when the fault writes (maybe_pmd_mkwrite(pmd_mkdirty))
    return _pmd_fault(task, vma, addr, page, folio, bool(write and shared), write)


def drop_file_page_cache(kernel, inode) -> None:
    """unmap_mapping_range(mapping, 0, 0, 0) + truncate_inode_pages(mapping, 0) of
    do_dentry_open: every PMD and PTE mapping a page-cache page of the file goes (the
    anonymous CoW copies of private mappings stay), then every cached page leaves the
    cache, dirty ones too (truncate_cleanup_folio cancels the dirty state, as 6.1 does);
    a page under writeback is waited for (truncate_inode_pages_range's second pass:
    folio_wait_writeback, then truncate_inode_folio): its request ends now and the
    opener sleeps until its completion (kernel.iowait_file). Shadow entries go."""
    from .filemap import delete_from_page_cache
    from .memory import zap_page_range

    thp = kernel.thp
    mapping = inode.mapping
    mem_map = kernel.mem_map
    zero_pfn = kernel.zero_pfn
    for vma in list(mapping.i_mmap):
        mm = vma.vm_mm
        pt = mm.pgtable
        ptes = pt.ptes
        lo, hi = vma.vm_start >> PAGE_SHIFT, vma.vm_end >> PAGE_SHIFT
        if pt.huge:
            for key in sorted(k for k in pt.huge if lo <= k << HPAGE_PMD_ORDER < hi):
                hvpn = key << HPAGE_PMD_ORDER
                folio = thp.shmem_folios.get(ptes[hvpn] >> PAGE_SHIFT)
                if folio is not None:
                    _shmem_zap_pmd(kernel, mm, hvpn, folio)
        for vpn in _vpns_in(ptes, lo, hi):
            pte = ptes.get(vpn, 0)
            if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
                continue
            if mem_map[pte >> PAGE_SHIFT].flags & PG_anon:
                continue  # zap_details without even_cows: should_zap_page
            zap_page_range(kernel, mm, vma, vpn << PAGE_SHIFT, (vpn + 1) << PAGE_SHIFT)
    thp.shmem_undo_range(mapping, 0, None)
    pages = mapping.pages
    reclaim = kernel.reclaim
    for i in sorted(pages):
        page = pages.get(i)
        if page is None:
            continue
        if page.flags & PG_writeback and reclaim is not None:
            from .blk import blk_flush_plug

            blk_flush_plug(kernel, reclaim.now())  # the sleep (io_schedule) sends the task's plug
            b = reclaim.inflight_by_page.get(page.pfn)
            if b is not None:  # folio_wait_writeback
                now = reclaim.now()
                if now is not None and b.done_at > now:
                    kernel.iowait_file += b.done_at - now
                page._count += 1  # (the waiter's reference: the write's end keeps it cached)
                reclaim.inflight.remove(b)
                reclaim._end_batch(b)
                page._count -= 1
                if pages.get(i) is not page:
                    continue
        if page.flags & PG_writeback or page._mapcount != -1:
            continue
        delete_from_page_cache(kernel, page)
    ws = mapping.ws
    if ws is not None and ws.shadows:
        kernel.workingset.clear_range(ws, 0)


def _shmem_zap_pmd(kernel, mm, hvpn: int, folio) -> None:
    """zap_huge_pmd / __split_huge_pmd_locked for a file PMD: the PMD is cleared (a split
    does not remap a file page by PTEs: a later access faults it in), a dirty PMD dirties
    the folio, a young one marks it referenced."""
    pt = mm.pgtable
    ptes = pt.ptes
    mem_map = kernel.mem_map
    base = folio.pfn
    dirty = young = False
    for v in range(hvpn, hvpn + HPAGE_PMD_NR):
        pte = ptes[v]
        dirty = dirty or bool(pte & _PAGE_DIRTY)
        young = young or bool(pte & _PAGE_ACCESSED)
    update_hiwater_rss(mm)
    pt.zap_pmd_huge(hvpn)
    shmem = folio.mapping.host.shmem
    mm.rss[MM_SHMEMPAGES if shmem else MM_FILEPAGES] -= HPAGE_PMD_NR
    folio.pmd_maps -= 1
    if folio.pmd_maps == 0:
        kernel.vmstat["nr_shmem_pmdmapped" if shmem else "nr_file_pmdmapped"] -= 1
        if kernel.memcg is not None:
            kernel.memcg.rstat_updated(HPAGE_PMD_NR)  # page_remove_rmap: NR_*_PMDMAPPED
    for pfn in range(base, base + HPAGE_PMD_NR):
        p = mem_map[pfn]
        if dirty:
            set_page_dirty(kernel, p)
        if young:
            p.flags |= PG_referenced
        page_remove_rmap(kernel, p)
        p._count -= 1  # (the page cache still holds it)


def _shmem_unmap_folio(kernel, folio) -> None:
    """Every PMD mapping of a shmem THP goes (the i_mmap walk of unmap_folio)."""
    mapping = folio.mapping
    base = folio.pfn
    for vma in list(mapping.i_mmap):
        if not folio.pmd_maps:
            return
        addr = vma.vm_start + ((folio.index - vma.vm_pgoff) << PAGE_SHIFT)
        if addr < vma.vm_start or addr >= vma.vm_end:
            continue
        mm = vma.vm_mm
        hvpn = addr >> PAGE_SHIFT
        pte = mm.pgtable.ptes.get(hvpn, 0)
        if pte & _PAGE_PSE and pte >> PAGE_SHIFT == base:
            kernel.vmstat["thp_split_pmd"] += 1
            _shmem_zap_pmd(kernel, mm, hvpn, folio)


def _shmem_forget(kernel, folio) -> None:
    """The folio is no longer one THP: its subpages are order-0 page-cache pages (on
    the LRU where the folio was: lru_add_page_tail; an isolated folio's stay isolated)."""
    mem_map = kernel.mem_map
    if folio.lru >= 0:
        kernel.reclaim.split_folio_lru(folio)
    for pfn in range(folio.pfn, folio.pfn + HPAGE_PMD_NR):
        mem_map[pfn].flags &= ~PG_thpfile
    del kernel.thp.shmem_folios[folio.pfn]
    mapping = folio.mapping
    if kernel.memcg is not None:
        kernel.memcg.rstat_updated(HPAGE_PMD_NR)  # __split_huge_page: NR_SHMEM_THPS / NR_FILE_THPS
    if mapping.host.shmem:
        kernel.vmstat["nr_shmem_hugepages"] -= 1
    else:
        kernel.vmstat["nr_file_hugepages"] -= 1
        if not mapping.host.fs.large_folios:
            mapping.nr_thps -= 1  # filemap_nr_thps_dec


def shmem_split_folio(kernel, folio, dirty: bool, drop_eof: bool = False) -> None:
    """split_huge_page of a shmem THP (thp_split_page): unmap_folio unmaps it from every
    mapping (6.1: a file folio takes try_to_unmap(TTU_SPLIT_HUGE_PMD | TTU_IGNORE_MLOCK),
    not migration entries): its PMD mappings and every subpage's PTEs go, mlocked ones
    too (munlocked with their last mapping), and remap_page restores none of them (it
    remaps anon folios only): later accesses refault the pages by PTEs. Its 512 subpages
    become order-0 page-cache pages, each dirty if the folio was (__split_huge_page_tail
    copies the head's PG_dirty; a dirty PTE dirties the folio as try_to_unmap_one clears
    it: folio_mark_dirty). `dirty`: the folio is marked dirty first (shmem_writepage).
    `drop_eof`: the subpages beyond EOF leave the cache (__split_huge_page's end;
    reclaim's split from shmem_writepage keeps them, as other subpages may sit isolated
    on its list, until a truncate or the shrinker)."""
    _shmem_unmap_folio(kernel, folio)
    mem_map = kernel.mem_map
    base = folio.pfn
    end = base + HPAGE_PMD_NR
    for pfn in range(base, end):
        p = mem_map[pfn]
        if p._mapcount >= 0:
            try_to_unmap(kernel, p, None, ignore_mlock=True)
        if p.flags & PG_dirty:
            dirty = True  # folio_test_dirty: hvsim keeps PG_dirty per subpage
    if dirty:
        for pfn in range(base, end):
            set_page_dirty(kernel, mem_map[pfn])
    _shmem_forget(kernel, folio)
    kernel.vmstat["thp_split_page"] += 1
    if drop_eof:
        mapping = folio.mapping
        end = (mapping.host.size + PAGE_SIZE - 1) >> PAGE_SHIFT
        pages = mapping.pages
        for i in range(max(end, folio.index), folio.index + HPAGE_PMD_NR):
            p = pages.get(i)
            # (not one isolated by a reclaimer or mapped: a truncate drops it later)
            if (p is not None and p.pfn == base + i - folio.index and p._mapcount == -1
                    and p.flags & PG_lru):
                delete_from_page_cache(kernel, p)


def shmem_unused_huge_shrink(kernel, nr_to_scan: int, sb=False, nr_to_split: int = 0) -> int:
    """shmem_unused_huge_shrink (6.1): up to nr_to_scan inodes (128 if 0) leave the
    shrinklist; one whose size is 2 MiB-aligned past its last page has nothing to gain;
    otherwise the huge folio holding its EOF, if any, is split, its pages beyond EOF
    freed, until nr_to_split folios are (0: no limit; the rest go back on the list).
    `sb`: only the inodes of that super block (None: the internal mount's; False: every
    mount's, as hvsim's one shrinker takes them). Returns the folios split
    (SHRINK_STOP on an empty list)."""
    thp = kernel.thp
    lst = thp.shmem_shrinklist
    if sb is not False:
        lst_sb = [i for i in lst if i.sb is sb]
    else:
        lst_sb = list(lst)
    if not lst_sb:
        return SHRINK_STOP
    todo = lst_sb[:nr_to_scan or 128]
    split = 0
    for inode in todo:
        if nr_to_split and split >= nr_to_split:
            break  # move_back: it stays on the list
        del lst[inode]
        size = inode.size
        if (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1) == (size + HPAGE_PMD_SIZE - 1) & HPAGE_PMD_MASK:
            continue  # nothing to gain
        page = inode.mapping.pages.get((size & HPAGE_PMD_MASK) >> PAGE_SHIFT)
        folio = thp.shmem_folio_of(page.pfn) if page is not None else None
        if folio is None:
            continue  # no huge folio at the end of the file
        shmem_split_folio(kernel, folio, False, drop_eof=True)
        split += 1
    return split


# --- boot: settings, sysfs, shrinker ----------------------------------------------------------
SYSFS = "/sys/kernel/mm/transparent_hugepage"


def init_thp(kernel):
    """The kernel's Thp from its config, its sysfs files and the deferred-split shrinker;
    None where hvsim builds no THP (2.6-era kernels, i386)."""
    cfg = kernel.config
    if cfg.era != "6.x" or cfg.arch != "x86_64":
        return None
    thp = Thp(kernel, cfg.thp_enabled, cfg.thp_defrag, cfg.thp_use_zero_page, cfg.thp_shmem_enabled)
    thp.pages_to_scan = cfg.khugepaged_pages_to_scan
    thp.scan_sleep_millisecs = cfg.khugepaged_scan_sleep_millisecs
    thp.alloc_sleep_millisecs = cfg.khugepaged_alloc_sleep_millisecs
    thp.max_ptes_none = cfg.khugepaged_max_ptes_none
    thp.max_ptes_swap = cfg.khugepaged_max_ptes_swap
    thp.max_ptes_shared = cfg.khugepaged_max_ptes_shared
    thp.read_only_thp_for_fs = cfg.read_only_thp_for_fs
    _register_sysfs(kernel, thp)
    shrinkers = getattr(kernel, "shrinkers", None)
    if shrinkers is not None:
        # deferred_split_shrinker: DEFAULT_SEEKS, SHRINKER_NONSLAB
        shrinkers.register_shrinker(Shrinker("thp-deferred_split", thp.deferred_split_count,
                                             thp.deferred_split_scan))
        # huge_zero_page_shrinker: DEFAULT_SEEKS
        shrinkers.register_shrinker(Shrinker("thp-zero", thp.huge_zero_count, thp.huge_zero_scan))
        # the internal shmem mount's super block: nr_cached_objects / free_cached_objects
        # (shmem_unused_huge_count / _scan)
        shrinkers.register_shrinker(Shrinker(
            "shmem-huge", lambda sc: len(thp.shmem_shrinklist),
            lambda sc: shmem_unused_huge_shrink(kernel, sc.nr_to_scan)))
    return thp


def _choice(options, current: str) -> str:
    return " ".join(f"[{o}]" if o == current else o for o in options) + "\n"


def _register_sysfs(kernel, thp) -> None:
    reg = kernel.procfs.register

    def setter(name, apply):
        def write(text: str) -> None:
            value = text.strip()
            try:
                apply(value)
            except ValueError:
                raise ValueError(f"{SYSFS}/{name}: {value!r} is not valid (EINVAL)") from None
        return write

    reg(f"{SYSFS}/enabled", lambda: _choice(ENABLED, thp.enabled), setter("enabled", thp.set_enabled))
    reg(f"{SYSFS}/defrag", lambda: _choice(DEFRAG, thp.defrag), setter("defrag", thp.set_defrag))
    reg(f"{SYSFS}/shmem_enabled", lambda: _choice(SHMEM_ENABLED, thp.shmem_enabled),
        setter("shmem_enabled", thp.set_shmem_enabled))

    def set_zero(v: str) -> None:
        if v not in ("0", "1"):
            raise ValueError(v)
        thp.use_zero_page = v == "1"

    reg(f"{SYSFS}/use_zero_page", lambda: f"{int(thp.use_zero_page)}\n", setter("use_zero_page", set_zero))
    reg(f"{SYSFS}/hpage_pmd_size", lambda: f"{HPAGE_PMD_SIZE}\n")
    bounds = {"pages_to_scan": (1, (1 << 32) - 1), "scan_sleep_millisecs": (0, (1 << 32) - 1),
              "alloc_sleep_millisecs": (0, (1 << 32) - 1), "max_ptes_none": (0, HPAGE_PMD_NR - 1),
              "max_ptes_swap": (0, HPAGE_PMD_NR - 1), "max_ptes_shared": (0, HPAGE_PMD_NR - 1)}
    for name, (lo, hi) in bounds.items():
        def set_int(v: str, name=name, lo=lo, hi=hi) -> None:
            if not v.isdigit() or not lo <= int(v) <= hi:
                raise ValueError(v)
            setattr(thp, name, int(v))
            wake = getattr(kernel, "khugepaged", None)
            if wake is not None and name.endswith("millisecs"):
                wake.wake()
        reg(f"{SYSFS}/khugepaged/{name}", lambda name=name: f"{getattr(thp, name)}\n",
            setter(f"khugepaged/{name}", set_int))

    def set_kdefrag(v: str) -> None:
        if v not in ("0", "1"):
            raise ValueError(v)
        thp.khugepaged_defrag = v == "1"

    reg(f"{SYSFS}/khugepaged/defrag", lambda: f"{int(thp.khugepaged_defrag)}\n",
        setter("khugepaged/defrag", set_kdefrag))
    reg(f"{SYSFS}/khugepaged/full_scans", lambda: f"{thp.full_scans}\n")
    reg(f"{SYSFS}/khugepaged/pages_collapsed", lambda: f"{thp.pages_collapsed}\n")


def add_new_anon_huge_rmap(k, vma, av, base: int, haddr: int) -> None:
    """folio_add_new_anon_rmap (compound) + lru_cache_add_inactive_or_unevictable for the
    512 subpages of a new huge folio at pfn `base` mapped at `haddr` in `vma` (a huge fault
    and khugepaged's collapse): anon (swap-backed unless VM_DROPPABLE), mapped once, on the
    LRU (mlocked in a VM_LOCKED vma)."""
    mem_map = k.mem_map
    pgoff = vma.vm_pgoff + ((haddr - vma.vm_start) >> PAGE_SHIFT)
    locked = vma.vm_flags & VM_LOCKED
    # folio_add_new_anon_rmap: a VM_DROPPABLE folio is never swap-backed
    anon = PG_anon if vma.vm_flags & VM_DROPPABLE else PG_anon | PG_swapbacked
    pages = [mem_map[base + i] for i in range(HPAGE_PMD_NR)]
    for i, p in enumerate(pages):
        p.flags |= anon
        p.mapping = av
        p.index = pgoff + i
        p._mapcount = 0
        if locked:
            mlock_page(k, p)
    # folio_add_lru: the folio is one LRU entry of 512 pages (vmscan.py); the first
    # subpage adds it whole
    k.lru_cache_add(pages[0])
