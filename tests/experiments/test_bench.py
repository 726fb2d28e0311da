"""`hvsim bench`: the command lists its benchmarks and runs a cheap one (never timing)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from experiments import bench as B
from experiments.cli import main


def test_list_names_every_benchmark():
    res = CliRunner().invoke(main, ["bench", "--quick", "--list"])
    assert res.exit_code == 0, res.output
    names = res.output.split()
    assert names == list(B.BENCHMARKS)
    for name in ("page_alloc", "sharing", "compression", "faults", "r1", "r2", "sweep"):
        assert name in names
    # R2 needs 12 GiB and many minutes, whatif writes a 4 GiB dump: only when asked for by name
    assert B.ON_REQUEST == {"r2", "whatif"}


def test_unknown_benchmark_is_one_line_usage_error():
    res = CliRunner().invoke(main, ["bench", "nope"])
    assert res.exit_code == 2
    assert "unknown benchmark 'nope'" in res.output


def test_boot_benchmark_prints_its_row():
    res = CliRunner().invoke(main, ["bench", "--quick", "boot"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0].split()[:3] == ["benchmark", "value", "unit"]
    assert len(lines) == 3  # header, rule, one row
    assert lines[2].startswith("boot a 4 GiB x86_64 guest (2 CPUs)")


def test_faults_rows_have_rates_and_the_first_touch_target():
    rows = B.BENCHMARKS["faults"](True)
    assert [r.unit for r in rows] == ["faults/s", "faults/s", "pages/s"]
    assert rows[0].target == ">= 200,000"
    assert all(r.value > 0 for r in rows)
    assert rows[0].ok == (rows[0].value >= B.FIRST_TOUCH_TARGET)


def test_row_formats_value_by_magnitude():
    assert B.Row("a", 1234567.0, "x").cells()[1] == "1,234,567"
    assert B.Row("a", 12.345, "x").cells()[1] == "12.3"
    assert B.Row("a", 0.6543, "x", ">= 0.5x", True).cells()[1:] == ["0.654", "x", ">= 0.5x", "ok"]
    assert B.Row("a", 0.4, "x", ">= 0.5x", False).cells()[4] == "BELOW TARGET"


def test_bench_exits_non_zero_when_a_figure_is_below_its_target(monkeypatch):
    """A figure below its target is a failed benchmark: exit 1, the row named on stderr."""
    from experiments import bench as B

    monkeypatch.setitem(B.BENCHMARKS, "fake-below", lambda quick: [
        B.Row("fake rate", 150_000.0, "faults/s", ">= 200,000", False),
        B.Row("fake info", 3.0, "s")])
    monkeypatch.setitem(B.BENCHMARKS, "fake-ok", lambda quick: [
        B.Row("fake rate", 250_000.0, "faults/s", ">= 200,000", True)])
    res = CliRunner().invoke(main, ["bench", "fake-below"])
    assert res.exit_code == 1
    assert res.stderr == "hvsim bench: below target: fake rate: 150,000 faults/s (target >= 200,000)\n"
    res = CliRunner().invoke(main, ["bench", "fake-ok"])
    assert res.exit_code == 0, res.output


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and exec_mmap are Linux's")
def test_scenario_child_peak_rss_is_its_own_not_the_parents():
    # Linux's exec_mmap folds the pre-exec address space's high-water mark into the
    # process's maxrss, so a child's getrusage ru_maxrss starts at its parent's peak; the
    # scenario child's peak (bench._peak_rss, VmHWM of the new address space) does not.
    parent = bytearray(192 << 20)
    parent[::4096] = b"\1" * len(range(0, len(parent), 4096))  # resident
    code = ("import resource; from experiments.bench import _peak_rss; "
            "print(_peak_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    del parent
    own, maxrss = map(int, out.stdout.split())
    assert maxrss >= 192 << 20  # the rule: the parent's peak, carried across exec
    assert 0 < own < 96 << 20  # an interpreter that imported experiments.bench
