"""Workload profiles: idle, webserver, database, dbench, compile, jvm, memhog.

Each profile is a closed loop: a process does a burst of work, then waits for the burst's
CPU time plus every stall the memory system charged it. At full speed its throughput is
the configured rate; under memory pressure (host swap-ins, decompression, guest reclaim)
it falls, and that relative throughput is the cost of overcommit.

The parameters, units and defaults are those of experiments/config.py. Every profile
also takes `input` (the data set, which decides what data VMs have in common) and
`page_cache` (OS files read at boot): see `Profile`.

What the profiles' writes write
-------------------------------
A write the workload does not spell out (`proc.touch(..., True)` with no data: a request
updating a worker's buffers, a row update, a GC compaction, a daemon waking up) stores new
data: the page gets a new recipe of its data profile (content.AppPage.written; bytes with
no recipe get one 16-byte value changed, guestkernel.physmem.WrittenPage), so its
checksum changes and its compressibility stays the profile's. A write that stores the
same bytes again is a store of explicit data equal to what the page holds. Per profile:

    profile    writes                                         same bytes  source
    idle       daemon wake-ups (30 %): timers, counters           0       -
    webserver  each request: the worker's heap (buffers,          0       -
               session objects); the master's heap is read
    database   row updates (write_fraction of accesses)           0       PostgreSQL stamps every
               and checkpoint writes to the table file                    page it changes with the
                                                                          WAL position (PageSetLSN:
                                                                          pd_lsn, storage/bufpage.h)
    compile    each compiler process's fresh heap: explicit       -       -
               data, then reads
    jvm        pre-touch: zeros over zeroed pages (explicit:      pre-    -
               the same bytes); allocation: new objects          touch
               (explicit data); GC: compaction moves the live
               set (new data)
    memhog     memset(0xff) of each block (explicit data: the     all     numactl memhog.c, hog()
               same 0xff page every time it is repeated)
    dbench     write() of a client's buffer into its temporary    -       dbench's WriteX
               files (explicit data: the buffer's bytes)

"same bytes": the fraction of the profile's writes without data that store what the page
held (content.DataProfile.rewrite, 0 for every shipped profile). Store-level studies find
many silent stores (Lepak and Lipasti, "On the value locality of store instructions",
ISCA 2000), but a page keeps its bytes only if every store of a burst to it is silent; we
know of no page-level figure, so the shipped profiles store new data on every such write.
"""

from __future__ import annotations

import bisect
import itertools
import random

import xxhash

from guestkernel.uapi import MAP_PRIVATE, O_CREAT, O_RDONLY, O_RDWR, PROT_READ

from ..config import seconds, size, size_of
from .base import PAGE, Proc, Workload


def _pages(nbytes: int) -> int:
    return max(1, (nbytes + PAGE - 1) // PAGE)


class Profile(Workload):
    """What every profile shares, from its workload table and its guest:

    input       the data set: VMs naming the same one compute the same data (the content
                source keys the VM's private data by the input instead of the VM)
    page_cache  bytes of the OS image's files (libraries, programs, data, in image order)
                the guest read while booting, kept in its page cache; read at start by a
                boot process that then exits (the idle profile's daemons read their share
                themselves)
    and the guest kernel's randomize_va_space (ASLR), which decides whether equal data
    carries equal pointers. At start, the image's logs (per_machine regions) become this
    VM's own files: a log holds what its machine wrote, never the same bytes twice."""

    def __init__(self, env, vm, params, content, seed: int, image=None) -> None:
        super().__init__(env, vm, params, content, seed, image)
        extra = getattr(getattr(self.kernel, "config", None), "extra", None) or {}
        configure = getattr(content, "configured", None)
        if configure is not None:
            self.content = configure(getattr(params, "input", "") or None,
                                     extra.get("randomize_va_space", 2))

    def start(self) -> None:
        if not self.started:
            self._own_logs()
            if self.name != "idle":
                files = self._boot_files(size(getattr(self.params, "page_cache", "0B")))
                if files:
                    self.go(self._boot(files))
        super().start()

    def _own_logs(self) -> None:
        fs = getattr(self.kernel, "fs", None)
        reader = getattr(self.content, "image_reader", None)
        if self.image is None or fs is None or reader is None:
            return
        for region in self.image.regions:
            if region.per_machine:
                inode = fs.lookup(region.name)
                if inode is not None and not inode.mapping.pages:  # nothing read yet
                    inode.content = reader(self.image.name, region)

    def _boot_files(self, budget: int) -> list[tuple[str, int]]:
        """(path, bytes) of the image's non-kernel files, in order, up to `budget` bytes."""
        if self.image is None or budget <= 0:
            return []
        out = []
        for region in self.image.regions:
            if region.category == "kernel":
                continue
            take = min(region.size, budget)
            if take <= 0:
                break
            out.append((region.name, take))
            budget -= take
        return out

    def _boot(self, files):
        """Map each file and read it through, as the loader maps libraries and programs
        (no copy into a user buffer); the pages stay in the page cache after munmap."""
        proc = self.spawn("boot")
        task = proc.task
        cost = 0.0
        for path, nbytes in files:
            if not proc.alive:
                break
            try:
                fd = task.open(path, O_RDONLY, 0)
                addr = task.mmap(0, nbytes, PROT_READ, MAP_PRIVATE, fd, 0)
                cost += task.last_cost + proc.touch(addr, nbytes, False)
                task.munmap(addr, nbytes)
                task.close(fd)
            except OSError:
                continue
        yield self.wait(0.01 + cost)
        proc.exit(0)
        self.procs.remove(proc)


class IdleWorkload(Profile):
    """A booted OS with its daemons mostly asleep: each daemon touches its heap at start,
    reads some image files through the page cache, then wakes up now and then to touch a
    little of its memory. Work: wake-ups."""

    name = "idle"
    unit = "wakeups"

    def run(self):
        p = self.params
        files = self._boot_files(size(p.page_cache))
        for i in range(p.daemons):
            self.go(self.daemon(i, files[i::max(p.daemons, 1)] if files else []))
        yield self.env.timeout(0)

    def daemon(self, i: int, files):
        p = self.params
        proc = self.spawn(f"daemon{i}")
        rss = size(p.daemon_rss)
        heap = proc.malloc(rss)
        cost = proc.touch(heap, rss, True, self.page_data("idle", f"daemon{i}", proc.pid)) if heap else 0.0
        for path, nbytes in files:
            cost += proc.read_file(path, 0, nbytes)
        yield self.wait(0.01 + cost)
        touch = min(size(p.wake_touch), rss)
        interval = seconds(p.wake_interval)
        while proc.alive and not self.dead:
            yield self.env.timeout(self.exp(interval))
            off = self.rng.randrange(0, max(1, rss - touch)) & ~(PAGE - 1) if heap else 0
            cost = proc.touch(heap + off, touch, self.rng.random() < 0.3) if heap else 0.0
            self.work_done += 1
            yield self.wait(0.0005 + cost)


class WebserverWorkload(Profile):
    """A pre-forked web server: the master builds a heap (configuration, caches) and forks
    workers that share it copy-on-write; each worker has a private heap; requests touch a
    worker's heap and read static files through the page cache. Work: requests served."""

    name = "webserver"
    unit = "requests"

    def run(self):
        p = self.params
        master = self.spawn("httpd")
        shared = size(p.shared_heap)
        base = master.malloc(shared)
        cost = 0.0
        if base:
            cost += master.touch(base, shared, True, self.page_data("webserver", "shared", 0))
        docs = self._docroot(size(p.docroot))
        yield self.wait(0.05 + cost)
        rate = p.request_rate / p.workers  # requests/s each worker serves at full speed
        for w in range(p.workers):
            child = self.adopt(master.fork())
            if child is None:
                break
            self.go(self.worker(w, child, base, shared, docs, rate))
        while master.alive and not self.dead:
            yield self.env.timeout(10.0)

    def _docroot(self, budget: int) -> list[tuple[str, int]]:
        fs = getattr(self.kernel, "fs", None)
        docs = []
        if fs is None:
            return docs
        n = max(1, budget // (256 * 1024))
        for i in range(n):
            path = f"/srv/www/page{i:04d}.html"
            nbytes = min(256 * 1024, budget - i * 256 * 1024)
            if nbytes <= 0:
                break
            if fs.lookup(path) is None:
                fs.create(path, nbytes, content=self._doc_reader(i))
            docs.append((path, nbytes))
        return docs

    def _doc_reader(self, i: int):
        app_page = self.content.app_page

        def read(index: int) -> bytes:
            return app_page("webserver", f"doc/{i}/{index}", 0, True)

        return read

    def worker(self, w: int, proc: Proc, shared_base: int, shared: int, docs, rate: float):
        p = self.params
        private = size(p.worker_heap)
        heap = proc.malloc(private)
        cost = proc.touch(heap, private, True, self.page_data("webserver", f"worker{w}", proc.pid)) if heap else 0.0
        yield self.wait(0.01 + cost)
        touch = min(size(p.request_touch), private) if heap else 0
        interval = seconds(p.burst_interval)
        zipf = _Zipf(len(docs), 1.0, self.rng) if docs else None
        while proc.alive and not self.dead:
            n = max(1, round(rate * interval))
            cost = 0.0
            for _ in range(n):
                if heap and touch:
                    off = self.rng.randrange(0, max(1, private - touch)) & ~(PAGE - 1)
                    cost += proc.touch(heap + off, touch, True)
                if shared_base:
                    off = self.rng.randrange(0, max(1, shared - PAGE)) & ~(PAGE - 1)
                    cost += proc.touch(shared_base + off, PAGE, False)
                if zipf is not None:
                    path, nbytes = docs[zipf.draw()]
                    if p.sendfile:
                        cost += proc.send_file(path, 0, min(nbytes, 64 * 1024))
                    else:
                        cost += proc.read_file(path, 0, min(nbytes, 64 * 1024))
                if not proc.alive:
                    break
            self.work_done += n
            yield self.wait(n / rate + cost)


class _Zipf:
    """Zipf(s) ranks 0..n-1 drawn by inverse CDF (bisect over the cumulative weights)."""

    def __init__(self, n: int, s: float, rng) -> None:
        self.rng = rng
        weights = [1.0 / (k ** s) for k in range(1, n + 1)]
        self.cdf = list(itertools.accumulate(weights))
        self.total = self.cdf[-1]

    def draw(self) -> int:
        return bisect.bisect_left(self.cdf, self.rng.random() * self.total)


class DatabaseWorkload(Profile):
    """A database server: a large anonymous buffer pool whose pages are hit with Zipf
    popularity (hot pages stay resident, cold ones are what reclaim can take), a fraction
    of accesses dirtying pages that a checkpointer writes back to the table file (dirty
    page-cache writeback). Work: buffer-pool operations."""

    name = "database"
    unit = "ops"

    def run(self):
        p = self.params
        proc = self.spawn("postgres")
        vm_bytes = self.vm.nr_pages * PAGE
        pool = size_of(p.buffer_pool, vm_bytes)
        base = proc.mmap_anon(pool)
        npages = pool // PAGE
        # warm the pool from the table file, as a database does at start
        cost = 0.0
        data_file = "/var/lib/db/table.dat"
        fs = getattr(self.kernel, "fs", None)
        if fs is not None and fs.lookup(data_file) is None:
            fs.create(data_file, size(p.data_file), content=self._table_reader())
        if base:
            cost += proc.touch(base, pool, True, self.page_data("database", "pool", 0))
        yield self.wait(0.1 + cost)
        zipf = _Zipf(npages, p.zipf_s, self.rng)
        # popularity rank -> page: a fixed random permutation (hot pages are scattered)
        perm = list(range(npages))
        self.rng.shuffle(perm)
        interval = seconds(p.burst_interval)
        file_pages = size(p.data_file) // PAGE
        dirty: set[int] = set()
        last_checkpoint = self.env.now
        while proc.alive and not self.dead:
            n = max(1, round(p.ops_rate * interval))
            cost = 0.0
            reads, writes = [], []
            for _ in range(n):
                page = perm[zipf.draw()]
                if self.rng.random() < p.write_fraction:
                    writes.append(base + page * PAGE)
                    dirty.add(page)
                else:
                    reads.append(base + page * PAGE)
            if base:
                cost += proc.touch_pages(reads, False)
                cost += proc.touch_pages(writes, True)
            if self.env.now - last_checkpoint >= 5.0 and dirty and file_pages:
                # checkpoint: write dirty buffers to the table file (page cache, dirty)
                for page in sorted(dirty)[:1024]:
                    cost += proc.write_file(data_file, (page % file_pages) * PAGE, PAGE)
                dirty.clear()
                last_checkpoint = self.env.now
            self.work_done += n
            yield self.wait(n / p.ops_rate + cost)

    def _table_reader(self):
        app_page = self.content.app_page

        def read(index: int) -> bytes:
            return app_page("database", f"table/{index}", 0, True)

        return read


class CompileWorkload(Profile):
    """A parallel build: short-lived compiler processes (fork, read sources through the page
    cache, build an AST in a fresh heap, write an object file, exit). Heavy page cache,
    many address spaces created and destroyed. Work: files compiled."""

    name = "compile"
    unit = "files"

    def run(self):
        p = self.params
        fs = getattr(self.kernel, "fs", None)
        self.sources = []
        if fs is not None:
            total = size(p.sources)
            per = 64 * 1024
            for i in range(max(1, total // per)):
                path = f"/src/file{i:05d}.c"
                if fs.lookup(path) is None:
                    fs.create(path, per, content=self._src_reader(i))
                self.sources.append(path)
        make = self.spawn("make")
        for j in range(p.jobs):
            self.go(self.job(j, make))
        while make.alive and not self.dead:
            yield self.env.timeout(10.0)

    def _src_reader(self, i: int):
        app_page = self.content.app_page

        def read(index: int) -> bytes:
            return app_page("compile", f"src/{i}/{index}", 0, True)

        return read

    def job(self, j: int, make: Proc):
        p = self.params
        rss = size(p.process_rss)
        life = seconds(p.process_lifetime)
        obj_bytes = max(PAGE, size(p.objects) // max(1, len(self.sources) or 1))
        k = 0
        while make.alive and not self.dead:
            cc = self.adopt(make.fork())
            if cc is None:
                yield self.env.timeout(0.1)
                continue
            cost = 0.0
            src = self.sources[(j + k * p.jobs) % len(self.sources)] if self.sources else None
            if src:
                cost += cc.read_file(src, 0, 64 * 1024)
                # headers: a few more files
                for h in range(4):
                    cost += cc.read_file(self.sources[(j * 7 + k * 13 + h * 31) % len(self.sources)], 0, 16 * 1024)
            heap = cc.malloc(rss)
            if heap:
                cost += cc.touch(heap, rss, True, self.page_data("compile", f"cc{j}/{k}", cc.pid))
            if src:
                cost += cc.write_file(f"/build/{j}-{k % 256}.o", 0, obj_bytes)
            yield self.wait(life + cost)
            cc.exit(0)
            self.procs.remove(cc)
            self.work_done += 1
            k += 1


class JvmWorkload(Profile):
    """A JVM: the heap (-Xmx) is reserved and zeroed up front (AlwaysPreTouch), objects are
    bump-allocated through it, and every GC cycle touches the live part and resets the
    allocation pointer. The JVM never gives memory back. Work: MiB allocated."""

    name = "jvm"
    unit = "MiB"

    def run(self):
        p = self.params
        proc = self.spawn("java")
        heap_bytes = size_of(p.heap, self.vm.nr_pages * PAGE)
        base = proc.mmap_anon(heap_bytes)
        if not base:
            return
        from guestkernel.physmem import ZERO_PAGE

        cost = proc.touch(base, heap_bytes, True, ZERO_PAGE)  # pre-touch: zeroed pages
        yield self.wait(0.2 + cost)
        rate = size(p.allocation_rate)
        live = int(heap_bytes * p.live_fraction) & ~(PAGE - 1)
        top = live
        gc_every = seconds(p.gc_interval)
        last_gc = self.env.now
        step = 0.1
        allocated = 0  # bytes allocated since start: every chunk holds new objects
        while proc.alive and not self.dead:
            chunk = max(PAGE, int(rate * step)) & ~(PAGE - 1)
            if top + chunk > heap_bytes or self.env.now - last_gc >= gc_every:
                # GC: mark (read) and compact (write) the live set, reset the young space
                cost = proc.touch(base, live, False) + proc.touch(base, live, True)
                top = live
                last_gc = self.env.now
                yield self.wait(0.05 + cost)
                continue
            data = self.page_data("jvm", f"alloc{allocated >> 12}", proc.pid)
            cost = proc.touch(base + top, chunk, True, data)
            top += chunk
            allocated += chunk
            self.work_done += chunk / (1 << 20)
            yield self.wait(step + cost)


class MemhogWorkload(Profile):
    """numactl's memhog: allocates and touches memory at a rate until it holds `size`,
    then holds it (re-touching it) until the end or `stop_after`. Work: MiB touched."""

    name = "memhog"
    unit = "MiB"

    def run(self):
        p = self.params
        proc = self.spawn("memhog")
        total = size_of(p.size, self.vm.nr_pages * PAGE)
        rate = size(p.rate)
        stop = seconds(p.stop_after)
        chunk = max(PAGE, min(total, 4 << 20))
        blocks: list[tuple[int, int]] = []
        held = 0
        data_profile = p.content
        step = chunk / rate if rate else 0.01
        while proc.alive and not self.dead and held < total:
            n = min(chunk, total - held)
            addr = proc.mmap_anon(n)
            if not addr:
                yield self.env.timeout(step)
                continue
            blocks.append((addr, n))
            cost = proc.touch(addr, n, True, self.page_data(data_profile, f"blk{len(blocks)}", proc.pid))
            held += n
            self.work_done += n / (1 << 20)
            yield self.wait(n / rate + cost)
            if stop and self.env.now >= stop:
                break
        # hold: keep the memory warm
        while proc.alive and not self.dead:
            if stop and self.env.now >= stop:
                for addr, n in blocks:
                    proc.munmap(addr, n)
                blocks.clear()
                return
            cost = 0.0
            for addr, n in blocks[:: max(1, len(blocks) // 8)]:
                cost += proc.touch(addr, min(n, 64 * PAGE), False)
            self.work_done += 0.0
            yield self.wait(1.0 + cost)


class DbenchWorkload(Profile):
    """dbench N: the file-server load of NetBench as dbench replays it (Tridgell's
    client.txt, from a sniffer trace of a NetBench client: opens, stats, finds, reads,
    writes, closes, unlinks of Office files), the file system side only. Each of the
    `clients` runs as its own process, closed loop: an operation, then the next.

    A client's files (`file_set`, files of 1 MiB under /clients/clientN, on the guest's
    disk at start) are read `read_size` at a time, `hot_reads` of the reads falling in the
    first `hot_set` bytes and the rest anywhere in the others, through the page cache; a
    read that misses waits for the disk. Its writes (`write_size`, new data) go round a
    ring of 1 MiB temporary files (`temp_set`); a file is unlinked and created anew when
    the writes come back to it, so its pages die in the page cache or after writeback,
    as dbench's temporary files do. Between them `read_fraction` of the operations read.
    Each operation costs `op_cpu` of the client's CPU (smbd's work, the metadata
    operations included). Throughput is dbench's: MB read and written per second (work in
    MiB), the sum of the clients' (`client_work`, MiB per client, as dbench's per-client
    lines). Memory matters as on a real file server: what the page cache keeps of the hot
    sets and holds of dirty temporary data decides how often a client waits for the disk.
    A client whose hot set the cache holds whole waits only for its cold reads and runs
    many times faster than one that misses, so near the memory where the hot sets stop
    fitting the total moves by steps as clients become resident or are pushed out."""

    name = "dbench"
    unit = "MiB"

    FILE = 1 << 20  # bytes a file of the client's set or of its temporary ring

    def __init__(self, env, vm, params, content, seed: int, image=None) -> None:
        super().__init__(env, vm, params, content, seed, image)
        self.seed = seed  # each client draws from its own stream (its load file's order)
        self.client_work = [0.0] * max(0, int(params.clients))  # MiB read and written, per client

    def run(self):
        p = self.params
        fs = getattr(self.kernel, "fs", None)
        nfiles = max(1, size(p.file_set) // self.FILE)
        hot_pages = min(max(1, size(p.hot_set) // PAGE), nfiles * (self.FILE // PAGE))
        for c in range(p.clients):
            files = []
            for i in range(nfiles):
                path = f"/clients/client{c}/file{i:03d}"
                if fs is not None and fs.lookup(path) is None:
                    fs.create(path, self.FILE, content=self._file_reader(c, i))
                files.append(path)
            self.go(self.client(c, files, hot_pages))
        yield self.env.timeout(0)

    def _file_reader(self, c: int, i: int):
        app_page = self.content.app_page

        def read(index: int) -> bytes:
            return app_page("text", f"dbench/{c}/{i}/{index}", 0, True)

        return read

    def client(self, c: int, files: list[str], hot_pages: int):
        p = self.params
        proc = self.spawn(f"dbench{c}")
        task = proc.task
        per_file = self.FILE // PAGE
        all_pages = len(files) * per_file
        read_size = max(1, size(p.read_size))
        write_size = max(1, size(p.write_size))
        ring = max(1, size(p.temp_set) // self.FILE)
        op_cpu = seconds(p.op_cpu)
        # its own stream, from the workload's seed and the client: the operations a client
        # runs do not depend on how the others' are interleaved with them (as each dbench
        # client replays the same load file whatever the others do)
        rng = random.Random(xxhash.xxh64_intdigest(f"{self.seed}/client{c}".encode()))
        wpos = 0  # bytes written into the ring so far
        temp_fd = -1
        temp_path = ""
        yield self.wait(0.001)
        while proc.alive and not self.dead:
            cost = 0.0
            wcost = 0.0  # (read_file counts its own stall)
            done = 0
            for _ in range(p.burst_ops):
                if rng.random() < p.read_fraction:
                    if rng.random() < p.hot_reads or hot_pages >= all_pages:
                        page = rng.randrange(hot_pages)
                    else:
                        page = rng.randrange(hot_pages, all_pages)
                    off = (page % per_file) * PAGE
                    n = min(read_size, self.FILE - off)
                    cost += proc.read_file(files[page // per_file], off, n)
                    done += n
                else:
                    off = wpos % self.FILE
                    slot = (wpos // self.FILE) % ring
                    path = f"/clients/client{c}/temp{slot}"
                    try:
                        if path != temp_path:  # on to the next file of the ring: unlink, create anew
                            if temp_fd >= 0:
                                task.close(temp_fd)
                            try:
                                task.unlink(path)
                            except OSError:
                                pass
                            temp_fd = task.open(path, O_RDWR | O_CREAT, 0o644)
                            temp_path = path
                            cost += task.last_cost
                            wcost += task.last_cost
                        n = min(write_size, self.FILE - off)
                        buf = proc._buffer(max(read_size, write_size))
                        task.lseek(temp_fd, off, 0)
                        task.write(temp_fd, buf, n)
                        cost += task.last_cost
                        wcost += task.last_cost
                    except OSError:
                        n = 0
                        cost += getattr(task, "last_cost", 0.0)
                        wcost += getattr(task, "last_cost", 0.0)
                    wpos += n
                    done += n
                if not proc.alive:
                    break
            self.stall += wcost
            self.work_done += done / (1 << 20)
            self.client_work[c] += done / (1 << 20)
            yield self.wait(p.burst_ops * op_cpu + cost)
