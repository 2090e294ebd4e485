"""Run a spec as Ray Tune trials: one thin adapter from Ray to `fit`.

    $ effray run experiments/quickstart.yaml
    $ effray restore runs/quickstart
    $ effray submit experiments/quickstart.yaml --address http://127.0.0.1:8265

    >>> from effray import load_spec, run
    >>> result = run(load_spec("experiments/quickstart.yaml"))

The only module that imports ray. `effray.spec.expand` has already fixed every search
choice, so Ray's search is a grid over the list of concrete trials (each one a JSON
dict of its TrialSpec). `train_trial` calls `fit`; each epoch `fit` writes a
checkpoint and the adapter hands it to `tune.report`, so ASHA decides once per epoch
and a retried or restored trial resumes from `tune.get_checkpoint()`.

Experiment directory (storage/name/):

    effray_experiment.json     the spec, the trial names, the effray version
    results.json, results.csv  one row per trial, written when the run ends
    driver.log                 Ray's own log lines from this driver (the console stays quiet)
    <trial name>/              one directory per trial
        trial_spec.yaml        the resolved TrialSpec
        metrics.jsonl          one line per epoch (the epochs of the checkpoint resumed)
        attempts.jsonl         one line per start: node, pid, epoch resumed from
        failure.json           only after a deterministic failure (diverged, bad data)
        checkpoint_00000N/     Ray's checkpoints: checkpoint-epochNNNN.pt + the files above
        result.json  progress.csv  error.txt   Ray's records of the trial
    tuner.pkl  experiment_state-*.json          Ray's state, read by `effray restore`

The trial's own files are written through Ray's storage filesystem by the worker
(any node; a local path, NFS or an object store). A trial directory is
self-contained and uses relative paths only: `effray resume DIR` continues it
anywhere, also after copying it off a cluster.

Token authentication (Ray 2.60 turns it on for the clusters `ray.init` starts):

- embedded run: RAY_AUTH_MODE is set to "token" unless you set it; Ray creates
  ~/.ray/auth_token when it is missing. RAY_AUTH_MODE=disabled opts out.
- `--address` / RAY_ADDRESS: RAY_AUTH_MODE decides, as Ray asks (the same on every
  node and client; Ray turns token mode on by itself only for clusters it finds, never
  for an explicit address). A failed join says to set RAY_AUTH_MODE=token.
- jobs API (`effray submit/jobs/logs/stop`): when the cluster answers 401, RAY_AUTH_MODE
  is unset and a token is available (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
  names, ~/.ray/auth_token), the request is repeated in token mode. The token is
  never put into a job's runtime env; the job inherits the cluster's own settings.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import os
import shlex
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

import effray

EXPERIMENT_FILE = "effray_experiment.json"
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
DRIVER_LOG = "driver.log"
ATTEMPTS = "attempts.jsonl"  # one line per start of a trial: node, pid, epoch resumed from
FAILURE = "failure.json"  # a deterministic failure; a retry from the same epoch re-raises it
DEFAULT_STORAGE = "runs"  # relative to the working directory
OBJECT_STORE_BYTES = 256 * 2**20  # embedded Ray; trials pass metrics and files, no tensors
DEFAULT_DASHBOARD = "http://127.0.0.1:8265"  # Ray's default jobs API address
STOPPED_BY_SCHEDULER = "trial/stopped_by_scheduler"  # marked on the result ASHA stopped at
UPLOAD_EXCLUDES = [
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


class ExperimentError(Exception):
    """The experiment cannot start or continue; the message says why and what to do."""


class TrialFailed(RuntimeError):
    """A retry replaying a deterministic failure (same checkpoint, same error)."""


# ---------------------------------------------------------------------------------
# The adapter: one Ray trial = one `fit`
# ---------------------------------------------------------------------------------


def train_trial(config: dict[str, Any]) -> None:
    """Ray's entry point for one trial: `fit` with Ray's checkpoints and reports."""
    from effray.checkpoint import CheckpointError, load_latest
    from effray.errors import SpecError
    from effray.local import METRICS, TRIAL_SPEC
    from effray.spec import ExperimentSpec, to_yaml
    from effray.train import TrialDiverged, fit

    spec = ExperimentSpec.model_validate(config["trial"])
    records = TrialRecords(tune.get_context().get_storage())
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

        failure = records.read(FAILURE)
        if failure and json.loads(failure)["at_epoch"] == start_epoch:
            # same checkpoint, same deterministic error: fail now instead of training again
            raise TrialFailed(json.loads(failure)["error"])

        node_id = ray.get_runtime_context().get_node_id()
        attempt = {
            "started": time.time(),
            "resumed_from_epoch": start_epoch,
            "node_id": node_id,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
        }
        files = {
            TRIAL_SPEC: to_yaml(spec),
            METRICS: metrics_lines,
            ATTEMPTS: (records.read(ATTEMPTS) or "") + json.dumps(attempt, sort_keys=True) + "\n",
        }
        records.write(files)
        history = loaded.payload.get("history", []) if loaded else []
        best = max((m["val/acc"] for m in history), default=float("-inf"))
        last_epoch = start_epoch

        def report(metrics: dict[str, Any], checkpoint_path: Path | None) -> None:
            nonlocal best, last_epoch
            files[METRICS] += json.dumps(metrics, sort_keys=True) + "\n"
            records.write({METRICS: files[METRICS]})
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
                    "trial/node_id": node_id,
                    "trial/resumed_from_epoch": start_epoch,
                }
                tune.report(
                    {**metrics, **extra}, checkpoint=tune.Checkpoint.from_directory(snapshot)
                )
            finally:  # Ray has copied the snapshot into storage (or is stopping the trial)
                shutil.rmtree(snapshot, ignore_errors=True)

        try:
            fit(spec, report, scratch / "checkpoints", resume_from=loaded)
        except (TrialDiverged, SpecError, CheckpointError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            records.write({FAILURE: json.dumps({"at_epoch": last_epoch, "error": reason})})
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class TrialRecords:
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


# ---------------------------------------------------------------------------------
# Progress events for the CLI (tune.py never prints)
# ---------------------------------------------------------------------------------

_listeners: list[Callable[[dict[str, Any]], None]] = []  # set for the duration of a fit


@contextmanager
def _listening(on_event: Callable[[dict[str, Any]], None] | None) -> Iterator[None]:
    if on_event is None:
        yield
        return
    _listeners.append(on_event)
    try:
        yield
    finally:
        _listeners.remove(on_event)


def _emit(event: dict[str, Any]) -> None:
    for listener in list(_listeners):
        listener(event)


def trial_event(trial, result: dict[str, Any] | None = None, status: str | None = None) -> dict:
    """A trial's state as a plain dict: name, status, epoch, val/acc, best, elapsed."""
    spec = trial.config.get("trial", {})
    meta = spec.get("trial") or {}
    r = result if result is not None else (trial.last_result or {})
    return {
        "event": "trial",
        "trial": meta.get("name", trial.trial_id),
        "index": meta.get("index", 0),
        "group": meta.get("group", ""),
        "status": status or trial.status,
        "epoch": int(r.get("epoch", 0) or 0),
        "epochs": int(spec.get("train", {}).get("epochs", 0)),
        "val_acc": r.get("val/acc"),
        "best_val_acc": r.get("val/best_acc"),
        "elapsed_s": float(r.get("time_total_s", 0.0) or 0.0),
        "failures": int(getattr(trial, "num_failures", 0) or 0),
        "stopped_by_scheduler": bool(r.get(STOPPED_BY_SCHEDULER)),
    }


class ProgressCallback(tune.Callback):
    """Forwards each trial's changes to the listeners as `trial_event` dicts.

    It also marks the result at which the scheduler stopped a trial (Ray sets `done`
    on that result before callbacks run; a trial that returns by itself never has
    `done` set on a reported result), which is how ASHA stops are told apart from
    early stopping after the run, also after a restore.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple] = {}

    def __getstate__(self) -> dict:  # tuner.pkl pickles callbacks; listeners are per process
        return {}

    def __setstate__(self, state: dict) -> None:
        self._last = {}

    def _send(self, trial, result=None, status=None) -> None:
        event = trial_event(trial, result, status)
        key = (event["status"], event["epoch"], event["failures"])
        if self._last.get(trial.trial_id) != key:
            self._last[trial.trial_id] = key
            _emit(event)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        for trial in trials:
            self._send(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get("done"):
            result[STOPPED_BY_SCHEDULER] = 1
        self._send(trial, result, "RUNNING")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(trial, status="TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(trial, status="ERROR")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(trial, status="RETRYING")


class WandbCallback(tune.Callback):
    """One W&B run per trial, driven here on the driver (a trial ASHA stops loses nothing).

    effray.tracking does the W&B part: run id = the trial's stable id, so a retried or
    restored trial continues its run. Offline runs go to `<experiment dir>/wandb`
    (with object-store storage: ./runs/<name>/wandb on the driver).
    """

    def __init__(self, experiment_dir: str) -> None:
        self.experiment_dir = experiment_dir
        self._open: dict[str, tuple] = {}  # Ray trial id -> (TrialSpec, Tracker)

    def __getstate__(self) -> dict:  # pickled into tuner.pkl; open runs belong to one driver
        return {"experiment_dir": self.experiment_dir}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["experiment_dir"])

    def _run(self, trial) -> tuple:
        from effray.tracking import open_run

        if trial.trial_id not in self._open:
            local = not _is_uri(self.experiment_dir)  # a restore may have moved the directory
            name = self.experiment_dir.rstrip("/").rsplit("/", 1)[-1]
            root = Path(trial.path).parent if local else Path(DEFAULT_STORAGE).resolve() / name
            self._open[trial.trial_id] = open_run(trial.config["trial"], root, trial.path)
        return self._open[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        metrics = {k: v for k, v in result.items() if "/" in k or k in ("epoch", "lr")}
        self._run(trial)[1].log(metrics, step=result.get("epoch", 0))  # not Ray's own keys

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        try:
            error = trial.get_error() or "error"  # the traceback text: diverged or not
        except Exception:
            error = "error"
        self._finish(trial, error)

    def _finish(self, trial, error: object = None) -> None:
        from effray.tracking import stop_reason_for

        spec, tracker = self._run(trial)
        del self._open[trial.trial_id]
        last = trial.last_result or {}
        tracker.finish(stop_reason_for(spec, last, error, bool(last.get(STOPPED_BY_SCHEDULER))))


# ---------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------


@dataclass
class TrialOutcome:
    name: str
    group: str
    techniques: list[str]
    status: str  # finished | stopped | error | unfinished
    stopped_by: str  # finished | asha | early_stopping | error: <reason> | interrupted
    best_val_acc: float | None
    final_val_acc: float | None
    epochs_run: int
    epochs: int
    params: int | None  # model parameters
    choices: dict[str, Any] = field(default_factory=dict)  # search choices of this trial
    error: str | None = None
    directory: str = ""  # trial directory, relative to the experiment directory
    index: int = 0


@dataclass
class ExperimentResult:
    name: str
    path: str  # experiment directory (local path or URI)
    trials: list[TrialOutcome]
    wall_s: float

    @property
    def errored(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "error"]

    @property
    def unfinished(self) -> list[TrialOutcome]:
        return [t for t in self.trials if t.status == "unfinished"]

    @property
    def ok(self) -> bool:
        """Every trial finished or was stopped (by ASHA or early stopping)."""
        return not self.errored and not self.unfinished


def error_reason(error: BaseException | None) -> str:
    """One line saying why a trial failed, from the exception Ray kept."""
    if error is None:
        return ""
    cause = getattr(error, "cause", None) or error
    if isinstance(cause, TrialFailed):
        text = str(cause)
    else:
        text = f"{type(cause).__name__}: {cause}"
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def outcome(config: dict, metrics: dict, error: BaseException | None, path: str) -> TrialOutcome:
    spec = config.get("trial", {})
    meta = spec.get("trial") or {}
    epochs = int(spec.get("train", {}).get("epochs", 0))
    ran = int(metrics.get("epoch", 0) or 0)
    if error is not None:
        status, stopped_by = "error", f"error: {error_reason(error)}"
    elif ran >= epochs:  # all epochs reported, even if the driver died before Ray saw "done"
        status, stopped_by = "finished", "finished"
    elif not metrics.get("done"):
        status, stopped_by = "unfinished", "interrupted" if ran else "not started"
    elif metrics.get(STOPPED_BY_SCHEDULER):
        status, stopped_by = "stopped", "asha"
    else:
        status, stopped_by = "stopped", "early_stopping"
    params = metrics.get("model/params")
    return TrialOutcome(
        name=meta.get("name", Path(path).name),
        group=meta.get("group", ""),
        techniques=[_technique_name(t) for t in spec.get("techniques", [])],
        status=status,
        stopped_by=stopped_by,
        best_val_acc=metrics.get("val/best_acc"),
        final_val_acc=metrics.get("val/acc"),
        epochs_run=ran,
        epochs=epochs,
        params=int(params) if params is not None else None,
        choices=dict(meta.get("params") or {}),
        error=error_reason(error) or None,
        directory=Path(path).name,
        index=int(meta.get("index", 0)),
    )


def _technique_name(t: dict) -> str:
    kind = str(t.get("kind", "?"))
    return kind.rsplit(":", 1)[-1]


def collect(
    grid, path: str, name: str, wall_s: float, planned: Iterable[dict] = ()
) -> ExperimentResult:
    """One outcome per trial: those Tune ran, plus the `planned` trials (dumped trial
    specs) it never created, e.g. when the run was interrupted before their turn
    came; those are unfinished ("not started"), so `effray restore` has work left."""
    trials = [outcome(r.config or {}, r.metrics or {}, r.error, str(r.path)) for r in grid]
    seen = {t.name for t in trials}
    for dump in planned:
        if dump["trial"]["name"] not in seen:
            trials.append(outcome({"trial": dump}, {}, None, ""))
    trials.sort(key=lambda t: t.index)
    return ExperimentResult(name=name, path=path, trials=trials, wall_s=wall_s)


CSV_COLUMNS = [
    "name",
    "group",
    "techniques",
    "status",
    "stopped_by",
    "best_val_acc",
    "final_val_acc",
    "epochs_run",
    "epochs",
    "params",
    "choices",
    "directory",
]


def write_results(result: ExperimentResult) -> None:
    """results.json and results.csv in the experiment directory."""
    payload = {
        "experiment": result.name,
        "path": result.path,
        "wall_s": result.wall_s,
        "effray_version": effray.__version__,
        "trials": [asdict(t) for t in result.trials],
    }
    _write_text(_join(result.path, RESULTS_JSON), json.dumps(payload, indent=2) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for t in result.trials:
        row = asdict(t)
        row["techniques"] = "+".join(t.techniques)
        row["choices"] = json.dumps(t.choices, sort_keys=True) if t.choices else ""
        writer.writerow(row)
    _write_text(_join(result.path, RESULTS_CSV), buf.getvalue())


# ---------------------------------------------------------------------------------
# Storage: a local directory, or a URI Ray's pyarrow filesystems understand
# ---------------------------------------------------------------------------------


def _is_uri(path: str) -> bool:
    return "://" in path


def storage_root(storage: str | os.PathLike | None) -> str:
    """Absolute local path (Ray needs one) or the URI unchanged."""
    storage = str(storage or DEFAULT_STORAGE)
    if _is_uri(storage):
        return storage.rstrip("/")
    return str(Path(storage).expanduser().resolve())


def _join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts]) if _is_uri(root) else str(Path(root, *parts))


def _fs(path: str):
    import pyarrow.fs

    if _is_uri(path):
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def _exists(path: str) -> bool:
    import pyarrow.fs

    fs, p = _fs(path)
    return fs.get_file_info(p).type != pyarrow.fs.FileType.NotFound


def _write_text(path: str, text: str) -> None:
    if not _is_uri(path):
        from effray.checkpoint import atomic_write_text

        atomic_write_text(Path(path), text)
        return
    fs, p = _fs(path)
    fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(p) as f:
        f.write(text.encode("utf-8"))


def _read_text(path: str) -> str:
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return f.read().decode("utf-8")


def _is_experiment(path: str) -> bool:
    return _exists(_join(path, EXPERIMENT_FILE)) or _exists(_join(path, "tuner.pkl"))


def fresh_experiment_dir(root: str, name: str, explicit: bool) -> tuple[str, str]:
    """(path, name) of a new experiment directory; name-2, name-3, … when taken."""
    path = _join(root, name)
    if not _is_experiment(path):
        return path, name
    if explicit:
        raise ExperimentError(
            f"experiment directory {path} already exists; continue it with "
            f"`effray restore {path}`, or choose another --name"
        )
    n = 2
    while _is_experiment(_join(root, f"{name}-{n}")):
        n += 1
    return _join(root, f"{name}-{n}"), f"{name}-{n}"


# ---------------------------------------------------------------------------------
# Ray: embedded or joined, quiet, loopback-only when local
# ---------------------------------------------------------------------------------


def _is_loopback(address: str) -> bool:
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


@contextmanager
def _loopback_only(enabled: bool) -> Iterator[None]:
    """Keep every Ray address on 127.0.0.1 for a Ray that lives on this machine.

    Ray replaces 127.0.0.1 by the machine's LAN address when it picks a node address,
    except in its single-machine mode (the default on macOS and Windows), where every
    service binds to 127.0.0.1. An embedded run, or a driver joining a cluster at
    127.0.0.1, uses that mode, so nothing listens on or talks to another interface.
    """
    import ray._private.ray_constants as ray_constants

    before = ray_constants.ENABLE_RAY_CLUSTER
    if enabled:
        ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before


def token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return Path(path).expanduser().is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


AUTH_HINT = (
    "if the cluster uses token authentication, set RAY_AUTH_MODE=token here too "
    "(Ray reads the token from RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, "
    "or ~/.ray/auth_token)"
)


def _use_token_auth() -> bool:
    """Switch this process to token mode after a cluster asked for a token (HTTP 401).

    Only when RAY_AUTH_MODE is unset and a token is available: a token is sent only to
    a cluster that requires one, and an explicit RAY_AUTH_MODE always wins.
    """
    if os.environ.get("RAY_AUTH_MODE") is not None or not token_available():
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    _reload_ray_config()
    return True


def _reload_ray_config() -> None:
    # Ray caches RAY_AUTH_MODE when it is imported; re-read it (what `ray start` does).
    from ray._raylet import Config

    Config.initialize("")


@contextmanager
def _quiet_ray_logs(log_file: str | None) -> Iterator[Callable[[], None]]:
    """Ray's log lines go to `log_file` (or nowhere), not to the console the CLI draws on.

    Yields `route`, to be called again after `ray.init`, which clears the handlers.
    """
    logger = logging.getLogger("ray")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    handler: logging.Handler = logging.NullHandler()
    if log_file and not _is_uri(log_file):
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def route() -> None:
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False

    route()
    try:
        yield route
    finally:
        handler.close()
        logger.handlers, logger.propagate = saved[0], saved[2]
        logger.setLevel(saved[1])


@contextmanager
def _env_defaults(**values: str) -> Iterator[None]:
    """Set environment variables the user has not set; put everything back afterwards."""
    before = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        os.environ.setdefault(k, v)
    if "RAY_AUTH_MODE" in values:
        _reload_ray_config()
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if "RAY_AUTH_MODE" in values:
            _reload_ray_config()


@contextmanager
def ray_session(
    address: str | None = None, *, num_cpus: int | None = None, log_file: str | None = None
) -> Iterator[None]:
    """Use the Ray this process already has, join `address` (or RAY_ADDRESS), or start one.

    The embedded Ray is quiet: no dashboard, 127.0.0.1 only, usage stats off, a small
    object store; it is shut down on exit. A joined cluster is only disconnected.
    """
    quiet = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AIR_NEW_OUTPUT": "0"}
    if ray.is_initialized():
        with _env_defaults(**quiet), _quiet_ray_logs(log_file):
            yield
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    embedded = {
        **quiet,
        "RAY_AUTH_MODE": "token",  # Ray 2.60's default for a Ray it starts, said aloud
        # Trials keep the driver's working directory, so relative paths in a spec
        # (data.root) mean the same as in `effray train`.
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
    }
    local = address is None or _is_loopback(address)
    with (
        _env_defaults(**(embedded if address is None else quiet)),
        _quiet_ray_logs(log_file) as route_logs,
        _loopback_only(local),
    ):
        common = {
            "logging_level": logging.WARNING,
            "log_to_driver": False,
            "configure_logging": False,
        }
        if address is None:
            ray.init(
                address="local",  # a new Ray even when `ray start` left one running here
                num_cpus=num_cpus or os.cpu_count(),
                include_dashboard=False,
                _node_ip_address="127.0.0.1",
                object_store_memory=OBJECT_STORE_BYTES,
                **common,
            )
        else:
            # RAY_AUTH_MODE decides, as Ray's docs ask: set the same on every node and
            # client. (A driver in the wrong mode cannot be detected cheaply: Ray retries.)
            try:
                ray.init(
                    address=address,
                    _node_ip_address="127.0.0.1" if local else None,
                    **common,
                )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                hint = f"; {AUTH_HINT}" if os.environ.get("RAY_AUTH_MODE") != "token" else ""
                raise ExperimentError(
                    f"cannot join the Ray cluster at {address}: {exc}{hint}"
                ) from None
        route_logs()
        try:
            yield
        finally:
            ray.shutdown()


# ---------------------------------------------------------------------------------
# run / restore
# ---------------------------------------------------------------------------------


def _asha(spec, max_t: int):
    asha = spec.search.asha if spec.search is not None else None
    if asha is None:
        return None
    return ASHAScheduler(
        # "epoch" is the epoch fit reported: exact after a retry or a restore, where
        # Ray's own training_iteration restarts from the checkpoint's count.
        time_attr="epoch",
        metric=asha.metric,
        mode=asha.mode,
        max_t=max_t,
        grace_period=asha.grace_period,
        reduction_factor=asha.reduction_factor,
    )


def run_experiment(
    spec,
    *,
    storage: str | os.PathLike | None = None,
    address: str | None = None,
    name: str | None = None,
    callbacks: Iterable[tune.Callback] = (),
    on_event: Callable[[dict[str, Any]], None] | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Every trial of `spec` as a Ray Tune trial; returns one outcome per trial.

    `callbacks` are extra driver-side Tune callbacks (e.g. a tracker); they are
    pickled into the experiment state, so `effray restore` brings them back.
    `on_event` receives plain dicts: one "experiment" event, then "trial" events.
    """
    from effray.spec import expand, new_trial_id

    trials = expand(spec)
    for t in trials:  # stable ids, fixed here so the driver knows them: the W&B run ids
        t.trial.id = t.trial.id or new_trial_id()
    root = storage_root(storage or spec.run.storage)
    path, name = fresh_experiment_dir(root, name or spec.name, explicit=name is not None)
    manifest = {
        "name": name,
        "spec": spec.model_dump(mode="json"),
        "trials": [t.trial.name for t in trials],
        "created": time.time(),
        "effray_version": effray.__version__,
    }
    _write_text(_join(path, EXPERIMENT_FILE), json.dumps(manifest, indent=2) + "\n")
    search = spec.search
    planned = [t.model_dump(mode="json") for t in trials]
    tuner_args = {
        "param_space": {"trial": tune.grid_search(planned)},
        "tune_config": tune.TuneConfig(
            scheduler=_asha(spec, max(t.train.epochs for t in trials)),
            max_concurrent_trials=search.max_concurrent if search else None,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        "run_config": tune.RunConfig(
            name=name,
            storage_path=root,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.run.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=spec.run.checkpoint_keep),
            callbacks=[ProgressCallback(), WandbCallback(path), *callbacks],
        ),
    }
    started = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus, log_file=_join(path, DRIVER_LOG)):
        with _listening(on_event):
            _emit({"event": "experiment", "name": name, "path": path, "trials": len(trials)})
            grid = tune.Tuner(trainable(), **tuner_args).fit()
    result = collect(grid, path, name, time.perf_counter() - started, planned)
    write_results(result)
    return result


run = run_experiment  # effray.run


def _planned(path: str) -> list[dict]:
    """The trials `effray run` planned, re-expanded from its manifest's spec."""
    from effray.spec import planned_trials

    try:
        manifest = json.loads(_read_text(_join(path, EXPERIMENT_FILE)))
        return [t.model_dump(mode="json") for t in planned_trials(manifest)]
    except Exception:  # no readable manifest: the outcomes are the trials Tune knows
        return []


def restore_experiment(
    path: str | os.PathLike,
    *,
    address: str | None = None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    num_cpus: int | None = None,
) -> ExperimentResult:
    """Continue an interrupted experiment: finished trials are kept, running ones
    resume from their last checkpoints, pending ones start; errored ones stay errored."""
    path = storage_root(path)
    if not _exists(_join(path, "tuner.pkl")):
        hint = (
            " (it is a trial directory; use `effray resume` for one trial)"
            if _exists(_join(path, "trial_spec.yaml"))
            else ""
        )
        raise ExperimentError(f"{path} is not an effray/Ray Tune experiment directory{hint}")
    name = path.rstrip("/").rsplit("/", 1)[-1]
    started = time.perf_counter()
    with ray_session(address, num_cpus=num_cpus, log_file=_join(path, DRIVER_LOG)):
        with _listening(on_event):
            _emit({"event": "experiment", "name": name, "path": path, "restored": True})
            tuner = tune.Tuner.restore(
                path, trainable=trainable(), resume_unfinished=True, resume_errored=False
            )
            grid = tuner.fit()
    result = collect(grid, path, name, time.perf_counter() - started, _planned(path))
    write_results(result)
    return result


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
            if not _use_token_auth():
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


def submit_job(
    spec_path: str | os.PathLike,
    *,
    address: str | None = None,
    overrides: Iterable[str] = (),
    storage: str | None = None,
    name: str | None = None,
    working_dir: str | os.PathLike | None = None,
) -> str:
    """Send `effray run SPEC` to a cluster as a Ray Job; returns the job id.

    The project directory (and effray's code when it lives elsewhere) travels in the
    job's runtime env, minus .git, virtualenvs and results. Validate the spec first:
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
    runtime_env: dict[str, Any] = {
        "working_dir": str(root),
        "excludes": list(UPLOAD_EXCLUDES),
        "env_vars": {"RAY_CHDIR_TO_TRIAL_DIR": "0", "RAY_USAGE_STATS_ENABLED": "0"},
    }
    package = Path(effray.__file__).resolve().parent
    if root not in package.parents:
        runtime_env["py_modules"] = [str(package)]
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
