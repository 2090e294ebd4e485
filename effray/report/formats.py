"""The table as terminal cells, markdown, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict
from typing import Any

from effray.report.summary import GroupRow
from effray.results import TrialRecord

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
