"""What a run shows: its config (the flattened spec plus the dashboard columns) and why
the trial stopped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from effray.tracking.base import Metrics
from effray.tracking.redact import scrub

FACTS = {  # fit's model facts -> short config/summary names (thesis dashboard columns)
    "model/params": "params",
    "model/size_kb": "size_kb",
    "model/flops": "flops",
    "model/latency_s": "latency_s",
}
NATIVE_SIZE = {"fashion_mnist": 28, "mnist": 28, "cifar10": 32}  # pixels per side


def run_config(spec: Any, facts: Metrics = ()) -> dict[str, Any]:
    """The flattened trial spec (dotted keys) plus the dashboard columns, secrets removed."""
    raw = spec.model_dump(mode="json", exclude={"techniques"})
    config = dict(_flatten(raw))
    for t in spec.techniques:
        for key, value in t.model_dump(mode="json", exclude={"kind"}).items():
            config[f"techniques.{t.name}.{key}"] = value
    config.update(derived_facts(spec))
    config.update(_short_facts(facts))
    return scrub(config)


def derived_facts(spec: Any) -> dict[str, Any]:
    """The thesis dashboard's columns, as top-level config keys."""
    from effray.techniques import TECHNIQUES

    t, kinds = spec.train, {x.kind: x for x in spec.techniques}
    schedulers = [x.name for x in spec.techniques if "lr" in type(x).owns]
    smoothing = getattr(kinds.get("label_smoothing"), "alpha", 0.0)
    facts: dict[str, Any] = {
        "experiment": spec.name,
        "trial": spec.trial.name if spec.trial else spec.name,
        "trial_group": spec.trial.group if spec.trial else "baseline",
        "architecture": spec.model.name,
        "dataset": spec.data.name,
        "image_size": _image_size(spec.data),
        "batch_size": t.batch_size,
        "epochs": t.epochs,
        "optimizer": t.optimizer,
        "lr": t.lr,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "scheduler": "+".join(schedulers) or "constant",
        "loss": f"cross_entropy(label_smoothing={smoothing})" if smoothing else "cross_entropy",
        "seed": t.seed,
        "techniques": "+".join(x.name for x in spec.techniques) or "baseline",
        **{f"technique/{kind}": kind in kinds for kind in sorted(TECHNIQUES)},
    }
    from effray.models import MODELS  # the model's knobs with their defaults

    args = MODELS[spec.model.name].args.model_validate(spec.model.args).model_dump()
    dropout = getattr(kinds.get("dropout"), "p", args.get("dropout"))
    if dropout is not None:
        facts["dropout"] = dropout
    if "out_channels" in args:
        facts["last_layer_size"] = args["out_channels"]
    return facts


def _image_size(data: Any) -> int | str:
    if data.image_size:
        return data.image_size
    if data.name == "synthetic":
        return data.size
    if data.name in NATIVE_SIZE:
        return NATIVE_SIZE[data.name]
    from effray.data import DEFAULT_IMAGE_SIZE

    return DEFAULT_IMAGE_SIZE.get(data.name, "native")


def _short_facts(facts: Metrics) -> dict[str, float]:
    return {short: float(facts[long]) for long, short in FACTS.items() if long in facts}


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def stop_reason_for(
    spec: Any, last: Metrics | None, error: object = None, by_scheduler: bool | None = None
) -> str:
    """Why a trial ended: an error, all epochs run, ASHA (`by_scheduler`, when the caller
    knows) or early stopping (else told apart by its patience), otherwise ASHA."""
    if spec is None:  # a trial whose spec could not be read is not tracked anyway
        return "error"
    if error is not None:
        text = f"{type(error).__name__}: {error}"
        return "diverged" if "TrialDiverged" in text or "diverged at epoch" in text else "error"
    epoch = int(last.get("epoch", 0)) if last else 0
    if epoch >= spec.train.epochs:
        return "finished"
    if by_scheduler is not None:
        return "asha" if by_scheduler else "early_stopping"
    stopper = next((t for t in spec.techniques if t.kind == "early_stopping"), None)
    best = (last or {}).get("early_stopping/best_epoch")
    if stopper is not None and best is not None and epoch - int(best) >= stopper.patience:
        return "early_stopping"
    return "asha"
