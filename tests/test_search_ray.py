"""Adaptive search with real Ray, real fit and small data: Optuna with ASHA, PBT (exploits,
restore after a killed driver), and the greedy stages (kill, restore, report), each trial
one W&B run read back from the offline files."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_tune import _latest_state, descendants, synthetic_spec
from wandb_reader import read_runs

from effray.results import ATTEMPTS
from effray.spec import spec_from_dict
from effray.spec.stages import Choice, choose, trial_value

pytestmark = [pytest.mark.ray, pytest.mark.slow]
EFFRAY = [sys.executable, "-m", "effray"]


def trial_dirs(exp: Path) -> dict[str, Path]:
    """Trial name -> directory, anywhere below the experiment (stages nest them)."""
    out = {}
    for spec in exp.rglob("trial_spec.yaml"):
        if not any(p.name.startswith("checkpoint_") for p in spec.parents):
            out[spec.parent.name] = spec.parent
    return out


def history(trial_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (trial_dir / "metrics.jsonl").read_text().splitlines()]


def attempts(trial_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (trial_dir / ATTEMPTS).read_text().splitlines()]


def assert_one_run_per_trial(exp: Path) -> dict:
    """Every trial is exactly one W&B run (its id), named after it, steps 1..epochs run."""
    dirs = trial_dirs(exp)
    ids = {
        name: yaml.safe_load((d / "trial_spec.yaml").read_text())["trial"]["id"]
        for name, d in dirs.items()
    }
    runs = read_runs(exp)
    assert sorted(runs) == sorted(ids.values()), "one run per trial and no other"
    for name, run_id in ids.items():
        run = runs[run_id]
        epochs = [m["epoch"] for m in history(dirs[name])]
        assert run.name == name
        assert run.steps == epochs == list(range(1, len(epochs) + 1)), (name, run.steps, epochs)
    return runs


def kill_tree(proc: subprocess.Popen) -> list[int]:
    agents = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return agents


def reap(pids: list[int]) -> None:
    for pid in pids:  # the killed driver's Ray processes, if any outlived it
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def test_optuna_with_asha_stops_some_trials_within_bounds(tmp_path):
    from effray.tune import run_experiment

    search = {
        "algorithm": "optuna",
        "space": {
            "train.lr": {"loguniform": [1e-5, 0.05]},
            "train.momentum": {"uniform": [0.8, 0.95]},
        },
        "num_samples": 8,
        "seed": 0,
        "max_concurrent": 2,
        "scheduler": "asha",
        "asha": {"grace_period": 1, "reduction_factor": 2},
    }
    spec = spec_from_dict(
        synthetic_spec("tpe", train_size=1024, epochs=4, search=search, wandb={"mode": "offline"})
    )
    result = run_experiment(spec, storage=tmp_path, num_cpus=2)
    assert result.ok, [(t.name, t.stopped_by, t.error) for t in result.trials]
    assert sorted(t.name for t in result.trials) == [f"baseline-t{i:03d}" for i in range(8)]
    assert any(t.stopped_by == "asha" for t in result.trials)
    assert any(t.stopped_by == "finished" for t in result.trials)
    for t in result.trials:
        lr, momentum = t.choices["train.lr"], t.choices["train.momentum"]
        assert 1e-5 <= lr <= 0.05 and 0.8 <= momentum <= 0.95
        spec_file = yaml.safe_load((Path(result.path) / t.name / "trial_spec.yaml").read_text())
        assert spec_file["train"]["lr"] == lr  # the suggestion is what the trial trained with
    assert_one_run_per_trial(Path(result.path))


def _pbt_spec(name: str, epochs: int = 4) -> dict:
    search = {
        "algorithm": "random",
        "space": {"train.lr": {"loguniform": [1e-5, 0.05]}},
        "num_samples": 4,
        "seed": 0,
        "scheduler": "pbt",
        "asha": None,
        "pbt": {
            "perturbation_interval": 1,
            "quantile_fraction": 0.5,
            "seed": 0,
            "mutations": {"train.lr": {"loguniform": [1e-5, 0.05]}},
        },
    }
    return synthetic_spec(
        name, train_size=1024, epochs=epochs, search=search, wandb={"mode": "offline"}
    )


def test_pbt_exploits_continue_from_the_donor_with_the_mutated_lr(tmp_path):
    from effray.tune import run_experiment

    result = run_experiment(spec_from_dict(_pbt_spec("pbt")), storage=tmp_path, num_cpus=2)
    exp = Path(result.path)
    assert result.ok and len(result.trials) == 4
    dirs = trial_dirs(exp)
    exploits = 0
    for name, d in dirs.items():
        epochs = history(d)
        assert [m["epoch"] for m in epochs] == [1, 2, 3, 4]  # continuous, from the donor's epoch
        for a in attempts(d):
            if "exploited_from" not in a:
                continue
            exploits += 1
            donor, at = a["exploited_from"], a["resumed_from_epoch"]
            assert donor != name and donor in dirs
            donor_lr = history(dirs[donor])[at - 1]["hp/train.lr"]
            new_lr = epochs[at]["hp/train.lr"]  # the epoch after the exploit
            assert new_lr == epochs[at]["lr"]  # the optimizer trained with the mutated lr
            assert 1e-5 <= new_lr <= 0.05
            assert new_lr != donor_lr  # perturbed or resampled, never copied as is
        # the checkpoint chain is the trial's own: every checkpoint names this trial
        for ck in d.glob("checkpoint_*/trial_spec.yaml"):
            assert yaml.safe_load(ck.read_text())["trial"]["name"] == name
    assert exploits >= 1, "PBT never exploited"
    assert_one_run_per_trial(exp)


def test_pbt_restore_after_the_driver_is_killed(tmp_path):
    spec_file = tmp_path / "pbt.yaml"
    spec_file.write_text(yaml.safe_dump(_pbt_spec("pbt-restore", epochs=5)))
    exp = tmp_path / "runs" / "pbt-restore"
    driver = subprocess.Popen(
        [*EFFRAY, "run", str(spec_file), "--storage", str(tmp_path / "runs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:  # after the first exploits
        if any("exploited_from" in p.read_text() for p in exp.glob("*/attempts.jsonl")):
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the experiment ended before the driver was killed"
    agents = kill_tree(driver)
    try:
        out = subprocess.run(
            [*EFFRAY, "restore", str(exp)], capture_output=True, text=True, timeout=300
        )
    finally:
        reap(agents)
    assert out.returncode == 0, out.stdout + out.stderr
    saved = json.loads((exp / "results.json").read_text())
    assert len(saved["trials"]) == 4
    assert all(row["stopped_by"] == "finished" for row in saved["trials"]), saved["trials"]
    for d in trial_dirs(exp).values():
        assert [m["epoch"] for m in history(d)][-1] == 5
    assert_one_run_per_trial(exp)


STAGES = {
    "space": {"train.seed": {"grid": [0, 1]}},
    "asha": None,
    "max_concurrent": 2,
    "stages": [
        {"name": "sched", "alternatives": [{"add": ["one_cycle"]}]},
        {
            "name": "reg",
            "alternatives": [{"add": ["label_smoothing"]}, {"set": {"train.lr": 0.002}}],
        },
    ],
}


def test_stages_survive_a_killed_driver_and_choose_the_best_mean(tmp_path):
    spec = synthetic_spec(
        "greedy",
        train_size=1024,
        epochs=3,
        techniques=[{"kind": "one_cycle"}, {"kind": "label_smoothing", "alpha": 0.1}],
        search=STAGES,
        wandb={"mode": "offline"},
    )
    spec_file = tmp_path / "greedy.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    exp = tmp_path / "runs" / "greedy"
    driver = subprocess.Popen(
        [*EFFRAY, "run", str(spec_file), "--storage", str(tmp_path / "runs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    state2: dict[str, str] = {}
    while time.time() < deadline and driver.poll() is None:  # stage 1 done, stage 2 running
        state2 = _latest_state(exp / "stage2-reg")
        if (
            "TERMINATED" in state2.values()
            and len(state2) < 4
            or ("TERMINATED" in state2.values() and list(state2.values()).count("TERMINATED") < 4)
        ):
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the search ended before the driver was killed"
    agents = kill_tree(driver)
    state1 = _latest_state(exp / "stage1-sched")
    assert list(state1.values()) == ["TERMINATED"] * 4  # between stages: stage 1 is done
    finished = {  # what Ray recorded as finished: restore must not run these again
        name: (trial_dirs(exp)[name] / ATTEMPTS).read_text()
        for name, status in {**state1, **state2}.items()
        if status == "TERMINATED"
    }
    assert any(n.startswith("s2-") for n in finished)
    try:
        out = subprocess.run(
            [*EFFRAY, "restore", str(exp)], capture_output=True, text=True, timeout=300
        )
    finally:
        reap(agents)
    assert out.returncode == 0, out.stdout + out.stderr
    dirs = trial_dirs(exp)
    assert len(dirs) == 2 * (1 + 1 + 2)
    for name, text in finished.items():  # nothing finished was run again
        assert (dirs[name] / ATTEMPTS).read_text() == text, name

    # the path: every stage's choice is what its recorded trials say
    doc = json.loads((exp / "stages.json").read_text())
    assert doc["complete"] and doc["trials_run"] == 8
    for stage in doc["stages"]:
        choices = []
        for alt in stage["alternatives"]:
            values = [trial_value(history(dirs[t]), "val/acc", "max") for t in alt["trials"]]
            assert math.isclose(sum(values) / len(values), alt["mean"])
            choices.append(Choice(alt["label"], values))
        assert choose(choices).label == stage["chosen"]
        best = max(choices, key=lambda c: c.mean)
        kept = next(c for c in choices if c.label == stage["chosen"])
        assert best.mean - kept.mean <= best.std  # the argmax, or within one std of it
    assert (exp / "best_spec.yaml").exists()
    assert doc["stages"][1]["alternatives"][0]["trials"] == next(
        a["trials"] for a in doc["stages"][0]["alternatives"] if a["chosen"]
    )  # "keep" reuses the winner's trials

    report = subprocess.run(
        [*EFFRAY, "report", str(exp)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "80"},
    )
    assert report.returncode == 0, report.stderr
    assert "greedy search path" in report.stdout and "best_spec.yaml" in report.stdout
    rows = [line for line in report.stdout.splitlines() if "│" in line]
    assert rows and all(len(line) <= 80 and "…" not in line for line in rows)
    trained = subprocess.run(
        [*EFFRAY, "validate", str(exp / "best_spec.yaml")], capture_output=True, text=True
    )
    assert trained.returncode == 0, trained.stdout + trained.stderr

    runs = assert_one_run_per_trial(exp)
    for name, d in dirs.items():
        run_id = yaml.safe_load((d / "trial_spec.yaml").read_text())["trial"]["id"]
        stage = "1-sched" if name.startswith("s1-") else "2-reg"
        assert f"stage:{stage}" in runs[run_id].tags
