"""Differentiable few-step sampling (docs/METHOD.md 1.2): text features + fixed noise -> images in [0, 1].

``StableDiffusionPipeline.__call__`` runs under ``no_grad``, so the loop is our own: the scheduler is used
only through its public ``set_timesteps`` / ``scale_model_input`` / ``step`` (any prediction type the
scheduler's config names works, e.g. the synthetic world's ``prediction_type="sample"``). The noise the
LCM scheduler injects between steps is drawn from per-image generators seeded from ``noise_seeds`` on every
call: the caller decides whether an optimisation sees fresh noise at each step (new seeds, the default of
``dexter.optimize``) or the same noise throughout (the same seeds).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn


def initial_latents(seeds: Sequence[int], shape: tuple[int, int, int], device: torch.device | str,
                    dtype: torch.dtype) -> torch.Tensor:
    """One (C, h, w) latent per seed, drawn on the CPU so that CPU and GPU runs start from the same noise."""
    out = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s))) for s in seeds]
    return torch.stack(out).to(device=device, dtype=dtype)


def _guidance_embedding(w: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """The LCM guidance-scale embedding for UNets with ``time_cond_proj_dim`` (distilled LCM models)."""
    w = w.float() * 1000.0
    half = dim // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float32, device=w.device)
                     * -(torch.log(torch.tensor(10000.0)) / (half - 1)))
    emb = w[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))
    return emb.to(dtype)


def sample_images(
    text_states: torch.Tensor,
    latents: torch.Tensor,
    scheduler,
    unet: nn.Module,
    vae: nn.Module,
    num_steps: int = 4,
    guidance_scale: float = 1.0,
    uncond_states: torch.Tensor | None = None,
    noise_seeds: Sequence[int] | None = None,
    grad_steps: int | None = None,
    pixel_noise: float = 0.0,
) -> torch.Tensor:
    """Run ``num_steps`` scheduler steps and decode once -> images (N, 3, H, W) in [0, 1], differentiable.

    ``text_states`` (N, 77, D) and ``latents`` (N, C, h, w) pair up row by row. ``guidance_scale`` <= 1 uses the
    conditional prediction only (LCM-LoRA's setting); above 1 it needs ``uncond_states`` (1 or N rows) and
    doubles the UNet batch. ``noise_seeds`` (one per row) seed the noise added between steps.
    ``grad_steps``: only the last that many steps are differentiated (the earlier run under no_grad: less
    memory and backward time, but a truncated gradient, so a different method); None = every step.
    ``pixel_noise``: the standard deviation of Gaussian noise added to the decoded images (:func:`add_pixel_noise`,
    seeded from ``noise_seeds``, which it then needs); 0 = none.
    """
    n = latents.shape[0]
    if text_states.shape[0] != n:
        raise ValueError(f"{text_states.shape[0]} text rows for {n} latents")
    dtype = next(unet.parameters()).dtype
    device = latents.device
    scheduler.set_timesteps(num_steps, device=device)
    sample = latents * scheduler.init_noise_sigma
    cfg = guidance_scale > 1.0
    cond = text_states.to(dtype)
    if cfg:
        if uncond_states is None:
            raise ValueError("guidance_scale > 1 needs uncond_states")
        cond = torch.cat([uncond_states.to(dtype).expand(n, -1, -1), cond])
    extra: dict = {}
    time_dim = getattr(unet.config, "time_cond_proj_dim", None)
    if time_dim is not None:
        w = torch.full((cond.shape[0],), guidance_scale - 1.0, device=device)
        extra["timestep_cond"] = _guidance_embedding(w, time_dim, dtype)
    step_kwargs = {}
    if noise_seeds is not None and "generator" in inspect.signature(scheduler.step).parameters:
        if len(noise_seeds) != n:
            raise ValueError(f"{len(noise_seeds)} noise seeds for {n} latents")
        step_kwargs["generator"] = [torch.Generator("cpu").manual_seed(int(s)) for s in noise_seeds]
    first_grad = 0 if grad_steps is None else max(len(scheduler.timesteps) - grad_steps, 0)
    grad = torch.is_grad_enabled()
    for i, t in enumerate(scheduler.timesteps):
        with torch.set_grad_enabled(grad and i >= first_grad):
            model_in = scheduler.scale_model_input(torch.cat([sample] * 2) if cfg else sample, t)
            pred = unet(model_in.to(dtype), t, encoder_hidden_states=cond, return_dict=False, **extra)[0]
            if cfg:
                uncond, text = pred.chunk(2)
                pred = uncond + guidance_scale * (text - uncond)
            sample = scheduler.step(pred, t, sample, return_dict=False, **step_kwargs)[0]
    images = decode_latents(vae, sample)
    if pixel_noise:
        if noise_seeds is None:
            raise ValueError("pixel_noise needs noise_seeds (the pixel noise is seeded per image)")
        images = add_pixel_noise(images, pixel_noise, noise_seeds)
    return images


# Seeds of the pixel noise are derived from the images' noise seeds, so that they do not replay the noise the
# scheduler drew from the same seeds between its steps.
_PIXEL_NOISE_TAG = 0x5EED_0F_50


def add_pixel_noise(images: torch.Tensor, std: float, seeds: Sequence[int]) -> torch.Tensor:
    """``images`` (N, 3, H, W) in [0, 1] plus Gaussian noise of ``std``, clipped to [0, 1]; image i's noise
    is drawn on the CPU from ``seeds[i]`` (the same on every device and batch size).

    Why: a VAE decodes the mean of what its latent can hold, so a generator trained on images that carry
    sensor noise makes cleaner images than any it was trained on, and a classifier trained on the noisy ones
    may read clean images differently. The synthetic world's renderer adds noise of 6/255 per pixel; its
    no-shortcut classifier recognised VAE reconstructions of its own test images 0.23 less often per cell
    on average (up to 1.0) than the images themselves, and 0.04 once this noise was added back
    (docs/METHOD.md 7). Additive noise keeps the gradient to the image.
    """
    if len(seeds) != images.shape[0]:
        raise ValueError(f"{len(seeds)} pixel-noise seeds for {images.shape[0]} images")
    noise = torch.stack([torch.randn(images.shape[1:], generator=torch.Generator("cpu").manual_seed(
        (int(s) ^ _PIXEL_NOISE_TAG) % 2**63)) for s in seeds])
    return (images + std * noise.to(images.device, images.dtype)).clamp(0, 1)


def decode_latents(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode (one per call) -> [0, 1]."""
    scaled = latents / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    image = vae.decode(scaled.to(next(vae.parameters()).dtype), return_dict=False)[0]
    return (image.float() / 2 + 0.5).clamp(0, 1)


__all__ = ["add_pixel_noise", "decode_latents", "initial_latents", "sample_images"]
