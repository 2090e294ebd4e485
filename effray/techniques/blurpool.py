"""BlurPool: anti-aliased downsampling.

Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019,
arXiv:1904.11486. Ethiraj & Bolla (seed 001, "Training Efficient CNNs") applies it
"both at the convolutional and max-pooling layers" (section III.F).

Downsampling is split into a dense operation and a blurred subsampling:

- `MaxPool2d(k, s)` with s > 1 becomes `MaxPool2d(k, stride=1)` followed by a
  depthwise binomial blur with stride s (Zhang's MaxBlurPool).
- A strided `Conv2d` becomes a stride-1 blur followed by the original strided conv
  (Composer's default `blur_first=True`, which the paper's runs used). We chose it
  over Zhang's conv(stride 1) -> blur(stride s) because it keeps the conv's FLOPs
  and weights; the conv still sees only low-passed input, which is what removes the
  aliasing.

The filter is the normalised outer product of binomial coefficients, e.g. for size 3
[1,2,1] x [1,2,1] / 16. Padding is `(f-1)//2` before and `f//2` after each axis
(Zhang's), so output sizes equal the replaced layer's for any filter size. Zero
padding is the default because the paper used Composer, which pads with zeros;
`padding: reflect` is Zhang's choice (it falls back to zeros on maps too small to
reflect). The paper's nets downsample only with MaxPool2d(2); their convs have stride 1.

Strided convs with fewer than `min_channels` (default 16) input channels are left alone,
as in Composer (composer/algorithms/blurpool/blurpool.py, `_maybe_replace_strided_conv2d`;
its method card's "Implementation Note"): the rule keeps the blur off a conv that reads
the image itself (1 or 3 channels), since blurring there downsamples the input by more
than the preprocessing asked for. The first such conv is GhostNet's stride-2 stem
(3 -> 16); the paper's nets have no strided conv, so their counts (every MaxPool2d, no
conv) are the same at any `min_channels`. Max-pools have no channel rule (Composer's neither).
"""

from __future__ import annotations

from math import comb
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

torch = lazy("torch")
nn = lazy("torch.nn")
F = lazy("torch.nn.functional")
LAYERS = ("BlurPool2d", "BlurMaxPool2d", "BlurConv2d")  # in effray.techniques.layers


def __getattr__(name: str):
    if name in LAYERS:  # the layers need torch at import: loaded when first asked for
        from effray.techniques import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def binomial_filter(size: int) -> torch.Tensor:
    """The (size, size) low-pass filter: outer product of binomial coefficients, sums to 1."""
    row = torch.tensor([comb(size - 1, i) for i in range(size)], dtype=torch.float64)
    filt = torch.outer(row, row)
    return (filt / filt.sum()).float()


def blur_downsample(
    x: torch.Tensor, filt: torch.Tensor, stride: int | tuple[int, int], padding: str = "zeros"
) -> torch.Tensor:
    """Blur each channel of `x` (N, C, H, W) with `filt`, then keep every `stride`-th pixel."""
    kh, kw = filt.shape[-2:]
    pads = ((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2)
    fits = x.shape[-1] > max(pads[:2]) and x.shape[-2] > max(pads[2:])
    mode = "reflect" if padding == "reflect" and fits else "constant"
    x = F.pad(x, pads, mode=mode)
    c = x.shape[1]
    weight = filt.to(dtype=x.dtype, device=x.device).expand(c, 1, kh, kw).contiguous()
    return F.conv2d(x, weight, stride=stride, groups=c)


def _strided(stride) -> bool:
    return max(stride if isinstance(stride, tuple) else (stride,)) > 1


def apply_blurpool(
    model: nn.Module,
    *,
    filter_size: int = 3,
    padding: str = "zeros",
    replace_maxpools: bool = True,
    replace_convs: bool = True,
    min_channels: int = 1,
) -> dict[str, int]:
    """Replace strided max-pools and convs in `model` in place; return counts of each.

    Pools with `ceil_mode` or dilation are left alone (the dense/blur split would not
    keep their output size); so are layers already wrapped, so applying twice is a no-op,
    and strided convs with fewer than `min_channels` input channels (1: none skipped).
    """
    from effray.techniques.layers import BlurConv2d, BlurMaxPool2d

    counts = {"maxpools": 0, "convs": 0}

    def visit(parent: nn.Module) -> None:
        for name, child in parent.named_children():
            if isinstance(child, (BlurMaxPool2d, BlurConv2d)):
                continue
            if (
                replace_maxpools
                and isinstance(child, nn.MaxPool2d)
                and _strided(child.stride)
                and not child.ceil_mode
                and child.dilation in (1, (1, 1))
                and not child.return_indices
            ):
                setattr(parent, name, BlurMaxPool2d(child, filter_size, padding))
                counts["maxpools"] += 1
            elif (
                replace_convs
                and isinstance(child, nn.Conv2d)
                and _strided(child.stride)
                and child.in_channels >= min_channels
            ):
                setattr(parent, name, BlurConv2d(child, filter_size, padding))
                counts["convs"] += 1
            else:
                visit(child)

    visit(model)
    return counts


@register
class BlurPool(Technique):
    """Anti-aliased downsampling: blur before every strided max-pool and conv."""

    kind: Literal["blurpool"] = "blurpool"
    filter_size: Annotated[int, Field(ge=2, le=7)] = 3  # pixels per side of the binomial filter
    padding: Literal["zeros", "reflect"] = "zeros"  # zeros: Composer (the paper); reflect: Zhang
    replace_maxpools: bool = True  # the paper blurs both pools and strided convs
    replace_convs: bool = True
    min_channels: Annotated[int, Field(ge=1)] = 16  # strided convs with fewer inputs: no blur

    paper: ClassVar[str] = "Zhang 2019, arXiv:1904.11486"

    def on_model(self, model: nn.Module, state: TrainState) -> nn.Module:
        counts = apply_blurpool(
            model,
            filter_size=self.filter_size,
            padding=self.padding,
            replace_maxpools=self.replace_maxpools,
            replace_convs=self.replace_convs,
            min_channels=self.min_channels,
        )
        total = counts["maxpools"] + counts["convs"]
        state.logs["blurpool/num_layers"] = float(total)
        state.logs["blurpool/num_maxpools"] = float(counts["maxpools"])
        state.logs["blurpool/num_convs"] = float(counts["convs"])
        if total == 0:
            self.no_effect(
                state,
                f"no strided conv or pool in {state.model_name} (convs with fewer than "
                f"{self.min_channels} input channels not counted); model unchanged",
            )
        return model
