"""The loader path: image files decoded by DataLoader workers (ImageFiles, LoaderBundle)."""

from __future__ import annotations

import re

import torch

from effray.data.bundle import DataBundle
from effray.data.splits import to_grayscale
from effray.errors import SpecError, problem


class ImageReadError(OSError):
    """An image file could not be decoded (raised in a worker, turned into a SpecError)."""


class ImageFiles(torch.utils.data.Dataset):
    """Loader path: (path, label, box) samples; items are (index, seed) pairs."""

    def __init__(self, samples, size, *, grayscale, box=None, transform=()):
        self.samples, self.size, self.grayscale = samples, size, grayscale
        self.box = box  # None, or erase_background (bool) to crop to the sample's box
        self.transform = list(transform)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item):
        from PIL import Image
        from torchvision.transforms.v2 import functional as TF

        index, seed = item
        path, label, box = self.samples[index]
        try:
            with Image.open(path) as im:
                im = im.convert("RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise ImageReadError(f"cannot read image {path}: {exc}") from None
        if self.box is not None and box is not None:
            im = _crop_to_box(im, box, erase_background=self.box)
        x = TF.pil_to_tensor(im)
        if self.grayscale:  # before the resize, as on the device path
            x = to_grayscale(x[None])[0]
        x = TF.resize(x, list(self.size), antialias=True)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # v2 transforms draw from torch's global generator
            for t in self.transform:
                x = t(x)
        return x, label


def load_batches(dataset, order, batch_size, workers, device, base_seed=0):
    """Batches of `dataset` in `order` ((index, seed) pairs), moved to `device`."""
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
            yield x.to(device, non_blocking=True), y.to(device)
    except ImageReadError as exc:  # from a worker it arrives wrapped with its traceback
        found = re.search(r"cannot read image .*", str(exc))
        raise SpecError([problem("data.root", found.group(0) if found else str(exc))]) from None


def _crop_to_box(im, box, *, erase_background: bool):
    x1, y1, x2, y2 = box  # 1-based inclusive, as in cars_annos.mat
    left, top = max(0, int(x1) - 1), max(0, int(y1) - 1)
    right, bottom = min(im.width, int(x2)), min(im.height, int(y2))
    if right <= left or bottom <= top:
        return im  # a degenerate box: keep the whole image
    crop = im.crop((left, top, right, bottom))
    if not erase_background:
        return crop
    from PIL import Image

    canvas = Image.new("RGB", im.size, (255, 255, 255))
    canvas.paste(crop, (left, top))
    return canvas


class LoaderBundle(DataBundle):
    """Loader path: a DataLoader per pass, batches moved to the device."""

    def __init__(self, train, train_plain, val, class_names, *, workers, device, mean, std):
        self.train, self.train_plain, self.val = train, train_plain, val
        self.workers, self.device = workers, device
        self.class_names, self.mean, self.std = class_names, mean, std
        self.num_classes = len(class_names)
        self.in_channels = 1 if train.grayscale else 3
        self.image_size = tuple(train.size)
        self.num_train, self.num_val = len(train), len(val)

    def _iterate(self, dataset, order, batch_size, base_seed):
        return load_batches(dataset, order, batch_size, self.workers, self.device, base_seed)

    def train_batches(self, batch_size, gen):
        order = torch.randperm(self.num_train, generator=gen, device=gen.device).tolist()
        base = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
        pairs = [(i, (base + k) % 2**63) for k, i in enumerate(order)]
        pairs = pairs[: self.train_count(batch_size)]
        return self._iterate(self.train, pairs, batch_size, base)

    def val_batches(self, batch_size):
        return self._iterate(self.val, [(i, i) for i in range(self.num_val)], batch_size, 0)

    def train_eval_batches(self, batch_size):
        order = [(i, i) for i in range(self.num_train)]
        return self._iterate(self.train_plain, order, batch_size, 0)
