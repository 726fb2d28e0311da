"""Builds a Host, its VMs and their workloads from an ExperimentConfig.

Each VM instance boots a guest kernel (or loads a raw memory image). A guest booting an OS
image gets that image's bytes: the kernel text and data land in the frames its kernel
reserved at boot, and the image's libraries and files become files of the guest's file
system, read into the page cache when the workload uses them. Two VMs booting the same
image therefore hold byte-identical pages: sharing arises from content, never from a flag.
"""

from __future__ import annotations

import xxhash

from guestkernel.config import DISTROS, KERNEL_LOAD_ADDR, KernelConfig
from guestkernel.units import PAGE_SHIFT
from hypervisor.host import Host, HostConfig, PowerOnError

from .config import ExperimentConfig, VMSection, seconds, size
from .content import ContentSource, OSImage
from .workloads import create_workload


def rng_seed(seed: int, component: str) -> int:
    """The seed of one component's random stream: xxhash of "seed/component"."""
    return xxhash.xxh64_intdigest(f"{seed}/{component}".encode())


def host_config(cfg: ExperimentConfig) -> HostConfig:
    h = cfg.host
    return HostConfig(
        memory=size(h.memory),
        cpus=h.cpus,
        cpu_quantum=seconds(h.cpu_quantum),
        balloon_inflate_cost=seconds(h.balloon.inflate_cost),
        balloon_deflate_cost=seconds(h.balloon.deflate_cost),
        swapout_cost=seconds(h.swap.swapout_cost),
        active_fast_gain=h.balloon.fast_gain,
        active_slow_gain=h.balloon.slow_gain,
        min_free=None if h.min_free == "auto" else size(h.min_free),
        swap_size=size(h.swap.size),
        swap_latency=seconds(h.swap.latency),
        swap_bandwidth=size(h.swap.bandwidth),
        fault_cost=seconds(h.fault_cost),
        cow_cost=seconds(h.cow_cost),
        page_copy_cost=seconds(h.page_copy_cost),
        page_zero_cost=seconds(h.page_zero_cost),
        nomem_stall=seconds(h.nomem_stall),
        low_state_stall=seconds(h.low_state_stall),
        large_pages=h.large_pages,
        kind=h.kind,
        large_page_fault_cost=seconds(h.large_page_fault_cost),
        large_page_break_rate=h.large_page_break_rate,
        large_page_break_cost=seconds(h.large_page_break_cost),
        large_page_tlb_discount=h.large_page_tlb_discount,
        khugepaged=h.khugepaged,
        khugepaged_pages_to_scan=h.khugepaged_pages_to_scan,
        khugepaged_scan_sleep_millisecs=h.khugepaged_scan_sleep_millisecs,
        khugepaged_alloc_sleep_millisecs=h.khugepaged_alloc_sleep_millisecs,
        khugepaged_max_ptes_none=h.khugepaged_max_ptes_none,
        khugepaged_max_ptes_swap=h.khugepaged_max_ptes_swap,
        khugepaged_max_ptes_shared=h.khugepaged_max_ptes_shared,
        thp_defrag=h.thp_defrag,
        khugepaged_defrag=h.khugepaged_defrag,
        compaction_proactiveness=h.compaction_proactiveness,
        extfrag_threshold=h.extfrag_threshold,
        compact_scan_cost=seconds(h.compact_scan_cost),
        sharing=h.sharing.enabled,
        pages_to_scan=h.sharing.pages_to_scan,
        sleep_millisecs=max(0, round(seconds(h.sharing.sleep) * 1000)),
        max_page_sharing=h.sharing.max_page_sharing,
        use_zero_pages=h.sharing.use_zero_pages,
        smart_scan=h.sharing.smart_scan,
        ksm_control=h.sharing.control,
        salting=h.sharing.salting,
        hash_cost=seconds(h.sharing.hash_cost),
        compare_cost=seconds(h.sharing.compare_cost),
        compression=h.compression.enabled,
        zstd_level=h.compression.level,
        compress_threshold=h.compression.threshold,
        compress_quarter=h.compression.quarter,
        zip_max_pct=h.compression.max_pct,
        compress_cost=seconds(h.compression.compress_cost),
        decompress_cost=seconds(h.compression.decompress_cost),
        victim_policy=h.swap.victim_policy,
        avoid_false_reads=h.swap.avoid_false_reads,
        reclaim_batch=h.swap.reclaim_batch,
        reclaim_rate=h.swap.reclaim_rate,
        ballooning=h.balloon.enabled,
        balloon_policy=h.balloon.policy,
        balloon_max_pct=h.balloon.max_pct,
        idle_tax=h.balloon.idle_tax,
        sample_pages=h.balloon.sample_pages,
        sample_period=seconds(h.balloon.sample_period),
        balloon_interval=seconds(h.balloon.interval),
        balloon_rate=h.balloon.rate,
        balloon_deflate_on_oom=h.balloon.deflate_on_oom,
        balloon_stats_interval=seconds(h.balloon.stats_interval),
        free_page_reporting=h.balloon.free_page_reporting,
        state_interval=seconds(h.state_interval),
        guest_disk=h.guest_disk,
        admission_control=h.admission_control,
        seed=rng_seed(cfg.experiment.seed, "host"),
    )


def kernel_config(v: VMSection, seed: int = 0) -> KernelConfig:
    """The guest kernel of a VM section; `seed`: its boot's randomness (KASLR). With
    kernel.distro = "auto" the boot reservation is the image's kernel's where hvsim has
    measured it (DISTROS); a Windows image zeroes freed pages (its zero-page thread) as
    init_on_free does."""
    kw = v.kernel.kernel_kwargs()
    if kw["distro"] == "auto":
        fits = v.image_name() in DISTROS and (kw["arch"], kw["era"]) == ("x86_64", "6.x")
        kw["distro"] = v.image_name() if fits else "none"
    windows = v.image_name() != "none" and OSImage.get(v.image_name()).family == "windows"
    if windows:
        kw["init_on_free"] = True
    # THP as the distributions ship it: RHEL/CentOS 7 "always" for both; Debian and
    # Ubuntu (CONFIG_TRANSPARENT_HUGEPAGE_MADVISE, defrag madvise: upstream's defaults)
    thp = THP_DEFAULTS.get(v.image_name(), ("never", "never") if windows else ("madvise", "madvise"))
    if kw["thp_enabled"] == "auto":
        kw["thp_enabled"] = thp[0]
    if kw["thp_defrag"] == "auto":
        kw["thp_defrag"] = "madvise" if thp[1] == "never" else thp[1]
    return KernelConfig(memory=size(v.memory), seed=seed, **kw)


# (enabled, defrag) by image, as the distribution's kernel boots: 6.1's
# transparent_hugepage_flags take `enabled` from CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS /
# _MADVISE and `defrag` is madvise whatever the config (DEFRAG_REQ_MADV_FLAG); Debian 12
# builds ALWAYS (tests/data/distro_thp/debian-12-thp.config, from linux-config-6.1);
# RHEL/CentOS 7's 3.10 boots with both always
THP_DEFAULTS = {"centos-7": ("always", "always"), "debian-12": ("always", "madvise")}


def boot_image(kernel, image: OSImage) -> float:
    """Give a freshly booted guest its OS image: kernel text/data into the frames the
    kernel image occupies, libraries and files into its file system. Returns seconds."""
    cost = 0.0
    base = KERNEL_LOAD_ADDR >> PAGE_SHIFT
    limit = kernel.config.kernel_image >> PAGE_SHIFT
    pfn = base
    store = kernel.phys.store
    # KASLR moved the kernel by the offset this boot drew (Linux images only)
    kmem = getattr(kernel, "kmem", None)
    delta = kmem.layout.kaslr_delta if kmem is not None and image.family == "linux" else 0
    for region in image.regions:
        if region.category != "kernel":
            continue
        for index in range(region.pages):
            if pfn >= base + limit:
                break
            cost += store(pfn, image.kernel_page(region, index, delta))
            pfn += 1
    fs = getattr(kernel, "fs", None)
    if fs is not None:
        for region in image.regions:
            if region.category != "kernel" and fs.lookup(region.name) is None:
                fs.create(region.name, region.size, content=image.reader(region))
    return cost


class Scenario:
    """The host, VMs and workloads of one experiment, on one SimPy environment."""

    def __init__(self, cfg: ExperimentConfig, env) -> None:
        self.cfg = cfg
        self.env = env
        seed = cfg.experiment.seed
        self.host = Host(host_config(cfg), env=env)
        self.workloads: dict[str, object] = {}
        self.vm_sections: dict[str, VMSection] = {}
        for v in cfg.vm:
            for name in v.instance_names():
                self.vm_sections[name] = v
                try:
                    self._power_on(v, name, seed)
                except PowerOnError:
                    # refused at power-on (ESX admission control, host.not_powered_on
                    # says why): no VM, its workload does not run
                    self.workloads[name] = None

    def _power_on(self, v: VMSection, name: str, seed: int) -> None:
        """Create and boot VM `name` of section `v` with its workload (PowerOnError if the
        host refuses to power it on)."""
        env = self.env
        if v.image_file:
            self.host.create_vm_from_image(name, v.image_file, reservation=size(v.reservation) // 4096)
            self.workloads[name] = None
            return
        if v.workload.profile == "snapshots":  # an image-less VM following a series
            from .workloads.snapshots import SnapshotsWorkload, series_layout

            layout = series_layout(v.workload.path)
            vm = self.host.create_image_vm(name, layout.nr_pages, size(v.reservation) // 4096)
            vm.shares = v.share_count()
            self.workloads[name] = SnapshotsWorkload(env, vm, v.workload, layout)
            return
        vm = self.host.create_vm(name, kernel_config(v, rng_seed(seed, f"vm/{name}/boot")),
                                 balloon=v.balloon, cpu_shares=v.cpu_share_count(),
                                 reservation=size(v.reservation) // 4096)
        vm.shares = v.share_count()
        image = None if v.image_name() == "none" else OSImage.get(v.image_name())
        if image is not None:
            boot_image(vm.kernel, image)
        content = ContentSource(seed, name)
        self.workloads[name] = create_workload(
            env, vm, v.workload, content=content, seed=rng_seed(seed, f"vm/{name}/workload"),
            image=image,
        )

    def start(self) -> None:
        for wl in self.workloads.values():
            if wl is not None:
                wl.start()


def baseline_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """The same VMs and workloads on a host with memory for all of them and no
    reclamation: no sharing, ballooning or compression, memory for every guest frame
    plus ESX's minFree headroom (so the host never leaves the high state: nothing is
    swapped). The reference run of `[experiment] baseline`."""
    data = cfg.model_dump(mode="json")
    guests = sum(size(v.memory) * v.count for v in cfg.vm)
    host = data["host"]
    # guests' memory + 1/8 for the free-memory states and rounding, whole MiB
    host["memory"] = f"{(guests + guests // 8 + (64 << 20)) >> 20}MiB"
    host["min_free"] = "auto"
    host["sharing"]["enabled"] = False
    host["compression"]["enabled"] = False
    host["balloon"]["enabled"] = False
    data["experiment"]["baseline"] = False
    from .config import config_from_dict

    return config_from_dict(data)


def run_baseline(cfg: ExperimentConfig) -> dict[str, dict]:
    """Run the baseline of `cfg` (no files written); per VM, its throughput there."""
    import simpy

    base = baseline_config(cfg)
    env = simpy.Environment()
    sc = Scenario(base, env)
    sc.start()
    duration = seconds(base.experiment.duration)
    env.run(until=duration)
    out = {}
    for name, wl in sc.workloads.items():
        work = wl.work_done if wl is not None else 0.0
        out[name] = {"throughput": round(work / duration, 6) if duration > 0 else 0.0}
    return out
