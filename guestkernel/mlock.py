"""mlock, munlock, mlock2, mlockall, munlockall (mm/mlock.c, 6.x).

Rules (linux-mm.md section 5): locking needs RLIMIT_MEMLOCK > 0 or CAP_IPC_LOCK (else
EPERM); locked_vm plus the new pages (less those already locked in the range) over the
limit without CAP_IPC_LOCK -> ENOMEM; a hole in the range -> ENOMEM, the VMAs before it
staying changed; then every page is populated (a writable private VMA gets real pages, not
the zero page) unless MLOCK_ONFAULT / MCL_ONFAULT. Locked pages carry PG_mlocked (counted
in nr_mlock): reclaim never takes them. mlockall(MCL_FUTURE) sets mm->def_flags so later
mmap/brk VMAs are locked and populated.
"""

from __future__ import annotations

from . import uapi as U
from .memory import VM_FAULT_OOM, mlock_present_pages
from .mmap import PAGE_ALIGN, PAGE_MASK, can_do_mlock, mm_populate
from .units import PAGE_SHIFT
from .vma import VM_DROPPABLE, VM_HUGETLB, VM_LOCKED, VM_LOCKED_MASK, VM_LOCKONFAULT, VM_SPECIAL, vma_modify


def mlock_fixup(task, vma, start: int, end: int, newflags: int):
    """Apply VM_LOCKED/VM_LOCKONFAULT `newflags` to [start, end) of `vma`."""
    mm = task.mm
    oldflags = vma.vm_flags
    if newflags == oldflags or oldflags & (VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE):
        # "don't set VM_LOCKED or VM_LOCKONFAULT and don't count": a droppable VMA (6.11)
        # is populated by mlock but never locked
        return vma
    vma = vma_modify(mm, vma, start, end, newflags)
    nr = (end - start) >> PAGE_SHIFT
    if not newflags & VM_LOCKED:
        nr = -nr
    elif oldflags & VM_LOCKED:
        nr = 0
    mm.locked_vm += nr
    if newflags & VM_LOCKED and not oldflags & VM_LOCKED:
        mlock_present_pages(task.kernel, mm, vma, start, end, True)
    elif oldflags & VM_LOCKED and not newflags & VM_LOCKED:
        mlock_present_pages(task.kernel, mm, vma, start, end, False)
    return vma


def apply_vma_lock_flags(task, start: int, length: int, flags: int) -> None:
    mm = task.mm
    end = start + length
    if end < start:
        raise U.err(U.EINVAL, "mlock")
    if end == start:
        return
    nstart = start
    vma = mm.mm_mt.lookup(start)
    if vma is None:
        raise U.err(U.ENOMEM, "mlock")
    while nstart < end:
        vma = mm.mm_mt.find_vma(nstart)
        if vma is None or vma.vm_start > nstart:
            raise U.err(U.ENOMEM, "mlock")
        tmp = min(vma.vm_end, end)
        newflags = (vma.vm_flags & ~VM_LOCKED_MASK) | flags
        mlock_fixup(task, vma, nstart, tmp, newflags)
        nstart = tmp


def count_mm_mlocked_page_nr(mm, start: int, length: int) -> int:
    end = start + length if length else mm.task_size
    n = 0
    for vma in mm.mm_mt.intersecting(start, end):
        if vma.vm_flags & VM_LOCKED:
            n += (min(end, vma.vm_end) - max(start, vma.vm_start)) >> PAGE_SHIFT
    return n


def _lock_limit(task) -> int:
    lim = task.rlimit(U.RLIMIT_MEMLOCK)
    return (1 << 64) if lim == U.RLIM_INFINITY else lim >> PAGE_SHIFT


def do_mlock(task, start: int, length: int, flags: int) -> int:
    mm = task.mm
    if not can_do_mlock(task):
        raise U.err(U.EPERM, "mlock")
    length = PAGE_ALIGN(length + (start & ~PAGE_MASK))
    start &= PAGE_MASK
    lock_limit = _lock_limit(task)
    locked = (length >> PAGE_SHIFT) + mm.locked_vm
    if locked > lock_limit and not task.capable(U.CAP_IPC_LOCK):
        locked -= count_mm_mlocked_page_nr(mm, start, length)
        if locked > lock_limit:
            raise U.err(U.ENOMEM, "mlock")
    apply_vma_lock_flags(task, start, length, flags)
    if flags & VM_LOCKONFAULT or not length:
        return 0
    ret = mm_populate(task, start, length, ignore_errors=False)
    if ret:
        # __mlock_posix_error_return: ENOMEM from populate is EAGAIN, EFAULT (a fault
        # that would signal: SIGBUS beyond EOF, SIGSEGV on a guard marker) is ENOMEM
        raise U.err(U.EAGAIN if ret & VM_FAULT_OOM else U.ENOMEM, "mlock")
    return 0


def sys_mlock(task, start: int, length: int) -> int:
    return do_mlock(task, start, length, VM_LOCKED)


def sys_mlock2(task, start: int, length: int, flags: int) -> int:
    if flags & ~U.MLOCK_ONFAULT:
        raise U.err(U.EINVAL, "mlock2")
    vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & U.MLOCK_ONFAULT else 0)
    return do_mlock(task, start, length, vm_flags)


def sys_munlock(task, start: int, length: int) -> int:
    length = PAGE_ALIGN(length + (start & ~PAGE_MASK))
    start &= PAGE_MASK
    apply_vma_lock_flags(task, start, length, 0)
    return 0


def _for_each_vma_fixup(task, make_flags) -> None:
    mm = task.mm
    pos = 0
    while True:
        vma = mm.mm_mt.find_vma(pos)
        if vma is None:
            return
        v = mlock_fixup(task, vma, vma.vm_start, vma.vm_end, make_flags(vma.vm_flags))
        pos = max(v.vm_end, vma.vm_end if vma.vm_mm is mm else 0)


def sys_mlockall(task, flags: int) -> int:
    mm = task.mm
    if (not flags or flags & ~(U.MCL_CURRENT | U.MCL_FUTURE | U.MCL_ONFAULT)
            or flags == U.MCL_ONFAULT):
        raise U.err(U.EINVAL, "mlockall")
    if not can_do_mlock(task):
        raise U.err(U.EPERM, "mlockall")
    if (flags & U.MCL_CURRENT and mm.total_vm > _lock_limit(task)
            and not task.capable(U.CAP_IPC_LOCK)):
        raise U.err(U.ENOMEM, "mlockall")
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & U.MCL_FUTURE:
        mm.def_flags |= VM_LOCKED
        if flags & U.MCL_ONFAULT:
            mm.def_flags |= VM_LOCKONFAULT
    if not flags & U.MCL_CURRENT:
        return 0
    to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & U.MCL_ONFAULT else 0)
    _for_each_vma_fixup(task, lambda f: (f & ~VM_LOCKED_MASK) | to_add)
    mm_populate(task, 0, mm.task_size)
    return 0


def sys_munlockall(task) -> int:
    task.mm.def_flags &= ~VM_LOCKED_MASK
    _for_each_vma_fixup(task, lambda f: f & ~VM_LOCKED_MASK)
    return 0
