"""The page cache and a simple in-kernel file system (mm/filemap.c, mm/readahead.c,
mm/shmem.c in outline).

Overview
--------
A `FileSystem` holds regular files (`Inode`: a path, a size, an `AddressSpace`) on one
disk, unnamed shmem inodes backing shared anonymous mappings and SysV segments, and the
files of tmpfs mounts (mount.py: a path under a mount point is a shmem inode of its super
block, whose size= its pages count against: shmem_acct_block). Each
inode's `AddressSpace` is its slice of the page cache: index -> Page, shared by every
process of the guest. A page-cache page has `mapping` = the address space, `index` = its
file offset in pages, PG_uptodate, and one reference held by the cache; each PTE mapping
it holds one more.

`read()` copies from the cache into the user's buffer (two copies of the data in memory);
`mmap()` maps the cache pages themselves (task.py and memory.py do the user side).

A cache miss reads from the disk as readahead.py decides (the readahead state machine of
mm/readahead.c: `ra_pages` from read_ahead_kb, 32 pages = 128 KiB by default), one request
per run of missing pages costing `latency + bytes / bandwidth` seconds, counted in pgpgin
(KiB). The disk shares the guest swap device's latency and bandwidth settings
(KernelConfig.swap_latency/swap_bandwidth).

File content: an inode's pages come from `inode.disk` (pages written back), else from its
`content` (bytes of the whole file, or a callable index -> 4 KiB bytes), else a default
page naming the path and index; bytes beyond EOF read as zeros. Shmem pages start zeroed;
under pressure reclaim sends them to swap (swap.py shmem_writepage: the mapping keeps the
swap entry in `swapped`) and a lookup of that index swaps them back in (shmem_swapin).

Counters (/proc/vmstat): nr_file_pages, nr_shmem, nr_dirty are kept here; pgpgin.
"""

from __future__ import annotations

from . import gfp as G
from . import uapi as U
from .page import (
    PGSTATE_MASK,
    PG_dirty,
    PG_highmem,
    PG_locked,
    PG_mlocked,
    PG_swapbacked,
    PG_thp,
    PG_thpfile,
    PG_uptodate,
    PG_writeback,
)
from .physmem import ZERO_PAGE, page_bytes
from .readahead import (
    DEFAULT_IO_PAGES,
    DEFAULT_READ_AHEAD_KB,
    FileRaState,
    do_async_mmap_readahead,
    do_sync_mmap_readahead,
)
from .units import PAGE_SHIFT, PAGE_SIZE
from .vmstat import page_restate

GFP_PAGECACHE = G.GFP_HIGHUSER_MOVABLE
DEFAULT_RA_PAGES = DEFAULT_READ_AHEAD_KB >> (PAGE_SHIFT - 10)  # 32 pages


class AddressSpace:
    """struct address_space: the page cache of one inode and the VMAs mapping it."""

    __slots__ = ("host", "pages", "i_mmap", "ws", "unevictable", "swapped", "dirty",
                 "writeback_index", "nr_thps")

    def __init__(self, host: Inode) -> None:
        self.host = host
        self.pages: dict[int, object] = {}  # index -> Page
        self.i_mmap: dict = {}  # VMAs mapping this file (ordered set)
        self.ws = None  # workingset.ShadowSlots once reclaim left a shadow entry here
        self.unevictable = False  # AS_UNEVICTABLE: SHM_LOCK (mapping_set_unevictable)
        # shmem: index -> swap entry of a page shmem_writepage sent to swap (the swap
        # entry Linux keeps in the xarray slot); None until the first
        self.swapped: dict[int, int] | None = None
        # PAGECACHE_TAG_DIRTY: indices of the dirty pages (not shmem: swap-backed pages
        # have no writeback to a file); set_page_dirty / clear_page_dirty keep it, and a
        # mapping with any is on kernel.b_dirty, so the flusher visits only dirty inodes
        self.dirty: set[int] = set()
        # where the last range_cyclic writeback of this file stopped (write_cache_pages
        # starts there next time; 0 once it reached the end)
        self.writeback_index = 0
        # CONFIG_READ_ONLY_THP_FOR_FS: huge folios khugepaged put in this regular file's
        # cache (filemap_nr_thps; a mapping with large folio support keeps none)
        self.nr_thps = 0

    @property
    def nrpages(self) -> int:
        return len(self.pages)


class Inode:
    """A file. size in bytes; dev (major, minor); shmem inodes live only in the cache."""

    def __init__(self, fs: FileSystem, ino: int, path: str, size: int = 0, content=None,
                 shmem: bool = False, dev: tuple[int, int] = (8, 1)) -> None:
        self.fs = fs
        self.ino = ino
        self.path = path
        self.size = size
        self.content = content
        self.shmem = shmem
        self.dev = dev
        self.disk: dict[int, bytes] = {}  # pages written back, index -> bytes
        self.mapping = AddressSpace(self)
        self.nlink = 1
        self.charged = 0  # pages of commit charged by a shmem object (shmem_acct_size)
        self.users = 0  # references from struct files (fds, VMAs, SysV segments)
        self.name: str | None = None  # /proc/PID/maps name when not the path
        # bytes: a truncate cut the file here; `content` beyond it is gone (a hole reads
        # as zeros until written), None if never truncated below its content
        self.hole_from: int | None = None
        self.seals = 0  # F_SEAL_* of a memfd (memfd_create; F_SEAL_SEAL: none may be added)
        self.swapped = 0  # shmem: pages on swap (shmem_inode_info.swapped)
        # struct files open for writing (get_write_access at open), or, negative, minus
        # the mms running the file (deny_write_access: exec's mm->exe_file)
        self.i_writecount = 0
        # a file of a tmpfs mount: its super block (mount.ShmemSbInfo: huge=, size=,
        # nr_inodes=); None for the disk's files and the internal shmem mount's inodes
        self.sb = None
        # VM_NORESERVE (shmem_inode_info.flags): tmpfs files, memfds, MAP_NORESERVE shared
        # anonymous mappings, SHM_NORESERVE segments: each block is charged to Committed_AS
        # as it is allocated (shmem_acct_block), not the whole size up front
        self.noreserve = False
        self.enospc = False  # the last page allocation for it failed shmem_inode_acct_block

    def read_page(self, index: int) -> bytes:
        """The page's bytes on disk (or zeros for shmem and beyond EOF)."""
        if self.shmem:
            return ZERO_PAGE
        data = self.disk.get(index)
        if data is not None:
            return data
        off = index << PAGE_SHIFT
        if off >= self.size:
            return ZERO_PAGE
        hole = self.hole_from
        if hole is not None and off >= hole:
            return ZERO_PAGE
        c = self.content
        if c is None:
            data = f"{self.path}:{index}\n".encode()
        elif callable(c):
            data = c(index)
        else:
            data = bytes(c[off:off + PAGE_SIZE])
        tail = self.size - off
        if hole is not None and hole - off < tail:
            tail = hole - off
        if tail < PAGE_SIZE:
            data = page_bytes(data)[:tail]  # (a LazyPage is made into bytes to be cut)
        if len(data) != PAGE_SIZE:
            data = data.ljust(PAGE_SIZE, b"\0")[:PAGE_SIZE]
        return data

    def nr_index(self) -> int:
        """Pages covering i_size (the first index beyond EOF)."""
        return (self.size + PAGE_SIZE - 1) >> PAGE_SHIFT

    def __repr__(self) -> str:
        return f"<Inode {self.ino} {self.path!r} size={self.size}{' shmem' if self.shmem else ''}>"


class File:
    """struct file: an open file (an inode, a position, access mode)."""

    __slots__ = ("inode", "pos", "flags", "readable", "writable", "slab_obj", "refs", "f_ra",
                 "fmode_random", "dentry", "write_access")

    def __init__(self, inode: Inode, flags: int = 0, readable: bool = True,
                 writable: bool = True) -> None:
        self.inode = inode
        self.pos = 0
        self.flags = flags
        self.readable = readable
        self.writable = writable
        self.slab_obj = inode.fs.alloc_filp()  # struct file from the "filp" cache
        self.refs = 0  # holders: fd table entries, VMAs, SysV segments
        self.f_ra = FileRaState(inode.fs.ra_pages)  # file_ra_state_init
        self.fmode_random = False  # FMODE_RANDOM: POSIX_FADV_RANDOM
        self.dentry = None  # f_path.dentry, held until the last fput (dcache.py)
        self.write_access = False  # open(2) took the inode's write access (i_writecount)

    def get(self) -> None:
        self.refs += 1
        self.inode.users += 1

    def put(self) -> None:
        """fput: the last user of an unlinked shmem inode frees its pages and charge."""
        self.refs -= 1
        inode = self.inode
        inode.users -= 1
        if self.refs == 0 and self.slab_obj is not None:
            inode.fs.free_filp(self.slab_obj)  # the struct file goes back to "filp"
            self.slab_obj = None
        if self.refs == 0 and self.write_access:
            self.write_access = False
            inode.i_writecount -= 1  # __fput: put_write_access
        if self.refs == 0 and self.dentry is not None:
            dentry, self.dentry = self.dentry, None
            inode.fs.kernel.dcache.dput(dentry)
        if inode.users == 0 and inode.nlink == 0:
            inode.fs.evict_inode(inode)

    def __repr__(self) -> str:
        return f"<File {self.inode.path!r} pos={self.pos}>"


class FileSystem:
    """The guest's files. `dev` is the disk's (major, minor) shown in /proc/PID/maps."""

    def __init__(self, kernel, dev: tuple[int, int] = (8, 1), latency: float = 80e-6,
                 bandwidth: float = 500 << 20, ra_pages: int = DEFAULT_RA_PAGES,
                 io_pages: int = DEFAULT_IO_PAGES, large_folios: bool = False) -> None:
        self.kernel = kernel
        self.dev = dev
        self.shmem_dev = (0, 1)
        self.latency = latency  # seconds per request
        self.bandwidth = bandwidth  # bytes per second
        self.ra_pages = ra_pages  # bdi->ra_pages: read_ahead_kb / 4; new opens take it
        self.io_pages = io_pages  # bdi->io_pages: max_sectors_kb / 4
        self.queue = None  # a device queue serving this disk (the host's), or None: idle per request
        # mapping_large_folio_support: readahead in large folios (ext4 in 6.x unless
        # data=journal); off: order-0 pages, as ext2, or ext4 with data=journal
        self.large_folios = large_folios
        self.files: dict[str, Inode] = {}
        self._next_ino = 1048577
        self._next_shmem_ino = 1

    def create(self, path: str, size: int = 0, content=None) -> Inode:
        """Create (or return the existing) regular file at `path` with `size` bytes. A
        path under a tmpfs mount (kernel.mounts) makes a shmem inode of its super block
        (shmem_mknod: an inode reserved, ENOSPC past nr_inodes; its `content` ignored:
        a tmpfs file starts as a hole)."""
        inode = self.files.get(path)
        if inode is not None:
            return inode
        mounts = getattr(self.kernel, "mounts", None)
        mnt = mounts.lookup(path) if mounts is not None and mounts.mounts else None
        if mnt is not None:
            sb = mnt.sb
            if not sb.reserve_inode():
                raise U.err(U.ENOSPC, f"create {path}")  # shmem_reserve_inode
            inode = Inode(self, self._next_shmem_ino, path, size, shmem=True, dev=sb.dev)
            self._next_shmem_ino += 1
            inode.sb = sb
            inode.noreserve = True  # shmem_mknod: VM_NORESERVE
            self.files[path] = inode
            return inode
        inode = Inode(self, self._next_ino, path, size, content, dev=self.dev)
        self._next_ino += 1
        self.files[path] = inode
        return inode

    def lookup(self, path: str) -> Inode | None:
        return self.files.get(path)

    def unlink(self, path: str) -> None:
        inode = self.files.pop(path)
        inode.nlink = 0

    def new_shmem_inode(self, name: str, size: int, ino: int | None = None) -> Inode:
        """An unnamed shmem inode (shmem_kernel_file_setup); not in `files`."""
        if ino is None:
            ino = self._next_shmem_ino
            self._next_shmem_ino += 1
        inode = Inode(self, ino, name, size, shmem=True, dev=self.shmem_dev)
        inode.nlink = 0
        return inode

    def alloc_filp(self):
        k = self.kernel
        caches = getattr(k, "_as_caches", None)
        if caches and "filp" in caches:
            # __alloc_file: kmem_cache_zalloc(filp_cachep, GFP_KERNEL)
            return k.kmem_cache_alloc(caches["filp"], G.GFP_KERNEL | G.ZERO)
        return None

    def free_filp(self, obj) -> None:
        k = self.kernel
        caches = getattr(k, "_as_caches", None)
        if caches and "filp" in caches:
            k.kmem_cache_free(caches["filp"], obj)

    def evict_inode(self, inode: Inode) -> None:
        """The last reference to an unlinked inode went: drop its pages and its charge."""
        if self.kernel is not None:
            truncate_inode_pages(self.kernel, inode, 0)
            thp = getattr(self.kernel, "thp", None)
            if thp is not None and thp.shmem_shrinklist:
                thp.shmem_shrinklist.pop(inode, None)  # shmem_evict_inode
            if inode.charged:
                self.kernel.vm_unacct_memory(inode.charged)
        inode.charged = 0
        if inode.sb is not None:
            inode.sb.free_inode()  # shmem_evict_inode -> shmem_free_inode

    def read_cost(self, npages: int) -> float:
        """Seconds for one disk request of `npages` pages (queued on `queue` if set)."""
        q = self.queue
        if q is not None:
            env = getattr(self.kernel, "env", None)
            if env is not None:
                now = env.now
                return q.submit(npages, now) - now
        return self.latency + (npages << PAGE_SHIFT) / self.bandwidth


# --- page cache -------------------------------------------------------------------------
def add_to_page_cache(kernel, inode: Inode, index: int, data: bytes | None,
                      write: bool = False) -> object | None:
    """Allocate a page, fill it with `data` (zeros for shmem if None), insert it at
    `index`. Returns the page (its one reference is the cache's) or None if out of memory.
    A shadow entry in the slot is a refault (workingset.py), unless the page is created for
    a write (filemap_add_folio: not with __GFP_WRITE), which drops the shadow."""
    shmem = inode.shmem
    if shmem:
        sw = inode.mapping.swapped
        if sw and index in sw:
            # shmem_get_folio: the page is on swap: swapped in, whatever the caller had
            # (a write then stores its bytes over it)
            page, _, _ = kernel.swap.shmem_swapin(inode.mapping, index)
            return page
        if inode.noreserve and not shmem_acct_block(kernel, inode, 1):
            return None  # ENOSPC (a tmpfs mount's size=, or the commit limit)
    page = kernel.alloc_pages(GFP_PAGECACHE | (G.__GFP_ZERO if shmem and data is None else 0))
    memcgs = getattr(kernel, "memcgs", None)
    if page is not None and memcgs is not None and memcgs.active and not memcgs.charge(
            page, 1, GFP_PAGECACHE):
        kernel.free_pages(page)  # filemap_add_folio / shmem: mem_cgroup_charge failed
        page = None
    if page is None:
        if shmem and inode.noreserve:
            shmem_unacct_blocks(kernel, inode, 1)
        return None
    if data is not None:
        # a regular file's page comes from the disk; a shmem page from memory
        kernel.stall += kernel.phys.store(page.pfn, data, not shmem)
    page.flags |= PG_uptodate | (PG_swapbacked if shmem else 0)
    page.mapping = inode.mapping
    page.index = index
    mapping = inode.mapping
    mapping.pages[index] = page
    ws = mapping.ws
    if ws is not None and ws.count:
        shadow = kernel.workingset.take_shadow(ws, index)
        if shadow is not None and not write:
            kernel.workingset.refault(page, shadow)
    vm = kernel.vmstat
    vm["nr_file_pages"] += 1
    if shmem:
        vm["nr_shmem"] += 1
    mc = kernel.memcg
    if mc is not None:
        # the root memcg's statistics (memcontrol.py): the charge's PGPGIN
        # (memcg1_commit_charge), NR_FILE_PAGES (and NR_SHMEM) of __filemap_add_folio
        mc.rstat_updated(1)
        mc.rstat_updated(1)
        if shmem:
            mc.rstat_updated(1)
    kernel.lru_cache_add(page)
    return page


def shmem_acct_block(kernel, inode: Inode, pages: int) -> bool:
    """shmem_inode_acct_block for a VM_NORESERVE shmem inode: the pages charged to
    Committed_AS (shmem_acct_block) and, on a tmpfs mount with size=, to its blocks; on a
    mount, a page that does not fit first has huge folios past EOF on the mount split
    (shmem_get_folio_gfp's retry of shmem_unused_huge_shrink, 5 times at most). False:
    ENOSPC (inode.enospc set for a single page)."""
    sb = inode.sb
    if sb is None:  # the internal mount: no size limit
        if kernel.vm_enough_memory(pages):
            return True
        inode.enospc = pages == 1
        return False
    if sb.acct_block(pages):
        return True
    thp = getattr(kernel, "thp", None)
    if pages == 1 and thp is not None and thp.shmem_shrinklist:
        for _ in range(5):
            ret = thp.unused_huge_shrink(sb, 1)
            if ret < 0:  # SHRINK_STOP: nothing on the list
                break
            if ret and sb.acct_block(1):
                return True
    inode.enospc = pages == 1
    return False


def shmem_unacct_blocks(kernel, inode: Inode, pages: int) -> None:
    """shmem_inode_unacct_blocks of a VM_NORESERVE shmem inode."""
    sb = inode.sb
    if sb is not None:
        sb.unacct_blocks(pages)
    else:
        kernel.vm_unacct_memory(pages)


def shmem_charge_blocks(kernel, inode: Inode, pages: int) -> None:
    """Blocks taken back without a check (pages a collapse copies were uncounted as
    they left the cache a moment before)."""
    sb = inode.sb
    if sb is not None:
        sb.charge(pages)
    else:
        kernel.committed_as += pages


def read_pages(kernel, inode: Inode, first: int, n: int) -> tuple[int, float]:
    """Read the pages of [first, first + n) missing from the cache in one disk request.
    Returns (pages read, seconds). Stops early if memory runs out."""
    pages = inode.mapping.pages
    limit = inode.nr_index()
    todo = [i for i in range(first, min(first + n, limit)) if i not in pages]
    if not todo:
        return 0, 0.0
    done = 0
    for i in todo:
        if add_to_page_cache(kernel, inode, i, inode.read_page(i)) is None:
            break
        done += 1
    if not done:
        return 0, 0.0
    kernel.vmstat["pgpgin"] += done << (PAGE_SHIFT - 10)
    cost = inode.fs.read_cost(done)
    kernel.iowait_file += cost
    return done, cost


def find_get_page(inode: Inode, index: int):
    """The cached page at `index` or None (no reference taken)."""
    return inode.mapping.pages.get(index)


def filemap_get_page(kernel, inode: Inode, index: int, nr: int = 1, write: bool = False):
    """The page at `index`, read alone from disk on a miss (no readahead: a partial-page
    write's read, or what readahead left out); `nr` > 1 reads the missing pages of the nr
    pages centred on it in one request (a caller's explicit window).

    Returns (page, major, seconds); page None if beyond EOF or out of memory. Shmem pages
    are created zeroed (never major)."""
    page = inode.mapping.pages.get(index)
    if page is not None:
        return page, False, 0.0
    if index >= inode.nr_index():
        return None, False, 0.0
    if inode.shmem:
        sw = inode.mapping.swapped
        if sw and index in sw:  # shmem_swapin_folio (a major fault when read from swap)
            return kernel.swap.shmem_swapin(inode.mapping, index)
        page = add_to_page_cache(kernel, inode, index, None)
        return page, False, 0.0
    if write:  # write_begin: the page is created for the write (__GFP_WRITE), then read
        page = add_to_page_cache(kernel, inode, index, inode.read_page(index), write=True)
        if page is None:
            return None, False, 0.0
        kernel.vmstat["pgpgin"] += PAGE_SIZE >> 10
        cost = inode.fs.read_cost(1)
        kernel.iowait_file += cost
        return page, True, cost
    _, cost = read_pages(kernel, inode, max(0, index - nr // 2) if nr > 1 else index, max(nr, 1))
    page = inode.mapping.pages.get(index)
    if page is None and nr > 1:
        _, c = read_pages(kernel, inode, index, 1)
        cost += c
        page = inode.mapping.pages.get(index)
    return page, page is not None, cost


def filemap_fault_page(kernel, file: File, vm_flags: int, index: int):
    """filemap_fault's page lookup: a hit may start asynchronous readahead
    (do_async_mmap_readahead), a miss reads around it (do_sync_mmap_readahead) and then
    the page itself if readahead left it out. Returns (page, major, seconds)."""
    inode = file.inode
    page = inode.mapping.pages.get(index)
    if inode.shmem:
        if page is not None:
            return page, False, 0.0
        return filemap_get_page(kernel, inode, index)
    if page is not None:
        _, cost = do_async_mmap_readahead(kernel, inode, file.f_ra, vm_flags, page)
        return page, False, cost
    if index >= inode.nr_index():
        return None, False, 0.0
    _, cost = do_sync_mmap_readahead(kernel, inode, file.f_ra, vm_flags, index)
    page = inode.mapping.pages.get(index)
    if page is None:
        page, _, c = filemap_get_page(kernel, inode, index)
        cost += c
    return page, page is not None, cost


def set_page_dirty(kernel, page, task=None) -> None:
    """Mark a page dirty; a file page newly dirty is accounted (folio_account_dirtied:
    NR_FILE_DIRTY, NR_DIRTIED, WB_DIRTIED as vmstat nr_dirtied, current->nr_dirtied of
    `task`, the task dirtying it, when there is one, and bdp_ratelimits of the CPU it
    runs on: the task's, else CPU 0's, where hvsim runs a dirtying without a task)."""
    f = page.flags
    if not f & PG_dirty:
        page.flags = f | PG_dirty
        if not f & PG_swapbacked:
            vm = kernel.vmstat
            vm["nr_dirty"] += 1
            vm["nr_dirtied"] += 1
            mc = kernel.memcg
            if mc is not None:
                mc.rstat_updated(1)  # folio_account_dirtied: NR_FILE_DIRTY
            if task is not None:
                task.nr_dirtied += 1
                kernel.bdp_ratelimits[task.cpu] += 1
            else:
                kernel.bdp_ratelimits[0] += 1
            mapping = page.mapping
            tags = mapping.dirty
            if not tags:
                kernel.b_dirty[mapping] = None  # __mark_inode_dirty: onto b_dirty
            tags.add(page.index)  # __folio_mark_dirty: PAGECACHE_TAG_DIRTY
        if f & PGSTATE_MASK:
            page_restate(kernel.vmstat, page)


def clear_page_dirty(kernel, page) -> None:
    f = page.flags
    if f & PG_dirty:
        page.flags = f & ~PG_dirty
        if not f & PG_swapbacked:
            kernel.vmstat["nr_dirty"] -= 1
            mc = kernel.memcg
            if mc is not None:
                # folio_clear_dirty_for_io / folio_account_cleaned: NR_FILE_DIRTY
                mc.rstat_updated(1)
            mapping = page.mapping
            tags = mapping.dirty
            tags.discard(page.index)
            if not tags:
                kernel.b_dirty.pop(mapping, None)
        if f & PGSTATE_MASK:
            page_restate(kernel.vmstat, page)


def writepage(kernel, page) -> float:
    """Write a dirty file page back to its inode's disk; returns seconds. (For reclaim
    and the flusher.) Shmem pages have no disk: they go to swap, not here.

    The page that straddles EOF has its part beyond i_size zeroed, in the page cache
    too, on every writeback (block_write_full_folio: it may be mmapped and written past
    EOF), so a later extension shows zeros there. (Without a writeback in between, a
    4 KiB-block file system shows what was written: pagecache_isize_extended does
    nothing when the block is a page.)"""
    inode = page.mapping.host
    if inode.shmem:
        raise ValueError("writepage: shmem pages are written to swap, not to a file")
    phys = kernel.phys
    data = phys.load(page.pfn)
    off = inode.size - (page.index << PAGE_SHIFT)
    cost = 0.0
    if 0 < off < PAGE_SIZE and data is not ZERO_PAGE and any(data[off:]):
        data = data[:off] + bytes(PAGE_SIZE - off)
        cost = phys.touch(page.pfn, True) + phys.store(page.pfn, data)
    inode.disk[page.index] = data
    clear_page_dirty(kernel, page)
    kernel.vmstat["pgpgout"] += PAGE_SIZE >> 10
    return cost + inode.fs.read_cost(1)


def delete_from_page_cache(kernel, page, shadow: int | None = None) -> None:
    """Take an unmapped page out of the cache and drop the cache's reference
    (__filemap_remove_folio + folio_put). The page is freed if nobody else holds it.
    `shadow`: reclaim's shadow entry (workingset_eviction) left in the slot."""
    mapping = page.mapping
    inode = mapping.host
    if page._mapcount != -1:
        raise ValueError(f"delete_from_page_cache: page {page.pfn:#x} is still mapped")
    if page.flags & PG_thpfile:
        kernel.thp.shmem_split(page)  # one page of a shmem THP leaves: split it first
    del mapping.pages[page.index]
    ws = mapping.ws
    if shadow is not None:
        if ws is None:
            ws = mapping.ws = kernel.workingset.new_slots(mapping.pages)
        kernel.workingset.store_shadow(ws, page.index, shadow)
    elif ws is not None and ws.count:
        kernel.workingset.page_removed(ws, page.index)
    vm = kernel.vmstat
    vm["nr_file_pages"] -= 1
    if inode.shmem:
        vm["nr_shmem"] -= 1
        if inode.noreserve:
            shmem_unacct_blocks(kernel, inode, 1)  # (shmem_recalc_inode: gone from cache and swap)
    mc = kernel.memcg
    if mc is not None:
        mc.rstat_updated(1)  # filemap_unaccount_folio: NR_FILE_PAGES (and NR_SHMEM)
        if inode.shmem:
            mc.rstat_updated(1)
    clear_page_dirty(kernel, page)
    if page._count == 1:
        free_user_page(kernel, page)
    else:
        page._count -= 1


def free_user_page(kernel, page) -> None:
    """The last reference to a user page (anon or cache) goes: off the LRU, flags
    cleared, back to the allocator (uncharged from its memcg)."""
    kernel.lru_del(page)
    if page.flags & PG_mlocked:
        kernel.vmstat["nr_mlock"] -= 1
        kernel.vmstat["unevictable_pgs_cleared"] = kernel.vmstat.get("unevictable_pgs_cleared", 0) + 1
    if page.flags & PG_thp:
        # a THP's subpage: its folio keeps it (huge_memory.py), and its charge until the
        # folio is freed
        kernel.thp.free_subpage(page)
        return
    memcgs = getattr(kernel, "memcgs", None)
    if memcgs is not None and memcgs.active:
        memcgs.uncharge(page)
    mc = kernel.memcg
    if mc is not None:
        # __folio_put -> mem_cgroup_uncharge: uncharge_batch's PGPGOUT (one per folio;
        # a cgroup v2 swap-out keeps the charge to the free)
        mc.rstat_updated(1)
    page.flags &= PG_highmem
    page.mapping = None
    kernel.free_pages(page)


def get_write_access(inode: Inode) -> bool:
    """get_write_access (include/linux/fs.h, 6.1): atomic_inc_unless_negative(i_writecount);
    False (-ETXTBSY) while a running program's mm denies writes to the file."""
    if inode.i_writecount < 0:
        return False
    inode.i_writecount += 1
    return True


def deny_write_access(inode: Inode) -> bool:
    """deny_write_access (6.1): atomic_dec_unless_positive(i_writecount); False (-ETXTBSY)
    while the file is open for writing."""
    if inode.i_writecount > 0:
        return False
    inode.i_writecount -= 1
    return True


def allow_write_access(inode: Inode) -> None:
    """allow_write_access (6.1): atomic_inc(i_writecount), undoing deny_write_access."""
    inode.i_writecount += 1


def truncate_inode_pages(kernel, inode: Inode, start_index: int) -> int:
    """Drop the cached pages from `start_index` on (they must be unmapped first).
    Returns how many were dropped."""
    pages = inode.mapping.pages
    thp = getattr(kernel, "thp", None)
    if thp is not None and (inode.shmem or thp.shmem_folios):
        thp.shmem_undo_range(inode.mapping, start_index, None)  # huge folios: whole or split
    idx = sorted(i for i in pages if i >= start_index)
    for i in idx:
        delete_from_page_cache(kernel, pages[i])
    ws = inode.mapping.ws
    if ws is not None and ws.shadows:
        kernel.workingset.clear_range(ws, start_index)  # truncate_exceptional_pvec_entries
    if inode.mapping.swapped:
        n = kernel.swap.shmem_free_swap(inode.mapping, start_index)  # shmem_undo_range
        if inode.noreserve:
            shmem_unacct_blocks(kernel, inode, n)
    for i in [i for i in inode.disk if i >= start_index]:
        del inode.disk[i]
    return len(idx)


def truncate_partial_page(kernel, inode: Inode, length: int) -> float:
    """The page that straddles a new, unaligned EOF keeps its head and has its tail
    zeroed (truncate_inode_partial_folio: folio_zero_range from `length` to the page's
    end) in the page cache, and in the written-back copy on disk (the file system zeroes
    the partial block), so that a later extension or a read of the mapped page shows
    zeros after the old EOF. Mappings of the page see it at once (same frame); private
    CoW copies keep theirs. Returns seconds."""
    off = length & (PAGE_SIZE - 1)
    if not off:
        return 0.0
    index = length >> PAGE_SHIFT
    if inode.hole_from is None or length < inode.hole_from:
        inode.hole_from = length
    data = inode.disk.get(index)
    if data is not None:
        inode.disk[index] = data[:off] + bytes(PAGE_SIZE - off)
    page = inode.mapping.pages.get(index)
    if page is None:
        return 0.0
    phys = kernel.phys
    old = phys.load(page.pfn)
    if old is ZERO_PAGE or not any(old[off:]):
        return phys.touch(page.pfn, False)
    return phys.touch(page.pfn, True) + phys.store(page.pfn, old[:off] + bytes(PAGE_SIZE - off))


def invalidate_mapping_pages(kernel, inode: Inode, start: int, end: int,
                             nr_failed: list[int] | None = None) -> int:
    """Drop the clean, unmapped, unreferenced cached pages with index in [start, end]
    (6.1 invalidate_mapping_pagevec: POSIX_FADV_DONTNEED); a page it cannot drop goes to
    deactivate_file_folio (vmscan.deactivate_file_page), and counts in `nr_failed[0]`
    (6.1 mapping_try_invalidate's nr_failed). Returns how many were dropped."""
    pages = inode.mapping.pages
    rk = getattr(kernel, "reclaim", None)
    deactivate = rk.deactivate_file_page if rk is not None else None
    n = 0
    seen = None
    for i in sorted(i for i in pages if start <= i <= end):
        page = pages.get(i)
        if page is None:
            continue  # (a THP evicted whole with an earlier index)
        if page.flags & PG_thpfile and not inode.shmem:
            head = page.pfn & ~511  # a regular file's THP: whole or not at all
            if seen is None:
                seen = set()
            if head not in seen:
                seen.add(head)
                n += kernel.thp.evict_file_folio(page, start, end)
            continue
        f = page.flags
        if f & (PG_writeback | PG_locked):
            continue  # find_lock_entries: a locked page or one under writeback is skipped
        if page._mapcount == -1 and page._count == 1 and not f & PG_dirty:
            delete_from_page_cache(kernel, page)
            n += 1
        else:
            # mapping_evict_folio failed (dirty, mapped, held): invalidation is a hint
            # that the page is of no more interest: deactivate_file_folio
            if deactivate is not None:
                deactivate(page)
            if nr_failed is not None:
                nr_failed[0] += 1
    ws = inode.mapping.ws
    if ws is not None and ws.shadows and not inode.shmem:
        kernel.workingset.clear_range(ws, start, end + 1)  # invalidate_exceptional_entry
    return n


def drop_caches(kernel, fs: FileSystem) -> int:
    """echo 1 > drop_caches: free every clean, unmapped page-cache page of regular files."""
    n = 0
    for inode in list(fs.files.values()):
        if inode.shmem:
            continue  # a tmpfs file's pages are its only copy
        pages = inode.mapping.pages
        for page in list(pages.values()):
            if pages.get(page.index) is not page:
                continue  # (gone with its THP)
            if page.flags & PG_thpfile:
                if page.pfn & 511 == 0:  # (once, at its head: invalidate_mapping_pages)
                    n += kernel.thp.evict_file_folio(page, 0, 1 << 64)
                continue
            if page._mapcount == -1 and not page.flags & PG_dirty and page._count == 1:
                delete_from_page_cache(kernel, page)
                n += 1
    return n
