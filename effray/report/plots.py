"""PNG plots: validation curves per technique set and accuracy vs parameters."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from effray.report.summary import GroupRow
from effray.results import TrialRecord

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


def _title(fig, text: str) -> None:
    """A title centred on the whole figure: over the axes alone, a long experiment name
    next to an outside legend runs off the left edge."""
    fig.suptitle(text, fontsize=11)


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
    _title(fig, f"{name}: {metric} per epoch, mean ± std over seeds (dotted: reference)")
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
    _title(fig, title or "accuracy vs parameters")
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
