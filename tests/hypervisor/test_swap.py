import pytest

from hypervisor.machine import MachineMemory
from hypervisor.p2m import P2M_PRIVATE, P2M_SWAPPED
from hypervisor.swap import HostSwap
from hypervisor.vm import VM

from .helpers import page

LAT = 100e-6
BW = 400 << 20
IO = LAT + 4096 / BW  # seconds per page


def swapped_vm(avoid=False):
    m = MachineMemory(8)
    vm = VM(m, "vm", 4)
    vm.swap = HostSwap(4, latency=LAT, bandwidth=BW)
    vm.avoid_false_reads = avoid
    vm.store(0, page(1))
    assert vm.evict(0, compress=False) == IO
    return m, vm


def test_device_slots_and_costs():
    s = HostSwap(2, latency=LAT, bandwidth=BW)
    assert s.page_io_time == IO
    a, c = s.write(page(1))
    b, _ = s.write(page(2))
    assert (a, b, c) == (0, 1, IO) and s.write(page(3)) == (-1, 0.0) and s.full == 1
    assert s.read(b) == (page(2), IO)
    s.free(a)
    assert s.write(page(4))[0] == 0 and s.nr_used == 2
    with pytest.raises(ValueError):
        HostSwap(1, bandwidth=0)


def test_reading_a_swapped_page_stalls_for_the_device_time():
    m, vm = swapped_vm()
    assert vm.p2m.state[0] == P2M_SWAPPED and m.nr_free == 8
    cost = vm.touch(0, False)
    assert cost == IO + 0.0  # device read; the frame comes from free memory
    assert vm.p2m.state[0] == P2M_PRIVATE and vm.load(0) == page(1)
    assert vm.pswpin == 1 and vm.swap.nr_used == 0


def test_false_swap_read_whole_page_write_reads_first():
    m, vm = swapped_vm()
    assert vm.store(0, page(2)) == IO + vm.fault_cost
    assert vm.false_swap_reads == 1 and vm.stale_swap_reads == 0 and vm.pswpin == 1
    assert vm.load(0) == page(2)


def test_false_swap_read_can_be_avoided():
    m, vm = swapped_vm(avoid=True)
    assert vm.store(0, page(2)) == vm.fault_cost
    assert vm.false_swap_reads == 0 and vm.false_reads_avoided == 1 and vm.pswpin == 0


def test_stale_swap_read_disk_read_into_a_swapped_page():
    m, vm = swapped_vm()
    vm.store(0, page(3), from_disk=True)
    assert vm.stale_swap_reads == 1 and vm.false_swap_reads == 0


def test_silent_swap_write_of_a_page_still_equal_to_its_disk_block():
    m = MachineMemory(8)
    vm = VM(m, "vm", 4)
    vm.swap = HostSwap(4)
    vm.store(0, page(1), from_disk=True)
    vm.store(1, page(2), from_disk=True)
    vm.touch(1, True)  # dirtied by the guest: no longer the disk's copy
    vm.evict(0, compress=False)
    vm.evict(1, compress=False)
    assert vm.silent_swap_writes == 1 and vm.pswpout == 2
