"""shmem and System V shared memory go to swap (6.1 mm/shmem.c: shmem_writepage,
shmem_swapin_folio, shmem_undo_range), checked against the rules and against this
machine's kernel (tests/data/shmem_swap: measure_shmem_swap.py and shmem_swap.json, a
memory cgroup limited to 32 MiB with a swap file: a 48 MiB tmpfs file written with dd and
read back, a 48 MiB SysV segment written and read, a 16 MiB SHM_LOCK'd segment beside
32 MiB of anonymous memory; three runs each). The guest is sized to hold about what the
cgroup held (50 MiB), so its counts fall within the spread of the real runs."""

from __future__ import annotations

import json
import pathlib

import pytest

from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.pgtable import MM_SWAPENTS
from guestkernel.swap import validate_swap
from guestkernel.task import proc_smaps
from guestkernel.vmscan import LRU_UNEVICTABLE, init_reclaim

MiB = 1 << 20
PAGE = 4096
DATA = json.loads((pathlib.Path(__file__).parent.parent / "data" / "shmem_swap"
                   / "shmem_swap.json").read_text())
KEYS = ("pswpin", "pswpout", "workingset_refault_anon")


def real(case: str, step: str, key: str) -> list[int]:
    """The values of every run at a step: vmstat deltas, or memory.stat gauges in pages."""
    out = []
    for run in DATA["runs"][case]:
        st = next(s for s in run if s["step"] == step)
        out.append(st["vmstat_delta"][key] if key in st["vmstat_delta"]
                   else st["memstat"][key] // PAGE)
    return out


def within(value: int, vals: list[int]) -> bool:
    return min(vals) <= value <= max(vals)


def kernel(swap="256MiB"):
    # the real runs reclaimed at a memory cgroup's limit, which has no zone watermarks
    # to boost (watermark boosting is per zone): the guest standing for it does not boost
    k = Kernel(memory=50 * MiB, swap=swap, watermark_boost_factor=0)
    init_reclaim(k)
    return k


class Steps:
    def __init__(self, k):
        self.k = k
        self.before = {x: k.vmstat[x] for x in KEYS}

    def step(self) -> dict:
        vm = self.k.vmstat
        d = {x: vm[x] - self.before[x] for x in KEYS}
        self.before = {x: vm[x] for x in KEYS}
        return d


def test_sysv_segment_beyond_memory_swaps_out_and_back():
    """shmem_writepage: the segment's pages that do not fit go to swap (written once
    each), the mapping keeping their swap entries: resident (nr_shmem) + swapped ==
    the segment; reading it back swaps every page in (shmem_swapin_folio; all of them
    refaults) with the data intact; IPC_RMID frees every slot (shmem_undo_range)."""
    k = kernel()
    t = k.init_task
    n = 48 * MiB // PAGE
    sid = t.shmget(U.IPC_PRIVATE, 48 * MiB, U.IPC_CREAT | 0o600)
    a = t.shmat(sid)
    s = Steps(k)
    for off in range(0, 48 * MiB, PAGE):
        t.access(a + off, True, (off + 1).to_bytes(8, "little"))
    written = s.step()
    vm = k.vmstat
    swapped = k.swap.si.inuse_pages - t.mm.rss[MM_SWAPENTS]
    assert vm["nr_shmem"] + swapped == n
    assert written["pswpout"] >= swapped > 0
    assert within(written["pswpout"], real("sysv-1.5x", "written", "pswpout"))
    assert within(vm["nr_shmem"], real("sysv-1.5x", "written", "shmem"))
    # /proc/PID/smaps of the segment (smap_gather_stats: shmem_swap_usage in Swap, no
    # SwapPss) and its resident pages
    text = proc_smaps(t)
    block = text[text.index(f"{a:08x}-"):]
    block = block[:block.index("VmFlags")]
    fields = {ln.split(":")[0]: int(ln.split()[1]) for ln in block.splitlines()[1:]}
    assert fields["Swap"] == swapped * 4 and fields["SwapPss"] == 0
    assert fields["Rss"] == vm["nr_shmem"] * 4
    for off in range(0, 48 * MiB, PAGE):
        t.access(a + off, False)
        assert t.peek(a + off, 8) == (off + 1).to_bytes(8, "little")
    read = s.step()
    assert read["pswpin"] >= swapped and read["workingset_refault_anon"] == read["pswpin"]
    for key in ("pswpin", "workingset_refault_anon"):
        assert within(read[key], real("sysv-1.5x", "read", key)), (key, read[key])
    assert vm["nr_shmem"] + k.swap.si.inuse_pages - t.mm.rss[MM_SWAPENTS] == n
    t.shmdt(a)
    t.shmctl(sid, U.IPC_RMID)
    assert vm["nr_shmem"] == 0 and vm["nr_swapcached"] == 0
    assert k.swap.si.inuse_pages == t.mm.rss[MM_SWAPENTS]  # only the process's own
    assert max(real("sysv-1.5x", "removed", "shmem")) == 0
    k.reclaim.validate()
    validate_swap(k.swap)


def test_tmpfs_file_written_read_and_removed():
    """The same through a tmpfs file (memfd: shmem_file_setup) written and read with
    128 KiB write()/read() calls, as dd does: swapped out while written, swapped in by
    read(), and its slots freed when the last reference goes."""
    k = kernel()
    t = k.init_task
    n = 48 * MiB // PAGE
    fd = t.memfd_create("f")
    buf = t.mmap(0, 128 << 10, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 128 << 10, True)
    s = Steps(k)
    for _ in range(48 * MiB // (128 << 10)):
        assert t.write(fd, buf, 128 << 10) == 128 << 10
    written = s.step()
    vm = k.vmstat
    own = t.mm.rss[MM_SWAPENTS]
    assert vm["nr_shmem"] + k.swap.si.inuse_pages - own == n
    assert within(written["pswpout"], real("tmpfs-1.5x", "written", "pswpout"))
    t.lseek(fd, 0)
    while t.read(fd, buf, 128 << 10) > 0:
        pass
    read = s.step()
    assert read["pswpin"] > 0 and read["workingset_refault_anon"] == read["pswpin"]
    assert read["pswpin"] <= max(real("tmpfs-1.5x", "read", "pswpin")) + n // 2
    t.close(fd)
    assert vm["nr_shmem"] == 0 and k.swap.si.inuse_pages == t.mm.rss[MM_SWAPENTS]
    k.reclaim.validate()
    validate_swap(k.swap)


def test_shm_locked_segment_is_never_swapped():
    """SHM_LOCK (shmem_lock: mapping_set_unevictable): the segment's pages stay on the
    unevictable list and in memory while anonymous memory beside it is swapped, as the
    real kernel kept all 4096 pages of its locked segment."""
    k = kernel()
    t = k.init_task
    sid = t.shmget(U.IPC_PRIVATE, 8 * MiB, U.IPC_CREAT | 0o600)
    a = t.shmat(sid)
    t.shmctl(sid, U.SHM_LOCK)
    for off in range(0, 8 * MiB, PAGE):
        t.access(a + off, True, b"x")
    x = t.mmap(0, 40 * MiB, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for off in range(0, 40 * MiB, PAGE):
        t.access(x + off, True, (off + 1).to_bytes(8, "little"))
    vm = k.vmstat
    assert vm["pswpout"] > 0
    assert vm["nr_shmem"] == 2048 and k.swap.si.inuse_pages == t.mm.rss[MM_SWAPENTS]
    assert k.reclaim.lruvecs[0].lists[LRU_UNEVICTABLE].nr >= 2048
    assert set(real("sysv-locked", "anon", "shmem")) == {4096}  # all 16 MiB stayed
    assert min(real("sysv-locked", "anon", "pswpout")) > 0


def test_truncate_frees_the_swap_entries_beyond():
    k = kernel()
    t = k.init_task
    fd = t.memfd_create("f")
    buf = t.mmap(0, 128 << 10, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(buf, 128 << 10, True)
    for _ in range(48 * MiB // (128 << 10)):
        t.write(fd, buf, 128 << 10)
    own = t.mm.rss[MM_SWAPENTS]
    assert k.swap.si.inuse_pages - own > 1000
    t.ftruncate(fd, 4 * MiB)  # the first 1024 pages stay
    swapped = k.swap.si.inuse_pages - own
    assert k.vmstat["nr_shmem"] + swapped == 1024
    t.ftruncate(fd, 0)
    assert k.swap.si.inuse_pages == own and k.vmstat["nr_shmem"] == 0
    validate_swap(k.swap)


def test_without_swap_shmem_stays_in_memory():
    """shmem_writepage without swap: redirty and activate (AOP_WRITEPAGE_ACTIVATE); the
    segment's pages are never lost."""
    k = Kernel(memory=64 * MiB)
    init_reclaim(k)
    t = k.init_task
    sid = t.shmget(U.IPC_PRIVATE, 16 * MiB, U.IPC_CREAT | 0o600)
    a = t.shmat(sid)
    for off in range(0, 16 * MiB, PAGE):
        t.access(a + off, True, (off + 1).to_bytes(8, "little"))
    k.reclaim.reclaim_pages([p for p in k.reclaim.lruvecs[0].lists[1]]
                            + [p for p in k.reclaim.lruvecs[0].lists[0]])
    assert k.vmstat["nr_shmem"] == 4096
    for off in range(0, 16 * MiB, 64 * PAGE):
        t.access(a + off, False)  # (reclaim unmapped them: a minor fault maps each again)
        assert t.peek(a + off, 8) == (off + 1).to_bytes(8, "little")
    assert k.vmstat["pswpout"] == 0


@pytest.mark.parametrize("case", ["tmpfs-1.5x", "sysv-1.5x"])
def test_fixture_identity(case):
    """In the real runs too, every page of the 48 MiB is resident shmem, swapped or in the
    swap cache (memory.stat shmem + swap + swapcached), give or take the process's own
    anonymous pages (rss) that swap beside it."""
    for run in DATA["runs"][case]:
        st = next(s for s in run if s["step"] == "written")
        m = {x: st["memstat"][x] // PAGE for x in ("shmem", "swap", "swapcached", "rss")}
        assert 0 <= m["shmem"] + m["swap"] + m["swapcached"] - 12288 <= 32
