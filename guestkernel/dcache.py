"""The dentry and inode caches (fs/dcache.c, fs/inode.c) and their superblock shrinker
(fs/super.c super_cache_count / super_cache_scan), Linux 6.x.

Overview
--------
A path lookup (open, create, truncate, execve, stat, unlink) walks the path one
component at a time; a component not in the dentry hash gets a new dentry from the
"dentry" slab cache (192 bytes, measured on this machine's 6.x kernel), holding a
reference on its parent. A name that exists gets a positive dentry whose inode comes from
the file system's inode cache ("ext4_inode_cache", 1128 bytes, measured); a name that does
not exist gets a negative dentry. Both caches are SLAB_RECLAIM_ACCOUNT: their slab pages
count in nr_slab_reclaimable.

Reference counts:
- the caller of a lookup holds the final dentry (an open file until its last fput);
- dput: a dentry whose count reaches 0 stays cached (retain_dentry): put on the dentry LRU
  the first time, DCACHE_REFERENCED when it is already there (dget leaves it on the LRU:
  the LRU is pruned lazily);
- a positive dentry holds its inode; iput of the last reference puts the inode on the
  inode LRU with I_REFERENCED (__inode_add_lru(inode, true)), or frees it if the file was
  unlinked.

The superblock shrinker (seeks DEFAULT_SEEKS, batch 1024) counts the two LRUs scaled by
vfs_cache_pressure (vfs_pressure_ratio) and splits each scan between them in proportion
(mult_frac(nr_to_scan, dentries, total + 1), + 1 each), dentries first (they pin
inodes):
- prune_dcache_sb / dentry_lru_isolate: a dentry in use is taken off the LRU; a
  DCACHE_REFERENCED one loses the flag and rotates; any other is killed
  (shrink_dentry_list): its slab object freed, its inode iput, its parent's count dropped
  (a parent left unused is killed in the same pass, as __dput_to_list does);
- prune_icache_sb / inode_lru_isolate: an inode in use is taken off the LRU; an
  I_REFERENCED one loses the flag and rotates; one with page cache is not shrinkable
  (mapping_shrinkable, no CONFIG_HIGHMEM) — hvsim rotates it where Linux drops it from the
  LRU and requeues it when its last page goes; on i386 (CONFIG_HIGHMEM) its clean page
  cache is invalidated first (pginodesteal / kswapd_inodesteal); any other is freed.
Both count every item taken off the LRU as freed, as list_lru_walk does. A scan without
__GFP_FS, or while a lookup is in progress, returns SHRINK_STOP (trylock_super).

Memory cgroups (6.1): both LRUs are memcg-aware list_lrus (list_lru.py) and the shrinker
SHRINKER_MEMCG_AWARE | SHRINKER_NUMA_AWARE (alloc_super). A dentry or inode goes on the
list of the memcg its slab object is charged to (the root's if uncharged); count and scan
take sc.memcg's lists (list_lru_shrink_count / list_lru_shrink_walk); rmdir splices a
memcg's lists into its parent's.

/proc/sys/fs/dentry-state (nr_dentry nr_unused age_limit want_pages nr_negative dummy)
and /proc/sys/fs/inode-state (nr_inodes nr_free_inodes, then zeros) read the counts.
"""

from __future__ import annotations

from collections import OrderedDict

from . import gfp as G
from . import uapi as U
from .list_lru import ListLru
from .page_alloc import mult_frac
from .shrinker import DEFAULT_SEEKS, SHRINK_EMPTY, SHRINK_STOP, SHRINKER_MEMCG_AWARE, SHRINKER_NUMA_AWARE, Shrinker
from .slab import SLAB_ACCOUNT, SLAB_RECLAIM_ACCOUNT

DCACHE_REFERENCED = 0x40  # recently used: one more pass on the LRU
DCACHE_LRU_LIST = 0x80000  # on the dentry LRU
AGE_LIMIT = 45  # dentry-state's age_limit (seconds; unused by the kernel)

# object sizes (bytes): 6.x measured on this machine (/proc/slabinfo, Linux 6.18 x86_64,
# tests/data/dcache); the 2.6 i386 ones are approximations (not measured here)
CACHES = {
    "6.x": (("dentry", 192), ("ext4_inode_cache", 1128)),
    "2.6": (("dentry_cache", 132), ("ext3_inode_cache", 492)),
}


class Dentry:
    __slots__ = ("name", "parent", "inode", "count", "flags", "obj", "hashed", "lru")

    def __init__(self, name: str, parent, inode, obj) -> None:
        self.name = name  # the full path (the hash key)
        self.parent = parent
        self.inode = inode  # an Inode, a _Dir, or None for a negative dentry
        self.count = 0  # d_lockref.count
        self.flags = 0
        self.obj = obj  # slab object
        self.hashed = True
        self.lru = None  # the list_lru list it is on (its memcg's)

    def __repr__(self) -> str:
        kind = "negative" if self.inode is None else "positive"
        return f"<Dentry {self.name!r} {kind} count={self.count}>"


class _Dir:
    """A directory's inode (hvsim's file system has no directory objects of its own)."""

    __slots__ = ("path", "nlink", "mapping")

    def __init__(self, path: str) -> None:
        self.path = path
        self.nlink = 2
        self.mapping = None


class _ICache:
    """The in-memory struct inode of one file: reference count, I_REFERENCED, slab object."""

    __slots__ = ("inode", "count", "referenced", "obj", "on_lru", "lru")

    def __init__(self, inode, obj) -> None:
        self.inode = inode
        self.count = 0  # i_count
        self.referenced = False  # I_REFERENCED
        self.obj = obj
        self.on_lru = False
        self.lru = None  # the list_lru list it is on (its memcg's)


class Dcache:
    """One guest kernel's dentry and inode caches, with their superblock shrinker."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        (dname, dsize), (iname, isize) = CACHES.get(kernel.config.era, CACHES["6.x"])
        # 6.1: dentry (dcache_init) and the file systems' inode caches (ext4_inode_cache,
        # inode_cache) are SLAB_ACCOUNT too: charged to the memcg of the task that
        # looks the name up or creates the inode
        acct = SLAB_ACCOUNT if kernel.config.era == "6.x" else 0
        self.dentry_cache = kernel.kmem_cache_create(dname, dsize, 0, SLAB_RECLAIM_ACCOUNT | acct)
        self.inode_cache = kernel.kmem_cache_create(iname, isize, 0, SLAB_RECLAIM_ACCOUNT | acct)
        self.highmem = any(z.is_highmem for z in kernel.page_alloc.zones)  # CONFIG_HIGHMEM
        self.hash: dict[str, Dentry] = {}
        # sb->s_dentry_lru and s_inode_lru: memcg-aware list_lrus (list_lru.py); the
        # root's lists (every object when no child memcg exists) are dentry_lru and
        # inode_lru, Dentry / _ICache -> None, oldest first
        self.d_lru = ListLru(kernel)
        self.dentry_lru: OrderedDict = self.d_lru.root
        self.inodes: dict = {}  # Inode / _Dir -> _ICache
        self.i_lru = ListLru(kernel)
        self.inode_lru: OrderedDict = self.i_lru.root
        self.nr_dentry = 0
        self.nr_negative = 0  # negative dentries that are unused (on the LRU)
        self._busy = 0  # a lookup is walking: the shrinker backs off (trylock_super)
        root_dir = _Dir("/")
        self.root = Dentry("/", None, root_dir, self._alloc(self.dentry_cache))
        self.nr_dentry += 1
        self.root.count = 1  # the mount's reference: never freed
        self._iget(root_dir)
        self.hash["/"] = self.root
        self.shrinker = Shrinker("super_cache", self.count_objects, self.scan_objects,
                                 seeks=DEFAULT_SEEKS, batch=1024,
                                 flags=SHRINKER_NUMA_AWARE | SHRINKER_MEMCG_AWARE)
        self.d_lru.shrinker = self.i_lru.shrinker = self.shrinker
        kernel.shrinkers.register_shrinker(self.shrinker)
        kernel.procfs.register("/proc/sys/fs/dentry-state", self._dentry_state)
        kernel.procfs.register("/proc/sys/fs/inode-state", self._inode_state)

    # -- slab ----------------------------------------------------------------------------
    def _alloc(self, cache):
        obj = self.kernel.kmem_cache_alloc(cache, G.GFP_KERNEL)
        if obj is None:
            raise U.err(U.ENOMEM, "d_alloc")
        return obj

    # -- inodes --------------------------------------------------------------------------
    def _iget(self, inode) -> None:
        """iget: the cached struct inode, allocated on first use; one more reference."""
        ic = self.inodes.get(inode)
        if ic is None:
            ic = _ICache(inode, self._alloc(self.inode_cache))
            self.inodes[inode] = ic
        ic.count += 1

    def _iput(self, inode) -> None:
        """iput: the last reference puts the inode on the LRU (I_REFERENCED), or frees it
        if the file is gone (iput_final -> evict)."""
        ic = self.inodes[inode]
        ic.count -= 1
        if ic.count:
            return
        if not inode.nlink:
            self._free_inode(ic)
            return
        ic.referenced = True
        if not ic.on_lru:
            ic.on_lru = True
            ic.lru = self.i_lru.add(ic, ic.obj)

    def _free_inode(self, ic: _ICache) -> None:
        if ic.on_lru:
            del ic.lru[ic]
            ic.on_lru = False
            ic.lru = None
        del self.inodes[ic.inode]
        self.kernel.kmem_cache_free(self.inode_cache, ic.obj)

    # -- dentries ------------------------------------------------------------------------
    def lookup(self, path: str) -> Dentry:
        """Walk `path`: the final dentry with a reference the caller must dput (positive
        if the file exists, else negative). Components not cached are allocated."""
        fs = self.kernel.fs
        parent = self.root
        parent.count += 1
        self._busy += 1
        try:
            end = 0
            while True:
                end = path.find("/", end + 1)
                last = end < 0
                name = path if last else path[:end]
                if name.endswith("/"):
                    if last:
                        break
                    continue
                d = self.hash.get(name)
                if d is None:
                    inode = fs.lookup(name) if last else _Dir(name)
                    d = Dentry(name, parent, inode, self._alloc(self.dentry_cache))
                    self.nr_dentry += 1
                    parent.count += 1  # d_alloc: dget(parent)
                    if inode is not None:
                        self._iget(inode)
                    self.hash[name] = d
                d.count += 1
                self._dput(parent)
                parent = d
                if last:
                    break
        finally:
            self._busy -= 1
        return parent

    def instantiate(self, d: Dentry, inode) -> None:
        """d_instantiate: a negative dentry becomes positive (the file was created)."""
        if d.inode is None:
            if d.flags & DCACHE_LRU_LIST:
                self.nr_negative -= 1
            d.inode = inode
            self._iget(inode)

    def dput(self, d: Dentry) -> None:
        self._dput(d)

    def _dput(self, d: Dentry) -> None:
        d.count -= 1
        if d.count:
            return
        if not d.hashed:
            self._kill(d, None)
            return
        # retain_dentry
        if not d.flags & DCACHE_LRU_LIST:
            d.flags |= DCACHE_LRU_LIST
            d.lru = self.d_lru.add(d, d.obj)
            if d.inode is None:
                self.nr_negative += 1
        elif not d.flags & DCACHE_REFERENCED:
            d.flags |= DCACHE_REFERENCED

    def _lru_del(self, d: Dentry) -> None:
        if d.flags & DCACHE_LRU_LIST:
            del d.lru[d]
            d.lru = None
            d.flags &= ~DCACHE_LRU_LIST
            if d.inode is None:
                self.nr_negative -= 1

    def _kill(self, d: Dentry, dispose: list | None) -> None:
        """__dentry_kill: unhash, free the object, drop the inode and the parent."""
        self._lru_del(d)
        if d.hashed:
            d.hashed = False
            del self.hash[d.name]
        self.kernel.kmem_cache_free(self.dentry_cache, d.obj)
        self.nr_dentry -= 1
        if d.inode is not None:
            inode, d.inode = d.inode, None
            self._iput(inode)
        parent = d.parent
        if parent is None:
            return
        if dispose is None:
            self._dput(parent)  # dput goes on with the parent
        else:
            # __dput_to_list: off the LRU; unused now, it is killed in this pass too
            parent.count -= 1
            if not parent.count:
                self._lru_del(parent)
                dispose.append(parent)

    def d_delete(self, d: Dentry) -> None:
        """d_delete (unlink): the only user turns the dentry negative; otherwise it is
        unhashed and killed at its last dput."""
        if d.count == 1 and d.inode is not None:
            inode, d.inode = d.inode, None
            if d.flags & DCACHE_LRU_LIST:
                self.nr_negative += 1  # __d_clear_type_and_inode
            self._iput(inode)
        elif d.hashed:
            d.hashed = False
            del self.hash[d.name]

    # -- the shrinker ----------------------------------------------------------------------
    def count_objects(self, sc) -> int:
        """super_cache_count: LRU dentries + LRU inodes of sc.memcg (list_lru_shrink_count),
        * vfs_cache_pressure / 100."""
        memcg = sc.memcg
        total = self.d_lru.count_one(memcg) + self.i_lru.count_one(memcg)
        if not total:
            return SHRINK_EMPTY
        return total * self.kernel.config.vfs_cache_pressure // 100

    def scan_objects(self, sc) -> int:
        """super_cache_scan."""
        if not sc.gfp_mask & G.FS or self._busy:
            return SHRINK_STOP
        memcg = sc.memcg
        dentries = self.d_lru.count_one(memcg)
        inodes = self.i_lru.count_one(memcg)
        total = dentries + inodes + 1
        dentries = mult_frac(sc.nr_to_scan, dentries, total)
        inodes = mult_frac(sc.nr_to_scan, inodes, total)
        freed = self.prune_dcache_sb(dentries + 1, memcg)
        freed += self.prune_icache_sb(inodes + 1, sc.kswapd, memcg)
        return freed

    def prune_dcache_sb(self, nr_to_walk: int, memcg=None) -> int:
        """prune_dcache_sb: list_lru_shrink_walk over `memcg`'s dentries (the root's for
        None)."""
        lru = self.d_lru.list_of(memcg)
        dispose: list = []
        isolated = 0
        while nr_to_walk and lru:
            nr_to_walk -= 1
            d = next(iter(lru))
            if d.count:  # in use: off the LRU
                self._lru_del(d)
                isolated += 1
            elif d.flags & DCACHE_REFERENCED:
                d.flags &= ~DCACHE_REFERENCED
                lru.move_to_end(d)
            else:
                self._lru_del(d)
                dispose.append(d)
                isolated += 1
        while dispose:  # shrink_dentry_list
            self._kill(dispose.pop(0), dispose)
        return isolated

    def prune_icache_sb(self, nr_to_walk: int, kswapd: bool = False, memcg=None) -> int:
        """prune_icache_sb: list_lru_shrink_walk over `memcg`'s inodes (the root's for
        None)."""
        lru = self.i_lru.list_of(memcg)
        isolated = 0
        while nr_to_walk and lru:
            nr_to_walk -= 1
            ic = next(iter(lru))
            mapping = getattr(ic.inode, "mapping", None)
            if ic.count:
                del lru[ic]
                ic.on_lru = False
                ic.lru = None
                isolated += 1
                continue
            if ic.referenced:
                ic.referenced = False
                lru.move_to_end(ic)
                continue
            if mapping is not None and mapping.pages:
                if not self.highmem:
                    lru.move_to_end(ic)  # not shrinkable while it has page cache
                    continue
                reap = self._invalidate_mapping_pages(ic.inode)
                vm = self.kernel.vmstat
                key = "kswapd_inodesteal" if kswapd else "pginodesteal"
                vm[key] = vm.get(key, 0) + reap
                if mapping.pages:
                    lru.move_to_end(ic)
                    continue
            self._free_inode(ic)
            isolated += 1
        return isolated

    def _invalidate_mapping_pages(self, inode) -> int:
        """invalidate_mapping_pages: drop the clean, unmapped cache pages nobody else
        holds (not dirty, not under writeback, not locked)."""
        from .filemap import delete_from_page_cache
        from .page import PG_dirty, PG_locked, PG_writeback

        busy = PG_dirty | PG_locked | PG_writeback
        n = 0
        for page in list(inode.mapping.pages.values()):
            if page.flags & busy or page._mapcount != -1 or page._count != 1:
                continue
            delete_from_page_cache(self.kernel, page)
            n += 1
        return n

    # -- /proc -------------------------------------------------------------------------------
    @property
    def nr_unused(self) -> int:
        return self.d_lru.count()  # nr_dentry_unused: every memcg's

    def _dentry_state(self) -> str:
        return f"{self.nr_dentry}\t{self.nr_unused}\t{AGE_LIMIT}\t0\t{self.nr_negative}\t0\n"

    def _inode_state(self) -> str:
        return f"{len(self.inodes)}\t{self.i_lru.count()}\t0\t0\t0\t0\t0\n"
