"""Host CPUs and vCPUs as reservation tables (hypervisor/cpu.py)."""

import pytest

from hypervisor.cpu import COMPRESSION, SHARING, VCPUS, ZEROING, HostCPUs, VCPUs


def test_host_work_shares_a_busy_cpu_with_vcpu_work_by_weight_and_the_vcpu_work_slips():
    cpus = HostCPUs(2, kind="kvm")
    vcpus = VCPUs(2, cpus)
    assert vcpus.burst(0.0, 0.010) == 0.010  # guest code booked on both CPUs
    assert vcpus.burst(0.0, 0.010) == 0.010
    # ksmd's 4 ms batch (nice 5: CFS weight 335, sched_prio_to_weight) shares a CPU with
    # a vCPU thread (nice 0: 1024): it gets 335 / 1359 of it, so its 4 ms take
    # 4 * 1359 / 335 = 16.23 ms; that is past the vCPU work's end at 10 ms, so it ends
    # once the vCPU's 10 ms are done: at 10 + 4 = 14 ms (at 14 ms the CPU has given
    # 10 ms to the vCPU and 4 to ksmd). The CPU's booking slips by ksmd's 4 ms.
    assert cpus.run(0.0, 0.004, SHARING) == pytest.approx(0.014)
    assert sorted(cpus.free_at) == [0.010, pytest.approx(0.014)]
    assert cpus.ready_time == pytest.approx(0.010)
    assert cpus.run(0.020, 0.001, COMPRESSION) == 0.021  # on a free CPU: at once
    assert cpus.busy_s() == {"sharing": 0.004, "compression": 0.001, "zeroing": 0.0, "vcpus": 0.020,
                             "balloon": 0.0, "swapout": 0.0}


def test_host_cpu_placement_takes_the_cpu_that_became_free_last_before_the_start():
    cpus = HostCPUs(2)
    cpus.run(0.0, 0.002, SHARING)  # cpu 0 free at 2 ms
    cpus.run(0.0, 0.005, SHARING)  # cpu 1 free at 5 ms
    # work ready at 6 ms fits either; cpu 1 (free at 5 ms) leaves cpu 0's longer idle
    # stretch for someone else
    assert cpus.place(0.006) == 1
    # work ready at 3 ms: only cpu 0 is free by then
    assert cpus.place(0.003) == 0


def test_vcpu_burst_holds_the_vcpu_through_stalls_and_the_host_cpu_only_for_cpu_work():
    host = HostCPUs(1)
    vcpus = VCPUs(1, host)
    # 1 ms of guest code, 2 us of fault handling, then 5 ms blocked on a host swap-in
    end = vcpus.burst(0.0, 0.001, zero_cpu=2e-6, wait=0.005)
    assert end == pytest.approx(0.001 + 2e-6 + 0.005)
    # the host CPU was free again after 1.002 ms: another VM's burst runs meanwhile
    assert host.free_at == [pytest.approx(0.001002)]
    assert host.busy[VCPUS] == 0.001 and host.busy[ZEROING] == 2e-6
    # the same vCPU's next burst waits for the stall to end (ESX: the vCPU is blocked)
    end2 = vcpus.burst(0.0, 0.001)
    assert end2 == pytest.approx(end + 0.001)
    assert vcpus.ready_time == pytest.approx(end)
    assert vcpus.stall_time == pytest.approx(0.005 + 2e-6)


def test_a_burst_takes_the_vcpu_free_first():
    vcpus = VCPUs(2, HostCPUs(4))
    assert vcpus.burst(0.0, 0.003) == pytest.approx(0.003)
    assert vcpus.burst(0.0, 0.001) == pytest.approx(0.001)  # the second vCPU
    assert vcpus.burst(0.0, 0.001) == pytest.approx(0.002)  # behind the 1 ms burst


def test_a_burst_goes_on_the_vcpu_the_guest_placed_its_task_on():
    """The guest's scheduler chose the vCPU (guestkernel select_task_rq_wake): the burst
    is booked there, even when another idle vCPU has been free longer; without a
    choice, the vCPU free first."""
    vcpus = VCPUs(3, HostCPUs(4))
    vcpus.burst(0.0, 0.001, vcpu=2)  # vCPU 2 free at 1 ms, 0 and 1 free since 0
    assert vcpus.free_at == [0.0, 0.0, pytest.approx(0.001)]
    assert vcpus.burst(0.002, 0.001, vcpu=2) == pytest.approx(0.003)
    assert vcpus.last == 2 and vcpus.free_at[:2] == [0.0, 0.0]
    assert vcpus.burst(0.002, 0.001) == pytest.approx(0.003)
    assert vcpus.last == 0


def test_bad_cpu_counts_are_refused():
    with pytest.raises(ValueError, match="host cpus"):
        HostCPUs(0)
    with pytest.raises(ValueError, match="vcpus"):
        VCPUs(0, None)


def test_host_thread_on_a_busy_cpu_gets_the_share_its_weight_gives():
    # kvm: kswapd's compression (nice 0, 1024) beside a vCPU thread (1024): half the CPU
    # each, so 1 ms of compression ends 2 ms later while the vCPU's 10 ms run on
    cpus = HostCPUs(1, kind="kvm")
    VCPUs(1, cpus).burst(0.0, 0.010)
    assert cpus.run(0.0, 0.001, COMPRESSION) == pytest.approx(0.002)
    assert cpus.free_at == [pytest.approx(0.011)]
    # esx: a system world (2000 shares, the service console's documented default) beside
    # a normal vCPU (1000 shares): two thirds of the CPU, 1 ms ends after 1.5 ms
    cpus = HostCPUs(1, kind="esx")
    VCPUs(1, cpus).burst(0.0, 0.010)
    assert cpus.run(0.0, 0.001, COMPRESSION) == pytest.approx(0.0015)
    # a high-shares vCPU (2000 a vCPU) halves a system world's share to 1/2
    cpus = HostCPUs(1, kind="esx")
    VCPUs(1, cpus, shares=2000).burst(0.0, 0.010)
    assert cpus.run(0.0, 0.001, COMPRESSION) == pytest.approx(0.002)
    assert cpus.free_at == [pytest.approx(0.011)]
