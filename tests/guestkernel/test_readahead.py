"""Readahead (mm/readahead.c, filemap_read, filemap_fault): the guest's page cache after
each step of seeded read patterns equals this machine's kernel's, recorded with mincore by
tests/data/readahead/measure_readahead.py (Linux 6.18, ext4 on a loop device, read_ahead_kb
128, max_sectors_kb 1280; with data=journal, which reads order-0 pages, and without, which
reads ahead in large folios), plus the rules the recording cannot show."""

import json
from pathlib import Path

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.readahead import (
    PG_readahead,
    get_init_ra_size,
    get_next_ra_size,
)

P = 4096
DATA = Path(__file__).parent.parent / "data" / "readahead"
FIXTURE = json.loads((DATA / "readahead.json").read_text())
FIXTURE_LF = json.loads((DATA / "readahead-large-folios.json").read_text())
assert "data=journal" in FIXTURE["mount_options"] and "data=journal" not in FIXTURE_LF["mount_options"]
NPAGES = FIXTURE["file_pages"]
B = 0x60000000  # the user buffer
M = 0x70000000  # the file mapping
RW = U.PROT_READ | U.PROT_WRITE
ADVICE = {"normal": U.POSIX_FADV_NORMAL, "random": U.POSIX_FADV_RANDOM,
          "sequential": U.POSIX_FADV_SEQUENTIAL, "willneed": U.POSIX_FADV_WILLNEED}
MADVICE = {"normal": U.MADV_NORMAL, "random": U.MADV_RANDOM,
           "sequential": U.MADV_SEQUENTIAL, "willneed": U.MADV_WILLNEED}


def runs(pages) -> list[list[int]]:
    out, start, prev = [], None, None
    for i in sorted(pages):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            out.append([start, prev + 1])
            start = prev = i
    if start is not None:
        out.append([start, prev + 1])
    return out


def guest(fixture=FIXTURE, large_folios=False):
    k = Kernel(KernelConfig(memory="256MiB", read_ahead_kb=fixture["read_ahead_kb"]))
    if 1 not in k.tasks:
        k.spawn("init")
    k.fs.io_pages = fixture["max_sectors_kb"] // 4
    k.fs.large_folios = large_folios
    k.fs.create("/scratch", NPAGES * P, lambda i: i.to_bytes(4, "little") * (P // 4))
    t = k.spawn("t")
    t.mmap(B, 1 << 20, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    return k, t


def replay(k, t, steps):
    fd = t.open("/scratch")
    inode = k.fs.lookup("/scratch")
    out = []
    for step in steps:
        op = step[0]
        if op == "read":
            t.lseek(fd, step[1], U.SEEK_SET)
            assert t.read(fd, B, step[2]) == step[2]
        elif op == "fadvise":
            assert t.fadvise(fd, step[2], step[3], ADVICE[step[1]]) == 0
        elif op == "mmap":
            t.mmap(M, NPAGES * P, U.PROT_READ, U.MAP_SHARED | U.MAP_FIXED, fd, 0)
        elif op == "madvise":
            assert t.madvise(M + step[2], step[3], MADVICE[step[1]]) == 0
        elif op == "touch":
            t.access_range(M + step[1] * P, 1, False)
        out.append(runs(inode.mapping.pages))
    return out


@pytest.mark.parametrize("large_folios", [False, True], ids=["order-0", "large-folios"])
@pytest.mark.parametrize("case", sorted(FIXTURE["cases"]))
def test_residency_matches_this_machines_kernel(case, large_folios):
    """page_cache_sync_ra / page_cache_async_ra / page_cache_ra_order /
    force_page_cache_ra / do_sync_mmap_readahead / do_async_mmap_readahead, step by step."""
    fixture = FIXTURE_LF if large_folios else FIXTURE
    k, t = guest(fixture, large_folios)
    c = fixture["cases"][case]
    got = replay(k, t, c["steps"])
    for i, (step, want, have) in enumerate(zip(c["steps"], c["resident"], got)):
        assert have == want, f"{case} step {i} {step}: kernel {want}, guest {have}"
    k.reclaim.validate()


def test_window_sizes_follow_get_init_and_get_next_ra_size():
    """mm/readahead.c get_init_ra_size and get_next_ra_size with max = 32 pages: 1-2
    pages -> 16 KiB, 3-4 -> 32 KiB, 5-8 -> 64 KiB, more -> 128 KiB (the comment above
    get_init_ra_size); ramp-up x4 below max/16, x2 up to max/2, then max."""
    assert [get_init_ra_size(n, 32) for n in (1, 2, 3, 4, 5, 8, 9, 32, 64)] == [
        4, 4, 8, 8, 16, 16, 32, 32, 32]
    assert [get_next_ra_size(n, 32) for n in (1, 2, 4, 8, 16, 17, 32)] == [
        4, 4, 8, 16, 32, 32, 32]


def test_small_random_read_reads_the_request_and_leaves_the_state_alone():
    """page_cache_sync_ra: no cached history before the miss -> do_page_cache_ra of the
    request only, file_ra_state untouched (the 'standalone, small random read')."""
    k, t = guest()
    fd = t.open("/scratch")
    f = t.files[fd]
    t.lseek(fd, 700 * P, U.SEEK_SET)
    t.read(fd, B, 3 * P)
    assert runs(k.fs.lookup("/scratch").mapping.pages) == [[700, 703]]
    assert f.f_ra.window() == (0, 0, 0)


def test_readahead_marker_and_mark_page_accessed_once_per_page():
    """The page at start + size - async_size carries PG_readahead (page_cache_ra_unbounded);
    filemap_read marks a page accessed once for consecutive reads within it
    (pos_same_folio(ki_pos, last_pos - 1))."""
    k, t = guest()
    fd = t.open("/scratch")
    pages = k.fs.lookup("/scratch").mapping.pages
    assert t.read(fd, B, 100) == 100  # window [0, 4), async_size 3: the marker on page 1
    assert [i for i, p in pages.items() if p.flags & PG_readahead] == [1]
    calls = []
    orig = k.mark_page_accessed
    k.mark_page_accessed = lambda page: (calls.append(page.index), orig(page))
    for _ in range(40):  # 40 reads of 100 bytes: pages 0 and 1
        t.read(fd, B, 100)
    assert calls == [1]  # page 0 was marked by the first read, page 1 once
    t.lseek(fd, 0, U.SEEK_SET)
    t.read(fd, B, 100)
    assert calls == [1, 0]  # a read that does not continue the last one marks again


def test_fadvise_errors_and_dontneed_keeps_partial_pages():
    """generic_fadvise: unknown advice or a negative length -> EINVAL; DONTNEED drops
    whole pages only (start rounded up, end rounded down), clean and unmapped."""
    k, t = guest()
    fd = t.open("/scratch")
    with pytest.raises(OSError) as e:
        t.fadvise(fd, 0, 0, 6)
    assert e.value.errno == U.EINVAL
    with pytest.raises(OSError) as e:
        t.fadvise(fd, 0, -1, U.POSIX_FADV_DONTNEED)
    assert e.value.errno == U.EINVAL
    t.read(fd, B, 1 << 20)  # pages [0, 512) cached
    pages = k.fs.lookup("/scratch").mapping.pages
    t.fadvise(fd, 10 * P + 1, 20 * P, U.POSIX_FADV_DONTNEED)  # bytes [40961, 122881)
    assert runs(pages)[:2] == [[0, 11], [30, 512]]



MMAP_MISS = json.loads((DATA / "mmap_miss.json").read_text())


def replay_mmap_miss():
    """The faults of measure_mmap_miss.py on the guest: the cached pages after each."""
    k = Kernel(KernelConfig(memory="256MiB", read_ahead_kb=MMAP_MISS["read_ahead_kb"]))
    if 1 not in k.tasks:
        k.spawn("init")
    n = MMAP_MISS["file_pages"]
    k.fs.create("/big", n * P, lambda i: i.to_bytes(4, "little") * (P // 4))
    t = k.spawn("t")
    fd = t.open("/big")
    t.mmap(M, n * P, U.PROT_READ, U.MAP_SHARED | U.MAP_FIXED, fd, 0)
    pages = k.fs.lookup("/big").mapping.pages
    out = []
    for page in MMAP_MISS["touches"]:
        t.access_range(M + page * P, 1, False)
        out.append(runs(pages))
    k.reclaim.validate()
    return out, t.mm.mm_mt.lookup(M).vm_file.f_ra


def test_mmap_read_around_of_faults_64_pages_apart_as_this_machines_kernel():
    """do_sync_mmap_readahead: 100 faults 64 pages apart, each a miss (fault-around finds
    nothing cached), each reads ra_pages around its page ([index - 16, index + 16)), as
    recorded by tests/data/readahead/measure_mmap_miss.py (Linux 6.18, ext4 data=journal)."""
    got, _ = replay_mmap_miss()
    want = MMAP_MISS["resident"]
    assert got[:100] == want[:100]
    assert want[99] == [[64 * j + 16, 64 * j + 48] for j in range(100)]
    # (the kernel reads around at the 101st miss too: see the test below)
    assert want[100][-1] == [64 * 100 + 16, 64 * 100 + 48]


def test_mmap_miss_stays_low_because_the_retried_fault_maps_around():
    """The 101st and later faults of the recording: the kernel still reads around.
    filemap_fault drops the mmap lock for the read-around's I/O (maybe_unlock_mmap_for_io)
    and returns VM_FAULT_RETRY; the retried fault's do_fault_around -> filemap_map_pages
    maps the window's cached pages, each a hit that takes a miss back (memory.py
    do_file_fault). Each spaced miss adds 1 to mmap_miss (do_sync_mmap_readahead) and its
    retry maps 15 pages of the 16-page window (the PG_readahead page at index + 8 left to
    a fault), so mmap_miss is back to 0 after every fault; without the retry the guest's
    passed MMAP_LOTSAMISS (100) at the 101st miss and that fault read its page alone."""
    got, ra = replay_mmap_miss()
    assert ra.mmap_miss == 0
    want = MMAP_MISS["resident"]
    for i in range(100, len(want)):
        assert got[i] == want[i], f"fault {i} at page {MMAP_MISS['touches'][i]}"


FAULT_RETRY = json.loads((DATA / "fault_retry.json").read_text())


@pytest.mark.parametrize("case", sorted(FAULT_RETRY["cases"]))
def test_fault_that_reads_is_retried_and_maps_around_as_this_machines_kernel(case):
    """One file fault on a cold 8 MiB file, as tests/data/readahead/measure_fault_retry.py
    recorded it (Linux 6.18, ext4 data=journal, read_ahead_kb 128; the mapping 64-page
    aligned). filemap_fault of a page not cached counts PGMAJFAULT, reads (read-around:
    [index - 16, index + 16); the page alone under MADV_RANDOM) and returns
    VM_FAULT_RETRY; mm_account_fault counts PGFAULT once, for the retried attempt (6.4 and
    later; 6.1 counted both attempts). The retried read fault's do_fault_around maps the
    cached pages of its aligned 16-page window (fault_around_bytes 64 KiB) but the
    PG_readahead one (next_uptodate_folio): 15 pages, not the faulting page alone. A write
    fault's retry (do_cow_fault) maps only its copy. A fault on a cached page (read_hit)
    is a minor one that maps its window. /proc/vmstat is system-wide: the smallest delta
    of the trials is the fault's own."""
    trials = FAULT_RETRY["cases"][case]
    want = trials[0]
    seen = ("minflt", "majflt", "present", "cached")  # this process's own: every trial
    for t in trials:
        assert {k: t[k] for k in seen} == {k: want[k] for k in seen}
    want_counts = {"pgfault": min(t["pgfault"] for t in trials),
                   "pgmajfault": min(t["pgmajfault"] for t in trials)}
    assert want_counts == {"pgfault": 1, "pgmajfault": want["majflt"]}
    n = FAULT_RETRY["file_pages"]
    k = Kernel(KernelConfig(memory="256MiB", read_ahead_kb=FAULT_RETRY["read_ahead_kb"]))
    if 1 not in k.tasks:
        k.spawn("init")
    k.fs.create("/f", n * P, lambda i: i.to_bytes(4, "little") * (P // 4))
    t = k.spawn("t")
    cow = case == "cow_miss"
    fd = t.open("/f", U.O_RDWR)
    t.mmap(M, n * P, RW if cow else U.PROT_READ,
           (U.MAP_PRIVATE if cow else U.MAP_SHARED) | U.MAP_FIXED, fd, 0)
    if case == "random_miss":
        assert t.madvise(M, n * P, U.MADV_RANDOM) == 0
    if case == "read_hit":
        t.access_range(M + 32 * P, 1, False)
    vm = k.vmstat
    before = {c: vm[c] for c in want_counts}
    t.access_range(M + (20 if case == "read_hit" else 32) * P, 1, cow)
    assert {c: vm[c] - before[c] for c in want_counts} == want_counts
    ptes = t.mm.pgtable.ptes
    present = [v - (M >> 12) for v in ptes if M >> 12 <= v < (M >> 12) + n and ptes[v] & 1]
    assert runs(present) == want["present"]
    assert runs(k.fs.lookup("/f").mapping.pages) == want["cached"]
    k.reclaim.validate()
