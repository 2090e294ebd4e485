"""Checks of an adaptive search before anything starts: optuna, pbt mutations, stages."""

from __future__ import annotations

from typing import Any

from effray.errors import Problem, SpecError, did_you_mean, one_of, problem
from effray.spec.checks import check_path, check_sampler_args, probe_values
from effray.spec.expand import expand_one
from effray.spec.schema import ExperimentSpec
from effray.spec.stages import apply_changes

MUTATION_SAMPLERS = ("uniform", "loguniform", "randint", "choice")


def check_adaptive(spec: ExperimentSpec) -> list[Problem]:
    search = spec.search
    if search is None:
        return []
    out: list[Problem] = []
    grid = [p for p, d in search.space.items() if "grid" in d]
    if search.startup_trials is not None and search.algorithm != "optuna":
        out.append(
            problem(
                "search.startup_trials",
                f"startup_trials is a setting of algorithm 'optuna', not {search.algorithm!r}",
                value=search.startup_trials,
                allowed="set search.algorithm: optuna, or remove startup_trials",
            )
        )
    if search.algorithm == "optuna":
        if grid:
            out.append(
                problem(
                    "search.space",
                    f"grid dimensions cannot be combined with algorithm 'optuna' "
                    f"(Tune refuses them): {', '.join(grid)}",
                    allowed="uniform, loguniform, randint or choice for optuna",
                    suggestion=None,
                )
            )
        if search.scheduler_name == "pbt":
            out.append(
                problem(
                    "search.scheduler",
                    "pbt proposes its own configurations; it cannot follow optuna",
                    value="pbt",
                    allowed="algorithm grid or random with pbt; asha, median_stopping or none with optuna",
                )
            )
    if search.pbt is not None and search.scheduler_name == "pbt":
        out += _check_mutations(spec)
    if search.stages:
        out += _check_stages(spec)
    return out


def numeric_value(spec: ExperimentSpec, path: str) -> Any:
    """The spec's value at a dotted path (techniques.<kind>.<field> included)."""
    parts = path.split(".")
    if parts[0] == "techniques":
        tech = next(t for t in spec.techniques if t.kind == parts[1])
        return getattr(tech, parts[2])
    if parts[0] == "model" and len(parts) == 2:
        return spec.model.args.get(parts[1]) if parts[1] != "name" else spec.model.name
    value: Any = spec
    for part in parts:
        value = getattr(value, part)
    return value


def _check_mutations(spec: ExperimentSpec) -> list[Problem]:
    out = []
    for path, dist in spec.search.pbt.mutations.items():
        where = f"search.pbt.mutations.{path}"
        err = check_path(spec, path)
        if err:
            out.append(Problem(where, err.message, None, err.allowed, err.suggestion))
            continue
        key = next(iter(dist), "") if isinstance(dist, dict) else ""
        if len(dist) != 1 or key not in MUTATION_SAMPLERS:
            out.append(
                problem(
                    where,
                    "a mutation is one sampler",
                    value=dist,
                    allowed=one_of(MUTATION_SAMPLERS),
                    suggestion=did_you_mean(key, MUTATION_SAMPLERS),
                )
            )
            continue
        value = numeric_value(spec, path)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            out.append(
                problem(
                    where,
                    f"pbt mutates numbers; {path} is {value!r} ({type(value).__name__})",
                    allowed="a numeric field such as train.lr, train.weight_decay, "
                    "techniques.mixup.alpha",
                )
            )
            continue
        args = dist[key]
        bad = check_sampler_args(key, args)
        if bad:
            out.append(problem(where, bad, value=args))
            continue
        if key == "choice" and not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in args
        ):
            out.append(problem(where, "choice values must be numbers", value=args))
            continue
        for v in probe_values(key, args):
            trial = expand_one(spec, {path: v})
            if isinstance(trial, SpecError):
                out.append(problem(where, f"value {v!r} is invalid: {trial.problems[0]}"))
                break
    return out


def _check_stages(spec: ExperimentSpec) -> list[Problem]:
    search = spec.search
    out: list[Problem] = []
    if search.algorithm != "grid" or search.scheduler_name == "pbt":
        what = "algorithm " + search.algorithm if search.algorithm != "grid" else "scheduler pbt"
        out.append(
            problem(
                "search.stages",
                f"stages choose the configurations themselves; they cannot be combined with {what}",
                allowed="stages with algorithm grid and scheduler asha, median_stopping or none",
            )
        )
    if spec.ablation != "none":
        out.append(
            problem(
                "ablation",
                "stages replace the ablation; set ablation: none",
                value=spec.ablation,
            )
        )
    names = {t.name for t in spec.techniques}
    stage_names = [s.name for s in search.stages]
    for name in sorted({n for n in stage_names if stage_names.count(n) > 1}):
        out.append(problem("search.stages", f"stage name {name!r} is used twice", value=name))
    for i, stage in enumerate(search.stages):
        labels = [a.label for a in stage.alternatives]
        for label in sorted({x for x in labels if labels.count(x) > 1 or x in ("keep", "base")}):
            out.append(
                problem(
                    f"search.stages.{i}.alternatives",
                    f"alternative name {label!r} is used twice or reserved ('keep' is the "
                    "best so far, which every stage compares against; 'base' is the spec as "
                    "written); give each a name",
                    value=label,
                )
            )
        for j, alt in enumerate(stage.alternatives):
            where = f"search.stages.{i}.alternatives.{j}"
            for field in ("add", "remove"):
                for k, n in enumerate(getattr(alt, field)):
                    if n not in names:
                        out.append(
                            problem(
                                f"{where}.{field}.{k}",
                                "names no technique listed in techniques",
                                value=n,
                                allowed=one_of(names)
                                if names
                                else "add the technique under techniques",
                                suggestion=did_you_mean(n, names),
                            )
                        )
            paths_ok = True
            for path in alt.set:
                err = check_path(spec, path)
                if err:
                    paths_ok = False
                    out.append(
                        Problem(
                            f"{where}.set",
                            f"{path!r} {err.message}",
                            None,
                            err.allowed,
                            err.suggestion,
                        )
                    )
            if paths_ok and alt.set:
                trial = apply_changes(spec, [alt.model_copy(update={"add": [], "remove": []})])
                if isinstance(trial, SpecError):
                    out.append(
                        problem(f"{where}.set", f"{alt.set} is invalid: {trial.problems[0]}")
                    )
    if out:
        return out
    return _check_stage_paths(spec)


def _check_stage_paths(spec: ExperimentSpec) -> list[Problem]:
    """Every path through the stages gives a valid trial: not two lr owners, normalize's
    mean/std as many as the channels its path leaves (grayscale)."""
    from effray.spec.data_checks import normalize_problems
    from effray.spec.stages import paths_to_check

    stages = spec.search.stages
    for steps in paths_to_check(spec):
        trial = apply_changes(spec, [a for _, a in steps])
        bad = trial.problems if isinstance(trial, SpecError) else normalize_problems(trial)
        if bad:
            path = " then ".join(f"{stages[i].name}:{a.label}" for i, a in steps) or "no change"
            return [
                problem(
                    "search.stages",
                    f"the path {path} gives an invalid trial: {bad[0]}",
                    allowed="alternatives that compose with every earlier choice",
                )
            ]
    return []
