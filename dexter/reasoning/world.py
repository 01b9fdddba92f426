"""The synthetic world as the reasoning sees it: its phrase bank (every caption the world can produce) and its
vocabulary (attribute kinds and values, and a template with their slots) for the auditor.
"""

from __future__ import annotations

from itertools import product

from dexter.reasoning.audit import VerifySettings, Vocabulary, world_design
from dexter.reasoning.errors import ReasoningError
from dexter.verify import ClassVerification, Prober, verify_class
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


def verify_every_value(prober: Prober, cfg: SyntheticWorldConfig, settings: VerifySettings
                       ) -> dict[str, ClassVerification]:
    """Each class's counterfactual verdicts over EVERY colour and background of the world, not only the
    keywords DEXTER found: how a verdict rule is judged on one classifier (a class should be verified towards
    its true shortcut value and nothing else). The prober caches its answers per prompt, so a second call
    with other settings generates nothing."""
    vocab = world_vocabulary(cfg, list(cfg.shapes))
    words = [v for values in vocab.attribute_values.values() for v in values]
    out = {}
    for c, name in enumerate(cfg.shapes):
        flip = [k for k in range(len(cfg.shapes)) if k != c]
        out[name] = verify_class(prober, [world_design(vocab, c, w, flip) for w in words], c, name,
                                 **settings.test_kwargs())
    return out


__all__ = ["WORLD_TEMPLATE", "synthetic_phrase_bank", "verify_every_value", "world_vocabulary"]
