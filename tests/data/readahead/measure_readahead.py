"""Record this machine's page-cache readahead: which pages of a cold file are cached
(mincore) after each step of seeded read patterns (read(), mmap faults, fadvise,
madvise). Writes readahead.json beside this script; tests/guestkernel/test_readahead.py
replays the same steps on the guest kernel and compares.

Usage (root; a scratch file system on its own block device with read_ahead_kb = 128, so
that no other file system's setting is touched; ext4 with data=journal, which reads in
order-0 folios as the guest does: ext4 otherwise reads ahead in large folios, whose
alignment moves the windows' edges):
    truncate -s 64M /tmp/ra.img && mkfs.ext4 -q -F /tmp/ra.img
    mkdir -p /tmp/ra && mount -o loop,data=journal -t ext4 /tmp/ra.img /tmp/ra
    echo 128 > /sys/block/loopN/queue/read_ahead_kb      (N from losetup -j /tmp/ra.img)
    python3 measure_readahead.py /tmp/ra                  -> readahead.json
and the same on ext4 mounted without data=journal (large folios: 6.x ext4's default):
    mount -o loop -t ext4 /tmp/ra.img /tmp/ra
    python3 measure_readahead.py /tmp/ra readahead-large-folios.json
Each case starts from a cold file (posix_fadvise DONTNEED, checked with mincore) and a new
open file (a fresh struct file_ra_state).
"""

import ctypes
import json
import mmap
import os
import platform
import random
import sys
import time

PAGE = 4096
NPAGES = 2048  # an 8 MiB file
SETTLE = 0.03  # seconds after each step
libc = ctypes.CDLL(None, use_errno=True)
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def _resident_fd(path, buf):
    """The cached pages of `path` as [first, end) runs: mincore on a fresh mapping that
    is never touched (mincore reports the page cache for a file mapping)."""
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, NPAGES * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        if libc.mincore(ctypes.c_void_p(addr), NPAGES * PAGE, buf) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        libc.munmap(ctypes.c_void_p(addr), NPAGES * PAGE)
    finally:
        os.close(fd)
    runs, start = [], None
    for i in range(NPAGES):
        if buf[i] & 1:
            if start is None:
                start = i
        elif start is not None:
            runs.append([start, i])
            start = None
    if start is not None:
        runs.append([start, NPAGES])
    return runs


def cold(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    left = _resident_fd(path, (ctypes.c_ubyte * NPAGES)())
    if left:
        raise SystemExit(f"{path}: still cached after POSIX_FADV_DONTNEED: {left}")


ADVICE = {"normal": os.POSIX_FADV_NORMAL, "random": os.POSIX_FADV_RANDOM,
          "sequential": os.POSIX_FADV_SEQUENTIAL, "willneed": os.POSIX_FADV_WILLNEED}
MADVICE = {"random": mmap.MADV_RANDOM, "sequential": mmap.MADV_SEQUENTIAL,
           "willneed": mmap.MADV_WILLNEED, "normal": mmap.MADV_NORMAL}


def run_case(path: str, steps: list) -> list:
    """Run the steps on a cold file; the residency after each step."""
    cold(path)
    fd = os.open(path, os.O_RDONLY)
    m = None
    out = []
    try:
        for step in steps:
            op = step[0]
            if op == "read":  # ("read", byte offset, bytes)
                os.lseek(fd, step[1], os.SEEK_SET)
                os.read(fd, step[2])
            elif op == "fadvise":  # ("fadvise", advice, byte offset, bytes)
                os.posix_fadvise(fd, step[2], step[3], ADVICE[step[1]])
            elif op == "mmap":
                m = mmap.mmap(fd, NPAGES * PAGE, prot=mmap.PROT_READ)
            elif op == "madvise":  # ("madvise", advice, byte offset, bytes)
                m.madvise(MADVICE[step[1]], step[2], step[3])
            elif op == "touch":  # ("touch", page): a read fault on the mapping
                m[step[1] * PAGE]
            else:
                raise ValueError(op)
            time.sleep(SETTLE)  # let readahead I/O finish: mincore shows uptodate pages only
            out.append(_resident_fd(path, (ctypes.c_ubyte * NPAGES)()))
    finally:
        if m is not None:
            m.close()
        os.close(fd)
    return out


def cases() -> dict:
    rnd = random.Random(1)
    c = {}
    c["seq_4k_from_0"] = [("read", i * PAGE, PAGE) for i in range(80)]
    c["seq_16k_from_0"] = [("read", i * 4 * PAGE, 4 * PAGE) for i in range(40)]
    c["seq_4k_from_100"] = [("read", (100 + i) * PAGE, PAGE) for i in range(60)]
    c["seq_6000_bytes_from_0"] = [("read", i * 6000, 6000) for i in range(60)]
    c["random_4k"] = [("read", rnd.randrange(NPAGES) * PAGE, PAGE) for _ in range(64)]
    c["random_64k"] = [("read", rnd.randrange(NPAGES // 16) * 16 * PAGE, 16 * PAGE)
                       for _ in range(16)]
    c["one_1m_read_at_0"] = [("read", 0, 256 * PAGE)]
    c["one_1m_read_at_512"] = [("read", 512 * PAGE, 256 * PAGE)]
    c["fadvise_random_seq_4k"] = [("fadvise", "random", 0, 0)] + [
        ("read", i * PAGE, PAGE) for i in range(40)]
    c["fadvise_sequential_seq_4k"] = [("fadvise", "sequential", 0, 0)] + [
        ("read", i * PAGE, PAGE) for i in range(80)]
    c["fadvise_willneed"] = [("fadvise", "willneed", 100 * PAGE, 64 * PAGE),
                             ("fadvise", "willneed", 1000 * PAGE, 600 * PAGE)]
    c["mmap_touch_1000_on"] = [("mmap",)] + [("touch", 1000 + i) for i in range(40)]
    c["mmap_touch_0_on"] = [("mmap",)] + [("touch", i) for i in range(100)]
    c["mmap_random_touch"] = [("mmap",)] + [("touch", rnd.randrange(NPAGES)) for _ in range(32)]
    c["madvise_random_touch"] = [("mmap",), ("madvise", "random", 0, NPAGES * PAGE)] + [
        ("touch", 1000 + i) for i in range(8)]
    c["madvise_sequential_touch"] = [("mmap",), ("madvise", "sequential", 0, NPAGES * PAGE)] + [
        ("touch", i) for i in range(100)]
    c["madvise_willneed"] = [("mmap",), ("madvise", "willneed", 500 * PAGE, 100 * PAGE)]
    return c


def main() -> None:
    mnt = os.path.abspath(sys.argv[1])
    path = os.path.join(mnt, "ra-scratch")
    rnd = random.Random(0)
    with open(path, "wb") as f:
        f.write(rnd.randbytes(NPAGES * PAGE))
        f.flush()
        os.fsync(f.fileno())
    dev = os.stat(path).st_dev
    sysdir = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/queue"
    ra_kb = int(open(f"{sysdir}/read_ahead_kb").read())
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    fstype = mount[2]
    result = {
        "kernel": platform.release(),
        "fs": fstype,
        "mount_options": mount[3],
        "read_ahead_kb": ra_kb,
        "max_sectors_kb": int(open(f"{sysdir}/max_sectors_kb").read()),
        "file_pages": NPAGES,
        "cases": {},
    }
    for name, steps in cases().items():
        result["cases"][name] = {"steps": [list(s) for s in steps],
                                 "resident": run_case(path, steps)}
    os.unlink(path)
    name = sys.argv[2] if len(sys.argv) > 2 else "readahead.json"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    with open(out, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {out}: {len(result['cases'])} cases, kernel {result['kernel']}, "
          f"{fstype}, read_ahead_kb {ra_kb}")


if __name__ == "__main__":
    main()
