"""The host swap device as a queue (hypervisor/swap.py): latency and bandwidth enforced for
every request, background evictions included; frames held until their write completes."""

import pytest
import simpy

from guestkernel.units import PAGE_SIZE
from hypervisor.host import Host, HostConfig
from hypervisor.machine import MachineMemory
from hypervisor.p2m import P2M_PRIVATE, P2M_SWAPPED
from hypervisor.swap import HostSwap
from hypervisor.vm import VM

from .helpers import page

LAT = 5e-3  # a rotating disk
BW = 4 << 20
IO = LAT + PAGE_SIZE / BW  # the device is busy this long per page


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_requests_are_served_one_after_another_and_a_read_waits_behind_queued_writes():
    clock = Clock()
    s = HostSwap(8, latency=LAT, bandwidth=BW, machine=MachineMemory(8), clock=clock)
    # two pages written by one eviction pass (same instant): one request, the latency
    # once, then each page's transfer
    a, wa = s.write(page(1))
    b, wb = s.write(page(2))
    xfer = PAGE_SIZE / BW
    assert (wa, wb) == (pytest.approx(IO), pytest.approx(IO + xfer))
    # a read submitted at once is a request of its own and completes after the writes
    data, wr = s.read(a)
    assert data == page(1) and wr == pytest.approx(IO + xfer + IO)
    assert s.queue_max == 3 and s.wait_time == pytest.approx(IO + IO + xfer)
    # a write after the read is a new request: the latency again
    c, wc = s.write(page(3))
    assert wc == pytest.approx(3 * IO + xfer)
    # once the device has drained, a read takes just its own time
    clock.t = 1.0
    assert s.read(b)[1] == pytest.approx(IO)
    assert s.busy_time == pytest.approx(4 * IO + xfer)


def test_a_written_page_occupies_its_frame_until_the_write_completes():
    clock = Clock()
    m = MachineMemory(8)
    vm = VM(m, "vm", 4)
    vm.swap = HostSwap(4, latency=LAT, bandwidth=BW, machine=m, clock=clock)
    vm.clock = clock
    vm.store(0, page(1))
    vm.store(1, page(2))
    assert vm.evict(0, compress=False) == pytest.approx(IO)
    clock.t = IO / 2  # a second pass: a request of its own, queued behind the first
    assert vm.evict(1, compress=False) == pytest.approx(2 * IO - IO / 2)
    assert vm.p2m.state[0] == P2M_SWAPPED and m.nr_free == 6  # both frames still held
    assert vm.swap.nr_inflight == 2
    clock.t = IO * 1.5
    assert vm.swap.complete(clock.t) == 1 and m.nr_free == 7
    # the second page is touched while its write is in flight: its frame still holds
    # it, so it is taken back without a read (a swap-cache hit)
    assert vm.touch(1, False) == 0.0
    assert vm.p2m.state[1] == P2M_PRIVATE and vm.load(1) == page(2) and vm.pswpin == 0
    assert vm.swap.rescued == 1 and vm.swap.nr_inflight == 0 and vm.swap.nr_used == 1
    m.validate()


def test_a_150_MiB_per_s_device_never_writes_more_than_150_MiB_in_a_simulated_second():
    env = simpy.Environment()
    bw = 150 << 20
    host = Host(HostConfig(memory=f"{60000 * PAGE_SIZE}", min_free=f"{20000 * PAGE_SIZE}",
                           swap_size="1GiB", swap_latency="0s", swap_bandwidth=bw,
                           compression=False, sharing=False, ballooning=False,
                           reclaim_rate=1_000_000), env=env)
    host.swap.trace = trace = []
    vm = host._new_vm("g", 120000)
    host._add_vm(vm)

    def guest():
        pfn = 0
        while pfn < 120000:
            for _ in range(min(4096, 120000 - pfn)):
                vm.touch(pfn, True)
                pfn += 1
            yield env.timeout(0.05)

    env.process(guest())
    env.run(until=6)
    # (no latency: the device transfers at exactly its bandwidth, the strictest case)
    assert host.swap.pswpout > bw // PAGE_SIZE  # the device was kept busy for seconds
    per_s = {}
    for done, kind in trace:
        per_s[int(done)] = per_s.get(int(done), 0) + (kind == "w")
    assert max(per_s.values()) * PAGE_SIZE <= bw
    # the monitor queued no more than a state interval's worth ahead of the device
    assert host.swap.backlog(env.now) <= 1.0 + 256 * host.swap.page_io_time
    host.validate()


def test_background_eviction_is_limited_by_what_the_device_absorbs():
    # a 5 ms disk at 800 KiB/s: one pass of the monitor is one write request, 5 ms of
    # latency then 5 ms per 4 KiB page, so 199 pages complete within its 1 s interval;
    # the monitor is allowed 25 600 a second but queues no more than that
    env = simpy.Environment()
    host = Host(HostConfig(memory=f"{4000 * PAGE_SIZE}", min_free=f"{1000 * PAGE_SIZE}",
                           swap_size="64MiB", swap_latency="5ms", swap_bandwidth=800 << 10,
                           compression=False, sharing=False, ballooning=False), env=env)
    vm = host._new_vm("g", 8000)
    host._add_vm(vm)
    for pfn in range(3900):
        vm.touch(pfn, True)
    env.run(until=0.5)  # the monitor ran at t=0 in the hard/low state
    per_s = int((1.0 - 5e-3) / (PAGE_SIZE / (800 << 10)))
    assert per_s == 199
    assert host.pages_evicted == per_s
    env.run(until=1.5)  # t=1: what completed is free, the device takes one more second
    assert host.pages_evicted == 2 * per_s
    host.validate()


def test_a_guest_disk_on_the_swap_device_queues_behind_host_swap_writes():
    from hypervisor.swap import GuestDisk

    clock = Clock()
    s = HostSwap(8, latency=LAT, bandwidth=BW, machine=MachineMemory(8), clock=clock)
    disk = GuestDisk(s)
    s.write(page(1))
    s.write(page(2))  # one write request of two pages: done at IO + one page's transfer
    writes = IO + PAGE_SIZE / BW
    # a guest swap-in of 8 pages (one request): its transfer starts when the host's
    # writes are done, its latency follows the transfer (guestkernel BlockQueue rule)
    done = disk.submit(8, 0.0)
    assert done == pytest.approx(writes + 8 * PAGE_SIZE / BW + LAT)
    assert disk.cost(8) == pytest.approx(LAT + 8 * PAGE_SIZE / BW)
    assert s.busy_time == pytest.approx(writes + 8 * PAGE_SIZE / BW)


def test_a_guest_disk_on_the_swap_device_keeps_the_guests_tags():
    """blk_mq_get_tag: the guest's virtio queue holds nr_requests tags whatever device
    serves it; a submitter finding every tag taken sleeps until its oldest request
    completes, and a submission splits into requests of max_sectors_kb. Here 2 tags,
    4 pages a request at most, behind the host's two-page swap write."""
    from hypervisor.swap import GuestDisk

    clock = Clock()
    s = HostSwap(8, latency=LAT, bandwidth=BW, machine=MachineMemory(8), clock=clock)
    disk = GuestDisk(s, nr_requests=2, max_pages=4)
    s.write(page(1))
    s.write(page(2))
    x = PAGE_SIZE / BW  # one page's transfer
    busy = IO + x  # the host's write request: done at IO + one page's transfer
    first = disk.submit(4, 0.0)
    assert first == pytest.approx(busy + 4 * x + LAT) and disk.blocked == 0.0
    second = disk.submit(4, 0.0)
    assert second == pytest.approx(busy + 8 * x + LAT) and disk.blocked == 0.0
    # both tags taken: asleep until the first request completes, then transferred after
    # the second (or at once if the device is idle by then)
    third = disk.submit(4, 0.0)
    assert disk.blocked == pytest.approx(first)
    assert third == pytest.approx(max(busy + 8 * x, first) + 4 * x + LAT)
    # 6 pages: requests of 4 and 2, each waiting for the oldest tag; the 2 pages wait for
    # the third request's tag, and the device is idle by then
    fourth = disk.submit(6, 0.0)
    assert disk.blocked == pytest.approx(third)
    assert fourth == pytest.approx(third + 2 * x + LAT)
    assert s.guest_requests == 5 and len(disk.inflight) == 2


def test_guest_disk_swap_wires_the_guests_queues_to_the_host_swap_device():
    from guestkernel.config import KernelConfig
    from hypervisor.swap import GuestDisk

    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", guest_disk="swap", sharing=False, ballooning=False), env=env)
    vm = host.create_vm("g", KernelConfig(memory="64MiB", swap="16MiB"))
    k = vm.kernel
    assert isinstance(k.swap.si.queue, GuestDisk) and k.swap.si.queue.device is host.swap
    assert isinstance(k.fs.queue, GuestDisk) and k.fs.queue is k.swap.si.queue
    assert k.reclaim.disk_queues[id(k.fs)] is k.fs.queue
    # one virtio disk: its 6.x queue limits (nr_requests 256, max_sectors_kb 1280)
    assert (k.fs.queue.nr_requests, k.fs.queue.max_pages) == (256, 320)
    with pytest.raises(ValueError, match="guest_disk"):
        HostConfig(guest_disk="nvme")
