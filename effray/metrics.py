"""Efficiency metrics of a model: parameters, size on disk, FLOPs, CPU inference latency.

The latency is the paper's metric (Table 3): seconds to predict the whole test set on
the CPU. We fix the batch size and thread count, warm up once, and report the median
of repeats, so two models measured the same way can be compared.

Size, FLOPs and latency depend on the architecture, not on the weights, so a process
measures each once per architecture (`architecture_key`) and input: a reused Ray
worker running many trials of one net counts FLOPs once and times it once
(`cached_latency`); `cpu_latency` itself always measures (benchmarks time it).
"""

from __future__ import annotations

import copy
import hashlib
import io
import statistics
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")
_CACHE: dict[Hashable, object] = {}  # this process's facts, by architecture and input
CACHE_ENTRIES = 256  # distinct (fact, architecture, input) kept; a search rarely has more


def count_params(model: nn.Module) -> int:
    """Trainable parameters (what the paper's Tables 1-2 count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def architecture_key(model: nn.Module) -> str:
    """A digest of what size, FLOPs and latency depend on, and not of the weights: every
    module's class, its plain settings (kernel, stride, groups, p, ...) and hook counts,
    and every parameter's and buffer's name, shape, stride, dtype and device."""
    parts: list = []
    for name, module in model.named_modules():
        plain = sorted(
            (k, repr(v))
            for k, v in vars(module).items()
            if not k.startswith("_")
            and k != "training"  # train/eval mode changes neither size, FLOPs nor latency
            and isinstance(v, (bool, int, float, str, tuple, type(None)))
        )
        hooks = (len(module._forward_hooks), len(module._forward_pre_hooks))
        parts.append((name, type(module).__module__, type(module).__qualname__, plain, hooks))
    for name, t in (*model.named_parameters(), *model.named_buffers()):
        parts.append((name, tuple(t.shape), t.stride(), str(t.dtype), t.device.type))
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def cached(key: Hashable, compute: Callable[[], T]) -> T:
    """`compute()` once per key in this process (the oldest entry goes past CACHE_ENTRIES)."""
    if key not in _CACHE:
        if len(_CACHE) >= CACHE_ENTRIES:
            del _CACHE[next(iter(_CACHE))]
        _CACHE[key] = compute()
    return _CACHE[key]  # type: ignore[return-value]


def clear_cache() -> None:
    _CACHE.clear()


def size_kb(model: nn.Module) -> float:
    """Size of the saved state_dict (torch.save, fp32) in KiB, as the paper's 'Size' column."""

    def measure() -> float:
        buf = io.BytesIO()
        torch.save(model.state_dict(), buf)
        return buf.tell() / 1024

    return cached(("size_kb", architecture_key(model)), measure)


# Torch functions FlopCounterMode counts as 0 FLOPs (it counts only matrix products,
# convolutions and attention): elementwise ops, norms, pools, shapes, copies.
FLOP_FREE = frozenset(
    "__get__ __getitem__ _set_grad_enabled adaptive_avg_pool2d add avg_pool2d batch_norm "
    "cat clamp contiguous dim dropout expand flatten hardsigmoid hardswish max_pool2d mean "
    "mul pad relu relu_ reshape sigmoid size to view zeros".split()
)


def _flops_by_function(model: nn.Module, x: torch.Tensor) -> int | None:
    """FlopCounterMode's count from the torch functions a forward calls (conv, 2-D linear),
    or None when it calls one this does not know (then FlopCounterMode counts). Same
    formulas as torch's; a function mode, so no torch._dynamo import (~1 s on first use)."""
    from torch.overrides import TorchFunctionMode
    from torch.utils.flop_counter import conv_flop_count

    class Count(TorchFunctionMode):
        total, unknown = 0, False

        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = getattr(func, "__name__", "")
            if name in ("conv1d", "conv2d", "conv3d"):
                w = args[1] if len(args) > 1 else kwargs["weight"]
                shapes = (list(args[0].shape), list(w.shape), list(out.shape))
                self.total += conv_flop_count(*shapes, transposed=False)
            elif name == "linear" and args[0].dim() == 2:
                w = args[1] if len(args) > 1 else kwargs["weight"]
                self.total += 2 * args[0].shape[0] * args[0].shape[1] * w.shape[0]
            elif name not in FLOP_FREE:
                self.unknown = True
            return out

    counter = Count()
    with counter, torch.no_grad():
        model(x)
    return None if counter.unknown else counter.total


def flops_per_image(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image (a multiply-add counts 2), as torch's FlopCounterMode
    counts them (`_flops_by_function` where it knows every function the net calls)."""

    def count() -> int:
        probe = copy.deepcopy(model).cpu().eval()
        x = torch.zeros(1, *input_shape)
        fast = _flops_by_function(probe, x)
        return fast if fast is not None else flop_counter_mode(probe, x)

    return cached(("flops", architecture_key(model), tuple(input_shape)), count)


def flop_counter_mode(model: nn.Module, x: torch.Tensor) -> int:
    """torch's FlopCounterMode over one forward of `model` on `x` (the reference count)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def cpu_latency(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1000,  # images per forward pass
    threads: int = 1,  # torch intra-op threads during the measurement
    repeats: int = 3,  # timed passes over all images; the median is reported
) -> float:
    """Seconds to predict every image in `images` on the CPU (median of repeats, after a warm-up)."""
    probe = copy.deepcopy(model).cpu().eval()
    images = images.cpu()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():

            def one_pass() -> float:
                start = time.perf_counter()
                for i in range(0, len(images), batch_size):
                    probe(images[i : i + batch_size])
                return time.perf_counter() - start

            one_pass()  # warm-up: allocator, kernels, caches
            return statistics.median(one_pass() for _ in range(repeats))
    finally:
        torch.set_num_threads(before)


def cached_latency(
    model: nn.Module,
    images: Callable[[], torch.Tensor],
    shape: tuple[int, ...],
    *,
    batch_size: int,
    threads: int,
    repeats: int,
) -> float:
    """`cpu_latency` over `images()` (float32, of `shape`), measured once per architecture,
    shape and settings in this process: later trials of the same net report that
    measurement, and do not read the images again. (The pixels do not change the time
    of a CNN's forward pass; their number and shape do.)"""
    key = ("latency", architecture_key(model), tuple(shape), batch_size, threads, repeats)

    def measure() -> float:
        x = images()
        if tuple(x.shape) != tuple(shape):
            raise ValueError(f"latency images have shape {tuple(x.shape)}, expected {shape}")
        return cpu_latency(model, x, batch_size=batch_size, threads=threads, repeats=repeats)

    return cached(key, measure)
