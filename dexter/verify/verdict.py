"""From counterfactual designs to per-class verdicts.

For class ``c`` and a candidate attribute ``a`` (with alternatives ``b1, b2, ...`` of the same kind) two
comparisons are measured, each on content that stays fixed while only the attribute changes:

- **flip**: images of the OTHER classes with ``a`` versus with the alternatives; the rate is the share
  the classifier calls ``c``. A shortcut pulls other classes into ``c``: the attribute is *sufficient*.
- **drop**: images of ``c`` itself with ``a`` versus with the alternatives; the rate is again the share
  called ``c``. A shortcut is *needed*: without it, ``c``'s own images lose the class.

Each effect is "rate with ``a``" minus "rate with an alternative", measured against EVERY alternative
separately; the test's effect is the smallest of them, its p-value the largest (an intersection-union
test: "``a`` raises the rate above each alternative" is claimed only when every one of those claims holds,
which needs no correction over the alternatives). Why the smallest and not the pooled difference: the
alternatives may include ANOTHER class's shortcut. If squares are called circles on water, a triangle's
drop test for "snow" pooled over water, land and sand shows triangles "needing" snow, although they only
lose to circle on water; against land and sand alone nothing changes, and the smallest effect says so.

A test PASSES when it is significant after Holm's correction over every test of the class and its effect
is at least ``min_effect``. An attribute is verified when EITHER test passes: a shortcut can be learnt in
one direction only (a model that calls circles on land squares needs no squares on water to be called
circles), and each direction alone is a dependence of the classifier on the attribute.

Unless the other test CONTRADICTS it (``veto_contradicted``): its interval lies wholly below zero, so some
alternative makes the classifier say ``c`` significantly MORE often than the attribute does. A cue for ``c``
never does that in either direction; what does is an attribute that makes images hard to read, or one that
is ANOTHER class's cue. Measured on the rich world's shortcut-reliant classifier: white objects are harder
to see, so white squares fall to "cross" (flip +0.28) while white crosses lose "cross" (drop -0.15); snow is
triangle's cue, so other shapes on snow are called square less (flip -0.21) while squares on snow keep
"square" a little more than on sand (drop +0.20). Both passed one test and were false claims; the veto
removes them and no true shortcut of that run. With a judge
(:mod:`dexter.verify.judge`), only images that show their prompt's class and value are counted, so a
generator that draws one value badly does not pass for a classifier that needs another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from itertools import product
from typing import Literal

import numpy as np

from dexter.verify.counterfactual import Prober
from dexter.verify.judge import Claim
from dexter.verify.stats import Comparison, holm

Kind = Literal["flip", "drop"]
CLASS_SLOT = "class"


@dataclass(frozen=True)
class ContentRow:
    """One fixed content (say "a red square") with the attribute and with each alternative."""

    content: str
    with_prompt: str
    without_prompts: tuple[str, ...]
    content_class: int = -1  # the class the content shows (-1: unknown, no domain check)
    context: str = ""  # the setting of the other attributes the row holds fixed ("red", "water"; "": none)


@dataclass(frozen=True)
class AttributeDesign:
    """Everything needed to test one attribute for one class."""

    attribute: str
    kind: str  # the attribute's kind ("background", "color", or what the reasoning module called it)
    alternatives: tuple[str, ...]
    flip: tuple[ContentRow, ...]  # content of the other classes
    drop: tuple[ContentRow, ...]  # content of the class itself
    # prompt -> what it claims the image shows (content class, tested value), checked by the prober's judge
    claims: Mapping[str, tuple[Claim, ...]] = field(default_factory=dict)

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
    values = (attribute, *alternatives)
    claims: dict[str, tuple[Claim, ...]] = {}

    def rows(classes: Sequence[int]) -> tuple[ContentRow, ...]:
        out = []
        for k, ctx in product(classes, contexts):
            fields = {**ctx, CLASS_SLOT: class_names[k]}
            label = class_names[k] + (f" ({', '.join(ctx.values())})" if ctx else "")
            prompts = [fill(template, **fields, **{slot: v}) for v in values]
            for prompt, v in zip(prompts, values):
                claims[prompt] = (Claim(class_names[k], tuple(class_names)), Claim(v, values))
            out.append(ContentRow(label, prompts[0], tuple(prompts[1:]), k, ", ".join(ctx.values())))
        return tuple(out)

    flip, drop = rows(others), rows([class_index])
    return AttributeDesign(attribute, kind, alternatives, flip, drop, claims)


@dataclass(frozen=True)
class Effect:
    """One test of one attribute (the ``effects`` entries of verification.json).

    ``effect``, its interval and the ``*_without`` counts are those of the alternative closest to the
    attribute (the smallest effect: the one the decision rests on); ``p_value`` is the largest of the
    per-alternative p-values; ``pooled_effect`` compares with all alternatives together (for reading only).
    """

    attribute: str
    kind: Kind
    effect: float
    ci_low: float
    ci_high: float
    p_value: float
    p_adjusted: float
    n: int  # images counted in the test (with the attribute and with every alternative)
    significant: bool  # p_adjusted < alpha (size is judged separately, by min_effect)
    passed: bool  # significant and effect >= min_effect
    saturated: bool  # rate with the closest alternative > 1 - min_effect: this test cannot show a large effect
    rate_with: float
    rate_without: float
    hits_with: int
    n_with: int
    hits_without: int
    n_without: int
    closest_alternative: str = ""
    pooled_effect: float = 0.0
    per_alternative: dict[str, float] = field(default_factory=dict)  # alternative -> effect against it
    set_aside_with: int = 0  # images the judge found not to show their prompt (not counted above)
    set_aside_without: int = 0
    rows_out_of_domain: tuple[str, ...] = ()  # contents the classifier recognises under no value (not counted)
    testable: bool = True  # False: no row or no image left on some side, so nothing was compared
    # flip only: other classes whose content shows the effect (>= min_effect) against EVERY alternative, and how
    # many the test needs (min_flip_classes, or fewer when the design has fewer other classes)
    classes_with_effect: int = 0
    classes_needed: int = 0
    # contexts (settings of the other attribute; for the drop, the class's content in one of them) that show the
    # effect (>= min_effect against every alternative; the flip pools the other classes' content of a context),
    # and how many the test needs (min_flip_contexts / min_drop_contexts, or all the design has)
    contexts_with_effect: int = 0
    contexts_needed: int = 0
    # drop only: what the attribute does to EVERY class's recognition (the other classes' own-class rate with
    # the attribute minus with each alternative, averaged over those classes), and the drop effect beyond it
    visibility: dict[str, float] = field(default_factory=dict)
    specific_effect: float | None = None

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
    min_recognition: float = 0.5
    veto_contradicted: bool = True
    min_flip_classes: int = 2
    visibility_control: bool = True
    min_drop_contexts: int = 2
    min_flip_contexts: int = 2
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
        """Attributes whose flip or drop test passes and neither test contradicts."""
        return [d.attribute for d in self.designs if self._passed(d.attribute) and not self.contradicted_by(d.attribute)]

    def _passed(self, attribute: str) -> list[str]:
        return sorted((k for k, e in self.effects_of(attribute).items() if e.passed), key=("flip", "drop").index)

    def contradicted_by(self, attribute: str) -> list[str]:
        """The tests whose effect is significantly NEGATIVE (interval below zero), when the veto is on."""
        if not self.veto_contradicted:
            return []
        return sorted((k for k, e in self.effects_of(attribute).items() if e.testable and e.ci_high < 0),
                      key=("flip", "drop").index)

    def decision(self, attribute: str) -> str:
        """Which tests passed: "flip and drop" / "flip" / "drop" / "not verified"; or "flip, contradicted by
        drop" (the other test's interval lies below zero: not verified)."""
        passed = self._passed(attribute)
        if not passed:
            return "not verified"
        against = self.contradicted_by(attribute)
        return " and ".join(passed) + (f", contradicted by {' and '.join(against)}" if against else "")

    @property
    def verdict(self) -> Literal["biased", "no_evidence"]:
        return "biased" if self.verified else "no_evidence"

    @property
    def unreadable(self) -> list[str]:
        """Contents whose generated images the classifier does not recognise (rows no test could read)."""
        return list(dict.fromkeys(r for e in self.effects for r in e.rows_out_of_domain))

    @property
    def conclusive(self) -> bool:
        """False when nothing was verified and some test could not be read at all: "no evidence" then means
        "not measurable here", not "measured and absent"."""
        return bool(self.verified) or all(e.testable for e in self.effects)

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
            "conclusive": self.conclusive,
            "unreadable_contents": self.unreadable,
            "verified": self.verified,
            "decisions": {d.attribute: self.decision(d.attribute) for d in self.designs},
            "alternatives": self.alternatives,
            "tested": {d.attribute: {"kind": d.kind, "alternatives": list(d.alternatives)} for d in self.designs},
            "skipped": dict(self.skipped),
            "effects": [e.as_dict() for e in self.effects],
            "settings": {"alpha": self.alpha, "min_effect": self.min_effect, "min_recognition": self.min_recognition,
                         "n_images": self.n_images,
                         "confidence": self.confidence, "correction": "holm",
                         "test": "fisher exact, one-sided, against every alternative (intersection-union)",
                         "interval": "newcombe hybrid score",
                         "rule": "flip or drop" + (", unless the other test's interval lies below zero"
                                                   if self.veto_contradicted else ""),
                         "veto_contradicted": self.veto_contradicted, "min_flip_classes": self.min_flip_classes,
                         "visibility_control": self.visibility_control, "min_drop_contexts": self.min_drop_contexts,
                         "min_flip_contexts": self.min_flip_contexts},
            "cost": {"images_used": self.images_used, "images_generated": self.images_generated,
                     "seconds": round(self.seconds, 2)},
        }


def _counts(prompts: Sequence[str], outcomes, class_index: int, keep) -> tuple[int, int, int]:
    """(hits, images counted, images the judge set aside) over ``prompts``."""
    hits = n = dropped = 0
    for p in prompts:
        o = outcomes[p]
        mask = keep(p, o)
        hits += int((o.labels[mask] == class_index).sum())
        n += int(mask.sum())
        dropped += int((~mask).sum())
    return hits, n, dropped


def _recognised_under(row: ContentRow, prompt: str, outcomes, keep, min_recognition: float) -> bool:
    """Whether the classifier calls the row's content its own class in at least ``min_recognition`` of the
    counted images of ``prompt`` (always, for a row whose content class is unknown)."""
    if row.content_class < 0:
        return True
    o = outcomes[prompt]
    mask = keep(prompt, o)
    return bool(mask.any()) and float((o.labels[mask] == row.content_class).mean()) >= min_recognition


def _domains(kind: Kind, rows: Sequence[ContentRow], n_alternatives: int, outcomes, keep,
             min_recognition: float) -> list[list[ContentRow]]:
    """For each alternative, the rows its comparison reads.

    Why: the test reads the classifier's answers on generated images, and an answer means something only on
    content the classifier can recognise (the generator's images differ from its training images, measured on
    the small world: a classifier perfect on real test images called 0-31% of generated circles circles while
    CLIP saw circles in 95-100%).

    - **drop** (the class's own content): a row counts when its content is recognised under SOME value, the
      attribute or an alternative. Not "under the alternative": a shortcut's own effect is exactly that the
      content is NOT recognised without it, and the test must see that.
    - **flip** (other classes' content): the comparison with alternative ``b`` reads the rows whose content is
      recognised under ``b``: the flip test asks whether adding the attribute turns a recognised image of
      another class into this class. Where the content is not recognised under ``b`` either, its images are
      already lost to their own class, and which class they fall to says nothing about this class's cues.
      Measured on the rich world's shortcut-reliant classifier: shapes off their own shortcut fall more often
      to "cross" on land than on sand (+0.17, a flip "shortcut" of the unbiased cross), while red squares, which
      the classifier recognises on every background, are called cross on land no more than on sand.
    """
    if kind == "drop":
        readable = [r for r in rows if any(_recognised_under(r, p, outcomes, keep, min_recognition)
                                           for p in (r.with_prompt, *r.without_prompts))]
        return [readable] * n_alternatives
    return [[r for r in rows if _recognised_under(r, r.without_prompts[j], outcomes, keep, min_recognition)]
            for j in range(n_alternatives)]


def _gap(rows: Sequence[ContentRow], j: int, outcomes, target: int, keep) -> float | None:
    """Share of the rows' images called ``target`` with the attribute minus with alternative ``j`` (None when
    a side has no counted image)."""
    hw, nw, _ = _counts([r.with_prompt for r in rows], outcomes, target, keep)
    ho, no, _ = _counts([r.without_prompts[j] for r in rows], outcomes, target, keep)
    return hw / nw - ho / no if nw and no else None


def _grouped(rows: Sequence[ContentRow], key) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def _by_class(rows: Sequence[ContentRow]) -> dict[int, list[ContentRow]]:
    return _grouped(rows, lambda r: r.content_class)


def _breadth(domains: Sequence[Sequence[ContentRow]], outcomes, class_index: int, keep, min_effect: float,
             key) -> int:
    """How many groups of rows (``key``: the content class or the context for the flip, the row itself for the
    drop) show the effect (>= ``min_effect``) against every alternative.

    Why, flip: a cue of class c pulls ANY content towards c. An effect confined to one other class is a
    confusion of that class with c under the attribute (measured on the rich world's shortcut-reliant
    classifier: purple crosses on water are called circles, on real test images too, while no other purple
    shape is), not a shortcut of c.
    Why, drop: an effect seen in one context (one cell of the class) cannot say which of the cell's values
    carries it. Measured on the rich world with circle's shortcut at 0.8: generated purple circles on sand are
    circles (0.94), other colours there not (0.00-0.19), and nowhere else does purple matter: "purple" passed
    circle's drop (+0.38); and a small-world classifier that recognised generated circles only as yellow on
    water passed both "yellow" and "water" from that one cell.
    Why, flip contexts: the same holds for the other classes' content. Measured on the rich world's classifier
    trained with no shortcut: yellow squares, triangles and crosses on sand were called circles (0.50-0.88; on
    real test images too, less often), no other colour on sand was, and "sand" passed circle's flip (+0.17,
    in three classes) from the one colour.
    """
    shown = [{g for g, rows in _grouped(domain, key).items()
              if (gap := _gap(rows, j, outcomes, class_index, keep)) is not None and gap >= min_effect}
             for j, domain in enumerate(domains)]
    return len(set.intersection(*shown)) if shown else 0


def _visibility(others: Sequence[ContentRow], n_alternatives: int, outcomes, keep, min_recognition: float
                ) -> list[float]:
    """Per alternative b: how much more often the OTHER classes' content is recognised as its own class with
    the attribute than with b (per class, then averaged over the classes; rows read as in the drop test).

    Why: an attribute can make every shape easier to see. Measured on the rich world's classifier trained with
    no shortcut: generated red shapes are recognised far more often than purple ones (circles 1.00 vs 0.56,
    triangles 0.83 vs 0.52, crosses 0.86 vs 0.69), so the drop tests of triangle and cross passed "red"
    (+0.31, +0.17) with nothing learnt from a correlation. A shortcut makes ITS class need the attribute beyond
    what the attribute does for every class.
    """
    domain = _domains("drop", others, n_alternatives, outcomes, keep, min_recognition)[0] if others else []
    per_class = {k: rows for k, rows in _by_class(domain).items() if k >= 0}  # own class known
    gains = [[g for k, rows in per_class.items() if (g := _gap(rows, j, outcomes, k, keep)) is not None]
             for j in range(n_alternatives)]
    return [float(np.mean(g)) if g else 0.0 for g in gains]


def _measure(attribute: str, kind: Kind, alternatives: Sequence[str], rows: Sequence[ContentRow], outcomes,
             class_index: int, keep, min_recognition: float, min_effect: float = 0.0,
             min_flip_classes: int = 1, others: Sequence[ContentRow] | None = None, min_drop_contexts: int = 1,
             min_flip_contexts: int = 1) -> tuple[Effect, list[Comparison] | None]:
    """The test's counts against every alternative; the Effect is completed after Holm (see verify_class)."""
    domains = _domains(kind, rows, len(alternatives), outcomes, keep, min_recognition)
    read = {r.content for domain in domains for r in domain}
    out_of_domain = tuple(r.content for r in rows if r.content not in read)
    per_alt = []  # (hits with, n with, set aside with, hits without, n without, set aside without) per alternative
    for j, domain in enumerate(domains):
        per_alt.append((*_counts([r.with_prompt for r in domain], outcomes, class_index, keep),
                        *_counts([r.without_prompts[j] for r in domain], outcomes, class_index, keep)))
    readable = [r for r in rows if r.content in read]
    hw, nw, aside_w = _counts([r.with_prompt for r in readable], outcomes, class_index, keep)
    ho, no = sum(x[3] for x in per_alt), sum(x[4] for x in per_alt)
    aside_o = sum(x[5] for x in per_alt)
    if any(x[1] == 0 or x[4] == 0 for x in per_alt):  # nothing left to compare on some side
        return Effect(attribute, kind, 0.0, -1.0, 1.0, 1.0, 1.0, nw + no, False, False, False, 0.0, 0.0, hw, nw,
                      ho, no, "", 0.0, {}, aside_w, aside_o, out_of_domain, testable=False), None
    comparisons = [Comparison(x[0], x[1], x[3], x[4]) for x in per_alt]
    pooled = Comparison(hw, nw, ho, no)
    j = min(range(len(comparisons)), key=lambda i: (comparisons[i].effect, -comparisons[i].p_value()))
    c = comparisons[j]
    effect = Effect(attribute, kind, c.effect, 0.0, 0.0, max(x.p_value() for x in comparisons), 1.0, nw + no,
                    False, False, False, c.rate_with, c.rate_without, c.hits_with, c.n_with, c.hits_without,
                    c.n_without, alternatives[j], pooled.effect,
                    {a: x.effect for a, x in zip(alternatives, comparisons)}, aside_w, aside_o, out_of_domain)
    if kind == "drop" and others is not None:
        seen = _visibility(others, len(alternatives), outcomes, keep, min_recognition)
        effect = replace(effect, visibility=dict(zip(alternatives, seen)), specific_effect=min(
            x.effect - max(0.0, v) for x, v in zip(comparisons, seen)))
    if kind == "flip":
        classes = {r.content_class for r in rows}
        contexts = {r.context for r in rows}
        effect = replace(effect, classes_needed=min(min_flip_classes, len(classes)), classes_with_effect=_breadth(
            domains, outcomes, class_index, keep, min_effect, lambda r: r.content_class),
            contexts_needed=min(min_flip_contexts, len(contexts)), contexts_with_effect=_breadth(
            domains, outcomes, class_index, keep, min_effect, lambda r: r.context))
    else:
        effect = replace(effect, contexts_needed=min(min_drop_contexts, len(rows)), contexts_with_effect=_breadth(
            domains, outcomes, class_index, keep, min_effect, lambda r: r.content))
    return effect, comparisons


def verify_class(
    prober: Prober,
    designs: Sequence[AttributeDesign],
    class_index: int,
    class_name: str,
    *,
    n_images: int,
    alpha: float = 0.05,
    min_effect: float = 0.15,
    min_recognition: float = 0.5,
    veto_contradicted: bool = True,
    min_flip_classes: int = 2,
    visibility_control: bool = True,
    min_drop_contexts: int = 2,
    min_flip_contexts: int = 2,
    skipped: Mapping[str, str] | None = None,
) -> ClassVerification:
    """Generate (or reuse) ``n_images`` per prompt of every design, measure flip and drop, apply Holm."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not 0 <= min_effect <= 1:
        raise ValueError(f"min_effect must be in [0, 1], got {min_effect}")
    if not 0 <= min_recognition <= 1:
        raise ValueError(f"min_recognition must be in [0, 1], got {min_recognition}")
    for name, value in (("min_flip_classes", min_flip_classes), ("min_drop_contexts", min_drop_contexts),
                        ("min_flip_contexts", min_flip_contexts)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    for d in designs:
        if not d.flip or not d.drop:
            raise ValueError(f"attribute {d.attribute!r}: a design needs flip and drop content")
    result = ClassVerification(class_index, class_name, alpha, min_effect, n_images, 1 - alpha, min_recognition,
                               veto_contradicted, min_flip_classes, visibility_control, min_drop_contexts,
                               min_flip_contexts, designs=list(designs),
                               skipped=dict(skipped or {}))
    if not designs:
        return result
    generated, seconds = prober.images_generated, prober.seconds
    prompts = list(dict.fromkeys(p for d in designs for p in d.prompts()))
    outcomes = prober.outcomes(prompts, n_images)
    claims = {p: c for d in designs for p, c in d.claims.items()}
    judge = getattr(prober, "judge", None)

    def keep(prompt: str, o) -> np.ndarray:
        if judge is None or not claims.get(prompt):
            return np.ones(len(o.labels), dtype=bool)
        return judge.agrees(o.embeddings, claims[prompt])

    measured = [_measure(d.attribute, kind, d.alternatives, rows, outcomes, class_index, keep, min_recognition,
                         min_effect, min_flip_classes, d.flip if visibility_control else None, min_drop_contexts,
                         min_flip_contexts)
                for d in designs for kind, rows in (("flip", d.flip), ("drop", d.drop))]
    p_values = [e.p_value for e, _ in measured]
    for (e, comparisons), p_adj in zip(measured, holm(p_values)):
        if comparisons is not None:
            low, high = Comparison(e.hits_with, e.n_with, e.hits_without, e.n_without).interval(1 - alpha)
            significant = p_adj < alpha
            e = replace(e, ci_low=low, ci_high=high, p_adjusted=p_adj, significant=significant,
                        passed=significant and e.effect >= min_effect and e.classes_with_effect >= e.classes_needed
                        and e.contexts_with_effect >= e.contexts_needed
                        and (e.specific_effect is None or e.specific_effect >= min_effect),
                        saturated=e.rate_without > 1 - min_effect)
        result.effects.append(e)
    result.images_used = len(prompts) * n_images
    result.images_generated = prober.images_generated - generated
    result.seconds = prober.seconds - seconds
    return result


__all__ = ["AttributeDesign", "ClassVerification", "ContentRow", "Effect", "design_from_template", "fill",
           "verify_class"]
