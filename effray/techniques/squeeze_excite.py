"""Squeeze-and-Excitation blocks after convolutions.

Hu, Shen, Sun, "Squeeze-and-Excitation Networks", CVPR 2018, arXiv:1709.01507.
Ethiraj & Bolla (seed 001, "Training Efficient CNNs") adds "the SE block at the end
of every convolutional layer using appropriate 'latent channel' and 'min channel'
hyperparameters of the Mosaic ML library" (section III.D); we follow Composer's
layout: the block goes directly after the Conv2d (before its BatchNorm), and its MLP
has no biases unless `bias: true` (Hu et al. use biases).

Block: GAP -> 1x1 conv C->L -> ReLU -> 1x1 conv L->C -> sigmoid -> x * gate.
Parameters added per block: 2*C*L (+ L + C with biases).

Which convs get one: every Conv2d with out_channels >= `min_channels`, depthwise and
1x1 convs included (Composer applies it to every Conv2d too), except a classifier conv,
because gating logits is not channel attention. The classifier is found by position,
not width: the last Conv2d or Linear in module order (registration order, which is
forward order in our nets and in any nn.Sequential). When that layer is a Linear
(GhostNet) every conv qualifies, even one as wide as the class count; when it is a
Conv2d with num_classes outputs (the paper's nets), that conv is skipped. Composer's
default min_channels=128 would skip every layer of the paper's tiny nets (8-260
channels), so ours is 8; convs it skips are counted and warned about. Composer tests
min(in, out) channels; we test out_channels (the channels being gated), which
differs only for the first conv of an image (1 or 3 input channels).
"""

from __future__ import annotations

import warnings
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import NoEffectWarning, Technique, TrainState

torch = lazy("torch")
nn = lazy("torch.nn")
LAYERS = ("SqueezeExcite2d", "SqueezeExciteConv2d")  # in effray.techniques.layers


def __getattr__(name: str):
    if name in LAYERS:  # the layers need torch at import: loaded when first asked for
        from effray.techniques import layers

        return getattr(layers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def latent_width(channels: int, latent_channels: float) -> int:
    """Hidden width: a fraction of `channels` when < 1, else an absolute count (Composer)."""
    width = latent_channels * channels if latent_channels < 1 else latent_channels
    return max(1, int(width))


def find_classifier_conv(model: nn.Module, num_classes: int) -> nn.Conv2d | None:
    """The conv that makes the logits, or None when the logits come from a Linear.

    The last Conv2d or Linear in module order makes the output; it is the classifier
    conv when it is a Conv2d with `num_classes` outputs. The width only confirms the
    position: an inner conv as wide as the class count is never mistaken for it.
    """
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    last = layers[-1] if layers else None
    if isinstance(last, nn.Conv2d) and last.out_channels == num_classes:
        return last
    return None


def se_candidates(model: nn.Module, num_classes: int | None = None) -> list[tuple]:
    """(parent, name, conv) for each Conv2d of `model` without an SE block yet.

    With `num_classes`, the classifier conv (see `find_classifier_conv`) is left out.
    """
    from effray.techniques.layers import SqueezeExciteConv2d

    classifier = None if num_classes is None else find_classifier_conv(model, num_classes)

    def visit(parent: nn.Module):
        for name, child in parent.named_children():
            if isinstance(child, SqueezeExciteConv2d):
                continue
            if isinstance(child, nn.Conv2d):
                if child is not classifier:
                    yield parent, name, child
            else:
                yield from visit(child)

    return list(visit(model))


def apply_squeeze_excite(
    model: nn.Module,
    latent_channels: float = 0.25,
    min_channels: int = 8,
    *,
    num_classes: int | None = None,
    bias: bool = False,
) -> dict[str, int]:
    """Add an SE block after each Conv2d of `model` with >= `min_channels` outputs, in place.

    Returns {"blocks": number added, "params": parameters added}. With `num_classes`,
    the classifier conv is skipped (see `find_classifier_conv`).
    """
    from effray.techniques.layers import SqueezeExciteConv2d

    done = {"blocks": 0, "params": 0}
    for parent, name, conv in se_candidates(model, num_classes):
        if conv.out_channels < min_channels:
            continue
        wrapped = SqueezeExciteConv2d(conv, latent_width(conv.out_channels, latent_channels), bias)
        setattr(parent, name, wrapped)
        done["blocks"] += 1
        done["params"] += sum(p.numel() for p in wrapped[1].parameters())
    return done


@register
class SqueezeExcite(Technique):
    """Squeeze-and-Excitation after every conv with at least `min_channels` outputs."""

    kind: Literal["squeeze_excite"] = "squeeze_excite"
    latent_channels: Annotated[float, Field(gt=0)] = 0.25  # < 1: fraction of C; >= 1: channels
    min_channels: Annotated[int, Field(ge=1)] = 8  # small: the paper's nets have 8-260 channels
    bias: bool = False  # Composer's SE MLP (the paper's) has no biases; Hu et al. have them

    paper: ClassVar[str] = "Hu et al. 2017, arXiv:1709.01507"

    def on_model(self, model: nn.Module, state: TrainState) -> nn.Module:
        convs = se_candidates(model, state.num_classes)
        skipped = sum(conv.out_channels < self.min_channels for _, _, conv in convs)
        done = apply_squeeze_excite(
            model,
            self.latent_channels,
            self.min_channels,
            num_classes=state.num_classes,
            bias=self.bias,
        )
        state.logs["squeeze_excite/num_blocks"] = float(done["blocks"])
        state.logs["squeeze_excite/params_added"] = float(done["params"])
        state.logs["squeeze_excite/num_skipped"] = float(skipped)
        if done["blocks"] and skipped:
            warnings.warn(
                f"{self.name}: {skipped} of {len(convs)} convs in {state.model_name} have "
                f"fewer than {self.min_channels} output channels and got no SE block; lower "
                "min_channels to include them",
                NoEffectWarning,
                stacklevel=2,
            )
        if done["blocks"] == 0:
            self.no_effect(
                state,
                f"no conv in {state.model_name} has >= {self.min_channels} output channels "
                "(the classifier excluded); model unchanged",
            )
        return model
