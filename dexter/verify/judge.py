"""An independent judge of generated images: does the image show what its prompt asked for?

Why: a counterfactual comparison measures the CLASSIFIER only if both sides show what their prompts say.
A generator that draws "a red circle" less well than "a yellow circle" makes the classifier recognise red
circles less often, and the drop test then reports "yellow" as a shortcut of circle although the classifier
never looked at colour (measured on the small world: +0.34 for yellow, with colour independent of class).
The judge removes that confound: every generated image is embedded once by a CLIP model that is not the
audited classifier, and an image counts in a comparison only when CLIP's zero-shot choice agrees with each
claim of its prompt (the content class among the class names; the tested value among the attribute and its
alternatives). What is left compares images that do show the attribute and the content, so a difference in
the classifier's answers is the classifier's.

Embeddings, not verdicts, are stored per image, so claims can be checked for any prompt later (a prompt
generated for activation scores may be tested again as a counterfactual) without keeping the images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

# images (N, 3, H, W) in [0, 1] -> unit-norm embeddings (N, D); texts -> unit-norm embeddings (M, D)
EmbedImages = Callable[[torch.Tensor], np.ndarray]
EmbedTexts = Callable[[Sequence[str]], np.ndarray]


@dataclass(frozen=True)
class Claim:
    """The prompt says ``value``, one of ``candidates`` (say "water" of water, land, snow, sand)."""

    value: str
    candidates: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.value not in self.candidates:
            raise ValueError(f"claim {self.value!r} is not among its candidates {list(self.candidates)}")
        if len(self.candidates) < 2:
            raise ValueError(f"claim {self.value!r}: a zero-shot choice needs at least 2 candidates")


class ZeroShotJudge:
    """CLIP zero-shot agreement with claims; text embeddings of each candidate are computed once.

    ``template`` turns a word into the text CLIP compares with ("a picture of a {}." is what the world's
    CLIP was trained on; real CLIP models read "a photo of a {}." well).
    """

    def __init__(self, embed_images: EmbedImages, embed_texts: EmbedTexts, template: str = "a photo of a {}.") -> None:
        if "{}" not in template:
            raise ValueError(f"judge template {template!r} lacks the {{}} slot for the word")
        self.embed_images, self._embed_texts, self.template = embed_images, embed_texts, template
        self._text: dict[str, np.ndarray] = {}

    def text(self, words: Sequence[str]) -> np.ndarray:
        missing = [w for w in dict.fromkeys(words) if w not in self._text]
        if missing:
            for w, e in zip(missing, self._embed_texts([self.template.format(w) for w in missing])):
                self._text[w] = np.asarray(e, dtype=np.float32)
        return np.stack([self._text[w] for w in words])

    def agrees(self, embeddings: np.ndarray, claims: Sequence[Claim]) -> np.ndarray:
        """(N,) True where the zero-shot choice matches every claim (all True for no claims)."""
        embeddings = np.asarray(embeddings, dtype=np.float32)
        ok = np.ones(len(embeddings), dtype=bool)
        for claim in claims:
            choice = (embeddings @ self.text(claim.candidates).T).argmax(1)
            ok &= choice == claim.candidates.index(claim.value)
        return ok


__all__ = ["Claim", "EmbedImages", "EmbedTexts", "ZeroShotJudge"]
