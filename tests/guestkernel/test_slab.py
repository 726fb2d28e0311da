"""The classic SLAB allocator (guestkernel/slab.py) against Linux 2.6.20's rules.

Sizes are bytes. x86_64 unless said: word 8, cache line 64, sizeof(struct slab) 48,
sizeof(kmem_bufctl_t) 4, PAGE_SIZE 4096, slab_break_gfp_order 1 (RAM > 32 MiB).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guestkernel.config import KernelConfig
from guestkernel.gfp import GFP_DMA, GFP_KERNEL
from guestkernel.kernel import Kernel
from guestkernel.page import Page, PG_slab
from guestkernel.slab import (
    BUFCTL_END,
    SLAB_CACHE_DMA,
    SLAB_HWCACHE_ALIGN,
    SLAB_PANIC,
    SLAB_RECLAIM_ACCOUNT,
    CacheReaper,
    KernelBug,
    SlabAllocator,
    cache_estimate,
    calculate_slab_geometry,
    enable_cpucache_tunables,
    sizeof_kmem_cache,
    validate_slab,
)
from guestkernel.units import PAGE_SIZE


def boot(memory="64MiB", cpus=2, **kw) -> Kernel:
    return Kernel(KernelConfig(memory=memory, cpus=cpus, **kw))


def geo(size, align=0, flags=0, **kw):
    g = calculate_slab_geometry(size, align, flags, **kw)
    return (g.buffer_size, g.align, g.num, g.gfporder, g.left_over, g.off_slab, g.slab_size,
            g.colour_off, g.colour)


def state(c, cpu=0, node=0):
    """(per-CPU avail, full, partial, free slabs, free_objects) of one cache."""
    l3 = c.nodelists[node]
    return (c.array[cpu].avail, len(l3.slabs_full), len(l3.slabs_partial),
            len(l3.slabs_free), l3.free_objects)


def slab_of(k, obj):
    return k.virt_to_page(obj).lru_prev


# ---------------------------------------------------------------------------- sizing
#            buffer align num order left  off    slab_size colour_off colour


def test_geometry_32():
    # word-aligned 32, align 8, on-slab. num = (4096-48)/(32+4) = 4048/36 = 112;
    # mgmt = ALIGN(48 + 112*4, 8) = 496; 496 + 112*32 = 4080 <= 4096;
    # left_over = 4096 - 3584 - 496 = 16; 16*8 <= 4096 -> order 0. colour 16/64 = 0.
    assert geo(32) == (32, 8, 112, 0, 16, False, 496, 64, 0)
    # HWCACHE_ALIGN: 64 halved while 32 <= align/2 -> 32. mgmt = ALIGN(496, 32) = 512;
    # 512 + 3584 = 4096: exactly full, left_over 0.
    assert geo(32, flags=SLAB_HWCACHE_ALIGN) == (32, 32, 112, 0, 0, False, 512, 64, 0)


def test_geometry_100():
    # 100 -> 104 (word). num = 4048/108 = 37; mgmt = ALIGN(48+148, 8) = 200;
    # left = 4096 - 37*104 - 200 = 48 -> colour 0.
    assert geo(100) == (104, 8, 37, 0, 48, False, 200, 64, 0)
    # HWCACHE_ALIGN: 104 > 32 so align 64, size 128. num = 4048/132 = 30;
    # mgmt = ALIGN(48+120, 64) = 192; left = 4096 - 3840 - 192 = 64 -> 1 colour.
    assert geo(100, flags=SLAB_HWCACHE_ALIGN) == (128, 64, 30, 0, 64, False, 192, 64, 1)
    # caller align 128: size 128, mgmt = ALIGN(168, 128) = 256; 256 + 30*128 = 4096;
    # colour_off = max(64, 128) = 128, no colours.
    assert geo(100, align=128) == (128, 128, 30, 0, 0, False, 256, 128, 0)


def test_geometry_256():
    # num = 4048/260 = 15; mgmt = ALIGN(48+60, 8) = 112; left = 4096-3840-112 = 144;
    # colour = 144/64 = 2.
    assert geo(256) == (256, 8, 15, 0, 144, False, 112, 64, 2)
    # HWCACHE: mgmt = ALIGN(108, 64) = 128; left = 128 -> 2 colours.
    assert geo(256, flags=SLAB_HWCACHE_ALIGN) == (256, 64, 15, 0, 128, False, 128, 64, 2)


def test_geometry_500_on_slab_decided_before_alignment():
    # 500 -> 504 < 512: on-slab. num = 4048/508 = 7; mgmt = ALIGN(48+28, 8) = 80;
    # left = 4096 - 7*504 - 80 = 488 (488*8 = 3904 <= 4096); colour = 488/64 = 7.
    assert geo(500) == (504, 8, 7, 0, 488, False, 80, 64, 7)
    # HWCACHE: the off-slab test sees 504 (< 512) before size = ALIGN(504, 64) = 512, so
    # the descriptor stays on-slab: num = 4048/516 = 7; mgmt = ALIGN(76, 64) = 128;
    # left = 4096 - 3584 - 128 = 384 -> 6 colours.
    assert geo(500, flags=SLAB_HWCACHE_ALIGN) == (512, 64, 7, 0, 384, False, 128, 64, 6)


def test_geometry_512_1024_off_slab():
    # 512 >= 4096/8: off-slab. num = 4096/512 = 8, left 0. slab_size = ALIGN(8*4+48, 8)
    # = 80 > left 0, so it stays off-slab, unpadded: 80.
    assert geo(512) == (512, 8, 8, 0, 0, True, 80, 64, 0)
    assert geo(512, flags=SLAB_HWCACHE_ALIGN) == (512, 64, 8, 0, 0, True, 80, 64, 0)
    # 1024: num 4, slab_size 4*4 + 48 = 64.
    assert geo(1024) == (1024, 8, 4, 0, 0, True, 64, 64, 0)


def test_geometry_3000_moves_back_on_slab():
    # off-slab; order 0: num 1, left 1096, 1096*8 > 4096 and 0 < slab_break_gfp_order;
    # order 1: num 2, left 8192 - 6000 = 2192, stop (order >= 1).
    # slab_size = ALIGN(2*4 + 48, 8) = 56 <= 2192: back on-slab, left 2136, colour 33.
    assert geo(3000) == (3000, 8, 2, 1, 2136, False, 56, 64, 33)
    # HWCACHE: size ALIGN(3000, 64) = 3008; order 1: left 8192 - 6016 = 2176;
    # slab_size ALIGN(56, 64) = 64 -> on-slab, left 2112, colour 33.
    assert geo(3000, flags=SLAB_HWCACHE_ALIGN) == (3008, 64, 2, 1, 2112, False, 64, 64, 33)
    # <= 32 MiB of RAM (slab_break_gfp_order 0): order 0 is final: left 1096 - 56 = 1040.
    assert geo(3000, slab_break_gfp_order=0) == (3000, 8, 1, 0, 1040, False, 56, 64, 16)
    # SLAB_RECLAIM_ACCOUNT stops at the first order that fits, whatever the waste.
    assert geo(3000, flags=SLAB_RECLAIM_ACCOUNT) == (3000, 8, 1, 0, 1040, False, 56, 64, 16)


def test_geometry_4096_8192():
    # one object per page; descriptor 4 + 48 = 52 bytes off-slab.
    assert geo(4096) == (4096, 8, 1, 0, 0, True, 52, 64, 0)
    # 8192: order 0 holds none, order 1 holds one.
    assert geo(8192) == (8192, 8, 1, 1, 0, True, 52, 64, 0)
    assert geo(131072) == (131072, 8, 1, 5, 0, True, 52, 64, 0)


def test_geometry_i386():
    # word 4, sizeof(struct slab) 28. 32: num = 4068/36 = 113; mgmt = ALIGN(28+452, 4) =
    # 480; 480 + 113*32 = 4096.
    assert geo(32, arch="i386") == (32, 4, 113, 0, 0, False, 480, 64, 0)
    # 100: num = 4068/104 = 39; mgmt = 28 + 156 = 184; left = 4096 - 3900 - 184 = 12.
    assert geo(100, arch="i386") == (100, 4, 39, 0, 12, False, 184, 64, 0)
    # 3000: order 1, num 2; slab_size 8 + 28 = 36 -> on-slab, left 2192 - 36 = 2156.
    assert geo(3000, arch="i386") == (3000, 4, 2, 1, 2156, False, 36, 64, 33)


def test_cache_estimate_drops_one_when_padding_overflows():
    # 60-byte objects aligned to 64: guess (4096-48)/64 = 63, but ALIGN(48 + 252, 64) =
    # 320 and 320 + 63*60 = 4100 > 4096, so 62: mgmt ALIGN(296, 64) = 320,
    # left = 4096 - 3720 - 320 = 56.
    assert cache_estimate(0, 60, 64, False) == (62, 56)
    assert cache_estimate(1, 3000, 8, True) == (2, 2192)


def test_off_slab_limit_breaks_order_search():
    # With at most 1 bufctl off-slab, 8192 at order 1 holds 1 object: accepted; 512 at
    # order 0 would hold 8 > 1: the search stops with nothing found.
    assert geo(8192, offslab_limit=1)[2] == 1
    assert geo(512, offslab_limit=1)[2] == 0


def test_tunables_by_size():
    assert enable_cpucache_tunables(32, True) == (120, 60, 8)
    assert enable_cpucache_tunables(256, True) == (120, 60, 8)
    assert enable_cpucache_tunables(257, True) == (54, 27, 8)
    assert enable_cpucache_tunables(1025, True) == (24, 12, 8)
    assert enable_cpucache_tunables(4096, False) == (24, 12, 0)
    assert enable_cpucache_tunables(4097, True) == (8, 4, 0)
    assert enable_cpucache_tunables(131072, True) == (8, 4, 0)
    assert enable_cpucache_tunables(131073, True) == (1, 1, 0)


# ---------------------------------------------------------------------------- boot


def test_cache_cache_and_general_caches():
    k = boot()
    s = k.slab
    validate_slab(s)
    cc = s.cache_cache
    # sizeof(struct kmem_cache), x86_64, NR_CPUS 2, 1 node: 2*8 + 24 + 8 + 88 = 136,
    # aligned to the cache line: 192. num = 4048/196 = 20; mgmt = ALIGN(48+80, 64) = 128;
    # left = 4096 - 3840 - 128 = 128 -> 2 colours.
    assert sizeof_kmem_cache("x86_64", 2, 1) == 136
    assert (cc.name, cc.buffer_size, cc.num, cc.gfporder, cc.colour) == ("kmem_cache", 192, 20, 0, 2)
    assert s.cache_chain[-1] is cc  # created first, listed last
    # every other cache's descriptor is an object of cache_cache
    assert len(cc.live) == len(s.cache_chain) - 1
    for c in s.cache_chain[:-1]:
        assert k.virt_to_page(c.addr).lru_next is cc
    names = [c.name for c in s.cache_chain]
    sizes = [32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536,
             131072]
    for n in sizes:
        assert f"size-{n}" in names and f"size-{n}(DMA)" in names
    c32 = s.find_cache("size-32")
    # HWCACHE_ALIGN: 112 per page (see test_geometry_32); limit 120, batch 60, shared 8.
    assert (c32.buffer_size, c32.num, c32.limit, c32.batchcount, c32.shared) == (32, 112, 120, 60, 8)
    # size-96 with 64-byte lines is cache-line aligned to 128 bytes
    assert s.find_cache("size-96").buffer_size == 128
    c512 = s.find_cache("size-512")
    # off-slab; descriptor 8*4 + 48 = 80 bytes from the first class >= 80: size-96
    assert c512.off_slab and c512.slabp_cache is s.find_cache("size-96")
    assert (c512.limit, c512.batchcount) == (54, 27)
    assert s.find_cache("size-4096(DMA)").gfpflags == GFP_DMA
    # free_limit = (1 + cpus) * batchcount + num = 3*60 + 112
    assert c32.nodelists[0].free_limit == 292
    # the arrays live in kmalloc objects: cpu array of 120 entries = 120*8 + 24 = 984 B
    assert k.virt_to_page(c32.array[0].addr).lru_next is s.find_cache("size-1024")
    # shared array 8*60 entries = 3864 B
    assert k.virt_to_page(c32.nodelists[0].shared.addr).lru_next is s.find_cache("size-4096")


def test_i386_uniprocessor_caches():
    k = Kernel(KernelConfig(memory="2GiB", cpus=1, arch="i386"))
    s = k.slab
    validate_slab(s)
    # sizeof(struct kmem_cache), i386, NR_CPUS 1: 4 + 20 + 4 + 56 = 84 -> 128.
    # num = (4096-28)/132 = 30; mgmt = ALIGN(28+120, 64) = 192; left = 4096-3840-192 = 64.
    cc = s.cache_cache
    assert (cc.buffer_size, cc.num, cc.colour) == (128, 30, 1)
    # size-64: num = 4068/68 = 59; mgmt = ALIGN(28+236, 64) = 320; 320 + 3776 = 4096.
    c64 = s.find_cache("size-64")
    assert (c64.num, c64.colour) == (59, 0)
    # no shared arrays on a uniprocessor
    assert (c64.limit, c64.batchcount, c64.shared) == (120, 60, 0)
    assert c64.nodelists[0].shared.limit == 0
    # size-512: descriptor 8*4 + 28 = 60 bytes -> size-64
    assert s.find_cache("size-512").slabp_cache is c64
    # slabs are lowmem: below 896 MiB, directly mapped
    objs = [s.kmalloc(4096) for _ in range(50)]
    assert all(k.virt_to_page(o).pfn < (896 << 20) // PAGE_SIZE for o in objs)
    for o in objs:
        s.kfree(o)
    validate_slab(s)


def test_boot_vmstat_and_pg_slab():
    k = boot()
    s = k.slab
    pages = sum(1 << c.gfporder for c in s.cache_chain for _, _, _ in c.slabs())
    assert pages > 0
    assert k.vmstat["nr_slab_unreclaimable"] + k.vmstat["nr_slab_reclaimable"] == pages == s.nr_slab_pages
    # reclaimable at boot: only the dentry and inode caches (the root's and init's path
    # walks), which are SLAB_RECLAIM_ACCOUNT
    dcache = (k.dcache.dentry_cache, k.dcache.inode_cache)
    assert k.vmstat["nr_slab_reclaimable"] == sum(
        1 << c.gfporder for c in dcache for _, _, _ in c.slabs()) > 0


# ---------------------------------------------------------------------------- kmalloc


@pytest.mark.parametrize(
    "size,cache",
    [(1, "size-32"), (32, "size-32"), (33, "size-64"), (64, "size-64"), (65, "size-96"),
     (97, "size-128"), (129, "size-192"), (193, "size-256"), (257, "size-512"),
     (513, "size-1024"), (2049, "size-4096"), (4097, "size-8192"), (131072, "size-131072")],
)
def test_kmalloc_class(size, cache):
    k = boot()
    obj = k.slab.kmalloc(size, GFP_KERNEL)
    assert k.virt_to_page(obj).lru_next.name == cache
    assert k.slab.ksize(obj) == k.slab.find_cache(cache).buffer_size
    k.slab.kfree(obj)
    validate_slab(k.slab)


def test_kmalloc_dma_and_limits():
    k = boot()
    s = k.slab
    obj = s.kmalloc(100, GFP_DMA)
    page = k.virt_to_page(obj)
    assert page.lru_next.name == "size-128(DMA)"
    assert page.pfn < (16 << 20) // PAGE_SIZE  # ZONE_DMA
    assert s.kmalloc(0) is None
    assert s.kmalloc(131073) is None
    s.kfree(None)
    s.kfree(0)
    s.kfree(obj)
    validate_slab(s)
    # a DMA cache asked without GFP_DMA when it must grow: BUG (kmem_flagcheck)
    c = s.find_cache("size-8192(DMA)")
    with pytest.raises(KernelBug):
        s.kmem_cache_alloc(c, GFP_KERNEL)


# ---------------------------------------------------------------------------- exact sequences


def test_alloc_free_sequence_exact():
    k = boot()
    s = k.slab
    # 1024-byte objects: off-slab, 4 per 1-page slab. Arrays of 4, batches of 2, a shared
    # array of 0 entries: free_limit = (1 + 2 cpus) * 2 + 4 = 10.
    c = s.kmem_cache_create("test-1024", 1024)
    s.tune_cpucache(c, 4, 2, 0)
    assert c.nodelists[0].free_limit == 10
    #            avail full partial free free_objects
    a = s.kmem_cache_alloc(c)  # refill: grow S1, take idx 0,1; S1 partial; hand out idx 1
    S1 = slab_of(k, a)
    assert state(c) == (1, 0, 1, 0, 2) and a == S1.s_mem + 1 * 1024
    validate_slab(s)
    b = s.kmem_cache_alloc(c)  # from the array: idx 0
    assert state(c) == (0, 0, 1, 0, 2) and b == S1.s_mem
    validate_slab(s)
    cc = s.kmem_cache_alloc(c)  # refill idx 2,3 from partial S1 -> full; hand out idx 3
    assert state(c) == (1, 1, 0, 0, 0) and cc == S1.s_mem + 3 * 1024
    assert S1.free == BUFCTL_END
    d = s.kmem_cache_alloc(c)  # idx 2
    assert state(c) == (0, 1, 0, 0, 0)
    validate_slab(s)
    e = s.kmem_cache_alloc(c)  # grow S2, take 2, hand out S2 idx 1
    S2 = slab_of(k, e)
    assert S2 is not S1 and e == S2.s_mem + 1024
    assert state(c) == (1, 1, 1, 0, 2)
    validate_slab(s)
    # array: [S2.0]; frees push on top until 4
    s.kmem_cache_free(c, a)
    s.kmem_cache_free(c, b)
    s.kmem_cache_free(c, cc)
    assert state(c) == (4, 1, 1, 0, 2)
    validate_slab(s)
    # full: flush the 2 oldest (S2.0 and a) into their slabs: S2 inuse 2->1 (partial
    # tail), S1 full -> partial (tail); then push d.
    s.kmem_cache_free(c, d)
    assert state(c) == (3, 0, 2, 0, 4)
    assert list(c.nodelists[0].slabs_partial) == [S2, S1]
    assert (S1.inuse, S2.inuse) == (3, 1)
    assert S1.free == 1  # a (idx 1) heads S1's free chain
    validate_slab(s)
    s.kmem_cache_free(c, e)
    assert state(c) == (4, 0, 2, 0, 4)
    validate_slab(s)
    # shrink: the array goes back (S1 and S2 empty, 8 <= free_limit: slabs_free), then
    # both free slabs are destroyed: 2 pages.
    assert s.kmem_cache_shrink(c) == 2
    assert state(c) == (0, 0, 0, 0, 0)
    validate_slab(s)
    s.kmem_cache_destroy(c)
    assert s.find_cache("test-1024") is None
    validate_slab(s)


def test_emptied_slab_destroyed_above_free_limit():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("fl", 1024)
    s.tune_cpucache(c, 1, 1, 0)  # free_limit = 3*1 + 4 = 7
    objs = [s.kmem_cache_alloc(c) for _ in range(12)]  # slabs A, B, C full
    assert state(c) == (0, 3, 0, 0, 0)
    slabs = [slab_of(k, o) for o in objs[::4]]
    pages = [sl.page for sl in slabs]
    # each free pushes the new object and flushes the previous one to free_block
    for i, o in enumerate(objs[:9]):
        s.kmem_cache_free(c, o)
        validate_slab(s)
        if i == 4:  # A emptied with 4 free objects <= 7: kept on slabs_free
            assert state(c) == (1, 2, 0, 1, 4)
    # B emptied (free of objs[8] flushed objs[7]) with 8 free objects > 7: destroyed
    assert state(c) == (1, 1, 0, 1, 4)
    assert not pages[1].flags & PG_slab and pages[0].flags & PG_slab
    for o in objs[9:]:
        s.kmem_cache_free(c, o)
    # objs[9], objs[10] in C, objs[11] in the array
    assert state(c) == (1, 0, 1, 1, 7)
    validate_slab(s)


def test_shared_array_first_on_refill():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("sh", 1024)
    s.tune_cpucache(c, 2, 1, 2)  # shared array of 2*1 entries
    l3 = c.nodelists[0]
    o = [s.kmem_cache_alloc(c) for _ in range(4)]  # one slab, full
    assert state(c) == (0, 1, 0, 0, 0)
    for x in o:
        s.kmem_cache_free(c, x)
    # o0, o1 in the array; o2 flushes o0 to shared, o3 flushes o1
    assert c.array[0].entry == [o[2], o[3]] and l3.shared.entry == [o[0], o[1]]
    assert state(c) == (2, 1, 0, 0, 0)
    validate_slab(s)
    assert s.kmem_cache_alloc(c) == o[3]
    assert s.kmem_cache_alloc(c) == o[2]
    # empty array: the refill takes the top of the shared array before any slab
    assert s.kmem_cache_alloc(c) == o[1]
    assert l3.shared.entry == [o[0]] and state(c) == (0, 1, 0, 0, 0)
    validate_slab(s)


def test_colour_next_cycles_across_slabs():
    k = boot()
    s = k.slab
    # 500 -> 504: 7 objects, 7 colours of 64 bytes, on-slab descriptor of 80 bytes
    c = s.kmem_cache_create("col", 500)
    assert (c.num, c.colour, c.colour_off, c.slab_size) == (7, 7, 64, 80)
    s.tune_cpucache(c, 1, 1, 0)
    objs = [s.kmem_cache_alloc(c) for _ in range(7 * 9)]
    for n in range(9):
        first = objs[7 * n]  # idx 0 of the n-th slab grown
        base = k.page_address(k.virt_to_page(first))
        # s_mem = page + colour * 64 + 80 (descriptor first, at the colour offset)
        assert first - base == (n % 7) * 64 + 80
        assert slab_of(k, first).addr == base + (n % 7) * 64
    assert c.nodelists[0].colour_next == 9 % 7
    validate_slab(s)


def test_ctor_runs_on_every_object_of_a_new_slab():
    k = boot()
    s = k.slab
    seen = []
    c = s.kmem_cache_create("ctor", 256, 0, SLAB_HWCACHE_ALIGN, ctor=seen.append)
    obj = s.kmem_cache_alloc(c)
    sl = slab_of(k, obj)
    assert seen == [sl.s_mem + i * 256 for i in range(15)]
    s.kmem_cache_free(c, obj)
    s.kmem_cache_alloc(c)
    assert len(seen) == 15  # objects come back constructed: no second call


def test_off_slab_descriptor_comes_from_slabp_cache():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("offs", 512)
    assert c.off_slab and c.slabp_cache.name == "size-96"
    obj = s.kmem_cache_alloc(c)
    sl = slab_of(k, obj)
    assert sl.addr in c.slabp_cache.live
    assert sl.s_mem == k.page_address(sl.page)  # colour 0, nothing before the objects
    s.kmem_cache_free(c, obj)
    s.kmem_cache_shrink(c)
    assert sl.addr not in c.slabp_cache.live
    validate_slab(s)


def test_reclaim_account_vmstat():
    k = boot()
    s = k.slab
    before = (k.vmstat["nr_slab_reclaimable"], k.vmstat["nr_slab_unreclaimable"])
    c = s.kmem_cache_create("reclaimable_3000", 3000, 0, SLAB_RECLAIM_ACCOUNT)
    assert c.gfporder == 0  # reclaimable caches stay at order 0
    objs = [s.kmem_cache_alloc(c) for _ in range(3)]
    assert k.vmstat["nr_slab_reclaimable"] == before[0] + len({slab_of(k, o).page.pfn for o in objs})
    for o in objs:
        s.kmem_cache_free(c, o)
    s.kmem_cache_shrink(c)
    assert k.vmstat["nr_slab_reclaimable"] == before[0]
    validate_slab(s)


# ---------------------------------------------------------------------------- reap


def test_cache_reap():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("reap", 1024)
    s.tune_cpucache(c, 10, 5, 1)  # free_limit = 3*5 + 4 = 19
    l3 = c.nodelists[0]
    objs = [s.kmem_cache_alloc(c) for _ in range(8)]  # S1, S2 full (refills of 4)
    S1, S2 = slab_of(k, objs[0]), slab_of(k, objs[4])
    for o in objs:
        s.kmem_cache_free(c, o)
    assert state(c) == (8, 2, 0, 0, 0) and l3.free_touched == 1
    T = l3.next_reap
    # next_reap = creation time 0 + 4 s + ((unsigned long)cachep % (4*HZ)) / HZ
    assert T == 4.0 + (c.addr % 1000) / 250
    s.cache_reap(T - 1)  # the array was touched: only the touched flag is cleared
    assert state(c) == (8, 2, 0, 0, 0) and c.array[0].touched == 0
    # untouched: (limit + 4) / 5 = 2 oldest objects go back; the node's turn has come:
    # shared array empty, free_touched cleared instead of freeing slabs
    assert s.cache_reap(T) == 0
    assert state(c) == (6, 1, 1, 0, 2) and l3.next_reap == T + 4 and l3.free_touched == 0
    s.cache_reap(T + 2)  # S1 empties: 4 free <= 19, kept
    assert state(c) == (4, 1, 0, 1, 4) and S1.inuse == 0
    validate_slab(s)
    # node turn again: (19 + 5*4 - 1) / (5*4) = 1 free slab destroyed
    assert s.cache_reap(T + 4) == 1
    assert state(c) == (2, 0, 1, 0, 2) and S2.inuse == 2 and c.reaped == 1
    validate_slab(s)


def test_cache_reap_drains_shared_array_every_4s():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("reap-sh", 1024)
    s.tune_cpucache(c, 2, 1, 4)  # shared array of 4
    l3 = c.nodelists[0]
    objs = [s.kmem_cache_alloc(c) for _ in range(4)]
    for o in objs:
        s.kmem_cache_free(c, o)
    assert l3.shared.avail == 2
    T = l3.next_reap
    s.cache_reap(T - 0.5)
    assert l3.shared.avail == 2
    s.cache_reap(T)  # (4 + 4) / 5 = 1 from the shared array
    assert l3.shared.avail == 1
    validate_slab(s)


def test_cache_reaper_daemon():
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="64MiB", cpus=2), env=env)
    s = k.slab
    reaper = next(d for d in k.daemons if isinstance(d, CacheReaper))
    c = s.kmem_cache_create("idle", 1024)
    s.tune_cpucache(c, 10, 5, 0)
    objs = [s.kmem_cache_alloc(c) for _ in range(8)]  # two full slabs
    for o in objs:
        s.kmem_cache_free(c, o)
    assert state(c) == (8, 2, 0, 0, 0)
    # t=2 clears `touched`; t=4, 6, 8, 10 each return the 2 oldest objects (S1 empty at
    # 6, S2 at 10). Node reaps every 4 s from next_reap (4..8 s): the first clears
    # free_touched, each later one destroys (19 + 19) / 20 = 1 free slab: both gone by 16.
    # Each CPU has its own timer (CPU 1's three jiffies before CPU 0's): 8 passes each.
    env.run(until=17)
    assert reaper.cpu_passes == [8, 8] and reaper.passes == 16 and s.clock == 16.0
    assert state(c) == (0, 0, 0, 0, 0) and c.reaped == 2
    validate_slab(s)


# ---------------------------------------------------------------------------- shrink, destroy


def test_shrink_and_destroy():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("sd", 256)
    objs = [s.kmem_cache_alloc(c) for _ in range(40)]
    with pytest.raises(ValueError, match="can't free all objects"):
        s.kmem_cache_destroy(c)
    assert s.cache_chain[0] is c  # put back at the head of the chain
    validate_slab(s)
    for o in objs:
        s.kmem_cache_free(c, o)
    slabs = sum(1 for _ in c.slabs())
    assert s.kmem_cache_shrink(c) == slabs == 3  # 40 objects, 15 per slab
    desc = c.addr
    s.kmem_cache_destroy(c)
    assert desc not in s.cache_cache.live and c.dead
    assert "sd " not in s.slabinfo()
    validate_slab(s)
    with pytest.raises(ValueError):
        s.kmem_cache_destroy(c)
    with pytest.raises(ValueError):
        s.kmem_cache_destroy(s.find_cache("size-64"))
    with pytest.raises(KernelBug):
        s.kmem_cache_alloc(c)


def test_create_errors():
    k = boot()
    s = k.slab
    s.kmem_cache_create("dup", 64)
    with pytest.raises(ValueError, match="duplicate"):
        s.kmem_cache_create("dup", 64)
    for size in (0, 4, 131073, -8, "64"):
        with pytest.raises(ValueError, match="size"):
            s.kmem_cache_create(f"bad{size}", size)
    with pytest.raises(ValueError, match="align"):
        s.kmem_cache_create("badalign", 64, 48)
    with pytest.raises(ValueError, match="flags"):
        s.kmem_cache_create("badflags", 64, 0, 0x1)
    validate_slab(s)


def test_bad_frees_are_bugs():
    k = boot()
    s = k.slab
    a = s.kmem_cache_create("a", 64)
    b = s.kmem_cache_create("b", 64)
    x = s.kmem_cache_alloc(a)
    with pytest.raises(KernelBug, match="does not belong"):
        s.kmem_cache_free(b, x)
    with pytest.raises(KernelBug, match="not an object start"):
        s.kmem_cache_free(a, x + 8)
    s.kmem_cache_free(a, x)
    with pytest.raises(KernelBug, match="double free"):
        s.kmem_cache_free(a, x)
    with pytest.raises(KernelBug, match="double free"):
        s.kfree(x)
    user = k.alloc_pages(GFP_KERNEL, 0)
    with pytest.raises(KernelBug, match="not a slab object"):
        s.kfree(k.page_address(user))
    validate_slab(s)


def test_slabinfo_format_and_write():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("test-1024", 1024)
    s.kmem_cache_alloc(c)  # untouched refill of 16 stops after one grown slab: 4 objects
    lines = k.procfs.read("/proc/slabinfo").splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    assert lines[1] == (
        "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
        " : tunables <limit> <batchcount> <sharedfactor>"
        " : slabdata <active_slabs> <num_slabs> <sharedavail>"
    )
    # newest cache first; 3 of its objects sit in the CPU array and count as active
    assert lines[2] == (
        "test-1024              4      4   1024    4    1 : tunables   54   27    8"
        " : slabdata      1      1      0"
    )
    assert lines[-1].startswith("kmem_cache ")
    s.slabinfo_write("test-1024 8 4 0")
    assert (c.limit, c.batchcount, c.shared, c.array[1].limit) == (8, 4, 0, 8)
    assert "tunables    8    4    0" in s.slabinfo().splitlines()[2]
    for bad in ("test-1024 8 9 0", "test-1024 0 0 0", "nosuch 8 4 0", "test-1024 8 4"):
        with pytest.raises(ValueError):
            s.slabinfo_write(bad)
    assert (c.limit, c.batchcount) == (8, 4)
    validate_slab(s)


def test_shrink_slab_frees_free_slabs_then_arrays():
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("shr", 4096)  # 1 object per page; limit 24, batch 12, shared 96
    objs = [s.kmem_cache_alloc(c) for _ in range(30)]
    for o in objs:
        s.kmem_cache_free(c, o)
    # 24 in the array, then 12 flushed to the shared array, then 6 more
    assert c.array[0].avail == 18 and c.nodelists[0].shared.avail == 12
    # retuning frees the old arrays: the 18 CPU-array objects while free_limit is still
    # 3*12 + 1 = 37 (slabs kept), the 12 shared ones after it became 3*1 + 1 = 4
    # (each emptied slab destroyed)
    s.tune_cpucache(c, 1, 1, 0)
    assert state(c) == (0, 0, 0, 18, 18)
    # newest cache first: its free slabs go first, one page each
    assert s.shrink_slab(5) == 5
    assert state(c) == (0, 0, 0, 13, 13)
    x = s.kmem_cache_alloc(c)
    y = s.kmem_cache_alloc(c)
    s.kmem_cache_free(c, x)  # x stays in the CPU array
    assert c.array[0].avail == 1
    freed = s.shrink_slab(1000)  # not enough free slabs: the arrays are drained too
    assert freed >= 11 + 1 and c.array[0].avail == 0  # 11 free slabs + x's
    assert state(c) == (0, 1, 0, 0, 0)  # only y's slab is left
    s.kmem_cache_free(c, y)
    validate_slab(s)


# ---------------------------------------------------------------------------- NUMA


def test_numa_node_lists():
    k = boot(memory="256MiB", nodes=2)
    s = k.slab
    c = s.kmem_cache_create("numa", 256)
    assert len(c.nodelists) == 2
    obj = s.kmem_cache_alloc(c, cpu=1)  # CPU 1 is on node 1
    page = k.virt_to_page(obj)
    assert k.page_alloc.zone_of(page.pfn).node.nid == 1
    assert slab_of(k, obj).nodeid == 1
    n1 = c.nodelists[1].free_objects
    s.kmem_cache_free(c, obj, cpu=0)  # a remote free goes straight back to node 1
    assert c.array[0].avail == 0 and c.nodelists[1].free_objects == n1 + 1
    validate_slab(s)


# ---------------------------------------------------------------------------- small fake kernel


class FakeKernel:
    """Just what SlabAllocator uses, over a list of pages; `budget` pages can be had."""

    PAGE_OFFSET = 0xFFFF888000000000

    def __init__(self, memory=32 << 20, cpus=1, budget=None):
        self.config = SimpleNamespace(arch="x86_64", cpus=cpus, memory=memory, nodes=1)
        self.vmstat = {}
        self.pages = [Page(pfn) for pfn in range(memory // PAGE_SIZE)]
        self.mem_map = self.pages
        self.free = [True] * len(self.pages)
        self.budget = budget
        self.env = None

    def alloc_pages(self, gfp, order=0):
        n = 1 << order
        if self.budget is not None and self.budget < n:
            return None
        for pfn in range(0, len(self.pages), n):
            if all(self.free[pfn:pfn + n]):
                for i in range(pfn, pfn + n):
                    self.free[i] = False
                if self.budget is not None:
                    self.budget -= n
                self.pages[pfn]._count = 1
                return self.pages[pfn]
        return None

    def free_pages(self, page, order=0):
        page._count -= 1
        assert page._count == 0 and not page.flags & PG_slab
        for i in range(page.pfn, page.pfn + (1 << order)):
            self.free[i] = True
        if self.budget is not None:
            self.budget += 1 << order

    def page_address(self, page):
        return self.PAGE_OFFSET + page.pfn * PAGE_SIZE

    def virt_to_page(self, addr):
        return self.pages[(addr - self.PAGE_OFFSET) // PAGE_SIZE]


def test_small_machine_uses_order_0_slabs():
    s = SlabAllocator(FakeKernel(memory=32 << 20))
    assert s.slab_break_gfp_order == 0
    c = s.kmem_cache_create("t3000", 3000)
    assert (c.gfporder, c.num, c.colour) == (0, 1, 16)
    validate_slab(s)


def test_alloc_fails_cleanly_without_pages():
    fk = FakeKernel(memory=32 << 20, budget=None)
    s = SlabAllocator(fk)
    c = s.kmem_cache_create("nomem", 2048)
    fk.budget = 0
    assert s.kmem_cache_alloc(c) is None
    assert c.errors == 1
    assert s.kmalloc(8192) is None
    validate_slab(s)
    fk.budget = 10
    assert s.kmem_cache_alloc(c) is not None
    validate_slab(s)


def test_create_without_memory():
    fk = FakeKernel(memory=32 << 20)
    s = SlabAllocator(fk)
    cc = s.cache_cache
    # use up cache_cache's free objects, then starve the page allocator
    while cc.array[0].avail or cc.nodelists[0].free_objects or cc.nodelists[0].shared.avail:
        s.kmem_cache_alloc(cc)
    fk.budget = 0
    assert s.kmem_cache_create("late", 64) is None
    with pytest.raises(KernelBug, match="failed to create slab"):
        s.kmem_cache_create("late2", 64, 0, SLAB_PANIC)


class ReclaimingKernel(FakeKernel):
    """Every page allocation first runs "direct reclaim" into the slab shrinker."""

    slab = None

    def alloc_pages(self, gfp, order=0):
        if self.slab is not None:
            self.slab.shrink_slab(1 << 20)
        return super().alloc_pages(gfp, order)


def test_reclaim_inside_grow_is_safe():
    fk = ReclaimingKernel(memory=64 << 20, cpus=2)
    s = SlabAllocator(fk)
    fk.slab = s
    c = s.kmem_cache_create("reent", 512)  # off-slab: the descriptor allocation reclaims too
    objs = []
    for i in range(60):
        objs.append(s.kmem_cache_alloc(c, cpu=i % 2))
        if i % 3 == 2:
            s.kmem_cache_free(c, objs.pop(0), cpu=(i + 1) % 2)
        validate_slab(s)
    assert len(set(objs)) == len(objs) == 40
    for o in objs:
        s.kfree(o)
    validate_slab(s)


# ---------------------------------------------------------------------------- properties


def _fixpoint_shrink(s):
    while sum(s.kmem_cache_shrink(c) for c in list(s.cache_chain)):
        pass


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(0, 1)),
        st.tuples(st.just("free"), st.integers(0, 10_000), st.integers(0, 1)),
        st.tuples(st.just("reap"), st.just(0)),
        st.tuples(st.just("shrink"), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.sampled_from([24, 100, 256, 500, 512, 1024, 3000, 4096, 8192]),
    flags=st.sampled_from([0, SLAB_HWCACHE_ALIGN, SLAB_RECLAIM_ACCOUNT, SLAB_CACHE_DMA]),
    tun=st.sampled_from([None, (1, 1, 0), (4, 2, 1), (6, 3, 0)]),
    ops=ops,
)
def test_random_alloc_free_keeps_invariants(size, flags, tun, ops):
    k = boot()
    s = k.slab
    pa = k.page_alloc
    _fixpoint_shrink(s)
    pa.drain_all_pages()
    free0 = pa.nr_free_pages()
    slab0 = s.nr_slab_pages
    c = s.kmem_cache_create("prop", size, 0, flags)
    if tun:
        s.tune_cpucache(c, *tun)
    gfp = GFP_DMA if flags & SLAB_CACHE_DMA else GFP_KERNEL
    live = []
    for op in ops:
        if op[0] == "alloc":
            obj = s.kmem_cache_alloc(c, gfp, cpu=op[1])
            assert obj is not None and obj not in live
            live.append(obj)
        elif op[0] == "free" and live:
            s.kmem_cache_free(c, live.pop(op[1] % len(live)), cpu=op[2])
        elif op[0] == "reap":
            s.cache_reap()
        elif op[0] == "shrink":
            s.kmem_cache_shrink(c)
        validate_slab(s)
    for obj in live:
        s.kmem_cache_free(c, obj)
    s.kmem_cache_destroy(c)
    _fixpoint_shrink(s)
    validate_slab(s)
    pa.drain_all_pages()
    assert s.nr_slab_pages == slab0
    assert pa.nr_free_pages() == free0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("kmalloc"), st.integers(1, 131072), st.booleans(),
                      st.integers(0, 1)),
            st.tuples(st.just("kfree"), st.integers(0, 10_000), st.integers(0, 1)),
            st.tuples(st.just("reap")),
        ),
        max_size=60,
    )
)
def test_random_kmalloc_numa_returns_every_page(ops):
    # two nodes, one CPU each: remote frees, per-node lists, DMA twins (node 0 only)
    k = boot(memory="256MiB", nodes=2)
    s = k.slab
    pa = k.page_alloc
    _fixpoint_shrink(s)
    pa.drain_all_pages()
    free0 = pa.nr_free_pages()
    live = []
    for op in ops:
        if op[0] == "kmalloc":
            _, size, dma, cpu = op
            obj = s.kmalloc(size, GFP_DMA if dma else GFP_KERNEL, cpu)
            assert obj is not None
            assert s.ksize(obj) >= size
            live.append(obj)
        elif op[0] == "kfree" and live:
            s.kfree(live.pop(op[1] % len(live)), op[2])
        elif op[0] == "reap":
            s.cache_reap()
        validate_slab(s, scan_mem_map=False)
    for obj in live:
        s.kfree(obj)
    _fixpoint_shrink(s)
    validate_slab(s)
    pa.drain_all_pages()
    assert pa.nr_free_pages() == free0


@pytest.mark.parametrize("corrupt", ["inuse", "pg_slab", "twice", "free_objects", "colour"])
def test_validate_slab_catches_corruption(corrupt):
    k = boot()
    s = k.slab
    c = s.kmem_cache_create("victim", 256)
    objs = [s.kmem_cache_alloc(c) for _ in range(3)]
    validate_slab(s)
    sl = slab_of(k, objs[0])
    if corrupt == "inuse":
        sl.inuse += 1
    elif corrupt == "pg_slab":
        sl.page.flags &= ~PG_slab
    elif corrupt == "twice":
        c.array[1].entry.append(c.array[0].entry[0])
    elif corrupt == "free_objects":
        c.nodelists[0].free_objects += 1
    else:
        c.nodelists[0].colour_next = c.colour + 1
    with pytest.raises(AssertionError):
        validate_slab(s)


def test_bench_kmalloc_kfree(benchmark):
    """kmalloc(64)/kfree pairs through the per-CPU array (out of the default run)."""
    s = boot().slab

    def pairs():
        for _ in range(1000):
            s.kfree(s.kmalloc(64))

    benchmark(pairs)
