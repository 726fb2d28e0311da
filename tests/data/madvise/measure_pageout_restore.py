"""Record whether MADV_PAGEOUT's eviction marks a page as workingset on this machine's
kernel: the page-cache pages of a file are activated (read() twice: folio_mark_accessed's
second touch), mapped and touched, paged out with MADV_PAGEOUT, then read again. The
deltas of /proc/vmstat's workingset_* and pgdeactivate counters across the steps, and
the file's cached pages (mincore), are written to pageout_restore.json beside this script
(several runs; the counters are global, so each run's deltas are kept).
tests/guestkernel/test_madvise_cold_pageout.py replays the steps on the guest.

mm/madvise.c madvise_cold_or_pageout_pte_range (6.1) clears the PTE's young bit and
PG_referenced and hands the pages to reclaim_pages, which clears PG_active; neither sets
PG_workingset (only shrink_active_list's deactivation does), so the shadow entry the
eviction leaves says "not workingset" and the refault is an activation, not a restore.

Usage (root; a scratch ext4 on its own loop device, data=journal for order-0 folios):
    truncate -s 64M /tmp/po.img && mkfs.ext4 -q -F /tmp/po.img
    mkdir -p /tmp/po && mount -o loop,data=journal -t ext4 /tmp/po.img /tmp/po
    python3 measure_pageout_restore.py /tmp/po
"""

import ctypes
import json
import mmap
import os
import platform
import sys

PAGE = 4096
NPAGES = 256
RUNS = 5
COUNTERS = ("workingset_refault_file", "workingset_activate_file", "workingset_restore_file",
            "pgdeactivate")
libc = ctypes.CDLL(None, use_errno=True)
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MADV_PAGEOUT = 21


def vmstat():
    out = {}
    for line in open("/proc/vmstat"):
        k, v = line.split()
        if k in COUNTERS:
            out[k] = int(v)
    return out


def cached(addr):
    buf = (ctypes.c_ubyte * NPAGES)()
    if libc.mincore(ctypes.c_void_p(addr), NPAGES * PAGE, buf) != 0:
        raise OSError(ctypes.get_errno(), "mincore")
    return sum(b & 1 for b in buf)


def run(path):
    with open(path, "wb") as f:
        f.write(b"\x5a" * (NPAGES * PAGE))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    addr = libc.mmap(None, NPAGES * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    assert cached(addr) == 0
    steps = []
    for _ in range(2):  # read() twice: the second touch activates
        os.lseek(fd, 0, os.SEEK_SET)
        while os.read(fd, 1 << 16):
            pass
    view = (ctypes.c_char * (NPAGES * PAGE)).from_address(addr)
    for i in range(NPAGES):  # map every page (read faults)
        view[i * PAGE]
    before = vmstat()
    if libc.madvise(ctypes.c_void_p(addr), NPAGES * PAGE, MADV_PAGEOUT) != 0:
        raise OSError(ctypes.get_errno(), "madvise")
    after = vmstat()
    steps.append({"step": "pageout", "cached": cached(addr),
                  "delta": {k: after[k] - before[k] for k in COUNTERS}})
    before = after
    os.lseek(fd, 0, os.SEEK_SET)
    while os.read(fd, 1 << 16):
        pass
    after = vmstat()
    steps.append({"step": "read", "cached": cached(addr),
                  "delta": {k: after[k] - before[k] for k in COUNTERS}})
    libc.munmap(ctypes.c_void_p(addr), NPAGES * PAGE)
    os.close(fd)
    os.unlink(path)
    return steps


def main() -> None:
    mnt = os.path.abspath(sys.argv[1])
    path = os.path.join(mnt, "po-scratch")
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    result = {"kernel": platform.release(), "fs": mount[2], "mount_options": mount[3],
              "file_pages": NPAGES, "runs": [run(path) for _ in range(RUNS)]}
    outp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pageout_restore.json")
    with open(outp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {outp}: {RUNS} runs, kernel {result['kernel']}")


if __name__ == "__main__":
    main()
