"""Record measure_workingset_anon.py's loop case (a 40 MiB anonymous area read in address
order in a cgroup v1 memory cgroup limited to 32 MiB, swap readahead as found) with the
swap file's disk limited to requests of 128 KiB (its queue's max_sectors_kb) and as
found (4096 KiB on this machine's vda). Writes swap_plug.json beside this script; the
anon loop's tests in tests/guestkernel/test_workingset_fixture.py use it.

Why: swap readahead allocates its window inside a blk_plug (6.1 swap_cluster_readahead,
swap_vma_readahead), so the swap writes of a reclaim that an allocation there enters
are held in the task's plug, merged into one request (blk_attempt_plug_merge) until it
reaches max_sectors_kb; only a new request behind one of BLK_PLUG_FLUSH_SIZE (128 KiB)
or more sends them (blk_add_rq_to_plug). At 128 KiB a request holds at most 32 pages,
one SWAP_CLUSTER_MAX batch of reclaim, and the plug holds back no more than that.

Per run and pass the same records as measure_workingset_anon.py (memory.stat,
/proc/vmstat deltas that moved, failcnt, wall time) and how the run ended. The queue
setting is restored at the end. Usage (root): gcc -O2 -o /tmp/anon_touch anon_touch.c;
python3 measure_swap_plug.py [runs [out.json]]
"""

import json
import os
import platform
import subprocess
import sys

import measure_workingset_anon as M

MIB, PASSES = 40, 4
SETTINGS = ("128", None)  # max_sectors_kb; None: as found


def queue_dir(path: str) -> str:
    """The request queue of the disk holding `path` (a partition's is its disk's)."""
    st = os.stat(path)
    dev = f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    q = os.path.join(dev, "queue")
    if not os.path.isdir(q):
        q = os.path.join(dev, "..", "queue")
    return os.path.realpath(q)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "swap_plug.json")
    subprocess.run(["fallocate", "-l", "256M", M.SWAPFILE], check=True)
    os.chmod(M.SWAPFILE, 0o600)
    subprocess.run(["mkswap", "-q", M.SWAPFILE], check=True)
    subprocess.run(["swapon", M.SWAPFILE], check=True)
    q = queue_dir(M.SWAPFILE)
    msk0 = open(q + "/max_sectors_kb").read().strip()
    result = {"kernel": platform.release(), "limit": M.LIMIT, "mib": MIB, "passes": PASSES,
              "queue": q, "max_hw_sectors_kb": int(open(q + "/max_hw_sectors_kb").read()),
              "scheduler": open(q + "/scheduler").read().strip(),
              "page_cluster": int(open(M.PAGE_CLUSTER).read()),
              "vma_ra_enabled": open(M.VMA_RA).read().strip(),
              "loadavg": open("/proc/loadavg").read().split()[:3], "cases": {}}
    try:
        for msk in SETTINGS:
            open(q + "/max_sectors_kb", "w").write(msk or msk0)
            done = [M.run_case(MIB, PASSES) for _ in range(runs)]
            result["cases"][f"max_sectors_kb-{msk or msk0}"] = {
                "max_sectors_kb": int(open(q + "/max_sectors_kb").read()),
                "runs": [r for r, _ in done], "exits": [e for _, e in done]}
    finally:
        open(q + "/max_sectors_kb", "w").write(msk0)
        subprocess.run(["swapoff", M.SWAPFILE])
        os.unlink(M.SWAPFILE)
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
