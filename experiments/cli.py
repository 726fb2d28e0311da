"""The `hvsim` command line."""

from __future__ import annotations

import sys

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hvsim")
def main() -> None:
    """hvsim: memory overcommit on virtualised hosts, with Linux-like guest kernels."""


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
    from .replay import replay

    main.add_command(replay)


_register_subcommands()


if __name__ == "__main__":
    main()
