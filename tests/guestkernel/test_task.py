"""Task and MMStruct: spawn's layout, slab use, access costs and content, signals, limits."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import validate_pages
from guestkernel.mmap import mmap_base_for
from guestkernel.page_alloc import KernelPanic
from guestkernel.physmem import BareMetal
from guestkernel.vma import VM_ACCOUNT, VM_GROWSDOWN, validate_mm

from .helpers import boot

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
B = 0x70000000


class CostlyPhys(BareMetal):
    """Bare metal that charges 1 us per touch and 2 us per store (a stand-in host)."""

    def touch(self, pfn, write):
        return 1e-6

    def store(self, pfn, data, from_disk=False):
        super().store(pfn, data)
        return 2e-6


def test_spawn_layout_x86_64(k):
    t = k.spawn("prog")
    mm = t.mm
    assert mm.task_size == (1 << 47) - P
    assert [(v.vm_start, v.vm_end) for v in mm.mm_mt.vmas] == [
        (0x400000, 0x480000), (0x480000, 0x484000), (0x484000, 0x48C000),
        # [vvar] [vvar_vclock] [vdso]: get_unmapped_area top-down, just below mmap_base
        (0x7FFFF7FF7000, 0x7FFFF7FFB000), (0x7FFFF7FFB000, 0x7FFFF7FFD000),
        (0x7FFFF7FFD000, 0x7FFFF7FFF000),
        (0x7FFFFFFDE000, 0x7FFFFFFFF000)]
    assert mm.start_brk == mm.brk == 0x48D000  # one page above bss
    assert mm.mmap_base == mmap_base_for(mm.task_size, 8 << 20) == 0x7FFFF7FFF000
    stack = mm.mm_mt.vmas[-1]
    assert stack.vm_flags & VM_GROWSDOWN and stack.vm_flags & VM_ACCOUNT
    assert mm.rss == [0, 1, 0, 0]  # the argument page
    assert (mm.start_code, mm.end_code) == (0x400000, 0x480000)
    assert t.comm == "prog" and t.parent is k.tasks[1] and t in k.tasks[1].children
    assert t.files.keys() == {0, 1, 2}
    validate_mm(mm)


def test_spawn_layout_i386():
    k = boot(arch="i386")
    mm = k.spawn("p").mm
    assert mm.task_size == 0xC0000000
    assert mm.mm_mt.vmas[0].vm_start == 0x08048000
    assert mm.mm_mt.vmas[-1].vm_end == 0xC0000000
    assert mm.mmap_base == 0xC0000000 - (128 << 20)
    validate_mm(mm)


def test_unlimited_stack_gives_legacy_layout(k):
    t = k.spawn("p")
    t.setrlimit(U.RLIMIT_STACK, U.RLIM_INFINITY)
    k.fs.create("/bin/q", 0)
    t.execve("/bin/q")
    # TASK_UNMAPPED_BASE = PAGE_ALIGN(TASK_SIZE / 3)
    assert t.mm.legacy_mmap and t.mm.mmap_base == 0x2AAAAAAAB000
    # bottom-up from TASK_UNMAPPED_BASE: execve placed vvar, vvar_vclock, vdso there first
    assert t.mm.vdso == t.mm.mmap_base + 6 * P
    a = t.mmap(0, P, RW, ANON)
    assert a == t.mm.mmap_base + 8 * P


def test_structures_come_from_slab_caches(k):
    if k.slab is None:
        pytest.skip("no slab allocator in this build")
    caches = k._as_caches
    assert set(caches) == {"task_struct", "mm_struct", "vm_area_struct", "filp", "files_cache"}
    slab_pages = k.vmstat["nr_slab_unreclaimable"] + k.vmstat["nr_slab_reclaimable"]
    tasks = [k.spawn(f"p{i}") for i in range(40)]
    for t in tasks:
        for j in range(10):
            t.mmap(B + 2 * j * P, P, RW, ANON | U.MAP_FIXED)
    grown = k.vmstat["nr_slab_unreclaimable"] + k.vmstat["nr_slab_reclaimable"]
    assert grown >= slab_pages + 40 * 9792 // P  # 40 task_structs of 9.5 KiB at least


def test_access_costs_and_content():
    k = Kernel(KernelConfig(memory="128MiB"), phys=CostlyPhys(32768))
    k.spawn("init")
    t = k.spawn("t")
    t.mmap(B, 4 * P, RW, ANON | U.MAP_FIXED)
    # the first write fault below 1 GiB also zeroes a PUD, a PMD and a PTE table page:
    # 3 table stores + the page's zeroing store (2 us each) + the access's touch (1 us)
    assert t.access(B + 3 * P, True) == pytest.approx(9e-6)
    # then a write fault: zeroing store (2 us) + touch (1 us)
    assert t.access(B, True) == pytest.approx(3e-6)
    assert t.access(B, True) == pytest.approx(1e-6)
    assert t.access(B, True, b"x" * P) == pytest.approx(3e-6)
    assert k.phys.load(t.mm.pgtable.ptes[B >> 12] >> 12)[:1] == b"x"
    t.access(B + 10, True, b"abc")  # a piece spliced into the page
    assert t.peek(B + 8, 6) == b"xxabcx"
    # a burst: 2 first touches and one present page, one data page each
    pages = [bytes([i]) * P for i in range(3)]
    cost = t.access_range(B + P, 3 * P, True, data=pages)
    assert cost == pytest.approx(2 * (2e-6 + 1e-6 + 2e-6) + (1e-6 + 2e-6))
    assert [t.peek(B + (1 + i) * P, 1) for i in range(3)] == [b"\x00", b"\x01", b"\x02"]
    with pytest.raises(ValueError):
        t.access_range(B, 2 * P, True, data=b"short")


def test_bare_metal_costs_nothing(k):
    t = k.spawn("t")
    t.mmap(B, 8 * P, RW, ANON | U.MAP_FIXED)
    assert t.access_range(B, 8 * P, True) == 0.0
    assert t.access(B, False) == 0.0


def test_access_range_stops_when_task_dies(k):
    t = k.spawn("t")
    t.mmap(B, 2 * P, RW, ANON | U.MAP_FIXED)
    t.access_range(B, 4 * P, True)  # pages 2 and 3 are not mapped
    assert t.state == "dead" and t.fault_addr == B + 2 * P
    assert t.access(B, True) == 0.0  # a dead task touches nothing
    with pytest.raises(OSError) as e:
        t.mmap(0, P, RW, ANON)
    assert e.value.errno == U.ESRCH


def test_fatal_signal_inside_kernel_is_deferred(k):
    t = k.spawn("t")
    t.mmap(B, 4 * P, RW, ANON | U.MAP_FIXED)
    seen = []
    orig = k.lru_cache_add

    def kill_during_fault(page):
        orig(page)
        if not seen:
            seen.append(t.state)
            t.kill()  # e.g. chosen by the OOM killer during its own allocation
            seen.append(t.state)

    k.lru_cache_add = kill_during_fault
    assert t.mlock(B, 4 * P) is None  # populates: interrupted, never returns to the process
    assert seen == ["running", "running"]  # still inside the kernel
    assert t.state == "dead" and t.term_signal == U.SIGKILL


def test_rlimits_and_caps(k):
    t = k.spawn("t")
    assert t.getrlimit(U.RLIMIT_STACK) == (8 << 20, U.RLIM_INFINITY)
    assert t.getrlimit(U.RLIMIT_MEMLOCK) == (8 << 20, 8 << 20)
    assert t.rlimit(U.RLIMIT_AS) == U.RLIM_INFINITY
    assert not t.capable(U.CAP_IPC_LOCK)
    with pytest.raises(OSError) as e:
        t.setrlimit(U.RLIMIT_MEMLOCK, 16 << 20)
    assert e.value.errno == U.EINVAL
    t.setrlimit(U.RLIMIT_AS, 64 << 20)
    with pytest.raises(OSError) as e:
        t.mmap(0, 64 << 20, RW, ANON)
    assert e.value.errno == U.ENOMEM


def test_clone_is_fork(k):
    t = k.spawn("t")
    pid = t.clone(U.SIGCHLD)
    assert k.tasks[pid].parent is t and k.tasks[pid].comm == "t"


def test_open_flags(k):
    t = k.spawn("t")
    with pytest.raises(OSError) as e:
        t.open("/nope")
    assert e.value.errno == U.ENOENT
    fd = t.open("/x", U.O_CREAT | U.O_RDWR)
    assert fd == 3
    with pytest.raises(OSError) as e:
        t.open("/x", U.O_CREAT | U.O_EXCL)
    assert e.value.errno == U.EEXIST
    assert t.open("/x") == 4
    t.close(3)
    assert t.open("/x") == 3


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["open", "close", "fork"]), st.integers(0, 40)), max_size=60))
def test_open_returns_the_lowest_free_descriptor(ops):
    """alloc_fd: open() takes the lowest descriptor not in use, whatever was closed before
    (files_struct.next_fd is only a hint), in a forked child too."""
    k = boot()
    t = k.spawn("t")
    t.open("/x", U.O_CREAT | U.O_RDWR)
    for op, n in ops:
        if op == "open":
            lowest = min(set(range(len(t.files) + 1)) - set(t.files))
            assert t.open("/x") == lowest
        elif op == "close":
            fds = sorted(t.files)
            if not fds:
                # close(2) of a descriptor that is not open: EBADF, the table unchanged
                with pytest.raises(OSError) as e:
                    t.close(n)
                assert e.value.errno == U.EBADF and t.files == {}
                continue
            t.close(fds[n % len(fds)])
        elif len(k.tasks) < 8:
            t = k.tasks[t.fork()]


def test_every_slab_object_is_freed_back(k):
    if k.slab is None:
        pytest.skip("no slab allocator in this build")
    names = {id(c): n for n, c in k._as_caches.items()}
    live: dict[str, int] = {}
    real_alloc, real_free = k.kmem_cache_alloc, k.kmem_cache_free

    def alloc(cache, gfp=0):
        obj = real_alloc(cache, gfp)
        if id(cache) in names:
            live[names[id(cache)]] = live.get(names[id(cache)], 0) + 1
        return obj

    def free(cache, obj):
        if id(cache) in names:
            live[names[id(cache)]] -= 1
        real_free(cache, obj)

    k.kmem_cache_alloc, k.kmem_cache_free = alloc, free
    t = k.spawn("t")
    fd = t.open("/f", U.O_CREAT | U.O_RDWR)
    for j in range(6):
        t.mmap(B + 2 * j * P, 2 * P, RW, ANON | U.MAP_FIXED)
    t.mprotect(B + P, 8 * P, U.PROT_READ)
    t.access(B, True)
    child = k.tasks[t.fork()]
    child.mremap(B, P, 3 * P, U.MREMAP_MAYMOVE)
    child.exit(0)
    t.wait4()
    t.munmap(B + 4 * P, 4 * P)
    assert live["vm_area_struct"] == len(t.mm.mm_mt) and live["task_struct"] == 1
    # filp: the open file and the executable's struct file (held by its VMAs)
    assert live["mm_struct"] == 1 and live["filp"] == 2
    sid = t.shmget(U.IPC_PRIVATE, P, U.IPC_CREAT)
    a = t.shmat(sid, 0, 0)
    assert live["filp"] == 4  # the segment's file and the attach's
    t.shmdt(a)
    t.shmctl(sid, U.IPC_RMID)
    assert live["filp"] == 2
    t.close(fd)
    t.exit(0)
    assert all(v == 0 for v in live.values()), live


def test_spawn_refused_in_strict_overcommit():
    k = Kernel(KernelConfig(memory="128MiB"))
    for name, value in (("overcommit_memory", 2), ("overcommit_ratio", 0),
                        ("admin_reserve_kbytes", 0), ("user_reserve_kbytes", 0)):
        k.procfs.write(f"/proc/sys/vm/{name}", str(value))
    before = k.committed_as  # init's charge, made at boot
    with pytest.raises(OSError) as e:
        k.spawn("t")  # CommitLimit 0 (no swap): not even the stack can be charged
    assert e.value.errno == U.ENOMEM
    assert [t.comm for t in k.tasks.values()] == ["init"] and k.committed_as == before


def test_boot_panics_when_init_cannot_be_charged():
    with pytest.raises(KernelPanic, match="No working init found"):
        Kernel(KernelConfig(memory="128MiB", overcommit_memory=2, overcommit_ratio=0,
                            admin_reserve_kbytes=0, user_reserve_kbytes=0))


def test_prlimit_semantics(k, t):
    # defaults: RLIMIT_DATA unlimited, RLIMIT_STACK 8 MiB soft / unlimited hard
    assert t.prlimit(U.RLIMIT_DATA) == (U.RLIM_INFINITY, U.RLIM_INFINITY)
    assert t.getrlimit(U.RLIMIT_STACK) == (8 << 20, U.RLIM_INFINITY)
    # prlimit returns the old pair and sets the new one
    assert t.prlimit(U.RLIMIT_DATA, (1 << 20, 2 << 20)) == (U.RLIM_INFINITY, U.RLIM_INFINITY)
    assert t.getrlimit(U.RLIMIT_DATA) == (1 << 20, 2 << 20)
    # soft above hard: EINVAL; raising the hard limit without CAP_SYS_RESOURCE: EPERM
    for new, errno in (((3 << 20, 2 << 20), U.EINVAL), ((1 << 20, 4 << 20), U.EPERM)):
        with pytest.raises(OSError) as e:
            t.prlimit(U.RLIMIT_DATA, new)
        assert e.value.errno == errno
    assert t.getrlimit(U.RLIMIT_DATA) == (1 << 20, 2 << 20)
    # lowering the hard limit is always allowed, raising it back needs the capability
    t.setrlimit(U.RLIMIT_DATA, 1 << 20, 1 << 20)
    t.caps.add(U.CAP_SYS_ADMIN)  # not the right capability
    with pytest.raises(OSError) as e:
        t.setrlimit(U.RLIMIT_DATA, 1 << 20, 2 << 20)
    assert e.value.errno == U.EPERM
    t.caps.add(U.CAP_SYS_RESOURCE)
    assert t.setrlimit(U.RLIMIT_DATA, U.RLIM_INFINITY, U.RLIM_INFINITY) == 0
    with pytest.raises(OSError) as e:
        t.prlimit(99)
    assert e.value.errno == U.EINVAL
    # a child inherits the limits, a copy of them
    t.setrlimit(U.RLIMIT_DATA, 1 << 20)
    child = k.tasks[t.fork()]
    assert child.getrlimit(U.RLIMIT_DATA) == (1 << 20, U.RLIM_INFINITY)
    child.setrlimit(U.RLIMIT_DATA, 2 << 20)
    assert t.getrlimit(U.RLIMIT_DATA) == (1 << 20, U.RLIM_INFINITY)


def test_access_range_demand_zero_runs_equal_the_fault_handler_page_by_page():
    # The inlined first-touch path (runs of demand-zero faults) must leave exactly what
    # handle_mm_fault leaves page by page (MADV_POPULATE_WRITE): same PTEs and frames
    # (the allocator is asked in the same order), same page fields, counters and RSS.
    # Layout (pages from 0x10000000, across a PTE-table boundary at page 512):
    #   [0, 700) rw   with page 3 and 600 already written
    #   [700, 760) rw mlocked-on-fault (VM_LOCKED pages go to the unevictable list)
    #   [760, 800) read-only (the long way: SIGSEGV is not asked for, only reads)
    base = 0x10000000
    states = []
    for populate in (False, True):
        k = boot()
        t = k.spawn("t")
        t.mmap(base, 700 * P, RW, ANON | U.MAP_FIXED)
        t.mmap(base + 700 * P, 60 * P, RW, ANON | U.MAP_FIXED)
        t.mlock2(base + 700 * P, 60 * P, U.MLOCK_ONFAULT)
        t.mmap(base + 760 * P, 40 * P, U.PROT_READ, ANON | U.MAP_FIXED)
        t.access(base + 3 * P, True)
        t.access(base + 600 * P, True)
        if populate:
            t.madvise(base, 760 * P, U.MADV_POPULATE_WRITE)
        # each page gets its own bytes (the run must hand page i the i-th piece)
        t.access_range(base, 760 * P, True, [i.to_bytes(2, "little") * (P // 2)
                                             for i in range(760)])
        t.access_range(base + 760 * P, 40 * P, False)
        assert [t.peek(base + i * P, 2) for i in (0, 3, 511, 512, 600, 759)] == [
            i.to_bytes(2, "little") for i in (0, 3, 511, 512, 600, 759)]
        mm = t.mm
        pages = [(k.mem_map[pte >> 12].flags, k.mem_map[pte >> 12].index,
                  k.mem_map[pte >> 12]._mapcount, k.mem_map[pte >> 12]._count)
                 for v, pte in sorted(mm.pgtable.ptes.items()) if pte >> 12 != k.zero_pfn]
        states.append((dict(mm.pgtable.ptes), list(mm.rss), dict(k.vmstat), pages,
                       mm.pgtables_bytes, mm.locked_vm))
        validate_mm(mm)
        validate_pages(k)
    assert states[0] == states[1]
    assert states[0][1][1] == 760 + 1  # 760 anonymous pages and the stack's first page
