"""Accounting that adds up (issue 12, section 3), checked on whole runs as a user sees
them: at every sample the memory the techniques are credited with equals the guest pages
held minus the machine frames used (DESIGN.md, "Counters, metrics, results"), and an
overdrawn host is shown, never clamped away."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import experiments.metrics as metrics
from experiments.config import config_from_dict, load_config
from experiments.runner import run_experiment
from hypervisor.p2m import (
    P2M_BALLOONED,
    P2M_COMPRESSED,
    P2M_PRIVATE,
    P2M_SHARED,
    P2M_SWAPPED,
    P2M_ZERO,
)

CONFIGS = Path(__file__).resolve().parents[2] / "experiments" / "configs"
EXAMPLES = sorted(p.stem for p in CONFIGS.glob("*.toml") if not p.stem.startswith(("sweep-", "bench-")))


def held_minus_used(host) -> int:
    """Guest pages the host holds for the guests, counted page by page from the P2Ms and
    the balloons, minus the machine frames in use: every page backed, shared, zero-mapped,
    compressed or swapped, every page a balloon holds (the driver's list) whose frame was
    backed when the guest gave it up, and every reported free page whose backing the host
    discarded (P2M released_backed: 1 balloon, 2 reported)."""
    from guestkernel.physmem import RELEASE_BALLOON, RELEASE_REPORTED

    held = 0
    for vm in host.vms:
        p2m = vm.p2m
        nr = p2m.nr
        held += nr[P2M_PRIVATE] + nr[P2M_SHARED] + nr[P2M_ZERO] + nr[P2M_COMPRESSED] + nr[P2M_SWAPPED]
        state, backed = p2m.state, p2m.released_backed
        if vm.balloon is not None:
            held += sum(1 for page in vm.balloon.pages
                        if state[page.pfn] == P2M_BALLOONED and backed[page.pfn] == RELEASE_BALLOON)
        held += sum(1 for pfn in range(vm.nr_pages)
                    if state[pfn] == P2M_BALLOONED and backed[pfn] == RELEASE_REPORTED)
    return held - host.machine.nr_used


@pytest.fixture
def probe(monkeypatch):
    """Checks the attribution rule at every sample of every run started in the test:
    returns the list of (time, techniques' pages, held - used) it saw."""
    seen = []
    sample = metrics.Sampler.sample

    def checked(self):
        row = sample(self)
        reclaimed = self.host.reclaimed()
        for tech, pages in reclaimed.items():
            assert row[f"reclaimed_{tech}_mib"] == metrics.pages_mib(pages)
        seen.append((row["time_s"], sum(reclaimed.values()), held_minus_used(self.host)))
        return row

    monkeypatch.setattr(metrics.Sampler, "sample", checked)
    return seen


def test_quickstart_techniques_add_up_at_every_sample(probe, tmp_path):
    s = run_experiment(load_config(CONFIGS / "quickstart.toml"), tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert len(probe) >= 20
    assert [t for t, tech, gap in probe if tech != gap] == []
    assert any(tech > 0 for _, tech, _ in probe)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_config_adds_up_at_every_sample(name, probe, tmp_path):
    cfg = load_config(CONFIGS / f"{name}.toml")
    data = cfg.model_dump(mode="json")
    data["experiment"]["duration"] = "2s"
    data["experiment"]["sample_interval"] = "250ms"
    s = run_experiment(config_from_dict(data), tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert len(probe) >= 8  # every 250 ms (and at the end, where the runner samples it)
    assert [(t, tech, gap) for t, tech, gap in probe if tech != gap] == []


def _tight(swap: str, admission_control: bool = True):
    """Two 96 MiB guests whose memory hogs write 80 MiB of incompressible data each on a
    128 MiB host, with no balloon, no sharing and no compression: only host swap
    (`swap` of it) can make room."""
    return config_from_dict({
        "experiment": {"name": "tight", "duration": "6s", "seed": 3, "sample_interval": "500ms"},
        "host": {"memory": "128MiB", "swap": {"size": swap}, "sharing": {"enabled": False},
                 "compression": {"enabled": False}, "balloon": {"enabled": False},
                 "admission_control": admission_control},
        "vm": [{"name": "hog", "count": 2, "memory": "96MiB",
                "workload": {"profile": "memhog", "size": "80MiB", "rate": "64MiB",
                             "content": "encrypted"}}],
    })


@pytest.fixture
def allocs(monkeypatch):
    """Machine frames in use after every machine frame allocation of the runs started in
    the test, as (frames in use, frames the host has)."""
    from hypervisor.machine import MachineMemory

    seen = []
    alloc = MachineMemory.alloc

    def checked(self, owner, data, force=False):
        mpn = alloc(self, owner, data, force)
        if mpn >= 0:
            seen.append((self.nr_used, self.nr_frames))
        return mpn

    monkeypatch.setattr(MachineMemory, "alloc", checked)
    return seen


@pytest.mark.parametrize("techniques", ["swap only", "all"])
def test_a_host_with_swap_room_never_uses_more_frames_than_it_has(techniques, allocs, tmp_path):
    # issue 12 s.3: with no free frame the allocating VM waits for the host's reclaim
    # (the write to swap of a victim completing, or compression) instead of overdrawing:
    # checked at every allocation and every sample
    cfg = _tight("1GiB")
    if techniques == "all":
        data = cfg.model_dump(mode="json")
        for key in ("sharing", "compression", "balloon"):
            data["host"][key]["enabled"] = True
        cfg = config_from_dict(data)
    s = run_experiment(cfg, tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert len(allocs) > 2 * 80 * 256  # both hogs' 80 MiB at least
    assert [(used, frames) for used, frames in allocs if used > frames] == []
    rows = list(csv.DictReader((tmp_path / "timeseries.csv").open()))
    host_mib = s["host_memory_mib"]
    assert all(float(r["host_used_mib"]) <= host_mib for r in rows)
    assert s["overdraft_peak_mib"] == 0 and s["overdraft_s"] == 0 and s["overdraft_allocs"] == 0
    assert s["reclaimed_swap_mib"] > 0
    # the VMs did wait for frames
    assert s["cost"]["nomem_waits"] > 0


def test_an_overdrawn_host_is_shown_not_clamped(tmp_path):
    """With no room left and nothing to reclaim (no swap) the allocating VM is charged a
    stall and the host overdraws: summary.json has the peak and the seconds, report.md
    says so at the top, and timeseries.csv shows the used memory above the host's. (ESX's
    admission control would refuse both VMs, their swap files do not fit: the overdraft
    is what a host powering them on without it does.)"""
    s = run_experiment(_tight("0B", admission_control=False), tmp_path)
    assert s["status"] == "ok", s["traceback"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["overdraft_peak_mib"] > 0 and summary["overdraft_s"] > 0
    assert summary["overdraft_allocs"] > 0
    rows = list(csv.DictReader((tmp_path / "timeseries.csv").open()))
    over = [r for r in rows if float(r["host_overdraft_mib"]) > 0]
    assert over
    host_mib = summary["host_memory_mib"]
    for r in over:
        assert float(r["host_used_mib"]) == pytest.approx(host_mib + float(r["host_overdraft_mib"]))
        assert float(r["host_free_mib"]) == pytest.approx(-float(r["host_overdraft_mib"]))
    assert max(float(r["host_overdraft_mib"]) for r in rows) <= summary["overdraft_peak_mib"]
    report = (tmp_path / "report.md").read_text()
    assert report.index("## Host memory overdrawn") < report.index("## What was simulated")
