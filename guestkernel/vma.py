"""VMAs: `VMArea` (vm_area_struct), the per-mm ordered VMA set, split and merge (mm/vma.c).

Overview
--------
An address space is a set of disjoint, page-aligned, half-open ranges [vm_start, vm_end)
kept sorted by address. Linux 6.x keeps them in a maple tree; here a `VMASet` keeps two
parallel Python lists (the VMAs and their starts) so a lookup is one `bisect` (O(log n))
and an insertion or removal is one list memmove.

Every change of attributes over a sub-range goes through the same two primitives, as in
6.x: `vma_merge_new_range` (a new mapping first tries to extend its neighbours) and
`vma_modify` (mprotect, mlock, madvise: merge the changed range into a neighbour if the
rules allow, else split at the range's edges). The merge rules (section 3 of
linux-mm.md):

- flags equal ignoring VM_SOFTDIRTY and VM_MAYBE_GUARD (VM_IGNORE_MERGE; both sticky:
  the merged VMA keeps them if any part had them), same `struct file`, same anon name, no vm_ops->close
  (SysV shm never merges), VM_SPECIAL never merges;
- file offset continuity: prev.pgoff + pages(prev) == pgoff, pgoff + pglen == next.pgoff
  (private anonymous mappings use pgoff = addr >> PAGE_SHIFT, so they are continuous);
- anon_vma compatibility: both NULL, identical, or one NULL unless the VMA that has one
  is a fork child's (chained to its parent's anon_vma as well as its own, 6.x
  vma_had_uncowed_parents).

VM_ACCOUNT is an ordinary flag, so a writable private mapping (charged) does not merge
with a neighbour that was created read-only (uncharged) even once both are writable.

Reverse mapping: an anonymous page's `mapping` is its `AnonVMA`; each AnonVMA lists the
VMAs chained to it (anon_vma_chain), so rmap finds every PTE of the page in every process
that inherited it. A file page's `mapping` is the inode's address space, whose `i_mmap`
lists the VMAs mapping the file. Both lists are dicts used as insertion-ordered sets
(deterministic iteration).

Invariants checked by `validate_mm`: sorted, disjoint, non-empty, page-aligned VMAs; the
starts list matches; every VMA is in its anon_vmas' and its file's lists; total_vm,
locked_vm, data_vm, exec_vm and stack_vm are the sums over the VMAs (locked_vm plus
mm.locked_vm_orphaned, the pages a partial MREMAP_DONTUNMAP left counted, as Linux does);
no PTE outside a VMA; the RSS counters equal the PTEs; page-table counts and
pgtables_bytes agree.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .units import PAGE_SHIFT, PAGE_SIZE

# --- vm_flags (include/linux/mm.h, 6.x values) ---------------------------------------
VM_NONE = 0x00000000
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_PFNMAP = 0x00000400
VM_MAYBE_GUARD = 0x00000800  # 6.18: guard markers were installed in this VMA (sticky)
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_LOCKONFAULT = 0x00080000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_HUGETLB = 0x00400000
VM_SYNC = 0x00800000
VM_WIPEONFORK = 0x02000000
VM_DONTDUMP = 0x04000000
VM_SOFTDIRTY = 0x08000000
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000
VM_DROPPABLE = 1 << 40  # 6.11 (64-bit: VM_HIGH_ARCH_8): MAP_DROPPABLE
VM_SEALED = 1 << 42  # 6.10 (64-bit): mseal()ed

VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC
VM_MAY_FLAGS = VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
# flags a merge ignores (VM_IGNORE_MERGE); the sticky ones survive on the merged VMA if
# any of the merged parts had them (VM_STICKY, 6.18)
VM_STICKY = VM_SOFTDIRTY | VM_MAYBE_GUARD
VM_IGNORE_MERGE = VM_STICKY
VM_STACK = VM_GROWSDOWN
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_DEFAULT_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_STACK_FLAGS = VM_STACK | VM_STACK_DEFAULT_FLAGS | VM_ACCOUNT

VM_FLAG_NAMES = {
    VM_READ: "rd", VM_WRITE: "wr", VM_EXEC: "ex", VM_SHARED: "sh", VM_MAYREAD: "mr",
    VM_MAYWRITE: "mw", VM_MAYEXEC: "me", VM_MAYSHARE: "ms", VM_GROWSDOWN: "gd",
    VM_PFNMAP: "pf", VM_MAYBE_GUARD: "gu", VM_LOCKED: "lo", VM_IO: "io", VM_SEQ_READ: "sr", VM_RAND_READ: "rr",
    VM_DONTCOPY: "dc", VM_DONTEXPAND: "de", VM_LOCKONFAULT: "lf", VM_ACCOUNT: "ac",
    VM_NORESERVE: "nr", VM_HUGETLB: "ht", VM_SYNC: "sf", VM_WIPEONFORK: "wf",
    VM_DONTDUMP: "dd", VM_SOFTDIRTY: "sd", VM_MIXEDMAP: "mm", VM_HUGEPAGE: "hg",
    VM_NOHUGEPAGE: "nh", VM_MERGEABLE: "mg", VM_DROPPABLE: "dp", VM_SEALED: "sl",
}


def vm_flag_names(flags: int) -> str:
    """The VmFlags line of /proc/PID/smaps ("rd wr mr mw me ac")."""
    return " ".join(n for b, n in VM_FLAG_NAMES.items() if flags & b)


class AnonVMA:
    """anon_vma: the rmap anchor of anonymous pages. `vmas` is the anon_vma_chain (VMAs
    that may map pages of this anon_vma); `parent` the anon_vma it was forked from."""

    __slots__ = ("vmas", "parent")

    def __init__(self, parent: AnonVMA | None = None) -> None:
        self.vmas: dict = {}
        self.parent = parent

    def __repr__(self) -> str:
        return f"<AnonVMA {id(self):#x} vmas={len(self.vmas)}>"


class VMArea:
    """vm_area_struct. Addresses in bytes, vm_pgoff in pages.

    vm_file      the `struct file` (filemap.File) mapped, or None for anonymous memory
    anon_vma     this VMA's own AnonVMA (None until its first anonymous page)
    anon_vma_chain  every AnonVMA this VMA is linked into (own one last)
    vm_ops       object with optional open(vma)/close(vma)/name(vma)/may_split(vma, addr)
    """

    __slots__ = ("vm_start", "vm_end", "vm_mm", "vm_flags", "vm_pgoff", "vm_file",
                 "anon_vma", "anon_vma_chain", "vm_ops", "anon_name", "slab_obj")

    def __init__(self, mm, start: int, end: int, flags: int, pgoff: int = 0,
                 file=None, vm_ops=None, anon_name: str | None = None) -> None:
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags
        self.vm_pgoff = pgoff
        self.vm_file = file
        self.anon_vma: AnonVMA | None = None
        self.anon_vma_chain: list[AnonVMA] = []
        self.vm_ops = vm_ops
        self.anon_name = anon_name
        self.slab_obj = None

    def vma_pages(self) -> int:
        return (self.vm_end - self.vm_start) >> PAGE_SHIFT

    def is_anonymous(self) -> bool:
        return self.vm_file is None

    def linear_page_index(self, addr: int) -> int:
        return self.vm_pgoff + ((addr - self.vm_start) >> PAGE_SHIFT)

    def __repr__(self) -> str:
        return (f"<VMA {self.vm_start:#x}-{self.vm_end:#x} {vm_flag_names(self.vm_flags)} "
                f"pgoff={self.vm_pgoff:#x}{' file' if self.vm_file is not None else ''}>")


class VMASet:
    """The per-mm ordered VMA set (mm->mm_mt). Lookup is a bisect over the starts."""

    __slots__ = ("vmas", "starts")

    def __init__(self) -> None:
        self.vmas: list[VMArea] = []
        self.starts: list[int] = []

    def __len__(self) -> int:
        return len(self.vmas)

    def __iter__(self):
        return iter(list(self.vmas))

    def find_vma(self, addr: int) -> VMArea | None:
        """find_vma: the first VMA with vm_end > addr (it may start above addr)."""
        i = bisect_right(self.starts, addr) - 1
        vmas = self.vmas
        if i >= 0 and vmas[i].vm_end > addr:
            return vmas[i]
        i += 1
        return vmas[i] if i < len(vmas) else None

    def lookup(self, addr: int) -> VMArea | None:
        """vma_lookup: the VMA containing addr, or None."""
        i = bisect_right(self.starts, addr) - 1
        if i >= 0:
            v = self.vmas[i]
            if v.vm_end > addr:
                return v
        return None

    def index(self, vma: VMArea) -> int:
        i = bisect_left(self.starts, vma.vm_start)
        if i >= len(self.vmas) or self.vmas[i] is not vma:
            raise KeyError(f"VMA {vma!r} is not in this mm")
        return i

    def prev(self, vma: VMArea) -> VMArea | None:
        i = self.index(vma)
        return self.vmas[i - 1] if i > 0 else None

    def next(self, vma: VMArea) -> VMArea | None:
        i = self.index(vma) + 1
        return self.vmas[i] if i < len(self.vmas) else None

    def prev_of_addr(self, addr: int) -> VMArea | None:
        """The last VMA with vm_start < addr... that ends at or before addr."""
        i = bisect_left(self.starts, addr) - 1
        while i >= 0:
            v = self.vmas[i]
            if v.vm_end <= addr:
                return v
            i -= 1
        return None

    def intersecting(self, start: int, end: int) -> list[VMArea]:
        """VMAs overlapping [start, end), in address order."""
        i = bisect_right(self.starts, start) - 1
        if i < 0 or self.vmas[i].vm_end <= start:
            i += 1
        out = []
        vmas = self.vmas
        n = len(vmas)
        while i < n and vmas[i].vm_start < end:
            out.append(vmas[i])
            i += 1
        return out

    def insert(self, vma: VMArea) -> None:
        i = bisect_left(self.starts, vma.vm_start)
        self.vmas.insert(i, vma)
        self.starts.insert(i, vma.vm_start)

    def remove(self, vma: VMArea) -> None:
        i = self.index(vma)
        del self.vmas[i]
        del self.starts[i]

    def set_start(self, vma: VMArea, start: int) -> None:
        """Change vm_start of a VMA in the set, keeping the starts list in step."""
        i = self.index(vma)
        vma.vm_start = start
        self.starts[i] = start


# --- per-VMA statistics (mm/mmap.c vm_stat_account) -----------------------------------
def is_exec_mapping(flags: int) -> bool:
    return (flags & (VM_EXEC | VM_WRITE | VM_STACK)) == VM_EXEC


def is_stack_mapping(flags: int) -> bool:
    return (flags & VM_STACK) == VM_STACK


def is_data_mapping(flags: int) -> bool:
    return (flags & (VM_WRITE | VM_SHARED | VM_STACK)) == VM_WRITE


def vm_stat_account(mm, flags: int, npages: int) -> None:
    mm.total_vm += npages
    if is_exec_mapping(flags):
        mm.exec_vm += npages
    elif is_stack_mapping(flags):
        mm.stack_vm += npages
    elif is_data_mapping(flags):
        mm.data_vm += npages


def vma_account(mm, vma: VMArea, sign: int) -> None:
    """Add (sign=1) or remove (-1) a VMA's pages from total/data/exec/stack/locked_vm."""
    n = vma.vma_pages() * sign
    vm_stat_account(mm, vma.vm_flags, n)
    if vma.vm_flags & VM_LOCKED:
        mm.locked_vm += n


# --- allocation of vm_area_struct from the slab ---------------------------------------
def vm_area_alloc(mm, start: int, end: int, flags: int, pgoff: int = 0, file=None,
                  vm_ops=None, anon_name: str | None = None) -> VMArea:
    vma = VMArea(mm, start, end, flags, pgoff, file, vm_ops, anon_name)
    if file is not None:
        file.get()  # get_file: the VMA holds the struct file
    alloc = getattr(mm, "slab_alloc", None)
    if alloc is not None:
        vma.slab_obj = alloc("vm_area_struct")
    return vma


def vm_area_free(vma: VMArea) -> None:
    free = getattr(vma.vm_mm, "slab_free", None)
    if free is not None and vma.slab_obj is not None:
        free("vm_area_struct", vma.slab_obj)
    vma.slab_obj = None


def _file_mapping(vma: VMArea):
    f = vma.vm_file
    return None if f is None else f.inode.mapping


def vma_link_rmap(vma: VMArea) -> None:
    """Chain the VMA into its anon_vmas and its file's i_mmap."""
    for av in vma.anon_vma_chain:
        av.vmas[vma] = None
    m = _file_mapping(vma)
    if m is not None:
        m.i_mmap[vma] = None


def vma_unlink_rmap(vma: VMArea) -> None:
    for av in vma.anon_vma_chain:
        av.vmas.pop(vma, None)
    m = _file_mapping(vma)
    if m is not None:
        m.i_mmap.pop(vma, None)


def vma_link(mm, vma: VMArea) -> None:
    """Insert a new VMA into the mm and the rmap lists (vma_link)."""
    mm.mm_mt.insert(vma)
    vma_link_rmap(vma)


def vma_close(vma: VMArea) -> None:
    """The VMA goes away: unlink it from rmap, run vm_ops->close, free the struct."""
    vma_unlink_rmap(vma)
    ops = vma.vm_ops
    if ops is not None and hasattr(ops, "close"):
        ops.close(vma)
    if vma.vm_file is not None:
        vma.vm_file.put()  # fput
    vm_area_free(vma)


def vm_area_dup(vma: VMArea, mm=None) -> VMArea:
    """A copy of a VMA (same chains and file), opened (vm_ops->open), not yet linked."""
    mm = vma.vm_mm if mm is None else mm
    new = vm_area_alloc(mm, vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_pgoff,
                        vma.vm_file, vma.vm_ops, vma.anon_name)
    new.anon_vma = vma.anon_vma
    new.anon_vma_chain = list(vma.anon_vma_chain)
    ops = vma.vm_ops
    if ops is not None and hasattr(ops, "open"):
        ops.open(new)
    return new


# --- split ------------------------------------------------------------------------------
def __split_vma(mm, vma: VMArea, addr: int, new_below: bool) -> VMArea:
    """Split `vma` at `addr` (unchecked). The new VMA gets [start, addr) if new_below,
    else [addr, end); it is returned. vm_pgoff follows the addresses."""
    ops = vma.vm_ops
    if ops is not None and hasattr(ops, "may_split"):
        ops.may_split(vma, addr)  # raises OSError(EINVAL) if not allowed
    _adjust_trans_huge(mm, addr)
    new = vm_area_dup(vma)
    if new_below:
        new.vm_end = addr
        mm.mm_mt.set_start(vma, addr)
        vma.vm_pgoff += (addr - new.vm_start) >> PAGE_SHIFT
    else:
        new.vm_start = addr
        new.vm_pgoff += (addr - vma.vm_start) >> PAGE_SHIFT
        vma.vm_end = addr
    vma_link(mm, new)
    return new


def _adjust_trans_huge(mm, addr: int) -> None:
    """vma_adjust_trans_huge: a PMD mapping (huge_memory.py) across a VMA boundary about
    to be placed at `addr` is split first."""
    pt = getattr(mm, "pgtable", None)
    if pt is not None and pt.huge and addr & 0x1FFFFF:
        pt.kernel.thp.split_huge_pmds_at(mm, addr)


def split_vma(mm, vma: VMArea, addr: int, new_below: bool) -> VMArea:
    """Checked split: fails with ENOMEM once map_count has reached max_map_count."""
    if len(mm.mm_mt) >= mm.max_map_count():
        raise OSError(12, "split_vma: Cannot allocate memory (max_map_count)")
    return __split_vma(mm, vma, addr, new_below)


# --- merge rules --------------------------------------------------------------------------
def is_mergeable_vma(vma: VMArea, flags: int, file, anon_name) -> bool:
    if (vma.vm_flags ^ flags) & ~VM_IGNORE_MERGE:
        return False
    if vma.vm_file is not file:
        return False
    ops = vma.vm_ops
    if ops is not None and hasattr(ops, "close"):
        return False
    return vma.anon_name == anon_name


def _had_uncowed_parents(vma: VMArea | None) -> bool:
    """A fork child's VMA: chained to its parent's anon_vma as well as its own."""
    return vma is not None and vma.anon_vma is not None and len(vma.anon_vma_chain) > 1


def is_mergeable_anon_vma(src_av, src: VMArea | None, tgt: VMArea) -> bool:
    """May `src` (a new range with anon_vma src_av, or an existing VMA) merge into `tgt`?
    Both NULL or identical; one NULL unless the side that has one is a fork child's."""
    tgt_av = tgt.anon_vma
    if tgt_av is None and src_av is not None:
        return not _had_uncowed_parents(src)
    if tgt_av is not None and src_av is None:
        return not _had_uncowed_parents(tgt)
    return src_av is tgt_av


def can_vma_merge_after(prev: VMArea, flags: int, anon_vma, file, pgoff: int,
                        anon_name, vma: VMArea | None = None) -> bool:
    """Can [.., start) = prev be extended up to cover a range starting at pgoff?"""
    if flags & VM_SPECIAL:
        return False
    return (is_mergeable_vma(prev, flags, file, anon_name)
            and is_mergeable_anon_vma(anon_vma, vma, prev)
            and prev.vm_pgoff + prev.vma_pages() == pgoff)


def can_vma_merge_before(nxt: VMArea, flags: int, anon_vma, file, pgoff: int, pglen: int,
                         anon_name, vma: VMArea | None = None) -> bool:
    if flags & VM_SPECIAL:
        return False
    return (is_mergeable_vma(nxt, flags, file, anon_name)
            and is_mergeable_anon_vma(anon_vma, vma, nxt)
            and nxt.vm_pgoff == pgoff + pglen)


def _absorb_chains(into: VMArea, other: VMArea) -> None:
    """`into` takes over `other`'s anon_vma if it had none (anon_vma_clone on merge)."""
    if into.anon_vma is None and other.anon_vma is not None:
        into.anon_vma = other.anon_vma
        for av in other.anon_vma_chain:
            if av not in into.anon_vma_chain:
                into.anon_vma_chain.append(av)
                av.vmas[into] = None


def _remove_vma(mm, vma: VMArea) -> None:
    mm.mm_mt.remove(vma)
    vma_close(vma)


def vma_merge_new_range(mm, start: int, end: int, flags: int, file=None, pgoff: int = 0,
                        anon_name=None, prev_ok: bool = True) -> VMArea | None:
    """A new mapping [start, end) (nothing mapped there): extend prev and/or next over it.

    Returns the VMA now covering the range, or None if no merge was possible (the caller
    then creates a VMA). The caller accounts the new pages.
    """
    if flags & VM_SPECIAL:
        return None
    mt = mm.mm_mt
    i = bisect_left(mt.starts, start)
    prev = mt.vmas[i - 1] if i > 0 else None
    nxt = mt.vmas[i] if i < len(mt.vmas) else None
    pglen = (end - start) >> PAGE_SHIFT
    merge_prev = (prev_ok and prev is not None and prev.vm_end == start
                  and can_vma_merge_after(prev, flags, None, file, pgoff, anon_name))
    merge_next = (nxt is not None and nxt.vm_start == end
                  and can_vma_merge_before(nxt, flags, None, file, pgoff, pglen, anon_name))
    if merge_prev and merge_next and not is_mergeable_anon_vma(prev.anon_vma, prev, nxt):
        merge_next = False
    if merge_prev:
        prev.vm_flags |= flags & VM_STICKY
        if merge_next:
            _absorb_chains(prev, nxt)
            prev.vm_flags |= nxt.vm_flags & VM_STICKY
            prev.vm_end = nxt.vm_end
            _remove_vma(mm, nxt)
        else:
            prev.vm_end = end
        return prev
    if merge_next:
        mt.set_start(nxt, start)
        nxt.vm_pgoff = pgoff
        nxt.vm_flags |= flags & VM_STICKY
        return nxt
    return None


def vma_modify(mm, vma: VMArea, start: int, end: int, flags: int,
               anon_name=None, keep_name: bool = True) -> VMArea:
    """Give [start, end) (inside `vma`) the flags `flags` (and anon name), merging with a
    neighbour where the rules allow, else splitting at the range edges (vma_modify_flags).

    Returns the VMA that now covers exactly [start, end) or more (when merged). The caller
    does the accounting of flag changes. Raises OSError(ENOMEM) if a split would exceed
    max_map_count.
    """
    if keep_name:
        anon_name = vma.anon_name
    mt = mm.mm_mt
    pgoff = vma.vm_pgoff + ((start - vma.vm_start) >> PAGE_SHIFT)
    pglen = (end - start) >> PAGE_SHIFT
    av = vma.anon_vma
    file = vma.vm_file
    i = mt.index(vma)
    prev = mt.vmas[i - 1] if i > 0 else None
    nxt = mt.vmas[i + 1] if i + 1 < len(mt.vmas) else None
    left = (start == vma.vm_start and prev is not None and prev.vm_end == start
            and not vma.vm_flags & VM_SPECIAL
            and can_vma_merge_after(prev, flags, av, file, pgoff, anon_name, vma))
    right = (end == vma.vm_end and nxt is not None and nxt.vm_start == end
             and not vma.vm_flags & VM_SPECIAL
             and can_vma_merge_before(nxt, flags, av, file, pgoff, pglen, anon_name, vma))
    if left and right and not is_mergeable_anon_vma(prev.anon_vma, prev, nxt):
        right = False
    whole = start == vma.vm_start and end == vma.vm_end
    sticky = flags & VM_STICKY
    if left:
        prev.vm_flags |= sticky
        if whole:
            _absorb_chains(prev, vma)
            prev.vm_end = vma.vm_end
            _remove_vma(mm, vma)
            if right:
                _absorb_chains(prev, nxt)
                prev.vm_flags |= nxt.vm_flags & VM_STICKY
                prev.vm_end = nxt.vm_end
                _remove_vma(mm, nxt)
            return prev
        # prev grows over [start, end); vma keeps [end, vm_end)
        _adjust_trans_huge(mm, end)
        _absorb_chains(prev, vma)
        prev.vm_end = end
        vma.vm_pgoff += (end - vma.vm_start) >> PAGE_SHIFT
        mt.set_start(vma, end)
        return prev
    if right:
        nxt.vm_flags |= sticky
        if whole:
            _absorb_chains(nxt, vma)
            nxt.vm_pgoff = vma.vm_pgoff
            _remove_vma(mm, vma)
            mt.set_start(nxt, start)
            return nxt
        _adjust_trans_huge(mm, start)
        _absorb_chains(nxt, vma)
        vma.vm_end = start
        mt.set_start(nxt, start)
        nxt.vm_pgoff = pgoff
        return nxt
    # No merge: split off what lies outside [start, end).
    if start > vma.vm_start:
        split_vma(mm, vma, start, True)
    if end < vma.vm_end:
        split_vma(mm, vma, end, False)
    vma.vm_flags = flags
    vma.anon_name = anon_name
    return vma


# --- invariants -----------------------------------------------------------------------------
class MMInvariantError(AssertionError):
    pass


def validate_mm(mm) -> None:
    """Check the invariants listed in the module docstring; raise MMInvariantError."""

    def fail(msg: str) -> None:
        raise MMInvariantError(f"validate_mm: {msg}")

    mt = mm.mm_mt
    if len(mt.vmas) != len(mt.starts):
        fail("starts list out of step with the VMA list")
    last_end = 0
    total = data = exe = stack = locked = 0
    for i, v in enumerate(mt.vmas):
        if mt.starts[i] != v.vm_start:
            fail(f"starts[{i}] = {mt.starts[i]:#x} but VMA starts at {v.vm_start:#x}")
        if v.vm_start >= v.vm_end:
            fail(f"empty or inverted VMA {v!r}")
        if (v.vm_start | v.vm_end) & (PAGE_SIZE - 1):
            fail(f"unaligned VMA {v!r}")
        if v.vm_start < last_end:
            fail(f"VMA {v!r} overlaps the previous one (ends {last_end:#x})")
        if v.vm_end > mm.task_size:
            fail(f"VMA {v!r} beyond TASK_SIZE")
        if v.vm_mm is not mm:
            fail(f"VMA {v!r} belongs to another mm")
        last_end = v.vm_end
        n = v.vma_pages()
        total += n
        if is_exec_mapping(v.vm_flags):
            exe += n
        elif is_stack_mapping(v.vm_flags):
            stack += n
        elif is_data_mapping(v.vm_flags):
            data += n
        if v.vm_flags & VM_LOCKED:
            locked += n
        if v.anon_vma is not None and v.anon_vma not in v.anon_vma_chain:
            fail(f"VMA {v!r} not chained to its own anon_vma")
        for av in v.anon_vma_chain:
            if v not in av.vmas:
                fail(f"VMA {v!r} missing from an anon_vma's chain")
        m = _file_mapping(v)
        if m is not None and v not in m.i_mmap:
            fail(f"file VMA {v!r} missing from i_mmap")
    locked += getattr(mm, "locked_vm_orphaned", 0)
    for name, want in (("total_vm", total), ("data_vm", data), ("exec_vm", exe),
                       ("stack_vm", stack), ("locked_vm", locked)):
        if getattr(mm, name) != want:
            fail(f"{name} = {getattr(mm, name)} but the VMAs sum to {want}")
    pt = getattr(mm, "pgtable", None)
    if pt is not None:
        pt.validate(mm)
