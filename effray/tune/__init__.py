"""Run a spec as Ray Tune trials: one thin adapter from Ray to `fit`.

    $ effray run experiments/quickstart.yaml
    $ effray restore runs/quickstart
    $ effray submit experiments/quickstart.yaml --address http://127.0.0.1:8265

    >>> from effray import load_spec, run
    >>> result = run(load_spec("experiments/quickstart.yaml"))

The only package that imports ray: trial.py (the adapter), callbacks.py (progress, W&B),
results.py, storage.py, session.py (Ray itself), experiment.py (run, restore), jobs.py.
Every name is re-exported here; Ray's saved experiment state refers to some of them as
`effray.tune.<name>` (e.g. `trial_name`), so they stay importable from here.

Experiment directory (storage/name/):

    effray_experiment.json     the spec, the trial names, the effray version
    results.json, results.csv  one row per trial, written when the run ends
    driver.log                 Ray's own log lines from this driver (the console stays quiet)
    <trial name>/              one directory per trial
        trial_spec.yaml        the resolved TrialSpec
        metrics.jsonl          one line per epoch (the epochs of the checkpoint resumed)
        attempts.jsonl         one line per start: node, pid, epoch resumed from
        failure.json           only after a deterministic failure (diverged, bad data)
        checkpoint_00000N/     Ray's checkpoints: checkpoint-epochNNNN.pt + the files above
        result.json  progress.csv  error.txt   Ray's records of the trial
    tuner.pkl  experiment_state-*.json          Ray's state, read by `effray restore`

The trial's own files are written through Ray's storage filesystem by the worker
(any node; a local path, NFS or an object store). A trial directory is
self-contained and uses relative paths only: `effray resume DIR` continues it
anywhere, also after copying it off a cluster.
"""

from __future__ import annotations

from effray.tune.callbacks import (
    STOPPED_BY_SCHEDULER,
    ProgressCallback,
    WandbCallback,
    trial_event,
)
from effray.tune.experiment import restore_experiment, run, run_experiment
from effray.tune.jobs import (
    DEFAULT_DASHBOARD,
    UPLOAD_EXCLUDES,
    follow_job_logs,
    job_logs,
    jobs_address,
    list_jobs,
    project_root,
    stop_job,
    submit_job,
)
from effray.tune.results import (
    CSV_COLUMNS,
    ExperimentResult,
    TrialOutcome,
    collect,
    error_reason,
    outcome,
    write_results,
)
from effray.tune.session import AUTH_HINT, OBJECT_STORE_BYTES, ray_session, token_available
from effray.tune.storage import (
    DEFAULT_STORAGE,
    DRIVER_LOG,
    EXPERIMENT_FILE,
    RESULTS_CSV,
    RESULTS_JSON,
    ExperimentError,
    fresh_experiment_dir,
    storage_root,
)
from effray.tune.trial import (
    ATTEMPTS,
    FAILURE,
    TrialFailed,
    TrialRecords,
    train_trial,
    trainable,
    trial_name,
)

__all__ = [
    "ATTEMPTS",
    "AUTH_HINT",
    "CSV_COLUMNS",
    "DEFAULT_DASHBOARD",
    "DEFAULT_STORAGE",
    "DRIVER_LOG",
    "EXPERIMENT_FILE",
    "FAILURE",
    "OBJECT_STORE_BYTES",
    "RESULTS_CSV",
    "RESULTS_JSON",
    "STOPPED_BY_SCHEDULER",
    "UPLOAD_EXCLUDES",
    "ExperimentError",
    "ExperimentResult",
    "ProgressCallback",
    "TrialFailed",
    "TrialOutcome",
    "TrialRecords",
    "WandbCallback",
    "collect",
    "error_reason",
    "follow_job_logs",
    "fresh_experiment_dir",
    "job_logs",
    "jobs_address",
    "list_jobs",
    "outcome",
    "project_root",
    "ray_session",
    "restore_experiment",
    "run",
    "run_experiment",
    "stop_job",
    "storage_root",
    "submit_job",
    "token_available",
    "train_trial",
    "trainable",
    "trial_event",
    "trial_name",
    "write_results",
]
