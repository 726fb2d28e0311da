"""System V shared memory: ids, limits, attach/detach rules, nattch, destruction."""

import pytest

from guestkernel import uapi as U
from guestkernel.vma import VM_MAYSHARE, VM_WRITE, validate_mm

P = 4096
B = 0x50000000


def test_ids_follow_ipc_idr_rules(k, t):
    a = t.shmget(U.IPC_PRIVATE, P, U.IPC_CREAT | 0o600)
    b = t.shmget(U.IPC_PRIVATE, P, U.IPC_CREAT | 0o600)
    assert (a, b) == (0, 1)
    t.shmctl(a, U.IPC_RMID)
    t.shmctl(b, U.IPC_RMID)
    # index 0 reused (<= last index 1): the sequence number moves on
    assert t.shmget(U.IPC_PRIVATE, P, U.IPC_CREAT) == 32768


def test_shmget_errors(k, t):
    for size in (0, U.SHMMAX + 1):
        with pytest.raises(OSError) as e:
            t.shmget(U.IPC_PRIVATE, size, U.IPC_CREAT)
        assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.shmget(1234, P, 0)
    assert e.value.errno == U.ENOENT
    sid = t.shmget(1234, 2 * P, U.IPC_CREAT | 0o600)
    assert t.shmget(1234, P, 0) == sid
    with pytest.raises(OSError) as e:
        t.shmget(1234, P, U.IPC_CREAT | U.IPC_EXCL)
    assert e.value.errno == U.EEXIST
    with pytest.raises(OSError) as e:
        t.shmget(1234, 3 * P, 0)
    assert e.value.errno == U.EINVAL
    k.shm_ns.shmall = 3
    with pytest.raises(OSError) as e:
        t.shmget(U.IPC_PRIVATE, 2 * P, U.IPC_CREAT)  # 2 + 2 pages > shmall
    assert e.value.errno == U.ENOSPC


def test_shmget_charges_commit_unless_noreserve(k, t):
    c0 = k.committed_as
    sid = t.shmget(U.IPC_PRIVATE, 10 * P + 1, U.IPC_CREAT)
    assert k.committed_as == c0 + 11
    t.shmget(U.IPC_PRIVATE, 10 * P, U.IPC_CREAT | U.SHM_NORESERVE)
    assert k.committed_as == c0 + 11
    t.shmctl(sid, U.IPC_RMID)
    assert k.committed_as == c0


def test_attach_detach_and_nattch(k, t):
    sid = t.shmget(U.IPC_PRIVATE, 16 * P, U.IPC_CREAT | 0o600)
    a = t.shmat(sid, 0, 0)
    assert t.shmctl(sid, U.IPC_STAT)["shm_nattch"] == 1
    t.access_range(a, 16 * P, True, data=b"m" * P)
    assert t.mm.rss[3] == 16  # RssShmem
    child = k.tasks[t.fork()]
    assert t.shmctl(sid, U.IPC_STAT)["shm_nattch"] == 2  # fork copies the attach
    child.access(a, False)
    assert child.peek(a, 1) == b"m"
    b = child.shmat(sid, 0, U.SHM_RDONLY)
    v = child.mm.mm_mt.lookup(b)
    assert v.vm_flags & VM_MAYSHARE and not v.vm_flags & VM_WRITE
    child.access(b, True)  # read-only attach: SIGSEGV
    assert child.state != "running" and child.si_code == U.SEGV_ACCERR
    assert t.shmctl(sid, U.IPC_STAT)["shm_nattch"] == 1
    # splitting an attach counts one more VMA (shm_open on split)
    t.mprotect(a + 4 * P, 4 * P, U.PROT_READ)
    assert t.shmctl(sid, U.IPC_STAT)["shm_nattch"] == 3
    t.shmdt(a)
    assert t.shmctl(sid, U.IPC_STAT)["shm_nattch"] == 0
    assert t.mm.mm_mt.lookup(a) is None
    validate_mm(t.mm)


def test_shmat_address_rules(k, t):
    sid = t.shmget(U.IPC_PRIVATE, 2 * P, U.IPC_CREAT)
    with pytest.raises(OSError) as e:
        t.shmat(sid, B + 123, 0)  # unaligned without SHM_RND
    assert e.value.errno == U.EINVAL
    assert t.shmat(sid, B + 123, U.SHM_RND) == B
    with pytest.raises(OSError) as e:
        t.shmat(sid, B, 0)  # overlap without SHM_REMAP
    assert e.value.errno == U.EINVAL
    assert t.shmat(sid, B, U.SHM_REMAP) == B
    with pytest.raises(OSError) as e:
        t.shmat(sid, 0, U.SHM_REMAP)  # SHM_REMAP needs an address
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.shmat(999, 0, 0)
    assert e.value.errno == U.EINVAL
    validate_mm(t.mm)


def test_shmdt_rules(k, t):
    sid = t.shmget(U.IPC_PRIVATE, 2 * P, U.IPC_CREAT)
    a = t.shmat(sid, B, 0)
    with pytest.raises(OSError) as e:
        t.shmdt(a + 1)
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.shmdt(a + P)  # not the start of an attach
    assert e.value.errno == U.EINVAL
    assert t.shmdt(a) == 0
    with pytest.raises(OSError) as e:
        t.shmdt(a)
    assert e.value.errno == U.EINVAL


def test_rmid_destroys_at_last_detach(k, t):
    c0 = k.committed_as
    sid = t.shmget(77, 4 * P, U.IPC_CREAT)
    a = t.shmat(sid, 0, 0)
    t.access_range(a, 4 * P, True)
    assert k.vmstat["nr_shmem"] == 4
    t.shmctl(sid, U.IPC_RMID)
    st = t.shmctl(sid, U.IPC_STAT)
    assert st["key"] == U.IPC_PRIVATE and st["mode"] & U.SHM_DEST
    with pytest.raises(OSError):
        t.shmget(77, P, 0)  # the key is gone
    assert k.vmstat["nr_shmem"] == 4  # still attached
    t.shmdt(a)
    assert k.vmstat["nr_shmem"] == 0 and k.committed_as == c0
    with pytest.raises(OSError) as e:
        t.shmctl(sid, U.IPC_STAT)
    assert e.value.errno == U.EINVAL


def test_segment_survives_exit_without_rmid(k, t):
    sid = t.shmget(5, P, U.IPC_CREAT)
    a = t.shmat(sid, 0, 0)
    t.access(a, True, b"k" * P)
    t.exit(0)
    u = k.spawn("u")
    b = u.shmat(u.shmget(5, P, 0), 0, 0)
    u.access(b, False)
    assert u.peek(b, 1) == b"k"


def test_maps_line_for_segment(k, t):
    sid = t.shmget(0x1234, P, U.IPC_CREAT)
    a = t.shmat(sid, B, 0)
    line = [ln for ln in k.procfs.read(f"/proc/{t.pid}/maps").splitlines() if "SYSV" in ln][0]
    assert line == f"{a:08x}-{a + P:08x} rw-s 00000000 00:01 {sid}".ljust(72) + " /SYSV00001234 (deleted)"
