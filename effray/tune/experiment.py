"""`effray run` and `effray restore`: every trial of a spec as a Ray Tune trial.

Experiment directory (storage/name/):

    effray_experiment.json     the manifest: the spec, the trial names, the effray version
    results.json, results.csv  one row per trial (effray.results.TrialRecord), at the end
    driver.log                 Ray's own log lines from this driver (the console stays quiet)
    <trial name>/              one directory per trial (see effray.tune.trial)
    tuner.pkl  experiment_state-*.json          Ray's state, read by `effray restore`

`effray.spec.expand` has already fixed every search choice, so Ray's search is a grid
over the list of concrete trials (each one a JSON dict of its TrialSpec).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler

import effray
from effray.results import (
    DRIVER_LOG,
    EXPERIMENT_FILE,
    RESULTS_CSV,
    RESULTS_JSON,
    TRIAL_SPEC,
    TrialRecord,
    results_csv,
    results_json,
)
from effray.storage import (
    ExperimentError,
    basename,
    exists,
    fresh_experiment_dir,
    join,
    read_text,
    storage_root,
    write_text,
)
from effray.tune.callbacks import Listener, ProgressCallback, WandbCallback, emit, listening
from effray.tune.session import ray_session
from effray.tune.trial import trainable, trial_name


@dataclass
class ExperimentResult:
    name: str
    path: str  # experiment directory (local path or URI)
    trials: list[TrialRecord]
    wall_s: float

    @property
    def errored(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status == "error"]

    @property
    def unfinished(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.status == "unfinished"]

    @property
    def ok(self) -> bool:
        """Every trial finished or was stopped (by ASHA or early stopping)."""
        return not self.errored and not self.unfinished


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
    trials: list | None = None,
    *,
    storage: str | os.PathLike | None = None,
    address: str | None = None,
    name: str | None = None,
    callbacks: Iterable[tune.Callback] = (),
    on_event: Listener | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Every trial of `spec` as a Ray Tune trial; returns one record per trial.

    `trials` is `expand(spec)` when the caller has it already (expanded once).
    `callbacks` are extra driver-side Tune callbacks (e.g. a tracker); they are
    pickled into the experiment state, so `effray restore` brings them back.
    `on_event` receives plain dicts: one "experiment" event, then "trial" events.
    """
    from effray.spec import expand, new_trial_id

    trials = [t.model_copy(deep=True) for t in (trials if trials is not None else expand(spec))]
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
    write_text(join(path, EXPERIMENT_FILE), json.dumps(manifest, indent=2) + "\n")
    search = spec.search
    planned = [t.model_dump(mode="json") for t in trials]
    tuner_args = {
        "param_space": {"trial": tune.grid_search(planned)},
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
    with ray_session(address, num_cpus=num_cpus, log_file=join(path, DRIVER_LOG)):
        with listening(on_event):
            emit({"event": "experiment", "name": name, "path": path, "trials": len(trials)})
            grid = tune.Tuner(trainable(), **tuner_args).fit()
    result = collect(grid, path, name, time.perf_counter() - started, planned)
    write_results(result)
    return result


def _planned(path: str) -> list[dict]:
    """The trials `effray run` planned, re-expanded from its manifest's spec."""
    from effray.spec import planned_trials

    try:
        manifest = json.loads(read_text(join(path, EXPERIMENT_FILE)))
        return [t.model_dump(mode="json") for t in planned_trials(manifest)]
    except Exception:  # no readable manifest: the records are the trials Tune knows
        return []


def restore_experiment(
    path: str | os.PathLike,
    *,
    address: str | None = None,
    on_event: Listener | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Continue an interrupted experiment: finished trials are kept, running ones
    resume from their last checkpoints, pending ones start; errored ones stay errored."""
    path = storage_root(path)
    if not exists(join(path, "tuner.pkl")):
        hint = (
            " (it is a trial directory; use `effray resume` for one trial)"
            if exists(join(path, TRIAL_SPEC))
            else ""
        )
        raise ExperimentError(f"{path} is not an effray/Ray Tune experiment directory{hint}")
    name = basename(path)
    started = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus, log_file=join(path, DRIVER_LOG)):
        with listening(on_event):
            emit({"event": "experiment", "name": name, "path": path, "restored": True})
            tuner = tune.Tuner.restore(
                path, trainable=trainable(), resume_unfinished=True, resume_errored=False
            )
            grid = tuner.fit()
    result = collect(grid, path, name, time.perf_counter() - started, _planned(path))
    write_results(result)
    return result


def record(config: dict[str, Any], metrics: dict[str, Any], error: object, path: str):
    """A Ray trial's TrialRecord: its spec, its last result, its error."""
    rec = TrialRecord.from_spec(config.get("trial", {}), path)
    return rec.add_last(metrics).settle(metrics, error, done=bool(metrics.get("done")))


def collect(
    grid, path: str, name: str, wall_s: float, planned: Iterable[dict] = ()
) -> ExperimentResult:
    """One record per trial: those Tune ran, plus the `planned` trials (dumped trial
    specs) it never created, e.g. when the run was interrupted before their turn
    came; those are unfinished ("not started"), so `effray restore` has work left."""
    trials = [record(r.config or {}, r.metrics or {}, r.error, str(r.path)) for r in grid]
    seen = {t.name for t in trials}
    for dump in planned:
        if dump["trial"]["name"] not in seen:
            trials.append(record({"trial": dump}, {}, None, join(path, dump["trial"]["name"])))
    trials.sort(key=lambda t: t.index)
    return ExperimentResult(name=name, path=path, trials=trials, wall_s=wall_s)


def write_results(result: ExperimentResult) -> None:
    """results.json and results.csv in the experiment directory."""
    text = results_json(result.name, result.path, result.wall_s, result.trials, effray.__version__)
    write_text(join(result.path, RESULTS_JSON), text)
    write_text(join(result.path, RESULTS_CSV), results_csv(result.trials))


run = run_experiment  # effray.run
