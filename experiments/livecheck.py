"""Validations against the kernel this machine runs, measured live by `hvsim anchors`.

Where the machine allows it (Linux, root, /sys/kernel/mm/ksm writable), three checks put
hvsim's mechanisms beside the real kernel's, on the same inputs, measured during the run:

    live-ksm        a seeded set of pages in this process, marked MADV_MERGEABLE, scanned
                    by the real ksmd at a given pages_to_scan and sleep_millisecs: the
                    merge result (pages_shared, pages_sharing), the full scans and time it
                    took to converge, and pages_skipped / pages_scanned per full scan with
                    smart_scan on and off; hvsim's PageSharing on the same pages and
                    settings, batch by batch (mm/ksm.c: ksm_do_scan, cmp_and_merge_page,
                    should_skip_rmap_item)
    live-pagecache  page-cache residency (mincore) after seeded read patterns on a cold
                    file, against a guest kernel doing the same reads on a file of the same
                    size (mm/filemap.c filemap_read, mm/readahead.c)
    live-oom        /proc/PID/oom_score of live processes against hvsim's oom_score()
                    computed from the same processes' /proc figures (fs/proc/base.c
                    proc_oom_score, mm/oom_kill.c oom_badness)

Elsewhere each check is skipped with its reason (`unavailable()`), and the command still
exits 0 for it. Every knob of /sys/kernel/mm/ksm that a check changes is restored
afterwards, and everything this process merged is unmerged (run = 2) first.

Tolerances come from the measurement itself: the real ksmd is measured REPEATS times and
hvsim passes when it lies within the spread of those measurements, widened by one sleep
interval (the granularity of ksmd's wake-ups). Page counts that the kernel's algorithm
fixes exactly (pages merged from a content the test chose) are compared exactly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import random
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

PAGE = 4096
KSM = Path("/sys/kernel/mm/ksm")
KSM_KNOBS = ("run", "pages_to_scan", "sleep_millisecs", "smart_scan", "use_zero_pages",
             "max_page_sharing")
KSM_COUNTERS = ("full_scans", "pages_shared", "pages_sharing", "pages_skipped", "pages_scanned",
                "pages_unshared", "pages_volatile")


def _rng(seed: int, name: str) -> random.Random:
    return random.Random(xxhash.xxh64_intdigest(f"{seed}/{name}".encode()))


# --------------------------------------------------------------------------------------
# Availability


def unavailable(check: str) -> str | None:
    """Why `check` ("ksm", "pagecache", "oom") cannot run on this machine, or None."""
    if not sys.platform.startswith("linux"):
        return f"not Linux ({sys.platform})"
    if check == "ksm":
        if not KSM.is_dir():
            return "no /sys/kernel/mm/ksm (kernel built without CONFIG_KSM)"
        if os.geteuid() != 0 or not os.access(KSM / "run", os.W_OK):
            return "/sys/kernel/mm/ksm/run is not writable (needs root)"
        if not hasattr(mmap, "MADV_MERGEABLE"):
            return "this Python's mmap has no MADV_MERGEABLE"
        if not (KSM / "pages_scanned").exists() or not (KSM / "smart_scan").exists():
            return "this kernel's KSM predates smart_scan and pages_scanned (Linux < 6.7)"
        others = other_mergeable()
        if others:
            pid, comm = others[0]
            return (f"{len(others)} other process(es) have MADV_MERGEABLE memory (first: {pid} {comm}, e.g. a "
                    f"QEMU guest): ksmd would scan theirs too")
    if check == "pagecache":
        if _libc() is None:
            return "no C library to call mincore and posix_fadvise"
        if not hasattr(os, "posix_fadvise"):
            return "no posix_fadvise"
    if check == "oom" and not Path("/proc/self/oom_score").exists():
        return "no /proc/PID/oom_score"
    return None


def other_mergeable() -> list[tuple[int, str]]:
    """Processes other than this one with memory KSM may scan (VmFlags "mg" in smaps):
    ksmd's full scans and global counters would include their pages."""
    out = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == me:
            continue
        try:
            with open(d / "smaps") as f:
                if any(line.startswith("VmFlags:") and " mg" in line for line in f):
                    out.append((int(d.name), (d / "comm").read_text().strip()))
        except OSError:
            continue
    return sorted(out)


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                          ctypes.c_long)
    libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
    libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)
    return libc


# --------------------------------------------------------------------------------------
# KSM


@dataclass
class KsmPages:
    """A seeded set of page contents: `groups` contents present `copies` times each,
    `unique` contents present once, in a seeded order. The merge result the kernel's rule
    gives (max_page_sharing larger than `copies`): pages_shared = groups, pages_sharing =
    groups * (copies - 1)."""

    pages: list[bytes]
    groups: int
    copies: int
    unique: int

    @property
    def expected_shared(self) -> int:
        return self.groups

    @property
    def expected_sharing(self) -> int:
        return self.groups * (self.copies - 1)


def ksm_pages(seed: int = 0, groups: int = 256, copies: int = 4, unique: int = 1024) -> KsmPages:
    rng = _rng(seed, "livecheck/ksm")
    contents = [rng.randbytes(PAGE) for _ in range(groups + unique)]
    pages = [c for c in contents[:groups] for _ in range(copies)] + contents[groups:]
    rng.shuffle(pages)
    return KsmPages(pages, groups, copies, unique)


@dataclass
class KsmRun:
    """What one KSM run (real or simulated) showed, counters as deltas from its start."""

    converge_s: float | None = None      # time until pages_sharing reached the expected value
    converge_full_scans: int | None = None  # full scans completed when it did
    pages_shared: int = 0
    pages_sharing: int = 0
    full_scans: int = 0
    pages_scanned: int = 0
    pages_skipped: int = 0
    scanned_at_target: int | None = None  # pages_scanned when the last full scan asked for ended
    skipped_at_target: int | None = None  # pages_skipped then
    trace: list[tuple[float, int, int]] = field(default_factory=list)  # (t, full_scans, sharing)


class KsmSysfs:
    """/sys/kernel/mm/ksm, with every knob written restored on exit."""

    def __init__(self, root: Path = KSM) -> None:
        self.root = root
        self.saved: dict[str, str] = {}

    def read(self, name: str) -> int:
        return int((self.root / name).read_text().split()[0])

    def write(self, name: str, value) -> None:
        if name not in self.saved:
            self.saved[name] = (self.root / name).read_text().strip()
        (self.root / name).write_text(f"{value}\n")

    def counters(self) -> dict[str, int]:
        return {c: self.read(c) for c in KSM_COUNTERS}

    def __enter__(self) -> KsmSysfs:
        return self

    def __exit__(self, *exc) -> None:
        run = self.saved.pop("run", None)
        try:
            (self.root / "run").write_text("2\n")  # unmerge what was merged meanwhile
        except OSError:
            pass
        for name, value in self.saved.items():
            try:
                (self.root / name).write_text(f"{value}\n")
            except OSError:  # max_page_sharing cannot change while KSM pages exist
                pass
        if run is not None:
            (self.root / "run").write_text(f"{run}\n")


def measure_real_ksm(kp: KsmPages, pages_to_scan: int, sleep_ms: int, smart_scan: bool,
                     full_scans: int = 8, timeout: float = 60.0, poll: float = 0.002) -> KsmRun:
    """The real ksmd on `kp`'s pages in this process: anonymous private memory written with
    the pages and marked MADV_MERGEABLE. Runs until `full_scans` full scans completed."""
    with _ksm_lock():
        for _ in range(4):
            out = _measure_real_ksm(kp, pages_to_scan, sleep_ms, smart_scan, full_scans, timeout, poll)
            if out.scanned_at_target is not None:
                break
        return out


class _ksm_lock:
    """ksmd and its knobs are one per machine: two measurements at once (two test runs)
    would spoil each other, so each holds an exclusive lock on a file in /run/lock."""

    def __enter__(self):
        import fcntl

        d = Path("/run/lock") if Path("/run/lock").is_dir() else Path(tempfile.gettempdir())
        self.f = open(d / "hvsim-livecheck-ksm.lock", "w")  # noqa: SIM115 (held until __exit__)
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def _measure_real_ksm(kp, pages_to_scan, sleep_ms, smart_scan, full_scans, timeout, poll) -> KsmRun:
    n = len(kp.pages)
    mm = mmap.mmap(-1, n * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        for i, data in enumerate(kp.pages):
            mm[i * PAGE:(i + 1) * PAGE] = data
        with KsmSysfs() as ksm:
            ksm.write("run", 2)  # a clean start: nothing merged, no stable tree
            ksm.write("max_page_sharing", 256)
            ksm.write("use_zero_pages", 0)
            ksm.write("pages_to_scan", pages_to_scan)
            ksm.write("sleep_millisecs", sleep_ms)
            ksm.write("smart_scan", int(smart_scan))
            mm.madvise(mmap.MADV_MERGEABLE)
            base = ksm.counters()
            out = KsmRun()
            t0 = time.monotonic()
            ksm.write("run", 1)
            prev = 0.0
            while True:
                now = time.monotonic() - t0
                c = ksm.counters()
                read_end = time.monotonic() - t0
                fs = c["full_scans"] - base["full_scans"]
                sharing = c["pages_sharing"] - base["pages_sharing"]
                out.trace.append((now, fs, sharing))
                if out.converge_s is None and sharing >= kp.expected_sharing:
                    out.converge_s, out.converge_full_scans = now, fs
                if fs >= full_scans:
                    # The counters at the end of the last full scan, if this poll's reads
                    # ended less than a sleep after the previous poll began (the full scan
                    # ended after that): a batch ends where a full scan ends and the next
                    # starts a sleep later, so none can have run before the reads. A later
                    # poll (a busy machine) leaves them unknown: measured again.
                    if read_end - prev < sleep_ms / 1000.0:
                        out.scanned_at_target = c["pages_scanned"] - base["pages_scanned"]
                        out.skipped_at_target = c["pages_skipped"] - base["pages_skipped"]
                    break
                if now > timeout:
                    break
                prev = now
                time.sleep(poll)
            ksm.write("run", 0)
            c = ksm.counters()
            out.full_scans = c["full_scans"] - base["full_scans"]
            out.pages_shared = c["pages_shared"] - base["pages_shared"]
            out.pages_sharing = c["pages_sharing"] - base["pages_sharing"]
            out.pages_scanned = c["pages_scanned"] - base["pages_scanned"]
            out.pages_skipped = c["pages_skipped"] - base["pages_skipped"]
            mm.madvise(mmap.MADV_UNMERGEABLE)
    finally:
        mm.close()
    return out


def simulate_ksm(kp: KsmPages, pages_to_scan: int, sleep_ms: int, smart_scan: bool,
                 full_scans: int = 8) -> KsmRun:
    """hvsim's PageSharing on the same pages, one VM holding them in the same order; ksmd's
    loop as hypervisor.sharing.Scanner runs it: a batch of pages_to_scan pages taking the
    CPU time the scanner charges, then sleep_millisecs."""
    from hypervisor.machine import MachineMemory
    from hypervisor.sharing import PageSharing
    from hypervisor.vm import VM

    n = len(kp.pages)
    machine = MachineMemory(n + 16)
    ksm = PageSharing(machine, pages_to_scan=pages_to_scan, smart_scan=smart_scan, max_page_sharing=256)
    vm = VM(machine, "live", n, vmid=0)
    for pfn, data in enumerate(kp.pages):
        vm.store(pfn, data)
    ksm.add_vm(vm)
    out = KsmRun()
    t = -sleep_ms / 1000.0
    while ksm.full_scans < full_scans:
        # as hypervisor.sharing.Scanner: a batch takes its CPU time, then ksmd sleeps
        t += sleep_ms / 1000.0
        t += ksm.scan()
        out.trace.append((t, ksm.full_scans, ksm.pages_sharing))
        if out.converge_s is None and ksm.pages_sharing >= kp.expected_sharing:
            out.converge_s, out.converge_full_scans = t, ksm.full_scans
    out.scanned_at_target = ksm.pages_scanned
    out.skipped_at_target = ksm.pages_skipped
    out.full_scans = ksm.full_scans
    out.pages_shared = ksm.pages_shared
    out.pages_sharing = ksm.pages_sharing
    out.pages_scanned = ksm.pages_scanned
    out.pages_skipped = ksm.pages_skipped
    return out


# --------------------------------------------------------------------------------------
# Page cache


@dataclass
class ReadPattern:
    """A seeded sequence of reads: (offset, length) in bytes, on a file of `size` bytes."""

    name: str
    size: int
    reads: list[tuple[int, int]]


def read_patterns(seed: int = 0, size: int = 16 << 20) -> list[ReadPattern]:
    """The patterns the page-cache check runs, each on a cold file of `size` bytes:
    scattered 4 KiB reads, a sequential 4 KiB stream, one large read, and scattered
    64 KiB reads."""
    rng = _rng(seed, "livecheck/pagecache")
    npages = size // PAGE
    scattered = sorted(rng.sample(range(npages), 64))
    chunks = sorted(rng.sample(range(npages // 16), 16))
    return [
        ReadPattern("random 4 KiB reads", size, [(p * PAGE, PAGE) for p in scattered]),
        ReadPattern("sequential 4 KiB reads, 1 MiB", size, [(i * PAGE, PAGE) for i in range(256)]),
        ReadPattern("one 256 KiB read", size, [(0, 256 << 10)]),
        ReadPattern("random 64 KiB reads", size, [(c * 16 * PAGE, 16 * PAGE) for c in chunks]),
    ]


def _mincore(libc, path: Path, size: int) -> list[bool]:
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            n = (size + PAGE - 1) // PAGE
            vec = ctypes.create_string_buffer(n)
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
            return [bool(b & 1) for b in vec.raw]
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def measure_real_pagecache(pattern: ReadPattern, directory: str | None = None) -> list[bool] | str:
    """Residency of a cold file after `pattern`'s reads on this machine (mincore), or the
    reason the file could not be made cold."""
    libc = _libc()
    with tempfile.TemporaryDirectory(dir=directory or _disk_tmp()) as d:
        path = Path(d) / "cold"
        rng = _rng(0, "livecheck/pagecache/bytes")
        with open(path, "wb") as f:
            for _ in range(pattern.size // (1 << 20)):
                f.write(rng.randbytes(1 << 20))
            f.flush()
            os.fsync(f.fileno())
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            if any(_mincore(libc, path, pattern.size)):
                return "the file stays in the page cache after POSIX_FADV_DONTNEED (tmpfs?)"
            for off, length in pattern.reads:
                os.pread(fd, length, off)
            return _mincore(libc, path, pattern.size)
        finally:
            os.close(fd)


def _disk_tmp() -> str:
    """A temporary directory on a disk-backed file system (not tmpfs), if there is one."""
    for d in ("/var/tmp", tempfile.gettempdir(), os.getcwd()):
        try:
            if os.statvfs(d) and not _is_tmpfs(d):
                return d
        except OSError:
            continue
    return tempfile.gettempdir()


def _is_tmpfs(d: str) -> bool:
    best, fstype = "", ""
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            mnt = parts[1]
            if (d == mnt or d.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best, fstype = mnt, parts[2]
    except OSError:
        return False
    return fstype in ("tmpfs", "ramfs")


def queue_limit(name: str, default: int, directory: str | None = None) -> int:
    """A queue limit (read_ahead_kb, max_sectors_kb) of the block device holding
    `directory` (default: where the check makes its file), from /sys/dev/block/MAJ:MIN/
    queue (its parent disk's for a partition); `default` when it cannot be found."""
    st = os.stat(directory or _disk_tmp())
    dev = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}")
    for q in (dev / "queue" / name, dev.resolve().parent / "queue" / name):
        try:
            return int(q.read_text())
        except (OSError, ValueError):
            continue
    return default


def read_ahead_kb(directory: str | None = None) -> int:
    """The device's read_ahead_kb (bdi->ra_pages * 4); 128, VM_READAHEAD_PAGES, if unknown."""
    return queue_limit("read_ahead_kb", 128, directory)


def max_sectors_kb(directory: str | None = None) -> int:
    """The device's max_sectors_kb (bdi->io_pages * 4); 1280 (BLK_DEF_MAX_SECTORS_CAP) if unknown."""
    return queue_limit("max_sectors_kb", 1280, directory)


def large_folios(directory: str | None = None) -> bool:
    """Does the file system holding `directory` read ahead in large folios
    (mapping_large_folio_support)? ext4 since 6.16 unless mounted data=journal; XFS since
    5.18."""
    d = os.path.realpath(directory or _disk_tmp())
    best, parts = "", None
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            f = line.split()
            if (d == f[1] or d.startswith(f[1].rstrip("/") + "/")) and len(f[1]) > len(best):
                best, parts = f[1], f
    except OSError:
        return False
    if parts is None:
        return False
    release = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    if parts[2] == "ext4":
        return release >= (6, 16) and "data=journal" not in parts[3].split(",")
    return parts[2] == "xfs" and release >= (5, 18)


def simulate_pagecache(pattern: ReadPattern, ra_kb: int = 128, io_kb: int = 1280,
                       folios: bool = False) -> list[bool]:
    """A guest kernel's page-cache residency after the same reads on a cold file, its disk's
    read_ahead_kb `ra_kb` and max_sectors_kb `io_kb` those of the real device, reading
    ahead in large folios if `folios` (as the real file system does)."""
    from guestkernel import uapi as U
    from guestkernel.config import KernelConfig
    from guestkernel.filemap import find_get_page
    from guestkernel.kernel import Kernel

    k = Kernel(KernelConfig(memory="512MiB", read_ahead_kb=ra_kb))
    k.fs.io_pages = io_kb * 1024 // PAGE
    k.fs.large_folios = folios
    inode = k.fs.create("/cold", size=pattern.size)
    t = k.spawn("reader")
    buf_len = max(length for _, length in pattern.reads)
    buf = t.mmap(0, (buf_len + PAGE - 1) // PAGE * PAGE, U.PROT_READ | U.PROT_WRITE,
                 U.MAP_PRIVATE | U.MAP_ANONYMOUS, -1, 0)
    fd = t.open("/cold", U.O_RDONLY)
    for off, length in pattern.reads:
        t.lseek(fd, off)
        t.read(fd, buf, length)
    return [find_get_page(inode, i) is not None for i in range(pattern.size // PAGE)]


# --------------------------------------------------------------------------------------
# OOM score


@dataclass
class OomSample:
    pid: int
    rss_pages: int
    swap_pages: int
    pgtables_bytes: int
    oom_score_adj: int
    real: int
    computed: int


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[key] = int(parts[0])
    return out


def totalpages() -> int:
    """totalram_pages() + total_swap_pages, from /proc/meminfo (MemTotal, SwapTotal)."""
    mem = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        mem[key] = int(rest.split()[0])
    return (mem["MemTotal"] + mem.get("SwapTotal", 0)) // 4


def sample_oom(pid: int, total: int | None = None) -> OomSample | None:
    """One process's oom_score beside hvsim's oom_score() of its /proc figures: rss =
    RssAnon + RssFile + RssShmem (get_mm_rss), swap = VmSwap, page tables = VmPTE. The
    figures are read twice around oom_score and the sample is kept only if they did not
    change in between; None for a process that went away or moved."""
    from guestkernel.oom_kill import oom_score

    total = total or totalpages()
    try:
        before = _status_kb(pid)
        real = int(Path(f"/proc/{pid}/oom_score").read_text())
        adj = int(Path(f"/proc/{pid}/oom_score_adj").read_text())
        after = _status_kb(pid)
    except (OSError, ValueError):
        return None
    keys = ("RssAnon", "RssFile", "RssShmem", "VmSwap", "VmPTE")
    if any(k not in before for k in keys) or any(before[k] != after.get(k) for k in keys):
        return None
    rss = (before["RssAnon"] + before["RssFile"] + before["RssShmem"]) // 4
    swap = before["VmSwap"] // 4
    pte = before["VmPTE"] * 1024
    return OomSample(pid, rss, swap, pte, adj, real, oom_score(rss, swap, pte, adj, total))


class OomProcesses:
    """Child processes holding `sizes_mib` MiB of touched anonymous memory each, with the
    oom_score_adj values `adjs` (cycled), alive while the context is open. The values are
    raised only: lowering oom_score_adj needs CAP_SYS_RESOURCE, which a sandboxed root
    may not have."""

    CODE = ("import sys, time\n"
            "b = bytearray(int(sys.argv[1]) << 20)\n"
            "for i in range(0, len(b), 4096): b[i] = 1\n"
            "with open('/proc/self/oom_score_adj', 'w') as f: f.write(sys.argv[2])\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n")

    def __init__(self, sizes_mib=(16, 64, 256), adjs=(0, 300, 900)) -> None:
        self.sizes = sizes_mib
        self.adjs = adjs
        self.procs = []

    def __enter__(self) -> list[int]:
        import subprocess

        for i, mib in enumerate(self.sizes):
            adj = self.adjs[i % len(self.adjs)]
            p = subprocess.Popen([sys.executable, "-c", self.CODE, str(mib), str(adj)],
                                 stdout=subprocess.PIPE, text=True)
            self.procs.append(p)
        for p in self.procs:
            p.stdout.readline()
        return [p.pid for p in self.procs]

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.kill()
            p.wait()


def user_pids() -> list[int]:
    """Every process with an address space (kernel threads have no RssAnon)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if "RssAnon:" in (d / "status").read_text():
                    pids.append(int(d.name))
            except OSError:
                continue
    return sorted(pids)
