"""Technique registry and the one run-order table.

Techniques run in the order of RUN_ORDER (lower first), never in YAML order, so a
spec means the same thing however its list is written. Plugins
(`kind: my_pkg.my_module:MyTechnique`) run after the built-ins unless their class
sets `order`.
"""

from __future__ import annotations

import importlib

from effray.errors import did_you_mean, one_of, problem
from effray.techniques.base import NoEffectWarning, Technique, TrainState

TECHNIQUES: dict[str, type[Technique]] = {}

# The run order. Data-pipeline ops first (their order is the order images are
# transformed in), then model surgery, then per-batch edits (cutout before mixup:
# holes are cut in each image, then images are mixed), then the step owner, the LR
# owners, weight averaging and finally control flow.
RUN_ORDER: dict[str, int] = {
    "bbox_crop": 10,  # crop to the car's box before any resize (train split only)
    "grayscale": 12,
    "random_crop": 14,
    "random_affine": 16,
    "horizontal_flip": 18,
    "color_jitter": 20,
    "normalize": 30,  # after colour ops, before erasing-style ops
    "random_erasing": 32,
    "blurpool": 40,
    "squeeze_excite": 42,
    "dropout": 44,
    "cutout": 50,
    "mixup": 52,
    "label_smoothing": 54,
    "sam": 60,
    "one_cycle": 70,
    "multistep_lr": 71,
    "exponential_lr": 72,
    "reduce_lr_on_plateau": 73,
    "swa": 80,
    "early_stopping": 90,
}
PLUGIN_ORDER = 100


def register(cls: type[Technique]) -> type[Technique]:
    """Class decorator: add a technique under the default of its `kind` field."""
    kind = cls.model_fields["kind"].default
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__}: give `kind` a Literal default to register it")
    TECHNIQUES[kind] = cls
    return cls


def run_order(t: Technique) -> tuple[int, str]:
    order = RUN_ORDER.get(t.kind, getattr(type(t), "order", PLUGIN_ORDER))
    return (order, t.kind)


def ordered(techniques: list[Technique]) -> list[Technique]:
    return sorted(techniques, key=run_order)


def resolve_kind(kind: object, path: str):
    """The technique class for `kind`, or a Problem saying why there is none."""
    if kind is None:
        return problem(path, "missing: every technique needs a kind", allowed=one_of(TECHNIQUES))
    if not isinstance(kind, str):
        return problem(
            path, "technique kind must be a string", value=kind, allowed=one_of(TECHNIQUES)
        )
    if kind in TECHNIQUES:
        return TECHNIQUES[kind]
    if ":" in kind:
        module_name, _, attr = kind.partition(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # any import failure is the user's plugin path
            return problem(
                path,
                f"cannot import plugin module {module_name!r}: {exc}",
                value=kind,
                allowed="'package.module:ClassName' importable on this machine",
            )
        cls = getattr(module, attr, None)
        if not (isinstance(cls, type) and issubclass(cls, Technique)):
            return problem(
                path,
                f"{attr!r} in {module_name!r} is not a subclass of effray Technique",
                value=kind,
                allowed="'package.module:ClassName' naming a Technique subclass",
            )
        return cls
    return problem(
        path,
        "unknown technique",
        value=kind,
        allowed=one_of(TECHNIQUES) + " or 'package.module:ClassName'",
        suggestion=did_you_mean(kind, TECHNIQUES),
    )


def _load_builtins() -> None:
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        if info.name not in ("base", "layers"):  # layers: nn.Modules, imported when used
            importlib.import_module(f"{__name__}.{info.name}")


_load_builtins()

__all__ = [
    "NoEffectWarning",
    "PLUGIN_ORDER",
    "RUN_ORDER",
    "TECHNIQUES",
    "Technique",
    "TrainState",
    "ordered",
    "register",
    "resolve_kind",
]
