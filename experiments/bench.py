"""`hvsim bench`: performance measurements, side by side in one process.

Each benchmark is a function returning result rows: what was measured, the figure, its
unit, and the target where an issue sets one. Where a raw-library loop exists (xxh3 over
the same pages, zstd over the same pages), the row is a ratio against that loop measured in
the same process, so the figure does not depend on the machine's speed.
Benchmarks are never run by the test suite's default run.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


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
ON_REQUEST: set[str] = set()  # run only when named (too long or too large for a default run)


def benchmark(name: str, default: bool = True):
    def register(fn):
        BENCHMARKS[name] = fn
        if not default:
            ON_REQUEST.add(name)
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
        # order-1 blocks: 6.1 keeps them on per-CPU order-1 lists (pcp_allowed_order), so
        # this is the pcp path again, through its high-order branch
        for _ in range(count):
            free(alloc(gfp, 1), 1)

    def bulk(count: int) -> None:
        pages = [alloc(gfp) for _ in range(count)]
        for page in pages:
            free(page)

    rows = []
    r = _rate(pcp_pairs, n)
    rows.append(Row("order-0 alloc+free pairs via per-CPU lists", r, "pairs/s", ">= 500,000", r >= 500_000))
    rows.append(Row("order-1 alloc+free pairs via the per-CPU order-1 lists", _rate(buddy_pairs, n // 2), "pairs/s"))
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


def _side_by_side(bare: Callable[[], object], ours: Callable[[object], object],
                  setup: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Best-of-`rounds` CPU seconds of `bare()` and of `ours(setup())`, rounds interleaved
    so that load from other processes hits both alike (CPU time: waiting for a core on a
    shared machine does not count)."""
    best_bare = best_ours = float("inf")
    for _ in range(rounds):
        gc.collect()
        t = time.process_time()
        bare()
        best_bare = min(best_bare, time.process_time() - t)
        arg = setup()
        gc.collect()
        t = time.process_time()
        ours(arg)
        best_ours = min(best_ours, time.process_time() - t)
    return best_bare, best_ours


def _ratio_rows(what: str, n: int, bare_s: float, ours_s: float, bare_name: str,
                target: float) -> list[Row]:
    ratio = bare_s / ours_s
    return [
        Row(f"{what}: hvsim / {bare_name} ({n:,} pages)", ratio, "x", f">= {target}x", ratio >= target),
        Row(f"{what}: hvsim", n / ours_s, "pages/s"),
        Row(f"{what}: {bare_name}", n / bare_s, "pages/s"),
    ]


def _vm_holding(pages: list[bytes], extra_frames: int = 0):
    """A host VM (no guest kernel) whose P2M maps frame i to a private frame holding
    pages[i], as a guest that wrote them would leave it."""
    from hypervisor.machine import MachineMemory
    from hypervisor.p2m import P2M_PRIVATE
    from hypervisor.vm import VM

    m = MachineMemory(len(pages) + extra_frames + 16)
    vm = VM(m, "bench", len(pages))
    for pfn, data in enumerate(pages):
        vm.p2m.set(pfn, P2M_PRIVATE, m.alloc(0, data))
    return vm


def _host_sharing(machine):
    """hypervisor.sharing.PageSharing as a Host with a default HostConfig builds it."""
    from hypervisor.host import HostConfig, page_sharing

    return page_sharing(HostConfig(), machine)


def _host_zcache(machine, nr_pages: int, max_frames: int):
    """hypervisor.compression.CompressionCache as Host._new_vm builds it (default
    HostConfig) for a VM of nr_pages, holding at most max_frames frames."""
    from hypervisor.host import HostConfig, compression_cache

    return compression_cache(HostConfig(), machine, nr_pages, max_frames)


@benchmark("sharing")
def bench_sharing(quick: bool) -> list[Row]:
    """A full page-sharing pass (first visit: checksum, unstable-tree insert) over n
    distinct pages against a bare xxh3_64 loop over the same pages."""
    import xxhash

    from hypervisor.bench import distinct_pages

    n = 20_000 if quick else 200_000
    pages = distinct_pages(n)
    h = xxhash.xxh3_64_intdigest

    def bare() -> None:
        for p in pages:
            h(p)

    def setup():
        vm = _vm_holding(pages)
        ksm = _host_sharing(vm.machine)
        ksm.add_vm(vm)
        return ksm

    bare_s, ours_s = _side_by_side(bare, lambda ksm: ksm.full_pass(), setup, 2 if quick else 3)
    return _ratio_rows("sharing full pass", n, bare_s, ours_s, "bare xxh3_64", 0.5)


@benchmark("compression")
def bench_compression(quick: bool) -> list[Row]:
    """n evicted pages into the compression cache (VM.evict_many, as Host.evict does with
    the victim policy's list; CompressionCache.store one page at a time) against a bare
    zstd loop at the same level over the same pages."""
    import zstandard

    from hypervisor.bench import compressible_pages
    from hypervisor.host import HostConfig

    n = 10_000 if quick else 100_000
    rounds = 2 if quick else 5
    pages = compressible_pages(n)
    compress = zstandard.ZstdCompressor(level=HostConfig().zstd_level).compress

    def bare() -> None:
        for p in pages:
            compress(p)

    def setup():
        vm = _vm_holding(pages, extra_frames=n)
        vm.zcache = _host_zcache(vm.machine, n, n)
        return vm

    def evict_all(vm) -> None:
        vm.evict_many(range(n))

    rows = _ratio_rows("compress evicted pages", n, *_side_by_side(bare, evict_all, setup, rounds),
                       "bare zstd", 0.8)

    def setup_cache():
        from hypervisor.machine import MachineMemory

        return _host_zcache(MachineMemory(n + 16), n, n)

    def store_all(zc) -> None:
        store = zc.store
        for p in pages:
            store(p)

    bare_s, ours_s = _side_by_side(bare, store_all, setup_cache, rounds)
    ratio = bare_s / ours_s
    rows.append(Row("CompressionCache.store page by page / bare zstd", ratio, "x"))
    return rows


def _fault_task(npages: int):
    """A bare-metal guest with one task and an untouched anonymous mapping of npages."""
    from guestkernel import uapi as U
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel
    from guestkernel.units import PAGE_SIZE

    k = Kernel(KernelConfig(memory=f"{max(256, npages * 3 // 256 + 64)}MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("bench")
    a = t.mmap(0, npages * PAGE_SIZE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    return k, t, a


FIRST_TOUCH_TARGET = 200_000  # faults per second on one core (issue 3)


@benchmark("faults")
def bench_faults(quick: bool) -> list[Row]:
    """Anonymous first-touch (demand-zero write) faults and copy-on-write faults after
    fork, per second, through Task.access_range on bare metal (the allocator, the LRU
    add and the struct pages created on first use included), under the garbage-collector
    settings every simulation runs with (runner.simulation_gc)."""
    from guestkernel.units import PAGE_SIZE

    from .runner import simulation_gc

    n = 20_000 if quick else 100_000
    rounds = 2 if quick else 5

    def faults_per_s(task, a, counter: str, what: str) -> float:
        """Write every page of the n-page range at `a`: each must take a `counter` fault."""
        k = task.kernel
        f0 = k.vmstat[counter]
        gc.collect()
        with simulation_gc():
            t0 = time.process_time()
            task.access_range(a, n * PAGE_SIZE, True)
            dt = time.process_time() - t0
        if k.vmstat[counter] - f0 != n:
            raise RuntimeError(f"bench faults: not every page took a {what} fault")
        return n / dt

    first = cow = 0.0
    for _ in range(rounds):
        k, t, a = _fault_task(n)
        first = max(first, faults_per_s(t, a, "fault_demand_zero", "demand-zero"))
        child = k.tasks[t.fork()]
        cow = max(cow, faults_per_s(child, a, "fault_cow", "copy-on-write"))
        del k, t, child
    # the same range MADV_HUGEPAGE'd: 2 MiB faults (do_huge_pmd_anonymous_page)
    from guestkernel import uapi as U

    huge = 0.0
    for _ in range(rounds):
        k, t, a = _fault_task(n + 512)
        a = (a + (2 << 20) - 1) & ~((2 << 20) - 1)
        m = n & ~511
        t.madvise(a, m * PAGE_SIZE, U.MADV_HUGEPAGE)
        gc.collect()
        with simulation_gc():
            t0 = time.process_time()
            t.access_range(a, m * PAGE_SIZE, True)
            dt = time.process_time() - t0
        if k.vmstat["thp_fault_alloc"] * 512 != m:
            raise RuntimeError("bench faults: not every 2 MiB took a huge page fault")
        huge = max(huge, m / dt)
        del k, t
    return [
        Row("anonymous first-touch faults (access_range)", first, "faults/s",
            f">= {FIRST_TOUCH_TARGET:,}", first >= FIRST_TOUCH_TARGET),
        Row("copy-on-write faults after fork (access_range)", cow, "faults/s"),
        Row("pages first touched through 2 MiB THP faults (MADV_HUGEPAGE)", huge, "pages/s"),
    ]


WHATIF_TARGET = 200_000  # pages/s: a 4 GiB dump in under 6 s (issue 17)


def generated_dump(path: str, pages: int, seed: int = 7) -> None:
    """A memory dump with a capacity planner's mix: 25 % zero pages, 25 % copies of 4096
    shared contents (half random, half zero: libraries, kernel text), 30 % distinct
    text-like pages (64 random bytes in a 28-letter text), 20 % distinct random pages."""
    import random

    rng = random.Random(seed)
    pool = [rng.randbytes(2048) + bytes(2048) for _ in range(4096)]
    text = bytes(rng.choice(b"abcdefghijklmnop qrstuvwxyz\n") for _ in range(4096))
    zero = bytes(4096)
    with open(path, "wb") as f:
        chunk = []
        for _ in range(pages):
            x = rng.random()
            if x < 0.25:
                chunk.append(zero)
            elif x < 0.5:
                chunk.append(pool[rng.randrange(4096)])
            elif x < 0.8:
                o = rng.randrange(4032)
                chunk.append(text[:o] + rng.randbytes(64) + text[o + 64:])
            else:
                chunk.append(rng.randbytes(4096))
            if len(chunk) == 4096:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))


@benchmark("whatif", default=False)
def bench_whatif(quick: bool) -> list[Row]:
    """hvsim whatif and scan-image (their counting path) over a generated 4 GiB dump
    (--quick: 256 MiB; written to a temporary file), CPU pages per second with the file
    in the page cache (read once before timing). Compression is sampled above 32,768
    distinct frames, a fixed cost that weighs on small dumps."""
    import tempfile

    from .scan_image import count
    from .whatif import whatif_files

    pages = (256 if quick else 4096) << 8  # MiB -> pages
    rows = []
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/dump.raw"
        generated_dump(path, pages)
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        for name, fn in (("whatif", lambda: whatif_files([path])), ("scan-image", lambda: count([path]))):
            gc.collect()
            t0 = time.process_time()
            fn()
            dt = time.process_time() - t0
            rate = pages / dt
            rows.append(Row(f"{name} over a {pages >> 8} MiB generated dump ({dt:.1f} s CPU)", rate,
                            "pages/s", f">= {WHATIF_TARGET:,}", rate >= WHATIF_TARGET))
    return rows


CONFIGS = Path(__file__).parent / "configs"


def scenario_child(config: str, duration: str | None = None, max_bytes: int = 0) -> dict:
    """Run one experiment config in this process (meant to be a fresh one) into a
    temporary folder; returns wall time, CPU time, peak RSS and the simulator's bytes per
    simulated guest frame ((peak RSS - RSS before the run) / guest frames). max_bytes > 0
    caps this process's address space (RLIMIT_AS): a run that needs more fails with
    MemoryError instead of pushing a shared machine into swap."""
    import resource
    import tempfile

    from .config import load_config, size
    from .runner import run_experiment

    if max_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))
    cfg = load_config(config)
    if duration is not None:
        cfg.experiment.duration = duration
    frames = sum(size(v.memory) // 4096 * v.count for v in cfg.vm)
    rss0 = _rss_now()
    with tempfile.TemporaryDirectory(prefix="hvsim-bench-") as out:
        t0 = time.perf_counter()
        c0 = time.process_time()
        summary = run_experiment(cfg, out, write_report=False)
        cpu = time.process_time() - c0
        wall = time.perf_counter() - t0
    peak = _peak_rss() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"status": summary["status"], "error": summary["error"], "wall_s": wall,
            "cpu_s": cpu, "sim_s": summary["sim_time_s"], "peak_rss": peak,
            "bytes_per_frame": (peak - rss0) / frames, "frames": frames}


def _peak_rss() -> int:
    """Peak resident set size of this process's own address space, bytes: VmHWM of
    /proc/self/status (0 elsewhere). NOTE: not getrusage's ru_maxrss, which Linux carries
    across exec from the address space the process had before (exec_mmap folds the old
    mm's high-water mark into the process's maxrss): a scenario child started by a
    `hvsim bench` that had run the sharing benchmark reported that parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _rss_now() -> int:
    """Resident set size of this process now, bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _scenario(name: str, config: Path, duration: str | None, wall_target: float,
              rss_target: int, timeout: float | None = None, max_bytes: int = 0) -> list[Row]:
    """Runs `config` in a fresh interpreter (so that peak RSS is the scenario's own)."""
    code = ("import json, sys; from experiments.bench import scenario_child; "
            "print(json.dumps(scenario_child(sys.argv[1], sys.argv[2] or None, int(sys.argv[3]))))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(config), duration or "", str(max_bytes)],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [Row(f"{name}: did not finish within {timeout:.0f} s", float(timeout), "s wall",
                    f"<= {wall_target:.0f} s", False)]
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench {name}: {config.name} crashed: {last}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    what = f"{name} ({config.name}{', ' + duration if duration else ''})"
    if r["status"] != "ok":
        return [Row(f"{what}: failed after {r['sim_s']:g} simulated s ({r['error'] or 'no message'})",
                    r["wall_s"], "s wall", f"<= {wall_target:.0f} s", False),
                Row(f"{what}: peak RSS", r["peak_rss"] / (1 << 30), "GiB")]
    gib = 1 << 30
    rows = [
        Row(f"{what}: wall time", r["wall_s"], "s", f"<= {wall_target:.0f} s", r["wall_s"] <= wall_target),
        # CPU time: the wall time on an otherwise idle machine (one process, one thread)
        Row(f"{what}: CPU time", r["cpu_s"], "s"),
        Row(f"{what}: peak RSS", r["peak_rss"] / gib, "GiB", f"<= {rss_target / gib:.0f} GiB",
            r["peak_rss"] <= rss_target),
        Row(f"{what}: simulator bytes per guest frame", r["bytes_per_frame"], "B/frame"),
    ]
    if duration is not None:  # a shortened run: its figures say nothing about the target
        for row in rows:
            row.target, row.ok = "", None
    return rows


@benchmark("r1")
def bench_r1(quick: bool) -> list[Row]:
    """R1: 8 x 512 MiB web servers on a 2.5 GiB host, all four techniques, 10 simulated
    minutes (--quick: 10 simulated seconds). Target <= 120 s wall, <= 3 GiB RSS."""
    return _scenario("R1", CONFIGS / "bench-r1.toml", "10s" if quick else None, 120, 3 << 30)


@benchmark("r2", default=False)
def bench_r2(quick: bool) -> list[Row]:
    """R2: 16 x 4 GiB guests on a 32 GiB host, 10 simulated minutes (--quick: 10 simulated
    seconds). Target: <= 15 min wall, <= 12 GiB RSS (on a 24 GiB, 2-core machine). Run only
    when named; stopped after 30 minutes, and its address space is capped at the 12 GiB
    target (past it the run fails with MemoryError)."""
    return _scenario("R2", CONFIGS / "bench-r2.toml", "10s" if quick else None, 15 * 60, 12 << 30,
                     timeout=30 * 60, max_bytes=12 << 30)


SWEEP_SPEEDUP_TARGET = 1.8  # issue 18: -j 2 and local:2 against -j 1, six independent runs


@benchmark("sweep")
def bench_sweep(quick: bool) -> list[Row]:
    """The real sweep-quickstart (3 host sizes x 2 replications of the quickstart) with -j 1,
    -j 2 and a Dask LocalCluster of 2 workers: wall times, speed-ups against -j 1 (target
    >= 1.8x on 2 cores) and a check that runs.csv is identical on every backend. --quick
    cuts every run to 2 simulated seconds (its speed-ups say less: start-up weighs more).

    Per backend also its serial part: the wall time outside the runs' span (sweep.json's
    runs_span_s: imports, forks and cluster start before the first run, the sweep's
    outputs after the last), which a second worker cannot shorten. The runs' span holds
    the runs and their reports (report.md and plots, drawn by the worker that ran them)."""
    import tempfile

    from .sweep import load_sweep, run_sweep

    path = Path(__file__).parent / "configs" / "sweep-quickstart.toml"
    walls: dict[str, float] = {}
    serial: dict[str, float] = {}
    tables: dict[str, str] = {}
    n = 0
    for label, kw in (("-j 1", {"jobs": 1}), ("-j 2", {"jobs": 2}), ("local:2", {"scheduler": "local:2"})):
        with tempfile.TemporaryDirectory(prefix="hvsim-bench-sweep-") as out:
            sweep = load_sweep(path, output_dir=out, overrides=['experiment.duration="2s"'] if quick else ())
            t0 = time.perf_counter()
            rows = run_sweep(sweep, progress=False, **kw)
            walls[label] = time.perf_counter() - t0
            failed = [r for r in rows if r["status"] != "ok"]
            if failed:
                raise RuntimeError(f"bench sweep: run {failed[0]['run_id']} failed: {failed[0]['error']}")
            tables[label] = (Path(out) / "runs.csv").read_text()
            first, last = json.loads((Path(out) / "sweep.json").read_text())["runs_span_s"]
            serial[label] = walls[label] - (last - first)
            n = len(rows)
    if len(set(tables.values())) != 1:
        raise RuntimeError("bench sweep: runs.csv differs between -j 1, -j 2 and local:2")
    what = f"sweep-quickstart ({n} runs{', 2 s each' if quick else ''})"
    target = None if quick else SWEEP_SPEEDUP_TARGET
    rows_out = [Row(f"{what}, {label}: wall time", walls[label], "s") for label in walls]
    rows_out += [Row(f"{what}, {label}: serial part (outside the runs' span)", serial[label], "s")
                 for label in serial]
    for label in ("-j 2", "local:2"):
        speedup = walls["-j 1"] / walls[label]
        rows_out.append(Row(f"{what}: speed-up of {label} over -j 1", speedup, "x",
                            f">= {SWEEP_SPEEDUP_TARGET}x" if target else "",
                            speedup >= target if target else None))
    return rows_out


def run(names: list[str] | None = None, quick: bool = False) -> list[Row]:
    rows: list[Row] = []
    for name in names or [n for n in BENCHMARKS if n not in ON_REQUEST]:
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
