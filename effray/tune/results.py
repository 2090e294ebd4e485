"""One outcome per trial, from Ray's result grid; written as results.json and results.csv."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import effray
from effray.tune.callbacks import STOPPED_BY_SCHEDULER
from effray.tune.storage import RESULTS_CSV, RESULTS_JSON, _join, _write_text
from effray.tune.trial import TrialFailed


@dataclass
class TrialOutcome:
    name: str
    group: str
    techniques: list[str]
    status: str  # finished | stopped | error | unfinished
    stopped_by: str  # finished | asha | early_stopping | error: <reason> | interrupted
    best_val_acc: float | None
    final_val_acc: float | None
    epochs_run: int
    epochs: int
    params: int | None  # model parameters
    choices: dict[str, Any] = field(default_factory=dict)  # search choices of this trial
    error: str | None = None
    directory: str = ""  # trial directory, relative to the experiment directory
    index: int = 0


@dataclass
class ExperimentResult:
    name: str
    path: str  # experiment directory (local path or URI)
    trials: list[TrialOutcome]
    wall_s: float

    @property
    def errored(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "error"]

    @property
    def unfinished(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "unfinished"]

    @property
    def ok(self) -> bool:
        """Every trial finished or was stopped (by ASHA or early stopping)."""
        return not self.errored and not self.unfinished


def error_reason(error: BaseException | None) -> str:
    """One line saying why a trial failed, from the exception Ray kept."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, TrialFailed):
        text = str(cause)
    else:
        text = f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def outcome(config: dict, metrics: dict, error: BaseException | None, path: str) -> TrialOutcome:
    spec = config.get("trial", {})
    meta = spec.get("trial") or {}
    epochs = int(spec.get("train", {}).get("epochs", 0))
    ran = int(metrics.get("epoch", 0) or 0)
    if error is not None:
        status, stopped_by = "error", f"error: {error_reason(error)}"
    elif ran >= epochs:  # all epochs reported, even if the driver died before Ray saw "done"
        status, stopped_by = "finished", "finished"
    elif not metrics.get("done"):
        status, stopped_by = "unfinished", "interrupted" if ran else "not started"
    elif metrics.get(STOPPED_BY_SCHEDULER):
        status, stopped_by = "stopped", "asha"
    else:
        status, stopped_by = "stopped", "early_stopping"
    params = metrics.get("model/params")
    return TrialOutcome(
        name=meta.get("name", Path(path).name),
        group=meta.get("group", ""),
        techniques=[_technique_name(t) for t in spec.get("techniques", [])],
        status=status,
        stopped_by=stopped_by,
        best_val_acc=metrics.get("val/best_acc"),
        final_val_acc=metrics.get("val/acc"),
        epochs_run=ran,
        epochs=epochs,
        params=int(params) if params is not None else None,
        choices=dict(meta.get("params") or {}),
        error=error_reason(error) or None,
        directory=Path(path).name,
        index=int(meta.get("index", 0)),
    )


def _technique_name(t: dict) -> str:
    kind = str(t.get("kind", "?"))
    return kind.rsplit(":", 1)[-1]


def collect(grid, path: str, name: str, wall_s: float) -> ExperimentResult:
    trials = [outcome(r.config or {}, r.metrics or {}, r.error, str(r.path)) for r in grid]
    trials.sort(key=lambda t: t.index)
    return ExperimentResult(name=name, path=path, trials=trials, wall_s=wall_s)


CSV_COLUMNS = [
    "name",
    "group",
    "techniques",
    "status",
    "stopped_by",
    "best_val_acc",
    "final_val_acc",
    "epochs_run",
    "epochs",
    "params",
    "choices",
    "directory",
]


def write_results(result: ExperimentResult) -> None:
    """results.json and results.csv in the experiment directory."""
    payload = {
        "experiment": result.name,
        "path": result.path,
        "wall_s": result.wall_s,
        "effray_version": effray.__version__,
        "trials": [asdict(t) for t in result.trials],
    }
    _write_text(_join(result.path, RESULTS_JSON), json.dumps(payload, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for t in result.trials:
        row = asdict(t)
        row["techniques"] = "+".join(t.techniques)
        row["choices"] = json.dumps(t.choices, sort_keys=True) if t.choices else ""
        writer.writerow(row)
    _write_text(_join(result.path, RESULTS_CSV), buf.getvalue())
