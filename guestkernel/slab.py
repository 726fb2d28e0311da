"""The classic SLAB allocator (Linux 2.6.20 mm/slab.c), the one the course describes.

Overview
--------
A `KmemCache` (struct kmem_cache) hands out objects of one size. Its memory comes in slabs:
blocks of 2**gfporder pages from the page allocator, each carved into `num` objects of
`buffer_size` bytes. Objects are kernel virtual addresses (ints) in the direct map:

    obj = page_address(first page of the slab) + colouroff + idx * buffer_size

with the slab's `s_mem` = page_address + colouroff. A slab's management data (`Slab`,
struct slab, followed by one kmem_bufctl_t per object) lives either at the start of the
slab ("on-slab", s_mem after it) or in an object of a kmalloc cache ("off-slab",
`slabp_cache`). The bufctl array chains the free objects: `free` is the index of the first
free object, bufctl[i] the next one, BUFCTL_END ends the chain.

Every page of a slab carries PG_slab, and its `lru_next`/`lru_prev` point at the cache and
the slab (page_set_cache/page_set_slab: slab pages are on no page list, so 2.6 reuses the
list_head), which is how kfree() finds the cache and slab of any object.

Per node, a `KmemList3` (kmem_list3) keeps the slabs on three lists by use: slabs_full,
slabs_partial, slabs_free, and counts `free_objects` (free objects in those slabs).
Per CPU, an `ArrayCache` (array_cache) is a LIFO stack of free objects: kmem_cache_alloc
pops it, kmem_cache_free pushes it; only when it is empty (refill `batchcount` objects:
the node's shared array first, then partial slabs, then free slabs, growing the cache by a
slab if needed) or full (flush `batchcount` of the oldest entries to the shared array, or
back into their slabs with free_block) does the slab layer proper run. An emptied slab is
destroyed at once if the node already has more than `free_limit` free objects.

Slabs are coloured: successive slabs of a cache start their objects at offsets
0, colour_off, 2*colour_off, ... (colour_next cycles through `colour` values), using the
bytes a slab would waste anyway so that objects of different slabs fall on different
cache lines.

`cache_reap()` (every 2 s per CPU in Linux, `CacheReaper` here) gives memory back: it
drains a fifth of every per-CPU array not touched since the last pass, every 4 s the
shared array likewise, and destroys a fifth of the node's free slabs unless the free list
was used since the last pass.

Bootstrap (kmem_cache_init): `cache_cache`, the cache of kmem_cache descriptors, is built
statically first; then the general caches size-32 .. size-131072 and their DMA twins are
created with one-entry boot arrays; finally every cache gets its real per-CPU arrays,
shared array and kmem_list3 from kmalloc (as enable_cpucache does), so kmalloc caches hold
the allocator's own metadata exactly as on a real 2.6 kernel. Every later
kmem_cache_create takes its descriptor from cache_cache.

Invariants (checked by `validate_slab`): every object of a slab is exactly once either
free in its slab's bufctl chain, in a per-CPU or shared array, or allocated; `inuse`
matches the chain; a slab is on slabs_full iff inuse == num, slabs_free iff inuse == 0,
slabs_partial otherwise; free_objects is the number of free objects in the node's slabs;
every page of a slab has PG_slab and points back at its cache and slab.

Entry points: kmem_cache_create / kmem_cache_alloc / kmem_cache_free / kmem_cache_shrink
/ kmem_cache_destroy, kmalloc / kfree, cache_reap (the reaper's pass), shrink_slab (for
reclaim), slabinfo / slabinfo_write (/proc/slabinfo). Alloc and free take an optional
`cpu` (default 0): the CPU whose array is used. `reclaimed_slab` counts every page the
slab layer gave back (reclaim_state->reclaimed_slab). Nothing here sleeps or costs time
itself; page allocations may, and add to kernel.stall. A page allocation may recurse into
reclaim and from there into shrink_slab: every path re-reads the arrays after growing.

Bytes: every slab page is stored into its frame as a `kmem.SlabPage` when the slab is
grown (kmem.py): the descriptor and bufctl array, and each allocated object's bytes.
`Slab.gens[i]` is the allocation that last wrote object i (0 never, -1 zeroed by
init_on_free); an allocation or free tests whether a host has read the page since.

Where hvsim departs from 2.6.20 (all documented where they happen): one sizeof(struct
kmem_cache) built for NR_CPUS = cpus and MAX_NUMNODES = nodes; no alien caches on NUMA (a
remote free goes straight to free_block on the slab's node); size-96 is kept although
Linux only builds it when L1_CACHE_BYTES < 64; double frees and foreign frees are always
caught (like CONFIG_DEBUG_SLAB's redzones) and raise `KernelBug`.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

from .gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
    GFP_NOWAIT,
    GFP_ZONEMASK,
)
from .kmem import SlabPage
from .page import Page, PageList, PG_slab
from .page_alloc import KernelBug
from .units import PAGE_SIZE

# NOTE: plain aliases: a __name inside a class body would be name-mangled.
GFP_DMA_BIT = __GFP_DMA
GFP_ZERO_BIT = __GFP_ZERO
GFP_COMP_BIT = __GFP_COMP
GFP_RECLAIMABLE_BIT = __GFP_RECLAIMABLE

__all__ = [
    "KernelBug",
    "SlabAllocator",
    "KmemCache",
    "KmemList3",
    "ArrayCache",
    "Slab",
    "SlabGeometry",
    "calculate_slab_geometry",
    "cache_estimate",
    "validate_slab",
    "CacheReaper",
]

# kmem_cache_create flags (include/linux/slab.h, 2.6.20 values)
SLAB_HWCACHE_ALIGN = 0x00002000  # align objects on a cache line
SLAB_CACHE_DMA = 0x00004000  # slabs from ZONE_DMA (GFP_DMA)
SLAB_RECLAIM_ACCOUNT = 0x00020000  # counted as NR_SLAB_RECLAIMABLE; order-0 slabs
SLAB_PANIC = 0x00040000  # panic if kmem_cache_create fails
SLAB_DESTROY_BY_RCU = 0x00080000  # accepted; hvsim has no RCU grace period
SLAB_MEM_SPREAD = 0x00100000  # accepted; no cpuset spreading in hvsim
SLAB_ACCOUNT = 0x04000000  # (4.5+) objects charged to current's memcg (memcontrol.py)
CREATE_MASK = (
    SLAB_HWCACHE_ALIGN | SLAB_CACHE_DMA | SLAB_RECLAIM_ACCOUNT | SLAB_PANIC
    | SLAB_DESTROY_BY_RCU | SLAB_MEM_SPREAD | SLAB_ACCOUNT
)
CFLGS_OFF_SLAB = 0x80000000  # internal: the slab descriptor lives in slabp_cache

ARCH_KMALLOC_FLAGS = SLAB_HWCACHE_ALIGN  # the general caches are cache-line aligned

# Sizes of the 2.6.20 structures, bytes.
BYTES_PER_WORD = {"x86_64": 8, "i386": 4}  # sizeof(void *)
CACHE_LINE_SIZE = 64  # cache_line_size() = L1_CACHE_BYTES
# struct slab { list_head list; unsigned long colouroff; void *s_mem; unsigned int inuse;
#               kmem_bufctl_t free; unsigned short nodeid; }
# x86_64: 16 + 8 + 8 + 4 + 4 + 2 = 42, padded to the 8-byte alignment of its pointers: 48.
# i386:    8 + 4 + 4 + 4 + 4 + 2 = 26, padded to 4: 28. (nodeid came with the NUMA slab
# allocator in 2.6.14, so 2.6.20 has it: without it x86_64 would be 40 and i386 24.)
SIZEOF_SLAB = {"x86_64": 48, "i386": 28}
SIZEOF_BUFCTL = 4  # kmem_bufctl_t is an unsigned int
# struct array_cache { avail, limit, batchcount, touched (4 x u32); spinlock_t lock (u32);
#                      void *entry[]; }: 20 bytes, entry[] aligned to a pointer.
SIZEOF_ARRAY_CACHE = {"x86_64": 24, "i386": 20}
# struct kmem_list3: three list_heads, free_objects (ulong), free_limit, colour_next,
# list_lock (u32 each), shared, alien (pointers), next_reap (ulong), free_touched (int).
SIZEOF_KMEM_LIST3 = {"x86_64": 104, "i386": 56}
BUFCTL_END = 0xFFFFFFFF  # ((kmem_bufctl_t)(~0U)) - 0
SLAB_LIMIT = 0xFFFFFFFC  # most objects one slab may hold

MAX_GFP_ORDER = 5  # largest slab: 32 pages
MAX_OBJ_SIZE = PAGE_SIZE << MAX_GFP_ORDER  # 131072 bytes: the largest object
BREAK_GFP_ORDER_HI = 1  # slab_break_gfp_order with more than 32 MiB of RAM
BREAK_GFP_ORDER_LO = 0
BOOT_CPUCACHE_ENTRIES = 1  # per-CPU array size while the general caches are built
BATCHREFILL_LIMIT = 16  # an untouched array refills at most this many objects
REAPTIMEOUT_CPUC = 2.0  # seconds between cache_reap passes of one CPU
REAPTIMEOUT_LIST3 = 4.0  # seconds between reaps of a node's shared array and free slabs
HZ = 250  # jiffies per second: the reap stagger ((unsigned long)cachep % REAPTIMEOUT_LIST3)

# kmalloc size classes (include/linux/kmalloc_sizes.h with 4 KiB pages). Linux builds
# size-96 only when L1_CACHE_BYTES < 64; the course's list keeps it (with 64-byte lines
# its objects are cache-line aligned to 128 bytes).
KMALLOC_SIZES = (
    32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072,
)


def _align(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def sizeof_kmem_cache(arch: str, nr_cpus: int, nr_nodes: int) -> int:
    """sizeof(struct kmem_cache) of 2.6.20, bytes, built with NR_CPUS = nr_cpus and
    MAX_NUMNODES = nr_nodes (a kernel configured for exactly this guest).

    x86_64: array[NR_CPUS] (8 each), five u32 tunables (20, padded to 24),
    nodelists[MAX_NUMNODES] (8 each), then flags..next: 88 bytes.
    i386: array (4 each), 20, nodelists (4 each), then 56 bytes.
    """
    if arch == "x86_64":
        return 8 * nr_cpus + 24 + 8 * nr_nodes + 88
    return 4 * nr_cpus + 20 + 4 * nr_nodes + 56


# ---------------------------------------------------------------------------- sizing


def cache_estimate(gfporder: int, buffer_size: int, align: int, off_slab: bool,
                   arch: str = "x86_64") -> tuple[int, int]:
    """(num, left_over): objects per slab of 2**gfporder pages and the bytes left over.

    Off-slab: num = slab bytes / buffer_size. On-slab the slab also holds struct slab and
    one bufctl per object, padded to `align`: first guess (slab - sizeof(slab)) /
    (size + 4), one less if the padded management area does not fit.
    """
    slab_bytes = PAGE_SIZE << gfporder
    if off_slab:
        mgmt = 0
        num = min(slab_bytes // buffer_size, SLAB_LIMIT)
    else:
        sizeof_slab = SIZEOF_SLAB[arch]
        num = (slab_bytes - sizeof_slab) // (buffer_size + SIZEOF_BUFCTL)
        if _align(sizeof_slab + num * SIZEOF_BUFCTL, align) + num * buffer_size > slab_bytes:
            num -= 1
        num = min(num, SLAB_LIMIT)
        mgmt = _align(sizeof_slab + num * SIZEOF_BUFCTL, align)
    return num, slab_bytes - num * buffer_size - mgmt


@dataclass(frozen=True)
class SlabGeometry:
    """The layout kmem_cache_create computes for one cache. All sizes in bytes."""

    buffer_size: int  # object size after word / cache-line alignment
    align: int  # final object alignment
    num: int  # objects per slab (0: the size cannot be served)
    gfporder: int  # slab = 2**gfporder pages
    left_over: int  # bytes of a slab used by neither objects nor on-slab management
    off_slab: bool  # slab descriptor kept in a kmalloc object (slabp_cache)
    slab_size: int  # struct slab + bufctl array (aligned when on-slab)
    colour_off: int  # colour step: max(cache line, align)
    colour: int  # number of colours: left_over // colour_off


def calculate_slab_geometry(
    size: int,
    align: int = 0,
    flags: int = 0,
    *,
    arch: str = "x86_64",
    slab_break_gfp_order: int = BREAK_GFP_ORDER_HI,
    offslab_limit: int | None = None,
    early: bool = False,
) -> SlabGeometry:
    """kmem_cache_create's sizing and calculate_slab_order, as a pure function.

    1. size rounded up to a word (8 bytes x86_64, 4 i386).
    2. alignment: SLAB_HWCACHE_ALIGN starts from the 64-byte cache line and halves it while
       size <= align/2; otherwise a word; a larger caller `align` wins.
    3. off-slab descriptor if size >= PAGE_SIZE/8 (512 B), except during early boot.
    4. size rounded up to the alignment; then for order 0..5 the first order with num > 0
       is kept, and the search stops there if the cache is SLAB_RECLAIM_ACCOUNT, if
       order >= slab_break_gfp_order, or if left_over * 8 <= slab bytes; an off-slab slab
       may not exceed offslab_limit objects (the bufctls of the largest on-slab kmalloc
       cache, (256 - sizeof(struct slab)) / 4 after boot).
    5. slab_size = ALIGN(num*4 + sizeof(struct slab), align); an off-slab descriptor that
       fits in left_over moves back on-slab (left_over -= slab_size). A descriptor that
       stays off-slab is not padded.
    6. colour_off = max(cache line, align); colour = left_over // colour_off.
    """
    word = BYTES_PER_WORD[arch]
    if offslab_limit is None:
        offslab_limit = (256 - SIZEOF_SLAB[arch]) // SIZEOF_BUFCTL
    if size & (word - 1):
        size = (size + word - 1) & ~(word - 1)
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = CACHE_LINE_SIZE
        while size <= ralign // 2:
            ralign //= 2
    else:
        ralign = word
    if ralign < align:
        ralign = align
    align = ralign
    off_slab = size >= (PAGE_SIZE >> 3) and not early
    size = _align(size, align)

    num = 0
    gfporder = 0
    left_over = 0
    for order in range(MAX_GFP_ORDER + 1):
        n, remainder = cache_estimate(order, size, align, off_slab, arch)
        if not n:
            continue
        if off_slab and n > offslab_limit:
            break  # more bufctls than the largest on-slab kmalloc cache could hold
        num, gfporder, left_over = n, order, remainder
        if flags & SLAB_RECLAIM_ACCOUNT:
            break  # reclaimable (GFP_NOFS-heavy) caches stay at order 0
        if order >= slab_break_gfp_order:
            break
        if left_over * 8 <= (PAGE_SIZE << order):
            break  # acceptable internal fragmentation

    slab_size = _align(num * SIZEOF_BUFCTL + SIZEOF_SLAB[arch], align)
    if off_slab and left_over >= slab_size:
        off_slab = False  # room for the descriptor: on-slab, at the cost of colours
        left_over -= slab_size
    if off_slab:
        slab_size = num * SIZEOF_BUFCTL + SIZEOF_SLAB[arch]
    colour_off = max(CACHE_LINE_SIZE, align)
    return SlabGeometry(
        buffer_size=size,
        align=align,
        num=num,
        gfporder=gfporder,
        left_over=left_over,
        off_slab=off_slab,
        slab_size=slab_size,
        colour_off=colour_off,
        colour=left_over // colour_off,
    )


def enable_cpucache_tunables(buffer_size: int, smp: bool) -> tuple[int, int, int]:
    """(limit, batchcount, shared) that enable_cpucache picks for an object size (bytes).

    limit: 1 above 128 KiB, 8 above a page, 24 above 1 KiB, 54 above 256 B, else 120;
    batchcount = (limit + 1) / 2; shared = 8 on SMP for objects up to a page, else 0.
    """
    if buffer_size > 131072:
        limit = 1
    elif buffer_size > PAGE_SIZE:
        limit = 8
    elif buffer_size > 1024:
        limit = 24
    elif buffer_size > 256:
        limit = 54
    else:
        limit = 120
    shared = 8 if smp and buffer_size <= PAGE_SIZE else 0
    return limit, (limit + 1) // 2, shared


# ---------------------------------------------------------------------------- structures


class ArrayCache:
    """struct array_cache: a LIFO stack of free objects (entry[-1] is the top).

    `addr` is the kmalloc object holding it (0 for the static boot arrays).
    """

    __slots__ = ("limit", "batchcount", "touched", "entry", "addr")

    def __init__(self, limit: int, batchcount: int, addr: int = 0) -> None:
        self.limit = limit
        self.batchcount = batchcount
        self.touched = 0
        self.entry: list[int] = []
        self.addr = addr

    @property
    def avail(self) -> int:
        return len(self.entry)

    def __repr__(self) -> str:
        return (
            f"<ArrayCache avail={len(self.entry)} limit={self.limit} "
            f"batchcount={self.batchcount} touched={self.touched}>"
        )


class Slab:
    """struct slab plus its bufctl array. Linked on a KmemList3 list through lru_prev /
    lru_next (the same list_head protocol as `PageList`).

    colouroff: bytes from the slab's first page to s_mem (colour offset, plus slab_size
    when the descriptor is on-slab). addr: the descriptor's own address (in the slab, or a
    slabp_cache object). page: the slab's first page.
    """

    __slots__ = (
        "lru_prev", "lru_next", "colouroff", "s_mem", "inuse", "free", "bufctl", "nodeid",
        "page", "addr", "gens", "content",
    )

    def __init__(self, page: Page, colouroff: int, s_mem: int, num: int, nodeid: int,
                 addr: int) -> None:
        self.lru_prev = None
        self.lru_next = None
        self.page = page
        self.colouroff = colouroff
        self.s_mem = s_mem
        self.inuse = 0
        self.free = 0
        # cache_init_objs: bufctl[i] = i + 1, the last one BUFCTL_END
        self.bufctl = list(range(1, num)) + [BUFCTL_END]
        self.nodeid = nodeid
        self.addr = addr
        # object bytes (kmem.SlabPage): per object, the allocation that wrote it (0: never
        # allocated, -1: zeroed by init_on_free); the slab's pages' recipes
        self.gens = [0] * num
        self.content: list = []

    def __repr__(self) -> str:
        return f"<Slab s_mem={self.s_mem:#x} inuse={self.inuse} free={self.free}>"


class KmemList3:
    """struct kmem_list3: one node's slabs of one cache."""

    __slots__ = (
        "slabs_partial", "slabs_full", "slabs_free", "free_objects", "free_limit",
        "colour_next", "shared", "next_reap", "free_touched", "nodeid", "addr",
    )

    def __init__(self, nodeid: int) -> None:
        self.slabs_partial = PageList("slabs_partial")
        self.slabs_full = PageList("slabs_full")
        self.slabs_free = PageList("slabs_free")
        self.free_objects = 0  # free objects in this node's slabs (not in arrays)
        self.free_limit = 0  # above this many free objects an emptied slab is destroyed
        self.colour_next = 0  # colour of the next slab grown on this node
        self.shared: ArrayCache | None = None  # the node's shared array
        self.next_reap = 0.0  # simulated seconds: next reap of shared array and free slabs
        self.free_touched = 0  # slabs_free used since the last reap
        self.nodeid = nodeid
        self.addr = 0  # kmalloc object holding it (0: the static boot kmem_list3)


class KmemCache:
    """struct kmem_cache: one cache of equal-sized objects. Sizes in bytes."""

    def __init__(self, name: str, obj_size: int, geometry: SlabGeometry, flags: int, ctor,
                 nr_cpus: int, nr_nodes: int) -> None:
        self.name = name
        self.obj_size = obj_size  # the size the creator asked for
        self.buffer_size = geometry.buffer_size  # objsize in /proc/slabinfo
        self.align = geometry.align
        self.num = geometry.num
        self.gfporder = geometry.gfporder
        self.colour = geometry.colour
        self.colour_off = geometry.colour_off
        self.slab_size = geometry.slab_size
        self.left_over = geometry.left_over
        self.flags = flags | (CFLGS_OFF_SLAB if geometry.off_slab else 0)
        self.gfpflags = GFP_DMA_BIT if flags & SLAB_CACHE_DMA else 0  # forced GFP flags
        if flags & SLAB_RECLAIM_ACCOUNT:
            self.gfpflags |= GFP_RECLAIMABLE_BIT  # __kmem_cache_create(): reclaimable pageblocks
        self.ctor = ctor  # called as ctor(obj) on every object of a new slab
        self.slabp_cache: KmemCache | None = None
        # tunables (enable_cpucache)
        self.limit = BOOT_CPUCACHE_ENTRIES
        self.batchcount = 1
        self.shared = 0
        self.array: list[ArrayCache] = [
            ArrayCache(BOOT_CPUCACHE_ENTRIES, 1) for _ in range(nr_cpus)
        ]
        self.nodelists: list[KmemList3] = [KmemList3(n) for n in range(nr_nodes)]
        self.addr = 0  # this descriptor's object in cache_cache (0: the static cache_cache)
        self.live: set[int] = set()  # objects handed out (the debug redzones' job)
        self.dead = False
        # statistics (STATS in mm/slab.c)
        self.num_allocations = 0
        self.allochit = 0
        self.allocmiss = 0
        self.freehit = 0
        self.freemiss = 0
        self.grown = 0  # slabs grown
        self.reaped = 0  # slabs destroyed by cache_reap
        self.errors = 0  # failed grows
        self.high_mark = 0  # most objects ever allocated at once

    @property
    def off_slab(self) -> bool:
        return bool(self.flags & CFLGS_OFF_SLAB)

    @property
    def pages_per_slab(self) -> int:
        return 1 << self.gfporder

    def slabs(self):
        """Every slab of the cache: (node, list name, slab)."""
        for l3 in self.nodelists:
            for lname in ("slabs_full", "slabs_partial", "slabs_free"):
                for slab in getattr(l3, lname):
                    yield l3.nodeid, lname, slab

    def __repr__(self) -> str:
        return f"<KmemCache {self.name} size={self.buffer_size} num={self.num}>"


# ---------------------------------------------------------------------------- allocator


class SlabAllocator:
    """The slab allocator of one guest kernel.

    Uses kernel.alloc_pages / free_pages / page_address / virt_to_page, kernel.config
    (arch, cpus, memory) and kernel.vmstat (nr_slab_reclaimable / nr_slab_unreclaimable,
    pages). `cpu` arguments name the CPU doing the work (default 0).
    """

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        cfg = kernel.config
        self.arch = cfg.arch
        self.nr_cpus = cfg.cpus
        self.word = BYTES_PER_WORD[self.arch]
        pa = getattr(kernel, "page_alloc", None)
        # the CPU the caller runs on (smp_processor_id): page_alloc.current_cpu, which
        # follows the task in the kernel (Kernel.current_cpu; 0 for kernel threads)
        self._pa = pa if hasattr(pa, "current_cpu") else None
        nodes = getattr(pa, "nodes", None)
        self.nr_nodes = len(nodes) if nodes else 1
        if self.nr_nodes > 1:
            self.cpu_to_node = list(pa.cpu_to_node)
        else:
            self.cpu_to_node = [0] * self.nr_cpus
        self.cpus_on_node = [self.cpu_to_node.count(n) for n in range(self.nr_nodes)]
        # NUMA: each CPU's reap rotor over the nodes (per-CPU reap_node; init_reap_node:
        # the node after the CPU's own); 2.6.16-2.6.21 drain one remote node's per-CPU
        # page lists a pass with it (next_reap_node -> drain_node_pages)
        self.reap_node = [(self.cpu_to_node[cpu] + 1) % self.nr_nodes for cpu in range(self.nr_cpus)]
        self.drain_remote_pages = self.nr_nodes > 1 and cfg.era == "2.6"
        # Fragmentation resistance on small machines: bigger slab orders only above 32 MiB.
        self.slab_break_gfp_order = (
            BREAK_GFP_ORDER_HI if cfg.memory > (32 << 20) else BREAK_GFP_ORDER_LO
        )
        self.offslab_limit = 0  # raised while the on-slab general caches are built
        self.slab_early_init = True  # no off-slab caches until the first kmalloc caches exist
        self.booting = True  # boot arrays and static kmem_list3s until kmem_cache_init ends
        self.cache_chain: list[KmemCache] = []  # newest first (list_add), as /proc shows
        self.malloc_sizes: list[int] = []
        self.size_caches: list[KmemCache] = []
        self.size_dma_caches: list[KmemCache] = []
        self.vmstat = kernel.vmstat
        self.vmstat.setdefault("nr_slab_reclaimable", 0)
        self.vmstat.setdefault("nr_slab_unreclaimable", 0)
        self.clock = 0.0  # simulated seconds of the last cache_reap (without an env)
        self.reclaimed_slab = 0  # pages freed by the slab layer (reclaim_state->reclaimed_slab)
        self.nr_slab_pages = 0  # pages held in slabs right now
        self.kmem = getattr(kernel, "kmem", None)  # slab pages' bytes (kmem.py), if kept
        # init_on_alloc= / init_on_free= (5.3+): slab_want_init_on_alloc / _on_free
        self.init_on_alloc = bool(getattr(kernel.config, "init_on_alloc", False))
        self.init_on_free = bool(getattr(kernel.config, "init_on_free", False))
        # memcg_kmem_enabled: the memory controller once a child memcg is online
        # (memcontrol.memcg_online_kmem); the memcg slab hooks run from then on
        self.memcg_kmem = None
        self._memcg_inner = False
        if self.kmem is not None:
            self._mem_map = kernel.page_alloc.mem_map
            self._page_offset = kernel.page_alloc.page_offset
        self._kmem_cache_init()

    # ------------------------------------------------------------------ time
    def _now(self) -> float:
        env = getattr(self.kernel, "env", None)
        return env.now if env is not None else self.clock

    def _reap_stagger(self, cachep: KmemCache) -> float:
        # next_reap = jiffies + REAPTIMEOUT_LIST3 + ((unsigned long)cachep) % REAPTIMEOUT_LIST3
        return (cachep.addr % int(REAPTIMEOUT_LIST3 * HZ)) / HZ

    # ------------------------------------------------------------------ boot
    def _kmem_cache_init(self) -> None:
        arch = self.arch
        # 1) cache_cache: static, sized directly (order loop without the break rules).
        size = _align(sizeof_kmem_cache(arch, self.nr_cpus, self.nr_nodes), CACHE_LINE_SIZE)
        for order in range(MAX_GFP_ORDER + 1):
            num, left_over = cache_estimate(order, size, CACHE_LINE_SIZE, False, arch)
            if num:
                break
        geo = SlabGeometry(
            buffer_size=size, align=CACHE_LINE_SIZE, num=num, gfporder=order,
            left_over=left_over, off_slab=False,
            slab_size=_align(num * SIZEOF_BUFCTL + SIZEOF_SLAB[arch], CACHE_LINE_SIZE),
            colour_off=CACHE_LINE_SIZE, colour=left_over // CACHE_LINE_SIZE,
        )
        cc = KmemCache("kmem_cache", size, geo, 0, None, self.nr_cpus, self.nr_nodes)
        cc.shared = 1
        for l3 in cc.nodelists:
            l3.next_reap = self._now() + REAPTIMEOUT_LIST3
        self.cache_cache = cc
        self.cache_chain.insert(0, cc)

        # 2+3) the kmalloc caches: first the ones that will hold array caches and
        # kmem_list3s, then the rest in ascending order, each followed by its DMA twin.
        word = self.word
        index_ac = bisect_left(KMALLOC_SIZES, SIZEOF_ARRAY_CACHE[arch] + word * BOOT_CPUCACHE_ENTRIES)
        index_l3 = bisect_left(KMALLOC_SIZES, SIZEOF_KMEM_LIST3[arch])
        self.malloc_sizes = list(KMALLOC_SIZES)
        self.size_caches = [None] * len(KMALLOC_SIZES)
        self.size_dma_caches = [None] * len(KMALLOC_SIZES)
        flags = ARCH_KMALLOC_FLAGS | SLAB_PANIC
        for i in (index_ac, index_l3):
            if self.size_caches[i] is None:
                self.size_caches[i] = self._create_general(i, flags)
        self.slab_early_init = False
        for i in range(len(KMALLOC_SIZES)):
            if self.size_caches[i] is None:
                self.size_caches[i] = self._create_general(i, flags)
            self.size_dma_caches[i] = self.kmem_cache_create(
                f"size-{KMALLOC_SIZES[i]}(DMA)", KMALLOC_SIZES[i], 0, flags | SLAB_CACHE_DMA
            )

        # 4+5+6) real kmem_list3s and head arrays for every cache, from kmalloc.
        for cachep in list(self.cache_chain):
            for l3 in cachep.nodelists:
                if not l3.addr:
                    l3.addr = self._kmalloc_internal(SIZEOF_KMEM_LIST3[arch], l3.nodeid)
            if self._enable_cpucache(cachep):
                raise KernelBug(f"kmem_cache_init: enable_cpucache failed for {cachep.name}")
        self.booting = False

    def _create_general(self, i: int, flags: int) -> KmemCache:
        cachep = self.kmem_cache_create(f"size-{KMALLOC_SIZES[i]}", KMALLOC_SIZES[i], 0, flags)
        if not cachep.off_slab:
            # Inc off-slab bufctl limit until the ceiling is hit.
            self.offslab_limit = (KMALLOC_SIZES[i] - SIZEOF_SLAB[self.arch]) // SIZEOF_BUFCTL
        return cachep

    def _kmalloc_internal(self, size: int, node: int) -> int:
        """kmalloc_node for the allocator's own structures; a node's first CPU allocates."""
        cpu = self.cpu_to_node.index(node) if node in self.cpu_to_node else 0
        gfp = GFP_NOWAIT if self.booting else GFP_KERNEL
        obj = self.kmalloc(size, gfp, cpu)
        return obj or 0

    def _alloc_arraycache(self, node: int, entries: int, batchcount: int) -> ArrayCache | None:
        memsize = self.word * entries + SIZEOF_ARRAY_CACHE[self.arch]
        addr = self._kmalloc_internal(memsize, node)
        if not addr:
            return None
        return ArrayCache(entries, batchcount, addr)

    def _enable_cpucache(self, cachep: KmemCache) -> int:
        """enable_cpucache + do_tune_cpucache + alloc_kmemlist. Returns 0 or -ENOMEM."""
        limit, batchcount, shared = enable_cpucache_tunables(cachep.buffer_size,
                                                             self.nr_cpus > 1)
        return self._do_tune_cpucache(cachep, limit, batchcount, shared)

    def _do_tune_cpucache(self, cachep: KmemCache, limit: int, batchcount: int,
                          shared: int) -> int:
        new = []
        for cpu in range(self.nr_cpus):
            ac = self._alloc_arraycache(self.cpu_to_node[cpu], limit, batchcount)
            if ac is None:
                for a in new:
                    self.kfree(a.addr)
                return -12
            new.append(ac)
        old = cachep.array
        cachep.array = new
        cachep.batchcount = batchcount
        cachep.limit = limit
        cachep.shared = shared
        for cpu, ccold in enumerate(old):
            node = self.cpu_to_node[cpu]
            objs = ccold.entry
            ccold.entry = []
            self._free_block(cachep, objs, node)
            if ccold.addr:
                self.kfree(ccold.addr)
        return self._alloc_kmemlist(cachep)

    def _alloc_kmemlist(self, cachep: KmemCache) -> int:
        for l3 in cachep.nodelists:
            node = l3.nodeid
            new_shared = self._alloc_arraycache(node, cachep.shared * cachep.batchcount,
                                                0xBAADF00D)
            if new_shared is None:
                return -12
            if not l3.addr:
                l3.addr = self._kmalloc_internal(SIZEOF_KMEM_LIST3[self.arch], node)
                if not l3.addr:
                    self.kfree(new_shared.addr)
                    return -12
                l3.next_reap = self._now() + REAPTIMEOUT_LIST3 + self._reap_stagger(cachep)
            old = l3.shared
            l3.shared = new_shared
            l3.free_limit = (1 + self.cpus_on_node[node]) * cachep.batchcount + cachep.num
            if old is not None:
                objs = old.entry
                old.entry = []
                self._free_block(cachep, objs, node)
                if old.addr:
                    self.kfree(old.addr)
        return 0

    # ------------------------------------------------------------------ create / destroy
    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0,
                          ctor=None) -> KmemCache | None:
        """Create a cache of `size`-byte objects aligned to `align` bytes.

        Raises ValueError for a bad name, size (word .. 128 KiB), alignment, flag or a
        duplicate name. Returns None if memory for the cache cannot be had (KernelBug,
        the kernel's panic, with SLAB_PANIC).
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"kmem_cache_create: name must be a non-empty string, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, int) or not (
            self.word <= size <= MAX_OBJ_SIZE
        ):
            raise ValueError(
                f"kmem_cache_create: {name}: size must be {self.word}..{MAX_OBJ_SIZE} bytes, "
                f"got {size!r}"
            )
        if not isinstance(align, int) or align < 0 or align & (align - 1) or align > PAGE_SIZE:
            raise ValueError(
                f"kmem_cache_create: {name}: align must be 0 or a power of two up to "
                f"{PAGE_SIZE}, got {align!r}"
            )
        if not isinstance(flags, int) or flags & ~CREATE_MASK:
            raise ValueError(f"kmem_cache_create: {name}: unknown flags {flags:#x}")
        for pc in self.cache_chain:
            if pc.name == name:
                raise ValueError(f"kmem_cache_create: duplicate cache {name}")
        geo = calculate_slab_geometry(
            size, align, flags, arch=self.arch, slab_break_gfp_order=self.slab_break_gfp_order,
            offslab_limit=self.offslab_limit, early=self.slab_early_init,
        )
        if not geo.num:
            return self._create_failed(name, flags, "couldn't create cache")
        gfp = GFP_NOWAIT if self.booting else GFP_KERNEL
        addr = self.kmem_cache_alloc(self.cache_cache, gfp)
        if not addr:
            return self._create_failed(name, flags, "no memory for the descriptor")
        cachep = KmemCache(name, size, geo, flags, ctor, self.nr_cpus, self.nr_nodes)
        cachep.addr = addr
        if geo.off_slab:
            cachep.slabp_cache = self._find_general_cachep(geo.slab_size, 0)
        if not self.booting:
            if self._enable_cpucache(cachep):
                self._kmem_cache_release(cachep)
                return self._create_failed(name, flags, "no memory for the head arrays")
        else:
            for l3 in cachep.nodelists:
                l3.next_reap = self._now() + REAPTIMEOUT_LIST3 + self._reap_stagger(cachep)
        self.cache_chain.insert(0, cachep)
        return cachep

    def _create_failed(self, name: str, flags: int, why: str) -> None:
        if flags & SLAB_PANIC:
            raise KernelBug(f"kmem_cache_create(): failed to create slab `{name}' ({why})")
        return None

    def kmem_cache_destroy(self, cachep: KmemCache) -> None:
        """Shrink the cache and free it. ValueError if objects are still allocated (the
        cache stays usable and moves to the head of the cache chain, as in 2.6)."""
        if cachep is self.cache_cache or cachep in self.size_caches or \
                cachep in self.size_dma_caches:
            raise ValueError(f"kmem_cache_destroy: {cachep.name} is a static kernel cache")
        if cachep.dead or cachep not in self.cache_chain:
            raise ValueError(f"kmem_cache_destroy: {cachep.name} is not a live cache")
        self.cache_chain.remove(cachep)
        if self._cache_shrink(cachep):
            self.cache_chain.insert(0, cachep)
            raise ValueError(
                f"kmem_cache_destroy: cache {cachep.name}: can't free all objects "
                f"({len(cachep.live)} still allocated)"
            )
        self._kmem_cache_release(cachep)

    def _kmem_cache_release(self, cachep: KmemCache) -> None:
        """__kmem_cache_destroy: free the head arrays, kmem_list3s and the descriptor."""
        for ac in cachep.array:
            if ac.addr:
                self.kfree(ac.addr)
        cachep.array = [ArrayCache(0, 0) for _ in range(self.nr_cpus)]
        for l3 in cachep.nodelists:
            if l3.shared is not None and l3.shared.addr:
                self.kfree(l3.shared.addr)
            l3.shared = None
            if l3.addr:
                self.kfree(l3.addr)
                l3.addr = 0
        cachep.dead = True
        self.kmem_cache_free(self.cache_cache, cachep.addr)

    # ------------------------------------------------------------------ pages
    def _kmem_getpages(self, cachep: KmemCache, gfp: int, nodeid: int) -> Page | None:
        # Slab pages come from lowmem; only the cache's own zone modifier (GFP_DMA) counts.
        flags = (gfp & ~(GFP_ZONEMASK | GFP_ZERO_BIT | GFP_COMP_BIT)) | cachep.gfpflags
        if self.nr_nodes > 1:
            page = self.kernel.alloc_pages(flags, cachep.gfporder, nid=nodeid)
        else:
            page = self.kernel.alloc_pages(flags, cachep.gfporder)
        if page is None:
            return None
        nr = 1 << cachep.gfporder
        if cachep.flags & SLAB_RECLAIM_ACCOUNT:
            self.vmstat["nr_slab_reclaimable"] += nr
        else:
            self.vmstat["nr_slab_unreclaimable"] += nr
        self.nr_slab_pages += nr
        return page

    def _kmem_freepages(self, cachep: KmemCache, slab: Slab) -> None:
        page = slab.page
        nr = 1 << cachep.gfporder
        addr = self.kernel.page_address(page)
        virt_to_page = self.kernel.virt_to_page
        for i in range(nr):
            p = page if i == 0 else virt_to_page(addr + i * PAGE_SIZE)
            if not p.flags & PG_slab:
                raise KernelBug(f"kmem_freepages: {cachep.name}: page pfn {p.pfn:#x} lost PG_slab")
            p.flags &= ~PG_slab
            p.lru_next = None
            p.lru_prev = None
        if cachep.flags & SLAB_RECLAIM_ACCOUNT:
            self.vmstat["nr_slab_reclaimable"] -= nr
        else:
            self.vmstat["nr_slab_unreclaimable"] -= nr
        self.nr_slab_pages -= nr
        self.reclaimed_slab += nr
        self.kernel.free_pages(page, cachep.gfporder)

    def _slab_destroy(self, cachep: KmemCache, slab: Slab) -> None:
        self._kmem_freepages(cachep, slab)
        if cachep.flags & CFLGS_OFF_SLAB:
            self.kmem_cache_free(cachep.slabp_cache, slab.addr)

    def _cache_grow(self, cachep: KmemCache, gfp: int, nodeid: int) -> bool:
        """Add one slab to slabs_free of `nodeid`. False if no pages could be had."""
        l3 = cachep.nodelists[nodeid]
        offset = l3.colour_next
        l3.colour_next += 1
        if l3.colour_next >= cachep.colour:
            l3.colour_next = 0
        offset *= cachep.colour_off
        # kmem_flagcheck: a DMA cache must be asked with GFP_DMA and only a DMA cache may be.
        if bool(gfp & GFP_DMA_BIT) != bool(cachep.gfpflags & GFP_DMA_BIT):
            raise KernelBug(
                f"kmem_cache_alloc: {cachep.name}: GFP_DMA {'given' if gfp & GFP_DMA_BIT else 'missing'}"
                f" for a {'DMA' if cachep.gfpflags & GFP_DMA_BIT else 'non-DMA'} cache"
            )
        page = self._kmem_getpages(cachep, gfp, nodeid)
        if page is None:
            cachep.errors += 1
            return False
        objp = self.kernel.page_address(page)
        # alloc_slabmgmt
        if cachep.flags & CFLGS_OFF_SLAB:
            cpu = self.cpu_to_node.index(nodeid) if nodeid in self.cpu_to_node else 0
            # (cache_grow's local_flags: no __GFP_ZERO for the descriptor)
            desc = self.kmem_cache_alloc(cachep.slabp_cache, gfp & ~(GFP_DMA_BIT | GFP_ZERO_BIT), cpu)
            if not desc:
                self._kmem_freepages_raw(cachep, page)
                cachep.errors += 1
                return False
            colouroff = offset
        else:
            desc = objp + offset
            colouroff = offset + cachep.slab_size
        num = cachep.num
        slab = Slab(page, colouroff, objp + colouroff, num, nodeid, desc)
        # slab_map_pages: every page points at its cache and slab.
        virt_to_page = self.kernel.virt_to_page
        for i in range(1 << cachep.gfporder):
            p = page if i == 0 else virt_to_page(objp + i * PAGE_SIZE)
            p.flags |= PG_slab
            p.lru_next = cachep
            p.lru_prev = slab
        ctor = cachep.ctor
        if ctor is not None:
            s_mem = slab.s_mem
            size = cachep.buffer_size
            for i in range(num):
                ctor(s_mem + i * size)
        kmem = self.kmem
        if kmem is not None:
            # the slab's bytes: the page's earlier bytes, its descriptor and objects
            pfn = page.pfn
            cost = 0.0
            for i in range(1 << cachep.gfporder):
                recipe = SlabPage(kmem, cachep, slab, i, pfn + i, kmem.previous_bytes(pfn + i))
                slab.content.append(recipe)
                cost += kmem.store(pfn + i, recipe)
            self.kernel.page_alloc.stall += cost
        l3.slabs_free.add_tail(slab)
        l3.free_objects += num
        cachep.grown += 1
        return True

    def _obj_written(self, cachep: KmemCache, slab: Slab, obj: int) -> None:
        """An object of `slab` changed: the frames a host has read since get written."""
        fresh = self.kmem.fresh
        first = slab.page.pfn
        idx = (obj - slab.s_mem + slab.colouroff) >> 12
        for i in (idx, 0) if idx and not cachep.off_slab else (idx,):
            if first + i in fresh:
                self.kmem.changed(first + i, slab.content[i])

    def _kmem_freepages_raw(self, cachep: KmemCache, page: Page) -> None:
        """Give back pages of a slab that never got its descriptor (cache_grow's opps1)."""
        nr = 1 << cachep.gfporder
        if cachep.flags & SLAB_RECLAIM_ACCOUNT:
            self.vmstat["nr_slab_reclaimable"] -= nr
        else:
            self.vmstat["nr_slab_unreclaimable"] -= nr
        self.nr_slab_pages -= nr
        self.kernel.free_pages(page, cachep.gfporder)

    # ------------------------------------------------------------------ alloc
    def kmem_cache_alloc(self, cachep: KmemCache, gfp: int = GFP_KERNEL,
                         cpu: int | None = None) -> int | None:
        """An object (kernel virtual address) of `cachep`, or None if no pages could be had.
        ____cache_alloc: from the array of the CPU the caller runs on (cpu_cache_get:
        `cpu`, default the kernel's current CPU, smp_processor_id())."""
        if self.memcg_kmem is not None and not self._memcg_inner and (
                cachep.flags & SLAB_ACCOUNT or gfp & __GFP_ACCOUNT):
            return self._memcg_cache_alloc(cachep, gfp, cpu)
        if cpu is None:
            pa = self._pa
            cpu = pa.current_cpu if pa is not None else 0
        ac = cachep.array[cpu]
        entry = ac.entry
        if entry:
            cachep.allochit += 1
            ac.touched = 1
            obj = entry.pop()
        else:
            cachep.allocmiss += 1
            obj = self._cache_alloc_refill(cachep, gfp, cpu)
            if obj is None:
                return None
        live = cachep.live
        live.add(obj)
        cachep.num_allocations += 1
        if gfp & GFP_ZERO_BIT or self.init_on_alloc:
            self._init_on_alloc(cachep, gfp)
        kmem = self.kmem
        if kmem is not None:
            # the caller initialises the object: its bytes are this allocation's
            # NOTE: virt_to_page inlined (every slab page has its descriptor)
            slab = self._mem_map[(obj - self._page_offset) >> 12].lru_prev
            slab.gens[(obj - slab.s_mem) // cachep.buffer_size] = cachep.num_allocations
            if kmem.fresh:
                self._obj_written(cachep, slab, obj)
        if len(live) > cachep.high_mark:
            cachep.high_mark = len(live)
        return obj

    def _memcg_cache_alloc(self, cachep: KmemCache, gfp: int, cpu: int | None) -> int | None:
        """slab_alloc with an accounted cache or __GFP_ACCOUNT (6.1 mm/slab.h): the
        object's obj_full_size (its size and an obj_cgroup pointer) charged to current's
        memcg before the allocation (memcg_slab_pre_alloc_hook; a failed charge fails
        it), recorded with the object after (memcg_slab_post_alloc_hook)."""
        from . import memcontrol as M

        tree = self.memcg_kmem
        full = cachep.buffer_size + self.word  # obj_full_size: s->size + sizeof(objcg *)
        objcg = M.memcg_slab_pre_alloc_hook(tree, cachep, gfp, full)
        if objcg is False:
            return None
        self._memcg_inner = True  # the allocation itself, below the hooks
        try:
            obj = self.kmem_cache_alloc(cachep, gfp, cpu)
        finally:
            self._memcg_inner = False
        if objcg is not None:
            item = (M.NR_SLAB_RECLAIMABLE_B if cachep.flags & SLAB_RECLAIM_ACCOUNT
                    else M.NR_SLAB_UNRECLAIMABLE_B)  # cache_vmstat_idx
            nid = self.kernel.virt_to_page(obj).lru_prev.nodeid if obj is not None else 0
            M.memcg_slab_post_alloc_hook(tree, cachep, objcg, obj, full, item, nid)
        return obj

    def _init_on_alloc(self, cachep: KmemCache, gfp: int) -> None:
        """slab_post_alloc_hook (6.1): with `init` (slab_want_init_on_alloc: init_on_alloc
        on, unless the cache has a constructor (then none) or is SLAB_TYPESAFE_BY_RCU
        (then only for __GFP_ZERO); else __GFP_ZERO) memset(p, 0, object_size): the
        zeroing costs the allocating CPU page_zero_cost x object_size / 4096
        (phys.zero_bytes), added to kernel.stall as kernel_init_pages' pages are."""
        if self.init_on_alloc:
            if cachep.ctor is not None:
                return
            if cachep.flags & SLAB_DESTROY_BY_RCU and not gfp & GFP_ZERO_BIT:
                return
        alloc = self.kernel.page_alloc
        alloc.stall += alloc.phys.zero_bytes(cachep.obj_size)

    def _cache_alloc_refill(self, cachep: KmemCache, gfp: int, cpu: int) -> int | None:
        if cachep.dead:
            raise KernelBug(f"kmem_cache_alloc: cache {cachep.name} was destroyed")
        node = self.cpu_to_node[cpu]
        ac = cachep.array[cpu]
        while True:
            batchcount = ac.batchcount
            if not ac.touched and batchcount > BATCHREFILL_LIMIT:
                # Little recent activity: only a partial refill, to avoid refill bouncing.
                batchcount = BATCHREFILL_LIMIT
            l3 = cachep.nodelists[node]
            entry = ac.entry
            shared = l3.shared
            if shared is not None and shared.entry and self._transfer_objects(
                ac, shared, batchcount
            ):
                break
            size = cachep.buffer_size
            num = cachep.num
            while batchcount > 0:
                src = l3.slabs_partial
                slab = src.first()
                if slab is None:
                    l3.free_touched = 1
                    src = l3.slabs_free
                    slab = src.first()
                    if slab is None:
                        break  # must_grow
                bufctl = slab.bufctl
                s_mem = slab.s_mem
                while slab.inuse < num and batchcount > 0:
                    batchcount -= 1
                    free = slab.free
                    entry.append(s_mem + free * size)
                    slab.inuse += 1
                    slab.free = bufctl[free]
                # move the slab to the list its use now calls for
                src.remove(slab)
                if slab.free == BUFCTL_END:
                    l3.slabs_full.add(slab)
                else:
                    l3.slabs_partial.add(slab)
            l3.free_objects -= len(entry)
            if entry:
                break
            grown = self._cache_grow(cachep, gfp, node)
            # the page allocator may have run reclaim, which may have drained this array
            ac = cachep.array[cpu]
            if not grown:
                if not ac.entry:
                    return None
                break
            if ac.entry:
                break  # refilled meanwhile
            # retry: the new slab is on slabs_free now
        ac.touched = 1
        return ac.entry.pop()

    @staticmethod
    def _transfer_objects(to: ArrayCache, frm: ArrayCache, maxnr: int) -> int:
        nr = min(len(frm.entry), maxnr, to.limit - len(to.entry))
        if nr <= 0:
            return 0
        to.entry.extend(frm.entry[-nr:])
        del frm.entry[-nr:]
        return nr

    # ------------------------------------------------------------------ free
    def kmem_cache_free(self, cachep: KmemCache, obj: int, cpu: int | None = None) -> None:
        """Give back an object. KernelBug if it is not a live object of `cachep`."""
        page = self.kernel.virt_to_page(obj)
        if not page.flags & PG_slab or page.lru_next is not cachep:
            owner = page.lru_next.name if page.flags & PG_slab else "no slab cache"
            raise KernelBug(
                f"kmem_cache_free: {obj:#x} does not belong to cache {cachep.name} "
                f"(it belongs to {owner})"
            )
        if cpu is None:
            pa = self._pa
            cpu = pa.current_cpu if pa is not None else 0
        self._cache_free(cachep, obj, page.lru_prev, cpu)

    def _cache_free(self, cachep: KmemCache, obj: int, slab: Slab, cpu: int) -> None:
        """__cache_free, after the debug checks that every free gets here."""
        idx, rem = divmod(obj - slab.s_mem, cachep.buffer_size)
        if rem or not 0 <= idx < cachep.num:
            raise KernelBug(f"kmem_cache_free: {cachep.name}: {obj:#x} is not an object start")
        try:
            cachep.live.remove(obj)
        except KeyError:
            raise KernelBug(
                f"kmem_cache_free: {cachep.name}: double free of {obj:#x}"
            ) from None
        if self.memcg_kmem is not None:
            from .memcontrol import memcg_slab_free_hook

            memcg_slab_free_hook(self.memcg_kmem, obj)
        init = self.init_on_free and cachep.ctor is None and not cachep.flags & SLAB_DESTROY_BY_RCU
        if init:
            # __cache_free (6.1 mm/slab.c): slab_want_init_on_free, memset(objp, 0,
            # object_size) on the freeing CPU (phys.zero_bytes, into kernel.stall)
            alloc = self.kernel.page_alloc
            alloc.stall += alloc.phys.zero_bytes(cachep.obj_size)
        kmem = self.kmem
        if kmem is not None:
            if init:
                slab.gens[idx] = -1  # zeroed as it is freed
            if kmem.fresh:
                self._obj_written(cachep, slab, obj)
        node = self.cpu_to_node[cpu]
        if slab.nodeid != node:
            # cache_free_alien without alien caches: straight back to the slab's node.
            self._free_block(cachep, [obj], slab.nodeid)
            return
        ac = cachep.array[cpu]
        if len(ac.entry) < ac.limit:
            cachep.freehit += 1
            ac.entry.append(obj)
            return
        cachep.freemiss += 1
        self._cache_flusharray(cachep, ac, node)
        ac.entry.append(obj)

    def _cache_flusharray(self, cachep: KmemCache, ac: ArrayCache, node: int) -> None:
        """Move the `batchcount` oldest objects of a full array to the shared array if it
        has room, else back into their slabs."""
        batchcount = ac.batchcount
        l3 = cachep.nodelists[node]
        shared = l3.shared
        if shared is not None:
            room = shared.limit - len(shared.entry)
            if room:
                if batchcount > room:
                    batchcount = room
                shared.entry.extend(ac.entry[:batchcount])
                del ac.entry[:batchcount]
                return
        objs = ac.entry[:batchcount]
        del ac.entry[:batchcount]
        self._free_block(cachep, objs, node)

    def _free_block(self, cachep: KmemCache, objs: list[int], node: int) -> None:
        """Put objects back into their slabs and fix the slab lists (free_block)."""
        if not objs:
            return
        l3 = cachep.nodelists[node]
        virt_to_page = self.kernel.virt_to_page
        size = cachep.buffer_size
        for obj in objs:
            slab = virt_to_page(obj).lru_prev
            self._list_del(l3, slab)
            objnr = (obj - slab.s_mem) // size
            slab.bufctl[objnr] = slab.free
            slab.free = objnr
            slab.inuse -= 1
            l3.free_objects += 1
            if slab.inuse == 0:
                if l3.free_objects > l3.free_limit:
                    l3.free_objects -= cachep.num
                    self._slab_destroy(cachep, slab)
                else:
                    l3.slabs_free.add(slab)
            else:
                # Unconditionally to the tail of slabs_partial: the longest time for the
                # slab's other objects to be freed too.
                l3.slabs_partial.add_tail(slab)

    @staticmethod
    def _list_del(l3: KmemList3, slab: Slab) -> None:
        if slab.free == BUFCTL_END:
            l3.slabs_full.remove(slab)
        elif slab.inuse == 0:
            l3.slabs_free.remove(slab)
        else:
            l3.slabs_partial.remove(slab)

    # ------------------------------------------------------------------ kmalloc
    def _find_general_cachep(self, size: int, gfp: int) -> KmemCache | None:
        i = bisect_left(self.malloc_sizes, size)
        if i >= len(self.malloc_sizes):
            return None
        return self.size_dma_caches[i] if gfp & GFP_DMA_BIT else self.size_caches[i]

    def kmalloc(self, size: int, gfp: int = GFP_KERNEL, cpu: int | None = None) -> int | None:
        """An object of the first general cache >= size bytes (its DMA twin with GFP_DMA);
        None for size 0, size > 128 KiB, or when no pages could be had."""
        if size <= 0 or size > MAX_OBJ_SIZE:
            return None
        i = bisect_left(self.malloc_sizes, size)
        cachep = self.size_dma_caches[i] if gfp & GFP_DMA_BIT else self.size_caches[i]
        if cachep is None:  # during boot, before that cache exists
            raise KernelBug(f"kmalloc({size}) before size-{self.malloc_sizes[i]} exists")
        return self.kmem_cache_alloc(cachep, gfp, cpu)

    def kzalloc(self, size: int, gfp: int = GFP_KERNEL, cpu: int | None = None) -> int | None:
        """kmalloc(size, gfp | __GFP_ZERO): the object is zeroed (its cost: _init_on_alloc);
        the caller then initialises it, and its bytes (kmem.SlabPage) are that
        initialisation's."""
        return self.kmalloc(size, gfp | GFP_ZERO_BIT, cpu)

    def kmem_cache_zalloc(self, cachep: KmemCache, gfp: int = GFP_KERNEL,
                          cpu: int | None = None) -> int | None:
        """kmem_cache_alloc(cachep, gfp | __GFP_ZERO) (see kzalloc)."""
        return self.kmem_cache_alloc(cachep, gfp | GFP_ZERO_BIT, cpu)

    def kfree(self, obj: int | None, cpu: int | None = None) -> None:
        """Free a slab object of any cache; kfree(None) and kfree(0) do nothing."""
        if not obj:
            return
        page = self.kernel.virt_to_page(obj)
        if not page.flags & PG_slab:
            raise KernelBug(f"kfree: {obj:#x} is not a slab object (page pfn {page.pfn:#x})")
        if cpu is None:
            pa = self._pa
            cpu = pa.current_cpu if pa is not None else 0
        self._cache_free(page.lru_next, obj, page.lru_prev, cpu)

    def ksize(self, obj: int) -> int:
        """Usable bytes of a slab object: its cache's buffer_size."""
        page = self.kernel.virt_to_page(obj)
        if not page.flags & PG_slab:
            raise KernelBug(f"ksize: {obj:#x} is not a slab object")
        return page.lru_next.buffer_size

    def find_cache(self, name: str) -> KmemCache | None:
        for c in self.cache_chain:
            if c.name == name:
                return c
        return None

    # ------------------------------------------------------------------ draining
    def _drain_array(self, cachep: KmemCache, l3: KmemList3, ac: ArrayCache | None,
                     force: bool, node: int) -> None:
        if ac is None or not ac.entry:
            return
        if ac.touched and not force:
            ac.touched = 0
            return
        avail = len(ac.entry)
        tofree = avail if force else (ac.limit + 4) // 5
        if tofree > avail:
            tofree = (avail + 1) // 2
        objs = ac.entry[:tofree]
        del ac.entry[:tofree]
        self._free_block(cachep, objs, node)

    def _drain_freelist(self, cachep: KmemCache, l3: KmemList3, tofree: int) -> int:
        """Destroy up to `tofree` slabs from the tail of slabs_free; returns how many."""
        nr_freed = 0
        while nr_freed < tofree:
            slab = l3.slabs_free.pop_tail()
            if slab is None:
                break
            l3.free_objects -= cachep.num
            self._slab_destroy(cachep, slab)
            nr_freed += 1
        return nr_freed

    def _drain_cpu_caches(self, cachep: KmemCache) -> None:
        for cpu, ac in enumerate(cachep.array):
            objs = ac.entry
            ac.entry = []
            self._free_block(cachep, objs, self.cpu_to_node[cpu])
        for l3 in cachep.nodelists:
            self._drain_array(cachep, l3, l3.shared, True, l3.nodeid)

    def _cache_shrink(self, cachep: KmemCache) -> bool:
        """Drain the arrays, destroy every free slab. True if slabs remain in use."""
        self._drain_cpu_caches(cachep)
        busy = False
        for l3 in cachep.nodelists:
            self._drain_freelist(cachep, l3, l3.free_objects)
            busy = busy or bool(l3.slabs_full) or bool(l3.slabs_partial)
        return busy

    def kmem_cache_shrink(self, cachep: KmemCache) -> int:
        """Drain the cache's arrays and destroy all its free slabs. Returns pages freed."""
        before = self.reclaimed_slab
        self._cache_shrink(cachep)
        return self.reclaimed_slab - before

    def cache_reap(self, now: float | None = None) -> int:
        """One cache_reap pass of every CPU at `now` (seconds; default: 2 s after the last
        pass). Returns the pages given back to the page allocator."""
        if now is None:
            now = self.clock + REAPTIMEOUT_CPUC
        before = self.reclaimed_slab
        for cpu in range(self.nr_cpus):
            self.cache_reap_cpu(cpu, now)
        return self.reclaimed_slab - before

    def cache_reap_cpu(self, cpu: int, now: float) -> int:
        """cache_reap (mm/slab.c, 2.6.20 and 6.1) on `cpu` at `now`: for every cache, its
        own array of that CPU (drain_array: a touched array only has `touched` cleared,
        an untouched one gives back (limit + 4) / 5 of its oldest objects, half of them
        if it holds fewer); the node's shared array and free slabs once the node's
        next_reap has come (REAPTIMEOUT_LIST3 later next time, whichever CPU of the
        node gets there first); then next_reap_node. Returns the pages given back."""
        self.clock = now
        before = self.reclaimed_slab
        node = self.cpu_to_node[cpu]
        for cachep in list(self.cache_chain):
            l3 = cachep.nodelists[node]
            self._drain_array(cachep, l3, cachep.array[cpu], False, node)
            if l3.next_reap > now:
                continue
            l3.next_reap = now + REAPTIMEOUT_LIST3
            self._drain_array(cachep, l3, l3.shared, False, node)
            if l3.free_touched:
                l3.free_touched = 0
            else:
                num = cachep.num
                freed = self._drain_freelist(
                    cachep, l3, (l3.free_limit + 5 * num - 1) // (5 * num)
                )
                cachep.reaped += freed
        self.next_reap_node(cpu)
        return self.reclaimed_slab - before

    def next_reap_node(self, cpu: int) -> None:
        """next_reap_node() at the end of `cpu`'s cache_reap pass (2.6.20 mm/slab.c): the
        rotor's node, if not the CPU's own, has its per-CPU page lists drained a batch
        (drain_node_pages, 2.6 era); the rotor moves to the next online node, wrapping
        to the first. (6.1 moved the drain to vmstat's refresh_cpu_vm_stats.)"""
        if self.nr_nodes <= 1:
            return
        node = self.reap_node[cpu]
        if self.drain_remote_pages and node != self.cpu_to_node[cpu]:
            self.kernel.page_alloc.drain_node_pages(cpu, node)
        self.reap_node[cpu] = (node + 1) % self.nr_nodes

    def shrink_slab(self, nr_to_scan: int) -> int:
        """Shrinker entry point for reclaim: give back up to `nr_to_scan` pages (roughly:
        whole slabs are freed). First free slabs of every cache; if that is not enough,
        drain the per-CPU and shared arrays and free the slabs that empties. Returns pages
        freed. (2.6's shrinkers shrink dcache/icache objects, which hvsim does not model;
        this stands for the slab memory such a pass gets back.)"""
        before = self.reclaimed_slab
        for drain in (False, True):
            for cachep in list(self.cache_chain):
                if self.reclaimed_slab - before >= nr_to_scan:
                    return self.reclaimed_slab - before
                if drain:
                    self._drain_cpu_caches(cachep)
                for l3 in cachep.nodelists:
                    while self.reclaimed_slab - before < nr_to_scan and l3.slabs_free:
                        self._drain_freelist(cachep, l3, 1)
        return self.reclaimed_slab - before

    # ------------------------------------------------------------------ /proc/slabinfo
    def tune_cpucache(self, cachep: KmemCache, limit: int, batchcount: int, shared: int) -> None:
        """Set a cache's head-array tunables (do_tune_cpucache): per-CPU arrays of `limit`
        objects refilled and flushed `batchcount` at a time, a shared array of
        shared * batchcount objects per node. ValueError for values 2.6 would refuse
        (limit < 1, batchcount < 1 or > limit, shared < 0), MemoryError without memory."""
        for what, v in (("limit", limit), ("batchcount", batchcount), ("shared", shared)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"slabinfo: {cachep.name}: {what} must be an integer")
        if limit < 1 or batchcount < 1 or batchcount > limit or shared < 0:
            raise ValueError(
                f"slabinfo: {cachep.name}: need 1 <= batchcount <= limit and shared >= 0, "
                f"got limit {limit} batchcount {batchcount} shared {shared}"
            )
        if self._do_tune_cpucache(cachep, limit, batchcount, shared):
            raise MemoryError(f"slabinfo: {cachep.name}: no memory for the head arrays")

    def slabinfo_write(self, text: str) -> None:
        """A write to /proc/slabinfo: "name limit batchcount shared" (slabinfo_write)."""
        parts = text.split()
        if len(parts) != 4:
            raise ValueError(
                f"slabinfo: expected 'name limit batchcount shared', got {text.strip()!r}"
            )
        cachep = self.find_cache(parts[0])
        if cachep is None:
            raise ValueError(f"slabinfo: no cache named {parts[0]!r}")
        try:
            limit, batchcount, shared = (int(x) for x in parts[1:])
        except ValueError:
            raise ValueError(
                f"slabinfo: {parts[0]}: limit, batchcount and shared must be integers"
            ) from None
        self.tune_cpucache(cachep, limit, batchcount, shared)

    def slabinfo(self) -> str:
        """/proc/slabinfo, version 2.1, as 2.6.20 prints it without STATS."""
        out = [
            "slabinfo - version: 2.1\n",
            "# name            <active_objs> <num_objs> <objsize> <objperslab> "
            "<pagesperslab> : tunables <limit> <batchcount> <sharedfactor> "
            ": slabdata <active_slabs> <num_slabs> <sharedavail>\n",
        ]
        for cachep in self.cache_chain:
            active_objs = 0
            active_slabs = 0
            num_slabs = 0
            shared_avail = 0
            for l3 in cachep.nodelists:
                active_objs += len(l3.slabs_full) * cachep.num
                active_slabs += len(l3.slabs_full)
                for slab in l3.slabs_partial:
                    active_objs += slab.inuse
                    active_slabs += 1
                num_slabs += len(l3.slabs_free)
                if l3.shared is not None:
                    shared_avail += len(l3.shared.entry)
            num_slabs += active_slabs
            num_objs = num_slabs * cachep.num
            out.append(
                f"{cachep.name:<17} {active_objs:>6} {num_objs:>6} {cachep.buffer_size:>6} "
                f"{cachep.num:>4} {1 << cachep.gfporder:>4} : tunables {cachep.limit:>4} "
                f"{cachep.batchcount:>4} {cachep.shared:>4} : slabdata {active_slabs:>6} "
                f"{num_slabs:>6} {shared_avail:>6}\n"
            )
        return "".join(out)


# ---------------------------------------------------------------------------- checking


def validate_slab(slab: SlabAllocator, scan_mem_map: bool = True) -> None:
    """Check every invariant of the allocator; AssertionError naming the first violation.

    With `scan_mem_map`, also check that exactly the pages of listed slabs carry PG_slab
    (one pass over kernel.mem_map: leave it off in per-step checks of long sequences).
    """
    kernel = slab.kernel
    page_address = kernel.page_address
    virt_to_page = kernel.virt_to_page
    totals = {"nr_slab_reclaimable": 0, "nr_slab_unreclaimable": 0}
    names = set()
    for cachep in slab.cache_chain:
        name = cachep.name
        assert name not in names, f"{name}: twice in cache_chain"
        names.add(name)
        assert not cachep.dead, f"{name}: destroyed but still in cache_chain"
        num = cachep.num
        size = cachep.buffer_size
        nr = 1 << cachep.gfporder
        slab_bytes = PAGE_SIZE << cachep.gfporder
        assert num > 0, f"{name}: num is 0"
        assert 0 <= cachep.colour * cachep.colour_off <= slab_bytes, f"{name}: colour range"
        free_in_slabs: dict[int, object] = {}  # obj -> slab
        slab_of: dict[int, Slab] = {}  # id(slab) -> slab
        total_inuse = 0
        for l3 in cachep.nodelists:
            node = l3.nodeid
            assert 0 <= l3.colour_next < max(cachep.colour, 1), (
                f"{name}: colour_next {l3.colour_next} outside 0..{max(cachep.colour, 1) - 1}"
            )
            free_objects = 0
            for lname in ("slabs_full", "slabs_partial", "slabs_free"):
                lst = getattr(l3, lname)
                count = 0
                for s in lst:
                    count += 1
                    where = f"{name}: node {node} {lname} slab s_mem={s.s_mem:#x}"
                    assert id(s) not in slab_of, f"{where}: on two lists"
                    slab_of[id(s)] = s
                    assert s.nodeid == node, f"{where}: nodeid {s.nodeid}"
                    # the bufctl chain
                    chain = []
                    i = s.free
                    while i != BUFCTL_END:
                        assert 0 <= i < num, f"{where}: bufctl index {i} out of range"
                        chain.append(i)
                        assert len(chain) <= num, f"{where}: bufctl chain loops"
                        i = s.bufctl[i]
                    assert len(set(chain)) == len(chain), f"{where}: bufctl chain repeats"
                    assert s.inuse == num - len(chain), (
                        f"{where}: inuse {s.inuse} but {len(chain)} of {num} free in bufctl"
                    )
                    if lname == "slabs_full":
                        assert s.inuse == num, f"{where}: inuse {s.inuse} != num {num}"
                    elif lname == "slabs_free":
                        assert s.inuse == 0, f"{where}: inuse {s.inuse} on slabs_free"
                    else:
                        assert 0 < s.inuse < num, f"{where}: inuse {s.inuse} on slabs_partial"
                    free_objects += num - s.inuse
                    total_inuse += s.inuse
                    for idx in chain:
                        free_in_slabs[s.s_mem + idx * size] = s
                    # layout: colour offset, descriptor, objects inside the pages
                    base = page_address(s.page)
                    assert s.s_mem == base + s.colouroff, f"{where}: s_mem != page + colouroff"
                    colour = s.colouroff - (0 if cachep.off_slab else cachep.slab_size)
                    assert colour % cachep.colour_off == 0 and \
                        0 <= colour // cachep.colour_off < max(cachep.colour, 1), (
                            f"{where}: colour offset {colour} not a colour of the cache"
                        )
                    assert s.colouroff + num * size <= slab_bytes, f"{where}: objects overflow"
                    if cachep.off_slab:
                        sp = virt_to_page(s.addr)
                        assert sp.flags & PG_slab and sp.lru_next is cachep.slabp_cache, (
                            f"{where}: off-slab descriptor not in {cachep.slabp_cache.name}"
                        )
                        assert s.addr in cachep.slabp_cache.live, (
                            f"{where}: off-slab descriptor {s.addr:#x} not allocated"
                        )
                    else:
                        assert s.addr == base + colour, f"{where}: on-slab descriptor address"
                    assert s.page._count == 1, f"{where}: head page count {s.page._count}"
                    for k in range(nr):
                        p = virt_to_page(base + k * PAGE_SIZE)
                        assert p.flags & PG_slab, f"{where}: page {k} without PG_slab"
                        assert p.lru_next is cachep and p.lru_prev is s, (
                            f"{where}: page {k} does not point back at its cache and slab"
                        )
                    key = (
                        "nr_slab_reclaimable" if cachep.flags & SLAB_RECLAIM_ACCOUNT
                        else "nr_slab_unreclaimable"
                    )
                    totals[key] += nr
                assert count == lst.nr, f"{name}: node {node} {lname} count {lst.nr} != {count}"
            assert l3.free_objects == free_objects, (
                f"{name}: node {node} free_objects {l3.free_objects} != {free_objects} free "
                f"in its slabs"
            )
        # every object in use by a slab is either in an array or allocated, exactly once
        cached: set[int] = set()
        arrays = [(f"cpu{c} array", ac) for c, ac in enumerate(cachep.array)]
        arrays += [(f"node{l3.nodeid} shared", l3.shared) for l3 in cachep.nodelists
                   if l3.shared is not None]
        for label, ac in arrays:
            assert len(ac.entry) <= ac.limit, (
                f"{name}: {label} avail {len(ac.entry)} > limit {ac.limit}"
            )
            for obj in ac.entry:
                assert obj not in cached, f"{name}: {obj:#x} twice in the arrays"
                cached.add(obj)
        for kind, objs in (("array", cached), ("allocated", cachep.live)):
            for obj in objs:
                p = virt_to_page(obj)
                assert p.flags & PG_slab and p.lru_next is cachep, (
                    f"{name}: {kind} object {obj:#x} is not in a slab of this cache"
                )
                s = p.lru_prev
                assert id(s) in slab_of, f"{name}: {kind} object {obj:#x} in an unlisted slab"
                assert (obj - s.s_mem) % size == 0 and 0 <= (obj - s.s_mem) // size < num, (
                    f"{name}: {kind} object {obj:#x} is not an object start"
                )
                assert obj not in free_in_slabs, (
                    f"{name}: {kind} object {obj:#x} is also free in its slab"
                )
        both = cached & cachep.live
        assert not both, f"{name}: {len(both)} objects both allocated and in an array"
        assert total_inuse == len(cached) + len(cachep.live), (
            f"{name}: {total_inuse} objects in use by slabs but {len(cached)} in arrays + "
            f"{len(cachep.live)} allocated"
        )
    for key, n in totals.items():
        assert slab.vmstat[key] == n, f"vmstat {key} {slab.vmstat[key]} != {n} slab pages"
    assert slab.nr_slab_pages == sum(totals.values()), (
        f"nr_slab_pages {slab.nr_slab_pages} != {sum(totals.values())}"
    )
    mem_map = getattr(kernel, "mem_map", None)
    if scan_mem_map and mem_map is not None:
        # NOTE: None entries are struct pages never instantiated (never allocated).
        marked = sum(1 for p in mem_map if p is not None and p.flags & PG_slab)
        assert marked == slab.nr_slab_pages, (
            f"{marked} pages carry PG_slab but slabs hold {slab.nr_slab_pages}"
        )


# ---------------------------------------------------------------------------- daemon


class CacheReaper:
    """The per-CPU cache_reap work (each CPU's delayed work, start_cpu_timer): CPU c's
    pass every `interval` simulated seconds, at whole multiples of it less c * 3 jiffies
    (round_jiffies_relative's per-CPU skew: j += 3 * cpu, round to the second,
    j -= 3 * cpu), so the CPUs do not reap at once; CPU 0 at interval, 2 * interval, ...
    after the kernel starts (Linux's first pass is about 1 s after boot:
    __round_jiffies_relative(HZ, cpu); hvsim keeps 2 s)."""

    def __init__(self, env, slab: SlabAllocator, interval: float = REAPTIMEOUT_CPUC) -> None:
        self.env = env
        self.slab = slab
        self.interval = interval
        self.passes = 0  # passes of all CPUs
        self.cpu_passes = [0] * slab.nr_cpus
        self.pages_freed = 0
        self.processes = [env.process(self._run(cpu)) for cpu in range(slab.nr_cpus)]
        self.process = self.processes[0]

    def _run(self, cpu: int):
        env = self.env
        interval = self.interval
        first = interval - 3 * cpu / HZ  # (the skew, once: each later pass is interval on)
        yield env.timeout(first if first > 0 else interval)
        while True:
            self.pages_freed += self.slab.cache_reap_cpu(cpu, env.now)
            self.passes += 1
            self.cpu_passes[cpu] += 1
            yield env.timeout(interval)
