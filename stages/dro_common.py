"""Shared glue of the dro stages (train_erm, label, retrain): paths, params -> explicit settings."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path

from stages.common import METRICS_DIR, OUTPUTS_DIR, PREPARED_DIR, RESULTS_DIR, StageInputError
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
           "CACHE", "ERM_METRICS", "LABELLING_METRICS", "log", "model_spec", "full_train_config",
           "last_layer_train_config", "input_errors"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextmanager
def input_errors():
    """The dro library's input errors (missing CLIP, unknown arch, missing attributes) as one-line stage errors."""
    from dro.models import ModelError
    from dro.slices import LabellingError

    try:
        yield
    except (ModelError, LabellingError) as e:
        raise StageInputError(str(e)) from e


def model_spec(params: Params):
    from dro.pipeline import ModelSpec

    t, c = params.train, params.classifier
    if c.imported:  # the audited classifier was imported into outputs/erm: retraining starts from it
        return ModelSpec(arch=f"imported:{c.source}:{c.name}", image_size=c.image_size or t.image_size,
                         num_workers=t.num_workers, init=str(ERM_DIR))
    return ModelSpec(arch=t.arch, image_size=t.image_size, pretrained=t.pretrained, num_workers=t.num_workers)


def full_train_config(params: Params, seed: int, *, erm: bool = False):
    """Settings for training a whole classifier (``erm``: the audited model, ``erm_epochs`` if set)."""
    from dro.train import TrainConfig

    t, d = params.train, params.dro
    epochs = (t.erm_epochs or t.epochs) if erm else t.epochs
    return TrainConfig(
        method="erm", epochs=epochs, batch_size=t.batch_size, lr=t.lr, seed=seed, optimizer=t.optimizer,
        momentum=t.momentum, weight_decay=t.weight_decay, eta=d.eta, adjustment=d.adjustment,
        normalize_loss=d.normalize_loss, balanced_sampling=d.balanced_sampling, eval_batch_size=d.eval_batch_size,
    )


def last_layer_train_config(params: Params, seed: int):
    from dro.train import TrainConfig

    d, ll = params.dro, params.dro.last_layer
    return TrainConfig(
        method="erm", epochs=ll.epochs, batch_size=ll.batch_size, lr=ll.lr, seed=seed, optimizer=ll.optimizer,
        momentum=ll.momentum, weight_decay=ll.weight_decay, eta=d.eta, adjustment=d.adjustment,
        normalize_loss=d.normalize_loss, balanced_sampling=d.balanced_sampling, eval_batch_size=d.eval_batch_size,
    )
