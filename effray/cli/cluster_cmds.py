"""Commands on Ray: run, restore (local Ray or a cluster), submit, jobs, logs, stop (Ray Jobs).

$ effray run experiments/quickstart.yaml
$ effray restore runs/quickstart
$ effray submit experiments/quickstart.yaml --address http://HEAD:8265
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from effray.cli.common import (
    SetOpt,
    SpecArg,
    console,
    err_console,
    fail,
    load_trials,
    pct,
    spec_error,
)
from effray.errors import SpecError
from effray.storage import join, redact

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
NameOpt = Annotated[str | None, typer.Option(help="Experiment name (default the spec's).")]
JobsAddressOpt = Annotated[
    str | None,
    typer.Option(
        help="Ray jobs API, e.g. http://HEAD:8265 (default RAY_API_SERVER_ADDRESS, RAY_ADDRESS)."
    ),
]
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
            what = event.get("search") or f"{event['trials']} trials"
            what = "restoring" if event.get("restored") else what
            console.print(f"{event['name']}: {what} → {redact(event['path'])}", highlight=False)
        elif event["event"] == "wandb":  # results in an object store: runs on this disk
            (self.live.console if self.live else console).print(
                f"W&B offline runs: {event['dir']} (copied to {redact(event['copied_to'])}; "
                f"push with `effray sync {redact(event['sync'])}`)",
                highlight=False,
                soft_wrap=True,
            )
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
            how = {"asha": "stopped by ASHA", "early_stopping": "stopped early"}.get(
                e["stopped_by"], "done"
            )
            acc = f"best val/acc {best:.2f}%" if best is not None else "no epoch"
            line = f"[green]✓[/] {e['trial']}: {how} after {e['epoch']}/{e['epochs']} epochs, {acc}"
        (self.live.console if self.live else console).print(line, highlight=False)

    def render(self) -> Table:
        table = Table(title=self.title)
        for col in ("trial", "status", "epoch", "val/acc", "best", "time"):
            left = col in ("trial", "status")
            table.add_column(
                col, justify="left" if left else "right", overflow="fold", no_wrap=col != "status"
            )
        for e in sorted(self.rows.values(), key=lambda e: e["index"]):
            status = e["status"].lower() + (f" (retry {e['failures']})" if e["failures"] else "")
            table.add_row(
                e["trial"],
                status,
                f"{e['epoch']}/{e['epochs']}",
                pct(e["val_acc"]),
                pct(e["best_val_acc"]),
                f"{e['elapsed_s']:.0f}s",
            )
        return table


RESULT_COLUMNS = ("trial", "techniques", "best val/acc", "epochs", "stopped by", "params")
RESULT_DROP_ORDER = ("techniques", "params", "stopped by", "epochs")  # at a narrow terminal


def _results_table(result) -> tuple[Table, list[str]]:
    """The run's results, fitted to the terminal (numbers and trial names are never cut:
    columns are dropped instead, techniques first); (table, dropped column names)."""
    from effray.cli.views import fit_columns, natural_width

    cells = [
        [
            t.name,  # search choices are part of the name (e.g. baseline-lr0.01-seed0)
            "+".join(t.techniques) or "-",
            pct(t.best_val_acc),
            f"{t.epochs_run}/{t.epochs_planned}",
            t.stopped_by,  # an error's reason is printed below the table
            "-" if math.isnan(t.params) else f"{int(t.params):,}",
        ]
        for t in result.trials
    ]
    headers, cells, dropped = fit_columns(
        list(RESULT_COLUMNS), cells, console.width, RESULT_DROP_ORDER
    )
    table = Table(title=f"{result.name}: {len(result.trials)} trials in {result.wall_s:.0f}s")
    for i, col in enumerate(headers):
        right = col in ("best val/acc", "epochs", "params")
        whole = natural_width(col, [row[i] for row in cells])
        table.add_column(  # a trial name is copied by users: never cut, folded if it must
            col,
            justify="right" if right else "left",
            overflow="fold",
            no_wrap=col not in ("trial", "techniques"),
            min_width=None if col in ("trial", "techniques") else whole,
        )
    for t, row in zip(result.trials, cells, strict=True):
        style = "red" if t.status == "error" else ("yellow" if t.status == "unfinished" else None)
        table.add_row(*row, style=style)
    return table, dropped


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
    table, dropped = _results_table(result)
    console.print(table)
    if dropped:
        console.print(
            f"not shown at {console.width} columns: {', '.join(dropped)} "
            "(results.csv and `effray report` have them)",
            style="dim",
            highlight=False,
        )
    console.print(
        f"results: {redact(join(result.path, 'results.json'))}, results.csv", highlight=False
    )
    for t in result.errored:
        err_console.print(f"[red]✗[/] {t.name}: {t.error}", highlight=False, soft_wrap=True)
    if result.unfinished:
        err_console.print(
            f"[yellow]interrupted:[/] {len(result.unfinished)} trials unfinished; "
            f"continue with `effray restore {redact(result.path)}`",
            highlight=False,
        )
        raise typer.Exit(130)
    if result.errored:
        n = len(result.errored)
        err_console.print(f"{n} trial{'s' if n != 1 else ''} failed.", highlight=False)
        raise typer.Exit(1)


def run(
    spec: SpecArg,
    set_: SetOpt = None,
    storage: StorageOpt = None,
    address: AddressOpt = None,
    name: NameOpt = None,
) -> None:
    """Run every trial of a spec on Ray Tune; ASHA stops weak ones. Exit 1 if any failed."""
    from effray.tune import run_experiment

    loaded, trials = load_trials(spec, set_)
    _drive(
        lambda on_event: run_experiment(
            loaded, trials, storage=storage, address=address, name=name, on_event=on_event
        )
    )


def restore(
    experiment_dir: Annotated[str, typer.Argument(help="Experiment directory (storage/name).")],
    address: AddressOpt = None,
) -> None:
    """Continue an interrupted `effray run`: finished trials kept, the rest resumed."""
    from effray.tune import restore_experiment

    _drive(lambda on_event: restore_experiment(experiment_dir, address=address, on_event=on_event))


def _load_for_cluster(spec: Path, overrides: list[str] | None) -> None:
    """Validate a spec to submit. What depends on this machine's files (the dataset, which
    may be on the cluster only) is a warning; every other problem stops the submit."""
    from effray.spec import expand as expand_spec
    from effray.spec import file_problems, load_spec

    try:
        loaded = load_spec(spec, overrides or [], files=False)
        expand_spec(loaded)
    except SpecError as exc:
        spec_error(exc)
    for p in file_problems(loaded):
        err_console.print(
            f"[yellow]warning:[/] {p} (on this machine; the cluster needs it)",
            highlight=False,
            soft_wrap=True,
        )


def _jobs_call(fn):
    from effray.tune import ExperimentError

    try:
        return fn()
    except ExperimentError as exc:
        fail(str(exc))


def submit(
    spec: SpecArg,
    set_: SetOpt = None,
    address: JobsAddressOpt = None,
    storage: StorageOpt = None,
    name: NameOpt = None,
    working_dir: Annotated[
        Path | None,
        typer.Option(help="Directory uploaded with the job (default: the project root)."),
    ] = None,
    pip: Annotated[
        bool,
        typer.Option(
            "--pip",
            help="Install effray's dependencies in the job's runtime env (a cluster whose "
            "Python lacks them; cluster.yaml's setup_commands is the lasting fix).",
        ),
    ] = False,
) -> None:
    """Send `effray run SPEC` to a Ray cluster as a Ray Job; prints the job id."""
    from effray.tune import jobs_address, submit_job

    if not spec.is_file():
        fail(f"spec file not found: {spec}")
    _load_for_cluster(spec, set_)
    job_id = _jobs_call(
        lambda: submit_job(
            spec,
            address=address,
            overrides=set_ or [],
            storage=storage,
            name=name,
            working_dir=working_dir,
            pip=pip,
        )
    )
    sys.stdout.write(job_id + "\n")
    err_console.print(
        f"submitted to {jobs_address(address)}; follow with `effray logs {job_id} --follow`",
        highlight=False,
        soft_wrap=True,
    )


def jobs(
    address: JobsAddressOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False,
) -> None:
    """List the Ray Jobs on a cluster, newest first."""
    import datetime

    from effray.tune import list_jobs

    rows = _jobs_call(lambda: list_jobs(address))
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title=f"{len(rows)} jobs")
    for col in ("job", "status", "started", "duration", "entrypoint"):
        table.add_column(col, overflow="fold")
    for r in rows:
        start = datetime.datetime.fromtimestamp(r["start_time"]) if r["start_time"] else None
        end = r["end_time"] or (datetime.datetime.now().timestamp() if start else None)
        table.add_row(
            r["job_id"],
            r["status"],
            start.strftime("%Y-%m-%d %H:%M:%S") if start else "-",
            f"{end - r['start_time']:.0f}s" if start else "-",
            r["entrypoint"],
        )
    console.print(table)


def logs(
    job_id: Annotated[str, typer.Argument(help="Job id printed by `effray submit`.")],
    address: JobsAddressOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream until the job ends.")
    ] = False,
) -> None:
    """Print a Ray Job's output (the `effray run` it ran)."""
    from effray.tune import follow_job_logs, job_logs

    if follow:
        _jobs_call(lambda: follow_job_logs(job_id, sys.stdout.write, address))
        return
    sys.stdout.write(_jobs_call(lambda: job_logs(job_id, address)))


def stop(
    job_id: Annotated[str, typer.Argument(help="Job id printed by `effray submit`.")],
    address: JobsAddressOpt = None,
) -> None:
    """Stop a running Ray Job; its trials keep their last checkpoints."""
    from effray.tune import stop_job

    if _jobs_call(lambda: stop_job(job_id, address)):
        console.print(f"stopping {job_id}", highlight=False)
    else:
        console.print(f"{job_id} had already ended", highlight=False)
