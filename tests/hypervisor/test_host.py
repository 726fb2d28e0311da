"""Host wiring and process tests in simulated time."""

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_ZERO, GFP_KERNEL
from guestkernel.physmem import ZERO_PAGE
from guestkernel.units import PAGE_SIZE
from hypervisor.host import Host, HostConfig
from hypervisor.p2m import P2M_COMPRESSED, P2M_PRIVATE, P2M_SHARED, P2M_SWAPPED
from hypervisor.states import CLEAR, HARD, HIGH, LOW, SOFT
from hypervisor.vm import ImageError

from .helpers import half_compressible_page, page, random_page


def image(tmp_path, name, pages):
    path = tmp_path / name
    path.write_bytes(b"".join(pages))
    return path


def test_config_parses_units_and_names_bad_keys():
    cfg = HostConfig(memory="64MiB", swap_latency="80us", swap_size="1MiB")
    assert cfg.memory == 64 << 20 and cfg.swap_latency == pytest.approx(80e-6)
    assert cfg.to_dict()["salting"] == "none" and cfg.to_dict()["idle_tax"] == 75
    assert HostConfig(**cfg.to_dict()).to_dict() == cfg.to_dict()  # resolved config reloads
    with pytest.raises(ValueError, match="^salting:"):
        HostConfig(salting="global")
    with pytest.raises(ValueError, match="^memory:"):
        HostConfig(memory="12KiB")
    with pytest.raises(ValueError, match="victim_policy: unknown policy"):
        Host(HostConfig(victim_policy="lru"))
    with pytest.raises(ValueError, match="balloon_policy: cannot load"):
        Host(HostConfig(balloon_policy="nosuch.module.Policy"))


def test_two_identical_images_converge_in_simulated_time(tmp_path):
    n = 50
    pages = [page(i) for i in range(n)]
    env = simpy.Environment()
    host = Host(HostConfig(memory="4MiB", pages_to_scan=10, sleep_millisecs=20), env=env)
    host.create_vm_from_image("a", image(tmp_path, "a.raw", pages))
    host.create_vm_from_image("b", image(tmp_path, "b.raw", pages))
    free0 = host.machine.nr_free
    # 100 pages at 10 per 20 ms: one full pass takes ~0.2 s; merges happen in pass 2
    env.run(until=0.15)
    assert host.sysfs.read("/sys/kernel/mm/ksm/pages_sharing") == "0\n"
    env.run(until=1.0)
    read = host.sysfs.read
    assert read("/sys/kernel/mm/ksm/pages_shared") == f"{n}\n"
    assert read("/sys/kernel/mm/ksm/pages_sharing") == f"{n}\n"
    assert int(read("/sys/kernel/mm/ksm/full_scans")) >= 2
    assert host.machine.nr_free == free0 + n
    assert host.reclaimed()["sharing"] == n
    assert read("/sys/kernel/mm/hvsim/reclaimed_sharing") == f"{n}\n"


def test_sysfs_writes_tunables_like_linux():
    host = Host(HostConfig(memory="1MiB"))
    host.sysfs.write("/sys/kernel/mm/ksm/pages_to_scan", "500\n")
    assert host.sharing.pages_to_scan == 500
    with pytest.raises(ValueError, match="between 2"):
        host.sysfs.write("/sys/kernel/mm/ksm/max_page_sharing", "1")
    with pytest.raises(PermissionError):
        host.sysfs.write("/sys/kernel/mm/ksm/pages_shared", "1")
    with pytest.raises(FileNotFoundError, match="no such file"):
        host.sysfs.read("/sys/kernel/mm/ksm/nonsense")
    assert "pages_volatile" in host.sysfs.listdir("/sys/kernel/mm/ksm")
    vm = host._new_vm("g", 4)
    host._add_vm(vm)
    vm.touch(0, True)
    assert host.sysfs.listdir("/sys/kernel/mm/hvsim/vms") == ["g"]
    assert host.sysfs.read("/sys/kernel/mm/hvsim/vms/g/first_touch") == "1\n"
    assert host.sysfs.read("/sys/kernel/mm/hvsim/vms/g/p2m_private") == "1\n"
    assert "p2m_none" in host.sysfs.listdir("/sys/kernel/mm/hvsim/vms/g/")
    with pytest.raises(FileNotFoundError, match="no such VM"):
        host.sysfs.read("/sys/kernel/mm/hvsim/vms/h/first_touch")


def test_guests_booted_on_the_host_share_their_zeroed_pages():
    host = Host(HostConfig(memory="512MiB", max_page_sharing=256))
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    b = host.create_vm("b", KernelConfig(memory="64MiB"))
    assert a.kernel.phys is a and b.kernel.name == "b"
    for vm in (a, b):
        for _ in range(100):
            assert vm.kernel.alloc_pages(GFP_KERNEL | __GFP_ZERO) is not None
    # whatever else boot backed, the 200 zeroed pages are among the zero pages
    zero = sum(
        1 for vm in (a, b) for pfn in range(vm.nr_pages)
        if vm.p2m.state[pfn] == P2M_PRIVATE and vm.load(pfn) == ZERO_PAGE
    )
    assert zero >= 200
    host.sharing.full_pass()
    host.sharing.full_pass()
    ksm = host.sharing
    dups = zero // 256 + (1 if zero % 256 >= 2 else 0)
    assert ksm.pages_shared >= dups and ksm.pages_sharing >= zero - dups - 1
    ksm.validate()


def test_full_machine_reclaims_by_compression_then_swap_without_stalling():
    host = Host(HostConfig(memory=f"{64 * PAGE_SIZE}", swap_size="1MiB", reclaim_batch=4))
    vm = host.vms and None
    vm = host._new_vm("g", 200)
    host._add_vm(vm)
    for pfn in range(100):
        data = half_compressible_page(pfn) if pfn % 2 else random_page(pfn, "g")
        vm.store(pfn, data)
    assert host.machine.nr_free >= 0 and host.machine.overdraft_allocs == 0
    assert host.reclaim_calls > 0 and vm.nomem_stalls == 0
    nr = vm.p2m.nr
    assert nr[P2M_COMPRESSED] > 0 and nr[P2M_SWAPPED] > 0
    assert nr[P2M_PRIVATE] + nr[P2M_COMPRESSED] + nr[P2M_SWAPPED] == 100
    # every page still reads back what was stored
    for pfn in range(100):
        data = half_compressible_page(pfn) if pfn % 2 else random_page(pfn, "g")
        assert vm.load(pfn) == data
    host.machine.validate()


def test_nothing_reclaimable_stalls_and_is_reported():
    # (admission_control off: an ESX host would refuse this VM, its swap file does not fit)
    host = Host(HostConfig(memory=f"{16 * PAGE_SIZE}", swap_size=0, compression=False,
                           admission_control=False))
    vm = host._new_vm("g", 32)
    host._add_vm(vm)
    for pfn in range(20):
        vm.touch(pfn, True)
    assert vm.nomem_stalls == 4 and host.counters()["nomem_stalls"] == 4
    assert host.machine.overdraft_allocs == 4
    assert host.sysfs.read("/sys/kernel/mm/hvsim/overdraft_allocs") == "4\n"


def test_reading_a_swapped_page_stalls_the_vm_for_the_device_time():
    env = simpy.Environment()
    host = Host(HostConfig(memory="1MiB", swap_latency="5ms", swap_bandwidth="4MiB", compression=False), env=env)
    vm = host._new_vm("g", 8)
    host._add_vm(vm)
    vm.store(0, random_page(1, "x"))
    vm.evict(0, compress=False)
    log = []

    def guest():
        yield env.timeout(1.0)
        cost = vm.touch(0, False)
        yield env.timeout(cost)
        log.append((env.now, vm.p2m.state[0] == P2M_PRIVATE))

    env.process(guest())
    env.run(until=2)
    io = 5e-3 + PAGE_SIZE / (4 << 20)
    assert log == [(pytest.approx(1.0 + io), True)]


def test_states_change_as_free_memory_crosses_the_thresholds():
    env = simpy.Environment()
    # 1000 frames, minFree 100 frames: high >= 100 free, clear < 100, soft < 64,
    # hard < 32 (the monitor swaps back up to 64 free), low < 16
    host = Host(
        HostConfig(memory=f"{1000 * PAGE_SIZE}", min_free=f"{100 * PAGE_SIZE}", swap_size="8MiB",
                   compression=False, reclaim_rate=10, sharing=False, ballooning=False),
        env=env,
    )
    vm = host._new_vm("g", 2000)
    host._add_vm(vm)
    seen = []

    def guest():
        pfn = 0
        for free_goal in (150, 90, 50, 20):
            while host.machine.nr_free > free_goal:
                vm.touch(pfn, True)
                pfn += 1
            yield env.timeout(1.0)
            seen.append(host.states.state)

    env.process(guest())
    env.run(until=4.5)
    # at t=1..4 the monitor saw free 150, 90, 50, 20
    assert seen[:3] == [HIGH, CLEAR, SOFT]
    assert seen[3] == HARD
    # in hard the monitor swaps out at most 10 frames a second, back up to 64 free:
    # t=4..7 10 each, t=8 the last 4. A page being written still occupies its frame
    # until its write completes: the monitor looks again when the device has written
    # the 4 pages (one request: the latency, then each page's transfer), finds 64 free
    # and the state rises to soft
    sw = host.swap
    io = sw.latency + 4 * PAGE_SIZE / sw.bandwidth
    env.run(until=8 + io * 0.9)
    assert host.pages_evicted == 44 and host.machine.nr_free == 60
    assert host.swap.nr_inflight == 4 and host.states.name == "hard"
    env.run(until=8.5)
    assert host.machine.nr_free == 64 and host.swap.nr_inflight == 0
    assert host.states.log == [(2, "clear"), (3, "soft"), (4, "hard"), (pytest.approx(8 + io), "soft")]
    res = host.state_residence()
    assert res == {"high": 2.0, "clear": 1.0, "soft": pytest.approx(1.0 + 0.5 - io),
                   "hard": pytest.approx(4.0 + io), "low": 0.0}


def test_low_state_blocks_allocating_vms():
    host = Host(HostConfig(memory=f"{1000 * PAGE_SIZE}", min_free=f"{100 * PAGE_SIZE}", admission_control=False,
                           swap_size=0, compression=False, low_state_stall="2ms"))
    vm = host._new_vm("g", 2000)
    host._add_vm(vm)
    for pfn in range(990):
        vm.touch(pfn, True)
    assert host.check_state() == LOW
    assert vm.touch(995, True) == pytest.approx(vm.fault_cost + 2e-3)
    assert vm.low_state_stalls == 1


def test_bad_image_is_a_one_line_error(tmp_path):
    host = Host(HostConfig(memory="1MiB"))
    p = tmp_path / "x.raw"
    p.write_bytes(b"\0" * 100)
    with pytest.raises(ImageError, match="not a multiple"):
        host.create_vm_from_image("x", p)
    assert host.vms == []


def test_large_pages_are_not_shared_until_broken(tmp_path):
    host = Host(HostConfig(memory="8MiB", large_pages=True, min_free="64KiB"))
    a = host._new_vm("a", 512)
    b = host._new_vm("b", 512)
    host._add_vm(a)
    host._add_vm(b)
    for vm in (a, b):
        for pfn in range(4):
            vm.store(pfn, page(pfn))
    host.sharing.full_pass()
    host.sharing.full_pass()
    # ESX: subpages of a large page are hashed (hashes kept ready) but never shared
    assert host.sharing.pages_sharing == 0 and host.sharing.rmap_items == 8
    assert host.sharing.pages_unshared == 0
    n = a.break_large_pages() + b.break_large_pages()
    assert n == 2
    # the hashes were ready: one pass after the break merges (no two-visit wait)
    host.sharing.full_pass()
    assert host.sharing.pages_sharing == 4 and a.p2m.state[0] == P2M_SHARED
    host.validate()


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["store", "write", "read", "release", "evict", "scan", "state"]),
            st.integers(0, 23),
            st.integers(0, 4),
        ),
        max_size=80,
    )
)
def test_frames_slots_and_counters_add_up_under_random_activity(ops):
    contents = [ZERO_PAGE, page(1), page(2), half_compressible_page(1), random_page(1, "r")]
    # 16 frames for 24 guest pages: synchronous reclaim, compression, swap and, once
    # swap is full, overdraft all happen
    host = Host(HostConfig(memory=f"{16 * PAGE_SIZE}", swap_size=f"{6 * PAGE_SIZE}", admission_control=False,
                           zip_max_pct=50, reclaim_batch=2, max_page_sharing=3,
                           use_zero_pages=True, min_free=f"{4 * PAGE_SIZE}"))
    vms = []
    for name in ("a", "b"):
        vm = host._new_vm(name, 12)
        host._add_vm(vm)
        vms.append(vm)
    for op, pfn, c in ops:
        vm = vms[pfn % 2]
        pfn %= 12
        if op == "store":
            vm.store(pfn, contents[c], from_disk=c == 4)
        elif op == "write":
            vm.touch(pfn, True)
        elif op == "read":
            vm.touch(pfn, False)
        elif op == "release":
            vm.release(pfn)
        elif op == "evict":
            if vm.p2m.state[pfn] == P2M_PRIVATE:
                vm.evict(pfn, compress=c % 2 == 0)
        elif op == "scan":
            host.sharing.scan(c * 4 + 1)
        else:
            host.check_state()
        host.validate()
    for vm in vms:
        for pfn in range(12):
            vm.touch(pfn, True)
    host.validate()


def test_two_booted_guests_with_the_same_image_pages_converge_in_simulated_time():
    env = simpy.Environment()
    host = Host(HostConfig(memory="256MiB", pages_to_scan=1000, sleep_millisecs=10,
                           ballooning=False), env=env)
    a = host.create_vm("a", KernelConfig(memory="64MiB"))
    b = host.create_vm("b", KernelConfig(memory="64MiB"))
    n = 64
    where = {}
    for vm in (a, b):
        k = vm.kernel
        pfns = []
        for i in range(n):  # the same "OS image" pages loaded into each guest
            p = k.alloc_pages(GFP_KERNEL)
            vm.store(p.pfn, page(1000 + i))
            pfns.append(p.pfn)
        where[vm.name] = pfns
    env.run(until=1.0)
    assert host.sharing.full_scans >= 2
    for pa, pb in zip(where["a"], where["b"], strict=True):
        assert a.p2m.state[pa] == b.p2m.state[pb] == P2M_SHARED
        assert a.p2m.mpn[pa] == b.p2m.mpn[pb]
    assert host.sharing.pages_sharing >= n
    assert a.counters()["p2m_shared"] >= n and host.counters()["first_touch"] >= 2 * n
    host.validate()


def test_a_victim_identical_to_a_stable_page_is_shared_instead_of_swapped():
    host = Host(HostConfig(memory=f"{64 * PAGE_SIZE}", swap_size="1MiB", compression=False,
                           victim_policy="clock", smart_scan=False))
    a = host._new_vm("a", 8)
    b = host._new_vm("b", 8)
    host._add_vm(a)
    host._add_vm(b)
    for vm in (a, b):
        vm.store(0, page(1))
    host.sharing.full_pass()
    host.sharing.full_pass()
    assert host.sharing.pages_sharing == 1
    b.store(1, page(1))  # a new copy the scanner has not seen yet
    b.store(2, random_page(2, "b"))
    for pfn in (1, 2):
        b.p2m.accessed[pfn] = 0
    done, cost = host.evict(2)
    # the clock takes pfns 1 and 2 of b: the copy of page(1) joins the stable frame
    assert done == 2 and host.shared_before_swap == 1 and host.pages_evicted == 1
    assert b.p2m.state[1] == P2M_SHARED and b.p2m.state[2] == P2M_SWAPPED
    assert host.sharing.pages_sharing == 2 and host.swap.pswpout == 1
    host.validate()
