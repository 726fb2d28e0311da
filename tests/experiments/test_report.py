"""report.py: report.md and PNG plots from a run folder's files, for ok and failed runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments import report as R

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CONFIG_TOML = """\
[experiment]
name = "two-webs"
duration = "2s"
seed = 7
sample_interval = "1s"

[host]
memory = "1GiB"

[[vm]]
name = "web"
count = 2
memory = "512MiB"
image = "debian-12"
[vm.kernel]
arch = "x86_64"
[vm.workload]
profile = "webserver"
"""


def _vm(resident, shared, states, faults):
    return {"memory_mib": 512.0, "resident_mib": resident, "ballooned_mib": 16.0,
            "shared_mib": shared, "compressed_mib": 8.0, "swapped_mib": 4.0,
            "throughput": 10.5, "work_unit": "requests", "work_done": 21.0, "stall_s": 0.25, "oom_kills": 0,
            "panicked": False, "page_states": {f"pgstate_{n}": v for n, v in enumerate(states, 1)},
            "faults": faults}


def summary(status="ok", error=None):
    return {
        "name": "two-webs", "seed": 7, "version": "0.1.0", "status": status, "error": error,
        "traceback": "Traceback ...\nboom" if error else None, "wall_time_s": 1.5, "sim_time_s": 2.0,
        "python": "3.11", "host_memory_mib": 1024.0, "guest_memory_mib": 1024.0,
        "reclaimed_sharing_mib": 102.4, "reclaimed_balloon_mib": 32.0,
        "reclaimed_compression_mib": 12.0, "reclaimed_swap_mib": 8.0, "reclaimed_total_mib": 154.4,
        "mean_reclaimed_sharing_mib": 51.2, "mean_reclaimed_balloon_mib": 16.0,
        "mean_reclaimed_compression_mib": 6.0, "mean_reclaimed_swap_mib": 4.0,
        "mean_reclaimed_total_mib": 77.2,
        "cow_breaks": 31, "decompressions": 5, "host_swapins": 3, "guest_swapins": 2,
        "guest_oom_kills": 0, "vm_stall_s": 0.5, "dead_vms": 0, "throughput_total": 21.0,
        "throughput_by_unit": {"requests": 21.0},
        "vms": {
            "web-1": _vm(300.0, 60.0, [100, 20, 3, 10, 1, 9, 2, 4, 5], {"minor": 90, "major": 4}),
            "web-2": _vm(280.0, 42.4, [200, 30, 5, 11, 0, 11, 1, 6, 7], {"minor": 70, "cow": 9}),
        },
        "states": {"high": 1.5, "clear": 0.5, "soft": 0.0, "hard": 0.0, "low": 0.0},
    }


TIMESERIES = """\
time_s,host_free_mib,host_used_mib,host_state,reclaimed_sharing_mib,reclaimed_balloon_mib,reclaimed_compression_mib,reclaimed_swap_mib,web-1.resident_mib,web-1.ballooned_mib,web-1.shared_mib,web-1.compressed_mib,web-1.swapped_mib,web-1.throughput,web-2.resident_mib,web-2.ballooned_mib,web-2.shared_mib,web-2.compressed_mib,web-2.swapped_mib,web-2.throughput
0.0,1024.0,0.0,high,0.0,0.0,0.0,0.0,0,0,0,0,0,0,0,0,0,0,0,0
1.0,600.0,424.0,high,0.0,0.0,0.0,0.0,200,0,0,0,0,10,224,0,0,0,0,11
2.0,444.0,580.0,clear,102.4,32.0,12.0,8.0,300,16,60,8,4,10.5,280,16,42.4,8,4,10.5
"""


def make_run(path, status="ok", error=None, timeseries=TIMESERIES, config=CONFIG_TOML):
    path.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (path / "config.toml").write_text(config)
    (path / "summary.json").write_text(json.dumps(summary(status, error)))
    if timeseries is not None:
        (path / "timeseries.csv").write_text(timeseries)
    return path


def assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    img = R.pyplot().imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_report_files_and_valid_pngs(tmp_path):
    run = make_run(tmp_path / "run")
    out = R.write_report(run)
    assert out == run / "report.md"
    for name in ("memory.png", "vms.png", "page_states.png", "faults.png"):
        assert_png(run / name)
    text = out.read_text()
    for name in ("memory.png", "vms.png", "page_states.png", "faults.png"):
        assert f"]({name})" in text


def test_report_text_reclaimed_table_and_costs(tmp_path):
    text = R.write_report(make_run(tmp_path / "run"), plots=False).read_text()
    assert text.startswith("# hvsim run: two-webs\n")
    assert "## Failure" not in text
    assert "- seed: 7" in text and "- host memory: 1,024.0 MiB" in text
    # final 102.4 MiB of 1024 MiB guest memory = 10.0 %; mean 51.2 MiB = 5.0 %
    assert "| page sharing | 102.4 | 10.0 % | 51.2 | 5.0 % |" in text
    assert "| **total** | 154.4 | 15.1 % | 77.2 | 7.5 % |" in text
    assert "| copy-on-write breaks of shared pages | 31 |" in text
    assert "| VM stall time (all VMs) | 0.500 s |" in text
    assert "| workload throughput, VMs counting requests | 21.000 requests/s |" in text
    assert "| web-1 | 512.0 | 300.0 | 16.0 | 60.0 | 8.0 | 4.0 | 10.500 requests/s | 21 requests |" in text
    assert "| web | 2 | 512MiB | debian-12 | x86_64 | webserver |" in text
    # residence: 1.5 s of 2.0 s in high
    assert "| high | 1.500 | 75.0 % |" in text
    # transition 1 summed over the two VMs: 100 + 200
    assert "| 1 | free -> active | allocation | 300 |" in text
    assert "| 9 | inactive clean -> free | reclaimed, back to the free pool | 12 |" in text


def test_plots_off_in_the_config(tmp_path):
    run = make_run(tmp_path / "run", config=CONFIG_TOML + "\n[output]\nplots = false\n")
    text = R.write_report(run).read_text()
    assert not list(run.glob("*.png"))
    assert text.count("Not drawn: plots are off (output.plots = false).") == 5
    R.write_report(run, plots=True)  # hvsim report --plots
    assert len(list(run.glob("*.png"))) == 4  # (this timeseries has no host CPU columns)
    assert "Not drawn: timeseries.csv has no host CPU columns." in (run / "report.md").read_text()


def test_host_cpu_over_time_is_a_plot_of_each_consumer_in_percent_of_one_cpu(tmp_path):
    # issue 13: ksmd's share of a CPU as top shows it, beside compression, zeroing, the
    # vCPUs, balloon exits and swap-out submission: one line per consumer, its samples
    names = [name for name, _ in R.CPU_ROWS]
    cols = ",".join(f"host_cpu_{n}_pct" for n in names)
    ts = TIMESERIES.splitlines()
    rows = [ts[0] + "," + cols] + [line + "," + ",".join(str(i * 10 + j) for j in range(len(names)))
                                   for i, line in enumerate(ts[1:])]
    run = make_run(tmp_path / "run", timeseries="\n".join(rows) + "\n")
    text = R.write_report(run, plots=True).read_text()
    assert (run / "host_cpu.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "![Host CPU use over time](host_cpu.png)" in text
    fig = R.plot_host_cpu(R.read_timeseries(run / "timeseries.csv"))
    lines = fig.axes[0].get_lines()
    assert [ln.get_label().split(":")[0] for ln in lines] == names
    assert list(lines[0].get_ydata()) == [0.0, 10.0, 20.0]  # sharing: ksmd
    assert list(lines[3].get_ydata()) == [3.0, 13.0, 23.0]  # vcpus


def test_fault_table_and_plot_outcomes(tmp_path):
    s = summary()
    for d in s["vms"].values():
        d["faults"] = {"pgfault": 10, "pgmajfault": 0, "fault_demand_zero": 9, "fault_cow": 1, "fault_oom": 0}
    text = R.render_markdown({}, s, [], {}, {})
    assert "| pgfault | 20 |\n| fault_demand_zero | 18 |\n| fault_cow | 2 |\n\nZero: pgmajfault, fault_oom." in text
    fig = R.plot_faults(s)
    ax = fig.axes[0]
    # only outcomes (not the pgfault total), and only those that happened
    assert [t.get_text() for t in ax.get_xticklabels()] == ["demand_zero", "cow"]
    assert [p.get_height() for p in ax.patches] == [18, 2]
    # a log scale, so that 2 shows beside 18 (and tens beside millions); counts printed on the bars
    assert ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.texts] == ["18", "2"]
    R.pyplot().close(fig)


def test_report_of_a_real_run(tmp_path):
    """The real runner on the quickstart config, cut short: every file, valid PNGs."""
    from experiments.config import load_config
    from experiments.runner import run_experiment

    cfg = load_config(Path(__file__).parents[2] / "experiments" / "configs" / "quickstart.toml")
    cfg.experiment.duration = "0.5s"
    cfg.experiment.sample_interval = "0.1s"
    summary = run_experiment(cfg, tmp_path / "run", write_report=False)
    assert summary["status"] == "ok", summary.get("error")
    text = R.write_report(tmp_path / "run").read_text()
    for name in ("memory.png", "vms.png", "page_states.png", "faults.png"):
        assert_png(tmp_path / "run" / name)
        assert f"]({name})" in text
    samples = (tmp_path / "run" / "timeseries.csv").read_text().count("\n") - 1
    assert samples >= 5 and f"- samples: {samples}\n" in text
    assert f"| **total** | {summary['reclaimed_total_mib']:,.1f} |" in text
    # web servers count requests, the database ops, the batch job MiB: one throughput per
    # unit, each the sum over the VMs counting it, never one sum across units
    vms = summary["vms"]
    assert (vms["web-1"]["work_unit"], vms["web-2"]["work_unit"], vms["db"]["work_unit"],
            vms["batch"]["work_unit"]) == ("requests", "requests", "ops", "MiB")
    assert summary["throughput_by_unit"] == {
        "requests": pytest.approx(vms["web-1"]["throughput"] + vms["web-2"]["throughput"], abs=1e-5),
        "ops": vms["db"]["throughput"], "MiB": vms["batch"]["throughput"]}
    assert summary["throughput_total"] is None


def test_counts_summed_over_vms():
    s = summary()
    assert R.page_state_counts(s) == {1: 300, 2: 50, 3: 8, 4: 21, 5: 1, 6: 20, 7: 3, 8: 10, 9: 12}
    assert R.fault_counts(s) == {"minor": 160, "major": 4, "cow": 9}


def test_failed_run_without_timeseries(tmp_path):
    run = make_run(tmp_path / "run", status="failed", error="KernelPanic: Out of memory\nand more",
                   timeseries=None)
    (run / "memory.png").write_bytes(b"stale")  # from an earlier report: must not survive
    text = R.write_report(run).read_text()
    assert "## Failure" in text
    assert "- status: **failed**" in text
    assert "- error: `KernelPanic: Out of memory and more`" in text
    assert "Not drawn: timeseries.csv has no samples." in text
    assert not (run / "memory.png").exists()
    assert_png(run / "vms.png")


def test_failed_run_with_header_only_timeseries_and_no_config(tmp_path):
    header = TIMESERIES.splitlines()[0] + "\n"
    run = make_run(tmp_path / "run", status="failed", error="boom", timeseries=header, config=None)
    text = R.write_report(run).read_text()
    assert "- status: **failed**" in text and "- samples: 0" in text
    assert not (run / "memory.png").exists()


def test_minimal_failed_summary(tmp_path):
    # an exception before any VM was built: only the flat keys exist
    run = tmp_path / "run"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"name": "x", "seed": 1, "status": "failed",
                                                  "error": "ValueError: bad"}))
    text = R.write_report(run).read_text()
    assert "- error: `ValueError: bad`" in text
    assert sorted(p.name for p in run.iterdir()) == ["report.md", "summary.json"]


def test_cli_report(tmp_path):
    run = make_run(tmp_path / "run")
    result = CliRunner().invoke(R.report, [str(run), "--no-plots"])
    assert result.exit_code == 0, result.output
    assert result.output == f"{run / 'report.md'}\n"
    assert "Not drawn: plots are off" in (run / "report.md").read_text()


@pytest.mark.parametrize("setup, message", [
    (lambda p: None, "no such run folder"),
    (lambda p: p.mkdir(), "not a run folder (no summary.json)"),
    (lambda p: (p.mkdir(), (p / "summary.json").write_text("{not json")), "unreadable summary"),
])
def test_cli_report_bad_folder(tmp_path, setup, message):
    run = tmp_path / "run"
    setup(run)
    result = CliRunner().invoke(R.report, [str(run)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hvsim report: {run}") and message in lines[0]
    assert "Traceback" not in result.output


def test_unlike_units_are_not_added_and_every_column_is_defined(tmp_path):
    """issue 19: "workload throughput (all VMs)" added web requests/s to database accesses/s;
    per-VM ballooned/shared/compressed contradicted the technique totals without a word."""
    s = summary()
    s["vms"]["web-2"]["work_unit"] = "ops"
    s["throughput_by_unit"] = {"requests": 10.5, "ops": 10.5}
    s["throughput_total"] = None
    text = R.render_markdown({}, s, [], {}, {})
    assert "| workload throughput, VMs counting requests | 10.500 requests/s |" in text
    assert "| workload throughput, VMs counting ops | 10.500 ops/s |" in text
    assert "21.000" not in text and "all VMs) | 21" not in text
    assert "| web-2 | 512.0 | 280.0 | 16.0 | 42.4 | 8.0 | 4.0 | 10.500 ops/s | 21 ops |" in text
    defined = text.split("## Per VM", 1)[1].split("##", 1)[0]
    for column in ("memory", "resident", "ballooned", "shared", "compressed", "swapped", "throughput", "stall s"):
        assert f"- **{column}**: " in defined
    assert "*held*" in defined and "*reclaimed*" in defined
    # per-VM held summed against the technique's reclaimed: shared 60.0 + 42.4 = 102.4 held,
    # 102.4 reclaimed; ballooned 16 + 16 = 32 held, 32 reclaimed; compressed 8 + 8 = 16 held,
    # 12 reclaimed, so 4 MiB of cache frames
    assert "| page sharing | 102.4 | 102.4 | 0.0 | the shared frames that hold them |" in defined
    assert "| compression | 16.0 | 12.0 | 4.0 | the frames the cache occupies |" in defined
    # an older summary without throughput_by_unit: the VMs' units, still never added across
    del s["throughput_by_unit"]
    assert R.throughput_by_unit(s) == {"requests": 10.5, "ops": 10.5}


def test_balloon_table_names_the_esx_and_virtio_figures():
    """Per VM, the balloon's target and size as ESX (MCTLTGT, MCTLSZ) and virtio
    (num_pages, actual) name them, beside what it gave back; VMs without a balloon are
    left out, and no table at all when none has one."""
    vms = {"web-1": {"balloon": {"size_mib": 64.0, "target_mib": 80.0, "reclaimed_mib": 12.5,
                                 "alloc_backed": 13184}},
           "web-2": {"balloon": {"size_mib": 0.0, "target_mib": 0.0, "reclaimed_mib": 0.0, "alloc_backed": 0}},
           "db": {}}
    lines = R.balloon_section(vms)
    assert "| VM | target (ESX MCTLTGT, virtio num_pages) | size (ESX MCTLSZ, virtio actual) " \
           "| reclaimed (frames given back) | inflated pages backed only by the driver's allocation, all run |" in lines
    assert "| web-1 | 80.0 | 64.0 | 12.5 | 13,184 |" in lines
    assert not any(line.startswith(("| web-2", "| db")) for line in lines)
    assert R.balloon_section({"web-2": vms["web-2"], "db": {}}) == []
