"""Commands on this machine, no Ray: train, resume, report, sync.

$ effray train experiments/quickstart.yaml --out runs/quick
$ effray resume runs/quick --epochs 20
$ effray report runs/quickstart --format markdown
$ effray resume s3://bucket/runs/quickstart/baseline-seed0 --epochs 20   # a stored trial

Locations (experiment or trial) are a directory or a URI (s3://, gs://, file://).
"""

from __future__ import annotations

import sys
import warnings
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
    show_warnings,
    spec_error,
)
from effray.errors import SpecError, did_you_mean
from effray.storage import ExperimentError, is_uri, redact


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
            show_warnings(caught)
            spec_error(exc)
        except CheckpointError as exc:
            fail(str(exc))
        except TrialDiverged as exc:
            show_warnings(caught)
            fail(str(exc), code=1)
    from effray.techniques import NoEffectWarning
    from effray.tracking import TrackingWarning

    show_warnings([w for w in caught if issubclass(w.category, NoEffectWarning | TrackingWarning)])
    _summary(result, out)


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

    loaded, trials = load_trials(spec, set_)
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


def resume(
    trial: Annotated[
        str,
        typer.Argument(help="Trial directory with checkpoints, or its URI (s3://…/EXP/TRIAL)."),
    ],
    epochs: Annotated[int | None, typer.Option(help="Train to this many epochs in total.")] = None,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Copy the trial here and continue the copy (a URI: runs/EXP/TRIAL)."),
    ] = None,
) -> None:
    """Continue a trial from its newest good checkpoint, here and without Ray (a trial in
    an object store is copied to this machine first; its W&B run continues)."""
    from effray.checkpoint import CheckpointError
    from effray.local import fetch_trial, resume_dir, resume_spec

    if is_uri(trial) or out is not None:
        try:
            fetched = fetch_trial(trial, out)
        except (ExperimentError, CheckpointError, OSError) as exc:
            fail(str(exc) if not isinstance(exc, OSError) else f"{redact(trial)}: {exc}")
        console.print(
            f"copied {redact(trial)} (checkpoint of epoch {fetched.epoch}) → {fetched.path}",
            highlight=False,
            soft_wrap=True,
        )
        trial_dir = fetched.path
    else:
        trial_dir = Path(trial)
    if not trial_dir.exists():
        fail(f"trial directory not found: {trial_dir}")
    try:
        spec, loaded = resume_spec(trial_dir, epochs, set_)
    except CheckpointError as exc:
        fail(str(exc))
    except SpecError as exc:
        spec_error(exc)
    console.print(
        f"resuming {trial_dir} from {loaded.path.name} (epoch {loaded.payload['epoch']}) "
        f"to epoch {spec.train.epochs}"
    )
    _run_fit(
        lambda: resume_dir(trial_dir, epochs, set_, _epoch_printer(spec.train.epochs)), trial_dir
    )


REPORT_FORMATS = ("table", "markdown", "csv", "json")


def report(
    experiment_dir: Annotated[
        str, typer.Argument(help="Experiment directory or URI (or one trial's).")
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
            if baseline == "baseline" and not any(r.group == "baseline" for r in records):
                baseline = "base" if any(r.group == "base" for r in records) else baseline
            rows = rep.summarize(records, baseline=baseline)
            rows = rep.sort_rows(rows, sort) if sort else rows
        except (rep.ReportError, ExperimentError) as exc:
            fail(str(exc))
    show_warnings(caught)
    from effray.report.search_path import load_path, path_markdown

    search_path = load_path(experiment_dir)  # a greedy search (search.stages): its path
    if format_ == "markdown":
        sys.stdout.write(rep.to_markdown(rows))
        if search_path:
            sys.stdout.write("\n" + path_markdown(search_path))
    elif format_ == "csv":
        sys.stdout.write(rep.to_csv(rows))
    elif format_ == "json":
        sys.stdout.write(rep.to_json(rows, records))
    else:
        from effray.cli.views import fit_columns

        headers, cells = rep.table_cells(rows)
        headers, cells, dropped = fit_columns(headers, cells, console.width)
        name = records[0].experiment or redact(experiment_dir)
        table = Table(title=f"{name}: {len(records)} trials, {len(rows)} technique sets")
        for i, h in enumerate(headers):
            table.add_column(
                h,
                justify="left" if i == 0 or h == "stopped by" else "right",
                no_wrap=i == 0,  # the technique set is a name: never cut
            )
        for row in cells:
            table.add_row(*row)
        console.print(table)
        console.print(rep.legend(rows), style="dim", highlight=False)
        if dropped:
            console.print(
                f"not shown at {console.width} columns: {', '.join(dropped)} "
                "(a wider terminal, --format markdown or --format csv shows them)",
                style="dim",
                highlight=False,
            )
        if search_path:
            from effray.cli.views import print_search_path

            print_search_path(search_path, experiment_dir)
    if plots is not None:
        for path in rep.write_plots(records, rows, plots):
            err_console.print(f"plot: {path}", highlight=False)


def sync(
    experiment_dir: Annotated[
        str, typer.Argument(help="Experiment or trial directory, or its URI.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List, push nothing.")] = False,
) -> None:
    """Push the offline W&B runs under a directory to W&B (`wandb sync`; needs a key).
    For a URI, the runs stored beside its results are copied here first."""
    from effray.tracking import fetch_stored_runs, offline_runs, sync_runs

    if is_uri(experiment_dir):
        try:
            root, runs = fetch_stored_runs(experiment_dir)
        except (ExperimentError, OSError) as exc:
            fail(str(exc) if not isinstance(exc, OSError) else f"{redact(experiment_dir)}: {exc}")
        if not runs:
            fail(
                f"no offline W&B runs stored under {redact(experiment_dir)} (`effray run "
                "--storage URI` copies them to EXPERIMENT/wandb when W&B logs offline)"
            )
        console.print(
            f"copied {len(runs)} offline run director{'ies' if len(runs) != 1 else 'y'} "
            f"from {redact(experiment_dir)} to {root}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        if not Path(experiment_dir).exists():
            fail(f"directory not found: {experiment_dir}")
        runs = offline_runs(experiment_dir)
        if not runs:
            fail(f"no offline W&B runs (offline-run-*) under {experiment_dir}")
    ids = {f.stem.removeprefix("run-") for p in runs for f in p.glob("run-*.wandb")}
    console.print(
        f"{'would push' if dry_run else 'pushing'} {len(runs)} offline run "
        f"director{'ies' if len(runs) != 1 else 'y'} ({len(ids)} W&B run{'s' if len(ids) != 1 else ''}) from {redact(experiment_dir)}",
        highlight=False,
    )
    code = sync_runs(runs, dry_run=dry_run)
    if code:
        fail(f"wandb sync exited with code {code}; the runs stay on disk, run this again", code)
