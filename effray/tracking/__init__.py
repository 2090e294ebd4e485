"""One Weights & Biases run per trial, behind a three-call interface; tracking off does nothing.

    $ effray train experiments/quickstart.yaml --out runs/quick   # offline run in runs/quick/wandb
    $ effray sync runs/quick                                      # push offline runs later
    $ effray sync s3://bucket/runs/exp      # runs copied beside results in an object store

    tracker = make_tracker(spec, experiment_dir)   # NullTracker when W&B is off
    tracker.start(spec, trial_dir)                 # run id = spec.trial.id, resume="allow"
    tracker.log(metrics, step=metrics["epoch"])    # once per epoch
    tracker.finish(stop_reason)                    # effray.results' verdict: finished, asha, …

The only package that imports wandb (and only `wandb_run` does). Its modules:

    base        Tracker (the interface), NullTracker (tracking off), TrackingWarning
    mapping     what a run shows: config, dashboard columns, summary, secrets removed
    wandb_run   WandbTracker: the W&B run, its state file, guarded calls
    runs        make_tracker, open_run (Ray's driver), track_fit (train/resume), sync
    remote      offline runs beside results in an object store: upload, fetch

A W&B failure never stops training, and no API key, token or password reaches a W&B
config: see wandb_run and mapping.scrub.
"""

from effray.tracking.base import Metrics, NullTracker, Tracker, TrackingWarning
from effray.tracking.mapping import (
    BEST,
    FACTS,
    REDACTED,
    derived_facts,
    run_config,
    scrub,
    scrub_value,
)
from effray.tracking.remote import (
    OFFLINE_ROOT,
    RUNS_DIR,
    fetch_runs,
    fetch_state,
    fetch_stored_runs,
    local_runs,
    offline_root,
    run_id_of,
    upload_runs,
)
from effray.tracking.runs import (
    api_key_configured,
    make_tracker,
    offline_runs,
    open_run,
    resolve_mode,
    run_root,
    sync_runs,
    track_fit,
)
from effray.tracking.wandb_run import STATE_DIR, WandbTracker, flush_runs

__all__ = [
    "BEST",
    "FACTS",
    "OFFLINE_ROOT",
    "REDACTED",
    "RUNS_DIR",
    "STATE_DIR",
    "Metrics",
    "NullTracker",
    "Tracker",
    "TrackingWarning",
    "WandbTracker",
    "api_key_configured",
    "derived_facts",
    "fetch_runs",
    "fetch_state",
    "fetch_stored_runs",
    "flush_runs",
    "local_runs",
    "make_tracker",
    "offline_root",
    "offline_runs",
    "open_run",
    "resolve_mode",
    "run_config",
    "run_id_of",
    "run_root",
    "scrub",
    "scrub_value",
    "sync_runs",
    "track_fit",
    "upload_runs",
]
