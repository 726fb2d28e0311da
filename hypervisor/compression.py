"""Compression cache (ESXi memory compression): zstd copies of pages chosen for eviction.

Only pages the host already decided to evict are offered. A page is kept compressed if
zstd brings it to <= `threshold` bytes (default 2048: half a page), in a half-page slot,
or in a quarter-page slot when <= `quarter` bytes (default 1024); otherwise it is refused
and goes to host swap. Slots live in machine frames taken from `MachineMemory` (owner
OWNER_ZIP), at most `max_frames` of them per VM (Mem.MemZipMaxPct, default 10 % of the
VM's memory). Accessing a compressed page decompresses it into a fresh frame (the VM
counts zswpin and charges `decompress_cost`).

Memory reclaimed by the cache = pages stored - frames it occupies.

Slots are numbered per cache: `(frame << 2) | sub` where `frame` is the cache's own
index of the machine frame (`frame_mpn[frame]`), quarter-page slots use sub 0..3 and
half-page slots 0 and 2. What a slot holds sits in flat lists indexed by slot (no object
per page), which keeps the per-page path lean.
"""

from __future__ import annotations

from array import array

import zstandard

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE

from .machine import OWNER_FREE, OWNER_ZIP, MachineMemory

BATCH_MIN = 8  # pages: from this many on, store_frames compresses in one zstd call


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
        blob = self._compress(data)
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
        """
        # NOTE: `store` and MachineMemory.free inlined for performance (host eviction).
        machine = self.machine
        content = machine.content
        refcount = machine.refcount
        owner = machine.owner
        mfree = machine._free
        compress = self._compress
        threshold = self.threshold
        quarter = self.quarter
        keep = self.keep_compressed
        held = self._data
        sizes = self._size
        free_q = self._free_q
        free_h = self._free_h
        frame_mpn = self.frame_mpn
        qflags = self._quarter
        out: list[int] = []
        append = out.append
        nbytes = stored = pending = 0
        mpns = list(mpns)
        if len(mpns) >= BATCH_MIN:
            # NOTE: one zstd call for the whole batch (single-threaded, same frames as
            # page-by-page compress()): saves the per-call overhead on the eviction path.
            frames = self._compressor.multi_compress_to_buffer([content[m] for m in mpns], threads=0)
            blobs = [f.tobytes() for f in frames] if keep else None
            sizes_in = [len(f) for f in frames]
        else:
            blobs = [compress(content[m]) for m in mpns]
            sizes_in = [len(b) for b in blobs]
        for i, mpn in enumerate(mpns):
            data = content[mpn]
            size = sizes_in[i]
            blob = blobs[i] if blobs is not None else None
            if size > threshold:
                self.rejected += 1
                append(-1)
                if refused is not None:
                    refused(len(out) - 1)
                continue
            is_q = size <= quarter
            free = free_q if is_q else free_h
            if not free:
                machine.nr_free += pending  # the frame allocation below must see it
                pending = 0
                if self._spare or self.nr_frames >= self.max_frames:
                    grown = self._grow(is_q)
                else:
                    # NOTE: _grow's common case inlined for performance: a new cache frame
                    # at the end of the frame table, cut into slots
                    fmpn = machine.alloc(OWNER_ZIP, ZERO_PAGE)
                    grown = fmpn >= 0
                    if grown:
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
                if not grown:
                    self.full += 1
                    append(-1)
                    if refused is not None:
                        refused(len(out) - 1)
                    continue
            slot = free.pop()
            held[slot] = blob if keep else data
            sizes[slot] = size
            nbytes += size
            stored += 1
            append(slot)
            content[mpn] = None  # (its checksum cache is reset when the frame is reused)
            refcount[mpn] = 0
            owner[mpn] = OWNER_FREE
            mfree.append(mpn)
            pending += 1
        machine.nr_free += pending
        machine.frames_freed += stored
        self.nr_stored += stored
        self.stored_bytes += nbytes
        self.zswpout += stored
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
