"""Where fit's per-step extras go: the bare loop plus, one at a time, what fit adds.

    $ python benchmarks/fit_overhead.py                      # 1.5K net, then the 143K net
    $ python benchmarks/fit_overhead.py --rounds 9

effray.train.fit does per step what a bare loop does, plus: dense (one-hot) targets and
cross-entropy on class probabilities (so mixup and label smoothing are one code path),
and bookkeeping for its epoch metrics (loss x batch size kept per step, accuracy from the
step's logits, one finiteness check of the losses per epoch). This times three loops
over the same uint8 tensors, interleaved round by round (the order rotates), by this
process's CPU time with 1 thread:

- bare:        F.cross_entropy(model(x), labels)
- soft:        nn.CrossEntropyLoss()(model(x), one_hot(labels).float())
- soft+books:  soft, plus fit's bookkeeping

Reported: CPU seconds per epoch, median (min–max) over the rounds after the first, and
each variant's throughput relative to bare. Results: benchmarks/results/fit_overhead.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from common import fmt_spread, machine, markdown_table, spread, write_json
from torch import nn

VARIANTS = ["bare", "soft", "soft+books"]
NETS = {"paper_mnist_1p5k_dw": (1, 28, 3072), "paper_cifar_143k_dw": (3, 32, 1024)}


def make(name: str, channels: int):
    from effray.models import build_model

    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=channels).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)


def epoch(model, opt, x_all, y_all, variant: str, batch_size: int = 128) -> float:
    gen = torch.Generator().manual_seed(0)
    soft_ce = nn.CrossEntropyLoss()
    start = time.process_time()
    order = torch.randperm(len(x_all), generator=gen)
    losses: list[torch.Tensor] = []
    correct = torch.zeros((), dtype=torch.long)
    for i in range(0, len(x_all), batch_size):
        idx = order[i : i + batch_size]
        x, y = x_all[idx].float().div_(255), y_all[idx]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        if variant == "bare":
            loss = F.cross_entropy(out, y)
        else:
            loss = soft_ce(out.float(), F.one_hot(y, 10).float())
        loss.backward()
        opt.step()
        if variant == "soft+books":
            losses.append(loss.detach() * len(y))
            correct += (out.detach().argmax(1) == y).sum()
    if variant == "soft+books":
        bool(torch.isfinite(torch.stack(losses)).all())
        float(torch.stack(losses).sum()), int(correct)
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="epochs per variant; first is warm-up")
    args = p.parse_args()
    torch.set_num_threads(1)
    info = machine()
    results, rows = [], []
    for name, (channels, side, n) in NETS.items():
        gen = torch.Generator().manual_seed(0)
        x_all = torch.randint(0, 256, (n, channels, side, side), generator=gen, dtype=torch.uint8)
        y_all = torch.randint(0, 10, (n,), generator=gen)
        loops = {v: make(name, channels) for v in VARIANTS}
        seconds: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for r in range(args.rounds):
            for v in VARIANTS[r % 3 :] + VARIANTS[: r % 3]:
                seconds[v].append(epoch(*loops[v], x_all, y_all, v))
            print(
                f"  {name} round {r + 1}: "
                + "  ".join(f"{v} {seconds[v][-1]:.3f}s" for v in VARIANTS)
            )
        base = statistics.median(seconds["bare"][1:])
        for v in VARIANTS:
            s = spread(seconds[v][1:])
            rel = base / s["median"]
            results.append({"model": name, "images": n, "variant": v, "cpu_s": seconds[v], "spread": s, "relative_to_bare": rel})  # fmt: skip
            rows.append([name, f"{n:,}", v, fmt_spread(s, ".3f"), f"{rel:.3f}"])
    print()
    print(f"CPU seconds per epoch, 1 thread, batch 128, {args.rounds - 1} rounds after 1 warm-up")
    print(markdown_table(["model", "images", "variant", "CPU s/epoch", "throughput vs bare"], rows))
    path = write_json(
        "fit_overhead",
        {
            "benchmark": "fit_overhead",
            "command": "python benchmarks/fit_overhead.py " + " ".join(sys.argv[1:]),
            "machine": info,
            "results": results,
        },
    )
    print(f"\nresults written to {path}")


if __name__ == "__main__":
    main()
