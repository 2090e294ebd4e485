"""Reading trials from an experiment directory: trial specs, metrics, stop reasons."""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

TRIAL_SPEC = "trial_spec.yaml"  # as effray.local writes them
METRICS = "metrics.jsonl"
RESULTS = "results.json"  # written by `effray run` when the whole experiment ends
# results.json reasons a later restore may have overtaken; the trial's metrics decide then
UNSETTLED = ("interrupted", "not started")
EXPERIMENT_FILE = "effray_experiment.json"  # `effray run`'s manifest: the spec, trial names
MAX_DEPTH = 3  # directory levels searched below the experiment dir for trial dirs
RUNNING = "running/stopped"  # fewer epochs than planned and no results.json saying why
PENDING = "pending"  # a trial directory with no epoch reported yet


class ReportError(Exception):
    """No experiment to report on; the message says where and what was expected."""


@dataclass
class TrialRecord:
    """One trial as its directory records it."""

    name: str
    group: str  # technique set, e.g. "blurpool+mixup" or "baseline"
    seed: int
    techniques: list[str]
    history: list[dict[str, Any]]  # one metrics dict per epoch, in epoch order
    epochs_planned: int  # train.epochs of the trial spec
    stopped_by: str  # finished | asha | early_stopping | error: <why> | running/stopped | pending
    path: str
    experiment: str = ""
    model: str = ""
    dataset: str = ""
    index: int = 0  # position in the expanded experiment (table order)
    reference: dict[str, float] = field(default_factory=dict)  # the spec's published numbers
    choices: dict[str, Any] = field(default_factory=dict)  # search choices, e.g. train.lr
    epochs_run: int = 0
    best_val_acc: float = math.nan  # % the best epoch reached
    best_epoch: int = 0
    final_val_acc: float = math.nan  # % after the last epoch run
    params: float = math.nan
    size_kb: float = math.nan
    flops: float = math.nan  # forward FLOPs per image
    latency_s: float = math.nan  # CPU seconds to predict latency_images validation images
    latency_images: float = math.nan
    train_time_s: float = 0.0  # sum of the epochs' training time (evaluation excluded)
    late_gain: float = math.nan  # points the best val/acc rose in the last quarter of epochs


# ---------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------


def find_trial_dirs(directory: Path) -> list[Path]:
    """`directory` itself when it is a trial, else every trial dir up to MAX_DEPTH below it."""
    if (directory / TRIAL_SPEC).is_file():
        return [directory]
    found = []
    for root, dirs, files in os.walk(directory):
        depth = len(Path(root).relative_to(directory).parts)
        if TRIAL_SPEC in files and depth > 0:
            found.append(Path(root))
            dirs[:] = []  # checkpoints below a trial are not trials
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
    return found


def read_history(path: Path) -> list[dict[str, Any]]:
    """Per-epoch metrics of a trial, the current run's lineage only.

    A line that is not JSON (the last one, while it is written) is skipped. When an epoch
    number does not increase, the trial was restored from an earlier checkpoint: the
    lines after that checkpoint belong to a lost run and are replaced by the new ones.
    """
    history: list[dict[str, Any]] = []
    if not path.is_file():
        return history
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                metrics = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(metrics, dict) or "epoch" not in metrics:
                continue
            epoch = int(metrics["epoch"])
            while history and int(history[-1]["epoch"]) >= epoch:
                history.pop()
            history.append(metrics)
    return history


def read_stop_reasons(directory: Path) -> dict[str, str]:
    """Trial name -> why it stopped, from results.json when `effray run` wrote one."""
    path = directory / RESULTS
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    if isinstance(data, dict):
        data = data.get("trials", data)
    entries = data.items() if isinstance(data, dict) else enumerate(data)
    out = {}
    for key, entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name") or entry.get("trial") or entry.get("trial_name") or key
        reason = entry.get("stopped_by") or entry.get("stop_reason")
        if isinstance(name, str) and reason and str(reason) not in UNSETTLED:
            out[name] = str(reason)
    return out


def _early_stopped(history: list[dict[str, Any]], techniques: list[dict]) -> bool:
    """Does the spec's early_stopping rule fire at the last epoch recorded?"""
    from effray.techniques.early_stopping import improved

    rule = next((t for t in techniques if t.get("kind") == "early_stopping"), None)
    if rule is None or not history:
        return False
    metric, mode = rule.get("metric", "val/loss"), rule.get("mode", "min")
    patience, delta = int(rule.get("patience", 15)), float(rule.get("min_delta", 0.0))
    best, bad = None, 0
    for m in history:
        if metric not in m:
            return False
        if improved(float(m[metric]), best, mode, delta):
            best, bad = float(m[metric]), 0
        else:
            bad += 1
    return bad >= patience


def _technique_name(t: dict) -> str:
    kind = str(t.get("kind", "?"))
    return kind.rsplit(":", 1)[-1] if ":" in kind else kind  # plugins: the class name


def _fact(history: list[dict[str, Any]], key: str) -> float:
    for m in reversed(history):
        if key in m:
            return float(m[key])
    return math.nan


def load_trial(directory: Path, stop_reasons: dict[str, str] | None = None) -> TrialRecord:
    """Read one trial directory (trial_spec.yaml, metrics.jsonl)."""
    raw = yaml.safe_load((directory / TRIAL_SPEC).read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ReportError(f"{directory / TRIAL_SPEC}: not a trial spec (expected a mapping)")
    meta = raw.get("trial") or {}
    techniques = [t for t in raw.get("techniques") or [] if isinstance(t, dict)]
    names = [_technique_name(t) for t in techniques]
    train = raw.get("train") or {}
    history = read_history(directory / METRICS)
    name = meta.get("name") or directory.name
    record = TrialRecord(
        name=name,
        group=meta.get("group") or "+".join(names) or "baseline",
        seed=int(train.get("seed", 0)),
        techniques=names,
        history=history,
        epochs_planned=int(train.get("epochs", 0)),
        stopped_by=PENDING,
        path=str(directory),
        experiment=str(raw.get("name", "")),
        model=str((raw.get("model") or {}).get("name", "")),
        dataset=str((raw.get("data") or {}).get("name", "")),
        index=int(meta.get("index", 0)),
        reference={str(k): float(v) for k, v in (raw.get("reference") or {}).items()},
        choices=dict(meta.get("params") or {}),
    )
    if history:
        accs = [float(m.get("val/acc", math.nan)) for m in history]
        best = int(np.nanargmax(accs)) if not all(math.isnan(a) for a in accs) else 0
        record.epochs_run = int(history[-1]["epoch"])
        record.best_val_acc, record.best_epoch = accs[best], int(history[best]["epoch"])
        record.final_val_acc = accs[-1]
        record.params = _fact(history, "model/params")
        record.size_kb = _fact(history, "model/size_kb")
        record.flops = _fact(history, "model/flops")
        record.latency_s = _fact(history, "model/latency_s")
        record.latency_images = _fact(history, "model/latency_images")
        record.train_time_s = sum(float(m.get("time/epoch_s", 0.0)) for m in history)
        record.late_gain = late_gain(accs)
    reason = (stop_reasons or {}).get(name)
    if reason:
        record.stopped_by = reason
    elif history and record.epochs_run >= record.epochs_planned:
        record.stopped_by = "finished"
    elif _early_stopped(history, techniques):
        record.stopped_by = "early_stopping"
    elif history:
        record.stopped_by = RUNNING
    return record


def late_gain(accs: list[float]) -> float:
    """How many points the best val acc rose during the last quarter of the epochs run
    (at least the last epoch): max(all) - max(all but the last quarter).

    A convergence check: near 0, more epochs of this schedule would not have helped; a
    positive value says the trial was still improving when it stopped. nan with < 2 epochs.
    """
    seen = [a for a in accs if not math.isnan(a)]
    if len(seen) < 2:
        return math.nan
    late = max(1, len(accs) // 4)
    earlier = [a for a in accs[:-late] if not math.isnan(a)]
    return max(seen) - max(earlier) if earlier else math.nan


def load_experiment(directory: str | os.PathLike) -> list[TrialRecord]:
    """Every trial under an experiment directory (or the one trial it is), in table order.

    A trial directory whose spec cannot be read is skipped with a warning.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise ReportError(f"experiment directory not found: {directory}")
    reasons = read_stop_reasons(directory)
    records = []
    for d in find_trial_dirs(directory):
        try:
            records.append(load_trial(d, reasons))
        except (OSError, yaml.YAMLError, ReportError, ValueError, TypeError) as exc:
            warnings.warn(f"{d}: skipped ({exc})", stacklevel=2)
    manifest = _manifest(directory)
    records += _not_started(directory, manifest, {r.name for r in records})
    name = str(manifest.get("name") or "")
    for r in records:  # `effray run --name` names the experiment, not the spec's name
        r.experiment = name or r.experiment
    if not records:
        raise ReportError(
            f"no trials in {directory}: expected {TRIAL_SPEC} in it or in its trial "
            "directories (written by `effray run` or `effray train`)"
        )
    return sorted(records, key=lambda r: (r.index, r.name))


def _manifest(directory: Path) -> dict[str, Any]:
    """`effray run`'s effray_experiment.json (name, spec, trial names); {} when unreadable."""
    try:
        manifest = json.loads((directory / EXPERIMENT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _not_started(directory: Path, manifest: dict[str, Any], seen: set[str]) -> list[TrialRecord]:
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
        TrialRecord(
            name=t.trial.name,
            group=t.trial.group,
            seed=t.train.seed,
            techniques=[x.name for x in t.techniques],
            history=[],
            epochs_planned=t.train.epochs,
            stopped_by=PENDING,
            path=str(directory / t.trial.name),
            experiment=t.name,
            model=t.model.name,
            dataset=t.data.name,
            index=t.trial.index,
            reference=dict(t.reference),
            choices=dict(t.trial.params),
        )
        for t in trials
        if t.trial.name in missing
    ]
