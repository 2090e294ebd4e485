"""Train/val splits and subsets, normalization statistics, grayscale and resize of uint8 images."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from effray.errors import SpecError, problem

if TYPE_CHECKING:
    from effray.data.pipeline import DataPipeline
    from effray.spec import DataSpec


def pick_indices(spec: DataSpec, n_train: int, n_test: int, seed: int):
    """Train and val indices: val_split (test split or a seeded fraction), then subsets."""
    if spec.val_split == "test":
        train, val, val_from = np.arange(n_train), np.arange(n_test), "test"
    else:
        perm = np.random.default_rng([seed, 1]).permutation(n_train)
        n_val = max(1, round(spec.val_split * n_train))
        train, val, val_from = np.sort(perm[n_val:]), np.sort(perm[:n_val]), "train"
    problems = []
    for field, idx, what in (
        ("train_subset", train, "train images"),
        ("val_subset", val, f"validation images (from the {val_from} split)"),
    ):
        k = getattr(spec, field)
        if k is not None and k > len(idx):
            problems.append(
                problem(
                    f"data.{field}",
                    f"{field} is larger than the {len(idx)} {what} of {spec.name!r}",
                    value=k,
                    allowed=f"<= {len(idx)}",
                )
            )
    if problems:
        raise SpecError(problems)
    if spec.train_subset is not None:
        train = np.sort(np.random.default_rng([seed, 2]).permutation(train)[: spec.train_subset])
    if spec.val_subset is not None:
        val = np.sort(np.random.default_rng([seed, 3]).permutation(val)[: spec.val_subset])
    return train, val, val_from


def channel_stats(chunks) -> tuple[list[float], list[float]]:
    """Per-channel mean and std over every pixel of uint8 (N,C,H,W) chunks, in [0, 1]."""
    total = total_sq = count = 0
    for x in chunks:
        x = x.double().div_(255).transpose(0, 1).flatten(1)  # (C, pixels)
        total = total + x.sum(1)
        total_sq = total_sq + x.square().sum(1)
        count += x.shape[1]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


def resolve_normalize(pipeline: DataPipeline, channels: int, measure) -> tuple:
    if not pipeline.normalizes:
        return None, None
    values = {}
    for name, given in (("mean", pipeline.mean), ("std", pipeline.std)):
        if given is not None and len(given) not in (1, channels):
            raise SpecError(
                [
                    problem(
                        "techniques",
                        f"normalize: {name} has {len(given)} values but the data has "
                        f"{channels} channel{'s' if channels != 1 else ''}",
                        value=list(given),
                        allowed=f"a list of 1 or {channels} values",
                    )
                ]
            )
        values[name] = (
            None if given is None else [float(v) for v in given] * (channels // len(given))
        )
    if values["mean"] is None or values["std"] is None:
        mean, std = measure()
        values["mean"] = values["mean"] or mean
        values["std"] = values["std"] or std
    return values["mean"], values["std"]


def to_grayscale(x: Tensor) -> Tensor:
    """uint8 (N, 3, H, W) -> (N, 1, H, W), bit for bit PIL's convert("L"); 1 channel kept.

    ITU-R 601 luma in PIL's 16-bit fixed point, (19595 R + 38470 G + 7471 B + 2^15) >> 16:
    rounding 0.299 R + 0.587 G + 0.114 B in floats is one grey level off on some pixels.
    Both data paths use it (the loader on each image, before its resize).
    """
    if x.shape[1] == 1:
        return x
    w = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
    out = [
        (((c.int() * w).sum(1, keepdim=True) + 32768) >> 16).to(torch.uint8) for c in x.split(4096)
    ]
    return torch.cat(out)


def resize_square(x: Tensor, size: int) -> Tensor:
    if tuple(x.shape[2:]) == (size, size):
        return x
    out = [
        F.interpolate(c.float(), size=(size, size), mode="bilinear", antialias=True)
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        for c in x.split(4096)
    ]
    return torch.cat(out)
