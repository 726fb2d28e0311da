"""hvsim compare: run and sweep folders side by side, differences against the first, --json."""

from __future__ import annotations

import json

from click.testing import CliRunner

from experiments.cli import main
from tests.experiments import test_sweep as TS
from tests.experiments.test_report import make_run, summary

PNG = b"\x89PNG\r\n\x1a\n"


def test_compare_two_runs_table_and_json(tmp_path):
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    s = summary()
    s.update(name="other", reclaimed_sharing_mib=150.0, reclaimed_total_mib=202.0, cow_breaks=40,
             throughput_by_unit={"requests": 18.5})
    (b / "summary.json").write_text(json.dumps(s))
    res = CliRunner().invoke(main, ["compare", str(a), str(b)])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "|  | two-webs | other | Δ vs first |"
    # 150.0 - 102.4 = +47.6; 202.0 - 154.4 = +47.6; 40 - 31 = +9; 18.5 - 21.0 = -2.5
    assert "| reclaimed by sharing, end (MiB) | 102.4 | 150.0 | +47.6 |" in lines
    assert "| reclaimed by total, end (MiB) | 154.4 | 202.0 | +47.6 |" in lines
    assert "| copy-on-write breaks | 31 | 40 | +9 |" in lines
    assert "| throughput (requests/s) | 21.000 | 18.500 | -2.500 |" in lines
    res = CliRunner().invoke(main, ["compare", str(a), str(b), "--json"])
    data = json.loads(res.stdout)
    assert data["columns"] == ["two-webs", "other"]
    row = next(r for r in data["rows"] if r["key"] == "reclaimed_sharing_mib")
    assert row["values"] == [102.4, 150.0] and row["differences"][1] == 150.0 - 102.4


def test_compare_sweeps_overlaid_and_bad_folder(tmp_path):
    for name in ("s1", "s2"):
        d = tmp_path / name
        d.mkdir()
        sw = TS.load(d, 'base = "base.toml"\nreplications = 2\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n')
        TS.S.run_sweep(sw, jobs=1)
    png = tmp_path / "cmp.png"
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "s1" / "out"), str(tmp_path / "s2" / "out"),
                                    "--plot", str(png)])
    assert res.exit_code == 0, res.output
    head = res.stdout.splitlines()[0]
    assert head == ("|  | sw: host.memory=512MiB | sw: host.memory=1GiB | Δ vs first | sw: host.memory=512MiB "
                    "| Δ vs first | sw: host.memory=1GiB | Δ vs first |")
    assert png.read_bytes()[:8] == PNG
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and res.stderr == f"hvsim compare: {tmp_path / 'nothing'}: no such run folder\n"
