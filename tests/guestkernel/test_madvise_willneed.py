"""MADV_WILLNEED on swapped anonymous and shmem memory (6.1 mm/madvise.c madvise_willneed):
swapin_walk_pmd_entry (anonymous) and force_shm_swapin_readahead (shmem) call
read_swap_cache_async for each swap entry of the range: the page is read into the swap
cache (PSWPIN), put on the LRU and not mapped; present pages are left alone; a later
fault finds the page in the swap cache (a minor fault: do_swap_page's
swap_cache_get_folio hit, no PGMAJFAULT). Expected values from that source."""

from __future__ import annotations

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.pgtable import MM_SWAPENTS, PTE_PRESENT_MASK, is_swap_pte
from guestkernel.swap import validate_swap
from guestkernel.vmscan import LRU_INACTIVE_ANON, init_reclaim

P = 4096
A = 0x40000000
RW = U.PROT_READ | U.PROT_WRITE
KEYS = ("pswpin", "pgmajfault", "fault_swapin", "nr_swapcached", "swap_ra")


def guest(era="6.x"):
    k = Kernel(KernelConfig(memory="64MiB", swap="32MiB", era=era))
    init_reclaim(k)
    if 1 not in k.tasks:
        k.spawn("init")
    return k, k.spawn("t")


def delta(k, before):
    return {c: k.vmstat[c] - before[c] for c in before}


def swapped_out(k, t, a, n, keep=()):
    """Write n pages at `a`, then MADV_PAGEOUT all but `keep`: swap PTEs."""
    t.access_range(a, n * P, True)
    for v in range(n):
        if v not in keep:
            assert t.madvise(a + v * P, P, U.MADV_PAGEOUT) == 0
    k.reclaim.complete_io()
    ptes = t.mm.pgtable.ptes
    assert [v for v in range(n) if is_swap_pte(ptes[(a >> 12) + v])] == \
        [v for v in range(n) if v not in keep]
    assert not k.swap.swap_cache


def test_madv_willneed_reads_anon_swap_entries_into_the_swap_cache_swapin_walk_pmd_entry():
    k, t = guest()
    a = t.mmap(A, 16 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    swapped_out(k, t, a, 16, keep=(3,))
    ptes = t.mm.pgtable.ptes
    entries = {v: ptes[(a >> 12) + v] >> 12 for v in range(16) if v != 3}
    swapents = t.mm.rss[MM_SWAPENTS]
    lru = len(k.reclaim.lruvecs[0].lists[LRU_INACTIVE_ANON])
    before = {c: k.vmstat[c] for c in KEYS}
    assert t.madvise(a + 2 * P, 8 * P, U.MADV_WILLNEED) == 0  # pages 2..9, 3 present
    # one read per swap PTE (no readahead window: swap_ra 0), nothing mapped
    assert delta(k, before) == {"pswpin": 7, "pgmajfault": 0, "fault_swapin": 0,
                                "nr_swapcached": 7, "swap_ra": 0}
    assert sorted(k.swap.swap_cache) == sorted(entries[v] for v in (2, 4, 5, 6, 7, 8, 9))
    assert all(is_swap_pte(ptes[(a >> 12) + v]) for v in entries)
    assert ptes[(a >> 12) + 3] & PTE_PRESENT_MASK
    assert t.mm.rss[MM_SWAPENTS] == swapents
    for v in (2, 4, 5, 6, 7, 8, 9):
        page = k.swap.swap_cache[entries[v]]
        assert page._mapcount == -1 and page._count == 1  # the swap cache's reference only
    # lru_cache_add: inactive anon (6.x)
    assert len(k.reclaim.lruvecs[0].lists[LRU_INACTIVE_ANON]) == lru + 7
    # again: every entry already cached, nothing read
    before = {c: k.vmstat[c] for c in KEYS}
    assert t.madvise(a, 16 * P, U.MADV_WILLNEED) == 0
    assert delta(k, before)["pswpin"] == 8  # 0, 1, 10..15 only
    # a later fault finds its page in the swap cache: minor, no read
    before = {c: k.vmstat[c] for c in KEYS}
    t.access(a + 5 * P, False)
    # (a read of a page the swap is not half full of: it stays in the swap cache)
    assert delta(k, before) == {"pswpin": 0, "pgmajfault": 0, "fault_swapin": 1,
                                "nr_swapcached": 0, "swap_ra": 0}
    assert ptes[(a >> 12) + 5] & PTE_PRESENT_MASK
    k.reclaim.validate()
    validate_swap(k.swap)


def test_madv_willneed_reads_shmem_swap_entries_force_shm_swapin_readahead():
    k, t = guest()
    a = t.mmap(A, 16 * P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.access_range(a, 16 * P, True)
    assert t.madvise(a, 16 * P, U.MADV_PAGEOUT) == 0  # shmem_writepage: unmapped, on swap
    k.reclaim.complete_io()
    mapping = t.mm.mm_mt.lookup(a).vm_file.inode.mapping
    assert sorted(mapping.swapped) == list(range(16)) and not mapping.pages
    assert not k.swap.swap_cache
    before = {c: k.vmstat[c] for c in KEYS}
    assert t.madvise(a + 2 * P, 4 * P, U.MADV_WILLNEED) == 0
    # indices 2..6: xas_for_each up to linear_page_index(end + PAGE_SIZE - 1), inclusive
    assert delta(k, before) == {"pswpin": 5, "pgmajfault": 0, "fault_swapin": 0,
                                "nr_swapcached": 5, "swap_ra": 0}
    assert sorted(k.swap.swap_cache) == sorted(mapping.swapped[i] for i in range(2, 7))
    assert sorted(mapping.swapped) == list(range(16))  # still swap entries in the mapping
    assert not any((a >> 12) + v in t.mm.pgtable.ptes for v in range(16))  # nothing mapped
    # a later fault takes the page from the swap cache: no read, no PGMAJFAULT
    before = {c: k.vmstat[c] for c in KEYS}
    t.access(a + 4 * P, False)
    d = delta(k, before)
    assert (d["pswpin"], d["pgmajfault"]) == (0, 0)
    k.reclaim.validate()
    validate_swap(k.swap)


def test_madv_willneed_on_anon_memory_in_the_2_6_era_is_ebadf():
    """2.6.24's madvise_willneed reads ahead files only: "if (!file) return -EBADF"
    (swapin_walk_pmd_entry came in 3.x)."""
    k, t = guest("2.6")
    a = t.mmap(A, 8 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    swapped_out(k, t, a, 8)
    before = {c: k.vmstat[c] for c in KEYS}
    with pytest.raises(OSError) as e:
        t.madvise(a, 8 * P, U.MADV_WILLNEED)
    assert e.value.errno == U.EBADF
    assert delta(k, before)["pswpin"] == 0 and not k.swap.swap_cache
