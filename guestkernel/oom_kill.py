"""Overcommit accounting and the OOM killer (mm/util.c, mm/oom_kill.c, fs/proc/base.c).

Overcommit (`vm_enough_memory`, installed as kernel.vm_enough_memory): every charge first
grows Committed_AS, and is taken back if refused.

    mode 1 (always)     succeed
    mode 0 (heuristic)  fail only if this one request exceeds totalram + total swap
    mode 2 (strict)     allowed = CommitLimit - admin_reserve (unless CAP_SYS_ADMIN)
                                  - min(total_vm / 32, user_reserve)
                        succeed iff Committed_AS (after the charge) < allowed

CommitLimit = totalram * overcommit_ratio / 100 + total swap (overcommit_kbytes replaces
the first term when non-zero). The reserves are kernel.user_reserve_kbytes and
kernel.admin_reserve_kbytes (/proc/sys/vm). Which mappings charge is the address-space
layer's business (mmap, brk, stack, mprotect, fork, shm call vm_enough_memory).

Badness (`oom_badness`, C long arithmetic):

    points = rss + swap entries + pgtables_bytes / PAGE_SIZE
    points += oom_score_adj * (totalpages / 1000)       # the division first
    -> None ("never", LONG_MIN in Linux) when oom_score_adj == -1000

and /proc/PID/oom_score = (1000 + points * 1000 / totalpages) * 2 / 3, truncated toward
zero like C, 0 for a never-killable task; totalpages = totalram + total swap.

The OOM killer (`OOMKiller.out_of_memory`, the allocator's oom_hook): no kill for
!__GFP_FS requests; a dying allocating task frees its memory itself; panic_on_oom 2 always
panics, 1 panics (no cpuset/mempolicy constraint is modelled, so every OOM is
unconstrained); oom_kill_allocating_task kills the allocating task if it is eligible;
otherwise the task with the highest badness is chosen (ties go to the later task, init and
-1000 are skipped, a previous victim whose memory is not yet freed aborts the selection);
no victim -> panic. A kernel without any task (used as a bare allocator) kills nothing
and does not panic: the allocation fails. The victim gets SIGKILL: a task outside the kernel dies and its memory
is freed at once (exit_mmap, as the oom_reaper would); the allocating task dies when its
system call returns, and may meanwhile use memory reserves (`is_oom_victim`). Each kill
counts vmstat oom_kill and logs Linux's "Out of memory: Killed process" line in `log`
("Memory cgroup out of memory: Killed process" for a memcg OOM).
hvsim's own counter vm_enough_memory_fail counts refused commit charges (Linux only logs
them, ratelimited).
"""

from __future__ import annotations

from . import gfp as G
from .units import PAGE_SHIFT, PAGE_SIZE

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
OOM_DISABLE = -17  # legacy /proc/PID/oom_adj
OOM_ADJUST_MIN = -16
OOM_ADJUST_MAX = 15

OVERCOMMIT_GUESS = 0
OVERCOMMIT_ALWAYS = 1
OVERCOMMIT_NEVER = 2


def _cdiv(a: int, b: int) -> int:
    """C integer division: truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def oom_badness(rss_pages: int, swap_pages: int, pgtables_bytes: int, oom_score_adj: int,
                totalpages: int) -> int | None:
    """oom_badness(): the kill priority in pages (may be negative); None = never kill."""
    if oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    points = rss_pages + swap_pages + pgtables_bytes // PAGE_SIZE
    adj = oom_score_adj * _cdiv(totalpages, 1000)
    return points + adj


def oom_score(rss_pages: int, swap_pages: int, pgtables_bytes: int, oom_score_adj: int,
              totalpages: int) -> int:
    """What /proc/PID/oom_score shows: 0..2000."""
    badness = oom_badness(rss_pages, swap_pages, pgtables_bytes, oom_score_adj, totalpages)
    if badness is None or totalpages <= 0:
        return 0
    points = _cdiv((1000 + _cdiv(badness * 1000, totalpages)) * 2, 3)
    return max(points, 0)  # Linux stores it in an unsigned long; it cannot go below 0


def oom_adj_from_score_adj(adj: int) -> int:
    """Legacy /proc/PID/oom_adj as read: 15 for 1000, else adj * 17 / 1000 (C)."""
    if adj == OOM_SCORE_ADJ_MAX:
        return OOM_ADJUST_MAX
    return _cdiv(adj * -OOM_DISABLE, OOM_SCORE_ADJ_MAX)


def score_adj_from_oom_adj(oom_adj: int) -> int:
    """Legacy oom_adj written: 15 -> 1000, -17 -> -1000, else adj * 1000 / 17 (C)."""
    if oom_adj == OOM_ADJUST_MAX:
        return OOM_SCORE_ADJ_MAX
    return _cdiv(oom_adj * OOM_SCORE_ADJ_MAX, -OOM_DISABLE)


class OOMKiller:
    """Overcommit policy and the OOM killer of one guest kernel."""

    def __init__(self, kernel) -> None:
        self.kernel = kernel
        self.log: list[str] = []  # kernel log lines of OOM kills and panics
        self.victims: list = []  # tasks killed, in order
        kernel.vmstat.setdefault("oom_kill", 0)
        kernel.vmstat.setdefault("vm_enough_memory_fail", 0)

    # ------------------------------------------------------------------ overcommit
    def totalpages(self) -> int:
        k = self.kernel
        return k.page_alloc.totalram_pages() + k.total_swap_pages()

    def vm_enough_memory(self, pages: int, cap_sys_admin: bool = False, total_vm: int = 0) -> bool:
        """__vm_enough_memory: charge `pages` to Committed_AS if the policy allows.
        `total_vm` (pages) is the caller's mm->total_vm (0 without an mm)."""
        k = self.kernel
        cfg = k.config
        k.committed_as += pages
        mode = cfg.overcommit_memory
        if mode == OVERCOMMIT_ALWAYS:
            return True
        if mode == OVERCOMMIT_GUESS:
            if pages <= k.page_alloc.totalram_pages() + k.total_swap_pages():
                return True
        else:
            allowed = k.vm_commit_limit()
            if not cap_sys_admin:
                allowed -= k.admin_reserve_kbytes >> (PAGE_SHIFT - 10)
            if total_vm:
                reserve = k.user_reserve_kbytes >> (PAGE_SHIFT - 10)
                allowed -= min(total_vm // 32, reserve)
            if max(k.committed_as, 0) < allowed:
                return True
        k.committed_as -= pages
        k.vmstat["vm_enough_memory_fail"] += 1
        return False

    def vm_unacct_memory(self, pages: int) -> None:
        self.kernel.committed_as -= pages

    # ------------------------------------------------------------------ badness
    def totalpages_for_score(self) -> int:
        return self.totalpages()

    @staticmethod
    def _task_usage(task) -> tuple[int, int, int]:
        mm = task.mm
        if mm is None:
            return 0, 0, 0
        rss = mm.rss
        return rss[0] + rss[1] + rss[3], rss[2], mm.pgtables_bytes

    def badness(self, task, totalpages: int) -> int | None:
        """oom_badness() of a task: None for init, tasks without an mm, adj -1000, and
        victims already reaped."""
        if task.pid == 1 or task.mm is None or getattr(task, "oom_reaped", False):
            return None
        rss, swap, pgt = self._task_usage(task)
        return oom_badness(rss, swap, pgt, task.oom_score_adj, totalpages)

    def task_oom_score(self, task) -> int:
        totalpages = self.totalpages()
        if task.pid == 1 or task.mm is None:
            return 0
        rss, swap, pgt = self._task_usage(task)
        return oom_score(rss, swap, pgt, task.oom_score_adj, totalpages)

    # ------------------------------------------------------------------ victims
    def current(self):
        """The task whose system call is running (the one inside the kernel), if any."""
        k = self.kernel
        cur = getattr(k, "current", None)
        if cur is not None:
            return cur
        for task in k.tasks.values():
            if getattr(task, "_kdepth", 0) > 0:
                return task
        return None

    @staticmethod
    def is_oom_victim(task) -> bool:
        """tsk_is_oom_victim: killed by the OOM killer (may dip into reserves)."""
        return bool(getattr(task, "oom_victim", False))

    def select_bad_process(self, totalpages: int):
        """The task to kill, None if none is eligible, or False to abort (a previous
        victim's memory is not freed yet)."""
        chosen = None
        chosen_points = None
        for pid in sorted(self.kernel.tasks):
            task = self.kernel.tasks[pid]
            if self.is_oom_victim(task) and task.mm is not None:
                return False
            points = self.badness(task, totalpages)
            if points is None:
                continue
            if chosen_points is None or points >= chosen_points:  # ties: the later task
                chosen, chosen_points = task, points
        return chosen

    def out_of_memory(self, gfp: int, order: int = 0) -> bool:
        """The allocator's last resort. True if memory was freed (retry the allocation)."""
        k = self.kernel
        cfg = k.config
        if not gfp & G.FS and not gfp & G.NOFAIL:
            return False  # the OOM killer does not compensate for IO-less reclaim
        if not k.tasks:
            # no user space at all (a kernel used as a bare allocator, before init):
            # nothing to kill, nothing to panic about; the allocation fails
            return False
        current = self.current()
        if current is not None and current.mm is not None and current.fatal_signal_pending():
            # a dying task frees its memory itself when it leaves the kernel
            current.oom_victim = True
            return False
        if cfg.panic_on_oom == 2:
            self._panic("Out of memory: compulsory panic_on_oom is enabled")
        if cfg.panic_on_oom == 1:
            self._panic("Out of memory: system-wide panic_on_oom is enabled")
        totalpages = self.totalpages()
        victim = None
        if (cfg.oom_kill_allocating_task and current is not None and current.mm is not None
                and current.pid != 1 and current.oom_score_adj != OOM_SCORE_ADJ_MIN):
            victim = current
        else:
            victim = self.select_bad_process(totalpages)
            if victim is False:
                return True  # a victim is exiting: retry
        if victim is None:
            self._panic("Out of memory and no killable processes...")
        return self.oom_kill_process(victim, totalpages, current)

    def oom_kill_process(self, victim, totalpages: int, current=None,
                         message: str = "Out of memory") -> bool:
        """SIGKILL the victim and free its memory. True if memory was freed now.
        `message`: out_of_memory's, "Memory cgroup out of memory" for a memcg OOM
        (is_memcg_oom)."""
        from .uapi import SIGKILL

        k = self.kernel
        rss = victim.mm.rss
        mm = victim.mm
        kb = PAGE_SHIFT - 10
        line = (
            f"{message}: Killed process {victim.pid} ({victim.comm}) "
            f"total-vm:{mm.total_vm << kb}kB, anon-rss:{rss[1] << kb}kB, "
            f"file-rss:{rss[0] << kb}kB, shmem-rss:{rss[3] << kb}kB, UID:{victim.uid} "
            f"pgtables:{mm.pgtables_bytes >> 10}kB oom_score_adj:{victim.oom_score_adj}"
        )
        self.log.append(line)
        victim.oom_victim = True
        self.victims.append(victim)
        k.vmstat["oom_kill"] += 1
        free_before = k.page_alloc.nr_free_pages()
        victim.kill(SIGKILL)
        if victim.mm is None:
            victim.oom_reaped = True
            return True
        # the allocating task itself: it dies when its system call returns; its own
        # allocation fails now (nothing else to free), which is what it would see
        return k.page_alloc.nr_free_pages() > free_before

    def _panic(self, reason: str) -> None:
        self.log.append(f"Kernel panic - not syncing: {reason}")
        self.kernel.panic(reason)

    # ------------------------------------------------------------------ /proc
    def register_procfs(self, procfs) -> None:
        procfs.register_pid("oom_score", self._read_oom_score)
        procfs.register_pid("oom_score_adj", self._read_oom_score_adj, self._write_oom_score_adj)
        procfs.register_pid("oom_adj", self._read_oom_adj, self._write_oom_adj)

    def _read_oom_score(self, task) -> str:
        return f"{self.task_oom_score(task)}\n"

    @staticmethod
    def _read_oom_score_adj(task) -> str:
        return f"{task.oom_score_adj}\n"

    @staticmethod
    def _parse_int(text: str, name: str, lo: int, hi: int) -> int:
        s = text.strip()
        try:
            v = int(s)
        except ValueError:
            raise ValueError(f"/proc/PID/{name}: {s!r} is not an integer (EINVAL)") from None
        if not lo <= v <= hi:
            raise ValueError(f"/proc/PID/{name}: {v} outside [{lo}, {hi}] (EINVAL)")
        return v

    def _write_oom_score_adj(self, task, text: str) -> None:
        task.oom_score_adj = self._parse_int(text, "oom_score_adj", OOM_SCORE_ADJ_MIN,
                                             OOM_SCORE_ADJ_MAX)

    @staticmethod
    def _read_oom_adj(task) -> str:
        return f"{oom_adj_from_score_adj(task.oom_score_adj)}\n"

    def _write_oom_adj(self, task, text: str) -> None:
        v = self._parse_int(text, "oom_adj", OOM_DISABLE, OOM_ADJUST_MAX)
        task.oom_score_adj = OOM_SCORE_ADJ_MIN if v == OOM_DISABLE else score_adj_from_oom_adj(v)
