"""Shared pieces of the benchmarks: machine facts, stand-in CIFAR-10 files, tables, JSON.

Not a benchmark itself; each `benchmarks/<name>.py` imports it.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
FASHION_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist

if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from a checkout without install;
    sys.path.append(str(ROOT))  # last, so PYTHONPATH can point at another tree to compare


def machine() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores, RAM, versions, load."""
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "ram_gib": ram_gib,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_default_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "load_avg_at_start": list(os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    try:
        import ray

        info["ray"] = ray.__version__
    except ImportError:
        pass
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max (and mean) of repeated measurements."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "mean": statistics.fmean(values),
        "n": len(values),
    }


def fmt_spread(s: dict[str, float], fmt: str = ".2f") -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}–{s['max']:{fmt}})"


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {**payload, "load_avg_at_end": list(os.getloadavg())}
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def fake_cifar10(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Random uint8 3x32x32 images and labels 0..9 in CIFAR-10's python-pickle format.

    CIFAR-10 is not on this machine (no internet); speed does not depend on the pixels.
    Writes root/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}; effray
    reads it as data.name cifar10 and torchvision.datasets.CIFAR10 reads it too (its md5
    check must be skipped: the files are not the published ones).
    """
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per = [len(a) for a in np.array_split(np.arange(n_train), 5)]
    for i, n in enumerate(per, start=1):
        _dump(folder / f"data_batch_{i}", rng, n, f"training batch {i} of 5")
    _dump(folder / "test_batch", rng, n_test, "testing batch 1 of 1")
    names = ["airplane", "automobile", "bird", "cat", "deer"]
    names += ["dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": per[0], "num_vis": 3072}, f)
    return root


def _dump(path: Path, rng, n: int, label: str) -> None:
    entry = {
        "batch_label": label,
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "labels": rng.integers(0, 10, n).tolist(),
        "filenames": [f"img_{i}.png" for i in range(n)],
    }
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def torchvision_fashion_root(tmp: Path) -> Path:
    """Fashion-MNIST in torchvision's layout (root/FashionMNIST/raw/, unzipped) from the
    Debian package's .gz files, so torchvision.datasets.FashionMNIST reads it offline."""
    raw = tmp / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in FASHION_ROOT.glob("*-ubyte.gz"):
        with gzip.open(gz, "rb") as src, open(raw / gz.name[:-3], "wb") as dst:
            shutil.copyfileobj(src, dst)
    return tmp


class CIFAR10NoChecksum:
    """torchvision.datasets.CIFAR10 minus its md5 check (the stand-in files are not the
    published ones); reading and per-image transforms are torchvision's own."""

    def __new__(cls, *args, **kwargs):
        from torchvision.datasets import CIFAR10

        class _CIFAR10(CIFAR10):
            def _check_integrity(self) -> bool:
                return True

            def _load_meta(self) -> None:
                with open(Path(self.root, self.base_folder, self.meta["filename"]), "rb") as f:
                    names = pickle.load(f, encoding="latin1")[self.meta["key"]]
                self.classes = names
                self.class_to_idx = {name: i for i, name in enumerate(names)}

        return _CIFAR10(*args, **kwargs)


def effray_run(raw: dict, tmp: Path) -> tuple[Path, float]:
    """`effray run` of spec `raw` (written to tmp) in a subprocess, W&B off, results under
    tmp/runs; (the experiment directory, wall seconds). A failed run prints its output
    and stops the benchmark."""
    spec_path = tmp / f"{raw['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "WANDB_MODE": "disabled", "COLUMNS": "160", "NO_COLOR": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "effray", "run", str(spec_path), "--storage", str(tmp / "runs")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr)
        raise SystemExit(f"effray run {spec_path.name} failed with exit code {proc.returncode}")
    return tmp / "runs" / raw["name"], wall
