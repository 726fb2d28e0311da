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
from hypervisor.states import SOFT
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


def _host_with_two_vms(policy="esx-shares"):
    host = Host(HostConfig(memory=f"{1000 * 4096}", min_free=f"{100 * 4096}", balloon_policy=policy))
    vms = []
    for name in ("idle", "busy"):
        vm = host._new_vm(name, 600)
        host._add_vm(vm)
        vms.append(vm)
    for vm in vms:
        for pfn in range(475):
            vm.touch(pfn, True)
    return host, vms


def test_esx_shares_balloons_the_idle_vm_first():
    host, (idle, busy) = _host_with_two_vms()
    assert host.machine.nr_free == 50
    assert host.check_state() == SOFT
    pol = host.balloon.policy
    pol._sampler(idle).current = pol._sampler(idle).fast = pol._sampler(idle).slow = 0.0
    # 50 pages short of the clear threshold (100 % of minFree = 100 free frames)
    assert host.balloon.update() == [50, 0]
    assert idle.balloon_target == 50


def test_esx_shares_never_exceeds_the_cap_and_spreads_by_price():
    host, (idle, busy) = _host_with_two_vms()
    host.balloon.max_pct = 5  # 30 pages per VM
    host.check_state()
    assert host.balloon.update() == [30, 20]


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
