"""Kernel: the composition root of one guest (init/main.c's start_kernel, for memory).

`Kernel(KernelConfig(...))` builds the page allocator, boots it (reserving the kernel
image and memmap), sets up kmap, the slab allocator and its general caches, /proc, the
address-space machinery, and connects the hooks through which lower layers call upward
(the allocator's slow path into reclaim and the OOM killer, a fault into swap-in). Without
`env` every call is synchronous; with a SimPy `env` the kernel also starts its daemons.
"""

from __future__ import annotations

from . import gfp as G
from .config import KernelConfig
from .highmem import Kmap
from .kmem import KernelLayout, KmemContent
from .page import Page
from .page_alloc import KernelPanic, PageAllocator
from .physmem import BareMetal, PhysicalMemory
from .procfs import ProcFS
from .units import PAGE_SHIFT
from .vmstat import new_vmstat


class Kernel:
    """One guest kernel.

    config      KernelConfig; live sysctl values are kept in it
    phys        the PhysicalMemory beneath the guest (BareMetal by default)
    env         simpy.Environment or None
    page_alloc  PageAllocator (nodes, zones, buddy lists, per-CPU lists)
    mem_map     list of Page or None, indexed by pfn: use pfn_to_page(), which creates
                the descriptor on first use
    vmstat      dict of /proc/vmstat counters
    procfs      /proc and /proc/sys/vm
    slab        the classic SLAB allocator
    tasks       pid -> Task
    """

    def __init__(
        self,
        config: KernelConfig | None = None,
        *,
        phys: PhysicalMemory | None = None,
        env=None,
        name: str = "guest",
        **overrides,
    ) -> None:
        if config is None:
            config = KernelConfig(**overrides)
        elif overrides:
            raise TypeError("pass either a KernelConfig or keyword settings, not both")
        self.config = config
        self.name = name
        self.env = env
        self.nr_pages = config.nr_pages
        self.phys = phys if phys is not None else BareMetal(self.nr_pages)
        if getattr(self.phys, "nr_frames", self.nr_pages) < self.nr_pages:
            raise ValueError(
                f"phys: {self.phys.nr_frames} frames cannot back {self.nr_pages} guest pages"
            )
        self.vmstat = new_vmstat()
        self.panicked: str | None = None  # reason, once the guest has panicked
        # seconds tasks slept waiting for the guest's disks (in D state: the vCPU is free)
        self.iowait_swap = 0.0  # swap-in reads
        self.plug = None  # the running task's blk_plug (guestkernel/blk.py): current->plug
        self.iowait_file = 0.0  # file reads (page cache misses, readahead)
        # throttled: balance_dirty_pages pauses, reclaim_throttle (vmscan.py)
        self.iowait_throttle = 0.0
        self.page_alloc = PageAllocator(config, self.phys, self.vmstat)
        self.page_alloc.boot()
        self.mem_map: list[Page | None] = self.page_alloc.mem_map
        # the kernel's own memory as bytes (kmem.py): its layout (KASLR), then the memmap
        # memmap_init wrote at boot
        self.kmem = KmemContent(self, KernelLayout(
            config.arch, bool(config.kaslr), config.seed, config.memory, config.kernel_image,
            self.page_alloc.page_offset))
        self.kmem.write_memmap()
        self.kmap_area = Kmap(self.page_alloc, bool(config.pae), config.cpus)
        # Overcommit accounting (mm/util.c); the policy for modes 0/1/2 lives in oom_kill.
        self.committed_as = 0  # pages: vm_committed_as
        free_kb = self.page_alloc.nr_free_pages() * 4
        self.user_reserve_kbytes = (
            config.user_reserve_kbytes
            if config.user_reserve_kbytes is not None
            else min(free_kb // 32, 1 << 17)
        )
        self.admin_reserve_kbytes = (
            config.admin_reserve_kbytes
            if config.admin_reserve_kbytes is not None
            else min(free_kb // 32, 1 << 13)
        )
        # Hooks for the layers above (reclaim fills them; no-ops until then).
        self.swapin_hook = None  # (task, vma, addr, pte) -> (page, cost, major)
        self.swap_count_hook = None  # (entry) -> PTE references left on the slot (swp_swapcount)
        self.tasks: dict = {}
        self._next_pid = 1
        # the address spaces holding dirty file pages (the inodes on the bdi's dirty
        # lists), in the order they became dirty; filemap.set_page_dirty keeps it
        self.b_dirty: dict = {}
        # per CPU (mm/page-writeback.c DEFINE_PER_CPU): file pages dirtied on the CPU
        # since its last forced check (bdp_ratelimits; folio_account_dirtied adds), and
        # pages exited tasks left unthrottled there (dirty_throttle_leaks; do_exit adds)
        ncpu = max(int(getattr(config, "cpus", 1)), 1)
        self.bdp_ratelimits = [0] * ncpu
        self.current_cpu = 0  # the CPU of the task in the kernel now (0: none, a kthread)
        # the CPU of the task that last ran (Task.on_cpu): its burst is booked on that vCPU
        self.task_cpu: int | None = None
        self.dirty_throttle_leaks = [0] * ncpu
        self.procfs = ProcFS(self)
        self.slab = None
        self._init_slab()
        self._init_address_spaces()
        # NOTE: the allocator's entry points are bound directly for speed (per-page path).
        self.alloc_pages = self.page_alloc.alloc_pages
        self.free_pages = self.page_alloc.free_pages
        self.daemons: list = []
        if env is not None:
            self._start_daemons()

    # ------------------------------------------------------------------ subsystems
    def _init_slab(self) -> None:
        from .slab import SlabAllocator

        self.slab = SlabAllocator(self)

    def _init_address_spaces(self) -> None:
        # address spaces (tasks, VMAs, page tables, page cache), then reclaim, swap and the
        # OOM killer, which replace the no-op hooks below and wire the allocator's slow path
        from .dcache import Dcache
        from .shrinker import ShrinkerList
        from .task import init_address_spaces
        from .vmscan import init_reclaim

        self.shrinkers = ShrinkerList(self)  # shrink_slab's shrinker_list
        from .huge_memory import init_thp
        from .khugepaged import Khugepaged

        self.thp = init_thp(self)  # transparent huge pages (None: not built)
        self.khugepaged = None if self.thp is None else Khugepaged(self)
        init_address_spaces(self)
        from .mount import init_mounts

        self.mounts = init_mounts(self)  # tmpfs mounts (/dev/shm) over the file system
        self.dcache = Dcache(self)  # dentry and inode caches, and their shrinker
        init_reclaim(self)
        from .cgroup import init_cgroup

        self.cgroup = init_cgroup(self)  # the memory-cgroup hierarchy (6.x; cgroup.py)
        self.compaction = None
        if self.config.era == "6.x":  # compaction came in 2.6.35
            from .compaction import init_compaction

            init_compaction(self)
        # pid 1: init, which the OOM killer never chooses and which reaps orphans
        try:
            self.init_task = self.spawn("init")
        except OSError as exc:  # e.g. a CommitLimit too small for init's own stack
            self.panicked = "No working init found."
            raise KernelPanic(f"No working init found ({exc.strerror})") from None

    def _start_daemons(self) -> None:
        from .slab import CacheReaper
        from .vmscan import start_reclaim_daemons

        self.daemons.append(CacheReaper(self.env, self.slab))
        start_reclaim_daemons(self)
        if self.khugepaged is not None:
            from .khugepaged import KhugepagedDaemon

            self.daemons.append(KhugepagedDaemon(self.env, self.khugepaged))
        if self.compaction is not None:
            from .compaction import start_kcompactd

            start_kcompactd(self)
        if self.config.era == "6.x" and len(self.page_alloc.nodes) > 1:
            # vmstat's per-CPU work drains remote zones' per-CPU lists (CONFIG_NUMA)
            from .vmstat import VmstatWork

            self.daemons.append(VmstatWork(self.env, self.page_alloc, lambda: self.config.stat_interval))

    # ------------------------------------------------------------------ page allocator
    @property
    def current_cpu(self) -> int:
        """smp_processor_id(): the CPU of the task in the kernel now (0: none, a kernel
        thread; Task.on_cpu). The allocator's per-CPU lists and the slab's array caches
        used without an explicit CPU are this CPU's."""
        return self.page_alloc.current_cpu

    @current_cpu.setter
    def current_cpu(self, cpu: int) -> None:
        self.page_alloc.current_cpu = cpu

    @property
    def stall(self) -> float:
        """Seconds spent beneath the guest by allocations since the last reset."""
        return self.page_alloc.stall

    @stall.setter
    def stall(self, value: float) -> None:
        self.page_alloc.stall = value

    def take_stall(self) -> float:
        s = self.page_alloc.stall
        self.page_alloc.stall = 0.0
        return s

    def alloc_pages(self, gfp: int, order: int = 0, cpu: int | None = None,
                    nid: int | None = None, oom_victim: bool = False) -> Page | None:
        """A block of 2**order pages (head page, _count 1) or None. See page_alloc."""
        return self.page_alloc.alloc_pages(gfp, order, cpu, nid, oom_victim)

    def alloc_page(self, gfp: int) -> Page | None:
        return self.alloc_pages(gfp, 0)

    def free_pages(self, page: Page, order: int = 0) -> None:
        self.page_alloc.free_pages(page, order)

    def free_cold_page(self, page: Page) -> None:
        self.page_alloc.free_pages(page, 0, cold=True)

    def drain_all_pages(self) -> int:
        return self.page_alloc.drain_all_pages()

    def page_address(self, page: Page) -> int:
        return self.page_alloc.page_address(page)

    def virt_to_page(self, addr: int) -> Page:
        return self.page_alloc.virt_to_page(addr)

    def pfn_to_page(self, pfn: int) -> Page:
        return self.page_alloc.pfn_to_page(pfn)

    def kmap(self, page: Page) -> int:
        return self.kmap_area.kmap(page)

    def kunmap(self, page: Page) -> None:
        self.kmap_area.kunmap(page)

    def kmap_atomic(self, page: Page, cpu: int = 0) -> int:
        return self.kmap_area.kmap_atomic(page, cpu)

    def kunmap_atomic(self, addr: int, cpu: int = 0) -> None:
        self.kmap_area.kunmap_atomic(addr, cpu)

    # ------------------------------------------------------------------ slab
    def kmem_cache_create(self, name: str, size: int, align: int = 0, flags: int = 0, ctor=None):
        return self.slab.kmem_cache_create(name, size, align, flags, ctor)

    def kmem_cache_alloc(self, cache, gfp: int = G.GFP_KERNEL):
        return self.slab.kmem_cache_alloc(cache, gfp)

    def kmem_cache_free(self, cache, obj) -> None:
        self.slab.kmem_cache_free(cache, obj)

    def kmem_cache_shrink(self, cache) -> int:
        return self.slab.kmem_cache_shrink(cache)

    def kmem_cache_destroy(self, cache) -> None:
        self.slab.kmem_cache_destroy(cache)

    def kmalloc(self, size: int, gfp: int = G.GFP_KERNEL):
        return self.slab.kmalloc(size, gfp)

    def kfree(self, obj) -> None:
        self.slab.kfree(obj)

    # ------------------------------------------------------------------ reclaim hooks
    def lru_cache_add(self, page: Page) -> None:
        """A page became a user page (anon or page cache). Reclaim puts it on an LRU list."""

    def lru_del(self, page: Page) -> None:
        """A user page is about to be freed: take it off its LRU list."""

    def mark_page_accessed(self, page: Page) -> None:
        """read()/write() touched a page-cache page (two-touch activation in reclaim)."""

    def si_mem_available(self) -> int:
        """MemAvailable in pages (si_mem_available, 6.x): free pages above the reserves,
        plus the page cache and reclaimable slab that can go without thrashing (at least
        half of each, or the LOW watermarks' worth, is assumed to stay)."""
        alloc = self.page_alloc
        vm = self.vmstat
        wmark_low = alloc.wmark_low_total()
        available = alloc.nr_free_pages() - alloc.totalreserve_pages
        pagecache = vm["nr_active_file"] + vm["nr_inactive_file"]
        available += pagecache - min(pagecache // 2, wmark_low)
        reclaimable = vm["nr_slab_reclaimable"]
        available += reclaimable - min(reclaimable // 2, wmark_low)
        return max(available, 0)

    # ------------------------------------------------------------------ overcommit
    def vm_commit_limit(self) -> int:
        """CommitLimit in pages: RAM * overcommit_ratio / 100 + swap (or overcommit_kbytes)."""
        cfg = self.config
        if cfg.overcommit_kbytes:
            allowed = cfg.overcommit_kbytes >> (PAGE_SHIFT - 10)
        else:
            allowed = self.page_alloc.totalram_pages() * cfg.overcommit_ratio // 100
        return allowed + self.total_swap_pages()

    def total_swap_pages(self) -> int:
        return self.config.swap >> PAGE_SHIFT

    def free_swap_pages(self) -> int:
        return self.total_swap_pages()

    def vm_enough_memory(self, pages: int, cap_sys_admin: bool = False, total_vm: int = 0) -> bool:
        """__vm_enough_memory: charge `pages` to Committed_AS if the overcommit policy allows.

        The policy is replaced by the reclaim subsystem's (oom_kill.py); until then this
        charges and applies mode 2's strict limit, and modes 0/1 always succeed.
        """
        self.committed_as += pages
        if self.config.overcommit_memory == 2:
            allowed = self.vm_commit_limit()
            if not cap_sys_admin:
                allowed -= self.admin_reserve_kbytes >> (PAGE_SHIFT - 10)
            allowed -= min(total_vm // 32, self.user_reserve_kbytes >> (PAGE_SHIFT - 10))
            if self.committed_as >= allowed:
                self.committed_as -= pages
                return False
        return True

    def vm_unacct_memory(self, pages: int) -> None:
        self.committed_as -= pages

    # ------------------------------------------------------------------ tasks
    def alloc_pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def spawn(self, name: str, **layout):
        """A new process with a fresh address space, as after execve of a static binary
        (`layout`: text, data, ... sizes, see task.spawn)."""
        from .task import spawn

        return spawn(self, name, **layout)

    def stall_mark(self):
        """What the PhysicalMemory beneath has stalled so far (a VM's stall counters), for
        `run_kernel_work(since=...)`; None on bare metal."""
        hook = getattr(self.phys, "stall_mark", None)
        return hook() if hook is not None else None

    def run_kernel_work(self, cost: float, wait: float = 0.0, io: float = 0.0, since=None):
        """The SimPy event a kernel thread (kswapd, the flusher, kcompactd, khugepaged)
        yields after a pass that took `cost` seconds, as a Linux thread spends them:

            its own CPU (scanning, isolating, freeing)   runs on a CPU
            stalls beneath the guest (host faults, copy-on-write, decompression, host
                swap-in of the pages it touched)           hold the vCPU, not running
            `io` (part of `cost`): waits for its own I/O (synchronous writeback) sleep
                in D state: the vCPU is free for other tasks meanwhile

        `since`: a `stall_mark()` taken before the pass; the stalls counted beneath the
        guest since then are the part of `cost` that held the vCPU (their host CPU,
        fault zeroing and decompression, runs on a host CPU), `io` the part asleep, the
        rest its CPU. Without `since`, `cost` is CPU and `wait` a stall. Beneath a
        hypervisor the thread runs on one of the VM's vCPUs (`phys.kernel_work`: it takes
        vCPU time from the guest's tasks and waits its turn on a busy host); on bare
        metal, a timeout of the whole."""
        hook = getattr(self.phys, "kernel_work", None)
        if hook is not None:
            return hook(self.env, cost, wait, io, since)
        return self.env.timeout(cost + wait)

    # ------------------------------------------------------------------ panic
    def panic(self, reason: str) -> None:
        """The guest stops: the PhysicalMemory beneath it is told (a VM frees all its
        memory and is reported dead), and KernelPanic unwinds whatever was running; the
        simulation around the guest goes on."""
        self.panicked = reason
        hook = getattr(self.phys, "guest_panicked", None)
        if hook is not None:
            hook(reason)
        raise KernelPanic(reason)


