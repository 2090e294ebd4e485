"""One record of a trial's result (effray.results), no Ray: the verdict on why a trial
stopped, the record from a spec and its metrics, results.json / results.csv."""

from __future__ import annotations

import csv
import io
import json
import math

import pytest

from effray import results as res
from effray.train import TrialDiverged

SPEC = {
    "name": "exp",
    "model": {"name": "paper_mnist_1.5k_dw"},
    "data": {"name": "fashion_mnist"},
    "train": {"epochs": 4, "seed": 2},
    "techniques": [{"kind": "blurpool"}, {"kind": "my_pkg.mod:Mine"}],
    "reference": {"blurpool+Mine": 88.5},
    "trial": {"name": "bp-seed2", "group": "blurpool+Mine", "index": 3, "params": {"x": 1}},
}


def epochs(*accs, last_reason=None):
    hist = [
        {"epoch": i + 1, "val/acc": a, "time/epoch_s": 1.5, "model/params": 1560}
        for i, a in enumerate(accs)
    ]
    if last_reason:
        hist[-1]["stop_reason"] = last_reason
    return hist


class RayLikeWrapper(Exception):
    """Stands for Ray's RayTaskError: the fit's exception is its `cause`."""

    def __init__(self, cause):
        super().__init__(f"ray task failed: {cause}")
        self.cause = cause


@pytest.mark.parametrize(
    "last, error, done, verdict",
    [
        ({"epoch": 4, "stop_reason": "finished"}, None, True, "finished"),
        ({"epoch": 2, "stop_reason": "early_stopping"}, None, True, "early_stopping"),
        ({"epoch": 2}, None, True, "asha"),  # done, and fit never said it was the last
        ({"epoch": 2}, None, False, "interrupted"),
        ({}, None, False, "not started"),
        (None, None, False, "not started"),
        ({"epoch": 1}, TrialDiverged("diverged at epoch 2"), False, "diverged"),
        ({"epoch": 1}, RayLikeWrapper(TrialDiverged("diverged")), False, "diverged"),
        ({"epoch": 1}, ValueError("diverged at epoch 2"), False, "error"),  # text is not matched
        ({"epoch": 1}, "TrialDiverged: diverged at epoch 2", False, "error"),
    ],
)
def test_stop_reason_verdicts(last, error, done, verdict):
    assert res.stop_reason(last, error, done) == verdict
    assert res.STATUS[verdict]


def test_error_line():
    assert res.error_line(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert res.error_line(RayLikeWrapper(TrialDiverged("diverged at epoch 3"))) == (
        "TrialDiverged: diverged at epoch 3"
    )
    assert res.error_line(None) == ""


def test_record_from_spec_and_history():
    rec = res.TrialRecord.from_spec(SPEC, "runs/exp/bp-seed2")
    assert (rec.name, rec.group, rec.seed, rec.index) == ("bp-seed2", "blurpool+Mine", 2, 3)
    assert rec.techniques == ["blurpool", "Mine"] and rec.epochs_planned == 4
    assert rec.stopped_by == res.PENDING and rec.status == "pending"
    rec.add_history(epochs(50.0, 70.0, 65.0, 69.0, last_reason="finished"))
    assert rec.epochs_run == 4 and rec.best_val_acc == 70.0 and rec.best_epoch == 2
    assert rec.final_val_acc == 69.0 and rec.train_time_s == 6.0 and rec.params == 1560
    assert rec.late_gain == pytest.approx(0.0)  # the last quarter (epoch 4) did not beat 70
    assert rec.directory == "bp-seed2"


def test_record_without_a_group_names_its_technique_set():
    raw = {k: v for k, v in SPEC.items() if k != "trial"}
    assert res.TrialRecord.from_spec(raw, "a/b").group == "blurpool+Mine"
    assert res.TrialRecord.from_spec({}, "a/b").group == res.BASELINE
    assert res.technique_set([]) == "baseline" and res.technique_name("p.m:Cls") == "Cls"


def test_record_from_a_last_result_and_its_verdict():
    last = {"epoch": 2, "val/acc": 61.0, "val/best_acc": 64.0, "model/params": 1470, "done": True}
    rec = res.TrialRecord.from_spec(SPEC).add_last(last).settle(last, None, done=True)
    assert (rec.epochs_run, rec.best_val_acc, rec.final_val_acc) == (2, 64.0, 61.0)
    assert rec.stopped_by == "asha" and rec.status == "stopped" and rec.error is None
    failed = res.TrialRecord.from_spec(SPEC).settle({}, TrialDiverged("diverged at epoch 1"))
    assert failed.stopped_by == "diverged" and failed.status == "error"
    assert failed.error == "TrialDiverged: diverged at epoch 1"


def test_results_json_and_csv_round_trip():
    done = res.TrialRecord.from_spec(SPEC, "r/bp-seed2").add_history(epochs(50.0, 60.0))
    done.stopped_by = "finished"
    waiting = res.TrialRecord.from_spec({**SPEC, "trial": {"name": "other", "index": 4}})
    waiting.stopped_by = res.INTERRUPTED
    text = res.results_json("exp", "r", 12.5, [done, waiting], "0.2.0")
    data = json.loads(text)  # strict JSON: NaN became null
    assert "NaN" not in text and data["trials"][1]["best_val_acc"] is None
    assert data["trials"][0]["status"] == "finished" and "history" not in data["trials"][0]
    # an interrupted trial may have finished since: only settled verdicts are kept
    assert res.settled_stop_reasons(text) == {"bp-seed2": "finished"}
    rows = list(csv.DictReader(io.StringIO(res.results_csv([done, waiting]))))
    assert [r["name"] for r in rows] == ["bp-seed2", "other"]
    assert rows[0]["techniques"] == "blurpool+Mine" and json.loads(rows[0]["choices"]) == {"x": 1}
    assert list(rows[0]) == res.CSV_COLUMNS


def test_settled_reasons_read_effray_0_1_results():
    old = {"trials": [{"name": "a", "stopped_by": "error: TrialDiverged: x"}, {"name": "b"}]}
    assert res.settled_stop_reasons(json.dumps(old)) == {"a": "error"}
    assert res.settled_stop_reasons("not json") == {}


def test_late_gain_definition():
    assert math.isnan(res.late_gain([50.0]))
    assert res.late_gain([50.0, 60.0, 61.0, 65.0]) == pytest.approx(4.0)


def test_a_greedy_search_is_tabled_stage_by_stage_in_number_order():
    """Each stage indexes its trials from 0, so the index alone interleaves the stages."""

    def rec(name: str, stage: str, index: int) -> res.TrialRecord:
        return res.TrialRecord.from_spec(
            {"trial": {"name": name, "stage": stage, "index": index}, "train": {"epochs": 1}}
        )

    records = [rec("s10-C-30-seed0", "10-controlled_lr", 0), rec("s2-C-3-seed0", "2-norm", 0),
               rec("s1-C-2-seed0", "1-loss", 1), rec("s1-keep-seed0", "1-loss", 0),
               rec("s2-keep-seed0", "2-norm", 1)]  # fmt: skip
    ordered = [r.name for r in sorted(records, key=lambda r: r.order)]
    assert ordered == ["s1-keep-seed0", "s1-C-2-seed0", "s2-C-3-seed0", "s2-keep-seed0",
                       "s10-C-30-seed0"]  # fmt: skip
    assert res.TrialRecord.from_row(records[0].row()).stage == "10-controlled_lr"
    plain = res.TrialRecord.from_spec({"trial": {"name": "b", "index": 3}})
    assert plain.stage == "" and plain.order == (0, 3, "b")
