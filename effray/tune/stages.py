"""The greedy search (`search.stages`) as a sequence of Tune runs in one experiment.

    <experiment>/
      effray_experiment.json   the manifest (the spec with its stages)
      stage1-schedule/         one Tune run per stage: its trials, tuner.pkl, stage.json
      stage2-regularisers/
      stages.json              the path so far: each stage's alternatives, scores, winner
      best_spec.yaml           the final configuration, ready for `effray run`/`effray train`
      results.json             every trial of every stage

A stage whose stage.json exists is done and is read, not run; one with a tuner.pkl is
restored (finished trials are kept); otherwise it starts. So `effray restore` after a
kill at any moment re-runs no finished trial. Trial ids are derived from the
experiment's creation time and the trial name, so a stage started again after a kill
keeps the W&B run ids of the trials it had started.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from ray import tune

import effray
from effray.results import RESULTS_JSON, TrialRecord, results_json
from effray.spec.stages import KEEP, Choice, apply_changes, choose, stage_dir, stage_trials
from effray.storage import exists, join, read_text, write_text
from effray.tune.experiment import collect, tune_run
from effray.tune.trial import trainable

STAGES_FILE = "stages.json"
STAGE_FILE = "stage.json"
BEST_SPEC = "best_spec.yaml"


def trial_id(created: Any, name: str) -> str:
    return hashlib.sha1(f"{created}:{name}".encode()).hexdigest()[:8]


def run_stages(spec, path: str, manifest: dict, callbacks: list) -> list[TrialRecord]:
    """Every stage in order, each on top of the winners so far; returns all records."""
    from effray.spec import to_yaml

    search = spec.search
    chosen: list = []  # the winning alternatives so far
    keep: Choice | None = None  # the best so far, as the next stage's "keep"
    path_rows: list[dict[str, Any]] = []
    records: list[TrialRecord] = []
    for i, stage in enumerate(search.stages):
        name = stage_dir(i + 1, stage.name)
        trials = stage_trials(spec, i, chosen, with_base=keep is None)
        for t in trials:
            t.trial.id = trial_id(manifest.get("created"), t.trial.name)
        done = _read_stage(join(path, name))
        if done is None:
            stage_records, values = _run_stage(spec, path, name, trials, callbacks)
            done = {"values": values}
            if any(r.status == "unfinished" for r in stage_records):
                records += stage_records  # interrupted: `effray restore` continues here
                break
            write_text(join(path, name, STAGE_FILE), json.dumps(done, indent=2) + "\n")
        else:
            stage_records = _read_records(join(path, name))
        records += stage_records
        choices = [keep] if keep is not None else []
        for t in trials:
            label = t.trial.params["alternative"]
            c = next((c for c in choices if c.label == label), None)
            if c is None:
                c = Choice(label, [])
                choices.append(c)
            value = done["values"].get(t.trial.name)
            if value is not None:
                c.values.append(value)
            c.trials.append(t.trial.name)
        winner = choose(choices, search.mode)
        winner.chosen = True
        if winner.label != KEEP:
            chosen.append(next(a for a in stage.alternatives if a.label == winner.label))
        path_rows.append(
            {
                "stage": i + 1,
                "name": stage.name,
                "note": stage.note,
                "directory": name,
                "alternatives": [_row(c) for c in choices],
                "chosen": winner.label,
            }
        )
        keep = Choice(KEEP, list(winner.values), trials=list(winner.trials))
        _write_path(path, spec, path_rows, chosen, final=False)
    else:  # every stage chose: the search is complete
        best = apply_changes(spec, chosen)
        write_text(join(path, BEST_SPEC), _best_header(spec, chosen) + to_yaml(best))
        _write_path(path, spec, path_rows, chosen, final=True)
    return records


def _row(c: Choice) -> dict[str, Any]:
    return {
        "label": c.label,
        "mean": c.mean,
        "std": c.std,
        "n": c.n,
        "values": c.values,
        "trials": c.trials,
        "chosen": c.chosen,
    }


def _write_path(path: str, spec, rows: list, chosen: list, final: bool) -> None:
    doc = {
        "metric": spec.search.metric,
        "mode": spec.search.mode,
        "stages": rows,
        "final": [a.model_dump(mode="json", exclude_defaults=True) for a in chosen],
        "complete": final and len(rows) == len(spec.search.stages),
        "trials_run": sum(len(a["trials"]) for r in rows for a in r["alternatives"][1:])
        + (len(rows[0]["alternatives"][0]["trials"]) if rows else 0),
    }
    write_text(join(path, STAGES_FILE), json.dumps(doc, indent=2) + "\n")


def _best_header(spec, chosen: list) -> str:
    labels = ", ".join(a.label for a in chosen) or "the base configuration (no stage changed it)"
    return (
        f"# The configuration the greedy search of '{spec.name}' chose: {labels}.\n"
        "#   $ effray train THIS_FILE      # one trial, no Ray\n"
        "#   $ effray run THIS_FILE        # as an experiment\n"
    )


def _read_stage(stage_path: str) -> dict | None:
    try:
        return json.loads(read_text(join(stage_path, STAGE_FILE)))
    except Exception:
        return None


def _run_stage(spec, path: str, name: str, trials: list, callbacks: list):
    """Run (or restore) one stage; (records, {trial name: score})."""
    planned = [t.model_dump(mode="json") for t in trials]
    stage_path = join(path, name)
    if exists(join(stage_path, "tuner.pkl")):
        tuner = tune.Tuner.restore(
            stage_path, trainable=trainable(), resume_unfinished=True, resume_errored=False
        )
    else:
        tuner = tune_run(spec, path, name, planned, callbacks)
    started = time.perf_counter()
    grid = tuner.fit()
    records = collect(grid, stage_path, planned)
    wall = time.perf_counter() - started
    text = results_json(name, stage_path, wall, records, effray.__version__)
    write_text(join(stage_path, RESULTS_JSON), text)
    values = {}
    for r in grid:
        trial = (r.config or {}).get("trial", {}).get("trial", {}).get("name")
        values[trial] = _score(r, spec.search.metric, spec.search.mode)
    return records, {k: v for k, v in values.items() if v is not None}


def _score(result, metric: str, mode: str) -> float | None:
    """The trial's best epoch value of the stage metric (None when it has none)."""
    from effray.spec.stages import trial_value

    history = []
    df = result.metrics_dataframe
    if df is not None and metric in df:
        history = [{metric: float(v)} for v in df[metric].tolist()]
    elif result.metrics and metric in result.metrics:
        history = [{metric: float(result.metrics[metric])}]
    value = trial_value(history, metric, mode)
    return None if value != value else value  # NaN: no score


def _read_records(stage_path: str) -> list[TrialRecord]:
    """A finished stage's records, from the results.json its run wrote."""
    try:
        doc = json.loads(read_text(join(stage_path, RESULTS_JSON)))
    except Exception:
        return []
    return [TrialRecord.from_row(row) for row in doc.get("trials", [])]
