"""External fragmentation indices (mm/vmstat.c: fill_contig_page_info, unusable_free_index,
__fragmentation_index, extfrag_for_order, /sys/kernel/debug/extfrag) and proactive
compaction (mm/compaction.c 6.1: fragmentation_score_zone/_weighted/_node,
fragmentation_score_wmark, should_proactive_compact_node, proactive_compact_node,
__compact_finished's proactive branch, kcompactd()'s HPAGE_FRAG_CHECK_INTERVAL_MSEC timeout
and its COMPACT_MAX_DEFER_SHIFT back-off, compaction_proactiveness_sysctl_handler).

The fixture tests/data/compaction/extfrag.txt is this machine's kernel (measure_extfrag.sh):
its buddyinfo counts, fed to hvsim's formulas, must give the kernel's own debugfs text byte
for byte, and its proactive compaction must have run exactly where the score rule says.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import simpy

import guestkernel.uapi as U
from guestkernel.compaction import Compaction, extfrag_line
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import FreeArea, validate_buddy

from .test_page_alloc import empty_zone, give_block, zone_named

FIXTURE = Path(__file__).parent.parent / "data" / "compaction" / "extfrag.txt"


def sections() -> dict:
    out = {}
    for part in FIXTURE.read_text().split("== ")[1:]:
        name, body = part.split(" ==\n", 1)
        out[name] = body
    return out


class _Zone:
    """A zone as the formulas see it: free_area[].nr_free and present_pages."""

    def __init__(self, name: str, counts, present: int = 0) -> None:
        self.name = name
        self.free_area = [FreeArea(o) for o in range(11)]
        for area, n in zip(self.free_area, counts):
            area.nr_free = n
        self.present_pages = present


def fixture_zones(buddyinfo: str, present: dict) -> list[_Zone]:
    zones = []
    for line in buddyinfo.splitlines():
        f = line.split()
        zones.append(_Zone(f[3], [int(x) for x in f[4:]], present.get(f[3], 0)))
    return zones


def _present() -> dict:
    return {z: int(n) for z, n in (line.split() for line in sections()["zoneinfo present"].splitlines())}


SNAPSHOTS = ["quiet", "fragmented", "proactiveness 0 start", "proactiveness 0 end",
             "proactiveness 20 start", "proactiveness 20 end", "proactiveness 100 start",
             "proactiveness 100 end"]


@pytest.mark.parametrize("snap", SNAPSHOTS)
def test_extfrag_debugfs_text_from_the_real_kernels_free_lists(snap):
    """unusable_index and extfrag_index, recomputed from the same instant's /proc/buddyinfo
    by hvsim's unusable_free_index / fragmentation_index and printed as unusable_show_print
    and extfrag_show_print do, equal the real kernel's files byte for byte."""
    sec = sections()
    zones = fixture_zones(sec[f"buddyinfo {snap}"], _present())
    unusable = "".join(extfrag_line(0, z.name, [Compaction.unusable_free_index(z, o) for o in range(11)], False)
                       for z in zones)
    extfrag = "".join(extfrag_line(0, z.name, [Compaction.fragmentation_index(z, o) for o in range(11)], True)
                      for z in zones)
    assert unusable == sec[f"unusable_index {snap}"]
    assert extfrag == sec[f"extfrag_index {snap}"]


def test_extfrag_line_formats_every_index_value():
    # "%d.%03d " and "%2d.%03d ": 0..1000 and -1000 (a suitable block is free)
    assert extfrag_line(1, "Normal", [0, 7, 999, 1000], False) == "Node 1, zone   Normal 0.000 0.007 0.999 1.000 \n"
    assert extfrag_line(0, "DMA", [-1000, 0, 545], True) == "Node 0, zone      DMA -1.000  0.000  0.545 \n"


def _node_score(zones: list[_Zone], order: int = 9) -> int:
    node_present = sum(z.present_pages for z in zones)
    return sum(z.present_pages * Compaction.extfrag_for_order(z, order) // (node_present + 1) for z in zones)


def test_real_kernels_proactive_compaction_ran_exactly_where_the_score_rule_says():
    """With the pattern held, the node's fragmentation score (from buddyinfo and the zones'
    present pages) was 51-52: above proactiveness 100's high mark (min(max(0, 5) + 10,
    100) = 15), below 20's (90), and 0 disables it; the kernel compacted only under 100
    (compact_migrate_scanned and pgmigrate_success rose) and never counted a kcompactd
    wakeup for it (compact_daemon_wake stayed 0: no kcompactd_do_work)."""
    sec = sections()
    present = _present()
    c = Compaction.__new__(Compaction)  # the score marks need only the tunable
    score = {snap: _node_score(fixture_zones(sec[f"buddyinfo {snap}"], present)) for snap in SNAPSHOTS}
    assert score["proactiveness 20 end"] == 51 and score["proactiveness 0 end"] == 52
    assert score["quiet"] == 14

    def vm(name):
        return {k: int(v) for k, v in (line.split() for line in sec[f"vmstat {name}"].splitlines())}

    for p in (0, 20, 100):
        c.compaction_proactiveness = p
        high = c.fragmentation_score_wmark(False)
        before, after = vm(f"proactiveness {p} start"), vm(f"proactiveness {p} end")
        ran = after["compact_migrate_scanned"] > before["compact_migrate_scanned"]
        rule = bool(p) and score[f"proactiveness {p} start"] > high
        assert ran == rule, (p, high, score[f"proactiveness {p} start"])
        if ran:
            assert after["pgmigrate_success"] > before["pgmigrate_success"]
        assert after["compact_daemon_wake"] == before["compact_daemon_wake"]
    assert (c.fragmentation_score_wmark(True), c.fragmentation_score_wmark(False)) == (5, 15)
    # and the kernel's pass lowered the score towards the low mark (5)
    assert score["proactiveness 100 end"] < score["proactiveness 100 start"] < score["proactiveness 20 end"]


def test_fragmentation_score_marks_and_weighting():
    """fragmentation_score_wmark: low = max(100 - proactiveness, 5), high = min(low + 10,
    100); fragmentation_score_zone_weighted: present * score // (node_present + 1)."""
    c = Compaction.__new__(Compaction)
    for p, marks in ((20, (80, 90)), (0, (100, 100)), (95, (5, 15)), (100, (5, 15)), (91, (9, 19))):
        c.compaction_proactiveness = p
        assert (c.fragmentation_score_wmark(True), c.fragmentation_score_wmark(False)) == marks
    # two zones: 100 free order-0 pages (score 100) and one free order-9 block (score 0)
    small = _Zone("DMA32", [100], present=1000)
    big = _Zone("Normal", [0] * 9 + [1], present=3000)
    assert Compaction.extfrag_for_order(small, 9) == 100 and Compaction.extfrag_for_order(big, 9) == 0
    assert _node_score([small, big]) == 1000 * 100 // 4001  # 24
    # free pages split: 512 in one order-9 block, 512 as order-0 pages: 50
    assert Compaction.extfrag_for_order(_Zone("x", [512] + [0] * 8 + [1]), 9) == 50
    assert Compaction.unusable_free_index(_Zone("x", [0] * 11), 3) == 1000
    assert Compaction.extfrag_for_order(_Zone("x", [0] * 11), 3) == 0


def fragmented_guest(env=None, proactiveness: int = 20):
    """A 64 MiB guest whose DMA32 zone holds only scattered free order-0 pages among LRU
    page-cache pages: anonymous pages written, every other one dropped."""
    k = Kernel(KernelConfig(memory="64MiB", compaction_proactiveness=proactiveness), env=env)
    t = k.spawn("frag")
    n = 4096
    a = t.mmap(0, n * 4096, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(n):
        t.access(a + i * 4096, True, bytes([i & 0xFF]) * 8)
    for i in range(0, n, 2):
        t.madvise(a + i * 4096, 4096, U.MADV_DONTNEED)
    k.drain_all_pages()
    return k, t, a


def test_proactive_compaction_compacts_to_the_low_mark_and_counts_no_kcompactd_events():
    k, t, a = fragmented_guest()
    c = k.compaction
    node = k.page_alloc.nodes[0]
    c.compaction_proactiveness = 100  # marks 5 / 15
    start = c.fragmentation_score_node(node)
    assert start > 15 and c.should_proactive_compact_node(node)
    vm0 = dict(k.vmstat)
    c.proactive_compact_node(node)
    for zone in node.zones:
        if zone.populated():
            # __compact_finished: each zone compacted down to the low mark, or its
            # scanners met first
            assert c.fragmentation_score_zone(zone) <= 5 or zone.compact_cached_migrate_pfn[0] == zone.zone_start_pfn
    assert c.fragmentation_score_node(node) < start
    d = {n: k.vmstat[n] - vm0.get(n, 0) for n in k.vmstat if k.vmstat[n] != vm0.get(n, 0)}
    assert d["compact_migrate_scanned"] > 0 and d["pgmigrate_success"] > 0
    # 6.1's proactive_compact_node counts no KCOMPACTD_* events (6.18, the fixture's
    # kernel, added the scanned ones; neither counts compact_daemon_wake)
    for name in ("compact_daemon_wake", "compact_daemon_migrate_scanned", "compact_daemon_free_scanned",
                 "compact_stall"):
        assert name not in d
    for i in range(1, 4096, 2):
        assert t.peek(a + i * 4096, 8) == bytes([i & 0xFF]) * 8
    validate_buddy(k.page_alloc)


def test_kcompactd_proactive_timer_backoff_and_sysctl_trigger():
    """kcompactd wakes every 500 ms; a proactive pass that does not lower the node's score
    defers the next check by 500 ms << COMPACT_MAX_DEFER_SHIFT (32 s). Proactiveness 0
    sleeps until woken; writing a non-zero value triggers a pass at once."""
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="64MiB", compaction_proactiveness=0), env=env)
    c = k.compaction
    node = k.page_alloc.nodes[0]
    kd = c.kcompactd[0]
    zone = zone_named(k, "DMA")
    env.run(until=10)
    assert kd.proactive_passes == 0
    # make the node's score high without anything to migrate: DMA holds all the free
    # memory as scattered order-0 pages (a pass cannot lower it)
    for z in node.zones:
        if z.populated():
            empty_zone(k, z)
    for i in range(0, 200, 2):
        give_block(k, 1024 + i, 0)
    assert c.fragmentation_score_node(node) > 0
    k.procfs.write("/proc/sys/vm/compaction_proactiveness", "100")
    assert node.proactive_compact_trigger
    # the score is weighted by DMA's share of the node (4096 of 16384 pages): 100 * 4096
    # // 16385 = 24 > 15
    assert c.fragmentation_score_node(node) == 4096 * 100 // (16384 + 1)
    env.run(until=10.001)
    assert kd.proactive_passes == 1 and not node.proactive_compact_trigger
    # no progress: the next check 32 s later, not at 10.5
    env.run(until=41.9)
    assert kd.proactive_passes == 1
    env.run(until=42.1)
    assert kd.proactive_passes == 2
    assert k.vmstat["compact_daemon_wake"] == 0
    del zone


def test_buddyinfo_lines_render_the_real_kernels_text():
    """frag_show_print: every /proc/buddyinfo snapshot of the fixture, re-rendered from its
    parsed counts by hvsim's buddyinfo_line, byte for byte."""
    from guestkernel.procfs import buddyinfo_line

    sec = sections()
    for snap in SNAPSHOTS:
        text = sec[f"buddyinfo {snap}"]
        lines = []
        for line in text.splitlines():
            f = line.split()
            lines.append(buddyinfo_line(int(f[1].rstrip(",")), f[3], [int(x) for x in f[4:]]))
        assert "".join(lines) == text


def test_guest_extfrag_files_follow_its_own_buddyinfo():
    """A fragmented guest's /sys/kernel/debug/extfrag files are the formulas applied to the
    counts its /proc/buddyinfo shows at the same moment (one zone per line, same zones)."""
    k, _t, _a = fragmented_guest()
    buddy = k.procfs.read("/proc/buddyinfo")
    zones = fixture_zones(buddy, {})
    unusable = "".join(extfrag_line(0, z.name, [Compaction.unusable_free_index(z, o) for o in range(11)], False)
                       for z in zones)
    extfrag = "".join(extfrag_line(0, z.name, [Compaction.fragmentation_index(z, o) for o in range(11)], True)
                      for z in zones)
    assert k.procfs.read("/sys/kernel/debug/extfrag/unusable_index") == unusable
    assert k.procfs.read("/sys/kernel/debug/extfrag/extfrag_index") == extfrag
    assert any(Compaction.unusable_free_index(z, 9) > 0 for z in zones)  # fragmented
