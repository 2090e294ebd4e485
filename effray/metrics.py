"""Efficiency metrics of a model: parameters, size on disk, FLOPs, CPU inference latency.

The latency is the paper's metric (Table 3): seconds to predict the whole test set on
the CPU. We fix the batch size and thread count, warm up once, and report the median
of repeats, so two models measured the same way can be compared.
"""

from __future__ import annotations

import copy
import io
import statistics
import time

import torch
from torch import nn


def count_params(model: nn.Module) -> int:
    """Trainable parameters (what the paper's Tables 1-2 count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def size_kb(model: nn.Module) -> float:
    """Size of the saved state_dict (torch.save, fp32) in KiB, as the paper's 'Size' column."""
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell() / 1024


def flops_per_image(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Forward FLOPs for one image (a multiply-add counts 2), by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    probe = copy.deepcopy(model).cpu().eval()
    x = torch.zeros(1, *input_shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        probe(x)
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
