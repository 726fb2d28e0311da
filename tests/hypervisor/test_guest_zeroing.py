"""A guest kernel's page zeroing and copying on its fault and allocation paths is CPU on
the vCPU that does it, `page_zero_cost` a 4 KiB zeroing and `page_copy_cost` a 4 KiB copy
(HostConfig; measured together: tests/data/hostcpu/page_costs.json), as khugepaged's is.

Linux 6.1, one place per kernel function:
- post_alloc_hook -> kernel_init_pages -> clear_highpage, for want_init_on_alloc(gfp)
  (__GFP_ZERO or init_on_alloc) unless want_init_on_free(): on x86_64 a demand-zero fault's
  page (do_anonymous_page: alloc_zeroed_user_highpage_movable is GFP_HIGHUSER_MOVABLE |
  __GFP_ZERO), a copy-on-write of the zero page (wp_page_copy), page tables
  (pte_alloc_one: GFP_PGTABLE_USER has __GFP_ZERO);
- free_pages_prepare -> kernel_init_pages, for want_init_on_free() (init_on_free=1);
- clear_huge_page: the 512 subpages of a THP fault (__do_huge_pmd_anonymous_page);
- copy_user_highpage: a copy-on-write break of an anonymous page (__wp_page_copy_user).
A read fault in an anonymous VMA maps the shared zero page: nothing is zeroed.

What a burst's cost holds beyond the stalls counted beneath the guest (vm.stall_time) is
the task's CPU on its vCPU (experiments/workloads/base.py Workload.wait: cpu = total -
held - io), so each test checks both the counters and that part of the returned cost.
"""

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from hypervisor.host import Host, HostConfig

ZERO = 3e-6  # page_zero_cost, seconds (set apart from the copy's to tell them apart)
COPY = 7e-6  # page_copy_cost, seconds
BASE = 0x40000000  # 2 MiB- (and 1 GiB-) aligned
HUGE = 2 << 20
N = 100  # pages


def _vm(thp: str = "never", **kernel):
    host = Host(HostConfig(memory="512MiB", sharing=False, compression=False, ballooning=False,
                           page_copy_cost=COPY, page_zero_cost=ZERO))
    vm = host.create_vm("g", KernelConfig(memory="256MiB", thp_enabled=thp, **kernel),
                        balloon=False)
    t = vm.kernel.spawn("t")
    # 4 MiB: the first page (touched here) sets up the anon_vma and the page tables down
    # to the PTE table of the first 2 MiB; the tests fault the rest
    t.mmap(BASE, 2 * HUGE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.access(BASE, True)
    return vm, t


class Delta:
    """The VM's zeroing and copying CPU and its stalls since it was made."""

    def __init__(self, vm):
        self.vm = vm
        self.zero0, self.copy0, self.stall0 = vm.zero_cpu, vm.copy_cpu, vm.stall_time

    @property
    def zero(self):
        return self.vm.zero_cpu - self.zero0

    @property
    def copy(self):
        return self.vm.copy_cpu - self.copy0

    def cpu(self, cost):
        """The part of a returned cost that is the task's CPU (not a stall beneath it)."""
        return cost - (self.vm.stall_time - self.stall0)


def test_a_first_touch_write_fault_costs_the_vcpu_page_zero_cost():
    # do_anonymous_page (write): alloc_zeroed_user_highpage_movable -> __GFP_ZERO ->
    # post_alloc_hook -> kernel_init_pages: one clear_page a fault, on the faulting vCPU
    vm, t = _vm()
    d = Delta(vm)
    f0 = vm.kernel.vmstat["fault_demand_zero"]
    cost = t.access_range(BASE + 4096, N * 4096, True)
    assert vm.kernel.vmstat["fault_demand_zero"] - f0 == N
    assert d.zero == pytest.approx(N * ZERO)
    assert d.copy == 0.0
    assert d.cpu(cost) == pytest.approx(N * ZERO)
    # the per-page path (Task.access, do_page_fault -> do_anonymous_page) charges the same
    d = Delta(vm)
    cost = sum(t.access(BASE + (1 + N + i) * 4096, True, b"x") for i in range(N))
    assert d.zero == pytest.approx(N * ZERO)
    assert d.cpu(cost) == pytest.approx(N * ZERO)


def test_a_read_fault_of_the_zero_page_costs_no_zeroing():
    # do_anonymous_page (read): the shared zero page mapped read-only, no allocation
    vm, t = _vm()
    d = Delta(vm)
    f0 = vm.kernel.vmstat["fault_zero_page"]
    cost = t.access_range(BASE + 4096, N * 4096, False)
    assert vm.kernel.vmstat["fault_zero_page"] - f0 == N
    assert d.zero == 0.0 and d.copy == 0.0
    assert d.cpu(cost) == pytest.approx(0.0, abs=1e-15)


def test_a_thp_fault_costs_512_zeroings_and_its_deposited_page_table():
    # __do_huge_pmd_anonymous_page: clear_huge_page zeroes the 512 subpages
    # (clear_user_highpage each), and pte_alloc_one's table deposited for a later split
    # is a __GFP_ZERO allocation: 513 page zeroings; the PMD table over the second 2 MiB
    # exists already (the first page's fault made it)
    vm, t = _vm(thp="madvise")
    t.madvise(BASE + HUGE, HUGE, U.MADV_HUGEPAGE)
    d = Delta(vm)
    a0 = vm.kernel.vmstat["thp_fault_alloc"]
    cost = t.access(BASE + HUGE, True)
    assert vm.kernel.vmstat["thp_fault_alloc"] - a0 == 1
    assert d.zero == pytest.approx((512 + 1) * ZERO)
    assert d.copy == 0.0
    assert d.cpu(cost) == pytest.approx((512 + 1) * ZERO)


def test_a_copy_on_write_break_costs_page_copy_cost():
    # wp_page_copy of an anonymous page shared with a fork's child: a new page (not
    # zeroed: GFP_HIGHUSER_MOVABLE) and copy_user_highpage; the child's page tables were
    # made by the fork
    vm, t = _vm()
    t.access_range(BASE + 4096, N * 4096, True)
    child = vm.kernel.tasks[t.fork()]
    d = Delta(vm)
    c0 = vm.kernel.vmstat["fault_cow"]
    cost = child.access_range(BASE + 4096, N * 4096, True)
    assert vm.kernel.vmstat["fault_cow"] - c0 == N
    assert d.copy == pytest.approx(N * COPY)
    assert d.zero == 0.0
    assert d.cpu(cost) == pytest.approx(N * COPY)


def test_a_write_to_the_zero_page_costs_a_zeroing_not_a_copy():
    # wp_page_copy: is_zero_pfn -> alloc_zeroed_user_highpage_movable (__GFP_ZERO)
    vm, t = _vm()
    t.access_range(BASE + 4096, N * 4096, False)
    d = Delta(vm)
    c0 = vm.kernel.vmstat["fault_cow"]
    cost = t.access_range(BASE + 4096, N * 4096, True)
    assert vm.kernel.vmstat["fault_cow"] - c0 == N
    assert d.zero == pytest.approx(N * ZERO)
    assert d.copy == 0.0
    assert d.cpu(cost) == pytest.approx(N * ZERO)


def test_init_on_free_zeroes_on_free_and_not_again_at_allocation():
    # free_pages_prepare: want_init_on_free() -> kernel_init_pages as a page is freed;
    # post_alloc_hook: init = !want_init_on_free() && want_init_on_alloc(gfp), so the
    # __GFP_ZERO of a demand-zero fault zeroes nothing more
    vm, t = _vm(init_on_free=True)
    k = vm.kernel
    d = Delta(vm)
    cost = t.access_range(BASE + 4096, N * 4096, True)
    assert d.zero == 0.0
    assert d.cpu(cost) == pytest.approx(0.0, abs=1e-15)
    ptes = t.mm.pgtable.ptes
    pfns = [ptes[(BASE >> 12) + 1 + i] >> 12 for i in range(N)]
    assert all(k.phys.load(p) != bytes(4096) for p in pfns)  # written
    free0 = k.vmstat["pgfree"]
    d = Delta(vm)
    assert t.madvise(BASE + 4096, N * 4096, U.MADV_DONTNEED) == 0  # zap: the N pages freed
    assert k.vmstat["pgfree"] - free0 == N
    assert d.zero == pytest.approx(N * ZERO)
    assert all(k.phys.load(p) == bytes(4096) for p in pfns)


def test_init_on_alloc_zeroes_every_allocation():
    # post_alloc_hook: want_init_on_alloc(gfp) with init_on_alloc=1 zeroes a page even
    # without __GFP_ZERO: a copy-on-write break's page is zeroed, then copied
    vm, t = _vm(init_on_alloc=True)
    t.access_range(BASE + 4096, N * 4096, True)
    child = vm.kernel.tasks[t.fork()]
    d = Delta(vm)
    cost = child.access_range(BASE + 4096, N * 4096, True)
    assert d.zero == pytest.approx(N * ZERO)
    assert d.copy == pytest.approx(N * COPY)
    assert d.cpu(cost) == pytest.approx(N * (ZERO + COPY))


def test_the_costs_charged_are_the_configs():
    # consistency check: with the defaults, a demand-zero fault charges HostConfig's
    # page_zero_cost and a copy-on-write break its page_copy_cost
    cfg = HostConfig()
    host = Host(HostConfig(memory="512MiB", sharing=False, compression=False, ballooning=False))
    vm = host.create_vm("g", KernelConfig(memory="256MiB", thp_enabled="never"), balloon=False)
    t = vm.kernel.spawn("t")
    t.mmap(BASE, HUGE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    t.access(BASE, True)
    d = Delta(vm)
    t.access_range(BASE + 4096, N * 4096, True)
    assert d.zero == pytest.approx(N * cfg.page_zero_cost)
    child = vm.kernel.tasks[t.fork()]
    d = Delta(vm)
    child.access_range(BASE + 4096, N * 4096, True)
    assert d.copy == pytest.approx(N * cfg.page_copy_cost)


def test_a_bursts_zeroing_runs_on_the_vcpu_and_its_host_faults_hold_it():
    # a workload's burst of N demand-zero faults (experiments/workloads/base.py): the N
    # zeroings are the burst's guest CPU on the vCPU (VCPUs.run_time), the host's first
    # touches of the N frames a stall that holds it
    import simpy

    from experiments.workloads.base import Workload

    env = simpy.Environment()
    host = Host(HostConfig(memory="512MiB", sharing=False, compression=False, ballooning=False,
                           page_copy_cost=COPY, page_zero_cost=ZERO), env=env)
    vm = host.create_vm("g", KernelConfig(memory="256MiB", thp_enabled="never"), balloon=False)
    out = {}

    class Toucher(Workload):
        def run(self):
            t = self.kernel.spawn("t")
            t.mmap(BASE, HUGE, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
            yield self.wait(t.access(BASE, True))
            cpu0, run0, stall0 = self.cpu_time, vm.vcpus.run_time, vm.stall_time
            yield self.wait(t.access_range(BASE + 4096, N * 4096, True))
            out["cpu"] = self.cpu_time - cpu0
            out["run"] = vm.vcpus.run_time - run0
            out["stall"] = vm.stall_time - stall0

    w = Toucher(env, vm, None, None, seed=1)
    w.start()
    env.run(until=1.0)
    assert out["cpu"] == pytest.approx(N * ZERO)
    assert out["run"] == pytest.approx(N * ZERO)
    assert out["stall"] == pytest.approx(N * host.config.fault_cost)
