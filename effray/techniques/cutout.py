"""Cutout: zero one square patch per training image.

DeVries & Taylor, "Improved Regularization of Convolutional Neural Networks with
Cutout", arXiv:1708.04552 (2017). Ethiraj & Bolla (seed 001, "Training Efficient
CNNs") cuts 10x10 pixel holes (section III.G).

Each image gets one `size` x `size` hole whose centre is uniform over all pixels,
independently per image; near the border the hole is clipped (as in DeVries &
Taylor, so some holes are smaller). The hole covers rows [cy - size//2,
cy - size//2 + size), so it is exactly size x size when it fits. The fill is 0:
on normalized data that is the dataset mean. Masks are built for the whole batch by
broadcasting; no Python loop over images.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

torch = lazy("torch")


def cutout_mask(n: int, height: int, width: int, size: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, H, W) float mask: 0 inside each image's hole, 1 elsewhere."""
    device = gen.device
    cy = torch.randint(0, height, (n, 1, 1, 1), generator=gen, device=device)
    cx = torch.randint(0, width, (n, 1, 1, 1), generator=gen, device=device)
    rows = torch.arange(height, device=device).view(1, 1, height, 1)
    cols = torch.arange(width, device=device).view(1, 1, 1, width)
    top, left = cy - size // 2, cx - size // 2
    inside_rows = (rows >= top) & (rows < top + size)
    inside_cols = (cols >= left) & (cols < left + size)
    return (~(inside_rows & inside_cols)).float()


def cutout_batch(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Zero one size x size patch (clipped at borders) per image of x (N, C, H, W)."""
    n, _, h, w = x.shape
    mask = cutout_mask(n, h, w, size, gen).to(device=x.device, dtype=x.dtype)
    # empty_like keeps x's strides: the loader's (channels-last) layout makes convs faster
    return torch.mul(x, mask, out=torch.empty_like(x))


@register
class Cutout(Technique):
    """Mask a random square of every training image."""

    kind: Literal["cutout"] = "cutout"
    size: Annotated[int, Field(ge=1, le=1024)] = 10  # pixels per side of the hole (the paper's)

    paper: ClassVar[str] = "DeVries & Taylor 2017, arXiv:1708.04552"

    def on_batch(self, state: TrainState) -> None:
        state.x = cutout_batch(state.x, self.size, state.generator)
