"""The guest's balloon driver (virtio_balloon / vmmemctl).

The host sets a target (`set_target`, like virtio's num_pages config field). Inflating
allocates guest pages with GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOWARN — so the kernel may
run one light pass of its own reclaim (page cache first, then swap, as its reclaim policy
decides; that choice is the point of ballooning) but never OOM-kills for the balloon —
marks them PG_balloon, and `release`s each frame to the host through `phys.release`.
Deflating frees them back to the buddy allocator; the next touch of such a frame makes
the host back it again. An allocation failure ends the inflation step (retried later).

Which pages the balloon gets is the allocator's choice, as in Linux: the per-CPU hot list
first (pages freed lately: the host backs them, so each frees a machine frame), then the
buddy free lists, whose large blocks in a guest that has not used all its memory were
never touched (the host never backed them: ballooning them frees nothing). The host
counts only what it took back (hypervisor/balloon.py) and raises the target until the
frames it needs come back.

Rate: at most `rate` pages per second (default 25 600 = 100 MiB/s, i.e. the 256-page
requests of virtio-balloon every 10 ms). With `deflate_on_oom` the driver gives back
`oom_pages` (256) pages each time the guest is about to OOM-kill
(VIRTIO_BALLOON_F_DEFLATE_ON_OOM), and the kill is skipped when that freed something.

Counters in the guest's /proc/vmstat: balloon_inflate, balloon_deflate, nr_balloon_pages.
"""

from __future__ import annotations

from .gfp import __GFP_NORETRY, __GFP_NOWARN, GFP_HIGHUSER
from .page import PG_balloon

GFP_BALLOON = GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOWARN
VIRTIO_BALLOON_ARRAY_PFNS_MAX = 256  # pages per inflate/deflate request
OOM_DEFLATE_PAGES = 256  # pages given back per OOM notification


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
        self.deflate_on_oom = deflate_on_oom
        self.oom_pages = oom_pages
        self.target = 0  # pages the host asks for
        self.pages: list = []  # Page descriptors held, most recent last
        # counters
        self.inflated = 0  # pages given to the host, cumulative
        self.deflated = 0  # pages taken back, cumulative
        self.alloc_failures = 0  # inflation steps ended by a failed allocation
        self.oom_deflated = 0  # pages given back on OOM notifications
        self.stall = 0.0  # seconds spent beneath the guest (host costs of allocations)
        if deflate_on_oom:
            self._prev_oom_hook = kernel.page_alloc.oom_hook
            kernel.page_alloc.oom_hook = self._oom_notify

    @property
    def actual(self) -> int:
        """Pages currently in the balloon (virtio's `actual`)."""
        return len(self.pages)

    def set_target(self, pages: int) -> None:
        self.target = max(0, min(int(pages), self.kernel.nr_pages))

    def inflate(self, n: int) -> int:
        """Take up to `n` pages from the guest and give them to the host; how many."""
        k = self.kernel
        alloc = k.alloc_pages
        release = k.phys.release
        pages = self.pages
        vm = k.vmstat
        stall0 = k.stall
        done = 0
        while done < n:
            page = alloc(GFP_BALLOON)
            if page is None:
                self.alloc_failures += 1
                break
            page.flags |= PG_balloon
            release(page.pfn)
            pages.append(page)
            done += 1
        self.stall += k.stall - stall0
        self.inflated += done
        vm["balloon_inflate"] = vm.get("balloon_inflate", 0) + done
        vm["nr_balloon_pages"] = len(pages)
        return done

    def deflate(self, n: int) -> int:
        """Give up to `n` pages back to the guest's allocator; how many."""
        k = self.kernel
        pages = self.pages
        done = 0
        while done < n and pages:
            page = pages.pop()
            page.flags &= ~PG_balloon
            k.free_pages(page)
            done += 1
        self.deflated += done
        vm = k.vmstat
        vm["balloon_deflate"] = vm.get("balloon_deflate", 0) + done
        vm["nr_balloon_pages"] = len(pages)
        return done

    def step(self, max_pages: int) -> int:
        """Move toward the target by at most `max_pages`; pages moved (+ in, - out)."""
        diff = self.target - len(self.pages)
        if diff > 0:
            return self.inflate(min(diff, max_pages))
        if diff < 0:
            return -self.deflate(min(-diff, max_pages))
        return 0

    def _oom_notify(self, gfp: int, order: int, highest) -> bool:
        """virtio_balloon_oom_notify: deflate before the OOM killer runs."""
        freed = self.deflate(min(self.oom_pages, len(self.pages)))
        if freed:
            self.oom_deflated += freed
            # the host must not inflate these straight back
            self.target = min(self.target, len(self.pages))
            return True
        if self._prev_oom_hook is not None:
            return self._prev_oom_hook(gfp, order, highest)
        return False


class BalloonDaemon:
    """Runs the driver every `interval` seconds at its rate (SimPy process)."""

    def __init__(self, env, driver: BalloonDriver, interval: float = 0.01) -> None:
        self.env = env
        self.driver = driver
        self.interval = interval  # seconds between requests
        self.process = env.process(self._run())

    def _run(self):
        d = self.driver
        carry = 0.0
        while True:
            carry += d.rate * self.interval
            n = int(carry)
            if n:
                carry -= n
                if d.target != d.actual:
                    d.step(n)
                else:
                    carry = 0.0
            yield self.env.timeout(self.interval)
