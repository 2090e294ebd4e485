"""CPU inference latency over 10,000 test images: the paper's metric (Table 3).

    $ python benchmarks/latency.py                 # both nets, 3 interleaved repeats
    $ python benchmarks/latency.py --repeats 5

The paper reports 2.52 s (1.5K DW net, MNIST) and 8.82 s (143K DW net, CIFAR-10) to
predict its 10,000 test images on "the CPU", without saying which CPU, batch size or
thread count. We time each net under stated settings with effray.metrics.cpu_latency
(the function behind every trial's `model/latency_s`): the model copied to the CPU in
eval mode, torch.inference_mode, `threads` intra-op threads, the images in batches of
`batch_size`, one warm-up pass, then one timed pass per repeat. Repeats are interleaved
across nets and settings; reported as median (min–max) seconds over the repeats.

Images: the 1.5K net predicts the real Fashion-MNIST test set (10,000 images, the
MNIST shape 1x28x28); the 143K net predicts 10,000 random 3x32x32 images (CIFAR-10 is
not on this machine; latency depends on the shape, not the pixels). Weights are the
freshly initialised ones (latency does not depend on training).
Results: benchmarks/results/latency.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from common import FASHION_ROOT, fmt_spread, machine, markdown_table, spread, write_json

NETS = {
    "paper_mnist_1p5k_dw": (1, 28, "Fashion-MNIST test set (real)"),
    "paper_cifar_143k_dw": (3, 32, "random 3x32x32 (CIFAR-10 shape)"),
}
N_IMAGES = 10_000  # the paper's test set size


def test_images(model: str) -> torch.Tensor:
    """10,000 float32 NCHW images in [0, 1], as a trained net's evaluation sees them."""
    channels, side, _ = NETS[model]
    if model == "paper_mnist_1p5k_dw":
        import gzip

        import numpy as np

        with gzip.open(FASHION_ROOT / "t10k-images-idx3-ubyte.gz", "rb") as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
        x = torch.from_numpy(raw.copy()).view(-1, 1, 28, 28)[:N_IMAGES]
    else:
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (N_IMAGES, channels, side, side), generator=gen)
    return x.to(torch.uint8).float().div_(255)


def settings(nproc: int, batch_1: bool) -> list[dict]:
    """(batch size, threads, layout) combinations; the first is what effray trials report
    (train.eval_batch_size 1000, train.latency_threads 1)."""
    out = [
        {"batch_size": 1000, "threads": 1, "layout": "NCHW"},
        {"batch_size": 100, "threads": 1, "layout": "NCHW"},
        {"batch_size": 100, "threads": 1, "layout": "channels_last"},
        {"batch_size": 100, "threads": nproc, "layout": "NCHW"},
    ]
    if batch_1:
        out.append({"batch_size": 1, "threads": 1, "layout": "NCHW"})
    return [s for i, s in enumerate(out) if s not in out[:i]]  # nproc may be 1


def main() -> None:
    from effray.metrics import cpu_latency
    from effray.models import build_model
    from effray.reference import PAPER_LATENCY_IMAGES, PAPER_TABLE3

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=3, help="timed passes per setting")
    p.add_argument("--batch-1", action="store_true", help="add batch size 1 (slow: minutes)")
    args = p.parse_args()

    info = machine()
    nproc = os.cpu_count() or 1
    configs = settings(nproc, args.batch_1)
    models, images = {}, {}
    for name, (channels, _, _) in NETS.items():
        torch.manual_seed(0)
        models[name] = build_model(name, num_classes=10, in_channels=channels).eval()
        images[name] = test_images(name)
    times: dict[tuple[str, int], list[float]] = {}
    started = time.perf_counter()
    for r in range(args.repeats):
        for name in NETS:
            for i, s in enumerate(configs):
                model, x = models[name], images[name]
                if s["layout"] == "channels_last":
                    model = model.to(memory_format=torch.channels_last)
                    x = x.contiguous(memory_format=torch.channels_last)
                seconds = cpu_latency(
                    model, x, batch_size=s["batch_size"], threads=s["threads"], repeats=1
                )
                times.setdefault((name, i), []).append(seconds)
                print(
                    f"  repeat {r + 1}/{args.repeats} {name} batch {s['batch_size']} "
                    f"threads {s['threads']} {s['layout']}: {seconds:.3f} s"
                )
    wall = time.perf_counter() - started

    rows, results = [], []
    for name in NETS:
        paper = PAPER_TABLE3[name].latency_s
        for i, s in enumerate(configs):
            sp = spread(times[(name, i)])
            results.append(
                {
                    "model": name,
                    "images": N_IMAGES,
                    "image_source": NETS[name][2],
                    **s,
                    "seconds": times[(name, i)],
                    "seconds_spread": sp,
                    "images_per_s_median": N_IMAGES / sp["median"],
                    "paper_seconds": paper,
                    "paper_over_ours": paper / sp["median"],
                }
            )
            rows.append(
                [
                    name,
                    s["batch_size"],
                    s["threads"],
                    s["layout"],
                    fmt_spread(sp, ".3f"),
                    f"{N_IMAGES / sp['median']:,.0f}",
                    f"{paper:.2f}",
                    f"{paper / sp['median']:.1f}×",
                ]
            )
    print()
    print(
        f"CPU inference latency, {N_IMAGES:,} images, float32, torch.inference_mode, "
        f"{args.repeats} repeats (1 warm-up pass each); median (min–max) s"
    )
    print(f"CPU: {info['cpu']}, {nproc} cores; paper: {PAPER_LATENCY_IMAGES:,} images, CPU unknown")
    headers = ["model", "batch", "threads", "layout", "seconds", "images/s", "paper s"]
    headers.append("paper / ours")
    print(markdown_table(headers, rows))
    path = write_json(
        "latency",
        {
            "benchmark": "latency",
            "command": "python benchmarks/latency.py " + " ".join(sys.argv[1:]),
            "method": "effray.metrics.cpu_latency(model, images, batch_size, threads, repeats=1) "
            "per repeat: deepcopy to CPU, eval, inference_mode, 1 warm-up pass + 1 timed pass",
            "machine": info,
            "wall_s": wall,
            "results": results,
        },
    )
    print(f"\nwall time {wall:.0f} s; results written to {path}")


if __name__ == "__main__":
    main()
