"""Record this machine's transparent huge pages: for each case, map a 2 MiB-aligned
anonymous range, set THP's `enabled` mode, madvise or not, touch, then partially unmap,
mprotect, madvise(MADV_DONTNEED), mremap or fork, and record after every step the
range's smaps fields (Rss, AnonHugePages, summed over the VMAs inside the range, and
the VMAs' count, VmFlags hg/nh and THPeligible) and the deltas of /proc/vmstat's thp_* counters.
Writes thp.json beside this script; tests/guestkernel/test_thp_fixture.py replays the
same steps on the guest kernel and compares.

Usage (root; the machine's THP settings are saved and restored, whatever happens):
    python3 measure_thp.py              -> thp.json

Notes: /proc/vmstat is system-wide. Cases run with `enabled` = madvise unless they say
otherwise, so only this program's MADV_HUGEPAGE ranges can fault huge pages meanwhile; a
case run under `always` records its vmstat deltas but they may include another
process's faults (the JSON says which cases ran under always). khugepaged's
scan_sleep_millisecs (10 s) is longer than a case, so it does not collapse a range
mid-case; `defrag` is left as the machine has it. The huge zero page counter
(thp_zero_page_alloc) counts only the first allocation after the shrinker freed it,
so the read case records the PMD it maps (smaps Rss 0, no AnonHugePages) rather than
the counter.
"""

import ctypes
import json
import os
import platform
import sys

PAGE = 4096
HPAGE = 2 << 20
SYS = "/sys/kernel/mm/transparent_hugepage"
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
libc.mremap.restype = ctypes.c_void_p
libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int,
                        ctypes.c_void_p]

PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_FIXED, MAP_NORESERVE = 0x02, 0x20, 0x10, 0x4000
MADV_DONTNEED, MADV_HUGEPAGE, MADV_NOHUGEPAGE = 4, 14, 15
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
THP_KEYS = ("thp_fault_alloc", "thp_fault_fallback", "thp_fault_fallback_charge",
            "thp_collapse_alloc", "thp_collapse_alloc_failed", "thp_split_page",
            "thp_split_page_failed", "thp_deferred_split_page", "thp_split_pmd",
            "thp_zero_page_alloc")


def vmstat():
    out = {}
    with open("/proc/vmstat") as f:
        for line in f:
            k, v = line.split()
            if k in THP_KEYS:
                out[k] = int(v)
    return out


def smaps(lo, hi):
    """Rss and AnonHugePages (kB) summed over the VMAs inside [lo, hi), their count and
    each VMA's VmFlags hg/nh and THPeligible."""
    rss = ahp = n = 0
    flags = []
    elig = []
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split()[0]
            if "-" in first and not first.endswith(":"):
                a, b = (int(x, 16) for x in first.split("-"))
                inside = lo <= a and b <= hi
                n += inside
            elif inside and first == "Rss:":
                rss += int(line.split()[1])
            elif inside and first == "AnonHugePages:":
                ahp += int(line.split()[1])
            elif inside and first == "THPeligible:":
                elig.append(int(line.split()[1]))
            elif inside and first == "VmFlags:":
                fl = line.split()[1:]
                flags.append("".join(x for x in ("hg", "nh") if x in fl) or "-")
    return {"vmas": n, "rss_kb": rss, "anon_huge_kb": ahp, "vmflags": flags, "thp_eligible": elig}


def check(r, what):
    if r == ctypes.c_void_p(-1).value or (isinstance(r, int) and r == -1):
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return r


def aligned_map(size):
    """An anonymous private RW mapping of `size` starting on a 2 MiB boundary: reserve
    size + 2 MiB PROT_NONE, then map the aligned part MAP_FIXED and unmap the rest."""
    raw = check(libc.mmap(None, size + HPAGE, PROT_NONE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0), "mmap")
    base = (raw + HPAGE - 1) & ~(HPAGE - 1)
    if base > raw:
        check(libc.munmap(raw, base - raw), "munmap")
    tail = raw + size + HPAGE - (base + size)
    if tail:
        check(libc.munmap(base + size, tail), "munmap")
    check(libc.munmap(base, size), "munmap")
    got = check(libc.mmap(base, size, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), "mmap")
    assert got == base
    return base


def touch(addr, length, write=True):
    for a in range(addr, addr + length, PAGE):
        if write:
            ctypes.memset(a, 1, 1)
        else:
            _ = ctypes.c_char.from_address(a).value


# Each step: (op, args...) with offsets in pages from the range's base. Ops:
#   madvise off len advice | write off len | read off len | munmap off len |
#   mprotect off len prot | mremap_move off len dest_off (MREMAP_FIXED to base + dest) |
#   fork_write off len (the child writes, reports its own smaps, exits)
CASES = [
    ("madvise-mode-no-advice", "madvise", 1024, [("write", 0, 512)]),
    ("madvise-mode-hugepage-one-touch", "madvise", 1024,
     [("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1)]),
    ("hugepage-touch-all", "madvise", 1024,
     [("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1024)]),
    ("always-no-advice", "always", 1024, [("write", 0, 1024)]),
    ("always-nohugepage", "always", 1024,
     [("madvise", 0, 1024, MADV_NOHUGEPAGE), ("write", 0, 1024)]),
    ("always-nohugepage-half", "always", 1024,
     [("madvise", 512, 512, MADV_NOHUGEPAGE), ("write", 0, 1024)]),
    ("never-hugepage", "never", 1024,
     [("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1024)]),
    ("hugepage-read-zero-page", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("read", 0, 1), ("write", 0, 1)]),
    ("hugepage-4k-then-fault", "madvise", 1024,
     [("write", 0, 1), ("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1024)]),
    ("munmap-4k-inside", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512), ("munmap", 100, 1)]),
    ("munmap-whole-pmd", "madvise", 1024,
     [("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1024), ("munmap", 0, 512)]),
    ("munmap-straddling", "madvise", 1024,
     [("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1024), ("munmap", 256, 512)]),
    ("mprotect-4k-inside", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512), ("mprotect", 10, 1, PROT_READ)]),
    ("mprotect-whole-pmd", "madvise", 1024,
     [("madvise", 0, 1024, MADV_HUGEPAGE), ("write", 0, 1024), ("mprotect", 0, 512, PROT_READ)]),
    ("dontneed-4k-inside", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512), ("madvise", 0, 16, MADV_DONTNEED)]),
    ("dontneed-whole-pmd", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512), ("madvise", 0, 512, MADV_DONTNEED)]),
    ("nohugepage-after-fault", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512), ("madvise", 0, 512, MADV_NOHUGEPAGE)]),
    ("mremap-move-whole-pmd", "madvise", 2048,
     [("munmap", 1024, 1024), ("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512),
      ("mremap_move", 0, 512, 1024)]),
    ("mremap-move-part", "madvise", 2048,
     [("munmap", 1024, 1024), ("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512),
      ("mremap_move", 0, 256, 1024)]),
    ("fork-child-writes", "madvise", 512,
     [("madvise", 0, 512, MADV_HUGEPAGE), ("write", 0, 512), ("fork_write", 5, 1)]),
]


CHILD_SPAN = 512 * PAGE


def run_step(base, step):
    op = step[0]
    off, n = step[1] * PAGE, step[2] * PAGE
    if op == "madvise":
        check(libc.madvise(base + off, n, step[3]), "madvise")
    elif op == "write":
        touch(base + off, n, True)
    elif op == "read":
        touch(base + off, n, False)
    elif op == "munmap":
        check(libc.munmap(base + off, n), "munmap")
    elif op == "mprotect":
        check(libc.mprotect(base + off, n, step[3]), "mprotect")
    elif op == "mremap_move":
        check(libc.mremap(base + off, n, n, MREMAP_MAYMOVE | MREMAP_FIXED,
                          base + step[3] * PAGE), "mremap")
    elif op == "fork_write":
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            before = vmstat()
            touch(base + off, n, True)
            after = vmstat()
            child = smaps(base, base + CHILD_SPAN)
            child["vmstat"] = {k: after[k] - before[k] for k in THP_KEYS}
            os.write(w, json.dumps(child).encode())
            os._exit(0)
        os.close(w)
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.waitpid(pid, 0)
        return json.loads(data)
    return None


def settings():
    out = {}
    for name in ("enabled", "defrag", "use_zero_page", "hugepages-2048kB/enabled"):
        try:
            with open(f"{SYS}/{name}") as f:
                out[name] = f.read().strip()
        except OSError:
            pass
    for name in ("pages_to_scan", "scan_sleep_millisecs", "alloc_sleep_millisecs",
                 "max_ptes_none", "max_ptes_swap", "max_ptes_shared", "defrag"):
        with open(f"{SYS}/khugepaged/{name}") as f:
            out[f"khugepaged/{name}"] = f.read().strip()
    return out


def set_enabled(mode):
    with open(f"{SYS}/enabled", "w") as f:
        f.write(mode)


def main():
    saved = open(f"{SYS}/enabled").read().split("[")[1].split("]")[0]
    result = {"kernel": platform.release(), "settings_found": settings(), "cases": []}
    try:
        for name, mode, npages, steps in CASES:
            set_enabled(mode)
            size = npages * PAGE
            span = size
            base = aligned_map(size)
            log = []
            for step in steps:
                before = vmstat()
                child = run_step(base, step)
                after = vmstat()
                rec = {"step": list(step), "vmstat": {k: after[k] - before[k] for k in THP_KEYS
                                                      if after[k] != before[k]}}
                rec.update(smaps(base, base + span))
                if child is not None:
                    rec["child"] = child
                log.append(rec)
            libc.munmap(base, span)
            result["cases"].append({"name": name, "enabled": mode, "pages": npages,
                                    "steps": log})
    finally:
        set_enabled(saved)
    result["restored_enabled"] = saved
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                       sys.argv[1] if len(sys.argv) > 1 else "thp.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(out)


if __name__ == "__main__":
    main()
