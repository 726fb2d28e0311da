import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypervisor.states import (
    CLEAR,
    EXIT_PCT,
    HARD,
    HIGH,
    LOW,
    SOFT,
    MemStates,
    min_free_bytes,
    state_for,
)

MIB = 1 << 20
GIB = 1 << 30


def test_min_free_rule():
    assert min_free_bytes(128 * GIB) == 1923 * MIB  # 899 MB + 1 % of 100 GB
    assert min_free_bytes(28 * GIB) == 899 * MIB
    # below 28 GB, the sliding scale 6 % / 4 % / 2 % of the first 4 / next 8 / next 16 GB,
    # whose 0.88 GB at 28 GB stands for the documented 899 MB
    assert min_free_bytes(4 * GIB) == 899 * MIB * (6 * 4) // (6 * 4 + 4 * 8 + 2 * 16)
    assert min_free_bytes(14 * GIB) == 899 * MIB * (6 * 4 + 4 * 8 + 2 * 2) // 88
    assert min_free_bytes(2560 * MIB) == 899 * MIB * 6 * 2560 // (88 * 1024)  # 153.2 MiB
    assert min_free_bytes(64 * MIB) == 899 * MIB * 6 * 64 // (88 * 1024)  # 3.8 MiB: 6 %
    assert min_free_bytes(28 * GIB - 4096) < 899 * MIB  # continuous and rising at 28 GB


@settings(max_examples=60, deadline=None)
@given(st.integers(16 * 4096, 256 * GIB), st.integers(1, 64 * GIB))
def test_min_free_rises_with_host_memory_and_its_share_falls(host, more):
    a, b = min_free_bytes(host), min_free_bytes(host + more)
    assert a <= b
    assert (a + 1) * (host + more) >= b * host  # the fraction kept free never grows (± 1 B)


@pytest.mark.parametrize(
    "pct,state", [(500, HIGH), (100, HIGH), (99.9, CLEAR), (64, CLEAR), (63, SOFT), (31, HARD), (15.9, LOW)]
)
def test_thresholds(pct, state):
    assert state_for(pct) == state


def test_states_follow_free_memory_with_hysteresis_and_record_residence():
    s = MemStates(1000)  # minFree = 1000 pages
    trace = []
    for t, free in enumerate([5000, 900, 600, 300, 150, 200, 310, 320, 700, 999, 1000, 3000, 4000]):
        trace.append(s.update(free, float(t)))
    #   free:  5000 900  600  300  150  200  310  320   700   999  1000  3000  4000
    assert trace == [HIGH, CLEAR, SOFT, HARD, LOW, LOW, LOW, HARD, SOFT, SOFT, CLEAR, CLEAR, HIGH]
    assert s.transitions == 8
    res = s.residence_times(13.0)
    assert res == {"high": 1.0 + 1.0, "clear": 1.0 + 2.0, "soft": 1.0 + 2.0, "hard": 1.0 + 1.0, "low": 3.0}


def test_techniques_per_state():
    s = MemStates(100)
    s.update(500)
    assert s.allows("sharing") and not s.allows("break_large_pages") and not s.allows("balloon")
    s.update(300)
    assert s.state == HIGH and s.allows("break_large_pages")  # below 400 %
    s.update(50)
    assert s.allows("balloon") and not s.allows("swap")
    s.update(20)
    assert s.allows("swap") and s.allows("compression") and not s.allows("balloon")
    s.update(10)
    assert s.allows("block") and not s.allows("sharing")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 600), min_size=1, max_size=40))
def test_state_is_never_better_than_the_thresholds_and_worse_only_inside_hysteresis(frees):
    s = MemStates(100)  # free pages == percent of minFree
    for t, free in enumerate(frees):
        state = s.update(free, float(t))
        assert state >= state_for(free)
        if state > state_for(free):
            assert free < EXIT_PCT[state]  # still below the threshold that lets it rise
    total = sum(s.residence_times(float(len(frees))).values())
    assert total == pytest.approx(len(frees))


def test_thresholds_are_whole_pages_and_reaching_one_leaves_the_state():
    s = MemStates(980)  # thresholds floor(980 x % / 100): 3920 / 980 / 627 / 313 / 156
    assert s.enter[1:] == [980, 627, 313, 156] and s.exit[1:] == [3920, 980, 627, 313]
    assert s.large_pages_min == 3920
    assert s.update(150) == LOW
    assert s.update(313) == HARD  # 32 % of 980 is 313.6: page 313 counts as reached
    assert s.update(627) == SOFT  # what the host's reclaim frees up to: hard is left
    assert s.update(626) == SOFT
    assert s.update(312) == HARD
    assert s.update(3919) == CLEAR and not s.large_pages_ok
    assert s.update(3920) == HIGH and s.large_pages_ok
