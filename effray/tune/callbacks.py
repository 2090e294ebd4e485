"""Driver-side Tune callbacks: progress events for the CLI, and one W&B run per trial.

Both run on the driver, so a trial the scheduler stops loses nothing. Neither prints:
progress goes to the listeners (`listening(on_event)`) as plain dicts, which the CLI
draws; W&B goes through effray.tracking.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray import tune

from effray.results import METRICS, history_from_text, stop_reason
from effray.storage import basename, is_uri, join, read_text, redact
from effray.tracking.remote import RUNS_DIR

Listener = Callable[[dict[str, Any]], None]
_listeners: list[Listener] = []  # set for the duration of a fit
_experiment_path: list[str | None] = [None]  # the last "experiment" event's location


@contextmanager
def listening(on_event: Listener | None) -> Iterator[None]:
    """Send `emit`'s events to `on_event` inside the block."""
    if on_event is None:
        yield
        return
    _listeners.append(on_event)
    try:
        yield
    finally:
        _listeners.remove(on_event)


def emit(event: dict[str, Any]) -> None:
    if event.get("event") == "experiment":
        _experiment_path[0] = event.get("path")
    for listener in list(_listeners):
        listener(event)


def trial_event(trial, result: dict[str, Any] | None = None, status: str | None = None) -> dict:
    """A trial's state as a plain dict: name, status, epoch, val/acc, best, elapsed, and
    (once it ended) why it stopped."""
    spec = trial.config.get("trial", {})
    meta = spec.get("trial") or {}
    r = result if result is not None else (trial.last_result or {})
    status = status or trial.status
    return {
        "event": "trial",
        "trial": meta.get("name", trial.trial_id),
        "index": meta.get("index", 0),
        "group": meta.get("group", ""),
        "status": status,
        "epoch": int(r.get("epoch", 0) or 0),
        "epochs": int(spec.get("train", {}).get("epochs", 0)),
        "val_acc": r.get("val/acc"),
        "best_val_acc": r.get("val/best_acc"),
        "elapsed_s": float(r.get("time_total_s", 0.0) or 0.0),
        "failures": int(getattr(trial, "num_failures", 0) or 0),
        "stopped_by": stop_reason(r, done=True) if status == "TERMINATED" else None,
    }


class ProgressCallback(tune.Callback):
    """Forwards each trial's changes to the listeners as `trial_event` dicts."""

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
            emit(event)

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        for trial in trials:
            self._send(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self._send(trial, result, "RUNNING")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(trial, status="TERMINATED")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(trial, status="ERROR")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._send(trial, status="RETRYING")


def trial_error(trial) -> object:
    """The exception a trial ended with (Ray's pickled copy), else its text, else None."""
    for get in ("get_pickled_error", "get_error"):
        try:
            error = getattr(trial, get)()
        except Exception:
            continue
        if error is not None:
            return error
    return "error"


def _tracked(result: dict) -> dict:
    """A result's metrics for the run: effray's keys (val/acc, epoch, lr, …), not Ray's."""
    return {k: v for k, v in result.items() if "/" in k or k in ("epoch", "lr")}


class WandbCallback(tune.Callback):
    """One W&B run per trial, driven here on the driver (a trial ASHA stops loses nothing).

    effray.tracking does the W&B part: run id = the trial's stable id, so a retried or
    restored trial continues its run. Offline runs go to `<experiment dir>/wandb`. With
    object-store storage they go to `wandb.dir`, else ./wandb-offline/<experiment>, on
    the driver (said once, as a "wandb" event), and each run is copied beside the results
    (<experiment>/wandb) when its trial ends and again when the experiment ends, so
    `effray sync URI` pushes them from any machine.
    """

    def __init__(self, experiment_dir: str) -> None:
        self.experiment_dir = experiment_dir
        self._open: dict[str, tuple] = {}  # Ray trial id -> (TrialSpec, Tracker)
        self._offline: dict[str, Path] = {}  # run id -> local root of its offline files
        self._announced = False

    def __getstate__(self) -> dict:  # pickled into tuner.pkl; open runs belong to one driver
        return {"experiment_dir": self.experiment_dir}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["experiment_dir"])

    @property
    def stored(self) -> bool:
        """Results in an object store: offline runs live on the driver, copied there."""
        return is_uri(self.experiment_dir)

    def _run(self, trial) -> tuple:
        from effray.tracking import offline_root, open_run

        if trial.trial_id not in self._open:
            if self.stored:  # the URI this run or restore was given (a restore elsewhere
                # may reach the same bucket another way: another endpoint option)
                given = _experiment_path[0]
                if given and is_uri(given) and basename(given) == basename(self.experiment_dir):
                    self.experiment_dir = given
                trial_dir = join(self.experiment_dir, basename(str(trial.path)))
                root = offline_root(self.experiment_dir)
                store = self.experiment_dir
            else:  # a restore may have moved the directory
                trial_dir, root, store = trial.path, Path(trial.path).parent, None
            spec, tracker = open_run(trial.config["trial"], root, trial_dir, store=store)
            self._open[trial.trial_id] = (spec, tracker)
            if self.stored and getattr(tracker, "mode", None) == "offline":
                self._offline[spec.trial.id] = tracker.root
                self._announce(tracker.root)
        return self._open[trial.trial_id]

    def _announce(self, root: Path) -> None:
        if not self._announced:
            self._announced = True
            emit(
                {
                    "event": "wandb",
                    "dir": str(root / RUNS_DIR),
                    "copied_to": join(self.experiment_dir, RUNS_DIR),
                    "sync": self.experiment_dir,
                }
            )

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        self._run(trial)

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        tracker = self._run(trial)[1]
        epoch = int(result.get("epoch", 0))
        last = tracker.logged_through()
        if last is not None and epoch > last + 1:  # a driver killed before it logged them
            for missed in self._epochs(trial, after=last, before=epoch):
                tracker.log(_tracked(missed), step=int(missed["epoch"]))
        tracker.log(_tracked(result), step=epoch)

    def _epochs(self, trial, after: int, before: int) -> list[dict]:
        """The trial's own epochs in (after, before) from its metrics.jsonl: what the
        trial reported while no driver listened (killed, then restored)."""
        name = basename(str(trial.path))
        trial_dir = join(self.experiment_dir, name) if self.stored else str(trial.path)
        try:
            text = read_text(join(trial_dir, METRICS))
        except Exception:  # no record to recover from: the run skips those steps
            return []
        return [m for m in history_from_text(text) if after < int(m["epoch"]) < before]

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, stop_reason(trial.last_result, done=True))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._finish(trial, stop_reason(trial.last_result, error=trial_error(trial)))

    def on_experiment_end(self, trials: list, **info) -> None:
        if self._offline:  # every record written (finish() returns before the last ones)
            from effray.tracking import flush_runs

            flush_runs()
            self._share(list(self._offline))

    def _finish(self, trial, reason: str) -> None:
        spec, tracker = self._run(trial)
        del self._open[trial.trial_id]
        tracker.finish(reason)
        if spec is not None and spec.trial.id in self._offline:
            self._share([spec.trial.id])

    def _share(self, run_ids: list[str]) -> None:
        """Copy offline runs beside the results; a failure warns, training goes on."""
        from effray.tracking import TrackingWarning, upload_runs

        by_root: dict[Path, list[str]] = {}
        for run_id in run_ids:
            by_root.setdefault(self._offline[run_id], []).append(run_id)
        for root, ids in by_root.items():
            try:
                upload_runs(root, ids, self.experiment_dir)
            except Exception as exc:
                where = redact(join(self.experiment_dir, RUNS_DIR))
                warnings.warn(
                    f"W&B offline runs not copied to {where} ({exc}); they stay in "
                    f"{root / RUNS_DIR}: push them with `effray sync {root}`",
                    TrackingWarning,
                    stacklevel=2,
                )
