"""The thesis's image techniques: grayscale, color_jitter, random_affine, random_erasing, bbox_crop.

Property tests check each batched device op against its definition and against
torchvision's single-image functional op with the same factors; loader tests run each
technique's v2 transform on a PIL and a uint8 image; end-to-end tests train through
`fit` on the synthetic dataset and on a tiny Stanford Cars directory in its real format.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from test_data import write_cars_prepared  # tests/ is on sys.path (no package)
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from effray.data import DataPipeline, Normalize, build_data
from effray.errors import SpecError
from effray.spec import DataSpec, spec_from_dict
from effray.techniques import TECHNIQUES, NoEffectWarning, ordered
from effray.techniques.color_jitter import (
    adjust_brightness_batch,
    adjust_contrast_batch,
    adjust_hue_batch,
    adjust_saturation_batch,
    color_jitter_batch,
    jitter_factors,
)
from effray.techniques.random_affine import affine_batch, random_affine_batch, sample_affine
from effray.techniques.random_erasing import erasing_boxes, random_erasing_batch
from effray.train import fit

CPU = torch.device("cpu")
IMAGE_KINDS = ["grayscale", "color_jitter", "random_affine", "random_erasing", "bbox_crop"]
OP_KINDS = ["color_jitter", "random_affine", "random_erasing"]  # those with a device op
SYNTHETIC = {"name": "synthetic", "channels": 3, "train_size": 256, "val_size": 64, "size": 16}
TRAIN = {"epochs": 1, "batch_size": 64, "latency_repeats": 0, "threads": 2}


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images(n: int = 16, c: int = 3, h: int = 12, w: int = 10, seed: int = 0) -> torch.Tensor:
    """Random images in [0, 1] with the cases HSV code gets wrong: gray, black, ties, white."""
    x = torch.rand(n, c, h, w, generator=gen(seed))
    x[0] = 0.5
    x[1, :, :3] = 0.0
    x[2, 0] = x[2, -1]
    x[3, :, -2:] = 1.0
    return x


def pipeline_of(*techniques) -> DataPipeline:
    pipeline = DataPipeline()
    for t in ordered(list(techniques)):
        t.on_data(pipeline)
    return pipeline


def device_op(kind: str, **args):
    """The batched op a technique adds to the device path."""
    (op,) = [s.fn for s in pipeline_of(TECHNIQUES[kind](**args)).steps if s.kind == "op"]
    return op


# ---------------------------------------------------------------------------------
# color_jitter
# ---------------------------------------------------------------------------------


def test_color_jitter_with_all_zeros_is_identity():
    op = device_op("color_jitter", brightness=0, contrast=0, saturation=0, hue=0)
    x = images()
    assert torch.equal(op(x, gen()), x)


def test_brightness_factor_f_gives_x_times_f_clamped():
    x = images(64)
    f = jitter_factors(64, 0.5, 0, 0, 0, gen(3))
    assert torch.equal(f[1:3], torch.ones(2, 64)) and torch.equal(f[3], torch.zeros(64))
    assert 0.5 <= f[0].min() < 0.6 and 1.4 < f[0].max() <= 1.5  # U[1 - v, 1 + v]
    out = device_op("color_jitter", brightness=0.5, contrast=0, saturation=0, hue=0)(x, gen(3))
    assert torch.equal(out, (x * f[0].view(64, 1, 1, 1)).clamp(0, 1))
    assert (out == 1).sum() > (x == 1).sum()  # brightened pixels were clamped at 1


@pytest.mark.parametrize("prop", ["brightness", "contrast", "saturation", "hue"])
def test_each_image_draws_its_own_factor(prop):
    x = torch.rand(1, 3, 8, 8, generator=gen()).expand(32, -1, -1, -1)  # one image, 32 times
    args = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, prop: 0.4}
    out = color_jitter_batch(x, gen(1), **args)
    distinct = {tuple(o.flatten()[:64].tolist()) for o in out}
    assert len(distinct) == 32


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize(
    ("batched", "single", "low", "high"),
    [
        (adjust_brightness_batch, TF.adjust_brightness, 0.0, 2.0),
        (adjust_contrast_batch, TF.adjust_contrast, 0.0, 2.0),
        (adjust_saturation_batch, TF.adjust_saturation, 0.0, 2.0),
        (adjust_hue_batch, TF.adjust_hue, -0.5, 0.5),
    ],
    ids=["brightness", "contrast", "saturation", "hue"],
)
def test_batched_op_matches_torchvision_per_image(batched, single, low, high, channels):
    x = images(16)[:, :channels]
    f = low + (high - low) * torch.rand(16, generator=gen(2))
    expected = torch.stack([single(x[i], float(f[i])) for i in range(16)])
    torch.testing.assert_close(batched(x, f), expected, atol=1e-5, rtol=0)


def test_jitter_applies_brightness_contrast_saturation_hue_in_that_order():
    x = images(8)
    f = jitter_factors(8, 0.2, 0.3, 0.4, 0.1, gen(4))
    expected = x
    for op, factors in zip(
        (adjust_brightness_batch, adjust_contrast_batch, adjust_saturation_batch, adjust_hue_batch),
        f,
        strict=True,
    ):
        expected = op(expected, factors)
    assert torch.equal(color_jitter_batch(x, gen(4), 0.2, 0.3, 0.4, 0.1), expected)


def test_saturation_and_hue_leave_one_channel_images_alone():
    x = images(8, c=1)
    assert torch.equal(color_jitter_batch(x, gen(), 0, 0, 0.9, 0.5), x)


def test_color_jitter_validates():
    cls = TECHNIQUES["color_jitter"]
    with pytest.raises(ValidationError, match="hue"):
        cls(hue=0.6)
    with pytest.raises(ValidationError, match="brightness"):
        cls(brightness=-0.1)
    assert cls().model_dump(exclude={"kind", "ablate"}) == {
        "brightness": 0.2,
        "contrast": 0.2,
        "saturation": 0.2,
        "hue": 0.1,
    }  # the thesis's values


# ---------------------------------------------------------------------------------
# random_affine
# ---------------------------------------------------------------------------------


def test_affine_with_nothing_to_do_is_identity():
    op = device_op("random_affine", degrees=0, translate=(0, 0), scale=(1, 1), shear=0)
    x = images(8, h=16, w=20)
    torch.testing.assert_close(op(x, gen()), x, atol=1e-5, rtol=0)


def test_pure_translation_moves_a_bright_pixel_by_the_drawn_offset():
    n, side, centre = 32, 16, 8
    x = torch.zeros(n, 1, side, side)
    x[:, 0, centre, centre] = 1.0
    args = {"degrees": 0, "translate": (0.25, 0.25), "scale": (1.0, 1.0), "shear": 0}
    params = sample_affine(n, side, side, gen=gen(5), **args)
    out = random_affine_batch(x, gen(5), **args)
    tx, ty = params[:, 1].long(), params[:, 2].long()
    assert tx.abs().max() <= 4 and ty.abs().max() <= 4 and len(set(tx.tolist())) > 3
    expected = torch.zeros_like(x)
    expected[torch.arange(n), 0, centre + ty, centre + tx] = 1.0
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("size", [(16, 16), (12, 20)])
@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_affine_matches_torchvision_per_image(size, mode):
    h, w = size
    x = images(8, h=h, w=w)
    params = sample_affine(8, h, w, 25.0, (0.1, 0.2), (0.8, 1.2), 8.0, gen(6))
    expected = torch.stack(
        [
            TF.affine(
                x[i],
                angle=float(a),
                translate=[int(tx), int(ty)],
                scale=float(s),
                shear=[float(sh), 0.0],
                interpolation=v2.InterpolationMode(mode),
            )
            for i, (a, tx, ty, s, sh) in enumerate(params)
        ]
    )
    torch.testing.assert_close(affine_batch(x, params, mode), expected, atol=1e-5, rtol=0)


def test_affine_parameters_stay_in_their_ranges():
    p = sample_affine(4096, 20, 10, 25.0, (0.1, 0.2), (0.9, 1.1), 8.0, gen())
    angle, tx, ty, scale, shear = p.unbind(1)
    assert angle.abs().max() <= 25 and angle.abs().max() > 24
    assert tx.abs().max() == 1 and ty.abs().max() == 4  # round(U(-1, 1)), round(U(-4, 4))
    assert 0.9 <= scale.min() and scale.max() <= 1.1 and shear.abs().max() <= 8


def test_random_affine_validates():
    cls = TECHNIQUES["random_affine"]
    with pytest.raises(ValidationError, match="min <= max"):
        cls(scale=(1.1, 0.9))
    with pytest.raises(ValidationError, match="translate"):
        cls(translate=(0.1, 1.5))
    with pytest.raises(ValidationError, match="translate"):
        cls(translate=(0.1,))


# ---------------------------------------------------------------------------------
# random_erasing
# ---------------------------------------------------------------------------------


def test_erasing_with_p_0_is_identity():
    x = images()
    assert torch.equal(device_op("random_erasing", p=0.0)(x, gen()), x)


def test_erasing_with_p_1_erases_one_rectangle_of_the_drawn_area_per_image():
    n, side, (low, high), (r0, r1) = 64, 40, (0.02, 0.25), (0.3, 3.3)
    x = torch.ones(n, 3, side, side)
    out = random_erasing_batch(x, gen(8), p=1.0, scale=(low, high), ratio=(r0, r1))
    boxes = erasing_boxes(n, side, side, 1.0, (low, high), (r0, r1), gen(8))
    erased = out == 0
    assert torch.equal(erased, erased[:, :1].expand_as(erased))  # all channels alike
    for mask, (top, left, h, w) in zip(erased[:, 0], boxes.tolist(), strict=True):
        rows, cols = mask.any(1).nonzero()[:, 0], mask.any(0).nonzero()[:, 0]
        assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == (
            top,
            top + h,
            left,
            left + w,
        )
        assert mask.sum() == h * w  # one filled rectangle, strictly inside the image
        # h = round(sqrt(a r)), w = round(sqrt(a / r)) for an area a in scale * H * W
        # and r in ratio: so (h - 1/2)(w - 1/2) <= a <= (h + 1/2)(w + 1/2)
        assert (h - 0.5) * (w - 0.5) <= high * side * side
        assert (h + 0.5) * (w + 0.5) >= low * side * side
        assert (h - 0.5) / (w + 0.5) <= r1 and (h + 0.5) / (w - 0.5) >= r0
    fractions = erased[:, 0].float().mean((1, 2))
    assert fractions.min() > 0 and fractions.max() < 0.3 and fractions.std() > 0.03


def test_erasing_probability_and_the_fill_value():
    x = torch.ones(400, 1, 16, 16)
    out = random_erasing_batch(x, gen(9), p=0.5, value=-2.0)
    hit = (out == -2.0).flatten(1).any(1)
    assert 0.4 < hit.float().mean() < 0.6
    assert torch.equal(out[~hit], x[~hit])


def test_erasing_gives_up_when_no_rectangle_fits():
    x = torch.ones(16, 1, 8, 8)  # area 0.9 of 8x8 needs a side >= 8 at any ratio
    assert torch.equal(random_erasing_batch(x, gen(), p=1.0, scale=(0.9, 1.0)), x)


def test_erasing_runs_after_normalize_so_zero_is_the_mean():
    techniques = [
        TECHNIQUES["random_erasing"](p=1.0),
        TECHNIQUES["normalize"](mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25]),
    ]
    pipeline = pipeline_of(*techniques)
    assert [s.kind for s in pipeline.steps] == ["normalize", "op", "transform"]
    data = build_data(
        DataSpec(**{**SYNTHETIC, "size": 32}), pipeline, device=CPU, seed=0
    )  # uint8 / 255 is never exactly 0.5, so a normalized 0 is an erased pixel
    x, _ = next(data.train_batches(64, gen()))
    erased = (x == 0).all(1)
    assert erased.flatten(1).any(1).all()
    assert (x < 0).any()  # normalized before erasing
    plain, _ = next(data.val_batches(64))
    assert not (plain == 0).any()  # train only


def test_random_erasing_validates():
    cls = TECHNIQUES["random_erasing"]
    with pytest.raises(ValidationError, match="ratio must be \\(min, max\\)"):
        cls(ratio=(3.3, 0.3))
    with pytest.raises(ValidationError, match="scale"):
        cls(scale=(0.02, 1.5))
    with pytest.raises(ValidationError, match="p"):
        cls(p=1.5)


# ---------------------------------------------------------------------------------
# Every device op: reproducible from the generator, new draws from another seed
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OP_KINDS)
def test_same_generator_seed_gives_the_same_output(kind):
    args = {"random_erasing": {"p": 0.9}}.get(kind, {})
    op = device_op(kind, **args)
    x = images(32, h=16, w=16)
    first = op(x, gen(11))
    assert torch.equal(first, op(x, gen(11)))
    assert not torch.equal(first, op(x, gen(12)))
    assert not torch.equal(first, x)


# ---------------------------------------------------------------------------------
# Loader path: each technique configures the pipeline; transforms run on real images
# ---------------------------------------------------------------------------------


def test_grayscale_and_bbox_crop_set_pipeline_flags():
    pipeline = pipeline_of(TECHNIQUES["grayscale"]())
    assert pipeline.grayscale and not pipeline.steps
    for erase in (False, True):
        pipeline = pipeline_of(TECHNIQUES["bbox_crop"](erase_background=erase))
        assert pipeline.bbox_crop and pipeline.erase_background == erase and not pipeline.steps
    assert TECHNIQUES["bbox_crop"].requires == ("boxes",)


@pytest.mark.parametrize("kind", OP_KINDS)
def test_loader_transform_runs_on_pil_and_uint8_images(kind):
    args = {"random_erasing": {"p": 1.0}}.get(kind, {})
    pipeline = pipeline_of(TECHNIQUES[kind](**args))
    (transform,) = [s.fn for s in pipeline.steps if s.kind == "transform"]
    assert isinstance(transform, v2.Transform)
    pil = Image.new("RGB", (20, 16), (200, 40, 90))
    uint8 = TF.pil_to_tensor(pil)
    torch.manual_seed(0)  # v2 transforms draw from the global generator
    out_pil, out_uint8 = transform(pil), transform(uint8)
    assert isinstance(out_pil, Image.Image) and out_pil.size == (20, 16)
    assert out_uint8.dtype == torch.uint8 and out_uint8.shape == (3, 16, 20)
    assert not torch.equal(out_uint8, uint8)
    chain = pipeline.chain("transform", True, None)  # the whole loader chain, to float
    assert chain[-1](transform(uint8)).dtype == torch.float32


def test_loader_erasing_runs_after_normalize_on_floats():
    techniques = [TECHNIQUES["normalize"](mean=[0.5], std=[0.5]), TECHNIQUES["random_erasing"](p=1)]
    chain = pipeline_of(*techniques).chain("transform", True, Normalize([0.5], [0.5]))
    x = torch.full((1, 16, 16), 255, dtype=torch.uint8)
    torch.manual_seed(0)
    for step in chain:
        x = step(x)
    assert x.dtype == torch.float32 and set(x.unique().tolist()) == {0.0, 1.0}


# ---------------------------------------------------------------------------------
# Through fit
# ---------------------------------------------------------------------------------


def fit_spec(techniques, data=None, model="paper_mnist_1p5k_dw", **train):
    return spec_from_dict(
        {
            "data": data or SYNTHETIC,
            "model": {"name": model},
            "train": {**TRAIN, **train},
            "techniques": techniques,
        }
    )


@pytest.mark.parametrize("kind", [k for k in IMAGE_KINDS if k != "bbox_crop"])
def test_each_technique_alone_trains_on_synthetic_rgb(kind):
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectWarning)
        result = fit(fit_spec([{"kind": kind}]))
    assert all(math.isfinite(m["train/loss"]) for m in result.history)
    first_conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == (1 if kind == "grayscale" else 3)


def test_the_thesis_augmentations_compose_on_the_device_path():
    techniques = [
        {"kind": "random_erasing"},
        {"kind": "color_jitter"},
        {"kind": "normalize"},
        {"kind": "random_affine"},
        {"kind": "horizontal_flip"},
    ]
    result = fit(fit_spec(techniques))
    assert math.isfinite(result.final["val/loss"])


def test_bbox_crop_needs_a_dataset_with_boxes():
    with pytest.raises(SpecError) as err:
        fit_spec([{"kind": "horizontal_flip"}, {"kind": "bbox_crop"}])
    (found,) = [p for p in err.value.problems if "bbox_crop" in p.message]
    assert found.path == "techniques.1" and "boxes" in found.message
    assert "synthetic" in found.message and "stanford_cars" in (found.allowed or "")


@pytest.mark.parametrize("erase_background", [False, True])
def test_bbox_crop_and_the_thesis_set_train_on_stanford_cars(tmp_path, erase_background):
    root = write_cars_prepared(tmp_path, n_train=6, n_test=3)
    cars = {"name": "stanford_cars", "root": str(root), "image_size": 16, "workers": 0}
    techniques = [
        {"kind": "bbox_crop", "erase_background": erase_background},
        {"kind": "grayscale"},
        {"kind": "random_affine"},
        {"kind": "horizontal_flip"},
        {"kind": "color_jitter"},
        {"kind": "normalize"},
        {"kind": "random_erasing"},
    ]
    result = fit(fit_spec(techniques, data=cars, batch_size=4))
    assert all(math.isfinite(m["train/loss"]) for m in result.history)
    first_conv = next(m for m in result.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.in_channels == 1


def test_bbox_crop_crops_the_train_split_of_stanford_cars(tmp_path):
    root = write_cars_prepared(tmp_path, n_train=4, n_test=2)
    spec = DataSpec(name="stanford_cars", root=str(root), image_size=16, workers=0)
    data = build_data(spec, pipeline_of(TECHNIQUES["bbox_crop"]()), device=CPU, seed=0)
    train, _ = next(data.train_eval_batches(4))
    val, _ = next(data.val_batches(2))
    blue = (train[:, 2] > 0.8) & (train[:, 0] < 0.2)  # the background outside the box
    assert blue.float().mean() < 0.05 and (val[:, 2] > 0.8).float().mean() > 0.3
