"""Shared glue of the dro stages: paths, params -> explicit training settings, logging."""

from __future__ import annotations

import sys
from pathlib import Path

from dro.pipeline import ModelSpec
from dro.train import TrainConfig
from stages.params import Params

PREPARED = Path("data/prepared")
ERM_DIR = Path("outputs/erm")
REASONING_DIR = Path("outputs/reasoning")
LABELS_DIR = Path("outputs/labels")
RETRAIN_DIR = Path("outputs/retrain")
CHECKPOINTS = Path("outputs/checkpoints")  # not a DVC output: survives a rerun so training resumes
CACHE = Path("outputs/cache")  # CLIP image embeddings, penultimate features
RESULTS = Path("results")
LABELLING_QUALITY = RESULTS / "labelling_quality.json"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def model_spec(params: Params) -> ModelSpec:
    t = params.train
    return ModelSpec(arch=t.arch, image_size=t.image_size, pretrained=t.pretrained, num_workers=t.num_workers)


def full_train_config(params: Params, seed: int, *, erm: bool = False) -> TrainConfig:
    """Settings for training a whole classifier (``erm``: the audited model, ``erm_epochs`` if set)."""
    t, d = params.train, params.dro
    epochs = (t.erm_epochs or t.epochs) if erm else t.epochs
    return TrainConfig(
        method="erm", epochs=epochs, batch_size=t.batch_size, lr=t.lr, seed=seed, optimizer=t.optimizer,
        momentum=t.momentum, weight_decay=t.weight_decay, eta=d.eta, adjustment=d.adjustment,
        normalize_loss=d.normalize_loss, balanced_sampling=d.balanced_sampling, eval_batch_size=d.eval_batch_size,
    )


def last_layer_train_config(params: Params, seed: int) -> TrainConfig:
    d, ll = params.dro, params.dro.last_layer
    return TrainConfig(
        method="erm", epochs=ll.epochs, batch_size=ll.batch_size, lr=ll.lr, seed=seed, optimizer=ll.optimizer,
        momentum=ll.momentum, weight_decay=ll.weight_decay, eta=d.eta, adjustment=d.adjustment,
        normalize_loss=d.normalize_loss, balanced_sampling=d.balanced_sampling, eval_batch_size=d.eval_batch_size,
    )
