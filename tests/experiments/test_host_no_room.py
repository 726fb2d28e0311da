"""A host with no room left never uses more frames than it has (issue 12 s.3), on both
kinds: ESX reserves each VM's swap file at power-on and refuses a VM it cannot back;
KVM's host OOM killer kills the QEMU process with the highest oom_score."""

import pytest
import simpy

from experiments.config import config_from_dict
from experiments.metrics import summarize
from experiments.report import render_markdown
from experiments.scenario import Scenario
from guestkernel.units import PAGE_SIZE
from hypervisor.host import Host, HostConfig, PowerOnError
from hypervisor.p2m import P2M_NONE, P2M_PRIVATE, P2M_SWAPPED

from ..hypervisor.helpers import page

MIB = 1 << 20


def hogs(kind: str, swap: str) -> dict:
    # three 128 MiB guests whose memory hogs write incompressible data into 90 % of
    # their memory on a 192 MiB host: every technique is on (sharing, ballooning,
    # compression, host swap) and none has enough to take
    return {
        "experiment": {"name": f"no-room-{kind}", "duration": "6s", "seed": 3},
        "host": {"memory": "192MiB", "kind": kind, "swap": {"size": swap}},
        "vm": [{"name": "hog", "count": 3, "memory": "128MiB", "image": "alpine-3.19",
                "workload": {"profile": "memhog", "size": "90%", "rate": "64MiB",
                             "content": "encrypted"}}],
    }


def run_checked(cfg_dict: dict, until: float = 6.0):
    """Run the scenario in 20 ms steps; the machine's used frames at every step."""
    env = simpy.Environment()
    sc = Scenario(config_from_dict(cfg_dict), env)
    sc.start()
    m = sc.host.machine
    peak = 0
    t = 0.0
    while t < until:
        t = round(t + 0.02, 9)
        env.run(until=t)
        peak = max(peak, m.nr_used)
        assert m.nr_used <= m.nr_frames, (t, m.nr_used, m.nr_frames)
    return sc, peak


def test_esx_refuses_to_power_on_a_vm_whose_swap_file_cannot_be_reserved():
    # vSphere Resource Management, "Swap Space and Memory Overcommitment": swap space is
    # reserved for each VM's unreserved memory (configured minus reservation; none
    # here) on its swap file; "Swap File Location": if the file cannot be
    # created the VM cannot power on
    host = Host(HostConfig(memory="256MiB", swap_size="100MiB", kind="esx"))
    host.create_image_vm("a", (64 * MIB) // PAGE_SIZE)
    assert host.swap_reserved == (64 * MIB) // PAGE_SIZE
    with pytest.raises(PowerOnError, match="'b' not powered on: its swap file needs 64 MiB of host "
                                           "swap, 36 MiB left unreserved"):
        host.create_image_vm("b", (64 * MIB) // PAGE_SIZE)
    assert [vm.name for vm in host.vms] == ["a"]
    assert host.not_powered_on == [{"vm": "b", "reason": host.not_powered_on[0]["reason"]}]
    assert host.swap_reserved == (64 * MIB) // PAGE_SIZE  # nothing reserved for b
    host.create_image_vm("c", (36 * MIB) // PAGE_SIZE)  # exactly what is left
    assert host.swap_reserved == host.swap.nr_slots
    # KVM reserves nothing
    kvm = Host(HostConfig(memory="256MiB", swap_size="100MiB", kind="kvm"))
    kvm.create_image_vm("a", (64 * MIB) // PAGE_SIZE)
    kvm.create_image_vm("b", (64 * MIB) // PAGE_SIZE)
    assert kvm.swap_reserved == 0 and not kvm.not_powered_on


def test_kvm_host_oom_killer_kills_the_vm_with_the_highest_oom_score():
    # oom_badness: RSS (private and KSM-shared pages) + swap entries; the highest goes
    # (select_bad_process); an equal score goes to the process created last
    # (oom_evaluate_task replaces the chosen one unless its score is lower)
    host = Host(HostConfig(memory="64MiB", swap_size="64MiB", kind="kvm", sharing=False,
                           compression=False, ballooning=False))
    a = host.create_image_vm("a", 256)
    b = host.create_image_vm("b", 256)
    c = host.create_image_vm("c", 256)
    for pfn in range(30):
        a.store(pfn, page(pfn))
    for pfn in range(20):
        b.store(pfn, page(1000 + pfn))
    for pfn in range(10):
        b.evict(pfn, compress=False)  # 10 on host swap, 10 in frames: 20 points
    for pfn in range(30):
        c.store(pfn, page(2000 + pfn))
    assert [host.oom_badness(v) for v in (a, b, c)] == [30, 20, 30]
    used = host.machine.nr_used
    assert host.host_oom(b) is True
    assert c.dead and not a.dead  # the tie goes to the VM created last
    assert host.machine.nr_used == used - 30
    assert c.p2m.nr[P2M_NONE] == 256
    assert host.host_oom_kills == [{"vm": "c", "time_s": 0.0, "oom_score_pages": 30,
                                    "freed_mib": pytest.approx(30 * PAGE_SIZE / MIB, abs=1e-6),
                                    "requester": "b"}]
    assert host.host_oom(b) is True and a.dead  # next: a (30) over b (20)
    assert b.p2m.nr[P2M_PRIVATE] == 10 and b.p2m.nr[P2M_SWAPPED] == 10
    host.validate()


def test_an_esx_host_with_no_room_never_uses_more_frames_than_it_has():
    # 256 MiB of swap: two 128 MiB VMs' swap files fit, the third is refused; the two
    # powered on always have a swap slot for every page, so machine memory never
    # exceeds the host's however hard their hogs write
    sc, peak = run_checked(hogs("esx", "256MiB"))
    host = sc.host
    names = list(sc.vm_sections)  # in power-on order
    assert [vm.name for vm in host.vms] == names[:2]
    assert [r["vm"] for r in host.not_powered_on] == names[2:]
    assert sc.workloads[names[2]] is None
    assert host.machine.overdraft_allocs == 0 and host.machine.overdraft_peak == 0
    assert host.reclaim_calls > 0  # VMs did find no free frame (and waited for reclaim)
    assert host.swap.pswpout > 0  # the host swapped to make room
    summary = summarize(host, sc.workloads, [], sc.env.now)
    assert summary["not_powered_on"][0]["vm"] == names[2]
    text = render_markdown({}, summary, [], {}, {})
    assert "## VMs not powered on" in text and f"**{names[2]}**" in text


def test_a_kvm_host_with_no_room_never_uses_more_frames_than_it_has():
    # 64 MiB of swap, no reservation: all three power on; when memory and swap are
    # exhausted the host's OOM killer kills a VM and frees its memory instead of
    # overdrawing machine memory
    sc, peak = run_checked(hogs("kvm", "64MiB"))
    host = sc.host
    assert [vm.name for vm in host.vms] == list(sc.vm_sections)
    assert not host.not_powered_on
    assert host.machine.overdraft_allocs == 0 and host.machine.overdraft_peak == 0
    assert host.reclaim_calls > 0
    assert host.host_oom_kills, "no room left: the host OOM killer must have killed a VM"
    for kill in host.host_oom_kills:
        vm = host.vm(kill["vm"])
        assert vm.dead and vm.kernel.panicked
        assert vm.p2m.nr[P2M_NONE] + vm.p2m.nr[6] == vm.nr_pages  # holds nothing (6: ballooned)
        assert sc.workloads[vm.name].dead
    host.validate()
    summary = summarize(host, sc.workloads, [], sc.env.now)
    assert summary["host_oom_kills"] == host.host_oom_kills
    text = render_markdown({}, summary, [], {}, {})
    assert "## VMs killed by the host's OOM killer" in text


def full_of_held_frames(kind: str):
    """A 64-frame host whose every frame holds shared or compressed pages, no private
    frame anywhere: VMs a and b map the same 24 pages (merged by ksmd: 24 shared
    frames); a's further pages are compressed (half-compressible: two to a frame) in
    pfn order until memory is full."""
    from hypervisor.p2m import P2M_COMPRESSED, P2M_SHARED

    from ..hypervisor.helpers import half_compressible_page

    host = Host(HostConfig(memory=f"{64 * PAGE_SIZE}", swap_size=f"{2048 * PAGE_SIZE}", kind=kind,
                           ballooning=False, smart_scan=False, min_free=PAGE_SIZE, zip_max_pct=100))
    a = host.create_image_vm("a", 256)
    b = host.create_image_vm("b", 256)
    c = host.create_image_vm("c", 256)
    m = host.machine
    for pfn in range(24):
        a.store(pfn, page(pfn))
        b.store(pfn, page(pfn))
    while a.p2m.nr[P2M_SHARED] < 24:
        host.sharing.scan()
    order = []
    pfn = 24
    while m.nr_free > 0:
        a.store(pfn, half_compressible_page(pfn))
        assert a.evict(pfn, swap=False) >= 0.0
        order.append(pfn)
        pfn += 1
    assert m.nr_free == 0 and a.p2m.nr[P2M_PRIVATE] == b.p2m.nr[P2M_PRIVATE] == 0
    assert a.p2m.nr[P2M_SHARED] == b.p2m.nr[P2M_SHARED] == 24
    assert a.p2m.nr[P2M_COMPRESSED] == len(order)
    return host, a, b, c, order


@pytest.mark.parametrize("kind", ["esx", "kvm"])
def test_a_host_whose_frames_are_all_compressed_or_shared_frees_them_to_swap_not_overdraws(kind):
    # issue 12 s.3: no private frame is left to compress or swap, so nothing the usual
    # reclaim takes frees a frame. The allocating VM waits while the compression cache's
    # age-based replacement writes the oldest compressed pages to swap until a cache
    # frame is empty (ESX: "the oldest compressed page is decompressed and written to
    # swap"); machine memory never exceeds the host's, and nobody is OOM-killed
    host, a, b, c, order = full_of_held_frames(kind)
    m = host.machine
    for i in range(20):
        c.store(i, page(9000 + i))
        assert m.nr_used <= m.nr_frames
    assert m.overdraft_allocs == 0 and c.nomem_stalls == 0 and not host.host_oom_kills
    # the pages that went to swap are a's oldest compressed ones, in the order compressed
    swapped = [p for p in order if a.p2m.state[p] == P2M_SWAPPED]
    assert swapped == order[:len(swapped)] and host.held_zip_swapped == len(swapped) > 0
    host.validate()


def test_a_shared_frame_is_written_to_each_sharers_swap_when_nothing_else_frees_a_frame():
    # Host.reclaim_held with no compressed page left: the frame the VM with the most
    # shared pages maps first (a's pfn 0, shared with b) is written to the swap of both
    # VMs mapping it (each .vswp holds its own VM's pages) and freed; both read it back
    host = Host(HostConfig(memory=f"{64 * PAGE_SIZE}", swap_size=f"{2048 * PAGE_SIZE}", kind="esx",
                           ballooning=False, smart_scan=False, min_free=PAGE_SIZE, compression=False))
    a = host.create_image_vm("a", 256)
    b = host.create_image_vm("b", 256)
    for pfn in range(24):
        a.store(pfn, page(pfn))
        b.store(pfn, page(pfn))
    while a.p2m.nr[2] < 24:  # (P2M_SHARED)
        host.sharing.scan()
    m = host.machine
    c = host.create_image_vm("c", 256)
    pfn = 0
    while m.nr_free > 0:  # the other 40 frames: c's (reclaim_held leaves private frames to evict)
        c.store(pfn, page(5000 + pfn))
        pfn += 1
    assert host.sharing.pages_shared == 24 and pfn == 40
    host.reclaim_held()
    assert a.p2m.state[0] == b.p2m.state[0] == P2M_SWAPPED
    assert [p for p in range(24) if a.p2m.state[p] == P2M_SWAPPED] == [0]
    assert host.held_shared_swapped == 2 and host.held_frames_freed == 1
    assert m.nr_free == 1 and host.sharing.pages_shared == 23
    assert a.load(0) == b.load(0) == page(0)
    host.validate()
