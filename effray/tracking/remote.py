"""Offline W&B runs beside results kept in an object store (effray.storage).

With `--storage s3://…` the driver writes offline runs on its own disk (`wandb.dir`, else
./wandb-offline/<experiment>) and copies each finished run beside the results, so any
machine can push them later:

    upload_runs(Path("wandb-offline/exp"), ["a1b2c3d4"], "s3://bucket/runs/exp")
    #   → s3://bucket/runs/exp/wandb/offline-run-…-a1b2c3d4/, …/wandb/effray-runs/a1b2c3d4.json
    fetch_runs("s3://bucket/runs/exp", Path("wandb-offline/exp"))   # what `effray sync URI` does
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from effray.storage import download, is_file, join, list_dir
from effray.tracking.wandb_run import STATE_DIR, state_path

RUNS_DIR = "wandb"  # below the experiment: offline-run-<time>-<id>/ and effray-runs/<id>.json
OFFLINE_ROOT = "wandb-offline"  # the driver's local root for offline runs of a stored experiment


def offline_root(experiment: str) -> Path:
    """./wandb-offline/<experiment name>: where a stored experiment's runs live locally."""
    from effray.storage import basename

    return Path(OFFLINE_ROOT).resolve() / basename(experiment)


def run_id_of(run_dir: str) -> str:
    """The W&B run id in an offline run directory's name (offline-run-<time>-<id>)."""
    return run_dir.rstrip("/").rsplit("-", 1)[-1]


def local_runs(root: Path, run_ids: Iterable[str]) -> list[Path]:
    """The offline run directories and effray state files of `run_ids` under root/wandb."""
    ids = set(run_ids)
    base = Path(root) / RUNS_DIR
    found = sorted(p for p in base.glob("offline-run-*") if p.is_dir() and run_id_of(p.name) in ids)
    return found + [state_path(root, i) for i in sorted(ids) if state_path(root, i).is_file()]


def upload_runs(root: Path, run_ids: Iterable[str], experiment: str) -> int:
    """Copy the offline runs of `run_ids` (and their effray state) from root/wandb to
    <experiment>/wandb; returns how many files and directories were copied."""
    from effray.storage import upload

    base = Path(root) / RUNS_DIR
    paths = local_runs(root, run_ids)
    for path in paths:
        upload(path, join(experiment, RUNS_DIR, *path.relative_to(base).parts))
    return len(paths)


def fetch_state(experiment: str, root: Path, run_id: str) -> bool:
    """Bring a run's effray state (its last step) from the store when this machine has
    none: a restore elsewhere then skips the epochs W&B already has."""
    local = state_path(root, run_id)
    remote = join(experiment, RUNS_DIR, STATE_DIR, f"{run_id}.json")
    if local.exists() or not is_file(remote):
        return False
    download(remote, local)
    return True


def fetch_runs(experiment: str, root: Path, run_ids: Iterable[str] | None = None) -> list[Path]:
    """Copy the offline runs stored beside an experiment (those of `run_ids`, or all) to
    root/wandb; returns the local offline run directories."""
    ids = set(run_ids) if run_ids is not None else None
    remote = join(experiment, RUNS_DIR)
    local: list[Path] = []
    for name, is_dir in list_dir(remote):
        if is_dir and name.startswith("offline-run-") and (ids is None or run_id_of(name) in ids):
            local.append(download(join(remote, name), Path(root) / RUNS_DIR / name))
    for run_id in sorted(ids if ids is not None else {run_id_of(p.name) for p in local}):
        fetch_state(experiment, root, run_id)
    return sorted(local, key=lambda p: p.name)


def fetch_stored_runs(stored: str) -> tuple[Path, list[Path]]:
    """(local root, offline run dirs) of the runs stored beside an experiment URI, or of
    one trial's run when `stored` is a trial directory; copied to ./wandb-offline/<exp>."""
    import yaml

    from effray.results import TRIAL_SPEC
    from effray.storage import location, parent, read_text

    stored = location(stored)
    ids = None
    if is_file(join(stored, TRIAL_SPEC)):  # one trial: its run, kept with the experiment
        spec = yaml.safe_load(read_text(join(stored, TRIAL_SPEC))) or {}
        ids = [str((spec.get("trial") or {}).get("id"))]
        stored = parent(stored)
    root = offline_root(stored)
    return root, fetch_runs(stored, root, ids)
