"""Fault handling below the VMA check, rmap, and PTE teardown (mm/memory.c, mm/rmap.c).

Overview
--------
`handle_mm_fault(task, vma, addr, write)` is entered by fault.py once the address is known
to lie in a VMA with the right permissions. By the PTE it finds:

- none, anonymous VMA -> `do_anonymous_page`: a read maps the shared zero page read-only
  (no allocation, not in RSS); a write allocates a zeroed page (GFP_HIGHUSER_MOVABLE |
  __GFP_ZERO) mapped writable and dirty.
- none, file (or shmem) VMA -> `do_file_fault`: a read maps the page-cache page read-only
  after mapping up to 16 cached neighbours (fault-around); a private write copies it into
  a new anonymous page (do_cow_fault); a shared write maps it writable and dirties it. A
  page that must come from disk makes the fault major. Beyond EOF: SIGBUS.
- swap entry -> `do_swap_page` through `kernel.swapin_hook(task, vma, addr, pte) ->
  (page, seconds, major)`. The hook returns the page with one reference for the new PTE,
  anon rmap fields set (mapping = anon_vma, index) and on the LRU. When the last PTE of
  a swap-cache page is zapped, `kernel.free_swap_cache(page)` may drop its swap copy.
- present, write to a read-only PTE -> `do_wp_page`: shared mapping -> make writable;
  anonymous page mapped once (refcount 1 besides the swap cache, not KSM) -> reuse in
  place; otherwise copy (the zero page "copies" to a fresh zeroed page).

Reference counting: a user page's `_count` has one reference per PTE mapping it, plus
one held by the page cache (file pages) or the swap cache; `_mapcount` is PTEs - 1. The
last reference frees the page (`free_user_page`: off the LRU first).

RSS counters (mm.rss, indexed MM_FILEPAGES, MM_ANONPAGES, MM_SWAPENTS, MM_SHMEMPAGES) and
the node counters nr_anon_pages (anon pages mapped at least once), nr_mapped (file pages
mapped at least once), nr_mlock change here. Costs (copies, disk reads, swap-in) are added
to `task.cost`, in seconds.

Reverse map: `rmap_walk(kernel, page, fn)` calls fn(mm, vma, addr) for every PTE mapping
the page (anon pages through their anon_vma's chain, file pages through i_mmap); fn may
return False to stop. `page_referenced` and `try_to_unmap` are built on it for reclaim.
"""

from __future__ import annotations

from . import gfp as G
from .filemap import filemap_fault_page, free_user_page, set_page_dirty
from .page import (
    PG_anon,
    PG_dirty,
    PG_highmem,
    PG_ksm,
    PG_mlocked,
    PG_swapbacked,
    PG_swapcache,
    PG_thp,
    PG_thpfile,
    PG_uptodate,
    PG_workingset,
    PG_zero,
)
from .pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_MARKER,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SWP,
    _PAGE_USER,
    HPAGE_PMD_NR,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    PTE_PRESENT_MASK,
    swp_entry_to_pte,
)
from .readahead import PG_readahead
from .units import PAGE_SHIFT
from .vma import (
    VM_ACCESS_FLAGS,
    VM_DROPPABLE,
    VM_EXEC,
    VM_LOCKED,
    VM_LOCKONFAULT,
    VM_MAYWRITE,
    VM_SHARED,
    VM_SOFTDIRTY,
    VM_WRITE,
    AnonVMA,
)
from .vmstat import page_restate

GFP_USER_PAGE = G.GFP_HIGHUSER_MOVABLE
FAULT_AROUND_PAGES = 16  # fault_around_bytes = 64 KiB
_UPTODATE_RA = PG_uptodate | PG_readahead

VM_FAULT_OOM = 0x001
VM_FAULT_SIGBUS = 0x002
VM_FAULT_MAJOR = 0x004
VM_FAULT_SIGSEGV = 0x040  # a guard marker (handle_pte_marker)
VM_FAULT_ERROR = VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV

_BASE_BITS = _PAGE_USER | _PAGE_ACCESSED


def vma_pte_bits(flags: int, writable: bool) -> int:
    """Low PTE bits for a page mapped in a VMA with `flags` (vm_page_prot)."""
    bits = _BASE_BITS | (_PAGE_PRESENT if flags & VM_ACCESS_FLAGS else _PAGE_PROTNONE)
    if writable:
        bits |= _PAGE_RW | _PAGE_DIRTY
    if not flags & VM_EXEC:
        bits |= _PAGE_NX
    return bits


def is_cow_mapping(flags: int) -> bool:
    return (flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE


def mm_counter(page) -> int:
    f = page.flags
    if f & PG_anon:
        return MM_ANONPAGES
    if f & PG_swapbacked:
        return MM_SHMEMPAGES
    return MM_FILEPAGES


# --- anon_vma ----------------------------------------------------------------------------
def _anon_vma_compatible(a, b) -> bool:
    return (a.vm_end == b.vm_start and a.vm_file is b.vm_file
            and not (a.vm_flags ^ b.vm_flags) & ~(VM_ACCESS_FLAGS | VM_SOFTDIRTY)
            and b.vm_pgoff == a.vm_pgoff + ((b.vm_start - a.vm_start) >> PAGE_SHIFT))


def anon_vma_prepare(vma) -> AnonVMA:
    """Give the VMA an anon_vma: a compatible neighbour's (find_mergeable_anon_vma) so the
    two may merge later, else a new one."""
    av = vma.anon_vma
    if av is not None:
        return av
    mt = vma.vm_mm.mm_mt
    i = mt.index(vma)
    cand = None
    if i + 1 < len(mt.vmas):
        nxt = mt.vmas[i + 1]
        if (nxt.anon_vma is not None and len(nxt.anon_vma_chain) == 1
                and _anon_vma_compatible(vma, nxt)):
            cand = nxt.anon_vma
    if cand is None and i > 0:
        prev = mt.vmas[i - 1]
        if (prev.anon_vma is not None and len(prev.anon_vma_chain) == 1
                and _anon_vma_compatible(prev, vma)):
            cand = prev.anon_vma
    av = cand if cand is not None else AnonVMA()
    vma.anon_vma = av
    vma.anon_vma_chain.append(av)
    av.vmas[vma] = None
    return av


# --- page references and rmap counters --------------------------------------------------
def mlock_page(kernel, page) -> None:
    if not page.flags & PG_mlocked:
        page.flags |= PG_mlocked
        vm = kernel.vmstat
        vm["nr_mlock"] += 1
        vm["unevictable_pgs_mlocked"] += 1


def munlock_page(kernel, page) -> None:
    if page.flags & PG_mlocked:
        page.flags &= ~PG_mlocked
        vm = kernel.vmstat
        vm["nr_mlock"] -= 1
        vm["unevictable_pgs_munlocked"] += 1


def put_page(kernel, page) -> None:
    if page._count == 1:
        free_user_page(kernel, page)
    else:
        page._count -= 1


def page_remove_rmap(kernel, page) -> None:
    page._mapcount -= 1
    if page._mapcount == -1:
        if page.flags & PG_anon:
            kernel.vmstat["nr_anon_pages"] -= 1
        else:
            kernel.vmstat["nr_mapped"] -= 1
        mc = kernel.memcg
        if mc is not None:
            mc.rstat_updated(1)  # __mod_lruvec_page_state(NR_ANON_MAPPED / NR_FILE_MAPPED)
        if page.flags & PG_mlocked:
            munlock_page(kernel, page)


def page_add_rmap(kernel, page) -> None:
    """One more PTE maps an existing page (takes a reference)."""
    page._count += 1
    page._mapcount += 1
    if page._mapcount == 0:
        if page.flags & PG_anon:
            kernel.vmstat["nr_anon_pages"] += 1
        else:
            kernel.vmstat["nr_mapped"] += 1
        mc = kernel.memcg
        if mc is not None:
            mc.rstat_updated(1)  # page_add_*_rmap: NR_ANON_MAPPED / NR_FILE_MAPPED


def new_anon_page(kernel, vma, addr: int, zero: bool, oom_victim: bool = False):
    """alloc + page_add_new_anon_rmap + lru_cache_add. Not yet in a PTE. An OOM victim
    (tsk_is_oom_victim) may dip into the reserves to finish dying."""
    av = vma.anon_vma
    if av is None:
        av = anon_vma_prepare(vma)
    gfp = GFP_USER_PAGE | G.__GFP_ZERO if zero else GFP_USER_PAGE
    page = kernel.alloc_pages(gfp, 0, None, None, oom_victim) if oom_victim else kernel.alloc_pages(gfp)
    if page is None:
        return None
    memcgs = getattr(kernel, "memcgs", None)
    if memcgs is not None and memcgs.active and not memcgs.charge(page, 1, G.GFP_KERNEL):
        kernel.free_pages(page)  # mem_cgroup_charge failed: VM_FAULT_OOM
        return None
    # folio_add_new_anon_rmap: a VM_DROPPABLE page is never swap-backed, so reclaim
    # drops it (try_to_unmap) instead of swapping it
    page.flags |= PG_anon if vma.vm_flags & VM_DROPPABLE else PG_anon | PG_swapbacked
    page.mapping = av
    page.index = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
    page._mapcount = 0
    kernel.vmstat["nr_anon_pages"] += 1
    mc = kernel.memcg
    if mc is not None:
        # the root memcg's statistics (memcontrol.py): mem_cgroup_charge's PGPGIN
        # (mem_cgroup_charge_statistics) and page_add_new_anon_rmap's NR_ANON_MAPPED
        mc.rstat_ones(2)
    if vma.vm_flags & VM_LOCKED:
        mlock_page(kernel, page)  # before the LRU add: it goes straight to unevictable
    kernel.lru_cache_add(page)
    return page


def _drop_new_anon_page(kernel, page) -> None:
    page._mapcount = -1
    kernel.vmstat["nr_anon_pages"] -= 1
    mc = kernel.memcg
    if mc is not None:
        mc.rstat_updated(1)  # page_remove_rmap: NR_ANON_MAPPED (the uncharge: its free)
    if page.flags & PG_mlocked:
        munlock_page(kernel, page)
    free_user_page(kernel, page)


# --- the fault handlers ---------------------------------------------------------------------
def handle_mm_fault(task, vma, addr: int, write: bool) -> int:
    """Resolve a fault at `addr` in `vma` (already checked). Returns VM_FAULT_* bits."""
    kernel = task.kernel
    vm = kernel.vmstat
    vm["pgfault"] += 1
    memcg = getattr(task, "memcg", None)
    if memcg is not None:
        memcg.pgfault += 1  # count_memcg_event_mm(mm, PGFAULT)
    mc = kernel.memcg
    if mc is not None:
        mc.rstat_updated(1)  # count_memcg_event_mm(PGFAULT)
    vpn = addr >> PAGE_SHIFT
    pte = task.mm.pgtable.ptes.get(vpn, 0)
    if not pte:
        if vma.vm_file is None:
            ops = vma.vm_ops
            if ops is not None and hasattr(ops, "fault"):
                ret = ops.fault(task, vma, addr, write)  # a special mapping (vdso, vvar)
            else:
                thp = kernel.thp
                ret = -1
                # __handle_mm_fault: pmd_none (no PTE table over the 2 MiB) and the VMA
                # may have huge pages -> create_huge_pmd; VM_FAULT_FALLBACK: 4 KiB
                if (thp is not None and thp.on and (vpn >> 9) not in task.mm.pgtable.pte_counts
                        and thp.vma_allowed(vma)):
                    ret = thp.do_huge_pmd_anonymous_page(task, vma, addr, write)
                if ret < 0:
                    ret = do_anonymous_page(task, vma, addr, write)
        else:
            ret = do_file_fault(task, vma, addr, write)
    elif not pte & PTE_PRESENT_MASK:
        if pte & _PAGE_MARKER:
            ret = VM_FAULT_SIGSEGV  # handle_pte_marker: a guard region
        else:
            ret = do_swap_page(task, vma, addr, pte, write)
    elif write and not pte & _PAGE_RW:
        ret = do_wp_page(task, vma, addr, pte)
    else:  # spurious: another path already fixed it up
        new = pte | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
        if new != pte:
            task.mm.pgtable.ptes[vpn] = new
            task.mm.pgtable.pte_changed(vpn)
        ret = 0
    if ret & VM_FAULT_MAJOR:
        vm["pgmajfault"] += 1
        if memcg is not None:
            memcg.pgmajfault += 1
        if mc is not None:
            mc.rstat_updated(1)  # count_memcg_event_mm(PGMAJFAULT)
    return ret


def do_anonymous_page(task, vma, addr: int, write: bool) -> int:
    kernel = task.kernel
    mm = task.mm
    vpn = addr >> PAGE_SHIFT
    if not write:
        pte = (kernel.zero_pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, False)
        if not mm.pgtable.set_pte_new(vpn, pte):
            return VM_FAULT_OOM
        kernel.vmstat["fault_zero_page"] += 1
        return 0
    page = new_anon_page(kernel, vma, addr, True, task.oom_victim)
    if page is None:
        return VM_FAULT_OOM
    if not mm.pgtable.set_pte_new(vpn, (page.pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, True)):
        _drop_new_anon_page(kernel, page)
        return VM_FAULT_OOM
    mm.rss[MM_ANONPAGES] += 1
    kernel.vmstat["fault_demand_zero"] += 1
    return 0


def _copy_page(kernel, task, src_pfn: int, dst_pfn: int) -> None:
    """copy_user_highpage: highmem pages are reached through atomic kmaps (i386)."""
    phys = kernel.phys
    mem_map = kernel.mem_map
    src, dst = mem_map[src_pfn], mem_map[dst_pfn]
    high = (src.flags | dst.flags) & PG_highmem
    if high:
        a_src = kernel.kmap_atomic(src)
        a_dst = kernel.kmap_atomic(dst)
    task.cost += phys.touch(src_pfn, False)
    task.cost += phys.copy(dst_pfn, src_pfn)  # (the content as held: a recipe stays one)
    if high:
        kernel.kunmap_atomic(a_dst)
        kernel.kunmap_atomic(a_src)


def do_wp_page(task, vma, addr: int, pte: int) -> int:
    """Write to a present read-only PTE in a writable VMA."""
    kernel = task.kernel
    vm = kernel.vmstat
    mm = task.mm
    ptes = mm.pgtable.ptes
    vpn = addr >> PAGE_SHIFT
    if pte & _PAGE_PSE:
        if kernel.thp.shmem_folio_of(pte >> PAGE_SHIFT) is not None:
            # wp_huge_pmd of a file PMD: split (the PMD goes), the fault retried by PTE
            kernel.thp.split_pmd_at(mm, addr)
            return do_file_fault(task, vma, addr, True)
        # do_huge_pmd_wp_page: reuse an exclusive THP whole, else split the PMD and
        # continue with the 4 KiB PTE (VM_FAULT_FALLBACK)
        pte = kernel.thp.do_huge_pmd_wp_page(task, vma, addr, pte)
        if not pte:
            return 0
    pfn = pte >> PAGE_SHIFT
    if vma.vm_flags & VM_SHARED:
        # wp_page_shared: the page is the file's; writing dirties it
        ptes[vpn] = pte | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED
        mm.pgtable.pte_changed(vpn)
        set_page_dirty(kernel, kernel.mem_map[pfn], task)
        fault_dirty_shared_page(kernel, kernel.mem_map[pfn], task)
        vm["fault_wp_shared"] += 1
        return 0
    zero = pfn == kernel.zero_pfn
    old = None if zero else kernel.mem_map[pfn]
    if old is not None and old.flags & PG_anon and not old.flags & PG_ksm:
        if old._mapcount == 0 and _anon_refs(kernel, old) == 1:
            ptes[vpn] = pte | _PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED
            mm.pgtable.pte_changed(vpn)
            vm["fault_cow_reuse"] += 1
            vm["pgreuse"] += 1
            return 0
    page = new_anon_page(kernel, vma, addr, zero, task.oom_victim)
    if page is None:
        return VM_FAULT_OOM
    if not zero:
        _copy_page(kernel, task, pfn, page.pfn)
    ptes[vpn] = (page.pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, True)
    mm.pgtable.pte_changed(vpn)
    mm.rss[MM_ANONPAGES] += 1
    if old is not None:
        mm.rss[mm_counter(old)] -= 1
        page_remove_rmap(kernel, old)
        if old.flags & PG_swapcache and old._mapcount == -1:
            # free_page_and_swap_cache: the copy replaced the last mapping of a
            # swap-cache page, whose slot no PTE can need any more unless swapped-out
            # PTEs still refer to it (free_swap_cache checks)
            fsc = getattr(kernel, "free_swap_cache", None)
            if fsc is not None:
                fsc(old)
        put_page(kernel, old)
        if old.flags & PG_ksm:
            vm["cow_ksm"] += 1
    vm["fault_cow"] += 1
    return 0


def map_file_page(kernel, mm, vma, vpn: int, page, writable: bool, new: bool = True) -> bool:
    """Map a page-cache page at vpn (finish_fault / filemap_map_pages)."""
    pte = (page.pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, writable)
    if not writable:
        pte &= ~_PAGE_DIRTY
    if new:
        if not mm.pgtable.set_pte_new(vpn, pte):
            return False
    else:
        mm.pgtable.ptes[vpn] = pte
        mm.pgtable.pte_changed(vpn)
    page_add_rmap(kernel, page)
    mm.rss[mm_counter(page)] += 1
    if vma.vm_flags & VM_LOCKED and not page.flags & PG_thpfile:
        # (6.1 mlock_vma_folio: a PTE mapping of a large folio does not mlock it; only
        # a PMD mapping does, huge_memory.shmem_huge_fault)
        mlock_page(kernel, page)
    return True


def _shared_read_writable(vma, inode) -> bool:
    # shmem has no dirty tracking: shared writable mappings map its pages writable on a
    # read fault; regular files write-protect them so the first write dirties the page.
    return bool(inode.shmem and (vma.vm_flags & (VM_SHARED | VM_WRITE)) == (VM_SHARED | VM_WRITE))


def fault_around(task, vma, addr: int, inode) -> int:
    """Map up to FAULT_AROUND_PAGES cached neighbours (aligned window, clipped to the VMA,
    the PTE table and EOF) that have no PTE yet. Returns how many were mapped."""
    kernel = task.kernel
    mm = task.mm
    pt = mm.pgtable
    ptes = pt.ptes
    vpn = addr >> PAGE_SHIFT
    base = vpn & ~(FAULT_AROUND_PAGES - 1)
    tbl = 1 << pt.pte_shift
    lo = max(base, vma.vm_start >> PAGE_SHIFT, vpn & ~(tbl - 1))
    hi = min(base + FAULT_AROUND_PAGES, vma.vm_end >> PAGE_SHIFT, (vpn | (tbl - 1)) + 1)
    pages = inode.mapping.pages
    eof = inode.nr_index()
    first_idx = vma.vm_pgoff - (vma.vm_start >> PAGE_SHIFT)
    writable = _shared_read_writable(vma, inode)
    n = 0
    hits = 0
    for v in range(lo, hi):
        if v in ptes:
            continue
        idx = first_idx + v
        if idx >= eof:
            break
        page = pages.get(idx)
        # next_uptodate_folio: a page marked PG_readahead is left to the fault, which
        # starts the next readahead window
        if page is None or page.flags & _UPTODATE_RA != PG_uptodate:
            continue
        if not map_file_page(kernel, mm, vma, v, page, writable):
            break
        n += 1
        if not page.flags & PG_workingset:
            hits += 1
    if hits:
        # filemap_map_pages: pages mapped around the fault are hits that take misses back
        # from mmap_miss (recently refaulted pages do not: readahead would be wasted)
        ra = vma.vm_file.f_ra
        ra.mmap_miss = ra.mmap_miss - hits if ra.mmap_miss > hits else 0
    return n


def do_file_fault(task, vma, addr: int, write: bool) -> int:
    kernel = task.kernel
    vm = kernel.vmstat
    mm = task.mm
    inode = vma.vm_file.inode
    vpn = addr >> PAGE_SHIFT
    idx = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
    if idx >= inode.nr_index():
        return VM_FAULT_SIGBUS
    if inode.shmem:
        thp = kernel.thp
        if thp is not None and (thp.shmem_on or thp.shmem_folios):
            # shmem_fault of a huge folio and do_set_pmd (huge_memory.py); -1: 4 KiB
            ret = thp.shmem_huge_fault(task, vma, addr, idx, write)
            if ret >= 0:
                return ret
    elif kernel.thp is not None and kernel.thp.shmem_folios:
        # a regular file's THP (READ_ONLY_THP_FOR_FS): filemap_map_pmd / do_set_pmd
        ret = kernel.thp.filemap_map_pmd(task, vma, addr, idx, write)
        if ret >= 0:
            return ret
    if not write:
        fault_around(task, vma, addr, inode)
        if vpn in mm.pgtable.ptes:
            vm["fault_file_minor"] += 1
            return 0
    page, major, cost = filemap_fault_page(kernel, vma.vm_file, vma.vm_flags, idx)
    task.cost += cost
    if page is None:
        if inode.enospc:  # a full tmpfs mount: vmf_error(-ENOSPC)
            inode.enospc = False
            return VM_FAULT_SIGBUS
        return VM_FAULT_OOM if idx < inode.nr_index() else VM_FAULT_SIGBUS
    vm["fault_file_major" if major else "fault_file_minor"] += 1
    ret = VM_FAULT_MAJOR if major else 0
    if major and not write and not inode.shmem:
        # filemap_fault of a page not cached (PGMAJFAULT once, above): the read, the
        # read-around's or the page's own, drops the mmap lock (maybe_unlock_mmap_for_io)
        # and the fault returns VM_FAULT_RETRY; the architecture's handler calls
        # handle_mm_fault again with FAULT_FLAG_TRIED. PGFAULT counts the fault once: since
        # 6.4 mm_account_fault skips the VM_FAULT_RETRY attempt (6.1 counted both, at
        # handle_mm_fault's entry); this machine's 6.18 counts 1 (tests/data/readahead/
        # fault_retry.json). The retried read fault is do_read_fault's: do_fault_around
        # maps the window's cached pages, the faulting one among them (each a hit that
        # takes a miss back from mmap_miss); filemap_fault, which skips async readahead on
        # a retry, maps the page only if fault-around left it (a PG_readahead page).
        # (A write's retry, do_cow_fault or do_shared_fault, has no fault-around.)
        fault_around(task, vma, addr, inode)
        if vpn in mm.pgtable.ptes:
            return ret
    if not write:
        if not map_file_page(kernel, mm, vma, vpn, page, _shared_read_writable(vma, inode)):
            return VM_FAULT_OOM
        return ret
    if not vma.vm_flags & VM_SHARED:
        # do_cow_fault: a private copy of the file page
        new = new_anon_page(kernel, vma, addr, False, task.oom_victim)
        if new is None:
            return VM_FAULT_OOM
        _copy_page(kernel, task, page.pfn, new.pfn)
        if not mm.pgtable.set_pte_new(vpn, (new.pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, True)):
            _drop_new_anon_page(kernel, new)
            return VM_FAULT_OOM
        mm.rss[MM_ANONPAGES] += 1
        vm["fault_cow"] += 1
        return ret
    # do_shared_fault
    if not map_file_page(kernel, mm, vma, vpn, page, True):
        return VM_FAULT_OOM
    set_page_dirty(kernel, page, task)
    fault_dirty_shared_page(kernel, page, task)
    return ret


def fault_dirty_shared_page(kernel, page, task) -> None:
    """fault_dirty_shared_page: a write fault dirtied a shared file page; the dirty limits
    are checked as for write() (balance_dirty_pages_ratelimited, installed by reclaim),
    against the faulting task's throttling state."""
    hook = getattr(kernel, "balance_dirty_pages_ratelimited", None)
    if hook is not None:
        hook(page, task)


def _anon_refs(kernel, page) -> int:
    """The references that keep an anonymous page from being exclusive to one mapping:
    page_count less the swap cache's own reference, or 2 while another swap PTE (a fork
    child's) still refers to the page's slot. 6.1 reuses or maps writable only a page
    whose count is 1 once try_to_free_swap has run (do_wp_page's reuse test,
    do_swap_page's page_count == 1), and try_to_free_swap keeps a page whose slot is
    still referenced (folio_swapped)."""
    if not page.flags & PG_swapcache:
        return page._count
    swap_count = getattr(kernel, "swap_count_hook", None)
    if swap_count is not None and swap_count(page.private):
        return 2
    return page._count - 1


def do_swap_page(task, vma, addr: int, pte: int, write: bool) -> int:
    kernel = task.kernel
    mm = task.mm
    if not pte & _PAGE_SWP:
        raise RuntimeError(f"do_swap_page: bad PTE {pte:#x} at {addr:#x}")
    hook = getattr(kernel, "swapin_hook", None)
    if hook is None:
        raise RuntimeError("do_swap_page: a swap entry exists but kernel.swapin_hook is unset")
    page, cost, major = hook(task, vma, addr, pte, write)
    task.cost += cost
    if page is None:
        return VM_FAULT_OOM
    if page.mapping is None:
        # a page read back from swap: the swap entry may still be shared with other
        # processes of the fork tree, so use the oldest anon_vma, whose chain reaches
        # all of them (__folio_set_anon for a non-exclusive folio)
        av = anon_vma_prepare(vma)
        while av.parent is not None:
            av = av.parent
        page.mapping = av
        page.index = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
    page.flags |= PG_anon | PG_swapbacked
    # 6.1 maps the page writable when it is certainly exclusive: its swap PTE carried
    # pte_swp_exclusive (which fork clears on both sides) or, after should_try_to_free_swap,
    # page_count == 1. A swap-cache page whose slot another PTE still references (a fork
    # child's swap entry) is shared, whatever its mapcount and references say.
    exclusive = page._mapcount == -1 and _anon_refs(kernel, page) == 1
    writable = bool(write and exclusive and vma.vm_flags & VM_WRITE)
    vpn = addr >> PAGE_SHIFT
    newpte = (page.pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, writable)
    mm.pgtable.ptes[vpn] = newpte
    mm.pgtable.pte_changed(vpn)
    page._mapcount += 1
    if page._mapcount == 0:
        kernel.vmstat["nr_anon_pages"] += 1
        mc = kernel.memcg
        if mc is not None:
            mc.rstat_updated(1)  # page_add_anon_rmap: NR_ANON_MAPPED
    mm.rss[MM_ANONPAGES] += 1
    mm.rss[MM_SWAPENTS] -= 1
    if vma.vm_flags & VM_LOCKED:
        mlock_page(kernel, page)
    kernel.vmstat["fault_swapin"] += 1
    ret = VM_FAULT_MAJOR if major else 0
    if write and not writable:
        ret |= do_wp_page(task, vma, addr, newpte)
    return ret


# --- teardown ----------------------------------------------------------------------------------
def _vpns_in(ptes: dict, lo: int, hi: int) -> list[int]:
    if hi - lo > 2 * len(ptes):
        return sorted(v for v in ptes if lo <= v < hi)
    return [v for v in range(lo, hi) if v in ptes]


def zap_page_range(kernel, mm, vma, start: int, end: int, drop_markers: bool = False) -> int:
    """Unmap every PTE of [start, end) in `vma` (zap_pte_range): dirty bits go to the page,
    references are dropped, swap entries are freed (kernel.swap_free hook). Guard markers
    stay unless `drop_markers` (ZAP_FLAG_DROP_MARKER: munmap and exit, unmap_vmas), so
    MADV_DONTNEED, MADV_REMOVE and truncation keep them. Returns the number of PTEs
    removed."""
    pt = mm.pgtable
    ptes = pt.ptes
    zapped = 0
    if pt.huge:
        # zap_pmd_range: whole PMD mappings go at once, partial ones are split first
        zapped = kernel.thp.zap_huge_range(mm, start, end)
    vpns = _vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
    if not vpns:
        return zapped
    update_hiwater_rss(mm)
    zero_pfn = kernel.zero_pfn
    mem_map = kernel.mem_map
    rss = mm.rss
    swap_free = getattr(kernel, "swap_free", None)
    free_swap_cache = getattr(kernel, "free_swap_cache", None)
    locked = vma.vm_flags & VM_LOCKED
    kept = 0
    for vpn in vpns:
        pte = pt.clear_pte(vpn)
        if pte & PTE_PRESENT_MASK:
            pfn = pte >> PAGE_SHIFT
            if pfn == zero_pfn:
                continue
            page = mem_map[pfn]
            rss[mm_counter(page)] -= 1
            if not page.flags & PG_anon:
                if pte & _PAGE_DIRTY:
                    set_page_dirty(kernel, page)
                if pte & _PAGE_ACCESSED:
                    kernel.mark_page_accessed(page)
            page_remove_rmap(kernel, page)
            if (locked and page.flags & PG_mlocked and page._mapcount >= 0
                    and not _mapped_locked_elsewhere(kernel, page, vma)):
                munlock_page(kernel, page)  # still mapped, but by no VM_LOCKED VMA
            if page.flags & PG_swapcache and page._mapcount == -1 and free_swap_cache:
                # free_pages_and_swap_cache: the last PTE went, so its swap copy can go
                # (the hook drops the swap cache's reference if no swap PTE needs it)
                free_swap_cache(page)
            put_page(kernel, page)
        elif pte & _PAGE_SWP:
            rss[MM_SWAPENTS] -= 1
            if swap_free is not None:
                swap_free(pte >> PAGE_SHIFT)
        elif pte & _PAGE_MARKER and not drop_markers:
            pt.set_pte_new(vpn, pte)  # the table is still there
            kept += 1
    return len(vpns) - kept + zapped


def update_hiwater_rss(mm) -> None:
    r = mm.rss
    total = r[MM_FILEPAGES] + r[MM_ANONPAGES] + r[MM_SHMEMPAGES]
    if total > mm.hiwater_rss:
        mm.hiwater_rss = total


def move_ptes(kernel, mm, vma, old_start: int, new_start: int, length: int) -> bool:
    """move_page_tables: PTEs of [old_start, +length) go to new_start (same pages)."""
    pt = mm.pgtable
    ptes = pt.ptes
    delta = (new_start - old_start) >> PAGE_SHIFT
    if pt.huge:
        # move_huge_pmd: PMD mappings moving whole to an aligned place keep their PMD
        if not kernel.thp.move_huge_range(mm, old_start, new_start, length):
            return False
    vpns = _vpns_in(ptes, old_start >> PAGE_SHIFT, (old_start + length) >> PAGE_SHIFT)
    for vpn in vpns:
        pte = pt.clear_pte(vpn)
        if not pt.set_pte_new(vpn + delta, pte):
            pt.set_pte_new(vpn, pte)  # the table we just used is still there
            return False
    return True


# --- fork ---------------------------------------------------------------------------------------
def copy_page_range(kernel, dst_mm, src_mm, dst_vma, src_vma) -> bool:
    """Copy the PTEs of a VMA at fork. Writable PTEs of a CoW mapping are write-protected
    in BOTH parent and child. False if a page-table page could not be had."""
    sptes = src_mm.pgtable.ptes
    dpt = dst_mm.pgtable
    cow = is_cow_mapping(src_vma.vm_flags)
    shared = bool(src_vma.vm_flags & VM_SHARED)
    zero_pfn = kernel.zero_pfn
    mem_map = kernel.mem_map
    rss = dst_mm.rss
    dup = getattr(kernel, "swap_duplicate", None)
    skip = 0
    for vpn in _vpns_in(sptes, src_vma.vm_start >> PAGE_SHIFT, src_vma.vm_end >> PAGE_SHIFT):
        pte = sptes[vpn]
        if pte & _PAGE_PSE:
            # copy_huge_pmd: the first of the 512 entries copies the PMD mapping
            if vpn >= skip:
                if not kernel.thp.copy_huge_pmd(dst_mm, src_mm, vpn):
                    return False
                skip = vpn + HPAGE_PMD_NR
            continue
        if pte & PTE_PRESENT_MASK:
            pfn = pte >> PAGE_SHIFT
            if cow and pte & _PAGE_RW:
                pte &= ~_PAGE_RW
                sptes[vpn] = pte
                src_mm.pgtable.pte_changed(vpn)  # (fork write-protects the parent's PTE)
            child = pte & ~_PAGE_ACCESSED
            if shared:
                child &= ~_PAGE_DIRTY
            if not dpt.set_pte_new(vpn, child):
                return False
            if pfn != zero_pfn:
                page = mem_map[pfn]
                page._count += 1
                page._mapcount += 1
                rss[mm_counter(page)] += 1
                if shared and pte & _PAGE_DIRTY:
                    set_page_dirty(kernel, page)
        elif pte & _PAGE_SWP:
            if not dpt.set_pte_new(vpn, pte):
                return False
            rss[MM_SWAPENTS] += 1
            if dup is not None:
                dup(pte >> PAGE_SHIFT)
        elif pte & _PAGE_MARKER:
            # copy_nonpresent_pte -> copy_pte_marker: guard markers are always copied
            if not dpt.set_pte_new(vpn, pte):
                return False
    return True


# --- populate (GUP) -----------------------------------------------------------------------------
def populate_vma_range(task, vma, start: int, end: int) -> int:
    """Fault in every page of [start, end) (populate_vma_page_range). Writable private
    VMAs are populated for write (real pages, CoW broken); others for read. PROT_NONE
    VMAs are skipped. Returns 0 or VM_FAULT_* error bits."""
    flags = vma.vm_flags
    if not flags & VM_ACCESS_FLAGS or flags & VM_LOCKONFAULT:
        return 0
    write = (flags & (VM_WRITE | VM_SHARED)) == VM_WRITE
    ptes = task.mm.pgtable.ptes
    for addr in range(start, end, 1 << PAGE_SHIFT):
        pte = ptes.get(addr >> PAGE_SHIFT, 0)
        if pte & _PAGE_PRESENT and (not write or pte & _PAGE_RW):
            if flags & VM_LOCKED and pte >> PAGE_SHIFT != task.kernel.zero_pfn:
                page = task.kernel.mem_map[pte >> PAGE_SHIFT]
                if not page.flags & PG_thpfile or pte & _PAGE_PSE:  # (mlock_vma_folio)
                    mlock_page(task.kernel, page)
            continue
        ret = handle_mm_fault(task, vma, addr, write)
        if ret & VM_FAULT_ERROR:
            return ret
        if task.fatal_signal_pending():
            return VM_FAULT_OOM
    return 0


def mlock_present_pages(kernel, mm, vma, start: int, end: int, lock: bool) -> None:
    """mlock_vma_pages_range: (un)mark the pages already mapped in [start, end)."""
    ptes = mm.pgtable.ptes
    zero_pfn = kernel.zero_pfn
    mem_map = kernel.mem_map
    for vpn in _vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT):
        pte = ptes[vpn]
        if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
            continue
        page = mem_map[pte >> PAGE_SHIFT]
        if page.flags & PG_thpfile and not pte & _PAGE_PSE:
            continue  # mlock_pte_range: a PTE-mapped large folio is skipped (6.1)
        if lock:
            mlock_page(kernel, page)
        elif page.flags & PG_mlocked and not _mapped_locked_elsewhere(kernel, page, vma):
            munlock_page(kernel, page)


def _mapped_locked_elsewhere(kernel, page, vma) -> bool:
    found = []

    def check(mm, v, addr):
        if v is not vma and v.vm_flags & VM_LOCKED:
            found.append(v)
            return False
        return True

    rmap_walk(kernel, page, check)
    return bool(found)


# --- rmap -----------------------------------------------------------------------------------------
def rmap_walk(kernel, page, fn) -> None:
    """Call fn(mm, vma, addr) for each PTE mapping `page`; stop if fn returns False."""
    mapping = page.mapping
    if mapping is None:
        return
    vmas = mapping.vmas if page.flags & PG_anon else mapping.i_mmap
    pfn = page.pfn
    index = page.index
    for vma in list(vmas):
        addr = vma.vm_start + ((index - vma.vm_pgoff) << PAGE_SHIFT)
        if addr < vma.vm_start or addr >= vma.vm_end:
            continue
        mm = vma.vm_mm
        pte = mm.pgtable.ptes.get(addr >> PAGE_SHIFT, 0)
        if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT != pfn:
            continue
        if fn(mm, vma, addr) is False:
            return


def page_referenced(kernel, page) -> tuple[int, int]:
    """Test and clear the accessed bit of every PTE mapping the page.
    Returns (referenced PTEs, vm_flags of the VMAs seen OR-ed together)."""
    out = [0, 0]

    def one(mm, vma, addr):
        ptes = mm.pgtable.ptes
        vpn = addr >> PAGE_SHIFT
        pte = ptes[vpn]
        if vma.vm_flags & VM_LOCKED:
            out[1] |= vma.vm_flags
            out[0] += 1
            return False
        if pte & _PAGE_ACCESSED:
            ptes[vpn] = pte & ~_PAGE_ACCESSED
            mm.pgtable.pte_changed(vpn)
            out[0] += 1
        out[1] |= vma.vm_flags
        return True

    rmap_walk(kernel, page, one)
    return out[0], out[1]


def try_to_unmap(kernel, page, swap_entry: int | None = None, ignore_mlock: bool = False) -> bool:
    """Unmap the page from every PTE (try_to_unmap). Anonymous pages need `swap_entry`:
    their PTEs become that swap entry (MM_SWAPENTS). A dirty PTE dirties the page. The
    caller must hold its own reference (like an isolated LRU page). Fails (returns False,
    the page is mlocked) if a VM_LOCKED VMA maps it, unless `ignore_mlock`
    (TTU_IGNORE_MLOCK: split_huge_page's unmap_folio and khugepaged's collapse_file of a
    file page): then those PTEs go too, and the page is munlocked with its last mapping
    (6.1 page_remove_rmap -> munlock_vma_page)."""
    if page.flags & PG_thpfile:
        kernel.thp.shmem_unmap_pmds(page)  # TTU_SPLIT_HUGE_PMD: a shmem THP's PMDs go
    if page.flags & PG_thp:
        thp = kernel.thp
        base = page.pfn & ~(HPAGE_PMD_NR - 1)
        folio = thp.folios.get(base)
        if folio is not None and page.flags & PG_swapcache:
            # a THP swapped out whole (huge_memory.add_to_swap_folio): TTU_SPLIT_HUGE_PMD
            # splits its PMD mappings, the folio stays whole
            if folio.pmd_maps:
                thp.split_pmds(folio)
        else:
            # (a lazily freed THP) split before it is unmapped
            thp.split_huge_page(base)
    anon = bool(page.flags & PG_anon)
    # an anonymous page without PG_swapbacked (MADV_FREE'd, or of a VM_DROPPABLE VMA)
    # needs no swap entry: its PTEs are dropped (a later read faults in a zero page)
    lazyfree = anon and not page.flags & PG_swapbacked
    if anon and swap_entry is None and not lazyfree:
        raise ValueError("try_to_unmap: an anonymous page needs a swap entry")
    ok = [True]

    def one(mm, vma, addr):
        if vma.vm_flags & VM_LOCKED and not ignore_mlock:
            mlock_page(kernel, page)
            ok[0] = False
            return False
        vpn = addr >> PAGE_SHIFT
        pt = mm.pgtable
        pte = pt.ptes[vpn]
        if pte & _PAGE_DIRTY and not anon:
            set_page_dirty(kernel, page)
        if lazyfree:
            # try_to_unmap_one, "MADV_FREE page check": a page written since MADV_FREE
            # (dirty) is kept and swap-backed again; a VM_DROPPABLE one is dropped even
            # dirty (6.11), its data gone for good
            if vma.vm_flags & VM_DROPPABLE:
                page.flags &= ~PG_dirty
                page_restate(kernel.vmstat, page)
            elif pte & _PAGE_DIRTY or page.flags & PG_dirty:
                page.flags |= PG_swapbacked | PG_dirty
                page_restate(kernel.vmstat, page)
                ok[0] = False
                return False
            pt.clear_pte(vpn)
        elif anon:
            pt.ptes[vpn] = swp_entry_to_pte(swap_entry)
            pt.pte_changed(vpn)
            mm.rss[MM_SWAPENTS] += 1
            dup = getattr(kernel, "swap_duplicate", None)
            if dup is not None:
                dup(swap_entry)
        else:
            pt.clear_pte(vpn)
        mm.rss[mm_counter(page)] -= 1
        page_remove_rmap(kernel, page)
        page._count -= 1
        return True

    rmap_walk(kernel, page, one)
    return ok[0] and page._mapcount == -1


def ksm_scan_order(kernel):
    """Yield (task, addr, page) for every anonymous page mapped in a VM_MERGEABLE VMA, in
    KSM's scan order: process by process (pid order), VMA by VMA, page by page."""
    from .vma import VM_MERGEABLE

    mem_map = kernel.mem_map
    zero_pfn = kernel.zero_pfn
    for pid in sorted(kernel.tasks):
        task = kernel.tasks[pid]
        mm = task.mm
        if mm is None:
            continue
        ptes = mm.pgtable.ptes
        for vma in mm.mm_mt.vmas:
            if not vma.vm_flags & VM_MERGEABLE:
                continue
            for vpn in _vpns_in(ptes, vma.vm_start >> PAGE_SHIFT, vma.vm_end >> PAGE_SHIFT):
                pte = ptes[vpn]
                if pte & _PAGE_PRESENT and pte >> PAGE_SHIFT != zero_pfn:
                    page = mem_map[pte >> PAGE_SHIFT]
                    if page.flags & PG_anon:
                        yield task, vpn << PAGE_SHIFT, page


def validate_pages(kernel) -> None:
    """Check every mapped user page against the PTEs of all tasks: _mapcount + 1 equals
    the PTEs mapping it, _count equals those plus the page cache's and swap cache's
    references, and nr_anon_pages / nr_mapped count the pages mapped at least once.
    Raises AssertionError. (For tests: O(PTEs).)"""
    from .vma import MMInvariantError

    mem_map = kernel.mem_map
    zero_pfn = kernel.zero_pfn
    maps: dict[int, int] = {}
    for task in kernel.tasks.values():
        mm = task.mm
        if mm is None:
            continue
        for pte in mm.pgtable.ptes.values():
            if pte & PTE_PRESENT_MASK:
                pfn = pte >> PAGE_SHIFT
                if pfn != zero_pfn:
                    maps[pfn] = maps.get(pfn, 0) + 1
    anon = mapped = 0
    reclaim = getattr(kernel, "reclaim", None)
    inflight = getattr(reclaim, "inflight_by_page", None) or {}
    for pfn, n in maps.items():
        page = mem_map[pfn]
        if page.flags & PG_zero:
            continue  # the huge zero page: no rmap
        if page._mapcount + 1 != n:
            raise MMInvariantError(f"page {pfn:#x}: mapcount {page._mapcount + 1}, {n} PTEs")
        extra = 1 if page.flags & PG_swapcache else 0
        if pfn in inflight:
            extra += 1  # the write's reference (a page mapped again while being written)
        if not page.flags & PG_anon:
            if page.mapping is None:  # a kernel page (the vDSO): the kernel's reference
                extra += 1
            else:
                extra += 1 if page.mapping.pages.get(page.index) is page else 0
            mapped += 1
        else:
            anon += 1
        if page._count != n + extra:
            raise MMInvariantError(f"page {pfn:#x}: _count {page._count}, expected {n + extra}")
    vm = kernel.vmstat
    if vm["nr_anon_pages"] != anon or vm["nr_mapped"] != mapped:
        raise MMInvariantError(f"nr_anon_pages {vm['nr_anon_pages']} / nr_mapped "
                               f"{vm['nr_mapped']}, PTEs say {anon} / {mapped}")
