"""The task's block plug (6.1 block/blk-core.c, block/blk-mq.c, block/blk-merge.c).

DOC: Overview
A task that will submit several bios in a row starts a plug (blk_start_plug: current->
plug; a plug started inside another is a no-op, the outer one holds everything). Each bio
the task submits meanwhile (blk_mq_submit_bio) is first offered to the newest request of
its queue in the plug (blk_attempt_plug_merge: only the newest one of that queue, and
past requests of other queues only once the plug holds more than one queue): a bio that
starts where the request ends joins it (bio_attempt_back_merge), one that ends where it
starts joins its front (bio_attempt_front_merge), as long as the request stays within the
queue's max_sectors_kb (ll_back_merge_fn / ll_front_merge_fn; a request that refused a
bio for its size is marked REQ_NOMERGE and takes no more). A bio that merges nowhere
becomes a new request, added to the plug by blk_add_rq_to_plug, which first sends what
the plug holds if it already holds BLK_MAX_REQUEST_COUNT requests (twice that once it
holds more than one queue's), or if its newest request has BLK_PLUG_FLUSH_SIZE (128 KiB)
or more. The plug is also sent when the task sleeps (schedule -> sched_submit_work ->
blk_flush_plug: io_schedule in a wait on a page's writeback, reclaim_throttle's sleep) and
at blk_finish_plug. Sending (blk_mq_flush_plug_list): with an I/O scheduler (virtio-blk
under mq-deadline, as this machine's /dev/vda reads; RQF_ELV) blk_mq_dispatch_plug_list pops
the newest first and list_add()s each, so the scheduler receives them oldest first, all
at once, and mq-deadline dispatches reads before writes (__dd_dispatch_request: a write
goes first only once reads have starved writes writes_starved = 2 times; hvsim: reads
first within each flush, each direction oldest first; the scheduler's state across
flushes, fifo_batch and the expiry times are not modelled).

Positions: a page's bio lies on its device at its swap slot (a swap-cache page: its
entry) or, for a file page, at its index in its file (hvsim keeps no block map: a file's
blocks are laid out in index order, as ext4's delayed allocation lays out a file written
in order).

hvsim: the plug is the kernel's (kernel.plug): the code that holds one runs without a
simulated sleep in between, so one task at a time holds it. A plugged request takes its
tag (blk_mq_get_tag) when it is sent, not when the bio is allocated. Only the 6.x era
has it (2.6.20 plugged the device queue itself, with its own unplug timer and threshold:
not modelled), and only on a clock (without one every write ends at once).
"""

from __future__ import annotations

from .page import PG_swapcache
from .units import PAGE_SHIFT

BLK_MAX_REQUEST_COUNT = 32  # requests a plug holds before blk_add_rq_to_plug sends them
BLK_PLUG_FLUSH_SIZE = 128 * 1024  # bytes: a newer request behind one this big sends them
PLUG_FLUSH_PAGES = BLK_PLUG_FLUSH_SIZE >> PAGE_SHIFT

REQ_OP_READ, REQ_OP_WRITE = 0, 1


class Request:
    """One request in a plug: its queue, op, pages in device order and where it lies
    ([start, end) positions on `dev`). `for_reclaim`: a write for reclaim (hvsim's
    accounting: requests of reclaim and of writeback do not merge); `issue(rq, at)` sends
    it to its device at `at` seconds and sets `done_at` (infinite while plugged: it ends
    only once sent); `owner`: the submitter's (vmscan: the reclaim's ScanControl). A
    request doubles as vmscan's IOBatch once it is sent."""

    __slots__ = ("queue", "op", "pages", "dev", "start", "end", "nomerge", "for_reclaim",
                 "done_at", "issue", "owner")

    def __init__(self, queue, op: int, page, dev, pos: int, for_reclaim: bool, issue,
                 owner=None) -> None:
        self.queue = queue
        self.op = op
        self.pages = [page]
        self.dev = dev
        self.start = pos
        self.end = pos + 1
        self.nomerge = False
        self.for_reclaim = for_reclaim
        self.done_at = float("inf")
        self.issue = issue
        self.owner = owner


def bio_position(page) -> tuple[object, int]:
    """Where a page's bio lies: (device key, position in pages)."""
    if page.flags & PG_swapcache:
        return None, page.private
    return page.mapping, page.index


class BlkPlug:
    """struct blk_plug: the requests held, oldest first (Linux's mq_list has the newest at
    its head), rq_count, multiple_queues."""

    __slots__ = ("mq_list", "multiple_queues", "flushes")

    def __init__(self) -> None:
        self.mq_list: list[Request] = []
        self.multiple_queues = False
        self.flushes = 0  # times blk_mq_flush_plug_list sent something

    def max_rq_count(self) -> int:
        """blk_plug_max_rq_count."""
        return BLK_MAX_REQUEST_COUNT * 2 if self.multiple_queues else BLK_MAX_REQUEST_COUNT

    def attempt_merge(self, q, op: int, page, for_reclaim: bool) -> Request | None:
        """blk_attempt_plug_merge: offer the page's bio to the newest request of queue
        `q` (looking past other queues' only when the plug holds several). Returns the
        request it joined, or None."""
        mq = self.mq_list
        for i in range(len(mq) - 1, -1, -1):
            rq = mq[i]
            if rq.queue is q:
                if rq.op != op or rq.nomerge or rq.for_reclaim != for_reclaim:  # blk_rq_merge_ok
                    return None
                dev, pos = bio_position(page)
                if dev is not rq.dev:
                    return None
                back = pos == rq.end  # blk_try_merge: ELEVATOR_BACK_MERGE
                if not back and pos != rq.start - 1:  # ELEVATOR_FRONT_MERGE
                    return None
                maxp = q.max_pages
                if maxp and len(rq.pages) + 1 > maxp:
                    rq.nomerge = True  # req_set_nomerge
                    return None
                if back:
                    rq.pages.append(page)
                    rq.end += 1
                else:
                    rq.pages.insert(0, page)
                    rq.start -= 1
                return rq
            if not self.multiple_queues:
                return None
        return None

    def add_rq(self, rq: Request, at: float | None) -> None:
        """blk_add_rq_to_plug: a new request; what the plug holds is sent first (at `at`)
        if it holds max_rq_count requests or its newest has BLK_PLUG_FLUSH_SIZE or more."""
        mq = self.mq_list
        last = mq[-1] if mq else None
        if last is not None and (len(mq) >= self.max_rq_count()
                                 or len(last.pages) >= PLUG_FLUSH_PAGES):
            self.flush(at)
            mq = self.mq_list
            last = None
        if not self.multiple_queues and last is not None and last.queue is not rq.queue:
            self.multiple_queues = True
        mq.append(rq)

    def submit_bio(self, q, op: int, page, for_reclaim: bool, issue, at: float | None,
                   owner=None) -> tuple[Request, bool]:
        """blk_mq_submit_bio of one page's bio under this plug at `at` seconds: merged
        into a held request or added as a new one (sent by `issue`). Returns the request
        that holds it and whether it is new."""
        rq = self.attempt_merge(q, op, page, for_reclaim)
        if rq is not None:
            return rq, False
        dev, pos = bio_position(page)
        rq = Request(q, op, page, dev, pos, for_reclaim, issue, owner)
        self.add_rq(rq, at)
        return rq, True

    def flush(self, at: float | None) -> None:
        """blk_mq_flush_plug_list: send every held request (through the I/O scheduler:
        blk_mq_dispatch_plug_list, oldest first; mq-deadline's reads before its writes)
        and forget the queues seen."""
        mq = self.mq_list
        if not mq:
            return
        self.mq_list = []
        self.multiple_queues = False
        self.flushes += 1
        for rq in mq:
            if rq.op == REQ_OP_READ:
                rq.issue(rq, at)
        for rq in mq:
            if rq.op != REQ_OP_READ:
                rq.issue(rq, at)


def blk_start_plug(kernel) -> BlkPlug | None:
    """blk_start_plug: the task's plug, or None if it holds one already (the outer plug
    collects everything) or the kernel plugs nothing (2.6 era, or no clock)."""
    if getattr(kernel, "plug", None) is not None or kernel.env is None or not plugging(kernel):
        return None
    plug = BlkPlug()
    kernel.plug = plug
    return plug


def plugging(kernel) -> bool:
    """Whether the kernel's tasks plug: the 6.x era."""
    return getattr(kernel.config, "era", "6.x") != "2.6"


def blk_finish_plug(kernel, plug: BlkPlug | None, at: float | None) -> None:
    """blk_finish_plug: send what `plug` holds at `at` and drop it (a no-op for the None
    of a nested blk_start_plug)."""
    if plug is None:
        return
    plug.flush(at)
    if kernel.plug is plug:
        kernel.plug = None


def blk_flush_plug(kernel, at: float | None) -> None:
    """blk_flush_plug from schedule() (sched_submit_work): the task is about to sleep, so
    what its plug holds is sent at `at`; the plug stays."""
    plug = getattr(kernel, "plug", None)
    if plug is not None:
        plug.flush(at)
