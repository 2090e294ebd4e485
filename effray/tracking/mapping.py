"""What a run shows: config (the flattened spec + the thesis's dashboard columns), the
summary's best values, and secrets kept out of both. No wandb import: plain dicts."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from effray.results import technique_set
from effray.tracking.base import Metrics

FACTS = {  # fit's model facts -> short config/summary names (thesis dashboard columns)
    "model/params": "params",
    "model/size_kb": "size_kb",
    "model/flops": "flops",
    "model/latency_s": "latency_s",
}
BEST = {  # summary key -> (metric, max|min)
    "best/val_acc": ("val/acc", max),
    "best/val_loss": ("val/loss", min),
    "best/train_acc": ("train/acc", max),
    "best/train_loss": ("train/loss", min),
}
SECRET_NAME = re.compile(r"key|token|secret|passw|credential", re.IGNORECASE)
SECRET_VALUE = re.compile(r"\b[0-9a-f]{40}\b|\b(?:local|v1)-[0-9A-Za-z_-]{30,}")  # W&B key shapes
REDACTED = "[redacted]"


def run_config(spec: Any, facts: Metrics = ()) -> dict[str, Any]:
    """The flattened trial spec (dotted keys) plus the dashboard columns, secrets removed."""
    raw = spec.model_dump(mode="json", exclude={"techniques"})
    config = dict(flatten(raw))
    for t in spec.techniques:
        for key, value in t.model_dump(mode="json", exclude={"kind"}).items():
            config[f"techniques.{t.name}.{key}"] = value
    config.update(derived_facts(spec))
    config.update(short_facts(facts))
    return scrub(config)


def derived_facts(spec: Any) -> dict[str, Any]:
    """The thesis dashboard's columns, as top-level config keys."""
    from effray.data import image_side
    from effray.models import MODELS
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
        "image_size": image_side(spec.data),
        "batch_size": t.batch_size,
        "epochs": t.epochs,
        "optimizer": t.optimizer,
        "lr": t.lr,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "scheduler": "+".join(schedulers) or "constant",
        "loss": f"cross_entropy(label_smoothing={smoothing})" if smoothing else "cross_entropy",
        "seed": t.seed,
        "techniques": technique_set([x.name for x in spec.techniques]),
        **{f"technique/{kind}": kind in kinds for kind in sorted(TECHNIQUES)},
    }
    # the model's knobs with their defaults
    args = MODELS[spec.model.name].args.model_validate(spec.model.args).model_dump()
    dropout = getattr(kinds.get("dropout"), "p", args.get("dropout"))
    if dropout is not None:
        facts["dropout"] = dropout
    if "out_channels" in args:
        facts["last_layer_size"] = args["out_channels"]
    return facts


def short_facts(facts: Metrics) -> dict[str, float]:
    return {short: float(facts[long]) for long, short in FACTS.items() if long in facts}


def flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested dicts as (dotted key, leaf) pairs."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def remember(state: dict[str, Any], metrics: Metrics, step: int) -> None:
    """Fold one epoch into a run's persisted state: best values, last step and metrics."""
    for key, (metric, better) in BEST.items():
        if is_number(metrics.get(metric)):
            old, value = state["best"].get(key), float(metrics[metric])
            if old is None or better(old, value) != old:
                state["best"][key] = value
                if key == "best/val_acc":
                    state["best"]["best/epoch"] = step  # first epoch reaching the best
    if step >= int(state.get("last_step", 0)):  # not an epoch re-run after a restore
        state["last_step"] = step
        state["last"] = {k: v for k, v in metrics.items() if is_number(v)}


def run_summary(state: dict[str, Any], facts: Metrics) -> dict[str, Any]:
    """The run's summary: best values, epochs run, model facts."""
    return {
        **state["best"],
        "epochs_run": int(state.get("last", {}).get("epoch", state["last_step"])),
        **facts,
    }


def scrub(config: dict[str, Any]) -> dict[str, Any]:
    """Drop values under secret-looking names; redact values that look like API keys."""
    return {
        key: REDACTED if SECRET_NAME.search(key.rsplit(".", 1)[-1]) else scrub_value(value)
        for key, value in config.items()
    }


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _known_secrets():
            value = value.replace(secret, REDACTED)
        return SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    if isinstance(value, dict):
        return scrub(value)
    return value


def _known_secrets() -> list[str]:
    key = os.environ.get("WANDB_API_KEY", "").strip()
    return [key] if len(key) >= 8 else []


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def short_error(exc: BaseException) -> str:
    """An exception as one scrubbed line of at most ~200 characters."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub_value(text if len(text) <= 200 else text[:200] + "…")
