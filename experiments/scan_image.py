"""`hvsim scan-image IMAGE...`: what page sharing and compression would reclaim from memory
images: raw dumps, ELF core files, hvsim captures (hypervisor/memimage.py).

By default the converged KSM counters are counted directly (experiments/whatif.py: the
closed form of KSM's stable dups over the candidate pages, at C speed, >= 200 k pages/s),
with the compression of what sharing leaves and a one-line summary. `--simulate` instead
loads each image as one VM (identical pages share one `bytes` object) and runs the KSM
scanner of hypervisor/sharing.py in full passes until the counters settle (at least three
consecutive full passes without a merge); the two agree (tests/hypervisor/
test_scan_image.py checks it on random images). Pages a capture records as never resident
(or swapped, or page cache) are not candidates and are counted apart; a raw or ELF dump
cannot tell and the output says so.

Register with `main.add_command(scan_image)` in experiments/cli.py.
"""

from __future__ import annotations

import json
import sys

import click

from guestkernel.units import PAGE_SIZE

from .whatif import DEFAULT_SAMPLE

SETTLE_PASSES = 3  # consecutive full passes without a merge
MAX_PASSES = 64  # give up settling after this many passes (reported)
KSM_KEYS = (
    "pages_shared",
    "pages_sharing",
    "pages_unshared",
    "pages_volatile",
    "full_scans",
    "ksm_zero_pages",
    "general_profit",
    "pages_skipped",
    "stable_node_chains",
    "stable_node_dups",
    "hash_collisions",
    "byte_compares",
    "scan_time",
)


def analyse(
    paths: list[str],
    max_page_sharing: int = 256,
    use_zero_pages: bool = False,
    salting: str = "none",
    smart_scan: bool = True,
    zstd_level: int = 3,
    threshold: int = 2048,
) -> dict:
    """Scan the images; a flat result record. Raises ValueError (ImageError) one-line."""
    import zstandard

    from hypervisor.host import Host, HostConfig
    from hypervisor.vm import image_pages

    sizes = [image_pages(p) for p in paths]  # every file checked before any work
    total = sum(sizes)
    host = Host(
        HostConfig(
            memory=(total + 16) * PAGE_SIZE,
            min_free=PAGE_SIZE,
            swap_size=0,
            admission_control=False,  # an offline scan: no VM is powered on, none needs a swap file
            compression=False,
            ballooning=False,
            max_page_sharing=max_page_sharing,
            use_zero_pages=use_zero_pages,
            salting=salting,
            smart_scan=smart_scan,
        )
    )
    intern: dict = {}
    for i, path in enumerate(paths):
        host.create_vm_from_image(f"image{i}", path, intern)
    ksm = host.sharing
    quiet = 0
    while quiet < SETTLE_PASSES and ksm.full_scans < MAX_PASSES:
        merges = ksm.merges
        ksm.full_pass()
        # the first pass only records checksums: it cannot count as settled
        quiet = quiet + 1 if ksm.merges == merges and ksm.full_scans > 1 else 0
    counters = ksm.counters()
    # compression potential, one zstd call per distinct page content
    compress = zstandard.ZstdCompressor(level=zstd_level).compress
    size_of: dict[int, int] = {}
    compressible = comp_bytes = all_bytes = 0
    for vm in host.vms:
        for pfn in range(vm.nr_pages):
            data = vm.load(pfn)
            n = size_of.get(id(data))
            if n is None:
                n = size_of[id(data)] = len(compress(data))
            all_bytes += n
            if n <= threshold:
                compressible += 1
                comp_bytes += n
    result = {
        "images": [{"path": str(p), "pages": n} for p, n in zip(paths, sizes, strict=True)],
        "pages": total,
        "distinct_pages": len(size_of),
        "settled": quiet >= SETTLE_PASSES,
        "max_page_sharing": max_page_sharing,
        "use_zero_pages": use_zero_pages,
        "salting": salting,
    }
    result.update({k: counters[k] for k in KSM_KEYS})
    result.update(
        {
            "saved_pages": counters["pages_sharing"] + counters["ksm_zero_pages"],
            "zstd_level": zstd_level,
            "compress_threshold": threshold,
            "compressible_pages": compressible,
            "compressible_zstd_bytes": comp_bytes,
            "zstd_bytes": all_bytes,
        }
    )
    return result


def count(paths: list[str], max_page_sharing: int = 256, use_zero_pages: bool = False,
          salting: str = "none", zstd_level: int = 3, threshold: int = 2048,
          sample: int | None = DEFAULT_SAMPLE) -> dict:
    """The converged counters counted directly (whatif.analyse_units), every file's last
    snapshot together; a flat record with the same KSM keys as `analyse`."""
    from .whatif import analyse_units, open_images, read_units

    images = open_images(paths)
    units = []
    for img in images:
        units += read_units(img, len(img.snapshots) - 1, img.path)
    r = analyse_units(units, max_page_sharing=max_page_sharing,
                      use_zero_pages=use_zero_pages, salting=salting, zstd_level=zstd_level,
                      threshold=threshold, sample=sample)
    r["images"] = [{"path": img.path, "format": img.format, "pages": img.snapshots[-1].nr_pages}
                   for img in images]
    r["notes"] = sorted({f"{img.path}: {img.note}" for img in images if img.note})
    r["saved_pages"] = r["saved_sharing"]
    return r


# units of the printed keys: pages (also shown in MiB), bytes, seconds, or none
_PAGE_KEYS = {
    "pages", "candidates", "not_resident", "swapped", "file_pages", "not_in_dump", "unreadable",
    "not_mergeable", "zero_pages",
    "distinct_contents", "distinct_pages", "pages_shared", "pages_sharing", "pages_unshared",
    "pages_volatile", "ksm_zero_pages", "pages_skipped", "rmap_items", "saved_pages",
    "saved_sharing", "saved_zero", "saved_within", "saved_across", "frames_left",
    "compressible_pages", "compressible_pages_ci95", "quarter_pages", "saved_compression",
    "saved_total", "headroom_pages",
}
_BYTE_KEYS = {"general_profit", "zstd_bytes", "compressible_zstd_bytes"}
_SKIP = {"images", "units", "notes", "zstd_hist", "zstd_hist_bin", "pages_to_scan", "sleep_s",
         "cpu_per_page_s", "full_scan_s", "converge_s", "ksmd_cpu_pct", "distinct_left",
         "compressed_distinct"}


def format_text(result: dict) -> str:
    lines = [f"{'image':<24} {im['pages']:>14,} pages  {im['path']}"
             + (f" ({im['format']})" if "format" in im else "") for im in result["images"]]
    lines += [f"note: {n}" for n in result.get("notes", ())]
    for key, value in result.items():
        if key in _SKIP:
            continue
        if key in _PAGE_KEYS:
            text = f"{value:>14,.0f} pages  {value * PAGE_SIZE / (1 << 20):,.1f} MiB"
        elif key in _BYTE_KEYS:
            text = f"{value:>14,} bytes  {value / (1 << 20):,.1f} MiB"
        elif key in ("compress_threshold", "compress_quarter"):
            text = f"{value:>14,} bytes"
        elif key == "scan_time":
            text = f"{value:>14.6f} s (simulated ksmd CPU)"
        elif key == "saved_pct":
            text = f"{value:>14} % of the candidate pages"
        else:
            text = f"{value!s:>14}"
        lines.append(f"{key:<24} {text}")
    lines.append(summary(result))
    return "\n".join(lines)


def summary(r: dict) -> str:
    """One line: sharing, then compression of what is left, then the total saving."""
    from .whatif import summary_line

    if "saved_total" in r:
        return summary_line(r)
    # --simulate: compression of the frames the scanner left (each distinct content once
    # per frame left is not tracked there: all pages' compressibility is reported instead)
    mib = PAGE_SIZE / (1 << 20)
    total = r["pages"] or 1
    return (f"sharing saves {r['saved_pages'] * mib:,.1f} MiB ({100 * r['saved_pages'] / total:.1f} %) "
            f"of {r['pages'] * mib:,.1f} MiB; {r['compressible_pages']:,} of all pages compress to "
            f"<= {r['compress_threshold']} bytes (run without --simulate for compression of what "
            "sharing leaves and the total)")


@click.command("scan-image")
@click.argument("images", nargs=-1, required=True)
@click.option("--max-page-sharing", type=int, default=256, show_default=True,
              help="mappings per stable page (KSM max_page_sharing, >= 2)")
@click.option("--use-zero-pages", is_flag=True, help="map zero pages to the zero page (KSM)")
@click.option("--salting", type=click.Choice(["none", "per-vm"]), default="none",
              show_default=True, help="none: share across images; per-vm: within each only")
@click.option("--smart-scan/--no-smart-scan", default=True, show_default=True)
@click.option("--zstd-level", type=click.IntRange(1, 22), default=3, show_default=True)
@click.option("--exact", is_flag=True, help="compress every distinct content (default: sample)")
@click.option("--simulate", is_flag=True,
              help="run hvsim's KSM scanner over one VM per image instead of counting")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def scan_image(
    images: tuple[str, ...],
    max_page_sharing: int,
    use_zero_pages: bool,
    salting: str,
    smart_scan: bool,
    zstd_level: int,
    exact: bool,
    simulate: bool,
    as_json: bool,
) -> None:
    """Page-sharing and compression potential of memory images: raw, ELF core, capture."""
    if max_page_sharing < 2:
        click.echo(f"hvsim scan-image: --max-page-sharing must be at least 2, got "
                   f"{max_page_sharing}", err=True)
        sys.exit(2)
    try:
        if not simulate:
            result = count(list(images), max_page_sharing=max_page_sharing,
                           use_zero_pages=use_zero_pages, salting=salting, zstd_level=zstd_level,
                           sample=None if exact else DEFAULT_SAMPLE)
        else:
            result = analyse(list(images), max_page_sharing=max_page_sharing,
                             use_zero_pages=use_zero_pages, salting=salting,
                             smart_scan=smart_scan, zstd_level=zstd_level)
    except ValueError as exc:
        click.echo(f"hvsim scan-image: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(result, indent=2) if as_json else format_text(result))
