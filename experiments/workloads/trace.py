"""The `trace` profile: replays an strace log in simulated time.

The log's memory, process and IPC calls are applied to the guest by the strace replayer
(experiments/replay.py), `batch` calls per step, each step taking `batch * call_time /
speed` seconds (strace without -tt records no times: calls are spread evenly). With
`touch`, every successful writable anonymous mmap and brk growth is touched as the program
would after obtaining it, so the trace's memory is really used. With `root`, the program
starts as uid 0 with every capability (a trace recorded as root). Work: calls replayed.
"""

from __future__ import annotations

from ..replay import Call, Replayer, parse_trace
from .base import Workload

CALL_TIME = 1e-3  # seconds per replayed call at speed 1
BATCH = 20


class TraceWorkload(Workload):
    name = "trace"
    unit = "calls"

    def run(self):
        p = self.params
        with open(p.path) as fh:
            trace = parse_trace(fh)
        self.findings: list[str] = []
        rep = Replayer(self.kernel, out=self.findings.append)
        rep.root = p.root  # (the executables and addresses always come from the trace)
        rep.prepare(trace)
        cost = 0.0
        n = 0
        for event in trace.events:
            if self.dead:
                return
            stall0 = self.kernel.take_stall()
            rep.apply(event)
            if p.touch and isinstance(event, Call):
                cost += self._touch_result(rep, event)
            cost += self.kernel.take_stall()
            self.kernel.stall += stall0
            n += 1
            self.work_done += 1
            if n % BATCH == 0:
                self.stall += cost
                yield self.wait(BATCH * CALL_TIME / p.speed + cost)
                cost = 0.0
        rep.finish()
        self.stall += cost
        yield self.wait(cost)

    def _touch_result(self, rep: Replayer, call: Call) -> float:
        """Touch the memory a successful anonymous writable mmap or a brk growth made."""
        if call.ret is None or call.ret.failed:
            return 0.0
        task = rep.task_of(call.pid)
        if task is None or task.mm is None:
            return 0.0
        if call.name == "mmap" and len(call.args) >= 4:
            if "MAP_ANONYMOUS" in call.args[3] and "PROT_WRITE" in call.args[2]:
                try:
                    length = int(call.args[1], 0)
                except ValueError:
                    return 0.0
                return task.access_range(call.ret.value, length, True, None)
        return 0.0
