"""Shared helpers of the guest-kernel tests."""

from __future__ import annotations

from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel


def boot(**kw) -> Kernel:
    """A 128 MiB guest (booted with its init task, pid 1)."""
    return Kernel(KernelConfig(memory="128MiB", **kw))
