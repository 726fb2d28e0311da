"""Huge pages in shmem (mm/shmem.c, 6.1): transparent_hugepage/shmem_enabled and
shmem_is_huge for the internal mount (shared anonymous mappings, SysV shm)."""

from __future__ import annotations

import pytest

from experiments.config import ConfigError, config_from_dict
from experiments.scenario import kernel_config
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel

D = "/sys/kernel/mm/transparent_hugepage"


def boot(**kw) -> Kernel:
    kw.setdefault("memory", "256MiB")
    return Kernel(KernelConfig(**kw))


def test_shmem_enabled_sysfs_default_never_and_its_six_modes():
    # shmem_enabled_show (6.1): SHMEM_HUGE_ALWAYS, WITHIN_SIZE, ADVISE, NEVER, DENY, FORCE,
    # the current one bracketed; shmem_huge defaults to SHMEM_HUGE_NEVER
    k = boot()
    r = k.procfs.read
    assert r(f"{D}/shmem_enabled") == "always within_size advise [never] deny force\n"
    for mode in ("always", "within_size", "advise", "deny", "force", "never"):
        k.procfs.write(f"{D}/shmem_enabled", mode + "\n")
        assert f"[{mode}]" in r(f"{D}/shmem_enabled")
        assert k.thp.shmem_enabled == mode
    with pytest.raises(ValueError, match="shmem_enabled: 'sometimes' is not valid"):
        k.procfs.write(f"{D}/shmem_enabled", "sometimes")
    assert k.thp.shmem_enabled == "never"
    assert boot(thp_shmem_enabled="within_size").procfs.read(f"{D}/shmem_enabled") == (
        "always [within_size] advise never deny force\n")


def test_shmem_enabled_from_the_config_and_a_bad_value_named():
    cfg = config_from_dict({"vm": [{"name": "a", "kernel": {"thp_shmem_enabled": "advise"}}]})
    assert kernel_config(cfg.vm[0]).thp_shmem_enabled == "advise"
    assert kernel_config(config_from_dict({"vm": [{"name": "a"}]}).vm[0]).thp_shmem_enabled == "never"
    with pytest.raises(ConfigError) as exc:
        config_from_dict({"vm": [{"name": "a", "kernel": {"thp_shmem_enabled": "sometimes"}}]})
    msg = str(exc.value)
    assert "vm[0].kernel.thp_shmem_enabled" in msg and "\n" not in msg.strip()
    with pytest.raises(ValueError, match="thp_shmem_enabled: must be one of"):
        KernelConfig(thp_shmem_enabled="yes")
