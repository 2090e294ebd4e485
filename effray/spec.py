"""The experiment spec: pydantic models, `load_spec`, and expansion into trials.

    $ effray validate experiments/quickstart.yaml --set train.lr=0.1

A spec is validated completely before anything starts; every problem becomes one
line `field.path: message (value …; allowed …; did you mean …)`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
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

from effray.errors import Problem, SpecError, did_you_mean, one_of, problem
from effray.techniques import TECHNIQUES, Technique, resolve_kind

DATASETS = ("fashion_mnist", "mnist", "cifar10", "stanford_cars", "image_folder", "synthetic")
SYNTHETIC_ONLY = ("num_classes", "channels", "size", "train_size", "val_size")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataSpec(Strict):
    name: Literal[
        "fashion_mnist", "mnist", "cifar10", "stanford_cars", "image_folder", "synthetic"
    ] = "fashion_mnist"
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
                    "hint": _hint(did_you_mean(self.name, MODELS)),
                },
            )
        entry = MODELS[self.name]
        try:
            checked = entry.args.model_validate(self.args)
        except ValidationError as exc:
            raise PydanticCustomError(
                "model_args", "{detail}", {"detail": _inline_errors(exc, entry.args)}
            ) from None
        for key, value in checked.model_dump().items():
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
        None  # torch CPU threads; None = torch's default
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


class AshaSpec(Strict):
    metric: str = "val/acc"  # reported metric ASHA compares
    mode: Literal["max", "min"] = "max"
    grace_period: Annotated[int, Field(ge=1)] = 1  # epochs before ASHA may stop a trial
    reduction_factor: Annotated[float, Field(gt=1)] = 3  # keep 1/rf of trials at each rung


class SearchSpec(Strict):
    space: dict[
        str, dict[str, Any]
    ] = {}  # dotted spec path -> {grid|choice|uniform|loguniform|randint: …}
    num_samples: Annotated[int, Field(ge=1, le=10_000)] = 1  # random draws per grid point
    seed: Annotated[int, Field(ge=0)] = 0  # seed of the random draws (expansion is deterministic)
    asha: AshaSpec | None = AshaSpec()  # null: every trial runs all epochs
    max_concurrent: Annotated[int, Field(ge=1)] | None = (
        None  # trials at once; None = as resources allow
    )


class ResourcesSpec(Strict):
    cpu: Annotated[float, Field(gt=0, le=1024)] = 1  # CPUs reserved per trial
    gpu: Annotated[float, Field(ge=0, le=64)] = 0  # GPUs per trial; 0.25 packs four trials on a GPU


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
    checkpoint_keep: Annotated[int, Field(ge=1, le=1000)] = 2  # newest checkpoints kept per trial


class TrialMeta(Strict):
    """Set by expansion: which trial of the experiment this is."""

    name: str  # e.g. "blurpool+mixup-seed1"
    group: str  # technique set, e.g. "blurpool+mixup" or "baseline"
    index: int = 0
    params: dict[str, Any] = {}  # the search choices fixed for this trial
    id: str | None = None  # stable id, given when the trial first starts (W&B run id)


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
                errors.append(f"{i}.kind: {_strip_path(found)}")
                continue
            try:
                built.append(found.model_validate(item))
            except ValidationError as exc:
                for err in exc.errors():
                    loc = ".".join(str(p) for p in (i, *err["loc"]))
                    errors.append(f"{loc}: {_message(err, found)}")
        if errors:
            raise PydanticCustomError("techniques", "{errors}", {"errors": "\n".join(errors)})
        return built

    @model_validator(mode="after")
    def _techniques_compose(self):
        errors = []
        kinds = [t.kind for t in self.techniques]
        for k in sorted({k for k in kinds if kinds.count(k) > 1}):
            errors.append(f"{k!r} is listed {kinds.count(k)} times; list each technique once")
        for resource, what in (("step", "optimizer step"), ("lr", "learning rate")):
            owners = [t.kind for t in self.techniques if resource in type(t).owns]
            if len(owners) > 1:
                errors.append(f"{' and '.join(owners)} both own the {what}; keep one of them")
        if errors:
            raise PydanticCustomError("techniques_conflict", "{e}", {"e": "\n".join(errors)})
        return self


def _hint(s: str | None) -> str:
    return f"; did you mean {s!r}?" if s else ""


def _strip_path(p: Problem) -> str:
    return str(Problem("", p.message, p.value, p.allowed, p.suggestion, p.has_value))


# ---------------------------------------------------------------------------------
# Error rendering
# ---------------------------------------------------------------------------------


def _allowed_from(err: dict) -> str | None:
    ctx = err.get("ctx") or {}
    if "expected" in ctx:
        return str(ctx["expected"])
    for key, sym in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if key in ctx:
            bound = ctx[key]
            if isinstance(bound, float) and bound.is_integer():
                bound = int(bound)
            return f"{sym} {bound}"
    if "pattern" in ctx:
        return f"matching {ctx['pattern']}"
    if "min_length" in ctx:
        return f"length >= {ctx['min_length']}"
    return None


def _message(err: dict, model_cls: type[BaseModel] | None = None) -> str:
    """One error as 'message (value …; allowed …; did you mean …)' without its path."""
    kind = err["type"]
    if kind == "extra_forbidden":
        field = str(err["loc"][-1])
        valid = list(_fields_at(model_cls, err["loc"][:-1])) if model_cls else []
        parts = ["unknown key", f"allowed {one_of(valid)}" if valid else ""]
        hint = did_you_mean(field, valid)
        if hint:
            parts.append(f"did you mean {hint!r}?")
        return f"{parts[0]} {field!r} ({'; '.join(p for p in parts[1:] if p)})"
    msg = err["msg"]
    if kind.startswith(("value_error", "assertion_error")):
        msg = msg.split(", ", 1)[-1] if msg.startswith(("Value error", "Assertion")) else msg
    extras = []
    if "input" in err and kind not in ("missing",) and not isinstance(err["input"], dict):
        extras.append(f"value {err['input']!r}")
    allowed = _allowed_from(err)
    if allowed:
        extras.append(f"allowed {allowed}")
    return msg + (f" ({'; '.join(extras)})" if extras else "")


def user_fields(cls: type[BaseModel]) -> list[str]:
    """Field names a user may write (`trial` is filled in by expansion)."""
    return [f for f in cls.model_fields if f != "trial"]


def _fields_at(model_cls: type[BaseModel] | None, loc) -> list[str]:
    """Field names of the (nested) model at `loc`, for did-you-mean on unknown keys."""
    cls = model_cls
    for part in loc:
        if cls is None or isinstance(part, int):
            continue
        info = cls.model_fields.get(part)
        if info is None:
            return []
        cls = _model_in(info.annotation)
    return user_fields(cls) if cls else []


def _model_in(annotation) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found:
            return found
    return None


def _inline_errors(exc: ValidationError, model_cls) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {_message(e, model_cls)}" for e in exc.errors()
    )


def problems_from(exc: ValidationError) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        path = ".".join(loc)
        if err["type"] in ("techniques", "techniques_conflict"):
            key = "errors" if err["type"] == "techniques" else "e"
            for line in str(err["ctx"][key]).split("\n"):
                if err["type"] == "techniques":
                    sub, _, msg = line.partition(": ")
                    out.append(Problem(f"techniques.{sub}", msg))
                else:
                    out.append(Problem("techniques", line))
            continue
        if err["type"] == "model_args":
            for piece in _split_inline(str(err["ctx"]["detail"])):
                sub, _, msg = piece.partition(": ")
                out.append(Problem(f"model.{sub}", msg))
            continue
        if err["type"] == "unknown_model":
            ctx = err["ctx"]
            out.append(
                problem(
                    "model.name",
                    "unknown model",
                    value=ctx["value"],
                    allowed=ctx["allowed"],
                    suggestion=did_you_mean(ctx["value"], _model_names()),
                )
            )
            continue
        out.append(Problem(path, _message(err, ExperimentSpec)))
    return out


def _split_inline(detail: str) -> list[str]:
    # model-arg errors are joined with "; " between fields; a field's own message may
    # contain "; " inside parentheses, so split only at top level.
    parts, depth, cur = [], 0, ""
    for ch in detail:
        depth += ch == "("
        depth -= ch == ")"
        if ch == ";" and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur.strip())
    return parts


def _model_names() -> list[str]:
    from effray.models import MODELS

    return list(MODELS)


# ---------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------


def _read_yaml(path: Path) -> dict:
    if not path.exists():
        raise SpecError([problem("", f"spec file not found: {path}")], source=str(path))
    if path.is_dir():
        raise SpecError([problem("", f"spec path is a directory, not a YAML file: {path}")])
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(
            [problem("", f"malformed YAML{where}: {what}; fix the syntax")], source=str(path)
        ) from None
    except UnicodeDecodeError:
        raise SpecError([problem("", "file is not UTF-8 text")], source=str(path)) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise SpecError(
            [
                problem(
                    "",
                    "a spec must be a YAML mapping of sections (name, data, model, train, …)",
                    value=type(raw).__name__,
                )
            ],
            source=str(path),
        )
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    """'train.lr=0.1' -> ('train.lr', 0.1); the value is read as YAML."""
    if "=" not in text:
        raise SpecError([problem("--set", "expected PATH=VALUE, e.g. train.lr=0.1", value=text)])
    key, _, value = text.partition("=")
    key = key.strip()
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    return key, parsed


def apply_override(raw: dict, key: str, value: Any) -> None:
    """Set a dotted path in a raw spec dict; `techniques.<kind>.<field>` edits that technique."""
    parts = key.split(".")
    if parts[0] == "techniques" and len(parts) == 3 and not parts[1].isdigit():
        for item in raw.get("techniques") or []:
            if isinstance(item, dict) and item.get("kind") == parts[1]:
                item[parts[2]] = value
                return
        raise SpecError(
            [
                problem(
                    key,
                    f"no technique of kind {parts[1]!r} in this spec",
                    allowed=one_of(
                        t.get("kind", "?")
                        for t in raw.get("techniques") or []
                        if isinstance(t, dict)
                    ),
                )
            ]
        )
    node = raw
    for part in parts[:-1]:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
            continue
        if not isinstance(node, dict):
            raise SpecError([problem(key, f"cannot set inside {part!r}: not a mapping")])
        node = node.setdefault(part, {})
        if node is None:
            node = {}
    last = parts[-1]
    if isinstance(node, list) and last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value


def load_spec(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentSpec:
    """Read, override and validate a spec file; raise SpecError listing every problem."""
    path = Path(path).expanduser()
    raw = _read_yaml(path)
    for text in overrides or []:
        key, value = parse_override(text)
        _check_override_path(key)
        apply_override(raw, key, value)
    spec = spec_from_dict(raw, source=str(path))
    return spec


def spec_from_dict(raw: dict, source: str | None = None) -> ExperimentSpec:
    try:
        spec = ExperimentSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(problems_from(exc), source=source) from None
    problems = check_spec(spec)
    if problems:
        raise SpecError(problems, source=source)
    return spec


def _check_override_path(key: str) -> None:
    parts = key.split(".")
    top = parts[0]
    if top not in user_fields(ExperimentSpec):
        raise SpecError(
            [
                problem(
                    key,
                    f"{top!r} is not a spec section",
                    allowed=one_of(user_fields(ExperimentSpec)),
                    suggestion=did_you_mean(top, user_fields(ExperimentSpec)),
                )
            ]
        )


# ---------------------------------------------------------------------------------
# Checks beyond field types: cross-section rules, search paths, the data on disk
# ---------------------------------------------------------------------------------


def check_spec(spec: ExperimentSpec, *, check_data: bool = True) -> list[Problem]:
    problems: list[Problem] = []
    kinds = {t.kind: t for t in spec.techniques}
    problems += _check_ablation(spec, kinds)
    if spec.search is not None:
        problems += _check_search(spec)
    asha = _asha_metric_problem(spec)
    if asha:
        problems.append(asha)
    if check_data:
        from effray.data import check_data as _check_data

        problems += _check_data(spec.data)
        problems += _check_requirements(spec)
    return problems


def _check_requirements(spec: ExperimentSpec) -> list[Problem]:
    from effray.data import capabilities

    caps = capabilities(spec.data)
    out = []
    for i, t in enumerate(spec.techniques):
        for need in type(t).requires:
            if need not in caps:
                out.append(
                    problem(
                        f"techniques.{i}",
                        f"{t.kind} needs a dataset with {need}; {spec.data.name!r} has none",
                        allowed="datasets with " + need + ": stanford_cars",
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
        bad = _check_sampler_args(sampler, args)
        if bad:
            out.append(problem(where, bad, value=args))
            continue
        err = _check_path(spec, path)
        if err:
            out.append(
                Problem(
                    "search.space", f"{path!r} {err.message}", None, err.allowed, err.suggestion
                )
            )
            continue
        for value in _probe_values(sampler, args):
            trial = expand_one(spec, {path: value})
            if isinstance(trial, SpecError):
                for p in trial.problems:
                    out.append(problem(where, f"value {value!r} is invalid: {p}"))
                break
    return out


def _check_sampler_args(sampler: str, args) -> str | None:
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


def _probe_values(sampler: str, args) -> list:
    if sampler in ("grid", "choice"):
        return list(args)
    lo, hi = args
    return [lo, hi - 1] if sampler == "randint" else [lo, hi]


def _check_path(spec: ExperimentSpec, path: str) -> Problem | None:
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
        cls = _model_in(cls.model_fields[part].annotation)
    if cls is not None and parts[-1] not in ("model",):
        return problem(path, "names a whole section; search a field inside it")
    return None


def _asha_metric_problem(spec: ExperimentSpec) -> Problem | None:
    if spec.search is None or spec.search.asha is None:
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


# ---------------------------------------------------------------------------------
# Expansion: spec -> concrete trials (ablation x grid x samples)
# ---------------------------------------------------------------------------------


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
    """Grid points x num_samples random draws, seeded: the same spec gives the same trials."""
    import itertools

    import numpy as np

    if spec.search is None:
        return [{}]
    space = spec.search.space
    grid_keys = [k for k, d in space.items() if "grid" in d]
    rand_keys = [k for k in space if k not in grid_keys]
    rng = np.random.default_rng(spec.search.seed)
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


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def expand(spec: ExperimentSpec) -> list[ExperimentSpec]:
    """Every trial of the experiment, concrete and named (e.g. 'blurpool+mixup-seed1')."""
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
                f"{p.rsplit('.', 1)[-1]}{_fmt(v)}" for p, v in point.items() if p != "train.seed"
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


def to_yaml(spec: ExperimentSpec) -> str:
    return yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)


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
