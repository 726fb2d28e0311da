import simpy

from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_ZERO, GFP_HIGHUSER
from hypervisor.host import Host, HostConfig
from hypervisor.p2m import P2M_BALLOONED


class FixedPolicy:
    """A user policy loaded by dotted path: every VM's balloon gets `pages`."""

    pages = 1000

    def __init__(self, rng):
        self.rng = rng

    def targets(self, host):
        return [self.pages for _ in host.vms]


POLICY = "tests.hypervisor.test_balloon.FixedPolicy"


def test_controller_caps_targets_at_65_percent_of_vm_memory():
    host = Host(HostConfig(memory="128MiB", balloon_policy=POLICY))
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    FixedPolicy.pages = 10**6
    try:
        assert host.balloon.update() == [a.nr_pages * 65 // 100]
    finally:
        FixedPolicy.pages = 1000
    assert a.balloon.target == a.balloon_target == 16384 * 65 // 100


def test_inflation_in_simulated_time_gives_guest_frames_back_to_the_host():
    env = simpy.Environment()
    host = Host(
        HostConfig(memory="256MiB", balloon_policy=POLICY, balloon_rate=2000, sharing=False),
        env=env,
    )
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    k = a.kernel
    # the guest uses (and backs) 3000 pages, then frees them: they stay backed on the host
    pages = [k.alloc_pages(GFP_HIGHUSER | __GFP_ZERO) for _ in range(3000)]
    for p in pages:
        k.free_pages(p)
    backed = a.nr_resident
    env.run(until=0.25)
    # the controller set the target at t=0; the driver moves 20 pages per 10 ms
    assert a.balloon.target == 1000 and 480 <= a.balloon.actual <= 520
    env.run(until=1.0)
    assert a.balloon.actual == 1000
    assert a.p2m.nr[P2M_BALLOONED] == 1000 and host.reclaimed()["balloon"] == 1000
    assert k.vmstat["balloon_inflate"] == 1000
    # the guest's allocator handed out its hot, already-backed free pages first
    assert a.nr_resident <= backed
