"""Exponential decay of the learning rate, once per epoch.

`torch.optim.lr_scheduler.ExponentialLR`: the LR of epoch e (0-based) is
train.lr * gamma^e, stepped in `on_epoch_end`. The Stanford Cars thesis (seed 004,
section 3.3) configures "a valid lr_scheduler from 'torch.optim'"; this is the
simplest of them, kept beside multistep_lr and reduce_lr_on_plateau for its runs.
There is no single paper behind it; it is the classic annealing schedule.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import ScheduledLR, TrainState

lr_scheduler = lazy("torch.optim.lr_scheduler")


@register
class ExponentialLR(ScheduledLR):
    """Multiply the LR by `gamma` after every epoch."""

    kind: Literal["exponential_lr"] = "exponential_lr"
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.95  # LR factor per epoch (halves in ~14)

    paper: ClassVar[str] = "torch ExponentialLR; thesis 004 section 3.3 (torch.optim schedulers)"

    def make_scheduler(self, state: TrainState) -> lr_scheduler.ExponentialLR:
        return lr_scheduler.ExponentialLR(state.optimizer, self.gamma)

    def on_epoch_end(self, state: TrainState) -> None:
        self._scheduler.step()
