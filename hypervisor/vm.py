"""VM: a guest's physical memory as the hypervisor backs it (the guest's PhysicalMemory).

Every guest frame (PFN) is described by the VM's P2M (see p2m.py). The four calls of the
guest/host boundary move a PFN between P2M states; each transition is counted and returns
what it cost the guest in simulated seconds:

    touch(pfn, write)   none/ballooned -> private     first_touch       fault_cost
                        shared/zero -(write)-> private cow_ksm/cow_zero cow_cost
                        compressed -> private         zswpin            decompress_cost
                        swapped -> private            pswpin            device read time
                        a write also changes the page's bytes: the frame is marked
                        WRITTEN (machine.py) and its new content is made when read
                        (guestkernel.physmem.written); a `store` after it replaces it
    store(pfn, data)    a whole-page write: backs the frame with `data`; no copy on a
                        shared frame, no decompression; on a swapped frame the host reads
                        the page back first (VSwapper's false/stale swap reads) unless
                        `avoid_false_reads`
    load(pfn)           the bytes the guest would read; never changes state or costs
                        (the guest touches a page before using it)
    release(pfn, kind)  -> ballooned: the guest gave the frame back (balloon, free page
                        reporting); whatever backed it is freed; credited to `kind`
    reuse(pfn)          the guest took a released frame back (virtio deflateq): no
                        longer credited; backed again at its next touch

The host takes frames with `evict` / `evict_many` (into the compression cache, else host
swap). A release that took something back (a frame, a shared mapping, a compressed or
swapped copy) is counted in `nr_released_backed` (and by holder in `nr_released_by`)
until the guest takes the frame back (`reuse`) or touches it: that is what ballooning and
free page reporting reclaim.

Machine frames come from `MachineMemory.alloc`. When it is full the VM calls its
`reclaim_hook(vm)` (wired by the Host: compress or swap pages of some VM) and retries;
when nothing could be reclaimed the allocation overdraws machine memory and the VM counts
a stall (`nomem_stalls`, `nomem_stall_time`): the host report shows the VM would have been
blocked. Collaborators are optional so that a VM works on its own in unit tests:
`sharing` (PageSharing), `zcache` (CompressionCache), `swap` (HostSwap).

A VM can also hold a raw memory image instead of a guest kernel (`VM.from_image`).
"""

from __future__ import annotations

import os
from array import array
from collections import deque
from itertools import compress as select
from operator import add, itemgetter

from guestkernel.physmem import RELEASE_BALLOON, RELEASE_REPORTED, ZERO_PAGE, page_bytes
from guestkernel.units import PAGE_SIZE

from .cpu import BALLOON, run_burst
from .largepage import LP_BACKED, LargePages
from .machine import WRITTEN, MachineMemory
from .memimage import ImageError, open_image
from .p2m import (
    LARGE_PAGE_SHIFT,
    P2M,
    P2M_BALLOONED,
    P2M_COMPRESSED,
    P2M_NONE,
    P2M_PRIVATE,
    P2M_SHARED,
    P2M_SWAPPED,
    P2M_ZERO,
)

# a read of a frame in these states changes nothing but its accessed bit (touch_many)
assert P2M_ZERO - P2M_PRIVATE == 2 and P2M_PRIVATE < P2M_SHARED < P2M_ZERO

# Default costs beneath the guest, seconds. The Host overrides them from HostConfig.
FAULT_COST = 2e-6  # EPT violation, frame allocation and zeroing 4 KiB
COW_COST = 3e-6  # EPT violation, frame allocation and a 4 KiB copy
DECOMPRESS_COST = 1.5e-6  # zstd decompression of one page
NOMEM_STALL = 1e-3  # what one allocation waits when the host cannot reclaim anything


def _gather(seq, idx) -> tuple:
    """(seq[i] for i in idx) as a tuple. NOTE: one itemgetter call, for performance: a
    map() of an array's or bytearray's __getitem__ costs three times as much."""
    if len(idx) > 1:
        return itemgetter(*idx)(seq)
    return tuple(seq[i] for i in idx)


# virtio-balloon stats (guestkernel.balloon.VIRTIO_BALLOON_S_NAMES) as guest_stats() keys
_STAT_KEYS = {
    "swap-in": "swap_in", "swap-out": "swap_out", "major-faults": "major_faults",
    "minor-faults": "minor_faults", "free-memory": "free", "total-memory": "total",
    "available-memory": "available", "disk-caches": "caches",
    "hugetlb-allocations": "hugetlb_allocations", "hugetlb-failures": "hugetlb_failures",
    "oom-kills": "oom_kills", "alloc-stalls": "alloc_stalls", "async-scans": "async_scans",
    "direct-scans": "direct_scans", "async-reclaims": "async_reclaims",
    "direct-reclaims": "direct_reclaims",
}
_STAT_BYTES = frozenset((
    "swap-in", "swap-out", "free-memory", "total-memory", "available-memory", "disk-caches",
    "async-scans", "direct-scans", "async-reclaims", "direct-reclaims",
))
GUEST_STATS = tuple(_STAT_KEYS.values())


class VM:
    """One virtual machine's memory: `nr_frames` guest frames over `machine`."""

    def __init__(
        self,
        machine: MachineMemory,
        name: str,
        nr_pages: int,
        vmid: int = 0,
        large_pages: bool = False,
    ) -> None:
        if nr_pages < 1:
            raise ValueError(f"VM {name}: needs at least one page, got {nr_pages}")
        self.machine = machine
        self._mcsum = machine.csum  # (the list object: a write marks its frame WRITTEN)
        self.name = name
        self.vmid = vmid  # owner id of its private machine frames
        self.nr_frames = nr_pages  # PhysicalMemory contract: guest frames
        self.nr_pages = nr_pages
        self.p2m = P2M(nr_pages)
        self.large_pages = large_pages  # back first-touched 2 MB regions with large pages
        # the host's large-page mechanism (largepage.py; the Host wires its own), per
        # region the reserved frames left for untouched subpages, live large pages
        if large_pages and not hasattr(machine, "alloc_region"):
            raise ValueError(f"VM {name}: large pages need machine memory in 2 MiB regions (RegionMemory)")
        self.lp = LargePages(machine) if large_pages else None
        self.lp_res = array("H", bytes(2 * len(self.p2m.large))) if large_pages else None
        # per region, the first machine frame of its live large page (-1: none)
        self.lp_base = array("i", [-1]) * len(self.p2m.large) if large_pages else None
        self.lp_live = 0
        self.lp_reserved = 0  # sum of lp_res
        self.kernel = None  # the guest Kernel, once booted (None for an image VM)
        self.vcpus = None  # cpu.VCPUs its guest's tasks run on (wired by the Host)
        self._kernel_slots = {}  # per guest kernel thread (its SimPy process): its last pass's mark
        self.dead: str | None = None  # the panic message, once the guest has panicked
        self.balloon = None  # the guest's BalloonDriver, if any
        self.page_reporting = None  # the guest's PageReporting, if the device offers it
        self.balloon_target = 0  # pages the host wants the balloon to hold
        self.reservation = 0  # pages of machine memory guaranteed (ESX sched.mem.min; Host)
        self.balloon_ceiling = None  # pages: the most a deflate-on-oom guest agreed to
        self._stats = None  # the last stats virtqueue answer (poll_stats)
        self.stats_polls = 0
        self.shares = nr_pages * 10 / 256  # ESX memory shares: "normal" is 10 per MiB
        # collaborators wired by the Host
        self.sharing = None
        self.zcache = None
        self.swap = None
        self.reclaim_hook = None  # callable(vm) -> seconds; frees machine frames
        self.oom_hook = None  # callable(vm) -> bool: Host.host_oom on a KVM host (a VM killed)
        self.clock = None  # callable() -> simulated seconds (device queues), or None
        self.host_cpus = None  # cpu.HostCPUs that handle this VM's balloon exits, or None
        self._burst_t = -1.0  # the simulated instant of the stalls counted in _burst_stall0
        self._burst_stall0 = 0.0
        # costs, seconds
        self.fault_cost = FAULT_COST
        self.cow_cost = COW_COST
        self.decompress_cost = DECOMPRESS_COST
        self.nomem_stall = NOMEM_STALL
        self.alloc_penalty = 0.0  # set by the host in the "low" state: blocked allocations
        self.avoid_false_reads = False  # VSwapper: whole-page writes skip the swap read
        self.balloon_inflate_cost = 0.0  # host CPU per page inflated (exit share, discard)
        self.balloon_deflate_cost = 0.0  # host CPU per page deflated (exit share)
        # counters
        self.first_touch = 0  # host faults on never-backed frames
        self.cow_ksm = 0  # writes that broke sharing of a shared frame
        self.cow_zero = 0  # writes that broke a mapping of the zero page
        self.zswpin = 0  # decompressions on access
        self.zswpout = 0  # pages stored compressed
        self.pswpin = 0  # host swap-ins on access
        self.pswpout = 0  # pages written to host swap
        self.balloon_refault = 0  # touches of frames the guest had released
        self.reported_discards = 0  # frames freed because the guest reported them free
        self.released = 0  # frames released by the guest
        self.nr_released_backed = 0  # released frames whose release took something back
        self.nr_released_by = [0, 0, 0]  # the same, by holder: [-, balloon, reported]
        # releases of frames backed only by the guest's allocation of the page just
        # released (init_on_alloc zeroing the balloon's page): freed, nothing given back
        self.released_alloc_backed = 0
        # while the balloon driver allocates a page (watch_backing): {pfn: the release
        # credit it held} of the frames backed from nothing since, else None
        self._fresh = None
        self.false_swap_reads = 0  # whole-page writes that read a swapped page first
        self.stale_swap_reads = 0  # disk reads into a swapped page that read it first
        self.false_reads_avoided = 0  # such reads skipped (avoid_false_reads)
        self.silent_swap_writes = 0  # swap-outs of pages identical to their disk blocks
        self.large_pages_broken = 0  # its host large pages split or broken, all causes
        self.large_pages_backed = 0  # its regions backed by a host large page (cumulative)
        self.nomem_stalls = 0  # allocations with nothing reclaimable
        self.nomem_stall_time = 0.0  # seconds
        self.low_state_stalls = 0  # allocations blocked in the host's low state
        self.stall_time = 0.0  # seconds beneath the guest, all causes
        self.evict_cpu = 0.0  # host CPU seconds compressing (and decompressing to replace)
        self.zip_replaced = 0  # compressed pages moved to swap to make room (oldest first)
        # compressed pages, oldest first: seq * nr_pages + pfn, valid while _zseq[pfn] == seq
        self._zage = deque()
        self._zseq = None  # array: per frame, the sequence number of its last compression
        self._zn = 0  # compressions so far
        # stall_time by cause, seconds (each includes any wait for a frame it needed)
        self.stall_host_fault = 0.0  # first touch of a never-backed frame
        self.stall_cow_break = 0.0  # write to a shared or zero-page-mapped frame
        self.stall_decompress = 0.0  # access to a compressed page
        self.stall_host_swapin = 0.0  # access to a host-swapped page (device queue included)
        self.stall_balloon = 0.0  # a frame the guest had ballooned is backed again
        # host CPU spent in those stalls on the vCPU's behalf, seconds
        self.stall_cpu_zero = 0.0  # EPT violation, frame allocation, zeroing or copy
        self.stall_cpu_zip = 0.0  # decompression
        self.balloon_cpu = 0.0  # host CPU seconds handling this VM's balloon inflate/deflate
        self.page_copy_cost = 0.0  # seconds of guest CPU per 4 KiB copy (HostConfig.page_copy_cost)
        self.copy_cpu = 0.0  # guest CPU seconds copying pages (copy: migrations, collapses, CoW)
        self.page_zero_cost = 0.0  # seconds of guest CPU per 4 KiB zeroing (HostConfig.page_zero_cost)
        # guest CPU seconds zeroing pages (zero): kernel_init_pages (__GFP_ZERO, init_on_alloc,
        # init_on_free), clear_huge_page (THP faults), shmem folios, a collapse's empty slots,
        # and slab objects (zero_bytes: kzalloc / __GFP_ZERO, init_on_alloc, init_on_free)
        self.zero_cpu = 0.0
        self.nomem_waits = 0  # allocations that waited for a write to swap to free a frame

    # -- PhysicalMemory ------------------------------------------------------------------

    def touch(self, pfn: int, write: bool) -> float:
        p2m = self.p2m
        p2m.accessed[pfn] = 1
        s = p2m.state[pfn]
        if s == P2M_PRIVATE:
            if write:
                p2m.disk_clean[pfn] = 0
                self._mcsum[p2m.mpn[pfn]] = WRITTEN
            return 0.0
        if s == P2M_SHARED and not write:
            return 0.0
        cost = self._touch_slow(pfn, write, s)
        if write and p2m.state[pfn] == P2M_PRIVATE:
            self._mcsum[p2m.mpn[pfn]] = WRITTEN
        self.stall_time += cost
        return cost

    def touch_many(self, pfns: list[int], write: bool) -> float:
        """touch() of each frame in order. NOTE: touch() inlined for the frames whose touch
        changes nothing but the accessed and disk-clean bits and, for a write, the
        frame's WRITTEN mark: private ones, and shared or zero-mapped ones for a read (a
        plain loop: faster than map() over bound methods)."""
        p2m = self.p2m
        state = p2m.state
        accessed = p2m.accessed
        cost = 0.0
        if write:
            clean = p2m.disk_clean
            mpns = p2m.mpn
            mcsum = self._mcsum
            for pfn in pfns:
                if state[pfn] == P2M_PRIVATE:
                    accessed[pfn] = 1
                    clean[pfn] = 0
                    mcsum[mpns[pfn]] = WRITTEN
                else:
                    cost += self.touch(pfn, True)
        else:
            for pfn in pfns:
                if P2M_PRIVATE <= state[pfn] <= P2M_ZERO:
                    accessed[pfn] = 1
                else:
                    cost += self.touch(pfn, False)
        return cost

    def store(self, pfn: int, data: bytes, from_disk: bool = False) -> float:
        """A whole-page write of `data` (PAGE_SIZE bytes); `from_disk`: a disk read."""
        p2m = self.p2m
        p2m.accessed[pfn] = 1
        if p2m.state[pfn] == P2M_PRIVATE:
            mpn = p2m.mpn[pfn]
            self.machine.content[mpn] = data
            self.machine.csum[mpn] = -1
            p2m.disk_clean[pfn] = from_disk
            return 0.0
        if len(data) != PAGE_SIZE:
            raise ValueError(f"store: page data must be {PAGE_SIZE} bytes, got {len(data)}")
        cost = self._store_slow(pfn, data, from_disk)
        self.stall_time += cost
        return cost

    def load(self, pfn: int) -> bytes:
        data = self._data(pfn)
        # the guest reads bytes: a LazyPage is made into its bytes (not kept)
        return data if data.__class__ is bytes else page_bytes(data)

    def copy(self, dst: int, src: int) -> float:
        """A whole-page copy in the guest: store(dst) of src's content as it is held (a
        recipe stays a recipe). Returns the stall beneath the guest (counted in
        stall_time) plus the copy's own CPU, `page_copy_cost` (copy_highpage on a vCPU:
        not a stall, so a kernel thread's pass or a task's burst counts it as its CPU)."""
        self.copy_cpu += self.page_copy_cost
        return self.store(dst, self._data(src)) + self.page_copy_cost

    def zero(self, pfn: int) -> float:
        """A whole-page zeroing in the guest (clear_page: clear_user_highpage,
        clear_highpage, kernel_init_pages): store(pfn) of the zero page. Returns the stall
        beneath the guest (counted in stall_time) plus the zeroing's own CPU,
        `page_zero_cost` (on the vCPU that zeroes, as copy's: not a stall, so a kernel
        thread's pass or a task's burst counts it as its CPU)."""
        self.zero_cpu += self.page_zero_cost
        return self.store(pfn, ZERO_PAGE) + self.page_zero_cost

    def zero_bytes(self, nbytes: int) -> float:
        """A memset of `nbytes` inside a page (a slab object zeroed: kzalloc /
        __GFP_ZERO, init_on_alloc, init_on_free): `page_zero_cost` x nbytes / 4096 of guest
        CPU on the vCPU that zeroes, nothing beneath the guest (the page is already its)."""
        c = self.page_zero_cost * nbytes / 4096
        self.zero_cpu += c
        return c

    def _data(self, pfn: int):
        """The frame's content as held (bytes or a LazyPage), the guest's writes in."""
        p2m = self.p2m
        s = p2m.state[pfn]
        if s == P2M_PRIVATE or s == P2M_SHARED:
            return self.machine.data(p2m.mpn[pfn])
        if s == P2M_COMPRESSED:
            return self.zcache.peek(p2m.mpn[pfn])
        if s == P2M_SWAPPED:
            return self.swap.peek(p2m.mpn[pfn])
        return ZERO_PAGE

    def stall_mark(self) -> tuple[float, float, float]:
        """(stall_time, stall_cpu_zero, stall_cpu_zip) now: Kernel.stall_mark."""
        return self.stall_time, self.stall_cpu_zero, self.stall_cpu_zip

    def vcpu_free_at(self) -> list[float] | None:
        """When each vCPU is next free (cpu.VCPUs.free_at, read only): the guest's
        scheduler places a waking task on an idle one (guestkernel Task.on_cpu); None
        without vCPUs."""
        vcpus = self.vcpus
        return vcpus.free_at if vcpus is not None else None

    def kernel_work(self, env, cost: float, wait: float = 0.0, io: float = 0.0, since=None):
        """The event a guest kernel thread's pass ends with (Kernel.run_kernel_work): on
        one of this VM's vCPUs, time-sliced like a task's burst (cpu.run_burst). With
        `since` (a stall_mark), the stalls met since are taken out of `cost`: held on
        the vCPU, their fault and decompression work on a host CPU; `io` is slept off
        the vCPU; the rest is the thread's CPU."""
        zero = zip_ = 0.0
        cpu = cost - io
        if since is not None:
            held = self.stall_time - since[0]
            zero = self.stall_cpu_zero - since[1]
            zip_ = self.stall_cpu_zip - since[2]
            cpu -= held
            if cpu < 0.0:  # (stalls counted but left out of `cost`)
                cpu = 0.0
            held -= zero + zip_
            if held > 0.0:
                wait += held
        if self.vcpus is None:
            return env.timeout(cpu + zero + zip_ + wait + io)
        # the thread's own last short pass (cpu.run_burst `slot`): a slip it took after its
        # timeout was set delays this pass, so the thread loses all the host work it met
        slot = self._kernel_slots.get(env.active_process)
        if slot is None:
            slot = self._kernel_slots[env.active_process] = [None]
        return run_burst(env, self.vcpus, cpu, zero, zip_, wait=wait, after=io, kernel=True, slot=slot)

    def guest_panicked(self, reason: str) -> int:
        """The guest kernel panicked: the VM is dead. Every frame it had (private, shared,
        compressed, swapped) goes back to the host, and from now on its PhysicalMemory is
        inert, so nothing the dead guest still runs can take host memory. Returns the
        frames freed."""
        p2m = self.p2m
        state = p2m.state
        freed = 0
        for pfn in range(self.nr_pages):
            s = state[pfn]
            if s == P2M_NONE:
                continue
            if s != P2M_BALLOONED:
                self._release(pfn)
                freed += 1
            self._reuse(pfn)  # the dead guest holds nothing: no technique holds it either
            p2m.set(pfn, P2M_NONE)
        if self.sharing is not None:
            self.sharing.forget_vm_items(self)
        self.dead = reason
        self.touch = self._dead_touch
        self.touch_many = self._dead_touch_many
        self.store = self._dead_store
        self.load = self._dead_load
        self.copy = self._dead_copy
        self.zero = self._dead_zero
        self.zero_bytes = self._dead_zero_bytes
        self.release = self._dead_release
        self.reuse = self._dead_reuse
        self.discard_range = self._dead_discard_range
        return freed

    @staticmethod
    def _dead_touch(pfn: int, write: bool) -> float:
        return 0.0

    @staticmethod
    def _dead_touch_many(pfns: list[int], write: bool) -> float:
        return 0.0

    @staticmethod
    def _dead_store(pfn: int, data: bytes, from_disk: bool = False) -> float:
        return 0.0

    @staticmethod
    def _dead_load(pfn: int) -> bytes:
        return ZERO_PAGE

    @staticmethod
    def _dead_copy(dst: int, src: int) -> float:
        return 0.0

    @staticmethod
    def _dead_zero(pfn: int) -> float:
        return 0.0

    @staticmethod
    def _dead_zero_bytes(nbytes: int) -> float:
        return 0.0

    @staticmethod
    def _dead_release(pfn: int, kind: int = RELEASE_BALLOON) -> int:
        return 0

    @staticmethod
    def _dead_reuse(pfn: int, kind: int = RELEASE_BALLOON) -> None:
        return None

    @staticmethod
    def _dead_discard_range(pfn: int, n: int) -> int:
        return 0

    def release(self, pfn: int, kind: int = RELEASE_BALLOON) -> int:
        """`_release`, and a balloon inflation's host CPU: the exit that delivers the page
        and the host's discard of its backing (`balloon_inflate_cost` a page)."""
        if kind == RELEASE_BALLOON:
            self._exit_cpu(self.balloon_inflate_cost)
        return self._release(pfn, kind)

    def _exit_cpu(self, cost: float) -> None:
        if cost <= 0.0:
            return
        self.balloon_cpu += cost
        hc = self.host_cpus
        if hc is not None:
            if self.clock is not None:
                hc.run(self.clock(), cost, BALLOON)
            else:
                hc.charge(cost, BALLOON)

    def _release(self, pfn: int, kind: int = RELEASE_BALLOON) -> int:
        """The guest gives frame `pfn` up (`kind`: RELEASE_BALLOON, an inflateq entry, or
        RELEASE_REPORTED, a reported free block). Whatever backed it is freed. Returns 1
        if the release took something back (a frame, a shared mapping, a compressed or
        swapped copy), else 0.

        Credit (released_backed[pfn]) goes to the technique holding the page now: a
        release that took something back credits `kind`; releasing again a page that is
        already released and credited (the balloon taking a reported free page) moves
        its credit to the new holder; a page released unbacked earns none."""
        p2m = self.p2m
        if self.lp_live and p2m.large[pfn >> LARGE_PAGE_SHIFT] == LP_BACKED:
            self.lp.split_for(self, pfn, "release")  # 4 KiB of a large page: split it first
        s = p2m.state[pfn]
        if s == P2M_NONE and kind == RELEASE_REPORTED:
            return 0  # discarding a never-backed frame changes nothing (MADV_DONTNEED)
        if s == P2M_BALLOONED:
            old = p2m.released_backed[pfn]
            if old and old != kind:
                p2m.released_backed[pfn] = kind
                self.nr_released_by[old] -= 1
                self.nr_released_by[kind] += 1
            return 0
        idx = p2m.mpn[pfn]
        if s == P2M_PRIVATE:
            self.machine.free(idx)
        elif s == P2M_SHARED or s == P2M_ZERO:
            self.sharing.unmap(self, pfn)
        elif s == P2M_COMPRESSED:
            self.zcache.free(idx)
        elif s == P2M_SWAPPED:
            self.swap.free(idx)
        self.released += 1
        took = 0
        if s != P2M_NONE:
            fresh = self._fresh
            if fresh is not None and pfn in fresh:
                # backed only because the guest allocated this page (init_on_alloc's
                # zeroing): the release frees that frame again, net nothing; a credit the
                # frame held before (a reported page) moves to the new holder, as below
                was = fresh.pop(pfn)
                if not was:
                    self.released_alloc_backed += 1
                    s = P2M_NONE
            if s != P2M_NONE:
                p2m.released_backed[pfn] = kind
                self.nr_released_backed += 1
                self.nr_released_by[kind] += 1
                took = 1
        p2m.disk_clean[pfn] = 0
        p2m.set(pfn, P2M_BALLOONED)
        return took

    def discard_range(self, pfn: int, n: int) -> int:
        """A reported free block [pfn, pfn + n): `release(p, RELEASE_REPORTED)` for each
        frame that is backed (frames never backed or already released are left alone).
        Returns the frames whose backing was freed."""
        state = self.p2m.state
        block = state[pfn : pfn + n]
        if block.count(P2M_NONE) + block.count(P2M_BALLOONED) == n:
            return 0
        took = 0
        release = self.release
        for p in range(pfn, pfn + n):
            s = state[p]
            if s != P2M_NONE and s != P2M_BALLOONED:
                took += release(p, RELEASE_REPORTED)
        self.reported_discards += took
        return took

    def watch_backing(self, on: bool) -> None:
        """The balloon driver is about to allocate a page (on) or is done (off). While on,
        the frames the host backs from nothing (a first touch, or a released frame backed
        again) are noted with the credit they held, so that `release` credits a page with
        what backed it before the allocation, not with the frame the allocation itself
        made: under init_on_alloc the guest zeroes the driver's page (post_alloc_hook),
        which faults it in just before the inflateq gives it back. Each call starts afresh."""
        self._fresh = {} if on else None

    def reuse(self, pfn: int, kind: int = RELEASE_BALLOON) -> None:
        """The guest takes a released frame back without touching it yet (virtio's
        deflateq with VIRTIO_BALLOON_F_MUST_TELL_HOST): the frame stays unbacked until its
        next touch, and no technique is credited with it any more. A balloon deflate's
        exit costs the host `balloon_deflate_cost` of CPU (`kind` RELEASE_REPORTED: a
        reported page reused, no exit)."""
        if kind == RELEASE_BALLOON:
            self._exit_cpu(self.balloon_deflate_cost)
        self._reuse(pfn)

    def _reuse(self, pfn: int) -> None:
        p2m = self.p2m
        kind = p2m.released_backed[pfn]
        if kind:
            p2m.released_backed[pfn] = 0
            self.nr_released_backed -= 1
            self.nr_released_by[kind] -= 1

    @property
    def nr_balloon_backed(self) -> int:
        """Pages in the balloon now whose frames were backed when released (pages)."""
        return self.nr_released_by[RELEASE_BALLOON]

    @property
    def nr_reported_backed(self) -> int:
        """Reported free pages the host discarded and the guest has not touched since."""
        return self.nr_released_by[RELEASE_REPORTED]

    # -- transitions -----------------------------------------------------------------------

    def _touch_slow(self, pfn: int, write: bool, s: int) -> float:
        p2m = self.p2m
        if s == P2M_NONE or s == P2M_BALLOONED:
            # (a first touch may be backed by a host large page: its fault, or none)
            if s == P2M_NONE:
                mpn, cost, fault = self._first_frame(pfn, ZERO_PAGE)
            else:
                fault = self.fault_cost
                mpn, cost = self._alloc_frame(ZERO_PAGE)
            cost += fault
            if s == P2M_NONE:
                self.stall_host_fault += cost
            else:
                self._refault(pfn)
                self.stall_balloon += cost
            self.stall_cpu_zero += fault
            p2m.set(pfn, P2M_PRIVATE, mpn)
            return cost
        if s == P2M_SHARED or s == P2M_ZERO:
            if not write:
                return 0.0
            data = ZERO_PAGE if s == P2M_ZERO else self.machine.content[p2m.mpn[pfn]]
            mpn, cost = self._alloc_frame(data)
            self.sharing.unmap(self, pfn)
            if s == P2M_ZERO:
                self.cow_zero += 1
            else:
                self.cow_ksm += 1
                self.sharing.cow_ksm += 1
            p2m.set(pfn, P2M_PRIVATE, mpn)
            p2m.disk_clean[pfn] = 0
            cost += self.cow_cost
            self.stall_cow_break += cost
            self.stall_cpu_zero += self.cow_cost
            return cost
        if s == P2M_COMPRESSED:
            slot = p2m.mpn[pfn]
            data = self.zcache.take(slot)  # decompresses and frees the slot
            p2m.set(pfn, P2M_NONE)  # the slot is gone; the frame comes next
            mpn, cost = self._alloc_frame(data)
            p2m.set(pfn, P2M_PRIVATE, mpn)
            self.zswpin += 1
            if write:
                p2m.disk_clean[pfn] = 0
            cost += self.decompress_cost
            self.stall_decompress += cost
            self.stall_cpu_zip += self.decompress_cost
            return cost
        if s == P2M_SWAPPED:
            slot = p2m.mpn[pfn]
            swap = self.swap
            mpn = swap.rescue(slot)
            if mpn >= 0:
                # its write to swap is still in flight: the frame still holds the page
                p2m.set(pfn, P2M_PRIVATE, mpn)
                if write:
                    p2m.disk_clean[pfn] = 0
                return 0.0
            data, cost = swap.read(slot, self._now())
            swap.free(slot)
            p2m.set(pfn, P2M_NONE)
            mpn, c2 = self._alloc_frame(data)
            p2m.set(pfn, P2M_PRIVATE, mpn)
            self.pswpin += 1
            if write:
                p2m.disk_clean[pfn] = 0
            cost += c2
            self.stall_host_swapin += cost
            return cost
        raise AssertionError(f"pfn {pfn:#x}: bad P2M state {s}")

    def _store_slow(self, pfn: int, data: bytes, from_disk: bool) -> float:
        p2m = self.p2m
        s = s0 = p2m.state[pfn]
        cost = 0.0
        read = 0.0
        if s == P2M_SWAPPED:
            slot = p2m.mpn[pfn]
            if self.swap._mpn[slot] >= 0:
                pass  # its write is still in flight: nothing to read back
            elif self.avoid_false_reads:
                self.false_reads_avoided += 1
            else:
                # The host cannot know the whole page is about to be overwritten: it
                # faults the old contents in from swap first (VSwapper).
                _, read = self.swap.read(slot, self._now())
                self.stall_host_swapin += read
                self.pswpin += 1
                if from_disk:
                    self.stale_swap_reads += 1
                else:
                    self.false_swap_reads += 1
            self.swap.free(slot)
            p2m.set(pfn, P2M_NONE)
            s = P2M_NONE
            cost += self.fault_cost
        elif s == P2M_COMPRESSED:
            self.zcache.free(p2m.mpn[pfn])
            p2m.set(pfn, P2M_NONE)
            s = P2M_NONE
            cost += self.fault_cost
        if s0 == P2M_NONE:
            # (a host large page's fault, or none)
            mpn, c2, fault = self._first_frame(pfn, data)
            cost += fault
        else:
            if s == P2M_BALLOONED:
                self._refault(pfn)
                cost += self.fault_cost
            mpn, c2 = self._alloc_frame(data)
        if s == P2M_SHARED or s == P2M_ZERO:
            # whole-page write: sharing breaks without a copy
            self.sharing.unmap(self, pfn)
            if s == P2M_ZERO:
                self.cow_zero += 1
            else:
                self.cow_ksm += 1
                self.sharing.cow_ksm += 1
            cost += self.fault_cost
        p2m.set(pfn, P2M_PRIVATE, mpn)
        p2m.disk_clean[pfn] = from_disk
        cost += c2
        self.stall_cpu_zero += self.fault_cost
        if s0 == P2M_SHARED or s0 == P2M_ZERO:
            self.stall_cow_break += cost
        elif s0 == P2M_BALLOONED:
            self.stall_balloon += cost
        else:
            self.stall_host_fault += cost
        return cost + read

    def _now(self) -> float | None:
        """The simulated time of a request made now: the clock, plus what this VM has
        already stalled at this simulated instant (a burst's requests follow each other)."""
        clock = self.clock
        if clock is None:
            return None
        t = clock()
        if t != self._burst_t:
            self._burst_t = t
            self._burst_stall0 = self.stall_time
        return t + self.stall_time - self._burst_stall0

    def _refault(self, pfn: int) -> None:
        """A released frame is backed again (the guest reused it)."""
        self.balloon_refault += 1
        kind = self.p2m.released_backed[pfn]
        if self._fresh is not None:
            self._fresh[pfn] = kind
        if kind:
            self.p2m.released_backed[pfn] = 0
            self.nr_released_backed -= 1
            self.nr_released_by[kind] -= 1

    def _first_frame(self, pfn: int, data) -> tuple[int, float, float]:
        """A first touch of `pfn` (P2M_NONE): (machine frame holding `data`, seconds waited
        for memory, the host fault's cost: a small page's, or with host large pages
        (largepage.py) a large page's, or none for a subpage of a live large page)."""
        self.first_touch += 1
        if self._fresh is not None:
            self._fresh[pfn] = 0
        if self.lp is not None:
            return self.lp.first_frame(self, pfn, data)
        mpn, cost = self._alloc_frame(data)
        return mpn, cost, self.fault_cost

    def _alloc_frame(self, data: bytes) -> tuple[int, float]:
        """A private machine frame holding `data`, and the seconds the VM waited for it."""
        machine = self.machine
        cost = self.alloc_penalty
        if cost:
            self.low_state_stalls += 1
        mpn = machine.alloc(self.vmid, data)
        if mpn >= 0:
            return mpn, cost
        swap = self.swap
        if swap is not None and swap.nr_inflight and swap.complete(swap.now()):
            mpn = machine.alloc(self.vmid, data)  # a write to swap completed meanwhile
            if mpn >= 0:
                return mpn, cost
        hook = self.reclaim_hook
        if hook is not None:
            # No free frame: the VM waits for the host's reclaim (compression now, or a
            # write to swap completing: Host.reclaim's wait) rather than exceed machine
            # memory; again while reclaiming changes something (a batch whose pages all
            # went to frames of the compression cache frees nothing yet)
            while True:
                before = (machine.nr_free, swap.nr_inflight if swap is not None else 0,
                          swap.nr_used if swap is not None else 0)
                waited = hook(self)
                cost += waited
                mpn = machine.alloc(self.vmid, data)
                if mpn >= 0:
                    if waited > 0.0:
                        self.nomem_waits += 1
                    return mpn, cost
                if before == (machine.nr_free, swap.nr_inflight if swap is not None else 0,
                              swap.nr_used if swap is not None else 0):
                    break
        # Nothing reclaimable and no swap room (the host's reclaim also writes compressed
        # and shared pages to swap when no private frame is left: Host.reclaim_held). A
        # KVM host's OOM killer kills the VM with the highest oom_score and its memory
        # is free (Host.host_oom); killed itself, this VM takes the frame for the access
        # in progress and the host frees it with the rest (Host.reap_dead). An ESX host
        # reserved every VM's swap file at power-on (Host.power_on_check), so there is
        # always a slot for a private frame.
        oom = self.oom_hook
        if oom is not None and oom(self):
            mpn = machine.alloc(self.vmid, data)
            if mpn >= 0:
                return mpn, cost
        # Still nothing (no private frame left anywhere to swap): the allocation overdraws
        # machine memory instead of failing the VM (counted, shown in summary.json and
        # report.md, the VM charged `nomem_stall`).
        self.nomem_stalls += 1
        self.nomem_stall_time += self.nomem_stall
        return machine.alloc(self.vmid, data, force=True), cost + self.nomem_stall

    # -- host-side operations ----------------------------------------------------------------

    def evict(self, pfn: int, compress: bool = True, swap: bool = True) -> float:
        """Take a private frame from the guest: compress it, else swap it out.

        Returns the host's cost in seconds, or -1.0 when the page could go nowhere.
        """
        p2m = self.p2m
        if p2m.state[pfn] != P2M_PRIVATE:
            raise ValueError(f"evict: pfn {pfn:#x} of {self.name} is not a private frame")
        if self.lp_live and p2m.large[pfn >> LARGE_PAGE_SHIFT] == LP_BACKED:
            self.lp.split_for(self, pfn, "reclaim")
            if p2m.state[pfn] != P2M_PRIVATE:
                return 0.0  # zero-filled: the split mapped it to the zero page (KVM)
        mpn = p2m.mpn[pfn]
        data = self.machine.data(mpn)
        zcache = self.zcache
        cost = 0.0
        if compress and zcache is not None:
            full = zcache.full
            slot = zcache.store(data)
            cost = zcache.compress_cost
            self.evict_cpu += cost
            if slot < 0 and zcache.full != full:
                if zcache.nr_frames < zcache.max_frames and self.machine.nr_free >= 0:
                    # no free frame for the cache: the page's own frame becomes one
                    self.machine.free(mpn)
                    mpn = -1
                    slot = zcache.store(data)
                    if slot < 0:  # (cannot happen: the frame just freed is there)
                        raise AssertionError("compression cache: no frame after freeing one")
                elif swap:
                    slot, c = self._zip_store_replacing(data)
                    cost += c
            if slot >= 0:
                if mpn >= 0:
                    self.machine.free(mpn)
                p2m.set(pfn, P2M_COMPRESSED, slot)
                self._zage_add(pfn)
                self.zswpout += 1
                return cost
        if swap and self.swap is not None:
            slot, c2 = self.swap.write(data)
            if slot >= 0:
                if p2m.disk_clean[pfn]:
                    self.silent_swap_writes += 1
                if not self.swap.hold(slot, mpn):  # else freed when the write completes
                    self.machine.free(mpn)
                p2m.set(pfn, P2M_SWAPPED, slot)
                self.pswpout += 1
                return cost + c2
        return -1.0

    def _to_swap_plain(self, pfn: int, swapped: list) -> None:
        c = self.evict(pfn, compress=False)
        if c >= 0:
            swapped[0] += 1
            swapped[1] += c

    def _zage_add(self, pfn: int) -> None:
        """`pfn` was just compressed: the youngest page of the cache."""
        n = self.nr_pages
        if self._zseq is None:
            self._zseq = array("I", bytes(4 * n))
        z = self._zn = self._zn + 1
        z &= 0xFFFFFFFF
        self._zseq[pfn] = z
        self._zage.append(z * n + pfn)

    def _zip_store_replacing(self, data) -> tuple[int, float]:
        """The compression cache is at its size limit: make room by age-based replacement
        (ESX: the oldest compressed page is decompressed and written to swap) until `data`
        fits, at most 4 pages. (Not when it is machine memory that is short: moving a page
        from the cache to swap would free nothing.) (slot or -1, host CPU seconds spent decompressing)."""
        zcache = self.zcache
        cost = 0.0
        for _ in range(4):
            c = self._zip_replace_oldest()
            if c < 0:
                return -1, cost
            cost += c
            full = zcache.full
            slot = zcache.store(data)
            if slot >= 0:
                return slot, cost
            if zcache.full == full:
                return -1, cost  # refused for its size this time
        return -1, cost

    def _zip_replace_oldest(self) -> float:
        """Move the page compressed longest ago to host swap; the host CPU seconds it
        took (decompression), or -1.0 if there is none or swap is full."""
        swap = self.swap
        if swap is None or swap.nr_used >= swap.nr_slots:
            return -1.0
        age = self._zage
        p2m = self.p2m
        state = p2m.state
        mpns = p2m.mpn
        n = self.nr_pages
        seq = self._zseq
        while age:
            e = age.popleft()
            z, pfn = divmod(e, n)
            if state[pfn] == P2M_COMPRESSED and seq[pfn] == z:
                break
        else:
            return -1.0
        slot = mpns[pfn]
        zcache = self.zcache
        data = zcache.peek(slot)
        zcache.free(slot)
        zcache.replaced += 1
        new, _ = swap.write(data)  # from a bounce buffer: no guest frame waits for it
        p2m.set(pfn, P2M_SWAPPED, new)
        self.pswpout += 1
        self.zip_replaced += 1
        cost = zcache.decompress_cost
        self.evict_cpu += cost
        return cost

    def evict_many(self, pfns, compress: bool = True, swap: bool = True) -> tuple[int, float]:
        """`evict` for a list of private frames; frames that can go nowhere stay private.

        Returns (frames evicted, host seconds).
        """
        p2m = self.p2m
        state = p2m.state
        mpns = p2m.mpn
        pfns = list(pfns)
        if bytes(_gather(state, pfns)).count(P2M_PRIVATE) != len(pfns):
            bad = next(pfn for pfn in pfns if state[pfn] != P2M_PRIVATE)
            raise ValueError(f"evict: pfn {bad:#x} of {self.name} is not a private frame")
        if self.lp_live:
            # a subpage goes out 4 KiB at a time: its large page is split first (which may
            # free zero-filled subpages on KVM: those need no eviction)
            large = p2m.large
            for pfn in pfns:
                if large[pfn >> LARGE_PAGE_SHIFT] == LP_BACKED:
                    self.lp.split_for(self, pfn, "reclaim")
            kept = [pfn for pfn in pfns if state[pfn] == P2M_PRIVATE]
            zeroed = len(pfns) - len(kept)  # frames the splits freed (counted as done)
            pfns = kept
        else:
            zeroed = 0
        zcache = self.zcache if compress else None
        if zcache is not None:
            # the cache compresses what the frames hold: the guest's writes folded in first
            machine = self.machine
            mcsum = machine.csum
            ms = _gather(mpns, pfns)
            if WRITTEN in _gather(mcsum, ms):
                for m in ms:
                    if mcsum[m] == WRITTEN:
                        machine.fold(m)
        swapped = [0, 0.0]  # pages, seconds
        full = [zcache.full if zcache is not None else 0]

        deferred: list[int] = []  # refused because the cache is full: handled after

        def to_swap(i: int) -> None:
            # refused by the cache for its size: swap it now, freeing its frame for the
            # cache. Refused because the cache is full: handled once the batch is in
            # (the cache must not change under store_frames)
            if swap:
                is_full = zcache is not None and zcache.full != full[0]
                if is_full:
                    full[0] = zcache.full
                if deferred or is_full:
                    # (and every refusal after it, so pages keep their order; a page
                    # refused for its size goes to swap then without a second try)
                    deferred.append(pfns[i] if is_full else ~pfns[i])
                    return
                self._to_swap_plain(pfns[i], swapped)

        if zcache is None:
            slots = [-1] * len(pfns)
            for i in range(len(pfns)):
                to_swap(i)
            cost = 0.0
        else:
            slots = zcache.store_frames(list(ms), to_swap)
            cost = len(pfns) * zcache.compress_cost
            self.evict_cpu += cost
        stored = pfns
        if zcache is None:
            stored = slots = []
        elif -1 in slots:
            kept = [slot >= 0 for slot in slots]
            stored = list(select(pfns, kept))
            slots = list(select(slots, kept))
        compressed = len(slots)
        if compressed:
            # NOTE: P2M.set inlined for performance (nr is settled below), with the
            # compression sequence numbers (one loop: their mask is needed only past 2**32)
            n = self.nr_pages
            seq = self._zseq
            if seq is None:
                seq = self._zseq = array("I", bytes(4 * n))
            z0 = z = self._zn
            if z0 + compressed <= 0xFFFFFFFF:
                for pfn, slot in zip(stored, slots):
                    state[pfn] = P2M_COMPRESSED
                    mpns[pfn] = slot
                    z += 1
                    seq[pfn] = z
                # (zi * n + pfn for each sequence number zi, at C speed)
                self._zage.extend(map(add, range((z0 + 1) * n, (z + 1) * n, n), stored))
            else:
                for pfn, slot in zip(stored, slots):
                    state[pfn] = P2M_COMPRESSED
                    mpns[pfn] = slot
                    z += 1
                    seq[pfn] = z & 0xFFFFFFFF
                self._zage.extend([(zi & 0xFFFFFFFF) * n + pfn
                                   for zi, pfn in zip(range(z0 + 1, z + 1), stored)])
            self._zn = z
        done = swapped[0]
        cost += swapped[1]
        if compressed:
            nr = p2m.nr
            nr[P2M_PRIVATE] -= compressed
            nr[P2M_COMPRESSED] += compressed
            self.zswpout += compressed
        for pfn in deferred:
            if pfn < 0:
                c = self.evict(~pfn, compress=False)
            else:
                # age-based replacement, or the page's own frame, or swap; its
                # compression was counted with the batch's
                c = self.evict(pfn)
                self.evict_cpu -= zcache.compress_cost
                zcache.full -= 1  # (the same refusal, counted once)
                if c >= 0:
                    c -= zcache.compress_cost
            if c >= 0:
                done += 1
                cost += c
        return done + compressed + zeroed, cost

    def break_large_pages(self) -> int:
        """Break every live large page of this VM at once (largepage.py; the host's
        background job breaks them at its rate). Returns how many."""
        if not self.lp_live:
            return 0
        return self.lp.break_some([self], self.lp_live)

    def tlb_factor(self) -> float:
        """The share of a burst's guest CPU time left once the TLB benefit of host large
        pages is taken off: 1 - tlb_discount x (guest frames under a live large page /
        guest frames backed)."""
        if not self.lp_live:
            return 1.0
        nr = self.p2m.nr
        backed = nr[P2M_PRIVATE] + nr[P2M_SHARED]
        if backed <= 0:
            return 1.0
        under = (self.lp_live << LARGE_PAGE_SHIFT) - self.lp_reserved
        return 1.0 - self.lp.tlb_discount * min(1.0, under / backed)

    COUNTERS = (
        "first_touch", "cow_ksm", "cow_zero", "zswpin", "zswpout", "pswpin", "pswpout",
        "balloon_refault", "released", "released_alloc_backed", "reported_discards", "false_swap_reads",
        "stale_swap_reads",
        "false_reads_avoided", "silent_swap_writes", "large_pages_backed", "large_pages_broken", "nomem_stalls",
        "nomem_stall_time", "low_state_stalls", "stall_time", "stall_host_fault",
        "stall_cow_break", "stall_decompress", "stall_host_swapin", "stall_balloon",
        "stall_cpu_zero", "stall_cpu_zip", "balloon_cpu", "nomem_waits",
    )

    def counters(self) -> dict[str, int | float]:
        """This VM's counters and its frames by P2M state (pages), as a flat record."""
        from .p2m import P2M_STATE_NAMES

        out: dict[str, int | float] = {name: getattr(self, name) for name in self.COUNTERS}
        for state, name in enumerate(P2M_STATE_NAMES):
            out[f"p2m_{name}"] = self.p2m.nr[state]
        out["balloon_target"] = self.balloon_target
        out["balloon_actual"] = self.balloon.actual if self.balloon is not None else 0
        out["balloon_backed"] = self.nr_balloon_backed
        out["reported_backed"] = self.nr_reported_backed
        return out

    @property
    def nr_resident(self) -> int:
        """Guest frames backed by a machine frame (private or shared), pages."""
        nr = self.p2m.nr
        return nr[P2M_PRIVATE] + nr[P2M_SHARED]

    def poll_stats(self) -> dict[str, int]:
        """Ask the guest for fresh statistics (the stats virtqueue: the host returns the
        buffer, the guest's update_balloon_stats refills it). Kept as what
        `guest_stats()` answers until the next poll. Pages for memory, counts for events."""
        k = self.kernel
        if k is None:
            free = self.p2m.nr[P2M_NONE]
            stats = dict.fromkeys(GUEST_STATS, 0)
            stats.update(total=self.nr_pages, free=free, available=free)
        else:
            from guestkernel.balloon import VIRTIO_BALLOON_S_NAMES, update_balloon_stats

            stats = {}
            for tag, value in update_balloon_stats(k):
                name = VIRTIO_BALLOON_S_NAMES[tag]
                key = _STAT_KEYS[name]
                stats[key] = value >> 12 if name in _STAT_BYTES else value
        self._stats = stats
        self.stats_polls += 1
        return stats

    def guest_stats(self) -> dict[str, int]:
        """What the guest last reported on the stats virtqueue (pages for memory, counts
        for events): as of the last `poll_stats`, stale in between. Keys: GUEST_STATS."""
        if self._stats is None:
            return self.poll_stats()  # the buffer the driver primes the queue with at probe
        return self._stats

    # -- raw memory images -------------------------------------------------------------------

    @classmethod
    def from_image(
        cls,
        machine: MachineMemory,
        name: str,
        path: str | os.PathLike,
        vmid: int = 0,
        intern: dict | None = None,
    ) -> VM:
        """A VM whose frames hold the pages of a raw memory image file, in order."""
        vm = cls(machine, name, image_pages(path), vmid)
        vm.load_image(path, intern)
        return vm

    def load_image(self, path: str | os.PathLike, intern: dict | None = None) -> None:
        """Back every frame with the matching page of a memory image (memimage.py: raw,
        ELF core or hvsim capture, its first snapshot, parts in order).

        Identical pages (within the image and across images sharing `intern`) reuse one
        `bytes` object. All-zero pages are backed too, like a running guest's free memory.
        Pages the image records as never resident, swapped or not in the dump stay
        unbacked: no frame, nothing for the sharing scanner to see. Raises ImageError with
        a one-line message for a missing, empty, truncated or unknown file, or one whose
        size is not this VM's.
        """
        img = open_image(path)
        if img.nr_pages != self.nr_pages:
            raise ImageError(f"{path}: image is not {self.nr_pages} pages long")
        if intern is None:
            intern = {}
        intern.setdefault(ZERO_PAGE, ZERO_PAGE)
        p2m = self.p2m
        pfn = 0
        try:
            for _kind, view in img.pages(0):
                if view is not None:
                    page = bytes(view)
                    page = intern.setdefault(page, page)
                    if p2m.state[pfn] != P2M_NONE:
                        self.release(pfn)
                    mpn, _ = self._alloc_frame(page)
                    p2m.set(pfn, P2M_PRIVATE, mpn)
                pfn += 1
        except OSError as e:
            raise ImageError(f"{path}: cannot read image: {e.strerror or e}") from None


def image_pages(path: str | os.PathLike) -> int:
    """Pages of the VM a memory image gives; ImageError (one line) if it cannot be used."""
    return open_image(path).nr_pages
