from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.physmem import ZERO_PAGE
from hypervisor.machine import OWNER_FREE, OWNER_SHARED, MachineMemory

from .helpers import page


def test_alloc_until_full_then_reuse_lifo():
    m = MachineMemory(3)
    a = m.alloc(0, page(1))
    b = m.alloc(0, page(2))
    c = m.alloc(1, ZERO_PAGE)
    assert (a, b, c) == (0, 1, 2)
    assert m.nr_free == 0 and m.alloc(0, page(3)) == -1
    m.free(b)
    m.free(a)
    # free list:  [1, 0]  -> LIFO hands out 0 first
    assert m.alloc(2, page(4)) == 0
    assert m.owner[0] == 2 and m.refcount[0] == 1 and m.content[0] == page(4)
    assert m.alloc(2, page(5)) == 1
    m.validate()


def test_refcount_put_frees_at_zero_and_double_free_is_an_error():
    m = MachineMemory(2)
    a = m.alloc(0, page(1))
    m.owner[a] = OWNER_SHARED
    m.get(a)
    assert m.put(a) is False and m.refcount[a] == 1
    assert m.put(a) is True and m.owner[a] == OWNER_FREE and m.nr_free == 2
    try:
        m.free(a)
    except ValueError as e:
        assert "freed twice" in str(e)
    else:
        raise AssertionError("double free not caught")


def test_identical_contents_share_one_object():
    m = MachineMemory(4)
    data = page(7)
    a = m.alloc(0, data)
    b = m.alloc(1, data)
    assert m.content[a] is m.content[b]


def test_force_overdraws_and_is_counted():
    m = MachineMemory(1)
    m.alloc(0, page(1))
    assert m.alloc(0, page(2), force=True) == 1
    assert m.nr_free == -1 and m.overdraft_allocs == 1 and m.min_free == -1


def test_set_content_clears_cached_checksum():
    m = MachineMemory(1)
    a = m.alloc(0, page(1))
    m.csum[a] = 1234
    m.set_content(a, page(2))
    assert m.csum[a] == -1 and m.content[a] == page(2)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=60))
def test_alloc_free_invariants(ops):
    m = MachineMemory(8)
    held = []
    for do_alloc, x in ops:
        if do_alloc:
            mpn = m.alloc(x, page(x))
            if len(held) == 8:
                assert mpn == -1
            else:
                assert mpn >= 0 and mpn not in held
                held.append(mpn)
        elif held:
            m.free(held.pop(x % len(held)))
        m.validate()
        assert m.nr_free == 8 - len(held)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, (1 << 64) - 1),
       st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["zero", "bytes", "app", "app-db", "lazy-written"])),
                min_size=1, max_size=30))
def test_inlined_fold_makes_the_same_contents_as_the_plain_fold(seed, ops):
    """MachineMemory.fold (write_digest and written() inlined) against its plain twin
    _fold: the same write generations give the same recipes, byte for byte."""
    from experiments.content import ContentSource
    from guestkernel.physmem import WrittenPage, page_bytes

    src = ContentSource(7, "vm")

    def initial(kind: str, i: int):
        if kind == "zero":
            return ZERO_PAGE
        if kind == "bytes":
            return page(i + 1)
        if kind == "lazy-written":
            return WrittenPage(page(i + 1), i * 977, 16 * i, 32)
        return src.app_page("database" if kind == "app-db" else "webserver", i, 0, True)

    machines = []
    for _ in range(2):
        m = MachineMemory(6)
        m.write_seed = seed
        for i in range(6):
            m.alloc(1, initial(ops[i % len(ops)][1], i))
        machines.append(m)
    fast, plain = machines
    for mpn, _ in ops:
        a = fast.fold(mpn)
        b = plain._fold(mpn)
        assert type(a) is type(b) and page_bytes(a) == page_bytes(b)
        assert fast.csum[mpn] == plain.csum[mpn] == -1
    assert fast.write_folds == plain.write_folds == len(ops)
    assert [page_bytes(c) for c in fast.content] == [page_bytes(c) for c in plain.content]
