"""KSM control loops as the field runs them: who sets ksmd's run, pages_to_scan, sleep.

Three controllers, chosen per host (HostConfig.ksm_control):

``ksmtuned`` -- the ksmtuned script (Red Hat, shipped by Debian's ksmtuned package; its
  defaults): every KSM_MONITOR_INTERVAL = 60 s, `adjust()`:

      total     = MemTotal (kB);  thres = max(total * KSM_THRES_COEF(20) / 100, KSM_THRES_CONST(2048))
      committed = sum of the RSS of the qemu processes (kB)
      free      = MemFree + Buffers + Cached (kB)
      if committed + thres < total and free > thres:  run = 0 (stop), npages unchanged
      else: npages += KSM_NPAGES_BOOST (300) if free < thres else KSM_NPAGES_DECAY (-50),
            clamped to [KSM_NPAGES_MIN 64, KSM_NPAGES_MAX 1250] (npages starts at 0);
            pages_to_scan = npages, sleep_millisecs = KSM_SLEEP_MSEC(10) * 16 GiB / total
            (in kB, integer, at least 10), run = 1

``mom`` -- oVirt MoM's KSM rules (mom-balloon.policy, "### KSM"): every policy interval
  (10 s) with mem_free averaged (StatAvg) over the last 10 host samples taken every 5 s:

      threshold = mem_available * 0.20;  committed = ksm_shareable (the guests' memory)
      if threshold + committed < mem_available and StatAvg(mem_free) > threshold: run = 0
      else: run = 1, sleep_millisecs = 10 * 16777216 / mem_available (integer, no floor),
            pages_to_scan += 300 if StatAvg(mem_free) < threshold else -50, within 64..1250
  (mem_available = MemTotal, mem_free = MemFree + Buffers + Cached, kB; pages_to_scan
  starts from ksmd's current value).

``advisor`` -- Linux 6.7+'s KSM advisor in scan-time mode (mm/ksm.c, scan_time_advisor),
  run at the end of every full scan; on selection pages_to_scan = advisor_min_pages_to_scan
  (500) and the context is zeroed (set_advisor_defaults). With integer arithmetic as the
  kernel's:

      scan_time   = whole seconds of the scan (at least 1)
      cpu_percent = ksmd CPU ms over the scan * 100 / (scan_time * 1000) (at least 1)
      factor      = target_scan_time(200) * 100 / scan_time (at least 1)
      change      = ewma(prev change, scan_time * 100 / previous scan_time (at least 1)),
                    ewma(p, c) = (70 * p + 30 * c) / 100
      pages       = pages_to_scan * 100 / factor * change / 100
      per_page_cost = pages_to_scan / cpu_percent (at least 1)
      pages = min(pages, per_page_cost * max_cpu(70)); max(pages, per_page_cost * 10);
              min(pages, max_pages_to_scan 30000)

The host on which these run has no page cache: free = the machine's free frames; a
VM's RSS is its frames mapped privately or shared (KSM pages count in every VM mapping
them, as RSS does; the zero page does not).

Mechanisms here are plain: `adjust(host, now)` / `end_of_scan(now, cpu)`; `KsmControl` is
the SimPy daemon. Each controller counts its adjustments (`adjustments`).
"""

from __future__ import annotations

from .p2m import P2M_PRIVATE, P2M_SHARED

CONTROLS = ("none", "ksmtuned", "mom", "advisor")
KB = 1024


def _host_kb(host) -> tuple[int, int]:
    """(MemTotal, MemFree + Buffers + Cached) of the host, kB."""
    m = host.machine
    return m.nr_frames * 4, max(m.nr_free, 0) * 4


class KsmTuned:
    """ksmtuned's adjust() with its shipped defaults."""

    name = "ksmtuned"

    def __init__(self, monitor_interval: float = 60.0, npages_boost: int = 300,
                 npages_decay: int = -50, npages_min: int = 64, npages_max: int = 1250,
                 sleep_msec: int = 10, thres_coef: int = 20, thres_const: int = 2048) -> None:
        self.interval = monitor_interval  # KSM_MONITOR_INTERVAL, seconds
        self.npages_boost = npages_boost  # KSM_NPAGES_BOOST, pages
        self.npages_decay = npages_decay  # KSM_NPAGES_DECAY, pages
        self.npages_min = npages_min  # KSM_NPAGES_MIN, pages
        self.npages_max = npages_max  # KSM_NPAGES_MAX, pages
        self.sleep_msec = sleep_msec  # KSM_SLEEP_MSEC, ms for a 16 GiB host
        self.thres_coef = thres_coef  # KSM_THRES_COEF, percent of MemTotal
        self.thres_const = thres_const  # KSM_THRES_CONST, kB
        self.npages = 0
        self.adjustments = 0

    def start(self, host) -> None:
        host.sharing.run = 0  # KSM is off until the first adjust (Linux boots with run 0)

    def adjust(self, host, now: float = 0.0) -> None:
        ksm = host.sharing
        total, free = _host_kb(host)
        thres = max(total * self.thres_coef // 100, self.thres_const)
        committed = sum((vm.p2m.nr[P2M_PRIVATE] + vm.p2m.nr[P2M_SHARED]) * 4 for vm in host.vms)
        self.adjustments += 1
        if committed + thres < total and free > thres:
            ksm.run = 0
            return
        delta = self.npages_boost if free < thres else self.npages_decay
        self.npages = min(max(self.npages + delta, self.npages_min), self.npages_max)
        sleep = self.sleep_msec * 16 * 1024 * 1024 // total
        ksm.pages_to_scan = self.npages
        ksm.sleep_millisecs = 10 if sleep <= 10 else sleep
        ksm.run = 1


class MomKsm:
    """oVirt MoM's KSM rules (mom-balloon.policy)."""

    name = "mom"

    def __init__(self, interval: float = 10.0, sample_interval: float = 5.0, history: int = 10,
                 pages_boost: int = 300, pages_decay: int = -50, npages_min: int = 64,
                 npages_max: int = 1250, sleep_ms_baseline: int = 10, free_percent: float = 0.20) -> None:
        self.interval = interval  # policy-engine interval, seconds
        self.sample_interval = sample_interval  # host-monitor interval, seconds
        self.history = history  # sample-history-length: StatAvg window, samples
        self.pages_boost = pages_boost
        self.pages_decay = pages_decay
        self.npages_min = npages_min
        self.npages_max = npages_max
        self.sleep_ms_baseline = sleep_ms_baseline  # ms for a 16 GiB host
        self.free_percent = free_percent  # ksm_free_percent
        self.samples: list[int] = []  # mem_free, kB
        self.adjustments = 0

    def start(self, host) -> None:
        host.sharing.run = 0

    def sample(self, host) -> None:
        self.samples.append(_host_kb(host)[1])
        del self.samples[: -self.history]

    def adjust(self, host, now: float = 0.0) -> None:
        ksm = host.sharing
        total, free = _host_kb(host)
        if not self.samples:
            self.samples.append(free)
        mem_free = sum(self.samples) / len(self.samples)  # StatAvg
        threshold = total * self.free_percent
        committed = sum(vm.nr_pages for vm in host.vms) * 4  # ksm_shareable, kB
        self.adjustments += 1
        if threshold + committed < total and mem_free > threshold:
            ksm.run = 0
            return
        ksm.run = 1
        ksm.sleep_millisecs = self.sleep_ms_baseline * 16777216 // total
        delta = self.pages_boost if mem_free < threshold else self.pages_decay
        ksm.pages_to_scan = min(max(ksm.pages_to_scan + delta, self.npages_min), self.npages_max)


class ScanTimeAdvisor:
    """mm/ksm.c's scan-time advisor (Linux 6.7+)."""

    name = "advisor"
    EWMA_WEIGHT = 30
    MIN_CPU = 10  # KSM_ADVISOR_MIN_CPU, percent

    def __init__(self, target_scan_time: int = 200, max_cpu: int = 70, min_pages_to_scan: int = 500,
                 max_pages_to_scan: int = 30000) -> None:
        self.target_scan_time = target_scan_time  # advisor_target_scan_time, seconds
        self.max_cpu = max_cpu  # advisor_max_cpu, percent
        self.min_pages_to_scan = min_pages_to_scan  # advisor_min_pages_to_scan
        self.max_pages_to_scan = max_pages_to_scan  # advisor_max_pages_to_scan
        self.interval = None  # runs at the end of every full scan, not on a timer
        self.start_scan = 0.0  # seconds
        self.scan_time = 0  # previous scan, whole seconds
        self.change = 0  # percent
        self.cpu_time = 0.0  # ksmd CPU seconds at the previous scan's end
        self.adjustments = 0
        self.last_cpu_percent = 0

    def start(self, host, now: float = 0.0) -> None:
        """set_advisor_defaults + advisor_start_scan."""
        ksm = host.sharing
        self.scan_time = self.change = 0
        self.cpu_time = ksm.scan_time
        ksm.pages_to_scan = self.min_pages_to_scan
        self.start_scan = now

    def end_of_scan(self, ksm, now: float) -> None:
        """scan_time_advisor at a full scan's end; the next scan starts at once."""
        # times in whole nanoseconds as ktime_get() and task_sched_runtime() give them
        scan_time = round((now - self.start_scan) * 1e9) // 10**6 // 1000
        scan_time = scan_time or 1
        cpu_time = ksm.scan_time
        cpu_ms = round((cpu_time - self.cpu_time) * 1e9) // 10**6
        cpu_percent = cpu_ms * 100 // (scan_time * 1000) or 1
        last = self.scan_time or scan_time
        factor = self.target_scan_time * 100 // scan_time or 1
        change = scan_time * 100 // last or 1
        change = ((100 - self.EWMA_WEIGHT) * self.change + self.EWMA_WEIGHT * change) // 100
        pages = ksm.pages_to_scan * 100 // factor
        pages = pages * change // 100
        per_page_cost = ksm.pages_to_scan // cpu_percent or 1
        pages = min(pages, per_page_cost * self.max_cpu)
        pages = max(pages, per_page_cost * self.MIN_CPU)
        pages = min(pages, self.max_pages_to_scan)
        self.change = change
        self.scan_time = scan_time
        self.cpu_time = cpu_time
        self.last_cpu_percent = cpu_percent
        self.adjustments += 1
        ksm.pages_to_scan = max(pages, 1)  # pages_to_scan 0 would stop ksmd's batches
        self.start_scan = now


def ksm_control(name: str):
    if name == "ksmtuned":
        return KsmTuned()
    if name == "mom":
        return MomKsm()
    if name == "advisor":
        return ScanTimeAdvisor()
    raise ValueError(f"ksm_control: must be one of {', '.join(CONTROLS)}, got {name!r}")


class KsmControl:
    """The daemon: ksmtuned's and MoM's loops on their timers; the advisor is called by
    the sharing scanner at the end of each full scan (PageSharing.full_scan_hooks)."""

    def __init__(self, env, host, control) -> None:
        self.env = env
        self.host = host
        self.control = control
        if isinstance(control, ScanTimeAdvisor):
            control.start(host, env.now)
            host.sharing.full_scan_hooks.append(lambda ksm: control.end_of_scan(ksm, ksm.now))
            self.process = None
        else:
            control.start(host)
            self.process = env.process(self._run())

    def _run(self):
        c = self.control
        if isinstance(c, MomKsm):
            ticks = max(1, round(c.interval / c.sample_interval))
            while True:
                for _ in range(ticks):
                    c.sample(self.host)
                    yield self.env.timeout(c.sample_interval)
                c.adjust(self.host, self.env.now)
        else:
            while True:
                yield self.env.timeout(c.interval)  # ksmtuned sleeps first, then adjusts
                c.adjust(self.host, self.env.now)
