"""World-model tests: one thread, tiny models, everything saved and reloaded through from_pretrained."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def world():
    from world.data import world_config

    return world_config(2, image_size=16)


@pytest.fixture(scope="session")
def clip_tokenizer(tmp_path_factory, world):
    from common.word_tokenizers import build_clip_word_tokenizer
    from world.captions import world_words

    return build_clip_word_tokenizer(world_words(world), tmp_path_factory.mktemp("cliptok"))
