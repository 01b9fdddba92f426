"""Class lists (``dexter.classes``: all, indices, ranges) and their split over torchrun ranks."""

import pytest

from dexter.errors import DexterInputError
from dexter.shards import parse_classes, shard


@pytest.mark.parametrize("spec, n, expected", [
    ("all", 3, [0, 1, 2]),
    (None, 2, [0, 1]),
    ("ALL", None, None),
    ("0-3", None, [0, 1, 2, 3]),
    (" 2 - 4 ", 10, [2, 3, 4]),
    ([5, "0-2", "7"], 8, [5, 0, 1, 2, 7]),
    (3, None, [3]),
    ("0-999", 1000, list(range(1000))),
])
def test_class_specs(spec, n, expected):
    assert parse_classes(spec, n) == expected


@pytest.mark.parametrize("spec, n, message", [
    ([], None, "empty list"),
    ("3-1", None, "ends before it starts"),
    ("cats", None, "neither a class index"),
    ([1, "0-2"], None, "[1] named more than once"),
    ([-1], None, "negative"),
    ("0-9", 5, "[5, 6, 7, 8, 9] out of range"),
    ([True], None, "not a class index"),
])
def test_bad_class_specs(spec, n, message):
    with pytest.raises(DexterInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_classes(spec, n)


def test_params_schema_checks_the_class_spec():
    from stages.params.dexter import DexterSection

    assert DexterSection(classes="0-2").class_indices(5) == [0, 1, 2]
    assert DexterSection(classes=[0, "2-3"]).class_indices(4) == [0, 2, 3]
    assert DexterSection().class_indices(2) == [0, 1]
    with pytest.raises(ValueError, match="ends before it starts"):
        DexterSection(classes="4-1")


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_shards_cover_every_class_once_and_balance(world):
    classes = [9, 0, 4, 2, 7, 1, 3]
    parts = [shard(classes, r, world) for r in range(world)]
    assert sorted(c for p in parts for c in p) == sorted(classes)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert parts == [shard(list(reversed(classes)), r, world) for r in range(world)]  # order given: irrelevant


def test_shard_is_round_robin_and_checks_the_rank():
    assert shard(range(5), 1, 2) == [1, 3]
    with pytest.raises(ValueError):
        shard([0, 1], 2, 2)
