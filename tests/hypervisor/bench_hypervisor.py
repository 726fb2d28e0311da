"""Benchmarks of the hypervisor's per-page paths (not collected by the default run).

Run with pytest-benchmark (the project's addopts skip benchmarks, so clear them):

    .venv/bin/python -m pytest tests/hypervisor/bench_hypervisor.py -o addopts="" -q

or print a quick table:  .venv/bin/python -m hypervisor.bench

Targets (hypervisor/bench.py measures them side by side against the bare libraries):
a full sharing pass over 200 k distinct pages >= 0.5x a bare xxh3_64 loop; compressing
100 k evicted pages >= 0.8x a bare zstd loop at the same level.
"""

from __future__ import annotations

from hypervisor.bench import (
    COMPRESS_TARGET,
    SHARING_TARGET,
    measure_compression,
    measure_sharing,
)


def test_sharing_pass_throughput(benchmark):
    bare, ours = benchmark.pedantic(measure_sharing, rounds=1, iterations=1)
    ratio = bare / ours
    benchmark.extra_info.update(bare_s=bare, pass_s=ours, ratio=ratio, target=SHARING_TARGET)
    assert ratio >= SHARING_TARGET, f"sharing pass at {ratio:.2f}x of bare xxh3_64"


def test_compression_throughput(benchmark):
    bare, ours = benchmark.pedantic(measure_compression, rounds=1, iterations=1)
    ratio = bare / ours
    benchmark.extra_info.update(bare_s=bare, evict_s=ours, ratio=ratio, target=COMPRESS_TARGET)
    assert ratio >= COMPRESS_TARGET, f"compression at {ratio:.2f}x of bare zstd"
