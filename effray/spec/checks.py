"""Checks beyond field types: cross-section rules, search paths, the data on disk."""

from __future__ import annotations

from pydantic import BaseModel

from effray.errors import Problem, SpecError, did_you_mean, one_of, problem
from effray.spec.data_checks import check_metadata
from effray.spec.expand import expand_one
from effray.spec.messages import model_in, user_fields
from effray.spec.schema import ExperimentSpec


def check_spec(spec: ExperimentSpec, *, check_data: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    kinds = {t.kind: t for t in spec.techniques}
    problems += _check_ablation(spec, kinds)
    if spec.search is not None:
        from effray.spec.search_checks import check_adaptive

        problems += _check_search(spec)
        problems += check_adaptive(spec)
    asha = _asha_metric_problem(spec)
    if asha:
        problems.append(asha)
    problems += check_metadata(spec)  # sizes, channels, image side: no pixels read
    if check_data:
        problems += file_problems(spec)
    return problems


def file_problems(spec: ExperimentSpec) -> list[Problem]:
    """What depends on this machine's files: the dataset is there, with what the
    techniques need (boxes, …)."""
    from effray.data import check_data

    return check_data(spec.data) + _check_requirements(spec)


def _check_requirements(spec: ExperimentSpec) -> list[Problem]:
    from effray.data import capabilities, datasets_with

    caps = capabilities(spec.data)
    out = []
    for i, t in enumerate(spec.techniques):
        for need in type(t).requires:
            if need not in caps:
                out.append(
                    problem(
                        f"techniques.{i}",
                        f"{t.kind} needs a dataset with {need}; {spec.data.name!r} has none",
                        allowed=f"datasets with {need}: " + ", ".join(datasets_with(need)),
                    )
                )
    return out


def _check_ablation(spec: ExperimentSpec, kinds: dict) -> list[Problem]:
    if isinstance(spec.ablation, str):
        if spec.ablation != "none" and not [t for t in spec.techniques if t.ablate]:
            return [
                problem(
                    "ablation",
                    f"ablation {spec.ablation!r} needs at least one technique with ablate: true",
                    value=spec.ablation,
                )
            ]
        if spec.ablation == "all_subsets":
            n = len([t for t in spec.techniques if t.ablate])
            if n > 10:
                return [
                    problem(
                        "ablation",
                        f"all_subsets of {n} techniques is {2**n} trials",
                        value="all_subsets",
                        allowed="at most 10 ablated techniques; use an explicit list of sets",
                    )
                ]
        return []
    names = {t.name: t for t in spec.techniques}
    out = []
    for i, group in enumerate(spec.ablation):
        for j, name in enumerate(group):
            if name not in names:
                out.append(
                    problem(
                        f"ablation.{i}.{j}",
                        "names no technique listed in techniques",
                        value=name,
                        allowed=one_of(names) if names else "the kinds listed under techniques",
                        suggestion=did_you_mean(name, names),
                    )
                )
    return out


SAMPLERS = {"grid", "choice", "uniform", "loguniform", "randint"}


def _check_search(spec: ExperimentSpec) -> list[Problem]:
    out = []
    base = spec
    if spec.search.stages:  # the space is drawn on the stages' base: staged techniques off
        from effray.spec.stages import apply_changes

        base = apply_changes(spec, [])
        if isinstance(base, SpecError):  # reported by the stage checks
            return out
    for path, dist in spec.search.space.items():
        where = f"search.space.{path}"
        if len(dist) != 1 or next(iter(dist)) not in SAMPLERS:
            key = next(iter(dist), "")
            out.append(
                problem(
                    where,
                    "a search dimension is one sampler",
                    value=dist,
                    allowed=one_of(SAMPLERS),
                    suggestion=did_you_mean(key, SAMPLERS),
                )
            )
            continue
        sampler, args = next(iter(dist.items()))
        bad = check_sampler_args(sampler, args)
        if bad:
            out.append(problem(where, bad, value=args))
            continue
        err = check_path(spec, path)
        if err:
            out.append(
                Problem(
                    "search.space", f"{path!r} {err.message}", None, err.allowed, err.suggestion
                )
            )
            continue
        for value in probe_values(sampler, args):
            trial = expand_one(base, {path: value})
            if isinstance(trial, SpecError):
                for p in trial.problems:
                    out.append(problem(where, f"value {value!r} is invalid: {p}"))
                break
    return out


def check_sampler_args(sampler: str, args) -> str | None:
    if sampler in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            return f"{sampler} takes a non-empty list of values"
        return None
    if not (isinstance(args, list) and len(args) == 2):
        return f"{sampler} takes [low, high]"
    lo, hi = args
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in args):
        return f"{sampler} bounds must be numbers"
    if lo >= hi:
        return f"{sampler} needs low < high"
    if sampler == "loguniform" and lo <= 0:
        return "loguniform needs low > 0"
    if sampler == "randint" and not all(isinstance(v, int) for v in args):
        return "randint bounds must be integers"
    return None


def probe_values(sampler: str, args) -> list:
    if sampler in ("grid", "choice"):
        return list(args)
    lo, hi = args
    return [lo, hi - 1] if sampler == "randint" else [lo, hi]


def check_path(spec: ExperimentSpec, path: str) -> Problem | None:
    """Does a dotted search path name a field? techniques.<kind>.<field> and model.<knob> too."""
    parts = path.split(".")
    if parts[0] == "techniques":
        names = {t.kind: t for t in spec.techniques}
        if len(parts) != 3 or parts[1] not in names:
            return problem(
                path,
                "is not a technique field (use techniques.<kind>.<field>)",
                allowed=one_of(names) if names else "a kind listed under techniques",
                suggestion=did_you_mean(parts[1] if len(parts) > 1 else "", names),
            )
        fields = [f for f in type(names[parts[1]]).model_fields if f not in ("kind", "ablate")]
        if parts[2] not in fields:
            return problem(
                path,
                f"is not a field of {parts[1]}",
                allowed=one_of(fields) if fields else "none (it has no fields)",
                suggestion=did_you_mean(parts[2], fields),
            )
        return None
    if parts[0] == "model" and len(parts) == 2:
        from effray.models import MODELS

        knobs = ["name", *MODELS[spec.model.name].args.model_fields]
        if parts[1] not in knobs:
            return problem(
                path,
                f"is not a knob of model {spec.model.name}",
                allowed=one_of(knobs),
                suggestion=did_you_mean(parts[1], knobs),
            )
        return None
    cls: type[BaseModel] | None = ExperimentSpec
    for i, part in enumerate(parts):
        fields = user_fields(cls) if cls else []
        if cls is None or part not in fields:
            where = ".".join(parts[:i]) or "the spec"
            return problem(
                path,
                f"is not a field ({part!r} is not a field of {where})",
                allowed=one_of(fields) if fields else None,
                suggestion=did_you_mean(part, fields),
            )
        cls = model_in(cls.model_fields[part].annotation)
    if cls is not None and parts[-1] not in ("model",):
        return problem(path, "names a whole section; search a field inside it")
    return None


def _asha_metric_problem(spec: ExperimentSpec) -> Problem | None:
    if spec.search is None or spec.search.asha is None or spec.search.asha.metric is None:
        return None
    known = ("val/acc", "val/loss", "train/acc", "train/loss")
    if spec.search.asha.metric not in known:
        return problem(
            "search.asha.metric",
            "is not a metric effray reports every epoch",
            value=spec.search.asha.metric,
            allowed=one_of(known),
            suggestion=did_you_mean(spec.search.asha.metric, known),
        )
    return None
