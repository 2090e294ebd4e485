"""The adapter: one Ray trial is one `fit`, with Ray's checkpoints and reports.

`train_trial` calls `fit`; each epoch `fit` writes a checkpoint and the adapter hands it
to `tune.report`, so the scheduler decides once per epoch and a retried or restored
trial resumes from `tune.get_checkpoint()`. A trial directory (storage/name/<trial>/):

    trial_spec.yaml        the resolved TrialSpec
    metrics.jsonl          one line per epoch (the epochs of the checkpoint resumed)
    attempts.jsonl         one line per start: node, pid, epoch resumed from
    failure.json           only after a deterministic failure (diverged, bad data)
    checkpoint_00000N/     Ray's checkpoints: checkpoint-epochNNNN.pt + the files above
    result.json  progress.csv  error.txt   Ray's records of the trial

The trial's own files are written through Ray's storage filesystem by the worker
(any node; a local path, NFS or an object store). A trial directory is
self-contained and uses relative paths only: `effray resume DIR` continues it
anywhere, also after copying it off a cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
from ray import tune

from effray.results import (
    ATTEMPTS,
    FAILURE,
    METRICS,
    TRAIN_TOTAL,
    TRIAL_SPEC,
    stop_reason_of_error,
)


class TrialFailed(RuntimeError):
    """A retry replaying a deterministic failure (same checkpoint, same error)."""

    show_message_only = True  # the message already names the original exception

    def __init__(self, message: str, stop_reason: str = "error") -> None:
        super().__init__(message, stop_reason)
        self.stop_reason = stop_reason

    def __str__(self) -> str:
        return str(self.args[0])


def train_trial(config: dict[str, Any]) -> None:
    """Ray's entry point for one trial: `fit` with Ray's checkpoints and reports."""
    from effray.checkpoint import CheckpointError, load_latest
    from effray.errors import SpecError
    from effray.spec import ExperimentSpec, to_yaml
    from effray.spec.search_checks import numeric_value
    from effray.train import TrialDiverged, fit

    spec = ExperimentSpec.model_validate(config["trial"])
    store = TrialFiles(tune.get_context().get_storage())
    # fit's own checkpoint files and each report's snapshot live in a private scratch
    # directory; Ray copies every reported snapshot into storage (checkpoint_N/).
    scratch = Path(tempfile.mkdtemp(prefix="effray-trial-"))
    try:
        loaded, metrics_lines = None, ""
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                loaded = load_latest(Path(d))
                if (Path(d) / METRICS).exists():  # the epochs as they were at that checkpoint
                    metrics_lines = (Path(d) / METRICS).read_text(encoding="utf-8")
        start_epoch = int(loaded.payload["epoch"]) if loaded else 0
        donor = (
            ((loaded.payload.get("spec") or {}).get("trial") or {}).get("name") if loaded else None
        )
        exploited = donor is not None and donor != spec.trial.name
        if exploited:  # PBT: the donor's weights, this trial's own record of its epochs
            metrics_lines = _own_lines(store.read(METRICS) or "", start_epoch)
            loaded.payload["history"] = [json.loads(x) for x in metrics_lines.splitlines()]

        failure = json.loads(store.read(FAILURE) or "{}")
        if failure.get("at_epoch") == start_epoch:
            # same checkpoint, same deterministic error: fail now instead of training again
            raise TrialFailed(failure["error"], failure.get("stop_reason", "error"))

        node_id = ray.get_runtime_context().get_node_id()
        attempt = {
            "started": time.time(),
            "resumed_from_epoch": start_epoch,
            "node_id": node_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
        if exploited:
            attempt["exploited_from"] = donor
        files = {
            TRIAL_SPEC: to_yaml(spec),
            METRICS: metrics_lines,
            ATTEMPTS: (store.read(ATTEMPTS) or "") + json.dumps(attempt, sort_keys=True) + "\n",
        }
        store.write(files)
        history = loaded.payload.get("history", []) if loaded else []
        best = max((m["val/acc"] for m in history), default=float("-inf"))
        train_total = sum(float(m.get("time/epoch_s", 0.0)) for m in history)
        last_epoch = start_epoch

        hyperparameters = {f"hp/{p}": numeric_value(spec, p) for p in spec.trial.track}

        def report(metrics: dict[str, Any], checkpoint_path: Path | None) -> None:
            nonlocal best, last_epoch, train_total
            metrics = {**metrics, **hyperparameters}
            train_total += float(metrics.get("time/epoch_s", 0.0))
            files[METRICS] += json.dumps(metrics, sort_keys=True) + "\n"
            store.write({METRICS: files[METRICS]})
            best = max(best, metrics["val/acc"])
            last_epoch = metrics["epoch"]
            snapshot = scratch / f"report-epoch{metrics['epoch']:04d}"
            snapshot.mkdir()
            try:
                if checkpoint_path is not None:
                    _link_or_copy(checkpoint_path, snapshot / checkpoint_path.name)
                for name, text in files.items():  # a checkpoint is a self-contained trial
                    (snapshot / name).write_text(text, encoding="utf-8")
                extra = {
                    "val/best_acc": best,
                    TRAIN_TOTAL: train_total,
                    "trial/node_id": node_id,
                    "trial/resumed_from_epoch": start_epoch,
                    **hyperparameters,
                }
                tune.report(
                    {**metrics, **extra}, checkpoint=tune.Checkpoint.from_directory(snapshot)
                )
            finally:  # Ray has copied the snapshot into storage (or is stopping the trial)
                shutil.rmtree(snapshot, ignore_errors=True)

        try:
            fit(spec, report, scratch / "checkpoints", resume_from=loaded)
        except (TrialDiverged, SpecError, CheckpointError) as exc:
            failure = {
                "at_epoch": last_epoch,
                "error": f"{type(exc).__name__}: {exc}",
                "stop_reason": stop_reason_of_error(exc),
            }
            store.write({FAILURE: json.dumps(failure)})
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _own_lines(text: str, epoch: int) -> str:
    """A trial's own metrics lines up to `epoch` (the epoch it continues from)."""
    keep = [x for x in text.splitlines() if x.strip() and json.loads(x).get("epoch", 0) <= epoch]
    return "".join(x + "\n" for x in keep)


class TrialFiles:
    """The small text files of a trial directory, written straight into Ray's storage.

    Written through the storage filesystem (a local directory, NFS or an object store)
    rather than synced from the worker, so they are there whichever node ran the trial.
    """

    def __init__(self, storage) -> None:
        self.fs = storage.storage_filesystem
        self.dir = storage.trial_fs_path
        self.fs.create_dir(self.dir, recursive=True)

    def read(self, name: str) -> str | None:
        try:
            with self.fs.open_input_stream(f"{self.dir}/{name}") as f:
                return f.read().decode("utf-8")
        except FileNotFoundError:
            return None

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            tmp = f"{self.dir}/.{name}.tmp"
            with self.fs.open_output_stream(tmp) as f:
                f.write(text.encode("utf-8"))
            self.fs.move(tmp, f"{self.dir}/{name}")  # a reader never sees half a file


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)  # same filesystem: no copy of the weights
    except OSError:
        shutil.copyfile(src, dst)


def _trial_resources(config: dict[str, Any]) -> dict[str, float]:
    """Per-trial resources from the trial's own spec (a search may vary them).

    A fractional GPU is a scheduling budget, not isolation: four trials with gpu 0.25
    share one device and its memory; Ray only stops a fifth from starting there.
    """
    res = config["trial"].get("resources") or {}
    return {"cpu": float(res.get("cpu", 1)), "gpu": float(res.get("gpu", 0))}


def trainable():
    """`train_trial` with per-trial resources: the same object for run and restore."""
    return tune.with_resources(train_trial, _trial_resources)


def trial_name(trial) -> str:
    """The effray trial name (e.g. 'blurpool-seed1') names Ray's trial and its directory."""
    meta = trial.config.get("trial", {}).get("trial") or {}
    return meta.get("name") or trial.trial_id
