"""How good pseudo-group labels are where true groups exist (the synthetic world, Waterbirds, CelebA).

A class's bias-ALIGNED attribute values are decided by lift in TRAIN (``P(a | y) > P(a)``), not by the
class's majority value; the bias-conflicting slice's F1 is reported pooled over all images (as B2T reports
it) and per class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def aligned_values_by_lift(train_y: np.ndarray, train_a: np.ndarray, num_classes: int,
                           num_values: int) -> tuple[tuple[int, ...], ...]:
    """Per class, the attribute values that are bias-ALIGNED: over-represented in the class in TRAIN,
    ``P(a | y) > P(a)`` (lift above 1). Unlike the class's most frequent value, this names CelebA's
    non-blond class aligned with "male" (male is more common among non-blond than overall), not with
    "female" (the majority value of every class)."""
    known = train_a >= 0
    y, a = train_y[known], train_a[known]
    base = np.bincount(a, minlength=num_values) / max(len(a), 1)
    out = []
    for c in range(num_classes):
        in_class = a[y == c]
        if not len(in_class):
            out.append(())
            continue
        cond = np.bincount(in_class, minlength=num_values) / len(in_class)
        out.append(tuple(int(v) for v in np.flatnonzero(cond > base + 1e-12)))
    return tuple(out)


def true_conflicting(y: np.ndarray, a: np.ndarray, aligned: Sequence[Sequence[int]]) -> np.ndarray:
    """True bias-conflicting membership: attribute known, and not one of the class's aligned values. A
    class with no aligned value (attribute independent of it) has no conflicting image."""
    y, a = np.asarray(y), np.asarray(a)
    out = np.zeros(len(y), dtype=bool)
    for c, values in enumerate(aligned):
        m = (y == c) & (a >= 0)
        if values:
            out[m] = ~np.isin(a[m], list(values))
    return out


def labelling_quality(pred_conflicting: np.ndarray, true_conflict: np.ndarray, y: np.ndarray,
                      known: np.ndarray, class_names: Sequence[str]) -> dict:
    """Accuracy of aligned/conflicting, the F1 of the bias-conflicting slice pooled over all images (as
    B2T reports it) and per class (images with a known attribute only)."""
    from sklearn.metrics import f1_score, precision_score, recall_score

    known = np.asarray(known, dtype=bool)
    p, t, yk = pred_conflicting[known], true_conflict[known], y[known]
    out: dict = {"num_images": int(known.sum()), "accuracy": float((p == t).mean()) if len(p) else None,
                 "f1_conflicting_pooled": float(f1_score(t, p, zero_division=0)) if len(p) else None,
                 "per_class": {}}
    for c, name in enumerate(class_names):
        m = yk == c
        out["per_class"][name] = {
            "f1_conflicting": float(f1_score(t[m], p[m], zero_division=0)) if m.any() else None,
            "precision_conflicting": float(precision_score(t[m], p[m], zero_division=0)) if m.any() else None,
            "recall_conflicting": float(recall_score(t[m], p[m], zero_division=0)) if m.any() else None,
            "true_conflicting": int(t[m].sum()), "pred_conflicting": int(p[m].sum()),
        }
    return out
