"""Free page reporting (mm/page_reporting.c), as virtio-balloon's reporting queue uses it.

Overview
--------
The guest tells the host which free blocks it does not use, and the host discards their
frames; the guest keeps them on its free lists. A block reallocated and touched later is
simply faulted in again by the host.

Trigger      __free_one_page calls page_reporting_notify_free(order) with the order of the
             block it just made (after merging). At page_reporting_order (pageblock_order:
             9 on x86_64 and i386 PAE, 10 on i386 without PAE, i.e. 2 or 4 MiB) or above it
             requests a report: IDLE -> REQUESTED, and the work runs PAGE_REPORTING_DELAY
             (2 s) later, so a sizable queue builds up. A request while REQUESTED or
             ACTIVE changes nothing (ACTIVE -> REQUESTED: another pass after this one).
Pass         page_reporting_process: ACTIVE; for every zone with free pages above its LOW
             watermark + PAGE_REPORTING_CAPACITY (32) blocks of the reporting order
             (page_reporting_process_zone), for each order from page_reporting_order to
             MAX_ORDER: page_reporting_cycle walks the free list, skipping PG_reported
             blocks, with a budget of DIV_ROUND_UP(nr_free, 32 * 16) reports; unreported
             blocks are isolated (__isolate_free_page: only while the zone stays above MIN +
             the block) into a scatterlist of 32, reported when it is full, then put back
             at the tail of their free list without a new notification
             (__putback_isolated_page) and marked PG_reported if they did not merge
             (page_reporting_drain). A leftover partial list is reported at the end of the
             zone. When the budget runs out the state goes back to REQUESTED; at the end of
             the pass REQUESTED schedules another pass 2 s later, ACTIVE goes IDLE.
Cleared      PG_reported is cleared whenever a block leaves its free list
             (del_page_from_free_list: allocation, split, merge). hvsim clears it where
             PG_buddy is cleared, at no cost.

The host (`phys.release(pfn, RELEASE_REPORTED)` for every page of a reported block)
frees what backed those frames and credits them to "free page reporting" until the guest
touches them again. Reporting a block whose frames the host never backed changes nothing.
"""

from __future__ import annotations

from .page import PG_buddy, PG_reported
from .page_alloc import MIGRATE_ISOLATE, MIGRATE_TYPES
from .physmem import RELEASE_REPORTED

PAGE_REPORTING_DELAY = 2.0  # seconds: 2 * HZ
PAGE_REPORTING_CAPACITY = 32  # blocks per report (the scatterlist)
PAGE_REPORTING_IDLE, PAGE_REPORTING_REQUESTED, PAGE_REPORTING_ACTIVE = 0, 1, 2


def pageblock_order(config) -> int:
    """pageblock_order = HUGETLB_PAGE_ORDER: 2 MiB pages (order 9) on x86_64 and i386 PAE,
    4 MiB (order 10) on i386 without PAE."""
    if config.arch == "i386" and not config.pae:
        return 10
    return 9


class PageReporting:
    """page_reporting_dev_info of one guest kernel (virtio-balloon's reporting device).

    `register()` hooks page_reporting_notify_free into the kernel's allocator and requests
    the initial flush. `wake`, when set (by the daemon), is called when a request must
    schedule a pass; without a clock, call `process()` yourself."""

    def __init__(self, kernel, order: int | None = None) -> None:
        self.kernel = kernel
        self.order = pageblock_order(kernel.config) if order is None else order
        self.state = PAGE_REPORTING_IDLE
        self.wake = None  # callable: schedule page_reporting_process in PAGE_REPORTING_DELAY
        self.scheduled = False  # a pass is scheduled (delayed work pending)
        # counters
        self.reports = 0  # calls to the device's report()
        self.reported_blocks = 0  # blocks reported
        self.reported_pages = 0  # pages in those blocks
        self.frames_discarded = 0  # of those, frames whose backing the host freed
        self.passes = 0

    def register(self) -> None:
        """page_reporting_register: the allocator notifies us; the initial flush request."""
        alloc = self.kernel.page_alloc
        alloc.page_reporting_order = self.order
        alloc.page_reporting_notify = self.notify
        self.request()

    # -- requests ----------------------------------------------------------------------
    def notify(self) -> None:
        """__page_reporting_notify -> __page_reporting_request."""
        state = self.state
        if state == PAGE_REPORTING_REQUESTED:
            return
        self.state = PAGE_REPORTING_REQUESTED
        if state != PAGE_REPORTING_IDLE:
            return
        self._schedule()

    request = notify

    def _schedule(self) -> None:
        self.scheduled = True
        if self.wake is not None:
            self.wake()

    # -- the pass ----------------------------------------------------------------------
    def process(self) -> int:
        """page_reporting_process: one pass over every zone; returns pages reported."""
        self.scheduled = False
        self.passes += 1
        self.state = PAGE_REPORTING_ACTIVE
        before = self.reported_pages
        for zone in self.kernel.page_alloc.zones:
            self._process_zone(zone)
        if self.state == PAGE_REPORTING_REQUESTED:
            self._schedule()  # more pages may come: another pass 2 s from now
        else:
            self.state = PAGE_REPORTING_IDLE
        return self.reported_pages - before

    def _process_zone(self, zone) -> None:
        """page_reporting_process_zone."""
        alloc = self.kernel.page_alloc
        if not zone.managed_pages:
            return
        mark = zone.low_wmark() + (PAGE_REPORTING_CAPACITY << self.order)
        if not alloc.zone_watermark_ok(zone, 0, mark, 0, 0):
            return
        sgl: list = []
        for order in range(self.order, len(zone.free_area)):
            for mt in range(MIGRATE_TYPES):
                if mt == MIGRATE_ISOLATE:  # never pulled from the isolate list
                    continue
                if not self._cycle(zone, order, mt, sgl):
                    return
        if sgl:
            self._report(zone, sgl)

    def _cycle(self, zone, order: int, mt: int, sgl: list) -> bool:
        """page_reporting_cycle over free_area[order].free_list[mt]; False if the pass
        must stop."""
        alloc = self.kernel.page_alloc
        area = zone.free_area[order]
        head = area.free_list[mt]
        if head.lru_next is head:
            return True
        cap = PAGE_REPORTING_CAPACITY
        budget = -(-area.nr_free // (cap * 16))  # DIV_ROUND_UP(nr_free, CAPACITY * 16)
        min_mark = zone.min_wmark()
        page = head.lru_next
        while page is not head:
            nxt = page.lru_next
            if page.flags & PG_reported:  # skip over the reported pages
                page = nxt
                continue
            if budget < 0:  # budget used up: more processing requested
                self.state = PAGE_REPORTING_REQUESTED
                break
            if len(sgl) < cap:
                # __isolate_free_page: only while the zone stays above MIN + the block
                if not alloc.zone_watermark_ok(zone, 0, min_mark + (1 << order), 0, 0):
                    break
                head.remove(page)
                area.nr_free -= 1
                page.flags &= ~(PG_buddy | PG_reported)
                page.private = 0
                zone.nr_free -= 1 << order
                sgl.append((page, order))
                page = nxt
                continue
            # the list is full: this page becomes the list's first, then report
            _rotate_to_front(head, page)
            self._report(zone, sgl)
            budget -= 1
            page = head.lru_next  # restart from the first entry
        if page is not head and head.lru_next is not page:
            _rotate_to_front(head, page)  # leftover pages to the head of the list
        return True

    def _report(self, zone, sgl: list) -> None:
        """prdev->report (virtballoon_free_page_report: the host discards the blocks), then
        page_reporting_drain: back at the tail of the free lists, PG_reported unless
        merged."""
        k = self.kernel
        release = k.phys.release
        discard_range = getattr(k.phys, "discard_range", None)
        alloc = k.page_alloc
        self.reports += 1
        for page, order in sgl:
            n = 1 << order
            pfn = page.pfn
            if discard_range is not None:
                self.frames_discarded += discard_range(pfn, n)
            else:
                for p in range(pfn, pfn + n):
                    self.frames_discarded += release(p, RELEASE_REPORTED)
            self.reported_blocks += 1
            self.reported_pages += n
        for page, order in sgl:
            alloc._free_one_page(zone, page, page.pfn, order, to_tail=True, report=False)
            if page.flags & PG_buddy and page.private == order:
                page.flags |= PG_reported
        sgl.clear()

    def counters(self) -> dict[str, int]:
        return {
            "page_reporting_reports": self.reports,
            "page_reporting_blocks": self.reported_blocks,
            "page_reporting_pages": self.reported_pages,
            "page_reporting_discarded": self.frames_discarded,
        }


def _rotate_to_front(head, page) -> None:
    """list_rotate_to_front(&page->lru, head): `page` becomes the first entry, the
    entries before it move behind the old tail (list_move_tail of the head)."""
    if head.lru_next is page:
        return
    p, n = head.lru_prev, head.lru_next
    p.lru_next = n
    n.lru_prev = p
    prev = page.lru_prev
    prev.lru_next = head
    head.lru_prev = prev
    head.lru_next = page
    page.lru_prev = head


class PageReportingDaemon:
    """The delayed work of page reporting: PAGE_REPORTING_DELAY after a request, a pass
    (SimPy process)."""

    def __init__(self, env, reporting: PageReporting) -> None:
        self.env = env
        self.reporting = reporting
        self._kick = env.event()
        reporting.wake = self._wake
        self.process = env.process(self._run())

    def _wake(self) -> None:
        if not self._kick.triggered:
            self._kick.succeed()

    def _run(self):
        r = self.reporting
        env = self.env
        while True:
            if not r.scheduled:
                yield self._kick
                self._kick = env.event()
            yield env.timeout(PAGE_REPORTING_DELAY)
            r.process()
