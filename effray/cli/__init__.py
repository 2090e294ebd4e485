"""The effray command line: thin wrappers that parse, call plain functions and print.

    $ effray validate experiments/quickstart.yaml
    $ effray train experiments/quickstart.yaml --out runs/quick
    $ effray models --json

Commands live in one module per family (spec_cmds, train_cmds, report_cmd, run_cmds,
cluster_cmds), registered on the app in `common`; this package is the only one that
prints. Bad input exits with code 2 and one line per problem; nothing has started when
that happens.
"""

# The import order is the order of the commands in `effray --help`.
# isort: off
from effray.cli.common import app
from effray.cli import spec_cmds  # noqa: F401
from effray.cli import train_cmds  # noqa: F401
from effray.cli import report_cmd  # noqa: F401
from effray.cli import run_cmds  # noqa: F401
from effray.cli import cluster_cmds  # noqa: F401
# isort: on

__all__ = ["app", "main"]


def main() -> None:
    app()
