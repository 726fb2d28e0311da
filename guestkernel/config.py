"""KernelConfig: what one guest kernel is built from (the boot command line and sysctls).

Values a Linux engineer sets in /proc/sys/vm carry their sysctl names and defaults. `None`
means "computed at boot as Linux does" (min_free_kbytes, user/admin reserves). Later
subsystems (swap, reclaim, balloon) add their fields here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .units import PAGE_SIZE, parse_duration, parse_size, whole_pages

ARCHES = ("x86_64", "i386")
ERAS = ("6.x", "2.6")

# Per-arch defaults of /proc/sys/vm/lowmem_reserve_ratio, one value per zone (6.x).
LOWMEM_RESERVE_RATIO = {
    "x86_64": (256, 256, 32),  # DMA, DMA32, Normal
    "i386": (256, 32, 0),  # DMA, Normal, HighMem
}

# Kernel image (text, rodata, data, bss) loaded at CONFIG_PHYSICAL_START = 16 MiB.
KERNEL_LOAD_ADDR = 16 << 20
DEFAULT_KERNEL_IMAGE = {"x86_64": 16 << 20, "i386": 8 << 20}
# What stays of Debian 12's kernel image (6.1.0-50-cloud-amd64) after boot, measured
# (tests/data/boot): _text.._end of the bss, 40960 KiB, less what the kernel frees once up
# (init 2600 KiB, text/rodata gap 2040 KiB, rodata/data gap 1908 KiB, unused decrypted
# bss 2036 KiB, SMP alternatives 36 KiB).
DISTRO_KERNEL_IMAGE = {"debian-12": 32340 << 10}
DISTROS = ("none", "debian-12")  # kernels whose boot reservation hvsim follows
# CONFIG_INIT_ON_ALLOC_DEFAULT_ON by distribution kernel: init_on_alloc's boot value when
# the command line does not set it (DEFINE_STATIC_KEY_MAYBE in mm/page_alloc.c). Debian
# 12's linux-config-6.1 (6.1.176-1) builds it on in both amd64 flavours
# (tests/data/distro_thp/debian-12-thp.config, with the script that recorded it); "none"
# keeps upstream's default, off.
DISTRO_INIT_ON_ALLOC = {"none": False, "debian-12": True}
# Early boot allocations of that kernel besides the image and memmap (memblock, 6.x
# x86_64), measured on the same boots: the percpu first chunk ("percpu: Embedded 61
# pages/cpu"), and what is left of the reservation at 256 MiB once the image, memmap,
# hash tables and percpu are counted: brk page tables, memblock arrays, pglist_data,
# mem_section, and the 128 KiB QEMU's firmware keeps at the top of RAM (420 KiB).
PERCPU_PAGES_PER_CPU = 61
EARLY_RESERVED = 420 << 10
# /dev/shm as systemd's mount_setup mounts it (MS_NOSUID | MS_NODEV | MS_STRICTATIME,
# mode=01777); tmpfs's defaults then give it half of RAM and huge=never
DEFAULT_TMPFS_MOUNTS = ("/dev/shm mode=1777,nosuid,nodev,strictatime",)
PAGES_PER_SECTION = 1 << 15  # SPARSEMEM: 128 MiB sections, memmap allocated per section
STRUCT_PAGE_SIZE = {"x86_64": 64, "i386": 32}  # sizeof(struct page), bytes: the memmap
LOW_RESERVED = 1 << 20  # x86 reserves the first 1 MiB (BIOS, real-mode trampoline)
MIN_BOOT_FREE = 8 << 20  # what must be left for the allocators after boot reservations
I386_MAX_MEMORY = 64 << 30  # PAE's 36-bit physical address limit


@dataclass
class KernelConfig:
    """One guest kernel. Sizes accept ints (bytes) or strings with units ("512MiB")."""

    memory: int | str = "512MiB"  # guest physical memory, bytes
    arch: str = "x86_64"  # "x86_64" (DMA/DMA32/Normal) or "i386" (DMA/Normal/HighMem)
    cpus: int = 1  # online CPUs; each has per-CPU hot/cold page lists and slab arrays
    nodes: int = 1  # NUMA nodes; memory is split evenly, CPUs in blocks
    numa_distance: tuple[tuple[int, ...], ...] | None = None  # SLIT; default 10 local, 20 remote
    era: str = "6.x"  # "6.x" or "2.6": which watermark / min_free_kbytes formulas apply
    pae: bool | None = None  # i386 only: 3-level page tables; default on above 4 GiB
    kernel_image: int | str | None = None  # bytes vmlinux keeps after boot; default by arch or distro
    distro: str = "none"  # whose kernel boots: "none" (image + memmap) or "debian-12" (measured)
    kaslr: bool | None = None  # kernel.kaslr (the nokaslr boot option off): None: on for 6.x, off for 2.6
    seed: int = 0  # the boot's randomness (KASLR offsets); an experiment derives it per VM
    # zero every page and slab object at allocation (init_on_alloc=1); None: as the distro's
    # kernel is built (DISTRO_INIT_ON_ALLOC)
    init_on_alloc: bool | None = None
    init_on_free: bool = False  # zero every page and slab object when freed (init_on_free=1)
    # 6.x: the memory cgroup statistics' flush rules (memcontrol.py): "6.1" (Debian 12's
    # kernel: reclaim flushes by the update threshold) or "6.8" (6.8 and later: reclaim's
    # flush is ratelimited, the statistics up to 2 s old)
    memcg_stats_flush: str = "6.1"
    # 6.x: the cgroup hierarchy the guest mounts (cgroup.py): 2, the unified one at
    # /sys/fs/cgroup (Debian 12 and systemd's default), or 1, the memory controller's own
    # at /sys/fs/cgroup/memory (cgroup v1: its reclaim waits on writeback)
    cgroup_version: int = 2
    # 6.x, with a clock: the guest's uptime in seconds when its clock starts (how long it
    # has been booting): where the root memcg's periodic flusher (flush_memcg_stats_dwork,
    # every 2 s from the root memcg's online at boot) stands. None: more than one flush
    # period, its phase within the period drawn from `seed`; 0: the clock starts as the
    # kernel boots (the first flush 2 s in)
    boot_uptime: float | None = None
    # /proc/sys/vm
    min_free_kbytes: int | None = None  # KiB; None: int_sqrt(lowmem_kbytes * 16), clamped
    watermark_scale_factor: int = 10  # 1/10000 of managed pages between watermarks (6.x)
    watermark_boost_factor: int = 15000  # 1/10000 of HIGH: the most a fallback boost adds (6.x; 0 off)
    compaction_proactiveness: int = 20  # 0..100: kcompactd compacts above 100 - this + 10 fragmentation score
    lowmem_reserve_ratio: tuple[int, ...] | None = None  # one per zone; default by arch
    swappiness: int = 60  # 0..200, anon vs file reclaim balance
    vfs_cache_pressure: int = 100  # percent
    overcommit_memory: int = 0  # 0 heuristic, 1 always, 2 strict
    overcommit_ratio: int = 50  # percent of RAM in CommitLimit (mode 2)
    overcommit_kbytes: int = 0  # KiB; replaces overcommit_ratio when non-zero
    user_reserve_kbytes: int | None = None  # KiB; None: min(free/32, 128 MiB)
    admin_reserve_kbytes: int | None = None  # KiB; None: min(free/32, 8 MiB)
    panic_on_oom: int = 0  # 0 kill, 1 panic unless constrained, 2 always panic
    oom_kill_allocating_task: int = 0  # 1: kill the task that triggered the OOM
    oom_dump_tasks: int = 1
    dirty_ratio: int = 20  # percent of available memory before writers throttle
    dirty_background_ratio: int = 10  # percent before the flusher starts
    # bytes; 0: the ratio applies. Non-zero replaces its ratio twin, which then reads 0
    # (as writing /proc/sys/vm/dirty_bytes zeroes dirty_ratio); 6.x era only (2.6.29)
    dirty_bytes: int | str = 0  # dirty memory before writers throttle (at least 2 pages)
    dirty_background_bytes: int | str = 0  # dirty memory before the flusher starts
    dirty_expire_centisecs: int = 3000  # age at which dirty data is written, 1/100 s
    dirty_writeback_centisecs: int = 500  # flusher period, 1/100 s
    max_map_count: int = 65530  # VMAs per mm
    mmap_min_addr: int = 65536  # bytes; lowest address user space may map
    page_cluster: int = 3  # log2 of pages read ahead on swap-in
    read_ahead_kb: int = 128  # KiB: the disk's /sys/block/*/queue/read_ahead_kb (ra_pages * 4)
    stat_interval: int = 1  # seconds
    # Guest swap device (the reclaim issue gives it its behaviour)
    swap: int | str = 0  # bytes of swap space
    swap_latency: float | str = "80us"  # per 4 KiB read, seconds
    swap_bandwidth: int | str = "500MiB"  # bytes per second
    # the guest disks' queue/nr_requests: requests in flight per device queue before a
    # submitter sleeps for a tag; None: 256 (6.x: blk-mq with mq-deadline over virtio-blk's
    # 128 tags, as this machine's /dev/vda) or 128 (2.6: BLKDEV_MAX_RQ); 0: unlimited
    nr_requests: int | None = None
    # the guest disks' queue/max_sectors_kb: KiB a request holds at most (bios merge up
    # to it, in the task's plug and the scheduler); None: 1280 (6.1's BLK_DEF_MAX_SECTORS
    # 2560 sectors) or 512 (2.6.20's 1024); this machine's 6.18 /dev/vda reads 4096
    max_sectors_kb: int | None = None
    # queue/rotational of the swap device: 1 keeps 6.1 from building swap clusters
    # (SWP_SOLIDSTATE), so a THP is split before swap-out; a virtio-blk disk reports 1
    # (measured: this machine's /dev/vda), an NVMe or virtio-scsi SSD 0
    swap_rotational: bool = True
    # Transparent huge pages (/sys/kernel/mm/transparent_hugepage; huge_memory.py): x86_64
    # 6.x only (2.6.24-era kernels have none: THP arrived in 2.6.38)
    thp_enabled: str = "madvise"  # enabled: "always", "madvise" or "never"
    thp_defrag: str = "madvise"  # defrag: "always", "defer", "defer+madvise", "madvise", "never"
    thp_use_zero_page: bool = True  # use_zero_page: a read fault maps the huge zero page
    # shmem_enabled: huge folios for the internal shmem mount (shared anonymous, SysV shm):
    # "always", "within_size", "advise", "never" (Linux's default), "deny", "force"
    thp_shmem_enabled: str = "never"
    # CONFIG_READ_ONLY_THP_FOR_FS: khugepaged collapses read-only executable mappings of
    # regular files into 2 MiB page-cache folios (khugepaged.py). Off as Debian 12's 6.1
    # kernel (config.amd64_none_amd64) and this machine's 6.18 kernel build it
    read_only_thp_for_fs: bool = False
    khugepaged_pages_to_scan: int = 4096  # khugepaged/pages_to_scan, pages per wake-up
    khugepaged_scan_sleep_millisecs: int = 10000  # khugepaged/scan_sleep_millisecs, ms
    khugepaged_alloc_sleep_millisecs: int = 60000  # khugepaged/alloc_sleep_millisecs, ms
    khugepaged_max_ptes_none: int = 511  # khugepaged/max_ptes_none, empty PTEs a collapse fills
    khugepaged_max_ptes_swap: int = 64  # khugepaged/max_ptes_swap, swapped PTEs it reads in
    khugepaged_max_ptes_shared: int = 256  # khugepaged/max_ptes_shared, PTEs shared with another mm
    # tmpfs mounts made at boot (mount.py), each "MOUNT_POINT OPTIONS" with the options as
    # mount -o takes them (size=, nr_blocks=, nr_inodes=, huge=never|always|within_size|
    # advise, mode=, uid=, gid=, inode32/64, nosuid, nodev, noexec, ro, relatime,
    # strictatime, noatime); /dev/shm as systemd mounts it (size half of RAM, huge=never)
    tmpfs_mounts: list = field(default_factory=lambda: list(DEFAULT_TMPFS_MOUNTS))
    extra: dict = field(default_factory=dict)  # free-form settings for experiments

    def __post_init__(self) -> None:
        if self.arch not in ARCHES:
            raise ValueError(f"arch: must be one of {', '.join(ARCHES)}, got {self.arch!r}")
        if self.era not in ERAS:
            raise ValueError(f"era: must be one of {', '.join(ERAS)}, got {self.era!r}")
        given = self.memory
        self.memory = whole_pages(parse_size(given, "memory"), given, "memory")  # "2GB" is decimal
        _int_range(self, "cpus", 1, 1024)
        _int_range(self, "nodes", 1, 64)
        if self.distro not in DISTROS:
            raise ValueError(f"distro: must be one of {', '.join(DISTROS)}, got {self.distro!r}")
        if self.distro != "none" and (self.arch, self.era) != ("x86_64", "6.x"):
            raise ValueError(f"distro: {self.distro} boots an x86_64 6.x kernel, not {self.arch} {self.era}")
        if self.kernel_image is None:
            self.kernel_image = DISTRO_KERNEL_IMAGE.get(self.distro, DEFAULT_KERNEL_IMAGE[self.arch])
        if self.kaslr is None:
            self.kaslr = self.era == "6.x" and self.arch == "x86_64"
        if self.init_on_alloc is None:
            self.init_on_alloc = DISTRO_INIT_ON_ALLOC[self.distro]
        if self.boot_uptime is not None and (isinstance(self.boot_uptime, bool)
                                             or not isinstance(self.boot_uptime, (int, float))
                                             or not 0 <= self.boot_uptime < 1e9):
            raise ValueError(f"boot_uptime: must be a number of seconds >= 0, got {self.boot_uptime!r}")
        if self.memcg_stats_flush not in ("6.1", "6.8"):
            raise ValueError(f"memcg_stats_flush: must be one of 6.1, 6.8, got {self.memcg_stats_flush!r}")
        if self.cgroup_version not in (1, 2):
            raise ValueError(f"cgroup_version: must be 1 or 2, got {self.cgroup_version!r}")
        if self.thp_enabled not in ("always", "madvise", "never"):
            raise ValueError(f"thp_enabled: must be one of always, madvise, never, got {self.thp_enabled!r}")
        if self.thp_shmem_enabled not in ("always", "within_size", "advise", "never", "deny", "force"):
            raise ValueError("thp_shmem_enabled: must be one of always, within_size, advise, never, deny, force, "
                             f"got {self.thp_shmem_enabled!r}")
        from .mount import check_tmpfs_mounts

        check_tmpfs_mounts(self.tmpfs_mounts, self.era == "6.x" and self.arch == "x86_64")
        if self.thp_defrag not in ("always", "defer", "defer+madvise", "madvise", "never"):
            raise ValueError("thp_defrag: must be one of always, defer, defer+madvise, madvise, never, "
                             f"got {self.thp_defrag!r}")
        for name, hi in (("khugepaged_pages_to_scan", (1 << 32) - 1),
                         ("khugepaged_scan_sleep_millisecs", (1 << 32) - 1),
                         ("khugepaged_alloc_sleep_millisecs", (1 << 32) - 1),
                         ("khugepaged_max_ptes_none", 511), ("khugepaged_max_ptes_swap", 511),
                         ("khugepaged_max_ptes_shared", 511)):
            _int_range(self, name, 1 if name == "khugepaged_pages_to_scan" else 0, hi)
        for name in ("kaslr", "init_on_alloc", "init_on_free", "thp_use_zero_page", "read_only_thp_for_fs"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: must be an integer, got {self.seed!r}")
        self.kernel_image = parse_size(self.kernel_image, "kernel_image")
        if self.kernel_image < (1 << 20) or self.kernel_image % PAGE_SIZE:
            raise ValueError("kernel_image: must be a whole number of pages, at least 1MiB")
        if self.arch == "i386":
            if self.memory > I386_MAX_MEMORY:
                raise ValueError("memory: i386 with PAE addresses at most 64GiB")
            if self.pae is None:
                self.pae = self.memory > (4 << 30)
            elif not self.pae and self.memory > (4 << 30):
                raise ValueError("pae: i386 without PAE addresses at most 4GiB")
        elif self.pae:
            raise ValueError("pae: only meaningful for arch i386")
        need = self.min_boot_memory()
        if self.memory < need:
            raise ValueError(
                f"memory: {self.memory >> 20}MiB is too small to boot this kernel "
                f"(needs at least {-(-need >> 20)}MiB)"
            )
        if self.nodes > 1 and self.memory // self.nodes < (64 << 20):
            raise ValueError("nodes: every NUMA node needs at least 64MiB")
        if self.numa_distance is not None:
            d = tuple(tuple(int(x) for x in row) for row in self.numa_distance)
            if len(d) != self.nodes or any(len(r) != self.nodes for r in d):
                raise ValueError("numa_distance: must be a nodes x nodes matrix")
            if any(d[i][i] != 10 for i in range(self.nodes)) or any(x < 10 for r in d for x in r):
                raise ValueError("numa_distance: local distance must be 10, remote >= 10")
            self.numa_distance = d
        nzones = 3
        if self.lowmem_reserve_ratio is None:
            self.lowmem_reserve_ratio = LOWMEM_RESERVE_RATIO[self.arch]
        self.lowmem_reserve_ratio = tuple(int(x) for x in self.lowmem_reserve_ratio)
        if len(self.lowmem_reserve_ratio) != nzones or min(self.lowmem_reserve_ratio) < 0:
            raise ValueError(
                f"lowmem_reserve_ratio: must be {nzones} non-negative integers, one per zone"
            )
        if self.min_free_kbytes is not None:
            _int_range(self, "min_free_kbytes", 0, 1 << 40)
        _int_range(self, "watermark_scale_factor", 1, 3000)
        _int_range(self, "watermark_boost_factor", 0, (1 << 31) - 1)
        _int_range(self, "compaction_proactiveness", 0, 100)
        _int_range(self, "swappiness", 0, 200)
        _int_range(self, "vfs_cache_pressure", 0, 1 << 30)
        _int_range(self, "read_ahead_kb", 0, 1 << 20)
        _int_range(self, "overcommit_memory", 0, 2)
        _int_range(self, "overcommit_ratio", 0, 1 << 30)
        _int_range(self, "overcommit_kbytes", 0, 1 << 50)
        for name in ("user_reserve_kbytes", "admin_reserve_kbytes"):
            if getattr(self, name) is not None:
                _int_range(self, name, 0, 1 << 50)
        _int_range(self, "panic_on_oom", 0, 2)
        _int_range(self, "oom_kill_allocating_task", 0, 1)
        _int_range(self, "oom_dump_tasks", 0, 1)
        _int_range(self, "dirty_ratio", 0, 100)
        _int_range(self, "dirty_background_ratio", 0, 100)
        _int_range(self, "dirty_expire_centisecs", 0, 1 << 31)
        self.dirty_bytes = parse_size(self.dirty_bytes, "dirty_bytes")
        self.dirty_background_bytes = parse_size(self.dirty_background_bytes, "dirty_background_bytes")
        for name in ("dirty_bytes", "dirty_background_bytes"):
            value = getattr(self, name)
            if not value:
                continue
            if self.era != "6.x":
                raise ValueError(f"{name}: vm.{name} exists from Linux 2.6.29 (era 6.x), not era {self.era}")
            if -(-value // PAGE_SIZE) > (1 << 32) - 1:  # the sysctl handler's -ERANGE
                raise ValueError(f"{name}: at most {((1 << 32) - 1) * PAGE_SIZE} bytes, got {value}")
        if 0 < self.dirty_bytes < 2 * PAGE_SIZE:  # dirty_bytes_min
            raise ValueError(f"dirty_bytes: 0 or at least {2 * PAGE_SIZE} bytes (two pages), got {self.dirty_bytes}")
        if self.dirty_bytes:  # dirty_bytes_handler: vm_dirty_ratio = 0
            self.dirty_ratio = 0
        if self.dirty_background_bytes:  # dirty_background_bytes_handler
            self.dirty_background_ratio = 0
        _int_range(self, "dirty_writeback_centisecs", 0, 1 << 31)
        _int_range(self, "max_map_count", 0, 1 << 31)
        _int_range(self, "mmap_min_addr", 0, 1 << 47)
        _int_range(self, "page_cluster", 0, 31)
        _int_range(self, "stat_interval", 1, 1 << 20)
        if self.nr_requests is not None:
            _int_range(self, "nr_requests", 0, 1 << 20)
        if self.max_sectors_kb is not None:
            _int_range(self, "max_sectors_kb", 4, 1 << 22)
        self.swap = parse_size(self.swap, "swap")
        self.swap_latency = parse_duration(self.swap_latency, "swap_latency")
        self.swap_bandwidth = parse_size(self.swap_bandwidth, "swap_bandwidth")
        if self.swap_bandwidth <= 0:
            raise ValueError("swap_bandwidth: must be positive")

    @property
    def nr_pages(self) -> int:
        return self.memory // PAGE_SIZE

    def min_boot_memory(self) -> int:
        """Bytes below which the kernel cannot boot: load address + image + memmap + slack."""
        base = KERNEL_LOAD_ADDR + self.kernel_image + MIN_BOOT_FREE
        if self.distro != "none":
            base += EARLY_RESERVED + PERCPU_PAGES_PER_CPU * PAGE_SIZE * self.cpus
        # memmap for `base` bytes, solved for the fixed point memory = base + memmap(memory)
        per = STRUCT_PAGE_SIZE[self.arch]
        return base + base * per // (PAGE_SIZE - per) + PAGE_SIZE

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _int_range(cfg: KernelConfig, name: str, lo: int, hi: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name}: must be between {lo} and {hi}, got {value}")
