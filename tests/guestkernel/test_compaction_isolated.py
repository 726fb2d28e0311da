"""Compaction's too_many_isolated (6.1 mm/compaction.c): at isolate_migratepages_block's
entry, while more pages are isolated on the node (NR_ISOLATED_FILE + NR_ISOLATED_ANON) than
half its LRU pages (inactive + active, anon and file), a run holding pages of its own or an
async one returns -EAGAIN (isolate_migratepages: ISOLATE_ABORT; compact_zone:
COMPACT_CONTENDED), a sync one waits in reclaim_throttle(pgdat, VMSCAN_THROTTLE_ISOLATED)
(HZ/50, woken earlier by wake_throttle_isolated) and checks again; reclaim_throttle does not
sleep a kernel thread (PF_KTHREAD: kcompactd spins). Not too many: wake_throttle_isolated.

The scene is test_compaction's DMA zone (three LRU page-cache pages at 600, 601, 700, free
blocks at 3072 and 3200); the other isolator's pages are set by hand (NR_ISOLATED_FILE), or
logged as a direct reclaimer's batch on CPU 1 over an interval of its own time (vmscan's
`isolating`), as the reclaimer's pass would leave them."""

from __future__ import annotations

import simpy

from guestkernel import gfp as G
from guestkernel.compaction import KTHREAD_CPU, CompactControl
from guestkernel.config import KernelConfig
from guestkernel.filemap import AddressSpace
from guestkernel.kernel import Kernel
from guestkernel.migrate import MIGRATE_ASYNC, MIGRATE_SYNC, MIGRATE_SYNC_LIGHT
from guestkernel.page import PG_lru
from guestkernel.page_alloc import COMPACT_COMPLETE, COMPACT_CONTENDED
from guestkernel.vmscan import HZ, LRU_INACTIVE_FILE, ScanControl

from .test_compaction import _Host, file_page
from .test_page_alloc import empty_zone, give_block, zone_named


def _scene(cpus=1, env=None):
    k = Kernel(KernelConfig(memory="64MiB", min_free_kbytes=0, watermark_scale_factor=1, cpus=cpus), env=env)
    zone = zone_named(k, "DMA")
    empty_zone(k, zone)
    mapping = AddressSpace(_Host())
    for i, pfn in enumerate((600, 601, 700)):
        file_page(k, mapping, pfn, i, bytes([65 + i]) * 4096)
    give_block(k, 3072, 3)
    give_block(k, 3200, 2)
    return k, zone


def _lru(k) -> int:
    vm = k.vmstat
    return vm["nr_inactive_anon"] + vm["nr_active_anon"] + vm["nr_inactive_file"] + vm["nr_active_file"]


def _cc(zone, mode):
    return CompactControl(zone, -1, G.GFP_KERNEL, mode, whole_zone=True, ignore_skip_hint=True)


def test_too_many_isolated_is_more_than_half_the_lru():
    """isolated > (inactive + active) / 2, integer division, anon and file together."""
    k, zone = _scene()
    c = k.compaction
    half = _lru(k) // 2
    assert half >= 1
    k.vmstat["nr_isolated_file"] = half - 1
    k.vmstat["nr_isolated_anon"] = 1
    assert not c.too_many_isolated(_cc(zone, MIGRATE_SYNC))
    k.vmstat["nr_isolated_anon"] = 2
    assert c.too_many_isolated(_cc(zone, MIGRATE_SYNC))


def test_async_compaction_gives_up_contended():
    """An async run finding too many isolated: -EAGAIN before scanning, ISOLATE_ABORT,
    COMPACT_CONTENDED; nothing isolated or scanned, nothing migrated."""
    k, zone = _scene()
    vm = k.vmstat
    vm["nr_isolated_file"] = _lru(k) // 2 + 1
    before = {n: vm[n] for n in ("compact_isolated", "pgmigrate_success", "compact_migrate_scanned",
                                  "vmscan_throttle_isolated")}
    cc = _cc(zone, MIGRATE_ASYNC)
    assert k.compaction.compact_zone(cc) == COMPACT_CONTENDED
    assert {n: vm[n] - before[n] for n in before} == dict.fromkeys(before, 0)
    assert cc.nr_migratepages == 0 and not cc.migratepages and cc.sleep == 0.0
    # the same count with the run's own pages isolated: -EAGAIN whatever the mode
    cc = _cc(zone, MIGRATE_SYNC)
    cc.nr_migratepages = 1
    assert k.compaction.throttle_isolated(cc)
    # not too many: the sync run goes on and compacts as test_compaction's exact scene
    vm["nr_isolated_file"] = 0
    assert k.compaction.compact_zone(_cc(zone, MIGRATE_SYNC)) == COMPACT_COMPLETE
    assert vm["pgmigrate_success"] - before["pgmigrate_success"] == 3


def _batch_scene():
    env = simpy.Environment()
    k, zone = _scene(cpus=2, env=env)
    r = k.reclaim
    assert r.v6 and len(r.direct_clock) == 2
    n = _lru(k) // 2 + 1  # a reclaimer's batch on CPU 1: too many while it is out
    return k, zone, r, n


def test_sync_compaction_waits_hz_50_until_the_batch_is_back():
    """A sync run (CPU 0, own time 0) while CPU 1's reclaimer holds a batch isolated over
    [0, 30 ms): reclaim_throttle(VMSCAN_THROTTLE_ISOLATED) sleeps HZ/50 (20 ms), the batch
    is still out at 20 ms, a second sleep to 40 ms; then not too many:
    wake_throttle_isolated at 40 ms on node 0, and the run compacts."""
    k, zone, r, n = _batch_scene()
    r.isolating.append((0.0, 0.030, n, True, 1, 0))
    vm = k.vmstat
    cc = _cc(zone, MIGRATE_SYNC)
    cc.t0, cc.cpu = 0.0, 0
    assert k.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert HZ // 50 / HZ == 0.02
    assert cc.sleep == 0.04
    assert vm["vmscan_throttle_isolated"] == 2 and vm["vmscan_throttle_isolated_usec"] == 40000
    assert vm["pgmigrate_success"] == 3
    assert r.isolated_wakes[0] == (0.04, 0, 0)


def test_sync_compaction_is_woken_by_wake_throttle_isolated():
    """CPU 1's reclaimer finds the isolated pages few at 5 ms (its too_many_isolated calls
    wake_throttle_isolated): the compactor asleep since 0 wakes then, not at HZ/50."""
    k, zone, r, n = _batch_scene()
    r.isolating.append((0.0, 0.004, n, True, 1, 0))
    r.isolated_wakes.append((0.005, 1, 0))
    cc = _cc(zone, MIGRATE_SYNC_LIGHT)
    cc.t0, cc.cpu = 0.0, 0
    assert k.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert cc.sleep == 0.005
    assert k.vmstat["vmscan_throttle_isolated"] == 1 and k.vmstat["vmscan_throttle_isolated_usec"] == 5000


def test_kcompactd_does_not_sleep_in_reclaim_throttle():
    """kcompactd is a kernel thread: reclaim_throttle returns at once (PF_KTHREAD), the
    loop checks again (cond_resched) until the batch is back at 30 ms: no throttle is
    counted, 30 ms of its own time pass busy."""
    k, zone, r, n = _batch_scene()
    r.isolating.append((0.0, 0.030, n, True, 1, 0))
    cc = CompactControl(zone, 9, G.GFP_KERNEL, MIGRATE_SYNC_LIGHT)
    k.compaction._set_clock(cc, True)
    assert cc.kthread and cc.t0 == 0.0
    assert not k.compaction.throttle_isolated(cc)
    assert cc.sleep == 0.0 and cc.cost == 0.030
    assert k.vmstat["vmscan_throttle_isolated"] == 0


def test_a_direct_reclaimers_pages_on_the_same_cpu_do_not_count():
    """A batch logged by CPU 0's own reclaimer is not beside a compactor on CPU 0."""
    k, zone, r, n = _batch_scene()
    r.isolating.append((0.0, 0.030, n, True, 0, 0))
    cc = _cc(zone, MIGRATE_ASYNC)
    cc.t0, cc.cpu = 0.0, 0
    assert not k.compaction.too_many_isolated(cc)
    cc.cpu = 1  # the compactor on CPU 1 instead: CPU 0's batch is beside it
    assert k.compaction.too_many_isolated(cc)


# -- compaction's own batches in NR_ISOLATED_* (isolate_migratepages_block's
# node_stat_mod_folio, migrate_folio_done, putback_movable_pages), seen by reclaimers

COPY = 2.0 ** -10  # seconds a migration copy costs here (a power of two: sums are exact)


def _costly_copies(k, seen):
    """Each migration copy costs COPY and records NR_ISOLATED_FILE as it starts."""
    phys = k.phys
    copy = phys.copy

    def costly(dst, src):
        seen.append(k.vmstat["nr_isolated_file"])
        copy(dst, src)
        return COPY

    phys.copy = costly


def test_compactions_batch_counts_in_nr_isolated_until_each_page_is_migrated():
    """isolate_migratepages_block adds each LRU page it isolates to NR_ISOLATED_FILE (the
    three page-cache pages: 3); migrate_folio_done takes each off once migrated (3, 2, 1
    as the copies start), none is left after the run."""
    k, zone = _scene()
    seen = []
    _costly_copies(k, seen)
    cc = _cc(zone, MIGRATE_SYNC)
    assert k.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert seen == [3, 2, 1]
    assert k.vmstat["nr_isolated_file"] == 0 and k.vmstat["nr_isolated_anon"] == 0
    assert k.vmstat["pgmigrate_success"] == 3


def test_a_page_that_fails_migration_counts_until_it_is_put_back():
    """putback_movable_pages takes a page that failed migration (under writeback: -EBUSY)
    off NR_ISOLATED_FILE as it goes back on its LRU list. From the list head: 700 is
    copied with 3 counted and migrated, 601 fails and stays counted, 600 is copied with
    2 counted; after the run 601 is back and nothing counts."""
    k, zone = _scene()
    k.pfn_to_page(601).flags |= 1 << 1  # PG_writeback: sync isolation takes it, migration fails
    seen = []
    _costly_copies(k, seen)
    cc = _cc(zone, MIGRATE_SYNC)
    k.compaction.compact_zone(cc)
    assert seen == [3, 2]
    assert k.vmstat["pgmigrate_fail"] == 1 and k.vmstat["pgmigrate_success"] == 2
    assert k.vmstat["nr_isolated_file"] == 0
    assert k.pfn_to_page(601).flags & PG_lru


def test_compactions_batch_makes_a_direct_reclaimers_too_many_isolated_true():
    """6.1 too_many_isolated (mm/vmscan.c) reads NR_ISOLATED_FILE, which counts the
    compactor's batch: CPU 1's sync run from its own time 0 holds the three file pages
    from 0 until the third copy ends at 3 * COPY. A direct reclaimer on CPU 0 whose own
    time falls inside finds 3 isolated against the node's inactive file list (3 pages):
    too many for GFP_KERNEL (3 > 3 >> 3 = 0), not for GFP_NOFS (3 > 3 is false) unless one
    more page is isolated (4 > 3). At 3 * COPY the batch is back: 0, not too many. A
    reclaimer on CPU 1 (the compactor's own CPU) never runs beside it."""
    env = simpy.Environment()
    k, zone = _scene(cpus=2, env=env)
    r = k.reclaim
    _costly_copies(k, [])
    cc = _cc(zone, MIGRATE_SYNC)
    cc.t0, cc.cpu = 0.0, 1
    assert k.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert r.isolating == [(0.0, 3 * COPY, 3, True, 1, 0)]
    lv = r.lruvecs[0]
    assert lv.lists[LRU_INACTIVE_FILE].nr == 3

    def sc(gfp, t, cpu=0):
        s = ScanControl(32, gfp, False, len(k.page_alloc.nodes[0].zones) - 1, False)
        s.t0, s.cpu = t, cpu
        return s

    for t in (0.0, COPY, 3 * COPY - COPY / 2):
        assert r._isolated_elsewhere(True, sc(G.GFP_KERNEL, t), 0) == 3
        assert r._isolated_elsewhere(False, sc(G.GFP_KERNEL, t), 0) == 0
        assert r.too_many_isolated(lv, True, sc(G.GFP_KERNEL, t))
        assert not r.too_many_isolated(lv, True, sc(G.GFP_NOFS, t))
        assert not r.too_many_isolated(lv, False, sc(G.GFP_KERNEL, t))  # (anon: none isolated)
    k.vmstat["nr_isolated_file"] = 1
    assert r.too_many_isolated(lv, True, sc(G.GFP_NOFS, COPY))
    k.vmstat["nr_isolated_file"] = 0
    assert not r.too_many_isolated(lv, True, sc(G.GFP_KERNEL, 3 * COPY))
    assert not r.too_many_isolated(lv, True, sc(G.GFP_KERNEL, COPY, cpu=1))
    # another node's batch is not this node's (node_page_state(pgdat, ...))
    r.isolating[0] = (0.0, 3 * COPY, 3, True, 1, 1)
    assert not r.too_many_isolated(lv, True, sc(G.GFP_KERNEL, COPY))


def test_kcompactds_batch_counts_beside_a_task_even_on_one_cpu():
    """kcompactd is a kernel thread beside the tasks (as kswapd is): its batch is logged
    on a 1-vCPU guest too and a direct reclaimer on CPU 0 at its own time inside it finds
    the pages isolated; a task's own compaction on the 1-vCPU guest is never beside
    a reclaimer of the same CPU, and is not logged."""
    env = simpy.Environment()
    k, zone = _scene(cpus=1, env=env)
    r = k.reclaim
    _costly_copies(k, [])
    cc = _cc(zone, MIGRATE_SYNC)
    k.compaction._set_clock(cc, True)
    assert k.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert r.isolating == [(0.0, 3 * COPY, 3, True, KTHREAD_CPU, 0)]
    s = ScanControl(32, G.GFP_KERNEL, False, len(k.page_alloc.nodes[0].zones) - 1, False)
    s.t0, s.cpu = COPY, 0
    assert r.too_many_isolated(r.lruvecs[0], True, s)
    # a task's run on the one CPU
    k2, zone2 = _scene(cpus=1, env=simpy.Environment())
    _costly_copies(k2, [])
    cc = _cc(zone2, MIGRATE_SYNC)
    cc.t0, cc.cpu = 0.0, 0
    assert k2.compaction.compact_zone(cc) == COMPACT_COMPLETE
    assert k2.reclaim.isolating == []


def test_a_compactor_sees_another_compactors_batch():
    """compaction's too_many_isolated counts NR_ISOLATED_* whoever isolated: kcompactd's
    batch of 3 (on the 2-CPU guest) is beside a direct compactor on CPU 0 at its own time
    inside it; with the node's LRU at 4 pages, 3 > 4 / 2."""
    env = simpy.Environment()
    k, zone = _scene(cpus=2, env=env)
    _costly_copies(k, [])
    cc = _cc(zone, MIGRATE_SYNC)
    k.compaction._set_clock(cc, True)
    k.compaction.compact_zone(cc)
    assert k.reclaim.isolating == [(0.0, 3 * COPY, 3, True, KTHREAD_CPU, 0)]
    assert _lru(k) == 4
    direct = _cc(zone, MIGRATE_ASYNC)
    direct.t0, direct.cpu = COPY, 0
    assert k.compaction.too_many_isolated(direct)
    direct.t0 = 3 * COPY
    assert not k.compaction.too_many_isolated(direct)
