"""W&B tracking with real wandb in offline mode, its run files read back (tests/wandb_reader.py).

No network: WANDB_BASE_URL points at a closed port on 127.0.0.1, W&B's error telemetry
is off, and no key is configured, so mode auto resolves to offline.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from wandb_reader import read_runs

from effray import tracking
from effray.cli import app
from effray.local import resume_dir, train_dir
from effray.spec import expand, spec_from_dict
from effray.tracking import (
    NullTracker,
    TrackingWarning,
    WandbTracker,
    make_tracker,
    run_config,
    scrub,
    wandb_run,
)

runner = CliRunner()
CLI_ENV = {"COLUMNS": "240", "NO_COLOR": "1"}
SYN = {"name": "synthetic", "train_size": 256, "val_size": 128, "size": 16}
OFFLINE = {"mode": "offline", "tags": ["test"]}
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"  # 40 chars, the shape of a W&B key
CONFIG_KEYS = {  # the thesis dashboard columns and a sample of the flattened spec
    "experiment",
    "trial",
    "trial_group",
    "architecture",
    "dataset",
    "image_size",
    "batch_size",
    "epochs",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "scheduler",
    "loss",
    "seed",
    "techniques",
    "technique/blurpool",
    "technique/mixup",
    "params",
    "size_kb",
    "flops",
    "trial_dir",
    "train.lr",
    "data.name",
    "model.name",
    "trial.id",
    "techniques.blurpool.filter_size",
}
SUMMARY_KEYS = {
    "best/val_acc",
    "best/val_loss",
    "best/train_acc",
    "best/train_loss",
    "best/epoch",
    "epochs_run",
    "stop_reason",
    "params",
    "size_kb",
    "flops",
    "latency_s",
    "val/acc",
    "val/loss",
}
HISTORY_KEYS = {
    "_step",
    "epoch",
    "train/loss",
    "train/acc",
    "val/loss",
    "val/acc",
    "lr",
    "time/epoch_s",
    "train/samples_per_s",
    "blurpool/num_layers",
}


def no_wandb_network(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """No key, no WANDB_MODE, nothing reachable but a closed local port."""
    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY"):
        mp.delenv(name, raising=False)
    mp.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    mp.setenv("WANDB_ERROR_REPORTING", "false")
    mp.setenv("NETRC", str(tmp / "no-netrc"))


@pytest.fixture(autouse=True)
def offline_wandb(monkeypatch, tmp_path):
    no_wandb_network(monkeypatch, tmp_path)


def raw_spec(epochs: int = 3, **over) -> dict:
    raw = {
        "name": "tracked",
        "description": "tracking test: blurpool on a toy problem",
        "data": dict(SYN),
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": epochs, "batch_size": 64, "latency_repeats": 1, "threads": 1},
        "techniques": [{"kind": "blurpool"}],
        "wandb": {"tags": ["test"]},
    }
    raw.update(over)
    return raw


def trial(**over):
    return expand(spec_from_dict(raw_spec(**over)))[0]


def write_spec(path: Path, **over) -> Path:
    path.write_text(yaml.safe_dump(raw_spec(**over)))
    return path


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], env=CLI_ENV)
    assert result.exit_code == 0, result.output
    return result


def trial_id(trial_dir: Path) -> str:
    return yaml.safe_load((trial_dir / "trial_spec.yaml").read_text())["trial"]["id"]


# ---------------------------------------------------------------------------------
# effray train / effray resume (no Ray)
# ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`effray train` (3 epochs) then `effray resume --epochs 5` of one trial directory."""
    root = tmp_path_factory.mktemp("cli")
    with pytest.MonkeyPatch.context() as mp:
        no_wandb_network(mp, root)
        out = root / "trial"
        invoke("train", write_spec(root / "spec.yaml"), "--out", out)
        after_train = read_runs(out)
        invoke("resume", out, "--epochs", "5")
    return out, after_train, read_runs(out)


def test_train_writes_one_offline_run_named_grouped_and_tagged(trained):
    out, runs, _ = trained
    assert list(runs) == [trial_id(out)]
    run = runs[trial_id(out)]
    assert (run.name, run.group, run.project) == ("blurpool", "tracked", "effray")
    assert run.tags == ["blurpool", "test"]
    assert run.notes == "tracking test: blurpool on a toy problem"
    assert run.steps == [1, 2, 3] and run.exit_codes == [0]
    assert run.files[0].parent.parent == out / "wandb"  # offline runs live in the trial dir


def test_run_config_is_the_flat_spec_plus_dashboard_columns(trained):
    out, runs, _ = trained
    config = runs[trial_id(out)].config
    assert CONFIG_KEYS <= config.keys(), CONFIG_KEYS - config.keys()
    assert config["params"] == 1560 and config["architecture"] == "paper_mnist_1p5k_dw"
    assert config["technique/blurpool"] is True and config["technique/mixup"] is False
    assert config["image_size"] == 16 and config["train.lr"] == 0.05
    assert config["loss"] == "cross_entropy" and config["scheduler"] == "constant"
    assert config["trial_dir"] == str(out.resolve())
    assert not any(isinstance(v, dict) and v for v in config.values())  # flattened


def test_history_is_one_row_per_epoch_with_the_epoch_as_step(trained):
    out, runs, _ = trained
    history = runs[trial_id(out)].history
    for row in history:
        assert HISTORY_KEYS <= row.keys(), HISTORY_KEYS - row.keys()
        assert row["_step"] == row["epoch"]
        assert not any(k.startswith("model/") for k in row)  # facts go to config and summary
    metrics = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()[:3]]
    assert [r["val/acc"] for r in history] == [m["val/acc"] for m in metrics]


def test_summary_has_best_values_epochs_and_stop_reason(trained):
    out, runs, _ = trained
    run = runs[trial_id(out)]
    summary = run.summary
    assert SUMMARY_KEYS <= summary.keys(), SUMMARY_KEYS - summary.keys()
    accs = [r["val/acc"] for r in run.history]
    assert summary["best/val_acc"] == max(accs) == summary["val/acc"]["max"]
    assert summary["best/val_loss"] == min(r["val/loss"] for r in run.history)
    assert summary["best/epoch"] == accs.index(max(accs)) + 1
    assert summary["epochs_run"] == 3 and summary["stop_reason"] == "finished"
    assert summary["params"] == 1560 and summary["latency_s"] > 0


def test_resume_continues_the_same_run_without_duplicates(trained):
    out, before, after = trained
    assert list(after) == list(before) == [trial_id(out)]
    run = after[trial_id(out)]
    assert run.steps == [1, 2, 3, 4, 5]
    assert len(run.files) == 2 and run.exit_codes == [0, 0]  # one segment per process
    assert run.summary["epochs_run"] == 5 and run.summary["stop_reason"] == "finished"
    assert run.summary["best/val_acc"] == max(r["val/acc"] for r in run.history)
    assert run.config["epochs"] == 5


def test_sync_lists_the_offline_runs(trained):
    out, _, _ = trained
    result = invoke("sync", out, "--dry-run")
    assert "would push 2 offline run directories (1 W&B run)" in result.output


def test_sync_without_offline_runs_is_exit_2(tmp_path):
    result = runner.invoke(app, ["sync", str(tmp_path)], env=CLI_ENV)
    assert result.exit_code == 2
    assert "no offline W&B runs" in result.output


# ---------------------------------------------------------------------------------
# Failures never stop training; secrets never reach a file
# ---------------------------------------------------------------------------------


def _raise(*args, **kwargs):
    raise RuntimeError("wandb-core crashed")


@contextlib.contextmanager
def refusing_server() -> Iterator[str]:
    """A W&B server on 127.0.0.1 that answers every request with 401 (a revoked key)."""

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"errors": [{"message": "invalid API key"}]}')

        do_GET = do_PUT = do_POST

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


@pytest.fixture(scope="module")
def untracked_history(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "disabled")
        result = train_dir(trial(epochs=1), tmp_path_factory.mktemp("plain"))
    return [m["train/loss"] for m in result.history]


FAILURES = ["bogus-mode", "init-raises", "log-raises", "key-refused", "unreachable"]


@pytest.mark.parametrize("failure", FAILURES)
def test_wandb_failure_warns_and_training_completes_unchanged(
    failure, monkeypatch, tmp_path, untracked_history
):
    import wandb
    from wandb.sdk.wandb_run import Run

    with contextlib.ExitStack() as stack:
        if failure == "bogus-mode":
            monkeypatch.setenv("WANDB_MODE", "bogus")
        elif failure == "init-raises":
            monkeypatch.setattr(wandb, "init", _raise)
        elif failure == "log-raises":
            monkeypatch.setattr(Run, "log", _raise)
        else:  # online with a key, the server a closed port or refusing: offline instead
            monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
            monkeypatch.setattr(wandb_run, "_logins", {})  # the key check is cached there
            if failure == "key-refused":
                monkeypatch.setenv("WANDB_BASE_URL", stack.enter_context(refusing_server()))
                wandb.teardown()  # wandb reads WANDB_BASE_URL once per process
                stack.callback(wandb.teardown)  # forget the refusing server afterwards
        started = time.perf_counter()
        with pytest.warns(TrackingWarning) as caught:
            result = train_dir(trial(epochs=1), tmp_path / "t")
    assert time.perf_counter() - started < 60
    assert len([w for w in caught if w.category is TrackingWarning]) == 1
    assert [m["train/loss"] for m in result.history] == untracked_history
    assert result.stop_reason == "finished" and len(result.history) == 1
    if failure in ("unreachable", "key-refused"):
        assert "logging offline" in str(caught[0].message)
        assert "push later with `effray sync`" in str(caught[0].message)
        reason = "invalid API key" if failure == "key-refused" else "127.0.0.1:9"
        assert reason in str(caught[0].message)
        (run,) = read_runs(tmp_path / "t").values()
        assert run.steps == [1] and run.summary["stop_reason"] == "finished"


def test_no_api_key_in_any_file_written(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)  # offline mode: the key is never needed
    out = tmp_path / "trial"
    result = runner.invoke(
        app,
        [
            "train",
            str(write_spec(tmp_path / "spec.yaml", epochs=1, wandb=OFFLINE)),
            "--out",
            str(out),
        ],
        env=CLI_ENV,
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert FAKE_KEY not in result.output
    spec = yaml.safe_load((out / "trial_spec.yaml").read_text())
    assert spec["wandb"]["mode"] == "offline"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.suffix == ".pt" for p in files)
    leaked = [p for p in files if FAKE_KEY.encode() in p.read_bytes()]
    assert not leaked, leaked


def test_secrets_never_reach_the_wandb_files(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    spec = trial(epochs=1, description=f"run with key {FAKE_KEY}", wandb={"mode": "offline"})
    spec.trial.id = "5ec12e7a"
    tracker = make_tracker(spec, tmp_path)
    tracker.start(spec, tmp_path)
    tracker.log({"epoch": 1, "val/acc": 50.0}, step=1)
    tracker.finish("finished")
    (run,) = read_runs(tmp_path).values()
    assert run.notes == "run with key [redacted]" and run.config["description"] == run.notes
    files = [p for p in (tmp_path / "wandb").rglob("*") if p.is_file()]
    assert not [p for p in files if FAKE_KEY.encode() in p.read_bytes()]


def test_scrub_removes_secret_names_and_key_shaped_values(monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "my-very-own-key-value")
    config = {
        "techniques.my_pkg:Upload.api_key": "abc",
        "data.auth_token": "t0k3n",
        "db.password": "hunter2",
        "notes": "key my-very-own-key-value and " + FAKE_KEY,
        "tags": ["ok", FAKE_KEY],
        "train.lr": 0.1,
        "run.checkpoint_keep": 2,
    }
    assert scrub(config) == {
        "techniques.my_pkg:Upload.api_key": "[redacted]",
        "data.auth_token": "[redacted]",
        "db.password": "[redacted]",
        "notes": "key [redacted] and [redacted]",
        "tags": ["ok", "[redacted]"],
        "train.lr": 0.1,
        "run.checkpoint_keep": 2,
    }


# ---------------------------------------------------------------------------------
# Choosing a tracker, stop reasons, a killed process
# ---------------------------------------------------------------------------------


def test_mode_auto_is_offline_without_a_key_and_online_with_one(monkeypatch, tmp_path):
    spec = trial()
    spec.trial.id = "0000abcd"
    tracker = make_tracker(spec, tmp_path)
    assert isinstance(tracker, WandbTracker) and tracker.mode == "offline"
    assert tracker.root == tmp_path
    monkeypatch.setenv("WANDB_API_KEY", FAKE_KEY)
    assert make_tracker(spec, tmp_path).mode == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login user password {FAKE_KEY}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert make_tracker(spec, tmp_path).mode == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert isinstance(make_tracker(spec, tmp_path), NullTracker)


def test_tracking_off_writes_nothing(tmp_path):
    spec = trial(epochs=1, wandb={"mode": "disabled"})
    train_dir(spec, tmp_path / "t")
    assert not (tmp_path / "t" / "wandb").exists()
    no_trial = spec_from_dict(raw_spec(epochs=1))  # not expanded: no stable id, no run
    assert isinstance(make_tracker(no_trial, tmp_path), NullTracker)


def test_epochs_re_run_after_a_restore_are_not_logged_twice(tmp_path):
    """A restored trial resumes from an older checkpoint than the last epoch W&B saw."""
    spec = trial(epochs=4, wandb={"mode": "offline"})
    spec.trial.id = "4e57a7e0"
    for epochs in ([1, 2, 3], [2, 3, 4]):  # the second process re-runs epochs 2 and 3
        tracker = make_tracker(spec, tmp_path)
        tracker.start(spec, tmp_path / "trial")
        for epoch in epochs:
            tracker.log({"epoch": epoch, "val/acc": 10.0 * epoch, "val/loss": 1 / epoch}, epoch)
        tracker.finish("finished" if epochs[-1] == 4 else "interrupted")
    (run,) = read_runs(tmp_path).values()
    assert run.steps == [1, 2, 3, 4] and len(run.files) == 2
    assert run.summary["epochs_run"] == 4 and run.summary["stop_reason"] == "finished"
    assert run.summary["best/val_acc"] == 40.0 and run.summary["best/epoch"] == 4


def test_a_trial_spec_that_cannot_be_read_is_untracked_with_a_warning(tmp_path):
    with pytest.warns(TrackingWarning, match="W&B tracking off"):
        spec, tracker = tracking.open_run({"trainn": {}}, tmp_path)
    assert spec is None and isinstance(tracker, NullTracker)


def test_diverged_trial_finishes_its_run_as_diverged(tmp_path):
    from effray.train import TrialDiverged

    spec = trial(epochs=2, train={"lr": 1e30, "momentum": 0.0, "weight_decay": 0.0, "threads": 1})
    with pytest.raises(TrialDiverged):
        train_dir(spec, tmp_path)
    (run,) = read_runs(tmp_path).values()
    assert run.summary["stop_reason"] == "diverged" and run.exit_codes == [1]


def test_run_config_for_a_scheduled_dropout_trial():
    spec = trial(
        techniques=[
            {"kind": "dropout", "p": 0.3},
            {"kind": "one_cycle"},
            {"kind": "label_smoothing", "alpha": 0.1},
        ]
    )
    config = run_config(spec, {"model/params": 1560.0})
    assert config["dropout"] == 0.3 and config["scheduler"] == "one_cycle"
    assert config["loss"] == "cross_entropy(label_smoothing=0.1)"
    assert config["techniques"] == "dropout+one_cycle+label_smoothing"
    assert config["params"] == 1560.0 and config["technique/one_cycle"] is True


def logged_step(trial_dir: Path) -> int:
    """The last step the tracker handed to W&B (its state file), 0 before the first."""
    for path in trial_dir.glob("wandb/effray-runs/*.json"):
        with contextlib.suppress(ValueError):
            return json.loads(path.read_text())["last_step"]
    return 0


@pytest.fixture
def parent_wandb_service(tmp_path):
    """A wandb-core in this process, as in a notebook: children inherit WANDB_SERVICE."""
    spec = trial(epochs=1, wandb={"mode": "offline"})
    spec.trial.id = "9a4e0700"
    tracker = make_tracker(spec, tmp_path / "parent")
    tracker.start(spec)
    tracker.finish("finished")
    assert os.environ.get("WANDB_SERVICE")


@pytest.mark.slow
@pytest.mark.usefixtures("parent_wandb_service")
def test_sigkill_then_resume_keeps_one_continuous_run(tmp_path):
    """SIGKILL of `effray train` after epoch 2, then `effray resume`: steps 1..4, no duplicates."""
    spec_path = write_spec(tmp_path / "spec.yaml", epochs=4, data={**SYN, "train_size": 4096})
    out = tmp_path / "killed"
    env = dict(os.environ)  # WANDB_SERVICE of this process included: effray starts its own
    cmd = [sys.executable, "-m", "effray"]
    proc = subprocess.Popen(
        [*cmd, "train", str(spec_path), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    import struct

    def steps_on_disk() -> int:  # epochs W&B has written to the run's .wandb file so far
        try:
            return max((len(r.steps) for r in read_runs(out, wait_s=0).values()), default=0)
        except struct.error:  # the file exists but its 7-byte header is not written yet
            return 0

    deadline = time.time() + 300
    while time.time() < deadline and (logged_step(out) < 2 or steps_on_disk() < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed = read_runs(out, wait_s=0)[trial_id(out)]
    assert killed.exit_codes == [None]  # no exit record: the process died
    assert len(killed.steps) >= 2 and killed.steps == list(range(1, len(killed.steps) + 1))
    done = subprocess.run([*cmd, "resume", str(out)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    runs = read_runs(out)
    assert list(runs) == [trial_id(out)]
    assert runs[trial_id(out)].steps == [1, 2, 3, 4]
    assert runs[trial_id(out)].summary["stop_reason"] == "finished"


def test_resume_of_a_trial_copied_without_its_runs_continues_by_id(tmp_path):
    """A trial directory copied off a cluster: the run id comes from the checkpoint."""
    import shutil

    spec = trial(epochs=1)
    first = train_dir(spec, tmp_path / "a")
    assert first.stop_reason == "finished"
    shutil.copytree(tmp_path / "a", tmp_path / "b", ignore=shutil.ignore_patterns("wandb"))
    resume_dir(tmp_path / "b", epochs=2)
    assert list(read_runs(tmp_path / "b")) == [trial_id(tmp_path / "a")]
    assert read_runs(tmp_path / "b")[trial_id(tmp_path / "a")].steps == [2]


# ---------------------------------------------------------------------------------
# Under Ray: one run per trial, driven by the driver-side callback in effray.tune
# ---------------------------------------------------------------------------------


def ray_spec(name: str, **over) -> dict:
    from test_tune import synthetic_spec  # the Ray tests' tiny learnable problem

    return synthetic_spec(name, **over)


def trial_ids(experiment_dir: Path) -> dict[str, str]:
    """Trial directory name -> the trial's stable id (its W&B run id)."""
    return {p.parent.name: trial_id(p.parent) for p in experiment_dir.glob("*/trial_spec.yaml")}


def assert_one_continuous_run_per_trial(experiment_dir: Path, epochs_run: dict[str, int]):
    runs = read_runs(experiment_dir)
    ids = trial_ids(experiment_dir)
    assert sorted(runs) == sorted(ids.values()), "a run per trial, no other run"
    for name, run_id in ids.items():
        run = runs[run_id]
        assert run.name == name and run.group == experiment_dir.name
        assert run.steps == list(range(1, epochs_run[name] + 1)), (name, run.steps)
        assert run.exit_codes[-1] == 0 and run.summary["epochs_run"] == epochs_run[name]
    return runs


@pytest.mark.slow
@pytest.mark.ray
def test_asha_run_is_one_complete_run_per_trial(tmp_path):
    from test_tune import LEARNING_RATES

    from effray.tune import ray_session, run_experiment

    search = {
        "space": {"train.lr": {"grid": LEARNING_RATES}},
        "asha": {"metric": "val/acc", "mode": "max", "grace_period": 1, "reduction_factor": 2},
        "max_concurrent": 2,
    }
    spec = spec_from_dict(ray_spec("asha", search=search))
    with ray_session(num_cpus=2):
        result = run_experiment(spec, storage=tmp_path)
    trials = {t.directory: t for t in result.trials}
    assert len(trials) == 6 and result.ok
    runs = assert_one_continuous_run_per_trial(
        Path(result.path), {name: t.epochs_run for name, t in trials.items()}
    )
    ids = trial_ids(Path(result.path))
    for name, t in trials.items():
        run = runs[ids[name]]
        assert run.summary["stop_reason"] == t.stopped_by  # the same verdict as results.json
        assert run.summary["best/val_acc"] == max(r["val/acc"] for r in run.history)
        saved = yaml.safe_load((Path(result.path) / name / "trial_spec.yaml").read_text())
        assert run.config["lr"] == run.config["train.lr"] == saved["train"]["lr"]
        assert CONFIG_KEYS - {"techniques.blurpool.filter_size"} <= run.config.keys()
    assert "asha" in {t.stopped_by for t in trials.values()}
    assert "finished" in {t.stopped_by for t in trials.values()}


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Ray's agents started by a driver), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.usefixtures("parent_wandb_service")
def test_killed_driver_restore_and_local_resume_continue_the_same_runs(tmp_path):
    """SIGKILL `effray run` mid-experiment, `effray restore`, then `effray resume` a trial:
    every trial keeps one run, its steps continuous, never a duplicate or a second run."""
    spec_file = tmp_path / "restore.yaml"
    search = {"space": {"train.seed": {"grid": [0, 1]}}, "asha": None, "max_concurrent": 2}
    spec_file.write_text(
        yaml.safe_dump(ray_spec("restore", train_size=1024, epochs=3, search=search))
    )
    exp = tmp_path / "runs" / "restore"
    effray = [sys.executable, "-m", "effray"]
    driver = subprocess.Popen(
        [*effray, "run", str(spec_file), "--storage", str(tmp_path / "runs")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:  # kill mid-run, no trial near its end
        epochs = [p.read_text().count("\n") for p in exp.glob("*/metrics.jsonl")]
        if 2 in epochs and 3 not in epochs:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the experiment ended before the driver was killed"
    agents = _descendants(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    killed = read_runs(exp, wait_s=0)
    try:
        out = subprocess.run(
            [*effray, "restore", str(exp)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for pid in agents:  # the killed driver's Ray processes, if any outlived it
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert out.returncode == 0, out.stdout + out.stderr
    assert any(None in run.exit_codes for run in killed.values()), "no run was cut off"
    names = sorted(trial_ids(exp))
    runs = assert_one_continuous_run_per_trial(exp, dict.fromkeys(names, 3))
    assert any(len(run.files) > 1 for run in runs.values()), "no run was continued"

    assert resume_dir(exp / names[0], epochs=4).stop_reason == "finished"  # `effray resume`
    assert_one_continuous_run_per_trial(exp, {**dict.fromkeys(names, 3), names[0]: 4})
    assert not list((exp / names[0]).glob("wandb")), (
        "the resumed trial's run stays in the experiment"
    )


def test_a_restored_driver_logs_the_epochs_no_driver_heard(tmp_path):
    """The driver died after the trial reported epoch 2 and before its callback logged
    it: the restored driver's first result (epoch 3) brings epoch 2 from metrics.jsonl."""
    from types import SimpleNamespace

    from effray.tune.callbacks import WandbCallback

    spec = trial(epochs=3, wandb={"mode": "offline"})
    spec.trial.id = "b4ckf111"
    exp = tmp_path / "exp"
    trial_dir = exp / spec.trial.name
    trial_dir.mkdir(parents=True)
    rows = [{"epoch": e, "val/acc": 50.0 + e, "val/loss": 1.0 / e} for e in (1, 2, 3)]
    ray_trial = SimpleNamespace(
        trial_id="t0", path=str(trial_dir), config={"trial": spec.model_dump(mode="json")}
    )
    first = WandbCallback(str(exp))
    first.on_trial_result(0, [], ray_trial, {**rows[0], "time_total_s": 1.0})
    first._run(ray_trial)[1].finish("interrupted")  # the run of the killed driver ends
    lines = [json.dumps(r) + "\n" for r in rows]
    (trial_dir / "metrics.jsonl").write_text("".join(lines) + '{"epoch": 4, "val/a')  # torn
    restored = WandbCallback(str(exp))
    restored.on_trial_result(0, [], ray_trial, {**rows[2], "time_total_s": 3.0})
    restored._run(ray_trial)[1].finish("finished")
    (run,) = read_runs(exp).values()
    assert run.steps == [1, 2, 3]
    assert [row["val/acc"] for row in run.history] == [51.0, 52.0, 53.0]
    assert "time_total_s" not in run.history[0]  # Ray's own keys stay out
