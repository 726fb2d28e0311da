"""tmpfs mounts (guestkernel/mount.py; mm/shmem.c 6.1): mount(2) options (shmem_parse_one),
the super block's defaults (shmem_fill_super), huge= read by shmem_is_huge, size= by
shmem_inode_acct_block, nr_inodes= by shmem_reserve_inode, remount (shmem_reconfigure),
/proc/mounts (shmem_show_options), statfs (shmem_statfs), umount.

The fixture tests/data/tmpfs/tmpfs.json holds the same steps run on this machine's kernel
(measure_tmpfs.py beside it): ShmemHugePages / ShmemPmdMapped, statvfs and what each
write(2) returned are compared exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.mount import memparse, parse_tmpfs_options

MiB = 1 << 20
P = 4096
MNT = "/tmp/hvsim-tmpfs-measure"
FIXTURE = json.loads((Path(__file__).parents[1] / "data" / "tmpfs" / "tmpfs.json").read_text())


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    return Kernel(KernelConfig(**kw))


def meminfo(k) -> dict:
    return {ln.split(":")[0]: int(ln.split()[1]) for ln in k.procfs.read("/proc/meminfo").splitlines()}


def root(k):
    t = k.spawn("t")
    t.make_root()
    return t


# --- option parsing (shmem_parse_one, memparse) --------------------------------------------------
def test_memparse_and_size_options_as_shmem_parse_one_reads_them():
    assert memparse("16m") == (16 << 20, "")
    assert memparse("0x10K") == (16 << 10, "")
    assert memparse("1g5") == (1 << 30, "5")
    # size=: bytes rounded up to pages (DIV_ROUND_UP), a percentage of totalram_pages
    assert parse_tmpfs_options("size=1", 1000).blocks == 1
    assert parse_tmpfs_options("size=3m", 1000).blocks == 768
    assert parse_tmpfs_options("size=50%", 1000).blocks == 500
    assert parse_tmpfs_options("nr_blocks=7,nr_inodes=2k", 1000).inodes == 2048
    for bad, msg in (("size=12q", "Bad value for 'size'"), ("huge=sometimes", "Bad value for 'huge'"),
                     ("nr_inodes=x", "Bad value for 'nr_inodes'"), ("color=red", "Unknown parameter 'color'")):
        with pytest.raises(ValueError, match=msg):
            parse_tmpfs_options(bad, 1000)
    # huge= other than never needs THP (a 2.6-era guest has none): unsupported_parameter
    with pytest.raises(ValueError, match="Unsupported parameter 'huge'"):
        parse_tmpfs_options("huge=always", 1000, thp=False)
    assert parse_tmpfs_options("huge=never", 1000, thp=False).huge == "never"


def test_dev_shm_is_mounted_at_boot_as_systemd_mounts_it():
    # mount_setup: tmpfs on /dev/shm, MS_NOSUID|MS_NODEV|MS_STRICTATIME, mode=01777;
    # shmem_fill_super's defaults: max_blocks = totalram_pages / 2, max_inodes =
    # min(totalram - totalhigh, totalram / 2), huge never; the root takes an inode.
    # /proc/mounts: the defaults are not shown (shmem_show_options), nor strictatime;
    # mount_setup's cgroup2 mount follows it (a 6.x guest: cgroup.py)
    k = boot()
    assert k.procfs.read("/proc/mounts") == (
        "tmpfs /dev/shm tmpfs rw,nosuid,nodev,inode64 0 0\n"
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n")
    t = root(k)
    total = k.page_alloc.totalram_pages()
    st = t.statfs("/dev/shm")
    assert st["f_blocks"] == total // 2 and st["f_bfree"] == total // 2
    assert st["f_files"] == total // 2 and st["f_ffree"] == total // 2 - 1
    fd = t.open("/dev/shm/seg", U.O_CREAT | U.O_RDWR)
    inode = t.files[fd].inode
    assert inode.shmem and inode.sb is k.mounts.lookup("/dev/shm").sb
    assert boot(tmpfs_mounts=[]).procfs.read("/proc/mounts") == (  # no tmpfs: cgroup2 alone
        "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n")


def test_tmpfs_mounts_from_the_config_and_a_bad_one_named():
    from experiments.config import ConfigError, config_from_dict
    from experiments.scenario import kernel_config

    cfg = config_from_dict({"vm": [{"name": "a", "kernel": {
        "tmpfs_mounts": ["/dev/shm nosuid,nodev", "/mnt/huge size=64m,huge=always"]}}]})
    kc = kernel_config(cfg.vm[0])
    assert kc.tmpfs_mounts == ["/dev/shm nosuid,nodev", "/mnt/huge size=64m,huge=always"]
    k = Kernel(KernelConfig(memory="256MiB", tmpfs_mounts=kc.tmpfs_mounts))
    assert k.procfs.read("/proc/mounts").splitlines()[1] == (
        "tmpfs /mnt/huge tmpfs rw,relatime,size=65536k,inode64,huge=always 0 0")
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"vm": [{"name": "a", "kernel": {"tmpfs_mounts": ["/x size=3q"]}}]})
    msg = str(exc.value)
    assert msg == "vm[0].kernel.tmpfs_mounts: /x: Bad value for 'size'"
    with pytest.raises(ConfigError, match="Unsupported parameter 'huge'"):
        config_from_dict({"vm": [{"name": "a", "kernel": {"era": "2.6", "tmpfs_mounts": ["/x huge=advise"]}}]})


# --- the real kernel's steps, replayed -----------------------------------------------------------
def _write_mib(t, path: str, mib: int, truncate: int = 0) -> list:
    fd = t.open(path, U.O_CREAT | U.O_RDWR)
    if truncate:
        t.ftruncate(fd, truncate)
    buf = t.mmap(0, MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, MiB, True, b"\x5a" * P)
    res = []
    for _ in range(mib):
        try:
            res.append(t.write(fd, buf, MiB))
        except OSError as exc:
            res.append(-exc.errno)
    t.munmap(buf, MiB)
    t.close(fd)
    return res


def _run_case(opts: str, steps: list) -> list:
    k = boot()
    t = root(k)
    base = meminfo(k)
    t.mount("tmpfs", MNT, "tmpfs", 0, opts)
    out = []

    def record(result):
        m = meminfo(k)
        st = t.statfs(MNT)
        out.append({"result": result, "ShmemHugePages": m["ShmemHugePages"] - base["ShmemHugePages"],
                    "ShmemPmdMapped": m["ShmemPmdMapped"] - base["ShmemPmdMapped"],
                    "f_blocks": st["f_blocks"], "f_bfree": st["f_bfree"],
                    "inodes_used": st["f_files"] - st["f_ffree"]})

    record(None)
    for st in steps:
        kind = st[0]
        if kind == "write":
            record(_write_mib(t, f"{MNT}/{st[1]}", st[2]))
        elif kind == "write_trunc":
            record(_write_mib(t, f"{MNT}/{st[1]}", st[2], st[3]))
        elif kind == "mmap":
            fd = t.open(f"{MNT}/{st[1]}", U.O_CREAT | U.O_RDWR)
            t.ftruncate(fd, st[2])
            a = t.mmap(0, st[2], U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED, fd, 0)
            if st[3]:
                t.madvise(a, st[2], U.MADV_HUGEPAGE)
            for off in range(0, st[2], P):
                t.access(a + off, True, b"\x01")
            record(None)
        elif kind == "create":
            res = []
            for i in range(st[1]):
                try:
                    t.close(t.open(f"{MNT}/f{i}", U.O_CREAT | U.O_RDWR))
                    res.append(0)
                except OSError as exc:
                    res.append(-exc.errno)
            record(res)
        elif kind == "remount":
            try:
                record(t.mount("tmpfs", MNT, "tmpfs", U.MS_REMOUNT, st[1]))
            except OSError as exc:
                record(-exc.errno)
    validate_pages(k)
    return out, k


# the steps measure_tmpfs.py ran (its CASES), by case name
STEPS = {
    "always-4m": [("write", "a", 4)],
    "never-4m": [("write", "a", 4)],
    "within_size-truncated": [("write_trunc", "a", 4, 4 * MiB)],
    "within_size-growing": [("write", "a", 4)],
    "advise-write": [("write", "a", 4)],
    "advise-madvised-mmap": [("mmap", "a", 4 * MiB, True)],
    "always-size3m": [("write", "a", 4)],
    "never-size3m": [("write", "a", 4)],
    "always-size4m-shrink": [("write", "a", 1), ("write", "b", 3)],
    "nr_inodes3": [("create", 3)],
    "remount-huge": [("write", "a", 2), ("remount", "huge=always"), ("write", "b", 2),
                     ("remount", "size=1m"), ("remount", "size=8m")],
}


@pytest.mark.parametrize("name", sorted(STEPS))
def test_tmpfs_case_matches_the_real_kernel(name):
    """shmem_is_huge by the mount's huge= (always: every write's folio; within_size: only
    inside i_size, so a truncated-first file is huge and a growing one is not; advise:
    MADV_HUGEPAGE mappings only, write(2) never), shmem_inode_acct_block (size=3m: one
    huge folio, then 4 KiB pages to 768, the 4th MiB ENOSPC; size=4m: a 1 MiB file's
    folio holds 2 MiB until a full mount splits it, shmem_unused_huge_shrink from
    shmem_get_folio_gfp's ENOSPC retry, and its pages past EOF free room), shmem_reserve_inode
    (nr_inodes=3: the root and two files), shmem_reconfigure (huge= switched on for new
    folios; a size below the use refused: EINVAL). Expected: this machine's kernel."""
    real = FIXTURE["cases"][name]
    assert real["options"] and len(real["steps"]) == len(STEPS[name]) + 1
    got, k = _run_case(real["options"], STEPS[name])
    for g, r in zip(got, real["steps"], strict=True):
        want = {"result": r["result"], "ShmemHugePages": r["ShmemHugePages"],
                "ShmemPmdMapped": r["ShmemPmdMapped"], "f_blocks": r["f_blocks"], "f_bfree": r["f_bfree"],
                "inodes_used": r["f_files"] - r["f_ffree"]}
        assert g == want, (name, r["step"])
    # /proc/mounts: the same options (this machine's kernel is built without
    # CONFIG_TMPFS_INODE64, Debian's with it: hvsim shows inode64)
    line = [ln for ln in k.procfs.read("/proc/mounts").splitlines() if MNT in ln][0]
    want_line = real.get("mounts_after", real["mounts"])
    assert line.replace(",inode64", "") == want_line


# --- rules from mm/shmem.c (6.1) -------------------------------------------------------------------
def test_shmem_enabled_deny_and_force_override_every_mounts_huge():
    # shmem_is_huge: SHMEM_HUGE_DENY refuses before the super block's huge is read,
    # SHMEM_HUGE_FORCE allows whatever it says
    D = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
    k = boot()
    t = root(k)
    t.mount("tmpfs", "/mnt/a", "tmpfs", 0, "huge=always")
    t.mount("tmpfs", "/mnt/n", "tmpfs", 0, "huge=never")
    k.procfs.write(D, "deny")
    assert _write_mib(t, "/mnt/a/f", 2) == [MiB, MiB] and meminfo(k)["ShmemHugePages"] == 0
    k.procfs.write(D, "force")
    assert _write_mib(t, "/mnt/n/f", 2) == [MiB, MiB] and meminfo(k)["ShmemHugePages"] == 2048
    k.procfs.write(D, "never")  # the internal mount never; /mnt/a's always still holds
    assert _write_mib(t, "/mnt/a/g", 2) == [MiB, MiB] and meminfo(k)["ShmemHugePages"] == 4096
    # a shared anonymous mapping is the internal mount's (shm_mnt): shmem_enabled never
    a = t.mmap(0, 4 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED | U.MAP_ANONYMOUS)
    t.access_range(a, 4 * MiB, True)
    assert meminfo(k)["ShmemHugePages"] == 4096
    validate_pages(k)


def test_a_fault_a_full_mount_cannot_back_gets_sigbus():
    # shmem_fault -> shmem_get_folio_gfp: -ENOSPC, vmf_error(-ENOSPC) = VM_FAULT_SIGBUS
    k = boot()
    t = root(k)
    t.mount("tmpfs", "/mnt/s", "tmpfs", 0, "size=1m")
    fd = t.open("/mnt/s/f", U.O_CREAT | U.O_RDWR)
    t.ftruncate(fd, 2 * MiB)
    a = t.mmap(0, 2 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED, fd, 0)
    for i in range(256):
        t.access(a + i * P, True, b"x")
    assert t.statfs("/mnt/s")["f_bfree"] == 0
    t.access(a + 256 * P, True, b"x")
    assert t.state != "running" and t.term_signal == U.SIGBUS


def test_tmpfs_blocks_and_commit_charge_follow_the_pages_and_the_inode_its_last_user():
    # tmpfs files are VM_NORESERVE: shmem_acct_block charges each block to Committed_AS
    # as it is allocated; a truncate gives blocks and charge back (shmem_undo_range ->
    # shmem_recalc_inode), the unlinked file's eviction the rest and its inode
    # (shmem_free_inode)
    k = boot()
    t = root(k)
    c0 = meminfo(k)["Committed_AS"]
    st0 = t.statfs("/dev/shm")
    assert _write_mib(t, "/dev/shm/f", 4) == [MiB] * 4
    st = t.statfs("/dev/shm")
    assert st0["f_bfree"] - st["f_bfree"] == 1024 and st0["f_ffree"] - st["f_ffree"] == 1
    assert meminfo(k)["Committed_AS"] - c0 == 4096
    fd = t.open("/dev/shm/f", U.O_RDWR)
    t.ftruncate(fd, MiB)
    assert st0["f_bfree"] - t.statfs("/dev/shm")["f_bfree"] == 256
    assert meminfo(k)["Committed_AS"] - c0 == 1024
    t.unlink("/dev/shm/f")  # still open: the pages stay
    assert st0["f_bfree"] - t.statfs("/dev/shm")["f_bfree"] == 256
    t.close(fd)
    assert t.statfs("/dev/shm") == st0 and meminfo(k)["Committed_AS"] == c0
    validate_pages(k)


def test_umount_is_busy_while_a_file_is_open_then_frees_and_uncovers():
    # umount: EBUSY while the mount is in use (an open file); then kill_litter_super drops
    # its files (pages freed); the disk's files under the mount point show again
    k = boot()
    t = root(k)
    t.close(t.open("/mnt/x/old", U.O_CREAT | U.O_RDWR))
    assert t.stat("/mnt/x/old") == 0  # (its dentry cached)
    shmem0 = meminfo(k)["Shmem"]
    t.mount("tmpfs", "/mnt/x", "tmpfs", 0, "size=8m")
    for call in (lambda: t.open("/mnt/x/old", U.O_RDWR), lambda: t.stat("/mnt/x/old")):
        with pytest.raises(OSError) as exc:
            call()
        assert exc.value.errno == U.ENOENT  # hidden under the mount (d_invalidate)
    assert _write_mib(t, "/mnt/x/new", 1) == [MiB]
    fd = t.open("/mnt/x/new", U.O_RDWR)
    assert meminfo(k)["Shmem"] - shmem0 == 1024
    with pytest.raises(OSError) as exc:
        t.umount("/mnt/x")
    assert exc.value.errno == U.EBUSY
    t.close(fd)
    new = k.fs.lookup("/mnt/x/new")
    assert new in k.dcache.inodes
    assert t.umount("/mnt/x") == 0
    assert meminfo(k)["Shmem"] == shmem0 and k.fs.lookup("/mnt/x/new") is None
    assert new not in k.dcache.inodes  # its dentry and struct inode freed
    with pytest.raises(OSError) as exc:
        t.stat("/mnt/x/new")
    assert exc.value.errno == U.ENOENT
    assert t.stat("/mnt/x/old") == 0
    t.close(t.open("/mnt/x/old", U.O_RDWR))
    with pytest.raises(OSError) as exc:
        t.umount("/mnt/x")
    assert exc.value.errno == U.EINVAL
    validate_pages(k)


def test_mount_needs_cap_sys_admin_and_tmpfs():
    k = boot()
    t = k.spawn("u")
    t.caps = set()
    with pytest.raises(OSError) as exc:
        t.mount("tmpfs", "/mnt/y", "tmpfs", 0, "")
    assert exc.value.errno == U.EPERM
    t = root(k)
    with pytest.raises(OSError) as exc:
        t.mount("/dev/vdb", "/mnt/y", "ext4", 0, "")
    assert exc.value.errno == U.ENODEV
    with pytest.raises(OSError) as exc:
        t.mount("tmpfs", "/mnt/y", "tmpfs", 0, "size=lots")
    assert exc.value.errno == U.EINVAL
    with pytest.raises(OSError) as exc:
        t.mount("tmpfs", "/mnt/y", "tmpfs", U.MS_REMOUNT, "size=1m")
    assert exc.value.errno == U.EINVAL  # nothing mounted there


def test_pages_on_swap_keep_their_blocks_until_truncated():
    # shmem_recalc_inode: blocks are freed only for pages gone from both the cache and
    # swap (freed = alloced - swapped - nrpages): swap-out (MADV_PAGEOUT ->
    # shmem_writepage) and swap-in leave used_blocks alone; the truncate frees the swap
    # entries' blocks (shmem_undo_range)
    k = boot(swap="64MiB")
    t = root(k)
    t.mount("tmpfs", "/mnt/s", "tmpfs", 0, "size=4m")
    fd = t.open("/mnt/s/f", U.O_CREAT | U.O_RDWR)
    t.ftruncate(fd, 2 * MiB)
    a = t.mmap(0, 2 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED, fd, 0)
    for i in range(512):
        t.access(a + i * P, True, (i + 1).to_bytes(4, "little"))
    assert t.statfs("/mnt/s")["f_bfree"] == 512
    t.madvise(a, 2 * MiB, U.MADV_PAGEOUT)
    inode = t.files[fd].inode
    assert inode.swapped == 512 and not inode.mapping.pages
    assert t.statfs("/mnt/s")["f_bfree"] == 512
    t.access(a + 7 * P, False)  # swapped in
    assert t.peek(a + 7 * P, 4) == (8).to_bytes(4, "little")
    assert t.statfs("/mnt/s")["f_bfree"] == 512
    t.munmap(a, 2 * MiB)
    t.ftruncate(fd, 0)
    assert t.statfs("/mnt/s")["f_bfree"] == 1024 and inode.swapped == 0
    validate_pages(k)


def test_noreserve_shmem_objects_charge_committed_as_block_by_block():
    # VM_NORESERVE shmem (6.1): memfd_create (shmem_file_setup(name, 0, VM_NORESERVE)), a
    # MAP_NORESERVE shared anonymous mapping (shmem_zero_setup with the VMA's flags) and
    # an SHM_NORESERVE segment are not charged for their size up front (shmem_acct_size);
    # each page is charged as it is allocated (shmem_acct_block) and uncharged as it goes
    k = boot()
    t = root(k)

    def committed():
        return meminfo(k)["Committed_AS"]

    c0 = committed()
    fd = t.memfd_create("m")
    t.ftruncate(fd, 4 * MiB)
    assert committed() == c0  # nothing up front
    a = t.mmap(0, 4 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED, fd, 0)
    t.access_range(a, MiB, True)
    assert committed() - c0 == 1024
    t.munmap(a, 4 * MiB)
    t.ftruncate(fd, 0)
    assert committed() == c0
    t.close(fd)
    b = t.mmap(0, 4 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED | U.MAP_ANONYMOUS | U.MAP_NORESERVE)
    assert committed() == c0
    t.access_range(b, 2 * MiB, True)
    assert committed() - c0 == 2048
    t.munmap(b, 4 * MiB)  # the last user: the object and its pages go
    assert committed() == c0
    sid = t.shmget(U.IPC_PRIVATE, 4 * MiB, U.IPC_CREAT | U.SHM_NORESERVE | 0o600)
    s = t.shmat(sid, 0)
    assert committed() == c0
    t.access_range(s, 3 * MiB, True)
    assert committed() - c0 == 3072
    t.shmdt(s)
    t.shmctl(sid, U.IPC_RMID)
    assert committed() == c0
    # without NORESERVE the size is charged at once and the pages add nothing
    c = t.mmap(0, 4 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_SHARED | U.MAP_ANONYMOUS)
    t.access_range(c, 2 * MiB, True)
    assert committed() - c0 == 4096
    validate_pages(k)
