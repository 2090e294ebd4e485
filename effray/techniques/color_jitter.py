"""Colour jitter: random brightness, contrast, saturation and hue for each training image.

Random changes of "contrast, brightness and color" as training augmentation come from
Howard, "Some Improvements on Deep Convolutional Neural Network Based Image
Classification", arXiv:1312.5402 (2013, sec. 2.1); the parametrisation is torchvision's
`ColorJitter`, with the values of the Stanford Cars thesis (seed 004, sec. 3.3 and 4.2.3:
brightness, contrast and saturation 0.2, hue 0.1; part of its best set, C-7).

torchvision semantics: each factor is drawn uniformly, brightness, contrast and saturation
from [max(0, 1 - v), 1 + v] and the hue shift from [-v, v] (a fraction of the hue circle);
a value of 0 leaves that property alone. On the device path every image draws its own
four factors from the trial's generator, and they are applied in the fixed order
brightness -> contrast -> saturation -> hue (torchvision shuffles the order for each image;
the loader path, which uses `v2.ColorJitter`, keeps that). Each op is torchvision's, with
a per-image factor broadcast over the batch:

    brightness  x * f
    contrast    f * x + (1 - f) * mean(gray(x))   (one mean per image)
    saturation  f * x + (1 - f) * gray(x)
    hue         RGB -> HSV, h <- (h + f) mod 1, HSV -> RGB

clamped to [0, 1] after each op; gray() uses torchvision's weights (0.2989, 0.587, 0.114).
On one-channel images saturation and hue do nothing, as in torchvision and PIL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy("torch")

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale (ITU-R 601 luma)
SECTOR_OFFSETS = (5.0, 3.0, 1.0)  # n of R, G, B in the closed-form HSV -> RGB
TINY = 2.0**-126  # torch.finfo(torch.float32).tiny: divisor that turns 0 / 0 into 0


def jitter_factors(
    n: int, brightness: float, contrast: float, saturation: float, hue: float, gen
) -> Tensor:
    """(4, n) factors, one column per image: brightness, contrast, saturation, hue shift."""
    dev = gen.device if gen is not None else None
    u = torch.rand(4, n, generator=gen, device=dev)
    lo = torch.tensor(
        [max(0.0, 1 - brightness), max(0.0, 1 - contrast), max(0.0, 1 - saturation), -hue],
        device=u.device,
    )
    hi = torch.tensor([1 + brightness, 1 + contrast, 1 + saturation, hue], device=u.device)
    return lo[:, None] + u * (hi - lo)[:, None]


def _per_image(f: Tensor, x: Tensor) -> Tensor:
    return f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)


def _gray(x: Tensor) -> Tensor:
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (GRAY_WEIGHTS[0] * r + GRAY_WEIGHTS[1] * g + GRAY_WEIGHTS[2] * b).unsqueeze(1)


def _blend(x: Tensor, other: Tensor, f: Tensor) -> Tensor:
    f = _per_image(f, x)
    return (f * x + (1 - f) * other).clamp_(0, 1)


def adjust_brightness_batch(x: Tensor, f: Tensor) -> Tensor:
    """Image i scaled by f[i], clamped to [0, 1]."""
    return (x * _per_image(f, x)).clamp_(0, 1)


def adjust_contrast_batch(x: Tensor, f: Tensor) -> Tensor:
    """Image i blended with the mean of its grayscale version by f[i]."""
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f)


def adjust_saturation_batch(x: Tensor, f: Tensor) -> Tensor:
    """Image i blended with its grayscale version by f[i]; one-channel images unchanged."""
    return x if x.shape[1] == 1 else _blend(x, _gray(x), f)


def adjust_hue_batch(x: Tensor, f: Tensor) -> Tensor:
    """Hue of image i rotated by f[i] (a fraction of the circle); one channel unchanged.

    RGB -> HSV as Pillow (and torchvision) do, with the hue h in sixths of the circle; back
    with the closed form c = v - v s clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6, n = 5,
    3, 1 for R, G, B: torchvision's six-sector table without its gather (2-3x faster here).
    """
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    delta = v - torch.minimum(torch.minimum(r, g), b)
    s = delta / v.clamp_min(TINY)  # v = 0 means delta = 0: s = 0
    d = delta.clamp_min(TINY)  # delta = 0 means r = g = b: any hue gives the same pixel
    h = torch.where(v == r, (g - b) / d, torch.where(v == g, (b - r) / d + 2, (r - g) / d + 4))
    h = h + 6 * f.to(device=x.device, dtype=x.dtype).view(-1, 1, 1)
    k = (torch.tensor(SECTOR_OFFSETS, device=x.device).view(1, 3, 1, 1) + h[:, None]) % 6
    return v[:, None] * (1 - s[:, None] * torch.minimum(k, 4 - k).clamp_(0, 1))


def color_jitter_batch(
    x: Tensor,
    gen: torch.Generator | None,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
    hue: float = 0.1,
) -> Tensor:
    """Jitter each image of x (N, C, H, W) in [0, 1] with its own factors drawn from `gen`."""
    f = jitter_factors(x.shape[0], brightness, contrast, saturation, hue, gen)
    ops = (
        adjust_brightness_batch,
        adjust_contrast_batch,
        adjust_saturation_batch,
        adjust_hue_batch,
    )
    for op, v, factors in zip(ops, (brightness, contrast, saturation, hue), f, strict=True):
        if v > 0:  # a value of 0 is exactly the identity; skip its op
            x = op(x, factors)
    return x


@register
class ColorJitter(Technique):
    """Randomly change brightness, contrast, saturation and hue of every training image."""

    kind: Literal["color_jitter"] = "color_jitter"
    brightness: Annotated[float, Field(ge=0, le=10)] = 0.2  # factor in [1-v, 1+v] (thesis 0.2)
    contrast: Annotated[float, Field(ge=0, le=10)] = 0.2  # factor in [1-v, 1+v] (thesis 0.2)
    saturation: Annotated[float, Field(ge=0, le=10)] = 0.2  # RGB only; [1-v, 1+v] (thesis 0.2)
    hue: Annotated[float, Field(ge=0, le=0.5)] = 0.1  # RGB only; turns of the circle (thesis 0.1)

    paper: ClassVar[str] = "Howard 2013, arXiv:1312.5402 (sec. 2.1); thesis 004 sec. 4.2.3"

    def on_data(self, pipeline) -> None:
        from torchvision.transforms import v2

        values = (self.brightness, self.contrast, self.saturation, self.hue)
        pipeline.add_batch_op(lambda x, gen: color_jitter_batch(x, gen, *values))
        pipeline.add_transform(v2.ColorJitter(*values))
