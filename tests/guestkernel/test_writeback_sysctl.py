"""vm.dirty_bytes and vm.dirty_background_bytes as 6.1's mm/page-writeback.c: the sysctl
handlers (dirty_ratio_handler, dirty_bytes_handler, dirty_background_ratio_handler,
dirty_background_bytes_handler) and domain_dirty_limits using the bytes when set."""

from __future__ import annotations

import pytest

from guestkernel.config import KernelConfig
from guestkernel.kernel import Kernel
from guestkernel.vmscan import init_reclaim


def _kernel(**kw):
    k = Kernel(KernelConfig(**{"memory": "64MiB", **kw}))
    init_reclaim(k)
    return k


def _read(k, name):
    return int(k.procfs.read(f"/proc/sys/vm/{name}"))


def _thresholds(k):
    vm = dict(line.split() for line in k.procfs.read("/proc/vmstat").splitlines())
    return int(vm["nr_dirty_background_threshold"]), int(vm["nr_dirty_threshold"])


def test_dirty_bytes_handler_zeroes_dirty_ratio_and_sets_the_threshold():
    k = _kernel()
    assert _read(k, "dirty_bytes") == 0 and _read(k, "dirty_ratio") == 20
    avail = k.reclaim.global_dirtyable_memory()
    # bg_thresh = (10 * 4096 / 100) * avail / 4096 = 409 * avail / 4096
    bg = 409 * avail // 4096
    k.procfs.write("/proc/sys/vm/dirty_bytes", str((10 << 20) + 1))
    assert _read(k, "dirty_ratio") == 0  # vm_dirty_ratio = 0
    assert _read(k, "dirty_bytes") == (10 << 20) + 1
    # thresh = DIV_ROUND_UP(10 MiB + 1, 4096) = 2561; bg below it stays the ratio's
    assert bg < 2561
    assert _thresholds(k) == (bg, 2561)


def test_dirty_ratio_handler_zeroes_dirty_bytes_only_when_it_changes():
    k = _kernel()
    k.procfs.write("/proc/sys/vm/dirty_bytes", str(8 << 20))
    # writing the ratio's current value (0): vm_dirty_ratio != old_ratio is false
    k.procfs.write("/proc/sys/vm/dirty_ratio", "0")
    assert _read(k, "dirty_bytes") == 8 << 20
    k.procfs.write("/proc/sys/vm/dirty_ratio", "30")
    assert _read(k, "dirty_bytes") == 0 and _read(k, "dirty_ratio") == 30
    avail = k.reclaim.global_dirtyable_memory()
    assert _thresholds(k)[1] == (30 * 4096 // 100) * avail // 4096  # 1228 * avail / 4096


def test_dirty_background_handlers_always_zero_the_twin():
    k = _kernel()
    k.procfs.write("/proc/sys/vm/dirty_background_bytes", str(1 << 20))
    assert _read(k, "dirty_background_ratio") == 0
    assert _thresholds(k)[0] == 256  # DIV_ROUND_UP(1 MiB, 4096)
    # dirty_background_ratio_handler zeroes the bytes on every successful write, even of
    # the value it holds
    k.procfs.write("/proc/sys/vm/dirty_background_ratio", "0")
    assert _read(k, "dirty_background_bytes") == 0
    k.procfs.write("/proc/sys/vm/dirty_background_bytes", str(1 << 20))
    k.procfs.write("/proc/sys/vm/dirty_background_ratio", "10")
    assert _read(k, "dirty_background_bytes") == 0 and _read(k, "dirty_background_ratio") == 10


def test_background_bytes_over_the_threshold_is_halved():
    k = _kernel()
    k.procfs.write("/proc/sys/vm/dirty_bytes", str(10 << 20))  # 2560 pages
    k.procfs.write("/proc/sys/vm/dirty_background_bytes", str(64 << 20))  # 16384 >= 2560
    assert _thresholds(k) == (1280, 2560)  # bg_thresh = thresh / 2


@pytest.mark.parametrize("name,text", [
    ("dirty_bytes", "8191"),  # below dirty_bytes_min = 2 * PAGE_SIZE
    ("dirty_bytes", "0"),
    ("dirty_background_bytes", "0"),  # below SYSCTL_LONG_ONE
    ("dirty_bytes", str(((1 << 32) << 12) + 1)),  # over UINT_MAX pages: -ERANGE
])
def test_bad_byte_values_change_nothing(name, text):
    k = _kernel()
    before = {n: _read(k, n) for n in ("dirty_bytes", "dirty_ratio", "dirty_background_bytes",
                                       "dirty_background_ratio")}
    with pytest.raises(ValueError):
        k.procfs.write(f"/proc/sys/vm/{name}", text)
    assert {n: _read(k, n) for n in before} == before


def test_dirty_bytes_minimum_accepted():
    k = _kernel()
    k.procfs.write("/proc/sys/vm/dirty_bytes", "8192")
    assert _thresholds(k)[1] == 2
    k.procfs.write("/proc/sys/vm/dirty_background_bytes", "1")
    assert _thresholds(k) == (1, 2)  # DIV_ROUND_UP(1, 4096) = 1 < 2


def test_config_keys():
    k = _kernel(dirty_bytes="16MiB", dirty_background_bytes="4MiB")
    # as sysctl.conf setting the bytes: the ratios read 0
    assert _read(k, "dirty_ratio") == 0 and _read(k, "dirty_background_ratio") == 0
    assert _thresholds(k) == (1024, 4096)
    with pytest.raises(ValueError, match="dirty_bytes"):
        KernelConfig(memory="64MiB", dirty_bytes=4096)
    with pytest.raises(ValueError, match="2.6.29"):
        KernelConfig(memory="64MiB", era="2.6", dirty_background_bytes="1MiB")


def test_no_byte_files_in_the_2_6_era():
    k = _kernel(era="2.6")
    with pytest.raises(FileNotFoundError):
        k.procfs.read("/proc/sys/vm/dirty_bytes")
    assert _read(k, "dirty_ratio") == 20


def test_experiment_config_keys():
    from experiments.config import KernelSection

    kw = KernelSection(dirty_bytes="32MiB").kernel_kwargs()
    cfg = KernelConfig(memory="64MiB", **{n: kw[n] for n in ("dirty_bytes", "dirty_background_bytes",
                                                             "dirty_ratio", "dirty_background_ratio")})
    assert cfg.dirty_bytes == 32 << 20 and cfg.dirty_ratio == 0
    assert cfg.dirty_background_bytes == 0 and cfg.dirty_background_ratio == 10


def test_dirty_ratio_and_bytes_writes_reset_the_ratelimit():
    """dirty_ratio_handler and dirty_bytes_handler call writeback_set_ratelimit on a
    change: dom->dirty_limit = the new threshold, ratelimit_pages = thresh / (CPUs * 32),
    at least 16; the background handlers do not."""
    k = _kernel()
    r = k.reclaim
    k.procfs.write("/proc/sys/vm/dirty_bytes", str(64 << 20))  # 16384 pages
    assert r.dirty_limit == 16384 and r.ratelimit_pages == 16384 // 32
    k.procfs.write("/proc/sys/vm/dirty_background_bytes", str(1 << 20))
    assert r.ratelimit_pages == 512
    k.procfs.write("/proc/sys/vm/dirty_ratio", "1")
    thresh = r.dirty_thresholds()[1]
    assert r.dirty_limit == thresh and r.ratelimit_pages == max(thresh // 32, 16)
