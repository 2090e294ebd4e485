"""Per-trial costs paid once per process: the data cache, FLOPs/latency per architecture,
the thread default, and commands that load no torch or ray."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import effray.data.readers as readers
import effray.metrics as metrics
from effray.data import DataPipeline, build_data
from effray.data.build import clear_cache
from effray.lazy import LazyModule, lazy
from effray.models import MODELS, build_model
from effray.spec import spec_from_dict
from effray.techniques.blurpool import apply_blurpool
from effray.techniques.dropout import apply_dropout
from effray.techniques.squeeze_excite import apply_squeeze_excite
from effray.train import default_threads, fit

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_cache()
    metrics.clear_cache()
    yield
    clear_cache()
    metrics.clear_cache()


@pytest.fixture
def count_reads(monkeypatch):
    """Counts calls of the Fashion-MNIST reader (the files read from disk)."""
    calls = []
    real = readers.read_fashion_mnist

    def spy(folder):
        out = real(folder)
        calls.append(out)  # what the reader returned: the arrays build_data keeps
        return out

    monkeypatch.setattr(readers, "read_fashion_mnist", spy)
    return calls


def fashion_spec(root: Path, **train) -> object:
    return spec_from_dict(
        {
            "name": "speed",
            "data": {"name": "fashion_mnist", "root": str(root), "train_subset": 200},
            "model": {"name": "paper_mnist_1p5k_dw"},
            "train": {"epochs": 1, "batch_size": 64, "latency_repeats": 1, **train},
        }
    )


def test_second_build_on_the_same_data_reads_no_file(data_fashion_root, count_reads):
    spec = fashion_spec(data_fashion_root)
    cpu = torch.device("cpu")
    a = build_data(spec.data, DataPipeline(), device=cpu, seed=0)
    b = build_data(spec.data, DataPipeline(), device=cpu, seed=0)
    c = build_data(spec.data, DataPipeline(), device=cpu, seed=1)  # another trial's subset
    assert len(count_reads) == 1
    assert torch.equal(a.x_train, b.x_train) and a.x_train is not b.x_train
    assert not torch.equal(a.x_train, c.x_train)  # the seed still picks the subset


def test_a_replaced_file_is_read_again(data_fashion_root, data_write_idx, count_reads):
    spec = fashion_spec(data_fashion_root)
    cpu = torch.device("cpu")
    build_data(spec.data, DataPipeline(), device=cpu, seed=0)
    data_write_idx(data_fashion_root, 310, 50)  # same folder, other files
    again = build_data(spec.data, DataPipeline(), device=cpu, seed=0)
    assert len(count_reads) == 2 and again.num_train == 200


def test_cached_arrays_cannot_be_written(data_fashion_root, count_reads):
    spec = fashion_spec(data_fashion_root)
    build_data(spec.data, DataPipeline(), device=torch.device("cpu"), seed=0)
    ((x, _), _, _) = count_reads[0]
    with pytest.raises(ValueError):
        x[0, 0, 0, 0] = 1  # kept for later trials: nobody may change it


def test_fits_with_a_warm_cache_are_bitwise_those_of_a_cold_one(data_fashion_root, count_reads):
    spec = fashion_spec(data_fashion_root, epochs=2)
    cold = fit(spec).model.state_dict()
    warm = fit(spec).model.state_dict()
    assert len(count_reads) == 1
    assert cold.keys() == warm.keys()
    assert all(torch.equal(cold[k], warm[k]) for k in cold)


def test_latency_and_flops_are_measured_once_per_architecture(data_fashion_root, monkeypatch):
    timed, counted = [], []
    real_latency = metrics.cpu_latency
    monkeypatch.setattr(
        metrics, "cpu_latency", lambda *a, **k: timed.append(1) or real_latency(*a, **k)
    )
    import torch.utils.flop_counter as flop_counter

    real_count = flop_counter.conv_flop_count  # called once per conv of a counted forward
    monkeypatch.setattr(
        flop_counter, "conv_flop_count", lambda *a, **k: counted.append(1) or real_count(*a, **k)
    )
    first = fit(fashion_spec(data_fashion_root, seed=0)).facts
    convs = len(counted)
    second = fit(fashion_spec(data_fashion_root, seed=1)).facts
    assert len(timed) == 1 and len(counted) == convs > 0
    assert first == second  # the second trial reports the first one's measurement
    fit(fashion_spec(data_fashion_root, latency_threads=2))  # other settings: timed again
    assert len(timed) == 2 and len(counted) == convs
    raw = fashion_spec(data_fashion_root).model_dump(mode="json")
    blurred = spec_from_dict({**raw, "techniques": [{"kind": "blurpool"}]})
    fit(blurred)  # another architecture: both again
    assert len(timed) == 3 and len(counted) > convs


SURGERY = {
    "none": lambda m: m,
    "blurpool": lambda m: apply_blurpool(m),
    "squeeze_excite": lambda m: apply_squeeze_excite(m),
    "dropout": lambda m: apply_dropout(m, 0.3),
}


@pytest.mark.parametrize("surgery", sorted(SURGERY))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_flops_match_torchs_flop_counter_mode(name, surgery):
    entry = MODELS[name]
    model = build_model(name, num_classes=entry.num_classes, in_channels=entry.input_shape[0])
    SURGERY[surgery](model)
    x = torch.zeros(1, *entry.input_shape)
    reference = metrics.flop_counter_mode(model.eval(), x)
    assert reference > 0
    assert metrics.flops_per_image(model, entry.input_shape) == reference


def test_a_net_with_an_unknown_function_is_counted_by_flop_counter_mode():
    class Bilinear(torch.nn.Module):  # torch.matmul: not one the fast counter knows
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(28, 28))

        def forward(self, x):
            return torch.matmul(x, self.w).flatten(1)

    model = Bilinear()
    expected = metrics.flop_counter_mode(model, torch.zeros(1, 1, 28, 28))
    assert expected == 2 * 28 * 28 * 28
    assert metrics.flops_per_image(model, (1, 28, 28)) == expected


def test_counting_flops_does_not_import_torch_dynamo():
    code = (
        "import sys\n"
        "from effray.metrics import flops_per_image\n"
        "from effray.models import build_model\n"
        "m = build_model('paper_mnist_1p5k_dw', num_classes=10, in_channels=1)\n"
        "print(flops_per_image(m, (1, 28, 28)), 'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["814092", "False"]  # ~1 s of imports saved per process


def test_architecture_key_follows_the_architecture_not_the_weights():
    def net(**args):
        torch.manual_seed(len(args))
        return build_model("paper_mnist_1p5k_dw", num_classes=10, in_channels=1, **args)

    a, b = net(), net(dropout=0.0)
    assert any(not torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))
    assert metrics.architecture_key(a) == metrics.architecture_key(b)
    assert metrics.architecture_key(a) != metrics.architecture_key(net(dropout=0.5))
    wider = build_model("paper_mnist_5k", num_classes=10, in_channels=1)
    assert metrics.architecture_key(a) != metrics.architecture_key(wider)
    last = a.to(memory_format=torch.channels_last)
    assert metrics.architecture_key(last) != metrics.architecture_key(b)


def test_default_threads_are_the_trials_share_of_the_cores(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray sets for a 1-CPU trial
    assert default_threads() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))  # alone: every core


def test_fit_sets_the_thread_default_and_an_explicit_value_wins(monkeypatch):
    spec = spec_from_dict(
        {
            "name": "threads",
            "data": {"name": "synthetic", "train_size": 64, "val_size": 32, "size": 16},
            "train": {"epochs": 1, "latency_repeats": 0},
        }
    )
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(3)  # what a worker that imported torch early would have
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        fit(spec)
        assert torch.get_num_threads() == 1
        spec.train.threads = 2
        fit(spec)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


PROBE = """
import runpy, sys
sys.argv = ["effray", *sys.argv[1:]]
code = 0
try:
    runpy.run_module("effray", run_name="__main__")
except SystemExit as exc:
    code = exc.code or 0
print("LOADED", sorted(m for m in ("torch", "ray", "wandb") if m in sys.modules), code)
"""


def run_probe(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT
    )
    return next(x for x in proc.stdout.splitlines() if x.startswith("LOADED"))


def test_help_imports_neither_torch_nor_ray():
    assert run_probe("--help") == "LOADED [] 0"


def test_validate_imports_neither_torch_nor_ray(tmp_path):
    spec = {
        "name": "every-kind",
        "data": {"name": "synthetic", "channels": 3, "size": 32},
        "model": {"name": "paper_cifar_143k_dw", "dropout": 0.1},
        "train": {"epochs": 3},
        "techniques": [
            {"kind": k}
            for k in (
                "random_crop",
                "horizontal_flip",
                "color_jitter",
                "random_affine",
                "normalize",
                "random_erasing",
                "blurpool",
                "squeeze_excite",
                "dropout",
                "cutout",
                "mixup",
                "label_smoothing",
                "sam",
                "one_cycle",
                "swa",
                "early_stopping",
            )
        ],
        "ablation": "one_at_a_time",
    }
    path = tmp_path / "every-kind.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert run_probe("validate", str(path)) == "LOADED [] 0"
    assert run_probe("validate", "experiments/quickstart.yaml") == "LOADED [] 0"


def test_lazy_module_loads_on_first_use():
    stand_in = LazyModule("json")
    assert stand_in.dumps({"a": 1}) == '{"a": 1}'
    assert lazy("os") is os  # already imported: the module itself
