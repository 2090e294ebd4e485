"""Choosing a tracker for a trial, wrapping a fit in its run, and pushing offline runs.

tracker = make_tracker(spec, experiment_dir)   # NullTracker when W&B is off
result = track_fit(spec, trial_dir, report, lambda r: fit(spec, r, ...))
"""

from __future__ import annotations

import netrc
import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from effray.results import FINISHED, stop_reason
from effray.tracking.base import NullTracker, Tracker, TrackingWarning
from effray.tracking.mapping import short_error
from effray.tracking.wandb_run import WandbTracker, state_path

DEFAULT_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")  # netrc hosts, no WANDB_BASE_URL
R = TypeVar("R")
Report = Callable[[dict[str, Any], Any], None]


def make_tracker(spec: Any, experiment_dir: str | Path) -> Tracker:
    """The tracker for trial `spec`: a W&B run under `experiment_dir`, or a NullTracker."""
    mode = resolve_mode(spec.wandb.mode)
    if mode == "disabled" or spec.trial is None or not spec.trial.id:
        return NullTracker()
    root = Path(spec.wandb.dir).expanduser() if spec.wandb.dir else run_root(experiment_dir, spec)
    return WandbTracker(mode, root, project=spec.wandb.project, entity=spec.wandb.entity)


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE when set, else online with an API key configured, else offline."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip()
    if env:
        return "offline" if env == "dryrun" else env  # an invalid value fails in wandb.init
    return "online" if api_key_configured() else "offline"


def api_key_configured() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    url = os.environ.get("WANDB_BASE_URL")
    hosts = [urlparse(url).hostname or ""] if url else DEFAULT_HOSTS
    try:
        entries = netrc.netrc(os.environ.get("NETRC")).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any(entries.get(host, (None, None, None))[2] for host in hosts)


def run_root(experiment_dir: str | Path, spec: Any) -> Path:
    """Where the run lives: the experiment directory, or the one above a trial directory
    when the run was started there (a Ray trial resumed with `effray resume`)."""
    experiment_dir = Path(experiment_dir)
    for root in (experiment_dir, experiment_dir.parent):
        if state_path(root, spec.trial.id).exists():
            return root
    return experiment_dir


def open_run(
    trial: Mapping[str, Any],
    experiment_dir: str | Path,
    trial_dir: Any = None,
    store: str | None = None,
):
    """(TrialSpec, started Tracker) for a trial given as its spec dict (a Ray trial's
    config); never raises: on any failure a warning and a NullTracker. `store`: the
    experiment's URI when its results live in an object store; the run's effray state
    (its last step) comes from there when this machine has none."""
    try:
        from effray.spec import ExperimentSpec

        spec = ExperimentSpec.model_validate(trial)
        tracker = make_tracker(spec, experiment_dir)
        if store is not None and isinstance(tracker, WandbTracker):
            from effray.tracking.remote import fetch_state

            fetch_state(store, tracker.root, spec.trial.id)
    except Exception as exc:
        warnings.warn(f"W&B tracking off for a trial ({short_error(exc)})", TrackingWarning, 2)
        return None, NullTracker()
    tracker.start(spec, trial_dir)
    return spec, tracker


def track_fit(spec: Any, trial_dir: str | Path, report: Report, run: Callable[[Report], R]) -> R:
    """`run(report)` inside the trial's W&B run: every report is also logged; the run
    finishes with the fit's stop reason, or diverged/error when the fit raises."""
    tracker = make_tracker(spec, trial_dir)
    tracker.start(spec, trial_dir)

    def tracked(metrics: dict[str, Any], checkpoint: Any) -> None:
        report(metrics, checkpoint)
        tracker.log(metrics, step=int(metrics["epoch"]))

    try:
        result = run(tracked)
    except BaseException as exc:
        tracker.finish(stop_reason(None, error=exc))
        raise
    tracker.finish(getattr(result, "stop_reason", FINISHED))
    return result


def offline_runs(directory: str | Path) -> list[Path]:
    """Offline run directories (with a .wandb file) anywhere under `directory`."""
    found = [p for p in Path(directory).rglob("offline-run-*") if any(p.glob("*.wandb"))]
    return sorted(found, key=lambda p: p.name)


def sync_runs(paths: list[Path], dry_run: bool = False) -> int:
    """`wandb sync` over `paths` (W&B prints its own progress); returns its exit code."""
    cmd = [sys.executable, "-m", "wandb", "sync", *(["--dry-run"] if dry_run else [])]
    return subprocess.call([*cmd, *map(str, paths)])
