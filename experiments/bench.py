"""`hvsim bench`: performance measurements, side by side in one process.

Each benchmark is a function returning result rows: what was measured, the figure, its
unit, and the target where an issue sets one. Where a raw-library loop exists (xxh3 over
the same pages, zstd over the same pages), the row is a ratio against that loop measured in
the same process, so the figure does not depend on the machine's speed.
Benchmarks are never run by the test suite's default run.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Row:
    name: str
    value: float
    unit: str
    target: str = ""
    ok: bool | None = None  # None: no target

    def cells(self) -> list[str]:
        verdict = "" if self.ok is None else ("ok" if self.ok else "BELOW TARGET")
        if self.value >= 1000:
            value = f"{self.value:,.0f}"
        elif self.value >= 10:
            value = f"{self.value:.1f}"
        else:
            value = f"{self.value:.3g}"
        return [self.name, value, self.unit, self.target, verdict]


BENCHMARKS: dict[str, Callable[[bool], list[Row]]] = {}


def benchmark(name: str):
    def register(fn):
        BENCHMARKS[name] = fn
        return fn

    return register


def _rate(fn: Callable[[int], None], n: int, repeat: int = 3) -> float:
    """Best operations per second over `repeat` runs of fn(n)."""
    best = 0.0
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn(n)
        dt = time.perf_counter() - t0
        best = max(best, n / dt)
    return best


@benchmark("page_alloc")
def bench_page_alloc(quick: bool) -> list[Row]:
    from guestkernel import gfp as G
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel

    n = 50_000 if quick else 300_000
    k = Kernel(KernelConfig(memory="1GiB"))
    alloc, free = k.alloc_pages, k.free_pages
    gfp = G.GFP_KERNEL

    def pcp_pairs(count: int) -> None:
        for _ in range(count):
            free(alloc(gfp))

    def buddy_pairs(count: int) -> None:
        # order-1 blocks never touch the per-CPU lists: split and merge every time
        for _ in range(count):
            free(alloc(gfp, 1), 1)

    def bulk(count: int) -> None:
        pages = [alloc(gfp) for _ in range(count)]
        for page in pages:
            free(page)

    rows = []
    r = _rate(pcp_pairs, n)
    rows.append(Row("order-0 alloc+free pairs via per-CPU lists", r, "pairs/s", ">= 500,000", r >= 500_000))
    rows.append(Row("order-1 alloc+free pairs via the buddy lists", _rate(buddy_pairs, n // 2), "pairs/s"))
    rows.append(Row("order-0: 100k allocs then 100k frees", _rate(bulk, 100_000, 2), "pairs/s"))
    return rows


@benchmark("boot")
def bench_boot(quick: bool) -> list[Row]:
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel

    best = float("inf")
    for _ in range(2 if quick else 3):
        gc.collect()
        t0 = time.perf_counter()
        k = Kernel(KernelConfig(memory="4GiB", cpus=2))
        best = min(best, time.perf_counter() - t0)
        del k
    return [Row("boot a 4 GiB x86_64 guest (2 CPUs)", best, "s", "< 2 s", best < 2.0)]


@benchmark("slab")
def bench_slab(quick: bool) -> list[Row]:
    from guestkernel import gfp as G
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel

    k = Kernel(KernelConfig(memory="1GiB"))
    cache = k.kmem_cache_create("bench_obj", 192)
    get, put = k.kmem_cache_alloc, k.kmem_cache_free
    gfp = G.GFP_KERNEL

    def pairs(count: int) -> None:
        for _ in range(count):
            put(cache, get(cache, gfp))

    def bulk(count: int) -> None:
        objs = [get(cache, gfp) for _ in range(count)]
        for obj in objs:
            put(cache, obj)

    n = 50_000 if quick else 200_000
    return [
        Row("kmem_cache_alloc+free pairs (192 B objects)", _rate(pairs, n), "pairs/s"),
        Row("kmem_cache: 50k allocs then 50k frees", _rate(bulk, 50_000, 2), "pairs/s"),
    ]


def run(names: list[str] | None = None, quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    for name in names or list(BENCHMARKS):
        rows.extend(BENCHMARKS[name](quick))
    return rows


def format_table(rows: list[Row]) -> str:
    head = ["benchmark", "value", "unit", "target", ""]
    cells = [r.cells() for r in rows]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths).rstrip())
    for c in cells:
        lines.append("  ".join((c[i].rjust(widths[i]) if i == 1 else c[i].ljust(widths[i]))
                               for i in range(len(head))).rstrip())
    return "\n".join(lines)
