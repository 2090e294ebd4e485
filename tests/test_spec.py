"""Spec validation: every malformed spec gets one clear line per problem, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from effray.errors import SpecError
from effray.spec import (
    ExperimentSpec,
    expand,
    json_schema,
    load_spec,
    spec_from_dict,
    to_yaml,
)

SYN = {"name": "synthetic", "train_size": 64, "val_size": 32, "size": 16}


def ok(**sections) -> dict:
    base = {"name": "t", "data": dict(SYN), "model": {"name": "paper_mnist_1p5k_dw"}}
    base.update(sections)
    return base


# (case id, raw spec, [substrings that must appear in one rendered problem line])
BAD_SPECS = [
    ("unknown-top-key", {**ok(), "trian": {}}, ["trian", "unknown key", "did you mean 'train'"]),
    ("unknown-train-key", ok(train={"lrr": 0.1}), ["train.lrr", "did you mean 'lr'"]),
    ("unknown-data-key", ok(data={**SYN, "rooot": "/x"}), ["data.rooot", "did you mean 'root'"]),
    ("lr-negative", ok(train={"lr": -0.1}), ["train.lr", "value -0.1", "> 0"]),
    ("lr-zero", ok(train={"lr": 0}), ["train.lr", "> 0"]),
    ("lr-string", ok(train={"lr": "fast"}), ["train.lr", "'fast'"]),
    ("epochs-zero", ok(train={"epochs": 0}), ["train.epochs", ">= 1"]),
    ("epochs-float", ok(train={"epochs": 2.5}), ["train.epochs", "2.5"]),
    ("batch-size-neg", ok(train={"batch_size": -8}), ["train.batch_size", ">= 1"]),
    ("optimizer-unknown", ok(train={"optimizer": "rmsprop"}), ["train.optimizer", "'sgd'"]),
    ("momentum-one", ok(train={"momentum": 1.0}), ["train.momentum", "< 1"]),
    ("weight-decay-neg", ok(train={"weight_decay": -1}), ["train.weight_decay", ">= 0"]),
    ("device-unknown", ok(train={"device": "tpu"}), ["train.device", "'tpu'"]),
    ("precision-unknown", ok(train={"precision": "fp8"}), ["train.precision", "'fp8'"]),
    ("seed-negative", ok(train={"seed": -1}), ["train.seed", ">= 0"]),
    ("nesterov-adam", ok(train={"nesterov": True, "optimizer": "adam"}), ["train", "nesterov"]),
    (
        "dataset-unknown",
        ok(data={"name": "imagenet"}),
        ["data.name", "'imagenet'", "fashion_mnist"],
    ),
    ("val-split-too-big", ok(data={**SYN, "val_split": 0.9}), ["data.val_split", "0.9"]),
    ("subset-zero", ok(data={**SYN, "train_subset": 0}), ["data.train_subset", "> 0"]),
    (
        "synthetic-field-on-real-data",
        ok(data={"name": "fashion_mnist", "num_classes": 5}),
        ["data", "num_classes", "only apply to data.name 'synthetic'"],
    ),
    (
        "model-unknown",
        ok(model={"name": "paper_mnist_1p5k"}),
        ["model.name", "unknown model", "did you mean 'paper_mnist_1p5k_dw'"],
    ),
    ("model-knob-unknown", ok(model={"name": "ghostnet", "widht_mult": 2}), ["model.widht_mult"]),
    (
        "model-knob-bad",
        ok(model={"name": "ghostnet", "dropout": 1.5}),
        ["model.dropout", "1.5"],
    ),
    ("techniques-not-list", ok(techniques={"kind": "x"}), ["techniques", "list"]),
    (
        "technique-unknown",
        ok(techniques=[{"kind": "normalise"}]),
        ["techniques.0.kind", "unknown technique", "did you mean 'normalize'"],
    ),
    (
        "technique-no-kind",
        ok(techniques=[{"mean": [0.5]}]),
        ["techniques.0.kind", "missing", "needs a kind"],
    ),
    ("technique-not-mapping", ok(techniques=["normalize"]), ["techniques", "mapping"]),
    (
        "technique-bad-plugin",
        ok(techniques=[{"kind": "no_such_pkg.mod:Thing"}]),
        ["techniques.0.kind", "cannot import plugin module 'no_such_pkg.mod'"],
    ),
    (
        "technique-plugin-not-technique",
        ok(techniques=[{"kind": "pathlib:Path"}]),
        ["techniques.0.kind", "not a subclass of effray Technique"],
    ),
    (
        "technique-field-unknown",
        ok(techniques=[{"kind": "random_crop", "pad": 4}]),
        ["techniques.0.pad", "unknown key"],
    ),
    (
        "technique-twice",
        ok(techniques=[{"kind": "horizontal_flip"}, {"kind": "horizontal_flip"}]),
        ["techniques", "'horizontal_flip' is listed 2 times"],
    ),
    ("ablation-unknown", ok(ablation="one_by_one"), ["ablation", "one_by_one"]),
    (
        "ablation-names-unlisted",
        ok(techniques=[{"kind": "horizontal_flip"}], ablation=[["horizontal_flip", "mixupp"]]),
        ["ablation.0.1", "'mixupp'", "horizontal_flip"],
    ),
    ("ablation-without-techniques", ok(ablation="one_at_a_time"), ["ablation", "at least one"]),
    (
        "search-path-typo",
        ok(search={"space": {"train.lrr": {"grid": [0.1, 0.2]}}}),
        ["search.space", "'train.lrr'", "did you mean 'lr'"],
    ),
    (
        "search-section-typo",
        ok(search={"space": {"trian.lr": {"grid": [0.1]}}}),
        ["search.space", "'trian'", "did you mean 'train'"],
    ),
    (
        "search-sampler-unknown",
        ok(search={"space": {"train.lr": {"logunifrom": [0.1, 1]}}}),
        ["search.space.train.lr", "did you mean 'loguniform'"],
    ),
    (
        "search-bounds-reversed",
        ok(search={"space": {"train.lr": {"uniform": [1, 0.1]}}}),
        ["search.space.train.lr", "low < high"],
    ),
    (
        "search-loguniform-zero",
        ok(search={"space": {"train.lr": {"loguniform": [0, 1]}}}),
        ["search.space.train.lr", "low > 0"],
    ),
    (
        "search-grid-value-invalid",
        ok(search={"space": {"train.batch_size": {"grid": [32, -1]}}}),
        ["search.space.train.batch_size", "value -1 is invalid", "train.batch_size"],
    ),
    (
        "search-grid-empty",
        ok(search={"space": {"train.lr": {"grid": []}}}),
        ["search.space.train.lr", "non-empty list"],
    ),
    (
        "search-technique-field-typo",
        ok(
            techniques=[{"kind": "random_crop"}],
            search={"space": {"techniques.random_crop.paddin": {"grid": [2]}}},
        ),
        ["search.space", "did you mean 'padding'"],
    ),
    (
        "asha-metric-unknown",
        ok(search={"space": {}, "asha": {"metric": "val/accuracy"}}),
        ["search.asha.metric", "did you mean 'val/acc'"],
    ),
    (
        "asha-grace-zero",
        ok(search={"asha": {"grace_period": 0}}),
        ["search.asha.grace_period", ">= 1"],
    ),
    ("resources-gpu-neg", ok(resources={"gpu": -1}), ["resources.gpu", ">= 0"]),
    ("wandb-mode-unknown", ok(wandb={"mode": "cloud"}), ["wandb.mode", "'cloud'"]),
    ("name-bad-chars", ok(name="my experiment/1"), ["name", "my experiment/1"]),
    ("reference-not-number", ok(reference={"baseline": "high"}), ["reference.baseline", "'high'"]),
    (
        "missing-data-root",
        ok(data={"name": "cifar10", "root": "/nonexistent/effray-data"}),
        ["data.root", "dataset 'cifar10' not found under /nonexistent/effray-data", "download"],
    ),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [c[1:] for c in BAD_SPECS], ids=[c[0] for c in BAD_SPECS]
)
def test_bad_spec_gets_clear_message(raw, expected):
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    lines = [str(p) for p in info.value.problems]
    assert any(all(s in line for s in expected) for line in lines), lines
    assert all("Traceback" not in line for line in lines)


def test_at_least_thirty_malformed_specs():
    assert len(BAD_SPECS) >= 30


def test_every_problem_is_reported_at_once():
    raw = ok(train={"lr": -1, "epochs": 0, "optimizer": "rmsprop"})
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    paths = {p.path for p in info.value.problems}
    assert {"train.lr", "train.epochs", "train.optimizer"} <= paths


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: [unclosed\n", "malformed YAML at line"),
        ("- just\n- a list\n", "a spec must be a YAML mapping"),
        ("name: a\n\tdata: {}\n", "malformed YAML"),
    ],
)
def test_bad_yaml_files(tmp_path, text, expected):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert expected in str(info.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")


def test_empty_file_is_all_defaults_but_data_must_exist(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(ok()))
    spec = load_spec(path)
    assert spec.train.epochs == 10 and spec.model.name == "paper_mnist_1p5k_dw"


def test_overrides_are_validated_the_same_way(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(ok()))
    spec = load_spec(path, ["train.lr=0.2", "train.epochs=3", "model.name=paper_mnist_5k"])
    assert spec.train.lr == 0.2 and spec.train.epochs == 3 and spec.model.name == "paper_mnist_5k"
    with pytest.raises(SpecError, match=r"train\.lr.*value -3"):
        load_spec(path, ["train.lr=-3"])
    with pytest.raises(SpecError, match="did you mean 'train'"):
        load_spec(path, ["trian.lr=0.1"])
    with pytest.raises(SpecError, match="expected PATH=VALUE"):
        load_spec(path, ["train.lr"])


def test_technique_override_by_kind(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(ok(techniques=[{"kind": "random_crop", "padding": 2}])))
    spec = load_spec(path, ["techniques.random_crop.padding=3"])
    assert spec.techniques[0].padding == 3
    with pytest.raises(SpecError, match="no technique of kind 'mixup'"):
        load_spec(path, ["techniques.mixup.alpha=0.3"])


def test_roundtrip_yaml_is_identical():
    spec = spec_from_dict(ok(techniques=[{"kind": "normalize"}, {"kind": "random_crop"}]))
    again = ExperimentSpec.model_validate(yaml.safe_load(to_yaml(spec)))
    assert again == spec
    assert [t.kind for t in again.techniques] == ["normalize", "random_crop"]


def test_json_schema_lists_techniques():
    schema = json_schema()
    text = json.dumps(schema)
    assert "random_crop" in text and "train" in schema["properties"]


def test_search_expansion_is_deterministic_and_named():
    raw = ok(
        search={
            "space": {"train.lr": {"loguniform": [0.01, 0.1]}, "train.seed": {"grid": [0, 1]}},
            "num_samples": 2,
            "asha": None,
        }
    )
    spec = spec_from_dict(raw)
    trials = expand(spec)
    assert len(trials) == 4
    assert [t.trial.name for t in trials] == [t.trial.name for t in expand(spec)]
    assert all(0.01 <= t.train.lr <= 0.1 for t in trials)
    assert {t.train.seed for t in trials} == {0, 1}
    assert all(t.search is None and t.ablation == "none" for t in trials)
    assert len({t.trial.name for t in trials}) == 4


def test_experiment_specs_in_repo_validate():
    for path in sorted(Path("experiments").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        spec = ExperimentSpec.model_validate(raw)  # field-level validation
        if spec.search is not None and spec.search.adaptive:  # trials chosen as it runs
            from effray.spec.plan import search_plan

            assert not expand(spec) and search_plan(spec, 0)["budget"] > 0, path
        else:
            assert expand(spec), path
