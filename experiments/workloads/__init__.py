"""Guest user space: a glibc-like malloc and the workload profiles.

`create_workload(env, vm, params, content, seed, image)` builds the profile that `params`
(a validated workload table of experiments/config.py) names.
"""

from __future__ import annotations

from .base import Proc, Workload
from .malloc import Malloc
from .profiles import (
    CompileWorkload,
    DatabaseWorkload,
    DbenchWorkload,
    IdleWorkload,
    JvmWorkload,
    MemhogWorkload,
    WebserverWorkload,
)

PROFILES: dict[str, type[Workload]] = {
    "idle": IdleWorkload,
    "webserver": WebserverWorkload,
    "database": DatabaseWorkload,
    "dbench": DbenchWorkload,
    "compile": CompileWorkload,
    "jvm": JvmWorkload,
    "memhog": MemhogWorkload,
}


def create_workload(env, vm, params, content, seed: int, image=None) -> Workload:
    if params.profile == "trace":
        from .trace import TraceWorkload

        return TraceWorkload(env, vm, params, content, seed, image)
    return PROFILES[params.profile](env, vm, params, content, seed, image)


__all__ = ["Malloc", "PROFILES", "Proc", "Workload", "create_workload"]
