"""The `hvsim` command line."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvsim")
def main() -> None:
    """hvsim: memory overcommit on virtualised hosts, with Linux-like guest kernels."""


def _load(config_path: str, overrides: tuple[str, ...] = ()):
    from .config import ConfigError, load_config

    try:
        return load_config(config_path, overrides)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(f"{config_path}: {line}" if not line.startswith(config_path) else line, err=True)
        sys.exit(2)


SET_HELP = ('override a config key, as sweeps name them: host.memory=1GiB, "vm[web].count=4", '
            "host.sharing.pages_to_scan=2000 (the value is read as TOML, else as text); repeatable")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "outdir", type=click.Path(file_okay=False), default=None,
              help="run folder (default: the config's output.dir)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--seed", type=int, default=None, help="override experiment.seed")
@click.option("--duration", default=None, help='override experiment.duration, e.g. "30s"')
def run(config: str, outdir: str | None, overrides: tuple[str, ...], seed: int | None,
        duration: str | None) -> None:
    """Run one experiment and write its run folder (config, summary, timeseries, report).

    An earlier run in the same folder is replaced (said on stderr): its files are removed
    first, so none is left over from it."""
    from .runner import earlier_run, run_experiment

    sets = list(overrides)
    if seed is not None:
        sets.append(f"experiment.seed={seed}")
    if duration is not None:
        sets.append(f'experiment.duration="{duration}"')
    cfg = _load(config, tuple(sets))
    out = outdir or str(cfg.output_dir())
    before = earlier_run(out, cfg)
    if before:
        click.echo(f"hvsim run: {before}", err=True)
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
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
def validate(config: str, overrides: tuple[str, ...]) -> None:
    """Check a config or a sweep file without running it: every problem in one pass, one
    line each (keys, values, trace and image files, policies), exit status 2 if any.

    A sweep file (one with `base = ...`) is checked with its base config and every run."""
    from .config import ConfigError, read_toml

    try:
        data = read_toml(config)
    except ConfigError as exc:
        for line in exc.problems:
            click.echo(line, err=True)
        sys.exit(2)
    if "base" in data and "vm" not in data:
        from .sweep import SweepError, load_sweep

        try:
            sw = load_sweep(config, overrides=overrides)
        except SweepError as exc:
            for line in exc.problems:
                click.echo(line, err=True)
            sys.exit(2)
        click.echo(f"{config}: ok (sweep {sw.name!r}: {len(sw.runs)} runs)")
        return
    cfg = _load(config, overrides)
    click.echo(f"{config}: ok ({sum(v.count for v in cfg.vm)} VMs)")


@main.command()
@click.option("--memory", default="512MiB", show_default=True, help="guest memory, e.g. 4GiB")
@click.option("--arch", type=click.Choice(["x86_64", "i386"]), default="x86_64", show_default=True)
@click.option("--cpus", type=int, default=1, show_default=True)
@click.option("--nodes", type=int, default=1, show_default=True, help="NUMA nodes")
@click.option("--era", type=click.Choice(["6.x", "2.6"]), default="6.x", show_default=True,
              help="which kernel's watermark formulas apply")
@click.option("--distro", type=click.Choice(["auto", "none", "debian-12"]), default="auto", show_default=True,
              help="whose kernel's boot reservation (auto: debian-12 for x86_64 6.x, else none)")
@click.argument("paths", nargs=-1)
def boot(memory: str, arch: str, cpus: int, nodes: int, era: str, distro: str,
         paths: tuple[str, ...]) -> None:
    """Boot one guest kernel and print /proc files (default: /proc/meminfo)."""
    from guestkernel.config import KernelConfig
    from guestkernel.kernel import Kernel

    if distro == "auto":
        distro = "debian-12" if (arch, era) == ("x86_64", "6.x") else "none"
    try:
        cfg = KernelConfig(memory=memory, arch=arch, cpus=cpus, nodes=nodes, era=era, distro=distro)
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
    """Measure performance (alloc/free rates, boot time, ...) and print a table.

    Exit status 1 when a measured figure is below its target (each named on stderr)."""
    from .bench import BENCHMARKS, format_table, run

    if list_only:
        click.echo("\n".join(BENCHMARKS))
        return
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise click.UsageError(f"unknown benchmark {unknown[0]!r}; one of: {', '.join(BENCHMARKS)}")
    rows = run(list(names) or None, quick)
    click.echo(format_table(rows))
    below = [r for r in rows if r.ok is False]
    if below:  # a figure below its target is a failure a script or CI must see
        for r in below:
            click.echo(f"hvsim bench: below target: {r.name}: {r.cells()[1]} {r.unit} (target {r.target})",
                       err=True)
        sys.exit(1)


def _register_subcommands() -> None:
    """Commands that live beside the code they drive."""
    from .anchors import anchors
    from .capture import capture_cmd
    from .compare import compare
    from .replay import replay
    from .report import report
    from .scan_image import scan_image
    from .sweep import sweep
    from .whatif import whatif

    main.add_command(anchors)
    main.add_command(capture_cmd)
    main.add_command(compare)
    main.add_command(replay)
    main.add_command(sweep)
    main.add_command(report)
    main.add_command(scan_image)
    main.add_command(whatif)


_register_subcommands()


if __name__ == "__main__":
    main()
