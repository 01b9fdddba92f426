"""Deep Feature Reweighting (Kirichenko et al., ICLR 2023): retrain only the last layer of the ERM model.

docs/METHOD.md section 9.3. The ERM backbone is frozen; its penultimate features of the VALIDATION set
are split into two halves, each group halved (seeded). On half A, ``n_fits`` group-balanced subsets
(every visible group subsampled to the size of the smallest) each fit an L1-regularised logistic
regression on standardised features (scikit-learn ``liblinear``, as the DFR code); the coefficients are
averaged. The inverse regularisation strength C is chosen from ``c_grid`` by the worst-group accuracy
of half B over the same visible groups (true groups for ``dfr_oracle``, DEXTER's pseudo-groups for
``dfr_dexter``: then no true group label is used at all). The head keeps the half-A fit of the chosen C
(the published code refits on all validation data; we keep B held out so selection stays honest).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dro.evaluate import group_accuracies, worst_group_accuracy

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DfrSettings:
    c_grid: tuple[float, ...] = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)
    n_fits: int = 10


def split_halves(groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of two halves of a split, each group halved (A gets the extra sample of an odd group)."""
    rng = np.random.default_rng([seed, 0xDF2])
    a, b = [], []
    for g in np.unique(groups):
        idx = rng.permutation(np.flatnonzero(groups == g))
        k = (len(idx) + 1) // 2
        a.append(idx[:k])
        b.append(idx[k:])
    return np.sort(np.concatenate(a)), np.sort(np.concatenate(b))


def balanced_subset(groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Positions (into ``groups``) of a subset with every present group at the smallest group's size."""
    present = np.unique(groups)
    m = min(int((groups == g).sum()) for g in present)
    return np.sort(np.concatenate([rng.choice(np.flatnonzero(groups == g), m, replace=False) for g in present]))


def _fit_average(x: np.ndarray, y: np.ndarray, groups: np.ndarray, c: float, n_fits: int, seed: int,
                 num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Averaged (W, b) of ``n_fits`` L1 logistic regressions on balanced subsets; W is K x D logits."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng([seed, 0xDF2, 1])
    ws, bs = [], []
    for _ in range(n_fits):
        sub = balanced_subset(groups, rng)
        if len(np.unique(y[sub])) != num_classes:
            raise ValueError(f"DFR: a balanced subset lacks a class ({len(np.unique(y[sub]))} of {num_classes}): "
                             "the visible groups must cover every class")
        w, b = np.zeros((num_classes, x.shape[1])), np.zeros(num_classes)
        state = int(rng.integers(2**31))
        if num_classes == 2:  # sklearn's binary form: the logit of class 1 against class 0
            clf = LogisticRegression(l1_ratio=1.0, C=c, solver="liblinear", random_state=state)
            clf.fit(x[sub], y[sub])
            w[1], b[1] = clf.coef_[0], clf.intercept_[0]
        else:  # one-vs-rest, one L1 fit per class (liblinear no longer does it itself: scikit-learn >= 1.8
            for k in range(num_classes):  # refuses 3+ classes)
                clf = LogisticRegression(l1_ratio=1.0, C=c, solver="liblinear", random_state=state)
                clf.fit(x[sub], (y[sub] == k).astype(int))
                w[k], b[k] = clf.coef_[0], clf.intercept_[0]
        ws.append(w)
        bs.append(b)
    return np.mean(ws, 0), np.mean(bs, 0)


def fit_dfr_head(features: torch.Tensor, y: np.ndarray, groups: np.ndarray, num_groups: int, num_classes: int,
                 seed: int, settings: DfrSettings = DfrSettings(),
                 log: Callable[[str], None] = _log.info) -> tuple[nn.Linear, dict]:
    """A new head (``nn.Linear`` over raw features, standardisation folded in) and a record of the fit:
    the halves' sizes, the worst-group accuracy of half B for every C, the chosen C."""
    if len(features) != len(y) or len(y) != len(groups):
        raise ValueError("DFR: features, labels and groups differ in length")
    if (np.asarray(groups) < 0).any():
        raise ValueError("DFR needs a visible group for every validation image")
    x = features.double().numpy()
    half_a, half_b = split_halves(groups, seed)
    mu, sd = x[half_a].mean(0), x[half_a].std(0) + 1e-8
    z = (x - mu) / sd
    scores, fits = [], []
    for c in settings.c_grid:
        w, b = _fit_average(z[half_a], y[half_a], groups[half_a], c, settings.n_fits, seed, num_classes)
        pred = (z[half_b] @ w.T + b).argmax(1)
        acc = group_accuracies(pred, y[half_b], groups[half_b], num_groups)
        scores.append(worst_group_accuracy(acc))
        fits.append((w, b))
    best = int(np.argmax(scores))  # ties: the first (weakest regularisation) C
    w, b = fits[best]
    head = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(w / sd).float())
        head.bias.copy_(torch.from_numpy(b - (w / sd) @ mu).float())
    log(f"DFR: C {settings.c_grid[best]} (half-B worst-group {scores[best]:.3f}; "
        f"grid {dict(zip(settings.c_grid, (round(s, 3) for s in scores)))})")
    record = {"half_a": int(len(half_a)), "half_b": int(len(half_b)), "c": settings.c_grid[best],
              "selection_score": scores[best], "grid": [{"c": c, "val_worst_group": s}
                                                         for c, s in zip(settings.c_grid, scores)]}
    return head, record
