"""The plain loop: determinism, checkpoints, divergence, and kill-and-resume with a real SIGKILL."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from effray.checkpoint import (
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_latest,
)
from effray.local import resume_dir, train_dir
from effray.spec import spec_from_dict
from effray.train import TrialDiverged, fit

SYN = {"name": "synthetic", "train_size": 256, "val_size": 128, "size": 16}


def make_spec(**train):
    return spec_from_dict(
        {
            "name": "unit",
            "data": dict(SYN),
            "model": {"name": "paper_mnist_1p5k_dw"},
            "train": {"epochs": 2, "batch_size": 64, "lr": 0.05, "latency_repeats": 1, **train},
        }
    )


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_identical(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_fit_reports_once_per_epoch_with_all_metrics(tmp_path):
    calls = []
    result = fit(
        make_spec(epochs=3), report=lambda m, c: calls.append((m, c)), checkpoint_dir=tmp_path
    )
    assert [m["epoch"] for m, _ in calls] == [1, 2, 3]
    for m, ckpt in calls:
        for key in ("train/loss", "train/acc", "val/loss", "val/acc", "lr", "time/epoch_s"):
            assert key in m
        assert m["train/samples_per_s"] > 0
        assert ckpt is not None and ckpt.name.startswith("checkpoint-epoch")
    final = result.final
    assert final["model/params"] == 1560
    assert final["model/size_kb"] > 0 and final["model/flops"] > 0
    assert final["model/latency_s"] > 0 and final["model/latency_images"] == 128
    assert result.stop_reason == "finished"


def test_only_the_last_report_says_why_the_fit_stopped():
    calls = []
    result = fit(make_spec(epochs=3, latency_repeats=0), report=lambda m, c: calls.append(m))
    assert [m.get("stop_reason") for m in calls] == [None, None, "finished"]
    assert result.stop_reason == "finished" and result.history[-1]["stop_reason"] == "finished"


def test_the_last_report_carries_the_stop_reason_a_technique_set():
    spec = make_spec(epochs=5, latency_repeats=0)
    stop = {"kind": "early_stopping", "patience": 1, "metric": "train/acc", "mode": "max"}
    spec = spec_from_dict(
        {**spec.model_dump(mode="json"), "techniques": [{**stop, "min_delta": 100}]}
    )
    calls = []
    result = fit(spec, report=lambda m, c: calls.append(m))
    assert [m.get("stop_reason") for m in calls] == [None, "early_stopping"]
    assert result.stop_reason == "early_stopping"


def test_a_resumed_fit_that_is_complete_reports_nothing(tmp_path):
    spec = make_spec(epochs=2, latency_repeats=0)
    fit(spec, checkpoint_dir=tmp_path)
    calls = []
    result = fit(spec, report=lambda m, c: calls.append(m), resume_from=tmp_path)
    assert calls == [] and result.history[-1]["stop_reason"] == "finished"


def test_synthetic_data_is_learnable():
    spec = make_spec(epochs=4, batch_size=32)
    spec.data.train_size = 1024
    result = fit(spec)
    assert result.best_val_acc > 50  # 10 classes: chance is 10%


def test_same_seed_gives_bitwise_identical_weights():
    a = weights(fit(make_spec()).model)
    b = weights(fit(make_spec()).model)
    assert_identical(a, b)
    c = weights(fit(make_spec(seed=1)).model)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_checkpoints_are_atomic_pruned_and_safe(tmp_path):
    fit(make_spec(epochs=3), checkpoint_dir=tmp_path)
    files = list_checkpoints(tmp_path)
    assert [f.name for f in files] == ["checkpoint-epoch0002.pt", "checkpoint-epoch0003.pt"]
    assert not list(tmp_path.glob("*.tmp"))
    payload = load_checkpoint(files[-1])
    for key in ("model", "optimizer", "techniques", "rng", "epoch", "spec", "effray_version"):
        assert key in payload
    assert payload["spec"]["train"]["epochs"] == 3


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path):
    fit(make_spec(epochs=3), checkpoint_dir=tmp_path)
    newest = list_checkpoints(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:100])  # truncated, as by a crash mid-copy
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        loaded = load_latest(tmp_path)
    assert loaded.payload["epoch"] == 2
    assert loaded.skipped and loaded.skipped[0][0] == newest


def test_unsafe_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "checkpoint-epoch0001.pt"
    torch.save({"model": Evil(), "spec": {}}, path)
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(path)


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint-epoch"):
        load_latest(tmp_path)


def test_divergence_stops_with_epoch_and_step():
    with pytest.raises(
        TrialDiverged, match=r"diverged at epoch 1, step \d+ \(loss (nan|inf)\)"
    ) as info:
        fit(make_spec(lr=1e30, momentum=0.0, weight_decay=0.0))
    assert info.value.stop_reason == "diverged"


def test_resume_in_process_is_exact(tmp_path):
    straight = weights(fit(make_spec(epochs=4)).model)
    train_dir(make_spec(epochs=2), tmp_path / "t")
    result = resume_dir(tmp_path / "t", epochs=4)
    assert_identical(straight, weights(result.model))
    lines = (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3, 4]


def _write_spec(path: Path, epochs: int, techniques: list | None = None) -> Path:
    raw = {
        "techniques": techniques or [],
        "name": "killme",
        "data": {**SYN, "train_size": 2048},
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": epochs, "batch_size": 32, "latency_repeats": 0, "threads": 1},
    }
    path.write_text(yaml.safe_dump(raw))
    return path


def _effray(*args, **kw):
    return subprocess.Popen(
        [sys.executable, "-m", "effray", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


MID_SWA = [{"kind": "swa", "start": 0.5}, {"kind": "one_cycle"}, {"kind": "sam"}]


@pytest.mark.slow
@pytest.mark.parametrize("techniques", [[], MID_SWA], ids=["plain", "swa+one_cycle+sam"])
def test_sigkill_then_resume_gives_identical_weights(tmp_path, techniques):
    """4 epochs straight == 2 epochs + SIGKILL of the process + `effray resume` to 4."""
    spec_path = _write_spec(tmp_path / "spec.yaml", epochs=4, techniques=techniques)
    straight = tmp_path / "straight"
    proc = _effray("train", str(spec_path), "--out", str(straight))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out

    killed = tmp_path / "killed"
    proc = _effray("train", str(spec_path), "--out", str(killed))
    deadline = time.time() + 600
    while (
        time.time() < deadline and not (killed / "checkpoints" / "checkpoint-epoch0002.pt").exists()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    done = [p.name for p in list_checkpoints(killed)]
    assert "checkpoint-epoch0004.pt" not in done, "the process finished before it was killed"

    proc = _effray("resume", str(killed))
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert "resuming" in out

    a = load_checkpoint(list_checkpoints(straight)[-1])["model"]
    b = load_checkpoint(list_checkpoints(killed)[-1])["model"]
    assert_identical(a, b)


def test_plugin_technique_by_import_path(tmp_path, monkeypatch):
    (tmp_path / "my_effray_plugin.py").write_text(
        "from typing import Literal\n"
        "from effray.techniques import Technique\n"
        "class CountSteps(Technique):\n"
        "    kind: str = 'my_effray_plugin:CountSteps'\n"
        "    scale: float = 1.0\n"
        "    def after_step(self, state):\n"
        "        state.logs['plugin/steps'] = state.logs.get('plugin/steps', 0) + self.scale\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = spec_from_dict(
        {
            "name": "plugin",
            "data": dict(SYN),
            "techniques": [{"kind": "my_effray_plugin:CountSteps", "scale": 2.0}],
            "train": {"epochs": 1, "batch_size": 64, "latency_repeats": 0},
        }
    )
    assert type(spec.techniques[0]).__name__ == "CountSteps"
    result = fit(spec)
    assert result.final["plugin/steps"] == 2.0 * 4  # 256 images / 64 per step


# ---------------------------------------------------------------------------------
# Recorded weights: a refactor of the loop or the techniques must not move one bit
# ---------------------------------------------------------------------------------

DIGESTS = Path(__file__).resolve().parent / "data" / "fit_digests.json"
DIGEST_RUNS = {  # name -> techniques; each a 3-epoch fixed-seed fit on synthetic data
    "baseline": [],
    "label_smoothing+mixup+cutout": [
        {"kind": "label_smoothing"},
        {"kind": "mixup"},
        {"kind": "cutout", "size": 6},
    ],
    "swa+one_cycle": [{"kind": "swa", "start": 0.5}, {"kind": "one_cycle"}],
    "sam+label_smoothing": [{"kind": "sam"}, {"kind": "label_smoothing"}],
}


def weights_digest(techniques: list[dict]) -> str:
    """SHA-256 of the final state_dict (names and raw tensor bytes, in order)."""
    spec = spec_from_dict(
        {
            "name": "digest",
            "data": {**SYN, "train_size": 512},
            "model": {"name": "paper_mnist_1p5k_dw"},
            "train": {"epochs": 3, "batch_size": 64, "latency_repeats": 0, "threads": 1},
            "techniques": techniques,
        }
    )
    h = hashlib.sha256()
    for name, tensor in fit(spec).model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def machine() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu": torch.backends.cpu.get_cpu_capability()}


@pytest.mark.parametrize("name", sorted(DIGEST_RUNS))
def test_final_weights_match_the_recorded_digest(name):
    recorded = json.loads(DIGESTS.read_text())
    if recorded["machine"] != machine():
        pytest.skip(f"digests were recorded on {recorded['machine']}, this is {machine()}")
    assert weights_digest(DIGEST_RUNS[name]) == recorded["digests"][name]


if __name__ == "__main__":  # re-record: python tests/test_train.py (only after a deliberate change)
    digests = {name: weights_digest(t) for name, t in DIGEST_RUNS.items()}
    DIGESTS.parent.mkdir(exist_ok=True)
    DIGESTS.write_text(json.dumps({"machine": machine(), "digests": digests}, indent=2) + "\n")
