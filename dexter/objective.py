"""The activation objective (docs/METHOD.md 1.3): pure functions on logits and features.

Per image: ``l_act(class neuron) = -log softmax(logits)[c]`` and ``l_act(feature neuron j) = -features[j]``.
Single-word mode uses the class neuron; multi-word mode the class neuron plus the feature neurons, summed
(L_act = sum_k l_act(n_k)). The neuron losses are returned separately because the mask pseudo-labels
(docs/METHOD.md 1.4) aggregate them per mask: :func:`mask_reference_neurons` says which neurons each mask owns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NeuronLosses:
    """Per-image neuron losses: ``class_loss`` (N,) and ``feature_losses`` (N, k), k may be 0."""

    class_loss: torch.Tensor
    feature_losses: torch.Tensor

    def per_neuron(self) -> torch.Tensor:
        """(N, 1 + k): column 0 the class neuron, then the feature neurons in order."""
        return torch.cat([self.class_loss.unsqueeze(1), self.feature_losses], dim=1)


def neuron_losses(logits: torch.Tensor, features: torch.Tensor, class_index: torch.Tensor,
                  feature_ids: torch.Tensor) -> NeuronLosses:
    """``class_index`` (N,) and ``feature_ids`` (N, k) per image (different images may target different classes)."""
    logits, features = logits.float(), features.float()
    class_loss = -torch.log_softmax(logits, dim=-1).gather(1, class_index.view(-1, 1)).squeeze(1)
    if feature_ids.numel():
        feature_losses = -features.gather(1, feature_ids)
    else:
        feature_losses = features.new_zeros(features.shape[0], 0)
    return NeuronLosses(class_loss, feature_losses)


def activation_loss(losses: NeuronLosses, mode: str) -> torch.Tensor:
    """Per image: single -> class loss; multi -> class loss + sum of the feature losses."""
    if mode == "single":
        return losses.class_loss
    if mode == "multi":
        return losses.class_loss + losses.feature_losses.sum(dim=1)
    raise ValueError(f"mode must be 'single' or 'multi', got {mode!r}")


def mask_reference_neurons(mode: str, num_masks: int, num_features: int) -> list[list[int]]:
    """Columns of :meth:`NeuronLosses.per_neuron` each mask aggregates (N_i of docs/METHOD.md 1.4).

    Single: every mask <-> the class neuron. Multi: mask 1 <-> the class neuron, masks 2.. <-> feature
    neuron 1, 2, ... one each (a mask with no feature neuron left falls back to the class neuron).
    """
    if mode == "single":
        return [[0] for _ in range(num_masks)]
    if mode == "multi":
        return [[0]] + [[1 + i] if i < num_features else [0] for i in range(num_masks - 1)]
    raise ValueError(f"mode must be 'single' or 'multi', got {mode!r}")


def aggregated_mask_losses(per_neuron: torch.Tensor, reference: list[list[int]]) -> torch.Tensor:
    """L_agg,i = sum_{j in N_i} l_act(n_j), per image: (N, 1 + k) -> (N, M)."""
    return torch.stack([per_neuron[:, cols].sum(dim=1) for cols in reference], dim=1)


def mask_label_loss(mask_logits: torch.Tensor, labels: list[int | None]) -> torch.Tensor:
    """Sum over masks with a pseudo-label of -log softmax(BERT logits_i)[y_i]; 0 when no mask has one yet."""
    terms = [
        -torch.log_softmax(mask_logits[i].float(), dim=-1)[y] for i, y in enumerate(labels) if y is not None
    ]
    return torch.stack(terms).sum() if terms else mask_logits.new_zeros((), dtype=torch.float32)


__all__ = [
    "NeuronLosses",
    "activation_loss",
    "aggregated_mask_losses",
    "mask_label_loss",
    "mask_reference_neurons",
    "neuron_losses",
]
