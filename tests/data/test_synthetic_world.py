"""The synthetic world: per-class shortcuts with exact train counts, balanced val/test cells, true groups,
determinism, captions, presets and the spec's validation."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from world.synthetic import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    Shortcut,
    SyntheticWorldConfig,
    WorldSample,
    WorldSpecError,
    caption,
    cell_index,
    is_conflicting,
    render_many,
    sample_split,
    sample_world,
)
from dro.data.world_index import build_synthetic

SIZES = {"train": 1600, "val": 320, "test": 640}


def _cfg(**kw) -> SyntheticWorldConfig:
    base = dict(image_size=16, split_sizes=SIZES, seed=0)
    base.update(kw)
    return SyntheticWorldConfig(**base)


def _cells(samples) -> Counter:
    return Counter((s.shape, s.color, s.background) for s in samples)


def test_default_is_the_rich_world_with_the_issue_shortcuts() -> None:
    cfg = SyntheticWorldConfig()
    assert cfg.classes == SHAPES and cfg.colors == COLORS and cfg.backgrounds == BACKGROUNDS
    assert cfg.shortcut("circle") == Shortcut("background", "water", 0.95)
    assert cfg.shortcut("square") == Shortcut("color", "red", 0.90)
    assert cfg.shortcut("triangle") == Shortcut("background", "snow", 0.95)
    assert cfg.shortcut("cross") is None and cfg.biased_classes == ("circle", "square", "triangle")
    assert cfg.num_cells == 64


def test_train_has_each_class_shortcut_exactly_and_the_rest_spread_evenly() -> None:
    cfg = _cfg()
    cells = _cells(sample_split(cfg, "train"))
    n_class = 400
    # circle: 95% on water, 20 images over the 12 other (colour, background) cells, colours even inside
    circle_water = sum(cells[(0, c, 0)] for c in range(4))
    assert circle_water == round(0.95 * n_class)
    assert {cells[(0, c, 0)] for c in range(4)} == {95}
    minority = [cells[(0, c, b)] for c in range(4) for b in (1, 2, 3)]
    assert sum(minority) == 20 and max(minority) - min(minority) <= 1 and min(minority) >= 1
    # square: 90% red, whatever the background
    assert sum(cells[(1, 0, b)] for b in range(4)) == 360
    assert sum(cells[(1, c, b)] for c in (1, 2, 3) for b in range(4)) == 40
    # cross is unbiased: 25 in each of its 16 cells
    assert {cells[(3, c, b)] for c in range(4) for b in range(4)} == {25}
    assert sum(cells.values()) == SIZES["train"]


def test_correlation_below_chance_and_exact_one() -> None:
    cfg = _cfg(shortcuts={"circle": {"attribute": "color", "value": "white", "correlation": 0.1},
                          "square": {"attribute": "background", "value": "sand", "correlation": 1.0}})
    cells = _cells(sample_split(cfg, "train"))
    assert sum(cells[(0, 3, b)] for b in range(4)) == 40  # 10% white circles
    assert sum(cells[(0, c, b)] for c in range(3) for b in range(4)) == 360
    assert sum(cells[(1, c, 3)] for c in range(4)) == 400  # every square on sand
    assert sum(cells[(1, c, b)] for c in range(4) for b in range(3)) == 0


@pytest.mark.parametrize("split", ["val", "test"])
def test_val_and_test_are_balanced_over_every_cell(split: str) -> None:
    cfg = _cfg()
    cells = _cells(sample_split(cfg, split))
    assert len(cells) == 64 and set(cells.values()) == {SIZES[split] // 64}


def test_true_conflicting_slice_per_the_contract() -> None:
    cfg = _cfg()
    s = lambda shape, color, bg: WorldSample(SHAPES.index(shape), COLORS.index(color), BACKGROUNDS.index(bg), 0)  # noqa: E731
    assert not is_conflicting(cfg, s("circle", "white", "water"))  # carries its own shortcut
    assert is_conflicting(cfg, s("circle", "red", "land"))  # red is square's, but circle's own is missing
    assert not is_conflicting(cfg, s("square", "red", "snow"))
    assert is_conflicting(cfg, s("square", "yellow", "water"))
    # the unbiased cross: conflicting iff it carries another class's shortcut value
    assert is_conflicting(cfg, s("cross", "white", "water"))
    assert is_conflicting(cfg, s("cross", "red", "sand"))
    assert is_conflicting(cfg, s("cross", "yellow", "snow"))
    assert not is_conflicting(cfg, s("cross", "yellow", "land"))
    no_shortcut = _cfg(shortcuts={})
    assert not is_conflicting(no_shortcut, s("cross", "red", "water"))


def test_records_carry_true_groups_and_cells() -> None:
    cfg = _cfg()
    info, records, pixels, captions = build_synthetic(cfg)
    assert info.class_names == SHAPES and info.attribute_values == ("aligned", "conflicting")
    assert info.aligned_values == ((0,),) * 4 and info.num_cells == 64 and info.num_groups == 8
    assert info.cell_name(0) == "circle|color=red,background=water"
    assert info.cell_name(63) == "cross|color=white,background=sand"
    assert len(records) == len(pixels) == len(captions) == sum(SIZES.values())
    assert pixels.shape[1:] == (16, 16, 3) and pixels.dtype == np.uint8
    train = [r for r in records if r.split == "train"]
    assert sum(r.a == 0 for r in train if r.y == 0) == round(0.95 * 400)
    for r, text in zip(records, captions):
        words = text.split()  # "a picture of a <color> <shape> on <background>"
        y, rest = divmod(r.cell, 16)
        assert y == r.y and words[5] == SHAPES[r.y]
        assert words[4] == COLORS[rest // 4] and words[7] == BACKGROUNDS[rest % 4]
        sample = WorldSample(r.y, COLORS.index(words[4]), BACKGROUNDS.index(words[7]), 0)
        assert cell_index(cfg, sample) == r.cell and int(is_conflicting(cfg, sample)) == r.a


def test_subsets_of_the_renderers_values() -> None:
    cfg = _cfg(classes=["triangle", "circle"], colors=["white", "red"], backgrounds=["sand", "snow", "water"],
               shortcuts={"triangle": {"attribute": "background", "value": "sand", "correlation": 0.9}})
    samples = sample_split(cfg, "test")
    assert len(_cells(samples)) == 2 * 2 * 3
    assert {caption(cfg, s).split()[5] for s in samples} == {"triangle", "circle"}
    assert set(cfg.vocabulary) >= {"white", "sand", "triangle"} and "purple" not in cfg.vocabulary


def test_same_seed_same_pixels_other_seed_different() -> None:
    cfg = _cfg()
    a = render_many(cfg, sample_split(cfg, "val"))
    b = render_many(cfg, sample_split(_cfg(), "val"))
    c = render_many(_cfg(seed=1), sample_split(_cfg(seed=1), "val"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sample_split(cfg, "val") != sample_split(cfg, "test")  # splits are not copies of each other


def test_world_model_samples_are_unchanged_for_the_first_n_world() -> None:
    """The committed world models were trained on sample_world of the first-n world: same draws."""
    cfg = SyntheticWorldConfig.first(2)
    rng = np.random.default_rng([0, 1, 7])
    values = rng.integers(0, 2, size=(5, 3))
    got = sample_world(cfg, 5, 1)
    assert [(s.shape, s.color, s.background) for s in got] == [tuple(map(int, v)) for v in values]


def test_captions_use_only_the_vocabulary() -> None:
    cfg = SyntheticWorldConfig.first(3, image_size=16, split_sizes=SIZES)
    vocab = set(cfg.vocabulary)
    for s in sample_split(cfg, "test"):
        assert set(caption(cfg, s).split()) <= vocab
    assert "snow" in vocab and "sand" not in vocab  # 3 classes -> 3 backgrounds


def test_small_preset_is_the_old_2x2_world() -> None:
    cfg = SyntheticWorldConfig.from_preset("small", image_size=16, split_sizes=SIZES)
    assert (cfg.classes, cfg.colors, cfg.backgrounds) == (("circle", "square"), ("red", "yellow"), ("water", "land"))
    assert cfg.shortcut("circle").value == "water" and cfg.shortcut("square").value == "land"
    with pytest.raises(WorldSpecError, match="preset"):
        SyntheticWorldConfig.from_preset("huge")


def test_rendered_background_is_the_named_one() -> None:
    """The corner pixels show the sample's background: nearest background colour wins."""
    cfg = _cfg(image_size=32)
    samples = sample_split(cfg, "test")[:80]
    pixels = render_many(cfg, samples).astype(np.float32)
    from world.synthetic import _BACKGROUND_RGB

    palette = np.array([np.mean(_BACKGROUND_RGB[b], axis=0) for b in BACKGROUNDS])
    corners = np.concatenate([pixels[:, :3, :3], pixels[:, -3:, -3:]], axis=1).reshape(len(samples), -1, 3)
    guess = np.linalg.norm(corners.mean(axis=1)[:, None, :] - palette[None], axis=-1).argmin(axis=1)
    truth = np.array([s.background for s in samples])
    assert np.mean(guess == truth) >= 0.9


BAD = [
    (dict(classes=["circle", "hexagon"], shortcuts={}), r"^classes: unknown value\(s\) \['hexagon'\]"),
    (dict(colors=["red", "red"], shortcuts={}), "^colors: has duplicates"),
    (dict(backgrounds=["water"], shortcuts={}), "^backgrounds: needs at least 2 values"),
    (dict(shortcuts={"hexagon": None}), "^shortcuts.hexagon: unknown class"),
    (dict(classes=["circle", "square"], shortcuts={"triangle": None}), "^shortcuts.triangle: unknown class"),
    (dict(shortcuts={"circle": {"attribute": "texture", "value": "water", "correlation": 0.9}}),
     "^shortcuts.circle.attribute: 'texture'"),
    (dict(shortcuts={"circle": {"attribute": "color", "value": "water", "correlation": 0.9}}),
     "^shortcuts.circle.value: 'water' is not one of the world's colors"),
    (dict(backgrounds=["water", "land"], shortcuts={"circle": {"attribute": "background", "value": "snow",
                                                              "correlation": 0.9}}),
     "^shortcuts.circle.value: 'snow' is not one of the world's backgrounds"),
    (dict(shortcuts={"circle": {"attribute": "color", "value": "red", "correlation": 1.5}}),
     r"^shortcuts.circle.correlation: must be in \[0, 1\]"),
    (dict(shortcuts={"circle": {"attribute": "color", "value": "red", "correlation": 0.9},
                     "cross": {"attribute": "color", "value": "red", "correlation": 0.8}}),
     "^shortcuts.cross.value: color 'red' is already the shortcut of circle"),
    (dict(shortcuts={"circle": {"attribute": "color", "value": "red"}}), r"^shortcuts.circle: missing \['correlation'\]"),
    (dict(image_size=8), "^image_size"),
]


@pytest.mark.parametrize(("kw", "message"), BAD, ids=[m.split(":")[0].strip("^") for _, m in BAD])
def test_invalid_world_is_refused_naming_the_key(kw, message) -> None:
    with pytest.raises(WorldSpecError, match=message):
        _cfg(**kw)


def test_same_value_on_different_attributes_classes_is_fine() -> None:
    _cfg(shortcuts={"circle": {"attribute": "color", "value": "red", "correlation": 0.9},
                    "square": {"attribute": "background", "value": "water", "correlation": 0.9}})
