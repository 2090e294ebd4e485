"""The nn.Module layers that model-surgery techniques insert: BlurPool and SE blocks.

They subclass torch's modules, so this module imports torch; the technique modules
(blurpool, squeeze_excite) import it only when they change a model, which keeps the
technique registry free of torch for `effray validate`.
"""

from __future__ import annotations

import torch
from torch import nn

from effray.techniques.blurpool import binomial_filter, blur_downsample


class BlurPool2d(nn.Module):
    """Depthwise binomial blur with a stride (Zhang's BlurPool); no parameters."""

    def __init__(self, stride: int | tuple[int, int] = 2, filter_size: int = 3, padding="zeros"):
        super().__init__()
        self.stride = stride
        self.padding = padding
        # a buffer so .to(device) moves it; not persistent: it is a constant, not state
        self.register_buffer("filt", binomial_filter(filter_size), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return blur_downsample(x, self.filt, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"stride={self.stride}, filter_size={self.filt.shape[-1]}, padding={self.padding}"


class BlurMaxPool2d(nn.Sequential):
    """MaxPool2d(k, stride=1) -> BlurPool2d(stride s): same output size as MaxPool2d(k, s)."""

    def __init__(self, pool: nn.MaxPool2d, filter_size: int = 3, padding: str = "zeros"):
        dense = nn.MaxPool2d(pool.kernel_size, stride=1, padding=pool.padding)
        super().__init__(dense, BlurPool2d(pool.stride, filter_size, padding))


class BlurConv2d(nn.Sequential):
    """Stride-1 blur -> the original strided conv (weights kept): Composer's blur_first."""

    def __init__(self, conv: nn.Conv2d, filter_size: int = 3, padding: str = "zeros"):
        super().__init__(BlurPool2d(1, filter_size, padding), conv)


class SqueezeExcite2d(nn.Module):
    """Channel attention: x * sigmoid(W2 relu(W1 gap(x)))."""

    def __init__(self, channels: int, latent: int, bias: bool = False):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, latent, 1, bias=bias)
        self.expand = nn.Conv2d(latent, channels, 1, bias=bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 1, 1) scales in (0, 1)."""
        return torch.sigmoid(self.expand(torch.relu(self.reduce(self.pool(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class SqueezeExciteConv2d(nn.Sequential):
    """The original conv (weights kept) followed by its SE block."""

    def __init__(self, conv: nn.Conv2d, latent: int, bias: bool = False):
        super().__init__(conv, SqueezeExcite2d(conv.out_channels, latent, bias))
