import math

import numpy as np
import pytest

from world.gates import accuracy, faithfulness


def test_accuracy_counts_equal_entries():
    assert accuracy(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0])) == 0.75
    with pytest.raises(ValueError):
        accuracy(np.array([0, 1]), np.array([0, 1, 0]))


def test_faithfulness_needs_every_named_attribute():
    named = np.array([[0, 1, 1], [1, 0, 0], [-1, -1, 1], [1, -1, -1]])
    pred = np.array(
        [
            [0, 1, 1],  # all right
            [1, 1, 0],  # colour wrong
            [0, 0, 1],  # only background named, right
            [0, 1, 1],  # only shape named, wrong
        ]
    )
    out = faithfulness(pred, named)
    assert out["all"] == 0.5
    assert out["shape"] == pytest.approx(2 / 3)
    assert out["color"] == 0.5
    assert out["background"] == 1.0


def test_faithfulness_of_an_unnamed_attribute_is_nan():
    out = faithfulness(np.array([[0, 0, 1]]), np.array([[-1, -1, 1]]))
    assert out["all"] == 1.0 and math.isnan(out["shape"]) and out["background"] == 1.0


def test_gates_fail_on_one_weak_value_although_the_average_is_high():
    from world.gates import gates_passed

    good = {"clip_accuracy_min": 0.99, "single_word_faithfulness_min": 0.95}
    assert gates_passed(good)
    # one shape drawn right only 80% of the time sinks the world, whatever the mean over values
    assert not gates_passed({**good, "single_word_faithfulness_min": 0.80})
    assert not gates_passed({**good, "clip_accuracy_min": 0.94})
