"""report: the results table and plots of an experiment directory."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from effray.cli.common import (
    _show_warnings,
    app,
    console,
    err_console,
    fail,
)

REPORT_FORMATS = ("table", "markdown", "csv", "json")


@app.command()
def report(
    experiment_dir: Annotated[
        Path, typer.Argument(help="Experiment directory (or one trial directory).")
    ],
    format_: Annotated[
        str, typer.Option("--format", help="table | markdown | csv | json.")
    ] = "table",
    sort: Annotated[
        str | None,
        typer.Option(help="Sort by a column: acc, final, best, diff, paper_diff, params, …"),
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Write val_acc_curves.png and acc_vs_params.png here.")
    ] = None,
    baseline: Annotated[str, typer.Option(help="Group the Δ column compares to.")] = "baseline",
) -> None:
    """Results table, one row per technique set: val acc mean ± std over seeds, size, latency."""
    from effray import report as rep

    if format_ not in REPORT_FORMATS:
        fail(f"--format {format_!r} is not a format (allowed {', '.join(REPORT_FORMATS)})")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            records = rep.load_experiment(experiment_dir)
            rows = rep.summarize(records, baseline=baseline)
            rows = rep.sort_rows(rows, sort) if sort else rows
        except rep.ReportError as exc:
            fail(str(exc))
    _show_warnings(caught)
    if format_ == "markdown":
        sys.stdout.write(rep.to_markdown(rows))
    elif format_ == "csv":
        sys.stdout.write(rep.to_csv(rows))
    elif format_ == "json":
        sys.stdout.write(rep.to_json(rows, records))
    else:
        headers, cells = rep.table_cells(rows)
        name = records[0].experiment or str(experiment_dir)
        table = Table(title=f"{name}: {len(records)} trials, {len(rows)} technique sets")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i in (0, len(headers) - 1) else "right")
        for row in cells:
            table.add_row(*row)
        console.print(table)
        console.print(rep.legend(rows), style="dim", highlight=False)
    if plots is not None:
        for path in rep.write_plots(records, rows, plots):
            err_console.print(f"plot: {path}", highlight=False)
