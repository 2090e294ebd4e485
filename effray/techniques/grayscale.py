"""Grayscale: train and evaluate on one-channel images.

The Stanford Cars thesis (seed 004, sec. 4.2.4) converted its inputs to grayscale so that
the network would tell car models apart by their design, not their paint, and widened the
first convolution to any number of input channels; it found no gain (C-8, C-9, C-12 all
below their RGB twins). The luma is ITU-R BT.601's, 0.299 R + 0.587 G + 0.114 B, computed
exactly as PIL's convert("L") does (its 16-bit fixed point; `effray.data.splits.to_grayscale`),
so both data paths give PIL's uint8 values bit for bit (tests/test_technique_edges.py).
It is applied to both splits once, when the data is loaded, before every other op (on the
loader path also before the resize), and the model is built with the one channel that
results. One-channel datasets are left as they are.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from effray.techniques import register
from effray.techniques.base import Technique


@register
class Grayscale(Technique):
    """Convert every image, train and validation, to one luma channel."""

    kind: Literal["grayscale"] = "grayscale"

    paper: ClassVar[str] = "thesis 004 sec. 4.2.4 (grayscale conversion); ITU-R BT.601 luma"

    def on_data(self, pipeline) -> None:
        pipeline.set_grayscale()
