"""prctl(PR_SET_THP_DISABLE / PR_GET_THP_DISABLE) in an strace replay: the lines below are
strace 6.x's own output for a program calling prctl(42), prctl(41, 1), prctl(42),
prctl(41, 1, 0, 1) and prctl(PR_SET_NAME) on this machine's kernel."""

from __future__ import annotations

from experiments.replay import Replayer, boot_guest, parse_trace

LINES = [
    "1  prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)   = 0",
    "1  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)   = 0",
    "1  prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0)   = 1",
    "1  prctl(PR_SET_THP_DISABLE, 1, 0, 0x1, 0) = -1 EINVAL (Invalid argument)",
    '1  prctl(PR_SET_NAME, "x")                 = 0',
]


def test_thp_disable_prctls_replay_without_divergence_and_others_are_skipped():
    out = []
    r = Replayer(boot_guest("256MiB"), out.append)
    assert r.run(parse_trace(LINES)) == (4, 0), out
    assert r.skipped == {"prctl": 1}
    assert r.task_of(1).mm.thp_disabled


def test_a_wrong_recorded_result_is_a_divergence():
    out = []
    r = Replayer(boot_guest("256MiB"), out.append)
    assert r.run(parse_trace(["1  prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) = 1"])) == (1, 1)
    assert out and "simulated 0" in out[0]
