"""The guest/host boundary: whatever holds the bytes of guest frames.

A guest kernel manages frames (PFNs) and page descriptors; it never keeps page contents
itself. Contents live beneath it, in a `PhysicalMemory`:

    touch(pfn, write)  -> seconds stalled beneath the guest (host fault, decompress, swap-in)
    store(pfn, data, from_disk=False)
                       -> seconds; a whole-page write (zeroing, copy, swap-in, file read);
                          from_disk marks a page read from the guest's disk or swap
                          device (the host tells stale swap reads and silent writes by it)
    load(pfn)          -> bytes; the page as the guest would read it
    release(pfn)       -> the guest holds nothing there any more (balloon, free page hint)

`BareMetal` is a plain list of frames and costs nothing. The hypervisor's `VM` answers from
its P2M and returns what each transition costs.
"""

from __future__ import annotations

from typing import Protocol

from .units import PAGE_SIZE

ZERO_PAGE = bytes(PAGE_SIZE)  # the one zero-filled page object everybody shares


class PhysicalMemory(Protocol):
    nr_frames: int

    def touch(self, pfn: int, write: bool) -> float: ...

    def store(self, pfn: int, data: bytes, from_disk: bool = False) -> float: ...

    def load(self, pfn: int) -> bytes: ...

    def release(self, pfn: int) -> None: ...


class BareMetal:
    """Frames as a list of `bytes` (None: never written, reads as zeros). No costs."""

    def __init__(self, nr_frames: int) -> None:
        self.nr_frames = nr_frames
        self.frames: list[bytes | None] = [None] * nr_frames

    def touch(self, pfn: int, write: bool) -> float:
        return 0.0

    def store(self, pfn: int, data: bytes, from_disk: bool = False) -> float:
        if len(data) != PAGE_SIZE:
            raise ValueError(f"store: page data must be {PAGE_SIZE} bytes, got {len(data)}")
        self.frames[pfn] = None if data is ZERO_PAGE else data
        return 0.0

    def load(self, pfn: int) -> bytes:
        data = self.frames[pfn]
        return ZERO_PAGE if data is None else data

    def release(self, pfn: int) -> None:
        self.frames[pfn] = None
