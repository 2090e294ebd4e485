"""One-cycle learning-rate policy, stepped after every batch.

Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
Learning Rates", arXiv:1708.07120 (2017); Smith, "A disciplined approach to neural
network hyper-parameters: Part 1", arXiv:1803.09820 (2018). Ethiraj & Bolla (seed
001, "Training Efficient CNNs") raises the LR from a minimum to a maximum and then
lowers it below the starting value, changing it "after every batch" (section III).

This is `torch.optim.lr_scheduler.OneCycleLR` with torch's defaults: warm-up over
the first 30% of the steps (`pct_start`), cosine annealing, start at
max_lr / 25, end at max_lr / 25 / 1e4, and momentum (SGD) or beta1 (Adam) cycled
inversely between `base_momentum` 0.85 and `max_momentum` 0.95. total_steps = epochs *
steps_per_epoch; the scheduler is stepped after each optimizer step except the last, so
every step's LR is on the schedule. Its state is checkpointed, so resuming mid-cycle is
exact.

While `cycle_momentum` is true the schedule owns the momentum: `train.momentum` is
replaced from the first step. With `train.momentum: 0` that turns momentum on, so it
warns (NoEffectWarning: the 0 has no effect); `cycle_momentum: false` keeps it at 0.
"""

from __future__ import annotations

import warnings
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import NoEffectWarning, ScheduledLR, TrainState

lr_scheduler = lazy("torch.optim.lr_scheduler")

Momentum = Annotated[float, Field(ge=0, lt=1)]


@register
class OneCycle(ScheduledLR):
    """Warm the LR up to `max_lr`, then anneal it far below the start, every batch."""

    kind: Literal["one_cycle"] = "one_cycle"
    max_lr: Annotated[float, Field(gt=0, le=100)] | None = None  # peak LR; None = train.lr
    pct_start: Annotated[float, Field(gt=0, lt=1)] = 0.3  # fraction of steps spent warming up
    div_factor: Annotated[float, Field(ge=1)] = 25.0  # start LR = max_lr / div_factor
    final_div_factor: Annotated[float, Field(ge=1)] = 1e4  # end LR = start LR / final_div_factor
    anneal_strategy: Literal["cos", "linear"] = "cos"
    cycle_momentum: bool = True  # cycle momentum/beta1 inversely to the LR (Smith 2018)
    base_momentum: Momentum = 0.85  # momentum/beta1 at the peak LR (torch's default)
    max_momentum: Momentum = 0.95  # momentum/beta1 at the start and end (torch's default)

    paper: ClassVar[str] = "Smith 2018, arXiv:1803.09820"

    def make_scheduler(self, state: TrainState) -> lr_scheduler.OneCycleLR:
        max_lr = self.max_lr if self.max_lr is not None else state.spec.train.lr
        cycled = (self.base_momentum, self.max_momentum) != (0.0, 0.0)
        if self.cycle_momentum and cycled and state.spec.train.momentum == 0:
            warnings.warn(
                f"{self.name}: train.momentum 0 has no effect: cycle_momentum is true, so "
                f"momentum cycles between base_momentum {self.base_momentum} and "
                f"max_momentum {self.max_momentum}; set cycle_momentum: false to keep it at 0",
                NoEffectWarning,
                stacklevel=2,
            )
        return lr_scheduler.OneCycleLR(
            state.optimizer,
            max_lr=max_lr,
            total_steps=max(2, state.epochs * state.steps_per_epoch),
            pct_start=self.pct_start,
            anneal_strategy=self.anneal_strategy,
            div_factor=self.div_factor,
            final_div_factor=self.final_div_factor,
            cycle_momentum=self.cycle_momentum,
            base_momentum=self.base_momentum,
            max_momentum=self.max_momentum,
        )

    def after_step(self, state: TrainState) -> None:
        if self._scheduler.last_epoch < self._scheduler.total_steps - 1:
            self._scheduler.step()
