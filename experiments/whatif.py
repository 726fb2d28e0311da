"""`hvsim whatif FILE...`: would KSM (and compression) pay off on these hosts?

From real memory (raw dumps, ELF core files, `hvsim capture` files; see
hypervisor/memimage.py) this module counts, at C speed where it can:

- candidates: pages KSM would scan. A capture knows which pages were resident
  (/proc/PID/pagemap): never-resident, swapped and page-cache pages are reported apart and
  are not candidates, and so are anonymous pages outside the MADV_MERGEABLE areas of a
  process that has some (QEMU marks guest RAM mergeable; KSM scans nothing else); a raw
  or ELF dump cannot tell and says so.
- sharing, as KSM converges on a static picture (mm/ksm.c, see hypervisor/sharing.py's
  overview): n candidate pages of one content give floor(n / m) full stable dups of
  m = max_page_sharing mappings, plus one dup if n mod m >= 2, and a lone leftover page
  stays unshared; pages_sharing = n - dups - leftover. With use_zero_pages every zero page
  maps the zero page (ksm_zero_pages) instead. Salting "per-vm" groups by (unit, content),
  "none" by content: the saving within units is the per-vm figure, across units the
  difference. A unit is one raw/ELF file or one captured process.
- general_profit = (pages_sharing + ksm_zero_pages) * 4096 - rmap_items * 64
  (general_profit_show in mm/ksm.c; an rmap item per candidate page, except those mapped
  to the zero page, whose items the next pass frees).
- compression of what is left: every frame still needed after sharing, compressed with
  zstd (each distinct content once): kept if <= 2048 bytes (a half-page slot; <= 1024 a
  quarter) as ESXi's compression cache keeps it (hypervisor/compression.py). Contents
  left in several frames are compressed exactly; above `sample` contents left in one
  frame, those are estimated from the ones whose digest falls in a uniform, deterministic
  sample (digest mod 2^32 below a bound), with a 95 % interval; `--exact` compresses all.
- time to converge at pages_to_scan N, sleep T: a page merges on its second visit (the
  first stores its checksum: cmp_and_merge_page), so two full scans of the candidates,
  each ceil(candidates / N) batches of N * cpu_per_page + T; ksmd's CPU share is
  N * cpu_per_page / (N * cpu_per_page + T), cpu_per_page = hash_cost + compare_cost
  (one checksum and one full compare per visit, hvsim's defaults 1 us + 0.5 us).
- headroom: the frames needed if every shared mapping were written at once (each write
  breaks copy-on-write): pages_sharing + ksm_zero_pages.

Content identity is XXH3-128 of the 4 KiB (a collision has probability ~2^-128 per pair:
KSM's memcmp would find what this finds).

Register with `main.add_command(whatif)` in experiments/cli.py.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from itertools import chain

import click
import xxhash

from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE

RMAP_ITEM_SIZE = 64  # sizeof(struct ksm_rmap_item) on x86-64, bytes
DEFAULT_SAMPLE = 32_768  # distinct contents compressed exactly before sampling
HIST_BIN = 256  # bytes per bin of the zstd size distribution
_digest = xxhash.xxh3_128_intdigest
ZERO_DIGEST = _digest(ZERO_PAGE)
MIB = 1 << 20


def ksm_group(n: int, m: int) -> tuple[int, int, int]:
    """(pages_shared, pages_sharing, pages_unshared) of n pages of one content at
    max_page_sharing m, once KSM has converged (see the module docstring)."""
    full, rem = divmod(n, m)
    shared = full + (rem >= 2)
    unshared = 1 if rem == 1 else 0
    return shared, n - shared - unshared, unshared


def _ksm(counts, m: int) -> tuple[int, int, int]:
    """ksm_group summed over groups; `counts` maps a group size n to how many groups of
    that size there are (a Counter of the groups' sizes)."""
    shared = sharing = unshared = 0
    for n, k in counts.items():
        a, b, c = ksm_group(n, m)
        shared += a * k
        sharing += b * k
        unshared += c * k
    return shared, sharing, unshared


def _left(n: int, m: int) -> int:
    """Frames n pages of one content still need once merged: dups plus a lone page."""
    a, _b, c = ksm_group(n, m)
    return a + c


class Unit:
    """One unit of sharing (a file, or a captured process): its candidate pages."""

    __slots__ = ("name", "pages", "kinds", "digests", "offsets", "img", "zero")

    def __init__(self, name: str, img=None) -> None:
        self.name = name
        self.img = img  # the MemImage holding the pages' bytes
        self.pages = 0
        self.kinds = [0] * 7  # pages per memimage kind
        self.digests: list[int] = []  # candidate pages, address order
        self.offsets: list[int] = []  # their byte offsets in img's file
        self.zero = 0  # candidate pages that are all zero


def read_units(img, snapshot: int, label: str) -> list:
    """Units of one snapshot of a MemImage: one per part (a process of a capture)."""
    from hypervisor.memimage import CANDIDATE

    buf = img.buf
    units = []
    parts = img.snapshots[snapshot].parts
    for part in parts:
        u = Unit(label if len(parts) == 1 else f"{label}:{part.name}", img)
        for kind, n, off in part.runs:
            u.pages += n
            u.kinds[kind] += n
            if kind != CANDIDATE:
                continue
            offs = range(off, off + n * PAGE_SIZE, PAGE_SIZE)
            # NOTE: inlined per-page loop for speed: one digest per page, nothing else
            u.digests += [_digest(buf[o : o + PAGE_SIZE]) for o in offs]
            u.offsets += offs
        u.zero = u.digests.count(ZERO_DIGEST)
        units.append(u)
    return units


def analyse_units(
    units: list,
    max_page_sharing: int = 256,
    use_zero_pages: bool = False,
    salting: str = "none",
    zstd_level: int = 3,
    threshold: int = 2048,
    quarter: int = 1024,
    sample: int | None = DEFAULT_SAMPLE,
    pages_to_scan: int = 100,
    sleep: float = 0.020,
    hash_cost: float = 1e-6,
    compare_cost: float = 0.5e-6,
) -> dict:
    """The what-if figures of a set of units (see the module docstring); a flat record."""
    import zstandard

    m = max_page_sharing
    candidates = sum(len(u.digests) for u in units)
    zero = sum(u.zero for u in units)
    # content -> pages, within each unit and over all units (Counter counts at C speed)
    per_unit = [Counter(u.digests) for u in units]
    across = per_unit[0] if len(units) == 1 else Counter(chain.from_iterable(u.digests for u in units))
    sizes_a = Counter(across.values())
    sizes_w = Counter()
    for c in per_unit:
        sizes_w.update(c.values())
    # the zero page's groups taken out: it is counted apart
    if zero:
        sizes_a[across[ZERO_DIGEST]] -= 1
        for u in units:
            if u.zero:
                sizes_w[u.zero] -= 1
    sh_a = _ksm(sizes_a, m)
    sh_w = _ksm(sizes_w, m)
    # zero pages: the host zero page (use_zero_pages), else merged like any content
    if use_zero_pages:
        z_shared, z_sharing, z_unshared, ksm_zero = 0, 0, 0, zero
    elif salting == "none":
        (z_shared, z_sharing, z_unshared), ksm_zero = _ksm(Counter([zero] if zero else []), m), 0
    else:
        (z_shared, z_sharing, z_unshared), ksm_zero = _ksm(Counter(u.zero for u in units if u.zero), m), 0
    main = sh_a if salting == "none" else sh_w
    pages_shared = main[0] + z_shared
    pages_sharing = main[1] + z_sharing
    pages_unshared = main[2] + z_unshared
    saved_zero = z_sharing + ksm_zero
    saved_within = sh_w[1]
    saved_across = sh_a[1] - sh_w[1] if salting == "none" else 0
    saved_sharing = pages_sharing + ksm_zero
    # a page mapped to the zero page is no longer anonymous: the next pass frees its rmap
    # item (get_next_rmap_item frees the items of addresses it no longer visits)
    rmap_items = candidates - ksm_zero
    general_profit = saved_sharing * PAGE_SIZE - rmap_items * RMAP_ITEM_SIZE

    # frames left after sharing, per content: one for a group below max_page_sharing,
    # more above it or when salting keeps units apart
    left: dict = {}
    if salting == "none":
        for d, n in across.items():
            if n > m and d != ZERO_DIGEST:
                left[d] = _left(n, m)
    else:  # a frame (or more) per unit holding the content
        for c in per_unit:
            for d, n in c.items():
                if (n > m or across[d] > n) and d != ZERO_DIGEST:
                    left[d] = left.get(d, 0) + _left(n, m)
    zero_left = zero - saved_zero
    if zero_left:
        left[ZERO_DIGEST] = zero_left
    heavy = [d for d, w in left.items() if w > 1]
    distinct = len(across)
    single = distinct - len(heavy) - (1 if zero and not zero_left else 0)
    frames_left = single + sum(left[d] for d in heavy)
    assert frames_left == candidates - saved_sharing, (frames_left, candidates, saved_sharing)
    # compression of what is left, each distinct content once (or a digest sample)
    compress = zstandard.ZstdCompressor(level=zstd_level).compress
    # contents left in more than one frame (the zero page, contents over max_page_sharing
    # or salted apart) are compressed exactly; single frames beyond `sample` are sampled
    skip = set(heavy)
    if zero and not zero_left:
        skip.add(ZERO_DIGEST)
    if sample is None or single <= sample:
        chosen = heavy + [d for d in across if d not in skip]
        bound = 1 << 32
    else:
        bound = (sample << 32) // single  # digest mod 2^32 < bound: ~sample contents
        chosen = heavy + [d for d in across if d & 0xFFFFFFFF < bound and d not in skip]
    wanted = set(chosen)
    where = {}  # digest -> (image, offset) of one page with that content, chosen ones only
    for u in units:
        img = u.img
        for d, o in [(d, o) for d, o in zip(u.digests, u.offsets) if d in wanted]:
            where[d] = (img, o)
    hist = [0.0] * (PAGE_SIZE // HIST_BIN + 2)
    sample_scale = single / (len(chosen) - len(heavy)) if len(chosen) - len(heavy) else 0.0
    if bound == 1 << 32:
        sample_scale = 1.0
    kept = quarter_kept = zstd_bytes = 0.0
    n_kept_sampled = 0
    for d in chosen:
        img, off = where[d]
        size = len(compress(img.buf[off : off + PAGE_SIZE]))
        w = left.get(d, 1)
        if w == 1:
            w = sample_scale
            n_kept_sampled += size <= threshold
        zstd_bytes += size * w
        hist[min(size // HIST_BIN, len(hist) - 1)] += w
        if size <= threshold:
            kept += w
            if size <= quarter:
                quarter_kept += w
    exact = bound == 1 << 32
    kept_est = kept
    quarter_est = quarter_kept
    # a half-page slot saves half a frame, a quarter-page slot three quarters
    saved_compression = (kept_est - quarter_est) * 0.5 + quarter_est * 0.75
    ci = 0.0
    n_sampled = len(chosen) - len(heavy)
    if not exact and n_sampled:
        p = n_kept_sampled / n_sampled
        ci = 1.96 * math.sqrt(p * (1 - p) / n_sampled) * single
    # ksmd's pace
    cpu_per_page = hash_cost + compare_cost
    batch_cpu = pages_to_scan * cpu_per_page
    batches = -(-candidates // pages_to_scan)
    pass_time = batches * (batch_cpu + sleep)
    total_pages = sum(u.pages for u in units)
    saved_total = saved_sharing + saved_compression
    return {
        "units": [
            {"name": u.name, "pages": u.pages, "candidates": len(u.digests), "zero_pages": u.zero,
             "not_resident": u.kinds[0], "swapped": u.kinds[2], "file_pages": u.kinds[3],
             "not_in_dump": u.kinds[4], "unreadable": u.kinds[5], "not_mergeable": u.kinds[6]}
            for u in units
        ],
        "pages": total_pages,
        "candidates": candidates,
        "not_resident": sum(u.kinds[0] for u in units),
        "swapped": sum(u.kinds[2] for u in units),
        "file_pages": sum(u.kinds[3] for u in units),
        "not_in_dump": sum(u.kinds[4] for u in units),
        "unreadable": sum(u.kinds[5] for u in units),
        "not_mergeable": sum(u.kinds[6] for u in units),
        "zero_pages": zero,
        "distinct_contents": len(across),
        "salting": salting,
        "max_page_sharing": m,
        "use_zero_pages": use_zero_pages,
        "pages_shared": pages_shared,
        "pages_sharing": pages_sharing,
        "pages_unshared": pages_unshared,
        "ksm_zero_pages": ksm_zero,
        "rmap_items": rmap_items,
        "general_profit": general_profit,
        "saved_sharing": saved_sharing,
        "saved_zero": saved_zero,
        "saved_within": saved_within,
        "saved_across": saved_across,
        "frames_left": frames_left,
        "zstd_level": zstd_level,
        "compress_threshold": threshold,
        "compress_quarter": quarter,
        "compression_exact": exact,
        "compressed_distinct": len(chosen),
        "distinct_left": single + len(heavy),
        "compressible_pages": kept_est,
        "compressible_pages_ci95": round(ci, 1),
        "quarter_pages": quarter_est,
        "saved_compression": saved_compression,
        "zstd_bytes": round(zstd_bytes),
        "zstd_hist_bin": HIST_BIN,
        "zstd_hist": hist,
        "saved_total": saved_total,
        "saved_pct": round(100.0 * saved_total / candidates, 2) if candidates else 0.0,
        "pages_to_scan": pages_to_scan,
        "sleep_s": sleep,
        "cpu_per_page_s": cpu_per_page,
        "full_scan_s": round(pass_time, 6),
        "converge_s": round(2 * pass_time, 6),
        "ksmd_cpu_pct": round(100.0 * batch_cpu / (batch_cpu + sleep), 4) if batch_cpu + sleep else 0.0,
        "headroom_pages": saved_sharing,
    }


def open_images(paths: list[str]) -> list:
    """Every file opened (and checked) before any work; ImageError on the first bad one."""
    from hypervisor.memimage import open_image

    return [open_image(p) for p in paths]


def by_address(layout, snapshot: int, units: list) -> dict:
    """{frame: digest} of a snapshot's candidate pages, frames numbered by address over
    the series (workloads.snapshots.SeriesLayout): read_units lists candidates in the
    same order as the layout's frames."""
    from hypervisor.memimage import CANDIDATE

    frames = [pfn for pfn, kind, _ in layout.frames(snapshot) if kind == CANDIDATE]
    digests = [d for u in units for d in u.digests]
    return dict(zip(frames, digests, strict=True))


def changed_pages(prev: dict, cur: dict) -> int:
    """Candidate pages (by address) written since the previous snapshot: a different
    content, or a candidate now that was not one before."""
    get = prev.get
    return sum(1 for pfn, d in cur.items() if get(pfn) != d)


def whatif_files(paths: list[str], **kw) -> dict:
    """One file with several snapshots: a row per snapshot (series); otherwise the last
    snapshot of every file together. Returns {"files", "notes", "rows": [record...]}."""
    images = open_images(paths)
    notes = sorted({f"{img.path}: {img.note}" for img in images if img.note})
    rows = []
    if len(images) == 1 and len(images[0].snapshots) > 1:
        from .workloads.snapshots import SeriesLayout

        img = images[0]
        layout = SeriesLayout(img)
        prev = None
        for i, snap in enumerate(img.snapshots):
            units = read_units(img, i, os.path.basename(img.path))
            row = analyse_units(units, **kw)
            row["snapshot"] = i
            row["time_s"] = snap.time
            cur = by_address(layout, i, units)
            row["changed_since_previous"] = changed_pages(prev, cur) if prev is not None else None
            rows.append(row)
            prev = cur
    else:
        units = []
        for img in images:
            units += read_units(img, len(img.snapshots) - 1, os.path.basename(img.path))
        rows.append(analyse_units(units, **kw))
    return {"files": [{"path": img.path, "format": img.format, "snapshots": len(img.snapshots)}
                      for img in images], "notes": notes, "rows": rows}


def mib(pages: float) -> str:
    return f"{pages * PAGE_SIZE / MIB:,.1f} MiB"


def summary_line(r: dict) -> str:
    """Sharing, then compression of what is left, then the total (one line)."""
    c = r["candidates"] or 1
    return (f"sharing saves {mib(r['saved_sharing'])} ({100 * r['saved_sharing'] / c:.1f} %), "
            f"compression of what is left {mib(r['saved_compression'])} "
            f"({100 * r['saved_compression'] / c:.1f} %), total {mib(r['saved_total'])} of "
            f"{mib(r['candidates'])} candidate memory ({r['saved_pct']:.1f} %)")


def format_table(result: dict) -> str:
    out = []
    for f in result["files"]:
        out.append(f"file  {f['path']}  ({f['format']}, {f['snapshots']} snapshot(s))")
    for note in result["notes"]:
        out.append(f"note  {note}")
    for r in result["rows"]:
        if "snapshot" in r:
            ch = r["changed_since_previous"]
            out.append(f"\nsnapshot {r['snapshot']} at {r['time_s']:g} s"
                       + (f": {ch:,} candidate pages changed since the previous one" if ch is not None else ""))
        out.append("")
        out.append(f"{'unit':<28} {'pages':>10} {'candidates':>11} {'zero':>9} {'not resident':>13} "
                   f"{'swapped':>9} {'file/shared':>12} {'not in dump':>12} {'not mergeable':>14}")
        for u in r["units"]:
            out.append(f"{u['name'][:28]:<28} {u['pages']:>10,} {u['candidates']:>11,} {u['zero_pages']:>9,} "
                       f"{u['not_resident']:>13,} {u['swapped']:>9,} {u['file_pages']:>12,} "
                       f"{u['not_in_dump']:>12,} {u['not_mergeable']:>14,}")
        rows = [
            ("candidate pages (KSM rmap items)", f"{r['candidates']:,}", mib(r["candidates"])),
            ("distinct contents", f"{r['distinct_contents']:,}", ""),
            ("saved by sharing", f"{r['saved_sharing']:,}", mib(r["saved_sharing"])),
            ("  zero pages", f"{r['saved_zero']:,}", mib(r["saved_zero"])),
            ("  within units (non-zero)", f"{r['saved_within']:,}", mib(r["saved_within"])),
            ("  across units (non-zero)", f"{r['saved_across']:,}", mib(r["saved_across"])),
            ("pages_shared / pages_sharing", f"{r['pages_shared']:,} / {r['pages_sharing']:,}", ""),
            ("pages_unshared / ksm_zero_pages", f"{r['pages_unshared']:,} / {r['ksm_zero_pages']:,}", ""),
            ("general_profit", f"{r['general_profit']:,} B", f"{r['general_profit'] / MIB:,.1f} MiB"),
            ("frames left after sharing", f"{r['frames_left']:,}", mib(r["frames_left"])),
            (f"  zstd-{r['zstd_level']} <= {r['compress_threshold']} B",
             f"{r['compressible_pages']:,.0f}" + ("" if r["compression_exact"] else
                                                  f" +- {r['compressible_pages_ci95']:,.0f}"),
             f"{100 * r['compressible_pages'] / max(r['frames_left'], 1):.1f} % of them"),
            (f"  of which <= {r['compress_quarter']} B", f"{r['quarter_pages']:,.0f}", ""),
            ("saved by compression (slots)", f"{r['saved_compression']:,.0f}", mib(r["saved_compression"])),
            ("saved in total", f"{r['saved_total']:,.0f}", f"{mib(r['saved_total'])} ({r['saved_pct']} %)"),
            (f"full scan at {r['pages_to_scan']} pages / {r['sleep_s'] * 1000:g} ms",
             f"{r['full_scan_s']:,.2f} s", ""),
            ("time to converge (2 full scans)", f"{r['converge_s']:,.2f} s", ""),
            ("ksmd CPU share", f"{r['ksmd_cpu_pct']:.2f} %", f"of one CPU at {r['cpu_per_page_s'] * 1e6:g} us/page"),
            ("headroom if all shared pages written", f"{r['headroom_pages']:,}", mib(r["headroom_pages"])),
        ]
        out.append("")
        for a, b, c in rows:
            out.append(f"{a:<38} {b:>18}  {c}")
        if not r["compression_exact"]:
            out.append(f"(compression estimated from {r['compressed_distinct']:,} of "
                       f"{r['distinct_left']:,} distinct contents left; --exact for all)")
        out.append(summary_line(r))
    return "\n".join(out)


def write_plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    if len(rows) == 1:
        r = rows[0]
        labels = ["zero", "within", "across", "compression", "left"]
        left = r["candidates"] - r["saved_total"]
        vals = [r["saved_zero"], r["saved_within"], r["saved_across"], r["saved_compression"], left]
        ax1.bar(labels, [v * PAGE_SIZE / MIB for v in vals],
                color=["#999999", "#4c72b0", "#55a868", "#dd8452", "#dddddd"])
        ax1.set_ylabel("MiB")
        ax1.set_title(f"candidate memory {mib(r['candidates'])}: saved {r['saved_pct']} %")
    else:
        t = [r["time_s"] for r in rows]
        ax1.plot(t, [r["saved_sharing"] * PAGE_SIZE / MIB for r in rows], "o-", label="sharing")
        ax1.plot(t, [r["saved_compression"] * PAGE_SIZE / MIB for r in rows], "s-", label="compression")
        ax1.plot(t, [r["candidates"] * PAGE_SIZE / MIB for r in rows], "--", label="candidates")
        ax1.set_xlabel("snapshot time (s)")
        ax1.set_ylabel("MiB")
        ax1.legend()
        ax1.set_title("saving over the series")
    r = rows[-1]
    b = r["zstd_hist_bin"]
    xs = [i * b for i in range(len(r["zstd_hist"]))]
    ax2.bar(xs, r["zstd_hist"], width=b, align="edge", color="#4c72b0")
    ax2.axvline(r["compress_threshold"], color="red", linestyle="--", label=f"{r['compress_threshold']} B cut")
    ax2.set_yscale("symlog")
    ax2.set_xlabel(f"zstd-{r['zstd_level']} size of a frame left after sharing (bytes)")
    ax2.set_ylabel("frames")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@click.command("whatif")
@click.argument("files", nargs=-1, required=True)
@click.option("--salting", type=click.Choice(["none", "per-vm"]), default="none", show_default=True,
              help="none: KSM shares across units; per-vm: within each only (ESXi)")
@click.option("--pages-to-scan", type=click.IntRange(1), default=100, show_default=True,
              help="ksmd pages per batch (KSM pages_to_scan)")
@click.option("--sleep", default="20ms", show_default=True, help="ksmd sleep between batches")
@click.option("--max-page-sharing", type=click.IntRange(2), default=256, show_default=True)
@click.option("--use-zero-pages", is_flag=True, help="zero pages map the zero page (KSM use_zero_pages)")
@click.option("--zstd-level", type=click.IntRange(1, 22), default=3, show_default=True)
@click.option("--hash-cost", default="1us", show_default=True, help="ksmd CPU per page checksummed")
@click.option("--compare-cost", default="500ns", show_default=True, help="ksmd CPU per full compare")
@click.option("--sample", type=click.IntRange(1), default=DEFAULT_SAMPLE, show_default=True,
              help="distinct contents compressed before estimating from a sample")
@click.option("--exact", is_flag=True, help="compress every distinct content")
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None, help="write a PNG plot")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def whatif(files, salting, pages_to_scan, sleep, max_page_sharing, use_zero_pages, zstd_level,
           hash_cost, compare_cost, sample, exact, plot, as_json) -> None:
    """Would KSM pay off? Sharing, compression, KSM's cost and pace, from real memory."""
    from guestkernel.units import parse_duration

    try:
        sleep_s = parse_duration(sleep, "--sleep")
        hc = parse_duration(hash_cost, "--hash-cost")
        cc = parse_duration(compare_cost, "--compare-cost")
        if plot and not os.path.isdir(os.path.dirname(os.path.abspath(plot))):
            raise ValueError(f"--plot: no such directory {os.path.dirname(os.path.abspath(plot))}")
        result = whatif_files(
            list(files), max_page_sharing=max_page_sharing, use_zero_pages=use_zero_pages,
            salting=salting, zstd_level=zstd_level, sample=None if exact else sample,
            pages_to_scan=pages_to_scan, sleep=sleep_s, hash_cost=hc, compare_cost=cc,
        )
    except ValueError as exc:
        click.echo(f"hvsim whatif: {exc}", err=True)
        sys.exit(2)
    if plot:
        write_plot(result, plot)
    click.echo(json.dumps(result, indent=1) if as_json else format_table(result))
