"""Record how this machine's kernel swaps shmem (mm/shmem.c shmem_writepage, shmem_swapin_folio)
under a memory cgroup's limit, with a swap file added for the measurement. Writes
shmem_swap.json beside this script; tests/guestkernel/test_shmem_swap.py checks the guest
against the directions and counts the kernel's rules give for it.

Cases (limit LIMIT = 32 MiB, memory.limit_in_bytes; memory.memsw.limit_in_bytes unlimited,
so the cgroup may swap; memory.swappiness 60):
  tmpfs-1.5x   dd writes a 48 MiB file on a tmpfs (128 KiB writes) from inside the cgroup,
               dd reads it back, the file is removed.
  sysv-1.5x    shm_touch writes a 48 MiB SysV segment, reads it back, removes it.
  sysv-locked  shm_touch writes a 16 MiB SHM_LOCK'd segment, then 32 MiB of anonymous
               memory (more than the limit leaves), reads the segment, removes it.
After each step: the cgroup's memory.stat (gauges: cache, rss, shmem, swap, swapcached,
unevictable, ...; events: pgpgin, pgpgout, pgmajfault, workingset_refault_anon), its
memory.usage_in_bytes and memory.memsw.usage_in_bytes, /proc/swaps' used KiB, and the
/proc/vmstat deltas of the step (pswpin, pswpout, ...: machine-wide, but nothing else on
this machine swaps while the swap file exists only for this script).

Usage (root; gcc builds shm_touch from shm_touch.c beside this script):
    gcc -O2 -o /tmp/shm_touch shm_touch.c
    python3 measure_shmem_swap.py [runs [out.json]]
The script adds a 256 MiB swap file (/var/tmp/hvsim-swap) and a tmpfs (/tmp/hvsim-tmpfs)
and removes both at the end.
"""

import json
import os
import platform
import subprocess
import sys
import time

MiB = 1 << 20
LIMIT = 32 * MiB
CG = "/sys/fs/cgroup/memory/hvsim-shmem-swap"
SWAPFILE = "/var/tmp/hvsim-swap"
TMPFS = "/tmp/hvsim-tmpfs"
SHM_TOUCH = "/tmp/shm_touch"
VMSTAT_KEYS = ("pswpin", "pswpout", "swap_ra", "swap_ra_hit", "workingset_refault_anon",
               "workingset_activate_anon", "workingset_restore_anon", "pgscan_anon",
               "pgsteal_anon", "pgmajfault")
MEMSTAT_KEYS = ("cache", "rss", "shmem", "mapped_file", "swap", "swapcached", "unevictable",
                "inactive_anon", "active_anon", "inactive_file", "active_file", "pgpgin",
                "pgpgout", "pgmajfault", "workingset_refault_anon")


def read_kv(path: str, keys) -> dict:
    out = {}
    for line in open(path):
        k, v = line.split()[:2]
        if k in keys:
            out[k] = int(v)
    return out


def swap_used_kib() -> int:
    for line in open("/proc/swaps").read().splitlines()[1:]:
        f = line.split()
        if f[0] == SWAPFILE:
            return int(f[3])
    return 0


def sample() -> dict:
    return {
        "memstat": read_kv(CG + "/memory.stat", MEMSTAT_KEYS),
        "usage": int(open(CG + "/memory.usage_in_bytes").read()),
        "memsw_usage": int(open(CG + "/memory.memsw.usage_in_bytes").read()),
        "swap_used_kib": swap_used_kib(),
        "vmstat": read_kv("/proc/vmstat", VMSTAT_KEYS),
    }


def delta(a: dict, b: dict) -> dict:
    return {k: b[k] - a[k] for k in a}


def record(before: dict, after: dict) -> dict:
    out = dict(after)
    out["vmstat_delta"] = delta(before["vmstat"], after["vmstat"])
    out["memstat_events"] = {k: after["memstat"][k] - before["memstat"][k]
                             for k in ("pgpgin", "pgpgout", "pgmajfault",
                                       "workingset_refault_anon")}
    del out["vmstat"]
    return out


def in_cgroup(argv: list, **kw) -> subprocess.Popen:
    return subprocess.Popen(["sh", "-c", f'echo $$ > {CG}/cgroup.procs; exec "$@"', "sh"] + argv,
                            **kw)


def make_cgroup() -> None:
    if os.path.isdir(CG):
        os.rmdir(CG)
    os.mkdir(CG)
    open(CG + "/memory.limit_in_bytes", "w").write(str(LIMIT))
    open(CG + "/memory.memsw.limit_in_bytes", "w").write("-1")
    open(CG + "/memory.swappiness", "w").write("60")


def case_tmpfs() -> list:
    path = TMPFS + "/f"
    steps = []
    before = sample()
    in_cgroup(["dd", "if=/dev/urandom", f"of={path}", "bs=128K", "count=384"],
              stderr=subprocess.DEVNULL).wait()
    after = sample()
    steps.append(("written", record(before, after)))
    before = after
    in_cgroup(["dd", f"if={path}", "of=/dev/null", "bs=128K"], stderr=subprocess.DEVNULL).wait()
    after = sample()
    steps.append(("read", record(before, after)))
    before = after
    os.unlink(path)
    after = sample()
    steps.append(("removed", record(before, after)))
    return steps


def case_sysv(mib: int, lock: int, anon: int) -> list:
    p = in_cgroup([SHM_TOUCH, str(mib), str(lock), str(anon)], stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, text=True)
    steps = []
    before = sample()
    while True:
        line = p.stdout.readline().strip()
        if not line:
            break
        after = sample()
        steps.append((line, record(before, after)))
        before = after
        p.stdin.write("\n")
        p.stdin.flush()
    p.wait()
    return steps


CASES = {
    "tmpfs-1.5x": case_tmpfs,
    "sysv-1.5x": lambda: case_sysv(48, 0, 0),
    "sysv-locked": lambda: case_sysv(16, 1, 32),
}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "shmem_swap.json")
    subprocess.run(["fallocate", "-l", "256M", SWAPFILE], check=True)
    os.chmod(SWAPFILE, 0o600)
    subprocess.run(["mkswap", "-q", SWAPFILE], check=True)
    subprocess.run(["swapon", SWAPFILE], check=True)
    os.makedirs(TMPFS, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=128M", "tmpfs", TMPFS], check=True)
    result = {
        "kernel": platform.release(), "limit": LIMIT, "page_cluster":
        int(open("/proc/sys/vm/page-cluster").read()), "runs": {},
    }
    try:
        for name, fn in CASES.items():
            result["runs"][name] = []
            for _ in range(runs):
                make_cgroup()
                steps = fn()
                result["runs"][name].append([{"step": s, **r} for s, r in steps])
                time.sleep(1)
                os.rmdir(CG)
    finally:
        subprocess.run(["umount", TMPFS])
        subprocess.run(["swapoff", SWAPFILE])
        os.unlink(SWAPFILE)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
