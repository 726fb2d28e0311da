"""read() of a shmem file as 6.1's shmem_file_read_iter: shmem_get_folio(SGP_READ) finds
no folio in a hole and the zero page is copied, nothing allocated (only a fault or a
write allocates); a present page is marked accessed only when the read starts at its
beginning ("Mark the page accessed if we read the beginning")."""

from __future__ import annotations

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.fault import copy_to_user
from guestkernel.kernel import Kernel
from guestkernel.page import PG_referenced

P = 4096
RW = U.PROT_READ | U.PROT_WRITE


def _setup():
    k = Kernel(KernelConfig(memory="64MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("t")
    fd = t.memfd_create("holes")
    t.ftruncate(fd, 16 * P)
    buf = t.mmap(0, 16 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 16 * P, True)
    return k, t, fd, buf


def test_read_of_holes_allocates_nothing():
    k, t, fd, buf = _setup()
    inode = t.files[fd].inode
    copy_to_user(t, buf, b"\x5a" * P)
    t.lseek(fd, 3 * P)
    assert t.write(fd, buf, P) == P  # page 3 only
    vm = k.vmstat
    shmem0, file0 = vm["nr_shmem"], vm["nr_file_pages"]
    assert sorted(inode.mapping.pages) == [3]
    t.lseek(fd, 0)
    assert t.read(fd, buf, 16 * P) == 16 * P
    assert vm["nr_shmem"] == shmem0 and vm["nr_file_pages"] == file0  # no page for a hole
    assert sorted(inode.mapping.pages) == [3]
    data = t.peek(buf, 16 * P)
    assert data[:3 * P] == bytes(3 * P) and data[3 * P:4 * P] == b"\x5a" * P
    assert data[4 * P:] == bytes(12 * P)
    # a partial read inside a hole, unaligned buffer: the same
    t.lseek(fd, 5 * P + 10)
    assert t.read(fd, buf + 7, 100) == 100
    assert sorted(inode.mapping.pages) == [3]


def test_mark_accessed_only_from_the_page_start():
    k, t, fd, buf = _setup()
    t.lseek(fd, 0)
    assert t.write(fd, buf, P) == P
    f = t._file(fd)
    page = f.inode.mapping.pages[0]
    page.flags &= ~PG_referenced
    t.lseek(fd, 100)
    assert t.read(fd, buf, 200) == 200  # offset 100 into the page: not marked
    assert not page.flags & PG_referenced
    t.lseek(fd, 0)
    assert t.read(fd, buf, 200) == 200  # from its start: folio_mark_accessed
    assert page.flags & PG_referenced


def test_a_read_fault_on_a_hole_allocates():
    """shmem_fault (SGP_CACHE) allocates the page, unlike read()."""
    k, t, fd, buf = _setup()
    vm = k.vmstat
    shmem0 = vm["nr_shmem"]
    a = t.mmap(0, 16 * P, U.PROT_READ, U.MAP_SHARED, fd, 0)
    t.access_range(a, P, False)
    assert vm["nr_shmem"] == shmem0 + 1


def test_read_of_a_swapped_page_allocates_no_neighbouring_hole():
    """A page on swap is read back (shmem_get_folio SGP_READ: shmem_swapin_folio), with
    no file readahead around it: the holes beside it stay holes."""
    k = Kernel(KernelConfig(memory="64MiB", swap="16MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("t")
    fd = t.memfd_create("sw")
    t.ftruncate(fd, 16 * P)
    buf = t.mmap(0, 16 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    copy_to_user(t, buf, b"\x33" * P)
    for idx in (0, 8):
        t.lseek(fd, idx * P)
        assert t.write(fd, buf, P) == P
    inode = t.files[fd].inode
    m = t.mmap(0, 16 * P, RW, U.MAP_SHARED, fd, 0)
    for idx in (0, 8):
        t.access_range(m + idx * P, P, False)
    t.madvise(m, 16 * P, U.MADV_PAGEOUT)
    k.reclaim.complete_io()
    assert sorted(inode.mapping.swapped or {}) == [0, 8] and not inode.mapping.pages
    t.munmap(m, 16 * P)
    t.lseek(fd, 0)
    assert t.read(fd, buf, 16 * P) == 16 * P
    data = t.peek(buf, 16 * P)
    assert data[:P] == b"\x33" * P and data[8 * P:9 * P] == b"\x33" * P
    assert data[P:8 * P] == bytes(7 * P) and data[9 * P:] == bytes(7 * P)
    # the two pages are back (swap cluster readahead may bring the other one into the
    # swap cache too); no hole got a page
    assert set(inode.mapping.pages) <= {0, 8} and 0 in inode.mapping.pages and 8 in inode.mapping.pages
