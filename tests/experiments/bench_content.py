"""Benchmark and calibration report of experiments/content.py (not collected by pytest).

    .venv/bin/python tests/experiments/bench_content.py [--pages N] [--calibrate]

Prints generated pages per second (and us per page) for every application profile and
for image pages (uncached and cached), then the measured zstd statistics per profile,
image content class and image, as zram would store the pages (content_stats).
"""

from __future__ import annotations

import argparse
import time

from experiments.content import (
    IMAGES,
    PROFILES,
    ContentSource,
    DataProfile,
    OSImage,
    _page,
    _remix,
    content_stats,
    drop_image_cache,
)

IMAGE_CLASSES = ("code", "rodata", "kdata", "text", "registry", "journal")


def rate(label: str, n: int, seconds: float) -> None:
    print(f"  {label:28s} {n / seconds:>10,.0f} pages/s  {seconds / n * 1e6:6.2f} us/page")


def bench(n: int) -> None:
    print(f"generation ({n} pages each; corpora built before timing)")
    src = ContentSource(1, "bench")
    for profile in PROFILES:
        src.app_page(profile, -1)  # build the corpus and the pointer pool
        t = time.perf_counter()
        for k in range(n):
            src.app_page(profile, k)
        rate(f"app {profile}", n, time.perf_counter() - t)
    t = time.perf_counter()
    for k in range(n):
        src.app_page("webserver", k, pid=k % 1000)
    rate("app webserver, 1000 pids", n, time.perf_counter() - t)
    for name in ("debian-12", "windows-2019"):
        image = OSImage.get(name)
        pages = [(r, i) for r in image.regions for i in range(r.pages)][:n]
        drop_image_cache()
        t = time.perf_counter()
        for r, i in pages:
            image.page(r, i)
        rate(f"image {name} (first use)", len(pages), time.perf_counter() - t)
        t = time.perf_counter()
        for r, i in pages:
            image.page(r, i)
        rate(f"image {name} (cached)", len(pages), time.perf_counter() - t)
    drop_image_cache()


def calibrate(n: int) -> None:
    print(f"\ncalibration (zstd level 3, zram accounting, {n} pages each)")
    print(f"  {'content':28s} {'zero':>6s} {'mean B':>8s} {'ratio':>7s}")
    src = ContentSource(2, "calibrate")
    for profile in PROFILES:
        s = content_stats(src.app_page(profile, k) for k in range(n))
        print(f"  {'app ' + profile:28s} {s.zero_fraction:6.3f} {s.mean_compressed:8.0f}"
              f" {s.ratio:7.2f}")
    for cls in IMAGE_CLASSES:
        p = DataProfile.get(cls)
        s = content_stats(_page(p, h, h, b"") for h in (_remix(i) for i in range(n)))
        print(f"  {'class ' + cls:28s} {s.zero_fraction:6.3f} {s.mean_compressed:8.0f}"
              f" {s.ratio:7.2f}")
    for name in IMAGES:
        image = OSImage.get(name)
        stride = max(1, image.total_pages // n)
        s = content_stats(page for r, i, page in image.pages(cache=False) if i % stride == 0)
        mib = image.total_pages * 4096 / (1 << 20)
        print(f"  {'image ' + name:28s} {s.zero_fraction:6.3f} {s.mean_compressed:8.0f}"
              f" {s.ratio:7.2f}   ({image.total_pages} pages, {mib:.0f} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=20000, help="pages per measurement")
    ap.add_argument("--calibrate", action="store_true", help="also print zstd statistics")
    args = ap.parse_args()
    bench(args.pages)
    if args.calibrate:
        calibrate(min(args.pages, 5000))


if __name__ == "__main__":
    main()
