"""`hvsim capture PID... -o FILE`: snapshot live processes' memory (Linux), read-only.

For each process: /proc/PID/maps lists its mappings; /proc/PID/pagemap gives every page's
state (bit 63 present, bit 62 swapped, bit 61 file page or shared anonymous: see the
kernel's Documentation/admin-guide/mm/pagemap.rst); /proc/PID/mem gives the bytes of the
present pages, read with pread and nothing else. The process is never stopped, traced or
written; only present pages are read, so nothing is faulted in or swapped in on its
behalf (a snapshot of a running process is therefore not atomic: pages may change while
it is read, as they would under a live migration's first pass).

Page states written (hypervisor/memimage.py): present and anonymous -> CANDIDATE (what
KSM would scan; a reader turns those outside the process's VM_MERGEABLE areas into
UNMERGEABLE when it has any, from the smaps VmFlags "mg" recorded per mapping), present
page-cache or shared -> FILE_PAGE, swapped -> SWAPPED (bytes not
read), neither -> NOT_RESIDENT (never faulted in), present but refused by /proc/PID/mem
(a VM_IO/VM_PFNMAP mapping such as [vvar], or one unmapped while read) -> UNREADABLE.

`--interval T --count N` takes N snapshots T apart into the same file (a series, which
`hvsim whatif` reports snapshot by snapshot and the `snapshots` workload replays). The
file is written under a temporary name and renamed at the end: a failed capture leaves
nothing behind. Reading another user's process needs ptrace access (its owner with
kernel.yama.ptrace_scope 0, or root/CAP_SYS_PTRACE).

Register with `main.add_command(capture)` in experiments/cli.py.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import time
from array import array

import click

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SHIFT, PAGE_SIZE
from hypervisor.memimage import (
    CANDIDATE,
    CAPTURE_MAGIC,
    CAPTURE_VERSION,
    FILE_PAGE,
    NOT_RESIDENT,
    SNAP_MAGIC,
    SWAPPED,
    UNREADABLE,
)

PM_PRESENT = 1 << 63
PM_SWAP = 1 << 62
PM_FILE = 1 << 61  # page-cache page or shared anonymous
READ_CHUNK = 256  # pages per pread


class CaptureError(Exception):
    """A capture that cannot be taken (one line naming the process)."""


def parse_maps(text: str) -> list[dict]:
    """/proc/PID/maps lines -> [{"start", "end", "perms", "path"}] (addresses as ints)."""
    regions = []
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 5:
            continue
        lo, hi = fields[0].split("-")
        path = fields[5].strip() if len(fields) > 5 else ""
        if fields[1].startswith("---") or path == "[vsyscall]":
            continue  # PROT_NONE reservations and the legacy vsyscall page hold no memory
        regions.append({"start": int(lo, 16), "end": int(hi, 16), "perms": fields[1], "path": path})
    return regions


def page_states(entries, shared_mapping: bool) -> bytes:
    """One state byte per pagemap entry."""
    out = bytearray(len(entries))
    for i, e in enumerate(entries):
        if e & PM_PRESENT:
            out[i] = FILE_PAGE if (e & PM_FILE or shared_mapping) else CANDIDATE
        elif e & PM_SWAP:
            out[i] = SWAPPED
        else:
            out[i] = NOT_RESIDENT
    return bytes(out)


class Process:
    """Open handles on one process's /proc files, checked at once."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        base = f"/proc/{pid}"
        self.comm = "?"
        if not os.path.isdir(base):
            raise CaptureError(f"no process with PID {pid}")
        try:
            with open(f"{base}/comm") as f:
                self.comm = f.read().strip()
            self.mem = os.open(f"{base}/mem", os.O_RDONLY)
            self.pagemap = os.open(f"{base}/pagemap", os.O_RDONLY)
        except FileNotFoundError:
            raise CaptureError(f"PID {pid} exited") from None
        except PermissionError:
            raise CaptureError(
                f"PID {pid}: permission denied reading /proc/{pid}/mem (needs ptrace access: "
                "the process's owner with kernel.yama.ptrace_scope 0, or root)") from None
        except ProcessLookupError:  # ESRCH: the task has no mm
            raise CaptureError(f"PID {pid} ({self.comm}) has no user memory (a kernel thread?)") from None
        except OSError as e:
            raise CaptureError(f"PID {pid}: cannot open /proc/{pid}: {e.strerror}") from None
        regions = self.maps()
        if not regions:
            raise CaptureError(f"PID {pid} ({self.comm}) has no user memory (a kernel thread?)")
        # a read that ptrace access would refuse fails here, before any work
        try:
            os.pread(self.pagemap, 8, (regions[0]["start"] >> PAGE_SHIFT) * 8)
        except PermissionError:
            raise CaptureError(f"PID {pid}: permission denied reading /proc/{pid}/pagemap") from None

    def maps(self) -> list[dict]:
        try:
            with open(f"/proc/{self.pid}/maps") as f:
                regions = parse_maps(f.read())
        except FileNotFoundError:
            raise CaptureError(f"PID {self.pid} exited") from None
        except PermissionError:
            raise CaptureError(f"PID {self.pid}: permission denied reading /proc/{self.pid}/maps") from None
        flags = self.vmflags()
        for r in regions:
            r["vmflags"] = flags.get(r["start"], "")
        return regions

    def vmflags(self) -> dict:
        """{start address: the VmFlags line of /proc/PID/smaps} ("mg": VM_MERGEABLE)."""
        out = {}
        try:
            with open(f"/proc/{self.pid}/smaps") as f:
                start = None
                for line in f:
                    if line.startswith("VmFlags:"):
                        if start is not None:
                            out[start] = line[8:].strip()
                    elif "-" in line.split(" ", 1)[0] and line[0] in "0123456789abcdef":
                        start = int(line.split("-", 1)[0], 16)
        except OSError:
            pass  # flags unknown: every anonymous page counts as a candidate
        return out

    def close(self) -> None:
        os.close(self.mem)
        os.close(self.pagemap)

    def region_states(self, region: dict) -> bytes:
        n = (region["end"] - region["start"]) >> PAGE_SHIFT
        first = region["start"] >> PAGE_SHIFT
        entries = array("Q")
        for lo in range(0, n, 1 << 18):
            k = min(1 << 18, n - lo)
            try:
                raw = os.pread(self.pagemap, k * 8, (first + lo) * 8)
            except OSError:
                break
            entries.frombytes(raw[: len(raw) // 8 * 8])
            if len(raw) < k * 8:
                break
        states = page_states(entries, region["perms"][3:4] == "s")
        return states + bytes([NOT_RESIDENT]) * (n - len(states))  # the mapping shrank

    def read_pages(self, addr: int, n: int, out, states: bytearray, first: int) -> None:
        """Write the bytes of n present pages from addr to `out`; a page /proc/PID/mem
        refuses is written as zeros and its state set to UNREADABLE."""
        i = 0
        while i < n:
            k = min(READ_CHUNK, n - i)
            try:
                data = os.pread(self.mem, k * PAGE_SIZE, addr + i * PAGE_SIZE)
            except OSError:
                data = b""
            whole = len(data) >> PAGE_SHIFT
            if whole:
                out.write(data[: whole * PAGE_SIZE])
                i += whole
            else:  # the page at addr + i cannot be read
                out.write(ZERO_PAGE)
                states[first + i] = UNREADABLE
                i += 1


def snapshot(procs: list[Process], out, t: float) -> None:
    """Append one snapshot of every process to `out` (a seekable binary file)."""
    parts = []
    plans = []
    for p in procs:
        regions = p.maps()
        states = [p.region_states(r) for r in regions]
        parts.append({"name": f"{p.pid}-{p.comm}", "pid": p.pid, "regions": [
            {"start": hex(r["start"]), "end": hex(r["end"]), "perms": r["perms"], "path": r["path"],
             "vmflags": r.get("vmflags", ""), "pages": len(s)} for r, s in zip(regions, states, strict=True)]})
        plans.append((p, regions, states))
    header = json.dumps({"time": round(t, 6), "wallclock": time.time(), "parts": parts}).encode()
    out.write(SNAP_MAGIC + struct.pack("<Q", len(header)) + header)
    for p, regions, states in plans:
        for r, s in zip(regions, states, strict=True):
            at = out.tell()
            st = bytearray(s)
            out.write(s)
            i, n = 0, len(s)
            while i < n:
                if st[i] in (CANDIDATE, FILE_PAGE):
                    j = i + 1
                    while j < n and st[j] in (CANDIDATE, FILE_PAGE):
                        j += 1
                    p.read_pages(r["start"] + (i << PAGE_SHIFT), j - i, out, st, i)
                    i = j
                else:
                    i += 1
            if st != s:  # pages refused while read: their state bytes say so
                end = out.tell()
                out.seek(at)
                out.write(st)
                out.seek(end)


def capture(pids: list[int], path: str, interval: float = 0.0, count: int = 1,
            progress=None) -> int:
    """Capture `count` snapshots of the processes into `path`; snapshots written.
    CaptureError (one line) if a process is missing or unreadable: nothing is written."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise CaptureError(f"{path}: no such directory {directory}")
    if os.path.isdir(path):
        raise CaptureError(f"{path}: is a directory")
    procs = []
    try:
        for pid in pids:
            procs.append(Process(pid))
        tmp = f"{path}.part-{os.getpid()}"
        taken = 0
        try:
            with open(tmp, "wb") as out:
                out.write(CAPTURE_MAGIC + struct.pack("<II", CAPTURE_VERSION, 0))
                t0 = time.monotonic()
                for i in range(count):
                    if i:
                        time.sleep(max(0.0, t0 + i * interval - time.monotonic()))
                    try:
                        snapshot(procs, out, time.monotonic() - t0)
                    except CaptureError as e:
                        if not taken:
                            raise
                        if progress:
                            progress(f"{e}: the capture holds the {taken} snapshot(s) taken")
                        break
                    taken += 1
                    if progress and count > 1:
                        progress(f"snapshot {taken}/{count}")
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return taken
    finally:
        for p in procs:
            p.close()


@click.command("capture")
@click.argument("pids", nargs=-1, required=True)
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False),
              help="capture file to write (read by scan-image, whatif and VM images)")
@click.option("--interval", default="10s", show_default=True, help="time between snapshots")
@click.option("--count", type=click.IntRange(1), default=1, show_default=True, help="snapshots to take")
def capture_cmd(pids, output, interval, count) -> None:
    """Snapshot live processes' memory (read-only) with page residency, for whatif."""
    from guestkernel.units import parse_duration

    try:
        if sys.platform != "linux":
            raise CaptureError("capture reads /proc/PID/mem and pagemap: Linux only")
        nums = []
        for p in pids:
            if not p.isdigit():
                raise CaptureError(f"{p!r} is not a PID")
            nums.append(int(p))
        try:
            dt = parse_duration(interval, "--interval")
        except ValueError as e:
            raise CaptureError(str(e)) from None
        taken = capture(nums, output, dt, count, progress=lambda m: click.echo(m, err=True))
    except CaptureError as exc:
        click.echo(f"hvsim capture: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{output}: {taken} snapshot(s) of {len(pids)} process(es)")
