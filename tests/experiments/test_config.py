"""Experiment configs: validation errors name the key path; defaults are written back."""

from __future__ import annotations

import tomllib

import pytest
from click.testing import CliRunner

from experiments.cli import main
from experiments.config import (
    ConfigError,
    config_from_dict,
    config_reference,
    dump_toml,
    get_dotted,
    load_config,
    set_dotted,
)

BASE = {"vm": [{"name": "web", "memory": "256MiB"}]}


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config_from_dict(data)
    return exc.value.problems


@pytest.mark.parametrize(
    "data,line",
    [
        ({"vm": [{"name": "a"}, {"name": "b", "memory": "lots"}]},
         'vm[1].memory: must be a size like "512MiB", got \'lots\''),
        ({**BASE, "hosst": {}}, "hosst: unknown key"),
        ({"vm": [{"name": "a", "memroy": "1GiB"}]}, "vm[0].memroy: unknown key"),
        ({"vm": [{"memory": "1GiB"}]}, "vm[0].name: required key is missing"),
        ({"vm": [{"name": "a", "workload": {"profile": "fortnite"}}]},
         "vm[0].workload: unknown workload profile; one of idle, webserver, database, dbench, compile, jvm, memhog, trace, "
             "snapshots"),
        ({"vm": [{"name": "a", "workload": {"profile": "webserver", "workers": 0}}]},
         "vm[0].workload.workers: Input should be greater than or equal to 1"),
        ({"vm": [{"name": "a", "workload": {"profile": "database", "buffer_pool": "120%"}}]},
         "vm[0].workload.buffer_pool: percentage must be between 0 and 100, got '120%'"),
        ({**BASE, "experiment": {"duration": "soon"}},
         'experiment.duration: must be a duration like "20ms", got \'soon\''),
        ({**BASE, "host": {"sharing": {"salting": "pepper"}}},
         "host.sharing.salting: Input should be 'none' or 'per-vm'"),
        ({"vm": [{"name": "a", "image": "beos"}]},
         "vm[0]: image: unknown image 'beos'; one of debian-12, ubuntu-22.04, centos-7, alpine-3.19, "
         'windows-2019, windows-xp or "none"'),
        ({"vm": [{"name": "a", "count": 2}, {"name": "a-2"}]}, "vm: duplicate VM name 'a-2'"),
        ({"vm": []}, "vm: at least one [[vm]] table is needed"),
        ({"vm": [{"name": "a", "kernel": {"swappiness": 300}}]},
         "vm[0].kernel.swappiness: Input should be less than or equal to 200"),
    ],
)
def test_one_line_per_problem(data, line):
    assert line in problems(data)


def test_several_problems_reported_together():
    got = problems({"vm": [{"name": "a", "memory": "x", "count": 0}], "output": {"dirr": "x"}})
    assert len(got) == 3
    assert set(got) == {'vm[0].memory: must be a size like "512MiB", got \'x\'',
                        "vm[0].count: Input should be greater than or equal to 1",
                        "output.dirr: unknown key"}


def test_defaults_written_back_and_round_trip():
    cfg = config_from_dict(BASE)
    text = dump_toml(cfg)
    data = tomllib.loads(text)
    assert data["host"]["sharing"]["pages_to_scan"] == 100
    assert data["vm"][0]["kernel"]["min_free_kbytes"] == "auto"
    assert data["vm"][0]["workload"]["profile"] == "idle"
    assert data["experiment"]["duration"] == "60s"
    assert config_from_dict(data) == cfg


def test_units_are_canonical():
    cfg = config_from_dict({**BASE, "experiment": {"duration": 90, "sample_interval": "0.5s"},
                            "host": {"memory": 1 << 30}})
    assert cfg.experiment.duration == "90s"
    assert cfg.experiment.sample_interval == "0.5s"  # shortest exact spelling
    assert cfg.host.memory == "1GiB"


def test_dotted_keys():
    data = {"vm": [{"name": "web"}, {"name": "db"}]}
    set_dotted(data, "vm[db].memory", "2GiB")
    set_dotted(data, "vm[0].count", 3)
    set_dotted(data, "host.sharing.salting", "per-vm")
    assert data == {"vm": [{"name": "web", "count": 3}, {"name": "db", "memory": "2GiB"}],
                    "host": {"sharing": {"salting": "per-vm"}}}
    assert get_dotted(data, "vm[db].memory") == "2GiB"
    with pytest.raises(KeyError, match="vm\\[nope\\]"):
        set_dotted(data, "vm[nope].memory", "1GiB")
    with pytest.raises(KeyError):
        set_dotted(data, "vm[5].memory", "1GiB")


def test_shares_levels():
    cfg = config_from_dict({"vm": [{"name": "a", "memory": "1GiB", "shares": "high"}]})
    assert cfg.vm[0].share_count() == 20 * 1024
    assert problems({"vm": [{"name": "a", "shares": "lots"}]}) == [
        'vm[0]: shares: must be "low", "normal", "high" or a number, got \'lots\'']


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[experiment\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_validate_command(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[vm]]\nname = "a"\nmemory = "lots"\n[host]\nmemroy = "1GiB"\n')
    result = CliRunner().invoke(main, ["validate", str(bad)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"{bad}: host.memroy: unknown key",
        f'{bad}: vm[0].memory: must be a size like "512MiB", got \'lots\'',
    ]
    assert "Traceback" not in result.output
    result = CliRunner().invoke(main, ["run", str(bad)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_reference_lists_every_key():
    ref = config_reference()
    for key in ("pages_to_scan", "salting", "buffer_pool", "overcommit_memory", "sample_interval"):
        assert f"`{key}`" in ref


def test_aslr_sysctl_reaches_the_kernel_config_and_is_checked():
    from experiments.scenario import kernel_config

    cfg = config_from_dict({"vm": [{"name": "a", "kernel": {"randomize_va_space": 0}}]})
    assert kernel_config(cfg.vm[0]).extra == {"randomize_va_space": 0}
    assert config_from_dict(BASE).vm[0].kernel.randomize_va_space == 2  # Linux's default
    assert "vm[0].kernel.randomize_va_space: Input should be less than or equal to 2" in problems(
        {"vm": [{"name": "a", "kernel": {"randomize_va_space": 3}}]})


@pytest.mark.parametrize("profile", ["idle", "webserver", "database", "compile", "jvm", "memhog"])
def test_every_profile_takes_an_input_and_a_boot_page_cache(profile):
    cfg = config_from_dict({"vm": [{"name": "a", "workload": {
        "profile": profile, "input": "spec95-ref", "page_cache": "12MiB"}}]})
    assert cfg.vm[0].workload.input == "spec95-ref"
    assert cfg.vm[0].workload.page_cache == "12MiB"
    default = config_from_dict({"vm": [{"name": "a", "workload": {"profile": profile}}]}).vm[0].workload
    assert default.input == ""  # the VM's own data
    assert default.page_cache == ("64MiB" if profile == "idle" else "0B")


@pytest.mark.parametrize("key", ["host.memory", "vm.memory"])
@pytest.mark.parametrize("text,nbytes", [("208MB", 208_000_000), ("2GB", 2_000_000_000)])
def test_decimal_memory_sizes_are_decimal_and_rejected_naming_iec(key, text, nbytes):
    """"208MB" is 208,000,000 bytes (SI), 50,781.25 pages: a memory size must be whole
    4 KiB pages, so it is refused with one line naming the IEC spelling (not read as MiB)."""
    data = {"vm": [{"name": "a"}]}
    if key == "host.memory":
        data["host"] = {"memory": text}
        where = "host.memory"
    else:
        data["vm"][0]["memory"] = text
        where = "vm[0].memory"
    assert problems(data) == [f"{where}: {text!r} is {nbytes:,} bytes, not a whole number of 4 KiB pages "
                              "(MB and GB are decimal, 10^6 and 10^9; write MiB or GiB for 2^20 or 2^30)"]


def test_decimal_sizes_that_are_whole_pages_stay_decimal():
    """2048 MB = 2.048e9 bytes = 500,000 pages exactly: accepted, written back as that many bytes."""
    cfg = config_from_dict({"vm": [{"name": "a", "memory": "2048MB",
                                    "workload": {"profile": "idle", "page_cache": "10MB"}}]})
    from experiments.config import size

    assert size(cfg.vm[0].memory) == 2_048_000_000
    assert size(cfg.vm[0].workload.page_cache) == 10_000_000


# -- validate: files, images, policies in one pass; --set ---------------------------------


def test_validate_reports_every_file_problem_in_one_pass(tmp_path):
    """A missing trace, a missing image_file, an odd-sized one and an unknown image name:
    four lines from one `hvsim validate`, exit 2 (each made the run fail at start)."""
    (tmp_path / "odd.img").write_bytes(b"\0" * 5000)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[[vm]]\nname = "t"\n[vm.workload]\nprofile = "trace"\npath = "gone.trace"\n'
        '[[vm]]\nname = "i"\nimage_file = "gone.img"\n'
        '[[vm]]\nname = "o"\nimage_file = "odd.img"\n'
        '[[vm]]\nname = "u"\nimage = "beos"\n')
    res = CliRunner().invoke(main, ["validate", str(cfg)])
    assert res.exit_code == 2
    assert sorted(res.stderr.splitlines()) == sorted([
        f"{cfg}: vm[0].workload.path: no such trace file '{tmp_path / 'gone.trace'}'",
        f"{cfg}: vm[1]: image_file: {tmp_path / 'gone.img'}: no such image file",
        f"{cfg}: vm[2]: image_file: {tmp_path / 'odd.img'}: image size 5000 bytes is not a multiple of the "
        "4096-byte page (and it is neither an ELF core file nor an hvsim capture)",
        f"{cfg}: vm[3]: image: unknown image 'beos'; one of debian-12, ubuntu-22.04, centos-7, alpine-3.19, "
        'windows-2019, windows-xp or "none"',
    ])
    assert res.stdout == ""


def test_image_file_vm_runs_at_the_image_size_and_says_so(tmp_path):
    """An image_file VM has the image's size: left out, memory is the image's (so the
    resolved config and the report show what ran); set to anything else, it is refused."""
    (tmp_path / "m.img").write_bytes(b"\1" * (16 << 20))
    path = tmp_path / "c.toml"
    path.write_text('[[vm]]\nname = "i"\nimage_file = "m.img"\n')
    assert load_config(path).vm[0].memory == "16MiB"
    path.write_text('[[vm]]\nname = "i"\nimage_file = "m.img"\nmemory = "1GiB"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == [
        f"vm[0]: memory: 1GiB but image_file '{tmp_path / 'm.img'}' holds 16MiB (a VM booted from an image "
        "has the image's size: set memory to it or leave it out)"]
    path.write_text('[[vm]]\nname = "i"\nimage_file = "m.img"\nmemory = "16MiB"\n')
    assert load_config(path).vm[0].memory == "16MiB"


class NotAPolicy:
    pass


class VictimsByAge:
    def __init__(self, rng) -> None:
        self.rng = rng

    def choose(self, vm, n):
        return []


def make_victims(rng) -> VictimsByAge:
    return VictimsByAge(rng)


@pytest.mark.parametrize("key,value,line", [
    ("balloon", "os.system", "host.balloon.policy: 'os.system' is not a balloon policy: a dotted path must name a "
     "class with a targets() method (see hypervisor/policy.py) or a function annotated to return one"),
    ("swap", "tests.experiments.test_config.NotAPolicy", "host.swap.victim_policy: "
     "'tests.experiments.test_config.NotAPolicy' is not a victim policy: a dotted path must name a class with a "
     "choose() method (see hypervisor/policy.py) or a function annotated to return one"),
    ("swap", "no_such_module_hv.Thing", "host.swap.victim_policy: cannot load policy 'no_such_module_hv.Thing' "
     "(ModuleNotFoundError: No module named 'no_such_module_hv')"),
    ("swap", "lru", "host.swap.victim_policy: unknown policy 'lru'; one of random, access-bits, clock or a dotted "
     "path (package.module.Class)"),
])
def test_a_dotted_path_policy_must_be_a_policy(key, value, line):
    """issue 18: `policy = "os.system"` validated and was called with the rng."""
    field = "policy" if key == "balloon" else "victim_policy"
    assert problems({**BASE, "host": {key: {field: value}}}) == [line]


@pytest.mark.parametrize("value", ["tests.experiments.test_config.VictimsByAge",
                                   "tests.experiments.test_config.make_victims", "clock"])
def test_a_policy_class_or_annotated_factory_validates(value):
    assert config_from_dict({**BASE, "host": {"swap": {"victim_policy": value}}}).host.swap.victim_policy == value


def test_set_overrides_run_and_validate(tmp_path):
    """--set KEY=VALUE with the sweeps' dotted keys, values read as TOML (else text), part
    of the resolved config; a bad key or value is one line naming it, exit 2."""
    path = tmp_path / "c.toml"
    path.write_text('[[vm]]\nname = "web"\nmemory = "256MiB"\n[[vm]]\nname = "db"\nmemory = "256MiB"\n')
    cfg = load_config(path, ["host.memory=1GiB", "vm[web].count=4", "host.sharing.pages_to_scan=2000",
                             'host.sharing.salting="per-vm"', "host.sharing.enabled=false"])
    assert (cfg.host.memory, cfg.vm[0].count, cfg.host.sharing.pages_to_scan) == ("1GiB", 4, 2000)
    assert cfg.host.sharing.salting == "per-vm" and cfg.host.sharing.enabled is False
    assert tomllib.loads(dump_toml(cfg))["vm"][0]["count"] == 4
    res = CliRunner().invoke(main, ["validate", str(path), "--set", "vm[web].count=4"])
    assert res.exit_code == 0 and res.stdout == f"{path}: ok (5 VMs)\n"
    res = CliRunner().invoke(main, ["validate", str(path), "--set", "host.memroy=1GiB", "--set",
                                    "vm[mail].count=2", "--set", "host.sharing.pages_to_scan=lots", "--set", "oops"])
    assert res.exit_code == 2
    assert sorted(res.stderr.splitlines()) == sorted([  # all in one pass
        f"{path}: --set vm[mail].count=2: vm[mail].count: no entry named 'mail'",
        f"{path}: --set oops: expected KEY=VALUE, e.g. host.memory=1GiB",
        f"{path}: host.memroy: unknown key",
        f"{path}: host.sharing.pages_to_scan: Input should be a valid integer, unable to parse string as an integer",
    ])
    res = CliRunner().invoke(main, ["run", str(path), "--set", "host.memroy=1GiB",
                                    "--set", "host.sharing.pages_to_scan=lots"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert sorted(res.stderr.splitlines()) == [
        f"{path}: host.memroy: unknown key",
        f"{path}: host.sharing.pages_to_scan: Input should be a valid integer, unable to parse string as an integer"]


def test_validate_recognises_a_sweep_file(tmp_path):
    (tmp_path / "base.toml").write_text('[[vm]]\nname = "web"\nmemory = "256MiB"\n')
    sw = tmp_path / "sw.toml"
    sw.write_text('base = "base.toml"\nreplications = 2\n[grid]\n"host.memory" = ["512MiB", "1GiB"]\n')
    res = CliRunner().invoke(main, ["validate", str(sw)])
    assert res.exit_code == 0, res.output
    assert res.stdout == f"{sw}: ok (sweep 'sw': 4 runs)\n"
    res = CliRunner().invoke(main, ["validate", str(sw), "--set", "vm[web].memory=lots"])
    assert res.exit_code == 2
    assert res.stderr == f"{sw}: base: vm[0].memory: must be a size like \"512MiB\", got 'lots'\n"
    (tmp_path / "base.toml").write_text('[[vm]]\nname = "web"\n[vm.workload]\nprofile = "trace"\npath = "x.trace"\n')
    res = CliRunner().invoke(main, ["validate", str(sw)])
    assert res.exit_code == 2
    assert res.stderr == f"{sw}: base: vm[0].workload.path: no such trace file '{tmp_path / 'x.trace'}'\n"


def test_thp_defaults_follow_the_image_distribution():
    # /sys/kernel/mm/transparent_hugepage as shipped: RHEL/CentOS 7 (3.10) enabled and
    # defrag "always"; Debian 12 enabled always (CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS, the
    # recorded tests/data/distro_thp config), Ubuntu 22.04 madvise
    # (CONFIG_TRANSPARENT_HUGEPAGE_MADVISE), both defrag madvise; Windows has no THP
    from experiments.scenario import kernel_config

    def kc(image, **kernel):
        cfg = config_from_dict({"vm": [{"name": "a", "image": image, "kernel": kernel}]})
        k = kernel_config(cfg.vm[0])
        return k.thp_enabled, k.thp_defrag

    assert kc("centos-7") == ("always", "always")
    assert kc("debian-12") == ("always", "madvise")
    assert kc("ubuntu-22.04") == ("madvise", "madvise")
    assert kc("windows-2019")[0] == "never"
    assert kc("centos-7", thp_enabled="never", thp_defrag="defer") == ("never", "defer")
    assert "vm[0].kernel.thp_enabled: Input should be 'auto', 'always', 'madvise' or 'never'" in problems(
        {"vm": [{"name": "a", "kernel": {"thp_enabled": "sometimes"}}]})
    assert "vm[0].kernel.khugepaged_max_ptes_none: Input should be less than or equal to 511" in problems(
        {"vm": [{"name": "a", "kernel": {"khugepaged_max_ptes_none": 512}}]})


def test_host_compaction_keys_are_checked_with_their_path():
    # vm.extfrag_threshold is 0..1000 (sysctl extfrag_threshold's range); a scan cost is a duration
    assert problems({"host": {"extfrag_threshold": 1001, "compact_scan_cost": "fast"}}) == [
        "host.extfrag_threshold: Input should be less than or equal to 1000",
        'host.compact_scan_cost: must be a duration like "20ms", got \'fast\'']
    cfg = config_from_dict({"host": {"extfrag_threshold": 0, "compact_scan_cost": "20ns"},
                            "vm": [{"name": "a", "memory": "1GiB"}]})
    assert (cfg.host.extfrag_threshold, cfg.host.compact_scan_cost) == (0, "20ns")
    from experiments.scenario import host_config

    hc = host_config(cfg)
    assert (hc.extfrag_threshold, hc.compact_scan_cost) == (0, pytest.approx(20e-9))


def test_debian_12_boots_with_the_thp_defaults_its_kernel_config_builds():
    """6.1 transparent_hugepage_flags: `enabled` is always under
    CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS, madvise under _MADVISE; `defrag` is madvise
    whatever the config. The debian-12 image follows the config Debian ships
    (tests/data/distro_thp/debian-12-thp.config, recorded by its script)."""
    from pathlib import Path

    from experiments.scenario import THP_DEFAULTS

    lines = (Path(__file__).parent.parent / "data" / "distro_thp" / "debian-12-thp.config").read_text().splitlines()
    always = "CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS=y" in lines
    madvise = "CONFIG_TRANSPARENT_HUGEPAGE_MADVISE=y" in lines
    assert always != madvise
    assert THP_DEFAULTS["debian-12"] == ("always" if always else "madvise", "madvise")


def test_debian_12_boots_with_init_on_alloc_as_its_kernel_config_builds():
    """init_on_alloc's boot value is CONFIG_INIT_ON_ALLOC_DEFAULT_ON unless the command
    line sets it (mm/page_alloc.c: DEFINE_STATIC_KEY_MAYBE(CONFIG_INIT_ON_ALLOC_DEFAULT_ON,
    init_on_alloc), early_param "init_on_alloc"). A debian-12 guest (kernel.distro
    "debian-12", or "auto" on the debian-12 image) follows the configs Debian ships
    (tests/data/distro_thp/debian-12-thp.config, recorded by its script); distro "none"
    keeps the upstream default, off; the config's key overrides either."""
    from pathlib import Path

    from experiments.scenario import kernel_config
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel

    lines = (Path(__file__).parent.parent / "data" / "distro_thp" / "debian-12-thp.config").read_text().splitlines()
    on = lines.count("CONFIG_INIT_ON_ALLOC_DEFAULT_ON=y")
    off = lines.count("# CONFIG_INIT_ON_ALLOC_DEFAULT_ON is not set")
    assert on + off == 2 and on in (0, 2)  # both flavours recorded, and they agree
    built = on == 2

    def kc(image, **kernel):
        cfg = config_from_dict({"vm": [{"name": "a", "image": image, "kernel": kernel}]})
        return kernel_config(cfg.vm[0]).init_on_alloc

    assert kc("debian-12") is built
    assert kc("debian-12", distro="debian-12") is built
    assert kc("debian-12", distro="none") is False
    assert kc("debian-12", init_on_alloc=not built) is (not built)
    assert kc("debian-12", distro="none", init_on_alloc=True) is True
    assert kc("ubuntu-22.04") is False  # distro "auto" resolves to "none": no recorded config
    assert KernelConfig(distro="debian-12").init_on_alloc is built
    assert KernelConfig().init_on_alloc is False
    assert Kernel(KernelConfig(memory="64MiB", distro="debian-12")).page_alloc.init_on_alloc is built
    assert problems({"vm": [{"name": "a", "kernel": {"init_on_alloc": "sometimes"}}]}) == [
        "vm[0].kernel.init_on_alloc: must be true, false or \"auto\", got 'sometimes'"]
