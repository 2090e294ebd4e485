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
    parent,
    read_text,
    redact,
    staged_file,
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

    search = spec.search
    if trials is None:
        trials = expand(spec)
    trials = [t.model_copy(deep=True) for t in trials]
    track = list(search.pbt.mutations) if search and search.scheduler_name == "pbt" else []
    for t in trials:  # stable ids, fixed here so the driver knows them: the W&B run ids
        t.trial.id = t.trial.id or new_trial_id()
        t.trial.track = track
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
    return _drive(spec, root, name, manifest, trials, address, callbacks, on_event, num_cpus)


def _drive(
    spec, root, name, manifest, trials, address, callbacks, on_event, num_cpus, restored=False
):
    """Run (or continue, `restored`) the experiment's Tune runs inside one Ray session."""
    from effray.spec.plan import search_plan
    from effray.tune.stages import run_stages

    path = join(root, name)
    optuna = spec.search is not None and spec.search.algorithm == "optuna"
    planned = [t.model_dump(mode="json") for t in trials]
    started = time.perf_counter()
    # a stored experiment's driver log is written here and copied there when the run ends
    with (
        staged_file(join(path, DRIVER_LOG)) as log,
        ray_session(address, num_cpus=num_cpus, log_file=log),
    ):
        with listening(on_event):
            event = {
                "event": "experiment",
                "name": name,
                "path": path,
                "trials": len(trials),
                "restored": restored,
            }
            if spec.search is not None and spec.search.adaptive:  # no fixed list: its budget
                plan = search_plan(spec, len(trials))
                kind = "greedy stages" if spec.search.stages else plan["algorithm"]
                event["search"] = f"{kind} search, up to {plan['budget']} trials"
            emit(event)
            if spec.search is not None and spec.search.stages:
                records = run_stages(spec, path, manifest, list(callbacks))
            elif exists(join(path, "tuner.pkl")):  # restore
                tuner = tune.Tuner.restore(
                    path, trainable=trainable(), resume_unfinished=True, resume_errored=False
                )
                records = collect(tuner.fit(), path, planned)
            else:
                tuner = tune_run(spec, root, name, None if optuna else planned, list(callbacks))
                records = collect(tuner.fit(), path, planned)
    result = ExperimentResult(name, path, records, time.perf_counter() - started)
    write_results(result)
    return result


PBT_KEEP = 4  # PBT copies a donor's newest checkpoint: keep a margin (Ray warns at <= 2)


def checkpoint_keep(spec) -> int:
    """Checkpoints kept per trial: run.checkpoint_keep, at least PBT_KEEP under PBT."""
    keep = spec.run.checkpoint_keep
    pbt = spec.search is not None and spec.search.scheduler_name == "pbt"
    return max(keep, PBT_KEEP) if pbt else keep


def tune_run(spec, root: str, name: str, planned: list[dict] | None, callbacks: list) -> tune.Tuner:
    """The Tuner of one Tune run in directory root/name: the `planned` trials (dumped
    TrialSpecs) as a grid, or Optuna's suggestions when `planned` is None."""
    from effray.tune.search import scheduler, searcher

    search = spec.search
    if planned is None:
        param_space, alg, samples = {}, searcher(spec, TrialMaker(spec)), search.num_samples
        max_t = spec.train.epochs
    else:
        param_space, alg, samples = {"trial": tune.grid_search(planned)}, None, 1
        max_t = max(t["train"]["epochs"] for t in planned)
    return tune.Tuner(
        trainable(),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            scheduler=scheduler(spec, max_t),
            search_alg=alg,
            num_samples=samples,
            max_concurrent_trials=search.max_concurrent if search and alg is None else None,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=root,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=checkpoint_keep(spec)),
            callbacks=[ProgressCallback(), WandbCallback(join(root, name)), *callbacks],
        ),
    )


class TrialMaker:
    """Turns a searcher's point into a named TrialSpec dict (pickled with the searcher)."""

    def __init__(self, spec) -> None:
        self.spec = spec.model_dump(mode="json")

    def __call__(self, point: dict, index: int) -> dict:
        from effray.spec import ExperimentSpec, new_trial_id
        from effray.spec.expand import point_trial

        trial = point_trial(ExperimentSpec.model_validate(self.spec), point, index)
        trial.trial.id = new_trial_id()
        return trial.model_dump(mode="json")


def restore_experiment(
    path: str | os.PathLike,
    *,
    address: str | None = None,
    on_event: Listener | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Continue an interrupted experiment: finished trials are kept, running ones
    resume from their last checkpoints, pending ones start; errored ones stay errored.
    A greedy search continues at its first unfinished stage."""
    from effray.spec import ExperimentSpec, planned_trials

    path = storage_root(path)
    try:
        manifest = json.loads(read_text(join(path, EXPERIMENT_FILE)))
        spec = ExperimentSpec.model_validate(manifest["spec"])
    except Exception:  # no readable manifest: Ray's own state is all there is
        manifest, spec = {}, None
    staged = spec is not None and spec.search is not None and bool(spec.search.stages)
    if not staged and not exists(join(path, "tuner.pkl")):
        hint = (
            " (it is a trial directory; use `effray resume` for one trial)"
            if exists(join(path, TRIAL_SPEC))
            else ""
        )
        raise ExperimentError(
            f"{redact(path)} is not an effray/Ray Tune experiment directory{hint}"
        )
    try:
        trials = planned_trials(manifest) if manifest else []
    except Exception:
        trials = []
    root, name = parent(path), basename(path)  # a URI keeps its query on the root
    if spec is None:
        from effray.spec import ExperimentSpec as Spec

        spec = Spec()
    return _drive(
        spec, root, name, manifest, trials, address, (), on_event, num_cpus, restored=True
    )


def record(config: dict[str, Any], metrics: dict[str, Any], error: object, path: str):
    """A Ray trial's TrialRecord: its spec, its last result, its error."""
    rec = TrialRecord.from_spec(config.get("trial", {}), path)
    return rec.add_last(metrics).settle(metrics, error, done=bool(metrics.get("done")))


def collect(grid, path: str, planned: Iterable[dict] = ()) -> list[TrialRecord]:
    """One record per trial: those Tune ran, plus the `planned` trials (dumped trial
    specs) it never created, e.g. when the run was interrupted before their turn
    came; those are unfinished ("not started"), so `effray restore` has work left."""
    trials = [  # r.path is a path on the store's filesystem: the trial's URI instead
        record(r.config or {}, r.metrics or {}, r.error, join(path, basename(str(r.path))))
        for r in grid
    ]
    seen = {t.name for t in trials}
    for dump in planned:
        if dump["trial"]["name"] not in seen:
            trials.append(record({"trial": dump}, {}, None, join(path, dump["trial"]["name"])))
    trials.sort(key=lambda t: t.order)
    return trials


def write_results(result: ExperimentResult) -> None:
    """results.json and results.csv in the experiment directory."""
    text = results_json(result.name, result.path, result.wall_s, result.trials, effray.__version__)
    write_text(join(result.path, RESULTS_JSON), text)
    write_text(join(result.path, RESULTS_CSV), results_csv(result.trials))


run = run_experiment  # effray.run
