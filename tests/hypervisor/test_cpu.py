"""Host CPUs and vCPUs as reservation tables (hypervisor/cpu.py)."""

import pytest

from hypervisor.cpu import COMPRESSION, SHARING, VCPUS, ZEROING, HostCPUs, VCPUs


def test_host_work_runs_at_once_and_vcpu_work_booked_on_its_cpu_slips():
    cpus = HostCPUs(2)
    vcpus = VCPUs(2, cpus)
    assert vcpus.burst(0.0, 0.010) == 0.010  # guest code booked on both CPUs
    assert vcpus.burst(0.0, 0.010) == 0.010
    # ksmd's 4 ms batch runs now (a host thread under its fair share is not made to
    # wait behind guest code); the CPU it took is booked 4 ms longer
    assert cpus.run(0.0, 0.004, SHARING) == 0.004
    assert sorted(cpus.free_at) == [0.010, pytest.approx(0.014)]
    assert cpus.run(0.020, 0.001, COMPRESSION) == 0.021  # on a free CPU
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


def test_bad_cpu_counts_are_refused():
    with pytest.raises(ValueError, match="host cpus"):
        HostCPUs(0)
    with pytest.raises(ValueError, match="vcpus"):
        VCPUs(0, None)
