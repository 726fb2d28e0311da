"""CPU time as the hardware spends it: the host's physical CPUs and each VM's vCPUs.

Overview
--------
No SimPy event is spent per page or per request: both pools are *reservation tables* in
simulated time. A CPU is a float, the time it is next free; work of `d` seconds that can
start at `t` is placed on a CPU, which becomes busy until `start + d`, and the caller
yields ONE timeout to the end. Work is served in the order it is submitted (FIFO), like
a SimPy Resource, but costs two list scans instead of four events.

`HostCPUs` (`[host] cpus`, default 4): every piece of host work runs on one of them, on a
free CPU at once, else beside the vCPU work booked there, the two sharing that CPU in
proportion to their weights (see "Host threads" below):

    sharing       ksmd's scan batches (hash and compare costs per page, sharing.py)
    compression   compression of evicted pages, decompression on access and on replacement
    zeroing       first-touch faults and copy-on-write breaks (EPT violation, frame
                  allocation, zeroing or copying 4 KiB), done in the faulting vCPU's context
    vcpus         guest code running on a vCPU

`VCPUs` (`[vm.kernel] cpus`): a burst of guest work takes the vCPU its task woke on (the
guest's scheduler, guestkernel Task.on_cpu: its previous vCPU if idle, else an idle one,
else the one free first), or without a task the vCPU free first. The vCPU is
held for the burst's CPU time (which also needs a host CPU, so an overcommitted host
slows its guests) and for every stall beneath the guest (host faults, decompression,
host swap-in, waiting for a frame): a vCPU blocked in the hypervisor runs nothing else.
A guest I/O wait (guest swap-in, a file read from the virtual disk) releases the vCPU:
the task sleeps in D state and the vCPU runs other tasks meanwhile.

A burst is placed as: vCPU free at `v`, start `t0 = max(now, v)`; its CPU part (guest CPU
plus host CPU done on its behalf) on the host CPU that best fits (the latest one free by
`t0`, else the earliest free), ending at `t1`; the vCPU stays held through the waits
beneath the guest, to `t2 = t1 + wait`. The task then sleeps its I/O wait and goes on.

Time slicing. A burst needing more than its vCPU's time slice of CPU is run a slice at a
time (`run_burst`, the only SimPy part of this module: one timeout per slice, never per
page): each slice is booked when the previous one ends, behind whatever was booked in the
meantime, so vCPUs (and a guest's tasks on one vCPU) that want more CPU than there is take
turns round robin instead of one burst running to its end before the next starts. A
vCPU's slice is `quantum` (`[host] cpu_quantum`, default 50 ms: ESX's default time
quantum, VMware "The CPU Scheduler in VMware vSphere 5.1", 2013) scaled by its CPU shares
against ESX's normal 1000 per vCPU (`[vm] cpu_shares`: low 500, normal 1000, high 2000 per
vCPU, ESX's CpuSharesPerVcpuLow/Normal/High): in every round each runnable vCPU runs one
slice, so CPU time divides in proportion to shares, as ESX's proportional-share scheduler
(and CFS's weighted slices, sched_slice) give. A burst shorter than its slice is booked
whole, as before. On a host with CPUs to spare a sliced burst runs on without a gap.

Host threads. A host thread (ksmd, the state monitor's compression and swap-out
submission, the large-page break job, the host side of balloon exits) is a world like a
vCPU: on a CPU that vCPU work holds, the two run together, each getting a share of the CPU
in proportion to its weight, every quantum (the fluid limit of round-robin slices: ESX's
proportional-share scheduler; Linux CFS's weighted vruntime). Host work of `s` seconds of
CPU on a CPU booked until `f` by a vCPU of weight `wv` runs at rate `r = wh / (wh + wv)`
and ends at `now + min(s / r, f - now + s)` (alone once the vCPU's work is done); the vCPU
work loses exactly `s` of CPU: the CPU's booking ends at `f + s`. So ksmd's batch of
pages_to_scan pages takes longer on a busy host, as on a real one. The displaced work
slips on its vCPU's time line too (`VCPUs.slip`): the vCPU is free `s` later, so whatever
is queued on it (the stall after the CPU part, the next task's burst) starts later, and
every task whose burst was running or queued there owes `s` (`VCPUs.debt`): its timeout
was set before the displacement, so it sleeps `s` more when it wakes (workloads/base.py
`_guard`; `run_burst`'s last slice), as its burst ends `s` later. A burst booked later
is placed after the slipped booking and owes nothing. A guest kernel thread's short
pass pays its slip at its next pass instead (`run_burst`'s `slot`, one per thread:
VM.kernel_work): its time line loses the same. Weights per `[host] kind` (`HOST_WEIGHTS`):

    kvm   CFS's sched_prio_to_weight (kernel/sched/core.c): ksmd runs at nice 5
          (ksm_scan_thread: set_user_nice(current, 5)), weight 335; kswapd (the host's
          swap-out and zswap compression), the QEMU thread handling balloon requests and
          the vCPU threads at nice 0, weight 1024. A VM's cpu_shares scale its vCPU
          threads' weight (libvirt's <shares> is the cgroup's cpu.shares: 1024 normal).
    esx   proportional shares: a vCPU has its VM's shares per vCPU (normal 1000); the
          host's system worlds have 2000 shares, the share ESX documents for its
          host-side world (ESX Server 2 Administration Guide, "Service Console Resource
          Management": "The service console receives 2000 CPU shares"); the vmkernel's
          memory-scheduler worlds' own shares are not published: hvsim's assumption.

Guest kernel threads (kswapd, the flusher, kcompactd and khugepaged) run on the vCPUs
too: `VCPUs.kernel_work` books their CPU like a burst's, counted in `kernel_time` (and
`run_time`), so they take vCPU time from the guest's tasks; the host stalls they meet
hold the vCPU and their own I/O waits free it (guestkernel Kernel.run_kernel_work).

Counters: `busy[consumer]` seconds of host CPU granted; `VCPUs.run_time` (guest CPU),
`stall_time` (held blocked beneath the guest), `ready_time` (runnable, waiting for a vCPU
or a host CPU: ESX's %RDY), `kernel_time` (guest kernel threads), `slices`,
`displaced_time` (vCPU CPU time taken by host threads sharing its CPU; the slips).
Consumers: ksmd (`sharing`), compression (`compression`), fault zeroing and copying
(`zeroing`), guest code (`vcpus`), balloon inflate and deflate handling (`balloon`: the
exit, and the host's discard of an inflated page), host swap-out submission (`swapout`:
unmapping the frame and building the write request; the device time is the swap queue's).
"""

from __future__ import annotations

SHARING, COMPRESSION, ZEROING, VCPUS, BALLOON, SWAPOUT = 0, 1, 2, 3, 4, 5
CONSUMERS = ("sharing", "compression", "zeroing", "vcpus", "balloon", "swapout")

QUANTUM = 0.050  # seconds: ESX's default time quantum (The CPU Scheduler in VMware vSphere 5.1)
NORMAL_SHARES = 1000  # ESX CPU shares per vCPU at "normal" (CpuSharesPerVcpuNormal)

# weight of each host consumer's thread, and of a normal vCPU, per host kind (docstring,
# "Host threads"); ZEROING's host thread is ESX's large-page break job
HOST_WEIGHTS = {
    # CFS sched_prio_to_weight: nice 5 -> 335, nice 0 -> 1024
    "kvm": {"consumers": (335, 1024, 1024, 1024, 1024, 1024), "vcpu": 1024},
    # ESX shares: system worlds 2000 (the service console's documented default), vCPU 1000
    "esx": {"consumers": (2000, 2000, 2000, 2000, 2000, 2000), "vcpu": NORMAL_SHARES},
}


SLIP_LOG = 256  # displacements kept per vCPU for `VCPUs.debt` (a task's mark older than these reads none)


class HostCPUs:
    """`n` physical CPUs shared by vCPUs and host work. Times in seconds."""

    def __init__(self, n: int = 4, quantum: float = QUANTUM, kind: str = "esx") -> None:
        if n < 1:
            raise ValueError(f"host cpus: must be at least 1, got {n}")
        if not quantum > 0:
            raise ValueError(f"cpu_quantum: must be positive, got {quantum}")
        if kind not in HOST_WEIGHTS:
            raise ValueError(f"kind: must be one of {', '.join(HOST_WEIGHTS)}, got {kind!r}")
        self.n = n
        self.quantum = quantum  # seconds: a normal-shares vCPU's time slice
        self.kind = kind
        self.weights = HOST_WEIGHTS[kind]["consumers"]  # per consumer: its host thread's weight
        self.vcpu_weight = HOST_WEIGHTS[kind]["vcpu"]  # a normal-shares vCPU's weight
        self.free_at = [0.0] * n  # simulated time each CPU is next free
        # weight of the vCPU whose work is booked last on each CPU
        self.weight_at = [float(self.vcpu_weight)] * n
        self.busy = [0.0] * len(CONSUMERS)  # seconds granted, per consumer
        self.ready_time = 0.0  # seconds host work took beyond its CPU time (CPU shared with vCPUs)
        # the vCPUs (VCPUs, index) whose work is booked last on each CPU: host work that
        # displaces it makes it slip on its own timeline (module docstring, "Host threads")
        self.owner: list[VCPUs | None] = [None] * n
        self.owner_i = [0] * n

    def place(self, t0: float) -> int:
        """The CPU for work that can start at `t0`: the one that became free last before
        `t0` (least idle time wasted), else the one free first."""
        free_at = self.free_at
        best = -1
        best_t = -1.0
        first = 0
        first_t = free_at[0]
        for i in range(self.n):
            f = free_at[i]
            if f <= t0:
                if f > best_t:
                    best, best_t = i, f
            elif f < first_t:
                first, first_t = i, f
        return best if best >= 0 else first

    def run(self, now: float, seconds: float, consumer: int) -> float:
        """Host work of `seconds` of CPU ready at `now` (a host thread: ksmd, the
        compressor); returns when it ends. On a CPU free at `now` it runs at once;
        else it shares the CPU free first with the vCPU work booked there, in
        proportion to their weights (module docstring, "Host threads"): it ends at
        `now + min(seconds / r, f - now + seconds)`, r = wh / (wh + wv), and that
        CPU's booking slips by `seconds` (the guests lose exactly that CPU time)."""
        if seconds <= 0.0:
            return now
        free_at = self.free_at
        i = self.place(now)
        f = free_at[i]
        self.busy[consumer] += seconds
        if f <= now:
            free_at[i] = now + seconds
            self.owner[i] = None  # (a host thread's now)
            return now + seconds
        free_at[i] = f + seconds
        o = self.owner[i]
        if o is not None:  # the vCPU whose work it displaces: that work ends `seconds` later
            o.slip(self.owner_i[i], now, seconds)
        wh = self.weights[consumer]
        shared = seconds * (wh + self.weight_at[i]) / wh  # its CPU at rate r, vCPU busy throughout
        alone = f - now + seconds  # the vCPU's work ends first: the rest runs alone
        end = shared if shared < alone else alone
        self.ready_time += end - seconds
        return now + end

    def charge(self, seconds: float, consumer: int) -> None:
        """Count host CPU time spent inside another reservation (e.g. the fault and
        decompression work of a vCPU burst, reserved with the burst)."""
        self.busy[consumer] += seconds

    def busy_s(self) -> dict[str, float]:
        return dict(zip(CONSUMERS, self.busy, strict=True))


class VCPUs:
    """One VM's `n` virtual CPUs over the host's CPUs."""

    def __init__(self, n: int, host_cpus: HostCPUs | None, shares: float | None = None) -> None:
        if n < 1:
            raise ValueError(f"vcpus: must be at least 1, got {n}")
        if shares is None:
            shares = n * NORMAL_SHARES
        if not shares > 0:
            raise ValueError(f"cpu_shares: must be positive, got {shares}")
        self.n = n
        self.host_cpus = host_cpus
        self.shares = shares  # ESX CPU shares of the VM (all its vCPUs)
        quantum = host_cpus.quantum if host_cpus is not None else QUANTUM
        # each vCPU's weight against host threads on a host CPU (HOST_WEIGHTS)
        base = host_cpus.vcpu_weight if host_cpus is not None else NORMAL_SHARES
        self.weight = base * (shares / n) / NORMAL_SHARES
        # seconds of CPU a burst runs before the next runnable vCPU's turn
        self.slice = quantum * (shares / n) / NORMAL_SHARES
        self.free_at = [0.0] * n
        # counters, seconds
        self.run_time = 0.0  # guest CPU time granted
        self.stall_time = 0.0  # vCPU held, blocked beneath the guest
        self.ready_time = 0.0  # runnable but waiting for a vCPU or a host CPU
        self.kernel_time = 0.0  # guest kernel threads' CPU time (also in run_time)
        self.bursts = 0
        self.slices = 0  # time slices of bursts longer than a slice
        self.trace: list | None = None  # set to a list to record each booking's (start, end of its CPU)
        self.displaced_time = 0.0  # vCPU work's CPU time taken by host threads (it slipped that much)
        self.last = 0  # the vCPU the last burst was booked on
        # per vCPU, the host threads' displacements of its work: (when, seconds), oldest
        # first, the first `slip_base[i]` of them dropped (a task's `debt` reads them)
        self.slip_log: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        self.slip_base = [0] * n

    def burst(self, now: float, cpu: float, zero_cpu: float = 0.0, zip_cpu: float = 0.0,
              wait: float = 0.0, vcpu: int | None = None) -> float:
        """Run a burst ready at `now`: `cpu` seconds of guest code, host work on its
        behalf (`zero_cpu`: fault handling, zeroing and copying; `zip_cpu`:
        decompression), then `wait` seconds blocked beneath the guest with the vCPU held.
        On `vcpu` if given (where the guest's scheduler placed the task: an idle vCPU,
        else the one free first), else on the vCPU free first (the lowest of equals).
        Returns when the vCPU is released."""
        free_at = self.free_at
        if vcpu is not None and 0 <= vcpu < self.n:
            i = vcpu
            t0 = free_at[i]
        else:
            i = 0
            t0 = free_at[0]
            for j in range(1, self.n):
                if free_at[j] < t0:
                    i, t0 = j, free_at[j]
        if t0 < now:
            t0 = now
        host_cpu = zero_cpu + zip_cpu
        work = cpu + host_cpu
        hc = self.host_cpus
        if hc is not None and work > 0.0:
            k = hc.place(t0)
            start = hc.free_at[k]
            if start < t0:
                start = t0
            t1 = start + work
            hc.free_at[k] = t1
            hc.weight_at[k] = self.weight
            hc.owner[k] = self
            hc.owner_i[k] = i
            busy = hc.busy
            busy[VCPUS] += cpu
            busy[ZEROING] += zero_cpu
            busy[COMPRESSION] += zip_cpu
        else:
            start = t0
            t1 = t0 + work
        end = t1 + wait
        free_at[i] = end
        self.last = i
        if self.trace is not None:
            self.trace.append((start, t1))
        self.run_time += cpu
        self.stall_time += host_cpu + wait
        self.ready_time += start - now
        self.bursts += 1
        return end

    def slip(self, i: int, now: float, seconds: float) -> None:
        """Host work at `now` took `seconds` of CPU from vCPU `i`'s running burst (HostCPUs.run):
        that burst, and whatever is queued behind it on the vCPU, ends `seconds` later."""
        self.free_at[i] += seconds
        self.displaced_time += seconds
        log = self.slip_log[i]
        log.append((now, seconds))
        if len(log) > SLIP_LOG:
            del log[: SLIP_LOG // 2]
            self.slip_base[i] += SLIP_LOG // 2

    def mark(self, end: float) -> tuple[int, int, float]:
        """What a task keeps of the burst it just booked (ending at `end`), for `debt`."""
        i = self.last
        return (i, self.slip_base[i] + len(self.slip_log[i]), end)

    def debt(self, mark: tuple[int, int, float]) -> float:
        """Seconds the burst marked by `mark` slipped after it was booked: the host-thread
        displacements of its vCPU while it was still running or queued (before its end,
        which each displacement pushes further). Its task's next burst starts that much
        later, as the task's own time line would (the timeout it slept on was already set)."""
        i, n, end = mark
        log = self.slip_log[i]
        j = n - self.slip_base[i]
        if j >= len(log):
            return 0.0
        if j < 0:
            j = 0
        e = end
        for t, s in log[j:]:
            if t < e:
                e += s
            else:
                break
        return e - end

    def kernel_work(self, now: float, cpu: float, wait: float = 0.0) -> float:
        """A guest kernel thread's `cpu` seconds ready at `now` (kswapd's scan, the
        flusher's pass), then `wait` seconds held beneath the guest: booked like a
        task's burst; returns when the vCPU is released. Use `run_burst` for work that
        may be longer than a slice."""
        self.kernel_time += cpu
        return self.burst(now, cpu, 0.0, 0.0, wait)


def run_burst(env, vcpus: VCPUs, cpu: float, zero_cpu: float = 0.0, zip_cpu: float = 0.0,
              wait: float = 0.0, after: float = 0.0, kernel: bool = False, before: float = 0.0,
              slot: list | None = None, vcpu: int | None = None):
    """The SimPy event a burst ends with (module docstring, "Time slicing"): its vCPU
    time, then `after` seconds off the vCPU (I/O wait, think time). A burst within one
    slice is one timeout; a longer one is a process booking a slice at a time (its host
    work and its stall go with its last slice). `kernel`: a guest kernel thread's work.
    `before`: seconds the caller is late by (its previous burst's slip, VCPUs.debt): the
    burst is ready that much after now. A sliced burst pays its own last slice's slip
    before its `after`. `slot`: the caller's one-item list keeping its last short burst's
    `VCPUs.mark` (a kernel thread's, VM.kernel_work): the slip that burst took after its
    timeout was set is paid now, as `before`, and this burst's mark is kept in its place,
    so the caller's time line loses exactly the host work that displaced it, whatever
    the lengths of its bursts. `vcpu`: the vCPU its task was placed on (`VCPUs.burst`),
    for the burst or its first slice (later slices take the vCPU free first, as a
    runnable task the load balancer moves)."""
    now = env.now
    if slot is not None:
        m = slot[0]
        if m is not None:
            slot[0] = None
            before += vcpus.debt(m)
    work = cpu + zero_cpu + zip_cpu
    if work <= vcpus.slice:
        if kernel:
            vcpus.kernel_time += cpu
        end = vcpus.burst(now + before, cpu, zero_cpu, zip_cpu, wait, vcpu)
        if slot is not None:
            slot[0] = vcpus.mark(end)
        return env.timeout(end + after - now)
    return env.process(_sliced(env, vcpus, cpu, zero_cpu, zip_cpu, wait, after, kernel, before, vcpu))


def _sliced(env, vcpus: VCPUs, cpu: float, zero_cpu: float, zip_cpu: float, wait: float,
            after: float, kernel: bool, before: float = 0.0, vcpu: int | None = None):
    first = True
    while True:
        s = vcpus.slice
        if cpu > s:
            part, cpu = s, cpu - s
            end = vcpus.burst(env.now + before, part, vcpu=vcpu)
        else:
            part = cpu
            end = vcpus.burst(env.now + before, cpu, zero_cpu, zip_cpu, wait, vcpu)
            mark = vcpus.mark(end)
            cpu = -1.0
        vcpu = None
        if kernel:
            vcpus.kernel_time += part
        if not first:
            vcpus.bursts -= 1  # (one burst, however many slices)
        first = False
        before = 0.0
        vcpus.slices += 1
        yield env.timeout(end - env.now)
        if cpu < 0.0:
            break
    # the last slice's slip (an earlier slice's moved the vCPU's next booking, hence the next
    # slice), and any it takes while that is paid
    owed = vcpus.debt(mark)
    after += owed
    if after > 0.0:
        yield env.timeout(after)
    more = vcpus.debt(mark) - owed
    while more > 0.0:
        yield env.timeout(more)
        owed += more
        more = vcpus.debt(mark) - owed
