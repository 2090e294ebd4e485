"""A small folder in the Stanford Cars layout, to try the thesis's specs without the dataset.

    $ effray make-sample-cars data/cars-sample
    $ effray train experiments/thesis_c50_stanford_cars.yaml \\
        --set data.root=data/cars-sample --set train.epochs=2

The layout is the one the thesis trains from (seed 004, section 3.2: the output of its
prepare_stanford_dataset.py), read by effray's `stanford_cars` reader like the real one:

    train/000001.jpg …        JPEGs named like car_ims/, numbered across both splits
    test/000002.jpg …
    train_labels.csv          image_fname, class (1-based), bbox_x1, bbox_y1, bbox_x2,
    test_labels.csv           bbox_y2 (1-based inclusive pixels), class_name

Each image is a "car": a box in its class's colour on a noisy background, with a width and
aspect ratio that vary like the photos' (the real ones are mostly wider than tall), and
that box is its bounding box. A net can tell the classes apart, so a tiny run learns.
"""

from __future__ import annotations

import colorsys
import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from effray.data.readers import CARS_COLUMNS

LABEL_COLUMNS = (*CARS_COLUMNS, "class_name")  # prepare_stanford_dataset.py's CSV header
Box = tuple[int, int, int, int]  # x1, y1, x2, y2: 1-based inclusive pixels, as cars_annos.mat
RGB = tuple[int, int, int]


@dataclass(frozen=True)
class CarRow:
    """One row of a labels CSV."""

    image_fname: str
    cls: int  # 1-based, as in the raw data
    box: Box
    class_name: str


@dataclass(frozen=True)
class SampleCars:
    """What make_sample_cars wrote."""

    root: Path
    classes: int
    train: int  # images in train/
    test: int  # images in test/


def class_colour(cls: int) -> RGB:
    """A saturated colour per 1-based class id, hues spread by the golden ratio."""
    r, g, b = colorsys.hsv_to_rgb(((cls - 1) * 0.618034) % 1.0, 0.85, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def write_car_image(
    path: Path,
    size: tuple[int, int],
    box: Box,
    colour: RGB,
    background: RGB = (0, 0, 255),
    noise: int = 0,
    seed: int = 0,
) -> None:
    """A JPEG of `size` (width, height): `background` (± uniform `noise` per pixel) with
    the car, a rectangle of `colour` filling `box`."""
    from PIL import Image

    width, height = size
    pixels = np.empty((height, width, 3), dtype=np.int16)
    pixels[:] = background
    if noise:
        rng = np.random.default_rng(seed)
        pixels += rng.integers(-noise, noise + 1, size=pixels.shape, dtype=np.int16)
    x1, y1, x2, y2 = box
    pixels[y1 - 1 : y2, x1 - 1 : x2] = colour
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(path, quality=95)


def write_labels(path: Path, rows: list[CarRow]) -> None:
    """A labels CSV as prepare_stanford_dataset.py writes it."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(LABEL_COLUMNS)
        for r in rows:
            writer.writerow([r.image_fname, r.cls, *r.box, r.class_name])


def _random_box(rng: np.random.Generator, width: int, height: int) -> Box:
    w = int(width * rng.uniform(0.5, 0.9))
    h = int(height * rng.uniform(0.4, 0.8))
    x1 = 1 + int(rng.integers(0, width - w + 1))
    y1 = 1 + int(rng.integers(0, height - h + 1))
    return x1, y1, x1 + w - 1, y1 + h - 1


def make_sample_cars(
    root: str | Path,
    *,
    classes: int = 4,
    train: int = 96,
    test: int = 32,
    width: tuple[int, int] = (240, 400),
    seed: int = 0,
) -> SampleCars:
    """Write a sample in the thesis's Stanford Cars layout into `root` (new or empty).

    Classes take turns (image k has class k % classes + 1), so each split holds every
    class when it has as many images; widths are uniform in `width` (pixels), heights
    0.55-0.8 of the width. The same arguments write the same files.
    """
    root = Path(root).expanduser()
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not an empty directory")
    if classes < 1 or train < 1 or test < 1:
        raise ValueError(f"classes, train and test must be >= 1 (got {classes}, {train}, {test})")
    if not 16 <= width[0] <= width[1]:
        raise ValueError(f"width must be (min, max) with 16 <= min <= max (got {list(width)})")
    rng = np.random.default_rng(seed)
    splits = rng.permutation(["train"] * train + ["test"] * test)
    counts = {"train": 0, "test": 0}
    rows: dict[str, list[CarRow]] = {"train": [], "test": []}
    for number, split in enumerate(splits, start=1):
        cls = counts[split] % classes + 1
        counts[split] += 1
        w = int(rng.integers(width[0], width[1] + 1))
        h = max(16, int(w * rng.uniform(0.55, 0.8)))
        box = _random_box(rng, w, h)
        background = tuple(int(v) for v in rng.integers(60, 200, size=3))
        jitter = rng.integers(-20, 21, size=3)
        colour = tuple(
            int(np.clip(c + j, 0, 255)) for c, j in zip(class_colour(cls), jitter, strict=True)
        )
        name = f"{number:06d}.jpg"
        write_car_image(root / split / name, (w, h), box, colour, background, 24, number)
        rows[split].append(CarRow(name, cls, box, f"Sample Car {cls:03d}"))
    for split, split_rows in rows.items():
        write_labels(root / f"{split}_labels.csv", split_rows)
    return SampleCars(root, classes, train, test)
