"""Record what this machine's kernel counts and maps for one file page fault that reads
(filemap_fault -> VM_FAULT_RETRY -> the retried fault), and for one that finds the page
cached. Writes fault_retry.json beside this script; test_readahead.py replays the cases
on the guest kernel.

fault_retry.c does the faults (a C program, so that nothing else of the measuring process
faults between the two reads of /proc/vmstat: it is mlockall'ed). /proc/vmstat is
system-wide: other processes can only add to pgfault/pgmajfault, so each case runs
TRIALS times and the test takes the smallest delta; getrusage's minflt/majflt, the mapping's
present pages (pagemap) and the cached pages (mincore) are this process's own.

Usage (root), on the scratch ext4 of measure_readahead.py (data=journal: order-0 folios;
read_ahead_kb 128):
    truncate -s 64M /tmp/ra.img && mkfs.ext4 -q -F /tmp/ra.img
    mkdir -p /tmp/ra && mount -o loop,data=journal -t ext4 /tmp/ra.img /tmp/ra
    echo 128 > /sys/block/loopN/queue/read_ahead_kb      (N from losetup -j /tmp/ra.img)
    python3 measure_fault_retry.py /tmp/ra                -> fault_retry.json
"""

import json
import os
import platform
import subprocess
import sys
import tempfile

PAGE = 4096
NPAGES = 2048  # an 8 MiB file
TRIALS = 15
CASES = ("read_miss", "read_hit", "cow_miss", "random_miss")
HERE = os.path.dirname(os.path.abspath(__file__))


def main() -> None:
    mnt = os.path.abspath(sys.argv[1])
    path = os.path.join(mnt, "fault-retry-scratch")
    with open(path, "wb") as f:
        for i in range(NPAGES):
            f.write(i.to_bytes(4, "little") * (PAGE // 4))
        f.flush()
        os.fsync(f.fileno())
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "fault_retry")
        subprocess.run(["gcc", "-O2", "-Wall", "-o", exe, os.path.join(HERE, "fault_retry.c")],
                       check=True)
        cases = {}
        for case in CASES:
            out = subprocess.run([exe, path, str(NPAGES), case, str(TRIALS)], check=True,
                                 capture_output=True, text=True).stdout
            cases[case] = [json.loads(line) for line in out.splitlines()]
    dev = os.stat(path).st_dev
    sysdir = f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/queue"
    mount = next(line.split() for line in open("/proc/mounts") if line.split()[1] == mnt)
    os.unlink(path)
    result = {"kernel": platform.release(), "fs": mount[2], "mount_options": mount[3],
              "read_ahead_kb": int(open(f"{sysdir}/read_ahead_kb").read()),
              "file_pages": NPAGES, "trials": TRIALS, "cases": cases}
    outp = os.path.join(HERE, "fault_retry.json")
    with open(outp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {outp}: {len(cases)} cases x {TRIALS}, kernel {result['kernel']}")


if __name__ == "__main__":
    main()
