"""Shared glue of the dro stages (train_erm, label, retrain): paths, params -> explicit settings."""

from __future__ import annotations

from stages.common import METRICS_DIR, OUTPUTS_DIR, PREPARED_DIR, RESULTS_DIR
from stages.params import Params

ERM_DIR = OUTPUTS_DIR / "erm"
REASONING_DIR = OUTPUTS_DIR / "reasoning"
LABELS_DIR = OUTPUTS_DIR / "labels"
RETRAIN_DIR = OUTPUTS_DIR / "retrain"
CHECKPOINTS = OUTPUTS_DIR / "checkpoints"  # not a DVC output: survives a rerun so training resumes
CACHE = OUTPUTS_DIR / "cache"  # CLIP image embeddings, penultimate features (keyed, never stale)
ERM_METRICS = METRICS_DIR / "erm.json"
LABELLING_METRICS = METRICS_DIR / "labelling.json"

__all__ = ["PREPARED_DIR", "RESULTS_DIR", "ERM_DIR", "REASONING_DIR", "LABELS_DIR", "RETRAIN_DIR", "CHECKPOINTS",
           "CACHE", "ERM_METRICS", "LABELLING_METRICS", "model_spec", "full_train_config",
           "last_layer_train_config"]


def model_spec(params: Params):
    from dro.pipeline import ModelSpec

    t, c = params.train, params.classifier
    if c.imported:  # the audited classifier was imported into outputs/erm: retraining starts from it
        return ModelSpec(arch=f"imported:{c.source}:{c.name}", image_size=c.image_size or t.image_size,
                         num_workers=t.num_workers, init=str(ERM_DIR))
    return ModelSpec(arch=t.arch, image_size=t.image_size, pretrained=t.pretrained, num_workers=t.num_workers)


def full_train_config(params: Params, seed: int, *, erm: bool = False):
    """Settings for training a whole classifier (``erm``: the audited model, ``erm_epochs`` if set). The
    audited ERM model reads the dataset's ``train`` section only: no ``dro.*`` setting reaches it."""
    from dro.config import train_config

    t = params.train
    if erm:
        return train_config(t, method="erm", epochs=t.erm_epochs or t.epochs, seed=seed)
    return train_config(t, params.dro, method="erm", seed=seed)


def last_layer_train_config(params: Params, seed: int):
    from dro.config import train_config

    return train_config(params.dro, params.dro.last_layer, method="erm", seed=seed)
