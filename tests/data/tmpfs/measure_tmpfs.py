"""Record how this machine's kernel treats tmpfs mounts' huge=, size= and nr_inodes=
(mm/shmem.c: shmem_parse_one, shmem_fill_super, shmem_is_huge, shmem_inode_acct_block,
shmem_reserve_inode, shmem_reconfigure). Writes tmpfs.json beside this script;
tests/guestkernel/test_tmpfs_mount.py runs the same steps in a guest and compares.

Each case mounts a fresh tmpfs on MNT with its options, runs its steps, and records after
each step the /proc/meminfo deltas (ShmemHugePages, ShmemPmdMapped, Shmem; kB, against
the value before the mount: nothing else on this machine makes shmem huge pages, its
shmem_enabled being never), statvfs of the mount (f_blocks, f_bfree, f_files, f_ffree),
the bytes each write returned or the errno it failed with, and the mount's /proc/mounts
line; then unmounts.

Only cases whose outcome 6.1's rules and this machine's newer kernel agree on are kept
(within_size: 6.1 reads i_size only, 6.18 also the write's end, so a single write that
extends the file is left out; writes here are 1 MiB each, whose end never reaches a
whole 2 MiB beyond i_size's 2 MiB boundary).

Usage (root):  python3 measure_tmpfs.py [out.json]
"""

import errno
import json
import mmap
import os
import platform
import subprocess
import sys

MiB = 1 << 20
MNT = "/tmp/hvsim-tmpfs-measure"
KEYS = ("ShmemHugePages", "ShmemPmdMapped", "Shmem")


def meminfo() -> dict:
    out = {}
    with open("/proc/meminfo") as fh:
        for ln in fh:
            k, v = ln.split(":")
            if k in KEYS:
                out[k] = int(v.split()[0])
    return out


def statvfs() -> dict:
    s = os.statvfs(MNT)
    return {"f_blocks": s.f_blocks, "f_bfree": s.f_bfree, "f_files": s.f_files, "f_ffree": s.f_ffree}


def mount_line() -> str:
    with open("/proc/mounts") as fh:
        for ln in fh:
            if ln.split()[1] == MNT:
                return ln.strip()
    return ""


def write_mib(path: str, mib: int, truncate: int = 0) -> list:
    """write(2) `mib` 1 MiB chunks of 0x5a to a new file (after ftruncate to `truncate`
    bytes if given); each chunk's result: bytes written or -errno."""
    res = []
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        if truncate:
            os.ftruncate(fd, truncate)
        buf = b"\x5a" * MiB
        for _ in range(mib):
            try:
                res.append(os.write(fd, buf))
            except OSError as exc:
                res.append(-exc.errno)
    finally:
        os.close(fd)
    return res


def touch_mapped(path: str, size: int, advise: bool) -> None:
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    if advise:
        m.madvise(mmap.MADV_HUGEPAGE)
    for off in range(0, size, 4096):
        m[off] = 1
    case_state["mapped"] = m  # kept mapped for the record (ShmemPmdMapped)
    os.close(fd)


case_state: dict = {}


def record(base: dict, note: str, result=None) -> dict:
    now = meminfo()
    return {"step": note, "result": result, **{k: now[k] - base[k] for k in KEYS}, **statvfs()}


def create_files(n: int) -> list:
    out = []
    for i in range(n):
        try:
            fd = os.open(f"{MNT}/f{i}", os.O_CREAT | os.O_RDWR, 0o644)
            os.close(fd)
            out.append(0)
        except OSError as exc:
            out.append(-exc.errno)
    return out


def remount(opts: str) -> int:
    r = subprocess.run(["mount", "-o", "remount," + opts, MNT], capture_output=True)
    return 0 if r.returncode == 0 else -errno.EINVAL


CASES = {
    "always-4m": ("size=16m,huge=always", [("write", "a", 4)]),
    "never-4m": ("size=16m", [("write", "a", 4)]),
    "within_size-truncated": ("size=16m,huge=within_size", [("write_trunc", "a", 4, 4 * MiB)]),
    "within_size-growing": ("size=16m,huge=within_size", [("write", "a", 4)]),
    "advise-write": ("size=16m,huge=advise", [("write", "a", 4)]),
    "advise-madvised-mmap": ("size=16m,huge=advise", [("mmap", "a", 4 * MiB, True)]),
    "always-size3m": ("size=3m,huge=always", [("write", "a", 4)]),
    "never-size3m": ("size=3m", [("write", "a", 4)]),
    "always-size4m-shrink": ("size=4m,huge=always", [("write", "a", 1), ("write", "b", 3)]),
    "nr_inodes3": ("size=16m,nr_inodes=3", [("create", 3)]),
    "remount-huge": ("size=16m", [("write", "a", 2), ("remount", "huge=always"), ("write", "b", 2),
                                  ("remount", "size=1m"), ("remount", "size=8m")]),
}


def run_case(opts: str, steps: list) -> dict:
    os.makedirs(MNT, exist_ok=True)
    base = meminfo()
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", MNT], check=True)
    out = {"options": opts, "mounts": mount_line(), "steps": [record(base, "mounted")]}
    try:
        for st in steps:
            kind = st[0]
            if kind == "write":
                r = write_mib(f"{MNT}/{st[1]}", st[2])
            elif kind == "write_trunc":
                r = write_mib(f"{MNT}/{st[1]}", st[2], st[3])
            elif kind == "mmap":
                touch_mapped(f"{MNT}/{st[1]}", st[2], st[3])
                r = None
            elif kind == "create":
                r = create_files(st[1])
            elif kind == "remount":
                r = remount(st[1])
            out["steps"].append(record(base, " ".join(str(x) for x in st), r))
        out["mounts_after"] = mount_line()
    finally:
        m = case_state.pop("mapped", None)
        if m is not None:
            m.close()
        subprocess.run(["umount", MNT], check=True)
    return out


def main() -> None:
    out_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "tmpfs.json")
    with open("/sys/kernel/mm/transparent_hugepage/shmem_enabled") as fh:
        shmem_enabled = fh.read().strip()
    data = {"kernel": platform.release(), "shmem_enabled": shmem_enabled,
            "cases": {name: run_case(opts, steps) for name, (opts, steps) in CASES.items()}}
    with open(out_path, "w") as fh:
        json.dump(data, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
