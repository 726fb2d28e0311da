"""A workload's bursts on its VM's vCPUs and the host's CPUs (workloads/base.py, hypervisor/cpu.py).

The VM and kernel are stand-ins that count what a real VM and guest kernel count (stall
seconds beneath the guest, host CPU spent in them, guest I/O wait); each test derives its
expected throughput from the scheduling rule itself: a burst's CPU time needs a vCPU and a
host CPU, a stall beneath the guest holds the vCPU, a guest I/O wait frees it.
"""

from types import SimpleNamespace

import pytest
import simpy

from experiments.workloads.base import Workload
from hypervisor.cpu import HostCPUs, VCPUs


class FakeKernel:
    panicked = None

    def __init__(self):
        self.iowait_swap = 0.0
        self.iowait_file = 0.0


class FakeVM:
    def __init__(self, vcpus):
        self.kernel = FakeKernel()
        self.vcpus = vcpus
        self.stall_time = 0.0
        self.stall_cpu_zero = 0.0
        self.stall_cpu_zip = 0.0


class Loop(Workload):
    """`procs` processes, each a closed loop of bursts: `cpu` seconds of guest code, then
    `host_stall` seconds beneath the guest (held vCPU) and `io` of guest disk wait."""

    def __init__(self, env, vm, procs, cpu, host_stall=0.0, io=0.0, cpu_util=1.0):
        super().__init__(env, vm, SimpleNamespace(cpu_util=cpu_util), None, 0)
        self.n, self.c, self.h, self.io = procs, cpu, host_stall, io

    def run(self):
        for _ in range(self.n):
            self.go(self.proc())
        yield self.env.timeout(0)

    def proc(self):
        while True:
            vm, k = self.vm, self.kernel
            vm.stall_time += self.h  # as VM._touch_slow counts a host swap-in
            k.iowait_swap += self.io  # as the guest's swapin counts its disk wait
            yield self.wait(self.c + self.h + self.io)
            self.work_done += 1  # counted once the burst is over


def run(workloads, until=1.005):
    env = workloads[0].env
    for wl in workloads:
        wl.start()
    env.run(until=until)
    return [wl.work_done for wl in workloads]


def test_a_burst_is_booked_on_the_vcpu_its_task_woke_on():
    """The guest leaves the CPU its burst's task was placed on in kernel.task_cpu
    (Task.on_cpu): the burst takes that vCPU; a burst whose process ran no task
    (task_cpu reset at every resumption) takes the vCPU free first."""
    env = simpy.Environment()
    vm = FakeVM(VCPUs(4, HostCPUs(4)))

    class OnCpu(Workload):
        def run(self):
            self.kernel.task_cpu = 3  # as Task.on_cpu leaves it
            yield self.wait(0.002)
            assert self.vcpus.last == 3
            yield self.wait(0.001)  # no task ran since the resumption
            assert self.vcpus.last == 0

    wl = OnCpu(env, vm, SimpleNamespace(cpu_util=1.0), None, 0)
    wl.start()
    env.run(until=0.01)
    assert vm.vcpus.free_at == [pytest.approx(0.003), 0.0, 0.0, pytest.approx(0.002)]


def test_eight_workers_on_one_vcpu_lose_the_vcpu_to_each_5ms_host_swapin():
    # 1 ms of CPU then a 5 ms host swap-in per burst. A real vCPU blocked in the
    # hypervisor runs nothing else: on one vCPU the eight workers' bursts follow each
    # other, 6 ms each; on eight vCPUs each worker has its own.
    env = simpy.Environment()
    one = Loop(env, FakeVM(VCPUs(1, HostCPUs(8))), 8, 0.001, host_stall=0.005)
    (done1,) = run([one], until=1.0)
    env = simpy.Environment()
    eight = Loop(env, FakeVM(VCPUs(8, HostCPUs(8))), 8, 0.001, host_stall=0.005)
    (done8,) = run([eight], until=1.0)
    # bursts over by 1 s: one every 6 ms on one vCPU, eight every 6 ms on eight
    assert done1 == 166  # floor(1 / 0.006)
    assert done8 == 8 * 166


def test_guest_io_wait_frees_the_vcpu():
    # 1 ms CPU + 9 ms of guest swap-in per burst: the task sleeps in D state and the
    # other task runs meanwhile, so two tasks on one vCPU each complete a burst per 10 ms
    env = simpy.Environment()
    wl = Loop(env, FakeVM(VCPUs(1, HostCPUs(1))), 2, 0.001, io=0.009)
    (done,) = run([wl])
    assert done == 2 * 100
    # (each task's next burst is under way: its wait is counted when it starts)
    assert wl.iowait_time == pytest.approx((200 + 2) * 0.009)


def test_cpu_bound_work_scales_with_vcpus_when_the_host_has_the_cpus():
    counts = {}
    for n in (1, 4):
        env = simpy.Environment()
        counts[n] = run([Loop(env, FakeVM(VCPUs(n, HostCPUs(4))), 4, 0.010)])[0]
    assert counts[1] == 100  # four tasks share one vCPU: 10 ms bursts back to back
    assert counts[4] == 400
    assert counts[4] == 4 * counts[1]


def test_two_to_one_vcpu_overcommit_halves_each_vms_throughput():
    # 4 host CPUs; one VM of 4 vCPUs with 4 CPU-bound tasks alone, then two such VMs
    env = simpy.Environment()
    alone = run([Loop(env, FakeVM(VCPUs(4, HostCPUs(4))), 4, 0.010)])[0]
    env = simpy.Environment()
    host = HostCPUs(4)
    pair = run([Loop(env, FakeVM(VCPUs(4, host)), 4, 0.010),
                Loop(env, FakeVM(VCPUs(4, host)), 4, 0.010)])
    assert alone == 400
    assert pair == [200, 200]
    # the host CPUs were busy all the time: 4 CPU-seconds granted per second
    assert host.busy_s()["vcpus"] == pytest.approx(4.0, abs=8 * 0.010)


def test_off_cpu_time_of_a_burst_does_not_hold_the_vcpu():
    # a webserver-like burst: 10 ms of full-speed time of which 10 % on the CPU; eight
    # workers on one vCPU need 0.8 of it, so each still completes a burst per 10 ms
    env = simpy.Environment()
    wl = Loop(env, FakeVM(VCPUs(1, HostCPUs(1))), 8, 0.010, cpu_util=0.1)
    # worker j first waits j ms for the vCPU: its 100th burst ends at j + 1000 ms
    (done,) = run([wl], until=1.0085)
    assert done == 8 * 100


def granted(trace, t):
    """CPU seconds a VM's bookings ran by time `t` (each booking (start, end) runs its CPU
    on one host CPU without a break)."""
    return sum(max(0.0, min(end, t) - start) for start, end in trace)


def test_two_vms_on_an_overcommitted_host_progress_together_not_one_after_the_other():
    # issue 13: two VMs of 2 vCPUs, each with 2 CPU-bound tasks whose bursts are 1 s of
    # CPU, on a host of 2 CPUs. In ESX's proportional-share scheduler each runnable vCPU
    # runs for a time quantum (50 ms by default) and then the next takes its turn: the
    # four vCPUs take turns two at a time, so each VM is granted one CPU-second every
    # second, at every second (serving bursts in order would give VM a both CPUs for the
    # first second and VM b none, then the reverse)
    env = simpy.Environment()
    host = HostCPUs(2, quantum=0.050)
    vms = [FakeVM(VCPUs(2, host)), FakeVM(VCPUs(2, host))]
    for vm in vms:
        vm.vcpus.trace = []
    loops = [Loop(env, vm, 2, 1.0) for vm in vms]
    seen = []

    def sampler():
        while True:
            yield env.timeout(1.0)
            seen.append([round(granted(vm.vcpus.trace, env.now), 9) for vm in vms])

    env.process(sampler())
    run(loops, until=10.5)
    assert seen == [[float(t), float(t)] for t in range(1, 11)]
    # at half speed each task's 1 s bursts end every 2 s (VM a's turn first: at 1.95 s)
    assert [wl.work_done for wl in loops] == [2 * 5, 2 * 5]
    # the two host CPUs never idled: 21 CPU-seconds in 10.5 s
    assert sum(granted(vm.vcpus.trace, 10.5) for vm in vms) == pytest.approx(21.0, abs=1e-9)


def test_cpu_time_divides_in_proportion_to_cpu_shares():
    # ESX CPU shares: high is 2000 per vCPU, normal 1000; under contention a VM gets CPU
    # in proportion (the vSphere resource management guide). A high-shares vCPU's slice
    # is 100 ms against 50 ms: in every 150 ms round VM a runs 100 ms on the one CPU
    env = simpy.Environment()
    host = HostCPUs(1, quantum=0.050)
    a, b = FakeVM(VCPUs(1, host, shares=2000)), FakeVM(VCPUs(1, host, shares=1000))
    a.vcpus.trace, b.vcpus.trace = [], []
    seen = []

    def sampler():
        for _ in range(4):
            yield env.timeout(1.5)
            seen.append((round(granted(a.vcpus.trace, env.now), 9), round(granted(b.vcpus.trace, env.now), 9)))

    env.process(sampler())
    run([Loop(env, a, 1, 5.0), Loop(env, b, 1, 5.0)], until=6.01)
    assert seen == [(1.0, 0.5), (2.0, 1.0), (3.0, 1.5), (4.0, 2.0)]


def test_a_long_burst_on_a_host_with_cpus_to_spare_runs_without_a_gap():
    # slicing changes nothing when nobody else wants the CPU: a 1 s burst ends at 1 s
    env = simpy.Environment()
    vm = FakeVM(VCPUs(1, HostCPUs(4)))
    (done,) = run([Loop(env, vm, 1, 1.0)], until=3.0 + 1e-9)
    assert done == 3
    assert vm.vcpus.slices == 3 * 20 + 1  # (the fourth burst's first slice is booked)
    assert vm.vcpus.ready_time == pytest.approx(0.0, abs=1e-9)


def test_guest_kernel_work_takes_vcpu_time_from_the_tasks():
    # Kernel.run_kernel_work (kswapd, the flusher) books on the VM's vCPUs: 0.5 s of
    # kernel CPU on the one vCPU leaves the task 0.5 s of its first second, whatever the
    # order the two are interleaved in (10 ms bursts against 50 ms kernel slices)
    from hypervisor.cpu import run_burst

    env = simpy.Environment()
    vm = FakeVM(VCPUs(1, HostCPUs(4)))
    wl = Loop(env, vm, 1, 0.010)

    def kthread():
        yield run_burst(env, vm.vcpus, 0.5, kernel=True)

    env.process(kthread())
    (done,) = run([wl], until=1.0 + 1e-9)
    assert vm.vcpus.kernel_time == pytest.approx(0.5)
    assert done == 50  # (1.0 - 0.5) / 0.010


def test_guest_tasks_wake_on_idle_vcpus_and_their_bursts_run_there():
    """A 2-vCPU guest running three CPU-bound web-server workers (wired as a run wires it: the
    VM's vCPU table beneath the guest): every wake-up follows select_task_rq_wake
    against the vCPUs' bookings at that moment (prev if idle, else p->recent_used_cpu,
    else the next idle one, else the vCPU free first), the tasks do move between the
    two vCPUs, and each task's burst is booked on the vCPU it woke on."""
    from experiments.config import config_from_dict
    from experiments.scenario import Scenario
    from guestkernel import task as T

    cfg = config_from_dict({
        "experiment": {"name": "wake", "duration": "1s", "seed": 3},
        "host": {"memory": "512MiB", "sharing": {"enabled": False}},
        "vm": [{"name": "g", "memory": "128MiB", "image": "alpine-3.19", "kernel": {"cpus": 2},
                "workload": {"profile": "webserver", "workers": 3, "shared_heap": "2MiB",
                             "worker_heap": "2MiB", "docroot": "1MiB", "cpu_util": 1.0}}]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    wakes = []
    real = T.select_task_rq_wake

    def spy(task, free_at, now):
        prev, recent = task.cpu, task.recent_used_cpu
        cpu = real(task, free_at, now)
        idle = [c for c in range(len(free_at)) if free_at[c] <= now]
        if prev in idle:
            want = prev
        elif recent in idle and recent != prev:
            want = recent
        elif idle:
            want = next(c for c in ((prev + i) % 2 for i in (1, 2)) if c in idle)
        else:
            want = min(range(2), key=lambda c: (free_at[c], c))
        assert cpu == want
        wakes.append((task.pid, prev, cpu))
        return cpu

    T.select_task_rq_wake = spy
    try:
        sc.start()
        (vm,) = sc.host.vms
        vcpus = vm.vcpus
        booked = []
        burst = vcpus.burst

        def spy_burst(now, cpu, zero_cpu=0.0, zip_cpu=0.0, wait=0.0, vcpu=None):
            end = burst(now, cpu, zero_cpu, zip_cpu, wait, vcpu)
            booked.append((vcpu, vcpus.last))
            return end

        vcpus.burst = spy_burst
        env.run(until=1.0)
    finally:
        T.select_task_rq_wake = real
    assert vcpus.n == 2 and len(vm.kernel.bdp_ratelimits) == 2
    assert wakes and any(prev != cpu for _pid, prev, cpu in wakes)  # tasks moved
    assert {cpu for _pid, _prev, cpu in wakes} == {0, 1}
    placed = [(v, last) for v, last in booked if v is not None]
    assert placed and all(v == last for v, last in placed)
