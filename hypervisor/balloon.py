"""Host side of ballooning: per-VM targets from a policy, handed to the guest drivers.

Collectors -> policy -> controller, as in oVirt MoM: `BalloonController.update` asks the
policy (policy.py: esx-shares, mom, or a dotted path) for one target per VM, caps it at
`max_pct` of the VM's memory (Mem.CtlMaxPercent, default 65 %), ignores changes smaller
than `min_change` pages, and sets `vm.balloon_target` and the guest driver's target
(virtio's num_pages). The guest driver moves toward it at its own rate.

Memory reclaimed by ballooning = pages the balloons hold now whose frames were backed
when the guest released them and before the driver allocated them (per page: VM.release
credits, VM.reuse on deflation takes the credit away). A balloon page the guest had never
touched was never backed and reclaims nothing, even when the guest zeroes it at
allocation (init_on_alloc: the zeroing faults a frame in, the inflation frees it again;
VM.watch_backing). A balloon can hold far more than it reclaims (its size: ESX's
"balloon", MCTLSZ; virtio's `actual`), and the default policy (esx-shares) keeps raising
a VM's target until the frames the host needs come back.

The driver's target is written only when the host changes it (virtio's config change).
With deflate-on-oom a guest may give pages back on its own; the controller then lowers
the VM's target to what the balloon holds and keeps it there until the policy asks for
no more than that (`update`).

Guest statistics come from the stats virtqueue: `StatsPoller` asks every VM for fresh
stats every `stats_interval` (QEMU's guest-stats-polling-interval); policies read the last
answer (`vm.guest_stats()`), stale in between. Without a clock, `update` polls first.
"""

from __future__ import annotations


class BalloonController:
    def __init__(self, host, policy, max_pct: float = 65, min_change: int = 0) -> None:
        if not 0 <= max_pct <= 100:
            raise ValueError(f"balloon max_pct: must be between 0 and 100, got {max_pct}")
        self.host = host
        self.policy = policy
        self.max_pct = max_pct  # percent of a VM's memory a balloon may hold
        self.min_change = min_change  # pages: smaller target changes are ignored
        self.updates = 0
        self.target_changes = 0
        self.oom_respected = 0  # updates that took a guest's deflate-on-oom into account

    def cap(self, vm) -> int:
        """Most pages the VM's balloon may hold: `max_pct` of its memory, and never so
        many that the VM is left below its memory reservation (ESX sched.mem.min)."""
        cap = int(vm.nr_pages * self.max_pct // 100)
        room = vm.nr_pages - getattr(vm, "reservation", 0)
        return cap if cap < room else room

    def update(self) -> list[int]:
        """Recompute and apply every VM's target; returns the targets (pages).

        A guest with VIRTIO_BALLOON_F_DEFLATE_ON_OOM may give pages back on its own (its
        OOM notifier leaks the balloon and writes the smaller `actual`). The controller
        respects that: the VM's target comes down to what the balloon holds, and the
        policy may not raise it above that again until it asks for less itself (the host
        accepted the guest's size)."""
        vms = self.host.vms
        if getattr(self.host, "env", None) is None:
            for vm in vms:  # no clock: each update is a stats poll
                poll = getattr(vm, "poll_stats", None)
                if poll is not None:
                    poll()
        for vm in vms:
            d = vm.balloon
            if d is not None and getattr(d, "gave_back", 0):
                d.gave_back = 0
                vm.balloon_ceiling = d.actual
                if vm.balloon_target > d.actual:
                    vm.balloon_target = d.actual
                    self.target_changes += 1
                self.oom_respected += 1
        targets = self.policy.targets(self.host)
        out = []
        for vm, t in zip(vms, targets, strict=True):
            t = max(0, min(int(t), self.cap(vm)))
            ceiling = getattr(vm, "balloon_ceiling", None)
            if ceiling is not None:
                if t <= ceiling:
                    vm.balloon_ceiling = None  # the policy itself asks for no more
                else:
                    t = ceiling
            if abs(t - vm.balloon_target) > self.min_change or (t == 0 and vm.balloon_target):
                vm.balloon_target = t
                self.target_changes += 1
            d = vm.balloon
            if d is not None and getattr(d, "target", None) != vm.balloon_target:
                d.set_target(vm.balloon_target)  # a config change: num_pages written
            out.append(vm.balloon_target)
        self.updates += 1
        return out

    def sample(self, now: float = 0.0) -> None:
        sample = getattr(self.policy, "sample", None)
        if sample is not None:
            sample(self.host, now)

    def reclaimed(self) -> int:
        """Pages the balloons hold now whose frames were backed when released, and before
        the driver allocated them (pages).

        Per page, as the host knows it from the inflate and deflate queues: a page the
        guest had never touched gives nothing back when ballooned; a page deflated and
        ballooned again without being touched in between is not credited twice.
        """
        return sum(vm.nr_balloon_backed for vm in self.host.vms if vm.balloon is not None)


class StatsPoller:
    """Polls every VM's stats virtqueue every `interval` seconds (SimPy process)."""

    def __init__(self, env, host, interval: float = 5.0) -> None:
        if interval <= 0:
            raise ValueError(f"balloon_stats_interval: must be positive, got {interval}")
        self.env = env
        self.host = host
        self.interval = interval
        self.polls = 0
        self.process = env.process(self._run())

    def _run(self):
        while True:
            for vm in self.host.vms:
                vm.poll_stats()
            self.polls += 1
            yield self.env.timeout(self.interval)


class BalloonControllerDaemon:
    """Updates targets every `interval` s and samples active memory every `sample_period` s."""

    def __init__(self, env, controller: BalloonController, interval=1.0, sample_period=60.0):
        self.env = env
        self.controller = controller
        self.interval = interval
        self.sample_period = sample_period
        self.process = env.process(self._run())

    def _run(self):
        next_sample = 0.0
        while True:
            if self.env.now >= next_sample:
                self.controller.sample(self.env.now)
                next_sample = self.env.now + self.sample_period
            self.controller.update()
            yield self.env.timeout(self.interval)
