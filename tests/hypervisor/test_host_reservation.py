"""ESX memory reservations (sched.mem.min; `[vm] reservation`): admission control, the
swap file's size, and the floor below which ballooning and host swap never take a VM.

VMware, vSphere Resource Management, "Swap Space and Memory Overcommitment": "You must
reserve swap space for any unreserved virtual machine memory (the difference between the
reservation and the configured memory size) on per-virtual machine swap files"; a
reservation is "a guaranteed lower bound on the amount of physical memory that the host
reserves for the virtual machine"; a VM whose reservation the host cannot guarantee does
not power on (admission control). KVM has no memory reservations.
"""

import pytest

from guestkernel.units import PAGE_SIZE
from hypervisor.host import Host, HostConfig, PowerOnError
from hypervisor.p2m import P2M_PRIVATE, P2M_SWAPPED

from .helpers import page

MIB = 1 << 20
PAGES = MIB // PAGE_SIZE  # pages a MiB


def test_the_swap_file_is_memory_minus_reservation_and_the_reservation_is_admitted():
    # a 128 MiB host with min_free 8 MiB: reservations may take 120 MiB of it
    host = Host(HostConfig(memory="128MiB", swap_size="100MiB", kind="esx", min_free="8MiB"))
    host.create_image_vm("a", 64 * PAGES, reservation=32 * PAGES)
    assert host.swap_reserved == 32 * PAGES  # .vswp = 64 - 32 MiB
    assert host.mem_reserved == 32 * PAGES
    # b's 100 MiB of reservation: 128 - 8 - 32 = 88 MiB of host memory is left unreserved
    with pytest.raises(PowerOnError, match=r"'b' not powered on: its memory reservation needs 100 MiB of "
                                           r"host memory, 88 MiB left unreserved \(host memory less minFree, "
                                           r"8 MiB, and the reservations of powered-on VMs\)"):
        host.create_image_vm("b", 128 * PAGES, reservation=100 * PAGES)
    # a fully reserved VM needs no swap file at all
    host.create_image_vm("c", 88 * PAGES, reservation=88 * PAGES)
    assert host.swap_reserved == 32 * PAGES and host.mem_reserved == 120 * PAGES
    assert [r["vm"] for r in host.not_powered_on] == ["b"]


def test_admission_control_keeps_minfree_out_of_the_reservable_memory():
    # ESX powers a VM on only if its reservation fits in the unreserved memory, which
    # excludes the host's minFree. A 128 MiB host's minFree (states.min_free_bytes: 6 %
    # of the first 4 GB, normalised to 899 MB at 28 GB) is 1961 pages: 30807 of its
    # 32768 pages may be reserved, and a reservation one page larger is refused
    from hypervisor.states import min_free_bytes

    assert min_free_bytes(128 * MIB) // PAGE_SIZE == 1961
    host = Host(HostConfig(memory="128MiB", swap_size="256MiB", kind="esx"))
    with pytest.raises(PowerOnError, match="'big' not powered on: its memory reservation needs"):
        host.create_image_vm("big", 32768, reservation=32768 - 1961 + 1)
    host.create_image_vm("a", 32768, reservation=32768 - 1961)
    assert host.mem_reserved == 30807
    with pytest.raises(PowerOnError, match="'b' not powered on: its memory reservation needs 0.00390625 MiB "
                                           "of host memory, 0 MiB left unreserved"):
        host.create_image_vm("b", 256, reservation=1)
    host.create_image_vm("c", 256)  # (no reservation: only its swap file)


def test_kvm_has_no_memory_reservations():
    host = Host(HostConfig(memory="128MiB", kind="kvm"))
    with pytest.raises(ValueError, match="reservation: a kvm host has no memory reservations"):
        host.create_image_vm("a", 64 * PAGES, reservation=PAGES)
    host.create_image_vm("a", 64 * PAGES)  # (none: as before)


def test_host_swap_never_takes_a_vm_below_its_reservation():
    # two VMs of 256 pages fill a 256-frame host; a has a reservation of 200 pages. The
    # host's reclaim takes what b needs from a only down to a's 200 pages, then from b
    host = Host(HostConfig(memory=f"{256 * PAGE_SIZE}", swap_size=f"{1024 * PAGE_SIZE}", kind="esx",
                           sharing=False, compression=False, ballooning=False))
    a = host.create_image_vm("a", 256, reservation=200)
    b = host.create_image_vm("b", 256)
    for pfn in range(250):
        a.store(pfn, page(pfn))
    for pfn in range(200):
        b.store(pfn, page(1000 + pfn))
        assert a.p2m.nr[P2M_PRIVATE] >= 200
    assert a.p2m.nr[P2M_PRIVATE] == 200 and a.p2m.nr[P2M_SWAPPED] == 50
    assert host.machine.nr_used <= host.machine.nr_frames and host.machine.overdraft_allocs == 0
    assert Host.above_reservation(a) == 0


def test_the_balloon_never_takes_a_vm_below_its_reservation():
    # Mem.CtlMaxPercent caps a balloon at 65 % of the VM; a reservation of 80 % of it
    # caps it at the other 20 %
    host = Host(HostConfig(memory="256MiB", kind="esx"))
    a = host.create_image_vm("a", 100 * PAGES, reservation=80 * PAGES)
    b = host.create_image_vm("b", 100 * PAGES, reservation=10 * PAGES)
    assert host.balloon.cap(a) == 20 * PAGES
    assert host.balloon.cap(b) == 65 * PAGES  # (65 % is the lower cap)


def test_a_reservation_is_configured_reported_and_refused_on_kvm():
    from experiments.config import ConfigError, config_from_dict
    from experiments.metrics import summarize
    from experiments.report import render_markdown
    from experiments.scenario import Scenario

    vm = {"name": "db", "memory": "64MiB", "reservation": "48MiB", "image": "none"}
    cfg = config_from_dict({"host": {"memory": "256MiB", "kind": "esx"}, "vm": [vm]})
    sc = Scenario(cfg, None)
    host = sc.host
    assert host.vm("db").reservation == 48 * PAGES and host.swap_reserved == 16 * PAGES
    summary = summarize(host, sc.workloads, [], 0.0)
    assert summary["vms"]["db"]["reservation_mib"] == 48.0
    assert "Memory reservations (ESX sched.mem.min" in render_markdown({}, summary, [], {}, {})
    with pytest.raises(ConfigError, match=r"vm\[db\].reservation: a kvm host has no memory reservations"):
        config_from_dict({"host": {"kind": "kvm"}, "vm": [vm]})


def test_freeing_held_shared_frames_never_takes_a_vm_below_its_reservation():
    # Host.reclaim_held with no compressed page left frees a shared frame by writing it to
    # the swap of every VM mapping it. a (reservation 16 pages) maps 16 frames, each shared
    # with b; b also maps 10 frames twice itself (two identical pages each). b has the most
    # shared pages and maps a frame shared with a first: writing that one would take a
    # to 15 pages in memory, below its reservation. One of b's own frames goes instead:
    # b's two mappings of it are swapped, a keeps exactly its 16 reserved pages.
    from hypervisor.p2m import P2M_SHARED

    host = Host(HostConfig(memory=f"{64 * PAGE_SIZE}", swap_size=f"{2048 * PAGE_SIZE}", kind="esx",
                           ballooning=False, smart_scan=False, min_free=PAGE_SIZE, compression=False))
    a = host.create_image_vm("a", 256, reservation=16)
    b = host.create_image_vm("b", 256)
    for pfn in range(16):
        a.store(pfn, page(pfn))
        b.store(pfn, page(pfn))
    for _ in range(4):
        host.sharing.scan()
    for i in range(10):
        b.store(100 + i, page(7000 + i))
        b.store(200 + i, page(7000 + i))
    for _ in range(4):
        host.sharing.scan()
    assert a.p2m.nr[P2M_SHARED] == 16 and b.p2m.nr[P2M_SHARED] == 36
    assert host.sharing.pages_shared == 26
    m = host.machine
    c = host.create_image_vm("c", 256)
    pfn = 0
    while m.nr_free > 0:  # the other 38 frames: c's
        c.store(pfn, page(5000 + pfn))
        pfn += 1
    assert pfn == 38
    host.reclaim_held()
    assert a.p2m.nr[P2M_PRIVATE] + a.p2m.nr[P2M_SHARED] == a.reservation == 16
    assert Host.above_reservation(a) == 0 and a.p2m.nr[P2M_SWAPPED] == 0
    assert b.p2m.state[100] == b.p2m.state[200] == P2M_SWAPPED
    assert host.held_shared_swapped == 2 and host.held_frames_freed == 1 and m.nr_free == 1
    assert b.load(100) == b.load(200) == page(7000)
    host.validate()


def test_a_vm_booted_from_an_image_file_has_its_reservation(tmp_path):
    # ESX reserves memory for any VM, whatever backs its guest's memory: a VM whose
    # frames come from a memory image (`[vm] image_file`) is admitted with its
    # reservation and a swap file of its memory less it, and host swap takes its pages
    # only down to the reservation. Image a: 200 pages, reservation 150; then b's 200
    # pages on a 256-frame host: reclaim takes a's 50 unreserved pages (the VM furthest
    # above its target first, host.swap.victim_policy "shares"), then only b's own.
    from experiments.config import config_from_dict
    from experiments.scenario import Scenario

    (tmp_path / "a.raw").write_bytes(b"".join(page(i) for i in range(200)))
    host = Host(HostConfig(memory=f"{256 * PAGE_SIZE}", swap_size=f"{1024 * PAGE_SIZE}", kind="esx",
                           min_free=PAGE_SIZE, sharing=False, compression=False, ballooning=False))
    a = host.create_vm_from_image("a", tmp_path / "a.raw", reservation=150)
    assert a.reservation == 150 and host.mem_reserved == 150 and host.swap_reserved == 50
    b = host.create_image_vm("b", 256)
    for pfn in range(200):
        b.store(pfn, page(1000 + pfn))
    assert a.p2m.nr[P2M_PRIVATE] == 150 and a.p2m.nr[P2M_SWAPPED] == 50
    assert Host.above_reservation(a) == 0 and host.machine.overdraft_allocs == 0
    # from a config: [vm] image_file with a reservation
    vm = {"name": "img", "image_file": str(tmp_path / "a.raw"), "reservation": f"{100 * PAGE_SIZE}B"}
    cfg = config_from_dict({"host": {"memory": "64MiB", "kind": "esx"}, "vm": [vm]})
    sc = Scenario(cfg, None)
    assert sc.host.vm("img").reservation == 100 and sc.host.swap_reserved == 100
