"""Run a spec as Ray Tune trials: one thin adapter from Ray to `fit`.

    $ effray run experiments/quickstart.yaml
    $ effray restore runs/quickstart
    $ effray submit experiments/quickstart.yaml --address http://127.0.0.1:8265

    >>> from effray import load_spec, run
    >>> result = run(load_spec("experiments/quickstart.yaml"))

The only package that imports ray. Its modules:

    trial        the trainable: one Ray trial = one `fit`, its files, resources, names
    callbacks    driver-side callbacks: progress events for the CLI, one W&B run per trial
    session      the Ray this process uses: embedded and loopback-only, or a joined cluster
    experiment   run_experiment / restore_experiment, results.json
    search       the schedulers (ASHA, median stopping, PBT) and the Optuna searcher
    stages       the greedy search (search.stages): one Tune run per stage
    jobs         Ray Jobs: submit, list, logs, stop

Names are re-exported here; Ray state pickled by effray 0.1 (`effray.tune.train_trial`,
`effray.tune.trial_name`, the callbacks) still loads through them.
"""

from effray.storage import (
    DEFAULT_STORAGE,
    ExperimentError,
    fresh_experiment_dir,
    storage_root,
)
from effray.tune.callbacks import ProgressCallback, WandbCallback, trial_event
from effray.tune.experiment import (
    ExperimentResult,
    collect,
    record,
    restore_experiment,
    run,
    run_experiment,
    write_results,
)
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
from effray.tune.session import AUTH_HINT, OBJECT_STORE_BYTES, ray_session, token_available
from effray.tune.trial import TrialFailed, TrialFiles, train_trial, trainable, trial_name

__all__ = [
    "AUTH_HINT",
    "DEFAULT_DASHBOARD",
    "DEFAULT_STORAGE",
    "OBJECT_STORE_BYTES",
    "UPLOAD_EXCLUDES",
    "ExperimentError",
    "ExperimentResult",
    "ProgressCallback",
    "TrialFailed",
    "TrialFiles",
    "WandbCallback",
    "collect",
    "follow_job_logs",
    "fresh_experiment_dir",
    "job_logs",
    "jobs_address",
    "list_jobs",
    "project_root",
    "ray_session",
    "record",
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
