"""Random erasing: overwrite one random rectangle of each training image with a value.

Zhong et al., "Random Erasing Data Augmentation", AAAI 2020, arXiv:1708.04896 (2017,
Algorithm 1), with torchvision's `RandomErasing` parameters; the thesis (seed 004, sec.
3.3 and 4.2.3) erased with p 0.5 and scale [0.02, 0.25], and found it did not help (C-5,
C-6).

torchvision semantics, per image: with probability p, try up to 10 rectangles with an area
of U(scale) times the image's and an aspect ratio h/w log-uniform in `ratio`, of
round(sqrt(area * ratio)) x round(sqrt(area / ratio)) pixels; the first that fits strictly
inside the image is placed uniformly at random and set to `value`; if none fits the
image is unchanged. The device path draws all 10 tries of every image at once from the
trial's generator and erases by one broadcast mask. It runs after normalization (run order
32 > 30), so `value` 0 is the per-channel mean; without normalize it is black.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy("torch")

ATTEMPTS = 10  # rectangles tried per image before giving up (torchvision's)
Fraction = Annotated[float, Field(gt=0, le=1)]
Ratio = Annotated[float, Field(gt=0, le=100)]


def erasing_boxes(
    n: int,
    height: int,
    width: int,
    p: float,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    gen: torch.Generator | None,
) -> Tensor:
    """(n, 4) long rectangles (top, left, h, w) per image; h = w = 0 where none is erased."""
    dev = gen.device if gen is not None else None
    erase = torch.rand(n, generator=gen, device=dev) < p
    u = torch.rand(4, n, ATTEMPTS, generator=gen, device=dev, dtype=torch.float64)
    area = height * width * (scale[0] + u[0] * (scale[1] - scale[0]))
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_lo + u[1] * (log_hi - log_lo))
    h = (area * aspect).sqrt().round().long()
    w = (area / aspect).sqrt().round().long()
    fits = (h < height) & (w < width)
    first = fits.long().argmax(1, keepdim=True)  # the first try that fits (0 if none does)
    top = (u[2] * (height - h + 1)).floor().long()
    left = (u[3] * (width - w + 1)).floor().long()
    top, left, h, w = (v.gather(1, first)[:, 0] for v in (top, left, h, w))
    keep = erase & fits.any(1)
    return torch.stack((top, left, h * keep, w * keep), dim=1)


def erase_batch(x: Tensor, boxes: Tensor, value: float = 0.0) -> Tensor:
    """Set rectangle (top, left, h, w) of image i of x (N, C, H, W) to `value`."""
    _, _, height, width = x.shape
    top, left, h, w = (v.to(x.device).view(-1, 1, 1, 1) for v in boxes.unbind(1))
    rows = torch.arange(height, device=x.device).view(1, 1, height, 1)
    cols = torch.arange(width, device=x.device).view(1, 1, 1, width)
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    return x.masked_fill(inside, value)


def random_erasing_batch(
    x: Tensor,
    gen: torch.Generator | None,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.25),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
) -> Tensor:
    """Erase one random rectangle of each image of x with probability p (draws from `gen`)."""
    n, _, h, w = x.shape
    return erase_batch(x, erasing_boxes(n, h, w, p, scale, ratio, gen), value)


@register
class RandomErasing(Technique):
    """Erase a random rectangle of every training image with probability p."""

    kind: Literal["random_erasing"] = "random_erasing"
    p: Annotated[float, Field(ge=0, le=1)] = 0.5  # probability an image is erased (thesis 0.5)
    scale: tuple[Fraction, Fraction] = (0.02, 0.25)  # of the image area (thesis; torchvision 0.33)
    ratio: tuple[Ratio, Ratio] = (0.3, 3.3)  # aspect h/w, log-uniform (torchvision's, the paper's)
    value: float = 0.0  # fill, in normalized units: 0 is the per-channel mean (torchvision's)

    paper: ClassVar[str] = "Zhong et al. 2017, arXiv:1708.04896 (Alg. 1); thesis 004 sec. 4.2.3"

    @field_validator("scale", "ratio")
    @classmethod
    def _ordered(cls, value: tuple[float, float], info) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(
                f"{info.field_name} must be (min, max) with min <= max, got {list(value)}; swap them"
            )
        return value

    def on_data(self, pipeline) -> None:
        from torchvision.transforms import v2

        args = (self.p, self.scale, self.ratio, self.value)
        pipeline.add_batch_op(lambda x, gen: random_erasing_batch(x, gen, *args))
        pipeline.add_transform(
            v2.RandomErasing(self.p, scale=self.scale, ratio=self.ratio, value=self.value)
        )
