"""Sharpness-Aware Minimization.

Foret et al., "Sharpness-Aware Minimization for Efficiently Improving
Generalization", ICLR 2021, arXiv:2010.01412; adaptive variant (ASAM): Kwon et al.,
ICML 2021, arXiv:2102.11600.

One SAM step on a batch:

1. g = grad L(w)                                  (first closure)
2. e(w) = rho * g / ||g||                         (global L2 norm over all parameters;
   ASAM: e = rho * w^2 g / ||w g||)
3. g' = grad L(w + e(w))                          (second closure, same batch)
4. w <- base_optimizer_step(w, g')                (e(w) removed first)

The second pass runs in train mode (batch statistics) but must not move the
BatchNorm running statistics, so they are saved before it and restored after: the
model ends the step as if it had seen the batch once. Batch randomness (mixup,
cutout) is drawn in `on_batch`, before the step, so both passes see the same batch.
The reported loss is the first pass's, at w.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

torch = lazy("torch")
nn = lazy("torch.nn")


def _with_grads(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]


def sam_perturb(
    optimizer: torch.optim.Optimizer, rho: float, adaptive: bool = False
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Move every parameter with a gradient to w + e(w); return [(param, e), ...] to undo it."""
    with torch.no_grad():
        params = _with_grads(optimizer)
        if not params:
            return []
        scaled = [(p.abs() * p.grad if adaptive else p.grad) for p in params]
        norms = torch.stack([torch.linalg.vector_norm(s) for s in scaled])
        scale = rho / (torch.linalg.vector_norm(norms) + 1e-12)
        moves = []
        for p in params:
            e = (p * p if adaptive else 1.0) * p.grad * scale
            p.add_(e)
            moves.append((p, e))
        return moves


def sam_restore(moves: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Undo `sam_perturb`: w + e(w) -> w."""
    with torch.no_grad():
        for p, e in moves:
            p.sub_(e)


def _bn_buffers(model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(buffer, saved copy) for every BatchNorm running statistic of `model`."""
    saved = []
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            for buf in (m.running_mean, m.running_var, m.num_batches_tracked):
                if buf is not None:
                    saved.append((buf, buf.clone()))
    return saved


def sam_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    closure: Callable[[], torch.Tensor],
    rho: float = 0.05,
    adaptive: bool = False,
) -> torch.Tensor:
    """One full SAM step; `closure` zeroes grads, runs forward + backward, returns the loss."""
    loss = closure()
    moves = sam_perturb(optimizer, rho, adaptive)
    saved = _bn_buffers(model)
    closure()
    with torch.no_grad():
        for buf, copy in saved:
            buf.copy_(copy)
    sam_restore(moves)
    optimizer.step()
    return loss


@register
class SAM(Technique):
    """Take the optimizer step with the gradient at the worst nearby point w + e(w)."""

    kind: Literal["sam"] = "sam"
    rho: Annotated[float, Field(gt=0, le=10)] = 0.05  # radius of the neighbourhood (Foret et al.)
    adaptive: bool = False  # ASAM: scale the neighbourhood by |w| (use rho ~ 0.5 then)

    owns: ClassVar[tuple[str, ...]] = ("step",)
    paper: ClassVar[str] = "Foret et al. 2020, arXiv:2010.01412"

    def step(self, state: TrainState, closure) -> torch.Tensor:
        return sam_step(state.model, state.optimizer, closure, self.rho, self.adaptive)
