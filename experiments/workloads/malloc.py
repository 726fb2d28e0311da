"""A glibc-like malloc for simulated processes (ptmalloc2's main arena, 64-bit).

Guests see the brk/mmap/munmap traffic a real C library produces:

- Requests below the mmap threshold (M_MMAP_THRESHOLD, 128 KiB at start) come from the
  brk heap: best-fit reuse of free chunks (coalesced with their neighbours), else from the
  top chunk, which grows by sbrk(need + M_TOP_PAD) rounded to pages (M_TOP_PAD 128 KiB).
- Larger requests get their own anonymous mmap (size + 16-byte header, page rounded);
  freeing one munmaps it and, as glibc's dynamic threshold does, raises the threshold to
  that chunk's size (up to DEFAULT_MMAP_THRESHOLD_MAX, 32 MiB) and the trim threshold to
  twice that.
- When the free top chunk exceeds M_TRIM_THRESHOLD (128 KiB, dynamic as above), free()
  trims it with a negative sbrk, keeping M_TOP_PAD.
- Chunks are 16-byte aligned; the user pointer is chunk + 16 (prev_size, size), a chunk
  spans request + 8 rounded up to 16 bytes (at least 32). Writing a header touches its
  page, as in glibc, and changes its bytes (a write of unknown data: new size fields).

The allocator only places memory; the workload touches what it uses through the task. It
talks to the kernel only through the task's system calls, so a fork()ed child continues
with a copy of its parent's allocator state (`clone_for`).
"""

from __future__ import annotations

import bisect

from guestkernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
SIZE_SZ = 8  # size field of a chunk header
MALLOC_ALIGN = 16
MINSIZE = 32
M_MMAP_THRESHOLD = 128 * 1024
M_TRIM_THRESHOLD = 128 * 1024
M_TOP_PAD = 128 * 1024
DEFAULT_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def _request2size(n: int) -> int:
    size = (n + SIZE_SZ + MALLOC_ALIGN - 1) & ~(MALLOC_ALIGN - 1)
    return max(size, MINSIZE)


def _page_up(n: int) -> int:
    return (n + PAGE - 1) & ~(PAGE - 1)


class Malloc:
    """malloc/free/realloc/calloc of one process. Addresses are user pointers."""

    def __init__(self, task, touch_headers: bool = True) -> None:
        self.task = task
        self.touch_headers = touch_headers
        self.mmap_threshold = M_MMAP_THRESHOLD
        self.trim_threshold = M_TRIM_THRESHOLD
        self.heap_start = 0  # first chunk address (0: heap not created yet)
        self.top = 0  # start of the top chunk
        self.brk = 0  # current program break
        self.inuse: dict[int, int] = {}  # chunk address -> chunk size (brk heap)
        self.mmapped: dict[int, int] = {}  # user pointer -> mapping length
        self.free_sizes: list[tuple[int, int]] = []  # sorted (size, chunk address)
        self.free_start: dict[int, int] = {}  # chunk address -> size
        self.free_end: dict[int, int] = {}  # end address -> chunk address
        # statistics, as mallinfo2() reports them
        self.arena = 0  # bytes obtained with sbrk
        self.hblkhd = 0  # bytes in mmapped chunks
        self.uordblks = 0  # bytes in use in the heap
        self.nr_sbrk = 0
        self.nr_mmap = 0
        self.nr_munmap = 0
        self.nr_trim = 0
        self.cost = 0.0  # seconds of the header touches

    # ------------------------------------------------------------------ public
    def malloc(self, n: int) -> int:
        """Returns a user pointer, or 0 when the kernel refuses memory (ENOMEM)."""
        if n < 0:
            raise ValueError("malloc: negative size")
        size = _request2size(n)
        if size >= self.mmap_threshold:
            return self._mmap_chunk(size)
        chunk = self._take_free(size)
        if chunk is None:
            chunk = self._from_top(size)
            if chunk is None:
                # sbrk failed (ENOMEM or a mapping in the way): glibc falls back to mmap
                return self._mmap_chunk(size)
        self.inuse[chunk] = size if chunk not in self.inuse else self.inuse[chunk]
        self.uordblks += self.inuse[chunk]
        self._touch_header(chunk)
        return chunk + 2 * SIZE_SZ  # user pointer: past prev_size and size (16-aligned)

    def calloc(self, n: int) -> int:
        return self.malloc(n)

    def free(self, ptr: int) -> None:
        if not ptr:
            return
        if ptr in self.mmapped:
            length = self.mmapped.pop(ptr)
            self.task.munmap(ptr - 2 * SIZE_SZ, length)
            self.nr_munmap += 1
            self.hblkhd -= length
            # dynamic mmap threshold (glibc >= 2.26: mp_.no_dyn_threshold unset)
            size = length - 2 * SIZE_SZ
            if self.mmap_threshold < size <= DEFAULT_MMAP_THRESHOLD_MAX:
                self.mmap_threshold = _page_up(size)
                self.trim_threshold = 2 * self.mmap_threshold
            return
        chunk = ptr - 2 * SIZE_SZ
        size = self.inuse.pop(chunk, None)
        if size is None:
            raise ValueError(f"free(): invalid pointer {ptr:#x}")
        self.uordblks -= size
        # coalesce with the following and preceding free chunks
        nxt = chunk + size
        if nxt in self.free_start:
            size += self._unlink(nxt)
        if chunk in self.free_end:
            prev = self.free_end[chunk]
            size += self._unlink(prev)
            chunk = prev
        if chunk + size == self.top:
            self.top = chunk  # merges into the top chunk
            self._maybe_trim()
        else:
            self._link(chunk, size)

    def realloc(self, ptr: int, n: int) -> int:
        if not ptr:
            return self.malloc(n)
        new = self.malloc(n)
        if new:
            self.free(ptr)
        return new

    def usable_size(self, ptr: int) -> int:
        if ptr in self.mmapped:
            return self.mmapped[ptr] - 2 * SIZE_SZ
        return self.inuse[ptr - 2 * SIZE_SZ] - SIZE_SZ

    def clone_for(self, task) -> Malloc:
        """The allocator state of a fork()ed child (its address space is a copy)."""
        child = Malloc.__new__(Malloc)
        child.__dict__.update(self.__dict__)
        child.task = task
        child.inuse = dict(self.inuse)
        child.mmapped = dict(self.mmapped)
        child.free_sizes = list(self.free_sizes)
        child.free_start = dict(self.free_start)
        child.free_end = dict(self.free_end)
        child.cost = 0.0
        return child

    def take_cost(self) -> float:
        c = self.cost
        self.cost = 0.0
        return c

    # ------------------------------------------------------------------ internals
    def _touch_header(self, chunk: int) -> None:
        if self.touch_headers:
            self.cost += self.task.access(chunk, True)

    def _mmap_chunk(self, size: int) -> int:
        length = _page_up(size + SIZE_SZ)
        try:
            addr = self.task.mmap(0, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        except OSError:
            return 0
        self.nr_mmap += 1
        self.hblkhd += length
        ptr = addr + 2 * SIZE_SZ
        self.mmapped[ptr] = length
        self._touch_header(addr)
        return ptr

    def _link(self, chunk: int, size: int) -> None:
        bisect.insort(self.free_sizes, (size, chunk))
        self.free_start[chunk] = size
        self.free_end[chunk + size] = chunk

    def _unlink(self, chunk: int) -> int:
        size = self.free_start.pop(chunk)
        del self.free_end[chunk + size]
        i = bisect.bisect_left(self.free_sizes, (size, chunk))
        del self.free_sizes[i]
        return size

    def _take_free(self, size: int) -> int | None:
        i = bisect.bisect_left(self.free_sizes, (size, 0))
        if i == len(self.free_sizes):
            return None
        fsize, chunk = self.free_sizes[i]
        self._unlink(chunk)
        rest = fsize - size
        if rest >= MINSIZE:
            self._link(chunk + size, rest)  # split: the remainder stays free
            self.inuse[chunk] = size
        else:
            self.inuse[chunk] = fsize
        return chunk

    def _from_top(self, size: int) -> int | None:
        if not self.heap_start:
            start = self.task.brk(0)
            # the first chunk is aligned to MALLOC_ALIGN (the break may not be)
            self.heap_start = self.top = self.brk = (start + MALLOC_ALIGN - 1) & ~(MALLOC_ALIGN - 1)
        if self.top + size + MINSIZE > self.brk:
            need = self.top + size + MINSIZE - self.brk
            incr = _page_up(need + M_TOP_PAD)
            new = self.task.brk(self.brk + incr)
            if new < self.brk + incr:
                return None
            self.nr_sbrk += 1
            self.arena += incr
            self.brk = new
        chunk = self.top
        self.top += size
        return chunk

    def _maybe_trim(self) -> None:
        top_size = self.brk - self.top
        if top_size < self.trim_threshold:
            return
        # keep M_TOP_PAD, release whole pages above it
        keep = _page_up(self.top + M_TOP_PAD)
        if keep >= self.brk:
            return
        new = self.task.brk(keep)
        if new == keep:
            self.arena -= self.brk - keep
            self.brk = keep
            self.nr_trim += 1

    def stats(self) -> dict[str, int]:
        """mallinfo2()-like statistics."""
        return {
            "arena": self.arena,
            "hblkhd": self.hblkhd,
            "uordblks": self.uordblks,
            "fordblks": sum(self.free_start.values()) + (self.brk - self.top),
            "keepcost": self.brk - self.top,
            "mmap_threshold": self.mmap_threshold,
            "nr_sbrk": self.nr_sbrk,
            "nr_mmap": self.nr_mmap,
            "nr_munmap": self.nr_munmap,
            "nr_trim": self.nr_trim,
        }
