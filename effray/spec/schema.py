"""The spec's pydantic models: one per section, ExperimentSpec, and its JSON schema."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from effray.data.registry import DATASETS
from effray.errors import Problem, did_you_mean, one_of
from effray.spec.messages import NOT_FINITE, error_message, hint_text, inline_errors, without_path
from effray.spec.search import SearchSpec
from effray.spec.strict import Strict
from effray.techniques import TECHNIQUES, Technique, resolve_kind

DatasetName = Literal[tuple(DATASETS)]  # the registry's names (effray.data.registry)
SYNTHETIC_ONLY = ("num_classes", "channels", "size", "train_size", "val_size")


class DataSpec(Strict):
    name: DatasetName = "fashion_mnist"  # see `effray datasets`
    root: str | None = None  # None: the dataset's default location (see effray.data)
    download: bool = False  # fetch through torchvision when the files are missing
    val_split: Literal["test"] | Annotated[float, Field(gt=0, le=0.5)] = (
        "test"  # or a held-out fraction of train
    )
    train_subset: Annotated[int, Field(gt=0)] | None = (
        None  # train images used (seeded pick); None = all
    )
    val_subset: Annotated[int, Field(gt=0)] | None = None  # validation images used; None = all
    image_size: Annotated[int, Field(ge=8, le=1024)] | None = (
        None  # pixels; loader datasets resize to it
    )
    workers: Annotated[int, Field(ge=0, le=64)] = 2  # DataLoader worker processes (loader datasets)
    # synthetic only: a learnable toy problem for tests and smoke runs
    num_classes: Annotated[int, Field(ge=2, le=1000)] = 10
    channels: Literal[1, 3] = 1
    size: Annotated[int, Field(ge=8, le=256)] = 28  # pixels per side
    train_size: Annotated[int, Field(ge=8)] = 512  # images
    val_size: Annotated[int, Field(ge=8)] = 256  # images

    @field_validator("name", mode="before")
    @classmethod
    def _known_dataset(cls, value):
        if isinstance(value, str) and value not in DATASETS:
            raise PydanticCustomError(
                "unknown_name",
                "unknown {what} '{value}' (allowed {allowed}{hint})",
                {
                    "what": "dataset",
                    "value": value,
                    "allowed": one_of(DATASETS),
                    "hint": hint_text(did_you_mean(value, DATASETS)),
                    "suggestion": did_you_mean(value, DATASETS) or "",
                },
            )
        return value  # not a string: the Literal's type error says what is allowed

    @model_validator(mode="after")
    def _synthetic_fields_only_for_synthetic(self):
        if self.name != "synthetic":
            fields = type(self).model_fields
            bad = [f for f in SYNTHETIC_ONLY if getattr(self, f) != fields[f].default]
            if bad:
                raise PydanticCustomError(
                    "synthetic_only",
                    "{fields} only apply to data.name 'synthetic' (dataset is '{name}'); remove them",
                    {"fields": ", ".join(bad), "name": self.name},
                )
        return self


class ModelSpec(BaseModel):
    """`name` picks a registered model; any other key is one of that model's knobs."""

    model_config = ConfigDict(extra="allow")

    name: str = "paper_mnist_1p5k_dw"

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _known_model_and_args(self):
        from effray.models import MODELS

        if self.name not in MODELS:
            raise PydanticCustomError(
                "unknown_model",
                "unknown model '{value}' (allowed {allowed}{hint})",
                {
                    "value": self.name,
                    "allowed": one_of(MODELS),
                    "hint": hint_text(did_you_mean(self.name, MODELS)),
                },
            )
        entry = MODELS[self.name]
        try:
            checked = entry.args.model_validate(self.args)
        except ValidationError as exc:
            raise PydanticCustomError(
                "model_args", "{detail}", {"detail": inline_errors(exc, entry.args)}
            ) from None
        values = checked.model_dump()
        infinite = [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]
        if infinite:  # the models' own arg classes need not know: checked once, here
            raise PydanticCustomError(
                "model_args",
                "{detail}",
                {"detail": "; ".join(f"{k}: {NOT_FINITE} (value {values[k]!r})" for k in infinite)},
            )
        for key, value in values.items():
            if key in (self.model_extra or {}):
                self.model_extra[key] = value
        return self


class TrainSpec(Strict):
    epochs: Annotated[int, Field(ge=1, le=100_000)] = 10  # passes over the train set
    batch_size: Annotated[int, Field(ge=1, le=65_536)] = 128  # images per optimizer step
    eval_batch_size: Annotated[int, Field(ge=1, le=65_536)] = 1000  # images per eval forward
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0)] = 0.05  # peak learning rate
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9  # sgd momentum / adam beta1
    nesterov: bool = False  # sgd only
    weight_decay: Annotated[float, Field(ge=0, le=10)] = 5e-4  # L2 (sgd, adam) or decoupled (adamw)
    seed: Annotated[int, Field(ge=0)] = 0  # weights, data order and augmentation
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast for forward passes
    channels_last: bool = False  # NHWC memory layout (faster convs on GPUs)
    threads: Annotated[int, Field(ge=1, le=256)] | None = (
        None  # torch CPU threads; None = the CPUs the trial reserved (all cores alone)
    )
    latency_repeats: Annotated[int, Field(ge=0, le=20)] = (
        3  # CPU latency runs over the val set; 0 = skip
    )
    latency_threads: Annotated[int, Field(ge=1, le=256)] = 1  # threads for the latency measurement
    latency_batch_size: Annotated[int, Field(ge=1)] = 100  # images per forward when timing

    @model_validator(mode="after")
    def _nesterov_needs_sgd_momentum(self):
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise PydanticCustomError(
                "nesterov",
                "nesterov needs optimizer 'sgd' with momentum > 0 (optimizer '{opt}', momentum {m})",
                {"opt": self.optimizer, "m": self.momentum},
            )
        return self


class ResourcesSpec(Strict):
    cpu: Annotated[float, Field(gt=0, le=1024)] = 1  # CPUs reserved per trial
    gpu: Annotated[float, Field(ge=0, le=64)] = 0  # GPUs per trial; 0.25 packs four trials on a GPU

    @field_validator("cpu", "gpu")
    @classmethod
    def _ray_accepts(cls, value: float, info):
        """What Ray refuses only when it schedules the trials: a GPU amount above 1 that
        is not whole (a trial cannot span 1.5 devices), and amounts finer than 0.0001."""
        if 0 < value < 1e-4:
            raise PydanticCustomError(
                "ray_resource",
                "Ray counts resources in steps of 0.0001",
                {"expected": "0 or at least 0.0001"},
            )
        if info.field_name == "gpu" and value > 1 and not float(value).is_integer():
            lo = int(value)
            raise PydanticCustomError(
                "ray_resource",
                "a GPU share above 1 must be a whole number of GPUs (Ray refuses it when "
                "it schedules the trials); a fraction <= 1 packs trials on one GPU",
                {"expected": f"a fraction <= 1 or a whole number, e.g. {lo} or {lo + 1}"},
            )
        return value


class WandbSpec(Strict):
    mode: Literal["auto", "online", "offline", "disabled"] = (
        "auto"  # auto: online with a key, else offline
    )
    project: str = "effray"
    entity: str | None = None
    dir: str | None = None  # None: under the experiment directory
    tags: list[str] = []


class RunSpec(Strict):
    storage: str | None = None  # results root; None: ./runs (or --storage)
    max_failures: Annotated[int, Field(ge=0, le=100)] = 2  # retries of a trial whose worker died
    # newest checkpoints kept per trial (at least 4 under PBT, which copies a donor's newest)
    checkpoint_keep: Annotated[int, Field(ge=1, le=1000)] = 2


class TrialMeta(Strict):
    """Set by expansion: which trial of the experiment this is."""

    name: str  # e.g. "blurpool+mixup-seed1"
    group: str  # technique set, e.g. "blurpool+mixup" or "baseline"
    index: int = 0
    params: dict[str, Any] = {}  # the search choices fixed for this trial
    id: str | None = None  # stable id, given when the trial first starts (W&B run id)
    stage: str | None = None  # the greedy search's stage (search.stages), e.g. "2-regularisers"
    track: list[str] = []  # dotted paths each epoch's metrics carry as hp/<path> (pbt)


def new_trial_id() -> str:
    """A fresh id for a trial run: 8 lowercase hex chars, as W&B run ids look."""
    import secrets

    return secrets.token_hex(4)


AblationMode = Literal["none", "one_at_a_time", "leave_one_out", "all_subsets"]


class ExperimentSpec(Strict):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.+-]+$")] = (
        "experiment"
    )
    description: str = ""
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    techniques: list[SerializeAsAny[Technique]] = []
    ablation: AblationMode | list[list[str]] = "none"
    search: SearchSpec | None = None
    resources: ResourcesSpec = ResourcesSpec()
    wandb: WandbSpec = WandbSpec()
    run: RunSpec = RunSpec()
    reference: dict[str, float] = {}  # published val accuracy (%) per trial group, for reports
    trial: TrialMeta | None = None  # set by expansion; not written by users

    @field_validator("techniques", mode="before")
    @classmethod
    def _build_techniques(cls, value):
        if not isinstance(value, list):
            return value  # pydantic reports the type error
        built, errors = [], []
        for i, item in enumerate(value):
            if isinstance(item, Technique):
                built.append(item)
                continue
            if not isinstance(item, dict):
                errors.append(f"{i}: expected a mapping with 'kind', got {item!r}")
                continue
            found = resolve_kind(item.get("kind"), f"techniques.{i}.kind")
            if isinstance(found, Problem):
                errors.append(f"{i}.kind: {without_path(found)}")
                continue
            try:
                built.append(found.model_validate(item))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in (i, *err["loc"]))
                    errors.append(f"{loc}: {error_message(err, found)}")
        if errors:
            raise PydanticCustomError("techniques", "{errors}", {"errors": "\n".join(errors)})
        return built

    @model_validator(mode="after")
    def _techniques_compose(self):
        errors = []
        kinds = [t.kind for t in self.techniques]
        for k in sorted({k for k in kinds if kinds.count(k) > 1}):
            errors.append(f"{k!r} is listed {kinds.count(k)} times; list each technique once")
        staged = set()  # a greedy search's alternatives are checked per path instead
        for stage in self.search.stages if self.search else []:
            for alt in stage.alternatives:
                staged.update(alt.add)
        for resource, what in (("step", "optimizer step"), ("lr", "learning rate")):
            owners = [
                t.kind for t in self.techniques if resource in type(t).owns and t.name not in staged
            ]
            if len(owners) > 1:
                errors.append(f"{' and '.join(owners)} both own the {what}; keep one of them")
        if errors:
            raise PydanticCustomError("techniques_conflict", "{e}", {"e": "\n".join(errors)})
        return self


def json_schema() -> dict:
    """The spec's JSON schema, with every registered technique's fields."""
    schema = ExperimentSpec.model_json_schema()
    variants = [cls.model_json_schema() for cls in TECHNIQUES.values()]
    schema.setdefault("properties", {})["techniques"] = {
        "type": "array",
        "items": {"anyOf": variants},
        "description": "techniques; the kind names the class, its fields are its arguments",
    }
    return schema
