"""Host swap: a device of `nr_slots` page slots, a queue with a latency and a bandwidth.

The device serves one request after another (FIFO). A request costs the device `latency`
(seek, rotation) plus its bytes at `bandwidth`, so no more than `bandwidth` bytes are
ever transferred in a second, and a request submitted at `now` completes at
`max(now, busy_until) + its time`: a swap-in waits behind the writes queued before it.
A swap-in reads one page (`page_io_time = latency + PAGE_SIZE / bandwidth`). The pages an
eviction pass writes at one instant go to consecutive slots and form one request (as
Linux's and ESX's swap-out clusters): the first pays the latency, each further one its
transfer. Every request goes through the queue, the state monitor's background evictions
included; `room(now, horizon)` tells the monitor how many more pages the device absorbs
within `horizon` seconds, which is what bounds background eviction.

A page being written still occupies its machine frame until its write completes (`hold`):
the frame is freed by `complete(now)` (called whenever the host looks at its memory), or
handed to an allocation that cannot wait any longer by `complete_oldest` (the caller
waits for that write). Touching a page whose write is still in flight takes its frame
back without any read (`rescue`), as a swap-cache hit would.

The guests' virtual disks can be served by this device too (`[host] guest_disk = "swap"`,
`GuestDisk`): their swap-ins, file reads and writeback queue with the host's own swap
traffic, as on a host whose datastore holds both the VMs' disks and the host swap files.
A guest request of n pages transfers at the bandwidth after the requests queued before it
and completes `latency` after its transfer (the guest's BlockQueue rule); the guest's
queue keeps its own limits (nr_requests tags, max_sectors_kb requests): a guest with
every tag taken sleeps until its oldest request completes, as on its own disk. By default
(`"separate"`) each guest keeps the disk of its own [vm.kernel] settings.

Without a clock (`clock` None: scripting, unit tests) the device is idle for every request
and writes complete at once.

Which page to evict is the policy's business (policy.py: random as ESX, or by sampled
access bits); the VM does the P2M transitions and counts VSwapper's pathologies (vm.py):

- silent swap writes: a page still identical to the disk block the guest read it from is
  written to host swap (it could have been dropped and re-read)
- stale swap reads: the guest reads from disk into a host-swapped frame, and the host
  first reads the old contents back
- false swap reads: the guest overwrites a whole host-swapped frame (zeroing, copying) and
  the host first reads it back; `avoid_false_reads` skips those reads (VSwapper's
  Preventer), counted as false_reads_avoided
"""

from __future__ import annotations

from collections import deque

from guestkernel.swap import BlockQueue
from guestkernel.units import PAGE_SIZE


class HostSwap:
    def __init__(self, nr_slots: int, latency: float = 100e-6, bandwidth: float = 500 << 20,
                 machine=None, clock=None):
        if nr_slots < 0:
            raise ValueError(f"host swap: size must not be negative, got {nr_slots} slots")
        if bandwidth <= 0:
            raise ValueError("host swap: bandwidth must be positive")
        self.nr_slots = nr_slots  # capacity, pages
        self.latency = latency  # seconds per page I/O
        self.bandwidth = bandwidth  # bytes per second
        self.page_io_time = latency + PAGE_SIZE / bandwidth  # seconds the device is busy per page
        self.machine = machine  # MachineMemory: frames of writes in flight are freed on completion
        self.clock = clock  # callable() -> simulated seconds, or None: no queue
        self.busy_until = 0.0  # simulated time the last queued request completes
        self._wt = -1.0  # submission time of the last queued request if it is a write cluster
        self._last_done = 0.0  # when the last write submitted completes
        self._data: list[bytes | None] = []
        self._mpn: list[int] = []  # per slot: the frame still held by its write in flight, or -1
        self._free: list[int] = []
        self._inflight: deque = deque()  # (completion time, slot, mpn), in completion order
        self.nr_used = 0  # slots holding a page
        self.nr_inflight = 0  # pages whose write has not completed (their frames are held)
        self.trace: list | None = None  # set to a list to record (completion time, "r"/"w")
        # counters
        self.pswpin = 0  # pages read back
        self.pswpout = 0  # pages written
        self.full = 0  # writes refused: no free slot
        self.read_time = 0.0  # seconds the device spent reading
        self.write_time = 0.0  # seconds the device spent writing
        self.wait_time = 0.0  # seconds requests spent queued behind others
        self.queue_max = 0  # most requests queued at once (the new one included)
        self.rescued = 0  # in-flight pages touched again: frame taken back, no read
        self.guest_io_time = 0.0  # seconds transferring guests' disk requests (GuestDisk)
        self.guest_requests = 0

    # -- the queue ---------------------------------------------------------------------------

    def _submit(self, now: float | None) -> float:
        """Queue one page request at `now`; returns its completion time."""
        t = self.page_io_time
        if now is None:
            return t
        busy = self.busy_until
        if busy > now:
            queued = int((busy - now) / t + 0.999999) + 1
            if queued > self.queue_max:
                self.queue_max = queued
            self.wait_time += busy - now
            done = busy + t
        else:
            if self.queue_max < 1:
                self.queue_max = 1
            done = now + t
        self.busy_until = done
        return done

    def now(self) -> float | None:
        return self.clock() if self.clock is not None else None

    def backlog(self, now: float) -> float:
        """Seconds of requests queued ahead of a new one submitted at `now`."""
        return self.busy_until - now if self.busy_until > now else 0.0

    def room(self, now: float, horizon: float) -> int:
        """Pages one write request submitted at `now` can carry and still complete within
        `horizon` seconds."""
        left = horizon - self.backlog(now) - self.latency
        if left <= 0.0:
            return 0
        return int(left * self.bandwidth / PAGE_SIZE + 1e-9)  # (float error)

    @property
    def busy_time(self) -> float:
        """Seconds the device has been (or is booked to be) busy."""
        return self.read_time + self.write_time + self.guest_io_time

    def submit_pages(self, npages: int, now: float) -> float:
        """A guest's disk request of `npages` pages at `now` (GuestDisk); its completion
        time. The transfer waits for the device; the latency follows the transfer."""
        transfer = npages * PAGE_SIZE / self.bandwidth
        self._wt = -1.0
        busy = self.busy_until
        if busy > now:
            self.wait_time += busy - now
            queued = int((busy - now) / self.page_io_time + 0.999999) + 1
            if queued > self.queue_max:
                self.queue_max = queued
            start = busy
        else:
            start = now
        self.busy_until = start + transfer
        self.guest_io_time += transfer
        self.guest_requests += 1
        return self.busy_until + self.latency

    # -- pages -------------------------------------------------------------------------------

    def write(self, data: bytes, now: float | None = None) -> tuple[int, float]:
        """Write a page; (slot, seconds until the write completes), slot -1 if the device
        is full. `now` defaults to the clock."""
        if self.nr_used >= self.nr_slots:
            self.full += 1
            return -1, 0.0
        if self._free:
            slot = self._free.pop()
            self._data[slot] = data
        else:
            slot = len(self._data)
            self._data.append(data)
            self._mpn.append(-1)
        self.nr_used += 1
        self.pswpout += 1
        if now is None and self.clock is not None:
            now = self.clock()
        if now is not None and now == self._wt and self.busy_until > now:
            # the same eviction pass: the page joins the write request queued last
            t = PAGE_SIZE / self.bandwidth
            self.wait_time += self.busy_until - now
            done = self.busy_until = self.busy_until + t
            self.write_time += t
        else:
            self.write_time += self.page_io_time
            done = self._submit(now)
            if now is None:
                return slot, done
            self._wt = now
        self._last_done = done
        if self.trace is not None:
            self.trace.append((done, "w"))
        return slot, done - now

    @property
    def last_done(self) -> float:
        """When the last write submitted completes (simulated seconds)."""
        return self._last_done

    def hold(self, slot: int, mpn: int) -> bool:
        """The frame `mpn` stays in use until the write just made to `slot` completes.
        False (the caller frees the frame at once) without a clock or a machine."""
        if self.clock is None or self.machine is None:
            return False
        self._mpn[slot] = mpn
        self._inflight.append((self._last_done, slot, mpn))
        self.nr_inflight += 1
        return True

    def complete(self, now: float) -> int:
        """Free the frames of the writes completed by `now`; how many."""
        q = self._inflight
        n = 0
        if not q or q[0][0] > now:
            return 0
        mpns = self._mpn
        free = self.machine.free
        while q and q[0][0] <= now:
            _, slot, mpn = q.popleft()
            if mpns[slot] == mpn:
                mpns[slot] = -1
                free(mpn)
                n += 1
        self.nr_inflight -= n
        return n

    def complete_oldest(self, now: float) -> float:
        """Memory is needed at once: free the frame of the oldest write in flight. Returns
        the seconds the caller waits for that write (0.0 if it had completed), or -1.0 if
        no write is in flight."""
        q = self._inflight
        mpns = self._mpn
        while q:
            done, slot, mpn = q.popleft()
            if mpns[slot] == mpn:
                mpns[slot] = -1
                self.machine.free(mpn)
                self.nr_inflight -= 1
                return done - now if done > now else 0.0
        return -1.0

    def rescue(self, slot: int) -> int:
        """A page whose write is in flight is touched: its frame (still holding the page)
        is taken back and the slot freed. Returns the frame, or -1 if the write completed."""
        mpn = self._mpn[slot]
        if mpn < 0:
            return -1
        self._mpn[slot] = -1
        self.nr_inflight -= 1
        self.rescued += 1
        self._release(slot)
        return mpn

    def read(self, slot: int, now: float | None = None) -> tuple[bytes, float]:
        """Read a page back (the slot stays allocated); (data, seconds until it arrives,
        queueing included). `now` defaults to the clock."""
        self.pswpin += 1
        self.read_time += self.page_io_time
        if now is None and self.clock is not None:
            now = self.clock()
        self._wt = -1.0
        done = self._submit(now)
        if now is None:
            return self._data[slot], done
        if self.trace is not None:
            self.trace.append((done, "r"))
        return self._data[slot], done - now

    def peek(self, slot: int) -> bytes:
        return self._data[slot]

    def free(self, slot: int) -> None:
        if self._data[slot] is None:
            raise ValueError(f"host swap slot {slot} freed twice")
        mpn = self._mpn[slot]
        if mpn >= 0:  # the page is gone; its write need not hold the frame any more
            self._mpn[slot] = -1
            self.nr_inflight -= 1
            self.machine.free(mpn)
        self._release(slot)

    def _release(self, slot: int) -> None:
        self._data[slot] = None
        self._free.append(slot)
        self.nr_used -= 1


class GuestDisk(BlockQueue):
    """A guest's virtual disk served by a host device: the guest kernel's request queue
    (guestkernel.swap.BlockQueue: its nr_requests tags and max_sectors_kb requests, as
    the guest's blk-mq queue keeps them whatever serves the disk) whose requests transfer
    on the host device, after whatever the host and other guests queued there
    (`HostSwap.submit_pages`). The base class's busy_until is unused: the device's
    counts."""

    __slots__ = ("device",)

    def __init__(self, device: HostSwap, nr_requests: int = 0, max_pages: int = 0) -> None:
        super().__init__(device.latency, device.bandwidth, nr_requests, max_pages)
        self.device = device

    def submit(self, npages: int, now: float | None) -> float:
        """Queue a request at `now`; its completion time (the cost without a clock)."""
        if not self.nr_requests and now is not None:
            self.blocked = 0.0
            return self.device.submit_pages(npages, now)
        return super().submit(npages, now)

    def _do_transfer(self, npages: int, t: float) -> float:
        return self.device.submit_pages(npages, t)
