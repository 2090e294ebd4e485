"""`effray report` on real experiment directories: finished, partial, restored, one trial.

Every directory here is written by actually training trials (effray.local.train_dir on
a tiny synthetic spec expanded by effray.spec.expand); nothing is hand-made except where
a test says so (a half-written metrics line, a trial that has not reported yet).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from effray import report as rep
from effray.checkpoint import list_checkpoints
from effray.cli import app
from effray.local import resume_dir, train_dir
from effray.spec import expand, spec_from_dict, to_yaml

runner = CliRunner()
ENV = {"COLUMNS": "240", "NO_COLOR": "1"}
TECHNIQUES = ["random_crop", "horizontal_flip"]
GROUPS = ["baseline", *TECHNIQUES]
REFERENCE = {"baseline": 98.35, "random_crop": 98.9}  # made-up "paper" numbers for the column


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], env=ENV)


def tiny_spec(**over):
    raw = {
        "name": "report-test",
        "data": {"name": "synthetic", "train_size": 256, "val_size": 128, "size": 16},
        "model": {"name": "paper_mnist_1p5k_dw"},
        # threads 1: two threads on a shared 2-core machine are many times slower
        "train": {"epochs": 2, "batch_size": 32, "lr": 0.1, "threads": 1, "latency_repeats": 1},
        "techniques": [{"kind": k} for k in TECHNIQUES],
        "ablation": "one_at_a_time",
        "search": {"space": {"train.seed": {"grid": [0, 1]}}, "asha": None},
        "reference": REFERENCE,
        "wandb": {"mode": "disabled"},
    }
    raw.update(over)
    return spec_from_dict(raw)


class Interrupted(Exception):
    """Stands in for a killed process: raised from the per-epoch callback."""


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """3 technique sets x 2 seeds, 2 epochs each, trained into one experiment directory."""
    root = tmp_path_factory.mktemp("finished") / "report-test"
    for trial in expand(tiny_spec()):
        train_dir(trial, root / trial.trial.name)
    return root


@pytest.fixture(scope="module")
def partial(finished, tmp_path_factory) -> Path:
    """The finished experiment plus a third baseline seed killed after epoch 1 (its last
    line half written) and a trial that has not reported an epoch yet."""
    root = tmp_path_factory.mktemp("partial") / "report-test"
    shutil.copytree(finished, root)
    spec = tiny_spec(search={"space": {"train.seed": {"grid": [2]}}, "asha": None})
    killed, waiting = expand(spec)[0], expand(spec)[1]

    def kill_after_first_epoch(metrics, checkpoint):
        raise Interrupted

    with pytest.raises(Interrupted):
        train_dir(killed, root / killed.trial.name, on_epoch=kill_after_first_epoch)
    with open(root / killed.trial.name / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 2, "val/a')  # the line being written when we looked
    (root / waiting.trial.name).mkdir()
    (root / waiting.trial.name / "trial_spec.yaml").write_text(to_yaml(waiting))
    return root


def metrics_lines(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "metrics.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------------
# finished experiment
# ---------------------------------------------------------------------------------


def test_load_finished_experiment(finished):
    records = rep.load_experiment(finished)
    assert [r.group for r in records] == [g for g in GROUPS for _ in (0, 1)]
    assert [r.seed for r in records] == [0, 1] * 3
    for r in records:
        lines = metrics_lines(Path(r.path))
        accs = [m["val/acc"] for m in lines]
        assert r.epochs_run == 2 and r.stopped_by == "finished"
        assert r.best_val_acc == max(accs) and r.final_val_acc == accs[-1]
        assert r.best_epoch == lines[int(np.argmax(accs))]["epoch"]
        assert r.techniques == ([] if r.group == "baseline" else [r.group])
        assert r.params == 1560 and r.size_kb > 0 and r.flops > 0
        assert r.latency_s > 0 and r.latency_images == 128
        assert [m["epoch"] for m in r.history] == [1, 2]
        assert r.late_gain == pytest.approx(max(accs) - accs[0])  # last quarter = epoch 2


def test_summary_mean_std_match_numpy(finished):
    records = rep.load_experiment(finished)
    rows = rep.summarize(records)
    assert [r.group for r in rows] == GROUPS
    base = np.mean([r.best_val_acc for r in records if r.group == "baseline"])
    for row in rows:
        best = [r.best_val_acc for r in records if r.group == row.group]
        final = [r.final_val_acc for r in records if r.group == row.group]
        assert row.n == row.n_trials == 2
        assert row.val_acc_mean == pytest.approx(np.mean(best))
        assert row.val_acc_std == pytest.approx(np.std(best, ddof=1))
        assert row.final_acc_mean == pytest.approx(np.mean(final))
        assert row.final_acc_std == pytest.approx(np.std(final, ddof=1))
        assert row.best_val_acc == max(best)
        assert row.diff_to_baseline == pytest.approx(np.mean(best) - base)
        assert row.paper == REFERENCE.get(row.group)
        if row.paper is not None:
            assert row.diff_to_paper == pytest.approx(np.mean(best) - row.paper)
        else:
            assert row.diff_to_paper is None
        assert row.stopped_by == {"finished": 2}
        assert (row.epochs_min, row.epochs_max, row.epochs_planned) == (2, 2, 2)
        assert row.params == 1560
        late = [r.late_gain for r in records if r.group == row.group]
        assert row.late_gain == pytest.approx(np.mean(late)) and row.late_gain >= 0


def test_cli_table(finished):
    result = invoke("report", finished)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for group in GROUPS:
        assert group in out
    for header in ("val acc %", "Δ base", "paper", "params", "latency s", "stopped by"):
        assert header in out
    assert "report-test: 6 trials, 3 technique sets" in out
    assert "finished 2" in out and "1,560" in out and "98.35" in out


def test_cli_markdown(finished):
    result = invoke("report", finished, "--format", "markdown")
    assert result.exit_code == 0, result.output
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 2 + len(GROUPS)
    headers = [c.strip() for c in table[0].strip("|").split("|")]
    assert headers[:3] == ["technique set", "n", "val acc %"] and "paper" in headers
    rows = rep.summarize(rep.load_experiment(finished))
    for line, row in zip(table[2:], rows, strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == row.group
        assert cells[2] == f"{row.val_acc_mean:.2f} ± {row.val_acc_std:.2f}"
    assert "best-epoch validation accuracy" in result.stdout


def test_cli_plots_are_real_pictures(finished, tmp_path):
    result = invoke("report", finished, "--format", "markdown", "--plots", tmp_path / "plots")
    assert result.exit_code == 0, result.output
    for name in ("val_acc_curves.png", "acc_vs_params.png"):
        path = tmp_path / "plots" / name
        with Image.open(path) as im:
            assert im.format == "PNG" and im.size == (1000, 500)
            pixels = np.asarray(im.convert("RGB"))
        assert pixels.std() > 0
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 10  # lines, text, bands
        assert str(path) in result.stderr


def test_cli_csv_and_json_carry_the_numbers(finished):
    rows = {r.group: r for r in rep.summarize(rep.load_experiment(finished))}
    result = invoke("report", finished, "--format", "csv")
    assert result.exit_code == 0, result.output
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [p["group"] for p in parsed] == GROUPS
    for p in parsed:
        assert float(p["val_acc_mean"]) == pytest.approx(rows[p["group"]].val_acc_mean)
        assert float(p["val_acc_std"]) == pytest.approx(rows[p["group"]].val_acc_std)
        assert p["stopped_by"] == "finished:2"
    assert parsed[2]["paper"] == ""  # horizontal_flip has no reference number
    result = invoke("report", finished, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [g["group"] for g in doc["groups"]] == GROUPS
    assert doc["groups"][0]["val_acc_mean"] == pytest.approx(rows["baseline"].val_acc_mean)
    assert len(doc["trials"]) == 6 and "history" not in doc["trials"][0]


def test_cli_sort(finished):
    rows = rep.summarize(rep.load_experiment(finished))
    by_acc = sorted(rows, key=lambda r: r.val_acc_mean, reverse=True)
    result = invoke("report", finished, "--format", "csv", "--sort", "acc")
    assert result.exit_code == 0, result.output
    order = [p["group"] for p in csv.DictReader(io.StringIO(result.stdout))]
    assert order == [r.group for r in by_acc]
    result = invoke("report", finished, "--format", "csv", "--sort", "-acc")
    assert [p["group"] for p in csv.DictReader(io.StringIO(result.stdout))] == order[::-1]
    # groups without a paper number sort last whatever the direction
    assert rep.sort_rows(rows, "paper")[-1].group == "horizontal_flip"
    assert rep.sort_rows(rows, "-paper")[-1].group == "horizontal_flip"
    bad = invoke("report", finished, "--sort", "acx")
    assert bad.exit_code == 2
    assert "cannot sort by 'acx'" in bad.output and "did you mean 'acc'?" in bad.output


def test_cli_bad_format(finished):
    result = invoke("report", finished, "--format", "html")
    assert result.exit_code == 2 and "allowed table, markdown, csv, json" in result.output


# ---------------------------------------------------------------------------------
# partial, restored, single trial, nothing
# ---------------------------------------------------------------------------------


def test_partial_experiment(partial, tmp_path):
    records = {r.name: r for r in rep.load_experiment(partial)}
    assert len(records) == 8
    killed, waiting = records["baseline-seed2"], records["random_crop-seed2"]
    assert killed.epochs_run == 1 and killed.epochs_planned == 2
    assert killed.stopped_by == rep.RUNNING
    assert [m["epoch"] for m in killed.history] == [1]  # the half-written line is skipped
    assert waiting.stopped_by == rep.PENDING and waiting.history == []
    rows = {r.group: r for r in rep.summarize(list(records.values()))}
    base = [r.best_val_acc for r in records.values() if r.group == "baseline"]
    assert rows["baseline"].n == 3 and rows["baseline"].n_trials == 3
    assert rows["baseline"].val_acc_mean == pytest.approx(np.mean(base))
    assert rows["baseline"].val_acc_std == pytest.approx(np.std(base, ddof=1))
    assert rows["baseline"].stopped_by == {"finished": 2, rep.RUNNING: 1}
    assert (rows["baseline"].epochs_min, rows["baseline"].epochs_max) == (1, 2)
    assert rows["random_crop"].n == 2 and rows["random_crop"].n_trials == 3
    assert rows["random_crop"].stopped_by == {"finished": 2, rep.PENDING: 1}

    result = invoke("report", partial, "--format", "markdown", "--plots", tmp_path)
    assert result.exit_code == 0, result.output
    assert "| baseline | 3 |" in result.stdout and "| 1–2/2 |" in result.stdout
    assert "| random_crop | 2/3 |" in result.stdout and "pending" in result.stdout
    assert (tmp_path / "val_acc_curves.png").stat().st_size > 0
    table = invoke("report", partial)
    assert table.exit_code == 0 and "running/stopped" in table.stdout


def test_restored_trial_keeps_the_lineage_of_its_checkpoint(finished, tmp_path):
    """Resume from an older checkpoint: epochs run again replace the lost run's lines."""
    trial = tmp_path / "baseline-seed0"
    shutil.copytree(finished / "baseline-seed0", trial)
    list_checkpoints(trial)[-1].unlink()  # the epoch-2 checkpoint is lost; epoch 1 remains
    resume_dir(trial, epochs=3)
    epochs = [m["epoch"] for m in metrics_lines(trial)]
    assert epochs == [1, 2, 2, 3]
    record = rep.load_experiment(trial)[0]
    assert [m["epoch"] for m in record.history] == [1, 2, 3]
    assert record.history[1] == metrics_lines(trial)[2]  # the re-run epoch 2, not the lost one
    assert record.epochs_run == record.epochs_planned == 3 and record.stopped_by == "finished"


def test_early_stopping_is_recognised_without_results_json(tmp_path):
    spec = tiny_spec(
        techniques=[{"kind": "early_stopping", "patience": 1, "min_delta": 100.0}],
        ablation="none",
        search=None,
        train={"epochs": 4, "batch_size": 32, "threads": 1, "latency_repeats": 0},
    )
    (trial,) = expand(spec)
    train_dir(trial, tmp_path / "es")
    (record,) = rep.load_experiment(tmp_path / "es")
    assert record.epochs_run == 2 and record.epochs_planned == 4
    assert record.stopped_by == "early_stopping"
    assert np.isnan(record.latency_s)  # latency_repeats 0: not measured, shown as –
    result = invoke("report", tmp_path / "es", "--format", "markdown")
    assert result.exit_code == 0 and "early_stopping" in result.stdout


def test_experiment_named_by_its_run_manifest(finished, tmp_path):
    renamed = tmp_path / "table4-25k"
    shutil.copytree(finished, renamed)
    assert {r.experiment for r in rep.load_experiment(renamed)} == {"report-test"}
    (renamed / rep.EXPERIMENT_FILE).write_text(json.dumps({"name": "table4-25k", "trials": []}))
    assert {r.experiment for r in rep.load_experiment(renamed)} == {"table4-25k"}


def test_single_trial_directory(finished):
    result = invoke("report", finished / "random_crop-seed1", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [g["group"] for g in doc["groups"]] == ["random_crop"]
    assert doc["groups"][0]["n"] == 1 and doc["groups"][0]["val_acc_std"] is None
    assert doc["groups"][0]["diff_to_baseline"] is None  # no baseline in a lone trial


def test_missing_and_empty_directories_exit_2(tmp_path):
    result = invoke("report", tmp_path / "nope")
    assert result.exit_code == 2 and "experiment directory not found" in result.output
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    result = invoke("report", tmp_path / "empty")
    assert result.exit_code == 2 and "no trials in" in result.output
    assert "Traceback" not in result.output


def test_stop_reasons_from_results_json(finished, tmp_path):
    """results.json (written by `effray run` at the end) says why each trial stopped."""
    root = tmp_path / "exp"
    shutil.copytree(finished, root)
    (root / "results.json").write_text(
        json.dumps({"trials": [{"name": "random_crop-seed0", "stopped_by": "asha"}]})
    )
    records = {r.name: r for r in rep.load_experiment(root)}
    assert records["random_crop-seed0"].stopped_by == "asha"
    assert records["random_crop-seed1"].stopped_by == "finished"


@pytest.mark.parametrize(
    ("accs", "gain"),
    [
        ([50.0, 60.0, 70.0, 80.0], 10.0),  # 4 epochs: last quarter is epoch 4
        ([50.0, 80.0, 79.0, 79.5], 0.0),  # levelled off: the best came earlier
        ([10, 20, 30, 40, 50, 60, 70, 90], 30.0),  # 8 epochs: last quarter is epochs 7-8
        ([70.0, float("nan"), 75.0], 5.0),  # a nan epoch is skipped, not propagated
        ([70.0], float("nan")),  # one epoch: no earlier best to compare with
    ],
)
def test_late_gain_is_the_rise_of_the_best_in_the_last_quarter(accs, gain):
    got = rep.late_gain(accs)
    assert (np.isnan(got) and np.isnan(gain)) or got == pytest.approx(gain)


def test_groups_keep_distinct_styles_past_ten():
    styles = [rep.group_style(i) for i in range(40)]
    keys = {(s["color"], s["marker"], str(s["ls"])) for s in styles}
    assert len(keys) == 40 and rep.group_style(40) == rep.group_style(0)
    # 13 groups (an ablation with its combinations), as drawn in the curves plot
    records = [
        rep.TrialRecord(name=f"t{g}", group=f"g{g}", seed=0, techniques=[], path="",
                        epochs_planned=2, stopped_by="finished",
                        history=[{"epoch": 1, "val/acc": 50.0 + g}, {"epoch": 2, "val/acc": 60.0}])
        for g in range(13)
    ]  # fmt: skip
    lines = rep.curves_figure(records).axes[0].get_lines()
    drawn = {(ln.get_color(), ln.get_marker(), str(ln.get_linestyle())) for ln in lines}
    assert len(lines) == 13 and len(drawn) == 13


def test_a_long_experiment_name_stays_inside_the_plot():
    """The outside legend narrows the axes; the title must still fit the figure."""
    records = [
        rep.TrialRecord(name=f"t{g}", group=f"one_cycle+label_smoothing+sam+swa-{g}", seed=0,
                        techniques=[], path="", epochs_planned=1, stopped_by="finished",
                        experiment="table4-fashion-mnist-25k-20ep", history=[{"epoch": 1, "val/acc": 50.0}])
        for g in range(13)
    ]  # fmt: skip
    fig = rep.curves_figure(records)
    renderer = fig.canvas.get_renderer()
    texts = [*fig.texts, *(ax.title for ax in fig.axes)]
    (title,) = [t for t in texts if "table4-fashion-mnist-25k-20ep" in t.get_text()]
    box, page = title.get_window_extent(renderer), fig.bbox
    assert page.x0 <= box.x0 and box.x1 <= page.x1 and box.y1 <= page.y1


def test_frontier_keeps_only_undominated_points():
    points = [(1000, 90.0), (1500, 89.0), (2000, 92.0), (2000, 91.0), (5000, 91.5), (9000, 93)]
    assert rep.frontier(points) == [(1000, 90.0), (2000, 92.0), (9000, 93)]


# ---------------------------------------------------------------------------------
# a real `effray run`: reported while running, interrupted (Ctrl-C), restored
# ---------------------------------------------------------------------------------


def effray_cli(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "effray", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "WANDB_MODE": "disabled"},
        **kwargs,
    )


def epochs_reported(root: Path) -> int:
    return sum(len(p.read_text().splitlines()) for p in root.glob("*/metrics.jsonl"))


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory):
    """`effray run` of 2 technique sets x 2 seeds, one trial at a time, 4 epochs each:
    reported while its first trial runs, then interrupted with SIGINT, then reported
    again and `effray restore`d to the end. Yields the reports taken on the way."""
    pytest.importorskip("effray.tune")
    tmp = tmp_path_factory.mktemp("ray")
    spec = tiny_spec(
        name="ray-report",
        techniques=[{"kind": "random_crop"}],
        search={"space": {"train.seed": {"grid": [0, 1]}}, "asha": None, "max_concurrent": 1},
        train={"epochs": 4, "batch_size": 32, "lr": 0.1, "threads": 1, "latency_repeats": 1},
    )
    path = tmp / "spec.yaml"
    path.write_text(to_yaml(spec))
    root = tmp / "runs" / "ray-report"
    run = effray_cli("run", path, "--storage", tmp / "runs")
    try:
        deadline = time.monotonic() + 180
        while epochs_reported(root) < 1:
            assert run.poll() is None, run.communicate()[0]
            assert time.monotonic() < deadline, "no epoch reported within 180 s"
            time.sleep(0.2)
        running = rep.load_experiment(root)
        running_cli = invoke("report", root, "--format", "markdown")
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    interrupted = rep.load_experiment(root)
    restore = effray_cli("restore", root)
    restore_out, _ = restore.communicate(timeout=300)
    yield {
        "root": root,
        "running": running,
        "running_cli": running_cli,
        "run_rc": run.returncode,
        "run_out": out,
        "interrupted": interrupted,
        "restore_rc": restore.returncode,
        "restore_out": restore_out,
    }


@pytest.mark.ray
@pytest.mark.slow
def test_report_on_a_running_ray_experiment(ray_run):
    running = {r.name: r for r in ray_run["running"]}
    # every planned trial is listed, those without a directory yet as pending
    assert set(running) == {"baseline-seed0", "baseline-seed1", "random_crop-seed0"} | {
        "random_crop-seed1"
    }
    assert sum(r.epochs_run for r in running.values()) >= 1
    assert any(r.stopped_by == rep.PENDING for r in running.values())
    assert all(r.stopped_by in (rep.PENDING, rep.RUNNING, "finished") for r in running.values())
    assert ray_run["running_cli"].exit_code == 0, ray_run["running_cli"].output
    assert "| baseline |" in ray_run["running_cli"].stdout


@pytest.mark.ray
@pytest.mark.slow
def test_report_on_an_interrupted_ray_experiment(ray_run):
    assert ray_run["run_rc"] == 130, ray_run["run_out"]
    records = ray_run["interrupted"]
    assert len(records) == 4
    assert any(r.epochs_run < r.epochs_planned for r in records)  # something left to restore
    rows = rep.summarize(records)
    assert [r.group for r in rows] == ["baseline", "random_crop"]


@pytest.mark.ray
@pytest.mark.slow
def test_report_on_a_restored_ray_experiment(ray_run, tmp_path):
    root = ray_run["root"]
    assert ray_run["restore_rc"] == 0, ray_run["restore_out"]
    assert (root / "results.json").is_file()
    records = rep.load_experiment(root)
    assert len(records) == 4
    for r in records:
        lines = metrics_lines(Path(r.path))
        assert [m["epoch"] for m in r.history] == [1, 2, 3, 4]
        assert r.stopped_by == "finished", r
        assert r.best_val_acc == max(m["val/acc"] for m in lines if m["epoch"] <= 4)
    rows = rep.summarize(records)
    for row in rows:
        best = [r.best_val_acc for r in records if r.group == row.group]
        assert row.n == 2 and row.stopped_by == {"finished": 2}
        assert row.val_acc_mean == pytest.approx(np.mean(best))
        assert row.val_acc_std == pytest.approx(np.std(best, ddof=1))
    result = invoke("report", root, "--format", "markdown", "--plots", tmp_path)
    assert result.exit_code == 0, result.output
    assert "| baseline | 2 |" in result.stdout and "finished 2" in result.stdout
    with Image.open(tmp_path / "val_acc_curves.png") as im:
        assert im.size == (1000, 500) and np.asarray(im.convert("L")).std() > 0
