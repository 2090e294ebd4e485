"""Modules imported on first use, so commands that never touch a tensor never load torch.

    from effray.lazy import lazy
    torch = lazy("torch")          # a stand-in: `torch.zeros(...)` imports torch, then calls it
    nn = lazy("torch.nn")

`effray validate`, `effray --help` and the driver of `effray run` import the technique
and model registries (their pydantic fields are the spec) but train nothing; importing
torch would cost them 1.5-4 s. Modules that define nn.Module subclasses need the real
torch when they are imported, so they live apart (effray.techniques.layers,
effray.models.paper, ...) and are imported where a model is built. Annotations stay
strings (`from __future__ import annotations`), so they load nothing.
"""

from __future__ import annotations

import importlib
import types
from typing import Any


class LazyModule(types.ModuleType):
    """Stands in for module `name`; the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.__dict__["_lazy_target"] = name

    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__dict__["_lazy_target"])
        value = getattr(module, attr)
        self.__dict__[attr] = value  # later reads are plain attribute reads
        return value

    def __repr__(self) -> str:
        return f"<lazy module {self.__dict__['_lazy_target']!r}>"


def lazy(name: str) -> Any:
    """`name` itself when it is imported already, else a LazyModule for it."""
    import sys

    return sys.modules.get(name) or LazyModule(name)
