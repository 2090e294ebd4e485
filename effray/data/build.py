"""build_data: the dataset named by a spec, split, preprocessed and bundled for training.

A process keeps the datasets it read (`RAW_CACHE_ENTRIES`, by dataset and files) and
the normalization statistics it measured: a reused Ray worker running trial after
trial on the same data reads the files once, and later trials only pick their seeded
subsets from memory. `clear_cache()` forgets both.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from effray.data.augment import Normalize
from effray.data.bundle import DataBundle, TensorBundle
from effray.data.loader import ImageFiles, LoaderBundle, load_batches
from effray.data.locate import check_data, find
from effray.data.pipeline import DataPipeline
from effray.data.registry import DATASETS, DOWNLOAD_ROOT, datasets_with, image_side
from effray.data.splits import (
    channel_stats,
    pick_indices,
    resize_square,
    resolve_normalize,
    to_grayscale,
)
from effray.errors import SpecError, problem

if TYPE_CHECKING:
    from effray.spec import DataSpec

RAW_CACHE_ENTRIES = 2  # datasets kept in memory per process (Fashion-MNIST: 55 MB)
_RAW: OrderedDict[Hashable, tuple] = OrderedDict()  # read key -> what the reader returned
_STATS: dict[Hashable, tuple] = {}  # (read key, train images, preprocessing) -> (mean, std)
STATS_CACHE_ENTRIES = 64


def clear_cache() -> None:
    """Forget every dataset and statistic this process kept."""
    _RAW.clear()
    _STATS.clear()


def _read_key(spec: DataSpec, folder: Path | None) -> Hashable:
    """What a read depends on: the generating spec, or the folder and its files' sizes
    and modification times (a file replaced between trials is read again)."""
    if folder is None:
        return ("generated", spec.model_dump_json())
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            st = entry.stat()
            entries.append((entry.name, st.st_size, st.st_mtime_ns))
    return ("files", spec.name, str(Path(folder).resolve()), tuple(sorted(entries)))


def _read(spec: DataSpec, folder: Path | None) -> tuple[Hashable, tuple]:
    """The reader's (train, test, classes), from this process's memory when it has them."""
    key = _read_key(spec, folder)
    if key in _RAW:
        _RAW.move_to_end(key)
        return key, _RAW[key]
    out = DATASETS[spec.name].read(spec, folder)
    for split in out[:2]:  # shared by later trials: nobody may write into them
        for part in split if isinstance(split, tuple) else ():
            if isinstance(part, np.ndarray):
                part.flags.writeable = False
    _RAW[key] = out
    while len(_RAW) > RAW_CACHE_ENTRIES:
        _RAW.popitem(last=False)
    return key, out


def _stats(key: Hashable, measure: Callable[[], tuple]) -> Callable[[], tuple]:
    """`measure`, remembered under `key` (normalization statistics of the same images)."""

    def cached() -> tuple:
        if key not in _STATS:
            if len(_STATS) >= STATS_CACHE_ENTRIES:
                del _STATS[next(iter(_STATS))]
            _STATS[key] = measure()
        return _STATS[key]

    return cached


def _digest(idx: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(idx).tobytes()).hexdigest()


def _ensure_files(spec: DataSpec) -> Path:
    found = find(spec.name, spec.root)
    if found is not None:
        return found
    info = DATASETS[spec.name]
    if not (spec.download and info.torchvision):
        raise SpecError(check_data(spec) or [problem("data.root", "dataset not found")])
    import torchvision.datasets
    from filelock import FileLock

    root = Path(spec.root or DOWNLOAD_ROOT).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / ".effray-download.lock")):
            for train in (True, False):
                getattr(torchvision.datasets, info.torchvision)(
                    str(root), train=train, download=True
                )
    except Exception as exc:  # no network, no space, a mirror down: all the user's to fix
        raise SpecError(
            [
                problem(
                    "data.download",
                    f"could not download {spec.name!r} into {root}: {exc}; "
                    f"put the files there ({info.expected}) or set data.root",
                )
            ]
        ) from None
    found = find(spec.name, str(root))
    if found is None:
        raise SpecError([problem("data.root", f"download into {root} left no usable files")])
    return found


def build_data(
    spec: DataSpec, pipeline: DataPipeline, *, device: torch.device, seed: int
) -> DataBundle:
    """Load the dataset named by `spec`, ready to iterate on `device`.

    Missing or damaged files raise SpecError (path data.root), never a raw traceback.
    """
    device = torch.device(device)
    info = DATASETS[spec.name]
    if pipeline.bbox_crop and "boxes" not in info.capabilities:
        raise SpecError(
            [
                problem(
                    "techniques",
                    f"bbox_crop needs a dataset with boxes; {spec.name!r} has none",
                    allowed="datasets with boxes: " + ", ".join(datasets_with("boxes")),
                )
            ]
        )
    folder = None if info.generated else _ensure_files(spec)
    if info.path == "device":
        return _build_tensors(spec, pipeline, folder, device, seed)
    return _build_loader(spec, pipeline, folder, device, seed)


def _build_tensors(spec, pipeline, folder, device, seed) -> TensorBundle:
    key, ((x_tr, y_tr), (x_te, y_te), classes) = _read(spec, folder)
    train_idx, val_idx, val_from = pick_indices(spec, len(x_tr), len(x_te), seed)
    src_x, src_y = (x_te, y_te) if val_from == "test" else (x_tr, y_tr)
    splits = []
    for x, y, idx in ((x_tr, y_tr, train_idx), (src_x, src_y, val_idx)):
        xt = torch.from_numpy(np.ascontiguousarray(x[idx]))
        xt = to_grayscale(xt) if pipeline.grayscale else xt
        xt = resize_square(xt, spec.image_size) if spec.image_size else xt
        splits.append((xt.to(device), torch.from_numpy(y[idx]).to(device)))
    channels = splits[0][0].shape[1]
    stats_key = (key, _digest(train_idx), pipeline.grayscale, spec.image_size)
    measure = _stats(stats_key, lambda: channel_stats(splits[0][0].split(4096)))
    mean, std = resolve_normalize(pipeline, channels, measure)
    norm = Normalize(mean, std, device) if mean is not None else None
    return TensorBundle(
        splits[0],
        splits[1],
        classes,
        pipeline.chain("op", True, norm),
        pipeline.chain("op", False, norm),
        mean,
        std,
    )


def _build_loader(spec, pipeline, folder, device, seed) -> LoaderBundle:
    key, (train_all, test_all, classes) = _read(spec, folder)
    train_idx, val_idx, val_from = pick_indices(spec, len(train_all), len(test_all), seed)
    val_src = test_all if val_from == "test" else train_all
    train = [train_all[i] for i in train_idx]
    val = [val_src[i] for i in val_idx]
    if not val:
        raise SpecError([problem("data.root", f"no validation images under {folder}")])
    missing = [s[0] for s in train + val if not os.path.isfile(s[0])]
    if missing:
        raise SpecError(
            [
                problem(
                    "data.root",
                    f"{len(missing)} image files named by the labels are missing under "
                    f"{folder}, e.g. {missing[0]}",
                )
            ]
        )
    side = image_side(spec)
    common = {"size": (side, side), "grayscale": pipeline.grayscale}
    train_box = pipeline.erase_background if pipeline.bbox_crop else None
    plain = ImageFiles(train, box=train_box, **common)

    def measure():  # over the un-augmented uint8 train images
        order = [(i, i) for i in range(len(plain))]
        return channel_stats(x for x, _ in load_batches(plain, order, 64, spec.workers, device))

    stats_key = (key, _digest(train_idx), pipeline.grayscale, side, train_box)
    channels = 1 if pipeline.grayscale else 3
    mean, std = resolve_normalize(pipeline, channels, _stats(stats_key, measure))
    norm = Normalize(mean, std) if mean is not None else None
    eval_chain = pipeline.chain("transform", False, norm)
    train_chain = pipeline.chain("transform", True, norm)
    return LoaderBundle(
        ImageFiles(train, box=train_box, transform=train_chain, **common),
        ImageFiles(train, box=train_box, transform=eval_chain, **common),
        ImageFiles(val, transform=eval_chain, **common),
        classes,
        workers=spec.workers,
        device=device,
        mean=mean,
        std=std,
    )
