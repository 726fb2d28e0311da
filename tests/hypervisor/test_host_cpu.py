"""Host work on the host's CPUs (hypervisor/cpu.py wired by host.py): ksmd's scan."""

import pytest
import simpy

from guestkernel.units import PAGE_SIZE
from hypervisor.cpu import VCPUs
from hypervisor.host import Host, HostConfig

from .helpers import page


def ksm_host(env, cpus=4):
    host = Host(HostConfig(memory=f"{8192 * PAGE_SIZE}", cpus=cpus, pages_to_scan=1000,
                           sleep_millisecs=20, hash_cost="1us", smart_scan=False,
                           compression=False, ballooning=False), env=env)
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


def test_ksmd_takes_its_cpu_time_from_the_guests_on_a_busy_host():
    # one host CPU booked by a vCPU for the first 0.5 s: ksmd, a host thread asking for
    # 1 ms in 21 (less than its fair share), still runs on time, and the guest code
    # booked on that CPU slips by ksmd's CPU time
    env = simpy.Environment()
    host = ksm_host(env, cpus=1)
    VCPUs(1, host.cpus).burst(0.0, 0.5)
    env.run(until=21e-3 * 4 - 1e-9)  # 4 batches of 1000 frames
    assert host.sharing.scan_time == pytest.approx(4 * 1e-3)
    assert host.cpus.free_at == [pytest.approx(0.5 + 4 * 1e-3)]
    assert host.cpus.busy_s()["vcpus"] == 0.5


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
