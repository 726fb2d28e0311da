"""Record this machine's workingset detection for anonymous memory (mm/workingset.c via
the swap cache: workingset_refault_anon / activate_anon / restore_anon) under a memory
cgroup's limit, with a swap file added for the measurement: the anonymous counterpart of
measure_workingset.py's file cases. Writes workingset_anon.json beside this script;
tests/guestkernel/test_workingset_fixture.py replays the same passes in a guest.

A process (anon_touch, from anon_touch.c beside this script) in a cgroup limited to
LIMIT = 32 MiB (memory.limit_in_bytes; memory.memsw.limit_in_bytes unlimited so it may
swap; memory.swappiness 60) maps a private anonymous area (MADV_NOHUGEPAGE), writes every
page once (pass 0), then reads one word of every page, in address order, once per later
pass. Around each pass: the cgroup's memory.stat (workingset_refault_anon, pgpgin,
pgpgout, pgmajfault, swap, rss, active_anon, inactive_anon) and the /proc/vmstat deltas
(pswpin, pswpout, workingset_*_anon, swap_ra, swap_ra_hit, pgscan_anon, pgsteal_anon,
pgactivate, pgdeactivate: machine-wide, but nothing else swaps on this machine, which
has no swap but the file this script adds).

Usage (root):
    gcc -O2 -o /tmp/anon_touch anon_touch.c
    python3 measure_workingset_anon.py [runs [out.json]]
The script adds a 256 MiB swap file (/var/tmp/hvsim-swap) and removes it at the end.
"""

import json
import os
import platform
import subprocess
import sys
import time

MiB = 1 << 20
LIMIT = 32 * MiB
CG = "/sys/fs/cgroup/memory/hvsim-workingset-anon"
SWAPFILE = "/var/tmp/hvsim-swap"
ANON_TOUCH = "/tmp/anon_touch"
# (name, MiB of anonymous memory, passes: one write, then reads)
CASES = [
    ("stream-1.5x", 48, 3),
    ("loop-1.25x", 40, 4),
    ("fits-0.75x", 24, 3),
]
VMSTAT_KEYS = ("pswpin", "pswpout", "swap_ra", "swap_ra_hit", "workingset_refault_anon",
               "workingset_activate_anon", "workingset_restore_anon", "pgscan_anon",
               "pgsteal_anon", "pgactivate", "pgdeactivate", "pgrefill", "pgmajfault")
MEMSTAT_KEYS = ("rss", "swap", "swapcached", "inactive_anon", "active_anon", "pgpgin",
                "pgpgout", "pgmajfault", "workingset_refault_anon")


def read_kv(path: str, keys) -> dict:
    out = {}
    for line in open(path):
        k, v = line.split()[:2]
        if k in keys:
            out[k] = int(v)
    return out


def sample() -> dict:
    return {"memstat": read_kv(CG + "/memory.stat", MEMSTAT_KEYS),
            "vmstat": read_kv("/proc/vmstat", VMSTAT_KEYS)}


def run_case(mib: int, passes: int) -> list:
    if os.path.isdir(CG):
        os.rmdir(CG)
    os.mkdir(CG)
    open(CG + "/memory.limit_in_bytes", "w").write(str(LIMIT))
    open(CG + "/memory.memsw.limit_in_bytes", "w").write("-1")
    open(CG + "/memory.swappiness", "w").write("60")
    p = subprocess.Popen(["sh", "-c", f'echo $$ > {CG}/cgroup.procs; exec "$@"', "sh",
                          ANON_TOUCH, str(mib), str(passes)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    out = []
    before = None
    while True:
        line = p.stdout.readline().strip()
        if not line:
            break
        now = sample()
        if before is not None:
            out.append({
                "pass": len(out),
                "memstat": now["memstat"],
                "memstat_delta": {k: now["memstat"][k] - before["memstat"][k]
                                  for k in before["memstat"]},
                "vmstat_delta": {k: now["vmstat"][k] - before["vmstat"][k]
                                 for k in before["vmstat"]},
            })
        before = now
        p.stdin.write("\n")
        p.stdin.flush()
    p.wait()
    time.sleep(1)
    os.rmdir(CG)
    return out


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "workingset_anon.json")
    subprocess.run(["fallocate", "-l", "256M", SWAPFILE], check=True)
    os.chmod(SWAPFILE, 0o600)
    subprocess.run(["mkswap", "-q", SWAPFILE], check=True)
    subprocess.run(["swapon", SWAPFILE], check=True)
    result = {"kernel": platform.release(), "limit": LIMIT,
              "page_cluster": int(open("/proc/sys/vm/page-cluster").read()),
              "vma_ra_enabled": open("/sys/kernel/mm/swap/vma_ra_enabled").read().strip(),
              "cases": {}}
    try:
        for name, mib, passes in CASES:
            result["cases"][name] = {"mib": mib, "passes": passes,
                                     "runs": [run_case(mib, passes) for _ in range(runs)]}
    finally:
        subprocess.run(["swapoff", SWAPFILE])
        os.unlink(SWAPFILE)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
