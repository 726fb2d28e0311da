"""Swap accounting of memory cgroups (6.1 mm/memcontrol.c, mm/swap_slots.c).

v2: folio_alloc_swap charges the folio's memcg's swap counter for its slot
(__mem_cgroup_try_charge_swap); a charge over memory.swap.max counts MEMCG_SWAP_MAX and
MEMCG_SWAP_FAIL and frees the slot (put_swap_folio), so add_to_swap fails and reclaim keeps
the folio; the slot's charge goes when the slot is freed (__mem_cgroup_uncharge_swap).
The page's memory charge goes when the page is freed.

v1 (do_memsw_account): every page charge is a memory and a memsw charge; at swap-out
mem_cgroup_swapout records the slot, uncharges memory and leaves memsw charged until the
slot is freed; a swap-in charges memory+memsw again and drops the slot's memsw charge
(mem_cgroup_swapin_uncharge_swap). Over memsw.max, try_charge_memcg reclaims without
swapping. Expected values are the kernel's arithmetic on the pages written."""

from __future__ import annotations

import pytest

from guestkernel.kernel import Kernel
from guestkernel.memcontrol import MEMCG_CHARGE_BATCH, PAGE_COUNTER_MAX
from guestkernel.uapi import MADV_PAGEOUT, MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
N = 100  # pages written; charged as two batches of MEMCG_CHARGE_BATCH: 28 left in the stock
STOCK = 2 * MEMCG_CHARGE_BATCH - N


def cgroup_a(k, files: dict[str, str] | None = None):
    """The cgroup "a" below the mount point, its `files` written in order (name: value),
    and a task "t" attached to it: (cg, path, task, memcg)."""
    cg = k.cgroup
    path = cg.mount_point + "/a"
    cg.mkdir(path)
    for name, value in (files or {}).items():
        cg.write(f"{path}/{name}", value)
    t = k.spawn("t")
    cg.attach(t, path)
    return cg, path, t, cg.lookup(path)


def setup(version: int):
    k = Kernel(memory="128MiB", swap="64MiB", cgroup_version=version)
    cg, path, t, m = cgroup_a(k)
    addr = t.mmap(0, N * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    t.access_range(addr, N * PAGE, True)
    return k, cg, path, m, t, addr


def read_pages(cg, path: str) -> int:
    return int(cg.read(path)) // PAGE


def test_v2_swap_out_charges_swap_current_and_freeing_the_slots_returns_it():
    """__mem_cgroup_try_charge_swap at add_to_swap: MADV_PAGEOUT of N pages (an unclocked
    guest writes and frees them in the same pass) moves memory.swap.current from 0 to N
    pages and memory.current down by N; munmap frees the slots (free_swap_and_cache ->
    __mem_cgroup_uncharge_swap): swap.current 0."""
    k, cg, p, m, t, addr = setup(2)
    assert read_pages(cg, p + "/memory.current") == N + STOCK
    assert read_pages(cg, p + "/memory.swap.current") == 0
    assert cg.read(p + "/memory.swap.max") == "max\n"
    t.madvise(addr, N * PAGE, MADV_PAGEOUT)
    assert k.vmstat["pswpout"] == N
    assert read_pages(cg, p + "/memory.swap.current") == N
    assert read_pages(cg, p + "/memory.current") == STOCK
    k.memcgs.validate()
    t.munmap(addr, N * PAGE)
    assert read_pages(cg, p + "/memory.swap.current") == 0
    assert cg.read(p + "/memory.swap.events") == "high 0\nmax 0\nfail 0\n"
    k.memcgs.validate()


def test_v2_swap_max_lets_exactly_k_pages_go_to_swap():
    """memory.swap.max of K pages: page_counter_try_charge on memcg->swap succeeds K
    times; each of the N - K folios after it counts MEMCG_SWAP_MAX and MEMCG_SWAP_FAIL,
    its slot is put back and add_to_swap fails: the folio stays charged and resident."""
    k, cg, p, m, t, addr = setup(2)
    K = 40
    cg.write(p + "/memory.swap.max", str(K * PAGE))
    assert read_pages(cg, p + "/memory.swap.max") == K
    t.madvise(addr, N * PAGE, MADV_PAGEOUT)
    assert k.vmstat["pswpout"] == K
    assert read_pages(cg, p + "/memory.swap.current") == K
    assert read_pages(cg, p + "/memory.current") == N - K + STOCK
    assert cg.read(p + "/memory.swap.events") == f"high 0\nmax {N - K}\nfail {N - K}\n"
    assert k.swap.total_swap_pages() - k.swap.free_swap_pages() == K  # the refused slots freed
    k.memcgs.validate()


def test_v2_swap_max_bounds_limit_reclaim_then_the_memcg_oom():
    """memory.max 8 MiB and swap.max 1 MiB (2048 + 256 pages): limit reclaim swaps until
    swap.current reaches 256 pages; then get_scan_count sees no swap for the memcg
    (mem_cgroup_get_nr_swap_pages 0: SCAN_FILE), reclaim frees nothing and the memcg OOM
    kills the writer. No more than 256 pages ever went to swap."""
    k = Kernel(memory="128MiB", swap="64MiB", cgroup_version=2)
    cg, p, t, m = cgroup_a(k, {"memory.max": "8M", "memory.swap.max": "1M"})
    addr = t.mmap(0, 4096 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    for off in range(0, 4096 * PAGE, 64 * PAGE):
        t.access_range(addr + off, 64 * PAGE, True)
        assert m.swap.usage <= 256
        if t.state != "running":
            break
    assert t.state != "running"
    assert m.swap.watermark == 256
    assert k.vmstat["pswpout"] == 256
    assert m.events["oom_kill"] == 1
    k.memcgs.validate()


def test_v1_swapout_uncharges_memory_and_keeps_memsw_until_the_slot_is_freed():
    """mem_cgroup_swapout (v1): N pages swapped out leave memory.usage_in_bytes down by N
    and memory.memsw.usage_in_bytes unchanged (memory+swap); memory.stat's swap is N
    pages; freeing the slots (munmap: __mem_cgroup_uncharge_swap) takes memsw down by N."""
    k, cg, p, m, t, addr = setup(1)
    assert read_pages(cg, p + "/memory.usage_in_bytes") == N + STOCK
    assert read_pages(cg, p + "/memory.memsw.usage_in_bytes") == N + STOCK
    t.madvise(addr, N * PAGE, MADV_PAGEOUT)
    assert k.vmstat["pswpout"] == N
    assert read_pages(cg, p + "/memory.usage_in_bytes") == STOCK
    assert read_pages(cg, p + "/memory.memsw.usage_in_bytes") == N + STOCK
    stat = dict(ln.split() for ln in cg.read(p + "/memory.stat").splitlines())
    assert int(stat["swap"]) == N * PAGE
    assert m.pgpgout == N  # mem_cgroup_charge_statistics(memcg, -nr_entries)
    k.memcgs.validate()
    t.munmap(addr, N * PAGE)
    assert read_pages(cg, p + "/memory.memsw.usage_in_bytes") == STOCK
    assert read_pages(cg, p + "/memory.usage_in_bytes") == STOCK
    k.memcgs.validate()


def test_v1_swapin_moves_the_memsw_charge_back_to_the_page():
    """mem_cgroup_swapin_charge_folio + mem_cgroup_swapin_uncharge_swap (v1): reading the
    N swapped pages back charges memory and memsw for each page and uncharges the slot's
    memsw charge: memory is back to N (+ the stock), memsw unchanged, memory.stat swap 0
    though the slots stay in the swap cache."""
    k, cg, p, m, t, addr = setup(1)
    t.madvise(addr, N * PAGE, MADV_PAGEOUT)
    memsw = m.memsw.usage
    t.access_range(addr, N * PAGE, False)
    assert k.vmstat["pswpin"] == N
    assert len(k.swap.swap_cache) == N
    assert m.memory.usage - sum(n for c, n in zip(k.memcgs.stock_cached, k.memcgs.stock_nr)
                                if c is m) - m.kstat["kernel"] == N  # less the kernel pages
    assert m.memsw.usage - m.memory.usage == memsw - N - STOCK
    stat = dict(ln.split() for ln in cg.read(p + "/memory.stat").splitlines())
    assert int(stat["swap"]) == 0
    k.memcgs.validate()


def test_v1_memsw_limit_files_and_their_invariant():
    """mem_cgroup_resize_max: memory.limit_in_bytes may not exceed memsw.limit_in_bytes,
    nor memsw.limit_in_bytes go below memory.limit_in_bytes (-EINVAL); the root's cannot
    be set; failcnt and max_usage_in_bytes reset on a write."""
    k = Kernel(memory="128MiB", swap="64MiB", cgroup_version=1)
    cg = k.cgroup
    root = cg.mount_point
    p = root + "/a"
    cg.mkdir(p)
    assert int(cg.read(p + "/memory.memsw.limit_in_bytes")) == PAGE_COUNTER_MAX * PAGE
    cg.write(p + "/memory.limit_in_bytes", "8M")
    cg.write(p + "/memory.memsw.limit_in_bytes", "9M")
    assert cg.read(p + "/memory.memsw.limit_in_bytes") == f"{9 << 20}\n"
    with pytest.raises(OSError) as e:
        cg.write(p + "/memory.limit_in_bytes", "10M")
    assert e.value.errno == 22
    with pytest.raises(OSError) as e:
        cg.write(p + "/memory.memsw.limit_in_bytes", "7M")
    assert e.value.errno == 22
    with pytest.raises(OSError):
        cg.write(root + "/memory.memsw.limit_in_bytes", "7M")
    stat = dict(ln.split() for ln in cg.read(p + "/memory.stat").splitlines())
    assert int(stat["hierarchical_memsw_limit"]) == 9 << 20
    cg.write(p + "/memory.memsw.failcnt", "0")
    assert cg.read(p + "/memory.memsw.failcnt") == "0\n"


def test_v1_memsw_limit_bounds_memory_plus_swap_then_the_memcg_oom():
    """try_charge_memcg with do_memsw_account: memory 8 MiB, memsw 9 MiB. Memory+swap
    never exceeds 2304 pages and reaches it (memsw's watermark); once memsw is full its
    try_charge fails (memsw failcnt), reclaim runs without MEMCG_RECLAIM_MAY_SWAP, frees
    nothing, and the memcg OOM kills the writer; swap held at most 2304 - 2048 = 256
    pages of the cgroup."""
    k = Kernel(memory="128MiB", swap="64MiB", cgroup_version=1)
    cg, p, t, m = cgroup_a(k, {"memory.limit_in_bytes": "8M", "memory.memsw.limit_in_bytes": "9M"})
    addr = t.mmap(0, 4096 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    for off in range(0, 4096 * PAGE, 64 * PAGE):
        t.access_range(addr + off, 64 * PAGE, True)
        assert m.memsw.usage <= 2304 and m.memory.usage <= 2048
        assert sum(1 for c in k.memcgs.swap_cgroup.values() if c is m) <= 256
        if t.state != "running":
            break
        k.memcgs.validate()
    assert t.state != "running"
    assert m.memsw.watermark == 2304
    assert m.memsw.failcnt > 0
    assert m.events["oom_kill"] == 1
    k.memcgs.validate()


@pytest.mark.parametrize("k_pages", [1024, 100])
def test_v2_a_thp_is_swapped_whole_or_split_by_swap_max(k_pages):
    """A PMD-mapped THP on a non-rotational device (add_to_swap with HPAGE_PMD_NR slots):
    with room under swap.max its 512 slots are charged at once (thp_swpout, swap.current
    512); with K < 512 pages of room the folio's charge is refused (MEMCG_SWAP_MAX and
    _FAIL once), its cluster put back, the folio split (thp_swpout_fallback) and exactly
    K subpages swapped, each of the other 512 - K refused once more."""
    from guestkernel.config import KernelConfig

    k = Kernel(KernelConfig(memory="256MiB", swap="64MiB", swap_rotational=False,
                            cgroup_version=2, thp_enabled="always"))
    cg, p, t, m = cgroup_a(k, {"memory.swap.max": str(k_pages * PAGE)})
    addr = t.mmap(0, 1024 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    a = (addr + (2 << 20) - 1) & ~((2 << 20) - 1)
    t.access_range(a, 512 * PAGE, True)
    vm = k.vmstat
    assert vm["thp_fault_alloc"] == 1
    before = m.memory.usage
    t.madvise(a, 512 * PAGE, MADV_PAGEOUT)
    swapped = min(k_pages, 512)
    refused = 0 if k_pages >= 512 else 1 + 512 - k_pages
    assert (m.swap.usage, vm["pswpout"]) == (swapped, swapped)
    assert (vm["thp_swpout"], vm["thp_swpout_fallback"]) == ((1, 0) if k_pages >= 512 else (0, 1))
    assert cg.read(p + "/memory.swap.events") == f"high 0\nmax {refused}\nfail {refused}\n"
    assert m.memory.usage == before - swapped
    k.memcgs.validate()


@pytest.mark.parametrize("k_pages", [1000, 20])
def test_v2_shmem_writepage_charges_swap_and_swap_max_keeps_the_rest(k_pages):
    """shmem_writepage's folio_alloc_swap: each of 50 shared anonymous pages MADV_PAGEOUT
    writes is charged to swap.current; with swap.max of K < 50 pages exactly K go, the
    other 50 - K are refused (MEMCG_SWAP_MAX, _FAIL: redirtied, kept in the page cache:
    nr_shmem 50 - K)."""
    from guestkernel.uapi import MAP_SHARED

    k = Kernel(memory="128MiB", swap="64MiB", cgroup_version=2)
    cg, p, t, m = cgroup_a(k, {"memory.swap.max": str(k_pages * PAGE)})
    addr = t.mmap(0, 50 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
    t.access_range(addr, 50 * PAGE, True)
    before = m.memory.usage
    t.madvise(addr, 50 * PAGE, MADV_PAGEOUT)
    swapped = min(k_pages, 50)
    assert (m.swap.usage, k.vmstat["pswpout"]) == (swapped, swapped)
    assert m.memory.usage == before - swapped
    assert k.vmstat["nr_shmem"] == 50 - swapped
    assert cg.read(p + "/memory.swap.events") == f"high 0\nmax {50 - swapped}\nfail {50 - swapped}\n"
    k.memcgs.validate()
