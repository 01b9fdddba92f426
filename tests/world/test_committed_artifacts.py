"""The committed world models (data/world) load through the hub-style paths and agree with the manifest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2] / "data" / "world"
pytestmark = pytest.mark.skipif(not (ROOT / "world.json").exists(), reason="world models not trained yet")


@pytest.fixture(scope="module")
def manifest():
    from world.manifest import load_manifest

    return load_manifest(ROOT)


def test_tokenizers_make_every_world_word_one_token(manifest):
    from transformers import BertTokenizer, CLIPTokenizer

    clip_tok = CLIPTokenizer.from_pretrained(ROOT / "clip")
    sd_tok = CLIPTokenizer.from_pretrained(ROOT / "sd" / "tokenizer")
    bert_tok = BertTokenizer.from_pretrained(ROOT / "bert")
    assert clip_tok.get_vocab() == sd_tok.get_vocab()
    assert clip_tok.model_max_length == 77
    for w in manifest["words"]:
        assert len(clip_tok(w, add_special_tokens=False).input_ids) == 1, w
        assert len(bert_tok(w, add_special_tokens=False).input_ids) == 1, w


def test_generator_loads_and_samples_in_four_lcm_steps(manifest):
    from diffusers import LCMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(ROOT / "sd", torch_dtype=torch.float32)
    assert isinstance(pipe.scheduler, LCMScheduler)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt="a picture of a water.", num_inference_steps=4, guidance_scale=1.0,
               generator=torch.Generator().manual_seed(0), output_type="pt").images
    size = manifest["image_size"]
    assert out.shape == (1, 3, size, size)


def test_clip_and_bert_load(manifest):
    from transformers import BertForMaskedLM, BertTokenizer, CLIPModel, CLIPProcessor

    clip = CLIPModel.from_pretrained(ROOT / "clip")
    proc = CLIPProcessor.from_pretrained(ROOT / "clip")
    assert clip.config.vision_config.image_size == manifest["image_size"]
    assert proc.image_processor.crop_size["height"] == manifest["image_size"]
    bert = BertForMaskedLM.from_pretrained(ROOT / "bert")
    tok = BertTokenizer.from_pretrained(ROOT / "bert")
    ids = tok("a picture of a [MASK].", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = bert(ids).logits[0, ids[0].tolist().index(tok.mask_token_id)]
    top = tok.convert_ids_to_tokens(logits.topk(3).indices.tolist())
    attribute_words = set(manifest["shapes"]) | set(manifest["colors"]) | set(manifest["backgrounds"])
    assert set(top) <= attribute_words, top  # a masked attribute slot predicts attribute words
