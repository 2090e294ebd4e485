"""Ray overhead: what `effray run` costs beyond its epochs, split into fixed and per-trial parts.

    $ python benchmarks/ray_overhead.py                                   # sweep, 3 repeats
    $ python benchmarks/ray_overhead.py --baseline /tmp/effray-before     # before vs after
    $ python benchmarks/ray_overhead.py --configs 6x4 --repeats 5
    $ python benchmarks/ray_overhead.py --configs 2x1,6x1,24x1,2x4,6x4,24x4,quickstart

(`git worktree add /tmp/effray-before <commit>` gives a baseline tree; it runs with this
checkout's Python and packages, PYTHONPATH set to the tree, and its own working directory.)

What is timed, per tree, `--repeats` times, trees interleaved run by run:

- sweep `NxE`: `effray run SPEC` (a subprocess, end to end) of N trials x E epochs: the
  1.5K-DW net on 3,000 Fashion-MNIST train images (1,000 val), seeds 0..N-1 (grid, no
  ASHA), 1 CPU and 1 torch thread per trial, W&B disabled, CPU latency at its default
  (3 repeats). ideal = Σ time/epoch_s over all trials (as the run reported them) /
  trials at once (CPUs // 1, at most N); ratio = wall / ideal.
  From the run's own files (no instrumentation): each attempt's start (attempts.jsonl,
  the worker's clock) and every result's time_this_iter_s vs time/epoch_s give
      startup    launch -> first trial starts: Python, imports, spec, experiment files,
                 Ray start, Tune setup, first actors
      setup      per trial: first result's time_this_iter_s - its epoch time - one
                 report: data, model, FLOPs, latency (fit's set-up)
      report     per epoch: time_this_iter_s - time/epoch_s after the first: validation,
                 checkpoint write, snapshot, tune.report, Ray's checkpoint upload
      gap        per trial after the first on an actor: previous trial's last report
                 (its metrics.jsonl written) -> this one's start (the last checkpoint's
                 upload, actor reuse, driver callbacks, scheduling)
      teardown   last trial's last report -> the command exits: Tune teardown, results,
                 Ray stop
  The per-trial overhead is the slope of (wall - ideal) over N at 1 epoch (least squares).
- `quickstart`: `effray run experiments/quickstart.yaml` as `make run` does (W&B auto);
  this checkout's quickstart in every tree, so all trees run the same trials.
- `validate` / `help`: `effray validate experiments/quickstart.yaml` and `effray --help`
  wall times, and whether they imported torch or ray.
- components: in a fresh process, cold then warm (second call), what fit does per
  trial: build_data, build_model, FLOPs, size, model facts (latency), a checkpoint write.
- ray: `ray_session()` start, stop, and start -> a worker that has `effray.train`
  imported (what the first trial waits for).

Results (every repeat's raw numbers, the machine, load averages) go to
benchmarks/results/ray_overhead.json; the table goes to stdout. Same seeds in every
tree: the script checks that each trial's per-epoch metrics (losses, accuracies, params,
FLOPs) are identical across trees and repeats (on the epochs both runs ran: ASHA in the
quickstart may stop a trial at another epoch), and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import ROOT, fmt_spread, machine, markdown_table, spread, write_json

TRAIN_SIZE, VAL_SIZE = 3000, 1000
TIMING_KEYS = ("time/", "model/latency", "train/samples_per_s", "trial/")  # not compared


def spec_dict(trials: int, epochs: int) -> dict:
    return {
        "name": f"overhead-{trials}x{epochs}",
        "data": {"name": "fashion_mnist", "train_subset": TRAIN_SIZE, "val_subset": VAL_SIZE},
        "model": {"name": "paper_mnist_1p5k_dw"},
        "train": {"epochs": epochs, "batch_size": 128, "threads": 1},
        "search": {"space": {"train.seed": {"grid": list(range(trials))}}, "asha": None},
        "resources": {"cpu": 1, "gpu": 0},
        "wandb": {"mode": "disabled"},
    }


def env_for(tree: Path, **extra: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "COLUMNS": "160", "NO_COLOR": "1", **extra}
    env.pop("RAY_ADDRESS", None)
    return env


def effray(tree: Path, args: list[str], **env: str) -> tuple[float, float, float, str, int]:
    """(launch time.time(), exit time.time(), wall s, output, exit code) of `effray ARGS`."""
    t0, start = time.time(), time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "effray", *args],
        capture_output=True,
        text=True,
        env=env_for(tree, **env),
        cwd=tree,  # `python -m effray` imports the tree's effray, not this checkout's
    )
    wall = time.perf_counter() - start
    return t0, t0 + wall, wall, proc.stdout + proc.stderr, proc.returncode


def read_trials(experiment: Path) -> list[dict]:
    out = []
    for result in sorted(experiment.glob("*/result.json")):
        rows = [json.loads(x) for x in result.read_text().splitlines() if x.strip()]
        attempts = [
            json.loads(x)
            for x in (result.parent / "attempts.jsonl").read_text().splitlines()
            if x.strip()
        ]
        if rows and attempts:
            # the trial's last report: its metrics.jsonl is rewritten just before each one
            ended = (result.parent / "metrics.jsonl").stat().st_mtime
            out.append(
                {"name": result.parent.name, "rows": rows, "attempt": attempts[-1], "end": ended}
            )
    return out


def epoch_digests(trials: list[dict]) -> dict[str, list[str]]:
    """Per trial, a digest of each epoch's metrics except timings (same seed: same list).
    ASHA may stop a trial at another epoch from run to run, so runs are compared on the
    epochs both ran."""
    out = {}
    for t in trials:
        wanted = ("train/", "val/", "model/", "epoch", "lr")
        out[t["name"]] = [
            hashlib.sha256(
                json.dumps(
                    sorted(
                        (k, v)
                        for k, v in r.items()
                        if k.startswith(wanted) and not k.startswith(TIMING_KEYS)
                    )
                ).encode()
            ).hexdigest()[:12]
            for r in t["rows"]
        ]
    return out


def same_epochs(a: dict[str, list[str]], b: dict[str, list[str]]) -> bool:
    """Every trial both runs have agrees on every epoch both ran."""
    return set(a) == set(b) and all(
        x == y for name in a for x, y in zip(a[name], b[name], strict=False)
    )


def breakdown(trials: list[dict], t_launch: float, t_exit: float, parallel: int) -> dict:
    """The run's timeline, from its own files (see the module docstring)."""
    epoch_sum = sum(r["time/epoch_s"] for t in trials for r in t["rows"])
    reports = [r["time_this_iter_s"] - r["time/epoch_s"] for t in trials for r in t["rows"][1:]]
    report = statistics.median(reports) if reports else float("nan")
    setups, spans, gaps = [], [], []
    for t in trials:
        first = t["rows"][0]
        one_report = report if reports else 0.0
        setups.append(first["time_this_iter_s"] - first["time/epoch_s"] - one_report)
        spans.append((t["attempt"]["pid"], t["attempt"]["started"], t["end"]))
    spans.sort(key=lambda s: s[1])
    last_end: dict[int, float] = {}
    for pid, start, end in spans:
        if pid in last_end:
            gaps.append(start - last_end[pid])
        last_end[pid] = end
    first_start = min(s[1] for s in spans)
    last_end_all = max(s[2] for s in spans)
    ideal = epoch_sum / parallel
    wall = t_exit - t_launch
    return {
        "epoch_sum_s": epoch_sum,
        "ideal_s": ideal,
        "wall_s": wall,
        "ratio": wall / ideal if ideal > 0 else float("nan"),
        "overhead_s": wall - ideal,
        "startup_s": first_start - t_launch,
        "teardown_s": t_exit - last_end_all,
        "setup_per_trial_s": statistics.median(setups),
        "report_per_epoch_s": report,
        "gap_per_trial_s": statistics.median(gaps) if gaps else float("nan"),
        "setups_s": setups,
        "gaps_s": gaps,
    }


def sweep_once(tree: Path, trials: int, epochs: int, tmp: Path) -> dict:
    raw = spec_dict(trials, epochs)
    spec_path = tmp / f"{raw['name']}.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage = tmp / f"runs-{time.time_ns()}"
    t0, t1, wall, output, rc = effray(
        tree, ["run", str(spec_path), "--storage", str(storage)], WANDB_MODE="disabled"
    )
    if rc != 0:
        print(output)
        raise SystemExit(f"effray run {spec_path.name} ({tree}) failed with exit code {rc}")
    trials_read = read_trials(storage / raw["name"])
    parallel = min(trials, os.cpu_count() or 1)
    out = breakdown(trials_read, t0, t1, parallel)
    out["epochs"] = epoch_digests(trials_read)
    out["run_experiment_s"] = json.loads((storage / raw["name"] / "results.json").read_text())[
        "wall_s"
    ]
    return out


def quickstart_once(tree: Path, tmp: Path) -> dict:
    storage = tmp / f"quick-{time.time_ns()}"
    spec = str(ROOT / "experiments" / "quickstart.yaml")  # this checkout's, in every tree
    t0, t1, wall, output, rc = effray(tree, ["run", spec, "--storage", str(storage)])
    if rc != 0:
        print(output)
        raise SystemExit(f"effray run experiments/quickstart.yaml ({tree}) failed: exit {rc}")
    experiment = next(p for p in storage.iterdir() if p.is_dir())
    trials = read_trials(experiment)
    epoch_sum = sum(r["time/epoch_s"] for t in trials for r in t["rows"])
    return {"wall_s": wall, "epoch_sum_s": epoch_sum, "epochs": epoch_digests(trials)}


PROBE = (
    "import sys, runpy; sys.argv = ['effray', *sys.argv[1:]]\n"
    "try:\n    runpy.run_module('effray', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "print('IMPORTED', sorted(m for m in ('torch', 'ray', 'wandb') if m in sys.modules), "
    "file=sys.stderr)\n"
)


def cli_once(tree: Path, args: list[str]) -> dict:
    """Wall time of `effray ARGS` and whether it imported torch, ray or wandb."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env_for(tree),
        cwd=tree,
    )
    wall = time.perf_counter() - start
    line = next((x for x in proc.stderr.splitlines() if x.startswith("IMPORTED")), "IMPORTED ?")
    return {"wall_s": wall, "imported": line.split(" ", 1)[1]}


def _components() -> None:
    """Run in a fresh process (`--components`): cold, then warm, what fit does per trial."""
    t = time.perf_counter()
    import torch

    from effray.checkpoint import save_checkpoint
    from effray.data import DataPipeline, build_data
    from effray.metrics import flops_per_image, size_kb
    from effray.models import build_model
    from effray.spec import expand, spec_from_dict
    from effray.train import model_facts

    out = {"import_s": time.perf_counter() - t}
    torch.set_num_threads(1)
    spec = expand(spec_from_dict(spec_dict(2, 1)))
    with tempfile.TemporaryDirectory() as tmp:
        for i, trial in enumerate(spec):
            when = "cold" if i == 0 else "warm"
            laps = [("start", time.perf_counter())]
            data = build_data(trial.data, DataPipeline(), device=torch.device("cpu"), seed=i)
            laps.append(("data", time.perf_counter()))
            torch.manual_seed(i)
            model = build_model(trial.model.name, num_classes=10, in_channels=1)
            laps.append(("model", time.perf_counter()))
            flops_per_image(model, (1, 28, 28))
            laps.append(("flops", time.perf_counter()))
            size_kb(model)
            laps.append(("size", time.perf_counter()))
            model_facts(model, data, trial)
            laps.append(("facts_with_latency", time.perf_counter()))
            save_checkpoint(Path(tmp) / str(i), {"epoch": 1, "model": model.state_dict()}, keep=2)
            laps.append(("checkpoint", time.perf_counter()))
            for (_, before), (name, now) in zip(laps[:-1], laps[1:], strict=True):
                out[f"{name}_{when}_s"] = now - before
    print(json.dumps(out))


def components(tree: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--components"],
        capture_output=True,
        text=True,
        env=env_for(tree),
        cwd=tree,
    )
    if proc.returncode != 0:
        print(proc.stderr)
        raise SystemExit(f"components ({tree}) failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


RAY_PROBE = """
import json, time
t0 = time.perf_counter()
import ray
from effray.tune.session import ray_session
t1 = time.perf_counter()
with ray_session() as _:
    t2 = time.perf_counter()
    @ray.remote(num_cpus=1)
    def ready():
        import effray.train  # noqa: F401  (what a trial imports first)
        return 0
    ray.get([ready.remote() for _ in range(%d)])
    t3 = time.perf_counter()
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "start_s": t2 - t1, "start_to_warm_worker_s": t3 - t1,
                  "stop_s": t4 - t3}))
"""


def ray_once(tree: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", RAY_PROBE % (os.cpu_count() or 1)],
        capture_output=True,
        text=True,
        env=env_for(tree),
        cwd=tree,
    )
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"ray probe ({tree}) failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def slope(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    b = sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else float("nan")
    return b, my - b * mx


def main() -> None:
    if "--components" in sys.argv:
        _components()
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--configs", default="2x1,6x1,24x1,6x4,quickstart", help="NxE runs, quickstart")
    p.add_argument("--repeats", type=int, default=3, help="runs of each config per tree")
    p.add_argument("--baseline", type=Path, help="another effray tree to compare (run first)")
    p.add_argument("--out", default="ray_overhead", help="results/<out>.json")
    args = p.parse_args()

    trees = {"current": ROOT}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    info = machine()
    raw: dict = {label: {"runs": {}, "cli": {}, "components": [], "ray": []} for label in trees}
    with tempfile.TemporaryDirectory(prefix="effray-overhead-") as tmp:
        for rep in range(args.repeats):
            for label, tree in trees.items():  # interleaved: load drifts hit both trees
                r = raw[label]
                for what, cli_args in (
                    ("validate", ["validate", "experiments/quickstart.yaml"]),
                    ("help", ["--help"]),
                ):
                    r["cli"].setdefault(what, []).append(cli_once(tree, cli_args))
                r["components"].append(components(tree))
                r["ray"].append(ray_once(tree))
                for config in configs:
                    if config == "quickstart":
                        result = quickstart_once(tree, Path(tmp))
                    else:
                        n, e = (int(v) for v in config.split("x"))
                        result = sweep_once(tree, n, e, Path(tmp))
                    r["runs"].setdefault(config, []).append(result)
                    print(
                        f"[{rep + 1}/{args.repeats}] {label:8} {config:10} "
                        f"wall {result['wall_s']:6.1f} s  "
                        + (f"ratio {result['ratio']:.2f}" if "ratio" in result else ""),
                        flush=True,
                    )

    summary = summarize(raw, configs)
    print()
    print(report_tables(summary, list(trees), configs, args.repeats))
    path = write_json(
        args.out,
        {
            "benchmark": "ray_overhead",
            "command": "python benchmarks/ray_overhead.py " + " ".join(sys.argv[1:]),
            "trees": {k: str(v) for k, v in trees.items()},
            "machine": info,
            "spec_template": spec_dict(6, 4),
            "summary": summary,
            "raw": raw,
        },
    )
    print(f"\nresults written to {path}")


def summarize(raw: dict, configs: list[str]) -> dict:
    out: dict = {}
    digests: dict[str, list] = {}
    for label, r in raw.items():
        s: dict = {"runs": {}, "cli": {}, "components": {}, "ray": {}}
        for config, runs in r["runs"].items():
            keys = [k for k, v in runs[0].items() if isinstance(v, float)]
            s["runs"][config] = {k: spread([x[k] for x in runs]) for k in keys}
            digests.setdefault(config, []).extend(x["epochs"] for x in runs)
        for what, runs in r["cli"].items():
            s["cli"][what] = {
                "wall_s": spread([x["wall_s"] for x in runs]),
                "imported": sorted({x["imported"] for x in runs}),
            }
        for key in r["components"][0]:
            s["components"][key] = spread([x[key] for x in r["components"]])
        for key in r["ray"][0]:
            s["ray"][key] = spread([x[key] for x in r["ray"]])
        points = [
            (int(c.split("x")[0]), x["overhead_s"])
            for c in configs
            if c.endswith("x1")
            for x in r["runs"][c]
        ]
        if len({n for n, _ in points}) >= 2:
            s["per_trial_overhead_slope_s"], s["fixed_overhead_intercept_s"] = slope(points)
        out[label] = s
    out["identical_metrics"] = {
        c: all(same_epochs(d[0], other) for other in d[1:]) for c, d in digests.items()
    }
    return out


def report_tables(summary: dict, labels: list[str], configs: list[str], repeats: int) -> str:
    f = fmt_spread
    lines = [f"median (min–max) of {repeats} runs per tree; seconds unless marked"]
    head = ["", *labels]
    rows = []
    for config in configs:
        keys = ["wall_s", "ratio"] if config != "quickstart" else ["wall_s", "epoch_sum_s"]
        if config != "quickstart":
            keys += ["ideal_s", "startup_s", "setup_per_trial_s", "report_per_epoch_s"]
            keys += ["gap_per_trial_s", "teardown_s"]
        for k in keys:
            rows.append([f"{config} {k}"] + [f(summary[lb]["runs"][config][k]) for lb in labels])
    for lb_key in ("per_trial_overhead_slope_s", "fixed_overhead_intercept_s"):
        if all(lb_key in summary[lb] for lb in labels):
            rows.append([f"Nx1 {lb_key}"] + [f"{summary[lb][lb_key]:.2f}" for lb in labels])
    for what in ("validate", "help"):
        rows.append(
            [f"effray {what} wall_s"]
            + [
                f(summary[lb]["cli"][what]["wall_s"])
                + " imports "
                + "/".join(summary[lb]["cli"][what]["imported"])
                for lb in labels
            ]
        )
    for key in summary[labels[-1]]["ray"]:
        rows.append([f"ray {key}"] + [f(summary[lb]["ray"][key]) for lb in labels])
    for key in summary[labels[-1]]["components"]:
        rows.append(
            [f"fit part {key}"]
            + [
                f(summary[lb]["components"][key], ".3f")
                if key in summary[lb]["components"]
                else "-"
                for lb in labels
            ]
        )
    same = summary["identical_metrics"]
    rows.append(
        ["same metrics in every run and tree"]
        + [", ".join(f"{c}: {v}" for c, v in same.items())]
        + [""] * (len(labels) - 1)
    )
    lines.append(markdown_table(head, rows))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
