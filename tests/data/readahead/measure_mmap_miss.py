"""Record mmap_miss on this machine's kernel: a file mapping faulted at pages 64 apart
(each a cache miss that reads around), then once inside the first window (fault-around's
hits), then one more miss. Writes mmap_miss.json beside this script: the cached pages
(mincore) after each fault, as [first, end) runs. test_readahead.py's
test_mmap_miss_stops_read_around_past_mmap_lotsamiss asserts the same residency from
do_sync_mmap_readahead's rule and compares with this recording.

Usage (root), on the scratch ext4 of measure_readahead.py, mounted with data=journal
(order-0 folios) and read_ahead_kb 128:
    python3 measure_mmap_miss.py /tmp/ra                  -> mmap_miss.json
"""

import ctypes
import json
import mmap
import os
import platform
import sys

PAGE = 4096
NPAGES = 128 * 64  # a 32 MiB file
libc = ctypes.CDLL(None, use_errno=True)
libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def touches():
    """The faulting pages, in order: 100 misses, the 101st, a page of the first window,
    one more miss."""
    return [64 * j + 32 for j in range(101)] + [20, 64 * 101 + 32]


def main() -> None:
    mnt = os.path.abspath(sys.argv[1])
    path = os.path.join(mnt, "mmap-miss-scratch")
    with open(path, "wb") as f:
        for i in range(NPAGES):
            f.write(i.to_bytes(4, "little") * (PAGE // 4))
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    probe = os.open(path, os.O_RDONLY)  # mincore through a second, never touched mapping
    look_addr = libc.mmap(None, NPAGES * PAGE, mmap.PROT_READ, mmap.MAP_SHARED, probe, 0)
    if look_addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    buf = (ctypes.c_ubyte * NPAGES)()

    def resident():
        if libc.mincore(ctypes.c_void_p(look_addr), NPAGES * PAGE, buf) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
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

    if resident():
        raise SystemExit("the file is still cached after POSIX_FADV_DONTNEED")
    m = mmap.mmap(fd, NPAGES * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
    out = []
    for page in touches():
        m[page * PAGE]  # one read fault
        out.append(resident())
    dev = os.stat(path).st_dev
    sysdir = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/queue"
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    result = {"kernel": platform.release(), "fs": mount[2], "mount_options": mount[3],
              "read_ahead_kb": int(open(f"{sysdir}/read_ahead_kb").read()),
              "file_pages": NPAGES, "touches": touches(), "resident": out}
    libc.munmap(ctypes.c_void_p(look_addr), NPAGES * PAGE)
    os.close(probe)
    m.close()
    os.close(fd)
    os.unlink(path)
    outp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mmap_miss.json")
    with open(outp, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {outp}: {len(out)} faults, kernel {result['kernel']}")


if __name__ == "__main__":
    main()
