"""The guest disk's request queue depth (blk-mq tags): nr_requests requests in flight at
most, a submission split into requests of max_sectors_kb, and a submitter finding every
tag taken sleeping until the oldest request completes (blk_mq_get_tag). Defaults: 6.1's
blk_mq_init_sched gives nr_requests = 2 * min(queue_depth, BLKDEV_DEFAULT_RQ = 128),
256 over virtio-blk's 128 tags with mq-deadline (this machine's /dev/vda reads 128 tags
in /sys/block/vda/mq/0/nr_tags and 256 in queue/nr_requests); BLK_DEF_MAX_SECTORS 2560."""

from __future__ import annotations

import pytest

from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.swap import MAX_SECTORS_KB, NR_REQUESTS, BlockQueue, guest_queue
from guestkernel.vmscan import init_reclaim


def test_defaults():
    assert NR_REQUESTS["6.x"] == 2 * min(128, 128) and NR_REQUESTS["2.6"] == 128
    assert MAX_SECTORS_KB["6.x"] == 2560 // 2
    k = Kernel(KernelConfig(memory="64MiB", swap="16MiB"))
    init_reclaim(k)
    q = k.swap.si.queue
    assert (q.nr_requests, q.max_pages) == (256, 320)
    k2 = Kernel(KernelConfig(memory="64MiB", era="2.6", nr_requests=0))
    assert guest_queue(k2, 1e-4, 1 << 20).nr_requests == 0  # 0: unlimited
    assert guest_queue(k2, 1e-4, 1 << 20).max_pages == 128


def test_tags_by_hand():
    # 1000 pages/s, 1 ms latency, 2 tags, 4 pages a request at most
    q = BlockQueue(0.001, 4096 * 1000, nr_requests=2, max_pages=4)
    assert q.submit(4, 0.0) == pytest.approx(0.005) and q.blocked == 0.0
    assert q.submit(4, 0.0) == pytest.approx(0.009) and q.blocked == 0.0
    # both tags taken: asleep until the first completes (5 ms); transfer from 8 ms
    assert q.submit(4, 0.0) == pytest.approx(0.013) and q.blocked == pytest.approx(0.005)
    # 10 pages: requests of 4, 4 and 2, each waiting for the oldest tag (9, 13, 17 ms)
    assert q.submit(10, 0.0) == pytest.approx(0.023) and q.blocked == pytest.approx(0.017)
    assert len(q.inflight) == 2
    # later, with every request done: no wait, the device idle
    assert q.submit(1, 1.0) == pytest.approx(1.002) and q.blocked == 0.0


def test_unlimited_queue_is_plain_fifo():
    q = BlockQueue(0.001, 4096 * 1000)
    for _ in range(3):
        q.submit(4, 0.0)
    assert q.submit(10, 0.0) == pytest.approx(0.023) and q.blocked == 0.0
    assert q.cost(4) == pytest.approx(0.005)
    assert q.submit(4, None) == pytest.approx(0.005)  # no clock: the cost


def _swap_hog(nr_requests):
    import simpy

    from guestkernel import uapi as U
    from guestkernel.vmscan import start_reclaim_daemons

    env = simpy.Environment()
    kw = {} if nr_requests is None else {"nr_requests": nr_requests}
    k = Kernel(memory="64MiB", swap="256MiB", swap_bandwidth="1MiB", env=env, **kw)
    init_reclaim(k)
    start_reclaim_daemons(k)
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("hog")
    n = 18432  # 72 MiB of anonymous memory written once
    a = t.mmap(0, n * 4096, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS)
    q = k.swap.si.queue
    peak = 0
    for i in range(0, n, 64):
        t.access_range(a + i * 4096, 64 * 4096, True)
        peak = max(peak, len(q.inflight))
        env.run(until=env.now + 1e-4)
    return k, peak


def test_reclaim_writes_never_exceed_the_tags():
    """A guest writing more than its memory to a slow swap device (1 MiB/s): with 32 tags
    the swap write requests in flight never exceed them, and reclaimers sleep for tags
    (nr_requests_blocked). (The default 256 are not all taken here: the task's plug
    merges adjacent swap writes into requests of up to max_sectors_kb,
    blk_attempt_plug_merge, so the same writes make far fewer requests.)"""
    k, peak = _swap_hog(32)
    assert k.swap.si.queue.nr_requests == 32
    assert peak == 32 and k.vmstat["nr_requests_blocked"] > 0
    k, peak = _swap_hog(None)
    assert k.swap.si.queue.nr_requests == 256 and peak <= 256
