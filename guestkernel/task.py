"""Task (task_struct), MMStruct (mm_struct), the system-call surface, and /proc/PID files.

A `Task` is a process. Its memory system calls are methods with Linux's signatures and
return values (`brk`, `mmap`, `munmap`, `mprotect`, `mremap`, `madvise`, `mlock`, `mlock2`,
`munlock`, `mlockall`, `munlockall`, `fork`, `execve`, `exit`, `wait4`, `shmget`, `shmat`,
`shmdt`, `shmctl`, `open`, `read`, `write`, `close`, `lseek`, `ftruncate`); a failure raises
`OSError(errno, message)` with Linux's errno. Simulated seconds spent by the last call
(page faults it took, disk reads, stalls beneath the guest) are in `task.last_cost`.

User code touches memory with `access(addr, write, data=None)` and the burst form
`access_range(start, length, write, data=None)`; both return seconds. A fault that ends in
SIGSEGV/SIGBUS kills the process: its memory is freed and `state`, `term_signal`,
`si_code` and `fault_addr` tell what happened; no Python exception reaches the caller.
A fatal signal that arrives while the task is inside the kernel (an OOM kill during its
own allocation) is acted on when the current call returns.

`spawn(kernel, name)` makes a process as after execve of a static binary;
`init_address_spaces(kernel)` sets up this layer at boot (slab caches, the zero page, the
file system, SysV shm, /proc/PID/maps, smaps, smaps_rollup and status, and the vmstat
counters).

What the address-space layer uses of the Kernel: config (arch, pae, era, kernel_image,
mmap_min_addr, max_map_count, overcommit_memory, swap_latency, swap_bandwidth), phys,
vmstat, mem_map, page_alloc.pfn_to_page, alloc_pages, free_pages, take_stall, stall,
kmap_atomic/kunmap_atomic, slab + kmem_cache_create/alloc/free, procfs.register_pid,
tasks, alloc_pid, vm_enough_memory(pages, cap_sys_admin, total_vm), vm_unacct_memory,
lru_cache_add, lru_del, mark_page_accessed, panic; and the reclaim hooks swapin_hook,
swap_free, swap_duplicate (optional: madvise_pageout). It sets kernel.zero_page,
zero_pfn, vdso_pages, fs, shm_ns, _as_caches and (if unset) drop_caches.
"""

from __future__ import annotations

import functools

from . import gfp as G
from . import uapi as U
from .fault import FAULT_COUNTERS, FAULT_OK, copy_from_user, copy_to_user, do_page_fault
from .filemap import (
    File,
    FileSystem,
    add_to_page_cache,
    drop_caches,
    filemap_get_page,
    get_write_access,
    invalidate_mapping_pages,
    set_page_dirty,
    truncate_inode_pages,
    truncate_partial_page,
)
from .fork import DEFAULT_DATA, DEFAULT_TEXT, dup_mm, exit_mmap, load_static_binary
from .memcontrol import MEMCG_CHARGE_BATCH
from .memory import anon_vma_prepare, do_wp_page, mlock_page, vma_pte_bits, zap_page_range
from .mm_types import SLAB_CREATE_FLAGS, SLAB_SIZES, MMStruct, _slab_alloc, _slab_free
from .page import PG_active, PG_anon, PG_dirty, PG_referenced, PG_reserved, PG_swapbacked, PG_zero
from .pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_PSE,
    _PAGE_RW,
    _PAGE_SWP,
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    PTE_PRESENT_MASK,
)
from .physmem import ZERO_PAGE, LazyPage
from .readahead import (
    PG_readahead,
    force_page_cache_ra,
    page_cache_async_ra,
    page_cache_sync_ra,
    queue_ra_show,
    queue_ra_store,
)
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import (
    VM_DROPPABLE,
    VM_EXEC,
    VM_LOCKED,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
)

FATAL_SIGNALS = (U.SIGKILL, U.SIGSEGV, U.SIGBUS, U.SIGTERM)
GFP_ANON_ZERO = G.GFP_HIGHUSER_MOVABLE | G.__GFP_ZERO
_ANON_FLAGS = PG_anon | PG_swapbacked
# mark_page_accessed has nothing to do on a clean page with these (see _splice_pagecache)
_ACCESSED_STEADY = PG_referenced | PG_active
# flags & this == _ACCESSED_STEADY: and not dirty, and no readahead marker to act on
_STEADY_CLEAN = _ACCESSED_STEADY | PG_dirty | PG_readahead
_STDIO = object()  # fds 0-2: the terminal; read() gives 0 bytes, write() discards
SYS_READ_AHEAD_KB = "/sys/block/vda/queue/read_ahead_kb"  # the disk's bdi->ra_pages, KiB



def _syscall(needs_mm: bool = True):
    """Wrap a system call: refuse on a dead task, track kernel entry for deferred fatal
    signals, and leave the seconds the call cost in task.last_cost."""

    def deco(fn):
        name = fn.__name__

        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            if self.state != "running" or (needs_mm and self.mm is None):
                raise OSError(U.ESRCH, f"{name}: task {self.pid} is {self.state}")
            self._kdepth += 1
            # smp_processor_id() while in the kernel (a wake-up may have moved it: on_cpu)
            self.kernel.current_cpu = self.on_cpu()
            t0 = self.cost
            try:
                return fn(self, *args, **kwargs)
            except OSError:
                if self._pending_fatal is None or self._kdepth > 1:
                    raise
                # killed meanwhile (EINTR): the process never sees the call return
                return None
            finally:
                self._kdepth -= 1
                if not self._kdepth:
                    self.kernel.current_cpu = 0
                self.last_cost = self.cost - t0 + self.kernel.take_stall()
                if not self._kdepth and self._pending_fatal is not None:
                    self._die()

        return wrapper

    return deco


def select_task_rq(kernel) -> int:
    """The CPU a new task runs on (wake_up_new_task: select_task_rq_fair with
    SD_BALANCE_FORK, sched_balance_find_dst_cpu: the idlest CPU). hvsim's guest has no
    scheduler and no load signal: the CPU with the fewest running tasks, the lowest of
    equals. Where it runs after a sleep: `select_task_rq_wake`."""
    ncpu = len(kernel.bdp_ratelimits)
    if ncpu == 1:
        return 0
    running = [0] * ncpu
    for t in kernel.tasks.values():
        if t.state == "running":
            running[t.cpu] += 1
    return running.index(min(running))


def select_idle_sibling(task, free_at: list, now: float) -> int:
    """select_idle_sibling (6.1 kernel/sched/fair.c) for a wake-up whose target is the
    task's previous CPU (no wake_affine pull: the waker is an I/O completion or a timer,
    not a task of the guest): the previous CPU if idle; else the CPU it ran on before
    that (p->recent_used_cpu, which becomes the previous one) if idle; else the first
    idle CPU of the LLC scanning from prev + 1 and wrapping (select_idle_cpu's
    for_each_cpu_wrap(cpu, cpus, target + 1); one LLC, no SMT siblings, SIS_UTIL's scan
    limit not modelled); else prev. A CPU is idle when nothing is booked on its vCPU
    from `now` on (`free_at[cpu] <= now`: the hypervisor's reservation table, the
    guest's runqueues)."""
    prev = task.cpu
    if free_at[prev] <= now:
        return prev
    recent = task.recent_used_cpu
    task.recent_used_cpu = prev
    if recent != prev and free_at[recent] <= now:
        return recent
    n = len(free_at)
    for i in range(1, n):
        cpu = (prev + i) % n
        if free_at[cpu] <= now:
            return cpu
    return prev


def select_task_rq_wake(task, free_at: list, now: float) -> int:
    """Where a task that slept runs when it wakes (try_to_wake_up -> select_task_rq_fair
    -> select_idle_sibling). An idle CPU found: there. None idle: select_idle_sibling
    queues it on prev, but the first CPU to go idle pulls a waiting task
    (newidle_balance), and hvsim's vCPUs run their bookings in order (no wake-up
    preemption): the task runs on the CPU free first (the lowest of equals), which is
    where the hypervisor would have booked its burst."""
    cpu = select_idle_sibling(task, free_at, now)
    if free_at[cpu] > now:
        first = free_at[0]
        cpu = 0
        for i in range(1, len(free_at)):
            if free_at[i] < first:
                cpu, first = i, free_at[i]
    return cpu


class Task:
    """task_struct: one process (a single thread)."""

    # the memcg whose OOM wait queue the task sleeps on (memcontrol.py: v1
    # oom_kill_disable, mem_cgroup_oom_synchronize); None: not asleep there
    memcg_oom_wait = None

    def __init__(self, kernel, pid: int, comm: str, parent: Task | None = None) -> None:
        self.kernel = kernel
        self.pid = pid
        self.tgid = pid
        self.comm = comm[:15]
        self.parent = parent
        self.children: list[Task] = []
        self.mm: MMStruct | None = None
        self.state = "running"  # running, zombie (exited, not reaped), dead
        self.exit_code = 0  # the status passed to exit()
        self.exit_signal = U.SIGCHLD  # sent to the parent at exit
        self.term_signal = 0  # the signal that killed the task, 0 if it exited
        self.si_code = 0  # its si_code (SEGV_MAPERR, SEGV_ACCERR, BUS_ADRERR, ...)
        self.fault_addr = 0  # si_addr of a fault signal
        self.oops: str | None = None  # the kernel Oops message that killed it
        self.pending: list[tuple[int, int, int]] = []  # signals received (sig, code, addr)
        self._pending_fatal: tuple[int, int, int] | None = None
        self.rlimits = {  # bytes: [soft, hard]
            U.RLIMIT_DATA: [U.RLIM_INFINITY, U.RLIM_INFINITY],
            U.RLIMIT_STACK: [U.DEFAULT_RLIMIT_STACK, U.RLIM_INFINITY],
            U.RLIMIT_MEMLOCK: [U.DEFAULT_RLIMIT_MEMLOCK, U.DEFAULT_RLIMIT_MEMLOCK],
            U.RLIMIT_AS: [U.RLIM_INFINITY, U.RLIM_INFINITY],
        }
        self.caps: set[int] = set()  # effective capabilities (CAP_IPC_LOCK off by default)
        self.cap_permitted: set[int] = set()  # what capset may raise the effective set to
        self.uid = 1000  # effective uid
        self.ruid = self.suid = 1000  # real and saved uids
        self.oom_score_adj = 0
        self.oom_victim = False  # chosen by the OOM killer: may use the memory reserves
        self.autoreap_children = False  # SIGCHLD ignored (init): children are reaped at exit
        self.files: dict[int, object] = {0: _STDIO, 1: _STDIO, 2: _STDIO}
        self.next_fd = 0  # files_struct.next_fd: no free descriptor below it
        self.cost = 0.0  # seconds accumulated by this task's kernel work, ever
        self.last_cost = 0.0  # seconds the last system call cost
        self._kdepth = 0
        # dirty throttling (copy_process; balance_dirty_pages in vmscan.py): file pages this
        # task dirtied since its last check, pages before the next check, jiffies of its
        # last pause's end; bdp_clock, seconds: its own time, its throttle pauses included
        self.nr_dirtied = 0
        self.nr_dirtied_pause = 128 >> (PAGE_SHIFT - 10)
        self.dirty_paused_when = 0
        self.bdp_clock = 0.0
        self.cpu = select_task_rq(kernel)  # task_cpu: where it runs (per-CPU counters)
        self.recent_used_cpu = self.cpu  # p->recent_used_cpu: its CPU before the last wake-up
        env = kernel.env
        # simulated seconds of its last entry into the kernel (or user-mode touch): a later
        # one is a wake-up (on_cpu)
        self.ran_at = env.now if env is not None else 0.0
        self.slab_obj = _slab_alloc(kernel, "task_struct")
        self.files_slab = _slab_alloc(kernel, "files_cache")
        # the kernel stack (alloc_thread_stack_node): KernelStack in /proc/meminfo
        kmem = getattr(kernel, "kmem", None)
        self.stack = None
        if kmem is not None:
            self.stack = kmem.alloc_thread_stack(pid)
            if self.stack is None:
                _slab_free(kernel, "files_cache", self.files_slab)
                _slab_free(kernel, "task_struct", self.slab_obj)
                self.files_slab = self.slab_obj = None
                self.state = "dead"
                raise U.err(U.ENOMEM, "fork: kernel stack")

    def __repr__(self) -> str:
        return f"<Task {self.pid} {self.comm} {self.state}>"

    # -- credentials and limits ------------------------------------------------------------
    def rlimit(self, resource: int) -> int:
        return self.rlimits[resource][0]

    def setrlimit(self, resource: int, cur: int, maxv: int | None = None) -> int:
        """setrlimit(2) (`maxv` None keeps the hard limit). Bytes for the memory limits."""
        self.prlimit(resource, (cur, self.rlimits[resource][1] if maxv is None
                                and resource in self.rlimits else maxv))
        return 0

    def getrlimit(self, resource: int) -> tuple[int, int]:
        return self.prlimit(resource)

    def prlimit(self, resource: int, new: tuple[int, int] | None = None) -> tuple[int, int]:
        """prlimit64(2) on this task (do_prlimit): returns the old (soft, hard) limits and,
        if `new` is given, sets them. EINVAL for a resource hvsim does not model or a soft
        limit above the hard one; EPERM for raising the hard limit without
        CAP_SYS_RESOURCE. The new limits apply to later calls, never to what is mapped."""
        if resource not in self.rlimits:
            raise U.err(U.EINVAL, f"prlimit: resource {resource}")
        old = self.rlimits[resource]
        if new is not None:
            cur, maxv = new
            if maxv is None or cur > maxv:
                raise U.err(U.EINVAL, "prlimit")
            if maxv > old[1] and not self.capable(U.CAP_SYS_RESOURCE):
                raise U.err(U.EPERM, "prlimit")
            self.rlimits[resource] = [cur, maxv]
        return old[0], old[1]

    def capable(self, cap: int) -> bool:
        return cap in self.caps

    def make_root(self) -> None:
        """uid 0 with every capability, as a process started by root."""
        self.uid = self.ruid = self.suid = 0
        self.caps = set(U.ALL_CAPS)
        self.cap_permitted = set(U.ALL_CAPS)

    def capget(self) -> tuple[set[int], set[int]]:
        """capget(2): (effective, permitted)."""
        return set(self.caps), set(self.cap_permitted)

    def capset(self, effective: set[int], permitted: set[int]) -> int:
        """capset(2) on this task (cap_capset): permitted may only shrink, effective must
        lie within the new permitted set (EPERM)."""
        if not permitted <= self.cap_permitted or not effective <= permitted:
            raise U.err(U.EPERM, "capset")
        self.caps = set(effective)
        self.cap_permitted = set(permitted)
        return 0

    def setresuid(self, ruid: int, euid: int, suid: int) -> int:
        """setresuid(2) (-1 keeps a value); without CAP_SETUID each new id must be one of
        the current three (EPERM)."""
        old = (self.ruid, self.uid, self.suid)
        new = tuple(o if _keep_id(n) else n for n, o in zip((ruid, euid, suid), old))
        if not self.capable(U.CAP_SETUID) and any(n not in old for n, o in zip(new, old) if n != o):
            raise U.err(U.EPERM, "setresuid")
        self._set_uids(*new)
        return 0

    def _set_uids(self, ruid: int, euid: int, suid: int) -> None:
        """Commit new ids; capabilities follow cap_emulate_setxuid: all three ids nonzero
        after one was 0 -> permitted and effective cleared; euid 0 -> nonzero clears the
        effective set; nonzero -> 0 raises it to the permitted set."""
        old = (self.ruid, self.uid, self.suid)
        new = (ruid, euid, suid)
        self.ruid, self.uid, self.suid = new
        if 0 in old and 0 not in new:
            self.cap_permitted = set()
            self.caps = set()
        elif old[1] == 0 and new[1] != 0:
            self.caps = set()
        elif old[1] != 0 and new[1] == 0:
            self.caps = set(self.cap_permitted)

    def setuid(self, uid: int) -> int:
        """setuid(2): with CAP_SETUID all three ids, else the effective one if it is the
        real or saved id (EPERM otherwise)."""
        if self.capable(U.CAP_SETUID):
            self._set_uids(uid, uid, uid)
        elif uid in (self.ruid, self.suid):
            self._set_uids(self.ruid, uid, self.suid)
        else:
            raise U.err(U.EPERM, "setuid")
        return 0

    def setreuid(self, ruid: int, euid: int) -> int:
        """setreuid(2): without CAP_SETUID the real id may become the effective one and the
        effective one any of the three (EPERM); the saved id becomes the new effective one
        when the real one is set or the effective one differs from the old real one."""
        r, e, s_ = self.ruid, self.uid, self.suid
        nr = r if _keep_id(ruid) else ruid
        ne = e if _keep_id(euid) else euid
        if not self.capable(U.CAP_SETUID):
            if not _keep_id(ruid) and ruid not in (r, e):
                raise U.err(U.EPERM, "setreuid")
            if not _keep_id(euid) and euid not in (r, e, s_):
                raise U.err(U.EPERM, "setreuid")
        ns = ne if not _keep_id(ruid) or (not _keep_id(euid) and euid != r) else s_
        self._set_uids(nr, ne, ns)
        return 0

    # -- signals and exit --------------------------------------------------------------------
    def fatal_signal_pending(self) -> bool:
        return self._pending_fatal is not None or self.state != "running"

    def send_signal(self, sig: int, code: int = 0, addr: int = 0) -> None:
        """Deliver a signal. SIGKILL, SIGSEGV, SIGBUS and SIGTERM are fatal (no handlers
        are modelled): the task dies now, or when it leaves the kernel."""
        if self.state != "running":
            return
        self.pending.append((sig, code, addr))
        if sig in FATAL_SIGNALS and self._pending_fatal is None:
            self._pending_fatal = (sig, code, addr)
            if not self._kdepth:
                self._die()

    def _die(self) -> None:
        sig, code, addr = self._pending_fatal
        self._pending_fatal = None
        self.term_signal = sig
        self.si_code = code
        self.fault_addr = addr
        self._do_exit(0)

    def _do_exit(self, code: int) -> None:
        if self.state != "running":
            return

        k = self.kernel
        for fd in sorted(self.files):
            f = self.files[fd]
            if f is not _STDIO:
                f.put()
        self.files = {}
        if self.mm is not None:
            exit_mmap(self)
        if self.nr_dirtied:  # do_exit: this CPU's dirty_throttle_leaks, for its next dirtier
            k.dirty_throttle_leaks[self.cpu] += self.nr_dirtied
        self._free_stack()
        if getattr(self, "memcg", None) is not None:
            k.memcgs.exit_task(self)  # cgroup_exit: off its cgroup's procs
        self.exit_code = code & 0xFF
        self.state = "zombie"
        init = k.tasks.get(1)
        for child in self.children:
            child.parent = init if init is not self else None
            if init is not None and init is not self:
                init.children.append(child)
            if child.state == "zombie" and (child.parent is None or child.parent.autoreap_children):
                child._reap()
        self.children = []
        parent = self.parent
        if parent is not None and parent.state == "running":
            # do_notify_parent: SIGCHLD with CLD_EXITED (1) or CLD_KILLED (2)
            parent.pending.append((self.exit_signal, 2 if self.term_signal else 1, self.pid))
        if parent is None or parent.autoreap_children or parent.state != "running":
            self._reap()

    def _reap(self) -> None:
        if self.state == "dead":
            return
        self.state = "dead"
        k = self.kernel
        if k.tasks.get(self.pid) is self:
            del k.tasks[self.pid]
        if self.parent is not None and self in self.parent.children:
            self.parent.children.remove(self)
        _slab_free(k, "files_cache", self.files_slab)
        _slab_free(k, "task_struct", self.slab_obj)
        self.files_slab = self.slab_obj = None

    def _free_stack(self) -> None:
        """The task is dead: its kernel stack goes back (put_task_stack)."""
        if self.stack is not None:
            self.kernel.kmem.free_thread_stack(self.stack)
            self.stack = None

    @property
    def wait_status(self) -> int:
        """The status wait4() reports: exit code << 8, or the killing signal."""
        if self.term_signal:
            return self.term_signal
        return self.exit_code << 8

    def kill(self, sig: int = U.SIGKILL) -> None:
        self.send_signal(sig, U.SI_KERNEL if sig == U.SIGKILL else 0, 0)

    # -- memory access -----------------------------------------------------------------------
    def on_cpu(self) -> int:
        """The CPU the task runs on now (task_cpu). hvsim's tasks run in bursts: the first
        entry into the kernel (or user-mode touch) at a later simulated time than the
        last is a wake-up (between two bursts the task slept: on I/O, throttled, waiting
        for its next request, or for its vCPU's turn), and the scheduler places it again
        (select_task_rq_wake), so the per-CPU state it touches from then on
        (bdp_ratelimits, direct reclaim's clock, ...) is that CPU's. Only beneath a
        hypervisor whose vCPUs tell which CPUs are idle (phys.vcpu_free_at); without
        one the task stays where it was placed. The CPU is left in kernel.task_cpu,
        where the workload books its burst."""
        k = self.kernel
        env = k.env
        if env is not None and env.now != self.ran_at:
            now = self.ran_at = env.now
            hook = getattr(k.phys, "vcpu_free_at", None)
            free_at = hook() if hook is not None else None
            if free_at is not None and len(free_at) == len(k.bdp_ratelimits) > 1:
                self.cpu = select_task_rq_wake(self, free_at, now)
        k.task_cpu = cpu = self.cpu
        return cpu

    def access(self, addr: int, write: bool, data: bytes | None = None,
               execute: bool = False) -> float:
        """One user-mode load (write False) or store at `addr`; returns seconds. `data`:
        bytes stored at addr (a whole page, or a piece spliced into the page)."""
        mm = self.mm
        if self.state != "running" or mm is None:
            return 0.0
        if not execute and (data is None or (len(data) == PAGE_SIZE
                                             and not addr & (PAGE_SIZE - 1))):
            return self.access_range(addr, 1, write, data)  # same path, same counters
        k = self.kernel
        phys = k.phys
        ptes = mm.pgtable.ptes
        vpn = addr >> PAGE_SHIFT
        t0 = self.cost
        cost = 0.0
        self._kdepth += 1
        k.current_cpu = self.on_cpu()
        try:
            for _ in range(4):
                pte = ptes.get(vpn, 0)
                if pte & _PAGE_PRESENT and (not write or pte & _PAGE_RW) and not (
                        execute and pte & _PAGE_NX):
                    bits = _PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED
                    if pte & bits != bits:
                        ptes[vpn] = pte | bits
                        mm.pgtable.pte_changed(vpn)  # (A or D set: the table's bytes change)
                    pfn = pte >> PAGE_SHIFT
                    new = data
                    if write and data is not None and (len(data) != PAGE_SIZE
                                                       or addr & (PAGE_SIZE - 1)):
                        # the page's bytes with `data` spliced in, read before the write's
                        # touch (the store writes exactly these: no other byte changes)
                        off = addr & (PAGE_SIZE - 1)
                        if off + len(data) > PAGE_SIZE:
                            raise ValueError("access: data crosses a page boundary")
                        old = phys.load(pfn)
                        new = old[:off] + bytes(data) + old[off + len(data):]
                    cost += phys.touch(pfn, write)
                    if write and data is not None:
                        cost += phys.store(pfn, new)
                    break
                if do_page_fault(self, addr, write, True, execute) != FAULT_OK:
                    break
        finally:
            self._kdepth -= 1
            if not self._kdepth:
                k.current_cpu = 0
            if self._pending_fatal is not None:
                self._die()
        return cost + self.cost - t0 + k.take_stall()

    def access_range(self, start: int, length: int, write: bool, data=None) -> float:
        """Touch every page of [start, start + length) in order; returns seconds. `data`:
        None, one page (bytes or a LazyPage) for every page, bytes of the whole
        page-aligned range, or a sequence of pages. Stops if the task dies on a fault."""
        mm = self.mm
        if self.state != "running" or mm is None or length <= 0:
            return 0.0
        self.on_cpu()  # (a wake-up places it: user-mode work runs on that CPU too)
        ptes = mm.pgtable.ptes
        first = start >> PAGE_SHIFT
        last = (start + length - 1) >> PAGE_SHIFT
        if data is None:
            # NOTE: a burst over a resident range (every PTE present with the rights and
            # the bits the access needs, so no fault can come between the pages) is one
            # touch_many call, found by this loop before any other set-up.
            want = (_PAGE_PRESENT | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_RW if write
                    else _PAGE_PRESENT | _PAGE_ACCESSED)
            pfns = []
            try:
                for vpn in range(first, last + 1):
                    pte = ptes[vpn]
                    if pte & want != want:
                        break
                    pfns.append(pte >> PAGE_SHIFT)
                else:
                    k = self.kernel
                    return k.phys.touch_many(pfns, write) + k.take_stall()
            except KeyError:
                pass  # a page without a PTE: faults below
        k = self.kernel
        phys = k.phys
        touch = phys.touch
        store = phys.store
        npages = last - first + 1
        pages = None
        if write and data is not None:
            if isinstance(data, (bytes, bytearray, memoryview, LazyPage)):
                if len(data) == PAGE_SIZE:
                    pages = None
                elif len(data) == npages * PAGE_SIZE:
                    mv = memoryview(data)
                    pages = [bytes(mv[i << PAGE_SHIFT:(i + 1) << PAGE_SHIFT]) for i in range(npages)]
                else:
                    raise ValueError("access_range: data must be one page or the whole range")
            else:
                pages = list(data)
                if len(pages) != npages:
                    raise ValueError("access_range: one page of data per page of the range")
        one = data if write and data is not None and pages is None else None
        bits = _PAGE_ACCESSED | _PAGE_DIRTY if write else _PAGE_ACCESSED
        t0 = self.cost
        cost = 0.0
        # state of the inlined demand-zero path (see the NOTE below)
        pt = mm.pgtable
        counts = pt.pte_counts
        pshift = pt.pte_shift
        fresh = pt.fresh  # page-table frames a host has read (set_pte_new's test, inlined)
        rss = mm.rss
        vm = k.vmstat
        alloc = k.alloc_pages
        gfp_anon = GFP_ANON_ZERO
        lru_add = k.lru_cache_add
        # a task in a child memcg charges each page (mem_cgroup_charge): the long way
        in_memcg = getattr(self, "memcg", None) is not None
        # the root memcg's statistics (memcontrol.py): each demand-zero page makes three
        # single-page updates before its LRU add (count_memcg_event_mm(PGFAULT), the
        # charge's PGPGIN, page_add_new_anon_rmap's NR_ANON_MAPPED), counted inline below
        mc = k.memcg
        mpc = mc.pcpu if mc is not None else None
        palloc = k.page_alloc
        vstart = vend = 0
        av = cvma = None
        pgoff0 = pbits = locked = pdone = stop = nz = thp_ok = 0
        if data is None:
            # NOTE: the leading run of pages already mapped as this access needs them
            # (no fault can come between them) is touched in one touch_many call.
            get = ptes.get
            run = []
            vpn = first
            while vpn <= last:
                pte = get(vpn, 0)
                if not (pte & _PAGE_PRESENT and (pte & _PAGE_RW or not write)):
                    break
                if pte & bits != bits:
                    ptes[vpn] = pte | bits
                    if fresh:
                        pt.pte_changed(vpn)
                run.append(pte >> PAGE_SHIFT)
                vpn += 1
            if run:
                cost += phys.touch_many(run, write)
                if vpn > last:
                    return cost + self.cost - t0 + k.take_stall()
                first = vpn
                npages = last - first + 1
        self._kdepth += 1
        k.current_cpu = self.cpu
        try:
            get = ptes.get
            i = -1
            while True:
                i += 1
                if i >= npages:
                    break
                vpn = first + i
                pte = get(vpn, 0)
                # NOTE: the MMU's check inlined for speed (present, writable if a store)
                if not (pte & _PAGE_PRESENT and (pte & _PAGE_RW or not write)):
                    if write and (not pte or pte & _PAGE_PRESENT):
                        # NOTE: two outcomes of the flowchart inlined for speed, taken
                        # only where do_page_fault would reach them (user address inside
                        # a writable anonymous VMA, not a special mapping) and counted
                        # the same: demand paging of a zeroed page (PTE none) and
                        # copy-on-write (PTE present, read-only). Anything else goes
                        # the long way below.
                        if not vstart <= vpn < vend:
                            vma = mm.mm_mt.lookup(vpn << PAGE_SHIFT)
                            if (vma is not None and vma.vm_file is None
                                    and vma.vm_flags & VM_WRITE and vma.vm_ops is None
                                    and not vma.vm_flags & VM_DROPPABLE):
                                cvma = vma
                                vstart = vma.vm_start >> PAGE_SHIFT
                                vend = vma.vm_end >> PAGE_SHIFT
                                av = vma.anon_vma
                                pgoff0 = vma.vm_pgoff - vstart
                                pbits = vma_pte_bits(vma.vm_flags, True)
                                locked = vma.vm_flags & VM_LOCKED
                                # a fresh PTE needs no further fault nor bit update
                                pdone = (pbits & _PAGE_PRESENT and pbits & _PAGE_RW
                                         and pbits & bits == bits)
                                stop = vend - first  # index of the VMA's end
                                if stop > npages:
                                    stop = npages
                                thp = k.thp
                                thp_ok = thp is not None and thp.on and thp.vma_allowed(vma)
                            else:
                                vstart = vend = 0
                    if write and pte & _PAGE_PRESENT and vstart <= vpn < vend:
                        vm["pgfault"] += 1
                        if in_memcg:
                            self.memcg.pgfault += 1  # count_memcg_event_mm
                        if mc is not None:
                            mc.rstat_updated(1)  # count_memcg_event_mm(PGFAULT)
                        do_wp_page(self, cvma, vpn << PAGE_SHIFT, pte)
                        if self._pending_fatal is not None:
                            break
                        pte = get(vpn, 0)
                    elif write and not pte and vstart <= vpn < vend and not in_memcg:
                        if av is None:
                            av = cvma.anon_vma
                            if av is None:
                                av = anon_vma_prepare(cvma)
                        # NOTE: a run of demand-zero faults (the next PTE none too, in
                        # the same VMA) handled in this inner loop for speed; each page
                        # takes exactly the steps of one do_anonymous_page write fault.
                        # It leaves for the long way below with the page it could not
                        # finish (no memory, no PTE table, or a PTE that needs more).
                        run = 0  # 1: pages done up to i; 2: the task was killed
                        # nr_anon_pages, pgfault and fault_demand_zero (counts that
                        # nothing reads while a fault is in progress, not even reclaim or
                        # the OOM killer) are added once per run; the mm's RSS, which the
                        # OOM killer reads, page by page
                        nz = 0
                        # (a break with page i not done sets run 0 and pte 0: page i
                        # then takes the long way below)
                        while True:
                            if thp_ok and (vpn >> pshift) not in counts:
                                # pmd_none in a THP VMA: do_huge_pmd_anonymous_page
                                run = pte = 0
                                break
                            page = alloc(gfp_anon)
                            if self._pending_fatal is not None:  # OOM-killed meanwhile
                                if page is not None:
                                    k.free_pages(page)
                                run = 2
                                break
                            if page is None:
                                run = pte = 0
                                break
                            key = vpn >> pshift
                            c = counts.get(key)
                            if c is None:
                                if not pt.alloc_pte_table(vpn):
                                    k.free_pages(page)
                                    run = pte = 0
                                    break
                                c = 0
                            counts[key] = c + 1
                            pfn = page.pfn
                            pte = (pfn << PAGE_SHIFT) | pbits
                            ptes[vpn] = pte
                            if fresh:
                                pt._table_changed(0, key)
                            page.flags |= _ANON_FLAGS
                            page.mapping = av
                            page.index = pgoff0 + vpn
                            page._mapcount = 0
                            if locked:
                                mlock_page(k, page)
                            if mpc is not None and mc.stats_updates <= mc.threshold:
                                # NOTE: three memcg_rstat_updated(1) inlined below the
                                # batch (MemCgroup.rstat_ones moves the count)
                                cpu = palloc.current_cpu
                                n = mpc[cpu] + 3
                                if n < MEMCG_CHARGE_BATCH:
                                    mpc[cpu] = n
                                else:
                                    mc.rstat_ones(3)
                            lru_add(page)
                            rss[MM_ANONPAGES] += 1
                            nz += 1
                            if not pdone:
                                break
                            # the end of this page's access, without re-checking what
                            # the fresh PTE already satisfies
                            cost += touch(pfn, write)
                            if one is not None:
                                cost += store(pfn, one)
                            elif pages is not None:
                                cost += store(pfn, pages[i])
                            run = 1
                            if i + 1 == stop or vpn + 1 in ptes:
                                break
                            i += 1
                            vpn += 1
                        vm["nr_anon_pages"] += nz
                        vm["pgfault"] += nz
                        vm["fault_demand_zero"] += nz
                        nz = 0
                        if run == 2:
                            break
                        if run == 1:
                            continue
                    tries = 0
                    while not (pte & _PAGE_PRESENT and (pte & _PAGE_RW or not write)):
                        if tries == 4 or do_page_fault(self, vpn << PAGE_SHIFT, write,
                                                       True) != FAULT_OK:
                            pte = 0
                            break
                        tries += 1
                        pte = get(vpn, 0)
                    if (self._pending_fatal is not None or self.state != "running"
                            or self.memcg_oom_wait is not None):
                        break
                    if not pte:
                        continue
                if pte & bits != bits:
                    ptes[vpn] = pte | bits
                    if fresh:
                        pt.pte_changed(vpn)
                pfn = pte >> PAGE_SHIFT
                cost += touch(pfn, write)
                if one is not None:
                    cost += store(pfn, one)
                elif pages is not None:
                    cost += store(pfn, pages[i])
        finally:
            if nz:  # an exception left a run early
                vm["nr_anon_pages"] += nz
                vm["pgfault"] += nz
                vm["fault_demand_zero"] += nz
            self._kdepth -= 1
            if not self._kdepth:
                k.current_cpu = 0
            if self._pending_fatal is not None:
                self._die()
        return cost + self.cost - t0 + k.take_stall()

    def peek(self, addr: int, n: int) -> bytes:
        """The bytes a debugger would read (no fault, no cost): zeros where nothing is
        mapped or present."""
        out = bytearray()
        ptes = self.mm.pgtable.ptes
        while n > 0:
            off = addr & (PAGE_SIZE - 1)
            chunk = min(n, PAGE_SIZE - off)
            pte = ptes.get(addr >> PAGE_SHIFT, 0)
            if pte & PTE_PRESENT_MASK:
                out += self.kernel.phys.load(pte >> PAGE_SHIFT)[off:off + chunk]
            else:
                out += bytes(chunk)
            addr += chunk
            n -= chunk
        return bytes(out)

    # -- memory system calls -------------------------------------------------------------------
    @_syscall()
    def brk(self, addr: int) -> int:
        from .mmap import do_brk

        return do_brk(self, addr)

    @_syscall()
    def mmap(self, addr: int, length: int, prot: int, flags: int, fd: int = -1,
             offset: int = 0) -> int:
        from .mmap import do_mmap

        if offset & (PAGE_SIZE - 1) or offset < 0:
            raise U.err(U.EINVAL, "mmap")
        file = None
        if not flags & U.MAP_ANONYMOUS:
            file = self.files.get(fd)
            if file is None or file is _STDIO:
                raise U.err(U.EBADF if file is None else U.ENODEV, "mmap")
        return do_mmap(self, addr, length, prot, flags, file, offset >> PAGE_SHIFT)

    @_syscall()
    def munmap(self, addr: int, length: int) -> int:
        from .mmap import do_munmap

        return do_munmap(self, addr, length)

    @_syscall()
    def mprotect(self, addr: int, length: int, prot: int) -> int:
        from .mmap import do_mprotect

        return do_mprotect(self, addr, length, prot)

    @_syscall()
    def mremap(self, old_address: int, old_size: int, new_size: int, flags: int = 0,
               new_address: int = 0) -> int:
        from .mmap import do_mremap

        return do_mremap(self, old_address, old_size, new_size, flags, new_address)

    @_syscall()
    def madvise(self, addr: int, length: int, advice: int) -> int:
        from .mmap import do_madvise

        return do_madvise(self, addr, length, advice)

    @_syscall()
    def prctl(self, option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0,
              arg5: int = 0) -> int:
        """prctl(2) (kernel/sys.c), the memory options: PR_SET_THP_DISABLE sets or clears
        MMF_DISABLE_THP (arg2 non-zero: no huge page for any VMA of this mm, inherited
        by fork and kept by exec), PR_GET_THP_DISABLE returns it (0/1). EINVAL for
        non-zero unused arguments and for options hvsim does not model."""
        mm = self.mm
        if option == U.PR_GET_THP_DISABLE:
            if arg2 or arg3 or arg4 or arg5:
                raise U.err(U.EINVAL, "prctl")
            return int(mm.thp_disabled)
        if option == U.PR_SET_THP_DISABLE:
            if arg3 or arg4 or arg5:
                raise U.err(U.EINVAL, "prctl")
            mm.thp_disabled = bool(arg2)
            return 0
        raise U.err(U.EINVAL, "prctl")

    @_syscall()
    def mseal(self, addr: int, length: int, flags: int = 0) -> int:
        from .mseal import do_mseal

        return do_mseal(self, addr, length, flags)

    @_syscall()
    def mlock(self, addr: int, length: int) -> int:
        from .mlock import sys_mlock

        return sys_mlock(self, addr, length)

    @_syscall()
    def mlock2(self, addr: int, length: int, flags: int = 0) -> int:
        from .mlock import sys_mlock2

        return sys_mlock2(self, addr, length, flags)

    @_syscall()
    def munlock(self, addr: int, length: int) -> int:
        from .mlock import sys_munlock

        return sys_munlock(self, addr, length)

    @_syscall()
    def mlockall(self, flags: int) -> int:
        from .mlock import sys_mlockall

        return sys_mlockall(self, flags)

    @_syscall()
    def munlockall(self) -> int:
        from .mlock import sys_munlockall

        return sys_munlockall(self)

    # -- processes -----------------------------------------------------------------------------
    @_syscall()
    def fork(self) -> int:
        """Returns the child's pid (the child is kernel.tasks[pid])."""

        k = self.kernel
        child = Task(k, _alloc_pid(k), self.comm, parent=self)
        child.rlimits = {r: list(v) for r, v in self.rlimits.items()}
        child.caps = set(self.caps)
        child.cap_permitted = set(self.cap_permitted)
        child.uid, child.ruid, child.suid = self.uid, self.ruid, self.suid
        child.oom_score_adj = self.oom_score_adj
        if getattr(self, "memcg", None) is not None:
            k.memcgs.attach(child, self.memcg)  # cgroup_post_fork: the parent's cgroup
        child.files = {}
        for fd, f in self.files.items():
            if f is not _STDIO:
                f.get()
            child.files[fd] = f
        child.next_fd = self.next_fd
        try:
            dup_mm(self, child)
        except OSError:
            for f in child.files.values():
                if f is not _STDIO:
                    f.put()
            child.state = "dead"
            child._free_stack()
            _slab_free(k, "files_cache", child.files_slab)
            _slab_free(k, "task_struct", child.slab_obj)
            raise
        k.tasks[child.pid] = child
        self.children.append(child)
        return child.pid

    def clone(self, flags: int = U.SIGCHLD, *args) -> int:
        """clone(2) as fork(2) (no thread model): a new process."""
        return self.fork()

    @_syscall(needs_mm=False)
    def execve(self, path: str, argv=None, envp=None, **layout) -> int:
        """Replace the address space by the static executable at `path` (fresh mm with its
        stack holding the `argv` and `envp` strings, str or bytes, and their pointer
        arrays). E2BIG, with the old address space intact, if they exceed a quarter of
        RLIMIT_STACK (at least 128 KiB, at most 6 MiB). `layout` may give text, data,
        bss sizes and start_brk/stack_top/mmap_base."""

        elf = layout.pop("elf", None)
        if elf is not None:
            # a real ELF executable (binfmt_elf.load_elf_binary): elf = dict(exe=ElfImage,
            # interp=ElfImage or None, load_bias=..., interp_bias=..., start_brk=...)
            from .binfmt_elf import load_elf_binary

            load_elf_binary(self, path, argv=argv, envp=envp, **elf)
        else:
            load_static_binary(self, path, argv=argv, envp=envp, **layout)
        for fd in [fd for fd, f in self.files.items()
                   if f is not _STDIO and f.flags & U.O_CLOEXEC]:
            self.files.pop(fd).put()
            if fd < self.next_fd:
                self.next_fd = fd
        return 0

    def exit(self, code: int = 0) -> None:
        """exit(2)/exit_group(2): release everything; the parent may wait4() for it."""
        if self.state == "running":
            self._do_exit(code)

    exit_group = exit

    @_syscall(needs_mm=False)
    def wait4(self, pid: int = -1, options: int = 0) -> tuple[int, int]:
        """Reap a zombie child: (pid, status). (0, 0) if children live but none exited
        (nothing blocks in the simulation); ECHILD if there is no such child."""
        cands = [c for c in self.children if pid == -1 or c.pid == pid]
        if not cands:
            raise U.err(U.ECHILD, "wait4")
        for c in cands:
            if c.state == "zombie":
                status = c.wait_status
                c._reap()
                return c.pid, status
        return 0, 0

    # -- SysV shm ------------------------------------------------------------------------------
    @_syscall()
    def shmget(self, key: int, size: int, shmflg: int) -> int:
        from .shm import sys_shmget

        return sys_shmget(self, key, size, shmflg)

    @_syscall()
    def shmat(self, shmid: int, shmaddr: int = 0, shmflg: int = 0) -> int:
        from .shm import sys_shmat

        return sys_shmat(self, shmid, shmaddr, shmflg)

    @_syscall()
    def shmdt(self, shmaddr: int) -> int:
        from .shm import sys_shmdt

        return sys_shmdt(self, shmaddr)

    @_syscall()
    def shmctl(self, shmid: int, cmd: int, buf=None):
        from .shm import sys_shmctl

        return sys_shmctl(self, shmid, cmd, buf)

    # -- files ---------------------------------------------------------------------------------
    def _file(self, fd: int) -> File:
        f = self.files.get(fd)
        if f is None:
            raise U.err(U.EBADF, f"fd {fd}")
        return f

    @_syscall()
    def open(self, path: str, flags: int = U.O_RDONLY, mode: int = 0o644) -> int:
        fs = self.kernel.fs
        dcache = self.kernel.dcache
        dentry = dcache.lookup(path)  # path walk: dentries (and inodes) cached on the way
        inode = fs.lookup(path)
        if inode is None:
            if not flags & U.O_CREAT:
                dcache.dput(dentry)  # a negative dentry stays cached
                raise U.err(U.ENOENT, f"open {path}")
            try:
                inode = fs.create(path, 0)
            except OSError:
                dcache.dput(dentry)  # (a full tmpfs: no inode to give the name)
                raise
            dcache.instantiate(dentry, inode)
        elif flags & U.O_CREAT and flags & U.O_EXCL:
            dcache.dput(dentry)
            raise U.err(U.EEXIST, f"open {path}")
        acc = flags & U.O_ACCMODE
        f = File(inode, flags, readable=acc in (U.O_RDONLY, U.O_RDWR),
                 writable=acc in (U.O_WRONLY, U.O_RDWR))
        f.dentry = dentry
        if f.writable:
            if not get_write_access(inode):  # do_dentry_open: a running program's file
                inode.fs.free_filp(f.slab_obj)  # (fput of the struct file never installed)
                f.slab_obj = None
                dcache.dput(dentry)
                raise U.err(U.ETXTBSY, f"open {path}")
            f.write_access = True
            thp = self.kernel.thp
            if thp is not None and not inode.shmem and inode.mapping.nr_thps:
                thp.open_for_write(inode)  # huge page cache cannot be written: dropped
        if flags & U.O_TRUNC and f.writable and inode.size:
            _truncate(self.kernel, inode, 0)
        return self._install_file(f)

    def _install_file(self, f: File) -> int:
        """fd_install of `f` at the lowest free descriptor; the descriptor."""
        f.get()
        fd = self.next_fd  # the lowest free descriptor (alloc_fd from next_fd)
        while fd in self.files:
            fd += 1
        self.files[fd] = f
        self.next_fd = fd + 1
        return fd

    @_syscall(needs_mm=False)
    def memfd_create(self, name: str, flags: int = 0) -> int:
        """memfd_create (mm/memfd.c): an unlinked shmem file opened read-write, named
        "memfd:NAME" ("/memfd:NAME (deleted)" in maps). Without MFD_ALLOW_SEALING it
        carries F_SEAL_SEAL, so no seal can be added. Unknown flags or a name longer than
        249 bytes: EINVAL. MFD_HUGETLB is not modelled (EINVAL)."""
        known = U.MFD_CLOEXEC | U.MFD_ALLOW_SEALING | U.MFD_NOEXEC_SEAL | U.MFD_EXEC
        if flags & ~known or flags & U.MFD_EXEC and flags & U.MFD_NOEXEC_SEAL:
            raise U.err(U.EINVAL, "memfd_create")
        if len(name.encode()) > 249:
            raise U.err(U.EINVAL, "memfd_create")
        inode = self.kernel.fs.new_shmem_inode(f"memfd:{name}", 0)
        inode.name = f"/memfd:{name} (deleted)"
        inode.noreserve = True  # shmem_file_setup(name, 0, VM_NORESERVE): block by block
        inode.seals = 0 if flags & (U.MFD_ALLOW_SEALING | U.MFD_NOEXEC_SEAL) else U.F_SEAL_SEAL
        if flags & U.MFD_NOEXEC_SEAL:
            inode.seals |= U.F_SEAL_EXEC
        f = File(inode, U.O_RDWR, readable=True, writable=True)
        return self._install_file(f)

    @_syscall(needs_mm=False)
    def fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        """fcntl: only the memfd seals (F_ADD_SEALS, F_GET_SEALS; memfd_fcntl). Adding a
        seal needs a file opened for writing (EPERM), a shmem file (EINVAL), no
        F_SEAL_SEAL (EPERM); F_SEAL_WRITE also no shared mapping that may write
        (mapping_deny_writable: EBUSY)."""
        f = self._file(fd)
        if cmd not in (U.F_ADD_SEALS, U.F_GET_SEALS):
            raise U.err(U.EINVAL, f"fcntl cmd {cmd}")
        inode = getattr(f, "inode", None)
        if inode is None or not inode.shmem:
            raise U.err(U.EINVAL, "fcntl")
        if cmd == U.F_GET_SEALS:
            return inode.seals
        if not f.writable:
            raise U.err(U.EPERM, "fcntl")
        if arg & ~(U.F_SEAL_SEAL | U.F_SEAL_SHRINK | U.F_SEAL_GROW | U.F_SEAL_WRITE
                   | U.F_SEAL_FUTURE_WRITE | U.F_SEAL_EXEC):
            raise U.err(U.EINVAL, "fcntl")
        if inode.seals & U.F_SEAL_SEAL:
            raise U.err(U.EPERM, "fcntl")
        if arg & U.F_SEAL_WRITE and any(
                v.vm_flags & VM_SHARED and v.vm_flags & VM_MAYWRITE for v in inode.mapping.i_mmap):
            raise U.err(U.EBUSY, "fcntl")
        inode.seals |= arg
        return 0

    @_syscall(needs_mm=False)
    def close(self, fd: int) -> int:
        f = self._file(fd)
        del self.files[fd]
        if fd < self.next_fd:
            self.next_fd = fd
        if f is not _STDIO:
            f.put()
        return 0

    @_syscall()
    def read(self, fd: int, buf: int, count: int) -> int:
        """Copy from the page cache into the user buffer at `buf` (two copies in memory)."""
        f = self._file(fd)
        if f is _STDIO:
            return 0
        if not f.readable:
            raise U.err(U.EBADF, "read")
        if count < 0:
            raise U.err(U.EINVAL, "read")
        # A user buffer that is not page-aligned (malloc's) takes every page-cache page
        # into two user pages: the pages are gathered and copied in one copy_to_user, as
        # filemap_read copies a batch of folios, so each user page is written once.
        # An aligned buffer gets each page-cache page's very object (one copy of the
        # contents in the simulator, however many user pages hold them).
        if count == 0 or f.pos >= f.inode.size:
            return 0
        if buf & (PAGE_SIZE - 1):
            parts = []
            self._read_pagecache(f, f.pos, count, parts.append)
            done = copy_to_user(self, buf, parts[0] if len(parts) == 1 else b"".join(parts)) if parts else 0
        else:
            done = 0

            def to_user(data: bytes) -> bool:
                nonlocal done
                copied = copy_to_user(self, buf + done, data)
                done += copied
                return copied == len(data)

            self._read_pagecache(f, f.pos, count, to_user)
        if done == 0:
            raise U.err(U.EFAULT, "read")
        f.pos += done
        return done

    def _read_pagecache(self, f, pos: int, count: int, consume) -> int:
        """filemap_read: hand the bytes [pos, pos + count) (up to EOF) of the open file
        `f` to `consume`, a page-cache page (or its part) at a time; `consume` returning
        False stops the read after that part. A missing page starts synchronous
        readahead of the request (page_cache_sync_ra), a page marked PG_readahead the
        next window (page_cache_async_ra); each page is marked accessed once, the first
        one not when the previous read ended inside it. Returns the bytes handed to
        `consume` (0 at or past EOF)."""
        inode = f.inode
        n = min(count, max(0, inode.size - pos))
        if n == 0:
            return 0
        k = self.kernel
        phys = k.phys
        pages = inode.mapping.pages
        ra = f.f_ra
        last_index = (pos + n + PAGE_SIZE - 1) >> PAGE_SHIFT  # exclusive
        prev = ra.prev_pos
        # pos_same_folio(ki_pos, last_pos - 1): the previous read ended in this page
        skip_first = prev > 0 and (prev - 1) >> PAGE_SHIFT == pos >> PAGE_SHIFT
        done = 0
        while done < n:
            p = pos + done
            idx = p >> PAGE_SHIFT
            off = p & (PAGE_SIZE - 1)
            chunk = min(PAGE_SIZE - off, n - done)
            page = pages.get(idx)
            if page is None:
                if inode.shmem and not (inode.mapping.swapped and idx in inode.mapping.swapped):
                    # shmem_file_read_iter: SGP_READ finds a hole, the zero page is copied
                    # and nothing is allocated (a swapped page is read back below)
                    self.cost += phys.touch(k.zero_pfn, False)
                    done += chunk
                    if consume(ZERO_PAGE if chunk == PAGE_SIZE else ZERO_PAGE[:chunk]) is False:
                        break
                    continue
                if inode.shmem:  # no file readahead: shmem_swapin_folio reads it back
                    page, _, c = filemap_get_page(k, inode, idx)
                    self.cost += c
                else:
                    page = self._readahead(f, idx, last_index)
                if page is None:
                    break
            if page.flags & PG_readahead:
                _, c = page_cache_async_ra(k, inode, ra, page, last_index - idx)
                self.cost += c
            if (not off) if inode.shmem else (done or not skip_first):
                k.mark_page_accessed(page)  # shmem: only a read from the page's start
            self.cost += phys.touch(page.pfn, False)
            done += chunk
            part = phys.load(page.pfn)
            if chunk != PAGE_SIZE:
                part = part[off:off + chunk]
            if consume(part) is False:
                break
        ra.prev_pos = pos + done
        return done

    def _readahead(self, f, idx: int, last_index: int):
        """A page-cache miss at `idx` of a read ending before page `last_index`:
        page_cache_sync_ra of the request, then the page alone if readahead did not
        bring it (filemap_create_folio); the page, or None (no memory)."""
        k = self.kernel
        inode = f.inode
        _, c = page_cache_sync_ra(k, inode, f.f_ra, f.fmode_random, idx, last_index - idx)
        self.cost += c
        page = inode.mapping.pages.get(idx)
        if page is None:
            page, _, c = filemap_get_page(k, inode, idx)
            self.cost += c
        return page

    def _splice_pagecache(self, f, pos: int, count: int) -> int:
        """The file's pages [pos, pos + count) (up to EOF) read by a device straight
        from the page cache (a socket's DMA: sendfile, splice): read in where missing
        (synchronous readahead), marked accessed and touched, their bytes never copied.
        Returns the bytes sent (0 at or past EOF). Readahead as in _read_pagecache."""
        k = self.kernel
        inode = f.inode
        n = min(count, max(0, inode.size - pos))
        if n == 0:
            return 0
        phys = k.phys
        pages = inode.mapping.pages
        first = pos >> PAGE_SHIFT
        last = (pos + n - 1) >> PAGE_SHIFT
        mark = k.mark_page_accessed
        ra = f.f_ra
        prev = ra.prev_pos
        ra.prev_pos = pos + n
        skip_first = prev > 0 and (prev - 1) >> PAGE_SHIFT == first
        # NOTE: when every page is cached, active, referenced and clean (a hot file),
        # nothing but the touches happens: found by this loop, one touch_many call.
        pfns = []
        for idx in range(first, last + 1):
            page = pages.get(idx)
            if page is None or page.flags & _STEADY_CLEAN != _ACCESSED_STEADY:
                break
            pfns.append(page.pfn)
        else:
            self.cost += phys.touch_many(pfns, False)
            return n
        # NOTE: the frames of a run of cached pages are touched in one touch_many call;
        # the run is flushed before a readahead, so host events keep their order.
        run = []
        end = last + 1
        for idx in range(first, end):
            page = pages.get(idx)
            if page is None:
                if run:
                    self.cost += phys.touch_many(run, False)
                    run = []
                page = self._readahead(f, idx, end)
                if page is None:
                    end = idx
                    break
            flags = page.flags
            if flags & PG_readahead:
                _, c = page_cache_async_ra(k, inode, ra, page, last + 1 - idx)
                self.cost += c
            if ((flags & _ACCESSED_STEADY != _ACCESSED_STEADY or flags & PG_dirty)
                    and (idx != first or not skip_first)):
                mark(page)  # (an active, referenced, clean page: nothing to do)
            run.append(page.pfn)
        if run:
            self.cost += phys.touch_many(run, False)
        if end == first:
            ra.prev_pos = prev
            return 0
        sent = min(end << PAGE_SHIFT, pos + n) - pos
        ra.prev_pos = pos + sent
        return sent

    @_syscall()
    def sendfile(self, out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        """sendfile(2): move up to `count` bytes of the file `in_fd` to `out_fd` inside
        the kernel, straight from the page cache (no copy in user memory: what nginx's
        `sendfile on` and Apache's EnableSendfile do for static files). `offset` None
        reads at and advances in_fd's position; an int reads there and leaves the
        position alone. out_fd: the terminal or a socket (fds 0-2: the data leaves the
        machine) or a regular file opened for writing (written through its page cache).
        Returns the bytes sent."""
        fin = self._file(in_fd)
        fout = self._file(out_fd)
        if fin is _STDIO or not fin.readable:
            raise U.err(U.EBADF if fin is not _STDIO and not fin.readable else U.EINVAL, "sendfile")
        if fout is not _STDIO and (not fout.writable or fout.flags & U.O_APPEND):
            raise U.err(U.EBADF if not fout.writable else U.EINVAL, "sendfile")
        if count < 0 or (offset is not None and offset < 0):
            raise U.err(U.EINVAL, "sendfile")
        pos = fin.pos if offset is None else offset
        if fout is _STDIO:
            sent = self._splice_pagecache(fin, pos, count)
        else:
            parts = []
            sent = self._read_pagecache(fin, pos, count, parts.append)
            if sent:
                sent = self._write_pagecache(fout, b"".join(parts))
        if offset is None:
            fin.pos += sent
        return sent

    @_syscall()
    def write(self, fd: int, buf: int, count: int) -> int:
        """Copy from the user buffer into the page cache (pages dirtied)."""
        f = self._file(fd)
        if f is _STDIO:
            return count
        if not f.writable:
            raise U.err(U.EBADF, "write")
        if f.inode.seals & (U.F_SEAL_WRITE | U.F_SEAL_FUTURE_WRITE):
            raise U.err(U.EPERM, "write")  # shmem_file_write_iter: a write-sealed memfd
        if count <= 0:
            return 0
        data = copy_from_user(self, buf, count)
        if not data:
            raise U.err(U.EFAULT, "write")
        return self._write_pagecache(f, data)

    def _write_pagecache(self, f, data: bytes) -> int:
        """generic_perform_write: `data` into f's page cache at its position (the end with
        O_APPEND); pages dirtied, the position and size advanced. Returns bytes written."""
        k = self.kernel
        inode = f.inode
        pos = inode.size if f.flags & U.O_APPEND else f.pos
        phys = k.phys
        n = len(data)
        done = 0
        inode.enospc = False
        while done < n:
            p = pos + done
            idx = p >> PAGE_SHIFT
            off = p & (PAGE_SIZE - 1)
            chunk = min(PAGE_SIZE - off, n - done)
            page = inode.mapping.pages.get(idx)
            if page is None and inode.shmem and k.thp is not None and k.thp.shmem_on:
                # shmem_write_begin: shmem_get_folio(SGP_WRITE) may take a huge folio
                # (shmem_is_huge without a VMA); None: 4 KiB below
                page = k.thp.shmem_write_folio(self, inode, idx)
            if page is None:
                if chunk == PAGE_SIZE or idx >= inode.nr_index():
                    page = add_to_page_cache(k, inode, idx, ZERO_PAGE if chunk != PAGE_SIZE else None,
                                             write=True)
                else:
                    page, _, c = filemap_get_page(k, inode, idx, write=True)  # (no readahead on write)
                    self.cost += c
                if page is None:
                    break
            if chunk == PAGE_SIZE:
                new = data[done:done + chunk]
            else:
                old = phys.load(page.pfn)
                new = old[:off] + data[done:done + chunk] + old[off + chunk:]
            self.cost += phys.touch(page.pfn, True) + phys.store(page.pfn, new)
            set_page_dirty(k, page, self)
            k.mark_page_accessed(page)
            bdp = getattr(k, "balance_dirty_pages_ratelimited", None)  # (vmscan.py)
            if bdp is not None:
                bdp(page, self)
            done += chunk
        if done == 0:
            raise U.err(U.ENOSPC if inode.enospc else U.ENOMEM, "write")
        inode.size = max(inode.size, pos + done)
        f.pos = pos + done
        return done

    @_syscall(needs_mm=False)
    def fadvise(self, fd: int, offset: int, length: int, advice: int) -> int:
        """posix_fadvise(2) (fadvise64 -> generic_fadvise): NORMAL, RANDOM and SEQUENTIAL
        set the file's readahead (FMODE_RANDOM; SEQUENTIAL doubles ra_pages), WILLNEED
        reads the range ahead (force_page_cache_ra: at most max(io_pages, ra_pages)
        pages; the call does not wait for the reads), DONTNEED starts writing the range's
        dirty pages and drops its clean, unmapped pages (partial pages at either end
        kept, but the last page of a range that ends at EOF dropped), NOREUSE does
        nothing here.
        `length` 0 means to the end of the file. Returns 0."""
        f = self._file(fd)
        if advice not in (U.POSIX_FADV_NORMAL, U.POSIX_FADV_RANDOM, U.POSIX_FADV_SEQUENTIAL,
                          U.POSIX_FADV_WILLNEED, U.POSIX_FADV_DONTNEED, U.POSIX_FADV_NOREUSE):
            raise U.err(U.EINVAL, "fadvise")
        if length < 0:
            raise U.err(U.EINVAL, "fadvise")
        if f is _STDIO:
            return 0  # a terminal: no backing device, valid advice is ignored
        inode = f.inode
        if length == 0 or offset + length < length:
            endbyte = (1 << 63) - 1
        else:
            endbyte = offset + length - 1
        if advice == U.POSIX_FADV_NORMAL:
            f.f_ra.ra_pages = inode.fs.ra_pages
            f.fmode_random = False
        elif advice == U.POSIX_FADV_RANDOM:
            f.fmode_random = True
        elif advice == U.POSIX_FADV_SEQUENTIAL:
            f.f_ra.ra_pages = inode.fs.ra_pages * 2
            f.fmode_random = False
        elif advice == U.POSIX_FADV_WILLNEED and not inode.shmem:
            start = offset >> PAGE_SHIFT
            nr = (endbyte >> PAGE_SHIFT) - start + 1
            force_page_cache_ra(self.kernel, inode, f.f_ra, start, nr)
        elif advice == U.POSIX_FADV_DONTNEED and not inode.shmem:
            rk = getattr(self.kernel, "reclaim", None)
            if rk is not None and inode.mapping.dirty:
                # __filemap_fdatawrite_range(offset, endbyte, WB_SYNC_NONE): the range's
                # dirty pages, partial ones too, start their writeback (not waited for)
                rk.filemap_flush(inode.mapping, offset >> PAGE_SHIFT, endbyte >> PAGE_SHIFT)
            start = (offset + PAGE_SIZE - 1) >> PAGE_SHIFT
            end = endbyte >> PAGE_SHIFT
            # whole pages only, but a range that ends at EOF takes the last page too
            if endbyte & (PAGE_SIZE - 1) != PAGE_SIZE - 1 and endbyte != inode.size - 1:
                if end == 0:
                    return 0
                end -= 1
            if end >= start:
                nr_failed = [0]
                invalidate_mapping_pages(self.kernel, inode, start, end, nr_failed)
                if nr_failed[0]:
                    # "the failures may be due to the folio being in the LRU cache of a
                    # remote CPU": lru_add_drain_all, then invalidate_mapping_pages again
                    # (its pages deactivated a second time: tests/data/fadvise/
                    # fadvise_held.json; the guest has no per-CPU lru_deactivate_file
                    # batch, so what the kernel's second pass leaves in it moves too)
                    invalidate_mapping_pages(self.kernel, inode, start, end)
        return 0

    @_syscall(needs_mm=False)
    def lseek(self, fd: int, offset: int, whence: int = U.SEEK_SET) -> int:
        f = self._file(fd)
        if f is _STDIO:
            raise U.err(U.EINVAL, "lseek")
        base = {U.SEEK_SET: 0, U.SEEK_CUR: f.pos, U.SEEK_END: f.inode.size}.get(whence)
        if base is None or base + offset < 0:
            raise U.err(U.EINVAL, "lseek")
        f.pos = base + offset
        return f.pos

    @_syscall(needs_mm=False)
    def mount(self, source: str, target: str, fstype: str, flags: int = 0, data: str = "") -> int:
        """mount(2) of a tmpfs (mount.py): CAP_SYS_ADMIN (EPERM); MS_REMOUNT reconfigures
        the mount at `target`; `data` the comma-separated options."""
        if not self.capable(U.CAP_SYS_ADMIN):
            raise U.err(U.EPERM, "mount")
        return self.kernel.mounts.mount(source, target, fstype, flags, data)

    @_syscall(needs_mm=False)
    def umount(self, target: str) -> int:
        """umount(2) (mount.py): CAP_SYS_ADMIN (EPERM); EBUSY while a file of it is in use."""
        if not self.capable(U.CAP_SYS_ADMIN):
            raise U.err(U.EPERM, "umount")
        return self.kernel.mounts.umount(target)

    @_syscall(needs_mm=False)
    def statfs(self, path: str) -> dict:
        """statfs(2) of a path under a tmpfs mount (shmem_statfs: f_blocks, f_bfree,
        f_bavail in pages, f_files, f_ffree); ENOSYS for the disk (not modelled)."""
        try:
            return self.kernel.mounts.statfs(path)
        except (KeyError, ValueError):
            raise U.err(U.ENOSYS, f"statfs {path}") from None

    @_syscall()
    def truncate(self, path: str, length: int) -> int:
        """truncate(2): do_sys_truncate on the file at `path` (EINVAL for a negative
        length, ENOENT if there is no such file, ETXTBSY for a running program's)."""
        if length < 0:
            raise U.err(U.EINVAL, "truncate")
        self.kernel.dcache.dput(self.kernel.dcache.lookup(path))  # the path walk
        inode = self.kernel.fs.lookup(path)
        if inode is None:
            raise U.err(U.ENOENT, f"truncate {path}")
        # vfs_truncate: get_write_access for the call (put_write_access after it): a
        # running program's file fails with ETXTBSY
        if not get_write_access(inode):
            raise U.err(U.ETXTBSY, f"truncate {path}")
        try:
            _truncate(self.kernel, inode, length)
        finally:
            inode.i_writecount -= 1  # put_write_access
        return 0

    @_syscall(needs_mm=False)
    def stat(self, path: str) -> int:
        """stat(2) reduced to what memory sees: the path walk (a missing name leaves a
        negative dentry); returns st_size, or ENOENT."""
        dcache = self.kernel.dcache
        dentry = dcache.lookup(path)
        inode = dentry.inode
        dcache.dput(dentry)
        if inode is None:
            raise U.err(U.ENOENT, f"stat {path}")
        return getattr(inode, "size", 0)

    @_syscall(needs_mm=False)
    def unlink(self, path: str) -> int:
        """unlink(2): the name goes (d_delete: the dentry turns negative when nobody else
        holds it); the file's pages go with its last user."""
        k = self.kernel
        dentry = k.dcache.lookup(path)
        if k.fs.lookup(path) is None:
            k.dcache.dput(dentry)
            raise U.err(U.ENOENT, f"unlink {path}")
        inode = k.fs.lookup(path)
        k.fs.unlink(path)
        k.dcache.d_delete(dentry)
        k.dcache.dput(dentry)
        if inode.users == 0:
            k.fs.evict_inode(inode)
        return 0

    @_syscall()
    def ftruncate(self, fd: int, length: int) -> int:
        f = self._file(fd)
        if f is _STDIO or length < 0 or not f.writable:
            raise U.err(U.EINVAL, "ftruncate")
        seals = f.inode.seals
        if seals and (length < f.inode.size and seals & U.F_SEAL_SHRINK
                      or length > f.inode.size and seals & U.F_SEAL_GROW):
            raise U.err(U.EPERM, "ftruncate")  # shmem_setattr
        _truncate(self.kernel, f.inode, length)
        return 0


def _truncate(kernel, inode, length: int) -> None:
    """truncate_setsize + truncate_pagecache: shrinking unmaps the pages wholly beyond
    EOF from every mapping (private CoW copies too), drops them from the cache and the
    disk, and zeroes the tail of the page that straddles an unaligned new EOF
    (truncate_inode_pages_range's partial page). The seconds go to kernel.stall."""
    if length < inode.size:
        start_index = (length + PAGE_SIZE - 1) >> PAGE_SHIFT
        for vma in list(inode.mapping.i_mmap):
            vstart = vma.vm_start + ((start_index - vma.vm_pgoff) << PAGE_SHIFT)
            a = max(vma.vm_start, vstart)
            if a < vma.vm_end:
                zap_page_range(kernel, vma.vm_mm, vma, a, vma.vm_end)
        inode.size = length
        truncate_inode_pages(kernel, inode, start_index)
        kernel.stall += truncate_partial_page(kernel, inode, length)
        if inode.hole_from is None or length < inode.hole_from:
            inode.hole_from = length
    inode.size = length


def _keep_id(n: int) -> bool:
    return n == -1 or n == (1 << 32) - 1


def _alloc_pid(kernel) -> int:
    alloc = getattr(kernel, "alloc_pid", None)
    if alloc is not None:
        return alloc()
    pid = getattr(kernel, "_next_pid", 1)
    kernel._next_pid = pid + 1
    return pid


def spawn(kernel, name: str, **layout) -> Task:
    """A new process running `name` (a static binary /bin/<name>, or /sbin/init), as
    after execve: text, data, bss, the brk, and the stack. Returns its Task."""
    from .mmap import PAGE_ALIGN

    pid = _alloc_pid(kernel)
    parent = kernel.tasks.get(1)
    task = Task(kernel, pid, name, parent=parent)
    if pid == 1:
        task.autoreap_children = True
    path = "/sbin/init" if name == "init" else f"/bin/{name}"
    elf = layout.pop("elf", None)
    if elf is None:
        text = layout.get("text", DEFAULT_TEXT)
        data = layout.get("data", DEFAULT_DATA)
        kernel.fs.create(path, PAGE_ALIGN(text) + data)
    else:
        path = elf["exe"].path
    task._kdepth += 1
    try:
        layout.setdefault("argv", [path])
        if elf is not None:
            from .binfmt_elf import load_elf_binary

            load_elf_binary(task, path, argv=layout.get("argv"), envp=layout.get("envp"), **elf)
        else:
            load_static_binary(task, path, **layout)
    except BaseException:
        task.state = "dead"
        task._free_stack()
        _slab_free(kernel, "files_cache", task.files_slab)
        _slab_free(kernel, "task_struct", task.slab_obj)
        raise
    finally:
        task._kdepth -= 1
    task.last_cost = kernel.take_stall()
    kernel.tasks[pid] = task
    if parent is not None:
        parent.children.append(task)
    return task


# --- /proc/PID files -----------------------------------------------------------------------------
def _vma_name(mm, vma) -> str | None:
    f = vma.vm_file
    if f is not None:
        inode = f.inode
        if inode.name is not None:
            return inode.name
        return inode.path + (" (deleted)" if inode.nlink == 0 else "")
    ops = vma.vm_ops
    if ops is not None and hasattr(ops, "name"):
        return ops.name(vma)
    if vma.vm_start < mm.brk and vma.vm_end > mm.start_brk:
        return "[heap]"  # vma_is_initial_heap (6.x): strict, so a bss VMA ending at start_brk is not
    if vma.vm_start <= mm.start_stack <= vma.vm_end:
        return "[stack]"
    if vma.anon_name is not None:
        return f"[anon:{vma.anon_name}]"
    return None


def _header(start: int, end: int, flags: int, pgoff: int, dev, ino: int) -> str:
    perms = ("r" if flags & VM_READ else "-") + ("w" if flags & VM_WRITE else "-") + (
        "x" if flags & VM_EXEC else "-") + ("s" if flags & VM_MAYSHARE else "p")
    return f"{start:08x}-{end:08x} {perms} {pgoff:08x} {dev[0]:02x}:{dev[1]:02x} {ino} "


def _pad_width(kernel) -> int:
    return 25 + (8 if kernel.config.arch == "x86_64" else 4) * 6 - 1


def proc_maps(task) -> str:
    """/proc/PID/maps, byte for byte as Linux 6.x prints it."""
    mm = task.mm
    if mm is None:
        return ""
    width = _pad_width(task.kernel)
    out = []
    for vma in mm.mm_mt.vmas:
        if vma.vm_file is not None:
            inode = vma.vm_file.inode
            line = _header(vma.vm_start, vma.vm_end, vma.vm_flags, vma.vm_pgoff << PAGE_SHIFT,
                           inode.dev, inode.ino)
        else:
            line = _header(vma.vm_start, vma.vm_end, vma.vm_flags, 0, (0, 0), 0)
        name = _vma_name(mm, vma)
        if name is not None:
            line = line.ljust(width) + " " + name
        out.append(line + "\n")
    return "".join(out)


def _kb_line(label: str, pages: int) -> str:
    return f"{label}:\t{pages << (PAGE_SHIFT - 10):8d} kB\n"


def proc_status(task) -> str:
    """/proc/PID/status (the memory lines in Linux's order and format)."""
    state = {"running": "R (running)", "zombie": "Z (zombie)", "dead": "X (dead)"}[task.state]
    ppid = task.parent.pid if task.parent is not None else 0
    nfd = max(64, len(task.files))
    s = (f"Name:\t{task.comm}\nUmask:\t0022\nState:\t{state}\nTgid:\t{task.tgid}\n"
         f"Ngid:\t0\nPid:\t{task.pid}\nPPid:\t{ppid}\nTracerPid:\t0\n"
         f"Uid:\t{task.uid}\t{task.uid}\t{task.uid}\t{task.uid}\n"
         f"Gid:\t{task.uid}\t{task.uid}\t{task.uid}\t{task.uid}\n"
         f"FDSize:\t{nfd}\nGroups:\t\nNStgid:\t{task.tgid}\nNSpid:\t{task.pid}\n"
         f"NSpgid:\t{task.pid}\nNSsid:\t{task.pid}\nKthread:\t0\n")
    mm = task.mm
    if mm is not None:
        r = mm.rss
        anon, file, shmem, swap = r[MM_ANONPAGES], r[MM_FILEPAGES], r[MM_SHMEMPAGES], r[MM_SWAPENTS]
        total_rss = anon + file + shmem
        hiwater_vm = max(mm.hiwater_vm, mm.total_vm)
        hiwater_rss = max(mm.hiwater_rss, total_rss)
        text = ((mm.end_code + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)) - (mm.start_code & ~(PAGE_SIZE - 1))
        text = min(text, mm.exec_vm << PAGE_SHIFT)
        lib = (mm.exec_vm << PAGE_SHIFT) - text
        s += (_kb_line("VmPeak", hiwater_vm) + _kb_line("VmSize", mm.total_vm)
              + _kb_line("VmLck", mm.locked_vm) + _kb_line("VmPin", mm.pinned_vm)
              + _kb_line("VmHWM", hiwater_rss) + _kb_line("VmRSS", total_rss)
              + _kb_line("RssAnon", anon) + _kb_line("RssFile", file)
              + _kb_line("RssShmem", shmem) + _kb_line("VmData", mm.data_vm)
              + _kb_line("VmStk", mm.stack_vm)
              + f"VmExe:\t{text >> 10:8d} kB\nVmLib:\t{lib >> 10:8d} kB\n"
              + f"VmPTE:\t{mm.pgtables_bytes >> 10:8d} kB\n"
              + _kb_line("VmSwap", swap) + f"HugetlbPages:\t{0:8d} kB\n")
    s += "CoreDumping:\t0\n"
    if mm is not None and task.kernel.config.era == "6.x":
        # task_thp_status (5.0+): THP built and MMF_DISABLE_THP clear
        s += f"THP_enabled:\t{int(task.kernel.thp is not None and not mm.thp_disabled)}\n"
    s += "Threads:\t1\n"
    return s


PSS_SHIFT = 12


_SMAPS_KEYS = ("resident", "pss", "pss_dirty", "pss_anon", "pss_file", "pss_shmem",
               "shared_clean", "shared_dirty", "private_clean", "private_dirty",
               "referenced", "anonymous", "lazyfree", "swap", "swap_pss", "pss_locked",
               "anon_thp", "shmem_thp", "file_thp")


def _smaps_account(st: dict, k, mm, vma) -> None:
    """smaps_pte_range over one VMA: add its pages to the totals in `st` (bytes; the
    pss fields in bytes << PSS_SHIFT)."""
    mem_map = k.mem_map
    zero_pfn = k.zero_pfn
    ptes = mm.pgtable.ptes
    locked = vma.vm_flags & VM_LOCKED
    lo, hi = vma.vm_start >> PAGE_SHIFT, vma.vm_end >> PAGE_SHIFT
    if hi - lo > 2 * len(ptes):
        vpns = sorted(v for v in ptes if lo <= v < hi)
    else:
        vpns = [v for v in range(lo, hi) if v in ptes]
    f = vma.vm_file
    sw = f.inode.mapping.swapped if f is not None and f.inode.shmem else None
    if sw:
        # smap_gather_stats: a shmem mapping's pages on swap (shmem_swap_usage) count in
        # Swap (not SwapPss); a private writable one only where no PTE (a CoW copy)
        # covers them (smaps_pte_hole: shmem_partial_swap_usage)
        pg = vma.vm_pgoff - lo
        whole = vma.vm_flags & VM_SHARED or not vma.vm_flags & VM_WRITE
        st["swap"] += PAGE_SIZE * sum(
            1 for i in sw if lo <= i - pg < hi and (whole or i - pg not in ptes))
    for vpn in vpns:
        pte = ptes[vpn]
        if not pte & PTE_PRESENT_MASK:
            if pte & _PAGE_SWP:
                st["swap"] += PAGE_SIZE
                st["swap_pss"] += PAGE_SIZE << PSS_SHIFT
            continue
        pfn = pte >> PAGE_SHIFT
        if pfn == zero_pfn:
            continue
        page = mem_map[pfn]
        if page.flags & PG_zero:
            continue  # the huge zero page (smaps_pmd_entry: not counted)
        mapcount = max(page._mapcount + 1, 1)
        dirty = bool(pte & _PAGE_DIRTY or page.flags & PG_dirty)
        st["resident"] += PAGE_SIZE
        if pte & _PAGE_ACCESSED or page.flags & PG_referenced:
            st["referenced"] += PAGE_SIZE
        anon = page.flags & PG_anon
        if anon:
            st["anonymous"] += PAGE_SIZE
            if pte & _PAGE_PSE:
                st["anon_thp"] += PAGE_SIZE  # one 512th of a PMD-mapped THP
            if not page.flags & PG_swapbacked and not dirty:
                st["lazyfree"] += PAGE_SIZE
        elif pte & _PAGE_PSE and page.flags & PG_swapbacked:
            st["shmem_thp"] += PAGE_SIZE  # smaps_pmd_entry: a PMD-mapped shmem THP's 512th
        elif pte & _PAGE_PSE:
            st["file_thp"] += PAGE_SIZE  # a PMD-mapped regular file THP's 512th (FilePmdMapped)
        pss = (PAGE_SIZE << PSS_SHIFT) // mapcount
        st["pss"] += pss
        if dirty:
            st["pss_dirty"] += pss
        if anon:
            st["pss_anon"] += pss
        elif page.flags & PG_swapbacked:
            st["pss_shmem"] += pss
        else:
            st["pss_file"] += pss
        if locked:
            st["pss_locked"] += pss
        if mapcount >= 2:
            st["shared_dirty" if dirty else "shared_clean"] += PAGE_SIZE
        else:
            st["private_dirty" if dirty else "private_clean"] += PAGE_SIZE


def _dec(label: str, value: int) -> str:
    return f"{label}{value >> 10:8d} kB\n"


def _show_smap(st: dict, rollup: bool) -> str:
    """__show_smap: the lines common to smaps and smaps_rollup."""
    out = _dec("Rss:            ", st["resident"])
    out += _dec("Pss:            ", st["pss"] >> PSS_SHIFT)
    out += _dec("Pss_Dirty:      ", st["pss_dirty"] >> PSS_SHIFT)
    if rollup:
        out += _dec("Pss_Anon:       ", st["pss_anon"] >> PSS_SHIFT)
        out += _dec("Pss_File:       ", st["pss_file"] >> PSS_SHIFT)
        out += _dec("Pss_Shmem:      ", st["pss_shmem"] >> PSS_SHIFT)
    for label, key in (("Shared_Clean:   ", "shared_clean"), ("Shared_Dirty:   ", "shared_dirty"),
                       ("Private_Clean:  ", "private_clean"),
                       ("Private_Dirty:  ", "private_dirty"), ("Referenced:     ", "referenced"),
                       ("Anonymous:      ", "anonymous")):
        out += _dec(label, st[key])
    out += _dec("KSM:            ", 0)
    out += _dec("LazyFree:       ", st["lazyfree"])
    out += _dec("AnonHugePages:  ", st["anon_thp"])
    out += _dec("ShmemPmdMapped: ", st["shmem_thp"])
    out += _dec("FilePmdMapped:  ", st["file_thp"])
    out += _dec("Shared_Hugetlb: ", 0)
    out += f"Private_Hugetlb: {0:7d} kB\n"
    out += _dec("Swap:           ", st["swap"])
    out += _dec("SwapPss:        ", st["swap_pss"] >> PSS_SHIFT)
    out += _dec("Locked:         ", st["pss_locked"] >> PSS_SHIFT)
    return out


def proc_smaps_rollup(task) -> str:
    """/proc/PID/smaps_rollup."""
    mm = task.mm
    if mm is None or not mm.mm_mt.vmas:
        return ""
    k = task.kernel
    st = dict.fromkeys(_SMAPS_KEYS, 0)
    for vma in mm.mm_mt.vmas:
        _smaps_account(st, k, mm, vma)
    first = mm.mm_mt.vmas[0].vm_start
    last = mm.mm_mt.vmas[-1].vm_end
    head = _header(first, last, 0, 0, (0, 0), 0).ljust(_pad_width(k)) + " [rollup]\n"
    return head + _show_smap(st, True)


def proc_smaps(task) -> str:
    """/proc/PID/smaps: each VMA's maps line, its page statistics and VmFlags."""
    from .vma import vm_flag_names

    mm = task.mm
    if mm is None:
        return ""
    k = task.kernel
    lines = proc_maps(task).splitlines(keepends=True)
    out = []
    for line, vma in zip(lines, mm.mm_mt.vmas, strict=True):
        st = dict.fromkeys(_SMAPS_KEYS, 0)
        _smaps_account(st, k, mm, vma)
        out.append(line)
        out.append(_dec("Size:           ", vma.vm_end - vma.vm_start))
        out.append(_dec("KernelPageSize: ", PAGE_SIZE))
        out.append(_dec("MMUPageSize:    ", PAGE_SIZE))
        out.append(_show_smap(st, False))
        # hugepage_vma_check(vma, vm_flags, smaps=true, in_pf=false, enforce_sysfs=true)
        thp = k.thp
        eligible = int(thp is not None and thp.vma_allowed(vma, in_pf=False, smaps=True))
        out.append(f"THPeligible:    {eligible:8d}\n")
        names = vm_flag_names(vma.vm_flags)
        out.append(f"VmFlags: {names + ' ' if names else ''}\n")
    return "".join(out)


def register_proc_files(kernel) -> None:
    procfs = kernel.procfs
    procfs.register_pid("maps", proc_maps)
    procfs.register_pid("status", proc_status)
    procfs.register_pid("smaps_rollup", proc_smaps_rollup)
    procfs.register_pid("smaps", proc_smaps)
    # the guest's disk (its swap is /dev/vda2): its readahead window, a runtime tunable
    fs = kernel.fs
    procfs.register(SYS_READ_AHEAD_KB, lambda: queue_ra_show(fs),
                    lambda text: queue_ra_store(fs, text))


# --- boot ------------------------------------------------------------------------------------------
def cfg_image(kernel) -> int:
    return kernel.config.kernel_image


def init_address_spaces(kernel) -> None:
    """Boot-time setup of the address-space layer (called by Kernel.__init__)."""
    vm = kernel.vmstat
    for name in FAULT_COUNTERS:
        vm.setdefault(name, 0)
    for name in ("pgfault", "pgmajfault", "pgreuse", "pglazyfree", "cow_ksm", "nr_mlock",
                 "unevictable_pgs_mlocked", "unevictable_pgs_munlocked",
                 "unevictable_pgs_cleared", "nr_anon_pages", "nr_mapped", "nr_file_pages",
                 "nr_shmem", "nr_dirty", "nr_page_table_pages", "pgpgin", "pgpgout"):
        vm.setdefault(name, 0)
    if not hasattr(kernel, "tasks"):
        kernel.tasks = {}
    # slab caches for the structures this layer allocates
    caches = {}
    if getattr(kernel, "slab", None) is not None:
        sizes = SLAB_SIZES.get(kernel.config.era, SLAB_SIZES["6.x"])
        flags = SLAB_CREATE_FLAGS.get(kernel.config.era, 0)
        for name, size in sizes.items():
            caches[name] = kernel.kmem_cache_create(name, size, 0, flags, None)
    kernel._as_caches = caches
    # the shared zero page: empty_zero_page lives in the kernel image's bss (the last
    # page of the reserved image), never written, so it reads as zeros beneath any host
    from .config import KERNEL_LOAD_ADDR

    pfn = ((KERNEL_LOAD_ADDR + cfg_image(kernel)) >> PAGE_SHIFT) - 1
    page = kernel.page_alloc.pfn_to_page(pfn)  # reserved frames get a Page on first use
    page.flags |= PG_zero | PG_reserved
    kernel.zero_page = page
    kernel.zero_pfn = page.pfn
    # the vDSO text (vdso_image_64/32): pages of the kernel image's rodata, just below
    # the zero page, each holding the kernel's own reference (mapping them never frees)
    from .mmap import VDSO_TEXT_PAGES

    kernel.vdso_pages = []
    for i in range(VDSO_TEXT_PAGES, 0, -1):
        vp = kernel.page_alloc.pfn_to_page(pfn - i)
        vp.flags |= PG_reserved
        vp._count = 1
        kernel.vdso_pages.append(vp)
    cfg = kernel.config
    kernel.fs = FileSystem(kernel, latency=cfg.swap_latency, bandwidth=cfg.swap_bandwidth,
                           ra_pages=cfg.read_ahead_kb >> (PAGE_SHIFT - 10))
    # readahead.py inserts the pages it reads through this hook (filemap imports readahead)
    kernel.add_to_page_cache = add_to_page_cache
    from .shm import ShmNamespace

    kernel.shm_ns = ShmNamespace(kernel)
    if getattr(kernel, "drop_caches", None) is None:
        kernel.drop_caches = lambda v: drop_caches(kernel, kernel.fs) if v & 1 else 0
    register_proc_files(kernel)
