"""Object storage end to end, against a real S3 server on loopback (moto's server mode).

    $ .venv/bin/python -m pytest tests/test_storage.py -q

The `s3` fixture starts the server on 127.0.0.1 with a free port and stops it after.
Every client is pointed at it (the URI's endpoint_override, or AWS_ENDPOINT_URL) with fake
credentials from the environment and no AWS config files, W&B at a closed local port,
Ray embedded on 127.0.0.1: nothing else is contacted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner
from wandb_reader import read_runs

from effray.cli import app
from effray.results import DRIVER_LOG, EXPERIMENT_FILE, METRICS, RESULTS_JSON
from effray.storage import (
    basename,
    exists,
    join,
    location,
    parent,
    read_text,
    redact,
    upload,
)

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "effray-test"
CLI_ENV = {"COLUMNS": "240", "NO_COLOR": "1"}
MOTO = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()  # until the test closes stdin
server.stop()
"""


class S3:
    """A moto server on 127.0.0.1: its endpoint, URIs into its bucket, its process."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", MOTO],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, **(env or {})},
        )
        self.port = int(self.proc.stdout.readline())
        self.endpoint = f"127.0.0.1:{self.port}"

    def uri(self, path: str = "", bucket: str = BUCKET, query: bool = True) -> str:
        options = f"?endpoint_override={self.endpoint}&scheme=http" if query else ""
        return f"s3://{bucket}/{path}".rstrip("/") + options

    def make_bucket(self, name: str = BUCKET) -> None:
        import pyarrow.fs

        fs = pyarrow.fs.S3FileSystem(
            endpoint_override=self.endpoint, scheme="http", allow_bucket_creation=True
        )
        fs.create_dir(name)

    def stop(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def fake_aws(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    """Fake keys, a region, no AWS config files, no instance metadata, no endpoint."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        mp.delenv(name, raising=False)
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
    mp.setenv("AWS_CONFIG_FILE", str(tmp / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp / "no-aws-credentials"))


def no_wandb_network(mp: pytest.MonkeyPatch, tmp: Path) -> None:
    from test_tracking import no_wandb_network as offline

    offline(mp, tmp)


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server for this module, with the bucket `effray-test`."""
    with pytest.MonkeyPatch.context() as mp:
        fake_aws(mp, tmp_path_factory.mktemp("aws"))
        server = S3()
        try:
            server.make_bucket()
            yield server
        finally:
            server.stop()


@pytest.fixture(autouse=True)
def offline_env(monkeypatch, tmp_path):
    fake_aws(monkeypatch, tmp_path)
    no_wandb_network(monkeypatch, tmp_path)


def invoke(*args, code: int = 0):
    result = CliRunner().invoke(app, [str(a) for a in args], env=CLI_ENV)
    assert result.exit_code == code, result.output
    return result


def synthetic(name: str, **over) -> dict:
    from test_tune import synthetic_spec  # the Ray tests' tiny learnable problem

    return synthetic_spec(name, **over)


# ---------------------------------------------------------------------------------
# Locations: joined inside the URI's path, credentials hidden
# ---------------------------------------------------------------------------------


def test_paths_are_joined_inside_the_uri_path_before_its_query():
    root = "s3://b/runs?endpoint_override=127.0.0.1:9000&scheme=http"
    assert (
        join(root, "exp", "t1") == "s3://b/runs/exp/t1?endpoint_override=127.0.0.1:9000&scheme=http"
    )
    assert basename(join(root, "exp")) == "exp"
    assert parent(join(root, "exp")) == root
    assert join("s3://b", "exp") == "s3://b/exp"
    assert location("s3://b/runs/?scheme=http") == "s3://b/runs?scheme=http"
    assert location("file:///tmp/a%20b") == "/tmp/a b"


def test_credentials_never_appear_in_a_location_shown():
    shown = redact("s3://AKIA123:s3cr3t@b/runs?endpoint_override=h:1&secret_key=zz&token=t")
    assert "s3cr3t" not in shown and "zz" not in shown and "AKIA123" not in shown
    assert shown == "s3://***@b/runs?endpoint_override=h:1&secret_key=***&token=***"
    assert redact("runs/exp") == "runs/exp"


# ---------------------------------------------------------------------------------
# Bad storage: exit 2 within seconds, the URI named (redacted), nothing started
# ---------------------------------------------------------------------------------


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(synthetic("bad-storage", epochs=1)))
    return path


def refused(args, *expected: str, within_s: float = 15.0) -> str:
    started = time.monotonic()
    result = invoke(*args, code=2)
    assert time.monotonic() - started < within_s, "the check is not time-bounded"
    for text in expected:
        assert text in result.output, result.output
    assert "Traceback" not in result.output
    return result.output


def test_unknown_scheme_and_option_are_refused(s3, spec_file):
    refused(["report", "ftp://host/runs/exp"], "unknown storage scheme 'ftp'", "s3://")
    refused(
        ["run", spec_file, "--storage", s3.uri("runs") + "&colour=red"],
        "unknown option 'colour'",
        "endpoint_override",
    )


def test_missing_bucket_is_refused_before_ray_starts(s3, spec_file):
    ray = pytest.importorskip("ray")
    output = refused(
        ["run", spec_file, "--storage", s3.uri("runs", bucket="no-such-bucket")],
        "bucket 'no-such-bucket' does not exist",
        f"s3://no-such-bucket?endpoint_override={s3.endpoint}&scheme=http",
    )
    assert "aws s3 mb s3://no-such-bucket" in output
    assert not ray.is_initialized()
    refused(["resume", s3.uri("runs/exp/trial", bucket="no-such-bucket")], "does not exist")


def test_refused_credentials_are_named_without_the_secret(tmp_path, spec_file):
    guarded = S3({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})  # only IAM users' keys are accepted
    try:
        uri = f"s3://AKIAEXAMPLE0000000000:wrong-secret-123@{BUCKET}/runs?endpoint_override={guarded.endpoint}&scheme=http"
        output = refused(["run", spec_file, "--storage", uri], "credentials were refused")
        assert "wrong-secret-123" not in output and "AKIAEXAMPLE" not in output
        assert "AWS_ACCESS_KEY_ID" in output and "s3://***@effray-test?endpoint" in output
        refused(["report", guarded.uri("runs/exp")], "credentials were refused")
    finally:
        guarded.stop()


def test_unreachable_endpoint_is_refused_in_seconds(spec_file):
    with socket.socket() as silent, socket.socket() as closed:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # accepts connections, never answers
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        for sock in (silent, closed):
            uri = f"s3://{BUCKET}/runs?endpoint_override=127.0.0.1:{sock.getsockname()[1]}&scheme=http"
            refused(["run", spec_file, "--storage", uri], "cannot be reached", "AWS_ENDPOINT_URL")
            refused(["sync", uri], "cannot be reached")


# ---------------------------------------------------------------------------------
# A trial in the bucket resumed here (no Ray): `effray train`'s directory uploaded
# ---------------------------------------------------------------------------------


def trial_id(trial_dir: Path) -> str:
    return yaml.safe_load((trial_dir / "trial_spec.yaml").read_text())["trial"]["id"]


def epochs(metrics_file: str | Path) -> list[int]:
    from effray.report import read_history

    return [int(m["epoch"]) for m in read_history(metrics_file)]


@pytest.mark.slow  # ~20 s: trains 3 tiny epochs
def test_stored_trial_resumes_locally_and_continues_its_run(s3, tmp_path, monkeypatch):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        yaml.safe_dump(synthetic("uploaded", train_size=128, epochs=2, wandb={"mode": "offline"}))
    )
    invoke("train", spec, "--out", tmp_path / "made" / "t")
    upload(tmp_path / "made" / "t", s3.uri("runs/uploaded/t"))
    monkeypatch.chdir(tmp_path)
    out = invoke("resume", s3.uri("runs/uploaded/t"), "--epochs", "3").output
    assert f"copied s3://{BUCKET}/runs/uploaded/t?endpoint_override=" in out
    assert "(checkpoint of epoch 2) → runs/uploaded/t" in out
    local = tmp_path / "runs" / "uploaded" / "t"
    assert epochs(local / METRICS) == [1, 2, 3]
    runs = read_runs(tmp_path)  # the original run (made/) and its continuation
    assert list(runs) == [trial_id(local)] and runs[trial_id(local)].steps == [1, 2, 3]
    again = invoke("resume", s3.uri("runs/uploaded/t"), code=2).output
    assert "runs/uploaded/t already exists" in again and "effray resume runs/uploaded/t" in again


# ---------------------------------------------------------------------------------
# The round trip: run on "the cluster", driver killed, restore; report, resume and sync
# on "the laptop" (the plain URI, the endpoint from AWS_ENDPOINT_URL)
# ---------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    from test_tune import descendants as below

    return below(pid)


@pytest.mark.slow
@pytest.mark.ray
def test_stored_run_report_restore_and_local_resume(s3, tmp_path):
    cluster, laptop, other = (tmp_path / d for d in ("cluster", "laptop", "other"))
    for d in (cluster, laptop, other):
        d.mkdir()
    search = {"space": {"train.seed": {"grid": [0, 1]}}, "asha": None, "max_concurrent": 2}
    spec_file = tmp_path / "stored.yaml"
    spec_file.write_text(
        yaml.safe_dump(synthetic("stored", train_size=1024, epochs=3, search=search))
    )
    names = ["baseline-seed0", "baseline-seed1"]
    root = s3.uri("runs")  # query options: the endpoint is in the URI
    exp = join(root, "stored")
    effray = [sys.executable, "-m", "effray"]
    env = {**os.environ, **CLI_ENV, "PYTHONPATH": str(ROOT)}

    log = (tmp_path / "driver.out").open("w")
    driver = subprocess.Popen(
        [*effray, "run", str(spec_file), "--storage", root],
        cwd=cluster,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 240
    while time.time() < deadline and driver.poll() is None:  # kill mid-run
        done = [len(epochs(join(exp, n, METRICS))) for n in names]
        if 2 in done and 3 not in done:
            break
        time.sleep(0.2)
    assert driver.poll() is None, (tmp_path / "driver.out").read_text()
    agents = descendants(driver.pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    try:
        restored = subprocess.run(
            [*effray, "restore", exp],
            cwd=cluster,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        for pid in agents:  # the killed driver's Ray processes, if any outlived it
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    first = (tmp_path / "driver.out").read_text()
    offline = cluster / "wandb-offline" / "stored"
    assert f"W&B offline runs: {offline / 'wandb'}" in " ".join(first.split())
    assert not (cluster / "runs").exists(), "nothing of a stored experiment under ./runs"

    # results, the manifest and the driver log live with the results
    saved = json.loads(read_text(join(exp, RESULTS_JSON)))
    assert [(r["name"], r["stopped_by"], r["epochs_run"]) for r in saved["trials"]] == [
        (n, "finished", 3) for n in names
    ]
    assert json.loads(read_text(join(exp, EXPERIMENT_FILE)))["trials"] == names
    assert "ray" in read_text(join(exp, DRIVER_LOG)).lower()

    # the laptop: the plain URI, the endpoint from the environment
    laptop_env = {**env, "AWS_ENDPOINT_URL": f"http://{s3.endpoint}"}
    plain = f"s3://{BUCKET}/runs/stored"

    def on_laptop(*args, cwd=laptop):
        out = subprocess.run(
            [*effray, *args], cwd=cwd, env=laptop_env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout + out.stderr

    report = json.loads(
        on_laptop("report", plain, "--format", "json", "--plots", "plots").split("plot:")[0]
    )
    assert [(g["group"], g["n"]) for g in report["groups"]] == [("baseline", 2)]
    assert [(t["name"], t["epochs_run"]) for t in report["trials"]] == [(n, 3) for n in names]
    assert [t["path"] for t in report["trials"]] == [f"{plain}/{n}" for n in names]
    assert (laptop / "plots" / "val_acc_curves.png").stat().st_size > 0
    assert "baseline" in on_laptop("report", exp)  # the query-option URI reads the same

    resumed = on_laptop("resume", f"{plain}/{names[0]}", "--epochs", "5")
    assert f"→ runs/stored/{names[0]}" in resumed
    local = laptop / "runs" / "stored" / names[0]
    assert epochs(local / METRICS) == [1, 2, 3, 4, 5]

    # one W&B run per trial, continued across kill, restore and resume: no duplicate step
    merged = tmp_path / "merged"
    shutil.copytree(offline / "wandb", merged / "cluster", symlinks=True)  # latest-run: a link
    shutil.copytree(local / "wandb", merged / "laptop", symlinks=True)
    runs = read_runs(merged, wait_s=0)
    ids = {
        n: yaml.safe_load(read_text(join(exp, n, "trial_spec.yaml")))["trial"]["id"] for n in names
    }
    assert sorted(runs) == sorted(ids.values())
    assert runs[ids[names[0]]].steps == [1, 2, 3, 4, 5]
    assert runs[ids[names[1]]].steps == [1, 2, 3]
    assert any(None in r.exit_codes for r in runs.values()), "no run was cut off by the kill"
    assert all(r.exit_codes[-1] == 0 for r in runs.values())

    # any machine: the offline runs uploaded beside the results, fetched for `wandb sync`
    synced = on_laptop("sync", plain, "--dry-run", cwd=other)
    assert "would push" in synced and "(2 W&B runs)" in synced
    fetched = read_runs(other / "wandb-offline" / "stored", wait_s=0)
    assert {i: r.steps for i, r in fetched.items()} == {i: [1, 2, 3] for i in ids.values()}
    assert basename(parent(join(exp, names[0]))) == "stored" and exists(join(exp, names[1]))
