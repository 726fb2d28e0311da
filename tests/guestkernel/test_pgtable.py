"""Page tables: PTE encoding, levels by arch, table pages allocated and freed."""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page import PG_pgtable
from guestkernel.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_RW,
    _PAGE_USER,
    PageTable,
    is_swap_pte,
    mk_pte,
    pgtable_levels,
    pte_pfn,
    pte_present,
    pte_to_swp_entry,
    swp_entry_to_pte,
)
from guestkernel.vma import validate_mm

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED


def boot(**kw):
    k = Kernel(KernelConfig(**kw))
    if 1 not in k.tasks:
        k.spawn("init")
    return k


def test_pte_encoding():
    pte = mk_pte(0x1234, True, True, False)
    assert pte_pfn(pte) == 0x1234 and pte_present(pte)
    assert pte & (_PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX) == (
        _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX)
    none = mk_pte(7, False, False, True)
    assert none & _PAGE_PROTNONE and not none & _PAGE_PRESENT and pte_present(none)
    sw = swp_entry_to_pte(0xABCDE)
    assert is_swap_pte(sw) and not pte_present(sw) and pte_to_swp_entry(sw) == 0xABCDE
    assert not is_swap_pte(pte)


@pytest.mark.parametrize("arch,pae,levels", [("x86_64", False, 4), ("i386", False, 2),
                                             ("i386", True, 3)])
def test_levels(arch, pae, levels):
    assert pgtable_levels(arch, pae) == levels


def test_x86_64_first_touch_allocates_three_tables():
    k = boot(memory="128MiB")
    t = k.spawn("t")
    n0 = k.vmstat["nr_page_table_pages"]
    b0 = t.mm.pgtables_bytes
    t.mmap(0x40000000, P, RW, ANON)
    t.access(0x40000000, True)
    assert k.vmstat["nr_page_table_pages"] == n0 + 3  # PUD (low 512 GiB), PMD, PTE
    assert t.mm.pgtables_bytes == b0 + 3 * P
    # the same 2 MiB: no new table; the next 2 MiB: one PTE table
    t.mmap(0x40001000, 0x200000, RW, ANON)
    t.access(0x40001000, True)
    assert k.vmstat["nr_page_table_pages"] == n0 + 3
    t.access(0x40200000, True)
    assert k.vmstat["nr_page_table_pages"] == n0 + 4
    tables = t.mm.pgtable.tables
    assert all(pg.flags & PG_pgtable for level in tables for pg in level.values())
    validate_mm(t.mm)


def test_i386_two_levels_4mib_tables():
    k = boot(memory="128MiB", arch="i386")
    t = k.spawn("t")
    # the fresh process: PGD + one PTE table for the stack page
    assert t.mm.pgtable.nr_tables == 2 and t.mm.pgtables_bytes == P
    t.mmap(0x40000000, 0x400000, RW, ANON)
    t.access(0x40000000, True)
    t.access(0x403FF000, True)  # same 4 MiB: same table
    assert t.mm.pgtables_bytes == 2 * P
    validate_mm(t.mm)


def test_i386_pae_preallocates_user_pmds():
    k = boot(memory="128MiB", arch="i386", pae=True)
    t = k.spawn("t")
    # 3 PMDs preallocated + the stack's PTE table; PGD not counted in pgtables_bytes
    assert t.mm.pgtables_bytes == 4 * P and t.mm.pgtable.nr_tables == 5
    t.mmap(0x40000000, P, RW, ANON)
    t.access(0x40000000, True)
    assert t.mm.pgtables_bytes == 5 * P
    t.munmap(0x40000000, P)
    assert t.mm.pgtables_bytes == 4 * P  # the PTE table goes, the PMDs stay
    validate_mm(t.mm)


def test_exit_frees_all_tables():
    k = boot(memory="128MiB")
    n0 = k.vmstat["nr_page_table_pages"]
    t = k.spawn("t")
    t.mmap(0x40000000, 0x1000000, RW, ANON)
    t.access_range(0x40000000, 0x1000000, True)
    assert k.vmstat["nr_page_table_pages"] > n0 + 8
    t.exit(0)
    assert k.vmstat["nr_page_table_pages"] == n0


def test_pgd_alloc_failure_is_memoryerror():
    k = boot(memory="128MiB")
    k.alloc_pages = lambda *a, **kw: None
    with pytest.raises(MemoryError):
        PageTable(k)


def test_free_pgtables_respects_floor_and_ceiling():
    pt = PageTable(None)  # bookkeeping only
    base = 0x40000000 >> 12
    for vpn in (base, base + 512, base + 1024):  # three PTE tables in one PMD
        assert pt.set_pte_new(vpn, mk_pte(1, True, False, True))
    for vpn in (base, base + 512, base + 1024):
        pt.clear_pte(vpn)
    # free only [2 MiB, 4 MiB) part, with neighbours right next to it: nothing spans
    # beyond, so exactly that PTE table goes
    freed = pt.free_pgtables((base + 512) << 12, (base + 1024) << 12,
                             (base + 512) << 12, (base + 1024) << 12)
    assert freed == 1 and (base + 512) >> 9 not in pt.counts[0]
    # a floor inside the first table keeps it
    freed = pt.free_pgtables(base << 12, (base + 512) << 12, (base + 1) << 12, 1 << 64)
    assert freed == 0
    freed = pt.free_pgtables(base << 12, (base + 1536) << 12, 0, 1 << 64)
    assert freed == 2 + 1 + 1  # two PTE tables, then the PMD and the PUD
    pt.validate(None)
