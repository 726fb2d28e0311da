"""/proc/PID/maps, status and smaps_rollup, byte for byte."""

import pytest

from guestkernel import uapi as U

from .helpers import boot

P = 4096
RW = U.PROT_READ | U.PROT_WRITE
ANON = U.MAP_PRIVATE | U.MAP_ANONYMOUS


def test_maps_of_a_fresh_static_binary(k):
    t = k.spawn("t")
    ino = k.fs.lookup("/bin/t").ino
    # 64-bit: the name starts at column 73 (seq_setwidth 25 + 6 * 8 - 1, then one space);
    # a line without a name keeps the space that follows the inode number
    expected = (
        f"00400000-00480000 r-xp 00000000 08:01 {ino}" + " " * 28 + "/bin/t\n"
        f"00480000-00484000 rw-p 00080000 08:01 {ino}" + " " * 28 + "/bin/t\n"
        "00484000-0048c000 rw-p 00000000 00:00 0 \n"
        "7ffff7ff7000-7ffff7ffb000 r--p 00000000 00:00 0" + " " * 26 + "[vvar]\n"
        "7ffff7ffb000-7ffff7ffd000 r--p 00000000 00:00 0" + " " * 26 + "[vvar_vclock]\n"
        "7ffff7ffd000-7ffff7fff000 r-xp 00000000 00:00 0" + " " * 26 + "[vdso]\n"
        "7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0" + " " * 26 + "[stack]\n"
    )
    assert len(str(ino)) == 7
    assert k.procfs.read(f"/proc/{t.pid}/maps") == expected


def test_maps_heap_file_and_anon_lines(k):
    t = k.spawn("t")
    brk = t.brk(0)
    t.brk(brk + 3 * P)
    k.fs.create("/usr/lib/libc.so.6", 8 * P)
    fd = t.open("/usr/lib/libc.so.6")
    a = t.mmap(0, 4 * P, U.PROT_READ | U.PROT_EXEC, U.MAP_PRIVATE, fd, 2 * P)
    b = t.mmap(0, P, U.PROT_NONE, ANON)
    lines = k.procfs.read(f"/proc/{t.pid}/maps").splitlines()
    assert f"{brk:08x}-{brk + 3 * P:08x} rw-p 00000000 00:00 0" + " " * 34 + "[heap]" in lines
    ino = k.fs.lookup("/usr/lib/libc.so.6").ino
    assert (f"{a:08x}-{a + 4 * P:08x} r-xp 00002000 08:01 {ino}" + " " * 20
            + "/usr/lib/libc.so.6") in lines
    assert f"{b:08x}-{b + P:08x} ---p 00000000 00:00 0 " in lines


def test_maps_32bit_width():
    k = boot(arch="i386")
    t = k.spawn("t")
    text = k.procfs.read(f"/proc/{t.pid}/maps")
    ino = k.fs.lookup("/bin/t").ino
    # 32-bit: width 25 + 6 * 4 - 1 = 48
    assert text.splitlines()[0] == f"08048000-080c8000 r-xp 00000000 08:01 {ino}" + " " * 4 + "/bin/t"
    assert text.splitlines()[-1] == "bffdf000-c0000000 rw-p 00000000 00:00 0" + " " * 10 + "[stack]"


def test_status_memory_lines(k):
    t = k.spawn("t")
    t.mmap(0x10000000, 10 * P, RW, ANON | U.MAP_FIXED)
    t.access_range(0x10000000, 6 * P, True)
    t.mlock(0x10000000, 2 * P)
    status = k.procfs.read(f"/proc/{t.pid}/status")
    vm = {ln.split(":")[0]: ln.split(":")[1] for ln in status.splitlines() if ln.startswith(("Vm", "Rss"))}
    assert list(vm) == ["VmPeak", "VmSize", "VmLck", "VmPin", "VmHWM", "VmRSS", "RssAnon",
                        "RssFile", "RssShmem", "VmData", "VmStk", "VmExe", "VmLib", "VmPTE",
                        "VmSwap"]
    # 512 text + 16 data + 32 bss + 132 stack + 32 vvar/vvar_vclock/vdso + 40
    assert vm["VmSize"] == "\t     764 kB"
    assert vm["VmLck"] == "\t       8 kB"
    assert vm["VmRSS"] == "\t      28 kB"  # 6 pages + the stack's argument page
    assert vm["RssAnon"] == "\t      28 kB"
    assert vm["VmData"] == "\t      88 kB"
    assert vm["VmStk"] == "\t     132 kB"
    assert vm["VmExe"] == "\t     512 kB"
    assert vm["VmLib"] == "\t       8 kB"  # exec_vm beyond the text: the vdso
    assert vm["VmPTE"] == "\t      24 kB"  # stack: PUD+PMD+PTE; 0x10000000: PUD+PMD+PTE
    # (the special mappings have no PTE until touched)
    assert "Name:\tt\n" in status and f"Pid:\t{t.pid}\n" in status
    t.munmap(0x10000000, 10 * P)
    status = k.procfs.read(f"/proc/{t.pid}/status")
    assert "VmPeak:\t     764 kB\n" in status and "VmHWM:\t      28 kB\n" in status
    assert "VmRSS:\t       4 kB\n" in status


def test_smaps_rollup_pss_halves_after_fork(k):
    t = k.spawn("t")
    t.mmap(0x10000000, 4 * P, RW, ANON | U.MAP_FIXED)
    t.access_range(0x10000000, 4 * P, True)
    k.tasks[t.fork()]
    text = k.procfs.read(f"/proc/{t.pid}/smaps_rollup")
    lines = text.splitlines()
    assert lines[0] == "00400000-7ffffffff000 ---p 00000000 00:00 0" + " " * 30 + "[rollup]"
    rows = {ln.split(":")[0]: ln for ln in lines[1:]}
    assert rows["Rss"] == "Rss:                  20 kB"
    # 4 pages and the stack's argument page, all shared with the child: 2 kB each
    assert rows["Pss"] == "Pss:                  10 kB"
    assert rows["Shared_Dirty"] == "Shared_Dirty:         20 kB"
    assert rows["Private_Dirty"] == "Private_Dirty:         0 kB"
    assert rows["Anonymous"] == "Anonymous:            20 kB"
    assert rows["Private_Hugetlb"] == "Private_Hugetlb:       0 kB"  # width 7 after 17
    assert lines[-1] == "Locked:                0 kB"
    assert len(lines) == 23


def test_proc_files_of_dead_task_are_gone(k):
    t = k.spawn("t")
    pid = t.pid
    t.exit(0)
    with pytest.raises(FileNotFoundError):
        k.procfs.read(f"/proc/{pid}/maps")


def test_smaps_per_vma_and_sum_equals_rollup(k):
    t = k.spawn("t")
    t.mmap(0x10000000, 4 * P, RW, ANON | U.MAP_FIXED)
    t.access_range(0x10000000, 3 * P, True)
    t.mlock(0x10000000, P)
    text = k.procfs.read(f"/proc/{t.pid}/smaps")
    blocks = text.split("VmFlags: ")
    assert len(blocks) == len(t.mm.mm_mt) + 1
    stack = text[text.index("[stack]"):]
    assert stack.splitlines()[1:4] == ["Size:                132 kB", "KernelPageSize:        4 kB",
                                      "MMUPageSize:           4 kB"]
    assert stack.splitlines()[-1] == "VmFlags: rd wr mr mw me gd ac "
    locked_block = [b for b in blocks if "10000000-10001000" in b][0]
    assert "Locked:                4 kB" in locked_block
    assert "VmFlags: rd wr mr mw me lo ac " in text
    total = sum(int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("Rss:"))
    rollup = k.procfs.read(f"/proc/{t.pid}/smaps_rollup")
    assert "Rss:" + " " * 12 + f"{total:8d} kB" in rollup and total == 16
