"""SLAB's per-CPU array caches (mm/slab.c, 2.6.20 and 6.1 alike) used by the CPU the
caller runs on: ____cache_alloc pops the current CPU's array (cpu_cache_get,
smp_processor_id), __cache_free pushes onto it, cache_alloc_refill fills it by batchcount
objects from the node, cache_flusharray empties batchcount of the oldest when it is full,
and each CPU's own cache_reap timer (start_cpu_timer; round_jiffies_relative skews CPU c
by 3 * c jiffies) drains its own array: drain_array gives back (limit + 4) / 5 of an
array untouched since the last pass. In hvsim the current CPU is the kernel's
`current_cpu`, which follows the task in the kernel (select_idle_sibling, task.py)."""

from __future__ import annotations

import simpy

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.slab import HZ, REAPTIMEOUT_CPUC, CacheReaper, validate_slab

P = 4096


def _kernel(cpus=2, env=None) -> Kernel:
    return Kernel(KernelConfig(memory="64MiB", cpus=cpus), env=env)


def _cache(k, name, limit, batchcount, shared=0, size=1024):
    s = k.slab
    c = s.kmem_cache_create(name, size)  # 1024: 4 objects a slab (order 0)
    s.tune_cpucache(c, limit, batchcount, shared)
    return s, c


def test_an_object_freed_on_cpu_1_is_the_next_allocated_on_cpu_1_not_on_cpu_0():
    """__cache_free puts the object on top of CPU 1's array (LIFO); ____cache_alloc on
    CPU 1 takes it back first; CPU 0's array never sees it: CPU 0's next allocation is
    another object (a refill of its own, cache_alloc_refill)."""
    k = _kernel()
    s, c = _cache(k, "pcpu", 8, 4)
    k.current_cpu = 1
    a = s.kmem_cache_alloc(c)  # CPU 1's refill: batchcount 4 objects, one handed out
    assert c.array[1].avail == 3 and c.array[0].avail == 0
    s.kmem_cache_free(c, a)
    assert c.array[1].entry[-1] == a and c.array[0].avail == 0
    k.current_cpu = 0
    b = s.kmem_cache_alloc(c)
    assert b != a and a not in c.array[0].entry and c.array[0].avail == 3
    k.current_cpu = 1
    assert s.kmem_cache_alloc(c) == a
    # kmalloc / kfree follow the CPU too
    x = s.kmalloc(100)
    cache = k.virt_to_page(x).lru_next
    s.kfree(x)
    assert cache.array[1].entry[-1] == x
    k.current_cpu = 0
    assert s.kmalloc(100) != x
    validate_slab(s)


def test_cache_alloc_refill_moves_batchcount_objects_to_the_current_cpu():
    """An empty array refills batchcount objects from the node's slabs (here a new slab
    of 128-byte objects, cache_grow): CPU 1's array gets 5, hands out one, keeps 4;
    the slab keeps num - 5 free."""
    k = _kernel()
    s, c = _cache(k, "refill", 10, 5, size=128)
    assert c.num > 5
    k.current_cpu = 1
    s.kmem_cache_alloc(c)
    assert c.array[1].avail == 4 and c.array[0].avail == 0
    assert c.nodelists[0].free_objects == c.num - 5


def test_a_full_array_flushes_exactly_batchcount_objects():
    """cache_flusharray: a free onto a full array (avail == limit) first moves its
    batchcount oldest objects (entry[0..batchcount)) back into their slabs (free_block,
    no shared array), then pushes the object: limit 8, batchcount 3 on CPU 1 leaves
    8 - 3 + 1 = 6, the 3 oldest gone. CPU 0's array is untouched."""
    k = _kernel()
    s, c = _cache(k, "flush", 8, 3, size=128)
    k.current_cpu = 0
    objs = [s.kmem_cache_alloc(c) for _ in range(9)]
    a0 = list(c.array[0].entry)
    free_objects = c.nodelists[0].free_objects
    k.current_cpu = 1
    for o in objs[:8]:
        s.kmem_cache_free(c, o)
    assert c.array[1].entry == objs[:8] and c.freemiss == 0
    s.kmem_cache_free(c, objs[8])
    assert c.array[1].entry == objs[3:9] and c.freemiss == 1
    assert c.array[0].entry == a0
    assert c.nodelists[0].free_objects == free_objects + 3
    validate_slab(s)


def test_a_full_array_flushes_into_the_shared_array_first():
    """cache_flusharray with room in the node's shared array moves batchcount objects
    there; another CPU of the node refills from the shared array first
    (transfer_objects). CPU 1 (limit 4, batchcount 2, shared 2 * 2): five allocations
    are three refills of 2, one object X left; freeing the five fills the array
    [X, o0, o1, o2], the fourth free flushes X and o0 to the shared array; CPU 0's
    refill takes both back from it and hands out o0 (the top)."""
    k = _kernel()
    s, c = _cache(k, "flush-sh", 4, 2, shared=2, size=128)
    shared = c.nodelists[0].shared
    assert shared.limit == 4
    k.current_cpu = 1
    objs = [s.kmem_cache_alloc(c) for _ in range(5)]
    assert c.array[1].avail == 1
    x = c.array[1].entry[0]
    for o in objs:
        s.kmem_cache_free(c, o)
    assert c.array[1].entry == objs[1:]
    assert shared.entry == [x, objs[0]]
    k.current_cpu = 0
    assert s.kmem_cache_alloc(c) == objs[0]
    assert c.array[0].entry == [x] and shared.avail == 0
    validate_slab(s)


def test_each_cpus_reap_timer_drains_its_own_array():
    """cache_reap on each CPU's own timer: CPU 0 at 2, 4 s; CPU 1 three jiffies earlier
    (1.988, 3.988 s). The first pass only clears `touched`; the next finds the array
    idle and frees (limit + 4) / 5 = (10 + 4) / 5 = 2 of its oldest objects (drain_array).
    CPU 1's 7 objects: 7 -> 5 at 3.988 s; CPU 0's 3 objects: 3 -> 1 at 4 s."""
    env = simpy.Environment()
    k = _kernel(env=env)
    reaper = next(d for d in k.daemons if isinstance(d, CacheReaper))
    s, c = _cache(k, "reap", 10, 5)
    k.current_cpu = 1
    objs1 = [s.kmem_cache_alloc(c) for _ in range(7)]
    k.current_cpu = 0
    objs0 = [s.kmem_cache_alloc(c) for _ in range(3)]
    k.current_cpu = 1
    for o in objs1:
        s.kmem_cache_free(c, o)
    k.current_cpu = 0
    for o in objs0:
        s.kmem_cache_free(c, o)
    a0, a1 = c.array[0], c.array[1]
    n0, n1 = a0.avail, a1.avail
    skew = 3 / HZ
    assert REAPTIMEOUT_CPUC == 2.0
    env.run(until=2 * REAPTIMEOUT_CPUC - skew - 1e-9)
    assert reaper.cpu_passes == [1, 1] and a0.touched == 0 and a1.touched == 0
    assert (a0.avail, a1.avail) == (n0, n1)
    old1 = list(a1.entry)
    env.run(until=2 * REAPTIMEOUT_CPUC - skew + 1e-9)  # CPU 1's second pass
    assert reaper.cpu_passes == [1, 2]
    assert a1.entry == old1[2:] and a0.avail == n0
    old0 = list(a0.entry)
    env.run(until=2 * REAPTIMEOUT_CPUC + 1e-9)  # CPU 0's
    assert reaper.cpu_passes == [2, 2] and a0.entry == old0[(10 + 4) // 5:]
    validate_slab(s)


def test_one_cpu_reaps_as_before():
    """A 1-vCPU guest has one reap timer, CPU 0's, at 2, 4, 6 s."""
    env = simpy.Environment()
    k = _kernel(cpus=1, env=env)
    reaper = next(d for d in k.daemons if isinstance(d, CacheReaper))
    env.run(until=6.5)
    assert reaper.cpu_passes == [3] and k.slab.clock == 6.0


def test_a_task_on_cpu_1_allocates_and_frees_through_cpu_1s_array():
    """open(2) allocates the struct file (filp cache, kmem_cache_zalloc) and the last
    close frees it (file_free) on the CPU of the task in the kernel: a task fork placed
    on CPU 1 leaves the object on top of CPU 1's filp array, CPU 0's array unchanged."""
    k = _kernel()
    if 1 not in k.tasks:
        k.spawn("init")
    tasks = [k.spawn(f"t{i}") for i in range(2)]
    t = next(t for t in tasks if t.cpu == 1)
    k.fs.create("/data/f", P)
    filp = k.slab.find_cache("filp")
    before0 = list(filp.array[0].entry)
    fd = t.open("/data/f", U.O_RDONLY)
    obj = t.files[fd].slab_obj
    assert obj is not None
    t.close(fd)
    assert filp.array[1].entry[-1] == obj
    assert filp.array[0].entry == before0
