"""CPU time as the hardware spends it: the host's physical CPUs and each VM's vCPUs.

Overview
--------
No SimPy event is spent per page or per request: both pools are *reservation tables* in
simulated time. A CPU is a float, the time it is next free; work of `d` seconds that can
start at `t` is placed on a CPU, which becomes busy until `start + d`, and the caller
yields ONE timeout to the end. Work is served in the order it is submitted (FIFO), like
a SimPy Resource, but costs two list scans instead of four events.

`HostCPUs` (`[host] cpus`, default 4): every piece of host work runs on one of them (at
once: a host thread preempts vCPU work booked there, which slips; see `run`):

    sharing       ksmd's scan batches (hash and compare costs per page, sharing.py)
    compression   compression of evicted pages, decompression on access and on replacement
    zeroing       first-touch faults and copy-on-write breaks (EPT violation, frame
                  allocation, zeroing or copying 4 KiB), done in the faulting vCPU's context
    vcpus         guest code running on a vCPU

`VCPUs` (`[vm.kernel] cpus`): a burst of guest work takes the vCPU free first. The vCPU is
held for the burst's CPU time (which also needs a host CPU, so an overcommitted host
slows its guests) and for every stall beneath the guest (host faults, decompression,
host swap-in, waiting for a frame): a vCPU blocked in the hypervisor runs nothing else.
A guest I/O wait (guest swap-in, a file read from the virtual disk) releases the vCPU:
the task sleeps in D state and the vCPU runs other tasks meanwhile.

A burst is placed as: vCPU free at `v`, start `t0 = max(now, v)`; its CPU part (guest CPU
plus host CPU done on its behalf) on the host CPU that best fits (the latest one free by
`t0`, else the earliest free), ending at `t1`; the vCPU stays held through the waits
beneath the guest, to `t2 = t1 + wait`. The task then sleeps its I/O wait and goes on.

Counters: `busy[consumer]` seconds of host CPU granted; `VCPUs.run_time` (guest CPU),
`stall_time` (held blocked beneath the guest), `ready_time` (runnable, waiting for a vCPU
or a host CPU: ESX's %RDY).
"""

from __future__ import annotations

SHARING, COMPRESSION, ZEROING, VCPUS = 0, 1, 2, 3
CONSUMERS = ("sharing", "compression", "zeroing", "vcpus")


class HostCPUs:
    """`n` physical CPUs shared by vCPUs and host work. Times in seconds."""

    def __init__(self, n: int = 4) -> None:
        if n < 1:
            raise ValueError(f"host cpus: must be at least 1, got {n}")
        self.n = n
        self.free_at = [0.0] * n  # simulated time each CPU is next free
        self.busy = [0.0] * len(CONSUMERS)  # seconds granted, per consumer

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
        """Host work of `seconds` ready at `now` (a host thread: ksmd, the compressor);
        returns when it ends. It starts at once: on a CPU that is free, else it preempts
        the vCPU work booked on the CPU free first, whose later bookings slip by
        `seconds` (a host thread asking for less than its fair share of a CPU gets it
        when it asks, as under Linux's CFS; the guests lose that CPU time)."""
        if seconds <= 0.0:
            return now
        free_at = self.free_at
        i = self.place(now)
        f = free_at[i]
        free_at[i] = (f if f > now else now) + seconds
        self.busy[consumer] += seconds
        return now + seconds

    def charge(self, seconds: float, consumer: int) -> None:
        """Count host CPU time spent inside another reservation (e.g. the fault and
        decompression work of a vCPU burst, reserved with the burst)."""
        self.busy[consumer] += seconds

    def busy_s(self) -> dict[str, float]:
        return dict(zip(CONSUMERS, self.busy, strict=True))


class VCPUs:
    """One VM's `n` virtual CPUs over the host's CPUs."""

    def __init__(self, n: int, host_cpus: HostCPUs | None) -> None:
        if n < 1:
            raise ValueError(f"vcpus: must be at least 1, got {n}")
        self.n = n
        self.host_cpus = host_cpus
        self.free_at = [0.0] * n
        # counters, seconds
        self.run_time = 0.0  # guest CPU time granted
        self.stall_time = 0.0  # vCPU held, blocked beneath the guest
        self.ready_time = 0.0  # runnable but waiting for a vCPU or a host CPU
        self.bursts = 0

    def burst(self, now: float, cpu: float, zero_cpu: float = 0.0, zip_cpu: float = 0.0,
              wait: float = 0.0) -> float:
        """Run a burst ready at `now`: `cpu` seconds of guest code, host work on its
        behalf (`zero_cpu`: fault handling, zeroing and copying; `zip_cpu`:
        decompression), then `wait` seconds blocked beneath the guest with the vCPU held.
        Returns when the vCPU is released."""
        free_at = self.free_at
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
            busy = hc.busy
            busy[VCPUS] += cpu
            busy[ZEROING] += zero_cpu
            busy[COMPRESSION] += zip_cpu
        else:
            start = t0
            t1 = t0 + work
        end = t1 + wait
        free_at[i] = end
        self.run_time += cpu
        self.stall_time += host_cpu + wait
        self.ready_time += start - now
        self.bursts += 1
        return end
