"""`hvsim compare`: run and sweep folders side by side.

    hvsim compare runs/a runs/b sweeps/s1 [--json] [--plot FILE]

Each run folder is one column (its summary.json); a sweep folder gives one column per
point (the mean over its ok replications, from runs.csv). Rows: memory reclaimed per
technique at the end and on average (MiB), the costs, throughput per unit of work. Every
column after the first is followed by its difference against the first. Sweeps that
swept the same key get overlaid curves of total memory reclaimed against it (mean and
95 % confidence interval per point), written to --plot FILE.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

TECHNIQUES = ("sharing", "balloon", "compression", "swap", "reporting", "total")

#: (row key, label) in table order; throughput rows per unit follow.
ROWS = (
    *[(f"reclaimed_{t}_mib", f"reclaimed by {t}, end (MiB)") for t in TECHNIQUES],
    *[(f"mean_reclaimed_{t}_mib", f"reclaimed by {t}, time mean (MiB)") for t in TECHNIQUES],
    ("cow_breaks", "copy-on-write breaks"),
    ("decompressions", "decompressions"),
    ("host_swapins", "host swap-ins"),
    ("guest_swapins", "guest swap-ins"),
    ("guest_oom_kills", "guest OOM kills"),
    ("vm_stall_s", "VM stall time (s)"),
    ("dead_vms", "VMs dead"),
)


class CompareError(Exception):
    """A folder that cannot be compared (one line naming it)."""


def columns_of(folder: str | Path) -> list[tuple[str, dict]]:
    """[(column name, {row key: value})] of a run folder (one) or a sweep folder (one per point)."""
    folder = Path(folder)
    if (folder / "sweep.json").is_file() and (folder / "runs.csv").is_file():
        from .sweep import SweepError, _show, points, read_sweep_folder

        try:
            sweep, rows, _ = read_sweep_folder(folder)
        except SweepError as exc:
            raise CompareError(exc.problems[0]) from None
        rows.sort(key=sweep.sort_key())
        out = []
        for rec in points(sweep, rows):
            label = ", ".join(([rec["case"]] if rec["case"] else []) +
                              [f"{k}={_show(rec[k])}" for k in sweep.keys]) or "all runs"
            values = {c[:-len("_mean")]: v for c, v in rec.items() if c.endswith("_mean")}
            by_unit = {c[len("throughput_"):-len("_per_s")]: v for c, v in values.items()
                       if c.startswith("throughput_") and c.endswith("_per_s") and v is not None}
            values["throughput_by_unit"] = by_unit
            out.append((f"{sweep.name}: {label}", values))
        return out
    from .report import ReportError, read_run, throughput_by_unit

    try:
        _, summary, _ = read_run(folder)
    except ReportError as exc:
        raise CompareError(str(exc)) from None
    values = {k: summary.get(k) for k, _ in ROWS}
    values["throughput_by_unit"] = throughput_by_unit(summary)
    name = summary.get("name") or folder.name
    if summary.get("status") != "ok":
        name += f" ({summary.get('status', 'unknown')})"
    return [(name, values)]


def comparison(folders: list[str]) -> dict:
    """{"columns": [names], "rows": [{"key", "label", "values": [...], "differences": [...]}]};
    a difference is value minus the first column's (None where either is missing)."""
    cols: list[tuple[str, dict]] = []
    for f in folders:
        cols += columns_of(f)
    units: list[str] = []
    for _, v in cols:
        units += [u for u in v.get("throughput_by_unit", {}) if u not in units]
    spec = list(ROWS) + [(f"throughput:{u}", f"throughput ({u}/s)") for u in units]
    rows = []
    for key, label in spec:
        if key.startswith("throughput:"):
            unit = key.split(":", 1)[1]
            values = [v.get("throughput_by_unit", {}).get(unit) for _, v in cols]
        else:
            values = [v.get(key) for _, v in cols]
        values = [float(x) if isinstance(x, int | float) and not isinstance(x, bool) else None for x in values]
        first = values[0] if values else None
        diffs = [None if x is None or first is None else x - first for x in values]
        rows.append({"key": key, "label": label, "values": values, "differences": diffs})
    return {"columns": [n for n, _ in cols], "folders": [str(f) for f in folders], "rows": rows}


def _cell(x: float | None, digits: int = 1, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:+,.{digits}f}" if sign else f"{x:,.{digits}f}"


def render(cmp: dict) -> str:
    names = cmp["columns"]
    head = ["", names[0]]
    for n in names[1:]:
        head += [n, "Δ vs first"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in cmp["rows"]:
        digits = 3 if row["key"] in ("vm_stall_s",) or row["key"].startswith("throughput:") else 1
        if row["key"] in ("cow_breaks", "decompressions", "host_swapins", "guest_swapins", "guest_oom_kills",
                          "dead_vms"):
            digits = 0
        cells = [row["label"], _cell(row["values"][0], digits)]
        for x, d in zip(row["values"][1:], row["differences"][1:]):
            cells += [_cell(x, digits), _cell(d, digits, sign=True)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def overlay_plot(folders: list[str], path: str | Path) -> str | None:
    """Total memory reclaimed against the key every sweep among `folders` swept (mean and
    95 % CI per point), one curve per sweep and case. Returns the key, or None when the
    folders hold fewer than two sweeps or no common key."""
    from .report import pyplot
    from .sweep import _magnitude, _numeric, _show, mean_ci95, read_sweep_folder

    sweeps = []
    for f in folders:
        p = Path(f)
        if (p / "sweep.json").is_file() and (p / "runs.csv").is_file():
            sweeps.append(read_sweep_folder(p))
    if len(sweeps) < 2:
        return None
    common = [k for k in sweeps[0][0].keys if all(k in s.keys for s, _, _ in sweeps)]
    if not common:
        return None
    key = common[0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    unit = ""
    for sweep, rows, _ in sweeps:
        ok = [r for r in rows if r["status"] == "ok" and r.get("reclaimed_total_mib") is not None]
        others = [k for k in sweep.keys if k != key]
        curves: dict[tuple, list[dict]] = {}
        for r in ok:
            curves.setdefault((r["case"], *[_show(r[k]) for k in others]), []).append(r)
        for curve, group in sorted(curves.items(), key=lambda c: tuple(_magnitude(v) for v in c[0])):
            xs = sorted({_show(r[key]) for r in group}, key=_magnitude)
            nums, unit = _numeric([next(r[key] for r in group if _show(r[key]) == x) for x in xs])
            pos = nums if nums is not None else list(range(len(xs)))
            stats = [mean_ci95([r["reclaimed_total_mib"] for r in group if _show(r[key]) == x]) for x in xs]
            label = sweep.name + "".join(f", {v}" for v in curve if v)
            ax.errorbar(pos, [m for m, _ in stats], yerr=[h or 0.0 for _, h in stats], marker="o", capsize=4,
                        label=label, linestyle="-" if nums is not None else "none")
            if nums is None:
                ax.set_xticks(pos, xs)
    ax.set_xlabel(f"{key} ({unit})" if unit else key)
    ax.set_ylabel("memory reclaimed at the end, all techniques (MiB)")
    ax.set_title(f"Memory reclaimed against {key}: mean, bars 95 % CI over replications", fontsize=10)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return key


@click.command("compare")
@click.argument("folders", nargs=-1, required=True, metavar="RUN_OR_SWEEP_FOLDER...")
@click.option("--json", "as_json", is_flag=True, help="print the comparison as JSON")
@click.option("--plot", "plot", default=None, metavar="FILE",
              help="write overlaid curves of sweeps over the same key to FILE (PNG)")
def compare(folders: tuple[str, ...], as_json: bool, plot: str | None) -> None:
    """Compare run and sweep folders side by side: memory reclaimed per technique, costs,
    throughput, with differences against the first. Exit 2 for a folder that is neither."""
    try:
        cmp = comparison(list(folders))
    except CompareError as exc:
        click.echo(f"hvsim compare: {exc}", err=True)
        sys.exit(2)
    if plot:
        key = overlay_plot(list(folders), plot)
        cmp["plot"] = {"file": plot, "key": key} if key else None
        if key is None:
            click.echo("hvsim compare: --plot needs two or more sweep folders that swept a common key", err=True)
    if as_json:
        click.echo(json.dumps(cmp, indent=2))
    else:
        click.echo(render(cmp), nl=False)
