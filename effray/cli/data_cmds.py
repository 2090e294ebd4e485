"""Commands about data on this machine: make-sample-cars.

$ effray make-sample-cars data/cars-sample
$ effray train experiments/thesis_c50_stanford_cars.yaml --set data.root=data/cars-sample \\
    --set train.epochs=2
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from effray.cli.common import console, fail


def make_sample_cars(
    directory: Annotated[Path, typer.Argument(help="New (or empty) directory to write.")],
    classes: Annotated[int, typer.Option(min=1, max=196, help="Car classes.")] = 4,
    train: Annotated[int, typer.Option(min=1, help="Images in train/.")] = 96,
    test: Annotated[int, typer.Option(min=1, help="Images in test/.")] = 32,
    min_width: Annotated[int, typer.Option(min=16, help="Narrowest image, pixels.")] = 240,
    max_width: Annotated[int, typer.Option(min=16, help="Widest image, pixels.")] = 400,
    seed: Annotated[int, typer.Option(min=0, help="Same seed, same files.")] = 0,
) -> None:
    """Write a small folder in the thesis's Stanford Cars layout (JPEGs, CSVs with boxes)."""
    from effray.data.cars_sample import make_sample_cars as make

    if min_width > max_width:
        fail(f"--min-width {min_width} is above --max-width {max_width}; swap them")
    try:
        made = make(
            directory,
            classes=classes,
            train=train,
            test=test,
            width=(min_width, max_width),
            seed=seed,
        )
    except FileExistsError as exc:
        fail(f"{exc}; give a new directory (nothing was written)")
    console.print(
        f"wrote {made.train} train and {made.test} test images of {made.classes} classes "
        f"(Stanford Cars layout, with boxes) to {made.root}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"try: effray train experiments/thesis_c50_stanford_cars.yaml "
        f"--set data.root={made.root} --set train.epochs=2",
        highlight=False,
        soft_wrap=True,
    )
