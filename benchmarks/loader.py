"""effray's loader path vs a plain torchvision ImageFolder + DataLoader, same transforms.

    $ python benchmarks/loader.py                                  # loader only
    $ python benchmarks/loader.py --model ghostnet --train 96 --test 32 --epochs 2

Data: a folder in the thesis's Stanford Cars layout written by effray's sample maker
(`effray make-sample-cars`), photo-sized by default (500-900 px wide, as the real images
mostly are), and an ImageFolder view of the same files (symlinks, train/<class>/…).

Transforms: C-50's (experiments/thesis_c50_stanford_cars.yaml): resize to 227x227,
horizontal flip, RandomAffine(25, (0.1, 0.1), (0.9, 1.1), 8, nearest), ColorJitter(0.2,
0.2, 0.2, 0.1), to float, normalize; val: resize, to float, normalize.

- effray: build_data on the folder with those techniques; each epoch iterates
  train_batches then val_batches, as fit does.
- torchvision: ImageFolder (PIL loader) with torchvision.transforms.v2 in the thesis's
  order, DataLoader(shuffle=True) for train and a second one for val, each epoch.

Both use the same batch size, workers and images. With --model ghostnet every train batch
also takes one AdamW step of GhostNet (out_channels 320) and every val batch a forward
pass, in the process that iterates (what `effray train` does), with --threads torch
threads. Each (variant, repeat) runs in a fresh subprocess, variants interleaved, and is
measured from outside: wall time, user and system CPU seconds of that process and every
process it started (DataLoader workers included), and minor page faults.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT, machine, spread

MEAN = [0.4707, 0.4602, 0.455]  # the thesis's norm_params_rgb (section 4.1)
STD = [0.2594, 0.2585, 0.2635]
SIDE = 227  # pixels (img_size)
VARIANTS = ("effray", "torchvision")


def imagefolder_view(root: Path, view: Path) -> None:
    """view/{train,test}/<class>/<file> symlinks to the Stanford Cars layout's images."""
    for split in ("train", "test"):
        with open(root / f"{split}_labels.csv", newline="") as f:
            for row in csv.DictReader(f):
                link = view / split / f"class_{int(row['class']):03d}" / row["image_fname"]
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(root / split / row["image_fname"])


def model_step(args):
    """(train_step(x, y), eval_step(x)) of GhostNet, or no-ops when --model none."""
    import torch

    if args.model == "none":
        return (lambda x, y: None), (lambda x: None)
    from effray.models import build_model

    torch.manual_seed(0)
    model = build_model("ghostnet", num_classes=args.classes, in_channels=3, out_channels=320)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.6)

    def train_step(x, y):
        model.train()
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def eval_step(x):
        model.eval()
        with torch.no_grad():
            model(x)

    return train_step, eval_step


def run_effray(args, root: Path):
    import torch

    from effray.data import DataPipeline, build_data
    from effray.spec import DataSpec
    from effray.techniques import TECHNIQUES

    pipeline = DataPipeline()
    for kind, fields in (
        ("random_affine", {"interpolation": "nearest"}),
        ("horizontal_flip", {}),
        ("color_jitter", {}),
        ("normalize", {"mean": MEAN, "std": STD}),
    ):
        TECHNIQUES[kind](**fields).on_data(pipeline)
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=SIDE, workers=args.workers)
    data = build_data(spec, pipeline, device=torch.device("cpu"), seed=0)
    gen = torch.Generator()

    def epoch(e, train_step, eval_step):
        gen.manual_seed(e)
        for x, y in data.train_batches(args.batch, gen):
            train_step(x, y)
        for x, _ in data.val_batches(args.batch):
            eval_step(x)

    return epoch


def run_torchvision(args, view: Path):
    import torch
    import torchvision
    from torchvision.transforms import v2

    resize = v2.Resize((SIDE, SIDE), antialias=True)
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
    train_tf = v2.Compose(
        [
            resize,
            v2.RandomHorizontalFlip(0.5),
            v2.RandomAffine(25, translate=(0.1, 0.1), scale=(0.9, 1.1), shear=8),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.1),
            *tail,
        ]
    )
    train = torchvision.datasets.ImageFolder(str(view / "train"), transform=train_tf)
    val = torchvision.datasets.ImageFolder(
        str(view / "test"), transform=v2.Compose([resize, *tail])
    )
    common = {"batch_size": args.batch, "num_workers": args.workers}

    def epoch(e, train_step, eval_step):
        gen = torch.Generator().manual_seed(e)
        for x, y in torch.utils.data.DataLoader(train, shuffle=True, generator=gen, **common):
            train_step(x, y)
        for x, _ in torch.utils.data.DataLoader(val, **common):
            eval_step(x)

    return epoch


def one(args) -> None:
    """Child process: run one variant for --epochs and print its images per second."""
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.keep_freed_memory:  # what fit does on the CPU (effray/cpu_memory.py)
        from effray.cpu_memory import keep_freed_memory

        keep_freed_memory()
    root, view = Path(args.root), Path(args.view)
    epoch = run_effray(args, root) if args.one == "effray" else run_torchvision(args, view)
    train_step, eval_step = model_step(args)
    started = time.perf_counter()
    for e in range(args.epochs):
        epoch(e, train_step, eval_step)
    seconds = time.perf_counter() - started
    images = args.epochs * (args.train + args.test)
    print(json.dumps({"epochs_s": seconds, "images_per_s": images / seconds}))


def measure(args, variant: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    cmd = [sys.executable, __file__, "--one", variant, *sys.argv[1:]]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    inner = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        "minor_faults": after.ru_minflt - before.ru_minflt,
        **inner,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train", type=int, default=256, help="train images")
    p.add_argument("--test", type=int, default=64, help="val (test/) images")
    p.add_argument("--classes", type=int, default=8)
    p.add_argument("--min-width", type=int, default=500, help="narrowest image, px")
    p.add_argument("--max-width", type=int, default=900, help="widest image, px")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    p.add_argument("--model", choices=("none", "ghostnet"), default="none")
    p.add_argument(
        "--keep-freed-memory",
        action="store_true",
        help="both variants: glibc keeps freed memory (as fit does on the CPU)",
    )
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/)")
    p.add_argument("--one", choices=VARIANTS, help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    p.add_argument("--view", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        return one(args)

    from effray.data.cars_sample import make_sample_cars

    with tempfile.TemporaryDirectory(prefix="effray-loader-") as tmp:
        root, view = Path(tmp) / "cars", Path(tmp) / "view"
        make_sample_cars(
            root,
            classes=args.classes,
            train=args.train,
            test=args.test,
            width=(args.min_width, args.max_width),
        )
        imagefolder_view(root, view)
        sys.argv += ["--root", str(root), "--view", str(view)]
        info = machine()
        runs: dict[str, list[dict]] = {v: [] for v in args.variants.split(",")}
        for _ in range(args.repeats):
            for variant in runs:  # interleaved: both see the same load
                runs[variant].append(measure(args, variant))
                r = runs[variant][-1]
                print(
                    f"{variant:12s} wall {r['wall_s']:6.1f}s  user {r['user_s']:6.1f}s  "
                    f"sys {r['sys_s']:6.1f}s  {r['images_per_s']:7.1f} img/s",
                    flush=True,
                )
    print(f"\n{'variant':12s} {'img/s (median)':>15s} {'wall':>7s} {'user':>7s} {'sys':>7s}")
    for variant, rs in runs.items():
        med = {k: spread([r[k] for r in rs])["median"] for k in rs[0]}
        print(
            f"{variant:12s} {med['images_per_s']:15.1f} {med['wall_s']:6.1f}s "
            f"{med['user_s']:6.1f}s {med['sys_s']:6.1f}s"
        )
    info["load_avg_at_end"] = list(os.getloadavg())
    keep = "_keep" if args.keep_freed_memory else ""
    name = f"loader_{args.model}_w{args.workers}{keep}.json"
    out = Path(args.out) if args.out else RESULTS / name
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("one", "root", "view", "out")}
    command = "python benchmarks/loader.py " + " ".join(sys.argv[1:]).split(" --root")[0]
    out.write_text(
        json.dumps({"machine": info, "command": command, "config": config, "runs": runs}, indent=2)
    )
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
