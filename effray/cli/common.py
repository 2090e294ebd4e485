"""The Typer app, the consoles, spec loading and the options several commands share.

The cli package is the only place that prints. Bad input exits with code 2 and one line
per problem; nothing has started when that happens.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from effray.errors import SpecError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Reproduce efficient-CNN experiments from one YAML spec.",
)
console = Console()
err_console = Console(stderr=True)

SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a spec field, e.g. --set train.lr=0.1 (repeatable)."),
]
SpecArg = Annotated[Path, typer.Argument(help="Experiment spec (YAML).")]


def fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _spec_error(exc: SpecError) -> None:
    head = f"{exc.source}: " if exc.source else ""
    for p in exc.problems:
        err_console.print(f"[red]✗[/] {head}{p}", highlight=False, soft_wrap=True)
    n = len(exc.problems)
    err_console.print(f"{n} problem{'s' if n != 1 else ''}; nothing was started.", highlight=False)
    raise typer.Exit(2)


def _load(spec_path: Path, overrides: list[str] | None):
    from effray.spec import load_spec

    try:
        return load_spec(spec_path, overrides or [])
    except SpecError as exc:
        _spec_error(exc)


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


StorageOpt = Annotated[
    str | None,
    typer.Option(help="Results root: a directory or a URI (default run.storage, else ./runs)."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        help="Join the Ray cluster at this address (default RAY_ADDRESS, else a local Ray)."
    ),
]
JobsAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="Ray jobs API, e.g. http://HEAD:8265 (default RAY_API_SERVER_ADDRESS, RAY_ADDRESS)."
    ),
]
