"""Shared fixtures. Data fixtures (prefix `data_`) write tiny datasets in their real formats."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest


def write_idx(path: Path, array: np.ndarray, *, compress: bool = True) -> Path:
    """An IDX file as LeCun's MNIST tools write it: magic 0x0000080<ndim>, big-endian dims."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(raw))
    else:
        path.write_bytes(raw)
    return path


def idx_images(n: int, side: int = 28) -> np.ndarray:
    """Images whose first two pixels spell their index (i % 256, i // 256); a ramp elsewhere."""
    images = np.tile(np.arange(side * side, dtype=np.uint8).reshape(side, side), (n, 1, 1))
    images[:, 0, 0] = np.arange(n) % 256
    images[:, 0, 1] = np.arange(n) // 256
    return images


def write_idx_dataset(folder: Path, n_train: int, n_test: int, *, compress: bool = True):
    """The four (Fashion-)MNIST files; labels are index % 10."""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", idx_images(n), compress=compress)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, compress=compress)
    return folder


@pytest.fixture
def data_write_idx():
    """write_idx_dataset(folder, n_train, n_test, compress=True) -> folder."""
    return write_idx_dataset


@pytest.fixture
def data_fashion_root(tmp_path) -> Path:
    """A tiny Fashion-MNIST root (Debian layout: the four .gz files): 300 train, 50 test."""
    return write_idx_dataset(tmp_path / "fashion-mnist", 300, 50)
