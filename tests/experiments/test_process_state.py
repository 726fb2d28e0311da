"""Nothing a run leaves behind in its process changes a later run (module-level caches of
content recipes, image pages, byte caches, interned objects): the sweep's in-process,
process-pool and Dask backends must give the same results whatever ran before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from experiments.config import load_config
from experiments.runner import run_experiment

ROOT = Path(__file__).parents[2]
CONFIGS = ROOT / "experiments" / "configs"
B_SETTINGS = ["experiment.duration=1s", "experiment.sample_interval=0.5s", "output.plots=false",
              "host.sharing.pages_to_scan=2000"]


def _summary(path: Path) -> dict:
    s = json.loads((path / "summary.json").read_text())
    s.pop("wall_time_s")
    return s


def test_a_run_after_other_runs_in_the_process_equals_the_same_run_alone(tmp_path):
    """Config B run after config A (other images, a Windows guest, other workloads) in
    this process gives the summary.json B gives alone in a fresh process."""
    run_experiment(load_config(CONFIGS / "mixed-linux-windows.toml",
                               ["experiment.duration=1s", "output.plots=false"]),
                   tmp_path / "a", write_report=False)
    run_experiment(load_config(CONFIGS / "quickstart.toml", B_SETTINGS), tmp_path / "b",
                   write_report=False)
    cmd = [sys.executable, "-m", "experiments.cli", "run", str(CONFIGS / "quickstart.toml"),
           "-o", str(tmp_path / "fresh")]
    for s in B_SETTINGS:
        cmd += ["--set", s]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    assert _summary(tmp_path / "b") == _summary(tmp_path / "fresh")
    assert (tmp_path / "b" / "timeseries.csv").read_text() == (tmp_path / "fresh" / "timeseries.csv").read_text()
