"""Where a dataset's files are, and validation without loading (check_data, list_datasets).

Each dataset's finder answers one question, "does this folder hold the files?"; `find`
asks it of every root (data.root, or the registry's default and DOWNLOAD_ROOT) and every
sub-folder the registry names, in order.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from effray.data.readers import CIFAR_FILES, IDX_FILES, class_dirs, idx_path, val_folder
from effray.data.registry import DATASETS, DOWNLOAD_ROOT
from effray.errors import Problem, problem

if TYPE_CHECKING:
    from effray.spec import DataSpec


def has_idx(folder: Path) -> bool:
    return all(idx_path(folder, n) for pair in IDX_FILES.values() for n in pair)


def has_cifar(folder: Path) -> bool:
    return all((folder / f).is_file() for f in CIFAR_FILES[:-1])  # batches.meta is optional


def has_cars(folder: Path) -> bool:
    prepared = ["train_labels.csv", "test_labels.csv", "train", "test"]
    if all((folder / p).exists() for p in prepared):
        return True
    return (folder / "cars_annos.mat").is_file() and (folder / "car_ims").is_dir()


def has_image_folder(folder: Path) -> bool:
    return (folder / "train").is_dir() and bool(class_dirs(folder / "train"))


def roots(name: str, root: str | None = None) -> list[Path]:
    """Where to look: `root` (data.root), or the dataset's default and DOWNLOAD_ROOT."""
    if root is not None:
        return [Path(root).expanduser()]
    return [Path(r).expanduser() for r in dict.fromkeys([DATASETS[name].root, DOWNLOAD_ROOT])]


def find(name: str, root: str | None = None) -> Path | None:
    """The folder holding dataset `name`'s files (a root, or a folder under it), or None."""
    info = DATASETS[name]
    for base in roots(name, root):
        for sub in info.folders:
            if info.has_files(base / sub):
                return base / sub
    return None


def check_val_folder(spec: DataSpec, folder: Path) -> list[Problem]:
    """image_folder: validating on the "test" split needs a val/ (or test/) folder."""
    if spec.val_split != "test" or val_folder(folder) is not None:
        return []
    shown = spec.root if spec.root is not None else DATASETS[spec.name].root
    return [
        problem(
            "data.val_split",
            f"{spec.name} under {shown} has no val/ (or test/) folder; "
            "add root/val/<class>/… or set data.val_split to a fraction such as 0.1",
            value=spec.val_split,
        )
    ]


def check_data(spec: DataSpec) -> list[Problem]:
    """Validation-time checks: the files are there (or will be downloaded). No loading."""
    info = DATASETS[spec.name]
    if info.generated:
        return []
    shown = spec.root if spec.root is not None else info.root
    found = find(spec.name, spec.root)
    if found is not None:
        return info.checks(spec, found)
    downloadable = "download" in info.capabilities
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
            f"dataset {spec.name!r} not found under {shown} (expected {info.expected}); {fix}",
            value=shown,
        )
    ]


def list_datasets(root: str | None = None) -> list[dict[str, Any]]:
    """One row per registered dataset, for `effray datasets`; looks for files, reads none.

    `found` is the folder holding the files on this machine (under `root` when given,
    else the dataset's default root and DOWNLOAD_ROOT), None when absent, and
    "generated" for a dataset made in memory (synthetic, always available).
    """
    rows = []
    for name, info in DATASETS.items():
        found = "generated" if info.generated else find(name, root)
        rows.append(
            {
                "name": name,
                "path": info.path,
                "shape": list(info.shape) if info.shape else None,
                "classes": info.classes,
                "image_size": info.shape[-1] if info.shape else info.image_size,
                "root": None if info.generated else info.root,
                "found": str(found) if found is not None else None,
                "how": info.how,
                "capabilities": sorted(info.capabilities),
            }
        )
    return rows
