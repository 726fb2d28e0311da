"""Guest user space: the base of every workload profile.

A workload runs as SimPy processes beside its guest kernel. It never creates a SimPy event
per page: a process handles a burst of work synchronously (system calls, touches of whole
ranges through `task.access_range`), adds up the costs the kernel and the hypervisor
return (faults, zeroing, swap-ins, host stalls), and then yields ONE timeout for the burst:
its CPU time plus those costs. Work done is counted in the profile's own unit (requests,
buffer-pool operations, compiled files, MiB allocated), so a run under memory pressure
shows its slowdown as throughput relative to a run with enough memory.

Time as the hardware spends it (hypervisor/cpu.py): the guest's tasks run on the VM's
vCPUs, which run on the host's CPUs. `wait(total)` splits a burst's seconds by what the
VM and the guest kernel counted while it ran: the stalls beneath the guest (host faults,
copy-on-write breaks, decompression, host swap-in, waits for a frame) hold the vCPU; the
guest's I/O waits (swap-in and file reads from its virtual disk) sleep the task and free
the vCPU; the rest is CPU time, which needs the vCPU and a host CPU. The burst is placed
on the vCPU its task woke on (the guest's select_task_rq_wake: its previous vCPU if idle,
else an idle one, else the one free first; kernel.task_cpu), or on the first free vCPU
when no task ran (after any burst queued there), and the process sleeps until its
vCPU time is over, then its I/O wait: with more runnable tasks than vCPUs, or vCPUs than
host CPUs, each burst waits its turn and throughput falls. A burst longer than its
vCPU's time slice (`[host] cpu_quantum` scaled by the VM's CPU shares) runs a slice at a
time (hypervisor.cpu.run_burst): runnable vCPUs take turns, as under ESX's scheduler,
instead of the first burst running to its end. A process's bursts are marked
at every resumption (`_guard`), so another process's stalls are never counted in its own.
A burst that host threads displace after it was booked (its own CPU, or the work queued
before it on its vCPU, hypervisor.cpu "Host threads") ends later by the CPU they took:
the process resumes that much later (`_guard` sleeps off `VCPUs.debt`).

`Proc` is the only place that speaks to the guest's Task API (system calls with Linux
signatures, raising OSError with the errno). A process killed by the guest (SIGSEGV, the
OOM killer) is noticed through `alive` and the workload carries on without it.
"""

from __future__ import annotations

import random

from guestkernel.uapi import MAP_ANONYMOUS, MAP_PRIVATE, O_CREAT, O_RDONLY, O_RDWR, PROT_READ, PROT_WRITE
from hypervisor.cpu import run_burst

from .malloc import Malloc

PAGE = 4096
TOUCH_CHUNK = 64  # pages generated and stored per access_range call


class Proc:
    """One process of a workload: its Task, its malloc, and the touch helpers."""

    def __init__(self, workload: Workload, task, heap: Malloc | None = None) -> None:
        self.wl = workload
        self.task = task
        self.heap = heap if heap is not None else Malloc(task)
        self.fds: dict[str, int] = {}
        self.buf = 0  # a user buffer for read()/write(), allocated on first use
        self.buf_len = 0

    @property
    def alive(self) -> bool:
        t = self.task
        return t.state == "running" and t.mm is not None

    @property
    def pid(self) -> int:
        return self.task.pid

    # ------------------------------------------------------------------ memory
    def malloc(self, nbytes: int) -> int:
        if not self.alive:
            return 0
        ptr = self.heap.malloc(nbytes)
        self.wl.stall += self.heap.take_cost()
        return ptr

    def free(self, ptr: int) -> None:
        if self.alive and ptr:
            self.heap.free(ptr)

    def mmap_anon(self, nbytes: int) -> int:
        if not self.alive:
            return 0
        try:
            addr = self.task.mmap(0, nbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        except OSError:
            return 0
        self.wl.stall += self.task.last_cost
        return addr

    def munmap(self, addr: int, nbytes: int) -> None:
        if self.alive and addr:
            try:
                self.task.munmap(addr, nbytes)
            except OSError:
                pass

    def touch(self, addr: int, nbytes: int, write: bool, data=None) -> float:
        """Touch [addr, addr + nbytes): every page once. `data` (write only) gives the page
        contents: a bytes object for every page, or a callable page_index -> bytes.
        Returns the seconds it cost; the process may die doing it."""
        if not self.alive or nbytes <= 0:
            return 0.0
        if not callable(data):
            cost = self.task.access_range(addr, nbytes, write, data)
        else:
            # generate the contents a chunk at a time: a large range never sits in memory
            cost = 0.0
            first = addr & ~(PAGE - 1)
            end = addr + nbytes
            index = 0
            while first < end and self.alive:
                n = min(TOUCH_CHUNK, (end - first + PAGE - 1) // PAGE)
                pages = [data(index + i) for i in range(n)]
                cost += self.task.access_range(first, n * PAGE, write, pages)
                first += n * PAGE
                index += n
        self.wl.stall += cost
        return cost

    def touch_pages(self, addrs, write: bool, data=None) -> float:
        """Touch scattered pages (one access each)."""
        if not self.alive:
            return 0.0
        cost = 0.0
        access = self.task.access
        for addr in addrs:
            if data is None or not write:
                cost += access(addr, write)
            else:
                cost += access(addr, write, data(addr) if callable(data) else data)
            if not self.alive:
                break
        self.wl.stall += cost
        return cost

    # ------------------------------------------------------------------ files
    def _fd(self, path: str, create: bool = False) -> int:
        fd = self.fds.get(path)
        if fd is None:
            flags = (O_RDWR | O_CREAT) if create else O_RDONLY
            fd = self.task.open(path, flags, 0o644)
            self.fds[path] = fd
        return fd

    def _buffer(self, nbytes: int) -> int:
        if nbytes > self.buf_len:
            if self.buf:
                self.free(self.buf)
            self.buf = self.malloc(nbytes)
            self.buf_len = nbytes if self.buf else 0
        return self.buf

    def _io(self, path: str, offset: int, nbytes: int, write: bool) -> float:
        if not self.alive:
            return 0.0
        cost = 0.0
        task = self.task
        try:
            fd = self._fd(path, create=write)
            buf = self._buffer(nbytes)
            if not buf:
                return 0.0
            task.lseek(fd, offset, 0)
            if write:
                task.write(fd, buf, nbytes)
            else:
                task.read(fd, buf, nbytes)
            cost = task.last_cost
        except OSError:
            cost = getattr(task, "last_cost", 0.0)
        self.wl.stall += cost
        return cost

    def read_file(self, path: str, offset: int, nbytes: int) -> float:
        """pread() into a user buffer: page cache in, copy out (two copies in memory)."""
        return self._io(path, offset, nbytes, False)

    def send_file(self, path: str, offset: int, nbytes: int) -> float:
        """sendfile() to the network: the page cache is read, no user memory is touched
        (a static web server with sendfile on)."""
        if not self.alive:
            return 0.0
        task = self.task
        try:
            task.sendfile(1, self._fd(path), offset, nbytes)
            cost = task.last_cost
        except OSError:
            cost = getattr(task, "last_cost", 0.0)
        self.wl.stall += cost
        return cost

    def write_file(self, path: str, offset: int, nbytes: int) -> float:
        """pwrite() from a user buffer into the page cache (dirty pages, written back later)."""
        return self._io(path, offset, nbytes, True)

    # ------------------------------------------------------------------ processes
    def fork(self) -> Proc | None:
        if not self.alive:
            return None
        try:
            pid = self.task.fork()
        except OSError:
            return None
        child = self.task.kernel.tasks[pid]
        self.wl.stall += self.task.last_cost
        proc = Proc(self.wl, child, self.heap.clone_for(child))
        proc.buf, proc.buf_len = self.buf, self.buf_len
        return proc

    def exit(self, code: int = 0) -> None:
        if self.alive:
            self.task.exit(code)


class Workload:
    """Base class: a profile's processes on one VM. Subclasses implement `run()` (a SimPy
    generator) and may start more processes from it with `self.go(gen)`."""

    name = "workload"
    unit = "ops"  # what work_done counts

    def __init__(self, env, vm, params, content, seed: int, image=None) -> None:
        self.env = env
        self.vm = vm
        self.kernel = vm.kernel
        self.params = params
        self.content = content
        self.rng = random.Random(seed)
        self.image = image
        self.work_done = 0.0
        self.stall = 0.0  # seconds spent beneath the processes (faults, host, I/O)
        self.procs: list[Proc] = []
        self.started = False
        self.vcpus = getattr(vm, "vcpus", None)  # hypervisor.cpu.VCPUs, or None: no scheduler
        # the VM, when the host backs it with large pages (their TLB discount, see wait)
        self._lp_vm = vm if getattr(vm, "lp", None) is not None else None
        # fraction of a burst's own time (what is left of it once stalls and I/O waits are
        # taken out) spent running on a CPU; the rest is spent off-CPU
        self.cpu_util = float(getattr(params, "cpu_util", 1.0))
        # the VM's and kernel's cumulative counters at the start of the running burst
        self._m_stall = self._m_zero = self._m_zip = self._m_io = 0.0
        self._slot: list = [None]  # the running process's last burst (VCPUs.mark; _guard)
        # what the bursts cost, seconds
        self.cpu_time = 0.0  # guest CPU time
        self.iowait_time = 0.0  # asleep on the guest's disks, vCPU free

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if not self.started:
            self.started = True
            self.go(self.run())

    def go(self, gen):
        return self.env.process(self._guard(gen))

    def _mark(self) -> None:
        """A process resumes: what the VM and kernel count from now is its burst's."""
        vm = self.vm
        self._m_stall = vm.stall_time
        self._m_zero = vm.stall_cpu_zero
        self._m_zip = vm.stall_cpu_zip
        k = self.kernel
        self._m_io = k.iowait_swap + k.iowait_file + getattr(k, "iowait_throttle", 0.0)
        k.task_cpu = None  # (set by the task that runs in the burst: Task.on_cpu)

    def _guard(self, gen):
        """Run a process body; a guest that panicked stops its workload, nothing more.
        (`yield from gen`, marking each resumption for `wait`.)"""
        mark = self._mark if self.vcpus is not None else None
        slot = [None]  # this process's last burst (VCPUs.mark), for the slip it owes (wait)
        try:
            if mark is None:
                yield from gen
                return
            mark()
            self._slot = slot
            ev = next(gen)
            vcpus = self.vcpus
            while True:
                val = yield ev
                m = slot[0]
                if m is not None:
                    # the burst it slept on slipped after its timeout was set (host
                    # threads took CPU from it, or from the work queued before it on its
                    # vCPU): it ends that much later, and so does the process's sleep
                    # (hypervisor.cpu, VCPUs.debt)
                    slot[0] = None
                    paid = 0.0
                    owed = vcpus.debt(m)
                    while owed > paid:
                        yield self.env.timeout(owed - paid)
                        paid = owed
                        owed = vcpus.debt(m)  # (it may slip again meanwhile)
                mark()
                self._slot = slot
                ev = gen.send(val)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001
            from guestkernel.page_alloc import KernelPanic

            if isinstance(exc, KernelPanic) or self.kernel.panicked:
                return
            raise

    def run(self):  # pragma: no cover - subclasses
        raise NotImplementedError
        yield

    def spawn(self, name: str) -> Proc:
        proc = Proc(self, self.kernel.spawn(name))
        self.procs.append(proc)
        return proc

    def adopt(self, proc: Proc | None) -> Proc | None:
        if proc is not None:
            self.procs.append(proc)
        return proc

    @property
    def dead(self) -> bool:
        return bool(self.kernel.panicked)

    # ------------------------------------------------------------------ content
    def page_data(self, profile: str, key_base: str, pid: int = 0):
        """A callable page_index -> page giving this workload's data for a range (lazy:
        generated pages are handed to the guest as LazyPages, see content.AppPage)."""
        app_page = self.content.app_page

        def data(i: int):
            return app_page(profile, f"{key_base}/{i}", pid, True)

        return data

    def wait(self, cpu_time: float):
        """The one timeout of a burst of `cpu_time` seconds: its CPU time plus every
        cost it was charged (stalls beneath the guest, guest I/O waits, guest kernel
        work). Without vCPUs, a plain timeout of that; with them, the burst is scheduled
        (module docstring) and the timeout ends when its vCPU time and I/O wait are over."""
        total = cpu_time if cpu_time > 0.0 else 0.0
        vcpus = self.vcpus
        if vcpus is None:
            return self.env.timeout(total)
        vm = self.vm
        k = self.kernel
        held = vm.stall_time - self._m_stall
        zero = vm.stall_cpu_zero - self._m_zero
        zip_ = vm.stall_cpu_zip - self._m_zip
        io = k.iowait_swap + k.iowait_file + getattr(k, "iowait_throttle", 0.0) - self._m_io
        # the vCPU the guest's scheduler placed the burst's task on (Task.on_cpu); None
        # (no task ran, or an older kernel): the vCPU free first
        vcpu = getattr(k, "task_cpu", None)
        wait = held - zero - zip_
        if wait < 0.0:
            wait = 0.0
        cpu = total - held - io
        if cpu < 0.0:  # (a cost counted but left out of the total)
            io = max(0.0, total - held)
            cpu = 0.0
        # of the burst's own time, the part off-CPU (waiting for the next request)
        think = cpu * (1.0 - self.cpu_util)
        cpu -= think
        lp_vm = self._lp_vm
        if lp_vm is not None and lp_vm.lp_live:  # host large pages: fewer 2-D page walks
            cpu *= lp_vm.tlb_factor()  # (hypervisor/largepage.py)
        self.cpu_time += cpu
        self.iowait_time += io
        # the next burst of this process starts from here (a process may call wait()
        # twice before yielding)
        self._mark()
        now = self.env.now
        slot = self._slot
        m = slot[0]
        debt = 0.0
        if m is not None:
            # a burst not yet slept on (wait() called twice before yielding; `_guard`
            # pays the slip of the one it slept on): a slip it took delays this one
            slot[0] = None
            debt = vcpus.debt(m)
        if cpu + zero + zip_ <= vcpus.slice:
            end = vcpus.burst(now + debt, cpu, zero, zip_, wait, vcpu)
            slot[0] = vcpus.mark(end)
            return self.env.timeout(end + io + think - now)
        # time-sliced (its own slips are paid inside run_burst)
        return run_burst(self.env, vcpus, cpu, zero, zip_, wait, io + think, before=debt, vcpu=vcpu)

    def exp(self, mean: float) -> float:
        return self.rng.expovariate(1.0 / mean) if mean > 0 else 0.0
