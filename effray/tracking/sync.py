"""`effray sync`: find offline runs and push them with `wandb sync` (a subprocess)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def offline_runs(directory: str | Path) -> list[Path]:
    """Offline run directories (with a .wandb file) anywhere under `directory`."""
    found = [p for p in Path(directory).rglob("offline-run-*") if any(p.glob("*.wandb"))]
    return sorted(found, key=lambda p: p.name)


def sync_runs(paths: list[Path], dry_run: bool = False) -> int:
    """`wandb sync` over `paths` (W&B prints its own progress); returns its exit code."""
    cmd = [sys.executable, "-m", "wandb", "sync", *(["--dry-run"] if dry_run else [])]
    return subprocess.call([*cmd, *map(str, paths)])
