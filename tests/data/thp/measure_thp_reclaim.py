"""Record this machine's THP rules for prctl(PR_SET_THP_DISABLE), MADV_COLD / MADV_PAGEOUT
over part or all of a THP, and whole-THP swap-out by swap device kind.

Writes thp_reclaim.json beside this script; tests/guestkernel/test_thp_reclaim_fixture.py
replays the same steps on the guest kernel and compares.

Usage (root; THP `enabled` is saved and restored, every swap area this script adds is
swapped off and its loop device detached, whatever happens):
    python3 measure_thp_reclaim.py          -> thp_reclaim.json

Parts:
- prctl: PR_GET_THP_DISABLE before and after PR_SET_THP_DISABLE, /proc/self/status
  THP_enabled, what a MADV_HUGEPAGE range faults while disabled (smaps AnonHugePages,
  THPeligible), a forked child's and an exec'd program's PR_GET_THP_DISABLE, the errno of
  non-zero unused arguments.
- madvise: a 2 MiB-aligned MADV_HUGEPAGE range of 512 pages, written whole (one THP),
  then MADV_COLD or MADV_PAGEOUT over all of it or part of it, with no swap area, or with
  a THP shared with a forked child, or after a PTE-level split of its PMD (mprotect of
  one page). Recorded: thp_* deltas (system-wide: `enabled` is madvise and nothing else
  here madvises) and the range's smaps Rss / AnonHugePages / Swap.
- swap: the same MADV_PAGEOUT of a whole THP and of half a THP with one swap area: a loop
  block device reporting rotational 1, the same reporting rotational 0 (sysfs
  queue/rotational), and a swap file on this machine's root filesystem; then a read of
  one page of the swapped-out range (do_swap_page). Recorded: thp_swpout,
  thp_swpout_fallback, thp_split_page, pswpout and pswpin deltas, smaps after each step.
"""

import ctypes
import json
import os
import platform
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import measure_thp as M  # noqa: E402  (aligned_map, touch, smaps, settings)

PAGE = M.PAGE
libc = M.libc
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]
PR_SET_THP_DISABLE, PR_GET_THP_DISABLE = 41, 42
MADV_COLD, MADV_PAGEOUT, MADV_HUGEPAGE = 20, 21, 14
KEYS = ("thp_fault_alloc", "thp_split_page", "thp_split_pmd", "thp_deferred_split_page",
        "thp_swpout", "thp_swpout_fallback", "pswpout", "pswpin")


def vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k in KEYS:
                out[k] = int(v)
    return out


def delta(before, after):
    return {k: after[k] - before[k] for k in KEYS if after[k] != before[k]}


def prctl(opt, a2=0, a3=0, a4=0, a5=0):
    r = libc.prctl(opt, a2, a3, a4, a5)
    return r if r >= 0 else -ctypes.get_errno()


def status_thp():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("THP_enabled:"):
                return int(line.split()[1])
    return None


def smaps_of(base, npages):
    s = M.smaps(base, base + npages * PAGE)
    swap = 0
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                a, b = (int(x, 16) for x in first.split("-"))
                inside = base <= a and b <= base + npages * PAGE
            elif inside and first == "Swap:":
                swap += int(line.split()[1])
    return {"rss_kb": s["rss_kb"], "anon_huge_kb": s["anon_huge_kb"], "swap_kb": swap,
            "thp_eligible": s["thp_eligible"]}


def in_child(fn):
    """Run fn() in a forked child; return what it returns (JSON)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps(fn()).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.waitpid(pid, 0)
    return json.loads(data)


def prctl_part():
    """Run in a child so the measuring process keeps THP."""

    def body():
        out = {"get_initial": prctl(PR_GET_THP_DISABLE), "status_initial": status_thp()}
        out["set_1"] = prctl(PR_SET_THP_DISABLE, 1)
        out["get_after_set"] = prctl(PR_GET_THP_DISABLE)
        out["status_after_set"] = status_thp()
        base = M.aligned_map(1024 * PAGE)
        libc.madvise(base, 1024 * PAGE, MADV_HUGEPAGE)
        v0 = vmstat()
        M.touch(base, 1024 * PAGE)
        out["disabled_fault"] = {"vmstat": delta(v0, vmstat()), **smaps_of(base, 1024)}
        out["fork_child_get"] = in_child(lambda: prctl(PR_GET_THP_DISABLE))
        out["fork_child_status"] = in_child(status_thp)
        code = ("import ctypes;l=ctypes.CDLL(None);"
                "print(l.prctl(42,0,0,0,0))")
        out["exec_get"] = int(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                             text=True, check=True).stdout)
        out["set_einval_arg4"] = prctl(PR_SET_THP_DISABLE, 1, 0, 1)
        out["get_einval_arg2"] = prctl(PR_GET_THP_DISABLE, 1)
        # 6.18 (not 6.1): arg3 may be PR_THP_DISABLE_EXCEPT_ADVISED (1 << 1)
        out["set_arg3_except_advised"] = prctl(PR_SET_THP_DISABLE, 1, 1 << 1)
        out["get_after_except_advised"] = prctl(PR_GET_THP_DISABLE)
        out["set_0"] = prctl(PR_SET_THP_DISABLE, 0)
        out["get_after_clear"] = prctl(PR_GET_THP_DISABLE)
        out["status_after_clear"] = status_thp()
        out["old_range_after_clear"] = smaps_of(base, 1024)
        b2 = M.aligned_map(1024 * PAGE)
        libc.madvise(b2, 1024 * PAGE, MADV_HUGEPAGE)
        v0 = vmstat()
        M.touch(b2, 1024 * PAGE)
        out["enabled_fault"] = {"vmstat": delta(v0, vmstat()), **smaps_of(b2, 1024)}
        return out

    return in_child(body)


# madvise cases: (name, steps); ops on a 512-page MADV_HUGEPAGE range written whole:
#   ("madvise", off, n, advice) | ("read", off, n) | ("mprotect", off, n, prot) |
#   ("fork_hold",): a child keeps the mapping (sleeps) until the case ends
MADV_CASES = [
    ("cold-whole", [("madvise", 0, 512, MADV_COLD)]),
    ("cold-part", [("madvise", 0, 256, MADV_COLD)]),
    ("pageout-whole", [("madvise", 0, 512, MADV_PAGEOUT)]),
    ("pageout-part", [("madvise", 0, 256, MADV_PAGEOUT)]),
    ("cold-part-shared-with-child", [("fork_hold",), ("madvise", 0, 256, MADV_COLD)]),
    ("cold-part-pte-mapped", [("mprotect", 511, 1, 1), ("madvise", 0, 256, MADV_COLD)]),
    ("cold-whole-pte-mapped", [("mprotect", 511, 1, 1), ("madvise", 0, 511, MADV_COLD)]),
]
SWAP_CASES = [
    ("pageout-whole-then-read", [("madvise", 0, 512, MADV_PAGEOUT), ("sleep",), ("read", 0, 1)]),
    ("pageout-part", [("madvise", 0, 256, MADV_PAGEOUT)]),
    ("pageout-pte-mapped", [("mprotect", 511, 1, 1), ("madvise", 0, 511, MADV_PAGEOUT)]),
]


def run_case(steps):
    base = M.aligned_map(512 * PAGE)
    libc.madvise(base, 512 * PAGE, MADV_HUGEPAGE)
    v0 = vmstat()
    M.touch(base, 512 * PAGE)
    log = [{"step": ["write", 0, 512], "vmstat": delta(v0, vmstat()), **smaps_of(base, 512)}]
    holder = None
    for step in steps:
        v0 = vmstat()
        op = step[0]
        if op == "madvise":
            M.check(libc.madvise(base + step[1] * PAGE, step[2] * PAGE, step[3]), "madvise")
        elif op == "read":
            M.touch(base + step[1] * PAGE, step[2] * PAGE, False)
        elif op == "mprotect":
            M.check(libc.mprotect(base + step[1] * PAGE, step[2] * PAGE, step[3]), "mprotect")
        elif op == "sleep":
            time.sleep(1.0)  # let the writes complete
        elif op == "fork_hold":
            r, w = os.pipe()
            holder = os.fork()
            if holder == 0:
                os.close(w)
                os.read(r, 1)
                os._exit(0)
            os.close(r)
            holder = (holder, w)
        log.append({"step": list(step), "vmstat": delta(v0, vmstat()), **smaps_of(base, 512)})
    if holder is not None:
        os.close(holder[1])
        os.waitpid(holder[0], 0)
    libc.munmap(base, 512 * PAGE)
    return log


def sh(*cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def with_swap(kind, fn):
    """kind: loop-rot1, loop-rot0 (a loop block device), file (a swap file on /)."""
    img = f"/tmp/thp-swap-{kind}.img"
    loop = None
    area = img
    sh("fallocate", "-l", "64M", img)  # (a swap file may have no holes)
    try:
        if kind.startswith("loop"):
            loop = sh("losetup", "-f", "--show", img)
            area = loop
            with open(f"/sys/block/{os.path.basename(loop)}/queue/rotational", "w") as f:
                f.write("1" if kind == "loop-rot1" else "0")
        else:
            os.chmod(img, 0o600)
        sh("mkswap", area)
        sh("swapon", area)
        try:
            with open("/proc/swaps") as f:
                swaps = f.read()
            rot = None
            if loop:
                with open(f"/sys/block/{os.path.basename(loop)}/queue/rotational") as f:
                    rot = int(f.read())
            return {"rotational": rot, "proc_swaps": swaps, "cases": fn()}
        finally:
            sh("swapoff", area)
    finally:
        if loop:
            sh("losetup", "-d", loop)
        os.unlink(img)


def main():
    with open(f"{M.SYS}/enabled") as f:
        saved = f.read().split("[")[1].split("]")[0]
    with open("/proc/swaps") as f:
        if len(f.read().splitlines()) > 1:
            sys.exit("a swap area is active: the no-swap cases need none")
    result = {"kernel": platform.release(), "settings_found": M.settings()}
    try:
        M.set_enabled("madvise")
        result["prctl"] = prctl_part()
        result["madvise_noswap"] = [{"name": n, "steps": run_case(s)} for n, s in MADV_CASES]
        result["swap"] = {}
        for kind in ("loop-rot1", "loop-rot0", "file"):
            result["swap"][kind] = with_swap(
                kind, lambda: [{"name": n, "steps": run_case(s)} for n, s in SWAP_CASES])
    finally:
        M.set_enabled(saved)
    result["restored_enabled"] = saved
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "thp_reclaim.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
