"""Worst-group and average accuracy on hand-made predictions (docs/METHOD.md section 5)."""

import math

import numpy as np
import pytest

from dro.evaluate import (
    aggregate_seeds,
    average_accuracy,
    convention_for,
    evaluate_predictions,
    group_accuracies,
    worst_group_accuracy,
)

# 4 groups; group 2 is empty. Group accs: g0 3/4, g1 1/2, g3 1/1.
Y = np.array([0, 0, 0, 0, 0, 0, 1])
PRED = np.array([0, 0, 0, 1, 0, 1, 1])
G = np.array([0, 0, 0, 0, 1, 1, 3])
NAMES = ["a|x", "a|y", "b|x", "b|y"]


def test_group_accuracies_and_empty_group():
    acc = group_accuracies(PRED, Y, G, 4)
    assert acc[[0, 1, 3]].tolist() == [0.75, 0.5, 1.0]
    assert math.isnan(acc[2])
    assert worst_group_accuracy(acc) == 0.5


def test_unknown_group_ignored_and_all_empty_fails():
    acc = group_accuracies(np.array([1, 0]), np.array([1, 1]), np.array([-1, 0]), 2)
    assert acc[0] == 0.0 and math.isnan(acc[1])
    with pytest.raises(ValueError):
        worst_group_accuracy(np.array([np.nan, np.nan]))


def test_plain_average():
    assert average_accuracy(PRED, Y, G, 4, "plain") == pytest.approx(5 / 7)


def test_waterbirds_train_weighted_average():
    train_counts = [3498, 184, 56, 1057]  # group 2 empty at test: renormalise over 0, 1, 3
    expected = (0.75 * 3498 + 0.5 * 184 + 1.0 * 1057) / (3498 + 184 + 1057)
    assert average_accuracy(PRED, Y, G, 4, "train_weighted", train_counts) == pytest.approx(expected)
    assert convention_for("waterbirds") == "train_weighted"
    assert convention_for("celeba") == "plain" and convention_for("synthetic") == "plain"
    with pytest.raises(ValueError):
        average_accuracy(PRED, Y, G, 4, "train_weighted", None)


def test_evaluate_block_and_seed_aggregate():
    m = evaluate_predictions(PRED, Y, G, NAMES, "plain")
    assert m["worst_group_acc"] == 0.5 and m["group_acc"]["b|x"] is None
    assert m["avg_acc_convention"] == "plain" and m["group_count"]["a|x"] == 4
    other = dict(m, worst_group_acc=0.7, avg_acc=0.9)
    agg = aggregate_seeds([m, other])
    assert agg["worst_group_acc"] == pytest.approx(0.6)
    assert agg["worst_group_acc_std"] == pytest.approx(0.1 * 2 ** 0.5)  # sample std (ddof=1)
    assert aggregate_seeds([m])["worst_group_acc_std"] == 0.0
    assert agg["avg_acc"] == pytest.approx((5 / 7 + 0.9) / 2)
    assert agg["group_acc"]["b|x"] is None and agg["num_seeds"] == 2
