"""Page reclaim: LRU lists, two-touch activation, writeback, shrinkers, kswapd and the
flusher (mm/vmscan.c, mm/swap.c, mm/page-writeback.c).

Overview
--------
Every user page (anonymous, page cache, swap cache) sits on one LRU list of its node's
`Lruvec`: inactive_anon, active_anon, inactive_file, active_file or unevictable. Anonymous
and shmem pages (PG_swapbacked) are "anon", the others "file". New pages go to the head
of a list; reclaim takes from the tail.

- Placement: a new anonymous page (fault or swap-in) starts on the inactive list in the
  6.x era (since 5.9, b518154e59aa "protect the workingset on anonymous LRU") and on the
  active list in the 2.6 era (the course's arc 1); page-cache and swap-readahead pages
  start on the inactive list (use-once); an mlocked page goes to the unevictable list, and reclaim
  moves a page it finds mlocked there ("culls" it) and back when it is no longer mlocked.
- Two-touch activation (`mark_page_accessed`, read()/write() of the page cache): the
  first touch sets PG_referenced, a second touch of an inactive page moves it to the
  active list.
- The inactive scan (`shrink_inactive_list`) harvests the accessed bits of every PTE
  mapping a page through rmap: referenced PTEs and (PG_referenced or several PTEs, or an
  executable file mapping) -> activate; referenced once -> set PG_referenced and keep
  (second chance); only PG_referenced (unmapped cache page touched once) -> reclaim if
  clean; otherwise reclaim: an anonymous page gets a swap slot and enters the swap cache,
  is unmapped (its PTEs become swap entries), and is written; a shmem page (tmpfs, SysV)
  is unmapped (its PTEs cleared) and, dirty, moves from its mapping to the swap cache
  (swap.py shmem_writepage: the mapping keeps the swap entry) and is written; a dirty
  file page is unmapped and written to its file (see who writes, below); a clean
  unmapped page is freed.
- Active aging (`shrink_active_list`) moves pages to the inactive list (executable file
  pages referenced again stay) while inactive * int_sqrt(10 * GB of that type) < active.
- Balance (`get_scan_count`, 6.1): no swap -> file only; at priority 0 both equally;
  almost no file pages -> anon; plenty of inactive file pages (cache_trim_mode) -> file
  only; else swappiness against the recent reclaim costs prepare_scan_count took, as
  linux-mm.md section 8:
      anon' = 2a + f, file' = a + 2f, total = anon' + file'
      ap = swappiness * (total + 1) // (anon' + 1)
      fp = (200 - swappiness) * (total + 1) // (file' + 1)
  Each list is scanned (lru_size >> priority) * fraction // (ap + fp), in batches of
  SWAP_CLUSTER_MAX, priority from DEF_PRIORITY (12) down to 0. The costs
  (`lru_note_cost`, 6.1's form) are pages: what shrink_inactive_list wrote (nr_pageout)
  and each refaulting page that was in the workingset (a restore); both halve once their
  sum exceeds a quarter of the LRU pages.
- Writeback: PG_writeback while the write is in flight, which takes latency +
  bytes / bandwidth on the device's queue. With an env, writes complete in simulated time
  (`IOCompletion` daemon) and a page marked PG_reclaim is rotated to the inactive tail
  when its write ends (folio_rotate_reclaimable; 6.x deactivates an active one) to be
  freed next. Without an env every write completes at once, its cost added to
  kernel.stall.
- Who writes (6.x, 6.1 shrink_folio_list): reclaim never waits for a write. A page met
  under writeback is marked PG_reclaim and activated (nr_writeback), or, by kswapd on a
  node flagged PGDAT_WRITEBACK, counted nr_immediate. A dirty file page is written only by
  kswapd, only if it is already PG_reclaim and the node is PGDAT_DIRTY (kswapd found its
  file pages all dirty and unqueued); otherwise it is marked PG_reclaim, activated and
  counted nr_vmscan_immediate_reclaim, and when a batch taken was all dirty and unqueued
  the flusher is woken to write everything (wakeup_flusher_threads). Anonymous pages are
  written to swap by direct reclaim too, without waiting; the writes the device ends
  while the direct reclaimer goes on working (its own time: scan cost and sleeps, carried
  over the allocator's retries in one burst) end for it, the simulation's clock standing
  still during the synchronous call. Throttling (reclaim_throttle):
  kswapd meeting nr_immediate pages sleeps until SWAP_CLUSTER_MAX more pages are written
  or HZ/10; a direct reclaimer sleeps one jiffy on a congested node, or at priority 1
  with nothing reclaimed, unless few pages wait to be written (kernel.iowait_throttle:
  the task sleeps, its vCPU free); a direct reclaimer finding more pages isolated (by
  direct reclaimers on other CPUs or kswapd, in their own time) than an eighth of the
  inactive list sleeps until another CPU's reclaimer finds them few
  (wake_throttle_isolated) or HZ/50, once, then leaves the list. 2.6 era (2.6.24 shrink_page_list): reclaim writes dirty
  file pages itself, and direct reclaim writes synchronously and waits (its time added to
  kernel.stall), waiting too for a page already under writeback under pressure.
- Workingset detection (6.x era, workingset.py): a page-cache or swap-cache page that
  reclaim evicts leaves a shadow entry; read back, its refault distance decides whether it
  starts on the active list (workingset_refault/activate/restore). Every page put back on
  an active list, activated by a second touch, or evicted ages the lruvec's
  nonresident_age; deactivation sets PG_workingset; workingset activations since the last
  reclaim make the next one deactivate (prepare_scan_count).
- Shrinkers: the LRU is the page cache's shrinker; every node pass also runs the
  registered shrinkers (shrinker.py: do_shrink_slab's (objects >> priority) * 4 / seeks;
  dcache.py's dentry and inode caches), the slab pages their frees give back counting
  as reclaimed.
- kswapd (`balance_pgdat`, one `Kswapd` process per node, only with an env): woken by the
  allocator below LOW, it reclaims the shortfall to HIGH (6.x: the allocation zone up to
  HIGH + lowmem_reserve; 2.6: every zone to its own HIGH), priority 12 down to 1, counts
  pages already being written for reclaim as on their way, waits for their writes, and
  sleeps when balanced. Without an env there is no kswapd: the allocator's slow path
  reclaims directly (`try_to_free_pages`, SWAP_CLUSTER_MAX pages, priority 12 to 0).
- The flusher (`Flusher`, `writeback_dirty`) writes file pages dirty for longer than
  dirty_expire_centisecs every dirty_writeback_centisecs, whatever exceeds the
  background limit, and everything when reclaim wakes it (wakeup_flusher_threads).
  Writers are throttled by `balance_dirty_pages`: 6.x as 6.1's IO-less throttling (the
  pause proportional to how far dirty + writeback pages are past the setpoint, at most
  MAX_PAUSE; see that method), 2.6 era as 2.6.24 (above dirty_ratio the writer writes
  back itself and waits).
- Scanning costs SCAN_COST per page: kswapd's passes take that long in simulated time,
  direct reclaim adds it (and its synchronous writes) to kernel.stall.

A THP (huge_memory.py) is one entry, its head page, counting its 512 pages (6.1
folio_add_lru, lruvec_add_folio): isolated, moved, rotated and put back whole; split,
its subpages in use take its place (lru_add_page_tail).

Invariants (`Reclaim.validate`): each LRU page is on the list its flags name, exactly
once, with a reference (a THP's subpages in use through its head's entry); list lengths
(in pages) equal the nr_* vmstat items; with an env,
nr_writeback equals the pages in flight.

The course's page states ("Cycle de vie des pages physiques") and their arcs are counted
as vmstat.py describes: every place below that changes a page's state calls
`page_restate` (or `page_enter` / `page_leave`), so the arcs balance per state.
"""

from __future__ import annotations

from bisect import bisect_left

from . import gfp as G
from . import memory as mem
from .blk import REQ_OP_WRITE, BlkPlug, blk_finish_plug, blk_flush_plug, blk_start_plug
from .filemap import delete_from_page_cache, free_user_page, writepage
from .memcontrol import (
    MEMCG_CHARGE_BATCH,
    ST_ACTIVATE_ANON,
    ST_ACTIVATE_FILE,
    MemCgroupTree,
    StatsFlusher,
    make_memcg,
)
from .page import (
    PGSTATE_MASK,
    PageList,
    PG_active,
    PG_anon,
    PG_dirty,
    PG_highmem,
    PG_locked,
    PG_lru,
    PG_mlocked,
    PG_reclaim,
    PG_referenced,
    PG_swapbacked,
    PG_swapcache,
    PG_thp,
    PG_thpfile,
    PG_unevictable,
    PG_workingset,
    PG_writeback,
)
from .page_alloc import SWAP_CLUSTER_MAX, int_sqrt
from .pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_RW, HPAGE_PMD_NR, PTE_PRESENT_MASK
from .units import PAGE_SHIFT
from .vma import VM_EXEC, VM_LOCKED, VM_SHARED
from .vmstat import (  # noqa: F401 (STATE_NAMES, ARC_NAMES, ST_*: re-exported for users)
    ARC_NAMES,
    PGSTATE_VMSTAT,
    ST_ACTIVE,
    ST_CLEAN,
    ST_DIRTY,
    ST_FREE,
    ST_WRITEBACK,
    STATE_NAMES,
    counted_state,
    page_enter,
    page_leave,
    page_restate,
    page_state,
)
from .workingset import Workingset

DEF_PRIORITY = 12
MAX_SWAPPINESS = 200
DEFAULT_SEEKS = 2
SCAN_COST = 1e-6  # seconds of CPU per page scanned (isolation, rmap, freeing): ~4 GB/s
KSWAPD_MIN_PASS = 1e-6  # seconds: a kswapd pass never takes zero simulated time
DIRTY_RATELIMIT = 32  # pages dirtied between two checks of the dirty limits
HZ = 250  # jiffies per second (CONFIG_HZ_250, Debian's): reclaim_throttle's timeouts
MAX_RECLAIM_RETRIES = 16

# reclaim_throttle reasons (enum vmscan_throttle_state, 6.1)
VMSCAN_THROTTLE_WRITEBACK, VMSCAN_THROTTLE_ISOLATED, VMSCAN_THROTTLE_NOPROGRESS, \
    VMSCAN_THROTTLE_CONGESTED = range(4)

# reclaim_throttle's sleeps by reason (hvsim's counters: the mm_vmscan_throttled tracepoint's)
THROTTLE_VMSTAT = ("vmscan_throttle_writeback", "vmscan_throttle_isolated",
                   "vmscan_throttle_noprogress", "vmscan_throttle_congested")
# and the tracepoint's usec_delayed summed by reason: microseconds the sleeps lasted
# (jiffies_to_usecs(timeout - ret): shorter than the timeout when woken early)
THROTTLE_USEC_VMSTAT = tuple(name + "_usec" for name in THROTTLE_VMSTAT)
KSWAPD_CPU = -1  # `Reclaim.isolating`'s CPU for kswapd's batches (any direct reclaimer sees them)

# balance_dirty_pages (6.1 mm/page-writeback.c); times in jiffies, rates in pages/s
MAX_PAUSE = max(HZ // 5, 1)  # jiffies: the longest single pause, 200 ms
DIRTY_POLL_THRESH = 128 >> (PAGE_SHIFT - 10)  # pages: 128 KiB between checks at least
RATELIMIT_CALC_SHIFT = 10
BANDWIDTH_INTERVAL = max(HZ // 5, 1)  # jiffies between global dirty_limit updates
MIN_WRITEBACK_PAGES = 4096 >> (PAGE_SHIFT - 10)  # fs/fs-writeback.c: a background chunk
INIT_BW = 100 << (20 - PAGE_SHIFT)  # pages/s: a new wb's bandwidths and ratelimits (100 MB/s)
WB_BANDWIDTH_IDLE_JIF = HZ  # jiffies after which an idle wb restarts its bandwidth estimate


def ilog2(n: int) -> int:
    return n.bit_length() - 1


def roundup_pow_of_two(n: int) -> int:
    return 1 << (n - 1).bit_length()


def domain_dirty_limits(avail: int, dirty_ratio: int, dirty_background_ratio: int,
                        dirty_bytes: int = 0, dirty_background_bytes: int = 0) -> tuple[int, int]:
    """domain_dirty_limits (6.1, global domain, not a real-time task): (thresh, bg_thresh)
    in pages of `avail` dirtyable pages; the *_bytes settings win when set; the background
    threshold is at most half the threshold."""
    page_size = 1 << PAGE_SHIFT
    ratio = dirty_ratio * page_size // 100
    bg_ratio = dirty_background_ratio * page_size // 100
    if dirty_bytes:
        thresh = -(-dirty_bytes // page_size)
    else:
        thresh = ratio * avail // page_size
    if dirty_background_bytes:
        bg_thresh = -(-dirty_background_bytes // page_size)
    else:
        bg_thresh = bg_ratio * avail // page_size
    thresh = min(thresh, (1 << 32) - 1)
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    return thresh, bg_thresh


def dirty_freerun_ceiling(thresh: int, bg_thresh: int) -> int:
    return (thresh + bg_thresh) // 2


def _div(a: int, b: int) -> int:
    """C signed division (div64_s64): truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def pos_ratio_polynom(setpoint: int, dirty: int, limit: int) -> int:
    """pos_ratio_polynom: 1 + ((setpoint - dirty) / (limit - setpoint))^3, in units of
    1 << RATELIMIT_CALC_SHIFT, clamped to [0, 2]."""
    x = _div((setpoint - dirty) << RATELIMIT_CALC_SHIFT, (limit - setpoint) | 1)
    pos_ratio = x
    pos_ratio = pos_ratio * x >> RATELIMIT_CALC_SHIFT
    pos_ratio = pos_ratio * x >> RATELIMIT_CALC_SHIFT
    pos_ratio += 1 << RATELIMIT_CALC_SHIFT
    return min(max(pos_ratio, 0), 2 << RATELIMIT_CALC_SHIFT)


def wb_position_ratio(thresh: int, bg_thresh: int, dirty: int, limit: int, wb_thresh: int,
                      wb_dirty: int, write_bw: int) -> int:
    """wb_position_ratio (6.1, no BDI_CAP_STRICTLIMIT): the global control line's
    pos_ratio at `dirty` around setpoint = (freerun + limit) / 2, scaled by the wb's own
    control line (wb_setpoint, span from 8 * write_bw), boosted below half wb_thresh.
    0 at or above `limit`."""
    freerun = dirty_freerun_ceiling(thresh, bg_thresh)
    if dirty >= limit:
        return 0
    setpoint = (freerun + limit) // 2
    pos_ratio = pos_ratio_polynom(setpoint, dirty, limit)
    if wb_thresh > thresh:
        wb_thresh = thresh
    wb_thresh = max(wb_thresh, (limit - dirty) // 8)
    x = (wb_thresh << 16) // (thresh | 1)
    wb_setpoint = setpoint * x >> 16
    span = (thresh - wb_thresh + 8 * write_bw) * x >> 16
    x_intercept = wb_setpoint + span
    if wb_dirty < x_intercept - span // 4:
        pos_ratio = pos_ratio * (x_intercept - wb_dirty) // ((x_intercept - wb_setpoint) | 1)
    else:
        pos_ratio //= 4
    x_intercept = wb_thresh // 2
    if wb_dirty < x_intercept:
        if wb_dirty > x_intercept // 8:
            pos_ratio = pos_ratio * x_intercept // wb_dirty
        else:
            pos_ratio *= 8
    return pos_ratio


def dirty_poll_interval(dirty: int, thresh: int) -> int:
    """Pages a task may dirty before checking again when below the freerun ceiling."""
    if thresh > dirty:
        return 1 << (ilog2(thresh - dirty) >> 1)
    return 1


def wb_max_pause(wb_dirty: int, write_bw: int) -> int:
    """wb_max_pause: jiffies, enough for the wb's dirty pages to be written in about
    1/8 s of bandwidth, at most MAX_PAUSE."""
    t = wb_dirty // (1 + write_bw // roundup_pow_of_two(1 + HZ // 8))
    t += 1
    return min(t, MAX_PAUSE)


def wb_min_pause(max_pause: int, task_ratelimit: int, dirty_ratelimit: int,
                 write_bw: int) -> tuple[int, int]:
    """wb_min_pause: (min_pause jiffies, nr_dirtied_pause pages)."""
    hi = ilog2(write_bw) if write_bw else -1
    lo = ilog2(dirty_ratelimit) if dirty_ratelimit else -1
    t = max(1, HZ // 100)
    if hi > lo:
        t += (hi - lo) * (10 * HZ) // 1024
    t = min(t, 1 + max_pause // 2)
    pages = dirty_ratelimit * t // roundup_pow_of_two(HZ)
    if pages < DIRTY_POLL_THRESH:
        t = max_pause
        pages = dirty_ratelimit * t // roundup_pow_of_two(HZ)
        if pages > DIRTY_POLL_THRESH:
            pages = DIRTY_POLL_THRESH
            t = HZ * DIRTY_POLL_THRESH // dirty_ratelimit
    pause = HZ * pages // (task_ratelimit + 1)
    if pause > max_pause:
        t = max_pause
        pages = task_ratelimit * t // roundup_pow_of_two(HZ)
    return (1 + t // 2 if pages >= DIRTY_POLL_THRESH else t), pages


def wb_update_write_bandwidth(write_bandwidth: int, avg: int, elapsed: int,
                              written: int) -> tuple[int, int]:
    """wb_update_write_bandwidth (6.1): `written` pages ended writeback in `elapsed`
    jiffies; write_bandwidth moves to bw = written * HZ / elapsed weighted by elapsed over
    a period of roundup_pow_of_two(3 * HZ) jiffies (bw itself past a whole period), and
    avg_write_bandwidth follows it by 1/8 of the gap when both lie on the same side.
    Returns (write_bandwidth, avg_write_bandwidth), pages/s."""
    period = roundup_pow_of_two(3 * HZ)
    old = write_bandwidth
    bw = written * HZ
    if elapsed > period:
        bw //= elapsed
        avg = bw
    else:
        bw += old * (period - elapsed)
        bw >>= ilog2(period)
        if avg > old and old >= bw:
            avg -= (avg - old) >> 3
        if avg < old and old <= bw:
            avg += (old - avg) >> 3
    return bw, max(avg, 1)


def wb_update_dirty_ratelimit(dirty_ratelimit: int, balanced_prev: int, write_bw: int,
                              pos_ratio: int, dirtied: int, elapsed: int, dirty: int,
                              setpoint: int) -> tuple[int, int]:
    """wb_update_dirty_ratelimit (6.1, no BDI_CAP_STRICTLIMIT): `dirtied` pages dirtied
    in `elapsed` jiffies give dirty_rate; balanced_dirty_ratelimit = task_ratelimit *
    write_bw / dirty_rate (at most write_bw), task_ratelimit = dirty_ratelimit * pos_ratio
    + 1; dirty_ratelimit steps towards it only when task_ratelimit lies on the same side
    (below the setpoint: up to min3 of the balanced rates and task_ratelimit; above: down
    to their max3), by (step >> (dirty_ratelimit / (2 * step + 1))) / 8 rounded up.
    Returns (dirty_ratelimit, balanced_dirty_ratelimit), pages/s."""
    dirty_rate = dirtied * HZ // elapsed
    task_ratelimit = (dirty_ratelimit * pos_ratio >> RATELIMIT_CALC_SHIFT) + 1
    balanced = task_ratelimit * write_bw // (dirty_rate | 1)
    if balanced > write_bw:
        balanced = write_bw
    step = 0
    if dirty < setpoint:
        x = min(balanced_prev, balanced, task_ratelimit)
        if dirty_ratelimit < x:
            step = x - dirty_ratelimit
    else:
        x = max(balanced_prev, balanced, task_ratelimit)
        if dirty_ratelimit > x:
            step = dirty_ratelimit - x
    shift = dirty_ratelimit // (2 * step + 1)
    step = -(-(step >> shift) // 8) if shift < 64 else 0
    if dirty_ratelimit < balanced:
        dirty_ratelimit += step
    else:
        dirty_ratelimit -= step
    return max(dirty_ratelimit, 1), balanced


LRU_INACTIVE_ANON = 0
LRU_ACTIVE_ANON = 1
LRU_INACTIVE_FILE = 2
LRU_ACTIVE_FILE = 3
LRU_UNEVICTABLE = 4
NR_LRU_LISTS = 5
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
LRU_VMSTAT = tuple("nr_" + n for n in LRU_NAMES)
EVICTABLE_LRUS = (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)
PGSKIP_ZONE = {"DMA": "dma", "DMA32": "dma32", "Normal": "normal", "HighMem": "high"}

# References verdicts (folio_check_references)
PAGEREF_RECLAIM, PAGEREF_RECLAIM_CLEAN, PAGEREF_KEEP, PAGEREF_ACTIVATE = range(4)

SCAN_EQUAL, SCAN_FRACT, SCAN_ANON, SCAN_FILE = range(4)
DEACTIVATE_ANON, DEACTIVATE_FILE = 1, 2

# /proc/vmstat counters added by reclaim. Linux names: pgscan_anon/file, pgsteal_anon/file,
# unevictable_pgs_culled/rescued, drop_pagecache, drop_slab, oom_kill. hvsim's own:
#   pgstate_*                the course's page-state arcs (vmstat.py)
#   pgwriteback_file         file pages written back (by reclaim, the flusher or a writer)
#   flusher_wakeups          flusher passes that wrote something
#   balance_dirty_pages      dirty-limit checks that found nr_dirty above the background limit
#   nr_requests_blocked      reclaim writes whose submitter slept for a request tag (every
#                            one of the device queue's nr_requests in flight)
#   vmscan_throttle_*        reclaim_throttle sleeps by reason (writeback, isolated,
#                            noprogress, congested: the mm_vmscan_throttled tracepoint's)
#   vmscan_throttle_*_usec   microseconds those sleeps lasted (the tracepoint's usec_delayed)
# Linux's nr_vmscan_write (pages reclaim wrote: pageout) and nr_vmscan_immediate_reclaim
# (dirty or writeback file pages reclaim marked PG_reclaim instead, 6.x) are node items.
RECLAIM_VMSTAT = PGSTATE_VMSTAT + (
    "nr_vmscan_write", "nr_vmscan_immediate_reclaim",
    "pgscan_anon", "pgscan_file", "pgsteal_anon", "pgsteal_file", "unevictable_pgs_culled",
    "unevictable_pgs_rescued", "unevictable_pgs_scanned", "drop_pagecache", "drop_slab", "pgwriteback_file",
    "flusher_wakeups", "oom_kill", "balance_dirty_pages", "nr_requests_blocked",
) + THROTTLE_VMSTAT + THROTTLE_USEC_VMSTAT


def page_lru(page) -> int:
    """The list a page on the LRU is on, from its flags."""
    f = page.flags
    if f & PG_unevictable:
        return LRU_UNEVICTABLE
    lru = LRU_INACTIVE_FILE if not f & PG_swapbacked else LRU_INACTIVE_ANON
    if f & PG_active:
        lru += 1
    return lru


# A large folio's subpages: an anonymous THP's (PG_thp) or a shmem THP's (PG_thpfile, in
# the page cache); either sits on the LRU as one entry, its head (folio_add_lru)
PG_FOLIO = PG_thp | PG_thpfile


class LruList(PageList):
    """One LRU list: a PageList that also counts its ZONE_HIGHMEM pages (PG_highmem), so
    that an i386 lowmem-only reclaim knows its eligible size without a walk
    (lruvec_lru_size(lruvec, lru, reclaim_idx) reads per-zone counts in Linux).

    An entry is a folio: an order-0 page, or a THP's head page (PG_thp, a shmem THP's
    PG_thpfile: the only subpage linked), which counts its HPAGE_PMD_NR pages in `nr` (lruvec_add_folio:
    update_lru_size by folio_nr_pages)."""

    __slots__ = ("nr_high",)

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self.nr_high = 0

    def add(self, page) -> None:
        nxt = self.lru_next
        page.lru_prev = self
        page.lru_next = nxt
        nxt.lru_prev = page
        self.lru_next = page
        f = page.flags
        n = HPAGE_PMD_NR if f & PG_FOLIO else 1
        self.nr += n
        if f & PG_highmem:
            self.nr_high += n

    def add_tail(self, page) -> None:
        prev = self.lru_prev
        page.lru_next = self
        page.lru_prev = prev
        prev.lru_next = page
        self.lru_prev = page
        f = page.flags
        n = HPAGE_PMD_NR if f & PG_FOLIO else 1
        self.nr += n
        if f & PG_highmem:
            self.nr_high += n

    def remove(self, page) -> None:
        prev = page.lru_prev
        nxt = page.lru_next
        prev.lru_next = nxt
        nxt.lru_prev = prev
        page.lru_prev = None
        page.lru_next = None
        f = page.flags
        n = HPAGE_PMD_NR if f & PG_FOLIO else 1
        self.nr -= n
        if f & PG_highmem:
            self.nr_high -= n


def folio_nr_pages(page) -> int:
    """The pages an LRU entry counts: HPAGE_PMD_NR for a THP's head, else 1."""
    return HPAGE_PMD_NR if page.flags & PG_FOLIO else 1


def is_file_lru(lru: int) -> bool:
    return lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)


class Lruvec:
    """The LRU lists of one node, and the recent cost of reclaiming each type."""

    def __init__(self, node) -> None:
        self.node = node
        self.lists = [LruList(n) for n in LRU_NAMES]
        self.anon_cost = 0  # pages written by reclaim + workingset restores (lru_note_cost)
        self.file_cost = 0
        self.nonresident_age = 0  # evictions + activations (workingset.py)
        self.activate = [0, 0]  # workingset activations, [anon, file] (lruvec_page_state)
        self.refaults = [0, 0]  # `activate` when reclaim last ended (snapshot_refaults)
        # 6.x node flags kswapd sets in shrink_node and clears when the node is balanced
        # (clear_pgdat_congested): PGDAT_DIRTY (kswapd may write dirty file pages it
        # marked PG_reclaim before), PGDAT_WRITEBACK (every page taken was under
        # writeback), LRUVEC_CONGESTED (every dirty page was marked for immediate reclaim)
        self.pgdat_dirty = False
        self.pgdat_writeback = False
        self.congested = False
        # the root memory cgroup's flushed statistics of this lruvec (memcontrol.py:
        # lruvec_page_state); None (2.6 era, no memcg; a child memcg's lruvec): readers
        # take the exact lists
        self.stat = None
        self.memcg = None  # the memory cgroup whose lruvec this is (lruvec_memcg)

    def size(self, lru: int) -> int:
        return self.lists[lru].nr

    def nr_pages(self) -> int:
        return sum(lst.nr for lst in self.lists[:4])


class ScanControl:
    """struct scan_control."""

    __slots__ = (
        "nr_to_reclaim", "nr_reclaimed", "nr_scanned", "priority", "may_writepage",
        "may_swap", "may_unmap", "kswapd", "gfp", "reclaim_idx", "sync_io", "cost",
        "may_deactivate", "cache_trim_mode", "file_is_tiny", "nr_pageout", "nr_writeback",
        "io_wait",
        "anon_cost", "file_cost", "nr_dirty", "nr_unqueued_dirty", "nr_congested",
        "nr_immediate", "nr_taken", "nr_file_taken", "sleep", "t0", "cpu",
        "target_mem_cgroup", "memcg_low_reclaim", "memcg_low_skipped",
    )

    def __init__(self, nr_to_reclaim: int, gfp: int, kswapd: bool, reclaim_idx: int,
                 sync_io: bool) -> None:
        self.nr_to_reclaim = nr_to_reclaim
        self.nr_reclaimed = 0
        self.nr_scanned = 0
        self.priority = DEF_PRIORITY
        self.gfp = gfp
        self.may_writepage = True
        self.may_swap = True
        self.may_unmap = True
        self.kswapd = kswapd
        self.reclaim_idx = reclaim_idx
        self.sync_io = sync_io  # writes complete before the call returns (cost in `cost`)
        self.cost = 0.0  # seconds spent by the reclaimer (scan, synchronous I/O, waits)
        self.io_wait = 0.0  # the part of `cost` asleep on its own I/O (sync writes, waits)
        self.may_deactivate = 0
        self.cache_trim_mode = False
        self.file_is_tiny = False
        self.nr_pageout = 0
        self.nr_writeback = 0  # pages found under writeback (sc->nr.writeback)
        self.anon_cost = 0  # the lruvec's costs when the node pass began (prepare_scan_count)
        self.file_cost = 0
        # sc->nr of 6.1, reset by every shrink_node: file pages taken that were dirty or
        # under writeback, dirty and not yet queued, under writeback and already marked
        # PG_reclaim (congested; kswapd: immediate), pages taken (all, file)
        self.nr_dirty = 0
        self.nr_unqueued_dirty = 0
        self.nr_congested = 0
        self.nr_immediate = 0
        self.nr_taken = 0
        self.nr_file_taken = 0
        self.sleep = 0.0  # seconds the reclaimer slept throttled (reclaim_throttle)
        # a direct reclaimer's own clock when the call began (its time then runs on by
        # `cost` and `sleep`); None: the simulation's (kswapd, or no clock)
        self.t0: float | None = None
        self.cpu = 0  # the CPU the reclaimer runs on (a direct reclaimer: its task's)
        # limit reclaim's memcg (try_to_free_mem_cgroup_pages); None: global reclaim
        self.target_mem_cgroup = None
        # memory.low: protected memcgs skipped (retry with memcg_low_reclaim before OOM)
        self.memcg_low_reclaim = False
        self.memcg_low_skipped = False


class _BdpTask:
    """A task's dirty throttling state (task_struct's nr_dirtied, nr_dirtied_pause,
    dirty_paused_when; hvsim's bdp_clock), for a dirtier that is no Task."""

    def __init__(self) -> None:
        self.nr_dirtied = 0
        self.nr_dirtied_pause = DIRTY_POLL_THRESH
        self.dirty_paused_when = 0
        self.bdp_clock = 0.0
        self.cpu = 0  # task_cpu: hvsim runs a dirtying without a task on CPU 0


class IOBatch:
    """One write request in flight: its pages and completion time."""

    __slots__ = ("done_at", "pages", "queue", "for_reclaim")

    def __init__(self, done_at: float, pages: list, queue, for_reclaim: bool) -> None:
        self.done_at = done_at
        self.pages = pages
        self.queue = queue
        self.for_reclaim = for_reclaim  # written by reclaim: freed once clean


class Reclaim:
    """Reclaim for one guest kernel: LRU lists, writeback, kswapd/direct reclaim entry
    points, drop_caches, the flusher's pass. Installed by `init_reclaim(kernel)`."""

    def __init__(self, kernel) -> None:
        from .oom_kill import OOMKiller
        from .swap import SwapState, guest_queue

        self.kernel = kernel
        self.vmstat = kernel.vmstat
        self.alloc = kernel.page_alloc
        self.lruvecs = [Lruvec(node) for node in self.alloc.nodes]
        self._guest_queue = guest_queue
        self.swap = SwapState(kernel, self)
        self.oom = OOMKiller(kernel)
        self.inflight: list[IOBatch] = []  # write requests in flight
        self.reclaim_inflight = 0  # pages in flight that reclaim will free once written
        self.inflight_by_page: dict[int, IOBatch] = {}  # pfn -> batch (pages in flight)
        self.disk_queues: dict[int, object] = {}  # id(FileSystem) -> BlockQueue
        # inode -> dirtied_when, seconds; keyed by the inode itself, not id(inode): an id
        # can be reused by a new inode (its address depends on the process's history)
        self.inode_dirtied: dict[object, float] = {}
        self.on_io_submit = None  # set by the IOCompletion daemon
        self.kswapds: dict[int, object] = {}  # nid -> Kswapd (env only)
        self.flusher = None
        self.daemons_started = False
        self.in_reclaim = False  # guards against re-entering reclaim from reclaim
        self.kswapd_io_wait = 0.0  # seconds of kswapd's last pass asleep on its own I/O
        self.kswapd_sleep = 0.0  # seconds kswapd's last pass asked to sleep (throttled)
        # seconds, per CPU: where the last direct reclaim on it ended in its own time
        # (a CPU runs one reclaimer at a time; reclaimers on other CPUs run beside it)
        self.direct_clock = [0.0] * max(int(getattr(kernel.config, "cpus", 1)), 1)
        # NR_ISOLATED_* over time (6.1 counts every isolator's pages: reclaim's
        # isolate_lru_folios for both lists, compaction's isolate_migratepages_block until
        # migration or putback, khugepaged's collapse): the batches isolated by direct
        # reclaimers and compactors (in their own time), kswapd (from its pass's start)
        # and kcompactd, for too_many_isolated of reclaimers and compactors on other CPUs
        # (note_isolated, isolated_batches): (from, to seconds, pages, file?, cpu; KSWAPD_CPU
        # for kswapd, compaction's KTHREAD_CPU for kernel threads; nid)
        self.isolating: list[tuple[float, float, int, bool, int, int]] = []
        self._isolating_prune_at = 256  # the log's length that prunes it next
        # wake_throttle_isolated calls of direct reclaimers in their own time (each
        # too_many_isolated that found few isolated): (seconds, cpu, nid)
        self.isolated_wakes: list[tuple[float, int, int]] = []
        # new anonymous pages go to the active list (2.6) or the inactive one (6.x)
        self.anon_active = self.alloc.era == "2.6"
        # 6.x reclaim leaves file writeback to the flusher and never waits for its writes
        self.v6 = self.alloc.era == "6.x"
        self._dirtied = 0  # pages dirtied by write() since the last dirty-limit check (2.6)
        # balance_dirty_pages' state (6.x). Per task (Task): nr_dirtied, nr_dirtied_pause,
        # dirty_paused_when, bdp_clock. Per CPU (kernel.bdp_ratelimits,
        # kernel.dirty_throttle_leaks, indexed by the task's CPU). Per guest: the one
        # bdi_writeback and the global wb_domain
        self.dirty_exceeded = False  # wb->dirty_exceeded
        self.dirty_limit = 0  # pages: global_wb_domain.dirty_limit
        self.dirty_limit_tstamp = 0  # jiffies of its last update
        self.ratelimit_pages = 32  # pages: writeback_set_ratelimit's per-CPU ratelimit
        self._ratelimit_set = False
        # wb bandwidth estimation (__wb_update_bandwidth): pages/s, jiffies, pages
        self.wb_write_bandwidth = INIT_BW  # wb->write_bandwidth
        self.wb_avg_write_bandwidth = INIT_BW  # wb->avg_write_bandwidth
        self.wb_dirty_ratelimit = INIT_BW  # wb->dirty_ratelimit
        self.wb_balanced_dirty_ratelimit = INIT_BW  # wb->balanced_dirty_ratelimit
        self.bw_time_stamp = 0  # wb->bw_time_stamp, jiffies
        self.dirtied_stamp = 0  # WB_DIRTIED (vmstat nr_dirtied) at bw_time_stamp
        self.written_stamp = 0  # WB_WRITTEN at bw_time_stamp
        self.wb_written = 0  # WB_WRITTEN: file pages whose writeback ended
        self.wb_writeback = 0  # file pages under writeback (wb->writeback_inodes > 0)
        self.bw_dwork_at = None  # seconds: wb->bw_dwork queued by the last writeback's end
        # a stand-in task_struct for dirtying without a task (a caller with none)
        self.kthread_bdp = _BdpTask()
        # workingset detection (mm/workingset.c) exists from 3.15: 6.x era only
        self.workingset = Workingset(kernel, self) if self.alloc.era == "6.x" else None
        # the root memory cgroup's statistics (6.x era: CONFIG_MEMCG; memcontrol.py)
        self.memcg = make_memcg(kernel, self) if self.alloc.era == "6.x" else None
        # the memory cgroup hierarchy (memcontrol.py; 6.x); memcg_tree: the same once a
        # child memcg exists (pages may then be on a child's lruvec), else None
        self.memcgs = MemCgroupTree(kernel, self) if self.alloc.era == "6.x" else None
        self.memcg_tree = None
        vm = self.vmstat
        for name in RECLAIM_VMSTAT:
            vm.setdefault(name, 0)
        for name in LRU_VMSTAT:
            vm.setdefault(name, 0)

    # ------------------------------------------------------------------ helpers
    def now(self) -> float | None:
        env = self.kernel.env
        return env.now if env is not None else None

    def lruvec_of(self, page) -> Lruvec:
        """folio_lruvec: the lruvec of the page's memcg on its node."""
        t = self.memcg_tree
        if t is not None:
            m = t.folio_memcg.get(page.pfn)
            if m is not None:
                lvs = m.lruvecs
                return lvs[0] if len(lvs) == 1 else lvs[self.alloc.zone_of(page.pfn).node.nid]
        if len(self.lruvecs) == 1:
            return self.lruvecs[0]
        return self.lruvecs[self.alloc.zone_of(page.pfn).node.nid]

    # ------------------------------------------------------------------ LRU add/del
    def lru_cache_add(self, page) -> None:
        """A page became a user page: onto the head of its list (see the placement rules)."""
        f = page.flags
        if f & PG_lru:
            return
        if f & PG_FOLIO:
            self._folio_add(page)
            return
        vm = self.vmstat
        if f & PG_mlocked or (not f & PG_anon and page.mapping is not None
                              and page.mapping.unevictable):
            # folio_evictable: mlocked, or of an unevictable mapping (SHM_LOCK)
            f |= PG_unevictable
            lru = LRU_UNEVICTABLE
        elif f & PG_anon and self.anon_active:
            f |= PG_active
            lru = LRU_ACTIVE_ANON
        else:
            lru = LRU_INACTIVE_ANON if f & PG_swapbacked else LRU_INACTIVE_FILE
            if f & PG_active:  # a refault workingset_refault activated
                lru += 1
        page.flags = f | PG_lru
        page_enter(vm, page)
        lvs = self.lruvecs
        head = (lvs[0] if len(lvs) == 1 and self.memcg_tree is None
                else self.lruvec_of(page)).lists[lru]
        # NOTE: PageList.add inlined (every page a process faults in comes here)
        nxt = head.lru_next
        page.lru_prev = head
        page.lru_next = nxt
        nxt.lru_prev = page
        head.lru_next = page
        head.nr += 1
        if f & PG_highmem:
            head.nr_high += 1
        vm[LRU_VMSTAT[lru]] += 1
        mc = self.memcg
        if mc is not None and mc.stats_updates <= mc.threshold:
            # lruvec_add_folio: update_lru_size. NOTE: memcg_rstat_updated(1) inlined
            # (the per-CPU count below the batch; MemCgroup.rstat_updated moves it)
            pc = mc.pcpu
            cpu = self.alloc.current_cpu  # (smp_processor_id: kernel.current_cpu's)
            n = pc[cpu] + 1
            if n < MEMCG_CHARGE_BATCH:
                pc[cpu] = n
            else:
                mc.rstat_updated(1)

    def lru_del(self, page) -> None:
        """Take a page off its list (it is being freed): the arc from the state last
        counted to free, an owner's (reclaim counts pgstate_9 before it frees)."""
        vm = self.vmstat
        page_leave(vm, page, False)  # (reclaim counted its own frees already)
        f = page.flags
        if f & PG_lru and not f & PG_FOLIO:
            lru = page_lru(page)
            self.lruvec_of(page).lists[lru].remove(page)
            vm[LRU_VMSTAT[lru]] -= 1
            if self.memcg is not None:
                self.memcg.rstat_updated(1)  # lruvec_del_folio: update_lru_size
        # (a THP's subpage: the folio stays on its list, counting its 512 pages, until it
        # is freed whole or split: folio_lru_del, split_folio_lru)
        page.flags = f & ~(PG_lru | PG_active | PG_unevictable | PG_referenced | PG_reclaim)

    def _isolate(self, page, lru: int) -> list:
        """Take a page off its list; a THP's subpage takes its whole folio (the one
        entry). Returns the pages isolated (a folio's live subpages)."""
        if page.flags & PG_FOLIO:
            return self._folio_isolate(self._folio(page))
        self.lruvec_of(page).lists[lru].remove(page)
        self.vmstat[LRU_VMSTAT[lru]] -= 1
        if self.memcg is not None:
            self.memcg.rstat_updated(1)  # isolate_lru_folios: update_lru_sizes
        page.flags &= ~PG_lru
        return [page]

    # ------------------------------------------------------------------ THP folios
    # A THP sits on the LRU as one folio (6.1 folio_add_lru / lruvec_add_folio): its head
    # page is the one entry, counting HPAGE_PMD_NR pages in the list and in nr_*_anon
    # (update_lru_size by folio_nr_pages). Its flags are the folio's: every subpage still
    # in use carries PG_lru and the list's PG_active / PG_unevictable (the head's, which
    # Linux's PageLRU / PageActive read for a tail), so the course's page states stay per
    # page. A subpage whose last mapping goes is held by the folio (huge_memory
    # free_subpage) and leaves the states; the folio stays on its list until it is freed
    # whole (folio_lru_del) or split (split_folio_lru: lru_add_page_tail).
    def _folio(self, page):
        thp = self.kernel.thp
        base = page.pfn & ~(HPAGE_PMD_NR - 1)
        folio = thp.folios.get(base)
        return folio if folio is not None else thp.shmem_folios[base]

    def _folio_pages(self, folio) -> list:
        """The folio's subpages in use (held ones have no reference)."""
        mem_map = self.kernel.mem_map
        base = folio.pfn
        return [p for p in (mem_map[pfn] for pfn in range(base, base + HPAGE_PMD_NR)) if p._count]

    def entry_pages(self, page) -> list:
        """The user pages an LRU entry stands for: a THP's subpages in use, else the page."""
        if page.flags & PG_FOLIO:
            return self._folio_pages(self._folio(page))
        return [page]

    def _folio_add(self, page) -> None:
        """folio_add_lru for a THP: the folio onto the head of the list `page`'s flags
        name (lru_cache_add's placement), all its pages counted; a subpage added while
        its folio is already on a list takes the folio's flags."""
        folio = self._folio(page)
        vm = self.vmstat
        if folio.lru >= 0:
            self._folio_conform(folio, page)
            page_enter(vm, page)
            return
        f = page.flags
        if f & PG_mlocked:
            f |= PG_unevictable
        elif f & PG_anon and self.anon_active:
            f |= PG_active
        page.flags = f
        lru = page_lru(page)
        keep = f & (PG_active | PG_unevictable)
        for p in self._folio_pages(folio):
            p.flags = (p.flags & ~(PG_active | PG_unevictable)) | keep | PG_lru
            page_enter(vm, p)
        self._folio_link(folio, lru, False)

    def _folio_link(self, folio, lru: int, tail: bool) -> None:
        head = self.kernel.mem_map[folio.pfn]
        lst = self.lruvec_of(head).lists[lru]
        if tail:
            lst.add_tail(head)
        else:
            lst.add(head)
        folio.lru = lru
        self.vmstat[LRU_VMSTAT[lru]] += HPAGE_PMD_NR
        if self.memcg is not None:
            self.memcg.rstat_updated(HPAGE_PMD_NR)

    def _folio_unlink(self, folio) -> None:
        head = self.kernel.mem_map[folio.pfn]
        lru = folio.lru
        self.lruvec_of(head).lists[lru].remove(head)
        folio.lru = -1
        self.vmstat[LRU_VMSTAT[lru]] -= HPAGE_PMD_NR
        if self.memcg is not None:
            self.memcg.rstat_updated(HPAGE_PMD_NR)

    def _folio_conform(self, folio, page) -> None:
        """A subpage of a folio on a list gets the folio's LRU flags."""
        lru = folio.lru
        f = page.flags & ~(PG_active | PG_unevictable)
        if lru == LRU_UNEVICTABLE:
            f |= PG_unevictable
        elif lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE:
            f |= PG_active
        page.flags = f | PG_lru

    def _folio_isolate(self, folio) -> list:
        """folio_isolate_lru / isolate_lru_folios for a THP: off its list whole."""
        self._folio_unlink(folio)
        pages = self._folio_pages(folio)
        for p in pages:
            p.flags &= ~PG_lru
        return pages

    def folio_lru_del(self, folio) -> None:
        """The folio is freed whole (its last subpage went): off its list."""
        if folio.lru >= 0:
            self._folio_unlink(folio)

    def split_folio_lru(self, folio) -> None:
        """__split_huge_page's lru_add_page_tail (6.1), before the subpages lose PG_thp:
        a folio on a list is replaced there by its subpages in use, the tails ahead of
        the head in reverse order (head, 1, 2, ... from the tail end), each counting one
        page; an isolated folio's subpages stay isolated (its isolator's list holds
        them). Held subpages are freed by the split."""
        if folio.lru < 0:
            return
        mem_map = self.kernel.mem_map
        head = mem_map[folio.pfn]
        lru = folio.lru
        lst = self.lruvec_of(head).lists[lru]
        nxt = head.lru_next  # (towards the tail end)
        self._folio_unlink(folio)
        pages = self._folio_pages(folio)
        vm = self.vmstat
        prev = nxt.lru_prev
        for p in pages:  # head first, tails after it towards the list's front
            p.lru_next = nxt
            p.lru_prev = prev
            prev.lru_next = p
            nxt.lru_prev = p
            nxt = p
            lst.nr += 1
            if p.flags & PG_highmem:
                lst.nr_high += 1
        vm[LRU_VMSTAT[lru]] += len(pages)
        if self.memcg is not None and pages:
            self.memcg.rstat_updated(len(pages))

    def _putback(self, page, tail: bool = False, age: bool = True) -> None:
        """Return an isolated page to the list its flags name (culling mlocked pages).
        `age`: reclaim's move_folios_to_lru ages the LRU for an active page; migration's
        and compaction's folio_putback_lru (folio_add_lru) does not: age=False. A THP's
        subpage puts its whole folio back (by this page's flags) or, the folio already
        back, takes its flags."""
        f = page.flags
        if f & PG_FOLIO:
            self._folio_putback(page, tail, age)
            return
        if f & PG_lru:
            return  # (already back: a split in the batch put it there)
        if (f & PG_mlocked or not f & PG_anon and page.mapping is not None
                and page.mapping.unevictable) and not f & PG_unevictable:
            f = (f | PG_unevictable) & ~PG_active
            self.vmstat["unevictable_pgs_culled"] += 1
        page.flags = f | PG_lru
        lru = page_lru(page)
        lv = self.lruvec_of(page)
        lst = lv.lists[lru]
        if tail:
            lst.add_tail(page)
        else:
            lst.add(page)
        if age and (lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE):
            lv.nonresident_age += 1  # move_folios_to_lru: workingset_age_nonresident
            if self.memcg_tree is not None:
                self._age_parents(lv, 1)
        vm = self.vmstat
        vm[LRU_VMSTAT[lru]] += 1
        if self.memcg is not None:
            self.memcg.rstat_updated(1)  # move_folios_to_lru: lruvec_add_folio
        page_restate(vm, page)

    def _folio_putback(self, page, tail: bool, age: bool) -> None:
        folio = self._folio(page)
        vm = self.vmstat
        if folio.lru >= 0:
            self._folio_conform(folio, page)
            page_restate(vm, page)
            return
        f = page.flags
        if (f & PG_mlocked or not f & PG_anon and page.mapping is not None
                and page.mapping.unevictable) and not f & PG_unevictable:
            f = (f | PG_unevictable) & ~PG_active
            vm["unevictable_pgs_culled"] += HPAGE_PMD_NR
        page.flags = f
        lru = page_lru(page)
        # the folio's flags, by this page (one PG_active, PG_unevictable, PG_workingset)
        mask = PG_active | PG_unevictable | PG_workingset
        keep = f & mask
        for p in self._folio_pages(folio):
            p.flags = (p.flags & ~mask) | keep | PG_lru
            page_restate(vm, p)
        self._folio_link(folio, lru, tail)
        if age and (lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE):
            lv = self.lruvec_of(page)
            lv.nonresident_age += HPAGE_PMD_NR
            if self.memcg_tree is not None:
                self._age_parents(lv, HPAGE_PMD_NR)

    def _folio_move(self, page, to_active: bool) -> int:
        folio = self._folio(page)
        if folio.lru < 0:
            return 0
        self._folio_unlink(folio)
        vm = self.vmstat
        for p in self._folio_pages(folio):
            p.flags = (p.flags | PG_active) if to_active else (p.flags & ~PG_active)
            page_restate(vm, p)
        self._folio_link(folio, page_lru(page), False)
        return HPAGE_PMD_NR

    def _move(self, page, to_active: bool) -> int:
        """Move a page on the LRU between its inactive and active lists (head); a THP's
        subpage moves its folio. Returns the pages moved."""
        if page.flags & PG_FOLIO:
            return self._folio_move(page, to_active)
        lru = page_lru(page)
        lv = self.lruvec_of(page)
        lv.lists[lru].remove(page)
        vm = self.vmstat
        vm[LRU_VMSTAT[lru]] -= 1
        if to_active:
            page.flags |= PG_active
        else:
            page.flags &= ~PG_active
        lru = page_lru(page)
        lv.lists[lru].add(page)
        vm[LRU_VMSTAT[lru]] += 1
        if self.memcg is not None:
            # lruvec_del_folio and lruvec_add_folio: two update_lru_size calls
            self.memcg.rstat_updated(1)
            self.memcg.rstat_updated(1)
        page_restate(vm, page)
        return 1

    def activate_page(self, page) -> None:
        """folio_activate: an inactive page on the LRU goes to the active list (a THP's
        subpage: its folio; PGACTIVATE counts the folio's pages)."""
        f = page.flags
        if f & (PG_active | PG_unevictable) or not f & PG_lru:
            return
        n = self._move(page, True)
        self.vmstat["pgactivate"] += n
        if self.memcg is not None and n:
            self.memcg.rstat_updated(n)  # lru_activate: __count_memcg_events(PGACTIVATE)

    def deactivate_file_page(self, page) -> None:
        """deactivate_file_folio -> lru_deactivate_file_fn (6.1 mm/swap.c): a page-cache
        page that invalidation could not drop (invalidate_mapping_pagevec:
        POSIX_FADV_DONTNEED, drop_caches) is moved to speed up its reclaim. An unevictable
        or mapped page stays where it is; the others lose PG_active and PG_referenced; a
        dirty page or one under writeback goes to the head of the inactive list with
        PG_reclaim (the end of its writeback rotates it to the tail: folio_end_writeback),
        a clean one to the inactive tail (PGROTATED); PGDEACTIVATE counts it if it was
        active. Applied at once: fadvise drains the per-CPU lru_deactivate_file batch
        (lru_add_drain_all) before it looks again. A THP is left alone here."""
        f = page.flags
        if not f & PG_lru or f & (PG_unevictable | PG_FOLIO) or page._mapcount != -1:
            return
        vm = self.vmstat
        lru = page_lru(page)
        lv = self.lruvec_of(page)
        lv.lists[lru].remove(page)
        vm[LRU_VMSTAT[lru]] -= 1
        busy = f & (PG_dirty | PG_writeback)
        page.flags = (f & ~(PG_active | PG_referenced)) | (PG_reclaim if busy else 0)
        lru = page_lru(page)
        if busy:
            lv.lists[lru].add(page)  # lruvec_add_folio: the head
        else:
            lv.lists[lru].add_tail(page)  # lruvec_add_folio_tail
            vm["pgrotated"] += 1
        vm[LRU_VMSTAT[lru]] += 1
        page_restate(vm, page)
        memcg = self.memcg
        if memcg is not None:
            # lruvec_del_folio and lruvec_add_folio: two update_lru_size calls
            memcg.rstat_updated(1)
            memcg.rstat_updated(1)
        if f & PG_active:
            vm["pgdeactivate"] += 1
            if memcg is not None:
                memcg.rstat_updated(1)  # __count_memcg_events(PGDEACTIVATE)

    def mark_page_lazyfree(self, page) -> None:
        """mark_page_lazyfree (lru_lazyfree_fn, 6.1): an anonymous, swap-backed page not in
        the swap cache and evictable becomes clean and !swapbacked, and moves (inactive,
        unreferenced) to the head of the inactive file list; counts pglazyfree."""
        f = page.flags
        if (not f & PG_anon or not f & PG_swapbacked
                or f & (PG_swapcache | PG_unevictable | PG_mlocked)):
            return
        vm = self.vmstat
        on_lru = f & PG_lru
        if f & PG_thp:
            # folio_mark_lazyfree of a whole PMD-mapped THP (madvise_free_huge_pmd):
            # the folio's flags at once, its entry to the inactive file list,
            # PGLAZYFREE counting its pages
            folio = self._folio(page)
            pages = self._folio_pages(folio)
            if any(p.flags & (PG_swapcache | PG_unevictable | PG_mlocked) or not p.flags & PG_swapbacked
                   for p in pages):
                return
            if on_lru:
                self._folio_unlink(folio)
            for p in pages:
                p.flags &= ~(PG_active | PG_referenced | PG_swapbacked | PG_dirty)
                page_restate(vm, p)
            if on_lru:
                self._folio_link(folio, LRU_INACTIVE_FILE, False)
            vm["pglazyfree"] += HPAGE_PMD_NR
            return
        if on_lru:
            lru = page_lru(page)
            lv = self.lruvec_of(page)
            lv.lists[lru].remove(page)
            vm[LRU_VMSTAT[lru]] -= 1
        page.flags = f & ~(PG_active | PG_referenced | PG_swapbacked | PG_dirty)
        if on_lru:
            lv.lists[LRU_INACTIVE_FILE].add(page)
            vm[LRU_VMSTAT[LRU_INACTIVE_FILE]] += 1
            if self.memcg is not None:
                # lru_lazyfree: lruvec_del_folio, lruvec_add_folio
                self.memcg.rstat_updated(1)
                self.memcg.rstat_updated(1)
        page_restate(vm, page)  # (inactive) dirty -> clean: lazily freed
        vm["pglazyfree"] += 1
        if self.memcg is not None:
            self.memcg.rstat_updated(1)  # __count_memcg_events(PGLAZYFREE)

    def mark_page_accessed(self, page) -> None:
        """Two-touch activation: first touch sets PG_referenced, the second (inactive
        page, PG_referenced set) activates and clears it."""
        f = page.flags
        if not f & PG_referenced:
            page.flags = f | PG_referenced
        elif not f & (PG_active | PG_unevictable) and f & PG_lru:
            self.activate_page(page)
            page.flags &= ~PG_referenced
            if self.workingset is not None:
                lv = self.lruvec_of(page)
                lv.nonresident_age += 1  # workingset_activation
                if self.memcg_tree is not None:
                    self._age_parents(lv, 1)

    def balance_dirty_pages_ratelimited(self, page, task=None) -> None:
        """A file page was written by write() or dirtied by a shared mapping's write fault
        (fault_dirty_shared_page) by `task`: note when its inode became dirty
        (inode->dirtied_when) and check the dirty limits. 6.x
        (balance_dirty_pages_ratelimited_flags): ratelimit = the task's nr_dirtied_pause
        (at most 8 while the wb's limit is exceeded); the bdp_ratelimits of the task's CPU
        reaching ratelimit_pages forces a check (ratelimit 0), and is reset then or when
        the task is due anyway; pages exited tasks left unthrottled on this CPU
        (dirty_throttle_leaks) are charged to this one up to its ratelimit; once the pages
        it dirtied since its last check (current->nr_dirtied, counted by set_page_dirty)
        reach the ratelimit, balance_dirty_pages. 2.6 era: every DIRTY_RATELIMIT pages
        written. Shmem pages have no writeback: skipped."""
        if page.flags & PG_swapbacked or not page.flags & PG_dirty:
            return
        key = page.mapping.host
        if key not in self.inode_dirtied:
            env = self.kernel.env
            self.inode_dirtied[key] = env.now if env is not None else 0.0
        if self.v6:
            cur = task if task is not None else self.kthread_bdp
            if not self._ratelimit_set:
                self.writeback_set_ratelimit()
            ratelimit = cur.nr_dirtied_pause
            if self.dirty_exceeded:
                ratelimit = min(ratelimit, 32 >> (PAGE_SHIFT - 10))
            k = self.kernel
            cpu = cur.cpu  # this_cpu_ptr: the CPU the dirtying task runs on
            p = k.bdp_ratelimits
            if cur.nr_dirtied >= ratelimit:
                p[cpu] = 0
            elif p[cpu] >= self.ratelimit_pages:
                p[cpu] = 0
                ratelimit = 0
            leaks = k.dirty_throttle_leaks
            if leaks[cpu] > 0 and cur.nr_dirtied < ratelimit:
                n = min(leaks[cpu], ratelimit - cur.nr_dirtied)
                leaks[cpu] -= n
                cur.nr_dirtied += n
            if cur.nr_dirtied >= ratelimit:
                self.balance_dirty_pages(cur.nr_dirtied, cur)
            return
        self._dirtied += 1
        if self._dirtied >= DIRTY_RATELIMIT:
            self._dirtied = 0
            self.balance_dirty_pages()

    def writeback_set_ratelimit(self) -> None:
        """writeback_set_ratelimit (6.1; at boot and when a dirty sysctl changes): the
        domain's dirty_limit becomes the threshold, ratelimit_pages = thresh / (CPUs *
        32), at least 16."""
        self._ratelimit_set = True
        thresh = self.dirty_thresholds()[1]
        self.dirty_limit = thresh
        cpus = max(int(getattr(self.kernel.config, "cpus", 1)), 1)
        self.ratelimit_pages = max(thresh // (cpus * 32), 16)

    # ------------------------------------------------------------------ sizes, balance
    def lru_pages(self, lru: int) -> int:
        return sum(lv.lists[lru].nr for lv in self.all_lruvecs())

    @staticmethod
    def _age_parents(lv: Lruvec, nr: int) -> None:
        """workingset_age_nonresident's walk up: the parent memcgs' lruvecs of the node
        age with a child's."""
        m = lv.memcg
        if m is None or m.parent is None:
            return
        nid = lv.node.nid
        m = m.parent
        while m is not None:
            m.lruvec(nid).nonresident_age += nr
            m = m.parent

    def all_lruvecs(self) -> list:
        """Every lruvec: the root memcg's per node, then each child memcg's."""
        t = self.memcg_tree
        if t is None:
            return self.lruvecs
        return [lv for m in t.root.iter() for lv in m.lruvecs]

    def node_lruvecs(self, nid: int) -> list:
        """The lruvecs of node nid, the root memcg's first (mem_cgroup_iter order)."""
        t = self.memcg_tree
        if t is None:
            lvs = self.lruvecs
            return [lvs[nid] if len(lvs) > 1 else lvs[0]]
        return [m.lruvec(nid) for m in t.root.iter()]

    @staticmethod
    def inactive_is_low(lv: Lruvec, inactive_lru: int) -> bool:
        """inactive * int_sqrt(10 * GB of the type) < active (6.x inactive_is_low). The
        sizes are lruvec_page_state's: the memory cgroup's flushed values (6.x), the
        lists' own (2.6, no memcg)."""
        st = lv.stat
        if st is not None:
            inactive = st[inactive_lru]
            active = st[inactive_lru + 1]
        else:
            inactive = lv.lists[inactive_lru].nr
            active = lv.lists[inactive_lru + 1].nr
        gb = (inactive + active) >> (30 - PAGE_SHIFT)
        ratio = int_sqrt(10 * gb) if gb else 1
        return inactive * ratio < active

    def zone_reclaimable_pages(self, zone) -> int:
        """zone_reclaimable_pages: the zone's file LRU pages, and its anon LRU pages when
        swap has room. ZONE_HIGHMEM's are counted on the lists (nr_high); a lowmem zone of
        at most 16 MiB (ZONE_DMA) by its frames; the node's other lowmem zones share the
        remaining lowmem LRU pages in proportion to their managed pages (exact when, as
        below 4 GiB on x86-64 or on i386, one such zone holds them all)."""
        lv = self.lruvecs[zone.node.nid] if len(self.lruvecs) > 1 else self.lruvecs[0]
        anon = self.can_reclaim_anon()
        idx = (0, 1, 2, 3) if anon else (2, 3)
        lvs = [lv] if self.memcg_tree is None else self.node_lruvecs(lv.node.nid)
        if zone.is_highmem:
            return sum(m.lists[i].nr_high for m in lvs for i in idx)
        if not zone.managed_pages:
            return 0
        small = 16 << (20 - PAGE_SHIFT)

        def walk(z) -> int:
            mem_map = self.kernel.mem_map
            n = 0
            for pfn in range(z.zone_start_pfn, z.zone_start_pfn + z.spanned_pages):
                p = mem_map[pfn]
                if p is None:
                    continue
                f = p.flags
                if f & PG_lru and not f & PG_unevictable and (anon or not f & PG_swapbacked):
                    n += 1
            return n

        if zone.spanned_pages <= small:
            return walk(zone)
        low = [z for z in lv.node.zones if not z.is_highmem and z.managed_pages]
        rest = sum(m.lists[i].nr - m.lists[i].nr_high for m in lvs for i in idx)
        rest -= sum(walk(z) for z in low if z.spanned_pages <= small)
        big = [z for z in low if z.spanned_pages > small]
        total = sum(z.managed_pages for z in big)
        return max(rest, 0) * zone.managed_pages // total if total else 0

    def can_reclaim_anon(self) -> bool:
        return self.swap.free_swap_pages() > 0

    def scan_fractions(self, lv: Lruvec, sc: ScanControl | None = None) -> tuple[int, int]:
        """(ap, fp): anon and file pressure from swappiness and the recent costs, as 6.1's
        get_scan_count computes them from the costs prepare_scan_count took (sc's; the
        lruvec's own without one)."""
        swappiness = self.mem_cgroup_swappiness(lv)
        if sc is None:
            a, f = lv.anon_cost, lv.file_cost
        else:
            a, f = sc.anon_cost, sc.file_cost
        total_cost = a + f
        anon_cost = total_cost + a
        file_cost = total_cost + f
        total_cost = anon_cost + file_cost
        ap = swappiness * (total_cost + 1) // (anon_cost + 1)
        fp = (MAX_SWAPPINESS - swappiness) * (total_cost + 1) // (file_cost + 1)
        return ap, fp

    def get_scan_count(self, lv: Lruvec, sc: ScanControl) -> list[int]:
        """How many pages of each evictable list to scan at sc.priority (the lruvec's
        memcg's swappiness: mem_cgroup_swappiness; cgroup reclaim with swappiness 0 scans
        file only)."""
        swappiness = self.mem_cgroup_swappiness(lv)
        mt = self.memcg_tree
        if not sc.may_swap or not self.can_reclaim_anon():
            balance = SCAN_FILE
        elif (mt is not None and lv.memcg is not None and lv.memcg.parent is not None
              and mt.get_nr_swap_pages(lv.memcg, 1) <= 0):
            balance = SCAN_FILE  # can_reclaim_anon_pages: mem_cgroup_get_nr_swap_pages
        elif sc.target_mem_cgroup is not None and not swappiness:
            balance = SCAN_FILE
        elif not sc.priority and swappiness:
            balance = SCAN_EQUAL
        elif sc.file_is_tiny:
            balance = SCAN_ANON
        elif sc.cache_trim_mode:
            balance = SCAN_FILE
        else:
            balance = SCAN_FRACT
        nr = [0] * NR_LRU_LISTS
        if balance == SCAN_FRACT:
            ap, fp = self.scan_fractions(lv, sc)
            denominator = ap + fp
        m = lv.memcg
        prot = None
        if m is not None and m.parent is not None:
            pmin, plow = m.tree.protection(sc.target_mem_cgroup, m)
            if pmin or plow:
                # memory.low scaling (retry before OOM), else memory.min's
                if not sc.memcg_low_reclaim and plow > pmin:
                    prot = plow
                    sc.memcg_low_skipped = True
                else:
                    prot = pmin
        for lru in EVICTABLE_LRUS:
            file = is_file_lru(lru)
            if prot is None:
                scan = self.lruvec_lru_size(lv, lru, sc) >> sc.priority
            else:
                # the reclaim pressure scaled by the protected share of the cgroup's
                # usage, at least SWAP_CLUSTER_MAX (6.1 get_scan_count)
                size = self.lruvec_lru_size(lv, lru, sc)
                cgroup_size = max(m.memory.usage, prot)
                scan = max(size - size * prot // (cgroup_size + 1), SWAP_CLUSTER_MAX)
                scan >>= sc.priority
            if balance == SCAN_FRACT:
                # div64_u64 (the root memory cgroup is online: rounded down)
                frac = fp if file else ap
                scan = scan * frac // denominator if denominator else 0
            elif balance == SCAN_FILE and not file or balance == SCAN_ANON and file:
                scan = 0
            nr[lru] = scan
        return nr

    def mem_cgroup_swappiness(self, lv: Lruvec) -> int:
        """mem_cgroup_swappiness: a v1 child memcg's own memory.swappiness, else
        vm.swappiness."""
        m = lv.memcg
        if m is None or m.parent is None or m.swappiness is None or m.tree.version == 2:
            return self.kernel.config.swappiness
        return m.swappiness

    @staticmethod
    def writeback_throttling_sane(sc: ScanControl) -> bool:
        """writeback_throttling_sane: global reclaim, or cgroup v2's (the default
        hierarchy); cgroup v1 reclaim is not (it waits on writeback instead)."""
        m = sc.target_mem_cgroup
        return m is None or m.tree.version == 2

    def lru_note_cost(self, lv: Lruvec, file: bool, nr_pages: int) -> None:
        """lru_note_cost (6.1 mm/swap.c): `nr_pages` of reclaim cost for the type: the
        pages shrink_inactive_list wrote (stat.nr_pageout), or a refaulting page that was
        part of the workingset (lru_note_cost_folio). Both costs halve once their sum
        exceeds a quarter of the lruvec's LRU pages (a floating average). (6.1 repeats
        for every parent memory cgroup's lruvec, up to the root's.)"""
        while True:
            if file:
                lv.file_cost += nr_pages
            else:
                lv.anon_cost += nr_pages
            if lv.anon_cost + lv.file_cost > lv.nr_pages() // 4:
                lv.anon_cost //= 2
                lv.file_cost //= 2
            m = lv.memcg
            if m is None or m.parent is None:
                return
            lv = m.parent.lruvec(lv.node.nid)  # parent_lruvec

    # ------------------------------------------------------------------ rmap checks
    def _referenced(self, page) -> tuple[int, int]:
        """Harvest accessed bits: (referenced PTEs, OR of the vm_flags seen). A dirty PTE
        of a file page moves its dirty bit to the page (shared writable PTEs are write-
        protected so the next write faults and dirties it again, as page_mkclean does)."""
        if page._mapcount < 0:
            return 0, 0
        out = [0, 0]
        anon = page.flags & PG_anon
        kernel = self.kernel

        def one(mm, vma, addr):
            ptes = mm.pgtable.ptes
            vpn = addr >> PAGE_SHIFT
            pte = ptes[vpn]
            out[1] |= vma.vm_flags
            if vma.vm_flags & VM_LOCKED:
                out[0] += 1
                return False
            if pte & _PAGE_ACCESSED:
                pte &= ~_PAGE_ACCESSED
                out[0] += 1
            if pte & _PAGE_DIRTY and not anon:
                pte &= ~_PAGE_DIRTY
                if vma.vm_flags & VM_SHARED:
                    pte &= ~_PAGE_RW
                mem.set_page_dirty(kernel, page)
            if pte != ptes[vpn]:
                ptes[vpn] = pte
                mm.pgtable.pte_changed(vpn)
            return True

        mem.rmap_walk(kernel, page, one)
        return out[0], out[1]

    def _anon_pte_dirty(self, page) -> bool:
        """Does any PTE mapping an anonymous page have its dirty bit set?"""
        if page._mapcount < 0:
            return False

        found = []

        def one(mm, vma, addr):
            if mm.pgtable.ptes[addr >> PAGE_SHIFT] & _PAGE_DIRTY:
                found.append(1)
                return False
            return True

        mem.rmap_walk(self.kernel, page, one)
        return bool(found)

    def check_references(self, page) -> int:
        """folio_check_references: the verdict for an inactive page."""

        referenced_ptes, vm_flags = self._referenced(page)
        if vm_flags & VM_LOCKED:
            mem.mlock_page(self.kernel, page)
            return PAGEREF_KEEP  # _putback culls it to the unevictable list
        f = page.flags
        referenced_page = f & PG_referenced
        page.flags = f & ~PG_referenced
        if referenced_ptes:
            page.flags |= PG_referenced
            if referenced_page or referenced_ptes > 1:
                return PAGEREF_ACTIVATE
            if vm_flags & VM_EXEC and not f & PG_swapbacked:
                return PAGEREF_ACTIVATE
            return PAGEREF_KEEP
        if referenced_page and not f & PG_swapbacked:
            return PAGEREF_RECLAIM_CLEAN
        return PAGEREF_RECLAIM

    # ------------------------------------------------------------------ isolation
    def _eligible_limit(self, lv: Lruvec, sc: ScanControl) -> int | None:
        """The first pfn above the zones reclaim may take pages from (sc.reclaim_idx:
        the highest zone the allocation can use), or None if every zone is eligible."""
        node = lv.node
        if node is None:
            return None
        zones = node.zones
        ridx = sc.reclaim_idx
        if ridx + 1 >= len(zones) or not any(z.managed_pages for z in zones[ridx + 1:]):
            return None
        return zones[ridx].zone_start_pfn + zones[ridx].spanned_pages

    def lruvec_lru_size(self, lv: Lruvec, lru: int, sc: ScanControl) -> int:
        """lruvec_lru_size(lruvec, lru, sc->reclaim_idx): the list's pages in eligible
        zones."""
        lst = lv.lists[lru]
        limit = self._eligible_limit(lv, sc)
        if limit is None:
            return lst.nr
        zones = lv.node.zones
        if zones[sc.reclaim_idx + 1].is_highmem and sc.reclaim_idx + 2 >= len(zones):
            return lst.nr - lst.nr_high  # i386 lowmem: all but ZONE_HIGHMEM
        return sum(folio_nr_pages(p) for p in lst if p.pfn < limit)  # (GFP_DMA / GFP_DMA32: rare)

    def isolate_lru_pages(self, nr_to_scan: int, lv: Lruvec, sc: ScanControl, lru: int) -> tuple[list, int]:
        """isolate_lru_folios: take up to nr_to_scan pages from the list's tail. Pages of
        zones above sc.reclaim_idx are skipped (pgskip_<zone>; not counted against
        nr_to_scan) and spliced back to the head of the list in their order. Returns
        (pages taken, pages looked at)."""
        lst = lv.lists[lru]
        limit = self._eligible_limit(lv, sc)
        taken = []
        scanned = 0  # pages: a THP's entry counts its 512 (nr_pages)
        if limit is None:
            while scanned < nr_to_scan:
                page = lst.last()
                if page is None:
                    break
                if page.flags & PG_FOLIO:
                    taken += self._folio_isolate(self._folio(page))
                    scanned += HPAGE_PMD_NR
                    continue
                self._isolate(page, lru)
                taken.append(page)
                scanned += 1
            return taken, scanned
        skipped = []
        nr_skipped = 0
        while scanned < nr_to_scan:
            page = lst.last()
            if page is None:
                break
            if page.pfn >= limit:
                lst.remove(page)
                skipped.append(page)
                nr_skipped += folio_nr_pages(page)
                continue
            if page.flags & PG_FOLIO:
                taken += self._folio_isolate(self._folio(page))
                scanned += HPAGE_PMD_NR
                continue
            self._isolate(page, lru)
            taken.append(page)
            scanned += 1
        if skipped:
            vm = self.vmstat
            zone_of = self.alloc.zone_of
            for page in skipped:  # list_splice(&folios_skipped, src): order kept
                lst.add(page)
                key = "pgskip_" + PGSKIP_ZONE[zone_of(page.pfn).name]
                vm[key] = vm.get(key, 0) + folio_nr_pages(page)
        return taken, scanned + nr_skipped

    def check_folio_references(self, page, cache: dict) -> int:
        """folio_check_references for a subpage of a whole THP: the verdict is the
        folio's, taken once (folio_referenced: one young bit per PMD mapping, counted per
        VMA) with the folio's PG_referenced (kept alike on its subpages), and given to
        every subpage; `cache` holds it by head pfn for the rest of the batch."""
        base = page.pfn & ~(HPAGE_PMD_NR - 1)
        ref = cache.get(base)
        if ref is not None:
            return ref
        k = self.kernel
        if base not in k.thp.folios and base not in k.thp.shmem_folios:
            return self.check_references(page)
        referenced, vm_flags = k.thp.folio_referenced(base)
        subpages = [k.mem_map[pfn] for pfn in range(base, base + HPAGE_PMD_NR)]
        if vm_flags & VM_LOCKED:
            for p in subpages:
                if p._count:  # (a subpage the folio holds unmapped is no user page)
                    mem.mlock_page(k, p)
            ref = PAGEREF_KEEP  # _putback culls them to the unevictable list
        else:
            referenced_folio = subpages[0].flags & PG_referenced
            for p in subpages:
                if referenced:
                    p.flags |= PG_referenced
                else:
                    p.flags &= ~PG_referenced
            file_lru = not subpages[0].flags & PG_swapbacked  # (a file THP, a lazily freed one)
            if referenced:
                ref = PAGEREF_ACTIVATE if referenced_folio or referenced > 1 else PAGEREF_KEEP
                if vm_flags & VM_EXEC and file_lru:
                    ref = PAGEREF_ACTIVATE  # file-backed executable folios after first use
            elif referenced_folio and file_lru:
                ref = PAGEREF_RECLAIM_CLEAN
            else:
                ref = PAGEREF_RECLAIM
        cache[base] = ref
        return ref

    # ------------------------------------------------------------------ active list
    def shrink_active_list(self, nr_to_scan: int, lv: Lruvec, sc: ScanControl, lru: int) -> None:
        """Age up to nr_to_scan pages from the active list's tail to the inactive list.
        The pages taken count in NR_ISOLATED_* until move_folios_to_lru puts them back
        (6.1 shrink_active_list), over the scan's cost in the reclaimer's own time."""

        file = is_file_lru(lru)
        vm = self.vmstat
        taken, nr_scanned = self.isolate_lru_pages(nr_to_scan, lv, sc, lru)
        vm["pgrefill"] += nr_scanned
        mc = self.memcg
        if mc is not None and nr_scanned:
            mc.rstat_updated(nr_scanned)  # count_memcg_events(PGREFILL)
        nr_taken = len(taken)
        if nr_taken:
            isolated = "nr_isolated_file" if file else "nr_isolated_anon"
            vm[isolated] += nr_taken
            t0 = sc.t0
            if t0 is None and sc.kswapd:
                t0 = self.now()
            if t0 is not None and (sc.kswapd or len(self.direct_clock) > 1):
                at = t0 + sc.cost + sc.sleep
                self.note_isolated(at, at + nr_scanned * SCAN_COST, nr_taken, file,
                                   KSWAPD_CPU if sc.kswapd else sc.cpu, lv.node.nid)
        sc.cost += nr_scanned * SCAN_COST
        nr_rotated = 0
        deactivated = 0
        for page in taken:
            if page.flags & PG_lru:
                continue  # a THP's subpage: its folio is back with the first one
            if page.flags & PG_mlocked:
                self._putback(page)
                continue
            if page.flags & PG_FOLIO:
                # folio_referenced: the folio's references, once (one young bit a PMD)
                referenced, vm_flags = self.kernel.thp.folio_referenced(page.pfn & ~(HPAGE_PMD_NR - 1))
            else:
                referenced, vm_flags = self._referenced(page)
            if page.flags & PG_mlocked:
                self._putback(page)
                continue
            if referenced and vm_flags & VM_EXEC and file:
                # executable file pages get one more trip round the active list
                nr_rotated += 1
                self._putback(page)
                continue
            page.flags = (page.flags & ~PG_active) | PG_workingset  # we are de-activating
            self._putback(page)
            deactivated += HPAGE_PMD_NR if page.flags & PG_FOLIO else 1  # (move_folios_to_lru: pages)
        vm["pgdeactivate"] += deactivated
        if mc is not None and deactivated:
            mc.rstat_updated(deactivated)  # count_memcg_events(PGDEACTIVATE)
        if nr_taken:
            vm[isolated] -= nr_taken
        # (6.1 notes no cost for rotations here: nr_rotated only goes to the tracepoint)

    # ------------------------------------------------------------------ inactive list
    def too_many_isolated(self, lv: Lruvec, file: bool, sc: ScanControl) -> bool:
        """too_many_isolated (6.1): a direct reclaimer (never kswapd: current_is_kswapd
        returns 0 before anything else) finds more pages of the type isolated
        (NR_ISOLATED_*, node_page_state: by other direct reclaimers, kswapd or
        compaction) than on the inactive list, a eighth of it for a caller with both
        __GFP_IO and __GFP_FS (GFP_NOIO/NOFS callers may isolate more, so that they do
        not deadlock behind normal reclaimers); global reclaim is
        writeback_throttling_sane (cgroup v1 reclaim never finds too many). The inactive
        pages are the node's (every memcg's). Not too many: wake_throttle_isolated, the node's
        reclaimers asleep on VMSCAN_THROTTLE_ISOLATED wake now (`isolated_wakes`, read by
        reclaim_throttle). Other isolators' pages: NR_ISOLATED_* now, and the batches
        that direct reclaimers and compactors on other CPUs, kswapd, kcompactd and
        khugepaged hold on the node at this reclaimer's own time (`isolating`: each call
        runs whole, but a reclaimer's own time runs on from the simulation's now while
        it works, so those on other CPUs overlap)."""
        if sc.kswapd:
            return False
        if sc.target_mem_cgroup is not None and not self.writeback_throttling_sane(sc):
            return False  # cgroup v1 reclaim
        vm = self.vmstat
        isolated = vm["nr_isolated_file" if file else "nr_isolated_anon"]
        if sc.t0 is not None and self.isolating:
            isolated += self._isolated_elsewhere(file, sc, lv.node.nid)
        lru = LRU_INACTIVE_FILE if file else LRU_INACTIVE_ANON
        if self.memcg_tree is None:
            inactive = lv.lists[lru].nr
        else:  # node_page_state(pgdat, NR_INACTIVE_*): every memcg's lruvec on the node
            inactive = sum(m.lists[lru].nr for m in self.node_lruvecs(lv.node.nid))
        if sc.gfp & (G.IO | G.FS) == G.IO | G.FS:
            inactive >>= 3
        if isolated > inactive:
            return True
        if sc.t0 is not None and len(self.direct_clock) > 1:
            # wake_throttle_isolated(pgdat) at this reclaimer's own time: reclaimers on
            # other CPUs sleeping then wake (one CPU: none sleeps while this one runs)
            wakes = self.isolated_wakes
            if len(wakes) >= 256:
                now = self.kernel.env.now
                wakes[:] = [w for w in wakes if w[0] > now]
            wakes.append((sc.t0 + sc.cost + sc.sleep, sc.cpu, lv.node.nid))
        return False

    def _isolated_elsewhere(self, file: bool, sc: ScanControl, nid: int = 0) -> int:
        """Pages of the type that other isolators (direct reclaimers and compactors on
        other CPUs, kswapd, kcompactd) hold isolated on node nid at this reclaimer's own
        time (their batches' intervals, `isolating`)."""
        t = sc.t0 + sc.cost + sc.sleep
        return sum(e[2] for e in self.isolated_batches(t, sc.cpu, nid) if e[3] == file)

    def note_isolated(self, at: float, until: float, n: int, file: bool, cpu: int, nid: int) -> None:
        """A batch of n pages of the type counted in NR_ISOLATED_* on node nid from `at`
        until `until` (its isolator's own time) by `cpu` (KSWAPD_CPU, or compaction's
        KTHREAD_CPU for kcompactd and khugepaged): logged for the isolators on other CPUs
        (`isolating`); a batch back at once is never seen. The log is pruned of the
        intervals over before the simulation's now once it holds 256."""
        if until > at and n:
            log = self.isolating
            if len(log) >= self._isolating_prune_at:
                now = self.kernel.env.now
                log[:] = [e for e in log if e[1] > now]
                # (amortised: own times far ahead of now keep many intervals alive)
                self._isolating_prune_at = max(256, 2 * len(log))
            log.append((at, until, n, file, cpu, nid))

    def isolated_batches(self, t: float, cpu: int, nid: int) -> list:
        """The logged batches of node nid that isolators other than `cpu` hold at time t
        (node_page_state(pgdat, NR_ISOLATED_*) at an isolator's own time, less what the
        simulation's now counts)."""
        # (an isolator's own time is never before now: intervals over before now never
        # match, note_isolated prunes them)
        return [e for e in self.isolating if e[0] <= t < e[1] and e[4] != cpu and e[5] == nid]

    def shrink_inactive_list(self, nr_to_scan: int, lv: Lruvec, sc: ScanControl, lru: int) -> int:
        """shrink_inactive_list (6.1): while too many pages are isolated, sleep once
        (reclaim_throttle VMSCAN_THROTTLE_ISOLATED, HZ/50) and, still too many, give up
        on the list (0 reclaimed); then isolate up to nr_to_scan pages from its tail
        (counted in nr_isolated_anon/file until they are back or freed), shrink them
        (shrink_page_list), note the cost of what was written (lru_note_cost)."""
        vm = self.vmstat
        file = is_file_lru(lru)
        stalled = False
        while self.v6 and self.too_many_isolated(lv, file, sc):
            if stalled:
                return 0
            stalled = True
            self.reclaim_throttle(lv, VMSCAN_THROTTLE_ISOLATED, sc)
        taken, nr_scanned = self.isolate_lru_pages(nr_to_scan, lv, sc, lru)
        if nr_scanned:
            if sc.target_mem_cgroup is None:  # (cgroup reclaim: the memcg's events only)
                vm["pgscan_kswapd" if sc.kswapd else "pgscan_direct"] += nr_scanned
            if lv.memcg is not None and lv.memcg.parent is not None:
                lv.memcg.vmevents["pgscan_kswapd" if sc.kswapd else "pgscan_direct"] += nr_scanned
            vm["pgscan_file" if file else "pgscan_anon"] += nr_scanned
            if self.memcg is not None:
                self.memcg.rstat_updated(nr_scanned)  # count_memcg_events(PGSCAN_*)
            sc.nr_scanned += nr_scanned
            sc.cost += nr_scanned * SCAN_COST
        n = len(taken)
        if not n:
            return 0
        before_pageout = sc.nr_pageout
        before_unqueued = sc.nr_unqueued_dirty
        isolated = "nr_isolated_file" if file else "nr_isolated_anon"
        vm[isolated] += n
        # the batch's own time: from its isolation (the scan's cost, SCAN_COST a page,
        # covers isolating, rmap and freeing) until it is back (move_folios_to_lru):
        # a direct reclaimer's clock, or kswapd's from its pass's start (its pass runs
        # whole at the simulation's now, taking sc.cost)
        t0 = sc.t0
        if t0 is None and sc.kswapd:
            t0 = self.now()
        if t0 is not None:
            at = t0 + sc.cost + sc.sleep - nr_scanned * SCAN_COST
        reclaimed = self.shrink_page_list(taken, sc)
        vm[isolated] -= n
        if t0 is not None:
            # isolated from `at` until the batch is back: direct reclaimers on other
            # CPUs at their own time meanwhile find them isolated (kswapd's: any CPU's)
            if sc.kswapd or len(self.direct_clock) > 1:
                self.note_isolated(at, t0 + sc.cost + sc.sleep, n, file,
                                   KSWAPD_CPU if sc.kswapd else sc.cpu, lv.node.nid)
        if sc.target_mem_cgroup is None:
            vm["pgsteal_kswapd" if sc.kswapd else "pgsteal_direct"] += reclaimed
        if lv.memcg is not None and lv.memcg.parent is not None:
            lv.memcg.vmevents["pgsteal_kswapd" if sc.kswapd else "pgsteal_direct"] += reclaimed
        vm["pgsteal_file" if file else "pgsteal_anon"] += reclaimed
        if self.memcg is not None and reclaimed:
            self.memcg.rstat_updated(reclaimed)  # count_memcg_events(PGSTEAL_*)
        self.lru_note_cost(lv, file, sc.nr_pageout - before_pageout)
        if self.v6:
            # every page taken was dirty and not yet queued for writeback: the flusher
            # is behind, wake it (writeback_throttling_sane: global reclaim does not
            # throttle here)
            if sc.nr_unqueued_dirty - before_unqueued == n:
                self.wakeup_flusher_threads()
                if not self.writeback_throttling_sane(sc):
                    # cgroup v1: throttled here, then waits on writeback in
                    # shrink_folio_list
                    self.reclaim_throttle(lv, VMSCAN_THROTTLE_WRITEBACK, sc)
            sc.nr_taken += n
            if file:
                sc.nr_file_taken += n
        return reclaimed

    def shrink_page_list(self, pages: list, sc: ScanControl, ignore_references: bool = False) -> int:
        """shrink_folio_list: decide, unmap, write or free each isolated page."""
        k = self.kernel
        swap = self.swap
        reclaimed = 0
        writes: dict[int, tuple[object, list]] = {}  # id(queue) -> (queue, pages)
        gfp = sc.gfp
        thp_done = None  # pfns written with their THP (whole-THP swap-out)
        folio_refs = None  # head pfn -> the THP's verdict (check_folio_references)
        v6 = self.v6
        for page in pages:
            if thp_done is not None and page.pfn in thp_done:
                continue
            if page.flags & PG_lru:
                # back on a list already: a THP's subpage whose folio an earlier subpage
                # put back (one folio, one verdict), or a page its folio's split left there
                continue
            if not page._count:
                # freed meanwhile: a write we waited for (same request) ended its last use
                reclaimed += 1
                continue
            f = page.flags
            if f & PG_mlocked:
                self._putback(page)
                continue
            if not f & PG_swapbacked:
                # folio_check_dirty_writeback: file pages only (anon and lazily freed
                # ones count neither)
                if f & (PG_dirty | PG_writeback):
                    sc.nr_dirty += 1
                    if not f & PG_writeback:
                        sc.nr_unqueued_dirty += 1
                    elif f & PG_reclaim:
                        sc.nr_congested += 1
            if f & PG_writeback and v6:
                # Case 1: kswapd meeting a page it marked before on a node whose taken
                # pages were all under writeback counts it immediate (and throttles
                # after the list). Case 2: reclaim that is writeback_throttling_sane
                # (global, cgroup v2), a page not marked PG_reclaim, or one it may not
                # write (may_enter_fs): marked for immediate reclaim. Both activate it
                # out of the way. Case 3: cgroup v1 reclaim meeting a page marked
                # PG_reclaim: folio_wait_writeback (its sleep sends the task's plug),
                # then the same page again from the list's tail.
                if sc.kswapd and f & PG_reclaim and self.lruvec_of(page).pgdat_writeback:
                    sc.nr_immediate += 1
                elif (sc.target_mem_cgroup is None or self.writeback_throttling_sane(sc)
                      or not f & PG_reclaim or f & PG_FOLIO
                      or not self._may_enter_fs(page, gfp)):
                    page.flags = f | PG_reclaim
                    sc.nr_writeback += 1
                elif self._wait_on_writeback(page, sc):
                    pages.append(page)  # list_add_tail(&folio->lru, folio_list)
                    continue
                self._activate_isolated(page)
                continue
            if f & PG_writeback:
                sc.nr_writeback += 1
                if sc.sync_io and sc.priority < DEF_PRIORITY - 2 and self._wait_on_writeback(page, sc):
                    # the write finished while we waited: the page is clean now, or freed
                    # if the write held its last reference (its owner unmapped or dropped
                    # it meanwhile; hvsim's isolation takes no reference of its own, so
                    # ending the write freed it). A freed page is on a free list: never
                    # touch it again; it was reclaimed (Linux frees the orphan the same
                    # way once its write is done).
                    if not page._count:
                        reclaimed += 1
                        continue
                else:
                    page.flags |= PG_reclaim
                    self._putback(page)
                    continue
            if ignore_references:
                ref = PAGEREF_RECLAIM
            elif f & PG_FOLIO:
                if folio_refs is None:
                    folio_refs = {}
                ref = self.check_folio_references(page, folio_refs)
            else:
                ref = self.check_references(page)
            if page.flags & PG_mlocked:
                self._putback(page)
                continue
            if ref == PAGEREF_ACTIVATE:
                self._activate_isolated(page)
                continue
            if ref == PAGEREF_KEEP:
                self._putback(page)
                continue
            f = page.flags
            if f & PG_thpfile and not f & PG_swapbacked:
                # a regular file's THP (READ_ONLY_THP_FOR_FS): unmapped and removed whole
                if thp_done is None:
                    thp_done = set()
                reclaimed += self._reclaim_file_folio(page, sc, thp_done)
                continue
            anon = f & PG_swapbacked
            # shmem (swap-backed, of a mapping): no slot here; pageout's shmem_writepage
            shmem = anon and not f & (PG_anon | PG_swapcache)
            if shmem and f & PG_thpfile:
                # "Split shmem folio" (6.1 shrink_folio_list, split_folio_to_list onto
                # reclaim's list): this head goes on as an order-0 page, its tails
                # (after it in `pages`, isolated) make their own pass
                k.thp.shmem_split(page)
            if anon and not f & PG_swapcache and not shmem:
                if f & PG_thp and sc.may_swap and gfp & G.IO:
                    # a THP: swapped out whole with a swap cluster, else split first
                    folio = k.thp.add_to_swap_folio(swap, page)
                    if folio is not None:
                        if thp_done is None:
                            thp_done = set()
                        self._swap_out_thp(folio, sc, writes, thp_done)
                        continue
                if not sc.may_swap or not gfp & G.IO or not swap.add_to_swap(page):
                    # no swap: back to active
                    self._activate_isolated(page)
                    continue
            if page._mapcount >= 0:
                if anon and not page.flags & PG_dirty and self._anon_pte_dirty(page):
                    page.flags |= PG_dirty
                if not sc.may_unmap or not mem.try_to_unmap(
                        k, page, page.private if anon else None):
                    if page.flags & PG_mlocked:
                        self._putback(page)
                    else:
                        self._activate_isolated(page)
                    continue
            if page.flags & PG_dirty:
                if v6 and not anon and not (sc.kswapd and page.flags & PG_reclaim
                                            and self.lruvec_of(page).pgdat_dirty):
                    # 6.x: only kswapd writes a dirty file page, and only one it marked
                    # PG_reclaim before on a node whose inactive file tail is all dirty
                    # (PGDAT_DIRTY); otherwise the flusher will: mark it for immediate
                    # reclaim and activate it (its write's end rotates it back)
                    self.vmstat["nr_vmscan_immediate_reclaim"] += 1
                    page.flags |= PG_reclaim
                    self._activate_isolated(page)
                    continue
                if ref == PAGEREF_RECLAIM_CLEAN or not sc.may_writepage:
                    self._putback(page)
                    continue
                if (not anon or shmem) and not gfp & G.FS or anon and not gfp & G.IO:
                    page.flags |= PG_reclaim  # (may_enter_fs: shmem needs __GFP_FS)
                    self._putback(page)
                    continue
                if shmem and not swap.shmem_writepage(page):
                    # SHM_LOCK'd, no swap or swap full: redirty, AOP_WRITEPAGE_ACTIVATE
                    self._activate_isolated(page)
                    continue
                q = self._start_writeback(page, sc)
                sc.nr_pageout += 1
                self.vmstat["nr_vmscan_write"] += 1
                ent = writes.get(id(q))
                if ent is None:
                    writes[id(q)] = (q, [page])
                else:
                    ent[1].append(page)
                continue
            if self._free_isolated(page):
                reclaimed += 1
            else:
                self._putback(page)
        for q, batch in writes.values():
            reclaimed += self._submit(q, batch, sc)
        return reclaimed

    def _reclaim_file_folio(self, page, sc: ScanControl, done: set) -> int:
        """shrink_folio_list for a clean regular-file THP (6.1): try_to_unmap with
        TTU_SPLIT_HUGE_PMD over every subpage (PMD mappings cleared, PTEs dropped), then
        __remove_mapping of the whole folio, its refcount frozen at the cache's: one
        shadow entry (workingset_eviction ageing the lruvec by 512) in its 512 slots, the
        folio freed as one order-9 block. Returns the pages reclaimed (512, or 0: an
        mlocked or busy folio goes back)."""
        k = self.kernel
        folio = k.thp.shmem_folio_of(page.pfn)
        subs = self._folio_pages(folio)
        for p in subs:
            done.add(p.pfn)
        for p in subs:
            if p._mapcount >= 0 and (not sc.may_unmap or not mem.try_to_unmap(k, p)):
                if p.flags & PG_mlocked:
                    self._putback(p)
                else:
                    self._activate_isolated(p)
                return 0
        if any(p._count != 1 or p.flags & (PG_dirty | PG_writeback) for p in subs):
            self._putback(page)  # (folio_ref_freeze failed: someone holds it)
            return 0
        vm = self.vmstat
        for p in subs:
            page_restate(vm, p)
            page_leave(vm, p, True)
        ws = self.workingset
        shadow = ws.eviction(subs[0], self.lruvec_of(subs[0]), HPAGE_PMD_NR) if ws is not None else None
        k.thp.remove_file_folio(folio, shadow)
        return HPAGE_PMD_NR

    def _swap_out_thp(self, folio: list, sc: ScanControl, writes: dict, done: set) -> None:
        """shrink_folio_list for a THP in the swap cache whole (6.1): its subpages still
        on the LRU are isolated with it, try_to_unmap splits its PMD and turns every PTE
        into the subpage's swap entry, and pageout writes the 512 pages in one request
        (thp_swpout; pswpout counts the pages). Pages that stay mapped (mlocked) go back
        with the rest of the folio, which stays in the swap cache."""
        k = self.kernel
        for p in folio:
            done.add(p.pfn)
            if p.flags & PG_lru:
                self._isolate(p, page_lru(p))
        for p in folio:
            if p._mapcount >= 0 and (not sc.may_unmap or not mem.try_to_unmap(k, p, p.private)):
                for q in folio:
                    if q.flags & PG_mlocked:
                        self._putback(q)
                    else:
                        self._activate_isolated(q)
                return
        if not sc.may_writepage:
            for p in folio:
                self._putback(p)
            return
        q = None
        for p in folio:
            q = self._start_writeback(p, sc)
        sc.nr_pageout += len(folio)
        ent = writes.get(id(q))
        if ent is None:
            writes[id(q)] = (q, list(folio))
        else:
            ent[1].extend(folio)
        self.vmstat["thp_swpout"] += 1

    def _activate_isolated(self, page) -> None:
        if page.flags & PG_lru:
            return  # a THP's subpage whose folio is back already
        if not page.flags & PG_mlocked:
            page.flags |= PG_active
            # (a THP's subpage activates its folio: PGACTIVATE counts its nr_pages)
            n = HPAGE_PMD_NR if page.flags & PG_FOLIO else 1
            self.vmstat["pgactivate"] += n
            if self.memcg is not None:
                self.memcg.rstat_updated(n)  # shrink_folio_list: PGACTIVATE
        self._putback(page)

    def _free_isolated(self, page) -> bool:
        """__remove_mapping + free: a clean, unmapped page whose only reference is its
        cache's. Counts the course's arc 9."""
        f = page.flags
        if (f & PG_anon and not f & (PG_swapbacked | PG_swapcache | PG_dirty | PG_writeback)
                and page._mapcount == -1 and page._count == 0):
            # a lazily freed page (MADV_FREE, or VM_DROPPABLE) that try_to_unmap dropped:
            # freed without I/O (shrink_folio_list, PGLAZYFREED)
            self.vmstat["pglazyfreed"] += 1
            if self.memcg is not None:
                self.memcg.rstat_updated(1)  # count_memcg_folio_events(PGLAZYFREED)
            page_restate(self.vmstat, page)
            page_leave(self.vmstat, page, True)
            # try_to_unmap put the mappings' references: the page is held by nothing
            # but this isolation (Linux's isolation reference, which the free drops)
            page._count = 1
            free_user_page(self.kernel, page)
            return True
        if page._mapcount != -1 or page._count != 1 or page.flags & (PG_dirty | PG_writeback):
            return False
        vm = self.vmstat
        ws = self.workingset
        if f & PG_swapcache:
            page_restate(vm, page)
            page_leave(vm, page, True)
            shadow = ws.eviction(page, self.lruvec_of(page)) if ws is not None else None
            self.swap.delete_from_swap_cache(page, shadow)
            self.swap._free_page(page)
            return True
        mapping = page.mapping
        if mapping is None or f & PG_anon or mapping.pages.get(page.index) is not page:
            return False
        page_restate(vm, page)
        page_leave(vm, page, True)
        shadow = None
        if ws is not None and not f & PG_swapbacked:  # folio_is_file_lru
            shadow = ws.eviction(page, self.lruvec_of(page))
        delete_from_page_cache(self.kernel, page, shadow)
        return True

    # ------------------------------------------------------------------ writeback
    def _queue_for(self, page):
        if page.flags & PG_swapbacked:
            return self.swap.si.queue
        fs = page.mapping.host.fs
        q = self.disk_queues.get(id(fs))
        if q is None:
            q = self.disk_queues[id(fs)] = self._guest_queue(self.kernel, fs.latency, fs.bandwidth)
        return q

    def _start_writeback(self, page, sc: ScanControl | None):
        """Set PG_writeback, copy the data to swap or the file, take a reference for the
        I/O. Counts arc 4 for an inactive page. Returns the device queue. Reading the page
        may cost time beneath the guest (a host that swapped it out: double paging); that
        goes to the reclaimer (sc.cost) or, for the flusher, kernel.stall."""
        touch = self.kernel.phys.touch(page.pfn, False)
        if touch:
            if sc is not None:
                sc.cost += touch
            else:
                self.kernel.stall += touch
        vm = self.vmstat
        # NOTE: the page's state is counted once the write has started (dirty -> being
        # written), not in between (the copy clears PG_dirty before PG_writeback is set)
        f = page.flags
        page.flags = f & ~PGSTATE_MASK
        if f & PG_swapbacked:
            self.swap.swap_writepage(page)
        else:
            writepage(self.kernel, page)  # copies to the inode, clears dirty, pgpgout
            vm["pgwriteback_file"] += 1
            self.wb_writeback += 1
        page.flags |= PG_writeback | (f & PGSTATE_MASK)
        page._count += 1
        vm["nr_writeback"] += 1
        if self.memcg is not None:
            self.memcg.rstat_updated(1)  # __folio_start_writeback: NR_WRITEBACK
        page_restate(vm, page)
        return self._queue_for(page)

    def _submit(self, q, batch: list, sc: ScanControl | None) -> int:
        """Send one write request. Synchronous (sc.sync_io or no env): the request
        completes now, its time goes to sc.cost (or kernel.stall), and the pages written
        for reclaim are freed; returns how many. Asynchronous: pages go back to the
        inactive list with PG_reclaim until the IOCompletion daemon ends the request."""
        now = self.now()
        at = now
        if now is not None and sc is not None and not sc.sync_io:
            # the reclaimer's own time: a direct reclaimer's clock, or kswapd's pass
            # after its sleeps so far
            at = sc.t0 + sc.cost + sc.sleep if sc.t0 is not None else now + sc.sleep
        sync = now is None or (sc is not None and sc.sync_io)
        plug = getattr(self.kernel, "plug", None)
        if not sync and plug is not None:
            return self._submit_plugged(plug, q, batch, sc, at)
        done = q.submit(len(batch), at)
        if not sync:
            self._blocked(q, sc)
            for page in batch:
                if sc is not None:  # written for reclaim: free it as soon as it is clean
                    page.flags |= PG_reclaim
                if not page.flags & PG_lru:
                    self._putback(page)
            b = IOBatch(done, batch, q, sc is not None)
            if sc is not None:
                self.reclaim_inflight += len(batch)
            self.inflight.append(b)
            for page in batch:
                self.inflight_by_page[page.pfn] = b
            if self.on_io_submit is not None:
                self.on_io_submit(b)
            return 0
        wait = done - now if now is not None else done
        if sc is not None:
            sc.cost += wait
            sc.io_wait += wait
        else:
            self.kernel.stall += wait
        freed = 0
        for page in batch:
            if self._end_writeback(page):
                continue
            if not page.flags & PG_lru:
                if sc is not None and self._free_isolated(page):
                    freed += 1
                else:
                    self._putback(page)
        return freed

    def _blocked(self, q, sc: ScanControl | None) -> None:
        blocked = getattr(q, "blocked", 0.0)
        if blocked and sc is not None:
            # every tag taken (nr_requests requests in flight): the reclaimer slept in
            # blk_mq_get_tag until the oldest request completed (its vCPU free)
            sc.sleep += blocked
            self.vmstat["nr_requests_blocked"] += 1

    def _submit_plugged(self, plug: BlkPlug, q, batch: list, sc: ScanControl | None,
                        at: float | None) -> int:
        """_submit under the task's block plug (6.x, on a clock): each page's bio goes to
        the plug (blk_mq_submit_bio: merged into a held request or a new one, which may
        first send what the plug holds); its pages are under writeback, in flight with
        the request, which ends only once the plug sends it (_issue_write)."""
        for_reclaim = sc is not None
        byp = self.inflight_by_page
        inflight = self.inflight
        for page in batch:
            if for_reclaim:  # written for reclaim: free it as soon as it is clean
                page.flags |= PG_reclaim
            if not page.flags & PG_lru:
                self._putback(page)
            rq, new = plug.submit_bio(q, REQ_OP_WRITE, page, for_reclaim, self._issue_write,
                                      at, sc)
            if new:
                inflight.append(rq)
            byp[page.pfn] = rq
        if for_reclaim:
            self.reclaim_inflight += len(batch)
        return 0

    def _issue_write(self, rq, at: float | None) -> None:
        """A plugged write request sent to its device at `at` (the task's time): it ends
        when the device completes it."""
        if at is None:
            at = self.now()
        q = rq.queue
        rq.done_at = q.submit(len(rq.pages), at)
        self._blocked(q, rq.owner)
        if self.on_io_submit is not None:
            self.on_io_submit(rq)

    def _reclaimer_time(self, sc: ScanControl) -> float | None:
        """The reclaimer's own time: a direct reclaimer's clock, or now plus its sleeps
        (kswapd's pass)."""
        now = self.now()
        if now is None:
            return None
        return sc.t0 + sc.cost + sc.sleep if sc.t0 is not None else now + sc.sleep

    def _end_writeback(self, page) -> bool:
        """end_page_writeback: clear PG_writeback (arc 6 for an inactive page); a page
        marked PG_reclaim is rotated to the inactive tail (folio_rotate_reclaimable: if
        clean, evictable and on the LRU; 6.x deactivates an active one on the way, the
        pages reclaim activated while marking them for immediate reclaim; 2.6.24's
        rotate_reclaimable_page leaves an active page alone); drop the I/O's reference.
        Returns True if that freed the page (its owners let go during the write)."""
        f = page.flags & ~PG_writeback
        page.flags = f
        vm = self.vmstat
        vm["nr_writeback"] -= 1
        if self.memcg is not None:
            self.memcg.rstat_updated(1)  # __folio_end_writeback: NR_WRITEBACK
        vm["nr_written"] += 1
        if not f & PG_swapbacked:  # __folio_end_writeback: the wb's WB_WRITTEN
            self.wb_written += 1
            self.wb_writeback -= 1
        page_restate(vm, page)
        f = page.flags
        if f & PG_reclaim:
            f &= ~PG_reclaim
            page.flags = f
            if f & PG_thp and f & PG_lru and not f & (PG_unevictable | PG_dirty):
                # folio_rotate_reclaimable: the folio's entry to the inactive tail once
                # (lru_move_tail_fn: PGROTATED counts its pages)
                folio = self._folio(page)
                self._folio_unlink(folio)
                for p in self._folio_pages(folio):
                    p.flags &= ~(PG_active | PG_reclaim)
                    page_restate(vm, p)
                self._folio_link(folio, page_lru(page), True)
                vm["pgrotated"] += HPAGE_PMD_NR
            elif (f & PG_lru and not f & (PG_unevictable | PG_dirty | PG_thp)
                    and (self.v6 or not f & PG_active)):
                lru = page_lru(page)
                lv = self.lruvec_of(page)
                lv.lists[lru].remove(page)
                if f & PG_active:
                    vm[LRU_VMSTAT[lru]] -= 1
                    page.flags = f & ~PG_active
                    lru -= 1
                    vm[LRU_VMSTAT[lru]] += 1
                    page_restate(vm, page)
                lv.lists[lru].add_tail(page)
                vm["pgrotated"] += 1
        if page._count == 1:
            # the I/O held the last reference: the page was truncated or unmapped and
            # dropped from its cache meanwhile
            if page.flags & PG_swapcache:
                self.swap.delete_from_swap_cache(page)
            free_user_page(self.kernel, page)
            return True
        page._count -= 1
        if (page._count == 1 and page._mapcount == -1 and page.flags & PG_swapcache
                and not self.swap.swap_count(page.private)):
            # only the swap cache holds it and no swap PTE refers to its slot (swap_free
            # left it alone while it was being written)
            self.swap.delete_from_swap_cache(page)
            free_user_page(self.kernel, page)
            return True
        return False

    def complete_io(self, now: float | None = None) -> int:
        """End every request whose completion time has passed (all of them without a
        clock). Returns the pages ended."""
        if not self.inflight:
            return 0
        if now is None:
            now = self.now()
        due = [b for b in self.inflight if now is None or b.done_at <= now]
        n = 0
        for b in due:
            self.inflight.remove(b)
            n += self._end_batch(b)
        return n

    def _end_batch(self, b: IOBatch) -> int:
        if b.for_reclaim:
            self.reclaim_inflight -= len(b.pages)
        byp = self.inflight_by_page
        busy = self.wb_writeback
        for page in b.pages:
            byp.pop(page.pfn, None)
            self._end_writeback(page)
        if busy and not self.wb_writeback:  # wb_inode_writeback_end: queue bw_dwork
            self.bw_dwork_at = b.done_at + BANDWIDTH_INTERVAL / HZ
        return len(b.pages)

    def next_completion(self) -> float | None:
        return min((b.done_at for b in self.inflight), default=None)

    @staticmethod
    def _may_enter_fs(page, gfp: int) -> bool:
        """may_enter_fs (6.1): __GFP_FS, or a swap-cache page and __GFP_IO (the swap
        device is a block device, not SWP_FS_OPS)."""
        if gfp & G.FS:
            return True
        return bool(page.flags & PG_swapcache and gfp & G.IO)

    def _wait_on_writeback(self, page, sc: ScanControl) -> bool:
        """Direct reclaim under pressure waits for a page's write (wait_on_page_writeback):
        the request completes now and the reclaimer stalls until its completion time.
        Returns True if the page is no longer under writeback; ending the request may
        have freed it (_count 0) when the write held its last reference."""
        b = self.inflight_by_page.get(page.pfn)
        if b is None:
            return False
        now = self.now()
        if getattr(self.kernel, "plug", None) is not None:
            # folio_wait_writeback sleeps in io_schedule: schedule() sends the plug first
            blk_flush_plug(self.kernel, self._reclaimer_time(sc))
        if sc.t0 is not None:
            now = sc.t0 + sc.cost + sc.sleep  # a direct reclaimer's own time
        if now is not None and b.done_at > now:
            sc.cost += b.done_at - now
            sc.io_wait += b.done_at - now
        self.inflight.remove(b)
        self._end_batch(b)
        return not page.flags & PG_writeback

    # ------------------------------------------------------------------ node reclaim
    def _prepare_scan(self, lv: Lruvec, sc: ScanControl) -> None:
        """prepare_scan_count: deactivate a type whose inactive list is low, or (6.x) that
        saw workingset activations since reclaim last ended (a new workingset is being
        established: get rid of stale active pages quickly)."""
        st = lv.stat
        if st is not None:
            # 6.1: mem_cgroup_flush_stats (6.8+: ..._ratelimited), then the flushed values
            self.memcg.prepare_scan_count_flush()
            activate = st[ST_ACTIVATE_ANON], st[ST_ACTIVATE_FILE]
            inactive_file = st[LRU_INACTIVE_FILE]
        else:
            activate = lv.activate
            inactive_file = lv.lists[LRU_INACTIVE_FILE].nr
        sc.anon_cost = lv.anon_cost
        sc.file_cost = lv.file_cost
        sc.may_deactivate = 0
        if activate[0] != lv.refaults[0] or self.inactive_is_low(lv, LRU_INACTIVE_ANON):
            sc.may_deactivate |= DEACTIVATE_ANON
        if activate[1] != lv.refaults[1] or self.inactive_is_low(lv, LRU_INACTIVE_FILE):
            sc.may_deactivate |= DEACTIVATE_FILE
        sc.cache_trim_mode = bool(
            inactive_file >> sc.priority and not sc.may_deactivate & DEACTIVATE_FILE
        )
        if sc.target_mem_cgroup is not None:
            return  # file_is_tiny: global reclaim only
        # (file_is_tiny reads the node's counters, exact)
        node = lv.node
        free = sum(z.nr_free for z in node.zones if z.populated())
        high = sum(z.high_wmark() for z in node.zones if z.populated())
        if self.memcg_tree is None:
            file = lv.lists[LRU_ACTIVE_FILE].nr + lv.lists[LRU_INACTIVE_FILE].nr
            anon = lv.lists[LRU_INACTIVE_ANON].nr
        else:  # the node's counters: every memcg's lruvec
            lvs = self.node_lruvecs(node.nid)
            file = sum(m.lists[LRU_ACTIVE_FILE].nr + m.lists[LRU_INACTIVE_FILE].nr for m in lvs)
            anon = sum(m.lists[LRU_INACTIVE_ANON].nr for m in lvs)
        sc.file_is_tiny = bool(
            file + free <= high and not sc.may_deactivate & DEACTIVATE_ANON and anon >> sc.priority
        )

    def shrink_lruvec(self, lv: Lruvec, sc: ScanControl) -> None:
        if self.v6:
            self._shrink_lruvec_6x(lv, sc)
            return
        nr = self.get_scan_count(lv, sc)
        nr_to_reclaim = sc.nr_to_reclaim
        reclaimed = 0
        while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
            for lru in EVICTABLE_LRUS:
                if nr[lru]:
                    n = min(nr[lru], SWAP_CLUSTER_MAX)
                    nr[lru] -= n
                    if lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE):
                        kind = DEACTIVATE_FILE if is_file_lru(lru) else DEACTIVATE_ANON
                        if sc.may_deactivate & kind:
                            self.shrink_active_list(n, lv, sc, lru)
                    else:
                        reclaimed += self.shrink_inactive_list(n, lv, sc, lru)
            done = reclaimed + sc.nr_reclaimed
            if not sc.sync_io:
                done += sc.nr_pageout  # asynchronous writes: freed when they end
            if done >= nr_to_reclaim:
                break
        sc.nr_reclaimed += reclaimed
        # keep the anon inactive list filled even while only file pages are reclaimed
        if self.can_reclaim_anon() and self.inactive_is_low(lv, LRU_INACTIVE_ANON):
            self.shrink_active_list(SWAP_CLUSTER_MAX, lv, sc, LRU_ACTIVE_ANON)

    def _shrink_lruvec_6x(self, lv: Lruvec, sc: ScanControl) -> None:
        """6.1 shrink_lruvec: the lists' scan targets in SWAP_CLUSTER_MAX batches, in
        list order, until this call has reclaimed sc.nr_to_reclaim (direct reclaim at
        DEF_PRIORITY scans its whole targets: proportional_reclaim); then the type with
        less left stops and the other's remaining targets shrink to the share of its own
        target not yet scanned by the other (so both end proportionally), which ends the
        loop at the next check. The anon inactive list is then topped up if low. (hvsim:
        kswapd counts the pages it started writing as reclaimed: it waits for them rather
        than writing more.)"""
        nr = self.get_scan_count(lv, sc)
        targets = list(nr)
        nr_to_reclaim = sc.nr_to_reclaim
        proportional = (not sc.kswapd and sc.priority == DEF_PRIORITY
                        and sc.target_mem_cgroup is None)
        reclaimed = 0
        pageout0 = sc.nr_pageout
        plug = blk_start_plug(self.kernel)  # around the LRU loop (6.1)
        while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
            for lru in EVICTABLE_LRUS:
                if nr[lru]:
                    n = min(nr[lru], SWAP_CLUSTER_MAX)
                    nr[lru] -= n
                    if lru == LRU_ACTIVE_ANON or lru == LRU_ACTIVE_FILE:
                        if sc.may_deactivate & (DEACTIVATE_FILE if lru == LRU_ACTIVE_FILE
                                                else DEACTIVATE_ANON):
                            self.shrink_active_list(n, lv, sc, lru)
                    else:
                        reclaimed += self.shrink_inactive_list(n, lv, sc, lru)
            if sc.t0 is not None and self.inflight:
                # the device ends writes while a direct reclaimer works on (their
                # folio_end_writeback runs from the completion interrupt, not at the end
                # of the pass): their pages rotate to the inactive tail for its next batch
                self.complete_io(sc.t0 + sc.cost + sc.sleep)
            done = reclaimed
            if sc.kswapd:
                done += sc.nr_pageout - pageout0
            if done < nr_to_reclaim or proportional:
                continue
            nr_file = nr[LRU_INACTIVE_FILE] + nr[LRU_ACTIVE_FILE]
            nr_anon = nr[LRU_INACTIVE_ANON] + nr[LRU_ACTIVE_ANON]
            if not nr_file or not nr_anon:
                break
            if nr_file > nr_anon:
                scan_target = targets[LRU_INACTIVE_ANON] + targets[LRU_ACTIVE_ANON] + 1
                stop = LRU_INACTIVE_ANON
                percentage = nr_anon * 100 // scan_target
            else:
                scan_target = targets[LRU_INACTIVE_FILE] + targets[LRU_ACTIVE_FILE] + 1
                stop = LRU_INACTIVE_FILE
                percentage = nr_file * 100 // scan_target
            nr[stop] = nr[stop + 1] = 0
            other = LRU_INACTIVE_FILE if stop == LRU_INACTIVE_ANON else LRU_INACTIVE_ANON
            for lru in (other, other + 1):
                nr_scanned = targets[lru] - nr[lru]
                nr[lru] = targets[lru] * (100 - percentage) // 100
                nr[lru] -= min(nr[lru], nr_scanned)
        if plug is not None:
            blk_finish_plug(self.kernel, plug, self._reclaimer_time(sc))
        sc.nr_reclaimed += reclaimed
        # can_age_anon_pages: swap is present
        if self.swap.total_swap_pages() > 0 and self.inactive_is_low(lv, LRU_INACTIVE_ANON):
            self.shrink_active_list(SWAP_CLUSTER_MAX, lv, sc, LRU_ACTIVE_ANON)

    @staticmethod
    def page_evictable(page) -> bool:
        """folio_evictable: not mlocked, and not of an unevictable mapping (SHM_LOCK)."""
        f = page.flags
        if f & PG_mlocked:
            return False
        return f & PG_anon or page.mapping is None or not page.mapping.unevictable

    def check_move_unevictable(self, pages: list) -> int:
        """check_move_unevictable_folios (SHM_UNLOCK): each page on the unevictable list
        that is evictable now goes back to its inactive list. Counts
        unevictable_pgs_scanned and unevictable_pgs_rescued. Returns pages moved."""
        vm = self.vmstat
        moved = 0
        for page in pages:
            vm["unevictable_pgs_scanned"] += 1
            f = page.flags
            if not f & PG_lru or not f & PG_unevictable or not self.page_evictable(page):
                continue
            self._isolate(page, LRU_UNEVICTABLE)
            moved += HPAGE_PMD_NR if f & PG_FOLIO else 1
            page.flags &= ~(PG_unevictable | PG_active)
            self._putback(page)  # (a THP: the folio, by this page's flags)
        vm["unevictable_pgs_rescued"] += moved
        return moved

    def rescue_unevictable(self, lv: Lruvec) -> int:
        """check_move_unevictable_folios: pages no longer mlocked go back to inactive."""
        lst = lv.lists[LRU_UNEVICTABLE]
        moved = 0
        entries = []
        for p in lst:
            if p.flags & PG_FOLIO:  # a THP's entry: judged by a subpage in use
                pages = self._folio_pages(self._folio(p))
                p = pages[0] if pages else p
            if self.page_evictable(p):
                entries.append(p)
        for page in entries:
            self._isolate(page, LRU_UNEVICTABLE)
            page.flags &= ~PG_unevictable
            self._putback(page)
            moved += folio_nr_pages(page)
        self.vmstat["unevictable_pgs_rescued"] += moved
        return moved

    def shrink_node(self, lv: Lruvec, sc: ScanControl) -> None:
        """shrink_node: `lv` is the target lruvec (the target memcg's on the node: the
        root's for global reclaim); with child memcgs, shrink_node_memcgs."""
        t = self.memcg_tree
        if t is None:
            if lv.lists[LRU_UNEVICTABLE].nr and sc.priority == DEF_PRIORITY:
                self.rescue_unevictable(lv)
        elif sc.priority == DEF_PRIORITY:
            for mlv in self._memcg_lruvecs(lv, sc):
                if mlv.lists[LRU_UNEVICTABLE].nr:
                    self.rescue_unevictable(mlv)
        # memset(&sc->nr, 0, sizeof(sc->nr))
        sc.nr_dirty = sc.nr_unqueued_dirty = sc.nr_congested = sc.nr_immediate = 0
        sc.nr_writeback = sc.nr_taken = sc.nr_file_taken = 0
        self._prepare_scan(lv, sc)
        before = sc.nr_reclaimed
        if t is None:
            self.shrink_lruvec(lv, sc)
            self.shrink_slab(lv, sc)
        else:
            self.shrink_node_memcgs(lv, sc)
        if self.v6:
            self._shrink_node_writeback(lv, sc)
        if sc.nr_reclaimed > before:
            lv.node.kswapd_failures = 0  # the node is reclaimable again

    def _memcg_lruvecs(self, lv: Lruvec, sc: ScanControl) -> list:
        """The lruvecs of the node of each memcg mem_cgroup_iter(target) visits."""
        target = sc.target_mem_cgroup or self.memcg_tree.root
        nid = lv.node.nid
        return [m.lruvec(nid) for m in target.iter()]

    def shrink_node_memcgs(self, lv: Lruvec, sc: ScanControl) -> None:
        """shrink_node_memcgs (6.1): every memcg of the target's subtree in
        mem_cgroup_iter order (the target first, pre-order), its lruvec of the node
        shrunk, then shrink_slab(gfp, nid, memcg, priority): the root's pass runs every
        shrinker on the root's lists, a child's only the memcg-aware shrinkers with its
        objects (shrink_slab_memcg: its dentries and inodes). Protection
        (mem_cgroup_calculate_protection): a memcg below its effective memory.min is
        skipped; below memory.low, skipped too (memcg_low_skipped) unless this is the
        retry that overrides it (memcg_low_reclaim: MEMCG_LOW counted)."""
        t = self.memcg_tree
        root = t.root
        target = sc.target_mem_cgroup
        for mlv in self._memcg_lruvecs(lv, sc):
            m = mlv.memcg
            if m is not root:
                t.calculate_protection(target, m)
                if t.below_min(m):
                    continue
                if t.below_low(m):
                    if not sc.memcg_low_reclaim:
                        sc.memcg_low_skipped = True
                        continue
                    m.memory_event("low")
            self.shrink_lruvec(mlv, sc)
            self.shrink_slab(mlv, sc, m)

    def _shrink_node_writeback(self, lv: Lruvec, sc: ScanControl) -> None:
        """6.1 shrink_node after the lists: kswapd flags the node PGDAT_WRITEBACK when
        every page it took was under writeback, PGDAT_DIRTY when every file page it took
        was dirty and unqueued (kswapd may then write those it meets again), and the
        lruvec congested when every dirty page was already marked for immediate
        reclaim; kswapd meeting such pages again (nr_immediate) throttles on writeback;
        a direct reclaimer throttles on a congested lruvec."""
        if sc.target_mem_cgroup is not None:
            # cgroup reclaim: LRUVEC_CONGESTED of the target lruvec when
            # writeback_throttling_sane (v2); v1 stalls on writeback instead
            if (self.writeback_throttling_sane(sc) and sc.nr_dirty
                    and sc.nr_dirty == sc.nr_congested):
                lv.congested = True
            if lv.congested:
                self.reclaim_throttle(lv, VMSCAN_THROTTLE_CONGESTED, sc)
            return
        if sc.kswapd:
            if sc.nr_writeback and sc.nr_writeback == sc.nr_taken:
                lv.pgdat_writeback = True
            if sc.nr_unqueued_dirty == sc.nr_file_taken:
                lv.pgdat_dirty = True
            if sc.nr_immediate:
                self.reclaim_throttle(lv, VMSCAN_THROTTLE_WRITEBACK, sc)
            if sc.nr_dirty and sc.nr_dirty == sc.nr_congested:
                lv.congested = True
        elif lv.congested:
            self.reclaim_throttle(lv, VMSCAN_THROTTLE_CONGESTED, sc)

    def clear_pgdat_congested(self, lv: Lruvec) -> None:
        """kswapd found the node balanced (prepare_kswapd_sleep)."""
        lv.congested = lv.pgdat_dirty = lv.pgdat_writeback = False

    def _skip_throttle_noprogress(self, lv: Lruvec) -> bool:
        """skip_throttle_noprogress: kswapd gave up on the node, or the pages waiting to
        be written (dirty + writeback, NR_ZONE_WRITE_PENDING) are at most half of the
        reclaimable ones: do not throttle."""
        if lv.node.kswapd_failures >= MAX_RECLAIM_RETRIES:
            return True
        lists = lv.lists
        reclaimable = lists[LRU_INACTIVE_FILE].nr + lists[LRU_ACTIVE_FILE].nr
        if self.can_reclaim_anon():
            reclaimable += lists[LRU_INACTIVE_ANON].nr + lists[LRU_ACTIVE_ANON].nr
        vm = self.vmstat
        return 2 * (vm["nr_dirty"] + vm["nr_writeback"]) <= reclaimable

    def reclaim_throttle(self, lv: Lruvec, reason: int, sc: ScanControl) -> float:
        """reclaim_throttle (6.1): the reclaimer sleeps, uninterruptible, until woken or
        its timeout: VMSCAN_THROTTLE_WRITEBACK HZ/10, woken once more than
        SWAP_CLUSTER_MAX pages have been written since it began
        (__acct_reclaim_writeback counts every folio_end_writeback meanwhile); CONGESTED and
        NOPROGRESS one jiffy (unless skip_throttle_noprogress). hvsim: the writes due by the wake-up end then (their
        pages rotate to the inactive tail), and the sleep is added to sc.sleep, which the
        caller turns into a task sleep (the vCPU is free meanwhile) or kswapd's wait.
        Without a clock nothing is in flight and nothing sleeps. Returns seconds."""
        now = self.now()
        if now is None:
            return 0.0
        if sc.t0 is not None:
            now = sc.t0 + sc.cost + sc.sleep  # the direct reclaimer's own time
        if reason != VMSCAN_THROTTLE_WRITEBACK and reason != VMSCAN_THROTTLE_ISOLATED:
            if self._skip_throttle_noprogress(lv):
                return 0.0
        if getattr(self.kernel, "plug", None) is not None:
            # the reclaimer sleeps (schedule_timeout): sched_submit_work sends its plug
            blk_flush_plug(self.kernel, self._reclaimer_time(sc))
        vm = self.vmstat
        if reason == VMSCAN_THROTTLE_WRITEBACK:
            timeout = 1.0 / 10
            wake = now + timeout
            written = 0
            for b in sorted(self.inflight, key=lambda b: b.done_at):
                if b.done_at >= wake:
                    break
                written += len(b.pages)
                if written > SWAP_CLUSTER_MAX:
                    wake = max(b.done_at, now)
                    break
            vm["nr_throttled_written"] += written  # (__acct_reclaim_writeback)
        elif reason == VMSCAN_THROTTLE_ISOLATED:
            # HZ/50, or woken earlier by wake_throttle_isolated: a direct reclaimer on
            # another CPU finding the isolated pages few again (too_many_isolated) on
            # this node while this one sleeps (known here: those whose own time ran on
            # past this one's now; `isolated_wakes`)
            wake = now + (HZ // 50) / HZ
            if sc.t0 is not None and self.isolated_wakes:
                nid = lv.node.nid
                cpu = sc.cpu
                for t, c, n in self.isolated_wakes:
                    if now < t < wake and c != cpu and n == nid:
                        wake = t
        else:
            wake = now + 1.0 / HZ
        vm[THROTTLE_VMSTAT[reason]] += 1
        slept = wake - now
        vm[THROTTLE_USEC_VMSTAT[reason]] += round(slept * 1e6)  # (usec_delayed)
        sc.sleep += slept
        if not sc.kswapd:  # (kswapd sleeps in simulated time: Kswapd._run)
            self.complete_io(wake)
        return slept

    def shrink_slab(self, lv: Lruvec, sc: ScanControl, memcg=None) -> int:
        """shrink_slab: every registered shrinker (guestkernel/shrinker.py, the dentry and
        inode caches among them) at this pass's priority, for `memcg` (None: a guest
        without child memcgs; a child memcg: shrink_slab_memcg); the slab pages their
        frees give back (reclaim_state->reclaimed_slab) count as reclaimed. Returns those
        pages."""
        k = self.kernel
        shrinkers = getattr(k, "shrinkers", None)
        if shrinkers is None or k.slab is None:
            return 0
        before = k.slab.reclaimed_slab
        shrinkers.shrink_slab(sc.gfp, lv.node.nid, sc.priority, sc.kswapd, memcg)
        freed = k.slab.reclaimed_slab - before
        sc.nr_reclaimed += freed
        return freed

    # ------------------------------------------------------------------ madvise
    def madvise_pageout(self, task, vma, start: int, end: int, pageout: bool) -> None:
        """MADV_COLD / MADV_PAGEOUT (madvise_cold_or_pageout_pte_range) over the present
        PTEs of [start, end) in `vma`: pages on the LRU mapped by this PTE only have the
        PTE's accessed bit and PG_referenced cleared (an active one also gets
        PG_workingset, as 6.18 does: tests/data/madvise; 6.1 did not); MADV_COLD then
        moves active pages to the head of their inactive list (folio_deactivate:
        pgdeactivate), MADV_PAGEOUT reclaims them now, their references ignored
        (reclaim_pages: an anonymous page goes to swap, a clean file page is freed; a
        dirty file page is written in the 2.6 era, and in 6.x, where only kswapd writes
        file pages, marked PG_reclaim and activated for the flusher)."""
        k = self.kernel
        ptes = task.mm.pgtable.ptes
        mem_map = k.mem_map
        zero_pfn = k.zero_pfn
        vm = self.vmstat
        taken = []
        for vpn in mem._vpns_in(ptes, start >> PAGE_SHIFT, end >> PAGE_SHIFT):
            pte = ptes[vpn]
            if not pte & PTE_PRESENT_MASK or pte >> PAGE_SHIFT == zero_pfn:
                continue
            page = mem_map[pte >> PAGE_SHIFT]
            f = page.flags
            if not f & PG_lru or page._mapcount != 0:
                continue  # not on the LRU, or mapped elsewhere too: left alone
            if pte & _PAGE_ACCESSED:
                ptes[vpn] = pte & ~_PAGE_ACCESSED
                task.mm.pgtable.pte_changed(vpn)
            f &= ~PG_referenced
            if f & PG_active:
                f |= PG_workingset
            page.flags = f
            if pageout:
                if not f & PG_unevictable:
                    taken.append(page)
            elif f & PG_active and not f & PG_unevictable:
                n = self._move(page, False)  # (a THP: its folio, once)
                vm["pgdeactivate"] += n
                if self.memcg is not None and n:
                    self.memcg.rstat_updated(n)  # lru_deactivate: PGDEACTIVATE
        if taken:
            self.reclaim_pages(taken)

    def reclaim_pages(self, pages: list, gfp: int = G.GFP_KERNEL) -> int:
        """reclaim_pages (MADV_PAGEOUT): reclaim exactly these LRU pages now, ignoring
        their references, writing synchronously. Returns the pages freed."""
        sc = ScanControl(len(pages), gfp, False, 0, True)
        taken = []
        for page in pages:
            if page.flags & PG_lru and not page.flags & PG_unevictable:
                for p in self._isolate(page, page_lru(page)):  # (a THP: its folio)
                    if p.flags & PG_active:
                        # folio_clear_active alone: no PGDEACTIVATE (6.1 reclaim_pages)
                        p.flags &= ~PG_active
                        page_restate(self.vmstat, p)
                    taken.append(p)
        freed = self.shrink_page_list(taken, sc, ignore_references=True)
        self.kernel.stall += sc.cost
        return freed

    @staticmethod
    def snapshot_refaults(lv: Lruvec) -> None:
        """snapshot_refaults: the workingset activations seen when reclaim ends
        (lruvec_page_state: flushed, 6.x)."""
        st = lv.stat
        if st is not None:
            lv.refaults[0], lv.refaults[1] = st[ST_ACTIVATE_ANON], st[ST_ACTIVATE_FILE]
        else:
            lv.refaults[0], lv.refaults[1] = lv.activate

    def _nodes_of(self, zonelist) -> list[Lruvec]:
        seen = []
        for z in zonelist:
            lv = self.lruvecs[z.node.nid]
            if lv not in seen:
                seen.append(lv)
        return seen

    def try_to_free_pages(self, gfp: int, order: int, zonelist, highest: int) -> int:
        """Direct reclaim (the allocator's direct_reclaim_hook): priority 12 down to 0 over
        the zonelist's nodes until SWAP_CLUSTER_MAX pages are reclaimed. 2.6 era (or no
        clock): writes are synchronous, the reclaimer waits for them. 6.x: swap writes
        are submitted and not waited for (the pages are freed by a later pass once
        clean), dirty file pages are left to the flusher, and the reclaimer throttles
        (consider_reclaim_throttle, reclaim_throttle) instead. The time spent scanning
        and writing is added to kernel.stall, the throttled sleep to
        kernel.iowait_throttle. Returns pages reclaimed."""
        if self.in_reclaim:
            return 0
        self.in_reclaim = True
        try:
            self.complete_io()
            sc = ScanControl(SWAP_CLUSTER_MAX, gfp, False, highest,
                             not self.v6 or self.kernel.env is None)
            now = self.now()
            sc.cpu = cpu = self.kernel.current_cpu
            if not sc.sync_io:
                # the reclaimer's time runs on as it works (sc.cost) and sleeps: writes
                # the device ends meanwhile end for it, though the simulation's clock
                # stands still during the synchronous call; successive calls on its CPU
                # (the allocator's retries, the next task there) carry the clock on
                # (direct_clock); reclaimers on other CPUs start from now
                sc.t0 = max(now, self.direct_clock[cpu])
            lvs = self._nodes_of(zonelist)
            return self._do_try_to_free_pages(lvs, sc)
        finally:
            self.in_reclaim = False

    def _do_try_to_free_pages(self, lvs: list, sc: ScanControl) -> int:
        """do_try_to_free_pages: priority DEF_PRIORITY down to 0 over the target lruvecs
        of the nodes until sc.nr_to_reclaim pages are reclaimed; no progress at priority
        1 throttles (consider_reclaim_throttle); snapshot_refaults of the target; cgroup
        reclaim clears its lruvecs' LRUVEC_CONGESTED."""
        cpu = sc.cpu
        while True:
            for priority in range(DEF_PRIORITY, -1, -1):
                sc.priority = priority
                for lv in lvs:
                    self.shrink_node(lv, sc)
                if sc.t0 is not None and self.inflight:
                    self.complete_io(sc.t0 + sc.cost + sc.sleep)
                if self.v6 and lvs and priority == 1 and not sc.nr_reclaimed:
                    # consider_reclaim_throttle: no progress at a high priority
                    self.reclaim_throttle(lvs[0], VMSCAN_THROTTLE_NOPROGRESS, sc)
                if sc.nr_reclaimed >= sc.nr_to_reclaim:
                    break
            if sc.nr_reclaimed or not sc.memcg_low_skipped:
                break
            # untapped cgroup reserves: don't OOM, retry overriding memory.low
            sc.memcg_low_reclaim = True
            sc.memcg_low_skipped = False
        for lv in lvs:
            self.snapshot_refaults(lv)
            if sc.target_mem_cgroup is not None:
                lv.congested = False
        if sc.t0 is not None:
            self.direct_clock[cpu] = sc.t0 + sc.cost + sc.sleep
        k = self.kernel
        k.stall += sc.cost
        if sc.sleep:
            k.iowait_throttle = getattr(k, "iowait_throttle", 0.0) + sc.sleep
        return sc.nr_reclaimed

    def try_to_free_mem_cgroup_pages(self, memcg, nr_pages: int, gfp: int,
                                     reclaim_options: int) -> int:
        """try_to_free_mem_cgroup_pages (6.1): limit reclaim of memcg's subtree,
        nr_to_reclaim = max(nr_pages, SWAP_CLUSTER_MAX), every zone (reclaim_idx
        MAX_NR_ZONES - 1; the gfp's zone bits those of GFP_HIGHUSER_MOVABLE), may_swap
        from MEMCG_RECLAIM_MAY_SWAP; do_try_to_free_pages over the nodes' lruvecs of
        the memcg. Time as try_to_free_pages'. Returns pages reclaimed."""
        if self.in_reclaim:
            return 0
        self.in_reclaim = True
        try:
            self.complete_io()
            highest = max(len(n.zones) for n in self.alloc.nodes) - 1
            gfp = (gfp & ~G.GFP_ZONEMASK) | (G.GFP_HIGHUSER_MOVABLE & G.GFP_ZONEMASK)
            sc = ScanControl(max(nr_pages, SWAP_CLUSTER_MAX), gfp, False, highest,
                             not self.v6 or self.kernel.env is None)
            sc.target_mem_cgroup = memcg
            sc.may_swap = bool(reclaim_options & 1)  # MEMCG_RECLAIM_MAY_SWAP
            now = self.now()
            sc.cpu = cpu = self.kernel.current_cpu
            if not sc.sync_io:
                sc.t0 = max(now, self.direct_clock[cpu])
            lvs = [memcg.lruvec(node.nid) for node in self.alloc.nodes]
            return self._do_try_to_free_pages(lvs, sc)
        finally:
            self.in_reclaim = False

    def balance_pgdat(self, node, order: int = 0, highest: int | None = None) -> tuple[int, float]:
        """kswapd's pass over one node: reclaim until a zone meets HIGH (6.x) or every
        zone does (2.6), priority 12 down to 1. Returns (pages reclaimed, seconds)."""
        if highest is None:
            highest = len(node.zones) - 1
        lv = self.lruvecs[node.nid]
        vm = self.vmstat
        if self.in_reclaim:
            return 0, 0.0
        vm["pageoutrun"] += 1
        self.complete_io()
        sc = ScanControl(0, G.GFP_KERNEL, True, highest, False)
        # watermark boosting (6.1): reclaim the zones' boosts, left in place meanwhile,
        # without writeback or swap, unless the node is imbalanced (then as usual)
        zone_boosts = [(z, z.watermark_boost) for z in node.zones[: highest + 1]
                       if z.managed_pages and z.watermark_boost]
        nr_boost_reclaim = boosted = sum(b for _z, b in zone_boosts)
        self.in_reclaim = True
        # set_reclaim_active (6.x): ZONE_RECLAIM_ACTIVE caps the zones' per-CPU lists
        active = [z for z in node.zones[: highest + 1] if z.managed_pages] if self.alloc.era == "6.x" else ()
        for z in active:
            self.alloc.set_reclaim_active(z, True)
        try:
            while sc.priority >= 1:
                # pages already being written for reclaim will be freed when their write
                # ends: kswapd waits for them rather than writing more (6.x throttles on
                # writeback the same way)
                short = self._shortfall(node, highest) - self.reclaim_inflight
                if short > 0 and nr_boost_reclaim:
                    nr_boost_reclaim = 0  # imbalanced: ignore the boost, restart
                    sc.priority = DEF_PRIORITY
                if short <= 0 and not nr_boost_reclaim:
                    break
                sc.may_writepage = sc.may_swap = not nr_boost_reclaim
                sc.nr_to_reclaim = max(nr_boost_reclaim or short, SWAP_CLUSTER_MAX)
                before = sc.nr_reclaimed + sc.nr_pageout
                sc.nr_scanned = 0
                self.shrink_node(lv, sc)
                if sc.sleep:
                    break  # throttled on writeback: Kswapd sleeps sc.sleep, then goes on
                got = sc.nr_reclaimed + sc.nr_pageout - before
                # a boost limits its priority to DEF_PRIORITY - 2 (no writeback) and ends
                # when a pass reclaims nothing
                raise_priority = sc.nr_scanned < sc.nr_to_reclaim and not (
                    nr_boost_reclaim and sc.priority == DEF_PRIORITY - 2)
                nr_boost_reclaim -= min(nr_boost_reclaim, got)
                if nr_boost_reclaim and not got:
                    break
                if raise_priority or not got:
                    sc.priority -= 1
        finally:
            self.in_reclaim = False
            for z in active:  # clear_reclaim_active
                self.alloc.set_reclaim_active(z, False)
        self.kswapd_sleep = sc.sleep
        if boosted:
            for z, b in zone_boosts:
                self.alloc.set_watermark_boost(z, z.watermark_boost - min(z.watermark_boost, b))
            # likely space now: kcompactd to defragment pageblocks
            compaction = getattr(self.kernel, "compaction", None)
            if compaction is not None:
                compaction.wakeup_kcompactd(node, self.alloc.pageblock_order, highest)
        self.snapshot_refaults(lv)
        if sc.nr_reclaimed:
            node.kswapd_failures = 0
        elif not self.kswapd_balanced(node, order, highest) and not self.inflight:
            node.kswapd_failures += 1
        self.kswapd_io_wait = sc.io_wait
        return sc.nr_reclaimed, sc.cost

    def _shortfall(self, node, highest: int) -> int:
        """Pages kswapd still has to free on this node. 6.x: the highest eligible zone (the
        one user allocations come from) up to HIGH + its lowmem_reserve for `highest`;
        2.6: every zone up to its own HIGH (balance_pgdat's zone_watermark_ok(zone, order,
        high, 0, 0)). (Linux 6.x stops once any zone is at HIGH, but asks for the sum of
        the high watermarks per pass and so overshoots HIGH by that much; hvsim refills
        the allocation zone and stops at HIGH, the course's picture.)"""
        zones = [z for z in node.zones[: highest + 1] if z.managed_pages]
        if not zones:
            return 0
        if self.alloc.era == "6.x":
            z = zones[-1]
            return max(z.high_wmark() + z.lowmem_reserve[highest] - z.nr_free + 1, 0)
        return sum(max(z.high_wmark() - z.nr_free + 1, 0) for z in zones)

    def kswapd_balanced(self, node, order: int, highest: int) -> bool:
        return not self._shortfall(node, highest)

    # ------------------------------------------------------------------ hooks
    def wake_kswapd(self, node, order: int, highest: int, gfp: int) -> None:
        """The allocator's wake_kswapd_hook. Without an env there is no kswapd thread:
        reclaim happens in the allocating context (direct reclaim)."""
        kswapd = self.kswapds.get(node.nid)
        if kswapd is not None and node.kswapd_failures < 16:  # MAX_RECLAIM_RETRIES
            kswapd.wake(order, highest)

    def oom_hook(self, gfp: int, order: int, highest: int) -> bool:
        """The allocator's oom_hook: True if the OOM killer freed memory."""
        return self.oom.out_of_memory(gfp, order)

    # ------------------------------------------------------------------ flusher
    def wakeup_flusher_threads(self) -> None:
        """wakeup_flusher_threads(WB_REASON_VMSCAN): the flusher writes back every dirty
        page (wb_start_writeback: get_nr_dirty_pages()). Without a clock there is no
        flusher thread: the pass runs now, its time added to kernel.stall."""
        if self.flusher is not None:
            self.flusher.wake(start_all=True)
        elif self.kernel.env is None:
            self.writeback_dirty(force=True)

    def global_dirtyable_memory(self) -> int:
        """global_dirtyable_memory (6.1): free pages less the reserves (totalreserve_pages),
        plus the file LRU pages; without vm_highmem_is_dirtyable (the default) less what
        highmem_dirtyable_memory counts for each populated highmem zone: its free pages
        above its high watermark plus its file LRU pages (the latter whether or not the
        zone has free pages above the watermark), at most the total; + 1 so that it is
        never 0."""
        alloc = self.alloc
        x = alloc.nr_free_pages()
        x -= min(x, alloc.totalreserve_pages)
        x += self.lru_pages(LRU_ACTIVE_FILE) + self.lru_pages(LRU_INACTIVE_FILE)
        high = 0
        populated = False
        for z in alloc.zones:
            if z.is_highmem and z.populated():
                populated = True
                free = z.nr_free
                high += free - min(free, z.high_wmark())
        if populated:  # (one node: the lists' highmem pages are the highmem zone's)
            high += sum(lv.lists[LRU_ACTIVE_FILE].nr_high + lv.lists[LRU_INACTIVE_FILE].nr_high
                        for lv in self.all_lruvecs())
            x -= min(high, x)
        return x + 1

    def dirty_thresholds(self) -> tuple[int, int]:
        """(background, foreground) dirty thresholds in pages (global_dirty_limits: the
        vmstat items nr_dirty_background_threshold, nr_dirty_threshold)."""
        cfg = self.kernel.config
        thresh, bg = domain_dirty_limits(self.global_dirtyable_memory(), cfg.dirty_ratio,
                                         cfg.dirty_background_ratio, cfg.dirty_bytes,
                                         cfg.dirty_background_bytes)
        return bg, thresh

    def write_bandwidth(self) -> int:
        """wb->avg_write_bandwidth, pages per second: Linux's estimate of the write rate
        of the guest's disk (wb_update_write_bandwidth over the file pages whose writes
        ended; 100 MB/s until measured)."""
        return self.wb_avg_write_bandwidth

    def _update_dirty_limit(self, thresh: int, dirty: int, now_j: int) -> None:
        """domain_update_dirty_limit / update_dirty_limit: the domain's dirty_limit follows
        a rising threshold at once and a falling one by 1/32 of the gap (not below the
        dirty pages) every BANDWIDTH_INTERVAL."""
        if now_j < self.dirty_limit_tstamp + BANDWIDTH_INTERVAL:
            return
        limit = self.dirty_limit
        if limit < thresh:
            limit = thresh
        else:
            t = max(thresh, dirty)
            if limit > t:
                limit -= (limit - t) >> 5
        self.dirty_limit = limit
        self.dirty_limit_tstamp = now_j

    def wb_update_bandwidth(self, now_j: int, update_ratelimit: bool = False, thresh: int = 0,
                            bg_thresh: int = 0, dirty: int = 0, pos_ratio: int = 0) -> None:
        """__wb_update_bandwidth (6.1) at jiffy `now_j`: elapsed = now - bw_time_stamp (at
        least 1); with `update_ratelimit` (from balance_dirty_pages, with its thresholds,
        dirty pages and pos_ratio) the domain's dirty_limit and the wb's dirty_ratelimit
        are updated first (wb_update_dirty_ratelimit, the setpoint (freerun +
        hard_dirty_limit) / 2); then the write bandwidth (wb_update_write_bandwidth); the
        stamps move to now."""
        elapsed = max(now_j - self.bw_time_stamp, 1)
        dirtied = self.vmstat["nr_dirtied"]
        written = self.wb_written
        if update_ratelimit:
            self._update_dirty_limit(thresh, dirty, now_j)
            limit = max(thresh, self.dirty_limit)
            setpoint = (dirty_freerun_ceiling(thresh, bg_thresh) + limit) // 2
            self.wb_dirty_ratelimit, self.wb_balanced_dirty_ratelimit = wb_update_dirty_ratelimit(
                self.wb_dirty_ratelimit, self.wb_balanced_dirty_ratelimit,
                self.wb_avg_write_bandwidth, pos_ratio, dirtied - self.dirtied_stamp, elapsed,
                dirty, setpoint)
        self.wb_write_bandwidth, self.wb_avg_write_bandwidth = wb_update_write_bandwidth(
            self.wb_write_bandwidth, self.wb_avg_write_bandwidth, elapsed,
            written - min(written, self.written_stamp))
        self.dirtied_stamp = dirtied
        self.written_stamp = written
        self.bw_time_stamp = now_j

    def wb_bandwidth_estimate_start(self, now_j: int) -> None:
        """wb_bandwidth_estimate_start (do_writepages): a wb idle for more than
        WB_BANDWIDTH_IDLE_JIF with nothing under writeback restarts its estimate now."""
        if now_j - self.bw_time_stamp > WB_BANDWIDTH_IDLE_JIF and not self.wb_writeback:
            self.dirtied_stamp = self.vmstat["nr_dirtied"]
            self.written_stamp = self.wb_written
            self.bw_time_stamp = now_j

    def _run_bw_dwork(self, now: float) -> None:
        """wb->bw_dwork, queued BANDWIDTH_INTERVAL after writeback ended on the wb
        (wb_inode_writeback_end), runs wb_update_bandwidth: here when time next reaches
        it, at its own jiffy."""
        at = self.bw_dwork_at
        if at is not None and now >= at:
            self.bw_dwork_at = None
            self.wb_update_bandwidth(int(at * HZ))

    def balance_dirty_pages(self, pages_dirtied: int = DIRTY_RATELIMIT, task=None) -> float:
        """Throttle `task` (the one dirtying file pages; a stand-in without one). Returns
        the seconds it slept.

        6.x (6.1 balance_dirty_pages, IO-less, one bdi, no memory cgroups): dirty = file
        dirty + writeback pages against thresh / bg_thresh (domain_dirty_limits). Over
        bg_thresh the flusher is started. At or below the freerun ceiling (thresh +
        bg_thresh) / 2 the task goes on and checks again after dirty_poll_interval pages.
        Above it: pos_ratio (wb_position_ratio) scales the wb's dirty_ratelimit into the
        task's rate, task_ratelimit; every BANDWIDTH_INTERVAL (200 ms) the wb's estimates
        are updated first (__wb_update_bandwidth: dirty_ratelimit towards the balanced
        rate write_bw * task_ratelimit / dirty_rate, the write bandwidth from the pages
        whose writes ended); the task sleeps period = HZ * pages_dirtied / task_ratelimit
        jiffies less the time since its last pause, clamped to wb_max_pause (at most
        MAX_PAUSE, 200 ms); a pause under wb_min_pause is carried over instead. At or above
        the limit (task_ratelimit 0) it sleeps max_pause and looks again. The state
        (nr_dirtied, nr_dirtied_pause, dirty_paused_when) is the task's. The sleep is the
        task's (kernel.iowait_throttle: its vCPU is free). hvsim: the flusher thread
        cannot run inside the writer's synchronous burst, so its writes are submitted
        when the writer sleeps (wb_start_background_writeback) and those the disk
        finishes within the sleep end with it; the task's jiffies are its own clock
        (bdp_clock: the simulation's time, or later by the pauses it took in this burst).

        2.6 era (2.6.24): above the background limit the flusher is woken; above
        dirty_ratio the writer itself writes back to the background limit and waits (its
        time in kernel.stall). Without a clock (either era) the writer writes as soon as
        the background limit is passed: no flusher thread runs."""
        vm = self.vmstat
        env = self.kernel.env
        cur = task if task is not None else self.kthread_bdp
        if not self.v6 or env is None:
            cur.nr_dirtied = 0  # (6.x without a clock: every nr_dirtied_pause pages)
            bg, thresh = self.dirty_thresholds()
            dirty = vm["nr_dirty"]
            if dirty <= bg:
                return 0.0
            vm["balance_dirty_pages"] += 1
            if self.flusher is not None and dirty <= thresh:
                self.flusher.wake()
                return 0.0
            self.writeback_dirty(limit=bg, sync=True)
            return 0.0
        cfg = self.kernel.config
        cpus = max(int(getattr(cfg, "cpus", 1)), 1)
        wb_stat_error = cpus * 8 * (1 + ilog2(cpus))
        slept = 0.0
        while True:
            t0 = max(env.now, cur.bdp_clock)
            self._run_bw_dwork(t0)
            now_j = int(t0 * HZ)
            nr_reclaimable = vm["nr_dirty"]
            dirty = nr_reclaimable + vm["nr_writeback"]
            thresh, bg_thresh = domain_dirty_limits(self.global_dirtyable_memory(),
                                                    cfg.dirty_ratio, cfg.dirty_background_ratio,
                                                    cfg.dirty_bytes, cfg.dirty_background_bytes)
            if nr_reclaimable > bg_thresh:
                self._start_background_writeback()
            if dirty <= dirty_freerun_ceiling(thresh, bg_thresh):
                cur.dirty_paused_when = now_j
                cur.nr_dirtied = 0
                cur.nr_dirtied_pause = dirty_poll_interval(dirty, thresh)
                break
            vm["balance_dirty_pages"] += 1
            self._start_background_writeback()
            wb_thresh, wb_dirty = thresh, dirty  # one bdi: it holds every completion
            self.dirty_exceeded = wb_dirty > wb_thresh and dirty > thresh
            limit = max(thresh, self.dirty_limit)  # hard_dirty_limit
            write_bw = self.wb_avg_write_bandwidth
            pos_ratio = wb_position_ratio(thresh, bg_thresh, dirty, limit, wb_thresh,
                                          wb_dirty, write_bw)
            if self.bw_time_stamp + BANDWIDTH_INTERVAL < now_j:
                self.wb_update_bandwidth(now_j, True, thresh, bg_thresh, dirty, pos_ratio)
                write_bw = self.wb_avg_write_bandwidth
            dirty_ratelimit = self.wb_dirty_ratelimit
            task_ratelimit = dirty_ratelimit * pos_ratio >> RATELIMIT_CALC_SHIFT
            max_pause = wb_max_pause(wb_dirty, write_bw)
            min_pause, nr_dirtied_pause = wb_min_pause(max_pause, task_ratelimit,
                                                       dirty_ratelimit, write_bw)
            if task_ratelimit == 0:
                pause = max_pause
            else:
                period = HZ * pages_dirtied // task_ratelimit
                pause = period
                if cur.dirty_paused_when:
                    pause -= now_j - cur.dirty_paused_when
                if pause < min_pause:
                    if pause < -HZ:
                        cur.dirty_paused_when = now_j
                        cur.nr_dirtied = 0
                    elif period:
                        cur.dirty_paused_when += period
                        cur.nr_dirtied = 0
                    elif cur.nr_dirtied_pause <= pages_dirtied:
                        cur.nr_dirtied_pause += pages_dirtied
                    break
                if pause > max_pause:
                    now_j += min(pause - max_pause, max_pause)
                    pause = max_pause
            # io_schedule_timeout(pause)
            sec = pause / HZ
            slept += sec
            cur.bdp_clock = t0 + sec
            self._writeback_during(t0 + sec, bg_thresh)
            cur.dirty_paused_when = now_j + pause
            cur.nr_dirtied = 0
            cur.nr_dirtied_pause = nr_dirtied_pause
            if task_ratelimit or wb_dirty <= wb_stat_error:
                break
        if slept:
            k = self.kernel
            k.iowait_throttle = getattr(k, "iowait_throttle", 0.0) + slept
        return slept

    def _start_background_writeback(self) -> None:
        """wb_start_background_writeback: wake the flusher."""
        if self.flusher is not None:
            self.flusher.wake()

    def _writeback_during(self, until: float, bg_thresh: int) -> None:
        """The flusher's work while the dirtier sleeps until `until` (seconds): in
        background writeback it writes the dirty pages above the background threshold
        (submitted now, on the disk's queue) a chunk at a time (writeback_chunk_size: at
        least MIN_WRITEBACK_PAGES) — a new chunk once that many are waiting, or when
        nothing is in flight — and the writes the disk ends by `until` are done."""
        excess = self.vmstat["nr_dirty"] - bg_thresh
        if excess > 0 and (excess >= MIN_WRITEBACK_PAGES or not self.inflight):
            self.writeback_dirty(limit=bg_thresh)
        self.complete_io(until)

    def _queue_writeback(self, writes: dict, page) -> None:
        """Start a dirty page's writeback and add it to its queue's batch in `writes`
        (id(queue) -> (queue, pages)), submitted together by the caller's plug."""
        q = self._start_writeback(page, None)
        ent = writes.get(id(q))
        if ent is None:
            writes[id(q)] = (q, [page])
        else:
            ent[1].append(page)

    def filemap_flush(self, mapping, start: int = 0, end: int | None = None) -> int:
        """filemap_flush (__filemap_fdatawrite, WB_SYNC_NONE): start writing every dirty
        page of one mapping, in index order (a page already under writeback skipped); the
        caller does not wait. With `start`/`end` (page indices, inclusive) only those of
        the range (__filemap_fdatawrite_range: POSIX_FADV_DONTNEED). Returns pages
        submitted."""
        self.complete_io(self.now())
        pages = mapping.pages
        writes: dict[int, tuple[object, list]] = {}
        n = 0
        for index in sorted(mapping.dirty):
            if index < start or end is not None and index > end:
                continue
            page = pages[index]
            if page.flags & PG_writeback:
                continue
            self._queue_writeback(writes, page)
            n += 1
        # do_writepages -> generic_writepages: write_cache_pages inside a blk_plug
        plug = blk_start_plug(self.kernel)
        for q, batch in writes.values():
            self._submit(q, batch, None)
        blk_finish_plug(self.kernel, plug, self.now())
        return n

    def writeback_dirty(self, now: float | None = None, force: bool = False,
                        limit: int | None = None, sync: bool = False) -> int:
        """One flusher pass (wb_writeback): write the dirty file pages of inodes dirty for
        longer than dirty_expire_centisecs, and any dirty page while nr_dirty is above
        `limit` (default: the background threshold). `force` writes everything (sync(2),
        wakeup_flusher_threads). An inode's age (inode->dirtied_when) counts from its
        first write() since it was last clean, or (pages dirtied through a shared mapping)
        from the first pass that finds it dirty. `sync`: the caller waits for the writes
        (time added to kernel.stall). Returns pages submitted.

        An inode is dirty while it has a dirty page (it stays on the dirty lists while a
        page redirtied under writeback waits). Order, as 6.1's writeback: inodes oldest
        dirtied_when first (queue_io takes the expired ones off b_dirty, oldest first,
        and writeback_sb_inodes works through b_io), each inode's dirty pages in index
        order (write_cache_pages over PAGECACHE_TAG_DIRTY, a page under writeback
        skipped), range_cyclic: from the mapping's writeback_index, where the last pass
        stopped, to the end, then from the start. hvsim stops at the page that brings
        nr_dirty to the limit, where Linux checks the background limit between chunks
        (writeback_chunk_size). The pass visits only the inodes on kernel.b_dirty and
        their tagged pages: it costs what is dirty, not the page cache."""
        if now is None:
            now = self.now()
        t = now if now is not None else 0.0
        self.complete_io(now)
        vm = self.vmstat
        dirtied = self.inode_dirtied
        if vm["nr_dirty"] == 0:
            # no dirty file page anywhere: every inode is clean
            dirtied.clear()
            return 0
        if self.v6 and now is not None:
            self._run_bw_dwork(now)
            self.wb_bandwidth_estimate_start(int(now * HZ))  # do_writepages
        cfg = self.kernel.config
        expire = cfg.dirty_expire_centisecs / 100.0
        bg = self.dirty_thresholds()[0] if limit is None else limit
        # b_dirty: every inode with a dirty page gets its dirtied_when (the first pass
        # to see one dirtied through a mapping stamps it now); oldest first, ties in the
        # order they became dirty (sorted() is stable)
        mappings = list(self.kernel.b_dirty)
        for mapping in mappings:
            dirtied.setdefault(mapping.host, t)
        mappings.sort(key=lambda m: dirtied[m.host])
        writes: dict[int, tuple[object, list]] = {}
        n = 0
        for mapping in mappings:
            expired = force or t - dirtied[mapping.host] >= expire
            if not expired and vm["nr_dirty"] <= bg:
                break  # nor is any younger inode expired, and the limit is met
            pages = mapping.pages
            order = sorted(mapping.dirty)
            start = mapping.writeback_index
            if start:
                # range_cyclic: from where the last writeback stopped to the end, then
                # (requeue_inode: still dirty) from the start
                cut = bisect_left(order, start)
                order = order[cut:] + order[:cut]
            mapping.writeback_index = 0
            for index in order:
                page = pages[index]
                if page.flags & PG_writeback:
                    continue  # redirtied while being written: a later pass
                if not expired and vm["nr_dirty"] <= bg:
                    mapping.writeback_index = index  # stopped here: the next starts here
                    break
                self._queue_writeback(writes, page)
                n += 1
        # an inode whose pages are all clean leaves the dirty lists: its next dirtying
        # stamps a new dirtied_when (a page under writeback keeps it on them only if
        # it was redirtied)
        b_dirty = self.kernel.b_dirty
        for inode in [inode for inode in dirtied if inode.mapping not in b_dirty]:
            del dirtied[inode]
        sc = None
        if sync:
            sc = ScanControl(0, G.GFP_KERNEL, False, 0, True)
        # wb_writeback: writeback_sb_inodes inside a blk_plug (and generic_writepages'
        # own, nested, per inode); a sync pass waits for each write (not plugged here)
        plug = blk_start_plug(self.kernel) if sc is None else None
        for q, batch in writes.values():
            self._submit(q, batch, sc)
        blk_finish_plug(self.kernel, plug, now)
        if sc is not None:
            self.kernel.stall += sc.cost
        if n:
            vm["flusher_wakeups"] += 1
            now_j = int(t * HZ)
            if self.v6 and now is not None and self.bw_time_stamp + BANDWIDTH_INTERVAL < now_j:
                self.wb_update_bandwidth(now_j)  # do_writepages, after the writes
        return n

    # ------------------------------------------------------------------ drop_caches
    def drop_caches(self, value: int) -> None:
        """echo 1 (page cache), 2 (slab), 3 (both) > /proc/sys/vm/drop_caches."""

        vm = self.vmstat
        if value & 1:
            self.complete_io()
            for lv in self.all_lruvecs():
                for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
                    for page in list(lv.lists[lru]):
                        if page.flags & PG_thpfile:  # a regular file's THP: whole or kept
                            self.kernel.thp.evict_file_folio(page, 0, 1 << 64)
                            continue
                        if (page._mapcount == -1 and page._count == 1
                                and not page.flags & (PG_dirty | PG_writeback)):
                            delete_from_page_cache(self.kernel, page)
            fs = getattr(self.kernel, "fs", None)
            if fs is not None:
                # drop_pagecache_sb walks s_inodes (newest first: inode_sb_list_add) and
                # invalidate_mapping_pages(0, -1) gives each page it could not drop
                # (dirty, mapped, held), in index order, to deactivate_file_folio; a
                # locked page or one under writeback is skipped (find_lock_entries)
                seen = set()
                for inode in reversed(list(fs.files.values())):
                    if inode.shmem or id(inode) in seen:
                        continue
                    seen.add(id(inode))
                    pages = inode.mapping.pages
                    for i in sorted(pages):
                        page = pages[i]
                        if not page.flags & (PG_writeback | PG_locked | PG_thpfile):
                            self.deactivate_file_page(page)
            ws = self.workingset
            if ws is not None and fs is not None:
                # invalidate_mapping_pages(mapping, 0, -1) clears the shadow entries too
                for inode in list(fs.files.values()):
                    slots = inode.mapping.ws
                    if slots is not None and slots.shadows:
                        ws.clear_range(slots, 0)
            vm["drop_pagecache"] += 1
        if value & 2:
            shrinkers = getattr(self.kernel, "shrinkers", None)
            if shrinkers is not None:
                shrinkers.drop_slab(G.GFP_KERNEL)  # drop_slab: the shrinkers only
            vm["drop_slab"] += 1

    # ------------------------------------------------------------------ invariants
    def validate(self) -> None:
        """Every LRU page is on the list its flags name, exactly once; list counts equal
        the vmstat items; no free page is on a list."""
        totals = [0] * NR_LRU_LISTS
        t = self.memcg_tree
        for lv in self.all_lruvecs():
            for lru, lst in enumerate(lv.lists):
                n = 0
                prev = lst
                for page in lst:
                    assert page.lru_prev is prev, f"{lst.name}: broken link at pfn {page.pfn:#x}"
                    prev = page
                    if t is not None:
                        assert t.page_memcg(page) is lv.memcg, (
                            f"{lst.name}: pfn {page.pfn:#x} of {t.page_memcg(page)} on {lv.memcg}'s lruvec")
                    if page.flags & PG_FOLIO:
                        n += self._validate_folio(page, lru, lst)
                        continue
                    assert page.flags & PG_lru, f"{lst.name}: pfn {page.pfn:#x} without PG_lru"
                    assert page_lru(page) == lru, (
                        f"{lst.name}: pfn {page.pfn:#x} flags say {LRU_NAMES[page_lru(page)]}"
                    )
                    assert page._count > 0, f"{lst.name}: free page pfn {page.pfn:#x}"
                    assert counted_state(page) == page_state(page), (
                        f"{lst.name}: pfn {page.pfn:#x} counted as {STATE_NAMES[counted_state(page)]}"
                        f" but is {STATE_NAMES[page_state(page)]}"
                    )
                    n += 1
                assert n == lst.nr, f"{lst.name}: nr {lst.nr} but {n} pages"
                high = sum(folio_nr_pages(p) for p in lst if p.flags & PG_highmem)
                assert high == lst.nr_high, f"{lst.name}: nr_high {lst.nr_high} but {high}"
                totals[lru] += n
        for lru in range(NR_LRU_LISTS):
            assert self.vmstat[LRU_VMSTAT[lru]] == totals[lru], (
                f"{LRU_VMSTAT[lru]} = {self.vmstat[LRU_VMSTAT[lru]]} but lists hold {totals[lru]}"
            )
        thp = self.kernel.thp
        if thp is not None:
            mem_map = self.kernel.mem_map
            for base, folio in [*thp.folios.items(), *thp.shmem_folios.items()]:
                if folio.lru < 0:
                    assert not any(mem_map[pfn].flags & PG_lru for pfn in range(base, base + HPAGE_PMD_NR)), (
                        f"THP {base:#x}: off the LRU but a subpage has PG_lru")
        # PAGECACHE_TAG_DIRTY and b_dirty: exactly the dirty file pages and their mappings
        b_dirty = self.kernel.b_dirty
        for mapping in b_dirty:
            assert mapping.dirty, f"{mapping.host.path}: on b_dirty without a dirty page"
            for index in mapping.dirty:
                page = mapping.pages.get(index)
                assert page is not None and page.flags & PG_dirty, (
                    f"{mapping.host.path}: index {index} tagged dirty but not a dirty page")
        for lv in self.all_lruvecs():
            for lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE, LRU_UNEVICTABLE):
                for page in lv.lists[lru]:
                    f = page.flags
                    if f & PG_dirty and not f & (PG_swapbacked | PG_anon):
                        assert page.mapping in b_dirty and page.index in page.mapping.dirty, (
                            f"pfn {page.pfn:#x}: a dirty file page not tagged dirty")
        if self.workingset is not None:
            self.workingset.validate()
        if t is not None:
            t.validate()
        wb = sum(len(b.pages) for b in self.inflight)
        if self.kernel.env is not None:
            assert self.vmstat["nr_writeback"] == wb, (
                f"nr_writeback {self.vmstat['nr_writeback']} but {wb} pages in flight"
            )

    def _validate_folio(self, head, lru: int, lst) -> int:
        """A THP's entry: its head, of a folio on this list; every subpage in use carries
        PG_lru and this list's flags, held ones none. Returns the pages it counts."""
        thp = self.kernel.thp
        folio = thp.folios.get(head.pfn) or thp.shmem_folios.get(head.pfn)
        assert folio is not None, f"{lst.name}: pfn {head.pfn:#x} PG_thp but not a THP's head"
        assert folio.lru == lru, f"{lst.name}: THP {head.pfn:#x} says it is on {folio.lru}"
        mem_map = self.kernel.mem_map
        for pfn in range(head.pfn, head.pfn + HPAGE_PMD_NR):
            p = mem_map[pfn]
            if not p._count:
                assert not p.flags & PG_lru, f"{lst.name}: held subpage {pfn:#x} with PG_lru"
                continue
            assert p.flags & PG_lru and page_lru(p) == lru, (
                f"{lst.name}: THP {head.pfn:#x} subpage {pfn:#x} flags say "
                f"{LRU_NAMES[page_lru(p)] if p.flags & PG_lru else 'off the LRU'}")
            assert counted_state(p) == page_state(p), (
                f"{lst.name}: pfn {pfn:#x} counted as {STATE_NAMES[counted_state(p)]}"
                f" but is {STATE_NAMES[page_state(p)]}")
            if pfn != head.pfn:
                assert p.lru_next is None, f"{lst.name}: THP subpage {pfn:#x} linked on its own"
        return HPAGE_PMD_NR


# ---------------------------------------------------------------------------- wiring
def init_reclaim(kernel) -> Reclaim:
    """Install reclaim, swap, overcommit and the OOM killer on `kernel` (idempotent):
    replaces the kernel's no-op hooks, wires the allocator's slow path, registers /proc
    files and vmstat counters. Returns the `Reclaim` (also kernel.reclaim)."""
    existing = kernel.__dict__.get("reclaim")
    if existing is not None:
        return existing
    r = Reclaim(kernel)
    kernel.reclaim = r
    kernel.swap = r.swap
    kernel.oom = r.oom
    kernel.lru_cache_add = r.lru_cache_add
    kernel.lru_del = r.lru_del
    kernel.mark_page_accessed = r.mark_page_accessed
    kernel.mark_page_lazyfree = r.mark_page_lazyfree
    kernel.check_move_unevictable = r.check_move_unevictable
    kernel.balance_dirty_pages_ratelimited = r.balance_dirty_pages_ratelimited
    kernel.activate_page = r.activate_page
    kernel.swapin_hook = r.swap.swapin
    kernel.swap_count_hook = r.swap.swap_count
    kernel.swap_free = r.swap.swap_free
    kernel.swap_duplicate = r.swap.swap_duplicate
    kernel.free_swap_cache = r.swap.free_swap_cache
    kernel.total_swap_pages = r.swap.total_swap_pages
    kernel.free_swap_pages = r.swap.free_swap_pages
    kernel.vm_enough_memory = r.oom.vm_enough_memory
    kernel.vm_unacct_memory = r.oom.vm_unacct_memory
    kernel.drop_caches = r.drop_caches
    kernel.madvise_pageout = r.madvise_pageout
    kernel.workingset = r.workingset
    kernel.memcg = r.memcg
    kernel.memcgs = r.memcgs
    alloc = kernel.page_alloc
    alloc.wake_kswapd_hook = r.wake_kswapd
    alloc.direct_reclaim_hook = r.try_to_free_pages
    alloc.oom_hook = r.oom_hook
    alloc.zone_reclaimable_hook = r.zone_reclaimable_pages
    procfs = kernel.procfs
    procfs.register("/proc/swaps", r.swap.proc_swaps)
    r.oom.register_procfs(procfs)
    return r


def start_reclaim_daemons(kernel) -> list:
    """Start kswapd per node, the flusher and the I/O completion process on kernel.env
    (once). Returns the daemons started (also appended to kernel.daemons)."""
    r = init_reclaim(kernel)
    env = kernel.env
    if env is None or r.daemons_started:
        return []
    r.daemons_started = True
    started: list = [IOCompletion(env, r)]
    for node in kernel.page_alloc.nodes:
        kd = Kswapd(env, r, node)
        r.kswapds[node.nid] = kd
        started.append(kd)
    r.flusher = Flusher(env, r)
    started.append(r.flusher)
    if r.memcg is not None:
        started.append(StatsFlusher(env, r.memcg))
    daemons = getattr(kernel, "daemons", None)
    if daemons is not None:
        daemons.extend(started)
    return started


# ---------------------------------------------------------------------------- daemons
class Kswapd:
    """kswapd for one node: sleeps until the allocator wakes it below LOW, reclaims until
    the node is balanced at HIGH, waits for its writes when they are all that is left."""

    def __init__(self, env, reclaim: Reclaim, node) -> None:
        self.env = env
        self.reclaim = reclaim
        self.node = node
        self.order = 0
        self.highest = -1  # highest zone index asked for since the last pass; -1: none
        self.wakeups = 0
        self.passes = 0
        self.running = False
        self._wakeup = env.event()
        self.process = env.process(self._run())

    def wake(self, order: int, highest: int) -> None:
        self.order = max(self.order, order)
        self.highest = max(self.highest, highest)
        if not self.running and not self._wakeup.triggered:
            self.wakeups += 1
            self._wakeup.succeed()

    def _run(self):
        env = self.env
        r = self.reclaim
        while True:
            yield self._wakeup
            self._wakeup = env.event()
            self.running = True
            if self.highest < 0:
                self.highest = len(self.node.zones) - 1
            k = r.kernel
            while True:
                mark = k.stall_mark()
                r.kswapd_io_wait = 0.0
                reclaimed, cost = r.balance_pgdat(self.node, self.order, self.highest)
                self.passes += 1
                # on one of the VM's vCPUs (kernel.run_kernel_work): its scan CPU runs,
                # host stalls on pages it touched hold the vCPU, its own I/O waits free it
                yield k.run_kernel_work(max(cost, KSWAPD_MIN_PASS), io=r.kswapd_io_wait, since=mark)
                if r.kswapd_sleep > 0.0:
                    # reclaim_throttle(VMSCAN_THROTTLE_WRITEBACK): asleep, vCPU free
                    yield env.timeout(r.kswapd_sleep)
                    r.kswapd_sleep = 0.0
                r.complete_io(env.now)
                if r.kswapd_balanced(self.node, self.order, self.highest):
                    r.clear_pgdat_congested(r.lruvecs[self.node.nid])
                    break
                if r.inflight:
                    nxt = r.next_completion()
                    if nxt is not None and nxt > env.now:
                        yield env.timeout(nxt - env.now)
                    continue
                if not reclaimed:
                    break  # nothing more to take: sleep until woken again
            # kswapd_try_to_sleep(): a balanced node resets compaction's skip hints and
            # wakes kcompactd for the order it was asked (compaction.py)
            sleep_hook = getattr(r.kernel, "kswapd_sleep_hook", None)
            if sleep_hook is not None and r.kswapd_balanced(self.node, 0, self.highest):
                sleep_hook(self.node, self.order, self.highest)
            self.running = False
            self.order = 0
            self.highest = -1


class IOCompletion:
    """Ends write requests at their completion time (the block layer's completion
    interrupt): one timeout per request, not per page."""

    def __init__(self, env, reclaim: Reclaim) -> None:
        self.env = env
        self.reclaim = reclaim
        self._kick = env.event()
        reclaim.on_io_submit = self._submitted
        self.process = env.process(self._run())

    def _submitted(self, batch) -> None:
        if not self._kick.triggered:
            self._kick.succeed()

    def _run(self):
        env = self.env
        r = self.reclaim
        while True:
            nxt = r.next_completion()
            if nxt is None:
                yield self._kick
                self._kick = env.event()
                continue
            if nxt > env.now:
                # a later-submitted request never completes earlier on the same queue;
                # wake early if a request on another (faster) queue is submitted
                yield env.timeout(nxt - env.now) | self._kick
                if self._kick.triggered:
                    self._kick = env.event()
            r.complete_io(env.now)


class Flusher:
    """The writeback flusher: every dirty_writeback_centisecs, writes back expired dirty
    pages and dirty pages beyond dirty_background_ratio."""

    def __init__(self, env, reclaim: Reclaim) -> None:
        self.env = env
        self.reclaim = reclaim
        self.passes = 0
        self.pages_written = 0
        self.start_all = False  # WB_start_all: the next pass writes every dirty page
        self._kick = env.event()
        self.process = env.process(self._run())

    def wake(self, start_all: bool = False) -> None:
        """balance_dirty_pages: the background limit is exceeded, write now;
        `start_all` (wakeup_flusher_threads from reclaim): write every dirty page."""
        if start_all:
            self.start_all = True
        if not self._kick.triggered:
            self._kick.succeed()

    def _run(self):
        env = self.env
        cfg = self.reclaim.kernel.config
        while True:
            interval = cfg.dirty_writeback_centisecs / 100.0
            if interval <= 0:
                interval = 5.0  # periodic writeback disabled: still honour the thresholds
            yield env.timeout(interval) | self._kick
            if self._kick.triggered:
                self._kick = env.event()
            k = self.reclaim.kernel
            stall0 = k.stall
            mark = k.stall_mark()
            force, self.start_all = self.start_all, False
            self.pages_written += self.reclaim.writeback_dirty(env.now, force=force)
            self.passes += 1
            held = k.stall - stall0
            if held > 0.0:
                # host stalls met reading pages to write (double paging): the flusher's
                # own, holding a vCPU (kernel.run_kernel_work), not the next task's; its
                # writes are asynchronous (no wait: the flusher does not sleep on them)
                k.stall = stall0
                yield k.run_kernel_work(held, since=mark)
