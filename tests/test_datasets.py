"""The dataset registry: every entry is complete, found, built and shaped as it says.

Parametrised over effray.data.DATASETS: a new dataset is tested as soon as WRITERS has a
writer of its tiny on-disk copy (the test names the one that is missing).
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import torch
from conftest import write_idx_dataset
from test_data import REAL_FASHION, write_cars_prepared, write_cifar, write_image_folder

from effray.data import (
    CAPABILITIES,
    DATASETS,
    DataPipeline,
    build_data,
    check_data,
    find,
    image_side,
    list_datasets,
)
from effray.errors import SpecError
from effray.spec import DataSpec, json_schema, spec_from_dict

CPU = torch.device("cpu")


def write_cifar_in(folder: Path) -> None:
    assert write_cifar(folder.parent) == folder  # it writes root/cifar-10-batches-py


# name -> (writer of a tiny copy into the folder the finder should report, its classes)
WRITERS = {
    "fashion_mnist": (lambda folder: write_idx_dataset(folder, 30, 10), 10),
    "mnist": (lambda folder: write_idx_dataset(folder, 30, 10, compress=False), 10),
    "cifar10": (write_cifar_in, 10),
    "stanford_cars": (
        lambda folder: write_cars_prepared(folder, n_train=4, n_test=2, classes=(1, 196)),
        196,
    ),
    "image_folder": (lambda folder: write_image_folder(folder, per_class=2), 3),
    "synthetic": (None, 10),  # generated from the spec: nothing to write
}
LAYOUTS = [(n, sub) for n, info in DATASETS.items() for sub in info.folders or [None]]


def resolve(ref: str):
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", DATASETS)
def test_registry_entry_is_complete(name):
    info = DATASETS[name]
    assert info.name == name and info.path in ("device", "loader")
    assert all(isinstance(t, str) and t.strip() for t in (info.root, info.expected, info.how))
    assert callable(resolve(info.reader))
    assert info.finder is None or callable(resolve(info.finder))
    assert info.check is None or callable(resolve(info.check))
    assert info.generated == (info.folders == ())  # files on disk <=> folders to look in
    assert info.shape is None or (len(info.shape) == 3 and min(info.shape) > 0)
    assert info.classes is None or info.classes >= 2
    assert info.capabilities <= set(CAPABILITIES)
    if info.path == "loader":
        assert info.image_size and info.image_size >= 8  # the side images are resized to
    if "download" in info.capabilities:
        import torchvision.datasets

        assert callable(getattr(torchvision.datasets, info.torchvision))


def test_registry_imports_no_torch_numpy_or_torchvision():
    path = Path(importlib.util.find_spec("effray.data.registry").origin)
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('registry', {str(path)!r})\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules['registry'] = module\n"
        "spec.loader.exec_module(module)\n"
        "print(len(module.DATASETS), sorted({'torch', 'numpy', 'torchvision'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split(maxsplit=1) == [str(len(DATASETS)), "[]\n"]


@pytest.mark.parametrize("name, sub", LAYOUTS)
def test_registered_dataset_is_found_built_and_shaped(tmp_path, name, sub):
    info = DATASETS[name]
    if name not in WRITERS:
        pytest.fail(f"add a writer of a tiny {name!r} copy in its on-disk format to WRITERS")
    write, classes = WRITERS[name]
    if info.generated:
        spec = DataSpec(name=name, train_size=16, val_size=8)
    else:
        folder = tmp_path / sub
        write(folder)
        assert find(name, str(tmp_path)) == folder
        (row,) = [r for r in list_datasets(root=str(tmp_path)) if r["name"] == name]
        assert row["found"] == str(folder)
        spec = DataSpec(name=name, root=str(tmp_path), workers=0)
        assert check_data(spec) == []
    data = build_data(spec, DataPipeline(), device=CPU, seed=0)
    side = image_side(spec)
    assert data.image_size == (side, side)
    if info.shape is not None:
        assert (data.in_channels, *data.image_size) == info.shape
    assert data.num_classes == classes and info.classes in (None, classes)
    x, _ = next(data.val_batches(2))
    assert x.shape[1:] == (data.in_channels, side, side)


@pytest.mark.parametrize("name", [n for n, info in DATASETS.items() if not info.generated])
def test_missing_dataset_message_comes_from_the_registry(tmp_path, name):
    info, missing = DATASETS[name], str(tmp_path / "nowhere")
    (p,) = check_data(DataSpec(name=name, root=missing))
    assert (p.path, p.value) == ("data.root", missing)
    assert p.message.startswith(f"dataset {name!r} not found under {missing}")
    assert f"(expected {info.expected})" in p.message
    downloadable = "download" in info.capabilities
    assert ("data.download: true" in p.message) == downloadable
    assert ("cannot be downloaded" in p.message) == (not downloadable)
    assert (check_data(DataSpec(name=name, root=missing, download=True)) == []) == downloadable
    with pytest.raises(SpecError, match=f"dataset {name!r} not found"):
        build_data(DataSpec(name=name, root=missing), DataPipeline(), device=CPU, seed=0)


def test_image_side():
    native = {n: image_side(DataSpec(name=n)) for n in DATASETS}
    assert native == {
        "fashion_mnist": 28,
        "mnist": 28,
        "cifar10": 32,
        "stanford_cars": 227,  # the thesis's side
        "image_folder": 224,
        "synthetic": 28,  # data.size's default
    }
    assert image_side(DataSpec(name="synthetic", size=12)) == 12
    assert image_side(DataSpec(name="cifar10", image_size=64)) == 64


def test_list_datasets_reports_a_root_without_reading_pixels(tmp_path):
    folder = write_cifar(tmp_path)
    (folder / "data_batch_1").write_bytes(b"not a pickle")  # list_datasets must not care
    rows = {r["name"]: r for r in list_datasets(root=str(tmp_path))}
    assert list(rows) == list(DATASETS)
    assert rows["cifar10"] == {
        "name": "cifar10",
        "path": "device",
        "shape": [3, 32, 32],
        "classes": 10,
        "image_size": 32,
        "root": "~/data",
        "found": str(folder),
        "how": DATASETS["cifar10"].how,
        "capabilities": ["download"],
    }
    assert rows["fashion_mnist"]["found"] is None and rows["stanford_cars"]["found"] is None
    assert rows["stanford_cars"]["capabilities"] == ["boxes"]
    assert rows["image_folder"]["shape"] is None and rows["image_folder"]["image_size"] == 224
    assert rows["synthetic"]["found"] == "generated" and rows["synthetic"]["root"] is None


def test_list_datasets_default_roots(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["mnist"]["found"] is None and rows["mnist"]["root"] == "~/data"
    write_idx_dataset(tmp_path / "data" / "MNIST" / "raw", 20, 10)  # where downloads land
    rows = {r["name"]: r for r in list_datasets()}
    assert rows["mnist"]["found"] == str(tmp_path / "data" / "MNIST" / "raw")


@pytest.mark.skipif(not REAL_FASHION.is_dir(), reason="Debian's dataset-fashion-mnist missing")
def test_list_datasets_finds_debians_fashion_mnist():
    (row,) = [r for r in list_datasets() if r["name"] == "fashion_mnist"]
    assert row["found"] == str(REAL_FASHION) and row["shape"] == [1, 28, 28]
    assert "apt-get install dataset-fashion-mnist" in row["how"]


def test_spec_allows_exactly_the_registered_names():
    annotation = DataSpec.model_fields["name"].annotation
    assert typing.get_args(annotation) == tuple(DATASETS)
    assert json_schema()["$defs"]["DataSpec"]["properties"]["name"]["enum"] == list(DATASETS)
    with pytest.raises(SpecError) as info:
        spec_from_dict({"data": {"name": "cifar"}})
    (p,) = info.value.problems
    assert (p.path, p.message, p.value, p.suggestion) == (
        "data.name",
        "unknown dataset",
        "cifar",
        "cifar10",
    )
    assert p.allowed == "one of " + ", ".join(sorted(DATASETS))
