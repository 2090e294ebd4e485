"""What every command shares: the consoles, failing with exit code 2, loading a spec."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from effray.errors import SpecError

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


def spec_error(exc: SpecError) -> None:
    head = f"{exc.source}: " if exc.source else ""
    for p in exc.problems:
        err_console.print(f"[red]✗[/] {head}{p}", highlight=False, soft_wrap=True)
    n = len(exc.problems)
    err_console.print(f"{n} problem{'s' if n != 1 else ''}; nothing was started.", highlight=False)
    raise typer.Exit(2)


def load(spec_path: Path, overrides: list[str] | None):
    """The validated spec; its warnings (a technique with nothing to do) as one line each."""
    from effray.spec import load_spec
    from effray.techniques import NoEffectWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NoEffectWarning)
        try:
            spec = load_spec(spec_path, overrides or [])
        except SpecError as exc:
            spec_error(exc)
    show_warnings([w for w in caught if issubclass(w.category, NoEffectWarning)])
    for w in caught:  # anything else as Python would have shown it
        if not issubclass(w.category, NoEffectWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return spec


def load_trials(spec: Path, overrides: list[str] | None):
    """The validated spec and its expanded trials; a bad spec exits 2 with every problem."""
    from effray.spec import expand as expand_spec

    loaded = load(spec, overrides)
    try:
        return loaded, expand_spec(loaded)
    except SpecError as exc:
        spec_error(exc)


def show_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


def pct(value: float | None) -> str:
    """A percentage for a table cell; '-' when unknown."""
    return "-" if value is None or math.isnan(value) else f"{value:.2f}%"
