"""A guest's zeroing of slab objects is CPU on the vCPU that does it: page_zero_cost x
object_size / 4096 (phys.zero_bytes), added to the caller's kernel.stall as the page
allocator's kernel_init_pages is. Linux 6.1, one rule per kernel function:
- slab_post_alloc_hook: memset(p, 0, s->object_size) when slab_want_init_on_alloc(flags,
  s): with init_on_alloc, every object unless the cache has a constructor (none then),
  or is SLAB_TYPESAFE_BY_RCU / SLAB_POISON (only for __GFP_ZERO); without it, __GFP_ZERO
  (kzalloc, kmem_cache_zalloc) only;
- __cache_free (mm/slab.c; SLUB's slab_free_hook likewise): memset(objp, 0,
  object_size) when slab_want_init_on_free: init_on_free, no constructor, not
  SLAB_TYPESAFE_BY_RCU;
- __alloc_file: kmem_cache_zalloc(filp_cachep, GFP_KERNEL), so every open(2) zeroes a
  struct file.
On bare metal (no VM) the zeroing costs nothing, as a page's zeroing there does not."""

import pytest

from guestkernel import gfp as G
from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.slab import SLAB_DESTROY_BY_RCU
from hypervisor.host import Host, HostConfig

ZERO = 4096e-9  # page_zero_cost: 1 ns a byte
EXACT = dict(rel=1e-12, abs=0)  # float sums of the same terms


def _vm(**kernel):
    host = Host(HostConfig(memory="512MiB", sharing=False, compression=False, ballooning=False,
                           page_zero_cost=ZERO))
    vm = host.create_vm("g", KernelConfig(memory="256MiB", **kernel), balloon=False)
    return vm, vm.kernel


def _charged(vm, k, fn):
    """(guest CPU zeroing, kernel.stall added) by fn()."""
    z0, s0 = vm.zero_cpu, k.stall
    fn()
    return vm.zero_cpu - z0, k.stall - s0


def test_kzalloc_zeroes_the_caches_object_size_kmalloc_nothing():
    vm, k = _vm()
    slab = k.slab
    cache = slab.size_caches[slab.malloc_sizes.index(128)]
    assert cache.obj_size == 128
    objs = []
    assert _charged(vm, k, lambda: objs.append(slab.kmalloc(100))) == (0.0, 0.0)
    z, s = _charged(vm, k, lambda: objs.append(slab.kzalloc(100)))
    assert z == pytest.approx(128e-9, **EXACT) and s == pytest.approx(z, **EXACT)  # object_size, not 100
    z, _ = _charged(vm, k, lambda: objs.append(slab.kmem_cache_zalloc(cache)))
    assert z == pytest.approx(128e-9, **EXACT)
    # freeing costs nothing without init_on_free
    assert _charged(vm, k, lambda: [slab.kfree(o) for o in objs]) == (0.0, 0.0)


def test_open_zeroes_a_struct_file():
    vm, k = _vm()
    t = k.spawn("t")
    k.fs.create("/data/f", 4096)
    fd = t.open("/data/f", U.O_RDONLY)  # the dentries are cached now
    t.close(fd)
    filp = k._as_caches["filp"]
    z, _ = _charged(vm, k, lambda: t.close(t.open("/data/f", U.O_RDONLY)))
    assert z == pytest.approx(filp.obj_size * 1e-9, **EXACT)


def test_init_on_alloc_zeroes_every_object_but_a_constructors_and_rcu_ones_without_gfp_zero():
    vm, k = _vm(init_on_alloc=True)
    slab = k.slab
    plain = slab.kmem_cache_create("plain", 200, 0, 0, None)
    ctor = slab.kmem_cache_create("ctor", 200, 0, 0, lambda obj: None)
    rcu = slab.kmem_cache_create("rcu", 200, 0, SLAB_DESTROY_BY_RCU, None)
    for c in (plain, ctor, rcu):
        slab.kmem_cache_alloc(c)  # the first grows the cache: its page is zeroed too
    one = pytest.approx(200e-9, **EXACT)
    assert _charged(vm, k, lambda: slab.kmem_cache_alloc(plain))[0] == one
    assert _charged(vm, k, lambda: slab.kmem_cache_alloc(ctor)) == (0.0, 0.0)
    assert _charged(vm, k, lambda: slab.kmem_cache_alloc(ctor, G.GFP_KERNEL | G.ZERO)) == (0.0, 0.0)
    assert _charged(vm, k, lambda: slab.kmem_cache_alloc(rcu)) == (0.0, 0.0)
    assert _charged(vm, k, lambda: slab.kmem_cache_alloc(rcu, G.GFP_KERNEL | G.ZERO))[0] == one


def test_init_on_free_zeroes_each_freed_object_but_a_constructors_and_rcu_ones():
    vm, k = _vm(init_on_free=True)
    slab = k.slab
    plain = slab.kmem_cache_create("plain", 200, 0, 0, None)
    ctor = slab.kmem_cache_create("ctor", 200, 0, 0, lambda obj: None)
    rcu = slab.kmem_cache_create("rcu", 200, 0, SLAB_DESTROY_BY_RCU, None)
    objs = {c: slab.kmem_cache_alloc(c) for c in (plain, ctor, rcu)}
    # no init at allocation without __GFP_ZERO or init_on_alloc
    assert _charged(vm, k, lambda: slab.kmem_cache_alloc(plain)) == (0.0, 0.0)
    z, s = _charged(vm, k, lambda: slab.kmem_cache_free(plain, objs[plain]))
    assert z == pytest.approx(200e-9, **EXACT) and s == pytest.approx(z, **EXACT)
    assert _charged(vm, k, lambda: slab.kmem_cache_free(ctor, objs[ctor])) == (0.0, 0.0)
    assert _charged(vm, k, lambda: slab.kmem_cache_free(rcu, objs[rcu])) == (0.0, 0.0)


def test_init_on_alloc_and_init_on_free_both_zero_a_slab_object():
    # slab_want_init_on_alloc does not look at init_on_free (post_alloc_hook's pages do)
    vm, k = _vm(init_on_alloc=True, init_on_free=True)
    slab = k.slab
    plain = slab.kmem_cache_create("plain", 200, 0, 0, None)
    slab.kmem_cache_alloc(plain)  # the first grows the cache
    obj = []
    assert _charged(vm, k, lambda: obj.append(slab.kmem_cache_alloc(plain)))[0] == pytest.approx(200e-9, **EXACT)
    assert _charged(vm, k, lambda: slab.kmem_cache_free(plain, obj[0]))[0] == pytest.approx(200e-9, **EXACT)


def test_bare_metal_charges_nothing():
    k = Kernel(KernelConfig(memory="64MiB", init_on_alloc=True))
    s0 = k.stall
    k.slab.kfree(k.slab.kzalloc(100))
    assert k.stall == s0
