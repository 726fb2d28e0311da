"""Guest kernel memory as bytes: what a host finds in the frames a guest kernel uses itself.

A hypervisor sees a guest's memory as frames of bytes; it cannot tell a page table from a
heap page. This module gives the guest kernel's own pages the bytes Linux puts there, as
`LazyPage` recipes (guestkernel/physmem.py) that the kernel `store`s into its frames:

- `KernelLayout`: the guest's kernel virtual address layout (x86_64: the direct map at
  page_offset_base, vmemmap_base, vmalloc_base and the kernel text at __START_KERNEL_map +
  16 MiB; i386: PAGE_OFFSET 0xC0000000) and, with `kaslr`, the offsets
  arch/x86/boot/compressed/kaslr.c (text) and arch/x86/mm/kaslr.c (memory regions) draw
  at boot, here from the guest's boot seed. Every kernel pointer written into a page is
  in this layout, so two guests with different offsets hold different pointer bytes.
- `SlabPage`: a page of a slab: the colour area, the on-slab descriptor (struct slab and
  its kmem_bufctl_t array, 2.6.20 mm/slab.c), and the objects. An object holds the bytes
  of the structure it stands for (`object_bytes`: a per-structure field layout of
  pointers, self-pointing empty list_heads, function-pointer tables in kernel text,
  small integers and zeros) from the moment it is allocated; a freed object keeps them
  (classic SLAB writes its free list in the bufctl array, not in the object), or is
  zeroed with init_on_free. Bytes of an object never allocated are the page's bytes
  from before the slab was grown (zeros with init_on_alloc).
- `PgtablePage`: a page-table page in the arch's format, derived from the mm's PTEs
  (x86_64 and i386 PAE: 512 8-byte entries, NX in bit 63, swap entries as
  pgtable_64.h/pgtable-3level.h encode them; i386: 1024 4-byte entries); upper levels
  point at the tables below with _PAGE_TABLE.
- `MemmapPage`: 64 struct pages (x86_64, 64 bytes each; i386 32 bytes) of the memmap,
  from the page descriptors: flags (Linux's bit numbers, zone in the top bits),
  the lru list_head, mapping, index, private, _mapcount (page_type for buddy pages),
  _refcount.
- `KernelStackPage`: a task's kernel stack (THREAD_SIZE 16 KiB on x86_64, 8 KiB on
  i386), zeroed at allocation (THREADINFO_GFP has __GFP_ZERO), with STACK_END_MAGIC at
  its lowest word, the user registers (struct pt_regs) at its top and a few call frames
  below them.

Laziness and staleness. No bytes are made until something reads them: `materialize()`
derives them from the live kernel state at that moment. Slab, page-table and memmap
pages change as the kernel runs, and a host caches what it read (a checksum, a shared
copy): a recipe that has been read records its frame in `KmemContent.fresh`; the next
change the kernel makes to that page calls `KmemContent.changed`, which writes the frame
once (touch for write, then store of the recipe again: a shared frame is copied, a
compressed one decompressed, the host's checksum dropped) and forgets it until the host
reads it again. A change to a page nobody has read since its last change costs one set
test. What is tracked: slab allocations and frees, PTE installs and clears
(set_pte_new / clear_pte), table allocations, in-place PTE changes (pgtable.PageTable.
pte_changed: accessed or dirty set, accessed cleared, write-protect by fork, mprotect or
clear_refs, a swap entry over a PTE and back), and struct page changes in the memmap:
the struct pages of a memmap frame a host has read take a watched class
(`_watched_page_class`) whose first write of a field the bytes show writes the frame
and puts them back to the plain class; creating a struct page (pfn_to_page) counts too.
"""

from __future__ import annotations

import random
import struct
import sys
from array import array
from itertools import compress as _select
from itertools import repeat
from operator import itemgetter
from operator import ne as _ne

import xxhash

from .gfp import __GFP_ZERO, GFP_KERNEL, GFP_KERNEL_ACCOUNT
from .memcontrol import memcg_kmem_charge_page, memcg_kmem_uncharge_page, mod_kmem_page_state
from .page import (
    Page,
    PG_active,
    PG_anon,
    PG_buddy,
    PG_dirty,
    PG_head,
    PG_locked,
    PG_lru,
    PG_mlocked,
    PG_private,
    PG_reclaim,
    PG_referenced,
    PG_reserved,
    PG_slab,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_uptodate,
    PG_workingset,
    PG_writeback,
)
from .physmem import ZERO_PAGE, LazyPage
from .units import PAGE_SHIFT, PAGE_SIZE

THREADINFO_GFP = GFP_KERNEL_ACCOUNT | __GFP_ZERO  # kernel stacks (a class body would mangle __GFP_ZERO)
_MASK64 = (1 << 64) - 1
_xxh64 = xxhash.xxh64_intdigest

# --------------------------------------------------------------------------- layout
START_KERNEL_MAP = 0xFFFFFFFF80000000  # __START_KERNEL_map (x86_64)
LOAD_PHYSICAL_ADDR = 16 << 20  # CONFIG_PHYSICAL_START
PHYSICAL_ALIGN = 2 << 20  # CONFIG_PHYSICAL_ALIGN: KASLR's text granule
KERNEL_IMAGE_SIZE = 1 << 30  # x86_64 with KASLR: the text may go anywhere in 1 GiB
PUD_SIZE = 1 << 30
TB = 1 << 40
PAGE_OFFSET_BASE_L4 = 0xFFFF888000000000  # __PAGE_OFFSET_BASE_L4
VMALLOC_START_L4 = 0xFFFFC90000000000
VMEMMAP_START_L4 = 0xFFFFEA0000000000
CPU_ENTRY_AREA_BASE = 0xFFFFFE0000000000  # vaddr_end of kernel_randomize_memory (6.1)
VMALLOC_SIZE_TB_L4 = 32
RANDOMIZE_MEMORY_PHYSICAL_PADDING_TB = 10  # CONFIG_RANDOMIZE_MEMORY_PHYSICAL_PADDING (0xa)
I386_PAGE_OFFSET = 0xC0000000
STACK_END_MAGIC = 0x57AC6E9D  # include/uapi/linux/magic.h
THREAD_SIZE = {"x86_64": 16 << 10, "i386": 8 << 10}  # bytes: one kernel stack
PT_REGS_SIZE = {"x86_64": 168, "i386": 68}  # sizeof(struct pt_regs)


def _rng(seed: int, component: str) -> random.Random:
    return random.Random(_xxh64(f"{seed}/{component}".encode()))


class KernelLayout:
    """Where one guest kernel's text, direct map, vmemmap and vmalloc area start.

    arch        "x86_64" or "i386"
    kaslr       whether the boot randomised them
    text_base   virtual address of _text (x86_64 0xffffffff81000000 without KASLR)
    kaslr_delta bytes the text moved: what every relocation in the image gets added
    page_offset_base, vmemmap_base, vmalloc_base: x86_64 memory regions
    memory      guest memory, bytes (sizes the direct map and vmemmap regions)
    """

    __slots__ = ("arch", "kaslr", "text_base", "kaslr_delta", "page_offset_base",
                 "vmemmap_base", "vmalloc_base", "memory", "sim_page_offset", "ptr_size",
                 "seed")

    def __init__(self, arch: str, kaslr: bool, seed: int, memory: int, image_size: int,
                 sim_page_offset: int) -> None:
        self.arch = arch
        self.kaslr = kaslr
        self.seed = seed
        self.memory = memory
        self.sim_page_offset = sim_page_offset  # the direct map as hvsim numbers it
        self.ptr_size = 8 if arch == "x86_64" else 4
        if arch != "x86_64":
            # i386 has no memory-region randomisation; hvsim's i386 kernels boot without
            # KASLR (RANDOMIZE_BASE on i386 only moves the physical load address)
            self.kaslr = False
            self.text_base = I386_PAGE_OFFSET + LOAD_PHYSICAL_ADDR
            self.kaslr_delta = 0
            self.page_offset_base = I386_PAGE_OFFSET
            self.vmemmap_base = 0
            self.vmalloc_base = I386_PAGE_OFFSET + max(memory, 0) + (8 << 20)
            return
        offset = LOAD_PHYSICAL_ADDR
        self.page_offset_base = PAGE_OFFSET_BASE_L4
        self.vmalloc_base = VMALLOC_START_L4
        self.vmemmap_base = VMEMMAP_START_L4
        if kaslr:
            # find_random_virt_addr(): a PHYSICAL_ALIGN slot in KERNEL_IMAGE_SIZE above
            # LOAD_PHYSICAL_ADDR with room for the image
            slots = 1 + (KERNEL_IMAGE_SIZE - LOAD_PHYSICAL_ADDR - image_size) // PHYSICAL_ALIGN
            offset = LOAD_PHYSICAL_ADDR + _rng(seed, "kaslr/text").randrange(slots) * PHYSICAL_ALIGN
            self._randomize_memory(_rng(seed, "kaslr/memory"))
        self.text_base = START_KERNEL_MAP + offset
        self.kaslr_delta = offset - LOAD_PHYSICAL_ADDR

    def _randomize_memory(self, rng: random.Random) -> None:
        """kernel_randomize_memory() (arch/x86/mm/kaslr.c, 4-level paging): the direct
        map, vmalloc and vmemmap regions, in that order, each moved by a random PUD-aligned
        share of the entropy the others leave."""
        direct_tb = -(-self.memory // TB) + RANDOMIZE_MEMORY_PHYSICAL_PADDING_TB
        vmemmap_tb = -(-((direct_tb * TB) // PAGE_SIZE * 64) // TB)
        sizes = (direct_tb * TB, VMALLOC_SIZE_TB_L4 * TB, vmemmap_tb * TB)
        vaddr = PAGE_OFFSET_BASE_L4
        remain = CPU_ENTRY_AREA_BASE - vaddr - sum(sizes)
        bases = []
        for i, size in enumerate(sizes):
            entropy = remain // (len(sizes) - i)
            entropy = (rng.getrandbits(64) % (entropy + 1)) & ~(PUD_SIZE - 1)
            vaddr += entropy
            bases.append(vaddr)
            vaddr += size
            vaddr = -(-(vaddr + 1) // PUD_SIZE) * PUD_SIZE
            remain -= entropy
        self.page_offset_base, self.vmalloc_base, self.vmemmap_base = bases

    def kptr(self, sim_addr: int) -> int:
        """The guest's pointer value of a direct-map address as hvsim numbers it."""
        return sim_addr - self.sim_page_offset + self.page_offset_base

    def text(self, off: int) -> int:
        """Address of offset `off` into the kernel image (text, rodata, data)."""
        return self.text_base + off

    def struct_page(self, pfn: int) -> int:
        """Address of pfn's struct page (vmemmap on x86_64, mem_map in lowmem on i386)."""
        if self.arch == "x86_64":
            return self.vmemmap_base + pfn * 64
        return self.page_offset_base + (LOAD_PHYSICAL_ADDR + (16 << 20)) + pfn * 32


# --------------------------------------------------------------------------- objects
# Field layouts of the structures slab objects stand for. Per 8-byte word (4 on i386):
# which kind of value it holds, in shares of the structure that add to 1. The sizes are
# the slab caches' (mm_types.SLAB_SIZES); the shares are hvsim's reading of the 6.1
# definitions (include/linux/sched.h, mm_types.h, fs.h, dcache.h, fdtable.h): task_struct
# is mostly scheduler state, counters and empty list_heads; vm_area_struct is pointers
# (vm_mm, rb/maple links, anon_vma, vm_ops, vm_file) and addresses; dentry and inode
# hold their hash links, name and operation tables; files_struct an fd array of pointers
# to struct file. kmalloc objects of unknown type take a generic mix.
#                 zero   self   obj    text   int
_SHARES = {
    "task_struct": (0.50, 0.12, 0.14, 0.06, 0.18),
    "mm_struct": (0.45, 0.10, 0.15, 0.04, 0.26),
    "vm_area_struct": (0.25, 0.08, 0.30, 0.07, 0.30),
    "filp": (0.35, 0.06, 0.30, 0.09, 0.20),
    "files_cache": (0.55, 0.04, 0.30, 0.01, 0.10),
    "dentry": (0.30, 0.16, 0.26, 0.06, 0.22),
    "inode": (0.40, 0.14, 0.20, 0.08, 0.18),
    "kmalloc": (0.45, 0.08, 0.20, 0.05, 0.22),
}
_KIND_ALIASES = (
    ("task_struct", "task_struct"), ("mm_struct", "mm_struct"),
    ("vm_area_struct", "vm_area_struct"), ("filp", "filp"), ("files_cache", "files_cache"),
    ("dentry", "dentry"), ("inode", "inode"),
)
_F_ZERO, _F_SELF, _F_OBJ, _F_TEXT, _F_INT = range(5)
_templates: dict[tuple[str, int, int], tuple] = {}


def object_kind(cache_name: str) -> str:
    for needle, kind in _KIND_ALIASES:
        if needle in cache_name:
            return kind
    return "kmalloc"


def _template(kind: str, size: int, word: int) -> tuple:
    """(offset, field kind, fixed value) of every non-zero word of `kind`: which word
    is which is a property of the structure, the same in every object and every guest."""
    key = (kind, size, word)
    t = _templates.get(key)
    if t is None:
        shares = _SHARES[kind]
        bounds = []
        acc = 0.0
        for s in shares:
            acc += s
            bounds.append(int(acc * 65536))
        fields = []
        for off in range(0, size - word + 1, word):
            h = _xxh64(f"kmem/struct/{kind}/{off}".encode())
            r = h & 0xFFFF
            f = 0
            while f < 4 and r >= bounds[f]:
                f += 1
            if f != _F_ZERO:
                fields.append((off, f, (h >> 16) & 0xFFFFF8))
        t = _templates[key] = tuple(fields)
    return t


_bases: dict[tuple, tuple] = {}


def _object_base(layout: KernelLayout, kind: str, size: int):
    """Per (structure, layout): the words with the fixed text pointers filled in, and the
    word indexes of the self-pointing and the per-object fields."""
    word = layout.ptr_size
    key = (kind, size, word, layout.text_base)
    b = _bases.get(key)
    if b is None:
        nwords = -(-size // word)
        words = [0] * nwords
        selfs, hashed = [], []
        for off, f, fixed in _template(kind, size, word):
            i = off // word
            if f == _F_TEXT:
                words[i] = layout.text(fixed) & (_MASK64 if word == 8 else 0xFFFFFFFF)
            elif f == _F_SELF:
                selfs.append(i)
            else:
                hashed.append((i, f == _F_OBJ))
        b = _bases[key] = (array("Q" if word == 8 else "I", words), tuple(selfs), tuple(hashed))
    return b


def object_bytes(layout: KernelLayout, kind: str, addr: int, gen: int, size: int) -> bytes:
    """The `size` bytes of a `kind` object at direct-map address `addr` (hvsim's numbering)
    as its `gen`-th user wrote it: list_heads point at themselves, object pointers at
    other objects of this guest's direct map, text pointers into its kernel image (moved
    by KASLR), integers are small. Deterministic in (layout, kind, addr, gen)."""
    base, selfs, hashed = _object_base(layout, kind, size)
    word = layout.ptr_size
    mask = _MASK64 if word == 8 else 0xFFFFFFFF
    arr = array(base.typecode, base)
    self_ptr = layout.kptr(addr)
    for i in selfs:
        arr[i] = (self_ptr + i * word) & mask
    h = _xxh64(f"kmem/obj/{kind}/{addr}/{gen}".encode())
    mem = max(layout.memory, PAGE_SIZE)
    pob = layout.page_offset_base
    for i, is_obj in hashed:
        h = (h * 0x9E3779B97F4A7C15 + i) & _MASK64
        x = h ^ (h >> 31)
        arr[i] = ((pob + ((x % mem) & ~63)) & mask) if is_obj else (x >> 40) & 0xFFFF
    data = arr.tobytes()
    return data if len(data) == size else data[:size]


# --------------------------------------------------------------------------- manager
class KmemContent:
    """One guest's kernel-memory content: its layout, and the frames whose live recipe a
    host has read since the kernel last changed them (`fresh`)."""

    def __init__(self, kernel, layout: KernelLayout) -> None:
        self.kernel = kernel
        self.layout = layout
        self.phys = kernel.phys
        self.fresh: set[int] = set()
        self.init_on_free = bool(getattr(kernel.config, "init_on_free", False))
        self.init_on_alloc = bool(getattr(kernel.config, "init_on_alloc", False))
        self.writes = 0  # frames written again because a host had read them (changed())
        self.flag_map: dict[int, int] = {}  # hvsim page flags -> Linux's page->flags bits
        self.anon_ptrs: dict[int, int] = {}  # memmap: anon_vma pointer per 2 MiB of index
        self.file_ptrs: dict[int, int] = {}  # memmap: address_space pointer per inode
        self.kernel_pgd_entries = self._kernel_pgd()
        # memmap frames: the recipe of each (by first pfn // structs per frame), and the
        # class the struct pages of a frame a host has read take until one changes
        self.memmap_recipes: dict[int, MemmapPage] = {}
        self.per_memmap_frame = PAGE_SIZE // (64 if layout.arch == "x86_64" else 32)
        self.watched_page = _watched_page_class(self)

    def _kernel_pgd(self) -> list[int]:
        """Entries 256..511 of every x86_64 PGD: init_mm's, pointing at the PUD pages of
        the direct map, vmalloc area, vmemmap and kernel text (level3_kernel_pgt), which
        live in the kernel image (_KERNPG_TABLE = present|rw|accessed|dirty)."""
        out = [0] * 256
        layout = self.layout
        if layout.arch != "x86_64":
            return out
        img_end = (LOAD_PHYSICAL_ADDR + self.kernel.config.kernel_image) >> PAGE_SHIFT
        for n, base in enumerate((layout.page_offset_base, layout.vmalloc_base,
                                  layout.vmemmap_base, layout.text_base)):
            out[((base >> 39) & 511) - 256] = ((img_end - 16 - n) << PAGE_SHIFT) | 0x63
        return out

    def write_memmap(self) -> None:
        """memmap_init: every struct page written at boot, into the frames the memmap
        was given (page_alloc.memmap_frames)."""
        store = self.phys.store
        per = self.per_memmap_frame
        alloc = self.kernel.page_alloc
        for pfn, first in getattr(alloc, "memmap_frames", ()):
            recipe = MemmapPage(self, pfn, first)
            if first % per == 0:  # (memmap_init's frames start at node starts: aligned)
                self.memmap_recipes[first // per] = recipe
            store(pfn, recipe)  # boot time: costs no task anything
        if self.memmap_recipes:
            alloc.page_created_hook = self.memmap_changed

    def watch_memmap(self, recipe: MemmapPage) -> None:
        """A host has read the memmap frame of `recipe`: its struct pages take the
        watched class, whose first change of a field the bytes show writes the frame."""
        watched = self.watched_page
        first = recipe.first_pfn
        for page in self.kernel.page_alloc.mem_map[first:first + self.per_memmap_frame]:
            if page is not None and page.__class__ is Page:
                page.__class__ = watched

    def memmap_changed(self, pfn: int) -> None:
        """The struct page of `pfn` changed (a field its memmap bytes show, or it was
        created): if a host has read its memmap frame since the frame last changed,
        write the frame once (changed()) and stop watching its struct pages."""
        recipe = self.memmap_recipes.get(pfn // self.per_memmap_frame)
        if recipe is None or recipe.pfn not in self.fresh:
            return  # (only frames in `fresh` have watched struct pages)
        first = recipe.first_pfn
        watched = self.watched_page
        setclass = object.__setattr__
        for page in self.kernel.page_alloc.mem_map[first:first + self.per_memmap_frame]:
            if page is not None and page.__class__ is watched:
                setclass(page, "__class__", Page)
        self.changed(recipe.pfn, recipe)

    def alloc_thread_stack(self, pid: int):
        """A kernel stack for task `pid`: THREAD_SIZE from the buddy allocator with
        THREADINFO_GFP (GFP_KERNEL_ACCOUNT | __GFP_ZERO), written with the stack's first
        bytes; counted in nr_kernel_stack (KiB). The pages, or None if none could be had.
        x86_64 6.x (VMAP_STACK) takes order-0 pages mapped in vmalloc space; otherwise one
        block of THREAD_SIZE_ORDER."""
        k = self.kernel
        arch = self.layout.arch
        nr = THREAD_SIZE[arch] // PAGE_SIZE
        gfp = THREADINFO_GFP
        if arch == "x86_64" and k.config.era == "6.x":
            pages = []
            for _ in range(nr):
                page = k.alloc_pages(gfp, 0)
                if page is None:
                    for p in pages:
                        k.free_pages(p, 0)
                    return None
                pages.append(page)
            # memcg_charge_kernel_stack (6.1, VMAP_STACK): each page charged to current's
            # memcg (memcg_kmem_charge_page, GFP_KERNEL); a failed charge undoes the
            # others and the fork fails
            for i, page in enumerate(pages):
                if memcg_kmem_charge_page(k, page, GFP_KERNEL, 0):
                    for p in pages[:i]:
                        memcg_kmem_uncharge_page(k, p, 0)
                    for p in pages:
                        k.free_pages(p, 0)
                    return None
            base = self.layout.vmalloc_base + (pid % (1 << 20)) * 4 * THREAD_SIZE[arch]
            addr = base - self.layout.page_offset_base + self.layout.sim_page_offset
        else:
            head = k.alloc_pages(gfp, nr.bit_length() - 1)
            if head is None:
                return None
            # __alloc_pages with THREADINFO_GFP's __GFP_ACCOUNT: the block charged whole
            if memcg_kmem_charge_page(k, head, gfp, nr.bit_length() - 1):
                k.free_pages(head, nr.bit_length() - 1)
                return None
            pages = [head] + [k.pfn_to_page(head.pfn + i) for i in range(1, nr)]
            addr = self.layout.sim_page_offset + (head.pfn << PAGE_SHIFT)
        # account_kernel_stack: NR_KERNEL_STACK_KB in the memcg the pages are charged to
        if arch == "x86_64" and k.config.era == "6.x":
            for page in pages:
                mod_kmem_page_state(k, page, "kernel_stack", PAGE_SIZE >> 10)
        else:
            mod_kmem_page_state(k, pages[0], "kernel_stack", THREAD_SIZE[arch] >> 10)
        cost = 0.0
        store = self.phys.store
        for i, page in enumerate(pages):
            cost += store(page.pfn, KernelStackPage(self.layout, pid, i, nr, addr))
        k.page_alloc.stall += cost
        k.vmstat["nr_kernel_stack"] += THREAD_SIZE[arch] >> 10
        return pages

    def free_thread_stack(self, pages) -> None:
        k = self.kernel
        arch = self.layout.arch
        # exit_task_stack_account: account_kernel_stack(tsk, -1), then each page
        # uncharged (VMAP_STACK); a THREAD_SIZE block is uncharged as it is freed
        if arch == "x86_64" and k.config.era == "6.x":
            for p in pages:
                mod_kmem_page_state(k, p, "kernel_stack", -(PAGE_SIZE >> 10))
                memcg_kmem_uncharge_page(k, p, 0)
            for p in pages:
                k.free_pages(p, 0)
        else:
            mod_kmem_page_state(k, pages[0], "kernel_stack", -(THREAD_SIZE[arch] >> 10))
            memcg_kmem_uncharge_page(k, pages[0], len(pages).bit_length() - 1)
            k.free_pages(pages[0], len(pages).bit_length() - 1)
        k.vmstat["nr_kernel_stack"] -= THREAD_SIZE[arch] >> 10

    def store(self, pfn: int, recipe) -> float:
        """Put a recipe into a frame the kernel has just allocated and written. Seconds."""
        self.fresh.discard(pfn)
        return self.phys.store(pfn, recipe)

    def changed(self, pfn: int, recipe) -> None:
        """The kernel changed a live page a host had read: write the frame once."""
        self.fresh.discard(pfn)
        self.writes += 1
        phys = self.phys
        cost = phys.touch(pfn, True) + phys.store(pfn, recipe)
        self.kernel.page_alloc.stall += cost

    def previous_bytes(self, pfn: int) -> bytes:
        """What a frame holds before the kernel writes it (zeros after init_on_alloc)."""
        if self.init_on_alloc:
            return ZERO_PAGE
        return self.phys.load(pfn)


class _LivePage(LazyPage):
    """A recipe whose bytes follow kernel state; reading it marks its frame fresh."""

    __slots__ = ("kmem", "pfn")

    def materialize(self) -> bytes:
        self.kmem.fresh.add(self.pfn)
        return self._bytes()

    def _bytes(self) -> bytes:
        raise NotImplementedError

    def written(self, *args, **kwargs):
        """A write through the host boundary leaves a kernel page's recipe as it is: its
        bytes are the kernel's state, which the kernel changes itself."""
        return self


# --------------------------------------------------------------------------- slab
class SlabPage(_LivePage):
    """Page `index` of a slab of `cachep` (see module docstring)."""

    __slots__ = ("cachep", "slab", "index", "base", "kind", "objs")

    def __init__(self, kmem: KmemContent, cachep, slab, index: int, pfn: int, base: bytes) -> None:
        self.kmem = kmem
        self.pfn = pfn
        self.cachep = cachep
        self.slab = slab
        self.index = index
        self.base = base
        self.kind = object_kind(cachep.name)
        self.objs: dict[int, tuple[int, bytes]] = {}  # object index -> (gen, its bytes)

    def _bytes(self) -> bytes:
        cachep = self.cachep
        slab = self.slab
        layout = self.kmem.layout
        buf = bytearray(self.base)
        page_addr = slab.s_mem - slab.colouroff + self.index * PAGE_SIZE  # hvsim numbering
        page_end = page_addr + PAGE_SIZE
        word = layout.ptr_size
        if not cachep.off_slab and self.index == 0:
            # struct slab at the colour offset, then kmem_bufctl_t bufctl[num]
            d = slab.addr - page_addr
            fmt = "<QQQQIIH" if word == 8 else "<IIIIIIH"
            # list: linked on one of the kmem_list3 lists (inside the cache's kmem_list3)
            lst = layout.kptr(cachep.addr) + 64 if cachep.addr else layout.text(0x2A00000)
            struct.pack_into(fmt, buf, d, lst, lst, slab.colouroff,
                             layout.kptr(slab.s_mem), slab.inuse, slab.free, slab.nodeid)
            b = d + (48 if word == 8 else 28)
            nb = min(len(slab.bufctl), (PAGE_SIZE - b) // 4)
            if nb > 0:
                struct.pack_into(f"<{nb}I", buf, b, *slab.bufctl[:nb])
        size = cachep.buffer_size
        s_mem = slab.s_mem
        first = max(0, (page_addr - s_mem) // size)
        last = min(cachep.num, (page_end - s_mem + size - 1) // size)
        gens = slab.gens
        kind = self.kind
        objs = self.objs
        for i in range(first, last):
            g = gens[i]
            if g == 0:
                continue  # never allocated: the page's earlier bytes
            obj = s_mem + i * size
            lo = max(obj, page_addr)
            hi = min(obj + size, page_end)
            if hi <= lo:
                continue
            if g < 0:  # freed with init_on_free
                buf[lo - page_addr:hi - page_addr] = bytes(hi - lo)
                continue
            cached = objs.get(i)
            if cached is not None and cached[0] == g:
                data = cached[1]
            else:
                data = object_bytes(layout, kind, obj, g, size)[lo - obj:hi - obj]
                objs[i] = (g, data)
            buf[lo - page_addr:hi - page_addr] = data
        return bytes(buf)


# --------------------------------------------------------------------------- page tables
_PAGE_PRESENT = 0x001
_PAGE_RW = 0x002
_PAGE_USER = 0x004
_PAGE_ACCESSED = 0x020
_PAGE_DIRTY = 0x040
_PAGE_PROTNONE = 0x100
_PAGE_NX_HV = 0x200  # hvsim's NX bit
_PAGE_SWP_HV = 0x400  # hvsim's swap-entry marker
_PAGE_SOFT_DIRTY = 1 << 11  # x86 _PAGE_BIT_SOFT_DIRTY (set with _PAGE_DIRTY by pte_mkdirty)
_PAGE_NX = 1 << 63
_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY  # 0x67
_HV_LOW_BITS = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_PROTNONE
SWP_TYPE_BITS = 5
_SWP_OFFSET_SHIFT_64 = 9 + SWP_TYPE_BITS  # SWP_OFFSET_FIRST_BIT (_PAGE_BIT_PROTNONE + 1) + 5


def x86_pte(pte: int, arch: str, pae: bool) -> int:
    """An hvsim PTE in the arch's format: x86_64 / PAE 64-bit with NX in bit 63 and the
    swap-entry layout of pgtable_64.h (offset inverted, type in the top 5 bits); i386
    2-level 32-bit (no NX; swap type above the present bit, offset from bit 9)."""
    if not pte:
        return 0
    if pte & _PAGE_SWP_HV and not pte & (_PAGE_PRESENT | _PAGE_PROTNONE):
        offset = pte >> PAGE_SHIFT  # hvsim's swap entry: type 0, this offset
        if arch == "x86_64" or pae:
            return ((~offset << _SWP_OFFSET_SHIFT_64) & _MASK64) >> SWP_TYPE_BITS
        return (offset << 9) & 0xFFFFFFFF
    v = (pte >> PAGE_SHIFT) << PAGE_SHIFT | (pte & _HV_LOW_BITS)
    if pte & _PAGE_DIRTY:
        v |= _PAGE_SOFT_DIRTY
    if arch == "x86_64" or pae:
        if pte & _PAGE_NX_HV:
            v |= _PAGE_NX
        return v & _MASK64
    return v & 0xFFFFFFFF


_LITTLE = sys.byteorder == "little"


def _swapped(vals: array) -> array:
    out = array(vals.typecode, vals)
    out.byteswap()
    return out


class PgtablePage(_LivePage):
    """One page-table page of an mm: level 0 holds PTEs, higher levels point at tables;
    `level` == len(shifts) is the PGD."""

    __slots__ = ("pt", "level", "key", "page", "_ents", "_data", "_vals", "_fetch")

    def __init__(self, kmem: KmemContent, pt, level: int, key: int, page) -> None:
        self.kmem = kmem
        self.pfn = page.pfn
        self.pt = pt
        self.level = level
        self.key = key
        self.page = page
        self._ents = None  # the entries `_data` was made from (see _bytes)
        self._data = None
        self._vals = None  # level 0: `_ents` in the arch's format
        self._fetch = None  # level 0: itemgetter of the table's PTE slots (see _bytes)

    def _bytes(self) -> bytes:
        """The table's bytes. NOTE: cached for performance: the bytes are a function of
        the arch and the table's entries (PTEs at level 0, the child table pages above),
        which are fetched at C speed on every read and compared with those the cached
        bytes were made from; a PTE table whose entries changed converts only the
        entries that differ (found at C speed), by x86_pte. `_make` is the plain twin."""
        pt = self.pt
        level = self.level
        shifts = pt.shifts
        if level < len(shifts):
            if pt.tables[level].get(self.key) is not self.page:
                return ZERO_PAGE  # freed: emptied before it went
            d = shifts[0] if level == 0 else shifts[level] - shifts[level - 1]
            nent = 1 << d
            lo = self.key << d
            if level == 0:
                # a full table's PTEs in one C call (KeyError: some slot empty)
                fetch = self._fetch
                if fetch is None:
                    fetch = self._fetch = itemgetter(*range(lo, lo + nent))
                ptes = pt.ptes
                try:
                    ents = fetch(ptes)
                except KeyError:
                    ents = tuple(map(ptes.get, range(lo, lo + nent), repeat(0, nent)))
            else:
                src = pt.tables[level - 1]
                ents = list(map(src.get, range(lo, lo + nent), repeat(0, nent)))
            if level == 1 and pt.huge:
                # PMD mappings (huge_memory.py) are entries of this table too
                ents.append([pt.ptes[k << shifts[0]] for k in range(lo, lo + nent) if k in pt.huge])
        else:
            if pt.pgd is not self.page:
                return ZERO_PAGE
            arch = self.kmem.layout.arch
            pae = arch == "i386" and len(shifts) == 2
            nent = 4 if pae else (512 if arch == "x86_64" else 1024)
            below = pt.tables[level - 1]
            ents = list(map(below.get, range(nent), repeat(0, nent)))
        old = self._ents
        if ents == old:  # (child tables compare by identity: Page has no __eq__)
            return self._data
        vals = self._vals
        if level == 0 and vals is not None:
            arch = self.kmem.layout.arch
            pae = arch == "i386" and len(shifts) == 2
            for i in _select(range(nent), map(_ne, old, ents)):
                vals[i] = x86_pte(ents[i], arch, pae)
            data = vals.tobytes() if _LITTLE else bytes(_swapped(vals))
            if len(data) < PAGE_SIZE:
                data += bytes(PAGE_SIZE - len(data))
        else:
            data = self._make()
            if level == 0:
                arch = self.kmem.layout.arch
                wide = arch == "x86_64" or (arch == "i386" and len(shifts) == 2)
                vals = self._vals = array("Q" if wide else "I", data[:nent * (8 if wide else 4)])
                if not _LITTLE:
                    vals.byteswap()
        self._ents = ents
        self._data = data
        return data

    def _make(self) -> bytes:
        """The table's bytes, made from the live entries (the plain twin of _bytes)."""
        pt = self.pt
        level = self.level
        shifts = pt.shifts
        kmem = self.kmem
        arch = kmem.layout.arch
        pae = arch == "i386" and len(shifts) == 2
        wide = arch == "x86_64" or pae
        if level < len(shifts):
            if pt.tables[level].get(self.key) is not self.page:
                return ZERO_PAGE  # freed: emptied before it went
            nent = 1 << (shifts[0] if level == 0 else shifts[level] - shifts[level - 1])
            lo = self.key << (shifts[0] if level == 0 else shifts[level] - shifts[level - 1])
        else:
            if pt.pgd is not self.page:
                return ZERO_PAGE
            nent = 4 if pae else (512 if arch == "x86_64" else 1024)
            lo = 0
        if level == 0:
            # NOTE: the entries fetched at C speed, then the common entry (present, not
            # PROT_NONE) converted inline in one comprehension for performance (a host
            # hashes every page-table frame it finds changed); the rest by x86_pte
            soft = _PAGE_SOFT_DIRTY
            nx = _PAGE_NX if wide else 0
            kind = _PAGE_PRESENT | _PAGE_SWP_HV | _PAGE_PROTNONE
            dirty, nxhv, low = _PAGE_DIRTY, _PAGE_NX_HV, _HV_LOW_BITS
            vals = [0 if not p else
                    ((p & ~0xFFF) | (p & low) | (soft if p & dirty else 0) | (nx if p & nxhv else 0))
                    if p & kind == _PAGE_PRESENT else x86_pte(p, arch, pae)
                    for p in map(pt.ptes.get, range(lo, lo + nent), repeat(0, nent))]
        else:
            vals = [0] * nent
            below = pt.tables[level - 1]
            for i in range(nent):
                child = below.get(lo + i)
                if child is not None:
                    vals[i] = (child.pfn << PAGE_SHIFT) | _PAGE_TABLE
            huge = pt.huge if level == 1 else None
            if huge:
                # a PMD mapping (huge_memory.py): one PSE entry, the first subpage's
                # frame with its PTE bits and _PAGE_PSE (bit 7), NX in bit 63
                for i in range(nent):
                    if lo + i in huge:
                        vals[i] = x86_pte(pt.ptes[(lo + i) << shifts[0]], arch, pae) | 0x080
            if level == len(shifts) and arch == "x86_64":
                # the kernel half (entries 256..511) is init_mm's, the same in every mm
                vals[256:] = kmem.kernel_pgd_entries
        if wide:
            data = struct.pack(f"<{nent}Q", *vals)
        else:
            data = struct.pack(f"<{nent}I", *vals)
        return data + bytes(PAGE_SIZE - len(data)) if len(data) < PAGE_SIZE else data


# --------------------------------------------------------------------------- memmap
# Linux 6.1 page-flag bit numbers (include/linux/page-flags.h, x86_64)
_LINUX_PG_BITS = (
    (PG_locked, 0), (PG_referenced, 2), (PG_uptodate, 3), (PG_dirty, 4), (PG_lru, 5),
    (PG_active, 6), (PG_workingset, 7), (PG_slab, 9), (PG_reserved, 11), (PG_private, 12),
    (PG_writeback, 13), (PG_head, 14), (PG_mlocked, 19), (PG_unevictable, 18),
    (PG_swapbacked, 20), (PG_reclaim, 17), (PG_swapcache, 10),
)
PAGE_TYPE_BUDDY = 0xFFFFFF7F  # page_type of a free block head (PAGE_TYPE_BASE | ~PG_buddy)
ZONES_SHIFT_POS = 62  # x86_64: the zone number in the top 2 bits of page->flags


def linux_page_flags(flags: int, zone_idx: int) -> int:
    v = 0
    for hv, bit in _LINUX_PG_BITS:
        if flags & hv:
            v |= 1 << bit
    return v | (zone_idx << ZONES_SHIFT_POS)


# The fields of struct page its memmap bytes show, and the hvsim page flags among them
# (PG_buddy makes _mapcount the buddy page_type; PG_anon marks the mapping an anon_vma).
_STRUCT_PAGE_FIELDS = ("flags", "_count", "_mapcount", "mapping", "index", "private",
                       "lru_prev", "lru_next")
_MEMMAP_FLAGS = PG_buddy | PG_anon
for _hv, _bit in _LINUX_PG_BITS:
    _MEMMAP_FLAGS |= _hv


def _watched_page_class(kmem: KmemContent) -> type:
    """The class of a struct page whose memmap frame a host has read (KmemContent.
    watch_memmap): a Page whose attribute writes are checked, reads untouched (the slots
    are Page's). NOTE: a struct page changes at almost every step of the kernel, so the
    check is paid only by the pages of frames read since their last change: the first
    write that changes what the bytes show tells `kmem.memmap_changed`, which writes
    the frame once and puts its pages back to the plain class."""
    slots = {name: Page.__dict__[name] for name in _STRUCT_PAGE_FIELDS}
    setslot = object.__setattr__
    flags_mask = _MEMMAP_FLAGS

    def __setattr__(self, name, value):
        slot = slots.get(name)
        if slot is None:
            setslot(self, name, value)
            return
        old = slot.__get__(self)
        slot.__set__(self, value)
        if old is value:
            return
        if old.__class__ is int and value.__class__ is int:
            if name == "flags":
                if not (old ^ value) & flags_mask:
                    return  # hvsim's own flags: nothing the bytes show
            elif old == value:
                return
        kmem.memmap_changed(self.pfn)

    return type("WatchedPage", (Page,), {"__slots__": (), "__setattr__": __setattr__,
                                         "__module__": __name__})


class MemmapPage(_LivePage):
    """The memmap frame describing pfns first_pfn .. first_pfn + PAGE_SIZE // per - 1.

    Its bytes follow the struct pages: reading it (materialize) watches them, and the
    first change of one writes the frame (KmemContent.memmap_changed)."""

    __slots__ = ("first_pfn",)

    def __init__(self, kmem: KmemContent, pfn: int, first_pfn: int) -> None:
        self.kmem = kmem
        self.pfn = pfn
        self.first_pfn = first_pfn

    def materialize(self) -> bytes:
        kmem = self.kmem
        kmem.fresh.add(self.pfn)
        data = self._bytes()
        kmem.watch_memmap(self)
        return data

    def _bytes(self) -> bytes:
        # NOTE: built as an array of words, every struct page first as memmap_init's
        # init_single_page left it, then the descriptors in use written over theirs
        # (per page a handful of list operations: a host hashes every memmap frame)
        kmem = self.kmem
        alloc = kmem.kernel.page_alloc
        layout = kmem.layout
        nr = alloc.nr_pages
        wide = layout.arch == "x86_64"
        per = 64 if wide else 32
        first = self.first_pfn
        last = min(first + PAGE_SIZE // per, nr)
        cnt = last - first
        if cnt <= 0:
            return ZERO_PAGE
        typ, mask = ("Q", _MASK64) if wide else ("I", 0xFFFFFFFF)
        arr = array(typ, bytes(PAGE_SIZE))
        top = cnt * 8
        zbits = alloc.zone_of(first).idx << (ZONES_SHIFT_POS if wide else 30)
        arr[0:top:8] = array(typ, [zbits & mask]) * cnt
        sp0 = layout.struct_page(first) + 8
        lru = array(typ, range(sp0, sp0 + cnt * per, per))
        arr[1:top:8] = lru
        arr[2:top:8] = lru
        if wide:
            arr[6:top:8] = array(typ, [0xFFFFFFFF | (1 << 32)]) * cnt  # _mapcount -1, _refcount 1
        else:
            arr[6:top:8] = array(typ, [0xFFFFFFFF]) * cnt
            arr[7:top:8] = array(typ, [1]) * cnt
        reserved = alloc.reserved
        if any(reserved[first:last]):
            for i in range(cnt):
                if reserved[first + i]:
                    arr[i * 8] |= 1 << 11  # PG_reserved: memblock kept it
        flag_map = kmem.flag_map
        anon_ptrs = kmem.anon_ptrs
        file_ptrs = kmem.file_ptrs
        vmemmap = layout.vmemmap_base if wide else layout.struct_page(0)
        page_cls = Page
        watched = kmem.watched_page
        for i, page in enumerate(alloc.mem_map[first:last]):
            if page is None:
                continue
            w = i * 8
            f = page.flags
            lf = flag_map.get(f)
            if lf is None:
                lf = flag_map[f] = linux_page_flags(f, 0)
            arr[w] = (lf | zbits) & mask
            sp = sp0 + i * per
            nxt, prv = page.lru_next, page.lru_prev
            arr[w + 1] = ((vmemmap + nxt.pfn * per + 8)
                          if nxt.__class__ is page_cls or nxt.__class__ is watched
                          else self._list_ptr(nxt, sp)) & mask
            arr[w + 2] = ((vmemmap + prv.pfn * per + 8)
                          if prv.__class__ is page_cls or prv.__class__ is watched
                          else self._list_ptr(prv, sp)) & mask
            m = page.mapping
            if m is not None:
                if f & PG_anon:
                    # anon_vma (PAGE_MAPPING_ANON in bit 0): one per 2 MiB of the page's
                    # virtual addresses stands in for the mm's anon_vmas
                    key = page.index >> 9
                    v = anon_ptrs.get(key)
                    if v is None:
                        v = anon_ptrs[key] = (self._obj_ptr(f"anon/{key}") | 1) & mask
                else:
                    key = getattr(getattr(m, "host", None), "ino", 0)
                    v = file_ptrs.get(key)
                    if v is None:
                        v = file_ptrs[key] = self._obj_ptr(f"mapping/{key}") & mask
                arr[w + 3] = v
            arr[w + 4] = page.index & mask
            priv = page.private
            arr[w + 5] = priv & mask if priv.__class__ is int else 0
            mapcount = PAGE_TYPE_BUDDY if f & PG_buddy else page._mapcount & 0xFFFFFFFF
            if wide:
                arr[w + 6] = mapcount | (page._count & 0xFFFFFFFF) << 32
            else:
                arr[w + 6] = mapcount
                arr[w + 7] = page._count & 0xFFFFFFFF
        return arr.tobytes()

    def _obj_ptr(self, name: str) -> int:
        layout = self.kmem.layout
        h = _xxh64(f"kmem/ptr/{name}".encode())
        return layout.page_offset_base + ((h % max(layout.memory, PAGE_SIZE)) & ~63)

    def _list_ptr(self, link, sp: int) -> int:
        """The address a struct page's lru list_head points at: another struct page's
        lru, a list head (a zone's free area, an LRU list), or the slab cache and slab
        (SLAB reuses lru for them); empty: itself."""
        layout = self.kmem.layout
        if link is None:
            return sp + 8
        pfn = getattr(link, "pfn", None)
        if pfn.__class__ is int:
            return layout.struct_page(pfn) + 8
        addr = getattr(link, "addr", 0)
        if addr:
            return layout.kptr(addr)
        name = getattr(link, "name", "") or link.__class__.__name__
        return layout.text(0x2A00000 + (_xxh64(f"kmem/list/{name}".encode()) & 0x1FFFF8))


# --------------------------------------------------------------------------- stacks
class KernelStackPage(LazyPage):
    """Page `index` (0 = lowest address) of the kernel stack of task `pid`, written once
    when the task is created. Bytes are fixed: the task's kernel entries and exits are
    not modelled."""

    __slots__ = ("layout", "pid", "index", "nr", "stack_addr", "_data")

    def __init__(self, layout: KernelLayout, pid: int, index: int, nr: int, stack_addr: int) -> None:
        self.layout = layout
        self.pid = pid
        self.index = index
        self.nr = nr
        self.stack_addr = stack_addr
        self._data = None

    def materialize(self) -> bytes:
        d = self._data
        if d is None:
            d = self._data = self._make()
        return d

    def _make(self) -> bytes:
        layout = self.layout
        word = layout.ptr_size
        fmt = "<Q" if word == 8 else "<I"
        buf = bytearray(PAGE_SIZE)
        if self.index == 0:
            struct.pack_into("<I", buf, 0, STACK_END_MAGIC)  # end_of_stack()
        if self.index == self.nr - 1:
            h = _xxh64(f"kmem/stack/{self.pid}".encode())
            top = PAGE_SIZE - PT_REGS_SIZE[layout.arch]
            # struct pt_regs: user registers (small values, user addresses), as left by
            # the task's last system-call entry
            for i in range(PT_REGS_SIZE[layout.arch] // word):
                h = (h * 0x9E3779B97F4A7C15 + i) & _MASK64
                x = h ^ (h >> 29)
                if i % 3 == 0:
                    v = (0x7FFC00000000 + (x & 0xFFFFFFF8)) if word == 8 else 0xBF000000 + (x & 0xFFFFF8)
                elif i % 3 == 1:
                    v = x & 0xFFF
                else:
                    v = 0
                struct.pack_into(fmt, buf, top + i * word, v & (_MASK64 if word == 8 else 0xFFFFFFFF))
            # call frames below it: saved frame pointers into this stack and return
            # addresses into kernel text (schedule, syscall entry, ...)
            sp = layout.kptr(self.stack_addr) + (self.nr - 1) * PAGE_SIZE
            pos = top - 8 * word
            for j in range(24):
                h = (h * 0x9E3779B97F4A7C15 + j) & _MASK64
                if pos < word * 2:
                    break
                struct.pack_into(fmt, buf, pos, (sp + pos + 6 * word) & (_MASK64 if word == 8 else 0xFFFFFFFF))
                struct.pack_into(fmt, buf, pos + word,
                                 layout.text((h >> 20) % (14 << 20)) & (_MASK64 if word == 8 else 0xFFFFFFFF))
                pos -= 6 * word
        return bytes(buf)
