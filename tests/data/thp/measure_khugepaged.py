"""Record this machine's khugepaged collapsing a range: for each case, map a 2 MiB-aligned
anonymous range, touch some of its pages while it is not MADV_HUGEPAGE (enabled =
madvise: 4 KiB pages and a PTE table), then madvise(MADV_HUGEPAGE) (khugepaged_enter_vma)
and wait until khugepaged has scanned it (at most WAIT seconds); record the range's smaps
Rss and AnonHugePages, and whether thp_scan_exceed_none_pte moved. Writes khugepaged.json
beside this script; tests/guestkernel/test_thp_fixture.py replays the cases on a guest.

Usage (root): python3 measure_khugepaged.py
khugepaged/scan_sleep_millisecs is set to 100 and max_ptes_none per case for the run;
enabled, scan_sleep_millisecs and max_ptes_none are restored afterwards, whatever happens.
"""

import ctypes
import json
import os
import platform
import time

from measure_thp import HPAGE, MADV_HUGEPAGE, PAGE, SYS, aligned_map, libc, smaps, touch

WAIT = 3.0  # seconds: 30 wake-ups at 100 ms

# (name, max_ptes_none, pages written, pages read) before the madvise
CASES = [
    ("written-100", 511, 100, 0),
    ("written-100-max-none-400", 400, 100, 0),
    ("written-100-max-none-412", 412, 100, 0),
    ("read-only-100", 511, 0, 100),
    ("written-1-read-99", 511, 1, 99),
]


def rd(name):
    with open(f"{SYS}/{name}") as f:
        return f.read().strip()


def wr(name, value):
    with open(f"{SYS}/{name}", "w") as f:
        f.write(str(value))


def exceed_none():
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k == "thp_scan_exceed_none_pte":
                return int(v)
    return 0


def main():
    saved = {"enabled": rd("enabled").split("[")[1].split("]")[0],
             "khugepaged/scan_sleep_millisecs": rd("khugepaged/scan_sleep_millisecs"),
             "khugepaged/max_ptes_none": rd("khugepaged/max_ptes_none")}
    out = {"kernel": platform.release(), "wait_s": WAIT, "cases": []}
    try:
        wr("enabled", "madvise")
        wr("khugepaged/scan_sleep_millisecs", 100)
        for name, max_none, nwrite, nread in CASES:
            wr("khugepaged/max_ptes_none", max_none)
            base = aligned_map(HPAGE)
            touch(base, nwrite * PAGE, True)
            touch(base + nwrite * PAGE, nread * PAGE, False)
            before = smaps(base, base + HPAGE)
            e0 = exceed_none()
            full0 = int(rd("khugepaged/full_scans"))
            if libc.madvise(base, HPAGE, MADV_HUGEPAGE):
                raise OSError(ctypes.get_errno(), "madvise")
            t0 = time.time()
            while time.time() - t0 < WAIT:
                if smaps(base, base + HPAGE)["anon_huge_kb"] or int(rd("khugepaged/full_scans")) >= full0 + 2:
                    break
                time.sleep(0.05)
            after = smaps(base, base + HPAGE)
            out["cases"].append({"name": name, "max_ptes_none": max_none, "written": nwrite,
                                 "read": nread, "before": before, "after": after,
                                 "exceed_none_pte_moved": exceed_none() > e0})
            libc.munmap(base, HPAGE)
    finally:
        for k, v in saved.items():
            wr(k, v)
    out["restored"] = saved
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "khugepaged.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(path)


if __name__ == "__main__":
    main()
