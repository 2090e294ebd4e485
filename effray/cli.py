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


@app.command()
def validate(spec: SpecArg, set_: SetOpt = None) -> None:
    """Check a spec completely; print OK or every problem (exit code 2)."""
    from effray.spec import expand

    loaded = _load(spec, set_)
    try:
        trials = expand(loaded)
    except SpecError as exc:
        _spec_error(exc)
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
    from effray.spec import expand as expand_spec

    loaded = _load(spec, set_)
    try:
        trials = expand_spec(loaded)
    except SpecError as exc:
        _spec_error(exc)
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
    _show_warnings([w for w in caught if "NoEffect" in type(w.message).__name__])
    _summary(result, out)


@app.command()
def train(
    spec: SpecArg,
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Trial directory (default runs/<name>).")] = None,
) -> None:
    """Train one trial on this machine, no Ray: checkpoints every epoch, resumable."""
    from effray.local import train_dir
    from effray.spec import expand as expand_spec

    loaded = _load(spec, set_)
    trials = expand_spec(loaded)
    if len(trials) != 1:
        fail(
            f"{spec} expands to {len(trials)} trials; `effray train` runs one "
            "(use `effray run` for many, or set ablation: none and remove search)"
        )
    trial = trials[0]
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
