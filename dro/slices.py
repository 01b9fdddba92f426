"""CLIP zero-shot pseudo-group labelling (docs/METHOD.md section 3, the B2T protocol DEXTER follows).

A text prototype of a phrase (or of a set of phrases) is the normalised mean of the normalised CLIP
text embeddings of ``template(class_template(phrase))`` over all templates and class templates.

With alternatives (what the reasoning stage verified: per attribute ``a`` of class y, the phrases it
competes with, e.g. water -> land, snow, sand), an image CARRIES ``a`` iff ``softmax(v . t / T)`` over
the prototypes of ``{a} + alternatives[a]`` picks ``a``. Then:

- a biased class (attributes A_y non-empty): bias-CONFLICTING iff the image carries no a in A_y;
- an unbiased class (verdict no_evidence, no attributes): bias-CONFLICTING iff the image carries an
  attribute of ANOTHER class (a cross on water, when water is circle's shortcut).

Without alternatives (reasoning output that has none), B2T's rule: per class c a prototype ``t_c`` of all
its attributes, each image compared with every class prototype, argmax = y -> bias-ALIGNED, otherwise
bias-CONFLICTING. No threshold either way. Pseudo-group = ``2 * y + conflicting``.

CLIP itself (loading, embeddings and their cache) is :mod:`common.clip`; the quality of the labels where
true groups exist is :mod:`dro.labelling_quality`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from common.artifacts import ArtifactError, read_class_attributes
from common.clip import normalise
from common.errors import UserInputError
from dro.templates import compose

_log = logging.getLogger(__name__)

TextEncoder = Callable[[list[str]], torch.Tensor]


class LabellingError(UserInputError, RuntimeError):
    """Slice labelling cannot run (no attributes for a class, CLIP missing, ...)."""


# ---------------------------------------------------------------------------------------------
# Prototypes and assignment (pure functions of embeddings)
# ---------------------------------------------------------------------------------------------


def class_prototypes(
    encode_text: TextEncoder,
    keywords: Sequence[Sequence[str]],
    templates: Sequence[str],
    class_templates: Sequence[str],
) -> torch.Tensor:
    """C x D prototypes: per class, the normalised mean of the normalised embeddings of every
    ``template(class_template(keyword))`` over templates, class templates and that class's keywords."""
    protos = []
    for c, words in enumerate(keywords):
        if not words:
            raise LabellingError(f"class {c} has no slice keywords")
        texts = [t for w in words for t in compose(w, list(templates), list(class_templates))]
        emb = normalise(encode_text(texts).float())
        protos.append(normalise(emb.mean(0)))
    return torch.stack(protos)


@dataclass(frozen=True)
class Assignment:
    conflicting: np.ndarray  # bool per image
    p_aligned: np.ndarray  # CLIP's probability behind the "aligned" decision, per image
    pseudo_groups: np.ndarray  # 2 * y + conflicting
    probs: np.ndarray | None = None  # N x C softmax(v . t / T) over class prototypes (B2T rule only)


def assign_slices(image_emb: torch.Tensor, y: np.ndarray, prototypes: torch.Tensor,
                  temperature: float = 0.02) -> Assignment:
    """B2T: aligned iff the argmax of ``softmax(v . t / T)`` over class prototypes is the image's own class."""
    y = np.asarray(y, dtype=np.int64)
    if len(image_emb) != len(y):
        raise ValueError(f"{len(image_emb)} embeddings but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(prototypes)):
        raise ValueError(f"labels must lie in [0, {len(prototypes)})")
    probs = _softmax(image_emb, prototypes, temperature)
    conflicting = probs.argmax(1) != y
    return Assignment(conflicting, probs[np.arange(len(y)), y], pseudo_groups(y, conflicting), probs)


def _softmax(image_emb: torch.Tensor, prototypes: torch.Tensor, temperature: float) -> np.ndarray:
    logits = normalise(image_emb.float()) @ prototypes.float().t() / temperature
    return torch.softmax(logits, dim=1).numpy()


@dataclass(frozen=True)
class ClassSlices:
    """What labelling is told about one class: its attributes (empty: no evidence of bias) and, per
    attribute, the alternative phrases CLIP must prefer it over (missing: B2T's rule for the class)."""

    class_name: str
    attributes: tuple[str, ...]
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    verdict: str | None = None  # "biased" | "no_evidence"; None: reasoning output without a verdict

    @property
    def biased(self) -> bool:
        return bool(self.attributes)

    @property
    def has_alternatives(self) -> bool:
        return self.biased and all(self.alternatives.get(a) for a in self.attributes)


def assign_with_alternatives(
    image_emb: torch.Tensor,
    y: np.ndarray,
    slices: Sequence[ClassSlices],
    prototype: Callable[[Sequence[str]], torch.Tensor],
    temperature: float = 0.02,
    log: Callable[[str], None] = _log.info,
) -> Assignment:
    """The labelling rule of the module docstring. ``prototype(phrases)`` -> one normalised D-vector."""
    y = np.asarray(y, dtype=np.int64)
    if len(image_emb) != len(y):
        raise ValueError(f"{len(image_emb)} embeddings but {len(y)} labels")
    if len(y) and (y.min() < 0 or y.max() >= len(slices)):
        raise ValueError(f"labels must lie in [0, {len(slices)})")
    conflicting = np.zeros(len(y), dtype=bool)
    p_aligned = np.ones(len(y), dtype=np.float64)
    memo: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}

    def carries(a: str, alternatives: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(whether each image carries ``a`` rather than an alternative, P(a) over them)."""
        key = (a, *alternatives)
        if key not in memo:
            probs = _softmax(image_emb, torch.stack([prototype([p]) for p in key]), temperature)
            memo[key] = probs.argmax(1) == 0, probs[:, 0]
        return memo[key]

    biased = [c for c, s in enumerate(slices) if s.biased]
    b2t = None
    if any(s.biased and not s.has_alternatives for s in slices):
        b2t = _softmax(image_emb, torch.stack([prototype(slices[c].attributes) for c in biased]), temperature)
    for c, s in enumerate(slices):
        m = y == c
        if not m.any():
            continue
        if s.has_alternatives:
            found = [carries(a, s.alternatives[a]) for a in s.attributes]
            conflicting[m] = ~np.any([wins[m] for wins, _ in found], axis=0)
            p_aligned[m] = np.max([p[m] for _, p in found], axis=0)
        elif s.biased:
            own = biased.index(c)
            conflicting[m] = b2t[m].argmax(1) != own
            p_aligned[m] = b2t[m][:, own]
        else:
            others = [(o, a) for o in slices if o is not s for a in o.attributes]
            usable = [(o, a) for o, a in others if o.alternatives.get(a)]
            if len(usable) < len(others):
                missing = sorted({a for o, a in others if not o.alternatives.get(a)})
                log(f"WARNING {s.class_name} shows no bias, and the other classes' attributes {missing} have no "
                    "alternatives, so its images cannot be checked for them (they count as aligned)")
            if usable:
                found = [carries(a, o.alternatives[a]) for o, a in usable]
                conflicting[m] = np.any([wins[m] for wins, _ in found], axis=0)
                p_aligned[m] = 1.0 - np.max([p[m] for _, p in found], axis=0)
    return Assignment(conflicting, p_aligned, pseudo_groups(y, conflicting))


def pseudo_groups(y: np.ndarray, conflicting: np.ndarray) -> np.ndarray:
    return 2 * np.asarray(y, dtype=np.int64) + np.asarray(conflicting, dtype=np.int64)


def pseudo_group_names(class_names: Sequence[str]) -> list[str]:
    return [f"{c}|{s}" for c in class_names for s in ("aligned", "conflicting")]


def read_attributes(reasoning_dir: Path | str, class_names: Sequence[str]) -> list[ClassSlices]:
    """Per class, what the reasoning stage's ``attributes.json`` says (:func:`common.artifacts.read_class_attributes`):
    ``attributes`` and, where it wrote them, ``verdict`` and ``alternatives``."""
    out = []
    for c, name in enumerate(class_names):
        try:
            a = read_class_attributes(reasoning_dir, c, name)
        except ArtifactError as e:
            raise LabellingError(str(e)) from None
        out.append(ClassSlices(name, a.attributes, a.alternatives, a.verdict))
    return out
