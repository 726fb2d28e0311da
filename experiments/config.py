"""The experiment schema: TOML read with tomllib, validated by pydantic v2 models.

Every model forbids unknown keys, every field has a default (written back, so a run
folder's config.toml is the complete configuration that was simulated), a unit and a
one-line description. Sizes take units ("512MiB"), durations too ("20ms", "10min");
both are kept as canonical strings and read back in bytes/seconds through the helpers
`size()` and `seconds()`.

A bad config yields one line per problem, naming the key path and the reason:

    vm[1].memory: must be a size like "512MiB", got 'lots'

Dotted keys address fields for sweeps: "host.memory", "host.sharing.salting",
"vm[0].count", "vm[web].workload.profile" (a VM by name).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from guestkernel.config import ARCHES, ERAS
from guestkernel.units import format_size, parse_duration, parse_size, whole_pages

from .content import IMAGES

# --------------------------------------------------------------------------- units


def _size(value: Any) -> str:
    try:
        return format_size(parse_size(value, "size"))
    except ValueError:
        raise ValueError(f'must be a size like "512MiB", got {value!r}') from None


def _memory(value: Any) -> str:
    text = _size(value)
    whole_pages(parse_size(text), value)  # ValueError: the line names MiB/GiB
    return text


def _duration(value: Any) -> str:
    try:
        seconds = parse_duration(value, "duration")
    except ValueError:
        raise ValueError(f'must be a duration like "20ms", got {value!r}') from None
    return _format_seconds(seconds)


def _format_seconds(seconds: float) -> str:
    """Shortest exact spelling: 60 -> "60s", 0.02 -> "20ms", 3600 -> "1h", 5.7e-6 -> "5.7us"."""
    if seconds == 0:
        return "0s"
    best = None
    for unit, mult in (("h", 3600.0), ("min", 60.0), ("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
        text = f"{seconds / mult:.9g}{unit}"
        if "e" in text:
            continue
        if abs(parse_duration(text) - seconds) <= 1e-12 * seconds and (best is None or len(text) < len(best)):
            best = text
    return best or f"{seconds!r}s"


def _size_or_percent(value: Any) -> str:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            pct = float(value.strip()[:-1])
        except ValueError:
            raise ValueError(f'must be a size like "512MiB" or a percentage like "60%", got {value!r}') from None
        if not 0 <= pct <= 100:
            raise ValueError(f"percentage must be between 0 and 100, got {value!r}")
        return f"{pct:g}%"
    try:
        return _size(value)
    except ValueError:
        raise ValueError(f'must be a size like "512MiB" or a percentage like "60%", got {value!r}') from None


def _auto_int(value: Any) -> str | int:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'must be an integer or "auto", got {value!r}')
    return value


def _auto_bool(value: Any) -> str | bool:
    if value == "auto" or isinstance(value, bool):
        return value
    raise ValueError(f'must be true, false or "auto", got {value!r}')


Size = Annotated[str, BeforeValidator(_size)]
Memory = Annotated[str, BeforeValidator(_memory)]  # a size of whole 4 KiB pages
Duration = Annotated[str, BeforeValidator(_duration)]
SizeOrPercent = Annotated[str, BeforeValidator(_size_or_percent)]
AutoInt = Annotated[str | int, BeforeValidator(_auto_int)]
AutoBool = Annotated[bool | str, BeforeValidator(_auto_bool)]


def size(text: str) -> int:
    """Bytes of a validated size string."""
    return parse_size(text)


def seconds(text: str) -> float:
    """Seconds of a validated duration string."""
    return parse_duration(text)


def size_of(text: str, whole: int) -> int:
    """Bytes of a size-or-percentage string, percentages taken of `whole` bytes."""
    if text.endswith("%"):
        return int(whole * float(text[:-1]) / 100) // 4096 * 4096
    return parse_size(text)


def _given_path(path: str, info: ValidationInfo) -> Path | None:
    """`path` resolved against the config file's folder when the caller gave one
    (validation context {"base_dir": ...}); None: no file checks (a config built in code,
    or a run's resolved config inside a sweep worker, which names the file if it fails)."""
    base = (info.context or {}).get("base_dir") if info is not None else None
    if base is None:
        return None
    p = Path(path).expanduser()
    return p if p.is_absolute() else Path(base) / p


def _check_policy(value: str, names: tuple[str, ...], method: str, what: str) -> str:
    """A policy named by dotted path must be one: a class with `method`, or a function
    annotated to return such a class. Importing the module runs its code (README)."""
    if value in names or ("." not in value and ":" not in value):
        if value not in names:
            raise ValueError(f"unknown policy {value!r}; one of {', '.join(names)} or a dotted path "
                             "(package.module.Class)")
        return value
    import importlib
    import inspect
    import typing

    mod, _, attr = value.replace(":", ".").rpartition(".")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except Exception as exc:  # ImportError, AttributeError, or the module failing to import
        raise ValueError(f"cannot load policy {value!r} ({type(exc).__name__}: {exc})") from None
    cls = obj
    if not inspect.isclass(obj) and callable(obj):
        try:  # a factory: its return annotation must be a policy class
            cls = typing.get_type_hints(obj).get("return")
        except Exception:
            cls = None
    if not (inspect.isclass(cls) and callable(getattr(cls, method, None))):
        raise ValueError(f"{value!r} is not a {what} policy: a dotted path must name a class with a "
                         f"{method}() method (see hypervisor/policy.py) or a function annotated to return one")
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, validate_default=True)


# --------------------------------------------------------------------------- experiment


class ExperimentSection(_Model):
    name: str = Field("experiment", description="name of the experiment, used for the output folder")
    duration: Duration = Field("60s", description="simulated time to run")
    seed: int = Field(0, ge=0, description="seed of every random stream (derived per component)")
    sample_interval: Duration = Field("1s", description="simulated time between two samples")
    baseline: bool = Field(False, description="also run the same VMs on a host with enough memory and no "
                           "reclamation, and report each VM's slowdown against it")


class OutputSection(_Model):
    dir: str = Field("runs/{name}", description="run folder; {name} is the experiment name")
    plots: bool = Field(True, description="write PNG plots with the report")


# --------------------------------------------------------------------------- host


class HostSwapSection(_Model):
    size: Size = Field("4GiB", description="host swap device size")
    latency: Duration = Field("100us", description="device latency per page read or written "
                              "(100us: an SSD; a rotating disk takes 5-12ms)")
    bandwidth: Size = Field("500MiB", description="device bandwidth, bytes per second")
    victim_policy: str = Field("random", description='"random" (ESX), "access-bits" or a dotted path')
    avoid_false_reads: bool = Field(False, description="VSwapper: whole-page writes skip the swap read")
    reclaim_batch: int = Field(64, ge=1, description="frames freed per synchronous reclaim")
    reclaim_rate: int = Field(25600, ge=1, description="frames per second the monitor may evict")
    swapout_cost: Duration = Field("3us", description="host CPU per page written to swap (unmapping the frame, "
                                   "building and submitting the request); hvsim's assumption, no published figure")

    @field_validator("victim_policy")
    @classmethod
    def _victims(cls, value: str) -> str:
        from hypervisor.policy import VICTIM_POLICIES

        return _check_policy(value, tuple(VICTIM_POLICIES), "choose", "victim")


class HostSharingSection(_Model):
    enabled: bool = Field(True, description="run the page-sharing scanner")
    pages_to_scan: int = Field(100, ge=1, description="pages per scanner batch (KSM pages_to_scan)")
    sleep: Duration = Field("20ms", description="time between batches (KSM sleep_millisecs)")
    max_page_sharing: int = Field(256, ge=2, description="mappings per stable frame")
    use_zero_pages: bool = Field(False, description="map zero pages to the host zero page")
    smart_scan: bool = Field(True, description="skip pages that keep failing to merge")
    salting: Literal["none", "per-vm"] = Field(
        "none", description='"none": inter-VM sharing (KSM); "per-vm": only within a VM (ESXi)')
    hash_cost: Duration = Field("1us", description="scanner CPU per page checksummed")
    compare_cost: Duration = Field("500ns", description="scanner CPU per full byte compare")
    control: Literal["none", "ksmtuned", "mom", "advisor"] = Field(
        "none", description='who tunes run, pages_to_scan and sleep: "none" (the values above), '
        '"ksmtuned" (Debian, every 60 s), "mom" (oVirt, every 10 s), "advisor" (Linux 6.7+ scan-time advisor)')


class HostCompressionSection(_Model):
    enabled: bool = Field(True, description="compress pages chosen for eviction before swapping")
    level: int = Field(3, ge=-7, le=22, description="zstd level")
    threshold: int = Field(2048, ge=1, le=2048, description="bytes: a page is kept only if it compresses this small")
    quarter: int = Field(1024, ge=1, le=2048, description="bytes: quarter-page slot at or below this")
    max_pct: float = Field(10, ge=0, le=100, description="cache capacity, percent of each VM's memory")
    compress_cost: Duration = Field("5.7us", description="CPU per page compressed")
    decompress_cost: Duration = Field("1.5us", description="CPU per page decompressed")


class HostBalloonSection(_Model):
    enabled: bool = Field(True, description="run the balloon controller")
    policy: str = Field("esx-shares", description='"esx-shares", "mom" or a dotted path')
    max_pct: float = Field(65, ge=0, le=100, description="cap, percent of VM memory (Mem.CtlMaxPercent)")
    idle_tax: float = Field(75, ge=0, lt=100, description="idle memory tax, percent (esx-shares)")
    sample_pages: int = Field(100, ge=1, description="frames sampled per VM per period (esx-shares)")
    sample_period: Duration = Field("60s", description="active-memory sampling period (Mem.SamplePeriod)")
    interval: Duration = Field("1s", description="controller period")
    rate: int = Field(25600, ge=1, description="guest driver pages per second")
    deflate_on_oom: bool = Field(False, description="virtio DEFLATE_ON_OOM: give back 256 pages per guest OOM")
    stats_interval: Duration = Field("5s", description="how often the host polls the guests' balloon stats queue")
    inflate_cost: Duration = Field("4us", description="host CPU per page inflated: QEMU discards it with "
                                   "madvise(MADV_DONTNEED), 4.05us measured on Linux 6.18 (tests/data/hostcpu)")
    deflate_cost: Duration = Field("1.8us", description="host CPU per page deflated: QEMU's madvise(MADV_WILLNEED), "
                                   "1.83us measured on Linux 6.18 (tests/data/hostcpu)")
    fast_gain: float = Field(0.5, gt=0, le=1, description="gain of the fast moving average of sampled active "
                             "memory (esx-shares); not published (Waldspurger 2002 s5.3 names a fast and a slow "
                             "average only): hvsim's assumption")
    slow_gain: float = Field(0.1, gt=0, le=1, description="gain of the slow moving average of sampled active "
                             "memory (esx-shares); not published: hvsim's assumption")
    free_page_reporting: bool = Field(
        False, description="virtio REPORTING: guests report free 2 MiB blocks, the host discards them")

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        from hypervisor.policy import BALLOON_POLICIES

        return _check_policy(value, tuple(BALLOON_POLICIES), "targets", "balloon")


class HostSection(_Model):
    memory: Memory = Field("4GiB", description="machine memory")
    cpus: int = Field(4, ge=1, le=4096, description="physical CPUs, shared by the VMs' vCPUs and the host's own "
                      "work (ksmd, compression, zeroing)")
    cpu_quantum: Duration = Field("50ms", description="time slice of a normal-shares vCPU when CPUs are short: "
                                  "vCPUs take turns round robin (ESX's default quantum, The CPU Scheduler in "
                                  "VMware vSphere 5.1)")
    min_free: str = Field("auto", description='ESXi minFree: "auto" (a sliding scale of 6 / 4 / 2 % over the '
                          'first 4 / 8 / 16 GB, 899 MB at 28 GB, + 1 % above) or a size')
    large_pages: bool = Field(False, description="back guest memory with 2 MiB machine pages where a whole 2 MiB "
                              "region is first touched (a large page holds its 2 MiB from then on) and a wholly free "
                              "aligned 2 MiB of machine memory is left (machine memory is then 2 MiB regions that "
                              "fragment); ESX also needs free memory to stay at or above 400 % of minFree (an "
                              "assumption: VMware publishes that large pages are broken below it), KVM above minFree")
    kind: Literal["esx", "kvm"] = Field(
        "esx", description='whose host: "esx" (large pages never shared, hashes kept ready, broken by a background '
        'job below 400 % of minFree; host threads and vCPUs by CPU shares; each VM\'s swap file reserved at '
        'power-on, a VM whose swap file does not fit not powered on) or "kvm" (host THP under MADV_HUGEPAGE: KSM '
        'splits one when a subpage merges, zero-filled subpages then read the shared zero page, no breaking for '
        'free memory, khugepaged collapses ranges back; CFS weights; no swap reservation: with memory and swap '
        'exhausted the host OOM killer kills '
        'the VM with the highest oom_score)')
    large_page_fault_cost: Duration = Field(
        "100us", description="first touch backed by a large page: one EPT violation and zeroing 2 MiB "
        "(assumption: 2 MiB cleared at ~20 GB/s)")
    large_page_break_rate: int = Field(
        1000, ge=1, description="large pages ESX's background job breaks per second (assumption: not published)")
    large_page_break_cost: Duration = Field(
        "40us", description="host CPU per large page broken: 512 entries remapped and a TLB shootdown (assumption)")
    large_page_tlb_discount: float = Field(
        0.05, ge=0, lt=1, description="fraction of a guest's CPU time saved on the share of its memory under "
        "host large pages (fewer 2-D page walks; assumption: VMware's large-page studies report a few percent "
        "to ~10 % for memory-intensive workloads, not checked here)")
    khugepaged: bool = Field(True, description='kind "kvm" with large_pages: the host\'s khugepaged collapses '
                             "guest RAM (QEMU's MADV_HUGEPAGE VMA) back into huge pages when a 2 MiB machine region "
                             "is free (the keys below are the host's /sys/kernel/mm/transparent_hugepage/khugepaged)")
    khugepaged_pages_to_scan: int = Field(4096, ge=1, description="host khugepaged/pages_to_scan: PTEs per wake-up")
    khugepaged_scan_sleep_millisecs: int = Field(10000, ge=0, description="host khugepaged/scan_sleep_millisecs, ms")
    khugepaged_alloc_sleep_millisecs: int = Field(60000, ge=0, description="host khugepaged/alloc_sleep_millisecs, "
                                                  "ms after a failed huge page allocation")
    khugepaged_max_ptes_none: int = Field(511, ge=0, le=511, description="host khugepaged/max_ptes_none: empty, "
                                          "zero-page or ballooned PTEs a collapse may fill with zeroed memory")
    khugepaged_max_ptes_swap: int = Field(64, ge=0, le=511, description="host khugepaged/max_ptes_swap: swapped "
                                          "or compressed PTEs a collapse swaps in")
    khugepaged_max_ptes_shared: int = Field(256, ge=0, le=511, description="host khugepaged/max_ptes_shared: "
                                            "PTEs of pages mapped more than once (KSM pages)")
    thp_defrag: Literal["always", "defer", "defer+madvise", "madvise", "never"] = Field(
        "madvise", description='kind "kvm" with large_pages: the host\'s /sys/kernel/mm/transparent_hugepage/defrag. '
        "A THP fault of guest RAM (MADV_HUGEPAGE) that finds no free 2 MiB machine region compacts machine memory "
        'directly, the faulting vCPU stalled for the copies ("always", "madvise", "defer+madvise"), wakes '
        'kcompactd and falls back to small pages ("defer"), or only falls back ("never"). An ESX host does not '
        "compact (hypervisor/compaction.py)")
    khugepaged_defrag: bool = Field(True, description="host khugepaged/defrag: khugepaged's huge page allocation "
                                    "compacts machine memory directly when no 2 MiB region is free")
    compaction_proactiveness: int = Field(20, ge=0, le=100, description='kind "kvm" with large_pages: the '
                                          "host's vm.compaction_proactiveness; kcompactd compacts every 500 ms "
                                          "while the fragmentation score is above 100 - it + 10 (0: only when woken)")
    extfrag_threshold: int = Field(500, ge=0, le=1000, description='kind "kvm" with large_pages: the host\'s '
                                   "vm.extfrag_threshold; a THP allocation compacts only when the fragmentation "
                                   "index (0: lack of memory .. 1000: fragmentation) is above it")
    compact_scan_cost: Duration = Field("3.55ns", description="host CPU per page a compaction scanner visits "
                                        "(one 64-byte struct page read, where a copy reads and writes 4 KiB: "
                                        "page_copy_cost x 64 / 8192)")
    fault_cost: Duration = Field("2us", description="first touch of a frame")
    cow_cost: Duration = Field("3us", description="write to a shared frame (copy)")
    page_copy_cost: Duration = Field("455ns", description="guest CPU per 4 KiB page a guest kernel copies "
                                     "(copy_highpage: compaction's migrations, khugepaged's collapses, "
                                     "copy-on-write in the guest), on the guest's vCPU; measured on this "
                                     "machine with page_zero_cost (tests/data/hostcpu/page_costs.json)")
    page_zero_cost: Duration = Field("238ns", description="guest CPU per 4 KiB page a guest kernel zeroes "
                                     "(clear_page: __GFP_ZERO, init_on_alloc and init_on_free allocations "
                                     "and frees, THP faults, the empty slots a khugepaged collapse fills), "
                                     "on the guest's vCPU; measured on this machine with page_copy_cost "
                                     "(tests/data/hostcpu/page_costs.json)")
    nomem_stall: Duration = Field("1ms", description="wait of an allocation nothing could be reclaimed for")
    low_state_stall: Duration = Field("1ms", description="wait of every allocation in the low state")
    state_interval: Duration = Field("1s", description="memory-state monitor period")
    admission_control: bool = Field(
        True, description='kind "esx": reserve each VM\'s swap file (its configured memory) on host swap at '
        'power-on and refuse to power on a VM whose file does not fit, as ESX always does; false: power on '
        'whatever the swap (machine memory may then be overdrawn, reported); no effect on "kvm"')
    guest_disk: Literal["separate", "swap"] = Field(
        "separate", description='what serves the guests\' disks (guest swap, file reads, writeback): "separate" '
        '(each guest its own disk, [vm.kernel] swap_latency/swap_bandwidth) or "swap" (queued on the host swap device)')
    swap: HostSwapSection = Field(default_factory=HostSwapSection)
    sharing: HostSharingSection = Field(default_factory=HostSharingSection)
    compression: HostCompressionSection = Field(default_factory=HostCompressionSection)
    balloon: HostBalloonSection = Field(default_factory=HostBalloonSection)

    @model_validator(mode="after")
    def _check(self) -> HostSection:
        if self.min_free != "auto":
            self.__dict__["min_free"] = _size(self.min_free)
        if self.compression.quarter > self.compression.threshold:
            raise ValueError("compression.quarter must not exceed compression.threshold")
        return self


# --------------------------------------------------------------------------- guests


class KernelSection(_Model):
    arch: Literal[ARCHES] = Field("x86_64", description='"x86_64" (DMA/DMA32/Normal) or "i386" (DMA/Normal/HighMem)')
    cpus: int = Field(1, ge=1, le=1024, description="virtual CPUs")
    nodes: int = Field(1, ge=1, le=64, description="NUMA nodes")
    era: Literal[ERAS] = Field("6.x", description='watermark formulas: "6.x" or "2.6"')
    swap: Size = Field("1GiB", description="guest swap device size")
    swap_latency: Duration = Field("80us", description="guest swap device latency per page")
    swap_bandwidth: Size = Field("500MiB", description="guest swap device bandwidth, bytes per second")
    swap_rotational: bool = Field(
        True, description="the guest swap device reports queue/rotational 1 (a virtio-blk disk does): no swap "
        "clusters, so a THP is split before swap-out; false (an SSD): a THP is swapped out whole (thp_swpout)")
    nr_requests: AutoInt = Field(
        "auto", description="the guest disks' queue/nr_requests: requests in flight per device queue (swap area, "
        "file system) before a submitter sleeps for a tag; \"auto\": 256 for 6.x (blk-mq, mq-deadline over "
        "virtio-blk's 128 tags, as measured), 128 for 2.6; 0: unlimited")
    max_sectors_kb: AutoInt = Field(
        "auto", description="the guest disks' queue/max_sectors_kb: KiB a request holds at most (adjacent bios "
        "merge up to it, in the task's block plug); \"auto\": 1280 for 6.x (6.1's BLK_DEF_MAX_SECTORS), 512 "
        "for 2.6")
    swappiness: int = Field(60, ge=0, le=200, description="vm.swappiness")
    overcommit_memory: int = Field(0, ge=0, le=2, description="vm.overcommit_memory: 0 heuristic, 1 always, 2 strict")
    overcommit_ratio: int = Field(50, ge=0, description="vm.overcommit_ratio, percent")
    min_free_kbytes: AutoInt = Field("auto", description='vm.min_free_kbytes, KiB, or "auto" (computed as Linux does)')
    watermark_scale_factor: int = Field(10, ge=1, le=3000, description="vm.watermark_scale_factor")
    watermark_boost_factor: int = Field(
        15000, ge=0, description="vm.watermark_boost_factor: after a fallback steals from another "
        "migratetype's pageblock, watermarks rise by a pageblock, up to this many 1/10000 of HIGH, and "
        "kswapd reclaims the boost without writeback or swap (6.x; 0: off)")
    compaction_proactiveness: int = Field(
        20, ge=0, le=100, description="vm.compaction_proactiveness: every 500 ms kcompactd compacts a node "
        "whose fragmentation score (percent of free memory in blocks below the huge page order, zones "
        "weighted by size) is above min(max(100 - this, 5) + 10, 100), down to max(100 - this, 5) (6.x; 0: off)")
    panic_on_oom: int = Field(0, ge=0, le=2, description="vm.panic_on_oom")
    oom_kill_allocating_task: int = Field(0, ge=0, le=1, description="vm.oom_kill_allocating_task")
    dirty_ratio: int = Field(20, ge=0, le=100, description="vm.dirty_ratio, percent")
    dirty_background_ratio: int = Field(10, ge=0, le=100, description="vm.dirty_background_ratio, percent")
    dirty_bytes: Size = Field(
        "0", description="vm.dirty_bytes: dirty memory at which writers are throttled, replacing dirty_ratio "
        "(which then reads 0); 0: dirty_ratio applies; at least 8KiB otherwise (6.x)")
    dirty_background_bytes: Size = Field(
        "0", description="vm.dirty_background_bytes: dirty memory at which the flusher starts, replacing "
        "dirty_background_ratio (which then reads 0); 0: the ratio applies (6.x)")
    dirty_expire_centisecs: int = Field(3000, ge=0, description="vm.dirty_expire_centisecs")
    page_cluster: int = Field(3, ge=0, le=31, description="vm.page-cluster: log2 of swap readahead pages")
    read_ahead_kb: int = Field(
        128, ge=0, le=1 << 20, description="the guest disk's read_ahead_kb: largest file readahead window, KiB")
    randomize_va_space: int = Field(
        2, ge=0, le=2, description="kernel.randomize_va_space (ASLR): 2 brk and mmap (Linux >= 2.6.12), "
        "1 mmap only, 0 none (Linux 2.4, Windows before Vista): equal data then has equal pointers in every VM")
    kaslr: bool | Literal["auto"] = Field(
        "auto", description='kernel address space layout randomisation (KASLR; false: the nokaslr boot option): '
        'the kernel image and its memory regions move by a per-boot offset, so identical VMs hold different '
        'kernel pointers; "auto": on for 6.x x86_64, off for 2.6 and i386')
    distro: Literal["none", "auto", "debian-12"] = Field(
        "auto", description='whose kernel reserves memory at boot: "auto" (the image\'s kernel where hvsim has '
        'measured it, x86_64 6.x: debian-12; else "none"), "none" (the kernel image and memmap only), '
        '"debian-12" (Debian 12\'s 6.1 kernel, measured: MemTotal as that guest shows, x86_64 6.x only)')
    thp_enabled: Literal["auto", "always", "madvise", "never"] = Field(
        "auto", description="/sys/kernel/mm/transparent_hugepage/enabled: which anonymous memory gets 2 MiB pages "
        '(x86_64 6.x guests only); "auto": as the image\'s distribution ships it (CentOS 7 and Debian 12 '
        'always, as their kernels are built; Ubuntu and other Linux images madvise; Windows never)')
    thp_defrag: Literal["auto", "always", "defer", "defer+madvise", "madvise", "never"] = Field(
        "auto", description="transparent_hugepage/defrag: whether a huge page fault may reclaim and compact "
        '(always, or madvised VMAs only with madvise); "auto": CentOS 7 always, the others madvise')
    thp_use_zero_page: bool = Field(True, description="transparent_hugepage/use_zero_page: a read fault maps "
                                    "the huge zero page")
    thp_shmem_enabled: Literal["always", "within_size", "advise", "never", "deny", "force"] = Field(
        "never", description="transparent_hugepage/shmem_enabled: which shmem of the internal mount (shared "
        "anonymous mappings, SysV shm) gets 2 MiB folios: always; within_size (the whole 2 MiB inside the "
        "size); advise (MADV_HUGEPAGE); never (Linux's default); deny and force override every mount")
    read_only_thp_for_fs: bool = Field(False, description="CONFIG_READ_ONLY_THP_FOR_FS: khugepaged collapses "
                                       "read-only executable mappings of regular files (program text) into 2 MiB "
                                       "page-cache folios, mapped by one PMD (x86_64 6.x guests); off as Debian "
                                       "12's 6.1 kernel builds it")
    tmpfs_mounts: list[str] = Field(
        ["/dev/shm mode=1777,nosuid,nodev,strictatime"], description='tmpfs mounts made at boot, each '
        '"MOUNT_POINT OPTIONS" with mount -o\'s options: size= (bytes, k/m/g suffixes, or a percentage of RAM; '
        'default half of RAM), nr_inodes=, huge= (never, always, within_size, advise: huge folios for the '
        'mount\'s files, 6.x x86_64 only), mode=, nosuid, nodev, noexec; files created under a mount point are '
        'tmpfs files (swap-backed, counted in Shmem; a write past size= fails with ENOSPC); the default is '
        '/dev/shm as systemd mounts it')
    khugepaged_pages_to_scan: int = Field(4096, ge=1, description="khugepaged/pages_to_scan: pages per wake-up")
    khugepaged_scan_sleep_millisecs: int = Field(10000, ge=0, description="khugepaged/scan_sleep_millisecs, ms")
    khugepaged_alloc_sleep_millisecs: int = Field(60000, ge=0, description="khugepaged/alloc_sleep_millisecs, "
                                                  "ms after a failed huge page allocation")
    khugepaged_max_ptes_none: int = Field(511, ge=0, le=511, description="khugepaged/max_ptes_none: empty PTEs "
                                          "a collapse may fill with zeroed memory")
    khugepaged_max_ptes_swap: int = Field(64, ge=0, le=511, description="khugepaged/max_ptes_swap")
    khugepaged_max_ptes_shared: int = Field(256, ge=0, le=511, description="khugepaged/max_ptes_shared")
    init_on_alloc: AutoBool = Field(
        "auto", description="init_on_alloc=1: every page and slab object zeroed when allocated (the balloon's "
        'pages too: each never-touched one costs a host fault); "auto": as the guest\'s kernel is built, on for '
        "distro debian-12 (CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y in Debian 12's 6.1), off for distro none")
    init_on_free: bool = Field(False, description="init_on_free=1: every page and slab object zeroed when freed "
                               "(free memory holds zeros, not its last use's bytes); Windows images always do")
    memcg_stats_flush: Literal["6.1", "6.8"] = Field(
        "6.1", description='6.x guests: how the memory cgroup statistics reclaim reads are flushed: "6.1" (Debian '
        "12's kernel: reclaim's prepare_scan_count flushes once about num_online_cpus batches of 64 updates are "
        'pending) or "6.8" (6.8 and later: reclaim\'s flush is ratelimited, its statistics up to 2 s old)')
    cgroup_version: Literal[1, 2] = Field(
        2, description="6.x guests: the cgroup hierarchy mounted: 2 (unified, /sys/fs/cgroup; Debian 12's "
        "default) or 1 (the memory controller's own, /sys/fs/cgroup/memory: cgroup v1 reclaim waits on "
        "writeback)")

    @field_validator("tmpfs_mounts")
    @classmethod
    def _tmpfs(cls, value: list[str], info: ValidationInfo) -> list[str]:
        from guestkernel.mount import check_tmpfs_mounts

        d = info.data
        try:
            check_tmpfs_mounts(value, d.get("era") == "6.x" and d.get("arch") == "x86_64")
        except ValueError as exc:
            raise ValueError(str(exc).removeprefix("tmpfs_mounts: ")) from None
        return value

    def kernel_kwargs(self) -> dict:
        d = self.model_dump()
        d["min_free_kbytes"] = None if d["min_free_kbytes"] == "auto" else d["min_free_kbytes"]
        d["nr_requests"] = None if d["nr_requests"] == "auto" else d["nr_requests"]
        d["max_sectors_kb"] = None if d["max_sectors_kb"] == "auto" else d["max_sectors_kb"]
        d["kaslr"] = None if d["kaslr"] == "auto" else d["kaslr"]
        d["init_on_alloc"] = None if d["init_on_alloc"] == "auto" else d["init_on_alloc"]
        # user-space layout: the workloads' content reads it (KernelConfig.extra)
        d["extra"] = {"randomize_va_space": d.pop("randomize_va_space")}
        return d


_INPUT = ("the data set the workload runs on (a benchmark's input, a site's documents, a database's "
          "tables): VMs naming the same input compute the same data; \"\": the VM's own data")
_PAGE_CACHE = "image files (libraries, programs, data) read at boot, kept in the page cache"


_CPU_UTIL = ("fraction of a burst's full-speed time spent running on a vCPU (the rest the process "
             "waits off-CPU, e.g. for its next request); with more runnable work than vCPUs or host "
             "CPUs, bursts queue and throughput falls")


class IdleParams(_Model):
    profile: Literal["idle"] = "idle"
    cpu_util: float = Field(1.0, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    daemons: int = Field(8, ge=0, description="background processes")
    daemon_rss: Size = Field("4MiB", description="anonymous memory each daemon touches at start")
    wake_interval: Duration = Field("5s", description="mean time between a daemon's wake-ups")
    wake_touch: Size = Field("64KiB", description="memory a daemon touches per wake-up")
    page_cache: Size = Field("64MiB", description=_PAGE_CACHE)


class WebserverParams(_Model):
    profile: Literal["webserver"] = "webserver"
    cpu_util: float = Field(0.1, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    page_cache: Size = Field("0B", description=_PAGE_CACHE)
    workers: int = Field(8, ge=1, description="pre-forked worker processes")
    shared_heap: Size = Field("48MiB", description="heap built before forking, shared copy-on-write")
    worker_heap: Size = Field("16MiB", description="each worker's private heap")
    docroot: Size = Field("128MiB", description="static files served from the page cache")
    sendfile: bool = Field(True, description="send files with sendfile() straight from the page cache (nginx's "
                           "`sendfile on`, as Debian ships it); false: read() them into a user buffer (two copies)")
    request_rate: float = Field(200.0, gt=0, description="requests per second, all workers")
    request_touch: Size = Field("128KiB", description="memory a request touches")
    burst_interval: Duration = Field("100ms", description="time between request bursts")


class DatabaseParams(_Model):
    profile: Literal["database"] = "database"
    cpu_util: float = Field(0.5, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    page_cache: Size = Field("0B", description=_PAGE_CACHE)
    buffer_pool: SizeOrPercent = Field("50%", description="buffer pool size, or percent of VM memory")
    zipf_s: float = Field(1.1, gt=0, description="Zipf exponent of page popularity")
    ops_rate: float = Field(2000.0, gt=0, description="page accesses per second")
    write_fraction: float = Field(0.2, ge=0, le=1, description="fraction of accesses that write")
    data_file: Size = Field("512MiB", description="table file size (page cache, dirty writeback)")
    burst_interval: Duration = Field("100ms", description="time between access bursts")


class DbenchParams(_Model):
    profile: Literal["dbench"] = "dbench"
    cpu_util: float = Field(1.0, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    page_cache: Size = Field("0B", description=_PAGE_CACHE)
    clients: int = Field(40, ge=1, description="dbench clients (dbench N), each a process with its own files")
    file_set: Size = Field("24MiB", description="each client's files, on the guest's disk at start (dbench "
                           "4.0's client.txt: a client's live files reach 24.2 MB)")
    hot_set: Size = Field("3.5MiB", description="the part of a client's files that takes hot_reads of its reads "
                          "(client.txt: 95 % of the 4 KiB pages read fall in 899 pages)")
    hot_reads: float = Field(0.95, ge=0, le=1, description="fraction of reads in the hot set (the rest: "
                             "uniform over the other files)")
    temp_set: Size = Field("4MiB", description="a client's written files, a ring of 1 MiB files each unlinked "
                           "and created anew when the writes come round to it (client.txt: a written page is "
                           "overwritten or unlinked after 1.2-4.3 MB of the client's writes)")
    read_fraction: float = Field(0.76, ge=0, le=1, description="reads among data operations (client.txt: "
                                 "124 199 ReadX, 39 502 WriteX)")
    read_size: Size = Field("12KiB", description="bytes per read (client.txt: 11.9 kB a ReadX)")
    write_size: Size = Field("24KiB", description="bytes per write (client.txt: 25.7 kB a WriteX)")
    op_cpu: Duration = Field("100us", description="CPU per data operation, its share of the metadata "
                             "operations (open, stat, find, close: 1.8 per data operation) included")
    burst_ops: int = Field(16, ge=1, description="operations a client runs between two timeouts")


class CompileParams(_Model):
    profile: Literal["compile"] = "compile"
    cpu_util: float = Field(1.0, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    page_cache: Size = Field("0B", description=_PAGE_CACHE)
    jobs: int = Field(2, ge=1, description="parallel compiler processes")
    process_rss: Size = Field("64MiB", description="memory each compiler process touches")
    process_lifetime: Duration = Field("2s", description="lifetime of one compiler process")
    sources: Size = Field("256MiB", description="source tree read through the page cache")
    objects: Size = Field("64MiB", description="object files written per build")


class JvmParams(_Model):
    profile: Literal["jvm"] = "jvm"
    cpu_util: float = Field(1.0, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    page_cache: Size = Field("0B", description=_PAGE_CACHE)
    heap: SizeOrPercent = Field("50%", description="-Xmx: heap reserved and zeroed up front")
    allocation_rate: Size = Field("64MiB", description="bytes allocated per second")
    live_fraction: float = Field(0.3, ge=0, le=1, description="fraction of the heap live after a GC")
    gc_interval: Duration = Field("10s", description="time between collections")


class MemhogParams(_Model):
    profile: Literal["memhog"] = "memhog"
    cpu_util: float = Field(1.0, ge=0, le=1, description=_CPU_UTIL)
    input: str = Field("", description=_INPUT)
    page_cache: Size = Field("0B", description=_PAGE_CACHE)
    size: SizeOrPercent = Field("90%", description="memory to allocate and touch")
    rate: Size = Field("256MiB", description="bytes touched per second")
    content: str = Field("memhog", description="data profile of the written pages (e.g. encrypted)")
    stop_after: Duration = Field("0s", description="free everything after this long (0: hold until the end)")


class TraceParams(_Model):
    profile: Literal["trace"] = "trace"
    cpu_util: float = Field(1.0, ge=0, le=1, description=_CPU_UTIL)
    path: str = Field(..., description="strace log to replay (strace -f -y, with the -e line of hvsim replay)")
    speed: float = Field(1.0, gt=0, description="time scale: 2.0 replays twice as fast")
    touch: bool = Field(True, description="touch mapped anonymous memory as the program would")
    root: bool = Field(False, description="start the traced program as uid 0 with every capability, "
                       "as one traced by root (hvsim replay --root)")

    @field_validator("path")
    @classmethod
    def _trace_file(cls, value: str, info: ValidationInfo) -> str:
        p = _given_path(value, info)
        if p is not None and not p.is_file():
            raise ValueError(f"no such trace file {str(p)!r}" if not p.exists() else f"{str(p)!r} is not a file")
        if p is not None:
            try:
                with open(p, "rb"):
                    pass
            except OSError as exc:
                raise ValueError(f"cannot open trace file {str(p)!r} ({exc.strerror or exc})") from None
        return value


class SnapshotsParams(_Model):
    profile: Literal["snapshots"] = "snapshots"
    path: str = Field(..., description="memory series to follow: an hvsim capture (--count N), or a raw or "
                      "ELF dump; the VM has no guest kernel and as many frames as the series' mappings")
    speed: float = Field(1.0, gt=0, description="time scale: 2.0 replays the series twice as fast")
    loop: bool = Field(False, description="start the series again after its last snapshot")


Workload = Annotated[
    IdleParams | WebserverParams | DatabaseParams | DbenchParams | CompileParams | JvmParams | MemhogParams
    | TraceParams | SnapshotsParams,
    Field(discriminator="profile"),
]

WORKLOAD_MODELS = {m.model_fields["profile"].default: m for m in (
    IdleParams, WebserverParams, DatabaseParams, DbenchParams, CompileParams, JvmParams, MemhogParams,
    TraceParams, SnapshotsParams)}


SHARE_LEVELS = {"low": 5, "normal": 10, "high": 20}  # ESX shares per MiB of VM memory
CPU_SHARE_LEVELS = {"low": 500, "normal": 1000, "high": 2000}  # ESX CPU shares per vCPU


class RootfsImage(_Model):
    rootfs: str = Field(..., min_length=1, description="a directory or tar archive (an OCI/Docker layer) "
                        "whose files the guest reads, real bytes read lazily")


class VMSection(_Model):
    name: str = Field(..., min_length=1, description="VM name; with count > 1 instances are name-1 .. name-N")
    count: int = Field(1, ge=1, le=1024, description="identical instances")
    memory: Memory = Field("1GiB", description="guest memory")
    image: str | RootfsImage = Field(
        "debian-12", description=f"guest OS image: {', '.join(IMAGES)}, \"none\", or "
        '{ rootfs = "PATH" }: a real root filesystem (directory or tar archive) as its files')
    image_file: str | None = Field(None, description="boot from a memory image file instead of a kernel: a raw dump, "
                                      "an ELF core file (QEMU dump-guest-memory, gcore, vmcore) or an hvsim capture")
    shares: str | int = Field(
        "normal", description='ESX memory shares: "low" (5/MiB), "normal" (10/MiB), "high" (20/MiB) or a number')
    cpu_shares: str | int = Field(
        "normal", description='ESX CPU shares: "low" (500 per vCPU), "normal" (1000), "high" (2000) or a number '
        "for the VM; CPU time divides in proportion when the host's CPUs are short")
    balloon: bool = Field(True, description="the guest runs a balloon driver")
    reservation: Memory = Field("0B", description="ESX memory reservation (sched.mem.min): machine memory the "
                                "VM is guaranteed; admission control reserves it (and a swap file of memory minus "
                                "it), ballooning and host swap never take the VM below it; kind \"esx\" only "
                                "(KVM has no reservations)")
    kernel: KernelSection = Field(default_factory=KernelSection)
    workload: Workload = Field(default_factory=IdleParams)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> VMSection:
        bad = []  # every problem of this VM, one line each
        if isinstance(self.shares, str) and self.shares not in SHARE_LEVELS:
            bad.append(f'shares: must be "low", "normal", "high" or a number, got {self.shares!r}')
        if isinstance(self.shares, int) and self.shares < 1:
            bad.append("shares: must be at least 1")
        if isinstance(self.cpu_shares, str) and self.cpu_shares not in CPU_SHARE_LEVELS:
            bad.append(f'cpu_shares: must be "low", "normal", "high" or a number, got {self.cpu_shares!r}')
        if isinstance(self.cpu_shares, int) and self.cpu_shares < 1:
            bad.append("cpu_shares: must be at least 1")
        if isinstance(self.image, RootfsImage):
            pass  # checked when the config's paths are resolved (resolve_paths)
        elif self.image not in IMAGES and self.image != "none":
            bad.append(f"image: unknown image {self.image!r}; one of {', '.join(IMAGES)} or \"none\"")
        path = _given_path(self.image_file, info) if self.image_file else None
        if path is not None:
            from hypervisor.vm import ImageError, image_pages

            try:
                nbytes = image_pages(path) * 4096
            except ImageError as exc:
                bad.append(f"image_file: {exc}")
            else:
                # the VM runs at the image's size: a memory set to anything else would be
                # reported but not simulated; left out, it is the image's size
                if "memory" not in self.model_fields_set:
                    self.__dict__["memory"] = format_size(nbytes)
                elif parse_size(self.memory) != nbytes:
                    bad.append(f"memory: {self.memory} but image_file {str(path)!r} holds {format_size(nbytes)} "
                               "(a VM booted from an image has the image's size: set memory to it or leave it out)")
        if size(self.reservation) > size(self.memory):
            bad.append(f"reservation: {self.reservation} is more than the VM's memory, {self.memory}")
        if bad:
            raise ValueError("\n".join(bad))
        return self

    def image_name(self) -> str:
        """The name OSImage.get takes: a synthetic image's, "rootfs:PATH" or "none"."""
        if isinstance(self.image, RootfsImage):
            return f"rootfs:{self.image.rootfs}"
        return self.image

    def cpu_share_count(self) -> float:
        """The VM's ESX CPU shares (a level counts per vCPU)."""
        if isinstance(self.cpu_shares, str):
            return CPU_SHARE_LEVELS[self.cpu_shares] * self.kernel.cpus
        return float(self.cpu_shares)

    def share_count(self) -> float:
        if isinstance(self.shares, str):
            return SHARE_LEVELS[self.shares] * size(self.memory) / (1 << 20)
        return float(self.shares)

    def instance_names(self) -> list[str]:
        if self.count == 1:
            return [self.name]
        return [f"{self.name}-{i}" for i in range(1, self.count + 1)]


class ExperimentConfig(_Model):
    experiment: ExperimentSection = Field(default_factory=ExperimentSection)
    host: HostSection = Field(default_factory=HostSection)
    vm: list[VMSection] = Field(default_factory=list, description="the VMs ([[vm]] tables)")
    output: OutputSection = Field(default_factory=OutputSection)

    @model_validator(mode="after")
    def _check(self) -> ExperimentConfig:
        if not self.vm:
            raise ValueError("vm: at least one [[vm]] table is needed")
        if self.host.kind != "esx":
            for v in self.vm:
                if size(v.reservation):
                    raise ValueError(f"vm[{v.name}].reservation: a {self.host.kind} host has no memory "
                                     "reservations (an ESX setting, sched.mem.min)")
        seen: set[str] = set()
        for v in self.vm:
            for n in v.instance_names():
                if n in seen:
                    raise ValueError(f"vm: duplicate VM name {n!r}")
                seen.add(n)
        return self

    def output_dir(self) -> Path:
        return Path(self.output.dir.replace("{name}", self.experiment.name))


# --------------------------------------------------------------------------- loading


class ConfigError(ValueError):
    """A config that does not validate: `problems` has one line per problem."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        super().__init__("\n".join(problems))


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in WORKLOAD_MODELS or part.startswith("function-"):
            continue  # the discriminated union's branch name
        else:
            out += ("." if out else "") + str(part)
    return out


def _problems(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        msg = err["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            if msg.startswith(prefix):
                msg = msg[len(prefix):]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "union_tag_invalid":
            msg = f"unknown workload profile; one of {', '.join(WORKLOAD_MODELS)}"
        loc = _loc(err["loc"])
        for part in msg.split("\n"):
            lines.append(f"{loc}: {part}" if loc else part)
    return lines


def config_from_dict(data: dict, source: str = "", base_dir: str | Path | None = None) -> ExperimentConfig:
    """Validate a config dict. base_dir: the folder of the file it came from; given, the
    files it names (image_file, trace path) are checked too, in the same pass."""
    try:
        return ExperimentConfig.model_validate(data, context={"base_dir": base_dir} if base_dir is not None else None)
    except ValidationError as exc:
        raise ConfigError(_problems(exc), source) from None


def read_toml(path: str | Path) -> dict:
    """A TOML file as a dict; ConfigError (one line naming the file) when unreadable."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"], str(path)) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML ({exc})"], str(path)) from None


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override (`--set KEY=VALUE` strings), validate and resolve a config file."""
    path = Path(path)
    data = read_toml(path)
    early: list[str] = []
    try:
        apply_overrides(data, overrides)  # the good ones are applied even when one is bad
    except ConfigError as exc:
        early = exc.problems
    try:
        cfg = config_from_dict(data, str(path), base_dir=path.parent)
    except ConfigError as exc:
        raise ConfigError(early + exc.problems, str(path)) from None
    if early:
        raise ConfigError(early, str(path))
    resolve_paths(cfg, path.parent)
    problems = [f"vm[{i}].image.rootfs: {v.image.rootfs}: no such directory or tar archive"
                for i, v in enumerate(cfg.vm)
                if isinstance(v.image, RootfsImage) and not os.path.exists(v.image.rootfs)]
    for i, v in enumerate(cfg.vm):
        if isinstance(v.workload, SnapshotsParams):
            from hypervisor.memimage import ImageError, open_image

            try:
                open_image(v.workload.path)
            except ImageError as e:
                problems.append(f"vm[{i}].workload.path: {e}")
    if problems:
        raise ConfigError(problems, str(path))
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """ "KEY=VALUE" -> (dotted key, value): the value read as a TOML value (2000, true,
    "x", [1, 2], {profile = "idle"}), else as a string (1GiB, per-vm). ValueError if no '='."""
    key, eq, raw = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise ValueError(f"--set {text}: expected KEY=VALUE, e.g. host.memory=1GiB")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def apply_overrides(data: dict, overrides: list[str] | tuple[str, ...]) -> dict:
    """Apply `--set KEY=VALUE` strings to a config dict in place (dotted keys as sweeps use
    them). ConfigError with one line per bad override."""
    problems = []
    for text in overrides:
        try:
            key, value = parse_override(text)
            set_dotted(data, key, value)
        except ValueError as exc:
            problems.append(str(exc))
        except KeyError as exc:
            problems.append(f"--set {text}: {exc.args[0]}")
        except (IndexError, TypeError):
            problems.append(f"--set {text}: not a dotted key like \"vm[0].memory\"")
    if problems:
        raise ConfigError(problems)
    return data


def resolve_paths(cfg: ExperimentConfig, base_dir: str | Path) -> None:
    """Make the config's relative file paths (memory images, traces) relative to
    `base_dir`, the folder of the config file they were written in."""
    base = Path(base_dir)
    for v in cfg.vm:
        if v.image_file and not Path(v.image_file).is_absolute():
            v.image_file = str((base / v.image_file).resolve())
        if isinstance(v.image, RootfsImage) and not Path(v.image.rootfs).is_absolute():
            v.image.rootfs = str((base / v.image.rootfs).resolve())
        wl = v.workload
        if isinstance(wl, (TraceParams, SnapshotsParams)) and not Path(wl.path).is_absolute():
            wl.path = str((base / wl.path).resolve())


# --------------------------------------------------------------------------- dotted keys


def _split_dotted(key: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in key.split("."):
        while "[" in piece:
            head, rest = piece.split("[", 1)
            idx, piece = rest.split("]", 1)
            if head:
                parts.append(head)
            parts.append(int(idx) if idx.lstrip("-").isdigit() else f"[{idx}]")
        if piece:
            parts.append(piece)
    return parts


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `key` ("host.sharing.salting", "vm[0].count", "vm[web].memory") in a plain
    config dict, creating tables on the way. Raises KeyError naming the key when a VM
    index or name does not exist."""
    parts = _split_dotted(key)
    node: Any = data
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(part, int) or (isinstance(part, str) and part.startswith("[")):
            if not isinstance(node, list):
                raise KeyError(f"{key}: {parts[i - 1] if i else key} is not a list")
            if isinstance(part, int):
                if not -len(node) <= part < len(node):
                    raise KeyError(f"{key}: no entry {part}")
                idx = part
            else:
                name = part[1:-1]
                matches = [j for j, item in enumerate(node) if isinstance(item, dict) and item.get("name") == name]
                if not matches:
                    raise KeyError(f"{key}: no entry named {name!r}")
                idx = matches[0]
            if last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise KeyError(f"{key}: {part} is not a table")
        if last:
            node[part] = value
        else:
            nxt = parts[i + 1]
            if part not in node:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]


def get_dotted(data: dict, key: str) -> Any:
    node: Any = data
    for part in _split_dotted(key):
        if isinstance(part, str) and part.startswith("["):
            node = next(item for item in node if item.get("name") == part[1:-1])
        else:
            node = node[part]
    return node


# --------------------------------------------------------------------------- TOML output


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _toml_table(d: dict, prefix: str, out: list[str], array: bool = False) -> None:
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and not (
        isinstance(v, list) and v and isinstance(v[0], dict)) and v is not None}
    tables = {k: v for k, v in d.items() if isinstance(v, dict)}
    arrays = {k: v for k, v in d.items() if isinstance(v, list) and v and isinstance(v[0], dict)}
    if prefix:
        out.append(f"[[{prefix}]]" if array else f"[{prefix}]")
    for k, v in scalars.items():
        out.append(f"{k} = {_toml_value(v)}")
    if prefix or scalars:
        out.append("")
    for k, v in tables.items():
        _toml_table(v, f"{prefix}.{k}" if prefix else k, out)
    for k, items in arrays.items():
        for item in items:
            _toml_table(item, f"{prefix}.{k}" if prefix else k, out, array=True)


def dump_toml(cfg: ExperimentConfig) -> str:
    """The complete resolved configuration as TOML (every default written out)."""
    out: list[str] = ["# hvsim: the complete configuration that was simulated", ""]
    data = cfg.model_dump(mode="json")
    _toml_table(data, "", out)
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- reference


def config_reference() -> str:
    """Markdown reference of every key, generated from the models (for README.md)."""
    sections = [
        ("[experiment]", ExperimentSection),
        ("[host]", HostSection),
        ("[host.swap]", HostSwapSection),
        ("[host.sharing]", HostSharingSection),
        ("[host.compression]", HostCompressionSection),
        ("[host.balloon]", HostBalloonSection),
        ("[[vm]]", VMSection),
        ("[vm.kernel]", KernelSection),
    ] + [(f'[vm.workload] profile = "{name}"', m) for name, m in WORKLOAD_MODELS.items()] + [
        ("[output]", OutputSection),
    ]
    lines = []
    for title, model in sections:
        lines.append(f"#### `{title}`\n")
        lines.append("| key | default | meaning |")
        lines.append("| --- | --- | --- |")
        for name, f in model.model_fields.items():
            if isinstance(f.default, BaseModel) or f.default_factory is not None or name == "profile":
                continue
            default = "(required)" if f.is_required() else _toml_value(f.default) if f.default is not None else "(none)"
            lines.append(f"| `{name}` | `{default}` | {f.description or ''} |")
        lines.append("")
    return "\n".join(lines)
