import torch

from dexter.sampler import initial_latents, sample_images
from dexter.text import encode_prompts


def test_sampling_is_deterministic_and_differentiable(sd):
    cond = encode_prompts(sd.text_encoder, sd.tokenizer, ["a picture of a red circle on water."]).detach()
    cond = cond.expand(2, -1, -1).clone().requires_grad_(True)
    lat = initial_latents([0, 1], (4, 8, 8), "cpu", torch.float32)
    x1 = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [5, 6])
    x2 = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [5, 6])
    assert torch.equal(x1, x2)
    assert not torch.equal(x1[0], x1[1])
    x1.mean().backward()
    assert cond.grad.abs().sum() > 0
    x3 = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [7, 8])
    assert not torch.equal(x1, x3), "between-step noise ignores its seeds"


def test_guidance_above_one_uses_uncond(sd):
    with torch.no_grad():
        cond = encode_prompts(sd.text_encoder, sd.tokenizer, ["a picture of a red circle on water."])
        uncond = encode_prompts(sd.text_encoder, sd.tokenizer, [""])
        lat = initial_latents([0], (4, 8, 8), "cpu", torch.float32)
        a = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 2, 1.0, None, [1])
        b = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 2, 3.0, uncond, [1])
    assert a.shape == b.shape and not torch.equal(a, b)
