"""Machine memory: the host's frames (MPNs), each holding a real 4 KiB `bytes`.

A frame is identified by its machine page number (MPN), an index into parallel lists:

    content[mpn]   the page's bytes (None while free). Identical contents reuse one
                   `bytes` object (the zero page, a guest OS image's pages), so the
                   simulator's own memory grows with distinct contents, not with frames.
    refcount[mpn]  mappings of the frame: 1 for a private frame, n for a frame shared by
                   n guest frames (page sharing), 0 when free
    owner[mpn]     VM id of a private frame; OWNER_SHARED, OWNER_ZIP (compression cache
                   frame) or OWNER_FREE otherwise
    csum[mpn]      cached page-sharing checksum of `content`, -1 when not computed. Set
                   by the sharing scanner, cleared whenever the content changes.
                   WRITTEN (-2): the guest wrote the frame (a write without data, see
                   guestkernel.physmem) since `content` was made: `content` is stale
                   until `data(mpn)` folds the write into the new recipe. FOLDED (-3):
                   not computed, content unchanged since the sharing scanner folded it. Whoever needs a
                   frame's content calls `data(mpn)`, never `content[mpn]` alone (a frame
                   the guest cannot write, a KSM or zero frame, may be read directly).

The lists grow lazily as frames are first used, up to `nr_frames`; freed frames go to a
LIFO free list and are reused first. Capacity is finite: `alloc` returns -1 when every
frame is in use and the host must reclaim. `alloc(..., force=True)` overdraws (the host's
last resort when nothing can be reclaimed; counted in `overdraft_allocs` and visible as a
negative `nr_free`). A simulated host cannot have more memory than it has, so an
overdraft is reported, never hidden: its peak (`overdraft_peak`, frames) and, with a
`clock`, how long machine memory stayed overdrawn (`overdraft_seconds(now)`).
"""

from __future__ import annotations

from struct import Struct

import xxhash

from guestkernel.physmem import LazyPage, WrittenPage, write_digest, written
from guestkernel.units import PAGE_SIZE

OWNER_FREE = -1
OWNER_SHARED = -2  # a page-sharing (KSM) frame, mapped read-only by one or more guest frames
OWNER_ZIP = -3  # a frame of a compression cache, holding compressed slots
OWNER_ZERO = -4  # the host's shared zero frame (never freed)

_MASK64 = (1 << 64) - 1
_PACK2 = Struct("<QQ").pack
_xxh64 = xxhash.xxh64_intdigest

WRITTEN = -2  # csum[mpn]: written since its content was made (fold before reading)
FOLDED = -3  # csum[mpn]: content made by the scanner's fold, not hashed, unchanged since


class MachineMemory:
    """`nr_frames` machine frames of PAGE_SIZE bytes."""

    def __init__(self, nr_frames: int) -> None:
        if nr_frames < 1:
            raise ValueError(f"machine memory: need at least one frame, got {nr_frames}")
        self.nr_frames = nr_frames  # capacity, frames
        self.content: list[bytes | None] = []
        self.refcount: list[int] = []
        self.owner: list[int] = []
        self.csum: list[int] = []
        self._free: list[int] = []  # freed MPNs, reused LIFO
        self.nr_free = nr_frames  # frames not in use (negative while overdrawn)
        self.reserved = 0  # frames held by host large pages for guest pages not yet touched
        # counters
        self.frames_allocated = 0  # allocations, cumulative
        self.frames_freed = 0  # frees, cumulative
        self.overdraft_allocs = 0  # allocations beyond capacity (host could not reclaim)
        self.min_free = nr_frames  # lowest nr_free seen, frames
        self.clock = None  # callable() -> simulated seconds (the Host's env.now), or None
        self.overdraft_time = 0.0  # seconds overdrawn, in overdrafts that have ended
        self._overdrawn_since = -1.0  # when the current overdraft began (-1: none)
        self.write_seed = 0  # seed of the digests of guest writes (the Host sets it)
        self.write_folds = 0  # written frames whose new content was made (generations)

    @property
    def nr_used(self) -> int:
        return self.nr_frames - self.nr_free

    def alloc(self, owner: int, data: bytes, force: bool = False) -> int:
        """Take a frame holding `data` with refcount 1; its MPN, or -1 if memory is full."""
        if self.nr_free <= 0:
            if not force:
                return -1
            self.overdraft_allocs += 1
            if self._overdrawn_since < 0 and self.clock is not None:
                self._overdrawn_since = self.clock()
        self.nr_free -= 1
        if self.nr_free < self.min_free:
            self.min_free = self.nr_free
        self.frames_allocated += 1
        free = self._free
        if free:
            mpn = free.pop()
            self.content[mpn] = data
            self.refcount[mpn] = 1
            self.owner[mpn] = owner
            self.csum[mpn] = -1
            return mpn
        mpn = len(self.content)
        self.content.append(data)
        self.refcount.append(1)
        self.owner.append(owner)
        self.csum.append(-1)
        return mpn

    def reserve(self, n: int, keep: int = 0) -> bool:
        """Hold `n` frames for a host large page (largepage.py) if `keep` frames stay free
        beyond them: they count as in use, with no content, until `unreserve`."""
        if self.nr_free - n < keep:
            return False
        self.nr_free -= n
        self.reserved += n
        if self.nr_free < self.min_free:
            self.min_free = self.nr_free
        return True

    def unreserve(self, n: int) -> None:
        """`n` reserved frames become free (a subpage is backed from them by the next
        `alloc`, or the large page was broken)."""
        self.reserved -= n
        self.nr_free += n
        if self._overdrawn_since >= 0 and self.nr_free >= 0:
            self._end_overdraft()

    def free(self, mpn: int) -> None:
        """Return a frame to the free list whatever its refcount."""
        if self.owner[mpn] == OWNER_FREE:
            raise ValueError(f"machine frame {mpn:#x} freed twice")
        self.content[mpn] = None
        self.refcount[mpn] = 0
        self.owner[mpn] = OWNER_FREE
        self.csum[mpn] = -1
        self._free.append(mpn)
        self.nr_free += 1
        self.frames_freed += 1
        if self._overdrawn_since >= 0 and self.nr_free >= 0:
            self._end_overdraft()

    @property
    def overdraft_peak(self) -> int:
        """Most frames ever in use beyond capacity (0: never overdrawn)."""
        return -self.min_free if self.min_free < 0 else 0

    def overdraft_seconds(self, now: float) -> float:
        """Seconds machine memory has been overdrawn up to `now` (needs a `clock`). An
        overdraft that ended by a bulk free (the compression cache settles nr_free in one
        step) is closed here, at `now`, at the latest."""
        if self._overdrawn_since >= 0:
            if self.nr_free >= 0:
                self._end_overdraft(now)
            else:
                return self.overdraft_time + max(0.0, now - self._overdrawn_since)
        return self.overdraft_time

    def _end_overdraft(self, now: float | None = None) -> None:
        if now is None:
            now = self.clock() if self.clock is not None else self._overdrawn_since
        self.overdraft_time += max(0.0, now - self._overdrawn_since)
        self._overdrawn_since = -1.0

    def get(self, mpn: int) -> None:
        """One more mapping of the frame."""
        self.refcount[mpn] += 1

    def put(self, mpn: int) -> bool:
        """One mapping fewer; frees the frame at zero. True if it was freed."""
        rc = self.refcount[mpn] - 1
        if rc > 0:
            self.refcount[mpn] = rc
            return False
        self.free(mpn)
        return True

    def set_content(self, mpn: int, data: bytes) -> None:
        self.content[mpn] = data
        self.csum[mpn] = -1

    def data(self, mpn: int):
        """The frame's content (bytes or a LazyPage), the guest's writes folded in."""
        if self.csum[mpn] == WRITTEN:
            return self.fold(mpn)
        return self.content[mpn]

    def fold(self, mpn: int):
        """Make the content of a WRITTEN frame: its recipe after a write drawn from the
        write seed, the frame and the generation (one more per fold). Returns it.

        NOTE: write_digest and written() inlined for performance (the sharing scanner
        folds every written frame it visits); `_fold` is the plain twin."""
        gen = self.write_folds = self.write_folds + 1
        content = self.content
        data = content[mpn]
        digest = _xxh64(_PACK2(mpn, gen), self.write_seed & _MASK64)
        if data.__class__ is not bytes and isinstance(data, LazyPage):
            data = data.written(digest, -1, 0)
        else:
            data = WrittenPage(data, digest, -1, 0)
        content[mpn] = data
        self.csum[mpn] = -1
        return data

    def _fold(self, mpn: int):
        """fold() through the guest/host boundary's own functions (its plain twin)."""
        self.write_folds += 1
        data = self.content[mpn] = written(
            self.content[mpn], write_digest(self.write_seed, mpn, self.write_folds))
        self.csum[mpn] = -1
        return data

    def validate(self) -> None:
        """Check the free list, refcounts and nr_free agree; raise AssertionError if not."""
        free = set(self._free)
        assert len(free) == len(self._free), "free list holds a frame twice"
        for mpn in range(len(self.content)):
            if mpn in free:
                assert self.owner[mpn] == OWNER_FREE and self.refcount[mpn] == 0
                assert self.content[mpn] is None
            else:
                assert self.owner[mpn] != OWNER_FREE, f"frame {mpn} in use but owner free"
                assert self.refcount[mpn] >= 1, f"frame {mpn} in use with refcount 0"
                data = self.content[mpn]
                assert data is not None and len(data) == PAGE_SIZE
        used = len(self.content) - len(free) + self.reserved
        assert self.reserved >= 0, self.reserved
        assert self.nr_free == self.nr_frames - used, (self.nr_free, self.nr_frames, used)
