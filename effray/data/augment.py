"""Batched augmentation: the pure functions the device-path techniques wrap."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def random_crop_batch(x: Tensor, padding: int, gen: torch.Generator | None, *, mode="constant"):
    """Pad every image by `padding` pixels and crop it back to its size at a random offset.

    One offset per image, drawn from `gen`; batched indexing, no loop over images. `mode`
    is F.pad's: "constant" (zeros, like torchvision's RandomCrop) or "reflect".
    """
    if padding == 0:
        return x
    n, c, h, w = x.shape
    hp, wp = h + 2 * padding, w + 2 * padding
    dev = gen.device if gen is not None else x.device
    dy, dx = torch.randint(0, 2 * padding + 1, (2, n), generator=gen, device=dev).to(x.device)
    padded = F.pad(x, (padding,) * 4, mode=mode).reshape(n, c, hp * wp)
    # one flat gather: output pixel (h, w) of image i reads padded pixel (dy_i + h, dx_i + w)
    grid = torch.arange(h, device=x.device)[:, None] * wp + torch.arange(w, device=x.device)
    index = grid.view(1, 1, h * w) + (dy * wp + dx).view(n, 1, 1)
    return padded.gather(2, index.expand(n, c, h * w)).view(n, c, h, w)


def hflip_batch(x: Tensor, p: float, gen: torch.Generator | None) -> Tensor:
    """Flip each image left-right with probability `p` (one draw per image from `gen`)."""
    dev = gen.device if gen is not None else x.device
    flip = torch.rand(x.shape[0], generator=gen, device=dev).to(x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


class Normalize:
    """(x - mean) / std per channel; works on a batch (N,C,H,W) or one image (C,H,W)."""

    def __init__(self, mean: list[float], std: list[float], device=None):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(-1, 1, 1)

    def __call__(self, x: Tensor, gen: torch.Generator | None = None) -> Tensor:
        return (x - self.mean) / self.std


def to_float(x: Tensor) -> Tensor:
    return x.float().div_(255)
