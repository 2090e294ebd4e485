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

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, field_validator
from torch.optim.lr_scheduler import MultiStepLR as TorchMultiStepLR

from effray.techniques import register
from effray.techniques.base import Technique, TrainState


@register
class MultiStepLR(Technique):
    """Multiply the LR by `gamma` after each milestone epoch."""

    kind: Literal["multistep_lr"] = "multistep_lr"
    milestones: list[Annotated[int, Field(ge=1)]] = [67, 82, 95, 107]  # epochs (the thesis's best)
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.1  # LR factor at each milestone

    owns: ClassVar[tuple[str, ...]] = ("lr",)
    paper: ClassVar[str] = "thesis 004 sections 4.1, 4.2.10 (MultiStepLR); He et al. 2016"

    _scheduler: TorchMultiStepLR | None = PrivateAttr(None)
    _pending: dict[str, Any] | None = PrivateAttr(None)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[int]) -> list[int]:
        if any(b <= a for a, b in zip(value, value[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing epochs, got {value}")
        return value

    def on_optimizer(self, state: TrainState) -> None:
        self._scheduler = TorchMultiStepLR(state.optimizer, self.milestones, self.gamma)
        if self._pending is not None:
            self.load_state_dict(self._pending)
            self._pending = None
        late = [m for m in self.milestones if m >= state.epochs]
        if len(late) == len(self.milestones):
            self.no_effect(
                state, f"every milestone {self.milestones} is >= epochs {state.epochs}; LR constant"
            )

    def on_epoch_end(self, state: TrainState) -> None:
        self._scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        if self._scheduler is None:
            return dict(self._pending or {})
        # milestones are a Counter (not loadable with weights_only) and come from the spec
        return {k: v for k, v in self._scheduler.state_dict().items() if k != "milestones"}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self._scheduler is None:
            self._pending = dict(state)
        else:
            self._scheduler.load_state_dict({**self._scheduler.state_dict(), **state})
