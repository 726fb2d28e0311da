"""Host side of ballooning: per-VM targets from a policy, handed to the guest drivers.

Collectors -> policy -> controller, as in oVirt MoM: `BalloonController.update` asks the
policy (policy.py: esx-shares, mom, or a dotted path) for one target per VM, caps it at
`max_pct` of the VM's memory (Mem.CtlMaxPercent, default 65 %), ignores changes smaller
than `min_change` pages, and sets `vm.balloon_target` and the guest driver's target
(virtio's num_pages). The guest driver moves toward it at its own rate.

Memory reclaimed by ballooning = frames held by balloon drivers that the host took back
(P2M state ballooned). A balloon page the guest had never touched was never backed and
reclaims nothing: a balloon can hold far more than it reclaims, and the default policy
(esx-shares) keeps raising a VM's target until the frames the host needs come back.
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

    def cap(self, vm) -> int:
        return int(vm.nr_pages * self.max_pct // 100)

    def update(self) -> list[int]:
        """Recompute and apply every VM's target; returns the targets (pages)."""
        vms = self.host.vms
        targets = self.policy.targets(self.host)
        out = []
        for vm, t in zip(vms, targets, strict=True):
            t = max(0, min(int(t), self.cap(vm)))
            if abs(t - vm.balloon_target) > self.min_change or (t == 0 and vm.balloon_target):
                vm.balloon_target = t
                self.target_changes += 1
            if vm.balloon is not None:
                vm.balloon.set_target(vm.balloon_target)
            out.append(vm.balloon_target)
        self.updates += 1
        return out

    def sample(self, now: float = 0.0) -> None:
        sample = getattr(self.policy, "sample", None)
        if sample is not None:
            sample(self.host, now)

    def reclaimed(self) -> int:
        """Pages held by balloon drivers whose backing the host took back.

        A page the guest had never touched gives nothing back when ballooned. A driver
        pins its pages, so they stay released while held; releases by other means (free
        page hints) are not counted beyond what the drivers hold.
        """
        total = 0
        for vm in self.host.vms:
            d = vm.balloon
            if d is not None:
                total += min(d.actual, vm.nr_released_backed)
        return total


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
