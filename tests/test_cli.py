"""The command line as a user sees it: messages, tables and exit codes."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from effray.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "240", "NO_COLOR": "1"}
PAPER_COUNTS = {
    "paper_mnist_25k": 25144,
    "paper_mnist_7k": 7767,
    "paper_mnist_7k_dw": 7611,
    "paper_mnist_5k": 5712,
    "paper_mnist_5k_dw": 5616,
    "paper_mnist_1p5k_dw": 1560,
    "paper_cifar_143k": 143208,
    "paper_cifar_143k_dw": 143396,
}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


@pytest.fixture
def spec_file(tmp_path):
    def write(**over):
        raw = {
            "name": "cli",
            "data": {"name": "synthetic", "train_size": 128, "val_size": 64, "size": 16},
            "model": {"name": "paper_mnist_1p5k_dw"},
            "train": {"epochs": 2, "batch_size": 64, "latency_repeats": 1},
        }
        raw.update(over)
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(raw))
        return path

    return write


def test_models_json_has_the_eight_exact_counts():
    result = invoke("models", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    for name, count in PAPER_COUNTS.items():
        assert rows[name]["params"] == count
    assert "ghostnet" in rows


def test_models_table():
    result = invoke("models")
    assert result.exit_code == 0
    assert "paper_mnist_1p5k_dw" in result.output and "1,560" in result.output


def test_validate_ok(spec_file):
    result = invoke("validate", spec_file())
    assert result.exit_code == 0
    assert "OK" in result.output and "1 trial" in result.output


def test_validate_reports_every_problem_and_exits_2(spec_file):
    path = spec_file(train={"lr": -1, "optimiser": "sgd"})
    result = invoke("validate", path)
    assert result.exit_code == 2
    assert "train.lr: Input should be greater than 0 (value -1; allowed > 0)" in result.output
    assert "train.optimiser: unknown key 'optimiser'" in result.output
    assert "did you mean 'optimizer'?" in result.output
    assert "2 problems; nothing was started." in result.output
    assert "Traceback" not in result.output


def test_validate_with_bad_override(spec_file):
    result = invoke("validate", spec_file(), "--set", "train.batch_size=zero")
    assert result.exit_code == 2
    assert "train.batch_size" in result.output and "'zero'" in result.output


def test_validate_missing_file(tmp_path):
    result = invoke("validate", tmp_path / "missing.yaml")
    assert result.exit_code == 2
    assert "spec file not found" in result.output


def test_schema_is_json():
    result = invoke("schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert "train" in schema["properties"]


def test_techniques_lists_fields_and_hooks():
    result = invoke("techniques", "--json")
    assert result.exit_code == 0
    rows = {r["kind"]: r for r in json.loads(result.stdout)}
    assert rows["random_crop"]["fields"] == {"padding": 4}
    assert "on_data" in rows["random_crop"]["hooks"]
    table = invoke("techniques")
    assert table.exit_code == 0 and "random_crop" in table.output


def test_expand_prints_named_trials(spec_file):
    path = spec_file(
        techniques=[{"kind": "random_crop"}, {"kind": "horizontal_flip"}],
        ablation="one_at_a_time",
    )
    result = invoke("expand", path)
    assert result.exit_code == 0, result.output
    for name in ("baseline", "random_crop", "horizontal_flip"):
        assert name in result.output
    assert "3 trials" in result.output


def test_train_prints_summary_then_resume_continues(spec_file, tmp_path):
    out = tmp_path / "trial"
    result = invoke("train", spec_file(), "--out", out)
    assert result.exit_code == 0, result.output
    for text in ("epoch   1/2", "epoch   2/2", "best val/acc", "1,560", "CPU latency", "finished"):
        assert text in result.output
    assert (out / "trial_spec.yaml").exists() and (out / "metrics.jsonl").exists()
    again = invoke("resume", out, "--epochs", "3")
    assert again.exit_code == 0, again.output
    assert "from checkpoint-epoch0002.pt (epoch 2) to epoch 3" in again.output
    assert "epoch   3/3" in again.output


def test_train_picks_one_trial_of_a_multi_trial_spec(spec_file, tmp_path):
    path = spec_file(techniques=[{"kind": "random_crop"}], ablation="one_at_a_time")
    result = invoke("train", path, "--out", tmp_path / "a", "--set", "train.epochs=1")
    assert result.exit_code == 0, result.output
    assert "expands to 2 trials; training the first, 'baseline'" in result.output
    picked = invoke("train", path, "--trial", "random_crop", "--out", tmp_path / "b")
    assert picked.exit_code == 0, picked.output
    assert "training random_crop" in picked.output
    bad = invoke("train", path, "--trial", "random_crp")
    assert bad.exit_code == 2
    assert "did you mean 'random_crop'?" in bad.output


def test_resume_without_checkpoints_is_exit_2(tmp_path):
    result = invoke("resume", tmp_path)
    assert result.exit_code == 2
    assert "no checkpoint-epoch*.pt under" in result.output


def test_train_with_missing_dataset_is_exit_2(spec_file):
    path = spec_file(data={"name": "cifar10", "root": "/nonexistent/effray"})
    result = invoke("train", path)
    assert result.exit_code == 2
    assert "dataset 'cifar10' not found under /nonexistent/effray" in result.output


FASHION = "/usr/share/datasets/fashion-mnist"


def test_datasets_lists_all_six_and_what_is_here(tmp_path, monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("HOME", str(tmp_path))  # ~/data is empty here
    out = invoke("datasets", "--json")
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert set(rows) == {
        "fashion_mnist",
        "mnist",
        "cifar10",
        "stanford_cars",
        "image_folder",
        "synthetic",
    }
    assert rows["cifar10"]["shape"] == [3, 32, 32] and rows["mnist"]["classes"] == 10
    assert rows["mnist"]["found"] is None and "download" in rows["mnist"]["how"]
    assert rows["synthetic"]["found"] == "generated"
    table = invoke("datasets")
    assert table.exit_code == 0
    for name in rows:
        assert name in table.output
    assert "stanford_cars (looked in ~/data): cannot be downloaded" in table.output
    if Path(FASHION).is_dir():  # Debian's dataset-fashion-mnist, installed by `make setup`
        assert rows["fashion_mnist"]["found"] == FASHION
        assert FASHION in table.output


def test_datasets_under_a_root(tmp_path):
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "train" / "cat" / "a.png").write_bytes(b"")
    out = invoke("datasets", "--json", "--root", tmp_path)
    rows = {r["name"]: r for r in json.loads(out.output)}
    assert rows["image_folder"]["found"] == str(tmp_path)
    assert rows["mnist"]["found"] is None


def test_names_are_never_cut_at_80_columns_through_a_pipe(spec_file):
    """Identifiers a user copies (model names, technique kinds, trial names) stay whole."""
    from effray.models import MODELS
    from effray.techniques import TECHNIQUES

    narrow = {"COLUMNS": "80", "NO_COLOR": "1"}
    models = runner.invoke(app, ["models"], env=narrow).output
    for name in MODELS:
        assert f"│ {name} " in models, name
    kinds = runner.invoke(app, ["techniques"], env=narrow).output
    for kind in TECHNIQUES:
        assert f"│ {kind} " in kinds, kind
    path = spec_file(
        techniques=[{"kind": "reduce_lr_on_plateau"}, {"kind": "label_smoothing"}],
        ablation="one_at_a_time",
    )
    expanded = runner.invoke(app, ["expand", str(path)], env=narrow).output
    for trial in ("baseline", "reduce_lr_on_plateau", "label_smoothing"):
        assert f"│ {trial} " in expanded, trial
    assert all(len(line) <= 80 for line in models.splitlines() + kinds.splitlines())


def test_run_report_and_datasets_tables_keep_names_whole_at_80_columns(
    spec_file, tmp_path, monkeypatch
):
    """The rest of the tables: `datasets`, `run`'s results (its experiment replaced by a
    finished result, so no Ray) and `report` on trials trained here."""
    import effray.tune
    from effray.data import DATASETS
    from effray.local import train_dir
    from effray.results import TrialRecord
    from effray.spec import expand, load_spec
    from effray.tune.experiment import ExperimentResult

    narrow = {"COLUMNS": "80", "NO_COLOR": "1"}
    listed = runner.invoke(app, ["datasets"], env=narrow).output
    for name in DATASETS:
        assert f"│ {name} " in listed, name
    path = spec_file(
        techniques=[{"kind": "reduce_lr_on_plateau"}, {"kind": "label_smoothing"}],
        ablation="one_at_a_time",
        search={"space": {"train.seed": {"grid": [11, 12]}}, "asha": None},
        train={"epochs": 1, "batch_size": 64, "latency_repeats": 0, "threads": 1},
        wandb={"mode": "disabled"},
    )
    trials = expand(load_spec(path))
    names = [t.trial.name for t in trials]  # e.g. reduce_lr_on_plateau-seed11

    def finished(spec, trials, **_):
        records = [
            TrialRecord(
                name=t.trial.name,
                techniques=[x.name for x in t.techniques],
                epochs_planned=1,
                epochs_run=1,
                stopped_by="finished",
                best_val_acc=50.0,
                params=1560.0,
            )
            for t in trials
        ]
        return ExperimentResult(spec.name, str(tmp_path), records, wall_s=1.0)

    monkeypatch.setattr(effray.tune, "run_experiment", finished)
    ran = runner.invoke(app, ["run", str(path)], env=narrow)
    assert ran.exit_code == 0, ran.output
    for name in names:
        assert f"│ {name} " in ran.output, name
    for t in [t for t in trials if t.train.seed == 11]:  # one trial of each technique set
        train_dir(t, tmp_path / "exp" / t.trial.name)
    reported = runner.invoke(app, ["report", str(tmp_path / "exp")], env=narrow).output
    for group in ("baseline", "reduce_lr_on_plateau", "label_smoothing"):
        assert f"│ {group} " in reported, group
    rows = [line for line in (listed + ran.output + reported).splitlines() if line[:1] in "┏┃┡│└"]
    assert rows and all(len(line) <= 80 for line in rows)  # prose below a table may wrap


def test_run_results_drop_columns_before_cutting_long_trial_names(spec_file, tmp_path, monkeypatch):
    """Random-search names carry every choice (baseline-lr0.006038-weight_decay1.164e-06-
    seed0): at 80 columns the techniques column goes, names and numbers stay whole."""
    import effray.tune
    from effray.results import TrialRecord
    from effray.spec import expand, load_spec
    from effray.tune.experiment import ExperimentResult

    space = {
        "train.lr": {"loguniform": [0.001, 0.3]},
        "train.weight_decay": {"loguniform": [1e-6, 1e-2]},
    }
    path = spec_file(
        techniques=[{"kind": "label_smoothing"}, {"kind": "one_cycle"}],
        search={"algorithm": "random", "space": space, "num_samples": 3, "asha": None},
        train={"epochs": 1, "batch_size": 64, "latency_repeats": 0, "threads": 1},
        wandb={"mode": "disabled"},
    )
    trials = expand(load_spec(path))
    assert min(len(t.trial.name) for t in trials) > 40

    def finished(spec, trials, **_):
        records = [
            TrialRecord(name=t.trial.name, techniques=[x.name for x in t.techniques],
                        epochs_planned=1, epochs_run=1, stopped_by="finished",
                        best_val_acc=50.0, params=1_234_567.0)
            for t in trials
        ]  # fmt: skip
        return ExperimentResult(spec.name, str(tmp_path), records, wall_s=1.0)

    monkeypatch.setattr(effray.tune, "run_experiment", finished)
    ran = runner.invoke(app, ["run", str(path)], env={"COLUMNS": "80", "NO_COLOR": "1"})
    assert ran.exit_code == 0, ran.output
    rows = [line for line in ran.output.splitlines() if line[:1] in "┏┃┡│└"]
    assert rows and all(len(line) <= 80 and "…" not in line for line in rows)
    first = "".join(line.split("│")[1].strip() for line in rows if line.startswith("│"))
    for t in trials:  # whole, folded onto a second line when it is wider than the terminal
        assert t.trial.name in first, ran.output
    assert ran.output.count("50.00%") == 3 and "best val/acc" in ran.output, ran.output
    assert "not shown at 80 columns: techniques" in ran.output
    wide = runner.invoke(app, ["run", str(path)], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert "label_smoothing+one_cycle" in wide.output and "1,234,567" in wide.output
    assert "not shown" not in wide.output
