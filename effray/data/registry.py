"""The dataset registry: one entry per `data.name`, read by the spec, the loaders and the CLI.

    >>> from effray.data import DATASETS, image_side
    >>> DATASETS["cifar10"].shape
    (3, 32, 32)

A new dataset is one `DatasetInfo` here plus a finder (does this folder hold the files?)
and a reader (the files as arrays or samples); tests/test_datasets.py is parametrised over
this table, so it is tested as soon as it has a writer of its tiny on-disk copy there.

This module imports no torch, numpy or torchvision (`effray validate` reads it): finders
and readers are named as "module:function" and imported when first called.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from pathlib import Path

    from effray.errors import Problem
    from effray.spec import DataSpec

CAPABILITIES = {
    "download": "torchvision can fetch the files (data.download: true)",
    "boxes": "each image has a bounding box (bbox_crop)",
}
DOWNLOAD_ROOT = "~/data"  # where downloads go when data.root is unset
IDX_TEXT = (
    "train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
    "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz], in the root or in {raw}"
)


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class DatasetInfo:
    """What effray knows about one dataset before reading a pixel."""

    name: str
    path: Literal["device", "loader"]  # device: uint8 tensors on the device; loader: DataLoader
    shape: tuple[int, int, int] | None  # (C, H, W) as stored; None: set by the files or spec
    classes: int | None  # None: set by the files (class folders) or the spec
    root: str  # where it is looked for when data.root is unset (then also DOWNLOAD_ROOT)
    folders: tuple[str, ...]  # sub-folders of a root that may hold the files, in order
    expected: str  # the files looked for, as "not found" messages name them
    how: str  # how to get it onto this machine
    finder: str | None  # "module:function(folder) -> bool"; None: generated, nothing on disk
    reader: str  # "module:function(folder)" (or (spec) when generated) -> train, test, classes
    capabilities: frozenset[str] = frozenset()  # names from CAPABILITIES
    torchvision: str | None = None  # torchvision.datasets class that downloads it
    image_size: int | None = None  # pixels per side the loader resizes to by default
    check: str | None = None  # "module:function(spec, folder) -> [Problem]": more checks
    sizes: tuple[int, int] | None = None  # (train, test) images; None: set by the files or spec

    def __post_init__(self) -> None:
        unknown = self.capabilities - set(CAPABILITIES)
        if unknown:
            raise ValueError(f"{self.name}: unknown capabilities {sorted(unknown)}")
        if ("download" in self.capabilities) != (self.torchvision is not None):
            raise ValueError(f"{self.name}: 'download' needs a torchvision class, and only it")
        if (self.path == "loader") != (self.image_size is not None):
            raise ValueError(f"{self.name}: loader datasets (only) need a default image_size")

    @property
    def generated(self) -> bool:
        return self.finder is None

    def has_files(self, folder: Path) -> bool:
        return self.finder is not None and bool(_resolve(self.finder)(folder))

    def read(self, spec: DataSpec, folder: Path | None):
        """(train, test, class names): arrays (x, y) on the device path, (path, label, box)
        samples on the loader path."""
        read = _resolve(self.reader)
        return read(spec) if self.generated else read(folder)

    def checks(self, spec: DataSpec, folder: Path) -> list[Problem]:
        return list(_resolve(self.check)(spec, folder)) if self.check else []


_LOCATE, _READERS = "effray.data.locate", "effray.data.readers"
DATASETS: dict[str, DatasetInfo] = {
    info.name: info
    for info in (
        DatasetInfo(
            name="fashion_mnist",
            path="device",
            shape=(1, 28, 28),
            classes=10,
            root="/usr/share/datasets/fashion-mnist",  # Debian's dataset-fashion-mnist
            folders=("", "FashionMNIST/raw"),
            expected=IDX_TEXT.format(raw="FashionMNIST/raw/"),
            how="apt-get install dataset-fashion-mnist (Debian), or data.download: true",
            finder=f"{_LOCATE}:has_idx",
            reader=f"{_READERS}:read_fashion_mnist",
            capabilities=frozenset({"download"}),
            torchvision="FashionMNIST",
            sizes=(60_000, 10_000),
        ),
        DatasetInfo(
            name="mnist",
            path="device",
            shape=(1, 28, 28),
            classes=10,
            root=DOWNLOAD_ROOT,
            folders=("MNIST/raw", ""),
            expected=IDX_TEXT.format(raw="MNIST/raw/"),
            how="data.download: true (torchvision), or put the IDX files in data.root",
            finder=f"{_LOCATE}:has_idx",
            reader=f"{_READERS}:read_mnist",
            capabilities=frozenset({"download"}),
            torchvision="MNIST",
            sizes=(60_000, 10_000),
        ),
        DatasetInfo(
            name="cifar10",
            path="device",
            shape=(3, 32, 32),
            classes=10,
            root=DOWNLOAD_ROOT,
            folders=("cifar-10-batches-py",),
            expected="cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta",
            how="data.download: true (torchvision), or unpack cifar-10-python.tar.gz in data.root",
            finder=f"{_LOCATE}:has_cifar",
            reader=f"{_READERS}:read_cifar10",
            capabilities=frozenset({"download"}),
            torchvision="CIFAR10",
            sizes=(50_000, 10_000),
        ),
        DatasetInfo(
            name="stanford_cars",
            path="loader",
            shape=None,
            classes=196,  # the full dataset; a prepared subset has the classes its labels name
            root=DOWNLOAD_ROOT,
            folders=("",),
            expected="train/, test/, train_labels.csv, test_labels.csv "
            "(or cars_annos.mat and car_ims/)",
            how="cannot be downloaded: set data.root to the thesis's prepared layout "
            "(train/, test/, {train,test}_labels.csv) or to cars_annos.mat + car_ims/",
            finder=f"{_LOCATE}:has_cars",
            reader=f"{_READERS}:read_stanford_cars",
            capabilities=frozenset({"boxes"}),
            image_size=227,  # the thesis's input side
        ),
        DatasetInfo(
            name="image_folder",
            path="loader",
            shape=None,
            classes=None,
            root=DOWNLOAD_ROOT,
            folders=("",),
            expected="train/<class>/*.jpg|png and val/<class>/…",
            how="your own images: data.root/train/<class>/*.jpg and data.root/val/<class>/…",
            finder=f"{_LOCATE}:has_image_folder",
            reader=f"{_READERS}:read_image_folder",
            image_size=224,  # the usual ImageNet-style side
            check=f"{_LOCATE}:check_val_folder",
        ),
        DatasetInfo(
            name="synthetic",
            path="device",
            shape=None,
            classes=None,
            root=DOWNLOAD_ROOT,
            folders=(),
            expected="nothing: generated from data.num_classes, channels, size, train_size, "
            "val_size",
            how="generated in memory; nothing to get",
            finder=None,
            reader="effray.data.synthetic:synthetic_splits",
        ),
    )
}
DEVICE_DATASETS = tuple(n for n, i in DATASETS.items() if i.path == "device")
DEFAULT_IMAGE_SIZE = {n: i.image_size for n, i in DATASETS.items() if i.image_size}  # pixels
DEFAULT_ROOTS = {n: i.root for n, i in DATASETS.items()}


def datasets_with(capability: str) -> list[str]:
    return [n for n, i in DATASETS.items() if capability in i.capabilities]


def capabilities(spec: DataSpec) -> set[str]:
    """What the dataset named by `spec` offers, e.g. {"boxes"} (see CAPABILITIES)."""
    return set(DATASETS[spec.name].capabilities)


def image_side(data: DataSpec) -> int:
    """Pixels per side the trial's images have: data.image_size when set, else the
    dataset's native side, the loader's default side, or data.size for synthetic."""
    if data.image_size:
        return data.image_size
    info = DATASETS[data.name]
    if info.shape is not None:
        return info.shape[-1]
    return info.image_size or data.size
