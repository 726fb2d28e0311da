"""strace replay: the parser on every line shape, the driver's placement and bookkeeping
rules (against a recording fake Task), and the shipped real traces against the guest."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments import replay as R
from experiments.replay import (
    CONSTANTS,
    Call,
    Exit,
    Replayer,
    Ret,
    Signal,
    TraceSyntaxError,
    parse_fd,
    parse_flags,
    parse_int,
    parse_line,
    parse_ret,
    parse_trace,
    split_args,
)

TRACES = Path(__file__).resolve().parents[1] / "data" / "traces"


def calls(trace):
    return [e for e in trace.events if isinstance(e, Call)]


# --------------------------------------------------------------------------- line shapes
def test_parse_line_names_each_shape():
    assert parse_line("9  brk(NULL) = 0x1000") == ("call", 9, "brk", "NULL", "0x1000")
    assert parse_line("9  wait4(-1,  <unfinished ...>") == ("unfinished", 9, "wait4", "-1,")
    assert parse_line("9  <... wait4 resumed>NULL, 0, NULL) = 10") == (
        "resumed", 9, "wait4", "NULL, 0, NULL", "10")
    assert parse_line("9  +++ exited with 0 +++") == ("exit", 9, 0, None)
    assert parse_line("+++ killed by SIGKILL +++") == ("exit", None, None, "SIGKILL")
    assert parse_line("9  --- SIGCHLD {si_signo=SIGCHLD} ---") == (
        "signal", 9, "SIGCHLD", "{si_signo=SIGCHLD}")
    assert parse_line("strace: Process 10 attached") == ("skip", None)
    assert parse_line("   ") == ("skip", None)


def test_complete_call_with_pid_column_and_padding():
    t = parse_trace(["4991  brk(NULL)                         = 0x5642aaf71000"])
    assert t.problems == []
    assert t.events == [Call(1, 4991, "brk", ["NULL"], Ret(0x5642AAF71000, None, "0x5642aaf71000"), 1)]


def test_call_without_pid_column():
    (c,) = calls(parse_trace(["munmap(0x7f1b6c7f6000, 34547)     = 0"]))
    assert (c.pid, c.name, c.args, c.ret.value) == (None, "munmap", ["0x7f1b6c7f6000", "34547"], 0)


def test_pid_in_brackets_timestamps_and_durations():
    lines = [
        "[pid  1234] 12:34:56.789012 mprotect(0x7f00, 4096, PROT_READ) = 0 <0.000011>",
        "1234  1700000000.123456 mlock(0x7f00, 4096) = 0",
        "10:00:01 munlockall() = 0",
        "29412 12:42:45.455976 [  12] [00007fa5287a1c47] brk(NULL) = 0x56218d84a000 <0.000013>",
    ]
    t = parse_trace(lines)
    assert t.problems == []
    assert [(c.pid, c.name, c.args, c.ret.value) for c in calls(t)] == [
        (1234, "mprotect", ["0x7f00", "4096", "PROT_READ"], 0),
        (1234, "mlock", ["0x7f00", "4096"], 0),
        (None, "munlockall", [], 0),
        (29412, "brk", ["NULL"], 0x56218D84A000),  # with -n -i -tt -T
    ]


def test_mmap_of_a_y_path_with_commas_and_brackets():
    line = ('77  mmap(NULL, 8192, PROT_READ, MAP_PRIVATE|MAP_DENYWRITE, '
            '3</tmp/a, b [x] (y)>, 0x2000) = 0x7f1b6c614000')
    (c,) = calls(parse_trace([line]))
    assert c.args == ["NULL", "8192", "PROT_READ", "MAP_PRIVATE|MAP_DENYWRITE",
                      "3</tmp/a, b [x] (y)>", "0x2000"]
    assert parse_fd(c.args[4]) == (3, "/tmp/a, b [x] (y)")
    assert parse_fd("-1") == (-1, None)
    assert parse_fd("5") == (5, None)
    assert parse_fd("4</memfd:x (deleted)>") == (4, "/memfd:x")
    assert parse_fd("3</memfd:edge>(deleted)") == (3, "/memfd:edge")  # strace 6.1's form


def test_failed_call_and_unknown_return():
    t = parse_trace([
        "5  mmap(NULL, 70368744177664, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
        " = -1 ENOMEM (Cannot allocate memory)",
        "5  exit_group(0)                     = ?",
    ])
    a, b = calls(t)
    assert a.ret == Ret(-1, "ENOMEM", "-1 ENOMEM (Cannot allocate memory)")
    assert a.ret.failed and not b.ret.failed
    assert b.ret.value is None and b.args == ["0"]


@pytest.mark.parametrize(
    "text, value, err",
    [
        ("0", 0, None),
        ("0x7f1b6c614000", 0x7F1B6C614000, None),
        ("5030", 5030, None),
        ("?", None, None),
        ("-1 EEXIST (File exists)", -1, "EEXIST"),
        ("-1 ERESTARTNOINTR (To be restarted)", -1, "ERESTARTNOINTR"),
        ("3</etc/passwd>", 3, None),
        ("0 (Timeout)", 0, None),
    ],
)
def test_return_values(text, value, err):
    r = parse_ret(text)
    assert (r.value, r.errno) == (value, err)


@pytest.mark.parametrize("text", ["", "abc", "-1 EWHATEVER (Nope)", "0x", "-01 EINVAL", "007"])
def test_bad_return_values(text):
    with pytest.raises(TraceSyntaxError):
        parse_ret(text)


def test_execve_strings_arrays_and_comments():
    line = '4991  execve("./malloc_mix", ["./malloc_mix", "a, b"], 0x7ffe1a9c0550 /* 35 vars */) = 0'
    (c,) = calls(parse_trace([line]))
    assert c.args == ['"./malloc_mix"', '["./malloc_mix", "a, b"]', "0x7ffe1a9c0550"]
    assert R.parse_string(c.args[0]) == "./malloc_mix"
    (c,) = calls(parse_trace(['7  execve("./a) = b", ["x"], 0x1 /* 1 var */)     = 0']))
    assert (c.args, c.ret.value) == (['"./a) = b"', '["x"]', "0x1"], 0)


def test_unfinished_and_resumed_are_joined_where_the_result_appears():
    lines = [
        "10  mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0 <unfinished ...>",
        "11  brk(NULL) = 0x1000000",
        "10  <... mmap resumed>) = 0x7f0000000000",
        "11  mprotect(0x7f00, 4096, <unfinished ...>",
        "11  <... mprotect resumed>PROT_NONE) = 0",
    ]
    t = parse_trace(lines)
    assert t.problems == []
    got = [(c.lineno, c.end_lineno, c.pid, c.name, c.args, c.ret.value) for c in calls(t)]
    assert got == [
        (2, 2, 11, "brk", ["NULL"], 0x1000000),
        (1, 3, 10, "mmap", ["NULL", "4096", "PROT_READ|PROT_WRITE", "MAP_PRIVATE|MAP_ANONYMOUS",
                            "-1", "0"], 0x7F0000000000),
        (4, 5, 11, "mprotect", ["0x7f00", "4096", "PROT_NONE"], 0),
    ]


def test_fork_is_placed_where_it_started_so_the_child_is_known():
    lines = [
        "20  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD "
        "<unfinished ...>",
        "21  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
        "20  <... clone resumed>, child_tidptr=0x7f00a10) = 21",
    ]
    t = parse_trace(lines)
    assert [(e.name, e.pid, e.ret.value) for e in calls(t)] == [("clone", 20, 21), ("mmap", 21, 0x7F0000000000)]
    assert calls(t)[0].args == ["child_stack=NULL", "flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD",
                                "child_tidptr=0x7f00a10"]


def test_exits_kills_and_signals():
    lines = [
        "30  --- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=NULL} ---",
        "30  +++ killed by SIGSEGV (core dumped) +++",
        "31  +++ exited with 3 +++",
        "32  +++ killed by SIGKILL +++",
        "33  --- stopped by SIGSTOP ---",
        "34  +++ superseded by execve in pid 35 +++",
    ]
    t = parse_trace(lines)
    assert t.problems == []
    assert t.events == [
        Signal(1, 30, "SIGSEGV", "{si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=NULL}"),
        Exit(2, 30, None, "SIGSEGV"),
        Exit(3, 31, 3, None),
        Exit(4, 32, None, "SIGKILL"),
        Signal(5, 33, "stopped by SIGSTOP", ""),
    ]


def test_an_unfinished_call_cut_by_exit_gets_an_unknown_result():
    t = parse_trace(["40  exit_group(0 <unfinished ...>", "40  +++ exited with 0 +++"])
    assert [type(e).__name__ for e in t.events] == ["Call", "Exit"]
    assert t.events[0].ret == Ret(None, None, "?") and t.events[0].args == ["0"]


def test_clone_flags_of_every_fork_form():
    def flags(line):
        return R.clone_flags(calls(parse_trace([line]))[0])

    assert flags("1  fork() = 2") == CONSTANTS["SIGCHLD"]
    assert flags("1  vfork() = 2") & (R.CLONE_VM | R.CLONE_VFORK) == R.CLONE_VM | R.CLONE_VFORK
    assert flags("1  clone(child_stack=0x7f00, flags=CLONE_VM|CLONE_VFORK|SIGCHLD) = 2") == (
        R.CLONE_VM | R.CLONE_VFORK | 17)
    line = ("1  clone3({flags=CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|"
            "CLONE_SYSVSEM|CLONE_SETTLS|CLONE_PARENT_SETTID|CLONE_CHILD_CLEARTID, "
            "child_tid=0x7f9e, parent_tid=0x7f9e, exit_signal=0, stack=0x7f9d, "
            "stack_size=0x7fff00, tls=0x7f9e} => {parent_tid=[1236]}, 88) = 1236")
    f = flags(line)
    assert f & R.CLONE_THREAD and f & R.CLONE_VM and not f & R.CLONE_VFORK


def test_numbers_and_flags():
    assert parse_int("NULL") == 0
    assert parse_int("0x1f") == 31
    assert parse_int("4096") == 4096
    assert parse_int("-1") == -1
    assert parse_int("0600") == 0o600
    assert parse_flags("PROT_READ|PROT_WRITE") == 3
    assert parse_flags("PROT_NONE") == 0
    assert parse_flags("MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED") == 0x32
    assert parse_flags("IPC_CREAT|0600") == 0o1600
    assert parse_flags("MAP_PRIVATE|0x40000") == 0x40002
    assert parse_flags("MADV_DONTNEED") == 4
    with pytest.raises(TraceSyntaxError):
        parse_flags("MAP_PRIVATE|MAP_BOGUS")
    with pytest.raises(TraceSyntaxError):
        parse_int("zz")


def test_split_args_rejects_unbalanced_text():
    for bad in ["a, (b", "a, b]", '"abc', "3</x", "/* x"]:
        with pytest.raises(TraceSyntaxError):
            split_args(bad)
    assert split_args("") == []
    assert split_args('"a\\"b,c", {x=[1, 2]}') == ['"a\\"b,c"', "{x=[1, 2]}"]


def test_malformed_lines_are_reported_with_their_numbers_and_skipped():
    lines = [
        "1  brk(NULL) = 0x1000",
        "this is not strace output",
        "1  mmap(NULL, 4096, PROT_READ",
        "1  mprotect(0x1000, 4096, PROT_READ)) = 0",
        "1  <... munmap resumed>) = 0",
        "1  mlock(0x1000, 4096) = -1 EBOGUS (No)",
        "",
        "strace: Process 2 attached",
        "1  +++ exploded +++",
        "1  munlock(0x1000, 4096) = 0",
    ]
    t = parse_trace(lines)
    assert [p.lineno for p in t.problems] == [2, 3, 4, 5, 6, 9]
    assert [c.name for c in calls(t)] == ["brk", "munlock"]
    assert str(t.problems[0]) == "line 2: malformed, skipped: not an strace line: this is not strace output"


def test_the_shipped_traces_parse_cleanly():
    for path in sorted(TRACES.glob("*.trace")):
        t = parse_trace(path.read_text().splitlines())
        assert t.problems == [], path.name
        assert t.has_pids == (not path.stem.endswith("_nof"))  # traced without -f
        assert calls(t)[0].name == "execve"


_REAL_LINES = [line for path in sorted(TRACES.glob("*.trace"))
               for line in path.read_text().splitlines()]


@st.composite
def damaged_traces(draw):
    """Lines of the real traces, some cut, spliced or shuffled."""
    lines = draw(st.lists(st.sampled_from(_REAL_LINES), min_size=1, max_size=30))
    out = []
    for line in lines:
        how = draw(st.sampled_from(["keep", "keep", "cut", "insert"]))
        if how == "cut":
            k = draw(st.integers(0, len(line)))
            line = line[:k]
        elif how == "insert":
            k = draw(st.integers(0, len(line)))
            line = line[:k] + draw(st.text(alphabet="()[]{}<>\",= |x0-9", max_size=4)) + line[k:]
        out.append(line)
    return out


@settings(max_examples=150, deadline=None)
@given(damaged_traces())
def test_damaged_traces_never_crash_the_parser_or_the_driver(lines):
    t = parse_trace(lines)
    assert all(1 <= p.lineno <= len(lines) for p in t.problems)
    assert len({p.lineno for p in t.problems}) == len(t.problems)
    k = FakeKernel()
    out = []
    calls_, divergences = Replayer(k, out.append).run(t)
    assert 0 <= divergences <= calls_ <= len(lines)


def test_constants_agree_with_guestkernel_uapi():
    if importlib.util.find_spec("guestkernel.uapi") is None:
        pytest.skip("guestkernel/uapi.py not written yet")
    from guestkernel import uapi

    shared = [n for n in CONSTANTS if isinstance(getattr(uapi, n, None), int)]
    assert shared, "uapi defines none of the names strace prints"
    assert {n: getattr(uapi, n) for n in shared} == {n: CONSTANTS[n] for n in shared}


# --------------------------------------------------------------------------- the driver
class FakeProcFS:
    def __init__(self, kernel):
        self.kernel = kernel

    def read(self, path):
        pid = int(path.split("/")[2])
        return f"maps of sim {pid}\n"


class FakeMM:
    def __init__(self):
        self.start_brk = self.brk = 0x600000


class FakeTask:
    """Records every system call; succeeds unless `fail` names the call."""

    def __init__(self, kernel, name):
        self.kernel, self.name = kernel, name
        self.pid = kernel.next_pid
        kernel.next_pid += 1
        self.mm = FakeMM()

    def _log(self, *entry):
        self.kernel.log.append((self.pid, *entry))
        err = self.kernel.fail.get(entry[0])
        if err == "bug":
            raise RuntimeError("fake bug")
        if err:
            raise OSError(err, "fake")

    def brk(self, addr):
        self._log("brk", addr)
        if addr >= self.mm.start_brk:
            self.mm.brk = addr
        return self.mm.brk

    def mmap(self, addr, length, prot, flags, fd, offset):
        self._log("mmap", addr, length, prot, flags, fd, offset)
        return addr

    def mremap(self, old, old_size, new_size, flags, new_addr=0):
        self._log("mremap", old, old_size, new_size, flags, new_addr)
        return new_addr if flags & R.MREMAP_FIXED else old

    def __getattr__(self, name):
        if name in ("munmap", "mprotect", "madvise", "mlock", "mlock2", "munlock", "mlockall",
                    "munlockall", "shmdt", "shmctl", "close", "exit", "execve"):
            return lambda *a: self._log(name, *a) or 0
        raise AttributeError(name)

    def open(self, path, flags, mode=0):
        self._log("open", path, flags, mode)
        return 3

    def ftruncate(self, fd, size):
        self._log("ftruncate", fd, size)

    def fork(self):
        self._log("fork")
        return FakeTask(self.kernel, self.name)

    def shmget(self, key, size, flags):
        self._log("shmget", key, size, flags)
        return 7

    def shmat(self, shmid, addr, flags):
        self._log("shmat", shmid, addr, flags)
        return addr


class FakeKernel:
    def __init__(self):
        self.log, self.fail, self.next_pid = [], {}, 100
        self.procfs = FakeProcFS(self)

    def spawn(self, name, argv=None):
        self.log.append(("spawn", name, argv))
        return FakeTask(self, name)


def run_fake(lines, fail=None):
    k = FakeKernel()
    k.fail = fail or {}
    out = []
    r = Replayer(k, out.append)
    result = r.run(parse_trace(lines))
    return k, r, out, result


def test_mmap_placement_noreplace_for_chosen_addresses_fixed_kept_failures_verbatim():
    lines = [
        '1  execve("./a", ["./a"], 0x7ff /* 1 var */) = 0',
        "1  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000010000",
        "1  mmap(0x7f0000010000, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED|MAP_ANONYMOUS, -1, 0) = 0x7f0000010000",
        "1  mmap(0x7e0000000000, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000020000",
        "1  mmap(NULL, 70368744177664, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 ENOMEM (Cannot allocate memory)",
    ]
    k, r, out, result = run_fake(lines, fail={})
    NR, FX, PA = R.MAP_FIXED_NOREPLACE, R.MAP_FIXED, 0x22
    assert [e[1:] for e in k.log if e[0] != "spawn"] == [
        ("mmap", 0x7F0000010000, 8192, 3, PA | NR, -1, 0),
        ("mmap", 0x7F0000010000, 4096, 1, PA | FX, -1, 0),
        ("mmap", 0x7F0000020000, 4096, 1, PA | NR, -1, 0),  # the hint is replaced
        ("mmap", 0, 1 << 46, 1, PA, -1, 0),  # a failure is replayed as recorded
    ]
    # the fake maps the 64 TiB request: the recorded ENOMEM is a divergence
    assert result == (5, 1)
    assert out == [
        "line 5: pid 1: mmap(NULL, 70368744177664, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)"
        " = -1 ENOMEM (Cannot allocate memory): simulated 0, trace says -1 ENOMEM (Cannot allocate memory)"
    ]


def test_file_mappings_open_the_guest_file_with_the_size_the_whole_trace_implies():
    lines = [
        "1  mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 3</lib/x.so>, 0) = 0x7f0000000000",
        "1  mmap(0x7f0000001000, 4096, PROT_READ, MAP_PRIVATE|MAP_FIXED, 3</lib/x.so>, 0x5000) = 0x7f0000001000",
    ]
    k, r, out, result = run_fake(lines)
    assert [e[1:] for e in k.log if e[0] != "spawn"] == [
        ("open", "/lib/x.so", R.O_RDWR | R.O_CREAT, 0o644),
        ("ftruncate", 3, 0x6000),  # max(0 + 8192, 0x5000 + 4096)
        ("mmap", 0x7F0000000000, 8192, 1, 2 | R.MAP_FIXED_NOREPLACE, 3, 0),
        ("close", 3),
        ("open", "/lib/x.so", R.O_RDWR, 0),
        ("mmap", 0x7F0000001000, 4096, 1, 2 | R.MAP_FIXED, 3, 0x5000),
        ("close", 3),
    ]
    assert result == (2, 0) and out == []


def test_files_are_created_in_the_guest_file_system_when_it_has_one():
    class FS:
        def __init__(self):
            self.files = {"/lib/old.so": type("Inode", (), {"size": 100})()}

        def lookup(self, path):
            return self.files.get(path)

        def create(self, path, size):
            self.files[path] = type("Inode", (), {"size": size})()

    lines = [
        "1  mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 3</lib/new.so>, 0) = 0x7f0000000000",
        "1  mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, 3</lib/old.so>, 0) = 0x7f0000002000",
    ]
    k = FakeKernel()
    k.fs = FS()
    r = Replayer(k, [].append)
    assert r.run(parse_trace(lines)) == (2, 0)
    assert {p: i.size for p, i in k.fs.files.items()} == {"/lib/old.so": 8192, "/lib/new.so": 8192}
    assert [e[1:3] for e in k.log if e[1] == "open"] == [("open", "/lib/new.so"), ("open", "/lib/old.so")]


def test_calls_on_memory_execve_mapped_are_outside_the_trace_not_divergences():
    # 0x7f...000 is mapped by the trace (4 pages); 0x55...000 (the executable) never is.
    lines = [
        "1  mmap(NULL, 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
        "1  mprotect(0x555555554000, 4096, PROT_READ) = 0",
        "1  mprotect(0x10000, 4096, PROT_READ) = -1 ENOMEM (Cannot allocate memory)",
        "1  munmap(0x7effffffe000, 16384) = 0",
        "1  mprotect(0x7f0000002000, 8192, PROT_READ) = -1 ENOMEM (Cannot allocate memory)",
    ]
    k, r, out, result = run_fake(lines, fail={})
    log = [e[1:] for e in k.log if e[0] != "spawn"][1:]
    assert log == [
        # the RELRO mprotect is not applied at all
        ("mprotect", 0x10000, 4096, 1),  # a recorded failure is replayed
        ("munmap", 0x7F0000000000, 8192),  # only the part the trace mapped
        ("mprotect", 0x7F0000002000, 8192, 1),
    ]
    assert r.outside == 2
    # a successful PROT_READ mprotect there is ld.so making a RELRO segment read-only
    assert out[0] == ("line 2: pid 1: mprotect(0x555555554000, 4096, PROT_READ) = 0: outside the trace: "
                      "ld.so's RELRO mprotect of an image execve mapped")
    assert out[1].startswith("line 3: pid 1: mprotect(0x10000, 4096, PROT_READ)")
    assert "simulated 0, trace says -1 ENOMEM" in out[1]
    assert out[2].startswith("line 4: pid 1: munmap(0x7effffffe000, 16384) = 0: outside the trace")
    assert result == (5, 2)
    assert r.procs[1].known == [[0x7F0000000000, 0x7F0000004000]]  # unmapped stays known


def test_first_brk_places_the_simulated_heap_where_execve_put_the_real_one():
    lines = [
        "1  brk(NULL) = 0x1ef40000",
        "1  brk(0x1ef40d00) = 0x1ef40d00",
        "1  brk(0x1ef62000) = 0x1ef62000",
        "1  brk(0x1ef41000) = 0x1ef41000",
    ]
    k, r, out, result = run_fake(lines)
    task = r.procs[1].task
    assert (task.mm.start_brk, task.mm.brk) == (0x1EF40000, 0x1EF41000)
    assert result == (4, 0) and out == []
    assert r.procs[1].known == [[0x1EF40000, 0x1EF62000]]  # the trimmed part stays known


def test_mremap_that_moved_is_replayed_to_the_recorded_address():
    lines = [
        "1  mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000100000",
        "1  mremap(0x7f0000100000, 65536, 262144, MREMAP_MAYMOVE) = 0x7f00000c0000",
        "1  mremap(0x7f00000c0000, 262144, 131072, 0) = 0x7f00000c0000",
    ]
    k, r, out, result = run_fake(lines)
    log = [e[1:] for e in k.log if e[0] != "spawn"][1:]
    assert log == [
        ("mremap", 0x7F0000100000, 65536, 262144, R.MREMAP_MAYMOVE | R.MREMAP_FIXED, 0x7F00000C0000),
        ("mremap", 0x7F00000C0000, 262144, 131072, 0, 0),
    ]
    assert result == (3, 0)
    assert r.procs[1].known == [[0x7F00000C0000, 0x7F0000110000]]


def test_shm_ids_are_mapped_and_attach_addresses_imposed():
    lines = [
        "1  shmget(IPC_PRIVATE, 65536, IPC_CREAT|0600) = 32769",
        "1  shmat(32769, NULL, 0) = 0x7f0000200000",
        "1  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f00) = 2",
        "2  shmat(32769, NULL, SHM_RDONLY) = 0x7f0000300000",
        "2  shmdt(0x7f0000300000) = 0",
        "2  exit_group(0) = ?",
        "2  +++ exited with 0 +++",
        "1  shmat(99, NULL, 0) = 0x7f0000400000",
        "1  shmctl(32769, IPC_RMID, NULL) = 0",
    ]
    k, r, out, result = run_fake(lines)
    parent, child = r.procs[1].task.pid, r.order[1].task.pid
    assert [e for e in k.log if e[0] != "spawn"] == [
        (parent, "shmget", 0, 65536, 0o1600),
        (parent, "shmat", 7, 0x7F0000200000, 0),
        (parent, "fork"),
        (child, "shmat", 7, 0x7F0000300000, CONSTANTS["SHM_RDONLY"]),
        (child, "shmdt", 0x7F0000300000),
        (child, "exit", 0),
        (parent, "shmctl", 7, CONSTANTS["IPC_RMID"]),
    ]
    assert out == ["line 8: pid 1: shmat(99, NULL, 0) = 0x7f0000400000: outside the trace "
                   "(touches memory no traced call mapped, e.g. mapped by execve)"]
    assert result == (8, 0)
    # the child inherited the parent's attachment, then attached (and detached) its own
    assert r.order[1].known == [[0x7F0000200000, 0x7F0000210000], [0x7F0000300000, 0x7F0000310000]]
    assert r.order[1].exited and r.order[1].maps == f"maps of sim {child}\n"


def test_threads_share_the_process_and_vfork_children_become_processes_at_execve():
    lines = [
        "1  clone3({flags=CLONE_VM|CLONE_THREAD|CLONE_SIGHAND, exit_signal=0} => {parent_tid=[2]}, 88) = 2",
        "2  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
        "2  exit(0) = ?",
        "2  +++ exited with 0 +++",
        "1  vfork() = 3",
        '3  execve("/bin/true", ["true"], 0x7ff /* 1 var */) = 0',
        "3  exit_group(0) = ?",
        "3  +++ exited with 0 +++",
        "1  munmap(0x7f0000000000, 4096) = 0",
    ]
    k, r, out, result = run_fake(lines)
    p1 = r.procs[1].task.pid
    child = [p for p in r.order if p.pid == 3][0]
    assert [e for e in k.log if e[0] != "spawn"] == [
        (p1, "mmap", 0x7F0000000000, 4096, 1, 0x22 | R.MAP_FIXED_NOREPLACE, -1, 0),
        (p1, "fork"),
        (child.task.pid, "execve", "/bin/true", ["true"]),  # with the traced argv
        (child.task.pid, "exit", 0),
        (p1, "munmap", 0x7F0000000000, 4096),
    ]
    assert out == [] and result[1] == 0
    assert [p.comm for p in r.order] == ["pid1", "true"]


def test_without_f_one_process_and_wait4_reaps_the_unseen_child():
    lines = [
        "shmget(IPC_PRIVATE, 65536, IPC_CREAT|0600) = 1",
        "shmat(1, NULL, 0) = 0x7f3be0fae000",
        "clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, child_tidptr=0x7f3b) = 6919",
        "wait4(6919, NULL, 0, NULL)              = 6919",
        "shmdt(0x7f3be0fae000)                   = 0",
        "exit_group(0)                           = ?",
        "+++ exited with 0 +++",
    ]
    k, r, out, result = run_fake(lines)
    parent, child = r.order
    assert (parent.pid, child.pid) == (None, 6919)
    assert [e[1] for e in k.log if e[0] == child.task.pid] == ["exit"]
    assert [e[1] for e in k.log if e[0] == parent.task.pid] == ["shmget", "shmat", "fork", "shmdt", "exit"]
    assert parent.exited and child.exited and out == [] and result == (5, 0)
    assert r.maps_report()[0] == "== pid ? (traced) at exit =="


def test_apply_event_by_event_and_task_of_a_thread_is_its_process():
    t = parse_trace([
        "1  clone3({flags=CLONE_VM|CLONE_THREAD, exit_signal=0} => {parent_tid=[2]}, 88) = 2",
        "2  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
    ])
    r = Replayer(FakeKernel(), [].append)
    r.prepare(t)
    r.apply(t.events[0])
    assert r.task_of(2) is r.task_of(1) is not None and r.task_of(3) is None
    r.apply(t.events[1])
    r.finish()
    assert (r.calls, r.divergences) == (2, 0) and r.order[0].maps is not None


def test_missing_syscall_in_the_simulated_kernel_is_a_divergence_naming_it():
    lines = ["1  mlockall(MCL_CURRENT|MCL_FUTURE) = 0", "1  madvise(0x1000, 4096, MADV_FREE) = 0"]
    k = FakeKernel()
    task_cls_getattr = FakeTask.__getattr__
    out = []
    try:
        FakeTask.__getattr__ = lambda self, n: (_ for _ in ()).throw(AttributeError(n))
        r = Replayer(k, out.append)
        assert r.run(parse_trace(lines)) == (2, 1)
    finally:
        FakeTask.__getattr__ = task_cls_getattr
    assert out[0] == ("line 1: pid 1: mlockall(MCL_CURRENT|MCL_FUTURE) = 0: the simulated kernel "
                      "has no mlockall()")
    assert r.unsupported == {"mlockall"}
    assert out[1].endswith("outside the trace (touches memory no traced call mapped, e.g. mapped by execve)")


def test_errno_mismatch_is_a_divergence():
    lines = ["1  shmget(IPC_PRIVATE, 0, IPC_CREAT|0600) = -1 EINVAL (Invalid argument)"]
    k, r, out, result = run_fake(lines, fail={"shmget": 28})
    assert result == (1, 1)
    assert out == ["line 1: pid 1: shmget(IPC_PRIVATE, 0, IPC_CREAT|0600) = -1 EINVAL (Invalid argument): "
                   "simulated -1 ENOSPC, trace says -1 EINVAL (Invalid argument)"]
    k, r, out, result = run_fake(lines, fail={"shmget": 22})
    assert result == (1, 0) and out == []


def test_a_simulator_exception_or_refused_file_is_a_divergence_not_a_crash():
    lines = [
        "1  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
        "1  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3</lib/x.so>, 0) = 0x7f0000001000",
    ]
    k, r, out, result = run_fake(lines, fail={"mmap": "bug", "open": 13})
    assert result == (2, 2)
    assert out == [
        "line 1: pid 1: mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000: "
        "the simulated kernel failed: RuntimeError: fake bug",
        "line 2: pid 1: mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, 3</lib/x.so>, 0) = 0x7f0000001000: "
        "the guest cannot open /lib/x.so: -1 EACCES",
    ]


def test_a_guest_that_cannot_spawn_is_reported_per_line():
    k = FakeKernel()
    k.spawn = lambda name, argv=None: (_ for _ in ()).throw(MemoryError("no task_struct"))
    out = []
    r = Replayer(k, out.append)
    assert r.run(parse_trace(['1  execve("./a", ["./a"], 0x1 /* 0 vars */) = 0'])) == (1, 1)
    assert out == ['line 1: execve("./a", ["./a"], 0x1) = 0: the simulated kernel failed: '
                   "MemoryError: no task_struct"]


def test_lines_of_an_exited_pid_are_noted_and_a_reused_pid_is_a_new_process():
    lines = [
        "1  fork() = 2",
        "2  exit_group(0) = ?",
        "2  +++ exited with 0 +++",
        "2  munmap(0x7f0000000000, 4096) = 0",
        "1  fork() = 2",
        "2  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000",
    ]
    k, r, out, result = run_fake(lines)
    assert out == ["line 4: pid 2: munmap(0x7f0000000000, 4096) = 0: after the process exited"]
    assert result == (4, 0)
    first, second = r.order[1], r.order[2]
    assert first.exited and not second.exited and r.procs[2] is second


def test_maps_report_lists_each_process_at_exit_or_end():
    lines = [
        '1  execve("./prog", ["./prog"], 0x7ff /* 1 var */) = 0',
        "1  fork() = 2",
        "2  exit_group(0) = ?",
        "2  +++ exited with 0 +++",
    ]
    k, r, out, result = run_fake(lines)
    p1, p2 = (p.task.pid for p in r.order)
    assert r.maps_report() == [
        "== pid 1 (prog) at end of trace ==",
        f"maps of sim {p1}",
        "== pid 2 (prog) at exit ==",
        f"maps of sim {p2}",
    ]


def test_a_call_with_too_few_arguments_is_reported_not_crashed():
    k, r, out, result = run_fake(["1  mprotect(0x1000) = 0", "1  munmap(zz, 4096) = 0"])
    assert result == (0, 0)
    assert out == [
        "line 1: malformed, skipped: too few arguments: mprotect(0x1000) = 0",
        "line 2: malformed, skipped: not a number: 'zz': munmap(zz, 4096) = 0",
    ]


# --------------------------------------------------------------------------- command line
def test_bad_files_are_one_line_errors_with_exit_2(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(R.replay, [str(tmp_path / "nope.trace")])
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines() == [
        f"hvsim replay: {tmp_path / 'nope.trace'}: No such file or directory"]
    binary = tmp_path / "bin.trace"
    binary.write_bytes(b"\x00\xff\xfe\x80garbage")
    res = runner.invoke(R.replay, [str(binary)])
    assert res.exit_code == 2 and res.output.strip() == f"hvsim replay: {binary}: not a text file"
    res = runner.invoke(R.replay, [str(tmp_path)])
    assert res.exit_code == 2 and res.output.strip() == f"hvsim replay: {tmp_path}: Is a directory"
    empty = tmp_path / "empty.trace"
    empty.write_text("nothing to see\n")
    res = runner.invoke(R.replay, [str(empty)])
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == f"hvsim replay: {empty}: no strace line in 1 lines"


def test_command_prints_findings_summary_and_exits_1_on_divergence(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "boot_guest", lambda memory: FakeKernel())
    trace = tmp_path / "t.trace"
    trace.write_text(
        '1  execve("./prog", ["./prog"], 0x7ff /* 1 var */) = 0\n'
        "1  mprotect(0x555555554000, 4096, PROT_READ) = 0\n"
        "garbage\n"
        "1  mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"
        "1  exit_group(0) = ?\n"
        "1  +++ exited with 0 +++\n"
    )
    res = CliRunner().invoke(R.replay, [str(trace), "--maps"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == [
        "line 3: malformed, skipped: not an strace line: garbage",
        "line 2: pid 1: mprotect(0x555555554000, 4096, PROT_READ) = 0: outside the trace: "
        "ld.so's RELRO mprotect of an image execve mapped",
        "1 calls outside the trace (1 of them ld.so RELRO mprotects)",
        "== pid 1 (prog) at exit ==",
        "maps of sim 100",
        "4 calls, 0 divergences",
    ]
    trace.write_text("1  mlock(0x10000, 4096) = -1 ENOMEM (Cannot allocate memory)\n")
    res = CliRunner().invoke(R.replay, [str(trace)])
    assert res.exit_code == 1
    assert res.output.splitlines() == [
        "line 1: pid 1: mlock(0x10000, 4096) = -1 ENOMEM (Cannot allocate memory): "
        "simulated 0, trace says -1 ENOMEM (Cannot allocate memory)",
        "1 calls, 1 divergences",
    ]


def test_bad_memory_option_and_stray_bytes(tmp_path, monkeypatch):
    trace = tmp_path / "t.trace"
    trace.write_bytes(b"1  brk(NULL) = 0x1000\n1  mlock(0x\xff, 4096) = 0\n")
    res = CliRunner().invoke(R.replay, [str(trace), "--memory", "lots"])
    assert res.exit_code == 2
    assert res.output.strip().startswith("hvsim replay: --memory: ")
    assert len(res.output.strip().splitlines()) == 1
    monkeypatch.setattr(R, "boot_guest", lambda memory: FakeKernel())
    res = CliRunner().invoke(R.replay, [str(trace)])
    assert res.exit_code == 0
    assert res.output.splitlines() == [
        "line 2: malformed, skipped: not a number: '0x\ufffd': mlock(0x\ufffd, 4096) = 0",
        "1 calls, 0 divergences",
    ]


# --------------------------------------------------------------------------- real traces
# Replayed in a real guest. The only calls allowed to be "outside the trace" are the RELRO
# mprotects of the executable and of ld.so, both mapped by execve itself.
OUTSIDE = {"malloc_mix": [12, 13], "fork_shm": [12, 13], "static_true": [7], "fork_shm_nof": [12, 13],
           "threads_spawn": [12, 13, 46, 47], "edge_calls": [17, 18, 63, 64], "segv": [7],
           "new_mm": [26, 27], "limits_priv": [14, 15]}
ROOT = {"limits_priv"}  # traced as root: replayed with --root


def _guest_gap(name: str) -> str | None:
    """Why the guest cannot replay this trace yet, or None."""
    if importlib.util.find_spec("guestkernel.task") is None:
        return "guestkernel.task (Task with brk/mmap/munmap/mprotect/mremap/...) not written yet"
    if name == "malloc_mix":
        # the trace's mmap of 64 TiB must fail with ENOMEM as on Linux (overcommit mode 0:
        # one request larger than RAM + swap); kernel.py's placeholder accepts everything
        k = R.boot_guest("64MiB")
        if k.vm_enough_memory(1 << 34):
            return ("overcommit mode 0 not enforced yet (Kernel.vm_enough_memory accepts a "
                    "64 TiB mmap): oom_kill's policy is not installed")
    return None


def _maps_gap(name: str) -> str | None:
    """Why the replay's /proc/PID/maps cannot equal the real one yet, or None."""
    if name == "threads_spawn":
        # Linux >= 6.7 gives MAP_STACK mappings VM_NOHUGEPAGE, so glibc's thread stack does
        # not merge with the anonymous mapping above it (the real maps show two VMAs)
        from guestkernel import uapi as U

        t = R.boot_guest("64MiB").spawn("probe")
        anon = U.MAP_PRIVATE | U.MAP_ANONYMOUS
        # three free pages (the top of the mmap area holds the vdso): a thread stack in
        # the first two, an ordinary anonymous mapping in the third
        a = t.mmap(0, 3 * 4096, U.PROT_NONE, anon, -1, 0)
        t.mmap(a, 2 * 4096, U.PROT_READ | U.PROT_WRITE, anon | U.MAP_STACK | U.MAP_FIXED, -1, 0)
        t.mmap(a + 2 * 4096, 4096, U.PROT_READ | U.PROT_WRITE, anon | U.MAP_FIXED, -1, 0)
        if t.mm.find_vma(a).vm_end != a + 2 * 4096:
            return "mmap does not give MAP_STACK mappings VM_NOHUGEPAGE (Linux >= 6.7)"
    return None


def _replay(name: str, root: bool | None = None, executables: bool = False,
            placement: str = "trace") -> tuple[int, int, list[str]]:
    # real executables off by default: what this machine has installed must not change
    # these results (the tests of binfmt_elf's layout below ship their binaries)
    out: list[str] = []
    n, m = R.replay_file(str(TRACES / f"{name}.trace"), memory="256MiB", out=out.append, maps=True,
                         root=name in ROOT if root is None else root, executables=executables,
                         placement=placement)
    return n, m, out


@pytest.mark.parametrize("name", sorted(OUTSIDE))
def test_shipped_traces_replay_without_divergence(name):
    why = _guest_gap(name)
    if why:
        pytest.skip(why)
    calls_, divergences, out = _replay(name)
    assert divergences == 0, "\n".join(out)
    assert out[-1] == f"{calls_} calls, 0 divergences"
    outside = [line for line in out if "outside the trace" in line and line.startswith("line ")]
    assert [int(line.split(":")[0].split()[1]) for line in outside] == OUTSIDE[name]
    assert all(" mprotect(" in line for line in outside)


def test_static_binary_heap_starts_where_the_trace_says():
    why = _guest_gap("static_true")
    if why:
        pytest.skip(why)
    _, _, out = _replay("static_true")
    # brk(NULL) = 0x1ef40000 ... brk(0x1ef62000) = 0x1ef62000
    heap = [line for line in out if line.endswith("[heap]")]
    assert len(heap) == 1 and heap[0].startswith("1ef40000-1ef62000 rw-p 00000000 00:00 0 ")


def test_a_process_killed_by_a_signal_dies_of_it_in_the_guest():
    why = _guest_gap("segv")
    if why:
        pytest.skip(why)
    from guestkernel import uapi as U

    r = Replayer(R.boot_guest("64MiB"), [].append)
    assert r.run(R.read_trace(str(TRACES / "segv.trace"))) == (9, 0)
    (proc,) = r.order
    assert proc.exited and "[heap]" in proc.maps
    assert proc.task.term_signal == U.SIGSEGV


def _maps_entries(lines) -> set[tuple[str, str, str, str]]:
    """(range, perms, offset, name) of /proc/PID/maps lines; device and inode differ."""
    out = set()
    for line in lines:
        f = line.split(maxsplit=5)
        out.add((f[0], f[1], f[2], f[5] if len(f) > 5 else ""))
    return out


def _execve_made(entries, exe: str) -> set:
    """What execve (not a traced call) mapped: the executable and its bss, ld.so, vdso..."""
    made = {e for e in entries
            if e[3] in (exe, "[stack]", "[vvar]", "[vvar_vclock]", "[vdso]", "[vsyscall]")
            or "/ld-linux" in e[3]}
    exe_ends = {e[0].split("-")[1] for e in made if e[3] == exe}
    return made | {e for e in entries if e[3] == "" and e[0].split("-")[0] in exe_ends}


def _sim_maps(out: list[str], pid: int, comm: str) -> set:
    start = out.index(f"== pid {pid} ({comm}) at exit ==") + 1
    lines = []
    for line in out[start:]:
        if line.startswith("==") or " calls, " in line:
            break
        lines.append(line)
    entries = _maps_entries(lines)
    # what spawn gave the simulated process instead of the real execve's mappings
    return {e for e in entries
            if not (e[3].startswith("/bin/") or e[3] in SPECIAL_MAPPINGS or e[3] == "[stack]"
                    or int(e[0].split("-")[0], 16) < 1 << 24)}


SPECIAL_MAPPINGS = ("[vvar]", "[vvar_vclock]", "[vdso]")


def _special_shape(lines) -> list[tuple[str, int, str]]:
    """(name, size in bytes, perms) of the vDSO mappings in address order, plus the gap
    between each and the next one as the name "gap" (0 if adjacent)."""
    rows = []
    for line in lines:
        f = line.split(maxsplit=5)
        if len(f) > 5 and f[5] in SPECIAL_MAPPINGS:
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            rows.append((f[5], lo, hi, f[1]))
    out = []
    for i, (name, lo, hi, perms) in enumerate(rows):
        out.append((name, hi - lo, perms))
        if i + 1 < len(rows):
            out.append(("gap", rows[i + 1][1] - hi, ""))
    return out


@pytest.mark.parametrize(
    "name, pid, maps, exe",
    [
        ("malloc_mix", 18847, "malloc_mix.maps", "/tmp/malloc_mix"),
        ("fork_shm", 18851, "fork_shm.maps", "/tmp/fork_shm"),
        ("fork_shm", 18852, "fork_shm.maps.child", "/tmp/fork_shm"),
        ("threads_spawn", 21069, "threads_spawn.maps", "/tmp/threads_spawn"),
        ("edge_calls", 23553, "edge_calls.maps", "/tmp/edge/edge_calls"),
        ("limits_priv", 25271, "limits_priv.maps", "/tmp/aspace/limits_priv"),
    ],
)
def test_replayed_maps_equal_the_real_process_maps_outside_execve_mappings(name, pid, maps, exe):
    # The programs copied their own /proc/self/maps just before exiting (see the .c files):
    # every mapping a traced call made must be in the replay, with the same range, rights,
    # offset and name, and the replay must hold nothing else.
    why = _guest_gap(name)
    if why and not (name == "malloc_mix" and "overcommit" in why):
        pytest.skip(why)
    if _maps_gap(name):
        pytest.skip(_maps_gap(name))
    _, _, out = _replay(name)
    if name == "malloc_mix" and why:
        # the 64 TiB mapping the guest wrongly accepted merges with the heap: compare the rest
        sim = {e for e in _sim_maps(out, pid, name) if e[3] != "[heap]"}
        real = {e for e in _maps_entries((TRACES / maps).read_text().splitlines()) if e[3] != "[heap]"}
    else:
        sim = _sim_maps(out, pid, name)
        real = _maps_entries((TRACES / maps).read_text().splitlines())
    assert sim == real - _execve_made(real, exe)


@pytest.mark.parametrize("name, pid, maps", [
    ("malloc_mix", 18847, "malloc_mix.maps"),
    ("fork_shm", 18852, "fork_shm.maps.child"),
    ("edge_calls", 23553, "edge_calls.maps"),
])
def test_execve_maps_the_vdso_as_the_real_kernel_did(name, pid, maps):
    # The replayed process's [vvar], [vvar_vclock] and [vdso] come from the simulated
    # execve (at the guest's own address, like the executable); their sizes, rights and
    # order must be those of the real process's (Linux 6.18: 4 + 2 data pages r--p, then
    # 2 pages of vDSO text r-xp, adjacent), and a forked child keeps its parent's.
    why = _guest_gap(name)
    if why:
        pytest.skip(why)
    _, _, out = _replay(name)
    start = out.index(f"== pid {pid} ({name}) at exit ==") + 1
    sim = []
    for line in out[start:]:
        if line.startswith("==") or " calls, " in line:
            break
        sim.append(line)
    real = (TRACES / maps).read_text().splitlines()
    assert _special_shape(sim) == _special_shape(real) == [
        ("[vvar]", 4 * 4096, "r--p"), ("gap", 0, ""), ("[vvar_vclock]", 2 * 4096, "r--p"),
        ("gap", 0, ""), ("[vdso]", 2 * 4096, "r-xp")]


def test_execve_gets_the_traced_argv_on_its_stack():
    # the strings (NUL-terminated) lie between arg_start and arg_end, as execve put them
    lines = [
        '1  execve("./srv", ["./srv", "--port", "8080"], 0x7ffc /* 3 vars */) = 0',
        "1  fork() = 2",
        '2  execve("/bin/worker", ["worker", "a, b", "' + "x" * 5000 + '"], 0x7ffd /* 3 vars */) = 0',
        '1  execve("./b", ["./b", "abridged"...], 0x7ffe /* 3 vars */) = 0',
    ]
    k = R.boot_guest("64MiB")
    r = Replayer(k, [].append)
    assert r.run(parse_trace(lines)) == (4, 0)
    srv, worker = r.procs[1].task, r.procs[2].task
    assert worker.mm.arg_end - worker.mm.arg_start == len("worker") + len("a, b") + 5000 + 3
    # an abridged argv (strace's "...") has unknown sizes: the replay passes [path]
    assert srv.mm.arg_end - srv.mm.arg_start == len("./b") + 1
    assert R.parse_argv('["./srv", "--port", "8080"]') == ["./srv", "--port", "8080"]
    assert R.parse_argv('["a", ...]') is None and R.parse_argv("0x7ffc") is None


# --------------------------------------------------------------------------- 6.x interfaces
def test_new_mm_replays_guards_mseal_droppable_memfd_and_multi_vma_mremap():
    # new_mm.trace: recorded with `strace -f -y` (every call) on Linux 6.18 by strace 6.1,
    # which prints mseal as syscall_0x1ce, MADV_GUARD_INSTALL as 0x66 and MAP_DROPPABLE as
    # 0x8: each result of the real kernel must come out of the guest
    calls_, divergences, out = _replay("new_mm")
    assert divergences == 0, "\n".join(out)
    assert calls_ == 118
    # the calls not modelled are listed with their counts, most frequent first
    skipped = [line for line in out if "not modelled" in line]
    assert skipped == [
        "28 lines of system calls not modelled, skipped: read 12, close 4, set_robust_list 3, "
        "newfstatat 2, pread64 2, access 1, arch_prctl 1, rseq 1, set_tid_address 1, write 1"]


def _smaps_flags(text: str) -> dict:
    out, cur = {}, None
    for line in text.splitlines():
        head = line.split()
        if head and "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            cur = (head[0], head[1])
        elif line.startswith("VmFlags:"):
            out[cur] = line.split()[1:]
    return out


def test_new_mm_smaps_vmflags_equal_the_real_ones_where_traced_calls_mapped():
    # new_mm copied its /proc/self/smaps just before exit_group: every VMA inside memory a
    # traced call mapped has the same range, rights and VmFlags in the replay (sl, dp, gu
    # and the merges that the sticky VM_MAYBE_GUARD and copy_vma's pgoff rule decide)
    trace = R.read_trace(str(TRACES / "new_mm.trace"))
    k = R.boot_guest("256MiB")
    r = Replayer(k, [].append)
    r.executables = False
    r.prepare(trace)
    sim = None
    for ev in trace.events:
        if isinstance(ev, R.Call) and ev.name == "exit_group" and ev.pid == 9928:
            sim = _smaps_flags(k.procfs.read(f"/proc/{r.procs[9928].task.pid}/smaps"))
        r.apply(ev)
    real = _smaps_flags((TRACES / "new_mm.smaps").read_text())
    known = r.procs[9928].known
    inside = {key: fl for key, fl in real.items()
              if any(s <= int(key[0].split("-")[0], 16) and int(key[0].split("-")[1], 16) <= e
                     for s, e in known)}
    assert len(inside) == 32
    assert {key: sim.get(key) for key in inside} == inside


def test_quiet_leaves_out_the_relro_lines_but_counts_them():
    loud: list[str] = []
    R.replay_file(str(TRACES / "malloc_mix.trace"), memory="256MiB", out=loud.append)
    quiet: list[str] = []
    R.replay_file(str(TRACES / "malloc_mix.trace"), memory="256MiB", out=quiet.append,
                  quiet=True)
    relro = [line for line in loud if "RELRO" in line and line.startswith("line ")]
    assert [line.split(":")[0] for line in relro] == ["line 12", "line 13"]
    assert all(line.endswith("outside the trace: ld.so's RELRO mprotect of an image execve "
                             "mapped") for line in relro)
    assert [line for line in loud if line not in relro] == quiet
    assert "2 calls outside the trace (2 of them ld.so RELRO mprotects)" in quiet
    res = CliRunner().invoke(R.replay, [str(TRACES / "malloc_mix.trace"), "--quiet"])
    assert res.exit_code == 0 and "RELRO mprotect of" not in res.output


def test_memfd_return_value_and_mseal_syscall_number_parse():
    tr = R.parse_trace([
        "9928  memfd_create(\"sealed\", MFD_ALLOW_SEALING) = 5</memfd:sealed>(deleted)",
        "9928  syscall_0x1ce(0x7f62d2858000, 0x2000, 0, 0xffffffff, 0, 0x7ff) = 0",
    ])
    assert not tr.problems
    a, b = tr.events
    assert a.name == "memfd_create" and a.ret.value == 5
    assert b.name == "syscall_0x1ce" and b.args[:3] == ["0x7f62d2858000", "0x2000", "0"]


# --------------------------------------------------------------------------- limits, privileges
def test_limits_capabilities_and_uid_changes_replay_under_root():
    # limits_priv.trace was recorded as root: with --root every result comes out of the
    # guest (prlimit64 of the four memory limits, capget/capset, setuid dropping the
    # capabilities); started as an ordinary user instead, mlock beyond RLIMIT_MEMLOCK at
    # line 20 fails without CAP_IPC_LOCK, and setuid(0) at line 53 succeeds because the
    # process never was root (its ids never held a 0, so its capabilities stayed)
    calls_, divergences, out = _replay("limits_priv", root=True)
    assert (calls_, divergences) == (52, 0), "\n".join(out)
    _, divergences, out = _replay("limits_priv", root=False)
    lines = [line.split(":")[0] for line in out if "simulated" in line]
    assert (divergences, lines) == (2, ["line 20", "line 53"])


def test_capability_sets_and_limits_parse():
    assert R.parse_caps("1<<CAP_CHOWN|1<<CAP_IPC_LOCK") == {0, 14}
    assert R.parse_caps("0") == set()
    assert R.parse_caps("~(1<<CAP_SYS_RESOURCE)") == set(range(41)) - {24}
    assert R.parse_limit("8192*1024") == 8 << 20
    assert R.parse_limit("RLIM64_INFINITY") == (1 << 64) - 1
    assert R.split_args("{version=_LINUX_CAPABILITY_VERSION_3, pid=0}, "
                        "{effective=1<<CAP_CHOWN|1<<CAP_KILL, permitted=0, inheritable=0}") == [
        "{version=_LINUX_CAPABILITY_VERSION_3, pid=0}",
        "{effective=1<<CAP_CHOWN|1<<CAP_KILL, permitted=0, inheritable=0}"]


def test_root_flag_on_the_command_line():
    res = CliRunner().invoke(R.replay, [str(TRACES / "limits_priv.trace"), "--root", "--quiet"])
    assert res.exit_code == 0, res.output
    assert res.output.splitlines()[-1] == "52 calls, 0 divergences"
    res = CliRunner().invoke(R.replay, [str(TRACES / "limits_priv.trace")])
    assert res.exit_code == 1


# --------------------------------------------------------------------------- real executables
def _host_loader_matches(maps_file: str) -> str | None:
    """Why this machine's ld.so cannot stand for the traced one, or None: the loader's
    segments must give the recorded mappings (same glibc build)."""
    from guestkernel.binfmt_elf import parse_elf

    interp = "/lib64/ld-linux-x86-64.so.2"
    try:
        img = parse_elf(interp, Path(interp).read_bytes())
    except (OSError, ValueError):
        return f"no x86-64 {interp} on this machine"
    rows = [line.split() for line in (TRACES / maps_file).read_text().splitlines()
            if line.endswith("ld-linux-x86-64.so.2")]
    lo, hi = int(rows[0][0].split("-")[0], 16), int(rows[-1][0].split("-")[1], 16)
    if hi - lo != (img.span(0)[1] - img.span(0)[0]) or len(rows) != len(img.loads) + 1:
        return f"this machine's {interp} is not the one the trace was recorded with"
    return None


def _maps_rows(lines) -> list[tuple[str, str, str, str]]:
    out = []
    for line in lines:
        f = line.split()
        if f and "-" in f[0] and len(f) >= 5:
            out.append((f[0], f[1], f[2], f[5] if len(f) > 5 else ""))
    return out


def test_real_executable_and_loader_mapped_as_binfmt_elf_and_relro_inside_the_trace():
    # placement.trace: a PIE program traced under setarch -R; its binary ships beside the
    # trace. execve maps it at ELF_ET_DYN_BASE (0x555555554000), its bss after the last
    # PT_LOAD, ld.so top-down below mmap_base, the vDSO below ld.so, the brk right after
    # the bss: the replay's /proc/PID/maps at exit is the real one but for [vsyscall]
    why = _host_loader_matches("placement.maps")
    if why:
        pytest.skip(why)
    calls_, divergences, out = _replay("placement", executables=True)
    assert (calls_, divergences) == (42, 0), "\n".join(out)
    assert not [line for line in out if "outside the trace" in line]  # RELRO replayed
    sim = _maps_rows(out[out.index("== pid 26808 (placement) at exit ==") + 1:-1])
    real = _maps_rows((TRACES / "placement.maps").read_text().splitlines())
    assert sim == [r for r in real if r[3] != "[vsyscall]"]


def test_placement_kernel_gives_every_address_of_a_setarch_R_trace():
    # --placement kernel: every mmap/mremap/shmat without a fixed address and the heap's
    # start placed by the guest; the trace under setarch -R gives 0 differences (ld.so's
    # own mappings, libc, THP-aligned 2 and 6 MiB mappings, a hole refilled, hints that
    # fit and do not, mremap moves, shmat, malloc's mmap)
    why = _host_loader_matches("placement.maps")
    if why:
        pytest.skip(why)
    calls_, divergences, out = _replay("placement", executables=True, placement="kernel")
    assert (calls_, divergences) == (42, 0), "\n".join(out)
    assert "0 placement differences" in out


def test_placement_kernel_reports_each_address_of_a_randomised_trace():
    # malloc_mix.trace was recorded with ASLR: the guest's own choices differ and each is
    # one line; the replay stays in step (0 divergences)
    calls_, divergences, out = _replay("malloc_mix", placement="kernel")
    assert divergences == 0
    moved = [line for line in out if "by the guest" in line]
    assert len(moved) == 9 and f"{len(moved)} placement differences" in out
    assert moved[0].startswith("line 2: pid 18847: brk(NULL) = 0x557b962bc000: placed at ")


def test_aslr_trace_finds_where_the_real_kernel_put_the_executable_and_loader():
    # new_mm.trace (ASLR): the executable's and ld.so's places are found from the RELRO
    # mprotects ld.so made (lines 26-27 then lie inside the trace); new_mm.smaps shows
    # the same addresses
    why = _host_loader_matches("placement.maps")
    if why:
        pytest.skip(why)
    calls_, divergences, out = _replay("new_mm", executables=True)
    assert divergences == 0, "\n".join(out)
    assert not [line for line in out if "outside the trace" in line]
    start = out.index("== pid 9928 (new_mm) at exit ==") + 1
    sim = {r for r in _maps_rows(out[start:start + 60]) if r[3].endswith(("new_mm", ".so.2"))}
    real = {r for r in _maps_rows((TRACES / "new_mm.smaps").read_text().splitlines())
            if r[3].endswith(("new_mm", ".so.2"))}
    assert sim == real and len(real) == 10
