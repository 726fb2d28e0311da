"""whatif: figures against a direct count of identical and zero pages (collections.Counter
over the pages' bytes), KSM's converged counters against hvsim's simulated ksmd, and the
formulas of mm/ksm.c (general_profit_show: (pages_sharing + ksm_zero_pages) * PAGE_SIZE -
ksm_rmap_items * sizeof(struct ksm_rmap_item), 64 bytes on x86-64)."""

import json
import math
import re
from collections import Counter

import zstandard
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.scan_image import analyse, count, scan_image
from experiments.whatif import ksm_group, whatif, whatif_files
from guestkernel.physmem import ZERO_PAGE

from ..hypervisor.helpers import half_compressible_page, page, random_page

P = 4096


def write(tmp_path, name, pages):
    p = tmp_path / name
    p.write_bytes(b"".join(pages))
    return str(p)


def direct(pages_per_unit, within=False):
    """Pages saved by merging identical pages (n - 1 per content) and the zero pages among
    them, counted from the bytes."""
    groups = [Counter(u) for u in pages_per_unit] if within else [Counter(p for u in pages_per_unit for p in u)]
    saved = sum(n - 1 for c in groups for n in c.values())
    zero = sum(c[ZERO_PAGE] - 1 for c in groups if c[ZERO_PAGE])
    return saved, zero


def test_ksm_group_is_ksms_stable_dup_rule():
    # n pages of one content at max_page_sharing m: floor(n/m) full dups, one more if
    # n mod m >= 2, a lone leftover unshared (stable_node_dup / chain rules of mm/ksm.c)
    assert ksm_group(1, 256) == (0, 0, 1)
    assert ksm_group(2, 256) == (1, 1, 0)
    assert ksm_group(11, 3) == (4, 7, 0)
    assert ksm_group(11, 5) == (2, 8, 1)
    assert ksm_group(10, 5) == (2, 8, 0)


def test_whatif_figures_match_a_direct_count(tmp_path):
    a_pages = [page(1)] * 5 + [page(2)] * 2 + [page(3)] + [ZERO_PAGE] * 4 + [half_compressible_page(1)]
    b_pages = [page(1)] * 3 + [page(4)] * 2 + [page(3)] + [ZERO_PAGE] * 2 + [random_page(1, "r")]
    a = write(tmp_path, "a.raw", a_pages)
    b = write(tmp_path, "b.raw", b_pages)
    r = whatif_files([a, b])["rows"][0]
    saved, zero = direct([a_pages, b_pages])
    within, _ = direct([a_pages, b_pages], within=True)
    assert r["candidates"] == len(a_pages) + len(b_pages) == 22
    # page(1) 8 times, page(2..4) twice, 6 zero pages: 7 + 1 + 1 + 1 + 5
    assert r["saved_sharing"] == saved == 15
    assert r["saved_zero"] == zero == 5
    # within each image, zero pages apart: a 4 + 1, b 2 + 1; the rest across (page 1, 3)
    assert r["saved_within"] == within - (3 + 1) == 8
    assert r["saved_across"] == saved - zero - r["saved_within"] == 2
    assert r["zero_pages"] == 6
    assert r["pages_sharing"] == 15 and r["ksm_zero_pages"] == 0
    assert r["general_profit"] == 15 * P - 22 * 64
    assert r["headroom_pages"] == 15
    # frames left: one per distinct content; zstd of each against the 2 KiB cut
    distinct = set(a_pages + b_pages)
    assert r["frames_left"] == len(distinct) == 7
    sizes = {d: len(zstandard.ZstdCompressor(level=3).compress(d)) for d in distinct}
    assert r["compressible_pages"] == sum(s <= 2048 for s in sizes.values())
    assert r["quarter_pages"] == sum(s <= 1024 for s in sizes.values())
    assert r["zstd_bytes"] == sum(sizes.values())
    half = r["compressible_pages"] - r["quarter_pages"]
    assert r["saved_compression"] == half * 0.5 + r["quarter_pages"] * 0.75
    assert r["saved_total"] == 15 + r["saved_compression"]
    assert sum(r["zstd_hist"]) == 7


def test_salting_and_use_zero_pages(tmp_path):
    a_pages = [page(1)] * 3 + [ZERO_PAGE] * 4
    b_pages = [page(1)] * 2 + [ZERO_PAGE] * 2
    paths = [write(tmp_path, "a.raw", a_pages), write(tmp_path, "b.raw", b_pages)]
    s = whatif_files(paths, salting="per-vm")["rows"][0]
    saved, zero = direct([a_pages, b_pages], within=True)
    assert (s["saved_sharing"], s["saved_zero"], s["saved_across"]) == (saved, zero, 0) == (7, 4, 0)
    z = whatif_files(paths, use_zero_pages=True)["rows"][0]
    # every zero page maps the zero page (ksm_zero_pages), none in a stable dup
    assert (z["ksm_zero_pages"], z["saved_zero"], z["pages_sharing"]) == (6, 6, 4)
    # the zero-mapped pages' rmap items are freed on the next pass (no longer PageAnon)
    assert z["general_profit"] == (4 + 6) * P - (11 - 6) * 64


def test_pace_cost_and_convergence():
    # 1000 candidates at 100 pages per 20 ms batch, 1.5 us of CPU a page: 10 batches of
    # 150 us + 20 ms per full scan; merging needs two visits (cmp_and_merge_page stores the
    # checksum on the first)
    from experiments.whatif import Unit, analyse_units

    u = Unit("x")
    u.digests = list(range(1000))
    u.pages = 1000
    r = analyse_units([u], sample=0, pages_to_scan=100, sleep=0.02)  # no bytes: none compressed
    assert math.isclose(r["full_scan_s"], 10 * (100 * 1.5e-6 + 0.02))
    assert math.isclose(r["converge_s"], 2 * r["full_scan_s"])
    assert math.isclose(r["ksmd_cpu_pct"], 100 * 150e-6 / (150e-6 + 0.02), rel_tol=1e-4)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    images=st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=30), min_size=1, max_size=3),
    mps=st.integers(2, 6),
    zero=st.booleans(),
    salting=st.sampled_from(["none", "per-vm"]),
)
def test_counted_counters_equal_the_simulated_ksmd(tmp_path, images, mps, zero, salting):
    # the direct count (fast path) against hvsim's KSM scanner run to convergence (its
    # per-page twin): content 0 is the zero page. smart_scan off: with it, a lone page
    # skipped in the last pass is out of the unstable tree (pages_unshared) at that moment
    paths = [write(tmp_path, f"i{i}.raw", [ZERO_PAGE if c == 0 else page(c) for c in im])
             for i, im in enumerate(images)]
    sim = analyse(paths, max_page_sharing=mps, use_zero_pages=zero, salting=salting, smart_scan=False)
    fast = count(paths, max_page_sharing=mps, use_zero_pages=zero, salting=salting)
    assert sim["settled"]
    for key in ("pages_shared", "pages_sharing", "pages_unshared", "ksm_zero_pages",
                "general_profit", "saved_pages"):
        assert fast[key] == sim[key], key


def test_scan_image_summary_line_with_units(tmp_path):
    a = write(tmp_path, "a.raw", [page(1)] * 4 + [half_compressible_page(2)])
    res = CliRunner().invoke(scan_image, [a])
    assert res.exit_code == 0, res.output
    assert re.search(r"^pages_sharing +3 pages  0.0 MiB$", res.output, re.M)
    assert re.search(r"^general_profit +11,968 bytes  0.0 MiB$", res.output, re.M)  # 3*4096-5*64
    assert "general_profit" in res.output and "bytes" in res.output
    last = res.output.strip().splitlines()[-1]
    # 3 of 5 pages shared; left: page(1) in a quarter slot (0.75), the half page in a half
    # slot (0.5): 1.25 of 5 pages
    assert last == ("sharing saves 0.0 MiB (60.0 %), compression of what is left 0.0 MiB "
                    "(25.0 %), total 0.0 MiB of 0.0 MiB candidate memory (85.0 %)")
    assert "cannot tell resident pages" in res.output


def test_whatif_cli_json_plot_and_bad_input(tmp_path):
    a = write(tmp_path, "a.raw", [page(1)] * 4)
    png = tmp_path / "w.png"
    runner = CliRunner()
    res = runner.invoke(whatif, [a, "--json", "--plot", str(png), "--pages-to-scan", "1000", "--sleep", "10ms"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["rows"][0]["pages_sharing"] == 3 and data["rows"][0]["pages_to_scan"] == 1000
    assert png.stat().st_size > 1000
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"x" * 100)
    out = tmp_path / "never.png"
    for args, message in (
        ([str(bad), "--plot", str(out)], "not a multiple of the 4096-byte page"),
        ([str(tmp_path / "missing")], "no such image file"),
        ([a, "--sleep", "soon"], "--sleep"),
        ([a, "--plot", str(tmp_path / "no" / "w.png")], "no such directory"),
    ):
        res = runner.invoke(whatif, args)
        assert res.exit_code == 2, res.output
        assert message in res.output and res.output.count("\n") == 1
        assert "Traceback" not in res.output
    assert not out.exists()


def test_compression_sample_estimates_single_frames_and_counts_heavy_ones_exactly(tmp_path):
    # 400 distinct frames, one in four compressible (a page(i): 8 bytes repeated), the rest
    # random; 300 zero pages (two dups at max_page_sharing 256 -> 2 frames, counted exactly)
    pages = [page(i) if i % 4 == 0 else random_page(i, "s") for i in range(400)] + [ZERO_PAGE] * 300
    path = write(tmp_path, "s.raw", pages)
    exact = whatif_files([path], sample=None)["rows"][0]
    est = whatif_files([path], sample=100)["rows"][0]
    assert exact["compression_exact"] and not est["compression_exact"]
    assert exact["frames_left"] == est["frames_left"] == 400 + 2
    assert exact["compressible_pages"] == 100 + 2  # page(i) and the two zero dups
    assert abs(est["compressible_pages"] - exact["compressible_pages"]) <= est["compressible_pages_ci95"] + 1
    assert 50 <= est["compressed_distinct"] <= 200
    assert est == whatif_files([path], sample=100)["rows"][0]  # deterministic
