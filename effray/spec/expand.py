"""Expansion: a spec into concrete, named trials (ablation x grid x samples)."""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from effray.errors import SpecError
from effray.spec.messages import problems_from
from effray.spec.overrides import apply_override
from effray.spec.schema import ExperimentSpec, TrialMeta
from effray.techniques import Technique


def technique_sets(spec: ExperimentSpec) -> list[tuple[str, list[Technique]]]:
    """(group name, techniques) for each technique set of the ablation."""
    always = [t for t in spec.techniques if not t.ablate]
    ablated = [t for t in spec.techniques if t.ablate]
    mode = spec.ablation
    if mode == "none":
        sets = [ablated]
    elif mode == "one_at_a_time":
        sets = [[], *[[t] for t in ablated]]
    elif mode == "leave_one_out":
        sets = [ablated, *[[u for u in ablated if u is not t] for t in ablated]]
    elif mode == "all_subsets":
        sets = [
            [t for j, t in enumerate(ablated) if mask >> j & 1] for mask in range(2 ** len(ablated))
        ]
    else:
        by_name = {t.name: t for t in spec.techniques}
        sets = [[by_name[n] for n in group] for group in mode]
    out, seen = [], set()
    for chosen in sets:
        name = "+".join(t.name for t in chosen) or "baseline"
        if name in seen:
            continue
        seen.add(name)
        chosen_ids = {id(t) for t in chosen}
        keep = [t for t in spec.techniques if id(t) in chosen_ids or t in always]
        out.append((name, keep))
    return out


def _draw(sampler: str, args, rng) -> Any:
    if sampler == "choice":
        return args[int(rng.integers(len(args)))]
    lo, hi = args
    if sampler == "uniform":
        return float(rng.uniform(lo, hi))
    if sampler == "loguniform":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return int(rng.integers(lo, hi))  # randint: [lo, hi)


def search_points(spec: ExperimentSpec) -> list[dict[str, Any]]:
    """Grid points x num_samples random draws (algorithm grid), or num_samples draws of
    every dimension (random), seeded: the same spec gives the same trials."""
    import itertools

    import numpy as np

    if spec.search is None:
        return [{}]
    space = spec.search.space
    rng = np.random.default_rng(spec.search.seed)
    if spec.search.algorithm == "random":  # every dimension drawn; a grid is a choice
        return [
            {
                k: _draw(*next(iter(d.items())), rng)
                if "grid" not in d
                else _draw("choice", d["grid"], rng)
                for k, d in space.items()
            }
            for _ in range(spec.search.num_samples)
        ]
    grid_keys = [k for k, d in space.items() if "grid" in d]
    rand_keys = [k for k in space if k not in grid_keys]
    points = []
    for combo in itertools.product(*(space[k]["grid"] for k in grid_keys)):
        for _ in range(spec.search.num_samples):
            point = dict(zip(grid_keys, combo, strict=True))
            for k in rand_keys:
                sampler, args = next(iter(space[k].items()))
                point[k] = _draw(sampler, args, rng)
            points.append(point)
    return points


def expand_one(spec: ExperimentSpec, point: dict[str, Any]) -> ExperimentSpec | SpecError:
    raw = spec.model_dump(mode="json", exclude={"search", "trial"})
    raw["ablation"] = "none"
    for path, value in point.items():
        apply_override(raw, path, value)
    try:
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        return SpecError(problems_from(exc))
    except SpecError as exc:
        return exc


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def expand(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """Every trial of the experiment, concrete and named (e.g. 'blurpool+mixup-seed1').

    An adaptive search (optuna, stages) proposes its trials while it runs: its list
    here is empty (see effray.spec.stages and the tune package's searchers)."""
    if spec.search is not None and spec.search.adaptive:
        return []
    trials: list[ExperimentSpec] = []
    points = search_points(spec)
    for group, chosen in technique_sets(spec):
        for point in points:
            base = spec.model_copy(update={"techniques": chosen})
            trial = expand_one(base, point)
            if isinstance(trial, SpecError):
                raise trial
            name = group
            extras = [
                f"{p.rsplit('.', 1)[-1]}{fmt_value(v)}"
                for p, v in point.items()
                if p != "train.seed"
            ]
            if extras:
                name += "-" + "-".join(extras)
            if "train.seed" in point or spec.search is not None:
                name += f"-seed{trial.train.seed}"
            trial.trial = TrialMeta(name=name, group=group, index=len(trials), params=point)
            trials.append(trial)
    names = [t.trial.name for t in trials]
    for t in trials:
        if names.count(t.trial.name) > 1:
            t.trial.name += f"-{t.trial.index}"
    return trials


def planned_trials(manifest: dict[str, Any]) -> list[ExperimentSpec]:
    """The trials an `effray run` manifest (effray_experiment.json) planned: its spec,
    expanded again; expansion is deterministic, so the names are the ones it ran."""
    return expand(ExperimentSpec.model_validate(manifest["spec"]))


def point_trial(spec: ExperimentSpec, point: dict[str, Any], index: int) -> ExperimentSpec:
    """A searcher's suggestion as a named trial ('baseline-t003'); each is its own group,
    so a report lists the trials an adaptive search chose one by one."""
    (group, chosen), *_ = technique_sets(spec)
    trial = expand_one(spec.model_copy(update={"techniques": chosen}), point)
    if isinstance(trial, SpecError):
        raise trial
    name = f"{group}-t{index:03d}"
    trial.trial = TrialMeta(name=name, group=name, index=index, params=point)
    return trial
