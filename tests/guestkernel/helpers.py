"""Shared helpers of the guest-kernel tests."""

from __future__ import annotations

from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel


def boot(**kw) -> Kernel:
    """A 128 MiB guest with its init task (pid 1)."""
    k = Kernel(KernelConfig(memory="128MiB", **kw))
    if 1 not in k.tasks:
        k.spawn("init")
    return k
