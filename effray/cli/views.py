"""Tables the CLI draws for reports: columns fitted to the terminal, the greedy search's path."""

from __future__ import annotations

from rich.table import Table

from effray.cli.common import console


def print_search_path(doc: dict, experiment_dir: str) -> None:
    """The stages.json path as a table, the chosen alternatives marked, and the final spec."""
    from effray.report.search_path import BEST_SPEC, path_cells, path_summary
    from effray.storage import join

    headers, rows = path_cells(doc)
    table = Table(title="greedy search path (search.stages)")
    for i, h in enumerate(headers):
        table.add_column(h, no_wrap=True, justify="right" if i in (2, 3) else "left")
    last = None
    for row in rows:
        if last is not None and row[0] != last:
            table.add_section()
        last = row[0]
        table.add_row(*row, style="bold" if row[-1] else None)
    console.print(table)
    console.print(path_summary(doc), highlight=False, soft_wrap=True)
    if doc.get("complete"):
        best = join(str(experiment_dir), BEST_SPEC)
        console.print(
            f"final configuration: {best}  (effray train / effray run it)",
            highlight=False,
            soft_wrap=True,
        )


# the report columns a narrow terminal drops first (the rest stay whole, never "8…")
DROP_ORDER = (
    "late Δ",
    "size KB",
    "final %",
    "latency s",
    "stopped by",
    "Δ paper",
    "best %",
    "epochs",
    "params",
    "paper",
    "Δ base",
)


def natural_width(header: str, column: list[str]) -> int:
    """Width a column needs with every cell and its header whole (rich narrows the widest
    columns first, numbers included, when the headers' full widths do not fit)."""
    return max([len(c) for c in column] + [len(header)])


def fit_columns(
    headers: list[str], cells: list[list[str]], width: int, order: tuple[str, ...] = DROP_ORDER
) -> tuple[list[str], list[list[str]], list[str]]:
    """Drop columns, first to last of `order`, until the table fits `width`; (headers,
    cells, dropped)."""
    keep = list(range(len(headers)))

    def total() -> int:  # rich's heavy box: a border and one space each side per column
        return 1 + sum(natural_width(headers[i], [row[i] for row in cells]) + 3 for i in keep)

    dropped = []
    for name in order:
        if total() <= width:
            break
        if name in headers and headers.index(name) in keep:
            keep.remove(headers.index(name))
            dropped.append(name)
    return [headers[i] for i in keep], [[row[i] for i in keep] for row in cells], dropped
