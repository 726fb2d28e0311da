"""The page-state diagram balances (issue 19): every change of a guest page's course
state is counted, so over a run, for every state, the pages in it at the end equal the
arcs into it minus the arcs out of it (every state starts empty at boot)."""

import pytest
import simpy

from experiments.config import config_from_dict
from experiments.scenario import Scenario
from guestkernel.vmstat import ARC_NAMES, ST_CLEAN, ST_FREE, STATE_NAMES, page_state


def arcs(vmstat: dict) -> dict[tuple[int, int], int]:
    out = {}
    for f in range(5):
        for t in range(5):
            name = ARC_NAMES[f * 5 + t]
            if name is not None:
                out[f, t] = vmstat.get(name, 0)
    out[ST_CLEAN, ST_FREE] += vmstat.get("pgstate_9", 0)  # reclaimed (the owner's apart)
    return out


def populations(kernel) -> list[int]:
    pop = [0] * 5
    for lv in kernel.reclaim.lruvecs:
        for lst in lv.lists:
            for page in lst:
                pop[page_state(page)] += 1
    return pop


@pytest.mark.parametrize("era", ["6.x", "2.6"])
def test_page_states_balance_over_a_run_with_reclaim_swap_and_writeback(era):
    cfg = config_from_dict({
        "experiment": {"name": "states", "duration": "3s", "seed": 5},
        "host": {"memory": "512MiB", "sharing": {"enabled": False}},
        "vm": [{"name": "db", "memory": "64MiB", "image": "alpine-3.19",
                "kernel": {"swap": "64MiB", "era": era},
                "workload": {"profile": "database", "buffer_pool": "48MiB", "data_file": "64MiB",
                             "page_cache": "8MiB", "ops_rate": 100000.0, "zipf_s": 0.5,
                             "write_fraction": 0.3}}]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    sc.start()
    env.run(until=3.0)
    k = sc.host.vms[0].kernel
    k.reclaim.validate()  # every page's counted state is its state now
    vm = k.vmstat
    assert vm["pgscan_kswapd"] + vm["pgscan_direct"] > 0 and vm["pswpout"] > 0  # reclaim ran
    a = arcs(vm)
    pop = populations(k)
    for s in range(1, 5):
        into = sum(n for (f, t), n in a.items() if t == s)
        out = sum(n for (f, t), n in a.items() if f == s)
        assert into - out == pop[s], f"{STATE_NAMES[s]}: in {into} - out {out} != {pop[s]} pages"
    new = sum(n for (f, t), n in a.items() if f == ST_FREE)
    freed = sum(n for (f, t), n in a.items() if t == ST_FREE)
    assert new - freed == sum(pop)


def test_report_lists_mainline_arcs_and_the_pages_in_each_state(tmp_path):
    """report.md's transition table carries the arcs outside the course's nine and the
    pages in each state at the end; the diagram draws them (dashed)."""
    from experiments import report as R

    cfg = config_from_dict({
        "experiment": {"name": "states", "duration": "2s", "seed": 5},
        "host": {"memory": "512MiB", "sharing": {"enabled": False}},
        "output": {"dir": str(tmp_path / "run")},
        "vm": [{"name": "db", "memory": "64MiB", "image": "alpine-3.19",
                "kernel": {"swap": "64MiB"},
                "workload": {"profile": "database", "buffer_pool": "48MiB", "data_file": "64MiB",
                             "ops_rate": 100000.0, "zipf_s": 0.5, "write_fraction": 0.3}}]})
    from experiments.runner import run_experiment

    summary = run_experiment(cfg, tmp_path / "run", write_report=False)
    assert summary["status"] == "ok", summary.get("error")
    ps = summary["vms"]["db"]["page_states"]
    pages = summary["vms"]["db"]["page_state_pages"]
    assert ps["pgstate_free_dirty"] > 0  # 6.x: new anonymous pages start inactive
    text = R.write_report(tmp_path / "run").read_text()
    assert f"|  | free -> inactive dirty | new anonymous page (6.x: inactive) | {ps['pgstate_free_dirty']:,} |" in text
    assert (f"inactive dirty {pages['inactive dirty']:,}, being written {pages['being written']:,}, "
            f"inactive clean {pages['inactive clean']:,}") in text
    fig = R.plot_page_states(summary)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert f"{ps['pgstate_free_dirty']:,}" in labels
