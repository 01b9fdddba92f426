"""Caption variants of world samples, and which captions are consistent with which images.

The world models must answer the prompts DEXTER and the labelling stage write, not only the world's
canonical captions: DEXTER's single-word template ("a picture of a water.") and multi-word template
("a picture of a circle with red and water and ..."), partial descriptions, with or without a final
".". Every variant names a SUBSET of one sample's attribute words, so a caption is consistent with an
image exactly when that subset agrees with the image's attributes: that is the positive set of the
world CLIP's multi-positive contrastive loss, and the condition the generator is trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from world.synthetic import SyntheticWorldConfig, WorldSample

ATTRIBUTES = ("shape", "color", "background")
PREFIX = "a picture of a"
EXTRA_WORDS = (".", "with", "and")
MAX_TEMPLATE_SLOTS = 6  # DEXTER's multi-word template has six [MASK] slots


@dataclass(frozen=True)
class Caption:
    """A caption and the attribute values it names (None: not named)."""

    text: str
    shape: int | None
    color: int | None
    background: int | None

    def consistent_with(self, s: WorldSample) -> bool:
        return (
            (self.shape is None or self.shape == s.shape)
            and (self.color is None or self.color == s.color)
            and (self.background is None or self.background == s.background)
        )


def world_words(cfg: SyntheticWorldConfig) -> list[str]:
    """The tokenizers' vocabulary: every caption word of the world plus the template words."""
    return [*cfg.vocabulary, *EXTRA_WORDS]


def attribute_words(cfg: SyntheticWorldConfig, s: WorldSample) -> dict[str, str]:
    return {"shape": cfg.shapes[s.shape], "color": cfg.colors[s.color], "background": cfg.backgrounds[s.background]}


def single_word_prompt(word: str) -> str:
    """DEXTER's single-word template and the zero-shot prompt used for labelling and the gates."""
    return f"{PREFIX} {word}."


def full_caption(cfg: SyntheticWorldConfig, s: WorldSample) -> Caption:
    w = attribute_words(cfg, s)
    return Caption(f"{PREFIX} {w['color']} {w['shape']} on {w['background']}", s.shape, s.color, s.background)


def random_caption(cfg: SyntheticWorldConfig, s: WorldSample, rng: np.random.Generator) -> Caption:
    """One caption variant of ``s``, drawn so every form DEXTER and the labeller use is common.

    Forms (probabilities): full canonical caption (0.3), single word (0.3), "w1 with w2 and w3 ..." with
    1-6 slots drawn from the sample's words in any order, repeats allowed (0.25), two words side by
    side or "X on Y" (0.15). A trailing "." is added with probability 0.5 where the form has none.
    """
    w = attribute_words(cfg, s)
    u = rng.random()
    if u < 0.3:
        cap = full_caption(cfg, s)
        named = set(ATTRIBUTES)
        text = cap.text
    elif u < 0.6:
        attr = ATTRIBUTES[rng.integers(3)]
        named = {attr}
        text = f"{PREFIX} {w[attr]}"
    elif u < 0.85:
        n_slots = int(rng.integers(1, MAX_TEMPLATE_SLOTS + 1))
        n_attrs = int(rng.integers(1, min(3, n_slots) + 1))
        chosen = list(rng.permutation(ATTRIBUTES)[:n_attrs])
        slots = chosen + [chosen[i] for i in rng.integers(0, n_attrs, size=n_slots - n_attrs)]
        slots = [slots[i] for i in rng.permutation(len(slots))]
        named = set(chosen)
        text = f"{PREFIX} {w[slots[0]]}"
        if len(slots) > 1:
            text += f" with {w[slots[1]]}" + "".join(f" and {w[a]}" for a in slots[2:])
    else:
        pair = [str(a) for a in rng.permutation(ATTRIBUTES)[:2]]
        named = set(pair)
        joiner = " on " if pair[1] == "background" and rng.random() < 0.5 else " "
        text = f"{PREFIX} {w[pair[0]]}{joiner}{w[pair[1]]}"
    if rng.random() < 0.5:
        text += "."
    return Caption(
        text,
        s.shape if "shape" in named else None,
        s.color if "color" in named else None,
        s.background if "background" in named else None,
    )


def consistency_matrix(samples: list[WorldSample], captions: list[Caption]) -> np.ndarray:
    """M[i, j] = caption j is consistent with sample i (bool, len(samples) x len(captions))."""
    shape = np.array([s.shape for s in samples])[:, None]
    color = np.array([s.color for s in samples])[:, None]
    bg = np.array([s.background for s in samples])[:, None]

    def ok(values: np.ndarray, named: list[int | None]) -> np.ndarray:
        arr = np.array([-1 if v is None else v for v in named])[None, :]
        return (arr == -1) | (arr == values)

    return (
        ok(shape, [c.shape for c in captions])
        & ok(color, [c.color for c in captions])
        & ok(bg, [c.background for c in captions])
    )
