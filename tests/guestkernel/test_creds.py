"""Credentials and limits of a task (kernel/sys.c setuid/setresuid/setreuid,
security/commoncap.c cap_capset and cap_emulate_setxuid, kernel/sys.c do_prlimit), with
the results limits_priv.c got from Linux 6.18 (tests/data/traces/limits_priv.trace)."""

from guestkernel import uapi as U

P = 4096


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def test_root_setuid_drops_every_capability(k, t):
    t.make_root()
    assert t.capable(U.CAP_IPC_LOCK) and t.capable(U.CAP_SETUID)
    # trace line 46: setuid(65534) = 0; then no CAP_SYS_RESOURCE: prlimit64 raising the
    # hard limit is EPERM (line 47), and setuid(0) is EPERM (line 53)
    assert t.setuid(65534) == 0
    assert (t.ruid, t.uid, t.suid) == (65534, 65534, 65534)
    assert t.caps == set() and t.cap_permitted == set()
    t.prlimit(U.RLIMIT_MEMLOCK, (4 * P, 4 * P))
    assert errno_of(t.prlimit, U.RLIMIT_MEMLOCK, (64 * P, 64 * P)) == U.EPERM
    assert errno_of(t.setuid, 0) == U.EPERM


def test_capset_only_lowers_and_mlock_follows_cap_ipc_lock(k, t):
    t.make_root()
    t.prlimit(U.RLIMIT_MEMLOCK, (2 * P, 2 * P))
    a = t.mmap(0, 4 * P, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    assert t.mlock(a, 4 * P) == 0  # line 20: CAP_IPC_LOCK passes RLIMIT_MEMLOCK
    t.munlock(a, 4 * P)
    eff = set(U.ALL_CAPS) - {U.CAP_IPC_LOCK}
    assert t.capset(eff, set(U.ALL_CAPS)) == 0  # line 23
    assert errno_of(t.mlock, a, 4 * P) == U.ENOMEM  # line 24
    assert t.mlock(a, 2 * P) == 0  # line 25
    # the effective set may come back from the permitted one, the permitted set never grows
    assert t.capset(set(U.ALL_CAPS), set(U.ALL_CAPS)) == 0
    assert t.capset(set(), set()) == 0
    assert errno_of(t.capset, {U.CAP_IPC_LOCK}, {U.CAP_IPC_LOCK}) == U.EPERM


def test_setresuid_and_setreuid_without_cap_setuid(k, t):
    assert (t.ruid, t.uid, t.suid) == (1000, 1000, 1000)
    assert errno_of(t.setresuid, 0, -1, -1) == U.EPERM
    t.make_root()
    t.setresuid(1000, 2000, 0)  # euid nonzero: the effective set is cleared
    assert t.caps == set() and t.cap_permitted == set(U.ALL_CAPS)
    t.setresuid(-1, 0, -1)  # back to euid 0 (the saved id): effective = permitted
    assert t.caps == set(U.ALL_CAPS)
    t.setreuid(2000, 1000)  # all three nonzero now (saved id = new euid): caps gone
    assert (t.ruid, t.uid, t.suid) == (2000, 1000, 1000) and t.cap_permitted == set()
    assert errno_of(t.setreuid, -1, 0) == U.EPERM


def test_fork_inherits_credentials(k, t):
    t.make_root()
    t.setresuid(0, 5, 0)
    c = k.tasks[t.fork()]
    assert (c.ruid, c.uid, c.suid) == (0, 5, 0)
    assert c.caps == set() and c.cap_permitted == set(U.ALL_CAPS)
