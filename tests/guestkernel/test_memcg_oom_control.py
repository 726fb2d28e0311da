"""cgroup v1 memory.oom_control (6.1 mm/memcontrol.c).

With oom_kill_disable 1, mem_cgroup_oom counts MEMCG_OOM and, in a user fault, leaves the
OOM for the end of the fault (current->memcg_in_oom); the charge fails, the fault returns
VM_FAULT_OOM and pagefault_out_of_memory calls mem_cgroup_oom_synchronize: the task goes
on memcg_oom_waitq, marks its memcg's subtree under OOM (mem_cgroup_mark_under_oom) and
sleeps; nothing is killed. memcg_oom_recover wakes it when the limit is raised
(mem_cgroup_resize_max), pages are uncharged (uncharge_batch) or oom_kill_disable is
cleared (mem_cgroup_oom_control_write); it then unmarks and the access faults again.
memory.oom_control reads under_oom as (bool)memcg->under_oom.

Values: limit 8 MiB = 2048 pages, no swap, anonymous pages only, so the writer holds
exactly 2048 pages less the kernel pages charged with them (MEMCG_KMEM: its VMAs, page
tables) when it sleeps. The failing charge of one page counts MEMCG_MAX 2 + 16
times (the reclaim before the stock drain, the one after, then MAX_RECLAIM_RETRIES
without progress: try_charge_memcg), then MEMCG_OOM once."""

from __future__ import annotations

from guestkernel.kernel import Kernel
from guestkernel.memcontrol import MAX_RECLAIM_RETRIES
from guestkernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
LIMIT = 2048


def setup():
    k = Kernel(memory="128MiB", swap="0", cgroup_version=1)
    cg = k.cgroup
    p = cg.mount_point + "/a"
    cg.mkdir(p)
    cg.write(p + "/memory.limit_in_bytes", "8M")
    cg.write(p + "/memory.oom_control", "1")
    return k, cg, p, cg.lookup(p)


def task_in(k, cg, p, npages: int):
    t = k.spawn("t")
    cg.attach(t, p)
    addr = t.mmap(0, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    return t, addr


def present(t, addr: int, npages: int) -> int:
    ptes = t.mm.pgtable.ptes
    return sum(1 for v in range(addr >> 12, (addr >> 12) + npages) if ptes.get(v, 0) & 1)


def oom_control(cg, p: str) -> dict:
    return {a: int(b) for a, b in (ln.split() for ln in cg.read(p + "/memory.oom_control").splitlines())}


def test_oom_kill_disable_sleeps_on_the_wait_queue_until_the_limit_is_raised():
    """mem_cgroup_oom (oom_kill_disable) + mem_cgroup_oom_synchronize: the writer of 16
    MiB stops asleep with exactly 2048 pages, under_oom 1, nothing killed; while asleep a
    further access does nothing; raising the limit (mem_cgroup_resize_max, enlarge:
    memcg_oom_recover) wakes it, under_oom reads 0, and the retried access completes."""
    k, cg, p, m = setup()
    t, addr = task_in(k, cg, p, 4096)
    t.access_range(addr, 4096 * PAGE, True)
    assert t.state == "running" and t.memcg_oom_wait is m
    assert present(t, addr, 4096) == LIMIT - m.kstat["kernel"] and m.memory.usage == LIMIT
    assert oom_control(cg, p) == {"oom_kill_disable": 1, "under_oom": 1, "oom_kill": 0}
    assert (m.events["max"], m.events["oom"], m.events["oom_kill"]) == (2 + MAX_RECLAIM_RETRIES, 1, 0)
    assert k.memcgs.oom_waitq == [t]
    t.access_range(addr, 4096 * PAGE, True)  # asleep: no progress, no new charge attempt
    assert present(t, addr, 4096) == LIMIT - m.kstat["kernel"] and m.events["oom"] == 1
    cg.write(p + "/memory.limit_in_bytes", "32M")
    assert t.memcg_oom_wait is None and k.memcgs.oom_waitq == []
    assert oom_control(cg, p)["under_oom"] == 0
    t.access_range(addr, 4096 * PAGE, True)
    assert present(t, addr, 4096) == 4096 and t.state == "running"
    assert m.events["oom"] == 1 and m.events["oom_kill"] == 0
    k.memcgs.validate()


def test_freeing_memory_in_the_cgroup_wakes_the_sleeper():
    """uncharge_batch -> memcg_oom_recover: another task of the cgroup holding 1024 pages
    unmaps them; the sleeper (which got the other 1024 less the kernel pages) wakes,
    under_oom 0, and its retried access fills the limit again."""
    k, cg, p, m = setup()
    u, ua = task_in(k, cg, p, 1024)
    u.access_range(ua, 1024 * PAGE, True)
    t, addr = task_in(k, cg, p, 4096)
    t.access_range(addr, 4096 * PAGE, True)
    assert t.memcg_oom_wait is m
    assert present(t, addr, 4096) == LIMIT - 1024 - m.kstat["kernel"]
    assert oom_control(cg, p)["under_oom"] == 1
    u.munmap(ua, 1024 * PAGE)
    assert t.memcg_oom_wait is None and oom_control(cg, p)["under_oom"] == 0
    t.access_range(addr, 4096 * PAGE, True)
    # it fills the limit again, and sleeps again
    assert present(t, addr, 4096) + present(u, ua, 1024) == LIMIT - m.kstat["kernel"]
    assert t.memcg_oom_wait is m and oom_control(cg, p)["under_oom"] == 1
    assert m.events["oom"] == 2 and m.events["oom_kill"] == 0
    k.memcgs.validate()


def test_clearing_oom_kill_disable_wakes_it_and_the_retry_kills():
    """mem_cgroup_oom_control_write(0) -> memcg_oom_recover: the sleeper wakes; its
    retried fault meets the limit again, and now mem_cgroup_oom kills (oom_kill 1)."""
    k, cg, p, m = setup()
    t, addr = task_in(k, cg, p, 4096)
    t.access_range(addr, 4096 * PAGE, True)
    assert t.memcg_oom_wait is m
    cg.write(p + "/memory.oom_control", "0")
    assert t.memcg_oom_wait is None and oom_control(cg, p)["under_oom"] == 0
    t.access_range(addr, 4096 * PAGE, True)
    assert t.state != "running"
    assert oom_control(cg, p) == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 1}


def test_a_killed_sleeper_leaves_the_wait_queue():
    """TASK_KILLABLE: SIGKILL ends the sleep; the task leaves memcg_oom_waitq and unmarks
    its memcg (under_oom 0); its pages are uncharged as it exits."""
    k, cg, p, m = setup()
    t, addr = task_in(k, cg, p, 4096)
    t.access_range(addr, 4096 * PAGE, True)
    assert t.memcg_oom_wait is m
    t.kill()
    assert t.state != "running"
    assert k.memcgs.oom_waitq == [] and m.under_oom == 0
    assert oom_control(cg, p) == {"oom_kill_disable": 1, "under_oom": 0, "oom_kill": 0}
    k.memcgs.validate()


def test_under_oom_marks_the_subtree_and_a_parents_recover_wakes_a_child():
    """mem_cgroup_oom_control_read's oom_kill is hierarchical (memcg_memory_event);
    mem_cgroup_mark_under_oom marks the memcg and its descendants, not its parent;
    memcg_oom_wake_function wakes a waiter whose memcg is below the one recovering:
    raising the parent's limit wakes the sleeper of the child (limited by the parent)."""
    k = Kernel(memory="128MiB", swap="0", cgroup_version=1)
    cg = k.cgroup
    root = cg.mount_point
    cg.mkdir(root + "/a")
    cg.mkdir(root + "/a/b")
    cg.mkdir(root + "/a/b/c")
    cg.write(root + "/a/memory.limit_in_bytes", "8M")
    cg.write(root + "/a/b/memory.oom_control", "1")
    t, addr = task_in(k, cg, root + "/a/b", 4096)
    t.access_range(addr, 4096 * PAGE, True)
    b = cg.lookup(root + "/a/b")
    assert t.memcg_oom_wait is None and t.state != "running"  # a is over; a kills
    # oom_kill: memory_events[MEMCG_OOM_KILL], counted on the victim's memcg (b) and up
    assert [oom_control(cg, root + x)["oom_kill"] for x in ("/a", "/a/b", "/a/b/c")] == [1, 1, 0]
    t2, addr2 = task_in(k, cg, root + "/a/b", 4096)
    cg.write(root + "/a/memory.oom_control", "1")
    t2.access_range(addr2, 4096 * PAGE, True)
    a = cg.lookup(root + "/a")
    assert t2.memcg_oom_wait is a
    assert [oom_control(cg, root + x)["under_oom"] for x in ("/a", "/a/b", "/a/b/c")] == [1, 1, 1]
    assert b.under_oom == 1 and k.memcgs.root.under_oom == 0
    cg.write(root + "/a/memory.limit_in_bytes", "32M")
    assert t2.memcg_oom_wait is None
    assert [oom_control(cg, root + x)["under_oom"] for x in ("/a", "/a/b", "/a/b/c")] == [0, 0, 0]
