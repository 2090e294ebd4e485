"""`effray validate` refuses what `effray train` would, from metadata alone, and more:
subsets larger than the data, normalize's channels, non-finite numbers, resources Ray
refuses, keys given twice; and warns when the data leaves a technique nothing to do."""

from __future__ import annotations

import warnings

import pytest
import yaml
from typer.testing import CliRunner

from effray.cli import app
from effray.data.splits import pick_indices
from effray.errors import SpecError
from effray.spec import ExperimentSpec, load_spec, spec_from_dict
from effray.spec.data_checks import check_metadata, split_sizes
from effray.techniques import NoEffectWarning

runner = CliRunner()
ENV = {"COLUMNS": "240", "NO_COLOR": "1"}
SYN = {"name": "synthetic", "train_size": 64, "val_size": 32, "size": 16}


def raw(**sections) -> dict:
    base = {"name": "v", "data": dict(SYN), "model": {"name": "paper_mnist_1p5k_dw"}}
    base.update(sections)
    return base


def validate(tmp_path, text: str, *sets: str):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    args = ["validate", str(path)] + [a for s in sets for a in ("--set", s)]
    return runner.invoke(app, args, env=ENV)


# (case id, spec, --set overrides, substrings that must appear on one line of the output)
REFUSED = [
    (
        "train-subset-above-the-registry-size",
        raw(data={"name": "fashion_mnist", "train_subset": 70000}),
        [],
        ["data.train_subset", "larger than the 60000 train images of 'fashion_mnist'", "<= 60000"],
    ),
    (
        "val-subset-above-the-test-split",
        raw(data={"name": "cifar10", "val_subset": 20000}),
        [],
        ["data.val_subset", "10000 validation images (from the test split)", "value 20000"],
    ),
    (
        "train-subset-above-what-val-split-leaves",
        raw(data={**SYN, "val_split": 0.25, "train_subset": 60}),
        [],
        ["data.train_subset", "48 train images", "val_split 0.25 holds out 16"],
    ),
    (
        "normalize-three-values-on-one-channel",
        raw(techniques=[{"kind": "normalize", "mean": [0.5] * 3, "std": [0.25] * 3}]),
        [],
        ["techniques.0.mean", "3 values but the data has 1 channel", "[0.5, 0.5, 0.5]"],
    ),
    (
        "normalize-rgb-values-in-the-grayscale-trial",
        raw(
            data={**SYN, "channels": 3},
            techniques=[
                {"kind": "normalize", "mean": [0.5] * 3, "std": [0.25] * 3, "ablate": False},
                {"kind": "grayscale"},
            ],
            ablation="one_at_a_time",
        ),
        [],
        ["techniques.0.std", "1 channel after grayscale in trial group 'grayscale'"],
    ),
    ("lr-inf", raw(train={"lr": float("inf")}), [], ["train.lr", "finite", "value inf"]),
    ("lr-overflowing-literal", raw(), ["train.lr=1e999"], ["train.lr", "finite", "'1e999'"]),
    ("lr-inf-by-override", raw(), ["train.lr=inf"], ["train.lr", "finite"]),
    ("momentum-nan", raw(train={"momentum": float("nan")}), [], ["train.momentum", "finite"]),
    (
        "technique-field-inf",
        raw(techniques=[{"kind": "one_cycle", "div_factor": float("inf")}]),
        [],
        ["techniques.0.div_factor", "finite"],
    ),
    (
        "model-knob-inf",
        raw(model={"name": "ghostnet", "width_mult": float("inf")}),
        [],
        ["model.width_mult", "finite"],
    ),
    ("reference-inf", raw(reference={"baseline": float("inf")}), [], ["reference.baseline"]),
    (
        "search-bound-inf",
        raw(search={"space": {"train.lr": {"uniform": [0.01, float("inf")]}}}),
        [],
        ["search.space.train.lr", "inf", "finite"],
    ),
    (
        "fractional-gpus-above-one",
        raw(resources={"gpu": 1.5}),
        [],
        ["resources.gpu", "whole number", "value 1.5", "1 or 2"],
    ),
    (
        "cpu-finer-than-ray-counts",
        raw(resources={"cpu": 0.00001}),
        [],
        ["resources.cpu", "steps of 0.0001"],
    ),
]


@pytest.mark.parametrize(
    ("spec", "sets", "expected"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_validate_refuses_with_exit_2(tmp_path, spec, sets, expected):
    result = validate(tmp_path, yaml.safe_dump(spec), *sets)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert any(all(s in line for s in expected) for line in lines), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "resources", [{"gpu": 0.25}, {"gpu": 1}, {"gpu": 2.0}, {"cpu": 1.5}, {"cpu": 0.0001}]
)
def test_resources_ray_accepts_pass(resources):
    assert spec_from_dict(raw(resources=resources)).resources.model_dump()


def test_a_subset_of_exactly_all_images_passes():
    assert check_metadata(spec_from_dict(raw(data={**SYN, "train_subset": 64}))) == []
    spec = spec_from_dict(raw(data={**SYN, "val_split": 0.25, "train_subset": 48}))
    assert check_metadata(spec) == []


@pytest.mark.parametrize(
    "data",
    [
        {**SYN, "train_subset": 65},
        {**SYN, "val_subset": 33},
        {**SYN, "val_split": 0.1, "train_subset": 59},
        {**SYN, "val_split": 0.5, "val_subset": 33},
    ],
)
def test_validate_and_train_refuse_a_subset_with_the_same_message(data):
    """One rule in two places: the registry's sizes here, the loaded arrays at train time."""
    spec = ExperimentSpec.model_validate(raw(data=data))  # no checks yet
    with pytest.raises(SpecError) as at_train:
        pick_indices(spec.data, SYN["train_size"], SYN["val_size"], seed=0)
    found = check_metadata(spec)
    assert len(found) == len(at_train.value.problems) == 1
    for p, q in zip(found, at_train.value.problems, strict=True):
        assert (p.path, p.value, p.allowed) == (q.path, q.value, q.allowed)
        assert p.message.startswith(q.message)


def test_split_sizes_match_what_loading_picks():
    for data in ({**SYN}, {**SYN, "val_split": 0.1}, {**SYN, "val_split": 0.5}):
        spec = spec_from_dict(raw(data=data))
        train, val, val_from = pick_indices(spec.data, 64, 32, seed=3)
        assert split_sizes(spec.data) == (len(train), len(val), val_from)
    assert split_sizes(ExperimentSpec().data) == (60000, 10000, "test")  # fashion_mnist


DUPLICATED = """\
name: v
data: {name: synthetic, train_size: 64, val_size: 32, size: 16}
train:
  lr: 0.1
  epochs: 2
  lr: 0.2
techniques:
  - {kind: cutout, size: 3, size: 4}
"""


def test_a_key_given_twice_is_refused_with_file_line_and_path(tmp_path):
    result = validate(tmp_path, DUPLICATED)
    assert result.exit_code == 2, result.output
    out = result.output
    assert "spec.yaml: train.lr: key 'lr' is given twice, at lines 4 and 6" in out
    assert "techniques.0.size: key 'size' is given twice, on line 8" in out
    assert "2 problems" in out


def test_merge_keys_and_aliases_are_not_duplicates(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: v\n"
        "data: &d {name: synthetic, train_size: 64, val_size: 32, size: 16}\n"
        "train: {lr: 0.1}\n"
        "techniques:\n"
        "  - &c {kind: cutout, size: 3}\n"
        "reference: {<<: {baseline: 1.0}, baseline: 2.0}\n"
    )
    spec = load_spec(path)
    assert spec.reference == {"baseline": 2.0} and spec.techniques[0].size == 3


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (raw(techniques=[{"kind": "cutout", "size": 16}]), "cutout: size 16 is not smaller than"),
        (raw(techniques=[{"kind": "cutout", "size": 40}]), "16-pixel image side"),
        (raw(techniques=[{"kind": "grayscale"}]), "grayscale: 'synthetic' images already have"),
    ],
)
def test_no_effect_values_warn(spec, message):
    with pytest.warns(NoEffectWarning, match=message):
        spec_from_dict(spec)


@pytest.mark.parametrize(
    "spec",
    [
        raw(techniques=[{"kind": "cutout", "size": 15}]),
        raw(data={**SYN, "channels": 3}, techniques=[{"kind": "grayscale"}]),
        raw(data={**SYN, "image_size": 64}, techniques=[{"kind": "cutout", "size": 32}]),
    ],
)
def test_values_with_an_effect_do_not_warn(spec):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectWarning)
        spec_from_dict(spec)


def test_validate_shows_a_no_effect_warning_as_one_line(tmp_path):
    spec = raw(techniques=[{"kind": "grayscale"}])
    result = validate(tmp_path, yaml.safe_dump(spec))
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "grayscale" in line]
    assert lines == [
        "warning: grayscale: 'synthetic' images already have one channel; nothing to "
        "convert (remove it)"
    ]
    assert "NoEffectWarning" not in result.output  # not Python's file:line form
