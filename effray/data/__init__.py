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

Every dataset is one entry of the registry `DATASETS` (effray.data.registry): its path
(device or loader), native shape, classes, default root, capabilities ("download",
"boxes"), the files it expects, how to get it, and its finder and reader. The spec's
allowed `data.name`s, the loaders, check_data and `list_datasets()` (for `effray
datasets`) all read that table; a new dataset is one entry there.

Modules: registry (DATASETS, image_side), augment (batch ops), pipeline (DataPipeline),
bundle (DataBundle, device path), loader (loader path), readers (on-disk formats),
synthetic, locate (finding files, check_data, list_datasets), splits (splits, subsets,
statistics), build (build_data). The names below are imported on first use, so importing
the registry alone stays free of torch.
"""

import importlib

_HOME = {  # public name -> the module that defines it; imported on first use (below)
    "Normalize": "augment",
    "hflip_batch": "augment",
    "random_crop_batch": "augment",
    "build_data": "build",
    "DataBundle": "bundle",
    "TensorBundle": "bundle",
    "ImageFiles": "loader",
    "ImageReadError": "loader",
    "LoaderBundle": "loader",
    "check_data": "locate",
    "find": "locate",
    "list_datasets": "locate",
    "DataPipeline": "pipeline",
    "CARS_COLUMNS": "readers",
    "CIFAR10_CLASSES": "readers",
    "CIFAR_DIR": "readers",
    "CIFAR_FILES": "readers",
    "FASHION_CLASSES": "readers",
    "IDX_FILES": "readers",
    "IMAGE_EXTENSIONS": "readers",
    "MNIST_CLASSES": "readers",
    "read_idx": "readers",
    "CAPABILITIES": "registry",
    "DATASETS": "registry",
    "DEFAULT_IMAGE_SIZE": "registry",
    "DEFAULT_ROOTS": "registry",
    "DEVICE_DATASETS": "registry",
    "DOWNLOAD_ROOT": "registry",
    "DatasetInfo": "registry",
    "capabilities": "registry",
    "datasets_with": "registry",
    "image_side": "registry",
    "SYNTHETIC_NOISE": "synthetic",
    "SYNTHETIC_SEED": "synthetic",
}


def __getattr__(name: str):
    # Lazy (PEP 562): `effray validate` reads effray.data.registry, which must not pull
    # torch, numpy and torchvision in through this package's __init__.
    if name in _HOME:
        value = getattr(importlib.import_module(f"effray.data.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'effray.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "CAPABILITIES",
    "CARS_COLUMNS",
    "CIFAR10_CLASSES",
    "CIFAR_DIR",
    "CIFAR_FILES",
    "DATASETS",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_ROOTS",
    "DEVICE_DATASETS",
    "DOWNLOAD_ROOT",
    "FASHION_CLASSES",
    "IDX_FILES",
    "IMAGE_EXTENSIONS",
    "MNIST_CLASSES",
    "SYNTHETIC_NOISE",
    "SYNTHETIC_SEED",
    "DataBundle",
    "DataPipeline",
    "DatasetInfo",
    "ImageFiles",
    "ImageReadError",
    "LoaderBundle",
    "Normalize",
    "TensorBundle",
    "build_data",
    "capabilities",
    "check_data",
    "datasets_with",
    "find",
    "hflip_batch",
    "image_side",
    "list_datasets",
    "random_crop_batch",
    "read_idx",
]
