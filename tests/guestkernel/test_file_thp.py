"""File THP: CONFIG_READ_ONLY_THP_FOR_FS (Linux 6.1).

khugepaged collapses a read-only executable mapping of a regular file into 2 MiB
page-cache folios (mm/khugepaged.c hpage_collapse_scan_file, collapse_file); a fault maps
such a folio by one PMD (mm/filemap.c filemap_map_pages -> filemap_map_pmd, mm/memory.c
do_set_pmd); opening the file for writing drops its page cache (fs/open.c
do_dentry_open); reclaim removes a clean file THP whole (mm/vmscan.c shrink_folio_list,
__remove_mapping). Expected values follow those functions: the eligibility test is
file_thp_enabled + hugepage_vma_check (include/linux/huge_mm.h, mm/huge_memory.c), the
counters are NR_FILE_THPS (nr_file_hugepages, FileHugePages), NR_FILE_PMDMAPPED
(nr_file_pmdmapped, FilePmdMapped), THP_FILE_MAPPED and THP_COLLAPSE_ALLOC as 6.1
increments them.

This machine's kernel (6.18.44) is built without CONFIG_READ_ONLY_THP_FOR_FS
(/proc/config.gz: "# CONFIG_READ_ONLY_THP_FOR_FS is not set"), and so is Debian 12's 6.1
(linux-config-6.1, config.amd64_none_amd64), so nothing here is recorded from a real
kernel: the rules come from the 6.1 source.
"""

from __future__ import annotations

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.binfmt_elf import ET_DYN, PF_R, PF_W, PF_X, PT_LOAD, ElfImage, Phdr
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.khugepaged import SCAN_EXCEED_NONE_PTE, SCAN_EXCEED_SWAP_PTE, SCAN_FAIL, SCAN_SUCCEED
from guestkernel.memory import validate_pages
from guestkernel.page import PG_dirty, PG_swapbacked, PG_thpfile, PG_writeback
from guestkernel.pgtable import _PAGE_PSE, _PAGE_RW, MM_FILEPAGES
from guestkernel.vmscan import LRU_ACTIVE_FILE, LRU_INACTIVE_FILE, ScanControl

P = 4096
H = 2 << 20
M = 1 << 20
BASE = 0x40000000  # 2 MiB-aligned
PATH = "/usr/bin/big"
D = "/sys/kernel/mm/transparent_hugepage"
EXEC = U.PROT_READ | U.PROT_EXEC


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    kw.setdefault("swap", "64MiB")
    kw.setdefault("thp_enabled", "always")
    kw.setdefault("read_only_thp_for_fs", True)
    return Kernel(KernelConfig(**kw))


def text(k, touched: int, prot=EXEC, size=H, name="t", flags=U.MAP_PRIVATE):
    """A task mapping `size` bytes of the 4 MiB file at BASE (fixed, 2 MiB-aligned,
    pgoff 0), reading its first `touched` pages."""
    k.fs.create(PATH, 4 * M)
    t = k.spawn(name)
    fd = t.open(PATH, U.O_RDONLY)
    assert t.mmap(BASE, size, prot, flags | U.MAP_FIXED, fd, 0) == BASE
    t.close(fd)
    for i in range(touched):
        t.access(BASE + i * P, False)
    return t


def meminfo(k, key: str) -> int:
    for line in k.procfs.read("/proc/meminfo").splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def smaps_field(k, t, addr: int, key: str) -> int:
    """The `key` line of the smaps entry of the VMA starting at addr."""
    lines = k.procfs.read(f"/proc/{t.pid}/smaps").splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"{addr:x}-"))
    for ln in lines[start + 1:]:
        if ln.startswith(key + ":"):
            return int(ln.split()[1])
    raise KeyError(key)


def folio_head(k, inode):
    head = inode.mapping.pages[0]
    assert head.pfn in k.thp.shmem_folios
    return head


def sc():
    return ScanControl(32, G.GFP_KERNEL, False, 1, True)


# --- eligibility: file_thp_enabled in hugepage_vma_check -------------------------------------
@pytest.mark.parametrize(("enabled", "prot", "madvise", "config", "eligible"), [
    ("always", EXEC, False, True, 1),
    ("always", U.PROT_READ, False, True, 0),  # file_thp_enabled: VM_EXEC required (6.1)
    ("madvise", EXEC, False, True, 0),  # sysfs enforced: VM_HUGEPAGE needed
    ("madvise", EXEC, True, True, 1),
    ("never", EXEC, True, True, 0),
    ("always", EXEC, False, False, 0),  # CONFIG_READ_ONLY_THP_FOR_FS not built
])
def test_file_thp_enabled_needs_the_config_vm_exec_and_the_sysfs_setting(enabled, prot, madvise, config,
                                                                        eligible):
    """hugepage_vma_check(smaps, !in_pf, enforce_sysfs): sysfs first (always, or madvise
    with VM_HUGEPAGE), then file_thp_enabled: IS_ENABLED(CONFIG_READ_ONLY_THP_FOR_FS),
    VM_EXEC, !inode_is_open_for_write, S_ISREG. smaps THPeligible shows it; khugepaged
    lists the mm (khugepaged_enter_vma) exactly when it holds."""
    k = boot(thp_enabled=enabled, read_only_thp_for_fs=config)
    t = text(k, 0, prot)
    if madvise:
        t.madvise(BASE, H, U.MADV_HUGEPAGE)
    assert smaps_field(k, t, BASE, "THPeligible") == eligible
    assert (t.mm in k.khugepaged.mm_slots) == bool(eligible)


def test_a_file_open_for_writing_is_not_eligible_until_closed():
    """file_thp_enabled: !inode_is_open_for_write (i_writecount > 0 while a struct file
    opened for writing lives; __fput's put_write_access ends it)."""
    k = boot()
    t = text(k, 0)
    assert smaps_field(k, t, BASE, "THPeligible") == 1
    fd = t.open(PATH, U.O_RDWR)
    assert smaps_field(k, t, BASE, "THPeligible") == 0
    t.close(fd)
    assert smaps_field(k, t, BASE, "THPeligible") == 1


def test_the_default_kernel_collapses_no_file_text():
    """read_only_thp_for_fs defaults off (Debian 12's 6.1 and this machine's 6.18 build it
    off): enabled=always lists no mm for a read-only executable file mapping and nothing
    is collapsed."""
    k = Kernel(KernelConfig(memory="256MiB", thp_enabled="always"))
    assert not k.thp.read_only_thp_for_fs
    t = text(k, 512)
    assert t.mm not in k.khugepaged.mm_slots
    k.khugepaged.enter(t.mm)
    k.khugepaged.do_scan()
    assert k.vmstat["thp_collapse_alloc"] == 0 and k.vmstat["nr_file_hugepages"] == 0


# --- khugepaged: collapse_file of a regular file ---------------------------------------------
def test_khugepaged_collapses_read_only_text_reading_the_missing_pages():
    """hpage_collapse_scan_file: 300 present >= 512 - max_ptes_none (511). collapse_file
    (!is_shmem): page_cache_sync_readahead reads the 212 missing indices (pgpgin), every
    page is unmapped (try_to_unmap) and copied (nr_none 0: NR_FILE_PAGES unchanged), the
    clean folio enters the cache (NR_FILE_THPS: FileHugePages 2048 kB; filemap_nr_thps 1;
    not dirty, not swap-backed, one entry on the inactive file list), the small pages
    are freed; thp_collapse_alloc 1, thp_file_alloc 0 (counted for shmem only);
    retract_page_tables frees the PTE table; pages_collapsed 1."""
    k = boot()
    k.fs.ra_pages = 0  # no readahead: the cache holds exactly the pages read
    t = text(k, 300)
    inode = k.fs.lookup(PATH)
    old = [inode.mapping.pages[i] for i in range(300)]
    vm = k.vmstat
    pt = t.mm.pgtable
    key = (BASE >> 12) >> pt.pte_shift
    assert key in pt.pte_counts
    f0, in0 = vm["nr_file_pages"], vm["pgpgin"]
    missing = sum(1 for i in range(512) if i not in inode.mapping.pages)
    assert missing == 212
    k.khugepaged.do_scan()
    assert vm["thp_collapse_alloc"] == 1 and vm["thp_file_alloc"] == 0
    assert k.thp.pages_collapsed == 1
    assert vm["pgpgin"] - in0 == missing * 4
    head = folio_head(k, inode)
    assert vm["nr_file_pages"] - f0 == missing  # the reads only: the collapse adds none
    assert vm["nr_file_hugepages"] == 1 and meminfo(k, "FileHugePages") == 2048
    assert vm["nr_shmem_hugepages"] == 0 and meminfo(k, "ShmemHugePages") == 0
    assert inode.mapping.nr_thps == 1
    sub = [k.mem_map[head.pfn + i] for i in range(512)]
    assert all(inode.mapping.pages[i] is sub[i] for i in range(512))
    assert all(p.flags & PG_thpfile and not p.flags & (PG_dirty | PG_swapbacked) for p in sub)
    assert all(p._count == 0 for p in old)
    assert key not in pt.pte_counts
    lst = k.reclaim.lruvecs[0].lists[LRU_INACTIVE_FILE]
    mine = set(sub)
    assert [p for p in lst if p in mine] == [head]
    k.reclaim.validate()
    validate_pages(k)


def test_the_next_read_fault_maps_the_folio_by_one_read_only_pmd():
    """filemap_map_pages -> filemap_map_pmd -> do_set_pmd: the PMD is none, the page is a
    THP's: one PMD maps it (thp_file_mapped 1), read-only (vm_page_prot of a private
    mapping), page_add_file_rmap (compound): NR_FILE_PMDMAPPED 1 (FilePmdMapped 2048 kB,
    smaps FilePmdMapped 2048 kB), MM_FILEPAGES +512. A second mm mapping it: thp_file_mapped
    2, NR_FILE_PMDMAPPED still 1 (counted when the first compound mapping comes)."""
    k = boot()
    t = text(k, 300)
    k.khugepaged.do_scan()
    vm = k.vmstat
    r0 = t.mm.rss[MM_FILEPAGES]
    t.access(BASE + 7 * P, False)
    pte = t.mm.pgtable.ptes[BASE >> 12]
    assert pte & _PAGE_PSE and not pte & _PAGE_RW
    assert vm["thp_file_mapped"] == 1 and vm["nr_file_pmdmapped"] == 1
    assert meminfo(k, "FilePmdMapped") == 2048
    assert smaps_field(k, t, BASE, "FilePmdMapped") == 2048
    assert smaps_field(k, t, BASE, "ShmemPmdMapped") == 0
    assert t.mm.rss[MM_FILEPAGES] - r0 == 512
    assert t.peek(BASE + 7 * P, 15) == f"{PATH}:7\n".encode()
    assert t.peek(BASE + 400 * P, 17) == f"{PATH}:400\n".encode()  # read in by the collapse
    u = text(k, 1, name="u")
    assert u.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    assert vm["thp_file_mapped"] == 2 and vm["nr_file_pmdmapped"] == 1
    validate_pages(k)
    t.munmap(BASE, H)
    assert vm["nr_file_pmdmapped"] == 1
    u.munmap(BASE, H)
    assert vm["nr_file_pmdmapped"] == 0 and meminfo(k, "FilePmdMapped") == 0
    assert vm["nr_file_hugepages"] == 1  # the page cache keeps the folio
    validate_pages(k)


def test_a_private_write_splits_the_file_pmd_and_copies_4k():
    """A write to a private file PMD (do_huge_pmd_wp_page, !anon: __split_huge_pmd then
    VM_FAULT_FALLBACK): the PMD is cleared (thp_split_pmd 1), the fault copies 4 KiB
    (do_cow_fault), the folio stays whole in the cache (FileHugePages 2048 kB)."""
    k = boot()
    t = text(k, 512, prot=EXEC | U.PROT_WRITE)
    k.khugepaged.do_scan()
    t.access(BASE, False)
    assert t.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    vm = k.vmstat
    t.access(BASE + 3 * P, True, b"mine")
    assert vm["thp_split_pmd"] == 1 and vm["nr_file_pmdmapped"] == 0
    assert vm["nr_file_hugepages"] == 1
    assert t.peek(BASE + 3 * P, 4) == b"mine"
    assert not t.mm.pgtable.ptes[(BASE >> 12) + 3] & _PAGE_PSE
    t.access(BASE + 4 * P, False)  # a PTE table lies there now: 4 KiB of the folio
    assert t.peek(BASE + 4 * P, 15) == f"{PATH}:4\n".encode()
    assert vm["thp_file_mapped"] == 1
    validate_pages(k)
    k.reclaim.validate()


def test_max_ptes_none_bounds_the_pages_khugepaged_reads_in():
    """hpage_collapse_scan_file: present < HPAGE_PMD_NR - max_ptes_none ->
    SCAN_EXCEED_NONE_PTE (thp_scan_exceed_none_pte), before any allocation."""
    k = boot()
    k.fs.ra_pages = 0  # no readahead: the cache holds exactly the pages read
    k.procfs.write(f"{D}/khugepaged/max_ptes_none", "411")
    t = text(k, 100)
    inode = k.fs.lookup(PATH)
    assert sorted(inode.mapping.pages) == list(range(100))
    vma = t.mm.mm_mt.lookup(BASE)
    assert k.khugepaged.scan_file(vma, BASE) == SCAN_EXCEED_NONE_PTE
    assert k.vmstat["thp_scan_exceed_none_pte"] == 1 and k.vmstat["thp_collapse_alloc"] == 0
    t.access(BASE + 100 * P, False)
    assert len(inode.mapping.pages) == 101
    assert k.khugepaged.scan_file(vma, BASE) == SCAN_SUCCEED
    assert k.vmstat["nr_file_hugepages"] == 1 and k.vmstat["pgpgin"] == 512 * 4


def test_shadow_entries_count_as_swap_entries_against_max_ptes_swap():
    """hpage_collapse_scan_file: every xarray value in the range counts as swap
    (xa_is_value; for a regular file the values are reclaim's shadow entries): more than
    max_ptes_swap (64) -> SCAN_EXCEED_SWAP_PTE (thp_scan_exceed_swap_pte). With 64 left
    the range collapses, collapse_file reading those 64 indices back."""
    k = boot()
    k.fs.ra_pages = 0
    k.fs.create(PATH, 4 * M)
    r = k.reclaim
    lv = r.lruvecs[0]
    w = k.spawn("w")
    fd = w.open(PATH, U.O_RDONLY)
    buf = w.mmap(0, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    assert w.read(fd, buf, H) == H
    w.close(fd)
    inode = k.fs.lookup(PATH)
    for _ in range(64):  # reclaim the 512 unmapped pages read(2) left (shadows stay)
        if not inode.mapping.pages:
            break
        r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_FILE)
    assert not inode.mapping.pages and len(inode.mapping.ws.shadows) == 512
    t = text(k, 447)
    vma = t.mm.mm_mt.lookup(BASE)
    assert len(inode.mapping.ws.shadows) == 65
    assert k.khugepaged.scan_file(vma, BASE) == SCAN_EXCEED_SWAP_PTE
    assert k.vmstat["thp_scan_exceed_swap_pte"] == 1 and k.vmstat["thp_collapse_alloc"] == 0
    t.access(BASE + 447 * P, False)
    assert len(inode.mapping.ws.shadows) == 64
    assert k.khugepaged.scan_file(vma, BASE) == SCAN_SUCCEED
    assert k.vmstat["nr_file_hugepages"] == 1 and not inode.mapping.ws.shadows


def test_a_dirty_page_fails_the_collapse_and_starts_the_files_writeback():
    """collapse_file (!is_shmem): a page still dirty since it was last written (the file
    is read-only now, but writeback has not run) -> filemap_flush (the file's dirty pages
    start writing) and SCAN_FAIL; the huge page was allocated first (thp_collapse_alloc
    1) and is given back; nothing changes in the cache. Once the write has ended, the
    next scan collapses the range."""
    k = boot()
    k.fs.create(PATH, 4 * M)
    w = k.spawn("w")
    fd = w.open(PATH, U.O_RDWR)
    buf = w.mmap(0, P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    w.access(buf, True, b"new")
    w.lseek(fd, 10 * P, U.SEEK_SET)
    assert w.write(fd, buf, 3) == 3
    w.close(fd)
    inode = k.fs.lookup(PATH)
    assert inode.mapping.pages[10].flags & PG_dirty
    t = text(k, 512)
    before = dict(inode.mapping.pages)
    vma = t.mm.mm_mt.lookup(BASE)
    o0 = k.vmstat["pgpgout"]
    assert k.khugepaged.scan_file(vma, BASE) == SCAN_FAIL
    assert k.vmstat["thp_collapse_alloc"] == 1 and k.vmstat["nr_file_hugepages"] == 0
    assert inode.mapping.pages == before and not k.thp.shmem_folios
    page = inode.mapping.pages[10]
    # filemap_flush: the one dirty page written (without a simulation clock the write
    # ends at once)
    assert k.vmstat["pgpgout"] - o0 == 4
    k.reclaim.complete_io()
    assert not page.flags & (PG_dirty | PG_writeback)
    validate_pages(k)
    assert k.khugepaged.scan_file(vma, BASE) == SCAN_SUCCEED
    assert k.vmstat["nr_file_hugepages"] == 1
    t.access(BASE + 10 * P, False)
    assert t.peek(BASE + 10 * P, 3) == b"new"
    validate_pages(k)


# --- do_dentry_open: opening for writing drops the huge page cache ---------------------------
def test_opening_for_write_unmaps_the_page_cache_and_truncates_it():
    """do_dentry_open with FMODE_WRITE and filemap_nr_thps: unmap_mapping_range(mapping,
    0, 0, 0) (page-cache mappings go, PMD and PTE; even_cows 0: a private anonymous copy
    stays) and truncate_inode_pages(mapping, 0): the cache is empty, NR_FILE_THPS and
    nr_thps 0; the data stays on disk and refaults."""
    k = boot()
    t = text(k, 1024, prot=EXEC | U.PROT_WRITE, size=4 * M)
    k.khugepaged.do_scan()  # both 2 MiB ranges
    t.access(BASE + 5 * P, False)  # PMD
    t.access(BASE + H + 9 * P, True, b"copy")  # a private copy in the second 2 MiB
    t.access(BASE + H + 10 * P, False)  # a page-cache PTE there
    inode = k.fs.lookup(PATH)
    vm = k.vmstat
    assert vm["nr_file_pmdmapped"] == 1 and inode.mapping.nr_thps == 2
    w = k.spawn("w")
    fd = w.open(PATH, U.O_WRONLY)
    ptes = t.mm.pgtable.ptes
    assert not inode.mapping.pages and vm["nr_file_hugepages"] == 0 and inode.mapping.nr_thps == 0
    assert vm["nr_file_pmdmapped"] == 0 and meminfo(k, "FileHugePages") == 0
    assert (BASE >> 12) not in ptes and (BASE + H + 10 * P) >> 12 not in ptes
    assert t.peek(BASE + H + 9 * P, 4) == b"copy"  # the anonymous copy stays mapped
    validate_pages(k)
    k.reclaim.validate()
    t.access(BASE + 5 * P, False)
    assert t.peek(BASE + 5 * P, 15) == f"{PATH}:5\n".encode()
    assert not ptes[(BASE >> 12) + 5] & _PAGE_PSE
    w.close(fd)


def test_opening_for_write_keeps_the_cache_of_a_large_folio_file_system():
    """filemap_nr_thps_inc counts only where the mapping has no large folio support
    (mapping_large_folio_support), so do_dentry_open finds nr_thps 0 and drops nothing;
    NR_FILE_THPS counts the folio either way."""
    k = boot()
    k.fs.large_folios = True
    text(k, 512)
    k.khugepaged.do_scan()
    inode = k.fs.lookup(PATH)
    assert k.vmstat["nr_file_hugepages"] == 1 and inode.mapping.nr_thps == 0
    w = k.spawn("w")
    w.open(PATH, U.O_RDWR)
    assert k.vmstat["nr_file_hugepages"] == 1 and len(inode.mapping.pages) >= 512


# --- reclaim: the folio's LRU rules, removed whole ------------------------------------------
def test_reclaim_activates_an_executable_folio_then_frees_it_whole():
    """shrink_folio_list: folio_check_references gives a young executable file folio
    FOLIOREF_ACTIVATE at its first reference (VM_EXEC, !swapbacked): pgactivate 512.
    Unreferenced, it is unmapped (TTU_SPLIT_HUGE_PMD) and __remove_mapping frees it whole:
    512 reclaimed, no thp_split_page, NR_FILE_THPS 0, NR_FILE_PAGES -512, one shadow in
    every slot (workingset_eviction ages the lruvec by 512). A refault reads 4 KiB pages
    (workingset_refault_file)."""
    k = boot()
    t = text(k, 512)
    k.khugepaged.do_scan()
    t.access(BASE, False)
    r = k.reclaim
    lv = r.lruvecs[0]
    inode = k.fs.lookup(PATH)
    head = folio_head(k, inode)
    vm = k.vmstat
    ilst, alst = lv.lists[LRU_INACTIVE_FILE], lv.lists[LRU_ACTIVE_FILE]
    ilst.remove(head)
    ilst.add_tail(head)
    a0 = vm["pgactivate"]
    assert r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_FILE) == 0
    assert vm["pgactivate"] - a0 == 512 and head in set(alst)
    r.shrink_active_list(32, lv, sc(), LRU_ACTIVE_FILE)  # PMD young bit cleared before
    assert head in set(ilst)
    ilst.remove(head)
    ilst.add_tail(head)
    f0, age0 = vm["nr_file_pages"], lv.nonresident_age
    assert r.shrink_inactive_list(32, lv, sc(), LRU_INACTIVE_FILE) == 512
    assert vm["thp_split_page"] == 0 and vm["nr_file_hugepages"] == 0 and inode.mapping.nr_thps == 0
    assert f0 - vm["nr_file_pages"] == 512
    assert lv.nonresident_age - age0 == 512
    shadows = inode.mapping.ws.shadows
    assert all(i in shadows for i in range(512)) and len({shadows[i] for i in range(512)}) == 1
    assert (BASE >> 12) not in t.mm.pgtable.ptes
    r.validate()
    validate_pages(k)
    t.access(BASE + 5 * P, False)
    assert vm["workingset_refault_file"] > 0
    assert t.peek(BASE + 5 * P, 15) == f"{PATH}:5\n".encode()


# --- an ELF program's text ------------------------------------------------------------------
def test_an_elf_programs_text_is_collapsed_and_pmd_mapped():
    """load_elf_binary maps a PT_LOAD R|X segment of 4 MiB aligned to its p_align (2 MiB)
    privately and executable: khugepaged_enter_vma lists the mm (enabled always), a pass
    collapses the first 2 MiB of text touched (one file scan per pass: mmap_lock
    dropped) and khugepaged_do_scan goes on with the next while its progress is below
    pages_to_scan (4096): one wake-up collapses both 2 MiB; faults map both by PMDs."""
    k = boot()
    exe = ElfImage(PATH, 5 * M, ET_DYN, [
        Phdr(PT_LOAD, PF_R | PF_X, 0, 0, 4 * M, 4 * M, H),
        Phdr(PT_LOAD, PF_R | PF_W, 4 * M, 6 * M, M, M, H)])
    k.fs.create(PATH, 5 * M)
    t = k.spawn("t")
    t.execve(PATH, elf=dict(exe=exe))
    text_vma = next(v for v in t.mm.mm_mt.vmas if v.vm_file is not None and v.vm_pgoff == 0)
    start = text_vma.vm_start
    assert start % H == 0 and text_vma.vm_end - start == 4 * M
    assert t.mm in k.khugepaged.mm_slots
    for off in range(0, 4 * M, 16 * P):
        t.access(start + off, False)
    k.khugepaged.do_scan()
    assert k.vmstat["nr_file_hugepages"] == 2 and meminfo(k, "FileHugePages") == 4096
    assert k.vmstat["thp_collapse_alloc"] == 2 and k.thp.pages_collapsed == 2
    t.access(start, False)
    t.access(start + H, False)
    assert k.vmstat["nr_file_pmdmapped"] == 2 and smaps_field(k, t, start, "FilePmdMapped") == 4096
    validate_pages(k)
    k.reclaim.validate()


# --- invalidation: a large folio whole or not at all ---------------------------------------
def test_fadvise_dontneed_evicts_a_file_thp_whole_only_when_the_range_holds_it():
    """POSIX_FADV_DONTNEED -> invalidate_mapping_pagevec (6.1): find_lock_entries leaves
    out a large folio reaching outside the range (nothing dropped, no split);
    mapping_evict_folio needs it unmapped (refcount 512 + 1); then remove_mapping takes
    all 512 pages at once (no thp_split_page, NR_FILE_THPS 0, NR_FILE_PAGES -512)."""
    k = boot()
    t = text(k, 512)
    k.khugepaged.do_scan()
    t.access(BASE, False)  # PMD-mapped
    inode = k.fs.lookup(PATH)
    vm = k.vmstat
    fd = t.open(PATH, U.O_RDONLY)
    t.fadvise(fd, 0, H, U.POSIX_FADV_DONTNEED)
    assert vm["nr_file_hugepages"] == 1  # mapped: kept
    t.munmap(BASE, H)
    t.fadvise(fd, 0, H - P, U.POSIX_FADV_DONTNEED)
    assert vm["nr_file_hugepages"] == 1 and all(i in inode.mapping.pages for i in range(512))
    f0 = vm["nr_file_pages"]
    t.fadvise(fd, 0, H, U.POSIX_FADV_DONTNEED)
    assert vm["nr_file_hugepages"] == 0 and vm["thp_split_page"] == 0
    assert f0 - vm["nr_file_pages"] == 512 and not any(i in inode.mapping.pages for i in range(512))
    assert inode.mapping.nr_thps == 0 and not k.thp.shmem_folios
    k.reclaim.validate()
    validate_pages(k)


def test_drop_caches_evicts_an_unmapped_file_thp_whole():
    """echo 1 > drop_caches: invalidate_mapping_pages(mapping, 0, -1) over every inode:
    an unmapped clean file THP goes whole (no split)."""
    k = boot()
    t = text(k, 512)
    k.khugepaged.do_scan()
    t.munmap(BASE, H)
    k.procfs.write("/proc/sys/vm/drop_caches", "1")
    assert k.vmstat["nr_file_hugepages"] == 0 and k.vmstat["thp_split_page"] == 0
    assert not k.fs.lookup(PATH).mapping.pages
    k.reclaim.validate()


# --- MADV_COLLAPSE: the same collapse, synchronous (6.1 madvise_collapse) -------------------
def test_madvise_collapse_of_text_ignores_sysfs_and_limits_and_installs_the_pmd():
    """madvise_collapse: hugepage_vma_check without enforce_sysfs (enabled=madvise, no
    MADV_HUGEPAGE), cc->is_khugepaged false (max_ptes_none 0 does not apply), the 502
    missing pages read in, and retract_page_tables installs the target's PMD at once
    (set_huge_pmd -> do_set_pmd: thp_file_mapped 1, FilePmdMapped 2048 kB). Returns 0."""
    k = boot(thp_enabled="madvise")
    k.fs.ra_pages = 0
    k.procfs.write(f"{D}/khugepaged/max_ptes_none", "0")
    t = text(k, 10)
    assert t.mm not in k.khugepaged.mm_slots
    vm = k.vmstat
    assert t.madvise(BASE, H, U.MADV_COLLAPSE) == 0
    assert vm["thp_collapse_alloc"] == 1 and vm["nr_file_hugepages"] == 1
    assert vm["pgpgin"] == 512 * 4 and vm["thp_scan_exceed_none_pte"] == 0
    assert t.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    assert vm["thp_file_mapped"] == 1 and meminfo(k, "FilePmdMapped") == 2048
    assert k.thp.pages_collapsed == 0  # khugepaged's counter only
    assert t.madvise(BASE, H, U.MADV_COLLAPSE) == 0  # SCAN_PMD_MAPPED counts as done
    validate_pages(k)
    k.reclaim.validate()


def test_madvise_collapse_refuses_what_hugepage_vma_check_refuses():
    """MADV_COLLAPSE returns EINVAL where hugepage_vma_check(.., enforce_sysfs=false)
    fails: a file VMA without READ_ONLY_THP_FOR_FS, a non-executable file mapping, an
    anonymous VMA with no anon_vma yet; and on a kernel without THP (2.6-era)."""
    k = boot(read_only_thp_for_fs=False)
    t = text(k, 10)
    with pytest.raises(OSError) as e:
        t.madvise(BASE, H, U.MADV_COLLAPSE)
    assert e.value.errno == U.EINVAL
    k = boot()
    t = text(k, 10, prot=U.PROT_READ)
    with pytest.raises(OSError) as e:
        t.madvise(BASE, H, U.MADV_COLLAPSE)
    assert e.value.errno == U.EINVAL
    a = t.mmap(BASE + 8 * H, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    with pytest.raises(OSError) as e:
        t.madvise(a, H, U.MADV_COLLAPSE)
    assert e.value.errno == U.EINVAL
    old = Kernel(KernelConfig(memory="256MiB", era="2.6"))
    u = old.spawn("u")
    b = u.mmap(0, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    u.access(b, True)
    with pytest.raises(OSError) as e:
        u.madvise(b, H, U.MADV_COLLAPSE)
    assert e.value.errno == U.EINVAL


def test_madvise_collapse_of_anonymous_memory_with_thp_never():
    """Anonymous MADV_COLLAPSE: hpage_collapse_scan_pmd with is_khugepaged false (no
    max_ptes_none limit: 10 written pages and 502 empty PTEs; no young test) then
    collapse_huge_page (GFP_TRANSHUGE): the 2 MiB becomes one PMD-mapped THP
    (AnonHugePages 2048 kB, thp_collapse_alloc 1) even with enabled=never; the written
    data and zeros read back."""
    k = boot(thp_enabled="never")
    k.procfs.write(f"{D}/khugepaged/max_ptes_none", "0")
    t = k.spawn("t")
    a = t.mmap(BASE, H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    for i in range(10):
        t.access(a + i * P, True, (i + 1).to_bytes(8, "little"))
    assert t.madvise(a, H, U.MADV_COLLAPSE) == 0
    assert k.vmstat["thp_collapse_alloc"] == 1 and meminfo(k, "AnonHugePages") == 2048
    assert t.mm.pgtable.ptes[a >> 12] & _PAGE_PSE
    assert t.peek(a + 3 * P, 8) == (4).to_bytes(8, "little") and t.peek(a + 100 * P, 8) == bytes(8)
    validate_pages(k)
    k.reclaim.validate()


# --- random operations: the invariants and the data --------------------------------------
OPS = ("read", "cow", "collapse", "madv_collapse", "reclaim", "write", "fadvise", "drop",
       "remap", "fork", "mprotect")


@given(enabled=st.sampled_from(["always", "madvise"]), large_folios=st.booleans(),
       ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 1023),
                              st.sampled_from([1, 16, 512, 1024]), st.integers(1, 1 << 30)),
                    min_size=1, max_size=25))
@settings(max_examples=40, deadline=None)
def test_random_file_thp_operations_keep_the_invariants_and_the_data(enabled, large_folios, ops):
    # every page-table, page-count, buddy and LRU invariant holds after each step, and
    # every page reads what the file holds (or the private copy written there): through
    # khugepaged's and MADV_COLLAPSE's collapses, PMD maps and splits, reclaim of whole
    # folios, invalidation, opening for write (which drops the huge page cache) and forks
    from guestkernel.page_alloc import validate_buddy
    from guestkernel.vma import validate_mm
    from guestkernel.vmscan import init_reclaim

    k = boot(memory="64MiB", swap="64MiB", thp_enabled=enabled)
    init_reclaim(k)
    k.fs.large_folios = large_folios
    size = 4 * M
    prot = EXEC | U.PROT_WRITE
    t = text(k, 1024, prot=prot, size=size)  # the whole file cached and mapped first
    if enabled == "madvise":
        t.madvise(BASE, size, U.MADV_HUGEPAGE)
    w = k.spawn("w")
    buf = w.mmap(0, P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    filedata: dict[int, bytes] = {}  # page -> its first 16 bytes, written by write(2)
    private: dict[int, bytes] = {}  # page -> the private copy's first 4 bytes

    def expect(i: int) -> bytes:
        head = filedata.get(i, f"{PATH}:{i}\n".encode().ljust(16, b"\0")[:16])
        return private[i] + head[4:] if i in private else head

    for op, first, n, val in ops:
        first %= size // P
        n = min(n, size // P - first)
        a = BASE + first * P
        if op == "read":
            for i in range(n):
                t.access(a + i * P, False)
        elif op == "cow":
            v = val.to_bytes(4, "little")
            t.access(a, True, v)
            private[first] = v
        elif op == "collapse":
            k.procfs.write(f"{D}/khugepaged/max_ptes_none", str(val % 512))
            k.khugepaged.enter(t.mm)
            k.khugepaged.do_scan()
        elif op == "madv_collapse":
            try:
                t.madvise(a & ~(H - 1), H, U.MADV_COLLAPSE)
            except OSError as e:
                assert e.errno in (U.EINVAL, U.EAGAIN, U.ENOMEM)
        elif op == "reclaim":
            lv = k.reclaim.lruvecs[0]
            k.reclaim.shrink_active_list(n, lv, sc(), LRU_ACTIVE_FILE)
            k.reclaim.shrink_inactive_list(n, lv, sc(), LRU_INACTIVE_FILE)
            k.reclaim.complete_io()
        elif op == "write":
            v = val.to_bytes(4, "little")
            w.access(buf, True, v)
            mapping = k.fs.lookup(PATH).mapping
            if mapping.nr_thps:
                # do_dentry_open's truncate_inode_pages cancels the dirty pages too (6.1):
                # what the flusher has not written yet is lost
                for i in mapping.dirty:
                    filedata.pop(i, None)
            fd = w.open(PATH, U.O_RDWR)
            w.lseek(fd, first * P, U.SEEK_SET)
            assert w.write(fd, buf, 4) == 4
            w.close(fd)
            filedata[first] = v + f"{PATH}:{first}\n".encode().ljust(16, b"\0")[4:16]
        elif op == "fadvise":
            fd = t.open(PATH, U.O_RDONLY)
            t.fadvise(fd, first * P, n * P, U.POSIX_FADV_DONTNEED)
            t.close(fd)
        elif op == "drop":
            k.procfs.write("/proc/sys/vm/drop_caches", "1")
        elif op == "remap":
            t.munmap(a, n * P)
            fd = t.open(PATH, U.O_RDONLY)
            assert t.mmap(a, n * P, prot, U.MAP_PRIVATE | U.MAP_FIXED, fd, first * P) == a
            t.close(fd)
            for i in range(first, first + n):
                private.pop(i, None)
        elif op == "fork":
            c = k.tasks[t.fork()]
            c.access(a, False)
            assert c.peek(a, 16) == expect(first)
            c.exit(0)
        else:
            t.mprotect(a, n * P, EXEC)
            t.mprotect(a, n * P, prot)
        for task in k.tasks.values():
            if task.mm is not None:
                validate_mm(task.mm)
        validate_pages(k)
        validate_buddy(k.page_alloc)
        k.reclaim.validate()
    for i in range(size // P):
        t.access(BASE + i * P, False)
        assert t.peek(BASE + i * P, 16) == expect(i), i
    event(f"collapsed {k.vmstat['thp_collapse_alloc']}, pmd-mapped {k.vmstat['thp_file_mapped']}")


def test_an_mlocked_text_collapses_and_its_pmd_is_mlocked_again():
    """collapse_file unmaps with TTU_IGNORE_MLOCK: the pages of a VM_LOCKED mapping are
    unmapped too (munlocked with their last mapping: Mlocked 0) and the range collapses;
    the next fault maps the folio by a PMD in the VM_LOCKED VMA, page_add_file_rmap
    (compound) mlocking the whole folio (mlock_vma_page: Mlocked 2048 kB)."""
    k = boot()
    t = text(k, 0)
    t.mlock(BASE, H)  # populates the 512 pages
    vm = k.vmstat
    assert vm["nr_mlock"] == 512
    k.khugepaged.do_scan()
    assert vm["nr_file_hugepages"] == 1 and vm["nr_mlock"] == 0
    t.access(BASE, False)
    assert t.mm.pgtable.ptes[BASE >> 12] & _PAGE_PSE
    assert vm["nr_mlock"] == 512 and meminfo(k, "Mlocked") == 2048
    validate_pages(k)
    k.reclaim.validate()
