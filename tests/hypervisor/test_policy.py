import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hypervisor.host import Host, HostConfig
from hypervisor.machine import MachineMemory
from hypervisor.policy import (
    AccessBitVictims,
    ActiveSampler,
    EsxSharesPolicy,
    MomPolicy,
    RandomVictims,
    SampledAccessVictims,
    balloon_policy,
    victim_policy,
)
from hypervisor.states import CLEAR, HARD, HIGH, LOW, SOFT
from hypervisor.vm import VM


def vm_with(touched, size=64):
    vm = VM(MachineMemory(size), "g", size)
    for pfn in touched:
        vm.touch(pfn, True)
    return vm


def test_random_victims_are_distinct_private_frames_and_reproducible():
    vm = vm_with(range(0, 64, 2))
    a = RandomVictims(random.Random(7)).choose(vm, 10)
    b = RandomVictims(random.Random(7)).choose(vm, 10)
    assert a == b and len(set(a)) == 10 and all(p % 2 == 0 for p in a)
    assert sorted(RandomVictims(random.Random(1)).choose(vm, 100)) == list(range(0, 64, 2))


def test_access_bit_victims_spare_recently_touched_frames():
    vm = vm_with(range(8), size=8)
    for pfn in range(8):
        vm.p2m.accessed[pfn] = 0
    vm.touch(1, False)
    vm.touch(2, False)
    pol = AccessBitVictims()
    # frames 0..7 private; 1 and 2 touched: the hand clears their bits and passes on
    assert pol.choose(vm, 3) == [0, 3, 4]
    assert vm.p2m.accessed[1] == 0 and vm.p2m.accessed[2] == 0
    # (victims are not evicted here, so 0 is still an untouched private frame)
    assert pol.choose(vm, 6) == [5, 6, 7, 0, 1, 2]  # second sweep: 1 and 2 are fair game


def test_policies_by_name_and_dotted_path():
    rng = random.Random(0)
    assert isinstance(victim_policy("random", rng), RandomVictims)
    assert isinstance(victim_policy("hypervisor.policy.AccessBitVictims", rng), AccessBitVictims)
    assert isinstance(victim_policy("clock", rng), AccessBitVictims)
    assert isinstance(victim_policy("access-bits", rng), SampledAccessVictims)
    assert isinstance(balloon_policy("mom", rng), MomPolicy)
    with pytest.raises(ValueError, match="unknown policy 'lru'"):
        victim_policy("lru", rng)


def test_idle_tax_price_per_page():
    pol = EsxSharesPolicy(random.Random(0), idle_tax=75)
    # k = 1 / (1 - 0.75) = 4: rho = S / (P (f + k (1 - f)))
    assert pol.rho(100, 100, 1.0) == pytest.approx(1.0)
    assert pol.rho(100, 100, 0.5) == pytest.approx(100 / (100 * (0.5 + 4 * 0.5)))
    assert pol.rho(100, 100, 0.0) == pytest.approx(0.25)
    assert EsxSharesPolicy(random.Random(0), idle_tax=0).rho(100, 100, 0.0) == 1.0


def test_active_sampler_measures_the_touched_fraction():
    vm = vm_with(range(64))
    s = ActiveSampler(random.Random(3), nr=20)
    s.period(vm)
    assert len(s.sample) == 20 and all(vm.p2m.accessed[p] == 0 for p in s.sample)
    touched = set(s.sample[:5])
    for p in touched:
        vm.touch(p, False)
    s.period(vm)
    expected = 5 / 20
    assert s.current == pytest.approx(expected)
    assert s.fast == pytest.approx(1.0 + 0.5 * (expected - 1.0))
    assert s.active == pytest.approx(max(expected, s.fast, s.slow))


class FakeDriver:
    """A guest balloon driver reduced to what the controller reads: pages held."""

    def __init__(self, vm):
        self.vm = vm
        self.target = 0
        self.held: list[int] = []

    @property
    def actual(self):
        return len(self.held)

    def set_target(self, pages):
        self.target = pages

    def give(self, pfns):
        """The guest hands these frames to its balloon (released to the host)."""
        for pfn in pfns:
            self.vm.release(pfn)
            self.held.append(pfn)


def _host_with_two_vms(policy="esx-shares", drivers=True):
    host = Host(HostConfig(memory=f"{1000 * 4096}", min_free=f"{100 * 4096}", balloon_policy=policy))
    vms = []
    for name in ("idle", "busy"):
        vm = host._new_vm(name, 600)
        host._add_vm(vm)
        vms.append(vm)
        if drivers:
            vm.balloon = FakeDriver(vm)
    for vm in vms:
        for pfn in range(475):
            vm.touch(pfn, True)
    return host, vms


def _active(host, vm, fraction):
    s = host.balloon.policy._sampler(vm)
    s.current = s.fast = s.slow = fraction


def test_esx_shares_balloons_the_idle_vm_first():
    host, (idle, busy) = _host_with_two_vms()
    #   machine 1000 frames, minFree 100: clear < 100 free, soft < 64, hard < 32
    #   idle: 475 frames backed (active 0 %), busy: 475 (active 100 %), free 50
    assert host.machine.nr_free == 50
    assert host.check_state() == SOFT
    _active(host, idle, 0.0)
    # need = 100 - 50: what brings free memory back to 100 % of minFree, all from the VM
    # paying least per page (idle pages are taxed: rho = S / (P (f + 4 (1 - f))))
    assert host.balloon.update() == [50, 0]
    assert idle.balloon_target == 50 and idle.balloon.target == 50


def test_esx_shares_raises_the_target_until_the_frames_are_freed():
    host, (idle, busy) = _host_with_two_vms()
    _active(host, idle, 0.0)
    host.check_state()
    assert host.balloon.update() == [50, 0]
    # the guest's allocator hands the balloon 50 frames it never touched: no machine
    # frame comes back, the host is still 50 short, so the target rises by 50
    idle.balloon.give(range(500, 550))
    assert host.machine.nr_free == 50 and host.balloon.reclaimed() == 0
    assert host.check_state() == SOFT
    assert host.balloon.update() == [100, 0]
    # 20 more given: these were backed; 30 still missing on top of the 70 held
    idle.balloon.give(range(20))
    assert host.machine.nr_free == 70 and host.balloon.reclaimed() == 20
    host.check_state()
    assert host.balloon.update() == [100, 0]  # 70 + 30 < 100: the target already set stands
    idle.balloon.give(range(20, 50))
    assert host.machine.nr_free == 100 and host.balloon.reclaimed() == 50
    assert host.check_state() == CLEAR  # back at 100 % of minFree
    assert host.balloon.update() == [100, 0]  # clear: held


def test_esx_shares_targets_follow_what_the_balloon_holds_not_the_vm_size():
    host, (idle, busy) = _host_with_two_vms()
    _active(host, idle, 0.0)
    idle.balloon.give(range(500, 600))  # 100 never-touched frames already ballooned
    idle.balloon_target = 100
    host.check_state()
    assert host.balloon.update() == [150, 0]  # held 100 + the 50 frames still needed


def test_esx_shares_never_exceeds_the_cap_and_spreads_by_price():
    host, (idle, busy) = _host_with_two_vms()
    host.balloon.max_pct = 5  # 30 pages per VM
    host.check_state()
    # equal shares and activity: chunks go to the first of equals until its cap
    assert host.balloon.update() == [30, 20]


def test_esx_shares_holds_targets_in_clear_hard_and_low():
    host, (idle, busy) = _host_with_two_vms()
    idle.balloon_target, busy.balloon_target = 40, 10
    for frees, state in ((80, CLEAR), (20, HARD), (10, LOW)):
        host.states.state = state
        host.machine.nr_free = frees
        assert host.balloon.policy.targets(host) == [40, 10]


def test_esx_shares_deflates_the_surplus_above_400_percent_to_the_richest_vm_first():
    host, (idle, busy) = _host_with_two_vms()
    idle.balloon_target, busy.balloon_target = 100, 40
    for pfn in range(400):  # the idle guest exits its programs: frames free on the host
        idle.release(pfn)
    assert host.machine.nr_free == 450
    assert host.check_state() == HIGH
    # surplus 450 - 400 = 50 frames; idle now consumes 75 frames, busy 475: idle pays
    # the most shares per page and is given memory back first
    assert host.balloon.policy.targets(host) == [50, 40]
    host.machine.nr_free = 400
    assert host.balloon.policy.targets(host) == [100, 40]  # no surplus: held


def test_esx_shares_skips_vms_without_a_balloon_driver():
    host, (a, b) = _host_with_two_vms(drivers=False)
    b.balloon = FakeDriver(b)
    host.check_state()
    assert host.balloon.update() == [0, 50]


def test_mom_shrinks_guests_with_spare_memory_under_pressure_by_at_most_5_percent():
    host, (a, b) = _host_with_two_vms("mom")
    # host free 50 / 1000 = 5 %: pressure (< 20 %), not critical (not < 5 %)
    # guest free (no kernel: untouched frames) 125 of 600; keep 20 % = 120 -> spare 5
    assert host.balloon.update() == [5, 5]
    # with all memory back, guests grow back by 5 % of their size per step
    for vm in (a, b):
        for pfn in range(475):
            vm.release(pfn)
    # ballooned frames are not "free" for an image-less VM; host now 95 % free
    assert host.balloon.update() == [0, 0]


def test_mom_grows_guests_back_without_pressure_ignoring_tiny_changes():
    host = Host(HostConfig(memory=f"{1000 * 4096}", balloon_policy="mom"))
    a = host._new_vm("a", 600)
    host._add_vm(a)
    a.balloon_target = 100  # cur 500: grow by 5 % -> 525
    assert host.balloon.policy.targets(host) == [75]
    a.balloon_target = 1  # cur 599 -> 600 is a change of 1 page < 0.25 % of 599: ignored
    assert host.balloon.policy.targets(host) == [1]


def test_sampled_access_bits_take_untouched_frames_first():
    vm = vm_with(range(64))
    for pfn in range(64):
        vm.p2m.accessed[pfn] = pfn % 2  # odd frames recently touched
    pol = SampledAccessVictims(random.Random(5), factor=4)
    chosen = pol.choose(vm, 8)
    assert len(chosen) == 8 and all(p % 2 == 0 for p in chosen)
    # the sample's bits were cleared: the spared odd frames are now fair game
    sample = RandomVictims(random.Random(5)).choose(vm, 32)
    assert sorted(chosen) == sorted([p for p in sample if p % 2 == 0][:8])
    assert all(vm.p2m.accessed[p] == 0 for p in sample)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), st.floats(0, 1)), min_size=1, max_size=4),
       st.integers(0, 400), st.integers(0, 100))
def test_esx_shares_targets_respect_caps_and_ask_for_what_is_missing(vms, used, cap_pct):
    host = Host(HostConfig(memory=f"{1000 * 4096}", min_free=f"{100 * 4096}"))
    host.balloon.max_pct = cap_pct
    for i, (weight, active) in enumerate(vms):
        vm = host._new_vm(f"v{i}", 300)
        host._add_vm(vm)
        vm.balloon = FakeDriver(vm)
        vm.shares *= weight
        for pfn in range(min(used, 300)):
            vm.touch(pfn, True)
        s = host.balloon.policy._sampler(vm)
        s.current = s.fast = s.slow = active
    state = host.check_state()
    targets = host.balloon.policy.targets(host)
    caps = [host.balloon.cap(vm) for vm in host.vms]
    assert all(0 <= t <= c for t, c in zip(targets, caps, strict=True))
    want = max(0, 100 - host.machine.nr_free) if state == SOFT else 0
    assert sum(targets) == min(want, sum(caps))


def test_idle_tax_converges_to_the_formula_value_after_the_estimate_warms_up():
    # Waldspurger 2002, 5.3: the active fraction is estimated by sampling pages each
    # period; slow and fast moving averages; the estimate used is their maximum, so a VM
    # that goes idle is believed slowly. A guest using a steady quarter of its memory:
    # the estimate starts at 1 (a new VM counts as active), the slow average (gain 0.1)
    # approaches 0.25 as 0.25 + 0.75 * 0.9**n, and the price per page reaches the idle
    # tax formula's rho = S / (P (f + k (1 - f))), k = 1 / (1 - 0.75), at f = 0.25.
    import types

    n = 4096
    vm = vm_with(range(n), size=n)
    active = list(range(0, n, 4))  # every fourth frame: f = 0.25
    pol = EsxSharesPolicy(random.Random(11), idle_tax=75, sample_pages=1000)
    host = types.SimpleNamespace(vms=[vm])
    seen = []
    for _ in range(60):
        pol.sample(host)
        for pfn in active:
            vm.touch(pfn, False)
        seen.append(pol.samplers["g"].active)
    s = pol.samplers["g"]
    assert seen[4] > 0.6  # warming up: five periods in, still mostly "active"
    assert s.slow == pytest.approx(0.25, abs=0.03)
    assert s.active == pytest.approx(0.25, abs=0.05)
    k = 1 / (1 - 0.75)
    formula = vm.shares / (n * (0.25 + k * 0.75))
    assert pol.rho(vm.shares, n, s.active) == pytest.approx(formula, rel=0.06)
