"""Ray overhead: `effray run` of N short trials vs the sum of their fit times / parallelism.

    $ python benchmarks/ray_overhead.py                     # 8 trials x 3 epochs
    $ python benchmarks/ray_overhead.py --trials 16 --epochs 5

What a user waits for, end to end: the wall time of the command `effray run SPEC`
(a subprocess: Python start, imports, a local Ray started and stopped, every trial,
results written), against the ideal without Ray: each trial's `effray.train.fit`
timed in this process one after another (data built, model facts, every epoch and
validation), summed and divided by the parallelism Ray gets (trials at once = CPUs
// resources.cpu, at most N). The fit times are measured before and after the Ray run
(A-B-A) and averaged, so a change in machine load during the benchmark shows up as the
difference between the two.

Trials: synthetic 1x28x28 data (2,048 train / 512 val images), the 1.5K net, 1 torch
thread and 1 CPU per trial, seeds 0..N-1 (grid search, no ASHA), W&B off.
Results: benchmarks/results/ray_overhead_<N>x<epochs>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, machine, markdown_table, write_json


def spec_dict(trials: int, epochs: int) -> dict:
    return {
        "name": "ray-overhead",
        "data": {"name": "synthetic", "train_size": 2048, "val_size": 512, "size": 28},
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": epochs, "batch_size": 128, "threads": 1, "latency_repeats": 1},
        "search": {"space": {"train.seed": {"grid": list(range(trials))}}, "asha": None},
        "resources": {"cpu": 1, "gpu": 0},
        "wandb": {"mode": "disabled"},
    }


def fit_times(raw: dict) -> list[float]:
    """Wall seconds of `fit` for every trial of the spec, one after another."""
    from effray.spec import expand, spec_from_dict
    from effray.train import fit

    out = []
    for trial in expand(spec_from_dict(raw)):
        start = time.perf_counter()
        fit(trial)
        out.append(time.perf_counter() - start)
    return out


def effray_run(spec_path: Path, storage: Path) -> tuple[float, int, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "160", "NO_COLOR": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "effray", "run", str(spec_path), "--storage", str(storage)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    return time.perf_counter() - start, proc.returncode, proc.stdout + proc.stderr


def import_seconds() -> float:
    """Python start + `import effray.cli, effray.tune` (ray, torch) in a fresh process."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import effray.cli, effray.tune"], check=True, cwd=ROOT)
    return time.perf_counter() - start


def ray_trial_seconds(experiment: Path) -> list[dict[str, float]]:
    """Ray's own timings per trial: time_total_s, and the first result's time_this_iter_s
    (worker start or reuse, imports, data, model facts and epoch 1) vs fit's epoch-1 time."""
    out = []
    for result in sorted(experiment.glob("*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        if rows:
            out.append(
                {
                    "trial": result.parent.name,
                    "time_total_s": float(rows[-1].get("time_total_s", 0.0)),
                    "first_result_s": float(rows[0].get("time_this_iter_s", 0.0)),
                    "fit_epoch1_train_s": float(rows[0].get("time/epoch_s", 0.0)),
                }
            )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=8, help="N trials (seeds 0..N-1)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per trial")
    args = p.parse_args()

    info = machine()
    raw = spec_dict(args.trials, args.epochs)
    cpus = os.cpu_count() or 1
    parallel = min(args.trials, int(cpus // raw["resources"]["cpu"]))
    with tempfile.TemporaryDirectory(prefix="effray-bench-") as tmp:
        spec_path = Path(tmp) / "ray-overhead.yaml"
        spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        print(f"fit, {args.trials} trials one after another (before) …")
        before = fit_times(raw)
        print(f"  sum {sum(before):.1f} s")
        print(f"effray run {spec_path.name} ({args.trials} trials, {parallel} at a time) …")
        wall, rc, output = effray_run(spec_path, Path(tmp) / "runs")
        print(f"  {wall:.1f} s, exit code {rc}")
        if rc != 0:
            print(output)
            raise SystemExit(f"effray run failed with exit code {rc}")
        experiment = Path(tmp) / "runs" / raw["name"]
        results = json.loads((experiment / "results.json").read_text())
        ray_seconds = ray_trial_seconds(experiment)
        imports = import_seconds()
        print(f"fit, {args.trials} trials one after another (after) …")
        after = fit_times(raw)
        print(f"  sum {sum(after):.1f} s")

    fit_sum = (sum(before) + sum(after)) / 2
    ideal = fit_sum / parallel
    tune_wall = float(results.get("wall_s", float("nan")))
    firsts = sorted(t["first_result_s"] for t in ray_seconds) or [float("nan")]
    first = [firsts[0], firsts[len(firsts) // 2], firsts[-1]]
    rows = [
        ["trials x epochs", f"{args.trials} x {args.epochs}"],
        ["parallelism (CPUs // cpu per trial)", f"{parallel} ({cpus} CPUs)"],
        ["Σ fit wall time, before / after Ray", f"{sum(before):.1f} s / {sum(after):.1f} s"],
        ["ideal = Σ fit / parallelism", f"{ideal:.1f} s"],
        ["`effray run` wall time (command, end to end)", f"{wall:.1f} s"],
        ["  of which inside run_experiment (Ray start → stop)", f"{tune_wall:.1f} s"],
        ["  of which Python start + imports (measured apart)", f"{imports:.1f} s"],
        ["overhead = effray run − ideal", f"{wall - ideal:.1f} s ({(wall - ideal) / args.trials:.2f} s per trial)"],
        ["effray run / ideal", f"{wall / ideal:.2f}×"],
        ["Σ Ray trial time_total_s (in Ray, in parallel)", f"{sum(t['time_total_s'] for t in ray_seconds):.1f} s"],
        ["first result per trial (Ray time_this_iter_s), min / median / max", " / ".join(f"{v:.1f} s" for v in first)],
    ]  # fmt: skip
    print()
    print(markdown_table(["Ray overhead", "value"], rows))
    path = write_json(
        f"ray_overhead_{args.trials}x{args.epochs}",
        {
            "benchmark": "ray_overhead",
            "command": "python benchmarks/ray_overhead.py " + " ".join(sys.argv[1:]),
            "spec": raw,
            "machine": info,
            "parallelism": parallel,
            "fit_seconds_before": before,
            "fit_seconds_after": after,
            "fit_sum_mean_s": fit_sum,
            "ideal_s": ideal,
            "effray_run_wall_s": wall,
            "run_experiment_wall_s": tune_wall,
            "python_start_and_imports_s": imports,
            "overhead_s": wall - ideal,
            "overhead_per_trial_s": (wall - ideal) / args.trials,
            "ratio": wall / ideal,
            "ray_trials": ray_seconds,
            "trial_outcomes": [
                {k: t[k] for k in ("name", "stopped_by", "epochs_run")} for t in results["trials"]
            ],
        },
    )
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
