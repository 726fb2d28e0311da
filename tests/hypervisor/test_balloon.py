import pytest
import simpy

from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_ZERO, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE
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


class FixedPolicyZero(FixedPolicy):
    pages = 0


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
    # the guest uses (and backs) 3000 user pages, then frees them: they stay backed on the
    # host (movable, as anonymous memory is; a 6.x balloon asks for movable pages too)
    pages = [k.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_ZERO) for _ in range(3000)]
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
    # each guest uses and frees as many pages as leave ~1950 frames free on the host, in
    # the soft band (the guests' own kernel memory, backed since issue 12, counts first)
    per_guest = (host.machine.nr_free - 1950) // 2
    for vm in guests:
        k = vm.kernel
        pages = [k.alloc_pages(GFP_HIGHUSER | ZERO) for _ in range(per_guest)]
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
    # without watermark boosting and proactive compaction: kcompactd (woken after a
    # boosted kswapd pass, or by the fragmentation score of the guests' scattered free
    # pages) would migrate page cache, and each copy backs a fresh frame, a host cost
    # outside the balance this test pins
    guests = [host.create_vm(name, KernelConfig(memory="64MiB", watermark_boost_factor=0,
                                                compaction_proactiveness=0))
              for name in ("a", "b")]
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


def _backed(vm):
    from hypervisor.p2m import P2M_NONE

    return {pfn for pfn in range(vm.nr_pages) if vm.p2m.state[pfn] not in (P2M_NONE, P2M_BALLOONED)}


def test_balloon_credit_is_per_page_held_now_and_backed_when_released():
    """Issue 12's scenario: inflate 2000 pages, deflate, let kernel allocations take them,
    inflate again. virtio's inflateq and deflateq name every page (MUST_TELL_HOST), so the
    host credits the balloon with the pages it holds now whose release took a frame back:
    a page deflated and re-ballooned without being touched in between gives nothing."""

    host = Host(HostConfig(memory="256MiB", sharing=False, balloon_policy=POLICY))
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    k, d = a.kernel, a.balloon
    pages = [k.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_ZERO) for _ in range(2000)]
    for p in pages:  # user pages backed on the host, then free in the guest
        k.free_pages(p)
    backed = _backed(a)
    d.set_target(2000)
    d.step(2000)
    first = {p.pfn for p in d.pages}
    credited_first = first & backed
    assert host.reclaimed()["balloon"] == len(credited_first) > 0
    d.set_target(0)
    d.step(2000)
    assert host.reclaimed()["balloon"] == 0  # deflated: the balloon holds nothing
    # user allocations (movable, as the balloon's pages are) take the deflated pages back; 267 of them are written (backed
    # again), the rest stay untouched; all are freed
    taken = [k.alloc_pages(GFP_HIGHUSER_MOVABLE) for _ in range(2000)]
    assert {p.pfn for p in taken} == first  # the allocator hands the deflated pages out first
    for p in taken[:267]:
        a.store(p.pfn, bytes([1]) * 4096)
    for p in taken:
        k.free_pages(p)
    backed = _backed(a)
    free0 = host.machine.nr_free
    d.set_target(2000)
    d.step(2000)
    second = {p.pfn for p in d.pages}
    credited = host.reclaimed()["balloon"]
    assert credited == len(second & backed) == host.machine.nr_free - free0
    written = {p.pfn for p in taken[:267]}
    untouched = (second & first) - written  # deflated, re-ballooned, never backed between
    assert len(untouched) > 500
    assert all(a.p2m.released_backed[pfn] == 0 for pfn in untouched)
    assert all(a.p2m.released_backed[pfn] == 1 for pfn in second & written)
    # no credit survives deflation: every credited page is in the balloon now
    assert a.nr_released_backed == a.nr_balloon_backed == credited
    # the old rule, min(balloon size, releases that took a frame and were not touched
    # since), counted the first inflation's frames again
    survived = len(credited_first - written)
    assert min(2000, survived + credited) > credited
    host.validate()


def test_controller_respects_what_a_deflate_on_oom_guest_gave_back():
    """virtio_balloon_oom_notify leaks 256 pages and writes `actual`; the driver's work is
    not queued again until the host changes num_pages. The controller takes the guest's
    size as the VM's target and does not set the old target again every second."""
    env = simpy.Environment()
    host = Host(
        HostConfig(memory="256MiB", sharing=False, balloon_policy=POLICY,
                   balloon_deflate_on_oom=True),
        env=env,
    )
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    env.run(until=1.5)
    d = a.balloon
    assert d.actual == 1000 and a.balloon_target == 1000
    assert a.kernel.page_alloc.oom_hook(0, 0, 0) is True  # the guest is about to OOM
    assert d.actual == 744 and d.oom_deflated == 256
    env.run(until=5.5)
    assert a.balloon_target == 744 and d.target == 744 and d.actual == 744
    assert host.balloon.oom_respected == 1
    # the host accepts the guest's size once its policy asks for no more than that
    FixedPolicy.pages = 500
    try:
        env.run(until=6.5)
        assert a.balloon_ceiling is None and a.balloon_target == 500 and d.actual == 500
        FixedPolicy.pages = 1000
        env.run(until=7.5)
        assert a.balloon_target == 1000 and d.actual == 1000
    finally:
        FixedPolicy.pages = 1000


def test_host_reads_guest_stats_when_it_polls_them_stale_in_between():
    """The stats virtqueue is answered when the host asks (stats_request ->
    stats_handle_request), every balloon_stats_interval: in between, the host sees the
    last answer."""
    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", sharing=False, balloon_policy=POLICY + "Zero",
                           balloon_stats_interval="5s"), env=env)
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    k = a.kernel
    env.run(until=0.5)
    polled = a.guest_stats()
    assert polled["free"] == k.page_alloc.nr_free_pages()
    assert polled["total"] == k.page_alloc.totalram_pages()
    held = [k.alloc_pages(GFP_HIGHUSER) for _ in range(3000)]
    k.vmstat["oom_kill"] = 1
    env.run(until=4.9)
    assert a.guest_stats() == polled  # stale: no poll since t = 0
    assert a.guest_stats()["oom_kills"] == 0
    env.run(until=5.1)
    now = a.guest_stats()
    assert now["free"] == k.page_alloc.nr_free_pages() and now["free"] < polled["free"] - 2900
    assert now["oom_kills"] == 1 and a.stats_polls == 2
    assert len(held) == 3000


# ---- what ballooning gives back: frames backed before the driver allocated the page
# (fill_balloon: balloon_page_alloc, then tell_host on the inflateq; with init_on_alloc
# post_alloc_hook -> kernel_init_pages zeroes the page first, which makes the host back
# a never-touched frame that the inflation frees again: a fault, and nothing given back)


def _inflate(init_on_alloc, n, prepare=None):
    """A 64 MiB 6.x guest on a 256 MiB host; `prepare(vm)` runs first; then the driver
    inflates by `n` pages. Returns (vm, frames backed before, balloon pfns, host frames
    freed by the inflation, host faults it cost)."""
    host = Host(HostConfig(memory="256MiB", sharing=False, balloon_policy=POLICY))
    a = host.create_vm("a", KernelConfig(memory="64MiB", init_on_alloc=init_on_alloc))
    if prepare is not None:
        prepare(a)
    backed = _backed(a)
    free0, faults0 = host.machine.nr_free, a.first_touch + a.balloon_refault
    a.balloon.set_target(a.balloon.actual + n)
    assert a.balloon.step(n) == n
    host.validate()
    return (a, host, backed, {p.pfn for p in a.balloon.pages},
            host.machine.nr_free - free0, a.first_touch + a.balloon_refault - faults0)


@pytest.mark.parametrize("init_on_alloc", [False, True])
def test_ballooned_never_touched_free_pages_give_back_nothing(init_on_alloc):
    """A fresh guest's free memory was never touched: the balloon's 1000 pages free no
    host frame, so the balloon is credited with none, whether or not the guest zeroes
    them at allocation. With init_on_alloc each zeroing is a host fault (1000), and the
    release frees that frame again (released_alloc_backed); ESX's balloon size (MCTLSZ,
    virtio's `actual`) is the 1000 pages held either way."""
    a, host, backed, pfns, freed, faults = _inflate(init_on_alloc, 1000)
    assert not pfns & backed  # the allocator handed over never-touched pages
    assert host.reclaimed()["balloon"] == a.nr_balloon_backed == 0
    assert freed == 0
    assert a.balloon.actual == 1000 and a.p2m.nr[P2M_BALLOONED] == 1000
    assert faults == (1000 if init_on_alloc else 0)
    assert a.released_alloc_backed == (1000 if init_on_alloc else 0)
    assert a.counters()["balloon_actual"] == 1000 and a.counters()["balloon_backed"] == 0
    # summary.json's per-VM figures: ESX's balloon size and target against what it gave back
    from experiments.metrics import vm_balloon_figures

    assert vm_balloon_figures(a) == {"size_mib": 1000 / 256, "target_mib": 0.0, "reclaimed_mib": 0.0,
                                     "alloc_backed": 1000 if init_on_alloc else 0}


@pytest.mark.parametrize("init_on_alloc", [False, True])
def test_ballooned_touched_then_freed_pages_give_back_exactly_their_count(init_on_alloc):
    """64 user pages written (backed on the host), then freed: they wait on the per-CPU
    list (free_unref_page: list_add at its head), where the balloon's next 64 movable
    allocations find them (rmqueue_pcplist: from the head). Each frees a host frame: the
    balloon is credited with exactly 64, and zeroing an already backed page costs no host
    fault."""
    def prepare(a):
        k = a.kernel
        pages = [k.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_ZERO) for _ in range(64)]
        prepare.pfns = {p.pfn for p in pages}
        for p in pages:
            k.free_pages(p)

    a, host, backed, pfns, freed, faults = _inflate(init_on_alloc, 64, prepare)
    assert pfns == prepare.pfns <= backed
    assert host.reclaimed()["balloon"] == a.nr_balloon_backed == 64
    assert freed == 64 and faults == 0 and a.released_alloc_backed == 0


@pytest.mark.parametrize("init_on_alloc", [False, True])
def test_a_reported_page_ballooned_moves_its_credit_to_the_balloon(init_on_alloc):
    """64 written-then-freed pages reported free (the host discarded their frames:
    credited to free page reporting), then ballooned. Without init_on_alloc the balloon
    takes the released frames as they are; with it, post_alloc_hook's zeroing faults each
    back in and the inflation frees it again. Either way no host frame changes hands, and
    the credit moves to the balloon (the technique holding the page now): 64 and 0."""
    from guestkernel.physmem import RELEASE_REPORTED

    def prepare(a):
        k = a.kernel
        pages = [k.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_ZERO) for _ in range(64)]
        prepare.pfns = {p.pfn for p in pages}
        for p in pages:
            k.free_pages(p)
        for pfn in prepare.pfns:
            assert a.release(pfn, RELEASE_REPORTED) == 1
        assert a.nr_reported_backed == 64

    a, host, backed, pfns, freed, faults = _inflate(init_on_alloc, 64, prepare)
    assert pfns == prepare.pfns and not pfns & backed
    assert host.reclaimed()["balloon"] == 64 and host.reclaimed()["reporting"] == 0
    assert freed == 0 and faults == (64 if init_on_alloc else 0)
    assert a.released_alloc_backed == 0
