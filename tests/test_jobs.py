"""A job sent to a cluster whose Python lacks effray's dependencies fails with one line.

    $ .venv/bin/python -m pytest tests/test_jobs.py -q

"A Python without effray's dependencies" is real here: a venv of the same interpreter
made without pip and without system site-packages, holding only what `ray[default]`
needs (the distributions of that requirement's closure, linked from this environment),
so typer, torch, wandb and effray itself cannot be imported in it. The Ray test starts
a one-node loopback cluster from that Python (token auth, every address 127.0.0.1) and
submits to it with `effray submit` from this environment, as a user would.
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

from effray.preflight import JOB_ENV, REQUIREMENTS, job_requirements
from effray.tune.jobs import job_runtime_env

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BASE_PY = str(Path(sys.base_prefix) / "bin" / "python3")  # the interpreter .venv was made from


def bare_python(where: Path, *, with_ray: bool = False) -> Path:
    """A venv of this interpreter with nothing installed (or only ray[default]'s closure)."""
    subprocess.run([BASE_PY, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    if with_ray:
        site = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        for entry in distribution_entries("ray[default]"):
            target = site / entry.name
            if not target.exists():
                target.symlink_to(entry)
    return python


def distribution_entries(requirement: str) -> set[Path]:
    """Top-level files and folders (packages, modules, .dist-info) of every distribution
    `requirement` needs, recursively, as installed in this environment."""
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    entries: set[Path] = set()
    seen: set[tuple[str, str]] = set()
    todo = [Requirement(requirement)]
    while todo:
        req = todo.pop()
        name, extras = canonicalize_name(req.name), sorted(req.extras) or [""]
        if all((name, e) in seen for e in extras):
            continue
        seen.update((name, e) for e in extras)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this environment does not have
        for file in dist.files or ():
            top = file.parts[0]
            if top not in ("..", "__pycache__"):
                entries.add(Path(dist.locate_file(top)))
        for text in dist.requires or ():
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append(sub)
    return entries


def test_requirements_are_pyprojects_dependencies():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(REQUIREMENTS.values()) == sorted(listed)


def test_job_runtime_env_ships_effray_and_optionally_its_dependencies(tmp_path):
    env = job_runtime_env(tmp_path)
    assert env["working_dir"] == str(tmp_path) and env["env_vars"][JOB_ENV] == "1"
    assert env["py_modules"] == [str(ROOT / "effray")]  # effray lives outside tmp_path
    assert "pip" not in env
    pip = job_runtime_env(tmp_path, pip=True)["pip"]
    assert pip["packages"] == job_requirements()
    assert sorted(pip["packages"]) == sorted(
        r for r in REQUIREMENTS.values() if not r.startswith("ray")
    )  # the cluster's own Ray is never replaced


def run_effray(python: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(python), "-m", "effray", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},  # effray's code, none of its deps
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_python_m_effray_without_dependencies_says_what_to_install(tmp_path):
    python = bare_python(tmp_path / "venv")
    (tmp_path / "ray").mkdir()  # like Ray's /tmp/ray: a folder, not the library
    out = run_effray(python, "--help", cwd=tmp_path)
    assert out.returncode == 1 and out.stdout == ""
    (line,) = out.stderr.splitlines()  # one line, no traceback
    assert line.startswith(f"effray cannot start: {python} (Python ")
    assert "lacks torch, torchvision, ray, optuna, wandb, pydantic, typer" in line
    assert "`pip install -e .` in effray's checkout" in line and "'typer>=0.12'" in line
    job = run_effray(python, "run", "x.yaml", cwd=tmp_path, **{JOB_ENV: "1"})
    (line,) = job.stderr.splitlines()
    assert "cluster.yaml's setup_commands" in line and "effray submit --pip" in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_naming(marks: list[str]) -> list[int]:
    """PIDs whose command line names one of `marks`, and all their descendants."""
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
    ours = {pid for pid, (_, cmd) in table.items() if any(m in cmd for m in marks)}
    frontier = set(ours)
    while frontier:  # Ray's agents rename themselves: follow parents
        frontier = {pid for pid, (ppid, _) in table.items() if ppid in frontier} - ours
        ours |= frontier
    return sorted(ours)


@pytest.fixture
def bare_cluster():
    """A one-node loopback Ray cluster whose Python has ray[default] and nothing of effray."""
    pytest.importorskip("ray")
    base = Path(tempfile.mkdtemp(prefix="efj", dir="/tmp"))  # short: unix socket paths
    python = bare_python(base / "venv", with_ray=True)
    probe = subprocess.run(
        [str(python), "-c", "import ray, importlib.util as u; "
         "print([m for m in ('typer', 'torch', 'effray') if u.find_spec(m)])"],
        capture_output=True, text=True, check=True, cwd=base,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]"  # the job's Python genuinely lacks them
    token = base / "token"
    token.write_text(secrets.token_hex(32))
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    clean.pop("RAY_ADDRESS", None)
    node_env = {
        **clean,
        **auth,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `python` = it
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    port, dash, tmp = free_port(), free_port(), str(base / "h")
    head = [str(python), "-m", "ray.scripts.scripts", "start", "--head", "--port", str(port)]
    head += ["--include-dashboard", "true", "--dashboard-host", "127.0.0.1"]
    head += ["--dashboard-port", str(dash), "--temp-dir", tmp]
    head += ["--ray-client-server-port", str(free_port())]
    head += ["--dashboard-agent-listen-port", str(free_port())]
    head += ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    try:
        out = subprocess.run(head, env=node_env, capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        client_env = {**clean, **auth, "RAY_USAGE_STATS_ENABLED": "0"}
        yield {"env": client_env, "dashboard": f"http://127.0.0.1:{dash}", "base": base}
    finally:
        for pid in processes_naming([tmp, str(base / "venv"), f"127.0.0.1:{port}"]):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.ray
def test_a_job_on_a_cluster_without_effrays_dependencies_fails_with_one_line(bare_cluster):
    project = bare_cluster["base"] / "project"
    (project / "specs").mkdir(parents=True)
    (project / "specs" / "job.yaml").write_text(
        "name: nodeps\ndata: {name: synthetic, train_size: 64, val_size: 16, size: 8}\n"
        "train: {epochs: 1, latency_repeats: 0}\n"
    )

    def effray(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [PY, "-m", "effray", *args, "--address", bare_cluster["dashboard"]],
            env=bare_cluster["env"],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=300,
        )

    sub = effray("submit", "specs/job.yaml")
    assert sub.returncode == 0, sub.stdout + sub.stderr
    job_id = sub.stdout.strip().splitlines()[-1]
    deadline, job = time.time() + 240, {}
    while time.time() < deadline:
        jobs = json.loads(effray("jobs", "--json").stdout)
        job = next(j for j in jobs if j["job_id"] == job_id)
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        time.sleep(2)
    logs = effray("logs", job_id).stdout
    assert job["status"] == "FAILED", logs
    assert job["end_time"] - job["start_time"] < 60  # at once, not after a long start
    lines = [line for line in logs.splitlines() if line.strip()]
    (line,) = [x for x in lines if x.startswith("effray cannot start:")]
    assert "lacks torch, torchvision, optuna, wandb" in line and "typer" in line
    assert "cluster.yaml's setup_commands" in line and "effray submit --pip" in line
    assert "Traceback" not in logs and "ModuleNotFoundError" not in logs
