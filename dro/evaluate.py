"""Worst-group and average accuracy (docs/METHOD.md section 5): pure functions of predictions, labels, groups.

Average accuracy has two conventions and users ask which one a number uses, so every result carries
its convention:

- ``train_weighted`` (Waterbirds): per-group test accuracies weighted by the TRAINING group proportions
  (the original group-DRO code and later papers);
- ``plain`` (CelebA, the synthetic world): plain test accuracy over all images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

Convention = Literal["plain", "train_weighted"]
CONVENTION_TEXT = {
    "plain": "average accuracy = plain accuracy over all test images",
    "train_weighted": "average accuracy = per-group test accuracies weighted by TRAINING group proportions "
                      "(Waterbirds convention of the group-DRO code)",
}


def convention_for(dataset: str) -> Convention:
    """The average-accuracy convention docs/METHOD.md section 5 prescribes for a dataset (its entry in
    ``dro.data.registry``: training-proportion weighted for Waterbirds, plain elsewhere)."""
    from dro.data.registry import dataset_kind

    return dataset_kind(dataset).convention


def group_accuracies(pred: np.ndarray, y: np.ndarray, groups: np.ndarray, num_groups: int) -> np.ndarray:
    """Accuracy per group; NaN for groups with no sample (samples with group -1 are ignored)."""
    pred, y, groups = np.asarray(pred), np.asarray(y), np.asarray(groups)
    if not len(pred) == len(y) == len(groups):
        raise ValueError(f"lengths differ: pred {len(pred)}, y {len(y)}, groups {len(groups)}")
    if len(groups) and groups.max() >= num_groups:
        raise ValueError(f"group id {groups.max()} >= num_groups {num_groups}")
    known = groups >= 0
    correct = np.bincount(groups[known], weights=(pred[known] == y[known]).astype(float), minlength=num_groups)
    counts = np.bincount(groups[known], minlength=num_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, correct / np.maximum(counts, 1), np.nan)


def worst_group_accuracy(group_acc: np.ndarray) -> float:
    """Minimum over non-empty groups (NaN entries are empty groups)."""
    acc = np.asarray(group_acc, dtype=float)
    if np.all(np.isnan(acc)):
        raise ValueError("every group is empty: worst-group accuracy is undefined")
    return float(np.nanmin(acc))


def average_accuracy(
    pred: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    num_groups: int,
    convention: Convention,
    train_group_counts: Sequence[int] | None = None,
) -> float:
    """Average accuracy under ``convention`` (see module docstring)."""
    pred, y = np.asarray(pred), np.asarray(y)
    if convention == "plain":
        if len(pred) == 0:
            raise ValueError("no predictions")
        return float((pred == y).mean())
    if convention != "train_weighted":
        raise ValueError(f"unknown convention {convention!r}")
    if train_group_counts is None or len(train_group_counts) != num_groups:
        raise ValueError("train_weighted average needs the training count of every group")
    acc = group_accuracies(pred, y, groups, num_groups)
    w = np.asarray(train_group_counts, dtype=float)
    present = ~np.isnan(acc) & (w > 0)
    if not present.any():
        raise ValueError("no test group has training data: train_weighted average is undefined")
    w = w[present] / w[present].sum()  # renormalise over groups the test set has
    return float((acc[present] * w).sum())


def evaluate_predictions(
    pred: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    group_names: Sequence[str],
    convention: Convention,
    train_group_counts: Sequence[int] | None = None,
) -> dict:
    """The metrics block of one method and seed: worst-group, average, per-group accuracy, convention."""
    acc = group_accuracies(pred, y, groups, len(group_names))
    return {
        "worst_group_acc": worst_group_accuracy(acc),
        "avg_acc": average_accuracy(pred, y, groups, len(group_names), convention, train_group_counts),
        "group_acc": {name: (None if math.isnan(a) else float(a)) for name, a in zip(group_names, acc)},
        "group_count": {name: int(c) for name, c in
                        zip(group_names, np.bincount(np.asarray(groups)[np.asarray(groups) >= 0],
                                                     minlength=len(group_names)))},
        "avg_acc_convention": convention,
    }


STD_TEXT = "sample std (ddof=1) over seeds; 0 for one seed"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and SAMPLE std (ddof=1, the unbiased variance's root; 0 for a single seed), ignoring None."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def aggregate_seeds(per_seed: Sequence[dict]) -> dict:
    """Mean +- sample std (ddof=1; 0 for one seed) over seeds of the blocks made by :func:`evaluate_predictions`."""
    if not per_seed:
        raise ValueError("no seeds to aggregate")
    wg = mean_std([r["worst_group_acc"] for r in per_seed])
    avg = mean_std([r["avg_acc"] for r in per_seed])
    names = list(per_seed[0]["group_acc"])
    group = {n: mean_std([r["group_acc"][n] for r in per_seed]) for n in names}
    both = {}
    for key in ("avg_acc_plain", "avg_acc_train_weighted"):
        if all(r.get(key) is not None for r in per_seed):
            both[key], both[f"{key}_std"] = mean_std([r[key] for r in per_seed])
    return {
        "worst_group_acc": wg[0], "worst_group_acc_std": wg[1],
        "avg_acc": avg[0], "avg_acc_std": avg[1], **both,
        "group_acc": {n: (None if math.isnan(m) else m) for n, (m, _) in group.items()},
        "group_acc_std": {n: (None if math.isnan(s) else s) for n, (_, s) in group.items()},
        "avg_acc_convention": per_seed[0]["avg_acc_convention"],
        "num_seeds": len(per_seed),
    }
