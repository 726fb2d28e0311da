"""Memory cgroups against this machine's kernel (tests/data/memcg: measure_memcg.py, the
task it drives (memcg_task.c) and what it recorded, memcg.json; its README says what each
case is). Linux 6.18 with the cgroup v1 memory controller, five runs per case; the guest
(6.1's rules, guestkernel/memcontrol.py and cgroup.py) mounts v1 (cgroup_version 1), has
the recording machine's CPUs (the per-CPU charge stock holds up to MEMCG_CHARGE_BATCH
pages on each), and runs the same steps through its cgroup files: mkdir, the limit
written to memory.limit_in_bytes, the task attached through cgroup.procs, the counters
read from memory.usage_in_bytes, memory.max_usage_in_bytes, memory.failcnt, memory.stat
and memory.oom_control, and /proc/vmstat.

Where the rule is exact, the guest is held to it exactly, and the recording is checked to
show the same (usage never above the limit, the watermark at the limit, limit reclaim
not counted as direct reclaim, the OOM victim the cgroup's largest task and no other,
rss moving by exactly the pages touched, a moved task's charges left behind). Counts
that depend on how the cgroup's memory is shared between the area and the rest
(failcnt, swap-outs, what stays cached) must lie within the real runs' spread; the guest
charges kernel memory as 6.1 does (page tables, stacks, SLAB_ACCOUNT objects), and its
task is started as the script started it (a shell attached through cgroup.procs, then
exec'd into memcg_task inside the cgroup), but the guest's memcg_task is a static image
with its stack and no libraries, so where the real figures carry the dynamic task's
kernel memory and pages and the guest cannot, the test is a strict xfail whose reason
gives both sides.
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

DATA = pathlib.Path(__file__).parent.parent / "data" / "memcg" / "memcg.json"
FIXTURE = json.loads(DATA.read_text())
SWAP_TIMING = json.loads((DATA.parent.parent / "workingset" / "swap_timing.json").read_text())
CASES = FIXTURE["cases"]
CPUS = FIXTURE["cpus"]  # the recording machine's online CPUs (2)
PAGE = FIXTURE["page_size"]
LIMIT = FIXTURE["limit"]  # 32 MiB
MiB = 1 << 20
BATCH = 64  # MEMCG_CHARGE_BATCH
V1 = "/sys/fs/cgroup/memory"
VMSTAT = ("pswpout", "pswpin", "pgscan_direct", "pgsteal_direct", "pgscan_kswapd",
          "pgsteal_kswapd", "pgscan_anon", "pgsteal_anon", "pgscan_file", "pgsteal_file",
          "oom_kill", "pgrotated")


def real(case: str, f) -> list:
    return [f(r) for r in CASES[case]]


def within(value: int, vals: list[int]) -> bool:
    return min(vals) <= value <= max(vals)


def boot(swap: str) -> Kernel:
    # memory enough that only the cgroup's limit reclaims (the machine had 24 GiB)
    return Kernel(memory="256MiB", swap=swap, cgroup_version=1, cpus=CPUS)


def cgroup(k: Kernel, name: str, limit: int, swappiness: int = 60) -> str:
    """measure_memcg.py's make_cg: mkdir, memory.limit_in_bytes, memory.swappiness."""
    path = f"{V1}/hvsim-cgfix-{name}"
    k.cgroup.mkdir(path)
    k.cgroup.write(f"{path}/memory.limit_in_bytes", str(limit))
    k.cgroup.write(f"{path}/memory.swappiness", str(swappiness))
    return path


def task_in(k: Kernel, path: str | None):
    """memcg_task started as measure_memcg.py's Task starts it: outside a cgroup, the
    program itself; inside one, `sh -c 'echo $$ > CG/cgroup.procs; exec "$@"'`: the shell
    (forked and exec'd outside, its task_struct and stack charged there) writes its own
    pid into cgroup.procs, then execs memcg_task, whose new mm, page tables and VMAs
    (bprm_mm_init, the ELF's mappings, setup_arg_pages) are charged to the cgroup."""
    if path is None:
        return k.spawn("memcg_task")
    if k.fs.lookup("/bin/memcg_task") is None:
        k.fs.create("/bin/memcg_task", 0)  # (the size is the static image's, set by exec)
    t = k.spawn("sh")
    k.cgroup.write(f"{path}/cgroup.procs", str(t.pid))
    t.execve("/bin/memcg_task", ["/tmp/memcg_task"])
    return t


def touch(t, nbytes: int, sample=None) -> int:
    """memcg_task's anon/pages: a private anonymous area (MADV_NOHUGEPAGE), one distinct
    non-zero word written in every page; `sample()` after every page. Returns the area."""
    a = t.mmap(0, nbytes, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.madvise(a, nbytes, U.MADV_NOHUGEPAGE)
    for off in range(0, nbytes, PAGE):
        t.access(a + off, True, (off + 1).to_bytes(8, "little"))
        if t.state != "running":
            break
        if sample is not None:
            sample()
    return a


def read_int(k: Kernel, path: str) -> int:
    return int(k.cgroup.read(path))


def read_kv(text: str) -> dict:
    return {line.split()[0]: int(line.split()[1]) for line in text.splitlines()}


def stat(k: Kernel, path: str) -> dict:
    return read_kv(k.cgroup.read(f"{path}/memory.stat"))


def vmstat(k: Kernel) -> dict:
    return {x: k.vmstat[x] for x in VMSTAT}


class Sampler:
    """measure_memcg.py's Sampler: the highest memory.usage_in_bytes read."""

    def __init__(self, k: Kernel, path: str) -> None:
        self.k, self.path, self.max = k, f"{path}/memory.usage_in_bytes", 0

    def __call__(self) -> None:
        self.max = max(self.max, read_int(self.k, self.path))


# ------------------------------------------------------------------------------- limit
def run_limit() -> dict:
    """The limit case: swap on, swappiness 60, `anon 48` in a 32 MiB cgroup. The guest runs
    on a clock, its swap device written with this machine's measured latency and
    bandwidth (tests/data/workingset/swap_timing.json, the same kernel release), the task
    stepping the clock per page by what the fault cost plus the write loop's measured time
    per page (anon_touch's, the same loop as memcg_task's): a page written to swap stays
    under writeback (PG_reclaim) and is rotated when the write ends (pgrotated), as the
    real kernel's were (pgrotated = pswpout within 30 pages); without a clock every write
    would end at once and nothing would be scanned twice. No kswapd: a cgroup's limit has
    none."""
    env = simpy.Environment()
    dev = SWAP_TIMING["device"]["write"]
    k = Kernel(KernelConfig(memory=256 * MiB, swap="256MiB", cgroup_version=1, cpus=CPUS,
                            swap_latency=dev["latency_s"],
                            swap_bandwidth=int(dev["bandwidth_Bps"])), env=env)
    k.reclaim.kswapds.clear()
    path = cgroup(k, "limit", LIMIT)
    t = task_in(k, path)
    own = stat(k, path)  # what the exec charged before the area: its stack's argv page
    v0 = vmstat(k)
    s = Sampler(k, path)
    step = SWAP_TIMING["reader"]["write_pass_s_per_page"]
    a = t.mmap(0, 48 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.madvise(a, 48 * MiB, U.MADV_NOHUGEPAGE)
    for off in range(0, 48 * MiB, PAGE):
        cost = t.access(a + off, True, (off + 1).to_bytes(8, "little"))
        env.run(until=env.now + cost + step)
        s()
    v1 = vmstat(k)
    st = stat(k, path)
    out = {"usage_max_sampled": s.max,
           "max_usage_in_bytes": read_int(k, f"{path}/memory.max_usage_in_bytes"),
           "failcnt": read_int(k, f"{path}/memory.failcnt"),
           "usage_in_bytes": read_int(k, f"{path}/memory.usage_in_bytes"),
           "alive": t.state == "running", "stat": st,
           "own_pages": own["rss"] // PAGE, "own_faults": own["pgfault"],
           "vmstat_delta": {x: v1[x] - v0[x] for x in VMSTAT}}
    k.reclaim.validate()
    return out


@pytest.fixture(scope="module")
def limit_run() -> dict:
    return run_limit()


def test_limit_usage_never_exceeds_the_limit_and_reaches_it(limit_run):
    """page_counter_try_charge refuses a charge that would take usage above max, and
    try_charge_memcg falls back from a MEMCG_CHARGE_BATCH to the page alone, so usage
    fills to the limit exactly: no read of memory.usage_in_bytes above L (real: 1587-3666
    samples per run, the highest exactly L) and max_usage_in_bytes (the watermark) = L
    in every real run. The task survives: with swap, reclaim always makes room."""
    assert real("limit", lambda r: r["usage_max_sampled"]) == [LIMIT] * 5
    assert real("limit", lambda r: r["after"]["max_usage_in_bytes"]) == [LIMIT] * 5
    assert real("limit", lambda r: r["returncode"]) == [0] * 5
    assert limit_run["usage_max_sampled"] <= LIMIT
    assert limit_run["max_usage_in_bytes"] == LIMIT
    assert limit_run["alive"]


def test_limit_reclaim_is_counted_in_pgscan_anon_not_as_direct_reclaim(limit_run):
    """6.1's shrink_inactive_list counts PGSCAN_DIRECT/PGSTEAL_DIRECT in /proc/vmstat only
    `if (!cgroup_reclaim(sc))`, and PGSCAN_ANON/PGSTEAL_ANON always; a cgroup's limit
    has no kswapd. Real: pgscan_direct, pgsteal_direct, pgscan_kswapd 0 in every run,
    pgscan_anon 16594-16706, nothing of the file lists scanned."""
    for key in ("pgscan_direct", "pgsteal_direct", "pgscan_kswapd", "pgsteal_kswapd",
                "pgscan_file", "pgsteal_file"):
        assert [r["vmstat_delta"][key] for r in CASES["limit"]] == [0] * 5, key
        assert limit_run["vmstat_delta"][key] == 0, key
    assert min(real("limit", lambda r: r["vmstat_delta"]["pgscan_anon"])) > 0
    assert limit_run["vmstat_delta"]["pgscan_anon"] > 0
    # what was stolen was swapped out: pgsteal_anon = the cgroup's pgpgout (uncharges)
    assert real("limit", lambda r: r["vmstat_delta"]["pgsteal_anon"]) == real(
        "limit", lambda r: r["after"]["stat"]["pgpgout"])
    assert limit_run["vmstat_delta"]["pgsteal_anon"] == limit_run["stat"]["pgpgout"]


def test_limit_every_page_written_is_resident_or_on_swap(limit_run):
    """Nothing is lost: the area's 12288 pages are either charged (rss) or were written
    to swap (pswpout less what came back, pswpin); v1's memory.stat pgpgin counts every
    charge (the area's pages and the swap-ins). The task's own pages count too: the
    guest's, exec'd inside the cgroup, has one (the stack page copy_strings wrote its
    argv into, charged with the new mm's)."""
    area = 48 * MiB // PAGE
    d = limit_run["vmstat_delta"]
    assert limit_run["own_pages"] == 1
    assert limit_run["stat"]["rss"] // PAGE + d["pswpout"] - d["pswpin"] == area + 1
    assert limit_run["stat"]["pgpgin"] == area + 1 + d["pswpin"]


# the second recording (memcg_kmem.json: the script as it is now, which also reads
# memory.kmem.usage_in_bytes, taken under a load average of 8.8): the kernel memory v1
# charges to the cgroup's counter beside its pages, at the end of the limit case
KMEM = json.loads((DATA.parent / "memcg_kmem.json").read_text())
KMEM_LIMIT = [r["after"]["kmem_usage_in_bytes"] // PAGE for r in KMEM["cases"]["limit"]]  # 40-43
# the real task's faults beyond the area's pages: its own text, stack, libc data
OWN_FAULTS = real("limit", lambda r: r["after"]["stat"]["pgfault"] - 48 * MiB // PAGE)  # 63-72
_KMEM_REASON = (
    f"The real cgroup's counter also held {min(KMEM_LIMIT)}-{max(KMEM_LIMIT)} pages of "
    "kernel memory at the end (memory.kmem.usage_in_bytes in memcg_kmem.json: page tables, "
    "slab; v1 charges them to the same counter) and the task's own anonymous pages "
    f"(its stack and libraries' data: it faulted {min(OWN_FAULTS)}-{max(OWN_FAULTS)} times "
    "beyond the area's pages), so its area kept fewer pages resident and swapped more. The "
    "guest's task, exec'd inside the cgroup as the real one was, charges 30 pages of kernel "
    "memory (25 when it was spawned and then attached): 6 at the exec (its new mm's 4 "
    "page-table pages and 2 of slab objects), the area's 24 PTE pages; its task_struct and "
    "stack stay with the shell's cgroup, as the real ones did. But its memcg_task is a "
    "static image: no ld.so or libc mappings, their page tables, VMAs and files, and one "
    "page of its own (the stack's argv page, one fault) against the real 63-72 faults. ")


def _limit_xfail(figures: str):
    return pytest.mark.xfail(strict=True, reason=_KMEM_REASON + figures)


def test_limit_swap_counts_what_was_swapped_out_and_not_back_in(limit_run):
    """v1's memory.stat swap (MEMCG_SWAP): mem_cgroup_swapout records each page reclaim
    swaps out; a swap-in takes the record back at once (mem_cgroup_swapin_uncharge_swap,
    v1's memsw accounting). So swap = pgsteal_anon - pswpin pages, and every swap-in of
    the cgroup's evicted pages is a refault (workingset_refault_anon = pswpin): exact in
    every real run (4184 = 4206 - 22, ...) and in the guest."""
    def swap_rule(st: dict, d: dict) -> tuple:
        return (st["swap"] // PAGE, st["workingset_refault_anon"])

    for r in CASES["limit"]:
        d = r["vmstat_delta"]
        assert swap_rule(r["after"]["stat"], d) == (d["pgsteal_anon"] - d["pswpin"], d["pswpin"])
    d = limit_run["vmstat_delta"]
    assert swap_rule(limit_run["stat"], d) == (d["pgsteal_anon"] - d["pswpin"], d["pswpin"])


def test_limit_every_fault_is_counted_in_the_cgroup(limit_run):
    """count_memcg_event_mm(PGFAULT) in handle_mm_fault: each of the task's faults counts
    in its cgroup's memory.stat pgfault: the guest's task faults once per page it writes
    (12288), and once before them: exec'd inside the cgroup, its new stack's argv page
    (copy_strings' get_arg_page, a get_user_pages fault of the new mm, whose owner is in
    the cgroup). The real task also faulted in its own text, stack and libraries after
    the exec into the cgroup: 63-72 more (12351-12360)."""
    area = 48 * MiB // PAGE
    assert all(0 < r["after"]["stat"]["pgfault"] - area < BATCH + 16 for r in CASES["limit"])
    assert limit_run["own_faults"] == 1
    assert limit_run["stat"]["pgfault"] == area + 1
    assert limit_run["stat"]["pgmajfault"] == 0


# 6.1's memcg_stat_show (mm/memcontrol.c), CONFIG_TRANSPARENT_HUGEPAGE (rss_huge) and
# cgroup v1 (do_memsw_account: swap, hierarchical_memsw_limit): memcg1_stat_names,
# memcg1_events, the LRU lists, the hierarchical limits, then the total_ of the first three
V1_STAT_61 = ["cache", "rss", "rss_huge", "shmem", "mapped_file", "dirty", "writeback",
              "workingset_refault_anon", "workingset_refault_file", "swap",
              "pgpgin", "pgpgout", "pgfault", "pgmajfault",
              "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable"]
V1_STAT_61 = [*V1_STAT_61, "hierarchical_memory_limit", "hierarchical_memsw_limit",
              *(f"total_{k}" for k in V1_STAT_61)]


def test_v1_memory_stat_has_6_1s_lines_in_order(limit_run):
    """The guest's v1 memory.stat prints 6.1's lines in 6.1's order; the recording (6.18)
    has the same and swapcached after swap (added after 6.1; 6.1 counts the swap cache
    in cache, NR_FILE_PAGES)."""
    recorded = list(CASES["limit"][0]["after"]["stat"])
    assert [k for k in recorded if k not in ("swapcached", "total_swapcached")] == V1_STAT_61
    assert list(limit_run["stat"]) == V1_STAT_61


def test_v1_memory_stat_counts_mapped_and_dirty_file_pages_and_the_tasks_faults():
    """memory.stat's mapped_file (NR_FILE_MAPPED), dirty (NR_FILE_DIRTY) and pgfault /
    pgmajfault (count_memcg_event_mm) for a task in the cgroup: the 4 pages of a file it
    maps and reads are mapped; the 3 pages it writes with write(2) into another are dirty
    (and not mapped); its faults since the exec are the machine's (it is the only task
    faulting), major
    ones included; the root cgroup's are the machine's less the child's."""
    k = boot("0")
    path = cgroup(k, "stat", 256 * MiB)
    t = task_in(k, path)
    k.fs.create("/m", 4 * PAGE)
    k.fs.create("/w", 0)
    f0, m0 = k.vmstat["pgfault"], k.vmstat["pgmajfault"]
    own = stat(k, path)  # the exec's fault (its argv page), before f0
    fd = t.open("/m")
    a = t.mmap(0, 4 * PAGE, U.PROT_READ, U.MAP_SHARED, fd, 0)
    for i in range(4):
        t.access(a + i * PAGE, False)
    buf = t.mmap(0, 3 * PAGE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    wfd = t.open("/w", U.O_RDWR)
    assert t.write(wfd, buf, 3 * PAGE) == 3 * PAGE
    st = stat(k, path)
    assert (st["mapped_file"], st["dirty"], st["writeback"]) == (4 * PAGE, 3 * PAGE, 0)
    assert st["cache"] == 7 * PAGE
    assert (st["pgfault"] - own["pgfault"], st["pgmajfault"] - own["pgmajfault"]) == (
        k.vmstat["pgfault"] - f0, k.vmstat["pgmajfault"] - m0)
    assert st["pgmajfault"] >= 1
    root = stat(k, V1)
    assert root["pgfault"] == k.vmstat["pgfault"] - st["pgfault"]
    assert root["total_pgfault"] == k.vmstat["pgfault"]
    k.reclaim.validate()


@pytest.mark.parametrize("key,where", [
    pytest.param("failcnt", "failcnt", marks=_limit_xfail(
        "Guest (clocked) failcnt 4228 (4223 when the task was spawned and attached), real "
        "3767-4226.")),
    pytest.param("pswpout", "vmstat", marks=_limit_xfail(
        "Guest (clocked) pswpout 4129 (4198 spawned and attached, 4188 before it charged "
        "kernel memory), real 4238-4321: every page it wrote had been stolen by the end "
        "(pswpout = pgsteal_anon), where the real runs had written 43-97 more than they "
        "stole and held 64-118 pages in the swap cache.")),
    pytest.param("pgscan_anon", "vmstat", marks=_limit_xfail(
        "Guest (clocked) pgscan_anon 16428 (16502 spawned and attached, 16509 before it "
        "charged kernel memory), real 16594-16706 (the area's 12288 pages once, and most "
        "of those rotated after their writeback again: guest pgrotated 4129, real "
        "4244-4317).")),
    pytest.param("pgsteal_anon", "vmstat", marks=_limit_xfail(
        "Guest (clocked) pgsteal_anon 4129 (4129 spawned and attached), real 4195-4224.")),
    pytest.param("rss", "stat", marks=_limit_xfail(
        "Guest rss 8160 pages at the end (8090 spawned and attached, 8100 before it charged "
        "kernel memory), real 8007-8090: usage 8190 = rss + 30 kernel pages, nothing left "
        "in the swap cache (spawned and attached: 8184 = 8090 + 25 + 69 written and not "
        "yet stolen).")),
])
def test_limit_counts_within_the_real_spread(limit_run, key, where):
    """failcnt (page_counter_try_charge's failures: about one per page charged at the
    limit, the batch's then the page's, plus the retries around each reclaim of
    max(nr_pages, SWAP_CLUSTER_MAX) pages), the pages swapped out, scanned and stolen, and
    the rss left: within the five real runs (README: failcnt 3767-4226, pswpout 4238-4321,
    pgscan_anon 16594-16706, pgsteal_anon 4195-4224, rss 8007-8090 pages)."""
    if where == "failcnt":
        got, vals = limit_run["failcnt"], real("limit", lambda r: r["after"]["failcnt"])
    elif where == "vmstat":
        got, vals = limit_run["vmstat_delta"][key], real("limit", lambda r: r["vmstat_delta"][key])
    else:
        got = limit_run["stat"][key] // PAGE
        vals = real("limit", lambda r: r["after"]["stat"][key] // PAGE)
    assert within(got, vals), (key, got, vals)


# --------------------------------------------------------------------------------- OOM
def run_oom(swap: str, swappiness: int) -> dict:
    """The OOM cases: a task outside the cgroup and a small one inside hold 4 MiB each,
    then the big one in the cgroup writes 48 MiB."""
    k = boot(swap)
    path = cgroup(k, "oom", LIMIT, swappiness)
    outside = task_in(k, None)
    touch(outside, 4 * MiB)
    small = task_in(k, path)
    touch(small, 4 * MiB)
    big = task_in(k, path)
    v0 = vmstat(k)
    log0 = len(k.reclaim.oom.log)
    s = Sampler(k, path)
    touch(big, 48 * MiB, s)
    v1 = vmstat(k)
    out = {"big": big, "small": small, "outside": outside, "usage_max_sampled": s.max,
           "max_usage_in_bytes": read_int(k, f"{path}/memory.max_usage_in_bytes"),
           "failcnt": read_int(k, f"{path}/memory.failcnt"),
           "oom_control": read_kv(k.cgroup.read(f"{path}/memory.oom_control")),
           "log": k.reclaim.oom.log[log0:],
           "vmstat_delta": {x: v1[x] - v0[x] for x in VMSTAT}}
    k.reclaim.validate()
    return out


OOM_CASES = {"oom-noswap": ("0", 60), "oom-swappiness0": ("256MiB", 0)}


@functools.cache
def oom_case(name: str) -> dict:
    return run_oom(*OOM_CASES[name])


@pytest.fixture(params=list(OOM_CASES))
def oom_run(request) -> tuple[str, dict]:
    return request.param, oom_case(request.param)


def test_memcg_oom_kills_the_largest_task_of_the_cgroup_only(oom_run):
    """mem_cgroup_out_of_memory (CONSTRAINT_MEMCG) chooses among the cgroup's tasks by
    oom_badness: the big writer is killed (SIGKILL), the small task in the cgroup and the
    task outside it keep running, memory.oom_control's oom_kill is 1, under_oom 0, and
    /proc/vmstat's oom_kill +1 - as in every real run of both cases."""
    name, got = oom_run
    assert real(name, lambda r: r["big"]["returncode"]) == [-9] * 5
    assert real(name, lambda r: (r["small_inside"]["alive"], r["outside"]["alive"])) == [
        (True, True)] * 5
    assert real(name, lambda r: r["after"]["oom_control"]) == [
        {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 1}] * 5
    assert real(name, lambda r: r["vmstat_delta"]["oom_kill"]) == [1] * 5
    assert got["big"].state != "running"
    assert got["big"].wait_status & 0x7F == U.SIGKILL
    assert got["small"].state == "running" and got["outside"].state == "running"
    assert got["oom_control"] == {"oom_kill_disable": 0, "under_oom": 0, "oom_kill": 1}
    assert got["vmstat_delta"]["oom_kill"] == 1


def test_memcg_oom_scans_nothing_without_swap_or_with_swappiness_0(oom_run):
    """6.1's get_scan_count: no swap, or cgroup reclaim with swappiness 0 (SCAN_FILE):
    no anonymous page is scanned, and the cgroup has no file pages - nothing is scanned
    or swapped before the OOM kill (real: pgscan_anon, pgscan_file, pswpout 0 in every
    run). Usage still fills to the limit exactly (max_usage_in_bytes = L)."""
    name, got = oom_run
    for key in ("pgscan_anon", "pgscan_file", "pswpout"):
        assert [r["vmstat_delta"][key] for r in CASES[name]] == [0] * 5, key
        assert got["vmstat_delta"][key] == 0, key
    assert real(name, lambda r: r["after"]["max_usage_in_bytes"]) == [LIMIT] * 5
    assert got["usage_max_sampled"] <= LIMIT
    assert got["max_usage_in_bytes"] == LIMIT


def test_memcg_oom_kill_line_is_linuxs(oom_run):
    """oom_kill_process's message for a memcg OOM is "Memory cgroup out of memory"
    (is_memcg_oom), then __oom_kill_process's "Killed process PID (COMM) total-vm:NkB,
    anon-rss:NkB, file-rss:NkB, shmem-rss:NkB, UID:N pgtables:NkB oom_score_adj:N", one
    line per kill (the real log: one such line per run, the big task's, anon-rss
    28032-28288kB)."""
    name, got = oom_run
    lines = real(name, lambda r: [x for x in r["kmsg"] if "Killed process" in x])
    assert all(len(x) == 1 for x in lines)
    kills = [x for x in got["log"] if "Killed process" in x]
    big = got["big"]
    assert len(kills) == 1
    assert kills[0].startswith(
        f"Memory cgroup out of memory: Killed process {big.pid} (memcg_task) total-vm:")
    assert [f.split(":")[0] for f in kills[0].split(") ")[1].split(", ")] == [
        f.split(":")[0] for f in lines[0][0].split(") ")[1].split(", ")]


# The guest's failcnt is 93 in both with its tasks exec'd inside the cgroup (98 when
# they were spawned and attached, 36 before it charged kernel memory): the page tables
# and slab pages leave usage off a multiple of the batch, so the last pages below the
# limit each fail a batch of 64 before their page is charged, then the failures of the
# retries (the drain, 16 reclaims, the OOM kill, the killed fault's).
# Real: 55-117 without swap, 19-144 with swappiness 0 (idle); 36-55 and 20-57 under a
# load average of 8.8 (memcg_kmem.json).
@pytest.mark.parametrize("name", ["oom-noswap", "oom-swappiness0"])
def test_memcg_oom_failcnt_within_the_real_spread(name):
    """failcnt before the kill: the failures while usage nears the limit (a batch that no
    longer fits, then the page), then the page's retries: the one after draining the
    stocks and MAX_RECLAIM_RETRIES (16) reclaims without progress before
    mem_cgroup_oom, and those of the killed task's last fault (real: 55-117 without swap,
    19-144 with swappiness 0)."""
    got = oom_case(name)
    vals = real(name, lambda r: r["after"]["failcnt"])
    assert within(got["failcnt"], vals), (got["failcnt"], vals)


# --------------------------------------------------------------------------- page cache
def run_pagecache() -> dict:
    """The page cache case: no swap, a 64 MiB file not in the cache, read(2) through it in
    1 MiB chunks into the task's 1 MiB buffer (memcg_task's static buf)."""
    k = boot("0")
    size = 64 * MiB
    k.fs.create("/var/tmp/hvsim-cgfix-file", size)
    path = cgroup(k, "pagecache", LIMIT)
    t = task_in(k, path)
    buf = t.mmap(0, MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    v0 = vmstat(k)
    s = Sampler(k, path)
    fd = t.open("/var/tmp/hvsim-cgfix-file")
    total = 0
    while (n := t.read(fd, buf, MiB)) > 0:
        total += n
        s()
    t.close(fd)
    v1 = vmstat(k)
    inode = k.fs.lookup("/var/tmp/hvsim-cgfix-file")
    out = {"read": total, "usage_max_sampled": s.max,
           "max_usage_in_bytes": read_int(k, f"{path}/memory.max_usage_in_bytes"),
           "stat": stat(k, path), "resident": inode.mapping.nrpages,
           "vmstat_delta": {x: v1[x] - v0[x] for x in VMSTAT}}
    k.reclaim.validate()
    return out


@pytest.fixture(scope="module")
def pagecache_run() -> dict:
    return run_pagecache()


def test_page_cache_read_stays_within_the_limit(pagecache_run):
    """Page cache is charged to the reader's cgroup (filemap_add_folio ->
    mem_cgroup_charge) and reclaimed at its limit: usage never above L, the watermark at L
    (real: every run), the cache held all inactive (read once: no activation)."""
    got = pagecache_run
    assert real("pagecache", lambda r: r["after"]["max_usage_in_bytes"]) == [LIMIT] * 5
    assert real("pagecache", lambda r: r["after"]["stat"]["active_file"]) == [0] * 5
    assert got["read"] == 64 * MiB
    assert got["usage_max_sampled"] <= LIMIT
    assert got["max_usage_in_bytes"] == LIMIT
    assert got["stat"]["active_file"] == 0
    assert got["stat"]["cache"] == got["stat"]["inactive_file"]
    # read(2) maps nothing and dirties nothing: mapped_file, dirty, writeback 0 (real too)
    for key in ("mapped_file", "dirty", "writeback"):
        assert [r["after"]["stat"][key] for r in CASES["pagecache"]] == [0] * 5, key
        assert got["stat"][key] == 0, key


def test_page_cache_every_page_scanned_is_reclaimed_and_the_rest_stays(pagecache_run):
    """Pages read once through read(2) are clean, unmapped and on the inactive list:
    folio_check_references gives FOLIOREF_RECLAIM_CLEAN, so each one scanned is stolen
    (pgscan_file = pgsteal_file), and the file's pages are either stolen or still
    resident: pgsteal_file + resident = 16384 (real: 8704 + 7680 in every run, mincore).
    Limit reclaim is not direct reclaim in /proc/vmstat; no anonymous page is scanned."""
    got = pagecache_run
    d = got["vmstat_delta"]
    pages = 64 * MiB // PAGE
    assert real("pagecache", lambda r: r["vmstat_delta"]["pgscan_file"]) == real(
        "pagecache", lambda r: r["vmstat_delta"]["pgsteal_file"])
    assert real("pagecache", lambda r: r["vmstat_delta"]["pgsteal_file"]
                + int(r["resident_after"].split()[1])) == [pages] * 5
    assert d["pgscan_file"] == d["pgsteal_file"]
    assert d["pgsteal_file"] + got["resident"] == pages
    assert d["pgscan_direct"] == d["pgsteal_direct"] == d["pgscan_anon"] == 0


@pytest.mark.xfail(strict=True, reason=(
    "Guest cache 7872 pages at the end (7928 when its task was spawned and attached), "
    "real 7680 in every run. 6.18's ext4 read the file "
    "into 2 MiB folios (/proc/vmstat nr_file_hugepages +15 = 7680 pages; pgscan_file 8704 "
    "= 17 folios), so the real cgroup kept whole folios: 15 fit beside the task's 288 "
    "rss pages and its 24-27 pages of kernel memory (memcg_kmem.json), 16 did not. 6.1's "
    "ext4 (and the guest) caches order-0 pages, which fill the limit to the page."))
def test_page_cache_held_at_the_end_within_the_real_spread(pagecache_run):
    """What the cgroup keeps cached at the end: 7680 pages in every real run (30 MiB of
    the 32: the rest is the task's 288 rss pages, its kernel memory and what reclaim
    freed beyond the charge)."""
    vals = real("pagecache", lambda r: r["after"]["stat"]["cache"] // PAGE)
    got = pagecache_run["stat"]["cache"] // PAGE
    assert within(got, vals), (got, vals)


# ------------------------------------------------------------------- charge / uncharge
def run_charge() -> list[dict]:
    """The charge case: a 256 MiB cgroup, the task on one CPU; for each K, `pages K`
    then `free`, usage_in_bytes and memory.stat's rss around each."""
    k = boot("0")
    path = cgroup(k, "charge", 256 * MiB)
    t = task_in(k, path)

    def now() -> dict:
        return {"usage_in_bytes": read_int(k, f"{path}/memory.usage_in_bytes"),
                "rss": stat(k, path)["rss"]}

    steps = []
    for n in FIXTURE["charge_pages"]:
        before = now()
        a = touch(t, n * PAGE)
        touched = now()
        t.munmap(a, n * PAGE)
        steps.append({"pages": n, "before": before, "touched": touched, "freed": now()})
    k.reclaim.validate()
    return steps


@pytest.fixture(scope="module")
def charge_run() -> list[dict]:
    return run_charge()


def deltas(step: dict, when: str, key: str) -> int:
    return (step[when][key] - step["before"][key]) // PAGE


def test_rss_moves_by_exactly_the_pages_touched_and_freed(charge_run):
    """memory.stat's rss (NR_ANON_MAPPED) counts each page charged and mapped: +K after
    touching K pages, back to its value after munmap. The real kernel's is read through
    the rstat flush and shows it exactly once K >= 64 (MEMCG_CHARGE_BATCH x CPUS pending
    updates force a flush); hvsim's memory.stat is exact for every K."""
    for r in CASES["charge"]:
        for s in r["steps"]:
            if s["pages"] >= BATCH:
                assert deltas(s, "touched", "rss") == s["pages"]
                assert deltas(s, "freed", "rss") == 0
    for s in charge_run:
        assert deltas(s, "touched", "rss") == s["pages"], s
        assert deltas(s, "freed", "rss") == 0, s


def test_usage_returns_to_its_value_within_the_charge_stock(charge_run):
    """try_charge_memcg charges a MEMCG_CHARGE_BATCH (64) at a time and keeps the rest in
    the CPU's stock (refill_stock); uncharge returns the pages to the counter. So usage
    after touching K pages is K more, give or take what the stocks held, and after the
    munmap within 64 x CPUS pages of its value before (real: -59..+64)."""
    stock = BATCH * CPUS
    for r in [*CASES["charge"], charge_run]:
        steps = r["steps"] if isinstance(r, dict) else r
        for s in steps:
            assert abs(deltas(s, "touched", "usage_in_bytes") - s["pages"]) <= stock, s
            assert abs(deltas(s, "freed", "usage_in_bytes")) <= stock, s


def test_first_page_charges_a_batch_or_comes_from_the_stock(charge_run):
    """The first page touched (K = 1) raises usage by 64 when the CPU's stock for the
    cgroup is empty (a batch charged, 63 kept) and by 0 when it is not: the real runs
    show both (0 in four, 64 in the one whose stock was empty). The guest's task, exec'd
    inside the cgroup, charged a batch for its new mm and its stack's argv page, and
    runs on the CPU whose stock kept the rest: its first page comes from the stock."""
    vals = {deltas(r["steps"][0], "touched", "usage_in_bytes") for r in CASES["charge"]}
    assert vals == {0, BATCH}
    assert deltas(charge_run[0], "touched", "usage_in_bytes") == 0


# --------------------------------------------------------------------------- move
def run_move() -> list[dict]:
    """The move case: cgroups A and B (256 MiB each, move_charge_at_immigrate 0); `anon
    16` in A, moved to B, `anon 8`, `free`, exit."""
    k = boot("0")
    a = cgroup(k, "move-a", 256 * MiB)
    b = cgroup(k, "move-b", 256 * MiB)
    steps = []

    def state(step: str) -> None:
        tree = k.memcgs
        steps.append({"step": step, **{
            n: {"usage_in_bytes": read_int(k, f"{p}/memory.usage_in_bytes"),
                "rss": stat(k, p)["rss"],
                "stock": sum(c for m, c in zip(tree.stock_cached, tree.stock_nr)
                             if m is k.cgroup.lookup(p))}
            for n, p in (("A", a), ("B", b))}})

    t = task_in(k, a)
    state("start in A")
    touch(t, 16 * MiB)
    state("anon 16 in A")
    k.cgroup.write(f"{b}/cgroup.procs", str(t.pid))
    state("moved to B")
    area = touch(t, 8 * MiB)
    state("anon 8 in B")
    t.munmap(area, 8 * MiB)
    state("free the 8 MiB")
    t.exit(0)
    state("exited")
    k.reclaim.validate()
    return steps


def test_moved_task_leaves_its_charges_behind():
    """v1 without move_charge_at_immigrate (and 6.18 always: it refuses the setting,
    EINVAL, recorded): attaching a task moves no charge. A keeps the 16 MiB to the page
    (usage unchanged by the move), B is charged only what the task touches after it
    (rss 2048 pages) and loses it when freed; on exit the pages are uncharged from A,
    where they were charged (folio_memcg), not from the task's cgroup. Usage beyond rss
    is the stock and kernel memory (the area's page tables, the VMA): at most 64 x CPUS
    pages in the guest. The guest's task runs on one CPU: B's first charge takes that
    CPU's stock (__refill_stock drains the memcg it held), so A loses what its stock held
    (the real runs kept it: their stock for A was on the other CPU)."""
    def rss(s, n):
        return s[n]["rss"] // PAGE

    def usage(s, n):
        return s[n]["usage_in_bytes"] // PAGE

    area16, area8 = 16 * MiB // PAGE, 8 * MiB // PAGE
    for r in CASES["move"]:
        s = r["steps"]
        assert usage(s[2], "A") == usage(s[1], "A") and usage(s[2], "B") == 0
        assert (rss(s[3], "B"), rss(s[4], "B"), rss(s[5], "A")) == (area8, 0, 0)
        assert usage(s[4], "A") == usage(s[1], "A")
    assert CASES["move-immigrate"][0]["move_charge_at_immigrate_write"].startswith("OSError")
    s = run_move()
    own = rss(s[0], "A")  # exec'd in A: its stack's argv page, charged to A and left there
    assert own == 1
    assert rss(s[1], "A") == own + area16
    assert usage(s[2], "A") == usage(s[1], "A") and usage(s[2], "B") == 0
    assert (rss(s[3], "A"), rss(s[3], "B")) == (own + area16, area8)
    assert (rss(s[4], "B"), rss(s[4], "A")) == (0, own + area16)
    assert usage(s[4], "A") == usage(s[3], "A") == usage(s[1], "A") - s[1]["A"]["stock"]
    assert rss(s[5], "A") == 0
    for st in s:
        for n in ("A", "B"):
            assert 0 <= usage(st, n) - rss(st, n) <= BATCH * CPUS, st
