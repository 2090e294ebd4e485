"""run and restore: an experiment's trials on Ray Tune, with a live trial table."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from effray.cli.common import (
    AddressOpt,
    SetOpt,
    SpecArg,
    StorageOpt,
    _load,
    _spec_error,
    app,
    console,
    err_console,
    fail,
)
from effray.errors import SpecError

FINAL = {"TERMINATED", "ERROR"}


class _Progress:
    """The live trial table of `effray run` / `effray restore`, fed by effray.tune's events."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.title = "trials"
        self.live = None

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "experiment":
            self.title = event["name"]
            what = "restoring" if event.get("restored") else f"{event['trials']} trials"
            console.print(f"{event['name']}: {what} → {event['path']}", highlight=False)
        else:
            before = self.rows.get(event["trial"], {}).get("status")
            self.rows[event["trial"]] = event
            if event["status"] in FINAL and before != event["status"]:
                self._announce(event)
        if self.live is not None:
            self.live.update(self.render())

    def _announce(self, e: dict[str, Any]) -> None:
        if e["status"] == "ERROR":
            line = f"[red]✗[/] {e['trial']} failed at epoch {e['epoch']} (see its error.txt)"
        else:
            best = e["best_val_acc"]
            how = (
                "stopped by ASHA"
                if e["epoch"] < e["epochs"] and e["stopped_by_scheduler"]
                else "done"
            )
            acc = f"best val/acc {best:.2f}%" if best is not None else "no epoch"
            line = f"[green]✓[/] {e['trial']}: {how} after {e['epoch']}/{e['epochs']} epochs, {acc}"
        (self.live.console if self.live else console).print(line, highlight=False)

    def render(self) -> Table:
        table = Table(title=self.title)
        for col in ("trial", "status", "epoch", "val/acc", "best", "time"):
            left = col in ("trial", "status")
            table.add_column(
                col, justify="left" if left else "right", overflow="fold", no_wrap=col != "trial"
            )
        for e in sorted(self.rows.values(), key=lambda e: e["index"]):
            status = e["status"].lower() + (f" (retry {e['failures']})" if e["failures"] else "")
            table.add_row(
                e["trial"],
                status,
                f"{e['epoch']}/{e['epochs']}",
                _pct(e["val_acc"]),
                _pct(e["best_val_acc"]),
                f"{e['elapsed_s']:.0f}s",
            )
        return table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def _results_table(result) -> Table:
    table = Table(title=f"{result.name}: {len(result.trials)} trials in {result.wall_s:.0f}s")
    for col in ("trial", "techniques", "best val/acc", "epochs", "stopped by", "params"):
        right = col in ("best val/acc", "epochs", "params")
        wraps = col in ("trial", "techniques")  # names fold on a narrow terminal; numbers never
        table.add_column(
            col, justify="right" if right else "left", overflow="fold", no_wrap=not wraps
        )
    for t in result.trials:
        style = "red" if t.status == "error" else ("yellow" if t.status == "unfinished" else None)
        table.add_row(
            t.name,  # search choices are part of the name (e.g. baseline-lr0.01-seed0)
            "+".join(t.techniques) or "-",
            _pct(t.best_val_acc),
            f"{t.epochs_run}/{t.epochs}",
            "error" if t.status == "error" else t.stopped_by,  # the reason is printed below
            f"{t.params:,}" if t.params is not None else "-",
            style=style,
        )
    return table


def _drive(start) -> None:
    """Run `start(on_event)` under a live table, print the results and set the exit code."""
    from rich.live import Live

    from effray.tune import ExperimentError

    progress = _Progress()
    try:
        with Live(progress.render(), console=console, transient=True, refresh_per_second=4) as live:
            progress.live = live
            result = start(progress)
    except ExperimentError as exc:
        fail(str(exc))
    console.print(_results_table(result))
    console.print(f"results: {result.path}/results.json, results.csv", highlight=False)
    for t in result.errored:
        err_console.print(f"[red]✗[/] {t.name}: {t.error}", highlight=False, soft_wrap=True)
    if result.unfinished:
        err_console.print(
            f"[yellow]interrupted:[/] {len(result.unfinished)} trials unfinished; "
            f"continue with `effray restore {result.path}`",
            highlight=False,
        )
        raise typer.Exit(130)
    if result.errored:
        n = len(result.errored)
        err_console.print(f"{n} trial{'s' if n != 1 else ''} failed.", highlight=False)
        raise typer.Exit(1)


@app.command()
def run(
    spec: SpecArg,
    set_: SetOpt = None,
    storage: StorageOpt = None,
    address: AddressOpt = None,
    name: Annotated[str | None, typer.Option(help="Experiment name (default the spec's).")] = None,
) -> None:
    """Run every trial of a spec on Ray Tune; ASHA stops weak ones. Exit 1 if any failed."""
    from effray.spec import expand as expand_spec
    from effray.tune import run_experiment

    loaded = _load(spec, set_)
    try:
        expand_spec(loaded)
    except SpecError as exc:
        _spec_error(exc)
    _drive(
        lambda on_event: run_experiment(
            loaded, storage=storage, address=address, name=name, on_event=on_event
        )
    )


@app.command()
def restore(
    experiment_dir: Annotated[str, typer.Argument(help="Experiment directory (storage/name).")],
    address: AddressOpt = None,
) -> None:
    """Continue an interrupted `effray run`: finished trials kept, the rest resumed."""
    from effray.tune import restore_experiment

    _drive(lambda on_event: restore_experiment(experiment_dir, address=address, on_event=on_event))
