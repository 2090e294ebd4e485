"""The loader path: image files decoded by DataLoader workers (ImageFiles, LoaderBundle).

What a worker does per image: read the file, decode it with torchvision.io (libjpeg-turbo
or libpng straight into a uint8 tensor; PIL for formats it does not read), crop to the box,
resize and run the per-image transforms. When a chain ends in "to float, normalize" (the
usual case) those two run on the whole batch on the training device instead, so workers
hand over uint8 images: a quarter of the bytes through shared memory, and the float work
batched on a GPU when there is one.

A LoaderBundle keeps one DataLoader whose workers serve every pass of the fit (train,
val, train without augmentation) and live as long as the bundle: workers are forked once,
not per pass, so a CPU trainer does not pay a fork and a round of copy-on-write page
faults over its own memory at each epoch. benchmarks/loader.py measures the path against
a plain torchvision ImageFolder + DataLoader (docs/benchmarks.md).
"""

from __future__ import annotations

import re

import torch

from effray.data.augment import Normalize, to_float
from effray.data.bundle import DataBundle
from effray.data.splits import to_grayscale
from effray.errors import SpecError, problem


class ImageReadError(OSError):
    """An image file could not be decoded (raised in a worker, turned into a SpecError)."""


def read_image(path: str) -> torch.Tensor:
    """The file as a uint8 (3, H, W) RGB tensor; torchvision.io first, PIL as fallback."""
    from torchvision import io

    try:
        return io.decode_image(io.read_file(path), mode=io.ImageReadMode.RGB)
    except (RuntimeError, ValueError):
        pass  # a format or variant torchvision.io does not decode: PIL's turn
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as im:
            return TF.pil_to_tensor(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc}") from None


def crop_to_box(x: torch.Tensor, box, *, erase_background: bool) -> torch.Tensor:
    """x (C, H, W) cropped to `box` (1-based inclusive, as in cars_annos.mat); with
    `erase_background`, the crop on white at its place in an image of the original size."""
    x1, y1, x2, y2 = box
    _, height, width = x.shape
    left, top = max(0, int(x1) - 1), max(0, int(y1) - 1)
    right, bottom = min(width, int(x2)), min(height, int(y2))
    if right <= left or bottom <= top:
        return x  # a degenerate box: keep the whole image
    crop = x[:, top:bottom, left:right]
    if not erase_background:
        return crop
    canvas = torch.full_like(x, 255)
    canvas[:, top:bottom, left:right] = crop
    return canvas


def split_batched_tail(chain: list) -> tuple[list, list]:
    """(per-image steps, batch steps): a trailing to_float (+ Normalize) runs per batch."""
    i = len(chain)
    while i > 0 and (chain[i - 1] is to_float or isinstance(chain[i - 1], Normalize)):
        i -= 1
    if i == len(chain) or chain[i] is not to_float:
        return list(chain), []
    return list(chain[:i]), list(chain[i:])


class ImageFiles(torch.utils.data.Dataset):
    """Loader path: (path, label, box) samples; items are (index, seed) pairs."""

    def __init__(self, samples, size, *, grayscale, box=None, transform=()):
        self.samples, self.size, self.grayscale = samples, size, grayscale
        self.box = box  # None, or erase_background (bool) to crop to the sample's box
        self.transform, self.batch_steps = split_batched_tail(list(transform))
        self._on_device: dict[torch.device, list] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item):
        from torchvision.transforms.v2 import functional as TF

        index, seed = item
        path, label, box = self.samples[index]
        x = read_image(path)
        if self.box is not None and box is not None:
            x = crop_to_box(x, box, erase_background=self.box)
        if self.grayscale:  # before the resize, as on the device path
            x = to_grayscale(x[None])[0]
        x = TF.resize(x, list(self.size), antialias=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # v2 transforms draw from torch's global generator
            for t in self.transform:
                x = t(x)
        return x, label

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """The batch steps (to float, normalize) on a batch already on its device."""
        steps = self._on_device.get(x.device)
        if steps is None:
            steps = self._on_device[x.device] = [
                Normalize(s.mean.flatten().tolist(), s.std.flatten().tolist(), x.device)
                if isinstance(s, Normalize)
                else s
                for s in self.batch_steps
            ]
        for step in steps:  # to_float makes a new tensor: normalize may work in place
            x = x.sub_(step.mean).div_(step.std) if isinstance(step, Normalize) else step(x)
        return x


def _spec_error(exc: ImageReadError) -> SpecError:
    found = re.search(r"cannot read image .*", str(exc))  # from a worker: with its traceback
    return SpecError([problem("data.root", found.group(0) if found else str(exc))])


def load_batches(dataset, order, batch_size, workers, device, base_seed=0):
    """Batches of `dataset` in `order` ((index, seed) pairs), moved to `device`; one
    DataLoader for this pass only (LoaderBundle keeps its workers across passes)."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=order,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(base_seed),
    )
    try:
        for x, y in loader:
            yield dataset.finish(x.to(device, non_blocking=True)), y.to(device)
    except ImageReadError as exc:
        raise _spec_error(exc) from None


class _Passes(torch.utils.data.Dataset):
    """Items (which dataset, index, seed) of several ImageFiles, served by one DataLoader."""

    def __init__(self, datasets):
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, item):
        which, index, seed = item
        return self.datasets[which][(index, seed)]


class _Batches(torch.utils.data.Sampler):
    """The batches of the pass about to start, set before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int, int]]] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class LoaderBundle(DataBundle):
    """Loader path: one DataLoader with persistent workers for all passes, batches moved
    to the device. One pass at a time: starting a pass ends the one before it."""

    def __init__(self, train, train_plain, val, class_names, *, workers, device, mean, std):
        self.train, self.train_plain, self.val = train, train_plain, val
        self.workers, self.device = workers, device
        self.class_names, self.mean, self.std = class_names, mean, std
        self.num_classes = len(class_names)
        self.in_channels = 1 if train.grayscale else 3
        self.image_size = tuple(train.size)
        self.num_train, self.num_val = len(train), len(val)
        self._datasets = (train, train_plain, val)
        self._batches = _Batches()
        self._loader: torch.utils.data.DataLoader | None = None  # made at the first pass
        self._pass: object | None = None  # the pass whose batches the loader is serving

    def _iterate(self, which: int, order, batch_size):
        """Batches of dataset `which` in `order` ((index, seed) pairs)."""
        if self._loader is None:
            self._loader = torch.utils.data.DataLoader(
                _Passes(self._datasets),
                batch_sampler=self._batches,
                num_workers=self.workers,
                persistent_workers=self.workers > 0,
                pin_memory=self.device.type == "cuda",
            )
        items = [(which, i, seed) for i, seed in order]
        self._batches.batches = [
            items[k : k + batch_size] for k in range(0, len(items), batch_size)
        ]
        self._pass = token = object()
        dataset = self._datasets[which]
        try:
            for x, y in self._loader:
                yield dataset.finish(x.to(self.device, non_blocking=True)), y.to(self.device)
                if self._pass is not token:
                    raise RuntimeError(
                        "a LoaderBundle serves one pass at a time; finish (or drop) a pass "
                        "before starting the next"
                    )
        except ImageReadError as exc:
            raise _spec_error(exc) from None

    def train_batches(self, batch_size, gen):
        order = torch.randperm(self.num_train, generator=gen, device=gen.device).tolist()
        base = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
        pairs = [(i, (base + k) % 2**63) for k, i in enumerate(order)]
        return self._iterate(0, pairs[: self.train_count(batch_size)], batch_size)

    def val_batches(self, batch_size):
        return self._iterate(2, [(i, i) for i in range(self.num_val)], batch_size)

    def train_eval_batches(self, batch_size):
        return self._iterate(1, [(i, i) for i in range(self.num_train)], batch_size)
