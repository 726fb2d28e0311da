"""Machine memory in aligned 2 MiB regions (hypervisor/machine.py, RegionMemory).

Rules checked:
- a host large page is contiguous: it takes one wholly free aligned region of 512 frames
  (KB 1021095: ESX backs with a large page only when a 2 MB contiguous region is free);
- a 4 KiB frame comes from a region already partly used before a wholly free one is
  broken up: Linux's __rmqueue_smallest (mm/page_alloc.c) serves an order-0 request from
  the smallest free block and splits a free pageblock-order block only when no smaller
  free block exists;
- so scattered frees leave memory free but fragmented: a large page fails with frames to
  spare when no region is wholly free.

Regions are drawn as one character per 64 frames: `.` free, `#` in use, `L` large page."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hypervisor.machine import OWNER_LP, REGION_PAGES, MachineMemory, RegionMemory

P = b"\x01" * 4096


def test_small_frames_fill_the_first_region_in_address_order():
    m = RegionMemory(4 * REGION_PAGES)
    got = [m.alloc(0, P) for _ in range(3)]
    assert got == [0, 1, 2]
    assert m._rfree[0] == REGION_PAGES - 3 and m.nr_free == 4 * REGION_PAGES - 3
    m.validate()


def test_a_large_page_takes_a_wholly_free_aligned_region():
    # region:  0         1
    #          #.......  LLLLLLLL
    m = RegionMemory(4 * REGION_PAGES)
    m.alloc(0, P)
    base = m.alloc_region()
    assert base == REGION_PAGES  # region 0 is partly used: region 1
    assert m.owner[base:base + REGION_PAGES] == [OWNER_LP] * REGION_PAGES
    assert m.reserved == REGION_PAGES and m.nr_free == 4 * REGION_PAGES - 1 - REGION_PAGES
    # small frames keep coming from region 0, not from the large page
    assert m.alloc(0, P) == 1
    m.validate()


def test_small_frames_come_from_a_partly_used_region_before_a_wholly_free_one():
    # region 0 filled, then freed entirely except frame 7; region 1 filled then freed
    # entirely: region 1 is wholly free, region 0 partly used -> small frames from region 0
    m = RegionMemory(4 * REGION_PAGES)
    frames = [m.alloc(0, P) for _ in range(2 * REGION_PAGES)]
    for mpn in frames[REGION_PAGES:]:
        m.free(mpn)
    for mpn in frames[:REGION_PAGES]:
        if mpn != 7:
            m.free(mpn)
    # region:  0         1
    #          #.......  ........
    got = {m.alloc(0, P) >> 9 for _ in range(REGION_PAGES - 1)}
    assert got == {0}  # __rmqueue_smallest: the fragment first
    assert m.alloc_region() == REGION_PAGES  # region 1 stayed whole for a large page
    m.validate()


def test_scattered_frees_leave_memory_free_but_no_region_whole():
    # four regions, each with one frame still in use: 2044 frames free, no large page
    m = RegionMemory(4 * REGION_PAGES)
    frames = [m.alloc(0, P) for _ in range(4 * REGION_PAGES)]
    for mpn in frames:
        if mpn % REGION_PAGES != 100:
            m.free(mpn)
    # region:  0         1         2         3
    #          .#......  .#......  .#......  .#......
    assert m.nr_free == 4 * REGION_PAGES - 4
    assert m.whole_regions() == 0
    assert m.alloc_region() == -1 and m.region_alloc_failed == 1
    # freeing the last frame of region 2 makes it whole again
    m.free(2 * REGION_PAGES + 100)
    assert m.whole_regions() == 1 and m.alloc_region() == 2 * REGION_PAGES
    m.validate()


def test_room_is_checked_before_contiguity():
    m = RegionMemory(2 * REGION_PAGES)
    assert m.alloc_region(keep=REGION_PAGES + 1) == -1
    assert m.region_alloc_failed == 0  # no room: not a fragmentation failure
    assert m.alloc_region(keep=REGION_PAGES) == 0


def test_take_and_unreserve_return_untouched_frames_in_place():
    m = RegionMemory(2 * REGION_PAGES)
    base = m.alloc_region()
    m.take(base + 3, 0, P)
    assert m.reserved == REGION_PAGES - 1 and m.owner[base + 3] == 0 and m.refcount[base + 3] == 1
    m.unreserve_frames([base + i for i in range(REGION_PAGES) if i != 3])
    assert m.reserved == 0 and m.nr_free == 2 * REGION_PAGES - 1
    assert m._rfree[0] == REGION_PAGES - 1  # the region is partly used: small frames come from it
    assert m.alloc(0, P) >> 9 == 0
    m.validate()


def test_the_tail_beyond_capacity_is_never_a_large_page():
    m = RegionMemory(REGION_PAGES + 100)
    assert m.alloc_region() == 0
    assert m.alloc_region() == -1  # 100 frames: not a region
    got = [m.alloc(0, P) for _ in range(100)]
    assert got == list(range(REGION_PAGES, REGION_PAGES + 100)) and m.alloc(0, P) == -1
    m.validate()


def test_overdraft_takes_frames_beyond_capacity():
    m = RegionMemory(REGION_PAGES)
    for _ in range(REGION_PAGES):
        m.alloc(0, P)
    mpn = m.alloc(0, P, force=True)
    assert mpn >= REGION_PAGES and m.nr_free == -1 and m.overdraft_allocs == 1
    m.free(mpn)
    assert m.nr_free == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("afrtu"), st.integers(0, 10**6)), max_size=300))
def test_region_allocator_invariants(ops):
    """Any sequence of allocations, frees, large pages, takes and unreserves keeps every
    region's free list exact (validate), counts every frame once (nr_free = capacity -
    frames in use - untouched large-page frames), fails a small allocation only when
    nothing is free and a large page only when no region is wholly free."""
    nr = 3 * REGION_PAGES + 17
    m = RegionMemory(nr)
    used: list[int] = []
    lps: list[list[int]] = []  # untouched frames of each large page
    for op, x in ops:
        if op == "a":
            mpn = m.alloc(1, P)
            assert (mpn < 0) == (m.nr_free == 0 and mpn < 0)
            if mpn >= 0:
                assert m.owner[mpn] == 1 and mpn < nr
                used.append(mpn)
        elif op == "f" and used:
            m.free(used.pop(x % len(used)))
        elif op == "r":
            whole = m.whole_regions()
            base = m.alloc_region()
            assert (base >= 0) == (whole > 0)
            if base >= 0:
                assert base % REGION_PAGES == 0 and base + REGION_PAGES <= nr
                lps.append(list(range(base, base + REGION_PAGES)))
        elif op == "t" and lps:
            lp = lps[x % len(lps)]
            if lp:
                mpn = lp.pop(x % len(lp))
                m.take(mpn, 2, P)
                used.append(mpn)
        elif op == "u" and lps:
            m.unreserve_frames(lps.pop(x % len(lps)))
        m.validate()
        free_lp = sum(len(lp) for lp in lps)
        assert m.reserved == free_lp
        assert m.nr_free == nr - len(used) - free_lp
        assert len(set(used)) == len(used)


def test_the_flat_allocator_is_unchanged_for_hosts_without_large_pages():
    # LIFO reuse, then fresh frames in order (MachineMemory: R1 and every host without
    # large pages keep it, at no cost)
    m = MachineMemory(8)
    a = [m.alloc(0, P) for _ in range(4)]
    m.free(a[1])
    m.free(a[3])
    assert [m.alloc(0, P), m.alloc(0, P), m.alloc(0, P)] == [3, 1, 4]
