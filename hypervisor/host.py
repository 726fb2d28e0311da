"""Host: machine memory, VMs, and the four reclamation techniques wired together.

`Host(HostConfig(...), env=None)` builds machine memory, the page-sharing scanner, host
swap, the memory-state machine, the victim policy and the balloon controller. VMs are
created with `create_vm(name, kernel_config)` (boots a guest `Kernel` on the VM) or
`create_vm_from_image(name, path)` (a raw memory dump, no kernel).

Without `env` everything is synchronous: call `host.sharing.scan()`, `host.check_state()`
and `host.balloon.update()` yourself. With a SimPy `env` the host starts its daemons: the
sharing scanner (ksmd), the state monitor (every `state_interval`), the balloon controller
(every `balloon_interval`) and one balloon driver daemon per guest.

Reclaim by state (states.py): in hard and low the monitor compresses or swaps out frames
chosen by the victim policy until free memory is back at the soft threshold, at most
`reclaim_rate` pages per second; in low, every allocation of a VM is charged
`low_state_stall`. Whenever a VM finds no free machine frame it waits for the host's
reclaim (`reclaim`): `reclaim_batch` frames compressed (the vCPU waits for the CPU) or
written to swap (the vCPU waits until the oldest write in flight completes and takes its
frame), again while that changes anything, so machine memory never exceeds the host's
while swap has room (vm.nomem_waits counts the allocations that waited).

A host with no room left behaves as its `kind` does:

    esx   admission control: at power-on each VM's memory reservation (sched.mem.min,
          `reservation` pages: machine memory it is guaranteed) must fit in the host
          memory not reserved yet, and its swap file (.vswp) is reserved on host swap,
          its configured memory minus its reservation; the memory reservations may
          take is the host's less its minFree (states.py), which the host keeps free
          for itself; a VM whose reservation or swap file does not fit is not
          powered on (`PowerOnError`, listed in `not_powered_on` with the reason).
          VMware, vSphere Resource Management, "Swap Space and Memory Overcommitment": "You
          must reserve swap space for any unreserved virtual machine memory (the
          difference between the reservation and the configured memory size) on
          per-virtual machine swap files. This swap reservation is required to ensure
          that the ESXi host is able to preserve virtual machine memory under any
          circumstances"; "Swap File Location": "The ESXi host creates a swap file when
          a virtual machine is powered on. If this file cannot be created, the virtual
          machine cannot power on." Every guest page then has a swap slot to go to, or
          lies within the reservation, which ballooning (BalloonController.cap) and
          compression and host swap (`above_reservation`) never take.
          (`admission_control = False` powers on whatever the swap, as hvsim did.)
    kvm   no reservation: when machine memory and swap are both exhausted and nothing
          can be reclaimed, the host's OOM killer kills the QEMU process with the
          highest oom_score (oom_badness: its RSS, guest pages in private or
          KSM-shared frames, plus its swap entries, pages on host swap or in zswap;
          page tables left out; ties to the process created last, as
          oom_evaluate_task keeps a later equal score): the VM is gone, its memory
          freed (`host_oom_kills`, with the time).

When no VM has a private frame left (every frame holds shared or compressed pages),
the allocating VM waits while those frames are freed to swap (`reclaim_held`: the
compression cache's oldest pages, then shared frames, one copy in each sharer's swap),
as ESX's low state blocks allocations until memory is freed. Only when swap is full too
(possible by design only with `admission_control = False`, or on kvm once the OOM
killer found nothing to kill) does an allocation overdraw (vm.nomem_stalls,
machine.overdraft_allocs), reported (`overdraft_peak_pages`, `overdraft_time`; the
run's summary, report and time series show it, experiments/metrics.py).

Host CPU (cpu.py): ksmd, compression, fault zeroing, balloon exits (`balloon_inflate_cost`,
`balloon_deflate_cost` a page) and swap-out submission (`swapout_cost` a page) run on the
host's CPUs beside the vCPUs, sharing a busy CPU with them by weight (CFS weights on kvm,
shares on esx: cpu.HOST_WEIGHTS).

`host.sysfs.read("/sys/kernel/mm/ksm/pages_sharing")` reads KSM counters like Linux's
sysfs; `/sys/kernel/mm/hvsim/<name>` reads host counters (see `Host.counters`).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, fields

import xxhash

from guestkernel.units import PAGE_SIZE, parse_duration, parse_size

from .balloon import BalloonController, BalloonControllerDaemon, StatsPoller
from .compaction import DEFRAG_MODES, HostCompaction, Kcompactd
from .compression import CompressionCache
from .cpu import COMPRESSION, SWAPOUT, ZEROING, HostCPUs, VCPUs
from .ksmtune import CONTROLS as KSM_CONTROLS
from .ksmtune import KsmControl, ksm_control
from .largepage import HOST_KINDS, Khugepaged, LargePageBreaker, LargePages
from .machine import MachineMemory, RegionMemory
from .p2m import P2M_BALLOONED, P2M_COMPRESSED, P2M_NONE, P2M_PRIVATE, P2M_SHARED, P2M_SWAPPED
from .policy import balloon_policy, victim_policy
from .sharing import SALTING, PageSharing, Scanner
from .states import ENTER_PCT, HARD, LOW, SOFT, MemStates, StateMonitor
from .states import min_free_bytes as esx_min_free
from .swap import GuestDisk, HostSwap
from .vm import VM

_SIZES = ("memory", "swap_size", "swap_bandwidth", "compress_threshold", "compress_quarter")
_TIMES = (
    "swap_latency", "fault_cost", "cow_cost", "decompress_cost", "compress_cost",
    "nomem_stall", "low_state_stall", "hash_cost", "compare_cost", "sample_period",
    "balloon_interval", "state_interval", "balloon_stats_interval",
    "large_page_fault_cost", "large_page_break_cost", "cpu_quantum",
    "balloon_inflate_cost", "balloon_deflate_cost", "swapout_cost", "page_copy_cost",
    "page_zero_cost", "compact_scan_cost",
)


@dataclass
class HostConfig:
    """One host. Sizes accept bytes or strings ("4GiB"); times seconds or strings ("80us")."""

    memory: int | str = "4GiB"  # machine memory, bytes
    cpus: int = 4  # physical CPUs shared by the vCPUs and the host's own work
    cpu_quantum: float | str = "50ms"  # time slice of a normal-shares vCPU (ESX's default quantum)
    min_free: int | str | None = None  # bytes; None: ESXi's minFree rule, scaled
    swap_size: int | str = "4GiB"  # host swap device, bytes
    swap_latency: float | str = "100us"  # seconds per page read or written
    swap_bandwidth: int | str = "500MiB"  # bytes per second
    fault_cost: float | str = "2us"  # first touch of a frame, seconds
    cow_cost: float | str = "3us"  # write to a shared frame (copy), seconds
    nomem_stall: float | str = "1ms"  # wait of an allocation nothing could be reclaimed for
    low_state_stall: float | str = "1ms"  # wait of every allocation in the low state
    large_pages: bool = False  # back guest memory with 2 MB pages (not shareable until broken)
    # whose host: "esx" (large pages broken below 400 % minFree; CPU shares; swap files
    # reserved at power-on) or "kvm" (THP, KSM splits; CFS weights; host OOM killer)
    kind: str = "esx"
    large_page_fault_cost: float | str = "100us"  # first touch backed by a 2 MiB page, seconds
    large_page_break_rate: int = 1000  # large pages ESX's background job breaks per second
    large_page_break_cost: float | str = "40us"  # host CPU per large page broken, seconds
    large_page_tlb_discount: float = 0.05  # fraction of guest CPU saved under large pages
    # a KVM host's khugepaged over guest RAM (Linux 6.x defaults, /sys/kernel/mm/transparent_hugepage/khugepaged)
    khugepaged: bool = True  # run it (kind "kvm" with large_pages only)
    khugepaged_pages_to_scan: int = 4096  # PTEs per wake-up
    khugepaged_scan_sleep_millisecs: int = 10000  # ms between wake-ups
    khugepaged_alloc_sleep_millisecs: int = 60000  # ms after a failed huge page allocation
    khugepaged_max_ptes_none: int = 511  # empty or zero-page PTEs a collapse may fill
    khugepaged_max_ptes_swap: int = 64  # swapped PTEs a collapse may swap in
    khugepaged_max_ptes_shared: int = 256  # PTEs of pages mapped more than once (KSM)
    # a KVM host's compaction (hypervisor/compaction.py): transparent_hugepage/defrag,
    # khugepaged/defrag, vm.compaction_proactiveness (Linux 6.x defaults)
    thp_defrag: str = "madvise"
    khugepaged_defrag: bool = True
    compaction_proactiveness: int = 20
    extfrag_threshold: int = 500  # vm.extfrag_threshold: compact only if fragindex (0..1000) is above it
    # host CPU per page a compaction scanner visits (one struct page read, 64 bytes, where
    # a copy reads and writes 4 KiB: page_copy_cost x 64 / 8192, 455 ns x 64 / 8192)
    compact_scan_cost: float | str = "3.55ns"
    # page sharing (KSM defaults)
    sharing: bool = True
    pages_to_scan: int = 100  # pages per scanner batch
    sleep_millisecs: int = 20  # ms between batches
    max_page_sharing: int = 256  # mappings per stable frame (>= 2)
    use_zero_pages: bool = False  # map zero pages to the host zero page
    smart_scan: bool = True  # skip pages that keep failing to merge
    salting: str = "none"  # "none" (KSM, inter-VM) or "per-vm" (ESXi's default)
    ksm_control: str = "none"  # who tunes ksmd: "none", "ksmtuned", "mom", "advisor" (ksmtune.py)
    hash_cost: float | str = "1us"  # scanner CPU per page checksummed
    compare_cost: float | str = "0.5us"  # scanner CPU per 4 KiB byte compare
    # compression (ESXi defaults)
    compression: bool = True
    zstd_level: int = 3
    compress_threshold: int | str = 2048  # bytes: kept only if compressed this small
    compress_quarter: int | str = 1024  # bytes: quarter-page slot at or below this
    zip_max_pct: float = 10  # cache capacity, percent of each VM's memory
    compress_cost: float | str = "5.7us"  # seconds per page compressed
    decompress_cost: float | str = "1.5us"  # seconds per page decompressed
    # host swap
    victim_policy: str = "random"  # "random" (ESX), "access-bits", "clock" or a dotted path
    avoid_false_reads: bool = False  # VSwapper: whole-page writes skip the swap read
    share_before_swap: bool = True  # ESX: merge a victim into an identical stable frame first
    reclaim_batch: int = 64  # frames freed per synchronous reclaim
    reclaim_rate: int = 25_600  # frames per second the monitor may evict in hard/low
    swapout_cost: float | str = "3us"  # host CPU per page written to swap (unmap, submit): assumed
    # ballooning
    ballooning: bool = True
    balloon_policy: str = "esx-shares"  # "esx-shares", "mom" or a dotted path
    balloon_max_pct: float = 65  # Mem.CtlMaxPercent: cap, percent of VM memory
    idle_tax: float = 75  # Mem.IdleTax, percent (esx-shares)
    sample_pages: int = 100  # frames sampled per VM per period (esx-shares)
    sample_period: float | str = "60s"  # Mem.SamplePeriod
    # gains of the fast and slow moving averages of sampled active memory (esx-shares):
    # Waldspurger 2002 s5.3 describes both averages without their gains; hvsim's assumption
    active_fast_gain: float = 0.5
    active_slow_gain: float = 0.1
    balloon_interval: float | str = "1s"  # controller period
    balloon_rate: int = 25_600  # guest driver pages per second
    balloon_deflate_on_oom: bool = False  # VIRTIO_BALLOON_F_DEFLATE_ON_OOM
    balloon_stats_interval: float | str = "5s"  # stats virtqueue polling period
    # host CPU per page: QEMU discards an inflated page with madvise(MADV_DONTNEED) and
    # advises a deflated one MADV_WILLNEED (measured on Linux 6.18: tests/data/hostcpu)
    balloon_inflate_cost: float | str = "4us"
    balloon_deflate_cost: float | str = "1.8us"
    # guest CPU per 4 KiB page a guest kernel copies (copy_highpage: compaction's
    # migrations, khugepaged's collapses, CoW breaks in the guest), on its vCPU, and per
    # 4 KiB page it zeroes (clear_page: __GFP_ZERO/init_on_alloc/init_on_free, THP faults,
    # khugepaged's empty slots); both the minimum over one recording of page_copy.c and
    # page_clear.c on this machine's Linux 6.18 (tests/data/hostcpu/page_costs.json:
    # 0.455 and 0.238 us)
    page_copy_cost: float | str = "455ns"
    page_zero_cost: float | str = "238ns"
    free_page_reporting: bool = False  # VIRTIO_BALLOON_F_REPORTING (QEMU free-page-reporting)
    state_interval: float | str = "1s"  # memory-state monitor period
    guest_disk: str = "separate"  # guests' disks: "separate" (their own) or "swap" (the host swap device)
    # esx: reserve each VM's swap file at power-on, refuse a VM it does not fit (ESX always
    # does); False: power on whatever the swap (an overdraft then possible, reported)
    admission_control: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _SIZES:
            setattr(self, name, parse_size(getattr(self, name), name))
        for name in _TIMES:
            setattr(self, name, parse_duration(getattr(self, name), name))
        if self.min_free is not None:
            self.min_free = parse_size(self.min_free, "min_free")
            if self.min_free < PAGE_SIZE:
                raise ValueError("min_free: must be at least one page")
        if self.memory < 16 * PAGE_SIZE or self.memory % PAGE_SIZE:
            raise ValueError(f"memory: must be a whole number of pages, at least 16, got {self.memory}")
        if self.swap_bandwidth <= 0:
            raise ValueError("swap_bandwidth: must be positive")
        if self.guest_disk not in ("separate", "swap"):
            raise ValueError(f'guest_disk: must be "separate" or "swap", got {self.guest_disk!r}')
        if self.salting not in SALTING:
            raise ValueError(f"salting: must be one of {', '.join(SALTING)}, got {self.salting!r}")
        if self.ksm_control not in KSM_CONTROLS:
            raise ValueError(f"ksm_control: must be one of {', '.join(KSM_CONTROLS)}, got {self.ksm_control!r}")
        if self.kind not in HOST_KINDS:
            raise ValueError(f"kind: must be one of {', '.join(HOST_KINDS)}, got {self.kind!r}")
        if self.large_page_break_rate < 1:
            raise ValueError(f"large_page_break_rate: must be at least 1, got {self.large_page_break_rate}")
        if not 0 <= self.large_page_tlb_discount < 1:
            raise ValueError(f"large_page_tlb_discount: must be in [0, 1), got {self.large_page_tlb_discount}")
        for name in ("khugepaged_max_ptes_none", "khugepaged_max_ptes_swap", "khugepaged_max_ptes_shared"):
            if not 0 <= getattr(self, name) <= 511:
                raise ValueError(f"{name}: must be in 0..511 (HPAGE_PMD_NR - 1), got {getattr(self, name)}")
        if self.thp_defrag not in DEFRAG_MODES:
            raise ValueError(f"thp_defrag: must be one of {', '.join(DEFRAG_MODES)}, got {self.thp_defrag!r}")
        if not 0 <= self.compaction_proactiveness <= 100:
            raise ValueError(f"compaction_proactiveness: must be in 0..100, got {self.compaction_proactiveness}")
        if not 0 <= self.extfrag_threshold <= 1000:
            raise ValueError(f"extfrag_threshold: must be in 0..1000, got {self.extfrag_threshold}")
        if self.khugepaged_pages_to_scan < 1:
            raise ValueError(f"khugepaged_pages_to_scan: must be at least 1, got {self.khugepaged_pages_to_scan}")
        for name in ("khugepaged_scan_sleep_millisecs", "khugepaged_alloc_sleep_millisecs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)}")
        if self.max_page_sharing < 2:
            raise ValueError(f"max_page_sharing: must be at least 2, got {self.max_page_sharing}")
        for name in ("cpus", "pages_to_scan", "reclaim_batch", "reclaim_rate", "balloon_rate", "sample_pages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("active_fast_gain", "active_slow_gain"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name}: must be in (0, 1], got {getattr(self, name)}")
        for name in ("zip_max_pct", "balloon_max_pct"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"{name}: must be a percentage, got {getattr(self, name)}")
        if self.cpu_quantum <= 0:
            raise ValueError(f"cpu_quantum: must be positive, got {self.cpu_quantum}")
        if self.balloon_stats_interval <= 0:
            raise ValueError(f"balloon_stats_interval: must be positive, got {self.balloon_stats_interval}")
        if not 0 < self.compress_quarter <= self.compress_threshold <= PAGE_SIZE // 2:
            raise ValueError("compress_threshold: need 0 < compress_quarter <= compress_threshold <= 2048")

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def page_sharing(cfg: HostConfig, machine: MachineMemory) -> PageSharing:
    """The page-sharing mechanism a host with `cfg` runs over `machine`."""
    return PageSharing(
        machine,
        pages_to_scan=cfg.pages_to_scan,
        sleep_millisecs=cfg.sleep_millisecs,
        max_page_sharing=cfg.max_page_sharing,
        use_zero_pages=cfg.use_zero_pages,
        smart_scan=cfg.smart_scan,
        salting=cfg.salting,
        hash_cost=cfg.hash_cost,
        compare_cost=cfg.compare_cost,
    )


def compression_cache(cfg: HostConfig, machine: MachineMemory, nr_pages: int,
                      max_frames: int | None = None) -> CompressionCache:
    """The compression cache of one VM of `nr_pages` (at most zip_max_pct of them)."""
    if max_frames is None:
        max_frames = int(nr_pages * cfg.zip_max_pct // 100)
    return CompressionCache(
        machine,
        max_frames=max_frames,
        level=cfg.zstd_level,
        threshold=cfg.compress_threshold,
        quarter=cfg.compress_quarter,
        compress_cost=cfg.compress_cost,
        decompress_cost=cfg.decompress_cost,
    )


class PowerOnError(ValueError):
    """The host refuses to power on a VM (ESX admission control: its swap file cannot be
    reserved)."""


def rng_for(seed: int, component: str) -> random.Random:
    return random.Random(xxhash.xxh64_intdigest(f"{seed}/{component}".encode()))


class Host:
    def __init__(self, config: HostConfig | None = None, env=None, **overrides) -> None:
        if config is None:
            config = HostConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a HostConfig or keyword settings, not both")
        cfg = self.config = config
        self.env = env
        # large pages are contiguous: machine memory in 2 MiB regions (machine.RegionMemory)
        mem_class = RegionMemory if cfg.large_pages else MachineMemory
        self.machine = mem_class(cfg.memory // PAGE_SIZE)
        # what the guests' writes of unknown data store is drawn from the seed
        self.machine.write_seed = xxhash.xxh64_intdigest(f"{cfg.seed}/host/writes".encode())
        if env is not None:
            self.machine.clock = lambda: env.now  # times an overdraft, should one happen
        min_free = cfg.min_free if cfg.min_free is not None else esx_min_free(cfg.memory)
        self.states = MemStates(max(1, min_free // PAGE_SIZE))
        self.sharing = page_sharing(cfg, self.machine) if cfg.sharing else None
        self.clock = (lambda: env.now) if env is not None else None
        self.cpus = HostCPUs(cfg.cpus, cfg.cpu_quantum, cfg.kind)
        self.swap = HostSwap(cfg.swap_size // PAGE_SIZE, cfg.swap_latency, cfg.swap_bandwidth,
                             machine=self.machine, clock=self.clock)
        self.victims = victim_policy(cfg.victim_policy, rng_for(cfg.seed, "host/victims"))
        kwargs = {}
        if cfg.balloon_policy == "esx-shares":
            kwargs = {"idle_tax": cfg.idle_tax, "sample_pages": cfg.sample_pages,
                      "fast_gain": cfg.active_fast_gain, "slow_gain": cfg.active_slow_gain}
        policy = balloon_policy(cfg.balloon_policy, rng_for(cfg.seed, "host/balloon"), **kwargs)
        self.balloon = BalloonController(self, policy, cfg.balloon_max_pct)
        self.vms: list[VM] = []
        self._by_name: dict[str, VM] = {}
        self.sysfs = SysFS(self)
        # counters
        self.reclaim_calls = 0  # synchronous reclaims (a VM found no free frame)
        # no private frame left (reclaim_held): pages written to swap to free the frames
        # of the compression cache and of shared pages
        self.held_zip_swapped = 0  # compressed pages moved to swap (oldest first)
        self.held_shared_swapped = 0  # mappings of shared frames written to swap
        self.held_frames_freed = 0  # frames those writes freed
        self.pages_evicted = 0  # frames compressed or swapped out by the host
        self.shared_before_swap = 0  # victims merged into a stable frame instead
        self.evict_time = 0.0  # host seconds spent compressing and writing swap
        self.swapout_cpu = 0.0  # host CPU seconds submitting writes to swap
        self._swapout_cpu_last = 0.0  # the part of it spent by the last evict()
        self.swap_reserved = 0  # pages of host swap reserved by powered-on VMs' swap files (esx)
        self.mem_reserved = 0  # frames reserved by powered-on VMs' memory reservations (esx)
        self.not_powered_on: list[dict] = []  # VMs refused at power-on: name, reason
        self.host_oom_kills: list[dict] = []  # VMs the host's OOM killer killed (kvm)
        self.lp = None  # host large pages (largepage.py), when cfg.large_pages
        if cfg.large_pages:
            states = self.states
            keep = (lambda: states.large_pages_min) if cfg.kind == "esx" else (lambda: states.min_free)
            self.lp = LargePages(self.machine, cfg.kind, cfg.large_page_fault_cost,
                                 cfg.large_page_break_cost, cfg.large_page_break_rate,
                                 cfg.large_page_tlb_discount, room=keep)
            self.lp.sharing = self.sharing
            self.lp.max_ptes_none = cfg.khugepaged_max_ptes_none
            self.lp.max_ptes_swap = cfg.khugepaged_max_ptes_swap
            self.lp.max_ptes_shared = cfg.khugepaged_max_ptes_shared
            if cfg.kind == "kvm":  # (ESX does not compact: compaction.py)
                self.lp.compaction = HostCompaction(
                    self.machine, self.vms, self.sharing, cfg.page_copy_cost, keep, cfg.thp_defrag,
                    cfg.compaction_proactiveness, cfg.khugepaged_defrag, cfg.compact_scan_cost,
                    cfg.extfrag_threshold)
        self.daemons: list = []
        if env is not None:
            self._start_daemons()

    # -- VMs -----------------------------------------------------------------------------------

    def vm(self, name: str) -> VM:
        return self._by_name[name]

    def power_on_check(self, name: str, nr_pages: int, reservation: int = 0) -> None:
        """ESX admission control (module docstring): the VM's memory reservation
        (`reservation` pages, sched.mem.min) must fit in the host memory not reserved
        yet, minFree excluded (the host's memory less minFree and the reservations of
        the VMs powered on; hvsim models no per-VM overhead memory to add), and its
        swap file, its configured memory minus its reservation, is reserved on host
        swap; else it is refused (PowerOnError, recorded in `not_powered_on`). KVM has
        no memory reservations and reserves nothing."""
        if reservation < 0 or reservation > nr_pages:
            raise ValueError(f"reservation: must be between 0 and the VM's memory, got {reservation} pages "
                             f"for {nr_pages}")
        if self.config.kind != "esx":
            if reservation:
                raise ValueError("reservation: a kvm host has no memory reservations (an ESX setting, "
                                 "sched.mem.min)")
            return
        if not self.config.admission_control:
            return
        mib = PAGE_SIZE / (1 << 20)
        # the host memory reservations may take: all of it but minFree, which ESX keeps
        # free for itself (states.py), less what powered-on VMs reserved already
        free_res = self.machine.nr_frames - self.states.min_free - self.mem_reserved
        if reservation > free_res:
            reason = (f"its memory reservation needs {reservation * mib:g} MiB of host memory, "
                      f"{max(0, free_res) * mib:g} MiB left unreserved (host memory less minFree, "
                      f"{self.states.min_free * mib:g} MiB, and the reservations of powered-on VMs)")
            self.not_powered_on.append({"vm": name, "reason": reason})
            raise PowerOnError(f"VM {name!r} not powered on: {reason}")
        vswp = nr_pages - reservation
        room = self.swap.nr_slots - self.swap_reserved
        if vswp > room:
            reason = (f"its swap file needs {vswp * mib:g} MiB of host swap, "
                      f"{room * mib:g} MiB left unreserved (ESX reserves each VM's "
                      f"configured memory minus its reservation at power-on)")
            self.not_powered_on.append({"vm": name, "reason": reason})
            raise PowerOnError(f"VM {name!r} not powered on: {reason}")
        self.swap_reserved += vswp
        self.mem_reserved += reservation

    def _new_vm(self, name: str, nr_pages: int, reservation: int = 0) -> VM:
        if name in self._by_name:
            raise ValueError(f"VM {name!r} exists already")
        self.power_on_check(name, nr_pages, reservation)
        cfg = self.config
        vm = VM(self.machine, name, nr_pages, vmid=len(self.vms), large_pages=cfg.large_pages)
        vm.reservation = reservation
        if self.lp is not None:
            vm.lp = self.lp
        vm.fault_cost = cfg.fault_cost
        vm.cow_cost = cfg.cow_cost
        vm.decompress_cost = cfg.decompress_cost
        vm.nomem_stall = cfg.nomem_stall
        vm.avoid_false_reads = cfg.avoid_false_reads
        vm.swap = self.swap
        vm.clock = self.clock
        vm.host_cpus = self.cpus
        vm.balloon_inflate_cost = cfg.balloon_inflate_cost
        vm.balloon_deflate_cost = cfg.balloon_deflate_cost
        vm.page_copy_cost = cfg.page_copy_cost
        vm.page_zero_cost = cfg.page_zero_cost
        vm.reclaim_hook = self.reclaim
        if cfg.kind == "kvm":
            vm.oom_hook = self.host_oom
        if cfg.compression:
            vm.zcache = compression_cache(cfg, self.machine, nr_pages)
        return vm

    def _add_vm(self, vm: VM) -> None:
        self.vms.append(vm)
        self._by_name[vm.name] = vm
        if self.sharing is not None:
            self.sharing.add_vm(vm)

    def create_vm(self, name: str, kernel_config, balloon: bool = True,
                  cpu_shares: float | None = None, reservation: int = 0) -> VM:
        """Boot a guest kernel on a new VM; returns the VM (its kernel is `vm.kernel`).
        `cpu_shares`: ESX CPU shares of the VM (default: normal, 1000 per vCPU).
        `reservation`: ESX memory reservation, pages (sched.mem.min; esx only): machine
        memory the VM is guaranteed; ballooning and host swap never take it below."""
        from guestkernel.balloon import BalloonDaemon, BalloonDriver
        from guestkernel.kernel import Kernel

        vm = self._new_vm(name, kernel_config.nr_pages, reservation)
        vm.vcpus = VCPUs(kernel_config.cpus, self.cpus, cpu_shares)
        self._add_vm(vm)
        vm.kernel = Kernel(kernel_config, phys=vm, env=self.env, name=name)
        if self.config.guest_disk == "swap":
            self._serve_guest_disk(vm.kernel)
        else:
            self._own_guest_disk(vm.kernel)
        if balloon and self.config.ballooning:
            cfg = self.config
            vm.balloon = BalloonDriver(
                vm.kernel, rate=cfg.balloon_rate, deflate_on_oom=cfg.balloon_deflate_on_oom
            )
            if self.env is not None:
                self.daemons.append(BalloonDaemon(self.env, vm.balloon))
            if cfg.free_page_reporting:
                from guestkernel.page_reporting import PageReporting, PageReportingDaemon

                vm.page_reporting = PageReporting(vm.kernel)
                vm.page_reporting.register()
                if self.env is not None:
                    self.daemons.append(PageReportingDaemon(self.env, vm.page_reporting))
        return vm

    def create_image_vm(self, name: str, nr_pages: int, reservation: int = 0) -> VM:
        """A VM without a guest kernel whose frames its user fills (the snapshots workload)."""
        vm = self._new_vm(name, nr_pages, reservation)
        self._add_vm(vm)
        return vm

    def _serve_guest_disk(self, kernel) -> None:
        """The guest's swap area, file system and writeback queue on the host swap device,
        through the guest's own request queue (its nr_requests tags and request size)."""
        from guestkernel.swap import queue_limits

        disk = GuestDisk(self.swap, *queue_limits(kernel))
        swap = getattr(kernel, "swap", None)
        if swap is not None:
            swap.si.queue = disk
        fs = getattr(kernel, "fs", None)
        if fs is not None:
            fs.queue = disk
            reclaim = getattr(kernel, "reclaim", None)
            if reclaim is not None:
                reclaim.disk_queues[id(fs)] = disk

    def _own_guest_disk(self, kernel) -> None:
        """The guest's own virtual disk (`guest_disk = "separate"`): its file reads and
        writeback share one request queue with the disk's latency and bandwidth, so
        concurrent readers and the flusher wait for each other as on one device (the
        guest's swap area keeps the queue of its own device)."""
        from guestkernel.swap import guest_queue

        fs = getattr(kernel, "fs", None)
        if fs is None or self.env is None:
            return
        disk = guest_queue(kernel, fs.latency, fs.bandwidth)  # its nr_requests tags
        fs.queue = disk
        reclaim = getattr(kernel, "reclaim", None)
        if reclaim is not None:
            reclaim.disk_queues[id(fs)] = disk

    def create_vm_from_image(self, name: str, path, intern: dict | None = None,
                             reservation: int = 0) -> VM:
        """A VM whose frames hold a raw memory image (vm.ImageError if unusable).
        `reservation`: ESX memory reservation, pages, as for `create_vm` (admission
        control, its swap file, the floor reclaim never takes it below)."""
        from .vm import image_pages

        vm = self._new_vm(name, image_pages(path), reservation)
        vm.load_image(path, intern)
        self._add_vm(vm)
        return vm

    # -- reclaim -------------------------------------------------------------------------------

    def reclaim(self, requester: VM | None = None) -> float:
        """A VM found no free frame: free `reclaim_batch` frames now. Returns the seconds
        the requester waits: the host CPU compressing, and, when every freed frame is
        still held by a write to swap in flight, the wait for the oldest of those writes
        (its frame is the one handed over)."""
        self.reclaim_calls += 1
        swap = self.swap
        now = requester._now() if requester is not None else swap.now()
        if now is not None and swap.nr_inflight:
            swap.complete(now)
            if self.machine.nr_free > 0:
                return 0.0
        cpu = 0.0
        if swap.nr_inflight < self.config.reclaim_batch or now is None:
            # (with a batch of writes in flight already, waiting for them frees frames
            # sooner than queueing more behind them)
            cpu0 = self._evict_cpu()
            self.evict(self.config.reclaim_batch)
            cpu = self._evict_cpu() - cpu0
        self.cpus.charge(cpu, COMPRESSION)  # on the requesting vCPU's time
        sw = self._swapout_cpu_last
        self._swapout_cpu_last = 0.0
        self.cpus.charge(sw, SWAPOUT)
        cost = cpu + sw
        if self.machine.nr_free <= 0 and not swap.nr_inflight:
            # not a private frame left to take: the frames compressed and shared pages hold
            cost += self.reclaim_held(now)
        if self.machine.nr_free <= 0 and swap.nr_inflight and now is not None:
            wait = swap.complete_oldest(now + cpu)
            if wait > 0.0:
                cost += wait
        return cost

    def reclaim_held(self, now: float | None = None) -> float:
        """Machine memory is full and no VM has a private frame to compress or swap (every
        frame holds compressed pages or shared ones): instead of overdrawing, the
        allocating VM waits until memory is freed, as ESX's low state blocks allocations
        (hypervisor.md: "low < 16 %: compression + swap + block VMs"). Frames are freed by
        writing what they hold to swap, where admission control reserved a slot for
        every page of every VM:

            compressed pages   the compression cache's age-based replacement: the page
                               compressed longest ago is decompressed and written to its
                               VM's swap (VM._zip_replace_oldest), until a cache frame is
                               empty and goes back to the machine; the VM with the most
                               compressed pages first
            shared pages       a shared frame (the one the VM with the most shared pages
                               maps first) is written to the swap file of every VM
                               mapping it, one copy each, as each VM's .vswp holds its
                               own pages; the frame is freed with its last mapping. A
                               frame a VM at its reservation maps stays (no VM goes
                               below its sched.mem.min: the next frame is taken, or
                               the next VM's)

        Until a frame is free. The written data leave through a bounce buffer (the frame
        is free at once) and the requester waits until the last write completes: that
        is when the memory it waits for is freed. Returns the seconds it waits (host CPU
        decompressing and submitting, then the writes), 0.0 if nothing could be freed
        (swap full: an overdraft remains possible only then, reported)."""
        m = self.machine
        swap = self.swap
        free0 = m.nr_free
        out0 = swap.pswpout
        cpu = 0.0
        vms = [vm for vm in self.vms if not vm.dead]
        while m.nr_free <= 0:
            vm = None
            most = 0
            for v in vms:
                n = v.p2m.nr[P2M_COMPRESSED]
                if n > most and v.zcache is not None:
                    vm, most = v, n
            if vm is None:
                break
            c = vm._zip_replace_oldest()
            if c < 0.0:
                break
            cpu += c
            self.held_zip_swapped += 1
        sharing = self.sharing
        # per reserved VM, its shared mappings of each frame: a frame is freed only if no
        # VM mapping it would go below its reservation (above_reservation; sched.mem.min)
        reserved = {id(v): None for v in vms if v.reservation}
        while m.nr_free <= 0 and sharing is not None:
            # the VMs with shared pages, most first (a reserved one only above its floor)
            order = sorted((v for v in vms if v.p2m.nr[P2M_SHARED] and self.above_reservation(v) > 0),
                           key=lambda v: -v.p2m.nr[P2M_SHARED])
            mpn = -1
            for vm in order:
                mpn = self._held_shared_frame(vm, vms, reserved)
                if mpn >= 0:
                    break
            if mpn < 0 or not self._swap_shared_frame(mpn, vms):
                break
        sw = (swap.pswpout - out0) * self.config.swapout_cost
        self.swapout_cpu += sw
        self.cpus.charge(sw, SWAPOUT)  # on the requesting vCPU's time, as reclaim's
        self.cpus.charge(cpu, COMPRESSION)
        self.held_frames_freed += max(0, m.nr_free - free0)
        wait = 0.0
        if swap.pswpout != out0 and now is not None:
            wait = max(0.0, swap.last_done - now - cpu - sw)
        return cpu + sw + wait

    def _held_shared_frame(self, vm: VM, vms: list, reserved: dict) -> int:
        """The first shared frame `vm` maps (in pfn order) whose every mapping can go to
        swap without taking a VM below its reservation; -1 if none. `reserved`: per
        reserved VM (by id), its count of shared mappings per frame, built on first use."""
        state = vm.p2m.state
        arr = vm.p2m.mpn
        pfn = state.find(P2M_SHARED)
        if not reserved:
            return arr[pfn] if pfn >= 0 else -1
        while pfn >= 0:
            mpn = arr[pfn]
            for v in vms:
                if id(v) not in reserved:
                    continue
                counts = reserved[id(v)]
                if counts is None:
                    counts = reserved[id(v)] = Counter()
                    vstate = v.p2m.state
                    vmpn = v.p2m.mpn
                    i = vstate.find(P2M_SHARED)
                    while i >= 0:  # (its shared pages only)
                        counts[vmpn[i]] += 1
                        i = vstate.find(P2M_SHARED, i + 1)
                if counts.get(mpn, 0) > self.above_reservation(v):
                    break
            else:
                for v in vms:  # its mappings leave with it
                    counts = reserved.get(id(v))
                    if counts is not None:
                        counts.pop(mpn, None)
                return mpn
            pfn = state.find(P2M_SHARED, pfn + 1)
        return -1

    def _swap_shared_frame(self, mpn: int, vms: list) -> bool:
        """Write shared frame `mpn` to the swap of every VM mapping it and free it
        (reclaim_held). False if swap had no room for a copy (the mappings written so
        far stay swapped)."""
        data = self.machine.data(mpn)
        sharing = self.sharing
        swap = self.swap
        for vm in vms:
            p2m = vm.p2m
            arr = p2m.mpn
            state = p2m.state
            i = 0
            while True:
                try:
                    i = arr.index(mpn, i)
                except ValueError:
                    break
                if state[i] == P2M_SHARED:
                    slot, _ = swap.write(data)
                    if slot < 0:
                        return False
                    sharing.unmap(vm, i)
                    p2m.set(i, P2M_SWAPPED, slot)
                    vm.pswpout += 1
                    self.held_shared_swapped += 1
                i += 1
        return True

    @staticmethod
    def above_reservation(vm: VM) -> int:
        """Pages of `vm` in machine memory (private or shared frames) beyond its memory
        reservation: what compression and host swap may take from it (ESX never
        reclaims below a VM's reservation, sched.mem.min)."""
        nr = vm.p2m.nr
        return nr[P2M_PRIVATE] + nr[P2M_SHARED] - vm.reservation

    def _evict_cpu(self) -> float:
        return sum(vm.evict_cpu for vm in self.vms)

    @staticmethod
    def oom_badness(vm: VM) -> int:
        """oom_badness of the VM's QEMU process, in pages (oom_score_adj 0): its RSS (guest
        pages in a frame of their own or a KSM-shared one, each mapping counted, as
        MM_ANONPAGES counts KSM pages; the zero page is not counted) plus its swap
        entries (pages on host swap, and in zswap: the compression cache). Page tables
        (mm_pgtables_bytes, about 1/512 of that) are left out."""
        nr = vm.p2m.nr
        return nr[P2M_PRIVATE] + nr[P2M_SHARED] + nr[P2M_COMPRESSED] + nr[P2M_SWAPPED]

    def host_oom(self, requester: VM | None = None) -> bool:
        """KVM's host OOM killer (module docstring): memory and swap are exhausted and
        nothing could be reclaimed for `requester`. Kills the live VM with the highest
        oom_badness (a tie goes to the VM created last: select_bad_process walks the
        task list in creation order and oom_evaluate_task takes an equal score), frees
        all its memory and records it. True if a VM was killed."""
        victim = None
        points = -1
        for vm in self.vms:
            if vm.dead:
                continue
            p = self.oom_badness(vm)
            if p >= points:
                victim, points = vm, p
        if victim is None or points <= 0:
            return False
        now = self.env.now if self.env is not None else 0.0
        reason = f"killed by the host's OOM killer (QEMU process, oom_score {points} pages)"
        k = getattr(victim, "kernel", None)
        if k is not None and not k.panicked:
            k.panicked = reason  # its workload stops; its kernel's daemons meet inert memory
        freed = victim.guest_panicked(reason)
        self.host_oom_kills.append({
            "vm": victim.name, "time_s": round(now, 9), "oom_score_pages": points,
            "freed_mib": round(freed * PAGE_SIZE / (1 << 20), 6),
            "requester": requester.name if requester is not None else None,
        })
        return True

    def reap_dead(self) -> None:
        """Free what a VM killed in the middle of its own allocation still took (the
        frame that allocation got)."""
        for vm in self.vms:
            if vm.dead and vm.p2m.nr[P2M_NONE] + vm.p2m.nr[P2M_BALLOONED] < vm.nr_pages:
                vm.guest_panicked(vm.dead)

    def _victim_vm(self) -> VM | None:
        """The VM furthest above its target, as ESX chooses whom to swap (and compress):
        the one whose balloon lags furthest behind its target (the pages ballooning was
        meant to take and has not), else the one paying the fewest shares per page it
        uses (min-funding revocation: rho = S / (P (f + k (1 - f))), k = 1 / (1 - tau),
        f its sampled active fraction). Only VMs with private frames qualify; ties go to
        the first created."""
        best = None
        best_key = None
        k = 1.0 / (1.0 - min(self.config.idle_tax, 99.0) / 100.0)
        samplers = getattr(self.balloon.policy, "samplers", None) or {}
        for vm in self.vms:
            nr = vm.p2m.nr
            if not nr[P2M_PRIVATE] or self.above_reservation(vm) <= 0:
                continue
            d = vm.balloon
            lag = vm.balloon_target - (d.actual if d is not None else 0)
            if lag > 0:
                key = (1, lag)
            else:
                s = samplers.get(vm.name)
                f = s.active if s is not None else 1.0
                used = nr[P2M_PRIVATE] + nr[P2M_SHARED]
                key = (0, -vm.shares / (max(used, 1) * (f + k * (1.0 - f))))
            if best_key is None or key > best_key:
                best, best_key = vm, key
        return best

    def evict(self, n: int, horizon: float | None = None) -> tuple[int, float]:
        """Free up to `n` private frames: merge into an identical stable frame (with
        share_before_swap), else compress, else swap out. (frames freed, host seconds).

        `horizon` (seconds, background eviction): write no more to swap than the device
        completes within it; past that only compression goes on."""
        done = 0
        cost = 0.0
        compress = self.config.compression
        share_first = None
        if self.config.share_before_swap and self.sharing is not None:
            share_first = self.sharing.try_stable_merge
        swap_ok = True
        now = self.clock() if self.clock is not None else None
        cpu0 = self._evict_cpu()
        dev0 = self.swap.write_time
        out0 = self.swap.pswpout
        self._swapout_cpu_last = 0.0
        while done < n:
            vm = self._victim_vm()
            if vm is None:
                break
            pfns = self.victims.choose(vm, min(n - done, 256, self.above_reservation(vm)))
            if not pfns:
                break
            if horizon is not None and now is not None:
                room = self.swap.room(now, horizon)
                if room <= 0:
                    if not compress:
                        break
                    swap_ok = False
                elif room < len(pfns):
                    pfns = pfns[:room]
            if share_first:
                if vm.lp_live:
                    # a victim under a live large page: the large page is broken first
                    # (ESX breaks before it shares or swaps a subpage; KSM splits to
                    # merge), so the small page goes through sharing like any other
                    # (its hash is kept ready); frames a KVM split frees (zero-filled
                    # subpages) need no eviction
                    lp = vm.lp
                    state = vm.p2m.state
                    for pfn in pfns:
                        lp.split_for(vm, pfn, "reclaim")
                    kept = [pfn for pfn in pfns if state[pfn] == P2M_PRIVATE]
                    zeroed = len(pfns) - len(kept)
                    done += zeroed
                    self.pages_evicted += zeroed
                    pfns = kept
                # ESX shares a page before paging it out: a victim identical to a stable
                # frame is merged into it (its frame freed, no I/O)
                kept = [pfn for pfn in pfns if not share_first(vm, pfn)]
                merged = len(pfns) - len(kept)
                self.shared_before_swap += merged
                done += merged
                pfns = kept
                if not pfns:
                    continue
            progress, _ = vm.evict_many(pfns, compress=compress, swap=swap_ok)
            done += progress
            self.pages_evicted += progress
            if progress < len(pfns):
                break  # the compression cache refused some and swap is full
        # host CPU submitting the writes to swap (the zip replacements' too)
        sw = (self.swap.pswpout - out0) * self.config.swapout_cost
        self.swapout_cpu += sw
        self._swapout_cpu_last = sw
        # host seconds: CPU compressing and submitting, device time writing (not queueing)
        cost = self._evict_cpu() - cpu0 + sw + self.swap.write_time - dev0
        self.evict_time += cost
        return done, cost

    def check_state(self) -> int:
        """Re-evaluate the memory state and act on it (the monitor calls this every second)."""
        now = self.env.now if self.env is not None else 0.0
        if self.host_oom_kills:
            self.reap_dead()
        if self.swap.nr_inflight:
            self.swap.complete(now)
        states = self.states
        was = states.state
        state = states.update(self.machine.nr_free, now)
        lp = self.lp
        if was >= HARD > state and lp is not None and lp.compaction is not None:
            # the host's reclaim (kswapd) goes back to sleep: kswapd_try_to_sleep's
            # reset_isolation_suitable (acts only after a direct compactor's scanners met)
            lp.compaction.reset_isolation_suitable()
        if lp is not None and self.env is None and lp.kind == "esx" and lp.large_pages \
                and states.allows("break_large_pages"):
            # (with a simulation, LargePageBreaker does this at its rate)
            n = lp.break_some(self.vms, int(lp.break_rate * self.config.state_interval))
            self.large_pages_cpu(n * lp.break_cost)
            state = states.update(self.machine.nr_free, now)
        penalty = self.config.low_state_stall if state == LOW else 0.0
        for vm in self.vms:
            vm.alloc_penalty = penalty
        if state >= HARD:
            goal = states.min_free * ENTER_PCT[SOFT] // 100
            # frames whose write to swap is in flight come free by themselves
            need = goal - self.machine.nr_free - self.swap.nr_inflight
            limit = int(self.config.reclaim_rate * self.config.state_interval)
            if need > 0:
                cpu0 = self._evict_cpu()
                self.evict(min(need, limit), horizon=self.config.state_interval)
                sw = self._swapout_cpu_last
                self._swapout_cpu_last = 0.0
                if self.env is not None:
                    self.cpus.run(now, self._evict_cpu() - cpu0, COMPRESSION)
                    self.cpus.run(now, sw, SWAPOUT)
                else:
                    self.cpus.charge(self._evict_cpu() - cpu0, COMPRESSION)
                    self.cpus.charge(sw, SWAPOUT)
                states.update(self.machine.nr_free, now)
        return states.state

    def large_pages_cpu(self, seconds: float) -> None:
        """Host CPU of breaking large pages (a host thread's work, charged as zeroing: EPT
        and page-table work like the faults')."""
        if seconds <= 0.0:
            return
        if self.env is not None:
            self.cpus.run(self.env.now, seconds, ZEROING)
        else:
            self.cpus.charge(seconds, ZEROING)

    def settle(self) -> int:
        """Free the frames of completed writes to swap and re-evaluate the state (no
        reclaim); the state."""
        now = self.env.now if self.env is not None else 0.0
        if self.swap.nr_inflight:
            self.swap.complete(now)
        return self.states.update(self.machine.nr_free, now)

    def validate(self) -> None:
        """Check every frame, slot and counter adds up; AssertionError if not."""
        from .p2m import P2M_COMPRESSED

        self.machine.validate()
        private = zip_frames = 0
        for vm in self.vms:
            vm.p2m.validate()
            private += vm.p2m.nr[P2M_PRIVATE]
            if vm.zcache is not None:
                assert vm.zcache.nr_stored == vm.p2m.nr[P2M_COMPRESSED]
                zip_frames += vm.zcache.nr_frames
            else:
                assert vm.p2m.nr[P2M_COMPRESSED] == 0
        shared = 0
        if self.sharing is not None:
            self.sharing.validate()
            shared = self.sharing.pages_shared
        inflight = self.swap.nr_inflight  # frames held by writes to swap in flight
        assert inflight == sum(1 for m in self.swap._mpn if m >= 0)
        reserved = self.machine.reserved  # frames of host large pages not yet touched
        if self.lp is not None:
            self.lp.validate(self.vms)
        else:
            assert reserved == 0, reserved
        assert self.machine.nr_used == private + shared + zip_frames + inflight + reserved, (
            self.machine.nr_used, private, shared, zip_frames, inflight, reserved)
        assert self.swap.nr_used == sum(vm.p2m.nr[P2M_SWAPPED] for vm in self.vms)

    # -- reporting -----------------------------------------------------------------------------

    def reclaimed(self) -> dict[str, int]:
        """Memory each technique is saving now, in pages (DESIGN.md definitions)."""
        sh = self.sharing
        return {
            "sharing": (sh.pages_sharing + sh.ksm_zero_pages) if sh is not None else 0,
            "balloon": self.balloon.reclaimed(),
            "compression": sum(vm.zcache.reclaimed for vm in self.vms if vm.zcache),
            # (a page whose write is still in flight has its frame too: not reclaimed yet)
            "swap": sum(vm.p2m.nr[P2M_SWAPPED] for vm in self.vms) - self.swap.nr_inflight,
            "reporting": sum(vm.nr_reported_backed for vm in self.vms),
        }

    def counters(self) -> dict[str, int | float | str]:
        m = self.machine
        out: dict[str, int | float | str] = {
            "memory_pages": m.nr_frames,
            "free_pages": m.nr_free,
            "min_free_pages": self.states.min_free,
            "state": self.states.name,
            "state_transitions": self.states.transitions,
            "overdraft_allocs": m.overdraft_allocs,
            "overdraft_peak_pages": m.overdraft_peak,
            "overdraft_time": m.overdraft_seconds(self.env.now if self.env is not None else 0.0),
            "swap_reserved_pages": self.swap_reserved,
            "host_oom_kills": len(self.host_oom_kills),
            "vms_not_powered_on": len(self.not_powered_on),
            "reclaim_calls": self.reclaim_calls,
            "held_zip_swapped": self.held_zip_swapped,
            "held_shared_swapped": self.held_shared_swapped,
            "held_frames_freed": self.held_frames_freed,
            "pages_evicted": self.pages_evicted,
            "shared_before_swap": self.shared_before_swap,
            "evict_time": self.evict_time,
            "swap_pages": self.swap.nr_slots,
            "swap_used": self.swap.nr_used,
            "pswpin": self.swap.pswpin,
            "pswpout": self.swap.pswpout,
            "swap_inflight": self.swap.nr_inflight,
            "swap_device_busy_s": self.swap.busy_time,
            "swap_device_wait_s": self.swap.wait_time,
            "swap_device_queue_max": self.swap.queue_max,
            "swap_rescued": self.swap.rescued,
        }
        for key, value in self.reclaimed().items():
            out[f"reclaimed_{key}"] = value
        for name in VM.COUNTERS:
            if name not in ("pswpin", "pswpout"):  # the device's own counts are above
                out[name] = sum(getattr(vm, name) for vm in self.vms)
        out["zip_pages"] = sum(vm.zcache.nr_stored for vm in self.vms if vm.zcache)
        out["zip_frames"] = sum(vm.zcache.nr_frames for vm in self.vms if vm.zcache)
        out["zip_rejected"] = sum(vm.zcache.rejected for vm in self.vms if vm.zcache)
        for name, value in self.cpus.busy_s().items():
            out[f"host_cpu_{name}_s"] = value
        if self.lp is not None:
            # (large_pages_broken: ESX's job only; the VMs' counter has every split)
            out.update(self.lp.counters())
        return out

    def state_residence(self) -> dict[str, float]:
        now = self.env.now if self.env is not None else 0.0
        return self.states.residence_times(now)

    # -- daemons -------------------------------------------------------------------------------

    def _start_daemons(self) -> None:
        env = self.env
        cfg = self.config
        if self.sharing is not None:
            self.daemons.append(Scanner(env, self.sharing, lambda: self.states.allows("sharing"),
                                        cpus=self.cpus))
            if cfg.ksm_control != "none":
                self.daemons.append(KsmControl(env, self, ksm_control(cfg.ksm_control)))
        self.daemons.append(StateMonitor(env, self, cfg.state_interval))
        if self.lp is not None and cfg.kind == "esx":
            self.daemons.append(LargePageBreaker(env, self, self.lp))
        if self.lp is not None and cfg.kind == "kvm" and cfg.khugepaged:
            self.daemons.append(Khugepaged(env, self, self.lp, cfg.khugepaged_pages_to_scan,
                                           cfg.khugepaged_scan_sleep_millisecs / 1000,
                                           cfg.khugepaged_alloc_sleep_millisecs / 1000))
        if self.lp is not None and self.lp.compaction is not None:
            self.daemons.append(Kcompactd(env, self, self.lp.compaction))
        if cfg.ballooning:
            self.daemons.append(StatsPoller(env, self, cfg.balloon_stats_interval))
            self.daemons.append(
                BalloonControllerDaemon(env, self.balloon, cfg.balloon_interval, cfg.sample_period)
            )


_KSM_WRITABLE = {
    "pages_to_scan": (1, 1 << 31),
    "sleep_millisecs": (0, 1 << 31),
    "max_page_sharing": (2, 1 << 31),
    "use_zero_pages": (0, 1),
    "smart_scan": (0, 1),
    "run": (0, 1),
}


class SysFS:
    """Text view of counters: /sys/kernel/mm/ksm/* (KSM), /sys/kernel/mm/hvsim/* (host)
    and /sys/kernel/mm/hvsim/vms/<vm>/* (per VM)."""

    KSM = "/sys/kernel/mm/ksm/"
    HVSIM = "/sys/kernel/mm/hvsim/"
    VMS = "/sys/kernel/mm/hvsim/vms/"  # + <vm name>/<counter>: VM.counters()

    def __init__(self, host: Host) -> None:
        self.host = host

    def _ksm(self):
        if self.host.sharing is None:
            raise FileNotFoundError(f"{self.KSM}: page sharing is disabled on this host")
        return self.host.sharing

    def listdir(self, path: str) -> list[str]:
        path = path.rstrip("/") + "/"
        if path == self.KSM:
            return sorted(self._ksm().counters())
        if path == self.HVSIM:
            return sorted(self.host.counters()) + ["vms"]
        if path == self.VMS:
            return [vm.name for vm in self.host.vms]
        if path.startswith(self.VMS) and path[len(self.VMS):-1] in self.host._by_name:
            return sorted(self.host.vm(path[len(self.VMS):-1]).counters())
        raise FileNotFoundError(f"{path}: no such directory")

    def read(self, path: str) -> str:
        if path.startswith(self.KSM):
            counters = self._ksm().counters()
            name = path[len(self.KSM):]
        elif path.startswith(self.VMS):
            vm_name, _, name = path[len(self.VMS):].partition("/")
            if vm_name not in self.host._by_name:
                raise FileNotFoundError(f"{path}: no such VM {vm_name!r}")
            counters = self.host.vm(vm_name).counters()
        elif path.startswith(self.HVSIM):
            counters = self.host.counters()
            name = path[len(self.HVSIM):]
        else:
            raise FileNotFoundError(f"{path}: no such file")
        if name not in counters:
            raise FileNotFoundError(f"{path}: no such file")
        return f"{counters[name]}\n"

    def write(self, path: str, text: str) -> None:
        name = path[len(self.KSM):] if path.startswith(self.KSM) else None
        if name not in _KSM_WRITABLE:
            raise PermissionError(f"{path}: not writable")
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"{path}: invalid value {text.strip()!r}") from None
        lo, hi = _KSM_WRITABLE[name]
        if not lo <= value <= hi:
            raise ValueError(f"{path}: must be between {lo} and {hi}, got {value}")
        ksm = self._ksm()
        if name == "max_page_sharing" and ksm.pages_shared:
            raise OSError(f"{path}: busy (stable pages exist)")  # -EBUSY, as Linux
        setattr(ksm, name, bool(value) if name in ("use_zero_pages", "smart_scan") else value)

