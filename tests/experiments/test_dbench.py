"""The dbench profile: each client's reads fall where its hot set says, its writes go round
a ring of temporary files that are unlinked and created anew, and its work is the bytes
it read and wrote (dbench's MB/s)."""

from __future__ import annotations

import simpy

from experiments.config import config_from_dict, size
from experiments.scenario import Scenario
from experiments.workloads.profiles import DbenchWorkload

MIB = 1 << 20
FILE = DbenchWorkload.FILE


def _run(wl: dict, seconds: float = 1.0):
    cfg = config_from_dict({
        "experiment": {"name": "dbench", "duration": f"{seconds}s", "seed": 5},
        "host": {"memory": "512MiB", "sharing": {"enabled": False}},
        "vm": [{"name": "g", "memory": "128MiB", "image": "alpine-3.19",
                "workload": {"profile": "dbench", "clients": 1, "op_cpu": "1ms", **wl}}]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    sc.start()
    env.run(until=seconds)
    return sc.workloads["g"], sc.host.vms[0].kernel


def _cached(kernel, path: str) -> int:
    inode = kernel.fs.lookup(path)
    return len(inode.mapping.pages)


def test_writes_go_round_the_ring_and_each_file_is_created_anew():
    """read_fraction 0: every operation writes write_size (less at a file's end) at the
    ring's next offset. With W bytes written round a ring of two 1 MiB files, the file
    the writes are in holds W mod 1 MiB; the other the whole 1 MiB it last received; a
    file the writes came back to was unlinked first (it holds only its new bytes)."""
    wl, k = _run({"read_fraction": 0.0, "temp_set": "2MiB", "write_size": "24KiB", "burst_ops": 4})
    written = round(wl.work_done * MIB)
    assert written > 2 * FILE  # the writes came round the ring at least once
    current = (written // FILE) % 2
    sizes = {i: k.fs.lookup(f"/clients/client0/temp{i}").size for i in (0, 1)}
    assert sizes[current] == written % FILE
    assert sizes[1 - current] == FILE
    # writes of 24 KiB from each file's start: a file's last write is clipped at 1 MiB
    # (42 whole writes + 16 KiB), so the total is whole files plus whole writes
    assert (written % FILE) % (24 << 10) == 0
    # the page cache holds no more of a file than its size
    for i in (0, 1):
        assert _cached(k, f"/clients/client0/temp{i}") <= -(-sizes[i] // 4096)


def test_reads_fall_in_the_hot_set_or_outside_it():
    """read_fraction 1: hot_reads 1 reads only the first hot_set bytes (file000 of a
    client's four 1 MiB files); hot_reads 0 only the other files."""
    base = {"read_fraction": 1.0, "file_set": "4MiB", "hot_set": "1MiB", "read_size": "4KiB"}
    wl, k = _run({**base, "hot_reads": 1.0})
    cached = [_cached(k, f"/clients/client0/file{i:03d}") for i in range(4)]
    assert cached[0] > 0 and cached[1:] == [0, 0, 0]
    wl, k = _run({**base, "hot_reads": 0.0})
    cached = [_cached(k, f"/clients/client0/file{i:03d}") for i in range(4)]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:])
    # work: 4 KiB per read, every read whole (files are 1 MiB, reads page-aligned)
    assert round(wl.work_done * MIB) % 4096 == 0


def test_each_client_has_its_own_files():
    wl, k = _run({"clients": 3, "file_set": "2MiB"}, seconds=0.2)
    for c in range(3):
        for i in range(2):
            assert k.fs.lookup(f"/clients/client{c}/file{i:03d}").size == FILE
        assert k.fs.lookup(f"/clients/client{c}/file002") is None
    assert size("24MiB") // FILE == 24  # the default file set: 24 files of 1 MiB


def test_the_total_is_the_sum_of_the_clients_work():
    """dbench's throughput is the sum of its clients' (each client prints its own count):
    client_work holds each client's MiB; with read_fraction 1 and 4 KiB page-aligned reads
    each client's count is whole reads."""
    wl, _ = _run({"clients": 3, "read_fraction": 1.0, "file_set": "2MiB", "read_size": "4KiB"},
                 seconds=0.5)
    assert len(wl.client_work) == 3 and all(w > 0 for w in wl.client_work)
    assert sum(round(w * MIB) for w in wl.client_work) == round(wl.work_done * MIB)
    assert all(round(w * MIB) % 4096 == 0 for w in wl.client_work)
