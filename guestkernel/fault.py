"""The page-fault decision tree of the course's flowchart (arch/x86/mm/fault.c), and the
kernel's user-memory accessors with their exception-table fixup (copy_to/from_user).

`do_page_fault(task, addr, write, user, execute, fixup, atomic)` takes the decisions in
the flowchart's order ("Traitement des exceptions", linux-mm.md section 4):

1. address in kernel space? kernel mode in the vmalloc area (i386): sync the kernel page
   table and return; otherwise bad_area (SEGV_MAPERR).
2. interrupt context / critical region (`atomic`) or no mm (kernel thread)? no_context.
3. address inside a VMA? good_area.
4. below a VM_GROWSDOWN VMA (the stack's growth area)? expand the stack -> good_area;
   expansion refused (guard gap, RLIMIT_STACK, commit) or no stack -> bad_area MAPERR.
5. good_area, write: VMA writable? no -> bad_area ACCERR; yes -> present? CoW : demand.
6. good_area, read/exec: present? -> bad_area ACCERR (protection fault: PROT_NONE, NX);
   VMA readable or executable? demand paging : bad_area ACCERR.
   A guard marker in the PTE (MADV_GUARD_INSTALL) makes handle_mm_fault return
   VM_FAULT_SIGSEGV: bad_area, SEGV_MAPERR (as the real kernel reports it).
7. bad_area: from user mode -> SIGSEGV (the task dies); from the kernel -> no_context.
8. no_context: the faulting kernel access has a fixup (copy_*_user) -> the system call
   returns -EFAULT; else a kernel Oops kills the task (a panic in interrupt context).

Outcomes are counted in kernel.vmstat (the Linux pgfault/pgmajfault plus these):

  fault_demand_zero     write to unmapped anonymous memory: a zeroed page was allocated
                        (or a zeroed 2 MiB transparent huge page: one fault)
  fault_zero_page       read of unmapped anonymous memory: the shared zero page mapped
                        (or the huge zero page)
  fault_cow             a page was copied for a write (private file page, shared anon
                        page after fork, or the zero page replaced by a zeroed page)
  fault_cow_reuse       write to an anonymous page mapped once: made writable in place
  fault_wp_shared       first write to a shared file page mapped read-only: made writable
  fault_file_minor      file/shmem page found in (or created in) the page cache
  fault_file_major      file page read from disk (also counted in pgmajfault)
  fault_swapin          page brought back from swap by kernel.swapin_hook
  fault_stack_grow      the stack VMA was expanded down to the address
  fault_sigsegv_maperr  SIGSEGV, address not in any VMA (or stack growth refused, or a
                        guard marker: MADV_GUARD_INSTALL)
  fault_sigsegv_accerr  SIGSEGV, VMA rights forbid the access
  fault_sigbus          SIGBUS: file mapping accessed beyond EOF
  fault_fixup           kernel access to a bad user address fixed up: syscall -EFAULT
  fault_oops            kernel bug: a kernel-mode fault with no fixup
  fault_vmalloc_sync    i386 kernel-mode fault in the vmalloc area: page table synced
  fault_oom             no memory for a user fault even after the OOM killer: SIGKILL
  fault_special         read of a special mapping ([vdso], [vvar]): a kernel frame mapped
"""

from __future__ import annotations

from .memory import VM_FAULT_OOM, VM_FAULT_SIGBUS, VM_FAULT_SIGSEGV, handle_mm_fault
from .pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, _PAGE_PRESENT, _PAGE_RW, PTE_PRESENT_MASK
from .uapi import BUS_ADRERR, SEGV_ACCERR, SEGV_MAPERR, SIGBUS, SIGKILL, SIGSEGV
from .units import PAGE_SHIFT, PAGE_SIZE
from .vma import VM_EXEC, VM_GROWSDOWN, VM_READ, VM_WRITE

FAULT_OK = 0  # resolved; retry the access
FAULT_SIGNAL = 1  # the task received a fatal signal (SIGSEGV, SIGBUS, SIGKILL)
FAULT_FIXUP = 2  # kernel-mode fault fixed up: the system call returns -EFAULT
FAULT_OOPS = 3  # kernel Oops: the task was killed
FAULT_SLEEP = 4  # the task sleeps in the kernel (v1 memcg OOM wait queue): retried once woken

FAULT_COUNTERS = (
    "fault_demand_zero", "fault_zero_page", "fault_cow", "fault_cow_reuse", "fault_wp_shared",
    "fault_file_minor", "fault_file_major", "fault_swapin", "fault_stack_grow",
    "fault_sigsegv_maperr", "fault_sigsegv_accerr", "fault_sigbus", "fault_fixup",
    "fault_oops", "fault_vmalloc_sync", "fault_oom", "fault_special",
)

# Kernel virtual ranges where a kernel-mode fault is a lazily synced vmalloc mapping (i386).
VMALLOC_RANGE = {"i386": (0xF8800000, 0xFF7FE000)}


class KernelOops(RuntimeError):
    """A kernel-mode fault that no fixup covers, outside any task (in an interrupt)."""


def do_page_fault(task, addr: int, write: bool = False, user: bool = True,
                  execute: bool = False, fixup: bool = False, atomic: bool = False,
                  kernel=None) -> int:
    """One page fault at `addr`. Returns FAULT_OK, FAULT_SIGNAL, FAULT_FIXUP or FAULT_OOPS."""
    if kernel is None:
        kernel = task.kernel
    vm = kernel.vmstat
    mm = task.mm if task is not None else None
    task_size = mm.task_size if mm is not None else kernel_task_size(kernel)
    # 1. kernel address?
    if addr >= task_size:
        if not user:
            lo_hi = VMALLOC_RANGE.get(kernel.config.arch)
            if lo_hi is not None and lo_hi[0] <= addr < lo_hi[1]:
                vm["fault_vmalloc_sync"] += 1
                return FAULT_OK
        return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_MAPERR)
    # 2. interrupt, critical region, or a kernel thread without mm
    if atomic or mm is None:
        return no_context(kernel, task, addr, fixup, atomic)
    # 3. in a region?
    vma = mm.mm_mt.find_vma(addr)
    if vma is None:
        return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_MAPERR)
    if vma.vm_start > addr:
        # 4. the stack's growth area?
        if not vma.vm_flags & VM_GROWSDOWN:
            return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_MAPERR)
        from .mmap import expand_stack

        if expand_stack(task, vma, addr) != 0:
            return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_MAPERR)
        vm["fault_stack_grow"] += 1
    # good_area
    flags = vma.vm_flags
    pte = mm.pgtable.ptes.get(addr >> PAGE_SHIFT, 0)
    if write:
        # 5. write: region writable?
        if not flags & VM_WRITE:
            return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_ACCERR)
    else:
        # 6. read/exec: present -> protection fault; else region R/X?
        if pte & PTE_PRESENT_MASK:
            return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_ACCERR)
        if not flags & (VM_READ | VM_EXEC):
            return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_ACCERR)
    if getattr(task, "memcg_oom_wait", None) is not None:
        return FAULT_SLEEP  # still asleep on the memcg's OOM wait queue
    task.in_user_fault = user  # mem_cgroup_enter_user_fault
    ret = handle_mm_fault(task, vma, addr, write)
    task.in_user_fault = False
    if ret & VM_FAULT_OOM:
        if task.fatal_signal_pending():
            return FAULT_SIGNAL
        if not user:
            return no_context(kernel, task, addr, fixup, atomic)
        # pagefault_out_of_memory: mem_cgroup_oom_synchronize first. A v1 memcg OOM
        # with oom_kill_disable puts the task to sleep on the memcg's OOM wait queue
        # until memcg_oom_recover wakes it; then the access faults again.
        memcgs = getattr(kernel, "memcgs", None)
        if memcgs is not None and memcgs.oom_synchronize(task) and task.memcg_oom_wait is not None:
            return FAULT_SLEEP
        # Otherwise the allocator has run the OOM killer already; 6.x retries the
        # fault. Once more; if memory is still short, the task dies.
        vma = mm.mm_mt.lookup(addr)
        if vma is not None:
            task.in_user_fault = True
            ret = handle_mm_fault(task, vma, addr, write)
            task.in_user_fault = False
        if vma is None or ret & VM_FAULT_OOM:
            if task.fatal_signal_pending():
                return FAULT_SIGNAL
            if (memcgs is not None and memcgs.oom_synchronize(task)
                    and task.memcg_oom_wait is not None):
                return FAULT_SLEEP
            vm["fault_oom"] += 1
            task.send_signal(SIGKILL, 0, addr)
            return FAULT_SIGNAL
    if ret & VM_FAULT_SIGSEGV:
        # a guard marker (6.13): mm_fault_error -> bad_area_nosemaphore, SEGV_MAPERR
        return bad_area(kernel, task, addr, user, fixup, atomic, SEGV_MAPERR)
    if ret & VM_FAULT_SIGBUS:
        if not user:
            return no_context(kernel, task, addr, fixup, atomic)
        vm["fault_sigbus"] += 1
        task.send_signal(SIGBUS, BUS_ADRERR, addr)
        return FAULT_SIGNAL
    return FAULT_OK


def kernel_task_size(kernel) -> int:
    from .mmap import arch_task_size

    return arch_task_size(kernel.config.arch)


def bad_area(kernel, task, addr: int, user: bool, fixup: bool, atomic: bool, code: int) -> int:
    if user and task is not None and task.mm is not None:
        kernel.vmstat["fault_sigsegv_maperr" if code == SEGV_MAPERR else "fault_sigsegv_accerr"] += 1
        task.send_signal(SIGSEGV, code, addr)
        return FAULT_SIGNAL
    return no_context(kernel, task, addr, fixup, atomic)


def no_context(kernel, task, addr: int, fixup: bool, atomic: bool) -> int:
    if fixup:
        kernel.vmstat["fault_fixup"] += 1
        return FAULT_FIXUP
    kernel.vmstat["fault_oops"] += 1
    msg = f"BUG: unable to handle page fault for address: {addr:#018x}"
    if task is None or atomic:
        kernel.panic(f"{msg}; Fatal exception in interrupt")
        raise KernelOops(msg)  # not reached: panic raises
    task.oops = msg
    task.send_signal(SIGKILL, 0, addr)
    return FAULT_OOPS


# --- uaccess -------------------------------------------------------------------------------
_WRITE_BITS = _PAGE_ACCESSED | _PAGE_DIRTY  # what a kernel-mode write sets in the PTE

def _user_pfn(task, addr: int, write: bool) -> int:
    """The frame behind a user address for a kernel-mode access, faulting it in with a
    fixup. Returns -1 if the access faults for good (-EFAULT)."""
    ptes = task.mm.pgtable.ptes
    vpn = addr >> PAGE_SHIFT
    for _ in range(4):
        pte = ptes.get(vpn, 0)
        if pte & _PAGE_PRESENT and (not write or pte & _PAGE_RW):
            new = pte | _PAGE_ACCESSED | (_PAGE_DIRTY if write else 0)
            if new != pte:
                ptes[vpn] = new
                task.mm.pgtable.pte_changed(vpn)
            return pte >> PAGE_SHIFT
        r = do_page_fault(task, addr, write, user=False, fixup=True)
        if r != FAULT_OK:
            return -1
    return -1


def copy_to_user(task, addr: int, data) -> int:
    """Copy `data` to user memory at addr; returns bytes copied (short on a fault)."""
    n = len(data)
    if n == 0:
        return 0
    mm = task.mm
    if addr < 0 or addr + n > mm.task_size:  # access_ok
        return 0
    phys = task.kernel.phys
    ptes = mm.pgtable.ptes
    # NOTE: _user_pfn's first look at the PTE inlined for speed (read() of every page
    # cache page lands here); anything but a present writable PTE takes _user_pfn.
    if n == PAGE_SIZE and not addr & (PAGE_SIZE - 1) and type(data) is bytes:
        # a whole page: store the very object (identical contents stay one object)
        vpn = addr >> PAGE_SHIFT
        pte = ptes.get(vpn, 0)
        if pte & _PAGE_PRESENT and pte & _PAGE_RW:
            if pte & _WRITE_BITS != _WRITE_BITS:
                ptes[vpn] = pte | _WRITE_BITS
                mm.pgtable.pte_changed(vpn)
            pfn = pte >> PAGE_SHIFT
        else:
            pfn = _user_pfn(task, addr, True)
            if pfn < 0:
                return 0
        task.cost += phys.touch(pfn, True) + phys.store(pfn, data)
        return n
    mv = memoryview(data)
    done = 0
    while done < n:
        a = addr + done
        off = a & (PAGE_SIZE - 1)
        chunk = PAGE_SIZE - off
        if chunk > n - done:
            chunk = n - done
        vpn = a >> PAGE_SHIFT
        pte = ptes.get(vpn, 0)
        if pte & _PAGE_PRESENT and pte & _PAGE_RW:
            if pte & _WRITE_BITS != _WRITE_BITS:
                ptes[vpn] = pte | _WRITE_BITS
                mm.pgtable.pte_changed(vpn)
            pfn = pte >> PAGE_SHIFT
        else:
            pfn = _user_pfn(task, a, True)
            if pfn < 0:
                break
            ptes = task.mm.pgtable.ptes
        # the page's bytes with the chunk spliced in, read before the write's touch (the
        # store writes exactly these: no other byte of the page changes)
        if chunk == PAGE_SIZE:
            page = bytes(mv[done:done + chunk])
        else:
            old = phys.load(pfn)
            page = b"".join((old[:off], mv[done:done + chunk], old[off + chunk:]))
        task.cost += phys.touch(pfn, True)
        task.cost += phys.store(pfn, page)
        done += chunk
    return done


def copy_from_user(task, addr: int, n: int) -> bytes:
    """Read n bytes of user memory; shorter on a fault (b"" if nothing could be read)."""
    if n <= 0 or addr < 0 or addr + n > task.mm.task_size:
        return b""
    phys = task.kernel.phys
    out = []
    done = 0
    while done < n:
        a = addr + done
        off = a & (PAGE_SIZE - 1)
        chunk = min(PAGE_SIZE - off, n - done)
        pfn = _user_pfn(task, a, False)
        if pfn < 0:
            break
        task.cost += phys.touch(pfn, False)
        page = phys.load(pfn)
        out.append(page if chunk == PAGE_SIZE else page[off:off + chunk])
        done += chunk
    return b"".join(out)
