"""The guest's balloon driver, as drivers/virtio/virtio_balloon.c.

Overview
--------
The host sets a target (`set_target`, virtio's `num_pages` config field, the
config-change interrupt that queues update_balloon_size_func). The driver moves toward it
in requests of at most VIRTIO_BALLOON_ARRAY_PFNS_MAX (256) pages:

fill_balloon     allocates pages with balloon_page_alloc()'s GFP_HIGHUSER |
                 __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN — the kernel may run one
                 light pass of its own reclaim (page cache first, then swap, as its reclaim
                 policy decides; that choice is the point of ballooning) but never
                 OOM-kills for the balloon — marks them PG_balloon (PG_offline in 6.x),
                 enqueues them at the head of the balloon's list, and tells the host
                 through the inflateq (`phys.release(pfn, RELEASE_BALLOON)`). Without
                 VIRTIO_BALLOON_F_DEFLATE_ON_OOM each page also leaves the kernel's managed
                 memory (adjust_managed_page_count(page, -1)): MemTotal, CommitLimit and
                 the OOM killer's totalpages shrink with the balloon. When an allocation
                 fails the driver is "out of puff": it stops the request and sleeps 200 ms
                 (msleep(200)) before trying again.
leak_balloon     dequeues pages from the head (the most recently inflated first), tells
                 the host through the deflateq first (VIRTIO_BALLOON_F_MUST_TELL_HOST:
                 `phys.reuse(pfn)`), then gives them back to the managed count and the
                 buddy allocator (release_pages_balloon). The next touch of such a frame
                 makes the host back it again.
OOM notifier     with DEFLATE_ON_OOM, out_of_memory() first calls
                 virtio_balloon_oom_notify, which leaks VIRTIO_BALLOON_OOM_NR_PAGES (256)
                 pages; the kill is skipped when that freed something. The driver then
                 holds its new size (its work is only queued again by a config change):
                 `gave_back` tells the host's controller what the guest took back.

Which pages the balloon gets is the allocator's choice, as in Linux: the per-CPU hot list
first (pages freed lately: the host backs them, so each frees a machine frame), then the
buddy free lists, whose large blocks in a guest that has not used all its memory were
never touched (the host never backed them: ballooning them frees nothing). The host
credits the balloon per page, with the pages it holds now whose frames were backed when
released (hypervisor/vm.py `release`/`reuse`) and before the driver allocated them: with
init_on_alloc (Debian's and Ubuntu's 6.x kernels) post_alloc_hook zeroes the driver's
page, which makes the host back a never-touched frame just before the inflateq frees it
again; that costs a fault and gives nothing back (`watch_backing` lets the host tell).
The balloon's size (`actual`: ESX's "balloon", esxtop MCTLSZ; virtio's `actual`) counts
every page the driver holds, backed or not.

The stats virtqueue (`update_balloon_stats`) fills the 16 statistics of Linux 6.12 in
its order and units (bytes for memory, counts for events); the host reads them when it
polls (hypervisor: VM.poll_stats), so between two polls it sees the old values.

Balloon compaction (CONFIG_BALLOON_COMPACTION, built by Debian and Ubuntu; 6.x guests):
balloon_page_alloc() asks for GFP_HIGHUSER_MOVABLE, so balloon pages sit in MOVABLE
pageblocks, and compaction migrates them like LRU pages (mm/balloon_compaction.c):
balloon_page_isolate takes the page off the balloon's list, virtballoon_migratepage puts
the new page at the list's head, tells the host to inflate the new frame and deflate the
old one (no copy: a balloon page holds nothing), and moves the managed-page count if the
zone changed; a failed migration puts the page back (balloon_page_putback). 2.6-era
guests (balloon compaction came in 3.8) allocate GFP_HIGHUSER and never migrate them.

Counters in the guest's /proc/vmstat: balloon_inflate, balloon_deflate, balloon_migrate,
nr_balloon_pages.
"""

from __future__ import annotations

from .gfp import __GFP_NOMEMALLOC, __GFP_NORETRY, __GFP_NOWARN, GFP_HIGHUSER, GFP_HIGHUSER_MOVABLE
from .page import PageList, PG_balloon
from .physmem import RELEASE_BALLOON
from .units import PAGE_SHIFT

# balloon_page_alloc(): balloon_mapping_gfp_mask() (GFP_HIGHUSER without balloon
# compaction) | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN
GFP_BALLOON = GFP_HIGHUSER | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN
# with CONFIG_BALLOON_COMPACTION balloon_mapping_gfp_mask() is GFP_HIGHUSER_MOVABLE
GFP_BALLOON_MOVABLE = GFP_HIGHUSER_MOVABLE | __GFP_NOMEMALLOC | __GFP_NORETRY | __GFP_NOWARN
VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256  # pages per inflate/deflate request
OOM_DEFLATE_PAGES = 256  # VIRTIO_BALLOON_OOM_NR_PAGES: pages given back per OOM notification
OUT_OF_PUFF_SLEEP = 0.2  # seconds: fill_balloon's msleep(200) after a failed allocation

# include/uapi/linux/virtio_balloon.h (6.12): tag -> name, in tag order; memory in bytes
VIRTIO_BALLOON_S_NAMES = (
    "swap-in",  # 0 VIRTIO_BALLOON_S_SWAP_IN, bytes
    "swap-out",  # 1 VIRTIO_BALLOON_S_SWAP_OUT, bytes
    "major-faults",  # 2 VIRTIO_BALLOON_S_MAJFLT
    "minor-faults",  # 3 VIRTIO_BALLOON_S_MINFLT
    "free-memory",  # 4 VIRTIO_BALLOON_S_MEMFREE, bytes
    "total-memory",  # 5 VIRTIO_BALLOON_S_MEMTOT, bytes
    "available-memory",  # 6 VIRTIO_BALLOON_S_AVAIL, bytes
    "disk-caches",  # 7 VIRTIO_BALLOON_S_CACHES, bytes
    "hugetlb-allocations",  # 8 VIRTIO_BALLOON_S_HTLB_PGALLOC
    "hugetlb-failures",  # 9 VIRTIO_BALLOON_S_HTLB_PGFAIL
    "oom-kills",  # 10 VIRTIO_BALLOON_S_OOM_KILL (6.12)
    "alloc-stalls",  # 11 VIRTIO_BALLOON_S_ALLOC_STALL (6.12)
    "async-scans",  # 12 VIRTIO_BALLOON_S_ASYNC_SCAN, bytes (6.12)
    "direct-scans",  # 13 VIRTIO_BALLOON_S_DIRECT_SCAN, bytes (6.12)
    "async-reclaims",  # 14 VIRTIO_BALLOON_S_ASYNC_RECLAIM, bytes (6.12)
    "direct-reclaims",  # 15 VIRTIO_BALLOON_S_DIRECT_RECLAIM, bytes (6.12)
)
VIRTIO_BALLOON_S_NR = len(VIRTIO_BALLOON_S_NAMES)  # 16


def update_balloon_stats(kernel) -> list[tuple[int, int]]:
    """update_balloon_stats (6.12): the (tag, value) pairs the guest puts on the stats
    virtqueue, in the driver's order: the vm events first (swap in/out, faults, OOM kills,
    allocation stalls summed over zones, kswapd/direct scans and steals), the hugetlb
    pair (no hugetlb pages here: 0), then free, total, available and caches."""
    ev = kernel.vmstat
    get = ev.get
    alloc = kernel.page_alloc
    stall = sum(v for k, v in ev.items() if k.startswith("allocstall_"))
    avail = kernel.si_mem_available()
    out = [
        (0, get("pswpin", 0) << PAGE_SHIFT),
        (1, get("pswpout", 0) << PAGE_SHIFT),
        (2, get("pgmajfault", 0)),
        (3, get("pgfault", 0)),
        (10, get("oom_kill", 0)),
        (11, stall),
        (12, get("pgscan_kswapd", 0) << PAGE_SHIFT),
        (13, get("pgscan_direct", 0) << PAGE_SHIFT),
        (14, get("pgsteal_kswapd", 0) << PAGE_SHIFT),
        (15, get("pgsteal_direct", 0) << PAGE_SHIFT),
        (8, 0),
        (9, 0),
        (4, alloc.nr_free_pages() << PAGE_SHIFT),
        (5, alloc.totalram_pages() << PAGE_SHIFT),
        (6, max(0, avail) << PAGE_SHIFT),
        (7, get("nr_file_pages", 0) << PAGE_SHIFT),
    ]
    return out


class BalloonDriver:
    """Balloon driver of one guest `kernel`. Sizes in pages, rates in pages per second."""

    def __init__(
        self,
        kernel,
        rate: float = 25_600,
        deflate_on_oom: bool = False,
        oom_pages: int = OOM_DEFLATE_PAGES,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"balloon rate: must be positive pages/s, got {rate}")
        self.kernel = kernel
        self.rate = rate  # pages per second, inflate or deflate
        self.deflate_on_oom = deflate_on_oom  # VIRTIO_BALLOON_F_DEFLATE_ON_OOM
        self.oom_pages = oom_pages
        self.target = 0  # pages the host asks for (num_pages)
        # balloon_dev_info->pages: enqueued and dequeued at its head (list_add / list_del)
        self.pages = PageList("balloon")
        self.isolated_pages = 0  # taken off the list by compaction, being migrated
        # CONFIG_BALLOON_COMPACTION: movable balloon pages (6.x)
        self.movable = kernel.config.era == "6.x"
        self.gfp = GFP_BALLOON_MOVABLE if self.movable else GFP_BALLOON
        kernel.balloon_driver = self  # the balloon_dev_info compaction and migration find
        # counters
        self.inflated = 0  # pages given to the host, cumulative
        self.deflated = 0  # pages taken back, cumulative
        self.alloc_failures = 0  # "Out of puff!": requests ended by a failed allocation
        self.oom_deflated = 0  # pages given back on OOM notifications
        self.gave_back = 0  # pages the guest took back on its own (OOM), since the host looked
        self.puff_sleep = 0.0  # seconds the driver must sleep before its next request
        self.stall = 0.0  # seconds spent beneath the guest (host costs of allocations)
        if deflate_on_oom:
            self._prev_oom_hook = kernel.page_alloc.oom_hook
            kernel.page_alloc.oom_hook = self._oom_notify

    @property
    def actual(self) -> int:
        """Pages currently in the balloon (virtio's `actual`)."""
        return self.pages.nr + self.isolated_pages

    def set_target(self, pages: int) -> None:
        self.target = max(0, min(int(pages), self.kernel.nr_pages))

    def inflate(self, n: int) -> int:
        """fill_balloon, request after request: take up to `n` pages from the guest and
        give them to the host; how many. Stops at the first failed allocation (out of
        puff: `puff_sleep` is set to 200 ms)."""
        k = self.kernel
        alloc = k.alloc_pages
        release = k.phys.release
        zone_of = k.page_alloc.zone_of
        managed = not self.deflate_on_oom
        pages = self.pages
        vm = k.vmstat
        stall0 = k.stall
        done = 0
        gfp = self.gfp
        # the host tells what backed a page before the guest allocated it from what the
        # allocation itself backed (init_on_alloc zeroes the page: post_alloc_hook)
        watch = getattr(k.phys, "watch_backing", None)
        while done < n:
            if watch is not None:
                watch(True)
            page = alloc(gfp)
            if page is None:
                self.alloc_failures += 1
                self.puff_sleep = OUT_OF_PUFF_SLEEP
                break
            page.flags |= PG_balloon
            if managed:
                zone_of(page.pfn).managed_pages -= 1  # adjust_managed_page_count(page, -1)
            release(page.pfn, RELEASE_BALLOON)
            pages.add(page)  # balloon_page_insert: list_add
            done += 1
        if watch is not None:
            watch(False)
        self.stall += k.stall - stall0
        self.inflated += done
        vm["balloon_inflate"] = vm.get("balloon_inflate", 0) + done
        vm["nr_balloon_pages"] = self.actual
        return done

    def deflate(self, n: int) -> int:
        """leak_balloon: give up to `n` pages back to the guest's allocator; how many."""
        k = self.kernel
        pages = self.pages
        n = min(n, pages.nr)
        if not n:
            return 0
        pop = pages.pop
        leaked = [pop() for _ in range(n)]  # dequeued from the head: the most recent first
        reuse = k.phys.reuse
        for page in leaked:  # tell_host(deflate_vq) before the pages are used
            reuse(page.pfn)
        zone_of = k.page_alloc.zone_of
        managed = not self.deflate_on_oom
        for page in leaked:  # release_pages_balloon
            page.flags &= ~PG_balloon
            if managed:
                zone_of(page.pfn).managed_pages += 1
            k.free_pages(page)
        self.deflated += n
        vm = k.vmstat
        vm["balloon_deflate"] = vm.get("balloon_deflate", 0) + n
        vm["nr_balloon_pages"] = self.actual
        return n

    # ---- balloon compaction (mm/balloon_compaction.c, virtio_balloon.c)
    def isolate(self, page) -> bool:
        """balloon_page_isolate: off the balloon's list for migration."""
        if not self.movable or not page.flags & PG_balloon or page.lru_next is None:
            return False
        self.pages.remove(page)
        self.isolated_pages += 1
        return True

    def putback(self, page) -> None:
        """balloon_page_putback: a page whose migration failed goes back on the list."""
        self.pages.add(page)
        self.isolated_pages -= 1

    def migratepage(self, new, old) -> int:
        """virtballoon_migratepage: `new` (a free frame, _count 1) joins the balloon at
        the head of its list and is inflated to the host, then `old` leaves it and is
        deflated (tell_host on inflateq, then deflateq); no bytes are copied. A change of
        zone moves the managed-page count (without DEFLATE_ON_OOM). Counts
        balloon_migrate. The caller frees `old`. Returns MIGRATEPAGE_SUCCESS (0)."""
        k = self.kernel
        zone_of = k.page_alloc.zone_of
        if not self.deflate_on_oom:
            zo, zn = zone_of(old.pfn), zone_of(new.pfn)
            if zo is not zn:
                zo.managed_pages += 1
                zn.managed_pages -= 1
        new.flags |= PG_balloon
        self.pages.add(new)  # balloon_page_insert
        self.isolated_pages -= 1
        vm = k.vmstat
        vm["balloon_migrate"] = vm.get("balloon_migrate", 0) + 1
        k.phys.release(new.pfn, RELEASE_BALLOON)  # inflate "newpage"
        old.flags &= ~PG_balloon  # balloon_page_delete, balloon_page_finalize
        k.phys.reuse(old.pfn)  # deflate "page"
        return 0

    def step(self, max_pages: int) -> int:
        """Move toward the target by at most `max_pages`; pages moved (+ in, - out)."""
        diff = self.target - self.actual
        if diff > 0:
            return self.inflate(min(diff, max_pages))
        if diff < 0:
            return -self.deflate(min(-diff, max_pages))
        return 0

    def _oom_notify(self, gfp: int, order: int, highest) -> bool:
        """virtio_balloon_oom_notify: deflate before the OOM killer runs."""
        freed = self.deflate(min(self.oom_pages, self.pages.nr))
        if freed:
            self.oom_deflated += freed
            self.gave_back += freed
            # update_balloon_size(): the driver holds its new size until the host
            # changes num_pages again
            self.target = min(self.target, self.actual)
            return True
        if self._prev_oom_hook is not None:
            return self._prev_oom_hook(gfp, order, highest)
        return False


class BalloonDaemon:
    """update_balloon_size_func on a clock: every `interval` seconds, a request of up to
    the pages the driver's `rate` allows (at most VIRTIO_BALLOON_ARRAY_PFNS_MAX a request,
    as many requests as the rate gives); after a failed allocation it sleeps 200 ms
    (SimPy process)."""

    def __init__(self, env, driver: BalloonDriver, interval: float = 0.01) -> None:
        self.env = env
        self.driver = driver
        self.interval = interval  # seconds between requests
        self.process = env.process(self._run())

    def _run(self):
        d = self.driver
        carry = 0.0
        timeout = self.env.timeout
        while True:
            carry += d.rate * self.interval
            n = int(carry)
            if n:
                carry -= n
                if d.target != d.actual:
                    d.step(n)
                    if d.puff_sleep:
                        wait, d.puff_sleep = d.puff_sleep, 0.0
                        carry = 0.0
                        yield timeout(wait)
                        continue
                else:
                    carry = 0.0
            yield timeout(self.interval)
