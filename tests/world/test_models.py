"""Tiny training runs of each world model, and their saved folders loading through the hub paths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world.captions import world_words
from world.data import render_tensor, world_samples


def _tiny_clip(tok, world):
    from world.clip import build_clip

    torch.manual_seed(0)
    return build_clip(tok, image_size=world.image_size, hidden=32, layers=1, patch=4)


def test_vae_training_lowers_reconstruction_error_and_sets_the_scale(world):
    from world.vae import build_vae, encode_latents, set_scaling_factor, train_vae

    images = render_tensor(world, world_samples(world, 64, 1))
    torch.manual_seed(0)
    vae = build_vae(image_size=16, channels=(8, 16))
    vae, losses = train_vae(images, steps=30, batch_size=16, lr=3e-3, seed=0, vae=vae, log_every=0)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    latents = encode_latents(vae, images)
    assert latents.shape == (64, 4, 8, 8)
    factor = set_scaling_factor(vae, latents)
    assert vae.config.scaling_factor == factor
    assert torch.isclose((latents * factor).std(), torch.tensor(1.0), atol=1e-4)


def test_multi_positive_loss_prefers_consistent_captions():
    from world.clip import multi_positive_loss

    positive = torch.tensor([[True, True, False], [False, False, True]])
    good = torch.tensor([[5.0, 5.0, -5.0], [-5.0, -5.0, 5.0]])
    bad = -good
    assert multi_positive_loss(good, positive) < 0.01 < multi_positive_loss(bad, positive)


def test_clip_training_runs_and_lowers_its_loss(world, clip_tokenizer):
    from world.clip import train_clip, zero_shot

    samples = world_samples(world, 128, 1)
    images = render_tensor(world, samples)
    model = _tiny_clip(clip_tokenizer, world)
    losses = train_clip(model, clip_tokenizer, world, samples, images, steps=40, batch_size=32, lr=3e-3, seed=0,
                        log_every=0)
    assert np.mean(losses[-8:]) < np.mean(losses[:8])
    pred = zero_shot(model, clip_tokenizer, images[:10], world.backgrounds)
    assert pred.shape == (10,) and set(pred.tolist()) <= {0, 1}


def test_bert_training_runs_and_lowers_its_loss(tmp_path, world):
    from transformers import BertForMaskedLM, BertTokenizer

    from common.word_tokenizers import build_bert_word_tokenizer
    from world.bert import build_bert, train_bert

    tok = build_bert_word_tokenizer(world_words(world), tmp_path)
    torch.manual_seed(0)
    model = build_bert(tok, hidden=32, layers=1)
    losses = train_bert(model, tok, world, world_samples(world, 64, 1), steps=40, batch_size=32, lr=5e-3, seed=0,
                        log_every=0)
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    model.save_pretrained(tmp_path)
    again = BertForMaskedLM.from_pretrained(tmp_path)
    tok2 = BertTokenizer.from_pretrained(tmp_path)
    ids = tok2("a picture of a [MASK].", return_tensors="pt").input_ids
    assert again(ids).logits.shape == (1, ids.shape[1], len(tok2))


def test_unet_trains_and_the_pipeline_folder_loads_and_samples_in_four_lcm_steps(tmp_path, world, clip_tokenizer):
    from diffusers import LCMScheduler, StableDiffusionPipeline
    from transformers import CLIPModel, CLIPProcessor

    from world.clip import build_processor
    from world.generator import (
        assemble_pipeline,
        build_scheduler,
        build_unet,
        sample_images,
        text_encoder_from_clip,
        train_unet,
    )
    from world.vae import build_vae, encode_latents, set_scaling_factor

    samples = world_samples(world, 64, 1)
    images = render_tensor(world, samples)
    torch.manual_seed(0)
    vae = build_vae(image_size=16, channels=(8, 16)).eval()
    latents = encode_latents(vae, images)
    latents = latents * set_scaling_factor(vae, latents)
    clip = _tiny_clip(clip_tokenizer, world)
    clip_dir = tmp_path / "clip"
    clip.save_pretrained(clip_dir)
    build_processor(clip_tokenizer, world.image_size).save_pretrained(clip_dir)
    text_encoder = text_encoder_from_clip(clip)
    unet = build_unet(latents.shape[-1], 32, channels=(16, 32))
    scheduler = build_scheduler()
    calls = []
    losses = train_unet(unet, text_encoder, clip_tokenizer, scheduler, world, samples, latents, steps=30,
                        batch_size=16, lr=2e-3, seed=0, callback=lambda s, o, l: calls.append(s),
                        callback_every=10, log_every=0)
    assert calls == [10, 20, 30]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert not any(p.requires_grad for p in text_encoder.parameters())

    sd_dir = tmp_path / "sd"
    assemble_pipeline(unet, vae, text_encoder, clip_tokenizer, scheduler).save_pretrained(sd_dir)
    pipe = StableDiffusionPipeline.from_pretrained(sd_dir)
    assert isinstance(pipe.scheduler, LCMScheduler)
    assert pipe.scheduler.config.prediction_type == "sample" and not pipe.scheduler.config.clip_sample
    assert pipe.safety_checker is None
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    out = pipe(prompt=["a picture of a water.", "a picture of a red circle on land"], num_inference_steps=4,
               guidance_scale=1.0, generator=g, output_type="pt").images
    assert out.shape == (2, 3, 16, 16)
    # the unrolled in-training sampler is the pipeline's loop
    mine = sample_images(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler,
                         ["a picture of a water.", "a picture of a red circle on land"], steps=4, seed=0)
    assert torch.allclose((mine + 1) / 2, out, atol=1e-4)

    loaded = CLIPModel.from_pretrained(clip_dir)
    proc = CLIPProcessor.from_pretrained(clip_dir)
    px = proc(images=[np.zeros((16, 16, 3), np.uint8)], return_tensors="pt").pixel_values
    assert px.shape == (1, 3, 16, 16)
    from world.clip import normalise

    assert torch.allclose(px, normalise(torch.full((1, 3, 16, 16), -1.0)), atol=1e-4)
    assert loaded.get_image_features(pixel_values=px).pooler_output.shape == (1, 32)


def test_training_is_deterministic_given_the_seed(world):
    from world.vae import build_vae, train_vae

    images = render_tensor(world, world_samples(world, 32, 1))
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        vae, _ = train_vae(images, steps=3, batch_size=8, seed=5, vae=build_vae(image_size=16, channels=(8, 16)),
                           log_every=0)
        runs.append(vae.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_unet_resume_equals_an_uninterrupted_run(world, clip_tokenizer):
    """Constant LR after warm-up and per-step random streams: N steps then M more == N + M steps."""
    from world.generator import build_scheduler, build_text_encoder, build_unet, train_unet

    samples = world_samples(world, 16, 1)
    latents = torch.randn(16, 4, 4, 4)

    def fresh():
        torch.manual_seed(0)
        return build_unet(4, 32, channels=(16, 32)), build_text_encoder(clip_tokenizer, hidden=32)

    kw = dict(batch_size=4, lr=1e-3, seed=3, train_text_encoder=True, log_every=0)
    unet_a, te_a = fresh()
    train_unet(unet_a, te_a, clip_tokenizer, build_scheduler(), world, samples, latents, steps=4, **kw)
    unet_b, te_b = fresh()
    saved = {}
    train_unet(unet_b, te_b, clip_tokenizer, build_scheduler(), world, samples, latents, steps=2,
               callback=lambda s, opt, _: saved.update(opt=opt.state_dict()), callback_every=2, **kw)
    train_unet(unet_b, te_b, clip_tokenizer, build_scheduler(), world, samples, latents, steps=4, start_step=2,
               optimizer_state=saved["opt"], **kw)
    a, b = unet_a.state_dict(), unet_b.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert any(not torch.equal(v, fresh()[0].state_dict()[k]) for k, v in a.items())  # it did train


def test_unet_rate_decays_only_over_the_last_steps():
    """A constant-rate run resumes into a decaying one without a seam: the rates agree up to the decay's
    start, then fall (cosine) to 0 at the last step."""
    from world.generator import lr_at

    constant = [lr_at(s, 1e-3) for s in range(1000)]
    decaying = [lr_at(s, 1e-3, total=1000, decay=400) for s in range(1000)]
    assert constant[:600] == decaying[:600]
    assert decaying[0] == pytest.approx(1e-5) and decaying[599] == 1e-3
    assert all(a > b for a, b in zip(decaying[600:], decaying[601:]))
    assert decaying[799] == pytest.approx(5e-4, rel=1e-2)
    assert decaying[-1] == pytest.approx(0.0, abs=1e-12)


def test_unet_second_cycle_starts_at_its_own_rate_and_leaves_the_first_unchanged():
    from world.generator import lr_at, unet_rate

    first = [lr_at(s, 1e-3, total=1000, decay=400) for s in range(1000)]
    both = [unet_rate(s, 1e-3, 1000, 400, 500, 3e-4) for s in range(1500)]
    assert both[:1000] == first
    assert both[1000] == pytest.approx(3e-4, rel=1e-4) and both[1250] == pytest.approx(1.5e-4, rel=1e-2)
    assert all(a > b for a, b in zip(both[1000:], both[1001:])) and both[-1] == pytest.approx(0.0, abs=1e-12)
