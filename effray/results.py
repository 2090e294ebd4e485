"""One record of a trial's result, and the names of the files that hold it (no ray, no wandb).

    >>> record = TrialRecord.from_spec(trial_spec_dict, path="runs/quick/baseline-seed0")
    >>> record.add_history(history)            # the epochs metrics.jsonl recorded
    >>> record.stopped_by, record.status       # ('finished', 'finished')

Why a trial stopped is said once, by the code that knows:

- `fit` puts `stop_reason` ("finished" or the technique's, e.g. "early_stopping") in its
  last report, so metrics.jsonl and Ray's last result carry it;
- an exception says it: `TrialDiverged.stop_reason = "diverged"`, anything else "error";
- a trial that ended with neither was stopped from outside: by the scheduler ("asha")
  when Ray marked its last result done, else it was interrupted (or never started).

`stop_reason` turns those facts into the verdict; `effray.tune` (results.json),
`effray.tracking` (the W&B summary) and `effray.report` all use it and this record.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

# Files of an experiment directory (`effray run`) and of a trial directory.
EXPERIMENT_FILE = "effray_experiment.json"  # the manifest: the spec, trial names, version
RESULTS_JSON = "results.json"  # one row per trial, written when a run or restore ends
RESULTS_CSV = "results.csv"
DRIVER_LOG = "driver.log"  # Ray's log lines from the driver (the console stays quiet)
TRIAL_SPEC = "trial_spec.yaml"  # the resolved TrialSpec
METRICS = "metrics.jsonl"  # one line per epoch
TRAIN_TOTAL = "time/train_total_s"  # a report's sum of time/epoch_s over the trial's epochs
CHECKPOINTS = "checkpoints"  # `effray train`/`resume` checkpoints below a trial directory
ATTEMPTS = "attempts.jsonl"  # one line per start of a Ray trial: node, pid, epoch resumed from
FAILURE = "failure.json"  # a deterministic failure; a retry from the same epoch re-raises it

# Why a trial stopped (TrialRecord.stopped_by).
FINISHED = "finished"  # every planned epoch ran
EARLY_STOPPING = "early_stopping"  # a technique ended the fit (fit's stop_reason)
ASHA = "asha"  # the scheduler stopped it
DIVERGED = "diverged"  # the loss became NaN/inf
ERROR = "error"  # any other exception
INTERRUPTED = "interrupted"  # the run ended (Ctrl-C, a killed driver) with epochs left
NOT_STARTED = "not started"  # planned, never started
RUNNING = "running/stopped"  # report only: epochs left and nothing says why (yet)
PENDING = "pending"  # report only: no epoch reported yet
UNSETTLED = (INTERRUPTED, NOT_STARTED)  # a later restore may overtake these
STATUS = {  # stopped_by -> the coarse status `effray run` prints and exits on
    FINISHED: "finished",
    EARLY_STOPPING: "stopped",
    ASHA: "stopped",
    DIVERGED: "error",
    ERROR: "error",
    INTERRUPTED: "unfinished",
    NOT_STARTED: "unfinished",
    RUNNING: "running",
    PENDING: "pending",
}
BASELINE = "baseline"  # the name of the empty technique set


def technique_name(kind: str) -> str:
    """A technique's short name: its kind, or the class name of a plugin ('pkg.mod:Cls')."""
    return kind.rsplit(":", 1)[-1]


def technique_set(names: list[str]) -> str:
    """The name of a set of techniques, e.g. 'blurpool+mixup'; 'baseline' when empty."""
    return "+".join(names) or BASELINE


def stop_reason_of_error(error: object) -> str:
    """'diverged' or 'error' (or what the exception class says in `stop_reason`).

    Looks through Ray's wrappers (`.cause`) for the exception fit raised.
    """
    seen = 0
    while error is not None and seen < 5:
        reason = getattr(error, "stop_reason", None)
        if isinstance(reason, str) and reason in STATUS:
            return reason
        error, seen = getattr(error, "cause", None), seen + 1
    return ERROR


def stop_reason(last: dict[str, Any] | None, error: object = None, done: bool = False) -> str:
    """Why a trial ended, from its last reported metrics, its error, and whether the
    runner marked it done (Ray does when its scheduler stops a trial)."""
    if error is not None:
        return stop_reason_of_error(error)
    last = last or {}
    if isinstance(last.get("stop_reason"), str):
        return last["stop_reason"]
    if done:
        return ASHA
    return INTERRUPTED if last.get("epoch") else NOT_STARTED


def error_line(error: object) -> str:
    """One line saying why a trial failed, from the exception (or Ray's wrapper of it)."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    own = getattr(type(cause), "show_message_only", False)
    text = str(cause) if own else f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


@dataclass
class TrialRecord:
    """One trial: what it was (from its spec) and how it went (from its metrics)."""

    name: str
    group: str = BASELINE  # technique set, e.g. "blurpool+mixup"
    seed: int = 0
    techniques: list[str] = field(default_factory=list)
    epochs_planned: int = 0  # train.epochs of the trial spec
    stopped_by: str = PENDING  # one of STATUS's keys
    error: str | None = None  # the one-line reason when stopped_by is diverged/error
    path: str = ""  # the trial directory (local path or URI)
    experiment: str = ""
    model: str = ""
    dataset: str = ""
    index: int = 0  # position in the expanded experiment (table order)
    stage: str = ""  # a greedy search's stage, e.g. "2-regularisers" ("" outside one)
    reference: dict[str, float] = field(default_factory=dict)  # the spec's published numbers
    choices: dict[str, Any] = field(default_factory=dict)  # search choices, e.g. train.lr
    history: list[dict[str, Any]] = field(default_factory=list)  # per-epoch metrics, if read
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

    @property
    def status(self) -> str:
        """finished | stopped | error | unfinished | running | pending."""
        return STATUS.get(self.stopped_by, "error")

    @property
    def order(self) -> tuple[int, int, str]:
        """Table order: stage by stage in a greedy search, then as expanded."""
        number = self.stage.split("-", 1)[0]
        return (int(number) if number.isdigit() else 0, self.index, self.name)

    @property
    def directory(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1] if self.path else self.name

    @classmethod
    def from_spec(cls, raw: dict[str, Any], path: str = "") -> TrialRecord:
        """What a trial spec (as a dict: trial_spec.yaml, a Ray trial's config) says."""
        meta = raw.get("trial") or {}
        techniques = [t for t in raw.get("techniques") or [] if isinstance(t, dict)]
        names = [technique_name(str(t.get("kind", "?"))) for t in techniques]
        train = raw.get("train") or {}
        return cls(
            name=meta.get("name") or path.rstrip("/").rsplit("/", 1)[-1],
            group=meta.get("group") or technique_set(names),
            seed=int(train.get("seed", 0)),
            techniques=names,
            epochs_planned=int(train.get("epochs", 0)),
            path=path,
            experiment=str(raw.get("name", "")),
            model=str((raw.get("model") or {}).get("name", "")),
            dataset=str((raw.get("data") or {}).get("name", "")),
            index=int(meta.get("index", 0)),
            stage=str(meta.get("stage") or ""),
            reference={str(k): float(v) for k, v in (raw.get("reference") or {}).items()},
            choices=dict(meta.get("params") or {}),
        )

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TrialRecord:
        """A record back from its results.json row (the history is not in it)."""
        names = {f.name for f in fields(cls)} - {"history"}
        values = {k: (math.nan if v is None and k in _FLOATS else v) for k, v in row.items()}
        return cls(**{k: v for k, v in values.items() if k in names})

    def add_history(self, history: list[dict[str, Any]]) -> TrialRecord:
        """Fill the statistics from every epoch's metrics (metrics.jsonl)."""
        self.history = history
        if not history:
            return self
        accs = [float(m.get("val/acc", math.nan)) for m in history]
        seen = [i for i, a in enumerate(accs) if not math.isnan(a)]
        best = max(seen, key=lambda i: accs[i]) if seen else 0
        self.epochs_run = int(history[-1]["epoch"])
        self.best_val_acc, self.best_epoch = accs[best], int(history[best]["epoch"])
        self.final_val_acc = accs[-1]
        self.train_time_s = sum(float(m.get("time/epoch_s", 0.0)) for m in history)
        self.late_gain = late_gain(accs)
        self._facts(history)
        return self

    def add_last(self, last: dict[str, Any]) -> TrialRecord:
        """Fill what the last reported metrics tell (a Ray result: no full history)."""
        self.epochs_run = int(last.get("epoch", 0) or 0)
        self.best_val_acc = _number(last.get("val/best_acc", last.get("val/acc")))
        self.final_val_acc = _number(last.get("val/acc"))
        total = _number(last.get(TRAIN_TOTAL))  # the trial's running sum of time/epoch_s
        self.train_time_s = 0.0 if math.isnan(total) else total
        self._facts([last])
        return self

    def settle(self, last: dict[str, Any] | None, error: object = None, done: bool = False):
        """Set stopped_by (and error) from the trial's end; see `stop_reason`."""
        self.stopped_by = stop_reason(last, error, done)
        self.error = error_line(error) or None
        return self

    def _facts(self, history: list[dict[str, Any]]) -> None:
        for key in ("params", "size_kb", "flops", "latency_s", "latency_images"):
            setattr(self, key, _fact(history, f"model/{key}"))

    def row(self) -> dict[str, Any]:
        """A results.json row: every field but the history, no NaN (JSON null instead)."""
        row = {k: v for k, v in asdict(self).items() if k != "history"}
        row["status"], row["directory"] = self.status, self.directory
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


_FLOATS = {
    "best_val_acc",
    "final_val_acc",
    "params",
    "size_kb",
    "flops",
    "latency_s",
    "latency_images",
    "late_gain",
}


def history_from_text(text: str) -> list[dict[str, Any]]:
    """The epochs of a metrics.jsonl, the current run's lineage only.

    A line that is not JSON (the last one, while it is written) is skipped. When an epoch
    number does not increase, the trial was restored from an earlier checkpoint: the
    lines after that checkpoint belong to a lost run and are replaced by the new ones.
    """
    history: list[dict[str, Any]] = []
    for line in text.splitlines():
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


def _number(value: Any) -> float:
    return (
        float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    )


def _fact(history: list[dict[str, Any]], key: str) -> float:
    for m in reversed(history):
        if key in m:
            return _number(m[key])
    return math.nan


# ---------------------------------------------------------------------------------
# results.json / results.csv
# ---------------------------------------------------------------------------------

CSV_COLUMNS = [
    "name",
    "group",
    "techniques",
    "status",
    "stopped_by",
    "best_val_acc",
    "final_val_acc",
    "epochs_run",
    "epochs_planned",
    "params",
    "choices",
    "error",
    "directory",
]


def results_json(name: str, path: str, wall_s: float, records: list[TrialRecord], version: str):
    """The text of results.json: the experiment and one row per trial."""
    payload = {
        "experiment": name,
        "path": path,
        "wall_s": wall_s,
        "effray_version": version,
        "trials": [r.row() for r in records],
    }
    return json.dumps(payload, indent=2) + "\n"


def results_csv(records: list[TrialRecord]) -> str:
    """The text of results.csv: one line per trial, CSV_COLUMNS."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for r in records:
        row = r.row()
        row["techniques"] = "+".join(r.techniques)
        row["choices"] = json.dumps(r.choices, sort_keys=True) if r.choices else ""
        writer.writerow(row)
    return buf.getvalue()


def settled_stop_reasons(text: str) -> dict[str, str]:
    """Trial name -> why it stopped, from results.json's text, for the trials whose end is
    settled (an interrupted trial may have been restored and finished since)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if isinstance(data, dict):
        data = data.get("trials", data)
    entries = data.items() if isinstance(data, dict) else enumerate(data)
    out = {}
    for key, entry in entries:
        if not isinstance(entry, dict):
            continue
        name = entry.get("name") or key
        reason = entry.get("stopped_by")
        if isinstance(name, str) and isinstance(reason, str):
            reason = reason.split(":", 1)[0]  # effray 0.1 wrote "error: <why>"
            if reason not in UNSETTLED:
                out[name] = reason
    return out
