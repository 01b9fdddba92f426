"""The classifier-facing half of the reasoning step: fresh-noise frames, activation scores, verification.

:class:`Auditor` holds a :class:`dexter.verify.Prober` (images of prompts, answered by the audited
classifier) and does three things per class, all with fresh seeded noise:

1. **frames**: each DEXTER run's final prompt is generated ``activation_images`` times; the activation
   score of the prompt is the share classified as the class (as the original code's
   ``as_dexter_prompts.txt``), and the first ``caption_frames`` of those images that the classifier
   assigned to the class are saved as the frames the backend captions. DEXTER's own frames all share one
   noise, so whatever that noise drew would look like a finding.
2. **caption scores**: the activation score of every distinct caption (``as_captions.txt``).
3. **verification**: every candidate attribute (a DEXTER keyword that names a value of some attribute
   kind) is tested by :func:`dexter.verify.verify_class`. On a world with a known vocabulary the
   alternatives are the other values of the same kind; otherwise the backend proposes them
   (``backend.counterfactuals``).
"""

from __future__ import annotations

import io
import logging
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import numpy as np

from dexter.activation_score import ActivationScore
from dexter.reasoning.bank import stopwords, words_of
from dexter.reasoning.errors import ReasoningError
from dexter.reasoning.inputs import ClassInputs
from dexter.reasoning.schema import class_name_forms, clean_phrase, singular
from dexter.verify import AttributeDesign, ClassVerification, Prober, design_from_template, verify_class

log = logging.getLogger(__name__)

FRAMES_DIR = "frames"


@dataclass(frozen=True)
class Vocabulary:
    """A world whose attribute kinds and values are all known, e.g. the synthetic world.

    ``template`` renders one image description: a ``{class}`` slot and one ``{<kind>}`` slot per kind
    (``"a picture of a {color} {class} on {background}"``).
    """

    class_names: tuple[str, ...]
    attribute_values: Mapping[str, tuple[str, ...]]
    template: str

    def __post_init__(self) -> None:
        for slot in ("class", *self.attribute_values):
            if "{" + slot + "}" not in self.template:
                raise ValueError(f"vocabulary template {self.template!r} lacks the slot {{{slot}}}")
        for kind, values in self.attribute_values.items():
            if len(values) < 2:
                raise ValueError(f"attribute kind {kind!r} needs at least two values, got {list(values)}")

    def kind_of(self, word: str) -> str | None:
        key = singular(clean_phrase(word))
        for kind, values in self.attribute_values.items():
            if key in {singular(v) for v in values}:
                return kind
        return None

    def value_of(self, word: str, kind: str) -> str:
        key = singular(clean_phrase(word))
        return next(v for v in self.attribute_values[kind] if singular(v) == key)


@dataclass(frozen=True)
class VerifySettings:
    """How much to generate and how to decide; see ``reasoning.verify`` in params.yaml."""

    n_images: int = 32  # images per counterfactual prompt
    alpha: float = 0.05  # family-wise error rate per class (Holm)
    min_effect: float = 0.15  # smallest flip or drop effect (against every alternative) that counts as a shortcut
    min_recognition: float = 0.5  # a content counts when the classifier recognises it under some value this often
    veto_contradicted: bool = True  # an attribute the other test finds significantly AGAINST the class is not verified
    min_flip_classes: int = 2  # a flip passes when its effect shows in this many other classes' content (or all)
    visibility_control: bool = True  # a drop must exceed what the attribute does to every class's recognition
    min_drop_contexts: int = 2  # a drop passes when its effect shows in this many contexts of the class (or all)
    min_flip_contexts: int = 2  # a flip passes when its effect shows in this many contexts (or all)
    activation_images: int = 32  # images per prompt for activation scores and caption frames
    caption_frames: int = 4  # fresh-noise frames captioned per DEXTER run
    max_flip_classes: int = 8  # other classes whose images are used for the flip test
    max_alternatives: int = 4  # alternatives per attribute (real data)

    def __post_init__(self) -> None:
        for name in ("n_images", "activation_images", "max_flip_classes", "max_alternatives", "min_flip_classes",
                     "min_drop_contexts", "min_flip_contexts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.caption_frames < 0:
            raise ValueError("caption_frames must be >= 0")

    def test_kwargs(self) -> dict:
        """The settings :func:`dexter.verify.verify_class` takes: how much to generate and how to decide."""
        return {"n_images": self.n_images, "alpha": self.alpha, "min_effect": self.min_effect,
                "min_recognition": self.min_recognition, "veto_contradicted": self.veto_contradicted,
                "min_flip_classes": self.min_flip_classes, "visibility_control": self.visibility_control,
                "min_drop_contexts": self.min_drop_contexts, "min_flip_contexts": self.min_flip_contexts}


def candidate_attributes(keywords: Sequence[str], class_names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """DEXTER keywords worth testing (deduplicated, in order) and why the others are not tested.

    A class name (this class's or another's) is content, not an attribute; function words say nothing.
    """
    classes = set().union(*(class_name_forms(n) for n in class_names)) if class_names else set()
    stop = stopwords()
    out: list[str] = []
    skipped: dict[str, str] = {}
    for raw in keywords:
        word = clean_phrase(raw)
        if not word or word in out or word in skipped:
            continue
        if singular(word) in classes:
            skipped[word] = "a class name (content, not an attribute)"
        elif all(w in stop for w in words_of(word)):
            skipped[word] = "a function word"
        else:
            out.append(word)
    return out, skipped


def flip_class_subset(class_index: int, num_classes: int, limit: int) -> list[int]:
    """At most ``limit`` other classes, spread evenly over the class indices (deterministic)."""
    others = [k for k in range(num_classes) if k != class_index]
    if len(others) <= limit:
        return others
    picks = np.linspace(0, len(others) - 1, limit).round().astype(int)
    return [others[i] for i in dict.fromkeys(picks.tolist())]


def world_design(vocab: Vocabulary, class_index: int, word: str, flip_classes: Sequence[int]
                 ) -> AttributeDesign | str:
    """The design for ``word`` on a known world, or why it cannot be tested."""
    kind = vocab.kind_of(word)
    if kind is None:
        kinds = ", ".join(vocab.attribute_values)
        return f"not a value of any attribute kind of the world ({kinds})"
    value = vocab.value_of(word, kind)
    other_kinds = [k for k in vocab.attribute_values if k != kind]
    contexts = [dict(zip(other_kinds, combo)) for combo in product(*(vocab.attribute_values[k] for k in other_kinds))]
    return design_from_template(
        attribute=value, kind=kind, alternatives=[v for v in vocab.attribute_values[kind] if v != value],
        template=vocab.template, slot=kind, class_names=vocab.class_names, class_index=class_index,
        contexts=contexts, flip_classes=flip_classes,
    )


@dataclass
class ClassAudit:
    """What the auditor measured for one class (beyond the verification itself)."""

    frames: list[str] = field(default_factory=list)  # relative to the class's reasoning folder
    prompt_scores: list[ActivationScore] = field(default_factory=list)
    caption_scores: list[ActivationScore] = field(default_factory=list)
    verification: ClassVerification | None = None
    images_generated: int = 0
    seconds: float = 0.0


class Auditor:
    """Fresh-noise frames, activation scores and the counterfactual test of one class at a time."""

    def __init__(self, prober: Prober, class_names: Sequence[str], settings: VerifySettings = VerifySettings(),
                 vocabulary: Vocabulary | None = None) -> None:
        if vocabulary is not None and tuple(vocabulary.class_names) != tuple(class_names):
            raise ReasoningError(f"vocabulary classes {list(vocabulary.class_names)} differ from the classifier's "
                             f"{list(class_names)}")
        if prober.num_classes != len(class_names):
            raise ReasoningError(f"the prober's classifier has {prober.num_classes} classes, {len(class_names)} named")
        self.prober, self.class_names, self.settings, self.vocabulary = prober, list(class_names), settings, vocabulary

    # -- frames and activation scores ---------------------------------------------------------------------
    def fresh_frames(self, inputs: ClassInputs, out_dir: Path) -> tuple[list[str], list[ActivationScore]]:
        """Score each run's final prompt and save up to ``caption_frames`` of its images classified as the class."""
        from PIL import Image

        from common.io import atomic_writer

        c = self._class_index(inputs)
        frames_dir = Path(out_dir) / FRAMES_DIR
        if frames_dir.exists():
            shutil.rmtree(frames_dir)  # frames of an earlier run of this class are stale
        prompts = [r.prompt.strip() for r in inputs.meta.runs]
        scores = self.score_prompts([p for p in prompts if p], c)
        by_prompt = {s.prompt: s for s in scores}
        n = self.settings.activation_images
        outcomes = self.prober.outcomes(list(by_prompt), n) if by_prompt else {}
        frames = []
        for run, prompt in zip(inputs.meta.runs, prompts):
            if not prompt:
                continue
            hit_idx = np.flatnonzero(outcomes[prompt].labels == c)[: self.settings.caption_frames].tolist()
            for i, image in zip(hit_idx, self.prober.images(prompt, hit_idx)):
                rel = f"{FRAMES_DIR}/run_{run.run}_{i:03d}.png"
                buffer = io.BytesIO()
                Image.fromarray(image).save(buffer, format="PNG")
                with atomic_writer(Path(out_dir) / rel, "wb") as f:
                    f.write(buffer.getvalue())
                frames.append(rel)
        return frames, scores

    def score_prompts(self, prompts: Sequence[str], class_index: int) -> list[ActivationScore]:
        """Activation score (share of ``activation_images`` fresh images classified as the class) per prompt."""
        unique = list(dict.fromkeys(p for p in prompts if p.strip()))
        if not unique:
            return []
        n = self.settings.activation_images
        outcomes = self.prober.outcomes(unique, n)
        return [ActivationScore(p, class_index, n, outcomes[p].hits(class_index), outcomes[p].mean_prob(class_index))
                for p in unique]

    # -- the counterfactual test --------------------------------------------------------------------------
    def verify(self, inputs: ClassInputs, backend=None) -> ClassVerification:
        """Test every candidate keyword of the class; untestable ones are listed with the reason."""
        c = self._class_index(inputs)
        s = self.settings
        candidates, skipped = candidate_attributes(inputs.meta.keywords, self.class_names)
        flip = flip_class_subset(c, len(self.class_names), s.max_flip_classes)
        designs: list[AttributeDesign] = []
        for word in candidates:
            if self.vocabulary is not None:
                design = world_design(self.vocabulary, c, word, flip)
            elif backend is None or not hasattr(backend, "counterfactuals"):
                design = "no vocabulary and no reasoning backend to propose alternatives"
            else:
                design = self._backend_design(backend, c, word, flip)
            if isinstance(design, str):
                skipped[word] = design
            elif any(d.attribute == design.attribute for d in designs):
                skipped[word] = f"same attribute as {design.attribute!r}, tested once"
            else:
                designs.append(design)
        log.info("class %r: testing %s; not testing %s", inputs.class_name, [d.attribute for d in designs], skipped)
        return verify_class(self.prober, designs, c, inputs.class_name, skipped=skipped, **s.test_kwargs())

    def _backend_design(self, backend, class_index: int, word: str, flip: Sequence[int]) -> AttributeDesign | str:
        proposal = backend.counterfactuals(self.class_names[class_index], word, self.class_names)
        if isinstance(proposal, str):
            return proposal
        alternatives = [a for a in proposal.alternatives if a != proposal.value][: self.settings.max_alternatives]
        try:
            return design_from_template(
                attribute=proposal.value, kind=proposal.kind, alternatives=alternatives,
                template=proposal.template, slot="value", class_names=self.class_names, class_index=class_index,
                flip_classes=flip,
            )
        except ValueError as e:
            return f"the proposed counterfactual prompts are unusable: {e}"

    def _class_index(self, inputs: ClassInputs) -> int:
        c = inputs.meta.class_index
        if not 0 <= c < len(self.class_names):
            raise ReasoningError(f"class index {c} out of range for {len(self.class_names)} classes")
        if singular(clean_phrase(self.class_names[c])) not in class_name_forms(inputs.class_name):
            raise ReasoningError(f"{inputs.class_dir}: class {c} is {inputs.class_name!r} there but "
                             f"{self.class_names[c]!r} for the classifier")
        return c


def activation_lines(scores: Sequence[ActivationScore], class_name: str) -> str:
    """``as_dexter_prompts.txt`` / ``as_captions.txt``: one prompt per line with its activation score."""
    lines = [f"# activation score: % of N fresh-noise images classified as {class_name!r}; mean probability; N; prompt"]
    lines += [f"{s.score:.1f}\t{s.mean_prob:.3f}\t{s.n}\t{s.prompt}" for s in scores]
    return "\n".join(lines) + "\n"


__all__ = ["Auditor", "ClassAudit", "FRAMES_DIR", "Vocabulary", "VerifySettings", "activation_lines",
           "candidate_attributes", "flip_class_subset", "world_design"]
