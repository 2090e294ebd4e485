"""A two-node Ray cluster on this machine (loopback only, token auth) and cluster.yaml.

    $ .venv/bin/python -m pytest tests/test_cluster.py -q

The cluster is two `ray start` nodes with one CPU each, every address 127.0.0.1, token
auth on everywhere (RAY_AUTH_MODE=token, one token file). effray talks to it the way a
user does: `effray run --address`, `effray submit`, `effray jobs`, `effray logs`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

ray = pytest.importorskip("ray")

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

# `ray start` for a node on this machine that keeps 127.0.0.1 as its address. Ray's
# single-machine mode (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, set for every process of the
# cluster) binds all services to 127.0.0.1, but `ray start --address` refuses to add a
# node in that mode and would swap 127.0.0.1 for the LAN address; this lifts both, for
# the `ray start` command only.
RAY_START_LOOPBACK = """
import sys
import ray._private.ray_constants as ray_constants
import ray._private.services as services
ray_constants.ENABLE_RAY_CLUSTER = True
services.resolve_ip_for_localhost = lambda host: host
from ray.scripts.scripts import main
sys.argv = ["ray", *sys.argv[1:]]
main()
"""


def test_cluster_yaml_passes_rays_own_validator():
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    validate_config(prepare_config(config))  # ray-schema.json + Ray's own checks
    image = config["docker"]["image"]
    assert image == f"rayproject/ray:{ray.__version__}-py311-gpu"  # pinned to our Ray
    assert "ray-ml" not in image
    assert config["file_mounts"]["~/effray"] == "."
    assert any("pip install" in c and "~/effray" in c for c in config["setup_commands"])
    starts = config["head_start_ray_commands"] + config["worker_start_ray_commands"]
    assert all("RAY_AUTH_MODE=token" in c for c in starts if "ray start" in c)
    assert "~/.ray/auth_token" in config["file_mounts"]
    gpu = config["available_node_types"]["gpu_worker"]["node_config"]["InstanceType"]
    assert gpu.startswith(("g", "p"))  # an AWS GPU instance family


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cluster_processes(temp_dirs: list[str]) -> list[int]:
    """PIDs of this cluster: processes naming its temp dirs, and all their descendants."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except (OSError, UnicodeDecodeError):
            continue
        table[int(entry)] = (int(stat.rsplit(")", 1)[1].split()[1]), cmd)
    ours = {pid for pid, (_, cmd) in table.items() if any(d in cmd for d in temp_dirs)}
    frontier = set(ours)
    while frontier:  # Ray's agents rename themselves (ray::DashboardAgent): follow parents
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - ours
        ours |= frontier
    return sorted(ours)


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node, one CPU each; torn down by killing exactly its processes."""
    base = Path(tempfile.mkdtemp(prefix="efc", dir="/tmp"))  # short: unix socket paths
    token = base / "token"
    token.write_text(secrets.token_hex(32))
    env = {
        **os.environ,
        "PATH": f"{Path(PY).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    port, dash = _free_port(), _free_port()
    head_tmp, worker_tmp = str(base / "h"), str(base / "w")  # one per node: no shared files
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    head = [PY, "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port)]
    head += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1"]
    head += ["--dashboard-port", str(dash), "--temp-dir", head_tmp]
    head += ["--ray-client-server-port", str(_free_port())]
    head += ["--dashboard-agent-listen-port", str(_free_port()), *common]
    worker = [PY, "-c", RAY_START_LOOPBACK, "start", "--address", f"127.0.0.1:{port}"]
    worker += ["--temp-dir", worker_tmp, "--dashboard-agent-listen-port", str(_free_port())]
    worker += common
    try:
        for cmd in (head, worker):
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            assert out.returncode == 0, out.stdout + out.stderr
        yield {
            "env": env,
            "address": f"127.0.0.1:{port}",
            "dashboard": f"http://127.0.0.1:{dash}",
            "base": base,
        }
    finally:
        # the temp dirs name most processes; Ray's client server names the GCS address
        for pid in cluster_processes([head_tmp, worker_tmp, f"127.0.0.1:{port}"]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def effray(cluster, *args: str, cwd: Path | None = None, timeout: int = 300):
    return subprocess.run(
        [PY, "-m", "effray", *args],
        env=cluster["env"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_spec(path: Path, name: str, trials: int) -> Path:
    spec = {
        "name": name,
        "data": {"name": "synthetic", "train_size": 512, "val_size": 128, "size": 16},
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": 2, "batch_size": 64, "latency_repeats": 0},
        "search": {"space": {"train.seed": {"grid": list(range(trials))}}, "asha": None},
        "resources": {"cpu": 1},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
@pytest.mark.ray
def test_trials_spread_over_both_nodes(cluster, tmp_path):
    spec = write_spec(tmp_path / "spread.yaml", "spread", trials=4)
    storage = tmp_path / "runs"
    out = effray(
        cluster, "run", str(spec), "--address", cluster["address"], "--storage", str(storage)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "spread: 4 trials" in out.stdout
    nodes = set()
    for i in range(4):
        lines = (storage / "spread" / f"baseline-seed{i}" / "attempts.jsonl").read_text()
        nodes |= {json.loads(line)["node_id"] for line in lines.splitlines()}
    assert len(nodes) == 2, nodes  # one CPU per node, two trials at a time: both nodes used
    saved = json.loads((storage / "spread" / "results.json").read_text())
    assert [t["stopped_by"] for t in saved["trials"]] == ["finished"] * 4


@pytest.mark.slow
@pytest.mark.ray
def test_submit_runs_a_spec_as_a_ray_job(cluster, tmp_path):
    project = tmp_path / "project"  # the directory uploaded with the job (effray via py_modules)
    write_spec(project / "specs" / "job.yaml", "jobexp", trials=2)
    storage = tmp_path / "runs"
    dash = cluster["dashboard"]
    sub = effray(
        cluster,
        "submit",
        "specs/job.yaml",
        "--address",
        dash,
        "--storage",
        str(storage),
        "--name",
        "jobexp",
        cwd=project,
    )
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job_id = sub.stdout.strip().splitlines()[-1]
    assert job_id.startswith("effray-jobexp-")
    assert f"effray logs {job_id} --follow" in sub.stderr
    assert "Uploading package" not in sub.stderr  # Ray's INFO lines stay quiet

    deadline, status = time.time() + 300, None
    while time.time() < deadline:
        jobs = json.loads(effray(cluster, "jobs", "--address", dash, "--json").stdout)
        status = next(j["status"] for j in jobs if j["job_id"] == job_id)
        if status in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(2)
    logs = effray(cluster, "logs", job_id, "--address", dash)
    assert status == "SUCCEEDED", logs.stdout
    assert "jobexp: 2 trials" in logs.stdout
    assert "results:" in logs.stdout

    saved = json.loads((storage / "jobexp" / "results.json").read_text())
    assert [t["name"] for t in saved["trials"]] == ["baseline-seed0", "baseline-seed1"]
    assert all(t["stopped_by"] == "finished" for t in saved["trials"])

    table = effray(cluster, "jobs", "--address", dash)
    assert table.returncode == 0 and "SUCCEEDED" in table.stdout
    assert job_id[:12] in table.stdout.replace("\n", "")
    stop = effray(cluster, "stop", job_id, "--address", dash)
    assert stop.returncode == 0 and "had already ended" in stop.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_jobs_api_refuses_a_client_without_the_token(cluster):
    env = {**cluster["env"], "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run(
        [PY, "-m", "effray", "jobs", "--address", cluster["dashboard"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2
    assert "cannot reach the Ray jobs API" in out.stderr
    assert "Authentication" in out.stderr or "401" in out.stderr


@pytest.mark.slow
@pytest.mark.ray
def test_jobs_api_sends_the_token_when_the_cluster_asks(cluster):
    env = {k: v for k, v in cluster["env"].items() if k != "RAY_AUTH_MODE"}  # token file only
    out = subprocess.run(
        [PY, "-m", "effray", "jobs", "--address", cluster["dashboard"], "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert isinstance(json.loads(out.stdout), list)


def test_submit_rejects_a_spec_outside_the_uploaded_directory(tmp_path):
    from effray.tune import ExperimentError, submit_job

    spec = write_spec(tmp_path / "elsewhere" / "x.yaml", "x", trials=1)
    with pytest.raises(ExperimentError, match="outside the directory uploaded"):
        submit_job(spec, working_dir=tmp_path / "project", address="http://127.0.0.1:9")


def test_submit_warns_about_data_missing_here_but_stops_on_a_bad_spec(tmp_path):
    """The dataset may live on the cluster only: a missing root is a warning (and the
    submit goes on to the address); a problem the cluster would hit too stops it (exit 2)."""
    spec = tmp_path / "cars.yaml"
    spec.write_text(
        "name: cars\n"
        "data: {name: stanford_cars, root: /nonexistent/cars, image_size: 32}\n"
        "model: {name: ghostnet}\n"
        "train: {epochs: 1}\n"
    )
    base = [PY, "-m", "effray", "submit", str(spec), "--working-dir", str(tmp_path)]
    env = {**os.environ, "COLUMNS": "200"}
    dead = [*base, "--address", "http://127.0.0.1:9"]  # nothing listens there
    out = subprocess.run(dead, capture_output=True, text=True, env=env, timeout=120)
    assert "warning:" in out.stderr and "data.root" in out.stderr, out.stderr
    assert "cluster needs it" in out.stderr
    assert out.returncode != 0 and "problem" not in out.stderr  # got past the spec check

    bad = [*dead, "--set", "train.epochs=0"]
    out = subprocess.run(bad, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "train.epochs" in out.stderr and "nothing was started" in out.stderr
