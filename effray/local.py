"""One trial in a directory on this machine, no Ray: what `effray train` and `effray resume` do.

$ effray train experiments/quickstart.yaml --out runs/quick
$ effray resume runs/quick --epochs 20
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from effray.checkpoint import append_metrics, atomic_write_text, load_latest
from effray.results import CHECKPOINTS, METRICS, TRIAL_SPEC
from effray.spec import (
    ExperimentSpec,
    apply_override,
    new_trial_id,
    parse_override,
    spec_from_dict,
    to_yaml,
)
from effray.tracking import track_fit
from effray.train import FitResult, Report, fit


def _recorder(out: Path, on_epoch: Report | None) -> Report:
    def report(metrics: dict[str, Any], checkpoint: Path | None) -> None:
        append_metrics(out / METRICS, metrics)
        if on_epoch is not None:
            on_epoch(metrics, checkpoint)

    return report


def train_dir(spec: ExperimentSpec, out: str | Path, on_epoch: Report | None = None) -> FitResult:
    """Train one trial into `out` (trial spec, checkpoints every epoch, metrics.jsonl)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if spec.trial is not None and spec.trial.id is None:
        spec = spec.model_copy(deep=True)
        spec.trial.id = new_trial_id()
    atomic_write_text(out / TRIAL_SPEC, to_yaml(spec))
    report = _recorder(out, on_epoch)
    return track_fit(spec, out, report, lambda r: fit(spec, r, out / CHECKPOINTS))


def resume_spec(
    directory: str | Path, epochs: int | None = None, overrides: list[str] | None = None
):
    """(spec, loaded checkpoint) for resuming the trial in `directory`."""
    loaded = load_latest(Path(directory))
    raw = loaded.payload["spec"]
    for text in overrides or []:
        key, value = parse_override(text)
        apply_override(raw, key, value)
    if epochs is not None:
        raw.setdefault("train", {})["epochs"] = epochs
    spec = spec_from_dict(raw, source=f"{loaded.path} (saved spec)")
    return spec, loaded


def resume_dir(
    directory: str | Path,
    epochs: int | None = None,
    overrides: list[str] | None = None,
    on_epoch: Report | None = None,
) -> FitResult:
    """Continue the trial in `directory` from its newest readable checkpoint.

    Works on directories from `effray train` and from Ray (also copied from a cluster:
    only relative paths inside the directory are used). New checkpoints go to
    `directory/checkpoints/`.
    """
    directory = Path(directory)
    spec, loaded = resume_spec(directory, epochs, overrides)
    atomic_write_text(directory / TRIAL_SPEC, to_yaml(spec))
    report = _recorder(directory, on_epoch)
    return track_fit(
        spec, directory, report, lambda r: fit(spec, r, directory / CHECKPOINTS, resume_from=loaded)
    )
