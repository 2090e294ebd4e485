"""The models' knobs: the pydantic models a spec's `model:` block is checked against.

Apart from the nets (which need torch to be defined) so that the model registry, and
with it `effray validate`, loads no torch.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field


class PaperNetArgs(BaseModel):
    """Knobs of the paper nets; none changes the parameter count."""

    model_config = ConfigDict(extra="forbid")

    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0  # before the classifier; 0 = no layer


class GhostNetArgs(BaseModel):
    """The thesis's GhostNet knobs (sections 4.2.7 and 4.2.8)."""

    model_config = ConfigDict(extra="forbid")

    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.2  # probability before the last Linear
    out_channels: Annotated[int, Field(ge=1)] = 1280  # features fed to the last Linear
    width_mult: Annotated[float, Field(gt=0)] = 1.0  # scales every width but out_channels
