"""Edge cases of five techniques found by an audit (issue 14, section 4).

squeeze_excite finds the classifier by position, not width; random_affine and grayscale
give the same image on the loader path as on the device path; one_cycle does not silently
replace `train.momentum: 0`; blurpool leaves the image-input conv alone (Composer's rule).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError
from torch import nn

from effray.data import DataPipeline
from effray.data.loader import ImageFiles
from effray.data.splits import to_grayscale
from effray.models import MODELS, build_model
from effray.spec import spec_from_dict
from effray.techniques import TECHNIQUES, NoEffectWarning, TrainState
from effray.techniques.blurpool import BlurConv2d
from effray.techniques.random_affine import affine_batch
from effray.techniques.squeeze_excite import SqueezeExciteConv2d
from effray.train import make_optimizer

PAPER_NETS = [name for name in MODELS if name.startswith("paper_")]
SPEC = {
    "data": {"name": "synthetic", "train_size": 64, "val_size": 32, "size": 16},
    "model": {"name": "paper_mnist_1p5k_dw"},
    "train": {"epochs": 2, "batch_size": 16, "latency_repeats": 0},
}


def state_for(num_classes: int = 10, model_name: str = "", **train) -> TrainState:
    spec = spec_from_dict({**SPEC, "train": {**SPEC["train"], **train}})
    return TrainState(
        spec=spec,
        device=torch.device("cpu"),
        num_classes=num_classes,
        epochs=2,
        steps_per_epoch=5,
        generator=torch.Generator().manual_seed(0),
        model_name=model_name,
    )


def net(name: str, num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes=num_classes, in_channels=MODELS[name].input_shape[0])


def convs_of(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if type(m) is nn.Conv2d]


# ---------------------------------------------------------------------------------
# squeeze_excite: the classifier is found by position, not by its width
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_classes", [16, 196])
def test_se_wraps_every_ghostnet_conv_whatever_the_class_count(num_classes):
    model = net("ghostnet", num_classes)  # its classifier is a Linear; 81 convs, all >= 8 wide
    n_convs = len(convs_of(model))
    assert any(m.out_channels == num_classes for m in convs_of(model)) == (num_classes == 16)
    state = state_for(num_classes, "ghostnet")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectWarning)  # nothing skipped, nothing to say
        model = TECHNIQUES["squeeze_excite"]().on_model(model, state)
    assert state.logs["squeeze_excite/num_blocks"] == n_convs == 81
    assert sum(isinstance(m, SqueezeExciteConv2d) for m in model.modules()) == n_convs
    assert type(model.classifier) is nn.Linear


@pytest.mark.parametrize("name", PAPER_NETS)
def test_se_skips_only_the_classifier_conv_of_the_paper_nets(name):
    model = net(name, 10)
    n_convs = len(convs_of(model))
    state = state_for(10, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectWarning)
        model = TECHNIQUES["squeeze_excite"]().on_model(model, state)
    assert state.logs["squeeze_excite/num_blocks"] == n_convs - 1  # today's counts
    assert type(model.classifier) is nn.Conv2d  # the conv that makes the logits: no SE


def test_se_warns_when_it_skips_convs_below_min_channels():
    model = net("paper_mnist_1p5k_dw", 10)  # convs of 8, 12, 15, 16 output channels
    narrow = [m for m in convs_of(model) if m.out_channels < 12 and m is not model.classifier]
    state = state_for(10, "paper_mnist_1p5k_dw")
    with pytest.warns(NoEffectWarning, match=f"{len(narrow)} of .* fewer than 12 output"):
        TECHNIQUES["squeeze_excite"](min_channels=12).on_model(model, state)
    assert state.logs["squeeze_excite/num_skipped"] == len(narrow) > 0
    assert "squeeze_excite/no_effect" not in state.logs  # it did add blocks


# ---------------------------------------------------------------------------------
# random_affine: the loader path's transform equals the device path's op
# ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
@pytest.mark.parametrize(
    "args",
    [
        {"degrees": 0, "translate": (0, 0), "scale": (0.8, 0.8), "shear": 0},  # zoom out
        {},  # the thesis's ranges
        {"degrees": 40, "translate": (0.2, 0.1), "scale": (0.7, 1.3), "shear": 20},
    ],
    ids=["zoom_out", "defaults", "wide"],
)
def test_loader_affine_equals_the_device_affine_on_the_same_parameters(args, mode):
    """Same uint8 image, same drawn parameters: within half a grey level (uint8 rounding)."""
    pipeline = DataPipeline()
    TECHNIQUES["random_affine"](interpolation=mode, **args).on_data(pipeline)
    (transform,) = [s.fn for s in pipeline.steps if s.kind == "transform"]
    x = torch.randint(0, 256, (3, 20, 28), dtype=torch.uint8, generator=torch.Generator())
    draw = getattr(transform, "make_params", None) or transform._get_params  # torchvision < 0.21
    for seed in range(8):
        torch.manual_seed(seed)  # the loader seeds torch's generator per sample
        p = draw([x])
        torch.manual_seed(seed)
        loader = transform(x)
        assert loader.dtype == torch.uint8
        params = torch.tensor([[p["angle"], *p["translate"], p["scale"], p["shear"][0]]])
        assert p["shear"][1] == 0
        device = affine_batch(x[None].float() / 255, params, mode)[0]
        torch.testing.assert_close(loader.float() / 255, device, atol=0.5 / 255 + 1e-5, rtol=0)


# ---------------------------------------------------------------------------------
# grayscale: both paths give exactly PIL's "L"
# ---------------------------------------------------------------------------------


def random_rgb(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(n, h, w, 3) uint8 with black, white and pure primaries mixed in."""
    a = np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)
    a[0, 0, :6] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 1, 1]]
    return a


def pil_l(a: np.ndarray) -> np.ndarray:
    return np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in a])


def test_device_grayscale_equals_pil_l():
    a = random_rgb(16, 64, 64)  # 65,536 pixels
    gray = to_grayscale(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous())
    assert gray.dtype == torch.uint8 and gray.shape == (16, 1, 64, 64)
    assert np.array_equal(gray[:, 0].numpy(), pil_l(a))


def test_loader_grayscale_equals_pil_l_and_the_device_path(tmp_path):
    a = random_rgb(4, 24, 40, seed=1)
    samples = []
    for i, im in enumerate(a):
        path = tmp_path / f"{i}.png"  # lossless, so the file holds exactly `im`
        Image.fromarray(im).save(path)
        samples.append((str(path), 0, None))
    files = ImageFiles(samples, (24, 40), grayscale=True)
    loaded = torch.stack([files[(i, 0)][0] for i in range(len(a))])
    assert loaded.dtype == torch.uint8 and loaded.shape == (4, 1, 24, 40)
    assert np.array_equal(loaded[:, 0].numpy(), pil_l(a))
    device = to_grayscale(torch.from_numpy(a).permute(0, 3, 1, 2).contiguous())
    assert torch.equal(loaded, device)


# ---------------------------------------------------------------------------------
# one_cycle: momentum is cycled only when asked, and never silently over a 0
# ---------------------------------------------------------------------------------


def momenta_per_step(tech, **train) -> list[float]:
    state = state_for(**train)
    state.model = nn.Linear(2, 2)
    state.optimizer = make_optimizer(state.spec, state.model.parameters())
    tech.on_optimizer(state)
    seen = []
    for _ in range(state.epochs * state.steps_per_epoch):
        seen.append(state.optimizer.param_groups[0]["momentum"])
        state.optimizer.step()
        tech.after_step(state)
    return seen


def test_one_cycle_keeps_momentum_0_when_not_cycling():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seen = momenta_per_step(TECHNIQUES["one_cycle"](cycle_momentum=False), momentum=0.0)
    assert seen == [0.0] * 10


def test_one_cycle_warns_when_it_replaces_momentum_0():
    with pytest.warns(NoEffectWarning, match="train.momentum 0.*cycle_momentum: false"):
        seen = momenta_per_step(TECHNIQUES["one_cycle"](), momentum=0.0)
    assert seen[0] == 0.95 and min(seen) == pytest.approx(0.85)  # torch's defaults, as before


def test_one_cycle_momentum_range_is_configurable():
    tech = TECHNIQUES["one_cycle"](base_momentum=0.5, max_momentum=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectWarning)  # momentum 0.9: nothing to warn about
        seen = momenta_per_step(tech, momentum=0.9)
    assert seen[0] == pytest.approx(0.8) and min(seen) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------
# blurpool: strided convs with fewer than min_channels inputs (the stem) are left alone
# ---------------------------------------------------------------------------------


def test_blurpool_skips_ghostnet_s_three_channel_stem_by_default():
    model, state = net("ghostnet", 196), state_for(196, "ghostnet")
    strided = [m for m in convs_of(model) if max(m.stride) > 1]
    model = TECHNIQUES["blurpool"]().on_model(model, state)
    assert type(model.conv_stem[0]) is nn.Conv2d  # in_channels 3 < 16: not blurred
    assert state.logs["blurpool/num_convs"] == len(strided) - 1 == 8
    assert sum(isinstance(m, BlurConv2d) for m in model.modules()) == 8


def test_blurpool_min_channels_1_blurs_the_stem_too():
    model, state = net("ghostnet", 196), state_for(196, "ghostnet")
    model = TECHNIQUES["blurpool"](min_channels=1).on_model(model, state)
    assert isinstance(model.conv_stem[0], BlurConv2d)
    assert state.logs["blurpool/num_convs"] == 9


@pytest.mark.parametrize("name", PAPER_NETS)
def test_blurpool_counts_of_the_paper_nets_are_their_max_pools(name):
    model, state = net(name, 10), state_for(10, name)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.modules())
    TECHNIQUES["blurpool"]().on_model(model, state)
    assert state.logs["blurpool/num_maxpools"] == pools in (2, 3)
    assert state.logs["blurpool/num_convs"] == 0  # their convs all have stride 1


def test_blurpool_min_channels_validates():
    with pytest.raises(ValidationError, match="min_channels"):
        TECHNIQUES["blurpool"](min_channels=0)
