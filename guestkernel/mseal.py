"""mseal (mm/mseal.c, Linux 6.10; 6.15's per-VMA checks).

`mseal(start, len, flags)` marks every VMA of a fully mapped range VM_SEALED (split at
the range's edges, merged where the rules allow; `sl` in smaps VmFlags). A sealed VMA
then refuses, with EPERM, what would change or remove it, each call deciding per VMA as
it walks (so VMAs before the sealed one in a range may already be changed):

- munmap, MAP_FIXED over it, a brk shrink over it, mremap's target
  (vms_gather_munmap_vmas: before the first split if the first VMA is sealed);
- mprotect (mprotect_fixup, even to the same rights);
- mremap of it (check_prep_vma), also a shrink or a move;
- the discarding madvise advices (MADV_DONTNEED(_LOCKED), MADV_FREE, MADV_REMOVE,
  MADV_DONTFORK, MADV_WIPEONFORK, MADV_GUARD_INSTALL) on anonymous memory the process
  cannot write (can_madvise_modify).

A seal is never removed; fork copies it with the VMA; execve starts a new mm.
Errors of mseal itself: flags other than 0 or an unaligned start -> EINVAL; a length
that wraps -> EINVAL; an unmapped page in the range -> ENOMEM, before any change.
"""

from __future__ import annotations

from . import uapi as U
from .units import PAGE_SIZE
from .vma import VM_SEALED, vma_modify

PAGE_MASK = ~(PAGE_SIZE - 1)


def range_contains_unmapped(mm, start: int, end: int) -> bool:
    prev_end = start
    for vma in mm.mm_mt.intersecting(start, end):
        if vma.vm_start > prev_end:
            return True
        prev_end = vma.vm_end
    return prev_end < end


def do_mseal(task, start: int, len_in: int, flags: int) -> int:
    if flags:
        raise U.err(U.EINVAL, "mseal")
    if start & (PAGE_SIZE - 1):
        raise U.err(U.EINVAL, "mseal")
    length = (len_in + PAGE_SIZE - 1) & PAGE_MASK
    if len_in and not length or length >= 1 << 64:
        raise U.err(U.EINVAL, "mseal")
    end = start + length
    if end >= 1 << 64:
        raise U.err(U.EINVAL, "mseal")
    if end == start:
        return 0
    mm = task.mm
    if range_contains_unmapped(mm, start, end):
        raise U.err(U.ENOMEM, "mseal")
    pos = start
    while pos < end:
        vma = mm.mm_mt.find_vma(pos)
        stop = min(vma.vm_end, end)
        if not vma.vm_flags & VM_SEALED:
            vma = vma_modify(mm, vma, pos, stop, vma.vm_flags | VM_SEALED)
        pos = stop
    return 0
