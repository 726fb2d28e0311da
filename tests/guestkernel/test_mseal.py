"""mseal (mm/mseal.c, 6.10; per-VMA checks of 6.15+): the results Linux 6.18 gave to
tests/data/traces/new_mm.c (new_mm.trace lines 71-98) and the layout of new_mm.smaps.

    s: 0123      (pages; S = sealed)
       .SS.
"""

from guestkernel import uapi as U
from guestkernel.vma import VM_SEALED, validate_mm, vm_flag_names

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS


def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def layout(t, lo, n):
    return [((v.vm_start - lo) // P, (v.vm_end - lo) // P, vm_flag_names(v.vm_flags))
            for v in t.mm.mm_mt.vmas if v.vm_end > lo and v.vm_start < lo + n * P]


def test_mseal_argument_errors(k, t):
    s = t.mmap(0, 4 * P, RW, ANON)
    assert errno_of(t.mseal, s + P, 2 * P, 1) == U.EINVAL  # line 72: flags
    assert errno_of(t.mseal, s + 1, P, 0) == U.EINVAL  # line 73: unaligned
    t.munmap(s + 3 * P, P)
    assert errno_of(t.mseal, s + 2 * P, 2 * P, 0) == U.ENOMEM  # line 75: the hole
    assert not any(v.vm_flags & VM_SEALED for v in t.mm.mm_mt.vmas)  # nothing changed
    assert t.mseal(s, 0, 0) == 0


def test_sealed_vma_refuses_changes_per_call(k, t):
    s = t.mmap(0, 4 * P, RW, ANON)
    assert t.mseal(s + P, 2 * P, 0) == 0  # line 77
    assert t.mseal(s + P, 2 * P, 0) == 0  # line 78: again
    assert layout(t, s, 4) == [(0, 1, "rd wr mr mw me ac"), (1, 3, "rd wr mr mw me ac sl"),
                               (3, 4, "rd wr mr mw me ac")]
    assert errno_of(t.munmap, s, 4 * P) == U.EPERM  # line 79
    assert errno_of(t.munmap, s + 2 * P, P) == U.EPERM  # line 80
    # line 81: mprotect of [s, s+2): EPERM at s+1, s itself is already read-only (smaps;
    # without an anon_vma, mprotect_fixup also drops its VM_ACCOUNT)
    assert errno_of(t.mprotect, s, 2 * P, U.PROT_READ) == U.EPERM
    assert layout(t, s, 1) == [(0, 1, "rd mr mw me")]
    assert errno_of(t.mprotect, s + P, P, RW) == U.EPERM  # line 82: same rights too
    assert errno_of(t.mremap, s + P, P, 2 * P, U.MREMAP_MAYMOVE) == U.EPERM  # line 83
    # line 84: a move onto a sealed target
    assert errno_of(t.mremap, s + 3 * P, P, P, U.MREMAP_MAYMOVE | U.MREMAP_FIXED,
                    s + P) == U.EPERM
    assert errno_of(t.mmap, s + P, P, RW, ANON | U.MAP_FIXED) == U.EPERM  # line 85
    # lines 86-87: writable anonymous memory may still be discarded
    assert t.madvise(s + P, P, U.MADV_DONTNEED) == 0
    assert t.madvise(s + P, P, U.MADV_WILLNEED) == 0
    assert layout(t, s, 4)[1] == (1, 3, "rd wr mr mw me ac sl")
    validate_mm(t.mm)


def test_sealed_read_only_anon_refuses_discards(k, t):
    r = t.mmap(0, 2 * P, U.PROT_READ, ANON)
    t.mseal(r, 2 * P, 0)
    # lines 90-94: is_discard advices -> EPERM; lines 95-96: the others succeed
    for adv in (U.MADV_DONTNEED, U.MADV_FREE, U.MADV_DONTFORK, U.MADV_WIPEONFORK,
                U.MADV_GUARD_INSTALL):
        assert errno_of(t.madvise, r, P, adv) == U.EPERM, adv
    assert t.madvise(r, P, U.MADV_NOHUGEPAGE) == 0
    assert t.madvise(r, 2 * P, U.MADV_COLD) == 0
    # smaps: "rd mr mw me nh sl" then "rd mr mw me sl"
    assert layout(t, r, 2) == [(0, 1, "rd mr mw me nh sl"), (1, 2, "rd mr mw me sl")]
    # lines 97-98: a sealed read-only file mapping may be discarded
    k.fs.create("/f", 2 * P)
    fd = t.open("/f", U.O_RDWR)
    f = t.mmap(0, 2 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.mseal(f, 2 * P, 0)
    assert t.madvise(f, P, U.MADV_DONTNEED) == 0


def test_seal_survives_fork_and_brk_cannot_shrink_over_it(k, t):
    base = t.mm.brk
    t.brk(base + 4 * P)
    t.mseal(base + 2 * P, 2 * P, 0)
    assert t.brk(base + P) == base + 4 * P  # the shrink's munmap is refused: old break
    child = k.tasks[t.fork()]
    v = child.mm.mm_mt.lookup(base + 2 * P)
    assert v.vm_flags & VM_SEALED
    assert errno_of(child.munmap, base + 2 * P, P) == U.EPERM
    validate_mm(child.mm)
