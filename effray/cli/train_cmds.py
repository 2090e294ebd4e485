"""train and resume: one trial in a directory on this machine, no Ray."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from effray.cli.common import (
    SetOpt,
    SpecArg,
    _load,
    _show_warnings,
    _spec_error,
    app,
    console,
    fail,
)
from effray.errors import SpecError, did_you_mean


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
