"""Pluggable host policies, chosen by name or by dotted path ("package.module.Class").

Victim choice (which private frames the host compresses or swaps):

    random        uniformly random private frames (ESX: it knows nothing of guest use)
    access-bits   sampled accessed bits: of 4n random private frames, untouched ones
                  first (the sample's bits are cleared)
    clock         a clock over all accessed bits: a frame touched since the hand last
                  passed is spared (its bit cleared), an untouched one is taken

    interface:    choose(vm, n) -> list of up to n PFNs in state P2M_PRIVATE

Balloon targets (pages each VM's balloon should hold, before the controller's cap):

    esx-shares    ESX share-based allocation with the idle memory tax (Waldspurger 2002):
                  in the soft state, what the host lacks (minFree - free frames) is
                  reclaimed from the VM with the fewest shares per page,
                  rho = S / (P * (f + k (1 - f))), k = 1 / (1 - tau), P the pages it
                  uses; the active fraction f is estimated by sampling accessed bits (100
                  pages per period). Target = balloon held + share, raised every update
                  while the host is short (never-touched balloon pages free nothing);
                  above 400 % of minFree the surplus is given back
    mom           oVirt MoM's balloon rules: under host pressure (free < 20 %, critical
                  < 5 %) shrink guests that have more than 20 % free, by at most 5 % of
                  their memory per step (twice that when critical); otherwise grow them
                  back by 5 %; ignore changes under 0.25 %

    interface:    targets(host) -> list of pages, one per host.vms; optional
                  sample(host, now) called every sample_period seconds
"""

from __future__ import annotations

import importlib

from .p2m import P2M_COMPRESSED, P2M_PRIVATE, P2M_SHARED, P2M_SWAPPED
from .states import CLEAR, ENTER_PCT, EXIT_PCT, HIGH, SOFT

# -- victim choice ---------------------------------------------------------------------------


class RandomVictims:
    name = "random"

    def __init__(self, rng) -> None:
        self.rng = rng

    def choose(self, vm, n: int) -> list[int]:
        p2m = vm.p2m
        state = p2m.state
        n = min(n, p2m.nr[P2M_PRIVATE])
        out: list[int] = []
        if n <= 0:
            return out
        seen = set()
        size = vm.nr_pages
        rand = self.rng.randrange
        tries = 8 * n + 64
        while len(out) < n and tries:
            tries -= 1
            pfn = rand(size)
            if state[pfn] == P2M_PRIVATE and pfn not in seen:
                seen.add(pfn)
                out.append(pfn)
        if len(out) < n:
            # sparse VM: finish with a sweep from a random start
            start = rand(size)
            for i in range(size):
                pfn = (start + i) % size
                if state[pfn] == P2M_PRIVATE and pfn not in seen:
                    seen.add(pfn)
                    out.append(pfn)
                    if len(out) == n:
                        break
        return out


class SampledAccessVictims:
    """Sample `factor * n` random private frames; take the untouched ones first.

    The accessed bits of the sampled frames are cleared, so a frame spared now is taken
    next time unless the guest touches it meanwhile.
    """

    name = "access-bits"

    def __init__(self, rng, factor: int = 4) -> None:
        self.rng = rng
        self.factor = factor
        self._random = RandomVictims(rng)

    def choose(self, vm, n: int) -> list[int]:
        sample = self._random.choose(vm, self.factor * n)
        accessed = vm.p2m.accessed
        cold = [pfn for pfn in sample if not accessed[pfn]]
        hot = [pfn for pfn in sample if accessed[pfn]]
        for pfn in sample:
            accessed[pfn] = 0
        return (cold + hot)[:n]


class AccessBitVictims:
    name = "clock"

    def __init__(self, rng=None) -> None:
        self._hand: dict[str, int] = {}

    def choose(self, vm, n: int) -> list[int]:
        p2m = vm.p2m
        state = p2m.state
        accessed = p2m.accessed
        size = vm.nr_pages
        n = min(n, p2m.nr[P2M_PRIVATE])
        out: list[int] = []
        hand = self._hand.get(vm.name, 0)
        steps = 2 * size  # two sweeps: the first clears bits, the second finds victims
        while len(out) < n and steps:
            steps -= 1
            pfn = hand
            hand = hand + 1 if hand + 1 < size else 0
            if state[pfn] != P2M_PRIVATE:
                continue
            if accessed[pfn]:
                accessed[pfn] = 0
                continue
            out.append(pfn)
        self._hand[vm.name] = hand
        return out


VICTIM_POLICIES = {
    "random": RandomVictims,
    "access-bits": SampledAccessVictims,
    "clock": AccessBitVictims,
}


# -- balloon targets -------------------------------------------------------------------------


class ActiveSampler:
    """ESX's active-memory estimate for one VM: sample `nr` frames per period.

    At the start of a period `nr` random frames have their accessed bit cleared; at its
    end the fraction found touched again is this period's estimate. The estimate used is
    the largest of that, a fast and a slow moving average (ESX takes the max so that a
    VM ramping up is seen at once and a VM going idle is believed slowly).

    Waldspurger, "Memory Resource Management in VMware ESX Server" (OSDI 2002), s5.3:
    estimates are smoothed over periods with a slow and a fast exponentially weighted
    moving average "with different gain parameters", and a version of the fast one that
    counts the current period; the maximum is used. The gains are not published (nor in
    VMware's documentation, which says only that estimates "respond rapidly to increases
    ... and more slowly to decreases"): `fast_gain` 0.5 and `slow_gain` 0.1 are hvsim's
    assumption (`[host.balloon] fast_gain`, `slow_gain`). Each average moves by its gain
    times (this period's fraction - the average); starting at 1.0 (a new VM counts as
    active), an idle VM's estimate after p periods is max(0.5^p, 0.9^p) = 0.9^p.
    """

    def __init__(self, rng, nr: int = 100, fast_gain: float = 0.5, slow_gain: float = 0.1) -> None:
        self.rng = rng
        self.nr = nr
        self.fast_gain = fast_gain
        self.slow_gain = slow_gain
        self.sample: list[int] = []
        self.current = 1.0  # fraction active, last period (a new VM counts as active)
        self.fast = 1.0
        self.slow = 1.0

    @property
    def active(self) -> float:
        return max(self.current, self.fast, self.slow)

    def period(self, vm) -> None:
        """End the running period (if any) and start the next one."""
        if self.sample:
            acc = vm.p2m.accessed
            touched = sum(1 for pfn in self.sample if acc[pfn])
            self.current = touched / len(self.sample)
            self.fast += self.fast_gain * (self.current - self.fast)
            self.slow += self.slow_gain * (self.current - self.slow)
        size = vm.nr_pages
        self.sample = self.rng.sample(range(size), min(self.nr, size))
        acc = vm.p2m.accessed
        for pfn in self.sample:
            acc[pfn] = 0


class EsxSharesPolicy:
    """Share-based balloon targets with the idle memory tax (`idle_tax` %, default 75)."""

    name = "esx-shares"

    def __init__(self, rng, idle_tax: float = 75, sample_pages: int = 100, chunk: int = 256,
                 fast_gain: float = 0.5, slow_gain: float = 0.1):
        if not 0 <= idle_tax < 100:
            raise ValueError(f"idle_tax: must be in [0, 100) percent, got {idle_tax}")
        self.rng = rng
        self.idle_tax = idle_tax  # percent
        self.sample_pages = sample_pages  # frames sampled per VM per period
        self.chunk = chunk  # pages reassigned per step of the allocation
        self.samplers: dict[str, ActiveSampler] = {}
        self.fast_gain = fast_gain  # ActiveSampler's moving averages (hvsim's assumption)
        self.slow_gain = slow_gain

    def _sampler(self, vm) -> ActiveSampler:
        s = self.samplers.get(vm.name)
        if s is None:
            s = self.samplers[vm.name] = ActiveSampler(self.rng, self.sample_pages, self.fast_gain,
                                                       self.slow_gain)
        return s

    def sample(self, host, now: float = 0.0) -> None:
        for vm in host.vms:
            self._sampler(vm).period(vm)

    def rho(self, shares: float, pages: int, active: float) -> float:
        """Shares per page, idle pages charged k = 1/(1 - tau) times an active one."""
        k = 1.0 / (1.0 - self.idle_tax / 100.0)
        return shares / (max(pages, 1) * (active + k * (1.0 - active)))

    def targets(self, host) -> list[int]:
        """Balloon targets (pages) from what the host must free and what each VM consumes.

        soft    the host must free `need` = minFree (the clear threshold) - free
                frames. ESX reclaims them from the VMs whose consumption exceeds their
                entitlement: min-funding revocation takes `chunk` after `chunk` from the
                VM paying the least per page (rho, over the pages it uses: backed,
                compressed, swapped). A VM's target becomes what its balloon holds + what
                it must give (never lower than the target already set). A balloon page
                the guest had never touched frees no frame, so the host stays short and
                the next update raises the target again: the balloon grows until the
                machine memory needed is freed. (Pages already on host swap are not
                counted: many are pages the guest has since freed, which it never reads
                back.)
        high    free memory is above 400 % of minFree: balloons give back the surplus,
                to the VMs with the most shares per page first
        clear   targets held (hysteresis between the two)
        hard, low   ballooning stops: targets held (the drivers still reach them)
        """
        vms = host.vms
        current = [vm.balloon_target for vm in vms]
        states = host.states
        state = states.state
        free = host.machine.nr_free
        if state == SOFT:
            need = states.pages_at(ENTER_PCT[CLEAR]) - free
            if need <= 0:
                return current
            held = [vm.balloon.actual if vm.balloon is not None else 0 for vm in vms]
            room = [
                max(0, host.balloon.cap(vm) - h) if vm.balloon is not None else 0
                for vm, h in zip(vms, held, strict=True)
            ]
            used = [self.pages_used(vm) for vm in vms]
            take = self._revoke(vms, used, room, need, cheapest=True)
            return [
                max(cur, h + t) for cur, h, t in zip(current, held, take, strict=True)
            ]
        if state == HIGH and any(current):
            surplus = free - states.pages_at(EXIT_PCT[CLEAR])
            if surplus <= 0:
                return current
            pages = [vm.nr_resident for vm in vms]
            give = self._revoke(vms, pages, current, surplus, cheapest=False)
            return [cur - g for cur, g in zip(current, give, strict=True)]
        return current

    @staticmethod
    def pages_used(vm) -> int:
        """Guest pages a VM uses that the host holds: backed (private or shared),
        compressed or on host swap."""
        nr = vm.p2m.nr
        return nr[P2M_PRIVATE] + nr[P2M_SHARED] + nr[P2M_COMPRESSED] + nr[P2M_SWAPPED]

    def _revoke(self, vms, pages, room, total, cheapest: bool) -> list[int]:
        """Split `total` pages over VMs in chunks, each chunk to the VM with the lowest
        (cheapest=True: take from it) or highest (False: give to it) shares per page;
        VM i takes at most room[i]. `pages[i]`: machine frames VM i consumes now."""
        active = [self._sampler(vm).active for vm in vms]
        shares = [vm.shares for vm in vms]
        out = [0] * len(vms)
        chunk = max(self.chunk, total // 64)
        sign = -1 if cheapest else 1
        while total > 0:
            best = -1
            best_rho = 0.0
            for i in range(len(vms)):
                if out[i] >= room[i]:
                    continue
                # a VM consumes fewer frames after giving (more after getting) memory back
                r = self.rho(shares[i], pages[i] + sign * out[i], active[i])
                if best < 0 or (r < best_rho if cheapest else r > best_rho):
                    best, best_rho = i, r
            if best < 0:
                break
            step = min(chunk, total, room[best] - out[best])
            out[best] += step
            total -= step
        return out


class MomPolicy:
    """oVirt MoM balloon rules (fractions of memory)."""

    name = "mom"

    def __init__(
        self,
        rng=None,
        pressure_threshold: float = 0.20,
        critical_threshold: float = 0.05,
        min_guest_free: float = 0.20,
        max_change: float = 0.05,
        min_change: float = 0.0025,
    ) -> None:
        self.pressure_threshold = pressure_threshold  # host free fraction: pressure below
        self.critical_threshold = critical_threshold  # host free fraction: critical below
        self.min_guest_free = min_guest_free  # fraction of its memory a guest keeps free
        self.max_change = max_change  # largest change per step, fraction of guest memory
        self.min_change = min_change  # smaller changes are ignored, fraction

    def targets(self, host) -> list[int]:
        machine = host.machine
        host_free = machine.nr_free / machine.nr_frames
        out = []
        for vm in host.vms:
            size = vm.nr_pages
            cur = size - vm.balloon_target  # memory the guest may use now, pages
            if host_free < self.pressure_threshold:
                free = vm.guest_stats()["free"]
                spare = free - self.min_guest_free * cur
                step = self.max_change * cur
                if host_free < self.critical_threshold:
                    step *= 2
                new = cur - min(spare, step) if spare > 0 else cur
            else:
                new = min(size, cur + self.max_change * cur)
            if abs(new - cur) < self.min_change * cur:
                new = cur
            out.append(size - int(new))
        return out


BALLOON_POLICIES = {"esx-shares": EsxSharesPolicy, "mom": MomPolicy}


def load_policy(name: str, table: dict, what: str):
    """The class for `name` in `table`, or imported from a dotted path."""
    if name in table:
        return table[name]
    if "." not in name and ":" not in name:
        raise ValueError(
            f"{what}: unknown policy {name!r} (choose {', '.join(table)} or a dotted path)"
        )
    mod, _, attr = name.replace(":", ".").rpartition(".")
    try:
        cls = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{what}: cannot load policy {name!r}: {e}") from None
    return cls


def victim_policy(name: str, rng):
    return load_policy(name, VICTIM_POLICIES, "victim_policy")(rng)


def balloon_policy(name: str, rng, **kwargs):
    return load_policy(name, BALLOON_POLICIES, "balloon_policy")(rng, **kwargs)
