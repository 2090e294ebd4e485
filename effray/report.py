"""Results tables and plots from an experiment directory, like the paper's Tables 3-5.

    $ effray report runs/table4-fashion-mnist
    $ effray report runs/table4-fashion-mnist --format markdown --sort acc --plots figs/

    >>> records = load_experiment("runs/table4-fashion-mnist")
    >>> rows = summarize(records)
    >>> print(to_markdown(rows))

Everything is read from the trial directories alone (`trial_spec.yaml` + `metrics.jsonl`),
so a report works on a finished experiment, on one still running (metrics.jsonl growing,
no results.json yet), on a restored one (epochs that were run again after a restore
replace the lines of the lost run), and on a single `effray train` directory.

The accuracy of a trial is its best-epoch val/acc: the highest validation accuracy any
of its epochs reached. That is the common convention for tables like the paper's (which
does not say which epoch it reports), and the only number comparable across trials that
ASHA or early stopping ended at different epochs. Because effray validates on the test
split by default, it is optimistic by the spread between epochs; the final epoch's
accuracy is shown beside it so the gap is visible. A group's accuracy is the mean over
its trials (seeds) with the sample standard deviation (ddof=1) and n.

This module does not print; `effray.cli` does.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from effray.errors import did_you_mean, one_of

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
    records += _not_started(directory, {r.name for r in records})
    if not records:
        raise ReportError(
            f"no trials in {directory}: expected {TRIAL_SPEC} in it or in its trial "
            "directories (written by `effray run` or `effray train`)"
        )
    return sorted(records, key=lambda r: (r.index, r.name))


def _not_started(directory: Path, seen: set[str]) -> list[TrialRecord]:
    """Trials `effray run` planned (effray_experiment.json) that have no directory yet."""
    path = directory / EXPERIMENT_FILE
    if not path.is_file():
        return []
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        missing = set(manifest.get("trials", [])) - seen
        if not missing:
            return []
        from effray.spec import ExperimentSpec, expand

        trials = expand(ExperimentSpec.model_validate(manifest["spec"]))
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
            kind = r.stopped_by.split(":", 1)[0]  # "error: <why>" counts as error
            stops[kind] = stops.get(kind, 0) + 1
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


# ---------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------

HEADERS = [
    "technique set",
    "n",
    "val acc %",
    "Δ base",
    "paper",
    "Δ paper",
    "final %",
    "best %",
    "params",
    "size KB",
    "latency s",
    "epochs",
    "late Δ",
    "stopped by",
]
PAPER_COLUMNS = ("paper", "Δ paper")  # shown when the spec has a reference: section


def legend(rows: list[GroupRow]) -> str:
    """What the table's numbers are, in one paragraph (printed under it)."""
    images = sorted({int(r.latency_images) for r in rows if not math.isnan(r.latency_images)})
    over = f"{images[0]:,} validation images" if len(images) == 1 else "the validation set"
    return (
        "val acc: best-epoch validation accuracy of each trial, mean ± sample std over the n "
        "trials (seeds) that reported an epoch; final: the last epoch's; best: the best "
        "trial; Δ in percentage points; latency: CPU seconds to predict "
        f"{over} (mean over trials); epochs: run/planned; late Δ: how much the best val "
        "acc rose during the last quarter of the epochs run (mean over trials), near 0 "
        "when training had levelled off."
    )


def _num(v: float | None, fmt: str = ".2f", signed: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return format(v, ("+" if signed else "") + fmt)


def _acc(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "–"
    return f"{mean:.2f} ± {std:.2f}" if n > 1 else f"{mean:.2f}"


def _epochs(row: GroupRow) -> str:
    lo, hi = row.epochs_min, row.epochs_max
    return f"{lo if lo == hi else f'{lo}–{hi}'}/{row.epochs_planned}"


def _stops(stops: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" if v > 1 else k for k, v in sorted(stops.items()))


def table_cells(rows: list[GroupRow]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of strings) as the terminal and markdown tables show them."""
    cells = [
        [
            r.group,
            f"{r.n}" if r.n == r.n_trials else f"{r.n}/{r.n_trials}",
            _acc(r.val_acc_mean, r.val_acc_std, r.n),
            _num(r.diff_to_baseline, signed=True),
            _num(r.paper),
            _num(r.diff_to_paper, signed=True),
            _acc(r.final_acc_mean, r.final_acc_std, r.n),
            _num(r.best_val_acc),
            "–" if math.isnan(r.params) else f"{r.params:,.0f}",
            _num(r.size_kb, ".1f"),
            _num(r.latency_s, ".3g"),
            _epochs(r),
            _num(r.late_gain, signed=True),
            _stops(r.stopped_by),
        ]
        for r in rows
    ]
    keep = [
        i
        for i, h in enumerate(HEADERS)
        if h not in PAPER_COLUMNS or any(r.paper is not None for r in rows)
    ]
    return [HEADERS[i] for i in keep], [[c[i] for i in keep] for c in cells]


def to_markdown(rows: list[GroupRow], title: str | None = None) -> str:
    """A GitHub-flavoured markdown table with its legend."""
    headers, cells = table_cells(rows)
    left = {0, len(headers) - 1}
    out = [f"### {title}", ""] if title else []
    out.append("| " + " | ".join(headers) + " |")
    out.append("|" + "|".join("---" if i in left else "---:" for i in range(len(headers))) + "|")
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
    out += ["", legend(rows), ""]
    return "\n".join(out)


def _plain(row: GroupRow) -> dict[str, Any]:
    d = asdict(row)
    for k, v in d.items():
        if isinstance(v, float) and math.isnan(v):
            d[k] = None
    return d


CSV_FIELDS = [f for f in GroupRow.__dataclass_fields__]


def to_csv(rows: list[GroupRow]) -> str:
    """One line per group, raw numbers (empty = unknown); stopped_by as 'reason:count;…'."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        d = _plain(row)
        d["stopped_by"] = ";".join(f"{k}:{v}" for k, v in sorted(row.stopped_by.items()))
        writer.writerow({k: "" if v is None else v for k, v in d.items()})
    return buf.getvalue()


def to_json(
    rows: list[GroupRow], records: list[TrialRecord] | None = None, history: bool = False
) -> str:
    """{"accuracy": how it is computed, "groups": rows, "trials": per-trial summaries}."""
    trials = []
    for r in records or []:
        d = asdict(r)
        if not history:
            d.pop("history")
        trials.append(
            {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in d.items()}
        )
    doc = {
        "accuracy": "best-epoch val/acc per trial; mean and sample std (ddof=1) over trials",
        "groups": [_plain(r) for r in rows],
        "trials": trials,
    }
    return json.dumps(doc, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------
# Plots (matplotlib's Agg canvas directly: no pyplot state, no display needed)
# ---------------------------------------------------------------------------------


MARKERS = ("o", "s", "^", "D")
LINESTYLES = ("-", "--", "-.", (0, (3, 1, 1, 1, 1, 1)))  # dotted (":") marks a reference


def group_style(i: int) -> dict[str, Any]:
    """Colour, marker and line style of the i-th group: 40 distinct ones before a repeat.

    matplotlib's default cycle has 10 colours; an ablation with its combinations has more
    groups than that, so the marker and line style change with each pass through them.
    """
    k = (i // 10) % len(MARKERS)
    return {"color": f"C{i % 10}", "marker": MARKERS[k], "ls": LINESTYLES[k]}


def _legend(ax) -> None:
    """Legend right of the axes, so many groups never hide a curve or a point."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)


def _figure(width: float = 10.0, height: float = 5.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(1, 1, 1)


def plot_curves(records: list[TrialRecord], path: str | os.PathLike, metric: str = "val/acc"):
    """Per group: `metric` per epoch, mean over its trials, a ±1 std band where n ≥ 2.

    The spec's reference accuracy of a group, when given, is a dotted line in its colour.
    """
    fig = curves_figure(records, metric)
    fig.savefig(path)
    return Path(path)


def curves_figure(records: list[TrialRecord], metric: str = "val/acc"):
    """The figure `plot_curves` saves."""
    fig, ax = _figure()
    groups: dict[str, list[TrialRecord]] = {}
    for r in records:
        groups.setdefault(r.group, []).append(r)
    reference: dict[str, float] = {}
    for r in records:
        reference.update(r.reference)
    for i, (group, recs) in enumerate(groups.items()):
        by_epoch: dict[int, list[float]] = {}
        for r in recs:
            for m in r.history:
                if metric in m:
                    by_epoch.setdefault(int(m["epoch"]), []).append(float(m[metric]))
        if not by_epoch:
            continue
        epochs = sorted(by_epoch)
        mean = np.array([np.mean(by_epoch[e]) for e in epochs])
        std = np.array([np.std(by_epoch[e], ddof=1) if len(by_epoch[e]) > 1 else 0 for e in epochs])
        style = group_style(i)
        color = style["color"]
        ax.plot(epochs, mean, ms=3, label=f"{group} (n={len(recs)})", **style)
        if len(recs) > 1:
            ax.fill_between(epochs, mean - std, mean + std, color=color, alpha=0.2, lw=0)
        if metric == "val/acc" and group in reference:
            ax.axhline(reference[group], color=color, ls=":", lw=1)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%)" if metric.endswith("acc") else metric)
    name = records[0].experiment if records else ""
    ax.set_title(f"{name}: {metric} per epoch, mean ± std over seeds (dotted: reference)")
    ax.grid(alpha=0.3)
    _legend(ax)
    fig.tight_layout()
    return fig


def frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats with fewer-or-equal params and higher accuracy."""
    best, out = -math.inf, []
    for params, acc in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            out.append((params, acc))
            best = acc
    return out


def plot_frontier(
    rows: list[GroupRow],
    path: str | os.PathLike,
    dataset: str = "",
    published: bool = True,
    title: str = "",
):
    """Accuracy vs parameters: each group (mean ± std), its paper number, the frontier.

    With `published`, the published results for `dataset` (effray.reference) are added:
    points where the source gives a parameter count, level lines where it does not.
    """
    from effray.reference import published_points

    fig, ax = _figure()
    ours = [(r.params, r.val_acc_mean) for r in rows if not math.isnan(r.params * r.val_acc_mean)]
    for i, r in enumerate(rows):
        if math.isnan(r.params) or math.isnan(r.val_acc_mean):
            continue
        style = group_style(i)
        color = style["color"]
        err = 0 if math.isnan(r.val_acc_std) else r.val_acc_std
        ax.errorbar(r.params, r.val_acc_mean, yerr=err, fmt=style["marker"], color=color,
                    capsize=3, label=f"{r.group} (n={r.n})")  # fmt: skip
        if r.paper is not None:
            ax.plot(r.params, r.paper, marker=style["marker"], mfc="none", color=color, ms=9)
    front = frontier(ours)
    if len(front) > 1:
        xs, ys = zip(*front, strict=True)
        ax.step(xs, ys, where="post", color="k", lw=1, alpha=0.6, label="our frontier")
    if published:
        dashes = [(4, 2), (1, 1), (6, 2, 1, 2), (2, 3)]
        levels = [p for p in published_points(dataset) if p.params is None]
        for i, p in enumerate(levels):
            ax.axhline(p.val_acc, color="grey", lw=0.8, dashes=dashes[i % len(dashes)],
                       label=f"{p.label}: {p.val_acc:g}% (published)")  # fmt: skip
        points = [p for p in published_points(dataset) if p.params is not None]
        for i, p in enumerate(sorted(points, key=lambda p: p.params)):
            ax.plot(p.params, p.val_acc, marker="x", color="grey", ls="none")
            ax.annotate(p.label, (p.params, p.val_acc), fontsize=7, color="grey",
                        textcoords="offset points", xytext=(4, 4 if i % 2 else -10))  # fmt: skip
    ax.set_xscale("log")
    xs = [x for x, _ in ours]
    xs += [p.params for p in published_points(dataset) if p.params] if published else []
    if xs:
        ax.set_xlim(min(xs) / 1.5, max(xs) * 2.5)  # room for the labels of the last point
    ax.set_xlabel("parameters")
    ax.set_ylabel("val acc (%)")
    ax.set_title(title or "accuracy vs parameters")
    ax.text(0.99, 0.01, "filled: ours, mean ± std; hollow: spec reference; grey: published",
            transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="grey")  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    _legend(ax)
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def write_plots(
    records: list[TrialRecord], rows: list[GroupRow], out_dir: str | os.PathLike
) -> list[Path]:
    """val_acc_curves.png and acc_vs_params.png in `out_dir` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = records[0].dataset if records else ""
    name = records[0].experiment if records else ""
    return [
        plot_curves(records, out / "val_acc_curves.png"),
        plot_frontier(
            rows, out / "acc_vs_params.png", dataset, title=f"{name}: accuracy vs parameters"
        ),
    ]
