"""The tracker interface, and tracking off (a null object instead of `if wandb:` branches)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

Metrics = Mapping[str, Any]


class TrackingWarning(UserWarning):
    """W&B failed; training goes on (offline or untracked)."""


class Tracker:
    """The interface, and tracking off: every call does nothing."""

    def start(self, spec: Any, trial_dir: str | Path | None = None, facts: Metrics = ()) -> None:
        """Open (or continue) the run of trial `spec`; `facts` are known model facts."""

    def log(self, metrics: Metrics, step: int) -> None:
        """Record one epoch's metrics at `step` (the epoch, 1-based)."""

    def finish(self, stop_reason: str, summary: Metrics = ()) -> None:
        """Close the run; `stop_reason` is effray.results' verdict (finished, asha, …)."""

    def logged_through(self) -> int | None:
        """The last step the run has recorded (0: none), or None when nothing is tracked."""
        return None


class NullTracker(Tracker):
    """W&B off (`wandb.mode: disabled`, or a spec with no trial id): nothing is recorded."""
