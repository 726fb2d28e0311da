"""Record what POSIX_FADV_DONTNEED does with cached pages it cannot drop, on this machine's
kernel: N pages of a file, read three times (active), are held by a pipe (splice(2) puts
page-cache pages into the pipe's buffers: mapping_evict_folio's refcount test fails), then
DONTNEED over the file. Writes fadvise_held.json beside this script: /proc/vmstat's
pgdeactivate, pgrotated and pgactivate deltas around the fadvise call, TRIALS times per N
(system-wide counters: other processes can only add, the test takes the smallest).

mm/fadvise.c generic_fadvise: mapping_try_invalidate gives each page it cannot drop to
deactivate_file_folio (lru_deactivate_file_fn: clean -> inactive tail, PGROTATED;
PGDEACTIVATE if it was active), counts nr_failed, then lru_add_drain_all and
invalidate_mapping_pages again: each page is deactivated twice, but for the pages the
second pass leaves in this CPU's lru_deactivate_file batch (folio_batch_release drains it
once, after the first batch of entries; the batch holds 31 folios on 6.18, 15 on 6.1).

Usage (root), on the scratch ext4 of measure_readahead.py (data=journal: order-0 folios):
    python3 measure_fadvise_held.py /tmp/ra                -> fadvise_held.json
"""

import fcntl
import json
import os
import platform
import sys

PAGE = 4096
SIZES = (8, 32)
TRIALS = 8
KEYS = ("pgdeactivate", "pgrotated", "pgactivate")
F_SETPIPE_SZ = 1031


def vmstat() -> dict:
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            out[k] = int(v)
    return out


def trial(path: str, n: int) -> dict:
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    for _ in range(3):
        os.pread(fd, n * PAGE, 0)
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 2 * n * PAGE)
    if os.splice(fd, w, n * PAGE, offset_src=0) != n * PAGE:
        raise SystemExit("short splice")
    a = vmstat()
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    b = vmstat()
    os.read(r, n * PAGE)
    os.close(r)
    os.close(w)
    os.close(fd)
    return {k: b[k] - a[k] for k in KEYS}


def main() -> None:
    mnt = os.path.abspath(sys.argv[1])
    cases = {}
    for n in SIZES:
        path = os.path.join(mnt, f"fadvise-held-{n}")
        with open(path, "wb") as f:
            for i in range(n):
                f.write(i.to_bytes(4, "little") * (PAGE // 4))
            f.flush()
            os.fsync(f.fileno())
        cases[str(n)] = [trial(path, n) for _ in range(TRIALS)]
        os.unlink(path)
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    result = {"kernel": platform.release(), "fs": mount[2], "mount_options": mount[3],
              "trials": TRIALS, "cases": cases}
    outp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fadvise_held.json")
    with open(outp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {outp}: kernel {result['kernel']}",
          {n: {k: min(t[k] for t in c) for k in KEYS} for n, c in cases.items()})


if __name__ == "__main__":
    main()
