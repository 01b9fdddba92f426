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
) -> torch.Tensor:
    """Run ``num_steps`` scheduler steps and decode once -> images (N, 3, H, W) in [0, 1], differentiable.

    ``text_states`` (N, 77, D) and ``latents`` (N, C, h, w) pair up row by row. ``guidance_scale`` <= 1 uses the
    conditional prediction only (LCM-LoRA's setting); above 1 it needs ``uncond_states`` (1 or N rows) and
    doubles the UNet batch. ``noise_seeds`` (one per row) seed the noise added between steps.
    ``grad_steps``: only the last that many steps are differentiated (the earlier run under no_grad: less
    memory and backward time, but a truncated gradient, so a different method); None = every step.
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
    return decode_latents(vae, sample)


def decode_latents(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """VAE decode (one per call) -> [0, 1]."""
    scaled = latents / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    image = vae.decode(scaled.to(next(vae.parameters()).dtype), return_dict=False)[0]
    return (image.float() / 2 + 0.5).clamp(0, 1)


__all__ = ["decode_latents", "initial_latents", "sample_images"]
