"""Optuna's TPE against random search at the same budget (search.algorithm).

    $ python benchmarks/search.py                      # 12 trials, 3 repeats of each
    $ python benchmarks/search.py --trials 16 --repeats 5 --epochs 3

Both searches run through `effray run` (subprocesses, local Ray, 2 trials at a time) over
the same space as experiments/search_optuna.yaml: the 1.5K-DW net's SGD learning rate
(log-uniform 0.005-0.5), momentum (uniform 0.5-0.97) and weight decay (log-uniform
1e-6-1e-2), on a Fashion-MNIST subset (real, /usr/share/datasets/fashion-mnist). No
scheduler: every trial trains all its epochs, so the two differ only in which points
they try. Repeat r uses search seed r for both algorithms (training seed 0 throughout).

Reported per algorithm, as min / median / max over the repeats: the best val/acc (best
epoch of the best trial) after the first half of the trials and after all of them, in
the order the trials were proposed, and the wall time. TPE samples its first trials at
random before it models the results (Optuna's default is 10; here `startup_trials` is a
third of the budget, 4 of 12), and with 2 trials running at a time each proposal sees
the results of all but the running ones. The table shows what that buys at this small
budget, not in general.
Results: benchmarks/results/search.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from common import effray_run, machine, markdown_table, spread, write_json

SPACE = {
    "train.lr": {"loguniform": [0.005, 0.5]},
    "train.momentum": {"uniform": [0.5, 0.97]},
    "train.weight_decay": {"loguniform": [1.0e-6, 1.0e-2]},
}


def spec_dict(algorithm: str, seed: int, trials: int, epochs: int, train_size: int) -> dict:
    return {
        "name": f"{algorithm}-r{seed}",
        "data": {"name": "fashion_mnist", "train_subset": train_size, "val_subset": 2000},
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": epochs, "batch_size": 128, "threads": 1, "latency_repeats": 0},
        "search": {
            "algorithm": algorithm,
            "space": SPACE,
            "num_samples": trials,
            "seed": seed,
            "max_concurrent": 2,
            **({"startup_trials": max(2, trials // 3)} if algorithm == "optuna" else {}),
            "metric": "val/acc",
            "mode": "max",
            "scheduler": "none",
            "asha": None,
        },
        "resources": {"cpu": 1, "gpu": 0},
        "wandb": {"mode": "disabled"},
    }


def best_after(values: list[float], k: int) -> float:
    return max(values[:k])


def main() -> None:
    from effray.report import load_experiment

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--trials", type=int, default=12, help="trials per search (num_samples)")
    p.add_argument("--repeats", type=int, default=3, help="searches per algorithm (seeds 0..)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    p.add_argument("--train-size", type=int, default=3000, help="Fashion-MNIST train images")
    args = p.parse_args()

    info = machine()
    runs: dict[str, list[dict]] = {"random": [], "optuna": []}
    with tempfile.TemporaryDirectory(prefix="effray-bench-") as tmp:
        tmp = Path(tmp)
        for seed in range(args.repeats):
            for algorithm in runs:
                raw = spec_dict(algorithm, seed, args.trials, args.epochs, args.train_size)
                print(f"{algorithm}, seed {seed}: {args.trials} trials …", flush=True)
                path, wall = effray_run(raw, tmp)
                records = sorted(load_experiment(path), key=lambda r: r.index)
                values = [r.best_val_acc for r in records]
                assert len(values) == args.trials, (algorithm, seed, len(values))
                runs[algorithm].append(
                    {
                        "seed": seed,
                        "wall_s": wall,
                        "val_acc": values,
                        "points": [{k: r.choices.get(k) for k in SPACE} for r in records],
                    }
                )
                print(f"  {wall:.0f} s, best {max(values):.2f}%", flush=True)

    half = args.trials // 2
    rows, summary = [], {}
    for algorithm, reps in runs.items():
        first = [best_after(r["val_acc"], half) for r in reps]
        full = [best_after(r["val_acc"], args.trials) for r in reps]
        walls = [r["wall_s"] for r in reps]
        summary[algorithm] = {
            f"best_after_{half}": spread(first),
            f"best_after_{args.trials}": spread(full),
            "mean_trial_val_acc": statistics.mean(v for r in reps for v in r["val_acc"]),
            "wall_s": spread(walls),
        }
        rows.append(
            [
                algorithm,
                " / ".join(f"{v:.2f}" for v in sorted(first)),
                " / ".join(f"{v:.2f}" for v in sorted(full)),
                f"{summary[algorithm]['mean_trial_val_acc']:.2f}",
                " / ".join(f"{v:.0f}" for v in sorted(walls)),
            ]
        )
    print()
    print(
        f"TPE vs random: {args.trials} trials x {args.epochs} epochs, Fashion-MNIST "
        f"{args.train_size:,} train / 2,000 val, 1.5K-DW net, {args.repeats} repeats "
        "(min / median / max)"
    )
    headers = [
        "algorithm",
        f"best val acc % after {half} trials",
        f"after {args.trials}",
        "mean val acc % of all trials",
        "wall s",
    ]
    print(markdown_table(headers, rows))
    path = write_json(
        "search",
        {
            "benchmark": "search",
            "command": "python benchmarks/search.py " + " ".join(sys.argv[1:]),
            "spec_random": spec_dict("random", 0, args.trials, args.epochs, args.train_size),
            "spec_optuna": spec_dict("optuna", 0, args.trials, args.epochs, args.train_size),
            "machine": info,
            "summary": summary,
            "runs": runs,
        },
    )
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
