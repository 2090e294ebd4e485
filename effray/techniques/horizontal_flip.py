"""Random horizontal flip: mirror each training image left-right with probability p.

The classic label-preserving transformation of Krizhevsky et al., "ImageNet
Classification with Deep Convolutional Neural Networks" (NeurIPS 2012, sec. 4.1);
batched on the device as in KellerJordan/cifar10-airbench.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique

augment = lazy("effray.data.augment")  # batch ops; they need torch


@register
class HorizontalFlip(Technique):
    kind: Literal["horizontal_flip"] = "horizontal_flip"
    p: Annotated[float, Field(ge=0, le=1)] = 0.5  # probability that an image is flipped

    paper: ClassVar[str] = "Krizhevsky et al. 2012, ImageNet Classification (sec. 4.1)"

    def on_data(self, pipeline) -> None:
        from torchvision.transforms import v2

        p = self.p
        pipeline.add_batch_op(lambda x, gen: augment.hflip_batch(x, p, gen))
        pipeline.add_transform(v2.RandomHorizontalFlip(p))
