"""Sweeps: many runs of one base config with parameters varied, locally or on a Dask cluster.

Sweep file (TOML)
-----------------
::

    base = "quickstart.toml"        # the base config, relative to this sweep file
                                    # (or an inline [base] table holding a whole config)
    replications = 3                # runs per parameter point, each with its own seed

    [sweep]
    name = "ksm-vs-memory"          # default: the sweep file's name without .toml
    dir = "sweeps/{name}"           # output folder (default shown), relative to the current
                                    # directory; `hvsim sweep -o DIR` overrides it

    [grid]                          # cartesian product of every list
    "host.memory" = ["768MiB", "1GiB"]
    "host.sharing.enabled" = [true, false]

    [zip]                           # lists of equal length, varied together
    "vm[web].count" = [2, 4, 8]
    "vm[web].memory" = ["1GiB", "512MiB", "256MiB"]

    [[case]]                        # named cases, each a set of overrides
    name = "web"
    "vm[0].workload.profile" = "webserver"
    [[case]]
    name = "db"
    "vm[0].workload.profile" = "database"

Keys are the config's dotted keys ("experiment.seed", "host.sharing.salting", "vm[0].count",
"vm[web].memory" by VM name); quote them, since TOML reads a bare ``host.memory`` as nested
tables (which is also accepted). In a [[case]], a table under a quoted dotted key replaces
that table whole: ``"vm[db].workload" = {profile = "idle"}`` (other nested tables set their
keys one by one, keeping the rest of the base's table). Every section is optional except `base`. The runs are
cases x grid points x zip rows x replications; without [[case]] there is one unnamed case.
Overrides apply in that order (case, grid, zip), so a grid key beats a case's value.

Seeds: replication i of a point runs with seed ``xxh64("{seed}/replication/{i}") >> 1``
(63 bits, so it is a valid TOML integer), where seed is the point's experiment.seed (the
base config's unless swept). This holds for every replication, including a single one.

Runs and their ids
------------------
Every run has a stable id, a readable slug plus a hash of what defines it::

    web_memory-768MiB_enabled-true_r2-5d41402a

(case name, the last part of each grid/zip key with its value, the replication when there
are several, then 8 hex digits of xxh64 over the case, all overrides and the replication).
The run writes its run folder to ``<dir>/runs/<run id>/`` (see runner.py). Its config is
the base config with the overrides (``--set KEY=VALUE`` applies to the base first),
experiment.seed as above and experiment.name set to the run id.

The id names the folder; what the run computes is identified by its ``config_digest``
(16 hex digits of xxh64 over the fully resolved config without [output], as compact
sorted JSON) and hvsim's ``version``, both in runs.csv.

One code path: `execute(spec)` runs one `RunSpec` and returns its row; the backends only
decide where it runs (longest runs first: simulated duration x guest memory):

- local (default): a `concurrent.futures.ProcessPoolExecutor` with ``-j N`` workers
  (default: the number of CPUs); ``-j 1`` runs in-process. The parent imports what a run
  imports (the runner, matplotlib when plots are drawn) once, then forks its workers, so
  no worker starts Python over again ("fork" start method; "forkserver" with those
  modules preloaded when the process already runs other threads, e.g. in a notebook);
- Dask: ``--scheduler ADDRESS`` connects ``dask.distributed.Client(ADDRESS)`` (workers need
  hvsim installed and the output folder at the same path, e.g. on a shared file system);
  ``--scheduler local:N`` starts a ``LocalCluster`` of N single-threaded worker processes.
  No client or cluster is started when every run is already finished.

A run that fails (summary status "failed", or an exception escaping the runner) is a row
with status "failed" and its error; the sweep goes on. A local worker that dies (killed,
out of memory) breaks the pool: the runs that had started run again one by one in a
process of their own, and the one that dies again is a failed row naming the signal
("worker process killed by signal 9 (SIGKILL, ...)"); the others complete.

Results, in the sweep's output folder
-------------------------------------
``runs.csv``
    one row per run, appended (and flushed) as runs finish, rewritten in order at the end:
    cases in the file's order, then each swept key by value (numbers, sizes and durations
    by magnitude), then the replication; the same sweep gives identical rows whatever -j
    or backend. Columns: run_id, case, every swept key (its value in that run; a key one
    case sets and another does not shows the resolved config's value), replication, seed,
    version, config_digest, status, error, then `ROW_METRICS` (reclaimed_* and
    mean_reclaimed_* in MiB, costs, throughput_total: only when every VM counts the same
    unit of work) and ``throughput_<unit>_per_s`` per unit of work the runs' workloads
    count (requests, ops, ...). Wall times are not in it (they differ between runs).
``points.csv``
    one row per point (case and swept values): runs, ok runs, and per result column its
    mean over the ok replications, the half-width of the 95 % confidence interval of that
    mean (Student's t, n - 1 degrees of freedom; empty for one replication), min and max.
``sweep.json``
    what ran where: backend, workers, counts, stale reruns by reason, total and per-run
    wall times, run folders in runs/ that are not part of the sweep; runs_span_s: the
    seconds from the sweep's start at which its runs began and its last run ended (what
    lies outside is its serial part: imports and forks before, writing the outputs after).
``sweep.md``
    the per-point table (mean ± CI [min-max]), the runs table with links to each run's
    report, and the plots.
``reclaimed_vs_<key>.png``
    per swept key (and per case when there are cases): memory reclaimed per technique
    against the key, one panel per combination of the other swept keys, mean over the
    replications with 95 % CI bars. Numeric keys (sizes in MiB) get a numeric axis, cases
    and text a categorical one with points only.

`hvsim report SWEEP_FOLDER` writes points.csv, sweep.md and the plots again from runs.csv
and sweep.json.

Resume: running a sweep again skips each run listed in runs.csv as ok with the same
version and config_digest whose folder holds an ok summary.json with the expected seed.
A finished run whose version or config differs is stale: it runs again, and the sweep says
on stderr (and in sweep.md) how many and why. The others (failed, missing) run again.

Exit status of ``hvsim sweep``: 0 when every run is ok, 1 when some run failed, 2 for a bad
sweep file or option (one line per problem, naming the key).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import gc
import importlib
import io
import itertools
import json
import math
import os
import re
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import xxhash

DEFAULT_RUNNER = "experiments.sweep:run_config"
# what a run of DEFAULT_RUNNER imports (run_config, run_experiment): the model and metrics
DEFAULT_RUNNER_MODULES = ["experiments.config", "experiments.runner", "experiments.scenario", "experiments.metrics",
                          "guestkernel.kernel"]

TECHNIQUE_KEYS = ("sharing", "balloon", "compression", "swap", "reporting", "total")

#: Columns of a row taken from summary.json, in runs.csv order.
ROW_METRICS = (
    *[f"reclaimed_{t}_mib" for t in TECHNIQUE_KEYS],
    *[f"mean_reclaimed_{t}_mib" for t in TECHNIQUE_KEYS],
    "cow_breaks", "decompressions", "host_swapins", "guest_swapins", "guest_oom_kills",
    "vm_stall_s", "dead_vms", "throughput_total",
)

_TOP_KEYS = ("base", "replications", "sweep", "grid", "zip", "case")
_SWEEP_KEYS = ("name", "dir")


class SweepError(Exception):
    """A sweep file that cannot run: `problems` has one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass
class RunSpec:
    """One run of a sweep: everything `execute` needs, picklable (plain data only).

    params: (dotted key, value) for every swept key of the sweep, the value this run uses.
    config: the complete config as a plain dict (validated). run_dir: absolute path.
    runner: "module:function" called as function(config_dict, run_dir) -> summary dict.
    """

    run_id: str
    case: str
    params: tuple[tuple[str, Any], ...]
    replication: int
    seed: int
    config: dict
    run_dir: str
    runner: str = DEFAULT_RUNNER
    version: str = ""
    config_digest: str = ""

    def __post_init__(self) -> None:
        if not self.version:
            from . import __version__

            self.version = __version__
        if not self.config_digest:
            self.config_digest = config_digest(self.config)

    def row_head(self) -> dict:
        """The row's identifying columns (before the results)."""
        row: dict = {"run_id": self.run_id, "case": self.case}
        row.update(self.params)
        row.update(replication=self.replication, seed=self.seed, version=self.version,
                   config_digest=self.config_digest)
        return row


@dataclass
class Sweep:
    """An expanded sweep: its runs in expansion order and where they write."""

    name: str
    source: str                     # the sweep file (or "<dict>")
    output_dir: Path
    keys: list[str]                 # swept keys, in column order
    replications: int
    runs: list[RunSpec] = field(default_factory=list)
    has_cases: bool = False
    units: list[str] = field(default_factory=list)  # units of work of the runs' workloads

    @property
    def columns(self) -> list[str]:
        return ["run_id", "case", *self.keys, "replication", "seed", "version", "config_digest", "status",
                "error", *ROW_METRICS, *[_tput_col(u) for u in self.units]]

    def sort_key(self) -> Callable[[dict], tuple]:
        """Row order of runs.csv and sweep.md: cases in the file's order, then each swept
        key by value (numbers, sizes and durations by magnitude, not as text), then the
        replication."""
        order = {name: i for i, name in enumerate(dict.fromkeys(r.case for r in self.runs))}
        keys = self.keys

        def key(row: dict) -> tuple:
            return (order.get(row["case"], len(order)), *[_magnitude(row.get(k)) for k in keys],
                    int(row["replication"]), row["run_id"])

        return key


# -- loading and expansion ---------------------------------------------------------------


def config_digest(config: dict) -> str:
    """16 hex digits of xxh64 over the resolved config (without [output], which decides
    where and how results are written, not what they are) as compact sorted JSON."""
    what = {k: v for k, v in config.items() if k != "output"}
    return xxhash.xxh64_hexdigest(json.dumps(what, sort_keys=True, separators=(",", ":")).encode())


def _magnitude(value: Any) -> tuple:
    """A sort key for one cell: numbers, sizes (bytes) and durations (s) by magnitude, before
    other values (as text)."""
    if isinstance(value, bool) or value is None:
        return (1, _show(value) if value is not None else "")
    if isinstance(value, int | float):
        return (0, float(value))
    from guestkernel.units import parse_duration, parse_size

    for parse in (float, parse_size, parse_duration):
        try:
            return (0, float(parse(value)))
        except (ValueError, TypeError):
            continue
    return (1, _show(value))


def replication_seed(seed: int, replication: int) -> int:
    """The seed of replication `replication` of a point whose config seed is `seed`."""
    return xxhash.xxh64_intdigest(f"{seed}/replication/{replication}".encode()) >> 1


def run_id(case: str, overrides: list[tuple[str, Any]], slug_keys: list[str], replication: int,
           replications: int) -> str:
    """A stable id: readable slug + 8 hex digits of xxh64 over case, overrides, replication."""
    canon = json.dumps([case, [[k, v] for k, v in overrides], replication], sort_keys=True,
                       separators=(",", ":"))
    digest = xxhash.xxh64_hexdigest(canon.encode())[:8]
    parts = [_slug(case)] if case else []
    shown = dict(overrides)
    for key in slug_keys:
        leaf = re.sub(r"\[.*?\]", "", key).rsplit(".", 1)[-1]
        parts.append(f"{_slug(leaf)}-{_slug(_show(shown[key]))}")
    if replications > 1:
        parts.append(f"r{replication}")
    slug = "_".join(p for p in parts if p)[:60].strip("_-.")
    return f"{slug}-{digest}" if slug else digest


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "", text)


def _show(value: Any) -> str:
    """A value as a cell or slug: TOML spelling for booleans, JSON for lists and tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _flatten(table: dict, whole_tables: bool, prefix: str = "") -> list[tuple[str, Any]]:
    """Dotted keys of a TOML table whose nested tables spell the key (host.memory = ...).

    whole_tables: a table under a quoted dotted key ("vm[db].workload" = {...}) is one value
    (it replaces that table) instead of being split into its keys.
    """
    out = []
    for key, value in table.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and not (whole_tables and "." in key):
            out += _flatten(value, whole_tables, dotted)
        else:
            out.append((dotted, value))
    return out


def load_sweep(path: str | Path, output_dir: str | Path | None = None,
               runner: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Read, validate and expand a sweep file. Raises SweepError (one line per problem)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise SweepError([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SweepError([f"{path}: not valid TOML ({exc})"]) from None
    return expand_sweep(data, base_dir=path.parent, source=str(path), default_name=path.stem,
                        output_dir=output_dir, runner=runner, overrides=overrides)


def expand_sweep(data: dict, base_dir: str | Path = ".", source: str = "<dict>",
                 default_name: str = "sweep", output_dir: str | Path | None = None,
                 runner: str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Sweep:
    """Validate and expand a parsed sweep file (see the module docstring for its format).

    runner: "module:function" each run calls (default DEFAULT_RUNNER, the real runner).
    overrides: `--set KEY=VALUE` strings applied to the base config (before the sweep's
    own overrides, so a swept key still varies).
    """
    from .config import ConfigError, apply_overrides, config_from_dict, resolve_paths

    runner = runner or DEFAULT_RUNNER
    base_dir = Path(base_dir)
    problems: list[str] = []

    def bad(where: str, what: str) -> None:
        line = f"{source}: {where}: {what}" if where else f"{source}: {what}"
        if line not in problems:
            problems.append(line)

    for key in data:
        if key not in _TOP_KEYS:
            bad(key, f"unknown key; one of {', '.join(_TOP_KEYS)}")

    # base
    base: dict | None = None
    config_dir = base_dir
    raw_base = data.get("base")
    if raw_base is None:
        bad("base", 'required: a config file (base = "quickstart.toml") or a [base] table')
    elif isinstance(raw_base, str):
        bpath = base_dir / raw_base
        if not bpath.is_file():
            bad("base", f"no such config file {raw_base!r} (looked in {base_dir.resolve()})")
        else:
            try:
                base = tomllib.loads(bpath.read_text())
                config_dir = bpath.parent
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                bad("base", f"{raw_base}: not a readable TOML config ({exc})")
    elif isinstance(raw_base, dict):
        base = raw_base
    else:
        bad("base", "must be a config file name or a [base] table")
    if base is not None:
        try:
            base = apply_overrides(copy.deepcopy(base), overrides)
            config_from_dict(copy.deepcopy(base), base_dir=config_dir)
        except ConfigError as exc:
            for p in exc.problems:
                bad("base", p)
            base = None

    # options
    reps = data.get("replications", 1)
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        bad("replications", f"must be a whole number >= 1, got {reps!r}")
        reps = 1
    opts = data.get("sweep", {})
    if not isinstance(opts, dict):
        bad("sweep", "must be a table")
        opts = {}
    for key in opts:
        if key not in _SWEEP_KEYS:
            bad(f"sweep.{key}", f"unknown key; one of {', '.join(_SWEEP_KEYS)}")
    name = opts.get("name", default_name)
    if not isinstance(name, str) or not name:
        bad("sweep.name", "must be a non-empty string")
        name = default_name
    out_text = opts.get("dir", "sweeps/{name}")
    if not isinstance(out_text, str) or not out_text:
        bad("sweep.dir", "must be a folder name")
        out_text = "sweeps/{name}"
    out = Path(output_dir) if output_dir is not None else Path(out_text.replace("{name}", name))

    # grid and zip
    def lists(section: str) -> list[tuple[str, list]]:
        table = data.get(section, {})
        if not isinstance(table, dict):
            bad(section, "must be a table of dotted keys -> lists")
            return []
        items = _flatten(table, whole_tables=False)
        good = []
        for key, values in items:
            if not isinstance(values, list) or not values:
                bad(f"{section}.{key}", "must be a non-empty list of values")
            else:
                good.append((key, values))
        return good

    grid = lists("grid")
    zipped = lists("zip")
    if zipped and len({len(v) for _, v in zipped}) > 1:
        bad("zip", "lists of different lengths (" + ", ".join(f"{k}: {len(v)}" for k, v in zipped) + ")")
        zipped = []
    grid_keys = {k for k, _ in grid}
    for key, _ in zipped:
        if key in grid_keys:
            bad(f"zip.{key}", "also in [grid]; a key is varied in one of them")

    # cases
    cases: list[tuple[str, list[tuple[str, Any]]]] = []
    raw_cases = data.get("case", [])
    if not isinstance(raw_cases, list) or not all(isinstance(c, dict) for c in raw_cases):
        bad("case", "must be [[case]] tables")
        raw_cases = []
    for i, table in enumerate(raw_cases):
        cname = table.get("name")
        if not isinstance(cname, str) or not _slug(cname):
            bad(f"case[{i}].name", "required: a name with letters or digits")
            continue
        if any(cname == c for c, _ in cases):
            bad(f"case[{i}].name", f"duplicate case name {cname!r}")
            continue
        cases.append((cname, _flatten({k: v for k, v in table.items() if k != "name"}, whole_tables=True)))
    if problems:
        raise SweepError(problems)

    # expansion
    case_keys: list[str] = []
    for _, overrides in cases:
        case_keys += [k for k, _ in overrides if k not in case_keys]
    zip_keys = [k for k, _ in zipped]
    slug_keys = [k for k, _ in grid] + zip_keys
    keys = [k for k in case_keys if k not in slug_keys] + slug_keys
    sweep = Sweep(name=name, source=source, output_dir=out, keys=keys, replications=reps,
                  has_cases=bool(cases))
    points = list(itertools.product(*[v for _, v in grid]))
    rows = list(zip(*[v for _, v in zipped])) or [()]
    runs_dir = out.resolve() / "runs"
    for (cname, case_over), point, zrow in itertools.product(cases or [("", [])], points, rows):
        overrides = list(case_over) + list(zip([k for k, _ in grid], point)) + list(zip(zip_keys, zrow))
        where = f"case {cname!r}" if cname else ""
        config = copy.deepcopy(base)
        failed = False
        for key, value in overrides:
            section = ("zip" if key in zip_keys else "grid" if key in grid_keys else where or "case")
            try:
                set_dotted(config, key, value)
            except KeyError as exc:
                bad(section, str(exc.args[0]))
                failed = True
            except (ValueError, IndexError):  # "vm[0" and the like
                bad(section, f"{key}: not a dotted key like \"vm[0].memory\"")
                failed = True
        if failed:
            continue
        try:
            cfg = config_from_dict(copy.deepcopy(config), base_dir=config_dir)
        except ConfigError as exc:
            for p in exc.problems:
                bad(_origin(p, config, overrides, zip_keys, grid_keys, where), p)
            continue
        point_seed = cfg.experiment.seed
        point_config = cfg.model_dump(mode="json")  # swept keys a case leaves alone show these
        given = dict(overrides)
        params = tuple((k, given[k] if k in given else _get(point_config, k)) for k in keys)
        for rep in range(reps):
            rid = run_id(cname, overrides, slug_keys, rep, reps)
            seed = replication_seed(point_seed, rep)
            cfg.experiment.seed = seed
            if "experiment.name" not in dict(overrides):
                cfg.experiment.name = rid
            resolve_paths(cfg, config_dir)
            resolved = cfg.model_dump(mode="json")
            sweep.runs.append(RunSpec(run_id=rid, case=cname, params=params, replication=rep,
                                      seed=seed, config=resolved, run_dir=str(runs_dir / rid),
                                      runner=runner))
    if problems:
        raise SweepError(problems)
    for spec in sweep.runs:
        sweep.units += [u for u in workload_units(spec.config) if u not in sweep.units]
    ids = [r.run_id for r in sweep.runs]
    if len(set(ids)) != len(ids):  # the same values listed twice in a grid or zip
        dup = next(i for i in ids if ids.count(i) > 1)
        raise SweepError([f"{source}: two runs would have the same id {dup!r} (a value listed twice?)"])
    return sweep


def set_dotted(config: dict, key: str, value: Any) -> None:
    from .config import set_dotted as _set

    _set(config, key, value)


def _get(config: dict, key: str) -> Any:
    from .config import get_dotted

    try:
        return get_dotted(config, key)
    except (KeyError, IndexError, StopIteration, TypeError):
        return ""


def _index_form(config: dict, key: str) -> str:
    """ "vm[web].memory" -> "vm[0].memory" (problems name list entries by index)."""

    def sub(m: re.Match) -> str:
        table, name = m.group(1), m.group(2)
        items = config.get(table) if isinstance(config, dict) else None
        if isinstance(items, list) and not name.lstrip("-").isdigit():
            for i, item in enumerate(items):
                if isinstance(item, dict) and item.get("name") == name:
                    return f"{table}[{i}]"
        return m.group(0)

    return re.sub(r"^(\w+)\[([^\]]*)\]", sub, key)


def _origin(problem: str, config: dict, overrides: list[tuple[str, Any]], zip_keys: list[str],
            grid_keys: set[str], where: str) -> str:
    """Which section of the sweep file a config problem comes from (for its line)."""
    loc = problem.split(":", 1)[0]
    for key, _ in reversed(overrides):  # the last override of a key is the one that counts
        ikey = _index_form(config, key)
        if loc in (key, ikey) or loc.startswith((key + ".", key + "[", ikey + ".", ikey + "[")):
            return "zip" if key in zip_keys else "grid" if key in grid_keys else where or "case"
    return where or "runs"


# -- one run -------------------------------------------------------------------------------


def run_config(config: dict, run_dir: str) -> dict:
    """The default runner: validate the config dict and run it into run_dir (runner.py)."""
    from .config import config_from_dict
    from .runner import run_experiment

    return run_experiment(config_from_dict(config), run_dir)


def _resolve(runner: str) -> Callable[[dict, str], dict]:
    module, _, name = runner.partition(":")
    return getattr(importlib.import_module(module), name)


def row_from_summary(spec: RunSpec, summary: dict) -> dict:
    """The flat row of a run from its summary.json dict (plus wall_time_s, not in runs.csv)."""
    row = spec.row_head()
    status = summary.get("status")
    row["status"] = status if status in ("ok", "failed") else "failed"
    error = summary.get("error")
    if row["status"] != "ok" and not error:
        error = f"summary status {status!r}"
    row["error"] = " ".join(str(error).split()) if error else ""
    for key in ROW_METRICS:
        row[key] = summary.get(key)
    by_unit = summary.get("throughput_by_unit")
    if isinstance(by_unit, dict):  # per unit of work; throughput_total only when there is one
        for unit, rate in by_unit.items():
            row[_tput_col(unit)] = rate
    row["wall_time_s"] = summary.get("wall_time_s")
    return row


def failed_row(spec: RunSpec, error: str, wall_time_s: float | None = None) -> dict:
    """The row of a run that produced no usable summary."""
    row = spec.row_head()
    row.update(status="failed", error=" ".join(error.split()))
    row.update(dict.fromkeys(ROW_METRICS))
    row["wall_time_s"] = wall_time_s
    return row


def execute(spec: RunSpec) -> dict:
    """Run one sweep run and return its row. Never raises: a failure is a failed row.

    When an exception escapes the runner, a summary.json recording it is written into the
    run folder (unless the runner wrote one), so `hvsim report` still works there.
    """
    t0 = time.perf_counter()
    try:
        Path(spec.run_dir).mkdir(parents=True, exist_ok=True)
        (Path(spec.run_dir) / STARTED).write_text(f"{os.getpid()}\n")
        summary = _resolve(spec.runner)(spec.config, spec.run_dir)
        if not isinstance(summary, dict):
            raise TypeError(f"runner {spec.runner} returned {type(summary).__name__}, not a summary dict")
        row = row_from_summary(spec, summary)
        if row["wall_time_s"] is None:
            row["wall_time_s"] = time.perf_counter() - t0
        return row
    except Exception as exc:  # a sweep records a broken run and goes on
        error = f"{type(exc).__name__}: {exc}"
        wall = time.perf_counter() - t0
        spath = Path(spec.run_dir) / "summary.json"
        try:
            if not spath.exists():
                spath.write_text(json.dumps({
                    "name": spec.run_id, "seed": spec.seed, "status": "failed", "error": error,
                    "traceback": traceback.format_exc(), "wall_time_s": wall}, indent=2) + "\n")
        except OSError:
            pass
        return failed_row(spec, error, wall)
    finally:
        with contextlib.suppress(OSError):
            (Path(spec.run_dir) / STARTED).unlink()


# -- backends ------------------------------------------------------------------------------


def _serial(specs: list[RunSpec]) -> Iterator[dict]:
    for spec in specs:
        yield execute(spec)


def _preload(specs: list[RunSpec]) -> list[str]:
    """The modules every run of `specs` imports: the runners (and the model the default
    runner imports on its first run), and matplotlib's pyplot when a run draws plots (the
    default runner's `output.plots`, default true; networkx too, for the default runner's
    report). Imported here once, so forked workers start with them (the parent needs pyplot for the sweep plots
    anyway)."""
    modules: list[str] = []
    for runner in dict.fromkeys(s.runner for s in specs):
        modules.append(runner.partition(":")[0])
        if runner == DEFAULT_RUNNER:  # it imports the model lazily, on its first run
            modules += DEFAULT_RUNNER_MODULES
    plots = [s for s in specs if s.config.get("output", {}).get("plots", True) is not False]
    if plots:
        modules.append("matplotlib.pyplot")
    if any(s.runner == DEFAULT_RUNNER for s in plots):
        # the run report's page-state diagram (report.plot_page_states): 0.14-0.25 s of
        # import in every worker's first report otherwise, once here
        modules.append("networkx")
    return modules


def _mp_context(specs: list[RunSpec]):
    """The pool's start method: "fork" after importing `_preload(specs)` here, when this
    process runs no other thread (a fork copies only the calling thread, so a lock held
    by another one would stay locked in the child); else "forkserver" with those modules
    preloaded into the server; "spawn" where neither exists."""
    import multiprocessing
    import threading

    from .report import pyplot

    methods = multiprocessing.get_all_start_methods()
    modules = _preload(specs)
    if "fork" in methods and threading.active_count() == 1:
        for name in modules:
            with contextlib.suppress(ImportError):  # a runner that cannot import fails its runs
                pyplot() if name == "matplotlib.pyplot" else importlib.import_module(name)
        return multiprocessing.get_context("fork")
    if "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([m for m in modules if m != "matplotlib.pyplot"])
        return ctx
    return multiprocessing.get_context("spawn")


def _pool(specs: list[RunSpec], jobs: int, exiting: list[threading.Thread] | None = None) -> Iterator[dict]:
    """Runs on a process pool (`_mp_context`), started before this returns (a fork before
    the progress bar's thread exists). A worker that dies (killed, out of memory) breaks
    the pool: the runs that had started then run again one at a time in a process of their
    own, so the one that dies again is recorded as failed with its exit signal and the
    others complete; runs that had not started go to a new pool.

    exiting: once the last row is out, the pool shuts down (its workers exit) in a thread
    appended here, which the caller joins (`_join_pools`) after writing the sweep's
    outputs: the workers' exit (0.08-0.19 s after a quickstart sweep's last run, measured
    on a loaded 2-core machine) is off the critical path. None: the pool is joined here."""
    from concurrent.futures import ProcessPoolExecutor

    ctx = _mp_context(specs)
    pending = longest_first(specs)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=ctx)
    futures = {pool.submit(execute, spec): spec for spec in pending}  # forks every worker now
    return _pool_results(pool, futures, jobs, ctx, exiting)


def _join_pools(closing: list[threading.Thread]) -> None:
    """Wait for the pools `_pool` left shutting down (their workers exited)."""
    while closing:
        closing.pop().join()


def _pool_results(pool, futures: dict, jobs: int, ctx, exiting: list[threading.Thread] | None = None) -> Iterator[dict]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    while futures:
        broken: list[RunSpec] = []
        try:
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except BrokenProcessPool:
                    broken.append(futures[fut])
                except Exception as exc:  # pickling and the like: this run only
                    yield failed_row(futures[fut], f"{type(exc).__name__}: {exc}")
        except BaseException:  # the caller stopped (an error, ^C, the generator closed)
            pool.shutdown(wait=True)
            raise
        if broken or exiting is None:
            pool.shutdown(wait=True)
        else:  # every run of this pool ended: its workers exit while the caller goes on
            closing = threading.Thread(target=pool.shutdown, name="hvsim-pool-shutdown")
            closing.start()
            exiting.append(closing)
        started = [s for s in broken if (Path(s.run_dir) / STARTED).exists()]
        for spec in started:
            yield _alone(spec, ctx)
        pending = [s for s in broken if s not in started]
        futures = {}
        if pending:
            pool = ProcessPoolExecutor(max_workers=min(jobs, len(pending)), mp_context=ctx)
            futures = {pool.submit(execute, spec): spec for spec in pending}


STARTED = ".started"  # written into a run folder when a worker starts the run


def _alone(spec: RunSpec, ctx) -> dict:
    """Run `spec` in a process of its own; a death is a failed row naming the signal."""
    import signal

    queue = ctx.Queue()
    proc = ctx.Process(target=_execute_into, args=(spec, queue))
    proc.start()
    row = None
    while row is None and (proc.is_alive() or not queue.empty()):
        try:
            row = queue.get(timeout=0.2)
        except Exception:  # queue.Empty
            continue
    proc.join()
    if row is not None:
        return row
    code = proc.exitcode
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        why = f"worker process killed by signal {-code} ({name}{', e.g. the OOM killer' if name == 'SIGKILL' else ''})"
    else:
        why = f"worker process exited with status {code} before returning its result"
    return failed_row(spec, why)


def _execute_into(spec: RunSpec, queue) -> None:
    queue.put(execute(spec))


def longest_first(specs: list[RunSpec]) -> list[RunSpec]:
    """Submission order: the runs expected to take longest first, so no long run starts
    last while the other workers idle; ties keep the sweep's order. The estimate: simulated
    duration x guest memory x overcommit (guest memory over host memory, at least 1: a host
    that must reclaim runs the reclaiming techniques beside the guests)."""
    from guestkernel.units import parse_duration, parse_size

    def cost(spec: RunSpec) -> float:
        try:
            d = parse_duration(spec.config["experiment"]["duration"])
            mem = sum(parse_size(v.get("memory", "1GiB")) * int(v.get("count", 1)) for v in spec.config["vm"])
            host = spec.config.get("host", {}).get("memory")
            return d * mem * (max(1.0, mem / parse_size(host)) if host else 1.0)
        except (KeyError, TypeError, ValueError, AttributeError):
            return 0.0

    return sorted(specs, key=lambda s: -cost(s))


# A local:N cluster's periodic housekeeping, which a sweep does not use, slowed down or off:
# it runs beside the runs on the same cores (on two cores, every CPU second it takes is a
# second a run waits). Measured on this 2-core machine, a local:2 cluster with both workers
# idle for 60 s took 4.6 s of CPU (2.4 s of it in the sweep's own process, which hosts the
# scheduler) with Dask's defaults, and 0.75 s with these.
# - tick: the event-loop blockage probe (warnings only), every 20 ms by default;
# - system-monitor: CPU/memory/network/disk samples for the dashboard (a sweep has none);
# - memory monitor: spill/pause/terminate checks every 100 ms; a sweep's worker holds no
#   data to spill, and a run that outgrows its worker is still stopped within 1 s;
# - work stealing and the active memory manager: `_dask` never queues more runs than the
#   cluster has threads and no result is replicated, so there is nothing to steal or drop.
LOCAL_CLUSTER_QUIET: dict[str, Any] = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "5s",
    "distributed.worker.memory.monitor-interval": "1s",
    "distributed.scheduler.work-stealing": False,
    "distributed.scheduler.active-memory-manager.start": False,
}


def dask_client(scheduler: str, preload: list[str] | tuple = ()):
    """(client, cluster or None) for --scheduler ADDRESS or local:N. Raises SweepError.

    local:N on Linux: the `preload` modules (`_preload`: the runners, pyplot) are imported
    here, then the nannies fork the workers from this process (Dask's
    ``distributed.worker.multiprocessing-method`` "fork"), so a worker starts with them
    imported instead of spawning a fresh interpreter that imports distributed, the model
    and matplotlib again (5.4 s before a worker's first run against 0.65 s, measured with
    two workers on a loaded 2-core machine). Elsewhere Dask's default (spawn) stays."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise SweepError(["--scheduler needs Dask: pip install 'hvsim[cluster]'"]) from None
    if scheduler.startswith("local:"):
        try:
            n = int(scheduler[len("local:"):])
            if n < 1:
                raise ValueError
        except ValueError:
            raise SweepError([f"--scheduler {scheduler}: local:N needs a worker count N >= 1"]) from None
        # silence_logs CRITICAL: a heartbeat racing the close logs a CommClosedError at ERROR
        # allowed-failures 0: a run that kills its worker (SIGKILL, out of memory) fails at
        # once instead of killing three more (Dask retries a task 3 times by default)
        import multiprocessing

        import dask

        # profile.enabled False: a worker's statistical profiler samples the running task's
        # stack every 10 ms, taking the GIL from the run: the quickstart's 192 MiB runs took
        # 24.6 s in a profiled worker, 21.3-22.6 s without it, 18.0-18.6 s in a pool worker
        # (idle machine; a 1 s event-loop tick instead of 20 ms made no measurable difference)
        settings: dict[str, Any] = {"distributed.scheduler.allowed-failures": 0,
                                    "distributed.worker.profile.enabled": False}
        settings.update(LOCAL_CLUSTER_QUIET)
        if sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods():
            from .report import pyplot

            for name in preload:
                with contextlib.suppress(ImportError):  # a runner that cannot import fails its runs
                    pyplot() if name == "matplotlib.pyplot" else importlib.import_module(name)
            settings["distributed.worker.multiprocessing-method"] = "fork"
            # the workers inherit this process's objects: frozen, their collector neither
            # scans them nor writes their pages (a copy per worker): the 192 MiB quickstart
            # runs took 20.6-21.8 s in workers forked from the CLI without it
            gc.freeze()
        with dask.config.set(settings):
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=50)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="10s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise SweepError([f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({exc})"]) from None


def _close_dask(client, cluster) -> None:
    """Close the client, then the cluster, with distributed's loggers silenced: closing
    races the workers' heartbeats (a CommClosedError traceback logged after every run
    succeeded), which says nothing about the sweep."""
    if client is None and cluster is None:
        return
    import logging

    loggers = [logging.getLogger(n) for n in ("distributed", "distributed.worker", "distributed.core",
                                              "distributed.comm", "distributed.nanny", "tornado")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _dask(specs: list[RunSpec], client) -> Iterator[dict]:
    """Runs on Dask, longest first, never more at once than the cluster has worker threads
    (counted again as each run ends, so workers that join are used): a worker holds only
    the run it is running, so a worker that dies fails that run and no other, and no long
    run waits in a busy worker's queue while another worker idles."""
    import uuid

    from dask.distributed import as_completed

    # unique per invocation: another sweep on the same cluster may hold the same run ids
    tag = uuid.uuid4().hex[:8]
    queue = list(reversed(longest_first(specs)))  # pop() takes the longest
    running: dict = {}

    def submit() -> None:
        slots = max(1, sum(client.nthreads().values()))
        while queue and len(running) < slots:
            spec = queue.pop()
            fut = client.submit(execute, spec, key=f"hvsim-{tag}-{spec.run_id}", pure=False)
            running[fut.key] = spec
            done.add(fut)

    done = as_completed()
    submit()
    for fut in done:
        spec = running.pop(fut.key)
        try:
            yield fut.result()
        except Exception as exc:  # a worker died (KilledWorker, ...)
            yield failed_row(spec, _dask_error(exc))
        submit()


def _dask_error(exc: Exception) -> str:
    """The failed row's error for an exception a Dask future raised: a worker that died
    says so in the words the process pool uses (Dask does not pass on the signal)."""
    if type(exc).__name__ == "KilledWorker":
        tries = getattr(exc, "allowed_failures", 0) + 1
        worker = getattr(getattr(exc, "last_worker", None), "address", "?")
        return (f"worker process died while running it (killed by a signal, e.g. the OOM killer, or "
                f"exited), on {tries} worker{'s' if tries != 1 else ''}, the last {worker} (Dask KilledWorker)")
    return f"{type(exc).__name__}: {exc}"


# -- runs.csv ------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return _show(value)


def _csv_line(columns: list[str], row: dict) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow([_cell(row.get(c)) for c in columns])
    return buf.getvalue()


def write_runs_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Write runs.csv (header + rows as given) atomically."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        f.write(_csv_line(columns, {c: c for c in columns}))
        for row in rows:
            f.write(_csv_line(columns, row))
    os.replace(tmp, path)


def read_runs_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def finished_rows(sweep: Sweep) -> tuple[dict[str, dict], dict[str, int]]:
    """(rows of the runs a resumed sweep skips, {why: count} of finished runs it reruns).

    A run is finished when runs.csv lists it as ok with the same hvsim version and digest
    of the resolved config, and its folder holds an ok summary.json with the same seed. A
    run finished under another version or config (the base edited, a default changed) is
    stale: it runs again, counted under its reason."""
    listed = {r.get("run_id"): r for r in read_runs_csv(sweep.output_dir / "runs.csv")}
    done: dict[str, dict] = {}
    stale: dict[str, int] = {}
    for spec in sweep.runs:
        old = listed.get(spec.run_id)
        if old is None or old.get("status") != "ok":
            continue
        try:
            summary = json.loads((Path(spec.run_dir) / "summary.json").read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(summary, dict) and summary.get("status") == "ok"):
            continue
        why = None
        if old.get("version") != spec.version:
            why = (f"made by hvsim {old['version']}, this is {spec.version}" if old.get("version")
                   else "no hvsim version recorded (runs.csv from an older hvsim)")
        elif old.get("config_digest") != spec.config_digest or summary.get("seed") != spec.seed:
            why = "resolved config differs (base config, sweep file or a default changed)"
        if why:
            stale[why] = stale.get(why, 0) + 1
            continue
        done[spec.run_id] = row_from_summary(spec, summary)
    return done, stale


def stale_folders(sweep: Sweep) -> list[str]:
    """Run folders under <dir>/runs/ that are not runs of this sweep (left by an earlier
    version of the sweep file): never deleted, never read, named in sweep.md."""
    runs = sweep.output_dir / "runs"
    ids = {r.run_id for r in sweep.runs}
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name not in ids) if runs.is_dir() else []


# -- the sweep -----------------------------------------------------------------------------


def run_sweep(sweep: Sweep, jobs: int = 1, scheduler: str | None = None,
              progress: bool | None = None) -> list[dict]:
    """Run every run of `sweep` not already finished; return all rows in `Sweep.sort_key` order.

    jobs: local worker processes (1: in-process); scheduler: a Dask address or "local:N"
    (then `jobs` is unused); progress: a tqdm bar (None: only when stderr is a terminal).
    Writes runs.csv, sweep.json, sweep.md and the sweep plots into sweep.output_dir.
    Stale finished runs (another config or version) run again, said on stderr.
    """
    from tqdm import tqdm

    t0 = time.perf_counter()
    out = sweep.output_dir
    columns = sweep.columns
    done, stale = finished_rows(sweep)
    todo = [s for s in sweep.runs if s.run_id not in done]
    rows = list(done.values())
    client = cluster = None
    exiting: list[threading.Thread] = []  # process pools shutting down (`_pool`)
    previous = _read_json(out / "sweep.json")
    if not todo:  # nothing to run: no pool, no cluster, no connection
        backend, workers, results = "none", 0, iter(())
    elif scheduler:  # connected before anything is written: a bad address leaves no trace
        backend, workers = "dask", scheduler
        client, cluster = dask_client(scheduler, _preload(todo))
        results = _dask(todo, client)
    elif jobs > 1 and len(todo) > 1:
        workers = min(jobs, len(todo))
        backend, results = "process-pool", _pool(todo, workers, exiting)
    else:
        backend, workers, results = "in-process", 1, _serial(todo)
    if stale:
        n = sum(stale.values())
        why = "; ".join(f"{c} {w}" for w, c in stale.items())
        print(f"hvsim sweep: rerunning {n} finished run{'s' if n != 1 else ''} whose results are stale: {why}",
              file=sys.stderr)
    if progress is None:
        progress = sys.stderr.isatty()
    # no tqdm without a bar: even disabled, it starts its monitor thread, which outlives the
    # sweep, and the next sweep's pool in this process would start by forkserver instead of
    # fork (`_mp_context`): as `hvsim bench sweep`'s -j 2 after -j 1 did, re-importing the
    # model in a fresh server and pyplot in every worker
    bar = tqdm(total=len(sweep.runs), initial=len(done), unit="run", desc=sweep.name,
               file=sys.stderr) if progress else _NoBar()
    csv_path = out / "runs.csv"
    span = None
    try:
        (out / "runs").mkdir(parents=True, exist_ok=True)
        write_runs_csv(csv_path, columns, rows)
        with open(csv_path, "a", newline="") as f:
            # the runs' span, from here to the last row back: what lies outside it is the
            # sweep's serial part (imports and forks before, the outputs after). A pool or
            # cluster started its first runs a few ms before this line; in-process, the
            # first run starts at the loop's first step
            first = time.perf_counter() - t0
            for row in results:
                rows.append(row)
                f.write(_csv_line(columns, row))
                f.flush()
                bar.update(1)
                if row["status"] != "ok":
                    bar.write(f"{row['run_id']}: failed: {row['error']}", file=sys.stderr)
            if todo:
                span = (first, time.perf_counter() - t0)
    except BaseException:
        bar.close()
        _close_dask(client, cluster)
        _join_pools(exiting)
        raise
    bar.close()
    # the cluster closes (about a second: its workers stop), the pool's workers exit, while
    # the outputs are written
    closer = threading.Thread(target=_close_backend, args=(client, cluster, exiting), name="hvsim-sweep-close")
    closer.start()
    try:
        _finish_sweep(sweep, rows, csv_path, columns, t0, backend, workers, done, stale, todo, previous, span)
    finally:
        closer.join()
    return rows


class _NoBar:
    """The progress bar of a sweep without one: failures still go to stderr."""

    def update(self, n: int = 1) -> None:
        pass

    def write(self, text: str, file=None) -> None:
        print(text, file=file or sys.stderr)

    def close(self) -> None:
        pass


def _close_backend(client, cluster, closing: list[threading.Thread]) -> None:
    _close_dask(client, cluster)
    _join_pools(closing)


def _finish_sweep(sweep: Sweep, rows: list[dict], csv_path: Path, columns: list[str], t0: float,
                  backend: str, workers: Any, done: dict, stale: dict, todo: list, previous: Any,
                  span: tuple[float, float] | None = None) -> None:
    """runs.csv sorted, sweep.json, and the outputs (`write_outputs`) once every run ended.
    span: (first run handed to the backend, last row back), s from the sweep's start."""
    out = sweep.output_dir
    rows.sort(key=sweep.sort_key())
    write_runs_csv(csv_path, columns, rows)
    wall = time.perf_counter() - t0
    info = {
        "name": sweep.name, "sweep_file": sweep.source, "output_dir": str(out),
        "backend": backend, "workers": workers, "runs": len(rows),
        "ok": sum(r["status"] == "ok" for r in rows), "failed": sum(r["status"] != "ok" for r in rows),
        "skipped": len(done), "rerun_stale": stale, "wall_time_s": wall,
        "runs_span_s": list(span) if span else None,
        "run_wall_time_s": {r["run_id"]: r.get("wall_time_s") for r in rows},
        "unlisted_run_folders": stale_folders(sweep),
    }
    if not todo and isinstance(previous, dict):
        # nothing ran: the wall times are those of the invocation that made the runs
        info["run_wall_time_s"] = previous.get("run_wall_time_s", info["run_wall_time_s"])
        info["made_by"] = previous.get("made_by") or {
            k: previous.get(k) for k in ("backend", "workers", "wall_time_s") if k in previous}
    (out / "sweep.json").write_text(json.dumps(info, indent=2) + "\n")
    write_outputs(sweep, rows, info)


def write_outputs(sweep: Sweep, rows: list[dict], info: dict) -> None:
    """points.csv, the plots and sweep.md from the rows (also `hvsim report SWEEP_FOLDER`)."""
    write_runs_csv(sweep.output_dir / "points.csv", points_columns(sweep), points(sweep, rows))
    plots = write_sweep_plots(sweep, rows)
    (sweep.output_dir / "sweep.md").write_text(render_sweep_md(sweep, rows, plots, info))


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# -- a sweep folder read back (hvsim report SWEEP_FOLDER) ------------------------------------


def _typed(cell: str) -> Any:
    """A runs.csv cell as the value it was written from: int, float, bool, or text."""
    if cell in ("true", "false"):
        return cell == "true"
    for kind in (int, float):
        try:
            return kind(cell)
        except ValueError:
            continue
    if cell[:1] in "[{":
        try:
            return json.loads(cell)
        except ValueError:
            pass
    return cell


def read_sweep_folder(folder: str | Path) -> tuple[Sweep, list[dict], dict]:
    """(sweep, rows, sweep.json) of a finished sweep's output folder, from runs.csv and
    sweep.json alone. Raises SweepError (one line) when it is not a sweep folder."""
    folder = Path(folder)
    info = _read_json(folder / "sweep.json")
    table = read_runs_csv(folder / "runs.csv")
    if not isinstance(info, dict) or not (folder / "runs.csv").is_file():
        raise SweepError([f"{folder}: not a sweep folder (no sweep.json and runs.csv)"])
    with open(folder / "runs.csv", newline="") as f:
        header = next(csv.reader(f), [])
    if "case" not in header or "replication" not in header or "error" not in header:
        raise SweepError([f"{folder}/runs.csv: not a runs table (no case, replication and error columns)"])
    keys = header[header.index("case") + 1:header.index("replication")]
    units = [c[len("throughput_"):-len("_per_s")] for c in header[header.index("error") + 1:]
             if c.startswith("throughput_") and c.endswith("_per_s")]
    rows = []
    for t in table:
        row: dict = {c: t.get(c, "") for c in header}
        for k in keys:
            row[k] = _typed(row[k])
        for c in header[header.index("error") + 1:]:
            row[c] = float(row[c]) if row[c] not in ("", None) else None
        row["replication"] = int(row["replication"])
        row["seed"] = int(row["seed"]) if str(row["seed"]).isdigit() else row["seed"]
        rows.append(row)
    sweep = Sweep(name=str(info.get("name", folder.name)), source=str(info.get("sweep_file", "")),
                  output_dir=folder, keys=keys, replications=max((r["replication"] for r in rows), default=0) + 1,
                  has_cases=any(r["case"] for r in rows), units=units)
    return sweep, rows, info


def report_sweep(folder: str | Path) -> Path:
    """Regenerate points.csv, the plots and sweep.md of a sweep folder; the path of sweep.md."""
    sweep, rows, info = read_sweep_folder(folder)
    rows.sort(key=sweep.sort_key())
    write_outputs(sweep, rows, info)
    return sweep.output_dir / "sweep.md"


# -- statistics per point ------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betai(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with df degrees of freedom: 1 - I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    tail = 0.5 * _betai(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: int) -> float:
    """t with P(T <= t) = p (0.5 < p < 1), by bisection on the CDF (to 1e-12)."""
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2.0


def mean_ci95(values: list[float]) -> tuple[float, float | None]:
    """(mean, half-width of its 95 % confidence interval) over replications, Student's t with
    n - 1 degrees of freedom: t(0.975, n-1) * s / sqrt(n), s the sample standard deviation.
    One value: no interval (None)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, student_t_quantile(0.975, n - 1) * math.sqrt(var) / math.sqrt(n)


def metric_columns(sweep: Sweep) -> list[str]:
    """The result columns summarised per point (and plotted): reclaimed per technique, costs,
    throughput per unit of work."""
    return [c for c in sweep.columns[sweep.columns.index("error") + 1:]]


def point_of(sweep: Sweep, row: dict) -> tuple:
    return (row["case"], *[_show(row[k]) for k in sweep.keys])


def points(sweep: Sweep, rows: list[dict]) -> list[dict]:
    """One record per sweep point (case and swept values), in row order: its runs and ok
    runs, and per result column the mean, the 95 % CI half-width (Student's t over the ok
    replications; empty for one), min and max."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(point_of(sweep, r), []).append(r)
    out = []
    for group in groups.values():
        first = group[0]
        rec: dict = {"case": first["case"], **{k: first[k] for k in sweep.keys}, "runs": len(group)}
        ok = [r for r in group if r["status"] == "ok"]
        rec["ok"] = len(ok)
        for col in metric_columns(sweep):
            ys = [float(r[col]) for r in ok if r.get(col) not in (None, "")]
            if ys:
                mean, half = mean_ci95(ys)
                rec.update({f"{col}_mean": mean, f"{col}_ci95": half, f"{col}_min": min(ys), f"{col}_max": max(ys)})
            else:
                rec.update(dict.fromkeys((f"{col}_mean", f"{col}_ci95", f"{col}_min", f"{col}_max")))
        out.append(rec)
    return out


def points_columns(sweep: Sweep) -> list[str]:
    cols = ["case", *sweep.keys, "runs", "ok"]
    for col in metric_columns(sweep):
        cols += [f"{col}_mean", f"{col}_ci95", f"{col}_min", f"{col}_max"]
    return cols


# -- sweep plots and sweep.md --------------------------------------------------------------


def _numeric(values: list[Any]) -> tuple[list[float] | None, str]:
    """Values as numbers (sizes as MiB, durations as s) and the unit, or (None, "")."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], ""
    from guestkernel.units import parse_duration, parse_size

    for parse, scale, unit in ((parse_size, 1 / (1 << 20), "MiB"), (parse_duration, 1.0, "s")):
        try:
            return [parse(v) * scale for v in values], unit
        except (ValueError, TypeError):
            continue
    return None, ""


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def write_sweep_plots(sweep: Sweep, rows: list[dict]) -> dict[str, str]:
    """reclaimed_vs_<key>.png per swept key (and per case when there are cases), drawn by
    `sweep_figure`. Returns {key: file name}; earlier sweep plots are removed first (a key
    no longer swept leaves no plot behind)."""
    from .report import pyplot

    for old in sweep.output_dir.glob("reclaimed_vs_*.png"):
        old.unlink()
    keys = (["case"] if sweep.has_cases else []) + sweep.keys
    files: dict[str, str] = {}
    plt = pyplot()
    for key in keys:
        fig = sweep_figure(sweep, rows, key)
        if fig is None:
            continue
        name = f"reclaimed_vs_{_file_part(key)}.png"
        fig.savefig(sweep.output_dir / name, dpi=100)
        plt.close(fig)
        files[key] = name
    return files


def sweep_figure(sweep: Sweep, rows: list[dict], key: str):
    """Memory reclaimed per technique against `key`, one panel per combination of the other
    swept keys (and case), so nothing is averaged over another key; points are means over
    the ok replications, bars their 95 % Student-t confidence interval. A numeric key gets
    a numeric axis (integer ticks for integers) with lines; cases and other text values a
    categorical axis with points only (no trend between unordered values). None when no
    ok run or nothing varies along `key`."""
    from matplotlib.ticker import MaxNLocator

    from .report import TECHNIQUES, pyplot

    ok = [r for r in rows if r["status"] == "ok"]
    keys = (["case"] if sweep.has_cases else []) + sweep.keys
    if not ok:
        return None
    plt = pyplot()
    labels = dict(TECHNIQUES) | {"total": "total"}
    colors = {"sharing": "#55a868", "balloon": "#c44e52", "compression": "#8172b2", "swap": "#ccb974",
              "reporting": "#64b5cd", "total": "black"}  # as in the run report's memory plot
    values = [r[key] for r in ok]
    distinct = sorted(set(map(_show, values)), key=_magnitude)
    if len(distinct) < 2 and len(keys) > 1:
        return None  # nothing varies along this key among the ok runs
    nums, unit = _numeric(values) if key != "case" else (None, "")
    integer = nums is not None and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if nums is not None:
        xs_of = {_show(v): x for v, x in zip(values, nums)}
    else:
        xs_of = {s: float(i) for i, s in enumerate(distinct)}
    others = [k for k in keys if k != key]
    panels: dict[tuple, list[dict]] = {}
    for r in ok:
        panels.setdefault(tuple(_show(r[k]) for k in others), []).append(r)
    order = sorted(panels, key=lambda p: tuple(_magnitude(v) for v in p))
    ncols = min(3, len(order))
    nrows = -(-len(order) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 4.3 * nrows), squeeze=False)
    reps = set()
    for ax, panel in zip(axes.flat, order):
        group = panels[panel]
        xs = sorted({_show(r[key]) for r in group}, key=lambda s: xs_of[s])
        for tech in TECHNIQUE_KEYS:
            col = f"reclaimed_{tech}_mib"
            means, halves = [], []
            for x in xs:
                ys = [float(r[col]) for r in group if _show(r[key]) == x and r.get(col) not in (None, "")]
                reps.add(len(ys))
                m, h = mean_ci95(ys) if ys else (math.nan, None)
                means.append(m)
                halves.append(h or 0.0)
            ax.errorbar([xs_of[x] for x in xs], means, yerr=halves, marker="o", capsize=4,
                        linestyle=("--" if tech == "total" else "-") if nums is not None else "none",
                        label=labels[tech], color=colors[tech])
        if nums is None:
            ax.set_xticks([xs_of[x] for x in distinct], distinct, rotation=20 if len(distinct) > 4 else 0)
            ax.set_xlim(-0.5, len(distinct) - 0.5)
        elif integer:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{key} ({unit})" if unit else key)
        ax.set_ylabel("memory reclaimed at the end (MiB)")
        if others:
            ax.set_title(", ".join(f"{k} = {v or '-'}" for k, v in zip(others, panel)), fontsize=9)
    for ax in list(axes.flat)[len(order):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize="small")
    n = "/".join(str(r) for r in sorted(reps)) if reps else "0"
    fig.suptitle(f"Memory reclaimed against {key}: mean of {n} ok replication(s) per point; "
                 "bars: 95 % confidence interval (Student's t)" + (
                     "\none panel per value of the other swept keys" if others else ""), fontsize=10)
    fig.tight_layout()
    return fig


def render_sweep_md(sweep: Sweep, rows: list[dict], plots: dict[str, str], info: dict) -> str:
    units = throughput_units(sweep)
    out = [f"# hvsim sweep: {sweep.name}", ""]
    out += [f"- sweep file: `{sweep.source}`", f"- runs: {info['runs']} ({info['ok']} ok, "
            f"{info['failed']} failed, {info['skipped']} skipped as already finished)",
            f"- replications per point: {sweep.replications}",
            f"- swept: {', '.join(f'`{k}`' for k in sweep.keys) or '(cases only)'}",
            _backend_line(info),
            "- results: `runs.csv` (one row per run), `points.csv` (per point: mean, 95 % confidence "
            "interval, min, max of every result column), run folders in `runs/`", ""]
    if sweep.replications > 1:
        out += _points_table(sweep, rows)
    head = ["run", "case", *sweep.keys, "rep", "seed", "status", "reclaimed total MiB",
            *[f"{u}/s" for u in units], "error"]
    out += ["## Runs", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [f"[{r['run_id']}](runs/{r['run_id']}/report.md)", r["case"] or "-",
                 *[_show(r[k]) for k in sweep.keys], str(r["replication"]), str(r["seed"]), r["status"],
                 _num(r.get("reclaimed_total_mib")), *[_num(r.get(_tput_col(u)), 3) for u in units],
                 (r["error"] or "").replace("|", "\\|")]
        out.append("| " + " | ".join(cells) + " |")
    out.append("")
    if plots:
        out += ["## Plots", ""]
        for key, name in plots.items():
            out += [f"### Memory reclaimed against `{key}`", "", f"![{key}]({name})", ""]
    return "\n".join(out).rstrip() + "\n"


def _backend_line(info: dict) -> str:
    if info["backend"] != "none":
        line = f"- backend: {info['backend']} ({info['workers']} workers), wall time {info['wall_time_s']:.1f} s"
    else:
        made = info.get("made_by") or {}
        line = "- backend: nothing ran this time (every run was already finished)"
        if made.get("backend"):
            line += (f"; the runs were made by {made['backend']} ({made.get('workers')} workers) in "
                     f"{float(made.get('wall_time_s') or 0):.1f} s")
    stale = info.get("rerun_stale") or {}
    if stale:
        line += "\n- rerun because stale: " + "; ".join(f"{c} {w}" for w, c in stale.items())
    if info.get("unlisted_run_folders"):
        n = len(info["unlisted_run_folders"])
        line += (f"\n- `runs/` also holds {n} folder{'s' if n != 1 else ''} of runs that are not part of this "
                 "sweep (an earlier version of the sweep file); they are not in `runs.csv` or the plots")
    return line


def _points_table(sweep: Sweep, rows: list[dict]) -> list[str]:
    """Per point: mean ± 95 % CI half-width [min-max] over the ok replications (MiB, /s)."""
    units = throughput_units(sweep)
    cols = [f"reclaimed_{t}_mib" for t in TECHNIQUE_KEYS] + [_tput_col(u) for u in units]
    head = ["case", *sweep.keys, "ok runs", *[f"{t} MiB" for t in TECHNIQUE_KEYS], *[f"{u}/s" for u in units]]
    first = 0 if sweep.has_cases else 1  # no case column without cases
    head = head[first:]
    out = ["## Per point", "",
           "Mean over the ok replications ± the half-width of its 95 % confidence interval (Student's t "
           "with n - 1 degrees of freedom: t(0.975, n-1) s / sqrt(n)), then [min-max]. `points.csv` "
           "holds the same for every result column.", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rec in points(sweep, rows):
        cells = [rec["case"] or "-", *[_show(rec[k]) for k in sweep.keys], f"{rec['ok']}/{rec['runs']}"]
        for col in cols:
            m, h = rec.get(f"{col}_mean"), rec.get(f"{col}_ci95")
            if m is None:
                cells.append("-")
                continue
            ci = f" ± {h:,.1f}" if h is not None else ""
            cells.append(f"{m:,.1f}{ci} [{rec[f'{col}_min']:,.1f}-{rec[f'{col}_max']:,.1f}]")
        out.append("| " + " | ".join(cells[first:]) + " |")
    return out + [""]


def _tput_col(unit: str) -> str:
    return f"throughput_{_file_part(unit)}_per_s"


def throughput_units(sweep: Sweep) -> list[str]:
    return list(sweep.units)


def workload_units(config: dict) -> list[str]:
    """The units of work of a config's VMs' workloads (requests, ops, ...), in VM order."""
    from .workloads import PROFILES

    out = []
    for v in config.get("vm", []):
        if v.get("image_file"):
            continue
        profile = (v.get("workload") or {}).get("profile", "idle")
        if profile == "trace":
            from .workloads.trace import TraceWorkload

            unit = TraceWorkload.unit
        else:
            unit = getattr(PROFILES.get(profile), "unit", "")
        if unit and unit not in out:
            out.append(unit)
    return out


def _num(v: Any, digits: int = 1) -> str:
    try:
        return f"{float(v):,.{digits}f}"
    except (TypeError, ValueError):
        return "-"


# -- command -------------------------------------------------------------------------------


@click.command("sweep")
@click.argument("sweep_file", metavar="SWEEP.toml")
@click.option("-j", "--jobs", type=int, default=None,
              help="local worker processes (default: the number of CPUs; 1 runs in-process)")
@click.option("-o", "--output", "output", default=None, help="output folder (default: [sweep] dir)")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="run on a Dask cluster: a scheduler address (tcp://host:8786) or local:N")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a key of the base config (host.memory=1GiB); repeatable")
def sweep(sweep_file: str, jobs: int | None, output: str | None, scheduler: str | None,
          overrides: tuple[str, ...]) -> None:
    """Run a sweep: a base config with parameters varied over a grid, zips, cases and replications.

    Writes runs.csv (one row per run), sweep.json, sweep.md, plots and runs/<run id>/ into
    the sweep's output folder. A finished run is skipped when the sweep is run again.
    Exit status: 0 all runs ok, 1 some run failed, 2 bad sweep file or option.
    """
    if jobs is not None and jobs < 1:
        click.echo(f"hvsim sweep: -j must be >= 1, got {jobs}", err=True)
        sys.exit(2)
    try:
        spec = load_sweep(sweep_file, output_dir=output, overrides=overrides)
        rows = run_sweep(spec, jobs=jobs or os.cpu_count() or 1, scheduler=scheduler)
    except SweepError as exc:
        for line in exc.problems:
            click.echo(f"hvsim sweep: {line}", err=True)
        sys.exit(2)
    failed = sum(r["status"] != "ok" for r in rows)
    click.echo(f"{len(rows)} runs, {failed} failed: {spec.output_dir / 'runs.csv'}")
    sys.exit(1 if failed else 0)
