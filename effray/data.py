"""Datasets and the device-resident loader with batched augmentation.

    pipeline = DataPipeline()
    for t in techniques:
        t.on_data(pipeline)
    bundle = build_data(spec.data, pipeline, device=torch.device("cpu"), seed=0)
    for x, y in bundle.train_batches(128, gen): ...

Two paths (DESIGN.md, "Data path"):

- device path (fashion_mnist, mnist, cifar10, synthetic): each split is one uint8 tensor
  on the training device; an epoch is a permutation drawn from the trial's generator and
  the batch ops (crop, flip, normalize, …) run batched on that device, as in
  KellerJordan/cifar10-airbench. No DataLoader, no per-sample Python.
- loader path (stanford_cars, image_folder): a DataLoader with `workers` processes decodes
  the image files, resizes them to `image_size` and applies torchvision.transforms.v2 per
  sample; each sample's randomness is seeded from the trial's generator, so an epoch is
  the same whatever the number of workers.

Each path uses its own kind of step: batch ops on the device path, transforms on the loader
path, so a data technique adds both. Normalization is one position in that order; when
its mean/std are not given they are measured on the un-augmented train images used.

Formats read here (nothing is downloaded unless data.download is true):

- fashion_mnist, mnist: IDX files, gzipped or not, in root/ or in torchvision's layout
  root/FashionMNIST/raw/, root/MNIST/raw/.
- cifar10: the python pickles in root/cifar-10-batches-py/ (read here, so no md5 check).
- stanford_cars: both layouts work and are tested. The thesis's prepared layout
  root/{train,test}/*.jpg with root/{train,test}_labels.csv (columns image_fname, class
  (1..196), bbox_x1, bbox_y1, bbox_x2, bbox_y2, class_name), or the raw layout
  root/cars_annos.mat + root/car_ims/*.jpg. Boxes are 1-based inclusive pixels and are
  used on the train split only.
- image_folder: root/train/<class>/*.jpg|png and root/val/<class>/… (or root/test/…).
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import pickle
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from effray.errors import Problem, SpecError, problem

if TYPE_CHECKING:
    from effray.spec import DataSpec

DEFAULT_ROOTS: dict[str, str] = {
    "fashion_mnist": "/usr/share/datasets/fashion-mnist",  # Debian's dataset-fashion-mnist
    "mnist": "~/data",
    "cifar10": "~/data",
    "stanford_cars": "~/data",
    "image_folder": "~/data",
    "synthetic": "~/data",
}
DOWNLOAD_ROOT = "~/data"  # where downloads go when data.root is unset
DEVICE_DATASETS = ("fashion_mnist", "mnist", "cifar10", "synthetic")
DEFAULT_IMAGE_SIZE = {"stanford_cars": 227, "image_folder": 224}  # pixels; the thesis used 227
SYNTHETIC_SEED = 1234  # the toy problem is one fixed dataset; trial seeds pick and order it
SYNTHETIC_NOISE = 1.0  # pixel noise, in units of the prototypes' std
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
MNIST_CLASSES = [str(i) for i in range(10)]
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_DIRS = {"fashion_mnist": ("", "FashionMNIST/raw"), "mnist": ("MNIST/raw", "")}
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CARS_COLUMNS = ("image_fname", "class", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


# ---------------------------------------------------------------------------------
# Batched augmentation (the pure functions; techniques wrap them)
# ---------------------------------------------------------------------------------


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


def _to_float(x: Tensor) -> Tensor:
    return x.float().div_(255)


# ---------------------------------------------------------------------------------
# The pipeline techniques configure (before any data is built)
# ---------------------------------------------------------------------------------


@dataclass
class _Step:
    kind: str  # "op" (device path), "transform" (loader path) or "normalize" (both)
    fn: Callable | None
    train: bool
    eval: bool


class DataPipeline:
    """What data techniques configure in `on_data`; `build_data` turns it into a bundle."""

    def __init__(self) -> None:
        self.steps: list[_Step] = []
        self.mean: list[float] | None = None  # None: computed from the train split
        self.std: list[float] | None = None
        self.grayscale = False  # one channel on both splits, before anything else
        self.bbox_crop = False  # stanford_cars train images cropped to their box
        self.erase_background = False  # the crop pasted on white at its place, original size

    def add_batch_op(self, op, *, train: bool = True, eval: bool = False) -> None:
        """Device path: `op(x float32 (N,C,H,W), gen) -> x`, run in the order added."""
        self.steps.append(_Step("op", op, train, eval))

    def add_transform(self, transform, *, train: bool = True, eval: bool = False) -> None:
        """Loader path: a torchvision.transforms.v2 transform on one image, in order.

        Transforms before normalization see uint8 (C,H,W) tensors, those after it floats.
        """
        self.steps.append(_Step("transform", transform, train, eval))

    def set_normalize(self, mean: list[float] | None = None, std: list[float] | None = None):
        """Normalize both splits here in the order; a None is measured on the train split."""
        self.steps = [s for s in self.steps if s.kind != "normalize"]
        self.steps.append(_Step("normalize", None, True, True))
        self.mean, self.std = mean, std

    def set_grayscale(self) -> None:
        self.grayscale = True

    def set_bbox_crop(self, erase_background: bool = False) -> None:
        self.bbox_crop, self.erase_background = True, erase_background

    @property
    def normalizes(self) -> bool:
        return any(s.kind == "normalize" for s in self.steps)

    def chain(self, kind: str, train: bool, norm: Normalize | None) -> list[Callable]:
        """The steps of one path and split, normalization in its place (loader: + to float)."""
        out: list[Callable] = []
        floated = kind == "op"  # device ops receive floats; loader transforms start uint8
        for s in self.steps:
            if s.kind == "normalize":
                out += [norm] if floated else [_to_float, norm]
                floated = True
            elif s.kind == kind and (s.train if train else s.eval):
                out.append(s.fn)
        return out if floated else [*out, _to_float]


# ---------------------------------------------------------------------------------
# The bundle the training loop iterates
# ---------------------------------------------------------------------------------


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
            xb = _to_float(x[idx])
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
        x = TF.resize(TF.pil_to_tensor(im), list(self.size), antialias=True)
        if self.grayscale:
            x = TF.rgb_to_grayscale(x)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # v2 transforms draw from torch's global generator
            for t in self.transform:
                x = t(x)
        return x, label


def _load(dataset, order, batch_size, workers, device, base_seed=0):
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
        return _load(dataset, order, batch_size, self.workers, self.device, base_seed)

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


# ---------------------------------------------------------------------------------
# Validation without loading
# ---------------------------------------------------------------------------------


def capabilities(spec: DataSpec) -> set[str]:
    return {"boxes"} if spec.name == "stanford_cars" else set()


def _roots(spec: DataSpec) -> list[Path]:
    """Where to look: data.root, or the dataset's default (and ~/data for downloads)."""
    if spec.root is not None:
        return [Path(spec.root).expanduser()]
    roots = [DEFAULT_ROOTS[spec.name], DOWNLOAD_ROOT]
    return [Path(r).expanduser() for r in dict.fromkeys(roots)]


def _shown_root(spec: DataSpec) -> str:
    return spec.root if spec.root is not None else DEFAULT_ROOTS[spec.name]


def _idx_path(folder: Path, base: str) -> Path | None:
    for name in (base + ".gz", base):
        if (folder / name).is_file():
            return folder / name
    return None


def _find(spec: DataSpec) -> Path | None:
    """The folder holding the dataset's files (a root, or a folder under it), or None."""
    for root in _roots(spec):
        if spec.name in IDX_DIRS:
            for sub in IDX_DIRS[spec.name]:
                names = [n for pair in IDX_FILES.values() for n in pair]
                if all(_idx_path(root / sub, n) for n in names):
                    return root / sub
        elif spec.name == "cifar10":
            if all((root / CIFAR_DIR / f).is_file() for f in CIFAR_FILES[:-1]):
                return root / CIFAR_DIR
        elif spec.name == "stanford_cars":
            prepared = ["train_labels.csv", "test_labels.csv", "train", "test"]
            if all((root / p).exists() for p in prepared):
                return root
            if (root / "cars_annos.mat").is_file() and (root / "car_ims").is_dir():
                return root
        elif spec.name == "image_folder":
            if (root / "train").is_dir() and _class_dirs(root / "train"):
                return root
    return None


def _expected(name: str) -> str:
    if name in IDX_DIRS:
        files = ", ".join(n + "[.gz]" for pair in IDX_FILES.values() for n in pair)
        where = "FashionMNIST/raw/" if name == "fashion_mnist" else "MNIST/raw/"
        return f"{files}, in the root or in {where}"
    return {
        "cifar10": f"{CIFAR_DIR}/data_batch_1..5, test_batch, batches.meta",
        "stanford_cars": "train/, test/, train_labels.csv, test_labels.csv "
        "(or cars_annos.mat and car_ims/)",
        "image_folder": "train/<class>/*.jpg|png and val/<class>/…",
    }.get(name, "")


def check_data(spec: DataSpec) -> list[Problem]:
    """Validation-time checks: the files are there (or will be downloaded). No loading."""
    if spec.name == "synthetic":
        return []
    shown = _shown_root(spec)
    found = _find(spec)
    if found is None:
        downloadable = spec.name in ("fashion_mnist", "mnist", "cifar10")
        if spec.download and downloadable:
            return []
        fix = (
            "set data.root or data.download: true"
            if downloadable
            else "set data.root to the prepared folder (it cannot be downloaded)"
        )
        return [
            problem(
                "data.root",
                f"dataset {spec.name!r} not found under {shown} "
                f"(expected {_expected(spec.name)}); {fix}",
                value=shown,
            )
        ]
    if spec.name == "image_folder" and spec.val_split == "test" and _val_dir(found) is None:
        return [
            problem(
                "data.val_split",
                f"image_folder under {shown} has no val/ (or test/) folder; "
                "add root/val/<class>/… or set data.val_split to a fraction such as 0.1",
                value=spec.val_split,
            )
        ]
    return []


# ---------------------------------------------------------------------------------
# Readers
# ---------------------------------------------------------------------------------


def _corrupt(path: Path, why: str) -> SpecError:
    return SpecError([problem("data.root", f"cannot read {path}: {why}")])


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An IDX file (gzipped or not) as a uint8 array; checks the magic number and size."""
    try:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise _corrupt(path, f"damaged file ({exc})") from None
    found = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if found != magic:
        raise _corrupt(path, f"not an IDX file of this kind (magic {found}, expected {magic})")
    ndim = raw[3]
    head = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != head + math.prod(dims):
        raise _corrupt(
            path, f"truncated or padded: {len(raw) - head} bytes of data for shape {dims}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def _load_idx(folder: Path, split: str, num_classes: int):
    images_name, labels_name = IDX_FILES[split]
    images_path, labels_path = _idx_path(folder, images_name), _idx_path(folder, labels_name)
    images = read_idx(images_path, 2051)
    labels = read_idx(labels_path, 2049)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise _corrupt(
            images_path,
            f"images {images.shape} do not match labels {labels.shape} in {labels_path.name}",
        )
    if labels.size and labels.max() >= num_classes:
        raise _corrupt(labels_path, f"label {labels.max()} outside 0..{num_classes - 1}")
    return images[:, None], labels.astype(np.int64)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
    except Exception as exc:  # any unpickling failure means a damaged file
        raise _corrupt(path, f"not a CIFAR-10 pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(entry, dict):
        raise _corrupt(path, "not a CIFAR-10 pickle (no dict inside)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def _load_cifar(folder: Path, split: str):
    names = CIFAR_FILES[:5] if split == "train" else ["test_batch"]
    xs, ys = [], []
    for name in names:
        entry = _read_pickle(folder / name)
        data = np.asarray(entry.get("data", ()), dtype=np.uint8)
        labels = np.asarray(entry.get("labels", ()), dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
            raise _corrupt(
                folder / name, f"data {data.shape} and labels {labels.shape} are not CIFAR-10's"
            )
        if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
            raise _corrupt(folder / name, f"labels outside 0..9 ({labels.min()}..{labels.max()})")
        xs.append(data.reshape(-1, 3, 32, 32))
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def _cifar_classes(folder: Path) -> list[str]:
    if (folder / "batches.meta").is_file():
        names = _read_pickle(folder / "batches.meta").get("label_names")
        if names and len(names) == 10:
            return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    return list(CIFAR10_CLASSES)


def _synthetic(spec: DataSpec, n: int, gen: torch.Generator, protos: Tensor):
    """Class prototypes plus pixel noise: learnable in a few epochs by a small CNN."""
    labels = torch.randperm(n, generator=gen) % spec.num_classes
    noise = torch.randn(n, spec.channels, spec.size, spec.size, generator=gen)
    x = 128 + 48 * (protos[labels] + SYNTHETIC_NOISE * noise)
    return x.round().clamp(0, 255).to(torch.uint8).numpy(), labels.numpy()


def _synthetic_splits(spec: DataSpec):
    gen = torch.Generator().manual_seed(SYNTHETIC_SEED)
    k, c, s = spec.num_classes, spec.channels, spec.size
    low = torch.randn(k, c, 4, 4, generator=gen)
    protos = F.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)
    protos = (protos + protos.flip(-1)) / 2  # mirror-symmetric: horizontal_flip keeps the class
    protos = protos / protos.std(dim=(1, 2, 3), keepdim=True)
    train = _synthetic(spec, spec.train_size, gen, protos)
    val = _synthetic(spec, spec.val_size, gen, protos)
    return train, val, [f"class_{i}" for i in range(k)]


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _val_dir(root: Path) -> Path | None:
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / name
    return None


def _folder_samples(folder: Path, class_to_idx: dict[str, int]):
    samples = []
    for cls in _class_dirs(folder):
        if cls not in class_to_idx:
            raise SpecError(
                [problem("data.root", f"class folder {folder / cls} has no match in train/")]
            )
        for p in sorted((folder / cls).iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((str(p), class_to_idx[cls], None))
    return samples


def _image_folder(root: Path):
    classes = _class_dirs(root / "train")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    train = _folder_samples(root / "train", class_to_idx)
    val_dir = _val_dir(root)
    val = _folder_samples(val_dir, class_to_idx) if val_dir else []
    if not train:
        raise SpecError([problem("data.root", f"no images under {root / 'train'}/<class>/")])
    return train, val, classes


def _cars_csv(path: Path, images: Path, names: dict[int, str]):
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        missing = [c for c in CARS_COLUMNS if rows and c not in rows[0]]
        if missing or not rows:
            why = f"missing columns {', '.join(missing)}" if rows else "no rows"
            raise _corrupt(path, f"{why} (expected {', '.join(CARS_COLUMNS)}, class_name)")
        samples = []
        for r in rows:
            cls = int(r["class"])
            if cls < 1:
                raise ValueError(f"class {cls} in row {r}: class ids are 1-based (1..196)")
            box = tuple(float(r[c]) for c in CARS_COLUMNS[2:])
            samples.append((str(images / r["image_fname"]), cls - 1, box))
            if r.get("class_name"):
                names[cls - 1] = r["class_name"]
    except (OSError, ValueError, csv.Error) as exc:
        raise _corrupt(path, str(exc)) from None
    return samples


def _cars_mat(root: Path, names: dict[int, str]):
    import scipy.io

    path = root / "cars_annos.mat"
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True)
        annos = np.atleast_1d(mat["annotations"])
        train, test = [], []
        for a in annos:
            box = tuple(float(a[f"bbox_{c}"]) for c in ("x1", "y1", "x2", "y2"))
            sample = (str(root / str(a["relative_im_path"])), int(a["class"]) - 1, box)
            (test if int(a["test"]) else train).append(sample)
        for i, n in enumerate(np.atleast_1d(mat.get("class_names", []))):
            names[i] = str(n)
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise _corrupt(path, f"not the Stanford Cars annotations ({exc})") from None
    return train, test


def _stanford_cars(root: Path):
    names: dict[int, str] = {}
    if (root / "train_labels.csv").is_file():
        train = _cars_csv(root / "train_labels.csv", root / "train", names)
        test = _cars_csv(root / "test_labels.csv", root / "test", names)
    else:
        train, test = _cars_mat(root, names)
    num_classes = max(s[1] for s in train + test) + 1
    return train, test, [names.get(i, f"class_{i + 1}") for i in range(num_classes)]


# ---------------------------------------------------------------------------------
# Splits, subsets, statistics
# ---------------------------------------------------------------------------------


def _pick(spec: DataSpec, n_train: int, n_test: int, seed: int):
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


def _stats(chunks) -> tuple[list[float], list[float]]:
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


def _resolve_normalize(pipeline: DataPipeline, channels: int, measure) -> tuple:
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


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)  # ITU-R 601, as PIL's "L"
    out = [(c.float() * w).sum(1, keepdim=True).round().to(torch.uint8) for c in x.split(4096)]
    return torch.cat(out)


def _resize(x: Tensor, size: int) -> Tensor:
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


# ---------------------------------------------------------------------------------
# build_data
# ---------------------------------------------------------------------------------


def _ensure_files(spec: DataSpec) -> Path:
    found = _find(spec)
    if found is not None:
        return found
    if not (spec.download and spec.name in ("fashion_mnist", "mnist", "cifar10")):
        raise SpecError(check_data(spec) or [problem("data.root", "dataset not found")])
    import torchvision.datasets as tvd
    from filelock import FileLock

    root = Path(spec.root or DOWNLOAD_ROOT).expanduser()
    cls = {"fashion_mnist": tvd.FashionMNIST, "mnist": tvd.MNIST, "cifar10": tvd.CIFAR10}
    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / ".effray-download.lock")):
            for train in (True, False):
                cls[spec.name](str(root), train=train, download=True)
    except Exception as exc:  # no network, no space, a mirror down: all the user's to fix
        raise SpecError(
            [
                problem(
                    "data.download",
                    f"could not download {spec.name!r} into {root}: {exc}; "
                    f"put the files there ({_expected(spec.name)}) or set data.root",
                )
            ]
        ) from None
    found = _find(spec.model_copy(update={"root": str(root)}))
    if found is None:
        raise SpecError([problem("data.root", f"download into {root} left no usable files")])
    return found


def _device_arrays(spec: DataSpec, folder: Path | None):
    if spec.name == "synthetic":
        return _synthetic_splits(spec)
    if spec.name == "cifar10":
        return _load_cifar(folder, "train"), _load_cifar(folder, "test"), _cifar_classes(folder)
    classes = FASHION_CLASSES if spec.name == "fashion_mnist" else MNIST_CLASSES
    return _load_idx(folder, "train", 10), _load_idx(folder, "test", 10), list(classes)


def build_data(
    spec: DataSpec, pipeline: DataPipeline, *, device: torch.device, seed: int
) -> DataBundle:
    """Load the dataset named by `spec`, ready to iterate on `device`.

    Missing or damaged files raise SpecError (path data.root), never a raw traceback.
    """
    device = torch.device(device)
    if pipeline.bbox_crop and "boxes" not in capabilities(spec):
        raise SpecError(
            [
                problem(
                    "techniques",
                    f"bbox_crop needs a dataset with boxes; {spec.name!r} has none",
                    allowed="datasets with boxes: stanford_cars",
                )
            ]
        )
    folder = None if spec.name == "synthetic" else _ensure_files(spec)
    if spec.name in DEVICE_DATASETS:
        return _build_tensors(spec, pipeline, folder, device, seed)
    return _build_loader(spec, pipeline, folder, device, seed)


def _build_tensors(spec, pipeline, folder, device, seed) -> TensorBundle:
    (x_tr, y_tr), (x_te, y_te), classes = _device_arrays(spec, folder)
    train_idx, val_idx, val_from = _pick(spec, len(x_tr), len(x_te), seed)
    src_x, src_y = (x_te, y_te) if val_from == "test" else (x_tr, y_tr)
    splits = []
    for x, y, idx in ((x_tr, y_tr, train_idx), (src_x, src_y, val_idx)):
        xt = torch.from_numpy(np.ascontiguousarray(x[idx]))
        xt = _gray(xt) if pipeline.grayscale else xt
        xt = _resize(xt, spec.image_size) if spec.image_size else xt
        splits.append((xt.to(device), torch.from_numpy(y[idx]).to(device)))
    channels = splits[0][0].shape[1]
    mean, std = _resolve_normalize(pipeline, channels, lambda: _stats(splits[0][0].split(4096)))
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
    if spec.name == "stanford_cars":
        train_all, test_all, classes = _stanford_cars(folder)
    else:
        train_all, test_all, classes = _image_folder(folder)
    train_idx, val_idx, val_from = _pick(spec, len(train_all), len(test_all), seed)
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
    side = spec.image_size or DEFAULT_IMAGE_SIZE[spec.name]
    common = {"size": (side, side), "grayscale": pipeline.grayscale}
    train_box = pipeline.erase_background if pipeline.bbox_crop else None
    plain = ImageFiles(train, box=train_box, **common)

    def measure():  # over the un-augmented uint8 train images
        order = [(i, i) for i in range(len(plain))]
        return _stats(x for x, _ in _load(plain, order, 64, spec.workers, device))

    mean, std = _resolve_normalize(pipeline, 1 if pipeline.grayscale else 3, measure)
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
