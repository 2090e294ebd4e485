"""Reusable layers for the paper's small nets.

Depthwise separable convolution: Howard et al., "MobileNets: Efficient Convolutional
Neural Networks for Mobile Vision Applications", arXiv:1704.04861 (2017).
Global average pooling: Lin et al., "Network In Network", arXiv:1312.4400 (2013).

Every 3x3 conv pads by 1 and has stride 1, so spatial size changes only at pools;
that keeps downsampling in `nn.MaxPool2d` where BlurPool can find it.
"""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv (stride 1, 'same' padding) -> BatchNorm -> ReLU.

    Parameters: c_in*c_out*k*k (+ c_out with bias) + 2*c_out (BN weight and bias).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, bias: bool = False):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=bias),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class DepthwiseSeparableConv(nn.Sequential):
    """Depthwise 3x3 (groups=c_in) -> pointwise 1x1 -> BatchNorm -> ReLU (MobileNets).

    One BN after the pointwise conv, none between the two convs, as the paper's
    parameter counts require. Parameters: 9*c_in + c_in*c_out + 2*c_out, plus
    c_in + c_out when `bias` (both convs carry a bias in the CIFAR nets).
    """

    def __init__(self, c_in: int, c_out: int, kernel_size: int = 3, bias: bool = False):
        super().__init__(
            nn.Conv2d(c_in, c_in, kernel_size, padding=kernel_size // 2, groups=c_in, bias=bias),
            nn.Conv2d(c_in, c_out, 1, bias=bias),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )

    @property
    def depthwise(self) -> nn.Conv2d:
        return self[0]

    @property
    def pointwise(self) -> nn.Conv2d:
        return self[1]


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """Average over H and W, keeping (N, C, 1, 1) so a 1x1 conv can classify it (NiN).

    A subclass of `nn.AdaptiveAvgPool2d(1)` so FLOP counters and surgery that look
    for the stock module still recognise it. Flattening happens after the classifier.
    """

    def __init__(self):
        super().__init__(1)
