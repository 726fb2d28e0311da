"""One test per branch of the course's page-fault flowchart ("Traitement des exceptions"),
checking the outcome and the per-outcome counter of /proc/vmstat."""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.fault import (
    FAULT_FIXUP,
    FAULT_OK,
    FAULT_OOPS,
    FAULT_SIGNAL,
    do_page_fault,
)
from guestkernel.kernel import Kernel
from guestkernel.page_alloc import KernelPanic
from guestkernel.task import Task
from guestkernel.vma import validate_mm

from .helpers import boot

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
B = 0x20000000


def delta(k, before):
    return {n: k.vmstat[n] - v for n, v in before.items() if k.vmstat[n] != v}


def snap(k):
    return {n: v for n, v in k.vmstat.items() if n.startswith(("fault_", "pgfault", "pgmajfault"))}


# 1. kernel address -------------------------------------------------------------------------
def test_kernel_address_from_user_mode_is_sigsegv_maperr(k, t):
    s = snap(k)
    t.access(0xFFFF888000000000, False)
    assert (t.state, t.term_signal, t.si_code) == ("dead", U.SIGSEGV, U.SEGV_MAPERR)
    assert t.fault_addr == 0xFFFF888000000000
    assert delta(k, s) == {"fault_sigsegv_maperr": 1}
    assert t.mm is None  # its memory was freed


def test_kernel_mode_vmalloc_fault_syncs_on_i386():
    k = boot(arch="i386")
    t = k.spawn("t")
    s = snap(k)
    assert do_page_fault(t, 0xF9000000, False, user=False) == FAULT_OK
    assert delta(k, s) == {"fault_vmalloc_sync": 1}
    assert t.state == "running"


def test_kernel_mode_kernel_address_outside_vmalloc_oopses(k, t):
    s = snap(k)
    assert do_page_fault(t, 0xFFFF888000000000, False, user=False) == FAULT_OOPS
    assert delta(k, s) == {"fault_oops": 1}
    assert t.state == "dead" and t.term_signal == U.SIGKILL and "unable to handle" in t.oops


# 2. interrupt / critical region / no mm -------------------------------------------------------
def test_fault_in_interrupt_context_panics(k, t):
    with pytest.raises(KernelPanic):
        do_page_fault(None, B, False, user=False, atomic=True, kernel=k)
    assert k.vmstat["fault_oops"] == 1


def test_fault_in_critical_region_with_fixup(k, t):
    t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    s = snap(k)
    # pagefault_disable(): even a valid address goes to no_context; the fixup applies
    assert do_page_fault(t, B, True, user=False, fixup=True, atomic=True) == FAULT_FIXUP
    assert delta(k, s) == {"fault_fixup": 1}


def test_kernel_thread_without_mm_oopses(k):
    kthread = Task(k, 999, "kworker/0:1")
    assert kthread.mm is None
    assert do_page_fault(kthread, B, False, user=False) == FAULT_OOPS
    assert kthread.state == "dead"


# 3./4. in a region? in the stack's growth area? ---------------------------------------------
def test_address_in_no_region_is_maperr(k, t):
    s = snap(k)
    t.access(B, True)
    assert (t.state, t.si_code) == ("dead", U.SEGV_MAPERR)
    assert delta(k, s) == {"fault_sigsegv_maperr": 1}


def test_address_below_stack_grows_it(k, t):
    stack = t.mm.mm_mt.lookup(t.mm.start_stack)
    start = stack.vm_start
    s = snap(k)
    t.access(start - 3 * P, True)
    assert t.state == "running" and stack.vm_start == start - 3 * P
    assert delta(k, s) == {"fault_stack_grow": 1, "pgfault": 1, "fault_demand_zero": 1}
    validate_mm(t.mm)


def test_address_below_non_growsdown_vma_is_maperr(k, t):
    t.mmap(B + P, P, RW, ANON | U.MAP_FIXED)
    t.access(B, False)
    assert (t.state, t.si_code) == ("dead", U.SEGV_MAPERR)


# 5. write ----------------------------------------------------------------------------------------
def test_write_to_readonly_region_is_accerr(k, t):
    t.mmap(B, P, U.PROT_READ, ANON | U.MAP_FIXED)
    s = snap(k)
    t.access(B, True)
    assert (t.state, t.term_signal, t.si_code) == ("dead", U.SIGSEGV, U.SEGV_ACCERR)
    assert delta(k, s) == {"fault_sigsegv_accerr": 1}


def test_write_not_present_is_demand_paging_with_zeroed_page(k, t):
    t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    anon = t.mm.rss[1]
    s = snap(k)
    t.access(B, True)
    assert delta(k, s) == {"pgfault": 1, "fault_demand_zero": 1}
    assert t.mm.rss[1] == anon + 1
    assert t.peek(B, 8) == bytes(8)
    validate_mm(t.mm)


def test_write_present_readonly_pte_is_cow_or_reuse(k, t):
    t.mmap(B, 2 * P, RW, ANON | U.MAP_FIXED)
    t.access(B, False)  # zero page, read-only PTE
    s = snap(k)
    t.access(B, True)  # CoW of the zero page: a fresh zeroed page
    assert delta(k, s) == {"pgfault": 1, "fault_cow": 1}
    t.access(B + P, True)
    t.mprotect(B, 2 * P, U.PROT_READ)
    t.mprotect(B, 2 * P, RW)
    # an exclusive anonymous page: mprotect made its PTE writable again, no fault
    s = snap(k)
    t.access(B + P, True)
    assert delta(k, s) == {}
    pid = t.fork()
    k.tasks[pid].exit(0)  # the child's mapping goes: the page is mapped once again
    s = snap(k)
    t.access(B + P, True)  # write-protected by fork, now mapped once: reused in place
    assert delta(k, s) == {"pgfault": 1, "fault_cow_reuse": 1}
    validate_mm(t.mm)


# 6. read -----------------------------------------------------------------------------------------
def test_read_not_present_anon_maps_zero_page_not_counted_in_rss(k, t):
    t.mmap(B, 4 * P, RW, ANON | U.MAP_FIXED)
    rss = list(t.mm.rss)
    s = snap(k)
    t.access_range(B, 4 * P, False)
    assert delta(k, s) == {"pgfault": 4, "fault_zero_page": 4}
    assert t.mm.rss == rss
    assert all(t.mm.pgtable.ptes[(B >> 12) + i] >> 12 == k.zero_pfn for i in range(4))
    validate_mm(t.mm)


def test_read_of_prot_none_region_is_accerr(k, t):
    t.mmap(B, P, U.PROT_NONE, ANON | U.MAP_FIXED)
    t.access(B, False)
    assert (t.state, t.si_code) == ("dead", U.SEGV_ACCERR)


def test_read_present_protection_fault_is_accerr(k, t):
    # a page present, then the region made PROT_NONE: the PTE stays (PROTNONE)
    t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    t.access(B, True)
    t.mprotect(B, P, U.PROT_NONE)
    s = snap(k)
    t.access(B, False)
    assert (t.state, t.si_code) == ("dead", U.SEGV_ACCERR)
    assert delta(k, s) == {"fault_sigsegv_accerr": 1}


def test_exec_on_nx_page_is_accerr(k, t):
    t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    s = snap(k)
    # not present, readable: demand paging maps the zero page with NX; the retried
    # instruction fetch faults again on a present page: protection fault
    t.access(B, False, execute=True)
    assert (t.state, t.si_code) == ("dead", U.SEGV_ACCERR)
    assert delta(k, s) == {"pgfault": 1, "fault_zero_page": 1, "fault_sigsegv_accerr": 1}


def test_exec_on_exec_mapping_is_fine(k, t):
    t.mmap(B, P, U.PROT_READ | U.PROT_EXEC, ANON | U.MAP_FIXED)
    t.access(B, False, execute=True)
    t.access(B, False, execute=True)
    assert t.state == "running"


# file faults, swap-in, SIGBUS ---------------------------------------------------------------------
def test_file_fault_major_then_minor_with_fault_around(k, t):
    k.fs.create("/lib.so", 64 * P)
    fd = t.open("/lib.so")
    # fault-around windows are aligned on virtual addresses: map at an aligned address
    a = t.mmap(B, 64 * P, U.PROT_READ, U.MAP_PRIVATE | U.MAP_FIXED, fd, 0)
    s = snap(k)
    t.access(a + 20 * P, False)
    assert delta(k, s) == {"pgfault": 1, "pgmajfault": 1, "fault_file_major": 1}
    # read-around brought 32 pages (16 before, 16 after): 4..36 cached
    assert sorted(k.fs.lookup("/lib.so").mapping.pages) == list(range(4, 36))
    s = snap(k)
    t.access(a + 40 * P, False)  # beyond the read-around: major again
    assert delta(k, s)["fault_file_major"] == 1
    s = snap(k)
    t.access(a + 8 * P, False)  # cached: minor, and 16 neighbours mapped around it
    assert delta(k, s) == {"pgfault": 1, "fault_file_minor": 1}
    # do_read_fault maps the cached pages of the aligned 16-page window BEFORE reading,
    # and the fault that read (filemap_fault: VM_FAULT_RETRY) does it again when retried
    # (tests/data/readahead/fault_retry.json), but for the PG_readahead page
    # (next_uptodate_folio). The first fault found none cached, read [4, 36) with the
    # marker on 28 and, retried, mapped 16..31 but 28; the second found 32..35 cached and
    # mapped them, read [24, 56) (the marker on 48) and, retried, mapped 36..47; the
    # third maps 4..15 (0..3 are not cached)
    mapped = [v - (a >> 12) for v in t.mm.pgtable.ptes if a >> 12 <= v < (a >> 12) + 64]
    assert sorted(mapped) == [v for v in range(4, 48) if v != 28]
    assert t.mm.rss[0] == 43  # MM_FILEPAGES
    validate_mm(t.mm)


def test_private_file_write_copies_shared_write_dirties(k, t):
    k.fs.create("/f", 4 * P)
    fd = t.open("/f", U.O_RDWR)
    priv = t.mmap(0, 4 * P, RW, U.MAP_PRIVATE, fd, 0)
    shared = t.mmap(0, 4 * P, RW, U.MAP_SHARED, fd, 0)
    s = snap(k)
    t.access(priv, True, b"P" * P)
    assert delta(k, s) == {"pgfault": 1, "pgmajfault": 1, "fault_file_major": 1, "fault_cow": 1}
    s = snap(k)
    t.access(shared, True, b"S" * P)
    assert delta(k, s) == {"pgfault": 1, "fault_file_minor": 1}
    page = k.fs.lookup("/f").mapping.pages[0]
    assert k.phys.load(page.pfn)[:1] == b"S" and t.peek(priv, 1) == b"P"
    assert k.vmstat["nr_dirty"] == 1
    validate_mm(t.mm)


def test_shared_file_read_then_write_is_wp_shared(k, t):
    k.fs.create("/g", P)
    fd = t.open("/g", U.O_RDWR)
    a = t.mmap(0, P, RW, U.MAP_SHARED, fd, 0)
    t.access(a, False)
    s = snap(k)
    t.access(a, True)
    assert delta(k, s) == {"pgfault": 1, "fault_wp_shared": 1}


def test_access_beyond_eof_is_sigbus(k, t):
    k.fs.create("/short", 100)
    fd = t.open("/short")
    a = t.mmap(0, 2 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.access(a + 50, False)  # within the last (partial) page: fine
    assert t.state == "running"
    t.access(a + P, False)
    assert (t.state, t.term_signal, t.si_code) == ("dead", U.SIGBUS, U.BUS_ADRERR)


def test_swap_entry_goes_through_swapin_hook(k, t):
    from guestkernel.memory import try_to_unmap

    a = t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    t.access(a, True, b"s" * P)
    pte = t.mm.pgtable.ptes[a >> 12]
    page = k.mem_map[pte >> 12]
    page._count += 1  # reclaim's reference while the page is isolated
    # stand-ins for the swap device's hooks (entry 77 is ours, not the device's)
    k.swap_duplicate = lambda entry: None
    k.swap_free = lambda entry: None
    assert try_to_unmap(k, page, swap_entry=77)
    assert t.mm.rss[1] == 1 and t.mm.rss[2] == 1  # the stack page; one swap entry
    calls = []

    def swapin(task, vma, addr, pte, write):
        calls.append((task.pid, addr, pte >> 12))
        return page, 0.001, True  # still in the "swap cache": our reference goes to the PTE

    k.swapin_hook = swapin
    s = snap(k)
    cost = t.access(a, False)
    assert calls == [(t.pid, a, 77)] and cost == pytest.approx(0.001)
    assert delta(k, s) == {"pgfault": 1, "pgmajfault": 1, "fault_swapin": 1}
    assert t.mm.rss[2] == 0 and t.peek(a, 1) == b"s"
    validate_mm(t.mm)


# 7./8. bad area from the kernel: fixup or oops --------------------------------------------------------
def test_read_syscall_into_unmapped_buffer_is_efault(k, t):
    k.fs.create("/data", 3 * P)
    fd = t.open("/data")
    s = snap(k)
    with pytest.raises(OSError) as e:
        t.read(fd, B, 100)
    assert e.value.errno == U.EFAULT
    assert delta(k, s)["fault_fixup"] == 1
    assert t.state == "running"  # no signal: the syscall failed


def test_kernel_access_without_fixup_is_oops(k, t):
    s = snap(k)
    assert do_page_fault(t, B, True, user=False, fixup=False) == FAULT_OOPS
    assert delta(k, s) == {"fault_oops": 1}
    assert t.state == "dead" and t.mm is None


def test_user_fault_out_of_memory_kills_task(k, t):
    t.mmap(B, P, RW, ANON | U.MAP_FIXED)
    k.alloc_pages = lambda gfp, order=0, *a, **kw: None
    assert do_page_fault(t, B, True) == FAULT_SIGNAL
    assert t.state == "dead" and t.term_signal == U.SIGKILL
    assert k.vmstat["fault_oom"] == 1


def test_swap_round_trip_through_reclaim():
    """Integration with the reclaim issue's swap: anonymous pages pushed out by memory
    pressure come back through do_swap_page with their content, in parent and child."""
    from guestkernel.memory import validate_pages

    k = Kernel(KernelConfig(memory="48MiB", swap="64MiB"))
    if getattr(k, "swap", None) is None:
        pytest.skip("no swap subsystem in this build")
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("hog")
    n = 12000  # pages: more than the guest's RAM
    a = t.mmap(0, n * P, RW, ANON)
    for i in range(0, n, 500):
        t.access_range(a + i * P, 500 * P, True,
                       data=[j.to_bytes(4, "little") * 1024 for j in range(i, i + 500)])
    assert t.state == "running" and t.mm.rss[2] > 0  # some PTEs are swap entries now
    child = k.tasks[t.fork()]
    s = snap(k)
    for i in range(0, n, 101):
        t.access(a + i * P, False)
        assert t.peek(a + i * P, 4) == i.to_bytes(4, "little")
        child.access(a + i * P, True)
    assert delta(k, s)["fault_swapin"] > 0
    assert t.state == child.state == "running"
    validate_mm(t.mm)
    validate_mm(child.mm)
    validate_pages(k)


def test_memory_exhaustion_ends_in_oom_kills_with_consistent_state():
    """Faults on valid, committed addresses under overcommit: the OOM killer (the reclaim
    issue's) picks victims; every process it kills dies cleanly, memory is returned."""
    from guestkernel.memory import validate_pages

    k = Kernel(KernelConfig(memory="48MiB"))
    if getattr(k, "oom", None) is None:
        pytest.skip("no OOM killer in this build")
    if 1 not in k.tasks:
        k.spawn("init")
    hogs = [k.spawn(f"hog{i}") for i in range(3)]
    for _ in range(4):
        for t in hogs:
            if t.state == "running":
                a = t.mmap(0, 1500 * P, RW, ANON)
                t.access_range(a, 1500 * P, True)
    dead = [t for t in hogs if t.state != "running"]
    assert dead and all(t.term_signal == U.SIGKILL and t.mm is None for t in dead)
    assert k.vmstat["oom_kill"] >= len(dead)
    for t in hogs:
        if t.mm is not None:
            validate_mm(t.mm)
    validate_pages(k)
