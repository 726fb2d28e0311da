"""Fixtures shared by the guest-kernel tests: `k` a booted guest, `t` a process in it."""

from __future__ import annotations

import pytest

from .helpers import boot


@pytest.fixture
def k():
    return boot()


@pytest.fixture
def t(k):
    return k.spawn("t")
