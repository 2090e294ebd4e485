"""One Weights & Biases run per trial, behind a three-call interface; tracking off does nothing.

    $ effray train experiments/quickstart.yaml --out runs/quick   # offline run in runs/quick/wandb
    $ effray sync runs/quick                                      # push offline runs later

    tracker = make_tracker(spec, experiment_dir)   # NullTracker when W&B is off
    tracker.start(spec, trial_dir)                 # run id = spec.trial.id, resume="allow"
    tracker.log(metrics, step=metrics["epoch"])    # once per epoch
    tracker.finish(stop_reason)                    # finished|asha|early_stopping|diverged|error

The run id is the trial's stable id, so a retried, restored or locally resumed trial
continues its run. A W&B failure never stops training, and no API key, token or
password reaches a W&B config. Modules: base.py (the interface, tracking off),
redact.py (secrets), config.py (what a run shows), wandb_run.py (the W&B run, the only
module that imports wandb), runs.py (choosing a tracker, wrapping a fit), sync.py.
"""

from __future__ import annotations

from effray.tracking.base import STOP_REASONS, Metrics, NullTracker, Tracker, TrackingWarning
from effray.tracking.config import FACTS, NATIVE_SIZE, derived_facts, run_config, stop_reason_for
from effray.tracking.redact import REDACTED, SECRET_NAME, SECRET_VALUE, scrub, scrub_value
from effray.tracking.runs import (
    DEFAULT_HOSTS,
    Report,
    api_key_configured,
    make_tracker,
    open_run,
    resolve_mode,
    run_root,
    track_fit,
)
from effray.tracking.sync import offline_runs, sync_runs
from effray.tracking.wandb_run import (
    BEST,
    FLUSH_INTERVAL_S,
    ONLINE_FINISH_TIMEOUT_S,
    ONLINE_INIT_TIMEOUT_S,
    STATE_DIR,
    WandbTracker,
)

__all__ = [
    "BEST",
    "DEFAULT_HOSTS",
    "FACTS",
    "FLUSH_INTERVAL_S",
    "NATIVE_SIZE",
    "ONLINE_FINISH_TIMEOUT_S",
    "ONLINE_INIT_TIMEOUT_S",
    "REDACTED",
    "SECRET_NAME",
    "SECRET_VALUE",
    "STATE_DIR",
    "STOP_REASONS",
    "Metrics",
    "NullTracker",
    "Report",
    "Tracker",
    "TrackingWarning",
    "WandbTracker",
    "api_key_configured",
    "derived_facts",
    "make_tracker",
    "offline_runs",
    "open_run",
    "resolve_mode",
    "run_config",
    "run_root",
    "scrub",
    "scrub_value",
    "stop_reason_for",
    "sync_runs",
    "track_fit",
]
