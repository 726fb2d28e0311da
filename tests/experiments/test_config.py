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
         "vm[0].workload: unknown workload profile; one of idle, webserver, database, compile, jvm, memhog, trace, snapshots"),
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
