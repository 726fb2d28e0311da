"""Record what POSIX_FADV_DONTNEED drops on this machine's kernel: which pages of a file
are cached (mincore) after each step of a few cases, from a cold file. Writes
fadvise.json beside this script; tests/guestkernel/test_fadvise.py replays the same steps
on the guest kernel and compares.

mm/fadvise.c generic_fadvise, POSIX_FADV_DONTNEED: start writeback of the byte range's
dirty pages (__filemap_fdatawrite_range, WB_SYNC_NONE), then drop the clean, unmapped
pages of the range's whole pages, and the last partial page too when the range ends at
EOF (endbyte == i_size - 1).

Usage (root; a scratch ext4 on its own loop device, so no other file system is touched):
    truncate -s 64M /tmp/fa.img && mkfs.ext4 -q -F /tmp/fa.img
    mkdir -p /tmp/fa && mount -o loop -t ext4 /tmp/fa.img /tmp/fa
    python3 measure_fadvise.py /tmp/fa                 -> fadvise.json
ext4's default data=ordered, not data=journal: with data=journal a written page stays
dirty until the journal's checkpoint, so the "dirty" case's second DONTNEED drops nothing
there (tried: [[0, 64]]). The writes are 4 KiB write()s, which make order-0 folios; the
11-page file is read in one read(), whose readahead may use large folios, and every case's
result is what order-0 pages give (the guest's page cache holds pages).
Steps: ["create", bytes] a new file of that size written and synced, then made cold
(DONTNEED, checked); ["read", off, len]; ["write", off, len] (4 KiB write()s, not synced);
["dontneed", off, len]; ["sleep", seconds]. Each step is followed by the resident runs
[first, end) of the file.
"""

import ctypes
import json
import mmap
import os
import platform
import sys
import time

PAGE = 4096
NPAGES = 128  # the largest file of any case, pages
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def resident(path):
    """The cached pages of `path` as [first, end) runs: mincore on a fresh, never touched
    mapping (mincore reports the page cache for a file mapping)."""
    size = os.stat(path).st_size
    n = (size + PAGE - 1) // PAGE
    if not n:
        return []
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, n * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        buf = (ctypes.c_ubyte * n)()
        if libc.mincore(ctypes.c_void_p(addr), n * PAGE, buf) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        libc.munmap(ctypes.c_void_p(addr), n * PAGE)
    finally:
        os.close(fd)
    runs, start = [], None
    for i in range(n):
        if buf[i] & 1:
            if start is None:
                start = i
        elif start is not None:
            runs.append([start, i])
            start = None
    if start is not None:
        runs.append([start, n])
    return runs


P = PAGE
EOF_SIZE = 10 * P + 100  # 11 pages, the last one partial


def cases():
    return {
        # the range ends at EOF (endbyte == i_size - 1): the partial last page goes too
        "to_eof": [("create", EOF_SIZE), ("read", 0, EOF_SIZE), ("dontneed", 0, EOF_SIZE)],
        # one byte short of EOF: the partial last page is kept
        "short_of_eof": [("create", EOF_SIZE), ("read", 0, EOF_SIZE),
                         ("dontneed", 0, EOF_SIZE - 1)],
        # len 0: to the end of the file
        "len_0": [("create", EOF_SIZE), ("read", 0, EOF_SIZE), ("dontneed", 0, 0)],
        # whole pages only: [P + 1, 4 P] drops pages 2 and 3
        "middle": [("create", EOF_SIZE), ("read", 0, EOF_SIZE), ("dontneed", P + 1, 3 * P)],
        # a page-aligned end: [2 P, 5 P) drops pages 2, 3 and 4
        "aligned": [("create", EOF_SIZE), ("read", 0, EOF_SIZE), ("dontneed", 2 * P, 3 * P)],
        # dirty pages are written by the first DONTNEED (not dropped: under writeback),
        # clean once it ends, and dropped by the second; those outside the range stay
        "dirty": [("create", 0), ("write", 0, 64 * P), ("dontneed", 0, 16 * P),
                  ("sleep", 1.0), ("dontneed", 0, 16 * P)],
        # the control: without the first DONTNEED nothing writes the pages within 1 s
        # (dirty_expire_centisecs 3000), so one DONTNEED after the sleep drops none
        "dirty_control": [("create", 0), ("write", 0, 64 * P), ("sleep", 1.0),
                          ("dontneed", 0, 16 * P)],
    }


def run_case(path, steps):
    out = []
    for step in steps:
        op = step[0]
        if op == "create":
            with open(path, "wb") as f:
                f.write(b"\x5a" * step[1])
                f.flush()
                os.fsync(f.fileno())
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
            if resident(path):
                raise SystemExit(f"{path}: still cached after POSIX_FADV_DONTNEED")
        elif op == "read":
            fd = os.open(path, os.O_RDONLY)
            os.lseek(fd, step[1], os.SEEK_SET)
            assert len(os.read(fd, step[2])) == min(step[2], EOF_SIZE - step[1])
            os.close(fd)
        elif op == "write":
            fd = os.open(path, os.O_WRONLY)
            os.lseek(fd, step[1], os.SEEK_SET)
            for _ in range(0, step[2], PAGE):
                os.write(fd, b"\xa5" * PAGE)
            os.close(fd)
        elif op == "dontneed":
            fd = os.open(path, os.O_RDONLY)
            os.posix_fadvise(fd, step[1], step[2], os.POSIX_FADV_DONTNEED)
            os.close(fd)
        elif op == "sleep":
            time.sleep(step[1])
        out.append(resident(path))
    return out


def main() -> None:
    mnt = os.path.abspath(sys.argv[1])
    path = os.path.join(mnt, "fa-scratch")
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    result = {"kernel": platform.release(), "fs": mount[2], "mount_options": mount[3],
              "dirty_expire_centisecs": int(open("/proc/sys/vm/dirty_expire_centisecs").read()),
              "cases": {}}
    for name, steps in cases().items():
        result["cases"][name] = {"steps": [list(s) for s in steps],
                                 "resident": run_case(path, steps)}
        os.unlink(path)
    name = sys.argv[2] if len(sys.argv) > 2 else "fadvise.json"
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {out}: {len(result['cases'])} cases, kernel {result['kernel']}")


if __name__ == "__main__":
    main()
