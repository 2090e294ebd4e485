"""The technique contract: a pydantic model whose YAML block is its constructor, with hooks.

A technique is one small class. Its fields are its arguments (validated with the
spec); its hooks have no-op defaults and are called by `effray.train.fit` in the
order of `effray.techniques.RUN_ORDER`, never in YAML order:

    t.on_data(pipeline)            # data-pipeline ops (crop, flip, normalize, …) before data is built
    model = t.on_model(model, st)  # surgery (BlurPool, SE) — before the optimizer exists
    t.on_optimizer(st)             # build/attach schedulers (one-cycle, SWA)
    for epoch:
        for batch:
            t.on_batch(st)         # Cutout, Mixup, label smoothing edit st.x / st.y (dense targets)
            st.loss = owner.step(st, closure)   # SAM owns the step; default: closure(); opt.step()
            t.after_step(st)       # per-batch schedulers
        (evaluate)
        t.on_epoch_end(st)         # SWA snapshot, plateau scheduler, early stopping
    t.on_fit_end(st)               # SWA: load average + update_bn, however the fit ended

Rules: batch randomness comes from `st.generator` (seeded, saved in checkpoints), so
SAM's two passes see the same batch; targets are dense probabilities after
`on_batch`; label smoothing is applied once, by label_smoothing's `on_batch` (the loss
is plain cross-entropy on `st.y`); `state_dict` /
`load_state_dict` make resume exact. A hook that rebuilds `st.x` keeps its memory layout
(write into `torch.empty_like(st.x)`): the loader's channels-last strides make small
convs ~1.7x faster on CPU, and a plain NCHW copy silently loses that.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, PrivateAttr

if TYPE_CHECKING:  # annotations only: importing the registry loads no torch
    import torch
    from torch import nn

HOOKS = (  # every hook, in the order fit calls them
    "on_data",
    "on_model",
    "on_optimizer",
    "on_batch",
    "step",
    "after_step",
    "on_epoch_end",
    "on_fit_end",
)


class NoEffectWarning(UserWarning):
    """A technique was asked for but changed nothing (e.g. BlurPool on a net with no pooling)."""


@dataclass
class TrainState:
    """Everything a hook may read or change. One per fit; plain attributes, no magic."""

    spec: Any  # the resolved TrialSpec (effray.spec.ExperimentSpec)
    device: torch.device
    num_classes: int
    epochs: int  # total epochs of this fit
    steps_per_epoch: int
    generator: torch.Generator  # all batch randomness; lives on the data device
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    epoch: int = 0  # 0-based epoch in progress
    step: int = 0  # global optimizer steps taken
    x: torch.Tensor | None = None  # current batch, normalized float
    y: torch.Tensor | None = None  # current dense targets (N, C) float
    labels: torch.Tensor | None = None  # current integer labels (for accuracy)
    loss: torch.Tensor | None = None  # loss of the last step
    metrics: dict[str, float] = field(default_factory=dict)  # this epoch's metrics
    logs: dict[str, float] = field(
        default_factory=dict
    )  # technique facts, e.g. blurpool/num_layers
    stop_reason: str | None = None  # set to stop after this epoch (e.g. "early_stopping")
    train_batches: Any = None  # callable() -> iterator of (x, labels) over the train set, no aug
    model_name: str = ""

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else 0.0


class Technique(BaseModel):
    """Base class of every technique; subclass, give `kind` a Literal, override hooks."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    kind: str
    ablate: bool = True  # False: always on; an ablation never drops it

    # Class-level facts used by validation, the run order and `effray techniques`.
    owns: ClassVar[tuple[str, ...]] = ()  # exclusive resources: "step" and/or "lr"
    requires: ClassVar[tuple[str, ...]] = ()  # dataset capabilities, e.g. ("boxes",)
    paper: ClassVar[str] = ""  # citation shown by `effray techniques`

    @property
    def name(self) -> str:
        """Short name used in trial names: the kind, or the class name of a plugin."""
        return self.kind.rsplit(":", 1)[-1] if ":" in self.kind else self.kind

    # ---- hooks (no-ops by default) -------------------------------------------------
    def on_data(self, pipeline: Any) -> None:
        pass

    def on_model(self, model: nn.Module, state: TrainState) -> nn.Module:
        return model

    def on_optimizer(self, state: TrainState) -> None:
        pass

    def on_batch(self, state: TrainState) -> None:
        pass

    def step(self, state: TrainState, closure) -> torch.Tensor:
        """Only for techniques that own the optimizer step ("step" in `owns`)."""
        raise NotImplementedError

    def after_step(self, state: TrainState) -> None:
        pass

    def on_epoch_end(self, state: TrainState) -> None:
        pass

    def on_fit_end(self, state: TrainState) -> bool:
        """Return True when the weights changed (the loop then evaluates again)."""
        return False

    # ---- exact resume ----------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    # ---- helpers -----------------------------------------------------------------------
    def no_effect(self, state: TrainState, reason: str) -> None:
        """Say that this technique changed nothing, and record it in the logs."""
        warnings.warn(f"{self.name}: {reason}", NoEffectWarning, stacklevel=2)
        state.logs[f"{self.name}/no_effect"] = 1.0

    @classmethod
    def hooks(cls) -> list[str]:
        """The hooks this class overrides (for `effray techniques`)."""
        return [n for n in HOOKS if getattr(cls, n) is not getattr(Technique, n)]


class ScheduledLR(Technique):
    """Base of the LR owners that wrap a torch LR scheduler (one_cycle, multistep_lr, …).

    Subclasses say how to build the scheduler and when to step it; this class saves
    and restores the scheduler's state so resume is exact (fit loads it after
    `on_optimizer` has built the scheduler).
    """

    owns: ClassVar[tuple[str, ...]] = ("lr",)
    spec_keys: ClassVar[tuple[str, ...]] = ()  # scheduler state rebuilt from the spec, not saved

    _scheduler: Any = PrivateAttr(None)

    def make_scheduler(self, state: TrainState):
        raise NotImplementedError

    def on_optimizer(self, state: TrainState) -> None:
        self._scheduler = self.make_scheduler(state)

    def state_dict(self) -> dict[str, Any]:
        if self._scheduler is None:
            return {}
        saved = self._scheduler.state_dict()
        return {k: v for k, v in saved.items() if k not in self.spec_keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self._scheduler.load_state_dict({**self._scheduler.state_dict(), **state})
