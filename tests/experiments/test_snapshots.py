"""The snapshots workload follows a captured series: after each snapshot's time the VM's
frames hold that snapshot's bytes, and exactly the pages that changed were written."""

import subprocess
import sys

import pytest
import simpy

from experiments.capture import capture
from experiments.config import config_from_dict
from experiments.scenario import Scenario
from experiments.workloads.snapshots import series_layout
from hypervisor.memimage import CONTENT_KINDS
from hypervisor.p2m import P2M_NONE

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="capture reads Linux /proc")

P = 4096
CHILD = """
import mmap, sys
m = mmap.mmap(-1, 64 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for i in range(64):
    m[i * 4096:(i + 1) * 4096] = b"A" * 4096
print("ready", flush=True)
for line in sys.stdin:
    for i in range(0, 64, 2):                # rewrite every other page
        m[i * 4096:(i + 1) * 4096] = b"B" * 4096
    print("done", flush=True)
"""


@pytest.fixture
def series(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "ready"

    def between(msg):
        if msg.startswith("snapshot 1/"):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            assert proc.stdout.readline().strip() == "done"

    path = tmp_path / "s.cap"
    try:
        capture([proc.pid], str(path), interval=0.5, count=2, progress=between)
    finally:
        proc.kill()
        proc.wait()
    return str(path)


def _expected(layout, snapshot):
    buf = layout.img.buf
    return {pfn: bytes(buf[off : off + P]) for pfn, kind, off in layout.frames(snapshot) if kind in CONTENT_KINDS}


def test_the_vm_follows_the_series(series):
    layout = series_layout(series)
    first, second = _expected(layout, 0), _expected(layout, 1)
    t1 = layout.img.snapshots[1].time
    cfg = config_from_dict({
        "experiment": {"name": "snap", "duration": "2s"},
        "host": {"memory": "512MiB"},
        "vm": [{"name": "s", "workload": {"profile": "snapshots", "path": series}}]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    vm = sc.host.vms[0]
    wl = sc.workloads["s"]
    assert vm.kernel is None and vm.nr_pages == layout.nr_pages
    sc.start()
    env.run(until=t1 / 2)
    assert all(vm.load(pfn) == data for pfn, data in first.items())
    assert wl.work_done == len(first)
    env.run(until=t1 + 0.01)
    assert wl.snapshots_applied == 2
    assert all(vm.load(pfn) == data for pfn, data in second.items())
    # direct count: pages whose bytes differ, plus pages resident only in the second
    changed = sum(1 for pfn, data in second.items() if first.get(pfn) != data)
    assert changed >= 32  # the child's 32 rewritten pages at least
    assert wl.work_done == len(first) + changed
    gone = [pfn for pfn in first if pfn not in second]
    assert wl.pages_released == len(gone)
    assert all(vm.p2m.state[pfn] != P2M_NONE or pfn not in second for pfn in range(vm.nr_pages))


def test_a_missing_series_is_one_config_line(tmp_path):
    from experiments.config import ConfigError, load_config

    cfg = tmp_path / "c.toml"
    cfg.write_text('[[vm]]\nname = "s"\n[vm.workload]\nprofile = "snapshots"\npath = "none.cap"\n')
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert e.value.problems == [f"vm[0].workload.path: {tmp_path / 'none.cap'}: no such image file"]
