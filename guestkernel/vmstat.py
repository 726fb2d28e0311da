"""/proc/vmstat: the counters every mechanism increments in place (mm/vmstat.c).

`kernel.vmstat` is one dict of ints. Linux names first, in Linux's order; subsystems add
their own with `vmstat.setdefault(name, 0)` at boot so that /proc/vmstat lists them.
hvsim-specific counters (no Linux equivalent) are listed in HVSIM_COUNTERS with a line of
documentation each. The page-fault outcome counters (fault_demand_zero, fault_cow, ...)
are listed and documented in fault.py; the page-state transitions pgstate_1..9 in vmscan.py.
"""

from __future__ import annotations

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
    "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked",
    "balloon_inflate",
    "balloon_deflate",
    "swap_ra",
    "cow_ksm",
    "zswpin",
    "zswpout",
)

HVSIM_COUNTERS = {
    "kswapd_wake": "times the allocator woke an unbalanced node's kswapd",
    "oom_call": "times the allocator's slow path called the OOM killer",
    "pgalloc_fail": "page allocations that returned NULL",
}


def new_vmstat() -> dict[str, int]:
    stat = dict.fromkeys(STATE_ITEMS, 0)
    stat.update(dict.fromkeys(EVENT_ITEMS, 0))
    stat.update(dict.fromkeys(HVSIM_COUNTERS, 0))
    return stat
