"""Early stopping on a validation metric.

Prechelt, "Early Stopping -- But When?", in Neural Networks: Tricks of the Trade
(1998). The Stanford Cars thesis (seed 004, section 3.4) stops "when there is no
decrease in validation loss for 15 epochs": metric val/loss, patience 15.

An epoch improves on the best so far when the metric beats it by more than
`min_delta`; after `patience` epochs in a row without improvement the fit stops
(`state.stop_reason = "early_stopping"`), and the loop still runs every technique's
`on_fit_end`. With `restore_best`, the weights of the best epoch (and its BatchNorm
statistics) are loaded at the end, however the fit ended -- unless SWA is in the same
run: its average is the model SWA promises, so it is kept and this says so.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PrivateAttr, model_validator

from effray.techniques import register
from effray.techniques.base import Technique, TrainState
from effray.techniques.reduce_lr_on_plateau import Metric, check_mode


def improved(value: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Does `value` beat `best` by more than `min_delta` in direction `mode`?"""
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta


@register
class EarlyStopping(Technique):
    """Stop after `patience` epochs without improvement of `metric`."""

    kind: Literal["early_stopping"] = "early_stopping"
    metric: Metric = "val/loss"  # watched once per epoch
    mode: Literal["min", "max"] = "min"  # min for losses, max for accuracies
    patience: Annotated[int, Field(ge=1)] = 15  # epochs without improvement (the thesis's)
    min_delta: Annotated[float, Field(ge=0)] = 0.0  # smallest change that counts as improvement
    restore_best: bool = False  # load the best epoch's weights when the fit ends

    paper: ClassVar[str] = "Prechelt 1998; thesis 004 section 3.4 (patience 15 on val loss)"

    _best: float | None = PrivateAttr(None)
    _best_epoch: int = PrivateAttr(0)  # 1-based; 0 = none yet
    _bad_epochs: int = PrivateAttr(0)
    _best_weights: dict[str, Any] | None = PrivateAttr(None)  # name -> tensor

    @model_validator(mode="after")
    def _mode_matches_metric(self):
        check_mode(self.metric, self.mode)
        return self

    def on_epoch_end(self, state: TrainState) -> None:
        value = float(state.metrics[self.metric])
        if improved(value, self._best, self.mode, self.min_delta):
            self._best, self._best_epoch, self._bad_epochs = value, state.epoch + 1, 0
            if self.restore_best:
                self._best_weights = {
                    k: v.detach().clone() for k, v in state.model.state_dict().items()
                }
        else:
            self._bad_epochs += 1
        state.logs["early_stopping/best_epoch"] = float(self._best_epoch)
        if self._bad_epochs >= self.patience:
            state.stop_reason = "early_stopping"

    def on_fit_end(self, state: TrainState) -> bool:
        if not self.restore_best or self._best_weights is None:
            return False
        if self._best_epoch == state.epoch + 1:
            return False  # the last epoch is the best: nothing to restore
        if any(t.kind == "swa" for t in getattr(state.spec, "techniques", [])):
            warnings.warn(
                "early_stopping: restore_best skipped: SWA's averaged weights are kept "
                f"(best {self.metric} was at epoch {self._best_epoch})",
                UserWarning,
                stacklevel=2,
            )
            return False
        state.model.load_state_dict(self._best_weights)
        return True

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"best_epoch": self._best_epoch, "bad_epochs": self._bad_epochs}
        if self._best is not None:
            out["best"] = self._best
        if self._best_weights is not None:
            out["best_weights"] = self._best_weights
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._best = state.get("best")
        self._best_epoch = int(state.get("best_epoch", 0))
        self._bad_epochs = int(state.get("bad_epochs", 0))
        self._best_weights = state.get("best_weights")
