"""GFP flags (include/linux/gfp_types.h, 6.x bit values) and the zone they select.

`__GFP_COLD` is the 2.6 flag that picks the per-CPU cold list; 6.x dropped it, so it sits
on a bit 6.x leaves unused. `__GFP_WAIT` is the 2.6 name of `__GFP_DIRECT_RECLAIM`.
"""

from __future__ import annotations

# Zone modifiers
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_DMA32 = 0x04
__GFP_MOVABLE = 0x08
GFP_ZONEMASK = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE

# Page mobility and placement hints
__GFP_RECLAIMABLE = 0x10
__GFP_HIGH = 0x20  # may use part of the MIN reserve
__GFP_IO = 0x40  # may start physical I/O
__GFP_FS = 0x80  # may call into the file system
__GFP_ZERO = 0x100  # return a zeroed page
__GFP_DIRECT_RECLAIM = 0x400  # may enter direct reclaim (sleeps)
__GFP_KSWAPD_RECLAIM = 0x800  # wake kswapd when below LOW
__GFP_WRITE = 0x1000
__GFP_NOWARN = 0x2000
__GFP_RETRY_MAYFAIL = 0x4000  # retry, but fail rather than OOM-kill
__GFP_NOFAIL = 0x8000  # never fails
__GFP_NORETRY = 0x10000  # one light reclaim pass, then fail; never OOM-kill
__GFP_MEMALLOC = 0x20000  # ignore watermarks entirely
__GFP_COMP = 0x40000
__GFP_NOMEMALLOC = 0x80000
__GFP_HARDWALL = 0x100000
__GFP_THISNODE = 0x200000  # no fallback to other nodes
__GFP_ACCOUNT = 0x400000
__GFP_COLD = 0x1000000  # 2.6: take the page from the per-CPU cold list

__GFP_WAIT = __GFP_DIRECT_RECLAIM
__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM

GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM

# Aliases without the leading "__": Python mangles `__GFP_*` names used inside a class
# body, so methods write `gfp.NOFAIL` where Linux writes `__GFP_NOFAIL`.
DMA = __GFP_DMA
HIGHMEM = __GFP_HIGHMEM
DMA32 = __GFP_DMA32
MOVABLE = __GFP_MOVABLE
RECLAIMABLE = __GFP_RECLAIMABLE
HIGH = __GFP_HIGH
IO = __GFP_IO
FS = __GFP_FS
ZERO = __GFP_ZERO
DIRECT_RECLAIM = __GFP_DIRECT_RECLAIM
KSWAPD_RECLAIM = __GFP_KSWAPD_RECLAIM
WRITE = __GFP_WRITE
NOWARN = __GFP_NOWARN
RETRY_MAYFAIL = __GFP_RETRY_MAYFAIL
NOFAIL = __GFP_NOFAIL
NORETRY = __GFP_NORETRY
MEMALLOC = __GFP_MEMALLOC
COMP = __GFP_COMP
NOMEMALLOC = __GFP_NOMEMALLOC
HARDWALL = __GFP_HARDWALL
THISNODE = __GFP_THISNODE
ACCOUNT = __GFP_ACCOUNT
COLD = __GFP_COLD

# Zone indices used by gfp_zone(); the allocator maps them onto the arch's zones.
ZONE_DMA = "DMA"
ZONE_DMA32 = "DMA32"
ZONE_NORMAL = "Normal"
ZONE_HIGHMEM = "HighMem"

_NAMES = {
    __GFP_DMA: "__GFP_DMA",
    __GFP_HIGHMEM: "__GFP_HIGHMEM",
    __GFP_DMA32: "__GFP_DMA32",
    __GFP_MOVABLE: "__GFP_MOVABLE",
    __GFP_RECLAIMABLE: "__GFP_RECLAIMABLE",
    __GFP_HIGH: "__GFP_HIGH",
    __GFP_IO: "__GFP_IO",
    __GFP_FS: "__GFP_FS",
    __GFP_ZERO: "__GFP_ZERO",
    __GFP_DIRECT_RECLAIM: "__GFP_DIRECT_RECLAIM",
    __GFP_KSWAPD_RECLAIM: "__GFP_KSWAPD_RECLAIM",
    __GFP_WRITE: "__GFP_WRITE",
    __GFP_NOWARN: "__GFP_NOWARN",
    __GFP_RETRY_MAYFAIL: "__GFP_RETRY_MAYFAIL",
    __GFP_NOFAIL: "__GFP_NOFAIL",
    __GFP_NORETRY: "__GFP_NORETRY",
    __GFP_MEMALLOC: "__GFP_MEMALLOC",
    __GFP_COMP: "__GFP_COMP",
    __GFP_NOMEMALLOC: "__GFP_NOMEMALLOC",
    __GFP_HARDWALL: "__GFP_HARDWALL",
    __GFP_THISNODE: "__GFP_THISNODE",
    __GFP_ACCOUNT: "__GFP_ACCOUNT",
    __GFP_COLD: "__GFP_COLD",
}


def gfp_zone(gfp: int) -> str:
    """Highest zone type a request may use (before mapping onto the arch's zones)."""
    if gfp & __GFP_DMA:
        return ZONE_DMA
    if gfp & __GFP_DMA32:
        return ZONE_DMA32
    if gfp & __GFP_HIGHMEM:
        return ZONE_HIGHMEM
    return ZONE_NORMAL


def gfpflags_allow_blocking(gfp: int) -> bool:
    return bool(gfp & __GFP_DIRECT_RECLAIM)


def format_gfp(gfp: int) -> str:
    """`GFP_KERNEL|__GFP_ZERO`-style rendering, as the kernel prints gfp masks."""
    for name, value in (
        ("GFP_HIGHUSER_MOVABLE", GFP_HIGHUSER_MOVABLE),
        ("GFP_HIGHUSER", GFP_HIGHUSER),
        ("GFP_USER", GFP_USER),
        ("GFP_KERNEL", GFP_KERNEL),
        ("GFP_ATOMIC", GFP_ATOMIC),
        ("GFP_NOWAIT", GFP_NOWAIT),
        ("GFP_NOFS", GFP_NOFS),
        ("GFP_NOIO", GFP_NOIO),
    ):
        if gfp & value == value:
            rest = gfp & ~value
            parts = [name] + [n for bit, n in _NAMES.items() if rest & bit]
            return "|".join(parts)
    return "|".join(n for bit, n in _NAMES.items() if gfp & bit) or "0"
