"""Reduce the learning rate when a validation metric stops improving.

`torch.optim.lr_scheduler.ReduceLROnPlateau`, as configured in the Stanford Cars
thesis (seed 004, sections 3.3, 4.2.9): factor 0.1, patience 5 epochs, relative threshold
1e-3, min LR 1e-7, on the validation loss. The schedule itself goes back to the
step-on-plateau practice of Krizhevsky et al., "ImageNet Classification with Deep
Convolutional Neural Networks", NeurIPS 2012.

Stepped once per epoch in `on_epoch_end` with this epoch's metric.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import ScheduledLR, TrainState

lr_scheduler = lazy("torch.optim.lr_scheduler")

Metric = Literal["val/loss", "val/acc", "train/loss", "train/acc"]


def check_mode(metric: str, mode: str) -> None:
    """Refuse a direction that would treat getting worse as improving."""
    wanted = "max" if metric.endswith("/acc") else "min"
    if mode != wanted:
        raise ValueError(
            f"mode {mode!r} with metric {metric!r} treats getting worse as improving; "
            f"use mode: {wanted}"
        )


@register
class ReduceLROnPlateau(ScheduledLR):
    """Multiply the LR by `factor` after `patience` epochs without improvement."""

    kind: Literal["reduce_lr_on_plateau"] = "reduce_lr_on_plateau"
    metric: Metric = "val/loss"  # watched once per epoch
    mode: Literal["min", "max"] = "min"  # min for losses, max for accuracies
    factor: Annotated[float, Field(gt=0, lt=1)] = 0.1  # LR multiplier on a plateau
    patience: Annotated[int, Field(ge=0)] = 5  # epochs without improvement before reducing
    threshold: Annotated[float, Field(ge=0)] = 1e-3  # relative change that counts as better
    cooldown: Annotated[int, Field(ge=0)] = 0  # epochs to wait after a reduction
    min_lr: Annotated[float, Field(ge=0)] = 1e-7  # LR floor

    paper: ClassVar[str] = "thesis 004 section 3.3 (ReduceLROnPlateau); Krizhevsky et al. 2012"

    @model_validator(mode="after")
    def _mode_matches_metric(self):
        check_mode(self.metric, self.mode)
        return self

    def make_scheduler(self, state: TrainState) -> lr_scheduler.ReduceLROnPlateau:
        return lr_scheduler.ReduceLROnPlateau(
            state.optimizer,
            mode=self.mode,
            factor=self.factor,
            patience=self.patience,
            threshold=self.threshold,
            cooldown=self.cooldown,
            min_lr=self.min_lr,
        )

    def on_epoch_end(self, state: TrainState) -> None:
        self._scheduler.step(state.metrics[self.metric])
