"""The sampler and the run summary. Probes read counters; they never change the model.

`Sampler` is a SimPy process taking one row every `interval` simulated seconds (the
columns of timeseries.csv, see the experiments contract). `summarize()` turns the final
state of the host, its VMs and their workloads into the flat summary.json record.

Memory reclaimed per technique follows DESIGN.md: sharing = KSM pages_sharing + zero
pages; ballooning = pages the balloon holds now whose frames were backed when released
and before the driver allocated them (per page: a page deflated and ballooned again
untouched is not counted, nor one backed only by init_on_alloc's zeroing of the driver's
allocation); compression = pages
in the cache minus the frames it occupies; host swap = pages whose only copy is on swap;
free page reporting = reported free guest pages whose backing the host discarded and the
guest has not touched since.
Each guest page counts once, under the technique that holds it now, so at every sample
the techniques add up to the guest pages held (backed, shared, zero-mapped, compressed,
swapped, or released after being backed: ballooned or reported) minus the machine frames
used
(tests/experiments/test_attribution.py checks it at every sample of whole runs).

Host memory is never clamped: while the host is overdrawn (an allocation nothing could
be reclaimed for, see hypervisor/host.py) host_used_mib exceeds the host's memory,
host_free_mib is negative and host_overdraft_mib says by how much; the summary has the
peak and the seconds overdrawn.
"""

from __future__ import annotations

from guestkernel.page import PG_thp
from guestkernel.vmstat import PGSTATE_VMSTAT, STATE_NAMES, page_state
from hypervisor.p2m import (
    P2M_BALLOONED,
    P2M_COMPRESSED,
    P2M_PRIVATE,
    P2M_SHARED,
    P2M_SWAPPED,
    P2M_ZERO,
)

MIB = 1 << 20
PAGE = 4096
TECHNIQUES = ("sharing", "balloon", "compression", "swap", "reporting")
KSM_COLUMNS = ("ksm_run", "ksm_pages_to_scan", "ksm_sleep_ms")  # ksmd's tunables now
VM_COLUMNS = ("resident_mib", "ballooned_mib", "shared_mib", "compressed_mib", "swapped_mib", "throughput")
#: summary.json cost.stall_s: seconds beneath or inside the guests, by cause
STALL_CAUSES = ("host_fault", "cow_break", "decompress", "host_swapin", "balloon",
                "guest_swapin", "guest_file_read", "guest_throttle")
#: summary.json cost.host_cpu_s and timeseries host_cpu_<consumer>_pct
CPU_CONSUMERS = ("sharing", "compression", "zeroing", "vcpus", "balloon", "swapout")


def vm_stall_by_cause(vm) -> dict[str, float]:
    """Seconds a VM's guest stalled, by cause: beneath it (the VM's counters, vCPU held)
    and on its own disks (the guest kernel's I/O wait, vCPU free)."""
    k = getattr(vm, "kernel", None)
    return {
        "host_fault": vm.stall_host_fault,
        "cow_break": vm.stall_cow_break,
        "decompress": vm.stall_decompress,
        "host_swapin": vm.stall_host_swapin,
        "balloon": vm.stall_balloon,
        "guest_swapin": getattr(k, "iowait_swap", 0.0) if k is not None else 0.0,
        "guest_file_read": getattr(k, "iowait_file", 0.0) if k is not None else 0.0,
        # asleep throttled: balance_dirty_pages, reclaim_throttle
        "guest_throttle": getattr(k, "iowait_throttle", 0.0) if k is not None else 0.0,
    }


def pages_mib(pages: int | float) -> float:
    return round(pages * PAGE / MIB, 6)


def vm_memory_row(vm) -> dict[str, float]:
    nr = vm.p2m.nr
    return {
        "resident_mib": pages_mib(nr[P2M_PRIVATE] + nr[P2M_SHARED]),
        "ballooned_mib": pages_mib(nr[P2M_BALLOONED]),
        "shared_mib": pages_mib(nr[P2M_SHARED] + nr[P2M_ZERO]),
        "compressed_mib": pages_mib(nr[P2M_COMPRESSED]),
        "swapped_mib": pages_mib(nr[P2M_SWAPPED]),
    }


def vm_balloon_figures(vm) -> dict[str, float | int]:
    """summary.json's per-VM `balloon`, named as ESX and KVM name them:
    size_mib      the pages the driver holds, backed or not: ESX's "balloon" (esxtop
                  MEMCTL's MCTLSZ, vSphere's mem.vmmemctl), virtio's `actual` (QEMU's
                  query-balloon reports the VM's memory less it);
    target_mib    what the host asks for: ESX's MCTLTGT (mem.vmmemctltarget), virtio's
                  `num_pages`;
    reclaimed_mib what the balloon gave back: the pages it holds whose frames were backed
                  before the driver allocated them (on KVM the fall of the VM process's RSS;
                  ESX has no counter of it), this VM's share of `reclaimed_balloon_mib`;
    alloc_backed  pages the guest backed only by allocating them for the balloon
                  (init_on_alloc's zeroing: a host fault each), freed again on inflation;
                  over the whole run (pages deflated since included)."""
    d = getattr(vm, "balloon", None)
    return {
        "size_mib": pages_mib(d.actual if d is not None else 0),
        "target_mib": pages_mib(getattr(vm, "balloon_target", 0)),
        "reclaimed_mib": pages_mib(vm.nr_balloon_backed if d is not None else 0),
        "alloc_backed": int(getattr(vm, "released_alloc_backed", 0)),
    }


class Sampler:
    """One timeseries row per `interval` simulated seconds, starting at time 0."""

    def __init__(self, env, host, workloads: dict, interval: float) -> None:
        self.env = env
        self.host = host
        self.workloads = workloads  # VM name -> workload (or None)
        self.interval = interval
        self.rows: list[dict] = []
        self._last_work = {name: 0.0 for name in workloads}
        self._last_cpu = list(host.cpus.busy)
        self._last_time = 0.0  # of the previous row: throughput is over the time since
        self.process = env.process(self._run())

    def columns(self) -> list[str]:
        cols = ["time_s", "host_free_mib", "host_used_mib", "host_overdraft_mib", "host_state"]
        cols += [f"reclaimed_{t}_mib" for t in TECHNIQUES]
        cols += list(KSM_COLUMNS)
        cols += [f"host_cpu_{c}_pct" for c in CPU_CONSUMERS]
        if self.host.lp is not None:  # host large pages: live ones (AnonHugePages), MiB
            # ... and the wholly free 2 MiB machine regions (fragmentation), MiB
            cols += ["host_large_pages_mib", "host_free_regions_mib"]
        for vm in self.host.vms:
            cols += [f"{vm.name}.{c}" for c in VM_COLUMNS]
        if getattr(self.host.balloon.policy, "samplers", None) is not None:
            # esx-shares: each VM's active-memory estimate, the idle tax's f (its warm-up
            # from 100 % shows here)
            cols += [f"{vm.name}.active_pct" for vm in self.host.vms]
        return cols

    def sample(self) -> dict:
        host = self.host
        m = host.machine
        row: dict = {
            "time_s": round(self.env.now, 9),
            "host_free_mib": pages_mib(m.nr_free),  # negative while overdrawn
            "host_used_mib": pages_mib(m.nr_used),
            "host_overdraft_mib": pages_mib(max(-m.nr_free, 0)),
            "host_state": host.states.name,
        }
        for tech, pages in host.reclaimed().items():
            row[f"reclaimed_{tech}_mib"] = pages_mib(pages)
        ksm = host.sharing  # what a KSM control loop (hypervisor/ksmtune.py) set
        row["ksm_run"] = ksm.run if ksm is not None else 0
        row["ksm_pages_to_scan"] = ksm.pages_to_scan if ksm is not None else 0
        row["ksm_sleep_ms"] = ksm.sleep_millisecs if ksm is not None else 0
        # host CPU each consumer used since the last sample, percent of one CPU (as top
        # shows a thread: ksmd at 5 % uses a twentieth of a CPU)
        busy = host.cpus.busy
        elapsed = self.env.now - self._last_time  # the interval, or less for the final row
        for i, name in enumerate(CPU_CONSUMERS):
            row[f"host_cpu_{name}_pct"] = (round(100.0 * (busy[i] - self._last_cpu[i]) / elapsed, 6)
                                           if elapsed > 0 else 0.0)
        self._last_cpu = list(busy)
        if host.lp is not None:
            row["host_large_pages_mib"] = host.lp.large_pages * 2.0
            row["host_free_regions_mib"] = host.machine.whole_regions() * 2.0
        for vm in host.vms:
            for key, value in vm_memory_row(vm).items():
                row[f"{vm.name}.{key}"] = value
            wl = self.workloads.get(vm.name)
            done = wl.work_done if wl is not None else 0.0
            row[f"{vm.name}.throughput"] = round((done - self._last_work[vm.name]) / elapsed, 6) if elapsed > 0 else 0.0
            self._last_work[vm.name] = done
        samplers = getattr(host.balloon.policy, "samplers", None)
        if samplers is not None:
            for vm in host.vms:
                sm = samplers.get(vm.name)
                row[f"{vm.name}.active_pct"] = round(100.0 * sm.active, 6) if sm is not None else 100.0
        self._last_time = self.env.now
        return row

    def final(self) -> None:
        """The row at the end of the run (SimPy's run(until=t) stops before events at t, so
        the periodic row at the last second is never taken): the last row then holds the
        summary's final values."""
        if not self.rows or self.rows[-1]["time_s"] < round(self.env.now, 9):
            self.rows.append(self.sample())

    def _run(self):
        while True:
            self.rows.append(self.sample())
            yield self.env.timeout(self.interval)


def page_state_arcs(k) -> dict[str, int]:
    """The guest's page-state arcs: pgstate_1..9 and mainline's (guestkernel/vmstat.py)."""
    return {name: (k.vmstat.get(name, 0) if k is not None else 0) for name in PGSTATE_VMSTAT}


def page_state_pages(k) -> dict[str, int]:
    """Pages in each course state now (user pages on the LRU lists), by state name."""
    pop = [0] * len(STATE_NAMES)
    reclaim = getattr(k, "reclaim", None) if k is not None else None
    if reclaim is not None:
        for lv in reclaim.lruvecs:
            for lst in lv.lists:
                for entry in lst:
                    if entry.flags & PG_thp:  # a THP: one entry, its subpages in use
                        for page in reclaim.entry_pages(entry):
                            pop[page_state(page)] += 1
                    else:
                        pop[page_state(entry)] += 1
    return {name: pop[i] for i, name in enumerate(STATE_NAMES) if i}


def _mean(rows: list[dict], key: str) -> float:
    if not rows:
        return 0.0
    return round(sum(r[key] for r in rows) / len(rows), 6)


def summarize(host, workloads: dict, rows: list[dict], duration: float) -> dict:
    """The measured part of summary.json (the runner adds name, seed, status, timing)."""
    reclaimed = host.reclaimed()
    out: dict = {}
    total = 0.0
    for tech in TECHNIQUES:
        mib = pages_mib(reclaimed[tech])
        out[f"reclaimed_{tech}_mib"] = mib
        total += mib
    out["reclaimed_total_mib"] = round(total, 6)
    mean_total = 0.0
    for tech in TECHNIQUES:
        m = _mean(rows, f"reclaimed_{tech}_mib")
        out[f"mean_reclaimed_{tech}_mib"] = m
        mean_total += m
    out["mean_reclaimed_total_mib"] = round(mean_total, 6)
    c = host.counters()
    out["overdraft_peak_mib"] = pages_mib(host.machine.overdraft_peak)
    out["overdraft_s"] = round(float(c["overdraft_time"]), 9)
    out["overdraft_allocs"] = int(c["overdraft_allocs"])
    out["cow_breaks"] = int(c["cow_ksm"] + c["cow_zero"])
    out["decompressions"] = int(c["zswpin"])
    out["host_swapins"] = int(c["pswpin"])
    kernels = [vm.kernel for vm in host.vms if getattr(vm, "kernel", None) is not None]
    out["guest_swapins"] = sum(k.vmstat.get("pswpin", 0) for k in kernels)
    out["guest_oom_kills"] = sum(k.vmstat.get("oom_kill", 0) for k in kernels)
    out["vm_stall_s"] = round(sum(vm.stall_time for vm in host.vms), 9)
    out["dead_vms"] = sum(1 for k in kernels if k.panicked)
    # a host with no room left: ESX refused these at power-on (swap file not reservable),
    # KVM's OOM killer killed these (host memory and swap exhausted)
    out["not_powered_on"] = [dict(r) for r in host.not_powered_on]
    out["host_oom_kills"] = [dict(r) for r in host.host_oom_kills]
    vms: dict = {}
    by_unit: dict[str, float] = {}  # throughput per unit of work, summed over the VMs of that unit
    for vm in host.vms:
        k = getattr(vm, "kernel", None)
        wl = workloads.get(vm.name)
        work = wl.work_done if wl is not None else 0.0
        tput = round(work / duration, 6) if duration > 0 else 0.0
        unit = getattr(wl, "unit", "") if wl is not None else ""
        if unit:
            by_unit[unit] = round(by_unit.get(unit, 0.0) + tput, 6)
        entry = {"memory_mib": pages_mib(vm.nr_pages),
                 "reservation_mib": pages_mib(getattr(vm, "reservation", 0))}
        entry.update(vm_memory_row(vm))
        entry["balloon"] = vm_balloon_figures(vm)
        entry.update({
            "throughput": tput,
            "work_unit": unit,  # what work_done counts (requests, ops, wakeups, files, MiB, calls)
            "work_done": round(work, 6),
            "stall_s": round(vm.stall_time, 9),
            "stall_by_cause_s": {c: round(v, 9) for c, v in vm_stall_by_cause(vm).items()},
            "vcpu_ready_s": round(vm.vcpus.ready_time, 9) if getattr(vm, "vcpus", None) else 0.0,
            "oom_kills": k.vmstat.get("oom_kill", 0) if k is not None else 0,
            "panicked": bool(k.panicked) if k is not None else False,
            "page_states": page_state_arcs(k),
            "page_state_pages": page_state_pages(k),
            "faults": {name: value for name, value in (k.vmstat.items() if k is not None else ())
                       if name.startswith("fault_") or name in ("pgfault", "pgmajfault")},
            # transparent huge pages: /proc/vmstat's thp_* and the THPs mapped now (empty
            # where the guest has no THP: 2.6, i386)
            "thp": {name: value for name, value in (k.vmstat.items() if k is not None else ())
                    if name.startswith("thp_") or name == "nr_anon_transparent_hugepages"},
        })
        vms[vm.name] = entry
    out["throughput_by_unit"] = by_unit  # {unit: per second}; unlike units are never added
    out["throughput_total"] = next(iter(by_unit.values())) if len(by_unit) == 1 else None
    out["vms"] = vms
    out["states"] = {name: round(t, 9) for name, t in host.state_residence().items()}
    out["cost"] = cost_summary(host, workloads)
    out["host"] = {key: value for key, value in c.items()}
    if host.lp is not None:
        out["large_pages"] = large_page_summary(host, rows)
    return out


def large_page_summary(host, rows: list[dict]) -> dict:
    """summary.json's `large_pages` (hypervisor/largepage.py): the counters, and the mean
    reclaimed per technique (MiB) over the samples where host large pages backed guest
    memory and over those where none was left."""
    out: dict = dict(host.lp.counters())
    with_lp = [r for r in rows if r.get("host_large_pages_mib", 0) > 0]
    without = [r for r in rows if r.get("host_large_pages_mib", 0) <= 0]
    for label, part in (("with", with_lp), ("without", without)):
        out[f"samples_{label}"] = len(part)
        out[f"mean_reclaimed_{label}_mib"] = {t: _mean(part, f"reclaimed_{t}_mib") for t in TECHNIQUES}
    return out


def cost_summary(host, workloads: dict) -> dict:
    """summary.json's `cost`: what reclaiming cost, in seconds. stall_s by cause, summed
    over the VMs (host_* causes and balloon hold a vCPU; guest_* are guest I/O waits
    that free it); host_cpu_s by consumer (ksmd's scans, compression and decompression,
    zeroing and copying frames on faults, the vCPUs' guest code, balloon exits, swap-out
    submission); the host swap device's
    busy time, the time requests waited in its queue and its longest queue."""
    stall = dict.fromkeys(STALL_CAUSES, 0.0)
    for vm in host.vms:
        for cause, value in vm_stall_by_cause(vm).items():
            stall[cause] += value
    swap = host.swap
    return {
        "stall_s": {c: round(v, 9) for c, v in stall.items()},
        "host_cpu_s": {c: round(v, 9) for c, v in host.cpus.busy_s().items()},
        "host_cpus": host.cpus.n,
        "swap_device_busy_s": round(swap.busy_time, 9),
        "swap_device_wait_s": round(swap.wait_time, 9),
        "swap_device_queue_max": swap.queue_max,
        "vcpu_ready_s": round(sum(vm.vcpus.ready_time for vm in host.vms
                                  if getattr(vm, "vcpus", None) is not None), 9),
        # guest kernel threads' CPU on the vCPUs (kswapd, the flusher), in `vcpus` above
        "guest_kernel_cpu_s": round(sum(vm.vcpus.kernel_time for vm in host.vms
                                        if getattr(vm, "vcpus", None) is not None), 9),
        # guest CPU copying 4 KiB pages (page_copy_cost a copy): kcompactd's migrations and
        # khugepaged's collapses (in guest_kernel_cpu_s), direct compaction's and the
        # guest's copy-on-write breaks (in the tasks' CPU)
        "guest_copy_cpu_s": round(sum(getattr(vm, "copy_cpu", 0.0) for vm in host.vms), 9),
        # guest CPU zeroing 4 KiB pages (page_zero_cost a page): the allocator's
        # (__GFP_ZERO: demand-zero faults, page tables; init_on_alloc, init_on_free), THP
        # faults' clear_huge_page and new shmem folios (in the tasks' CPU, or a kernel
        # thread's), the empty slots of khugepaged's collapses (in guest_kernel_cpu_s)
        "guest_zero_cpu_s": round(sum(getattr(vm, "zero_cpu", 0.0) for vm in host.vms), 9),
        # allocations that found no free frame and waited for the host's reclaim
        "nomem_waits": sum(getattr(vm, "nomem_waits", 0) for vm in host.vms),
    }
