"""Ray Jobs: send `effray run SPEC` to a cluster, list jobs, read their logs, stop them.

$ effray submit experiments/quickstart.yaml --address http://127.0.0.1:8265
$ effray jobs
$ effray logs JOB_ID --follow
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import effray
from effray.preflight import JOB_ENV, job_requirements
from effray.storage import ExperimentError
from effray.tune.session import AUTH_HINT, use_token_auth

DEFAULT_DASHBOARD = "http://127.0.0.1:8265"  # Ray's default jobs API address
UPLOAD_EXCLUDES = [  # never uploaded with a job: VCS, environments, results
    ".git",
    ".venv",
    "venv",
    "runs",
    "results",
    "wandb",
    "__pycache__",
    "*.egg-info",
    ".pytest_cache",
    ".ruff_cache",
]


def jobs_address(address: str | None = None) -> str:
    """The jobs API (dashboard) address: --address, RAY_API_SERVER_ADDRESS, RAY_ADDRESS."""
    for candidate in (address, os.environ.get("RAY_API_SERVER_ADDRESS")):
        if candidate:
            return candidate if "://" in candidate else f"http://{candidate}"
    env = os.environ.get("RAY_ADDRESS", "")
    if env.startswith("http"):
        return env
    return DEFAULT_DASHBOARD


def _job_client(address: str | None):
    """A jobs API client; with token auth when the cluster answers 401 and a token is here."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    url = jobs_address(address)
    # Ray's SDK logs each package it uploads at INFO; keep its warnings only.
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        try:
            return JobSubmissionClient(url)
        except AuthenticationError:
            if not use_token_auth():
                raise
            return JobSubmissionClient(url)
    except Exception as exc:  # connection refused, 401/403 from token auth, bad URL
        hint = f"\n{AUTH_HINT}" if isinstance(exc, AuthenticationError) else ""
        raise ExperimentError(f"cannot reach the Ray jobs API at {url}: {exc}{hint}") from None


def project_root(start: Path | None = None) -> Path:
    """The directory uploaded with a job: the nearest one holding pyproject.toml or .git."""
    start = (start or Path.cwd()).resolve()
    for d in (start, *start.parents):
        if (d / "pyproject.toml").exists() or (d / ".git").exists():
            return d
    return start


def job_runtime_env(root: Path, *, pip: bool = False) -> dict[str, Any]:
    """The runtime env of a job: `root` uploaded as its working directory, effray's code
    (when it lives outside `root`), EFFRAY_JOB=1 so `python -m effray` words a missing
    dependency for a cluster, and with `pip` effray's dependencies but Ray, which Ray
    installs into a virtualenv on top of the cluster's Python before the job starts."""
    runtime_env: dict[str, Any] = {
        "working_dir": str(root),
        "excludes": list(UPLOAD_EXCLUDES),
        "env_vars": {
            "RAY_CHDIR_TO_TRIAL_DIR": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
            JOB_ENV: "1",
        },
    }
    package = Path(effray.__file__).resolve().parent
    if root not in package.parents:
        runtime_env["py_modules"] = [str(package)]
    if pip:
        runtime_env["pip"] = {"packages": job_requirements(), "pip_check": False}
    return runtime_env


def submit_job(
    spec_path: str | os.PathLike,
    *,
    address: str | None = None,
    overrides: Iterable[str] = (),
    storage: str | None = None,
    name: str | None = None,
    working_dir: str | os.PathLike | None = None,
    pip: bool = False,
) -> str:
    """Send `effray run SPEC` to a cluster as a Ray Job; returns the job id.

    The project directory (and effray's code when it lives elsewhere) travels in the
    job's runtime env, minus .git, virtualenvs and results; with `pip`, effray's
    dependencies are installed there too (see job_runtime_env). Validate the spec first:
    a bad spec never reaches the cluster.
    """
    spec_file = Path(spec_path).resolve()
    root = Path(working_dir).resolve() if working_dir else project_root()
    try:
        rel_spec = spec_file.relative_to(root)
    except ValueError:
        raise ExperimentError(
            f"spec {spec_file} is outside the directory uploaded with the job ({root}); "
            "move it there or pass --working-dir"
        ) from None
    args = ["python", "-m", "effray", "run", rel_spec.as_posix()]
    for text in overrides:
        args += ["--set", text]
    if storage:
        args += ["--storage", storage]
    if name:
        args += ["--name", name]
    runtime_env = job_runtime_env(root, pip=pip)
    label = name or spec_file.stem
    job_id = f"effray-{label}-{time.strftime('%Y%m%d-%H%M%S')}"
    client = _job_client(address)
    return client.submit_job(
        entrypoint=shlex.join(args),
        submission_id=job_id,
        runtime_env=runtime_env,
        metadata={"effray_spec": rel_spec.as_posix(), "effray_version": effray.__version__},
    )


def list_jobs(address: str | None = None) -> list[dict[str, Any]]:
    """Jobs on the cluster, newest first: id, status, entrypoint, times, message."""
    rows = []
    for job in _job_client(address).list_jobs():
        if str(getattr(job.type, "value", job.type)).upper() != "SUBMISSION":
            continue  # drivers that joined the cluster directly, not jobs
        rows.append(
            {
                "job_id": job.submission_id or job.job_id,
                "status": str(getattr(job.status, "value", job.status)),
                "entrypoint": job.entrypoint,
                "start_time": (job.start_time or 0) / 1000,
                "end_time": (job.end_time or 0) / 1000 or None,
                "message": job.message or "",
            }
        )
    return sorted(rows, key=lambda r: r["start_time"], reverse=True)


def job_logs(job_id: str, address: str | None = None) -> str:
    return _job_client(address).get_job_logs(job_id)


def follow_job_logs(job_id: str, write: Callable[[str], None], address: str | None = None) -> None:
    """Stream a job's logs to `write` until the job ends."""
    client = _job_client(address)

    async def tail() -> None:
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)

    asyncio.run(tail())


def stop_job(job_id: str, address: str | None = None) -> bool:
    """Ask the cluster to stop a job; False when it had already ended."""
    return bool(_job_client(address).stop_job(job_id))
