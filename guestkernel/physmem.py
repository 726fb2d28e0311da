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
    release(pfn)       -> the guest holds nothing there any more (balloon, free page hint)

`BareMetal` is a plain list of frames and costs nothing. The hypervisor's `VM` answers from
its P2M and returns what each transition costs.

Page contents are `bytes`, or a `LazyPage`: the recipe of a generated page (a workload's
data, made from a seed), which `store` accepts and keeps as it is, so that a simulated
host of 64 GiB does not need 64 GiB of the simulator's memory. Whoever needs the bytes
themselves (a hash, a byte compare, a compression, the guest reading the page) calls
`page_bytes`, which makes them on the spot: every such operation runs on the real bytes.
`load` always returns bytes.
"""

from __future__ import annotations

from typing import Protocol

from .units import PAGE_SIZE

ZERO_PAGE = bytes(PAGE_SIZE)  # the one zero-filled page object everybody shares


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
        return hash(self.materialize())


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

    def release(self, pfn: int, kind: int = RELEASE_BALLOON) -> int: ...

    def reuse(self, pfn: int) -> None: ...


class BareMetal:
    """Frames as a list of `bytes` (None: never written, reads as zeros). No costs."""

    def __init__(self, nr_frames: int) -> None:
        self.nr_frames = nr_frames
        self.frames: list[bytes | None] = [None] * nr_frames

    def touch(self, pfn: int, write: bool) -> float:
        return 0.0

    def touch_many(self, pfns: list[int], write: bool) -> float:
        return touch_each(self.touch, pfns, write)

    def store(self, pfn: int, data: bytes, from_disk: bool = False) -> float:
        if len(data) != PAGE_SIZE:
            raise ValueError(f"store: page data must be {PAGE_SIZE} bytes, got {len(data)}")
        self.frames[pfn] = None if data is ZERO_PAGE else data
        return 0.0

    def load(self, pfn: int) -> bytes:
        data = self.frames[pfn]
        if data is None:
            return ZERO_PAGE
        return data if data.__class__ is bytes else page_bytes(data)

    def release(self, pfn: int, kind: int = RELEASE_BALLOON) -> int:
        took = self.frames[pfn] is not None
        self.frames[pfn] = None
        return int(took)

    def reuse(self, pfn: int) -> None:
        return None
