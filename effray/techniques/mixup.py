"""Mixup: train on convex combinations of pairs of images and of their targets.

Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018,
arXiv:1710.09412. Per batch: lambda ~ Beta(alpha, alpha), a random permutation pi,

    x <- lambda x + (1 - lambda) x[pi],   y <- lambda y + (1 - lambda) y[pi]

with dense targets y, so label smoothing (applied later, by the loss) composes.

Reproducibility: torch cannot draw Beta/Gamma variates from a given generator, so
lambda comes from numpy's Beta sampler seeded by one integer drawn from
`state.generator`; the permutation is drawn from `state.generator` directly. On a
GPU that integer costs one tiny device-to-host copy per batch.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

np = lazy("numpy")
torch = lazy("torch")


def sample_lambda(alpha: float, gen: torch.Generator) -> float:
    """One draw of Beta(alpha, alpha), determined by the state of `gen`."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mixup_batch(
    x: torch.Tensor, y: torch.Tensor, alpha: float, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix a batch with a permutation of itself; returns (x_mixed, y_mixed, lambda)."""
    lam = sample_lambda(alpha, gen)
    perm = torch.randperm(x.shape[0], generator=gen, device=gen.device).to(x.device)
    # written into empty_like(x) to keep x's strides (the loader's layout; convs are faster)
    x_mixed = torch.add(lam * x, x[perm], alpha=1 - lam, out=torch.empty_like(x))
    y_mixed = lam * y + (1 - lam) * y[perm]
    return x_mixed, y_mixed, lam


@register
class Mixup(Technique):
    """Blend each image and its target with another image of the batch."""

    kind: Literal["mixup"] = "mixup"
    alpha: Annotated[float, Field(gt=0, le=100)] = 0.2  # Beta(alpha, alpha); 0.2 as Zhang et al.

    paper: ClassVar[str] = "Zhang et al. 2017, arXiv:1710.09412"

    def on_batch(self, state: TrainState) -> None:
        state.x, state.y, _ = mixup_batch(state.x, state.y, self.alpha, state.generator)
