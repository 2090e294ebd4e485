"""Where a dataset's files are, and validation without loading (check_data, capabilities)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from effray.data.readers import (
    CIFAR_DIR,
    CIFAR_FILES,
    IDX_DIRS,
    IDX_FILES,
    _class_dirs,
    _idx_path,
    _val_dir,
)
from effray.errors import Problem, problem

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
