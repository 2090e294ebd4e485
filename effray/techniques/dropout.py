"""Dropout before the classifier.

Srivastava et al., "Dropout: A Simple Way to Prevent Neural Networks from
Overfitting", JMLR 15 (2014). The Stanford Cars thesis (seed 004, sections 4.2.7 and
4.2.12) tunes the dropout rate before GhostNet's last Linear layer (0.2 by default).

If the model already has `nn.Dropout` layers, their probability is set to `p`;
otherwise one `nn.Dropout(p)` is inserted right before the final classifier (the
last Conv2d or Linear). In an `nn.Sequential` it becomes a sibling named `dropout`
(the parameter names do not change, as with the paper nets' `dropout` knob);
elsewhere the classifier is wrapped as Sequential(Dropout, classifier).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from effray.lazy import lazy
from effray.techniques import register
from effray.techniques.base import Technique, TrainState

nn = lazy("torch.nn")


def _parent_of(model: nn.Module, target: nn.Module) -> tuple[nn.Module, str] | None:
    for parent in model.modules():
        for name, child in parent.named_children():
            if child is target:
                return parent, name
    return None


def apply_dropout(model: nn.Module, p: float) -> dict[str, int]:
    """Set every nn.Dropout to `p`, or insert one before the last Conv2d/Linear.

    Returns {"set": layers changed, "inserted": 0 or 1}.
    """
    existing = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for m in existing:
        m.p = p
    if existing:
        return {"set": len(existing), "inserted": 0}
    heads = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    found = _parent_of(model, heads[-1]) if heads else None
    if found is None:
        return {"set": 0, "inserted": 0}
    parent, name = found
    if isinstance(parent, nn.Sequential):
        new_name = "dropout" if "dropout" not in parent._modules else f"dropout_{name}"
        items = list(parent._modules.items())
        parent._modules.clear()
        for key, module in items:
            if key == name:
                parent._modules[new_name] = nn.Dropout(p)
            parent._modules[key] = module
    else:
        setattr(parent, name, nn.Sequential(nn.Dropout(p), heads[-1]))
    return {"set": 0, "inserted": 1}


@register
class Dropout(Technique):
    """Dropout with probability `p` before the classifier."""

    kind: Literal["dropout"] = "dropout"
    p: Annotated[float, Field(gt=0, lt=1)] = 0.2  # drop probability (the thesis's default)

    paper: ClassVar[str] = "Srivastava et al. 2014, JMLR 15; thesis 004 section 4.2.7"

    def on_model(self, model: nn.Module, state: TrainState) -> nn.Module:
        done = apply_dropout(model, self.p)
        state.logs["dropout/layers_set"] = float(done["set"])
        state.logs["dropout/layers_inserted"] = float(done["inserted"])
        if not (done["set"] or done["inserted"]):
            self.no_effect(state, f"no Dropout, Conv2d or Linear in {state.model_name}")
        return model
