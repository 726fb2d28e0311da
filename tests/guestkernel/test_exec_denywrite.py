"""Exec's write denial (Linux 6.1): do_open_execat takes deny_write_access on the file it
opens for exec (atomic_dec_unless_positive(i_writecount), -ETXTBSY if the file is open for
writing) and free_bprm gives it back; the image's mm holds its own denial while the file
is its exe_file (set_mm_exe_file at exec, dup_mm_exe_file at fork, set_mm_exe_file(mm,
NULL) at __mmput), so open(O_WRONLY / O_RDWR) of a running program's file fails in
do_dentry_open's get_write_access (atomic_inc_unless_negative: -ETXTBSY). The ELF
interpreter is denied only during the exec (open_exec, then allow_write_access);
MAP_DENYWRITE is ignored (5.15+): a PROT_EXEC mapping of a library denies nothing.

do_dentry_open's drop of a file's page cache when it holds file THPs
(truncate_inode_pages(mapping, 0)) waits for a page under writeback
(truncate_inode_pages_range's second pass: folio_wait_writeback, truncate_inode_folio)."""

from __future__ import annotations

import errno

import pytest
import simpy

from guestkernel import uapi as U
from guestkernel.binfmt_elf import ET_DYN, PF_R, PF_W, PF_X, PT_LOAD, ElfImage, Phdr
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.khugepaged import SCAN_SUCCEED
from guestkernel.memory import validate_pages
from guestkernel.page import PG_writeback

P = 4096
M = 1 << 20
H = 2 * M


def _open_fails(task, path, flags):
    with pytest.raises(OSError) as e:
        task.open(path, flags)
    assert e.value.errno == errno.ETXTBSY


def test_a_running_programs_file_cannot_be_opened_for_writing():
    k = Kernel(KernelConfig(memory="64MiB"))
    t = k.spawn("prog")
    inode = k.fs.lookup("/bin/prog")
    assert inode.i_writecount == -1  # its mm's deny_write_access
    o = k.spawn("other")
    _open_fails(o, "/bin/prog", U.O_WRONLY)
    _open_fails(o, "/bin/prog", U.O_RDWR)
    assert inode.i_writecount == -1
    with pytest.raises(OSError) as e:  # vfs_truncate's get_write_access
        o.truncate("/bin/prog", 0)
    assert e.value.errno == errno.ETXTBSY and inode.size > 0
    fd = o.open("/bin/prog", U.O_RDONLY)  # reading is allowed
    o.close(fd)
    # fork: the child's mm denies too (dup_mm_exe_file)
    pid = t.fork()
    child = k.tasks[pid]
    assert inode.i_writecount == -2
    # the parent execs another image: its denial moves there (set_mm_exe_file)
    t.execve("/bin/other")
    assert inode.i_writecount == -1 and k.fs.lookup("/bin/other").i_writecount == -2
    _open_fails(o, "/bin/prog", U.O_WRONLY)
    # the child exits: __mmput's set_mm_exe_file(mm, NULL); the file is writable again
    child.exit(0)
    assert inode.i_writecount == 0
    fd = o.open("/bin/prog", U.O_WRONLY)
    assert inode.i_writecount == 1
    o.close(fd)
    assert inode.i_writecount == 0
    o.truncate("/bin/prog", 4096)  # not running: allowed, the access given back
    assert inode.size == 4096 and inode.i_writecount == 0


def test_exec_of_a_file_open_for_writing_fails_and_keeps_the_old_image():
    k = Kernel(KernelConfig(memory="64MiB"))
    t = k.spawn("prog")
    w = k.spawn("w")
    k.fs.create("/bin/new", 64 * 1024)
    fd = w.open("/bin/new", U.O_WRONLY)
    old = t.mm
    with pytest.raises(OSError) as e:
        t.execve("/bin/new")
    assert e.value.errno == errno.ETXTBSY
    assert t.mm is old and k.fs.lookup("/bin/new").i_writecount == 1
    assert k.fs.lookup("/bin/prog").i_writecount == -1  # the old image's denial stays
    w.close(fd)
    t.execve("/bin/new")
    assert k.fs.lookup("/bin/new").i_writecount == -1 and k.fs.lookup("/bin/prog").i_writecount == 0


def _elf(k, path, size):
    k.fs.create(path, size)
    return ElfImage(path, size, ET_DYN, [
        Phdr(PT_LOAD, PF_R | PF_X, 0, 0, 64 * 1024, 64 * 1024, P),
        Phdr(PT_LOAD, PF_R | PF_W, 64 * 1024, 64 * 1024 + P, P, P, P)])


def test_the_interpreter_is_denied_only_during_exec_and_libraries_never():
    """open_exec of the interpreter denies writes while load_elf_binary runs, then
    allow_write_access: after the exec the interpreter can be opened for writing; while
    it is open for writing, the exec fails with ETXTBSY. A library mapped PROT_EXEC
    (MAP_DENYWRITE ignored) denies nothing."""
    k = Kernel(KernelConfig(memory="64MiB"))
    exe = _elf(k, "/usr/bin/app", 128 * 1024)
    ld = _elf(k, "/lib/ld.so", 128 * 1024)
    t = k.spawn("t")
    w = k.spawn("w")
    fd = w.open("/lib/ld.so", U.O_RDWR)
    with pytest.raises(OSError) as e:
        t.execve("/usr/bin/app", elf=dict(exe=exe, interp=ld))
    assert e.value.errno == errno.ETXTBSY
    w.close(fd)
    t.execve("/usr/bin/app", elf=dict(exe=exe, interp=ld))
    assert k.fs.lookup("/usr/bin/app").i_writecount == -1
    assert k.fs.lookup("/lib/ld.so").i_writecount == 0
    _open_fails(w, "/usr/bin/app", U.O_WRONLY)
    # a library: mapped PROT_READ | PROT_EXEC privately, then opened for writing
    k.fs.create("/lib/libc.so", 128 * 1024)
    lfd = t.open("/lib/libc.so", U.O_RDONLY)
    t.mmap(0, 64 * 1024, U.PROT_READ | U.PROT_EXEC, U.MAP_PRIVATE, lfd, 0)
    fd = w.open("/lib/libc.so", U.O_WRONLY)
    assert k.fs.lookup("/lib/libc.so").i_writecount == 1
    w.close(fd)
    t.close(lfd)


def test_opening_for_write_waits_for_a_page_under_writeback_then_drops_it():
    """A file with a file THP (khugepaged collapsed its first 2 MiB) and a page at index
    600 under writeback (filemap_flush started it; the write ends at done_at): opening
    it for writing (do_dentry_open, filemap_nr_thps) truncates the cache from 0; the
    truncate waits for the page (folio_wait_writeback: the opener sleeps done_at - now,
    kernel.iowait_file) and drops it: the cache is empty."""
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="256MiB", swap="64MiB", thp_enabled="always", read_only_thp_for_fs=True),
               env=env)
    path = "/usr/bin/big"
    base = 0x40000000
    k.fs.create(path, 4 * M)
    w = k.spawn("w")
    fd = w.open(path, U.O_RDWR)
    buf = w.mmap(0, P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    w.access(buf, True, b"new")
    w.lseek(fd, 600 * P, U.SEEK_SET)
    assert w.write(fd, buf, 3) == 3
    w.close(fd)
    t = k.spawn("t")
    fd = t.open(path, U.O_RDONLY)
    assert t.mmap(base, H, U.PROT_READ | U.PROT_EXEC, U.MAP_PRIVATE | U.MAP_FIXED, fd, 0) == base
    t.close(fd)
    for i in range(512):
        t.access(base + i * P, False)
    vma = t.mm.mm_mt.lookup(base)
    assert k.khugepaged.scan_file(vma, base) == SCAN_SUCCEED
    inode = k.fs.lookup(path)
    assert inode.mapping.nr_thps == 1
    r = k.reclaim
    assert r.filemap_flush(inode.mapping) == 1
    page = inode.mapping.pages[600]
    assert page.flags & PG_writeback
    b = r.inflight_by_page[page.pfn]
    assert b.done_at > env.now
    wait = b.done_at - env.now
    io0 = k.iowait_file
    fd = w.open(path, U.O_WRONLY)
    assert k.iowait_file == io0 + wait  # (the same float sum)
    assert not inode.mapping.pages and inode.mapping.nr_thps == 0
    assert not page.flags & PG_writeback and page.pfn not in r.inflight_by_page
    assert inode.disk[600][:3] == b"new"  # written before it left the cache
    w.close(fd)
    validate_pages(k)
    k.reclaim.validate()
