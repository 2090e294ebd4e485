"""Random crop after padding: shift each training image by up to `padding` pixels.

The standard CIFAR augmentation of He et al., "Deep Residual Learning for Image
Recognition" (CVPR 2016, sec. 4.2: 4 pixels padded on each side, a 32x32 crop sampled
from the padded image); batched on the device as in KellerJordan/cifar10-airbench.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique

augment = lazy("effray.data.augment")  # batch ops; they need torch


class SameSizeRandomCrop:
    """Loader path: torchvision v2 RandomCrop back to the image's own size after padding."""

    def __init__(self, padding: int):
        self.padding = padding

    def __call__(self, img):
        from torchvision.transforms import v2

        return v2.RandomCrop(tuple(img.shape[-2:]), padding=self.padding)(img)


@register
class RandomCrop(Technique):
    kind: Literal["random_crop"] = "random_crop"
    padding: Annotated[int, Field(ge=0, le=64)] = 4  # pixels of zero padding per side (ResNet's 4)

    paper: ClassVar[str] = "He et al. 2016, Deep Residual Learning (sec. 4.2)"

    def on_data(self, pipeline) -> None:
        padding = self.padding
        pipeline.add_batch_op(lambda x, gen: augment.random_crop_batch(x, padding, gen))
        pipeline.add_transform(SameSizeRandomCrop(padding))
