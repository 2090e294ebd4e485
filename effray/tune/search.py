"""Searchers and schedulers from `search:`: Optuna's TPE, ASHA, median stopping, PBT.

Every Ray trial's config is `{"trial": <a complete TrialSpec as a dict>}`, whoever made
it: the expansion (grid, random), the Optuna searcher below (it turns each suggestion
into a named TrialSpec with a stable id), or PBT (it copies the donor's spec, mutates
it, and keeps the trial's own name, id and seed). Callbacks, the trainable and the
results never need to know which.
"""

from __future__ import annotations

import copy
import math
import pickle
import random
from typing import Any

from ray import tune
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule, PopulationBasedTraining
from ray.tune.search import ConcurrencyLimiter, Searcher

TIME_ATTR = "epoch"  # fit's own epoch count: exact after a retry, a restore or an exploit


def scheduler(spec, max_t: int):
    """The Tune scheduler `search.scheduler` names (None: every trial runs all epochs)."""
    search = spec.search
    name = search.scheduler_name if search is not None else "none"
    if name == "asha":
        a = search.asha
        return ASHAScheduler(
            time_attr=TIME_ATTR,
            metric=search.metric,
            mode=search.mode,
            max_t=max_t,
            grace_period=a.grace_period if a else 1,
            reduction_factor=a.reduction_factor if a else 3,
        )
    if name == "median_stopping":
        m = search.median_stopping
        return MedianStoppingRule(
            time_attr=TIME_ATTR,
            metric=search.metric,
            mode=search.mode,
            grace_period=m.grace_period if m else 1,
            min_samples_required=m.min_samples_required if m else 3,
        )
    if name == "pbt":
        return SpecPBT(search)
    return None


def _domain(sampler: str, args):
    if sampler == "uniform":
        return tune.uniform(*args)
    if sampler == "loguniform":
        return tune.loguniform(*args)
    if sampler == "randint":
        return tune.randint(*args)
    return tune.choice(list(args))


def searcher(spec, make_trial):
    """Optuna's TPE over `search.space`, seeded, behind a ConcurrencyLimiter when
    `max_concurrent` is set. `make_trial(point, index)` -> a TrialSpec (dict)."""
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the CLI draws the progress

    search = spec.search
    space = {path: _domain(*next(iter(d.items()))) for path, d in search.space.items()}
    startup = {} if search.startup_trials is None else {"n_startup_trials": search.startup_trials}
    sampler = optuna.samplers.TPESampler(seed=search.seed, **startup)  # OptunaSearch's default
    inner = OptunaSearch(space=space, metric=search.metric, mode=search.mode, sampler=sampler)
    alg: Searcher = SpecSearcher(inner, make_trial, search.metric, search.mode)
    if search.max_concurrent:
        alg = ConcurrencyLimiter(alg, max_concurrent=search.max_concurrent)
    return alg


class SpecSearcher(Searcher):
    """Wraps a Tune searcher: each flat suggestion `{"train.lr": 0.03, …}` becomes a
    complete, named TrialSpec with a stable id, as the expansion's trials are."""

    def __init__(self, inner: Searcher, make_trial, metric: str, mode: str):
        super().__init__(metric=metric, mode=mode)
        self.inner = inner
        self.make_trial = make_trial
        self.count = 0
        self.points: dict[str, dict[str, Any]] = {}  # Ray trial id -> suggested point

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return not config  # the space is the inner searcher's; Tune's param_space is empty

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return self.inner.set_max_concurrency(max_concurrent)

    def suggest(self, trial_id: str):
        point = self.inner.suggest(trial_id)
        if not isinstance(point, dict):
            return point  # None (wait) or Searcher.FINISHED
        point = {k: _plain(v) for k, v in _flat(point).items()}
        self.points[trial_id] = point
        trial = self.make_trial(point, self.count)
        self.count += 1
        return {"trial": trial}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}/{k}" if prefix else k
        if isinstance(v, dict):
            out.update(_flat(v, key))
        else:
            out[key] = v
    return out


def _plain(v):
    """numpy scalars from a sampler as plain Python numbers (JSON, YAML, pydantic)."""
    return v.item() if hasattr(v, "item") else v


def _keep_config(config: dict) -> dict:
    return config


class SpecPBT(PopulationBasedTraining):
    """PBT over dotted spec paths (`train.lr`, `techniques.mixup.alpha`, …), synchronous,
    so a trial that exploits continues from the donor's checkpoint at the same epoch.

    The clone keeps the trial's own name, id and seed: its W&B run and directory stay
    its own, and only the mutated values and the weights come from the donor."""

    def __init__(self, search) -> None:
        pbt = search.pbt
        super().__init__(
            time_attr=TIME_ATTR,
            metric=search.metric,
            mode=search.mode,
            perturbation_interval=pbt.perturbation_interval,
            quantile_fraction=pbt.quantile_fraction,
            resample_probability=pbt.resample_probability,
            custom_explore_fn=_keep_config,  # the mutations are done in _get_new_config
            synch=True,
        )
        self.mutations = dict(pbt.mutations)
        self.rng = random.Random(pbt.seed)

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if "stop_reason" in result:  # fit's last epoch: nothing is left to continue
            return self.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _get_new_config(self, trial, trial_to_clone):
        new = copy.deepcopy(trial_to_clone.config)
        own = trial.config["trial"]
        new["trial"]["trial"] = copy.deepcopy(own["trial"])
        new["trial"]["train"]["seed"] = own["train"]["seed"]
        ops = {}
        for path, dist in self.mutations.items():
            old = get_path(new["trial"], path)
            value, ops[path] = explore(
                old, dist, self.rng, self._resample_probability, self._perturbation_factors
            )
            set_path(new["trial"], path, value)
        return new, ops


def explore(value, dist: dict, rng: random.Random, resample_p: float, factors) -> tuple:
    """PBT's explore step for one value: resample from the distribution with
    probability `resample_p`, else perturb (x0.8 / x1.2, or a neighbour in a choice);
    kept inside the declared range."""
    sampler, args = next(iter(dist.items()))
    if sampler == "choice":
        values = list(args)
        if rng.random() < resample_p or value not in values:
            return rng.choice(values), "resample"
        i = values.index(value) + rng.choice((-1, 1))
        return values[min(max(i, 0), len(values) - 1)], "shift"
    lo, hi = args
    if rng.random() < resample_p:
        if sampler == "loguniform":
            new = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        elif sampler == "randint":
            new = rng.randrange(lo, hi)
        else:
            new = rng.uniform(lo, hi)
        return new, "resample"
    factor = rng.choice(list(factors))
    new = value * factor
    if sampler == "randint":
        new = min(max(int(round(new)), lo), hi - 1)
    else:
        new = min(max(new, lo), hi)
    return new, f"* {factor}"


def get_path(spec: dict, path: str):
    parts = path.split(".")
    if parts[0] == "techniques":
        tech = next(t for t in spec["techniques"] if t["kind"] == parts[1])
        return tech[parts[2]]
    node = spec
    for p in parts:
        node = node[p]
    return node


def set_path(spec: dict, path: str, value) -> None:
    parts = path.split(".")
    if parts[0] == "techniques":
        tech = next(t for t in spec["techniques"] if t["kind"] == parts[1])
        tech[parts[2]] = value
        return
    node = spec
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value
