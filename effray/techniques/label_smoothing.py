"""Label smoothing.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR
2016, arXiv:1512.00567 (section 7). Ethiraj & Bolla (seed 001, "Training Efficient
CNNs") uses alpha = 0.1 (section III.J).

The target distribution t becomes (1 - alpha) t + alpha / K, so the loss is

    CE_smooth(p, t) = (1 - alpha) CE(p, t) + alpha * mean_k CE(p, k).

It is applied in exactly one place: this technique's `on_batch` replaces the dense
targets `state.y` by `smooth_targets(state.y, alpha)`, and the loop's loss is plain
cross-entropy on them. Its place in the run order (after cutout and mixup) means
mixup's mixed targets are smoothed too, whatever the YAML order. The result is
bit for bit torch's `nn.CrossEntropyLoss(label_smoothing=alpha)` on the unsmoothed
targets. Evaluation uses plain CE on the integer labels.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

torch = lazy("torch")


def smooth_targets(y: torch.Tensor, alpha: float) -> torch.Tensor:
    """(1 - alpha) * y + alpha / K for dense targets y of shape (N, K)."""
    return (1 - alpha) * y + alpha / y.shape[-1]


@register
class LabelSmoothing(Technique):
    """Soften each batch's dense targets towards uniform by `alpha`."""

    kind: Literal["label_smoothing"] = "label_smoothing"
    alpha: Annotated[float, Field(gt=0, lt=1)] = 0.1  # probability mass spread over all classes

    paper: ClassVar[str] = "Szegedy et al. 2016, arXiv:1512.00567"

    def on_batch(self, state: TrainState) -> None:
        state.y = smooth_targets(state.y, self.alpha)
