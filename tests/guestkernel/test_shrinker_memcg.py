"""Memcg-aware shrinkers (6.1 mm/vmscan.c shrink_slab / shrink_slab_memcg, mm/list_lru.c,
fs/super.c's SHRINKER_MEMCG_AWARE superblock shrinker): a dentry or inode goes on the
list_lru of the memcg its slab object is charged to; shrink_slab for a child memcg runs
only the memcg-aware shrinkers set in its shrinker_info map, on its lists, with its own
nr_deferred; rmdir splices its lists at the head of the parent's.

Expected counts are do_shrink_slab's (delta = (freeable >> priority) * 4 / seeks,
total_scan = min(nr_deferred >> priority + delta, 2 * freeable), batches of the
superblock shrinker's 1024 while total_scan >= 1024 or >= freeable) and
super_cache_scan's split (mult_frac(nr_to_scan, dentries, total + 1) + 1 each).
"""

from __future__ import annotations

from guestkernel import uapi as U
from guestkernel.gfp import GFP_KERNEL
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import mult_frac
from guestkernel.shrinker import SHRINK_EMPTY, SHRINKER_MEMCG_AWARE, ShrinkControl, Shrinker
from guestkernel.vmscan import ScanControl


def boot():
    """A 6.x guest with cgroup v2, a task `t` in the child memcg /a and a task `r` in the
    root; boot's own unused dentries dropped."""
    k = Kernel(memory="128MiB", swap="0", cgroup_version=2, cpus=1)
    cg = k.cgroup
    path = f"{cg.mount_point}/a"
    cg.mkdir(path)
    t = k.spawn("t")
    r = k.spawn("r")
    cg.attach(t, path)
    k.procfs.write("/proc/sys/vm/drop_caches", "2")
    return k, cg.lookup(path), t, r, path


def create_close(t, n, prefix):
    for i in range(n):
        t.close(t.open(f"{prefix}{i}", U.O_CREAT | U.O_WRONLY))


def names(lst):
    return [d.name for d in lst]


def count(k, memcg):
    return k.dcache.count_objects(ShrinkControl(GFP_KERNEL, 0, False, memcg))


def test_list_lru_add_puts_each_dentry_on_the_list_of_its_objects_memcg():
    """list_lru_add (list_lru_from_kmem): the child's dentries on its own list, the
    root's on the root's; set_shrinker_bit marks the child's map with the superblock
    shrinker's id; super_cache_count counts sc->memcg's lists only; dentry-state's
    nr_unused counts every list."""
    k, m, t, r, _ = boot()
    dc = k.dcache
    assert dc.d_lru.count_one(m) == 0 and k.shrinkers.info.get(m) is None
    create_close(r, 500, "/r/f")
    create_close(t, 1000, "/a/f")
    assert names(dc.dentry_lru) == [f"/r/f{i}" for i in range(500)]
    assert names(dc.d_lru.list_of(m)) == [f"/a/f{i}" for i in range(1000)]
    assert all(d.lru is dc.d_lru.list_of(m) for d in dc.d_lru.list_of(m))
    assert dc.shrinker.flags & SHRINKER_MEMCG_AWARE and dc.shrinker.id >= 0
    assert k.shrinkers.info[m].map == {dc.shrinker.id}
    assert (count(k, m), count(k, k.memcgs.root), count(k, None)) == (1000, 500, 500)
    assert int(k.procfs.read("/proc/sys/fs/dentry-state").split()[1]) == 1500


def test_shrink_slab_memcg_scans_the_childs_dentries_and_defers_into_its_shrinker_info():
    """shrink_slab(GFP_KERNEL, 0, child, 0): freeable 1000, delta = 1000 * 4 / 2 = 2000,
    total_scan = min(2000, 2 * 1000) = 2000; one batch of 1024: dentries =
    mult_frac(1024, 1000, 1001) = 1022, inodes 0; prune_dcache_sb walks 1023 and kills
    the 1000; their inodes (and /a's) go on the child's inode list, prune_icache_sb walks
    1 (I_REFERENCED: rotated). total_scan 976 < 1024 and < 1000: done. nr_deferred =
    min(2000 - 1024, 2000) = 976 in the child's shrinker_info; the root's untouched."""
    k, m, t, r, _ = boot()
    dc = k.dcache
    create_close(r, 500, "/r/f")
    create_close(t, 1000, "/a/f")
    root_list = list(dc.dentry_lru)
    root_deferred = dc.shrinker.nr_deferred
    scanned0 = k.vmstat["slabs_scanned"]
    assert mult_frac(1024, 1000, 1001) == 1022
    freed = k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, m)
    assert freed == 1000 and k.vmstat["slabs_scanned"] - scanned0 == 1024
    assert dc.d_lru.count_one(m) == 0 and dc.i_lru.count_one(m) == 1001
    assert k.shrinkers.info[m].nr_deferred == {dc.shrinker.id: 976}
    assert list(dc.dentry_lru) == root_list and dc.shrinker.nr_deferred == root_deferred
    assert all(f"/r/f{i}" in dc.hash for i in range(500))
    assert not any(f"/a/f{i}" in dc.hash for i in range(1000))
    # the root's shrink_slab: its lists only (500 dentries: delta 1000 = 2 * freeable,
    # one call of 1000, dentries = mult_frac(1000, 500, 501) = 998, walk 999)
    k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, k.memcgs.root)
    assert len(dc.dentry_lru) == 0 and dc.i_lru.count_one(m) == 1001
    k.reclaim.validate()


def test_shrink_slab_memcg_runs_only_memcg_aware_shrinkers_and_clears_an_empty_bit():
    """A shrinker without SHRINKER_MEMCG_AWARE runs for the root only; a memcg-aware one
    gets the lowest free shrinker id. The child's bit is cleared when do_shrink_slab
    finds its lists empty (SHRINK_EMPTY twice) and set again by the next list_lru_add."""
    k, m, t, r, _ = boot()
    dc = k.dcache
    calls = []
    plain = Shrinker("plain", lambda sc: calls.append(sc.memcg) or SHRINK_EMPTY, lambda sc: 0)
    k.shrinkers.register_shrinker(plain)
    aware = Shrinker("aware", lambda sc: SHRINK_EMPTY, lambda sc: 0, flags=SHRINKER_MEMCG_AWARE)
    k.shrinkers.register_shrinker(aware)
    # idr_alloc from 0: the superblock shrinker is the guest's only memcg-aware one
    assert plain.id == -1 and [dc.shrinker.id, aware.id] == sorted(k.shrinkers.shrinker_idr) == [0, 1]
    create_close(t, 5, "/a/f")
    k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, m)
    assert calls == []
    k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, k.memcgs.root)
    assert calls == [k.memcgs.root]
    info = k.shrinkers.info[m]
    for _ in range(10):  # dentries, then the inodes (I_REFERENCED: a second pass)
        if not dc.d_lru.count_one(m) + dc.i_lru.count_one(m):
            break
        assert info.map == {dc.shrinker.id}
        k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, m)
    assert dc.d_lru.count_one(m) + dc.i_lru.count_one(m) == 0
    assert count(k, m) == SHRINK_EMPTY
    k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, m)
    assert info.map == set()
    create_close(t, 1, "/a/g")
    assert info.map == {dc.shrinker.id}
    k.shrinkers.unregister_shrinker(aware)
    assert aware.id == -1 and 1 not in k.shrinkers.shrinker_idr
    again = Shrinker("again", lambda sc: SHRINK_EMPTY, lambda sc: 0, flags=SHRINKER_MEMCG_AWARE)
    k.shrinkers.register_shrinker(again)
    assert again.id == 1  # the lowest free id again


def wrap_count(k):
    seen = []
    sh = k.dcache.shrinker
    inner = sh.count_objects

    def counting(sc):
        seen.append(sc.memcg)
        return inner(sc)

    sh.count_objects = counting
    return seen


def test_limit_reclaim_shrinks_the_cgroups_dentries_and_not_the_roots():
    """try_to_free_mem_cgroup_pages -> shrink_node_memcgs -> shrink_slab(gfp, nid, memcg,
    priority) for the target memcg: the superblock shrinker counts and scans the child's
    lists only; the root's dentries and nr_deferred stay as they were."""
    k, m, t, r, _ = boot()
    dc = k.dcache
    create_close(r, 500, "/r/f")
    create_close(t, 1000, "/a/f")
    root_list = list(dc.dentry_lru)
    root_deferred = dc.shrinker.nr_deferred
    seen = wrap_count(k)
    k.reclaim.try_to_free_mem_cgroup_pages(m, 32, GFP_KERNEL, 1)
    assert seen and all(s is m for s in seen)
    assert dc.d_lru.count_one(m) < 1000
    assert list(dc.dentry_lru) == root_list and dc.shrinker.nr_deferred == root_deferred
    k.reclaim.validate()


def test_global_reclaim_walks_each_memcgs_lists():
    """shrink_node_memcgs for global reclaim (no target): the root's pass runs every
    shrinker on the root's lists, then the child's shrink_slab_memcg on its own. At
    priority 0 each list goes whole: the root's 500 dentries (delta 1000 = 2 * freeable,
    one call of 1000: walk mult_frac(1000, 500, 501) + 1 = 999) and the child's 1000 (one
    batch of 1024: walk 1023)."""
    k, m, t, r, _ = boot()
    dc = k.dcache
    create_close(r, 500, "/r/f")
    create_close(t, 1000, "/a/f")
    seen = wrap_count(k)
    sc = ScanControl(32, GFP_KERNEL, False, 1, True)
    sc.priority = 0
    k.reclaim.shrink_node_memcgs(k.reclaim.lruvecs[0], sc)
    assert seen == [k.memcgs.root, m]
    assert len(dc.dentry_lru) == 0 and dc.d_lru.count_one(m) == 0
    assert dc.i_lru.count_one(m) == 1001 and k.shrinkers.info[m].nr_deferred == {dc.shrinker.id: 976}


def test_drop_caches_shrinks_every_memcgs_lists():
    """drop_slab_node: each round shrink_slab for every memcg from mem_cgroup_iter(NULL)."""
    k, m, t, r, _ = boot()
    create_close(r, 50, "/r/f")
    create_close(t, 70, "/a/f")
    k.procfs.write("/proc/sys/vm/drop_caches", "2")
    dc = k.dcache
    assert dc.d_lru.count() == 0 and dc.i_lru.count() == 0
    assert int(k.procfs.read("/proc/sys/fs/dentry-state").split()[1]) == 0


def test_rmdir_reparents_the_lists_and_the_deferred_scan():
    """mem_cgroup_css_offline: memcg_reparent_list_lrus splices the child's dentries at
    the head of the root's list (list_splice_init), reparent_shrinker_deferred adds its
    nr_deferred to the root's. 200 child dentries at priority 2: delta = (200 >> 2) * 4 /
    2 = 100 < 200 and < 1024: no scan, 100 deferred."""
    k, m, t, r, path = boot()
    dc = k.dcache
    create_close(r, 5, "/r/f")
    create_close(t, 200, "/a/f")
    k.shrinkers.shrink_slab(GFP_KERNEL, 0, 2, False, m)
    assert k.shrinkers.info[m].nr_deferred == {dc.shrinker.id: 100}
    root_deferred = dc.shrinker.nr_deferred
    k.cgroup.attach(t, k.cgroup.mount_point)
    k.cgroup.rmdir(path)
    assert names(dc.dentry_lru) == [f"/a/f{i}" for i in range(200)] + [f"/r/f{i}" for i in range(5)]
    assert all(d.lru is dc.dentry_lru for d in dc.dentry_lru)
    assert m not in dc.d_lru.memcg_lrus and m not in k.shrinkers.info
    assert dc.shrinker.nr_deferred == root_deferred + 100
    assert count(k, None) == 205
    assert k.shrinkers.shrink_slab(GFP_KERNEL, 0, 0, False, m) == 0  # offline: nothing
    k.procfs.write("/proc/sys/vm/drop_caches", "2")
    assert dc.d_lru.count() == 0
    k.reclaim.validate()
