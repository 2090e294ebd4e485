"""The model zoo: every registered net builds, runs and has its published size."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn

from effray.models import MODELS, build_model, count_params, list_models
from effray.models.ghostnet import GhostNet, GhostNetArgs
from effray.models.layers import DepthwiseSeparableConv, GlobalAvgPool
from effray.models.paper import PaperNet

PAPER = [name for name in MODELS if name.startswith("paper_")]
MNIST = [name for name in PAPER if "mnist" in name]
CIFAR = [name for name in PAPER if "cifar" in name]

# GhostNet: the thesis's table (4.2.8) prints each count 2 below what its own code
# builds and what its experiment logs record ('num_params': 4153092.0 at 1280,
# 3041412.0 at 320; github.com/pchaberski/cars, documentation/results). We build
# the logged network; docs/models.md explains the 2.
KNOWN_OFFSET = {"ghostnet": 2}
THESIS_GHOSTNET = {
    320: 3_041_410,
    640: 3_411_970,
    960: 3_782_530,
    1280: 4_153_090,
    1600: 4_523_650,
}


def build_reference(name: str, **args) -> nn.Module:
    entry = MODELS[name]
    return build_model(
        name, num_classes=entry.num_classes, in_channels=entry.input_shape[0], **args
    )


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_gives_finite_logits(name):
    entry = MODELS[name]
    torch.manual_seed(0)
    model = build_reference(name)
    with torch.no_grad():
        logits = model(torch.randn(2, *entry.input_shape))
    assert logits.shape == (2, entry.num_classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list(MODELS))
def test_params_match_the_published_count(name):
    entry = MODELS[name]
    assert entry.reference_params is not None
    params = count_params(build_reference(name))
    assert params - entry.reference_params == KNOWN_OFFSET.get(name, 0)


@pytest.mark.parametrize("name", list(MODELS))
def test_args_model_forbids_unknown_knobs_and_has_defaults(name):
    args = MODELS[name].args
    assert args.model_config.get("extra") == "forbid"
    args()  # every knob has a default
    with pytest.raises(pydantic.ValidationError):
        build_reference(name, not_a_knob=1)


def test_ghostnet_out_channels_counts_from_the_thesis():
    counts = {
        oc: count_params(build_model("ghostnet", num_classes=196, in_channels=3, out_channels=oc))
        for oc in THESIS_GHOSTNET
    }
    assert {oc: n - THESIS_GHOSTNET[oc] for oc, n in counts.items()} == dict.fromkeys(
        THESIS_GHOSTNET, 2
    )
    # per output channel: 960 conv_head weights + BN weight and bias + 196 classifier weights
    assert counts[1600] - counts[320] == (1600 - 320) * (960 + 2 + 196)


def test_ghostnet_defaults_are_the_thesis_setup():
    model = GhostNet()
    assert model.classifier.out_features == 196
    assert model.conv_stem[0].in_channels == 3
    assert model.dropout.p == 0.2
    assert model.classifier.in_features == 1280
    assert MODELS["ghostnet"].input_shape == (3, 227, 227)
    assert GhostNetArgs().model_dump() == {"dropout": 0.2, "out_channels": 1280, "width_mult": 1.0}


def test_ghostnet_grayscale():
    rgb = build_model("ghostnet", num_classes=196, in_channels=3)
    gray = build_model("ghostnet", num_classes=196, in_channels=1)
    assert count_params(rgb) - count_params(gray) == 2 * 3 * 3 * 16  # stem conv, 16 filters
    with torch.no_grad():
        assert gray(torch.randn(2, 1, 64, 64)).shape == (2, 196)


def test_ghostnet_width_mult_changes_the_count():
    full = count_params(build_model("ghostnet", num_classes=196, in_channels=3))
    half = build_model("ghostnet", num_classes=196, in_channels=3, width_mult=0.5)
    wide = build_model("ghostnet", num_classes=196, in_channels=3, width_mult=1.3)
    assert count_params(half) < full < count_params(wide)
    with torch.no_grad():
        assert half(torch.randn(2, 3, 64, 64)).shape == (2, 196)


def test_ghostnet_dropout_knob():
    model = build_model("ghostnet", num_classes=10, in_channels=3, dropout=0.5)
    assert model.dropout.p == 0.5
    for bad in (-0.1, 1.0):
        with pytest.raises(pydantic.ValidationError):
            build_model("ghostnet", num_classes=10, in_channels=3, dropout=bad)
    for knob, bad in (("out_channels", 0), ("width_mult", 0.0)):
        with pytest.raises(pydantic.ValidationError):
            build_model("ghostnet", num_classes=10, in_channels=3, **{knob: bad})


@pytest.mark.parametrize("bias", [False, True])
def test_depthwise_separable_is_depthwise_and_counts(bias):
    c_in, c_out = 12, 16
    layer = DepthwiseSeparableConv(c_in, c_out, bias=bias)
    assert layer.depthwise.groups == c_in == layer.depthwise.in_channels
    assert layer.depthwise.out_channels == c_in
    assert layer.depthwise.kernel_size == (3, 3)
    assert layer.pointwise.kernel_size == (1, 1)
    expected = 9 * c_in + c_in * c_out + 2 * c_out + (c_in + c_out if bias else 0)
    assert count_params(layer) == expected
    assert layer(torch.randn(2, c_in, 7, 7)).shape == (2, c_out, 7, 7)


@pytest.mark.parametrize("name", PAPER)
def test_paper_nets_use_their_dataset_shape(name):
    entry = MODELS[name]
    assert entry.input_shape == ((1, 28, 28) if name in MNIST else (3, 32, 32))
    assert entry.num_classes == 10


@pytest.mark.parametrize("name", PAPER)
def test_paper_nets_downsample_only_by_maxpool(name):
    model = build_reference(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.stride == (1, 1) for m in convs)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == (2 if name in MNIST else 3)
    assert isinstance(model.gap, GlobalAvgPool)
    assert model.classifier.kernel_size == (1, 1) and model.classifier.bias is None


@pytest.mark.parametrize("name", PAPER)
def test_paper_bias_convention(name):
    model = build_reference(name)
    biased = [m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d)]
    if name in MNIST:
        assert not any(biased)
    else:  # every conv but the classifier (the last one) has a bias
        assert all(biased[:-1]) and not biased[-1]


@pytest.mark.parametrize("name", MNIST)
def test_mnist_nets_accept_three_channels(name):
    gray = build_model(name, num_classes=10, in_channels=1)
    rgb = build_model(name, num_classes=10, in_channels=3)
    conv1 = rgb.conv1[0]
    assert conv1.in_channels == 3
    # two more input channels add 3x3 weights to each of conv1's filters
    assert count_params(rgb) - count_params(gray) == 2 * 9 * conv1.out_channels
    with torch.no_grad():
        assert rgb(torch.randn(2, 3, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name", PAPER)
def test_paper_dropout_is_parameter_free(name):
    plain = build_reference(name)
    dropped = build_reference(name, dropout=0.3)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert dropped.dropout.p == 0.3
    assert count_params(dropped) == count_params(plain)


def test_paper_table_must_chain():
    table = [("conv", 1, 8), ("conv", 9, 16), ("gap",), ("classifier", 16, 10)]
    with pytest.raises(ValueError, match="expects 9 channels, gets 8"):
        PaperNet(table, num_classes=10, in_channels=1, bias=False)


def test_num_classes_sets_the_output():
    model = build_model("paper_mnist_1p5k_dw", num_classes=3, in_channels=1)
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 3)


def test_unknown_model_suggests_a_name():
    with pytest.raises(ValueError, match="did you mean 'paper_mnist_7k'"):
        build_model("paper_mnist_7K", num_classes=10, in_channels=1)


def test_list_models():
    rows = list_models()
    assert [row["name"] for row in rows] == list(MODELS)
    assert len(rows) == 9
    for row in rows:
        assert row["params"] == row["reference_params"] + KNOWN_OFFSET.get(row["name"], 0)
        assert set(row) >= {"name", "params", "reference_params", "input_shape", "num_classes"}
