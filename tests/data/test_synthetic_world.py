"""The synthetic spurious-correlation world: exact train correlation, balanced val/test, determinism, captions."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dro.data.synthetic import (
    BACKGROUNDS,
    COLORS,
    SHAPES,
    SyntheticWorldConfig,
    caption,
    render_many,
    sample_split,
    spurious_value,
)
from dro.data.world_index import build_synthetic

SIZES = {"train": 600, "val": 180, "test": 360}


def _cfg(**kw) -> SyntheticWorldConfig:
    base = dict(image_size=16, split_sizes=SIZES, seed=0)
    base.update(kw)
    return SyntheticWorldConfig(**base)


@pytest.mark.parametrize("spurious", ["background", "color"])
@pytest.mark.parametrize("k", [2, 3])
def test_train_has_the_configured_correlation_exactly(spurious: str, k: int) -> None:
    cfg = _cfg(num_classes=k, spurious=spurious, correlation=0.9)
    samples = sample_split(cfg, "train")
    groups = Counter((s.shape, spurious_value(cfg, s)) for s in samples)
    per_class = 600 // k
    for y in range(k):
        assert groups[(y, y)] == round(0.9 * per_class)
        minority = per_class - round(0.9 * per_class)
        for v in range(k):
            if v != y:
                assert groups[(y, v)] == minority // (k - 1)
    assert sum(groups.values()) == 600


@pytest.mark.parametrize("spurious", ["background", "color"])
@pytest.mark.parametrize("k", [2, 3])
def test_val_and_test_groups_are_balanced(spurious: str, k: int) -> None:
    cfg = _cfg(num_classes=k, spurious=spurious)
    for split in ("val", "test"):
        samples = sample_split(cfg, split)
        groups = Counter((s.shape, spurious_value(cfg, s)) for s in samples)
        assert len(groups) == k * k
        assert set(groups.values()) == {SIZES[split] // (k * k)}


@pytest.mark.parametrize("spurious", ["background", "color"])
def test_the_other_attribute_is_not_the_shortcut(spurious: str) -> None:
    cfg = _cfg(spurious=spurious, correlation=1.0)
    samples = sample_split(cfg, "train")
    free = [s.color if spurious == "background" else s.background for s in samples]
    aligned = np.mean([f == s.shape for f, s in zip(free, samples)])
    assert 0.4 < aligned < 0.6  # independent of the class, unlike the shortcut (1.0 here)
    assert all(spurious_value(cfg, s) == s.shape for s in samples)


def test_records_match_samples_and_info() -> None:
    cfg = _cfg(num_classes=3, spurious="color", correlation=0.8)
    info, records, pixels, captions = build_synthetic(cfg)
    assert info.class_names == SHAPES[:3]
    assert info.attribute_name == "color" and info.attribute_values == COLORS[:3]
    assert len(records) == len(pixels) == len(captions) == sum(SIZES.values())
    assert pixels.shape[1:] == (16, 16, 3) and pixels.dtype == np.uint8
    train = [r for r in records if r.split == "train"]
    assert np.mean([r.y == r.a for r in train]) == pytest.approx(0.8, abs=1e-9)
    for r, text in zip(records, captions):
        words = text.split()
        assert words[5] == SHAPES[r.y]  # "a picture of a <color> <shape> on <background>"
        assert words[4] == COLORS[r.a]


def test_same_seed_same_pixels_other_seed_different() -> None:
    cfg = _cfg()
    a = render_many(cfg, sample_split(cfg, "val"))
    b = render_many(cfg, sample_split(_cfg(), "val"))
    c = render_many(_cfg(seed=1), sample_split(_cfg(seed=1), "val"))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sample_split(cfg, "val") != sample_split(_cfg(seed=1), "val")
    assert sample_split(cfg, "val") != sample_split(cfg, "test")  # splits are not copies of each other


@pytest.mark.parametrize("spurious", ["background", "color"])
def test_captions_use_only_the_vocabulary_and_match_attributes(spurious: str) -> None:
    cfg = _cfg(num_classes=3, spurious=spurious)
    vocab = set(cfg.vocabulary)
    for s in sample_split(cfg, "test"):
        text = caption(cfg, s)
        assert set(text.split()) <= vocab
        assert text == f"a picture of a {COLORS[s.color]} {SHAPES[s.shape]} on {BACKGROUNDS[s.background]}"
    assert "snow" in vocab and "sand" not in vocab  # 3 classes -> 3 backgrounds


def test_rendered_background_is_the_named_one() -> None:
    """The corner pixels show the sample's background: nearest background colour wins."""
    cfg = _cfg(num_classes=4, image_size=32)
    samples = sample_split(cfg, "test")[:80]
    pixels = render_many(cfg, samples).astype(np.float32)
    from dro.data.synthetic import _BACKGROUND_RGB

    palette = np.array([np.mean(_BACKGROUND_RGB[b], axis=0) for b in BACKGROUNDS])
    corners = np.concatenate([pixels[:, :3, :3], pixels[:, -3:, -3:]], axis=1).reshape(len(samples), -1, 3)
    guess = np.linalg.norm(corners.mean(axis=1)[:, None, :] - palette[None], axis=-1).argmin(axis=1)
    truth = np.array([s.background for s in samples])
    assert np.mean(guess == truth) >= 0.9


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ValueError, match="correlation"):
        _cfg(correlation=1.5)
    with pytest.raises(ValueError, match="spurious"):
        _cfg(spurious="texture")
    with pytest.raises(ValueError, match="num_classes"):
        _cfg(num_classes=5)
