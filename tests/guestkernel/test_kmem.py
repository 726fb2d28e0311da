"""Guest kernel memory as the host finds it (issue 12 section 2; issue 14 init_on_*):
slab, page tables, memmap and kernel stacks hold the bytes Linux puts there, KASLR moves
kernel pointers per boot, and the boot reservation is the measured Debian 12 kernel's."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.kmem import (
    PAGE_TYPE_BUDDY,
    STACK_END_MAGIC,
    KernelLayout,
    PgtablePage,
    x86_pte,
)
from guestkernel.page import PG_buddy, PG_pgtable, PG_slab
from guestkernel.physmem import ZERO_PAGE

DATA = Path(__file__).resolve().parents[1] / "data"
PAGE = 4096


def _kernel(**kw) -> Kernel:
    kw.setdefault("memory", "128MiB")
    return Kernel(KernelConfig(**kw))


def _touch_anon(task, pages: int, write: bool = True) -> int:
    addr = task.mmap(0, pages * PAGE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(pages):
        task.access(addr + i * PAGE, write)
    return addr


# ------------------------------------------------------------------ backed on the host
def test_slab_and_pagetable_frames_of_a_20_process_guest_are_backed_and_not_zero():
    """Issue 12's acceptance: a guest's slab and page-table frames are backed on the host
    and not zero (today's 119 of 119 slab pages of a 20-process guest were never backed)."""
    from hypervisor.host import Host, HostConfig
    from hypervisor.p2m import P2M_NONE

    host = Host(HostConfig(memory="1GiB", sharing=False, compression=False))
    vm = host.create_vm("g", KernelConfig(memory="256MiB"), balloon=False)
    k = vm.kernel
    for i in range(20):
        _touch_anon(k.spawn(f"p{i}"), 8)
    slab = [p.pfn for p in k.mem_map if p is not None and p.flags & PG_slab]
    pgtable = [p.pfn for p in k.mem_map if p is not None and p.flags & PG_pgtable]
    assert len(slab) >= 100 and len(pgtable) >= 4 * 21  # PGD, PUD, PMD, PTE per mm
    for pfn in slab + pgtable:
        assert vm.p2m.state[pfn] != P2M_NONE, f"pfn {pfn:#x} not backed"
    # a slab page is not zero where an allocated object or the slab's descriptor lies in
    # it; a page of neither (the unused tail of a task_struct slab) holds the frame's
    # earlier bytes: zeros for a frame never used before. Every page table has an entry.
    written = 0
    for pfn in slab:
        page = k.mem_map[pfn]
        cache, s = page.lru_next, page.lru_prev
        lo = k.page_address(page)
        objs = [s.s_mem + i * cache.buffer_size for i, g in enumerate(s.gens) if g > 0]
        has = any(o < lo + PAGE and o + cache.buffer_size > lo for o in objs)
        has |= not cache.off_slab and lo <= s.addr < lo + PAGE
        assert (vm.load(pfn) != ZERO_PAGE) == has, (cache.name, pfn)
        written += has
    assert written >= 90
    assert all(vm.load(pfn) != ZERO_PAGE for pfn in pgtable)
    # the memmap and kernel stacks too
    assert all(vm.p2m.state[pfn] != P2M_NONE for pfn, _ in k.page_alloc.memmap_frames)
    for t in k.tasks.values():  # magic at the bottom, registers at the top, zeros between
        assert [vm.load(p.pfn) != ZERO_PAGE for p in t.stack] == [True, False, False, True]


# ------------------------------------------------------------------ page tables
def _pte_table_bytes(k, task, addr) -> bytes:
    pt = task.mm.pgtable
    page = pt.tables[0][(addr >> 12) >> pt.pte_shift]
    return k.phys.load(page.pfn), page


def test_x86_64_pte_in_its_table_page_has_the_hardware_format():
    """arch/x86/include/asm/pgtable_types.h: _PAGE_PRESENT 0x1, _RW 0x2, _USER 0x4,
    _ACCESSED 0x20, _DIRTY 0x40, _SOFT_DIRTY 0x800 (pte_mkdirty sets both), _NX bit 63;
    the frame number from bit 12; entry i of a PTE table maps address bits 12-20 = i."""
    k = _kernel()
    t = k.spawn("a")
    addr = _touch_anon(t, 3)
    data, _ = _pte_table_bytes(k, t, addr)
    for i in range(3):
        vpn = (addr >> 12) + i
        entry = struct.unpack_from("<Q", data, (vpn & 511) * 8)[0]
        pfn = t.mm.pgtable.ptes[vpn] >> 12
        assert entry == (pfn << 12) | 0x1 | 0x2 | 0x4 | 0x20 | 0x40 | 0x800 | (1 << 63)
    # a read-only touch of fresh anon memory maps the zero page: present, not RW, not dirty
    ro = _touch_anon(t, 1, write=False)
    data, _ = _pte_table_bytes(k, t, ro)
    entry = struct.unpack_from("<Q", data, ((ro >> 12) & 511) * 8)[0]
    assert entry == (k.zero_pfn << 12) | 0x1 | 0x4 | 0x20 | (1 << 63)


def test_upper_levels_point_at_the_tables_below_with_page_table_bits():
    """pgd/pud/pmd entries: the table's frame | _PAGE_TABLE (0x67); the PGD's kernel half
    (entries 256..511) is init_mm's, the same in every process of one guest."""
    k = _kernel()
    a, b = k.spawn("a"), k.spawn("b")
    addr = _touch_anon(a, 1)
    _touch_anon(b, 1)
    pt = a.mm.pgtable
    vpn = addr >> 12
    for level in (1, 2):
        child = pt.tables[level - 1][vpn >> pt.shifts[level - 1]]
        table = pt.tables[level][vpn >> pt.shifts[level]]
        idx = (vpn >> pt.shifts[level - 1]) & 511
        assert struct.unpack_from("<Q", k.phys.load(table.pfn), idx * 8)[0] == (child.pfn << 12) | 0x67
    pgd = k.phys.load(pt.pgd.pfn)
    pud = pt.tables[2][vpn >> 27]
    assert struct.unpack_from("<Q", pgd, ((vpn >> 27) & 511) * 8)[0] == (pud.pfn << 12) | 0x67
    assert pgd[2048:] == k.phys.load(b.mm.pgtable.pgd.pfn)[2048:] != bytes(2048)


def test_swap_entry_pte_format_of_x86_64_and_i386():
    """pgtable_64.h: __swp_entry(type, offset) = type << 59 | (~offset << 14) >> 5 (the
    offset inverted, L1TF); pgtable-2level.h: offset << 9 (type 0), no NX on 2-level."""
    offset = 0x1234
    hv = (offset << 12) | 0x400
    mask = (1 << 64) - 1
    assert x86_pte(hv, "x86_64", False) == ((~offset << 14) & mask) >> 5
    assert x86_pte(hv, "i386", False) == offset << 9
    # a present PTE on i386 2-level: 4 bytes, NX dropped
    assert x86_pte((5 << 12) | 0x1 | 0x2 | 0x4 | 0x20 | 0x200, "i386", False) == (5 << 12) | 0x27


def test_i386_page_tables_use_4_byte_entries_and_pae_8_byte():
    for pae, width in ((False, 4), (True, 8)):
        k = _kernel(arch="i386", era="2.6", pae=pae, memory="256MiB")
        t = k.spawn("a")
        addr = _touch_anon(t, 1)
        pt = t.mm.pgtable
        vpn = addr >> 12
        page = pt.tables[0][vpn >> pt.pte_shift]
        entries = PAGE // width
        fmt = "<Q" if width == 8 else "<I"
        entry = struct.unpack_from(fmt, k.phys.load(page.pfn), (vpn % entries) * width)[0]
        pfn = pt.ptes[vpn] >> 12
        want = (pfn << 12) | 0x67 | 0x800
        if pae:
            want |= 1 << 63  # NX with PAE
        assert entry == want


def test_page_table_bytes_are_made_lazily_and_written_once_per_host_read():
    """A PTE change makes no bytes; once a host has read a table, the next change writes
    that frame once (touch for write + store), further changes until the next read none."""
    k = _kernel()
    t = k.spawn("a")
    addr = t.mmap(0x40000000, 16 * PAGE, U.PROT_READ | U.PROT_WRITE,  # one PTE table's span
                  U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.access(addr, True)
    _, page = _pte_table_bytes(k, t, addr)
    kmem = k.kmem
    assert page.pfn in kmem.fresh  # we just read it
    writes = kmem.writes
    for _ in range(20):
        t.access(addr, True)  # no PTE change: no write
    assert kmem.writes == writes
    for i in range(1, 9):
        t.access(addr + i * PAGE, True)
    assert kmem.writes == writes + 1 and page.pfn not in kmem.fresh
    data, _ = _pte_table_bytes(k, t, addr)  # the host reads again: all 9 entries there
    assert sum(1 for i in range(512) if struct.unpack_from("<Q", data, i * 8)[0]) == 9


def _host_vm():
    """A guest on a host with a compression cache that holds zstd output: a frame the
    host compressed holds the bytes it had then, until a guest write brings it back
    (decompress, then the store)."""
    from hypervisor.host import Host, HostConfig

    host = Host(HostConfig(memory="1GiB", sharing=False, compression=True))
    vm = host.create_vm("g", KernelConfig(memory="128MiB"), balloon=False)
    vm.zcache.keep_compressed = True  # (by default it keeps the page object it was given)
    return vm


def _host_copy(vm, pfn: int) -> None:
    """The host reads a frame and keeps a copy: it compresses it (P2M_COMPRESSED)."""
    from hypervisor.p2m import P2M_COMPRESSED

    vm.load(pfn)
    assert vm.evict(pfn, swap=False) >= 0 and vm.p2m.state[pfn] == P2M_COMPRESSED


def _entries(data: bytes, n: int) -> list[int]:
    return list(struct.unpack_from(f"<{n}Q", data))


def test_mprotect_read_only_reaches_the_hosts_copy_of_the_page_table():
    """change_protection write-protects the PTEs (mprotect.c): the table's frame is
    written once (not once per PTE), and the host's bytes of it show _PAGE_RW (0x2)
    cleared in every entry, where its copy from before the mprotect had it set."""
    vm = _host_vm()
    k = vm.kernel
    t = k.spawn("a")
    addr = t.mmap(0x40000000, 16 * PAGE, U.PROT_READ | U.PROT_WRITE,
                  U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    for i in range(16):
        t.access(addr + i * PAGE, True)
    page = t.mm.pgtable.tables[0][(addr >> 12) >> 9]
    first = (addr >> 12) & 511
    before = _entries(vm.load(page.pfn)[first * 8:], 16)
    assert all(e & 0x2 for e in before)
    _host_copy(vm, page.pfn)
    writes = k.kmem.writes
    assert t.mprotect(addr, 16 * PAGE, U.PROT_READ) == 0
    assert k.kmem.writes == writes + 1
    after = _entries(vm.load(page.pfn)[first * 8:], 16)
    assert after == [e & ~0x2 for e in before]


def test_an_accessed_bit_set_again_after_page_referenced_reaches_the_host():
    """page_referenced clears _PAGE_ACCESSED (0x20) in the PTE (rmap.c,
    page_referenced_one); the next access sets it again (the MMU's 0 -> 1 transition):
    each transition writes the table's frame, so the host's bytes show A cleared, then
    set; touching it again with A already set writes nothing."""
    from guestkernel.memory import page_referenced

    vm = _host_vm()
    k = vm.kernel
    t = k.spawn("a")
    addr = t.mmap(0x40000000, PAGE, U.PROT_READ | U.PROT_WRITE,
                  U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.access(addr, True)
    pt = t.mm.pgtable
    table = pt.tables[0][(addr >> 12) >> 9]
    off = ((addr >> 12) & 511) * 8
    entry = struct.unpack_from("<Q", vm.load(table.pfn), off)[0]
    assert entry & 0x20
    _host_copy(vm, table.pfn)
    assert page_referenced(k, k.mem_map[(entry & 0x000FFFFFFFFFF000) >> 12])[0] == 1
    assert struct.unpack_from("<Q", vm.load(table.pfn), off)[0] == entry & ~0x20
    _host_copy(vm, table.pfn)
    writes = k.kmem.writes
    t.access(addr, False)
    assert k.kmem.writes == writes + 1
    assert struct.unpack_from("<Q", vm.load(table.pfn), off)[0] == entry
    t.access(addr, False)  # A already set: no transition, no write
    assert k.kmem.writes == writes + 1


def test_a_struct_page_refcount_change_reaches_the_hosts_copy_of_the_memmap():
    """The memmap frame follows the struct pages (_refcount at offset 52 of the 64-byte
    struct page, x86_64 6.1): after the host copied the frame, a refcount change writes
    it once and the host's bytes show the new count; further changes before the host
    reads it again write nothing; an hvsim-only flag (the course's page state bits)
    changes no byte and writes nothing."""
    from guestkernel.page import PGSTATE_MASK, Page

    vm = _host_vm()
    k = vm.kernel
    page = k.alloc_pages(G.GFP_KERNEL, 0)
    alloc = k.page_alloc
    mpfn = next(m for m, first in alloc.memmap_frames if first <= page.pfn < first + 64)
    off = (page.pfn % 64) * 64 + 52
    assert struct.unpack_from("<I", vm.load(mpfn), off)[0] == 1
    _host_copy(vm, mpfn)
    writes = k.kmem.writes
    page.flags ^= PGSTATE_MASK & (1 << 27)
    assert k.kmem.writes == writes
    page._count += 1  # get_page
    assert k.kmem.writes == writes + 1
    assert type(page) is Page  # the frame's struct pages are no longer watched
    assert struct.unpack_from("<I", vm.load(mpfn), off)[0] == 2
    _host_copy(vm, mpfn)
    page._count += 1
    page._count -= 2
    assert k.kmem.writes == writes + 2
    assert struct.unpack_from("<I", vm.load(mpfn), off)[0] == 1
    k.free_pages(page, 0)


def test_a_freed_page_table_reads_as_an_empty_table():
    k = _kernel()
    t = k.spawn("a")
    addr = _touch_anon(t, 1)
    pt = t.mm.pgtable
    recipe = PgtablePage(k.kmem, pt, 0, (addr >> 12) >> 9, pt.tables[0][(addr >> 12) >> 9])
    assert recipe.materialize() != ZERO_PAGE
    t.munmap(addr, PAGE)
    assert recipe.materialize() == ZERO_PAGE


# ------------------------------------------------------------------ slab
def test_slab_objects_hold_their_structure_and_keep_their_bytes_when_freed():
    """Classic SLAB keeps its free list in the bufctl array, so a freed object keeps the
    bytes its user wrote (mm/slab.c); with init_on_free (mm/slab.h slab_want_init_on_free)
    they are zeroed. An object's empty list_heads point at themselves."""
    for init_on_free in (False, True):
        k = _kernel(init_on_free=init_on_free)
        cache = k.kmem_cache_create("vm_area_struct_test", 200)
        obj = k.kmem_cache_alloc(cache)
        page = k.virt_to_page(obj)
        off = obj - k.page_address(page)
        before = k.phys.load(page.pfn)[off:off + 200]
        assert before != bytes(200)
        k.kmem_cache_free(cache, obj)
        after = k.phys.load(page.pfn)[off:off + 200]
        assert after == (bytes(200) if init_on_free else before)


def test_slab_descriptor_and_bufctl_are_on_the_slab_page():
    """An on-slab cache's first page holds struct slab (list, colouroff, s_mem, inuse, free,
    nodeid) then kmem_bufctl_t bufctl[num] (mm/slab.c, 2.6.20)."""
    k = _kernel()
    cache = k.kmem_cache_create("test64", 64)
    assert not cache.off_slab
    objs = [k.kmem_cache_alloc(cache) for _ in range(3)]
    slab = k.virt_to_page(objs[0]).lru_prev
    data = k.phys.load(slab.page.pfn)
    d = slab.addr - k.page_address(slab.page)
    _, _, colouroff, s_mem, inuse, free, nodeid = struct.unpack_from("<QQQQIIH", data, d)
    assert (colouroff, inuse, free, nodeid) == (slab.colouroff, slab.inuse, slab.free, 0)
    assert s_mem == k.kmem.layout.kptr(slab.s_mem)
    n = cache.num
    assert list(struct.unpack_from(f"<{n}I", data, d + 48)) == slab.bufctl


# ------------------------------------------------------------------ memmap
def test_memmap_is_written_at_boot_and_follows_the_descriptors():
    """memmap_init writes every struct page (64 bytes on x86_64): a free buddy block's head
    has page_type PG_buddy (0xffffff7f at _mapcount's offset 48) and _refcount 0; a never
    used page init_single_page's: refcount 1, mapcount -1, lru pointing at itself; a
    reserved page PG_reserved (bit 11 in 6.1's page-flags.h) and zone bits on top."""
    k = _kernel(memory="256MiB")
    alloc = k.page_alloc
    assert alloc.memmap_pages == len(alloc.memmap_frames) == 65536 * 64 // PAGE
    layout = k.kmem.layout

    def desc(pfn):
        mpfn = next(m for m, first in alloc.memmap_frames if first <= pfn < first + 64)
        return struct.unpack_from("<QQQQQQII", k.phys.load(mpfn), (pfn % 64) * 64)

    head = next(p for p in k.mem_map if p is not None and p.flags & PG_buddy and p.private >= 3)
    flags, nxt, prv, mapping, index, private, mapcount, count = desc(head.pfn)
    assert (mapcount, count, private, mapping) == (PAGE_TYPE_BUDDY, 0, head.private, 0)
    assert flags >> 62 == alloc.zone_of(head.pfn).idx
    tail = head.pfn + 1
    assert k.mem_map[tail] is None
    flags, nxt, prv, _, _, _, mapcount, count = desc(tail)
    assert (mapcount, count) == (0xFFFFFFFF, 1) and nxt == prv == layout.struct_page(tail) + 8
    flags = desc(4096)[0]  # the kernel image's first page: reserved
    assert flags & (1 << 11)
    # it follows the descriptors: an allocated page reads as one (refcount 1, no type)
    page = k.alloc_pages(G.GFP_KERNEL, 3)
    _, _, _, _, _, private, mapcount, count = desc(page.pfn)
    assert (mapcount, count, private) == (0xFFFFFFFF, 1, 0)
    k.free_pages(page, 3)  # 6.1: to the per-CPU order-3 list, not (yet) a buddy page
    assert desc(page.pfn)[6:] == (0xFFFFFFFF, 0)
    k.drain_all_pages()
    assert desc(page.pfn)[6:] == (PAGE_TYPE_BUDDY, 0)


# ------------------------------------------------------------------ kernel stacks
@pytest.mark.parametrize("arch,era,size", [("x86_64", "6.x", 16), ("i386", "2.6", 8)])
def test_kernel_stacks_are_counted_in_kernelstack_and_freed_at_exit(arch, era, size):
    """THREAD_SIZE: 16 KiB on x86_64, 8 KiB on i386; KernelStack in /proc/meminfo counts
    them (NR_KERNEL_STACK_KB); STACK_END_MAGIC at the stack's lowest word; freed when the
    task dies (put_task_stack), not when it is reaped."""
    k = _kernel(arch=arch, era=era, memory="256MiB")

    def kernel_stack_kb():
        line = next(l for l in k.procfs.read("/proc/meminfo").splitlines() if l.startswith("KernelStack"))
        return int(line.split()[1])

    n0 = len(k.tasks)
    assert kernel_stack_kb() == size * n0
    free0 = k.page_alloc.nr_free_pages()
    t = k.spawn("a")
    assert kernel_stack_kb() == size * (n0 + 1)
    assert len(t.stack) == size // 4
    assert struct.unpack_from("<I", k.phys.load(t.stack[0].pfn), 0)[0] == STACK_END_MAGIC
    t.fork()
    assert kernel_stack_kb() == size * (n0 + 2)
    child = max(k.tasks.values(), key=lambda x: x.pid)
    child.exit(0)
    assert kernel_stack_kb() == size * (n0 + 1) and child.stack is None
    t.exit(0)
    assert kernel_stack_kb() == size * n0
    assert k.page_alloc.nr_free_pages() + sum(z.pcp_count() for z in k.page_alloc.zones) >= free0 - 64


# ------------------------------------------------------------------ KASLR
def test_kaslr_text_offset_is_a_2mib_slot_in_the_1gib_kernel_area():
    """arch/x86/boot/compressed/kaslr.c find_random_virt_addr: a CONFIG_PHYSICAL_ALIGN
    (2 MiB) slot between LOAD_PHYSICAL_ADDR (16 MiB) and KERNEL_IMAGE_SIZE (1 GiB) with
    room for the image; off: __START_KERNEL_map + 16 MiB."""
    off = KernelLayout("x86_64", False, 1, 256 << 20, 32 << 20, 0xFFFF888000000000)
    assert off.text_base == 0xFFFFFFFF81000000 and off.kaslr_delta == 0
    assert off.page_offset_base == 0xFFFF888000000000
    bases = set()
    for seed in range(40):
        lay = KernelLayout("x86_64", True, seed, 256 << 20, 32 << 20, 0xFFFF888000000000)
        assert lay.kaslr_delta % (2 << 20) == 0
        assert 0xFFFFFFFF81000000 <= lay.text_base <= 0xFFFFFFFFC0000000 - (32 << 20)
        assert lay.page_offset_base % (1 << 30) == 0 and lay.page_offset_base >= 0xFFFF888000000000
        assert lay.page_offset_base < lay.vmalloc_base < lay.vmemmap_base < 0xFFFFFE0000000000
        bases.add(lay.text_base)
    assert len(bases) >= 30  # ~490 slots: 40 boots rarely repeat
    same = KernelLayout("x86_64", True, 7, 256 << 20, 32 << 20, 0xFFFF888000000000)
    assert same.text_base == KernelLayout("x86_64", True, 7, 256 << 20, 32 << 20, 0xFFFF888000000000).text_base


def test_kaslr_default_is_on_for_6x_x86_64_off_for_26():
    assert KernelConfig().kaslr is True
    assert KernelConfig(era="2.6").kaslr is False
    assert KernelConfig(arch="i386").kaslr is False
    with pytest.raises(ValueError, match="kaslr"):
        KernelConfig(kaslr="yes")


def test_identical_guests_hold_identical_slab_bytes_without_kaslr_and_different_with_it():
    def slab_bytes(kaslr, seed):
        k = _kernel(kaslr=kaslr, seed=seed)
        return [k.phys.load(p.pfn) for p in k.mem_map if p is not None and p.flags & PG_slab]

    assert slab_bytes(False, 1) == slab_bytes(False, 2)
    a, b = slab_bytes(True, 1), slab_bytes(True, 2)
    assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) > len(a) // 2


def test_identical_vms_share_fewer_kernel_pages_with_kaslr():
    """Issue 12's acceptance, through the KSM counters: two VMs booting the same image,
    fully scanned, share fewer pages with KASLR than without (kernel text with relocations,
    kernel pointers in slab, page tables and memmap)."""
    from experiments.content import OSImage
    from experiments.scenario import boot_image
    from hypervisor.host import Host, HostConfig

    def sharing(kaslr: bool) -> int:
        host = Host(HostConfig(memory="1GiB", compression=False, pages_to_scan=100_000))
        image = OSImage.get("debian-12")
        for i, name in enumerate(("a", "b")):
            vm = host.create_vm(name, KernelConfig(memory="128MiB", kaslr=kaslr, seed=100 + i),
                                balloon=False)
            boot_image(vm.kernel, image)
        for _ in range(3):
            host.sharing.scan(stop_at_pass_end=True)
        return host.sharing.pages_sharing

    on, off = sharing(True), sharing(False)
    assert off - on > 2000  # text 69 % relocated alone: ~1700 of debian-12's 2560 text pages


def test_relocation_shares_are_the_measured_ones():
    """Consistency check: content.KASLR_RELOCATIONS carries the fixture's numbers."""
    from experiments.content import KASLR_RELOCATIONS

    fx = json.loads((DATA / "kaslr" / "relocs-6.1.0-50-cloud-amd64.json").read_text())["sections"]
    for cls, sec in (("code", "text"), ("rodata", "rodata"), ("kdata", "data")):
        relocated, pages, median, _ = KASLR_RELOCATIONS[cls]
        assert (relocated, pages, median) == (fx[sec]["pages_relocated"], fx[sec]["pages"],
                                              fx[sec]["median_per_relocated_page"])


# ------------------------------------------------------------------ boot reservation
def _fixtures():
    for path in sorted((DATA / "boot").glob("debian12-6.1.0-50-cloud-*MiB.txt")):
        mib = int(re.search(r"(\d+)MiB", path.name).group(1))
        yield mib, path.read_text()


@pytest.mark.parametrize("mib,text", list(_fixtures()), ids=lambda x: f"{x}MiB" if isinstance(x, int) else "")
def test_memtotal_is_what_debian_12s_kernel_shows(mib, text):
    """MemTotal of a Debian 12 guest (6.1.0-50-cloud-amd64 under QEMU, recorded by
    tests/data/boot/boot.sh): the kernel keeps its image (32340 KiB after it frees init
    and the section gaps), the memmap per 128 MiB section, the dentry and inode hash
    tables (alloc_large_system_hash), the percpu chunk and 420 KiB of other early
    allocations (the residual at 256 MiB). Exact at 128-2048 MiB; at 3072 MiB QEMU's
    guest keeps one more page."""
    want = int(re.search(r"MemTotal:\s+(\d+) kB", text).group(1))
    k = Kernel(KernelConfig(memory=f"{mib}MiB", distro="debian-12"))
    got = int(re.search(r"MemTotal:\s+(\d+) kB", k.procfs.read("/proc/meminfo")).group(1))
    assert abs(got - want) <= 4, (got, want)
    # the hash tables as the boot log sized them
    dentry = int(re.search(r"Dentry cache hash table entries: (\d+)", text).group(1))
    inode = int(re.search(r"Inode-cache hash table entries: (\d+)", text).group(1))
    assert k.page_alloc.large_system_hash_pages() == (dentry * 8 // PAGE, inode * 8 // PAGE)


def test_without_a_distro_the_reservation_is_image_and_memmap():
    k = Kernel(KernelConfig(memory="256MiB"))
    alloc = k.page_alloc
    assert alloc.reserved_pages == 256 + alloc.kernel_image_pages + alloc.memmap_pages
    assert alloc.early_reserved_pages == 0


# ------------------------------------------------------------------ init_on_alloc / free
def test_free_pages_keep_their_bytes_unless_init_on_free():
    """Linux's default leaves a freed page's bytes in place; init_on_free=1 zeroes it in
    free_pages_prepare (kernel_init_pages)."""
    for init_on_free in (False, True):
        k = _kernel(init_on_free=init_on_free)
        page = k.alloc_pages(G.GFP_KERNEL)
        k.phys.store(page.pfn, b"\x5a" * PAGE)
        k.free_pages(page)
        assert k.phys.load(page.pfn) == (ZERO_PAGE if init_on_free else b"\x5a" * PAGE)


def test_init_on_alloc_zeroes_allocations_without_gfp_zero():
    """post_alloc_hook: want_init_on_alloc(gfp) zeroes the page even without __GFP_ZERO."""
    for init_on_alloc in (False, True):
        k = _kernel(init_on_alloc=init_on_alloc)
        page = k.alloc_pages(G.GFP_KERNEL)
        k.phys.store(page.pfn, b"\x5a" * PAGE)
        k.free_pages(page)
        again = k.alloc_pages(G.GFP_KERNEL)
        assert again.pfn == page.pfn  # LIFO per-CPU list
        assert k.phys.load(again.pfn) == (ZERO_PAGE if init_on_alloc else b"\x5a" * PAGE)


def test_a_windows_image_zeroes_freed_pages():
    """Windows' zero-page thread zeroes freed pages: its VMs boot with init_on_free."""
    from experiments.config import VMSection
    from experiments.scenario import kernel_config

    win = VMSection.model_validate({"name": "w", "memory": "1GiB", "image": "windows-2019"})
    lin = VMSection.model_validate({"name": "l", "memory": "1GiB", "image": "debian-12"})
    assert kernel_config(win).init_on_free is True
    # (kernel.distro defaults to "auto": a Debian 12 image boots Debian 12's measured kernel)
    assert kernel_config(lin).init_on_free is False and kernel_config(lin).distro == "debian-12"


def test_distro_auto_follows_the_image_where_measured():
    from experiments.config import VMSection
    from experiments.scenario import kernel_config

    def distro(image, **kernel):
        v = VMSection.model_validate({"name": "v", "memory": "1GiB", "image": image,
                                      "kernel": {"distro": "auto", **kernel}})
        return kernel_config(v).distro

    assert distro("debian-12") == "debian-12"
    assert distro("ubuntu-22.04") == "none"  # not measured
    assert distro("debian-12", era="2.6") == "none"
    assert distro("debian-12", arch="i386") == "none"


def test_distro_is_auto_by_default():
    """issue 12: "MemTotal is what that distribution's kernel shows" without asking: a
    VM booting debian-12 gets Debian 12's measured reservation (94 804 kB MemTotal at
    128 MiB, tests/data/boot), one whose image hvsim has not measured the generic one."""
    from experiments.config import VMSection
    from experiments.scenario import kernel_config

    def memtotal(image, **kernel):
        v = VMSection.model_validate({"name": "v", "memory": "128MiB", "image": image, "kernel": kernel})
        assert v.kernel.distro == kernel.get("distro", "auto")
        k = Kernel(kernel_config(v))
        return int(re.search(r"MemTotal:\s+(\d+) kB", k.procfs.read("/proc/meminfo")).group(1))

    assert memtotal("debian-12") == 94804  # the measured boot
    assert memtotal("debian-12", distro="none") == memtotal("ubuntu-22.04")  # image + memmap only


# ------------------------------------------------------------------ fast path and twin
@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 12), st.booleans()), min_size=1, max_size=8))
def test_inlined_demand_zero_run_writes_page_tables_as_the_per_page_path(bursts):
    """access_range's inlined demand-zero loop (task.py) and access() page by page install
    the same PTEs, and write a page table a host has read exactly as often."""

    def run(fast: bool):
        k = _kernel()
        t = k.spawn("a")
        base = t.mmap(0x40000000, 64 * PAGE, U.PROT_READ | U.PROT_WRITE,
                      U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
        for start, n, read_first in bursts:
            if read_first and t.mm.pgtable.tables[0]:
                for page in list(t.mm.pgtable.tables[0].values()):
                    k.phys.load(page.pfn)  # a host reads the tables
            n = min(n, 64 - start)
            if fast:
                t.access_range(base + start * PAGE, n * PAGE, True)
            else:
                for i in range(n):
                    t.access(base + (start + i) * PAGE, True)
        tables = [k.phys.load(p.pfn) for p in t.mm.pgtable.tables[0].values()]
        return k.kmem.writes, sorted(t.mm.pgtable.ptes.items()), tables

    assert run(True) == run(False)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([("x86_64", (9, 18, 27)), ("i386", (10,)), ("i386", (9, 18))]),  # pgtable.table_shifts
       st.dictionaries(st.integers(0, 511), st.integers(0, (1 << 32) - 1), max_size=64))  # frames a 32-bit PTE holds
def test_pte_page_bytes_are_x86_pte_of_every_entry(archs, entries):
    """PgtablePage._bytes converts the common entry inline: it equals x86_pte applied to
    each entry of the table (the plain twin), whatever the entries' bits."""

    import types

    from guestkernel import kmem as K

    arch, shifts = archs
    nent = 1 << shifts[0]
    page = types.SimpleNamespace(pfn=5)
    pt = types.SimpleNamespace(shifts=shifts, tables=[{1: page}] + [{} for _ in shifts[1:]], pgd=None,
                               ptes={nent + (k % nent): v for k, v in entries.items()})
    km = types.SimpleNamespace(layout=types.SimpleNamespace(arch=arch), kernel_pgd_entries=[0] * 256)
    p = K.PgtablePage(km, pt, 0, 1, page)
    pae = arch == "i386" and len(shifts) == 2
    vals = [K.x86_pte(pt.ptes.get(nent + i, 0), arch, pae) for i in range(nent)]
    data = struct.pack(f"<{nent}{'Q' if arch == 'x86_64' or pae else 'I'}", *vals)
    assert p._bytes() == data + bytes(4096 - len(data))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["x86_64", "i386", "i386-pae"]),
       st.lists(st.tuples(st.sampled_from(["set", "clear", "read", "table", "untable", "huge",
                                           "unhuge", "fill"]),
                          st.integers(0, 1023), st.integers(0, (1 << 32) - 1)),
                min_size=1, max_size=40))
def test_cached_table_bytes_equal_the_plain_conversion_after_any_changes(arch, ops):
    """PgtablePage._bytes keeps the bytes it made until the table's entries change: after
    any sequence of PTE and child-table changes, reads and re-reads, it returns what the
    plain twin `_make` builds from the live entries (at every level)."""
    import types

    from guestkernel import kmem as K
    from guestkernel.pgtable import table_shifts

    pae = arch == "i386-pae"
    arch = arch.split("-")[0]
    shifts = table_shifts(arch, pae)
    pages = [types.SimpleNamespace(pfn=100 + i) for i in range(8)]
    pgd = types.SimpleNamespace(pfn=99)
    pt = types.SimpleNamespace(shifts=shifts, tables=[{1: pages[0]}] + [{0: pages[1]} for _ in shifts[1:]],
                               pgd=pgd, ptes={}, huge={})
    km = K.KmemContent.__new__(K.KmemContent)
    km.layout = types.SimpleNamespace(arch=arch)
    km.kernel_pgd_entries = list(range(256))
    km.fresh = set()
    nent = 1 << shifts[0]
    recipes = [K.PgtablePage(km, pt, 0, 1, pages[0]), K.PgtablePage(km, pt, len(shifts), 0, pgd)]
    if len(shifts) > 1:
        recipes.append(K.PgtablePage(km, pt, 1, 0, pages[1]))
    for op, i, v in ops:
        if op == "set":
            pt.ptes[nent + i % nent] = v
        elif op == "clear":
            pt.ptes.pop(nent + i % nent, None)
        elif op == "fill":  # every slot of the table set (its entries fetched at once)
            for j in range(nent):
                pt.ptes[nent + j] = (v + (j << 12)) & 0xFFFFFFFF
        elif op == "table":
            pt.tables[0][i % 4] = pages[i % 8]
        elif op == "untable" and i % 4 != 1:
            pt.tables[0].pop(i % 4, None)
        elif op == "huge" and i % 4 != 1 and i % 4 not in pt.tables[0] and len(shifts) > 1:
            # a PMD mapping at key i % 4 (huge_memory.py): its first PTE-dict entry
            # carries the huge PMD's frame and bits
            pt.huge[i % 4] = pages[7]
            pt.ptes[(i % 4) << shifts[0]] = (v & ~0xFFF) | 0x0E7
        elif op == "unhuge" and i % 4 in pt.huge:
            del pt.huge[i % 4]
            pt.ptes.pop((i % 4) << shifts[0], None)
        for r in recipes:
            assert r._bytes() == r._make()


@settings(max_examples=15, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["alloc", "free", "get", "put", "referenced", "pgstate", "copy"]),
                          st.integers(0, 1 << 16)), min_size=1, max_size=25))
def test_every_copy_a_host_keeps_of_the_memmap_equals_the_live_struct_pages(ops):
    """Whatever the kernel does to struct pages (allocations and frees through the buddy
    lists, refcount changes, flags), a memmap frame the host holds a copy of (compressed)
    has the bytes the live descriptors give: any change since the copy was made wrote
    the frame (so it is no longer the copy)."""
    from guestkernel.kmem import MemmapPage
    from guestkernel.page import PGSTATE_MASK, PG_referenced
    from hypervisor.p2m import P2M_COMPRESSED

    vm = _host_vm()
    k = vm.kernel
    frames = [m for m, _ in k.page_alloc.memmap_frames]
    recipes = {r.pfn: r for r in k.kmem.memmap_recipes.values()}
    held = [(k.alloc_pages(G.GFP_KERNEL, 0), 0) for _ in range(4)]
    for op, n in ops:
        if op == "alloc":
            page = k.alloc_pages(G.GFP_KERNEL, n % 3)
            if page is not None:
                held.append((page, n % 3))
        elif op == "free" and held:
            page, order = held.pop(n % len(held))
            k.free_pages(page, order)
        elif op in ("get", "put", "referenced", "pgstate") and held:
            page = held[n % len(held)][0]
            if op == "get":
                page._count += 1
            elif op == "put" and page._count > 1:
                page._count -= 1
            elif op == "referenced":
                page.flags ^= PG_referenced
            else:
                page.flags ^= PGSTATE_MASK & (1 << 28)
        elif op == "copy":
            target = held[n % len(held)][0].pfn if held else n % k.page_alloc.nr_pages
            mpfn = next(m for m, first in k.page_alloc.memmap_frames
                        if first <= target < first + 64)
            if vm.p2m.state[mpfn] != P2M_COMPRESSED:
                _host_copy(vm, mpfn)
        for mpfn in frames:
            if vm.p2m.state[mpfn] == P2M_COMPRESSED:
                assert vm.load(mpfn) == MemmapPage._bytes(recipes[mpfn]), hex(mpfn)
