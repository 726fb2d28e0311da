"""strace replay: apply a real program's memory system calls to a simulated guest process.

`hvsim replay TRACE` reads a log written by

    strace -f -y -o TRACE \
      -e trace=%memory,%process,%ipc,%creds,prlimit64,setrlimit,getrlimit,openat,memfd_create,fcntl,ftruncate CMD

(logs of ``-e trace=memory,process,ipc``, or of every call, replay as well)
(with or without -f; -t/-tt/-ttt/-r timestamps, -T durations, -n syscall numbers and -i
instruction pointers are tolerated) and replays
every brk, mmap, munmap, mprotect, mremap, madvise, mlock, mlock2, munlock, mlockall,
munlockall, shmget, shmat, shmdt, shmctl, fork/vfork/clone/clone3, execve and exit line in
a fresh x86_64 guest `Kernel`, on the simulated process the line's pid names. The simulated
return value is compared with the recorded one; each difference is one divergence line.
The command ends with ``N calls, M divergences`` and exits 1 if M > 0 (2 for a bad file).

Parsing (`parse_trace`)
    Each line is split into an optional pid column (``5029  `` with -o, ``[pid  5029] ``
    on a terminal), an optional timestamp, and a body: a complete call
    ``name(args) = ret``, an unfinished one ``name(args <unfinished ...>``, its
    continuation ``<... name resumed>args) = ret``, ``+++ exited with N +++``,
    ``+++ killed by SIGx +++``, ``--- SIGx {...} ---``. Arguments are split at top-level
    commas, aware of quotes, brackets, ``/* comments */`` and -y paths (``3</usr/lib/x.so>``,
    whose text may hold commas and brackets). Unfinished and resumed halves are joined per
    pid. A joined call is placed in the event stream where its result appeared, except
    fork-like calls, placed where they started: the child's first lines can come before
    the parent's ``<... clone resumed>``. A line that fits no shape is reported with its
    number and skipped.

Placement: why MAP_FIXED_NOREPLACE
    The simulated kernel must put every mapping at the recorded address, but it cannot
    choose it the way the real kernel did: the real layout was randomised (ASLR) and
    execve mapped the executable, the loader, vdso and stack where the trace does not
    show them. So a successful ``mmap(NULL or hint, ...)`` is replayed as
    ``mmap(recorded_result, ..., flags | MAP_FIXED_NOREPLACE)``. NOREPLACE rather than
    MAP_FIXED because MAP_FIXED would silently unmap whatever the simulation has there; if
    the simulated address space holds something the real one did not (a missed munmap, a
    wrong mremap), NOREPLACE fails with EEXIST and the difference shows as a divergence
    instead of being papered over. A plain hint would not do: Linux only honours a hint
    that fits, and otherwise picks from its own (different) layout. Calls the program made
    with MAP_FIXED or MAP_FIXED_NOREPLACE (ld.so placing a library's segments inside its
    reservation) are replayed as recorded, since replacing is what they did. Likewise a
    mremap that moved is replayed with MREMAP_MAYMOVE|MREMAP_FIXED to the recorded new
    address (Linux has no NOREPLACE form for mremap), a ``shmat(id, NULL, ...)`` with the
    recorded address as shmaddr (which, without SHM_REMAP, also refuses to overlap).
    Calls that failed in the trace are replayed exactly as recorded, so that the
    simulated kernel has to fail them on its own, with the same errno.

What the trace cannot show
    - The first brk: execve randomises start_brk, so the first ``brk`` result of each
      program image tells where the heap starts; the simulated mm's start_brk/brk are set
      to it before the call is replayed (only while the simulated heap is still empty).
    - Regions mapped by execve itself (executable, loader, stack, vdso): a call that the
      trace shows succeeding on memory it never showed being mapped (the executable's
      RELRO mprotect, say) is reported as ``outside the trace``, not as a divergence. Only
      the parts of its range the trace did show are applied. A failed call on such memory
      is replayed and compared (``mprotect(0x10000, ...) = -1 ENOMEM`` must fail here too).
    - ``open`` is not traced: the path that -y prints names a file of the guest's file
      system, created on demand (read-write, since the open mode is not recorded) with the
      size implied by the largest ``offset + length`` mapped from it in the whole trace;
      without -y the file is named after the pid and fd (``/replay/PID/fdN``).
    - Return values that are identities (shmget ids, child pids) are not compared by
      value: both runs must succeed, and the recorded value is mapped to the simulated one
      for the later lines that use it.
    - A failed execve is not replayed (the simulated file system holds no executables).
    - System calls the replayer does not model are counted and listed at the end.
    - Threads and vfork children (CLONE_VM) share their parent's simulated process; a
      CLONE_VM child that is not a thread (vfork, posix_spawn) and calls execve becomes a
      process of its own (fork then execve: the fork's copy is dropped by the execve).
    - Real executables (``hvsim replay``; `Replayer.executables`): when the traced
      binary (its path as traced, relative to the working directory -y shows after
      AT_FDCWD, or beside the trace file) and its ELF interpreter exist on this machine,
      execve maps them as fs/binfmt_elf.c does (guestkernel.binfmt_elf). Where the real
      kernel put them is read from the trace: ld.so's RELRO mprotect of each (the one of
      the image's PT_GNU_RELRO length outside every traced mapping), else the layout
      without randomisation (setarch -R); the RELRO mprotects are then replayed and
      compared like any call. Otherwise the stand-in below stays.
    - Placement (``--placement kernel``): instead of MAP_FIXED_NOREPLACE at the recorded
      address, an mmap, mremap or shmat that let the kernel choose is replayed as
      recorded; each address the guest chose differently (and a heap start that differs
      at the first brk) is one line, and the mapping is then moved where the trace has
      it so the replay stays in step. A trace of a dynamically linked program recorded
      under ``setarch -R`` replays with 0 differences.
    - Credentials and limits: setuid/setresuid/setreuid, capset, prlimit64/setrlimit of
      RLIMIT_MEMLOCK, _AS, _DATA and _STACK are replayed; what the program started with
      is its starter's: ``--root`` starts it as uid 0 with every capability, and the first
      capget, or the first read of a limit, in a process image sets the simulated state
      to what the trace shows. Other limits are listed as skipped.
    - The traced command's first execve, otherwise, is replayed as `kernel.spawn(name)`: a static
      binary at the guest's own addresses (text at 0x400000, [vvar], [vvar_vclock] and
      [vdso] just below the guest's mmap_base, stack at the top), which ``--maps`` shows
      in place of the real executable, loader and vdso (the real vdso's sizes and rights,
      at another address). Every execve gets the argv the line recorded (its strings on
      the new stack, so VmStk and arg_start..arg_end are the program's); strace shows
      envp only as a pointer, so the environment is not replayed; an argv strace
      abridged ("...") is replayed as [path].
    - Memory accesses are not traced, so no page is touched: RSS, and merges that depend
      on a VMA already having an anon_vma, can differ from the real process.
    - Without -f, a child appears only as fork's and wait4's return value: it is forked in
      the guest and exits when wait4 returns its pid.

Units: addresses and lengths in bytes, as the trace writes them.
"""

from __future__ import annotations

import errno as _errno
import os
import re
import sys
from dataclasses import dataclass, field

import click

from guestkernel.units import PAGE_SIZE, parse_size

# --------------------------------------------------------------------------- constants
# Linux x86-64 values of the names strace prints. guestkernel/uapi.py holds the kernel's
# own copy; tests check that the two agree wherever both define a name.
CONSTANTS: dict[str, int] = {
    "NULL": 0,
    # prctl options replayed (the memory ones)
    "PR_SET_THP_DISABLE": 41,
    "PR_GET_THP_DISABLE": 42,
    # PROT_*
    "PROT_NONE": 0x0,
    "PROT_READ": 0x1,
    "PROT_WRITE": 0x2,
    "PROT_EXEC": 0x4,
    "PROT_SEM": 0x8,
    "PROT_GROWSDOWN": 0x01000000,
    "PROT_GROWSUP": 0x02000000,
    # MAP_*
    "MAP_SHARED": 0x01,
    "MAP_PRIVATE": 0x02,
    # open flags (the access mode of an openat noted for its descriptor)
    "O_RDONLY": 0o0,
    "O_WRONLY": 0o1,
    "O_RDWR": 0o2,
    "O_CREAT": 0o100,
    "O_EXCL": 0o200,
    "O_NOCTTY": 0o400,
    "O_TRUNC": 0o1000,
    "O_APPEND": 0o2000,
    "O_NONBLOCK": 0o4000,
    "O_DSYNC": 0o10000,
    "O_DIRECT": 0o40000,
    "O_LARGEFILE": 0o100000,
    "O_DIRECTORY": 0o200000,
    "O_NOFOLLOW": 0o400000,
    "O_NOATIME": 0o1000000,
    "O_CLOEXEC": 0o2000000,
    "O_SYNC": 0o4010000,
    "O_PATH": 0o10000000,
    "O_TMPFILE": 0o20200000,
    "MAP_SHARED_VALIDATE": 0x03,
    "MAP_DROPPABLE": 0x08,
    "MAP_FIXED": 0x10,
    "MAP_ANONYMOUS": 0x20,
    "MAP_32BIT": 0x40,
    "MAP_GROWSDOWN": 0x0100,
    "MAP_DENYWRITE": 0x0800,
    "MAP_EXECUTABLE": 0x1000,
    "MAP_LOCKED": 0x2000,
    "MAP_NORESERVE": 0x4000,
    "MAP_POPULATE": 0x8000,
    "MAP_NONBLOCK": 0x10000,
    "MAP_STACK": 0x20000,
    "MAP_HUGETLB": 0x40000,
    "MAP_SYNC": 0x80000,
    "MAP_FIXED_NOREPLACE": 0x100000,
    "MAP_UNINITIALIZED": 0x4000000,
    # MREMAP_*
    "MREMAP_MAYMOVE": 1,
    "MREMAP_FIXED": 2,
    "MREMAP_DONTUNMAP": 4,
    # MADV_*
    "MADV_NORMAL": 0,
    "MADV_RANDOM": 1,
    "MADV_SEQUENTIAL": 2,
    "MADV_WILLNEED": 3,
    "MADV_DONTNEED": 4,
    "MADV_FREE": 8,
    "MADV_REMOVE": 9,
    "MADV_DONTFORK": 10,
    "MADV_DOFORK": 11,
    "MADV_MERGEABLE": 12,
    "MADV_UNMERGEABLE": 13,
    "MADV_HUGEPAGE": 14,
    "MADV_NOHUGEPAGE": 15,
    "MADV_DONTDUMP": 16,
    "MADV_DODUMP": 17,
    "MADV_WIPEONFORK": 18,
    "MADV_KEEPONFORK": 19,
    "MADV_COLD": 20,
    "MADV_PAGEOUT": 21,
    "MADV_POPULATE_READ": 22,
    "MADV_POPULATE_WRITE": 23,
    "MADV_DONTNEED_LOCKED": 24,
    "MADV_COLLAPSE": 25,
    "MADV_HWPOISON": 100,
    "MADV_SOFT_OFFLINE": 101,
    "MADV_GUARD_INSTALL": 102,
    "MADV_GUARD_REMOVE": 103,
    # memfd_create, fcntl seals
    "MFD_CLOEXEC": 0x0001,
    "MFD_ALLOW_SEALING": 0x0002,
    "MFD_HUGETLB": 0x0004,
    "MFD_NOEXEC_SEAL": 0x0008,
    "MFD_EXEC": 0x0010,
    "F_ADD_SEALS": 1033,
    "F_GET_SEALS": 1034,
    "F_SEAL_SEAL": 0x0001,
    "F_SEAL_SHRINK": 0x0002,
    "F_SEAL_GROW": 0x0004,
    "F_SEAL_WRITE": 0x0008,
    "F_SEAL_FUTURE_WRITE": 0x0010,
    "F_SEAL_EXEC": 0x0020,
    # mlock2, mlockall
    "MLOCK_ONFAULT": 0x01,
    "MCL_CURRENT": 1,
    "MCL_FUTURE": 2,
    "MCL_ONFAULT": 4,
    # System V IPC
    "IPC_PRIVATE": 0,
    "IPC_CREAT": 0o1000,
    "IPC_EXCL": 0o2000,
    "IPC_NOWAIT": 0o4000,
    "IPC_RMID": 0,
    "IPC_SET": 1,
    "IPC_STAT": 2,
    "IPC_INFO": 3,
    "IPC_64": 0x100,
    "SHM_LOCK": 11,
    "SHM_UNLOCK": 12,
    "SHM_STAT": 13,
    "SHM_INFO": 14,
    "SHM_STAT_ANY": 15,
    "SHM_HUGETLB": 0o4000,
    "SHM_NORESERVE": 0o10000,
    "SHM_RDONLY": 0o10000,
    "SHM_RND": 0o20000,
    "SHM_REMAP": 0o40000,
    "SHM_EXEC": 0o100000,
    # clone flags (the CSIGNAL byte holds the exit signal)
    "CLONE_VM": 0x00000100,
    "CLONE_FS": 0x00000200,
    "CLONE_FILES": 0x00000400,
    "CLONE_SIGHAND": 0x00000800,
    "CLONE_PIDFD": 0x00001000,
    "CLONE_PTRACE": 0x00002000,
    "CLONE_VFORK": 0x00004000,
    "CLONE_PARENT": 0x00008000,
    "CLONE_THREAD": 0x00010000,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_SYSVSEM": 0x00040000,
    "CLONE_SETTLS": 0x00080000,
    "CLONE_PARENT_SETTID": 0x00100000,
    "CLONE_CHILD_CLEARTID": 0x00200000,
    "CLONE_DETACHED": 0x00400000,
    "CLONE_UNTRACED": 0x00800000,
    "CLONE_CHILD_SETTID": 0x01000000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
    "CLONE_IO": 0x80000000,
    "CLONE_CLEAR_SIGHAND": 0x100000000,
    "CLONE_INTO_CGROUP": 0x200000000,
}
_SIGNALS = (
    "HUP INT QUIT ILL TRAP ABRT BUS FPE KILL USR1 SEGV USR2 PIPE ALRM TERM STKFLT CHLD "
    "CONT STOP TSTP TTIN TTOU URG XCPU XFSZ VTALRM PROF WINCH IO PWR SYS"
).split()
for _n, _s in enumerate(_SIGNALS, start=1):
    CONSTANTS["SIG" + _s] = _n
CONSTANTS["SIGIOT"] = 6
CONSTANTS["SIGPOLL"] = 29

# resource limits (asm-generic/resource.h): the memory ones the guest models
RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
           "RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
           "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
           "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}
MEMORY_RLIMITS = {"RLIMIT_DATA", "RLIMIT_STACK", "RLIMIT_MEMLOCK", "RLIMIT_AS"}
CONSTANTS.update(RLIMITS)
# capabilities (linux/capability.h), as strace prints them in capget/capset sets
CAPABILITIES = {name: n for n, name in enumerate((
    "CAP_CHOWN CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_FOWNER CAP_FSETID CAP_KILL "
    "CAP_SETGID CAP_SETUID CAP_SETPCAP CAP_LINUX_IMMUTABLE CAP_NET_BIND_SERVICE "
    "CAP_NET_BROADCAST CAP_NET_ADMIN CAP_NET_RAW CAP_IPC_LOCK CAP_IPC_OWNER CAP_SYS_MODULE "
    "CAP_SYS_RAWIO CAP_SYS_CHROOT CAP_SYS_PTRACE CAP_SYS_PACCT CAP_SYS_ADMIN CAP_SYS_BOOT "
    "CAP_SYS_NICE CAP_SYS_RESOURCE CAP_SYS_TIME CAP_SYS_TTY_CONFIG CAP_MKNOD CAP_LEASE "
    "CAP_AUDIT_WRITE CAP_AUDIT_CONTROL CAP_SETFCAP CAP_MAC_OVERRIDE CAP_MAC_ADMIN CAP_SYSLOG "
    "CAP_WAKE_ALARM CAP_BLOCK_SUSPEND CAP_AUDIT_READ CAP_PERFMON CAP_BPF "
    "CAP_CHECKPOINT_RESTORE").split())}
ALL_CAPS = frozenset(CAPABILITIES.values())

MAP_FIXED = CONSTANTS["MAP_FIXED"]
MAP_FIXED_NOREPLACE = CONSTANTS["MAP_FIXED_NOREPLACE"]
MAP_ANONYMOUS = CONSTANTS["MAP_ANONYMOUS"]
MAP_SHARED = CONSTANTS["MAP_SHARED"]
MREMAP_MAYMOVE = CONSTANTS["MREMAP_MAYMOVE"]
MREMAP_FIXED = CONSTANTS["MREMAP_FIXED"]
CLONE_VM = CONSTANTS["CLONE_VM"]
CLONE_VFORK = CONSTANTS["CLONE_VFORK"]
CLONE_THREAD = CONSTANTS["CLONE_THREAD"]
IPC_64 = CONSTANTS["IPC_64"]
O_RDWR = 0o2
O_CREAT = 0o100

# errno names as strace prints them -> Linux numbers (x86-64 == asm-generic).
ERRNO: dict[str, int] = {
    name: getattr(_errno, name) for name in dir(_errno) if name.startswith("E") and name.isupper()
}
ERRNO.update({"ERESTARTSYS": 512, "ERESTARTNOINTR": 513, "ERESTARTNOHAND": 514,
              "ERESTART_RESTARTBLOCK": 516})
ERRNO_NAME: dict[int, str] = {}
for _name, _num in sorted(ERRNO.items()):
    ERRNO_NAME.setdefault(_num, _name)
for _name in ("EAGAIN", "EDEADLK", "ENOTSUP", "EOPNOTSUPP"):  # preferred aliases
    if _name in ERRNO:
        ERRNO_NAME[ERRNO[_name]] = _name
ERRNO_NAME[ERRNO["EOPNOTSUPP"]] = "EOPNOTSUPP"


def _page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


# --------------------------------------------------------------------------- parser
class TraceSyntaxError(ValueError):
    """A piece of a line that does not read as strace output."""


@dataclass(frozen=True, slots=True)
class Ret:
    """A recorded return value: ``value`` (None for ``?``) and the errno name on failure."""

    value: int | None
    errno: str | None = None
    text: str = ""

    @property
    def failed(self) -> bool:
        return self.errno is not None


@dataclass(slots=True)
class Call:
    """One system call, its halves joined. ``lineno`` is where it started (1-based)."""

    lineno: int
    pid: int | None
    name: str
    args: list[str]
    ret: Ret
    end_lineno: int = 0


@dataclass(frozen=True, slots=True)
class Exit:
    """``+++ exited with N +++`` (signal None) or ``+++ killed by SIGx +++``."""

    lineno: int
    pid: int | None
    status: int | None
    signal: str | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """``--- SIGx {...} ---``: a signal delivered (its effect, if fatal, is a later Exit)."""

    lineno: int
    pid: int | None
    signal: str
    info: str


@dataclass(frozen=True, slots=True)
class Problem:
    """A line that was skipped, and why."""

    lineno: int
    reason: str
    text: str

    def __str__(self) -> str:
        text = self.text if len(self.text) <= 100 else self.text[:97] + "..."
        return f"line {self.lineno}: malformed, skipped: {self.reason}: {text}"


@dataclass
class Trace:
    events: list = field(default_factory=list)  # Call | Exit | Signal, in replay order
    problems: list[Problem] = field(default_factory=list)
    lines: int = 0
    has_pids: bool = False


# One line: [pid column] [timestamp] body [-T duration]
_PID_RE = re.compile(r"^(?:\[pid\s+(\d+)\]\s*|(\d+)\s+)")
_TIME_RE = re.compile(r"^(?:\d{1,2}:\d{2}:\d{2}(?:\.\d+)?|\d+\.\d+)\s+")
_DURATION_RE = re.compile(r"\s+<\d+\.\d+>$")
_BRACKETS_RE = re.compile(r"^(?:\[ *\d{1,4}\]\s+|\[[0-9a-f]{8,16}\]\s+)+")  # -n, -i
_EXITED_RE = re.compile(r"^\+\+\+ exited with (-?\d+) \+\+\+$")
_KILLED_RE = re.compile(r"^\+\+\+ killed by (SIG[A-Z0-9]+|\d+)(?: \(core dumped\))? \+\+\+$")
_ARGV_ITEM_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_SUPERSEDED_RE = re.compile(r"^\+\+\+ superseded by execve in pid (\d+) \+\+\+$")
_SIGNAL_RE = re.compile(r"^--- (SIG[A-Z0-9]+|stopped by SIG[A-Z0-9]+)(?: (\{.*\}))? ---$")
_CALL_RE = re.compile(r"^([a-z_][a-z0-9_]*)\((.*)$")
_RESUMED_RE = re.compile(r"^<\.\.\. ([a-z_][a-z0-9_]*) resumed>\s?(.*)$")
_UNFINISHED = "<unfinished ...>"
_RET_RE = re.compile(
    r"^(\?|-?\d+|0x[0-9a-fA-F]+)(?:<[^>]*>)?(?:\(deleted\))?"  # value, maybe a -y path
    r"(?:\s+(E[A-Z0-9_]+)\b.*|\s+\(.*\)|\s+<unavailable>|\s+\[.*\])?$"
)
FORK_CALLS = frozenset({"fork", "vfork", "clone", "clone3"})


def split_args(text: str) -> list[str]:
    """Split an argument list at top-level commas; ``/* comments */`` are dropped.

    Aware of "quoted strings" (with backslash escapes), (), [], {} nesting, and -y paths
    after an fd number (``3</a, b>``). Raises TraceSyntaxError if unbalanced.
    """
    args: list[str] = []
    cur: list[str] = []
    depth: list[str] = []
    closing = {"(": ")", "[": "]", "{": "}"}
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise TraceSyntaxError("unterminated string")
            cur.append(text[i : j + 1])
            i = j + 1
            # strace marks a truncated string with "..." after the quote: keep it
            continue
        if c == "/" and text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise TraceSyntaxError("unterminated comment")
            i = j + 2
            continue
        if c == "<" and text.startswith("<<", i):
            cur.append("<<")  # a shift (capability sets: 1<<CAP_CHOWN), not a -y path
            i += 2
            continue
        if c == "<" and cur and cur[-1][-1:].isdigit():
            # -y path: runs to the first unescaped '>' (strace escapes '<' and '>' in it)
            j = i + 1
            while j < n and text[j] != ">":
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                raise TraceSyntaxError("unterminated <path>")
            cur.append(text[i : j + 1])
            i = j + 1
            continue
        if c in closing:
            depth.append(closing[c])
        elif c in ")]}":
            if not depth or depth.pop() != c:
                raise TraceSyntaxError(f"unbalanced {c!r}")
        elif c == "," and not depth:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if depth:
        raise TraceSyntaxError(f"missing {depth[-1]!r}")
    last = "".join(cur).strip()
    if last or args:
        args.append(last)
    return args


def parse_ret(text: str) -> Ret:
    """``0x7f..``, ``0``, ``-1 ENOMEM (Cannot allocate memory)``, ``?``, ``3</path>``."""
    text = text.strip()
    m = _RET_RE.match(text)
    if not m:
        raise TraceSyntaxError(f"unreadable return value {text!r}")
    try:
        value = None if m.group(1) == "?" else int(m.group(1), 0)
    except ValueError:  # e.g. "-01": int(..., 0) takes no leading zero; strace never prints one
        raise TraceSyntaxError(f"unreadable return value {text!r}") from None
    err = m.group(2)
    if err is not None and err not in ERRNO:
        raise TraceSyntaxError(f"unknown errno {err}")
    return Ret(value, err, text)


_RESULT_RE = re.compile(r"\)\s+=\s+(?!.*\)\s+=\s)")  # the last ") = ", padding allowed


def _split_call(rest: str) -> tuple[str, str, bool]:
    """``args) = ret`` -> (args, ret, True); ``args <unfinished ...>`` -> (args, '', False)."""
    rest = rest.rstrip()
    if rest.endswith(_UNFINISHED):
        return rest[: -len(_UNFINISHED)].rstrip(), "", False
    rest = _DURATION_RE.sub("", rest)
    m = _RESULT_RE.search(rest)
    if not m:
        raise TraceSyntaxError("no '= result'")
    return rest[: m.start()], rest[m.end() :], True


def parse_line(line: str):
    """Parse one line into ('call'|'unfinished'|'resumed'|'exit'|'signal'|'skip', pid, ...).

    Returns a tuple whose first item says the shape:
      ('call', pid, name, args_text, ret_text)
      ('unfinished', pid, name, args_text)
      ('resumed', pid, name, args_text, ret_text | None)   (None: unfinished again)
      ('exit', pid, status, signal)
      ('signal', pid, signal, info)
      ('skip', pid)                           blank, strace's own messages, superseded
    Raises TraceSyntaxError for anything else.
    """
    s = line.rstrip("\n").rstrip()
    if not s.strip():
        return ("skip", None)
    if s.startswith("strace: "):
        return ("skip", None)
    pid = None
    m = _PID_RE.match(s)
    if m:
        pid = int(m.group(1) or m.group(2))
        s = s[m.end() :]
    m = _TIME_RE.match(s)
    if m:
        s = s[m.end() :]
    m = _BRACKETS_RE.match(s)
    if m:
        s = s[m.end() :]
    if s.startswith("+++"):
        if m := _EXITED_RE.match(s):
            return ("exit", pid, int(m.group(1)), None)
        if m := _KILLED_RE.match(s):
            return ("exit", pid, None, m.group(1))
        if _SUPERSEDED_RE.match(s):
            return ("skip", pid)
        raise TraceSyntaxError("unknown +++ line")
    if s.startswith("---"):
        if m := _SIGNAL_RE.match(s):
            return ("signal", pid, m.group(1), m.group(2) or "")
        raise TraceSyntaxError("unknown --- line")
    if m := _RESUMED_RE.match(s):
        name, rest = m.group(1), m.group(2)
        args, ret, finished = _split_call(rest)
        if not finished:
            return ("resumed", pid, name, args, None)
        return ("resumed", pid, name, args, ret)
    if m := _CALL_RE.match(s):
        name, rest = m.group(1), m.group(2)
        args, ret, finished = _split_call(rest)
        if not finished:
            return ("unfinished", pid, name, args)
        return ("call", pid, name, args, ret)
    raise TraceSyntaxError("not an strace line")


def _join_args(first: str, second: str) -> str:
    first, second = first.rstrip(), second.lstrip()
    if not first:
        return second
    if not second:
        return first
    if first.endswith(",") or second.startswith(","):
        return f"{first} {second}"
    return f"{first}{second}"


def parse_trace(lines) -> Trace:
    """Parse strace output (an iterable of lines) into events and problems; never raises."""
    trace = Trace()
    pending: dict[int | None, tuple[int, str, str, int]] = {}  # pid -> (lineno, name, args, slot)
    for lineno, line in enumerate(lines, start=1):
        trace.lines = lineno
        try:
            shape = parse_line(line)
        except TraceSyntaxError as e:
            trace.problems.append(Problem(lineno, str(e), line.rstrip("\n")))
            continue
        kind, pid = shape[0], shape[1]
        if pid is not None:
            trace.has_pids = True
        try:
            if kind == "call":
                _, _, name, args, ret = shape
                trace.events.append(Call(lineno, pid, name, split_args(args), parse_ret(ret),
                                         lineno))
            elif kind == "unfinished":
                _, _, name, args = shape
                if pid in pending:
                    _flush(trace, pid, pending.pop(pid))
                split_args_ok = args  # checked when joined
                slot = -1
                if name in FORK_CALLS:  # the child may run before the parent resumes
                    slot = len(trace.events)
                    trace.events.append(None)
                pending[pid] = (lineno, name, split_args_ok, slot)
            elif kind == "resumed":
                _, _, name, args, ret = shape
                start = pending.pop(pid, None)
                if start is None or start[1] != name:
                    if start is not None:
                        pending[pid] = start
                    raise TraceSyntaxError(f"{name} resumed without its unfinished start")
                joined = _join_args(start[2], args)
                if ret is None:  # unfinished again
                    pending[pid] = (start[0], name, joined, start[3])
                    continue
                call = Call(start[0], pid, name, split_args(joined), parse_ret(ret), lineno)
                if start[3] >= 0:
                    trace.events[start[3]] = call
                else:
                    trace.events.append(call)
            elif kind == "exit":
                _, _, status, sig = shape
                if pid in pending:
                    _flush(trace, pid, pending.pop(pid))
                trace.events.append(Exit(lineno, pid, status, sig))
            elif kind == "signal":
                _, _, sig, info = shape
                trace.events.append(Signal(lineno, pid, sig, info))
        except TraceSyntaxError as e:
            trace.problems.append(Problem(lineno, str(e), line.rstrip("\n")))
    for pid, start in list(pending.items()):
        _flush(trace, pid, start)
    trace.events = [e for e in trace.events if e is not None]
    return trace


def _flush(trace: Trace, pid, start) -> None:
    """An unfinished call that never resumed (the process exited in it): result ``?``."""
    lineno, name, args, slot = start
    try:
        call = Call(lineno, pid, name, split_args(args), Ret(None, None, "?"), lineno)
    except TraceSyntaxError as e:
        trace.problems.append(Problem(lineno, str(e), f"{name}({args} <unfinished ...>"))
        return
    if slot >= 0:
        trace.events[slot] = call
    else:
        trace.events.append(call)


# --------------------------------------------------------------------------- argument values
_FD_RE = re.compile(r"^(-?\d+)(?:<(.*)>)?(?:\(deleted\))?$")  # strace 6: <memfd:x>(deleted)


def parse_int(tok: str) -> int:
    """``NULL``, ``0x1f``, ``4096``, ``-1``, ``0600`` (octal, as strace prints modes)."""
    tok = tok.strip()
    if tok == "NULL":
        return 0
    try:
        if re.fullmatch(r"-?0[0-7]+", tok):
            return int(tok, 8)
        return int(tok, 0)
    except ValueError:
        raise TraceSyntaxError(f"not a number: {tok!r}") from None


def parse_flags(tok: str) -> int:
    """``PROT_READ|PROT_WRITE``, ``IPC_CREAT|0600``, ``MAP_PRIVATE|0x40000``, ``0``."""
    tok = tok.strip()
    if tok.startswith("[") and tok.endswith("]"):  # clone3 exit_signal etc. never; be lenient
        tok = tok[1:-1]
    value = 0
    for part in tok.split("|"):
        part = part.strip()
        if part in CONSTANTS:
            value |= CONSTANTS[part]
        elif part[:1].isdigit() or part[:1] == "-":
            value |= parse_int(part)
        else:
            raise TraceSyntaxError(f"unknown constant {part}")
    return value


def parse_limit(tok: str) -> int:
    """An rlim value as strace prints it: ``8192*1024``, ``RLIM64_INFINITY``, ``0``."""
    tok = tok.strip()
    if tok in ("RLIM64_INFINITY", "RLIM_INFINITY"):
        return (1 << 64) - 1
    value = 1
    for part in tok.split("*"):
        value *= parse_int(part)
    return value


def parse_struct(tok: str) -> dict[str, str]:
    """``{rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}`` -> {field: text}."""
    tok = tok.strip()
    if not (tok.startswith("{") and tok.endswith("}")):
        raise TraceSyntaxError(f"not a structure: {tok!r}")
    out = {}
    for item in split_args(tok[1:-1]):
        name, eq, value = item.partition("=")
        if not eq:
            raise TraceSyntaxError(f"not a field: {item!r}")
        out[name.strip()] = value.strip()
    return out


def parse_caps(tok: str) -> set[int]:
    """A capability set: ``1<<CAP_CHOWN|1<<CAP_KILL``, ``0``, ``~(1<<CAP_X|...)``."""
    tok = tok.strip()
    if tok.startswith("~(") and tok.endswith(")"):
        return set(ALL_CAPS) - parse_caps(tok[2:-1])
    if tok in ("0", ""):
        return set()
    out = set()
    for part in tok.split("|"):
        part = part.strip()
        if part.startswith("1<<"):
            name = part[3:]
            if name in CAPABILITIES:
                out.add(CAPABILITIES[name])
                continue
            out.add(parse_int(name))
            continue
        value = parse_int(part)
        out |= {n for n in range(64) if value >> n & 1}
    return out


def parse_fd(tok: str) -> tuple[int, str | None]:
    """``3</usr/lib/libc.so.6>`` -> (3, '/usr/lib/libc.so.6'); ``-1`` -> (-1, None)."""
    m = _FD_RE.match(tok.strip())
    if not m:
        raise TraceSyntaxError(f"not a file descriptor: {tok!r}")
    path = m.group(2)
    if path is not None:
        path = re.sub(r"\\x([0-9a-fA-F]{2})", lambda x: chr(int(x.group(1), 16)), path)
        if path.endswith(" (deleted)"):
            path = path[: -len(" (deleted)")]
    return int(m.group(1)), path


def parse_argv(tok: str) -> list[str] | None:
    """execve's argv as strace shows it (``["./a.out", "x"]``), or None when it is not a
    list or strace abbreviated it (``...``): the strings' sizes are then unknown."""
    tok = tok.strip()
    if len(tok) < 2 or tok[0] != "[" or tok[-1] != "]":
        return None
    items = _ARGV_ITEM_RE.findall(tok[1:-1])
    rest = _ARGV_ITEM_RE.sub("", tok[1:-1]).replace(",", "").strip()
    if rest:  # "..." (abbreviated list) or a truncated string
        return None
    return [parse_string(f'"{body}"') for body in items]


def _traced_argv(call: Call, path: str) -> list[str]:
    """The argv an execve line recorded; [path] where strace abridged it (sizes unknown)."""
    argv = parse_argv(call.args[1]) if len(call.args) > 1 else None
    return [path] if argv is None else argv


def parse_string(tok: str) -> str:
    """A quoted strace string (``"./a.out"``), with C escapes undone."""
    tok = tok.strip()
    if tok.endswith("..."):
        tok = tok[:-3]
    if len(tok) < 2 or tok[0] != '"' or tok[-1] != '"':
        raise TraceSyntaxError(f"not a string: {tok!r}")
    body = tok[1:-1]
    try:
        return body.encode("latin-1", "backslashreplace").decode("unicode_escape")
    except UnicodeDecodeError:
        return body


def clone_flags(call: Call) -> int:
    """The flags of fork/vfork/clone/clone3 as one number (CSIGNAL byte included)."""
    if call.name == "fork":
        return CONSTANTS["SIGCHLD"]
    if call.name == "vfork":
        return CLONE_VM | CLONE_VFORK | CONSTANTS["SIGCHLD"]
    text = call.args[0] if call.args else ""
    if call.name == "clone3":
        text = text.split("=>")[0].strip()
        if text.startswith("{"):
            text = text[1:-1]
    for arg in split_args(text) if call.name == "clone3" else call.args:
        if arg.startswith("flags="):
            return parse_flags(arg[len("flags="):])
    if call.name == "clone" and len(call.args) >= 2 and "=" not in call.args[1]:
        return parse_flags(call.args[1])  # clone(stack, flags, ...) without names
    return 0


# --------------------------------------------------------------------------- the driver
@dataclass
class Proc:
    """A traced process (or thread) and the simulated task it is replayed on."""

    pid: int | None  # recorded pid (None without -f)
    comm: str
    task: object = None  # guestkernel Task
    leader: Proc | None = None  # the process whose mm a CLONE_VM child shares
    vm_process: bool = False  # a CLONE_VM child that is a process (vfork), not a thread
    # sorted [start, end) ranges a traced call mapped at some point: their state (mapped,
    # or unmapped since) is what the trace accounts for; the rest is execve's
    known: list = field(default_factory=list)
    brk_synced: bool = False
    exited: bool = False
    # memfd descriptors: recorded path (/memfd:NAME) -> simulated fd, held open as the
    # program held it (a memfd has no name to reopen it by)
    memfds: dict = field(default_factory=dict)
    # recorded fd -> O_ACCMODE of the open/openat that made it, where the trace has it
    fd_modes: dict = field(default_factory=dict)
    limits_seen: set = field(default_factory=set)  # RLIMIT_* read or set in this image
    caps_seen: bool = False  # capget/capset seen in this image
    maps: str | None = None  # /proc/PID/maps just before exit

    @property
    def owner(self) -> Proc:
        return self.leader if self.leader is not None else self

    @property
    def label(self) -> str:
        return "pid ?" if self.pid is None else f"pid {self.pid}"


def _add(known: list, start: int, end: int) -> None:
    if end <= start:
        return
    _remove(known, start, end)
    known.append([start, end])
    known.sort()
    merged: list = []
    for s, e in known:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    known[:] = merged


def _remove(known: list, start: int, end: int) -> None:
    out = []
    for s, e in known:
        if e <= start or s >= end:
            out.append([s, e])
            continue
        if s < start:
            out.append([s, start])
        if e > end:
            out.append([end, e])
    known[:] = out


def _pieces(known: list, start: int, end: int) -> tuple[list[tuple[int, int]], bool]:
    """The known parts of [start, end) and whether they cover all of it."""
    parts = [(max(s, start), min(e, end)) for s, e in known if s < end and e > start]
    covered = sum(e - s for s, e in parts)
    return parts, covered == end - start


class ReplayError(Exception):
    """The guest cannot run the replay at all (e.g. no address-space code)."""


class Replayer:
    """Apply a parsed trace to a fresh guest, writing one line per finding to ``out``.

    kernel   a booted guestkernel Kernel (x86_64)
    out      callable taking one line of text
    """

    def __init__(self, kernel, out=print) -> None:
        self.kernel = kernel
        self.out = out
        self.procs: dict[int | None, Proc] = {}
        self.order: list[Proc] = []  # processes in order of appearance, for --maps
        self.shm_ids: dict[int, int] = {}  # recorded shmid -> simulated shmid
        self.shm_sizes: dict[int, int] = {}  # recorded shmid -> segment size, bytes
        self.file_sizes: dict[str, int] = {}  # path -> bytes implied by the trace
        self.files_made: set[str] = set()
        self.calls = 0
        self.divergences = 0
        self.outside = 0
        self.root = False  # start the traced program as uid 0 with every capability
        # map the traced executable and its ELF interpreter when this machine has them
        # (hvsim replay does; off by default so that a simulation's results never depend
        # on what the host has installed)
        self.executables = False
        self.placement = "trace"  # or "kernel": the guest chooses every address itself
        self.placement_differences = 0
        self.trace_dir: str | None = None  # where to look for an executable too
        self.cwd: str | None = None  # the traced program's working directory
        self.images: dict[int, list] = {}  # execve line -> the events of that image
        self.relro = 0  # of the calls outside the trace: ld.so's RELRO mprotects
        self.quiet = False  # leave out the line of each RELRO mprotect
        self.unsupported: set[str] = set()
        self.skipped: dict[str, int] = {}  # system calls not modelled -> lines

    # ---------------------------------------------------------------- entry points
    def run(self, trace: Trace) -> tuple[int, int]:
        """Replay every event; return (calls, divergences)."""
        self.prepare(trace)
        for event in trace.events:
            self.apply(event)
        self.finish()
        return self.calls, self.divergences

    def prepare(self, trace: Trace) -> None:
        """Read what the whole trace implies before the first event: file sizes, the
        working directory (-y prints it after AT_FDCWD), and each execve's events up to
        the image's end (where the real kernel put the executable and the loader)."""
        self._scan_file_sizes(trace)
        image: dict = {}
        for ev in trace.events:
            if not isinstance(ev, Call):
                continue
            if self.cwd is None:
                for a in ev.args:
                    if a.startswith("AT_FDCWD<") and a.endswith(">"):
                        self.cwd = a[len("AT_FDCWD<"):-1]
                        break
            if ev.name == "execve" and not ev.ret.failed:
                image[ev.pid] = self.images[ev.lineno] = []
            elif ev.pid in image:
                image[ev.pid].append(ev)

    def apply(self, event) -> None:
        """Replay one event (a workload can spread them over simulated time)."""
        try:
            if isinstance(event, Call):
                self._call(event)
            elif isinstance(event, Exit):
                self._exit(event)
        except TraceSyntaxError as e:
            self.out(str(Problem(event.lineno, str(e), _render(event))))
        except Exception as e:  # noqa: BLE001 - e.g. spawn failing: one line, no crash
            self.divergences += 1
            self.out(f"line {event.lineno}: {_render(event)}: the simulated kernel failed: "
                     f"{type(e).__name__}: {e}")

    def finish(self) -> None:
        """The end of the trace: snapshot the maps of processes still running."""
        for proc in self.order:
            if not proc.exited and proc.leader is None and proc.maps is None:
                proc.maps = self._read_maps(proc)

    def task_of(self, pid):
        """The guest Task replaying recorded ``pid`` (a thread's is its process's), or None."""
        proc = self.procs.get(pid)
        return proc.owner.task if proc is not None else None

    def maps_report(self) -> list[str]:
        """For each process, /proc/PID/maps just before it exited (or at the end)."""
        lines = []
        for proc in self.order:
            if proc.leader is not None:
                continue
            when = "at exit" if proc.exited else "at end of trace"
            lines.append(f"== {proc.label} ({proc.comm}) {when} ==")
            lines.extend((proc.maps or "").rstrip("\n").split("\n") if proc.maps else [])
        return lines

    # ---------------------------------------------------------------- bookkeeping
    def _scan_file_sizes(self, trace: Trace) -> None:
        for ev in trace.events:
            if isinstance(ev, Call) and ev.name == "mmap" and len(ev.args) == 6:
                try:
                    fd, path = parse_fd(ev.args[4])
                    flags = parse_flags(ev.args[3])
                    if flags & MAP_ANONYMOUS or fd < 0:
                        continue
                    path = path or f"/replay/{ev.pid}/fd{fd}"
                    end = parse_int(ev.args[5]) + parse_int(ev.args[1])
                except TraceSyntaxError:
                    continue
                self.file_sizes[path] = max(self.file_sizes.get(path, 0), end)

    def _proc(self, pid, comm: str | None = None) -> Proc:
        proc = self.procs.get(pid)
        if proc is None:
            # First sight of a pid that no traced fork created: the traced command itself
            # (or a process strace attached to). Its image was set up by an execve we
            # replay as spawn.
            name = comm or (f"pid{pid}" if pid is not None else "traced")
            proc = Proc(pid, name, task=self._spawn(name))
            self._register(proc)
        return proc

    def _spawn(self, name: str, **kw):
        task = self.kernel.spawn(name, **kw)
        if self.root and hasattr(task, "make_root"):
            task.make_root()
        return task

    def _task_of(self, forked):
        """fork() gives the child Task, or its pid (the Task is then kernel.tasks[pid])."""
        if isinstance(forked, int):
            return self.kernel.tasks[forked]
        return forked

    def _register(self, proc: Proc) -> None:
        self.procs[proc.pid] = proc
        self.order.append(proc)

    def _read_maps(self, proc: Proc) -> str:
        task = proc.owner.task
        try:
            return self.kernel.procfs.read(f"/proc/{task.pid}/maps")
        except Exception as e:  # noqa: BLE001 - report, never crash
            return f"(cannot read /proc/{getattr(task, 'pid', '?')}/maps: {e})\n"

    def _diverge(self, call: Call, proc: Proc, message: str) -> None:
        self.divergences += 1
        self.out(f"line {call.lineno}: {proc.label}: {_render(call)}: {message}")

    def _outside(self, call: Call, proc: Proc) -> None:
        self.outside += 1
        if call.name == "mprotect" and len(call.args) > 2 and call.args[2].strip() == "PROT_READ":
            # ld.so (or a static binary's own start-up) making an image's PT_GNU_RELRO
            # read-only after relocation (_dl_protect_relro), on the executable or the
            # loader that execve mapped
            self.relro += 1
            if not self.quiet:
                self.out(f"line {call.lineno}: {proc.label}: {_render(call)}: outside the "
                         "trace: ld.so's RELRO mprotect of an image execve mapped")
            return
        self.out(
            f"line {call.lineno}: {proc.label}: {_render(call)}: outside the trace "
            "(touches memory no traced call mapped, e.g. mapped by execve)"
        )

    def _sys(self, proc: Proc, name: str, *args, **kw):
        """Call task.<name>(*args): returns (value, None) or (None, errno)."""
        fn = getattr(proc.owner.task, name, None)
        if fn is None:
            raise _Unsupported(name)
        try:
            return fn(*args, **kw), None
        except OSError as e:
            return None, e.errno

    # ---------------------------------------------------------------- real executables
    def _host_file(self, path: str) -> str | None:
        """The file on this machine the traced path names: absolute, or relative to the
        traced program's working directory, or (for a fixture) beside the trace file."""
        cands = [path] if os.path.isabs(path) else []
        if not os.path.isabs(path) and self.cwd:
            cands.append(os.path.join(self.cwd, path))
        if self.trace_dir:
            cands.append(os.path.join(self.trace_dir, os.path.basename(path)))
        for c in cands:
            if os.path.isfile(c):
                return c
        return None

    def _read_elf(self, host: str, name: str):
        from guestkernel.binfmt_elf import ElfError, parse_elf

        try:
            size = os.path.getsize(host)
            with open(host, "rb") as f:
                data = f.read(1 << 20)
            return parse_elf(name, data, size)
        except (OSError, ElfError):
            return None

    def _elf_layout(self, call: Call, path: str) -> tuple[dict | None, str]:
        """The real executable and interpreter of an execve, as binfmt_elf maps them, or
        (None, why not). Their places: the defaults without randomisation under
        --placement kernel; otherwise where the trace shows the real kernel put them,
        found from the RELRO mprotect ld.so made on each (the one of the right length
        outside every traced mapping: the lowest address for the executable, the highest
        for the loader), or the defaults if the trace has none (setarch -R)."""
        if not self.executables:
            return None, "real executables off"
        host = self._host_file(path)
        if host is None:
            return None, "not on this machine"
        name = os.path.normpath(os.path.join(self.cwd, path)) if self.cwd else os.path.realpath(host)
        exe = self._read_elf(host, name)
        if exe is None:
            return None, "not an x86-64 ELF executable"
        interp = None
        if exe.interp is not None:
            ihost = exe.interp if os.path.isfile(exe.interp) else None
            interp = self._read_elf(ihost, os.path.realpath(ihost)) if ihost else None
            if interp is None:
                return None, f"its interpreter {exe.interp} is not on this machine"
        layout = {"exe": exe, "interp": interp}
        if self.placement == "kernel":
            return layout, ""
        events = self.images.get(call.lineno, [])
        mapped: list = []
        relro: list = []
        for ev in events:
            if ev.ret.failed or ev.ret.value is None:
                continue
            try:
                if ev.name in ("mmap", "mmap2") and len(ev.args) > 1:
                    mapped.append((ev.ret.value, ev.ret.value + _page_align(parse_int(ev.args[1]))))
                elif ev.name == "mprotect" and len(ev.args) > 2 and ev.args[2].strip() == "PROT_READ":
                    relro.append((parse_int(ev.args[0]), _page_align(parse_int(ev.args[1]))))
            except TraceSyntaxError:
                continue
        outside = [(a, n) for a, n in relro if not any(s <= a < e for s, e in mapped)]

        def find(img, pick):
            r = img.relro_range(0)
            if r is None:
                return None
            cands = [a - r[0] for a, n in outside if n == r[1] - r[0] and not (a - r[0]) % PAGE_SIZE]
            return pick(cands) if cands else None

        from guestkernel.binfmt_elf import ET_DYN

        if exe.e_type == ET_DYN:
            bias = find(exe, min)
            if bias is not None:
                layout["load_bias"] = bias
        if interp is not None:
            ibias = find(interp, max)
            if ibias is not None:
                layout["interp_bias"] = ibias
        return layout, ""

    def _known_image(self, proc: Proc, layout: dict) -> None:
        """The executable's and the loader's spans are accounted for: calls on them
        (ld.so's RELRO mprotects) are replayed and compared."""
        task = proc.owner.task
        for v in task.mm.mm_mt.vmas:
            f = v.vm_file
            if f is not None and f.inode.path in (layout["exe"].path, getattr(layout.get("interp"), "path", None)):
                _add(proc.owner.known, v.vm_start, v.vm_end)
            elif f is None and v.vm_ops is None and v.vm_end <= task.mm.start_brk and (
                    v.vm_start >= task.mm.end_data):
                _add(proc.owner.known, v.vm_start, v.vm_end)  # the bss

    def _compare(self, call: Call, proc: Proc, value, err, *, identity=False) -> bool:
        """Compare a simulated result with the recorded one; True if they agree."""
        rec = call.ret
        if rec.value is None and not rec.failed:  # "?": nothing to compare
            return True
        if rec.failed:
            if err is not None and ERRNO_NAME.get(err) == rec.errno:
                return True
            if err is not None and ERRNO.get(rec.errno) == err:
                return True
            self._diverge(call, proc, f"simulated {_fmt(value, err)}, trace says {rec.text}")
            return False
        if err is not None or (not identity and _as_int(value) != rec.value):
            self._diverge(call, proc, f"simulated {_fmt(value, err)}, trace says {rec.text}")
            return False
        return True

    # ---------------------------------------------------------------- dispatch
    def _call(self, call: Call) -> None:
        if call.name in ("wait4", "waitpid") and call.ret.value and call.ret.value > 0:
            self._reap(call)
            return
        handler = getattr(self, "_sys_" + call.name, None)
        if handler is None:
            # not a memory/process call we model (arch_prctl, read, ...): counted, listed
            # at the end
            self.skipped[call.name] = self.skipped.get(call.name, 0) + 1
            return
        if call.name == "execve" and call.ret.failed:
            return  # not replayed: the guest's file system holds no executables
        if call.name == "execve" and call.pid not in self.procs:
            # the traced command itself: spawn is execve of a fresh process
            path = parse_string(call.args[0]) if call.args else "?"
            comm = os.path.basename(path) or path
            argv = _traced_argv(call, path)
            self.calls += 1
            layout, _ = self._elf_layout(call, path)
            if layout is not None:
                try:
                    task = self._spawn(comm, argv=argv, elf=layout)
                except OSError as e:
                    self.out(f"line {call.lineno}: {_render(call)}: the real executable "
                             f"cannot be laid out ({e}); a stand-in image is used")
                    layout = None
            if layout is None:
                task = self._spawn(comm, argv=argv)
            proc = Proc(call.pid, comm, task=task)
            self._register(proc)
            if layout is not None:
                self._known_image(proc, layout)
            return
        proc = self._proc(call.pid)
        if proc.exited:
            self.out(f"line {call.lineno}: {proc.label}: {_render(call)}: after the process exited")
            return
        self.calls += 1
        try:
            handler(call, proc)
        except _Unsupported as e:
            self.unsupported.add(e.name)
            self._diverge(call, proc, f"the simulated kernel has no {e.name}()")
        except (IndexError, TraceSyntaxError) as e:
            self.calls -= 1
            reason = str(e) if isinstance(e, TraceSyntaxError) else "too few arguments"
            self.out(str(Problem(call.lineno, reason, _render(call))))
        except Exception as e:  # noqa: BLE001 - a simulator bug is one line, never a crash
            self._diverge(call, proc, f"the simulated kernel failed: {type(e).__name__}: {e}")

    # ---------------------------------------------------------------- process calls
    def _sys_execve(self, call: Call, proc: Proc) -> None:
        path = parse_string(call.args[0])
        comm = os.path.basename(path) or path
        if proc.leader is not None:
            # A vfork-like child leaves the shared mm: a process of its own. A thread's
            # execve replaces its whole thread group's image.
            leader = proc.leader
            if proc.vm_process:
                task, err = self._sys(leader, "fork")
                if err is not None:
                    self._diverge(call, proc, f"fork for the vfork child: {_fmt(None, err)}")
                    return
                task = self._task_of(task)
                proc.task, proc.leader, proc.vm_process = task, None, False
                proc.known = [list(k) for k in leader.known]
                self.order.append(proc)
            else:  # a thread's execve replaces the whole thread group's image
                proc.task, proc.leader = leader.task, None
                proc.known = leader.known
                self.order[self.order.index(leader)] = proc
                self.procs.pop(leader.pid, None)
        proc.comm = comm
        layout, _ = self._elf_layout(call, path)
        value = err = None
        if layout is not None:
            value, err = self._sys(proc, "execve", layout["exe"].path, _traced_argv(call, path),
                                   elf=layout)
            if err is not None:
                layout = None
        if layout is None:
            fs = getattr(self.kernel, "fs", None)
            if fs is not None and hasattr(fs, "create") and fs.lookup(path) is None:
                fs.create(path, 0)  # the trace shows it exists; its mappings are execve's own
            value, err = self._sys(proc, "execve", path, _traced_argv(call, path))
        if err is None:
            proc.known = []
            proc.brk_synced = False
            proc.limits_seen = set()
            proc.caps_seen = False
            if layout is not None:
                self._known_image(proc, layout)
        self._compare(call, proc, 0 if err is None else None, err)

    def _fork(self, call: Call, proc: Proc) -> None:
        flags = clone_flags(call)
        if call.ret.failed or call.ret.value is None:
            return  # a failed fork changes nothing; nothing to compare it with
        child_pid = call.ret.value
        if flags & CLONE_VM:
            child = Proc(child_pid, proc.comm, leader=proc.owner,
                         vm_process=not flags & CLONE_THREAD)
            self.procs[child_pid] = child
            return
        task, err = self._sys(proc, "fork")
        if not self._compare(call, proc, task, err, identity=True):
            return
        task = self._task_of(task)
        child = Proc(child_pid, proc.owner.comm, task=task,
                     known=[list(k) for k in proc.owner.known], brk_synced=True,
                     memfds=dict(proc.owner.memfds), fd_modes=dict(proc.owner.fd_modes),
                     limits_seen=set(proc.owner.limits_seen), caps_seen=proc.owner.caps_seen)
        self._register(child)

    _sys_fork = _sys_vfork = _sys_clone = _sys_clone3 = _fork

    def _exit_proc(self, proc: Proc, status: int, signal: int = 0) -> None:
        owner = proc.owner
        if proc.leader is not None and proc.pid is not None:
            self.procs.pop(proc.pid, None)  # a thread or vfork child: the mm lives on
            return
        if owner.exited:
            return
        owner.maps = self._read_maps(owner)
        owner.exited = True
        task = owner.task
        if signal and hasattr(task, "kill"):
            task.kill(signal)  # killed by the signal: its wait status says so
            if getattr(task, "state", "dead") != "running":
                return
        fn = getattr(task, "exit", None)
        if fn is None:
            raise _Unsupported("exit")
        try:
            fn(status)
        except OSError:
            pass

    def _sys_exit_group(self, call: Call, proc: Proc) -> None:
        status = parse_int(call.args[0]) if call.args else 0
        if proc.leader is not None and proc.vm_process:
            self._exit_proc(proc, status)
            return
        owner = proc.owner
        for p in list(self.procs.values()):  # the whole thread group goes
            if p.leader is owner and p.pid is not None:
                self.procs.pop(p.pid, None)
        self._exit_proc(owner, status)

    def _sys_exit(self, call: Call, proc: Proc) -> None:
        status = parse_int(call.args[0]) if call.args else 0
        if proc.leader is not None:
            self._exit_proc(proc, status)
            return
        if any(p.leader is proc for p in self.procs.values()):
            return  # the leader thread ends; the process lives while its threads do
        self._exit_proc(proc, status)

    def _exit(self, ev: Exit) -> None:
        """``+++ exited/killed +++``: the process is gone, if no exit call said so already."""
        proc = self.procs.get(ev.pid)
        if proc is None:
            return
        if proc.leader is not None and not proc.vm_process and ev.signal is None:
            self.procs.pop(proc.pid, None)  # a thread ended; its process lives on
            return
        sig = CONSTANTS.get(ev.signal, 0) if ev.signal is not None else 0
        status = ev.status if ev.status is not None else 128 + sig
        try:
            self._exit_proc(proc.owner if ev.signal is not None else proc, status, sig)
        except _Unsupported as e:
            self.unsupported.add(e.name)
            self.out(f"line {ev.lineno}: {proc.label}: the simulated kernel has no exit()")

    def _reap(self, call: Call) -> None:
        """wait4 returned a child's pid: without -f that is the only sign the child exited."""
        child = self.procs.get(call.ret.value)
        if child is None or child.exited or child.leader is not None or child.pid == call.pid:
            return
        try:
            self._exit_proc(child, 0)
        except _Unsupported as e:
            self.unsupported.add(e.name)

    # ---------------------------------------------------------------- memory calls
    def _sys_brk(self, call: Call, proc: Proc) -> None:
        addr = parse_int(call.args[0])
        owner = proc.owner
        rec = call.ret.value
        if not owner.brk_synced:
            owner.brk_synced = True
            if rec is not None and addr <= rec:  # brk(NULL) or a failed/shrinking call
                mm = getattr(owner.task, "mm", None)
                if (self.placement == "kernel" and mm is not None
                        and getattr(mm, "brk", rec) != rec):
                    self._misplaced(call, proc, mm.brk)
                self._set_brk_base(owner, rec)
        task = owner.task
        old = getattr(getattr(task, "mm", None), "brk", None)
        value, err = self._sys(proc, "brk", addr)
        if self._compare(call, proc, value, err) and rec is not None:
            start = getattr(task.mm, "start_brk", None)
            if start is not None and old is not None:
                # the heap the trace shows: [start_brk, PAGE_ALIGN(brk)); what a shrink
                # gives back stays known (known to be empty)
                _add(owner.known, start, _page_align(rec))

    def _set_brk_base(self, proc: Proc, addr: int) -> None:
        """Place the simulated heap where execve placed the real one (start_brk = brk)."""
        mm = getattr(proc.task, "mm", None)
        if mm is None or not hasattr(mm, "start_brk"):
            return
        if mm.brk != mm.start_brk or mm.start_brk == addr:
            return  # the simulated heap already has pages: leave it alone
        mm.start_brk = mm.brk = addr

    def _sys_mmap(self, call: Call, proc: Proc) -> None:
        a = call.args
        addr, length = parse_int(a[0]), parse_int(a[1])
        prot, flags = parse_flags(a[2]), parse_flags(a[3])
        fd, path = parse_fd(a[4])
        offset = parse_int(a[5])
        rec = call.ret
        choose = False  # the guest places it (--placement kernel)
        if not rec.failed and rec.value is not None and not flags & (MAP_FIXED | MAP_FIXED_NOREPLACE):
            if self.placement == "kernel":
                choose = True
            else:
                addr, flags = rec.value, flags | MAP_FIXED_NOREPLACE
        sim_fd = -1
        held = False
        if not flags & MAP_ANONYMOUS and fd >= 0:
            path = path or f"/replay/{call.pid}/fd{fd}"
            held = _is_memfd(path)
            sim_fd, err = (self._memfd(proc, path) if held
                           else self._open_file(proc, path, proc.owner.fd_modes.get(fd)))
            if err is not None:
                self._diverge(call, proc, f"the guest cannot open {path}: {_fmt(None, err)}")
                return
        try:
            value, err = self._sys(proc, "mmap", addr, length, prot, flags, sim_fd, offset)
            if choose and err is None and value != rec.value:
                self._misplaced(call, proc, value)
                # back in step with the trace: the mapping goes where the real one was
                self._sys(proc, "munmap", value, length)
                value, err = self._sys(proc, "mmap", rec.value, length, prot,
                                       flags | MAP_FIXED_NOREPLACE, sim_fd, offset)
        finally:
            if sim_fd >= 0 and not held:
                self._sys(proc, "close", sim_fd)
        if self._compare(call, proc, value, err) and not rec.failed and rec.value is not None:
            _add(proc.owner.known, rec.value, rec.value + _page_align(length))

    def _misplaced(self, call: Call, proc: Proc, value) -> None:
        """--placement kernel: the guest chose another address than the real kernel."""
        self.placement_differences += 1
        self.out(f"line {call.lineno}: {proc.label}: {_render(call)}: placed at "
                 f"{_fmt(value, None)} by the guest")

    _sys_mmap2 = _sys_mmap

    def _sys_openat(self, call: Call, proc: Proc) -> None:
        """Not replayed (files are made on demand): the access mode is noted for the
        descriptor, so a later mmap of it has the rights the program's had."""
        self.calls -= 1
        if call.ret.failed or call.ret.value is None:
            return
        flags = call.args[2] if call.name == "openat" and len(call.args) > 2 else (
            call.args[1] if len(call.args) > 1 else "O_RDONLY")
        try:
            mode = parse_flags(flags) & 0o3
        except TraceSyntaxError:
            return
        proc.owner.fd_modes[call.ret.value] = mode

    _sys_open = _sys_openat

    def _open_file(self, proc: Proc, path: str, mode: int | None = None
                   ) -> tuple[int | None, int | None]:
        """(fd, None) on the guest file ``path``, created with the size the trace implies
        and opened with ``mode`` (O_RDWR when the trace did not record the open);
        (None, errno) if the guest refuses."""
        if mode is None:
            mode = O_RDWR
        if path in self.files_made:
            return self._sys(proc, "open", path, mode, 0)
        size = self.file_sizes.get(path, 0)
        fs = getattr(self.kernel, "fs", None)
        if fs is not None and hasattr(fs, "create"):
            # set up like a disk image would be: the file exists before the program runs
            inode = fs.lookup(path) if hasattr(fs, "lookup") else None
            if inode is None:
                fs.create(path, size)
            elif getattr(inode, "size", size) < size:
                inode.size = size
            fd, err = self._sys(proc, "open", path, mode, 0)
        else:
            fd, err = self._sys(proc, "open", path, O_RDWR | O_CREAT, 0o644)
            if err is None and size:
                self._sys(proc, "ftruncate", fd, size)
        if err is None:
            self.files_made.add(path)
        return fd, err

    def _memfd(self, proc: Proc, path: str) -> tuple[int | None, int | None]:
        """The simulated descriptor of the memfd the trace names ``/memfd:NAME``: the one
        memfd_create made, or (a trace that did not record memfd_create) a memfd made now
        with the size the trace implies."""
        owner = proc.owner
        fd = owner.memfds.get(path)
        if fd is not None:
            return fd, None
        fd, err = self._sys(proc, "memfd_create", path[len("/memfd:"):], 0)
        if err is not None:
            return None, err
        size = self.file_sizes.get(path, 0)
        if size:
            self._sys(proc, "ftruncate", fd, size)
        owner.memfds[path] = fd
        return fd, None

    def _sys_memfd_create(self, call: Call, proc: Proc) -> None:
        name = parse_string(call.args[0])
        flags = parse_flags(call.args[1]) if len(call.args) > 1 else 0
        value, err = self._sys(proc, "memfd_create", name, flags)
        if self._compare(call, proc, value, err, identity=True) and err is None:
            _, path = parse_fd(call.ret.text.split()[0]) if call.ret.text else (None, None)
            proc.owner.memfds[path or f"/memfd:{name}"] = value

    def _fd_call(self, call: Call, proc: Proc, name: str, *rest) -> None:
        """ftruncate/fcntl on the file the -y path names (a memfd's own descriptor, or
        the guest file opened for the call)."""
        fd, path = parse_fd(call.args[0])
        path = path or f"/replay/{call.pid}/fd{fd}"
        if _is_memfd(path):
            sim_fd, err = self._memfd(proc, path)
        else:
            sim_fd, err = self._open_file(proc, path, proc.owner.fd_modes.get(fd))
        if err is not None:
            self._diverge(call, proc, f"the guest cannot open {path}: {_fmt(None, err)}")
            return
        try:
            value, err = self._sys(proc, name, sim_fd, *rest)
        finally:
            if not _is_memfd(path):
                self._sys(proc, "close", sim_fd)
        self._compare(call, proc, value, err)

    def _sys_ftruncate(self, call: Call, proc: Proc) -> None:
        self._fd_call(call, proc, "ftruncate", parse_int(call.args[1]))

    def _sys_fcntl(self, call: Call, proc: Proc) -> None:
        cmd = call.args[1].strip() if len(call.args) > 1 else ""
        if cmd not in ("F_ADD_SEALS", "F_GET_SEALS"):
            self.calls -= 1
            self.skipped[f"fcntl({cmd})"] = self.skipped.get(f"fcntl({cmd})", 0) + 1
            return
        arg = parse_flags(call.args[2]) if len(call.args) > 2 else 0
        self._fd_call(call, proc, "fcntl", CONSTANTS[cmd], arg)

    def _sys_mseal(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "mseal", parse_int(call.args[0]),
                         parse_int(call.args[1]), parse_flags(call.args[2]))

    # strace before 6.10 does not know mseal (x86_64 number 462)
    _sys_syscall_0x1ce = _sys_mseal

    # ---------------------------------------------------------------- limits, credentials
    def _skip(self, what: str) -> None:
        self.calls -= 1
        self.skipped[what] = self.skipped.get(what, 0) + 1

    def _limit_call(self, call: Call, proc: Proc, target: Proc, res_name: str,
                    new: str | None, old: str | None) -> None:
        """One prlimit64/setrlimit/getrlimit on ``target``. The limits a program starts
        with come from whoever started it (a shell's ulimit), which the trace shows only
        where the program reads them: the first read of a resource in a process image sets
        the simulated limit to the recorded one; later ones are compared."""
        if res_name not in MEMORY_RLIMITS:
            self._skip(f"{call.name}({res_name})")
            return
        res = RLIMITS[res_name]
        task = target.owner.task
        rec = call.ret
        if old is not None and old != "NULL" and not rec.failed:
            f = parse_struct(old)
            want = (parse_limit(f["rlim_cur"]), parse_limit(f["rlim_max"]))
            if res not in target.owner.limits_seen:
                task.rlimits[res] = list(want)
            elif tuple(task.rlimits[res]) != want:
                self._diverge(call, proc, f"simulated {res_name} {tuple(task.rlimits[res])}, "
                                          f"trace says {want}")
                return
        target.owner.limits_seen.add(res)
        if new is None or new == "NULL":
            self._compare(call, proc, 0, None)
            return
        f = parse_struct(new)
        value, err = self._sys(target, "prlimit", res,
                               (parse_limit(f["rlim_cur"]), parse_limit(f["rlim_max"])))
        self._compare(call, proc, 0 if err is None else None, err)

    def _sys_prlimit64(self, call: Call, proc: Proc) -> None:
        pid = parse_int(call.args[0])
        target = proc if pid in (0, proc.pid) else self.procs.get(pid)
        if target is None:
            self._skip("prlimit64(another process)")
            return
        self._limit_call(call, proc, target, call.args[1].strip(), call.args[2],
                         call.args[3] if len(call.args) > 3 else None)

    def _sys_setrlimit(self, call: Call, proc: Proc) -> None:
        self._limit_call(call, proc, proc, call.args[0].strip(), call.args[1], None)

    def _sys_getrlimit(self, call: Call, proc: Proc) -> None:
        self._limit_call(call, proc, proc, call.args[0].strip(), None, call.args[1])

    _sys_ugetrlimit = _sys_getrlimit

    def _sys_capget(self, call: Call, proc: Proc) -> None:
        """capget: like a limit, the capabilities a program starts with are its
        starter's; the first capget of a process image sets the simulated ones to what it
        read, later ones are compared."""
        if call.ret.failed or len(call.args) < 2 or call.args[1].strip() == "NULL":
            self._skip("capget")
            return
        f = parse_struct(call.args[1])
        eff, perm = parse_caps(f["effective"]), parse_caps(f["permitted"])
        task = proc.owner.task
        if not proc.owner.caps_seen:
            proc.owner.caps_seen = True
            task.caps, task.cap_permitted = set(eff), set(perm)
        elif (task.caps, task.cap_permitted) != (eff, perm):
            self._diverge(call, proc, "simulated capabilities differ: effective "
                          f"{sorted(task.caps)}, permitted {sorted(task.cap_permitted)}")
            return
        self._compare(call, proc, 0, None)

    def _sys_capset(self, call: Call, proc: Proc) -> None:
        f = parse_struct(call.args[1])
        proc.owner.caps_seen = True
        value, err = self._sys(proc, "capset", parse_caps(f["effective"]),
                               parse_caps(f["permitted"]))
        self._compare(call, proc, value, err)

    def _sys_setuid(self, call: Call, proc: Proc) -> None:
        value, err = self._sys(proc, "setuid", parse_int(call.args[0]))
        self._compare(call, proc, value, err)

    def _sys_setresuid(self, call: Call, proc: Proc) -> None:
        value, err = self._sys(proc, "setresuid", *(parse_int(a) for a in call.args[:3]))
        self._compare(call, proc, value, err)

    def _sys_setreuid(self, call: Call, proc: Proc) -> None:
        value, err = self._sys(proc, "setreuid", *(parse_int(a) for a in call.args[:2]))
        self._compare(call, proc, value, err)

    def _range_call(self, call: Call, proc: Proc, name: str, addr: int, length: int,
                    *rest) -> None:
        """Replay a call on [addr, addr+length), or only its parts the trace accounts for."""
        end = addr + _page_align(length)
        parts, whole = _pieces(proc.owner.known, addr, end)
        if whole or call.ret.failed:
            value, err = self._sys(proc, name, addr, length, *rest)
            self._compare(call, proc, value, err)
            return
        for s, e in parts:
            self._sys(proc, name, s, e - s, *rest)
        self._outside(call, proc)

    def _sys_munmap(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "munmap", parse_int(call.args[0]), parse_int(call.args[1]))

    def _sys_mprotect(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "mprotect", parse_int(call.args[0]),
                         parse_int(call.args[1]), parse_flags(call.args[2]))

    def _sys_madvise(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "madvise", parse_int(call.args[0]),
                         parse_int(call.args[1]), parse_flags(call.args[2]))

    def _sys_mlock(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "mlock", parse_int(call.args[0]), parse_int(call.args[1]))

    def _sys_mlock2(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "mlock2", parse_int(call.args[0]),
                         parse_int(call.args[1]), parse_flags(call.args[2]))

    def _sys_munlock(self, call: Call, proc: Proc) -> None:
        self._range_call(call, proc, "munlock", parse_int(call.args[0]), parse_int(call.args[1]))

    def _sys_prctl(self, call: Call, proc: Proc) -> None:
        """PR_SET_THP_DISABLE / PR_GET_THP_DISABLE are replayed; other options are not
        memory calls hvsim models: counted and listed like unknown calls."""
        if not call.args or call.args[0].strip() not in ("PR_SET_THP_DISABLE", "PR_GET_THP_DISABLE"):
            self.calls -= 1
            self.skipped["prctl"] = self.skipped.get("prctl", 0) + 1
            return
        value, err = self._sys(proc, "prctl", *(parse_flags(a) for a in call.args))
        self._compare(call, proc, value, err)

    def _sys_mlockall(self, call: Call, proc: Proc) -> None:
        value, err = self._sys(proc, "mlockall", parse_flags(call.args[0]))
        self._compare(call, proc, value, err)

    def _sys_munlockall(self, call: Call, proc: Proc) -> None:
        value, err = self._sys(proc, "munlockall")
        self._compare(call, proc, value, err)

    def _sys_mremap(self, call: Call, proc: Proc) -> None:
        a = call.args
        old, old_size, new_size = parse_int(a[0]), parse_int(a[1]), parse_int(a[2])
        flags = parse_flags(a[3])
        new_addr = parse_int(a[4]) if len(a) > 4 else 0
        rec = call.ret
        known = proc.owner.known
        _, whole = _pieces(known, old, old + _page_align(max(old_size, 1)))
        if not whole and not rec.failed:
            self._outside(call, proc)
            return
        choose = False
        if (not rec.failed and rec.value is not None and rec.value != old
                and not flags & MREMAP_FIXED):
            if self.placement == "kernel":
                choose = True
            else:
                flags |= MREMAP_MAYMOVE | MREMAP_FIXED
                new_addr = rec.value
        if flags & MREMAP_FIXED:
            value, err = self._sys(proc, "mremap", old, old_size, new_size, flags, new_addr)
        else:
            value, err = self._sys(proc, "mremap", old, old_size, new_size, flags)
        if choose and err is None and value != rec.value:
            self._misplaced(call, proc, value)
            value, err = self._sys(proc, "mremap", value, new_size, new_size,
                                   MREMAP_MAYMOVE | MREMAP_FIXED, rec.value)
        if self._compare(call, proc, value, err) and not rec.failed and rec.value is not None:
            _add(known, rec.value, rec.value + _page_align(new_size))

    # ---------------------------------------------------------------- System V shm
    def _sys_shmget(self, call: Call, proc: Proc) -> None:
        key, size, flags = parse_flags(call.args[0]), parse_int(call.args[1]), parse_flags(call.args[2])
        value, err = self._sys(proc, "shmget", key, size, flags)
        if self._compare(call, proc, value, err, identity=True) and not call.ret.failed:
            rec_id = call.ret.value
            if rec_id in self.shm_ids and self.shm_ids[rec_id] != value and key != 0:
                self._diverge(call, proc, f"simulated id {value} is not the segment of id {rec_id}")
                return
            self.shm_ids[rec_id] = value
            self.shm_sizes.setdefault(rec_id, size)

    def _sys_shmat(self, call: Call, proc: Proc) -> None:
        rec_id = parse_int(call.args[0])
        addr, flags = parse_int(call.args[1]), parse_flags(call.args[2])
        rec = call.ret
        if rec_id not in self.shm_ids:
            if not rec.failed:
                self._outside(call, proc)
                return
            sim_id = rec_id  # replay the failure as recorded
        else:
            sim_id = self.shm_ids[rec_id]
        choose = self.placement == "kernel" and addr == 0
        if not rec.failed and rec.value is not None and addr == 0 and not choose:
            addr = rec.value
        value, err = self._sys(proc, "shmat", sim_id, addr, flags)
        if choose and err is None and not rec.failed and value != rec.value:
            self._misplaced(call, proc, value)
            self._sys(proc, "shmdt", value)
            value, err = self._sys(proc, "shmat", sim_id, rec.value, flags)
        if self._compare(call, proc, value, err) and not rec.failed and rec.value is not None:
            size = _page_align(self.shm_sizes.get(rec_id, 0))
            _add(proc.owner.known, rec.value, rec.value + size)

    def _sys_shmdt(self, call: Call, proc: Proc) -> None:
        addr = parse_int(call.args[0])
        value, err = self._sys(proc, "shmdt", addr)
        self._compare(call, proc, value, err)

    def _sys_shmctl(self, call: Call, proc: Proc) -> None:
        rec_id = parse_int(call.args[0])
        cmd = parse_flags(call.args[1]) & ~IPC_64
        if rec_id not in self.shm_ids and not call.ret.failed:
            self._outside(call, proc)
            return
        value, err = self._sys(proc, "shmctl", self.shm_ids.get(rec_id, rec_id), cmd)
        self._compare(call, proc, value, err, identity=cmd != CONSTANTS["IPC_RMID"])


def _is_memfd(path: str) -> bool:
    return path.startswith("/memfd:")


class _Unsupported(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _as_int(value) -> int | None:
    if value is None or isinstance(value, int):
        return value
    return int(value)


def _fmt(value, err) -> str:
    if err is not None:
        return f"-1 {ERRNO_NAME.get(err, err)}"
    if isinstance(value, int) and value > 0xFFFF:
        return hex(value)
    return str(value)


def _render(ev) -> str:
    if isinstance(ev, Call):
        return f"{ev.name}({', '.join(ev.args)}) = {ev.ret.text}"
    return type(ev).__name__


# --------------------------------------------------------------------------- command
class TraceFileError(Exception):
    """TRACE cannot be replayed at all: unreadable, not text, or no strace line in it."""


def read_trace(path: str) -> Trace:
    """Read and parse the strace log at ``path``; TraceFileError if it is not one."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise TraceFileError(e.strerror or str(e)) from None
    if b"\0" in data:
        raise TraceFileError("not a text file")
    # strace escapes odd bytes itself; anything else undecodable is one bad line, not a bad file
    trace = parse_trace(data.decode("utf-8", errors="replace").splitlines())
    if not trace.events:
        raise TraceFileError(f"no strace line in {trace.lines} lines")
    return trace


def replay_file(path: str, *, memory: str | int = "1GiB", out=print, maps: bool = False,
                quiet: bool = False, root: bool = False, placement: str = "trace",
                executables: bool = True):
    """Replay the trace at ``path`` in a fresh x86_64 guest; returns (calls, divergences).
    ``quiet`` leaves out the line of each ld.so RELRO mprotect outside the trace (their
    number is still given).

    Raises TraceFileError if the file is not an strace log, ReplayError if no guest can be
    booted to run it.
    """
    trace = read_trace(path)
    kernel = boot_guest(memory)
    for p in trace.problems:
        out(str(p))
    r = Replayer(kernel, out)
    r.quiet = quiet
    r.root = root
    r.placement = placement
    r.executables = executables
    r.trace_dir = os.path.dirname(os.path.abspath(path))
    calls, divergences = r.run(trace)
    if r.outside:
        relro = f" ({r.relro} of them ld.so RELRO mprotects)" if r.relro else ""
        out(f"{r.outside} calls outside the trace{relro}")
    if placement == "kernel":
        out(f"{r.placement_differences} placement differences")
    if r.skipped:
        listed = ", ".join(f"{n} {c}" for n, c in sorted(r.skipped.items(),
                                                         key=lambda x: (-x[1], x[0])))
        out(f"{sum(r.skipped.values())} lines of system calls not modelled, skipped: {listed}")
    if maps:
        for line in r.maps_report():
            out(line)
    out(f"{calls} calls, {divergences} divergences")
    return calls, divergences


def boot_guest(memory: str | int = "1GiB"):
    """A fresh x86_64 guest kernel of ``memory`` bytes that can run processes."""
    try:
        from guestkernel.config import KernelConfig
        from guestkernel.kernel import Kernel
    except ImportError as e:
        raise ReplayError(f"the guest kernel is not available ({e})") from None
    try:
        config = KernelConfig(memory=parse_size(memory, "memory"), arch="x86_64")
    except ValueError as e:
        raise ReplayError(f"--memory: {e}") from None
    kernel = Kernel(config)
    if not hasattr(kernel, "spawn"):
        raise ReplayError("the guest kernel cannot create processes (no Kernel.spawn)")
    try:
        import guestkernel.task  # noqa: F401
    except ImportError:
        raise ReplayError("the guest kernel has no address spaces yet (guestkernel.task)") from None
    return kernel


@click.command("replay")
@click.argument("trace")
@click.option("--maps", "show_maps", is_flag=True,
              help="Print each process's /proc/PID/maps as it stood just before it exited.")
@click.option("--memory", default="1GiB", show_default=True,
              help="Guest physical memory (the guest is x86_64).")
@click.option("--quiet", is_flag=True,
              help="Leave out the line of each ld.so RELRO mprotect outside the trace.")
@click.option("--root", is_flag=True,
              help="Start the traced program as uid 0 with every capability (traced as root).")
@click.option("--placement", type=click.Choice(["trace", "kernel"]), default="trace",
              show_default=True,
              help="trace: every mapping goes where the trace says; kernel: the guest "
                   "chooses each address itself and each one that differs is reported.")
def replay(trace: str, show_maps: bool, memory: str, quiet: bool, root: bool,
           placement: str) -> None:
    """Replay an strace log (strace -f -y -e trace=memory,process,ipc) in a fresh guest.

    Prints one line per divergence between the simulated and the recorded return values
    (and one per malformed line skipped, or call on memory only execve mapped, reported as
    outside the trace), and ends with "N calls, M divergences"; exits 1 if there are
    divergences, 2 if TRACE cannot be read.
    """
    try:
        _, divergences = replay_file(trace, memory=memory, out=click.echo, maps=show_maps,
                                     quiet=quiet, root=root, placement=placement)
    except TraceFileError as e:
        click.echo(f"hvsim replay: {trace}: {e}", err=True)
        sys.exit(2)
    except ReplayError as e:
        click.echo(f"hvsim replay: {e}", err=True)
        sys.exit(2)
    sys.exit(1 if divergences else 0)
