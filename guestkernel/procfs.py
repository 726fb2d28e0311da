"""/proc and /proc/sys/vm of one guest, as text formatted like Linux 6.x prints it.

`read(path)` returns the file's text; `write(path, text)` sets a /proc/sys/vm tunable or a
writable per-process file. Like Linux: an unknown path raises FileNotFoundError, a value
that does not parse or is out of range raises ValueError, and a failed write changes
nothing. Subsystems add files with `register(path, reader, writer)` and per-process files
with `register_pid(name, reader, writer)` (/proc/<pid>/<name>).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .page_alloc import MIGRATE_TYPES, MIGRATETYPE_NAMES, NR_ORDERS, ZONE_LAYOUT
from .units import PAGE_SHIFT, PAGE_SIZE

if TYPE_CHECKING:
    from .kernel import Kernel

INT_MAX = (1 << 31) - 1
INT_MIN = -(1 << 31)
ULONG_MAX = (1 << 64) - 1
UINT_MAX = (1 << 32) - 1


def _kb(pages: int) -> int:
    return pages << (PAGE_SHIFT - 10)


class Sysctl:
    """One /proc/sys/vm entry: integer(s) with a range, read from and written to `kernel`."""

    def __init__(self, name: str, lo: int, hi: int, get: Callable[[], object],
                 set: Callable[[object], None] | None, vector: int = 0) -> None:
        self.name = name
        self.lo = lo
        self.hi = hi
        self.get = get
        self.set = set
        self.vector = vector  # number of values for a vector sysctl, 0 for a scalar

    def parse(self, text: str):
        fields = text.split()
        want = self.vector or 1
        if not fields:
            raise ValueError(f"/proc/sys/vm/{self.name}: empty write (EINVAL)")
        if self.vector and len(fields) > want or not self.vector and len(fields) != 1:
            raise ValueError(f"/proc/sys/vm/{self.name}: expected {want} integer(s) (EINVAL)")
        values = []
        for f in fields:
            try:
                v = int(f, 0) if f.lower().startswith("0x") else int(f)
            except ValueError:
                raise ValueError(f"/proc/sys/vm/{self.name}: {f!r} is not an integer (EINVAL)") from None
            if not self.lo <= v <= self.hi:
                raise ValueError(
                    f"/proc/sys/vm/{self.name}: {v} outside [{self.lo}, {self.hi}] (EINVAL)"
                )
            values.append(v)
        if self.vector:
            current = list(self.get())
            current[: len(values)] = values
            return current
        return values[0]

    def render(self) -> str:
        value = self.get()
        if self.vector:
            return "\t".join(str(v) for v in value) + "\n"
        return f"{value}\n"


class ProcFS:
    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.files: dict[str, tuple[Callable[[], str], Callable[[str], None] | None]] = {}
        self.pid_files: dict[str, tuple[Callable, Callable | None]] = {}
        self.sysctls: dict[str, Sysctl] = {}
        self.register("/proc/meminfo", self.meminfo)
        self.register("/proc/buddyinfo", self.buddyinfo)
        if kernel.config.era == "6.x":  # grouping by mobility and pagetypeinfo: 2.6.24
            self.register("/proc/pagetypeinfo", self.pagetypeinfo)
        self.register("/proc/zoneinfo", self.zoneinfo)
        self.register("/proc/vmstat", self.vmstat)
        self.register("/proc/slabinfo", self.slabinfo, self.slabinfo_write)
        self._register_sysctls()

    # ------------------------------------------------------------------ registry
    def register(self, path: str, reader: Callable[[], str],
                 writer: Callable[[str], None] | None = None) -> None:
        self.files[path] = (reader, writer)

    def register_pid(self, name: str, reader: Callable, writer: Callable | None = None) -> None:
        """/proc/<pid>/<name>: reader(task) -> str, writer(task, text)."""
        self.pid_files[name] = (reader, writer)

    def register_sysctl(self, sysctl: Sysctl) -> None:
        self.sysctls[sysctl.name] = sysctl

    def _lookup(self, path: str):
        path = "/" + path.strip("/")
        if path in self.files:
            return self.files[path], None
        if path.startswith("/proc/sys/vm/"):
            sc = self.sysctls.get(path[len("/proc/sys/vm/"):])
            if sc is not None:
                return (sc.render, sc), None
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "proc" and parts[3] in self.pid_files:
            task = None
            if parts[2] == "self":
                task = getattr(self.kernel, "current", None)
            elif parts[2].isdigit():
                task = self.kernel.tasks.get(int(parts[2]))
            if task is not None and getattr(task, "mm", True) is not None or task is not None:
                return self.pid_files[parts[3]], task
        raise FileNotFoundError(f"{path}: No such file or directory")

    def read(self, path: str) -> str:
        (reader, _), task = self._lookup(path)
        return reader(task) if task is not None else reader()

    def write(self, path: str, text: str) -> None:
        (reader, writer), task = self._lookup(path)
        if isinstance(writer, Sysctl):
            if writer.set is None:
                raise PermissionError(f"{path}: read-only (EACCES)")
            value = writer.parse(text)  # raises before anything changes
            writer.set(value)
            return
        if writer is None:
            raise PermissionError(f"{path}: Permission denied")
        if task is not None:
            writer(task, text)
        else:
            writer(text)

    def exists(self, path: str) -> bool:
        try:
            self._lookup(path)
        except FileNotFoundError:
            return False
        return True

    def listdir(self) -> list[str]:
        return sorted(list(self.files) + [f"/proc/sys/vm/{n}" for n in self.sysctls])

    # ------------------------------------------------------------------ /proc/sys/vm
    def _register_sysctls(self) -> None:
        k = self.kernel
        cfg = k.config
        alloc = k.page_alloc

        def cfg_entry(name: str, lo: int, hi: int, attr: str | None = None):
            attr = attr or name

            def get():
                return getattr(cfg, attr)

            def set_(v):
                setattr(cfg, attr, v)

            self.register_sysctl(Sysctl(name, lo, hi, get, set_))

        self.register_sysctl(Sysctl(
            "min_free_kbytes", 0, INT_MAX, lambda: alloc.min_free_kbytes, alloc.set_min_free_kbytes))
        self.register_sysctl(Sysctl(
            "watermark_scale_factor", 1, 3000, lambda: alloc.watermark_scale_factor,
            alloc.set_watermark_scale_factor))
        self.register_sysctl(Sysctl(
            "watermark_boost_factor", 0, INT_MAX, lambda: alloc.watermark_boost_factor,
            alloc.set_watermark_boost_factor))
        if cfg.era == "6.x":
            self.register_sysctl(Sysctl(
                "percpu_pagelist_high_fraction", 0, INT_MAX,
                lambda: alloc.percpu_pagelist_high_fraction, alloc.set_percpu_pagelist_high_fraction))
        nz = len(ZONE_LAYOUT[cfg.arch])
        self.register_sysctl(Sysctl(
            "lowmem_reserve_ratio", 0, INT_MAX, lambda: list(alloc.lowmem_reserve_ratio),
            alloc.set_lowmem_reserve_ratio, vector=nz))

        def set_user_reserve(v):
            k.user_reserve_kbytes = v

        def set_admin_reserve(v):
            k.admin_reserve_kbytes = v

        self.register_sysctl(Sysctl(
            "user_reserve_kbytes", 0, ULONG_MAX, lambda: k.user_reserve_kbytes, set_user_reserve))
        self.register_sysctl(Sysctl(
            "admin_reserve_kbytes", 0, ULONG_MAX, lambda: k.admin_reserve_kbytes, set_admin_reserve))
        cfg_entry("swappiness", 0, 200)
        cfg_entry("vfs_cache_pressure", 0, INT_MAX)
        cfg_entry("overcommit_memory", 0, 2)
        cfg_entry("overcommit_ratio", 0, INT_MAX)
        cfg_entry("overcommit_kbytes", 0, ULONG_MAX)
        cfg_entry("panic_on_oom", 0, 2)
        cfg_entry("oom_kill_allocating_task", INT_MIN, INT_MAX)
        cfg_entry("oom_dump_tasks", INT_MIN, INT_MAX)
        self._register_dirty_sysctls()
        cfg_entry("dirty_expire_centisecs", 0, INT_MAX)
        cfg_entry("dirty_writeback_centisecs", 0, INT_MAX)
        cfg_entry("max_map_count", 0, INT_MAX)
        cfg_entry("mmap_min_addr", 0, ULONG_MAX)
        cfg_entry("page-cluster", 0, 31, "page_cluster")
        cfg_entry("stat_interval", 1, INT_MAX)

        def drop_caches(v: int) -> None:
            hook = getattr(k, "drop_caches", None)
            if hook is not None:
                hook(v)

        self.register_sysctl(Sysctl("drop_caches", 1, 4, lambda: 0, drop_caches))

    def _register_dirty_sysctls(self) -> None:
        """vm.dirty_ratio / dirty_bytes and dirty_background_ratio / dirty_background_bytes
        as 6.1's handlers (mm/page-writeback.c): writing one of a pair zeroes its twin
        (dirty_ratio_handler and dirty_bytes_handler only when the value changed;
        dirty_background_ratio_handler always, dirty_background_bytes_handler on any
        successful write); dirty_bytes is at least dirty_bytes_min (2 pages),
        dirty_background_bytes at least 1; a byte value over UINT_MAX pages is -ERANGE
        and keeps the old one. The *_bytes files exist from 2.6.29 (6.x era only)."""
        k = self.kernel
        cfg = k.config

        def set_ratelimit() -> None:
            r = getattr(k, "reclaim", None)
            if r is not None:
                r.writeback_set_ratelimit()

        def set_dirty_ratio(v: int) -> None:
            changed = v != cfg.dirty_ratio
            cfg.dirty_ratio = v
            if changed:
                cfg.dirty_bytes = 0
                set_ratelimit()

        def set_dirty_background_ratio(v: int) -> None:
            cfg.dirty_background_ratio = v
            cfg.dirty_background_bytes = 0

        def bytes_setter(name: str, twin: str, only_on_change: bool):
            def set_(v: int) -> None:
                if -(-v // PAGE_SIZE) > UINT_MAX:
                    raise ValueError(f"/proc/sys/vm/{name}: {v} is over {UINT_MAX} pages (ERANGE)")
                old = getattr(cfg, name)
                setattr(cfg, name, v)
                if v != old or not only_on_change:
                    setattr(cfg, twin, 0)
                if only_on_change and v != old:  # dirty_bytes_handler
                    set_ratelimit()
            return set_

        self.register_sysctl(Sysctl("dirty_ratio", 0, 100, lambda: cfg.dirty_ratio, set_dirty_ratio))
        self.register_sysctl(Sysctl("dirty_background_ratio", 0, 100, lambda: cfg.dirty_background_ratio,
                                    set_dirty_background_ratio))
        if cfg.era == "6.x":
            self.register_sysctl(Sysctl(
                "dirty_bytes", 2 * PAGE_SIZE, ULONG_MAX, lambda: cfg.dirty_bytes,
                bytes_setter("dirty_bytes", "dirty_ratio", True)))
            self.register_sysctl(Sysctl(
                "dirty_background_bytes", 1, ULONG_MAX, lambda: cfg.dirty_background_bytes,
                bytes_setter("dirty_background_bytes", "dirty_background_ratio", False)))

    # ------------------------------------------------------------------ files
    def meminfo(self) -> str:
        k = self.kernel
        alloc = k.page_alloc
        vm = k.vmstat
        total = alloc.totalram_pages()
        free = alloc.nr_free_pages()
        file_pages = vm["nr_file_pages"]
        swapcached = vm["nr_swapcached"]
        buffers = vm.get("nr_buffers", 0)
        cached = max(file_pages - swapcached - buffers, 0)
        available = k.si_mem_available()
        slab_r, slab_u = vm["nr_slab_reclaimable"], vm["nr_slab_unreclaimable"]
        rows = [
            ("MemTotal", total),
            ("MemFree", free),
            ("MemAvailable", available),
            ("Buffers", buffers),
            ("Cached", cached),
            ("SwapCached", swapcached),
            ("Active", vm["nr_active_anon"] + vm["nr_active_file"]),
            ("Inactive", vm["nr_inactive_anon"] + vm["nr_inactive_file"]),
            ("Active(anon)", vm["nr_active_anon"]),
            ("Inactive(anon)", vm["nr_inactive_anon"]),
            ("Active(file)", vm["nr_active_file"]),
            ("Inactive(file)", vm["nr_inactive_file"]),
            ("Unevictable", vm["nr_unevictable"]),
            ("Mlocked", vm["nr_mlock"]),
        ]
        if k.config.arch == "i386":
            high_total = alloc.totalhigh_pages()
            high_free = alloc.free_high_pages()
            rows += [
                ("HighTotal", high_total),
                ("HighFree", high_free),
                ("LowTotal", total - high_total),
                ("LowFree", free - high_free),
            ]
        rows += [
            ("SwapTotal", k.total_swap_pages()),
            ("SwapFree", k.free_swap_pages()),
            ("Zswap", vm.get("nr_zswap_pages", 0)),
            ("Zswapped", vm.get("nr_zswapped", 0)),
            ("Dirty", vm["nr_dirty"]),
            ("Writeback", vm["nr_writeback"]),
            ("AnonPages", vm["nr_anon_pages"]),
            ("Mapped", vm["nr_mapped"]),
            ("Shmem", vm["nr_shmem"]),
            ("KReclaimable", slab_r),
            ("Slab", slab_r + slab_u),
            ("SReclaimable", slab_r),
            ("SUnreclaim", slab_u),
            ("KernelStack", vm["nr_kernel_stack"] >> 2),  # vmstat counts KiB, rows pages
            ("PageTables", vm["nr_page_table_pages"]),
            ("SecPageTables", 0),
            ("NFS_Unstable", 0),
            ("Bounce", vm["nr_bounce"]),
            ("WritebackTmp", 0),
            ("CommitLimit", k.vm_commit_limit()),
            ("Committed_AS", max(k.committed_as, 0)),
        ]
        lines = [f"{name + ':':<16}{_kb(v):>8} kB" for name, v in rows]
        # VMALLOC_END - VMALLOC_START: 32 TiB on x86_64, 120 MiB on i386 (3G/1G split)
        vmalloc_total = 34359738367 if k.config.arch == "x86_64" else 122880
        lines += [
            f"{'VmallocTotal:':<16}{vmalloc_total:>8} kB",
            f"{'VmallocUsed:':<16}{0:>8} kB",
            f"{'VmallocChunk:':<16}{0:>8} kB",
            f"{'Percpu:':<16}{_kb(k.config.cpus * 8):>8} kB",
            f"{'HardwareCorrupted:':<16}{0:>5} kB",
            f"{'AnonHugePages:':<16}{_kb(k.thp.anon_huge_pages() if k.thp is not None else 0):>8} kB",
            f"{'ShmemHugePages:':<16}{_kb(k.thp.shmem_huge_pages() if k.thp is not None else 0):>8} kB",
            f"{'ShmemPmdMapped:':<16}{_kb(k.thp.shmem_pmd_mapped() if k.thp is not None else 0):>8} kB",
            f"{'FileHugePages:':<16}{_kb(k.thp.file_huge_pages() if k.thp is not None else 0):>8} kB",
            f"{'FilePmdMapped:':<16}{_kb(k.thp.file_pmd_mapped() if k.thp is not None else 0):>8} kB",
            f"{'HugePages_Total:':<16}{0:>8}",
            f"{'HugePages_Free:':<16}{0:>8}",
            f"{'HugePages_Rsvd:':<16}{0:>8}",
            f"{'HugePages_Surp:':<16}{0:>8}",
            f"{'Hugepagesize:':<16}{2048 if k.config.arch == 'x86_64' else 4096:>8} kB",
            f"{'Hugetlb:':<16}{0:>8} kB",
            f"{'DirectMap4k:':<16}{_kb(k.nr_pages):>8} kB",
        ]
        return "\n".join(lines) + "\n"

    def buddyinfo(self) -> str:
        out = []
        for node in self.kernel.page_alloc.nodes:
            for zone in node.zones:
                if not zone.populated():
                    continue
                out.append(buddyinfo_line(node.nid, zone.name,
                                          [zone.free_area[o].nr_free for o in range(NR_ORDERS)]))
        return "".join(out)

    def pagetypeinfo(self) -> str:
        """/proc/pagetypeinfo (mm/vmstat.c pagetypeinfo_show), node by node."""
        alloc = self.kernel.page_alloc
        out = []
        for node in alloc.nodes:
            zones = [z for z in node.zones if z.populated()]
            if not zones:
                continue
            out.append(pagetypeinfo_header(alloc.pageblock_order))
            for zone in zones:
                for mt in range(MIGRATE_TYPES):
                    counts = [min(area.free_list[mt].nr, PAGETYPEINFO_CAP) for area in zone.free_area]
                    out.append(pagetypeinfo_free_line(node.nid, zone.name, MIGRATETYPE_NAMES[mt], counts))
            out.append(pagetypeinfo_block_header())
            nb = alloc.pageblock_nr_pages
            for zone in zones:
                count = [0] * MIGRATE_TYPES
                for pfn in range(zone.zone_start_pfn, zone.end_pfn, nb):
                    count[alloc.pageblock_mt[pfn >> alloc.pageblock_order]] += 1
                out.append(pagetypeinfo_block_line(node.nid, zone.name, count))
        return "".join(out)

    def zoneinfo(self) -> str:
        k = self.kernel
        alloc = k.page_alloc
        era26 = alloc.era == "2.6"
        out: list[str] = []
        for node in alloc.nodes:
            first = True
            zones = node.zones + [None]  # Movable: always present, never populated here
            for zone in zones:
                name = zone.name if zone is not None else "Movable"
                s = f"Node {node.nid}, zone {name:>8}"
                populated = zone is not None and zone.populated()
                if populated and first:
                    first = False
                    s += "\n  per-node stats"
                    for item in ("nr_inactive_anon", "nr_active_anon", "nr_inactive_file",
                                 "nr_active_file", "nr_unevictable", "nr_slab_reclaimable",
                                 "nr_slab_unreclaimable", "nr_anon_pages", "nr_mapped",
                                 "nr_file_pages", "nr_dirty", "nr_writeback", "nr_shmem"):
                        s += f"\n      {item:<12} {k.vmstat[item] if len(alloc.nodes) == 1 else 0}"
                if zone is not None:
                    wmin, wlow, whigh = zone.watermark  # wmark_pages(): with the boost
                    boost = zone.watermark_boost
                    free, spanned, present, managed = (
                        zone.nr_free, zone.spanned_pages, zone.present_pages, zone.managed_pages)
                    prot = zone.lowmem_reserve + [zone.lowmem_reserve[-1] if zone.lowmem_reserve else 0]
                else:
                    wmin = wlow = whigh = free = spanned = present = managed = boost = 0
                    prot = [0] * (len(node.zones) + 1)
                s += (
                    f"\n  pages free     {free}"
                    f"\n        boost    {boost}"
                    f"\n        min      {wmin}"
                    f"\n        low      {wlow}"
                    f"\n        high     {whigh}"
                    f"\n        promo    {whigh + (whigh - wlow)}"
                    f"\n        spanned  {spanned}"
                    f"\n        present  {present}"
                    f"\n        managed  {managed}"
                    f"\n        cma      0"
                    f"\n        protection: ({', '.join(str(p) for p in prot)})"
                )
                if not populated:
                    out.append(s + "\n")
                    continue
                s += f"\n      nr_free_pages {zone.nr_free}"
                s += "\n  pagesets"
                for cpu, lists in enumerate(zone.pcp):
                    if len(lists) == 1:  # 6.x zoneinfo_show_print: one pageset per CPU
                        pcp = lists[0]
                        s += (
                            f"\n    cpu: {cpu}"
                            f"\n              count: {pcp.count}"
                            f"\n              high:  {pcp.high}"
                            f"\n              batch: {pcp.batch}"
                        )
                        continue
                    for which, pcp in enumerate(lists):
                        s += (
                            f"\n    cpu: {cpu} pcp: {which}"
                            f"\n              count: {pcp.count}"
                            f"\n              high:  {pcp.high}"
                            f"\n              batch: {pcp.batch}"
                        )
                s += (
                    f"\n  node_unreclaimable:  {int(node.kswapd_failures >= 16)}"
                    f"\n  start_pfn:           {zone.zone_start_pfn}"
                )
                if era26:
                    s += f"\n  all_unreclaimable: {int(node.kswapd_failures >= 16)}"
                out.append(s + "\n")
        return "".join(out)

    def vmstat(self) -> str:
        k = self.kernel
        vm = dict(k.vmstat)
        alloc = k.page_alloc
        vm["nr_free_pages"] = alloc.nr_free_pages()
        r = k.__dict__.get("reclaim")
        if r is not None:  # global_dirty_limits at read time (vmstat_start)
            vm["nr_dirty_background_threshold"], vm["nr_dirty_threshold"] = r.dirty_thresholds()
        for key in ("pgalloc_dma", "pgalloc_dma32", "pgalloc_normal", "pgalloc_high"):
            vm[key] = 0
        for zone in alloc.zones:
            key = {"DMA": "pgalloc_dma", "DMA32": "pgalloc_dma32", "Normal": "pgalloc_normal",
                   "HighMem": "pgalloc_high"}[zone.name]
            vm[key] += zone.pgalloc
        return "".join(f"{name} {value}\n" for name, value in vm.items())

    def slabinfo(self) -> str:
        slab = self.kernel.slab
        if slab is None:
            raise FileNotFoundError("/proc/slabinfo: No such file or directory")
        return slab.slabinfo()

    def slabinfo_write(self, text: str) -> None:
        """"name limit batchcount shared": tune a cache's per-CPU arrays (2.6 slabinfo 2.1)."""
        if self.kernel.slab is None:
            raise FileNotFoundError("/proc/slabinfo: No such file or directory")
        self.kernel.slab.slabinfo_write(text)


def buddyinfo_line(nid: int, zone: str, counts) -> str:
    """One /proc/buddyinfo line (mm/vmstat.c frag_show_print: "Node %d, zone %8s " then
    "%6lu " per order)."""
    return f"Node {nid}, zone {zone:>8} " + "".join(f"{n:6d} " for n in counts) + "\n"


# /proc/pagetypeinfo lines, as mm/vmstat.c prints them (also used to re-render a real
# kernel's output in the tests)
PAGETYPEINFO_CAP = 100000  # list_for_each stops counting here and prints ">100000"


def pagetypeinfo_header(pageblock_order: int) -> str:
    head = f"Page block order: {pageblock_order}\nPages per block:  {1 << pageblock_order}\n\n"
    head += f"{'Free pages count per migrate type at order':<43} "
    return head + "".join(f"{o:6d} " for o in range(NR_ORDERS)) + "\n"


def pagetypeinfo_free_line(nid: int, zone: str, mtname: str, counts) -> str:
    cells = "".join((">" if c >= PAGETYPEINFO_CAP else "") + f"{c:6d} " for c in counts)
    return f"Node {nid:4d}, zone {zone:>8}, type {mtname:>12} " + cells + "\n"


def pagetypeinfo_block_header() -> str:
    return f"\n{'Number of blocks type ':<23}" + "".join(f"{n:>12} " for n in MIGRATETYPE_NAMES) + "\n"


def pagetypeinfo_block_line(nid: int, zone: str, counts) -> str:
    return f"Node {nid}, zone {zone:>8} " + "".join(f"{c:12d} " for c in counts) + "\n"
