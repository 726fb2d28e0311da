#!/usr/bin/env python3
"""Record how this machine's Linux dcache and icache grow with file operations.

Run as root on the machine (ext4 root file system), from anywhere:
    python3 tests/data/dcache/record_dcache.py > tests/data/dcache/dcache_growth.json

In a new directory it creates N files (open O_CREAT, close), then looks up N names that do
not exist (stat -> ENOENT), reading /proc/sys/fs/dentry-state (nr_dentry, nr_unused,
age_limit, want_pages, nr_negative), the ext4_inode_cache and dentry lines of
/proc/slabinfo and /proc/vmstat's nr_slab_reclaimable before and after each step.
Other processes run meanwhile, so the deltas carry some noise.
"""

import json
import os
import platform
import tempfile

N = 5000


def dentry_state():
    f = open("/proc/sys/fs/dentry-state").read().split()
    return {"nr_dentry": int(f[0]), "nr_unused": int(f[1]), "nr_negative": int(f[4])}


def slab(name):
    for line in open("/proc/slabinfo"):
        parts = line.split()
        if parts and parts[0] == name:
            return {"active_objs": int(parts[1]), "objsize": int(parts[3])}
    return None


def vmstat(key):
    for line in open("/proc/vmstat"):
        k, v = line.split()
        if k == key:
            return int(v)
    return None


def snap():
    return {"dentry_state": dentry_state(), "dentry": slab("dentry"),
            "ext4_inode_cache": slab("ext4_inode_cache"),
            "nr_slab_reclaimable": vmstat("nr_slab_reclaimable")}


def main():
    base = tempfile.mkdtemp(dir="/var/tmp", prefix="hvsim-dcache-")
    out = {"kernel": platform.release(), "n": N, "fs": "ext4", "steps": {}}
    os.sync()
    before = snap()
    for i in range(N):
        os.close(os.open(os.path.join(base, f"f{i}"), os.O_CREAT | os.O_WRONLY, 0o644))
    created = snap()
    for i in range(N):
        try:
            os.stat(os.path.join(base, f"missing{i}"))
        except FileNotFoundError:
            pass
    looked_up = snap()
    out["steps"] = {"before": before, "after_create_close": created, "after_missing_lookups": looked_up}
    for i in range(N):
        os.unlink(os.path.join(base, f"f{i}"))
    os.rmdir(base)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
