"""BareMetal's inlined zeroing against its plain twin (guestkernel/physmem.py)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE, BareMetal
from guestkernel.units import PAGE_SIZE

N = 8
OPS = st.lists(st.tuples(st.sampled_from(["store", "touch", "load", "zero"]), st.integers(0, N - 1),
                         st.integers(0, 255)), max_size=40)


def _run(ops, zero_by_store: bool) -> BareMetal:
    m = BareMetal(N, write_seed=3)
    for op, pfn, byte in ops:
        if op == "store":
            m.store(pfn, bytes([byte]) * PAGE_SIZE)
        elif op == "touch":
            m.touch(pfn, byte & 1 == 1)
        elif op == "load":
            m.load(pfn)
        elif zero_by_store:
            assert m._zero_by_store(pfn) == 0.0
        else:
            assert m.zero(pfn) == 0.0
    return m


@settings(max_examples=100, deadline=None)
@given(OPS)
def test_zero_is_the_store_of_the_zero_page(ops):
    # the inlined zero leaves every frame, its written mark and the fold counter as
    # store(pfn, ZERO_PAGE) does
    a, b = _run(ops, False), _run(ops, True)
    assert a.frames == b.frames and a.dirty == b.dirty
    assert a.write_generation == b.write_generation
    assert [a.load(p) for p in range(N)] == [b.load(p) for p in range(N)]


def test_a_subclass_that_overrides_store_sees_zeroings_as_stores():
    class Recording(BareMetal):
        def __init__(self, n):
            super().__init__(n)
            self.stored = []

        def store(self, pfn, data, from_disk=False):
            self.stored.append((pfn, data is ZERO_PAGE))
            return super().store(pfn, data, from_disk)

    m = Recording(4)
    m.zero(2)
    assert m.stored == [(2, True)]
