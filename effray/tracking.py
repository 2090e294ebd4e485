"""One Weights & Biases run per trial, behind a three-call interface; tracking off does nothing.

    $ effray train experiments/quickstart.yaml --out runs/quick   # offline run in runs/quick/wandb
    $ effray sync runs/quick                                      # push offline runs later

    tracker = make_tracker(spec, experiment_dir)   # NullTracker when W&B is off
    tracker.start(spec, trial_dir)                 # run id = spec.trial.id, resume="allow"
    tracker.log(metrics, step=metrics["epoch"])    # once per epoch
    tracker.finish(stop_reason)                    # finished|asha|early_stopping|diverged|error

The only module that imports wandb. The run id is the trial's stable id, so a
retried, restored or locally resumed trial continues its run; steps already logged
(remembered in `<dir>/wandb/effray-runs/<id>.json`) are skipped, so history stays
continuous and never doubles. A W&B failure never stops training: the tracker warns
once (TrackingWarning), falls back to an offline run or to doing nothing, and the
fit goes on unchanged. No API key, token or password reaches a W&B config.
"""

from __future__ import annotations

import contextlib
import json
import netrc
import os
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

Metrics = Mapping[str, Any]
STOP_REASONS = ("finished", "asha", "early_stopping", "diverged", "error")
STATE_DIR = "effray-runs"  # per-run state (last step, best values) under <dir>/wandb/
ONLINE_INIT_TIMEOUT_S = 30.0  # seconds wandb.init may wait once the key was accepted
ONLINE_FINISH_TIMEOUT_S = 60.0  # seconds finish() may spend uploading; the rest waits for sync
FLUSH_INTERVAL_S = 0.1  # seconds between writes of the .wandb file: a kill loses <= 1 epoch
DEFAULT_HOSTS = ("api.wandb.ai", "api.forge.coreweave.com")  # netrc hosts, no WANDB_BASE_URL
FACTS = {  # fit's model facts -> short config/summary names (thesis dashboard columns)
    "model/params": "params",
    "model/size_kb": "size_kb",
    "model/flops": "flops",
    "model/latency_s": "latency_s",
}
BEST = {  # summary key -> (metric, max|min)
    "best/val_acc": ("val/acc", max),
    "best/val_loss": ("val/loss", min),
    "best/train_acc": ("train/acc", max),
    "best/train_loss": ("train/loss", min),
}
NATIVE_SIZE = {"fashion_mnist": 28, "mnist": 28, "cifar10": 32}  # pixels per side
SECRET_NAME = re.compile(r"key|token|secret|passw|credential", re.IGNORECASE)
SECRET_VALUE = re.compile(r"\b[0-9a-f]{40}\b|\b(?:local|v1)-[0-9A-Za-z_-]{30,}")  # W&B key shapes
REDACTED = "[redacted]"

_logins: dict[str, str | None] = {}  # base URL -> why the key check failed (None: it passed)


class TrackingWarning(UserWarning):
    """W&B failed; training goes on (offline or untracked)."""


class Tracker:
    """The interface, and tracking off: every call does nothing."""

    def start(self, spec: Any, trial_dir: str | Path | None = None, facts: Metrics = ()) -> None:
        """Open (or continue) the run of trial `spec`; `facts` are known model facts."""

    def log(self, metrics: Metrics, step: int) -> None:
        """Record one epoch's metrics at `step` (the epoch, 1-based)."""

    def finish(self, stop_reason: str | None = None, summary: Metrics = ()) -> None:
        """Close the run; `stop_reason` None: inferred from the last epoch seen."""


class NullTracker(Tracker):
    """W&B off (`wandb.mode: disabled`, or a spec with no trial id): nothing is recorded."""


# ---------------------------------------------------------------------------------
# Choosing a tracker
# ---------------------------------------------------------------------------------


def make_tracker(spec: Any, experiment_dir: str | Path) -> Tracker:
    """The tracker for trial `spec`: a W&B run under `experiment_dir`, or a NullTracker."""
    mode = resolve_mode(spec.wandb.mode)
    if mode == "disabled" or spec.trial is None or not spec.trial.id:
        return NullTracker()
    root = Path(spec.wandb.dir).expanduser() if spec.wandb.dir else run_root(experiment_dir, spec)
    return WandbTracker(mode, root, project=spec.wandb.project, entity=spec.wandb.entity)


def resolve_mode(mode: str) -> str:
    """auto: WANDB_MODE when set, else online with an API key configured, else offline."""
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE", "").strip()
    if env:
        return "offline" if env == "dryrun" else env  # an invalid value fails in wandb.init
    return "online" if api_key_configured() else "offline"


def api_key_configured() -> bool:
    """WANDB_API_KEY, or a netrc entry for the W&B host."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    url = os.environ.get("WANDB_BASE_URL")
    hosts = [urlparse(url).hostname or ""] if url else DEFAULT_HOSTS
    try:
        entries = netrc.netrc(os.environ.get("NETRC")).hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any(entries.get(host, (None, None, None))[2] for host in hosts)


def run_root(experiment_dir: str | Path, spec: Any) -> Path:
    """Where the run lives: the experiment directory, or the one above a trial directory
    when the run was started there (a Ray trial resumed with `effray resume`)."""
    experiment_dir = Path(experiment_dir)
    for root in (experiment_dir, experiment_dir.parent):
        if _state_path(root, spec.trial.id).exists():
            return root
    return experiment_dir


def _state_path(root: Path, run_id: str) -> Path:
    return root / "wandb" / STATE_DIR / f"{run_id}.json"


# ---------------------------------------------------------------------------------
# What a run shows: config (flattened spec + derived facts), summary, stop reason
# ---------------------------------------------------------------------------------


def run_config(spec: Any, facts: Metrics = ()) -> dict[str, Any]:
    """The flattened trial spec (dotted keys) plus the dashboard columns, secrets removed."""
    raw = spec.model_dump(mode="json", exclude={"techniques"})
    config = dict(_flatten(raw))
    for t in spec.techniques:
        for key, value in t.model_dump(mode="json", exclude={"kind"}).items():
            config[f"techniques.{t.name}.{key}"] = value
    config.update(derived_facts(spec))
    config.update(_short_facts(facts))
    return scrub(config)


def derived_facts(spec: Any) -> dict[str, Any]:
    """The thesis dashboard's columns, as top-level config keys."""
    from effray.techniques import TECHNIQUES

    t, kinds = spec.train, {x.kind: x for x in spec.techniques}
    schedulers = [x.name for x in spec.techniques if "lr" in type(x).owns]
    smoothing = getattr(kinds.get("label_smoothing"), "alpha", 0.0)
    facts: dict[str, Any] = {
        "experiment": spec.name,
        "trial": spec.trial.name if spec.trial else spec.name,
        "trial_group": spec.trial.group if spec.trial else "baseline",
        "architecture": spec.model.name,
        "dataset": spec.data.name,
        "image_size": _image_size(spec.data),
        "batch_size": t.batch_size,
        "epochs": t.epochs,
        "optimizer": t.optimizer,
        "lr": t.lr,
        "momentum": t.momentum,
        "weight_decay": t.weight_decay,
        "scheduler": "+".join(schedulers) or "constant",
        "loss": f"cross_entropy(label_smoothing={smoothing})" if smoothing else "cross_entropy",
        "seed": t.seed,
        "techniques": "+".join(x.name for x in spec.techniques) or "baseline",
        **{f"technique/{kind}": kind in kinds for kind in sorted(TECHNIQUES)},
    }
    from effray.models import MODELS  # the model's knobs with their defaults

    args = MODELS[spec.model.name].args.model_validate(spec.model.args).model_dump()
    dropout = getattr(kinds.get("dropout"), "p", args.get("dropout"))
    if dropout is not None:
        facts["dropout"] = dropout
    if "out_channels" in args:
        facts["last_layer_size"] = args["out_channels"]
    return facts


def _image_size(data: Any) -> int | str:
    if data.image_size:
        return data.image_size
    if data.name == "synthetic":
        return data.size
    if data.name in NATIVE_SIZE:
        return NATIVE_SIZE[data.name]
    from effray.data import DEFAULT_IMAGE_SIZE

    return DEFAULT_IMAGE_SIZE.get(data.name, "native")


def _short_facts(facts: Metrics) -> dict[str, float]:
    return {short: float(facts[long]) for long, short in FACTS.items() if long in facts}


def _flatten(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def scrub(config: dict[str, Any]) -> dict[str, Any]:
    """Drop values under secret-looking names; redact values that look like API keys."""
    return {
        key: REDACTED if SECRET_NAME.search(key.rsplit(".", 1)[-1]) else scrub_value(value)
        for key, value in config.items()
    }


def scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _known_secrets():
            value = value.replace(secret, REDACTED)
        return SECRET_VALUE.sub(REDACTED, value)
    if isinstance(value, list | tuple):
        return [scrub_value(v) for v in value]
    if isinstance(value, dict):
        return scrub(value)
    return value


def _known_secrets() -> list[str]:
    key = os.environ.get("WANDB_API_KEY", "").strip()
    return [key] if len(key) >= 8 else []


def stop_reason_for(
    spec: Any, last: Metrics | None, error: object = None, by_scheduler: bool | None = None
) -> str:
    """Why a trial ended: an error, all epochs run, ASHA (`by_scheduler`, when the caller
    knows) or early stopping (else told apart by its patience), otherwise ASHA."""
    if spec is None:  # a trial whose spec could not be read is not tracked anyway
        return "error"
    if error is not None:
        text = f"{type(error).__name__}: {error}"
        return "diverged" if "TrialDiverged" in text or "diverged at epoch" in text else "error"
    epoch = int(last.get("epoch", 0)) if last else 0
    if epoch >= spec.train.epochs:
        return "finished"
    if by_scheduler is not None:
        return "asha" if by_scheduler else "early_stopping"
    stopper = next((t for t in spec.techniques if t.kind == "early_stopping"), None)
    best = (last or {}).get("early_stopping/best_epoch")
    if stopper is not None and best is not None and epoch - int(best) >= stopper.patience:
        return "early_stopping"
    return "asha"


# ---------------------------------------------------------------------------------
# The W&B run
# ---------------------------------------------------------------------------------


class WandbTracker(Tracker):
    """One W&B run for one trial; every wandb call is guarded and never raises."""

    def __init__(self, mode: str, root: Path, project: str, entity: str | None = None):
        self.mode, self.root, self.project, self.entity = mode, Path(root), project, entity
        self.spec: Any = None
        self.run: Any = None  # the wandb Run while it is open
        self.state: dict[str, Any] = {}  # persisted: last_step, best values, last metrics
        self.facts: dict[str, float] = {}
        self.warned = False

    # -- the interface ----------------------------------------------------------------
    def start(self, spec: Any, trial_dir: str | Path | None = None, facts: Metrics = ()) -> None:
        if self.run is not None:
            return  # already open (a Ray trial restarted in the same driver)
        self.spec, self.facts = spec, _short_facts(facts)
        self.state_path = _state_path(self.root, spec.trial.id)
        self.state = _read_json(self.state_path) or {"last_step": 0, "best": {}, "last": {}}
        self.state.pop("stop_reason", None)
        with self._guard("start"):
            config = run_config(spec, facts)
            if trial_dir is not None:
                config["trial_dir"] = str(Path(trial_dir).resolve())
            self.run = self._init(config)
            for metric in ("val/acc", "train/acc"):
                self.run.define_metric(metric, summary="max,last")
            for metric in ("val/loss", "train/loss"):
                self.run.define_metric(metric, summary="min,last")

    def log(self, metrics: Metrics, step: int) -> None:
        step = int(step)
        if self.run is None or step < 1:
            return
        new = {k: v for k, v in metrics.items() if _is_number(v) and not k.startswith("model/")}
        facts = _short_facts(metrics)
        already = step <= int(self.state.get("last_step", 0))
        self._remember(metrics, step)
        with self._guard("log"):
            if facts and facts != self.facts:
                self.facts = facts
                self.run.config.update(facts, allow_val_change=True)
            if not already:  # logged before a restore or resume: W&B has it
                self.run.log(new, step=step, commit=True)
            self.run.summary.update(self._summary())

    def finish(self, stop_reason: str | None = None, summary: Metrics = ()) -> None:
        if self.run is None:
            return
        reason = stop_reason or stop_reason_for(self.spec, self.state.get("last"))
        self.state["stop_reason"] = reason
        _write_json(self.state_path, self.state)
        run, self.run = self.run, None
        with self._guard("finish"):
            run.summary.update({**self._summary(), "stop_reason": reason, **dict(summary)})
            run.finish(exit_code=1 if reason in ("diverged", "error") else 0)

    # -- helpers --------------------------------------------------------------------------
    def _init(self, config: dict[str, Any]):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")  # also W&B's login lines
        _own_wandb_service()
        mode, spec = self.mode, self.spec
        if mode == "online" and (problem := _login_problem(wandb)):
            # checked before any run exists: a failed online init keeps the run id busy
            # in wandb-core, so this process could not reopen it offline afterwards
            mode = "offline"
            self._warn(
                f"W&B is unreachable or refused the key ({problem}); logging offline under "
                f"{self.root}; push later with `effray sync`"
            )
        if mode == "offline":
            # offline means nothing leaves the machine: no W&B error telemetry either
            os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
        kwargs = dict(
            id=spec.trial.id,
            resume="allow",
            project=self.project,
            entity=self.entity,
            group=spec.name,
            name=scrub_value(spec.trial.name),
            job_type="trial",
            tags=scrub_value(sorted({t.name for t in spec.techniques} | set(spec.wandb.tags))),
            notes=scrub_value(spec.description) or None,
            config=config,
            dir=str(self.root),
        )
        self.root.mkdir(parents=True, exist_ok=True)  # wandb warns when dir does not exist
        return wandb.init(mode=mode, settings=self._settings(wandb, mode), **kwargs)

    @staticmethod
    def _settings(wandb: Any, mode: str):
        online = mode == "online"
        return wandb.Settings(
            silent=True,
            console="off",  # stdout stays the user's; W&B keeps metrics, not logs
            reinit="create_new",  # one process drives many runs (the Ray driver)
            save_code=False,
            init_timeout=ONLINE_INIT_TIMEOUT_S if online else 90.0,
            finish_timeout=ONLINE_FINISH_TIMEOUT_S if online else 0.0,
            x_transaction_log_flush_interval=FLUSH_INTERVAL_S,
        )

    def _remember(self, metrics: Metrics, step: int) -> None:
        state = self.state
        for key, (metric, better) in BEST.items():
            if _is_number(metrics.get(metric)):
                old, value = state["best"].get(key), float(metrics[metric])
                if old is None or better(old, value) != old:
                    state["best"][key] = value
                    if key == "best/val_acc":
                        state["best"]["best/epoch"] = step  # first epoch reaching the best
        if step >= int(state.get("last_step", 0)):  # not an epoch re-run after a restore
            state["last_step"] = step
            state["last"] = {k: v for k, v in metrics.items() if _is_number(v)}
        _write_json(self.state_path, state)  # before W&B: a kill may lose a step, never double it

    def _summary(self) -> dict[str, Any]:
        return {
            **self.state["best"],
            "epochs_run": int(self.state.get("last", {}).get("epoch", self.state["last_step"])),
            **self.facts,
        }

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any W&B failure into one warning; the tracker then does nothing."""
        try:
            yield
        except Exception as exc:
            run, self.run = self.run, None
            self._warn(f"W&B {what} failed ({_short(exc)}); training continues without W&B")
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish(exit_code=1)

    def _warn(self, message: str) -> None:
        if not self.warned:
            self.warned = True
            trial = self.spec.trial.name if self.spec and self.spec.trial else "trial"
            warnings.warn(f"{trial}: {message}", TrackingWarning, stacklevel=4)


def _own_wandb_service() -> None:
    """Use a wandb-core of this process, not one inherited from a parent (WANDB_SERVICE,
    "<version>-<pid>-…"): a parent's service would keep a killed effray's runs open, and
    the resumed trial could not reopen its run id."""
    parts = os.environ.get("WANDB_SERVICE", "").split("-", 2)
    if len(parts) == 3 and parts[1] != str(os.getpid()):
        del os.environ["WANDB_SERVICE"]


def _login_problem(wandb: Any) -> str | None:
    """Does W&B accept the key? Asked once per server and process (~10 s when unreachable)."""
    url = os.environ.get("WANDB_BASE_URL", "")
    if url not in _logins:
        try:
            ok = wandb.login(verify=True, prompt=False)
            _logins[url] = None if ok else "no API key"
        except Exception as exc:
            _logins[url] = _short(exc)
    return _logins[url]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return scrub_value(text if len(text) <= 200 else text[:200] + "…")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Atomic replace; a failure to write state only costs duplicate-step protection."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------
# Wrapping a fit (effray train / effray resume), and pushing offline runs later
# ---------------------------------------------------------------------------------

R = TypeVar("R")
Report = Callable[[dict[str, Any], Any], None]


def open_run(trial: Mapping[str, Any], experiment_dir: str | Path, trial_dir: Any = None):
    """(TrialSpec, started Tracker) for a trial given as its spec dict (a Ray trial's
    config); never raises: on any failure a warning and a NullTracker."""
    try:
        from effray.spec import ExperimentSpec

        spec = ExperimentSpec.model_validate(trial)
        tracker = make_tracker(spec, experiment_dir)
    except Exception as exc:
        warnings.warn(f"W&B tracking off for a trial ({_short(exc)})", TrackingWarning, 2)
        return None, NullTracker()
    tracker.start(spec, trial_dir)
    return spec, tracker


def track_fit(spec: Any, trial_dir: str | Path, report: Report, run: Callable[[Report], R]) -> R:
    """`run(report)` inside the trial's W&B run: every report is also logged; the run
    finishes with the fit's stop reason, or diverged/error when the fit raises."""
    tracker = make_tracker(spec, trial_dir)
    tracker.start(spec, trial_dir)

    def tracked(metrics: dict[str, Any], checkpoint: Any) -> None:
        report(metrics, checkpoint)
        tracker.log(metrics, step=int(metrics["epoch"]))

    try:
        result = run(tracked)
    except BaseException as exc:
        tracker.finish(stop_reason_for(spec, None, error=exc))
        raise
    tracker.finish(getattr(result, "stop_reason", None))
    return result


def offline_runs(directory: str | Path) -> list[Path]:
    """Offline run directories (with a .wandb file) anywhere under `directory`."""
    found = [p for p in Path(directory).rglob("offline-run-*") if any(p.glob("*.wandb"))]
    return sorted(found, key=lambda p: p.name)


def sync_runs(paths: list[Path], dry_run: bool = False) -> int:
    """`wandb sync` over `paths` (W&B prints its own progress); returns its exit code."""
    cmd = [sys.executable, "-m", "wandb", "sync", *(["--dry-run"] if dry_run else [])]
    return subprocess.call([*cmd, *map(str, paths)])
