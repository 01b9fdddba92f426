"""Group DRO on the last layer only, over cached penultimate features (``dro.mode: last_layer``).

For large datasets full retraining takes hours; a frozen backbone (the audited ERM model's) and a
retrained linear head take minutes (the idea of DFR, Kirichenko et al. 2023). Features are computed
once per (backbone weights, split) and cached as safetensors; the head is trained by the same
trainer as full models (``dro.train.train``) on a ``TensorSource`` of features.
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common.classifier import Classifier
from dro.sources import InputSource, TensorSource

_log = logging.getLogger(__name__)


def _weights_key(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def compute_features(model: Classifier, source: InputSource, device: torch.device | str,
                     batch_size: int = 256) -> torch.Tensor:
    """Penultimate features (N x D, float32, CPU) of every input, backbone in eval mode."""
    was_training = model.training
    model.eval().to(device)
    out = torch.empty(len(source), model.feature_dim)
    for idx, x in source.iterate(np.arange(len(source)), batch_size, device):
        out[torch.from_numpy(idx)] = model.features(x).float().cpu()
    model.train(was_training)
    return out


def feature_source(model: Classifier, source: InputSource, cache_dir: Path | str, name: str,
                   device: torch.device | str = "cpu", batch_size: int = 256,
                   log: Callable[[str], None] = _log.info) -> TensorSource:
    """Features of ``source`` under ``model``'s backbone, cached by (weights, inputs)."""
    from safetensors.torch import load_file, save

    from common.io import atomic_writer

    key = hashlib.sha256(f"{_weights_key(model)}|{source.fingerprint()}".encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{name}-{key}.safetensors"
    if path.exists():
        feats = load_file(path)["features"]
        if len(feats) == len(source):
            log(f"features from cache {path}")
            return TensorSource(feats)
    log(f"computing {name} features for {len(source)} inputs")
    feats = compute_features(model, source, device, batch_size)
    with atomic_writer(path, "wb") as f:
        f.write(save({"features": feats.contiguous()}))
    return TensorSource(feats)


def new_head(model: Classifier, seed: int) -> nn.Linear:
    """A freshly initialised head (seeded), same shape as the model's."""
    torch.manual_seed(seed)
    return nn.Linear(model.feature_dim, len(model.class_names))


def with_head(model: Classifier, head: nn.Linear) -> Classifier:
    """A copy of ``model`` whose head is ``head`` (the backbone is shared by value, not modified)."""
    out = copy.deepcopy(model)
    out.head.load_state_dict(head.state_dict())
    return out
