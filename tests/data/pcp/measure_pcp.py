"""Record this machine's per-CPU page list sizes (/proc/zoneinfo "pagesets") with what
they derive from: each zone's managed pages and LOW watermark, the online CPUs and
vm.percpu_pagelist_high_fraction. Writes pcp.json beside this script.

    python3 tests/data/pcp/measure_pcp.py
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def zoneinfo(text: str) -> list[dict]:
    zones: list[dict] = []
    zone = None
    cpu = None
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Node"):
            zone = {"node": int(words[1].rstrip(",")), "zone": words[3], "pagesets": []}
            zones.append(zone)
            cpu = None
        elif zone is None or not words:
            continue
        elif words[0] in ("min", "low", "high", "managed", "present") and cpu is None and len(words) == 2:
            zone[words[0]] = int(words[1])
        elif words[0] == "cpu:":
            cpu = {"cpu": int(words[1])}
            zone["pagesets"].append(cpu)
        elif cpu is not None and words[0] in ("count:", "high:", "batch:"):
            cpu[words[0].rstrip(":")] = int(words[1])
        elif cpu is not None and line.strip().startswith("vm stats threshold:"):
            cpu["vm_stats_threshold"] = int(words[-1])
    return zones


def main() -> None:
    out = {
        "kernel": platform.release(),
        "online_cpus": os.sysconf("SC_NPROCESSORS_ONLN"),
        "percpu_pagelist_high_fraction": int(Path("/proc/sys/vm/percpu_pagelist_high_fraction").read_text()),
        "zones": zoneinfo(Path("/proc/zoneinfo").read_text()),
    }
    (Path(__file__).parent / "pcp.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
