"""Host swap: a device of `nr_slots` page slots with a latency and a bandwidth.

Reading or writing one page costs `latency + PAGE_SIZE / bandwidth` seconds. Which page to
evict is the policy's business (policy.py: random as ESX, or by sampled access bits); the
VM does the P2M transitions and counts VSwapper's pathologies (vm.py):

- silent swap writes: a page still identical to the disk block the guest read it from is
  written to host swap (it could have been dropped and re-read)
- stale swap reads: the guest reads from disk into a host-swapped frame, and the host
  first reads the old contents back
- false swap reads: the guest overwrites a whole host-swapped frame (zeroing, copying) and
  the host first reads it back; `avoid_false_reads` skips those reads (VSwapper's
  Preventer), counted as false_reads_avoided
"""

from __future__ import annotations

from guestkernel.units import PAGE_SIZE


class HostSwap:
    def __init__(self, nr_slots: int, latency: float = 100e-6, bandwidth: float = 500 << 20):
        if nr_slots < 0:
            raise ValueError(f"host swap: size must not be negative, got {nr_slots} slots")
        if bandwidth <= 0:
            raise ValueError("host swap: bandwidth must be positive")
        self.nr_slots = nr_slots  # capacity, pages
        self.latency = latency  # seconds per page I/O
        self.bandwidth = bandwidth  # bytes per second
        self.page_io_time = latency + PAGE_SIZE / bandwidth  # seconds per page
        self._data: list[bytes | None] = []
        self._free: list[int] = []
        self.nr_used = 0  # slots holding a page
        # counters
        self.pswpin = 0  # pages read back
        self.pswpout = 0  # pages written
        self.full = 0  # writes refused: no free slot
        self.read_time = 0.0  # seconds
        self.write_time = 0.0  # seconds

    def write(self, data: bytes) -> tuple[int, float]:
        """Write a page; (slot, seconds), slot -1 if the device is full."""
        if self.nr_used >= self.nr_slots:
            self.full += 1
            return -1, 0.0
        if self._free:
            slot = self._free.pop()
            self._data[slot] = data
        else:
            slot = len(self._data)
            self._data.append(data)
        self.nr_used += 1
        self.pswpout += 1
        self.write_time += self.page_io_time
        return slot, self.page_io_time

    def read(self, slot: int) -> tuple[bytes, float]:
        """Read a page back (the slot stays allocated); (data, seconds)."""
        self.pswpin += 1
        self.read_time += self.page_io_time
        return self._data[slot], self.page_io_time

    def peek(self, slot: int) -> bytes:
        return self._data[slot]

    def free(self, slot: int) -> None:
        if self._data[slot] is None:
            raise ValueError(f"host swap slot {slot} freed twice")
        self._data[slot] = None
        self._free.append(slot)
        self.nr_used -= 1
