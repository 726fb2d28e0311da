"""hvsim anchors: every anchor at its reduced (--quick) size, each check against the
published figure; the table, anchors.md, the plots and the command.

A check the model honestly cannot meet is marked xfail(strict=True) with the reason: it
still asserts the real outcome, and the day the model meets it the test says so."""

from __future__ import annotations

import json
import tomllib

import pytest
from click.testing import CliRunner

from experiments import anchors as A
from experiments.config import load_config, size

LOAD_DEPENDENT = {("live-ksm", 6)}

# (anchor, row index) -> why the model does not meet the published figure
KNOWN_GAPS: dict[tuple[str, int], str] = {
    ("identical", 0): "87.7 % shared at 10 VMs (quick) against ~67 %: with vCPUs on the host's 4 CPUs (issue 13) "
                      "ten single-vCPU compiles run at 40 % speed and write less private data in the 20 s run; "
                      "the paper's run length and server CPUs are not known here",
    ("identical", 1): "79.5 % reclaimed at 10 VMs (quick) against ~60 %: as row 0",
    ("balloon-static", 0): "overhead 0.1 % at 64 MiB (quick, half scale) against 4.4 +- 1.5 % at 128 MB: the "
                           "ballooned guest's structures sized from its 128 MiB boot memory (mem_map and "
                           "boot reservations 128 pages, watermarks and lowmem_reserve in totalreserve_pages 231: "
                           "6.1's adjust_managed_page_count recomputes neither) leave it 359 pages (1.4 MiB) "
                           "less than the 64 MiB guest, which costs dbench less than Waldspurger measured "
                           "(static 22.41, ballooned 22.40 MB/s with the boot's memcg flush phase; -1.0 % with every 6.1 memcg "
                           "statistics update counted but the flusher at t = 0, -2.5 % before both; at full "
                           "size, seeds 1/2/3: "
                           "0.2 / 1.7 / 2.1 %, measured before the block plug and the 6.1 rules)",
    ("balloon-static", 1): "overhead -0.6 % at 112 MiB (quick, half scale) against 1.4 +- 1.5 pp at 224 MB: "
                           "static 45.84, ballooned 46.14 MB/s, the busiest client doing 26 / 28 % of the work "
                           "(5 % each if all ran alike): dbench's step behaviour (a client whose hot set the "
                           "cache holds runs at CPU speed), which decides the figure whichever way a small "
                           "change moves the runs. It passed at 1.6 % (static 46.22, ballooned 45.46, busiest "
                           "20 / 25 %) until each clocked guest's memcg flusher started at its boot's phase "
                           "(boot_uptime; counting every 6.1 statistics update alone left this row unchanged)",
    ("balloon-swap", 0): "28.6 % of unconstrained (quick; as much under the guests' 6.1 memcg flush rules as "
                         "under 6.8's since the block plug) against >= 90 %: since kernel.distro defaults to "
                         "\"auto\" the debian-12 guest reserves Debian 12's measured 32.3 MiB kernel image "
                         "(35.4 MiB reserved at boot, against 19.0 MiB), which the balloon cannot take; on the "
                         "96 MiB host (minFree 5.8 MiB) the build's ~70 MiB working set no longer fits beside "
                         "it, so the host swaps in the ballooned run too (at 28.6 %: 6361 pages out, against 2960). The "
                         "source's guest and host sizes were recalled, not read: not corrected",
    ("balloon-swap", 3): "0 stale swap reads with host swap (quick) against > 0: since kernel.init_on_alloc follows "
                         "the distribution (\"auto\"), the debian-12 guest zeroes every page it allocates, as "
                         "Debian 12's 6.1 does (CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y: post_alloc_hook), page-cache "
                         "pages too; that zeroing is a whole-page write into the host-swapped frame, a false read "
                         "(3513, against 3426 with init_on_alloc off), and the disk read that follows finds the "
                         "frame resident. VSwapper's guests (2014) predate init_on_alloc (5.3); with "
                         "init_on_alloc = false the row gives 14",
    ("live-ksm", 6): "time to converge: hvsim's ksmd wakes exactly sleep_millisecs after a batch (0.50 s); the "
                     "real one converged in 0.68-0.74 s on this machine while other jobs ran (load 16)",
}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Each anchor run once at its quick size, on demand."""
    cache: dict[str, list[A.Row]] = {}
    out = tmp_path_factory.mktemp("anchors")

    def get(name: str) -> list[A.Row]:
        if name not in cache:
            rows, _ = A.run_anchors([name], out / name, quick=True, plots=False)
            cache[name] = rows
        return cache[name]

    return get


def _cases():
    counts = {"identical": 2, "production": 3, "salting": 3, "balloon-static": 2,
              "balloon-swap": 5, "esx-states": 9, "compression": 2,
              "live-ksm": 7, "live-pagecache": 4, "live-oom": 4, "large-pages": 3}
    assert set(counts) == set(A.ANCHORS)
    for name, n in counts.items():
        for i in range(n):
            reason = KNOWN_GAPS.get((name, i))
            # a real ksmd's timing moves with the machine's load: that gap may close when
            # the machine is idle, so it is not strict (the row is still computed and shown)
            strict = (name, i) not in LOAD_DEPENDENT
            marks = [pytest.mark.xfail(strict=strict, reason=reason)] if reason else []
            yield pytest.param(name, i, n, marks=marks, id=f"{name}-{i}")


@pytest.mark.parametrize(("name", "index", "count"), list(_cases()))
def test_anchor_check_passes(results, name, index, count):
    rows = results(name)
    if all(r.skipped for r in rows):  # a live check on a machine that cannot run it
        pytest.skip(f"{name}: {rows[0].skipped}")
    assert len(rows) == count
    row = rows[index]
    assert row.anchor == name
    assert row.simulated is not None, row.metric
    assert row.passed, f"{row.metric}: simulated {row.simulated_text}, published {row.published}, " \
                       f"tolerance {row.tolerance} ({row.note})"


# anchor -> why one of its validations cannot tell a model where the mechanism does nothing
# from a working one (a finding about the anchor's setup, kept failing until it is fixed)
NO_EFFECT_GAPS: dict[str, str] = {}


@pytest.mark.parametrize("name", [pytest.param(n, marks=[pytest.mark.xfail(strict=True, reason=NO_EFFECT_GAPS[n])]
                                               if n in NO_EFFECT_GAPS else []) for n in A.ANCHORS])
def test_every_check_says_its_kind_and_every_validation_can_fail(results, name):
    """A validation names its source and the value a model in which the mechanism does
    nothing would give; its band must exclude that value, or the check cannot tell such a
    model from a working one (issue: "a balloon band that contains zero")."""
    for row in results(name):
        assert row.kind in (A.VALIDATION, A.CONSISTENCY), row.metric
        if row.skipped or row.kind == A.CONSISTENCY:
            continue
        assert row.source, f"{row.metric}: a validation names its source"
        assert row.no_effect is not None, f"{row.metric}: a validation states its no-effect value"
        assert not row.in_band(row.no_effect), (
            f"{row.metric}: the band [{row.low}, {row.high}] contains the no-effect value {row.no_effect}")


def test_consistency_checks_are_the_ones_that_compare_the_model_with_itself():
    """Checks of constants against the constants they are computed from, ratios of content
    calibrated to them, and properties true by construction are consistency checks."""
    ctx = A.Context(None, quick=True, plots=False)
    rows = A.anchor_esx_states(ctx)
    assert {r.kind for r in rows} == {A.CONSISTENCY}


# -- the table ---------------------------------------------------------------------------


def test_row_bounds_decide_pass():
    assert A.Row("a", "m", "1", 5.0, "%", "", 4, 6).passed
    assert A.Row("a", "m", "1", 4.0, "%", "", 4, 6).passed  # bounds are inclusive
    assert not A.Row("a", "m", "1", 6.5, "%", "", 4, 6).passed
    assert not A.Row("a", "m", "1", 3.9, "%", "", 4, None).passed
    assert A.Row("a", "m", "1", 1e9, "%", "", 4, None).passed  # unbounded above
    assert not A.Row("a", "m", "1", None, "%", "", None, None).passed  # nothing measured
    assert not A.Row("a", "m", "1", 0.0, "", "", None, 0 - 1).passed
    skipped = A.Row("a", "m", "1", None, "", "", skipped="no KSM")
    assert not skipped.passed and skipped.result == "skipped"
    with pytest.raises(ValueError):
        A.Row("a", "m", "1", 1.0, "", "", kind="other")


def test_simulated_text_units():
    assert A.Row("a", "m", "", 33.456, "%", "").simulated_text == "33.5 %"
    assert A.Row("a", "m", "", 3.456, ":1", "").simulated_text == "3.46:1"
    assert A.Row("a", "m", "", 1923.0, "MB", "").simulated_text == "1923 MB"
    assert A.Row("a", "m", "", None, "MB", "").simulated_text == "-"


def test_format_table_says_pass_and_fail():
    rows = [A.Row("x", "good", "1", 1.0, "", "± 1", 0, 2), A.Row("x", "bad", "1", 5.0, "", "± 1", 0, 2)]
    lines = A.format_table(rows).splitlines()
    assert lines[0] == "| anchor | metric | published | simulated | tolerance | result |"
    assert lines[2] == "| x | good | 1 | 1 | ± 1 | pass |"
    assert lines[3] == "| x | bad | 1 | 5 | ± 1 | FAIL |"


def test_hand_set_balloon_targets_only_named_vms():
    class VM:
        def __init__(self, name):
            self.name = name

    class Host:
        vms = [VM("a"), VM("b")]

    policy = A.HandSetBalloon()
    assert policy.targets(Host()) == [0, 0]  # as a plain config: no ballooning
    policy.targets_pages["b"] = 300
    assert policy.targets(Host()) == [0, 300]


def test_work_probe_rate_over_a_window():
    """Throughput in steady state: work done between two whole seconds, per second."""

    class _Env:
        now = 0.0

    class _WL:
        work_done = 0.0

    class _Run:
        env = _Env()
        workloads = {"build": _WL()}

    seen = []
    probe = A.WorkProbe("build", then=lambda run: seen.append(run.env.now))
    run = _Run()
    for t, done in ((1.0, 1.0), (2.0, 3.0), (3.0, 4.0), (4.0, 8.0)):
        run.env.now = t + 1e-9  # a probe lands on the second, give or take rounding
        run.workloads["build"].work_done = done
        probe(run)
    run.env.now = 4.5  # a run of 4.5 s ends between seconds: not a whole second
    run.workloads["build"].work_done = 9.0
    probe(run)
    assert probe.done == {0: 0.0, 1: 1.0, 2: 3.0, 3: 4.0, 4: 8.0}
    assert probe.rate(2, 4) == 2.5  # (8 - 3) / 2
    assert probe.rate(0, 4) == 2.0
    assert probe.rate(3, 3) == 0.0
    assert len(seen) == 5  # `then` runs after every probe
    assert probe.busiest_share(2, 4) is None  # the workload does not count its clients


def test_work_probe_busiest_client_share_over_a_window():
    """A workload counting its clients apart (dbench's client_work): the busiest client's
    share of the work between two whole seconds, in %."""

    class _Env:
        now = 0.0

    class _WL:
        work_done = 0.0
        client_work = [0.0, 0.0, 0.0]

    class _Run:
        env = _Env()
        workloads = {"bench": _WL()}

    probe = A.WorkProbe("bench")
    run = _Run()
    wl = run.workloads["bench"]
    for t, per in ((1.0, [1.0, 1.0, 1.0]), (2.0, [2.0, 5.0, 2.0]), (3.0, [3.0, 12.0, 3.0])):
        run.env.now = t
        wl.client_work = list(per)
        wl.work_done = sum(per)
        probe(run)
    assert probe.busiest_share(1, 3) == 100.0 * 11 / 15  # client 1: 11 of (2 + 11 + 2)
    assert probe.busiest_share(0, 3) is None  # second 0 was not sampled by a probe
    assert probe.busiest_share(3, 3) is None  # no work in the window


# -- configs -------------------------------------------------------------------------------


def test_anchor_configs_are_ordinary_experiment_configs():
    paths = sorted(A.CONFIG_DIR.glob("*.toml"))
    assert {p.stem for p in paths} == {
        "identical-vms", "production-a", "production-b", "production-c", "salting",
        "balloon-static", "balloon-swap", "compression-database", "compression-webserver", "large-pages"}
    for path in paths:
        cfg = load_config(path)  # what `hvsim run` accepts
        assert cfg.vm, path
        assert tomllib.loads(path.read_text())["experiment"]["name"].startswith("anchor-")


def test_quick_overrides_name_real_keys(tmp_path):
    ctx = A.Context(tmp_path, quick=True)
    cfg = ctx.config("identical-vms", A.IDENTICAL_QUICK, **{"vm[0].count": 3})
    assert cfg.experiment.duration == "8s" and cfg.vm[0].count == 3
    assert cfg.vm[0].memory == "64MiB"  # full-size guests in quick mode too
    assert cfg.output.plots is False
    full = A.Context(tmp_path, quick=False).config("identical-vms", A.IDENTICAL_QUICK)
    assert full.experiment.duration == "20s" and full.vm[0].count == 10


def test_balloon_static_quick_is_the_full_experiment_at_half_scale(tmp_path):
    """Quick: a 128 MiB VM with 20 clients ballooned to 64 and 112 MiB stands for the
    256 MiB VM with 40 clients at 128 and 224 MB: the same memory per client, each
    client's load unchanged."""
    quick = A.Context(tmp_path, quick=True).config("balloon-static", A.BALLOON_QUICK)
    full = A.Context(tmp_path, quick=False).config("balloon-static", A.BALLOON_QUICK)
    assert (size(full.vm[0].memory), full.vm[0].workload.clients) == (256 << 20, 40)
    assert (size(quick.vm[0].memory), quick.vm[0].workload.clients) == (128 << 20, 20)
    assert quick.vm[0].workload.model_dump(exclude={"clients"}) == full.vm[0].workload.model_dump(exclude={"clients"})
    assert [round(s * A.BALLOON_QUICK_SCALE) for s in A.BALLOON_PUBLISHED] == [64, 112]
    assert full.vm[0].workload.profile == "dbench" and full.vm[0].kernel.arch == "i386"


def test_production_quick_scales_memory_and_workload_sizes(tmp_path):
    ctx = A.Context(tmp_path, quick=True)
    cfg = A._scaled(ctx, "production-c", 0.5)
    full = A.Context(tmp_path, quick=False).config("production-c")
    assert [v.memory for v in cfg.vm] == ["166MiB"] * 5
    assert size(cfg.vm[0].workload.buffer_pool) == 64 << 20
    assert size(full.vm[0].workload.buffer_pool) == 128 << 20
    assert cfg.vm[0].workload.ops_rate == full.vm[0].workload.ops_rate  # rates unchanged


# -- output and command ---------------------------------------------------------------------


def test_markdown_json_and_plot(tmp_path):
    rows, ctx = A.run_anchors(["esx-states"], tmp_path, quick=True)
    ctx.plot("esx-states", "demo.png", lambda ax: ax.plot([0, 1], [0, 1]))
    path = A.write_markdown(rows, ctx)
    text = path.read_text()
    assert text.startswith("# hvsim anchors")
    assert f"consistency checks: {len(rows)} of {len(rows)} pass (quick: reduced sizes)." in text
    assert text.index("## Validations") < text.index("## Consistency checks") < text.index("| esx-states |")
    assert "| esx-states | minFree, 128 GB host | 1923 MB | 1923 MB | ± 0.5 MB | pass |" in text
    assert "![esx-states](demo.png)" in text
    assert (tmp_path / "demo.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads((tmp_path / "anchors.json").read_text())
    assert [d["metric"] for d in data["rows"]] == [r.metric for r in rows]


def test_named_anchors_replace_their_rows_and_keep_the_others(tmp_path):
    """`hvsim anchors NAME` into a folder that has results: NAME's rows are replaced, the
    other anchors' rows, notes and figures are kept (issue: they were dropped)."""
    def row(anchor, metric, v):
        return A.Row(anchor, metric, "1", v, "", "± 1", 0, 2, source="s", no_effect=9.0)

    ctx = A.Context(tmp_path, quick=True, plots=False)
    ctx.note("identical", "first run")
    ctx.figures.append(("identical", "identical.png"))
    A.write_markdown([row("identical", "m1", 1.0), row("production", "m2", 1.0)], ctx)
    ctx2 = A.Context(tmp_path, quick=True, plots=False)
    A.write_markdown([row("production", "m2", 5.0)], ctx2)  # production again, now failing
    data = json.loads((tmp_path / "anchors.json").read_text())
    assert [(d["anchor"], d["simulated"], d["passed"]) for d in data["rows"]] == [
        ("identical", 1.0, True), ("production", 5.0, False)]
    text = (tmp_path / "anchors.md").read_text()
    assert "validations: 1 of 2 pass (quick: reduced sizes)." in text
    assert "Kept from the earlier run: identical." in text
    assert "first run" in text and "![identical](identical.png)" in text
    # results of the other size are not mixed in
    A.write_markdown([row("production", "m2", 1.0)], A.Context(tmp_path, quick=False, plots=False))
    data = json.loads((tmp_path / "anchors.json").read_text())
    assert [d["anchor"] for d in data["rows"]] == ["production"]


def test_live_checks_skip_cleanly_where_the_machine_cannot_run_them(tmp_path, monkeypatch):
    """Without KSM, root or mincore, each live check is skipped with its reason, printed,
    and the command exits 0."""
    from experiments import livecheck as L

    monkeypatch.setattr(L, "unavailable", lambda check: f"no {check} here")
    res = CliRunner().invoke(A.anchors, ["live-ksm", "live-pagecache", "live-oom", "-o", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "skipped: live-ksm (7 checks): no ksm here" in res.output
    assert "skipped: live-oom (2 checks): no oom here" in res.output
    assert "validations: 0 of 0 pass, 13 skipped" in res.output


def test_command_runs_named_anchor(tmp_path):
    res = CliRunner().invoke(A.anchors, ["esx-states", "-o", str(tmp_path), "--quick"])
    assert res.exit_code == 0, res.output
    assert "Consistency checks:" in res.output and "Validations:" not in res.output
    assert "| esx-states | balloon cap, % of VM memory | 65 % | 65.0 % | ± 0.1 pp | pass |" in res.output
    assert (tmp_path / "anchors.md").exists()


def test_command_rejects_unknown_anchor(tmp_path):
    res = CliRunner().invoke(A.anchors, ["nope", "-o", str(tmp_path)])
    assert res.exit_code == 2
    assert "unknown anchor 'nope'" in res.output


def test_command_lists_anchors():
    res = CliRunner().invoke(A.anchors, ["--list"])
    assert res.exit_code == 0
    assert res.output.split() == list(A.ANCHORS)


# -- sensitivity ---------------------------------------------------------------------------


def test_sensitivity_runs_each_input_alone_at_each_end():
    runs = A._sensitivity_runs(["balloon-static"])
    assert runs == [("balloon-static", "nominal", {}),
                    ("balloon-static", "vm[0].kernel.swap_latency=5ms", {"vm[0].kernel.swap_latency": "5ms"}),
                    ("balloon-static", "vm[0].kernel.swap_latency=12ms", {"vm[0].kernel.swap_latency": "12ms"}),
                    ("balloon-static", "vm[0].workload.op_cpu=50us", {"vm[0].workload.op_cpu": "50us"}),
                    ("balloon-static", "vm[0].workload.op_cpu=200us", {"vm[0].workload.op_cpu": "200us"})]
    for name, inputs in A.SENSITIVITY.items():
        assert name in A.ANCHORS
        for key, lo, hi, why in inputs:
            assert lo != hi and why
            A.Context(None, quick=True, overrides={key: lo}).config(  # a real key of the config
                {"identical": "identical-vms", "production": "production-a"}.get(name, name))


def test_sensitivity_band_verdicts_by_hand():
    """Band = min..max of the simulated values over the nominal run and the ends; pass =
    nominal within tolerance and the published figure inside the band."""
    def row(v, pub=(60, 60), kind=A.VALIDATION):
        return A.asdict(A.Row("x", "m", "60 %", v, "%", "± 10", 50, 70, kind=kind, source="s",
                              no_effect=0.0, pub=pub))

    runs = [("x", "nominal", {}), ("x", "k=1", {"k": 1}), ("x", "k=2", {"k": 2})]
    # nominal 55 within tolerance, band 52..63 holds 60: pass
    t = A.sensitivity_table(["x"], runs, {("x", "nominal"): [row(55)], ("x", "k=1"): [row(52)],
                                          ("x", "k=2"): [row(63)]})
    assert [(r["band"], r["inside"], r["passed"]) for r in t] == [([52, 63], True, True)]
    # nominal within tolerance but the band 52..58 misses 60: FAIL
    t = A.sensitivity_table(["x"], runs, {("x", "nominal"): [row(55)], ("x", "k=1"): [row(52)],
                                          ("x", "k=2"): [row(58)]})
    assert [(r["band"], r["inside"], r["passed"]) for r in t] == [([52, 58], False, False)]
    # band holds 60 but the nominal 45 is out of tolerance: FAIL; a run that measured
    # nothing is left out of the band; consistency rows are not listed
    t = A.sensitivity_table(["x"], runs, {("x", "nominal"): [row(45), row(1, kind=A.CONSISTENCY)],
                                          ("x", "k=1"): [row(None)], ("x", "k=2"): [row(66)]})
    assert [(r["band"], r["inside"], r["passed"]) for r in t] == [([45, 66], True, False)]
    # a published interval (1.4-4.4 %) is inside when it overlaps the band
    t = A.sensitivity_table(["x"], runs, {("x", "nominal"): [row(55, pub=(1.4, 4.4))],
                                          ("x", "k=1"): [row(4.0, pub=(1.4, 4.4))], ("x", "k=2"): [row(63)]})
    assert t[0]["inside"] is True


@pytest.mark.slow
@pytest.mark.parametrize("where", [["-j", "2"], ["--scheduler", "local:2"]], ids=["pool", "dask-local"])
def test_sensitivity_command_on_the_pool_and_on_dask(tmp_path, where):
    """`hvsim anchors --sensitivity --quick` on a local pool and a Dask LocalCluster: the
    same table (the runs are deterministic), sensitivity.md and .json and a plot. (On
    salting, the cheapest anchor with an uncertain input: the machinery is under test.)"""
    key = "vm[0].workload.page_cache"
    args = ["salting", "--sensitivity", "--quick", "--input", key, "-o", str(tmp_path)] + where
    res = CliRunner().invoke(A.anchors, args)
    assert res.exit_code in (0, 1), res.output  # 1: a validation fails (a finding)
    data = json.loads((tmp_path / "sensitivity.json").read_text())
    assert [r["metric"] for r in data] == ["non-zero (intra-VM) sharing, per-vm"]
    for r in data:
        assert [lbl for lbl, _ in r["runs"]] == ["nominal", f"{key}=32MiB", f"{key}=55MiB"]
        values = [v for _, v in r["runs"]]
        assert r["band"] == [min(values), max(values)]
        assert r["nominal"] == values[0]
    assert (tmp_path / "sensitivity-salting.png").read_bytes()[:4] == b"\x89PNG"
    assert "| salting | non-zero (intra-VM) sharing, per-vm |" in res.output


def test_sensitivity_rejects_what_it_cannot_vary(tmp_path):
    res = CliRunner().invoke(A.anchors, ["esx-states", "--sensitivity", "-o", str(tmp_path)])
    assert res.exit_code == 2 and "has no uncertain inputs" in res.output
    res = CliRunner().invoke(A.anchors, ["balloon-static", "--sensitivity", "--input", "host.memory",
                                         "-o", str(tmp_path)])
    assert res.exit_code == 2 and "--input 'host.memory' is not an uncertain input" in res.output
