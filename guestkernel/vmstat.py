"""/proc/vmstat: the counters every mechanism increments in place (mm/vmstat.c).

`kernel.vmstat` is one dict of ints. Linux names first, in Linux's order; subsystems add
their own with `vmstat.setdefault(name, 0)` at boot so that /proc/vmstat lists them.
hvsim-specific counters (no Linux equivalent) are listed in HVSIM_COUNTERS with a line of
documentation each. The page-fault outcome counters (fault_demand_zero, fault_cow, ...)
are listed and documented in fault.py; the page-state transitions pgstate_* here.

The course's page states ("Cycle de vie des pages physiques") of a user page, from its
flags (`page_state`):

    free            not a user page (in the buddy allocator)
    active          PG_active (and unevictable pages, which never leave memory)
    inactive dirty  inactive, PG_dirty, or anonymous without a copy in swap
    being written   inactive, PG_writeback
    inactive clean  inactive, clean

Every change of a user page's state is counted once, in `page_restate`: the state last
counted is kept in the page's flags (bits PGSTATE_MASK), so the arcs balance: for every
state, the pages in it now minus those at any earlier instant equal the arcs into it
minus the arcs out of it over that interval. The course's nine arcs are pgstate_1..9:

    pgstate_1  free -> active            a page allocated onto the active list
    pgstate_2  active -> inactive dirty  modified page not accessed for a while (aging)
    pgstate_3  inactive dirty -> active  modified page accessed again before its write
    pgstate_4  inactive dirty -> being written  reclaim or the flusher writes it out
    pgstate_5  being written -> active   accessed again while the write is in flight
    pgstate_6  being written -> inactive clean  the write finished: disk = memory
    pgstate_7  inactive clean -> active  clean page accessed again
    pgstate_8  active -> inactive clean  unmodified page not accessed for a while
    pgstate_9  inactive clean -> free    reclaimed to refill the free pool

and mainline's arcs that the 2.4 diagram does not draw are pgstate_FROM_TO with the
states free, active, dirty, laundry (being written), clean:

    pgstate_free_dirty     a new page on the inactive list, dirty (6.x: a new anonymous
                           page, which has no copy in swap)
    pgstate_free_clean     a new page on the inactive list, clean (page cache, readahead,
                           swap-in: use-once)
    pgstate_clean_dirty    an inactive clean page written again (write(), a dirty PTE
                           found by reclaim, its swap copy dropped)
    pgstate_dirty_clean    an inactive dirty page cleaned without a write (truncate,
                           MADV_FREE)
    pgstate_laundry_dirty  written to while its write was in flight (stays dirty)
    pgstate_active_laundry an active page under writeback deactivated
    pgstate_<state>_free   a page freed by its owner (exit, munmap, truncate, the end of
                           a write that held its last reference), not by reclaim
"""

from __future__ import annotations

from .page import (
    PGSTATE_MASK,
    PGSTATE_SHIFT,
    PG_active,
    PG_dirty,
    PG_swapbacked,
    PG_swapcache,
    PG_unevictable,
    PG_writeback,
)

ST_FREE, ST_ACTIVE, ST_DIRTY, ST_WRITEBACK, ST_CLEAN = range(5)
STATE_NAMES = ("free", "active", "inactive dirty", "being written", "inactive clean")
_SHORT = ("free", "active", "dirty", "laundry", "clean")
_COURSE_ARCS = {
    (ST_FREE, ST_ACTIVE): "pgstate_1",
    (ST_ACTIVE, ST_DIRTY): "pgstate_2",
    (ST_DIRTY, ST_ACTIVE): "pgstate_3",
    (ST_DIRTY, ST_WRITEBACK): "pgstate_4",
    (ST_WRITEBACK, ST_ACTIVE): "pgstate_5",
    (ST_WRITEBACK, ST_CLEAN): "pgstate_6",
    (ST_CLEAN, ST_ACTIVE): "pgstate_7",
    (ST_ACTIVE, ST_CLEAN): "pgstate_8",
    (ST_CLEAN, ST_FREE): "pgstate_9",
}
# NOTE: a flat table indexed by from * 5 + to, so counting an arc allocates nothing.
# A clean page freed by its owner is pgstate_clean_free; by reclaim, pgstate_9.
ARC_NAMES: list[str | None] = [None] * 25
for _f in range(5):
    for _t in range(5):
        if _f != _t:
            ARC_NAMES[_f * 5 + _t] = _COURSE_ARCS.get((_f, _t), f"pgstate_{_SHORT[_f]}_{_SHORT[_t]}")
ARC_NAMES[ST_CLEAN * 5 + ST_FREE] = "pgstate_clean_free"
PGSTATE_VMSTAT = tuple(sorted({n for n in ARC_NAMES if n} | {"pgstate_9"},
                              key=lambda n: (not n[8:].isdigit(), n)))


def page_state(page) -> int:
    """The course's state of a user page from its flags (ST_* constant); not ST_FREE."""
    f = page.flags
    if f & (PG_active | PG_unevictable):
        return ST_ACTIVE
    if f & PG_writeback:
        return ST_WRITEBACK
    if f & PG_dirty or (f & PG_swapbacked and not f & PG_swapcache):
        return ST_DIRTY
    return ST_CLEAN


def counted_state(page) -> int:
    """The state last counted for the page (ST_FREE: not a user page)."""
    return (page.flags & PGSTATE_MASK) >> PGSTATE_SHIFT


def page_restate(vmstat: dict, page) -> None:
    """Count the arc from the page's last counted state to its state now (nothing for a
    page that is not a user page, or whose state did not change)."""
    f = page.flags
    old = (f & PGSTATE_MASK) >> PGSTATE_SHIFT
    if not old:
        return
    new = page_state(page)
    if new != old:
        page.flags = (f & ~PGSTATE_MASK) | (new << PGSTATE_SHIFT)
        vmstat[ARC_NAMES[old * 5 + new]] += 1


def page_enter(vmstat: dict, page) -> None:
    """A page became a user page (lru_cache_add): the arc from free."""
    new = page_state(page)
    page.flags = (page.flags & ~PGSTATE_MASK) | (new << PGSTATE_SHIFT)
    vmstat[ARC_NAMES[new]] += 1


def page_leave(vmstat: dict, page, reclaimed: bool) -> None:
    """A user page is freed: the arc to free (pgstate_9 for a clean page reclaim freed)."""
    f = page.flags
    old = (f & PGSTATE_MASK) >> PGSTATE_SHIFT
    if not old:
        return
    page.flags = f & ~PGSTATE_MASK
    vmstat["pgstate_9" if reclaimed and old == ST_CLEAN else ARC_NAMES[old * 5]] += 1

# Node and zone state items (instantaneous values, in pages).
STATE_ITEMS = (
    "nr_free_pages",
    "nr_zone_inactive_anon",
    "nr_zone_active_anon",
    "nr_zone_inactive_file",
    "nr_zone_active_file",
    "nr_zone_unevictable",
    "nr_zone_write_pending",
    "nr_mlock",
    "nr_bounce",
    "nr_free_cma",
    "nr_inactive_anon",
    "nr_active_anon",
    "nr_inactive_file",
    "nr_active_file",
    "nr_unevictable",
    "nr_slab_reclaimable",
    "nr_slab_unreclaimable",
    "nr_isolated_anon",
    "nr_isolated_file",
    "nr_anon_pages",
    "nr_mapped",
    "nr_file_pages",
    "nr_dirty",
    "nr_writeback",
    "nr_shmem",
    "nr_swapcached",
    "nr_kernel_stack",
    "nr_page_table_pages",
    "nr_kmap",
    "nr_balloon_pages",
    "nr_dirtied",  # cumulative: file pages that became dirty (folio_account_dirtied)
    "nr_written",  # cumulative: pages whose writeback ended (__folio_end_writeback)
    "nr_throttled_written",  # cumulative: of those, ended while reclaim was throttled on writeback
    # global_dirty_limits, computed when /proc/vmstat is read (procfs.py)
    "nr_dirty_threshold",
    "nr_dirty_background_threshold",
)

# Event counters (monotonic).
EVENT_ITEMS = (
    "pgpgin",
    "pgpgout",
    "pswpin",
    "pswpout",
    "pgalloc_dma",
    "pgalloc_dma32",
    "pgalloc_normal",
    "pgalloc_high",
    "allocstall_dma",
    "allocstall_dma32",
    "allocstall_normal",
    "allocstall_highmem",
    "pgfree",
    "pgactivate",
    "pgdeactivate",
    "pglazyfree",
    "pglazyfreed",
    "pgfault",
    "pgmajfault",
    "pgrefill",
    "pgreuse",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgscan_kswapd",
    "pgscan_direct",
    "pginodesteal",
    "slabs_scanned",
    "kswapd_inodesteal",
    "pageoutrun",
    "pgrotated",
    "oom_kill",
    "pgmigrate_success",
    "pgmigrate_fail",
    "compact_migrate_scanned",
    "compact_free_scanned",
    "compact_isolated",
    "compact_stall",
    "compact_fail",
    "compact_success",
    "compact_daemon_wake",
    "compact_daemon_migrate_scanned",
    "compact_daemon_free_scanned",
    "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked",
    "balloon_inflate",
    "balloon_deflate",
    "balloon_migrate",
    "swap_ra",
    "cow_ksm",
    "zswpin",
    "zswpout",
)

HVSIM_COUNTERS = {
    "kswapd_wake": "times the allocator woke an unbalanced node's kswapd",
    "oom_call": "times the allocator's slow path called the OOM killer",
    "pgalloc_fail": "page allocations that returned NULL",
    "pgalloc_extfrag": "allocations that fell back to another migratetype's free lists (the "
                       "mm_page_alloc_extfrag tracepoint)",
    "pcp_remote_drain": "pages drained from remote zones' per-CPU lists: by vmstat's refresh_cpu_vm_stats "
                        "(6.x drain_zone_pages) or slab's cache_reap (2.6 drain_node_pages); the "
                        "mm_page_pcpu_drain tracepoint",
}


def new_vmstat() -> dict[str, int]:
    stat = dict.fromkeys(STATE_ITEMS, 0)
    stat.update(dict.fromkeys(EVENT_ITEMS, 0))
    stat.update(dict.fromkeys(PGSTATE_VMSTAT, 0))
    stat.update(dict.fromkeys(HVSIM_COUNTERS, 0))
    return stat


class VmstatWork:
    """vmstat_update on every CPU and vmstat_shepherd (mm/vmstat.c, 6.1), a SimPy process.
    Every `vm.stat_interval` seconds (both works are queued with round_jiffies_relative:
    on whole-second ticks), a CPU runs refresh_cpu_vm_stats(true) if its work requeued
    itself (its last refresh changed something) or the shepherd finds it holding a
    counter diff (need_update); a CPU with neither stays idle, and so does the countdown
    of its remote lists. `interval`: callable() -> seconds (the sysctl, read each tick)."""

    def __init__(self, env, alloc, interval) -> None:
        self.env = env
        self.alloc = alloc
        self.interval = interval
        self.runs = 0  # refresh_cpu_vm_stats calls
        self.process = env.process(self._run())

    def _run(self):
        alloc = self.alloc
        queued = [False] * len(alloc.cpu_to_node)
        while True:
            yield self.env.timeout(self.interval())
            for cpu in range(len(queued)):
                if queued[cpu] or alloc.need_update(cpu):
                    queued[cpu] = alloc.refresh_cpu_vm_stats(cpu) > 0
                    self.runs += 1
