"""Record a guest kernel's CPU per 4 KiB page copy and per 4 KiB page zeroing on this
machine, both in one run, into page_costs.json beside this script: HostConfig's
`page_copy_cost` and `page_zero_cost` defaults are its two minima
(tests/hypervisor/test_time_costs.py checks they agree).

page_copy.c (copy_page: memcpy of a page-aligned 4 KiB block, 256 MiB to 256 MiB) and
page_clear.c (clear_page: memset of a page-aligned 4 KiB block over 256 MiB) are built
with gcc -O2 and run alternately, `RUNS` times each, `ROUNDS` rounds a run (each round
touches every page once and gives one time per page), so that both see the same machine
state over the same minutes. Each run is pinned to one CPU (taskset -c, the last CPU this
process may use) and, where allowed, raised to nice -5.

The machine may be shared (other processes' work comes and goes on its CPUs and in its
caches and memory bandwidth): a round slowed by them is slower, never faster, so the
minimum over all rounds is the robust figure of the program's own cost; the median is
kept beside it to show the spread.

Usage: python3 measure_page_costs.py [out.json]   (gcc and taskset on the PATH)
"""

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
RUNS = 30  # runs of each program, alternating copy, clear
ROUNDS = 5  # rounds a run


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _run(binary: str, cpu: int, nice: int) -> dict:
    cmd = ["taskset", "-c", str(cpu)]
    if nice:
        cmd += ["nice", "-n", str(nice)]
    out = subprocess.run(cmd + [binary, str(ROUNDS)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def _summary(times: list[float]) -> dict:
    return {"min": min(times), "median": statistics.median(times), "max": max(times),
            "seconds_per_page": times}


def main(out_path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bins = {}
        for name in ("page_copy", "page_clear"):
            bins[name] = os.path.join(tmp, name)
            subprocess.run(["gcc", "-O2", "-o", bins[name], str(HERE / f"{name}.c")], check=True)
        cpu = max(os.sched_getaffinity(0))
        # nice -5 needs privilege: an unprivileged `nice -n -5` runs at the same priority
        nice = -5 if os.geteuid() == 0 else 0
        start = datetime.datetime.now(datetime.UTC)
        copy, clear = [], []
        kernel = None
        for _ in range(RUNS):
            c = _run(bins["page_copy"], cpu, nice)
            z = _run(bins["page_clear"], cpu, nice)
            copy += c["copy_seconds_per_page"]
            clear += z["clear_seconds_per_page"]
            kernel = c["kernel"]
        end = datetime.datetime.now(datetime.UTC)
    gcc = subprocess.run(["gcc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    rec = {
        "script": "measure_page_costs.py",
        "kernel": kernel,
        "cpu_model": _cpu_model(),
        "cpus_online": os.cpu_count(),
        "pinned_cpu": cpu,
        "nice": nice,
        "gcc": gcc,
        "started_utc": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ended_utc": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pages": 65536,
        "runs": RUNS,
        "rounds_per_run": ROUNDS,
        "copy": _summary(copy),
        "clear": _summary(clear),
    }
    out_path.write_text(json.dumps(rec, indent=1) + "\n")
    print(f"copy  min {rec['copy']['min']:.4g} median {rec['copy']['median']:.4g} s/page")
    print(f"clear min {rec['clear']['min']:.4g} median {rec['clear']['median']:.4g} s/page")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "page_costs.json")
