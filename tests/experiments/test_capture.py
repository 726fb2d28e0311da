"""hvsim capture of a process the test starts: /proc/PID/maps, pagemap (bit 63 present,
bit 62 swapped, bit 61 file/shared: Documentation/admin-guide/mm/pagemap.rst) and mem."""

import os
import subprocess
import sys
from collections import Counter

import pytest
from click.testing import CliRunner

from experiments.capture import capture, capture_cmd
from experiments.whatif import whatif_files
from guestkernel.physmem import ZERO_PAGE
from hypervisor.memimage import CANDIDATE, FILE_PAGE, NOT_RESIDENT, open_image

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="capture reads Linux /proc")

P = 4096
PATTERN = b"hvsim-capture-page-0123456789abc" * 128  # 4 KiB
CHILD = """
import ctypes, mmap, sys, time
m = mmap.mmap(-1, 300 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
pattern = b"hvsim-capture-page-0123456789abc" * 128
for i in range(100):                        # pages 0..99: one content
    m[i * 4096:(i + 1) * 4096] = pattern
for i in range(100, 150):                   # pages 100..149: zeros, written (resident)
    m[i * 4096:(i + 1) * 4096] = bytes(4096)
                                            # pages 150..299: never touched
print(ctypes.addressof(ctypes.c_char.from_buffer(m)), flush=True)
for line in sys.stdin:                      # one line: rewrite page 0, then report
    m[0:4096] = b"x" * 4096
    print("done", flush=True)
"""


@pytest.fixture
def child():
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    proc.addr = int(proc.stdout.readline())
    yield proc
    proc.kill()
    proc.wait()


def _region(img, addr, snapshot=0):
    """Index, among the snapshot's pages, of the child's mapping at `addr` (it may have
    merged with a neighbouring anonymous mapping)."""
    part = img.snapshots[snapshot].parts[0]
    idx = 0
    for r in part.regions:
        lo, hi = int(r["start"], 16), int(r["end"], 16)
        if lo <= addr < hi:
            return idx + (addr - lo) // P
        idx += r["pages"]
    raise AssertionError("mapping not found")


def test_capture_records_residency_and_bytes(child, tmp_path):
    out = tmp_path / "c.cap"
    assert capture([child.pid], str(out)) == 1
    img = open_image(out)
    assert img.format == "capture" and img.residency_known
    start = _region(img, child.addr)
    pages = list(img.pages(0))[start : start + 300]
    assert [k for k, _ in pages] == [CANDIDATE] * 150 + [NOT_RESIDENT] * 150
    assert all(bytes(v) == PATTERN for _, v in pages[:100])
    assert all(bytes(v) == ZERO_PAGE for _, v in pages[100:150])
    # the interpreter's text is mapped from files: resident page-cache pages, not candidates
    assert img.snapshots[0].parts[0].count(FILE_PAGE) > 0
    # whatif on the capture against a direct count of the candidates' bytes
    r = whatif_files([str(out)], sample=None)["rows"][0]
    cand = [bytes(v) for k, v in img.pages(0) if k == CANDIDATE]
    c = Counter(cand)
    assert r["candidates"] == len(cand) and r["not_resident"] >= 150
    # max_page_sharing 256: groups above it keep one more dup per 256 (ksm_group)
    assert r["saved_sharing"] == sum(n - 1 - (n - 1) // 256 for n in c.values())
    assert r["zero_pages"] == c[ZERO_PAGE] >= 50
    z = c[ZERO_PAGE]
    assert r["saved_zero"] == z - 1 - (z - 1) // 256


def test_a_series_follows_the_process(child, tmp_path):
    out = tmp_path / "s.cap"
    procs = []

    def progress(msg):
        if msg.startswith("snapshot 1/"):  # between the two snapshots: page 0 rewritten
            child.stdin.write("go\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "done"
        procs.append(msg)

    assert capture([child.pid], str(out), interval=0.2, count=2, progress=progress) == 2
    img = open_image(out)
    assert len(img.snapshots) == 2 and img.snapshots[1].time >= 0.2
    start = _region(img, child.addr, 1)
    first = bytes(list(img.pages(1))[start][1])
    assert first == b"x" * 4096
    rows = whatif_files([str(out)])["rows"]
    assert [r["snapshot"] for r in rows] == [0, 1]
    # direct count, by address: candidate pages whose bytes differ or that are new
    from experiments.workloads.snapshots import SeriesLayout

    layout = SeriesLayout(img)

    def cand(i):
        return {pfn: bytes(img.buf[off : off + P]) for pfn, kind, off in layout.frames(i) if kind == CANDIDATE}

    a, b = cand(0), cand(1)
    changed = sum(1 for pfn, data in b.items() if a.get(pfn) != data)
    assert rows[1]["changed_since_previous"] == changed >= 1  # page 0 of the mapping at least


def test_capture_errors_are_one_line_and_write_nothing(tmp_path):
    runner = CliRunner()
    out = tmp_path / "x.cap"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for args, message in (
        ([str(dead.pid), "-o", str(out)], f"no process with PID {dead.pid}"),
        (["abc", "-o", str(out)], "'abc' is not a PID"),
        (["2", "-o", str(out)], "has no user memory"),  # kthreadd
        ([str(os.getpid()), "-o", str(tmp_path / "no" / "x.cap")], "no such directory"),
    ):
        res = runner.invoke(capture_cmd, args)
        assert res.exit_code == 2, res.output
        assert message in res.output and res.output.count("\n") == 1, res.output
    assert not out.exists() and os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to another user")
def test_permission_denied_names_ptrace():
    # a child running as nobody cannot read root's pytest parent (ptrace access mode check;
    # the CLI prints the same message, see test_capture_errors_are_one_line...)
    out = f"/tmp/hvsim-capture-perm-{os.getpid()}.cap"
    res = subprocess.run(
        [sys.executable, "-c",
         "import os, sys\n"
         "from experiments.capture import CaptureError, capture\n"
         "os.setgid(65534); os.setuid(65534)\n"
         "try:\n"
         "    capture([int(sys.argv[2])], sys.argv[1])\n"
         "except CaptureError as e:\n"
         "    print(e, file=sys.stderr); sys.exit(2)\n", out, str(os.getppid())],
        capture_output=True, text=True, cwd=os.getcwd())
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "permission denied" in lines[0] and "ptrace" in lines[0], lines
    assert not os.path.exists(out)


MERGEABLE_CHILD = """
import mmap, time
a = mmap.mmap(-1, 20 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
a.madvise(mmap.MADV_MERGEABLE)                 # as QEMU does for guest RAM
b = mmap.mmap(-1, 10 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for m, n in ((a, 20), (b, 10)):
    for i in range(n):
        m[i * 4096:(i + 1) * 4096] = bytes([i + 1]) * 4096
print("ready", flush=True)
time.sleep(60)
"""


def test_only_mergeable_areas_are_candidates_when_the_process_has_some(tmp_path):
    # KSM scans VM_MERGEABLE areas only (ksm_madvise; smaps VmFlags "mg")
    from hypervisor.memimage import UNMERGEABLE

    proc = subprocess.Popen([sys.executable, "-c", MERGEABLE_CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        out = tmp_path / "m.cap"
        capture([proc.pid], str(out))
    finally:
        proc.kill()
        proc.wait()
    img = open_image(out)
    regions = img.snapshots[0].parts[0].regions
    mg = [r for r in regions if "mg" in r["vmflags"].split()]
    assert [r["pages"] for r in mg] == [20]
    kinds = [k for k, _ in img.pages(0)]
    assert kinds.count(CANDIDATE) == 20
    assert kinds.count(UNMERGEABLE) >= 10  # the plain mapping and the interpreter's heap
    r = whatif_files([str(out)])["rows"][0]
    assert r["candidates"] == 20 and r["saved_sharing"] == 0  # 20 distinct pages
    assert r["not_mergeable"] == kinds.count(UNMERGEABLE)
