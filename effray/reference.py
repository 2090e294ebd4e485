"""Published numbers effray's reports and benchmarks compare against.

    >>> from effray.reference import PAPER_TABLE3, published_points
    >>> PAPER_TABLE3["paper_mnist_1p5k_dw"].latency_s
    2.52

Facts copied from /work/shared/reference/published-results.yaml, which quotes:

- the paper: S. Ethiraj, B. K. Bolla, "Training Efficient CNNs: Tweaking the Nuts and Bolts
  of Neural Networks for Lighter, Faster and Robust Models", Table 3 (validation accuracy,
  CPU inference time over the 10,000 test images, size on disk);
- the Fashion-MNIST README benchmark table (zalandoresearch/fashion-mnist, test accuracy).

Only what effray uses is copied: Table 3 for the efficiency-frontier plot and the latency
benchmark, the Fashion-MNIST small-model results for the frontier plot of that dataset.
Accuracies are percent.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER = "Ethiraj & Bolla, Training Efficient CNNs (Table 3)"
FASHION_BENCHMARK = "Fashion-MNIST README benchmark (zalandoresearch/fashion-mnist)"


@dataclass(frozen=True)
class PaperModel:
    dataset: str  # effray data.name the paper trained it on
    params: int  # trainable parameters (Tables 1-2)
    val_acc: float  # % (Table 3)
    latency_s: float  # seconds to predict the 10,000 test images on the paper's CPU
    size_kb: float  # model size on disk


PAPER_TABLE3: dict[str, PaperModel] = {
    "paper_mnist_25k": PaperModel("mnist", 25_144, 99.35, 3.36, 107),
    "paper_mnist_7k": PaperModel("mnist", 7_767, 99.34, 2.67, 43),
    "paper_mnist_7k_dw": PaperModel("mnist", 7_611, 99.46, 3.35, 43),
    "paper_mnist_5k": PaperModel("mnist", 5_712, 99.33, 2.76, 34),
    "paper_mnist_5k_dw": PaperModel("mnist", 5_616, 99.27, 2.74, 34),
    "paper_mnist_1p5k_dw": PaperModel("mnist", 1_560, 98.35, 2.52, 19),
    "paper_cifar_143k": PaperModel("cifar10", 143_208, 81.57, 8.51, 578),
    "paper_cifar_143k_dw": PaperModel("cifar10", 143_396, 79.9, 8.82, 590),
}
PAPER_LATENCY_IMAGES = 10_000  # the paper's test set, timed on an unspecified CPU


@dataclass(frozen=True)
class PublishedPoint:
    label: str
    dataset: str  # effray data.name
    val_acc: float  # %
    params: int | None  # None: the source gives no exact count (drawn as a level line)
    source: str


# The benchmark table names models, not parameter counts, except the 113K 2-conv net; the
# "under 100K" net is only bounded, so it is drawn as a level line, not a point.
FASHION_MNIST_PUBLISHED = [
    PublishedPoint("2 conv, <100K params", "fashion_mnist", 92.5, None, FASHION_BENCHMARK),
    PublishedPoint("2 conv, 113K params", "fashion_mnist", 92.2, 113_000, FASHION_BENCHMARK),
    PublishedPoint("3 conv + BN + pooling", "fashion_mnist", 92.1, None, FASHION_BENCHMARK),
    PublishedPoint("MLP 256-128-100", "fashion_mnist", 88.33, None, FASHION_BENCHMARK),
]


def published_points(dataset: str) -> list[PublishedPoint]:
    """Published (params, accuracy) facts for `dataset` (an effray data.name); [] if none."""
    paper = [
        PublishedPoint(
            f"paper {name.removeprefix('paper_')}", m.dataset, m.val_acc, m.params, PAPER
        )
        for name, m in PAPER_TABLE3.items()
        if m.dataset == dataset
    ]
    fashion = [p for p in FASHION_MNIST_PUBLISHED if p.dataset == dataset]
    return paper + fashion
