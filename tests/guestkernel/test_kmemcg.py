"""Kernel memory charged to memory cgroups (6.1 CONFIG_MEMCG_KMEM, mm/memcontrol.c and
mm/slab.h): page tables and kernel stacks by the page (__memcg_kmem_charge_page), slab
objects of SLAB_ACCOUNT caches by the byte through the per-CPU obj_stock
(obj_cgroup_charge / refill_obj_stock), never to the root memcg. Every expected value
below is 6.1's arithmetic: obj_full_size = s->size + sizeof(struct obj_cgroup *) (the
guest's vm_area_struct cache: 200 + 8 = 208 bytes), PAGE_SIZE 4096, MEMCG_CHARGE_BATCH 64.
"""

from __future__ import annotations

import pytest

from guestkernel.kernel import Kernel
from guestkernel.memcontrol import MEMCG_CHARGE_BATCH
from guestkernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE

PAGE = 4096
VMA = 200 + 8  # obj_full_size(vm_area_cachep) in the 6.x guest
V1 = "/sys/fs/cgroup/memory"


def boot(version: int = 1) -> Kernel:
    return Kernel(memory="128MiB", swap="0", cgroup_version=version, cpus=1)


def in_cgroup(k: Kernel, name: str = "a"):
    cg = k.cgroup
    path = f"{cg.mount_point}/{name}"
    cg.mkdir(path)
    t = k.spawn("t")
    cg.attach(t, path)
    return cg.lookup(path), t, path


def obj_stock(k: Kernel):
    st = k.memcgs.obj_stock[0]
    return st.nr_bytes, st.nr_slab_unreclaimable_b


def page_stock(k: Kernel, m) -> int:
    t = k.memcgs
    return sum(n for c, n in zip(t.stock_cached, t.stock_nr) if c is m)


_made: dict = {}


def mmap_vmas(t, n: int) -> list[int]:
    """n anonymous VMAs that cannot merge (each next to one of the other protection):
    n vm_area_structs."""
    out = []
    for _ in range(n):
        i = _made[id(t)] = _made.get(id(t), 0) + 1
        prot = PROT_READ | (PROT_WRITE if i % 2 else 0)
        out.append(t.mmap(0, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
    return out


def test_obj_cgroup_charge_takes_whole_pages_and_keeps_the_rest_in_the_obj_stock():
    """obj_cgroup_charge (6.1): the first vm_area_struct finds no bytes in the stock and
    charges ceil(208 / 4096) = 1 page (try_charge_memcg: a batch of 64, 63 to the page
    stock), refilling the obj_stock with 4096 - 208 = 3888 bytes (allow_uncharge false);
    the next 18 come from the stock (consume_obj_stock) down to 3888 - 18 * 208 = 144;
    the 20th charges a second page: 144 + 3888 = 4032 bytes in the stock. MEMCG_KMEM and
    v1's kmem counter move by those pages only."""
    k = boot()
    m, t, path = in_cgroup(k)
    assert (m.memory.usage, m.kstat["kernel"]) == (0, 0)
    mmap_vmas(t, 1)
    assert (m.memory.usage, page_stock(k, m), m.kstat["kernel"], m.kmem.usage) == (
        MEMCG_CHARGE_BATCH, MEMCG_CHARGE_BATCH - 1, 1, 1)
    assert obj_stock(k)[0] == PAGE - VMA
    mmap_vmas(t, 18)
    assert (m.kstat["kernel"], obj_stock(k)[0]) == (1, PAGE - VMA - 18 * VMA)
    mmap_vmas(t, 1)
    assert (m.kstat["kernel"], obj_stock(k)[0]) == (2, 144 + PAGE - VMA)
    assert (m.memory.usage, page_stock(k, m)) == (MEMCG_CHARGE_BATCH, MEMCG_CHARGE_BATCH - 2)
    assert k.cgroup.read(f"{path}/memory.kmem.usage_in_bytes") == f"{2 * PAGE}\n"
    k.reclaim.validate()


def test_mod_objcg_state_caches_slab_bytes_until_they_pass_a_page():
    """mod_objcg_state: the first change of NR_SLAB_UNRECLAIMABLE_B is cached in the
    stock whole; later ones add to it and are pushed to the memcg once the sum's absolute
    value exceeds PAGE_SIZE: 19 VMAs (3952 bytes) stay in the stock, the 20th pushes
    4160; freeing them caches -208 first and pushes -4160 at the 20th."""
    k = boot(2)
    m, t, path = in_cgroup(k)
    addrs = mmap_vmas(t, 19)
    assert (m.kstat["slab_unreclaimable"], obj_stock(k)[1]) == (0, 19 * VMA)
    addrs += mmap_vmas(t, 1)
    assert (m.kstat["slab_unreclaimable"], obj_stock(k)[1]) == (20 * VMA, 0)
    stat = dict(ln.split() for ln in k.cgroup.read(f"{path}/memory.stat").splitlines())
    assert (stat["slab_unreclaimable"], stat["slab"]) == (str(20 * VMA), str(20 * VMA))
    for i, a in enumerate(addrs):
        assert t.munmap(a, PAGE) == 0
        if i == 0:
            assert (m.kstat["slab_unreclaimable"], obj_stock(k)[1]) == (20 * VMA, -VMA)
    assert (m.kstat["slab_unreclaimable"], obj_stock(k)[1]) == (0, 0)
    k.reclaim.validate()


def test_refill_obj_stock_uncharges_whole_pages_above_a_page():
    """obj_cgroup_uncharge -> refill_obj_stock(allow_uncharge): freed bytes return to the
    stock; once it holds more than PAGE_SIZE its whole pages are uncharged
    (obj_cgroup_uncharge_pages: MEMCG_KMEM and the kmem counter down, the pages to the
    page stock, refill_stock: usage unchanged). 20 VMAs leave 4032 bytes; the first free
    makes 4240 > 4096: one page uncharged, 144 kept; the other 19 bring it to exactly
    4096, not above: the second page stays charged."""
    k = boot()
    m, t, path = in_cgroup(k)
    addrs = mmap_vmas(t, 20)
    usage = m.memory.usage
    stock = page_stock(k, m)
    t.munmap(addrs[0], PAGE)
    assert (m.kstat["kernel"], m.kmem.usage, obj_stock(k)[0]) == (1, 1, 144)
    assert (m.memory.usage, page_stock(k, m)) == (usage, stock + 1)
    for a in addrs[1:]:
        t.munmap(a, PAGE)
    assert (m.kstat["kernel"], obj_stock(k)[0]) == (1, PAGE)
    assert m.memory.usage == usage
    k.reclaim.validate()


def test_memcg_kmem_charge_page_charges_a_page_table_page_and_uncharges_it_on_free():
    """__memcg_kmem_charge_page (__alloc_pages with GFP_PGTABLE_USER's __GFP_ACCOUNT): the
    PTE table a fault allocates is 1 page charged to the task's memcg (MEMCG_KMEM, kmem
    counter, NR_PAGETABLE) before the page itself; munmap frees the table
    (free_pgtables), __memcg_kmem_uncharge_page gives the page to the stock."""
    k = boot()
    m, t, path = in_cgroup(k)
    a = t.mmap(0, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    a2 = (a + (2 << 20) - 1) & ~((2 << 20) - 1)  # a 2 MiB span no table covers yet
    pt = t.mm.pgtable
    new = [lv for lv, sh in enumerate(pt.shifts) if ((a2 >> 12) >> sh) not in pt.counts[lv]]
    assert new and new[0] == 0
    kernel = m.kstat["kernel"]
    t.access_range(a2, PAGE, True)
    assert m.kstat["kernel"] == kernel + len(new)
    assert m.kstat["pagetables"] == len(new)
    assert m.kmem.usage == m.kstat["kernel"]
    assert k.cgroup.read(f"{path}/memory.kmem.usage_in_bytes") == f"{m.kstat['kernel'] * PAGE}\n"
    usage, stock = m.memory.usage, page_stock(k, m)
    t.munmap(a, 4 << 20)
    freed = sum(1 for lv in new if ((a2 >> 12) >> pt.shifts[lv]) not in pt.counts[lv])
    assert freed >= 1
    assert m.kstat["pagetables"] == len(new) - freed
    assert m.memory.usage - page_stock(k, m) == usage - stock - 1 - freed  # the page, the tables
    k.reclaim.validate()


def test_memcg_charge_kernel_stack_charges_a_forked_childs_stack():
    """memcg_charge_kernel_stack (6.1, VMAP_STACK): a child forked by a task in the
    cgroup has its THREAD_SIZE (16 KiB) stack charged page by page to the parent's memcg
    (current at dup_task_struct); account_kernel_stack: NR_KERNEL_STACK_KB 16. The
    child's exit and reaping uncharge it (exit_task_stack_account)."""
    k = boot(2)
    m, t, path = in_cgroup(k)
    pid = t.fork()
    child = k.tasks[pid]
    assert m.kstat["kernel_stack"] == 16
    tree = k.memcgs
    assert all(tree.kmem_pages[p.pfn][0].memcg is m for p in child.stack)
    stat = dict(ln.split() for ln in k.cgroup.read(f"{path}/memory.stat").splitlines())
    assert stat["kernel_stack"] == str(16 * 1024)
    assert int(stat["kernel"]) == m.kstat["kernel"] * PAGE
    child.exit(0)
    t.wait4(pid)
    assert m.kstat["kernel_stack"] == 0
    k.reclaim.validate()


def test_the_root_memcg_is_never_charged():
    """get_obj_cgroup_from_current stops at root_mem_cgroup: a task of the root charges
    nothing, even while a child memcg exists (memcg_kmem_enabled on)."""
    k = boot()
    m, _, _ = in_cgroup(k)
    r = k.spawn("root-task")
    a = r.mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    r.access_range(a, 1 << 20, True)
    r.fork()
    tree = k.memcgs
    assert not tree.kmem_pages and not tree.slab_objcgs
    assert m.memory.usage == 0 and k.memcgs.root.kstat["kernel"] == 0
    k2 = boot()
    assert k2.slab.memcg_kmem is None  # no child memcg: the slab hooks never run


def test_v1_kmem_limit_in_bytes_has_no_effect():
    """memcg_write (6.1) for _KMEM: the root's limit is EINVAL; elsewhere the value is
    accepted and ignored (kmem.limit_in_bytes is deprecated): the limit reads PAGE_COUNTER_MAX."""
    k = boot()
    _, _, path = in_cgroup(k)
    before = k.cgroup.read(f"{path}/memory.kmem.limit_in_bytes")
    k.cgroup.write(f"{path}/memory.kmem.limit_in_bytes", "4096")
    assert k.cgroup.read(f"{path}/memory.kmem.limit_in_bytes") == before
    assert int(before) == ((1 << 63) - 1) // PAGE * PAGE
    with pytest.raises(OSError):
        k.cgroup.write(f"{V1}/memory.kmem.limit_in_bytes", "4096")
