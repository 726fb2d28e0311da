"""prctl(PR_SET_THP_DISABLE), MADV_COLD / MADV_PAGEOUT over part or all of a THP and
whole-THP swap-out, against this machine's kernel: tests/data/thp/thp_reclaim.json,
recorded by tests/data/thp/measure_thp_reclaim.py (see its docstring), replayed step by
step on a guest. The fixture was recorded on Linux 6.18; where 6.1 (which the guest
follows) differs, the test says so and asserts 6.1's rule instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.swap import validate_swap
from guestkernel.vma import validate_mm

FIXTURE = json.loads((Path(__file__).parents[1] / "data" / "thp" / "thp_reclaim.json").read_text())
PAGE = 4096
HPAGE = 2 << 20
KEYS = ("thp_fault_alloc", "thp_split_page", "thp_split_pmd", "thp_deferred_split_page",
        "thp_swpout", "thp_swpout_fallback", "pswpout", "pswpin")


def _smaps(task, lo, hi):
    rss = ahp = swap = 0
    elig = []
    inside = False
    for line in task.kernel.procfs.read(f"/proc/{task.pid}/smaps").splitlines():
        first = line.split()[0]
        if "-" in first and not first.endswith(":"):
            a, b = (int(x, 16) for x in first.split("-"))
            inside = lo <= a and b <= hi
        elif inside and first == "Rss:":
            rss += int(line.split()[1])
        elif inside and first == "AnonHugePages:":
            ahp += int(line.split()[1])
        elif inside and first == "Swap:":
            swap += int(line.split()[1])
        elif inside and first == "THPeligible:":
            elig.append(int(line.split()[1]))
    return {"rss_kb": rss, "anon_huge_kb": ahp, "swap_kb": swap, "thp_eligible": elig}


def _aligned_map(t, size):
    """measure_thp.aligned_map's steps with the guest's system calls."""
    raw = t.mmap(0, size + HPAGE, U.PROT_NONE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_NORESERVE)
    base = (raw + HPAGE - 1) & ~(HPAGE - 1)
    if base > raw:
        t.munmap(raw, base - raw)
    tail = raw + size + HPAGE - (base + size)
    if tail:
        t.munmap(base + size, tail)
    t.munmap(base, size)
    assert t.mmap(base, size, U.PROT_READ | U.PROT_WRITE,
                  U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED) == base
    return base


def _counts(k):
    return {key: k.vmstat.get(key, 0) for key in KEYS}


def _delta(before, after):
    return {key: after[key] - before[key] for key in KEYS if after[key] != before[key]}


def _check(k):
    for task in k.tasks.values():
        if task.mm is not None:
            validate_mm(task.mm)
    validate_pages(k)
    k.reclaim.validate()
    validate_swap(k.reclaim.swap)


def _status_thp(t):
    for line in t.kernel.procfs.read(f"/proc/{t.pid}/status").splitlines():
        if line.startswith("THP_enabled:"):
            return int(line.split()[1])
    return None


def _prctl(t, *args):
    try:
        return t.prctl(*args)
    except OSError as e:
        return -e.errno


def test_prctl_thp_disable_as_the_real_kernel():
    """kernel/sys.c PR_SET_THP_DISABLE / PR_GET_THP_DISABLE (MMF_DISABLE_THP):
    hugepage_vma_check refuses every VMA of the mm (no THP fault, smaps THPeligible 0),
    task_thp_status shows THP_enabled 0, fork (MMF_INIT_MASK) and exec (mm_init from
    current->mm) keep it, non-zero unused arguments give EINVAL; clearing it makes new
    faults huge again and pages already mapped stay 4 KiB."""
    want = FIXTURE["prctl"]
    k = Kernel(KernelConfig(memory="256MiB", thp_enabled="madvise"))
    t = k.spawn("measure")
    got = {"get_initial": _prctl(t, U.PR_GET_THP_DISABLE), "status_initial": _status_thp(t)}
    got["set_1"] = _prctl(t, U.PR_SET_THP_DISABLE, 1)
    got["get_after_set"] = _prctl(t, U.PR_GET_THP_DISABLE)
    got["status_after_set"] = _status_thp(t)
    base = _aligned_map(t, 1024 * PAGE)
    t.madvise(base, 1024 * PAGE, U.MADV_HUGEPAGE)
    v0 = _counts(k)
    t.access_range(base, 1024 * PAGE, True)
    got["disabled_fault"] = {"vmstat": _delta(v0, _counts(k)), **_smaps(t, base, base + 1024 * PAGE)}
    child = k.tasks[t.fork()]
    got["fork_child_get"] = _prctl(child, U.PR_GET_THP_DISABLE)
    got["fork_child_status"] = _status_thp(child)
    k.fs.create("/bin/prog", 300 * PAGE)
    exe = k.tasks[t.fork()]
    exe.execve("/bin/prog")
    got["exec_get"] = _prctl(exe, U.PR_GET_THP_DISABLE)
    got["set_einval_arg4"] = _prctl(t, U.PR_SET_THP_DISABLE, 1, 0, 1)
    got["get_einval_arg2"] = _prctl(t, U.PR_GET_THP_DISABLE, 1)
    got["set_0"] = _prctl(t, U.PR_SET_THP_DISABLE, 0)
    got["get_after_clear"] = _prctl(t, U.PR_GET_THP_DISABLE)
    got["status_after_clear"] = _status_thp(t)
    got["old_range_after_clear"] = _smaps(t, base, base + 1024 * PAGE)
    b2 = _aligned_map(t, 1024 * PAGE)
    t.madvise(b2, 1024 * PAGE, U.MADV_HUGEPAGE)
    v0 = _counts(k)
    t.access_range(b2, 1024 * PAGE, True)
    got["enabled_fault"] = {"vmstat": _delta(v0, _counts(k)), **_smaps(t, b2, b2 + 1024 * PAGE)}
    # 6.18 only (prctl.h PR_THP_DISABLE_EXCEPT_ADVISED, arg3 = 1 << 1; GET then says 3):
    # 6.1 refuses a non-zero arg3 (EINVAL) and keeps the flag as it was
    want = dict(want, set_arg3_except_advised=-U.EINVAL)
    assert _prctl(t, U.PR_SET_THP_DISABLE, 1, 1 << 1) == want.pop("set_arg3_except_advised")
    assert _prctl(t, U.PR_GET_THP_DISABLE) == 0
    want.pop("get_after_except_advised")
    assert got == want
    _check(k)


def run_steps(k, t, steps):
    """measure_thp_reclaim.run_case on the guest: a 512-page MADV_HUGEPAGE range written
    whole, then the steps; returns the log as the fixture records it."""
    base = _aligned_map(t, 512 * PAGE)
    t.madvise(base, 512 * PAGE, U.MADV_HUGEPAGE)
    v0 = _counts(k)
    t.access_range(base, 512 * PAGE, True)
    log = [{"step": ["write", 0, 512], "vmstat": _delta(v0, _counts(k)),
            **_smaps(t, base, base + 512 * PAGE)}]
    holder = None
    for step in steps:
        v0 = _counts(k)
        op = step[0]
        if op == "madvise":
            t.madvise(base + step[1] * PAGE, step[2] * PAGE, step[3])
        elif op == "read":
            t.access_range(base + step[1] * PAGE, step[2] * PAGE, False)
        elif op == "mprotect":
            t.mprotect(base + step[1] * PAGE, step[2] * PAGE, step[3])
        elif op == "fork_hold":
            holder = k.tasks[t.fork()]
        log.append({"step": list(step), "vmstat": _delta(v0, _counts(k)),
                    **_smaps(t, base, base + 512 * PAGE)})
        _check(k)
    if holder is not None:
        holder.exit()
    t.munmap(base, 512 * PAGE)
    return log


# 6.18 counts thp_deferred_split_page when a folio whose PMD was split (not unmapped) is
# later split by MADV_COLD / MADV_PAGEOUT; 6.1 queues a folio only when a subpage loses
# its last mapping while others stay mapped (page_remove_rmap -> deferred_split_huge_page),
# which mprotect's split_huge_pmd does not do: the guest counts none
def _linux61(steps):
    out = []
    for rec in steps:
        rec = json.loads(json.dumps(rec))
        rec["vmstat"].pop("thp_deferred_split_page", None)
        out.append(rec)
    return out


NOSWAP = {c["name"]: c["steps"] for c in FIXTURE["madvise_noswap"]}


@pytest.mark.parametrize("name", [n for n in NOSWAP if n != "pageout-whole"])
def test_madv_cold_pageout_of_a_thp_as_the_real_kernel(name):
    """madvise_cold_or_pageout_pte_range (6.1): a PMD-mapped THP the range covers whole
    is deactivated as one folio (no split); one covered in part is split first
    (split_huge_page: thp_split_page, thp_split_pmd) if this is its only mapping, left
    alone if another mm maps it too (page_mapcount != 1); a PTE-mapped subpage of a
    whole THP splits the folio (PageTransCompound). No swap area: MADV_PAGEOUT writes
    nothing."""
    steps = NOSWAP[name]
    k = Kernel(KernelConfig(memory="256MiB", thp_enabled="madvise"))
    t = k.spawn("measure")
    assert run_steps(k, t, [tuple(s["step"]) for s in steps[1:]]) == _linux61(steps)


def test_madv_pageout_of_a_whole_thp_without_swap_splits_it_as_the_real_kernel():
    """shrink_folio_list (6.1) through reclaim_pages: add_to_swap of the PMD-mapped THP
    finds no swap (get_swap_pages: no area), so the folio is split
    (split_folio_to_list: thp_split_page, its PMD: thp_split_pmd), thp_swpout_fallback is
    counted, and the order-0 add_to_swap fails too: the pages stay, 4 KiB."""
    steps = NOSWAP["pageout-whole"]
    k = Kernel(KernelConfig(memory="256MiB", thp_enabled="madvise"))
    t = k.spawn("measure")
    assert run_steps(k, t, [tuple(s["step"]) for s in steps[1:]]) == _linux61(steps)


SWAP = FIXTURE["swap"]


def _swap_case(kind, name):
    return next(c["steps"] for c in SWAP[kind]["cases"] if c["name"] == name)


def _read_after_pageout_61(steps):
    """The read of one page after a whole THP was paged out, as 6.1 does it: do_swap_page
    maps one 4 KiB page (6.18 maps the whole large folio it finds in the swap cache,
    do_swap_page's folio_test_large path, 6.10+: Rss 2048 kB). pswpin is not compared:
    Linux's MADV_PAGEOUT leaves the pages in the swap cache under asynchronous writeback
    (the read is a swap-cache hit), hvsim's reclaim_pages writes synchronously and frees
    them (the read is a swap-in with readahead)."""
    out = _linux61(steps)
    read = out[-1]
    assert read["step"] == ["read", 0, 1]
    read.update(rss_kb=4, swap_kb=2044, anon_huge_kb=0)
    read["vmstat"].pop("pswpin", None)
    return out


def _guest_swap(rotational):
    k = Kernel(KernelConfig(memory="256MiB", swap="64MiB", thp_enabled="madvise",
                            swap_rotational=rotational))
    return k, k.spawn("measure")


def _replay(k, t, steps):
    got = run_steps(k, t, [tuple(s["step"]) for s in steps[1:] if s["step"] != ["sleep"]])
    if got[-1]["step"] == ["read", 0, 1]:
        got[-1]["vmstat"].pop("pswpin", None)
    return got


def _without_sleep(steps):
    return [s for s in steps if s["step"] != ["sleep"]]


def test_whole_thp_swap_out_on_a_non_rotational_device_as_the_real_kernel():
    """add_to_swap of a PMD-mapped THP on a non-rotational block device (6.1:
    SWP_SOLIDSTATE builds cluster_info; get_swap_pages(1, .., HPAGE_PMD_NR) ->
    swap_alloc_cluster): 512 consecutive slots, try_to_unmap splits the PMD only
    (thp_split_pmd, no thp_split_page), one write of the folio (thp_swpout 1, pswpout
    512); swap-in comes back 4 KiB (6.1 do_swap_page maps order-0)."""
    steps = _swap_case("loop-rot0", "pageout-whole-then-read")
    assert SWAP["loop-rot0"]["rotational"] == 0
    k, t = _guest_swap(False)
    assert _replay(k, t, steps) == _without_sleep(_read_after_pageout_61(steps))


def test_thp_swap_out_on_a_rotational_device_falls_back_to_4kib():
    """6.1 builds swap clusters only on a non-rotational device (swapon: `if (p->bdev &&
    bdev_nonrot(p->bdev))` -> SWP_SOLIDSTATE, cluster_info), so get_swap_pages of
    HPAGE_PMD_NR finds no free cluster on a rotational one (as a virtio-blk guest disk
    reports): the THP is split (thp_split_page, thp_split_pmd, thp_swpout_fallback) and
    its 512 pages written 4 KiB (pswpout 512). 6.18, the fixture's kernel, swaps whole on
    a rotational block device too (loop-rot1: thp_swpout 1); the fixture's swap *file*
    shows the fallback path's counters (6.1 and 6.18: get_swap_pages needs SWP_BLKDEV),
    which is what 6.1 does on a rotational device."""
    assert SWAP["loop-rot1"]["rotational"] == 1
    rot1 = _swap_case("loop-rot1", "pageout-whole-then-read")
    assert rot1[1]["vmstat"].get("thp_swpout") == 1  # 6.18's rule, recorded
    steps = _swap_case("file", "pageout-whole-then-read")
    k, t = _guest_swap(True)
    assert _replay(k, t, steps) == _without_sleep(_read_after_pageout_61(steps))


@pytest.mark.parametrize("kind", ["loop-rot0", "loop-rot1"])
@pytest.mark.parametrize("name", ["pageout-part", "pageout-pte-mapped"])
def test_thp_split_before_swap_out_as_the_real_kernel(kind, name):
    """madvise_cold_or_pageout_pte_range splits a THP the range covers in part, and
    shrink_folio_list splits a folio no PMD maps before add_to_swap (no
    thp_swpout_fallback): their covered pages are written 4 KiB (pswpout), whatever
    the device."""
    steps = _swap_case(kind, name)
    k, t = _guest_swap(kind == "loop-rot1")
    assert _replay(k, t, steps) == _linux61(steps)
