"""A trial's run: choosing the tracker (W&B online, offline or off), and wrapping a fit
(`effray train` / `effray resume`) or a Ray trial (the driver's callback) in its run."""

from __future__ import annotations

import netrc
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from effray.tracking.base import NullTracker, Tracker, TrackingWarning
from effray.tracking.config import stop_reason_for
from effray.tracking.redact import _short
from effray.tracking.wandb_run import WandbTracker, _state_path

DEFAULT_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")  # netrc hosts, no WANDB_BASE_URL


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
        if _state_path(root, spec.trial.id).exists():
            return root
    return experiment_dir


R = TypeVar("R")
Report = Callable[[dict[str, Any], Any], None]


def open_run(trial: Mapping[str, Any], experiment_dir: str | Path, trial_dir: Any = None):
    """(TrialSpec, started Tracker) for a trial given as its spec dict (a Ray trial's
    config); never raises: on any failure a warning and a NullTracker."""
    try:
        from effray.spec import ExperimentSpec

        spec = ExperimentSpec.model_validate(trial)
        tracker = make_tracker(spec, experiment_dir)
    except Exception as exc:
        warnings.warn(f"W&B tracking off for a trial ({_short(exc)})", TrackingWarning, 2)
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
        tracker.finish(stop_reason_for(spec, None, error=exc))
        raise
    tracker.finish(getattr(result, "stop_reason", None))
    return result
