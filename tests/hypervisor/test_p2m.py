from hypervisor.p2m import P2M, P2M_NONE, P2M_PRIVATE, P2M_SWAPPED


def test_set_keeps_state_counts_exact():
    p = P2M(1024)
    assert p.nr[P2M_NONE] == 1024 and len(p.large) == 2
    p.set(5, P2M_PRIVATE, 9)
    p.set(6, P2M_SWAPPED, 0)
    p.set(5, P2M_SWAPPED, 1)
    assert p.nr[P2M_NONE] == 1022 and p.nr[P2M_PRIVATE] == 0 and p.nr[P2M_SWAPPED] == 2
    assert p.pfns_in(P2M_SWAPPED) == [5, 6] and p.mpn[5] == 1
    p.validate()


def test_representation_is_compact():
    # 1 M guest frames: arrays, not objects per page (about 7 bytes a frame)
    p = P2M(1 << 20)
    assert len(p.state) == 1 << 20 and p.mpn.itemsize == 4
