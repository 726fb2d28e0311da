"""The dentry and inode caches and their shrinker (fs/dcache.c, fs/inode.c, fs/super.c)."""

import json
from pathlib import Path

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.gfp import GFP_KERNEL, GFP_NOFS
from guestkernel.kernel import Kernel
from guestkernel.shrinker import SHRINK_STOP, ShrinkControl

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "dcache" / "dcache_growth.json"


def boot(memory="128MiB", swap=0):
    k = Kernel(KernelConfig(memory=memory, swap=swap), name="g")
    return k, k.spawn("app")


def state(k):
    d = [int(x) for x in k.procfs.read("/proc/sys/fs/dentry-state").split()]
    i = [int(x) for x in k.procfs.read("/proc/sys/fs/inode-state").split()]
    return {"nr_dentry": d[0], "nr_unused": d[1], "nr_negative": d[4], "nr_inodes": i[0],
            "inodes_unused": i[1], "slab": k.vmstat["nr_slab_reclaimable"]}


def delta(a, b):
    return {key: b[key] - a[key] for key in a}


def create_close(t, n, prefix="/d/f"):
    for i in range(n):
        t.close(t.open(f"{prefix}{i}", U.O_CREAT | U.O_WRONLY))


def test_file_operations_grow_the_caches_as_this_machine_s_kernel_does():
    """Measured here (tests/data/dcache/record_dcache.py, ext4, Linux 6.x): creating and
    closing N files in a new directory adds N dentries, all unused, and N inodes; N
    lookups of missing names add N negative dentries, unused, and no inode. hvsim follows
    the rule exactly; the measurement agrees within the noise of the other processes."""
    rec = json.loads(FIXTURE.read_text())
    n = rec["n"]
    s = rec["steps"]
    m_create = {k: s["after_create_close"]["dentry_state"][k] - s["before"]["dentry_state"][k]
                for k in ("nr_dentry", "nr_unused", "nr_negative")}
    m_create["nr_inodes"] = (s["after_create_close"]["ext4_inode_cache"]["active_objs"]
                             - s["before"]["ext4_inode_cache"]["active_objs"])
    m_missing = {k: s["after_missing_lookups"]["dentry_state"][k]
                 - s["after_create_close"]["dentry_state"][k]
                 for k in ("nr_dentry", "nr_unused", "nr_negative")}
    m_missing["nr_inodes"] = (s["after_missing_lookups"]["ext4_inode_cache"]["active_objs"]
                              - s["after_create_close"]["ext4_inode_cache"]["active_objs"])
    # the measurement itself: N of each, give or take the machine's other activity
    for key in ("nr_dentry", "nr_unused", "nr_inodes"):
        assert abs(m_create[key] - n) <= 0.15 * n, (key, m_create)
    for key in ("nr_dentry", "nr_unused", "nr_negative"):
        assert abs(m_missing[key] - n) <= 0.15 * n, (key, m_missing)
    assert m_missing["nr_inodes"] <= 0.05 * n and m_create["nr_negative"] <= 0.05 * n

    k, t = boot()
    t.close(t.open("/d/warm", U.O_CREAT | U.O_WRONLY))  # the directory's own dentry
    s0 = state(k)
    create_close(t, n)
    s1 = state(k)
    for i in range(n):
        try:
            t.stat(f"/d/missing{i}")
        except OSError as e:
            assert e.errno == U.ENOENT
    s2 = state(k)
    d1, d2 = delta(s0, s1), delta(s1, s2)
    assert (d1["nr_dentry"], d1["nr_unused"], d1["nr_negative"], d1["nr_inodes"]) == (n, n, 0, n)
    assert (d2["nr_dentry"], d2["nr_unused"], d2["nr_negative"], d2["nr_inodes"]) == (n, n, n, 0)
    # nr_slab_reclaimable moves with them: the measured pages (SLUB here, SLAB in hvsim,
    # plus the noise) within 25 %
    measured = s["after_create_close"]["nr_slab_reclaimable"] - s["before"]["nr_slab_reclaimable"]
    assert d1["slab"] > 0 and abs(d1["slab"] - measured) <= 0.25 * measured
    measured = (s["after_missing_lookups"]["nr_slab_reclaimable"]
                - s["after_create_close"]["nr_slab_reclaimable"])
    assert d2["slab"] > 0 and abs(d2["slab"] - measured) <= 0.25 * measured


def test_an_open_file_pins_its_dentry_until_the_last_close():
    k, t = boot()
    fd = t.open("/d/a", U.O_CREAT | U.O_RDWR)
    s0 = state(k)
    d = k.dcache.hash["/d/a"]
    assert d.count == 1 and d not in k.dcache.dentry_lru
    t.close(fd)
    # dput: first time unused, onto the LRU without DCACHE_REFERENCED
    assert d.count == 0 and d in k.dcache.dentry_lru and not d.flags & 0x40
    assert state(k)["nr_unused"] == s0["nr_unused"] + 1
    t.close(t.open("/d/a"))  # used again: DCACHE_REFERENCED, still on the LRU
    assert d.flags & 0x40 and state(k)["nr_unused"] == s0["nr_unused"] + 1


def test_super_cache_scan_prunes_dentries_first_as_dentry_lru_isolate_says():
    """super_cache_scan splits nr_to_scan in proportion: dentries = mult_frac(128, 1000,
    1001) = 127, inodes = 0, each + 1. dentry_lru_isolate kills the 128 oldest unused,
    unreferenced dentries; their inodes go to the inode LRU with I_REFERENCED, and
    inode_lru_isolate rotates the one inode it walks."""
    k, t = boot()
    k.procfs.write("/proc/sys/vm/drop_caches", "2")  # boot's own (execve) dentries go
    create_close(t, 1000)
    dc = k.dcache
    assert len(dc.dentry_lru) == 1000 and len(dc.inode_lru) == 0
    sc = ShrinkControl(GFP_KERNEL)
    assert dc.count_objects(sc) == 1000  # vfs_cache_pressure 100
    oldest = list(dc.dentry_lru)[:128]
    s0 = state(k)
    sc.nr_to_scan = 128
    assert dc.scan_objects(sc) == 128
    s1 = state(k)
    assert delta(s0, s1)["nr_dentry"] == -128 and delta(s0, s1)["nr_unused"] == -128
    assert all(d.name not in dc.hash for d in oldest)
    assert s1["nr_inodes"] == s0["nr_inodes"] and s1["inodes_unused"] == 128
    assert all(ic.referenced for ic in dc.inode_lru) is False  # the walked one lost it
    assert sum(1 for ic in dc.inode_lru if not ic.referenced) == 1
    # without __GFP_FS the superblock shrinker does nothing
    nofs = ShrinkControl(GFP_NOFS)
    nofs.nr_to_scan = 128
    assert dc.scan_objects(nofs) == SHRINK_STOP


def test_referenced_dentries_get_another_pass():
    k, t = boot()
    k.procfs.write("/proc/sys/vm/drop_caches", "2")
    create_close(t, 10)
    create_close(t, 5)  # f0..f4 used again: DCACHE_REFERENCED
    dc = k.dcache
    n = dc.prune_dcache_sb(10)
    # walk of 10: f0..f4 rotate (flag cleared), f5..f9 killed
    assert n == 5
    assert sorted(d.name for d in dc.dentry_lru) == [f"/d/f{i}" for i in range(5)]
    assert dc.prune_dcache_sb(10) == 5 and not dc.dentry_lru


def test_drop_caches_2_frees_every_unused_dentry_and_inode():
    k, t = boot()
    create_close(t, 300)
    fd = t.open("/d/keep", U.O_CREAT | U.O_RDWR)
    for i in range(50):
        try:
            t.stat(f"/e/missing{i}")
        except OSError:
            pass
    slab0 = k.vmstat["nr_slab_reclaimable"]
    k.procfs.write("/proc/sys/vm/drop_caches", "2")
    s = state(k)
    # left: the root, /d (pinned by its open child) and /d/keep; their inodes
    assert s["nr_unused"] == 0 and s["nr_negative"] == 0 and s["nr_dentry"] == 3
    assert s["nr_inodes"] == 3 and s["inodes_unused"] == 0
    assert k.vmstat["slabs_scanned"] > 0 and s["slab"] <= slab0
    t.close(fd)


def test_unlink_makes_an_unused_dentry_negative_and_frees_the_inode_at_last_close():
    k, t = boot()
    t.close(t.open("/d/a", U.O_CREAT | U.O_RDWR))
    s0 = state(k)
    t.unlink("/d/a")
    s1 = state(k)
    assert k.dcache.hash["/d/a"].inode is None  # d_delete: negative
    assert delta(s0, s1)["nr_inodes"] == -1 and delta(s0, s1)["nr_negative"] == 1
    fd = t.open("/d/b", U.O_CREAT | U.O_RDWR)
    t.unlink("/d/b")  # in use: unhashed, killed at the last dput
    assert "/d/b" not in k.dcache.hash
    n0 = state(k)["nr_dentry"]
    t.close(fd)
    assert state(k)["nr_dentry"] == n0 - 1


def test_reclaim_shrinks_the_dentry_and_inode_caches():
    """Memory pressure: kswapd and direct reclaim call shrink_slab; the superblock
    shrinker frees dentries and inodes and nr_slab_reclaimable falls."""
    k, t = boot(memory="64MiB", swap="64MiB")
    create_close(t, 12000)
    before = state(k)
    assert before["slab"] > 4000  # about 4000 inode + 570 dentry slab pages
    a = t.mmap(0, 48 << 20, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 48 << 20, True)
    after = state(k)
    assert after["nr_dentry"] < before["nr_dentry"] and after["nr_inodes"] < before["nr_inodes"]
    assert after["slab"] < before["slab"] and k.vmstat["slabs_scanned"] > 0
