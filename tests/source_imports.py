"""Which effray source files import a package: for the tests that keep ray and wandb each
behind one module (DESIGN: only effray/tune.py imports ray, only effray/tracking.py wandb)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "effray"


def importers(top: str) -> list[str]:
    """Paths (relative to effray/, sorted) of the files with `import top…`/`from top… import`."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == top or n.startswith(top + ".") for n in names):
                found.add(path.relative_to(PACKAGE).as_posix())
    return sorted(found)
