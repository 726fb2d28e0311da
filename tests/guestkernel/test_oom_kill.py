"""Overcommit (modes 0/1/2), oom_badness/oom_score with C arithmetic, /proc/PID/oom_*,
the OOM killer's choices, panic_on_oom, and the course's "segfault on a valid address"."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.oom_kill import (
    oom_adj_from_score_adj,
    oom_badness,
    oom_score,
    score_adj_from_oom_adj,
)
from guestkernel.page_alloc import KernelPanic
from guestkernel.vmscan import init_reclaim

RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
MiB = 1 << 20


def boot(**kw):
    k = Kernel(**{"memory": "64MiB", **kw})
    init_reclaim(k)
    return k


# ------------------------------------------------------------------ oom_badness / oom_score
GiB_PAGES = 262144  # totalpages of a 1 GiB guest without swap; totalpages // 1000 == 262


@pytest.mark.parametrize(
    "rss, swap, pgt, adj, total, badness, score",
    [
        # 10000 + 0 + 40960/4096 = 10010; 10010*1000/262144 = 38; (1038)*2/3 = 692
        (10000, 0, 40960, 0, GiB_PAGES, 10010, 692),
        # adj -500: 10010 - 500*262 = -120990; *1000/262144 = -461.5 -> -461 (toward
        # zero; floor would give -462 and 358); (539)*2/3 = 359
        (10000, 0, 40960, -500, GiB_PAGES, -120990, 359),
        # adj +1000: 10010 + 262000 = 272010; -> 1037; 2037*2/3 = 1358
        (10000, 0, 40960, 1000, GiB_PAGES, 272010, 1358),
        # swap entries count like RSS; pgtables bytes are divided first (4095 -> 0)
        (100, 50, 4095, 0, GiB_PAGES, 150, 666),
        # adj -999 of an empty task: -261738 -> -998 (toward zero); 2*2/3 = 1
        (0, 0, 0, -999, GiB_PAGES, -261738, 1),
        # the whole machine at +1000: 524144 -> 1999; 2999*2/3 = 1999 (at most 2000)
        (GiB_PAGES, 0, 0, 1000, GiB_PAGES, 524144, 1999),
        # fewer than 1000 pages: totalpages/1000 == 0, adj has no effect
        (100, 0, 0, 1000, 999, 100, 733),
        (100, 0, 0, -999, 999, 100, 733),
    ],
)
def test_badness_and_score_hand_computed(rss, swap, pgt, adj, total, badness, score):
    assert oom_badness(rss, swap, pgt, adj, total) == badness
    assert oom_score(rss, swap, pgt, adj, total) == score


def test_adj_minus_1000_is_never_killable_and_scores_zero():
    assert oom_badness(50000, 0, 0, -1000, GiB_PAGES) is None
    assert oom_score(50000, 0, 0, -1000, GiB_PAGES) == 0


@given(
    rss=st.integers(0, 1 << 20), swap=st.integers(0, 1 << 20), pgt=st.integers(0, 1 << 30),
    adj=st.integers(-999, 1000), extra=st.integers(0, 1 << 20),
)
def test_score_stays_in_0_2000(rss, swap, pgt, adj, extra):
    total = rss + swap + (pgt >> 12) + extra + 1
    s = oom_score(rss, swap, pgt, adj, total)
    assert 0 <= s <= 2000


def test_legacy_oom_adj_conversions():
    assert oom_adj_from_score_adj(1000) == 15
    assert oom_adj_from_score_adj(-1000) == -17
    assert oom_adj_from_score_adj(-500) == -8  # -8.5 truncated toward zero
    assert score_adj_from_oom_adj(15) == 1000
    assert score_adj_from_oom_adj(-16) == -941  # -941.2 toward zero
    assert score_adj_from_oom_adj(8) == 470


# ------------------------------------------------------------------ overcommit
def test_mode1_always_grants_and_charges():
    k = boot(overcommit_memory=1)
    base = k.committed_as  # init's own mappings
    assert k.vm_enough_memory(1 << 40)
    assert k.committed_as == base + (1 << 40)
    k.vm_unacct_memory(1 << 40)
    assert k.committed_as == base


def test_mode0_refuses_only_a_single_request_beyond_ram_plus_swap():
    k = boot(overcommit_memory=0, swap="16MiB")
    total = k.page_alloc.totalram_pages() + 4095  # 16 MiB swap = 4095 slots + header
    assert k.total_swap_pages() == 4095
    base = k.committed_as  # init's own mappings
    assert k.vm_enough_memory(total)
    assert k.vm_enough_memory(total)  # two of them: heuristic mode does not add up
    assert k.committed_as == base + 2 * total
    assert not k.vm_enough_memory(total + 1)
    assert k.committed_as == base + 2 * total  # the refused charge was taken back


def test_mode2_limit_exact():
    k = boot(overcommit_memory=2, overcommit_ratio=50, swap="8MiB")
    ram = k.page_alloc.totalram_pages()
    limit = ram * 50 // 100 + 2047
    assert k.vm_commit_limit() == limit
    admin = k.admin_reserve_kbytes >> 2
    user = k.user_reserve_kbytes >> 2
    total_vm = 3200  # pages of the caller's mm: min(3200/32, user reserve) = 100
    allowed = limit - admin - min(total_vm // 32, user)
    # succeed iff Committed_AS after the charge < allowed (init has charged `base`)
    base = k.committed_as
    assert k.vm_enough_memory(allowed - 1 - base, total_vm=total_vm)
    assert not k.vm_enough_memory(1, total_vm=total_vm)
    assert k.committed_as == allowed - 1
    # root does not keep the admin reserve back
    assert k.vm_enough_memory(1, cap_sys_admin=True, total_vm=total_vm)
    meminfo = k.procfs.read("/proc/meminfo")
    assert f"CommitLimit:    {limit * 4:>8} kB" in meminfo
    assert f"Committed_AS:   {allowed * 4:>8} kB" in meminfo


def test_mode2_overcommit_kbytes_replaces_ratio():
    k = boot(overcommit_memory=2, overcommit_kbytes=10240)
    assert k.vm_commit_limit() == 2560


def test_mode2_refuses_the_mmap_that_mode0_grants():
    sizes = 40 * MiB
    k0 = boot(overcommit_memory=0)
    t0 = k0.spawn("app")
    assert t0.mmap(0, sizes, RW, ANON) > 0
    assert t0.mmap(0, sizes, RW, ANON) > 0  # 80 MiB promised in a 64 MiB guest
    k2 = boot(overcommit_memory=2)
    t2 = k2.spawn("app")
    with pytest.raises(OSError) as e:
        t2.mmap(0, sizes, RW, ANON)
    assert e.value.errno == U.ENOMEM
    assert k2.vmstat["vm_enough_memory_fail"] == 1


# ------------------------------------------------------------------ /proc/PID/oom_*
def test_proc_oom_score_adj_write_read_and_range():
    k = boot()
    t = k.spawn("app")
    path = f"/proc/{t.pid}/oom_score_adj"
    assert k.procfs.read(path) == "0\n"
    k.procfs.write(path, "-500\n")
    assert k.procfs.read(path) == "-500\n"
    for bad in ("1001", "-1001", "abc", ""):
        with pytest.raises(ValueError):
            k.procfs.write(path, bad)
        assert t.oom_score_adj == -500
    k.procfs.write(f"/proc/{t.pid}/oom_adj", "15")
    assert t.oom_score_adj == 1000
    assert k.procfs.read(f"/proc/{t.pid}/oom_adj") == "15\n"
    k.procfs.write(f"/proc/{t.pid}/oom_adj", "-17")
    assert t.oom_score_adj == -1000
    assert k.procfs.read(f"/proc/{t.pid}/oom_score") == "0\n"


def test_proc_oom_score_matches_the_formula():
    k = boot(swap="16MiB")
    t = k.spawn("app")
    a = t.mmap(0, 8 * MiB, RW, ANON)
    t.access_range(a, 8 * MiB, True)
    t.oom_score_adj = -300
    mm = t.mm
    total = k.page_alloc.totalram_pages() + k.total_swap_pages()
    rss = mm.rss[0] + mm.rss[1] + mm.rss[3]
    want = oom_score(rss, mm.rss[2], mm.pgtables_bytes, -300, total)
    assert k.procfs.read(f"/proc/{t.pid}/oom_score") == f"{want}\n"
    assert rss >= 2048


# ------------------------------------------------------------------ the OOM killer
def _touch(t, npages):
    a = t.mmap(0, npages << 12, RW, ANON)
    t.access_range(a, npages << 12, True)
    return a


def test_victim_is_the_biggest_and_ties_go_to_the_later_task():
    k = boot(overcommit_memory=1)
    init = k.init_task  # pid 1, spawned at boot
    _touch(init, 3000)  # init is never chosen, however big
    a = k.spawn("a")
    b = k.spawn("b")
    c = k.spawn("c")
    _touch(a, 1000)
    _touch(b, 1000)
    _touch(c, 500)
    assert a.mm.pgtables_bytes == b.mm.pgtables_bytes
    assert a.mm.rss == b.mm.rss
    anon_kb = b.mm.rss[1] * 4  # the 1000 pages touched plus the stack's
    assert k.oom.out_of_memory(G.GFP_KERNEL)
    assert b.state != "running" and a.state == "running"  # tie: the later task
    assert k.vmstat["oom_kill"] == 1
    assert k.oom.log[0].startswith(f"Out of memory: Killed process {b.pid} (b) total-vm:")
    assert f"anon-rss:{anon_kb}kB, file-rss:0kB" in k.oom.log[0]
    assert k.oom.out_of_memory(G.GFP_KERNEL)
    assert a.state != "running" and c.state == "running"
    assert b.term_signal == U.SIGKILL


def test_minus_1000_and_no_victim_panics():
    k = boot(overcommit_memory=1)
    a = k.spawn("a")
    _touch(a, 100)
    a.oom_score_adj = -1000
    with pytest.raises(KernelPanic):
        k.oom.out_of_memory(G.GFP_KERNEL)
    assert k.panicked == "Out of memory and no killable processes..."
    assert a.state == "running"


def test_no_kill_without_gfp_fs():
    k = boot(overcommit_memory=1)
    a = k.spawn("a")
    _touch(a, 100)
    assert not k.oom.out_of_memory(G.GFP_NOFS)
    assert a.state == "running" and k.vmstat["oom_kill"] == 0


@pytest.mark.parametrize("mode, reason", [
    (1, "Out of memory: system-wide panic_on_oom is enabled"),
    (2, "Out of memory: compulsory panic_on_oom is enabled"),
])
def test_panic_on_oom_panics_the_guest(mode, reason):
    k = boot(overcommit_memory=1, panic_on_oom=mode)
    hog = k.spawn("hog")
    a = hog.mmap(0, 80 * MiB, RW, ANON)
    with pytest.raises(KernelPanic):
        hog.access_range(a, 80 * MiB, True)
    assert k.panicked == reason
    assert k.vmstat["oom_kill"] == 0
    assert k.oom.log == [f"Kernel panic - not syncing: {reason}"]


def test_oom_kill_allocating_task_kills_the_small_allocator():
    k = boot(overcommit_memory=1, oom_kill_allocating_task=1)
    big = k.spawn("big")
    _touch(big, 6000)
    small = k.spawn("small")
    a = small.mmap(0, 60 * MiB, RW, ANON)
    small.access_range(a, 60 * MiB, True)
    assert small.state != "running" and small.term_signal == U.SIGKILL
    assert big.state == "running"
    assert k.vmstat["oom_kill"] == 1


def test_segfault_on_a_valid_address_mode0_vs_mode2():
    """The course: memory promised by overcommit cannot be backed when touched; the
    process dies on a valid address. With mode 2 its mmap fails instead."""
    k = boot(overcommit_memory=0)
    db = k.spawn("db")
    _touch(db, 7000)  # 27 MiB resident, protected
    db.oom_score_adj = -1000
    app = k.spawn("app")
    a = app.mmap(0, 40 * MiB, RW, ANON)  # granted: 40 MiB <= RAM + swap
    app.access_range(a, 40 * MiB, True)
    assert app.state != "running" and app.term_signal == U.SIGKILL
    assert k.vmstat["oom_kill"] == 1
    assert db.state == "running" and db.mm.rss[1] == 7001  # + its stack page
    # mode 2 (ratio 100: CommitLimit = RAM) refuses the promise up front
    k2 = boot(overcommit_memory=2, overcommit_ratio=100)
    db2 = k2.spawn("db")
    _touch(db2, 7000)
    app2 = k2.spawn("app")
    with pytest.raises(OSError) as e:
        app2.mmap(0, 40 * MiB, RW, ANON)
    assert e.value.errno == U.ENOMEM
    assert app2.state == "running" and k2.vmstat["oom_kill"] == 0


# ------------------------------------------------------------------ what is charged
@pytest.mark.parametrize("mode", [0, 2])
def test_commit_charges_and_uncharges(mode):
    """Committed_AS moves by exactly the pages section 6 says are charged."""
    k = boot(overcommit_memory=mode, overcommit_ratio=100, swap="16MiB")
    t = k.spawn("app")
    fd_file = t.open("/data/f", U.O_RDWR | U.O_CREAT)
    t.ftruncate(fd_file, 64 << 12)

    def delta(fn):
        before = k.committed_as
        fn()
        return k.committed_as - before

    out = {}
    out["private writable"] = delta(lambda: out.setdefault("a", t.mmap(0, 16 << 12, RW, ANON)))
    out["private read-only"] = delta(lambda: out.setdefault(
        "r", t.mmap(0, 16 << 12, U.PROT_READ, ANON)))
    out["noreserve"] = delta(lambda: t.mmap(0, 16 << 12, RW, ANON | U.MAP_NORESERVE))
    out["shared anon"] = delta(lambda: t.mmap(0, 16 << 12, RW, U.MAP_SHARED | U.MAP_ANONYMOUS))
    out["shared file"] = delta(lambda: t.mmap(0, 16 << 12, RW, U.MAP_SHARED, fd_file, 0))
    out["mprotect rw"] = delta(lambda: t.mprotect(out["r"], 16 << 12, RW))
    out["munmap"] = delta(lambda: t.munmap(out["a"], 16 << 12))
    brk0 = t.brk(0)
    out["brk"] = delta(lambda: t.brk(brk0 + (8 << 12)))
    out["shm"] = delta(lambda: t.shmget(U.IPC_PRIVATE, 4 << 12, U.IPC_CREAT | 0o600))
    out["shm noreserve"] = delta(lambda: t.shmget(U.IPC_PRIVATE, 4 << 12,
                                                  U.IPC_CREAT | U.SHM_NORESERVE | 0o600))
    assert out["private writable"] == 16
    assert out["private read-only"] == 0
    assert out["noreserve"] == (16 if mode == 2 else 0)  # MAP_NORESERVE ignored in mode 2
    assert out["shared anon"] == 16
    assert out["shared file"] == 0
    assert out["mprotect rw"] == 16
    assert out["munmap"] == -16
    assert out["brk"] == 8
    assert out["shm"] == 4
    assert out["shm noreserve"] == (4 if mode == 2 else 0)
    # fork charges the child's VM_ACCOUNT VMAs again; exit gives them back
    charged = k.committed_as
    pid = t.fork()
    child_charge = k.committed_as - charged
    assert child_charge > 0
    k.tasks[pid].exit(0)
    assert k.committed_as == charged
