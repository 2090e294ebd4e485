"""effray: reproduce efficient-CNN papers from one YAML spec.

    >>> from effray import load_spec, fit
    >>> result = fit(load_spec("experiments/quickstart.yaml"))

Public API: load_spec, ExperimentSpec, expand, fit, run (Ray Tune).
"""

from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "load_spec": "effray.spec",
    "ExperimentSpec": "effray.spec",
    "expand": "effray.spec",
    "fit": "effray.train",
    "run": "effray.tune",
}


def __getattr__(name: str):
    # Lazy so `import effray` stays light (torch and ray load only when used).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'effray' has no attribute {name!r}")


__all__ = ["ExperimentSpec", "__version__", "expand", "fit", "load_spec", "run"]
