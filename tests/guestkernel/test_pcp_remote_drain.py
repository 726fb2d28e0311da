"""Remote-node per-CPU list drain (Linux 6.1 mm/vmstat.c refresh_cpu_vm_stats, CONFIG_NUMA;
mm/page_alloc.c drain_zone_pages).

Rules: vmstat_update runs on each CPU every vm.stat_interval (1 s); refresh_cpu_vm_stats
folds the CPU's counter diffs of every zone, and a zone with a diff gets pcp->expire = 3
("3 seconds idle till flush"); a list with pages and expire set is then counted down
(expire set to 0 instead on a zone of the CPU's own node: never drained), and at zero
drain_zone_pages frees min(count, batch) pages. Those frees change NR_FREE_PAGES on the
CPU (__mod_zone_freepage_state per page), folded into the zone each time the diff passes
the stat threshold (calculate_normal_threshold: 2 x fls(CPUs) x (1 + fls(managed /
128 MiB))): a diff left nonzero restarts the countdown at the next refresh, one folded to
exactly 0 does not. vmstat_update requeues itself while a refresh changes something; the
shepherd queues it on a CPU with a counter diff (need_update)."""

from __future__ import annotations

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import validate_buddy


def numa(memory="512MiB", cpus=2, env=None):
    k = Kernel(KernelConfig(memory=memory, nodes=2, cpus=cpus), env=env)
    pa = k.page_alloc
    pa.drain_all_pages()
    for cpu in range(cpus):  # fold what booting left: every list empty, no diff
        pa.refresh_cpu_vm_stats(cpu)
        assert not pa.need_update(cpu)
    return k, pa


def remote_and_local(pa):
    remote = next(z for z in pa.zones if z.node.nid == 1)
    local = next(z for z in pa.zones if z.node.nid == 0 and z.name != "DMA")
    return remote, local


def free_on_cpu0(k, pa, nid, n):
    """cpu 0 allocates `n` pages of node `nid` and frees them: they wait on cpu 0's list."""
    pages = [pa.alloc_pages(G.GFP_KERNEL, 0, cpu=0, nid=nid) for _ in range(n)]
    for page in pages:
        pa.free_pages(page, 0, cpu=0)


def test_a_remote_list_is_drained_a_batch_every_third_refresh():
    k, pa = numa()
    remote, local = remote_and_local(pa)
    pcp = remote.pcp[0][0]
    assert pa.cpu_to_node == [0, 1] and pcp.batch == 15
    # node 1's DMA32: 64512 managed pages < 128 MiB x 2: threshold 2 x fls(2) x (1 + fls(1)) = 8
    assert remote.managed_pages >> 15 == 1 and pa.stat_threshold(remote) == 8
    free_on_cpu0(k, pa, 1, 40)
    free_on_cpu0(k, pa, 0, 40)
    n = pcp.count
    kept = local.pcp[0][0].count
    assert n >= 40 and kept >= 40
    counts = []
    for _ in range(9):
        pa.refresh_cpu_vm_stats(0)
        counts.append(pcp.count)
    # refresh 1: diff -> expire 3, counted down to 2; 2: 1; 3: 0, drain 15. The 15 frees
    # leave NR_FREE_PAGES's diff at 15 - 9 = 6 (folded once past 8): refresh 4 sets
    # expire 3 again, and so on
    assert counts == [n, n, n - 15, n - 15, n - 15, n - 30, n - 30, n - 30, max(0, n - 45)]
    assert local.pcp[0][0].count == kept and local.pcp[0][0].expire == 0  # never drained
    assert k.vmstat["pcp_remote_drain"] == n - counts[-1]
    validate_buddy(pa)


def test_a_cpu_never_drains_lists_of_its_own_node():
    k, pa = numa()
    remote, local = remote_and_local(pa)
    # cpu 1 (node 1) frees node 1's pages: its own node's list
    pages = [pa.alloc_pages(G.GFP_KERNEL, 0, cpu=1, nid=1) for _ in range(30)]
    for page in pages:
        pa.free_pages(page, 0, cpu=1)
    n = remote.pcp[1][0].count
    for _ in range(10):
        pa.refresh_cpu_vm_stats(1)
    assert remote.pcp[1][0].count == n and remote.pcp[1][0].expire == 0


def test_a_drain_that_folds_the_diff_to_zero_stops_the_countdown():
    # one CPU, 192 MiB over two nodes: node 1's zone has < 128 MiB, threshold
    # 2 x fls(1) x (1 + fls(0)) = 2, batch 3 (zone_batchsize): the drain's 3 frees take
    # the diff 1, 2, 3 > 2 -> folded, 0. Nothing restarts the countdown: the rest waits
    k, pa = numa(memory="192MiB", cpus=1)
    remote = next(z for z in pa.zones if z.node.nid == 1)
    pcp = remote.pcp[0][0]
    assert pa.stat_threshold(remote) == 2 and pcp.batch == 3
    free_on_cpu0(k, pa, 1, 10)
    n = pcp.count
    counts = []
    for _ in range(6):
        pa.refresh_cpu_vm_stats(0)
        counts.append(pcp.count)
    assert counts == [n, n, n - 3, n - 3, n - 3, n - 3]
    assert not pa.need_update(0) and pcp.expire == 0


def _busy_locally(env, pa, held):
    """cpu 0 takes a page of its own node every second (at k + 0.5 s): its counters move,
    so the shepherd keeps its vmstat work running."""
    while True:
        yield env.timeout(1.0 if held else 0.5)
        held.append(pa.alloc_pages(G.GFP_KERNEL, 0, cpu=0, nid=0))


def test_vmstat_work_drains_a_remote_list_at_whole_seconds_while_the_cpu_is_busy():
    env = simpy.Environment()
    k, pa = numa(env=env)
    remote, _ = remote_and_local(pa)
    pcp = remote.pcp[0][0]
    free_on_cpu0(k, pa, 1, 40)
    n = pcp.count
    held = []
    env.process(_busy_locally(env, pa, held))
    seen = []
    for t in (0.9, 2.9, 3.1, 5.9, 6.1):
        env.run(until=t)
        seen.append(pcp.count)
    # refreshes at 1, 2, 3 (drain), 4, 5, 6 (drain)
    assert seen == [n, n, n - 15, n - 15, n - 30]
    # vm.stat_interval = 2 from now: the wait begun at 6 s ends at 7 (expire 3 -> 2),
    # then 9 (1) and 11 (0: drain)
    k.procfs.write("/proc/sys/vm/stat_interval", "2")
    env.run(until=10.9)
    assert pcp.count == n - 30
    env.run(until=11.1)
    assert pcp.count == max(0, n - 45)
    validate_buddy(pa)


def test_an_idle_cpu_stops_counting_down_its_remote_lists():
    # vmstat_update requeues itself only after a refresh that changed something, and the
    # shepherd queues it only on a CPU with a counter diff: cpu 0, idle after its frees,
    # refreshes at 1 s (the diff: expire 3 -> 2) and 2 s (2 -> 1, no change), then never
    env = simpy.Environment()
    k, pa = numa(env=env)
    remote, _ = remote_and_local(pa)
    pcp = remote.pcp[0][0]
    free_on_cpu0(k, pa, 1, 40)
    n = pcp.count
    env.run(until=30)
    assert pcp.count == n and pcp.expire == 1


def test_bulk_moves_change_the_free_pages_diff_as_mod_zone_page_state_does():
    # __mod_zone_page_state: x = diff + delta; |x| > threshold (8 here) folds x into the
    # zone and leaves 0. rmqueue_bulk makes one call for the whole refill (-15: folded);
    # free_pcppages_bulk one per block (+1 each)
    k, pa = numa()
    remote, _ = remote_and_local(pa)
    pcp = remote.pcp[0][0]
    assert pcp.stat_threshold == 8 and pcp.free_diff == 0
    page = pa.alloc_pages(G.GFP_KERNEL, 0, cpu=0, nid=1)  # a refill of 15: |-15| > 8
    assert pcp.count == 14 and pcp.free_diff == 0
    pa.free_pages(page, 0, cpu=0)
    pcp.free_diff = 5
    pa._free_pages_bulk(remote, 3, pcp)  # 6, 7, 8: not past 8
    assert pcp.free_diff == 8
    pa._free_pages_bulk(remote, 2, pcp)  # 9 > 8: folded, then 1
    assert pcp.free_diff == 1 and pcp.count == 10
    validate_buddy(pa)


def _mod_zone_page_state(x: int, delta: int, t: int) -> int:
    """mm/vmstat.c __mod_zone_page_state's per-CPU diff, as written there."""
    x = delta + x
    return 0 if abs(x) > t else x


@settings(max_examples=60, deadline=None)
@given(x0=st.integers(-8, 8), n=st.integers(0, 45))
def test_the_bulk_free_diff_equals_one_mod_zone_page_state_per_page(x0, n):
    k, pa = numa()
    remote, _ = remote_and_local(pa)
    pcp = remote.pcp[0][0]
    free_on_cpu0(k, pa, 1, 40)
    n = min(n, pcp.count)
    pcp.free_diff = x0
    pa._free_pages_bulk(remote, n, pcp)
    x = x0
    for _ in range(n):
        x = _mod_zone_page_state(x, 1, pcp.stat_threshold)
    assert pcp.free_diff == x


# -- 2.6 era: the slab reaper's drain (2.6.16-2.6.21; 2.6.22 moved it to vmstat) ---------
#
# Rules (2.6.20 mm/slab.c init_reap_node, next_reap_node, cache_reap; mm/page_alloc.c
# drain_node_pages): each CPU keeps a reap rotor over the online nodes, starting at the
# node after its own; at the end of each cache_reap pass (every REAPTIMEOUT_CPUC, 2 s)
# next_reap_node drains the rotor's node, unless it is the CPU's own: for each populated
# zone of that node, each of the CPU's two lists (hot, cold) with pages frees
# min(count, batch) pages (free_pages_bulk); then the rotor moves to the next node,
# wrapping to the first. With two nodes, a CPU drains the other node's lists a batch
# every other pass.


def numa26(memory="512MiB", cpus=2):
    k = Kernel(KernelConfig(memory=memory, nodes=2, cpus=cpus, era="2.6"))
    pa = k.page_alloc
    pa.drain_all_pages()
    return k, pa


def test_2_6_cache_reap_drains_the_other_nodes_lists_a_batch_every_other_pass():
    k, pa = numa26()
    remote, local = remote_and_local(pa)
    hot, cold = remote.pcp[0]
    assert pa.cpu_to_node == [0, 1] and k.slab.reap_node == [1, 0]  # init_reap_node
    # cpu 0 frees node 1's pages to its hot list and its cold list, and node 0's
    pages = [pa.alloc_pages(G.GFP_KERNEL, 0, cpu=0, nid=1) for _ in range(2 * hot.batch + cold.batch)]
    for page in pages[:2 * hot.batch]:
        pa.free_pages(page, 0, cpu=0)
    for page in pages[2 * hot.batch:]:
        pa.free_pages(page, 0, cold=True, cpu=0)
    free_on_cpu0(k, pa, 0, 20)
    nh, nc, kept = hot.count, cold.count, local.pcp[0][0].count
    assert nh >= hot.batch and nc >= 1 and kept >= 1
    drained0 = k.vmstat["pcp_remote_drain"]
    counts = []
    for t in (2.0, 4.0, 6.0, 8.0):
        k.slab.cache_reap(t)
        counts.append((hot.count, cold.count))
    # pass 1: cpu 0's rotor at node 1: a batch of each list; rotor to node 0 (its own:
    # pass 2 drains nothing), back to node 1 at pass 3, and so on
    h1, c1 = max(0, nh - hot.batch), max(0, nc - cold.batch)
    h2, c2 = max(0, h1 - hot.batch), max(0, c1 - cold.batch)
    assert counts == [(h1, c1), (h1, c1), (h2, c2), (h2, c2)]
    assert k.vmstat["pcp_remote_drain"] - drained0 == nh + nc - h2 - c2
    assert local.pcp[0][0].count == kept  # a CPU never drains its own node's lists
    validate_buddy(pa)


def test_6x_cache_reap_leaves_remote_lists_to_vmstat():
    # 6.1's slab keeps the rotor for alien caches only: its next_reap_node drains no pages
    k, pa = numa()
    remote, _ = remote_and_local(pa)
    free_on_cpu0(k, pa, 1, 40)
    n = remote.pcp[0][0].count
    for t in (2.0, 4.0, 6.0):
        k.slab.cache_reap(t)
    assert remote.pcp[0][0].count == n and k.slab.reap_node == [0, 1]
