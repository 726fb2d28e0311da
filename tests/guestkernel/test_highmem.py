"""kmap/kunmap of HighMem pages on i386."""

from __future__ import annotations

import pytest

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.highmem import FIXADDR_KMAP_BEGIN, PKMAP_BASE
from guestkernel.kernel import Kernel
from guestkernel.page import PG_highmem
from guestkernel.page_alloc import KernelBug


@pytest.fixture(scope="module")
def k():
    return Kernel(KernelConfig(memory="2GiB", arch="i386"))


def test_highuser_pages_come_from_highmem_and_need_kmap(k):
    page = k.alloc_pages(G.GFP_HIGHUSER)
    assert page.flags & PG_highmem and page.pfn >= 229376
    with pytest.raises(KernelBug):
        k.page_address(page)
    addr = k.kmap(page)
    assert PKMAP_BASE[False] <= addr < PKMAP_BASE[False] + (1024 << 12)
    assert k.kmap(page) == addr  # a second kmap shares the slot
    assert k.vmstat["nr_kmap"] == 1
    k.kunmap(page)
    k.kunmap(page)
    with pytest.raises(KernelBug):
        k.kunmap(page)
    k.free_pages(page)


def test_lowmem_kmap_is_the_direct_map(k):
    page = k.alloc_pages(G.GFP_KERNEL)
    assert not page.flags & PG_highmem
    assert k.kmap(page) == 0xC0000000 + (page.pfn << 12) == k.page_address(page)
    assert k.virt_to_page(k.page_address(page)) is page
    k.free_pages(page)


def test_pkmap_slots_are_recycled_when_unused():
    k = Kernel(KernelConfig(memory="2GiB", arch="i386"))
    pages = [k.alloc_pages(G.GFP_HIGHUSER) for _ in range(1100)]
    for p in pages:
        k.kmap(p)
        k.kunmap(p)
    # 1100 > LAST_PKMAP = 1024: unused mappings were flushed to make room
    assert k.kmap_area.flushes >= 1
    assert k.vmstat["nr_kmap"] <= 1024
    held = [k.kmap(p) for p in pages[:1023]]
    assert len(set(held)) == 1023
    k.kmap(pages[1023])  # the last free slot
    with pytest.raises(KernelBug):  # every slot held: kmap would sleep forever
        k.kmap(pages[1024])


def test_kmap_atomic_slots(k):
    page = k.alloc_pages(G.GFP_HIGHUSER)
    addr = k.kmap_atomic(page, cpu=0)
    assert addr == FIXADDR_KMAP_BEGIN
    addr2 = k.kmap_atomic(page, cpu=0)
    assert addr2 == FIXADDR_KMAP_BEGIN + 4096
    k.kunmap_atomic(addr2)
    k.kunmap_atomic(addr)
    with pytest.raises(KernelBug):
        k.kunmap_atomic(addr)
    k.free_pages(page)


def test_pae_guest_above_4gib_has_big_highmem():
    k = Kernel(KernelConfig(memory="6GiB", arch="i386"))
    assert k.config.pae
    high = k.page_alloc.zones[-1]
    assert high.name == "HighMem" and high.present_pages == (6 << 18) - 229376
    assert k.kmap_area.nslots == 512
