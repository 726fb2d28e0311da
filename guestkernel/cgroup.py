"""The guest's cgroup file system for the memory controller (kernel/cgroup/, mm/memcontrol.c
of 6.1: the v1 files of mem_cgroup_legacy_files, the v2 files of memory_files).

A 6.x guest mounts one hierarchy, the kernel setting `cgroup_version`:

- 2 (the default: Debian 12 boots with the unified hierarchy): cgroup2 at /sys/fs/cgroup,
  mounted with memory_recursiveprot as Debian 12's systemd mounts it. A child cgroup has
  memory.current, memory.min, memory.low (reclaim protection), memory.max, memory.high,
  memory.peak, memory.events, memory.events.local, memory.stat, memory.swap.current,
  memory.swap.max, memory.swap.events (swap slots charged at add_to_swap:
  __mem_cgroup_try_charge_swap) and cgroup.procs. The root has memory.stat and
  cgroup.procs only.
- 1: the memory controller's own hierarchy at /sys/fs/cgroup/memory. Each cgroup has
  memory.usage_in_bytes, memory.max_usage_in_bytes (the watermark; writing resets it),
  memory.limit_in_bytes (the root's cannot be set: EINVAL), memory.failcnt (writing
  resets it), memory.stat, memory.swappiness, memory.move_charge_at_immigrate,
  memory.oom_control, memory.memsw.usage_in_bytes, memory.memsw.max_usage_in_bytes,
  memory.memsw.limit_in_bytes, memory.memsw.failcnt (memory+swap: a swapped page stays
  charged to memsw until its slot is freed), cgroup.procs and tasks.

Paths are absolute (under the mount point). `mkdir(path)` creates a cgroup (its parent
must exist), `rmdir(path)` removes an empty one; `read(path)` returns a file's text and
`write(path, text)` writes it as echo would (a limit takes bytes with memparse's K/M/G
suffixes, "-1" (v1) or "max" (v2) for none; it is rounded down to pages). Writing a pid
to cgroup.procs or tasks moves the task (`attach(task, path)` does the same). As Linux:
an unknown path raises FileNotFoundError, an existing one FileExistsError, a value that
does not parse ValueError (EINVAL), a write the kernel refuses OSError with its errno
(EBUSY, EINVAL, ESRCH).

Kernel memory (memcontrol.py: page tables, kernel stacks, SLAB_ACCOUNT slab objects) is
charged to the memory counter; v1 has memory.kmem.usage_in_bytes, max_usage_in_bytes,
failcnt and limit_in_bytes (6.1: writing it has no effect), v2's memory.stat kernel,
kernel_stack, pagetables and slab lines.

Not modelled: the tcp counters, soft limits, memory.oom.group, memory.swap.high,
cgroup.subtree_control (the
memory controller is enabled in every v2 cgroup), other hierarchies (/proc/PID/cgroup and
/proc/mounts list the memory one only: no systemd, cpu or pids hierarchy, no tmpfs at
/sys/fs/cgroup under v1, no hybrid cgroup2 at /sys/fs/cgroup/unified).
"""

from __future__ import annotations

from .memcontrol import EBUSY, EINVAL, MEMCG_EVENTS, PAGE_COUNTER_MAX, MemCg
from .mount import memparse
from .page import PG_anon, PG_dirty, PG_swapbacked, PG_thp, PG_thpfile, PG_writeback
from .units import PAGE_SHIFT, PAGE_SIZE

ESRCH = 3
V1_ROOT = "/sys/fs/cgroup/memory"
V2_ROOT = "/sys/fs/cgroup"
LRU_STAT = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")


class CgroupFS:
    """The mounted memory-cgroup hierarchy of one guest (kernel.cgroup)."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.tree = kernel.memcgs
        self.version = self.tree.version
        self.mount_point = V2_ROOT if self.version == 2 else V1_ROOT

    # ------------------------------------------------------------------ paths
    def _split(self, path: str) -> list[str]:
        mp = self.mount_point
        p = "/" + "/".join(x for x in path.split("/") if x)
        if p == mp:
            return []
        if not p.startswith(mp + "/"):
            raise FileNotFoundError(f"{path}: not under the cgroup mount {mp}")
        return p[len(mp) + 1:].split("/")

    def lookup(self, path: str) -> MemCg:
        """The cgroup at `path` (a directory)."""
        m = self.tree.root
        for name in self._split(path):
            for c in m.children:
                if c.name == name:
                    m = c
                    break
            else:
                raise FileNotFoundError(f"{path}: no such cgroup")
        return m

    def _file(self, path: str) -> tuple[MemCg, str]:
        parts = self._split(path)
        if not parts:
            raise FileNotFoundError(f"{path}: a directory, not a file")
        head = self.mount_point + "/" + "/".join(parts[:-1]) if parts[:-1] else self.mount_point
        m = self.lookup(head)
        name = parts[-1]
        if name not in self.files(m):
            raise FileNotFoundError(f"{path}: no such file")
        return m, name

    def files(self, m: MemCg) -> tuple[str, ...]:
        if self.version == 1:
            return ("cgroup.procs", "tasks", "memory.usage_in_bytes", "memory.max_usage_in_bytes",
                    "memory.limit_in_bytes", "memory.failcnt", "memory.stat", "memory.swappiness",
                    "memory.move_charge_at_immigrate", "memory.oom_control",
                    "memory.memsw.usage_in_bytes", "memory.memsw.max_usage_in_bytes",
                    "memory.memsw.limit_in_bytes", "memory.memsw.failcnt",
                    "memory.kmem.limit_in_bytes", "memory.kmem.usage_in_bytes",
                    "memory.kmem.failcnt", "memory.kmem.max_usage_in_bytes")
        if m.parent is None:
            return ("cgroup.procs", "memory.stat")
        return ("cgroup.procs", "memory.current", "memory.min", "memory.low", "memory.max",
                "memory.high", "memory.peak",
                "memory.events", "memory.events.local", "memory.stat", "memory.swap.current",
                "memory.swap.max", "memory.swap.events")

    def listdir(self, path: str) -> list[str]:
        m = self.lookup(path)
        return sorted([*self.files(m), *(c.name for c in m.children)])

    def exists(self, path: str) -> bool:
        try:
            self.lookup(path)
            return True
        except FileNotFoundError:
            try:
                self._file(path)
                return True
            except FileNotFoundError:
                return False

    # ------------------------------------------------------------------ mkdir / rmdir
    def mkdir(self, path: str) -> MemCg:
        parts = self._split(path)
        if not parts:
            raise FileExistsError(f"{path}: exists")
        parent_path = self.mount_point + ("/" + "/".join(parts[:-1]) if parts[:-1] else "")
        parent = self.lookup(parent_path)
        name = parts[-1]
        if name in self.files(parent) or any(c.name == name for c in parent.children):
            raise FileExistsError(f"{path}: exists")
        return self.tree.mkdir(parent, name)

    def rmdir(self, path: str) -> None:
        m = self.lookup(path)
        if m.parent is None:
            raise OSError(EBUSY, f"rmdir {path}: the root cgroup")
        if m.tasks or m.children:
            raise OSError(EBUSY, f"rmdir {path}: not empty (tasks or child cgroups)")
        self.tree.rmdir(m)

    # ------------------------------------------------------------------ tasks
    def attach(self, task, path: str) -> None:
        """Move `task` (a Task or a pid) into the cgroup at `path` (echo PID >
        cgroup.procs)."""
        m = self.lookup(path)
        if isinstance(task, int):
            t = self.kernel.tasks.get(task)
            if t is None or t.state != "running":
                raise OSError(ESRCH, f"{path}/cgroup.procs: no process {task}")
            task = t
        self.tree.attach(task, m)

    def procs(self, m: MemCg) -> list[int]:
        if m.parent is None:
            inside = {id(t) for c in m.iter() if c.parent is not None for t in c.tasks}
            return sorted(t.pid for t in self.kernel.tasks.values()
                          if t.state == "running" and id(t) not in inside)
        return sorted(t.pid for t in m.tasks if t.state == "running")

    # ------------------------------------------------------------------ /proc
    def mount_line(self) -> str:
        """The hierarchy's /proc/mounts line (show_vfsmnt) as Debian 12's systemd mounts
        it (MS_NOSUID | MS_NODEV | MS_NOEXEC, relatime by default): cgroup2 with
        nsdelegate,memory_recursiveprot (cgroup_show_options), or the v1 memory
        controller's hierarchy (cgroup1_show_options: its subsystem)."""
        if self.version == 2:
            return (f"cgroup2 {V2_ROOT} cgroup2 "
                    "rw,nosuid,nodev,noexec,relatime,nsdelegate,memory_recursiveprot 0 0\n")
        return f"cgroup {V1_ROOT} cgroup rw,nosuid,nodev,noexec,relatime,memory 0 0\n"

    def proc_pid_cgroup(self, task) -> str:
        """/proc/PID/cgroup (proc_cgroup_show): one line per mounted hierarchy,
        "hierarchy-id:controllers:path". v2: the default hierarchy, id 0, no controller
        list ("0::/path", " (deleted)" after a removed cgroup); v1: the memory
        controller's hierarchy, the first one mounted (id 1): "1:memory:/path". The guest
        mounts no other hierarchy."""
        m = getattr(task, "memcg", None) or self.tree.root
        if self.version == 2:
            return f"0::{m.path}{'' if m.online else ' (deleted)'}\n"
        return f"1:memory:{m.path}\n"

    # ------------------------------------------------------------------ read
    def read(self, path: str) -> str:
        m, name = self._file(path)
        if name in ("cgroup.procs", "tasks"):
            return "".join(f"{pid}\n" for pid in self.procs(m))
        c = m.memory
        if name == "memory.stat":
            return self.memory_stat(m)
        if name in ("memory.usage_in_bytes", "memory.current"):
            return f"{self.usage_pages(m) * PAGE_SIZE}\n"
        if name in ("memory.max_usage_in_bytes", "memory.peak"):
            return f"{c.watermark * PAGE_SIZE}\n"
        if name == "memory.limit_in_bytes":
            return f"{c.max * PAGE_SIZE}\n"
        if name == "memory.failcnt":
            return f"{c.failcnt}\n"
        if name.startswith("memory.kmem."):
            # v1's kmem counter (mem_cgroup_read_u64, _KMEM): the kernel pages charged to
            # the memcg and its descendants (memcg_account_kmem); never limited in 6.1
            k = m.kmem
            v = {"usage_in_bytes": k.usage * PAGE_SIZE, "max_usage_in_bytes": k.watermark * PAGE_SIZE,
                 "limit_in_bytes": k.max * PAGE_SIZE, "failcnt": k.failcnt}[name[len("memory.kmem."):]]
            return f"{v}\n"
        if name in ("memory.max", "memory.high", "memory.min", "memory.low"):
            v = {"memory.max": c.max, "memory.high": c.high, "memory.min": c.min,
                 "memory.low": c.low}[name]
            return "max\n" if v == PAGE_COUNTER_MAX else f"{v * PAGE_SIZE}\n"
        if name in ("memory.events", "memory.events.local"):
            ev = m.events if name == "memory.events" else m.events_local
            return "".join(f"{e} {ev[e]}\n" for e in MEMCG_EVENTS)
        if name == "memory.swap.current":
            return f"{m.swap.usage * PAGE_SIZE}\n"
        if name == "memory.swap.max":
            v = m.swap.max
            return "max\n" if v == PAGE_COUNTER_MAX else f"{v * PAGE_SIZE}\n"
        if name == "memory.swap.events":
            ev = m.events
            return f"high {ev['swap_high']}\nmax {ev['swap_max']}\nfail {ev['swap_fail']}\n"
        if name == "memory.memsw.usage_in_bytes":
            return f"{self.memsw_usage_pages(m) * PAGE_SIZE}\n"
        if name == "memory.memsw.max_usage_in_bytes":
            return f"{m.memsw.watermark * PAGE_SIZE}\n"
        if name == "memory.memsw.limit_in_bytes":
            return f"{m.memsw.max * PAGE_SIZE}\n"
        if name == "memory.memsw.failcnt":
            return f"{m.memsw.failcnt}\n"
        if name == "memory.swappiness":
            return f"{self.kernel.reclaim.mem_cgroup_swappiness(m.lruvec(0))}\n"
        if name == "memory.move_charge_at_immigrate":
            return f"{m.move_charge_at_immigrate}\n"
        if name == "memory.oom_control":
            # mem_cgroup_oom_control_read: under_oom as a bool; oom_kill the hierarchical
            # memory_events[MEMCG_OOM_KILL] (the root's: its own, hvsim's events_local)
            ev = m.events if m.parent is not None else m.events_local
            return (f"oom_kill_disable {m.oom_kill_disable}\nunder_oom {int(bool(m.under_oom))}\n"
                    f"oom_kill {ev['oom_kill']}\n")
        raise FileNotFoundError(path)  # (files() lists nothing else)

    def usage_pages(self, m: MemCg) -> int:
        """mem_cgroup_usage: a child's page counter; the root's from the node statistics
        (NR_FILE_PAGES + NR_ANON_MAPPED)."""
        if m.parent is not None:
            return m.memory.usage
        vm = self.kernel.vmstat
        return vm["nr_file_pages"] + vm["nr_anon_pages"]

    def memsw_usage_pages(self, m: MemCg) -> int:
        """mem_cgroup_usage(memcg, true): a child's memsw counter; the root's: its memory
        usage and its MEMCG_SWAP (every slot in use and not in the swap cache)."""
        if m.parent is not None:
            return m.memsw.usage
        return self.usage_pages(m) + sum(self._swapped().values())

    def _lru_counts(self, m: MemCg, subtree: bool) -> dict:
        """Pages on the lruvecs of m (and its descendants): per list, and by kind."""
        out = dict.fromkeys(LRU_STAT, 0)
        out.update(anon=0, file=0, shmem=0, rss=0, cache=0, anon_thp=0, mapped_file=0,
                   dirty=0, writeback=0, swap=0)
        swapped = self._swapped()
        for mc in (m.iter() if subtree else (m,)):
            out["swap"] += swapped.get(mc, 0)
            for lv in mc.lruvecs:
                for lru, lst in enumerate(lv.lists):
                    out[LRU_STAT[lru]] += lst.nr
                    for page in lst:
                        f = page.flags
                        n = 512 if f & (PG_thp | PG_thpfile) else 1
                        if f & PG_writeback:
                            out["writeback"] += n  # NR_WRITEBACK: anon to swap too
                        if f & PG_anon:
                            out["anon"] += n
                            if f & PG_thp:
                                out["anon_thp"] += n
                            if page._mapcount >= 0 or f & PG_thp:
                                out["rss"] += n
                            else:
                                out["cache"] += n  # in the swap cache, unmapped
                        else:
                            out["file"] += n
                            out["cache"] += n
                            if page._mapcount >= 0:
                                out["mapped_file"] += n  # NR_FILE_MAPPED
                            if f & PG_swapbacked:
                                out["shmem"] += n
                            elif f & PG_dirty:
                                out["dirty"] += n  # NR_FILE_DIRTY (shmem has no dirty accounting)
        return out

    def _local(self, m: MemCg, key: str) -> int:
        """A memcg's own count of a fault event or workingset refault; the root's: the
        machine's less every child cgroup's (hvsim counts them per child only)."""
        def own(c: MemCg) -> int:
            return c.workingset_refault[key] if key.startswith("workingset") else getattr(c, key)

        if m.parent is not None:
            return own(m)
        return self.kernel.vmstat[key] - sum(own(c) for c in m.iter() if c.parent is not None)

    def _swapped(self) -> dict:
        """MEMCG_SWAP per memcg, v1 (memsw accounting): the slots recorded for it when
        reclaim swapped its pages out (mem_cgroup_swapout), until the slot is freed or a
        swap-in takes the page back (mem_cgroup_swapin_uncharge_swap: the record of a
        slot whose page is in the swap cache again no longer counts). The root's: the
        slots in use, not in the swap cache, that no child cgroup's record holds."""
        sw = getattr(self.kernel, "swap", None)
        if sw is None:
            return {}
        cache = sw.swap_cache
        out: dict = {}
        for entry, owner in self.tree.swap_cgroup.items():
            if entry not in cache:
                out[owner] = out.get(owner, 0) + 1
        used = sw.total_swap_pages() - sw.free_swap_pages()
        out[self.tree.root] = used - len(cache) - sum(out.values())
        return out

    def memory_stat(self, m: MemCg) -> str:
        """memory.stat: v1 (memcg1_stat_show: the local values, then hierarchical_memory_
        limit and the total_ ones) or v2 (memory_stat_format: hierarchical), in bytes for
        sizes. Exact (hvsim reads the lists; the root's rstat lag is in memcontrol.py)."""
        if self.version == 1:
            # memcg_stat_show (6.1): memcg1_stats, memcg1_events, the LRU lists, the
            # hierarchical limits (memsw: never limited in hvsim), then the total_ ones
            loc = self._lru_counts(m, False)
            tot = self._lru_counts(m, True)
            lines = []
            for prefix, vals, mcs in (("", loc, (m,)), ("total_", tot, tuple(m.iter()))):
                if prefix:
                    limit = min(a.memory.max for a in self._ancestors(m))
                    lines.append(f"hierarchical_memory_limit {limit * PAGE_SIZE}")
                    limit = min(a.memsw.max for a in self._ancestors(m))
                    lines.append(f"hierarchical_memsw_limit {limit * PAGE_SIZE}")
                stats = {"cache": vals["cache"], "rss": vals["rss"], "rss_huge": vals["anon_thp"],
                         "shmem": vals["shmem"], "mapped_file": vals["mapped_file"],
                         "dirty": vals["dirty"], "writeback": vals["writeback"]}
                for k, v in stats.items():
                    lines.append(f"{prefix}{k} {v * PAGE_SIZE}")
                for k in ("workingset_refault_anon", "workingset_refault_file"):
                    lines.append(f"{prefix}{k} {sum(self._local(c, k) for c in mcs)}")
                lines.append(f"{prefix}swap {vals['swap'] * PAGE_SIZE}")
                lines.append(f"{prefix}pgpgin {sum(c.pgpgin for c in mcs)}")
                lines.append(f"{prefix}pgpgout {sum(c.pgpgout for c in mcs)}")
                for k in ("pgfault", "pgmajfault"):
                    lines.append(f"{prefix}{k} {sum(self._local(c, k) for c in mcs)}")
                for k in LRU_STAT:
                    lines.append(f"{prefix}{k} {vals[k] * PAGE_SIZE}")
            return "\n".join(lines) + "\n"
        tot = self._lru_counts(m, True)
        ks = {k: sum(c.kstat[k] for c in m.iter()) for k in m.kstat}  # kernel memory (6.1)
        lines = [f"anon {tot['anon'] * PAGE_SIZE}", f"file {tot['file'] * PAGE_SIZE}",
                 f"kernel {ks['kernel'] * PAGE_SIZE}", f"kernel_stack {ks['kernel_stack'] * 1024}",
                 f"pagetables {ks['pagetables'] * PAGE_SIZE}",
                 f"shmem {tot['shmem'] * PAGE_SIZE}", f"anon_thp {tot['anon_thp'] * PAGE_SIZE}"]
        for k in LRU_STAT:
            lines.append(f"{k} {tot[k] * PAGE_SIZE}")
        lines.append(f"slab_reclaimable {ks['slab_reclaimable']}")
        lines.append(f"slab_unreclaimable {ks['slab_unreclaimable']}")
        lines.append(f"slab {ks['slab_reclaimable'] + ks['slab_unreclaimable']}")
        ev = {k: sum(c.vmevents[k] for c in m.iter()) for k in m.vmevents}
        lines.append(f"pgscan {ev['pgscan_kswapd'] + ev['pgscan_direct']}")
        lines.append(f"pgsteal {ev['pgsteal_kswapd'] + ev['pgsteal_direct']}")
        for k in ("pgscan_kswapd", "pgscan_direct", "pgsteal_kswapd", "pgsteal_direct"):
            lines.append(f"{k} {ev[k]}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _ancestors(m: MemCg) -> list[MemCg]:
        out = []
        while m is not None:
            out.append(m)
            m = m.parent
        return out

    # ------------------------------------------------------------------ write
    def write(self, path: str, text: str) -> None:
        m, name = self._file(path)
        s = text.strip()
        tree = self.tree
        if name in ("cgroup.procs", "tasks"):
            try:
                pid = int(s)
            except ValueError:
                raise ValueError(f"{path}: {s!r} is not a pid (EINVAL)") from None
            self.attach(pid, self._dir_of(path))
            return
        if name in ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes"):
            if m.parent is None:
                raise OSError(EINVAL, f"{path}: the root cgroup's limit cannot be set")
            ret = tree.resize_max(m, self._pages(path, s, "-1"), name != "memory.limit_in_bytes")
            if ret == -EINVAL:
                raise OSError(EINVAL, f"{path}: {s} would put memory.limit_in_bytes above "
                                      "memory.memsw.limit_in_bytes (EINVAL)")
            if ret:
                raise OSError(-ret, f"{path}: usage cannot be reclaimed below {s} (EBUSY)")
            return
        if name == "memory.kmem.limit_in_bytes":
            # memcg_write (6.1): the root's limit cannot be set (EINVAL); elsewhere the
            # value is parsed and has no effect ("kmem.limit_in_bytes is deprecated")
            if m.parent is None:
                raise OSError(EINVAL, f"{path}: the root cgroup's limit cannot be set")
            self._pages(path, s, "-1")
            return
        if name in ("memory.kmem.max_usage_in_bytes", "memory.kmem.failcnt"):
            if name == "memory.kmem.failcnt":
                m.kmem.failcnt = 0
            else:
                m.kmem.watermark = m.kmem.usage
            return
        if name in ("memory.max_usage_in_bytes", "memory.failcnt",
                    "memory.memsw.max_usage_in_bytes", "memory.memsw.failcnt"):
            c = m.memsw if ".memsw." in name else m.memory
            if name.endswith("failcnt"):
                c.failcnt = 0
            else:
                c.watermark = c.usage  # page_counter_reset_watermark
            return
        if name == "memory.swap.max":
            m.swap.max = self._pages(path, s, "max")  # swap_max_write: no reclaim
            return
        if name == "memory.max":
            tree.memory_max_write(m, self._pages(path, s, "max"))
            return
        if name == "memory.high":
            tree.memory_high_write(m, self._pages(path, s, "max"))
            return
        if name == "memory.min":
            m.memory.set_min(self._pages(path, s, "max"))  # memory_min_write
            return
        if name == "memory.low":
            m.memory.set_low(self._pages(path, s, "max"))  # memory_low_write
            return
        if name == "memory.swappiness":
            v = self._int(path, s)
            if not 0 <= v <= 200:
                raise ValueError(f"{path}: {v} outside [0, 200] (EINVAL)")
            if m.parent is None:
                self.kernel.config.swappiness = v  # the root's is vm_swappiness
            else:
                m.swappiness = v
            return
        if name == "memory.move_charge_at_immigrate":
            v = self._int(path, s)
            if v & ~3:
                raise ValueError(f"{path}: {v} is not a MOVE_* mask (EINVAL)")
            if v:
                raise OSError(EINVAL, f"{path}: moving charges is not modelled")
            m.move_charge_at_immigrate = v
            return
        if name == "memory.oom_control":
            v = self._int(path, s)
            if m.parent is None or v not in (0, 1):
                raise ValueError(f"{path}: {s!r} (EINVAL)")
            m.oom_kill_disable = v
            if not v:
                tree.memcg_oom_recover(m)  # mem_cgroup_oom_control_write
            return
        raise OSError(EINVAL, f"{path}: not writable")

    def _dir_of(self, path: str) -> str:
        return path.rstrip("/").rsplit("/", 1)[0]

    @staticmethod
    def _int(path: str, s: str) -> int:
        try:
            return int(s)
        except ValueError:
            raise ValueError(f"{path}: {s!r} is not an integer (EINVAL)") from None

    @staticmethod
    def _pages(path: str, s: str, unlimited: str) -> int:
        """page_counter_memparse: `unlimited` -> PAGE_COUNTER_MAX, else memparse bytes,
        rounded down to pages, at most PAGE_COUNTER_MAX."""
        if s == unlimited:
            return PAGE_COUNTER_MAX
        try:
            value, rest = memparse(s)
        except (ValueError, IndexError):
            raise ValueError(f"{path}: {s!r} is not a size (EINVAL)") from None
        if rest or not s:
            raise ValueError(f"{path}: {s!r} is not a size (EINVAL)")
        return min(value >> PAGE_SHIFT, PAGE_COUNTER_MAX)


def init_cgroup(kernel) -> CgroupFS | None:
    """Mount the guest's memory-cgroup hierarchy (6.x era; None for 2.6): its line in
    /proc/mounts, and /proc/PID/cgroup."""
    if getattr(kernel, "memcgs", None) is None:
        return None
    cg = CgroupFS(kernel)
    mounts = getattr(kernel, "mounts", None)
    if mounts is not None:
        mounts.add_line(cg.mount_line())
    kernel.procfs.register_pid("cgroup", cg.proc_pid_cgroup)
    return cg
