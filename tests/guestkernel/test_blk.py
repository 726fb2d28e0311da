"""The task's block plug (guestkernel/blk.py) against 6.1 block/blk-core.c, blk-mq.c and
blk-merge.c: BLK_MAX_REQUEST_COUNT 32 and BLK_PLUG_FLUSH_SIZE 128 KiB (block/blk.h),
blk_add_rq_to_plug, blk_attempt_plug_merge, bio_attempt_back_merge /
bio_attempt_front_merge within max_sectors (ll_back_merge_fn), blk_start_plug nesting,
blk_mq_flush_plug_list's order through an I/O scheduler, and the plugs 6.1 takes
(shrink_lruvec, swap_cluster_readahead, wb_writeback / generic_writepages) and sends on a
sleep (sched_submit_work: reclaim_throttle, folio_wait_writeback)."""

from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import blk
from guestkernel import uapi as U
from guestkernel.blk import (
    BLK_MAX_REQUEST_COUNT,
    BLK_PLUG_FLUSH_SIZE,
    REQ_OP_READ,
    REQ_OP_WRITE,
    BlkPlug,
    blk_finish_plug,
    blk_flush_plug,
    blk_start_plug,
)
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.page import PG_swapcache
from guestkernel.swap import BlockQueue
from guestkernel.vmscan import init_reclaim


class P:
    """A page as the plug sees it: a swap-cache page at slot `slot`, or a file page."""

    def __init__(self, slot: int | None = None, mapping=None, index: int = 0) -> None:
        self.flags = PG_swapcache if slot is not None else 0
        self.private = slot
        self.mapping = mapping
        self.index = index


def _plug(log: list):
    def issue(rq, at):
        log.append((at, [p.private if p.private is not None else p.index for p in rq.pages]))
        rq.done_at = at
    return BlkPlug(), issue


def test_constants_are_block_h():
    assert BLK_MAX_REQUEST_COUNT == 32
    assert BLK_PLUG_FLUSH_SIZE == 128 * 1024
    assert blk.PLUG_FLUSH_PAGES == 32


def test_back_merge_up_to_max_sectors_then_a_new_request_sends_the_plug():
    """blk_attempt_plug_merge -> bio_attempt_back_merge: each bio starting where the
    newest request ends joins it while it stays within max_sectors (ll_back_merge_fn);
    the one that does not fit marks it REQ_NOMERGE and becomes a new request, and
    blk_add_rq_to_plug sends the plug first since the newest request holds 128 KiB or
    more."""
    log = []
    plug, issue = _plug(log)
    q = BlockQueue(1e-4, 1 << 30, 256, max_pages=40)
    for s in range(100, 140):
        plug.submit_bio(q, REQ_OP_WRITE, P(s), True, issue, 1.0)
    assert len(plug.mq_list) == 1 and log == []
    rq, new = plug.submit_bio(q, REQ_OP_WRITE, P(140), True, issue, 2.0)
    assert new and plug.mq_list == [rq]
    assert log == [(2.0, list(range(100, 140)))]
    # the full request refused 140: no later bio merges into it either
    assert len(plug.mq_list) == 1


def test_flush_size_rule():
    """blk_add_rq_to_plug: a new request behind one of less than BLK_PLUG_FLUSH_SIZE
    (31 pages, 124 KiB) is just added; behind one of 32 pages (128 KiB) the plug is sent
    first."""
    log = []
    plug, issue = _plug(log)
    q = BlockQueue(1e-4, 1 << 30, 256, max_pages=320)
    for s in range(0, 31):
        plug.submit_bio(q, REQ_OP_WRITE, P(s), True, issue, 0.0)
    plug.submit_bio(q, REQ_OP_WRITE, P(1000), True, issue, 0.5)  # not adjacent
    assert log == [] and len(plug.mq_list) == 2
    for s in range(1001, 1032):
        plug.submit_bio(q, REQ_OP_WRITE, P(s), True, issue, 0.6)
    assert [len(r.pages) for r in plug.mq_list] == [31, 32]
    plug.submit_bio(q, REQ_OP_WRITE, P(5000), True, issue, 0.7)
    assert log == [(0.7, list(range(31))), (0.7, list(range(1000, 1032)))]
    assert [len(r.pages) for r in plug.mq_list] == [1]


def test_request_count_rule_and_multiple_queues():
    """blk_plug_max_rq_count: 32 requests of one queue are held and the 33rd sends them;
    once the plug has held two queues' requests it holds 64."""
    log = []
    plug, issue = _plug(log)
    q = BlockQueue(1e-4, 1 << 30, 256, max_pages=320)
    for i in range(32):
        plug.submit_bio(q, REQ_OP_WRITE, P(10 * i), True, issue, 0.0)
    assert log == []
    plug.submit_bio(q, REQ_OP_WRITE, P(999), True, issue, 0.0)
    assert len(log) == 32 and len(plug.mq_list) == 1
    log.clear()
    q2 = BlockQueue(1e-4, 1 << 30, 256, max_pages=320)
    for i in range(63):
        plug.submit_bio(q2 if i % 2 else q, REQ_OP_WRITE, P(2000 + 10 * i), True, issue, 0.0)
    assert plug.multiple_queues and len(plug.mq_list) == 64 and log == []
    plug.submit_bio(q, REQ_OP_WRITE, P(9999), True, issue, 0.0)
    assert len(log) == 64 and len(plug.mq_list) == 1 and not plug.multiple_queues


def test_merge_looks_at_the_newest_request_of_the_queue_only():
    """blk_attempt_plug_merge tries the newest request of the bio's queue only (then
    stops); a bio ending where a request starts joins its front
    (bio_attempt_front_merge); a read never joins a write (blk_rq_merge_ok)."""
    log = []
    plug, issue = _plug(log)
    q = BlockQueue(1e-4, 1 << 30, 256, max_pages=320)
    plug.submit_bio(q, REQ_OP_WRITE, P(10), True, issue, 0.0)
    plug.submit_bio(q, REQ_OP_WRITE, P(20), True, issue, 0.0)
    _, new = plug.submit_bio(q, REQ_OP_WRITE, P(11), True, issue, 0.0)  # after the older one
    assert new
    _, new = plug.submit_bio(q, REQ_OP_WRITE, P(10), True, issue, 0.0)  # front of [11]
    assert not new and [p.private for p in plug.mq_list[-1].pages] == [10, 11]
    _, new = plug.submit_bio(q, REQ_OP_READ, P(12), False, issue, 0.0)
    assert new
    # a file page never joins a swap request; file pages merge by index in one mapping
    m = object()
    plug.submit_bio(q, REQ_OP_WRITE, P(mapping=m, index=4), False, issue, 0.0)
    _, new = plug.submit_bio(q, REQ_OP_WRITE, P(mapping=m, index=5), False, issue, 0.0)
    assert not new
    _, new = plug.submit_bio(q, REQ_OP_WRITE, P(mapping=object(), index=6), False, issue, 0.0)
    assert new


def test_finish_sends_oldest_first_and_nested_plugs_are_no_ops():
    """blk_start_plug inside a plug does nothing (current->plug is set); blk_finish_plug
    of the outer one sends every request; through an I/O scheduler
    (blk_mq_dispatch_plug_list list_add()s what it pops from the head) the oldest goes
    first, mq-deadline's reads before its writes. blk_flush_plug (schedule) sends and
    keeps the plug."""
    k = Kernel(KernelConfig(memory="64MiB"), env=simpy.Environment())
    outer = blk_start_plug(k)
    assert outer is not None and k.plug is outer
    assert blk_start_plug(k) is None
    log = []
    _, issue = _plug(log)
    q = BlockQueue(1e-4, 1 << 30, 256, max_pages=320)
    for s in (5, 50, 500):
        outer.submit_bio(q, REQ_OP_WRITE, P(s), True, issue, 0.0)
    outer.submit_bio(q, REQ_OP_READ, P(70), False, issue, 0.0)
    blk_flush_plug(k, 1.0)
    # mq-deadline dispatches the read first (__dd_dispatch_request), then the writes
    assert log == [(1.0, [70]), (1.0, [5]), (1.0, [50]), (1.0, [500])] and k.plug is outer
    log.clear()
    outer.submit_bio(q, REQ_OP_WRITE, P(7), True, issue, 0.0)
    blk_finish_plug(k, None, 2.0)  # the nested one's finish: nothing
    assert log == []
    blk_finish_plug(k, outer, 3.0)
    assert log == [(3.0, [7])] and k.plug is None


def test_no_plug_without_a_clock_or_in_the_2_6_era():
    """2.6.20 plugged the device queue (not modelled); without a clock every write ends
    at once."""
    assert blk_start_plug(Kernel(KernelConfig(memory="64MiB"))) is None
    k = Kernel(KernelConfig(memory="64MiB", era="2.6"), env=simpy.Environment())
    assert blk_start_plug(k) is None


def _swapping_guest(max_sectors_kb: int | None = None, page_cluster: int = 3):
    env = simpy.Environment()
    k = Kernel(KernelConfig(memory="64MiB", swap="128MiB", page_cluster=page_cluster,
                            max_sectors_kb=max_sectors_kb), env=env)
    r = init_reclaim(k)
    r.kswapds.clear()  # direct reclaim only
    t = k.init_task
    return env, k, r, t


def test_shrink_lruvec_sends_its_writes_at_blk_finish_plug():
    """6.1 shrink_lruvec runs its LRU loop inside a blk_plug: the swap writes of its
    batches (slots handed out in order: adjacent) merge into requests of max_sectors_kb
    (here 64 KiB, 16 pages) and are sent when a new request follows a full one or at
    blk_finish_plug. Every swap write goes through the plug, as a request of at most
    16 pages, and no plug is left held once the writer's accesses return."""
    env, k, r, t = _swapping_guest(max_sectors_kb=64)
    sizes = []
    orig = r._issue_write

    def spy(rq, at):
        sizes.append(len(rq.pages))
        orig(rq, at)
    r._issue_write = spy
    n = (80 << 20) >> 12
    a = t.mmap(0, n << 12, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(0, n, 64):
        cost = t.access_range(a + (i << 12), 64 << 12, True)
        env.run(until=env.now + (cost or 0) + 1e-6)
    assert k.vmstat["pswpout"] > 0 and sizes
    assert max(sizes) == 16 and sum(sizes) == k.vmstat["pswpout"]
    assert k.plug is None
    r.validate()


@pytest.mark.parametrize("cluster", [3, 0])
def test_swap_readahead_holds_its_reclaims_writes_with_its_reads(monkeypatch, cluster):
    """6.1 swap_cluster_readahead allocates (and charges) and reads its window inside a
    blk_plug: the swap writes of a reclaim one of its allocations enters are held with
    the window's reads and sent with them at blk_finish_plug. With requests of at most
    64 KiB (16 pages: blk_add_rq_to_plug's 128 KiB rule never fires) a window whose plug
    held at most BLK_MAX_REQUEST_COUNT requests sends all of them at one moment. A window
    of one page (page-cluster 0) takes no plug."""
    import guestkernel.swap as S

    env, k, r, t = _swapping_guest(max_sectors_kb=64, page_cluster=cluster)
    windows = []
    current = None
    orig_ra = S.SwapState.swap_cluster_readahead
    orig_read = S._issue_read
    orig_write = r._issue_write
    orig_start = S.blk_start_plug
    starts = []

    def ra(self, entry, anon):
        nonlocal current
        current = []
        try:
            return orig_ra(self, entry, anon)
        finally:
            windows.append(current)
            current = None

    def read(rq, at):
        if current is not None:
            current.append(("R", at))
        orig_read(rq, at)

    def write(rq, at):
        if current is not None:
            current.append(("W", at))
        orig_write(rq, at)

    def start(kernel):
        plug = orig_start(kernel)
        starts.append(plug)
        return plug

    monkeypatch.setattr(S.SwapState, "swap_cluster_readahead", ra)
    monkeypatch.setattr(S, "_issue_read", read)
    monkeypatch.setattr(S, "blk_start_plug", start)
    r._issue_write = write
    n = (80 << 20) >> 12
    a = t.mmap(0, n << 12, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    for i in range(0, n, 64):
        cost = t.access_range(a + (i << 12), 64 << 12, True)
        env.run(until=env.now + (cost or 0) + 1e-6)
    for i in range(0, 4096, 64):  # read the first 16 MiB back
        cost = t.access_range(a + (i << 12), 64 << 12, False)
        env.run(until=env.now + (cost or 0) + 1e-6)
    monkeypatch.undo()
    assert windows and k.plug is None
    if cluster == 0:
        assert starts == []
        return
    assert len(starts) == len(windows) and all(p is not None for p in starts)
    mixed = [w for w in windows if {"R", "W"} <= {op for op, _ in w}]
    assert mixed
    for w in mixed:
        if len(w) <= BLK_MAX_REQUEST_COUNT:
            assert len({at for _, at in w}) == 1, w
    r.validate()


def test_a_sleep_sends_the_plug():
    """sched_submit_work -> blk_flush_plug: a direct reclaimer sleeping in
    reclaim_throttle (VMSCAN_THROTTLE_ISOLATED here: HZ/50) first sends what its plug
    holds, at its own time."""
    from guestkernel import gfp as G
    from guestkernel.vmscan import VMSCAN_THROTTLE_ISOLATED, ScanControl

    env, k, r, t = _swapping_guest()
    plug = blk_start_plug(k)
    log = []
    _, issue = _plug(log)
    q = BlockQueue(1e-4, 1 << 30, 256, max_pages=320)
    plug.submit_bio(q, REQ_OP_WRITE, P(1), True, issue, 0.0)
    sc = ScanControl(32, G.GFP_KERNEL, False, 0, False)
    sc.t0 = 0.25
    slept = r.reclaim_throttle(r.lruvecs[0], VMSCAN_THROTTLE_ISOLATED, sc)
    assert slept > 0 and log == [(0.25, [1])]
    blk_finish_plug(k, plug, 1.0)
    assert log == [(0.25, [1])] and k.plug is None


def test_max_sectors_kb_sets_every_guest_queue():
    """queue/max_sectors_kb bounds a request on each guest disk (the swap area's and a
    file system's: read_pages' plug merges a readahead window's bios into requests of at
    most that much, as one submission split by the queue does); 6.1's default is
    BLK_DEF_MAX_SECTORS 2560 sectors, 1280 KiB."""
    from guestkernel.swap import guest_queue, queue_limits

    k = Kernel(KernelConfig(memory="64MiB", max_sectors_kb=128))
    assert queue_limits(k)[1] == 32
    q = guest_queue(k, 1e-3, 4096 * 1000)
    # 64 pages: two requests of 32 in flight, the second's transfer ending after 64 pages
    assert q.submit(64, 0.0) == pytest.approx(0.064 + 1e-3) and len(q.inflight) == 2
    assert queue_limits(Kernel(KernelConfig(memory="64MiB")))[1] == 2560 // 2 // 4


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 80)),
                max_size=300),
       st.integers(1, 40))
def test_every_bio_is_sent_once_in_requests_within_the_limits(bios, maxp):
    """Invariants of the plug's rules over random bios (two queues, reads and writes,
    random slots): every bio is sent exactly once, at blk_finish_plug at the latest; a
    request holds consecutive positions of one op and queue, at most max_sectors
    (max_pages) of them; the plug never holds more than blk_plug_max_rq_count requests;
    a send happens only when the plug is full or its newest request has 128 KiB or more
    (blk_add_rq_to_plug), or at the end."""
    queues = [BlockQueue(1e-4, 1 << 30, 256, max_pages=maxp) for _ in range(2)]
    plug = BlkPlug()
    sent = []

    def issue(rq, at):
        sent.append(rq)

    pages = []
    for qi, op, slot in bios:
        before = list(plug.mq_list)
        n = len(sent)
        page = P(slot)
        pages.append(page)
        plug.submit_bio(queues[qi], op, page, False, issue, 0.0)
        if len(sent) > n:
            assert len(before) >= BLK_MAX_REQUEST_COUNT or \
                len(before[-1].pages) >= blk.PLUG_FLUSH_PAGES
            assert sent[n:] == [r for r in before if r.op == REQ_OP_READ] + \
                [r for r in before if r.op != REQ_OP_READ]
        assert len(plug.mq_list) <= 2 * BLK_MAX_REQUEST_COUNT
    plug.flush(1.0)
    assert plug.mq_list == []
    got = [p for rq in sent for p in rq.pages]
    assert sorted(map(id, got)) == sorted(map(id, pages))
    for rq in sent:
        assert 1 <= len(rq.pages) <= maxp
        assert [p.private for p in rq.pages] == list(range(rq.start, rq.end))
