"""B2T-style keywords (Kim et al., "Discovering and Mitigating Visual Biases through Keyword Explanation",
CVPR 2024): the data-using peer of DEXTER. docs/METHOD.md section 9.5.

1. The audited ERM model classifies the VALIDATION images; the ones it gets wrong are captioned (offline:
   CLIP retrieval over the reasoning stage's phrase bank; with an endpoint: its VLM, through the same
   reasoning backend).
2. Candidate keywords: the words of those captions, without function words and class names.
3. B2T's CLIP score of keyword k for class y: mean cosine similarity of k's CLIP text embedding with the
   mispredicted images of y minus that with the correctly predicted images of y. The ``top_k`` highest
   positive keywords describe what the mistakes have and the successes lack: the attribute the model ties
   to the class it predicted instead (the majority prediction among y's mistakes), so they become that
   class's attributes; the ``top_k`` most negative ones describe what y's successes have: y's own
   shortcut. (Candidates also come from captions of as many correctly predicted images, so that the
   successes' attribute can be named; B2T's score already compares the two sets.) The attributes then go
   through the same labelling and group DRO as DEXTER's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

_log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z][a-z'-]*")


def words_of(text: str) -> list[str]:
    """Lower-case word tokens (the reasoning stage's caption tokens)."""
    return _WORD.findall(text.lower())


FUNCTION_WORDS = frozenset(
    "a an the of on in at with and or to by for from is are this that it its photo picture image shows showing "
    "there some his her their over under near into onto".split())


def candidate_keywords(captions: Sequence[str], class_names: Sequence[str]) -> list[str]:
    """Distinct caption words in first-seen order, minus function words and every class name's words."""
    banned = set(FUNCTION_WORDS) | {w for name in class_names for w in words_of(name)}
    out: dict[str, None] = {}
    for c in captions:
        for w in words_of(c or ""):
            if w not in banned and len(w) > 1:
                out.setdefault(w, None)
    return list(out)


def clip_scores(keyword_emb: torch.Tensor, wrong_emb: torch.Tensor, right_emb: torch.Tensor) -> np.ndarray:
    """B2T's score per keyword: mean similarity with the mistakes minus mean similarity with the successes."""
    if len(wrong_emb) == 0:
        raise ValueError("B2T needs at least one mispredicted image")
    right = (right_emb @ keyword_emb.T).mean(0) if len(right_emb) else torch.zeros(len(keyword_emb))
    return ((wrong_emb @ keyword_emb.T).mean(0) - right).numpy()


def b2t_keywords(
    pred: np.ndarray,
    y: np.ndarray,
    image_emb: torch.Tensor,
    class_names: Sequence[str],
    caption: Callable[[int, list[int]], list[str]],
    encode_text: Callable[[list[str]], torch.Tensor],
    *,
    top_k: int = 1,
    max_images: int = 64,
    seed: int = 0,
    log: Callable[[str], None] = _log.info,
) -> tuple[list[list[str]], dict]:
    """Per class the B2T attributes (possibly empty) and a record of the evidence.

    ``caption(y, indices)`` captions the validation images ``indices`` of true class ``y``; ``image_emb``:
    the labelling CLIP's image embeddings of the validation images (normalised)."""
    pred, y = np.asarray(pred), np.asarray(y)
    attributes: list[list[str]] = [[] for _ in class_names]
    record: dict = {"per_class": {}}
    rng = np.random.default_rng([seed, 0xB27])
    for c, name in enumerate(class_names):
        wrong = np.flatnonzero((y == c) & (pred != c))
        right = np.flatnonzero((y == c) & (pred == c))
        if len(wrong) == 0:
            record["per_class"][name] = {"mistakes": 0}
            continue
        shown = np.sort(rng.choice(wrong, min(max_images, len(wrong)), replace=False))
        shown_right = np.sort(rng.choice(right, min(max_images, len(right)), replace=False))
        captions = caption(c, [int(i) for i in shown])
        right_captions = caption(c, [int(i) for i in shown_right]) if len(shown_right) else []
        words = candidate_keywords([*captions, *right_captions], class_names)
        predicted_as = int(np.bincount(pred[wrong], minlength=len(class_names)).argmax())
        entry = {"mistakes": int(len(wrong)), "captioned": int(len(shown)), "captioned_correct": int(len(shown_right)),
                 "predicted_as": class_names[predicted_as], "captions": list(captions)}
        if words:
            scores = clip_scores(encode_text(words), image_emb[torch.from_numpy(wrong)],
                                 image_emb[torch.from_numpy(right)])
            order = np.argsort(-scores, kind="stable")
            of_mistakes = [words[i] for i in order[:top_k] if scores[i] > 0]
            of_successes = [words[i] for i in order[::-1][:top_k] if scores[i] < 0] if len(right) else []
            entry["scores"] = {words[i]: float(scores[i]) for i in order}
            entry["keywords"] = {class_names[predicted_as]: of_mistakes, name: of_successes}
            for cls, chosen in ((predicted_as, of_mistakes), (c, of_successes)):
                attributes[cls] += [k for k in chosen if k not in attributes[cls]]
            log(f"b2t: {len(wrong)} {name} images mispredicted (mostly as {class_names[predicted_as]}); keywords of the "
                f"mistakes {of_mistakes} -> {class_names[predicted_as]}, of the successes {of_successes} -> {name}")
        record["per_class"][name] = entry
    record["attributes"] = {name: list(a) for name, a in zip(class_names, attributes)}
    return attributes, record


def save_pngs(dataset, indices: Sequence[int], folder: Path) -> list[Path]:
    """The images as PNG files (the captioning backends read paths)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in indices:
        path = folder / f"{dataset.split}_{i:06d}.png"
        if not path.exists():
            dataset.image(i).convert("RGB").save(path)
        out.append(path)
    return out
