"""The thesis's greedy search as data: stages of alternatives, each on top of the best so far.

    base = stage_base(spec)                     # techniques a stage names start off
    trials = stage_trials(spec, 0, chosen=[])   # stage 1: its alternatives x the seeds
    pick = choose(results)                      # best mean; a tie within one std keeps
                                                # the earlier, simpler alternative

The implicit first alternative of every stage is "keep": the best configuration so far,
unchanged. Its trials are the previous winner's (stage 1 runs them as "base"), so no
configuration is trained twice. Pure functions, no Ray: effray.tune.stages runs them.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from effray.errors import SpecError
from effray.spec.expand import fmt_value, search_points
from effray.spec.messages import problems_from
from effray.spec.overrides import apply_override
from effray.spec.schema import ExperimentSpec, TrialMeta
from effray.spec.search import Alternative

BASE = "base"  # the group of the unchanged spec
KEEP = "keep"


def staged_names(spec: ExperimentSpec) -> set[str]:
    """Technique names some stage adds or removes."""
    out: set[str] = set()
    for stage in spec.search.stages if spec.search else []:
        for alt in stage.alternatives:
            out.update(alt.add)
    return out


def apply_changes(spec: ExperimentSpec, chosen: list[Alternative]) -> ExperimentSpec | SpecError:
    """The base configuration with `chosen` applied in order: a concrete trial spec.

    Techniques some stage adds start off; `remove` switches any technique off, and the
    settings (`set: {techniques.<name>.<field>: …}`) of a technique that is off are
    dropped with it."""
    on = [t.name for t in spec.techniques if t.name not in staged_names(spec)]
    sets: dict[str, Any] = {}
    for alt in chosen:
        on = [n for n in on if n not in alt.remove]
        on += [n for n in alt.add if n not in on]
        sets.update(alt.set)
    raw = spec.model_dump(mode="json", exclude={"search", "trial"})
    raw["techniques"] = [
        t.model_dump(mode="json") for t in spec.techniques if t.name in on
    ]  # listed order
    raw["ablation"] = "none"
    try:
        for path, value in sets.items():
            parts = path.split(".")
            if parts[0] == "techniques" and len(parts) > 2 and parts[1] not in on:
                continue  # a setting of a technique a later stage switched off
            apply_override(raw, path, value)
        return ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        return SpecError(problems_from(exc))
    except SpecError as exc:
        return exc


MAX_PATHS = 2000  # stage combinations checked together; more: single alternatives and pairs


def paths_to_check(spec: ExperimentSpec) -> list[list[tuple[int, Alternative]]]:
    """The paths through the stages that validation builds a trial for: every path when
    there are at most MAX_PATHS, else each alternative alone and each pair of
    alternatives from two stages (where most conflicts show: two lr owners, a setting
    that needs an earlier stage's technique). Each path is [(stage index, alternative)]."""
    import itertools

    stages = spec.search.stages if spec.search else []
    options = [[None, *s.alternatives] for s in stages]
    if math.prod(len(o) for o in options) <= MAX_PATHS:
        return [
            [(i, a) for i, a in enumerate(combo) if a is not None]
            for combo in itertools.product(*options)
        ]
    singles = [(i, a) for i, s in enumerate(stages) for a in s.alternatives]
    return [
        [],
        *([x] for x in singles),
        *([x, y] for x, y in itertools.combinations(singles, 2) if x[0] < y[0]),
    ]


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", label)


def path_group(path: list[Alternative]) -> str:
    """A staged trial's group: its whole change from the spec, e.g. "+one_cycle +blurpool"
    (the report's technique-set column), or "base" for the spec as written."""
    return " ".join(a.label for a in path) or BASE


def stage_dir(index: int, name: str) -> str:
    """A stage's directory in the experiment: 'stage1-schedule'; 'stage0-base' for the base."""
    return f"stage{index}-{name}"


def stage_trials(
    spec: ExperimentSpec, index: int, chosen: list[Alternative], with_base: bool = False
) -> list[ExperimentSpec]:
    """The trials of stage `index` (0-based): each alternative on top of `chosen` (the
    winners so far), times the seed points of `search.space`. `with_base` adds the
    unchanged configuration first (the first stage has nothing to reuse)."""
    stage = spec.search.stages[index]
    alternatives: list[tuple[str, list[Alternative]]] = []
    if with_base:
        alternatives.append((KEEP, chosen))
    alternatives += [(alt.label, [*chosen, alt]) for alt in stage.alternatives]
    points = search_points(
        spec.model_copy(update={"search": spec.search.model_copy(update={"algorithm": "grid"})})
    )
    trials = []
    for label, path in alternatives:
        for point in points:
            trial = apply_changes(spec, path)
            if isinstance(trial, SpecError):
                raise trial
            raw = trial.model_dump(mode="json", exclude={"trial"})
            for p, v in point.items():
                apply_override(raw, p, v)
            trial = ExperimentSpec.model_validate(raw)
            extras = [
                f"{p.rsplit('.', 1)[-1]}{fmt_value(v)}"
                for p, v in point.items()
                if p != "train.seed"
            ]
            name = "-".join([f"s{index + 1}", _safe(label), *extras, f"seed{trial.train.seed}"])
            trial.trial = TrialMeta(
                name=name,
                group=path_group(path),
                index=len(trials),
                params={**point, "stage": stage.name, "alternative": label},
                stage=f"{index + 1}-{stage.name}",
            )
            trials.append(trial)
    return trials


@dataclass
class Choice:
    """One alternative's outcome in a stage."""

    label: str
    values: list[float]  # the metric of each seed's trial
    chosen: bool = False
    trials: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


def choose(choices: list[Choice], mode: str = "max") -> Choice:
    """The stage's winner: the best mean; an earlier alternative whose mean is within one
    std (the best's) of it wins instead (earlier = simpler: 'keep' comes first)."""
    scored = [c for c in choices if c.values and not math.isnan(c.mean)]
    if not scored:
        raise ValueError("no alternative of the stage has a result")
    sign = 1.0 if mode == "max" else -1.0
    best = max(scored, key=lambda c: sign * c.mean)
    for c in scored:  # in order: the first one close enough to the best
        if sign * (best.mean - c.mean) <= best.std:
            return c
    return best


def trial_value(history: list[dict[str, Any]], metric: str, mode: str) -> float:
    """A trial's score in a stage: its best epoch's metric (a stopped trial counts too)."""
    values = [m[metric] for m in history if isinstance(m.get(metric), (int, float))]
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if mode == "max" else min(values)


def budget(spec: ExperimentSpec) -> int:
    """Trials the whole greedy search runs: base plus every alternative, times the seeds."""
    seeds = len(
        search_points(
            spec.model_copy(update={"search": spec.search.model_copy(update={"algorithm": "grid"})})
        )
    )
    return seeds * (1 + sum(len(s.alternatives) for s in spec.search.stages))
