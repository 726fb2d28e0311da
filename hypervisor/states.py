"""Free-memory states (ESXi 6.x) and the techniques each one enables.

minFree = 899 MB for the first 28 GB of host memory + 1 % of the rest (128 GB -> 1923 MB).
Below 28 GB ESXi's sliding scale (Mem.MemMinFreePct) applies: 6 % of the first 4 GB, 4 %
of the next 8 GB, 2 % of the next 16 GB -- normalised so that 28 GB gives the documented
899 MB (the raw scale gives 901 MB there). A small host therefore keeps a larger share of
its memory free than a large one, as a real one does (2.5 GiB -> 153 MiB, 6 %; a plain
proportion of 899 MB / 28 GB would give 80 MiB, 3.1 %, and a soft band too narrow for
ballooning to act in). `min_free` can also be set explicitly.

States, from free machine memory as a percentage of minFree:

    state   entered below   techniques
    high    (>= 100 %)      sharing; large pages kept while free >= 400 %, broken below
    clear   100 %           sharing, large pages broken
    soft     64 %           sharing, balloon
    hard     32 %           sharing, compression, swap (no new ballooning)
    low      16 %           compression, swap, VMs that allocate are blocked

Hysteresis: a state is entered as soon as free memory drops below its threshold, but left
upwards only when free memory reaches the threshold of the state above it (low -> hard at
32 %, hard -> soft at 64 %, soft -> clear at 100 %, clear -> high at 400 %). Thresholds
are whole pages, floor(minFree x % / 100): the host's reclaim in hard and low frees
memory up to exactly the soft threshold, which then leaves hard.
"""

from __future__ import annotations

from guestkernel.units import PAGE_SIZE

HIGH, CLEAR, SOFT, HARD, LOW = range(5)
STATE_NAMES = ("high", "clear", "soft", "hard", "low")

ENTER_PCT = (None, 100, 64, 32, 16)  # % of minFree below which each state is entered
EXIT_PCT = (None, 400, 100, 64, 32)  # % of minFree at which each state is left upwards
LARGE_PAGE_PCT = 400  # below this, large pages are broken

TECHNIQUES = (
    frozenset({"sharing"}),
    frozenset({"sharing", "break_large_pages"}),
    frozenset({"sharing", "break_large_pages", "balloon"}),
    frozenset({"sharing", "break_large_pages", "compression", "swap"}),
    frozenset({"break_large_pages", "compression", "swap", "block"}),
)

_MIB = 1 << 20  # VMware's "MB" in the minFree rule
_GIB = 1 << 30


# Mem.MemMinFreePct's sliding scale below 28 GB: (band end, percent of the band)
SLIDING_SCALE = ((4 * _GIB, 6), (12 * _GIB, 4), (28 * _GIB, 2))


def min_free_bytes(host_bytes: int) -> int:
    """ESXi minFree for a host of `host_bytes` (bytes): 899 MB + 1 % above 28 GB, the
    sliding scale below (normalised to 899 MB at 28 GB)."""
    first = 28 * _GIB
    base = 899 * _MIB
    if host_bytes >= first:
        return base + (host_bytes - first) // 100
    return base * _sliding_scale(host_bytes) // _sliding_scale(first)


def _sliding_scale(host_bytes: int) -> int:
    """100 x the raw sliding-scale minFree of a host of `host_bytes` (bytes)."""
    total = 0
    start = 0
    for end, pct in SLIDING_SCALE:
        if host_bytes > start:
            total += pct * (min(host_bytes, end) - start)
        start = end
    return total


def state_for(free_pct: float) -> int:
    """State from free memory (% of minFree) with no history."""
    state = HIGH
    for s in (CLEAR, SOFT, HARD, LOW):
        if free_pct < ENTER_PCT[s]:
            state = s
    return state


class MemStates:
    """The host's memory state machine. Times in seconds, memory in pages."""

    def __init__(self, min_free_pages: int) -> None:
        if min_free_pages < 1:
            raise ValueError(f"min_free: must be at least one page, got {min_free_pages}")
        self.min_free = min_free_pages  # pages
        # thresholds in whole pages, floor(minFree x percent / 100): the host's reclaim
        # aims at exactly these, so reaching one must count as reaching it
        self.enter = [None] + [self.pages_at(p) for p in ENTER_PCT[1:]]
        self.exit = [None] + [self.pages_at(p) for p in EXIT_PCT[1:]]
        self.large_pages_min = self.pages_at(LARGE_PAGE_PCT)
        self.state = HIGH
        self.large_pages_ok = True  # free >= 400 % of minFree
        self.since = 0.0  # time the current state was entered
        self.residence = [0.0] * 5  # seconds spent in each state (closed intervals)
        self.transitions = 0
        self.log: list[tuple[float, str]] = []  # (time, state entered)

    def pct(self, free_pages: int) -> float:
        return 100.0 * free_pages / self.min_free

    def pages_at(self, pct: float) -> int:
        """The threshold `pct` % of minFree, in whole pages (rounded down)."""
        return int(self.min_free * pct // 100)

    def update(self, free_pages: int, now: float = 0.0) -> int:
        """Re-evaluate from the free page count; returns the (possibly new) state."""
        self.large_pages_ok = free_pages >= self.large_pages_min
        cur = self.state
        enter = self.enter
        new = HIGH
        for s in (CLEAR, SOFT, HARD, LOW):
            if free_pages < enter[s]:
                new = s
        if new < cur:
            # rising: past each state's exit threshold only
            new = cur
            exit_ = self.exit
            while new > HIGH and free_pages >= exit_[new]:
                new -= 1
        if new != cur:
            self.residence[cur] += now - self.since
            self.since = now
            self.state = new
            self.transitions += 1
            self.log.append((now, STATE_NAMES[new]))
        return self.state

    def residence_times(self, now: float) -> dict[str, float]:
        """Seconds spent in each state up to `now`."""
        res = list(self.residence)
        res[self.state] += now - self.since
        return dict(zip(STATE_NAMES, res, strict=True))

    def allows(self, technique: str) -> bool:
        if technique == "break_large_pages" and not self.large_pages_ok:
            return True
        return technique in TECHNIQUES[self.state]

    @property
    def name(self) -> str:
        return STATE_NAMES[self.state]


def pages(nbytes: int) -> int:
    return nbytes // PAGE_SIZE


class StateMonitor:
    """Re-evaluates the host's memory state every `interval` seconds (SimPy process)."""

    def __init__(self, env, host, interval: float = 1.0) -> None:
        self.env = env
        self.host = host
        self.interval = interval
        self.process = env.process(self._run())

    def _run(self):
        env = self.env
        host = self.host
        while True:
            host.check_state()
            t_next = env.now + self.interval
            # frames being written to swap free up when their writes complete: look again
            # then (one event), not only a whole interval later
            swap = host.swap
            if swap.nr_inflight and swap.busy_until < t_next:
                yield env.timeout(max(0.0, swap.busy_until - env.now))
                host.settle()
            yield env.timeout(max(0.0, t_next - env.now))
