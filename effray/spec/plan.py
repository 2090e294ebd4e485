"""What a search will run, in words and numbers, before it runs (`effray expand`)."""

from __future__ import annotations

from typing import Any

from effray.spec.schema import ExperimentSpec


def _dist(d: dict[str, Any]) -> str:
    sampler, args = next(iter(d.items()))
    return f"{sampler} {args}"


def search_plan(spec: ExperimentSpec, listed: int) -> dict[str, Any]:
    """The algorithm, scheduler, space and budget of `spec`'s search; `listed` is the
    number of trials the expansion fixed up front (0 for an adaptive search)."""
    search = spec.search
    if search is None:
        return {"algorithm": "grid", "scheduler": "none", "budget": listed, "space": {}}
    plan: dict[str, Any] = {
        "algorithm": search.algorithm,
        "scheduler": search.scheduler_name,
        "metric": f"{search.metric} ({search.mode})",
        "space": {path: _dist(d) for path, d in search.space.items()},
        "budget": listed,
    }
    if search.algorithm == "optuna":
        plan["budget"] = search.num_samples
        plan["note"] = (
            f"Optuna's TPE proposes {search.num_samples} trials (seed {search.seed}), "
            f"{search.max_concurrent or 'as many as resources allow'} at a time, "
            f"the first {search.startup_trials or 10} at random, then each from the "
            "results so far"
        )
    if search.scheduler_name == "pbt":
        pbt = search.pbt
        plan["mutations"] = {path: _dist(d) for path, d in pbt.mutations.items()}
        plan["note"] = (
            f"population of {listed}; every {pbt.perturbation_interval} epochs the bottom "
            f"{pbt.quantile_fraction:.0%} copy the top {pbt.quantile_fraction:.0%} "
            "and mutate"
        )
    if search.stages:
        from effray.spec.stages import budget

        seeds = budget(spec) // (1 + sum(len(s.alternatives) for s in search.stages))
        plan["budget"] = budget(spec)
        plan["stages"] = [
            {"stage": s.name, "alternatives": ["keep", *(a.label for a in s.alternatives)]}
            for s in search.stages
        ]
        plan["note"] = (
            f"{len(search.stages)} stages in order, each alternative x {seeds} "
            "search point(s) on top of the best so far; 'keep' reuses the earlier trials"
        )
    return plan
