import json

from click.testing import CliRunner

from experiments.scan_image import analyse, scan_image
from guestkernel.physmem import ZERO_PAGE

from .helpers import half_compressible_page, page, random_page


def write(tmp_path, name, pages):
    p = tmp_path / name
    p.write_bytes(b"".join(pages))
    return str(p)


def test_two_identical_images_share_every_page_and_settle(tmp_path):
    pages = [page(i) for i in range(20)] + [ZERO_PAGE] * 5
    a = write(tmp_path, "a.raw", pages)
    b = write(tmp_path, "b.raw", pages)
    r = analyse([a, b])
    # 20 distinct pages twice: 20 stable pages, 20 sharing; 10 zero pages: one dup, 9 sharing
    assert (r["pages_shared"], r["pages_sharing"]) == (21, 29)
    assert r["pages_unshared"] == 0 and r["ksm_zero_pages"] == 0
    assert r["settled"] and r["full_scans"] == 5  # merges in pass 2, then 3 quiet passes
    assert r["saved_pages"] == 29 and r["pages"] == 50 and r["distinct_pages"] == 21
    z = analyse([a, b], use_zero_pages=True)
    assert (z["pages_shared"], z["pages_sharing"], z["ksm_zero_pages"]) == (20, 20, 10)
    s = analyse([a, b], salting="per-vm")
    assert (s["pages_shared"], s["pages_sharing"]) == (2, 8)  # only the zero pages, per image


def test_max_page_sharing_rule_on_an_image(tmp_path):
    img = write(tmp_path, "z.raw", [page(7)] * 11)
    r = analyse([img], max_page_sharing=3, smart_scan=False)
    # 11 = 3 * 3 + 2: three full dups and one of two
    assert (r["pages_shared"], r["pages_sharing"], r["pages_unshared"]) == (4, 7, 0)
    r = analyse([img], max_page_sharing=5, smart_scan=False)
    # 11 = 2 * 5 + 1: two dups, a lone page left unmerged
    assert (r["pages_shared"], r["pages_sharing"], r["pages_unshared"]) == (2, 8, 1)


def test_compression_potential(tmp_path):
    pages = [page(1), half_compressible_page(2), random_page(3, "x"), random_page(3, "x")]
    r = analyse([write(tmp_path, "c.raw", pages)])
    assert r["compressible_pages"] == 2
    assert r["compressible_zstd_bytes"] < r["zstd_bytes"]
    assert r["zstd_bytes"] - r["compressible_zstd_bytes"] > 2 * 4096  # the random pages


def test_cli_prints_counters_and_json(tmp_path):
    a = write(tmp_path, "a.raw", [page(1)] * 4)
    runner = CliRunner()
    res = runner.invoke(scan_image, [a])
    assert res.exit_code == 0
    assert "pages_sharing" in res.output and "compressible_pages" in res.output
    res = runner.invoke(scan_image, [a, "--json", "--max-page-sharing", "2"])
    data = json.loads(res.output)
    assert data["pages_shared"] == 2 and data["pages_sharing"] == 2


def test_cli_bad_files_get_one_line_and_status_2(tmp_path):
    runner = CliRunner()
    ragged = tmp_path / "r.raw"
    ragged.write_bytes(b"x" * 5000)
    for args, message in (
        ([str(tmp_path / "missing.raw")], "no such image file"),
        ([str(ragged)], "not a multiple of the 4096-byte page"),
        ([write(tmp_path, "ok.raw", [page(1)]), "--max-page-sharing", "1"], "at least 2"),
    ):
        res = runner.invoke(scan_image, args)
        assert res.exit_code == 2, res.output
        assert message in res.output
        assert res.output.count("\n") == 1 and "Traceback" not in res.output
