"""Hypothesis profiles: CI is deterministic, a developer's run keeps exploring.

- ``ci`` (chosen when the environment has ``CI`` set, as ``.ci/run`` runs): derandomized,
  so every run draws the same examples, and no example database, so an example found on
  one run cannot make later runs fail differently from a clean clone.
- ``dev`` (the default elsewhere): random examples and the local database in
  ``.hypothesis/``, so a failure found once is replayed until it is fixed.

``HYPOTHESIS_PROFILE=ci python -m pytest`` reproduces CI's draw on a developer machine.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))
