"""Auxiliary mask pseudo-labels (docs/METHOD.md 1.4): the rule that makes the soft prompt learn at all.

Each mask i keeps a pseudo-label y_i (a BERT token id or None) and, per word it has predicted, the history
of its aggregated loss L_agg,i. The reference loss L_i is the MEAN of the current label's own history (+inf
while there is no label), and it is kept current: when the label word is predicted again its history
grows and L_i moves with it, up as well as down. Every step, for the predicted word w of mask i (if w
passes the filters): append L_agg,i to w's history; if w is not the label and the mean of w's history is
below L_i, then y_i = w (and L_i becomes that mean).

Why the mean of the label's own, growing history: a word chosen on one lucky image must lose its place once
it does badly. With a reference that only ever decreases (a running minimum), the first lucky word would
be locked in for good: a word seen once at 0.1 would beat a word averaging 2.0 forever, even after three
more images of its own at 9.0. The mean over a word's history (not its latest value) is also the outlier
guard in the other direction: one lucky image does not make a challenger the label.

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
    history: dict[int, tuple[float, int]] = field(default_factory=dict)

    def mean(self, word: int) -> float:
        total, count = self.history[word]
        return total / count

    @property
    def reference(self) -> float:
        """L_i: the mean of the label's own history, +inf while there is no label (derived, so always current)."""
        return math.inf if self.label is None else self.mean(self.label)


def new_slots(num_masks: int) -> list[MaskSlot]:
    return [MaskSlot() for _ in range(num_masks)]


def update_slots(slots: Sequence[MaskSlot], predicted: Sequence[int], losses: Sequence[float],
                 allowed: Collection[int] | None = None, blocked: Collection[int] = ()) -> list[bool]:
    """Apply one step's predictions and aggregated losses to every mask, in place. Returns which labels changed.

    A predicted word is considered only if it is in ``allowed`` (None = any) and not in ``blocked`` (the
    filters: sub-word pieces, special tokens, punctuation, words with no CLIP whole-word token, words of
    earlier runs). A skipped word leaves no history.
    """
    if not len(slots) == len(predicted) == len(losses):
        raise ValueError(f"{len(slots)} masks, {len(predicted)} predictions, {len(losses)} losses")
    changed = []
    for slot, word, loss in zip(slots, predicted, losses):
        word, loss = int(word), float(loss)
        if (allowed is not None and word not in allowed) or word in blocked or not math.isfinite(loss):
            changed.append(False)
            continue
        # The reference is read BEFORE w's new loss is recorded: a challenger is compared with the label's
        # history as it stood; when w is the label itself, recording the loss simply moves L_i.
        reference = slot.reference
        total, count = slot.history.get(word, (0.0, 0))
        slot.history[word] = (total + loss, count + 1)
        if word != slot.label and slot.mean(word) < reference:
            slot.label = word
            changed.append(True)
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
