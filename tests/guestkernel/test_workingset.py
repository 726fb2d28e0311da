"""Workingset detection (mm/workingset.c, Linux 6.1 without MGLRU): shadow entries, refault
distance against the workingset size, activation, restore, the shadow-node shrinker, and
the refault-driven deactivation of prepare_scan_count. Expected values follow the kernel
functions named in each test; the eviction counter (`nonresident_age`) is followed step by
step: +1 per eviction (workingset_eviction), per activation by a second touch
(folio_mark_accessed -> workingset_activation), per page put back active by reclaim
(move_folios_to_lru) and per activated refault (workingset_refault)."""

from __future__ import annotations

import pytest

from guestkernel import uapi as U
from guestkernel.filemap import filemap_get_page
from guestkernel.kernel import Kernel
from guestkernel.page import PG_active, PG_workingset
from guestkernel.shrinker import SHRINK_EMPTY, ShrinkControl
from guestkernel.swap import validate_swap
from guestkernel.vmscan import (
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_FILE,
    ScanControl,
    init_reclaim,
)
from guestkernel.workingset import Workingset

MiB = 1 << 20
RW = U.PROT_READ | U.PROT_WRITE


def boot(**kw):
    k = Kernel(**{"memory": "64MiB", **kw})
    init_reclaim(k)
    return k


def cache(k, inode, i):
    page, _, _ = filemap_get_page(k, inode, i, 1)
    return page


def evict(k, *pages):
    """Reclaim exactly these clean unmapped pages (reclaim_pages: shrink_folio_list)."""
    assert k.reclaim.reclaim_pages(list(pages)) == len(pages)


def test_bucket_order_and_packed_shadow_workingset_init_pack_shadow():
    # x86-64: EVICTION_SHIFT = (64 - 63) + WORKINGSET_SHIFT 1 + NODES_SHIFT 6 +
    # MEM_CGROUP_ID_SHIFT 16 = 24: 40 timestamp bits, never bucketed
    k = boot()
    ws = k.workingset
    assert (ws.timestamp_bits, ws.bucket_order) == (40, 0)
    assert ws.pack_shadow(0, 5, True) == (((5 << 16) << 6) << 1) | 1
    assert ws.unpack_shadow(ws.pack_shadow(0, 12345, False)) == (0, 12345, False)
    assert ws.pack_shadow(0, 1 << 40, False) == 0  # eviction &= EVICTION_MASK
    # i386 (32-bit, no NUMA: NODES_SHIFT 0): EVICTION_SHIFT 18, 14 timestamp bits; a 2 GiB
    # guest's totalram_pages lies in (2**18, 2**19]: max_order = fls(totalram - 1) = 19
    k32 = Kernel(memory="2GiB", arch="i386")
    ws32 = Workingset(k32, init_reclaim(k32))
    total = k32.page_alloc.totalram_pages()
    assert 1 << 18 < total <= 1 << 19
    assert (ws32.timestamp_bits, ws32.bucket_order) == (14, 19 - 14)
    assert ws32.pack_shadow(0, 7, False) == 7 << 17


def test_no_workingset_in_the_2_6_era():
    k = boot(era="2.6")
    assert k.workingset is None
    inode = k.fs.create("/f", 4 * 4096)
    p = cache(k, inode, 0)
    evict(k, p)
    assert inode.mapping.ws is None
    cache(k, inode, 0)
    assert k.vmstat.get("workingset_refault_file", 0) == 0


def test_refault_distance_against_active_file_workingset_refault():
    # no swap: the workingset is the active file list alone
    k = boot()
    lv = k.reclaim.lruvecs[0]
    vm = k.vmstat
    inode = k.fs.create("/f", 8 * 4096)
    age0 = lv.nonresident_age
    p = [cache(k, inode, i) for i in range(6)]
    for q in (p[1], p[2]):  # second touch activates: workingset_activation ages the LRU
        k.mark_page_accessed(q)
        k.mark_page_accessed(q)
    assert lv.nonresident_age == age0 + 2
    evict(k, p[0])  # eviction = age0 + 2
    evict(k, p[3])  # eviction = age0 + 3
    evict(k, p[4])  # eviction = age0 + 4
    ws = k.workingset
    slots = inode.mapping.ws
    assert slots.shadows == {0: ws.pack_shadow(0, age0 + 2, False),
                             3: ws.pack_shadow(0, age0 + 3, False),
                             4: ws.pack_shadow(0, age0 + 4, False)}
    assert lv.nonresident_age == age0 + 5
    # page 4: distance 5 - 4 = 1 <= active_file 2 -> starts active, the LRU ages
    p4 = cache(k, inode, 4)
    assert p4.flags & PG_active and not p4.flags & PG_workingset
    assert p4 in list(lv.lists[LRU_ACTIVE_FILE])
    assert (vm["workingset_refault_file"], vm["workingset_activate_file"]) == (1, 1)
    assert vm["workingset_restore_file"] == 0
    assert lv.nonresident_age == age0 + 6
    # page 0: distance 6 - 2 = 4 > active_file 3 -> an ordinary inactive page
    p0 = cache(k, inode, 0)
    assert not p0.flags & PG_active and p0 in list(lv.lists[LRU_INACTIVE_FILE])
    assert (vm["workingset_refault_file"], vm["workingset_activate_file"]) == (2, 1)
    assert lv.nonresident_age == age0 + 6
    assert slots.shadows == {3: ws.pack_shadow(0, age0 + 3, False)}
    # a write that recreates page 3 drops its shadow without a refault (__GFP_WRITE)
    t = k.init_task
    fd = t.open("/f", U.O_RDWR)
    t.lseek(fd, 3 * 4096, U.SEEK_SET)
    buf = t.mmap(0, 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    assert t.write(fd, buf, 4096) == 4096
    assert vm["workingset_refault_file"] == 2 and not slots.shadows
    k.reclaim.validate()
    ws.validate()


def test_deactivated_page_is_workingset_and_its_refault_is_a_restore():
    k = boot()
    lv = k.reclaim.lruvecs[0]
    vm = k.vmstat
    inode = k.fs.create("/f", 8 * 4096)
    p = [cache(k, inode, i) for i in range(4)]
    for q in p:
        k.mark_page_accessed(q)
        k.mark_page_accessed(q)
    assert lv.lists[LRU_ACTIVE_FILE].nr == 4
    sc = ScanControl(32, 0, False, 1, True)
    k.reclaim.shrink_active_list(1, lv, sc, LRU_ACTIVE_FILE)  # the tail: p[0]
    assert not p[0].flags & PG_active and p[0].flags & PG_workingset  # shrink_active_list
    age = lv.nonresident_age
    evict(k, p[0])
    anon_cost, file_cost = lv.anon_cost, lv.file_cost
    assert inode.mapping.ws.shadows[0] == k.workingset.pack_shadow(0, age, True)
    # distance 1 <= active_file 3: activated, and PG_workingset: a restore, whose cost
    # goes to the file LRU (6.1 workingset_refault: lru_note_cost_folio, the folio's pages: 1)
    q = cache(k, inode, 0)
    assert q.flags & PG_active and q.flags & PG_workingset
    assert (vm["workingset_refault_file"], vm["workingset_activate_file"],
            vm["workingset_restore_file"]) == (1, 1, 1)
    # lru_note_cost: + 1, then both costs halve if they exceed a quarter of the LRU
    # pages (the refaulted page is not on the LRU yet when the cost is noted)
    file_cost += 1
    if anon_cost + file_cost > (lv.nr_pages() - 1) // 4:
        anon_cost, file_cost = anon_cost // 2, file_cost // 2
    assert (lv.anon_cost, lv.file_cost) == (anon_cost, file_cost)
    k.reclaim.validate()


def test_anon_refault_through_the_swap_cache_and_shadow_cleared_with_the_slot():
    k = boot(swap="16MiB")
    lv = k.reclaim.lruvecs[0]
    vm = k.vmstat
    t = k.init_task
    addr = t.mmap(0, 4 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(addr, 4 * 4096, True)
    assert t.madvise(addr, 4096, U.MADV_PAGEOUT) == 0
    swap = k.swap
    assert swap.ws is not None and len(swap.ws.shadows) == 1
    (entry, shadow), = swap.ws.shadows.items()
    nid, eviction, workingset = k.workingset.unpack_shadow(shadow)
    assert (nid, workingset) == (0, False)
    # anon refault: the workingset is active file + inactive file + (swap has room)
    # active anon, all empty here (new anon pages start inactive): distance 1 > 0
    assert lv.nonresident_age == eviction + 1
    assert sum(lv.lists[i].nr for i in (1, 2, 3)) == 0
    t.access(addr, False)
    assert (vm["workingset_refault_anon"], vm["workingset_activate_anon"]) == (1, 0)
    assert not swap.ws.shadows
    # with two file pages cached (inactive file: part of an anon refault's workingset)
    # the next refault at distance 1 is activated: the page goes to the active anon list
    inode = k.fs.create("/f", 2 * 4096)
    cache(k, inode, 0)
    cache(k, inode, 1)
    assert t.madvise(addr + 4096, 4096, U.MADV_PAGEOUT) == 0
    t.access(addr + 4096, False)
    assert (vm["workingset_refault_anon"], vm["workingset_activate_anon"]) == (2, 1)
    assert lv.lists[1].nr == 1
    # a third page out, then unmap: freeing the slot clears its shadow
    assert t.madvise(addr + 2 * 4096, 4096, U.MADV_PAGEOUT) == 0
    assert len(swap.ws.shadows) == 1
    t.munmap(addr, 4 * 4096)
    assert not swap.ws.shadows and vm["workingset_nodes"] == 0
    validate_swap(swap)
    k.workingset.validate()


def test_truncate_and_fadvise_dontneed_clear_shadows():
    k = boot()
    inode = k.fs.create("/f", 8 * 4096)
    p = [cache(k, inode, i) for i in range(8)]
    evict(k, *p)
    slots = inode.mapping.ws
    assert sorted(slots.shadows) == list(range(8))
    t = k.init_task
    fd = t.open("/f", U.O_RDWR)
    t.fadvise(fd, 0, 2 * 4096, U.POSIX_FADV_DONTNEED)  # invalidate_exceptional_entry
    assert sorted(slots.shadows) == list(range(2, 8))
    t.ftruncate(fd, 5 * 4096)  # truncate_inode_pages_range
    assert sorted(slots.shadows) == [2, 3, 4]
    k.drop_caches(1)  # drop_pagecache_sb -> invalidate_mapping_pages(0, -1)
    assert not slots.shadows and k.vmstat["workingset_nodes"] == 0


def test_shadow_only_nodes_workingset_update_node():
    # xarray nodes of 64 slots: a node counts in workingset_nodes while it holds shadows
    # and no page
    k = boot()
    vm = k.vmstat
    inode = k.fs.create("/f", 130 * 4096)
    p = [cache(k, inode, i) for i in range(130)]
    evict(k, *p[:64])  # node 0 only shadows
    assert vm["workingset_nodes"] == 1
    evict(k, *p[64:127])  # node 1 still holds page 127
    assert vm["workingset_nodes"] == 1
    evict(k, p[127])
    assert vm["workingset_nodes"] == 2
    cache(k, inode, 70)  # a page enters node 1
    assert vm["workingset_nodes"] == 1
    k.workingset.validate()
    # the shrinker: nothing to do while nodes <= (LRU + slab pages) >> 3
    sc = ShrinkControl(0)
    assert k.workingset.count_shadow_nodes(sc) == 0
    sc.nr_to_scan = 1
    assert k.workingset.scan_shadow_nodes(sc) == 1  # the oldest node: node 0
    assert vm["workingset_nodereclaim"] == 1 and vm["workingset_nodes"] == 0
    assert sorted(inode.mapping.ws.shadows) == [i for i in range(64, 128) if i != 70]
    k.drop_caches(1)
    assert k.workingset.count_shadow_nodes(sc) == SHRINK_EMPTY


def test_shadow_node_shrinker_caps_nodes_at_an_eighth_of_the_pages():
    # count_shadow_nodes: max_nodes = (LRU + slab pages) >> (XA_CHUNK_SHIFT - 3); with
    # seeks 0 do_shrink_slab scans freeable / 2 plus what was deferred, so a few calls at
    # priority 0 bring the excess to 0
    k = boot(memory="48MiB")
    inode = k.fs.create("/big", 640 * MiB)
    for i in range(0, inode.nr_index(), 32):
        filemap_get_page(k, inode, i, 32)
    vm = k.vmstat
    assert vm["workingset_nodereclaim"] > 0  # reclaim ran the shrinker meanwhile
    for _ in range(4):
        k.shrinkers.shrink_slab(0, 0, 0)
    pages = sum(lv.nr_pages() + lv.lists[4].nr for lv in k.reclaim.lruvecs)
    pages += vm["nr_slab_reclaimable"] + vm["nr_slab_unreclaimable"]
    assert vm["workingset_nodes"] <= pages >> 3
    k.workingset.validate()


def test_refaults_make_reclaim_deactivate_prepare_scan_count():
    # an activation by refault since the last reclaim deactivates even when the inactive
    # list is not low (prepare_scan_count's refaults != lruvec->refaults check)
    k = boot()
    lv = k.reclaim.lruvecs[0]
    r = k.reclaim
    sc = ScanControl(32, 0, False, 1, True)
    r._prepare_scan(lv, sc)
    assert not sc.may_deactivate & 2
    lv.activate[1] += 1
    r._prepare_scan(lv, sc)
    assert sc.may_deactivate & 2
    r.snapshot_refaults(lv)
    r._prepare_scan(lv, sc)
    assert not sc.may_deactivate & 2


# ------------------------------------------------------------------ MADV_FREE (lazyfree)
def test_madv_free_moves_pages_to_the_inactive_file_list_mark_page_lazyfree():
    # lru_lazyfree_fn (6.1): anon, swap-backed, not in the swap cache -> clean,
    # !swapbacked, inactive and unreferenced, at the head of the inactive file list
    k = boot(swap="16MiB")
    lv = k.reclaim.lruvecs[0]
    vm = k.vmstat
    t = k.init_task
    P = 4096
    addr = t.mmap(0, 6 * P, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(addr, 6 * P, True)
    assert t.madvise(addr + 5 * P, P, U.MADV_PAGEOUT) == 0  # page 5 on swap
    free_swap = k.swap.free_swap_pages()
    anon_before = lv.lists[0].nr
    file_before = lv.lists[2].nr
    pages = [k.mem_map[t.mm.pgtable.ptes[(addr >> 12) + i] >> 12] for i in range(4)]
    assert t.madvise(addr, 6 * P, U.MADV_FREE) == 0
    assert vm["pglazyfree"] == 5  # pages 0-4
    assert (lv.lists[0].nr, lv.lists[2].nr) == (anon_before - 5, file_before + 5)
    head = list(lv.lists[2])[:5]
    assert [p.pfn for p in head[1:]] == [p.pfn for p in reversed(pages)][:4]
    assert all(not p.flags & (1 << 12) for p in pages)  # PG_swapbacked cleared
    # the swap PTE of page 5 is dropped with its slot (free_swap_and_cache)
    assert k.swap.free_swap_pages() == free_swap + 1
    assert (t.mm.pgtable.ptes.get((addr >> 12) + 5, 0)) == 0
    # page 1 written again: reclaim keeps it and makes it swap-backed again (anon list)
    t.access(addr + P, True)
    freed = k.reclaim.reclaim_pages(pages)
    assert freed == 3 and vm["pglazyfreed"] == 3 and vm["pswpout"] == 1
    assert pages[1].flags & (1 << 12) and pages[1] in list(lv.lists[1])
    k.reclaim.validate()
    validate_swap(k.swap)


# ------------------------------------------------------------------ reclaim_idx
def test_lowmem_reclaim_skips_highmem_pages_isolate_lru_folios():
    # isolate_lru_folios (6.1): a page of a zone above sc->reclaim_idx is skipped, not
    # counted against nr_to_scan, counted in pgskip_<zone>, and spliced back to the head of
    # the list in its order; get_scan_count sizes the lists by their eligible pages
    # (lruvec_lru_size(lruvec, lru, sc->reclaim_idx))
    from guestkernel import gfp as G
    from guestkernel.page import PG_highmem

    k = Kernel(memory="1GiB", arch="i386")
    init_reclaim(k)
    r = k.reclaim
    lv = r.lruvecs[0]
    inode = k.fs.create("/f", 40000 * 4096)
    for i in range(0, 40000, 32):
        filemap_get_page(k, inode, i, 32)
    lst = lv.lists[LRU_INACTIVE_FILE]
    order = list(lst)  # head -> tail
    high = [p for p in order if p.flags & PG_highmem]
    low = [p for p in order if not p.flags & PG_highmem]
    assert high and low and lst.nr_high == len(high)
    assert order[-1].flags & PG_highmem  # the oldest pages are highmem ones
    vm = k.vmstat
    normal = 1  # i386 zones: DMA 0, Normal 1, HighMem 2
    sc = ScanControl(32, G.GFP_KERNEL, False, normal, True)
    sc.priority = 6
    assert r.lruvec_lru_size(lv, LRU_INACTIVE_FILE, sc) == len(low)
    assert r.get_scan_count(lv, sc)[LRU_INACTIVE_FILE] == len(low) >> 6  # no swap: file only
    tail_high = 0
    for p in reversed(order):
        if not p.flags & PG_highmem:
            break
        tail_high += 1
    taken, scanned = r.isolate_lru_pages(32, lv, sc, LRU_INACTIVE_FILE)
    # the 32 oldest lowmem pages; every highmem page between them and the tail skipped
    oldest_low = [p for p in reversed(order) if not p.flags & PG_highmem][:32]
    assert taken == oldest_low
    cut = order.index(oldest_low[-1])  # (once: 40000 pages)
    skipped = [p for p in reversed(order[cut + 1:]) if p.flags & PG_highmem]
    assert scanned == 32 + len(skipped) and vm["pgskip_high"] == len(skipped)
    assert len(skipped) >= tail_high
    # list_move to folios_skipped, then list_splice at the head: their relative order kept
    assert list(lst)[:len(skipped)] == skipped[::-1]
    for p in taken:
        r._putback(p)
    # direct reclaim for a lowmem allocation frees only lowmem pages
    cached_high = {p.pfn for p in high}
    freed = r.try_to_free_pages(G.GFP_KERNEL, 0, k.page_alloc.zonelist(G.GFP_KERNEL), normal)
    assert freed >= 32
    still = {p.pfn for p in inode.mapping.pages.values() if p.flags & PG_highmem}
    assert still == cached_high
    r.validate()


# ------------------------------------------------------------------ should_reclaim_retry
def test_should_reclaim_retry_6_1():
    # mm/page_alloc.c should_reclaim_retry (6.1): progress resets no_progress_loops (not
    # for costly orders > 3); more than MAX_RECLAIM_RETRIES (16) passes without progress:
    # no retry; else retry iff a zone would meet MIN with free + reclaimable pages
    # (__zone_watermark_ok(zone, order, min, highest_zoneidx, alloc_flags, available))
    from guestkernel import gfp as G
    from guestkernel.page_alloc import ALLOC_WMARK_MIN

    k = boot()
    a = k.page_alloc
    zl = a.zonelist(G.GFP_HIGHUSER_MOVABLE)
    highest = zl[0].idx
    z = zl[0]
    saved = [zz.nr_free for zz in zl]
    for zz in zl:  # (the decision alone: as if every zone were out of free pages)
        zz.nr_free = 0
    need = {zz.idx: zz.min_wmark() + zz.lowmem_reserve[highest] - zz.nr_free for zz in zl}
    # reclaimable pages that bring the first zone exactly to its mark: not enough (<=)
    grant = {z.idx: need[z.idx]}
    a.zone_reclaimable_hook = lambda zone: max(grant.get(zone.idx, 0), 0)
    others_fail = all(need[zz.idx] > 0 for zz in zl[1:])
    assert others_fail
    assert a.should_reclaim_retry(0, zl, highest, ALLOC_WMARK_MIN, True, 5) == (False, 0)
    grant[z.idx] = need[z.idx] + 1
    assert a.should_reclaim_retry(0, zl, highest, ALLOC_WMARK_MIN, True, 5) == (True, 0)
    loops = 0
    for i in range(1, 17):
        retry, loops = a.should_reclaim_retry(0, zl, highest, ALLOC_WMARK_MIN, False, loops)
        assert (retry, loops) == (True, i)
    assert a.should_reclaim_retry(0, zl, highest, ALLOC_WMARK_MIN, False, loops) == (False, 17)
    # a costly order counts a pass with progress as one without
    assert a.should_reclaim_retry(4, zl, highest, ALLOC_WMARK_MIN, True, 3)[1] == 4
    assert a.should_reclaim_retry(3, zl, highest, ALLOC_WMARK_MIN, True, 3)[1] == 0
    for zz, n in zip(zl, saved):
        zz.nr_free = n


def test_zone_reclaimable_pages_counts_file_and_with_swap_anon():
    # zone_reclaimable_pages: file LRU pages; anon ones only when swap can take them
    k = boot(swap="16MiB")
    r = k.reclaim
    t = k.init_task
    a = t.mmap(0, 8 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t.access_range(a, 8 * 4096, True)
    inode = k.fs.create("/f", 5 * 4096)
    for i in range(5):
        cache(k, inode, i)
    lv = r.lruvecs[0]
    zones = [z for z in lv.node.zones if z.managed_pages]
    total = sum(r.zone_reclaimable_pages(z) for z in zones)
    assert total == sum(lv.lists[i].nr for i in range(4))
    k2 = boot()  # no swap: file pages only
    t2 = k2.init_task
    a2 = t2.mmap(0, 8 * 4096, RW, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    t2.access_range(a2, 8 * 4096, True)
    inode2 = k2.fs.create("/f", 5 * 4096)
    for i in range(5):
        cache(k2, inode2, i)
    lv2 = k2.reclaim.lruvecs[0]
    zones2 = [z for z in lv2.node.zones if z.managed_pages]
    assert sum(k2.reclaim.zone_reclaimable_pages(z) for z in zones2) == lv2.lists[2].nr + lv2.lists[3].nr


# ------------------------------------------------------------------ SHM_LOCK
def test_shm_lock_makes_the_segment_unevictable_and_unlock_rescues_it():
    # shmctl_do_lock + shmem_lock (mapping_set_unevictable): pages added while locked go
    # to the unevictable list; those already on the LRU are culled when reclaim meets
    # them; SHM_UNLOCK: shmem_unlock_mapping -> check_move_unevictable_folios
    k = boot()
    r = k.reclaim
    lv = r.lruvecs[0]
    vm = k.vmstat
    t = k.init_task
    P = 4096
    shmid = t.shmget(U.IPC_PRIVATE, 8 * P, U.IPC_CREAT | 0o600)
    addr = t.shmat(shmid, 0, 0)
    t.access_range(addr, 4 * P, True)  # 4 pages before the lock
    seg = k.shm_ns.lookup(shmid)
    before = [p for p in seg.inode.mapping.pages.values()]
    assert all(not p.flags & (1 << 13) for p in before)  # PG_unevictable
    assert t.shmctl(shmid, U.SHM_LOCK) == 0
    assert t.shmctl(shmid, U.IPC_STAT)["mode"] & U.SHM_LOCKED
    t.access_range(addr + 4 * P, 4 * P, True)  # 4 pages while locked
    after = [p for p in seg.inode.mapping.pages.values() if p not in before]
    assert len(after) == 4 and all(p in list(lv.lists[4]) for p in after)
    # reclaim meeting the older pages culls them (putback_lru_page of an unevictable page)
    culled = vm["unevictable_pgs_culled"]
    for p in before:
        r._isolate(p, 0 if not p.flags & (1 << 7) else 1)
        r._putback(p)
    assert vm["unevictable_pgs_culled"] == culled + 4
    assert lv.lists[4].nr == 8 and vm["nr_unevictable"] == 8
    assert t.shmctl(shmid, U.SHM_UNLOCK) == 0
    assert not t.shmctl(shmid, U.IPC_STAT)["mode"] & U.SHM_LOCKED
    assert vm["unevictable_pgs_scanned"] == 8 and vm["unevictable_pgs_rescued"] == 8
    assert lv.lists[4].nr == 0
    r.validate()


def test_shm_lock_permission_and_rlimit_user_shm_lock():
    import guestkernel.uapi as UU

    k = boot()
    t = k.init_task
    P = 4096
    shmid = t.shmget(U.IPC_PRIVATE, 8 * P, U.IPC_CREAT | 0o600)
    t.setrlimit(UU.RLIMIT_MEMLOCK, 4 * P, 4 * P)  # 4 pages: the 8-page segment does not fit
    with pytest.raises(OSError) as e:
        t.shmctl(shmid, U.SHM_LOCK)
    assert e.value.errno == U.ENOMEM
    t.setrlimit(UU.RLIMIT_MEMLOCK, 0, 0)  # no RLIMIT_MEMLOCK at all: EPERM
    with pytest.raises(OSError) as e:
        t.shmctl(shmid, U.SHM_LOCK)
    assert e.value.errno == U.EPERM
    assert t.shmctl(shmid, U.SHM_UNLOCK) == 0  # unlocking an unlocked segment: nothing


# ------------------------------------------------------------------ dirty limits via mmap
def test_shared_mmap_writes_are_throttled_like_write_fault_dirty_shared_page():
    # fault_dirty_shared_page -> balance_dirty_pages_ratelimited: pages dirtied through a
    # shared mapping count toward the dirty limits as write()'s do
    k = boot(dirty_ratio=1, dirty_background_ratio=2)
    t = k.init_task
    k.fs.create("/data/map", 256 * 4096)
    fd = t.open("/data/map", U.O_RDWR)
    addr = t.mmap(0, 256 * 4096, RW, U.MAP_SHARED, fd, 0)
    bg, thresh = k.reclaim.dirty_thresholds()
    vm = k.vmstat
    t.access_range(addr, 256 * 4096, True)
    # a check every ratelimit_pages = max(thresh / 32, 16) = 16 pages dirtied (the CPU's
    # bdp_ratelimits, under the task's nr_dirtied_pause of 32): 16 checks; those at 16,
    # 32, ... up to bg are under the background limit, every later one finds more than it
    # (the writer wrote back down to it)
    assert thresh // 32 < 16 and k.reclaim.ratelimit_pages == 16
    assert 32 <= bg < 64 and vm["balance_dirty_pages"] == 16 - bg // 16
    assert vm["pgwriteback_file"] > 0 and vm["nr_dirty"] <= bg + 32
    assert k.fs.lookup("/data/map").disk
