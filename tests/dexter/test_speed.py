"""Speed options: SDPA attention by default, channels-last keeps the step, the truncated backward
(``backprop_steps``) is what it says, and ``max_batch: auto`` stays off the GPU."""

import torch

from dexter.sampler import initial_latents, sample_images
from dexter.text import encode_prompts


def test_attention_is_pytorch_sdpa_by_default(sd, bert):
    from diffusers.models.attention_processor import AttnProcessor2_0

    processors = sd.unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())
    assert all(isinstance(p, AttnProcessor2_0) for p in sd.vae.attn_processors.values())
    assert sd.text_encoder.config._attn_implementation == "sdpa"
    assert bert[0].config._attn_implementation == "sdpa"


def _grad(sd, grad_steps):
    cond = encode_prompts(sd.text_encoder, sd.tokenizer, ["a picture of a red circle on water."]).detach()
    cond = cond.clone().requires_grad_(True)
    lat = initial_latents([0], (4, 8, 8), "cpu", torch.float32)
    image = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [5], grad_steps=grad_steps)
    image.mean().backward()
    return image.detach(), cond.grad


def test_backprop_through_the_last_steps_only(sd):
    full_image, full = _grad(sd, None)
    last_image, last = _grad(sd, 1)
    all_image, every = _grad(sd, 4)
    assert torch.equal(full_image, last_image) and torch.equal(full_image, all_image)  # same images
    assert torch.equal(full, every)  # K = number of steps: the paper's gradient
    assert last.abs().sum() > 0 and not torch.allclose(full, last)  # truncated: another gradient


def test_channels_last_keeps_the_step(build_models):
    from dexter.optimize import DexterConfig, dexter_step, new_run_state
    from dexter.speed import apply_speed_options

    cfg = DexterConfig(steps=3, early_stop=0)
    models = build_models(cfg)
    before = dexter_step(models, [new_run_state(models, 0, "c", 0)])[0].row
    apply_speed_options(models.sd, channels_last=True)
    try:
        after = dexter_step(models, [new_run_state(models, 0, "c", 0)])[0].row
    finally:
        models.sd.unet.to(memory_format=torch.contiguous_format)
        models.sd.vae.to(memory_format=torch.contiguous_format)
    assert after["words"] == before["words"]
    assert abs(after["loss"] - before["loss"]) < 1e-4


def test_auto_max_batch_is_all_classes_on_cpu(build_models):
    from dexter.optimize import DexterConfig
    from dexter.speed import auto_max_batch

    assert auto_max_batch(build_models(DexterConfig()), 7) is None
