"""Workingset detection against this machine's kernel (tests/data/workingset: the script
measure_workingset.py and what it recorded, workingset.json): files read sequentially with
read() of 128 KiB in a memory cgroup limited to 32 MiB, memory.stat's
workingset_refault_file and /proc/vmstat's workingset_activate_file before and after each
read, five runs of each case. The guest replays the same reads with a page cache that
holds what the cgroup held (its memory is sized so that a stream leaves as many pages
cached as the cgroup's did), and each step's counts must lie within the spread of the real
runs. /proc/vmstat is machine-wide: other processes' activations add to the real
activation counts, so the bottom of their spread is taken per run as the count minus
the activations seen machine-wide in an idle interval of the same length right after the
step ("background"), never below 0.

Cases compared: a 1.5x-limit file read twice (every page of the second read refaults, none
is activated: nothing is active), a 1.25x-limit file read three times (the same), a file
that fits read twice (no refault), and a hot file read twice, a stream, the hot file, the
stream and the hot file again, with the cgroup's statistics kept fresh by a process
reading its memory.stat without pause ("hot-stream-polled"). The same sequence without the
poller ("hot-stream") and with a slow stream ("hot-stream-slow") are recorded too: there
the cgroup's reclaim reads LRU sizes flushed up to 2 s late (6.8+
mem_cgroup_flush_stats_ratelimited) and deactivates far more; a guest's reclaim of its
own node has no such lag, so they are not compared.
"""

from __future__ import annotations

import json
import pathlib

import pytest
import simpy

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.vmscan import init_reclaim

DATA = pathlib.Path(__file__).parent.parent / "data" / "workingset" / "workingset.json"
FIXTURE = json.loads(DATA.read_text())
CASES = {c["name"]: c for c in FIXTURE["cases"]}
PAGE = 4096
CHUNK = 128 << 10


def replay(memory: int, case: dict) -> list[dict]:
    """Read the case's files in its order in a fresh guest; per step the deltas of
    workingset_refault_file and workingset_activate_file, and the cache after it."""
    # the real runs reclaimed at a memory cgroup's limit, which has no zone watermarks
    # to boost (watermark boosting is per zone): the guest standing for it does not boost
    k = Kernel(memory=memory, watermark_boost_factor=0)
    init_reclaim(k)
    t = k.init_task
    for f, size in case["files"].items():
        k.fs.create(f"/ws/{f}", size)
    buf = t.mmap(0, CHUNK, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    vm = k.vmstat
    out = []
    for step in case["sequence"]:
        f = step.split("/")[0]
        r0, a0 = vm["workingset_refault_file"], vm["workingset_activate_file"]
        fd = t.open(f"/ws/{f}")  # a new struct file per read, as each dd opens it
        while t.read(fd, buf, CHUNK) > 0:
            pass
        t.close(fd)
        lv = k.reclaim.lruvecs[0]
        out.append({"refault": vm["workingset_refault_file"] - r0,
                    "activate": vm["workingset_activate_file"] - a0,
                    "cached": lv.lists[2].nr + lv.lists[3].nr})
    k.reclaim.validate()
    return out


def real(case: dict, key: str) -> list[list[int]]:
    """Per step, the values of all runs ("activate_own": minus the background)."""
    out = []
    for i in range(len(case["sequence"])):
        if key == "refault":
            vals = [r["steps"][i]["memory.stat"]["workingset_refault_file"] for r in case["runs"]]
        elif key == "activate":
            vals = [r["steps"][i]["vmstat"]["workingset_activate_file"] for r in case["runs"]]
        elif key == "activate_own":
            vals = [max(r["steps"][i]["vmstat"]["workingset_activate_file"]
                        - r["steps"][i]["background"]["workingset_activate_file"], 0)
                    for r in case["runs"]]
        else:
            vals = [r["steps"][i]["memory.stat_after"]["cache"] // PAGE for r in case["runs"]]
        out.append(vals)
    return out


def _capacity(memory: int) -> int:
    return replay(memory, {"files": {"s": 48 << 20}, "sequence": ["s"]})[0]["cached"]


@pytest.fixture(scope="module")
def guest_memory() -> int:
    """Guest memory whose page cache holds what the cgroup's did after the first read of
    the 1.5x stream (the median of the runs), by the secant method from 48 and 52 MiB."""
    target = sorted(real(CASES["stream-1.5x"], "cached")[0])[len(CASES["stream-1.5x"]["runs"]) // 2]
    m0, m1 = 48 << 20, 52 << 20
    c0, c1 = _capacity(m0), _capacity(m1)
    m = m0 + (target - c0) * (m1 - m0) // (c1 - c0)
    m -= m % PAGE
    assert abs(_capacity(m) - target) <= target // 200  # sized within 0.5%
    return m


def in_spread(value: int, vals: list[int]) -> bool:
    return min(vals) <= value <= max(vals)


def activations(case: dict) -> list[list[int]]:
    """Per step, the bounds of the real activations: [min over runs of the count minus
    its background, max over runs of the count]."""
    own, raw = real(case, "activate_own"), real(case, "activate")
    return [[min(o), max(r)] for o, r in zip(own, raw)]


@pytest.mark.parametrize("name", ["stream-1.5x", "loop-1.25x", "fits-0.75x"])
def test_streams_refault_and_activation_match_the_real_kernel(guest_memory, name):
    case = CASES[name]
    got = replay(guest_memory, case)
    refaults, acts = real(case, "refault"), activations(case)
    for i, step in enumerate(got):
        assert in_spread(step["refault"], refaults[i]), (name, i, step, refaults[i])
        assert in_spread(step["activate"], acts[i]), (name, i, step, acts[i])


def test_hot_file_pushed_out_by_a_stream_matches_where_the_lists_agree(guest_memory):
    # steps: a (cold), a (activated), b (stream), a, b, a
    case = CASES["hot-stream-polled"]
    got = replay(guest_memory, case)
    refaults, acts = real(case, "refault"), activations(case)
    for i in (0, 1, 2, 5):
        assert in_spread(got[i]["refault"], refaults[i]), (i, got[i], refaults[i])
        assert in_spread(got[i]["activate"], acts[i]), (i, got[i], acts[i])
    # the second stream: every one of its pages refaults, as in every run
    assert got[4]["refault"] == 8192 and refaults[4] == [8192] * len(case["runs"])
    # the hot file's refaults after the first stream are all activated (their distance
    # is within the active list) and restored (PG_workingset: they were deactivated)
    assert got[3]["refault"] == got[3]["activate"] > 0


@pytest.mark.xfail(strict=True, reason=(
    "known gap: during the first stream the real kernel deactivates 115-227 pages of the "
    "hot file (pgdeactivate) and 115-227 of them refault when it is read again (99-231 "
    "activations); the guest deactivates only until inactive >= active (inactive_is_low): "
    "89 pages, 89 refaults, 89 activations. On the second stream the real kernel "
    "activates 2-80 of the refaulting stream pages, the guest none. Cause: "
    "inactive_is_low and get_scan_count read the lruvec's sizes from memory-cgroup "
    "statistics (lruvec_page_state), which rstat folds in only once the pending updates "
    "exceed MEMCG_CHARGE_BATCH (64) per CPU (6.1 mem_cgroup_flush_stats: "
    "stats_flush_threshold > num_online_cpus, each step 64 updates; 6.8+ "
    "memcg_vmstats_needs_flush), so reclaim goes on deactivating for up to 64 x 2 CPUs "
    "= 128 page moves after the lists have balanced: the real deactivations come in "
    "steps of about 57 (active >> 6), 26-138 beyond the guest's 89. The guest's lists "
    "are counted exactly (6.1's root lruvec lags the same way: not modelled)"))
def test_hot_file_refaults_after_a_stream_within_the_real_spread(guest_memory):
    case = CASES["hot-stream-polled"]
    got = replay(guest_memory, case)
    refaults, acts = real(case, "refault"), activations(case)
    assert in_spread(got[3]["refault"], refaults[3]), (got[3], refaults[3])
    assert in_spread(got[3]["activate"], acts[3]), (got[3], acts[3])
    assert in_spread(got[4]["activate"], acts[4]), (got[4], acts[4])


# ---------------------------------------------------------------------------- anonymous
# tests/data/workingset/workingset_anon.json (measure_workingset_anon.py, anon_touch.c): a
# process in a cgroup limited to 32 MiB, with a swap file, writes an anonymous area once
# (pass 0) and reads it page by page in address order in every later pass; three runs of
# each case. Per pass: memory.stat (workingset_refault_anon, rss) and /proc/vmstat deltas
# (pswpin, pswpout, workingset_activate_anon, ...), machine-wide but nothing else swapped.
ANON_FIXTURE = json.loads((DATA.parent / "workingset_anon.json").read_text())
ANON = ANON_FIXTURE["cases"]
# what a clocked replay needs, measured on this machine (measure_swap_timing.py): the swap
# file's write latency and bandwidth (O_DIRECT to the recording's swap file, best of 10),
# the reader's time per page touched (anon_touch's read pass over resident pages)
SWAP_TIMING = json.loads((DATA.parent / "swap_timing.json").read_text())
MiB = 1 << 20


def replay_anon(memory: int, mib: int, passes: int, clocked: bool = False) -> list[dict]:
    """The passes of an anon case in a fresh guest with swap: per pass the counter deltas
    and the anonymous LRU pages after it. `clocked`: the guest runs on a clock, its swap
    device with this machine's measured write latency and bandwidth (swap_timing.json),
    the reader stepping the clock per page by what the access cost the guest (faults,
    swap-in waits, its own direct reclaim) plus the loop's measured time per page, and
    no kswapd (a memory cgroup's limit has none: direct reclaim only); without a clock
    every swap write ends at once."""
    # the real runs reclaimed at a memory cgroup's limit, which has no zone watermarks
    # to boost (watermark boosting is per zone): the guest standing for it does not boost
    env = None
    kw = {}
    if clocked:
        env = simpy.Environment()
        dev = SWAP_TIMING["device"]["write"]
        kw = {"swap_latency": dev["latency_s"], "swap_bandwidth": int(dev["bandwidth_Bps"])}
    k = Kernel(KernelConfig(memory=memory, swap="256MiB", watermark_boost_factor=0, **kw),
               env=env)
    r = init_reclaim(k)
    if clocked:
        # a guest on a clock starts its daemons; forget kswapd so that the allocator never
        # wakes it (wake_kswapd finds none): direct reclaim only, as the cgroup's
        r.kswapds.clear()
    t = k.init_task
    size = mib * MiB
    a = t.mmap(0, size, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    vm = k.vmstat
    keys = ("workingset_refault_anon", "workingset_activate_anon", "pswpin", "pswpout")
    step = SWAP_TIMING["reader"]["read_pass_s_per_page"]
    out = []
    for p in range(passes):
        before = {x: vm[x] for x in keys}
        for off in range(0, size, PAGE):
            if p == 0:
                cost = t.access(a + off, True, (off + 1).to_bytes(8, "little"))
            else:
                cost = t.access(a + off, False)
            if env is not None:
                env.run(until=env.now + cost + step)
        lv = k.reclaim.lruvecs[0]
        out.append({**{x: vm[x] - before[x] for x in keys}, "anon": lv.lists[0].nr + lv.lists[1].nr})
    k.reclaim.validate()
    return out


def anon_real(name: str, key: str) -> list[list[int]]:
    """Per pass, the values of all runs: the cgroup's refaults, or machine-wide deltas."""
    runs = ANON[name]["runs"]
    if key == "workingset_refault_anon":
        return [[r[i]["memstat_delta"][key] for r in runs] for i in range(len(runs[0]))]
    return [[r[i]["vmstat_delta"][key] for r in runs] for i in range(len(runs[0]))]


# the process's own anonymous pages beside the area (stack, libc data): the cgroup's rss
# beyond the 24 MiB area that fits (the same in every run); they swap too, so they bound
# how far the real swap counts can stray from the area's own
NOISE = max(r[0]["memstat"]["rss"] // PAGE for r in ANON["fits-0.75x"]["runs"]) - (24 * MiB) // PAGE


def _anon_memory(clocked: bool) -> int:
    rss = sorted(r[0]["memstat"]["rss"] // PAGE for r in ANON["stream-1.5x"]["runs"])
    target = rss[len(rss) // 2] - NOISE

    def cap(m: int) -> int:
        return replay_anon(m, 48, 1, clocked)[0]["anon"]

    m0, m1 = 48 << 20, 52 << 20
    c0, c1 = cap(m0), cap(m1)
    m = m0 + (target - c0) * (m1 - m0) // (c1 - c0)
    m -= m % PAGE
    assert abs(cap(m) - target) <= target // 200
    return m


@pytest.fixture(scope="module")
def anon_memory() -> int:
    """Guest memory whose anonymous LRU holds the area pages the cgroup held after the
    1.5x area's first pass (median rss less NOISE), by the secant method from 48 and
    52 MiB."""
    return _anon_memory(False)


@pytest.fixture(scope="module")
def anon_memory_clocked() -> int:
    """The same for the clocked replay (pages whose write is in flight stay on the LRU)."""
    return _anon_memory(True)


def near(value: int, vals: list[int]) -> bool:
    return min(vals) - NOISE <= value <= max(vals) + NOISE


def test_anon_noise_is_small():
    assert 0 < NOISE < 64


@pytest.mark.parametrize("name", ["stream-1.5x", "fits-0.75x"])
@pytest.mark.parametrize("clocked", [False, True], ids=["unclocked", "clocked"])
def test_anon_streams_match_the_real_kernel(request, name, clocked):
    """mm/workingset.c through the swap cache (6.1: shadow entries in the swap cache,
    workingset_refault from __read_swap_cache_async): a 1.5x area read back refaults
    every page in every pass, none activated (the refault distance exceeds the
    workingset); pass 1 writes the pages still resident (dirty, no slot), pass 2 none
    (they came back clean from swap and keep their slot); an area that fits never swaps.
    The same with and without the clock. Clocked, with direct reclaim only, pass 0 checks
    that a direct reclaimer's swap writes end while it works on (the completion interrupt
    runs folio_end_writeback mid-pass: the pages rotate to the inactive tail and its next
    batch frees them): ended only after each priority's pass over the node, the writer's
    first direct reclaim wrote the whole list (8066 pages; real 4216-4400)."""
    memory = request.getfixturevalue("anon_memory_clocked" if clocked else "anon_memory")
    case = ANON[name]
    got = replay_anon(memory, case["mib"], case["passes"], clocked)
    for key in ("workingset_refault_anon", "workingset_activate_anon", "pswpin", "pswpout"):
        vals = anon_real(name, key)
        for i, step in enumerate(got):
            assert near(step[key], vals[i]), (name, key, i, step[key], vals[i])


def test_swap_timing_was_measured_on_the_recording_kernel_release():
    """swap_timing.json pairs with workingset_anon.json: the same kernel release (the
    build suffix may differ), a swap device no faster than RAM and a reader that
    touches a resident page in well under a microsecond."""
    assert SWAP_TIMING["kernel"].split("-")[0] == ANON_FIXTURE["kernel"].split("-")[0]
    assert SWAP_TIMING["swapfile"] == "/var/tmp/hvsim-swap"
    dev = SWAP_TIMING["device"]["write"]
    assert 0 < dev["latency_s"] < dev["op_4k_s"]
    assert dev["latency_s"] + PAGE / dev["bandwidth_Bps"] == pytest.approx(dev["op_4k_s"])
    assert 0 < SWAP_TIMING["reader"]["read_pass_s_per_page"] < 1e-6


@pytest.mark.xfail(strict=True, reason=(
    "known gap: an area 1.25x the limit read in a loop refaults 6427-6857 pages a pass on "
    "the real kernel (about 3800 of its pages are mapped again from the swap cache each "
    "pass: unmapped by reclaim, not yet freed), pgactivate 3411-3864 in pass 2, and from "
    "the third pass 4191-5109 refaults are activated. The guest, replayed with a clock "
    "(swap device at this machine's measured swap-file write latency and bandwidth, "
    "swap_timing.json: 78 us, 3.2 GiB/s; the reader stepping by its fault costs plus the "
    "loop's measured 7 ns a page) and direct reclaim only (kswapd never woken, as under "
    "the cgroup's limit), matches pass 0 (2269 pages written, real 2173-2186; "
    "pgscan_anon 12545, real 12453-12485) and pass 1's writes (7972, real 8086-8099) but "
    "refaults every page in passes 1-3 (10241) with no activation, like a strict LRU: in "
    "pass 1 it frees 10265 pages (pgsteal_anon; real 6416-6769) and scans 26314 "
    "(real 22700-23095), freeing every written page before the reader comes back to it. "
    "Not the rotation: in both every written page is rotated to the inactive tail when "
    "its write ends (guest pgrotated 8017; a probe of the real kernel with "
    "measure_workingset_anon.py's loop case, pgrotated 7935-7967 of 7968-7978 written). "
    "What still differs is how far ahead of the reader the real memcg limit reclaim "
    "(try_charge: try_to_free_mem_cgroup_pages for the charge batch, cgroup v1) unmaps "
    "pages compared with what it frees from the rotated tail; not found"))
def test_anon_loop_matches_the_real_kernel(anon_memory_clocked):
    case = ANON["loop-1.25x"]
    got = replay_anon(anon_memory_clocked, case["mib"], case["passes"], clocked=True)
    for key in ("workingset_refault_anon", "workingset_activate_anon"):
        vals = anon_real("loop-1.25x", key)
        for i, step in enumerate(got):
            assert near(step[key], vals[i]), (key, i, step[key], vals[i])
