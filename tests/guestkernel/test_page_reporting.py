"""Free page reporting as mm/page_reporting.c, on a guest under a hypervisor VM."""

import simpy

from guestkernel.config import KernelConfig
from guestkernel.gfp import __GFP_ZERO, GFP_HIGHUSER
from guestkernel.page import PG_reported
from guestkernel.page_alloc import validate_buddy
from guestkernel.page_reporting import (
    PAGE_REPORTING_CAPACITY,
    PAGE_REPORTING_IDLE,
    PAGE_REPORTING_REQUESTED,
    pageblock_order,
)
from hypervisor.host import Host, HostConfig
from hypervisor.p2m import P2M_BALLOONED, P2M_NONE


def guest(env=None, memory="256MiB"):
    host = Host(HostConfig(memory="1GiB", sharing=False, balloon_policy="tests.hypervisor.test_balloon.FixedPolicyZero",
                           free_page_reporting=True), env=env)
    vm = host.create_vm("a", KernelConfig(memory=memory))
    return host, vm


def backed(vm, pfn, n):
    st = vm.p2m.state
    return sum(1 for p in range(pfn, pfn + n) if st[p] not in (P2M_NONE, P2M_BALLOONED))


def reportable(vm, order):
    """What one pass must report, from page_reporting_process_zone's rules: zones whose
    free pages exceed LOW + 32 blocks of the reporting order; their free blocks of that
    order and above not yet PG_reported. (head pfn, order) pairs and the backed frames."""
    alloc = vm.kernel.page_alloc
    blocks, frames = [], 0
    for zone in alloc.zones:
        if not zone.managed_pages:
            continue
        if zone.nr_free <= zone.low_wmark() + (PAGE_REPORTING_CAPACITY << order):
            continue
        for o in range(order, len(zone.free_area)):
            for page in (p for fl in zone.free_area[o].free_list for p in fl):  # by migratetype
                if not page.flags & PG_reported:
                    blocks.append((page.pfn, o))
                    frames += backed(vm, page.pfn, 1 << o)
    return blocks, frames


def test_pageblock_order_is_the_huge_page_order():
    assert pageblock_order(KernelConfig(memory="256MiB")) == 9  # 2 MiB on x86_64
    assert pageblock_order(KernelConfig(memory="256MiB", arch="i386")) == 10  # 4 MiB, no PAE
    assert pageblock_order(KernelConfig(memory="256MiB", arch="i386", pae=True)) == 9


def test_a_pass_reports_free_blocks_of_pageblock_order_and_the_host_discards_them():
    host, vm = guest()
    k = vm.kernel
    pr = vm.page_reporting
    assert pr.order == 9 and k.page_alloc.page_reporting_order == 9
    assert pr.state == PAGE_REPORTING_REQUESTED  # page_reporting_register's initial flush
    pages = [k.alloc_pages(GFP_HIGHUSER | __GFP_ZERO) for _ in range(8192)]  # 32 MiB, backed
    for p in pages:
        k.free_pages(p)
    k.page_alloc.drain_all_pages()
    blocks, frames = reportable(vm, 9)
    assert frames > 7000  # most of what the guest used is back in large free blocks
    free0 = host.machine.nr_free
    reported = pr.process()
    assert reported == sum(1 << o for _, o in blocks)
    assert pr.reported_blocks == len(blocks) and pr.frames_discarded == frames
    # the host freed the backing of exactly the backed frames of the reported blocks
    assert host.machine.nr_free - free0 == frames == host.reclaimed()["reporting"]
    assert pr.state == PAGE_REPORTING_IDLE
    # ZONE_DMA (16 MiB = 4096 pages) never has LOW + 32 * 512 free pages: not reported
    dma = k.page_alloc.zones[0]
    assert all(not p.flags & PG_reported for o in range(11) for fl in dma.free_area[o].free_list for p in fl)
    # never-backed frames of the reported blocks stay never-backed (nothing to discard)
    assert vm.p2m.nr[P2M_BALLOONED] == frames
    # every block reported is flagged, back on its free list; a second pass finds nothing
    for pfn, _ in blocks:
        assert k.pfn_to_page(pfn).flags & PG_reported
    assert pr.process() == 0
    validate_buddy(k.page_alloc)
    host.validate()


def test_reallocating_a_reported_block_faults_it_back_in():
    host, vm = guest()
    k = vm.kernel
    pages = [k.alloc_pages(GFP_HIGHUSER | __GFP_ZERO) for _ in range(8192)]
    for p in pages:
        k.free_pages(p)
    k.page_alloc.drain_all_pages()
    vm.page_reporting.process()
    credit = host.reclaimed()["reporting"]
    refault0 = vm.balloon_refault
    # the guest allocates again: blocks leave the free lists (PG_reported cleared) and
    # each frame the guest writes is backed by the host again
    again = [k.alloc_pages(GFP_HIGHUSER | __GFP_ZERO) for _ in range(4096)]
    discarded = [p for p in again if vm.p2m.state[p.pfn] != P2M_NONE]
    assert all(not p.flags & PG_reported for p in again)
    refaulted = vm.balloon_refault - refault0
    assert refaulted > 0
    assert host.reclaimed()["reporting"] == credit - refaulted
    assert len(discarded) == len(again)  # every page is backed once written
    validate_buddy(k.page_alloc)
    host.validate()


def test_reports_wait_page_reporting_delay_after_a_request():
    env = simpy.Environment()
    host, vm = guest(env)
    pr = vm.page_reporting
    env.run(until=1.99)
    assert pr.passes == 0  # the initial flush waits 2 s
    env.run(until=2.01)
    assert pr.passes == 1 and pr.state == PAGE_REPORTING_IDLE
    k = vm.kernel
    env.run(until=3.0)
    pages = [k.alloc_pages(GFP_HIGHUSER | __GFP_ZERO) for _ in range(8192)]
    for p in pages:  # frees that make blocks of order >= 9: a request at t = 3
        k.free_pages(p)
    k.page_alloc.drain_all_pages()
    assert pr.state == PAGE_REPORTING_REQUESTED
    env.run(until=4.99)
    assert pr.passes == 1 and host.reclaimed()["reporting"] == 0
    env.run(until=5.01)
    assert pr.passes == 2 and host.reclaimed()["reporting"] > 7000


def test_a_list_is_reported_within_its_budget_and_the_rest_requested_again():
    """page_reporting_cycle: budget = DIV_ROUND_UP(nr_free, 32 * 16) reports per list and
    pass; the report that would go past it sets PAGE_REPORTING_REQUESTED and the next pass
    comes PAGE_REPORTING_DELAY later. 250-odd free order-9 blocks: budget 1, so the
    pass sends two full reports (the second takes the budget to -1), 64 blocks."""
    host, vm = guest(memory="1GiB")
    k = vm.kernel
    alloc = k.page_alloc
    dma32 = next(z for z in alloc.zones if z.name == "DMA32")
    held = []
    while dma32.free_area[9].nr_free + dma32.free_area[10].nr_free:
        page = alloc.alloc_pages(GFP_HIGHUSER, 9)
        if page is None:
            break
        held.append(page)
    for page in held[::2]:  # every other block: their buddies stay allocated, no merging
        alloc.free_pages(page, 9)
    nr = dma32.free_area[9].nr_free
    nr10 = dma32.free_area[10].nr_free  # where the last blocks merged
    assert 200 < nr <= 512 and nr10 < PAGE_REPORTING_CAPACITY
    pr = vm.page_reporting
    pr.process()
    # order 9: two reports of 32; then order 10 (its own budget) fills the scatterlist,
    # whose leftover is reported at the end of the zone
    assert pr.reported_blocks == 2 * PAGE_REPORTING_CAPACITY + nr10
    assert pr.reports == 2 + (nr10 > 0)
    assert pr.state == PAGE_REPORTING_REQUESTED and pr.scheduled
    # the reported blocks went to the tail; the unreported ones are first on the list
    first = next(fl.first() for fl in dma32.free_area[9].free_list if fl)
    assert not first.flags & PG_reported
    pr.process()
    assert pr.reported_blocks == 4 * PAGE_REPORTING_CAPACITY + nr10
    validate_buddy(alloc)


def test_with_init_on_alloc_a_pass_backs_nothing_and_credits_only_backed_frames():
    """page_reporting_cycle takes blocks off the free lists with __isolate_free_page and
    puts them back with __putback_isolated_page: no allocation, so no post_alloc_hook and
    no init_on_alloc zeroing (unlike the balloon's pages). A pass faults no frame in, and
    the host credits exactly the reported frames it had backed: the never-touched rest of
    each block gives back nothing."""
    host = Host(HostConfig(memory="1GiB", sharing=False, balloon_policy="tests.hypervisor.test_balloon.FixedPolicyZero",
                           free_page_reporting=True))
    vm = host.create_vm("a", KernelConfig(memory="256MiB", init_on_alloc=True))
    k = vm.kernel
    pages = [k.alloc_pages(GFP_HIGHUSER) for _ in range(8192)]  # zeroed by init_on_alloc: backed
    for p in pages:
        k.free_pages(p)
    k.page_alloc.drain_all_pages()
    blocks, frames = reportable(vm, 9)
    size = sum(1 << o for _, o in blocks)
    assert frames > 7000 and size > frames  # the blocks also hold never-touched frames
    free0, faults0 = host.machine.nr_free, vm.first_touch + vm.balloon_refault
    assert vm.page_reporting.process() == size
    assert vm.first_touch + vm.balloon_refault == faults0
    assert host.machine.nr_free - free0 == frames == host.reclaimed()["reporting"]
    host.validate()
