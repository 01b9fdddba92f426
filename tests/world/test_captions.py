import numpy as np

from world.captions import (
    Caption,
    consistency_matrix,
    full_caption,
    random_caption,
    single_word_prompt,
    world_words,
)
from world.synthetic import WorldSample


def test_world_words_cover_captions_and_templates(world):
    words = world_words(world)
    assert {"circle", "square", "red", "yellow", "water", "land", ".", "with", "and"} <= set(words)
    assert "triangle" not in words  # a 2-class world


def test_full_caption_matches_the_worlds_caption(world):
    from world.synthetic import caption

    s = WorldSample(shape=1, color=0, background=1, style_seed=3)
    assert full_caption(world, s).text == caption(world, s) == "a picture of a red square on land"
    assert single_word_prompt("water") == "a picture of a water."


def test_random_captions_name_only_true_attributes_and_use_every_form(world):
    rng = np.random.default_rng(0)
    s = WorldSample(shape=0, color=1, background=0, style_seed=1)
    caps = [random_caption(world, s, rng) for _ in range(400)]
    allowed = {"a", "picture", "of", "on", "with", "and", "circle", "yellow", "water"}
    for c in caps:
        assert c.text.startswith("a picture of a ")
        assert set(c.text.rstrip(".").split()) <= allowed, c.text
        assert c.consistent_with(s)
        named = {w for w in ("circle", "yellow", "water") if w in c.text.split() or w + "." in c.text.split()}
        assert (c.shape is not None) == ("circle" in named), c
        assert (c.color is not None) == ("yellow" in named), c
        assert (c.background is not None) == ("water" in named), c
    texts = [c.text for c in caps]
    assert "a picture of a water." in texts  # DEXTER's single-word template
    assert any(" with " in t and " and " in t for t in texts)  # the multi-word template's shape
    assert any(not t.endswith(".") for t in texts) and any(t.endswith(".") for t in texts)


def test_consistency_matrix_on_a_crafted_case():
    samples = [WorldSample(0, 0, 0, 1), WorldSample(1, 0, 1, 2)]
    caps = [Caption("x", 0, None, None), Caption("y", None, 0, None), Caption("z", 1, 0, 0), Caption("w", 1, None, 1)]
    m = consistency_matrix(samples, caps)
    assert m.tolist() == [[True, True, False, False], [False, True, False, True]]
