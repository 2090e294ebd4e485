"""Atomic checkpoints and the trial directory.

A checkpoint is one file, `checkpoint-epoch0003.pt`, holding everything that makes
resume exact: model, optimizer, technique states, RNG states, epoch and step, the
metrics history, the resolved trial spec and the effray version. It is written to a
temporary file, flushed to disk, then renamed — a crash leaves the previous
checkpoint intact. Loading uses `torch.load(weights_only=True)`; a corrupt newest
file is skipped with a warning and the one before it is used.

Trial directory (from `effray train --out DIR`, or a Ray trial directory):

    DIR/trial_spec.yaml        the resolved spec of this trial
    DIR/checkpoints/           checkpoint-epochNNNN.pt, newest `run.checkpoint_keep` kept
    DIR/metrics.jsonl          one line of metrics per epoch
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import effray

CHECKPOINT_RE = re.compile(r"checkpoint-epoch(\d+)\.pt$")
FORMAT = 1


class CheckpointError(Exception):
    """No usable checkpoint where one was expected; the message says where and why."""


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the effray checkout, when it is one (saved for reproducibility)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: Path) -> Path:
    """torch.save to a temp file in the same directory, fsync, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return Path(directory) / f"checkpoint-epoch{epoch:04d}.pt"


def save_checkpoint(directory: Path, payload: dict[str, Any], keep: int = 2) -> Path:
    """Write this epoch's checkpoint atomically and prune all but the newest `keep`."""
    payload = {"format": FORMAT, "effray_version": effray.__version__, **payload}
    path = atomic_save(payload, checkpoint_path(directory, payload["epoch"]))
    for old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(root: Path) -> list[Path]:
    """Checkpoint files under `root` (recursively: Ray nests them), oldest epoch first."""
    root = Path(root)
    if root.is_file():
        return [root]
    found = [p for p in root.rglob("checkpoint-epoch*.pt") if CHECKPOINT_RE.search(p.name)]
    return sorted(found, key=lambda p: (int(CHECKPOINT_RE.search(p.name).group(1)), str(p)))


@dataclass
class Loaded:
    path: Path
    payload: dict[str, Any]
    skipped: list[tuple[Path, str]]  # newer files that could not be read, and why


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load one checkpoint file safely (weights_only=True); CheckpointError when unreadable."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad pickle, disallowed global: all "unreadable"
        raise CheckpointError(
            f"{path}: unreadable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or "model" not in payload or "spec" not in payload:
        raise CheckpointError(f"{path}: not an effray checkpoint (missing model or spec)")
    return payload


def load_latest(root: Path) -> Loaded:
    """The newest readable checkpoint under `root`; older ones are tried when newer are corrupt."""
    candidates = list_checkpoints(root)
    if not candidates:
        raise CheckpointError(
            f"no checkpoint-epoch*.pt under {root}; pass a trial directory written by "
            "`effray train` or `effray run`"
        )
    skipped: list[tuple[Path, str]] = []
    for path in reversed(candidates):
        try:
            payload = load_checkpoint(path)
        except CheckpointError as exc:
            skipped.append((path, str(exc)))
            warnings.warn(f"{exc}; trying the previous checkpoint", stacklevel=2)
            continue
        return Loaded(path, payload, skipped)
    raise CheckpointError(
        f"every checkpoint under {root} is unreadable: " + "; ".join(msg for _, msg in skipped)
    )


def append_metrics(path: Path, metrics: dict[str, Any]) -> None:
    """One JSON line per epoch; flushed so a killed process loses at most the last line."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(metrics, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
