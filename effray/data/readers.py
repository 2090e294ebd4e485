"""Readers of the on-disk formats (nothing is downloaded unless data.download is true):

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
import pickle
import zlib
from pathlib import Path

import numpy as np

from effray.errors import SpecError, problem

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
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CARS_COLUMNS = ("image_fname", "class", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2")


def idx_path(folder: Path, base: str) -> Path | None:
    for name in (base + ".gz", base):
        if (folder / name).is_file():
            return folder / name
    return None


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
    images_path, labels_path = idx_path(folder, images_name), idx_path(folder, labels_name)
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


def read_fashion_mnist(folder: Path):
    """(train (x, y), test (x, y), class names) from the four IDX files in `folder`."""
    return _load_idx(folder, "train", 10), _load_idx(folder, "test", 10), list(FASHION_CLASSES)


def read_mnist(folder: Path):
    return _load_idx(folder, "train", 10), _load_idx(folder, "test", 10), list(MNIST_CLASSES)


def read_cifar10(folder: Path):
    """(train (x, y), test (x, y), class names) from the pickles in cifar-10-batches-py/."""
    return _load_cifar(folder, "train"), _load_cifar(folder, "test"), _cifar_classes(folder)


def class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def val_folder(root: Path) -> Path | None:
    for name in ("val", "test"):
        if (root / name).is_dir():
            return root / name
    return None


def _folder_samples(folder: Path, class_to_idx: dict[str, int]):
    samples = []
    for cls in class_dirs(folder):
        if cls not in class_to_idx:
            raise SpecError(
                [problem("data.root", f"class folder {folder / cls} has no match in train/")]
            )
        for p in sorted((folder / cls).iterdir()):
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                samples.append((str(p), class_to_idx[cls], None))
    return samples


def read_image_folder(root: Path):
    classes = class_dirs(root / "train")
    class_to_idx = {c: i for i, c in enumerate(classes)}
    train = _folder_samples(root / "train", class_to_idx)
    val_dir = val_folder(root)
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


def read_stanford_cars(root: Path):
    names: dict[int, str] = {}
    if (root / "train_labels.csv").is_file():
        train = _cars_csv(root / "train_labels.csv", root / "train", names)
        test = _cars_csv(root / "test_labels.csv", root / "test", names)
    else:
        train, test = _cars_mat(root, names)
    num_classes = max(s[1] for s in train + test) + 1
    return train, test, [names.get(i, f"class_{i + 1}") for i in range(num_classes)]
