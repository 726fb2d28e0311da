"""Host work displacing vCPU work makes the guest run slower on its own time line
(hypervisor/cpu.py, "Host threads"; workloads/base.py `wait`).

A host thread (ksmd, compression, zeroing, swap-out submission) sharing a host CPU with a
vCPU takes `s` seconds of CPU from it: the vCPU's running burst, and everything behind it
on the vCPU and in its task's time line (a held stall beneath the guest, an I/O wait, the
next burst), ends `s` later, as a descheduled vCPU thread's would. Expected values follow
from that rule alone.
"""

from types import SimpleNamespace

import pytest
import simpy

from experiments.workloads.base import Workload
from hypervisor.cpu import SHARING, HostCPUs, VCPUs
from tests.experiments.test_vcpu_scheduling import FakeVM  # what a VM counts beneath the guest

from .test_host_cpu import ksm_host


class Loop(Workload):
    """One process, a closed loop of bursts: `cpu` seconds of guest code, then
    `host_stall` beneath the guest (vCPU held), then `io` of guest disk wait (vCPU free)."""

    def __init__(self, env, vcpus, cpu, host_stall=0.0, io=0.0):
        super().__init__(env, FakeVM(vcpus), SimpleNamespace(cpu_util=1.0), None, 0)
        self.c, self.h, self.io = cpu, host_stall, io

    def run(self):
        while True:
            self.vm.stall_time += self.h  # as VM._touch_slow counts a host swap-in
            self.kernel.iowait_swap += self.io  # as the guest's swapin counts its disk wait
            yield self.wait(self.c + self.h + self.io)
            self.work_done += 1


def test_a_displaced_burst_ends_later_and_its_task_owes_the_slip():
    # one host CPU, one vCPU: 10 ms of guest code booked at 0; ksmd's 1 ms batch at 2 ms
    # (kvm: CFS weight 335 beside the vCPU thread's 1024) takes 1 ms of that CPU, so the
    # guest code ends at 11 ms on the vCPU's time line too, and the task that booked it
    # owes those 1 ms to its next burst
    cpus = HostCPUs(1, kind="kvm")
    v = VCPUs(1, cpus)
    end = v.burst(0.0, 0.010)
    m = v.mark(end)
    assert cpus.run(0.002, 0.001, SHARING) == pytest.approx(0.002 + 0.001 * 1359 / 335)
    assert v.free_at == [pytest.approx(0.011)] and cpus.free_at == [pytest.approx(0.011)]
    assert v.displaced_time == pytest.approx(0.001)
    assert v.debt(m) == pytest.approx(0.001)
    # a second batch at 10.5 ms still finds the (slipped) burst running: 1 ms more
    cpus.run(0.0105, 0.001, SHARING)
    assert v.debt(m) == pytest.approx(0.002)
    # host work once the burst is over (a free CPU) displaces nothing
    cpus.run(0.020, 0.001, SHARING)
    assert v.debt(m) == pytest.approx(0.002) and v.free_at == [pytest.approx(0.012)]


def test_a_burst_booked_after_a_displacement_owes_nothing_for_it():
    cpus = HostCPUs(1, kind="esx")
    v = VCPUs(1, cpus)
    v.burst(0.0, 0.010)
    cpus.run(0.002, 0.001, SHARING)  # esx: 2000 shares beside 1000: ends at 3.5 ms
    end = v.burst(0.011, 0.005)  # booked after: already starts at the slipped 11 ms
    assert end == pytest.approx(0.016)
    assert v.debt(v.mark(end)) == 0.0


@pytest.mark.parametrize("host_stall, io", [
    (0.005, 0.0),  # 10 ms of CPU, then a 5 ms host swap-in holding the vCPU
    (0.0, 0.010),  # 10 ms of CPU, then a 10 ms guest disk read (vCPU free)
])
def test_a_task_whose_bursts_host_work_displaces_completes_fewer_per_second(host_stall, io):
    # one host CPU (kvm), one vCPU, one task looping over bursts of 10 ms of CPU then a
    # wait. Alone, a burst takes 10 ms + wait. A host thread's 1 ms of CPU during each
    # burst's CPU part (at 2 ms into each of the task's cycles) takes 1 ms of that CPU:
    # the burst's CPU part ends 1 ms later, then its wait, so each cycle is 1 ms longer.
    env = simpy.Environment()
    cpus = HostCPUs(1, kind="kvm")
    wl = Loop(env, VCPUs(1, cpus), 0.010, host_stall=host_stall, io=io)
    cycle = 0.010 + 0.001 + host_stall + io

    def ksmd():
        yield env.timeout(0.002)
        while True:
            cpus.run(env.now, 0.001, SHARING)
            yield env.timeout(cycle)

    wl.start()
    env.process(ksmd())
    until = 1.0
    env.run(until=until)
    # cycle k ends at (k + 1) * cycle: 1 s holds floor(1 / cycle) of them (62 or 47,
    # against 66 or 50 without the host thread)
    assert wl.work_done == int(until / cycle)
    assert wl.vcpus.displaced_time == pytest.approx(0.001 * (int((until - 0.002) / cycle) + 1))


@pytest.mark.parametrize("kind", ["kvm", "esx"])
def test_ksmd_takes_its_cpu_time_from_a_cpu_bound_vcpu(kind):
    # ksm_scan_thread at pages_to_scan 1000 / sleep_millisecs 20 (1 us a page: 1 ms of CPU
    # a batch) on a 1-CPU host whose one vCPU runs a CPU-bound task (10 ms bursts back to
    # back). Each batch shares the CPU with the vCPU by weight (tests/hypervisor/
    # test_host_cpu.py); whatever its duration, the vCPU loses exactly the batch's CPU
    # time, so the task's work per second falls by ksmd's CPU share: by 1 s it completed
    # (1 s - ksmd's CPU) / 10 ms bursts, against 100 without ksmd.
    env = simpy.Environment()
    host = ksm_host(env, cpus=1, kind=kind)
    wl = Loop(env, VCPUs(1, host.cpus), 0.010)
    wl.start()
    env.run(until=1.0)
    busy = host.cpus.busy_s()["sharing"]
    assert busy == pytest.approx(0.001 * round(busy / 0.001))  # whole batches of 1000 x 1 us
    assert 0.030 < busy < 0.045  # 4 batches per 4 x (20 ms + a batch) + 20 ms
    # (a batch that starts as a burst ends runs first, the next burst queued behind it;
    # one that starts within a burst displaces it: either way the vCPU loses its CPU)
    assert 0.0 < wl.vcpus.displaced_time <= busy
    assert wl.work_done == int((1.0 - busy) / 0.010)


@pytest.mark.parametrize("lengths", [
    (0.010,),  # kswapd-like passes of 10 ms of CPU, each within one slice
    (0.010, 0.060, 0.004),  # short, sliced (over the 50 ms slice) and shorter passes in turn
])
def test_a_guest_kernel_threads_passes_lose_exactly_the_host_work_that_displaced_them(lengths):
    # A guest kernel thread (Kernel.run_kernel_work -> VM.kernel_work) on the VM's one
    # vCPU, on a 1-CPU kvm host: a pass of `len` seconds of CPU, then a 5 ms sleep
    # (khugepaged's scan_sleep, kswapd's throttle), again. A host thread takes 1 ms of
    # that CPU 2 ms into every pass: the pass ends 1 ms later, and so does the sleep after
    # it and the next pass, as a descheduled thread's would. Pass k starts at
    # S(k+1) = S(k) + len(k) + 1 ms + 5 ms, whatever the pass lengths.
    from guestkernel.config import KernelConfig
    from hypervisor.host import Host, HostConfig

    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", cpus=1, kind="kvm", sharing=False, compression=False,
                           ballooning=False), env=env)
    vm = host.create_vm("g", KernelConfig(memory="64MiB", cpus=1), balloon=False)
    vm.vcpus.trace = []
    n = 12
    lens = [lengths[k % len(lengths)] for k in range(n)]
    starts = [0.1]  # after the guest's boot
    for k in range(n - 1):
        starts.append(starts[-1] + lens[k] + 0.001 + 0.005)

    firsts = []  # when each pass's (first) booking starts on the vCPU

    def kthread():
        yield env.timeout(starts[0])
        for k in range(n):
            i = len(vm.vcpus.trace)
            ev = vm.kernel.run_kernel_work(lens[k])
            yield env.timeout(0)  # (a sliced pass books its first slice when it starts)
            firsts.append(vm.vcpus.trace[i][0])
            yield ev
            yield env.timeout(0.005)

    def host_thread():
        for s in starts:
            yield env.timeout(s + 0.002 - env.now)
            host.cpus.run(env.now, 0.001, SHARING)

    env.process(kthread())
    env.process(host_thread())
    env.run(until=starts[-1] + 0.5)
    assert firsts == pytest.approx(starts)
    assert vm.vcpus.displaced_time == pytest.approx(0.001 * n)
    assert vm.vcpus.kernel_time == pytest.approx(sum(lens))


class Script(Workload):
    """Processes each running one scripted burst: (cpu, host_stall) seconds; `ends`
    records when each process resumes after it."""

    def __init__(self, env, vcpus, bursts):
        super().__init__(env, FakeVM(vcpus), SimpleNamespace(cpu_util=1.0), None, 0)
        self.bursts = bursts
        self.ends = [None] * len(bursts)

    def run(self):
        for i, b in enumerate(self.bursts):
            self.go(self.proc(i, *b))
        yield self.env.timeout(0)

    def proc(self, i, cpu, host_stall):
        self.vm.stall_time += host_stall  # as VM._touch_slow counts a host swap-in
        yield self.wait(cpu + host_stall)
        self.ends[i] = self.env.now


@pytest.mark.parametrize("bursts, ksmd_at, ends", [
    # a 10 ms burst queued behind a 5 ms stall (vCPU held beneath the guest) ends at 15 ms
    ([(0.0, 0.005), (0.010, 0.0)], None, [0.005, 0.015]),
    # a 10 ms burst queued behind another: ksmd's 1 ms at 2 ms makes the first end at
    # 11 ms, and the queued one, which waited that much longer for the vCPU, at 21 ms
    ([(0.010, 0.0), (0.010, 0.0)], 0.002, [0.011, 0.021]),
    # queued behind 10 ms of CPU and a 5 ms stall: the first burst's CPU ends at 11 ms,
    # its stall at 16 ms, the queued burst at 26 ms
    ([(0.010, 0.005), (0.010, 0.0)], 0.002, [0.016, 0.026]),
    # ksmd's 1 ms while the queued burst itself runs (at 12 ms): only it ends later
    ([(0.010, 0.0), (0.010, 0.0)], 0.012, [0.010, 0.021]),
])
def test_a_burst_ends_later_by_the_time_it_waited_behind_slipped_or_stalled_work(bursts, ksmd_at, ends):
    # one vCPU on a 1-CPU kvm host; both processes book their burst at 0 (the second is
    # queued on the vCPU behind the first). Each process resumes when its burst is over.
    env = simpy.Environment()
    cpus = HostCPUs(1, kind="kvm")
    wl = Script(env, VCPUs(1, cpus), bursts)

    def ksmd():
        yield env.timeout(ksmd_at)
        cpus.run(env.now, 0.001, SHARING)

    wl.start()
    if ksmd_at is not None:
        env.process(ksmd())
    env.run(until=1.0)
    assert wl.ends == pytest.approx(ends)
