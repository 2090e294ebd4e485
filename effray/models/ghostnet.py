"""GhostNet as the Stanford Cars thesis used it.

Paper: Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020,
arXiv:1911.11907. Thesis: P. Chaberski, car model recognition with GhostNet on
Stanford Cars (196 classes, 227x227), sections 2.2, 4.2.4, 4.2.8; its code is
github.com/pchaberski/cars (models/architectures/ghostnet.py, itself based on the
first public GhostNet code, iamhankai/ghostnet.pytorch).

The thesis's network differs from the later official Huawei code (CV-backbones) in
the parts that carry parameters, and we follow the thesis:

- SE: two fully connected layers with bias, reducing to C//4 (not
  make_divisible(C/4, 4)); the gate is clamp(x, 0, 1) (the later code uses a
  hard sigmoid).
- Head: GAP -> 1x1 conv 960->out_channels *without* bias -> BatchNorm -> ReLU ->
  dropout -> Linear (the later code has a biased conv_head and no BN). That is
  960 + 2 + num_classes parameters per output channel: 1158 with 196 classes.
- The shortcut's depthwise conv uses the block's kernel size (3 or 5).

With 196 classes this gives 4,153,092 parameters at out_channels=1280, which is
what the thesis's own experiment logs record ('num_params': 4153092.0); the
thesis's table (4.2.8) prints every count 2 lower (4,153,090). See docs/models.md.
The thesis's additions are the knobs: img_channels, dropout, out_channels.

Because of the head BatchNorm, a training-mode forward needs a batch of >= 2.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from effray.models.knobs import GhostNetArgs  # noqa: F401  (its home before knobs.py)
from effray.models.layers import GlobalAvgPool

# fmt: off
# kernel, expansion (#exp), output (#out), SE, stride -- thesis section 2.2 / paper Table 1
CFG = [
    (3,  16,  16, 0, 1),
    (3,  48,  24, 0, 2),
    (3,  72,  24, 0, 1),
    (5,  72,  40, 1, 2),
    (5, 120,  40, 1, 1),
    (3, 240,  80, 0, 2),
    (3, 200,  80, 0, 1),
    (3, 184,  80, 0, 1),
    (3, 184,  80, 0, 1),
    (3, 480, 112, 1, 1),
    (3, 672, 112, 1, 1),
    (5, 672, 160, 1, 2),
    (5, 960, 160, 0, 1),
    (5, 960, 160, 1, 1),
    (5, 960, 160, 0, 1),
    (5, 960, 160, 1, 1),
]
# fmt: on
STEM_CHANNELS = 16
LAST_CHANNELS = 960  # the 1x1 conv after the last bottleneck


def make_divisible(value: float, divisor: int = 4) -> int:
    """Round a scaled width to a multiple of `divisor`, never more than 10% below it."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, relu=False):
    layers = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class GhostModule(nn.Module):
    """A 1x1 conv makes ceil(c_out/ratio) maps; a cheap depthwise conv makes the rest."""

    def __init__(self, c_in: int, c_out: int, ratio: int = 2, dw_size: int = 3, relu=True):
        super().__init__()
        self.c_out = c_out
        primary = math.ceil(c_out / ratio)
        self.primary_conv = conv_bn(c_in, primary, 1, relu=relu)
        self.cheap_operation = conv_bn(
            primary, primary * (ratio - 1), dw_size, groups=primary, relu=relu
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.primary_conv(x)
        ghosts = self.cheap_operation(base)
        return torch.cat([base, ghosts], dim=1)[:, : self.c_out]


class SqueezeExcite(nn.Module):
    """SE as in the thesis's code: FC(C -> C//4) -> ReLU -> FC(C//4 -> C) -> clamp(0, 1)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean((2, 3))).clamp(0, 1)
        return x * gate[:, :, None, None]


class GhostBottleneck(nn.Module):
    """Ghost module (expand, ReLU) -> [depthwise stride 2] -> [SE] -> ghost module (linear).

    The shortcut is the identity when shape is kept, else depthwise conv + 1x1 conv.
    """

    def __init__(self, c_in: int, c_mid: int, c_out: int, kernel: int, stride: int, se: bool):
        super().__init__()
        layers = [GhostModule(c_in, c_mid, relu=True)]
        if stride > 1:
            layers.append(conv_bn(c_mid, c_mid, kernel, stride, groups=c_mid))
        if se:
            layers.append(SqueezeExcite(c_mid))
        layers.append(GhostModule(c_mid, c_out, relu=False))
        self.conv = nn.Sequential(*layers)
        if stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                conv_bn(c_in, c_in, kernel, stride, groups=c_in), conv_bn(c_in, c_out, 1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class GhostNet(nn.Module):
    """GhostNet 1.0x with the thesis's knobs; forward returns logits (N, num_classes)."""

    def __init__(
        self,
        num_classes: int = 196,  # Stanford Cars
        img_channels: int = 3,  # 1 for the thesis's grayscale runs (4.2.4)
        dropout: float = 0.2,  # before the last Linear (4.2.7)
        out_channels: int = 1280,  # width of the feature vector (4.2.8)
        width_mult: float = 1.0,  # GhostNet width multiplier
    ):
        super().__init__()
        width = make_divisible(STEM_CHANNELS * width_mult)
        self.conv_stem = conv_bn(img_channels, width, 3, stride=2, relu=True)
        blocks = []
        c_in = width
        for kernel, expansion, c_out, se, stride in CFG:
            c_mid = make_divisible(expansion * width_mult)
            c_out = make_divisible(c_out * width_mult)
            blocks.append(GhostBottleneck(c_in, c_mid, c_out, kernel, stride, bool(se)))
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        last = make_divisible(LAST_CHANNELS * width_mult)
        self.conv_last = conv_bn(c_in, last, 1, relu=True)
        self.global_pool = GlobalAvgPool()
        self.conv_head = conv_bn(last, out_channels, 1, relu=True)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(out_channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.blocks(self.conv_stem(x)))
        x = self.flatten(self.conv_head(self.global_pool(x)))
        return self.classifier(self.dropout(x))


def build_ghostnet(
    *, num_classes: int, in_channels: int, dropout=0.2, out_channels=1280, width_mult=1.0
) -> GhostNet:
    return GhostNet(num_classes, in_channels, dropout, out_channels, width_mult)
