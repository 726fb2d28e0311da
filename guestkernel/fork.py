"""fork (copy-on-write), execve of a static binary, and exit (kernel/fork.c dup_mm,
fs/exec.c + fs/binfmt_elf.c, mm/mmap.c exit_mmap).

fork (linux-mm.md section 5): VM_DONTCOPY VMAs are skipped; VM_ACCOUNT VMAs are charged
again (mode 2 can refuse: ENOMEM); VM_LOCKED/VM_LOCKONFAULT are dropped in the child and
mm->def_flags (MCL_FUTURE) is not inherited; the child's VMAs are chained to the parent's
anon_vmas plus a new one of their own (anon_vma_fork); PTEs are copied only for VMAs with
anonymous pages (file-only VMAs are re-faulted by the child), and every writable PTE of a
private (CoW) mapping is write-protected in BOTH parent and child. VM_WIPEONFORK VMAs
start empty in the child.

exec: a new mm replaces the old one. A static ELF executable is laid out as Linux lays it
out with randomize_va_space=2 but zero random offsets: text r-xp and data rw-p mapped
from the file at ELF_ET_EXEC base (0x400000, i386 0x08048000), bss anonymous after data,
the brk one page above bss, the stack VMA ending at STACK_TOP pre-expanded by 128 KiB
(132 KiB in all with the argument page, which is populated), and mmap_base below the
stack gap. Last, as Linux 6.18's arch_setup_additional_pages does, the vDSO: [vvar] (4
pages), [vvar_vclock] (2) and [vdso] (2 pages of text) in one free area found top-down
below mmap_base (see mmap.map_vdso).
"""

from __future__ import annotations

from . import uapi as U
from .filemap import File
from .memory import copy_page_range, populate_vma_range, update_hiwater_rss
from .mmap import PAGE_ALIGN, map_vdso, mmap_base_for, unmap_vmas, vm_enough_memory
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import (
    VM_ACCOUNT,
    VM_DATA_DEFAULT_FLAGS,
    VM_DONTCOPY,
    VM_EXEC,
    VM_LOCKED_MASK,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYWRITE,
    VM_MIXEDMAP,
    VM_PFNMAP,
    VM_READ,
    VM_STACK_FLAGS,
    VM_WIPEONFORK,
    VM_WRITE,
    AnonVMA,
    vm_area_alloc,
    vm_area_dup,
    vma_account,
    vma_link,
)

ELF_ET_EXEC_BASE = {"x86_64": 0x400000, "i386": 0x08048000}
STACK_EXPAND = 128 << 10  # bytes the exec'd stack is pre-expanded by (setup_arg_pages)
DEFAULT_TEXT = 512 << 10  # bytes
DEFAULT_DATA = 16 << 10
DEFAULT_BSS = 32 << 10


def dup_mm(parent, child):
    """Copy the parent's address space for `child` (copy-on-write). Raises OSError(ENOMEM)."""
    from .task import MMStruct

    old = parent.mm
    k = parent.kernel
    mm = MMStruct(k, old.task_size, owner=child)
    for name in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                 "start_stack", "arg_start", "mmap_base", "legacy_mmap", "exe_file", "vdso"):
        setattr(mm, name, getattr(old, name))
    mm.def_flags = 0  # mlockall(MCL_FUTURE) is not inherited
    child.mm = mm
    try:
        for vma in list(old.mm_mt.vmas):
            if vma.vm_flags & VM_DONTCOPY:
                continue
            if vma.vm_flags & VM_ACCOUNT and not vm_enough_memory(parent, vma.vma_pages()):
                raise U.err(U.ENOMEM, "fork")
            tmp = vm_area_dup(vma, mm)
            tmp.vm_flags &= ~VM_LOCKED_MASK
            if vma.vm_flags & VM_WIPEONFORK:
                tmp.anon_vma = None
                tmp.anon_vma_chain = []
            elif vma.anon_vma is not None:
                av = AnonVMA(parent=vma.anon_vma)  # anon_vma_fork
                tmp.anon_vma = av
                tmp.anon_vma_chain.append(av)
            vma_link(mm, tmp)
            vma_account(mm, tmp, 1)
            if vma.vm_flags & VM_WIPEONFORK:
                continue
            if vma.anon_vma is not None or vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP):
                if not copy_page_range(k, mm, old, tmp, vma):
                    raise U.err(U.ENOMEM, "fork")
    except OSError:
        exit_mmap(child)
        raise
    r = mm.rss
    mm.hiwater_rss = r[0] + r[1] + r[3]
    mm.hiwater_vm = mm.total_vm
    return mm


def exit_mmap(task) -> None:
    """Unmap everything, return the commit charge, free the page tables and the mm."""
    mm = task.mm
    if mm is None:
        return
    update_hiwater_rss(mm)
    unmap_vmas(task, list(mm.mm_mt.vmas))
    mm.pgtable.free_all()
    mm.free()
    task.mm = None


def load_static_binary(task, path: str, text: int = DEFAULT_TEXT, data: int = DEFAULT_DATA,
                       bss: int = DEFAULT_BSS, start_brk: int | None = None,
                       stack_top: int | None = None, mmap_base: int | None = None) -> None:
    """Give `task` a fresh mm with the executable at `path` mapped (execve's second half).
    Sizes in bytes; the keyword addresses override the computed layout (for trace replay)."""
    from .task import MMStruct

    k = task.kernel
    arch = k.config.arch
    fs = k.fs
    inode = fs.lookup(path)
    if inode is None:
        raise U.err(U.ENOENT, "execve")
    if inode.size == 0:
        inode.size = PAGE_ALIGN(text) + data
    old = task.mm
    from .mmap import arch_task_size

    mm = MMStruct(k, arch_task_size(arch), owner=task)
    task.mm = mm
    try:
        _lay_out(task, mm, inode, text, data, bss, start_brk, stack_top, mmap_base)
    except OSError:
        exit_mmap(task)  # the half-built mm goes; the old one stays
        task.mm = old
        raise
    if old is not None:
        task.mm = old
        exit_mmap(task)
        task.mm = mm
    task.comm = path.rsplit("/", 1)[-1][:15]


def _charge(task, pages: int) -> None:
    if not task.kernel.vm_enough_memory(pages, task.capable(U.CAP_SYS_ADMIN), task.mm.total_vm):
        raise U.err(U.ENOMEM, "execve")


def _lay_out(task, mm, inode, text: int, data: int, bss: int, start_brk, stack_top,
             mmap_base) -> None:
    """Map text, data, bss and the stack of a static executable into the new mm."""
    k = task.kernel
    arch = k.config.arch
    exe = File(inode, readable=True, writable=False)
    mm.exe_file = exe
    base = ELF_ET_EXEC_BASE[arch]
    text_len = PAGE_ALIGN(text)
    data_len = PAGE_ALIGN(data)
    text_flags = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    vma = vm_area_alloc(mm, base, base + text_len, text_flags, 0, exe)
    vma_link(mm, vma)
    vma_account(mm, vma, 1)
    mm.start_code, mm.end_code = base, base + text
    dstart = base + text_len
    if data_len:
        # a private writable file mapping: charged (VM_ACCOUNT)
        dflags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
        _charge(task, data_len >> PAGE_SHIFT)
        vma = vm_area_alloc(mm, dstart, dstart + data_len, dflags, text_len >> PAGE_SHIFT, exe)
        vma_link(mm, vma)
        vma_account(mm, vma, 1)
    mm.start_data, mm.end_data = dstart, dstart + data
    bss_start = dstart + data_len
    bss_len = PAGE_ALIGN(bss)
    if bss_len:
        # vm_brk_flags: anonymous, brk-like flags, charged
        _charge(task, bss_len >> PAGE_SHIFT)
        vma = vm_area_alloc(mm, bss_start, bss_start + bss_len,
                            VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT, bss_start >> PAGE_SHIFT)
        vma_link(mm, vma)
        vma_account(mm, vma, 1)
    # randomize_va_space=2 leaves a page between bss and the brk (random offset 0 here)
    brk = bss_start + bss_len + PAGE_SIZE if start_brk is None else start_brk
    mm.start_brk = mm.brk = brk
    # the stack: one argument page at the top, pre-expanded by 128 KiB (setup_arg_pages),
    # at most RLIMIT_STACK
    top = mm.task_size if stack_top is None else stack_top
    rlim = task.rlimit(U.RLIMIT_STACK)
    size = min(PAGE_SIZE + STACK_EXPAND, rlim & ~(PAGE_SIZE - 1))
    size = max(size, PAGE_SIZE)
    sstart = top - size
    _charge(task, size >> PAGE_SHIFT)
    vma = vm_area_alloc(mm, sstart, top, VM_STACK_FLAGS, sstart >> PAGE_SHIFT)
    vma_link(mm, vma)
    vma_account(mm, vma, 1)
    mm.start_stack = top - 0x100
    mm.arg_start = top - 0x80
    mm.legacy_mmap = rlim == U.RLIM_INFINITY and mmap_base is None
    if mm.legacy_mmap:
        from .mmap import task_unmapped_base

        mm.mmap_base = task_unmapped_base(mm.task_size)
    else:
        mm.mmap_base = mmap_base_for(mm.task_size, rlim) if mmap_base is None else mmap_base
    # copy_strings: argv and envp are written into the top page
    populate_vma_range(task, vma, top - PAGE_SIZE, top)
    # ARCH_SETUP_ADDITIONAL_PAGES, after the stack, the image and the brk
    map_vdso(task)
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
