"""The page cache: read() copies (two copies in memory), mmap() maps the cache pages,
the cache is shared by every process, write() dirties, truncate unmaps."""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.filemap import delete_from_page_cache, writepage
from guestkernel.kernel import Kernel
from guestkernel.vma import validate_mm

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
B = 0x60000000
N = 64  # pages in the test file


@pytest.fixture
def k():
    k = Kernel(KernelConfig(memory="128MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    content = b"".join(bytes([i]) * P for i in range(N))
    k.fs.create("/data.bin", N * P, content)
    return k


@pytest.fixture
def t(k):
    return k.spawn("t")


def test_read_makes_two_copies_mmap_one(k, t):
    vm = k.vmstat
    file0, anon0 = vm["nr_file_pages"], vm["nr_anon_pages"]
    fd = t.open("/data.bin")
    buf = t.mmap(B, N * P, RW, ANON | U.MAP_FIXED)
    assert t.read(fd, buf, N * P) == N * P
    # the page cache holds the file once, the user buffer holds it again
    assert vm["nr_file_pages"] == file0 + N
    assert vm["nr_anon_pages"] == anon0 + N
    assert t.mm.rss[1] == N + 1 and t.mm.rss[0] == 0
    assert t.peek(buf + 5 * P, 2) == b"\x05\x05"
    # mmap of the same file: the cache pages themselves, no new memory
    u = k.spawn("u")
    fd2 = u.open("/data.bin")
    a = u.mmap(0, N * P, U.PROT_READ, U.MAP_PRIVATE, fd2, 0)
    free_before = k.page_alloc.nr_free_pages()
    maj = vm["pgmajfault"]
    u.access_range(a, N * P, False)
    assert vm["pgmajfault"] == maj  # the cache is shared: all minor
    assert vm["nr_file_pages"] == file0 + N and u.mm.rss == [N, 1, 0, 0]
    assert u.peek(a + 7 * P, 1) == b"\x07"
    pfn = u.mm.pgtable.ptes[(a >> 12) + 3] >> 12
    assert pfn == k.fs.lookup("/data.bin").mapping.pages[3].pfn
    assert k.page_alloc.nr_free_pages() >= free_before - 8  # page tables at most
    validate_mm(t.mm)
    validate_mm(u.mm)


def test_read_readahead_and_position(k, t):
    fd = t.open("/data.bin")
    buf = t.mmap(B, 4 * P, RW, ANON | U.MAP_FIXED)
    maj = k.vmstat["pgpgin"]
    assert t.read(fd, buf, 100) == 100
    # page_cache_sync_ra at index 0: the initial window get_init_ra_size(1 page, 32) =
    # 4 pages (roundup_pow_of_two(1) * 4, since 1 <= 32 / 32), not the whole ra_pages
    assert sorted(k.fs.lookup("/data.bin").mapping.pages) == [0, 1, 2, 3]
    assert k.vmstat["pgpgin"] == maj + 16
    assert t.last_cost == pytest.approx(k.fs.read_cost(4))  # one disk request
    assert t.lseek(fd, 0, U.SEEK_CUR) == 100
    assert t.read(fd, buf + 1, 2) == 2
    assert t.peek(buf, 3) == b"\x00\x00\x00"
    t.lseek(fd, 3 * P - 1, U.SEEK_SET)
    assert t.read(fd, buf, 2) == 2  # crosses a page boundary
    assert t.peek(buf, 2) == b"\x02\x03"
    t.lseek(fd, 0, U.SEEK_END)
    assert t.read(fd, buf, 10) == 0


def test_read_partial_on_fault(k, t):
    fd = t.open("/data.bin")
    t.mmap(B, P, RW, ANON | U.MAP_FIXED)  # one page, then a hole
    assert t.read(fd, B, 3 * P) == P
    assert t.state == "running"


def test_write_dirties_and_extends(k, t):
    fd = t.open("/new.txt", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(B, 2 * P, RW, ANON | U.MAP_FIXED)
    t.access(buf, True, b"hello")
    assert t.write(fd, buf, 5) == 5
    inode = k.fs.lookup("/new.txt")
    assert inode.size == 5 and k.vmstat["nr_dirty"] == 1
    t.lseek(fd, 0, U.SEEK_SET)
    assert t.read(fd, buf + P, 10) == 5
    assert t.peek(buf + P, 5) == b"hello"
    page = inode.mapping.pages[0]
    writepage(k, page)
    assert k.vmstat["nr_dirty"] == 0 and inode.disk[0][:5] == b"hello"
    with pytest.raises(OSError) as e:
        t.write(fd, 0x1000, 4)  # unmapped user buffer
    assert e.value.errno == U.EFAULT
    ro = t.open("/new.txt")
    with pytest.raises(OSError) as e:
        t.write(ro, buf, 1)
    assert e.value.errno == U.EBADF


def test_mmap_permission_rules(k, t):
    ro = t.open("/data.bin", U.O_RDONLY)
    wo = t.open("/data.bin", U.O_WRONLY)
    with pytest.raises(OSError) as e:
        t.mmap(0, P, RW, U.MAP_SHARED, ro, 0)
    assert e.value.errno == U.EACCES
    with pytest.raises(OSError) as e:
        t.mmap(0, P, U.PROT_READ, U.MAP_PRIVATE, wo, 0)
    assert e.value.errno == U.EACCES
    with pytest.raises(OSError) as e:
        t.mmap(0, P, U.PROT_READ, U.MAP_PRIVATE, ro, 100)
    assert e.value.errno == U.EINVAL
    assert t.mmap(0, P, RW, U.MAP_PRIVATE, ro, 0) > 0  # private: writable copy-on-write


def test_ftruncate_unmaps_beyond_eof(k, t):
    fd = t.open("/data.bin", U.O_RDWR)
    a = t.mmap(0, N * P, U.PROT_READ, U.MAP_SHARED, fd, 0)
    t.access_range(a, N * P, False)
    assert t.mm.rss[0] == N
    t.ftruncate(fd, 10 * P)
    assert t.mm.rss[0] == 10
    assert len(k.fs.lookup("/data.bin").mapping.pages) == 10
    t.access(a + 20 * P, False)
    assert t.state == "dead" and t.term_signal == U.SIGBUS


def test_close_keeps_mapping(k, t):
    fd = t.open("/data.bin")
    a = t.mmap(0, 2 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.close(fd)
    t.access(a, False)
    assert t.peek(a, 1) == b"\x00" and t.state == "running"
    with pytest.raises(OSError) as e:
        t.close(fd)
    assert e.value.errno == U.EBADF


def test_drop_unmapped_clean_page(k, t):
    fd = t.open("/data.bin")
    buf = t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    t.read(fd, buf, 1)
    inode = k.fs.lookup("/data.bin")
    n = k.vmstat["nr_file_pages"]
    delete_from_page_cache(k, inode.mapping.pages[3])
    assert k.vmstat["nr_file_pages"] == n - 1 and 3 not in inode.mapping.pages


def test_shared_anonymous_mapping_is_shmem(k, t):
    c0 = k.committed_as
    a = t.mmap(0, 4 * P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS)
    assert k.committed_as == c0 + 4
    t.access_range(a, 4 * P, True)
    assert t.mm.rss[3] == 4 and k.vmstat["nr_shmem"] == 4
    line = [ln for ln in k.procfs.read(f"/proc/{t.pid}/maps").splitlines() if "zero" in ln]
    assert line and line[0].endswith(" /dev/zero (deleted)") and " rw-s " in line[0]
    t.munmap(a, 4 * P)
    assert k.vmstat["nr_shmem"] == 0 and k.committed_as == c0


# --- truncate to an unaligned size: the partial page ---------------------------------------------
def _file(k, path="/f", pages=3, byte=b"a"):
    k.fs.create(path, pages * P, byte * (pages * P))
    return k.fs.lookup(path)


def _read_all(t, fd, n, buf=B + 64 * P):
    """read() the file from offset 0 into a fresh buffer; returns the bytes."""
    if t.mm.mm_mt.lookup(buf) is None:
        t.mmap(buf, 16 * P, RW, ANON | U.MAP_FIXED)
    t.lseek(fd, 0)
    got = t.read(fd, buf, n)
    return t.peek(buf, got)


def test_truncate_zeroes_the_tail_of_the_cached_partial_page(k, t):
    # page:     0       1       2
    # before  aaaaaaaa aaaaaaaa aaaaaaaa        (3 pages, all cached and mapped shared)
    # 5000    aaaaaaaa a000000- --------        page 1 cut at 904: its tail zeroed in the
    #                                           cache, page 2 unmapped and dropped
    # 3 pages aaaaaaaa a0000000 00000000        extension: zeros after the old EOF
    _file(k)
    fd = t.open("/f", U.O_RDWR)
    m = t.mmap(B, 3 * P, RW, U.MAP_SHARED, fd, 0)
    t.access_range(m, 3 * P, False)
    page1 = k.fs.lookup("/f").mapping.pages[1]
    assert t.ftruncate(fd, 5000) == 0
    assert k.fs.lookup("/f").mapping.pages[1] is page1  # the same page, still mapped
    assert t.peek(m + P, P) == b"a" * 904 + bytes(P - 904)
    assert set(k.fs.lookup("/f").mapping.pages) == {0, 1}
    assert t.ftruncate(fd, 3 * P) == 0
    assert _read_all(t, fd, 3 * P) == b"a" * 5000 + bytes(3 * P - 5000)
    t.access(m + 2 * P, False)  # page 2 is back within EOF: a fresh (zero) page
    assert t.state == "running" and t.peek(m + 2 * P, P) == bytes(P)
    validate_mm(t.mm)


def test_truncate_of_uncached_content_and_written_back_pages_leaves_a_hole(k, t):
    # nothing cached: the content beyond the cut is gone from the disk too
    _file(k, "/g")
    assert t.truncate("/g", 5000) == 0
    assert t.truncate("/g", 2 * P) == 0
    fd = t.open("/g")
    assert _read_all(t, fd, 2 * P) == b"a" * 5000 + bytes(2 * P - 5000)
    # a page written back and dropped from the cache: its copy on disk is cut too
    inode = _file(k, "/h", 2, b"b")
    fd = t.open("/h", U.O_RDWR)
    t.mmap(B + 32 * P, P, RW, ANON | U.MAP_FIXED)
    t.access(B + 32 * P, True, b"c" * P)
    t.lseek(fd, P)
    assert t.write(fd, B + 32 * P, P) == P  # page 1 is now c..c, dirty
    page = inode.mapping.pages[1]
    writepage(k, page)
    delete_from_page_cache(k, page)
    assert t.ftruncate(fd, P + 100) == 0 and t.ftruncate(fd, 2 * P) == 0
    assert _read_all(t, fd, 2 * P) == b"b" * P + b"c" * 100 + bytes(P - 100)
    with pytest.raises(OSError) as e:
        t.truncate("/nope", 0)
    assert e.value.errno == U.ENOENT
    with pytest.raises(OSError) as e:
        t.truncate("/h", -1)
    assert e.value.errno == U.EINVAL


def test_truncate_keeps_private_copies_of_the_partial_page(k, t):
    # MAP_PRIVATE: a written page is the process's own anonymous copy; only the pages
    # wholly beyond EOF are unmapped (holebegin = round_up(size)), so the copy of the
    # straddling page keeps its bytes, while a shared mapping sees the zeroed tail
    _file(k)
    fd = t.open("/f", U.O_RDWR)
    priv = t.mmap(B, 2 * P, RW, U.MAP_PRIVATE, fd, 0)
    shared = t.mmap(B + 8 * P, 2 * P, RW, U.MAP_SHARED, fd, 0)
    t.access(priv + P, True, b"x" * P)
    t.access(shared + P, False)
    t.ftruncate(fd, 5000)
    assert t.peek(priv + P, P) == b"x" * P
    assert t.peek(shared + P, P) == b"a" * 904 + bytes(P - 904)
    validate_mm(t.mm)


def test_bytes_written_past_eof_through_mmap_are_zeroed_by_writeback(k, t):
    # a shared mapping may write past EOF inside the last page (5000 bytes: page 1 ends
    # the file at 904). Writeback zeroes that tail in the cache and on disk, so a later
    # extension reads zeros; without a writeback, a 4 KiB-block file system shows the
    # bytes (pagecache_isize_extended only acts for blocks smaller than a page)
    for wb in (True, False):
        path = f"/e{int(wb)}"
        k.fs.create(path, 5000, b"a" * 5000)
        inode = k.fs.lookup(path)
        fd = t.open(path, U.O_RDWR)
        m = t.mmap(B + (16 * P if wb else 0), 2 * P, RW, U.MAP_SHARED, fd, 0)
        t.access(m + P + 1000, True, b"zz")
        page = inode.mapping.pages[1]
        if wb:
            writepage(k, page)
            assert inode.disk[1] == b"a" * 904 + bytes(P - 904)
        t.ftruncate(fd, 2 * P)
        tail = _read_all(t, fd, 2 * P)[P + 1000:P + 1002]
        assert tail == (b"\0\0" if wb else b"zz")
        validate_mm(t.mm)
