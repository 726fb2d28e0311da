"""What the host spends beyond the guests' own CPU (hypervisor/cpu.py consumers): balloon
exits and host swap-out submission, and the guests' own disks as queues (issue 13)."""

import json
from pathlib import Path

import pytest
import simpy

from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_ZERO, GFP_HIGHUSER
from guestkernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, O_RDONLY, PROT_READ, PROT_WRITE
from hypervisor.cpu import BALLOON, SWAPOUT
from hypervisor.host import Host, HostConfig
from hypervisor.p2m import P2M_SWAPPED

from .helpers import page

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "hostcpu" / "madvise_dontneed.json"


def test_balloon_inflation_of_n_pages_charges_n_times_the_inflate_cost():
    # virtio-balloon on KVM: QEMU discards every inflated page (balloon_inflate_page:
    # madvise(MADV_DONTNEED) on its 4 KiB) and advises every deflated one (MADV_WILLNEED);
    # hvsim charges the host CPU `balloon_inflate_cost` / `balloon_deflate_cost` a page
    host = Host(HostConfig(memory="256MiB", sharing=False, compression=False,
                           balloon_inflate_cost="4us", balloon_deflate_cost="1.8us"))
    vm = host.create_vm("a", KernelConfig(memory="64MiB"))
    k = vm.kernel
    pages = [k.alloc_pages(GFP_HIGHUSER | __GFP_ZERO) for _ in range(3000)]
    for p in pages:
        k.free_pages(p)
    assert vm.balloon.inflate(2000) == 2000
    assert host.cpus.busy[BALLOON] == pytest.approx(2000 * 4e-6)
    assert vm.balloon.deflate(500) == 500
    assert host.cpus.busy[BALLOON] == pytest.approx(2000 * 4e-6 + 500 * 1.8e-6)
    assert host.cpus.busy_s()["balloon"] == vm.balloon_cpu


def test_balloon_costs_are_this_machines_measured_madvise_costs():
    # consistency check: the defaults are the recorded measurement (tests/data/hostcpu,
    # madvise_dontneed.c), rounded
    measured = json.loads(FIXTURE.read_text())
    cfg = HostConfig()
    assert cfg.balloon_inflate_cost == pytest.approx(measured["dontneed_seconds_per_page_best"], rel=0.05)
    assert cfg.balloon_deflate_cost == pytest.approx(measured["willneed_seconds_per_page_best"], rel=0.05)
    section = load_config_defaults()
    assert section.balloon.inflate_cost == "4us" and section.balloon.deflate_cost == "1.8us"


def load_config_defaults():
    from experiments.config import HostSection

    return HostSection()


def test_each_page_written_to_host_swap_costs_the_swapout_cost_of_host_cpu():
    # the state monitor's background eviction in the hard state (no compression: every
    # victim is written to swap): `swapout_cost` of host CPU per page written
    host = Host(HostConfig(memory=f"{4096 * 4096}", min_free=f"{1024 * 4096}", sharing=False,
                           compression=False, ballooning=False, swapout_cost="3us"))
    vm = host._new_vm("g", 4096)
    host._add_vm(vm)
    for pfn in range(3900):
        vm.store(pfn, page(pfn))
    host.check_state()
    written = host.swap.pswpout
    assert written > 0 and vm.p2m.nr[P2M_SWAPPED] == written
    assert host.cpus.busy[SWAPOUT] == pytest.approx(written * 3e-6)
    assert host.swapout_cpu == pytest.approx(written * 3e-6)


def test_a_vm_waiting_for_a_frame_is_charged_the_swapout_it_caused():
    # synchronous reclaim (the VM found no free frame): the evicted pages' submission is
    # host CPU spent while the faulting vCPU waits, so it is part of the VM's wait
    host = Host(HostConfig(memory=f"{64 * 4096}", min_free=f"{4096}", sharing=False,
                           compression=False, ballooning=False, swapout_cost="3us",
                           reclaim_batch=8))
    vm = host._new_vm("g", 256)
    host._add_vm(vm)
    for pfn in range(64):
        vm.store(pfn, page(pfn))
    assert host.machine.nr_free == 0
    cost = vm.store(64, page(64))  # no clock: the writes complete at once
    assert host.cpus.busy[SWAPOUT] == pytest.approx(8 * 3e-6)
    assert cost == pytest.approx(8 * 3e-6 + vm.fault_cost)
    assert host.machine.nr_used <= host.machine.nr_frames


def _read_files(nreaders: int, total: int, guest_disk: str = "separate"):
    """`nreaders` tasks each read their own file of total / nreaders bytes, 1 MiB per
    read(), on a guest whose disk moves 100 MB/s; when each finished (simulated s)."""
    env = simpy.Environment()
    host = Host(HostConfig(memory="1GiB", sharing=False, compression=False, ballooning=False,
                           guest_disk=guest_disk), env=env)
    vm = host.create_vm("g", KernelConfig(memory="512MiB", swap_bandwidth=100_000_000,
                                          swap_latency="80us"), balloon=False)
    k = vm.kernel
    ends = []

    def reader(i):
        t = k.spawn(f"reader{i}")
        k.fs.create(f"/data{i}", total // nreaders)
        fd = t.open(f"/data{i}", O_RDONLY, 0)
        buf = t.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        left = total // nreaders
        while left > 0:
            left -= t.read(fd, buf, 1 << 20)
            yield env.timeout(t.last_cost)
        ends.append(env.now)

    procs = [env.process(reader(i)) for i in range(nreaders)]
    env.run(until=env.all_of(procs))
    return ends


def test_a_file_read_takes_at_least_its_bytes_over_the_disk_bandwidth():
    # 128 MiB at 100 MB/s: the transfers alone take 134217728 / 1e8 = 1.342 s (issue 13's
    # 1 GiB example scaled by 1/8: the same rule, 10.737 s for 1 GiB)
    (end,) = _read_files(1, 128 << 20)
    assert end >= (128 << 20) / 1e8


def test_concurrent_readers_queue_on_the_guests_own_disk():
    # the default separate guest disk is one device: two readers of 64 MiB each share
    # its 100 MB/s, so the last finishes no earlier than 128 MiB / 100 MB/s (each alone
    # would take about half that, and without the queue they overlapped)
    ends = _read_files(2, 128 << 20)
    assert max(ends) >= (128 << 20) / 1e8


def test_guest_kernel_threads_run_on_the_vms_vcpus():
    # Kernel.run_kernel_work: kswapd's passes and the flusher's stalls are booked on the
    # VM's vCPUs (hypervisor VM.kernel_work): counted as guest kernel time and as vCPU
    # time on the host's CPUs, and kswapd goes through it
    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", sharing=False, compression=False, ballooning=False), env=env)
    vm = host.create_vm("g", KernelConfig(memory="64MiB"), balloon=False)
    k = vm.kernel
    busy0 = host.cpus.busy_s()["vcpus"]

    def kthread():
        yield k.run_kernel_work(0.2)

    env.process(kthread())
    env.run(until=0.5)
    assert vm.vcpus.kernel_time == pytest.approx(0.2)
    assert host.cpus.busy_s()["vcpus"] - busy0 == pytest.approx(0.2)
    calls = []
    run = k.run_kernel_work

    def recorded(cpu, wait=0.0, io=0.0, since=None):
        calls.append(cpu)
        return run(cpu, wait, io, since)

    k.run_kernel_work = recorded
    kd = next(iter(k.reclaim.kswapds.values()))
    kd.wake(0, 0)
    env.run(until=1.0)
    assert kd.passes >= 1 and len(calls) == kd.passes
    assert vm.vcpus.kernel_time == pytest.approx(0.2 + sum(calls))


def test_kcompactd_and_khugepaged_work_runs_on_the_vms_vcpus():
    # kcompactd's and khugepaged's copies go through Kernel.run_kernel_work as kswapd's
    # passes do: booked on the VM's vCPUs, so they take vCPU time from its tasks
    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", sharing=False, compression=False, ballooning=False), env=env)
    vm = host.create_vm("g", KernelConfig(memory="64MiB"), balloon=False)
    k = vm.kernel
    calls = []
    run = k.run_kernel_work

    def recorded(cpu, wait=0.0, io=0.0, since=None):
        calls.append(cpu)
        return run(cpu, wait, io, since)

    k.run_kernel_work = recorded
    comp = k.compaction
    node = k.page_alloc.nodes[0]
    comp.kcompactd_do_work = lambda n: 0.003  # one pass of 3 ms of copies
    node.kcompactd_max_order = 2  # as wakeup_kcompactd records it (kcompactd_work_requested)
    comp.kcompactd[node.nid].wake()
    env.run(until=0.1)
    assert calls == [0.003]
    kh = k.khugepaged
    scans = iter([True])
    kh.has_work = lambda: next(scans, False)

    def do_scan():
        kh.cost = 0.002  # one scan's copies
        return 0

    kh.do_scan = do_scan
    next(d for d in k.daemons if type(d).__name__ == "KhugepagedDaemon").wake()
    env.run(until=0.2)
    assert calls == [0.003, 0.002]
    assert vm.vcpus.kernel_time == pytest.approx(0.005)


def test_a_kernel_threads_pass_runs_its_cpu_holds_the_vcpu_through_host_stalls_and_frees_it_for_its_io():
    # A Linux kernel thread (kswapd, the flusher, kcompactd, khugepaged) beneath a
    # hypervisor: its own CPU runs on the vCPU; a page it touches that the host must back
    # (EPT violation + zeroing: host CPU in the vCPU's context) or read from host swap
    # holds the vCPU, not running guest code; its wait for its own I/O is a sleep in D
    # state (io_schedule) that frees the vCPU for the guest's tasks
    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", cpus=1, sharing=False, compression=False,
                           ballooning=False, fault_cost="2us"), env=env)
    vm = host.create_vm("g", KernelConfig(memory="64MiB", cpus=1), balloon=False)
    k = vm.kernel
    from hypervisor.p2m import P2M_NONE

    fresh = [p for p in range(vm.nr_pages - 1, 0, -1) if vm.p2m.state[p] == P2M_NONE][:11]
    swapped = fresh.pop()
    vm.store(swapped, page(1))
    vm.evict(swapped, compress=False)
    env.run(until=1.0)  # the write to swap completes
    host.settle()
    assert vm.p2m.state[swapped] == P2M_SWAPPED
    out = {}

    def kthread():
        mark = k.stall_mark()
        stall = sum(vm.touch(p, True) for p in fresh)  # 10 host faults
        swapin = vm.touch(swapped, False)  # a host swap-in (device read)
        assert swapin > 0.0
        out["stall"] = stall + swapin
        k0, s0, z0 = vm.vcpus.kernel_time, vm.vcpus.stall_time, host.cpus.busy_s()["zeroing"]
        yield k.run_kernel_work(0.001 + stall + swapin + 0.004, io=0.004, since=mark)
        out["end"] = env.now
        out["kernel"] = vm.vcpus.kernel_time - k0
        out["held"] = vm.vcpus.stall_time - s0
        out["zeroing"] = host.cpus.busy_s()["zeroing"] - z0

    t0 = env.now
    env.process(kthread())
    env.run(until=t0 + 1e-12)
    stall = out["stall"]
    # the vCPU is free once the CPU part and the stalls are over, while the thread sleeps
    assert vm.vcpus.free_at == [pytest.approx(t0 + 0.001 + stall)]
    env.run(until=t0 + 0.1)
    assert out["end"] == pytest.approx(t0 + 0.001 + stall + 0.004)
    assert out["kernel"] == pytest.approx(0.001)  # only its own CPU counts as kernel CPU
    assert out["held"] == pytest.approx(stall)  # the stalls held the vCPU
    assert out["zeroing"] == pytest.approx(10 * 2e-6)  # the faults' host CPU


PAGE_COSTS = Path(__file__).resolve().parents[1] / "data" / "hostcpu" / "page_costs.json"


def test_page_copy_and_zero_costs_are_one_recording_of_copy_page_and_clear_page():
    # consistency check: both defaults are the minima over one run of page_copy.c and
    # page_clear.c, alternating on one pinned CPU (tests/data/hostcpu/measure_page_costs.py:
    # the machine was shared, so the minimum over the rounds is the program's own cost),
    # rounded to 3 digits
    measured = json.loads(PAGE_COSTS.read_text())
    rounds = measured["runs"] * measured["rounds_per_run"]
    assert len(measured["copy"]["seconds_per_page"]) == len(measured["clear"]["seconds_per_page"]) == rounds
    assert measured["copy"]["min"] == min(measured["copy"]["seconds_per_page"])
    assert measured["clear"]["min"] == min(measured["clear"]["seconds_per_page"])
    cfg = HostConfig()
    assert cfg.page_copy_cost == pytest.approx(measured["copy"]["min"], rel=0.005)
    assert cfg.page_zero_cost == pytest.approx(measured["clear"]["min"], rel=0.005)
    section = load_config_defaults()
    assert section.page_copy_cost == "455ns" and section.page_zero_cost == "238ns"


def test_khugepaged_collapse_copies_and_zeroings_cost_guest_cpu_on_the_vcpu():
    # __collapse_huge_page_copy (6.1): each present subpage is copied (copy_user_highpage)
    # and each pte_none slot (max_ptes_none allows up to 511) is zeroed
    # (clear_user_highpage) by khugepaged, a guest kernel thread: page_copy_cost a copy and
    # page_zero_cost a zeroing of CPU on the VM's vCPU (its kernel time); the new frames'
    # host faults are stalls, not its CPU. 10 present pages + 502 none: 10 copies, 502
    # zeroings.
    from experiments.metrics import cost_summary
    from guestkernel import uapi as U

    env = simpy.Environment()
    host = Host(HostConfig(memory="512MiB", sharing=False, compression=False, ballooning=False,
                           page_copy_cost="7us", page_zero_cost="3us"), env=env)
    vm = host.create_vm("g", KernelConfig(memory="256MiB"), balloon=False)
    k = vm.kernel
    base, huge = 0x40000000, 2 << 20
    t = k.spawn("t")
    t.mmap(base, huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | U.MAP_FIXED)
    t.access_range(base, 10 * 4096, True)
    env.run(until=0.1)
    k0, c0, z0 = vm.vcpus.kernel_time, vm.copy_cpu, vm.zero_cpu
    t.madvise(base, huge, U.MADV_HUGEPAGE)  # joins khugepaged's list, wakes it
    env.run(until=0.5)
    assert k.vmstat["thp_collapse_alloc"] == 1
    assert k.thp.pages_collapsed == 1
    assert vm.copy_cpu - c0 == pytest.approx(10 * 7e-6)  # the 10 present pages
    assert vm.zero_cpu - z0 == pytest.approx(502 * 3e-6)  # the 502 none slots
    assert vm.vcpus.kernel_time - k0 == pytest.approx(10 * 7e-6 + 502 * 3e-6)
    cost = cost_summary(host, {})
    assert cost["guest_zero_cpu_s"] == pytest.approx(vm.zero_cpu)


def test_compaction_migration_copies_cost_guest_cpu_on_the_vcpu():
    # compaction's migrations (migrate_page: folio_copy) are a guest kernel thread's CPU
    # on the VM's vCPU: each migrated page costs page_copy_cost, in its cost (kcompactd
    # yields it through run_kernel_work: test_kcompactd_and_khugepaged_work_runs_on_the_
    # vms_vcpus), counted in summary.json cost.guest_kernel_cpu_s and guest_copy_cpu_s.
    # The scenario is tests/guestkernel/test_compaction.py's whole-zone compaction:
    # page-cache pages at 600, 601, 700 move to 3079, 3078, 3077.
    from experiments.metrics import cost_summary
    from guestkernel import gfp as G
    from guestkernel.compaction import CompactControl
    from guestkernel.filemap import AddressSpace
    from guestkernel.migrate import MIGRATE_SYNC
    from tests.guestkernel.test_compaction import file_page
    from tests.guestkernel.test_page_alloc import empty_zone, give_block, zone_named

    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", sharing=False, compression=False, ballooning=False,
                           page_copy_cost="5us"), env=env)
    vm = host.create_vm("g", KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1,
                                          compaction_proactiveness=0), balloon=False)
    k = vm.kernel
    zone = zone_named(k, "DMA")
    empty_zone(k, zone)

    class Inode:
        pass

    mapping = AddressSpace(Inode())
    for i, pfn in enumerate((600, 601, 700)):
        file_page(k, mapping, pfn, i, bytes([i + 1]) * 4096)
    give_block(k, 3072, 3)
    give_block(k, 3200, 2)
    env.run(until=0.01)
    k0, c0 = vm.vcpus.kernel_time, vm.copy_cpu
    out = {}

    def kcompactd():
        mark = k.stall_mark()
        cc = CompactControl(zone, -1, G.GFP_KERNEL, MIGRATE_SYNC, whole_zone=True, ignore_skip_hint=True)
        k.compaction.compact_zone(cc)
        out["cost"] = cc.cost
        yield k.run_kernel_work(cc.cost, since=mark)

    env.process(kcompactd())
    env.run(until=0.5)
    assert k.vmstat["pgmigrate_success"] == 3
    assert [mapping.pages[i].pfn for i in range(3)] == [3077, 3078, 3079]
    assert vm.copy_cpu - c0 == pytest.approx(3 * 5e-6)
    # its CPU is the copies (the new frames' host faults held the vCPU: not CPU)
    assert vm.vcpus.kernel_time - k0 == pytest.approx(3 * 5e-6)
    assert out["cost"] > 3 * 5e-6  # (with the host faults of the three new frames)
    cost = cost_summary(host, {})
    assert cost["guest_copy_cpu_s"] == pytest.approx(vm.copy_cpu)
    assert cost["guest_kernel_cpu_s"] == pytest.approx(vm.vcpus.kernel_time)
