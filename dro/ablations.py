"""Attributes that need no discovery, for the ablation rows beside ``dro_dexter``.

Each is labelled by the same CLIP rule (:func:`dro.slices.assign_with_alternatives`) and retrained by
the same trainer and selection rule, so the results table shows what discovery itself adds:

- ``dro_classname``: each class's own name is its attribute, the other class names its alternatives
  (CLIP then mostly finds every image "aligned": this is group DRO over classes);
- ``dro_random``: each class gets a random world word (a colour or a background value, seeded, no two
  classes the same while words last), the other values of the same kind its alternatives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from dro.slices import ClassSlices

ABLATIONS = ("dro_classname", "dro_random")


def classname_slices(class_names: Sequence[str]) -> list[ClassSlices]:
    return [ClassSlices(name, (name,), {name: tuple(n for n in class_names if n != name)}, "biased")
            for name in class_names]


def random_word_slices(class_names: Sequence[str], attribute_values: Mapping[str, Sequence[str]],
                       seed: int) -> list[ClassSlices]:
    """One random (kind, value) per class from ``attribute_values`` (``{"color": [...], ...}``)."""
    words = [(kind, v) for kind, values in attribute_values.items() for v in values]
    if not words:
        raise ValueError("dro_random needs world words to draw from")
    rng = np.random.default_rng([seed, 0xAB1A7E])
    order = [int(i) for i in rng.permutation(len(words))]
    while len(order) < len(class_names):  # more classes than words: draw again
        order += [int(i) for i in rng.permutation(len(words))]
    out = []
    for name, i in zip(class_names, order):
        kind, word = words[i]
        others = tuple(v for v in attribute_values[kind] if v != word)
        out.append(ClassSlices(name, (word,), {word: others}, "biased"))
    return out


def ablation_slices(method: str, class_names: Sequence[str], attribute_values: Mapping[str, Sequence[str]] | None,
                    seed: int) -> list[ClassSlices]:
    if method == "dro_classname":
        return classname_slices(class_names)
    if method == "dro_random":
        if not attribute_values:
            raise ValueError("dro_random draws world words: it needs the synthetic world")
        return random_word_slices(class_names, attribute_values, seed)
    raise ValueError(f"unknown ablation {method!r}; expected one of {list(ABLATIONS)}")
