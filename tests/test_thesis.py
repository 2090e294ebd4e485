"""The thesis (seed 004): its C-50 spec, the sample Stanford Cars folder, the loader path.

$ .venv/bin/python -m pytest tests/test_thesis.py -q
"""

from __future__ import annotations

import csv
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from effray.cli import app
from effray.data import DataPipeline, build_data
from effray.data.augment import Normalize, to_float
from effray.data.cars_sample import LABEL_COLUMNS, class_colour, make_sample_cars
from effray.data.loader import ImageFiles, read_image, split_batched_tail
from effray.spec import DataSpec, expand, load_spec
from effray.techniques import TECHNIQUES

ROOT = Path(__file__).resolve().parents[1]
C50 = ROOT / "experiments" / "thesis_c50_stanford_cars.yaml"
CPU = torch.device("cpu")
runner = CliRunner()
ENV = {"COLUMNS": "240", "NO_COLOR": "1"}


def labels(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ---------------------------------------------------------------------------------
# The sample folder: the thesis's layout, read by the real stanford_cars reader
# ---------------------------------------------------------------------------------


def test_sample_has_the_thesis_layout_and_boxes_inside_each_image(tmp_path):
    from PIL import Image

    made = make_sample_cars(tmp_path / "cars", classes=3, train=9, test=6, width=(60, 90))
    root = made.root
    assert sorted(p.name for p in root.iterdir()) == [
        "test",
        "test_labels.csv",
        "train",
        "train_labels.csv",
    ]
    numbers = []
    for split, n in (("train", 9), ("test", 6)):
        rows = labels(root / f"{split}_labels.csv")
        assert tuple(rows[0]) == LABEL_COLUMNS and len(rows) == n
        assert sorted({int(r["class"]) for r in rows}) == [1, 2, 3]  # 1-based, all present
        for r in rows:
            numbers.append(int(r["image_fname"].removesuffix(".jpg")))
            with Image.open(root / split / r["image_fname"]) as im:
                width, height = im.size
            assert 60 <= width <= 90
            x1, y1, x2, y2 = (int(r[c]) for c in LABEL_COLUMNS[2:6])
            assert 1 <= x1 < x2 <= width and 1 <= y1 < y2 <= height
    assert sorted(numbers) == list(range(1, 16))  # numbered across both splits, like car_ims/


def test_sample_is_read_by_the_stanford_cars_reader_and_its_boxes_hold_the_car(tmp_path):
    root = make_sample_cars(tmp_path, classes=3, train=6, test=3, width=(64, 80)).root
    pipeline = DataPipeline()
    pipeline.set_bbox_crop()
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=16, workers=0)
    data = build_data(spec, pipeline, device=CPU, seed=0)
    assert (data.num_train, data.num_val, data.num_classes) == (6, 3, 3)
    assert data.class_names == ["Sample Car 001", "Sample Car 002", "Sample Car 003"]
    x, y = next(data.train_eval_batches(6))
    for image, label in zip(x, y.tolist(), strict=True):  # cropped: all car, in its colour
        colour = torch.tensor(class_colour(label + 1), dtype=torch.float32) / 255
        assert (image.mean((1, 2)) - colour).abs().max() < 0.12


def test_sample_is_deterministic_and_never_overwrites(tmp_path):
    a = make_sample_cars(tmp_path / "a", classes=2, train=4, test=2, seed=3).root
    b = make_sample_cars(tmp_path / "b", classes=2, train=4, test=2, seed=3).root
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    with pytest.raises(FileExistsError, match="not an empty directory"):
        make_sample_cars(a)


def test_make_sample_cars_command(tmp_path):
    out = runner.invoke(app, ["make-sample-cars", str(tmp_path / "s"), "--classes", "2",
                              "--train", "4", "--test", "2"], env=ENV)  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "wrote 4 train and 2 test images of 2 classes" in out.output
    assert f"--set data.root={tmp_path / 's'}" in out.output
    assert len(labels(tmp_path / "s" / "train_labels.csv")) == 4
    again = runner.invoke(app, ["make-sample-cars", str(tmp_path / "s")], env=ENV)
    assert again.exit_code == 2 and "not an empty directory" in again.output
    swapped = runner.invoke(
        app,
        ["make-sample-cars", str(tmp_path / "t"), "--min-width", "90", "--max-width", "60"],
        env=ENV,
    )
    assert swapped.exit_code == 2 and "swap them" in swapped.output
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------------
# The C-50 spec: the thesis's settings, the paper column, a tiny run
# ---------------------------------------------------------------------------------


def test_c50_spec_has_the_thesis_settings(tmp_path):
    root = make_sample_cars(tmp_path / "cars", classes=2, train=4, test=2).root
    spec = load_spec(C50, [f"data.root={root}"])
    (trial,) = expand(spec)
    assert spec.reference == {trial.trial.group: 83.79}  # the report's paper column
    assert (spec.data.image_size, spec.data.val_split) == (227, "test")
    assert spec.model.name == "ghostnet"
    assert spec.model.args == {"out_channels": 320, "dropout": 0.2}
    t = spec.train
    assert (t.epochs, t.batch_size, t.optimizer, t.lr, t.weight_decay) == (
        200, 64, "adamw", 0.001, 0.6,
    )  # fmt: skip
    by_kind = {x.kind: x for x in spec.techniques}
    assert by_kind["normalize"].mean == [0.4707, 0.4602, 0.455]
    assert by_kind["normalize"].std == [0.2594, 0.2585, 0.2635]
    assert by_kind["multistep_lr"].milestones == [67, 82, 95, 107]
    assert by_kind["multistep_lr"].gamma == 0.1
    assert (by_kind["early_stopping"].metric, by_kind["early_stopping"].patience) == (
        "val/loss", 15,
    )  # fmt: skip
    affine = by_kind["random_affine"]
    assert (affine.degrees, affine.shear, affine.interpolation) == (25, 8, "nearest")
    assert by_kind["label_smoothing"].alpha == 0.1
    assert sorted(by_kind) == sorted(
        ["horizontal_flip", "random_affine", "color_jitter", "normalize",
         "label_smoothing", "multistep_lr", "early_stopping"]
    )  # fmt: skip


def test_c50_model_has_the_thesis_parameter_count():
    from effray.metrics import count_params
    from effray.models import build_model

    raw = yaml.safe_load(C50.read_text())["model"]
    args = {k: v for k, v in raw.items() if k != "name"}
    model = build_model(raw["name"], num_classes=196, in_channels=3, **args)
    assert count_params(model) == 3_041_412  # num_params of C-50 (section 4.1)


@pytest.mark.slow
def test_c50_runs_tiny_on_the_sample_folder(tmp_path):
    sample = tmp_path / "cars"
    made = runner.invoke(app, ["make-sample-cars", str(sample), "--classes", "2",
                               "--train", "8", "--test", "4"], env=ENV)  # fmt: skip
    assert made.exit_code == 0, made.output
    out = runner.invoke(
        app,
        ["train", str(C50), "--set", f"data.root={sample}", "--set", "train.epochs=2",
         "--out", str(tmp_path / "run")],
        env=ENV,
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "epoch   2/2" in out.output and "finished" in out.output
    assert "2,979,138" in out.output  # C-50's GhostNet with 2 classes: 3,041,412 - 194 * 321
    assert sorted((tmp_path / "run").rglob("*.pt"))  # checkpointed every epoch


# ---------------------------------------------------------------------------------
# The loader path: decode, uint8 hand-off, one set of workers for the whole fit
# ---------------------------------------------------------------------------------


def test_read_image_decodes_with_torchvision_and_falls_back_to_pil(tmp_path):
    from PIL import Image

    pixels = torch.randint(0, 256, (12, 20, 3), dtype=torch.uint8)
    for suffix in ("png", "bmp"):  # torchvision.io reads PNG; BMP goes through PIL
        Image.fromarray(pixels.numpy()).save(tmp_path / f"x.{suffix}")
        assert torch.equal(read_image(str(tmp_path / f"x.{suffix}")), pixels.permute(2, 0, 1))
    Image.fromarray(pixels[..., 0].numpy()).save(tmp_path / "gray.png")
    assert read_image(str(tmp_path / "gray.png")).shape == (3, 12, 20)


def test_float_and_normalize_run_per_batch_so_workers_hand_over_uint8():
    norm = Normalize([0.5, 0.5, 0.5], [0.25, 0.25, 0.25])
    flip = object()
    assert split_batched_tail([flip, to_float, norm]) == ([flip], [to_float, norm])
    assert split_batched_tail([flip, to_float]) == ([flip], [to_float])
    erasing = object()  # a step after normalize keeps the whole chain per image
    assert split_batched_tail([to_float, norm, erasing]) == ([to_float, norm, erasing], [])
    assert split_batched_tail([]) == ([], [])


def thesis_pipeline() -> DataPipeline:
    pipeline = DataPipeline()
    for kind in ("horizontal_flip", "random_affine", "color_jitter"):
        TECHNIQUES[kind]().on_data(pipeline)
    TECHNIQUES["normalize"](mean=[0.47, 0.46, 0.455], std=[0.26, 0.26, 0.26]).on_data(pipeline)
    return pipeline


def test_loader_batches_equal_per_image_float_normalize(tmp_path):
    root = make_sample_cars(tmp_path, classes=2, train=4, test=2, width=(40, 60)).root
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=24, workers=0)
    data = build_data(spec, thesis_pipeline(), device=CPU, seed=0)
    val: ImageFiles = data.val
    raw = torch.stack([val[(i, i)][0] for i in range(2)])
    assert raw.dtype == torch.uint8  # what a worker sends
    x, _ = next(data.val_batches(2))
    mean = torch.tensor([0.47, 0.46, 0.455]).view(3, 1, 1)
    torch.testing.assert_close(x, (raw.float() / 255 - mean) / 0.26)


def test_one_set_of_workers_serves_every_pass_and_ends_with_the_bundle(tmp_path):
    root = make_sample_cars(tmp_path, classes=2, train=6, test=3, width=(40, 60)).root
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=16, workers=2)
    data = build_data(spec, thesis_pipeline(), device=CPU, seed=0)
    assert multiprocessing.active_children() == []
    gen, seen = torch.Generator(), []
    for epoch in range(2):
        gen.manual_seed(epoch)
        assert sum(len(x) for x, _ in data.train_batches(4, gen)) == 6
        seen.append({p.pid for p in multiprocessing.active_children()})
        assert sum(len(x) for x, _ in data.val_batches(2)) == 3
        seen.append({p.pid for p in multiprocessing.active_children()})
    assert len(seen[0]) == 2 and all(pids == seen[0] for pids in seen)  # forked once
    del data
    import gc

    gc.collect()
    assert multiprocessing.active_children() == []


def test_a_pass_started_over_another_is_refused(tmp_path):
    root = make_sample_cars(tmp_path, classes=2, train=6, test=3, width=(40, 60)).root
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=16, workers=0)
    data = build_data(spec, DataPipeline(), device=CPU, seed=0)
    train = data.train_eval_batches(2)
    next(train)
    assert len(list(data.val_batches(2))) == 2  # the newer pass runs in full
    with pytest.raises(RuntimeError, match="one pass at a time"):
        next(train)


def test_keep_freed_memory_stops_the_page_fault_storm_of_large_tensors():
    code = (
        "import resource, sys, torch\n"
        "from effray.cpu_memory import keep_freed_memory\n"
        "if sys.argv[1] == 'keep': assert keep_freed_memory()\n"
        "x = torch.ones(40 * 2**20 // 4)\n"  # 40 MB: above glibc's largest mmap threshold
        "for _ in range(20): x = x * 2\n"  # a new 40 MB tensor each time, the old one freed
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(40): x = x * 2\n"  # steady state, as step after step of a fit
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    faults = {
        how: int(
            subprocess.run(
                [sys.executable, "-c", code, how], capture_output=True, text=True, check=True
            ).stdout
        )  # fmt: skip
        for how in ("default", "keep")
    }
    pages = 40 * 40 * 2**20 // 4096  # one fault per page when every tensor is fresh memory
    assert faults["default"] > pages // 2
    assert faults["keep"] < pages // 10
