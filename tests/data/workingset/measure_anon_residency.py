"""Record where the pages of measure_workingset_anon.py's loop are while the reader goes
through its first read pass: mapped, unmapped but still in the swap cache (reclaim took
them out of the page table and wrote them, and has not freed them yet), or swapped out
(freed). Writes anon_residency.json beside this script; the anon loop's strict xfail in
tests/guestkernel/test_workingset_fixture.py quotes it.

The loop case of measure_workingset_anon.py (a 40 MiB anonymous area in a cgroup v1
memory cgroup limited to 32 MiB, swappiness 60, a 256 MiB swap file; pass 0 writes every
page, passes 1-3 read them in address order), run by anon_residency (anon_residency.c
beside this script) instead of anon_touch: before each of the first FIRST pages of pass 1
and every 64th page after, it classifies every page of the area by /proc/self/pagemap and
mincore(). Each run with swap readahead as found (page-cluster 3, vma_ra_enabled) and
without (page-cluster 0); per run the looks, the pass's /proc/vmstat deltas (pswpin,
pswpout, pgsteal_anon, pgscan_anon, workingset_refault_anon) and how the process ended.
The looks take time of their own (each reads the whole area's pagemap): the reader is
slower than measure_workingset_anon.py's.

Usage (root):
    gcc -O2 -o /tmp/anon_residency anon_residency.c
    python3 measure_anon_residency.py [runs [out.json]]
"""

import json
import os
import platform
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
LIMIT = 32 * MiB
CG = "/sys/fs/cgroup/memory/hvsim-anon-residency"
SWAPFILE = "/var/tmp/hvsim-swap"
PROG = "/tmp/anon_residency"
MIB, PASSES, FIRST = 40, 2, 256
PAGE_CLUSTER = "/proc/sys/vm/page-cluster"
VMSTAT_KEYS = ("pswpin", "pswpout", "pgsteal_anon", "pgscan_anon", "workingset_refault_anon",
               "pgmajfault", "pgfault", "pgrotated")


def vmstat() -> dict:
    out = {}
    for line in open("/proc/vmstat"):
        k, v = line.split()
        if k in VMSTAT_KEYS:
            out[k] = int(v)
    return out


def run(out_txt: str) -> dict:
    if os.path.isdir(CG):
        os.rmdir(CG)
    os.mkdir(CG)
    open(CG + "/memory.limit_in_bytes", "w").write(str(LIMIT))
    open(CG + "/memory.memsw.limit_in_bytes", "w").write("-1")
    open(CG + "/memory.swappiness", "w").write("60")
    p = subprocess.Popen(["sh", "-c", f'echo $$ > {CG}/cgroup.procs; exec "$@"', "sh", PROG,
                          str(MIB), str(PASSES), str(FIRST), out_txt],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    marks = []
    while True:
        line = p.stdout.readline().strip()
        if not line:
            break
        marks.append(vmstat())
        p.stdin.write("\n")
        p.stdin.flush()
    p.wait()
    time.sleep(1)
    os.rmdir(CG)
    looks = []
    if os.path.exists(out_txt):
        looks = [[int(x) for x in ln.split()] for ln in open(out_txt)]
        os.unlink(out_txt)
    # marks: before pass 0, before pass 1, at "done": pass 1 is marks[1] -> marks[2]
    delta = ({k: marks[2][k] - marks[1][k] for k in VMSTAT_KEYS} if len(marks) > 2 else None)
    return {"looks": looks, "pass1_vmstat_delta": delta, "returncode": p.returncode}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "anon_residency.json")
    subprocess.run(["fallocate", "-l", "256M", SWAPFILE], check=True)
    os.chmod(SWAPFILE, 0o600)
    subprocess.run(["mkswap", "-q", SWAPFILE], check=True)
    subprocess.run(["swapon", SWAPFILE], check=True)
    pc0 = open(PAGE_CLUSTER).read().strip()
    result = {"kernel": platform.release(), "limit": LIMIT, "mib": MIB, "first": FIRST,
              "vma_ra_enabled": open("/sys/kernel/mm/swap/vma_ra_enabled").read().strip(),
              "loadavg": open("/proc/loadavg").read().split()[:3],
              "looks": "[page about to be read, mapped, in the swap cache unmapped, swapped out]",
              "cases": {}}
    tmp = os.path.join(tempfile.gettempdir(), "anon_residency.txt")
    try:
        for pc in (pc0, "0"):
            open(PAGE_CLUSTER, "w").write(pc)
            result["cases"][f"page-cluster-{pc}"] = [run(tmp) for _ in range(runs)]
    finally:
        open(PAGE_CLUSTER, "w").write(pc0)
        subprocess.run(["swapoff", SWAPFILE])
        os.unlink(SWAPFILE)
    with open(out_path, "w") as f:
        json.dump(result, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
