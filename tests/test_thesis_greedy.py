"""The thesis's step-by-step search (seed 004, section 4.2) as one effray greedy search.

$ .venv/bin/python -m pytest tests/test_thesis_greedy.py -q
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from effray.cli import app
from effray.data.cars_sample import make_sample_cars
from effray.errors import SpecError
from effray.spec import load_spec, spec_from_dict
from effray.spec.stages import apply_changes, budget

ROOT = Path(__file__).resolve().parents[1]
GREEDY = ROOT / "experiments" / "thesis_greedy_stanford_cars.yaml"
runner = CliRunner()
ENV = {"COLUMNS": "240", "NO_COLOR": "1", "WANDB_MODE": "offline"}
THESIS_STAGES = [  # section 4.2's subsections in order, and the runs each tried
    ("loss", ["C-2"]),
    ("normalization", ["C-3"]),
    ("augmentations", ["C-4", "C-5", "C-6", "C-7"]),
    ("grayscale", ["C-12"]),
    ("bounding_boxes", ["C-10", "C-11"]),
    ("weight_decay", ["C-13", "C-14", "C-15", "C-16", "C-17"]),
    ("dropout", ["C-18", "C-19", "C-20", "C-21"]),
    ("last_layer", ["C-22", "C-23", "C-24", "C-25"]),
    ("automatic_lr", ["C-27"]),
    ("controlled_lr", ["C-30", "C-31", "C-32", "C-33"]),
    ("weight_decay_again", ["C-36", "C-37", "C-38", "C-39", "C-40"]),
    ("dropout_again", ["C-41", "C-42", "C-43", "C-44"]),
    ("more_augmentations", ["C-48"]),
    ("lr_milestones", ["C-50", "C-51", "C-53", "C-55", "C-56"]),
    ("last_layer_check", ["C-58"]),
    ("lr_annealing", ["C-64", "C-65", "C-66"]),
]


@pytest.fixture(scope="module")
def cars(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cars") / "cars"
    make_sample_cars(root, classes=2, train=8, test=4)
    return root


def raw_greedy(cars: Path) -> dict:
    raw = yaml.safe_load(GREEDY.read_text())
    raw["data"]["root"] = str(cars)
    return raw


def test_the_greedy_spec_is_the_thesis_search(cars):
    spec = load_spec(GREEDY, [f"data.root={cars}"])
    stages = spec.search.stages
    assert [(s.name, [a.label for a in s.alternatives]) for s in stages] == THESIS_STAGES
    assert budget(spec) == 1 + sum(len(alts) for _, alts in THESIS_STAGES) == 47
    base = apply_changes(spec, [])  # C-1: plain cross-entropy, no normalization, Adam
    assert [t.kind for t in base.techniques] == ["early_stopping"]
    assert (base.train.optimizer, base.train.lr, base.model.out_channels) == ("adam", 0.001, 1280)
    by_label = {a.label: a for s in stages for a in s.alternatives}
    path = [by_label[x] for x in ("C-2", "C-3", "C-7", "C-14", "C-22", "C-27", "C-39", "C-50")]
    c50 = apply_changes(spec, path)  # the thesis's own path ends at C-50
    kinds = [t.kind for t in c50.techniques]
    assert "reduce_lr_on_plateau" not in kinds and "multistep_lr" in kinds
    step = next(t for t in c50.techniques if t.kind == "multistep_lr")
    assert step.milestones == [67, 82, 95, 107]
    assert (c50.train.optimizer, c50.train.weight_decay, c50.model.out_channels) == (
        "adamw",
        0.6,
        320,
    )
    gray = apply_changes(spec, [by_label["C-12"]])  # normalize off: its gray mean/std go too
    assert [t.kind for t in gray.techniques] == ["early_stopping", "grayscale"]


def test_validate_and_expand_show_the_stages_and_budget(cars):
    out = runner.invoke(app, ["validate", str(GREEDY), "--set", f"data.root={cars}"], env=ENV)
    assert out.exit_code == 0, out.output
    assert "stages search, up to 47 trials" in out.output
    shown = runner.invoke(app, ["expand", str(GREEDY), "--set", f"data.root={cars}"], env=ENV)
    assert shown.exit_code == 0, shown.output
    for name, alternatives in THESIS_STAGES:
        assert name in shown.output and all(a in shown.output for a in alternatives)


def test_a_conflict_between_two_stages_is_found_before_anything_runs(cars, tmp_path):
    """C-12 without its gray mean/std: RGB normalize (C-3) then grayscale (C-12) leaves
    three means for one channel. Only the pair shows it; each alone is fine."""
    raw = raw_greedy(cars)
    gray = next(s for s in raw["search"]["stages"] if s["name"] == "grayscale")
    del gray["alternatives"][0]["set"]
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw)
    assert any("grayscale" in str(p) and "C-3" in str(p) for p in err.value.problems)
    raw = raw_greedy(cars)  # an lr owner added while another stays on
    lr = next(s for s in raw["search"]["stages"] if s["name"] == "controlled_lr")
    del lr["alternatives"][0]["remove"]
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    out = runner.invoke(app, ["validate", str(spec_file)], env=ENV)
    assert out.exit_code == 2
    assert "automatic_lr:C-27 then controlled_lr:C-30" in out.output
    assert "own the learning rate" in out.output


@pytest.mark.slow
def test_greedy_thesis_search_runs_tiny_on_the_sample_folder(cars, tmp_path):
    """Five of its stages, 1 epoch at 64 px: every stage runs, the report shows the path."""
    raw = raw_greedy(cars)
    keep = {"loss", "normalization", "grayscale", "automatic_lr", "controlled_lr"}
    raw["search"]["stages"] = [s for s in raw["search"]["stages"] if s["name"] in keep]
    raw["search"]["stages"][-1]["alternatives"] = raw["search"]["stages"][-1]["alternatives"][:2]
    named = {"early_stopping", "label_smoothing", "normalize", "grayscale"}
    named |= {"reduce_lr_on_plateau", "multistep_lr"}  # a technique no stage adds is always on
    raw["techniques"] = [t for t in raw["techniques"] if t["kind"] in named]
    raw.update(train={**raw["train"], "epochs": 1}, data={**raw["data"], "image_size": 64})
    raw["data"]["workers"] = 0
    spec_file = tmp_path / "tiny.yaml"
    spec_file.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    out = runner.invoke(app, ["run", str(spec_file), "--storage", str(runs)], env=ENV)
    assert out.exit_code == 0, out.output
    exp = runs / "thesis-greedy-stanford-cars"
    doc = json.loads((exp / "stages.json").read_text())
    assert doc["complete"] and doc["trials_run"] == 1 + 1 + 1 + 1 + 1 + 2
    assert [s["name"] for s in doc["stages"]] == [
        "loss",
        "normalization",
        "grayscale",
        "automatic_lr",
        "controlled_lr",
    ]
    best = load_spec(exp / "best_spec.yaml")
    assert best.search is None and best.data.image_size == 64
    report = runner.invoke(app, ["report", str(exp)], env={**ENV, "COLUMNS": "80"})
    assert report.exit_code == 0, report.output
    assert "greedy search path" in report.output and "C-30" in report.output


def test_the_thesis_specs_default_root_is_the_sample_make_setup_writes():
    """Stanford Cars cannot be downloaded: `make setup` writes a sample where both thesis
    specs look by default, so they validate and run tiny on a fresh clone."""
    import re

    made = re.findall(r"effray make-sample-cars (\S+)", (ROOT / "Makefile").read_text())
    for spec in (GREEDY, ROOT / "experiments" / "thesis_c50_stanford_cars.yaml"):
        assert yaml.safe_load(spec.read_text())["data"]["root"] in made, spec.name
