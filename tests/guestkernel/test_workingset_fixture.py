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
mem_cgroup_flush_stats_ratelimited) and deactivates far more; they are not compared (the
replay does not pass time: see below).

The guest has the recording machine's CPUs (CPUS: this machine's `nproc`, the same
6.18.44-fc kernel) and reclaims the root memory cgroup's lruvec, whose statistics lag as
6.8+'s rstat makes them (memcontrol.py; memcg_stats_flush "6.8", the recording kernel's
rules, pinned in every replay here). The polled case is replayed on a clock that
does not move (the reads take no simulated time: no periodic flush, the ratelimit never
expires) with a memory.stat poller: its flushes, each as soon as the pending updates pass
MEMCG_CHARGE_BATCH * CPUS, are the only ones, as the real poller's were (but for at most
one periodic flush in each real step of 0.05-2.8 s). The other cases run without a clock,
where the lag is not modelled.
"""

from __future__ import annotations

import functools
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
# num_online_cpus of the recording machine (this machine: `nproc` 2, kernel
# 6.18.44-fc as the fixture's): the memcg flush threshold is MEMCG_CHARGE_BATCH * CPUS
CPUS = 2


def replay(memory: int, case: dict) -> list[dict]:
    """Read the case's files in its order in a fresh guest; per step the deltas of
    workingset_refault_file and workingset_activate_file, and the cache after it. A
    "-polled" case runs on a clock that stands still, with a memory.stat poller."""
    # the real runs reclaimed at a memory cgroup's limit, which has no zone watermarks
    # to boost (watermark boosting is per zone): the guest standing for it does not boost
    polled = case.get("name", "").endswith("-polled")
    env = simpy.Environment() if polled else None
    k = Kernel(KernelConfig(memory=memory, watermark_boost_factor=0, cpus=CPUS,
                            memcg_stats_flush="6.8"), env=env)
    init_reclaim(k)
    if polled:
        k.memcg.pollers = 1  # measure_workingset.py's poller, reading without pause
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
    "hot file (pgdeactivate: 115, 115, 171, 226, 227) and as many refault when it is read "
    "again (99-231 activations); the guest, replayed with the root memcg's 6.8+ rstat lag "
    "(memcg_rstat_updated's per-CPU batches of 64, the flush threshold 64 x 2 CPUs, the "
    "poller flushing as soon as it is passed; inactive_is_low and prepare_scan_count "
    "reading the flushed sizes), deactivates 84 and refaults and activates 84 (under 6.1's "
    "flush rules: 73). Each direct reclaim that finds the file lists unbalanced escalates "
    "from priority 12 to 7 (its inactive list >> priority is too short to reclaim 32 pages "
    "sooner) and deactivates about 58 pages on the way (1 + 1 + 3 + 7 + 15 + 31): the real "
    "kernel's steps of about 57. The real kernel does 2-4 such escalations, the guest one "
    "and part of a second (26 pages) before the flushed sizes show the lists balanced: "
    "its lag is shorter than the real one. Every 6.1 statistics update is now counted "
    "(rmap, charges, faults, dirty, writeback, swap cache, THP): the replayed read()s make "
    "none beyond the page cache's, the LRU's and reclaim's, which were counted already, "
    "so 84 did not move; the clock stands still, so the boot's flush phase does not "
    "enter. What still differs: the lists take a page at once where lru_add holds up to "
    "31 per CPU (15 in 6.1) out of the LRU and its counts until the batch drains, and the "
    "poller flushes at the very instant the threshold is passed. Without the lag (exact "
    "sizes) the guest deactivated 89. On the second stream the real kernel activates "
    "2-80 of the refaulting stream pages, the guest none: its refault distances exceed "
    "the active list by about 300 pages or more, which the statistics' lag does not "
    "explain"))
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
# the second recording (workingset_anon_2.json, measure_workingset_anon.py as it is now;
# 6.18.44-fc-v1300, the kernel swap_timing.json was measured on): the same cases with
# every /proc/vmstat counter that moved (pgrotated, pgscan_direct, pgfault, ...), the
# cgroup's whole memory.stat and memory.failcnt, each pass's wall time, how each run
# ended, and the loop again with swap readahead by slot (vma_ra_enabled false) and
# without swap readahead (page-cluster 0). It does not supersede the first: the cases
# both hold are checked against both ("v1272", "v1300").
ANON_FIXTURE_2 = json.loads((DATA.parent / "workingset_anon_2.json").read_text())
ANON_2 = ANON_FIXTURE_2["cases"]
RECORDINGS = {"v1272": ANON, "v1300": ANON_2}
# what a clocked replay needs, measured on this machine (measure_swap_timing.py): the swap
# file's write latency and bandwidth (O_DIRECT to the recording's swap file, best of 10),
# the reader's time per page touched (anon_touch's read pass over resident pages)
SWAP_TIMING = json.loads((DATA.parent / "swap_timing.json").read_text())
# what the real kernel does with the loop's pages during its first read pass
# (measure_anon_residency.py, anon_residency.c): per look, [page about to be read, mapped,
# unmapped but in the swap cache, swapped out]
RESIDENCY = json.loads((DATA.parent / "anon_residency.json").read_text())
MiB = 1 << 20


@functools.cache
def replay_anon(memory: int, mib: int, passes: int, clocked: bool = False,
                page_cluster: int = 3, max_sectors_kb: int | None = None,
                limit: int | None = None) -> tuple[dict, ...]:
    """The passes of an anon case in a fresh guest with swap: per pass the counter deltas,
    the anonymous LRU pages after it and, in the read passes, the most pages unmapped but
    still in the swap cache before any page the reader was about to read ("unmapped":
    measure_anon_residency.py's looks, before each of its first 256 pages and every
    64th). A replay is deterministic: the same arguments give the same result, kept.
    `clocked`: the guest runs on a clock, its swap device with this machine's measured
    write latency and bandwidth (swap_timing.json), the reader stepping the clock per
    page by what the access cost the guest (faults, swap-in waits, its own direct
    reclaim) plus the loop's measured time per page, and no kswapd (a memory cgroup's
    limit has none: direct reclaim only); without a clock every swap write ends at
    once. `page_cluster`: the guest's vm.page-cluster (swap readahead windows of
    2**page_cluster). `max_sectors_kb`: its swap disk's largest request (None: the
    era's default). `limit`: as recorded (measure_workingset_anon.py), the reader runs in
    a cgroup v1 memory cgroup whose memory.limit_in_bytes is `limit` (memory.swappiness
    60, memsw unlimited) in a guest of `memory` that never reclaims globally, kswapd
    kept; None: a guest sized to stand in for the cgroup, its global direct reclaim for
    the cgroup's."""
    # the real runs reclaimed at a memory cgroup's limit, which has no zone watermarks
    # to boost (watermark boosting is per zone): the guest standing for it does not boost
    env = None
    kw = {}
    if clocked:
        env = simpy.Environment()
        dev = SWAP_TIMING["device"]["write"]
        kw = {"swap_latency": dev["latency_s"], "swap_bandwidth": int(dev["bandwidth_Bps"])}
    k = Kernel(KernelConfig(memory=memory, swap="256MiB", watermark_boost_factor=0,
                            page_cluster=page_cluster, max_sectors_kb=max_sectors_kb,
                            memcg_stats_flush="6.8", cgroup_version=1, **kw),
               env=env)
    r = init_reclaim(k)
    if limit is not None:
        cg = k.cgroup
        cg.mkdir("/sys/fs/cgroup/memory/hvsim-workingset-anon")
        cg.write("/sys/fs/cgroup/memory/hvsim-workingset-anon/memory.limit_in_bytes", str(limit))
        t = k.spawn("anon_touch")
        cg.attach(t, "/sys/fs/cgroup/memory/hvsim-workingset-anon")
        lv = cg.lookup("/sys/fs/cgroup/memory/hvsim-workingset-anon").lruvec(0)
    else:
        if clocked:
            # a guest on a clock starts its daemons; forget kswapd so that the allocator
            # never wakes it (wake_kswapd finds none): direct reclaim only, as the cgroup's
            r.kswapds.clear()
        t = k.init_task
        lv = k.reclaim.lruvecs[0]
    size = mib * MiB
    a = t.mmap(0, size, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    vm = k.vmstat
    keys = ("workingset_refault_anon", "workingset_activate_anon", "pswpin", "pswpout",
            "pgsteal_anon")
    step = SWAP_TIMING["reader"]["read_pass_s_per_page"]
    out = []
    cache = k.swap.swap_cache
    for p in range(passes):
        before = {x: vm[x] for x in keys}
        unmapped = 0
        for off in range(0, size, PAGE):
            if p == 0:
                cost = t.access(a + off, True, (off + 1).to_bytes(8, "little"))
            else:
                i = off >> 12
                if i < RESIDENCY["first"] or not i % 64:
                    n = sum(1 for page in cache.values() if page._mapcount == -1)
                    unmapped = max(unmapped, n)
                cost = t.access(a + off, False)
            if env is not None:
                env.run(until=env.now + cost + step)
        out.append({**{x: vm[x] - before[x] for x in keys}, "unmapped": unmapped,
                    "anon": lv.lists[0].nr + lv.lists[1].nr})
    k.reclaim.validate()
    return tuple(out)


def anon_real(name: str, key: str, cases: dict = ANON) -> list[list[int]]:
    """Per pass, the values of all runs that ran every pass (the second recording's loop
    runs the cgroup's OOM killer ended early are left out): the cgroup's refaults, or
    machine-wide deltas (0 when the counter did not move)."""
    case = cases[name]
    runs = [r for r in case["runs"] if len(r) == case["passes"]]
    if key == "workingset_refault_anon":
        return [[r[i]["memstat_delta"][key] for r in runs] for i in range(case["passes"])]
    return [[r[i]["vmstat_delta"].get(key, 0) for r in runs] for i in range(case["passes"])]


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


@pytest.mark.parametrize("recording", ["v1272", "v1300"])
@pytest.mark.parametrize("name", ["stream-1.5x", "fits-0.75x"])
@pytest.mark.parametrize("clocked", [False, True], ids=["unclocked", "clocked"])
def test_anon_streams_match_the_real_kernel(request, name, clocked, recording):
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
    cases = RECORDINGS[recording]
    case = cases[name]
    got = replay_anon(memory, case["mib"], case["passes"], clocked)
    for key in ("workingset_refault_anon", "workingset_activate_anon", "pswpin", "pswpout"):
        vals = anon_real(name, key, cases)
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


def residency_max(case: str) -> list[int]:
    """Per run of anon_residency.json's case, the most pages its looks found unmapped in
    the swap cache during pass 1."""
    return [max(look[2] for look in run["looks"]) for run in RESIDENCY["cases"][case]]


def test_anon_loop_without_swap_readahead_refaults_every_page_of_its_first_read_pass(
        anon_memory_clocked):
    """Without swap readahead (page-cluster 0: swapin_readahead reads the faulting slot
    alone, no plug around it), an area 1.25x the cgroup's limit read in address order is
    an LRU's worst case on the real kernel: every page is evicted before the reader comes
    back to it, so every page of the first read pass refaults and is reclaimed again
    (workingset_refault_anon = pswpin = pgsteal_anon = the area's 10240 pages; five runs
    of workingset_anon_2.json's loop-1.25x-no-ra). The guest replayed clocked with
    page_cluster 0 does the same. (In pass 0 it frees 2203 pages, the real kernel
    2125-2143; from the second read pass the guest keeps 288 pages it
    activated in pass 2 and refaults 9952 pages a pass, the real kernel 10238-10287; and
    the guest holds at most 774 pages unmapped in the swap cache in pass 1, the real
    kernel 432-704: 119 before shrink_lruvec's plug held its writes until the end of
    its loop.)"""
    case = ANON_2["loop-1.25x-no-ra"]
    assert case["page_cluster"] == 0
    got = replay_anon(anon_memory_clocked, case["mib"], 2, clocked=True, page_cluster=0)[1]
    for key in ("workingset_refault_anon", "pswpin", "pgsteal_anon"):
        vals = anon_real("loop-1.25x-no-ra", key, ANON_2)[1]
        assert near(got[key], vals), (key, got[key], vals)
    assert got["workingset_refault_anon"] >= case["mib"] * MiB // PAGE


# the loop with the swap disk's requests limited to 128 KiB and as found (4096 KiB):
# measure_swap_plug.py, swap_plug.json
SWAP_PLUG = json.loads((DATA.parent / "swap_plug.json").read_text())


def test_anon_loop_matches_the_real_kernel_whose_swap_requests_hold_one_reclaim_batch(
        anon_memory_clocked):
    """Swap readahead allocates its window inside a blk_plug (6.1 swap_cluster_readahead,
    swap_vma_readahead), so the swap writes of a reclaim one of those allocations enters
    are held in the task's plug: merged into one request (blk_attempt_plug_merge) until
    it reaches the disk's max_sectors_kb, sent only when a new request follows one of
    BLK_PLUG_FLUSH_SIZE (128 KiB) or more (blk_add_rq_to_plug). With the swap disk
    limited to 128 KiB requests, the plug holds back at most one SWAP_CLUSTER_MAX batch
    of 32 pages, and the real loop (swap_plug.json, five runs, readahead as found)
    refaults every page of every pass and activates none. So does the guest, its swap
    disk's requests limited to 128 KiB too (guestkernel/blk.py: the same plug). As found
    (4096 KiB) the real loop refaults 6400-6520 pages a pass: the xfail below."""
    case = SWAP_PLUG["cases"]["max_sectors_kb-128"]
    assert case["max_sectors_kb"] == 128 and SWAP_PLUG["page_cluster"] == 3
    runs = [r for r in case["runs"] if len(r) == SWAP_PLUG["passes"]]
    got = replay_anon(anon_memory_clocked, SWAP_PLUG["mib"], SWAP_PLUG["passes"], clocked=True,
                      max_sectors_kb=case["max_sectors_kb"])
    for i, step in enumerate(got):
        refaults = [r[i]["memstat_delta"]["workingset_refault_anon"] for r in runs]
        acts = [r[i]["vmstat_delta"].get("workingset_activate_anon", 0) for r in runs]
        assert near(step["workingset_refault_anon"], refaults), (i, step, refaults)
        assert near(step["workingset_activate_anon"], acts), (i, step, acts)


@pytest.mark.xfail(strict=True, reason=(
    "known gap: an area 1.25x the limit read in a loop refaults 6390-7639 pages in pass 1 "
    "on the real kernel (both recordings' complete runs), so 3400-3800 of its 10240 "
    "pages are found mapped or in the swap cache; from pass 2 it activates 3411-3864 "
    "pages (pgactivate) and in pass 3 workingset-activates 2400-5109 refaults. It holds "
    "5602-5990 pages unmapped in the swap cache at once during pass 1 "
    "(anon_residency.json: written, not yet freed; in one run the mapped count fell by "
    "5569 pages between two looks), the reader maps them back from the swap cache, and "
    "they are referenced twice when reclaim sees them again. It needs swap readahead "
    "(page-cluster 0, or requests limited to 128 KiB: every page refaults every pass, "
    "as in the guest; tests above): readahead allocates and charges its window inside a "
    "blk_plug, so the writes of the reclaim a charge enters are held in the task's plug "
    "(merged up to max_sectors_kb, 4 MiB on the recording disk). The guest now replays "
    "the loop as recorded: the reader in a cgroup v1 memcg limited to 32 MiB "
    "(memory.limit_in_bytes; measure_workingset_anon.py) in a 256 MiB guest that never "
    "reclaims globally, with try_charge_memcg, try_to_free_mem_cgroup_pages (nr_to_reclaim "
    "max(nr_pages, 32), no proportional reclaim, no file_is_tiny), shrink_node_memcgs and "
    "Case 3's wait (cgroup v1 is not writeback_throttling_sane). Its figures (4096 KiB "
    "requests, clocked, this machine's swap timing): pass 0 frees 2081 pages and writes "
    "2595 (real 2128-2191 and 2131-2229); pass 1 refaults 9094 and holds at most 2338 "
    "unmapped in the swap cache (2585, 9065 and 2309 before the cgroup was charged its "
    "kernel memory: the reader's page tables and VMA); it activates none, and from pass 2 refaults every page "
    "(10240). What still differs: six of its charges' reclaims go to priority 0 and write "
    "about 2350 pages each (one 881), but the writes end while the reclaimer scans on "
    "(complete_io at its own time, SCAN_COST 1 us a page scanned) and rotate their pages "
    "to the inactive tail, so each reclaim finds its 32 clean pages before it meets a page "
    "still under writeback: Case 3 never waits in this replay, and the list is not "
    "written whole as the real kernel's is. The real loop is timing-sensitive too: at a "
    "load average of 7 (workingset_anon_2.json) one run wrote the whole list in pass 0, "
    "one fell into the guest's course from pass 2 (10258 refaults a pass), and one of "
    "five was killed by the cgroup's OOM killer in pass 3"))
@pytest.mark.parametrize("recording", ["v1272", "v1300"])
def test_anon_loop_matches_the_real_kernel(recording):
    """The loop replayed as recorded: the reader in a cgroup v1 memory cgroup limited to
    32 MiB (LIMIT of measure_workingset_anon.py) in a guest large enough never to reclaim
    globally."""
    cases = RECORDINGS[recording]
    case = cases["loop-1.25x"]
    # the recordings' swap disk as found: max_sectors_kb 4096 (swap_plug.json)
    kb = SWAP_PLUG["cases"]["max_sectors_kb-4096"]["max_sectors_kb"]
    got = replay_anon(256 * MiB, case["mib"], case["passes"], clocked=True,
                      max_sectors_kb=kb, limit=32 * MiB)
    for key in ("workingset_refault_anon", "workingset_activate_anon"):
        vals = anon_real("loop-1.25x", key, cases)
        for i, step in enumerate(got):
            assert near(step[key], vals[i]), (key, i, step[key], vals[i])
    assert near(got[1]["unmapped"], residency_max("page-cluster-3")), got[1]["unmapped"]
