"""Running experiments: the run folder, determinism, failures recorded, example configs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from experiments.config import config_from_dict, load_config
from experiments.runner import run_experiment

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
PNG = b"\x89PNG\r\n\x1a\n"


def small(duration="3s", **host):
    return config_from_dict({
        "experiment": {"name": "t", "duration": duration, "seed": 4, "sample_interval": "1s"},
        # 4000 pages per 20 ms: a full pass over both guests every ~0.3 s
        "host": {"memory": "192MiB", "sharing": {"pages_to_scan": 4000}, **host},
        "vm": [
            {"name": "web", "count": 2, "memory": "128MiB", "image": "alpine-3.19",
             "workload": {"profile": "webserver", "workers": 2, "shared_heap": "4MiB",
                          "worker_heap": "2MiB", "docroot": "2MiB", "request_rate": 50.0}},
        ],
    })


def test_run_folder_has_every_file(tmp_path):
    s = run_experiment(small(), tmp_path)
    assert s["status"] == "ok", s["traceback"]
    for name in ("config.toml", "summary.json", "timeseries.csv", "report.md"):
        assert (tmp_path / name).is_file(), name
    pngs = sorted(tmp_path.glob("*.png"))
    assert len(pngs) >= 4
    for png in pngs:
        assert png.read_bytes()[:8] == PNG
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["sim_time_s"] == 3.0
    assert set(summary["vms"]) == {"web-1", "web-2"}
    rows = list(csv.DictReader((tmp_path / "timeseries.csv").open()))
    # samples reach the end of the run: the last row is the summary's final state
    assert [float(r["time_s"]) for r in rows] == [0.0, 1.0, 2.0, 3.0]
    assert "web-2.throughput" in rows[0]
    for tech in ("sharing", "balloon", "compression", "swap"):
        assert float(rows[-1][f"reclaimed_{tech}_mib"]) == summary[f"reclaimed_{tech}_mib"]
    for vm in ("web-1", "web-2"):
        assert float(rows[-1][f"{vm}.resident_mib"]) == summary["vms"][vm]["resident_mib"]
    # the resolved config is complete and reloads to the same experiment
    assert load_config(tmp_path / "config.toml") == small()


def test_reclaimed_matches_host_definitions(tmp_path):
    s = run_experiment(small(), tmp_path, write_report=False)
    host = s["host"]
    assert s["reclaimed_sharing_mib"] == pytest.approx(host["reclaimed_sharing"] * 4096 / 2**20, abs=1e-6)
    assert s["reclaimed_swap_mib"] == pytest.approx(host["reclaimed_swap"] * 4096 / 2**20, abs=1e-6)
    total = sum(s[f"reclaimed_{t}_mib"] for t in ("sharing", "balloon", "compression", "swap"))
    assert s["reclaimed_total_mib"] == pytest.approx(total)
    # two guests booting the same image share at least their kernel text
    assert s["reclaimed_sharing_mib"] > 0


def test_same_seed_same_summary(tmp_path):
    a = run_experiment(small(), tmp_path / "a", write_report=False)
    b = run_experiment(small(), tmp_path / "b", write_report=False)
    for s in (a, b):
        s.pop("wall_time_s")
    assert a == b
    assert (tmp_path / "a" / "timeseries.csv").read_text() == (tmp_path / "b" / "timeseries.csv").read_text()


def test_failed_run_is_recorded(tmp_path, monkeypatch):
    import experiments.scenario as scenario

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(scenario, "create_workload", boom)
    s = run_experiment(small(), tmp_path)
    assert s["status"] == "failed"
    assert s["error"] == "RuntimeError: simulated failure"
    assert "simulated failure" in s["traceback"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["status"] == "failed"
    assert (tmp_path / "config.toml").is_file() and (tmp_path / "report.md").is_file()


# sweep-*.toml are sweep files (tests/experiments/test_sweep.py runs them); bench-*.toml are
# the reference scenarios of `hvsim bench` (R2 alone simulates 64 GiB of guests)
EXAMPLES = sorted(p.stem for p in CONFIGS.glob("*.toml") if not p.stem.startswith(("sweep-", "bench-")))


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_config_runs(name, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.toml")
    data = cfg.model_dump(mode="json")
    data["experiment"]["duration"] = "2s"
    s = run_experiment(config_from_dict(data), tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert s["sim_time_s"] == 2.0
    assert s["dead_vms"] == 0


def test_guest_panic_kills_only_its_vm(tmp_path):
    # a guest with panic_on_oom = 1 and no swap runs out of memory: it panics, its VM is
    # reported dead with every frame given back, and the simulation (and its neighbour) go on
    cfg = config_from_dict({
        "experiment": {"name": "panic", "duration": "4s", "seed": 9},
        "host": {"memory": "1GiB"},
        "vm": [
            {"name": "bad", "memory": "96MiB", "image": "none",
             "kernel": {"panic_on_oom": 1, "swap": "0"},
             "workload": {"profile": "memhog", "size": "100%", "rate": "512MiB", "content": "encrypted"}},
            {"name": "good", "memory": "128MiB", "image": "alpine-3.19",
             "workload": {"profile": "webserver", "workers": 2, "shared_heap": "2MiB", "worker_heap": "2MiB",
                          "docroot": "1MiB"}},
        ],
    })
    s = run_experiment(cfg, tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert s["sim_time_s"] == 4.0
    assert s["dead_vms"] == 1
    bad, good = s["vms"]["bad"], s["vms"]["good"]
    assert bad["panicked"] and not good["panicked"]
    assert bad["resident_mib"] == bad["compressed_mib"] == bad["swapped_mib"] == 0
    assert good["work_done"] > 0


def test_last_sample_at_a_duration_between_two_intervals(tmp_path):
    """2.5 s sampled every 1 s: rows at 0, 1, 2 and 2.5; the last row's throughput is the
    work of its 0.5 s divided by 0.5 s, so the rows' work adds up to the summary's."""
    s = run_experiment(small("2.5s"), tmp_path, write_report=False)
    rows = list(csv.DictReader((tmp_path / "timeseries.csv").open()))
    times = [float(r["time_s"]) for r in rows]
    assert times == [0.0, 1.0, 2.0, 2.5]
    for vm in ("web-1", "web-2"):
        work = sum(float(r[f"{vm}.throughput"]) * (t - prev) for r, t, prev in zip(rows[1:], times[1:], times))
        assert work == pytest.approx(s["vms"][vm]["work_done"], rel=1e-6)


def test_a_run_into_an_earlier_runs_folder_says_so_and_leaves_nothing_of_it(tmp_path):
    """issue 19: a copied config with one value changed silently replaced runs/quickstart,
    and a rerun with plots off kept the old PNGs."""
    from click.testing import CliRunner

    from experiments.cli import main

    path = tmp_path / "c.toml"
    out = tmp_path / "out"
    cfg = small("1s")
    from experiments.config import dump_toml

    path.write_text(dump_toml(cfg))
    res = CliRunner().invoke(main, ["run", str(path), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert res.stderr == "" and len(list(out.glob("*.png"))) == 5  # memory, vms, page states, faults, host CPU
    res = CliRunner().invoke(main, ["run", str(path), "-o", str(out), "--set", "output.plots=false",
                                    "--set", "host.sharing.pages_to_scan=100"])
    assert res.exit_code == 0, res.output
    assert res.stderr == (f"hvsim run: replacing an earlier run of 't' (ok, seed 4), a different config in {out}/ "
                          "(9 files removed first)\n")
    assert list(out.glob("*.png")) == []
    assert "Not drawn: plots are off" in (out / "report.md").read_text()


def test_results_do_not_depend_on_python_hash_seed(tmp_path):
    # DESIGN.md: every random stream comes from the seed through xxhash, never Python's
    # salted hash(), so summary.json and the time series are the same under any
    # PYTHONHASHSEED (each run in its own interpreter).
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    code = ("import sys;from tests.experiments.test_runner import small;"
            "from experiments.runner import run_experiment;"
            "run_experiment(small(), sys.argv[1], write_report=False)")
    out = {}
    for seed in ("1", "2"):
        folder = tmp_path / seed
        subprocess.run([sys.executable, "-c", code, str(folder)], cwd=root, check=True,
                       env={"PYTHONHASHSEED": seed, "PATH": ""})
        s = json.loads((folder / "summary.json").read_text())
        assert s["status"] == "ok", s["traceback"]
        s.pop("wall_time_s")
        out[seed] = (s, (folder / "timeseries.csv").read_text())
    assert out["1"] == out["2"]
