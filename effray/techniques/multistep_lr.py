"""Step decay of the learning rate at fixed epochs.

The schedule of the Stanford Cars thesis (seed 004, sections 4.1, 4.2.10): MultiStepLR,
multiplying the LR by `gamma` at each milestone epoch; its best GhostNet used
milestones [67, 82, 95, 107] and gamma 0.1. The milestones follow the step-decay
practice of He et al., "Deep Residual Learning for Image Recognition", CVPR 2016,
arXiv:1512.03385.

`torch.optim.lr_scheduler.MultiStepLR`, stepped once at the end of every epoch: the
LR of epoch m+1 (1-based) is train.lr * gamma^(number of milestones <= m).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import ScheduledLR, TrainState

lr_scheduler = lazy("torch.optim.lr_scheduler")


@register
class MultiStepLR(ScheduledLR):
    """Multiply the LR by `gamma` after each milestone epoch."""

    kind: Literal["multistep_lr"] = "multistep_lr"
    milestones: list[Annotated[int, Field(ge=1)]] = [67, 82, 95, 107]  # epochs (the thesis's best)
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1  # LR factor at each milestone

    paper: ClassVar[str] = "thesis 004 sections 4.1, 4.2.10 (MultiStepLR); He et al. 2016"

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing epochs, got {value}")
        return value

    spec_keys: ClassVar[tuple[str, ...]] = ("milestones",)  # a Counter: not weights_only-safe

    def make_scheduler(self, state: TrainState) -> lr_scheduler.MultiStepLR:
        return lr_scheduler.MultiStepLR(state.optimizer, self.milestones, self.gamma)

    def on_optimizer(self, state: TrainState) -> None:
        super().on_optimizer(state)
        late = [m for m in self.milestones if m >= state.epochs]
        if len(late) == len(self.milestones):
            self.no_effect(
                state, f"every milestone {self.milestones} is >= epochs {state.epochs}; LR constant"
            )

    def on_epoch_end(self, state: TrainState) -> None:
        self._scheduler.step()
