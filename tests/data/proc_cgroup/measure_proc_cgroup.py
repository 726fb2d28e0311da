"""Record this machine's /proc/self/cgroup and the cgroup lines of /proc/mounts (their
format: proc_cgroup_show, show_vfsmnt with cgroup1/cgroup_show_options), for
tests/guestkernel/test_proc_cgroup.py. Run: python measure_proc_cgroup.py > proc_cgroup.json"""

import json
import os

mounts = [ln for ln in open("/proc/mounts").read().splitlines() if " cgroup" in ln]
print(json.dumps({"uname": os.uname().release,
                  "proc_self_cgroup": open("/proc/self/cgroup").read().splitlines(),
                  "proc_mounts_cgroup": mounts}, indent=1))
