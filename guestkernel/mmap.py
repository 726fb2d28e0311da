"""mmap, munmap, mprotect, brk, mremap, madvise and stack expansion (mm/mmap.c, mm/vma.c,
mm/mprotect.c, mm/mremap.c, mm/madvise.c), with Linux 6.x's checks and errno order.

Each function takes the calling `task` and raises `OSError(errno, ...)` on failure like the
system call returns -errno; brk returns the old break instead, as Linux does.

Layout (linux-mm.md section 3): TASK_SIZE is (1 << 47) - 4096 on x86_64 and 3 GiB on
i386; mmap_base = PAGE_ALIGN(TASK_SIZE - gap) with gap = RLIMIT_STACK + stack_guard_gap
clamped to [128 MiB, TASK_SIZE / 6 * 5] (no randomisation); mappings are placed top-down
below mmap_base (the highest gap that fits), a hint is used when it fits, and the legacy
bottom-up layout from TASK_SIZE / 3 applies when RLIMIT_STACK is unlimited. A growsdown
VMA keeps `stack_guard_gap` (256 pages) free below it.

Commit charge (section 6): `kernel.vm_enough_memory(pages)` where Linux charges — private
writable mappings (VM_ACCOUNT; MAP_NORESERVE exempts them except in mode 2), brk, stack
growth, mprotect to writable, shared anonymous mappings (through their shmem inode) — and
`kernel.vm_unacct_memory(pages)` where the charge is returned.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from . import uapi as U
from .blk import blk_finish_plug, blk_start_plug
from .filemap import File, delete_from_page_cache
from .memory import (
    VM_FAULT_ERROR,
    VM_FAULT_OOM,
    _vpns_in,
    handle_mm_fault,
    move_ptes,
    populate_vma_range,
    zap_page_range,
)
from .page import PG_anon, PG_dirty, PG_swapbacked, PG_swapcache
from .pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_MARKER,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_RW,
    _PAGE_SWP,
    MM_ANONPAGES,
    MM_SWAPENTS,
    PTE_GUARD,
    PTE_PRESENT_MASK,
)
from .physmem import ZERO_PAGE
from .readahead import force_page_cache_ra
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import (
    VM_ACCESS_FLAGS,
    VM_ACCOUNT,
    VM_DATA_DEFAULT_FLAGS,
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_DONTEXPAND,
    VM_DROPPABLE,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_LOCKONFAULT,
    VM_MAYBE_GUARD,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_MERGEABLE,
    VM_MIXEDMAP,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_PFNMAP,
    VM_RAND_READ,
    VM_READ,
    VM_SEALED,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SOFTDIRTY,
    VM_SPECIAL,
    VM_WIPEONFORK,
    VM_WRITE,
    __split_vma,
    vm_area_alloc,
    vm_stat_account,
    vma_account,
    vma_close,
    vma_link,
    vma_merge_new_range,
    vma_modify,
)
from .vmstat import page_restate

PAGE_MASK = ~(PAGE_SIZE - 1)
STACK_GUARD_GAP = 256 << PAGE_SHIFT  # bytes (stack_guard_gap= on the command line)
MIN_GAP = 128 << 20  # bytes, below TASK_SIZE for the stack
USER_PGTABLES_CEILING = 1 << 64


def PAGE_ALIGN(x: int) -> int:
    return (x + PAGE_SIZE - 1) & PAGE_MASK


def arch_task_size(arch: str) -> int:
    return (1 << 47) - PAGE_SIZE if arch == "x86_64" else 0xC0000000


def mmap_base_for(task_size: int, rlim_stack: int) -> int:
    """mmap_base(): below the stack's maximum size plus the guard gap, no randomisation."""
    gap = rlim_stack if rlim_stack != U.RLIM_INFINITY else task_size
    gap += STACK_GUARD_GAP
    gap = max(MIN_GAP, min(gap, task_size // 6 * 5))
    return PAGE_ALIGN(task_size - gap)


def task_unmapped_base(task_size: int) -> int:
    return PAGE_ALIGN(task_size // 3)


def vm_start_gap(vma) -> int:
    start = vma.vm_start
    if vma.vm_flags & VM_GROWSDOWN:
        start = max(start - STACK_GUARD_GAP, 0)
    return start


def _err(code: int, what: str) -> OSError:
    return U.err(code, what)


def _mmap_min_addr(task) -> int:
    return task.kernel.config.mmap_min_addr


# --- placement -------------------------------------------------------------------------------
def unmapped_area_topdown(mm, length: int, low: int, high: int) -> int:
    """The highest address of a gap of `length` bytes in [low, high), or -1."""
    vmas = mm.mm_mt.vmas
    i = bisect_left(mm.mm_mt.starts, high)
    end = high if i == len(vmas) else min(high, vm_start_gap(vmas[i]))
    j = i - 1
    while True:
        start = vmas[j].vm_end if j >= 0 else 0
        start = max(start, low)
        if end - start >= length:
            return (end - length) & PAGE_MASK
        if j < 0:
            return -1
        end = min(end, vm_start_gap(vmas[j]))
        j -= 1


def unmapped_area(mm, length: int, low: int, high: int) -> int:
    """The lowest address of a gap of `length` bytes in [low, high), or -1."""
    vmas = mm.mm_mt.vmas
    i = bisect_right(mm.mm_mt.starts, low) - 1
    start = low
    if i >= 0:
        start = max(low, vmas[i].vm_end)
    i += 1
    while True:
        end = high if i >= len(vmas) else min(high, vm_start_gap(vmas[i]))
        if end - start >= length:
            return start
        if i >= len(vmas) or end >= high:
            return -1
        start = max(start, vmas[i].vm_end)
        i += 1


PMD_SIZE = 2 << 20  # bytes (x86_64)


def get_unmapped_area(task, file, addr: int, length: int, pgoff: int, flags: int) -> int:
    """__get_unmapped_area (6.18, x86_64): a private anonymous mapping without a hint
    whose length is a multiple of PMD_SIZE, and any mapping of a disk file (ext4's
    f_op->get_unmapped_area is thp_get_unmapped_area; measured here: a 6 MiB file
    mapping lands 2 MiB-aligned), is placed THP-aligned (__thp_get_unmapped_area); a shmem
    file's or a shared anonymous mapping as shmem_get_unmapped_area places it; the rest as
    arch_get_unmapped_area(_topdown) does."""
    mm = task.mm
    if not flags & U.MAP_FIXED and mm.task_size > 1 << 32:
        if file is not None:
            if file.inode.shmem:
                return _shmem_get_unmapped_area(task, file, addr, length, pgoff, flags)
            a = _thp_get_unmapped_area(task, file, addr, length, pgoff << PAGE_SHIFT, flags)
            if a:
                return a
        elif flags & U.MAP_SHARED:
            return _shmem_get_unmapped_area(task, None, addr, length, 0, flags)
        elif not addr and not length % PMD_SIZE:
            a = _thp_get_unmapped_area(task, None, 0, length, 0, flags)  # pgoff 0 for anon
            if a:
                return a
    return _mm_get_unmapped_area(task, file, addr, length, pgoff, flags)


def _thp_get_unmapped_area(task, file, addr: int, length: int, off: int, flags: int) -> int:
    """__thp_get_unmapped_area: look for length + PMD_SIZE and align inside it to the
    file offset modulo PMD_SIZE (top-down: the higher aligned start); 0 if the mapping
    cannot hold an aligned PMD or the padded search fails."""
    off_end = off + length
    off_align = (off + PMD_SIZE - 1) & ~(PMD_SIZE - 1)
    if off_end <= off_align or off_end - off_align < PMD_SIZE:
        return 0
    try:
        ret = _mm_get_unmapped_area(task, file, addr, length + PMD_SIZE, off >> PAGE_SHIFT, flags)
    except OSError:
        return 0  # "the failure might be due to length padding"
    if ret == addr:
        return addr
    off_sub = (off - ret) & (PMD_SIZE - 1)
    if not task.mm.legacy_mmap and not off_sub:
        return ret + PMD_SIZE
    return ret + off_sub


def _shmem_get_unmapped_area(task, file, addr: int, length: int, pgoff: int, flags: int) -> int:
    """shmem_get_unmapped_area (6.1): a shmem mapping (a shared anonymous one with pgoff
    0) of 2 MiB or more whose mount may have huge folios (its tmpfs mount's huge=, else the
    internal mount's, or shmem_enabled force; not deny) is placed so that its address and file offset agree
    modulo 2 MiB, from a search for length + 2 MiB - 4 KiB; a hint that was free, an
    offset leaving no whole aligned 2 MiB, or a failed padded search keep the plain
    address."""
    a = _mm_get_unmapped_area(task, file, addr, length, pgoff, flags)
    thp = getattr(task.kernel, "thp", None)
    if thp is None or thp.shmem_enabled == "deny" or length < PMD_SIZE or addr == a:
        return a
    sb = file.inode.sb if file is not None else None  # (None: the internal mount)
    if thp.shmem_enabled != "force" and (thp.shmem_mount_huge if sb is None else sb.huge) == "never":
        return a
    task_size = task.mm.task_size
    offset = (pgoff << PAGE_SHIFT) & (PMD_SIZE - 1)
    if offset and offset + length < 2 * PMD_SIZE:
        return a
    if a & (PMD_SIZE - 1) == offset:
        return a
    inflated_len = length + PMD_SIZE - PAGE_SIZE
    if inflated_len > task_size:
        return a
    try:
        inflated = _mm_get_unmapped_area(task, None, addr, inflated_len, 0, flags)
    except OSError:
        return a
    inflated_offset = inflated & (PMD_SIZE - 1)
    inflated += offset - inflated_offset
    if inflated_offset > offset:
        inflated += PMD_SIZE
    if inflated > task_size - length:
        return a
    return inflated


def _mm_get_unmapped_area(task, file, addr: int, length: int, pgoff: int, flags: int) -> int:
    mm = task.mm
    task_size = mm.task_size
    if length > task_size:
        raise _err(U.ENOMEM, "mmap")
    if flags & U.MAP_FIXED:
        if addr > task_size - length:
            raise _err(U.ENOMEM, "mmap")
        if addr < _mmap_min_addr(task):  # security_mmap_addr (cap_mmap_addr)
            raise _err(U.EPERM, "mmap")
        return addr
    low = max(PAGE_SIZE, _mmap_min_addr(task))
    if addr:
        addr = PAGE_ALIGN(addr)
        vma = mm.mm_mt.find_vma(addr)
        prev = mm.mm_mt.prev_of_addr(addr) if vma is None or vma.vm_start >= addr else vma
        if (task_size - length >= addr and addr >= _mmap_min_addr(task)
                and (vma is None or addr + length <= vm_start_gap(vma))
                and (prev is None or addr >= prev.vm_end)):
            return addr
    if mm.legacy_mmap:
        a = unmapped_area(mm, length, mm.mmap_base, task_size)
    else:
        a = unmapped_area_topdown(mm, length, low, mm.mmap_base)
        if a < 0:  # fall back to bottom-up over the whole space
            a = unmapped_area(mm, length, task_unmapped_base(task_size), task_size)
    if a < 0:
        raise _err(U.ENOMEM, "mmap")
    return a


# --- limits ------------------------------------------------------------------------------------
IGNORE_RLIMIT_DATA = False  # the ignore_rlimit_data boot option (off by default)


def may_expand_vm(task, flags: int, npages: int) -> bool:
    """may_expand_vm: may the mm grow by `npages` pages of a VMA with `flags`? total_vm
    within RLIMIT_AS; a data mapping (private writable, not stack: is_data_mapping) also
    keeps data_vm within RLIMIT_DATA, except Valgrind's case (soft limit 0, within the
    hard limit) and with ignore_rlimit_data. Limits in bytes, compared in whole pages."""
    mm = task.mm
    if mm.total_vm + npages > task.rlimit(U.RLIMIT_AS) >> PAGE_SHIFT:
        return False
    if (flags & (VM_WRITE | VM_SHARED | VM_GROWSDOWN)) == VM_WRITE:
        cur, hard = task.rlimits[U.RLIMIT_DATA]
        if mm.data_vm + npages > cur >> PAGE_SHIFT:
            if cur == 0 and mm.data_vm + npages <= hard >> PAGE_SHIFT:
                return True  # "Workaround for Valgrind"
            return IGNORE_RLIMIT_DATA
    return True


def check_data_rlimit(rlim: int, new: int, start: int, end_data: int, start_data: int) -> bool:
    """check_data_rlimit: True if a brk to `new` keeps heap plus data within `rlim` bytes."""
    return rlim == U.RLIM_INFINITY or (new - start) + (end_data - start_data) <= rlim


def can_do_mlock(task) -> bool:
    return task.rlimit(U.RLIMIT_MEMLOCK) != 0 or task.capable(U.CAP_IPC_LOCK)


def mlock_future_ok(task, flags: int, nbytes: int) -> bool:
    """mlock_future_ok: may `nbytes` more of a VMA with `flags` be locked? Compared in
    pages: locked_vm + nbytes >> PAGE_SHIFT <= RLIMIT_MEMLOCK >> PAGE_SHIFT."""
    if not flags & VM_LOCKED or task.capable(U.CAP_IPC_LOCK):
        return True
    return (nbytes >> PAGE_SHIFT) + task.mm.locked_vm <= task.rlimit(U.RLIMIT_MEMLOCK) >> PAGE_SHIFT


def accountable_mapping(file, flags: int) -> bool:
    return (flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE


def vm_enough_memory(task, pages: int) -> bool:
    k = task.kernel
    return k.vm_enough_memory(pages, task.capable(U.CAP_SYS_ADMIN), task.mm.total_vm)


def calc_vm_prot_bits(prot: int) -> int:
    return prot & (U.PROT_READ | U.PROT_WRITE | U.PROT_EXEC)  # same bit values as VM_*


# --- mmap --------------------------------------------------------------------------------------
def do_mmap(task, addr: int, length: int, prot: int, flags: int, file: File | None,
            pgoff: int, vm_ops=None) -> int:
    """do_mmap: returns the mapped address or raises OSError."""
    mm = task.mm
    k = task.kernel
    if not length:
        raise _err(U.EINVAL, "mmap")
    if not flags & U.MAP_FIXED and not flags & U.MAP_FIXED_NOREPLACE:
        # round_hint_to_min
        addr &= PAGE_MASK
        if addr and addr < _mmap_min_addr(task):
            addr = PAGE_ALIGN(_mmap_min_addr(task))
    length = PAGE_ALIGN(length)
    if not length or length >= 1 << 64:
        raise _err(U.ENOMEM, "mmap")
    if pgoff + (length >> PAGE_SHIFT) >= 1 << 64:
        raise _err(U.EOVERFLOW, "mmap")
    if len(mm.mm_mt) > k.config.max_map_count:
        raise _err(U.ENOMEM, "mmap")
    if flags & U.MAP_FIXED_NOREPLACE:
        flags |= U.MAP_FIXED
    if flags & U.MAP_FIXED and addr & (PAGE_SIZE - 1):
        raise _err(U.EINVAL, "mmap")
    vm_flags = calc_vm_prot_bits(prot) | mm.def_flags | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if flags & U.MAP_GROWSDOWN:
        vm_flags |= VM_GROWSDOWN
    if flags & U.MAP_STACK:
        # 6.7+ (calc_vm_flag_bits): thread stacks get no huge pages, which also keeps them
        # from merging with a neighbouring anonymous mapping
        vm_flags |= VM_NOHUGEPAGE
    if flags & U.MAP_LOCKED:
        vm_flags |= VM_LOCKED
        if not can_do_mlock(task):
            raise _err(U.EPERM, "mmap")
    if not mlock_future_ok(task, vm_flags, length):
        raise _err(U.EAGAIN, "mmap")
    mtype = flags & U.MAP_TYPE
    if file is not None:
        if mtype in (U.MAP_SHARED, U.MAP_SHARED_VALIDATE):
            if prot & U.PROT_WRITE and not file.writable:
                raise _err(U.EACCES, "mmap")
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if not file.writable:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        elif mtype != U.MAP_PRIVATE:
            raise _err(U.EINVAL, "mmap")
        if not file.readable:
            raise _err(U.EACCES, "mmap")
    else:
        if mtype in (U.MAP_SHARED, U.MAP_SHARED_VALIDATE):
            if vm_flags & VM_GROWSDOWN:
                raise _err(U.EINVAL, "mmap")
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif mtype == U.MAP_DROPPABLE:
            # 6.11: "a locked or stack area makes no sense to be droppable", nor hugetlb;
            # never charged (VM_NORESERVE, also in overcommit mode 2), neither copied on
            # fork nor dumped. (A file with MAP_DROPPABLE took the EINVAL above.)
            if flags & (U.MAP_LOCKED | U.MAP_HUGETLB) or vm_flags & VM_GROWSDOWN:
                raise _err(U.EINVAL, "mmap")
            vm_flags |= VM_DROPPABLE | VM_NORESERVE | VM_WIPEONFORK | VM_DONTDUMP
        elif mtype != U.MAP_PRIVATE:
            raise _err(U.EINVAL, "mmap")
    addr = get_unmapped_area(task, file, addr, length, pgoff, flags)
    if flags & U.MAP_FIXED_NOREPLACE and mm.mm_mt.intersecting(addr, addr + length):
        raise _err(U.EEXIST, "mmap")
    if file is not None and vm_flags & VM_SHARED and file.inode.seals & (
            U.F_SEAL_WRITE | U.F_SEAL_FUTURE_WRITE):
        # memfd_check_seals_mmap: no shared writable mapping of a write-sealed memfd, and
        # a read-only one may never become writable
        if vm_flags & VM_WRITE:
            raise _err(U.EPERM, "mmap")
        vm_flags &= ~VM_MAYWRITE
    if file is None and mtype in (U.MAP_PRIVATE, U.MAP_DROPPABLE):
        pgoff = addr >> PAGE_SHIFT
    if flags & U.MAP_NORESERVE and k.config.overcommit_memory != 2:
        vm_flags |= VM_NORESERVE
    addr = mmap_region(task, file, addr, length, vm_flags, pgoff, vm_ops)
    if vm_flags & VM_LOCKED and not vm_flags & VM_LOCKONFAULT or (
            flags & (U.MAP_POPULATE | U.MAP_NONBLOCK)) == U.MAP_POPULATE:
        mm_populate(task, addr, length)
    return addr


def mmap_region(task, file, addr: int, length: int, vm_flags: int, pgoff: int,
                vm_ops=None, anon_name=None) -> int:
    """__mmap_region (6.12+): the VMAs a MAP_FIXED mapping replaces are gathered first
    (split at the range's edges: vms_gather_munmap_vmas) but stay in place until every
    check that can fail has passed (may_expand_vm over the net growth, the commit charge
    of the pages not already charged, the shmem object of a shared anonymous mapping);
    a failure leaves them mapped with their pages (vms_abort_munmap_vmas reattaches
    them; a VMA the range cut through stays split, as in Linux). Only then are they
    unmapped (vms_complete_munmap_vmas) and the new VMA made. A replaced VM_ACCOUNT
    range hands its charge to the new mapping when that one is charged too."""
    mm = task.mm
    k = task.kernel
    npages = length >> PAGE_SHIFT
    end = addr + length
    old = _gather_munmap_vmas(task, addr, end) if mm.mm_mt.intersecting(addr, end) else []
    nr_pages = nr_accounted = 0
    for v in old:
        n = v.vma_pages()
        nr_pages += n
        if v.vm_flags & VM_ACCOUNT:
            nr_accounted += n
    if not may_expand_vm(task, vm_flags, npages - nr_pages):
        raise _err(U.ENOMEM, "mmap")
    charged = 0
    uncharge_old = True
    if accountable_mapping(file, vm_flags):
        charged = npages - nr_accounted
        if charged and not vm_enough_memory(task, charged):
            raise _err(U.ENOMEM, "mmap")
        uncharge_old = False  # vms.nr_accounted = 0: the old charge is the new one's
        vm_flags |= VM_ACCOUNT
    if file is None and vm_flags & VM_SHARED:
        # shmem_zero_setup: a shared anonymous mapping is an unlinked shmem file
        if not vm_flags & VM_NORESERVE and not vm_enough_memory(task, npages):
            if charged:
                k.vm_unacct_memory(charged)
            raise _err(U.ENOMEM, "mmap")
        inode = k.fs.new_shmem_inode("/dev/zero", length)
        inode.name = "/dev/zero (deleted)"
        if not vm_flags & VM_NORESERVE:
            inode.charged = npages
        else:
            inode.noreserve = True  # charged block by block (shmem_acct_block)
        file = File(inode)
    if old:
        unmap_vmas(task, old, uncharge_old)
    vma = None
    if vm_ops is None:
        vma = vma_merge_new_range(mm, addr, addr + length, vm_flags, file, pgoff, anon_name)
    if vma is None:
        try:
            vma = vm_area_alloc(mm, addr, addr + length, vm_flags, pgoff, file, vm_ops, anon_name)
        except OSError:
            if charged:
                k.vm_unacct_memory(charged)
            raise
        if vm_ops is not None and hasattr(vm_ops, "open"):
            vm_ops.open(vma)
        vma_link(mm, vma)
    elif file is not None and file.refs == 0:
        file.get()
        file.put()  # nobody holds this fresh shmem file: let it go
    vm_stat_account(mm, vm_flags, npages)
    kh = k.khugepaged
    if kh is not None:
        kh.enter_vma(vma)  # khugepaged_enter_vma
    if vm_flags & VM_LOCKED:
        if vm_flags & VM_SPECIAL or vm_flags & VM_HUGETLB:
            vma.vm_flags &= ~VM_LOCKED_MASK
        else:
            mm.locked_vm += npages
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    return addr


def mm_populate(task, start: int, length: int, ignore_errors: bool = True) -> int:
    """__mm_populate: fault in [start, start+len) VMA by VMA. With ignore_errors (mmap,
    brk, mlockall) a VMA that fails is left and the next one populated; otherwise (mlock)
    the first failure ends it. Returns 0 or the VM_FAULT_* bits of the failure."""
    end = start + length
    err = 0
    for vma in task.mm.mm_mt.intersecting(start, end):
        if vma.vm_flags & (VM_IO | VM_PFNMAP):
            continue
        ret = populate_vma_range(task, vma, max(start, vma.vm_start), min(end, vma.vm_end))
        if task.fatal_signal_pending():
            return ret | VM_FAULT_OOM
        if ret & VM_FAULT_ERROR:
            if not ignore_errors:
                return ret
            err = ret
    return 0 if ignore_errors else err


# --- special mappings (vdso, vvar) ---------------------------------------------------------------
class SpecialMapping:
    """vm_special_mapping + special_mapping_vmops: a kernel-provided mapping with a fixed
    name ([vdso], [vvar], [vvar_vclock]). It cannot be split (special_mapping_split:
    EINVAL, so a partial munmap/mprotect/mremap fails), and _install_special_mapping gives
    it VM_DONTEXPAND, so mremap cannot grow it (EFAULT) and it never merges.

    A fault maps a kernel-owned frame, never allocated for the process, so never in
    RssAnon. The vDSO text pages belong to the kernel image (kernel.vdso_pages): mapped
    like a file page (special_mapping_fault + finish_fault), they count in RssFile and
    nr_mapped. The [vvar] data are PFN-mapped (vmf_insert_pfn: no struct page, no RSS);
    hvsim does not model their bytes and maps the shared zero page's frame, which no
    counter sees either. A write fault (only possible after mprotect gave the vdso
    PROT_WRITE, which VM_MAYWRITE allows for debuggers) breaks CoW into an anonymous
    page as Linux does."""

    __slots__ = ("_name", "text")

    def __init__(self, name: str, text: bool = False) -> None:
        self._name = name
        self.text = text  # the vDSO's own pages (else PFN-mapped data)

    def name(self, vma) -> str:
        return self._name

    def may_split(self, vma, addr: int) -> None:
        raise _err(U.EINVAL, f"split of {self._name}")

    def fault(self, task, vma, addr: int, write: bool) -> int:
        from .memory import VM_FAULT_OOM, VM_FAULT_SIGBUS, map_file_page, new_anon_page, vma_pte_bits

        k = task.kernel
        pt = task.mm.pgtable
        vpn = addr >> PAGE_SHIFT
        if not write:
            if self.text:
                idx = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
                vp = k.vdso_pages
                if idx >= len(vp):
                    return VM_FAULT_SIGBUS
                if not map_file_page(k, task.mm, vma, vpn, vp[idx], False):
                    return VM_FAULT_OOM
            elif not pt.set_pte_new(vpn, (k.zero_pfn << PAGE_SHIFT)
                                    | vma_pte_bits(vma.vm_flags, False)):
                return VM_FAULT_OOM
            k.vmstat["fault_special"] += 1
            return 0
        page = new_anon_page(k, vma, addr, True, task.oom_victim)
        if page is None:
            return VM_FAULT_OOM
        if not pt.set_pte_new(vpn, (page.pfn << PAGE_SHIFT) | vma_pte_bits(vma.vm_flags, True)):
            from .memory import _drop_new_anon_page

            _drop_new_anon_page(k, page)
            return VM_FAULT_OOM
        task.mm.rss[MM_ANONPAGES] += 1
        k.vmstat["fault_cow"] += 1
        return 0


VDSO_MAPPING = SpecialMapping("[vdso]", text=True)
VVAR_MAPPING = SpecialMapping("[vvar]")
VVAR_VCLOCK_MAPPING = SpecialMapping("[vvar_vclock]")
# Linux 6.18 x86 (arch/x86/entry/vdso/vma.c, lib/vdso/datastore.c), the kernel the traces
# under tests/data were recorded on: VDSO_NR_PAGES data pages ([vvar]: time, rng, arch
# data), VDSO_NR_VCLOCK_PAGES clock pages ([vvar_vclock]: pvclock, hvclock), then the vDSO
# text (vdso_image_64 / vdso_image_32: 2 pages).
VVAR_PAGES = 4
VVAR_VCLOCK_PAGES = 2
VDSO_TEXT_PAGES = 2
VM_VVAR_FLAGS = VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP
VM_VDSO_FLAGS = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC


def _install_special_mapping(task, addr: int, length: int, vm_flags: int, sm: SpecialMapping):
    """__install_special_mapping: a VMA at [addr, addr + length) (the range is free), with
    VM_DONTEXPAND | VM_SOFTDIRTY and never VM_LOCKED; counted in total_vm (and exec_vm if
    executable) but never charged to overcommit."""
    mm = task.mm
    flags = (vm_flags | mm.def_flags | VM_DONTEXPAND | VM_SOFTDIRTY) & ~VM_LOCKED_MASK
    vma = vm_area_alloc(mm, addr, addr + length, flags, 0, None, sm)
    vma_link(mm, vma)
    vm_stat_account(mm, flags, length >> PAGE_SHIFT)
    return vma


def map_vdso(task) -> int:
    """arch_setup_additional_pages (x86_64 and i386, 6.18 map_vdso): one free area of
    [vvar] + [vvar_vclock] + [vdso] from get_unmapped_area(NULL, 0, ...), i.e. top-down
    just below mmap_base (bottom-up from TASK_UNMAPPED_BASE in the legacy layout), after
    everything else execve mapped. Returns the vDSO text address (mm->context.vdso)."""
    mm = task.mm
    data = (VVAR_PAGES + VVAR_VCLOCK_PAGES) << PAGE_SHIFT
    size = data + (VDSO_TEXT_PAGES << PAGE_SHIFT)
    addr = get_unmapped_area(task, None, 0, size, 0, 0)
    text = addr + data
    _install_special_mapping(task, text, VDSO_TEXT_PAGES << PAGE_SHIFT, VM_VDSO_FLAGS, VDSO_MAPPING)
    _install_special_mapping(task, addr, VVAR_PAGES << PAGE_SHIFT, VM_VVAR_FLAGS, VVAR_MAPPING)
    _install_special_mapping(task, addr + (VVAR_PAGES << PAGE_SHIFT),
                             VVAR_VCLOCK_PAGES << PAGE_SHIFT, VM_VVAR_FLAGS, VVAR_VCLOCK_MAPPING)
    mm.vdso = text
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    return text


# --- munmap ------------------------------------------------------------------------------------
def do_munmap(task, start: int, length: int, uncharge: bool = True) -> int:
    mm = task.mm
    if start & (PAGE_SIZE - 1) or start > mm.task_size or length > mm.task_size - start:
        raise _err(U.EINVAL, "munmap")
    length = PAGE_ALIGN(length)
    if not length:
        raise _err(U.EINVAL, "munmap")
    end = start + length
    if not mm.mm_mt.intersecting(start, end):
        return 0
    unmap_vmas(task, _gather_munmap_vmas(task, start, end), uncharge)
    return 0


def _gather_munmap_vmas(task, start: int, end: int) -> list:
    """vms_gather_munmap_vmas: split the VMAs overlapping [start, end) at its edges and
    return those now inside it (still mapped). ENOMEM, before any split, if cutting a
    hole in one VMA would take map_count past max_map_count; EPERM if one of them is
    sealed (munmap, MAP_FIXED over it, a brk shrink, mremap's target)."""
    mm = task.mm
    vmas = mm.mm_mt.intersecting(start, end)
    first = vmas[0]
    if start > first.vm_start:
        if end < first.vm_end and len(mm.mm_mt) >= task.kernel.config.max_map_count:
            raise _err(U.ENOMEM, "munmap")
        if first.vm_flags & VM_SEALED:  # "don't bother splitting the VMA if we can't unmap it"
            raise _err(U.EPERM, "munmap")
        __split_vma(mm, first, start, True)
    for v in vmas:
        if v.vm_flags & VM_SEALED:  # mseal (6.10): the first split above stays
            raise _err(U.EPERM, "munmap")
    last = mm.mm_mt.find_vma(end - 1)
    if last is not None and last.vm_start < end < last.vm_end:
        __split_vma(mm, last, end, True)
    return mm.mm_mt.intersecting(start, end)


def unmap_vmas(task, vmas: list, uncharge: bool = True) -> None:
    """Remove whole VMAs: zap their PTEs, unlink them, free empty page tables, return the
    commit charge and the locked/total/data/... counts."""
    if not vmas:
        return
    mm = task.mm
    k = task.kernel
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    start, end = vmas[0].vm_start, vmas[-1].vm_end
    nr_accounted = 0
    for vma in vmas:
        zap_page_range(k, mm, vma, vma.vm_start, vma.vm_end, drop_markers=True)
    for vma in vmas:
        if vma.vm_flags & VM_ACCOUNT:
            nr_accounted += vma.vma_pages()
        vma_account(mm, vma, -1)
        mm.mm_mt.remove(vma)
        vma_close(vma)
    prev = mm.mm_mt.prev_of_addr(start)
    nxt = mm.mm_mt.find_vma(end)
    mm.pgtable.free_pgtables(start, end, prev.vm_end if prev is not None else 0,
                             nxt.vm_start if nxt is not None else USER_PGTABLES_CEILING)
    if nr_accounted and uncharge:
        k.vm_unacct_memory(nr_accounted)


# --- brk -------------------------------------------------------------------------------------------
def do_brk(task, brk: int) -> int:
    mm = task.mm
    k = task.kernel
    origbrk = mm.brk
    if brk < mm.start_brk:
        return origbrk
    # against RLIMIT_DATA before any rounding, so an unaligned limit cannot be escaped
    if not check_data_rlimit(task.rlimit(U.RLIMIT_DATA), brk, mm.start_brk, mm.end_data,
                             mm.start_data):
        return origbrk
    newbrk = PAGE_ALIGN(brk)
    oldbrk = PAGE_ALIGN(mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        # Always allow shrinking brk.
        mm.brk = brk
        try:
            do_munmap(task, newbrk, oldbrk - newbrk)
        except OSError:
            mm.brk = origbrk
            return origbrk
        return brk
    nxt = mm.mm_mt.find_vma(oldbrk)
    if nxt is not None and nxt.vm_start < newbrk + PAGE_SIZE + STACK_GUARD_GAP:
        if newbrk + PAGE_SIZE > vm_start_gap(nxt):
            return origbrk
    length = newbrk - oldbrk
    npages = length >> PAGE_SHIFT
    flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags
    if not may_expand_vm(task, flags, npages) or len(mm.mm_mt) > k.config.max_map_count:
        return origbrk
    if not vm_enough_memory(task, npages):
        return origbrk
    prev = mm.mm_mt.prev_of_addr(oldbrk)
    brkvma_ok = prev is not None and prev.vm_end == oldbrk and prev.vm_start >= mm.start_brk
    vma = vma_merge_new_range(mm, oldbrk, newbrk, flags, None, oldbrk >> PAGE_SHIFT,
                              None, prev_ok=brkvma_ok)
    if vma is None:
        vma = vm_area_alloc(mm, oldbrk, newbrk, flags, oldbrk >> PAGE_SHIFT)
        vma_link(mm, vma)
    vm_stat_account(mm, flags, npages)
    kh = task.kernel.khugepaged
    if kh is not None:
        kh.enter_vma(vma)  # do_brk_flags: khugepaged_enter_vma
    if flags & VM_LOCKED:
        mm.locked_vm += npages
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    mm.brk = brk
    if mm.def_flags & VM_LOCKED and not mm.def_flags & VM_LOCKONFAULT:
        mm_populate(task, oldbrk, length)
    return brk


# --- stack -------------------------------------------------------------------------------------------
def expand_stack(task, vma, addr: int) -> int:
    """expand_downwards: grow a VM_GROWSDOWN VMA down to cover `addr`. Returns 0 or an errno."""
    mm = task.mm
    address = addr & PAGE_MASK
    if address < _mmap_min_addr(task):
        return U.EPERM
    prev = mm.mm_mt.prev(vma)
    if (prev is not None and not prev.vm_flags & VM_GROWSDOWN
            and prev.vm_flags & VM_ACCESS_FLAGS and address - prev.vm_end < STACK_GUARD_GAP):
        return U.ENOMEM
    if prev is not None and prev.vm_end > address:
        return U.ENOMEM
    grow = (vma.vm_start - address) >> PAGE_SHIFT
    size = vma.vm_end - address
    if not may_expand_vm(task, vma.vm_flags, grow):
        return U.ENOMEM
    if size > task.rlimit(U.RLIMIT_STACK):
        return U.ENOMEM
    if not mlock_future_ok(task, vma.vm_flags, grow << PAGE_SHIFT):
        return U.EAGAIN
    if vma.vm_flags & VM_ACCOUNT and not vm_enough_memory(task, grow):
        return U.ENOMEM
    if vma.vm_flags & VM_LOCKED:
        mm.locked_vm += grow
    vm_stat_account(mm, vma.vm_flags, grow)
    mm.mm_mt.set_start(vma, address)
    vma.vm_pgoff -= grow
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    return 0


# --- mprotect ---------------------------------------------------------------------------------------
def change_protection(task, vma, start: int, end: int) -> None:
    """Rewrite the PTEs of [start, end) for the VMA's new flags."""
    mm = task.mm
    ptes = mm.pgtable.ptes
    flags = vma.vm_flags
    accessible = bool(flags & VM_ACCESS_FLAGS)
    shared_write = (flags & (VM_SHARED | VM_WRITE)) == (VM_SHARED | VM_WRITE)
    mem_map = task.kernel.mem_map
    zero_pfn = task.kernel.zero_pfn
    for vpn in _vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT):
        pte = ptes[vpn]
        if not pte & PTE_PRESENT_MASK:
            continue
        new = pte & ~(_PAGE_PRESENT | _PAGE_PROTNONE | _PAGE_NX | _PAGE_RW)
        new |= _PAGE_PRESENT if accessible else _PAGE_PROTNONE
        if not flags & VM_EXEC:
            new |= _PAGE_NX
        if flags & VM_WRITE and pte >> PAGE_SHIFT != zero_pfn:
            page = mem_map[pte >> PAGE_SHIFT]
            if shared_write and (pte & _PAGE_DIRTY or page.flags & PG_swapbacked):
                new |= _PAGE_RW
            elif (not flags & VM_SHARED and page.flags & PG_anon and page._mapcount == 0
                  and page._count == 1):
                new |= _PAGE_RW  # can_change_pte_writable: an exclusive anonymous page
        if new != pte:
            ptes[vpn] = new
            mm.pgtable.pte_changed(vpn)


def mprotect_fixup(task, vma, start: int, end: int, newflags: int):
    mm = task.mm
    k = task.kernel
    oldflags = vma.vm_flags
    if oldflags & VM_SEALED:
        # mseal: per VMA, before the no-change test (6.18 mprotect_fixup), so the VMAs
        # before it in the range stay changed and even the same rights are EPERM
        raise _err(U.EPERM, "mprotect")
    if newflags == oldflags:
        return vma
    npages = (end - start) >> PAGE_SHIFT
    charged = 0
    if newflags & VM_WRITE:
        # check space limits when the area turns into data
        if not may_expand_vm(task, newflags, npages) and may_expand_vm(task, oldflags, npages):
            raise _err(U.ENOMEM, "mprotect")
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            charged = npages
            if not vm_enough_memory(task, charged):
                raise _err(U.ENOMEM, "mprotect")
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.vm_file is None and vma.anon_vma is None:
        newflags &= ~VM_ACCOUNT
    try:
        vma = vma_modify(mm, vma, start, end, newflags)
    except OSError:
        if charged:
            k.vm_unacct_memory(charged)
        raise
    if oldflags & VM_ACCOUNT and not newflags & VM_ACCOUNT:
        k.vm_unacct_memory(npages)
    vm_stat_account(mm, oldflags, -npages)
    vm_stat_account(mm, newflags, npages)
    change_protection(task, vma, start, end)
    if (oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED and newflags & VM_WRITE:
        populate_vma_range(task, vma, start, end)
    return vma


def do_mprotect(task, start: int, length: int, prot: int) -> int:
    mm = task.mm
    if start & (PAGE_SIZE - 1):
        raise _err(U.EINVAL, "mprotect")
    if not length:
        return 0
    length = PAGE_ALIGN(length)
    end = start + length
    if end <= start:
        raise _err(U.ENOMEM, "mprotect")
    grows = prot & (U.PROT_GROWSDOWN | U.PROT_GROWSUP)
    if prot & ~(U.PROT_READ | U.PROT_WRITE | U.PROT_EXEC | U.PROT_SEM | grows) or grows == (
            U.PROT_GROWSDOWN | U.PROT_GROWSUP):
        raise _err(U.EINVAL, "mprotect")
    prot &= ~grows
    vma = mm.mm_mt.find_vma(start)
    if vma is None or vma.vm_start >= end:
        raise _err(U.ENOMEM, "mprotect")
    if grows & U.PROT_GROWSDOWN:
        start = vma.vm_start
        if not vma.vm_flags & VM_GROWSDOWN:
            raise _err(U.EINVAL, "mprotect")
    elif vma.vm_start > start:
        raise _err(U.ENOMEM, "mprotect")
    nstart = start
    while nstart < end:
        vma = mm.mm_mt.find_vma(nstart)
        if vma is None or vma.vm_start > nstart:
            # a hole: the VMAs before it stay changed
            raise _err(U.ENOMEM, "mprotect")
        newflags = calc_vm_prot_bits(prot) | (vma.vm_flags & ~VM_ACCESS_FLAGS)
        if (newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS:
            raise _err(U.EACCES, "mprotect")
        tmp = min(vma.vm_end, end)
        mprotect_fixup(task, vma, nstart, tmp, newflags)
        nstart = tmp
    return 0


# --- mremap ------------------------------------------------------------------------------------------
def do_mremap(task, addr: int, old_len: int, new_len: int, flags: int, new_addr: int = 0) -> int:
    mm = task.mm
    if flags & ~(U.MREMAP_MAYMOVE | U.MREMAP_FIXED | U.MREMAP_DONTUNMAP):
        raise _err(U.EINVAL, "mremap")
    if flags & U.MREMAP_FIXED and not flags & U.MREMAP_MAYMOVE:
        raise _err(U.EINVAL, "mremap")
    if flags & U.MREMAP_DONTUNMAP and (not flags & U.MREMAP_MAYMOVE or old_len != new_len):
        raise _err(U.EINVAL, "mremap")
    if addr & (PAGE_SIZE - 1):
        raise _err(U.EINVAL, "mremap")
    old_len = PAGE_ALIGN(old_len)
    new_len = PAGE_ALIGN(new_len)
    if not new_len:
        raise _err(U.EINVAL, "mremap")
    if flags & U.MREMAP_FIXED and old_len == new_len:
        # a move only (vrm_move_only): since 6.17 the range may span VMAs and gaps
        _check_mremap_fixed(mm, addr, old_len, new_addr, new_len)
        return _remap_move(task, addr, old_len, new_addr, flags)
    vma = mm.mm_mt.lookup(addr)
    if vma is None:
        raise _err(U.EFAULT, "mremap")
    if vma.vm_flags & VM_SEALED:  # check_prep_vma: "if mseal()'d, mremap() is prohibited"
        raise _err(U.EPERM, "mremap")
    if flags & (U.MREMAP_FIXED | U.MREMAP_DONTUNMAP):
        return _mremap_to(task, addr, old_len, new_addr if flags & U.MREMAP_FIXED else 0,
                          new_len, flags)
    if old_len >= new_len:
        # always allow a shrinking remap: that just unmaps the tail
        if old_len > new_len:
            do_munmap(task, addr + new_len, old_len - new_len)
        return addr
    vma = _vma_to_resize(task, addr, old_len, new_len, flags)
    delta = new_len - old_len
    npages = delta >> PAGE_SHIFT
    # grow in place when the range ends at the VMA's end and the space after is free
    if old_len == vma.vm_end - addr:
        nxt = mm.mm_mt.next(vma)
        end = addr + new_len
        if end <= mm.task_size and (nxt is None or end <= vm_start_gap(nxt)):
            if vma.vm_flags & VM_ACCOUNT and not vm_enough_memory(task, npages):
                raise _err(U.ENOMEM, "mremap")
            old_end = vma.vm_end
            # vma_merge_extend: grow, then merge with next if now adjacent and compatible
            vma.vm_end = end
            if nxt is not None and nxt.vm_start == end:
                from .vma import _absorb_chains, _remove_vma, can_vma_merge_before, is_mergeable_anon_vma
                if (can_vma_merge_before(nxt, vma.vm_flags, vma.anon_vma, vma.vm_file,
                                         vma.vm_pgoff + vma.vma_pages(), 0, vma.anon_name, vma)
                        and is_mergeable_anon_vma(vma.anon_vma, vma, nxt)):
                    _absorb_chains(vma, nxt)
                    vma.vm_end = nxt.vm_end
                    _remove_vma(mm, nxt)
            vm_stat_account(mm, vma.vm_flags, npages)
            if vma.vm_flags & VM_LOCKED:
                mm.locked_vm += npages
                mm_populate(task, old_end, end - old_end)
            if mm.total_vm > mm.hiwater_vm:
                mm.hiwater_vm = mm.total_vm
            return addr
    if not flags & U.MREMAP_MAYMOVE:
        raise _err(U.ENOMEM, "mremap")
    map_flags = U.MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0
    pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
    new_addr = get_unmapped_area(task, vma.vm_file, 0, new_len, pgoff, map_flags)
    return _move_vma(task, vma, addr, old_len, new_len, new_addr, flags)


def _check_mremap_fixed(mm, addr: int, old_len: int, new_addr: int, new_len: int) -> None:
    """check_mremap_params for MREMAP_FIXED: an aligned target inside TASK_SIZE that does
    not overlap the source."""
    if new_addr & (PAGE_SIZE - 1):
        raise _err(U.EINVAL, "mremap")
    if new_len > mm.task_size or new_addr > mm.task_size - new_len:
        raise _err(U.EINVAL, "mremap")
    if addr + old_len > new_addr and new_addr + new_len > addr:
        raise _err(U.EINVAL, "mremap")


def _remap_move(task, addr: int, length: int, new_addr: int, flags: int) -> int:
    """remap_move (6.17): move every VMA of [addr, addr + length) to the same offset from
    new_addr, each as its own MREMAP_FIXED move (check_prep_vma, then mremap_to: the
    target piece is unmapped first); gaps between the source VMAs stay gaps at the
    target, where whatever was mapped stays. A gap at the start of the range is EFAULT
    (and so is an empty range); a failure stops the moves, those done stay done. Returns
    where the first VMA went. A range inside one VMA is the classic single move."""
    mm = task.mm
    end = addr + length
    vma = mm.mm_mt.lookup(addr)
    if vma is None:
        raise _err(U.EFAULT, "mremap")
    multi = vma.vm_end < end and bool(mm.mm_mt.intersecting(vma.vm_end, end))
    res = None
    target = new_addr
    last_end = 0
    pos = addr
    while vma is not None and vma.vm_start < end:
        a = max(vma.vm_start, pos)
        n = min(end, vma.vm_end) - a
        offset = vma.vm_start - last_end if res is not None else 0
        last_end = vma.vm_end
        if vma.vm_flags & VM_SEALED:
            raise _err(U.EPERM, "mremap")
        r = _mremap_to(task, a, n, target + offset, n, flags | U.MREMAP_FIXED, multi)
        if res is None:
            res = r
        target = r + n
        pos = a + n
        if pos >= end:
            break
        vma = mm.mm_mt.find_vma(pos)
    return res


def _vma_to_resize(task, addr: int, old_len: int, new_len: int, flags: int):
    mm = task.mm
    vma = mm.mm_mt.lookup(addr)
    if vma is None:
        raise _err(U.EFAULT, "mremap")
    if old_len > vma.vm_end - addr:
        raise _err(U.EFAULT, "mremap")
    if flags & U.MREMAP_DONTUNMAP and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise _err(U.EINVAL, "mremap")
    if new_len == old_len:
        return vma
    if new_len > old_len and vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        raise _err(U.EFAULT, "mremap")
    if not mlock_future_ok(task, vma.vm_flags, new_len - old_len):
        raise _err(U.EAGAIN, "mremap")
    if not may_expand_vm(task, vma.vm_flags, (new_len - old_len) >> PAGE_SHIFT):
        raise _err(U.ENOMEM, "mremap")
    return vma


def _dontunmap_may_expand(task, vma, old_len: int, flags: int) -> None:
    # MREMAP_DONTUNMAP expands by old_len since old_len == new_len
    if flags & U.MREMAP_DONTUNMAP and not may_expand_vm(task, vma.vm_flags, old_len >> PAGE_SHIFT):
        raise _err(U.ENOMEM, "mremap")


def _mremap_to(task, addr: int, old_len: int, new_addr: int, new_len: int, flags: int,
               multi: bool = False) -> int:
    mm = task.mm
    if not flags & U.MREMAP_FIXED:  # MREMAP_DONTUNMAP alone: anywhere
        vma = _vma_to_resize(task, addr, old_len, new_len, flags)
        _dontunmap_may_expand(task, vma, old_len, flags)
        map_flags = U.MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0
        pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> PAGE_SHIFT)
        new_addr = get_unmapped_area(task, vma.vm_file, 0, new_len, pgoff, map_flags)
        return _move_vma(task, vma, addr, old_len, new_len, new_addr, flags)
    if new_addr & (PAGE_SIZE - 1):
        raise _err(U.EINVAL, "mremap")
    if new_len > mm.task_size or new_addr > mm.task_size - new_len:
        raise _err(U.EINVAL, "mremap")
    if addr + old_len > new_addr and new_addr + new_len > addr:
        raise _err(U.EINVAL, "mremap")
    do_munmap(task, new_addr, new_len)
    if old_len > new_len:
        do_munmap(task, addr + new_len, old_len - new_len)
        old_len = new_len
    vma = _vma_to_resize(task, addr, old_len, new_len, flags)
    _dontunmap_may_expand(task, vma, old_len, flags)
    return _move_vma(task, vma, addr, old_len, new_len, new_addr, flags, multi)


def _move_vma(task, vma, old_addr: int, old_len: int, new_len: int, new_addr: int,
              flags: int, multi: bool = False) -> int:
    """move_vma: a copy of the VMA at new_addr takes the PTEs; the old range goes.
    The commit charge of the old range moves with it; only growth is charged.

    MREMAP_DONTUNMAP (old_len == new_len): the old VMA keeps its range, empty (its PTEs
    moved), and its VM_ACCOUNT charge; the new one is charged for all of new_len and
    counts in total_vm. dontunmap_complete clears VM_LOCKED|VM_LOCKONFAULT on the old
    VMA (the whole VMA, even when only part of it moved) and leaves locked_vm alone: the
    locked pages now counted are the new VMA's, so VmLck does not change. When the whole
    VMA moved, its anon_vma links go (unlink_anon_vmas): new faults there start afresh.
    hiwater_vm is restored afterwards (total_vm was raised for a moment)."""
    mm = task.mm
    k = task.kernel
    vm_flags = vma.vm_flags
    to_account = new_len - old_len if new_len > old_len else 0
    if flags & U.MREMAP_DONTUNMAP:
        to_account = new_len
    if vm_flags & VM_ACCOUNT and to_account and not vm_enough_memory(task, to_account >> PAGE_SHIFT):
        raise _err(U.ENOMEM, "mremap")
    if len(mm.mm_mt) >= k.config.max_map_count - 3:
        raise _err(U.ENOMEM, "mremap")
    pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> PAGE_SHIFT)
    if vma.vm_file is None and vma.anon_vma is None and (flags & U.MREMAP_DONTUNMAP or multi):
        # copy_vma: "if anonymous vma has not yet been faulted, update new pgoff to match
        # new location, to increase its chance of merging". Measured on 6.18, the moved
        # VMA merges by its new address only in a MREMAP_DONTUNMAP move or a move of a
        # range of several VMAs (new_mm.trace: the pieces merge at the target); a plain
        # move or an expanding one keeps the old pgoff (placement.trace: no merge)
        pgoff = new_addr >> PAGE_SHIFT
    # copy_vma: the new VMA keeps the anon_vma and pgoff (so anon pages keep their index)
    new = vma_merge_new_range(mm, new_addr, new_addr + new_len, vm_flags, vma.vm_file,
                              pgoff, vma.anon_name) if vma.anon_vma is None else None
    if new is None:
        new = vm_area_alloc(mm, new_addr, new_addr + new_len, vm_flags, pgoff,
                            vma.vm_file, vma.vm_ops, vma.anon_name)
        new.anon_vma = vma.anon_vma
        new.anon_vma_chain = list(vma.anon_vma_chain)
        if vma.vm_ops is not None and hasattr(vma.vm_ops, "open"):
            vma.vm_ops.open(new)
        vma_link(mm, new)
    hiwater_vm = mm.hiwater_vm
    vm_stat_account(mm, vm_flags, new_len >> PAGE_SHIFT)
    move_ptes(k, mm, new, old_addr, new_addr, min(old_len, new_len))
    if vma.vm_ops is VDSO_MAPPING:
        mm.vdso = new_addr  # vdso_mremap: the signal return trampoline moves with it
    if flags & U.MREMAP_DONTUNMAP:
        # dontunmap_complete; "because we won't unmap we don't need to touch locked_vm"
        if vma.vm_flags & VM_LOCKED:
            # the old VMA's locked pages stay in locked_vm (now the new VMA's), but
            # the part of it that did not move is no longer VM_LOCKED: Linux counts
            # those pages in locked_vm for good (validate_mm allows for them)
            mm.locked_vm_orphaned += vma.vma_pages() - (old_len >> PAGE_SHIFT)
        vma.vm_flags &= ~VM_LOCKED_MASK
        if new is not vma and vma.vm_start == old_addr and vma.vm_end == old_addr + old_len:
            # unlink_anon_vmas
            for av in vma.anon_vma_chain:
                av.vmas.pop(vma, None)
            vma.anon_vma = None
            vma.anon_vma_chain = []
        mm.hiwater_vm = hiwater_vm
        return new_addr
    if vm_flags & VM_LOCKED:
        mm.locked_vm += new_len >> PAGE_SHIFT
    # the old range's charge stays with the new VMA: unmap without uncharging
    do_munmap(task, old_addr, old_len, uncharge=not vm_flags & VM_ACCOUNT)
    mm.hiwater_vm = hiwater_vm
    if vm_flags & VM_LOCKED and new_len > old_len:
        mm_populate(task, new_addr + old_len, new_len - old_len)
    return new_addr


# --- madvise ------------------------------------------------------------------------------------------
_MADV_VALID = {
    U.MADV_NORMAL, U.MADV_RANDOM, U.MADV_SEQUENTIAL, U.MADV_WILLNEED, U.MADV_DONTNEED,
    U.MADV_FREE, U.MADV_REMOVE, U.MADV_DONTFORK, U.MADV_DOFORK, U.MADV_MERGEABLE,
    U.MADV_UNMERGEABLE, U.MADV_HUGEPAGE, U.MADV_NOHUGEPAGE, U.MADV_DONTDUMP, U.MADV_DODUMP,
    U.MADV_WIPEONFORK, U.MADV_KEEPONFORK, U.MADV_COLD, U.MADV_PAGEOUT,
    U.MADV_POPULATE_READ, U.MADV_POPULATE_WRITE, U.MADV_DONTNEED_LOCKED,
    U.MADV_GUARD_INSTALL, U.MADV_GUARD_REMOVE, U.MADV_COLLAPSE,
}
# is_discard (mm/madvise.c): the advices a sealed read-only anonymous VMA refuses
_MADV_DISCARD = frozenset({
    U.MADV_FREE, U.MADV_DONTNEED, U.MADV_DONTNEED_LOCKED, U.MADV_REMOVE, U.MADV_DONTFORK,
    U.MADV_WIPEONFORK, U.MADV_GUARD_INSTALL,
})


def _madvise_willneed_swap(task, vma, start: int, end: int) -> None:
    """6.1 madvise_willneed of an anonymous VMA (swapin_walk_pmd_entry: each swap PTE of
    [start, end)) or a shmem one (force_shm_swapin_readahead: each swap entry of the
    mapping from the index of `start` to the index of `end + PAGE_SIZE - 1`, inclusive:
    6.1's xas_for_each bound, one page past the range): read_swap_cache_async reads the
    page into the swap cache, inside do_madvise's blk_plug, not waited for and not
    mapped; pages present (or already in the swap cache) are left alone. The 2.6 era's
    madvise_willneed reads ahead files only: an anonymous VMA is -EBADF (2.6.24:
    "if (!file) return -EBADF"), a shmem one nothing."""
    k = task.kernel
    swap = getattr(k, "swap", None)
    rk = getattr(k, "reclaim", None)
    if rk is not None and not rk.v6:
        if vma.vm_file is None:
            raise _err(U.EBADF, "madvise")
        return
    if swap is None or rk is None:
        return
    if vma.vm_file is None:
        ptes = task.mm.pgtable.ptes
        entries = [ptes[v] >> PAGE_SHIFT
                   for v in _vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT)
                   if ptes[v] & _PAGE_SWP and not ptes[v] & (PTE_PRESENT_MASK | _PAGE_MARKER)]
    else:
        sw = vma.vm_file.inode.mapping.swapped
        if not sw:
            return
        first = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
        last = vma.vm_pgoff + ((end + PAGE_SIZE - 1 - vma.vm_start) >> PAGE_SHIFT)
        entries = [sw[i] for i in sorted(sw) if first <= i <= last]
    if not entries:
        return
    env = k.env
    plug = blk_start_plug(k)
    for entry in entries:
        swap.read_swap_cache_async(entry)
    blk_finish_plug(k, plug, None if env is None else env.now + k.stall)


def do_madvise(task, start: int, len_in: int, behavior: int) -> int:
    mm = task.mm
    if behavior not in _MADV_VALID:
        raise _err(U.EINVAL, "madvise")
    if behavior == U.MADV_COLLAPSE and task.kernel.khugepaged is None:
        raise _err(U.EINVAL, "madvise")  # (6.1+ with CONFIG_TRANSPARENT_HUGEPAGE only)
    if start & (PAGE_SIZE - 1):
        raise _err(U.EINVAL, "madvise")
    length = PAGE_ALIGN(len_in)
    if len_in and not length:
        raise _err(U.EINVAL, "madvise")
    end = start + length
    if end < start:
        raise _err(U.EINVAL, "madvise")
    if end == start:
        return 0
    if behavior in (U.MADV_POPULATE_READ, U.MADV_POPULATE_WRITE):
        return madvise_populate(task, start, end, behavior == U.MADV_POPULATE_WRITE)
    unmapped_error = False
    pos = start
    vma = mm.mm_mt.find_vma(start)
    if vma is None:
        raise _err(U.ENOMEM, "madvise")
    while True:
        if vma is None:
            unmapped_error = True
            break
        if pos < vma.vm_start:
            unmapped_error = True
            pos = vma.vm_start
            if pos >= end:
                break
        tmp = min(vma.vm_end, end)
        vma = _madvise_vma(task, vma, pos, tmp, behavior)
        pos = tmp
        if pos >= end:
            break
        vma = mm.mm_mt.find_vma(pos)
    if unmapped_error:
        raise _err(U.ENOMEM, "madvise")
    return 0


def _madvise_vma(task, vma, start: int, end: int, behavior: int):
    mm = task.mm
    k = task.kernel
    flags = vma.vm_flags
    new = flags
    if (flags & VM_SEALED and behavior in _MADV_DISCARD and vma.vm_file is None
            and not flags & VM_WRITE):
        # can_madvise_modify (mseal): a sealed VMA refuses the discarding advices unless
        # the process could write the data anyway (writable) or it is a file's
        raise _err(U.EPERM, "madvise")
    if behavior == U.MADV_DONTNEED or behavior == U.MADV_DONTNEED_LOCKED:
        forbidden = VM_PFNMAP | VM_HUGETLB
        if behavior == U.MADV_DONTNEED:
            forbidden |= VM_LOCKED
        if flags & forbidden:
            raise _err(U.EINVAL, "madvise")
        zap_page_range(k, mm, vma, start, end)
        return vma
    if behavior == U.MADV_GUARD_INSTALL:
        _madvise_guard_install(task, vma, start, end)
        return vma
    if behavior == U.MADV_COLLAPSE:
        err = k.khugepaged.madvise_collapse(vma, start, end)  # synchronous (khugepaged.py)
        if err:
            raise _err(err, "madvise")
        task.cost += k.khugepaged.cost + k.khugepaged.iowait  # the caller copies and waits
        k.khugepaged.cost = k.khugepaged.iowait = 0.0
        return vma
    if behavior == U.MADV_GUARD_REMOVE:
        if flags & (VM_SPECIAL | VM_HUGETLB):
            raise _err(U.EINVAL, "madvise")
        pt = mm.pgtable
        ptes = pt.ptes
        for vpn in _vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            if ptes[vpn] & _PAGE_MARKER:
                pt.clear_pte(vpn)
        return vma
    if behavior == U.MADV_FREE:
        if flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB) or vma.vm_file is not None:
            raise _err(U.EINVAL, "madvise")
        _madvise_free(task, vma, start, end)
        return vma
    if behavior == U.MADV_WILLNEED:
        if vma.vm_file is not None and not vma.vm_file.inode.shmem:
            # madvise_willneed -> vfs_fadvise(POSIX_FADV_WILLNEED): read ahead, not waited for
            first = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
            force_page_cache_ra(k, vma.vm_file.inode, vma.vm_file.f_ra, first,
                                (end - start) >> PAGE_SHIFT)
        else:
            _madvise_willneed_swap(task, vma, start, end)
        return vma
    if behavior == U.MADV_REMOVE:
        _madvise_remove(task, vma, start, end)
        return vma
    if behavior in (U.MADV_COLD, U.MADV_PAGEOUT):
        if flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):
            raise _err(U.EINVAL, "madvise")  # can_madv_lru_vma
        hook = getattr(k, "madvise_pageout", None)
        if hook is not None:
            ranges = [(start, end)]
            if task.mm.pgtable.huge or (k.thp is not None and k.thp.folios):
                # a THP the range covers in part is split first; whole ones act as one
                ranges = k.thp.madvise_cold_pageout_ranges(task.mm, start, end)
            for lo, hi in ranges:
                hook(task, vma, lo, hi, behavior == U.MADV_PAGEOUT)
        return vma
    if behavior == U.MADV_NORMAL:
        new = flags & ~(VM_RAND_READ | VM_SEQ_READ)
    elif behavior == U.MADV_RANDOM:
        new = (flags & ~VM_SEQ_READ) | VM_RAND_READ
    elif behavior == U.MADV_SEQUENTIAL:
        new = (flags & ~VM_RAND_READ) | VM_SEQ_READ
    elif behavior == U.MADV_DONTFORK:
        new = flags | VM_DONTCOPY
    elif behavior == U.MADV_DOFORK:
        if flags & VM_IO:
            raise _err(U.EINVAL, "madvise")
        new = flags & ~VM_DONTCOPY
    elif behavior == U.MADV_WIPEONFORK:
        if vma.vm_file is not None or flags & VM_SHARED:
            raise _err(U.EINVAL, "madvise")
        new = flags | VM_WIPEONFORK
    elif behavior == U.MADV_KEEPONFORK:
        new = flags & ~VM_WIPEONFORK
    elif behavior == U.MADV_DONTDUMP:
        new = flags | VM_DONTDUMP
    elif behavior == U.MADV_DODUMP:
        new = flags & ~VM_DONTDUMP
    elif behavior == U.MADV_HUGEPAGE:
        new = (flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE
        kh = k.khugepaged
        if kh is not None and new != flags:
            # hugepage_madvise: khugepaged_enter_vma with the new flags
            vma.vm_flags = new
            kh.enter_vma(vma)
            vma.vm_flags = flags
    elif behavior == U.MADV_NOHUGEPAGE:
        new = (flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE
    elif behavior == U.MADV_MERGEABLE:
        if flags & (VM_MERGEABLE | VM_SHARED | VM_MAYSHARE | VM_PFNMAP | VM_IO | VM_DONTEXPAND
                    | VM_HUGETLB | VM_MIXEDMAP):
            return vma
        new = flags | VM_MERGEABLE
        mm.ksm_mergeable = True
    elif behavior == U.MADV_UNMERGEABLE:
        new = flags & ~VM_MERGEABLE
    if new == flags:
        return vma
    return vma_modify(mm, vma, start, end, new)


def _madvise_guard_install(task, vma, start: int, end: int) -> None:
    """madvise_guard_install (6.13; file mappings since 6.15): not on VM_SPECIAL, hugetlb
    or VM_LOCKED VMAs (EINVAL). The VMA gets VM_MAYBE_GUARD (6.18, without a split: it
    only says "may hold markers"); what is mapped in the range is zapped (pages and swap
    entries freed) and every PTE becomes a guard marker."""
    if vma.vm_flags & (VM_SPECIAL | VM_HUGETLB | VM_LOCKED):
        raise _err(U.EINVAL, "madvise")
    mm = task.mm
    vma.vm_flags |= VM_MAYBE_GUARD
    zap_page_range(task.kernel, mm, vma, start, end)
    pt = mm.pgtable
    ptes = pt.ptes
    for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
        if vpn not in ptes and not pt.set_pte_new(vpn, PTE_GUARD):
            raise _err(U.ENOMEM, "madvise")


def madvise_populate(task, start: int, end: int, write: bool) -> int:
    """MADV_POPULATE_READ / _WRITE (madvise_populate -> faultin_page_range, GUP with
    FOLL_MADV_POPULATE): fault in [start, end) as a read or a write would, VMA by VMA,
    whatever the VMA's lock state. No VMA at an address -> ENOMEM; a VMA whose rights do
    not allow the access (check_vma_flags: VM_IO/VM_PFNMAP, not VM_WRITE for a write, not
    VM_READ for a read) -> EINVAL; a fault that would signal (SIGBUS beyond EOF, SIGSEGV
    on a guard marker) -> EFAULT; out of memory -> ENOMEM. Pages done stay populated."""
    mm = task.mm
    ptes = mm.pgtable.ptes
    zero_pfn = task.kernel.zero_pfn
    pos = start
    while pos < end:
        vma = mm.mm_mt.lookup(pos)
        if vma is None:
            raise _err(U.ENOMEM, "madvise")
        flags = vma.vm_flags
        if flags & (VM_IO | VM_PFNMAP) or not flags & (VM_WRITE if write else VM_READ):
            raise _err(U.EINVAL, "madvise")
        stop = min(end, vma.vm_end)
        tries = 0
        while pos < stop:
            pte = ptes.get(pos >> PAGE_SHIFT, 0)
            # follow_page: present (and, for a write, writable and not the zero page)
            if not (pte & _PAGE_PRESENT and (not write or pte & _PAGE_RW
                                             and pte >> PAGE_SHIFT != zero_pfn)):
                tries += 1
                if tries > 4:
                    raise RuntimeError(f"madvise_populate: no progress at {pos:#x}")
                ret = handle_mm_fault(task, vma, pos, write)
                if task.fatal_signal_pending():
                    raise _err(U.EINTR, "madvise")
                if ret & VM_FAULT_OOM:
                    raise _err(U.ENOMEM, "madvise")
                if ret & VM_FAULT_ERROR:
                    raise _err(U.EFAULT, "madvise")
                continue  # look at the PTE again (a CoW may follow a read fault)
            pos += PAGE_SIZE
            tries = 0
    return 0


def _madvise_remove(task, vma, start: int, end: int) -> None:
    """madvise_remove: fallocate(PUNCH_HOLE | KEEP_SIZE) on the mapped file range. Not on a
    locked VMA or anonymous memory (EINVAL); the VMA must be a shared one that may write
    (EACCES: a private mapping, a file opened read-only); a file system without hole
    punching is EOPNOTSUPP (ext4, xfs, btrfs and tmpfs have it; hvsim's disk file system
    says so with `punch_hole`, True unless set). Every mapping of the range loses its PTEs
    of the file's pages (unmap_mapping_range without even_cows: private CoW copies stay),
    the pages leave the cache, and the range reads back as zeros; the size is kept."""
    k = task.kernel
    flags = vma.vm_flags
    if flags & VM_LOCKED or vma.vm_file is None:
        raise _err(U.EINVAL, "madvise")
    if (flags & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE):
        raise _err(U.EACCES, "madvise")
    inode = vma.vm_file.inode
    if not inode.shmem and not getattr(inode.fs, "punch_hole", True):
        raise _err(U.EOPNOTSUPP, "madvise")
    first = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
    last = first + ((end - start) >> PAGE_SHIFT)
    mem_map = k.mem_map
    for v in list(inode.mapping.i_mmap):
        a = max(v.vm_start, v.vm_start + ((first - v.vm_pgoff) << PAGE_SHIFT))
        b = min(v.vm_end, v.vm_start + ((last - v.vm_pgoff) << PAGE_SHIFT))
        if a >= b:
            continue
        if v.vm_flags & VM_SHARED:
            zap_page_range(k, v.vm_mm, v, a, b)
            continue
        ptes = v.vm_mm.pgtable.ptes
        for vpn in _vpns_in(ptes, a >> PAGE_SHIFT, b >> PAGE_SHIFT):
            pte = ptes[vpn]
            if (pte & PTE_PRESENT_MASK and pte >> PAGE_SHIFT != k.zero_pfn
                    and not mem_map[pte >> PAGE_SHIFT].flags & PG_anon):
                zap_page_range(k, v.vm_mm, v, vpn << PAGE_SHIFT, (vpn + 1) << PAGE_SHIFT)
    if inode.shmem and k.thp is not None:
        k.thp.shmem_undo_range(inode.mapping, first, last)  # huge folios: whole or split
    for idx in sorted(i for i in inode.mapping.pages if first <= i < last):
        delete_from_page_cache(k, inode.mapping.pages[idx])
    if not inode.shmem:
        for idx in range(first, min(last, inode.nr_index())):
            inode.disk[idx] = ZERO_PAGE  # the hole: blocks freed, reads as zeros


def _madvise_free(task, vma, start: int, end: int) -> None:
    """Lazy free (madvise_free_pte_range, 6.1): a swap PTE in the range is dropped with its
    slot (free_swap_and_cache: the data is not wanted); an exclusive anonymous page loses
    its swap copy (folio_free_swap; kept as is if a swap PTE still needs it), its PTE is
    made old and clean, and mark_page_lazyfree makes it clean and !swapbacked and moves it
    to the head of the inactive file list (lru_lazyfree_fn: lazily freed pages are
    reclaimed like clean cache, without swap); a later write (dirty PTE) keeps it."""
    k = task.kernel
    mm = task.mm
    ranges = [(start, end)]
    thp = getattr(k, "thp", None)
    if thp is not None and (mm.pgtable.huge or thp.folios):
        # madvise_free_huge_pmd / a PTE-mapped large folio: split first, or skipped
        ranges = thp.madvise_free_ranges(mm, start, end)
    for s, e in ranges:
        _madvise_free_ptes(k, mm, s, e)


def _madvise_free_ptes(k, mm, start: int, end: int) -> None:
    pt = mm.pgtable
    ptes = pt.ptes
    mem_map = k.mem_map
    zero_pfn = k.zero_pfn
    swap = getattr(k, "swap", None)
    lazyfree = getattr(k, "mark_page_lazyfree", None)
    for vpn in _vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT):
        pte = ptes[vpn]
        if pte & _PAGE_SWP and not pte & PTE_PRESENT_MASK:
            pt.clear_pte(vpn)
            mm.rss[MM_SWAPENTS] -= 1
            k.swap_free(pte >> PAGE_SHIFT)
            continue
        if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
            continue
        page = mem_map[pte >> PAGE_SHIFT]
        if not page.flags & PG_anon or page._mapcount != 0:
            continue
        if page.flags & PG_swapcache and (swap is None or not swap.try_to_free_swap(page)):
            continue
        new = pte & ~(_PAGE_DIRTY | _PAGE_ACCESSED)
        if new != pte:
            ptes[vpn] = new
            mm.pgtable.pte_changed(vpn)
        if page.flags & PG_swapbacked:
            if lazyfree is not None:
                lazyfree(page)
            else:  # no reclaim installed: no LRU to move it on
                page.flags &= ~(PG_swapbacked | PG_dirty)
                page_restate(k.vmstat, page)
                k.vmstat["pglazyfree"] += 1


__all__ = [
    "PAGE_ALIGN", "STACK_GUARD_GAP", "arch_task_size", "mmap_base_for", "do_mmap",
    "mmap_region", "do_munmap", "do_brk", "expand_stack", "do_mprotect", "do_mremap",
    "do_madvise", "get_unmapped_area", "mm_populate", "unmap_vmas",
]
