"""ASHA's savings: epochs spent vs the full grid, and whether it kept the best config.

    $ python benchmarks/asha_savings.py                    # 8 learning rates x 9 epochs
    $ python benchmarks/asha_savings.py --epochs 6 --train-size 2000

The same grid runs twice through `effray run` (subprocesses, local Ray, 2 CPUs):

1. full: `search.asha: null`, every config trains all epochs. The best config is the
   one with the highest val/acc after the last epoch (what ASHA compares at max_t);
   the best-epoch winner is shown too.
2. asha: ASHA on val/acc (mode max, grace period 1 epoch, reduction factor 3; rungs at
   1, 3, 9 epochs for 9 epochs), everything else identical.

Reported: the epochs ASHA spent (sum of epochs run) vs configs x epochs, the wall time of
both runs, whether the full run's best config ran to the end under ASHA, and whether
ASHA's best finished trial is that config. Trials are deterministic (same seed, 1 thread),
so every epoch ASHA ran should match the full run's number for that epoch; the script
checks this and says so.

Data: a Fashion-MNIST subset (real, /usr/share/datasets/fashion-mnist), the 1.5K net, SGD
(momentum 0.9) with learning rates 0.001 … 0.5. Read with effray.report.load_experiment.
Results: benchmarks/results/asha_savings.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from common import effray_run, machine, markdown_table, write_json

LEARNING_RATES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5]


def spec_dict(name: str, epochs: int, train_size: int, asha: bool) -> dict:
    return {
        "name": name,
        "data": {"name": "fashion_mnist", "train_subset": train_size, "val_subset": 1000},
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": epochs, "batch_size": 128, "threads": 1, "latency_repeats": 0},
        "search": {
            "space": {"train.lr": {"grid": LEARNING_RATES}},
            "asha": (
                {"metric": "val/acc", "mode": "max", "grace_period": 1, "reduction_factor": 3}
                if asha
                else None
            ),
        },
        "resources": {"cpu": 1, "gpu": 0},
        "wandb": {"mode": "disabled"},
    }


def lr_of(record) -> float:
    return float(record.choices["train.lr"])


def main() -> None:
    from effray.report import load_experiment

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--epochs", type=int, default=9, help="max epochs per config")
    p.add_argument("--train-size", type=int, default=3000, help="Fashion-MNIST train images")
    args = p.parse_args()

    info = machine()
    with tempfile.TemporaryDirectory(prefix="effray-bench-") as tmp:
        tmp = Path(tmp)
        print(f"full grid: {len(LEARNING_RATES)} learning rates x {args.epochs} epochs …")
        full_dir, full_wall = effray_run(
            spec_dict("grid-full", args.epochs, args.train_size, asha=False), tmp
        )
        print(f"  {full_wall:.0f} s")
        print("the same grid under ASHA …")
        asha_dir, asha_wall = effray_run(
            spec_dict("grid-asha", args.epochs, args.train_size, asha=True), tmp
        )
        print(f"  {asha_wall:.0f} s")
        full = {lr_of(r): r for r in load_experiment(full_dir)}
        asha = {lr_of(r): r for r in load_experiment(asha_dir)}

    best_lr = max(full, key=lambda lr: full[lr].final_val_acc)
    best_epoch_lr = max(full, key=lambda lr: full[lr].best_val_acc)
    finished = {lr: r for lr, r in asha.items() if r.epochs_run == args.epochs}
    asha_best_lr = max(finished, key=lambda lr: finished[lr].final_val_acc) if finished else None
    spent = sum(r.epochs_run for r in asha.values())
    train_full = sum(r.train_time_s for r in full.values())  # the epochs' training loops
    train_asha = sum(r.train_time_s for r in asha.values())
    grid = len(LEARNING_RATES) * args.epochs
    mismatches = [
        (lr, m["epoch"])
        for lr, r in asha.items()
        for m in r.history
        if abs(m["val/acc"] - full[lr].history[m["epoch"] - 1]["val/acc"]) > 1e-9
    ]

    rows = []
    for lr in LEARNING_RATES:
        f, a = full[lr], asha[lr]
        rows.append(
            [
                f"{lr:g}",
                f"{f.final_val_acc:.2f}",
                f"{f.best_val_acc:.2f}",
                f"{a.epochs_run}/{args.epochs}",
                a.stopped_by,
                f"{a.final_val_acc:.2f}",
                ("best (full run)" if lr == best_lr else "")
                + (" · ASHA's best" if lr == asha_best_lr else ""),
            ]
        )
    print()
    print(
        f"ASHA on {len(LEARNING_RATES)} learning rates, Fashion-MNIST {args.train_size:,} "
        f"train / 1,000 val images, 1.5K net, {args.epochs} epochs max"
    )
    headers = ["lr", "full: final val acc %", "full: best-epoch %", "ASHA epochs"]
    headers += ["ASHA stopped by", "ASHA: last val acc %", ""]
    print(markdown_table(headers, rows))
    summary = [
        ["epochs: ASHA / full grid", f"{spent} / {grid} ({spent / grid:.0%}, saved {grid - spent})"],
        ["wall time (`effray run`): ASHA / full grid", f"{asha_wall:.0f} s / {full_wall:.0f} s ({asha_wall / full_wall:.0%})"],
        ["Σ training-loop time: ASHA / full grid", f"{train_asha:.0f} s / {train_full:.0f} s ({train_asha / train_full:.0%})"],
        ["best config (full run, final epoch)", f"lr {best_lr:g} ({full[best_lr].final_val_acc:.2f}%)"],
        ["best config (full run, best epoch)", f"lr {best_epoch_lr:g} ({full[best_epoch_lr].best_val_acc:.2f}%)"],
        ["ASHA ran the best config to the end", "yes" if best_lr in finished else "no"],
        ["ASHA's best finished trial is the best config", "yes" if asha_best_lr == best_lr else f"no (lr {asha_best_lr:g})" if asha_best_lr is not None else "no trial finished"],
        ["ASHA epochs identical to the full run's", "yes" if not mismatches else f"no ({len(mismatches)} epochs differ)"],
    ]  # fmt: skip
    print()
    print(markdown_table(["ASHA savings", "value"], summary))
    path = write_json(
        "asha_savings",
        {
            "benchmark": "asha_savings",
            "command": "python benchmarks/asha_savings.py " + " ".join(sys.argv[1:]),
            "spec_full": spec_dict("grid-full", args.epochs, args.train_size, asha=False),
            "spec_asha": spec_dict("grid-asha", args.epochs, args.train_size, asha=True),
            "machine": info,
            "epochs_asha": spent,
            "epochs_full_grid": grid,
            "wall_s_full": full_wall,
            "wall_s_asha": asha_wall,
            "train_loop_s_full": train_full,
            "train_loop_s_asha": train_asha,
            "best_lr_final_epoch": best_lr,
            "best_lr_best_epoch": best_epoch_lr,
            "asha_kept_best": best_lr in finished,
            "asha_best_lr": asha_best_lr,
            "identical_epochs": not mismatches,
            "mismatched_epochs": mismatches,
            "configs": [
                {
                    "lr": lr,
                    "full_val_acc": [m["val/acc"] for m in full[lr].history],
                    "asha_val_acc": [m["val/acc"] for m in asha[lr].history],
                    "asha_stopped_by": asha[lr].stopped_by,
                }
                for lr in LEARNING_RATES
            ],
        },
    )
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
