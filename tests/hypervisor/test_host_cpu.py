"""Host work on the host's CPUs (hypervisor/cpu.py wired by host.py): ksmd's scan."""

import pytest
import simpy

from guestkernel.units import PAGE_SIZE
from hypervisor.cpu import VCPUs
from hypervisor.host import Host, HostConfig

from .helpers import page


def ksm_host(env, cpus=4, kind="esx"):
    host = Host(HostConfig(memory=f"{8192 * PAGE_SIZE}", cpus=cpus, pages_to_scan=1000,
                           sleep_millisecs=20, hash_cost="1us", smart_scan=False,
                           compression=False, ballooning=False, kind=kind), env=env)
    # 4000 frames: every batch is a full 1000 (a batch also ends where a full scan ends)
    vm = host._new_vm("g", 4000)
    host._add_vm(vm)
    for pfn in range(4000):
        vm.store(pfn, page(pfn))  # all different: no compare, no merge
    return host


def test_ksmd_at_1000_pages_per_20ms_uses_the_cpu_share_its_per_page_cost_implies():
    # ksm_scan_thread: scan pages_to_scan pages, then sleep sleep_millisecs. Each page
    # costs hash_cost (calc_checksum) when nothing matches: 1000 x 1 us = 1 ms of CPU per
    # batch, then 20 ms asleep. ksm_do_scan ends a batch where a full scan ends, so over
    # 4000 frames a cycle is 4 batches of 1000 and one that finds the scan's end at once:
    # 4 ms of CPU in 4 x 21 + 20 = 104 ms, 3.85 % of one CPU, as top shows ksmd
    env = simpy.Environment()
    host = ksm_host(env)
    env.run(until=10 * 0.104 - 1e-9)  # 10 full scans
    busy = host.cpus.busy_s()["sharing"]
    assert host.sharing.full_scans == 10
    assert host.sharing.scan_time == pytest.approx(40 * 1000 * 1e-6)
    assert busy == pytest.approx(40 * 1e-3)
    assert busy / env.now == pytest.approx(4 / 104, rel=1e-6)


@pytest.mark.parametrize("kind, wh, wv", [
    ("kvm", 335, 1024),  # CFS sched_prio_to_weight: ksmd nice 5, vCPU threads nice 0
    ("esx", 2000, 1000),  # ESX shares: a system world 2000, a normal vCPU 1000
])
def test_ksmd_on_a_host_whose_cpus_are_all_busy_gets_its_weights_share(kind, wh, wv):
    # ksm_scan_thread at pages_to_scan 1000 / sleep_millisecs 20 on one host CPU that a
    # vCPU keeps busy for the whole run: each batch's 1 ms of CPU (1000 x hash_cost)
    # runs beside the vCPU's work with wh / (wh + wv) of the CPU, so it takes
    # 1 ms * (wh + wv) / wh of wall time; the vCPU's work loses exactly ksmd's CPU time.
    # A cycle over 4000 frames: 4 batches of 1000 and one that finds the scan's end.
    env = simpy.Environment()
    host = ksm_host(env, cpus=1, kind=kind)
    VCPUs(1, host.cpus).burst(0.0, 10.0)  # guest code booked for 10 s
    batch = 1e-3 * (wh + wv) / wh
    cycle = 4 * (batch + 0.020) + 0.020
    env.run(until=10 * cycle - 1e-9)  # 10 full scans
    assert host.sharing.full_scans == 10
    busy = host.cpus.busy_s()["sharing"]
    assert busy == pytest.approx(40 * 1e-3)
    # while it runs ksmd has the share its weight gives (top: ksmd at wh / (wh + wv))
    assert busy / (40 * batch) == pytest.approx(wh / (wh + wv))
    # its scan is slowed: 10 cycles take 10 x (4 x (batch + 20 ms) + 20 ms)
    assert env.now == pytest.approx(10 * cycle, abs=1e-8)
    # the vCPU loses exactly ksmd's CPU time: its 10 s of guest code end 40 ms later
    assert host.cpus.free_at == [pytest.approx(10.0 + 40 * 1e-3)]
    assert host.cpus.busy_s()["vcpus"] == 10.0


def test_ksmd_runs_at_once_on_a_host_with_a_cpu_free():
    # the same vCPU work on a 2-CPU host: ksmd takes the idle CPU, a batch takes its
    # 1 ms, and the guest code loses nothing
    env = simpy.Environment()
    host = ksm_host(env, cpus=2, kind="kvm")
    VCPUs(1, host.cpus).burst(0.0, 10.0)
    env.run(until=0.104 - 1e-9)
    assert host.sharing.full_scans == 1
    assert sorted(host.cpus.free_at) == [pytest.approx(3 * 0.021 + 0.001), 10.0]  # 4th batch
    assert host.cpus.ready_time == 0.0


def test_host_swap_victim_is_the_vm_furthest_above_its_target():
    # ESX: memory is taken from the VM whose consumption exceeds its share-based target
    # most: a balloon lagging behind its target first (what ballooning failed to take),
    # else the VM paying the fewest shares per page it uses (min-funding revocation)
    import types

    host = Host(HostConfig(memory=f"{4096 * PAGE_SIZE}", sharing=False, ballooning=False))
    a = host._new_vm("a", 1024)
    host._add_vm(a)
    b = host._new_vm("b", 1024)
    host._add_vm(b)
    for vm in (a, b):
        for pfn in range(512):
            vm.touch(pfn, True)
    a.shares, b.shares = 20.0, 10.0
    assert host._victim_vm() is b  # half the shares for the same pages
    a.balloon = types.SimpleNamespace(actual=100)
    a.balloon_target = 300  # 200 pages the balloon has not taken yet
    assert host._victim_vm() is a
    a.balloon_target = 100
    assert host._victim_vm() is b
