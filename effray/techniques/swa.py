"""Stochastic Weight Averaging.

Izmailov et al., "Averaging Weights Leads to Wider Optima and Better
Generalization", UAI 2018, arXiv:1803.05407. Ethiraj & Bolla (seed 001, "Training
Efficient CNNs") starts averaging "after 75% of the training time, after which the
weights are averaged after every training epoch" (section III.E).

The running average is a `torch.optim.swa_utils.AveragedModel` of the parameters.
At the end of each epoch n (1-based) with n >= start * epochs it takes one more
snapshot (so with 20 epochs and start 0.75 it averages epochs 15..20, as Composer's
SWA does). When the fit ends -- after the last epoch or when another technique
stops it early -- the average is copied into the model and the BatchNorm statistics
are recomputed over the un-augmented train set (`swa_utils.update_bn`), so the loop
evaluates the averaged net.

SWA here is learning-rate neutral: it does not own "lr" and adds no SWALR schedule,
so it composes with one_cycle and the epoch schedulers (averaging along whatever
schedule they give). The averaged weights and the snapshot count are in
`state_dict`, so resuming in the middle of the averaging phase is exact.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

torch = lazy("torch")
nn = lazy("torch.nn")
swa_utils = lazy("torch.optim.swa_utils")


def first_averaged_epoch(start: float, epochs: int) -> int:
    """The 1-based epoch whose end takes the first snapshot."""
    return max(1, math.ceil(start * epochs - 1e-9))


def load_average(model: nn.Module, averaged: swa_utils.AveragedModel) -> None:
    """Copy the averaged parameters into `model` (buffers are left to update_bn)."""
    with torch.no_grad():
        for p, avg in zip(model.parameters(), averaged.module.parameters(), strict=True):
            p.copy_(avg)


@register
class SWA(Technique):
    """Average the weights of the last epochs; evaluate the average with fresh BN stats."""

    kind: Literal["swa"] = "swa"
    start: Annotated[float, Field(ge=0, lt=1)] = 0.75  # fraction of epochs before averaging

    paper: ClassVar[str] = "Izmailov et al. 2018, arXiv:1803.05407"

    _avg: Any = PrivateAttr(None)  # a torch.optim.swa_utils.AveragedModel

    def on_optimizer(self, state: TrainState) -> None:
        self._avg = swa_utils.AveragedModel(
            state.model
        )  # a copy; its weights count once n_averaged > 0

    @property
    def n_averaged(self) -> int:
        return int(self._avg.n_averaged) if self._avg is not None else 0

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch + 1 >= first_averaged_epoch(self.start, state.epochs):
            self._avg.update_parameters(state.model)
            state.logs["swa/n_averaged"] = float(self.n_averaged)

    def on_fit_end(self, state: TrainState) -> bool:
        if self.n_averaged == 0:
            first = first_averaged_epoch(self.start, state.epochs)
            self.no_effect(
                state,
                f"the fit ended at epoch {state.epoch + 1}, before averaging began "
                f"(epoch {first} of {state.epochs}); weights are the last epoch's",
            )
            return False
        load_average(state.model, self._avg)
        swa_utils.update_bn(state.train_batches(), state.model)
        return True

    def state_dict(self) -> dict[str, Any]:
        return dict(self._avg.state_dict()) if self._avg is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:  # {}: a checkpoint from before averaging began
            self._avg.load_state_dict(state)
