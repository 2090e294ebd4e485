"""effray.tune with a real local Ray: ASHA, results, resume, faults (no mocks of Ray).

    $ .venv/bin/python -m pytest tests/test_tune.py -q

One embedded Ray (127.0.0.1 only) is shared by the in-process tests; the driver-kill
test runs `effray run` / `effray restore` as subprocesses, each with its own Ray.
Trials train the 1.5K-DW net on the tiny synthetic dataset for a few epochs.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

from ray import tune  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from effray.cli import app  # noqa: E402
from effray.results import ATTEMPTS, EXPERIMENT_FILE, RESULTS_CSV, RESULTS_JSON  # noqa: E402
from effray.spec import expand, spec_from_dict  # noqa: E402
from effray.tune import (  # noqa: E402
    ExperimentError,
    fresh_experiment_dir,
    ray_session,
    restore_experiment,
    run_experiment,
)

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[1]
LEARNING_RATES = [0.03, 0.01, 0.001, 1e-4, 3e-5, 1e-5]  # best first: ASHA's cutoffs rise early


def synthetic_spec(name: str, *, train_size: int = 512, epochs: int = 4, **sections) -> dict:
    """A spec dict: the 1.5K-DW net on a 4-class synthetic problem (learnable in 1-3 epochs)."""
    spec = {
        "name": name,
        "data": {
            "name": "synthetic",
            "train_size": train_size,
            "val_size": 256,
            "size": 16,
            "num_classes": 4,
        },
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "optimizer": "adam",
            "lr": 0.01,
            "weight_decay": 0.0,
            "latency_repeats": 0,
        },
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def epochs_in(trial_dir: Path) -> list[int]:
    lines = (trial_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["epoch"] for line in lines]


def attempts_in(trial_dir: Path) -> list[dict]:
    path = trial_dir / ATTEMPTS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture(scope="module")
def local_ray():
    """One quiet embedded Ray for the in-process tests of this module."""
    with ray_session(num_cpus=2):
        yield


@pytest.fixture(scope="module")
def asha_run(local_ray, tmp_path_factory):
    """Six trials, learning rates from good to hopeless, ASHA every epoch (grace 1, rf 2)."""
    storage = tmp_path_factory.mktemp("asha")
    spec = spec_from_dict(
        synthetic_spec(
            "asha",
            search={
                "space": {"train.lr": {"grid": LEARNING_RATES}},
                "asha": {
                    "metric": "val/acc",
                    "mode": "max",
                    "grace_period": 1,
                    "reduction_factor": 2,
                },
                "max_concurrent": 2,
            },
        )
    )
    events: list[dict] = []
    result = run_experiment(spec, storage=storage, on_event=events.append)
    return spec, result, events


def test_asha_stops_some_trials_and_results_agree(asha_run):
    spec, result, _ = asha_run
    assert [t.name for t in result.trials] == [t.trial.name for t in expand(spec)]
    assert result.ok and not result.errored
    by = {t.stopped_by for t in result.trials}
    assert "asha" in by, [(t.name, t.stopped_by, t.epochs_run) for t in result.trials]
    for t in result.trials:
        assert t.status in ("finished", "stopped")
        if t.stopped_by == "asha":
            assert 1 <= t.epochs_run < t.epochs_planned == 4
        else:
            assert t.stopped_by == "finished" and t.epochs_run == 4
        assert t.params == 1470  # the 1.5K-DW net with a 4-class head
    best = max(result.trials, key=lambda t: t.best_val_acc)
    assert best.stopped_by == "finished" and best.best_val_acc > 90

    saved = json.loads((Path(result.path) / RESULTS_JSON).read_text())
    assert [row["name"] for row in saved["trials"]] == [t.name for t in result.trials]
    assert [row["stopped_by"] for row in saved["trials"]] == [t.stopped_by for t in result.trials]
    for row, t in zip(saved["trials"], result.trials, strict=True):  # the epochs' training time
        lines = (Path(result.path) / t.directory / "metrics.jsonl").read_text().splitlines()
        epochs = [json.loads(x)["time/epoch_s"] for x in lines]
        assert row["train_time_s"] > 0 and math.isclose(row["train_time_s"], sum(epochs))
    csv_lines = (Path(result.path) / RESULTS_CSV).read_text().splitlines()
    assert csv_lines[0].startswith("name,group,techniques,status,stopped_by,best_val_acc")
    assert len(csv_lines) == 1 + len(result.trials)
    assert json.loads((Path(result.path) / EXPERIMENT_FILE).read_text())["trials"] == [
        t.name for t in result.trials
    ]


def test_every_trial_directory_has_spec_metrics_and_checkpoints(asha_run):
    _, result, _ = asha_run
    for t in result.trials:
        d = Path(result.path) / t.directory
        assert d.name == t.name  # trial directories are named by trial
        saved = yaml.safe_load((d / "trial_spec.yaml").read_text())
        assert saved["trial"]["name"] == t.name
        assert epochs_in(d) == list(range(1, t.epochs_run + 1))
        accs = [json.loads(line)["val/acc"] for line in (d / "metrics.jsonl").open()]
        assert t.best_val_acc == pytest.approx(max(accs))
        checkpoints = sorted(d.glob("checkpoint_*/checkpoint-epoch*.pt"))
        assert 1 <= len(checkpoints) <= 2  # run.checkpoint_keep
        assert checkpoints[-1].name == f"checkpoint-epoch{t.epochs_run:04d}.pt"
        assert [a["resumed_from_epoch"] for a in attempts_in(d)] == [0]


def test_progress_events_cover_every_trial(asha_run):
    _, result, events = asha_run
    assert events[0]["event"] == "experiment" and events[0]["trials"] == 6
    final = {}
    for e in events[1:]:
        final[e["trial"]] = e
    assert set(final) == {t.name for t in result.trials}
    assert all(e["status"] == "TERMINATED" for e in final.values())
    for t in result.trials:
        assert final[t.name]["epoch"] == t.epochs_run
        assert final[t.name]["stopped_by"] == t.stopped_by


def test_resume_a_ray_trial_directory_copied_elsewhere(asha_run, tmp_path):
    """`effray resume` on a Ray trial dir moved to another place continues it, no Ray."""
    _, result, _ = asha_run
    stopped = next(t for t in result.trials if t.stopped_by == "asha")
    copy = tmp_path / "copied" / stopped.name
    shutil.copytree(Path(result.path) / stopped.directory, copy)
    out = CliRunner().invoke(app, ["resume", str(copy)])
    assert out.exit_code == 0, out.output
    assert f"checkpoint-epoch{stopped.epochs_run:04d}.pt (epoch {stopped.epochs_run})" in out.output
    assert "to epoch 4" in out.output
    assert epochs_in(copy) == [1, 2, 3, 4]
    assert (copy / "checkpoints" / "checkpoint-epoch0004.pt").exists()


class KillWorkerOnce(tune.Callback):
    """SIGKILL the trial's Ray worker once Tune has registered epoch `at`'s checkpoint."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.killed: int | None = None

    def on_trial_save(self, iteration, trials, trial, **info):
        result = trial.last_result
        if self.killed is None and result.get("epoch") == self.at:
            self.killed = result["pid"]  # the worker process that reported it
            os.kill(self.killed, signal.SIGKILL)


@pytest.mark.slow
def test_killed_worker_is_retried_from_its_checkpoint(local_ray, tmp_path):
    spec = spec_from_dict(
        synthetic_spec("killworker", train_size=4096, run={"max_failures": 2}, search=None)
    )
    killer = KillWorkerOnce(at=2)
    result = run_experiment(spec, storage=tmp_path, callbacks=[killer])
    (trial,) = result.trials
    assert killer.killed is not None
    assert trial.stopped_by == "finished" and trial.epochs_run == 4, trial
    d = Path(result.path) / trial.directory
    first, second = attempts_in(d)
    assert first["pid"] == killer.killed and first["resumed_from_epoch"] == 0
    assert second["pid"] != killer.killed
    assert second["resumed_from_epoch"] in (2, 3)  # its last checkpoint, not epoch 0
    assert epochs_in(d) == [1, 2, 3, 4]  # no epoch lost or counted twice


class InterruptAfterFirstTrial(tune.Callback):
    """Ctrl-C to the driver the moment its first trial completes: Tune stops before
    creating the trials still waiting for their turn (max_concurrent 1). The callback
    is pickled with the experiment, so a restore brings it back: keyed to trial 0."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.config["trial"]["trial"]["index"] == 0:
            os.kill(os.getpid(), signal.SIGINT)


def test_trials_never_started_before_an_interrupt_are_unfinished(local_ray, tmp_path):
    spec = spec_from_dict(
        synthetic_spec(
            "interrupted",
            epochs=1,
            search={
                "space": {"train.seed": {"grid": [0, 1, 2]}},
                "asha": None,
                "max_concurrent": 1,
            },
        )
    )
    result = run_experiment(spec, storage=tmp_path, callbacks=[InterruptAfterFirstTrial()])
    by_name = {t.name: t for t in result.trials}
    assert list(by_name) == ["baseline-seed0", "baseline-seed1", "baseline-seed2"]
    assert by_name["baseline-seed0"].stopped_by == "finished"
    later = [by_name["baseline-seed1"], by_name["baseline-seed2"]]
    assert [(t.status, t.stopped_by, t.epochs_run) for t in later] == [
        ("unfinished", "not started", 0)
    ] * 2
    assert not result.ok  # `effray run` exits 130 and points to `effray restore`
    saved = json.loads((Path(result.path) / RESULTS_JSON).read_text())
    assert [row["status"] for row in saved["trials"]] == ["finished", "unfinished", "unfinished"]
    restored = restore_experiment(result.path)
    assert [(t.name, t.stopped_by) for t in restored.trials] == [
        (name, "finished") for name in by_name
    ]


def test_diverging_trial_errors_with_its_reason_and_the_rest_finish(local_ray, tmp_path):
    spec_file = tmp_path / "diverge.yaml"
    spec = synthetic_spec(
        "diverge",
        epochs=2,
        train={"optimizer": "sgd"},
        search={"space": {"train.lr": {"grid": [0.01, 0.05, 100.0]}}, "asha": None},
    )
    spec_file.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "runs"
    out = CliRunner().invoke(
        app,
        ["run", str(spec_file), "--set", "train.weight_decay=10", "--storage", str(storage)],
    )
    assert out.exit_code == 1, out.output
    assert "baseline-lr100-seed0: TrialDiverged: diverged at epoch 1" in out.output
    assert "1 trial failed." in out.output
    saved = json.loads((storage / "diverge" / RESULTS_JSON).read_text())
    rows = {row["name"]: row for row in saved["trials"]}
    assert rows["baseline-lr100-seed0"]["status"] == "error"
    assert rows["baseline-lr100-seed0"]["stopped_by"] == "diverged"  # said by the exception
    assert rows["baseline-lr100-seed0"]["error"].startswith("TrialDiverged: diverged at epoch 1")
    assert [rows[n]["stopped_by"] for n in ("baseline-lr0.01-seed0", "baseline-lr0.05-seed0")] == [
        "finished",
        "finished",
    ]
    # the retries replay the recorded failure instead of training again
    assert len(attempts_in(storage / "diverge" / "baseline-lr100-seed0")) == 1


def test_run_refuses_a_bad_spec_before_starting_ray(tmp_path):
    spec_file = tmp_path / "bad.yaml"
    spec_file.write_text(yaml.safe_dump(synthetic_spec("bad", train={"lrr": 0.1})))
    out = CliRunner().invoke(app, ["run", str(spec_file), "--storage", str(tmp_path)])
    assert out.exit_code == 2
    assert "train.lrr: unknown key" in out.output
    assert not (tmp_path / "bad").exists()


def test_restore_needs_an_experiment_directory(tmp_path):
    (tmp_path / "trial").mkdir()
    (tmp_path / "trial" / "trial_spec.yaml").write_text("name: x\n")
    out = CliRunner().invoke(app, ["restore", str(tmp_path / "trial")])
    assert out.exit_code == 2
    assert "is not an effray/Ray Tune experiment directory" in out.output
    assert "effray resume" in out.output
    with pytest.raises(ExperimentError):
        restore_experiment(tmp_path / "missing")


def test_a_new_run_never_reuses_an_experiment_directory(tmp_path):
    root = str(tmp_path)
    assert fresh_experiment_dir(root, "exp", explicit=False) == (str(tmp_path / "exp"), "exp")
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / EXPERIMENT_FILE).write_text("{}")
    assert fresh_experiment_dir(root, "exp", explicit=False)[1] == "exp-2"
    with pytest.raises(ExperimentError, match="effray restore"):
        fresh_experiment_dir(root, "exp", explicit=True)


def test_a_replayed_failure_keeps_its_reason_through_pickling():
    """Ray pickles a trial's exception to the driver; the verdict survives."""
    import pickle

    from effray.results import error_line, stop_reason_of_error
    from effray.tune import TrialFailed

    err = pickle.loads(pickle.dumps(TrialFailed("TrialDiverged: diverged at epoch 3", "diverged")))
    assert stop_reason_of_error(err) == "diverged"
    assert error_line(err) == "TrialDiverged: diverged at epoch 3"


def descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _latest_state(exp_dir: Path) -> dict[str, str]:
    """Trial dir name -> status in Ray's newest experiment snapshot (what restore reads)."""
    states = sorted(exp_dir.glob("experiment_state-*.json"))
    if not states:
        return {}
    try:
        data = json.loads(states[-1].read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # being written
    out = {}
    for trial_json, _ in data["trial_data"]:
        trial = json.loads(trial_json)
        out[trial["relative_logdir"]] = trial["status"]
    return out


@pytest.mark.slow
def test_killed_driver_then_restore_finishes_every_trial(tmp_path):
    spec_file = tmp_path / "restore.yaml"
    spec = synthetic_spec(
        "restore",
        train_size=2048,
        epochs=3,
        search={"space": {"train.seed": {"grid": [0, 1, 2, 3]}}, "asha": None, "max_concurrent": 1},
    )
    spec_file.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "runs"
    exp = storage / "restore"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "effray", "run", str(spec_file), "--storage", str(storage)]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    state: dict[str, str] = {}
    while time.time() < deadline and driver.poll() is None:
        state = _latest_state(exp)
        if "TERMINATED" in state.values() and len(state) >= 2:
            break
        time.sleep(0.1)
    assert driver.poll() is None, driver.stdout.read().decode()
    ray_processes = descendants(driver.pid)
    finished = sorted(name for name, status in state.items() if status == "TERMINATED")
    before = {name: (exp / name / ATTEMPTS).read_text() for name in finished}
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "effray", "restore", str(exp)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for pid in ray_processes:  # the killed driver's Ray agents, if any outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert out.returncode == 0, out.stdout + out.stderr
    assert "restore: restoring" in out.stdout
    saved = json.loads((exp / RESULTS_JSON).read_text())
    assert sorted(row["name"] for row in saved["trials"]) == [f"baseline-seed{i}" for i in range(4)]
    assert all(row["stopped_by"] == "finished" for row in saved["trials"]), saved["trials"]
    for row in saved["trials"]:
        assert epochs_in(exp / row["name"]) == [1, 2, 3]
    for name in finished:  # kept as they were: not started again
        assert (exp / name / ATTEMPTS).read_text() == before[name]
