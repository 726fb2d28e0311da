"""Record what a clocked replay of workingset_anon.json's loop needs from this machine: the
swap device's write (and read) latency and bandwidth, under the recording's conditions
(measure_workingset_anon.py's swap file, /var/tmp/hvsim-swap, 256 MiB, on the same file
system), and the time anon_touch's loop spends per page it touches. Writes
swap_timing.json beside this script; tests/guestkernel/test_workingset_fixture.py gives
the guest's swap device these figures (KernelConfig.swap_latency / swap_bandwidth) and
steps its clock by the reader's time per page.

The swap device: swap I/O to a swap file goes straight to the blocks of the file
(swap_activate maps its extents; bios to the block device, no page cache), so O_DIRECT
I/O to the same file, its extents written once beforehand, crosses the same path to the
device. Measured, each `REPEAT` times and the best (lowest time) kept, as the machine is
shared:
- latency: one 4 KiB O_DIRECT write (read) at a time, consecutive offsets (swap-out takes
  consecutive slots), `SMALL_OPS` of them: the median time per operation;
- bandwidth: `BIG_MIB` MiB written (read) in O_DIRECT requests of 1 MiB, consecutive;
the device model (swap.py BlockQueue: a request of n pages costs latency + n * 4096 /
bandwidth) then has latency = the 4 KiB time less 4096 / bandwidth.

The reader: anon_touch (anon_touch.c: gcc -O2 -o /tmp/anon_touch anon_touch.c) maps
LOOP_MIB MiB with no memory limit, writes every page (pass 0: first-touch faults), then
reads a word of every page per pass with every page resident: the wall time of a read
pass over its pages is the loop's time per page touched (no fault, nothing to wait for);
pass 0's time per page (a first-touch fault each) is recorded beside it.

Usage (root; ANON_TOUCH names the binary if not /tmp/anon_touch):
    gcc -O2 -o /tmp/anon_touch anon_touch.c
    python3 measure_swap_timing.py [out.json]
The swap file is created, measured and removed; no swap is enabled.
"""

import json
import mmap
import os
import platform
import statistics
import subprocess
import sys
import time

MiB = 1 << 20
PAGE = 4096
SWAPFILE = "/var/tmp/hvsim-swap"
SWAP_MIB = 256
ANON_TOUCH = os.environ.get("ANON_TOUCH", "/tmp/anon_touch")
LOOP_MIB = 40  # the loop-1.25x case's area
LOOP_PASSES = 4
SMALL_OPS = 2000
BIG_MIB = 64
REPEAT = 10


def _small(fd: int, write: bool) -> float:
    """Median seconds of one 4 KiB O_DIRECT operation, consecutive offsets."""
    buf = mmap.mmap(-1, PAGE)
    buf.write(b"\x5a" * PAGE)
    times = []
    for i in range(SMALL_OPS):
        off = (i * PAGE) % (SWAP_MIB * MiB)
        t0 = time.perf_counter()
        if write:
            os.pwrite(fd, buf, off)
        else:
            os.preadv(fd, [buf], off)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _big(fd: int, write: bool) -> float:
    """Bytes per second over BIG_MIB MiB in 1 MiB O_DIRECT requests."""
    buf = mmap.mmap(-1, MiB)
    buf.write(b"\xa5" * MiB)
    t0 = time.perf_counter()
    for i in range(BIG_MIB):
        off = (i * MiB) % (SWAP_MIB * MiB)
        if write:
            os.pwrite(fd, buf, off)
        else:
            os.preadv(fd, [buf], off)
    return BIG_MIB * MiB / (time.perf_counter() - t0)


def device() -> dict:
    subprocess.run(["fallocate", "-l", f"{SWAP_MIB}M", SWAPFILE], check=True)
    try:
        # write the extents once (fallocate leaves them unwritten: a first O_DIRECT write
        # would convert them, a cost the swap path never pays)
        subprocess.run(["dd", "if=/dev/zero", f"of={SWAPFILE}", "bs=1M", f"count={SWAP_MIB}",
                        "oflag=direct", "conv=notrunc", "status=none"], check=True)
        fd = os.open(SWAPFILE, os.O_RDWR | os.O_DIRECT)
        try:
            out = {}
            for name, write in (("write", True), ("read", False)):
                small = min(_small(fd, write) for _ in range(REPEAT))
                bw = max(_big(fd, write) for _ in range(REPEAT))
                out[name] = {"op_4k_s": small, "bandwidth_Bps": bw,
                             "latency_s": max(small - PAGE / bw, 0.0)}
            return out
        finally:
            os.close(fd)
    finally:
        os.unlink(SWAPFILE)


def reader() -> dict:
    """Best of REPEAT runs: seconds per page of a resident read pass, and of pass 0."""
    pages = LOOP_MIB * MiB // PAGE
    best_read, best_write = float("inf"), float("inf")
    for _ in range(REPEAT):
        p = subprocess.Popen([ANON_TOUCH, str(LOOP_MIB), str(LOOP_PASSES)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        marks = []
        while True:
            line = p.stdout.readline().strip()
            if not line:
                break
            marks.append(time.perf_counter())
            p.stdin.write("\n")
            p.stdin.flush()
        p.wait()
        # marks[i]: "pass i" (or "done") seen; pass i ran from marks[i] to marks[i + 1]
        spans = [b - a for a, b in zip(marks, marks[1:])]
        best_write = min(best_write, spans[0] / pages)
        best_read = min(best_read, min(spans[1:]) / pages)
    return {"mib": LOOP_MIB, "read_pass_s_per_page": best_read,
            "write_pass_s_per_page": best_write}


def main() -> None:
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "swap_timing.json")
    result = {"kernel": platform.release(), "swapfile": SWAPFILE, "repeat": REPEAT,
              "device": device(), "reader": reader()}
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
