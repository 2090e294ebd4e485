"""The model registry: every net a spec can name, with its knobs and published size.

    >>> from effray.models import build_model, count_params
    >>> model = build_model("paper_cifar_143k_dw", num_classes=10, in_channels=3)
    >>> count_params(model)
    143396

`MODELS` is a plain dict; a new entry is picked up by the spec, the CLI and the
parametrised tests in tests/test_models.py. Parameter conventions: docs/models.md.
The registry loads no torch (the spec and `effray validate` read it): an entry's knobs
live in effray.models.knobs and its net is imported when it is first built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pydantic

from effray.errors import did_you_mean, one_of
from effray.models.knobs import GhostNetArgs, PaperNetArgs

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., nn.Module]  # build(num_classes=..., in_channels=..., **args)
    args: type[pydantic.BaseModel]  # extra knobs; extra="forbid", every field defaulted
    input_shape: tuple[int, int, int]  # (C, H, W) the paper/thesis uses
    num_classes: int  # the paper's/thesis's class count
    description: str
    reference_params: int | None  # published count at input_shape/num_classes


MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)


def _paper(name, table, shape, bias, description, reference) -> ModelEntry:
    def build(**kwargs) -> nn.Module:  # effray.models.paper (torch) loads on first build
        paper = importlib.import_module("effray.models.paper")
        return paper.paper_net_builder(getattr(paper, table), bias=bias)(**kwargs)

    return ModelEntry(name, build, PaperNetArgs, shape, 10, description, reference)


def _ghostnet(**kwargs) -> nn.Module:
    return importlib.import_module("effray.models.ghostnet").build_ghostnet(**kwargs)


_ENTRIES = [
    _paper("paper_mnist_25k", "MNIST_25K", MNIST, False, "MNIST 25K, plain convs", 25_144),
    _paper("paper_mnist_7k", "MNIST_7K", MNIST, False, "MNIST 7K, transition blocks", 7_767),
    _paper("paper_mnist_7k_dw", "MNIST_7K_DW", MNIST, False, "MNIST 7K, one DW conv", 7_611),
    _paper("paper_mnist_5k", "MNIST_5K", MNIST, False, "MNIST 5K, transition blocks", 5_712),
    _paper("paper_mnist_5k_dw", "MNIST_5K_DW", MNIST, False, "MNIST 5K, one DW conv", 5_616),
    _paper(
        "paper_mnist_1p5k_dw", "MNIST_1P5K_DW", MNIST, False, "MNIST 1.5K, four DW convs", 1_560
    ),
    _paper("paper_cifar_143k", "CIFAR_143K", CIFAR, True, "CIFAR-10 143K, plain convs", 143_208),
    _paper(
        "paper_cifar_143k_dw", "CIFAR_143K_DW", CIFAR, True, "CIFAR-10 143K, five DW convs", 143_396
    ),
    ModelEntry(
        name="ghostnet",
        build=_ghostnet,
        args=GhostNetArgs,
        input_shape=(3, 227, 227),
        num_classes=196,
        description="GhostNet 1.0x as in the Stanford Cars thesis (BN head, FC SE)",
        # the thesis's table (4.2.8); its code and logs give 4,153,092 -- see docs/models.md
        reference_params=4_153_090,
    ),
]
MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


def build_model(name: str, *, num_classes: int, in_channels: int, **args) -> nn.Module:
    """Build a registered model; `args` are checked against its knobs first."""
    if name not in MODELS:
        hint = did_you_mean(name, MODELS)
        tip = f"; did you mean {hint!r}?" if hint else ""
        raise ValueError(f"unknown model {name!r} (allowed {one_of(MODELS)}{tip})")
    entry = MODELS[name]
    knobs = entry.args.model_validate(args).model_dump()
    return entry.build(num_classes=num_classes, in_channels=in_channels, **knobs)


def list_models() -> list[dict]:
    """One row per model, its size counted by building it at the published shape."""
    from effray.metrics import count_params

    rows = []
    for entry in MODELS.values():
        model = build_model(
            entry.name, num_classes=entry.num_classes, in_channels=entry.input_shape[0]
        )
        rows.append(
            {
                "name": entry.name,
                "params": count_params(model),
                "reference_params": entry.reference_params,
                "input_shape": entry.input_shape,
                "num_classes": entry.num_classes,
                "description": entry.description,
            }
        )
    return rows


def __getattr__(name: str):
    if name == "count_params":  # effray.metrics imports torch: loaded when asked for
        from effray.metrics import count_params

        return count_params
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["MODELS", "ModelEntry", "build_model", "count_params", "list_models"]
