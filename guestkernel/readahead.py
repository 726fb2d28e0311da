"""Page-cache readahead (mm/readahead.c and the readahead parts of mm/filemap.c, 6.x).

Overview
--------
Every open file has a `FileRaState` (struct file_ra_state): the most recent readahead
window

                           |<----- async_size ---------|
        |------------------- size -------------------->|
        |==================#===========================|
        ^start             ^page marked PG_readahead

and `ra_pages`, the largest window (the device's read_ahead_kb / 4: 32 pages = 128 KiB by
default, doubled by POSIX_FADV_SEQUENTIAL), `prev_pos` (the byte after the last read()),
`mmap_miss` (page faults that missed the cache) and `order` (6.x's folio order hint; the
guest's page cache holds order-0 pages only, so it only aligns window ends, as Linux does
for a mapping without large folios).

- A read() that misses the cache calls `page_cache_sync_ra` with the request's pages:
  at index 0, for a request larger than the window, or right after the previous read
  (index - prev_index <= 1) it starts a window of `get_init_ra_size` (the request rounded
  up to a power of two, x4 up to max/32, x2 up to max/4, else max); otherwise it looks
  back for cached history (`page_cache_prev_miss`): no more history than the request -> a
  standalone small random read, read as is, the state left alone; else a window of the
  history plus the request (twice the history when the file is cached from its start).
- The page at start + size - async_size is marked PG_readahead. A read (or fault) that
  reaches it calls `page_cache_async_ra`: the expected marker -> the next window follows
  the last one, `get_next_ra_size` (x4 below max/16, x2 up to max/2, else max), its end
  aligned down to 1 << min(order, ffs(max) - 1) pages with order grown by 2 (6.15+);
  an unexpected marker (interleaved streams) -> a window from the next cache miss.
- FMODE_RANDOM (POSIX_FADV_RANDOM) reads exactly the request (`force_page_cache_ra`);
  POSIX_FADV_WILLNEED and MADV_WILLNEED read the range up to max(io_pages, ra_pages).
- mmap faults (`do_sync_mmap_readahead`): VM_RAND_READ (MADV_RANDOM) reads the page alone;
  VM_SEQ_READ (MADV_SEQUENTIAL) is a read() of ra_pages; otherwise mmap_miss counts the
  misses (a cache hit takes one back) and, unless it passed MMAP_LOTSAMISS, the fault reads
  ra_pages around the faulting page (start index - ra_pages/2, async_size ra_pages/4).
  A fault on a page marked PG_readahead starts asynchronous readahead of ra_pages.
- PG_readahead is PG_reclaim's bit, as in Linux: a page under writeback never starts
  readahead.

Pages are read in one disk request per run of missing pages (read_pages), each costing
`FileSystem.read_cost`; the reader is charged all of them (hvsim has no reads in flight:
a reader that overtakes its readahead would wait for it anyway).

The page cache's insertion (filemap.add_to_page_cache, which allocates the page and
takes a shadow entry's refault) sits in filemap.py, which imports this module: readahead
calls it through the hook `kernel.add_to_page_cache` that init_address_spaces connects
(DESIGN.md: a lower layer calls up through a hook, never an import).

Checked against this machine's kernel: tests/data/readahead/ (mincore residency after each
step of seeded read patterns, recorded by measure_readahead.py there).
"""

from __future__ import annotations

from .page import PG_reclaim, PG_writeback
from .units import PAGE_SHIFT

PG_readahead = PG_reclaim  # include/linux/page-flags.h: PG_readahead = PG_reclaim
DEFAULT_READ_AHEAD_KB = 128  # /sys/block/*/queue/read_ahead_kb (VM_READAHEAD_PAGES)
DEFAULT_IO_PAGES = 320  # bdi->io_pages: max_sectors_kb 1280 (BLK_DEF_MAX_SECTORS_CAP) / 4
MMAP_LOTSAMISS = 100
MAX_PAGECACHE_ORDER = 9  # HPAGE_PMD_ORDER on x86-64: 2 MiB folios at most
ULONG_MAX = -1  # page_cache_prev_miss wrapped below index 0


class FileRaState:
    """struct file_ra_state (file_ra_state_init: ra_pages from the device, prev_pos -1)."""

    __slots__ = ("start", "size", "async_size", "ra_pages", "mmap_miss", "prev_pos", "order")

    def __init__(self, ra_pages: int) -> None:
        self.start = 0  # first page of the last window
        self.size = 0  # pages in it
        self.async_size = 0  # pages left when the next window starts
        self.ra_pages = ra_pages  # largest window, pages
        self.mmap_miss = 0  # cache misses of page faults (minus hits)
        self.prev_pos = -1  # byte after the previous read(); -1: none yet
        self.order = 0

    def window(self) -> tuple[int, int, int]:
        return self.start, self.size, self.async_size


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length() if n > 1 else 1


def get_init_ra_size(size: int, max_pages: int) -> int:
    newsize = roundup_pow_of_two(size)
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(cur: int, max_pages: int) -> int:
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def ractl_max_pages(fs, ra: FileRaState, req: int) -> int:
    """A request larger than the window may go up to the device's optimal I/O size."""
    max_pages = ra.ra_pages
    if req > max_pages and fs.io_pages > max_pages:
        max_pages = min(req, fs.io_pages)
    return max_pages


def page_cache_prev_miss(pages: dict, index: int, max_scan: int) -> int:
    """The first index not cached scanning down from `index`, at most max_scan pages;
    index - max_scan when all are cached; ULONG_MAX when the scan ran below 0."""
    i = index
    for _ in range(max_scan):
        if i < 0:
            return ULONG_MAX
        if i not in pages:
            return i
        i -= 1
    return ULONG_MAX if i < 0 else i


def page_cache_next_miss(pages: dict, index: int, max_scan: int) -> int:
    """The first index not cached scanning up from `index`, at most max_scan pages;
    index + max_scan when all are cached."""
    for i in range(index, index + max_scan):
        if i not in pages:
            return i
    return index + max_scan


# --- reading ---------------------------------------------------------------------------
def page_cache_ra_unbounded(kernel, inode, index: int, nr_to_read: int,
                            lookahead_size: int) -> tuple[int, float]:
    """Read the missing pages of [index, index + nr_to_read), one disk request per run
    of missing pages; the new page at index + nr_to_read - lookahead_size gets
    PG_readahead. Stops when memory runs out. Returns (pages read, seconds)."""
    add_to_page_cache = kernel.add_to_page_cache  # filemap's, wired at boot (no import up)
    pages = inode.mapping.pages
    fs = inode.fs
    mark = nr_to_read - lookahead_size if lookahead_size <= nr_to_read else -1
    batch = 0
    total = 0
    cost = 0.0
    for i in range(nr_to_read):
        idx = index + i
        if idx in pages:
            if batch:
                cost += fs.read_cost(batch)
                total += batch
                batch = 0
            continue
        page = add_to_page_cache(kernel, inode, idx, inode.read_page(idx))
        if page is None:
            break
        if i == mark:
            page.flags |= PG_readahead
        batch += 1
    if batch:
        cost += fs.read_cost(batch)
        total += batch
    if total:
        kernel.vmstat["pgpgin"] += total << (PAGE_SHIFT - 10)
        # the task sleeps on the disk (D state): its vCPU is free meanwhile
        kernel.iowait_file = getattr(kernel, "iowait_file", 0.0) + cost
    return total, cost


def do_page_cache_ra(kernel, inode, index: int, nr_to_read: int,
                     lookahead_size: int) -> tuple[int, float]:
    """page_cache_ra_unbounded clipped to the page holding the file's last byte."""
    size = inode.size
    if size == 0:
        return 0, 0.0
    end_index = (size - 1) >> PAGE_SHIFT
    if index > end_index:
        return 0, 0.0
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    return page_cache_ra_unbounded(kernel, inode, index, nr_to_read, lookahead_size)


def force_page_cache_ra(kernel, inode, ra: FileRaState, index: int,
                        nr_to_read: int) -> tuple[int, float]:
    """Read [index, index + nr_to_read) as is, at most max(io_pages, ra_pages) pages, in
    2 MiB chunks (FMODE_RANDOM reads, POSIX_FADV_WILLNEED, MADV_WILLNEED)."""
    max_pages = max(inode.fs.io_pages, ra.ra_pages)
    nr_to_read = min(nr_to_read, max_pages)
    total, cost = 0, 0.0
    chunk_max = (2 << 20) >> PAGE_SHIFT
    while nr_to_read > 0:
        chunk = min(chunk_max, nr_to_read)
        n, c = do_page_cache_ra(kernel, inode, index, chunk, 0)
        total += n
        cost += c
        index += chunk
        nr_to_read -= chunk
    return total, cost


def page_cache_ra_order(kernel, inode, ra: FileRaState) -> tuple[int, float]:
    """The window [start, start + size) with its marker. A mapping without large folio
    support reads order-0 pages and its order hint goes back to 0; with them
    (FileSystem.large_folios, ext4's default in 6.x) the window is read in naturally
    aligned folios of up to min(ra.order, ilog2(size), MAX_PAGECACHE_ORDER), the hint
    kept, so later windows' ends are aligned to larger and larger folios. The guest's
    page cache holds pages, not folios: a large folio's pages are added one by one and
    its head carries the PG_readahead marker (a read landing inside a marked folio past
    its head does not start readahead here, as it would in Linux)."""
    if not inode.fs.large_folios:
        ra.order = 0
        return do_page_cache_ra(kernel, inode, ra.start, ra.size, ra.async_size)
    add_to_page_cache = kernel.add_to_page_cache
    start = index = ra.start
    size = inode.size
    if size == 0:
        return 0, 0.0
    limit = min((size - 1) >> PAGE_SHIFT, index + ra.size - 1)
    new_order = min(MAX_PAGECACHE_ORDER, ra.order, ra.size.bit_length() - 1 if ra.size else 0)
    ra.order = new_order
    mark = index + ra.size - ra.async_size
    pages = inode.mapping.pages
    fs = inode.fs
    total = 0
    failed = False
    while index <= limit:
        order = new_order
        if index & ((1 << order) - 1):
            order = (index & -index).bit_length() - 1  # __ffs: align with smaller folios
        while order > 0 and index + (1 << order) - 1 > limit:
            order -= 1  # no folio past EOF or the window
        n = 1 << order
        if any(i in pages for i in range(index, index + n)):
            failed = True  # filemap_add_folio: -EEXIST
            break
        head = None
        for i in range(index, index + n):
            page = add_to_page_cache(kernel, inode, i, inode.read_page(i))
            if page is None:
                failed = True  # -ENOMEM: the folio's pages added so far stay, as read
                break
            if head is None:
                head = page
            total += 1
        if failed:
            break
        if index == mark - mark % n:
            head.flags |= PG_readahead
        index += n
    cost = fs.read_cost(total) if total else 0.0
    if total:
        kernel.vmstat["pgpgin"] += total << (PAGE_SHIFT - 10)
    if failed and ra.size > index - start:
        n, c = do_page_cache_ra(kernel, inode, index, ra.size - (index - start), ra.async_size)
        total += n
        cost += c
    return total, cost


def page_cache_sync_ra(kernel, inode, ra: FileRaState, random: bool, index: int,
                       req_count: int) -> tuple[int, float]:
    """A cache miss at `index` of a request of req_count pages. `random`: the file has
    FMODE_RANDOM (POSIX_FADV_RANDOM). Returns (pages read, seconds)."""
    if not ra.ra_pages:
        req_count = 1
        random = True
    if random:
        return force_page_cache_ra(kernel, inode, ra, index, req_count)
    max_pages = ractl_max_pages(inode.fs, ra, req_count)
    prev_index = ra.prev_pos >> PAGE_SHIFT if ra.prev_pos >= 0 else None
    if (not index or req_count > max_pages
            or (prev_index is not None and 0 <= index - prev_index <= 1)):
        ra.start = index
        ra.size = get_init_ra_size(req_count, max_pages)
        ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
        return page_cache_ra_order(kernel, inode, ra)
    miss = page_cache_prev_miss(inode.mapping.pages, index - 1, max_pages)
    contig_count = index - miss - 1 if miss != ULONG_MAX else index
    if contig_count <= req_count:
        # standalone, small random read: read as is, leave the state alone
        return do_page_cache_ra(kernel, inode, index, req_count, 0)
    if miss == ULONG_MAX:
        contig_count *= 2  # cached from the start: a long stream (or a whole-file read)
    ra.start = index
    ra.size = min(contig_count + req_count, max_pages)
    ra.async_size = 1
    return page_cache_ra_order(kernel, inode, ra)


def page_cache_async_ra(kernel, inode, ra: FileRaState, page, req_count: int) -> tuple[int, float]:
    """A read reached `page`, marked PG_readahead: start the next window."""
    if not ra.ra_pages:
        return 0, 0.0
    f = page.flags
    if f & PG_writeback:
        return 0, 0.0  # the bit means PG_reclaim on a page under writeback
    page.flags = f & ~PG_readahead
    index = page.index
    max_pages = ractl_max_pages(inode.fs, ra, req_count)
    if index == ra.start + ra.size - ra.async_size:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra.size, max_pages))
    else:
        # a marker without a matching state (interleaved streams): the old async_size
        # is the cached run after it
        start = page_cache_next_miss(inode.mapping.pages, index + 1, max_pages)
        if not start or start - index > max_pages:
            return 0, 0.0
        ra.start = start
        ra.size = get_next_ra_size(start - index + req_count, max_pages)
    ra.order += 2
    align = 1 << min(ra.order, (max_pages & -max_pages).bit_length() - 1)
    end = ra.start + ra.size
    aligned_end = end - end % align
    if aligned_end > ra.start:
        ra.size -= end - aligned_end
    ra.async_size = ra.size
    return page_cache_ra_order(kernel, inode, ra)


# --- the device's setting ----------------------------------------------------------------
UINT_MAX = (1 << 32) - 1


def queue_ra_show(fs) -> str:
    """/sys/block/<disk>/queue/read_ahead_kb (block/blk-sysfs.c queue_ra_show): the
    disk's bdi->ra_pages in KiB."""
    return f"{fs.ra_pages << (PAGE_SHIFT - 10)}\n"


def queue_ra_store(fs, text: str) -> None:
    """queue_ra_store: bdi->ra_pages = ra_kb >> (PAGE_SHIFT - 10), so the value is rounded
    down to whole pages; files opened later take it (file_ra_state_init), open ones keep
    theirs. queue_var_store: a decimal unsigned long (kstrtoul: an optional "+", digits,
    one trailing newline) of at most UINT_MAX, else EINVAL."""
    s = text[:-1] if text.endswith("\n") else text
    if s.startswith("+"):
        s = s[1:]
    if not s or any(c not in "0123456789" for c in s) or int(s) > UINT_MAX:
        raise ValueError(f"read_ahead_kb: {text!r} is not an unsigned integer up to {UINT_MAX} (EINVAL)")
    fs.ra_pages = int(s) >> (PAGE_SHIFT - 10)


# --- page faults ------------------------------------------------------------------------
def do_sync_mmap_readahead(kernel, inode, ra: FileRaState, vm_flags: int,
                           index: int) -> tuple[int, float]:
    """A page fault missed the cache at `index` (filemap_fault). Returns (pages, seconds)
    of the readahead; the caller reads the page alone if it is still missing."""
    from .vma import VM_RAND_READ, VM_SEQ_READ

    if vm_flags & VM_RAND_READ or not ra.ra_pages:
        return 0, 0.0
    if vm_flags & VM_SEQ_READ:
        return page_cache_sync_ra(kernel, inode, ra, False, index, ra.ra_pages)
    if ra.mmap_miss < MMAP_LOTSAMISS * 10:
        ra.mmap_miss += 1
    if ra.mmap_miss > MMAP_LOTSAMISS:
        return 0, 0.0  # far more misses than hits: read-around only hurts
    ra.start = max(0, index - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    ra.order = 0
    return page_cache_ra_order(kernel, inode, ra)


def do_async_mmap_readahead(kernel, inode, ra: FileRaState, vm_flags: int,
                            page) -> tuple[int, float]:
    """A page fault found `page` in the cache: a hit takes one miss back; a page marked
    PG_readahead starts the next window."""
    from .vma import VM_RAND_READ

    if vm_flags & VM_RAND_READ or not ra.ra_pages:
        return 0, 0.0
    if ra.mmap_miss:
        ra.mmap_miss -= 1
    if page.flags & PG_readahead:
        return page_cache_async_ra(kernel, inode, ra, page, ra.ra_pages)
    return 0, 0.0
