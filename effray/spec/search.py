"""The `search:` section: the space, the algorithm that walks it, the scheduler, the stages.

    search:
      algorithm: optuna            # grid (default) | random | optuna
      space: {train.lr: {loguniform: [0.01, 0.3]}}
      num_samples: 20
      scheduler: asha              # asha (default) | median_stopping | pbt | none
      asha: {grace_period: 1}

    search:                        # the thesis's greedy search (section 4.2)
      space: {train.seed: {grid: [0, 1, 2]}}
      stages:
        - name: schedule
          alternatives: [{add: [one_cycle]}, {set: {train.lr: 0.1}}]

`scheduler` names the scheduler; its settings live in the block of the same name
(`asha:`, `median_stopping:`, `pbt:`). A 0.1 spec that only wrote `asha: {…}` or
`asha: null` still means what it meant. The metric every searcher and scheduler
optimises is `search.metric`/`search.mode`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from effray.errors import did_you_mean, one_of
from effray.spec.messages import hint_text
from effray.spec.strict import Strict

ALGORITHMS = ("grid", "random", "optuna")
SCHEDULERS = ("asha", "median_stopping", "pbt", "none")
METRICS = ("val/acc", "val/loss", "train/acc", "train/loss")  # reported every epoch


def _known(what: str, value: Any, allowed: tuple[str, ...]) -> Any:
    if isinstance(value, str) and value not in allowed:
        hint = did_you_mean(value, allowed)
        raise PydanticCustomError(
            "unknown_name",
            "unknown {what} '{value}' (allowed {allowed}{hint})",
            {
                "what": what,
                "value": value,
                "allowed": one_of(allowed),
                "hint": hint_text(hint),
                "suggestion": hint or "",
            },
        )
    return value


class AshaSpec(Strict):
    metric: str | None = None  # None: search.metric (0.1 specs set it here)
    mode: Literal["max", "min"] | None = None  # None: search.mode
    grace_period: Annotated[int, Field(ge=1)] = 1  # epochs before ASHA may stop a trial
    reduction_factor: Annotated[float, Field(gt=1)] = 3  # keep 1/rf of trials at each rung


class MedianStoppingSpec(Strict):
    grace_period: Annotated[int, Field(ge=1)] = 1  # epochs before a trial may be stopped
    min_samples_required: Annotated[int, Field(ge=1)] = 3  # trials whose median it compares to


class PbtSpec(Strict):
    perturbation_interval: Annotated[int, Field(ge=1)] = 2  # epochs between exploit/explore
    # dotted numeric path -> {uniform|loguniform|randint: [lo, hi]} or {choice: [...]}
    mutations: dict[str, dict[str, Any]]
    quantile_fraction: Annotated[float, Field(gt=0, le=0.5)] = 0.25  # bottom copies top
    resample_probability: Annotated[float, Field(ge=0, le=1)] = 0.25  # else perturb x0.8/x1.2
    seed: Annotated[int, Field(ge=0)] = 0  # PBT's own random choices

    @field_validator("mutations")
    @classmethod
    def _not_empty(cls, value):
        if not value:
            raise PydanticCustomError(
                "pbt_mutations",
                "pbt needs at least one mutation, e.g. {train.lr: {loguniform: [0.01, 0.3]}}",
            )
        return value


class Alternative(Strict):
    """One alternative of a stage: techniques switched on/off and/or fields set."""

    name: str | None = (
        None  # default: made from the change, e.g. "+one_cycle" or "weight_decay=0.3"
    )
    add: list[str] = []  # technique names (from `techniques:`) switched on
    remove: list[str] = []  # technique names switched off
    set: dict[str, Any] = {}  # dotted path -> value, e.g. {train.weight_decay: 0.3}

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        techniques = "".join([f"+{n}" for n in self.add] + [f"-{n}" for n in self.remove])
        fields = [f"{p.rsplit('.', 1)[-1]}={v}" for p, v in self.set.items()]
        return ",".join([techniques, *fields] if techniques else fields) or "keep"


class Stage(Strict):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")]
    alternatives: Annotated[list[Alternative], Field(min_length=1)]
    note: str = ""  # e.g. which thesis runs this stage stands for


class SearchSpec(Strict):
    algorithm: str = "grid"  # grid | random | optuna (see `effray expand`)
    space: dict[
        str, dict[str, Any]
    ] = {}  # dotted spec path -> {grid|choice|uniform|loguniform|randint: …}
    num_samples: Annotated[int, Field(ge=1, le=10_000)] = 1  # draws (per grid point for grid)
    seed: Annotated[int, Field(ge=0)] = 0  # seed of the draws / of optuna's sampler
    # optuna: random trials before TPE models the results (None: Optuna's default, 10)
    startup_trials: Annotated[int, Field(ge=1)] | None = None
    metric: str = "val/acc"  # what the algorithm, the scheduler and the stages optimise
    mode: Literal["max", "min"] = "max"
    scheduler: str | None = (
        None  # asha | median_stopping | pbt | none; None: asha unless asha: null
    )
    asha: AshaSpec | None = AshaSpec()  # settings of scheduler asha; null: no scheduler (0.1)
    median_stopping: MedianStoppingSpec | None = None
    pbt: PbtSpec | None = None
    stages: list[Stage] = []  # the greedy search: each stage keeps the best alternative
    max_concurrent: Annotated[int, Field(ge=1)] | None = (
        None  # trials at once; None = as resources allow
    )

    @field_validator("algorithm", mode="before")
    @classmethod
    def _known_algorithm(cls, value):
        return _known("search algorithm", value, ALGORITHMS)

    @field_validator("scheduler", mode="before")
    @classmethod
    def _known_scheduler(cls, value):
        return _known("scheduler", value, SCHEDULERS)

    @field_validator("metric", mode="before")
    @classmethod
    def _known_metric(cls, value):
        return _known("metric", value, METRICS)

    @model_validator(mode="after")
    def _one_scheduler(self):
        given = self.model_fields_set
        blocks = [b for b in ("asha", "median_stopping", "pbt") if b in given and getattr(self, b)]
        if len(blocks) > 1:
            raise PydanticCustomError(
                "two_schedulers",
                "two schedulers at once ({blocks}); keep one block and set search.scheduler to it",
                {"blocks": " and ".join(blocks)},
            )
        if self.scheduler and blocks and blocks[0] != self.scheduler:
            raise PydanticCustomError(
                "two_schedulers",
                "search.scheduler is '{s}' but the settings block is '{b}'; make them the same",
                {"s": self.scheduler, "b": blocks[0]},
            )
        if self.scheduler == "pbt" and self.pbt is None:
            raise PydanticCustomError(
                "pbt_block",
                "scheduler 'pbt' needs a pbt block with mutations, "
                "e.g. pbt: {mutations: {train.lr: {loguniform: [0.01, 0.3]}}}",
            )
        if self.asha is not None and self.asha.metric is not None:  # a 0.1 spec's metric
            if "metric" in given and self.asha.metric != self.metric:
                raise PydanticCustomError(
                    "two_metrics",
                    "search.asha.metric '{a}' differs from search.metric '{m}'; set only search.metric",
                    {"a": self.asha.metric, "m": self.metric},
                )
            self.metric = self.asha.metric
        if self.asha is not None and self.asha.mode is not None:
            self.mode = self.asha.mode
        return self

    @property
    def scheduler_name(self) -> str:
        """The scheduler that runs: the named one, else the block given, else asha/none."""
        if self.scheduler:
            return self.scheduler
        for block in ("pbt", "median_stopping"):
            if getattr(self, block) is not None:
                return block
        return "asha" if self.asha is not None else "none"

    @property
    def adaptive(self) -> bool:
        """Trials are proposed while the search runs (not all listed before it starts)."""
        return self.algorithm == "optuna" or bool(self.stages)
