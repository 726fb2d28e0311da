"""Linux user-space ABI constants with their x86-64 values (include/uapi/...).

What a process passes to and gets back from the memory system calls: PROT_*, MAP_*,
MREMAP_*, MADV_*, MCL_*/MLOCK_*, System V IPC, open() flags, signals and their si_code,
resource limits and the capability the mlock rules consult. Failures of system calls are
raised as `OSError(errno, message)` with the Linux errno from the `errno` module; `err()`
builds one.
"""

from __future__ import annotations

import errno as _errno
import os as _os

from .units import PAGE_SIZE

# --- mman-common.h / mman.h (x86) ----------------------------------------------------
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_DROPPABLE = 0x08  # 6.11: anonymous memory reclaim may drop (reads back as zeros)
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_ANON = MAP_ANONYMOUS
MAP_32BIT = 0x40
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
MAP_FAILED = -1

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_DONTNEED_LOCKED = 24
MADV_COLLAPSE = 25
MADV_GUARD_INSTALL = 102  # 6.13: guard markers in the page tables
MADV_GUARD_REMOVE = 103

# --- prctl.h ----------------------------------------------------------------------------
PR_SET_THP_DISABLE = 41
PR_GET_THP_DISABLE = 42

# --- memfd.h / fcntl.h seals -------------------------------------------------------------
MFD_CLOEXEC = 0x0001
MFD_ALLOW_SEALING = 0x0002
MFD_HUGETLB = 0x0004
MFD_NOEXEC_SEAL = 0x0008
MFD_EXEC = 0x0010
F_ADD_SEALS = 1033
F_GET_SEALS = 1034
F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_FUTURE_WRITE = 0x0010
F_SEAL_EXEC = 0x0020

MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4
MLOCK_ONFAULT = 0x01

# --- System V IPC (ipc.h, shm.h) -----------------------------------------------------
IPC_PRIVATE = 0
IPC_CREAT = 0o1000
IPC_EXCL = 0o2000
IPC_NOWAIT = 0o4000
IPC_RMID = 0
IPC_SET = 1
IPC_STAT = 2
IPC_INFO = 3
SHM_STAT = 13
SHM_INFO = 14
SHM_LOCK = 11
SHM_UNLOCK = 12
SHM_HUGETLB = 0o4000  # shmget
SHM_NORESERVE = 0o10000  # shmget: do not charge commit (ignored in overcommit mode 2)
SHM_RDONLY = 0o10000  # shmat
SHM_RND = 0o20000  # shmat: round the address down to SHMLBA
SHM_REMAP = 0o40000  # shmat: take over the range
SHM_EXEC = 0o100000  # shmat
SHM_DEST = 0o1000  # shm_perm.mode: destroy at last detach
SHM_LOCKED = 0o2000  # shm_perm.mode: SHM_LOCKed (not swapped)
SHMLBA = PAGE_SIZE  # x86: segment attach alignment, bytes
SHMMIN = 1  # bytes
SHMMNI = 4096  # segments per namespace
SHMMAX = (1 << 64) - 1 - (1 << 24)  # bytes (kernel.shmmax default, 64-bit)
SHMALL = (1 << 64) - 1 - (1 << 24)  # pages (kernel.shmall default)
IPCMNI_SEQ_MULTIPLIER = 32768  # ipc ids: seq * 32768 + index

# --- fcntl.h / unistd.h --------------------------------------------------------------
O_RDONLY = 0o0
O_WRONLY = 0o1
O_RDWR = 0o2
O_ACCMODE = 0o3
O_CREAT = 0o100
O_EXCL = 0o200
O_TRUNC = 0o1000
O_APPEND = 0o2000
O_CLOEXEC = 0o2000000
SEEK_SET = 0
SEEK_CUR = 1
SEEK_END = 2
# posix_fadvise advice (include/uapi/linux/fadvise.h, x86-64)
POSIX_FADV_NORMAL = 0
POSIX_FADV_RANDOM = 1
POSIX_FADV_SEQUENTIAL = 2
POSIX_FADV_WILLNEED = 3
POSIX_FADV_DONTNEED = 4
POSIX_FADV_NOREUSE = 5

# --- signals (x86) -------------------------------------------------------------------
SIGBUS = 7
SIGKILL = 9
SIGSEGV = 11
SIGTERM = 15
SIGCHLD = 17
SEGV_MAPERR = 1  # address not mapped to object
SEGV_ACCERR = 2  # invalid permissions for mapped object
BUS_ADRERR = 2  # nonexistent physical address (access beyond EOF of a mapped file)
SI_KERNEL = 0x80
SIGNAL_NAMES = {SIGBUS: "SIGBUS", SIGKILL: "SIGKILL", SIGSEGV: "SIGSEGV",
                SIGTERM: "SIGTERM", SIGCHLD: "SIGCHLD"}

# --- resource limits (asm-generic/resource.h) -----------------------------------------
RLIMIT_DATA = 2
RLIMIT_STACK = 3
RLIMIT_MEMLOCK = 8
RLIMIT_AS = 9
RLIM_INFINITY = (1 << 64) - 1
DEFAULT_RLIMIT_STACK = 8 << 20  # bytes (_STK_LIM)
DEFAULT_RLIMIT_MEMLOCK = 8 << 20  # bytes (MLOCK_LIMIT, 6.x)

# --- mount(2) flags (include/uapi/linux/mount.h) ------------------------------------------
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_FORCE = 1  # umount2 flags
MNT_DETACH = 2

# --- capabilities ---------------------------------------------------------------------
CAP_SETUID = 7
CAP_IPC_LOCK = 14
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
CAP_LAST_CAP = 40  # CAP_CHECKPOINT_RESTORE (6.x)
ALL_CAPS = frozenset(range(CAP_LAST_CAP + 1))  # what root's processes start with

# --- errno (Linux values; the `errno` module of a Linux host has the same) -------------
EPERM = _errno.EPERM
ENOENT = _errno.ENOENT
ESRCH = _errno.ESRCH
EBADF = _errno.EBADF
EAGAIN = _errno.EAGAIN
ENOMEM = _errno.ENOMEM
EACCES = _errno.EACCES
EFAULT = _errno.EFAULT
E2BIG = _errno.E2BIG
EEXIST = _errno.EEXIST
ENODEV = _errno.ENODEV
EISDIR = _errno.EISDIR
EINVAL = _errno.EINVAL
ENOSPC = _errno.ENOSPC
EFBIG = _errno.EFBIG
ECHILD = _errno.ECHILD
EOVERFLOW = _errno.EOVERFLOW
EBUSY = _errno.EBUSY
EINTR = _errno.EINTR
EOPNOTSUPP = _errno.EOPNOTSUPP
ENOEXEC = _errno.ENOEXEC
ENOSYS = _errno.ENOSYS
ETXTBSY = _errno.ETXTBSY


def err(code: int, what: str) -> OSError:
    """OSError(code, "<what>: <strerror>") as a failed system call returns it."""
    return OSError(code, f"{what}: {_os.strerror(code)}")


def prot_names(prot: int) -> str:
    """PROT_READ|PROT_WRITE rendering (strace's)."""
    if not prot:
        return "PROT_NONE"
    names = [n for n, b in (("PROT_READ", PROT_READ), ("PROT_WRITE", PROT_WRITE),
                            ("PROT_EXEC", PROT_EXEC), ("PROT_SEM", PROT_SEM),
                            ("PROT_GROWSDOWN", PROT_GROWSDOWN),
                            ("PROT_GROWSUP", PROT_GROWSUP)) if prot & b]
    rest = prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP)
    if rest:
        names.append(hex(rest))
    return "|".join(names)
