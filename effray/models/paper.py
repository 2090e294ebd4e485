"""The paper's eight GAP nets, built from layer tables that mirror its Tables 1 and 2.

Paper: "Model enhancement techniques for small CNNs" (MNIST Table 1, CIFAR-10 Table 2):
25K / 7K / 7K-DW / 5K / 5K-DW / 1.5K-DW on MNIST (1x28x28, 10 classes) and 143K /
143K-DW on CIFAR-10 (3x32x32, 10 classes). Each table row below is one line of the
paper's "Layers" cell; `conv` is a 3x3 conv, `dw` a depthwise separable 3x3 conv,
`tb` a transition-block 1x1 conv, `classifier` the final 1x1 conv after GAP.

The paper gives layers and totals but not the per-layer details; this convention
is the one that reproduces all eight totals to the unit (docs/models.md derives it):

- `conv`: 3x3, padding 1, stride 1 -> BatchNorm (weight + bias) -> ReLU.
- `dw`: depthwise 3x3 (groups=C_in, C_in -> C_in) -> pointwise 1x1 (C_in -> C_out)
  -> one BatchNorm(C_out) -> ReLU.
- `tb`: 1x1 conv only (no BN, no activation); the MaxPool follows it.
- `classifier`: GAP -> 1x1 conv (no bias, no BN) -> flatten to (N, num_classes).
- Downsampling only by MaxPool2d(2), so BlurPool has pools to replace.
- Biases: none on MNIST nets; on CIFAR nets every conv except the classifier has
  one (depthwise and pointwise included), e.g. 143K = 142,864 + 344 biases and
  143K-DW = 142,288 + 432 depthwise + 676 pointwise biases.

    >>> from effray.models import build_model, count_params
    >>> count_params(build_model("paper_mnist_1p5k_dw", num_classes=10, in_channels=1))
    1560
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from effray.models.knobs import PaperNetArgs  # noqa: F401  (its home before knobs.py)
from effray.models.layers import ConvBNReLU, DepthwiseSeparableConv, GlobalAvgPool

POOL = ("maxpool",)
GAP = ("gap",)

# fmt: off
MNIST_25K = [  # 25,144 params
    ("conv", 1, 8), ("conv", 8, 16), POOL,
    ("conv", 16, 32), ("conv", 32, 64), POOL,
    GAP, ("classifier", 64, 10),
]
MNIST_7K = [  # 7,767 params
    ("conv", 1, 8), ("conv", 8, 12), ("tb", 12, 8), POOL,
    ("conv", 8, 12), ("conv", 12, 16), ("tb", 16, 12), POOL,
    ("conv", 12, 15), ("conv", 15, 15),
    GAP, ("classifier", 15, 10),
]
MNIST_7K_DW = [  # 7,611 params
    ("conv", 1, 10), ("dw", 10, 12), ("tb", 12, 10), POOL,
    ("conv", 10, 13), ("conv", 13, 16), ("tb", 16, 12), POOL,
    ("conv", 12, 15), ("conv", 15, 15),
    GAP, ("classifier", 15, 10),
]
MNIST_5K = [  # 5,712 params
    ("conv", 1, 8), ("conv", 8, 12), ("tb", 12, 8), POOL,
    ("conv", 8, 12), ("conv", 12, 16), ("tb", 16, 12), POOL,
    ("conv", 12, 15),
    GAP, ("classifier", 15, 10),
]
MNIST_5K_DW = [  # 5,616 params
    ("conv", 1, 8), ("dw", 8, 12), ("tb", 12, 8), POOL,
    ("conv", 8, 13), ("conv", 13, 18), ("tb", 18, 12), POOL,
    ("conv", 12, 16),
    GAP, ("classifier", 16, 10),
]
MNIST_1P5K_DW = [  # 1,560 params
    ("conv", 1, 8), ("dw", 8, 12), ("tb", 12, 8), POOL,
    ("dw", 8, 12), ("dw", 12, 16), ("tb", 16, 12), POOL,
    ("dw", 12, 15),
    GAP, ("classifier", 15, 10),
]
CIFAR_143K = [  # 143,208 params
    ("conv", 3, 16), ("conv", 16, 16), POOL,
    ("conv", 16, 32), ("conv", 32, 32), POOL,
    ("conv", 32, 64), ("conv", 64, 64), POOL,
    ("conv", 64, 120),
    GAP, ("classifier", 120, 10),
]
CIFAR_143K_DW = [  # 143,396 params
    ("conv", 3, 16), ("conv", 16, 16), POOL,
    ("dw", 16, 32), ("conv", 32, 32), POOL,
    ("dw", 32, 64), ("conv", 64, 64), POOL,
    ("dw", 64, 128), ("dw", 128, 192), ("dw", 192, 260),
    GAP, ("classifier", 260, 10),
]
# fmt: on


class PaperNet(nn.Sequential):
    """A GAP net built from one layer table; forward returns logits (N, num_classes).

    The table's first input width is replaced by `in_channels` and the classifier's
    output by `num_classes`; every other width is checked to chain.
    """

    def __init__(
        self,
        table: list[tuple],
        *,
        num_classes: int,
        in_channels: int,
        bias: bool,
        dropout: float = 0.0,
    ):
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        convs = tbs = pools = 0
        channels = None  # width flowing out of the previous layer
        for row in table:
            kind = row[0]
            if kind in ("maxpool", "gap"):
                if kind == "maxpool":
                    pools += 1
                    layers[f"pool{pools}"] = nn.MaxPool2d(2)
                else:
                    layers["gap"] = GlobalAvgPool()
                continue
            _, c_in, c_out = row
            if channels is None:
                c_in = in_channels
            elif c_in != channels:
                raise ValueError(f"layer table row {row}: expects {c_in} channels, gets {channels}")
            if kind == "conv":
                convs += 1
                layers[f"conv{convs}"] = ConvBNReLU(c_in, c_out, 3, bias=bias)
            elif kind == "dw":
                convs += 1
                layers[f"conv{convs}_dw"] = DepthwiseSeparableConv(c_in, c_out, 3, bias=bias)
            elif kind == "tb":
                tbs += 1
                layers[f"tb{tbs}"] = nn.Conv2d(c_in, c_out, 1, bias=bias)
            elif kind == "classifier":
                if dropout > 0:
                    layers["dropout"] = nn.Dropout(dropout)
                c_out = num_classes
                layers["classifier"] = nn.Conv2d(c_in, c_out, 1, bias=False)
                layers["flatten"] = nn.Flatten(1)
            else:
                raise ValueError(f"layer table row {row}: unknown kind {kind!r}")
            channels = c_out
        super().__init__(layers)


def paper_net_builder(table: list[tuple], *, bias: bool):
    """`build(num_classes=..., in_channels=..., dropout=...)` for one table."""

    def build(*, num_classes: int, in_channels: int, dropout: float = 0.0) -> PaperNet:
        return PaperNet(
            table, num_classes=num_classes, in_channels=in_channels, bias=bias, dropout=dropout
        )

    return build
