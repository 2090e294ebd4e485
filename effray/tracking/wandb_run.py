"""The W&B run of one trial: the only module that imports wandb.

The run id is the trial's stable id, so a retried, restored or locally resumed trial
continues its run; steps already logged (remembered in
`<dir>/wandb/effray-runs/<id>.json`) are skipped, so history stays continuous and never
doubles. Every wandb call is guarded: a failure warns once (TrackingWarning), falls
back to an offline run or to doing nothing, and the fit goes on unchanged.
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from effray.results import STATUS
from effray.storage import is_uri, redact
from effray.tracking.base import Metrics, Tracker, TrackingWarning
from effray.tracking.mapping import (
    is_number,
    remember,
    run_config,
    run_summary,
    scrub_value,
    short_error,
    short_facts,
)

STATE_DIR = "effray-runs"  # per-run state (last step, best values) under <dir>/wandb/
ONLINE_INIT_TIMEOUT_S = 30.0  # seconds wandb.init may wait once the key was accepted
ONLINE_FINISH_TIMEOUT_S = 60.0  # seconds finish() may spend uploading; the rest waits for sync
FLUSH_INTERVAL_S = 0.1  # seconds between writes of the .wandb file: a kill loses <= 1 epoch

_logins: dict[str, str | None] = {}  # base URL -> why the key check failed (None: it passed)


def state_path(root: Path, run_id: str) -> Path:
    """Where a run's effray state lives under a run root."""
    return root / "wandb" / STATE_DIR / f"{run_id}.json"


class WandbTracker(Tracker):
    """One W&B run for one trial; every wandb call is guarded and never raises."""

    def __init__(self, mode: str, root: Path, project: str, entity: str | None = None):
        # absolute: wandb-core, a separate process, resolves a relative dir against its own cwd
        self.mode, self.root, self.project, self.entity = (
            mode,
            Path(root).absolute(),
            project,
            entity,
        )
        self.spec: Any = None
        self.run: Any = None  # the wandb Run while it is open
        self.state: dict[str, Any] = {}  # persisted: last_step, best values, last metrics
        self.facts: dict[str, float] = {}
        self.warned = False

    # -- the interface ----------------------------------------------------------------
    def start(self, spec: Any, trial_dir: str | Path | None = None, facts: Metrics = ()) -> None:
        if self.run is not None:
            return  # already open (a Ray trial restarted in the same driver)
        self.spec, self.facts = spec, short_facts(facts)
        self.state_path = state_path(self.root, spec.trial.id)
        self.state = _read_json(self.state_path) or {"last_step": 0, "best": {}, "last": {}}
        self.state.pop("stop_reason", None)
        with self._guard("start"):
            config = run_config(spec, facts)
            if trial_dir is not None:  # a URI stays one (credentials hidden)
                where = str(trial_dir)
                config["trial_dir"] = redact(where) if is_uri(where) else str(Path(where).resolve())
            self.run = self._init(config)
            for metric in ("val/acc", "train/acc"):
                self.run.define_metric(metric, summary="max,last")
            for metric in ("val/loss", "train/loss"):
                self.run.define_metric(metric, summary="min,last")

    def log(self, metrics: Metrics, step: int) -> None:
        step = int(step)
        if self.run is None or step < 1:
            return
        new = {k: v for k, v in metrics.items() if is_number(v) and not k.startswith("model/")}
        facts = short_facts(metrics)
        already = step <= int(self.state.get("last_step", 0))
        self._remember(metrics, step)
        with self._guard("log"):
            if facts and facts != self.facts:
                self.facts = facts
                self.run.config.update(facts, allow_val_change=True)
            if not already:  # logged before a restore or resume: W&B has it
                self.run.log(new, step=step, commit=True)
            self.run.summary.update(self._summary())

    def logged_through(self) -> int | None:
        return int(self.state.get("last_step", 0)) if self.run is not None else None

    def finish(self, stop_reason: str, summary: Metrics = ()) -> None:
        if self.run is None:
            return
        self.state["stop_reason"] = stop_reason
        _write_json(self.state_path, self.state)
        run, self.run = self.run, None
        with self._guard("finish"):
            run.summary.update({**self._summary(), "stop_reason": stop_reason, **dict(summary)})
            run.finish(exit_code=1 if STATUS.get(stop_reason) == "error" else 0)

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
        stage = {f"stage:{spec.trial.stage}"} if spec.trial.stage else set()  # greedy search
        kwargs = dict(
            id=spec.trial.id,
            resume="allow",
            project=self.project,
            entity=self.entity,
            group=spec.name,
            name=scrub_value(spec.trial.name),
            job_type="trial",
            tags=scrub_value(
                sorted({t.name for t in spec.techniques} | set(spec.wandb.tags) | stage)
            ),
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
        remember(self.state, metrics, step)
        _write_json(
            self.state_path, self.state
        )  # before W&B: a kill may lose a step, never double it

    def _summary(self) -> dict[str, Any]:
        return run_summary(self.state, self.facts)

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn any W&B failure into one warning; the tracker then does nothing."""
        try:
            yield
        except Exception as exc:
            run, self.run = self.run, None
            self._warn(f"W&B {what} failed ({short_error(exc)}); training continues without W&B")
            if run is not None:
                with contextlib.suppress(Exception):
                    run.finish(exit_code=1)

    def _warn(self, message: str) -> None:
        if not self.warned:
            self.warned = True
            trial = self.spec.trial.name if self.spec and self.spec.trial else "trial"
            warnings.warn(f"{trial}: {message}", TrackingWarning, stacklevel=4)


def flush_runs() -> None:
    """Wait until W&B has written every record of this process's runs to disk (they
    follow `finish()` by a few milliseconds), e.g. before copying offline runs away.
    Stops this process's wandb-core; the next run starts a new one."""
    import wandb

    with contextlib.suppress(Exception):
        wandb.teardown()


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
            _logins[url] = short_error(exc)
    return _logins[url]


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
