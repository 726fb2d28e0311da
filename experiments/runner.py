"""Runs one experiment into a run folder (desmod-style: the result file always exists).

    config.toml      the complete resolved configuration (every default written out)
    summary.json     seed, versions, wall time, status and any exception, the results
    timeseries.csv   one row per sample
    report.md, *.png written by report.write_report

A failure of the simulated run is recorded in summary.json (status "failed", error and
traceback) instead of raised, so a sweep goes on; config.toml and summary.json are still
written.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import json
import platform
import sys
import time
import traceback
from pathlib import Path

import simpy

from . import __version__
from .config import ExperimentConfig, dump_toml, seconds

CHUNKS = 200  # progress-bar steps over the simulated duration


def _progress(total: float, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=round(total, 3), unit="sim s", disable=not sys.stderr.isatty(), leave=False)


def write_timeseries(path: Path, columns: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow(row)


@contextlib.contextmanager
def simulation_gc():
    """The garbage collector's settings while a model runs. The model allocates millions
    of long-lived objects (struct pages, PTE ints, page recipes): the cyclic GC would
    rescan them over and over. What exists is frozen and the young generation collected
    less often (no effect on results); the settings are restored after."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


#: What a run writes into its folder (and an earlier run there is cleared of first).
RUN_FILES = ("config.toml", "summary.json", "timeseries.csv", "report.md")


def _run_files(out: Path) -> list[Path]:
    from .report import PLOT_FILES

    return [out / n for n in (*RUN_FILES, *PLOT_FILES.values()) if (out / n).is_file()]


def earlier_run(outdir: str | Path, cfg: ExperimentConfig) -> str:
    """One line saying what running `cfg` into `outdir` replaces ("" when nothing)."""
    out = Path(outdir)
    files = _run_files(out) if out.is_dir() else []
    if not files:
        return ""
    what = "an earlier run"
    try:
        old = json.loads((out / "summary.json").read_text())
        what = f"an earlier run of {old.get('name')!r} ({old.get('status')}, seed {old.get('seed')})"
    except (OSError, ValueError, AttributeError):
        pass
    try:
        import tomllib

        from .config import config_from_dict

        same = config_from_dict(tomllib.loads((out / "config.toml").read_text())) == cfg
        what += ", same config" if same else ", a different config"
    except Exception:  # unreadable or invalid: it is replaced all the same
        pass
    return f"replacing {what} in {out}/ ({len(files)} files removed first)"


def run_experiment(cfg: ExperimentConfig, outdir: str | Path, progress: bool = False,
                   write_report: bool = True) -> dict:
    """Run `cfg` into `outdir`; returns the summary dict written to summary.json."""
    from .metrics import Sampler, summarize

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in _run_files(out):  # nothing of an earlier run may pass for this one's
        stale.unlink()
    (out / "config.toml").write_text(dump_toml(cfg))
    duration = seconds(cfg.experiment.duration)
    summary: dict = {
        "name": cfg.experiment.name,
        "seed": cfg.experiment.seed,
        "version": __version__,
        "python": platform.python_version(),
        "status": "ok",
        "error": None,
        "traceback": None,
        "sim_time_s": 0.0,
        "duration_s": duration,
    }
    t0 = time.perf_counter()
    scenario = sampler = None
    try:
        from .scenario import Scenario

        env = simpy.Environment()
        scenario = Scenario(cfg, env)
        sampler = Sampler(env, scenario.host, scenario.workloads, seconds(cfg.experiment.sample_interval))
        scenario.start()
        bar = _progress(duration, progress)
        step = duration / CHUNKS if duration > 0 else 0
        t = 0.0
        with simulation_gc():
            while t < duration:
                t = min(duration, t + step)
                env.run(until=t)
                if bar is not None:
                    bar.update(round(t - bar.n, 3))
        if bar is not None:
            bar.close()
        summary["sim_time_s"] = env.now
        sampler.final()
    except Exception as exc:  # a failed run is a result, not a crash of the sweep
        summary["status"] = "failed"
        summary["error"] = error_line(exc)
        summary["traceback"] = traceback.format_exc()
    summary["host_memory_mib"] = round(cfg_host_mib(cfg), 6)
    summary["guest_memory_mib"] = round(sum(_vm_mib(v) * v.count for v in cfg.vm), 6)
    if scenario is not None:
        try:
            rows = sampler.rows if sampler is not None else []
            summary.update(summarize(scenario.host, scenario.workloads, rows, summary["sim_time_s"]))
            if sampler is not None:
                write_timeseries(out / "timeseries.csv", sampler.columns(), rows)
        except Exception as exc:
            if summary["status"] == "ok":
                summary["status"] = "failed"
                summary["error"] = f"{type(exc).__name__}: {exc}"
                summary["traceback"] = traceback.format_exc()
    if cfg.experiment.baseline and summary["status"] == "ok":
        try:
            from .scenario import run_baseline

            summary["baseline"] = baseline_summary(summary, run_baseline(cfg))
        except Exception as exc:
            summary["baseline"] = {"error": f"{type(exc).__name__}: {exc}"}
    summary["wall_time_s"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    if write_report:  # write_report itself honours output.plots
        try:
            from .report import write_report as _write_report

            _write_report(out)
        except Exception as exc:  # the report is a view; its failure must not lose the run
            summary["report_error"] = f"{type(exc).__name__}: {exc}"
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def error_line(exc: BaseException) -> str:
    """ "Type: message" of a run's exception; a file that could not be opened is named,
    also when SimPy re-raised the error from a process (a copy without the file name,
    the original as its cause)."""
    seen = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.filename:
            return f"{type(seen).__name__}: {seen}"
        seen = seen.__cause__ or seen.__context__
    return f"{type(exc).__name__}: {exc}"


def cfg_host_mib(cfg: ExperimentConfig) -> float:
    from .config import size

    return size(cfg.host.memory) / (1 << 20)


def _vm_mib(v) -> float:
    from .config import size

    return size(v.memory) / (1 << 20)


def baseline_summary(summary: dict, base: dict[str, dict]) -> dict:
    """Per VM: throughput on the baseline host, and the slowdown of this run against it
    (baseline throughput / this run's: 1.25 means a quarter more time per unit of work)."""
    out = {}
    vms = summary.get("vms") or {}
    for name, b in base.items():
        tput = (vms.get(name) or {}).get("throughput", 0.0)
        bt = b["throughput"]
        out[name] = {
            "throughput": bt,
            "relative_throughput": round(tput / bt, 6) if bt > 0 else None,
            "slowdown": round(bt / tput, 6) if tput > 0 else None,
        }
    return out
