"""Memory images read from files: raw dumps, ELF core files and hvsim captures.

The format is detected from the file's content, never its name:

- **ELF core** (`\\x7fELF`, e_type ET_CORE): QEMU `dump-guest-memory`, gdb `gcore`, a kdump
  `/proc/vmcore` copy. Each PT_LOAD segment contributes ceil(p_memsz / 4096) pages in
  program-header order; the first p_filesz bytes are in the file, the rest of the segment
  is "not in the dump" (gdb leaves read-only file mappings out, makedumpfile filters
  pages). ELF32 and ELF64, either byte order; PN_XNUM (more than 65534 segments, as large
  vmcores have) is read from section header 0 as the ELF specification says.
- **hvsim capture** (`HVSIMCAP`, written by `hvsim capture`): a series of snapshots of
  live processes, each page with the state /proc/PID/pagemap gave it (see CAPTURE below).
- **raw**: anything else whose size is a whole number of 4 KiB pages (QEMU `-M memory-
  backend-file`, `dd` of a /dev/mem-like source).

makedumpfile's compressed kdump format and gzip/xz/zstd-compressed files are recognised
and refused with what to do about them.

An image is a list of snapshots (one for raw and ELF files); a snapshot is a list of
parts (one per process captured; one for raw and ELF); a part is a list of runs
`(kind, pages, file_offset)`. Page kinds:

    CANDIDATE      bytes in the file; a page KSM would scan (raw and ELF pages, whose
                   residency nobody recorded; a capture's resident anonymous pages)
    FILE_PAGE      bytes in the file; resident but a page-cache or shared page
                   (pagemap bit 61): KSM merges anonymous pages only
    NOT_RESIDENT   never faulted in (pagemap: neither present nor swapped): no frame,
                   nothing for KSM to see
    SWAPPED        faulted in once, on swap when captured: content not captured
    NOT_IN_DUMP    the part of an ELF PT_LOAD segment beyond p_filesz
    UNREADABLE     resident, but /proc/PID/mem refused it (VM_IO/VM_PFNMAP, or the
                   mapping went away while it was read): 4 KiB of zeros in the file
    UNMERGEABLE    a resident anonymous page outside the VM_MERGEABLE areas of a process
                   that has some (smaps VmFlags "mg": QEMU's guest RAM): KSM scans only
                   those areas (a state given when reading, never stored)

Pages with bytes are read through one read-only mmap of the file: nothing is loaded until
it is used, and the OS page cache holds what is.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass, field

from guestkernel.units import PAGE_SHIFT, PAGE_SIZE

NOT_RESIDENT, CANDIDATE, SWAPPED, FILE_PAGE, NOT_IN_DUMP, UNREADABLE, UNMERGEABLE = range(7)
KIND_NAMES = ("not_resident", "candidate", "swapped", "file_page", "not_in_dump", "unreadable",
              "not_mergeable")
DATA_KINDS = (CANDIDATE, FILE_PAGE, UNREADABLE, UNMERGEABLE)  # kinds with 4 KiB in the file
CONTENT_KINDS = (CANDIDATE, FILE_PAGE, UNMERGEABLE)  # kinds whose 4 KiB are the page's content

CAPTURE_MAGIC = b"HVSIMCAP"
CAPTURE_VERSION = 1
SNAP_MAGIC = b"SNAP"
# CAPTURE: MAGIC, u32 version, u32 0; then per snapshot: SNAP_MAGIC, u64 header length,
# the JSON header {"time": s since the first snapshot, "wallclock": epoch s, "parts":
# [{"name", "pid", "regions": [{"start", "end", "perms", "path", "pages"}]}]}, then per
# part and region in header order: one state byte per page (the kinds above), followed by
# the 4 KiB of every CANDIDATE and FILE_PAGE page of that region in address order.

ET_CORE = 4
PT_LOAD = 1
PN_XNUM = 0xFFFF


class ImageError(ValueError):
    """A memory image that cannot be used (one-line message naming the file)."""


@dataclass
class Part:
    """One address space of a snapshot: a process, or the whole of a raw or ELF dump."""

    name: str
    runs: list = field(default_factory=list)  # (kind, pages, file_offset or -1)
    regions: list = field(default_factory=list)  # capture: the /proc/PID/maps entries

    @property
    def nr_pages(self) -> int:
        return sum(r[1] for r in self.runs)

    def count(self, kind: int) -> int:
        return sum(r[1] for r in self.runs if r[0] == kind)


@dataclass
class Snapshot:
    time: float  # seconds since the first snapshot of the series
    parts: list

    @property
    def nr_pages(self) -> int:
        return sum(p.nr_pages for p in self.parts)


class MemImage:
    """A memory image file: `format` ("raw", "elf-core", "capture"), `snapshots`,
    `residency_known` (only captures record which pages were ever resident)."""

    def __init__(self, path, fmt: str, snapshots: list, buf, residency_known: bool,
                 note: str = "") -> None:
        self.path = str(path)
        self.format = fmt
        self.snapshots = snapshots
        self.buf = buf  # memoryview of the whole file (read-only mmap)
        self.residency_known = residency_known
        self.note = note  # what the reader could not tell (printed by scan-image/whatif)

    @property
    def nr_pages(self) -> int:
        """Pages of the first snapshot, every part: the size of a VM booted from it."""
        return self.snapshots[0].nr_pages

    def pages(self, snapshot: int = 0):
        """(kind, bytes or None) of every page of a snapshot, parts in order."""
        buf = self.buf
        for part in self.snapshots[snapshot].parts:
            for kind, n, off in part.runs:
                if kind in CONTENT_KINDS:
                    for o in range(off, off + n * PAGE_SIZE, PAGE_SIZE):
                        yield kind, buf[o : o + PAGE_SIZE]
                else:
                    for _ in range(n):
                        yield kind, None


def open_image(path) -> MemImage:
    """Read an image's layout (its bytes stay in the file); ImageError on any problem."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"{path}: no such image file") from None
    except OSError as e:
        raise ImageError(f"{path}: cannot read image: {e.strerror or e}") from None
    if os.path.isdir(path):
        raise ImageError(f"{path}: is a directory, not an image file")
    if st.st_size == 0:
        raise ImageError(f"{path}: image is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            buf = memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
    except OSError as e:
        raise ImageError(f"{path}: cannot read image: {e.strerror or e}") from None
    except ValueError as e:  # mmap of a special file
        raise ImageError(f"{path}: cannot map image: {e}") from None
    if head[:4] == b"\x7fELF":
        return _open_elf(path, buf)
    if head[:8] == CAPTURE_MAGIC:
        return _open_capture(path, buf)
    for magic, what in _REFUSED:
        if head.startswith(magic):
            raise ImageError(f"{path}: {what}")
    if st.st_size % PAGE_SIZE:
        raise ImageError(
            f"{path}: image size {st.st_size} bytes is not a multiple of the {PAGE_SIZE}-byte "
            "page (and it is neither an ELF core file nor an hvsim capture)"
        )
    part = Part("raw", [(CANDIDATE, st.st_size >> PAGE_SHIFT, 0)])
    return MemImage(path, "raw", [Snapshot(0.0, [part])], buf, False,
                    "a raw dump cannot tell resident pages from never-touched ones: "
                    "every page counted as a candidate")


_REFUSED = (
    (b"KDUMP   ", "makedumpfile compressed kdump format: convert it to ELF first "
                 "(makedumpfile -E or QEMU dump-guest-memory without -z/-l/-s)"),
    (b"DISKDUMP", "diskdump format: convert it to ELF first (makedumpfile -E)"),
    (b"makedumpfile\0", "makedumpfile flattened format (QEMU dump-guest-memory -z/-l/-s): "
                        "rearrange it with makedumpfile -R, or dump without -z/-l/-s for ELF"),
    (b"\x1f\x8b", "gzip-compressed: decompress it first"),
    (b"\xfd7zXZ\x00", "xz-compressed: decompress it first"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed: decompress it first"),
)


def _open_elf(path: str, buf) -> MemImage:
    size = len(buf)
    if size < 52:
        raise ImageError(f"{path}: truncated ELF header ({size} bytes)")
    ei_class, ei_data = buf[4], buf[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        raise ImageError(f"{path}: ELF file with an unknown class {ei_class} or data encoding {ei_data}")
    end = "<" if ei_data == 1 else ">"
    is64 = ei_class == 2
    if is64 and size < 64:
        raise ImageError(f"{path}: truncated ELF header ({size} bytes)")
    (e_type,) = struct.unpack_from(end + "H", buf, 16)
    if e_type != ET_CORE:
        kind = {1: "a relocatable object", 2: "an executable", 3: "a shared object"}.get(
            e_type, f"ELF type {e_type}")
        raise ImageError(f"{path}: {kind}, not an ELF core file (e_type {e_type}, core is 4)")
    if is64:
        phoff, shoff = struct.unpack_from(end + "QQ", buf, 32)
        phentsize, phnum = struct.unpack_from(end + "HH", buf, 54)
        ph_fmt, ph_min = end + "IIQQQQQQ", 56
    else:
        phoff, shoff = struct.unpack_from(end + "II", buf, 28)
        phentsize, phnum = struct.unpack_from(end + "HH", buf, 42)
        ph_fmt, ph_min = end + "IIIIIIII", 32
    if phnum == PN_XNUM:  # the real count is section header 0's sh_info
        info_at = shoff + (44 if is64 else 28)
        if shoff == 0 or info_at + 4 > size:
            raise ImageError(f"{path}: truncated ELF file: PN_XNUM without section header 0")
        (phnum,) = struct.unpack_from(end + "I", buf, info_at)
    if phnum and phentsize < ph_min:
        raise ImageError(f"{path}: ELF program header entry size {phentsize} is too small")
    if phoff + phnum * phentsize > size:
        raise ImageError(f"{path}: truncated ELF file: program headers end at byte "
                         f"{phoff + phnum * phentsize}, the file has {size}")
    runs = []
    loads = 0
    for i in range(phnum):
        fields = struct.unpack_from(ph_fmt, buf, phoff + i * phentsize)
        if is64:
            p_type, _flags, p_offset, _vaddr, _paddr, p_filesz, p_memsz, _align = fields
        else:
            p_type, p_offset, _vaddr, _paddr, p_filesz, p_memsz, _flags, _align = fields
        if p_type != PT_LOAD:
            continue
        loads += 1
        if p_offset + p_filesz > size:
            raise ImageError(f"{path}: truncated ELF core file: PT_LOAD segment {i} ends at byte "
                             f"{p_offset + p_filesz}, the file has {size}")
        pages = -(-max(p_memsz, p_filesz) // PAGE_SIZE)
        in_file = p_filesz // PAGE_SIZE  # a partial last page counts as not in the dump
        if in_file:
            runs.append((CANDIDATE, in_file, p_offset))
        if pages > in_file:
            runs.append((NOT_IN_DUMP, pages - in_file, -1))
    if not loads:
        raise ImageError(f"{path}: ELF core file without a PT_LOAD segment (no memory in it)")
    if not any(r[1] for r in runs):
        raise ImageError(f"{path}: ELF core file whose PT_LOAD segments are empty")
    return MemImage(path, "elf-core", [Snapshot(0.0, [Part("core", _merge_runs(runs))])], buf,
                    False, "an ELF core file cannot tell resident pages from never-touched "
                    "ones: every page in it counted as a candidate")


def _merge_runs(runs: list) -> list:
    out: list = []
    for kind, n, off in runs:
        if out:
            k, m, o = out[-1]
            if k == kind and (off < 0 or o + m * PAGE_SIZE == off):
                out[-1] = (k, m + n, o)
                continue
        out.append((kind, n, off))
    return out


def _open_capture(path: str, buf) -> MemImage:
    size = len(buf)
    if size < 16:
        raise ImageError(f"{path}: truncated hvsim capture header")
    version, _ = struct.unpack_from("<II", buf, 8)
    if version != CAPTURE_VERSION:
        raise ImageError(f"{path}: hvsim capture version {version}, this hvsim reads {CAPTURE_VERSION}")
    pos = 16
    snapshots = []
    while pos < size:
        if size - pos < 12 or bytes(buf[pos : pos + 4]) != SNAP_MAGIC:
            raise ImageError(f"{path}: corrupt hvsim capture: no snapshot at byte {pos}")
        (hlen,) = struct.unpack_from("<Q", buf, pos + 4)
        pos += 12
        if pos + hlen > size:
            raise ImageError(f"{path}: truncated hvsim capture: snapshot {len(snapshots)} header")
        try:
            header = json.loads(bytes(buf[pos : pos + hlen]))
            pos += hlen
            parts = []
            for p in header["parts"]:
                part = Part(str(p["name"]), [], p["regions"])
                # a process with MADV_MERGEABLE areas: KSM scans those only
                some_mg = any("mg" in str(r.get("vmflags", "")).split() for r in p["regions"])
                for region in p["regions"]:
                    n = int(region["pages"])
                    if pos + n > size:
                        raise ImageError(f"{path}: truncated hvsim capture: snapshot "
                                         f"{len(snapshots)}, {part.name}")
                    states = bytes(buf[pos : pos + n])
                    if some_mg and "mg" not in str(region.get("vmflags", "")).split():
                        states = states.replace(bytes((CANDIDATE,)), bytes((UNMERGEABLE,)))
                    pos += n
                    pos = _state_runs(part.runs, states, pos)
                    if pos > size:
                        raise ImageError(f"{path}: truncated hvsim capture: snapshot "
                                         f"{len(snapshots)}, {part.name} page data")
                parts.append(part)
            snapshots.append(Snapshot(float(header["time"]), parts))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ImageError):
                raise
            raise ImageError(f"{path}: corrupt hvsim capture header in snapshot "
                             f"{len(snapshots)}: {e}") from None
    if not snapshots:
        raise ImageError(f"{path}: hvsim capture without a snapshot")
    if not snapshots[0].nr_pages:
        raise ImageError(f"{path}: hvsim capture without a page")
    return MemImage(path, "capture", snapshots, buf, True)


def _state_runs(runs: list, states: bytes, pos: int) -> int:
    """Append the runs of one region's state bytes; data pages follow at `pos`."""
    i, n = 0, len(states)
    while i < n:
        kind = states[i]
        if kind > UNMERGEABLE:
            raise ValueError(f"page state {kind}")
        j = i + 1
        # the next page of another state ends the run (bytes.find of each other state)
        stop = n
        for other in range(UNMERGEABLE + 1):
            if other != kind:
                k = states.find(bytes((other,)), j, stop)
                if k >= 0:
                    stop = k
        j = stop
        if kind in DATA_KINDS:
            runs.append((kind, j - i, pos))
            pos += (j - i) * PAGE_SIZE
        else:
            runs.append((kind, j - i, -1))
        i = j
    return pos


def image_pages(path) -> int:
    """Pages of the VM an image file gives (its first snapshot); ImageError if unusable."""
    return open_image(path).nr_pages
