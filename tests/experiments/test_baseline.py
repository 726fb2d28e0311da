"""`[experiment] baseline = true`: the same VMs on a host with memory for all of them and no
reclamation (scenario.baseline_config), and each VM's slowdown against it."""

from experiments.config import config_from_dict, size
from experiments.runner import baseline_summary
from experiments.scenario import baseline_config


def test_baseline_host_has_memory_for_every_guest_and_no_reclamation():
    cfg = config_from_dict({
        "experiment": {"baseline": True},
        "host": {"memory": "192MiB", "cpus": 2},
        "vm": [{"name": "web", "count": 2, "memory": "64MiB"}, {"name": "db", "memory": "160MiB"}],
    })
    base = baseline_config(cfg)
    guests = (2 * 64 + 160) << 20
    assert size(base.host.memory) >= guests + guests // 8
    h = base.host
    assert not h.sharing.enabled and not h.compression.enabled and not h.balloon.enabled
    assert h.cpus == 2  # the same CPUs: only memory differs
    assert [v.name for v in base.vm] == ["web", "db"] and base.vm[0].count == 2
    assert base.experiment.baseline is False  # (no baseline of the baseline)


def test_slowdown_is_baseline_time_per_unit_of_work_over_the_runs():
    summary = {"vms": {"a": {"throughput": 50.0}, "b": {"throughput": 0.0}}}
    out = baseline_summary(summary, {"a": {"throughput": 100.0}, "b": {"throughput": 10.0}})
    assert out["a"] == {"throughput": 100.0, "relative_throughput": 0.5, "slowdown": 2.0}
    assert out["b"] == {"throughput": 10.0, "relative_throughput": 0.0, "slowdown": None}
