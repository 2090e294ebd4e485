"""Techniques: the property that defines each one, the registry contract, composition in fit.

Registry tests are parametrised over `effray.techniques.TECHNIQUES`, so a new
technique is checked automatically; property tests check the math of each pure
function against a direct computation; end-to-end tests train through `fit` on the
synthetic dataset.
"""

from __future__ import annotations

import copy
import functools
import io
import math
import warnings
from pathlib import Path

import pydantic
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from effray.data import DataPipeline
from effray.errors import SpecError
from effray.models import build_model, count_params
from effray.spec import expand, load_spec, spec_from_dict
from effray.techniques import (
    RUN_ORDER,
    TECHNIQUES,
    NoEffectWarning,
    Technique,
    TrainState,
    ordered,
)
from effray.techniques.base import HOOKS
from effray.techniques.blurpool import BlurMaxPool2d, apply_blurpool, binomial_filter
from effray.techniques.cutout import cutout_batch
from effray.techniques.dropout import apply_dropout
from effray.techniques.early_stopping import EarlyStopping
from effray.techniques.label_smoothing import smooth_targets
from effray.techniques.mixup import mixup_batch, sample_lambda
from effray.techniques.one_cycle import OneCycle
from effray.techniques.sam import sam_perturb, sam_step
from effray.techniques.squeeze_excite import (
    SqueezeExcite2d,
    SqueezeExciteConv2d,
    apply_squeeze_excite,
    latent_width,
)
from effray.techniques.swa import SWA, first_averaged_epoch
from effray.train import fit

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
DATA = {"name": "synthetic", "train_size": 256, "val_size": 128, "size": 16}
TRAIN = {
    "epochs": 2,
    "batch_size": 64,
    "latency_repeats": 0,
    "threads": 1,
}  # 1: robust on a busy CPU
BASE = {"data": DATA, "model": {"name": "paper_mnist_1p5k_dw"}, "train": TRAIN}


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread, as `fit` uses with TRAIN: two threads crawl on a busy 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_spec(techniques: list[dict], channels: int | None = None, **train):
    data = {**BASE["data"], **({"channels": channels} if channels else {})}
    return spec_from_dict(
        {**BASE, "data": data, "train": {**TRAIN, **train}, "techniques": techniques}
    )


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return build_model("paper_mnist_1p5k_dw", num_classes=10, in_channels=1)


def make_state(model: nn.Module, *, epochs: int = 2, steps: int = 2, lr: float = 0.05):
    spec = make_spec([], epochs=epochs, lr=lr)
    batches = [
        (torch.randn(8, 1, 16, 16, generator=torch.Generator().manual_seed(i)), None)
        for i in range(2)
    ]
    return TrainState(
        spec=spec,
        device=torch.device("cpu"),
        num_classes=10,
        epochs=epochs,
        steps_per_epoch=steps,
        generator=torch.Generator().manual_seed(0),
        model=model,
        model_name="paper_mnist_1p5k_dw",
        train_batches=lambda: iter(batches),
    )


def drive(tech: Technique, *, epochs: int = 2, steps: int = 2, load: dict | None = None):
    """Run a technique's hooks through a small hand-made loop; return (state, tech)."""
    tech.on_data(DataPipeline())
    state = make_state(None, epochs=epochs, steps=steps)
    model = tech.on_model(tiny_net(), state)
    state.model = model
    state.optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    tech.on_optimizer(state)
    if load is not None:
        tech.load_state_dict(load)
        return state, tech
    gen = torch.Generator().manual_seed(1)
    for epoch in range(epochs):
        state.epoch = epoch
        state.generator.manual_seed(epoch)
        for _ in range(steps):
            labels = torch.randint(0, 10, (8,), generator=gen)
            state.x, state.labels = torch.randn(8, 1, 16, 16, generator=gen), labels
            state.y = F.one_hot(labels, 10).float()
            tech.on_batch(state)

            def closure():
                state.optimizer.zero_grad()
                loss = F.cross_entropy(model(state.x), state.y)
                loss.backward()
                return loss

            if "step" in type(tech).owns:
                state.loss = tech.step(state, closure)
            else:
                state.loss = closure()
                state.optimizer.step()
            state.step += 1
            tech.after_step(state)
        state.metrics = {"val/loss": 1.0 + epoch, "val/acc": 50.0, "train/loss": 1.0}
        state.metrics["train/acc"] = 50.0
        tech.on_epoch_end(state)
    return state, tech


def same(a, b) -> bool:
    """Equal, with tensors compared bit for bit and NaN equal to NaN, through dicts and lists."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(same, a, b))
    return a == b or (a != a and b != b)


# ---------------------------------------------------------------------------------
# The registry contract (every technique, including ones added later)
# ---------------------------------------------------------------------------------

KINDS = sorted(TECHNIQUES)


@pytest.mark.parametrize("kind", KINDS)
def test_default_constructible_from_kind(kind):
    tech = TECHNIQUES[kind].model_validate({"kind": kind})
    assert tech.kind == kind and tech.ablate


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_field_is_rejected(kind):
    with pytest.raises(pydantic.ValidationError, match="extra"):
        TECHNIQUES[kind].model_validate({"kind": kind, "no_such_field": 1})


def defined_hooks(cls: type[Technique]) -> list[str]:
    """The hooks that cls or a base class below Technique defines in its own body."""
    own = [vars(c) for c in cls.__mro__ if issubclass(c, Technique) and c is not Technique]
    return [name for name in HOOKS if any(name in body for body in own)]


@pytest.mark.parametrize("kind", KINDS)
def test_hooks_lists_exactly_what_it_overrides(kind):
    cls = TECHNIQUES[kind]
    listed = cls.hooks()
    assert listed, f"{kind} overrides no hook"
    assert listed == defined_hooks(cls)
    assert ("step" in listed) == ("step" in cls.owns)


def test_hooks_of_techniques_with_known_hooks():
    assert TECHNIQUES["label_smoothing"].hooks() == ["on_batch"]
    assert TECHNIQUES["swa"].hooks() == ["on_optimizer", "on_epoch_end", "on_fit_end"]
    assert TECHNIQUES["sam"].hooks() == ["step"]
    assert TECHNIQUES["early_stopping"].hooks() == ["on_epoch_end", "on_fit_end"]


@pytest.mark.parametrize("kind", KINDS)
def test_has_a_place_in_the_run_order_and_a_citation(kind):
    assert kind in RUN_ORDER
    assert TECHNIQUES[kind].paper
    assert TECHNIQUES[kind].__module__.startswith("effray.techniques.")


STATEFUL = [k for k in KINDS if TECHNIQUES[k].state_dict is not Technique.state_dict]


def test_the_stateful_techniques_are_the_schedulers_swa_and_early_stopping():
    lr_owners = {k for k in KINDS if "lr" in TECHNIQUES[k].owns}
    assert set(STATEFUL) == lr_owners | {"swa", "early_stopping"}


@pytest.mark.parametrize("kind", STATEFUL)
def test_state_dict_changes_in_training_and_round_trips_through_torch_save(kind):
    cls = TECHNIQUES[kind]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoEffectWarning)
        _, untrained = drive(cls.model_validate({"kind": kind}), load={})  # after on_optimizer
        _, tech = drive(cls.model_validate({"kind": kind}))
        saved = tech.state_dict()
        assert saved and not same(saved, untrained.state_dict()), "training left the state as built"
        buf = io.BytesIO()
        torch.save(saved, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=True)
        _, fresh = drive(cls.model_validate({"kind": kind}), load=loaded)
    assert same(fresh.state_dict(), saved)


# ---------------------------------------------------------------------------------
# BlurPool
# ---------------------------------------------------------------------------------


def test_blur_filter_is_the_normalised_binomial_outer_product():
    assert torch.equal(binomial_filter(3) * 16, torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]))
    row = torch.tensor([1.0, 4, 6, 4, 1])
    assert torch.allclose(binomial_filter(5), torch.outer(row, row) / 256)
    for size in range(2, 8):
        assert binomial_filter(size).sum().item() == pytest.approx(1.0)


@pytest.mark.parametrize("padding", ["zeros", "reflect"])
@pytest.mark.parametrize("filter_size", [2, 3, 4, 5])
def test_blurpool_keeps_the_downsampling_output_shape(padding, filter_size):
    for size in (5, 7, 14, 16, 28, 32):
        x = torch.randn(2, 3, size, size)
        for layer in (nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1), nn.Conv2d(3, 4, 3, 2, 1)):
            model = nn.Sequential(layer)
            want = model(x).shape
            counts = apply_blurpool(model, filter_size=filter_size, padding=padding)
            assert sum(counts.values()) == 1
            assert model(x).shape == want


def test_blurpool_is_more_shift_invariant_than_maxpool():
    torch.manual_seed(0)
    x = torch.rand(16, 4, 32, 32)
    shifted = torch.roll(x, 1, dims=-1)

    def similarity(layer):  # correlation of outputs for x and x shifted one pixel
        a, b = layer(x)[..., 2:-2, 2:-2], layer(shifted)[..., 2:-2, 2:-2]
        return F.cosine_similarity((a - a.mean()).flatten(), (b - b.mean()).flatten(), 0)

    plain, blurred = similarity(nn.MaxPool2d(2)), similarity(BlurMaxPool2d(nn.MaxPool2d(2)))
    assert blurred > plain + 0.2


def test_blurpool_on_a_paper_net_replaces_both_pools_once():
    model = tiny_net()
    x = torch.randn(2, 1, 28, 28)
    shape = model(x).shape
    assert apply_blurpool(model) == {"maxpools": 2, "convs": 0}
    assert model(x).shape == shape
    assert count_params(model) == 1560  # no parameters added
    assert apply_blurpool(model) == {"maxpools": 0, "convs": 0}  # idempotent


def test_blurpool_warns_and_logs_when_nothing_downsamples():
    tech = TECHNIQUES["blurpool"]()
    state = make_state(None)
    with pytest.warns(NoEffectWarning, match="no strided conv or pool"):
        tech.on_model(nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU()), state)
    assert state.logs["blurpool/num_layers"] == 0
    assert state.logs["blurpool/no_effect"] == 1


# ---------------------------------------------------------------------------------
# Squeeze-and-Excitation
# ---------------------------------------------------------------------------------


def test_se_output_is_input_times_the_sigmoid_gate():
    torch.manual_seed(0)
    se = SqueezeExcite2d(12, 3, bias=True)
    x = torch.randn(4, 12, 5, 5)
    pooled = x.mean(dim=(2, 3))
    hidden = torch.relu(pooled @ se.reduce.weight.view(3, 12).T + se.reduce.bias)
    gate = torch.sigmoid(hidden @ se.expand.weight.view(12, 3).T + se.expand.bias)
    assert torch.allclose(se(x), x * gate[:, :, None, None], atol=1e-6)


def test_se_adds_the_formula_parameter_count_and_skips_the_classifier():
    model = tiny_net()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    classifier = convs[-1]
    qualifying = [m for m in convs if m.out_channels >= 8 and m is not classifier]
    expected = sum(2 * m.out_channels * latent_width(m.out_channels, 0.25) for m in qualifying)
    done = apply_squeeze_excite(model, 0.25, 8, num_classes=10)
    assert done == {"blocks": len(qualifying), "params": expected}
    assert count_params(model) == 1560 + expected
    assert isinstance(model.classifier, nn.Conv2d)  # not wrapped
    assert sum(isinstance(m, SqueezeExciteConv2d) for m in model.modules()) == len(qualifying)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_se_latent_width_is_a_fraction_below_one_else_a_count():
    assert latent_width(12, 0.25) == 3
    assert latent_width(8, 0.1) == 1  # never zero
    assert latent_width(260, 64) == 64


def test_se_warns_when_no_conv_qualifies():
    tech = TECHNIQUES["squeeze_excite"](min_channels=1000)
    state = make_state(None)
    with pytest.warns(NoEffectWarning):
        tech.on_model(tiny_net(), state)
    assert state.logs["squeeze_excite/num_blocks"] == 0


# ---------------------------------------------------------------------------------
# Mixup
# ---------------------------------------------------------------------------------


def test_mixup_is_a_convex_combination_of_pairs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, 4, 4)
    y = torch.eye(10)  # image i has class i, so each mixed row names its partner
    xm, ym, lam = mixup_batch(x, y, 0.4, gen)
    assert 0 <= lam <= 1
    assert torch.allclose(ym.sum(1), torch.ones(10))
    for i in range(10):
        others = [j for j in ym[i].nonzero().flatten().tolist() if j != i]
        j = others[0] if others else i  # i's partner x[perm[i]]
        if j != i:
            assert ym[i, i].item() == pytest.approx(lam) and len(others) == 1
            assert ym[i, j].item() == pytest.approx(1 - lam)
        assert torch.allclose(xm[i], lam * x[i] + (1 - lam) * x[j], atol=1e-6)


def test_mixup_lambda_is_beta_distributed():
    gen = torch.Generator().manual_seed(0)
    draws = torch.tensor([sample_lambda(1.0, gen) for _ in range(4000)])
    assert draws.mean().item() == pytest.approx(0.5, abs=0.02)  # Beta(1,1) = U(0,1)
    assert draws.var().item() == pytest.approx(1 / 12, abs=0.01)
    small = torch.tensor([sample_lambda(0.2, gen) for _ in range(2000)])
    assert ((small < 0.1) | (small > 0.9)).float().mean() > 0.5  # U-shaped for alpha < 1


def test_mixup_is_reproducible_from_the_generator():
    x, y = torch.randn(16, 1, 8, 8), torch.eye(16)
    a = mixup_batch(x, y, 0.2, torch.Generator().manual_seed(7))
    b = mixup_batch(x, y, 0.2, torch.Generator().manual_seed(7))
    c = mixup_batch(x, y, 0.2, torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
    assert not torch.equal(a[0], c[0])


# ---------------------------------------------------------------------------------
# Cutout
# ---------------------------------------------------------------------------------


def test_cutout_cuts_one_size_by_size_hole_per_image_at_independent_places():
    size, n, side = 10, 64, 32
    x = torch.ones(n, 3, side, side)
    out = cutout_batch(x, size, torch.Generator().manual_seed(0))
    holes = out == 0
    assert torch.equal(holes[:, :1].expand_as(holes), holes)  # same hole in every channel
    corners, interior = set(), 0
    for img in holes[:, 0]:
        rows, cols = img.any(1).nonzero().flatten(), img.any(0).nonzero().flatten()
        top, left = rows.min().item(), cols.min().item()
        h, w = rows.max().item() - top + 1, cols.max().item() - left + 1
        assert img.sum().item() == h * w  # one solid rectangle
        touches = top == 0 or left == 0 or top + h == side or left + w == side
        if not touches:
            interior += 1
            assert (h, w) == (size, size)
        else:
            assert h <= size and w <= size
        corners.add((top, left))
    assert interior > n // 3
    assert len(corners) > n // 2  # positions drawn per image


def test_cutout_is_reproducible_and_leaves_the_rest_untouched():
    x = torch.rand(8, 1, 28, 28) + 0.5
    a = cutout_batch(x, 10, torch.Generator().manual_seed(3))
    b = cutout_batch(x, 10, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    kept = a != 0
    assert torch.equal(a[kept], x[kept])


# ---------------------------------------------------------------------------------
# Label smoothing
# ---------------------------------------------------------------------------------


def _logits_and_targets(mixed: bool, k: int = 10, n: int = 32):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(n, k, generator=gen) * 3
    y = F.one_hot(torch.randint(0, k, (n,), generator=gen), k).float()
    if mixed:  # as mixup leaves them: a convex combination of two one-hot rows
        y = 0.7 * y + 0.3 * y.roll(1, 0)
    return logits, y


@pytest.mark.parametrize("mixed", [False, True])
def test_label_smoothing_loss_matches_its_definition(mixed):
    k, alpha = 10, 0.1
    logits, y = _logits_and_targets(mixed, k)
    ce_each = -F.log_softmax(logits, -1)  # CE against each class k
    definition = ((1 - alpha) * (y * ce_each).sum(1) + alpha * ce_each.mean(1)).mean()
    loop_loss = nn.CrossEntropyLoss()(logits, smooth_targets(y, alpha))  # what fit computes
    assert torch.allclose(loop_loss, definition, atol=1e-6)


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.9])
@pytest.mark.parametrize("mixed", [False, True])
def test_smoothed_targets_give_torch_s_label_smoothing_loss_bit_for_bit(mixed, alpha):
    logits, y = _logits_and_targets(mixed)
    ours = logits.clone().requires_grad_()
    loss = nn.CrossEntropyLoss()(ours, smooth_targets(y, alpha))
    loss.backward()
    torch_s = logits.clone().requires_grad_()
    want = nn.CrossEntropyLoss(label_smoothing=alpha)(torch_s, y)
    want.backward()
    assert torch.equal(loss, want)
    assert torch.equal(ours.grad, torch_s.grad)  # so training is bit for bit the same too


def test_label_smoothing_smooths_the_batch_targets_after_mixup():
    state = make_state(tiny_net())
    state.x, state.labels = torch.randn(8, 1, 16, 16), torch.arange(8)
    state.y = F.one_hot(state.labels, 10).float()
    x, y = state.x.clone(), state.y.clone()
    smoothing, mixup = TECHNIQUES["label_smoothing"](alpha=0.2), TECHNIQUES["mixup"](alpha=1.0)
    assert ordered([smoothing, mixup]) == [mixup, smoothing]  # mixed targets get smoothed
    smoothing.on_batch(state)
    assert torch.equal(state.y, smooth_targets(y, 0.2))
    assert state.y.max().item() == pytest.approx(0.8 + 0.02) and state.y.min() > 0
    assert torch.equal(state.x, x) and torch.equal(state.labels, torch.arange(8))


# ---------------------------------------------------------------------------------
# SAM
# ---------------------------------------------------------------------------------


def _linear_problem():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 0, 1])
    return model, x, y


def test_sam_perturbation_has_norm_rho():
    model, x, y = _linear_problem()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), y).backward()
    moves = sam_perturb(opt, rho=0.05)
    norm = torch.linalg.vector_norm(torch.cat([e.flatten() for _, e in moves]))
    assert norm.item() == pytest.approx(0.05, rel=1e-5)


def test_sam_step_is_the_base_step_with_the_gradient_at_the_perturbed_point():
    model, x, y = _linear_problem()
    rho, lr = 0.05, 0.1
    w0 = [p.detach().clone() for p in model.parameters()]

    def loss_at(ws):
        return F.cross_entropy(F.linear(x, ws[0], ws[1]), y)

    ws = [w.clone().requires_grad_() for w in w0]
    g = torch.autograd.grad(loss_at(ws), ws)
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    perturbed = [(w + rho * gi / norm).requires_grad_() for w, gi in zip(w0, g, strict=True)]
    g_sam = torch.autograd.grad(loss_at(perturbed), perturbed)
    expected = [w - lr * gi for w, gi in zip(w0, g_sam, strict=True)]

    opt = torch.optim.SGD(model.parameters(), lr=lr)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = sam_step(model, opt, closure, rho=rho)
    assert loss.item() == pytest.approx(loss_at(w0).item())  # the first pass's loss
    for p, e in zip(model.parameters(), expected, strict=True):
        assert torch.allclose(p, e, atol=1e-6)


def test_sam_second_pass_leaves_batchnorm_statistics_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
    x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 2, (8,))
    one_pass = copy.deepcopy(model)
    one_pass(x)  # what the first pass alone does to the statistics
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    sam_step(model, opt, closure, rho=0.5)
    for name, buf in model[1].named_buffers():
        assert torch.equal(buf, dict(one_pass[1].named_buffers())[name]), name


# ---------------------------------------------------------------------------------
# SWA
# ---------------------------------------------------------------------------------


def test_swa_starts_at_its_fraction_of_the_epochs():
    assert first_averaged_epoch(0.75, 20) == 15
    assert first_averaged_epoch(0.5, 4) == 2
    assert first_averaged_epoch(0.0, 4) == 1


def test_swa_weights_are_the_mean_of_the_snapshots_and_bn_is_recomputed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(48, 2))
    state = make_state(model, epochs=4)
    state.train_batches = lambda: iter([(torch.randn(8, 1, 6, 6) + 3.0, None) for _ in range(3)])
    swa = SWA(start=0.25)
    swa.on_optimizer(state)
    snapshots = []
    for epoch in range(4):
        state.epoch = epoch
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        snapshots.append([p.detach().clone() for p in model.parameters()])
        swa.on_epoch_end(state)
    before = model[1].running_mean.clone()
    assert swa.on_fit_end(state) is True
    for p, *snaps in zip(model.parameters(), *snapshots, strict=True):
        assert torch.allclose(p, torch.stack(snaps).mean(0), atol=1e-6)
    assert not torch.allclose(model[1].running_mean, before)  # update_bn ran


def test_swa_warns_when_the_fit_ends_before_averaging():
    model = tiny_net()
    state = make_state(model, epochs=10)
    swa = SWA()
    swa.on_optimizer(state)
    state.epoch = 2
    swa.on_epoch_end(state)
    with pytest.warns(NoEffectWarning, match="before averaging began"):
        assert swa.on_fit_end(state) is False


# ---------------------------------------------------------------------------------
# Learning-rate schedules
# ---------------------------------------------------------------------------------


def _lrs_per_step(tech: Technique, epochs: int, steps: int, lr: float = 0.1) -> list[float]:
    model = nn.Linear(2, 2)
    state = make_state(model, epochs=epochs, steps=steps, lr=lr)
    state.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    tech.on_optimizer(state)
    seen = []
    for epoch in range(epochs):
        state.epoch = epoch
        for _ in range(steps):
            seen.append(state.lr)
            state.optimizer.step()
            state.step += 1
            tech.after_step(state)
        state.metrics = {"val/loss": 1.0, "val/acc": 0.0, "train/loss": 1.0, "train/acc": 0.0}
        tech.on_epoch_end(state)
    return seen


def test_one_cycle_lr_per_step_is_torch_s_one_cycle():
    epochs, steps = 3, 7
    seen = _lrs_per_step(OneCycle(max_lr=0.4), epochs, steps)
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=epochs * steps)
    want = []
    for _ in range(epochs * steps):
        want.append(opt.param_groups[0]["lr"])
        opt.step()
        if len(want) < epochs * steps:
            ref.step()
    assert seen == pytest.approx(want, rel=1e-12)
    assert 0.39 < max(seen) <= 0.4 + 1e-12
    assert seen[0] == pytest.approx(0.4 / 25)


def test_one_cycle_peaks_at_train_lr_by_default():
    seen = _lrs_per_step(OneCycle(), 2, 10, lr=0.05)
    assert max(seen) == pytest.approx(0.05)


def test_multistep_lr_drops_at_the_milestones():
    tech = TECHNIQUES["multistep_lr"](milestones=[2, 4], gamma=0.1)
    per_epoch = _lrs_per_step(tech, 5, 1, lr=1.0)
    assert per_epoch == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01])


def test_exponential_lr_decays_every_epoch():
    per_epoch = _lrs_per_step(TECHNIQUES["exponential_lr"](gamma=0.5), 4, 1, lr=1.0)
    assert per_epoch == pytest.approx([1.0, 0.5, 0.25, 0.125])


def test_reduce_lr_on_plateau_reduces_after_patience():
    tech = TECHNIQUES["reduce_lr_on_plateau"](patience=1)
    per_epoch = _lrs_per_step(tech, 5, 1, lr=1.0)  # val/loss is flat at 1.0
    assert per_epoch == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])


def test_multistep_milestones_must_increase():
    with pytest.raises(pydantic.ValidationError, match="strictly increasing"):
        TECHNIQUES["multistep_lr"](milestones=[5, 3])


# ---------------------------------------------------------------------------------
# Early stopping, dropout
# ---------------------------------------------------------------------------------


def test_early_stopping_stops_after_patience_epochs_without_improvement():
    model = tiny_net()
    state = make_state(model, epochs=20)
    stop = EarlyStopping(patience=3, restore_best=True)
    losses = [1.0, 0.8, 0.85, 0.9, 0.81, 0.95]
    for epoch, loss in enumerate(losses):
        state.epoch = epoch
        state.metrics = {"val/loss": loss}
        with torch.no_grad():
            model.classifier.weight.fill_(float(epoch))
        stop.on_epoch_end(state)
        assert state.stop_reason == ("early_stopping" if epoch == 4 else None)
        if state.stop_reason:
            break
    assert stop.on_fit_end(state) is True
    assert model.classifier.weight.eq(1.0).all()  # epoch 2 (index 1) was the best


def test_early_stopping_refuses_a_direction_that_contradicts_the_metric():
    with pytest.raises(pydantic.ValidationError, match="use mode: max"):
        EarlyStopping(metric="val/acc")
    EarlyStopping(metric="val/acc", mode="max")


def test_dropout_is_inserted_before_the_classifier_with_names_unchanged():
    model = tiny_net()
    keys = list(model.state_dict())
    assert apply_dropout(model, 0.3) == {"set": 0, "inserted": 1}
    names = [name for name, _ in model.named_children()]
    assert names.index("dropout") == names.index("classifier") - 1
    assert model.dropout.p == 0.3 and list(model.state_dict()) == keys
    assert apply_dropout(model, 0.1) == {"set": 1, "inserted": 0}
    assert model.dropout.p == 0.1


# ---------------------------------------------------------------------------------
# Through fit, on the synthetic dataset
# ---------------------------------------------------------------------------------


# Arguments under which a technique acts within the 3-epoch fit below (its defaults
# wait longer), and data on which it has something to do.
ACTS_SOON = {
    "multistep_lr": {"milestones": [1]},
    "reduce_lr_on_plateau": {"patience": 0, "metric": "train/acc", "mode": "max", "threshold": 10},
    "early_stopping": {"patience": 1, "metric": "train/acc", "mode": "max", "min_delta": 100},
}
RGB_ONLY = {"grayscale"}  # one-channel images are already gray


@functools.cache
def baseline_weights(channels: int) -> dict[str, torch.Tensor]:
    spec = make_spec([], epochs=3)
    spec.data.channels = channels
    return fit(spec).model.state_dict()


@pytest.mark.parametrize("kind", KINDS)
def test_each_technique_alone_trains_to_other_weights_than_the_baseline(kind):
    cls = TECHNIQUES[kind]
    if cls.requires:
        pytest.skip(f"{kind} needs {cls.requires}; the synthetic dataset has none")
    channels = 3 if kind in RGB_ONLY else 1
    spec = make_spec([{"kind": kind, **ACTS_SOON.get(kind, {})}], channels=channels, epochs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NoEffectWarning)
        result = fit(spec)
    assert all(math.isfinite(m["train/loss"]) for m in result.history)
    base, ours = baseline_weights(spec.data.channels), result.model.state_dict()
    assert ours.keys() != base.keys() or not same(ours, base), f"{kind} changed nothing"


def test_the_paper_s_techniques_compose():
    spec = make_spec(
        [
            {"kind": "swa", "start": 0.5},
            {"kind": "one_cycle"},
            {"kind": "sam"},
            {"kind": "mixup"},
            {"kind": "label_smoothing"},
            {"kind": "cutout", "size": 6},
            {"kind": "blurpool"},
            {"kind": "squeeze_excite"},
        ],
        epochs=3,
    )
    result = fit(spec)
    final = result.final
    assert result.stop_reason == "finished" and math.isfinite(final["val/loss"])
    assert final["swa/n_averaged"] == 2
    assert final["blurpool/num_layers"] == 2 and final["squeeze_excite/num_blocks"] > 0


class _Killed(Exception):
    pass


def test_resume_mid_swa_and_mid_cycle_is_bitwise_exact(tmp_path):
    techniques = [
        {"kind": "swa", "start": 0.5},
        {"kind": "one_cycle"},
        {"kind": "sam"},
        {"kind": "mixup"},
        {"kind": "cutout", "size": 6},
    ]
    spec = make_spec(techniques, epochs=4)
    straight = fit(spec)

    def kill_after_two(metrics, checkpoint):
        if metrics["epoch"] == 2:
            raise _Killed

    with pytest.raises(_Killed):
        fit(spec, report=kill_after_two, checkpoint_dir=tmp_path)
    resumed = fit(spec, checkpoint_dir=tmp_path, resume_from=tmp_path)
    assert [m["epoch"] for m in resumed.history] == [1, 2, 3, 4]
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_early_stopping_ends_a_fit_and_swa_still_finishes():
    spec = make_spec(
        [
            {
                "kind": "early_stopping",
                "patience": 1,
                "metric": "train/acc",
                "mode": "max",
                "min_delta": 100,
            },
            {"kind": "swa", "start": 0.0},
        ],
        epochs=5,
    )
    result = fit(spec)
    assert result.stop_reason == "early_stopping" and len(result.history) == 2
    assert result.final["swa/n_averaged"] == 2


# ---------------------------------------------------------------------------------
# Spec level: composition rules, errors, ablation expansion
# ---------------------------------------------------------------------------------


def _errors(raw: dict) -> str:
    with pytest.raises(SpecError) as info:
        spec_from_dict(raw)
    return str(info.value)


def test_two_lr_owners_are_a_spec_error_naming_both():
    msg = _errors({**BASE, "techniques": [{"kind": "one_cycle"}, {"kind": "multistep_lr"}]})
    assert "one_cycle" in msg and "multistep_lr" in msg and "learning rate" in msg


def test_a_technique_listed_twice_is_a_spec_error():
    msg = _errors({**BASE, "techniques": [{"kind": "mixup"}, {"kind": "mixup", "alpha": 1}]})
    assert "'mixup' is listed 2 times" in msg


def test_a_bad_field_value_names_its_path():
    msg = _errors({**BASE, "techniques": [{"kind": "mixup", "alpha": -1}]})
    assert "techniques.0.alpha" in msg and "-1" in msg


THREE = [{"kind": "blurpool"}, {"kind": "cutout"}, {"kind": "mixup"}]


def _names(ablation, search=None) -> list[str]:
    raw = {**BASE, "techniques": THREE, "ablation": ablation}
    if search is not None:
        raw["search"] = search
    return [t.trial.name for t in expand(spec_from_dict(raw))]


def test_one_at_a_time_is_baseline_plus_each():
    assert _names("one_at_a_time") == ["baseline", "blurpool", "cutout", "mixup"]


def test_leave_one_out_is_all_plus_each_dropped():
    assert _names("leave_one_out") == [
        "blurpool+cutout+mixup",
        "cutout+mixup",
        "blurpool+mixup",
        "blurpool+cutout",
    ]


def test_all_subsets_is_two_to_the_n():
    names = _names("all_subsets")
    assert len(names) == 8 == len(set(names)) and "baseline" in names


def test_an_explicit_list_names_each_set():
    assert _names([["blurpool", "cutout", "mixup"]]) == ["blurpool+cutout+mixup"]
    trial = expand(spec_from_dict({**BASE, "techniques": THREE, "ablation": [["mixup"]]}))[0]
    assert [t.kind for t in trial.techniques] == ["mixup"]


def test_seeds_multiply_the_ablation():
    search = {"space": {"train.seed": {"grid": [0, 1, 2]}}, "asha": None}
    names = _names("one_at_a_time", search)
    assert len(names) == 12
    assert [n for n in names if n.startswith("cutout")] == [
        "cutout-seed0",
        "cutout-seed1",
        "cutout-seed2",
    ]


def test_expand_keeps_a_real_dataset_spec_valid():
    raw = {**BASE, "data": {"name": "fashion_mnist", "download": True}, "techniques": THREE}
    assert len(expand(spec_from_dict({**raw, "ablation": "one_at_a_time"}))) == 4


SPECS = sorted(EXPERIMENTS.glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_experiment_specs_load_and_expand(path, tmp_path):
    overrides = []
    if yaml.safe_load(path.read_text())["data"]["name"] == "stanford_cars":  # not here: a sample
        from effray.data.cars_sample import make_sample_cars

        root = make_sample_cars(tmp_path / "cars", classes=2, train=2, test=2).root
        overrides = [f"data.root={root}"]
    spec = load_spec(path, overrides)
    if spec.search is not None and spec.search.adaptive:  # proposed as it runs: a budget
        from effray.spec.plan import search_plan

        assert expand(spec) == [] and search_plan(spec, 0)["budget"] > 0
        return
    trials = expand(spec)
    names = [t.trial.name for t in trials]
    assert trials and len(names) == len(set(names))
    groups = {t.trial.group for t in trials}
    assert set(spec.reference) <= groups, set(spec.reference) - groups  # report can match them
