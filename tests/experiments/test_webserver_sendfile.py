"""The web server profile sends its static files with sendfile() by default (nginx's
`sendfile on`): the documents are read into the page cache and nothing lands in user
memory; with `sendfile = false` each worker read()s into a malloc'd buffer (a second copy)."""

from __future__ import annotations

import simpy

from experiments.config import config_from_dict
from experiments.scenario import Scenario

WORKERS = 2


def _guest(sendfile: bool):
    cfg = config_from_dict({
        "experiment": {"name": "web", "duration": "1s", "seed": 5},
        "host": {"memory": "512MiB", "sharing": {"enabled": False}},
        "vm": [{"name": "g", "memory": "128MiB", "image": "alpine-3.19",
                "workload": {"profile": "webserver", "workers": WORKERS, "shared_heap": "1MiB",
                             "worker_heap": "1MiB", "request_touch": "16KiB", "docroot": "2MiB",
                             "request_rate": 400.0, "sendfile": sendfile}}]})
    env = simpy.Environment()
    sc = Scenario(cfg, env)
    sc.start()
    env.run(until=1.0)
    return sc.host.vms[0].kernel


def test_sendfile_serves_from_the_page_cache_without_a_user_copy():
    sent, copied = _guest(True), _guest(False)
    docs_sent = sum(len(i.mapping.pages) for p, i in _docs(sent))
    docs_copied = sum(len(i.mapping.pages) for p, i in _docs(copied))
    assert docs_sent > 0 and docs_copied > 0  # both served documents out of the cache
    # read() needs a 64 KiB buffer per worker: 16 pages, 17 when malloc's is unaligned
    extra = copied.vmstat["nr_anon_pages"] - sent.vmstat["nr_anon_pages"]
    assert extra >= WORKERS * 16


def _docs(kernel):
    return [(path, kernel.fs.lookup(path)) for path in (f"/srv/www/page{i:04d}.html" for i in range(8))
            if kernel.fs.lookup(path) is not None]
