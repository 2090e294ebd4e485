"""One trial in a directory on this machine, no Ray: what `effray train` and `effray resume` do.

$ effray train experiments/quickstart.yaml --out runs/quick
$ effray resume runs/quick --epochs 20
$ effray resume s3://bucket/runs/quickstart/baseline-seed0 --epochs 20   # copied, then resumed
"""

from __future__ import annotations

import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from effray.checkpoint import (
    CheckpointError,
    append_metrics,
    atomic_write_text,
    list_checkpoints,
    load_checkpoint,
    load_latest,
)
from effray.results import CHECKPOINTS, METRICS, TRIAL_SPEC
from effray.spec import (
    ExperimentSpec,
    apply_override,
    new_trial_id,
    parse_override,
    spec_from_dict,
    to_yaml,
)
from effray.storage import (
    DEFAULT_STORAGE,
    ExperimentError,
    basename,
    download,
    is_file,
    join,
    list_dir,
    location,
    parent,
    read_text,
    redact,
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


@dataclass
class Fetched:
    path: Path  # the local trial directory
    epoch: int  # the epoch of the checkpoint brought along
    run_state: bool  # the W&B run's effray state came too (its last logged step)


def fetch_trial(src: str, out: str | Path | None = None) -> Fetched:
    """Copy a trial directory (a URI or a path) to `out`, default ./runs/<experiment>/<trial>:
    its small files (spec, metrics, attempts), its newest readable checkpoint and its W&B
    run's effray state, so `resume_dir(out)` continues the trial and its W&B run here."""
    from effray.tracking import fetch_state

    src = location(src)
    if not is_file(join(src, TRIAL_SPEC)):
        raise ExperimentError(
            f"{redact(src)} is not a trial directory (no {TRIAL_SPEC} in it); pass "
            "EXPERIMENT/TRIAL (`effray report EXPERIMENT` lists the trials)"
        )
    out = (
        Path(out)
        if out is not None
        else Path(DEFAULT_STORAGE, basename(parent(src)), basename(src))
    )
    if out.exists() and any(out.iterdir()):
        raise ExperimentError(
            f"{out} already exists; continue it with `effray resume {out}`, or copy "
            "elsewhere with --out DIR"
        )
    entries = list_dir(src)
    for name, is_dir in entries:
        if not is_dir:
            download(join(src, name), out / name)
    epoch = _newest_checkpoint(src, out, [n for n, d in entries if d])
    run_id = (yaml.safe_load(read_text(join(src, TRIAL_SPEC))).get("trial") or {}).get("id")
    state = False
    if run_id:  # Ray trials: the state sits beside the results, one level up
        state = fetch_state(parent(src), out, run_id) or fetch_state(src, out, run_id)
    return Fetched(out, epoch, state)


def _newest_checkpoint(src: str, out: Path, dirs: list[str]) -> int:
    """Download checkpoint directories, newest first, until one holds a readable
    checkpoint; its epoch. Unreadable ones are left behind."""
    ray_dirs = sorted((d for d in dirs if d.startswith("checkpoint_")), reverse=True)
    candidates = ray_dirs + [d for d in dirs if d == CHECKPOINTS]
    for name in candidates:
        local = download(join(src, name), out / name)
        found = list_checkpoints(local)
        for path in reversed(found):
            try:
                payload = load_checkpoint(path)
            except CheckpointError as exc:
                warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=3)
                path.unlink()
                continue
            return int(payload["epoch"])
        shutil.rmtree(local, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    raise CheckpointError(
        f"no readable checkpoint in {redact(src)} (looked in {', '.join(candidates) or 'nothing'})"
    )
