"""Reading trials from an experiment directory (a local path or a URI, read in place):
trial specs, metrics, stop reasons."""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import yaml

from effray.results import (
    EXPERIMENT_FILE,
    FINISHED,
    METRICS,
    RESULTS_JSON,
    RUNNING,
    TRIAL_SPEC,
    TrialRecord,
    history_from_text,
    settled_stop_reasons,
)
from effray.storage import find_dirs_with, is_dir, is_file, join, location, read_text, redact

MAX_DEPTH = 3  # directory levels searched below the experiment dir for trial dirs


class ReportError(Exception):
    """No experiment to report on; the message says where and what was expected."""


# ---------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------


def find_trial_dirs(directory: str | os.PathLike) -> list[str]:
    """`directory` itself when it is a trial, else every trial dir up to MAX_DEPTH below it
    (checkpoints below a trial, which hold a copy of its files, are not trials)."""
    directory = location(directory)
    if is_file(join(directory, TRIAL_SPEC)):
        return [directory]
    return find_dirs_with(directory, TRIAL_SPEC, MAX_DEPTH)


def read_history(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Per-epoch metrics of a trial, the current run's lineage only (`history_from_text`)."""
    try:
        return history_from_text(read_text(location(path)))
    except OSError:  # no metrics yet (FileNotFoundError is one)
        return []


def read_stop_reasons(directory: str | os.PathLike) -> dict[str, str]:
    """Trial name -> why it stopped, from results.json when `effray run` wrote one."""
    try:
        return settled_stop_reasons(read_text(join(location(directory), RESULTS_JSON)))
    except OSError:
        return {}


def load_trial(
    directory: str | os.PathLike, stop_reasons: dict[str, str] | None = None
) -> TrialRecord:
    """Read one trial directory (trial_spec.yaml, metrics.jsonl).

    Why it stopped: results.json's settled verdict, else what fit's last report says
    (`stop_reason`), else RUNNING (epochs reported, none said it was the last).
    """
    directory = location(directory)
    raw = yaml.safe_load(read_text(join(directory, TRIAL_SPEC)))
    if not isinstance(raw, dict):
        where = redact(join(directory, TRIAL_SPEC))
        raise ReportError(f"{where}: not a trial spec (expected a mapping)")
    record = TrialRecord.from_spec(raw, directory)
    record.add_history(read_history(join(directory, METRICS)))
    reason = (stop_reasons or {}).get(record.name)
    if reason:
        record.stopped_by = reason
    elif record.history:
        last = record.history[-1]
        record.stopped_by = last.get("stop_reason") or (
            FINISHED if record.epochs_run >= record.epochs_planned else RUNNING
        )
    return record


def load_experiment(directory: str | os.PathLike) -> list[TrialRecord]:
    """Every trial under an experiment directory (or the one trial it is), in table order.

    A trial directory whose spec cannot be read is skipped with a warning. A URI is read
    in place (effray.storage: a bad bucket or endpoint raises its StorageError).
    """
    directory = location(directory)
    if not is_dir(directory):
        raise ReportError(f"experiment directory not found: {redact(directory)}")
    reasons = read_stop_reasons(directory)
    records = []
    for d in find_trial_dirs(directory):
        try:
            records.append(load_trial(d, reasons))
        except (OSError, yaml.YAMLError, ReportError, ValueError, TypeError) as exc:
            warnings.warn(f"{redact(d)}: skipped ({exc})", stacklevel=2)
    manifest = _manifest(directory)
    records += _not_started(directory, manifest, {r.name for r in records})
    name = str(manifest.get("name") or "")
    for r in records:  # `effray run --name` names the experiment, not the spec's name
        r.experiment = name or r.experiment
    if not records:
        raise ReportError(
            f"no trials in {redact(directory)}: expected {TRIAL_SPEC} in it or in its trial "
            "directories (written by `effray run` or `effray train`)"
        )
    return sorted(records, key=lambda r: r.order)


def _manifest(directory: str) -> dict[str, Any]:
    """`effray run`'s effray_experiment.json (name, spec, trial names); {} when unreadable."""
    try:
        manifest = json.loads(read_text(join(directory, EXPERIMENT_FILE)))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _not_started(directory: str, manifest: dict[str, Any], seen: set[str]) -> list[TrialRecord]:
    """Trials `effray run` planned (its manifest) that have no directory yet."""
    try:
        missing = set(manifest.get("trials", [])) - seen
        if not missing:
            return []
        from effray.spec import planned_trials

        trials = planned_trials(manifest)
    except Exception:  # an unreadable manifest only costs the pending rows
        return []
    return [
        TrialRecord.from_spec(t.model_dump(mode="json"), join(directory, t.trial.name))
        for t in trials
        if t.trial.name in missing
    ]
