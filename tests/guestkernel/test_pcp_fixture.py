"""6.1's per-CPU list sizes and stat thresholds against this machine's kernel
(tests/data/pcp/pcp.json, written by measure_pcp.py from /proc/zoneinfo).

The fixture is a 6.18 kernel on 2 CPUs. zone_batchsize (min(managed >> 10, 1 MiB of
pages) / 4, clamped to 2^n - 1) and calculate_normal_threshold are unchanged since 6.1,
so every zone's batch and "vm stats threshold" are checked. zone_highsize (LOW watermark
/ the node's CPUs, at least 4 x batch) is 6.7+'s pcp->high_min; 6.7+ then tunes high
between high_min and high_max while the list is used, so only an unused list (count 0)
shows high = high_min, and only such lists are checked. The DMA zone (high 0 there,
where 6.1's rule gives max(low / CPUs, 4)) is left out: a post-6.1 change."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from guestkernel.page_alloc import PageAllocator, PerCpuPages

FIXTURE = json.loads((Path(__file__).resolve().parents[1] / "data" / "pcp" / "pcp.json").read_text())
ZONES = [z for z in FIXTURE["zones"] if z.get("managed") and z["pagesets"]]


def sizes(zone: dict) -> tuple[int, int]:
    """hvsim's zone_pcp_update for a zone with the fixture's managed pages and LOW mark."""
    ncpus = FIXTURE["online_cpus"]
    alloc = SimpleNamespace(percpu_pagelist_high_fraction=FIXTURE["percpu_pagelist_high_fraction"],
                            config=SimpleNamespace(cpus=ncpus))
    alloc.stat_threshold = lambda zone: PageAllocator.stat_threshold(alloc, zone)
    z = SimpleNamespace(managed_pages=zone["managed"], watermark=[zone["min"], zone["low"], zone["high"]],
                        node=SimpleNamespace(cpus=list(range(ncpus))), reclaim_active=False,
                        pcp=[(PerCpuPages(0, 1),) for _ in range(ncpus)])
    PageAllocator.zone_pcp_update(alloc, z)
    pcp = z.pcp[0][0]
    return pcp.batch, pcp.high


def test_the_fixture_is_this_machines_2_cpu_kernel():
    assert FIXTURE["online_cpus"] == 2 and FIXTURE["percpu_pagelist_high_fraction"] == 0
    assert {z["zone"] for z in ZONES} >= {"DMA", "DMA32", "Normal"}


@pytest.mark.parametrize("zone", ZONES, ids=[z["zone"] for z in ZONES])
def test_zone_batchsize_matches_the_kernel(zone):
    batch, _ = sizes(zone)
    assert all(ps["batch"] == batch for ps in zone["pagesets"])


@pytest.mark.parametrize("zone", [z for z in ZONES if z["zone"] != "DMA"],
                         ids=[z["zone"] for z in ZONES if z["zone"] != "DMA"])
def test_zone_highsize_matches_an_unused_list(zone):
    _, high = sizes(zone)
    unused = [ps for ps in zone["pagesets"] if ps["count"] == 0]
    assert all(ps["high"] == high for ps in unused)
    # a list in use is tuned upward from high_min (6.7+), never below it
    assert all(ps["high"] >= high for ps in zone["pagesets"])


@pytest.mark.parametrize("zone", ZONES, ids=[z["zone"] for z in ZONES])
def test_calculate_normal_threshold_matches_the_kernel(zone):
    alloc = SimpleNamespace(config=SimpleNamespace(cpus=FIXTURE["online_cpus"]))
    t = PageAllocator.stat_threshold(alloc, SimpleNamespace(managed_pages=zone["managed"]))
    assert all(ps["vm_stats_threshold"] == t for ps in zone["pagesets"])
