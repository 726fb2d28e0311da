"""KernelConfig and unit parsing: clear errors naming the field."""

from __future__ import annotations

import pytest

from guestkernel.config import KernelConfig
from guestkernel.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    "text,value",
    [("512MiB", 512 << 20), ("4K", 4096), ("1GiB", 1 << 30), ("2G", 2 << 30), (8192, 8192),
     ("1.5KiB", 1536), ("  64 MiB ", 64 << 20),
     # SI prefixes are decimal (SI brochure, IEC 80000-13): MB = 10^6, GB = 10^9, kB = 10^3
     ("64 MB", 64_000_000), ("2GB", 2_000_000_000), ("208MB", 208_000_000), ("4kB", 4000),
     ("1TB", 10**12)],
)
def test_parse_size(text, value):
    """Bare K/M/G are binary as memparse() reads "mem=512M"; KiB/MiB/GiB binary, kB/MB/GB decimal."""
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["-1", "12 parsecs", "", "1.3B", True, None, -5])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="memory"):
        parse_size(text, "memory")


@pytest.mark.parametrize(
    "text,value", [("20ms", 0.02), ("80us", 80e-6), ("10min", 600.0), ("2h", 7200.0), (3, 3.0)]
)
def test_parse_duration(text, value):
    assert parse_duration(text) == pytest.approx(value)


def test_format_size_round_trips():
    for n in (512 << 20, 4 << 30, 4096, 12345, 2_000_000_000, 208_000_000):
        assert parse_size(format_size(n)) == n


@pytest.mark.parametrize(
    "kwargs,field",
    [
        (dict(memory="-512MiB"), "memory"),
        (dict(memory="16MiB"), "memory"),
        (dict(memory="100000"), "memory"),  # not a multiple of the page size
        (dict(arch="arm64"), "arch"),
        (dict(cpus=0), "cpus"),
        (dict(era="3.0"), "era"),
        (dict(swappiness=201), "swappiness"),
        (dict(overcommit_memory=3), "overcommit_memory"),
        (dict(watermark_scale_factor=0), "watermark_scale_factor"),
        (dict(lowmem_reserve_ratio=(256, 32)), "lowmem_reserve_ratio"),
        (dict(arch="i386", memory="65GiB"), "memory"),
        (dict(arch="i386", memory="6GiB", pae=False), "pae"),
        (dict(pae=True), "pae"),
        (dict(nodes=2, numa_distance=((10, 20),)), "numa_distance"),
        (dict(swap="lots"), "swap"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"^{field}:"):
        KernelConfig(**kwargs)


def test_defaults_and_derived_values():
    cfg = KernelConfig(memory="6GiB", arch="i386")
    assert cfg.pae is True  # above 4 GiB an i386 kernel needs PAE
    assert cfg.kernel_image == 8 << 20
    assert KernelConfig().kernel_image == 16 << 20
    assert KernelConfig(memory="1GiB").nr_pages == 262144
    assert KernelConfig(memory=KernelConfig().min_boot_memory() // 4096 * 4096 + 4096)


def test_decimal_memory_is_refused_naming_iec_units():
    """"2GB" = 2,000,000,000 bytes (SI), not whole 4 KiB pages: one line naming MiB/GiB."""
    with pytest.raises(ValueError) as exc:
        KernelConfig(memory="2GB")
    assert str(exc.value) == ("memory: '2GB' is 2,000,000,000 bytes, not a whole number of 4 KiB pages "
                              "(MB and GB are decimal, 10^6 and 10^9; write MiB or GiB for 2^20 or 2^30)")
