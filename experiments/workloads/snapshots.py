"""The `snapshots` workload: a VM whose memory follows a captured series over time.

`[vm.workload] profile = "snapshots", path = "day.cap"` (an `hvsim capture --count N`
file; a raw or ELF dump is a series of one). The VM has no guest kernel: its frames are
the captured address spaces, laid out part by part (one per captured process) over the
union of every snapshot's mappings, in address order (`SeriesLayout`). At each
snapshot's time (divided by `speed`), the workload writes the frames whose bytes
changed since the previous snapshot with their new bytes (VM.store: a write to a shared
frame breaks its sharing, as a guest write would), backs the pages that became
resident, and gives back the frames of pages no longer resident or no longer mapped
(VM.release then VM.reuse: unbacked, credited to no reclamation technique). Pages captured as swapped keep what the VM
last held (their bytes were not captured). Identical pages within the series are one
`bytes` object. Real dynamics, not only a static picture, then drive sharing and
compression: pages KSM merged are broken when the series rewrites them.

Work: pages written (`unit`). `loop = true` replays the series again from its first
snapshot after the last one, the series' mean interval later.
"""

from __future__ import annotations

from array import array

import xxhash

from guestkernel.physmem import RELEASE_REPORTED
from guestkernel.units import PAGE_SHIFT, PAGE_SIZE
from hypervisor.memimage import CONTENT_KINDS, NOT_IN_DUMP, NOT_RESIDENT, SWAPPED, open_image

_digest = xxhash.xxh3_64_intdigest


class SeriesLayout:
    """Frame numbers of a series' pages: per part, the union of its mappings over every
    snapshot, in address order; raw and ELF dumps map page i to frame i."""

    def __init__(self, img) -> None:
        self.img = img
        self.bases: dict = {}  # part name -> [(start, end, first frame)] sorted
        nr = 0
        if img.format != "capture":
            self.nr_pages = img.nr_pages
            return
        spans: dict = {}
        for snap in img.snapshots:
            for part in snap.parts:
                for r in part.regions:
                    spans.setdefault(part.name, []).append((int(r["start"], 16), int(r["end"], 16)))
        for name in sorted(spans, key=lambda n: [p.name for s in img.snapshots for p in s.parts].index(n)):
            merged = []
            for lo, hi in sorted(spans[name]):
                if merged and lo <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            out = []
            for lo, hi in merged:
                out.append((lo, hi, nr))
                nr += (hi - lo) >> PAGE_SHIFT
            self.bases[name] = out
        self.nr_pages = nr

    def frames(self, snapshot: int):
        """(frame, kind, file offset or -1) of every page of a snapshot."""
        img = self.img
        snap = img.snapshots[snapshot]
        if img.format != "capture":
            pfn = 0
            for part in snap.parts:
                for kind, n, off in part.runs:
                    for i in range(n):
                        yield pfn, kind, (off + i * PAGE_SIZE if off >= 0 else -1)
                        pfn += 1
            return
        for part in snap.parts:
            bases = self.bases[part.name]
            runs = iter(part.runs)
            kind, left, off = next(runs, (NOT_RESIDENT, 0, -1))
            for r in part.regions:
                start = int(r["start"], 16)
                base = next(b + ((start - lo) >> PAGE_SHIFT) for lo, hi, b in bases if lo <= start < hi)
                for i in range(int(r["pages"])):
                    while left == 0:
                        kind, left, off = next(runs)
                    yield base + i, kind, off
                    left -= 1
                    if off >= 0:
                        off += PAGE_SIZE


class SnapshotsWorkload:
    """Replays a series into an image-less VM (see the module docstring)."""

    name = "snapshots"
    unit = "pages written"

    def __init__(self, env, vm, params, layout: SeriesLayout) -> None:
        self.env = env
        self.vm = vm
        self.params = params
        self.layout = layout
        self.work_done = 0.0
        self.stall = 0.0
        self.snapshots_applied = 0
        self.pages_released = 0
        self.started = False
        self._sums = array("Q", [0]) * layout.nr_pages  # digest of each frame's bytes (0: none)
        self._intern: dict = {}

    def start(self) -> None:
        if not self.started:
            self.started = True
            self.env.process(self.run())

    def apply(self, snapshot: int) -> float:
        """Make the VM's frames hold one snapshot; seconds the writes cost beneath it."""
        vm = self.vm
        buf = self.layout.img.buf
        sums = self._sums
        intern = self._intern.setdefault
        seen = bytearray(self.layout.nr_pages)
        cost = 0.0
        written = 0
        for pfn, kind, off in self.layout.frames(snapshot):
            seen[pfn] = 1
            if kind in CONTENT_KINDS:
                view = buf[off : off + PAGE_SIZE]
                d = _digest(view) | 1  # never 0, the "nothing held" mark
                if sums[pfn] != d:
                    data = bytes(view)
                    cost += vm.store(pfn, intern(data, data))
                    sums[pfn] = d
                    written += 1
            elif kind == SWAPPED:
                continue  # content not captured: the frame keeps what it held
            elif kind in (NOT_RESIDENT, NOT_IN_DUMP) and sums[pfn]:
                self._drop(pfn)
        for pfn in range(len(seen)) if not all(seen) else ():
            if not seen[pfn] and sums[pfn]:  # the mapping is gone in this snapshot
                self._drop(pfn)
        self.work_done += written
        self.snapshots_applied += 1
        return cost

    def _drop(self, pfn: int) -> None:
        """The page is gone from the captured process: its frame is given back, credited
        to no technique (release as a reported page, then reuse clears the credit)."""
        self.vm.release(pfn, RELEASE_REPORTED)
        self.vm.reuse(pfn, RELEASE_REPORTED)
        self._sums[pfn] = 0
        self.pages_released += 1

    def run(self):
        img = self.layout.img
        speed = self.params.speed
        times = [s.time for s in img.snapshots]
        period = (times[-1] - times[0]) / max(len(times) - 1, 1) if len(times) > 1 else 0.0
        offset = 0.0
        while True:
            for i, t in enumerate(times):
                at = (offset + t) / speed
                if at > self.env.now:
                    yield self.env.timeout(at - self.env.now)
                self.stall += self.apply(i)
            if not self.params.loop or period <= 0:
                return
            offset += times[-1] + period


def series_layout(path: str) -> SeriesLayout:
    """The layout of a series file (ImageError, one line, if it cannot be used)."""
    return SeriesLayout(open_image(path))
