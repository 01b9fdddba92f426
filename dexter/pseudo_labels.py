"""Auxiliary mask pseudo-labels (METHOD.md 1.4): the rule that makes the soft prompt learn at all.

Each mask i keeps a pseudo-label y_i (a BERT token id or None), a reference loss L_i (+inf at the start)
and, per word it has predicted, the history of its aggregated loss L_agg,i. Every step, for the predicted
word w of mask i (if w passes the filters): append L_agg,i to w's history; if the MEAN of w's history is
below L_i, then y_i = w and L_i = that mean. The mean, not the latest value, is the outlier guard: one
lucky image does not make a word the label.

Pure functions on plain numbers: no tensors, no models.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field


@dataclass
class MaskSlot:
    """One mask's pseudo-label state. ``history`` maps a word id to (sum, count) of its aggregated losses."""

    label: int | None = None
    reference: float = math.inf
    history: dict[int, tuple[float, int]] = field(default_factory=dict)

    def mean(self, word: int) -> float:
        total, count = self.history[word]
        return total / count


def new_slots(num_masks: int) -> list[MaskSlot]:
    return [MaskSlot() for _ in range(num_masks)]


def update_slots(slots: Sequence[MaskSlot], predicted: Sequence[int], losses: Sequence[float],
                 allowed: Collection[int] | None = None, blocked: Collection[int] = ()) -> list[bool]:
    """Apply one step's predictions and aggregated losses to every mask, in place. Returns which labels changed.

    A predicted word is considered only if it is in ``allowed`` (None = any) and not in ``blocked`` (the
    filters: sub-word pieces, special tokens, punctuation, words of earlier runs). A skipped word leaves
    no history.
    """
    if not len(slots) == len(predicted) == len(losses):
        raise ValueError(f"{len(slots)} masks, {len(predicted)} predictions, {len(losses)} losses")
    changed = []
    for slot, word, loss in zip(slots, predicted, losses):
        word, loss = int(word), float(loss)
        if (allowed is not None and word not in allowed) or word in blocked or not math.isfinite(loss):
            changed.append(False)
            continue
        total, count = slot.history.get(word, (0.0, 0))
        slot.history[word] = (total + loss, count + 1)
        mean = slot.mean(word)
        if mean < slot.reference:
            changed.append(slot.label != word)
            slot.label, slot.reference = word, mean
        else:
            changed.append(False)
    return changed


def is_punctuation(token: str) -> bool:
    """True when no character is a letter or a digit ('.', ',', '...', '"')."""
    return bool(token) and not any(unicodedata.category(ch)[0] in "LN" for ch in token)


def candidate_filter(tokens: Sequence[str], special: Collection[str] = ()) -> list[bool]:
    """Which token ids may become pseudo-labels: not ``##`` pieces, not special ([CLS], [unused0], ...), not punctuation."""
    special = set(special)
    out = []
    for tok in tokens:
        bad = (
            tok is None
            or tok.startswith("##")
            or tok in special
            or (tok.startswith("[") and tok.endswith("]"))
            or (tok.startswith("<") and tok.endswith(">"))
            or is_punctuation(tok)
        )
        out.append(not bad)
    return out


__all__ = ["MaskSlot", "candidate_filter", "is_punctuation", "new_slots", "update_slots"]
