"""fork (copy-on-write), execve and exit."""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.memory import rmap_walk
from guestkernel.pgtable import _PAGE_RW
from guestkernel.vma import VM_ACCOUNT, VM_LOCKED, validate_mm

from .helpers import boot

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS
FIX = ANON | U.MAP_FIXED
B = 0x30000000


def pte(task, addr):
    return task.mm.pgtable.ptes[addr >> 12]


def test_fork_write_protects_both_then_cow_in_child_and_parent(k, t):
    t.mmap(B, 2 * P, RW, FIX)
    t.access_range(B, 2 * P, True, data=b"p" * P)
    assert pte(t, B) & _PAGE_RW
    child = k.tasks[t.fork()]
    validate_mm(t.mm)
    validate_mm(child.mm)
    # both PTEs read-only, same frame, mapped twice
    assert not pte(t, B) & _PAGE_RW and not pte(child, B) & _PAGE_RW
    assert pte(t, B) >> 12 == pte(child, B) >> 12
    page = k.mem_map[pte(t, B) >> 12]
    assert page.page_mapcount() == 2 and page._count == 2
    assert child.mm.rss[1] == t.mm.rss[1]
    # write in the child: a copy
    before = k.vmstat["fault_cow"]
    child.access(B, True, b"c" * P)
    assert k.vmstat["fault_cow"] == before + 1
    assert pte(child, B) >> 12 != pte(t, B) >> 12
    assert t.peek(B, 1) == b"p" and child.peek(B, 1) == b"c"
    assert page.page_mapcount() == 1
    # write in the parent: now mapped once, reused in place
    reuse = k.vmstat["fault_cow_reuse"]
    t.access(B, True, b"q" * P)
    assert k.vmstat["fault_cow_reuse"] == reuse + 1
    assert pte(t, B) >> 12 == page.pfn
    # the second page: parent writes first (copy), child then reuses
    t.access(B + P, True)
    child.access(B + P, True)
    assert k.vmstat["fault_cow"] == before + 2 and k.vmstat["fault_cow_reuse"] == reuse + 2
    validate_mm(t.mm)
    validate_mm(child.mm)


def test_rmap_finds_parent_and_child(k, t):
    t.mmap(B, P, RW, FIX)
    t.access(B, True)
    child = k.tasks[t.fork()]
    page = k.mem_map[pte(t, B) >> 12]
    seen = []
    rmap_walk(k, page, lambda mm, vma, addr: seen.append((mm.owner.pid, addr)))
    assert sorted(seen) == sorted([(t.pid, B), (child.pid, B)])


def test_fork_skips_dontcopy_drops_locked_recharges_account(k, t):
    t.mmap(B, 4 * P, RW, FIX)
    t.mmap(B + 8 * P, 2 * P, RW, FIX)
    t.madvise(B + 8 * P, 2 * P, U.MADV_DONTFORK)
    t.mlock(B, 4 * P)
    t.mlockall(U.MCL_FUTURE)
    c0 = k.committed_as
    child = k.tasks[t.fork()]
    cm = child.mm
    assert cm.mm_mt.lookup(B + 8 * P) is None
    v = cm.mm_mt.lookup(B)
    assert not v.vm_flags & VM_LOCKED and v.vm_flags & VM_ACCOUNT
    assert cm.locked_vm == 0 and cm.def_flags == 0
    charged = sum(x.vma_pages() for x in cm.mm_mt.vmas if x.vm_flags & VM_ACCOUNT)
    assert k.committed_as == c0 + charged
    validate_mm(cm)
    child.exit(3)
    assert k.committed_as == c0
    assert t.wait4() == (child.pid, 3 << 8)
    assert child.state == "dead" and child.pid not in k.tasks


def test_fork_fails_in_strict_overcommit(k):
    k2 = boot(overcommit_memory=2, overcommit_ratio=50, admin_reserve_kbytes=0,
              user_reserve_kbytes=0)
    t = k2.spawn("t")
    room = k2.vm_commit_limit() - k2.committed_as
    t.mmap(B, (room - 10) * P, RW, FIX)  # fits
    with pytest.raises(OSError) as e:
        t.fork()  # the child would charge the same VM_ACCOUNT pages again
    assert e.value.errno == U.ENOMEM
    assert [x.comm for x in k2.tasks.values()] == ["init", "t"]
    assert k2.committed_as == k2.vm_commit_limit() - 10


def test_shared_mapping_is_shared_after_fork(k, t):
    a = t.mmap(0, P, RW, U.MAP_SHARED | U.MAP_ANONYMOUS)
    child = k.tasks[t.fork()]
    child.access(a, True, b"z" * P)
    t.access(a, False)
    assert t.peek(a, 1) == b"z"
    assert k.vmstat["fault_cow"] == 0


def test_file_only_vma_is_refaulted_by_child(k, t):
    k.fs.create("/lib", 4 * P)
    fd = t.open("/lib")
    a = t.mmap(0, 4 * P, U.PROT_READ, U.MAP_PRIVATE, fd, 0)
    t.access(a, False)
    child = k.tasks[t.fork()]
    assert (a >> 12) not in child.mm.pgtable.ptes  # no PTEs copied for file-only VMAs
    child.access(a, False)
    assert child.mm.rss[0] >= 1


def test_wipeonfork(k, t):
    t.mmap(B, P, RW, FIX)
    t.access(B, True, b"w" * P)
    t.madvise(B, P, U.MADV_WIPEONFORK)
    child = k.tasks[t.fork()]
    assert child.peek(B, 1) == b"\0" and t.peek(B, 1) == b"w"
    validate_mm(child.mm)


def free_and_slab(k):
    """Pages free (buddy and per-CPU lists) or held by slab caches for reuse."""
    vm = k.vmstat
    return (k.page_alloc.nr_free_pages() + vm["nr_slab_reclaimable"] + vm["nr_slab_unreclaimable"]
            + sum(p.count for z in k.page_alloc.zones for pair in z.pcp for p in pair))


def test_exit_frees_everything(k, t):
    free0 = free_and_slab(k)
    c0 = k.committed_as
    u = k.spawn("u")
    u.mmap(B, 32 * P, RW, FIX)
    u.access_range(B, 32 * P, True)
    u.brk(u.brk(0) + 8 * P)
    child = k.tasks[u.fork()]
    child.access_range(B, 8 * P, True)
    child.exit(0)
    u.exit(0)
    assert free_and_slab(k) == free0
    assert k.committed_as == c0
    assert u.state == "dead" and child.state == "dead"


def test_child_becomes_zombie_until_wait(k, t):
    child = k.tasks[t.fork()]
    assert t.wait4() == (0, 0)  # nothing exited yet
    child.access(0x1000, False)  # SIGSEGV
    assert child.state == "zombie" and child.mm is None
    pid, status = t.wait4(child.pid)
    assert (pid, status) == (child.pid, U.SIGSEGV)
    assert child.state == "dead"
    with pytest.raises(OSError) as e:
        t.wait4()
    assert e.value.errno == U.ECHILD


def test_orphans_are_reparented_to_init(k, t):
    child = k.tasks[t.fork()]
    t.exit(0)
    assert child.parent is k.tasks[1]
    child.exit(0)
    assert child.state == "dead"  # init reaps


def test_execve_replaces_address_space(k, t):
    t.mmap(B, 8 * P, RW, FIX)
    t.access_range(B, 8 * P, True)
    t.mlockall(U.MCL_FUTURE)
    k.fs.create("/bin/sh", 300 * P)
    assert t.execve("/bin/sh", text=200 * P, data=4 * P, bss=P) == 0
    mm = t.mm
    assert mm.mm_mt.lookup(B) is None and mm.def_flags == 0
    assert t.comm == "sh"
    names = [v.vm_file.inode.path if v.vm_file else None for v in mm.mm_mt.vmas]
    assert names[:2] == ["/bin/sh", "/bin/sh"]
    assert mm.mm_mt.vmas[0].vm_end - mm.mm_mt.vmas[0].vm_start == 200 * P
    validate_mm(mm)
    with pytest.raises(OSError) as e:
        t.execve("/bin/nope")
    assert e.value.errno == U.ENOENT


def test_execve_refused_by_strict_overcommit_keeps_old_mm():
    k = boot(overcommit_memory=2, overcommit_ratio=1, admin_reserve_kbytes=0,
             user_reserve_kbytes=0)
    t = k.spawn("t")
    k.fs.create("/bin/big", 0)
    before = [(v.vm_start, v.vm_end) for v in t.mm.mm_mt.vmas]
    c0 = k.committed_as
    with pytest.raises(OSError) as e:
        t.execve("/bin/big", data=64 << 20)
    assert e.value.errno == U.ENOMEM
    assert [(v.vm_start, v.vm_end) for v in t.mm.mm_mt.vmas] == before
    assert k.committed_as == c0 and t.state == "running"
    validate_mm(t.mm)


def test_cow_of_highmem_pages_on_i386():
    k = Kernel(KernelConfig(arch="i386", memory="2GiB"))
    t = k.spawn("t")
    a = t.mmap(0, 16 * P, RW, ANON)
    t.access_range(a, 16 * P, True, data=b"h" * P)
    child = k.tasks[t.fork()]
    child.access_range(a, 16 * P, True, data=b"c" * P)
    # user pages come from HighMem (GFP_HIGHUSER_MOVABLE); the copies went through
    # atomic kmaps that are all released again
    from guestkernel.page import PG_highmem

    pfns = [child.mm.pgtable.ptes[(a >> 12) + i] >> 12 for i in range(16)]
    assert all(k.mem_map[p].flags & PG_highmem for p in pfns)
    assert k.kmap_area.mapped() == 0
    t.access(a, False)
    assert t.peek(a, 1) == b"h" and child.peek(a, 1) == b"c"


def test_parent_gets_sigchld(k, t):
    child = k.tasks[t.fork()]
    child.exit(7)
    assert t.pending[-1] == (U.SIGCHLD, 1, child.pid)  # CLD_EXITED
    assert t.state == "running"  # SIGCHLD is not fatal
    c2 = k.tasks[t.fork()]
    c2.kill()
    assert t.pending[-1] == (U.SIGCHLD, 2, c2.pid)  # CLD_KILLED
    assert t.wait4(c2.pid) == (c2.pid, U.SIGKILL)


# --- execve: argument strings larger than a page ------------------------------------------------
TOP = (1 << 47) - P  # x86_64 STACK_TOP = TASK_SIZE


def _words(t, addr, n):
    raw = t.peek(addr, 8 * n)
    return [int.from_bytes(raw[i:i + 8], "little") for i in range(0, 8 * n, 8)]


def test_execve_puts_large_argv_and_envp_on_the_new_stack(k, t):
    # strings, NULs included: "/bin/big" 9 + 100001 + 100001 (argv) + 50001 (envp)
    # + the file name again 9 = 250021 bytes, ending 8 bytes below STACK_TOP:
    #
    #   sp: argc | argv[0..2] | NULL | envp[0] | NULL | auxv ... | AT_RANDOM | "x86_64"
    #   arg_start: "/bin/big\0" "a..a\0" "b..b\0" | env_start: "X=c..c\0" | "/bin/big\0" | 8
    #
    # copy_strings touched ceil((8 + 250021) / 4096) = 62 pages; setup_arg_pages adds
    # 128 KiB (32 pages): the stack VMA is 94 pages, VmStk 376 kB
    k.fs.create("/bin/big", 0)
    argv = ["/bin/big", "a" * 100000, "b" * 100000]
    envp = ["X=" + "c" * 49998]
    assert t.execve("/bin/big", argv, envp) == 0
    mm = t.mm
    arg_start = TOP - 8 - 250021
    assert (mm.arg_start, mm.arg_end, mm.env_start, mm.env_end) == (
        arg_start, arg_start + 200011, arg_start + 200011, arg_start + 250012)
    assert t.peek(arg_start, 250021) == (b"/bin/big\0" + b"a" * 100000 + b"\0" + b"b" * 100000
                                         + b"\0X=" + b"c" * 49998 + b"\0/bin/big\0")
    assert t.peek(TOP - 8, 8) == bytes(8)
    stack = mm.mm_mt.lookup(TOP - 1)
    assert (stack.vm_start, stack.vm_end) == (TOP - 94 * P, TOP)
    assert mm.stack_vm == 94 and "VmStk:\t     376 kB\n" in k.procfs.read(f"/proc/{t.pid}/status")
    # the pointer arrays: argc, then argv and envp pointing at the strings
    sp = mm.start_stack
    assert sp % 16 == 0 and stack.vm_start <= sp < arg_start
    assert _words(t, sp, 7) == [3, arg_start, arg_start + 9, arg_start + 100010, 0,
                                arg_start + 200011, 0]
    # the auxiliary vector follows: AT_SYSINFO_EHDR is the vDSO, AT_EXECFN the file name
    # (22 entries on x86_64 6.x with CONFIG_RSEQ, then AT_NULL)
    aux = _words(t, sp + 7 * 8, 46)
    pairs = dict(zip(aux[::2], aux[1::2], strict=True))
    assert aux[-2:] == [0, 0] and pairs[33] == mm.vdso and pairs[31] == arg_start + 250012
    assert pairs[6] == P and t.peek(pairs[15], 7) == b"x86_64\0"  # AT_PAGESZ, AT_PLATFORM
    # every page from sp's up to the top holds data: RSS counts them all
    assert mm.rss[1] == (TOP - (sp & ~(P - 1))) // P
    assert k.procfs.read(f"/proc/{t.pid}/maps").splitlines()[-1].endswith("[stack]")
    validate_mm(mm)


def test_execve_e2big_at_a_quarter_of_rlimit_stack_keeps_the_old_image(k, t):
    # limit = max(min(6 MiB, RLIMIT_STACK / 4), 128 KiB) - (argc + envc) * 8 bytes
    k.fs.create("/bin/x", 0)
    t.mmap(B, 4 * P, RW, FIX)
    t.access(B, True, b"k" * P)
    maps = k.procfs.read(f"/proc/{t.pid}/maps")
    c0 = k.committed_as

    def e2big(*args):
        with pytest.raises(OSError) as e:
            t.execve("/bin/x", *args)
        assert e.value.errno == U.E2BIG
        assert k.procfs.read(f"/proc/{t.pid}/maps") == maps and t.peek(B, 1) == b"k"
        assert k.committed_as == c0 and t.comm == "t"

    # 8 MiB stack: 2 MiB. 17 strings of 128 KiB - 1 (+ NUL) = 2228224 bytes > 2 MiB - 136
    e2big(["s" * (128 * 1024 - 1)] * 17)
    # one string longer than MAX_ARG_STRLEN (128 KiB with its NUL)
    e2big(["s" * (128 * 1024)])
    # 256 KiB stack: a quarter is 64 KiB, but ARG_MAX (128 KiB) is the floor
    t.setrlimit(U.RLIMIT_STACK, 256 * 1024)
    # "/bin/x\0" (7) + argv 2 pointers: 131072 - 16 - 7 = 131049 bytes of argv strings fit
    e2big(["s" * 131048, ""])  # 131049 + 1 = one byte too many
    assert t.execve("/bin/x", ["s" * 131047, ""]) == 0
    # the 256 KiB stack limit also caps the pre-expansion: 33 pages of strings + 32 = 65
    # pages = 260 KiB > 256 KiB: the stack VMA is 64 pages
    assert t.mm.stack_vm == 64
    validate_mm(t.mm)


def test_execve_arguments_on_i386_use_4_byte_pointers():
    # STACK_TOP 0xC0000000; "/bin/p\0" twice (argv[0] and the file name) = 14 bytes end
    # 4 bytes below the top; argc and the pointers are 32-bit; AT_PLATFORM is "i686"
    k = boot(arch="i386")
    t = k.spawn("p")
    mm = t.mm
    top = 0xC0000000
    assert mm.arg_start == top - 4 - 14 and t.peek(mm.arg_start, 14) == b"/bin/p\0/bin/p\0"
    raw = t.peek(mm.start_stack, 16)
    words = [int.from_bytes(raw[i:i + 4], "little") for i in range(0, 16, 4)]
    assert words == [1, mm.arg_start, 0, 0]  # argc, argv[0], NULL, no envp: NULL
    aux = t.peek(mm.start_stack + 16, 4 * 48)
    pairs = [(int.from_bytes(aux[i:i + 4], "little"), int.from_bytes(aux[i + 4:i + 8], "little"))
             for i in range(0, len(aux), 8)]
    assert pairs[0] == (32, mm.vdso) and pairs[-1] == (0, 0)  # AT_SYSINFO first, AT_NULL
    assert t.peek(dict(pairs)[15], 5) == b"i686\0"
    assert mm.stack_vm == 33
    validate_mm(mm)


def test_execve_maps_its_image_within_rlimit_data_and_rlimit_as(k, t):
    # the data segment (private writable file mapping) and the bss (vm_brk_flags) count
    # in data_vm against RLIMIT_DATA; every mapping counts in total_vm against RLIMIT_AS
    k.fs.create("/bin/big", 0)
    t.mmap(B, 4 * P, RW, FIX)
    t.access(B, True, b"k" * P)
    maps = k.procfs.read(f"/proc/{t.pid}/maps")
    c0 = k.committed_as

    def enomem(**layout):
        with pytest.raises(OSError) as e:
            t.execve("/bin/big", **layout)
        assert e.value.errno == U.ENOMEM
        assert k.procfs.read(f"/proc/{t.pid}/maps") == maps and t.peek(B, 1) == b"k"
        assert k.committed_as == c0 and t.comm == "t"

    t.setrlimit(U.RLIMIT_DATA, 100 * P)
    enomem(data=64 * P, bss=64 * P)  # 128 pages of data_vm > 100
    t.setrlimit(U.RLIMIT_DATA, U.RLIM_INFINITY)
    t.setrlimit(U.RLIMIT_AS, 200 * P)
    enomem(data=64 * P, bss=64 * P)  # text, data, bss and the 128 KiB stack: over 200 pages
    t.setrlimit(U.RLIMIT_AS, U.RLIM_INFINITY)
    t.setrlimit(U.RLIMIT_DATA, 128 * P)
    assert t.execve("/bin/big", data=64 * P, bss=64 * P) == 0  # exactly at the limit
    assert t.mm.data_vm == 128 and t.comm == "big"
