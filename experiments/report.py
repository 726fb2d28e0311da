"""The report of one run folder: `report.md` and its PNG plots, rebuilt from the files alone.

`write_report(run_dir)` reads what the runner left in a run folder

    config.toml       the resolved configuration (what was simulated)
    summary.json      final figures, costs, per-VM results, status and error
    timeseries.csv    one row per sample (may be empty or missing when the run failed)

and writes beside them

    report.md         what was simulated, memory reclaimed per technique (final and time
                      mean, MiB and % of guest memory), the cost side, per-VM results,
                      host memory state residence, links to the plots, the failure if any
    memory.png        host memory over time: used and free (together the host's memory),
                      stacked under the memory each technique reclaimed (sharing,
                      ballooning, compression, host swap), which the host did not have to
                      provide; needs timeseries.csv
    vms.png           per VM: resident, ballooned, shared, compressed, swapped (MiB)
    page_states.png   the course's guest page-state machine (free, active, inactive dirty,
                      being written, inactive clean) with the nine transitions labelled
                      with their counts summed over the VMs
    faults.png        page-fault outcomes summed over the VMs

A failed run gets a report of whatever exists; a plot whose data is missing is left out
and the report says why. `hvsim report DIR` regenerates everything from the files.

Units: memory in MiB, times in seconds (simulated unless named wall time).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import tomllib
from pathlib import Path

import click

#: The reclaim techniques: (summary/timeseries key part, label).
TECHNIQUES = (
    ("sharing", "page sharing"),
    ("balloon", "ballooning"),
    ("compression", "compression"),
    ("swap", "host swap"),
    ("reporting", "free page reporting"),
)

#: Per-VM memory figures in summary.json vms[*] and timeseries.csv "<vm>.<field>".
VM_FIELDS = (
    ("resident_mib", "resident"),
    ("ballooned_mib", "ballooned"),
    ("shared_mib", "shared"),
    ("compressed_mib", "compressed"),
    ("swapped_mib", "swapped"),
)

#: The course's page states, in drawing order, with plot positions (x, y).
PAGE_STATES = {
    "free": (0.0, 0.0),
    "active": (1.5, 1.0),
    "inactive dirty": (3.0, 0.0),
    "being written": (2.25, -1.1),
    "inactive clean": (0.75, -1.1),
}

#: Transitions 1..9 of the course: number -> (from state, to state, what happens).
TRANSITIONS = {
    1: ("free", "active", "allocation"),
    2: ("active", "inactive dirty", "modified, not accessed for a while"),
    3: ("inactive dirty", "active", "accessed again"),
    4: ("inactive dirty", "being written", "written to swap or file"),
    5: ("being written", "active", "accessed during I/O"),
    6: ("being written", "inactive clean", "I/O done"),
    7: ("inactive clean", "active", "accessed"),
    8: ("active", "inactive clean", "clean page not accessed"),
    9: ("inactive clean", "free", "reclaimed, back to the free pool"),
}

#: Mainline's arcs the course's diagram does not draw (guestkernel/vmstat.py): vmstat
#: name -> (from state, to state, what happens). With them the diagram balances: for
#: every state, the pages in it at the end = arcs in - arcs out.
EXTRA_TRANSITIONS = {
    "pgstate_free_dirty": ("free", "inactive dirty", "new anonymous page (6.x: inactive)"),
    "pgstate_free_clean": ("free", "inactive clean", "new page-cache or swap-in page (use-once)"),
    "pgstate_free_laundry": ("free", "being written", "(never: a new page is not under I/O)"),
    "pgstate_clean_dirty": ("inactive clean", "inactive dirty", "written again, or its swap copy dropped"),
    "pgstate_dirty_clean": ("inactive dirty", "inactive clean", "cleaned without a write (truncate, MADV_FREE)"),
    "pgstate_clean_laundry": ("inactive clean", "being written", "(never: only dirty pages are written)"),
    "pgstate_laundry_dirty": ("being written", "inactive dirty", "written to during its write"),
    "pgstate_active_laundry": ("active", "being written", "deactivated while being written"),
    "pgstate_active_free": ("active", "free", "freed by its owner (exit, munmap, truncate)"),
    "pgstate_dirty_free": ("inactive dirty", "free", "freed by its owner"),
    "pgstate_laundry_free": ("being written", "free", "freed by its owner when its write ended"),
    "pgstate_clean_free": ("inactive clean", "free", "freed by its owner (not reclaimed)"),
}

#: Cost counters in summary.json: (key, label, unit).
COSTS = (
    ("cow_breaks", "copy-on-write breaks of shared pages", ""),
    ("decompressions", "decompressions (compression cache hits)", ""),
    ("host_swapins", "host swap-ins", ""),
    ("guest_swapins", "guest swap-ins", ""),
    ("guest_oom_kills", "guest OOM kills", ""),
    ("vm_stall_s", "VM stall time (all VMs)", "s"),
    ("dead_vms", "VMs dead (panicked)", ""),
    ("overdraft_peak_mib", "host memory overdrawn: peak", "MiB"),
    ("overdraft_s", "host memory overdrawn: time", "s"),
)

#: What each column of the per-VM table holds (report.md prints these under the table).
VM_COLUMN_MEANINGS = (
    ("memory", "the guest memory the VM was configured with (what it ran with)."),
    ("resident", "guest pages backed by a machine frame, its own or a shared one."),
    ("ballooned", "guest pages held by the balloon driver now. Held is not reclaimed: only a page whose "
     "frame was backed when the guest gave it up frees a frame, so ballooning's reclaimed figure "
     "(above) counts those alone; a never-touched page in the balloon frees nothing."),
    ("shared", "guest pages mapped to a shared frame (zero pages included). N pages on one frame reclaim "
     "N - 1: sharing's reclaimed figure is these pages, over all VMs, minus the shared frames (KSM "
     "pages_sharing)."),
    ("compressed", "guest pages held in the compression cache. Reclaimed by compression is these pages, "
     "over all VMs, minus the frames the cache occupies."),
    ("swapped", "guest pages whose only copy is on host swap: all of them are reclaimed."),
    ("throughput", "the workload's work per simulated second, in the unit its profile counts (requests, "
     "ops, wakeups, files, MiB, calls); work done is the total in that unit."),
    ("stall s", "simulated seconds the VM's vCPUs waited beneath the guest (host faults, copy-on-write, "
     "decompression, host swap-in, waits for memory)."),
)

def balloon_section(vms: dict) -> list[str]:
    """Per VM, the balloon as ESX and KVM show it (summary.json's `balloon`), and what it
    gave back; nothing when no VM has a balloon target or size."""
    rows = []
    for vm, d in vms.items():
        b = d.get("balloon") if isinstance(d, dict) else None
        if not isinstance(b, dict) or not (_f(b, "size_mib") or _f(b, "target_mib")):
            continue
        rows.append([vm, _fmt(_f(b, "target_mib")), _fmt(_f(b, "size_mib")), _fmt(_f(b, "reclaimed_mib")),
                     f"{int(_f(b, 'alloc_backed')):,}"])
    if not rows:
        return []
    out = ["Balloons at the end of the run (MiB):", ""]
    out += _table(["VM", "target (ESX MCTLTGT, virtio num_pages)", "size (ESX MCTLSZ, virtio actual)",
                   "reclaimed (frames given back)", "inflated pages backed only by the driver's allocation, all run"],
                  rows, "lrrrr")
    out += ["", "The balloon's size is every page its driver holds; it reclaims only the pages whose frames "
            "were backed before the driver allocated them. A page the guest zeroes because the driver "
            "allocated it (init_on_alloc) costs a host fault and is freed again: nothing given back.", ""]
    return out


PLOT_FILES = {
    "memory": "memory.png",
    "vms": "vms.png",
    "page_states": "page_states.png",
    "faults": "faults.png",
    "host_cpu": "host_cpu.png",
}


class ReportError(Exception):
    """A run folder that cannot be reported on (one line, names the folder and why)."""


# -- reading -------------------------------------------------------------------------------


def read_run(run_dir: str | Path) -> tuple[dict, dict, list[dict]]:
    """Return (config, summary, samples) of a run folder.

    summary.json is required; config.toml and timeseries.csv may be missing (a failed
    run), giving {} and []. Sample values are floats except `host_state` (a string).
    Raises ReportError for a missing folder or an unreadable summary.json.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run folder")
    spath = run_dir / "summary.json"
    if not spath.is_file():
        raise ReportError(f"{run_dir}: not a run folder (no summary.json)")
    try:
        summary = json.loads(spath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReportError(f"{spath}: unreadable summary ({exc})") from None
    if not isinstance(summary, dict):
        raise ReportError(f"{spath}: unreadable summary (not a JSON object)")
    config: dict = {}
    cpath = run_dir / "config.toml"
    if cpath.is_file():
        try:
            config = tomllib.loads(cpath.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ReportError(f"{cpath}: unreadable config ({exc})") from None
    return config, summary, read_timeseries(run_dir / "timeseries.csv")


def read_timeseries(path: str | Path) -> list[dict]:
    """Rows of timeseries.csv as dicts ([] when the file is missing or has no samples)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    with open(path, newline="") as f:
        for raw in csv.DictReader(f):
            row: dict = {}
            for key, text in raw.items():
                if key is None:  # a ragged line: extra cells without a header
                    continue
                row[key] = _number(text) if key != "host_state" else text
            rows.append(row)
    return rows


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _f(d: dict, key: str, default: float = 0.0) -> float:
    """A number from a summary dict; missing or null -> default."""
    value = d.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


# -- report.md -----------------------------------------------------------------------------


def write_report(run_dir: str | Path, plots: bool | None = None) -> Path:
    """Write report.md and the PNG plots of a run folder; return the path of report.md.

    plots: draw the PNGs (None: as config.toml's output.plots says, default true).
    Raises ReportError when the folder or its summary.json is missing or unreadable.
    """
    run_dir = Path(run_dir)
    config, summary, samples = read_run(run_dir)
    if plots is None:
        output = config.get("output") if isinstance(config.get("output"), dict) else {}
        plots = output.get("plots", True) is not False
    if plots:
        files, missing = write_plots(run_dir, summary, samples)
    else:
        files, missing = {}, dict.fromkeys(PLOT_FILES, "plots are off (output.plots = false)")
        for name in PLOT_FILES.values():  # an earlier report's PNGs would pass for this run's
            (run_dir / name).unlink(missing_ok=True)
    text = render_markdown(config, summary, samples, files, missing)
    out = run_dir / "report.md"
    out.write_text(text)
    return out


def _fmt(value: float, digits: int = 1) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _pct(value: float, whole: float) -> str:
    return f"{100.0 * value / whole:.1f} %" if whole > 0 else "-"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A markdown table; `align` gives 'l' or 'r' per column (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(config: dict, summary: dict, samples: list[dict], plots: dict[str, str],
                    missing: dict[str, str]) -> str:
    """The text of report.md (plots: name -> file written; missing: name -> why not)."""
    exp = config.get("experiment", {}) if isinstance(config.get("experiment"), dict) else {}
    name = summary.get("name") or exp.get("name") or "(unnamed)"
    status = summary.get("status", "unknown")
    guest = _f(summary, "guest_memory_mib")
    out = [f"# hvsim run: {name}", ""]

    if status != "ok":
        out += ["## Failure", "", f"- status: **{status}**"]
        if summary.get("error"):
            out.append(f"- error: `{_one_line(summary['error'])}`")
        if summary.get("traceback"):
            out.append("- the traceback is in `summary.json` (`traceback`)")
        out += ["", "The figures below are what the run produced before it stopped.", ""]

    peak = _f(summary, "overdraft_peak_mib")
    if peak > 0:
        out += ["## Host memory overdrawn", "",
                f"- **machine memory exceeded the host's by up to {_fmt(peak)} MiB, for "
                f"{_fmt(_f(summary, 'overdraft_s'), 3)} simulated s "
                f"({int(_f(summary, 'overdraft_allocs')):,} allocations)**: nothing could be "
                "reclaimed in time (no compression cache room, no host swap left), and the "
                "allocating VMs were charged `nomem_stall` each instead of waiting. A real "
                "host cannot do this: read the figures below with that in mind.", ""]

    refused = summary.get("not_powered_on") or []
    if refused:
        out += ["## VMs not powered on", ""]
        out += [f"- **{r['vm']}**: {r['reason']}; its workload did not run." for r in refused]
        out.append("")
    kills = summary.get("host_oom_kills") or []
    if kills:
        out += ["## VMs killed by the host's OOM killer", ""]
        out += [f"- **{k['vm']}** at {_fmt(float(k['time_s']), 3)} s (oom_score {k['oom_score_pages']:,} "
                f"pages; {_fmt(float(k['freed_mib']))} MiB freed): host memory and swap were exhausted "
                "and nothing could be reclaimed" for k in kills]
        out.append("")

    out += ["## What was simulated", ""]
    facts = [
        ("name", name),
        ("seed", summary.get("seed", exp.get("seed", "-"))),
        ("duration", exp.get("duration", "-")),
        ("simulated time", f"{_fmt(_f(summary, 'sim_time_s'))} s"),
        ("sample interval", exp.get("sample_interval", "-")),
        ("host memory", f"{_fmt(_f(summary, 'host_memory_mib'))} MiB"),
        ("guest memory (all VMs)", f"{_fmt(guest)} MiB"),
        ("overcommit ratio", f"{guest / _f(summary, 'host_memory_mib'):.2f}"
         if _f(summary, "host_memory_mib") > 0 else "-"),
        ("samples", str(len(samples))),
        ("hvsim version", summary.get("version", "-")),
        ("wall time", f"{_fmt(_f(summary, 'wall_time_s'), 2)} s"),
    ]
    out += [f"- {k}: {v}" for k, v in facts]
    vms_cfg = config.get("vm", [])
    if isinstance(vms_cfg, list) and vms_cfg:
        rows = []
        for vm in vms_cfg:
            if not isinstance(vm, dict):
                continue
            wl = vm.get("workload", {}) if isinstance(vm.get("workload"), dict) else {}
            kern = vm.get("kernel", {}) if isinstance(vm.get("kernel"), dict) else {}
            rows.append([str(vm.get("name", "-")), str(vm.get("count", 1)), str(vm.get("memory", "-")),
                         str(vm.get("image", "-")), str(kern.get("arch", "-")),
                         str(wl.get("profile", "-"))])
        out += ["", "Virtual machines (as configured; `config.toml` has every setting):", ""]
        out += _table(["VM", "count", "memory", "image", "arch", "workload"], rows, "lrrlll")
    out.append("")

    out += ["## Memory reclaimed per technique", ""]
    rows = []
    for key, label in TECHNIQUES + (("total", "**total**"),):
        final = _f(summary, f"reclaimed_{key}_mib")
        mean = _f(summary, f"mean_reclaimed_{key}_mib")
        rows.append([label, _fmt(final), _pct(final, guest), _fmt(mean), _pct(mean, guest)])
    out += _table(["technique", "final MiB", "final % of guest", "mean MiB", "mean % of guest"], rows)
    out += ["", "Memory reclaimed is machine memory the host did not have to provide: guest pages held "
            "minus the machine frames that hold them, each guest page counted once, under the "
            "technique that holds it now (DESIGN.md). Final: at the end of the run; mean: time "
            "average over the samples. Percentages are of the guests' configured memory. At every "
            "sample the techniques add up to the guest pages held minus the machine frames used.", ""]

    out += large_page_section(summary, samples)

    out += ["## Cost", ""]
    rows = []
    for key, label, unit in COSTS:
        value = summary.get(key)
        if value is None:
            text = "-"
        elif unit:  # seconds and rates: fractional
            text = _fmt(float(value), 3)
        else:
            text = f"{int(value):,}"
        rows.append([label, text + (f" {unit}" if unit and text != "-" else "")])
    for unit, rate in throughput_by_unit(summary).items():  # never added across unlike units
        rows.append([f"workload throughput, VMs counting {unit}", f"{_fmt(rate, 3)} {unit}/s"])
    out += _table(["cost", "value"], rows)
    out.append("")

    out += cost_sections(summary, samples)

    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    if vms:
        out += ["## Per VM", ""]
        rows = []
        for vm, d in vms.items():
            unit = d.get("work_unit") or "work"
            rows.append([vm, _fmt(_f(d, "memory_mib")), *[_fmt(_f(d, k)) for k, _ in VM_FIELDS],
                         f"{_fmt(_f(d, 'throughput'), 3)} {unit}/s", f"{_fmt(_f(d, 'work_done'), 0)} {unit}",
                         _fmt(_f(d, "stall_s"), 3), str(int(_f(d, "oom_kills"))),
                         "yes" if d.get("panicked") else "no"])
        out += _table(["VM", "memory MiB", *[f"{lbl} MiB" for _, lbl in VM_FIELDS], "throughput",
                       "work done", "stall s", "OOM kills", "panicked"], rows)
        reserved = [(vm, _f(d, "reservation_mib")) for vm, d in vms.items() if _f(d, "reservation_mib") > 0]
        if reserved:
            out += ["", "Memory reservations (ESX sched.mem.min: machine memory guaranteed; ballooning, "
                    "compression and host swap never take the VM below it; its swap file is memory minus "
                    "reservation): " + ", ".join(f"{vm} {_fmt(mib)} MiB" for vm, mib in reserved) + "."]
        out += ["", "Each VM's memory columns are guest pages *held* in a state at the end of the run, "
                "not memory *reclaimed*; they do not add up to the technique totals above:", ""]
        out += [f"- **{name}**: {meaning}" for name, meaning in VM_COLUMN_MEANINGS]
        out += ["", "Held against reclaimed, over all VMs (MiB):", ""]
        recon = []
        for field, tech, why in (("shared_mib", "sharing", "the shared frames that hold them"),
                                 ("ballooned_mib", "balloon", "balloon pages not backed before the driver took "
                                  "them (never touched, or backed only by init_on_alloc's zeroing)"),
                                 ("compressed_mib", "compression", "the frames the cache occupies"),
                                 ("swapped_mib", "swap", "none: each has no frame")):
            held = sum(_f(d, field) for d in vms.values() if isinstance(d, dict))
            reclaimed = _f(summary, f"reclaimed_{tech}_mib")
            recon.append([dict(TECHNIQUES)[tech], _fmt(held), _fmt(reclaimed), _fmt(held - reclaimed), why])
        out += _table(["technique", "held by the VMs", "reclaimed", "difference", "the difference is"], recon,
                      "lrrrl")
        out.append("")
        out += balloon_section(vms)

    states = summary.get("states") if isinstance(summary.get("states"), dict) else {}
    if states:
        out += ["## Host memory state residence", ""]
        total = sum(float(v) for v in states.values() if isinstance(v, int | float))
        rows = [[s, _fmt(float(v), 3), _pct(float(v), total)] for s, v in states.items()
                if isinstance(v, int | float)]
        out += _table(["state", "seconds", "share"], rows)
        out.append("")

    trans = page_state_counts(summary)
    if any(trans.values()):
        out += ["## Guest page-state transitions (all VMs)", ""]
        rows = [[str(n), f"{a} -> {b}", why, f"{trans[n]:,}"] for n, (a, b, why) in TRANSITIONS.items()]
        extra = page_state_extra_counts(summary)
        rows += [["", f"{a} -> {b}", why, f"{extra[name]:,}"]
                 for name, (a, b, why) in EXTRA_TRANSITIONS.items() if extra.get(name)]
        out += _table(["#", "transition", "what happens", "count"], rows, "rllr")
        pages = page_state_pages(summary)
        if pages:
            out += ["", "Pages in each state at the end (each = arcs in - arcs out over the run): "
                    + ", ".join(f"{st} {pages.get(st, 0):,}" for st in PAGE_STATES if st != "free") + "."]
        out.append("")

    faults = fault_counts(summary)
    if faults:
        out += ["## Page faults (all VMs)", ""]
        shown = [[k, f"{v:,}"] for k, v in faults.items() if v]
        out += _table(["counter", "count"], shown) if shown else ["No page faults."]
        zero = [k for k, v in faults.items() if not v]
        if zero and shown:
            out += ["", "Zero: " + ", ".join(zero) + "."]
        out.append("")

    out += ["## Plots", ""]
    titles = {"memory": "Host memory by technique over time", "vms": "Memory per VM",
              "page_states": "Guest page-state machine", "faults": "Page-fault outcomes",
              "host_cpu": "Host CPU use over time"}
    for key, title in titles.items():
        if key in plots:
            out += [f"### {title}", "", f"![{title}]({plots[key]})", ""]
        else:
            out += [f"### {title}", "", f"Not drawn: {missing.get(key, 'no data')}.", ""]
    return "\n".join(out).rstrip() + "\n"


#: summary.json cost.stall_s causes: (cause, technique it is a cost of, what the guest waits for)
STALL_ROWS = (
    ("host_fault", "(any: first use)", "first touch of a frame (host fault, zeroing), vCPU held"),
    ("cow_break", "sharing", "copy-on-write break of a shared page, vCPU held"),
    ("balloon", "ballooning", "a ballooned frame backed again, vCPU held"),
    ("guest_swapin", "ballooning (guest paging)", "guest swap-in from its virtual disk, task asleep"),
    ("guest_file_read", "ballooning (guest paging)", "file read from the virtual disk, task asleep"),
    ("guest_throttle", "ballooning (guest paging)",
     "dirty and reclaim throttling (balance_dirty_pages, reclaim_throttle), task asleep"),
    ("decompress", "compression", "decompression on access, vCPU held"),
    ("host_swapin", "host swap", "host swap-in (device queue included), vCPU held"),
)
CPU_ROWS = (
    ("sharing", "ksmd: hashing and comparing pages"),
    ("compression", "compressing evicted pages, decompressing"),
    ("zeroing", "faults: zeroing and copying frames"),
    ("vcpus", "guest code and kernel threads on the vCPUs"),
    ("balloon", "balloon inflate and deflate exits (page discards)"),
    ("swapout", "submitting writes to host swap"),
)


def cost_sections(summary: dict, samples: list[dict], points: int = 10) -> list[str]:
    """report.md's cost per technique and host CPU over time (from summary.json `cost`
    and timeseries.csv host_cpu_*_pct); nothing when the run has no cost object."""
    cost = summary.get("cost")
    if not isinstance(cost, dict):
        return []
    out = ["## Cost per technique", ""]
    stall = cost.get("stall_s") if isinstance(cost.get("stall_s"), dict) else {}
    rows = [[cause, tech, what, _fmt(_f(stall, cause), 3)] for cause, tech, what in STALL_ROWS]
    out += _table(["stall", "technique", "what the guest waits for", "seconds (all VMs)"], rows, "lllr")
    out += ["", f"Host swap device: busy {_fmt(_f(cost, 'swap_device_busy_s'), 3)} s, requests queued "
            f"{_fmt(_f(cost, 'swap_device_wait_s'), 3)} s in all, at most "
            f"{int(_f(cost, 'swap_device_queue_max'))} at once. vCPUs runnable but waiting for a "
            f"vCPU or host CPU (ready time): {_fmt(_f(cost, 'vcpu_ready_s'), 3)} s. Guest kernel "
            f"threads on the vCPUs (kswapd, the flusher, kcompactd, khugepaged): "
            f"{_fmt(_f(cost, 'guest_kernel_cpu_s'), 3)} s of CPU; guest page copies "
            f"(migrations, collapses, copy-on-write in the guest): {_fmt(_f(cost, 'guest_copy_cpu_s'), 3)} s; "
            f"guest page zeroings (a collapse's empty slots): {_fmt(_f(cost, 'guest_zero_cpu_s'), 3)} s.", ""]
    cpu = cost.get("host_cpu_s") if isinstance(cost.get("host_cpu_s"), dict) else {}
    duration = _f(summary, "sim_time_s")
    out += ["## Host CPU", ""]
    rows = [[name, what, _fmt(_f(cpu, name), 3), _fmt(100.0 * _f(cpu, name) / duration, 1) if duration else "-"]
            for name, what in CPU_ROWS]
    out += _table(["consumer", "work", "CPU seconds", "mean % of one CPU"], rows)
    out.append("")
    if samples and f"host_cpu_{CPU_ROWS[0][0]}_pct" in samples[0]:
        # the samples in `points` windows: each consumer's mean % of one CPU (as top shows
        # a thread: ksmd at 5 % uses a twentieth of a CPU)
        n = len(samples)
        step = max(1, -(-n // points))
        rows = []
        for i in range(0, n, step):
            window = samples[i:i + step]
            t0, t1 = _nz(window[0].get("time_s")), _nz(window[-1].get("time_s"))
            rows.append([f"{_fmt(t0, 0)}-{_fmt(t1, 0)}"] + [
                _fmt(sum(_nz(r.get(f"host_cpu_{name}_pct")) for r in window) / len(window), 1)
                for name, _ in CPU_ROWS])
        out += [f"Over time, % of one CPU ({int(_f(cost, 'host_cpus'))} host CPUs = "
                f"{100 * int(_f(cost, 'host_cpus'))} %):", ""]
        out += _table(["time s"] + [name for name, _ in CPU_ROWS], rows)
        out.append("")
    base = summary.get("baseline")
    if isinstance(base, dict) and base and "error" not in base:
        out += ["## Slowdown against the baseline", "",
                "The same VMs on a host with memory for all of them and no reclamation "
                "(`[experiment] baseline = true`).", ""]
        rows = [[vm, _fmt(_f(b, "throughput"), 3), _fmt(_f(b, "relative_throughput"), 3),
                 _fmt(_f(b, "slowdown"), 3) if b.get("slowdown") is not None else "-"]
                for vm, b in base.items() if isinstance(b, dict)]
        out += _table(["VM", "baseline throughput/s", "relative throughput", "slowdown"], rows)
        out.append("")
    elif isinstance(base, dict) and "error" in base:
        out += ["## Slowdown against the baseline", "", f"The baseline run failed: {base['error']}", ""]
    return out


LARGE_PAGE_COUNTERS = (
    ("thp_fault_alloc", "large pages backed (first touch of a 2 MiB region)", ""),
    ("thp_fault_fallback", "first touches of an untouched region given a small page (no room or no free region)", ""),
    ("thp_split_page", "large pages split or broken, all causes", ""),
    ("large_pages_broken", "... broken by ESX's background job (free < 400 % of minFree)", ""),
    ("thp_split_ksm", "... split by a KSM merge of a subpage (KVM)", ""),
    ("thp_split_reclaim", "... split to compress or swap a subpage", ""),
    ("thp_split_release", "... split because the guest released a subpage", ""),
    ("large_pages", "live at the end", "x 2 MiB"),
    ("lp_frames_reserved", "frames held for untouched subpages at the end", "x 4 KiB"),
    ("lp_frames_freed", "frames splits freed (untouched; zero-filled on KVM)", "x 4 KiB"),
    ("lp_break_cpu_s", "host CPU breaking them", "s"),
    ("pages_collapsed", "ranges khugepaged collapsed back into huge pages (KVM)", ""),
    ("thp_collapse_alloc_failed", "... collapses refused for want of a free region or room", ""),
    ("thp_scan_exceed_share_pte", "... ranges left for more than max_ptes_shared KSM pages", ""),
    ("khugepaged_cpu_s", "host CPU of khugepaged's copies", "s"),
    ("lp_region_alloc_failed", "large pages refused for want of a wholly free 2 MiB region (fragmentation)", ""),
    ("lp_regions_whole", "wholly free 2 MiB machine regions at the end", "x 2 MiB"),
)


def large_page_section(summary: dict, samples: list[dict]) -> list[str]:
    """Host large pages (hypervisor/largepage.py), when the run had them: the counters,
    and the mean reclaimed per technique over the samples where large pages backed guest
    memory and over those where none was left."""
    host = summary.get("host") if isinstance(summary.get("host"), dict) else {}
    if "thp_fault_alloc" not in host:
        return []
    out = ["## Host large pages", ""]
    rows = []
    for key, label, unit in LARGE_PAGE_COUNTERS:
        value = host.get(key, 0)
        text = _fmt(float(value), 3) if unit == "s" else f"{int(value):,}"
        if unit == "x 2 MiB":
            text += f" ({_fmt(2.0 * int(value))} MiB)"
        elif unit == "x 4 KiB":
            text += f" ({_fmt(int(value) / 256)} MiB)"
        elif unit:
            text += f" {unit}"
        rows.append([f"`{key}`", label, text])
    out += _table(["counter", "what", "value"], rows, "llr")
    with_lp = [r for r in samples if _f(r, "host_large_pages_mib") > 0]
    without = [r for r in samples if _f(r, "host_large_pages_mib") <= 0]
    rows = []
    for key, label in TECHNIQUES:
        col = f"reclaimed_{key}_mib"
        cells = [_fmt(sum(_f(r, col) for r in part) / len(part)) if part else "-"
                 for part in (with_lp, without)]
        rows.append([label, *cells])
    out += ["", f"Reclaimed per technique, mean MiB over the samples with live large pages "
            f"({len(with_lp)}) and without any ({len(without)}):", ""]
    out += _table(["technique", "with large pages", "without"], rows)
    out.append("")
    return out


def _one_line(text: str) -> str:
    return " ".join(str(text).split()).replace("`", "'")


def throughput_by_unit(summary: dict) -> dict[str, float]:
    """Throughput per unit of work ({"requests": 200.0, "ops": 1000.0}, per second), from
    summary.json's throughput_by_unit or, for older summaries, its VMs' work units."""
    given = summary.get("throughput_by_unit")
    if isinstance(given, dict):
        return {str(u): float(v) for u, v in given.items() if isinstance(v, int | float)}
    out: dict[str, float] = {}
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    for d in vms.values():
        if isinstance(d, dict) and d.get("work_unit"):
            out[d["work_unit"]] = out.get(d["work_unit"], 0.0) + _f(d, "throughput")
    return out


def page_state_counts(summary: dict) -> dict[int, int]:
    """Transitions 1..9 summed over the VMs' page_states {"pgstate_N": count}."""
    counts = dict.fromkeys(TRANSITIONS, 0)
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    for d in vms.values():
        ps = d.get("page_states") if isinstance(d, dict) else None
        if not isinstance(ps, dict):
            continue
        for n in counts:
            value = ps.get(f"pgstate_{n}", 0)
            if isinstance(value, int | float):
                counts[n] += int(value)
    return counts


def page_state_extra_counts(summary: dict) -> dict[str, int]:
    """Mainline's extra arcs (EXTRA_TRANSITIONS) summed over the VMs."""
    counts = dict.fromkeys(EXTRA_TRANSITIONS, 0)
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    for d in vms.values():
        ps = d.get("page_states") if isinstance(d, dict) else None
        if isinstance(ps, dict):
            for name in counts:
                value = ps.get(name, 0)
                if isinstance(value, int | float):
                    counts[name] += int(value)
    return counts


def page_state_pages(summary: dict) -> dict[str, int]:
    """Pages in each course state at the end, summed over the VMs ({} if not recorded)."""
    out: dict[str, int] = {}
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    for d in vms.values():
        pages = d.get("page_state_pages") if isinstance(d, dict) else None
        if isinstance(pages, dict):
            for st, n in pages.items():
                if isinstance(n, int | float):
                    out[st] = out.get(st, 0) + int(n)
    return out


def fault_counts(summary: dict) -> dict[str, int]:
    """Fault outcomes summed over the VMs, in first-seen order."""
    counts: dict[str, int] = {}
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    for d in vms.values():
        faults = d.get("faults") if isinstance(d, dict) else None
        if not isinstance(faults, dict):
            continue
        for outcome, value in faults.items():
            if isinstance(value, int | float):
                counts[outcome] = counts.get(outcome, 0) + int(value)
    return counts


# -- plots ---------------------------------------------------------------------------------


def pyplot():
    """matplotlib.pyplot on the Agg backend (selected before pyplot is imported: no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(run_dir: Path, summary: dict, samples: list[dict]) -> tuple[dict[str, str], dict[str, str]]:
    """Draw the run's PNGs; return ({plot: file name}, {plot: why it was not drawn})."""
    plots: dict[str, str] = {}
    missing: dict[str, str] = {}
    drawers = {
        "memory": (plot_memory, samples, "timeseries.csv has no samples"),
        "vms": (plot_vms, summary, "summary.json has no VMs"),
        "page_states": (plot_page_states, summary, "summary.json has no page-state counts"),
        "faults": (plot_faults, summary, "summary.json has no fault counts"),
        "host_cpu": (plot_host_cpu, samples, "timeseries.csv has no host CPU columns"),
    }
    plt = pyplot()
    for key, (draw, data, why) in drawers.items():
        path = run_dir / PLOT_FILES[key]
        fig = draw(data)
        if fig is None:
            missing[key] = why
            path.unlink(missing_ok=True)  # a stale plot from an earlier report would mislead
            continue
        fig.savefig(path, dpi=100)
        plt.close(fig)
        plots[key] = PLOT_FILES[key]
    return plots, missing


def plot_memory(samples: list[dict]):
    """Stacked area: host used and free, then the memory reclaimed by each technique (MiB)."""
    if not samples or "time_s" not in samples[0]:
        return None
    plt = pyplot()
    t = [s["time_s"] for s in samples]
    used = [_nz(s.get("host_used_mib")) for s in samples]
    capacity = [u + _nz(s.get("host_free_mib")) for u, s in zip(used, samples)]
    free = [max(c - u, 0.0) for c, u in zip(capacity, used)]  # (used > host: overdrawn)
    layers = [used, free] + [[_nz(s.get(f"reclaimed_{k}_mib")) for s in samples] for k, _ in TECHNIQUES]
    labels = ["host used", "host free"] + [f"reclaimed by {label}" for _, label in TECHNIQUES]
    colors = ["#4c72b0", "#dddddd", "#55a868", "#c44e52", "#8172b2", "#ccb974", "#64b5cd"]
    fig, ax = plt.subplots(figsize=(11, 5))
    ax.stackplot(t, *layers, labels=labels, colors=colors, alpha=0.9)
    ax.plot(t, capacity, color="black", linestyle="--", linewidth=1, label="host memory")
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("MiB")
    ax.set_title("Host memory, and memory reclaimed per technique above it")
    ax.set_xlim(min(t), max(t) if max(t) > min(t) else min(t) + 1)
    handles, names = ax.get_legend_handles_labels()
    # outside the axes, in stack order: the bands fill the whole plot
    ax.legend(handles[::-1], names[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    return fig


def plot_host_cpu(samples: list[dict]):
    """Lines: each host CPU consumer's use in % of one CPU per sample interval, as `top`
    shows a thread (ksmd at 5 % uses a twentieth of a CPU), and the host's capacity."""
    if not samples or "time_s" not in samples[0] or f"host_cpu_{CPU_ROWS[0][0]}_pct" not in samples[0]:
        return None
    plt = pyplot()
    t = [s["time_s"] for s in samples]
    fig, ax = plt.subplots(figsize=(11, 5))
    for (name, what), color in zip(CPU_ROWS, ("#c44e52", "#8172b2", "#ccb974", "#4c72b0", "#55a868", "#64b5cd")):
        ax.plot(t, [_nz(s.get(f"host_cpu_{name}_pct")) for s in samples], label=f"{name}: {what}",
                color=color, linewidth=1.2)
    ax.set_xlabel("simulated time (s)")
    ax.set_ylabel("% of one CPU (as top shows it)")
    ax.set_title("Host CPU use per consumer, per sample interval")
    ax.set_xlim(min(t), max(t) if max(t) > min(t) else min(t) + 1)
    ax.set_ylim(bottom=0)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.tight_layout()
    return fig


def _nz(v) -> float:
    return 0.0 if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def plot_vms(summary: dict):
    """Grouped bars per VM: resident, ballooned, shared, compressed, swapped (MiB)."""
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    if not vms:
        return None
    plt = pyplot()
    names = list(vms)
    width = 0.8 / len(VM_FIELDS)
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(names) + 3), 4.5))
    for i, (key, label) in enumerate(VM_FIELDS):
        xs = [j + (i - (len(VM_FIELDS) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, [_f(vms[n], key) for n in names], width, label=label)
    ax.set_xticks(range(len(names)), names, rotation=30 if len(names) > 6 else 0)
    ax.set_ylabel("MiB")
    ax.set_title("Memory per VM at the end of the run")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def plot_page_states(summary: dict):
    """The course's five page states with transitions 1..9 labelled 'N: count' (networkx)."""
    counts = page_state_counts(summary)
    vms = summary.get("vms") if isinstance(summary.get("vms"), dict) else {}
    if not any(isinstance(d, dict) and isinstance(d.get("page_states"), dict) for d in vms.values()):
        return None
    import networkx as nx

    plt = pyplot()
    g = nx.DiGraph()
    g.add_nodes_from(PAGE_STATES)
    for n, (a, b, _) in TRANSITIONS.items():
        g.add_edge(a, b, n=n, count=counts[n])
    # mainline's arcs outside the course's diagram, where they happened (dashed)
    extra = page_state_extra_counts(summary)
    for name, (a, b, _) in EXTRA_TRANSITIONS.items():
        if extra[name]:
            if g.has_edge(a, b):  # (an owner's free of a clean page beside arc 9)
                g[a][b]["count"] += extra[name]
                g[a][b]["n"] = f"{g[a][b]['n']}+owner"
            else:
                g.add_edge(a, b, n="", count=extra[name], extra=True)
    fig, ax = plt.subplots(figsize=(9, 6))
    biggest = max(d["count"] for _, _, d in g.edges(data=True)) or 1
    style = "arc3,rad=0.18"  # opposite edges (2/3, 7/8) curve to opposite sides
    nx.draw_networkx_nodes(g, PAGE_STATES, ax=ax, node_size=4200, node_color="#dbe7f5",
                           edgecolors="#4c72b0")
    pages = page_state_pages(summary)
    nx.draw_networkx_labels(g, PAGE_STATES, ax=ax, font_size=9,
                            labels={s: s.replace(" ", "\n") + (f"\n{pages[s]:,}" if s in pages else "")
                                    for s in PAGE_STATES})
    widths = [1.0 + 4.0 * math.log1p(d["count"]) / math.log1p(biggest) for _, _, d in g.edges(data=True)]
    nx.draw_networkx_edges(g, PAGE_STATES, ax=ax, width=widths, node_size=4200, arrowsize=18,
                           connectionstyle=style, edge_color="#555555",
                           style=["dashed" if d.get("extra") else "solid" for _, _, d in g.edges(data=True)])
    labels = {(a, b): (f"{d['n']}: {d['count']:,}" if d["n"] != "" else f"{d['count']:,}")
              for a, b, d in g.edges(data=True)}
    nx.draw_networkx_edge_labels(g, PAGE_STATES, edge_labels=labels, ax=ax, font_size=8,
                                 connectionstyle=style, node_size=4200,
                                 bbox={"boxstyle": "round", "fc": "white", "ec": "#999999"})
    ax.set_title("Guest page states: transitions 1-9 and mainline's (dashed) with their counts;\n"
                 "pages in each state at the end under its name (all VMs)")
    ax.margins(0.12)
    ax.axis("off")
    fig.tight_layout()
    return fig


def plot_faults(summary: dict):
    """Bars of page-fault outcomes summed over the VMs."""
    counts = fault_counts(summary)
    if not counts:
        return None
    # outcome counters are fault_*; pgfault/pgmajfault are totals over them
    outcomes = {k.removeprefix("fault_"): v for k, v in counts.items() if k.startswith("fault_")} or counts
    counts = {k: v for k, v in outcomes.items() if v} or outcomes  # zero bars only crowd the axis
    plt = pyplot()
    names = list(counts)
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(names) + 2), 4.5))
    bars = ax.bar(range(len(names)), [counts[n] for n in names], color="#4c72b0")
    # a log scale: outcomes differ by orders of magnitude (demand-zero faults in millions,
    # swap-ins in tens), and on a linear one every bar but the first is invisible
    ax.bar_label(bars, labels=[f"{counts[n]:,}" for n in names], fontsize=8, padding=2)
    if max(counts.values()) > 0:
        ax.set_yscale("log")
        ax.set_ylim(0.5, max(counts.values()) * 4)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    ax.set_ylabel("faults (log scale)")
    ax.set_title("Page-fault outcomes (all VMs; outcomes never seen left out)")
    fig.tight_layout()
    return fig


# -- command -------------------------------------------------------------------------------


@click.command("report")
@click.argument("run_dir", metavar="DIR")
@click.option("--plots/--no-plots", default=None,
              help="draw the PNG plots (default: as the run's output.plots says)")
def report(run_dir: str, plots: bool | None) -> None:
    """Regenerate report.md and the PNG plots of the run folder DIR from its files; for a
    sweep's folder (sweep.json and runs.csv), sweep.md, points.csv and the sweep plots."""
    folder = Path(run_dir)
    if (folder / "sweep.json").is_file() and (folder / "runs.csv").is_file():
        from .sweep import SweepError, report_sweep

        try:
            path = report_sweep(folder)
        except SweepError as exc:
            click.echo(f"hvsim report: {exc.problems[0]}", err=True)
            sys.exit(2)
        click.echo(str(path))
        return
    try:
        path = write_report(run_dir, plots=plots)
    except ReportError as exc:
        click.echo(f"hvsim report: {exc}", err=True)
        sys.exit(2)
    click.echo(str(path))
