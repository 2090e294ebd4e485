"""Driver-side Tune callbacks: progress events for the CLI (effray.tune never prints), one
W&B run per trial."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray import tune

from effray.tune.storage import DEFAULT_STORAGE, _is_uri

STOPPED_BY_SCHEDULER = "trial/stopped_by_scheduler"  # marked on the result ASHA stopped at

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
