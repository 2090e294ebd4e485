"""What effray's source files import and call: for the tests that keep each boundary in
its package (DESIGN: only effray/tune imports ray, only effray/tracking wandb, only
effray/cli prints) and private names private."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "effray"


def sources() -> Iterator[tuple[str, ast.AST]]:
    """(path relative to effray/, parsed module) for every source file."""
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), ast.parse(path.read_text())


def importers(top: str) -> list[str]:
    """Paths (relative to effray/, sorted) of the files with `import top…`/`from top… import`."""
    found = set()
    for rel, tree in sources():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            if any(n == top or n.startswith(top + ".") for n in names):
                found.add(rel)
    return sorted(found)


def printers() -> list[str]:
    """Files that print: print(), a rich Console, or writes to sys.stdout / sys.stderr."""
    found = set()
    for rel, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id == "print":
                    found.add(rel)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "sys" and node.attr in ("stdout", "stderr"):
                    found.add(rel)
            elif isinstance(node, ast.ImportFrom) and node.module == "rich.console":
                found.add(rel)
    return sorted(found)


def private_imports() -> list[str]:
    """'file: module.name' for each underscore name imported from another effray module."""
    found = []
    for rel, tree in sources():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("effray"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{rel}: {node.module}.{alias.name}")
    return found
