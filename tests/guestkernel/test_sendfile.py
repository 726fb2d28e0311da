"""sendfile(2): file bytes move inside the kernel, straight from the page cache, with no
copy in user memory (what a static web server does), to a socket/terminal or to another
file through its page cache; and read() into a buffer that is not page-aligned."""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel

P = 4096
N = 16  # pages in the test file
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
B = 0x60000000


@pytest.fixture
def k():
    k = Kernel(KernelConfig(memory="64MiB"))
    content = b"".join(bytes([i + 1]) * P for i in range(N))
    k.fs.create("/www/index.html", N * P - 100, content[: N * P - 100])
    return k


@pytest.fixture
def t(k):
    return k.spawn("nginx")


def test_sendfile_to_a_socket_reads_the_cache_and_touches_no_user_memory(k, t):
    vm = k.vmstat
    file0, anon0 = vm["nr_file_pages"], vm["nr_anon_pages"]
    rss0 = list(t.mm.rss)
    fd = t.open("/www/index.html")
    # offset None: from the file position, which advances
    assert t.sendfile(1, fd, None, 5 * P) == 5 * P
    assert t.lseek(fd, 0, U.SEEK_CUR) == 5 * P
    # an explicit offset leaves the position alone; the count is capped at EOF
    assert t.sendfile(1, fd, 10 * P, 100 * P) == 6 * P - 100
    assert t.lseek(fd, 0, U.SEEK_CUR) == 5 * P
    assert t.sendfile(1, fd, N * P, P) == 0  # at EOF
    # the file is in the page cache (readahead took all of it), and nothing else moved
    assert vm["nr_file_pages"] == file0 + N
    assert vm["nr_anon_pages"] == anon0
    assert t.mm.rss == rss0


def test_read_into_the_same_buffer_costs_user_pages(k, t):
    # the contrast: read() puts a second copy in anonymous user memory
    anon0 = k.vmstat["nr_anon_pages"]
    fd = t.open("/www/index.html")
    buf = t.mmap(B, N * P, RW, ANON | U.MAP_FIXED)
    assert t.read(fd, buf, 4 * P) == 4 * P
    assert k.vmstat["nr_anon_pages"] == anon0 + 4


def test_sendfile_to_a_file_copies_through_the_page_cache(k, t):
    src = t.open("/www/index.html")
    dst = t.open("/copy", U.O_RDWR | U.O_CREAT)
    assert t.sendfile(dst, src, 3 * P + 7, 2 * P) == 2 * P
    assert k.fs.lookup("/copy").size == 2 * P
    buf = t.mmap(B, 2 * P, RW, ANON | U.MAP_FIXED)
    t.lseek(dst, 0, U.SEEK_SET)
    assert t.read(dst, buf, 2 * P) == 2 * P
    # bytes 3P+7 .. 5P+7 of the source: page 4's byte 4, then page 5's and page 6's
    assert t.peek(buf, 2 * P) == bytes([4]) * (P - 7) + bytes([5]) * P + bytes([6]) * 7


def test_sendfile_errors(k, t):
    fd = t.open("/www/index.html")
    app = t.open("/log", U.O_WRONLY | U.O_CREAT | U.O_APPEND)
    with pytest.raises(OSError) as e:
        t.sendfile(1, 99, None, P)
    assert e.value.errno == U.EBADF
    with pytest.raises(OSError) as e:
        t.sendfile(fd, 0, None, P)  # the terminal cannot be read by sendfile
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.sendfile(app, fd, None, P)  # O_APPEND output
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.sendfile(1, fd, -1, P)
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.sendfile(fd, fd, None, P)  # output not open for writing
    assert e.value.errno == U.EBADF


@pytest.mark.parametrize("misalign", [16, 2048, P - 1])
def test_read_into_an_unaligned_buffer_lands_every_byte(k, t, misalign):
    fd = t.open("/www/index.html")
    buf = t.mmap(B, (N + 2) * P, RW, ANON | U.MAP_FIXED) + misalign
    t.access(buf - misalign, True, b"\xee" * misalign)
    n = 5 * P + 300
    assert t.read(fd, buf, n) == n
    expect = b"".join(bytes([i + 1]) * P for i in range(6))[:n]
    assert t.peek(buf, n) == expect
    # the bytes before and after the buffer are untouched
    assert t.peek(buf - misalign, misalign) == b"\xee" * misalign
    assert t.peek(buf + n, 1) == b"\x00"
