"""The data layer: real on-disk formats (written here), batched augmentation, the loaders."""

from __future__ import annotations

import gzip
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from effray.data import (
    DataPipeline,
    build_data,
    capabilities,
    check_data,
    hflip_batch,
    random_crop_batch,
)
from effray.data.cars_sample import CarRow, write_car_image, write_labels
from effray.errors import SpecError
from effray.spec import DataSpec
from effray.techniques import TECHNIQUES

CPU = torch.device("cpu")
REAL_FASHION = Path("/usr/share/datasets/fashion-mnist")


def build(pipeline=None, seed=0, **spec):
    return build_data(DataSpec(**spec), pipeline or DataPipeline(), device=CPU, seed=seed)


def ids(x: torch.Tensor) -> list[int]:
    """The index spelled by the first two pixels of un-normalized images (see idx_images)."""
    px = (x[:, 0, 0, :2] * 255).round().long()
    return (px[:, 0] + 256 * px[:, 1]).tolist()


def all_batches(batches):
    xs, ys = zip(*batches, strict=True)
    return torch.cat(xs), torch.cat(ys)


def with_techniques(*kinds, **args) -> DataPipeline:
    pipeline = DataPipeline()
    for kind in kinds:
        TECHNIQUES[kind](**args.get(kind, {})).on_data(pipeline)
    return pipeline


# ---------------------------------------------------------------------------------
# Formats
# ---------------------------------------------------------------------------------


def test_fashion_mnist_idx_gz_loads(data_fashion_root):
    data = build(name="fashion_mnist", root=str(data_fashion_root))
    assert (data.num_train, data.num_val, data.num_classes) == (300, 50, 10)
    assert (data.in_channels, data.image_size) == (1, (28, 28))
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    x, y = all_batches(data.train_eval_batches(64))
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (300, 1, 28, 28) and 0 <= x.min() and x.max() <= 1
    assert ids(x) == list(range(300))
    assert y.tolist() == [i % 10 for i in range(300)]
    assert data.mean is None and data.std is None


def test_mnist_in_torchvisions_raw_layout(tmp_path, data_write_idx):
    data_write_idx(tmp_path / "MNIST" / "raw", 40, 20, compress=False)
    spec = DataSpec(name="mnist", root=str(tmp_path), download=False)
    assert check_data(spec) == []
    data = build_data(spec, DataPipeline(), device=CPU, seed=0)
    assert (data.num_train, data.num_val, data.class_names[3]) == (40, 20, "3")
    x, y = all_batches(data.val_batches(7))
    assert ids(x) == list(range(20)) and y.tolist() == [i % 10 for i in range(20)]


@pytest.mark.parametrize(
    "name, sub",
    [
        ("fashion_mnist", ""),
        ("fashion_mnist", "FashionMNIST/raw"),
        ("mnist", ""),
        ("mnist", "MNIST/raw"),
    ],
)
def test_idx_files_in_the_root_or_in_torchvisions_layout(tmp_path, data_write_idx, name, sub):
    data_write_idx(tmp_path / sub, 12, 6)
    assert check_data(DataSpec(name=name, root=str(tmp_path))) == []
    assert build(name=name, root=str(tmp_path)).num_train == 12


def write_cifar(root: Path, per_batch: int = 4, n_test: int = 3) -> Path:
    """cifar-10-batches-py as the Toronto tarball holds it: python pickles of dicts."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        n = n_test if name == "test_batch" else per_batch
        entry = {
            "batch_label": f"batch {k}",
            "labels": [(k + i) % 10 for i in range(n)],
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),  # R, G, B planes per row
            "filenames": [f"img_{k}_{i}.png" for i in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=2))
    meta = {"label_names": ["plane", "car", "bird", "cat", "deer"] + list("abcde")}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def test_cifar10_pickles_load_without_md5_check(tmp_path):
    folder = write_cifar(tmp_path)
    data = build(name="cifar10", root=str(tmp_path))
    assert (data.num_train, data.num_val, data.in_channels, data.image_size) == (20, 3, 3, (32, 32))
    assert data.class_names[:2] == ["plane", "car"]
    x, y = all_batches(data.train_eval_batches(8))
    first = pickle.loads((folder / "data_batch_1").read_bytes())
    expected = torch.from_numpy(first["data"][0].reshape(3, 32, 32)).float() / 255
    assert torch.equal(x[0], expected)  # rows are channel planes, not interleaved pixels
    assert y[:4].tolist() == first["labels"]


def test_grayscale_and_image_size_on_the_device_path(tmp_path):
    write_cifar(tmp_path)
    pipeline = DataPipeline()
    pipeline.set_grayscale()
    data = build(pipeline, name="cifar10", root=str(tmp_path), image_size=16)
    assert (data.in_channels, data.image_size) == (1, (16, 16))
    assert next(data.val_batches(2))[0].shape == (2, 1, 16, 16)


def write_jpeg(path: Path, size=(40, 30), box=(11, 6, 30, 25)):
    """Blue background with a red box (1-based inclusive x1, y1, x2, y2)."""
    write_car_image(path, size, box, (255, 0, 0), background=(0, 0, 255))


BOX = (11, 6, 30, 25)


def write_cars_prepared(root: Path, n_train=6, n_test=3, classes=(1, 2, 3)) -> Path:
    """The thesis's layout (prepare_stanford_dataset.py): train/, test/ and two CSVs.

    Row i has the 1-based class id classes[i % len(classes)]. (`effray make-sample-cars`
    writes the same layout with varied sizes and boxes: effray.data.cars_sample.)"""
    for split, n in (("train", n_train), ("test", n_test)):
        rows = []
        for i in range(n):
            name = f"{split}{i:05d}.jpg"
            write_jpeg(root / split / name, box=BOX)
            cls = classes[i % len(classes)]  # 1-based in the raw data
            rows.append(CarRow(name, cls, BOX, f"Car model {cls}"))
        write_labels(root / f"{split}_labels.csv", rows)
    return root


def test_stanford_cars_prepared_layout(tmp_path):
    root = write_cars_prepared(tmp_path)
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=16, workers=0)
    assert check_data(spec) == [] and capabilities(spec) == {"boxes"}
    data = build_data(spec, DataPipeline(), device=CPU, seed=0)
    assert (data.num_train, data.num_val, data.num_classes) == (6, 3, 3)
    assert data.class_names == ["Car model 1", "Car model 2", "Car model 3"]
    assert (data.in_channels, data.image_size) == (3, (16, 16))
    x, y = all_batches(data.train_eval_batches(4))
    assert x.shape == (6, 3, 16, 16) and x.dtype == torch.float32
    assert y.tolist() == [0, 1, 2, 0, 1, 2]
    assert x[:, 2].max() > 0.9  # the blue background is there without bbox_crop


@pytest.mark.parametrize("erase", [False, True])
def test_bbox_crop_uses_boxes_on_train_only(tmp_path, erase):
    root = write_cars_prepared(tmp_path)
    pipeline = DataPipeline()
    pipeline.set_bbox_crop(erase_background=erase)
    data = build(pipeline, name="stanford_cars", root=str(root), image_size=20, workers=0)
    train, _ = all_batches(data.train_eval_batches(8))
    val, _ = all_batches(data.val_batches(8))
    red = (train[:, 0] > 0.8) & (train[:, 2] < 0.2)
    white = train.min(1).values > 0.8
    if erase:  # the car on white, at its place in an image of the original size
        assert white.float().mean() > 0.5 and red.float().mean() > 0.2  # box: 1/3 of the area
        assert (train[:, 2] > 0.8).logical_and(train[:, 0] < 0.2).sum() == 0  # no blue left
    else:  # the crop is all car (JPEG's chroma blur aside, at its border)
        assert red[:, 2:-2, 2:-2].all() and red.float().mean() > 0.75
    assert (val[:, 2] > 0.8).logical_and(val[:, 0] < 0.2).float().mean() > 0.3  # val untouched


def test_bbox_crop_needs_boxes(data_fashion_root):
    pipeline = DataPipeline()
    pipeline.set_bbox_crop()
    with pytest.raises(SpecError, match="bbox_crop needs a dataset with boxes"):
        build(pipeline, name="fashion_mnist", root=str(data_fashion_root))


def test_stanford_cars_raw_layout_cars_annos_mat(tmp_path):
    import scipy.io

    fields = ["relative_im_path", "bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "test"]
    annos = np.zeros((1, 7), dtype=[(f, "O") for f in fields])
    for i in range(7):
        path = f"car_ims/{i + 1:06d}.jpg"
        write_jpeg(tmp_path / path, box=BOX)
        annos[0, i] = (path, *BOX, i % 2 + 1, int(i >= 5))
    names = np.empty((1, 2), dtype=object)
    names[0, :] = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012"]
    scipy.io.savemat(tmp_path / "cars_annos.mat", {"annotations": annos, "class_names": names})
    data = build(name="stanford_cars", root=str(tmp_path), image_size=12, workers=0)
    assert (data.num_train, data.num_val, data.num_classes) == (5, 2, 2)
    assert data.class_names[1] == "Acura RL Sedan 2012"
    _, y = all_batches(data.train_eval_batches(3))
    assert y.tolist() == [0, 1, 0, 1, 0]


def write_image_folder(root: Path, splits=("train", "val"), per_class=4):
    from PIL import Image

    for split in splits:
        for c, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)]):
            for i in range(per_class):
                path = root / split / f"class_{'abc'[c]}" / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (20, 24), color).save(path)
    return root


def test_image_folder_with_val_dir(tmp_path):
    root = write_image_folder(tmp_path)
    data = build(name="image_folder", root=str(root), image_size=8, workers=0)
    assert (data.num_train, data.num_val) == (12, 12)
    assert data.class_names == ["class_a", "class_b", "class_c"]
    x, y = all_batches(data.val_batches(5))
    assert x.shape == (12, 3, 8, 8)
    assert torch.equal(x.mean((2, 3)).argmax(1), y)  # class c is the colour channel c


def test_image_folder_without_val_dir_needs_a_fraction(tmp_path):
    root = write_image_folder(tmp_path, splits=("train",))
    problems = check_data(DataSpec(name="image_folder", root=str(root)))
    assert [p.path for p in problems] == ["data.val_split"]
    assert "no val/" in problems[0].message
    spec = {"name": "image_folder", "root": str(root), "image_size": 8, "workers": 0}
    assert check_data(DataSpec(**spec, val_split=0.25)) == []
    data = build(**spec, val_split=0.25)
    assert (data.num_train, data.num_val) == (9, 3)
    assert data.image_size == (8, 8)


def test_loader_epoch_is_reproducible_and_independent_of_workers(tmp_path):
    root = write_cars_prepared(tmp_path, n_train=10)
    pipeline = with_techniques("random_crop", "horizontal_flip", random_crop={"padding": 3})
    spec = {"name": "stanford_cars", "root": str(root), "image_size": 16}
    epochs = []
    for workers, seed in ((0, 7), (0, 7), (2, 7), (0, 8)):
        data = build(pipeline, **spec, workers=workers)
        gen = torch.Generator().manual_seed(seed)
        epochs.append(all_batches(data.train_batches(4, gen)))
    assert torch.equal(epochs[0][0], epochs[1][0]) and torch.equal(epochs[0][1], epochs[1][1])
    assert torch.equal(epochs[0][0], epochs[2][0])  # 2 workers: the same epoch
    assert not torch.equal(epochs[0][0], epochs[3][0])
    assert sorted(epochs[0][1].tolist()) == sorted(epochs[3][1].tolist())


def test_loader_normalize_from_train_statistics_and_grayscale(tmp_path):
    root = write_image_folder(tmp_path)
    spec = {"name": "image_folder", "root": str(root), "image_size": 8, "workers": 0}
    pipeline = with_techniques("horizontal_flip", "normalize")
    data = build(pipeline, **spec)
    x, _ = all_batches(data.train_eval_batches(5))
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    pipeline.set_grayscale()
    gray = build(pipeline, **spec)
    assert gray.in_channels == 1 and len(gray.mean) == 1
    assert next(gray.train_batches(4, gen()))[0].shape == (4, 1, 8, 8)


def test_unreadable_image_is_a_spec_error(tmp_path):
    root = write_cars_prepared(tmp_path)
    (root / "test" / "test00001.jpg").write_bytes(b"not a jpeg")
    data = build(name="stanford_cars", root=str(root), image_size=8, workers=0)
    with pytest.raises(SpecError, match=r"cannot read image .*test00001\.jpg"):
        list(data.val_batches(2))
    (root / "train" / "train00002.jpg").unlink()
    with pytest.raises(SpecError, match="1 image files named by the labels are missing"):
        build(name="stanford_cars", root=str(root), image_size=8, workers=0)


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist missing")
def test_real_fashion_mnist_loads():
    start = time.perf_counter()
    data = build(with_techniques("normalize"), name="fashion_mnist")
    assert time.perf_counter() - start < 30
    assert (data.num_train, data.num_val, data.num_classes) == (60000, 10000, 10)
    assert data.mean[0] == pytest.approx(0.2860, abs=1e-3)  # the published statistics
    assert data.std[0] == pytest.approx(0.3530, abs=1e-3)
    _, y = all_batches(data.val_batches(5000))
    assert torch.bincount(y).tolist() == [1000] * 10


# ---------------------------------------------------------------------------------
# Validation and damaged files
# ---------------------------------------------------------------------------------


def test_check_data_missing_root_message(tmp_path):
    missing = str(tmp_path / "nowhere")
    (p,) = check_data(DataSpec(name="cifar10", root=missing))
    assert p.path == "data.root" and p.value == missing
    assert p.message.startswith(f"dataset 'cifar10' not found under {missing} (expected ")
    assert "cifar-10-batches-py/data_batch_1..5" in p.message
    assert p.message.endswith("set data.root or data.download: true")
    assert check_data(DataSpec(name="cifar10", root=missing, download=True)) == []
    (cars,) = check_data(DataSpec(name="stanford_cars", root=missing, download=True))
    assert "train_labels.csv" in cars.message and "cannot be downloaded" in cars.message
    assert check_data(DataSpec(name="synthetic")) == []


def test_download_goes_through_torchvision_behind_a_lock(tmp_path, monkeypatch, data_write_idx):
    import torchvision.datasets

    calls = []

    class FakeFashionMNIST:  # what torchvision leaves on disk: root/FashionMNIST/raw/*.gz
        def __init__(self, root, train, download):
            calls.append((train, download, (Path(root) / ".effray-download.lock").exists()))
            data_write_idx(Path(root) / "FashionMNIST" / "raw", 20, 10)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    data = build(name="fashion_mnist", root=str(tmp_path / "new"), download=True)
    assert (data.num_train, data.num_val) == (20, 10)
    assert calls == [(True, True, True), (False, True, True)]

    class Offline:
        def __init__(self, root, train, download):
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(SpecError, match="could not download 'fashion_mnist'") as info:
        build(name="fashion_mnist", root=str(tmp_path / "other"), download=True)
    assert info.value.problems[0].path == "data.download"


def test_default_roots(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    (p,) = check_data(DataSpec(name="mnist"))
    assert p.message.startswith("dataset 'mnist' not found under ~/data") and p.value == "~/data"


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda raw: raw[: len(raw) // 2], "damaged file"),  # a cut-off download
        (lambda raw: gzip.compress(gzip.decompress(raw)[:-100]), "truncated"),
        (lambda raw: gzip.compress(b"\x00\x00\x08\x01" + gzip.decompress(raw)[4:]), "magic"),
        (lambda raw: b"this is not gzip", "damaged file"),
    ],
)
def test_damaged_idx_is_a_spec_error_naming_the_file(data_fashion_root, damage, match):
    path = data_fashion_root / "train-images-idx3-ubyte.gz"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(SpecError, match=match) as info:
        build(name="fashion_mnist", root=str(data_fashion_root))
    (p,) = info.value.problems
    assert p.path == "data.root" and str(path) in p.message


def test_mismatched_idx_counts(tmp_path, data_write_idx):
    root = data_write_idx(tmp_path / "a", 30, 10)
    other = data_write_idx(tmp_path / "b", 29, 10)
    name = "train-images-idx3-ubyte.gz"
    (root / name).write_bytes((other / name).read_bytes())  # 29 images, 30 labels
    with pytest.raises(SpecError, match="do not match labels"):
        build(name="fashion_mnist", root=str(root))


def test_damaged_cifar_pickle(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(SpecError, match="data_batch_3: not a CIFAR-10 pickle"):
        build(name="cifar10", root=str(tmp_path))


# ---------------------------------------------------------------------------------
# Batched augmentation
# ---------------------------------------------------------------------------------


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_properties():
    x = torch.rand(64, 3, 12, 10)
    out = random_crop_batch(x, 4, gen())
    assert out.shape == x.shape
    assert torch.equal(random_crop_batch(x, 0, gen()), x)
    assert torch.equal(out, random_crop_batch(x, 4, gen()))  # same seed, same crops
    assert not torch.equal(out, random_crop_batch(x, 4, gen(1)))
    # each image is its own shifted window of the zero-padded original
    padded = torch.nn.functional.pad(x, (4,) * 4)
    offsets = set()
    for i in range(len(x)):
        hits = [
            (dy, dx)
            for dy in range(9)
            for dx in range(9)
            if torch.equal(out[i], padded[i, :, dy : dy + 12, dx : dx + 10])
        ]
        assert hits, f"image {i} is not a crop of its padded self"
        offsets.add(hits[0])
    assert len(offsets) > 20  # per-image offsets, not one per batch
    reflect = random_crop_batch(x, 2, gen(), mode="reflect")
    assert reflect.shape == x.shape and (reflect != 0).all()


def test_hflip_properties():
    x = torch.rand(200, 1, 5, 7)
    assert torch.equal(hflip_batch(x, 1.0, gen()), torch.flip(x, dims=[-1]))
    assert torch.equal(hflip_batch(x, 0.0, gen()), x)
    out = hflip_batch(x, 0.5, gen())
    flipped = [torch.equal(out[i], x[i].flip(-1)) for i in range(len(x))]
    assert all(f or torch.equal(out[i], x[i]) for i, f in enumerate(flipped))
    assert 60 < sum(flipped) < 140  # independent per image
    assert torch.equal(out, hflip_batch(x, 0.5, gen()))


def test_normalize_from_train_statistics(tmp_path):
    write_cifar(tmp_path, per_batch=40)
    data = build(with_techniques("random_crop", "normalize"), name="cifar10", root=str(tmp_path))
    x, _ = all_batches(data.train_eval_batches(64))
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert len(data.mean) == len(data.std) == 3
    fixed = with_techniques("normalize", normalize={"mean": [0.5], "std": [0.25]})
    data = build(fixed, name="cifar10", root=str(tmp_path))
    assert data.mean == [0.5] * 3  # one value broadcast to every channel
    raw = all_batches(build(name="cifar10", root=str(tmp_path)).val_batches(64))[0]
    assert torch.allclose(all_batches(data.val_batches(64))[0], (raw - 0.5) / 0.25, atol=1e-6)


def test_normalize_channel_mismatch_is_a_spec_error(data_fashion_root):
    pipeline = with_techniques("normalize", normalize={"mean": [0.5, 0.5], "std": [1, 1]})
    with pytest.raises(SpecError, match="mean has 2 values but the data has 1 channel"):
        build(pipeline, name="fashion_mnist", root=str(data_fashion_root))


def test_normalize_is_a_position_in_the_op_order():
    seen = []
    pipeline = DataPipeline()
    pipeline.add_batch_op(lambda x, g: seen.append(("before", x.min().item())) or x)
    pipeline.set_normalize([0.5], [0.5])
    pipeline.add_batch_op(lambda x, g: seen.append(("after", x.min().item())) or x, eval=True)
    data = build(pipeline, name="synthetic", train_size=16, val_size=8)
    next(data.train_batches(16, gen()))
    assert seen[0][0] == "before" and seen[0][1] >= 0  # raw pixels in [0, 1]
    assert seen[1][0] == "after" and seen[1][1] < 0  # normalized
    seen.clear()
    next(data.val_batches(8))
    assert [s[0] for s in seen] == ["after"]  # train-only op skipped on val


# ---------------------------------------------------------------------------------
# Epochs, splits, subsets
# ---------------------------------------------------------------------------------


def test_train_batches_cover_each_index_once_and_replay(data_fashion_root):
    data = build(name="fashion_mnist", root=str(data_fashion_root))
    assert data.steps_per_epoch(64) == 5  # 300 / 64: the last partial batch is kept
    batches = list(data.train_batches(64, gen(3)))
    assert [len(y) for _, y in batches] == [64, 64, 64, 64, 44]
    x, y = all_batches(batches)
    order = ids(x)
    assert sorted(order) == list(range(300)) and order != list(range(300))
    assert y.tolist() == [i % 10 for i in order]
    again = all_batches(data.train_batches(64, gen(3)))
    assert torch.equal(again[0], x) and torch.equal(again[1], y)
    g = gen(3)
    first, second = ids(all_batches(data.train_batches(64, g))[0]), None
    second = ids(all_batches(data.train_batches(64, g))[0])
    assert first == order and second != first  # the generator moves on between epochs
    assert ids(all_batches(data.val_batches(16))[0]) == list(range(50))


def test_a_last_batch_of_one_image_is_dropped(data_fashion_root):
    data = build(name="fashion_mnist", root=str(data_fashion_root))
    assert data.train_count(299) == 299 and data.train_count(64) == 300
    assert data.train_count(1) == 300  # batch size 1: every batch has one image; keep them
    sizes = [len(y) for _, y in data.train_batches(299, gen(1))]
    assert sizes == [299] and data.steps_per_epoch(299) == 1


def test_augmented_epoch_replays_from_the_generator_state(data_fashion_root):
    pipeline = with_techniques("random_crop", "horizontal_flip", "normalize")
    data = build(pipeline, name="fashion_mnist", root=str(data_fashion_root))
    g = gen(5)
    state = g.get_state()
    a = all_batches(data.train_batches(32, g))
    g.set_state(state)
    b = all_batches(data.train_batches(32, g))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    v1, v2 = all_batches(data.val_batches(32)), all_batches(data.val_batches(32))
    assert torch.equal(v1[0], v2[0])


def test_val_fraction_is_seeded_and_disjoint(data_fashion_root):
    spec = {"name": "fashion_mnist", "root": str(data_fashion_root), "val_split": 0.2}
    data = build(**spec)
    train = ids(all_batches(data.train_eval_batches(100))[0])
    val = ids(all_batches(data.val_batches(100))[0])
    assert (len(train), len(val), data.num_val) == (240, 60, 60)
    assert not set(train) & set(val) and set(train) | set(val) == set(range(300))
    assert max(val) < 300  # from train, not the 50 test images
    same = ids(all_batches(build(**spec).val_batches(100))[0])
    other = ids(all_batches(build(**spec, seed=1).val_batches(100))[0])
    assert same == val and other != val


def test_subsets_are_seeded_picks(data_fashion_root):
    spec = {"name": "fashion_mnist", "root": str(data_fashion_root), "val_split": 0.2}
    data = build(**spec, train_subset=50, val_subset=10)
    train = ids(all_batches(data.train_eval_batches(100))[0])
    val = ids(all_batches(data.val_batches(100))[0])
    assert (len(set(train)), len(set(val))) == (50, 10) and not set(train) & set(val)
    again = build(**spec, train_subset=50, val_subset=10)
    assert ids(all_batches(again.train_eval_batches(100))[0]) == train
    other = build(**spec, train_subset=50, val_subset=10, seed=4)
    assert ids(all_batches(other.train_eval_batches(100))[0]) != train


def test_subset_larger_than_split_is_a_spec_error(data_fashion_root):
    with pytest.raises(SpecError) as info:
        build(name="fashion_mnist", root=str(data_fashion_root), train_subset=301, val_subset=51)
    train, val = info.value.problems
    assert (train.path, train.value, train.allowed) == ("data.train_subset", 301, "<= 300")
    assert (val.path, val.value, val.allowed) == ("data.val_subset", 51, "<= 50")


def test_synthetic_is_fixed_and_sized_by_the_spec():
    spec = {"name": "synthetic", "num_classes": 4, "channels": 3, "size": 12}
    a = build(**spec, train_size=40, val_size=20)
    assert (a.num_train, a.num_val, a.num_classes, a.in_channels) == (40, 20, 4, 3)
    assert a.image_size == (12, 12)
    xa, ya = all_batches(a.train_eval_batches(16))
    xb, yb = all_batches(build(**spec, train_size=40, val_size=20, seed=9).train_eval_batches(16))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)  # the dataset does not move with seeds
    assert torch.bincount(ya).tolist() == [10] * 4
    held = build(**spec, train_size=40, val_size=20, val_split=0.25)
    assert (held.num_train, held.num_val) == (30, 10)


def test_synthetic_is_learnable_by_nearest_prototype():
    data = build(name="synthetic", train_size=200, val_size=100)
    x, y = all_batches(data.train_eval_batches(200))
    centroids = torch.stack([x[y == k].mean(0) for k in range(10)]).flatten(1)
    xv, yv = all_batches(data.val_batches(100))
    pred = torch.cdist(xv.flatten(1), centroids).argmin(1)
    assert (pred == yv).float().mean() > 0.9  # chance is 0.1


# ---------------------------------------------------------------------------------
# The three basic techniques
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["random_crop", "horizontal_flip", "normalize"])
def test_data_techniques_are_registered_and_configure_both_paths(kind):
    cls = TECHNIQUES[kind]
    assert cls.hooks() == ["on_data"] and cls.paper
    pipeline = DataPipeline()
    cls().on_data(pipeline)
    kinds = {s.kind for s in pipeline.steps}
    assert kinds == ({"normalize"} if kind == "normalize" else {"op", "transform"})


def test_normalize_technique_validates():
    from pydantic import ValidationError

    norm = TECHNIQUES["normalize"]
    with pytest.raises(ValidationError, match="mean has 2 values but std has 1"):
        norm(mean=[0.1, 0.2], std=[0.3])
    with pytest.raises(ValidationError, match="std must be > 0"):
        norm(mean=[0.1], std=[0.0])
    with pytest.raises(ValidationError):
        TECHNIQUES["horizontal_flip"](p=1.5)
    with pytest.raises(ValidationError):
        TECHNIQUES["random_crop"](padding=-1)
