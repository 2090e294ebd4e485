"""Exponential decay of the learning rate, once per epoch.

`torch.optim.lr_scheduler.ExponentialLR`: the LR of epoch e (0-based) is
train.lr * gamma^e, stepped in `on_epoch_end`. The Stanford Cars thesis (seed 004,
section 3.3) configures "a valid lr_scheduler from 'torch.optim'"; this is the
simplest of them, kept beside multistep_lr and reduce_lr_on_plateau for its runs.
There is no single paper behind it; it is the classic annealing schedule.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr
from torch.optim.lr_scheduler import ExponentialLR as TorchExponentialLR

from effray.techniques import register
from effray.techniques.base import Technique, TrainState


@register
class ExponentialLR(Technique):
    """Multiply the LR by `gamma` after every epoch."""

    kind: Literal["exponential_lr"] = "exponential_lr"
    gamma: Annotated[float, Field(gt=0, lt=1)] = 0.95  # LR factor per epoch (halves in ~14)

    owns: ClassVar[tuple[str, ...]] = ("lr",)
    paper: ClassVar[str] = "torch ExponentialLR; thesis 004 section 3.3 (torch.optim schedulers)"

    _scheduler: TorchExponentialLR | None = PrivateAttr(None)
    _pending: dict[str, Any] | None = PrivateAttr(None)

    def on_optimizer(self, state: TrainState) -> None:
        self._scheduler = TorchExponentialLR(state.optimizer, self.gamma)
        if self._pending is not None:
            self._scheduler.load_state_dict(self._pending)
            self._pending = None

    def on_epoch_end(self, state: TrainState) -> None:
        self._scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        if self._scheduler is None:
            return dict(self._pending or {})
        return self._scheduler.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self._scheduler is None:
            self._pending = dict(state)
        else:
            self._scheduler.load_state_dict(state)
