"""The synthetic world as the reasoning sees it: its phrase bank (every caption the world can produce) and its
vocabulary (attribute kinds and values, and a template with their slots) for the auditor.
"""

from __future__ import annotations

from itertools import product

from dexter.reasoning.audit import Vocabulary
from dexter.reasoning.errors import ReasoningError
from world.synthetic import SyntheticWorldConfig, WorldSample, caption

# One image description of the synthetic world with its attribute slots (world.synthetic.caption's words;
# a test checks that the two agree on every sample).
WORLD_TEMPLATE = "a picture of a {color} {class} on {background}"


def synthetic_phrase_bank(cfg: SyntheticWorldConfig) -> list[str]:
    """Every caption the synthetic world can produce, built by the world's own caption function."""
    return [caption(cfg, WorldSample(s, c, b, 0))
            for s, c, b in product(range(len(cfg.shapes)), range(len(cfg.colors)), range(len(cfg.backgrounds)))]


def world_vocabulary(cfg: SyntheticWorldConfig, class_names: list[str]) -> Vocabulary:
    """The synthetic world's attribute kinds and values, as plain lists for dexter.reasoning."""
    if list(cfg.shapes) != list(class_names):
        raise ReasoningError(f"the classifier's classes {class_names} are not the synthetic world's {list(cfg.shapes)}"
                              " (retrain the ERM model after changing synthetic.*)")
    return Vocabulary(tuple(cfg.shapes), {"color": tuple(cfg.colors), "background": tuple(cfg.backgrounds)},
                      WORLD_TEMPLATE)


__all__ = ["WORLD_TEMPLATE", "synthetic_phrase_bank", "world_vocabulary"]
