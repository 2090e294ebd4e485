"""Adaptive search without Ray running: the search section's validation, the greedy
stages' choices, random draws, Optuna's suggestions, PBT's explore step, and the
optimizer retargeting a PBT exploit relies on. Real runs: tests/test_search_ray.py."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from effray.errors import SpecError
from effray.spec import expand, load_spec, spec_from_dict
from effray.spec.stages import Choice, apply_changes, budget, choose, stage_trials

ROOT = Path(__file__).resolve().parents[1]
SYN = {"name": "synthetic", "train_size": 64, "val_size": 32, "size": 16, "num_classes": 4}


def spec_dict(**over) -> dict:
    spec = {
        "name": "s",
        "data": dict(SYN),
        "train": {"epochs": 2, "latency_repeats": 0},
        "techniques": [
            {"kind": "one_cycle"},
            {"kind": "label_smoothing", "alpha": 0.1},
            {"kind": "mixup", "alpha": 0.2},
        ],
    }
    spec.update(over)
    return spec


def problems(spec: dict) -> str:
    with pytest.raises(SpecError) as info:
        spec_from_dict(spec)
    return str(info.value)


# --- the search section -------------------------------------------------------------


def test_a_01_spec_with_only_an_asha_block_still_means_asha():
    spec = spec_from_dict(spec_dict(search={"asha": {"metric": "val/loss", "mode": "min"}}))
    assert spec.search.scheduler_name == "asha"
    assert (spec.search.metric, spec.search.mode) == ("val/loss", "min")
    assert spec_from_dict(spec_dict(search={"asha": None})).search.scheduler_name == "none"
    assert spec_from_dict(spec_dict(search={})).search.scheduler_name == "asha"


@pytest.mark.parametrize(
    "search, expected",
    [
        ({"algorithm": "optima"}, ["search.algorithm", "did you mean 'optuna'"]),
        ({"scheduler": "pbtt"}, ["search.scheduler", "did you mean 'pbt'"]),
        ({"metric": "val/accuracy"}, ["search.metric", "did you mean 'val/acc'"]),
        ({"startup_trials": 3}, ["search.startup_trials", "setting of algorithm 'optuna'"]),
        (
            {"asha": {}, "pbt": {"mutations": {"train.lr": {"uniform": [0.01, 0.1]}}}},
            ["two schedulers at once", "asha and pbt"],
        ),
        (
            {
                "scheduler": "median_stopping",
                "pbt": {"mutations": {"train.lr": {"uniform": [0.01, 0.1]}}},
            },
            ["search.scheduler is 'median_stopping' but the settings block is 'pbt'"],
        ),
        ({"scheduler": "pbt"}, ["scheduler 'pbt' needs a pbt block with mutations"]),
        (
            {"algorithm": "optuna", "space": {"train.seed": {"grid": [0, 1]}}},
            [
                "search.space",
                "grid dimensions cannot be combined with algorithm 'optuna'",
                "train.seed",
            ],
        ),
        (
            {"scheduler": "pbt", "pbt": {"mutations": {"train.lrr": {"uniform": [0.01, 0.1]}}}},
            ["search.pbt.mutations.train.lrr", "did you mean 'lr'"],
        ),
        (
            {"scheduler": "pbt", "pbt": {"mutations": {"train.optimizer": {"choice": ["sgd"]}}}},
            ["search.pbt.mutations.train.optimizer", "pbt mutates numbers"],
        ),
        (
            {"scheduler": "pbt", "pbt": {"mutations": {"train.nesterov": {"choice": [0, 1]}}}},
            ["pbt mutates numbers", "train.nesterov is False (bool)"],
        ),
        (
            {"scheduler": "pbt", "pbt": {"mutations": {"train.lr": {"grid": [0.1]}}}},
            ["a mutation is one sampler", "allowed one of"],
        ),
        (
            {"stages": [{"name": "a", "alternatives": [{"add": ["mixupp"]}]}]},
            ["search.stages.0.alternatives.0.add.0", "names no technique", "did you mean 'mixup'"],
        ),
        (
            {"stages": [{"name": "a", "alternatives": [{"set": {"train.weight_decy": 0.1}}]}]},
            ["search.stages.0.alternatives.0.set", "did you mean 'weight_decay'"],
        ),
        (
            {"stages": [{"name": "a", "alternatives": [{"set": {"train.lr": -1}}]}]},
            ["search.stages.0.alternatives.0.set", "train.lr"],
        ),
        (
            {
                "algorithm": "optuna",
                "stages": [{"name": "a", "alternatives": [{"add": ["mixup"]}]}],
            },
            ["search.stages", "cannot be combined with algorithm optuna"],
        ),
        (
            {"stages": [{"name": "a", "alternatives": [{"add": ["mixup"]}, {"add": ["mixup"]}]}]},
            ["alternative name '+mixup' is used twice"],
        ),
    ],
    ids=lambda v: str(v)[:40] if isinstance(v, dict) else None,
)
def test_bad_search_sections_are_refused_with_the_field(search, expected):
    message = problems(spec_dict(search=search))
    for part in expected:
        assert part in message, message


def test_a_stage_path_with_two_lr_owners_is_refused():
    spec = spec_dict(
        techniques=[{"kind": "one_cycle"}, {"kind": "multistep_lr", "milestones": [1]}],
        search={
            "stages": [
                {"name": "a", "alternatives": [{"add": ["one_cycle"]}]},
                {"name": "b", "alternatives": [{"add": ["multistep_lr"]}]},
            ]
        },
    )
    message = problems(spec)
    assert "the path a:+one_cycle then b:+multistep_lr gives an invalid trial" in message
    assert "both own the learning rate" in message


def test_validate_exits_2_on_a_bad_search_and_names_the_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec_dict(search={"algorithm": "tpe"})))
    out = subprocess.run(
        [sys.executable, "-m", "effray", "validate", str(path)], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "search.algorithm" in out.stdout + out.stderr
    assert "allowed" in out.stdout + out.stderr


# --- grid and random ---------------------------------------------------------------------


def test_random_draws_every_dimension_reproducibly_within_bounds():
    search = {
        "algorithm": "random",
        "space": {
            "train.lr": {"loguniform": [0.001, 0.1]},
            "train.seed": {"grid": [0, 1, 2]},
            "train.batch_size": {"randint": [16, 64]},
        },
        "num_samples": 7,
        "seed": 3,
    }
    trials = expand(spec_from_dict(spec_dict(techniques=[], search=search)))
    again = expand(spec_from_dict(spec_dict(techniques=[], search=search)))
    assert len(trials) == 7  # num_samples points, not a product with the grid
    assert [t.trial.params for t in trials] == [t.trial.params for t in again]
    for t in trials:
        assert 0.001 <= t.train.lr <= 0.1 and 16 <= t.train.batch_size < 64
        assert t.train.seed in (0, 1, 2)
    grid = expand(spec_from_dict(spec_dict(techniques=[], search={**search, "algorithm": "grid"})))
    assert len(grid) == 21  # grid: 3 seeds x 7 draws


# --- stages ------------------------------------------------------------------------------


def test_choose_takes_the_best_mean_unless_an_earlier_one_is_within_one_std():
    keep = Choice("keep", [80.0, 81.0, 82.0])
    better = Choice("+a", [85.0, 86.0, 87.0])
    assert choose([keep, better]).label == "+a"
    noisy = Choice("+b", [70.0, 84.0, 98.0])  # mean 84, std 14: keep is within one std
    assert choose([keep, noisy]).label == "keep"
    first, second = Choice("+c", [85.0, 85.5, 86.0]), Choice("+d", [85.0, 86.0, 87.0])
    assert choose([keep, first, second]).label == "+c"  # a tie: the earlier one
    assert choose([keep, better], mode="min").label == "keep"
    with pytest.raises(ValueError):
        choose([Choice("x", [])])


def test_stage_trials_build_on_the_winners_and_reuse_seeds():
    spec = spec_from_dict(
        spec_dict(
            search={
                "space": {"train.seed": {"grid": [0, 1]}},
                "stages": [
                    {"name": "sched", "alternatives": [{"add": ["one_cycle"]}]},
                    {
                        "name": "reg",
                        "alternatives": [{"add": ["mixup"]}, {"set": {"train.weight_decay": 0.01}}],
                    },
                ],
            }
        )
    )
    assert expand(spec) == []  # an adaptive search lists nothing up front
    assert budget(spec) == 2 * (1 + 1 + 2)
    first = stage_trials(spec, 0, [], with_base=True)
    assert [t.trial.name for t in first] == [
        "s1-keep-seed0",
        "s1-keep-seed1",
        "s1-+one_cycle-seed0",
        "s1-+one_cycle-seed1",
    ]
    assert [t.kind for t in first[0].techniques] == ["label_smoothing"]  # staged ones start off
    assert [t.kind for t in first[2].techniques] == ["one_cycle", "label_smoothing"]
    winner = spec.search.stages[0].alternatives[0]
    second = stage_trials(spec, 1, [winner])
    assert [t.trial.stage for t in second] == ["2-reg"] * 4
    assert [t.kind for t in second[0].techniques] == ["one_cycle", "label_smoothing", "mixup"]
    assert second[2].train.weight_decay == 0.01
    assert [t.kind for t in second[2].techniques] == ["one_cycle", "label_smoothing"]
    assert not isinstance(apply_changes(spec, [winner]), SpecError)


# --- optuna and pbt pieces ---------------------------------------------------------------


def _optuna_spec(seed: int, startup: int | None = None):
    extra = {} if startup is None else {"startup_trials": startup}
    return spec_from_dict(
        spec_dict(
            techniques=[],
            search={
                "algorithm": "optuna",
                "space": {
                    "train.lr": {"loguniform": [1e-4, 0.1]},
                    "train.momentum": {"uniform": [0.5, 0.95]},
                    "train.batch_size": {"choice": [16, 32, 64]},
                },
                "num_samples": 12,
                "seed": seed,
                **extra,
            },
        )
    )


def _suggestions(seed: int, startup: int | None = None) -> list[dict]:
    from effray.tune.experiment import TrialMaker
    from effray.tune.search import searcher

    spec = _optuna_spec(seed, startup)
    alg = searcher(spec, TrialMaker(spec))
    out = []
    for i in range(12):
        config = alg.suggest(f"t{i}")
        trial = config["trial"]
        out.append(trial)
        score = -abs(math.log10(trial["train"]["lr"]) + 2)  # best at lr 0.01
        alg.on_trial_complete(f"t{i}", {"val/acc": score, "epoch": 1})
    return out


def test_optuna_suggests_named_trials_within_bounds_reproducibly():
    first, again, other = _suggestions(0), _suggestions(0), _suggestions(1)
    key = [(t["train"]["lr"], t["train"]["momentum"], t["train"]["batch_size"]) for t in first]
    assert key == [
        (t["train"]["lr"], t["train"]["momentum"], t["train"]["batch_size"]) for t in again
    ]
    assert key != [
        (t["train"]["lr"], t["train"]["momentum"], t["train"]["batch_size"]) for t in other
    ]
    for i, t in enumerate(first):
        assert 1e-4 <= t["train"]["lr"] <= 0.1 and 0.5 <= t["train"]["momentum"] <= 0.95
        assert t["train"]["batch_size"] in (16, 32, 64)
        assert t["trial"]["name"] == f"baseline-t{i:03d}" and t["trial"]["index"] == i
        assert len(t["trial"]["id"]) == 8
        assert set(t["trial"]["params"]) == {"train.lr", "train.momentum", "train.batch_size"}
    assert len({t["trial"]["id"] for t in first}) == 12


def test_optuna_startup_trials_is_optunas_n_startup_trials():
    """Optuna's TPE samples its first n_startup_trials (default 10) at random: 10 is the
    default's sequence; 3 shares the first 3 random points, then models the results."""
    lrs = {s: [t["train"]["lr"] for t in _suggestions(0, s)] for s in (None, 10, 3)}
    assert lrs[10] == lrs[None]
    assert lrs[3][:3] == lrs[None][:3] and lrs[3][3:] != lrs[None][3:]


def test_pbt_explore_stays_in_range_and_keeps_the_trials_identity():
    from effray.tune.search import SpecPBT, explore

    rng = random.Random(0)
    for _ in range(200):
        v, _ = explore(0.09, {"uniform": [0.01, 0.1]}, rng, 0.25, (1.2, 0.8))
        assert 0.01 <= v <= 0.1
        v, _ = explore(4, {"randint": [1, 5]}, rng, 0.25, (1.2, 0.8))
        assert 1 <= v < 5 and isinstance(v, int)
    v, op = explore(0.05, {"uniform": [0.01, 0.1]}, random.Random(1), 0.0, (1.2, 0.8))
    assert op in ("* 1.2", "* 0.8") and math.isclose(v, 0.05 * float(op[2:]))

    spec = spec_from_dict(
        spec_dict(
            techniques=[{"kind": "mixup", "alpha": 0.2}],
            search={
                "algorithm": "random",
                "space": {"train.seed": {"grid": [0, 1]}},
                "num_samples": 2,
                "scheduler": "pbt",
                "pbt": {
                    "mutations": {
                        "train.lr": {"loguniform": [1e-3, 0.5]},
                        "techniques.mixup.alpha": {"uniform": [0.1, 0.4]},
                    },
                    "resample_probability": 0.0,
                },
            },
        )
    )
    donor, own = [
        type("T", (), {"config": {"trial": t.model_dump(mode="json")}}) for t in expand(spec)
    ]
    donor.config["trial"]["train"]["seed"] = 7
    pbt = SpecPBT(spec.search)
    new, ops = pbt._get_new_config(own, donor)
    assert new["trial"]["trial"] == own.config["trial"]["trial"]  # its own name and id
    assert new["trial"]["train"]["seed"] == own.config["trial"]["train"]["seed"]
    assert set(ops) == {"train.lr", "techniques.mixup.alpha"}
    ratio = new["trial"]["train"]["lr"] / donor.config["trial"]["train"]["lr"]
    assert math.isclose(ratio, 1.2) or math.isclose(ratio, 0.8)
    alpha = new["trial"]["techniques"][0]["alpha"]
    assert math.isclose(alpha, 0.24) or math.isclose(alpha, 0.16)


@pytest.mark.parametrize("schedule", ["constant", "one_cycle", "multistep"])
def test_retarget_continues_the_schedule_at_the_new_learning_rate(schedule):
    """A schedule built with lr 0.1 and moved to 0.05 mid-way gives exactly the lrs the
    same schedule built with 0.05 gives (the definition of 'the new peak lr')."""
    from effray.hyper import retarget
    from effray.spec import TrainSpec

    def build(lr: float):
        p = torch.nn.Parameter(torch.zeros(2))
        opt = torch.optim.SGD([p], lr=lr, momentum=0.9, weight_decay=1e-4)
        if schedule == "one_cycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=20)
        elif schedule == "multistep":
            sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 12], gamma=0.1)
        else:
            sched = None
        holder = type("Tech", (), {})()
        holder.scheduler = sched
        return opt, sched, holder

    old, new = (
        TrainSpec(lr=0.1, weight_decay=1e-4),
        TrainSpec(lr=0.05, weight_decay=1e-3, momentum=0.8),
    )
    opt_a, sched_a, tech_a = build(0.1)
    opt_b, sched_b, _ = build(0.05)
    for step in range(20):
        if step == 8:
            retarget(opt_a, [tech_a], old, new)
        if step >= 8:
            assert math.isclose(opt_a.param_groups[0]["lr"], opt_b.param_groups[0]["lr"]), step
        opt_a.step()
        opt_b.step()
        if sched_a is not None and step < 19:
            sched_a.step()
            sched_b.step()
    group = opt_a.param_groups[0]
    assert group["weight_decay"] == 1e-3
    if schedule != "one_cycle":  # one_cycle owns the momentum (cycle_momentum)
        assert group["momentum"] == 0.8


def test_expand_prints_an_adaptive_search_space_and_budget(tmp_path):
    path = tmp_path / "optuna.yaml"
    path.write_text(
        yaml.safe_dump(
            spec_dict(
                techniques=[],
                search=_optuna_spec(0).search.model_dump(mode="json", exclude_defaults=True),
            )
        )
    )
    out = subprocess.run(
        [sys.executable, "-m", "effray", "expand", str(path)],
        capture_output=True,
        text=True,
        env={"COLUMNS": "80", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "algorithm optuna" in out.stdout and "budget 12 trials" in out.stdout
    assert "train.lr" in out.stdout and "loguniform [0.0001, 0.1]" in out.stdout


@pytest.mark.parametrize("name", ["greedy_fashion_mnist", "search_optuna", "pbt_fashion_mnist"])
def test_the_example_search_specs_validate(name):
    spec = load_spec(ROOT / "experiments" / f"{name}.yaml")
    assert spec.search is not None
    tiny = load_spec(
        ROOT / "experiments" / f"{name}.yaml",
        ["data.train_subset=2000", "train.epochs=2", "search.num_samples=4"],
    )
    assert tiny.train.epochs == 2


def test_pbt_keeps_enough_checkpoints_for_a_donor():
    """PBT copies a donor's newest checkpoint; Ray warns that keeping <= 2 can lose it."""
    from effray.tune.experiment import PBT_KEEP, checkpoint_keep

    pbt = load_spec(ROOT / "experiments" / "pbt_fashion_mnist.yaml")
    assert pbt.run.checkpoint_keep == 2 and checkpoint_keep(pbt) == PBT_KEEP > 2
    more = load_spec(ROOT / "experiments" / "pbt_fashion_mnist.yaml", ["run.checkpoint_keep=7"])
    assert checkpoint_keep(more) == 7
    plain = spec_from_dict(spec_dict())
    assert checkpoint_keep(plain) == plain.run.checkpoint_keep == 2
