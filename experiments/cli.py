"""The `hvsim` command line."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvsim")
def main() -> None:
    """hvsim: memory overcommit on virtualised hosts, with Linux-like guest kernels."""


def _load(config_path: str):
    from .config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"{config_path}: {line}" if not line.startswith(config_path) else line, err=True)
        sys.exit(2)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False), default=None,
              help="run folder (default: the config's output.dir)")
@click.option("--seed", type=int, default=None, help="override experiment.seed")
@click.option("--duration", default=None, help='override experiment.duration, e.g. "30s"')
def run(config: str, outdir: str | None, seed: int | None, duration: str | None) -> None:
    """Run one experiment and write its run folder (config, summary, timeseries, report)."""
    from .config import ConfigError, config_from_dict
    from .runner import run_experiment

    cfg = _load(config)
    if seed is not None or duration is not None:
        data = cfg.model_dump(mode="json")
        if seed is not None:
            data["experiment"]["seed"] = seed
        if duration is not None:
            data["experiment"]["duration"] = duration
        try:
            cfg = config_from_dict(data)
        except ConfigError as exc:
            for line in exc.problems:
                click.echo(f"{config}: {line}", err=True)
            sys.exit(2)
    out = outdir or str(cfg.output_dir())
    summary = run_experiment(cfg, out, progress=True)
    total = summary.get("reclaimed_total_mib", 0.0)
    click.echo(f"{cfg.experiment.name}: {summary['status']}, {summary.get('sim_time_s', 0):g} s simulated "
               f"in {summary['wall_time_s']:g} s; reclaimed {total:.1f} MiB "
               f"(sharing {summary.get('reclaimed_sharing_mib', 0):.1f}, "
               f"balloon {summary.get('reclaimed_balloon_mib', 0):.1f}, "
               f"compression {summary.get('reclaimed_compression_mib', 0):.1f}, "
               f"host swap {summary.get('reclaimed_swap_mib', 0):.1f}) -> {out}")
    if summary["status"] != "ok":
        click.echo(f"run failed: {summary['error']}", err=True)
        sys.exit(1)


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
def validate(config: str) -> None:
    """Check a config: one line per problem, exit status 2 if there is any."""
    cfg = _load(config)
    click.echo(f"{config}: ok ({sum(v.count for v in cfg.vm)} VMs)")


@main.command()
@click.option("--memory", default="512MiB", show_default=True, help="guest memory, e.g. 4GiB")
@click.option("--arch", type=click.Choice(["x86_64", "i386"]), default="x86_64", show_default=True)
@click.option("--cpus", type=int, default=1, show_default=True)
@click.option("--nodes", type=int, default=1, show_default=True, help="NUMA nodes")
@click.option("--era", type=click.Choice(["6.x", "2.6"]), default="6.x", show_default=True,
              help="which kernel's watermark formulas apply")
@click.argument("paths", nargs=-1)
def boot(memory: str, arch: str, cpus: int, nodes: int, era: str, paths: tuple[str, ...]) -> None:
    """Boot one guest kernel and print /proc files (default: /proc/meminfo)."""
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel

    try:
        cfg = KernelConfig(memory=memory, arch=arch, cpus=cpus, nodes=nodes, era=era)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    kernel = Kernel(cfg)
    for path in paths or ("/proc/meminfo",):
        try:
            text = kernel.procfs.read(path)
        except FileNotFoundError as exc:
            click.echo(f"hvsim boot: {exc}", err=True)
            sys.exit(2)
        if len(paths) > 1:
            click.echo(f"==> {path} <==")
        click.echo(text, nl=False)


@main.command()
@click.argument("names", nargs=-1)
@click.option("--quick", is_flag=True, help="smaller iteration counts")
@click.option("--list", "list_only", is_flag=True, help="list the benchmarks and exit")
def bench(names: tuple[str, ...], quick: bool, list_only: bool) -> None:
    """Measure performance (alloc/free rates, boot time, ...) and print a table."""
    from .bench import BENCHMARKS, format_table, run

    if list_only:
        click.echo("\n".join(BENCHMARKS))
        return
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise click.UsageError(f"unknown benchmark {unknown[0]!r}; one of: {', '.join(BENCHMARKS)}")
    click.echo(format_table(run(list(names) or None, quick)))


def _register_subcommands() -> None:
    """Commands that live beside the code they drive."""
    from .anchors import anchors
    from .capture import capture_cmd
    from .replay import replay
    from .report import report
    from .scan_image import scan_image
    from .sweep import sweep
    from .whatif import whatif

    main.add_command(anchors)
    main.add_command(capture_cmd)
    main.add_command(replay)
    main.add_command(sweep)
    main.add_command(report)
    main.add_command(scan_image)
    main.add_command(whatif)


_register_subcommands()


if __name__ == "__main__":
    main()
