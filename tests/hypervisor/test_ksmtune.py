"""KSM control loops: ksmtuned's adjust() (the ksmtuned script's defaults: 60 s, +300/-50
within 64..1250, threshold 20 % of MemTotal or 2048 kB, sleep 10 ms * 16 GiB / MemTotal,
at least 10), oVirt MoM's KSM rules (mom-balloon.policy) and mm/ksm.c's scan_time_advisor
(Linux 6.7+), with the arithmetic of their sources."""

import simpy

from experiments.config import config_from_dict
from experiments.scenario import host_config
from hypervisor.host import Host, HostConfig
from hypervisor.ksmtune import KsmTuned, MomKsm, ScanTimeAdvisor

from .helpers import page

P = 4096


def host_with_image(tmp_path, pages, memory="64MiB", env=None, **kw):
    """A 64 MiB host (16384 frames, MemTotal 65536 kB) with one VM backing `pages` frames."""
    img = tmp_path / "img.raw"
    img.write_bytes(b"".join(page(i) for i in range(pages)))
    host = Host(HostConfig(memory=memory, swap_size=0, compression=False, ballooning=False,
                           admission_control=False, **kw), env=env)
    host.create_vm_from_image("vm", str(img))
    return host


def test_ksmtuned_stops_ksm_when_memory_is_plenty(tmp_path):
    host = host_with_image(tmp_path, 1000)  # committed 4000 kB + thres 13107 < 65536
    t = KsmTuned()
    t.start(host)
    t.adjust(host)
    assert host.sharing.run == 0 and t.npages == 0


def test_ksmtuned_boosts_under_pressure_and_decays_when_free(tmp_path):
    host = host_with_image(tmp_path, 14000)  # free 2384 frames = 9536 kB < thres 13107 kB
    t = KsmTuned()
    t.start(host)
    seen = []
    for _ in range(6):
        t.adjust(host)
        seen.append(host.sharing.pages_to_scan)
    assert seen == [300, 600, 900, 1200, 1250, 1250]  # +300, clamped at KSM_NPAGES_MAX
    assert host.sharing.run == 1
    assert host.sharing.sleep_millisecs == 10 * 16 * 1024 * 1024 // 65536 == 2560
    # free above the threshold while committed + thres >= total: decay by 50
    host.machine.nr_free = 4000  # 16000 kB free
    t.adjust(host)
    assert host.sharing.pages_to_scan == 1200 and host.sharing.run == 1


def test_ksmtuned_sleep_floor_on_a_large_host(tmp_path):
    host = host_with_image(tmp_path, 1, memory="32GiB")
    host.machine.nr_free = 0  # under pressure
    t = KsmTuned()
    t.adjust(host)
    # 10 * 16 GiB / 32 GiB = 5 ms: ksmtuned raises it to 10
    assert host.sharing.sleep_millisecs == 10 and host.sharing.pages_to_scan == 300


def test_ksmtuned_daemon_adjusts_every_60_seconds(tmp_path):
    env = simpy.Environment()
    host = host_with_image(tmp_path, 14000, env=env, ksm_control="ksmtuned")
    assert host.sharing.run == 0  # off until ksmtuned's first adjust
    env.run(until=59.9)
    assert host.sharing.run == 0
    env.run(until=60.1)
    assert host.sharing.run == 1 and host.sharing.pages_to_scan == 300
    env.run(until=120.1)
    assert host.sharing.pages_to_scan in (600, 250)  # boost, or decay if merging freed memory


def test_mom_rules(tmp_path):
    host = host_with_image(tmp_path, 14000)
    m = MomKsm()
    m.start(host)
    m.sample(host)
    m.adjust(host)
    # threshold 13107.2 kB + ksm_shareable 56000 kB >= 65536; StatAvg(mem_free) 9536 < threshold
    assert host.sharing.run == 1
    assert host.sharing.pages_to_scan == 100 + 300
    assert host.sharing.sleep_millisecs == 10 * 16777216 // 65536
    small = host_with_image(tmp_path, 1000)
    m2 = MomKsm()
    m2.sample(small)
    m2.adjust(small)
    assert small.sharing.run == 0
    # StatAvg over the last 10 samples only
    for _ in range(12):
        m.sample(host)
    assert len(m.samples) == 10


class FakeKsm:
    def __init__(self, pages_to_scan):
        self.pages_to_scan = pages_to_scan
        self.scan_time = 0.0


def test_scan_time_advisor_follows_mm_ksm_c():
    ksm = FakeKsm(500)
    a = ScanTimeAdvisor()
    a.start_scan, a.cpu_time = 0.0, 0.0
    ksm.scan_time = 0.2  # ksmd CPU seconds during the scan
    a.end_of_scan(ksm, 10.5)
    # scan_time 10 s, cpu_percent 200*100/10000 = 2, factor 200*100/10 = 2000,
    # change ewma(0, 100) = 30, pages 500*100/2000*30/100 = 7; per_page_cost 500/2 = 250:
    # at least 10 % CPU -> 2500
    assert ksm.pages_to_scan == 2500 and a.last_cpu_percent == 2 and a.change == 30
    ksm.scan_time = 0.7
    a.end_of_scan(ksm, 20.5)
    # cpu_percent 500*100/10000 = 5; change ewma(30, 100) = 51; pages 2500*100/2000*51/100 = 63;
    # per_page_cost 2500/5 = 500 -> at least 5000
    assert ksm.pages_to_scan == 5000 and a.change == 51
    # a scan far slower than the target with ksmd busy: capped by max_cpu 70 %
    ksm.scan_time = 0.7 + 900 * 0.9
    a.end_of_scan(ksm, 920.5)
    # scan_time 900, cpu 90 %, factor 200*100/900 = 22, change 900*100/10 = 9000 -> ewma 2735
    # pages 5000*100/22*2735/100 = 621591; per_page_cost 5000/90 = 55 -> min(.., 3850)
    assert ksm.pages_to_scan == 55 * 70


def test_advisor_on_a_host_sets_500_then_retunes_after_each_full_scan(tmp_path):
    env = simpy.Environment()
    host = host_with_image(tmp_path, 2000, env=env, ksm_control="advisor")
    assert host.sharing.pages_to_scan == 500  # set_advisor_defaults
    env.run(until=1.0)
    # 2000 frames at 500 per 20 ms: a full scan every 4 batches; each retunes
    assert host.sharing.full_scans >= 2
    from hypervisor.ksmtune import KsmControl

    (ctl,) = [d for d in host.daemons if isinstance(d, KsmControl)]
    assert ctl.control.adjustments == host.sharing.full_scans
    assert host.sharing.pages_to_scan != 500


def test_config_key_reaches_the_host_and_bad_values_are_refused():
    cfg = config_from_dict({"experiment": {"name": "k"}, "host": {"sharing": {"control": "mom"}},
                            "vm": [{"name": "a"}]})
    assert host_config(cfg).ksm_control == "mom"
    import pytest

    from experiments.config import ConfigError

    with pytest.raises(ConfigError) as e:
        config_from_dict({"experiment": {"name": "k"}, "host": {"sharing": {"control": "fast"}},
                          "vm": [{"name": "a"}]})
    assert any("host.sharing.control" in p for p in e.value.problems)


def test_timeseries_records_what_the_control_loop_set(tmp_path):
    from experiments.metrics import Sampler

    env = simpy.Environment()
    host = host_with_image(tmp_path, 14000, env=env, ksm_control="ksmtuned")
    sampler = Sampler(env, host, {"vm": None}, 30.0)
    env.run(until=61)
    rows = sampler.rows
    assert [r["time_s"] for r in rows] == [0, 30, 60]
    # ksmtuned's first adjust at 60 s (the sampler's 60 s row came first or after it)
    assert [r["ksm_run"] for r in rows[:2]] == [0, 0]
    assert [r["ksm_pages_to_scan"] for r in rows[:2]] == [100, 100]
    assert sampler.sample()["ksm_pages_to_scan"] == 300 and sampler.sample()["ksm_sleep_ms"] == 2560


def test_mom_daemon_samples_every_5_s_and_decides_every_10_s(tmp_path):
    from hypervisor.ksmtune import KsmControl

    env = simpy.Environment()
    host = host_with_image(tmp_path, 14000, env=env, ksm_control="mom")
    (ctl,) = [d for d in host.daemons if isinstance(d, KsmControl)]
    assert host.sharing.run == 0
    env.run(until=9.9)
    assert ctl.control.adjustments == 0 and len(ctl.control.samples) == 2  # at 0 s and 5 s
    env.run(until=10.1)
    assert ctl.control.adjustments == 1 and host.sharing.run == 1
    assert host.sharing.pages_to_scan == 400  # 100 + ksm_pages_boost
    env.run(until=60.1)
    assert ctl.control.adjustments == 6 and len(ctl.control.samples) == 10
