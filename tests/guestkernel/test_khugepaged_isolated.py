"""khugepaged's collapse in NR_ISOLATED_ANON (6.1 mm/khugepaged.c): __collapse_huge_page_isolate
takes each present page off the LRU and adds it (mod_node_page_state(NR_ISOLATED_ANON +
page_is_file_lru(page), compound_nr(page))); __collapse_huge_page_copy releases each
(release_pte_page: the count taken off) once it is copied. Reclaimers beside khugepaged,
a kernel thread, find those pages isolated at their own time (vmscan's too_many_isolated
reads node_page_state(pgdat, NR_ISOLATED_ANON)). hvsim logs the collapse in vmscan's
`isolating` from the copy's start in khugepaged's own time, in groups of 32 pages each
counted until its last page is released."""

from __future__ import annotations

import simpy

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.khugepaged import KHUGEPAGED_CPU
from guestkernel.vmscan import ScanControl

from .test_thp import ANON, BASE, RW, H, P, thp

COPY = 2.0 ** -10  # seconds a copy costs here, a hole's zeroing ZERO (powers of two: exact sums)
ZERO = 2.0 ** -11


def test_a_collapses_pages_count_as_isolated_anon_until_each_is_copied():
    """100 present pages (every other one of the first 200) and 412 holes: 100 pages
    isolated as the copy starts; page 2m (the m-th present one) is released after m + 1
    copies and m zeroed holes. Groups of 32: until 32 C + 31 Z, 64 C + 63 Z, 96 C + 95 Z,
    the last 4 until 100 C + 99 Z. A direct reclaimer on the guest's one CPU at its own
    time inside finds them (khugepaged is a kernel thread beside it)."""
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="256MiB", cpus=1), env=env)
    t = k.spawn("t")
    t.mmap(BASE, H, RW, ANON | 0x10)  # MAP_FIXED
    for i in range(0, 200, 2):
        t.access(BASE + i * P, True, bytes([i]) * P)
    t.madvise(BASE, H, 14)  # MADV_HUGEPAGE
    k.procfs.write("/sys/kernel/mm/transparent_hugepage/khugepaged/max_ptes_none", "412")
    phys = k.phys
    copy, zero = phys.copy, phys.zero
    seen = []

    def costly_copy(dst, src):
        seen.append(k.vmstat["nr_isolated_anon"])
        copy(dst, src)
        return COPY

    def costly_zero(pfn):
        zero(pfn)
        return ZERO

    phys.copy, phys.zero = costly_copy, costly_zero
    r = k.reclaim
    r.isolating.clear()
    k.khugepaged.do_scan()
    assert thp(k).get("thp_collapse_alloc") == 1
    assert seen == [100] * 100 and k.vmstat["nr_isolated_anon"] == 0
    ends = [32 * COPY + 31 * ZERO, 64 * COPY + 63 * ZERO, 96 * COPY + 95 * ZERO, 100 * COPY + 99 * ZERO]
    assert r.isolating == [(0.0, ends[0], 32, False, KHUGEPAGED_CPU, 0),
                           (0.0, ends[1], 32, False, KHUGEPAGED_CPU, 0),
                           (0.0, ends[2], 32, False, KHUGEPAGED_CPU, 0),
                           (0.0, ends[3], 4, False, KHUGEPAGED_CPU, 0)]
    assert k.khugepaged.cost == ends[3] + 412 * ZERO - 99 * ZERO  # every hole zeroed

    def elsewhere(at):
        sc = ScanControl(32, G.GFP_KERNEL, False, len(k.page_alloc.nodes[0].zones) - 1, False)
        sc.t0, sc.cpu = at, 0
        return r._isolated_elsewhere(False, sc), r._isolated_elsewhere(True, sc)

    assert elsewhere(0.0) == (100, 0)
    assert elsewhere(ends[0]) == (68, 0)
    assert elsewhere(ends[2]) == (4, 0)
    assert elsewhere(ends[3]) == (0, 0)
