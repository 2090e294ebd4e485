"""The greedy search's path (stages.json), as the thesis's table shows it: stage,
alternative, mean ± std over the seeds, n, and which one each stage kept."""

from __future__ import annotations

import json
import math
from typing import Any

STAGES_FILE = "stages.json"  # written by effray.tune.stages
BEST_SPEC = "best_spec.yaml"


def load_path(experiment_dir: str) -> dict[str, Any] | None:
    """The experiment's stages.json (a local directory or a URI), or None without one."""
    from effray.storage import join, read_text

    try:
        doc = json.loads(read_text(join(str(experiment_dir), STAGES_FILE)))
    except Exception:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("stages"), list) else None


def _num(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def path_cells(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headers and rows: one row per alternative of every stage, the chosen one marked."""
    headers = ["stage", "alternative", f"{doc.get('metric', 'val/acc')} mean ± std", "n", "kept"]
    rows = []
    for stage in doc["stages"]:
        for alt in stage["alternatives"]:
            rows.append(
                [
                    f"{stage['stage']}. {stage['name']}",
                    alt["label"],
                    f"{_num(alt['mean'])} ± {_num(alt['std'])}",
                    str(alt["n"]),
                    "✓" if alt["chosen"] else "",
                ]
            )
    return headers, rows


def path_summary(doc: dict[str, Any]) -> str:
    """One line: the chosen changes, the trials spent, and whether the search finished."""
    changes = [s["chosen"] for s in doc["stages"] if s["chosen"] != "keep"]
    state = "complete" if doc.get("complete") else "in progress (`effray restore` continues it)"
    return (
        f"search path: {' -> '.join(changes) or 'no change kept'}; "
        f"{doc.get('trials_run', '?')} trials; {state}"
    )


def path_markdown(doc: dict[str, Any]) -> str:
    headers, rows = path_cells(doc)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n\n" + path_summary(doc) + "\n"
