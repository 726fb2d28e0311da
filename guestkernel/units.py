"""Sizes and durations with units, as users write them ("512MiB", "80us", "10min").

Shared by the guest kernel, the hypervisor and the experiment configs so that every
layer parses "1GiB" the same way.
"""

from __future__ import annotations

import re

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # bytes

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    # the kernel's memparse() ("mem=512M"): a bare K, M, G, T is a power of two
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    # IEC binary prefixes (IEC 80000-13): KiB = 2^10 ...
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
    # SI decimal prefixes: kB = 10^3, MB = 10^6, GB = 10^9 (as disk and DIMM vendors use them)
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
}
# "2GB" is 2,000,000,000 bytes, not 2 GiB: a size that must be whole pages (memory) and is
# not names the IEC spelling in its error (see whole_pages()).

_TIME_UNITS = {
    "": 1.0,
    "s": 1.0,
    "sec": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "ns": 1e-9,
    "min": 60.0,
    "m": 60.0,
    "h": 3600.0,
}

_NUM = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-zµ]*)\s*$")


def parse_size(value: int | str, field: str = "size") -> int:
    """Return a size in bytes from an int (bytes) or a string like "512MiB" or "4K".

    Raises ValueError naming `field` when the value is negative or malformed.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be a size like \"512MiB\", got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{field}: must not be negative, got {value}")
        return value
    if isinstance(value, float):
        if value < 0 or value != int(value):
            raise ValueError(f"{field}: must be a whole, non-negative number of bytes")
        return int(value)
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a size like \"512MiB\", got {value!r}")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"{field}: must not be negative, got {value!r}")
    m = _NUM.match(text)
    if not m or m.group(2).lower() not in _SIZE_UNITS:
        raise ValueError(f"{field}: must be a size like \"512MiB\", got {value!r}")
    number = float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()]
    if number != int(number):
        raise ValueError(f"{field}: {value!r} is not a whole number of bytes")
    return int(number)


def parse_duration(value: int | float | str, field: str = "duration") -> float:
    """Return seconds from a number (seconds) or a string like "20ms", "80us", "10min"."""
    if isinstance(value, bool):
        raise ValueError(f"{field}: must be a duration like \"20ms\", got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{field}: must not be negative, got {value}")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"{field}: must be a duration like \"20ms\", got {value!r}")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"{field}: must not be negative, got {value!r}")
    m = _NUM.match(text)
    if not m or m.group(2) not in _TIME_UNITS and m.group(2).lower() not in _TIME_UNITS:
        raise ValueError(f"{field}: must be a duration like \"20ms\", got {value!r}")
    unit = m.group(2) if m.group(2) in _TIME_UNITS else m.group(2).lower()
    return float(m.group(1)) * _TIME_UNITS[unit]


def format_size(nbytes: int) -> str:
    """Shortest exact spelling of a size, binary units first: 536870912 -> "512MiB",
    2000000000 -> "2GB" (a decimal size stays decimal)."""
    for unit, mult in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes and nbytes % mult == 0:
            return f"{nbytes // mult}{unit}"
    for unit, mult in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if nbytes and nbytes % mult == 0:
            return f"{nbytes // mult}{unit}"
    return f"{nbytes}B"


def whole_pages(nbytes: int, value: object, field: str = "") -> int:
    """`nbytes` when it is a whole number of 4 KiB pages; else ValueError naming the IEC
    spelling (a decimal "208MB" is 208,000,000 bytes, 50,781.25 pages)."""
    if nbytes % PAGE_SIZE:
        raise ValueError(
            f"{field + ': ' if field else ''}{value!r} is {nbytes:,} bytes, not a whole number of 4 KiB pages "
            f"(MB and GB are decimal, 10^6 and 10^9; write MiB or GiB for 2^20 or 2^30)")
    return nbytes
