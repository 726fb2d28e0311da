"""struct page: one descriptor per guest frame, and the list_head they are chained on.

A `Page` is kept small (nine slots, about 140 bytes with its pfn) because a 4 GiB guest has
a million of them. Like Linux, a page sits on at most one list at a time through its `lru`
link (`lru_prev`/`lru_next`): a buddy free list, a per-CPU list, an LRU list or a slab list.

`_count` is the reference count (0 when free), `_mapcount` the number of PTEs mapping the
page minus one (-1: unmapped). `private` holds the buddy order of a free block head (with
PG_buddy set), a swap entry for a page in the swap cache, or slab bookkeeping.
"""

from __future__ import annotations

# Page flags (include/linux/page-flags.h names). Bit positions are hvsim's own.
PG_locked = 1 << 0
PG_writeback = 1 << 1
PG_referenced = 1 << 2
PG_uptodate = 1 << 3
PG_dirty = 1 << 4
PG_lru = 1 << 5
PG_head = 1 << 6
PG_active = 1 << 7
PG_workingset = 1 << 8
PG_reserved = 1 << 9
PG_private = 1 << 10
PG_reclaim = 1 << 11
PG_swapbacked = 1 << 12
PG_unevictable = 1 << 13
PG_mlocked = 1 << 14
PG_swapcache = 1 << 15
PG_slab = 1 << 16
PG_buddy = 1 << 17  # a free block head in the buddy allocator; order in `private`
PG_highmem = 1 << 18  # frame lies in ZONE_HIGHMEM (no permanent kernel mapping)
PG_anon = 1 << 19  # PageAnon: mapping is an anon_vma (Linux tags the pointer's low bit)
PG_ksm = 1 << 20
PG_balloon = 1 << 21  # held by the balloon driver (page_type PG_offline in 6.x)
PG_pgtable = 1 << 22  # a page-table page
PG_zero = 1 << 23  # the shared zero page
PG_reported = 1 << 24  # a free block head reported to the host (mm/page_reporting.c)
PG_thpfile = 1 << 25  # hvsim: a subpage of a shmem THP not yet split (huge_memory.py, shmem THP)
PG_thp = 1 << 31  # hvsim: a subpage of a transparent huge page not yet split (huge_memory.py)
# Bits 27-29: the course's page state last counted for this page (vmstat.page_restate:
# 0 free, 1 active, 2 inactive dirty, 3 being written, 4 inactive clean), not a Linux flag.
PGSTATE_SHIFT = 27
PGSTATE_MASK = 7 << PGSTATE_SHIFT

PAGE_FLAG_NAMES = {
    PG_locked: "locked",
    PG_writeback: "writeback",
    PG_referenced: "referenced",
    PG_uptodate: "uptodate",
    PG_dirty: "dirty",
    PG_lru: "lru",
    PG_head: "head",
    PG_active: "active",
    PG_workingset: "workingset",
    PG_reserved: "reserved",
    PG_private: "private",
    PG_reclaim: "reclaim",
    PG_swapbacked: "swapbacked",
    PG_unevictable: "unevictable",
    PG_mlocked: "mlocked",
    PG_swapcache: "swapcache",
    PG_slab: "slab",
    PG_buddy: "buddy",
    PG_highmem: "highmem",
    PG_anon: "anon",
    PG_ksm: "ksm",
    PG_balloon: "balloon",
    PG_pgtable: "pgtable",
    PG_zero: "zero",
    PG_reported: "reported",
    PG_thp: "thp",
    PG_thpfile: "thpfile",
}

# Flags a page must not carry when it is freed to the allocator (PAGE_FLAGS_CHECK_AT_FREE).
PAGE_FLAGS_CHECK_AT_FREE = (
    PG_lru | PG_locked | PG_private | PG_writeback | PG_reserved | PG_slab | PG_active
    | PG_unevictable | PG_mlocked | PG_swapcache | PG_buddy
)


class Page:
    """struct page. `pfn` is the guest frame number the descriptor stands for."""

    __slots__ = (
        "pfn",
        "flags",
        "_count",
        "_mapcount",
        "mapping",
        "index",
        "private",
        "lru_prev",
        "lru_next",
    )

    def __init__(self, pfn: int, flags: int = 0) -> None:
        self.pfn = pfn
        self.flags = flags
        self._count = 0
        self._mapcount = -1
        self.mapping = None
        self.index = 0
        self.private = 0
        self.lru_prev = None
        self.lru_next = None

    def page_count(self) -> int:
        return self._count

    def page_mapcount(self) -> int:
        return self._mapcount + 1

    def flag_names(self) -> list[str]:
        return [name for bit, name in PAGE_FLAG_NAMES.items() if self.flags & bit]

    def __repr__(self) -> str:
        return (
            f"<Page pfn={self.pfn:#x} count={self._count} mapcount={self._mapcount + 1} "
            f"flags={'|'.join(self.flag_names()) or '0'}>"
        )


class PageList:
    """A list_head: circular, doubly linked through the pages' `lru_prev`/`lru_next`.

    The head is a sentinel. `add` inserts at the head (list_add), `add_tail` at the tail
    (list_add_tail); `first()` is list_first_entry, `last()` list_last_entry. `nr` counts
    the entries. Removal of any page is O(1).
    """

    __slots__ = ("lru_prev", "lru_next", "nr", "name")

    def __init__(self, name: str = "") -> None:
        self.lru_prev = self
        self.lru_next = self
        self.nr = 0
        self.name = name

    def __len__(self) -> int:
        return self.nr

    def __bool__(self) -> bool:
        return self.lru_next is not self

    def add(self, page: Page) -> None:
        nxt = self.lru_next
        page.lru_prev = self
        page.lru_next = nxt
        nxt.lru_prev = page
        self.lru_next = page
        self.nr += 1

    def add_tail(self, page: Page) -> None:
        prev = self.lru_prev
        page.lru_next = self
        page.lru_prev = prev
        prev.lru_next = page
        self.lru_prev = page
        self.nr += 1

    def remove(self, page: Page) -> None:
        prev = page.lru_prev
        nxt = page.lru_next
        prev.lru_next = nxt
        nxt.lru_prev = prev
        page.lru_prev = None
        page.lru_next = None
        self.nr -= 1

    def first(self) -> Page | None:
        p = self.lru_next
        return None if p is self else p

    def last(self) -> Page | None:
        p = self.lru_prev
        return None if p is self else p

    def pop(self) -> Page | None:
        """Remove and return the first entry (head side)."""
        p = self.lru_next
        if p is self:
            return None
        self.remove(p)
        return p

    def pop_tail(self) -> Page | None:
        p = self.lru_prev
        if p is self:
            return None
        self.remove(p)
        return p

    def __iter__(self):
        """Head to tail. Do not change the list while iterating."""
        p = self.lru_next
        while p is not self:
            nxt = p.lru_next
            yield p
            p = nxt

    def reversed(self):
        """Tail to head."""
        p = self.lru_prev
        while p is not self:
            prv = p.lru_prev
            yield p
            p = prv

    def pfns(self) -> list[int]:
        return [p.pfn for p in self]
