"""do_shrink_slab's arithmetic (mm/vmscan.c, 6.1) on a shrinker that records its calls."""

from guestkernel.config import KernelConfig
from guestkernel.gfp import GFP_KERNEL
from guestkernel.kernel import Kernel
from guestkernel.shrinker import SHRINK_BATCH, SHRINK_EMPTY, SHRINK_STOP, Shrinker


class Objects:
    """A cache of `n` objects; every scanned object is freed."""

    def __init__(self, n):
        self.n = n
        self.calls = []

    def count(self, sc):
        return self.n if self.n else SHRINK_EMPTY

    def scan(self, sc):
        self.calls.append(sc.nr_to_scan)
        freed = min(self.n, sc.nr_to_scan)
        self.n -= freed
        return freed


def kernel():
    return Kernel(KernelConfig(memory="64MiB"), name="g")


def test_scan_is_freeable_shifted_by_priority_times_4_over_seeks_in_batches_of_128():
    k = kernel()
    objs = Objects(100_000)
    s = Shrinker("t", objs.count, objs.scan, seeks=2)
    k.shrinkers.register_shrinker(s)
    scanned0 = k.vmstat["slabs_scanned"]
    freed = k.shrinkers.do_shrink_slab(_sc(), s, 12)
    # delta = (100000 >> 12) * 4 / 2 = 24 * 2 = 48 < batch 128 and < freeable: no scan
    assert freed == 0 and objs.calls == [] and s.nr_deferred == 48
    # priority 6: delta = (100000 >> 6) * 4 / 2 = 1562 * 2 = 3124; deferred 48 >> 6 = 0
    freed = k.shrinkers.do_shrink_slab(_sc(), s, 6)
    # batches of 128 while total_scan >= 128 (or >= freeable): 24 of them, 52 left over
    assert objs.calls == [SHRINK_BATCH] * 24
    assert freed == 3072 and k.vmstat["slabs_scanned"] - scanned0 == 3072
    # next_deferred = max(nr + delta - scanned, 0) = 48 + 3124 - 3072
    assert s.nr_deferred == 100


def test_a_small_cache_is_scanned_whole_when_total_scan_reaches_freeable():
    k = kernel()
    objs = Objects(50)
    s = Shrinker("t", objs.count, objs.scan, seeks=2)
    # priority 0: delta = 50 * 4 / 2 = 100, capped at 2 * freeable = 100 >= freeable 50
    assert k.shrinkers.do_shrink_slab(_sc(), s, 0) == 50
    assert objs.calls == [100]  # min(batch, total_scan): one call of 100
    assert k.shrinkers.do_shrink_slab(_sc(), s, 0) == SHRINK_EMPTY


def test_seeks_zero_trims_half_and_stop_ends_the_pass():
    k = kernel()
    objs = Objects(1000)
    s = Shrinker("t", objs.count, objs.scan, seeks=0, batch=100)
    assert k.shrinkers.do_shrink_slab(_sc(), s, 12) == 500  # delta = freeable / 2
    assert objs.calls == [100] * 5
    stop = Shrinker("t", lambda sc: 1000, lambda sc: SHRINK_STOP, seeks=2)
    assert k.shrinkers.do_shrink_slab(_sc(), stop, 0) == 0
    # nothing scanned: all of delta (2000, capped at 2 * 1000) is deferred
    assert stop.nr_deferred == 2000


def test_drop_slab_repeats_until_a_round_frees_at_most_one_shifted():
    k = kernel()
    objs = Objects(5000)
    k.shrinkers.shrinkers[:] = []
    k.shrinkers.register_shrinker(Shrinker("t", objs.count, objs.scan))
    assert k.shrinkers.drop_slab(GFP_KERNEL) == 5000 and objs.n == 0


def _sc():
    from guestkernel.shrinker import ShrinkControl

    return ShrinkControl(GFP_KERNEL)
