"""`run_experiment` and `restore_experiment`: a spec's trials on Ray Tune, with ASHA."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

import effray
from effray.tune.callbacks import ProgressCallback, WandbCallback, _emit, _listening
from effray.tune.results import ExperimentResult, collect, write_results
from effray.tune.session import ray_session
from effray.tune.storage import (
    DRIVER_LOG,
    EXPERIMENT_FILE,
    ExperimentError,
    _exists,
    _join,
    _write_text,
    fresh_experiment_dir,
    storage_root,
)
from effray.tune.trial import trainable, trial_name


def _asha(spec, max_t: int):
    asha = spec.search.asha if spec.search is not None else None
    if asha is None:
        return None
    return ASHAScheduler(
        # "epoch" is the epoch fit reported: exact after a retry or a restore, where
        # Ray's own training_iteration restarts from the checkpoint's count.
        time_attr="epoch",
        metric=asha.metric,
        mode=asha.mode,
        max_t=max_t,
        grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor,
    )


def run_experiment(
    spec,
    *,
    storage: str | os.PathLike | None = None,
    address: str | None = None,
    name: str | None = None,
    callbacks: Iterable[tune.Callback] = (),
    on_event: Callable[[dict[str, Any]], None] | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Every trial of `spec` as a Ray Tune trial; returns one outcome per trial.

    `callbacks` are extra driver-side Tune callbacks (e.g. a tracker); they are
    pickled into the experiment state, so `effray restore` brings them back.
    `on_event` receives plain dicts: one "experiment" event, then "trial" events.
    """
    from effray.spec import expand, new_trial_id

    trials = expand(spec)
    for t in trials:  # stable ids, fixed here so the driver knows them: the W&B run ids
        t.trial.id = t.trial.id or new_trial_id()
    root = storage_root(storage or spec.run.storage)
    path, name = fresh_experiment_dir(root, name or spec.name, explicit=name is not None)
    manifest = {
        "name": name,
        "spec": spec.model_dump(mode="json"),
        "trials": [t.trial.name for t in trials],
        "created": time.time(),
        "effray_version": effray.__version__,
    }
    _write_text(_join(path, EXPERIMENT_FILE), json.dumps(manifest, indent=2) + "\n")
    search = spec.search
    tuner_args = {
        "param_space": {"trial": tune.grid_search([t.model_dump(mode="json") for t in trials])},
        "tune_config": tune.TuneConfig(
            scheduler=_asha(spec, max(t.train.epochs for t in trials)),
            max_concurrent_trials=search.max_concurrent if search else None,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        "run_config": tune.RunConfig(
            name=name,
            storage_path=root,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.run.checkpoint_keep),
            callbacks=[ProgressCallback(), WandbCallback(path), *callbacks],
        ),
    }
    started = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus, log_file=_join(path, DRIVER_LOG)):
        with _listening(on_event):
            _emit({"event": "experiment", "name": name, "path": path, "trials": len(trials)})
            grid = tune.Tuner(trainable(), **tuner_args).fit()
    result = collect(grid, path, name, time.perf_counter() - started)
    write_results(result)
    return result


run = run_experiment  # effray.run


def restore_experiment(
    path: str | os.PathLike,
    *,
    address: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Continue an interrupted experiment: finished trials are kept, running ones
    resume from their last checkpoints, pending ones start; errored ones stay errored."""
    path = storage_root(path)
    if not _exists(_join(path, "tuner.pkl")):
        hint = (
            " (it is a trial directory; use `effray resume` for one trial)"
            if _exists(_join(path, "trial_spec.yaml"))
            else ""
        )
        raise ExperimentError(f"{path} is not an effray/Ray Tune experiment directory{hint}")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    started = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus, log_file=_join(path, DRIVER_LOG)):
        with _listening(on_event):
            _emit({"event": "experiment", "name": name, "path": path, "restored": True})
            tuner = tune.Tuner.restore(
                path, trainable=trainable(), resume_unfinished=True, resume_errored=False
            )
            grid = tuner.fit()
    result = collect(grid, path, name, time.perf_counter() - started)
    write_results(result)
    return result
