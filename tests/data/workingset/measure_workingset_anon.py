"""Record this machine's workingset detection for anonymous memory (mm/workingset.c via
the swap cache: workingset_refault_anon / activate_anon / restore_anon) under a memory
cgroup's limit, with a swap file added for the measurement: the anonymous counterpart of
measure_workingset.py's file cases. Writes workingset_anon_2.json beside this script;
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

The first recording (workingset_anon.json, 6.18.44-fc-v1272, three runs) kept those
counters. The second (workingset_anon_2.json, 6.18.44-fc-v1300, five runs, this script as
it is now) keeps the same cases with every /proc/vmstat
counter that moved during a pass ("vmstat_delta": among them pgrotated, nr_vmscan_write,
pgscan_direct / pgsteal_direct, pgfault, swap_ra / swap_ra_hit, workingset_*), the whole
of the cgroup's memory.stat (cgroup v1: workingset_refault_anon is its only workingset
counter and it has no pgscan/pgsteal; those are /proc/vmstat's, and nothing else on the
machine reclaims), memory.failcnt (page_counter_try_charge attempts that failed at the limit:
try_charge_memcg tries a MEMCG_CHARGE_BATCH of 64 first, then the one page), the pass's
wall time, and the loop case again with the
swap readahead settings varied: by address off (vma_ra_enabled false: swap_cluster_
readahead by slot) and no readahead (page-cluster 0). The kernel release, page-cluster,
vma_ra_enabled, swappiness and the load average are recorded with it, and per run how
the process ended ("exits": its return code, -9 when the cgroup's OOM killer killed it,
and memory.oom_control's oom_kill): a killed run has fewer passes than asked.

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
# (name, MiB, passes, page-cluster or None: as found, vma_ra_enabled or None: as found)
CASES = [
    ("stream-1.5x", 48, 3, None, None),
    ("loop-1.25x", 40, 4, None, None),
    ("fits-0.75x", 24, 3, None, None),
    ("loop-1.25x-cluster-ra", 40, 4, None, "false"),
    ("loop-1.25x-no-ra", 40, 4, 0, None),
]
PAGE_CLUSTER = "/proc/sys/vm/page-cluster"
VMA_RA = "/sys/kernel/mm/swap/vma_ra_enabled"
VMSTAT_KEYS = ("pswpin", "pswpout", "swap_ra", "swap_ra_hit", "workingset_refault_anon",
               "workingset_activate_anon", "workingset_restore_anon", "pgscan_anon",
               "pgsteal_anon", "pgactivate", "pgdeactivate", "pgrefill", "pgmajfault")


def read_kv(path: str, keys=None) -> dict:
    out = {}
    for line in open(path):
        k, v = line.split()[:2]
        if keys is None or k in keys:
            out[k] = int(v)
    return out


def sample() -> dict:
    memstat = {k: v for k, v in read_kv(CG + "/memory.stat").items()
               if not k.startswith(("total_", "hierarchical_"))}
    memstat["failcnt"] = int(open(CG + "/memory.failcnt").read())
    return {"memstat": memstat, "vmstat": read_kv("/proc/vmstat"), "t": time.monotonic()}


def run_case(mib: int, passes: int) -> tuple[list, dict]:
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
                                 for k in before["vmstat"]
                                 if k in VMSTAT_KEYS or now["vmstat"][k] != before["vmstat"][k]},
                "wall_s": round(now["t"] - before["t"], 4),
            })
        before = now
        p.stdin.write("\n")
        p.stdin.flush()
    p.wait()
    oom = read_kv(CG + "/memory.oom_control").get("oom_kill", 0)
    time.sleep(1)
    os.rmdir(CG)
    return out, {"returncode": p.returncode, "oom_kill": oom}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "workingset_anon_2.json")
    subprocess.run(["fallocate", "-l", "256M", SWAPFILE], check=True)
    os.chmod(SWAPFILE, 0o600)
    subprocess.run(["mkswap", "-q", SWAPFILE], check=True)
    subprocess.run(["swapon", SWAPFILE], check=True)
    pc0 = open(PAGE_CLUSTER).read().strip()
    ra0 = open(VMA_RA).read().strip()
    result = {"kernel": platform.release(), "limit": LIMIT,
              "page_cluster": int(pc0), "vma_ra_enabled": ra0,
              "swappiness": 60, "loadavg": open("/proc/loadavg").read().split()[:3],
              "cases": {}}
    try:
        for name, mib, passes, pc, ra in CASES:
            open(PAGE_CLUSTER, "w").write(str(pc) if pc is not None else pc0)
            open(VMA_RA, "w").write(ra if ra is not None else ra0)
            done = [run_case(mib, passes) for _ in range(runs)]
            result["cases"][name] = {
                "mib": mib, "passes": passes,
                "page_cluster": int(open(PAGE_CLUSTER).read()),
                "vma_ra_enabled": open(VMA_RA).read().strip(),
                "runs": [r for r, _ in done], "exits": [e for _, e in done]}
    finally:
        open(PAGE_CLUSTER, "w").write(pc0)
        open(VMA_RA, "w").write(ra0)
        subprocess.run(["swapoff", SWAPFILE])
        os.unlink(SWAPFILE)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
