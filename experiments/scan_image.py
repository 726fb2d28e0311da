"""`hvsim scan-image IMAGE...`: what page sharing and compression would reclaim from raw
memory images (one VM per image file).

Each image is loaded as one VM (identical pages share one `bytes` object), the KSM
scanner runs full passes until the counters settle (at least three consecutive full
passes without a merge), and the KSM counters are printed with the compression potential:
pages that zstd brings to <= the threshold (2048 bytes), and the bytes zstd makes of them
and of all pages.

Register with `main.add_command(scan_image)` in experiments/cli.py.
"""

from __future__ import annotations

import json
import sys

import click

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

    from guestkernel.units import PAGE_SIZE
    from hypervisor.host import Host, HostConfig
    from hypervisor.vm import image_pages

    sizes = [image_pages(p) for p in paths]  # every file checked before any work
    total = sum(sizes)
    host = Host(
        HostConfig(
            memory=(total + 16) * PAGE_SIZE,
            min_free=PAGE_SIZE,
            swap_size=0,
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


def format_text(result: dict) -> str:
    lines = [f"{'image':<24} {im['pages']:>12} pages  {im['path']}" for im in result["images"]]
    for key, value in result.items():
        if key == "images":
            continue
        if isinstance(value, float):
            value = f"{value:.6f}"
        lines.append(f"{key:<24} {value!s:>12}")
    return "\n".join(lines)


@click.command("scan-image")
@click.argument("images", nargs=-1, required=True)
@click.option("--max-page-sharing", type=int, default=256, show_default=True,
              help="mappings per stable page (KSM max_page_sharing, >= 2)")
@click.option("--use-zero-pages", is_flag=True, help="map zero pages to the zero page (KSM)")
@click.option("--salting", type=click.Choice(["none", "per-vm"]), default="none",
              show_default=True, help="none: share across images; per-vm: within each only")
@click.option("--smart-scan/--no-smart-scan", default=True, show_default=True)
@click.option("--zstd-level", type=click.IntRange(1, 22), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print one JSON object")
def scan_image(
    images: tuple[str, ...],
    max_page_sharing: int,
    use_zero_pages: bool,
    salting: str,
    smart_scan: bool,
    zstd_level: int,
    as_json: bool,
) -> None:
    """Page-sharing and compression potential of raw memory images (one VM each)."""
    if max_page_sharing < 2:
        click.echo(f"hvsim scan-image: --max-page-sharing must be at least 2, got "
                   f"{max_page_sharing}", err=True)
        sys.exit(2)
    try:
        result = analyse(
            list(images),
            max_page_sharing=max_page_sharing,
            use_zero_pages=use_zero_pages,
            salting=salting,
            smart_scan=smart_scan,
            zstd_level=zstd_level,
        )
    except ValueError as exc:
        click.echo(f"hvsim scan-image: {exc}", err=True)
        sys.exit(2)
    click.echo(json.dumps(result, indent=2) if as_json else format_text(result))
