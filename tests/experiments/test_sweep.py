"""sweep.py: sweep files, expansion (ids, seeds), backends giving identical runs.csv, failures,
resume, plots.

Most tests use `fake_runner` (below): a deterministic function of the run's config that writes
only summary.json, so they test the sweep machinery in milliseconds per run. The tests
marked "real runner" run the real quickstart config at a short duration.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import tomllib
from pathlib import Path

import pytest
import xxhash
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import sweep as S
from guestkernel.units import parse_size

FAKE = "tests.experiments.test_sweep:fake_runner"
TEST_PID = os.getpid()
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

BASE = """\
[experiment]
name = "base"
duration = "2s"
seed = 1

[host]
memory = "512MiB"

[[vm]]
name = "web"
count = 2
memory = "256MiB"

[[vm]]
name = "db"
memory = "256MiB"
"""


def fake_runner(config: dict, run_dir: str) -> dict:
    """A stand-in for runner.run_experiment: results are simple functions of the config.

    duration "13s" -> a failed run (status failed); "17s" -> an exception escapes; "19s"
    -> the process kills itself with SIGKILL while a file "kill" is in the output folder;
    "23s" -> a worker process (not the test's) takes 1.5 s more to exit (a thread it waits
    for at exit). Appends one line to calls.txt in the run folder per call (to count executions).
    """
    out = Path(run_dir)
    with open(out / "calls.txt", "a") as f:
        f.write("call\n")
    duration = config["experiment"]["duration"]
    if duration == "17s":
        raise RuntimeError("the simulator blew up")
    if duration == "19s" and (out.parents[1] / "kill").exists():  # the worker dies (as by the OOM killer)
        os.kill(os.getpid(), 9)
    if duration == "23s" and os.getpid() != TEST_PID:
        import threading
        import time

        threading.Thread(target=time.sleep, args=(1.5,)).start()
    host = parse_size(config["host"]["memory"]) / (1 << 20)
    vms = sum(v["count"] for v in config["vm"])
    seed = config["experiment"]["seed"]
    sharing = 10.0 * vms + seed % 7
    summary = {
        "name": config["experiment"]["name"], "seed": seed, "status": "ok", "error": None,
        "wall_time_s": 0.001, "host_memory_mib": host,
        "reclaimed_sharing_mib": sharing, "reclaimed_balloon_mib": host / 64,
        "reclaimed_compression_mib": 1.5, "reclaimed_swap_mib": 0.0, "reclaimed_reporting_mib": 0.0,
        "reclaimed_total_mib": sharing + host / 64 + 1.5,
        "mean_reclaimed_sharing_mib": sharing / 2, "mean_reclaimed_balloon_mib": 0.0,
        "mean_reclaimed_compression_mib": 0.0, "mean_reclaimed_swap_mib": 0.0,
        "mean_reclaimed_total_mib": sharing / 2,
        "cow_breaks": vms * 3, "decompressions": 2, "host_swapins": 0, "guest_swapins": 0,
        "guest_oom_kills": 0, "vm_stall_s": 0.25, "dead_vms": 0, "throughput_total": 100.0 / vms,
        "throughput_by_unit": {"wakeups": 100.0 / vms},
    }
    if duration == "13s":
        summary.update(status="failed", error="KernelPanic: Out of memory\nno killable task")
    (out / "summary.json").write_text(json.dumps(summary))
    return summary


def write_sweep(tmp_path: Path, text: str, base: str | None = BASE) -> Path:
    if base is not None:
        (tmp_path / "base.toml").write_text(base)
    path = tmp_path / "sw.toml"
    path.write_text(text)
    return path


def load(tmp_path, text, **kw):
    return S.load_sweep(write_sweep(tmp_path, text), output_dir=tmp_path / "out", runner=FAKE, **kw)


def problems(tmp_path, text, base=BASE) -> list[str]:
    path = write_sweep(tmp_path, text, base)
    with pytest.raises(S.SweepError) as info:
        S.load_sweep(path, runner=FAKE)
    prefix = f"{path}: "
    assert all(p.startswith(prefix) for p in info.value.problems)
    return [p[len(prefix):] for p in info.value.problems]


def seed(base_seed: int, i: int) -> int:
    return xxhash.xxh64_intdigest(f"{base_seed}/replication/{i}".encode()) >> 1


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- sweep file errors -------------------------------------------------------------------


def test_error_unknown_base(tmp_path):
    assert problems(tmp_path, 'base = "nope.toml"\n') == [
        f"base: no such config file 'nope.toml' (looked in {tmp_path.resolve()})"]


def test_error_missing_base_and_unknown_top_key(tmp_path):
    assert problems(tmp_path, "replication = 2\n") == [
        "replication: unknown key; one of base, replications, sweep, grid, zip, case",
        'base: required: a config file (base = "quickstart.toml") or a [base] table']


def test_error_invalid_base_config(tmp_path):
    assert problems(tmp_path, 'base = "base.toml"\n', base=BASE.replace('"512MiB"', '"lots"')) == [
        'base: host.memory: must be a size like "512MiB", got \'lots\'']


def test_error_zip_lengths(tmp_path):
    text = 'base = "base.toml"\n[zip]\n"host.memory" = ["1GiB", "2GiB", "3GiB"]\n"vm[web].count" = [1, 2]\n'
    assert problems(tmp_path, text) == ["zip: lists of different lengths (host.memory: 3, vm[web].count: 2)"]


def test_error_dotted_keys_the_config_does_not_have(tmp_path):
    text = ('base = "base.toml"\n[grid]\n"host.memroy" = ["1GiB"]\n"vm[mail].memory" = ["1GiB"]\n'
            '[[case]]\nname = "c"\n"experiment.sed" = 3\n')
    assert problems(tmp_path, text) == [
        "grid: vm[mail].memory: no entry named 'mail'"]
    text = 'base = "base.toml"\n[grid]\n"host.memroy" = ["1GiB"]\n[[case]]\nname = "c"\n"experiment.sed" = 3\n'
    assert problems(tmp_path, text) == ["case 'c': experiment.sed: unknown key", "grid: host.memroy: unknown key"]


def test_error_bad_values(tmp_path):
    text = ('base = "base.toml"\nreplications = 0\n[grid]\n"host.memory" = "1GiB"\n"vm[0].count" = []\n'
            '[zip]\n"vm[db].memory" = ["1GiB", "lots"]\n')
    assert problems(tmp_path, text) == [
        "replications: must be a whole number >= 1, got 0",
        "grid.host.memory: must be a non-empty list of values",
        "grid.vm[0].count: must be a non-empty list of values",
    ]
    text = 'base = "base.toml"\n[zip]\n"vm[db].memory" = ["1GiB", "lots"]\n'
    assert problems(tmp_path, text) == ["zip: vm[1].memory: must be a size like \"512MiB\", got 'lots'"]


def test_error_cases(tmp_path):
    text = 'base = "base.toml"\n[[case]]\nname = "a"\n[[case]]\nname = "a"\n[[case]]\n"host.memory" = "1GiB"\n'
    assert problems(tmp_path, text) == ["case[1].name: duplicate case name 'a'",
                                        "case[2].name: required: a name with letters or digits"]


def test_cli_bad_sweep_exit_2(tmp_path):
    path = write_sweep(tmp_path, 'base = "base.toml"\n[zip]\n"host.memory" = ["1GiB"]\n"vm[0].count" = [1, 2]\n')
    result = CliRunner().invoke(S.sweep, [str(path), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output == f"hvsim sweep: {path}: zip: lists of different lengths (host.memory: 1, vm[0].count: 2)\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, line", [
    (["--scheduler", "local:0"], "hvsim sweep: --scheduler local:0: local:N needs a worker count N >= 1"),
    (["-j", "0"], "hvsim sweep: -j must be >= 1, got 0"),
])
def test_cli_bad_options_exit_2(tmp_path, args, line):
    path = write_sweep(tmp_path, 'base = "base.toml"\n')
    result = CliRunner().invoke(S.sweep, [str(path), "-o", str(tmp_path / "out"), *args])
    assert (result.exit_code, result.output) == (2, line + "\n")
    assert not (tmp_path / "out").exists()


# -- expansion ---------------------------------------------------------------------------


def test_grid_and_replications(tmp_path):
    sw = load(tmp_path, 'base = "base.toml"\nreplications = 2\n'
                        '[grid]\n"host.memory" = ["512MiB", "1GiB"]\n"vm[web].count" = [1, 3]\n')
    assert sw.name == "sw" and sw.keys == ["host.memory", "vm[web].count"] and sw.replications == 2
    got = [(r.run_id, r.params, r.replication, r.seed) for r in sw.runs]
    assert got == [
        ("memory-512MiB_count-1_r0-" + got[0][0][-8:], (("host.memory", "512MiB"), ("vm[web].count", 1)), 0, seed(1, 0)),
        ("memory-512MiB_count-1_r1-" + got[1][0][-8:], (("host.memory", "512MiB"), ("vm[web].count", 1)), 1, seed(1, 1)),
        ("memory-512MiB_count-3_r0-" + got[2][0][-8:], (("host.memory", "512MiB"), ("vm[web].count", 3)), 0, seed(1, 0)),
        ("memory-512MiB_count-3_r1-" + got[3][0][-8:], (("host.memory", "512MiB"), ("vm[web].count", 3)), 1, seed(1, 1)),
        ("memory-1GiB_count-1_r0-" + got[4][0][-8:], (("host.memory", "1GiB"), ("vm[web].count", 1)), 0, seed(1, 0)),
        ("memory-1GiB_count-1_r1-" + got[5][0][-8:], (("host.memory", "1GiB"), ("vm[web].count", 1)), 1, seed(1, 1)),
        ("memory-1GiB_count-3_r0-" + got[6][0][-8:], (("host.memory", "1GiB"), ("vm[web].count", 3)), 0, seed(1, 0)),
        ("memory-1GiB_count-3_r1-" + got[7][0][-8:], (("host.memory", "1GiB"), ("vm[web].count", 3)), 1, seed(1, 1)),
    ]
    # the hash suffix: xxh64 of [case, overrides, replication] as compact sorted JSON
    canon = json.dumps(["", [["host.memory", "1GiB"], ["vm[web].count", 3]], 1], separators=(",", ":"))
    assert sw.runs[7].run_id.endswith("-" + xxhash.xxh64_hexdigest(canon.encode())[:8])
    # pinned: resume depends on ids staying the same from one version to the next
    assert sw.runs[0].run_id == "memory-512MiB_count-1_r0-" + xxhash.xxh64_hexdigest(
        b'["",[["host.memory","512MiB"],["vm[web].count",1]],0]')[:8]
    r = sw.runs[6]
    assert r.config["host"]["memory"] == "1GiB" and r.config["vm"][0]["count"] == 3
    assert r.config["experiment"]["seed"] == r.seed and r.config["experiment"]["name"] == r.run_id
    assert r.run_dir == str((tmp_path / "out").resolve() / "runs" / r.run_id)
    assert len({x.run_id for x in sw.runs}) == 8


def test_replication_seeds_literal():
    # xxh64("1/replication/0") >> 1 etc.: pinned so that a sweep's seeds never drift
    assert S.replication_seed(1, 0) == xxhash.xxh64_intdigest(b"1/replication/0") >> 1
    assert S.replication_seed(1, 0) != S.replication_seed(1, 1) != S.replication_seed(2, 1)
    assert all(0 <= S.replication_seed(s, i) < 2**63 for s in (0, 1, 2**62) for i in range(5))


def test_zip_cases_and_inline_base(tmp_path):
    text = (
        'replications = 1\n'
        '[base.experiment]\nname = "inline"\nduration = "2s"\nseed = 5\n'
        '[base.host]\nmemory = "512MiB"\n'
        '[[base.vm]]\nname = "web"\ncount = 2\nmemory = "256MiB"\n'
        '[zip]\nhost.memory = ["512MiB", "768MiB"]\n"vm[web].count" = [2, 4]\n'
        '[[case]]\nname = "small db"\n"vm[0].memory" = "128MiB"\n'
        '[[case]]\nname = "seed9"\n"experiment.seed" = 9\n'
        '[sweep]\nname = "zc"\ndir = "elsewhere/{name}"\n'
    )
    path = tmp_path / "zc.toml"
    path.write_text(text)
    sw = S.load_sweep(path, runner=FAKE)
    assert sw.name == "zc" and sw.output_dir == Path("elsewhere/zc") and sw.has_cases
    assert sw.keys == ["vm[0].memory", "experiment.seed", "host.memory", "vm[web].count"]
    got = [(r.run_id[:-9], r.case, r.params, r.seed) for r in sw.runs]
    assert got == [
        ("smalldb_memory-512MiB_count-2", "small db",
         (("vm[0].memory", "128MiB"), ("experiment.seed", 5), ("host.memory", "512MiB"), ("vm[web].count", 2)),
         seed(5, 0)),
        ("smalldb_memory-768MiB_count-4", "small db",
         (("vm[0].memory", "128MiB"), ("experiment.seed", 5), ("host.memory", "768MiB"), ("vm[web].count", 4)),
         seed(5, 0)),
        # a key the case does not set shows the resolved config's value
        ("seed9_memory-512MiB_count-2", "seed9",
         (("vm[0].memory", "256MiB"), ("experiment.seed", 9), ("host.memory", "512MiB"), ("vm[web].count", 2)),
         seed(9, 0)),
        ("seed9_memory-768MiB_count-4", "seed9",
         (("vm[0].memory", "256MiB"), ("experiment.seed", 9), ("host.memory", "768MiB"), ("vm[web].count", 4)),
         seed(9, 0)),
    ]
    # experiment.seed swept: the replication seed is derived from the swept value, the
    # config's name is still the run id
    assert sw.runs[2].config["experiment"]["seed"] == seed(9, 0)


def test_single_replication_has_no_r_suffix_and_derived_seed(tmp_path):
    sw = load(tmp_path, 'base = "base.toml"\n')
    assert len(sw.runs) == 1
    (r,) = sw.runs
    assert r.run_id == xxhash.xxh64_hexdigest(b'["",[],0]')[:8] and r.seed == seed(1, 0)


@settings(max_examples=25, deadline=None)
@given(mem=st.lists(st.sampled_from(["256MiB", "512MiB", "1GiB", "2GiB"]), min_size=1, max_size=3, unique=True),
       count=st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True),
       zip_len=st.integers(0, 3), cases=st.integers(0, 2), reps=st.integers(1, 3))
def test_expansion_is_the_full_product(mem, count, zip_len, cases, reps):
    data = {"base": tomllib.loads(BASE), "replications": reps,
            "grid": {"host.memory": mem, "vm[web].count": count}}
    if zip_len:
        data["zip"] = {"experiment.duration": [f"{i + 1}s" for i in range(zip_len)],
                       "vm[db].memory": ["128MiB", "256MiB", "384MiB"][:zip_len]}
    if cases:
        data["case"] = [{"name": f"c{i}", "experiment.seed": i} for i in range(cases)]
    sw = S.expand_sweep(data, runner=FAKE)
    n = len(mem) * len(count) * max(zip_len, 1) * max(cases, 1) * reps
    assert len(sw.runs) == n == len({r.run_id for r in sw.runs})
    # every combination exactly once, replications 0..reps-1 each
    combos = {(r.case, r.params, r.replication) for r in sw.runs}
    assert len(combos) == n
    for r in sw.runs:
        p = dict(r.params)
        assert r.config["host"]["memory"] == p["host.memory"]
        assert r.config["vm"][0]["count"] == p["vm[web].count"]
        base_seed = int(r.case[1:]) if r.case else 1
        assert r.seed == seed(base_seed, r.replication) == r.config["experiment"]["seed"]


# -- running -----------------------------------------------------------------------------

SWEEP_GRID = """\
base = "base.toml"
replications = 2
[grid]
"host.memory" = ["512MiB", "1GiB"]
"vm[web].count" = [1, 3]
"""


def test_runs_csv_rows_and_sweep_files(tmp_path):
    sw = load(tmp_path, SWEEP_GRID)
    rows = S.run_sweep(sw, jobs=1)
    # rows by value, numbers and sizes by magnitude (512MiB before 1GiB), then replication
    assert [(r["host.memory"], r["vm[web].count"], r["replication"]) for r in rows] == [
        (m, c, i) for m in ("512MiB", "1GiB") for c in (1, 3) for i in (0, 1)]
    out = tmp_path / "out"
    table = read_csv(out / "runs.csv")
    assert list(table[0]) == sw.columns and "wall_time_s" not in sw.columns
    assert [t["run_id"] for t in table] == [r["run_id"] for r in rows]
    by_id = {t["run_id"]: t for t in table}
    spec = next(r for r in sw.runs if r.params == (("host.memory", "1GiB"), ("vm[web].count", 3))
                and r.replication == 1)
    t = by_id[spec.run_id]
    s = seed(1, 1)
    assert t == {**t, "case": "", "host.memory": "1GiB", "vm[web].count": "3", "replication": "1",
                 "seed": str(s), "status": "ok", "error": "",
                 # fake: sharing = 10 * (3 web + 1 db) + seed % 7; balloon = 1024 / 64
                 "reclaimed_sharing_mib": repr(40.0 + s % 7), "reclaimed_balloon_mib": "16.0",
                 "cow_breaks": "12", "throughput_total": "25.0"}
    info = json.loads((out / "sweep.json").read_text())
    assert (info["backend"], info["runs"], info["ok"], info["failed"], info["skipped"]) == \
        ("in-process", 8, 8, 0, 0)
    assert set(info["run_wall_time_s"]) == set(by_id)
    md = (out / "sweep.md").read_text()
    # per point: mean ± 95 % CI [min-max] over the two replications; fake sharing = 10 * 2 VMs
    # + seed % 7; two values a, b: s = |a - b| / sqrt(2), half-width t(0.975, 1) s / sqrt(2)
    # = 12.7062 |a - b| / 2 (t table: 12.706 for 1 degree of freedom)
    sh = sorted(20.0 + seed(1, i) % 7 for i in (0, 1))
    half = 12.706204736 * (sh[1] - sh[0]) / 2
    assert (f"| 512MiB | 1 | 2/2 | {sum(sh) / 2:,.1f} ± {half:,.1f} [{sh[0]:,.1f}-{sh[1]:,.1f}] | "
            "8.0 ± 0.0 [8.0-8.0] | 1.5 ± 0.0 [1.5-1.5] | 0.0 ± 0.0 [0.0-0.0] | 0.0 ± 0.0 [0.0-0.0] | "
            f"{sum(sh) / 2 + 9.5:,.1f} ± {half:,.1f} [{sh[0] + 9.5:,.1f}-{sh[1] + 9.5:,.1f}] | "
            "50.0 ± 0.0 [50.0-50.0] |") in md
    assert t["throughput_wakeups_per_s"] == "25.0"
    pts = read_csv(out / "points.csv")
    p = next(p for p in pts if (p["host.memory"], p["vm[web].count"]) == ("512MiB", "1"))
    assert (p["runs"], p["ok"]) == ("2", "2")
    assert float(p["reclaimed_sharing_mib_mean"]) == sum(sh) / 2
    assert float(p["reclaimed_sharing_mib_ci95"]) == pytest.approx(half, rel=1e-9)
    assert (float(p["reclaimed_sharing_mib_min"]), float(p["reclaimed_sharing_mib_max"])) == (sh[0], sh[1])
    assert f"[{spec.run_id}](runs/{spec.run_id}/report.md)" in md
    for key in ("host.memory", "vm_web_.count"):
        png = out / f"reclaimed_vs_{key}.png"
        assert png.read_bytes()[:8] == PNG_SIGNATURE
        assert f"]({png.name})" in md
    from experiments.report import pyplot

    assert pyplot().imread(out / "reclaimed_vs_host.memory.png").ndim == 3


def test_failing_runs_are_recorded_and_the_sweep_completes(tmp_path):
    sw = load(tmp_path, 'base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "13s", "17s", "3s"]\n')
    rows = S.run_sweep(sw, jobs=1)
    status = {r["experiment.duration"]: (r["status"], r["error"]) for r in rows}
    assert status == {
        "2s": ("ok", ""), "3s": ("ok", ""),
        "13s": ("failed", "KernelPanic: Out of memory no killable task"),
        "17s": ("failed", "RuntimeError: the simulator blew up"),
    }
    table = read_csv(tmp_path / "out" / "runs.csv")
    assert sorted((t["experiment.duration"], t["status"]) for t in table) == [
        ("13s", "failed"), ("17s", "failed"), ("2s", "ok"), ("3s", "ok")]
    blown = next(r for r in sw.runs if r.config["experiment"]["duration"] == "17s")
    summary = json.loads((Path(blown.run_dir) / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: the simulator blew up"
    assert "Traceback" in summary["traceback"]
    failed_row = next(t for t in table if t["experiment.duration"] == "17s")
    assert failed_row["reclaimed_total_mib"] == "" and failed_row["seed"] == str(seed(1, 0))


def test_cli_sweep_with_a_failure_exits_1(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "DEFAULT_RUNNER", FAKE)
    path = write_sweep(tmp_path, 'base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "13s"]\n')
    result = CliRunner().invoke(S.sweep, [str(path), "-j", "1", "-o", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output
    failed = next(r for r in S.load_sweep(path, runner=FAKE).runs if r.config["experiment"]["duration"] == "13s")
    assert sorted(result.output.splitlines()) == sorted([
        f"2 runs, 1 failed: {tmp_path / 'out' / 'runs.csv'}",
        f"{failed.run_id}: failed: KernelPanic: Out of memory no killable task",
    ])


def calls(spec) -> int:
    return (Path(spec.run_dir) / "calls.txt").read_text().count("call")


def test_resume_skips_finished_runs(tmp_path):
    text = 'base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "13s", "3s", "4s"]\n'
    sw = load(tmp_path, text)
    first = S.run_sweep(sw, jobs=1)
    before = (tmp_path / "out" / "runs.csv").read_text()
    by_dur = {r.config["experiment"]["duration"]: r for r in sw.runs}
    # a run whose summary vanished, and one missing from runs.csv, must run again
    os.remove(Path(by_dur["3s"].run_dir) / "summary.json")
    lines = before.splitlines(keepends=True)
    (tmp_path / "out" / "runs.csv").write_text("".join(l for l in lines if by_dur["4s"].run_id not in l))
    second = S.run_sweep(load(tmp_path, text), jobs=1)
    assert {d: calls(r) for d, r in by_dur.items()} == {"2s": 1, "13s": 2, "3s": 2, "4s": 2}
    assert second == [{**r, "wall_time_s": s["wall_time_s"]} for r, s in zip(first, second)]
    assert (tmp_path / "out" / "runs.csv").read_text() == before
    info = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert info["skipped"] == 1 and info["runs"] == 4


QUICKSTART = Path(__file__).parents[2] / "experiments" / "configs" / "quickstart.toml"


def test_identical_runs_csv_on_every_backend(tmp_path):
    """The real runner on quickstart, cut short: -j 1 in-process, -j 2 process pool (spawn),
    Dask LocalCluster with 2 workers give the same runs.csv."""
    text = (f'base = "{QUICKSTART}"\n'
            '[grid]\n"host.sharing.pages_to_scan" = [200, 2000]\n'
            '[[case]]\nname = "short"\n"experiment.duration" = "0.2s"\n'
            '"experiment.sample_interval" = "0.1s"\n"output.plots" = false\n')
    results = {}
    for name, kw in (("serial", {"jobs": 1}), ("pool", {"jobs": 2}), ("dask", {"scheduler": "local:2"})):
        sw = S.load_sweep(write_sweep(tmp_path, text, base=None), output_dir=tmp_path / name)
        rows = S.run_sweep(sw, **kw)
        assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
        results[name] = (tmp_path / name / "runs.csv").read_text()
        info = json.loads((tmp_path / name / "sweep.json").read_text())
        assert info["backend"] == {"serial": "in-process", "pool": "process-pool", "dask": "dask"}[name]
        for r in sw.runs:
            assert (Path(r.run_dir) / "summary.json").is_file() and (Path(r.run_dir) / "report.md").is_file()
    assert results["serial"].count("\n") == 3
    assert results["pool"] == results["serial"]
    assert results["dask"] == results["serial"]


def test_real_failing_run_is_recorded_and_reported(tmp_path):
    """A real run that fails inside a sweep: its trace file was there when the sweep was
    checked and is gone when the run starts; the error line names the file."""
    trace = tmp_path / "vanishing.trace"
    trace.write_text("")
    text = (f'base = "{QUICKSTART}"\n'
            '[[case]]\nname = "fine"\n"experiment.duration" = "0.2s"\n"output.plots" = false\n'
            '[[case]]\nname = "broken"\n"experiment.duration" = "0.2s"\n"output.plots" = false\n'
            f'"vm[db].workload" = {{profile = "trace", path = "{trace}"}}\n')
    sw = S.load_sweep(write_sweep(tmp_path, text, base=None), output_dir=tmp_path / "out")
    broken = next(r for r in sw.runs if r.case == "broken")
    # the case's table replaced the base's database workload
    assert broken.config["vm"][1]["workload"] == {"profile": "trace", "speed": 1.0, "touch": True, "cpu_util": 1.0,
                                                  "root": False,
                                                  "path": str(trace)}
    trace.unlink()
    rows = {r["case"]: r for r in S.run_sweep(sw, jobs=1)}
    assert rows["fine"]["status"] == "ok"
    assert rows["broken"]["status"] == "failed"
    assert rows["broken"]["error"].startswith("FileNotFoundError:") and str(trace) in rows["broken"]["error"]
    assert [t["status"] for t in read_csv(tmp_path / "out" / "runs.csv")] == ["ok", "failed"]  # case order
    text = (Path(broken.run_dir) / "report.md").read_text()
    assert "- status: **failed**" in text and "FileNotFoundError" in text


def test_a_missing_trace_in_a_sweep_is_found_before_any_run(tmp_path):
    text = (f'base = "{QUICKSTART}"\n[[case]]\nname = "broken"\n'
            '"vm[db].workload" = {profile = "trace", path = "missing.trace"}\n')
    path = write_sweep(tmp_path, text, base=None)
    with pytest.raises(S.SweepError) as info:
        S.load_sweep(path, output_dir=tmp_path / "out")
    assert info.value.problems == [f"{path}: case 'broken': vm[1].workload.path: no such trace file "
                                   f"'{QUICKSTART.parent / 'missing.trace'}'"]


def test_example_sweep_runs(tmp_path):
    """sweep-quickstart.toml at a reduced size: replication 0 of each point, 0.3 s each."""
    sw = S.load_sweep(QUICKSTART.parent / "sweep-quickstart.toml", output_dir=tmp_path)
    assert sw.name == "sweep-quickstart" and sw.keys == ["host.memory"]
    assert len(sw.runs) == 6 and len({r.seed for r in sw.runs}) == 2
    sw.runs = [r for r in sw.runs if r.replication == 0]
    for r in sw.runs:
        r.config["experiment"].update(duration="0.3s", sample_interval="0.1s")
        r.config["output"]["plots"] = False
    rows = S.run_sweep(sw, jobs=1)
    assert [(r["host.memory"], r["status"]) for r in rows] == [
        ("192MiB", "ok"), ("256MiB", "ok"), ("640MiB", "ok")], [r["error"] for r in rows]
    assert (tmp_path / "reclaimed_vs_host.memory.png").read_bytes()[:8] == PNG_SIGNATURE


# -- stale runs, ordering, killed workers, nothing to run ----------------------------------


def test_editing_the_base_config_reruns_every_stale_run_and_says_why(tmp_path, capsys):
    """Run identity covers the resolved config: duration 2 s -> 8 s and web count 2 -> 3 in
    the base reruns all 4 runs (issue 19: they were skipped and the old numbers reported)."""
    text = 'base = "base.toml"\nreplications = 2\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n'
    sw = load(tmp_path, text)
    S.run_sweep(sw, jobs=1)
    capsys.readouterr()
    (tmp_path / "base.toml").write_text(BASE.replace('"2s"', '"8s"').replace("count = 2", "count = 3"))
    sw2 = S.load_sweep(tmp_path / "sw.toml", output_dir=tmp_path / "out", runner=FAKE)
    assert [r.run_id for r in sw2.runs] == [r.run_id for r in sw.runs]  # same folders
    rows = S.run_sweep(sw2, jobs=1)
    assert [calls(r) for r in sw2.runs] == [2, 2, 2, 2]
    assert capsys.readouterr().err == ("hvsim sweep: rerunning 4 finished runs whose results are stale: 4 resolved "
                                       "config differs (base config, sweep file or a default changed)\n")
    # fake sharing = 10 * (3 web + 1 db) + seed % 7: the new config's numbers, not the old
    assert [r["reclaimed_sharing_mib"] for r in rows] == [40.0 + r["seed"] % 7 for r in rows]
    table = read_csv(tmp_path / "out" / "runs.csv")
    assert {t["config_digest"] for t in table} == {r.config_digest for r in sw2.runs}
    assert "- rerun because stale: 4 resolved config differs" in (tmp_path / "out" / "sweep.md").read_text()
    # a third run with nothing changed skips them all, silently
    S.run_sweep(S.load_sweep(tmp_path / "sw.toml", output_dir=tmp_path / "out", runner=FAKE), jobs=1)
    assert [calls(r) for r in sw2.runs] == [2, 2, 2, 2] and capsys.readouterr().err == ""


def test_a_new_hvsim_version_reruns_finished_runs(tmp_path, capsys, monkeypatch):
    import experiments

    sw = load(tmp_path, 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n')
    S.run_sweep(sw, jobs=1)
    capsys.readouterr()
    made_by = experiments.__version__
    monkeypatch.setattr(experiments, "__version__", "9.9.9")
    sw2 = S.load_sweep(tmp_path / "sw.toml", output_dir=tmp_path / "out", runner=FAKE)
    S.run_sweep(sw2, jobs=1)
    assert [calls(r) for r in sw2.runs] == [2, 2]
    assert capsys.readouterr().err == (f"hvsim sweep: rerunning 2 finished runs whose results are stale: 2 made by "
                                       f"hvsim {made_by}, this is 9.9.9\n")
    assert {t["version"] for t in read_csv(tmp_path / "out" / "runs.csv")} == {"9.9.9"}


def test_changing_one_grid_value_names_the_folders_no_longer_in_the_sweep(tmp_path):
    S.run_sweep(load(tmp_path, 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n'), jobs=1)
    old = {p.name for p in (tmp_path / "out" / "runs").iterdir()}
    sw = load(tmp_path, 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "2GiB"]\n')
    rows = S.run_sweep(sw, jobs=1)
    assert [r["host.memory"] for r in rows] == ["512MiB", "2GiB"]
    assert [t["host.memory"] for t in read_csv(tmp_path / "out" / "runs.csv")] == ["512MiB", "2GiB"]
    gone = old - {r.run_id for r in sw.runs}
    assert len(gone) == 1
    info = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert info["unlisted_run_folders"] == sorted(gone)
    assert ("- `runs/` also holds 1 folder of runs that are not part of this sweep"
            in (tmp_path / "out" / "sweep.md").read_text())


def test_numbers_sort_by_value_not_as_text(tmp_path):
    """pages_to_scan 100 < 1000 < 5000 and 96MiB < 512MiB < 2GiB, in runs.csv and sweep.md."""
    sw = load(tmp_path, 'base = "base.toml"\n[grid]\n"host.sharing.pages_to_scan" = [1000, 100, 5000]\n'
                        '"host.memory" = ["2GiB", "512MiB", "96MiB"]\n')
    S.run_sweep(sw, jobs=1)
    table = read_csv(tmp_path / "out" / "runs.csv")
    want = [(str(p), m) for p in (100, 1000, 5000) for m in ("96MiB", "512MiB", "2GiB")]
    assert [(t["host.sharing.pages_to_scan"], t["host.memory"]) for t in table] == want
    md = (tmp_path / "out" / "sweep.md").read_text().split("## Runs", 1)[1]
    cells = [line.split(" | ")[2:4] for line in md.splitlines() if line.startswith("| [")]
    assert [tuple(c) for c in cells] == want


def test_a_killed_worker_is_a_failed_run_and_the_sweep_resumes_it(tmp_path):
    """A worker killed by SIGKILL (the OOM killer's signal) breaks the process pool: that run
    is recorded as failed with the signal, the others complete; the same command run again
    completes it."""
    text = 'base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "19s", "3s", "4s"]\n'
    sw = load(tmp_path, text)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kill").write_text("")
    rows = {r["experiment.duration"]: r for r in S.run_sweep(sw, jobs=2)}
    assert {d: r["status"] for d, r in rows.items()} == {"2s": "ok", "19s": "failed", "3s": "ok", "4s": "ok"}
    assert rows["19s"]["error"] == "worker process killed by signal 9 (SIGKILL, e.g. the OOM killer)"
    assert [t["status"] for t in read_csv(tmp_path / "out" / "runs.csv")] == ["ok", "ok", "ok", "failed"]
    # a run in flight on the other worker when the pool broke lost its result and ran again
    # (once or twice, depending on timing); the second command runs the failed one only
    by_dur = {r.config["experiment"]["duration"]: r for r in sw.runs}
    before = {d: calls(spec) for d, spec in by_dur.items()}
    assert before["19s"] == 2 and all(before[d] in (1, 2) for d in ("2s", "3s", "4s"))
    (tmp_path / "out" / "kill").unlink()
    again = S.run_sweep(load(tmp_path, text), jobs=2)
    assert [r["status"] for r in again] == ["ok"] * 4
    assert {d: calls(spec) for d, spec in by_dur.items()} == {**before, "19s": 3}
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["skipped"] == 3


def test_a_killed_dask_worker_is_a_failed_run_and_the_sweep_resumes_it(tmp_path, capfd):
    """The same on a Dask LocalCluster: the run whose worker dies is a failed row saying so
    (tried once: a local cluster does not retry it on other workers, which it would kill
    too), the other runs complete, the sweep ends without a traceback; run again, it
    completes that run only."""
    text = 'base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "19s", "3s"]\n'
    sw = load(tmp_path, text)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "kill").write_text("")
    rows = {r["experiment.duration"]: r for r in S.run_sweep(sw, scheduler="local:2")}
    assert {d: r["status"] for d, r in rows.items()} == {"2s": "ok", "19s": "failed", "3s": "ok"}
    assert rows["19s"]["error"].startswith("worker process died while running it (killed by a signal, "
                                           "e.g. the OOM killer, or exited), on 1 worker, the last tcp://")
    by_dur = {r.config["experiment"]["duration"]: r for r in sw.runs}
    assert calls(by_dur["19s"]) == 1
    (tmp_path / "out" / "kill").unlink()
    again = S.run_sweep(load(tmp_path, text), scheduler="local:2")
    assert [r["status"] for r in again] == ["ok"] * 3
    assert calls(by_dur["2s"]) == 1 and calls(by_dur["19s"]) == 2
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["skipped"] == 2
    assert "Traceback" not in capfd.readouterr().err


def _modules_loaded(names):
    import sys
    return [n for n in names if n in sys.modules]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="local:N forks its workers on Linux only")
def test_local_dask_workers_start_with_the_runner_and_pyplot_imported():
    """local:N forks its workers from the sweep's process after importing what every run
    imports (the runner, pyplot), as the process pool does: a spawned worker would import
    distributed, the model and matplotlib again before its first run."""
    spec = S.RunSpec(run_id="r", case="", params=(), replication=0, seed=1, config={}, run_dir="")
    preload = S._preload([spec])
    assert preload == ["experiments.sweep", "experiments.config", "experiments.runner", "experiments.scenario",
                       "experiments.metrics", "guestkernel.kernel", "matplotlib.pyplot", "networkx"]
    client, cluster = S.dask_client("local:1", preload)
    try:
        names = ["experiments.scenario", "guestkernel.kernel", "hypervisor.host", "matplotlib.pyplot"]
        assert client.submit(_modules_loaded, names, pure=False).result() == names
        # the cluster's housekeeping (LOCAL_CLUSTER_QUIET) reached the forked worker and the
        # scheduler: intervals in ms as Dask's periodic callbacks hold them
        (worker,) = client.run(_housekeeping).values()
        assert (worker["tick"], worker["monitor"], worker["memory_monitor"]) == (1000, 5000, 1000)
        sched = client.run_on_scheduler(_housekeeping)
        assert (sched["tick"], sched["monitor"]) == (1000, 5000)
        assert not sched["stealing"] and not sched["amm"]
    finally:
        S._close_dask(client, cluster)


def _housekeeping(dask_worker=None, dask_scheduler=None):
    server = dask_worker or dask_scheduler
    out = {k: pc.callback_time for k, pc in server.periodic_callbacks.items()}
    if dask_scheduler is not None:
        out["stealing"] = "stealing" in dask_scheduler.extensions
        amm = dask_scheduler.extensions.get("amm")
        out["amm"] = bool(amm and amm.running)
    return out


def test_dask_sweep_with_every_run_finished_and_without_tracebacks(tmp_path, monkeypatch, capfd):
    """local:2 after a finished sweep: no "No clients found" traceback, exit 0, and sweep.md
    keeps saying which backend made the runs (it said "in-process (1 workers), 0.0 s")."""
    monkeypatch.setattr(S, "DEFAULT_RUNNER", FAKE)
    path = write_sweep(tmp_path, 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n')
    out = str(tmp_path / "out")
    first = CliRunner().invoke(S.sweep, [str(path), "--scheduler", "local:2", "-o", out])
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(S.sweep, [str(path), "--scheduler", "local:2", "-o", out])
    assert second.exit_code == 0, second.output
    assert second.output == f"2 runs, 0 failed: {tmp_path / 'out' / 'runs.csv'}\n"
    assert "Traceback" not in capfd.readouterr().err
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "- backend: nothing ran this time (every run was already finished); the runs were made by dask " \
           "(local:2 workers) in " in md


def test_set_overrides_the_base_of_a_sweep(tmp_path, monkeypatch):
    """`hvsim sweep SWEEP --set KEY=VALUE`: applied to the base, before the sweep's own keys."""
    path = write_sweep(tmp_path, 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n')
    sw = S.load_sweep(path, output_dir=tmp_path / "out", runner=FAKE,
                      overrides=["vm[web].count=3", "host.memory=2GiB", 'experiment.duration="4s"'])
    assert [(r.config["vm"][0]["count"], r.config["host"]["memory"], r.config["experiment"]["duration"])
            for r in sw.runs] == [(3, "512MiB", "4s"), (3, "1GiB", "4s")]
    monkeypatch.setattr(S, "DEFAULT_RUNNER", FAKE)
    res = CliRunner().invoke(S.sweep, [str(path), "-j", "1", "-o", str(tmp_path / "o2"), "--set", "vm[mail].count=1"])
    assert res.exit_code == 2
    assert res.stderr == f"hvsim sweep: {path}: base: --set vm[mail].count=1: vm[mail].count: no entry named 'mail'\n"


@pytest.mark.parametrize("df,t", [(1, 12.706), (2, 4.303), (3, 3.182), (4, 2.776), (5, 2.571), (9, 2.262),
                                  (10, 2.228), (20, 2.086), (30, 2.042), (120, 1.980)])
def test_student_t_quantile_matches_the_table(df, t):
    """t(0.975, df), two-sided 95 %, as printed in Student's t tables (e.g. NIST/SEMATECH
    e-Handbook 1.3.6.7.2) to three decimals."""
    assert S.student_t_quantile(0.975, df) == pytest.approx(t, abs=5e-4)


def test_ci95_by_hand():
    """[1, 2, 3, 4]: mean 2.5, s = sqrt(5/3) = 1.29099, t(0.975, 3) = 3.18245, half-width
    3.18245 * 1.29099 / 2 = 2.05426; one value has no interval."""
    mean, half = S.mean_ci95([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert half == pytest.approx(3.182446305 * (5 / 3) ** 0.5 / 2, rel=1e-8)
    assert half == pytest.approx(2.05426, abs=1e-5)
    assert S.mean_ci95([7.0]) == (7.0, None)


def test_sweep_plots_one_panel_per_value_of_the_other_key_bars_over_replications_only(tmp_path):
    """Two swept keys: the plot against host.memory has one panel per vm[web].count (it
    averaged over the other key, its caption saying min-max over replications); each point
    is the mean of that point's replications, its bar the 95 % CI of those alone; integer
    counts get integer ticks."""
    sw = load(tmp_path, SWEEP_GRID)
    rows = S.run_sweep(sw, jobs=1)
    fig = S.sweep_figure(sw, rows, "host.memory")
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == ["vm[web].count = 1", "vm[web].count = 3"]
    for ax, count in zip(panels, (1, 3)):
        sharing = next(c for c in ax.containers if c.get_label() == "page sharing")
        line, _, (bars,) = sharing.lines
        assert list(line.get_xdata()) == [512.0, 1024.0]  # MiB, numeric axis
        for x, mib in zip(line.get_xdata(), ("512MiB", "1GiB")):
            ys = [r["reclaimed_sharing_mib"] for r in rows if r["host.memory"] == mib and r["vm[web].count"] == count]
            mean, half = S.mean_ci95(ys)
            assert line.get_ydata()[list(line.get_xdata()).index(x)] == pytest.approx(mean)
        # the bar of the 512MiB point spans mean ± half over that point's 2 replications only
        ys = [r["reclaimed_sharing_mib"] for r in rows if r["host.memory"] == "512MiB" and r["vm[web].count"] == count]
        mean, half = S.mean_ci95(ys)
        seg = bars.get_segments()[0]
        assert (seg[0][1], seg[1][1]) == pytest.approx((mean - half, mean + half))
    fig2 = S.sweep_figure(sw, rows, "vm[web].count")
    ticks = [t for t in fig2.axes[0].get_xticks() if 1 <= t <= 3]
    assert all(float(t).is_integer() for t in ticks)
    from experiments.report import pyplot

    pyplot().close(fig)
    pyplot().close(fig2)


def test_cases_get_a_categorical_axis_without_trend_lines(tmp_path):
    text = ('base = "base.toml"\nreplications = 2\n[[case]]\nname = "small"\n"vm[web].count" = 1\n'
            '[[case]]\nname = "big"\n"vm[web].count" = 3\n')
    sw = load(tmp_path, text)
    rows = S.run_sweep(sw, jobs=1)
    fig = S.sweep_figure(sw, rows, "case")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["big", "small"]
    for c in ax.containers:
        assert c.lines[0].get_linestyle() == "None"  # points only: cases are not ordered
    from experiments.report import pyplot

    pyplot().close(fig)


def test_hvsim_report_regenerates_a_sweep_folder(tmp_path):
    """`hvsim report SWEEP_FOLDER` (it said "not a run folder"): sweep.md, points.csv and the
    plots again from runs.csv and sweep.json, the same as the sweep wrote them."""
    from experiments.report import report

    sw = load(tmp_path, SWEEP_GRID)
    S.run_sweep(sw, jobs=1)
    out = tmp_path / "out"
    md, pts = (out / "sweep.md").read_text(), (out / "points.csv").read_text()
    for name in ("sweep.md", "points.csv", "reclaimed_vs_host.memory.png"):
        (out / name).unlink()
    res = CliRunner().invoke(report, [str(out)])
    assert res.exit_code == 0, res.output
    assert res.stdout == f"{out / 'sweep.md'}\n"
    assert (out / "sweep.md").read_text() == md
    assert (out / "points.csv").read_text() == pts
    assert (out / "reclaimed_vs_host.memory.png").read_bytes()[:8] == PNG_SIGNATURE


def test_longest_runs_are_submitted_first(tmp_path):
    """longest_first: simulated duration x guest memory x overcommit (guest over host
    memory, at least 1). Base: 3 VMs of 256 MiB = 768 MiB of guests. Costs (s x MiB):
    2 s on 1 GiB 2*768*1 = 1536; 2 s on 128 MiB 2*768*6 = 9216; 8 s on 1 GiB 8*768 = 6144;
    8 s on 128 MiB 8*768*6 = 36864."""
    text = ('base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "8s"]\n'
            '"host.memory" = ["1GiB", "128MiB"]\n')
    order = [(s.config["experiment"]["duration"], s.config["host"]["memory"])
             for s in S.longest_first(load(tmp_path, text).runs)]
    assert order == [("8s", "128MiB"), ("2s", "128MiB"), ("8s", "1GiB"), ("2s", "1GiB")]


def test_pool_workers_are_forked_after_the_parent_imported_what_a_run_imports(tmp_path, monkeypatch):
    """_mp_context: "fork" when this process runs no other thread, after importing the
    runner's module and pyplot (plots on); "forkserver" (the modules preloaded there) when
    another thread runs, since a fork copies only the calling thread."""
    import sys
    import threading

    sw = load(tmp_path, 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n')
    assert S._preload(sw.runs) == ["tests.experiments.test_sweep", "matplotlib.pyplot"]
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert S._mp_context(sw.runs).get_start_method() == "fork"
    assert "matplotlib.pyplot" in sys.modules and "tests.experiments.test_sweep" in sys.modules
    monkeypatch.setattr(threading, "active_count", lambda: 2)
    assert S._mp_context(sw.runs).get_start_method() == "forkserver"
    for run in sw.runs:
        run.config.setdefault("output", {})["plots"] = False
    assert S._preload(sw.runs) == ["tests.experiments.test_sweep"]


def test_the_default_runners_report_imports_are_preloaded_before_the_fork(tmp_path):
    """_preload for the default runner with plots on: what its run report imports, pyplot
    and networkx (report.plot_page_states), so no forked worker imports them again at its
    first report; with output.plots false, neither."""
    spec = S.RunSpec(run_id="r", case="", params=(), replication=0, seed=1, config={}, run_dir="")
    assert S._preload([spec])[-2:] == ["matplotlib.pyplot", "networkx"]
    off = S.RunSpec(run_id="r", case="", params=(), replication=0, seed=1,
                    config={"output": {"plots": False}}, run_dir="")
    assert "networkx" not in S._preload([off]) and "matplotlib.pyplot" not in S._preload([off])


def test_the_pool_workers_have_exited_when_the_sweep_returns_and_the_runs_span_is_recorded(tmp_path):
    """A -j 2 sweep shuts its pool down while it writes its outputs (`_pool`'s exiting):
    when run_sweep returns, no worker process is left (each took 1.5 s to exit) and no
    shutdown thread runs; its
    rows are those of -j 1. sweep.json's runs_span_s: when the runs began and the last
    one ended, in s from the sweep's start, inside its wall time; none when nothing ran."""
    import multiprocessing
    import threading

    # 23 s: each worker takes 1.5 s to exit after its run (fake_runner)
    text = 'base = "base.toml"\n[grid]\n"host.memory" = ["512MiB", "1GiB", "2GiB"]\n' \
           '[[case]]\nname = "slow-exit"\n"experiment.duration" = "23s"\n'
    serial = S.run_sweep(S.load_sweep(write_sweep(tmp_path, text), output_dir=tmp_path / "j1", runner=FAKE), jobs=1)
    others = set(multiprocessing.active_children())  # an earlier test's, still ending
    rows = S.run_sweep(load(tmp_path, text), jobs=2)
    assert not set(multiprocessing.active_children()) - others
    assert not [t for t in threading.enumerate() if t.name == "hvsim-pool-shutdown"]
    assert [{**r, "wall_time_s": None} for r in rows] == [{**r, "wall_time_s": None} for r in serial]
    assert (tmp_path / "out" / "runs.csv").read_text() == (tmp_path / "j1" / "runs.csv").read_text()
    info = json.loads((tmp_path / "out" / "sweep.json").read_text())
    first, last = info["runs_span_s"]
    assert 0 <= first <= last <= info["wall_time_s"]
    S.run_sweep(load(tmp_path, text), jobs=2)  # every run finished: nothing runs
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["runs_span_s"] is None


def test_a_sweep_without_a_progress_bar_leaves_no_thread_behind(tmp_path, capsys):
    """run_sweep(progress=False) starts no tqdm (whose monitor thread would outlive the
    sweep, and a thread alive makes the next sweep's pool start by forkserver, not fork:
    `_mp_context`); a failed run is still said on stderr."""
    import threading

    before = set(threading.enumerate())
    sw = load(tmp_path, 'base = "base.toml"\n[grid]\n"experiment.duration" = ["2s", "13s"]\n')
    S.run_sweep(sw, jobs=1, progress=False)
    assert set(threading.enumerate()) <= before
    assert ": failed: KernelPanic: Out of memory no killable task" in capsys.readouterr().err
