"""From counterfactual designs to per-class verdicts.

For class ``c`` and a candidate attribute ``a`` (with alternatives ``b1, b2, ...`` of the same kind) two
comparisons are measured, each on content that stays fixed while only the attribute changes:

- **flip**: images of the OTHER classes with ``a`` versus with the alternatives; the rate is the share
  the classifier calls ``c``. A shortcut pulls other classes into ``c``: the attribute is *sufficient*.
- **drop**: images of ``c`` itself with ``a`` versus with the alternatives; the rate is again the share
  called ``c``. A shortcut is *needed*: without it, ``c``'s own images lose the class.

Both effects are "rate with ``a``" minus "rate with the alternatives" (one-sided: a shortcut raises it).
A test PASSES when it is significant after Holm's correction over every test of the class AND its effect
is at least ``min_effect``. An attribute is verified only when both tests pass, except that a test whose
rate without the attribute is already above ``1 - min_effect`` cannot show an effect that large
(*saturated*: say the classifier recognises every circle whatever the background); then the other test
decides alone and must be conclusive: its whole interval at or above ``min_effect_alone`` (larger than
``min_effect``). That stricter bar matters because a saturated drop test is what an UNBIASED class looks
like (its own images are recognised anyway): a classifier trained without any shortcut still shifts a
little with the background on generated images (+0.12 to +0.16 measured on the default world at
correlation 0.5), which must not be enough to call a class biased.

Why both: an interaction (red squares on water look like circles to the classifier, yellow ones do not)
makes "red" raise circle's flip rate exactly as much as it makes "water" raise it; only the drop test
tells them apart (circles need water, not red), and the reverse holds for a colour that only matters for
the class's own images. A main effect of the attribute shows in both tests; an artefact of one
configuration shows in one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Literal

from dexter.verify.counterfactual import Prober
from dexter.verify.stats import Comparison, holm

Kind = Literal["flip", "drop"]
CLASS_SLOT = "class"


@dataclass(frozen=True)
class ContentRow:
    """One fixed content (say "a red square") with the attribute and with each alternative."""

    content: str
    with_prompt: str
    without_prompts: tuple[str, ...]


@dataclass(frozen=True)
class AttributeDesign:
    """Everything needed to test one attribute for one class."""

    attribute: str
    kind: str  # the attribute's kind ("background", "color", or what the reasoning module called it)
    alternatives: tuple[str, ...]
    flip: tuple[ContentRow, ...]  # content of the other classes
    drop: tuple[ContentRow, ...]  # content of the class itself

    def prompts(self) -> list[str]:
        return list(dict.fromkeys(p for row in (*self.flip, *self.drop) for p in (row.with_prompt, *row.without_prompts)))


def fill(template: str, **fields: str) -> str:
    """``template`` with its ``{name}`` slots filled; a slot without a value is an error."""
    try:
        return " ".join(template.format_map(fields).split())
    except KeyError as e:
        raise ValueError(f"template {template!r} has a slot {e} that was not given") from None


def design_from_template(
    *,
    attribute: str,
    kind: str,
    alternatives: Sequence[str],
    template: str,
    slot: str,
    class_names: Sequence[str],
    class_index: int,
    contexts: Sequence[Mapping[str, str]] = ({},),
    flip_classes: Sequence[int] | None = None,
) -> AttributeDesign:
    """Rows for every (content class, context): ``template`` filled with the class name in ``{class}``,
    the context's values in their slots, and the attribute or an alternative in ``{<slot>}``."""
    alternatives = tuple(dict.fromkeys(a for a in alternatives if a != attribute))
    if not alternatives:
        raise ValueError(f"attribute {attribute!r}: no alternative to compare with")
    for needed in (CLASS_SLOT, slot):
        if "{" + needed + "}" not in template:
            raise ValueError(f"template {template!r} lacks the slot {{{needed}}}")
    others = [k for k in range(len(class_names)) if k != class_index] if flip_classes is None else list(flip_classes)

    def rows(classes: Sequence[int]) -> tuple[ContentRow, ...]:
        out = []
        for k, ctx in product(classes, contexts):
            fields = {**ctx, CLASS_SLOT: class_names[k]}
            label = class_names[k] + (f" ({', '.join(ctx.values())})" if ctx else "")
            out.append(ContentRow(label, fill(template, **fields, **{slot: attribute}),
                                  tuple(fill(template, **fields, **{slot: b}) for b in alternatives)))
        return tuple(out)

    return AttributeDesign(attribute, kind, alternatives, rows(others), rows([class_index]))


@dataclass(frozen=True)
class Effect:
    """One measured comparison (the ``effects`` entries of attributes.json)."""

    attribute: str
    kind: Kind
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    n: int  # images in the comparison (both sides)
    significant: bool  # p_adjusted < alpha (size is judged separately, by min_effect)
    passed: bool  # significant and effect >= min_effect
    saturated: bool  # rate without the attribute > 1 - min_effect: this test cannot show a large effect
    rate_with: float
    rate_without: float
    hits_with: int
    n_with: int
    hits_without: int
    n_without: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClassVerification:
    """The counterfactual test of one class: what was tested, what was measured, the verdict."""

    class_index: int
    class_name: str
    alpha: float
    min_effect: float
    n_images: int  # per prompt
    confidence: float
    min_effect_alone: float = 0.25  # what one test must clear with its whole interval when the other is saturated
    effects: list[Effect] = field(default_factory=list)
    designs: list[AttributeDesign] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # keyword -> why it was not tested
    images_used: int = 0
    images_generated: int = 0
    seconds: float = 0.0

    @property
    def tested(self) -> list[str]:
        return [d.attribute for d in self.designs]

    @property
    def verified(self) -> list[str]:
        """Attributes whose flip and drop tests both pass, or one passes conclusively and the other is saturated."""
        return [d.attribute for d in self.designs if self.decision(d.attribute) != "not verified"]

    def decision(self, attribute: str) -> str:
        """"both tests" / "one test (the other saturated)" / "not verified"."""
        pair = list(self.effects_of(attribute).values())
        if len(pair) != 2:
            return "not verified"
        if all(e.passed for e in pair):
            return "both tests"
        passed = [e for e in pair if e.passed]
        if len(passed) == 1 and all(e.passed or e.saturated for e in pair) and passed[0].ci_low >= self.min_effect_alone:
            return f"{passed[0].kind} test alone ({'drop' if passed[0].kind == 'flip' else 'flip'} saturated)"
        return "not verified"

    @property
    def verdict(self) -> Literal["biased", "no_evidence"]:
        return "biased" if self.verified else "no_evidence"

    @property
    def alternatives(self) -> dict[str, list[str]]:
        return {d.attribute: list(d.alternatives) for d in self.designs if d.attribute in self.verified}

    def effects_of(self, attribute: str) -> dict[str, Effect]:
        return {e.kind: e for e in self.effects if e.attribute == attribute}

    def as_dict(self) -> dict:
        return {
            "class_index": self.class_index,
            "class_name": self.class_name,
            "verdict": self.verdict,
            "verified": self.verified,
            "decisions": {d.attribute: self.decision(d.attribute) for d in self.designs},
            "alternatives": self.alternatives,
            "tested": {d.attribute: {"kind": d.kind, "alternatives": list(d.alternatives)} for d in self.designs},
            "skipped": dict(self.skipped),
            "effects": [e.as_dict() for e in self.effects],
            "settings": {"alpha": self.alpha, "min_effect": self.min_effect,
                         "min_effect_alone": self.min_effect_alone, "n_images": self.n_images,
                         "confidence": self.confidence, "correction": "holm", "test": "fisher exact, one-sided",
                         "interval": "newcombe hybrid score"},
            "cost": {"images_used": self.images_used, "images_generated": self.images_generated,
                     "seconds": round(self.seconds, 2)},
        }


def _comparison(rows: Sequence[ContentRow], outcomes, class_index: int) -> Comparison:
    hw = sum(outcomes[r.with_prompt].hits(class_index) for r in rows)
    nw = sum(len(outcomes[r.with_prompt].labels) for r in rows)
    ho = sum(outcomes[p].hits(class_index) for r in rows for p in r.without_prompts)
    no = sum(len(outcomes[p].labels) for r in rows for p in r.without_prompts)
    return Comparison(hw, nw, ho, no)


def verify_class(
    prober: Prober,
    designs: Sequence[AttributeDesign],
    class_index: int,
    class_name: str,
    *,
    n_images: int,
    alpha: float = 0.05,
    min_effect: float = 0.1,
    min_effect_alone: float = 0.25,
    skipped: Mapping[str, str] | None = None,
) -> ClassVerification:
    """Generate (or reuse) ``n_images`` per prompt of every design, measure flip and drop, apply Holm."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 <= min_effect <= min_effect_alone <= 1:
        raise ValueError(f"need 0 <= min_effect <= min_effect_alone <= 1, got {min_effect} and {min_effect_alone}")
    for d in designs:
        if not d.flip or not d.drop:
            raise ValueError(f"attribute {d.attribute!r}: a design needs flip and drop content")
    result = ClassVerification(class_index, class_name, alpha, min_effect, n_images, 1 - alpha, min_effect_alone,
                               designs=list(designs), skipped=dict(skipped or {}))
    if not designs:
        return result
    generated, seconds = prober.images_generated, prober.seconds
    prompts = list(dict.fromkeys(p for d in designs for p in d.prompts()))
    outcomes = prober.outcomes(prompts, n_images)
    comparisons = [(d.attribute, kind, _comparison(rows, outcomes, class_index))
                   for d in designs for kind, rows in (("flip", d.flip), ("drop", d.drop))]
    p_values = [c.p_value() for _, _, c in comparisons]
    for (attribute, kind, c), p, p_adj in zip(comparisons, p_values, holm(p_values)):
        low, high = c.interval(1 - alpha)
        significant = p_adj < alpha
        result.effects.append(Effect(attribute, kind, c.effect, low, high, p, p_adj, c.n_with + c.n_without,
                                     significant, significant and c.effect >= min_effect,
                                     c.rate_without > 1 - min_effect, c.rate_with, c.rate_without, c.hits_with,
                                     c.n_with, c.hits_without, c.n_without))
    result.images_used = len(prompts) * n_images
    result.images_generated = prober.images_generated - generated
    result.seconds = prober.seconds - seconds
    return result


__all__ = ["AttributeDesign", "ClassVerification", "ContentRow", "Effect", "design_from_template", "fill",
           "verify_class"]
