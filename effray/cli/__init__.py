"""The effray command line: thin wrappers that parse, call plain functions and print.

    $ effray validate experiments/quickstart.yaml
    $ effray train experiments/quickstart.yaml --out runs/quick
    $ effray run experiments/quickstart.yaml
    $ effray models --json

The only package that prints. Bad input exits with code 2 and one line per problem;
nothing has started when that happens. Modules: common (consoles, errors, loading a
spec), spec_cmds (specs and registries), local_cmds (this machine, no Ray),
cluster_cmds (Ray: run, restore and Ray Jobs). The commands are registered here, in
the order `effray --help` lists them.
"""

from __future__ import annotations

import typer

from effray.cli import cluster_cmds, data_cmds, local_cmds, spec_cmds

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Reproduce efficient-CNN experiments from one YAML spec.",
)
COMMANDS = [  # help order: specs, one trial here, many trials on Ray, W&B
    spec_cmds.validate,
    spec_cmds.expand,
    spec_cmds.schema,
    spec_cmds.models,
    spec_cmds.techniques,
    spec_cmds.datasets,
    data_cmds.make_sample_cars,
    local_cmds.train,
    local_cmds.resume,
    local_cmds.report,
    cluster_cmds.run,
    cluster_cmds.restore,
    cluster_cmds.submit,
    cluster_cmds.jobs,
    cluster_cmds.logs,
    cluster_cmds.stop,
    local_cmds.sync,
]
for command in COMMANDS:
    app.command()(command)


def main() -> None:
    app()


__all__ = ["COMMANDS", "app", "main"]
