"""Tiny model sets shared by the DEXTER tests (built once per session, loaded through from_pretrained)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def erm_dir(tmp_path_factory):
    """A classifier in the pipeline's own format (common.classifier), 2 classes, 16 px."""
    from common.classifier import build_classifier, save_classifier

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("erm")
    save_classifier(build_classifier("small_cnn", ("circle", "square"), 16, width=4), d)
    return d


@pytest.fixture(scope="session")
def model_set(tmp_path_factory) -> dict:
    """SD (16 px, 8x8 latents) + LCM-style LoRA + BERT + CLIP, tiny and random, saved to disk."""
    from tiny_models import make_tiny_model_set

    return make_tiny_model_set(tmp_path_factory.mktemp("models"), lora=True)


@pytest.fixture(scope="session")
def sd(model_set):
    from dexter.loading import load_sd

    return load_sd(model_set["stable_diffusion"], None)


@pytest.fixture(scope="session")
def bert(model_set):
    from dexter.loading import load_bert

    return load_bert(model_set["bert"])


def make_classifier(num_classes: int = 2, seed: int = 0):
    from tiny_models import make_tiny_classifier

    from dexter.classifiers import wrap_pipeline_classifier

    return wrap_pipeline_classifier(make_tiny_classifier(num_classes, seed=seed))


@pytest.fixture
def new_classifier():
    """:func:`make_classifier` for test modules (they cannot import it: ``conftest`` names several modules)."""
    return make_classifier


@pytest.fixture
def build_models(sd, bert, tmp_path):
    """A factory: DexterModels for a config (shared frozen SD/BERT, fresh tiny classifier)."""
    from dexter.optimize import DexterModels
    from dexter.vocab_map import load_or_build_vocab_map

    def build(config, num_classes: int = 2, classifier=None):
        clf = classifier or make_classifier(num_classes)
        clf.requires_grad_(False)
        vmap = load_or_build_vocab_map(bert[1], sd.tokenizer, tmp_path / "cache")
        return DexterModels(sd, bert[0], bert[1], clf, vmap, config, "cpu")

    return build
