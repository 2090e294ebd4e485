"""Per-channel normalization: (x - mean) / std on both splits.

Input standardization as recommended by LeCun et al., "Efficient BackProp" (1998,
sec. 4.3); the thesis normalized Stanford Cars with its train-set statistics
(/work/shared seed 004, sec. 3.3). With mean/std unset they are measured on the
train images used (after subsetting), so a subset is normalized by its own statistics.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import model_validator
from pydantic_core import PydanticCustomError

from effray.techniques import register
from effray.techniques.base import Technique


@register
class Normalize(Technique):
    kind: Literal["normalize"] = "normalize"
    mean: list[float] | None = None  # per channel, in [0, 1] pixel units; None: from the train set
    std: list[float] | None = None  # per channel, > 0; None: from the train set

    paper: ClassVar[str] = "LeCun et al. 1998, Efficient BackProp (sec. 4.3)"

    @model_validator(mode="after")
    def _check_values(self):
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise PydanticCustomError(
                "normalize_lengths",
                "mean has {m} values but std has {s}; give one value per channel in both",
                {"m": len(self.mean), "s": len(self.std)},
            )
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and not values:
                raise PydanticCustomError(
                    "normalize_empty", "{name} is empty; give one value per channel or omit it",
                    {"name": name},
                )  # fmt: skip
        if self.std is not None and any(v <= 0 for v in self.std):
            raise PydanticCustomError(
                "normalize_std", "std must be > 0 (value {std})", {"std": self.std}
            )
        return self

    def on_data(self, pipeline) -> None:
        pipeline.set_normalize(self.mean, self.std)
