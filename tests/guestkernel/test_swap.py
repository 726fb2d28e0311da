"""The guest swap device: slots and swap_map counts, swap cache, /proc/swaps, swap-out and
swap-in (contents survive, major faults, readahead, cost), slot freeing rules."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.kernel import Kernel
from guestkernel.page import PG_dirty, PG_swapcache
from guestkernel.page_alloc import validate_buddy
from guestkernel.pgtable import is_swap_pte, pte_to_swp_entry
from guestkernel.swap import SWAP_HAS_CACHE, swp_offset, validate_swap
from guestkernel.vmscan import LRU_ACTIVE_ANON, init_reclaim

RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
MiB = 1 << 20


def boot(**kw):
    k = Kernel(**{"memory": "64MiB", "swap": "16MiB", **kw})
    init_reclaim(k)
    k.spawn("init")
    return k


def page_at(t, addr):
    return t.kernel.pfn_to_page(t.mm.pgtable.ptes[addr >> 12] >> 12)


def filled(t, n, tag=b"p"):
    """n pages, page i starting with tag + i."""
    a = t.mmap(0, n << 12, RW, ANON)
    for i in range(n):
        t.access(a + (i << 12), True, tag + i.to_bytes(4, "little"))
    return a


def swap_out(t, a, n):
    k = t.kernel
    pages = [page_at(t, a + (i << 12)) for i in range(n)]
    assert k.reclaim.reclaim_pages(pages) == n
    return pages


# ------------------------------------------------------------------ device, /proc
def test_proc_swaps_and_meminfo_for_512mib():
    k = Kernel(memory="64MiB", swap="512MiB")
    init_reclaim(k)
    assert k.procfs.read("/proc/swaps") == (
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/dev/vda2                               partition\t524284\t\t0\t\t-2\n"
    )
    meminfo = k.procfs.read("/proc/meminfo")
    assert "SwapTotal:        524284 kB" in meminfo
    assert "SwapFree:         524284 kB" in meminfo
    assert k.total_swap_pages() == 131071  # slot 0 holds the swap header


def test_no_swap_device():
    k = Kernel(memory="64MiB")
    init_reclaim(k)
    assert k.procfs.read("/proc/swaps") == "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
    assert k.total_swap_pages() == 0 and k.swap.get_swap_page() == 0


def test_slots_next_fit_and_swap_map_counts():
    k = boot()
    sw = k.swap
    e1, e2, e3 = sw.get_swap_page(), sw.get_swap_page(), sw.get_swap_page()
    assert [swp_offset(e) for e in (e1, e2, e3)] == [1, 2, 3]
    assert sw.si.swap_map[1] == SWAP_HAS_CACHE
    sw.swap_duplicate(e1)
    sw.swap_duplicate(e1)
    assert sw.swap_count(e1) == 2
    sw.swap_free(e1)
    sw.swap_free(e1)
    assert sw.si.swap_map[1] == SWAP_HAS_CACHE  # the cache bit keeps the slot
    assert sw.free_swap_pages() == 4095 - 3
    with pytest.raises(ValueError):
        sw.swap_free(e1)


# ------------------------------------------------------------------ swap-out / swap-in
def test_swap_out_and_in_contents_survive():
    k = boot()
    t = k.spawn("app")
    a = filled(t, 16)
    pages = swap_out(t, a, 16)
    vm = k.vmstat
    assert vm["pswpout"] == 16 and t.mm.rss[2] == 16 and t.mm.rss[1] == 1
    ptes = t.mm.pgtable.ptes
    entries = [pte_to_swp_entry(ptes[(a >> 12) + i]) for i in range(16)]
    assert all(is_swap_pte(ptes[(a >> 12) + i]) for i in range(16))
    assert [swp_offset(e) for e in entries] == list(range(1, 17))  # next-fit, in order
    assert all(p._count == 0 for p in pages)
    validate_swap(k.swap)
    for i in range(16):
        t.access(a + (i << 12), False)
        assert t.peek(a + (i << 12), 5) == b"p" + i.to_bytes(4, "little")
    assert vm["pswpin"] == 16 and t.mm.rss[2] == 0
    # aligned windows of 8 slots: [0, 8) reads 1..7 (0 is the header), [8, 16), [16, 24)
    assert vm["pgmajfault"] == 3
    validate_swap(k.swap)
    validate_buddy(k.page_alloc)
    k.reclaim.validate()


def test_swapin_readahead_window_cost_and_major_fault():
    k = boot(swap_latency="100us", swap_bandwidth="400MiB")
    t = k.spawn("app")
    a = filled(t, 12)
    swap_out(t, a, 12)  # slots 1..12
    vm = k.vmstat
    k.take_stall()
    # fault on the page in slot 5: aligned window of 2**page_cluster = 8 slots [0, 8),
    # slot 0 is the header -> slots 1..7 read in one request
    cost = t.access(a + (4 << 12), False)
    assert vm["pswpin"] == 7 and vm["swap_ra"] == 6 and vm["pgmajfault"] == 1
    assert cost == pytest.approx(100e-6 + 7 * 4096 / (400 * MiB))
    # a neighbour is now in the swap cache: a minor fault, no I/O
    cost = t.access(a, False)
    assert vm["pswpin"] == 7 and vm["pgmajfault"] == 1 and cost == 0
    # slot 9 starts the next window [8, 16): slots 8..12 are in use
    t.access(a + (8 << 12), False)
    assert vm["pswpin"] == 12 and vm["swap_ra"] == 10 and vm["pgmajfault"] == 2
    validate_swap(k.swap)


def test_swapin_readahead_allocates_every_page_of_the_window_with_the_fault_gfp():
    """6.1 swap_cluster_readahead -> __read_swap_cache_async(entry, gfp_mask, ...) for
    every slot of the window, the faulting one and its neighbours alike: gfp_mask is
    do_swap_page's GFP_HIGHUSER_MOVABLE, so allocating (and, under a memory cgroup,
    charging) a readahead neighbour may enter direct reclaim, as the faulting page's may.
    (hvsim allocated the neighbours without __GFP_DIRECT_RECLAIM: under pressure a
    window stopped at the first neighbour the free pages above the watermark could not
    hold.)"""
    k = boot()
    t = k.spawn("app")
    a = filled(t, 12)
    swap_out(t, a, 12)  # slots 1..12
    gfps = []
    alloc = k.alloc_pages

    def recording(gfp, *args, **kw):
        gfps.append(gfp)
        return alloc(gfp, *args, **kw)

    k.alloc_pages = recording
    t.access(a + (4 << 12), False)  # slot 5: the window [0, 8) reads slots 1..7
    k.alloc_pages = alloc
    assert k.vmstat["pswpin"] == 7 and k.vmstat["swap_ra"] == 6
    # the seven pages of the window (no page table is allocated: the PTEs exist)
    assert gfps == [G.GFP_HIGHUSER_MOVABLE] * 7
    assert all(g & G.__GFP_DIRECT_RECLAIM for g in gfps)
    validate_swap(k.swap)


def test_slot_kept_while_swap_is_mostly_free_freed_when_half_full():
    k = boot(swap="128KiB")  # 31 slots
    t = k.spawn("app")
    a = filled(t, 4)
    swap_out(t, a, 4)
    file_pages = k.vmstat["nr_file_pages"]
    t.access(a, False)
    p = page_at(t, a)
    # the 4 slots' pages are in the swap cache: SwapCached, and within nr_file_pages
    assert k.vmstat["nr_swapcached"] == 4 and k.vmstat["nr_file_pages"] == file_pages + 4
    assert "SwapCached:           16 kB" in k.procfs.read("/proc/meminfo")
    # 4 of 31 slots used: the swap copy stays valid, the page clean in the swap cache
    assert p.flags & PG_swapcache and not p.flags & PG_dirty
    assert k.swap.si.swap_map[swp_offset(p.private)] == SWAP_HAS_CACHE
    b = filled(t, 20, b"q")
    swap_out(t, b, 20)  # 24 of 31 in use: vm_swap_full
    assert k.swap.vm_swap_full()
    used = k.swap.si.inuse_pages
    t.access(b, False)
    q = page_at(t, b)
    assert not q.flags & PG_swapcache and q.flags & PG_dirty  # slot freed on swap-in
    assert k.swap.si.inuse_pages < used
    validate_swap(k.swap)


def test_slot_freed_for_mlocked_vma():
    k = boot()
    t = k.spawn("app")
    a = filled(t, 2)
    swap_out(t, a, 2)
    t.mlock(a, 2 << 12)  # populates: both swapped in, in a locked VMA
    p = page_at(t, a)
    assert not p.flags & PG_swapcache
    validate_swap(k.swap)


def test_slot_freed_on_exclusive_write_swapin():
    k = boot()
    t = k.spawn("app")
    a = filled(t, 1)
    swap_out(t, a, 1)
    vma = t.mm.find_vma(a)
    pte = t.mm.pgtable.ptes[a >> 12]
    page, cost, major = k.swap.swapin(t, vma, a, pte, write=True)
    assert major and not page.flags & PG_swapcache and page.flags & PG_dirty
    assert page._count == 1  # only the caller's new PTE holds it
    assert k.swap.si.inuse_pages == 0


def test_fork_shares_swap_entries_and_exit_frees_them():
    k = boot()
    t = k.spawn("app")
    a = filled(t, 3)
    swap_out(t, a, 3)
    child_pid = t.fork()
    child = k.tasks[child_pid]
    e = pte_to_swp_entry(t.mm.pgtable.ptes[a >> 12])
    assert k.swap.swap_count(e) == 2  # parent's and child's PTE
    assert child.mm.rss[2] == 3
    child.exit(0)
    assert k.swap.swap_count(e) == 1
    t.munmap(a, 3 << 12)
    assert k.swap.si.inuse_pages == 0
    validate_swap(k.swap)


def test_a_write_after_swapin_copies_a_page_whose_slot_a_fork_child_still_holds():
    """6.1 do_swap_page maps a swapped-in page writable only when it is certainly
    exclusive (pte_swp_exclusive, cleared by fork on both sides, or page_count == 1 after
    try_to_free_swap, which keeps a page whose slot is still referenced). Written,
    swapped out, forked: the parent's write fault reads the page into the swap cache and
    must copy it, so the child still reads what was written before the fork."""
    k = boot(memory="48MiB", swap="64KiB")
    parent = k.spawn("app")
    a = filled(parent, 1, b"A")
    swap_out(parent, a, 1)
    child = k.tasks[parent.fork()]
    parent.access(a, True, b"B")
    assert parent.peek(a, 1) == b"B"
    child.access(a, False)
    assert child.peek(a, 1) == b"A"
    assert k.vmstat["fault_swapin"] == 2 and k.vmstat["fault_cow"] == 1  # parent, child; parent


def test_a_write_to_a_swapped_in_page_copies_while_a_fork_child_holds_its_slot():
    """6.1 do_wp_page reuses an anonymous page only if page_count(page) == 1 once
    try_to_free_swap has run, and try_to_free_swap keeps a page whose slot another swap
    PTE still references: the parent's read swap-in maps the page read-only, its later
    write copies it, and the child (still on the swap entry) reads the old contents."""
    k = boot(memory="48MiB", swap="64KiB")
    parent = k.spawn("app")
    a = filled(parent, 1, b"A")
    swap_out(parent, a, 1)
    child = k.tasks[parent.fork()]
    parent.access(a, False)
    parent.access(a, True, b"B")
    assert parent.peek(a, 1) == b"B"
    child.access(a, False)
    assert child.peek(a, 1) == b"A"
    assert k.vmstat["fault_cow_reuse"] == 0 and k.vmstat["fault_cow"] == 1


def test_free_swap_cache_when_the_last_pte_goes():
    """zap_pte_range + free_page_and_swap_cache, step by step."""
    from guestkernel import memory as mem

    k = boot()
    t = k.spawn("app")
    a = filled(t, 1)
    swap_out(t, a, 1)
    t.access(a, False)  # back in memory, still in the swap cache (slot kept)
    p = page_at(t, a)
    assert p.flags & PG_swapcache and p._count == 2
    assert not k.swap.free_swap_cache(p)  # still mapped
    t.mm.pgtable.clear_pte(a >> 12)
    t.mm.rss[1] -= 1
    mem.page_remove_rmap(k, p)
    assert k.swap.free_swap_cache(p)  # unmapped, no swap PTE: the cache lets go
    assert p._count == 1 and k.swap.si.inuse_pages == 0
    mem.put_page(k, p)
    assert p._count == 0
    validate_swap(k.swap)
    validate_buddy(k.page_alloc)


def test_identical_contents_share_one_object():
    k = boot()
    t = k.spawn("app")
    a = t.mmap(0, 8 << 12, RW, ANON)
    same = b"same" * 1024
    for i in range(8):
        t.access(a + (i << 12), True, same)
    swap_out(t, a, 8)
    data = [k.swap.si.data[o] for o in range(1, 9)]
    assert all(d is data[0] for d in data) and data[0] == same
    assert k.swap.distinct_contents() == 1
    t.munmap(a, 8 << 12)
    assert k.swap.distinct_contents() == 0


def test_swap_full_keeps_anon_pages_active():
    k = boot(swap="16KiB")  # 3 slots
    t = k.spawn("app")
    a = filled(t, 5)
    pages = [page_at(t, a + (i << 12)) for i in range(5)]
    assert k.reclaim.reclaim_pages(pages) == 3
    assert k.swap.free_swap_pages() == 0
    lst = k.reclaim.lruvecs[0].lists[LRU_ACTIVE_ANON]
    assert sum(1 for p in lst if p in pages) == 2
    validate_swap(k.swap)


# ------------------------------------------------------------------ invariants
NP = 12


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from("wrpfxu"), st.integers(0, 1), st.integers(0, NP - 1)),
                max_size=40))
def test_swap_refcounts_and_contents_under_random_operations(ops):
    """Writes, reads, page-outs, fork, exit and munmap on a parent and its child: every
    read sees the bytes last written by that process, and the swap map, swap cache,
    LRU and buddy invariants hold after every step."""
    k = boot(memory="48MiB", swap="64KiB")  # 15 slots: often full, often half full
    parent = k.spawn("app")
    a = parent.mmap(0, NP << 12, RW, ANON)
    tasks = [parent, None]
    model = [{}, {}]
    serial = 0
    for op, who, i in ops:
        t = tasks[who]
        if t is None or t.state != "running":
            continue
        addr = a + (i << 12)
        if op == "w":
            serial += 1
            data = serial.to_bytes(4, "little")
            t.access(addr, True, data)
            model[who][i] = data
        elif op == "r":
            t.access(addr, False)
            assert t.peek(addr, 4) == model[who].get(i, bytes(4))
        elif op == "p":
            pte = t.mm.pgtable.ptes.get(addr >> 12, 0)
            if pte & 1 and pte >> 12 != k.zero_pfn:
                k.reclaim.reclaim_pages([k.pfn_to_page(pte >> 12)])
        elif op == "f" and tasks[1] is None and who == 0:
            tasks[1] = k.tasks[parent.fork()]
            model[1] = dict(model[0])
        elif op == "x" and who == 1:
            t.exit(0)
        elif op == "u":
            t.munmap(addr, 4096)
            t.mmap(addr, 4096, RW, ANON | U.MAP_FIXED)
            model[who].pop(i, None)
        validate_swap(k.swap)
        k.reclaim.validate()
    for who, t in enumerate(tasks):
        if t is not None and t.state == "running":
            for i in range(NP):
                t.access(a + (i << 12), False)
                assert t.peek(a + (i << 12), 4) == model[who].get(i, bytes(4))
    for t in tasks:
        if t is not None and t.state == "running":
            t.exit(0)
    # what is left in the swap cache is unmapped and unreferenced: reclaim frees it all
    # (zap_page_range calling kernel.free_swap_cache would free it at exit already)
    left = list(k.swap.swap_cache.values())
    assert all(p._mapcount == -1 and p._count == 1 for p in left)
    assert all(not k.swap.swap_count(p.private) for p in left)
    assert k.reclaim.reclaim_pages(left) == len(left)
    assert k.swap.si.inuse_pages == 0 and not k.swap.swap_cache
    validate_swap(k.swap)
    validate_buddy(k.page_alloc)


def test_double_paging_cost_of_reading_a_page_to_swap_it():
    """Beneath a hypervisor, reading a page to write it to guest swap may first fault it
    back from the host (double paging): phys.touch's time is the reclaimer's."""
    from guestkernel.physmem import BareMetal

    class SlowHost(BareMetal):
        def touch(self, pfn, write):
            return 1e-3

    k = Kernel(memory="64MiB", swap="16MiB", phys=SlowHost(16384),
               swap_latency="100us", swap_bandwidth="400MiB")
    init_reclaim(k)
    k.spawn("init")
    t = k.spawn("app")
    a = filled(t, 4)
    pages = [page_at(t, a + (i << 12)) for i in range(4)]
    k.take_stall()
    assert k.reclaim.reclaim_pages(pages) == 4
    io = 100e-6 + 4 * 4096 / (400 * MiB)  # one request of 4 pages, written synchronously
    assert k.take_stall() == pytest.approx(4 * 1e-3 + io)
