"""uapi constants: the x86-64 Linux values user space passes (as strace prints them)."""

import errno

from guestkernel import uapi as U


def test_mman_values():
    assert (U.PROT_READ, U.PROT_WRITE, U.PROT_EXEC, U.PROT_NONE) == (1, 2, 4, 0)
    assert (U.PROT_GROWSDOWN, U.PROT_GROWSUP) == (0x01000000, 0x02000000)
    assert (U.MAP_SHARED, U.MAP_PRIVATE, U.MAP_SHARED_VALIDATE) == (1, 2, 3)
    assert (U.MAP_FIXED, U.MAP_ANONYMOUS, U.MAP_GROWSDOWN) == (0x10, 0x20, 0x100)
    assert (U.MAP_DENYWRITE, U.MAP_LOCKED, U.MAP_NORESERVE) == (0x800, 0x2000, 0x4000)
    assert (U.MAP_POPULATE, U.MAP_STACK, U.MAP_FIXED_NOREPLACE) == (0x8000, 0x20000, 0x100000)
    assert (U.MREMAP_MAYMOVE, U.MREMAP_FIXED, U.MREMAP_DONTUNMAP) == (1, 2, 4)


def test_madvise_mlock_values():
    assert (U.MADV_WILLNEED, U.MADV_DONTNEED, U.MADV_FREE) == (3, 4, 8)
    assert (U.MADV_DONTFORK, U.MADV_MERGEABLE, U.MADV_UNMERGEABLE) == (10, 12, 13)
    assert (U.MADV_WIPEONFORK, U.MADV_PAGEOUT, U.MADV_POPULATE_WRITE) == (18, 21, 23)
    assert (U.MCL_CURRENT, U.MCL_FUTURE, U.MCL_ONFAULT, U.MLOCK_ONFAULT) == (1, 2, 4, 1)


def test_ipc_values():
    assert (U.IPC_CREAT, U.IPC_EXCL, U.IPC_RMID, U.IPC_STAT) == (0o1000, 0o2000, 0, 2)
    assert (U.SHM_RDONLY, U.SHM_RND, U.SHM_REMAP, U.SHM_EXEC) == (0o10000, 0o20000, 0o40000, 0o100000)
    assert U.SHM_NORESERVE == 0o10000 and U.SHMLBA == 4096


def test_signals_and_limits():
    assert (U.SIGBUS, U.SIGKILL, U.SIGSEGV, U.SIGCHLD) == (7, 9, 11, 17)
    assert (U.SEGV_MAPERR, U.SEGV_ACCERR) == (1, 2)
    assert (U.RLIMIT_STACK, U.RLIMIT_MEMLOCK, U.RLIMIT_AS) == (3, 8, 9)
    assert U.CAP_IPC_LOCK == 14
    assert (U.O_CREAT, U.O_TRUNC, U.O_APPEND) == (0o100, 0o1000, 0o2000)


def test_errno_and_err():
    assert (U.EPERM, U.ENOMEM, U.EACCES, U.EFAULT, U.EEXIST, U.EINVAL) == (1, 12, 13, 14, 17, 22)
    e = U.err(errno.ENOMEM, "mmap")
    assert isinstance(e, OSError) and e.errno == 12 and str(e).startswith("[Errno 12] mmap: ")


def test_prot_names():
    assert U.prot_names(U.PROT_READ | U.PROT_WRITE) == "PROT_READ|PROT_WRITE"
    assert U.prot_names(0) == "PROT_NONE"
