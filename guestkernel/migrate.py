"""Page migration (mm/migrate.c): move a page's contents and identity to another frame.

Overview
--------
`migrate_pages(kernel, pages, get_new_page, put_new_page, mode)` moves each isolated LRU
page (taken off its LRU list and counted in NR_ISOLATED_* by the caller, compaction's
isolate_migratepages_block; a migrated page is no longer counted, migrate_folio_done) to a
frame `get_new_page()` hands out, in list order from its head (the caller's list is kept
with its head last, as compaction builds it with list_add):

1. unmap: every PTE that maps the old frame is found through the rmap (anon_vma chain
   or i_mmap). A page whose PTEs do not account for its mapcount, or that is locked,
   under writeback, a KSM or a compound page, fails (-EAGAIN / -EBUSY: put back).
2. copy: the new frame gets the old frame's bytes, `phys.copy(new, old)`, a whole-page
   copy the hypervisor sees (it backs the new frame; the old one keeps its bytes until
   the guest reuses or reports it).
3. move the identity (folio_migrate_mapping / folio_migrate_flags): flags (not the
   frame's own PG_highmem/PG_reserved), _count, _mapcount, mapping, index, private move
   to the new struct page; the page cache slot or swap cache slot now holds the new
   page; each PTE now maps the new frame (remove_migration_ptes) with its bits kept.
4. the new page goes back on the LRU list its flags name (putback), the old struct page
   is freed to the allocator (the last reference of the migration).

Counters: pgmigrate_success, pgmigrate_fail. Costs: the host's copy and touch costs, in
seconds, summed in the returned value.

Movable non-LRU pages: a balloon page (6.x guests, CONFIG_BALLOON_COMPACTION) migrates
through its driver (guestkernel/balloon.py migratepage: no copy, the host told to inflate
the new frame and deflate the old one) and stays off the LRU.

What is left out: page locks and waiting for writeback in MIGRATE_SYNC (hvsim's writes
in flight keep their pages: such a page fails in every mode), zsmalloc pages (no zram in
the guest), KSM pages (the guest runs no ksmd: KSM is the host's), compound (THP) pages, and the
up-to-ten passes over pages that failed with -EAGAIN (a failure here is not transient).
"""

from __future__ import annotations

from .page import (
    PG_anon,
    PG_balloon,
    PG_head,
    PG_highmem,
    PG_ksm,
    PG_locked,
    PG_lru,
    PG_reserved,
    PG_swapbacked,
    PG_swapcache,
    PG_thp,
    PG_thpfile,
    PG_writeback,
)
from .pgtable import PTE_FLAGS_MASK, PTE_PRESENT_MASK
from .units import PAGE_SHIFT

MIGRATE_ASYNC, MIGRATE_SYNC_LIGHT, MIGRATE_SYNC = 0, 1, 2
MIGRATEPAGE_SUCCESS = 0
EAGAIN, ENOMEM, EBUSY = -11, -12, -16

# struct page bits that belong to the frame, not to the page's contents and identity
FRAME_FLAGS = PG_highmem | PG_reserved
# pages migrate_pages refuses (-EAGAIN / -EBUSY), and compaction does not isolate when
# they are compound: a transparent huge page's subpages belong here (PageCompound)
NOT_MIGRATABLE = PG_locked | PG_writeback | PG_ksm | PG_head | PG_thp | PG_thpfile
COMPOUND = PG_head | PG_thp | PG_thpfile
COMPOUND_ORDER = 9  # HPAGE_PMD_ORDER: a transparent huge page's 512 frames


def _mappings(kernel, page) -> list | None:
    """The (page table, vpn) of every PTE mapping `page`, or None if they do not
    account for its mapcount (a mapping hvsim cannot reach: not migratable)."""
    from .memory import rmap_walk

    found = []
    want = page._mapcount + 1

    def one(mm, vma, addr):
        found.append((mm.pgtable, addr >> PAGE_SHIFT))
        return len(found) < want  # every mapping found: stop the walk

    if want:
        rmap_walk(kernel, page, one)
    if len(found) != want:
        return None
    return found


def migrate_page(kernel, old, new, mode: int = MIGRATE_SYNC_LIGHT) -> tuple[int, float]:
    """Move `old` (isolated: off the LRU) to the free frame `new` (_count 1, from the
    migration target allocator). Returns (MIGRATEPAGE_SUCCESS or -errno, seconds). On
    failure nothing changed; the caller keeps both pages."""
    if old.flags & PG_balloon and not old.flags & PG_lru:
        # a movable non-LRU page: its driver's migratepage (virtballoon_migratepage)
        driver = getattr(kernel, "balloon_driver", None)
        if driver is None:
            return EAGAIN, 0.0
        return driver.migratepage(new, old), 0.0
    if old.flags & NOT_MIGRATABLE:
        return EBUSY if old.flags & PG_writeback else EAGAIN, 0.0
    maps = _mappings(kernel, old)
    if maps is None:
        return EAGAIN, 0.0
    phys = kernel.phys
    cost = phys.touch(old.pfn, False)
    cost += phys.copy(new.pfn, old.pfn)
    # the identity moves to the new struct page
    f = old.flags
    new.flags = (new.flags & FRAME_FLAGS) | (f & ~FRAME_FLAGS)
    old.flags = f & FRAME_FLAGS
    new._count, new._mapcount = old._count, old._mapcount
    new.mapping, new.index, new.private = old.mapping, old.index, old.private
    if f & PG_swapcache:
        kernel.swap.swap_cache[new.private] = new
    elif not f & PG_anon and new.mapping is not None:
        pages = getattr(new.mapping, "pages", None)
        if pages is not None and pages.get(new.index) is old:
            pages[new.index] = new
    shift_pfn = new.pfn << PAGE_SHIFT
    for pt, vpn in maps:
        pte = pt.ptes[vpn]
        if pte & PTE_PRESENT_MASK:
            pt.ptes[vpn] = (pte & PTE_FLAGS_MASK) | shift_pfn
            if pt.fresh:
                pt._table_changed(0, vpn >> pt.pte_shift)
    memcgs = getattr(kernel, "memcgs", None)
    if memcgs is not None and memcgs.active:
        memcgs.migrate(old, new)  # mem_cgroup_migrate
    mc = kernel.memcg
    if mc is not None:
        # mem_cgroup_migrate's PGPGIN (the new folio charged, the old one's charge
        # dropped without an event); a mapped page: try_to_migrate's page_remove_rmap and
        # remove_migration_ptes' page_add_*_rmap (NR_ANON_MAPPED / NR_FILE_MAPPED)
        mc.rstat_ones(3 if maps else 1)
    # the old struct page holds only the migration's reference now
    old._count, old._mapcount = 1, -1
    old.mapping = None
    old.index = old.private = 0
    return MIGRATEPAGE_SUCCESS, cost


def migrate_pages(kernel, pages: list, get_new_page, put_new_page, mode: int) -> tuple[int, int, int, float]:
    """migrate_pages: move each page of `pages` (head last) to a frame from
    get_new_page() (None: -ENOMEM, stop). Migrated pages go back on the LRU as their new
    pages and their old frames are freed; the pages left in `pages` are the caller's to
    put back. Returns (nr_succeeded, nr_failed, error, seconds): error is ENOMEM when
    targets ran out, else the number of pages that failed."""
    vm = kernel.vmstat
    reclaim = kernel.reclaim
    free_pages = kernel.free_pages
    succeeded = failed = 0
    cost = 0.0
    err = 0
    remaining = []
    while pages:
        old = pages.pop()  # list_for_each_entry_safe from the head
        new = get_new_page()
        if new is None:
            failed += 1
            remaining.append(old)
            err = ENOMEM
            break
        rc, c = migrate_page(kernel, old, new, mode)
        cost += c
        if rc != MIGRATEPAGE_SUCCESS:
            put_new_page(new)
            failed += 1
            remaining.append(old)
            continue
        succeeded += 1
        if not new.flags & PG_balloon:  # a balloon page is on its driver's list already
            # migrate_folio_done: the isolated LRU page no longer counts in NR_ISOLATED_*
            vm["nr_isolated_anon" if new.flags & PG_swapbacked else "nr_isolated_file"] -= 1
            reclaim._putback(new, age=False)  # folio_putback_lru: no workingset aging
        free_pages(old)
    vm["pgmigrate_success"] += succeeded
    vm["pgmigrate_fail"] += failed
    # what was not migrated stays on the caller's list, in its order
    remaining.reverse()
    pages.extend(remaining)
    return succeeded, failed, err if err else failed, cost
