"""/proc files in Linux's format, /proc/sys/vm writes with Linux's error behaviour."""

from __future__ import annotations

import pytest

from guestkernel import gfp as G
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel


@pytest.fixture(scope="module")
def kernel():
    return Kernel(KernelConfig(memory="1GiB", cpus=2))


def meminfo(k: Kernel) -> dict[str, int]:
    out = {}
    for line in k.procfs.read("/proc/meminfo").splitlines():
        name, rest = line.split(":", 1)
        out[name] = int(rest.split()[0])
    return out


def test_meminfo_layout_and_totals(kernel):
    text = kernel.procfs.read("/proc/meminfo")
    lines = text.splitlines()
    assert lines[0] == f"MemTotal:       {kernel.page_alloc.totalram_pages() * 4:>8} kB"
    assert [line.split(":")[0] for line in lines[:6]] == [
        "MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "SwapCached"]
    m = meminfo(kernel)
    assert m["MemTotal"] == kernel.page_alloc.totalram_pages() * 4
    assert m["MemFree"] == kernel.page_alloc.nr_free_pages() * 4
    # MemAvailable (si_mem_available): free - totalreserve + (no page cache yet) + the
    # reclaimable slab part above min(half, low watermarks)
    alloc = kernel.page_alloc
    sr = kernel.vmstat["nr_slab_reclaimable"]
    expect = alloc.nr_free_pages() - alloc.totalreserve_pages + sr - min(sr // 2, alloc.wmark_low_total())
    assert m["MemAvailable"] == expect * 4
    # CommitLimit = RAM * 50 % + swap (0)
    assert m["CommitLimit"] == alloc.totalram_pages() * 50 // 100 * 4
    assert "HighTotal" not in m


def test_meminfo_i386_has_high_and_low(kernel):
    k = Kernel(KernelConfig(memory="2GiB", arch="i386"))
    m = meminfo(k)
    assert m["HighTotal"] == 294912 * 4
    assert m["LowTotal"] == m["MemTotal"] - m["HighTotal"]


def test_buddyinfo_format(kernel):
    k = Kernel(KernelConfig(memory="64MiB", era="2.6"))
    lines = k.procfs.read("/proc/buddyinfo").splitlines()
    dma = k.page_alloc.zones[0]
    counts = "".join(f"{dma.free_area[o].nr_free:6d} " for o in range(11))
    assert lines[0] == "Node 0, zone      DMA " + counts
    assert lines[1].startswith("Node 0, zone    DMA32 ")
    assert len(lines) == 2  # the empty Normal zone is not listed


def test_zoneinfo_shows_watermarks_protection_and_pagesets(kernel):
    text = kernel.procfs.read("/proc/zoneinfo")
    dma32 = kernel.page_alloc.zones[1]
    block = text.split("Node 0, zone    DMA32")[1].split("Node 0, zone")[0]
    wmin, wlow, whigh = dma32.watermark
    assert f"\n  pages free     {dma32.nr_free}\n" in block
    assert f"\n        min      {wmin}\n        low      {wlow}\n        high     {whigh}\n" in block
    assert f"\n        managed  {dma32.managed_pages}\n" in block
    assert "\n        protection: (0, 0, 0, 0)" in block
    # 6.1 zoneinfo_show_print: one pageset per CPU; high = LOW split over the node's
    # CPUs (zone_highsize), batch: min(managed >> 10, 256) / 4 = 61,
    # rounddown_pow_of_two(61 + 30) - 1 = 63 (zone_batchsize)
    assert dma32.managed_pages >> 10 == 244
    high = max(wlow // kernel.config.cpus, 4 * 63)
    assert f"\n    cpu: 1\n              count: 0\n              high:  {high}\n              batch: 63" in block
    # unpopulated zones are listed with their header and numbers only
    assert "Node 0, zone   Normal\n  pages free     0\n" in text
    assert "Node 0, zone  Movable\n" in text


def test_vmstat_lists_counters(kernel):
    k = Kernel(KernelConfig(memory="64MiB"))
    before = dict(line.split() for line in k.procfs.read("/proc/vmstat").splitlines())
    page = k.alloc_pages(G.GFP_KERNEL)
    k.free_pages(page)
    after = dict(line.split() for line in k.procfs.read("/proc/vmstat").splitlines())
    assert int(after["pgalloc_dma32"]) == int(before["pgalloc_dma32"]) + 1
    assert int(after["pgfree"]) == int(before["pgfree"]) + 1
    assert int(after["nr_free_pages"]) == k.page_alloc.nr_free_pages()


def test_sysctl_write_min_free_kbytes_recomputes_watermarks():
    k = Kernel(KernelConfig(memory="1GiB"))
    dma32 = k.page_alloc.zones[1]
    k.procfs.write("/proc/sys/vm/min_free_kbytes", "16384\n")
    assert k.procfs.read("/proc/sys/vm/min_free_kbytes") == "16384\n"
    lowmem = sum(z.managed_pages for z in k.page_alloc.zones)
    tmp = 4096 * dma32.managed_pages // lowmem
    dist = max(tmp >> 2, dma32.managed_pages * 10 // 10000)
    assert dma32.watermark == [tmp, tmp + dist, tmp + 2 * dist]
    k.procfs.write("/proc/sys/vm/watermark_scale_factor", "200")
    dist = max(tmp >> 2, dma32.managed_pages * 200 // 10000)
    assert dma32.watermark == [tmp, tmp + dist, tmp + 2 * dist]


@pytest.mark.parametrize(
    "path,text",
    [
        ("/proc/sys/vm/swappiness", "201"),
        ("/proc/sys/vm/swappiness", "sixty"),
        ("/proc/sys/vm/min_free_kbytes", "-1"),
        ("/proc/sys/vm/overcommit_memory", "3"),
        ("/proc/sys/vm/watermark_scale_factor", "0"),
        ("/proc/sys/vm/lowmem_reserve_ratio", "256 256 32 7"),
        ("/proc/sys/vm/panic_on_oom", ""),
    ],
)
def test_bad_sysctl_values_change_nothing(path, text):
    k = Kernel(KernelConfig(memory="64MiB"))
    before = k.procfs.read(path)
    wm = [list(z.watermark) for z in k.page_alloc.zones]
    with pytest.raises(ValueError):
        k.procfs.write(path, text)
    assert k.procfs.read(path) == before
    assert [list(z.watermark) for z in k.page_alloc.zones] == wm


def test_lowmem_reserve_ratio_vector_write():
    k = Kernel(KernelConfig(memory="1GiB"))
    assert k.procfs.read("/proc/sys/vm/lowmem_reserve_ratio") == "256\t256\t32\n"
    k.procfs.write("/proc/sys/vm/lowmem_reserve_ratio", "128 256 32")
    dma, dma32, _ = k.page_alloc.nodes[0].zones
    assert dma.lowmem_reserve[1] == dma32.managed_pages // 128


def test_sysctls_stored_in_config():
    k = Kernel(KernelConfig(memory="64MiB"))
    k.procfs.write("/proc/sys/vm/swappiness", "10")
    k.procfs.write("/proc/sys/vm/page-cluster", "0")
    assert k.config.swappiness == 10 and k.config.page_cluster == 0
    assert k.procfs.read("/proc/sys/vm/overcommit_ratio") == "50\n"


def test_unknown_paths():
    k = Kernel(KernelConfig(memory="64MiB"))
    for path in ("/proc/nope", "/proc/sys/vm/nope", "/proc/99999/maps"):
        with pytest.raises(FileNotFoundError):
            k.procfs.read(path)
    with pytest.raises(PermissionError):
        k.procfs.write("/proc/meminfo", "1")
