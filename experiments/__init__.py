"""hvsim's experiments: configs, workloads, runner, reports, sweeps and the CLI."""

__version__ = "0.1.0"
