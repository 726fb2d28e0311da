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
OWNER_LP = -5  # a frame of a live host large page the guest has not touched yet (RegionMemory)

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
        self.reserved = 0  # frames of live host large pages not touched yet (RegionMemory)
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
        # frees of many frames at once (the compression cache's bulk paths); RegionMemory
        # replaces it with its own
        self._free_many = self._free.extend

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


REGION_SHIFT = 9  # 512 frames of 4 KiB: a 2 MiB region, the size of a host large page
REGION_PAGES = 1 << REGION_SHIFT


class RegionMemory(MachineMemory):
    """Machine memory as aligned 2 MiB regions of 512 frames, for hosts with large pages.

    A host large page is contiguous machine memory: it takes one wholly free aligned region
    (`alloc_region`). Frames of 4 KiB come preferably from a region already partly in use:
    the current region while it has free frames, then the region that most recently got a
    free frame back (LIFO), then a wholly free region, then a never-used one. This is the
    effect of Linux's buddy allocator at pageblock order: __rmqueue_smallest serves an
    order-0 request from the smallest free block there is and splits a free order-9 block
    only when no smaller one exists, so wholly free 2 MiB blocks stay whole while
    fragments elsewhere can serve small requests (the per-CPU lists and migratetype
    fallbacks aside). ESX's allocator is not published; KB 1021095 only says that a
    large page needs a free 2 MB contiguous region and that ESX backs with small pages
    when "fragmentation" leaves none. So fragmentation develops as VMs free scattered
    frames (sharing, swapping, ballooning, splits), and a large page fails when no region
    is wholly free, however many frames are.

    Per region r (frames r*512 .. r*512+511):
        _rlist[r]   its free frames (a LIFO list: pops give ascending MPNs in a new region)
        _rfree[r]   len(_rlist[r])
        lp_region[r] 1 while the region is a live host large page (from `alloc_region`
                    until the large page is split, `lp_split`), for compaction, which
                    steps over a THP (hypervisor/compaction.py)
    `_partial` and `_whole` are stacks of region numbers that may hold stale entries
    (checked when popped): regions that got a free frame back while full, and regions
    that became wholly free. Regions are added to the lists lazily, 512 frames at a time.

    A live large page's frames the guest has not touched yet are OWNER_LP (no content,
    refcount 0) and counted in `reserved` and as in use; `take` gives one to the guest,
    `unreserve_frames` frees those a split leaves untouched.

    Costs nothing on hosts without large pages: those keep MachineMemory.
    """

    def __init__(self, nr_frames: int) -> None:
        super().__init__(nr_frames)
        self._rlist: list[list[int]] = []
        self._rfree: list[int] = []
        self._partial: list[int] = []
        self._whole: list[int] = []
        self._cur: list[int] = []  # the free list of the region small frames come from now
        self.lp_region = bytearray()  # 1: a live large page's region
        self.nr_regions = nr_frames >> REGION_SHIFT  # whole regions within capacity
        self._free_many = self._free_frames
        # counters
        self.regions_allocated = 0  # large pages given a region, cumulative
        self.region_alloc_failed = 0  # large pages refused for lack of a wholly free region

    def _grow(self) -> int:
        """Add the next never-used region (beyond capacity only for an overdraft)."""
        r = len(self._rlist)
        base = r << REGION_SHIFT
        n = REGION_PAGES
        self.content.extend([None] * n)
        self.refcount.extend([0] * n)
        self.owner.extend([OWNER_FREE] * n)
        self.csum.extend([-1] * n)
        self._rlist.append(list(range(base + n - 1, base - 1, -1)))
        self.lp_region.append(0)
        self._rfree.append(n if base + n <= self.nr_frames else max(0, self.nr_frames - base))
        if base + n > self.nr_frames:
            # the tail beyond capacity is never free (only an overdraft uses it)
            del self._rlist[r][: n - self._rfree[r]]
        return r

    def _next(self, force: bool) -> list[int]:
        """The free list small frames come from next (a partly used region if any)."""
        rfree = self._rfree
        rlist = self._rlist
        partial = self._partial
        while partial:
            r = partial.pop()
            n = rfree[r]
            if n == REGION_PAGES:
                self._whole.append(r)  # wholly free again: kept for a large page
            elif n:
                self._cur = rlist[r]
                return self._cur
        whole = self._whole
        while whole:
            r = whole.pop()
            if rfree[r] == REGION_PAGES:
                self._cur = rlist[r]
                return self._cur
        while len(rlist) < self.nr_regions + 1 or force:
            r = self._grow()
            if rfree[r]:
                self._cur = rlist[r]
                return self._cur
            if force:
                # an overdraft: a frame beyond capacity
                rfree[r] = REGION_PAGES
                base = r << REGION_SHIFT
                rlist[r][:] = range(base + REGION_PAGES - 1, base - 1, -1)
                self._cur = rlist[r]
                return self._cur
        raise AssertionError("machine memory: nr_free > 0 but no free frame")

    def alloc(self, owner: int, data: bytes, force: bool = False) -> int:
        """MachineMemory.alloc from a partly used region first (see the class)."""
        if self.nr_free <= 0:
            if not force:
                return -1
            self.overdraft_allocs += 1
            if self._overdrawn_since < 0 and self.clock is not None:
                self._overdrawn_since = self.clock()
        lst = self._cur
        if not lst:
            lst = self._next(self.nr_free <= 0)
        self.nr_free -= 1
        if self.nr_free < self.min_free:
            self.min_free = self.nr_free
        self.frames_allocated += 1
        mpn = lst.pop()
        self._rfree[mpn >> REGION_SHIFT] -= 1
        self.content[mpn] = data
        self.refcount[mpn] = 1
        self.owner[mpn] = owner
        self.csum[mpn] = -1
        return mpn

    def free(self, mpn: int) -> None:
        if self.owner[mpn] == OWNER_FREE:
            raise ValueError(f"machine frame {mpn:#x} freed twice")
        self.content[mpn] = None
        self.refcount[mpn] = 0
        self.owner[mpn] = OWNER_FREE
        self.csum[mpn] = -1
        r = mpn >> REGION_SHIFT
        lst = self._rlist[r]
        lst.append(mpn)
        n = self._rfree[r] = self._rfree[r] + 1
        if n == 1:
            self._partial.append(r)
        elif n == REGION_PAGES:
            self._whole.append(r)
            self.lp_region[r] = 0
            if lst is self._cur:
                self._cur = []  # wholly free again: kept whole while fragments remain
        self.nr_free += 1
        self.frames_freed += 1
        if self._overdrawn_since >= 0 and self.nr_free >= 0:
            self._end_overdraft()

    def _free_frames(self, mpns) -> None:
        """Frames the caller has already marked free (content None, refcount 0, owner
        OWNER_FREE) and counted in nr_free and frames_freed go back to their regions."""
        rlist = self._rlist
        rfree = self._rfree
        for mpn in mpns:
            r = mpn >> REGION_SHIFT
            lst = rlist[r]
            lst.append(mpn)
            n = rfree[r] = rfree[r] + 1
            if n == 1:
                self._partial.append(r)
            elif n == REGION_PAGES:
                self._whole.append(r)
                self.lp_region[r] = 0
                if lst is self._cur:
                    self._cur = []

    # -- large pages ---------------------------------------------------------------------------

    def alloc_region(self, keep: int = 0) -> int:
        """A wholly free aligned region for a host large page, if `keep` frames stay free
        beyond its 512: its first MPN, its frames OWNER_LP and counted in `reserved` (in
        use, no content) until `take` or `unreserve_frames`. -1 if there is no room or no
        wholly free region (fragmentation: counted in region_alloc_failed)."""
        if self.nr_free - REGION_PAGES < keep:
            return -1
        rfree = self._rfree
        whole = self._whole
        r = -1
        while whole:
            c = whole.pop()
            if rfree[c] == REGION_PAGES and c < self.nr_regions:
                r = c
                break
        if r < 0:
            if len(self._rlist) < self.nr_regions:
                r = self._grow()
            else:
                self.region_alloc_failed += 1
                return -1
        lst = self._rlist[r]
        lst.clear()  # (if it was the current region, the next alloc finds it empty)
        rfree[r] = 0
        self.lp_region[r] = 1
        base = r << REGION_SHIFT
        self.owner[base:base + REGION_PAGES] = [OWNER_LP] * REGION_PAGES
        self.nr_free -= REGION_PAGES
        self.reserved += REGION_PAGES
        if self.nr_free < self.min_free:
            self.min_free = self.nr_free
        self.regions_allocated += 1
        return base

    def lp_split(self, base: int) -> None:
        """The large page at machine frame `base` was split (or broken): its region holds
        small pages from now on."""
        self.lp_region[base >> REGION_SHIFT] = 0

    def whole_regions(self) -> int:
        """Wholly free regions within capacity now, never-used ones included (a scan)."""
        n = sum(1 for r in range(len(self._rfree)) if self._rfree[r] == REGION_PAGES and r < self.nr_regions)
        return n + max(0, self.nr_regions - len(self._rlist))

    def take(self, mpn: int, owner: int, data) -> None:
        """A large page's untouched frame `mpn` (OWNER_LP) becomes the guest's, holding
        `data` (a first touch of its subpage: no allocation, it was in use already)."""
        if self.owner[mpn] != OWNER_LP:
            raise ValueError(f"machine frame {mpn:#x} is not an untouched large-page frame")
        self.content[mpn] = data
        self.refcount[mpn] = 1
        self.owner[mpn] = owner
        self.csum[mpn] = -1
        self.reserved -= 1
        self.frames_allocated += 1

    def unreserve_frames(self, mpns) -> None:
        """Untouched large-page frames become free (the large page was split or broken:
        what the guest never touched goes back, in place, into its region)."""
        owner = self.owner
        n = 0
        for mpn in mpns:
            if owner[mpn] != OWNER_LP:
                raise ValueError(f"machine frame {mpn:#x} is not an untouched large-page frame")
            owner[mpn] = OWNER_FREE
            n += 1
        self._free_frames(mpns)
        self.reserved -= n
        self.nr_free += n
        if self._overdrawn_since >= 0 and self.nr_free >= 0:
            self._end_overdraft()

    def validate(self) -> None:
        """Check regions, free lists, refcounts and nr_free agree; raise AssertionError."""
        nr = len(self.content)
        assert nr == len(self._rlist) << REGION_SHIFT, (nr, len(self._rlist))
        free = 0
        lp = 0
        for r, lst in enumerate(self._rlist):
            assert len(lst) == self._rfree[r], (r, len(lst), self._rfree[r])
            assert len(set(lst)) == len(lst), f"region {r}: a frame twice on its free list"
            base = r << REGION_SHIFT
            for mpn in lst:
                assert base <= mpn < base + REGION_PAGES, (r, mpn)
                assert self.owner[mpn] == OWNER_FREE, (r, mpn, self.owner[mpn])
            free += len(lst)
        for mpn in range(nr):
            o = self.owner[mpn]
            if o == OWNER_FREE:
                assert self.refcount[mpn] == 0 and self.content[mpn] is None, mpn
            elif o == OWNER_LP:
                assert self.refcount[mpn] == 0 and self.content[mpn] is None, mpn
                lp += 1
            else:
                assert self.refcount[mpn] >= 1, f"frame {mpn} in use with refcount 0"
                data = self.content[mpn]
                assert data is not None and len(data) == PAGE_SIZE
        assert lp == self.reserved, (lp, self.reserved)
        assert len(self.lp_region) == len(self._rlist)
        for r in range(len(self._rlist)):
            base = r << REGION_SHIFT
            if OWNER_LP in self.owner[base:base + REGION_PAGES]:
                assert self.lp_region[r], f"region {r}: untouched large-page frames but no large page"
        if self.overdraft_allocs == 0:
            # frames of the tail region beyond capacity are OWNER_FREE but never free
            beyond = max(0, nr - self.nr_frames)
            assert self.owner.count(OWNER_FREE) - beyond == free, (free, beyond)
            unused = max(0, self.nr_frames - nr)  # in regions not added yet
            assert self.nr_free == free + unused, (self.nr_free, free, unused)
