"""Verified verdicts: test every discovered keyword on the classifier before calling it a bias.

Data-free counterfactual test per class and candidate attribute (see :mod:`dexter.verify.verdict`):
images with fresh seeded noise of prompts that keep the content fixed and change only the attribute
(:mod:`dexter.verify.counterfactual`), the classifier's answers counted, effects with intervals and
Holm-corrected exact p-values (:mod:`dexter.verify.stats`). Nothing here imports ``dro``: callers pass
plain lists (class names, attribute values, templates).
"""

from dexter.verify.counterfactual import Prober, PromptOutcomes, diffusion_generator, image_seeds
from dexter.verify.stats import Comparison, fisher_greater, holm, newcombe_interval, wilson_interval
from dexter.verify.verdict import (
    AttributeDesign,
    ClassVerification,
    ContentRow,
    Effect,
    design_from_template,
    fill,
    verify_class,
)

__all__ = [
    "AttributeDesign",
    "ClassVerification",
    "Comparison",
    "ContentRow",
    "Effect",
    "Prober",
    "PromptOutcomes",
    "design_from_template",
    "diffusion_generator",
    "fill",
    "fisher_greater",
    "holm",
    "image_seeds",
    "newcombe_interval",
    "verify_class",
    "wilson_interval",
]
