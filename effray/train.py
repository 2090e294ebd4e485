"""Train one trial with a plain PyTorch loop, changed only by technique hooks.

    $ effray train experiments/quickstart.yaml --out runs/quick
    $ effray resume runs/quick

    >>> from effray import load_spec, fit
    >>> result = fit(load_spec("experiments/quickstart.yaml"))

`fit` imports neither ray nor wandb: Ray calls it through effray.tune, a laptop calls
it directly, and both get the same numbers for the same seed. It reports exactly
once per epoch: `report(metrics, checkpoint_path)`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effray.checkpoint import Loaded, git_commit, load_latest, save_checkpoint
from effray.cpu_memory import keep_freed_memory
from effray.data import DataPipeline, build_data
from effray.hyper import retarget
from effray.metrics import cached_latency, count_params, flops_per_image, size_kb
from effray.models import build_model
from effray.spec import ExperimentSpec
from effray.techniques import TrainState, ordered

Report = Callable[[dict[str, Any], Path | None], None]
LATENCY_MAX_BYTES = 512 * 2**20  # larger val sets are timed on a prefix and scaled up


class TrialDiverged(RuntimeError):
    """The loss became NaN or infinite; the trial stops with this message."""

    stop_reason = "diverged"  # what a runner records as the trial's stop reason


@dataclass
class FitResult:
    history: list[dict[str, Any]]  # one metrics dict per epoch run (resumed epochs included)
    stop_reason: str  # "finished", or the reason a technique stopped it (e.g. "early_stopping")
    model: nn.Module
    checkpoint: Path | None = None
    facts: dict[str, float] = field(default_factory=dict)  # params, size, FLOPs, latency

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}

    @property
    def best_val_acc(self) -> float:
        return max((m["val/acc"] for m in self.history), default=float("nan"))


def _null_report(metrics: dict[str, Any], checkpoint: Path | None) -> None:
    pass


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def default_threads() -> int:
    """Torch threads when train.threads is unset: the cores this trial may use alone.

    Under Ray that is the trial's reserved CPUs (Ray sets OMP_NUM_THREADS to them, at
    least 1), so concurrent trials never share a core; alone (`effray train`) it is every
    core this process may run on. Set explicitly each fit: a reused worker keeps no
    earlier trial's setting, and a worker that imported torch before Ray set
    OMP_NUM_THREADS does not oversubscribe with torch's default (all cores per trial).
    """
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def epoch_seed(seed: int, epoch: int) -> int:
    """Batch randomness of an epoch depends only on (seed, epoch): resume needs no RNG replay."""
    return seed * 1_000_003 + epoch


def make_optimizer(spec: ExperimentSpec, params) -> torch.optim.Optimizer:
    t = spec.train
    if t.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay
        )
    betas = (t.momentum, 0.999)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, betas=betas, weight_decay=t.weight_decay)


def evaluate(model: nn.Module, batches, autocast) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in %) over `batches`; plain CE, no smoothing."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct, seen = 0, 0
    with torch.no_grad():
        for x, y in batches:
            with autocast():
                out = model(x)
            out = out.float()
            loss_sum += F.cross_entropy(out, y, reduction="sum").double().cpu()
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
    model.train(was_training)
    return float(loss_sum) / max(seen, 1), 100.0 * correct / max(seen, 1)


def model_facts(model: nn.Module, data, spec: ExperimentSpec) -> dict[str, float]:
    """Parameters, size on disk, FLOPs per image and CPU latency over the val set."""
    shape = (data.in_channels, *data.image_size)
    facts = {
        "model/params": float(count_params(model)),
        "model/size_kb": size_kb(model),
        "model/flops": float(flops_per_image(model, shape)),
    }
    if spec.train.latency_repeats:
        per_image = 4 * shape[0] * shape[1] * shape[2]
        limit = min(data.num_val, max(1, LATENCY_MAX_BYTES // per_image))

        def images() -> torch.Tensor:  # read only when this net was not timed yet
            chunks, n = [], 0
            for x, _ in data.val_batches(spec.train.eval_batch_size):
                chunks.append(x.cpu())
                n += len(x)
                if n >= limit:
                    break
            return torch.cat(chunks)[:limit]

        seconds = cached_latency(  # once per architecture and input in this process
            model,
            images,
            (limit, *shape),
            batch_size=spec.train.latency_batch_size,
            threads=spec.train.latency_threads,
            repeats=spec.train.latency_repeats,
        )
        facts["model/latency_s"] = seconds * data.num_val / limit
        facts["model/latency_images"] = float(data.num_val)
    return facts


def _first_bad(losses: list[torch.Tensor]) -> int | None:
    if not losses:
        return None
    finite = torch.isfinite(torch.stack(losses))
    if bool(finite.all()):
        return None
    return int((~finite).nonzero()[0, 0])


def fit(
    spec: ExperimentSpec,
    report: Report | None = None,
    checkpoint_dir: str | Path | None = None,
    resume_from: str | Path | Loaded | None = None,
) -> FitResult:
    """Train `spec` (a concrete trial) to `spec.train.epochs`; resume from a checkpoint if given."""
    report = report or _null_report
    loaded = resume_from
    if resume_from is not None and not isinstance(resume_from, Loaded):
        loaded = load_latest(Path(resume_from))
    t = spec.train
    device = pick_device(t.device)
    if device.type == "cpu":  # reuse each step's activation memory (effray/cpu_memory.py)
        keep_freed_memory()
    torch.set_num_threads(t.threads or default_threads())
    techniques = [tech.model_copy(deep=True) for tech in ordered(spec.techniques)]

    pipeline = DataPipeline()
    for tech in techniques:
        tech.on_data(pipeline)
    data = build_data(spec.data, pipeline, device=device, seed=t.seed)

    torch.manual_seed(t.seed)
    model = build_model(
        spec.model.name,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        **spec.model.args,
    )
    gen = torch.Generator(device=device)
    state = TrainState(
        spec=spec,
        device=device,
        num_classes=data.num_classes,
        epochs=t.epochs,
        steps_per_epoch=data.steps_per_epoch(t.batch_size),
        generator=gen,
        model_name=spec.model.name,
        train_batches=lambda: data.train_eval_batches(t.eval_batch_size),
    )
    for tech in techniques:
        model = tech.on_model(model, state)
        state.model = model
    memory_format = torch.channels_last if t.channels_last else torch.preserve_format
    model = model.to(device, memory_format=memory_format)
    state.model = model
    state.optimizer = optimizer = make_optimizer(spec, model.parameters())
    for tech in techniques:
        tech.on_optimizer(state)
    loss_fn = nn.CrossEntropyLoss()  # on dense targets; label_smoothing smooths them in on_batch
    step_owner = next((x for x in techniques if "step" in type(x).owns), None)
    use_bf16 = t.precision == "bf16"

    def autocast():
        if not use_bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if loaded:
        ck = loaded.payload
        model.load_state_dict(ck["model"])
        optimizer.load_state_dict(ck["optimizer"])
        for tech in techniques:
            tech.load_state_dict(ck["techniques"].get(tech.kind, {}))
        torch.set_rng_state(ck["rng"]["torch"])
        if device.type == "cuda" and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ck["rng"]["cuda"])
        start_epoch, state.step = int(ck["epoch"]), int(ck["step"])
        history = list(ck.get("history", []))
        if (ck.get("spec") or {}).get("train"):  # a PBT exploit continues with its own values
            retarget(optimizer, techniques, type(t).model_validate(ck["spec"]["train"]), t)
        state.logs.update(ck.get("logs", {}))

    logits: list[torch.Tensor] = []  # outputs of each closure call of the current step

    def closure() -> torch.Tensor:
        """zero_grad, forward, loss, backward on the current batch; SAM calls it twice."""
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            out = model(state.x)
        loss = loss_fn(out.float(), state.y)
        loss.backward()
        logits.append(out.detach())
        return loss

    facts = model_facts(model, data, spec)
    ckpt_path: Path | None = None
    stop_reason = "finished"
    for epoch in range(start_epoch, t.epochs):
        state.epoch = epoch
        gen.manual_seed(epoch_seed(t.seed, epoch))
        model.train()
        started = time.perf_counter()
        losses: list[torch.Tensor] = []
        correct = torch.zeros((), dtype=torch.long, device=device)
        seen = 0
        for x, labels in data.train_batches(t.batch_size, gen):
            if t.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            state.x, state.labels = x, labels
            state.y = F.one_hot(labels, data.num_classes).float()
            for tech in techniques:
                tech.on_batch(state)
            logits.clear()
            if step_owner is not None:
                loss = step_owner.step(state, closure)
            else:
                loss = closure()
                optimizer.step()
            state.loss = loss
            state.step += 1
            for tech in techniques:
                tech.after_step(state)
            losses.append(loss.detach() * len(labels))
            correct += (logits[0].argmax(1) == labels).sum()
            seen += len(labels)
        bad = _first_bad(losses)
        if bad is not None:
            value = float(losses[bad])
            raise TrialDiverged(
                f"diverged at epoch {epoch + 1}, step {epoch * state.steps_per_epoch + bad + 1} "
                f"(loss {value})"
            )
        seconds = time.perf_counter() - started
        val_loss, val_acc = evaluate(model, data.val_batches(t.eval_batch_size), autocast)
        state.metrics = metrics = {
            "epoch": epoch + 1,
            "train/loss": float(torch.stack(losses).sum()) / max(seen, 1),
            "train/acc": 100.0 * int(correct) / max(seen, 1),
            "val/loss": val_loss,
            "val/acc": val_acc,
            "lr": state.lr,
            "time/epoch_s": seconds,
            "train/samples_per_s": seen / seconds if seconds > 0 else 0.0,
        }
        for tech in techniques:
            tech.on_epoch_end(state)
        last = epoch == t.epochs - 1 or state.stop_reason is not None
        if last:  # the last report says why the fit stopped
            stop_reason = metrics["stop_reason"] = state.stop_reason or "finished"
            changed = [tech.on_fit_end(state) for tech in techniques]
            if any(changed):
                metrics["val/loss"], metrics["val/acc"] = evaluate(
                    model, data.val_batches(t.eval_batch_size), autocast
                )
        metrics.update(facts)
        metrics.update(state.logs)
        history.append(dict(metrics))
        if checkpoint_dir is not None:
            ckpt_path = save_checkpoint(
                Path(checkpoint_dir),
                {
                    "epoch": epoch + 1,
                    "step": state.step,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "techniques": {tech.kind: tech.state_dict() for tech in techniques},
                    "rng": {
                        "torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                    },
                    "history": history,
                    "logs": dict(state.logs),
                    "spec": spec.model_dump(mode="json"),
                    "git_commit": git_commit(),
                    "stop_reason": metrics.get("stop_reason"),
                },
                keep=spec.run.checkpoint_keep,
            )
        report(dict(metrics), ckpt_path)
        if last:
            break
    return FitResult(history, stop_reason, model, ckpt_path, facts)
