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

Modules: `load` (trial directories), `summary` (the table), `formats` (markdown, CSV,
JSON, terminal cells) and `plots` (PNG). None of them prints; `effray.cli` does.
"""

from effray.report.formats import (
    CSV_FIELDS,
    HEADERS,
    PAPER_COLUMNS,
    legend,
    table_cells,
    to_csv,
    to_json,
    to_markdown,
)
from effray.report.load import (
    MAX_DEPTH,
    ReportError,
    find_trial_dirs,
    load_experiment,
    load_trial,
    read_history,
    read_stop_reasons,
)
from effray.report.plots import (
    LINESTYLES,
    MARKERS,
    curves_figure,
    frontier,
    group_style,
    plot_curves,
    plot_frontier,
    write_plots,
)
from effray.report.summary import (
    GroupRow,
    sort_rows,
    summarize,
)
from effray.results import (
    EXPERIMENT_FILE,
    METRICS,
    PENDING,
    RESULTS_JSON,
    RUNNING,
    TRIAL_SPEC,
    UNSETTLED,
    TrialRecord,
    late_gain,
)

__all__ = [
    "CSV_FIELDS",
    "EXPERIMENT_FILE",
    "GroupRow",
    "HEADERS",
    "LINESTYLES",
    "MARKERS",
    "MAX_DEPTH",
    "METRICS",
    "PAPER_COLUMNS",
    "PENDING",
    "RESULTS_JSON",
    "RUNNING",
    "ReportError",
    "TRIAL_SPEC",
    "TrialRecord",
    "UNSETTLED",
    "curves_figure",
    "find_trial_dirs",
    "frontier",
    "group_style",
    "late_gain",
    "legend",
    "load_experiment",
    "load_trial",
    "plot_curves",
    "plot_frontier",
    "read_history",
    "read_stop_reasons",
    "sort_rows",
    "summarize",
    "table_cells",
    "to_csv",
    "to_json",
    "to_markdown",
    "write_plots",
]
