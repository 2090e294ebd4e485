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

Modules: augment (batch ops), pipeline (DataPipeline), bundle (DataBundle, device path),
loader (loader path), readers (on-disk formats), synthetic, locate (finding files,
check_data), splits (splits, subsets, statistics), build (build_data).
"""

from effray.data.augment import Normalize, hflip_batch, random_crop_batch
from effray.data.build import DEFAULT_IMAGE_SIZE, DEVICE_DATASETS, build_data
from effray.data.bundle import DataBundle, TensorBundle
from effray.data.loader import ImageFiles, ImageReadError, LoaderBundle
from effray.data.locate import DEFAULT_ROOTS, DOWNLOAD_ROOT, capabilities, check_data
from effray.data.pipeline import DataPipeline
from effray.data.readers import (
    CARS_COLUMNS,
    CIFAR10_CLASSES,
    CIFAR_DIR,
    CIFAR_FILES,
    FASHION_CLASSES,
    IDX_DIRS,
    IDX_FILES,
    IMAGE_EXTENSIONS,
    MNIST_CLASSES,
    read_idx,
)
from effray.data.synthetic import SYNTHETIC_NOISE, SYNTHETIC_SEED

__all__ = [
    "CARS_COLUMNS",
    "CIFAR10_CLASSES",
    "CIFAR_DIR",
    "CIFAR_FILES",
    "DEFAULT_IMAGE_SIZE",
    "DEFAULT_ROOTS",
    "DEVICE_DATASETS",
    "DOWNLOAD_ROOT",
    "FASHION_CLASSES",
    "IDX_DIRS",
    "IDX_FILES",
    "IMAGE_EXTENSIONS",
    "MNIST_CLASSES",
    "SYNTHETIC_NOISE",
    "SYNTHETIC_SEED",
    "DataBundle",
    "DataPipeline",
    "ImageFiles",
    "ImageReadError",
    "LoaderBundle",
    "Normalize",
    "TensorBundle",
    "build_data",
    "capabilities",
    "check_data",
    "hflip_batch",
    "random_crop_batch",
    "read_idx",
]
