"""Training throughput of `effray.train.fit` vs a bare PyTorch loop vs the tutorial pipeline.

    $ python benchmarks/throughput.py                       # both nets, 1 thread
    $ python benchmarks/throughput.py --nets mnist --runs 3 --epochs 5 --threads 2

Three ways to train the same model on the same images, measured side by side in one
process:

- fit:      effray.train.fit on a spec with no techniques (effray's loop and its
            device-resident uint8 loader: permutation, gather, float, /255 per batch).
- bare:     a hand-written loop over the *same* uint8 tensors effray loaded (same
            permutation-and-gather batches): zero_grad, forward, cross-entropy, backward,
            step. Nothing else.
- tutorial: torchvision dataset + transforms.ToTensor() + DataLoader(shuffle=True), as in
            PyTorch's quickstart (num_workers 0 by default; --tutorial-workers to change).

Same model class and init seed, same optimizer (SGD lr 0.05, momentum 0.9, wd 5e-4),
same batch size and torch thread count. Interleaved epoch by epoch: fit's per-epoch
`report` callback (outside its timed loop) runs one epoch of the bare loop and one of
the tutorial loop, so all three see the same machine load (this machine is shared).
Images/s count training only (fit's validation pass is not in its epoch time) and leave
out each loop's first (warm-up) epoch. Each timed epoch is one repeat; reported: images/s
and the ratios fit/bare and fit/tutorial as median (min–max) over the repeats, from wall
time and from this process's CPU time (time.process_time). With 1 thread the CPU-time
ratio is the work each loop does, insensitive to other processes competing for the
cores; fit's CPU time also holds its validation pass of 100 images (against fit). With
--tutorial-workers > 0 the workers' CPU time is not counted: use the wall ratio then.

Data: the 1.5K net trains on real Fashion-MNIST (/usr/share/datasets/fashion-mnist);
CIFAR-10 is not on this machine, so the 143K net trains on random uint8 3x32x32 images
written in CIFAR-10's pickle format (torchvision's CIFAR10 reads them with its md5 check
skipped). A training subset keeps an epoch short on a small CPU; --train-size changes it.
Results: benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from common import (
    FASHION_ROOT,
    CIFAR10NoChecksum,
    fake_cifar10,
    fmt_spread,
    machine,
    markdown_table,
    spread,
    torchvision_fashion_root,
    write_json,
)

NETS = {
    "mnist": {
        "model": "paper_mnist_1p5k_dw",
        "data": "fashion_mnist",
        "train_size": 3072,  # images per epoch (a seeded subset of the 60,000)
        "label": "1.5K DW net, Fashion-MNIST (real)",
    },
    "cifar": {
        "model": "paper_cifar_143k_dw",
        "data": "cifar10",
        "train_size": 1536,  # images per epoch (random stand-in data)
        "label": "143K DW net, CIFAR-10-shaped random data",
    },
}
LR, MOMENTUM, WEIGHT_DECAY = 0.05, 0.9, 5e-4  # effray's TrainSpec defaults
VAL_SIZE = 100  # images fit validates on each epoch (outside its epoch time; kept small)


def effray_spec(net: dict, root: Path | None, args):
    from effray.spec import spec_from_dict

    data = {"name": net["data"], "train_subset": args.train_size or net["train_size"]}
    data["val_subset"] = VAL_SIZE
    if root is not None:
        data["root"] = str(root)
    return spec_from_dict(
        {
            "name": "throughput",
            "data": data,
            "model": {"name": net["model"]},
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": LR,
                "momentum": MOMENTUM,
                "weight_decay": WEIGHT_DECAY,
                "threads": args.threads,
                "device": "cpu",
                "latency_repeats": 0,
                "seed": 0,
            },
            "wandb": {"mode": "disabled"},
        }
    )


def new_model(spec, in_channels: int):
    from effray.models import build_model

    torch.manual_seed(spec.train.seed)
    return build_model(spec.model.name, num_classes=10, in_channels=in_channels)


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


class BareLoop:
    """The hand-written loop: permutation, gather, float /255, zero_grad, forward, CE,
    backward, step. One call = one epoch; returns its (wall, CPU) seconds."""

    def __init__(self, spec, x_train: torch.Tensor, y_train: torch.Tensor):
        self.x, self.y, self.bs = x_train, y_train, spec.train.batch_size
        self.model = new_model(spec, x_train.shape[1]).train()
        self.opt = sgd(self.model)
        self.gen = torch.Generator().manual_seed(0)

    def __call__(self) -> tuple[float, float]:
        model, opt, n = self.model, self.opt, len(self.x)
        start, cpu = time.perf_counter(), time.process_time()
        order = torch.randperm(n, generator=self.gen)
        for i in range(0, n, self.bs):
            idx = order[i : i + self.bs]
            x = self.x[idx].float().div_(255)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), self.y[idx])
            loss.backward()
            opt.step()
        return time.perf_counter() - start, time.process_time() - cpu


class TutorialLoop:
    """torchvision dataset + ToTensor + DataLoader(shuffle=True); the same step."""

    def __init__(self, spec, dataset, in_channels: int, workers: int):
        from torch.utils.data import DataLoader

        self.model = new_model(spec, in_channels).train()
        self.opt = sgd(self.model)
        self.loader = DataLoader(
            dataset, batch_size=spec.train.batch_size, shuffle=True, num_workers=workers
        )

    def __call__(self) -> tuple[float, float]:
        model, opt = self.model, self.opt
        start, cpu = time.perf_counter(), time.process_time()
        for x, y in self.loader:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
        return time.perf_counter() - start, time.process_time() - cpu


def measure(spec, others: dict, threads: int, log) -> dict[str, list[tuple[float, float]]]:
    """One effray fit run; after each of its epochs, one epoch of every other loop.

    fit's `report` callback runs once per epoch, outside fit's timed training loop, so
    the three loops alternate epoch by epoch (the order of the others rotates) and see
    the same machine load. Returns (wall, CPU) seconds per epoch for each loop, warm-up
    included. fit's wall seconds are its own `time/epoch_s`; its CPU seconds run from the
    end of one callback to the start of the next, so they also hold fit's small
    validation pass (VAL_SIZE images, forward only): slightly against fit.
    """
    from effray.train import fit

    seconds: dict[str, list[tuple[float, float]]] = {"fit": [], **{k: [] for k in others}}
    names = list(others)
    mark = [time.process_time()]

    def after_epoch(metrics, checkpoint) -> None:
        seconds["fit"].append((metrics["time/epoch_s"], time.process_time() - mark[0]))
        k = len(seconds["fit"])
        for name in names[k % len(names) :] + names[: k % len(names)]:
            torch.set_num_threads(threads)
            seconds[name].append(others[name]())
        log(k, {n: v[-1][0] for n, v in seconds.items()})
        mark[0] = time.process_time()

    fit(spec, report=after_epoch)
    return seconds


def tutorial_dataset(net: dict, root: Path, n: int):
    from torch.utils.data import Subset
    from torchvision import transforms

    if net["data"] == "fashion_mnist":
        from torchvision.datasets import FashionMNIST

        full = FashionMNIST(str(root), train=True, transform=transforms.ToTensor())
    else:
        full = CIFAR10NoChecksum(str(root), train=True, transform=transforms.ToTensor())
    gen = torch.Generator().manual_seed(0)
    return Subset(full, torch.randperm(len(full), generator=gen)[:n].tolist())


def bench_net(key: str, args, tmp: Path) -> dict:
    from effray.data import DataPipeline, build_data

    net = NETS[key]
    n_train = args.train_size or net["train_size"]
    if net["data"] == "cifar10":
        effray_root = tv_root = fake_cifar10(tmp / "cifar", n_train, VAL_SIZE)
    else:
        effray_root, tv_root = FASHION_ROOT, torchvision_fashion_root(tmp / "fmnist")
    spec = effray_spec(net, effray_root, args)
    bundle = build_data(spec.data, DataPipeline(), device=torch.device("cpu"), seed=0)
    x_train, y_train = bundle.x_train, bundle.y_train  # the tensors fit trains on
    dataset = tutorial_dataset(net, tv_root, len(x_train))
    channels = x_train.shape[1]
    n = len(x_train)
    rates: dict[str, list[float]] = {"fit": [], "bare": [], "tutorial": []}
    cpu_rates: dict[str, list[float]] = {"fit": [], "bare": [], "tutorial": []}
    for r in range(args.runs):
        others = {
            "bare": BareLoop(spec, x_train, y_train),
            "tutorial": TutorialLoop(spec, dataset, channels, args.tutorial_workers),
        }

        def log(epoch, last, r=r):
            shown = "  ".join(f"{k} {n / v:6.0f}" for k, v in last.items())
            warm = " (warm-up)" if epoch == 1 else ""
            print(f"  {key} run {r + 1}/{args.runs} epoch {epoch}: {shown} img/s{warm}")

        seconds = measure(spec, others, args.threads, log)
        for name, values in seconds.items():
            rates[name] += [n / wall for wall, _ in values[1:]]  # the first epoch is warm-up
            cpu_rates[name] += [n / cpu for _, cpu in values[1:]]

    def ratio(table, a, b):
        return [x / y for x, y in zip(table[a], table[b], strict=True)]

    ratios = {
        "fit/bare": ratio(rates, "fit", "bare"),
        "fit/tutorial": ratio(rates, "fit", "tutorial"),
        "fit/bare cpu": ratio(cpu_rates, "fit", "bare"),
        "fit/tutorial cpu": ratio(cpu_rates, "fit", "tutorial"),
    }
    return {
        "net": key,
        "label": net["label"],
        "model": net["model"],
        "train_images_per_epoch": len(x_train),
        "images_per_s": rates,
        "images_per_s_spread": {k: spread(v) for k, v in rates.items()},
        "images_per_cpu_s": cpu_rates,
        "images_per_cpu_s_spread": {k: spread(v) for k, v in cpu_rates.items()},
        "ratios": ratios,
        "ratios_spread": {k: spread(v) for k, v in ratios.items()},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--runs", type=int, default=3, help="fit runs per net (fresh models)")
    p.add_argument("--epochs", type=int, default=6, help="epochs per run, the first is warm-up")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads, all three")
    p.add_argument("--train-size", type=int, default=None, help="images per epoch")
    p.add_argument("--tutorial-workers", type=int, default=0, help="DataLoader num_workers")
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be at least 2 (the first is warm-up)")

    info = machine()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory(prefix="effray-bench-") as tmp:
        for key in args.nets:
            results.append(bench_net(key, args, Path(tmp)))
    wall = time.perf_counter() - started

    print()
    print(
        f"Training throughput, CPU, {args.threads} thread(s), batch {args.batch_size}, "
        f"{args.runs} runs x {args.epochs - 1} timed epochs (after 1 warm-up), interleaved "
        "epoch by epoch; median (min–max) over the timed epochs"
    )
    headers = ["net", "images/epoch", "fit img/s", "bare img/s", "tutorial img/s"]
    headers += ["fit / bare (goal ≥ 0.95)", "fit / bare, CPU time"]
    headers += ["fit / tutorial (goal ≥ 3)", "fit / tutorial, CPU time"]
    rows = []
    for r in results:
        s, q = r["images_per_s_spread"], r["ratios_spread"]
        rows.append(
            [
                r["label"],
                f"{r['train_images_per_epoch']:,}",
                fmt_spread(s["fit"], ".0f"),
                fmt_spread(s["bare"], ".0f"),
                fmt_spread(s["tutorial"], ".0f"),
                fmt_spread(q["fit/bare"], ".3f"),
                fmt_spread(q["fit/bare cpu"], ".3f"),
                fmt_spread(q["fit/tutorial"], ".2f"),
                fmt_spread(q["fit/tutorial cpu"], ".2f"),
            ]
        )
    print(markdown_table(headers, rows))
    path = write_json(
        "throughput",
        {
            "benchmark": "throughput",
            "command": "python benchmarks/throughput.py " + " ".join(_argv()),
            "settings": {
                "threads": args.threads,
                "batch_size": args.batch_size,
                "epochs_per_measurement": args.epochs,
                "warmup_epochs_excluded": 1,
                "runs": args.runs,
                "repeats_per_net": args.runs * (args.epochs - 1),
                "tutorial_workers": args.tutorial_workers,
                "optimizer": {
                    "sgd": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
                },
                "layout": "NCHW float32",
            },
            "machine": info,
            "wall_s": wall,
            "results": results,
        },
    )
    print(f"\nwall time {wall:.0f} s; results written to {path}")


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]


if __name__ == "__main__":
    main()
