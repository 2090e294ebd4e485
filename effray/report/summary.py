"""The results table: one row per technique set, mean ± std over its seeds."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from effray.errors import did_you_mean, one_of
from effray.report.load import ReportError
from effray.results import TrialRecord


@dataclass
class GroupRow:
    """One row of the results table: a technique set over its seeds."""

    group: str
    n: int  # trials with at least one epoch (the accuracy statistics use these)
    n_trials: int
    val_acc_mean: float  # % mean of the trials' best-epoch val/acc
    val_acc_std: float  # sample std (ddof=1); nan when n < 2
    final_acc_mean: float
    final_acc_std: float
    best_val_acc: float  # the best trial's best epoch
    best_trial: str
    params: float
    size_kb: float
    flops: float
    latency_s: float  # mean over trials
    latency_images: float
    epochs_min: int
    epochs_max: int
    epochs_planned: int
    stopped_by: dict[str, int]
    train_time_s: float  # mean per trial
    late_gain: float = math.nan  # mean over trials of TrialRecord.late_gain
    diff_to_baseline: float | None = None  # percentage points vs the baseline row
    paper: float | None = None  # the spec's reference accuracy for this group
    diff_to_paper: float | None = None


# ---------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan


def _nanmean(values: list[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return float(np.mean(v)) if v else math.nan


def summarize(
    records: list[TrialRecord],
    reference: dict[str, float] | None = None,
    baseline: str = "baseline",
) -> list[GroupRow]:
    """One row per trial group, in the order the groups first appear.

    `reference` (published val acc % per group) defaults to the trial specs' `reference:`.
    """
    if reference is None:
        reference = {}
        for r in records:
            reference.update(r.reference)
    groups: dict[str, list[TrialRecord]] = {}
    for r in records:
        groups.setdefault(r.group, []).append(r)
    rows = []
    for group, recs in groups.items():
        ran = [r for r in recs if r.history]
        mean, std = _mean_std([r.best_val_acc for r in ran])
        final_mean, final_std = _mean_std([r.final_val_acc for r in ran])
        best = max(ran, key=lambda r: r.best_val_acc, default=None)
        stops: dict[str, int] = {}
        for r in recs:
            stops[r.stopped_by] = stops.get(r.stopped_by, 0) + 1
        epochs = [r.epochs_run for r in recs] or [0]
        paper = reference.get(group)
        rows.append(
            GroupRow(
                group=group,
                n=len(ran),
                n_trials=len(recs),
                val_acc_mean=mean,
                val_acc_std=std,
                final_acc_mean=final_mean,
                final_acc_std=final_std,
                best_val_acc=best.best_val_acc if best else math.nan,
                best_trial=best.name if best else "",
                params=_nanmean([r.params for r in ran]),
                size_kb=_nanmean([r.size_kb for r in ran]),
                flops=_nanmean([r.flops for r in ran]),
                latency_s=_nanmean([r.latency_s for r in ran]),
                latency_images=_nanmean([r.latency_images for r in ran]),
                epochs_min=min(epochs),
                epochs_max=max(epochs),
                epochs_planned=max(r.epochs_planned for r in recs),
                stopped_by=stops,
                train_time_s=_nanmean([r.train_time_s for r in ran]),
                late_gain=_nanmean([r.late_gain for r in ran]),
                paper=paper,
                diff_to_paper=None if paper is None or math.isnan(mean) else mean - paper,
            )
        )
    base = next((row for row in rows if row.group == baseline), None)
    if base is not None and not math.isnan(base.val_acc_mean):
        for row in rows:
            if not math.isnan(row.val_acc_mean):
                row.diff_to_baseline = row.val_acc_mean - base.val_acc_mean
    return rows


# column name -> (value, descending by default); NaN/None always sort last
SORT_COLUMNS: dict[str, tuple[Callable[[GroupRow], Any], bool]] = {
    "group": (lambda r: r.group, False),
    "acc": (lambda r: r.val_acc_mean, True),
    "std": (lambda r: r.val_acc_std, False),
    "final": (lambda r: r.final_acc_mean, True),
    "best": (lambda r: r.best_val_acc, True),
    "diff": (lambda r: r.diff_to_baseline, True),
    "paper": (lambda r: r.paper, True),
    "paper_diff": (lambda r: r.diff_to_paper, True),
    "params": (lambda r: r.params, False),
    "size": (lambda r: r.size_kb, False),
    "latency": (lambda r: r.latency_s, False),
    "flops": (lambda r: r.flops, False),
    "epochs": (lambda r: r.epochs_max, True),
    "n": (lambda r: r.n, True),
    "time": (lambda r: r.train_time_s, False),
    "late": (lambda r: r.late_gain, False),
}


def sort_rows(rows: list[GroupRow], column: str) -> list[GroupRow]:
    """Rows sorted by `column` (see SORT_COLUMNS) in its natural direction; '-col' reverses."""
    reverse_it = column.startswith("-")
    name = column.lstrip("-")
    if name not in SORT_COLUMNS:
        hint = did_you_mean(name, SORT_COLUMNS)
        raise ReportError(
            f"cannot sort by {name!r} (allowed {one_of(SORT_COLUMNS)}"
            + (f"; did you mean {hint!r}?)" if hint else ")")
        )
    key, descending = SORT_COLUMNS[name]
    descending ^= reverse_it

    def missing(row: GroupRow) -> bool:
        v = key(row)
        return v is None or (isinstance(v, float) and math.isnan(v))

    present = sorted((r for r in rows if not missing(r)), key=key, reverse=descending)
    return present + [r for r in rows if missing(r)]
