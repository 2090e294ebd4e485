"""Label smoothing.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR
2016, arXiv:1512.00567 (section 7). Ethiraj & Bolla (seed 001, "Training Efficient
CNNs") uses alpha = 0.1 (section III.J).

The target distribution t becomes (1 - alpha) t + alpha / K, so the loss is

    CE_smooth(p, t) = (1 - alpha) CE(p, t) + alpha * mean_k CE(p, k).

It is applied in exactly one place: `effray.train.fit` builds
`nn.CrossEntropyLoss(label_smoothing=state.label_smoothing)` after `on_optimizer`,
and that loss smooths the dense targets of every batch. Mixup's mixed targets are
smoothed the same way, so the two compose in any order. Evaluation uses plain CE.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from effray.techniques import register
from effray.techniques.base import Technique, TrainState


def smooth_targets(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * y + alpha / K for dense targets y of shape (N, K)."""
    return (1 - alpha) * y + alpha / y.shape[-1]


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    """Mean over the batch of CE(logits, smooth_targets(y)); what the loop's loss computes."""
    return -(smooth_targets(y, alpha) * F.log_softmax(logits, dim=-1)).sum(-1).mean()


@register
class LabelSmoothing(Technique):
    """Soften the targets towards uniform by `alpha` (applied only by the loss)."""

    kind: Literal["label_smoothing"] = "label_smoothing"
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.1  # probability mass spread over all classes

    paper: ClassVar[str] = "Szegedy et al. 2016, arXiv:1512.00567"

    def on_optimizer(self, state: TrainState) -> None:
        state.label_smoothing = self.alpha
