"""Checks that need a dataset's metadata, never its pixels: what `effray train` would
otherwise refuse only after loading the data, found by `effray validate` and by `effray
run` before Ray starts.

    $ effray validate experiments/quickstart.yaml --set data.train_subset=70000
    ✗ data.train_subset: train_subset is larger than the 60000 train images of
      'fashion_mnist' (value 70000; allowed <= 60000)

The facts come from the dataset registry (effray.data.registry: sizes, shape, the
loader's image side) or, for synthetic data, from the spec. A dataset whose sizes only
its files know (stanford_cars, image_folder) is checked when it is loaded.

Values that leave a technique nothing to do, or everything (a cutout hole as large as
the image, grayscale on one-channel data), are warnings, not errors: NoEffectWarning,
as a technique says when it changed nothing.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from effray.data.registry import DATASETS, image_side
from effray.errors import Problem, problem
from effray.techniques import NoEffectWarning

if TYPE_CHECKING:
    from effray.spec.schema import DataSpec, ExperimentSpec


def split_sizes(data: DataSpec) -> tuple[int, int, str] | None:
    """(train images, validation images, the split validation comes from) before any
    subset, as effray.data.splits.pick_indices makes them; None when only files know."""
    info = DATASETS[data.name]
    if info.sizes is not None:
        n_train, n_test = info.sizes
    elif info.generated:
        n_train, n_test = data.train_size, data.val_size
    else:
        return None
    if data.val_split == "test":
        return n_train, n_test, "test"
    n_val = max(1, round(data.val_split * n_train))  # pick_indices's rule
    return n_train - n_val, n_val, "train"


def channels(data: DataSpec) -> int:
    """Channels of the images as read, before grayscale: the registry's shape, the
    loader's RGB, or data.channels for synthetic data."""
    info = DATASETS[data.name]
    if info.shape is not None:
        return info.shape[0]
    return 3 if info.path == "loader" else data.channels


def subset_problems(data: DataSpec) -> list[Problem]:
    """train_subset / val_subset larger than the images there are (after val_split)."""
    sizes = split_sizes(data)
    if sizes is None:
        return []
    n_train, n_val, val_from = sizes
    out = []
    for field, n, what in (
        ("train_subset", n_train, "train images"),
        ("val_subset", n_val, f"validation images (from the {val_from} split)"),
    ):
        k = getattr(data, field)
        if k is not None and k > n:
            held = (
                f"; val_split {data.val_split} holds out {n_val} of them"
                if field == "train_subset" and val_from == "train"
                else ""
            )
            out.append(
                problem(
                    f"data.{field}",
                    f"{field} is larger than the {n} {what} of {data.name!r}{held}",
                    value=k,
                    allowed=f"<= {n}",
                )
            )
    return out


def normalize_problems(spec: ExperimentSpec) -> list[Problem]:
    """normalize's mean/std need 1 value or one per channel of every trial it is in
    (grayscale, when the trial has it, leaves one channel)."""
    from effray.spec.expand import technique_sets

    if spec.search is not None and spec.search.stages:
        return []  # a greedy search's trials are checked path by path (search_checks)
    try:
        sets = technique_sets(spec)
    except KeyError:  # an ablation naming no technique: reported by the ablation check
        sets = [("all", list(spec.techniques))]
    index = {t.name: i for i, t in enumerate(spec.techniques)}
    native = channels(spec.data)
    out, seen = [], set()
    for group, chosen in sets:
        gray = any(t.kind == "grayscale" for t in chosen)
        n = 1 if gray else native
        for t in chosen:
            if t.kind != "normalize":
                continue
            i = index[t.name]
            for name in ("mean", "std"):
                given = getattr(t, name)
                if given is None or len(given) in (1, n) or (i, name, n) in seen:
                    continue
                seen.add((i, name, n))
                why = " after grayscale" if gray and native != 1 else ""
                where = f" in trial group {group!r}" if gray and native != 1 else ""
                out.append(
                    problem(
                        f"techniques.{i}.{name}",
                        f"normalize's {name} has {len(given)} values but the data has {n} "
                        f"channel{'s' if n != 1 else ''}{why}{where}",
                        value=list(given),
                        allowed=f"a list of 1 or {n} values" if n != 1 else "a list of 1 value",
                    )
                )
    return out


def no_effect_warnings(spec: ExperimentSpec) -> list[str]:
    """Techniques the data leaves with nothing to do, or everything, in the NoEffectWarning
    style ("cutout: …")."""
    side = image_side(spec.data)
    out = []
    for t in spec.techniques:
        if t.kind == "cutout" and t.size >= side:
            out.append(
                f"cutout: size {t.size} is not smaller than the {side}-pixel image side, "
                "so a hole centred near the middle blanks the whole image; use a size "
                f"below {side} (the paper cuts 10x10 holes in 28x28 images)"
            )
        if t.kind == "grayscale" and channels(spec.data) == 1:
            out.append(
                f"grayscale: {spec.data.name!r} images already have one channel; "
                "nothing to convert (remove it)"
            )
    return out


def check_metadata(spec: ExperimentSpec) -> list[Problem]:
    """Every check that needs the dataset's metadata only; warns about no-effect values."""
    for message in no_effect_warnings(spec):
        warnings.warn(message, NoEffectWarning, stacklevel=2)
    return subset_problems(spec.data) + normalize_problems(spec)
