"""DataBundle, what the training loop iterates, and TensorBundle, its device-path form."""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from effray.data.augment import to_float


class DataBundle:
    """Both splits, ready to iterate on the training device."""

    num_classes: int
    in_channels: int
    image_size: tuple[int, int]
    num_train: int
    num_val: int
    class_names: list[str]
    mean: list[float] | None  # what normalization used; None: not normalized
    std: list[float] | None

    def train_count(self, batch_size: int) -> int:
        """Train images used per epoch: all, except a last batch of exactly one image is
        dropped (BatchNorm cannot train on one sample with 1x1 spatial maps, as in GhostNet's head)."""
        n = self.num_train
        return n - 1 if batch_size > 1 and n % batch_size == 1 else n

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.train_count(batch_size) / batch_size)  # last partial batch kept

    def train_batches(self, batch_size: int, gen: torch.Generator) -> Iterator:
        raise NotImplementedError

    def val_batches(self, batch_size: int) -> Iterator:
        raise NotImplementedError

    def train_eval_batches(self, batch_size: int) -> Iterator:
        raise NotImplementedError

    def __repr__(self) -> str:
        c, (h, w) = self.in_channels, self.image_size
        return (
            f"{type(self).__name__}(train={self.num_train}, val={self.num_val}, "
            f"classes={self.num_classes}, shape=({c}, {h}, {w}))"
        )


class TensorBundle(DataBundle):
    """Device path: uint8 tensors on the device, batched ops, a permutation per epoch."""

    def __init__(self, train, val, class_names, train_ops, eval_ops, mean, std):
        (self.x_train, self.y_train), (self.x_val, self.y_val) = train, val
        self.train_ops, self.eval_ops = train_ops, eval_ops
        self.class_names, self.mean, self.std = class_names, mean, std
        self.num_classes = len(class_names)
        self.in_channels = self.x_train.shape[1]
        self.image_size = tuple(self.x_train.shape[2:])
        self.num_train, self.num_val = len(self.x_train), len(self.x_val)

    def _batches(self, x, y, order, batch_size, ops, gen):
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            xb = to_float(x[idx])
            for op in ops:
                xb = op(xb, gen)
            yield xb, y[idx]

    def train_batches(self, batch_size, gen):
        order = torch.randperm(self.num_train, generator=gen, device=gen.device)
        order = order[: self.train_count(batch_size)].to(self.x_train.device)  # drawn now
        return self._batches(self.x_train, self.y_train, order, batch_size, self.train_ops, gen)

    def _fixed(self, x, y, batch_size):
        gen = torch.Generator(x.device).manual_seed(0)  # eval ops are meant to be deterministic
        order = torch.arange(len(x), device=x.device)
        return self._batches(x, y, order, batch_size, self.eval_ops, gen)

    def val_batches(self, batch_size):
        return self._fixed(self.x_val, self.y_val, batch_size)

    def train_eval_batches(self, batch_size):
        return self._fixed(self.x_train, self.y_train, batch_size)
