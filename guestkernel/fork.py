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

import xxhash

from . import uapi as U
from .fault import copy_to_user
from .filemap import File, allow_write_access, deny_write_access
from .memory import copy_page_range, update_hiwater_rss
from .mm_types import MMStruct
from .mmap import PAGE_ALIGN, map_vdso, mmap_base_for, unmap_vmas, vm_enough_memory
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import (
    VM_ACCOUNT,
    VM_DATA_DEFAULT_FLAGS,
    VM_DONTCOPY,
    VM_EXEC,
    VM_LOCKED_MASK,
    VM_MAYBE_GUARD,
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
    old = parent.mm
    k = parent.kernel
    mm = MMStruct(k, old.task_size, owner=child)
    for name in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
                 "start_stack", "arg_start", "arg_end", "env_start", "env_end", "mmap_base",
                 "legacy_mmap", "exe_file", "vdso"):
        setattr(mm, name, getattr(old, name))
    if mm.exe_file is not None:
        deny_write_access(mm.exe_file.inode)  # dup_mm_exe_file (the parent's denies already)
    mm.def_flags = 0  # mlockall(MCL_FUTURE) is not inherited
    mm.thp_disabled = old.thp_disabled  # MMF_INIT_MASK: MMF_DISABLE_THP is inherited
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
            # vma_needs_copy: anonymous pages, or PTEs a fault cannot rebuild
            # (VM_COPY_ON_FORK: PFN maps and, 6.18, guard markers)
            if vma.anon_vma is not None or vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP
                                                            | VM_MAYBE_GUARD):
                if not copy_page_range(k, mm, old, tmp, vma):
                    raise U.err(U.ENOMEM, "fork")
    except OSError:
        exit_mmap(child)
        raise
    kh = k.khugepaged
    if kh is not None:
        kh.fork(mm, old)  # khugepaged_fork
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
    kh = task.kernel.khugepaged
    if kh is not None:
        kh.exit(mm)  # khugepaged_exit
        task.kernel.thp.mm_exit(mm)  # mm_put_huge_zero_page
    unmap_vmas(task, list(mm.mm_mt.vmas))
    mm.pgtable.free_all()
    set_mm_exe_file(mm, None)  # __mmput
    mm.free()
    task.mm = None


def do_open_execat(inode, what: str = "execve") -> None:
    """do_open_execat (fs/exec.c, 6.1) takes deny_write_access on the file it opens for
    exec (the executable, and load_elf_binary's interpreter through open_exec), and the
    exec's end gives it back (free_bprm; the interpreter's allow_write_access): a file
    open for writing (i_writecount > 0) fails the exec with ETXTBSY before anything
    changes. The running image's own denial is the mm's (set_mm_exe_file)."""
    if not deny_write_access(inode):
        raise U.err(U.ETXTBSY, what)
    allow_write_access(inode)


def set_mm_exe_file(mm, file) -> None:
    """set_mm_exe_file (kernel/fork.c, 6.1): the mm's executable denies writes to its
    inode for as long as it is the exe_file (deny_write_access: an open for writing
    fails with ETXTBSY; it cannot fail here, do_open_execat checked), the old one's
    denial goes (allow_write_access); fork's copy denies again (dup_mm_exe_file), the
    mm's end (__mmput: set_mm_exe_file(mm, NULL)) allows. Shared libraries and other
    PROT_EXEC mappings deny nothing (MAP_DENYWRITE is ignored since 5.15)."""
    old = mm.exe_file
    if file is not None:
        deny_write_access(file.inode)
    mm.exe_file = file
    if old is not None:
        allow_write_access(old.inode)


# --- the argument strings (fs/exec.c) -----------------------------------------------------
ARG_MAX = 32 * PAGE_SIZE  # bytes of argument strings allowed even with a small stack
MAX_ARG_STRLEN = 32 * PAGE_SIZE  # bytes of one string, its NUL included
_STK_LIM = 8 << 20  # bytes
ELF_PLATFORM = {"x86_64": b"x86_64\0", "i386": b"i686\0"}
# create_elf_tables' auxiliary vector (6.x, CONFIG_RSEQ): ARCH_DLINFO (x86_64:
# AT_SYSINFO_EHDR, AT_MINSIGSTKSZ; i386 adds AT_SYSINFO), AT_HWCAP ... AT_RANDOM (15),
# AT_HWCAP2, AT_EXECFN, AT_PLATFORM, AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN, then AT_NULL
AT_NULL, AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY = 0, 3, 4, 5, 6, 7, 8, 9
AT_UID, AT_EUID, AT_GID, AT_EGID, AT_PLATFORM, AT_HWCAP, AT_CLKTCK = 11, 12, 13, 14, 15, 16, 17
AT_SECURE, AT_RANDOM, AT_HWCAP2, AT_RSEQ_FEATURE_SIZE, AT_RSEQ_ALIGN = 23, 25, 26, 27, 28
AT_EXECFN, AT_SYSINFO, AT_SYSINFO_EHDR, AT_MINSIGSTKSZ = 31, 32, 33, 51


def _cstr(s) -> bytes:
    return (s.encode() if isinstance(s, str) else bytes(s)) + b"\0"


class ExecArgs:
    """linux_binprm's argument strings: the file name, envp and argv as NUL-terminated
    bytes, checked as do_execveat_common does before the old mm is touched.

    bprm_stack_limits: the strings and the argv/envp pointers may take at most
    max(min(_STK_LIM / 4 * 3, RLIMIT_STACK / 4), ARG_MAX) bytes, each string at most
    MAX_ARG_STRLEN; else E2BIG. An empty argv gets one empty string (argc 0 -> 1)."""

    def __init__(self, task, path: str, argv, envp) -> None:
        ptr = 8 if task.kernel.config.arch == "x86_64" else 4
        self.ptr = ptr
        argv = [_cstr(a) for a in (argv or ())]
        envp = [_cstr(e) for e in (envp or ())]
        limit = max(min(_STK_LIM // 4 * 3, task.rlimit(U.RLIMIT_STACK) // 4), ARG_MAX)
        ptr_size = (max(len(argv), 1) + len(envp)) * ptr
        if limit <= ptr_size:
            raise U.err(U.E2BIG, "execve")
        limit -= ptr_size
        used = 0
        for s in [_cstr(path)] + envp[::-1] + argv[::-1] + ([b"\0"] if not argv else []):
            if len(s) > MAX_ARG_STRLEN:
                raise U.err(U.E2BIG, "execve")
            used += len(s)
            if used > limit:  # bprm->p < bprm->argmin
                raise U.err(U.E2BIG, "execve")
        self.filename = _cstr(path)
        self.argv = argv or [b"\0"]
        self.envp = envp
        self.strings = used  # bytes, NULs included

    def string_pages(self) -> int:
        """Pages copy_strings touched below STACK_TOP (at least the first one)."""
        top_used = self.ptr + self.strings
        return max(1, (top_used + PAGE_SIZE - 1) >> PAGE_SHIFT)


def create_elf_tables(task, mm, args: ExecArgs, top: int, path: str) -> tuple[int, bytes]:
    """The initial stack from its lowest byte up to `top`: argc, the argv and envp
    pointer arrays, the auxiliary vector, AT_RANDOM's 16 bytes, the platform string,
    then the strings (argv, envp, file name) ending one pointer below the top (fs/exec.c
    copy_strings + binfmt_elf.c create_elf_tables, no randomisation). Sets arg_start,
    arg_end, env_start, env_end and start_stack. Returns (start_stack, the bytes)."""
    ptr = args.ptr
    word = 8 if ptr == 8 else 4
    arch = task.kernel.config.arch
    p0 = top - ptr
    strings = b"".join(args.argv) + b"".join(args.envp) + args.filename
    arg_start = p0 - len(strings)
    mm.arg_start = arg_start
    mm.arg_end = mm.env_start = arg_start + sum(len(a) for a in args.argv)
    mm.env_end = mm.env_start + sum(len(e) for e in args.envp)
    execfn = mm.env_end
    p = arg_start & ~0xF  # arch_align_stack, no random offset
    platform = ELF_PLATFORM[arch]
    u_platform = p - len(platform)
    u_rand = u_platform - 16
    rand = xxhash.xxh128_digest(f"AT_RANDOM/{task.pid}/{path}".encode())
    base = ELF_ET_EXEC_BASE[arch]
    # values: a plausible static ELF (10 program headers, entry one page in); AT_SYSINFO
    # (i386) is the vDSO's __kernel_vsyscall, at an offset hvsim does not model
    auxv = [(AT_SYSINFO_EHDR, mm.vdso), (AT_MINSIGSTKSZ, 3632 if ptr == 8 else 2128)]
    if arch == "i386":
        auxv.insert(0, (AT_SYSINFO, mm.vdso))
    auxv += [(AT_HWCAP, 0x178BFBFF), (AT_PAGESZ, PAGE_SIZE), (AT_CLKTCK, 100),
             (AT_PHDR, base + (64 if ptr == 8 else 52)), (AT_PHENT, 56 if ptr == 8 else 32),
             (AT_PHNUM, 10), (AT_BASE, 0), (AT_FLAGS, 0), (AT_ENTRY, base + 0x1000),
             (AT_UID, task.uid), (AT_EUID, task.uid), (AT_GID, task.uid), (AT_EGID, task.uid),
             (AT_SECURE, 0), (AT_RANDOM, u_rand), (AT_HWCAP2, 2), (AT_EXECFN, execfn),
             (AT_PLATFORM, u_platform), (AT_RSEQ_FEATURE_SIZE, 28), (AT_RSEQ_ALIGN, 32),
             (AT_NULL, 0)]
    ei_words = 2 * len(auxv)
    sp = u_rand - ei_words * ptr
    argc, envc = len(args.argv), len(args.envp)
    items = (argc + 1) + (envc + 1) + 1
    sp = (sp - items * ptr) & ~0xF  # STACK_ROUND
    words = [argc]
    a = arg_start
    for s in args.argv:
        words.append(a)
        a += len(s)
    words.append(0)
    for s in args.envp:
        words.append(a)
        a += len(s)
    words.append(0)
    for t, v in auxv:
        words += [t, v]
    tables = b"".join(w.to_bytes(word, "little") for w in words)
    image = bytearray(top - sp)
    image[0:len(tables)] = tables
    image[u_rand - sp:u_rand - sp + 16] = rand
    image[u_platform - sp:u_platform - sp + len(platform)] = platform
    image[arg_start - sp:p0 - sp] = strings
    mm.start_stack = sp
    return sp, bytes(image)


def load_static_binary(task, path: str, text: int = DEFAULT_TEXT, data: int = DEFAULT_DATA,
                       bss: int = DEFAULT_BSS, start_brk: int | None = None,
                       stack_top: int | None = None, mmap_base: int | None = None,
                       argv=None, envp=None) -> None:
    """Give `task` a fresh mm with the executable at `path` mapped (execve's second half).
    Sizes in bytes; the keyword addresses override the computed layout (for trace replay).
    `argv`, `envp`: sequences of str or bytes, copied onto the new stack (E2BIG, before
    anything changes, if they do not fit the limit)."""
    k = task.kernel
    arch = k.config.arch
    fs = k.fs
    dcache = getattr(k, "dcache", None)
    if dcache is not None:
        dcache.dput(dcache.lookup(path))  # the path walk caches its dentries
    inode = fs.lookup(path)
    if inode is None:
        raise U.err(U.ENOENT, "execve")
    args = ExecArgs(task, path, argv, envp)
    do_open_execat(inode)
    if inode.size == 0:
        inode.size = PAGE_ALIGN(text) + data
    old = task.mm
    from .mmap import arch_task_size

    mm = MMStruct(k, arch_task_size(arch), owner=task)
    task.mm = mm
    try:
        _lay_out(task, mm, inode, text, data, bss, start_brk, stack_top, mmap_base, args, path)
    except OSError:
        exit_mmap(task)  # the half-built mm goes; the old one stays
        task.mm = old
        raise
    if old is not None:
        task.mm = old
        exit_mmap(task)
        task.mm = mm
    task.comm = path.rsplit("/", 1)[-1][:15]


def _may_expand(task, flags: int, nbytes: int) -> None:
    """elf_map / vm_brk_flags / setup_arg_pages go through may_expand_vm: the image's
    mappings count in total_vm against RLIMIT_AS, its data and bss in data_vm against
    RLIMIT_DATA (the new mm's; a failure leaves the old image, see load_static_binary)."""
    from .mmap import may_expand_vm

    if not may_expand_vm(task, flags, nbytes >> PAGE_SHIFT):
        raise U.err(U.ENOMEM, "execve")


def _charge(task, pages: int) -> None:
    if not task.kernel.vm_enough_memory(pages, task.capable(U.CAP_SYS_ADMIN), task.mm.total_vm):
        raise U.err(U.ENOMEM, "execve")


def _lay_out(task, mm, inode, text: int, data: int, bss: int, start_brk, stack_top,
             mmap_base, args: ExecArgs, path: str) -> None:
    """Map text, data, bss and the stack of a static executable into the new mm."""
    k = task.kernel
    arch = k.config.arch
    exe = File(inode, readable=True, writable=False)
    set_mm_exe_file(mm, exe)
    base = ELF_ET_EXEC_BASE[arch]
    text_len = PAGE_ALIGN(text)
    data_len = PAGE_ALIGN(data)
    text_flags = VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    _may_expand(task, text_flags, text_len)
    vma = vm_area_alloc(mm, base, base + text_len, text_flags, 0, exe)
    vma_link(mm, vma)
    vma_account(mm, vma, 1)
    mm.start_code, mm.end_code = base, base + text
    dstart = base + text_len
    if data_len:
        # a private writable file mapping: charged (VM_ACCOUNT)
        dflags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC | VM_ACCOUNT
        _may_expand(task, dflags, data_len)
        _charge(task, data_len >> PAGE_SHIFT)
        vma = vm_area_alloc(mm, dstart, dstart + data_len, dflags, text_len >> PAGE_SHIFT, exe)
        vma_link(mm, vma)
        vma_account(mm, vma, 1)
    mm.start_data, mm.end_data = dstart, dstart + data
    bss_start = dstart + data_len
    bss_len = PAGE_ALIGN(bss)
    if bss_len:
        # vm_brk_flags: anonymous, brk-like flags, charged
        _may_expand(task, VM_DATA_DEFAULT_FLAGS, bss_len)
        _charge(task, bss_len >> PAGE_SHIFT)
        vma = vm_area_alloc(mm, bss_start, bss_start + bss_len,
                            VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT, bss_start >> PAGE_SHIFT)
        vma_link(mm, vma)
        vma_account(mm, vma, 1)
    # randomize_va_space=2 leaves a page between bss and the brk (random offset 0 here)
    brk = bss_start + bss_len + PAGE_SIZE if start_brk is None else start_brk
    mm.start_brk = mm.brk = brk
    # the stack: the pages copy_strings filled at the top, pre-expanded by 128 KiB
    # (setup_arg_pages: min(RLIMIT_STACK, their size + 128 KiB), never below them)
    top = mm.task_size if stack_top is None else stack_top
    rlim = task.rlimit(U.RLIMIT_STACK)
    arg_size = args.string_pages() << PAGE_SHIFT
    size = max(arg_size, min(arg_size + STACK_EXPAND, rlim & ~(PAGE_SIZE - 1)))
    sstart = top - size
    _may_expand(task, VM_STACK_FLAGS, size)  # (acct_stack_growth: RLIMIT_AS only)
    _charge(task, size >> PAGE_SHIFT)
    vma = vm_area_alloc(mm, sstart, top, VM_STACK_FLAGS, sstart >> PAGE_SHIFT)
    vma_link(mm, vma)
    vma_account(mm, vma, 1)
    mm.start_stack = top - arg_size
    mm.legacy_mmap = rlim == U.RLIM_INFINITY and mmap_base is None
    if mm.legacy_mmap:
        from .mmap import task_unmapped_base

        mm.mmap_base = task_unmapped_base(mm.task_size)
    else:
        mm.mmap_base = mmap_base_for(mm.task_size, rlim) if mmap_base is None else mmap_base
    # ARCH_SETUP_ADDITIONAL_PAGES, after the stack, the image and the brk
    map_vdso(task)
    # the strings (copy_strings, before the old mm went) and create_elf_tables' pointer
    # arrays and auxv below them, written through the kernel's user accessor; the
    # tables may reach below the pre-expanded stack, which then grows as on a fault
    sp, image = create_elf_tables(task, mm, args, top, path)
    if sp < vma.vm_start:
        from .mmap import expand_stack

        err = expand_stack(task, vma, sp)
        if err:
            raise U.err(err, "execve")
    copy_to_user(task, sp, image)
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
