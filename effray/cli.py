"""The effray command line: thin wrappers that parse, call plain functions and print.

    $ effray validate experiments/quickstart.yaml
    $ effray train experiments/quickstart.yaml --out runs/quick
    $ effray models --json

This is the only module that prints. Bad input exits with code 2 and one line per
problem; nothing has started when that happens.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from effray.errors import SpecError, did_you_mean

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


def _load_trials(spec: Path, overrides: list[str] | None):
    """The validated spec and its expanded trials; a bad spec exits 2 with every problem."""
    from effray.spec import expand as expand_spec

    loaded = _load(spec, overrides)
    try:
        return loaded, expand_spec(loaded)
    except SpecError as exc:
        _spec_error(exc)


def _show_warnings(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        err_console.print(f"[yellow]warning:[/] {w.message}", highlight=False, soft_wrap=True)


@app.command()
def validate(spec: SpecArg, set_: SetOpt = None) -> None:
    """Check a spec completely; print OK or every problem (exit code 2)."""
    _, trials = _load_trials(spec, set_)
    console.print(f"[green]OK[/] {spec}: {len(trials)} trial{'s' if len(trials) != 1 else ''}")


@app.command()
def schema() -> None:
    """Print the spec's JSON schema (for editor completion)."""
    from effray.spec import json_schema

    sys.stdout.write(json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False) -> None:
    """List every registered model with its input shape and parameter count."""
    from effray.models import list_models

    rows = list_models()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table(title="effray models")
    for col in ("name", "input (C,H,W)", "classes", "params", "published", "description"):
        table.add_column(
            col, justify="right" if col in ("params", "published", "classes") else "left"
        )
    for r in rows:
        ref = r.get("reference_params")
        table.add_row(
            r["name"],
            "x".join(str(v) for v in r["input_shape"]),
            str(r["num_classes"]),
            f"{r['params']:,}",
            f"{ref:,}" if ref else "-",
            r.get("description", ""),
        )
    console.print(table)


@app.command()
def expand(spec: SpecArg, set_: SetOpt = None) -> None:
    """Print the trials a spec expands to (ablation x search x seeds)."""
    loaded, trials = _load_trials(spec, set_)
    table = Table(title=f"{loaded.name}: {len(trials)} trials")
    table.add_column("#", justify="right")
    table.add_column("trial")
    table.add_column("techniques")
    table.add_column("choices")
    for t in trials:
        table.add_row(
            str(t.trial.index),
            t.trial.name,
            ", ".join(x.name for x in t.techniques) or "-",
            ", ".join(f"{k}={v}" for k, v in t.trial.params.items()) or "-",
        )
    console.print(table)


@app.command()
def techniques(as_json: Annotated[bool, typer.Option("--json", help="JSON list.")] = False) -> None:
    """List every technique: its fields with defaults, the hooks it uses, what it owns."""
    from effray.techniques import RUN_ORDER, TECHNIQUES

    rows = []
    for kind, cls in sorted(TECHNIQUES.items(), key=lambda kv: RUN_ORDER.get(kv[0], 100)):
        fields = {
            name: info.default
            for name, info in cls.model_fields.items()
            if name not in ("kind", "ablate")
        }
        rows.append(
            {
                "kind": kind,
                "order": RUN_ORDER.get(kind),
                "fields": fields,
                "hooks": cls.hooks(),
                "owns": list(cls.owns),
                "requires": list(cls.requires),
                "paper": cls.paper,
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    table = Table(title="effray techniques (in run order)")
    for col in ("kind", "fields (defaults)", "hooks", "owns"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["kind"],
            ", ".join(f"{k}={v!r}" for k, v in r["fields"].items()) or "-",
            ", ".join(r["hooks"]),
            ", ".join(r["owns"] + [f"needs {x}" for x in r["requires"]]) or "-",
        )
    console.print(table)


def _epoch_printer(total: int):
    def on_epoch(metrics: dict[str, Any], checkpoint) -> None:
        console.print(
            f"epoch {metrics['epoch']:>3}/{total}  "
            f"train loss {metrics['train/loss']:.4f} acc {metrics['train/acc']:6.2f}%  "
            f"val loss {metrics['val/loss']:.4f} acc {metrics['val/acc']:6.2f}%  "
            f"lr {metrics['lr']:.4g}  {metrics['time/epoch_s']:.1f}s "
            f"({metrics['train/samples_per_s']:,.0f} img/s)",
            highlight=False,
        )

    return on_epoch


def _summary(result, out: Path) -> None:
    final = result.final
    table = Table(title="result")
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("best val/acc", f"{result.best_val_acc:.2f}%"),
        ("final val/acc", f"{final.get('val/acc', float('nan')):.2f}%"),
        ("epochs run", str(final.get("epoch", 0))),
        ("stopped by", result.stop_reason),
        ("params", f"{int(result.facts.get('model/params', 0)):,}"),
        ("size", f"{result.facts.get('model/size_kb', 0):.1f} KB"),
        ("FLOPs / image", f"{result.facts.get('model/flops', 0):,.0f}"),
    ]
    if "model/latency_s" in result.facts:
        rows.append(
            (
                "CPU latency",
                f"{result.facts['model/latency_s']:.3f} s / "
                f"{int(result.facts['model/latency_images']):,} images",
            )
        )
    rows.append(("trial directory", str(out)))
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


def _run_fit(fn, out: Path) -> None:
    from effray.checkpoint import CheckpointError
    from effray.train import TrialDiverged

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except SpecError as exc:
            _show_warnings(caught)
            _spec_error(exc)
        except CheckpointError as exc:
            fail(str(exc))
        except TrialDiverged as exc:
            _show_warnings(caught)
            fail(str(exc), code=1)
    shown = ("NoEffectWarning", "TrackingWarning")
    _show_warnings([w for w in caught if type(w.message).__name__ in shown])
    _summary(result, out)


@app.command()
def train(
    spec: SpecArg,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Trial directory (default runs/<name>).")] = None,
    trial_name: Annotated[
        str | None, typer.Option("--trial", help="Which trial of the spec (default: the first).")
    ] = None,
) -> None:
    """Train one trial on this machine, no Ray: checkpoints every epoch, resumable."""
    from effray.local import train_dir
    from effray.spec import expand as expand_spec

    loaded = _load(spec, set_)
    trials = expand_spec(loaded)
    names = [t.trial.name for t in trials]
    if trial_name is not None and trial_name not in names:
        fail(
            f"--trial {trial_name!r} is not a trial of {spec} (allowed one of {', '.join(names)}"
            f"{'; did you mean ' + repr(did_you_mean(trial_name, names)) + '?' if did_you_mean(trial_name, names) else ''})"
        )
    trial = trials[names.index(trial_name)] if trial_name else trials[0]
    if len(trials) > 1 and trial_name is None:
        console.print(
            f"{spec} expands to {len(trials)} trials; training the first, {trial.trial.name!r} "
            "(pick one with --trial NAME; `effray run` runs them all)"
        )
    out = out or Path("runs") / loaded.name
    console.print(f"training {trial.trial.name} ({trial.model.name} on {trial.data.name}) → {out}")
    _run_fit(lambda: train_dir(trial, out, _epoch_printer(trial.train.epochs)), out)


@app.command()
def resume(
    trial_dir: Annotated[Path, typer.Argument(help="Trial directory with checkpoints.")],
    epochs: Annotated[int | None, typer.Option(help="Train to this many epochs in total.")] = None,
    set_: SetOpt = None,
) -> None:
    """Continue a trial from its newest good checkpoint (also one copied from a cluster)."""
    from effray.checkpoint import CheckpointError
    from effray.local import resume_dir, resume_spec

    if not trial_dir.exists():
        fail(f"trial directory not found: {trial_dir}")
    try:
        spec, loaded = resume_spec(trial_dir, epochs, set_)
    except CheckpointError as exc:
        fail(str(exc))
    except SpecError as exc:
        _spec_error(exc)
    console.print(
        f"resuming {trial_dir} from {loaded.path.name} (epoch {loaded.payload['epoch']}) "
        f"to epoch {spec.train.epochs}"
    )
    _run_fit(
        lambda: resume_dir(trial_dir, epochs, set_, _epoch_printer(spec.train.epochs)), trial_dir
    )


REPORT_FORMATS = ("table", "markdown", "csv", "json")


@app.command()
def report(
    experiment_dir: Annotated[
        Path, typer.Argument(help="Experiment directory (or one trial directory).")
    ],
    format_: Annotated[
        str, typer.Option("--format", help="table | markdown | csv | json.")
    ] = "table",
    sort: Annotated[
        str | None,
        typer.Option(help="Sort by a column: acc, final, best, diff, paper_diff, params, …"),
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write val_acc_curves.png and acc_vs_params.png here.")
    ] = None,
    baseline: Annotated[str, typer.Option(help="Group the Δ column compares to.")] = "baseline",
) -> None:
    """Results table, one row per technique set: val acc mean ± std over seeds, size, latency."""
    from effray import report as rep

    if format_ not in REPORT_FORMATS:
        fail(f"--format {format_!r} is not a format (allowed {', '.join(REPORT_FORMATS)})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            records = rep.load_experiment(experiment_dir)
            rows = rep.summarize(records, baseline=baseline)
            rows = rep.sort_rows(rows, sort) if sort else rows
        except rep.ReportError as exc:
            fail(str(exc))
    _show_warnings(caught)
    if format_ == "markdown":
        sys.stdout.write(rep.to_markdown(rows))
    elif format_ == "csv":
        sys.stdout.write(rep.to_csv(rows))
    elif format_ == "json":
        sys.stdout.write(rep.to_json(rows, records))
    else:
        headers, cells = rep.table_cells(rows)
        name = records[0].experiment or str(experiment_dir)
        table = Table(title=f"{name}: {len(records)} trials, {len(rows)} technique sets")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i in (0, len(headers) - 1) else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        console.print(rep.legend(rows), style="dim", highlight=False)
    if plots is not None:
        for path in rep.write_plots(records, rows, plots):
            err_console.print(f"plot: {path}", highlight=False)


# ---------------------------------------------------------------------------------
# Ray: run, restore, submit, jobs, logs, stop (the work happens in effray.tune)
# ---------------------------------------------------------------------------------

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
    name: NameOpt = None,
) -> None:
    """Run every trial of a spec on Ray Tune; ASHA stops weak ones. Exit 1 if any failed."""
    from effray.tune import run_experiment

    loaded, _ = _load_trials(spec, set_)
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


def _load_for_cluster(spec: Path, overrides: list[str] | None):
    """Validate a spec to submit; a dataset missing here may be on the cluster (warn only)."""
    from effray.spec import expand as expand_spec
    from effray.spec import load_spec

    try:
        loaded = load_spec(spec, overrides or [])
        expand_spec(loaded)
        return loaded
    except SpecError as exc:
        if not exc.problems or any(not p.path.startswith("data.") for p in exc.problems):
            _spec_error(exc)
        for p in exc.problems:
            err_console.print(
                f"[yellow]warning:[/] {p} (on this machine; the cluster needs it)",
                highlight=False,
                soft_wrap=True,
            )
        return None


def _jobs_call(fn):
    from effray.tune import ExperimentError

    try:
        return fn()
    except ExperimentError as exc:
        fail(str(exc))


@app.command()
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
        )
    )
    sys.stdout.write(job_id + "\n")
    err_console.print(
        f"submitted to {jobs_address(address)}; follow with `effray logs {job_id} --follow`",
        highlight=False,
        soft_wrap=True,
    )


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def sync(
    experiment_dir: Annotated[Path, typer.Argument(help="Experiment or trial directory.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, push nothing.")] = False,
) -> None:
    """Push the offline W&B runs under a directory to W&B (`wandb sync`; needs a key)."""
    from effray.tracking import offline_runs, sync_runs

    if not experiment_dir.exists():
        fail(f"directory not found: {experiment_dir}")
    runs = offline_runs(experiment_dir)
    if not runs:
        fail(f"no offline W&B runs (offline-run-*) under {experiment_dir}")
    ids = {f.stem.removeprefix("run-") for p in runs for f in p.glob("run-*.wandb")}
    console.print(
        f"{'would push' if dry_run else 'pushing'} {len(runs)} offline run "
        f"director{'ies' if len(runs) != 1 else 'y'} ({len(ids)} W&B run{'s' if len(ids) != 1 else ''}) from {experiment_dir}",
        highlight=False,
    )
    code = sync_runs(runs, dry_run=dry_run)
    if code:
        fail(f"wandb sync exited with code {code}; the runs stay on disk, run this again", code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
