"""/sys/block/vda/queue/read_ahead_kb, the guest's runtime readahead tunable (block/
blk-sysfs.c queue_ra_show / queue_ra_store): what it reads back after each write equals
what this machine's kernel read back, recorded by tests/data/read_ahead_kb/
measure_read_ahead_kb.py on a loop device (Linux 6.18); files opened after a write take
the new window (file_ra_state_init), open ones keep theirs."""

import json
from pathlib import Path

import pytest

from guestkernel import uapi as U
from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.task import SYS_READ_AHEAD_KB

P = 4096
FIXTURE = json.loads((Path(__file__).parent.parent / "data" / "read_ahead_kb" / "read_ahead_kb.json").read_text())
B = 0x60000000


def test_writes_read_back_as_this_machines_kernel():
    """queue_ra_store keeps ra_kb >> (PAGE_SHIFT - 10) pages; queue_var_store refuses what
    kstrtoul cannot parse and values above UINT_MAX (EINVAL)."""
    k = Kernel(KernelConfig(memory="64MiB"))
    procfs = k.procfs
    assert procfs.read(SYS_READ_AHEAD_KB) == "128\n"  # VM_READAHEAD_PAGES: 128 KiB
    for step in FIXTURE["steps"]:
        if step["errno"] is None:
            procfs.write(SYS_READ_AHEAD_KB, step["write"])
        else:
            assert step["errno"] == U.EINVAL
            with pytest.raises(ValueError, match="EINVAL"):
                procfs.write(SYS_READ_AHEAD_KB, step["write"])
        assert procfs.read(SYS_READ_AHEAD_KB) == step["reads"], step


def test_files_opened_after_a_write_take_the_new_window():
    """file_ra_state_init at open: ra_pages = the bdi's. With read_ahead_kb 64 (16 pages)
    a first 1-page read at index 0 reads get_init_ra_size(1, 16) = 2 pages (1 <= 16/4:
    x2); a file opened before keeps 32 pages: get_init_ra_size(1, 32) = 4 (1 <= 32/32:
    x4)."""
    k = Kernel(KernelConfig(memory="64MiB"))
    if 1 not in k.tasks:
        k.spawn("init")
    t = k.spawn("t")
    t.mmap(B, 1 << 20, U.PROT_READ | U.PROT_WRITE, U.MAP_PRIVATE | U.MAP_ANONYMOUS | U.MAP_FIXED)
    a = k.fs.create("/a", 64 * P)
    b = k.fs.create("/b", 64 * P)
    fa = t.open("/a")
    k.procfs.write(SYS_READ_AHEAD_KB, "64")
    fb = t.open("/b")
    assert (t.files[fa].f_ra.ra_pages, t.files[fb].f_ra.ra_pages) == (32, 16)
    assert t.read(fa, B, 1) == 1 and sorted(a.mapping.pages) == [0, 1, 2, 3]
    assert t.read(fb, B, 1) == 1 and sorted(b.mapping.pages) == [0, 1]
