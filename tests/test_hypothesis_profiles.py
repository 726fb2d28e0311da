"""The suite's hypothesis profiles (tests/conftest.py): CI draws the same examples every run
and keeps no example database; a developer's run explores with a database."""

import subprocess
import sys
from pathlib import Path

CODE = """
import tests.conftest
from hypothesis import settings
s = settings.default
print(s.derandomize, s.database is None)
"""


def _profile(env_ci):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp"}
    if env_ci:
        env["CI"] = "true"
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    return out.stdout.split()


def test_ci_profile_is_deterministic_without_database():
    assert _profile(True) == ["True", "True"]


def test_dev_profile_explores_with_a_database():
    assert _profile(False) == ["False", "False"]
