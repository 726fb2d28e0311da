"""kmap/kunmap for highmem pages on i386 (mm/highmem.c).

Lowmem pages are permanently mapped in the kernel's direct map, so kmap just returns their
address. A HighMem page needs a slot in the persistent kmap area (LAST_PKMAP entries at
PKMAP_BASE); slots are reference counted and recycled when the area is full
(flush_all_zero_pkmaps). kmap_atomic uses a per-CPU fixmap slot instead and never sleeps.
"""

from __future__ import annotations

from .page import Page, PG_highmem
from .page_alloc import KernelBug, PageAllocator
from .units import PAGE_SHIFT

LAST_PKMAP = {False: 1024, True: 512}  # without / with PAE
PKMAP_BASE = {False: 0xFF800000, True: 0xFF600000}
KM_TYPE_NR = 20  # fixmap kmap_atomic slots per CPU
FIXADDR_KMAP_BEGIN = 0xFFA00000


class Kmap:
    """The persistent kmap area and per-CPU atomic slots of one i386 kernel."""

    def __init__(self, alloc: PageAllocator, pae: bool, cpus: int) -> None:
        self.alloc = alloc
        self.nslots = LAST_PKMAP[pae]
        self.base = PKMAP_BASE[pae]
        self.count = [0] * self.nslots  # pkmap_count: 0 free, 1 mapped unused, n>1 n-1 users
        self.slot_page: list[Page | None] = [None] * self.nslots
        self.page_slot: dict[int, int] = {}  # pfn -> slot
        self.last_pkmap_nr = 0
        self.atomic: list[list[Page | None]] = [[None] * KM_TYPE_NR for _ in range(cpus)]
        self.flushes = 0  # flush_all_zero_pkmaps runs (TLB flushes)

    def kmap(self, page: Page) -> int:
        if not page.flags & PG_highmem:
            return self.alloc.page_address(page)
        slot = self.page_slot.get(page.pfn)
        if slot is None:
            slot = self._map_new_virtual(page)
        self.count[slot] += 1
        return self.base + (slot << PAGE_SHIFT)

    def _map_new_virtual(self, page: Page) -> int:
        for _attempt in range(2):
            for _ in range(self.nslots):
                self.last_pkmap_nr = (self.last_pkmap_nr + 1) % self.nslots
                if self.last_pkmap_nr == 0:
                    self._flush_all_zero_pkmaps()
                slot = self.last_pkmap_nr
                if self.count[slot] == 0:
                    self.count[slot] = 1
                    self.slot_page[slot] = page
                    self.page_slot[page.pfn] = slot
                    self.alloc.vmstat["nr_kmap"] += 1
                    return slot
            self._flush_all_zero_pkmaps()
        # Linux would sleep until a kunmap frees a slot; with no one else to run, that is a
        # deadlock in the caller.
        raise KernelBug("kmap: all persistent kmap slots are in use")

    def _flush_all_zero_pkmaps(self) -> None:
        self.flushes += 1
        for slot in range(self.nslots):
            if self.count[slot] == 1:
                self.count[slot] = 0
                page = self.slot_page[slot]
                self.slot_page[slot] = None
                del self.page_slot[page.pfn]
                self.alloc.vmstat["nr_kmap"] -= 1

    def kunmap(self, page: Page) -> None:
        if not page.flags & PG_highmem:
            return
        slot = self.page_slot.get(page.pfn)
        if slot is None or self.count[slot] < 2:
            raise KernelBug(f"kunmap of pfn {page.pfn:#x} that is not kmapped")
        self.count[slot] -= 1

    def kmap_atomic(self, page: Page, cpu: int = 0) -> int:
        if not page.flags & PG_highmem:
            return self.alloc.page_address(page)
        slots = self.atomic[cpu]
        for idx in range(KM_TYPE_NR):
            if slots[idx] is None:
                slots[idx] = page
                return FIXADDR_KMAP_BEGIN + ((cpu * KM_TYPE_NR + idx) << PAGE_SHIFT)
        raise KernelBug("kmap_atomic: nesting deeper than KM_TYPE_NR")

    def kunmap_atomic(self, addr: int, cpu: int = 0) -> None:
        if addr < FIXADDR_KMAP_BEGIN:
            return
        idx = ((addr - FIXADDR_KMAP_BEGIN) >> PAGE_SHIFT) - cpu * KM_TYPE_NR
        if not 0 <= idx < KM_TYPE_NR or self.atomic[cpu][idx] is None:
            raise KernelBug(f"kunmap_atomic of {addr:#x} not mapped on cpu {cpu}")
        self.atomic[cpu][idx] = None

    def mapped(self) -> int:
        return sum(1 for c in self.count if c > 1)
