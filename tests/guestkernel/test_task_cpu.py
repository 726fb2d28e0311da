"""Where a task runs after a sleep (6.1 kernel/sched/fair.c select_task_rq_fair ->
select_idle_sibling on a wake-up): hvsim's tasks run in bursts, and the first entry of a
burst at a later simulated time is a wake-up; beneath a hypervisor the vCPUs' reservation
table says which CPUs are idle (phys.vcpu_free_at, stubbed here), and the task's per-CPU
state (bdp_ratelimits, direct reclaim's CPU) follows the CPU it wakes on."""

from __future__ import annotations

import simpy

from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.task import select_idle_sibling, select_task_rq_wake
from guestkernel.vmscan import init_reclaim, start_reclaim_daemons

P = 4096
RW = U.PROT_READ | U.PROT_WRITE


def _kernel(cpus, env=None):
    env = env if env is not None else simpy.Environment()
    k = Kernel(memory="64MiB", cpus=cpus, env=env)
    init_reclaim(k)
    start_reclaim_daemons(k)
    if 1 not in k.tasks:
        k.spawn("init")
    return k, env


def test_select_idle_sibling_prev_recent_then_wrapping_scan():
    """select_idle_sibling(p, prev, target = prev): prev if idle, even with CPUs idle
    longer; else p->recent_used_cpu if idle (and it becomes prev); else the first idle
    CPU scanning from prev + 1 and wrapping (select_idle_cpu: for_each_cpu_wrap(cpu,
    cpus, target + 1)); none idle: target."""
    k, env = _kernel(4)
    t = k.spawn("t")
    now = 1.0
    t.cpu, t.recent_used_cpu = 2, 2
    assert select_idle_sibling(t, [0.0, 0.0, 1.0, 0.0], now) == 2  # prev idle (free at now)
    assert t.recent_used_cpu == 2  # (untouched: returned before)
    # prev busy: the scan starts at 3, then wraps to 0
    assert select_idle_sibling(t, [0.5, 0.5, 1.5, 1.5], now) == 0
    assert select_idle_sibling(t, [1.5, 0.5, 1.5, 0.5], now) == 3
    # p->recent_used_cpu idle comes before the scan; prev becomes the recent one
    t.cpu, t.recent_used_cpu = 2, 1
    assert select_idle_sibling(t, [0.0, 0.0, 1.5, 0.0], now) == 1
    assert t.recent_used_cpu == 2
    # none idle: target (prev); the task then runs where the first CPU goes idle
    t.cpu, t.recent_used_cpu = 2, 2
    free = [1.3, 1.1, 1.5, 1.1]
    assert select_idle_sibling(t, free, now) == 2
    assert select_task_rq_wake(t, free, now) == 1  # free first, the lowest of equals
    assert select_task_rq_wake(t, [0.0, 0.0, 1.5, 0.0], now) == 3  # idle found: there


def test_a_task_moves_only_when_it_wakes_and_its_per_cpu_state_follows():
    """A task on CPU 0 whose vCPU is busy when its next burst starts wakes on the idle
    CPU 1: its write() there adds to CPU 1's bdp_ratelimits (folio_account_dirtied:
    this_cpu_inc) and allocates its page-cache page with kernel.current_cpu
    (smp_processor_id) 1. Its later entries at the same simulated time keep CPU 1 (no
    wake-up between them), and at a later wake-up with CPU 1 idle it stays there."""
    k, env = _kernel(2)
    free = [0.0, 0.0]
    k.phys.vcpu_free_at = lambda: free
    t = k.spawn("w")
    t.cpu = t.recent_used_cpu = 0
    fd = t.open("/data/w", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 4 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 4 * P, True)
    assert t.cpu == 0 and k.task_cpu == 0  # (same time as its creation: no wake-up)
    cpus = []
    alloc = k.alloc_pages

    def spy(*a, **kw):
        cpus.append(k.current_cpu)
        return alloc(*a, **kw)

    k.alloc_pages = spy
    env.run(until=0.01)
    free[0] = 0.02  # CPU 0 is running something else until 20 ms
    before = list(k.bdp_ratelimits)
    assert t.write(fd, buf, P) == P
    assert t.cpu == 1 and k.task_cpu == 1 and t.recent_used_cpu == 0
    assert cpus == [1]
    assert k.bdp_ratelimits == [before[0], before[1] + 1]
    free[0], free[1] = 0.0, 0.03  # CPU 1 busy now, CPU 0 idle: no wake-up, it stays
    assert t.lseek(fd, P, U.SEEK_SET) == P
    assert t.write(fd, buf, P) == P
    assert t.cpu == 1 and cpus == [1, 1] and k.bdp_ratelimits == [before[0], before[1] + 2]
    env.run(until=0.05)  # both idle at its next wake-up: prev
    assert t.write(fd, buf, P) == P and t.cpu == 1 and cpus[-1] == 1


def test_without_idle_information_a_task_stays_where_it_was_placed():
    """On bare metal (no vCPU table beneath the guest) the guest cannot tell which CPU
    is idle: a task keeps its fork-time CPU (select_task_rq at wake_up_new_task)."""
    k, env = _kernel(2)
    assert getattr(k.phys, "vcpu_free_at", None) is None
    t = k.spawn("w")
    cpu = t.cpu
    fd = t.open("/data/w", U.O_RDWR | U.O_CREAT)
    buf = t.mmap(0, 4 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(1, 4):
        env.run(until=0.01 * i)
        t.write(fd, buf, P)
        assert t.cpu == cpu and k.task_cpu == cpu


def _pcp_count(k, cpu):
    return sum(lists[0].count for node in k.page_alloc.nodes for z in node.zones
               for i, lists in enumerate(z.pcp) if i == cpu)


def test_a_tasks_page_faults_and_frees_use_its_cpus_pcp_list():
    """6.1 rmqueue_pcplist and free_unref_page take this_cpu_ptr(zone->per_cpu_pageset):
    the lists of the CPU the task runs on (kernel.current_cpu while it is in the
    kernel). A task on CPU 1 of a 2-CPU guest frees a page into CPU 1's list and its
    next fault takes that very page back from it; CPU 0's lists are not touched."""
    k, env = _kernel(2)
    t = k.spawn("t")
    t.cpu = 1
    a = t.mmap(0, 2 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 2 * P, True)
    pfn = t.mm.pgtable.ptes[(a >> 12) + 1] >> 12
    c0, c1 = _pcp_count(k, 0), _pcp_count(k, 1)
    t.munmap(a + P, P)  # its last reference: free_unref_page on CPU 1
    assert _pcp_count(k, 1) == c1 + 1 and _pcp_count(k, 0) == c0
    b = t.mmap(0, P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(b, P, True)  # the hot page at the list's head comes back
    assert t.mm.pgtable.ptes[b >> 12] >> 12 == pfn
    assert _pcp_count(k, 1) == c1 and _pcp_count(k, 0) == c0
    assert k.current_cpu == 0 and k.page_alloc.current_cpu == 0  # out of the kernel


def test_a_task_allocates_from_its_cpus_node_first():
    """numa_node_id(): a task's allocations start with the zonelist of its CPU's node
    (cpu_to_node). On a 2-node, 2-CPU guest (CPU 1 on node 1) its anonymous page comes
    from node 1; kernel work outside a task (CPU 0) from node 0."""
    env = simpy.Environment()
    k = Kernel(memory="256MiB", cpus=2, nodes=2, env=env)
    init_reclaim(k)
    if 1 not in k.tasks:
        k.spawn("init")
    pa = k.page_alloc
    assert pa.cpu_to_node == [0, 1]
    t = k.spawn("t")
    for cpu in (1, 0):
        t.cpu = cpu
        a = t.mmap(0, P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
        t.access_range(a, P, True)
        pfn = t.mm.pgtable.ptes[a >> 12] >> 12
        assert pa.zone_of(pfn).node.nid == cpu
    page = k.alloc_pages(0)  # (no task in the kernel: CPU 0)
    assert pa.zone_of(page.pfn).node.nid == 0
    k.free_pages(page)
