"""Shrinkers: caches outside the LRU that reclaim asks to give memory back (mm/vmscan.c
shrink_slab / do_shrink_slab, Linux 6.1; mm/shrinker.c from 6.7, same arithmetic).

A cache registers a `Shrinker` with `count_objects(sc)` (objects it could free, or
SHRINK_EMPTY) and `scan_objects(sc)` (free up to sc.nr_to_scan, return how many, or
SHRINK_STOP). Reclaim calls `shrink_slab(gfp, nid, priority)` once per node pass, which
calls every shrinker's do_shrink_slab:

    freeable    = count_objects()                       (0 or SHRINK_EMPTY: skip)
    nr          = nr_deferred, taken (xchg_nr_deferred)
    delta       = (freeable >> priority) * 4 / seeks    (seeks 0: freeable / 2)
    total_scan  = min((nr >> priority) + delta, 2 * freeable)
    while total_scan >= batch or total_scan >= freeable:
        scan min(batch, total_scan) objects             (batch: shrinker's, else 128)
        slabs_scanned += nr_scanned; total_scan -= nr_scanned
    nr_deferred += min(max(nr + delta - scanned, 0), 2 * freeable)

The objects freed go back to their slab caches; the slab pages that frees are what reclaim
counts (reclaim_state->reclaimed_slab: slab.reclaimed_slab).
"""

from __future__ import annotations

from collections.abc import Callable

SHRINK_BATCH = 128  # objects per scan_objects call unless the shrinker sets its own
DEFAULT_SEEKS = 2  # a typical object costs a seek to recreate
SHRINK_STOP = -1  # scan_objects: cannot make progress now (~0UL)
SHRINK_EMPTY = -2  # count_objects: nothing cached ((~0UL) - 1)


class ShrinkControl:
    """struct shrink_control."""

    __slots__ = ("gfp_mask", "nid", "nr_to_scan", "nr_scanned", "kswapd")

    def __init__(self, gfp_mask: int, nid: int = 0, kswapd: bool = False) -> None:
        self.gfp_mask = gfp_mask
        self.nid = nid
        self.nr_to_scan = 0  # objects to scan in this call
        self.nr_scanned = 0  # objects scanned (scan_objects may lower it)
        self.kswapd = kswapd  # current_is_kswapd()


class Shrinker:
    """struct shrinker."""

    def __init__(self, name: str, count_objects: Callable[[ShrinkControl], int],
                 scan_objects: Callable[[ShrinkControl], int], seeks: int = DEFAULT_SEEKS,
                 batch: int = 0) -> None:
        self.name = name
        self.count_objects = count_objects
        self.scan_objects = scan_objects
        self.seeks = seeks
        self.batch = batch  # 0: SHRINK_BATCH
        self.nr_deferred = 0  # scan work left over from earlier calls (one node here)

    def __repr__(self) -> str:
        return f"<Shrinker {self.name} seeks={self.seeks} batch={self.batch or SHRINK_BATCH}>"


class ShrinkerList:
    """The kernel's shrinker_list."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.shrinkers: list[Shrinker] = []
        kernel.vmstat.setdefault("slabs_scanned", 0)

    def register_shrinker(self, shrinker: Shrinker) -> None:
        self.shrinkers.append(shrinker)

    def unregister_shrinker(self, shrinker: Shrinker) -> None:
        self.shrinkers.remove(shrinker)

    def do_shrink_slab(self, sc: ShrinkControl, shrinker: Shrinker, priority: int) -> int:
        """One shrinker's share of a reclaim pass; objects freed (or SHRINK_EMPTY)."""
        batch_size = shrinker.batch or SHRINK_BATCH
        freeable = shrinker.count_objects(sc)
        if freeable == 0 or freeable == SHRINK_EMPTY:
            return freeable
        nr = shrinker.nr_deferred
        shrinker.nr_deferred = 0
        if shrinker.seeks:
            delta = (freeable >> priority) * 4 // shrinker.seeks
        else:
            delta = freeable // 2
        total_scan = min((nr >> priority) + delta, 2 * freeable)
        freed = scanned = 0
        vm = self.kernel.vmstat
        while total_scan >= batch_size or total_scan >= freeable:
            nr_to_scan = min(batch_size, total_scan)
            sc.nr_to_scan = nr_to_scan
            sc.nr_scanned = nr_to_scan
            ret = shrinker.scan_objects(sc)
            if ret == SHRINK_STOP:
                break
            freed += ret
            vm["slabs_scanned"] += sc.nr_scanned
            total_scan -= sc.nr_scanned
            scanned += sc.nr_scanned
            if not nr_to_scan:
                break  # (total_scan 0 with freeable 0 cannot happen: freeable > 0 here)
        next_deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
        shrinker.nr_deferred += next_deferred
        return freed

    def shrink_slab(self, gfp: int, nid: int, priority: int, kswapd: bool = False) -> int:
        """shrink_slab: every registered shrinker once; objects freed."""
        freed = 0
        for shrinker in list(self.shrinkers):
            sc = ShrinkControl(gfp, nid, kswapd)
            ret = self.do_shrink_slab(sc, shrinker, priority)
            if ret == SHRINK_EMPTY:
                ret = 0
            freed += ret
        return freed

    def drop_slab(self, gfp: int) -> int:
        """drop_slab_node (echo 2 > drop_caches): rounds of shrink_slab at priority 0 while
        (freed >> shift++) > 1; objects freed."""
        total = 0
        shift = 0
        while True:
            freed = self.shrink_slab(gfp, 0, 0)
            total += freed
            if (freed >> shift) <= 1:
                return total
            shift += 1
