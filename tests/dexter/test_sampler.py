import pytest
import torch

from dexter.sampler import add_pixel_noise, initial_latents, sample_images
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


def test_pixel_noise_is_seeded_per_image_additive_and_keeps_the_gradient(sd):
    cond = encode_prompts(sd.text_encoder, sd.tokenizer, ["a picture of a red circle on water."]).detach()
    cond = cond.expand(2, -1, -1).clone().requires_grad_(True)
    lat = initial_latents([0, 1], (4, 8, 8), "cpu", torch.float32)
    clean = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [5, 6])
    noisy = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [5, 6], pixel_noise=0.05)
    again = sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [5, 6], pixel_noise=0.05)
    assert torch.equal(noisy, again)
    # the noise is the one add_pixel_noise draws for these seeds (clipped where the clean image is near 0 or 1)
    assert torch.equal(noisy, add_pixel_noise(clean, 0.05, [5, 6]))
    inside = (clean > 0.2) & (clean < 0.8)
    spread = (noisy - clean)[inside].std().item()
    assert 0.04 < spread < 0.06, spread
    # one image's noise does not depend on the batch it came in
    alone = sample_images(cond[1:], lat[1:], sd.scheduler, sd.unet, sd.vae, 4, 1.0, None, [6], pixel_noise=0.05)
    assert torch.allclose(alone[0], noisy[1], atol=1e-5)
    noisy.mean().backward()
    assert cond.grad.abs().sum() > 0


def test_pixel_noise_needs_seeds_and_a_seed_per_image(sd):
    x = torch.full((2, 3, 4, 4), 0.5)
    with pytest.raises(ValueError, match="2 images"):
        add_pixel_noise(x, 0.1, [1])
    with torch.no_grad():
        cond = encode_prompts(sd.text_encoder, sd.tokenizer, ["a picture of a red circle on water."])
        lat = initial_latents([0], (4, 8, 8), "cpu", torch.float32)
        with pytest.raises(ValueError, match="pixel_noise needs noise_seeds"):
            sample_images(cond, lat, sd.scheduler, sd.unet, sd.vae, 2, 1.0, None, None, pixel_noise=0.1)
    assert not torch.equal(add_pixel_noise(x, 0.1, [1, 2])[0], add_pixel_noise(x, 0.1, [1, 2])[1])
