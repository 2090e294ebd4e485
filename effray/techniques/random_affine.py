"""Random affine transform: rotate, translate, scale and shear each training image.

Affine distortions as training augmentation come from Simard, Steinkraus & Platt, "Best
Practices for Convolutional Neural Networks Applied to Visual Document Analysis" (ICDAR
2003, sec. 2); the parametrisation is torchvision's `RandomAffine`, with the values of the
Stanford Cars thesis (seed 004, sec. 3.3 and 4.2.3: degrees 25, translate [0.1, 0.1],
scale [0.9, 1.1], shear 8; part of its best set, C-7).

torchvision semantics, per image: an angle uniform in [-degrees, degrees] (positive is
clockwise on screen, as in torchvision's `affine`), a shift of round(U(-a, a)) pixels with a = translate[0] * width
horizontally and translate[1] * height vertically (positive is right and down), a scale
uniform in [scale[0], scale[1]] and an x-shear uniform in [-shear, shear] degrees, all
about the image centre (torchvision's `_get_inverse_affine_matrix`). On the device path
each image draws its own parameters from the trial's generator and the whole batch is
resampled at once with F.affine_grid + F.grid_sample (align_corners=False, pixels outside
the image read as 0); the loader path uses `v2.RandomAffine` with `fill=None`, which is
the same resampling (an edge pixel partly outside blends with those zeros once). Its
default `fill=0` instead multiplies such pixels by their coverage a second time, darkening
the edge band by up to ~0.24 on ~8% of the pixels of a 20x28 image (pytorch/vision#6517:
fill 0 is not fill None). tests/test_technique_edges.py holds the two paths to half a
grey level. The thesis ran torchvision's default nearest-neighbour interpolation, where
the two fills agree; `interpolation` selects it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import Field, field_validator

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique

if TYPE_CHECKING:
    from torch import Tensor

torch = lazy("torch")
F = lazy("torch.nn.functional")

Fraction = Annotated[float, Field(ge=0, le=1)]
Zoom = Annotated[float, Field(gt=0, le=10)]


def sample_affine(
    n: int,
    height: int,
    width: int,
    degrees: float,
    translate: tuple[float, float],
    scale: tuple[float, float],
    shear: float,
    gen: torch.Generator | None,
) -> Tensor:
    """(n, 5) float64 parameters per image: angle, tx, ty (whole pixels), scale, x-shear."""
    dev = gen.device if gen is not None else None
    u = torch.rand(5, n, generator=gen, device=dev).double()
    angle = (2 * u[0] - 1) * degrees
    tx = ((2 * u[1] - 1) * (translate[0] * width)).round()
    ty = ((2 * u[2] - 1) * (translate[1] * height)).round()
    s = scale[0] + u[3] * (scale[1] - scale[0])
    sx = (2 * u[4] - 1) * shear
    return torch.stack((angle, tx, ty, s, sx), dim=1)


def affine_theta(params: Tensor, height: int, width: int) -> Tensor:
    """(n, 2, 3) matrices for F.affine_grid: output -> input, in normalized coordinates."""
    angle, tx, ty, s, sx = params.double().unbind(1)
    rot, sx = torch.deg2rad(angle), torch.deg2rad(sx)
    # rotation * shear (torchvision's RSS with no y-shear), its inverse divided by the scale
    a, c = torch.cos(rot), torch.sin(rot)
    b = -torch.cos(rot) * torch.tan(sx) - torch.sin(rot)
    d = -torch.sin(rot) * torch.tan(sx) + torch.cos(rot)
    m00, m01, m10, m11 = d / s, -b / s, -c / s, a / s
    m02 = -(m00 * tx + m01 * ty)  # pixels, relative to the image centre
    m12 = -(m10 * tx + m11 * ty)
    # pixel offsets from the centre -> [-1, 1]: x_n = 2x / W, y_n = 2y / H
    row0 = torch.stack((m00, m01 * height / width, 2 * m02 / width), dim=1)
    row1 = torch.stack((m10 * width / height, m11, 2 * m12 / height), dim=1)
    return torch.stack((row0, row1), dim=1)


def affine_batch(x: Tensor, params: Tensor, mode: str = "bilinear") -> Tensor:
    """Apply each image's (angle, tx, ty, scale, shear) to x (N, C, H, W); outside is 0."""
    n, c, h, w = x.shape
    theta = affine_theta(params, h, w).to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [n, c, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def random_affine_batch(
    x: Tensor,
    gen: torch.Generator | None,
    degrees: float = 25.0,
    translate: tuple[float, float] = (0.1, 0.1),
    scale: tuple[float, float] = (0.9, 1.1),
    shear: float = 8.0,
    mode: str = "bilinear",
) -> Tensor:
    """A random affine transform per image of x, parameters drawn from `gen`."""
    n, _, h, w = x.shape
    params = sample_affine(n, h, w, degrees, translate, scale, shear, gen)
    return affine_batch(x, params, mode)


@register
class RandomAffine(Technique):
    """Rotate, shift, scale and shear every training image at random."""

    kind: Literal["random_affine"] = "random_affine"
    degrees: Annotated[float, Field(ge=0, le=180)] = 25.0  # max rotation, degrees (thesis 25)
    translate: tuple[Fraction, Fraction] = (0.1, 0.1)  # max shift / (width, height) (thesis)
    scale: tuple[Zoom, Zoom] = (0.9, 1.1)  # zoom factor range [min, max] (thesis 0.9-1.1)
    shear: Annotated[float, Field(ge=0, lt=90)] = 8.0  # max x-shear, degrees (thesis 8)
    interpolation: Literal["bilinear", "nearest"] = "bilinear"  # thesis: torchvision's nearest

    paper: ClassVar[str] = "Simard et al. 2003, ICDAR (sec. 2); thesis 004 sec. 4.2.3"

    @field_validator("scale")
    @classmethod
    def _ordered(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] > value[1]:
            raise ValueError(
                f"scale must be (min, max) with min <= max, got {list(value)}; swap them"
            )
        return value

    def on_data(self, pipeline) -> None:
        from torchvision.transforms import v2

        args = (self.degrees, self.translate, self.scale, self.shear)
        mode = self.interpolation
        pipeline.add_batch_op(lambda x, gen: random_affine_batch(x, gen, *args, mode=mode))
        pipeline.add_transform(
            v2.RandomAffine(
                self.degrees,
                translate=list(self.translate),
                scale=list(self.scale),
                shear=self.shear,
                interpolation=v2.InterpolationMode(mode),
                fill=None,  # the device op's edges; fill=0 darkens them (see module docstring)
            )
        )
