"""Hyperparameters changed between a checkpoint and the run that continues it (PBT).

A PBT exploit continues from the donor's checkpoint with mutated values: the optimizer
state loaded from the checkpoint still holds the donor's learning rate, weight decay
and momentum. `retarget` moves them to the new spec's values. The learning rate is
scaled by new/old everywhere a schedule keeps it (each group's lr, initial_lr, max_lr,
min_lr, and the schedulers' base_lrs), so whatever owns the learning rate (constant,
one_cycle, step, cosine, plateau) continues its own schedule at the new peak.
"""

from __future__ import annotations

from typing import Any

LR_KEYS = ("lr", "initial_lr", "max_lr", "min_lr")


def _schedulers(techniques: list[Any]) -> list[Any]:
    out = []
    for tech in techniques:
        private = getattr(tech, "__pydantic_private__", None) or {}
        for value in [*vars(tech).values(), *private.values()]:
            if hasattr(value, "base_lrs") or hasattr(value, "min_lrs"):
                out.append(value)
    return out


def retarget(optimizer, techniques: list[Any], old, new) -> None:
    """Move the optimizer (and the techniques' LR schedulers) from TrainSpec `old`'s
    lr / weight decay / momentum to `new`'s; nothing changes when they are equal."""
    if new.lr != old.lr:
        ratio = new.lr / old.lr
        for group in optimizer.param_groups:
            for key in LR_KEYS:
                if isinstance(group.get(key), (int, float)):
                    group[key] *= ratio
        for sched in _schedulers(techniques):
            for attr in ("base_lrs", "min_lrs", "max_lrs"):
                values = getattr(sched, attr, None)
                if isinstance(values, list):
                    setattr(sched, attr, [v * ratio for v in values])
    if new.weight_decay != old.weight_decay:
        for group in optimizer.param_groups:
            if group.get("weight_decay") == old.weight_decay:  # not the no-decay groups
                group["weight_decay"] = new.weight_decay
    if new.momentum != old.momentum:
        for group in optimizer.param_groups:
            if "betas" in group:
                group["betas"] = (new.momentum, group["betas"][1])
            elif "momentum" in group:
                group["momentum"] = new.momentum
