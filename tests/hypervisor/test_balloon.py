import simpy

from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_ZERO, GFP_HIGHUSER
from hypervisor.host import Host, HostConfig
from hypervisor.p2m import P2M_BALLOONED, P2M_PRIVATE


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
    backed = {pfn for pfn in range(a.nr_pages) if a.p2m.state[pfn] == P2M_PRIVATE}
    free0 = host.machine.nr_free
    env.run(until=0.25)
    # the controller set the target at t=0; the driver moves 20 pages per 10 ms
    assert a.balloon.target == 1000 and 480 <= a.balloon.actual <= 520
    env.run(until=1.0)
    assert a.balloon.actual == 1000 and k.vmstat["balloon_inflate"] == 1000
    assert a.p2m.nr[P2M_BALLOONED] == 1000
    # only pages the guest had backed give memory back
    took = sum(1 for p in a.balloon.pages if p.pfn in backed)
    assert 0 < took and host.reclaimed()["balloon"] == took
    assert host.machine.nr_free - free0 == took


def test_host_pressure_inflates_balloons_until_free_memory_is_back_in_clear():
    from guestkernel.gfp import __GFP_ZERO as ZERO
    from hypervisor.states import CLEAR, SOFT

    env = simpy.Environment()
    # 160 MiB host = 40960 frames; minFree 4096 frames: clear below 4096 free, soft below 2621
    host = Host(
        HostConfig(memory="160MiB", min_free="16MiB", sharing=False, compression=False,
                   balloon_rate=10_000),
        env=env,
    )
    guests = [host.create_vm(name, KernelConfig(memory="128MiB")) for name in ("a", "b")]
    for vm in guests:
        k = vm.kernel
        pages = [k.alloc_pages(GFP_HIGHUSER | ZERO) for _ in range(19_500)]
        for p in pages:  # used once, then free in the guest but still backed on the host
            k.free_pages(p)
    free0 = host.machine.nr_free
    assert free0 < 2621
    env.run(until=0.5)
    assert host.states.state == SOFT
    env.run(until=6.0)
    # the controller asked for what brings free memory back to 100 % of minFree; the
    # drivers gave back guest pages that were free but backed
    assert host.states.state in (CLEAR, 0) and host.machine.nr_free >= 4096
    assert "soft" in [s for _, s in host.states.log]
    reclaimed = host.reclaimed()["balloon"]
    assert host.machine.nr_free - free0 == reclaimed  # frames really given back
    assert sum(vm.balloon.actual for vm in guests) >= reclaimed  # some were never backed
    assert all(vm.balloon.actual > 0 for vm in guests)  # shared by shares, both equal
    assert host.counters()["nomem_stalls"] == 0
    host.validate()


def test_balloon_grows_past_never_touched_pages_until_the_host_gets_its_frames():
    """A guest with plenty of never-touched free memory: its balloon is handed those pages
    first (they free no host frame), so the controller keeps raising the target until
    the guest gives up page cache, whose frames the host does take back."""
    from guestkernel.filemap import filemap_get_page
    from hypervisor.states import CLEAR, SOFT

    env = simpy.Environment()
    # 96 MiB host = 24576 frames, minFree 16 MiB = 4096: soft below 2621 free
    host = Host(
        HostConfig(memory="96MiB", min_free="16MiB", sharing=False, compression=False),
        env=env,
    )
    guests = [host.create_vm(name, KernelConfig(memory="64MiB")) for name in ("a", "b")]
    for i, vm in enumerate(guests):
        k = vm.kernel
        inode = k.fs.create(f"/data{i}", 11_000 * 4096)
        for index in range(11_000):  # 43 MiB of clean page cache, backed on the host
            filemap_get_page(k, inode, index, 1)
    free0 = host.machine.nr_free
    untouched = sum(vm.p2m.nr[0] for vm in guests)  # guest frames never backed
    assert free0 < 2621 and untouched > 4096
    env.run(until=0.5)
    # soft at t=0: the controller asks for what the host lacks, 4096 - free0 frames
    assert host.states.state == SOFT
    assert sum(vm.balloon_target for vm in guests) == 4096 - free0
    for t in range(1, 16):
        env.run(until=t + 0.5)
        if host.states.state < SOFT:
            break
    assert host.states.state == CLEAR and host.machine.nr_free >= 4096
    reclaimed = host.reclaimed()["balloon"]
    held = sum(vm.balloon.actual for vm in guests)
    assert host.machine.nr_free - free0 == reclaimed > 0  # counted honestly: frames freed
    # the guests' allocators handed over never-touched pages too, which freed nothing:
    # the target was raised past the first request until the frames came back
    assert held > reclaimed and held == sum(vm.balloon_target for vm in guests) > 4096 - free0
    assert sum(vm.kernel.vmstat["nr_file_pages"] for vm in guests) < 22_000  # cache went
    host.validate()
