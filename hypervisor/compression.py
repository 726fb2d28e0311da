"""Compression cache (ESXi memory compression): zstd copies of pages chosen for eviction.

Only pages the host already decided to evict are offered. A page is kept compressed if
zstd brings it to <= `threshold` bytes (default 2048: half a page), in a half-page slot,
or in a quarter-page slot when <= `quarter` bytes (default 1024); otherwise it is refused
and goes to host swap. Slots live in machine frames taken from `MachineMemory` (owner
OWNER_ZIP), at most `max_frames` of them per VM (Mem.MemZipMaxPct, default 10 % of the
VM's memory). Accessing a compressed page decompresses it into a fresh frame (the VM
counts zswpin and charges `decompress_cost`). When the cache is full, ESX replaces by
age: the page compressed longest ago is decompressed and written to host swap to make
room for the new one (VM._zip_replace_oldest keeps the age order; counted in `replaced`).

Memory reclaimed by the cache = pages stored - frames it occupies.

Slots are numbered per cache: `(frame << 2) | sub` where `frame` is the cache's own
index of the machine frame (`frame_mpn[frame]`), quarter-page slots use sub 0..3 and
half-page slots 0 and 2. What a slot holds sits in flat lists indexed by slot (no object
per page), which keeps the per-page path lean.
"""

from __future__ import annotations

from array import array
from itertools import compress as select
from itertools import repeat
from operator import not_

import zstandard

from guestkernel.physmem import ZERO_PAGE, page_bytes
from guestkernel.units import PAGE_SIZE

from .machine import OWNER_FREE, OWNER_ZIP, MachineMemory


class CompressionCache:
    """One VM's compression cache."""

    def __init__(
        self,
        machine: MachineMemory,
        max_frames: int,
        level: int = 3,
        threshold: int = PAGE_SIZE // 2,
        quarter: int = PAGE_SIZE // 4,
        compress_cost: float = 5.7e-6,
        decompress_cost: float = 1.5e-6,
        keep_compressed: bool = False,
    ) -> None:
        if not 1 <= level <= 22:
            raise ValueError(f"zstd level: must be between 1 and 22, got {level}")
        if not 0 < quarter <= threshold <= PAGE_SIZE // 2:
            raise ValueError(
                "compression thresholds: need 0 < quarter <= threshold <= half a page"
            )
        self.machine = machine
        self.max_frames = max_frames  # frames the cache may occupy
        self.level = level  # zstd level
        self.threshold = threshold  # bytes: larger results are refused
        self.quarter = quarter  # bytes: results this small take a quarter-page slot
        self.compress_cost = compress_cost  # seconds per page compressed
        self.decompress_cost = decompress_cost  # seconds per page decompressed
        self.keep_compressed = keep_compressed  # hold zstd output, decompress on access
        self._compressor = zstandard.ZstdCompressor(level=level)
        self._compress = self._compressor.compress
        self._decompress = zstandard.ZstdDecompressor().decompress
        # per slot: the page (or its zstd frame with keep_compressed) and compressed size
        self._data: list[bytes | None] = []
        self._size = array("H")
        # per cache frame: machine frame (-1 once given back), 1 if cut in quarters
        self.frame_mpn: list[int] = []
        self._quarter = bytearray()
        self._spare: list[int] = []  # cache frame numbers given back, for reuse
        self._free_q: list[int] = []  # free quarter-page slots
        self._free_h: list[int] = []  # free half-page slots
        self.nr_frames = 0  # frames occupied
        self.nr_stored = 0  # pages held compressed
        # counters
        self.stored_bytes = 0  # compressed bytes held
        self.zswpout = 0  # pages stored, cumulative
        self.zswpin = 0  # pages decompressed on access, cumulative
        self.rejected = 0  # pages that compressed above the threshold
        self.full = 0  # pages refused because the cache was at max_frames or memory full
        self.replaced = 0  # pages moved out to swap to make room, oldest first (the VM does it)
        self.decompress_time = 0.0  # seconds

    @property
    def reclaimed(self) -> int:
        """Pages saved: stored pages minus the frames holding them."""
        return self.nr_stored - self.nr_frames

    @property
    def compress_time(self) -> float:
        """Seconds spent compressing, stored or refused."""
        return (self.zswpout + self.rejected + self.full) * self.compress_cost

    def store(self, data: bytes) -> int:
        """Compress a page into a slot; the slot, or -1 if refused (too big, no room).

        Costs `compress_cost` seconds either way.
        """
        blob = self._compress(data if data.__class__ is bytes else page_bytes(data))
        size = len(blob)
        if size > self.threshold:
            self.rejected += 1
            return -1
        free = self._free_q if size <= self.quarter else self._free_h
        if not free and not self._grow(size <= self.quarter):
            self.full += 1
            return -1
        slot = free.pop()
        # NOTE: decompressing gives back exactly `data`, so by default the page itself is
        # held (often one object shared with other frames) rather than the zstd output,
        # which would cost an allocation per page; sizes, slots and costs are the same.
        self._data[slot] = blob if self.keep_compressed else data
        self._size[slot] = size
        self.nr_stored += 1
        self.stored_bytes += size
        self.zswpout += 1
        return slot

    def store_frames(self, mpns, refused=None) -> list[int]:
        """Compress the pages held by machine frames `mpns`, freeing each frame as soon as
        its page is stored (so the next slot may reuse it when memory is full).

        Returns one slot per frame, -1 where the page was refused (its frame is kept);
        `refused(i)` is called at once for such a page (the host swaps it, which frees a
        frame the cache may use next). Costs `compress_cost` seconds per page.

        Exactly `store` page by page, each stored page's frame freed at once (tests
        check the two agree frame for frame); done in three passes for speed: compress
        all, choose slots, then write slots and free frames in bulk.
        """
        machine = self.machine
        content = machine.content
        refcount = machine.refcount
        owner = machine.owner
        mfree_many = machine._free_many  # (RegionMemory: back into their regions)
        mpns = list(mpns)
        datas = list(map(content.__getitem__, mpns))
        keep = self.keep_compressed
        try:
            if keep:
                blobs = list(map(self._compress, datas))
                sizes_in = list(map(len, blobs))
            else:
                # NOTE: each zstd frame is measured and dropped at once (no buffer of frames)
                blobs = None
                sizes_in = list(map(len, map(self._compress, datas)))
        except TypeError:  # LazyPages among them: compressed as their real bytes
            pages = list(map(page_bytes, datas))
            blobs = list(map(self._compress, pages)) if keep else None
            sizes_in = list(map(len, blobs if keep else map(self._compress, pages)))
        out = self._store_fitting(mpns, blobs if keep else datas, sizes_in)
        if out is not None:
            return out
        threshold = self.threshold
        quarter = self.quarter
        free_q = self._free_q
        free_h = self._free_h
        frame_mpn = self.frame_mpn
        qflags = self._quarter
        held = self._data
        sizes = self._size
        # Frames of stored pages, freed but not yet on the machine's free list: they are
        # the top of that LIFO list, so a cache frame allocated meanwhile takes the last
        # of them, as it would have. Their content, refcount and owner are reset when
        # they are put on the list (`flush`), in bulk.
        pend: list[int] = []
        pending = 0  # stored pages not yet counted in machine.nr_free

        def flush() -> None:
            if pend:
                n = len(pend)
                list(map(content.__setitem__, pend, repeat(None, n)))
                list(map(refcount.__setitem__, pend, repeat(0, n)))
                list(map(owner.__setitem__, pend, repeat(OWNER_FREE, n)))
                mfree_many(pend)
                pend.clear()

        out: list[int] = []
        append = out.append
        pend_append = pend.append
        refusals = 0
        for i in range(len(mpns)):
            size = sizes_in[i]
            if size > threshold:
                self.rejected += 1
                refusals += 1
                append(-1)
                if refused is not None:
                    flush()
                    refused(i)
                continue
            is_q = size <= quarter
            free = free_q if is_q else free_h
            if not free:
                machine.nr_free += pending  # the frame allocation below must see it
                pending = 0
                if pend and machine.nr_free > 0 and not self._spare and self.nr_frames < self.max_frames:
                    # NOTE: _grow and MachineMemory.alloc inlined for performance (the
                    # common case: the frame freed last becomes a new cache frame)
                    fmpn = pend.pop()
                    machine.nr_free -= 1
                    if machine.nr_free < machine.min_free:
                        machine.min_free = machine.nr_free
                    machine.frames_allocated += 1
                    content[fmpn] = ZERO_PAGE
                    owner[fmpn] = OWNER_ZIP
                    refcount[fmpn] = 1
                    machine.csum[fmpn] = -1
                    self.nr_frames += 1
                    base = len(frame_mpn) << 2
                    frame_mpn.append(fmpn)
                    qflags.append(is_q)
                    held.extend((None, None, None, None))
                    sizes.extend((0, 0, 0, 0))
                    if is_q:
                        free_q.extend((base + 3, base + 2, base + 1, base))
                    else:
                        free_h.extend((base + 2, base))
                else:
                    flush()
                    if not self._grow(is_q):
                        self.full += 1
                        refusals += 1
                        append(-1)
                        if refused is not None:
                            refused(i)
                        continue
            append(free.pop())
            pend_append(mpns[i])
            pending += 1
        flush()
        stored = len(out) - refusals
        machine.nr_free += pending
        machine.frames_freed += stored
        if refusals:
            keep_i = [s >= 0 for s in out]
            slots = list(select(out, keep_i))
            datas = list(select(blobs if keep else datas, keep_i))
            nbytes_in = list(select(sizes_in, keep_i))
        else:
            slots = out
            datas = blobs if keep else datas
            nbytes_in = sizes_in
        list(map(held.__setitem__, slots, datas))
        list(map(sizes.__setitem__, slots, nbytes_in))
        self.nr_stored += stored
        self.stored_bytes += sum(nbytes_in)
        self.zswpout += stored
        return out

    def _store_fitting(self, mpns: list[int], held_in: list, sizes_in: list[int]) -> list[int] | None:
        """store_frames when every page fits a slot and every cache frame it needs can be
        had (no refusal, no reused frame number): the same slots, frames and counters as
        page by page, computed in whole-batch list operations. None if not applicable."""
        n = len(mpns)
        if not n or self._spare or max(sizes_in) > self.threshold:
            return None
        quarter = self.quarter
        if min(sizes_in) > quarter:  # (the common cases: one kind of slot)
            isq = None
            pages_q, pages_h = [], list(range(n))
        elif max(sizes_in) <= quarter:
            isq = None
            pages_q, pages_h = list(range(n)), []
        else:
            isq = [s <= quarter for s in sizes_in]
            pages_q = list(select(range(n), isq))
            pages_h = list(select(range(n), map(not_, isq)))
        free_q = self._free_q
        free_h = self._free_h
        # per kind: slots popped from the free list, then the pages that open a new frame
        reuse_q = min(len(pages_q), len(free_q))
        reuse_h = min(len(pages_h), len(free_h))
        grows_q = pages_q[reuse_q::4]
        grows_h = pages_h[reuse_h::2]
        if not grows_q or not grows_h:
            grows = grows_q or grows_h  # new cache frames, in the order they are cut
        else:
            grows = sorted(grows_q + grows_h)
        nr_grow = len(grows)
        machine = self.machine
        if nr_grow and (
            self.nr_frames + nr_grow > self.max_frames or machine.nr_free + grows[0] <= 0
        ):
            return None  # some page would be refused: page by page
        content = machine.content
        refcount = machine.refcount
        owner = machine.owner
        # Every page's frame is freed; a new cache frame cut at page i > 0 then takes the
        # frame page i - 1 just freed (the top of the machine's LIFO free list); at page 0
        # it comes from the machine as usual.
        first = machine.alloc(OWNER_ZIP, ZERO_PAGE) if nr_grow and grows[0] == 0 else -1
        for mpn in mpns:
            content[mpn] = None
            refcount[mpn] = 0
            owner[mpn] = OWNER_FREE
        later = grows[1:] if first >= 0 else grows
        if later:
            taken = [mpns[i - 1] for i in later]
            csum = machine.csum
            for mpn in taken:
                content[mpn] = ZERO_PAGE
                refcount[mpn] = 1
                owner[mpn] = OWNER_ZIP
                csum[mpn] = -1
            # (machine.min_free stands: nr_free never drops below its value at the start,
            # as page i - 1's frame was freed before page i takes it)
            machine.frames_allocated += len(taken)
            kept = bytearray(b"\x01") * n
            for i in later:
                kept[i - 1] = 0
            machine._free_many(select(mpns, kept))
        else:
            taken = []
            machine._free_many(mpns)
        machine.nr_free += n - len(taken)
        machine.frames_freed += n
        # the cache's new frames, numbered in the order they are cut
        frame_mpn = self.frame_mpn
        frame0 = len(frame_mpn)
        if first >= 0:
            frame_mpn.append(first)
        frame_mpn.extend(taken)
        if isq is None:
            is_q = [not pages_h] * nr_grow
        else:
            is_q = [isq[i] for i in grows]
        self._quarter.extend(is_q)
        held = self._data
        sizes = self._size
        held.extend(repeat(None, 4 * nr_grow))
        sizes.frombytes(bytes(8 * nr_grow))
        self.nr_frames += nr_grow
        if isq is None:
            # one kind of slot: the reused slots, then a run of new slots with a stride
            # (quarter slots 1 apart, half slots 2 apart: offsets 0 and 2 of each frame)
            free, reuse, step = (free_q, reuse_q, 1) if pages_q else (free_h, reuse_h, 2)
            out = free[len(free) - reuse :][::-1]
            del free[len(free) - reuse :]
            for slot, data, size in zip(out, held_in, sizes_in):
                held[slot] = data
                sizes[slot] = size
            start = frame0 << 2
            stop = start + step * (n - reuse)
            out += range(start, stop, step)
            # the last new frame's unused slots stay free (popped lowest first)
            if nr_grow:
                free.extend(range(((frame0 + nr_grow) << 2) - step, stop - 1, -step))
            if reuse:
                held_in = held_in[reuse:]
                sizes_in_new = sizes_in[reuse:]
            else:
                sizes_in_new = sizes_in
            held[start:stop:step] = held_in
            sizes[start:stop:step] = array("H", sizes_in_new)
        else:
            out = [0] * n
            for pages, free, reuse, offsets in (
                (pages_q, free_q, reuse_q, (0, 1, 2, 3)),
                (pages_h, free_h, reuse_h, (0, 2)),
            ):
                if not pages:
                    continue
                kind = len(offsets) == 4
                bases = [(frame0 + r) << 2 for r, q in enumerate(is_q) if q == kind]
                slots = free[len(free) - reuse :][::-1]
                del free[len(free) - reuse :]
                slots += [b + o for b in bases for o in offsets]
                if len(slots) > len(pages):
                    # the last new frame's unused slots stay free (popped lowest first)
                    free.extend(reversed(slots[len(pages) :]))
                    del slots[len(pages) :]
                for i, slot in zip(pages, slots):
                    out[i] = slot
            for slot, data, size in zip(out, held_in, sizes_in):
                held[slot] = data
                sizes[slot] = size
        self.nr_stored += n
        self.stored_bytes += sum(sizes_in)
        self.zswpout += n
        return out

    def _grow(self, quarter: bool) -> bool:
        """One more cache frame cut into slots (the free lists are extended in place)."""
        if self.nr_frames >= self.max_frames:
            return False
        mpn = self.machine.alloc(OWNER_ZIP, ZERO_PAGE)
        if mpn < 0:
            return False
        self.nr_frames += 1
        if self._spare:
            frame = self._spare.pop()
            self.frame_mpn[frame] = mpn
            self._quarter[frame] = quarter
        else:
            frame = len(self.frame_mpn)
            self.frame_mpn.append(mpn)
            self._quarter.append(quarter)
            self._data.extend((None, None, None, None))
            self._size.extend((0, 0, 0, 0))
        base = frame << 2
        if quarter:
            self._free_q.extend((base + 3, base + 2, base + 1, base))
        else:
            self._free_h.extend((base + 2, base))
        return True

    def peek(self, slot: int) -> bytes:
        """The page held in `slot` (decompressed; the slot is kept, nothing counted)."""
        held = self._data[slot]
        if held is None:
            raise ValueError(f"compression slot {slot} is empty")
        return self._decompress(held) if self.keep_compressed else held

    def take(self, slot: int) -> bytes:
        """Decompress the page in `slot` on access and free the slot."""
        data = self.peek(slot)
        self.zswpin += 1
        self.decompress_time += self.decompress_cost
        self.free(slot)
        return data

    def free(self, slot: int) -> None:
        held = self._data
        if held[slot] is None:
            raise ValueError(f"compression slot {slot} freed twice")
        held[slot] = None
        self.nr_stored -= 1
        self.stored_bytes -= self._size[slot]
        frame = slot >> 2
        base = frame << 2
        if self._quarter[frame]:
            if (
                held[base] is not None
                or held[base + 1] is not None
                or held[base + 2] is not None
                or held[base + 3] is not None
            ):
                self._free_q.append(slot)
                return
            self._free_q[:] = [s for s in self._free_q if s >> 2 != frame]
        else:
            if held[base] is not None or held[base + 2] is not None:
                self._free_h.append(slot)
                return
            self._free_h[:] = [s for s in self._free_h if s >> 2 != frame]
        # the frame is empty: give it back to the machine
        self.machine.free(self.frame_mpn[frame])
        self.frame_mpn[frame] = -1
        self._spare.append(frame)
        self.nr_frames -= 1

    def frame_of(self, slot: int) -> int:
        """The machine frame (MPN) holding `slot`."""
        return self.frame_mpn[slot >> 2]


def compressed_size(data: bytes, level: int = 3) -> int:
    """Bytes zstd at `level` makes of one page (for image analysis)."""
    return len(zstandard.ZstdCompressor(level=level).compress(data))
