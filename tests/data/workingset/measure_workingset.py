"""Record this machine's workingset detection (mm/workingset.c) under a memory cgroup's
limit: a process in a cgroup limited to LIMIT bytes reads cold files one after
another as each case's sequence says, each read sequential with read() of 128 KiB (dd);
memory.stat and /proc/vmstat are read before and after each read. Writes workingset.json beside this
script; tests/guestkernel/test_workingset_fixture.py replays the same reads in a guest
whose page cache can hold what the cgroup could and compares the counts.

This machine mounts the memory controller on cgroup v1 (cgroup2 has no memory controller
here), so the limit is memory.limit_in_bytes. v1's memory.stat has the cgroup's own
workingset_refault_file, pgpgin, pgpgout, pgmajfault, cache; workingset_activate_file,
workingset_restore_file, pgscan_*/pgsteal_* exist only machine-wide in /proc/vmstat:
their deltas include whatever else ran meanwhile, so every pass is also preceded by an
idle interval of the same length whose /proc/vmstat deltas are recorded as "background".

Usage (root; a scratch ext4 on its own loop device mounted with data=journal, which reads
in order-0 folios as the guest does, and read_ahead_kb = 128):
    truncate -s 256M /tmp/ws.img && mkfs.ext4 -q -F /tmp/ws.img
    mkdir -p /tmp/ws && mount -o loop,data=journal -t ext4 /tmp/ws.img /tmp/ws
    echo 128 > /sys/block/loopN/queue/read_ahead_kb      (N from losetup -j /tmp/ws.img)
    python3 measure_workingset.py /tmp/ws [runs [out.json [case,case]]]  -> workingset.json
"""

import json
import os
import platform
import subprocess
import sys
import time

MiB = 1 << 20
PAGE = 4096
CG = "/sys/fs/cgroup/memory/hvsim-workingset"
# (name, cgroup limit, {file: size}, files read in order)
CASES = [
    # a file 1.5x the limit read twice: use-once streaming, every page of the second read
    # refaults (nothing is active: no activation)
    ("stream-1.5x", 32 * MiB, {"s": 48 * MiB}, ["s", "s"]),
    ("loop-1.25x", 32 * MiB, {"l": 40 * MiB}, ["l", "l", "l"]),
    # a file that fits: no refault
    ("fits-0.75x", 32 * MiB, {"f": 24 * MiB}, ["f", "f"]),
    # a hot file read twice (activated), a stream that pushes it out, the hot file again
    ("hot-stream", 32 * MiB, {"a": 16 * MiB, "b": 32 * MiB}, ["a", "a", "b", "a", "b", "a"]),
    # the same with the stream read slowly ("b/slow": 128 KiB by a new dd every SLOW
    # seconds, about 40 s for the file): the cgroup's reclaim reads its LRU sizes from
    # memcg statistics flushed at most every 2 s (mem_cgroup_flush_stats_ratelimited,
    # 6.8+), so a fast stream is reclaimed against sizes from before it started
    ("hot-stream-slow", 32 * MiB, {"a": 16 * MiB, "b": 32 * MiB},
     ["a", "a", "b/slow", "a", "b/slow", "a"]),
    # the same at full speed with the cgroup's statistics kept fresh: a process outside the
    # cgroup reads its memory.stat without pause (each read flushes them,
    # mem_cgroup_flush_stats), as a node's statistics are for a guest's own reclaim (and as
    # 6.1's threshold-based flush in prepare_scan_count kept them)
    ("hot-stream-polled", 32 * MiB, {"a": 16 * MiB, "b": 32 * MiB},
     ["a", "a", "b", "a", "b", "a"]),
]
SLOW = 0.15  # seconds between the 128 KiB reads of a slow step (about 40 s a file)
VMSTAT_KEYS = ("workingset_refault_file", "workingset_activate_file", "workingset_restore_file",
               "workingset_nodes", "workingset_nodereclaim", "pgscan_direct", "pgscan_kswapd",
               "pgsteal_direct", "pgsteal_kswapd", "pgscan_file", "pgsteal_file",
               "pgactivate", "pgdeactivate", "pgrefill")
MEMSTAT_KEYS = ("workingset_refault_file", "pgpgin", "pgpgout", "pgmajfault", "cache",
                "active_file", "inactive_file")


def vmstat() -> dict:
    out = {}
    for line in open("/proc/vmstat"):
        k, v = line.split()
        if k in VMSTAT_KEYS:
            out[k] = int(v)
    return out


def memstat() -> dict:
    out = {}
    for line in open(CG + "/memory.stat"):
        k, v = line.split()
        if k in MEMSTAT_KEYS:
            out[k] = int(v)
    return out


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a}


def cold(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)


def run_case(mnt: str, name: str, limit: int, seq: list) -> dict:
    for f in sorted(set(seq)):
        cold(os.path.join(mnt, f"{name}-{f.split('/')[0]}.dat"))
    if os.path.isdir(CG):
        os.rmdir(CG)
    os.mkdir(CG)
    with open(CG + "/memory.limit_in_bytes", "w") as f:
        f.write(str(limit))
    steps = []
    # one shell in the cgroup runs every pass; it waits for a byte on stdin before each
    sh = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {CG}/tasks; while read x; do "
         f"dd if={mnt}/{name}-$x.dat of=/dev/null bs=128k 2>/dev/null; echo done; done"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    slow = subprocess.Popen(
        ["sh", "-c", f"echo $$ > {CG}/tasks; while read x n; do i=0; while [ $i -lt $n ]; do "
         f"dd if={mnt}/{name}-$x.dat of=/dev/null bs=128k skip=$i count=1 2>/dev/null; "
         f"sleep {SLOW}; i=$((i+1)); done; echo done; done"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    poller = None
    if name.endswith("-polled"):
        poller = subprocess.Popen(
            [sys.executable, "-c", f"import time\nwhile True:\n    open('{CG}/memory.stat').read()"])
    time.sleep(0.2)
    for p, f in enumerate(seq):
        v0 = vmstat()
        t0 = time.monotonic()
        m0 = memstat()
        if f.endswith("/slow"):
            chunks = os.path.getsize(os.path.join(mnt, f"{name}-{f[:-5]}.dat")) >> 17
            slow.stdin.write(f"{f[:-5]} {chunks}\n")
            slow.stdin.flush()
            assert slow.stdout.readline().strip() == "done"
        else:
            sh.stdin.write(f + "\n")
            sh.stdin.flush()
            assert sh.stdout.readline().strip() == "done"
        m1 = memstat()
        v1 = vmstat()
        dt = time.monotonic() - t0
        b0 = vmstat()
        time.sleep(dt)
        b1 = vmstat()
        steps.append({"step": p + 1, "file": f, "seconds": round(dt, 4), "memory.stat": delta(m0, m1),
                      "memory.stat_after": m1, "vmstat": delta(v0, v1),
                      "background": delta(b0, b1)})
    sh.stdin.close()
    sh.wait()
    slow.stdin.close()
    slow.wait()
    if poller is not None:
        poller.kill()
        poller.wait()
    with open(CG + "/memory.max_usage_in_bytes") as f:
        max_usage = int(f.read())
    with open(CG + "/memory.failcnt") as f:
        failcnt = int(f.read())
    time.sleep(0.1)
    os.rmdir(CG)
    return {"steps": steps, "max_usage_in_bytes": max_usage, "failcnt": failcnt}


def main() -> None:
    mnt = sys.argv[1]
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    dev = os.path.basename(os.path.realpath(mount[0]))
    ra = open(f"/sys/block/{dev}/queue/read_ahead_kb").read().strip()
    out = {"kernel": platform.release(), "fstype": mount[2], "mount_options": mount[3],
           "read_ahead_kb": int(ra), "page_size": PAGE, "cgroup": "v1 memory.limit_in_bytes",
           "swap": open("/proc/swaps").read().count("\n") - 1, "cases": []}
    only = sys.argv[4].split(",") if len(sys.argv) > 4 else None
    for name, limit, files, seq in CASES:
        if only and name not in only:
            continue
        for f, size in files.items():
            path = os.path.join(mnt, f"{name}-{f}.dat")
            if not os.path.exists(path) or os.path.getsize(path) != size:
                with open(path, "wb") as fh:
                    for _ in range(size // MiB):
                        fh.write(os.urandom(MiB))
        case = {"name": name, "limit": limit, "files": files, "sequence": seq, "runs": []}
        for _ in range(runs):
            case["runs"].append(run_case(mnt, name, limit, seq))
        out["cases"].append(case)
        print(name, [[s["memory.stat"]["workingset_refault_file"] for s in r["steps"]]
                     for r in case["runs"]],
              [[s["vmstat"]["workingset_activate_file"] for s in r["steps"]] for r in case["runs"]])
    dst = sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "workingset.json")
    with open(dst, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
