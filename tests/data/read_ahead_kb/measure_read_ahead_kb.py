"""Record what /sys/block/<disk>/queue/read_ahead_kb reads back after each write on this
machine's kernel (block/blk-sysfs.c queue_ra_store: bdi->ra_pages = ra_kb >> (PAGE_SHIFT
- 10); queue_ra_show: ra_pages << (PAGE_SHIFT - 10); queue_var_store: kstrtoul, EINVAL
above UINT_MAX). Writes read_ahead_kb.json beside this script; tests/guestkernel/
test_read_ahead_kb.py writes the same values into the guest's file.

Usage (root; a loop device of its own, so no other disk's setting is touched):
    truncate -s 16M /tmp/rakb.img && losetup -f --show /tmp/rakb.img   -> /dev/loopN
    python3 measure_read_ahead_kb.py loopN
    losetup -d /dev/loopN
"""

import json
import os
import platform
import sys

WRITES = ["128", "130", "4", "5", "3", "0", "8192", "64\n", "-1", "abc", "4294967295",
          "4294967296", " 16", "1e3"]


def main() -> None:
    path = f"/sys/block/{sys.argv[1]}/queue/read_ahead_kb"
    before = open(path).read()
    out = []
    try:
        for text in WRITES:
            try:
                fd = os.open(path, os.O_WRONLY)
                try:
                    os.write(fd, text.encode())
                    err = None
                finally:
                    os.close(fd)
            except OSError as e:
                err = e.errno
            out.append({"write": text, "errno": err, "reads": open(path).read()})
    finally:
        with open(path, "w") as f:
            f.write(before)
    result = {"kernel": platform.release(), "initial": before, "steps": out}
    outp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "read_ahead_kb.json")
    with open(outp, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {outp}: {len(out)} writes, kernel {result['kernel']}")


if __name__ == "__main__":
    main()
