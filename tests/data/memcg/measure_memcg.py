"""Record this machine's cgroup v1 memory controller (mm/memcontrol.c, mm/page_counter.c,
and mm/vmscan.c's try_to_free_mem_cgroup_pages) in five small cases, several runs each.
Writes memcg.json beside this script (memcg_kmem.json is a later run of it, which also
reads memory.kmem.usage_in_bytes, written as `measure_memcg.py 5 memcg_kmem.json`); tests/guestkernel/test_memcg_fixture.py sets up the
same cases in a guest. README.md beside this script says what each case is.

The task in every case is memcg_task (memcg_task.c beside this script), started inside a
cgroup (`echo $$ > cgroup.procs; exec`), driven one command per line so the counters can
be read between its steps. Every cgroup this script makes is
/sys/fs/cgroup/memory/hvsim-cgfix-*, removed at the end of its run; the cases with swap
add a 256 MiB swap file (/var/tmp/hvsim-cgfix-swap) and remove it; the page cache case
writes a 64 MiB file (/var/tmp/hvsim-cgfix-file), drops it from the cache and deletes it.
Nothing here uses more than about 100 MiB.

Other activity on the machine: the cgroup's own files (usage, failcnt, memory.stat,
oom_control) count only the cgroup's tasks. /proc/vmstat is machine-wide: the deltas are
recorded as they are, with /proc/swaps (this script's file must be the only swap, so
pswpin/pswpout are its) and the load average; nothing else reclaims on this 24 GiB machine,
and the deltas of a case are taken around the one step that reclaims.

Cases (L = LIMIT = 32 MiB unless said):
  limit           swap on, memory.swappiness 60, memsw unlimited: `anon 48` (48 MiB > L).
                  usage_in_bytes sampled in a loop while it runs (max and count kept),
                  then max_usage_in_bytes, failcnt, memory.stat, the /proc/vmstat deltas.
  oom-noswap      no swap on the machine: in the cgroup a small task (`anon 4`) then the
                  big one (`anon 48`); outside it a task holding `anon 4`. Recorded: each
                  task's state after (return code, -9 when killed), memory.oom_control,
                  failcnt, and the kernel log lines of the kill (dmesg, new lines only).
  oom-swappiness0 the same with the swap file on and the cgroup's memory.swappiness 0.
  pagecache       no swap: a 64 MiB file written outside the cgroup, fsync'd and dropped
                  (POSIX_FADV_DONTNEED; mincore before says how much stayed), then read
                  through (`read`) by the task in the cgroup, usage sampled; then
                  memory.stat (cache), failcnt, and the file's resident pages (mincore).
  charge          memory.limit_in_bytes 256 MiB (never reached), the task pinned to CPU 0
                  (taskset): for K in CHARGE_PAGES, `pages K` then `free`, usage_in_bytes
                  and memory.stat's rss read before, after the touch and after the free.
  move            cgroups A and B (256 MiB each), move_charge_at_immigrate 0 (the
                  default): the task in A maps `anon 16`, is moved to B (cgroup.procs),
                  maps `anon 8` there, frees it, exits; both cgroups' usage_in_bytes and
                  rss at every step. Then the attempt to set B's move_charge_at_immigrate
                  to 1 (deprecated; the write's outcome recorded) and, if accepted, the
                  same steps again as "move-immigrate".

Usage (root):
    gcc -O2 -o /tmp/memcg_task memcg_task.c
    python3 measure_memcg.py [runs [out.json]]
"""

import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

MiB = 1 << 20
PAGE = 4096
LIMIT = 32 * MiB
BIG = 256 * MiB
ROOT = "/sys/fs/cgroup/memory"
PREFIX = ROOT + "/hvsim-cgfix-"
SWAPFILE = "/var/tmp/hvsim-cgfix-swap"
DATAFILE = "/var/tmp/hvsim-cgfix-file"
TASK = "/tmp/memcg_task"
CHARGE_PAGES = (1, 63, 64, 65, 1024, 4096)
VMSTAT_KEYS = ("pswpin", "pswpout", "pgscan_direct", "pgsteal_direct", "pgscan_kswapd",
               "pgsteal_kswapd", "pgscan_anon", "pgsteal_anon", "pgscan_file",
               "pgsteal_file", "pgpgin", "pgpgout", "oom_kill", "pgmajfault")


def read_kv(path: str) -> dict:
    out = {}
    for line in open(path):
        k, v = line.split()[:2]
        out[k] = int(v)
    return out


def read_int(path: str) -> int:
    return int(open(path).read())


def write(path: str, value) -> None:
    with open(path, "w") as f:
        f.write(str(value))


def make_cg(name: str, limit: int, swappiness: int = 60) -> str:
    cg = PREFIX + name
    if os.path.isdir(cg):
        os.rmdir(cg)
    os.mkdir(cg)
    write(cg + "/memory.limit_in_bytes", limit)
    write(cg + "/memory.memsw.limit_in_bytes", -1)
    write(cg + "/memory.swappiness", swappiness)
    return cg


def remove_cg(cg: str) -> None:
    for _ in range(50):
        try:
            os.rmdir(cg)
            return
        except OSError:
            time.sleep(0.1)
    os.rmdir(cg)


def cg_state(cg: str) -> dict:
    return {"usage_in_bytes": read_int(cg + "/memory.usage_in_bytes"),
            "max_usage_in_bytes": read_int(cg + "/memory.max_usage_in_bytes"),
            "failcnt": read_int(cg + "/memory.failcnt"),
            "memsw_usage_in_bytes": read_int(cg + "/memory.memsw.usage_in_bytes"),
            # kernel memory (page tables, stacks, slab), charged to usage_in_bytes as well
            "kmem_usage_in_bytes": read_int(cg + "/memory.kmem.usage_in_bytes"),
            "stat": read_kv(cg + "/memory.stat"),
            "oom_control": read_kv(cg + "/memory.oom_control")}


def vmstat_delta(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before
            if k in VMSTAT_KEYS or after[k] != before[k]}


class Task:
    """memcg_task started in cgroup cg (or where this script runs, for cg None)."""

    def __init__(self, cg: str | None, cpu: int | None = None):
        argv = [TASK] if cpu is None else ["taskset", "-c", str(cpu), TASK]
        if cg is not None:
            argv = ["sh", "-c", f'echo $$ > {cg}/cgroup.procs; exec "$@"', "sh", *argv]
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def cmd(self, line: str) -> str:
        """The task's answer, or "" when it died (the OOM killer) before answering."""
        try:
            self.p.stdin.write(line + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            return ""
        return self.p.stdout.readline().strip()

    def alive(self) -> bool:
        return self.p.poll() is None

    def end(self) -> int:
        if self.alive():
            self.cmd("exit")
        try:
            return self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.wait()


class Sampler:
    """Reads cg's memory.usage_in_bytes in a loop until stopped: the max and the count."""

    def __init__(self, cg: str):
        self.path = cg + "/memory.usage_in_bytes"
        self.max = 0
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        while not self.stop:
            v = int(open(self.path).read())
            self.max = max(self.max, v)
            self.count += 1

    def done(self) -> dict:
        self.stop = True
        self.thread.join()
        return {"usage_max_sampled": self.max, "usage_samples": self.count}


def last_kmsg_time() -> float:
    lines = subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines()
    for line in reversed(lines):
        m = re.match(r"\[\s*([0-9.]+)\]", line)
        if m:
            return float(m.group(1))
    return 0.0


def kmsg_since(t0: float) -> list:
    out = []
    for line in subprocess.run(["dmesg"], capture_output=True, text=True).stdout.splitlines():
        m = re.match(r"\[\s*([0-9.]+)\]\s*(.*)", line)
        if m and float(m.group(1)) > t0:
            out.append(m.group(2))
    return out


def case_limit(_run: int) -> dict:
    cg = make_cg("limit", LIMIT)
    t = Task(cg)
    before = cg_state(cg)
    v0 = read_kv("/proc/vmstat")
    s = Sampler(cg)
    reply = t.cmd("anon 48")
    sampled = s.done()
    v1 = read_kv("/proc/vmstat")
    after = cg_state(cg)
    rc = t.end()
    time.sleep(0.2)
    end = cg_state(cg)
    remove_cg(cg)
    return {"reply": reply, "returncode": rc, **sampled, "before": before, "after": after,
            "after_exit": end, "vmstat_delta": vmstat_delta(v0, v1)}


def case_oom(_run: int, swappiness: int) -> dict:
    cg = make_cg("oom", LIMIT, swappiness)
    outside = Task(None)
    outside_reply = outside.cmd("anon 4")
    small = Task(cg)
    small_reply = small.cmd("anon 4")
    big = Task(cg)
    before = cg_state(cg)
    v0 = read_kv("/proc/vmstat")
    k0 = last_kmsg_time()
    s = Sampler(cg)
    big_reply = big.cmd("anon 48")
    sampled = s.done()
    big_rc = big.p.wait(timeout=10) if big_reply == "" else None
    time.sleep(0.2)
    v1 = read_kv("/proc/vmstat")
    after = cg_state(cg)
    kmsg = [line for line in kmsg_since(k0)
            if "memcg_task" in line or "oom-kill" in line or "out of memory" in line]
    result = {
        "big": {"reply": big_reply, "returncode": big_rc if big_rc is not None else big.end(),
                "pid": big.p.pid},
        "small_inside": {"reply": small_reply, "alive": small.alive(), "pid": small.p.pid},
        "outside": {"reply": outside_reply, "alive": outside.alive(), "pid": outside.p.pid},
        **sampled, "before": before, "after": after, "vmstat_delta": vmstat_delta(v0, v1),
        "kmsg": kmsg}
    result["small_inside"]["returncode"] = small.end()
    result["outside"]["returncode"] = outside.end()
    remove_cg(cg)
    return result


def case_pagecache(_run: int) -> dict:
    with open(DATAFILE, "wb") as f:
        for i in range(64):
            f.write(bytes([i + 1]) * MiB)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    cg = make_cg("pagecache", LIMIT)
    t = Task(cg)
    resident_before = t.cmd(f"mincore {DATAFILE}")
    before = cg_state(cg)
    v0 = read_kv("/proc/vmstat")
    s = Sampler(cg)
    reply = t.cmd(f"read {DATAFILE}")
    sampled = s.done()
    v1 = read_kv("/proc/vmstat")
    after = cg_state(cg)
    resident_after = t.cmd(f"mincore {DATAFILE}")
    rc = t.end()
    fd = os.open(DATAFILE, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)
    os.unlink(DATAFILE)
    time.sleep(0.2)
    remove_cg(cg)
    return {"reply": reply, "returncode": rc, "file_bytes": 64 * MiB,
            "resident_before": resident_before, "resident_after": resident_after,
            **sampled, "before": before, "after": after, "vmstat_delta": vmstat_delta(v0, v1)}


def usage_rss(cg: str) -> dict:
    st = read_kv(cg + "/memory.stat")
    return {"usage_in_bytes": read_int(cg + "/memory.usage_in_bytes"), "rss": st["rss"],
            "cache": st["cache"], "kmem_usage_in_bytes": read_int(cg + "/memory.kmem.usage_in_bytes")}


def case_charge(_run: int) -> dict:
    cg = make_cg("charge", BIG)
    t = Task(cg, cpu=0)
    steps = []
    for k in CHARGE_PAGES:
        before = usage_rss(cg)
        r1 = t.cmd(f"pages {k}")
        touched = usage_rss(cg)
        r2 = t.cmd("free")
        freed = usage_rss(cg)
        steps.append({"pages": k, "replies": [r1, r2], "before": before,
                      "touched": touched, "freed": freed})
    rc = t.end()
    time.sleep(0.2)
    end = usage_rss(cg)
    remove_cg(cg)
    return {"returncode": rc, "steps": steps, "after_exit": end}


def case_move(_run: int, immigrate: bool) -> dict:
    a = make_cg("move-a", BIG)
    b = make_cg("move-b", BIG)
    outcome = None
    if immigrate:
        try:
            write(b + "/memory.move_charge_at_immigrate", 1)
            outcome = "accepted"
        except OSError as e:
            outcome = f"{type(e).__name__}: errno {e.errno} ({os.strerror(e.errno)})"
    result = {"move_charge_at_immigrate_write": outcome,
              "move_charge_at_immigrate": read_int(b + "/memory.move_charge_at_immigrate"),
              "steps": []}
    if immigrate and outcome != "accepted":
        remove_cg(a)
        remove_cg(b)
        return result

    def state(step: str, reply: str) -> None:
        result["steps"].append({"step": step, "reply": reply, "A": usage_rss(a),
                                "B": usage_rss(b)})

    t = Task(a)
    state("start in A", "")
    state("anon 16 in A", t.cmd("anon 16"))
    write(b + "/cgroup.procs", t.p.pid)
    state("moved to B", "")
    state("anon 8 in B", t.cmd("anon 8"))
    state("free the 8 MiB", t.cmd("free"))
    result["returncode"] = t.end()
    time.sleep(0.2)
    state("exited", "")
    remove_cg(a)
    remove_cg(b)
    return result


def swap_on() -> None:
    subprocess.run(["fallocate", "-l", "256M", SWAPFILE], check=True)
    os.chmod(SWAPFILE, 0o600)
    subprocess.run(["mkswap", "-q", SWAPFILE], check=True)
    subprocess.run(["swapon", SWAPFILE], check=True)


def swap_off() -> None:
    if os.path.exists(SWAPFILE):
        subprocess.run(["swapoff", SWAPFILE])
        os.unlink(SWAPFILE)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "memcg.json")
    result = {"kernel": platform.release(), "cpus": os.cpu_count(), "limit": LIMIT,
              "page_size": PAGE, "loadavg": open("/proc/loadavg").read().split()[:3],
              "charge_pages": list(CHARGE_PAGES), "cases": {}}
    cases = result["cases"]
    try:
        # no swap: the OOM case and the page cache
        result["swaps_without"] = open("/proc/swaps").read().splitlines()[1:]
        cases["oom-noswap"] = [case_oom(i, 60) for i in range(runs)]
        cases["pagecache"] = [case_pagecache(i) for i in range(runs)]
        cases["charge"] = [case_charge(i) for i in range(runs)]
        cases["move"] = [case_move(i, False) for i in range(runs)]
        cases["move-immigrate"] = [case_move(i, True) for i in range(runs)]
        swap_on()
        result["swaps_with"] = open("/proc/swaps").read().splitlines()[1:]
        result["page_cluster"] = read_int("/proc/sys/vm/page-cluster")
        cases["limit"] = [case_limit(i) for i in range(runs)]
        cases["oom-swappiness0"] = [case_oom(i, 0) for i in range(runs)]
    finally:
        swap_off()
        for name in ("limit", "oom", "pagecache", "charge", "move-a", "move-b"):
            if os.path.isdir(PREFIX + name):
                remove_cg(PREFIX + name)
        if os.path.exists(DATAFILE):
            os.unlink(DATAFILE)
    result["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
