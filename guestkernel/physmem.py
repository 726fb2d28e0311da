"""The guest/host boundary: whatever holds the bytes of guest frames.

A guest kernel manages frames (PFNs) and page descriptors; it never keeps page contents
itself. Contents live beneath it, in a `PhysicalMemory`:

    touch(pfn, write)  -> seconds stalled beneath the guest (host fault, decompress, swap-in)
    touch_many(pfns, write)
                       -> seconds; touch() of each frame in order (one call for a run of
                          pages the guest accesses with no fault between them)
    store(pfn, data, from_disk=False)
                       -> seconds; a whole-page write (zeroing, copy, swap-in, file read);
                          from_disk marks a page read from the guest's disk or swap
                          device (the host tells stale swap reads and silent writes by it)
    load(pfn)          -> bytes; the page as the guest would read it
    copy(dst, src)     -> seconds; a whole-page copy (copy_user_highpage: a CoW break in
                          the guest): `store(dst, ...)` of src's content, passed on as
                          the recipe it is (no 4 KiB made)
    release(pfn)       -> the guest holds nothing there any more (balloon, free page hint)

`BareMetal` is a plain list of frames and costs nothing. The hypervisor's `VM` answers from
its P2M and returns what each transition costs.

Page contents are `bytes`, or a `LazyPage`: the recipe of a generated page (a workload's
data, made from a seed), which `store` accepts and keeps as it is, so that a simulated
host of 64 GiB does not need 64 GiB of the simulator's memory. Whoever needs the bytes
themselves (a hash, a byte compare, a compression, the guest reading the page) calls
`page_bytes`, which makes them on the spot: every such operation runs on the real bytes.
`load` always returns bytes.

A write changes the page's bytes. `touch(pfn, True)` with no `store` after it is a store
of data nobody spelled out (a program updating its buffers): the page gets new content,
deterministically, as the recipe `written(data, digest)` derives it from the old one and a
64-bit digest the memory draws from its seed (the write generation). Nothing is made until
something reads the page. A recipe decides what its writes write: an application page
(experiments/content.AppPage) becomes a new page of its profile (same compressibility),
or keeps its bytes for the profile's fraction of writes that store the same bytes again;
bytes with no recipe behind them (the zero page, an image page) get a `WrittenPage`: the
old bytes with a 16-byte value changed in place. Whole-page `store`s replace the content
as before. Memory that holds contents lazily (BareMetal here, the hypervisor's machine
frames) marks a written frame and folds the write into a new recipe when the bytes are
next needed, so a write costs one mark, not a page.
"""

from __future__ import annotations

from struct import Struct
from typing import Protocol

import xxhash

from .units import PAGE_SIZE

ZERO_PAGE = bytes(PAGE_SIZE)  # the one zero-filled page object everybody shares

WORD_WRITE = 16  # bytes a write of unknown data changes in a page with no recipe
_MASK64 = (1 << 64) - 1
_PACK2 = Struct("<QQ").pack
_xxh64 = xxhash.xxh64_intdigest
_xxh3 = xxhash.xxh3_64_intdigest


def write_digest(seed: int, frame: int, generation: int) -> int:
    """The digest of write `generation` of `frame` in a memory seeded with `seed`: what a
    write of unknown data stores is drawn from it (xxh64 of the two 64-bit words)."""
    return _xxh64(_PACK2(frame & _MASK64, generation & _MASK64), seed & _MASK64)


class LazyPage:
    """A page's contents held as what makes them: `materialize()` returns its PAGE_SIZE
    bytes, the same every time. Immutable; subclasses add the slots of their recipe."""

    __slots__ = ()

    def __len__(self) -> int:
        return PAGE_SIZE

    def materialize(self) -> bytes:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        return self.materialize()

    def __eq__(self, other) -> bool:
        if not isinstance(other, (bytes, bytearray, memoryview, LazyPage)):
            return NotImplemented
        return self.materialize() == page_bytes(other)

    def __hash__(self) -> int:
        # XXH3-64 of the bytes, not Python's salted hash(): nothing may depend on
        # PYTHONHASHSEED. Equal contents hash equal among LazyPages; a LazyPage and equal
        # `bytes` do not (bytes' own hash is salted): key a dict by page_bytes(page) to
        # mix them.
        return _xxh3(self.materialize())

    def written(self, digest: int, offset: int = -1, length: int = 0):
        """The page after a write of data nobody spelled out, drawn from `digest`: a new
        recipe (or this one, for a write that stores the same bytes again). `offset` and
        `length` name the bytes written; -1/0: the write's extent is the recipe's to say
        (a recipe without a profile: one WORD_WRITE-byte value). The default: the bytes
        of this page with that range changed (WrittenPage)."""
        return WrittenPage(self, digest, offset, length)


class WrittenPage(LazyPage):
    """`base` (bytes or a LazyPage) after a write of unknown data: bytes [offset, offset +
    length) hold a 16-byte value drawn from `digest`, repeated; the rest is `base`. With
    offset -1 the write is one WORD_WRITE-byte value at a 16-byte aligned offset drawn from
    the digest; a further such write of the page changes the same value (a counter, a
    pointer, a timestamp updated in place), so the recipe stays flat however often the page
    is written. `src` (a LazyPage or None): where the range's new bytes come from instead
    of the repeated value (a recipe with a profile writes that profile's data)."""

    __slots__ = ("base", "digest", "offset", "length", "src")

    def __init__(self, base, digest: int, offset: int = -1, length: int = 0, src=None) -> None:
        self.base = base
        self.digest = digest & _MASK64
        self.src = src
        if offset < 0:
            self.offset = ((digest >> 20) & (PAGE_SIZE // WORD_WRITE - 1)) * WORD_WRITE
            self.length = WORD_WRITE
            return
        if not (0 < length and offset + length <= PAGE_SIZE):
            raise ValueError(f"written: range {offset}+{length} is not inside a page")
        self.offset = offset
        self.length = length

    def materialize(self) -> bytes:
        base = page_bytes(self.base)
        off = self.offset
        end = off + self.length
        if self.src is not None:
            new = page_bytes(self.src)[off:end]
        else:
            d = self.digest
            word = _PACK2(d, (d * 0x9E3779B97F4A7C15) & _MASK64)
            new = (word * (self.length // WORD_WRITE + 1))[: self.length]
        return b"".join((base[:off], new, base[end:]))

    def written(self, digest: int, offset: int = -1, length: int = 0):
        if self.src is None and (offset < 0 or (offset == self.offset and length == self.length)):
            # the same bytes written again: one flat recipe, a new value
            return WrittenPage(self.base, _remix(self.digest ^ digest), self.offset, self.length)
        return WrittenPage(self, digest, offset, length)


def _remix(h: int) -> int:
    """splitmix64's finaliser: a new 64-bit value from an old one."""
    h = (h + 0x9E3779B97F4A7C15) & _MASK64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _MASK64
    return h ^ (h >> 31)


def written(data, digest: int, offset: int = -1, length: int = 0):
    """Page contents `data` (bytes or a LazyPage) after a write of data nobody spelled
    out, drawn from `digest` (see LazyPage.written): a LazyPage, or `data` itself when
    the write stores the same bytes again."""
    if isinstance(data, LazyPage):
        return data.written(digest, offset, length)
    return WrittenPage(data, digest, offset, length)


def touch_each(touch, pfns: list[int], write: bool) -> float:
    """touch_many frame by frame: `touch(pfn, write)` for each, in order; seconds."""
    cost = 0.0
    for pfn in pfns:
        cost += touch(pfn, write)
    return cost


def page_bytes(data) -> bytes:
    """The bytes of page contents held as bytes or as a LazyPage."""
    if data.__class__ is bytes:
        return data
    if isinstance(data, LazyPage):
        return data.materialize()
    return bytes(data)


# Who gives a frame back through release() (the host credits the technique holding it)
RELEASE_BALLOON = 1  # the balloon driver's inflateq
RELEASE_REPORTED = 2  # free page reporting (mm/page_reporting.c)


class PhysicalMemory(Protocol):
    nr_frames: int

    def touch(self, pfn: int, write: bool) -> float: ...

    def touch_many(self, pfns: list[int], write: bool) -> float: ...

    def store(self, pfn: int, data: bytes, from_disk: bool = False) -> float: ...

    def load(self, pfn: int) -> bytes: ...

    def copy(self, dst: int, src: int) -> float: ...

    def zero(self, pfn: int) -> float: ...

    def zero_bytes(self, nbytes: int) -> float: ...

    def release(self, pfn: int, kind: int = RELEASE_BALLOON) -> int: ...

    def reuse(self, pfn: int) -> None: ...


class BareMetal:
    """Frames as a list of `bytes` (None: never written, reads as zeros). No costs.

    A write without a store marks the frame (`dirty`); `load` folds the marked writes into
    the frame's new content (`written`, with digests from `write_seed` and a generation
    counted per memory), as the hypervisor's machine memory does."""

    def __init__(self, nr_frames: int, write_seed: int = 0) -> None:
        self.nr_frames = nr_frames
        self.frames: list[bytes | None] = [None] * nr_frames
        self.dirty = bytearray(nr_frames)  # 1: written since its content was last made
        self.write_seed = write_seed  # seed of the digests of writes of unknown data
        self.write_generation = 0  # writes folded into new contents so far

    def touch(self, pfn: int, write: bool) -> float:
        if write:
            self.dirty[pfn] = 1
        return 0.0

    def touch_many(self, pfns: list[int], write: bool) -> float:
        return touch_each(self.touch, pfns, write)

    def store(self, pfn: int, data: bytes, from_disk: bool = False) -> float:
        if not isinstance(data, LazyPage) and len(data) != PAGE_SIZE:  # (a recipe is a page)
            raise ValueError(f"store: page data must be {PAGE_SIZE} bytes, got {len(data)}")
        self.frames[pfn] = None if data is ZERO_PAGE else data
        self.dirty[pfn] = 0
        return 0.0

    def load(self, pfn: int) -> bytes:
        data = self.frames[pfn] if not self.dirty[pfn] else self._fold(pfn)
        if data is None:
            return ZERO_PAGE
        return data if data.__class__ is bytes else page_bytes(data)

    def copy(self, dst: int, src: int) -> float:
        data = self.frames[src] if not self.dirty[src] else self._fold(src)
        return self.store(dst, ZERO_PAGE if data is None else data)

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # a subclass that charges or records its stores sees each zeroing as the store of
        # the zero page it is (PhysicalMemory.zero), unless it defines zero itself
        if "store" in cls.__dict__ and "zero" not in cls.__dict__:
            cls.zero = BareMetal._zero_by_store

    def zero(self, pfn: int) -> float:
        # NOTE: store(pfn, ZERO_PAGE) inlined for speed: the page of every __GFP_ZERO
        # allocation (kernel_init_pages), so of every demand-zero fault
        self.frames[pfn] = None
        self.dirty[pfn] = 0
        return 0.0

    def zero_bytes(self, nbytes: int) -> float:
        """A memset of `nbytes` within a page the guest already holds (a slab object's
        zeroing): no frame changes hands here, and bare metal charges no CPU for it."""
        return 0.0

    def _zero_by_store(self, pfn: int) -> float:
        """zero's plain twin: the store of the zero page."""
        return self.store(pfn, ZERO_PAGE)

    def _fold(self, pfn: int):
        """The new content of a written frame (see the class)."""
        self.dirty[pfn] = 0
        self.write_generation += 1
        data = self.frames[pfn]
        d = write_digest(self.write_seed, pfn, self.write_generation)
        # (a fresh page written: the zero page's WrittenPage, without the dispatch)
        data = self.frames[pfn] = WrittenPage(ZERO_PAGE, d) if data is None else written(data, d)
        return data

    def release(self, pfn: int, kind: int = RELEASE_BALLOON) -> int:
        took = self.frames[pfn] is not None
        self.frames[pfn] = None
        self.dirty[pfn] = 0
        return int(took)

    def reuse(self, pfn: int) -> None:
        return None
