"""execve of a real ELF executable and its interpreter (fs/binfmt_elf.c, Linux 6.18).

The caller gives the program headers (`parse_elf` reads them from the file's bytes: the
guest's file system holds sizes, not ELF contents). `load_elf_binary` then lays the new
mm out in load_elf_binary's order:

1. setup_new_exec: mmap_base below the stack gap (no randomisation: mmap_base_for);
2. setup_arg_pages: the stack VMA at STACK_TOP (TASK_SIZE), the argument pages plus
   128 KiB;
3. the executable's PT_LOAD segments (elf_load -> elf_map): the first one maps the
   whole span (total_mapping_size) and gives back what is past its own end, the others
   go MAP_FIXED over it; a segment whose p_memsz exceeds p_filesz gets anonymous bss
   pages after its last file page (vm_brk_flags). An ET_DYN executable with an
   interpreter (PIE) is placed at ELF_ET_DYN_BASE (2/3 of the 47-bit window, page
   aligned, or the executable's largest p_align) minus its first p_vaddr; ET_EXEC at its
   own addresses;
4. the interpreter (load_elf_interp): the same, its first segment placed where
   get_unmapped_area puts a mapping of its total size (top-down below mmap_base);
5. the vDSO ([vvar], [vvar_vclock], [vdso]) top-down below that (map_vdso);
6. start_brk = brk = the page after the executable's highest p_vaddr + p_memsz.

`load_bias` / `interp_bias` override the placement of steps 3 and 4 (a trace recorded
with ASLR shows where the real kernel put them); `start_brk` the heap's start (ASLR
randomises it too). Addresses and sizes in bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from . import uapi as U
from .units import PAGE_SHIFT, PAGE_SIZE

PT_LOAD = 1
PT_INTERP = 3
PT_GNU_RELRO = 0x6474E552
PF_X, PF_W, PF_R = 1, 2, 4
ET_EXEC, ET_DYN = 2, 3
ELF_MIN_ALIGN = PAGE_SIZE
DEFAULT_MAP_WINDOW = (1 << 47) - PAGE_SIZE
ELF_ET_DYN_BASE = DEFAULT_MAP_WINDOW // 3 * 2  # x86_64


@dataclass(frozen=True)
class Phdr:
    p_type: int
    p_flags: int
    p_offset: int
    p_vaddr: int
    p_filesz: int
    p_memsz: int
    p_align: int


@dataclass
class ElfImage:
    """What execve needs of an ELF file: its path, size in bytes, type and segments."""

    path: str
    size: int
    e_type: int
    phdrs: list = field(default_factory=list)
    interp: str | None = None  # PT_INTERP's path

    @property
    def loads(self) -> list:
        return [p for p in self.phdrs if p.p_type == PT_LOAD]

    @property
    def relro(self) -> Phdr | None:
        return next((p for p in self.phdrs if p.p_type == PT_GNU_RELRO), None)

    def total_mapping_size(self) -> int:
        loads = self.loads
        return loads[-1].p_vaddr + loads[-1].p_memsz - (loads[0].p_vaddr & ~(PAGE_SIZE - 1))

    def span(self, bias: int) -> tuple[int, int]:
        """[start, end) the image takes at `bias`, page-aligned."""
        loads = self.loads
        start = (bias + loads[0].p_vaddr) & ~(PAGE_SIZE - 1)
        end = _page_align(bias + max(p.p_vaddr + p.p_memsz for p in loads))
        return start, end

    def relro_range(self, bias: int) -> tuple[int, int] | None:
        """The pages ld.so makes read-only after relocation (_dl_protect_relro: both
        ends rounded down to a page)."""
        r = self.relro
        if r is None:
            return None
        start = (bias + r.p_vaddr) & ~(PAGE_SIZE - 1)
        end = (bias + r.p_vaddr + r.p_memsz) & ~(PAGE_SIZE - 1)
        return (start, end) if end > start else None

    def default_bias(self, has_interp: bool) -> int:
        """load_elf_binary's load_bias without randomisation (0 for ET_EXEC)."""
        if self.e_type != ET_DYN:
            return 0
        if not has_interp:
            return 0  # a loader run directly: placed by get_unmapped_area
        bias = ELF_ET_DYN_BASE
        align = max([p.p_align for p in self.loads if p.p_align & (p.p_align - 1) == 0] or [0])
        if align > ELF_MIN_ALIGN:
            bias &= ~(align - 1)
        return (bias - self.loads[0].p_vaddr) & ~(PAGE_SIZE - 1)


class ElfError(ValueError):
    """Not a 64-bit little-endian x86-64 ELF file hvsim can lay out."""


def parse_elf(path: str, data: bytes, size: int | None = None) -> ElfImage:
    """The ELF header and program headers of a 64-bit x86-64 file (`data`: at least the
    headers). Raises ElfError for anything else."""
    if len(data) < 64 or data[:4] != b"\x7fELF":
        raise ElfError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise ElfError(f"{path}: not a 64-bit little-endian ELF file")
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    if e_machine != 62:
        raise ElfError(f"{path}: not an x86-64 ELF file")
    if e_type not in (ET_EXEC, ET_DYN):
        raise ElfError(f"{path}: not an executable")
    e_phoff, = struct.unpack_from("<Q", data, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", data, 54)
    if e_phentsize != 56 or e_phoff + e_phnum * 56 > len(data):
        raise ElfError(f"{path}: program headers out of reach")
    phdrs = []
    interp = None
    for i in range(e_phnum):
        p_type, p_flags, p_offset, p_vaddr, _, p_filesz, p_memsz, p_align = struct.unpack_from(
            "<IIQQQQQQ", data, e_phoff + i * 56)
        phdrs.append(Phdr(p_type, p_flags, p_offset, p_vaddr, p_filesz, p_memsz, p_align))
        if p_type == PT_INTERP:
            raw = data[p_offset:p_offset + p_filesz]
            interp = raw.split(b"\0", 1)[0].decode("latin-1")
    img = ElfImage(path, len(data) if size is None else size, e_type, phdrs, interp)
    if not img.loads:
        raise ElfError(f"{path}: no PT_LOAD segment")
    return img


def _page_align(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _prot(p_flags: int) -> int:
    return ((U.PROT_READ if p_flags & PF_R else 0) | (U.PROT_WRITE if p_flags & PF_W else 0)
            | (U.PROT_EXEC if p_flags & PF_X else 0))


def _elf_load(task, file, addr: int, ph: Phdr, flags: int, total_size: int) -> int:
    """elf_load -> elf_map (+ vm_brk_flags for the bss past the last file page)."""
    from .mmap import do_mmap, do_munmap

    prot = _prot(ph.p_flags)
    off_in_page = ph.p_vaddr & (PAGE_SIZE - 1)
    if ph.p_filesz:
        size = _page_align(ph.p_filesz + off_in_page)
        off = ph.p_offset - off_in_page
        start = addr & ~(PAGE_SIZE - 1)
        if total_size:
            total = _page_align(total_size)
            map_addr = do_mmap(task, start, total, prot, flags, file, off >> PAGE_SHIFT)
            if total > size:
                do_munmap(task, map_addr + size, total - size)
        else:
            map_addr = do_mmap(task, start, size, prot, flags, file, off >> PAGE_SHIFT)
        zero_start = map_addr + off_in_page + ph.p_filesz
        zero_end = map_addr + off_in_page + ph.p_memsz
    else:
        map_addr = zero_start = addr & ~(PAGE_SIZE - 1)
        zero_end = zero_start + off_in_page + ph.p_memsz
    if ph.p_memsz > ph.p_filesz:
        zs, ze = _page_align(zero_start), _page_align(zero_end)
        if ze > zs:
            _vm_brk_flags(task, zs, ze - zs, prot & U.PROT_EXEC)
    return map_addr


def _vm_brk_flags(task, addr: int, length: int, exec_: int) -> None:
    """vm_brk_flags: anonymous brk-like pages, charged, merged with a compatible
    anonymous neighbour below."""
    from .mmap import may_expand_vm, vm_enough_memory
    from .vma import (
        VM_ACCOUNT,
        VM_DATA_DEFAULT_FLAGS,
        VM_EXEC,
        vm_area_alloc,
        vm_stat_account,
        vma_link,
        vma_merge_new_range,
    )

    mm = task.mm
    flags = VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags | (VM_EXEC if exec_ else 0)
    npages = length >> PAGE_SHIFT
    if not may_expand_vm(task, flags, npages) or not vm_enough_memory(task, npages):
        raise U.err(U.ENOMEM, "execve")
    vma = vma_merge_new_range(mm, addr, addr + length, flags, None, addr >> PAGE_SHIFT)
    if vma is None:
        vma = vm_area_alloc(mm, addr, addr + length, flags, addr >> PAGE_SHIFT)
        vma_link(mm, vma)
    vm_stat_account(mm, flags, npages)


def _load_image(task, img: ElfImage, bias: int | None, interp: bool) -> int:
    """Map every PT_LOAD of `img`; returns the load bias used."""
    from .filemap import File
    from .fork import do_open_execat, set_mm_exe_file

    k = task.kernel
    inode = k.fs.lookup(img.path)
    if inode is None:
        inode = k.fs.create(img.path, img.size)
    do_open_execat(inode)  # the executable, or the interpreter (open_exec): ETXTBSY
    file = File(inode, readable=True, writable=False)
    file.get()
    try:
        loads = img.loads
        total = img.total_mapping_size()
        first = loads[0]
        if img.e_type == ET_EXEC:
            bias = 0
        if bias is None:
            # the interpreter (or a loader run directly): wherever get_unmapped_area
            # puts a private mapping of its whole span
            flags = U.MAP_PRIVATE
            addr = first.p_vaddr & ~(PAGE_SIZE - 1) if img.e_type == ET_EXEC else 0
        else:
            flags = U.MAP_PRIVATE | U.MAP_FIXED_NOREPLACE
            addr = bias + first.p_vaddr
        map_addr = _elf_load(task, file, addr, first, flags, total)
        if bias is None:
            bias = map_addr - (first.p_vaddr & ~(PAGE_SIZE - 1))
        for ph in loads[1:]:
            _elf_load(task, file, bias + ph.p_vaddr, ph, U.MAP_PRIVATE | U.MAP_FIXED, 0)
        if not interp:
            set_mm_exe_file(task.mm, file)  # (the File is not reference-counted for it)
    finally:
        file.put()
    return bias


def load_elf_binary(task, path: str, exe: ElfImage, interp: ElfImage | None = None,
                    argv=None, envp=None, load_bias: int | None = None,
                    interp_bias: int | None = None, start_brk: int | None = None) -> int:
    """Give `task` a fresh mm with `exe` (and its interpreter) mapped as Linux does (see
    the module docstring). Returns the executable's load bias. On failure the old mm
    stays (the error is raised)."""
    from .fork import STACK_EXPAND, ExecArgs, _charge, _may_expand, create_elf_tables, exit_mmap
    from .mm_types import MMStruct
    from .mmap import arch_task_size, expand_stack, map_vdso, mmap_base_for
    from .vma import VM_STACK_FLAGS, vm_area_alloc, vma_account, vma_link

    k = task.kernel
    args = ExecArgs(task, path, argv, envp)
    old = task.mm
    mm = MMStruct(k, arch_task_size(k.config.arch), owner=task)
    task.mm = mm
    try:
        rlim = task.rlimit(U.RLIMIT_STACK)
        mm.legacy_mmap = rlim == U.RLIM_INFINITY
        if mm.legacy_mmap:
            from .mmap import task_unmapped_base

            mm.mmap_base = task_unmapped_base(mm.task_size)
        else:
            mm.mmap_base = mmap_base_for(mm.task_size, rlim)
        # setup_arg_pages: the stack at STACK_TOP
        top = mm.task_size
        arg_size = args.string_pages() << PAGE_SHIFT
        size = max(arg_size, min(arg_size + STACK_EXPAND, rlim & ~(PAGE_SIZE - 1)))
        _may_expand(task, VM_STACK_FLAGS, size)
        _charge(task, size >> PAGE_SHIFT)
        stack = vm_area_alloc(mm, top - size, top, VM_STACK_FLAGS, (top - size) >> PAGE_SHIFT)
        vma_link(mm, stack)
        vma_account(mm, stack, 1)
        mm.start_stack = top - arg_size
        if load_bias is None:
            load_bias = exe.default_bias(interp is not None)
            if exe.e_type == ET_DYN and interp is None:
                load_bias = None  # get_unmapped_area decides
        bias = _load_image(task, exe, load_bias, False)
        loads = exe.loads
        text = [p for p in loads if p.p_flags & PF_X]
        data = [p for p in loads if p.p_flags & PF_W]
        if text:
            mm.start_code = bias + text[0].p_vaddr
            mm.end_code = bias + text[-1].p_vaddr + text[-1].p_filesz
        if data:
            mm.start_data = bias + data[0].p_vaddr
            mm.end_data = bias + data[-1].p_vaddr + data[-1].p_filesz
        if interp is not None:
            _load_image(task, interp, interp_bias, True)
        map_vdso(task)
        brk = _page_align(bias + max(p.p_vaddr + p.p_memsz for p in loads))
        mm.start_brk = mm.brk = brk if start_brk is None else start_brk
        sp, image = create_elf_tables(task, mm, args, top, path)
        if sp < stack.vm_start:
            err = expand_stack(task, stack, sp)
            if err:
                raise U.err(err, "execve")
        from .fault import copy_to_user

        copy_to_user(task, sp, image)
    except OSError:
        exit_mmap(task)
        task.mm = old
        raise
    if old is not None:
        task.mm = old
        exit_mmap(task)
        task.mm = mm
    if mm.total_vm > mm.hiwater_vm:
        mm.hiwater_vm = mm.total_vm
    task.comm = path.rsplit("/", 1)[-1][:15]
    return bias
