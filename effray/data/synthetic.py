"""The synthetic dataset: a fixed, learnable toy problem for tests and smoke runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from effray.spec import DataSpec

SYNTHETIC_SEED = 1234  # the toy problem is one fixed dataset; trial seeds pick and order it
SYNTHETIC_NOISE = 1.0  # pixel noise, in units of the prototypes' std


def _synthetic(spec: DataSpec, n: int, gen: torch.Generator, protos: Tensor):
    """Class prototypes plus pixel noise: learnable in a few epochs by a small CNN."""
    labels = torch.randperm(n, generator=gen) % spec.num_classes
    noise = torch.randn(n, spec.channels, spec.size, spec.size, generator=gen)
    x = 128 + 48 * (protos[labels] + SYNTHETIC_NOISE * noise)
    return x.round().clamp(0, 255).to(torch.uint8).numpy(), labels.numpy()


def synthetic_splits(spec: DataSpec):
    gen = torch.Generator().manual_seed(SYNTHETIC_SEED)
    k, c, s = spec.num_classes, spec.channels, spec.size
    low = torch.randn(k, c, 4, 4, generator=gen)
    protos = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    protos = (protos + protos.flip(-1)) / 2  # mirror-symmetric: horizontal_flip keeps the class
    protos = protos / protos.std(dim=(1, 2, 3), keepdim=True)
    train = _synthetic(spec, spec.train_size, gen, protos)
    val = _synthetic(spec, spec.val_size, gen, protos)
    return train, val, [f"class_{i}" for i in range(k)]
