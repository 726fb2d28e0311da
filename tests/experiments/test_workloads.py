"""The glibc-like malloc against a real guest process, and the workload profiles."""

from __future__ import annotations

import pytest

from experiments.config import config_from_dict
from experiments.runner import run_experiment
from experiments.workloads.malloc import M_TOP_PAD, Malloc
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel


@pytest.fixture
def proc():
    k = Kernel(KernelConfig(memory="128MiB"))
    return k.spawn("a.out")


def heap_vma(task):
    return next(v for v in task.mm.vmas() if v.vm_start <= task.mm.brk - 1 < v.vm_end)


def test_small_requests_grow_the_brk_heap_with_top_pad(proc):
    m = Malloc(proc)
    start = proc.brk(0)
    p = m.malloc(100)
    # chunk = request2size(100) = 112; need = 112 + MINSIZE(32); sbrk(page_up(need + 128 KiB))
    assert proc.mm.brk == start + 135168
    assert p == start + 16 and p % 16 == 0
    q = m.malloc(100)
    assert q == p + 112  # carved from the top chunk, no new sbrk
    assert m.nr_sbrk == 1 and m.nr_mmap == 0


def test_large_requests_are_mmapped_and_raise_the_threshold(proc):
    m = Malloc(proc)
    before = len(proc.mm.vmas)
    p = m.malloc(200 * 1024)
    assert m.nr_mmap == 1 and len(proc.mm.vmas) == before + 1
    vma = proc.mm.find_vma(p)
    assert vma.vm_end - vma.vm_start == 204800 + 4096  # 200 KiB + header, page rounded
    m.free(p)
    assert m.nr_munmap == 1 and len(proc.mm.vmas) == before
    # glibc's dynamic threshold: the freed chunk's size becomes the new threshold
    assert m.mmap_threshold == 204800 + 4096 and m.trim_threshold == 2 * m.mmap_threshold
    m.malloc(150 * 1024)  # now below the threshold: from the heap
    assert m.nr_mmap == 1 and m.nr_sbrk == 1


def test_free_coalesces_and_reuses_best_fit(proc):
    m = Malloc(proc)
    a, b, c = m.malloc(1000), m.malloc(1000), m.malloc(1000)
    guard = m.malloc(64)
    m.free(a)
    m.free(b)  # coalesces with a: one free chunk of 2 x 1008
    assert sorted(m.free_start.values()) == [2016]
    d = m.malloc(1500)  # best fit reuses the coalesced chunk
    assert d == a
    assert sorted(m.free_start.values()) == [2016 - 1520]
    del c, guard


def test_trim_returns_memory_to_the_kernel(proc):
    m = Malloc(proc)
    ptrs = [m.malloc(1000) for _ in range(600)]  # ~600 KiB of heap
    top = proc.mm.brk
    for p in reversed(ptrs):
        m.free(p)
    # everything merged back into top, which exceeded M_TRIM_THRESHOLD: trimmed to the pad
    assert m.nr_trim >= 1
    assert proc.mm.brk < top
    assert proc.mm.brk - m.top <= M_TOP_PAD + 4096


def test_fork_child_continues_with_a_copy(proc):
    m = Malloc(proc)
    p = m.malloc(5000)
    child = proc.kernel.tasks[proc.fork()]
    cm = m.clone_for(child)
    q = cm.malloc(5000)
    r = m.malloc(5000)
    assert q == r != p  # same layout in both address spaces
    cm.free(p)
    assert p in [c + 16 for c in m.inuse]  # the parent's chunk is untouched


def _webserver_vm(host_memory: str, hog: bool):
    vms = [{"name": "web", "memory": "192MiB", "image": "alpine-3.19",
            "workload": {"profile": "webserver", "workers": 2, "shared_heap": "8MiB", "worker_heap": "32MiB",
                         "request_touch": "1MiB", "docroot": "4MiB", "request_rate": 200.0}}]
    if hog:
        vms.append({"name": "hog", "memory": "256MiB", "image": "alpine-3.19",
                    "workload": {"profile": "memhog", "size": "85%", "rate": "512MiB", "content": "encrypted"}})
    return config_from_dict({
        "experiment": {"name": "slow", "duration": "6s", "seed": 2},
        "host": {"memory": host_memory, "swap": {"latency": "5ms"}, "compression": {"enabled": False},
                 "balloon": {"enabled": False}},
        "vm": vms,
    })


def test_overcommit_slows_the_workload_down(tmp_path):
    ample = run_experiment(_webserver_vm("1GiB", hog=True), tmp_path / "ample", write_report=False)
    tight = run_experiment(_webserver_vm("160MiB", hog=True), tmp_path / "tight", write_report=False)
    assert ample["status"] == tight["status"] == "ok"
    assert ample["host_swapins"] == 0 and tight["host_swapins"] > 0
    assert tight["vms"]["web"]["stall_s"] > ample["vms"]["web"]["stall_s"]
    assert tight["vms"]["web"]["throughput"] < ample["vms"]["web"]["throughput"]


@pytest.mark.parametrize("profile", ["idle", "webserver", "database", "compile", "jvm", "memhog"])
def test_each_profile_does_work(profile, tmp_path):
    wl = {"profile": profile}
    small = {
        "idle": {"daemons": 3, "daemon_rss": "1MiB", "wake_interval": "200ms", "page_cache": "4MiB"},
        "webserver": {"workers": 2, "shared_heap": "2MiB", "worker_heap": "2MiB", "docroot": "1MiB"},
        "database": {"buffer_pool": "16MiB", "data_file": "8MiB", "ops_rate": 500.0},
        "compile": {"jobs": 2, "process_rss": "4MiB", "process_lifetime": "200ms", "sources": "2MiB",
                    "objects": "1MiB"},
        "jvm": {"heap": "24MiB", "allocation_rate": "32MiB", "gc_interval": "1s"},
        "memhog": {"size": "16MiB", "rate": "32MiB"},
    }[profile]
    wl.update(small)
    cfg = config_from_dict({"experiment": {"name": profile, "duration": "2s", "seed": 1},
                            "host": {"memory": "512MiB"},
                            "vm": [{"name": "g", "memory": "128MiB", "image": "alpine-3.19", "workload": wl}]})
    s = run_experiment(cfg, tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    assert s["vms"]["g"]["work_done"] > 0
    assert s["vms"]["g"]["faults"]["pgfault"] > 0


def test_trace_profile_replays_a_real_trace_in_time(tmp_path):
    from pathlib import Path

    trace = Path(__file__).resolve().parents[1] / "data" / "traces" / "malloc_mix.trace"
    cfg = config_from_dict({"experiment": {"name": "tr", "duration": "3s"}, "host": {"memory": "512MiB"},
                            "vm": [{"name": "g", "memory": "256MiB", "image": "alpine-3.19",
                                    "workload": {"profile": "trace", "path": str(trace)}}]})
    s = run_experiment(cfg, tmp_path, write_report=False)
    assert s["status"] == "ok", s["traceback"]
    events = sum(1 for line in trace.read_text().splitlines() if line.strip())
    assert 0 < s["vms"]["g"]["work_done"] <= events  # one unit per replayed call or exit
    assert s["vms"]["g"]["faults"]["pgfault"] > 0  # the mapped memory was touched


def _pair(tmp_path, wl: dict, kernel: dict | None = None):
    """Two VMs running `wl` on one host for 1 s: the Scenario after the run."""
    import simpy

    from experiments.scenario import Scenario

    cfg = config_from_dict({
        "experiment": {"name": "pair", "duration": "1s", "seed": 3},
        "host": {"memory": "512MiB", "sharing": {"enabled": False}},
        "vm": [{"name": "g", "count": 2, "memory": "96MiB", "image": "alpine-3.19",
                "kernel": kernel or {}, "workload": wl}]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    sc.start()
    env.run(until=1.0)
    return sc


def _anon_contents(vm) -> set[bytes]:
    from guestkernel.page import PG_anon
    from hypervisor.p2m import P2M_PRIVATE

    content = vm.machine.content
    out = set()
    for pfn, page in enumerate(vm.kernel.mem_map):
        if page is not None and page.flags & PG_anon and vm.p2m.state[pfn] == P2M_PRIVATE:
            data = content[vm.p2m.mpn[pfn]]
            out.add(data if type(data) is bytes else data.materialize())  # a LazyPage
    return out


def test_one_input_without_aslr_gives_two_vms_the_same_heap(tmp_path):
    wl = {"profile": "compile", "jobs": 1, "process_rss": "4MiB", "process_lifetime": "2s",
          "sources": "1MiB", "objects": "1MiB"}
    same = _pair(tmp_path, {**wl, "input": "ref"}, {"randomize_va_space": 0})
    a, b = (_anon_contents(vm) for vm in same.host.vms)
    assert len(a) > 800 and len(a & b) >= 0.95 * len(a)  # the 4 MiB heap (1024 pages), byte for byte
    own = _pair(tmp_path, wl, {"randomize_va_space": 0})  # no input: each VM's own data
    a, b = (_anon_contents(vm) for vm in own.host.vms)
    assert len(a & b) <= 0.35 * len(a)  # zero pages and the profile's common keys


def test_page_cache_reads_the_image_files_at_boot(tmp_path):
    from experiments.content import OSImage

    sc = _pair(tmp_path, {"profile": "memhog", "size": "1MiB", "page_cache": "3MiB"})
    fs = sc.host.vms[0].kernel.fs
    image = OSImage.get("alpine-3.19")
    files = [r for r in image.regions if r.category != "kernel"]
    cached = [fs.lookup(r.name).mapping.nrpages for r in files]
    assert cached[0] == files[0].pages  # /lib/ld-musl-x86_64.so.1, 654 KiB: read whole
    # 3 MiB read in image order; readahead runs ahead of the last read by at most two
    # windows of ra_pages (32 pages): reaching a window's first page, marked PG_readahead
    # (async_size = size), reads the next window (page_cache_async_ra)
    assert 3 * 256 <= sum(cached) <= 3 * 256 + 2 * 32
    assert not any(t.comm == "boot" and t.state == "running" for t in sc.host.vms[0].kernel.tasks.values())


def test_jvm_allocations_are_new_objects_not_the_same_chunk_again(tmp_path):
    from collections import Counter

    from guestkernel.page import PG_anon
    from hypervisor.p2m import P2M_PRIVATE

    sc = _pair(tmp_path, {"profile": "jvm", "heap": "48MiB", "allocation_rate": "32MiB",
                          "gc_interval": "10s"})
    vm = sc.host.vms[0]
    seen = Counter()
    for pfn, page in enumerate(vm.kernel.mem_map):
        if page is not None and page.flags & PG_anon and vm.p2m.state[pfn] == P2M_PRIVATE:
            data = vm.machine.content[vm.p2m.mpn[pfn]]
            data = data if type(data) is bytes else data.materialize()
            if data != data[:8] * 512:  # not a zero or same-filled page
                seen[data] += 1
    # ~1 s of allocation: ~32 MiB in 3.2 MiB chunks, each chunk new data
    assert sum(seen.values()) > 4000
    assert max(seen.values()) == 1


def test_trace_profile_root_starts_the_program_as_root(tmp_path):
    # limits_priv.trace was recorded as root (its mlock past RLIMIT_MEMLOCK at line 20
    # succeeded through CAP_IPC_LOCK): with root = true the replay finds nothing; started
    # as an ordinary user, that mlock and the later setuid(0) (line 53) diverge
    from pathlib import Path

    import simpy

    from experiments.scenario import Scenario

    trace = Path(__file__).resolve().parents[1] / "data" / "traces" / "limits_priv.trace"
    found = {}
    for root in (True, False):
        cfg = config_from_dict({
            "experiment": {"name": "tr", "duration": "1s"}, "host": {"memory": "512MiB"},
            "vm": [{"name": "g", "memory": "256MiB", "image": "alpine-3.19",
                    "workload": {"profile": "trace", "path": str(trace), "root": root}}]})
        env = simpy.Environment()
        sc = Scenario(cfg, env)
        sc.start()
        env.run(until=1.0)
        found[root] = [line.split(":")[0] for line in sc.workloads["g"].findings
                       if "simulated" in line]
    assert found == {True: [], False: ["line 20", "line 53"]}
