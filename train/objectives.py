"""Training objectives for counting: class-imbalance weights, a count-aware loss and a weighted sampler.

Counts are ordered, and cross-entropy ignores that: predicting 5 for a bin of 4 costs as much as predicting 0, which
is why argmax classifiers on ABID have a poor RMSE. The count-aware objective adds the squared error of the expected
count (sum over classes of p(class) * count) to the cross-entropy, so probability mass moves towards neighbouring
counts. The ordinal objective instead trains on soft targets spread over the neighbouring counts (k-1, k, k+1), so
a near miss costs less than a far one while the loss stays a proper cross-entropy. The model stays a plain image
classifier either way: argmax gives the most likely count, the softmax-weighted sum the expected count, at evaluation
and at serving time alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import WeightedRandomSampler


def class_weights(labels: Sequence[int], num_classes: int, scheme: str) -> torch.Tensor | None:
    """Per-class loss weights from the train histogram, mean 1 over classes; None for ``"none"``.

    ``inverse``: weight ∝ 1 / frequency; ``sqrt_inverse``: ∝ 1 / sqrt(frequency), a milder correction. An absent
    class gets the largest weight rather than infinity.
    """
    if scheme == "none":
        return None
    frequency = torch.bincount(torch.as_tensor(list(labels)), minlength=num_classes).double()
    frequency = torch.where(frequency > 0, frequency, frequency[frequency > 0].min() if frequency.any() else 1.0)
    weights = 1 / frequency if scheme == "inverse" else 1 / frequency.sqrt()
    return (weights * num_classes / weights.sum()).float()


class CountingLoss:
    """Trainer ``compute_loss_func``: (weighted, smoothed) cross-entropy, plus the expected-count penalty if asked."""

    def __init__(self, counts: Sequence[int], weights: torch.Tensor | None = None, label_smoothing: float = 0.0,
                 count_loss_weight: float = 0.0, neighbour_mass: float = 0.0) -> None:
        self.counts = torch.as_tensor(list(counts), dtype=torch.float32)
        self.weights = weights
        self.label_smoothing = label_smoothing
        self.count_loss_weight = count_loss_weight
        self.targets = neighbour_targets(counts, neighbour_mass) if neighbour_mass else None

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch: int | torch.Tensor | None = None):
        """Sum of per-image losses over ``num_items_in_batch`` (all micro-batches of an optimizer step, all
        processes), which is what Trainer expects from a ``compute_loss_func``; a plain mean when it is None."""
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.float()
        weights = None if self.weights is None else self.weights.to(logits.device)
        if self.targets is None:
            losses = F.cross_entropy(logits, labels, weight=weights, label_smoothing=self.label_smoothing,
                                     reduction="none")
        else:
            losses = -(self.targets.to(logits.device)[labels] * logits.log_softmax(dim=-1)).sum(dim=-1)
            losses = losses if weights is None else losses * weights[labels]
        if self.count_loss_weight:
            counts = self.counts.to(logits.device)
            expected = logits.softmax(dim=-1) @ counts
            losses = losses + self.count_loss_weight * (expected - counts[labels]).square()
        return losses.mean() if num_items_in_batch is None else losses.sum() / num_items_in_batch


def neighbour_targets(counts: Sequence[int], mass: float) -> torch.Tensor:
    """Row k: the soft target of a bin of class k, ``mass / 2`` on each class whose count is one away and the rest
    on k (so the end classes of the range keep more of their own mass instead of leaning inwards)."""
    counts = torch.as_tensor(list(counts))
    near = ((counts[:, None] - counts[None, :]).abs() == 1).float() * mass / 2
    return near + torch.diag(1 - near.sum(dim=1))


class EpochWeightedSampler(WeightedRandomSampler):
    """Weighted sampling with replacement whose draw depends only on (seed, epoch): resumable and identical on every
    process of a distributed run (accelerate then hands each process its share of the batches)."""

    def __init__(self, weights: Sequence[float], seed: int) -> None:
        super().__init__(weights, num_samples=len(weights), replacement=True)
        self.seed = seed
        self.epoch = 0  # set by transforms.EpochSync at the start of every epoch

    def __iter__(self):
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def sample_weights(labels: Sequence[int], num_classes: int) -> list[float]:
    """Per-image weights that make every class equally likely to be drawn."""
    weights = class_weights(labels, num_classes, "inverse")
    return weights[torch.as_tensor(list(labels))].tolist()
