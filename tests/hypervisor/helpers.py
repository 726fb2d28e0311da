"""Page contents for hypervisor tests: distinct, deterministic 4 KiB pages."""

from __future__ import annotations

import random

import xxhash

from guestkernel.units import PAGE_SIZE


def page(i: int) -> bytes:
    """A page distinct for every i (and never all zeros)."""
    return (i + 1).to_bytes(8, "little") * (PAGE_SIZE // 8)


def random_page(seed: int, component: str) -> bytes:
    """Incompressible page from a seeded stream."""
    rng = random.Random(xxhash.xxh64_intdigest(f"{seed}/{component}".encode()))
    return rng.randbytes(PAGE_SIZE)


def half_compressible_page(i: int) -> bytes:
    """About 1.5 KiB of random bytes then zeros: compresses to between 1 and 2 KiB."""
    return random_page(i, "half")[:1536] + bytes(PAGE_SIZE - 1536)
