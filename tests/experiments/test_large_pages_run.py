"""A whole run with host large pages (hypervisor/largepage.py) as a user sees it: the
attribution rule holds at every sample (issue 12: each guest page counted once, under
the technique that holds it; the techniques add up to the guest pages held minus the
machine frames used), counting a guest page under a live large page as held from the
large page's first touch; summary.json and report.md show the large pages' counters and
the reclaim per technique with and without them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import experiments.metrics as metrics
from experiments.anchors import LARGE_PAGES_QUICK
from experiments.config import config_from_dict, set_dotted
from experiments.runner import run_experiment
from hypervisor.largepage import LP_BACKED
from hypervisor.p2m import LARGE_PAGE_SHIFT, P2M_NONE

from .test_attribution import held_minus_used

_hosts: list = []  # the host of the run a test started (its sampler's)
ANCHOR = Path(__file__).resolve().parents[2] / "experiments" / "configs" / "anchors" / "large-pages.toml"


def under_large_pages_untouched(host) -> int:
    """Guest pages inside a live large page that the guest has not touched yet, counted
    page by page: the large page backs them (its 2 MiB are in use from the first touch)."""
    n = 0
    for vm in host.vms:
        p2m = vm.p2m
        for r, lv in enumerate(p2m.large):
            if lv == LP_BACKED:
                lo = r << LARGE_PAGE_SHIFT
                n += p2m.state[lo:lo + (1 << LARGE_PAGE_SHIFT)].count(P2M_NONE)
    return n


def test_a_run_with_large_pages_adds_up_at_every_sample_and_reports_them(monkeypatch, tmp_path):
    import tomllib

    data = tomllib.loads(ANCHOR.read_text())
    for key, value in LARGE_PAGES_QUICK.items():
        set_dotted(data, key, value)
    data["experiment"]["duration"] = "14s"
    data["experiment"]["sample_interval"] = "250ms"
    seen = []
    sample = metrics.Sampler.sample

    def checked(self):
        row = sample(self)
        host = self.host
        tech = sum(host.reclaimed().values())
        seen.append((row["time_s"], tech, held_minus_used(host) + under_large_pages_untouched(host),
                     host.lp.large_pages, host.lp.large_pages_broken))
        host.lp.validate(host.vms)
        return row

    monkeypatch.setattr(metrics.Sampler, "sample", checked)
    s = run_experiment(config_from_dict(data, str(ANCHOR)), tmp_path)
    assert s["status"] == "ok", s["traceback"]
    assert len(seen) >= 50
    assert [(t, a, b) for t, a, b, _, _ in seen if a != b] == []
    # large pages backed memory, then ESX's job broke some under pressure
    assert seen[0][3] > 0 and seen[-1][4] > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    lp = summary["large_pages"]
    assert lp["thp_fault_alloc"] > 0 and lp["large_pages_broken"] == seen[-1][4]
    assert lp["samples_with"] + lp["samples_without"] == len(seen)
    assert set(lp["mean_reclaimed_with_mib"]) == set(metrics.TECHNIQUES)
    report = (tmp_path / "report.md").read_text()
    assert "## Host large pages" in report and "`thp_fault_alloc`" in report
    assert "`lp_region_alloc_failed`" in report
    # fragmentation over time: wholly free 2 MiB regions never hold more than free memory
    import csv

    with (tmp_path / "timeseries.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(float(r["host_free_regions_mib"]) <= float(r["host_free_mib"]) + 1e-9 for r in rows)


@pytest.mark.parametrize(("host_large", "kind"), [(False, "esx"), (True, "esx"), (True, "kvm")])
def test_guest_huge_pages_over_host_small_or_large_pages(monkeypatch, tmp_path, host_large, kind):
    """Guest THP (thp_enabled = always: the memory hog's heap faults 2 MiB pages, each
    zeroing 512 frames the host sees written) over host small pages and over host large
    pages of either kind: the run adds up at every sample and both sides count their
    huge pages."""
    data = {
        "experiment": {"name": "thp-over-host", "duration": "3s", "seed": 5, "sample_interval": "250ms"},
        "host": {"memory": "512MiB", "large_pages": host_large, "kind": kind,
                 "sharing": {"pages_to_scan": 2000}},
        "vm": [{"name": "g", "count": 2, "memory": "128MiB", "image": "debian-12",
                "kernel": {"thp_enabled": "always"},
                "workload": {"profile": "memhog", "size": "48MiB", "rate": "32MiB"}}],
    }
    gaps = []
    _hosts.clear()
    sample = metrics.Sampler.sample

    def checked(self):
        row = sample(self)
        host = self.host
        if not _hosts or _hosts[-1] is not host:
            _hosts.append(host)
        held = held_minus_used(host) + (under_large_pages_untouched(host) if host.lp is not None else 0)
        if sum(host.reclaimed().values()) != held:
            gaps.append(row["time_s"])
        if host.lp is not None:
            host.lp.validate(host.vms)
        return row

    monkeypatch.setattr(metrics.Sampler, "sample", checked)
    s = run_experiment(config_from_dict(data), tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert gaps == []
    summary = json.loads((tmp_path / "summary.json").read_text())
    guest_thp = sum(vm.kernel.vmstat["thp_fault_alloc"] for vm in _hosts[-1].vms)
    assert guest_thp > 0
    assert ("large_pages" in summary) == host_large
    if host_large:
        assert summary["large_pages"]["thp_fault_alloc"] > 0
