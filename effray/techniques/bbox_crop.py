"""Bounding-box crop: train on the annotated object only (datasets with boxes).

The Stanford Cars thesis (seed 004, sec. 4.2.5) cropped each training image to its car's
bounding box before the resize (C-10) or, with `erase_background`, pasted that crop at its
place on a white canvas of the original size to keep the proportions (C-11); validation
images are never cropped, since a deployed model sees no boxes. Both made training fail to
converge (best validation accuracy 3.91% and 3.07% against 54.28% without). The boxes are
those of Krause et al., "3D Object Representations for Fine-Grained Categorization"
(ICCV Workshops 2013), the Stanford Cars dataset.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from effray.techniques import register
from effray.techniques.base import Technique


@register
class BboxCrop(Technique):
    """Crop training images to their bounding box (train split only)."""

    kind: Literal["bbox_crop"] = "bbox_crop"
    erase_background: bool = False  # True: the crop on white at its place, original size (C-11)

    requires: ClassVar[tuple[str, ...]] = ("boxes",)
    paper: ClassVar[str] = "thesis 004 sec. 4.2.5 (C-10, C-11); Krause et al. 2013 (boxes)"

    def on_data(self, pipeline) -> None:
        pipeline.set_bbox_crop(self.erase_background)
