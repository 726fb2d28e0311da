"""/proc/PID/cgroup (6.1 proc_cgroup_show) and the cgroup hierarchy's /proc/mounts line
(show_vfsmnt with cgroup1_show_options / cgroup_show_options), against this machine's own
files (tests/data/proc_cgroup: measure_proc_cgroup.py; a cgroup v1 host whose init mounts
without nosuid,nodev,noexec, with nine v1 hierarchies and the hybrid cgroup2).

proc_cgroup_show prints one "hierarchy-id:controllers:path" line per mounted hierarchy:
the default (v2) hierarchy has id 0 and no controller list; a v1 hierarchy gets the next
id in mount order (idr_alloc_cyclic from 1) and lists its subsystems. The guest mounts one
hierarchy: v1's memory controller (the first and only v1 hierarchy: id 1) or cgroup2 (as
Debian 12's systemd: nosuid,nodev,noexec and nsdelegate,memory_recursiveprot)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from guestkernel.kernel import Kernel

DATA = json.loads((Path(__file__).parent.parent / "data" / "proc_cgroup" / "proc_cgroup.json").read_text())
SYSTEMD_FLAGS = {"nosuid", "nodev", "noexec"}


def real_memory_line() -> str:
    return next(ln for ln in DATA["proc_self_cgroup"] if re.fullmatch(r"\d+:memory:/.*", ln))


def test_v1_proc_pid_cgroup_has_the_memory_hierarchys_line():
    """v1: "1:memory:/path" — the recorded memory line's form (id:memory:absolute path),
    with id 1 as the guest's only v1 hierarchy; a task's cgroup path as it moves; the
    root is "/"."""
    k = Kernel(memory="64MiB", cgroup_version=1)
    t = k.spawn("t")
    assert k.procfs.read(f"/proc/{t.pid}/cgroup") == "1:memory:/\n"
    k.cgroup.mkdir("/sys/fs/cgroup/memory/a")
    k.cgroup.mkdir("/sys/fs/cgroup/memory/a/b")
    k.cgroup.attach(t, "/sys/fs/cgroup/memory/a/b")
    got = k.procfs.read(f"/proc/{t.pid}/cgroup")
    assert got == "1:memory:/a/b\n"
    real_id, real_ctl, real_path = real_memory_line().split(":", 2)
    gid, gctl, gpath = got.rstrip("\n").split(":", 2)
    assert gctl == real_ctl == "memory"
    assert real_path.startswith("/") and gpath.startswith("/")
    assert int(real_id) >= 1 and int(gid) == 1


def test_v2_proc_pid_cgroup_is_the_default_hierarchys_line():
    """v2: "0::/path" (the recorded 0:: line's form); " (deleted)" once the cgroup of
    an exited (zombie) task is removed (cgroup_on_dfl && cgroup_is_dead)."""
    k = Kernel(memory="64MiB", cgroup_version=2)
    parent = k.spawn("p")
    t = k.tasks[parent.fork()]
    assert k.procfs.read(f"/proc/{t.pid}/cgroup") == "0::/\n"
    assert "0::/" in DATA["proc_self_cgroup"]
    k.cgroup.mkdir("/sys/fs/cgroup/a")
    k.cgroup.attach(t, "/sys/fs/cgroup/a")
    assert k.procfs.read(f"/proc/{t.pid}/cgroup") == "0::/a\n"
    t.exit(0)
    assert t.state == "zombie"  # not reaped: its parent has not waited
    k.cgroup.rmdir("/sys/fs/cgroup/a")
    assert k.procfs.read(f"/proc/{t.pid}/cgroup") == "0::/a (deleted)\n"


def test_proc_mounts_lists_the_cgroup_mount():
    """The hierarchy's line in /proc/mounts: v1 "cgroup /sys/fs/cgroup/memory cgroup
    ...,memory 0 0" — the recorded line's fields, its options with systemd's
    nosuid,nodev,noexec added; v2 "cgroup2 /sys/fs/cgroup cgroup2
    rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0" (the recorded
    cgroup2 line's source, type and leading options)."""
    k1 = Kernel(memory="64MiB", cgroup_version=1)
    lines = [ln for ln in k1.procfs.read("/proc/mounts").splitlines() if "cgroup" in ln]
    assert lines == ["cgroup /sys/fs/cgroup/memory cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0"]
    real = next(ln for ln in DATA["proc_mounts_cgroup"] if ln.split()[1] == "/sys/fs/cgroup/memory")
    r, g = real.split(), lines[0].split()
    assert (g[0], g[1], g[2], g[4], g[5]) == (r[0], r[1], r[2], r[4], r[5])
    assert [o for o in g[3].split(",") if o not in SYSTEMD_FLAGS] == r[3].split(",")
    k2 = Kernel(memory="64MiB", cgroup_version=2)
    lines = [ln for ln in k2.procfs.read("/proc/mounts").splitlines() if "cgroup" in ln]
    assert lines == ["cgroup2 /sys/fs/cgroup cgroup2 "
                     "rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0"]
    real = next(ln for ln in DATA["proc_mounts_cgroup"] if ln.split()[2] == "cgroup2").split()
    g = lines[0].split()
    assert (g[0], g[2], g[4], g[5]) == (real[0], real[2], real[4], real[5])
    assert [o for o in g[3].split(",") if o not in SYSTEMD_FLAGS][:2] == real[3].split(",")


def test_a_2_6_guest_has_no_cgroup_files():
    """2.6-era guests have no memory cgroups: no /proc/PID/cgroup, no cgroup mount."""
    k = Kernel(memory="64MiB", era="2.6")
    t = k.spawn("t")
    assert not k.procfs.exists(f"/proc/{t.pid}/cgroup")
    assert "cgroup" not in k.procfs.read("/proc/mounts")
