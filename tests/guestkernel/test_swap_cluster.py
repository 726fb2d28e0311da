"""Swap clusters of a non-rotational swap device (mm/swapfile.c, 6.1: setup_clusters,
scan_swap_map_try_ssd_cluster, swap_alloc_cluster, inc/dec_cluster_info_page) and the
whole-THP swap-out they allow (shrink_folio_list -> add_to_swap of a large folio)."""

from __future__ import annotations

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.swap import SWAPFILE_CLUSTER, SwapInfo, swp_offset, validate_swap

P = 4096
H = 2 << 20


def test_setup_clusters_counts_the_header_and_the_slots_past_the_end():
    # 3 clusters and 2 slots: cluster 0 holds the header slot (in use), cluster 3 the
    # 2 slots and 510 past maxpages (setup_clusters marks them used): free are 1 and 2
    si = SwapInfo(0, (3 * SWAPFILE_CLUSTER + 2) * P, 0.0, 1.0, rotational=False)
    assert si.cluster_info == [1, 0, 0, 510]
    assert list(si.free_clusters) == [1, 2]
    # a rotational device has no cluster_info (not SWP_SOLIDSTATE)
    assert SwapInfo(0, 4 * SWAPFILE_CLUSTER * P, 0.0, 1.0).cluster_info is None


def swap_kernel(rotational: bool, clusters: int = 4) -> Kernel:
    return Kernel(KernelConfig(memory="64MiB", swap=clusters * SWAPFILE_CLUSTER * P,
                               swap_rotational=rotational))


def test_order0_slots_come_from_the_cpu_cluster_and_a_thp_takes_a_free_one():
    k = swap_kernel(False)
    swap = k.reclaim.swap
    si = swap.si
    # scan_swap_map_try_ssd_cluster: the first free cluster (1) becomes the CPU's
    e = [swap.get_swap_page() for _ in range(3)]
    assert [swp_offset(x) for x in e] == [512, 513, 514]
    assert list(si.free_clusters) == [2, 3] and si.cluster_info[1] == 3
    # swap_alloc_cluster: the head of free_clusters, all 512 slots for the swap cache
    t = swap.get_swap_cluster()
    assert swp_offset(t) == 1024 and si.cluster_info[2] == SWAPFILE_CLUSTER
    assert si.inuse_pages == 3 + SWAPFILE_CLUSTER
    assert swp_offset(swap.get_swap_cluster()) == 1536
    assert swap.get_swap_cluster() == 0  # no free cluster left
    # a cluster whose last slot is freed joins free_clusters' tail (free_cluster)
    for x in e:
        swap.si.swap_map[swp_offset(x)] = 0x40
        swap.swap_cache[x] = None
    for x in e:
        del swap.swap_cache[x]
        swap.si.swap_map[swp_offset(x)] = 0
        swap._slot_released(swp_offset(x))
    assert list(si.free_clusters) == [1]


def test_cpu_cluster_used_up_then_none_free_falls_back_to_scanning():
    k = swap_kernel(False, clusters=2)  # cluster 0 (header) and 1
    swap = k.reclaim.swap
    offs = [swp_offset(swap.get_swap_page()) for _ in range(SWAPFILE_CLUSTER)]
    assert offs == list(range(512, 1024))
    # no free cluster any more: scan_swap_map_slots' scan from cluster_next (slot 1)
    assert swp_offset(swap.get_swap_page()) == 1
    assert swap.get_swap_cluster() == 0


def test_rotational_device_allocates_next_fit_and_no_cluster():
    k = swap_kernel(True)
    swap = k.reclaim.swap
    assert [swp_offset(swap.get_swap_page()) for _ in range(2)] == [1, 2]
    assert swap.get_swap_cluster() == 0


def thp_task(k, n):
    t = k.spawn("t")
    base = 0x40000000
    t.mmap(base, n * H, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.madvise(base, n * H, U.MADV_HUGEPAGE)
    t.access_range(base, n * H, True)
    return t, base


def check(k):
    validate_pages(k)
    k.reclaim.validate()
    validate_swap(k.reclaim.swap)


def test_kswapd_swaps_whole_thps_out_under_pressure_and_frees_each_as_one_block():
    """Reclaim (not MADV_PAGEOUT) on a non-rotational device: THPs on the inactive
    anon list go whole (thp_swpout) while free clusters last; each folio, written,
    leaves the swap cache page by page and is freed as one order-9 block (its subpages
    are never queued for a deferred split)."""
    k = Kernel(KernelConfig(memory="128MiB", swap="256MiB", thp_enabled="madvise",
                            swap_rotational=False))
    t, base = thp_task(k, 40)  # 80 MiB of THPs in a 128 MiB guest
    assert k.vmstat["thp_fault_alloc"] >= 30
    free9 = k.vmstat["thp_swpout"]
    d0 = k.vmstat["thp_deferred_split_page"]
    t2, b2 = thp_task(k, 20)  # 40 MiB more: reclaim must swap THPs
    got = k.vmstat["thp_swpout"] - free9
    assert got > 0
    assert k.vmstat["pswpout"] >= got * 512
    assert k.vmstat["thp_deferred_split_page"] == d0
    # every folio swapped out whole is gone: its frames are free or reused, none held
    assert all(f.held == 0 for f in k.thp.folios.values())
    check(k)
    # swap-in is 4 KiB (do_swap_page maps order-0 in 6.1)
    ptes = t.mm.pgtable.ptes
    swapped = [v for v in range(base >> 12, (base + 40 * H) >> 12) if v in ptes and not ptes[v] & 1]
    assert swapped
    t.access(swapped[0] << 12, False)
    assert not ptes[swapped[0]] & 0x80  # no _PAGE_PSE: mapped by a PTE
    check(k)


def test_rotational_device_splits_every_thp_it_swaps():
    k = Kernel(KernelConfig(memory="128MiB", swap="256MiB", thp_enabled="madvise",
                            swap_rotational=True))
    thp_task(k, 40)
    thp_task(k, 20)
    assert k.vmstat["thp_swpout"] == 0
    assert k.vmstat["thp_swpout_fallback"] > 0
    check(k)
