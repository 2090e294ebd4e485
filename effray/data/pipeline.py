"""DataPipeline: what data techniques configure (in `on_data`) before any data is built.

Each path uses its own kind of step: batch ops on the device path, transforms on the loader
path, so a data technique adds both. Normalization is one position in that order; when
its mean/std are not given they are measured on the un-augmented train images used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from effray.data.augment import Normalize, to_float


@dataclass
class _Step:
    kind: str  # "op" (device path), "transform" (loader path) or "normalize" (both)
    fn: Callable | None
    train: bool
    eval: bool


class DataPipeline:
    """What data techniques configure in `on_data`; `build_data` turns it into a bundle."""

    def __init__(self) -> None:
        self.steps: list[_Step] = []
        self.mean: list[float] | None = None  # None: computed from the train split
        self.std: list[float] | None = None
        self.grayscale = False  # one channel on both splits, before anything else
        self.bbox_crop = False  # stanford_cars train images cropped to their box
        self.erase_background = False  # the crop pasted on white at its place, original size

    def add_batch_op(self, op, *, train: bool = True, eval: bool = False) -> None:
        """Device path: `op(x float32 (N,C,H,W), gen) -> x`, run in the order added."""
        self.steps.append(_Step("op", op, train, eval))

    def add_transform(self, transform, *, train: bool = True, eval: bool = False) -> None:
        """Loader path: a torchvision.transforms.v2 transform on one image, in order.

        Transforms before normalization see uint8 (C,H,W) tensors, those after it floats.
        """
        self.steps.append(_Step("transform", transform, train, eval))

    def set_normalize(self, mean: list[float] | None = None, std: list[float] | None = None):
        """Normalize both splits here in the order; a None is measured on the train split."""
        self.steps = [s for s in self.steps if s.kind != "normalize"]
        self.steps.append(_Step("normalize", None, True, True))
        self.mean, self.std = mean, std

    def set_grayscale(self) -> None:
        self.grayscale = True

    def set_bbox_crop(self, erase_background: bool = False) -> None:
        self.bbox_crop, self.erase_background = True, erase_background

    @property
    def normalizes(self) -> bool:
        return any(s.kind == "normalize" for s in self.steps)

    def chain(self, kind: str, train: bool, norm: Normalize | None) -> list[Callable]:
        """The steps of one path and split, normalization in its place (loader: + to float)."""
        out: list[Callable] = []
        floated = kind == "op"  # device ops receive floats; loader transforms start uint8
        for s in self.steps:
            if s.kind == "normalize":
                out += [norm] if floated else [to_float, norm]
                floated = True
            elif s.kind == kind and (s.train if train else s.eval):
                out.append(s.fn)
        return out if floated else [*out, to_float]
