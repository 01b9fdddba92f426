"""The world text-to-image model in the Stable Diffusion pipeline format, and its training.

Design (measured while building this world, docs/METHOD.md §7): x0 ("sample") prediction, because epsilon prediction failed for few-step sampling
from t=999; ``clip_sample=False`` (latents are not in [-1, 1]). The text encoder is a CLIPTextModel with
the world CLIP's text-tower architecture and tokenizer, trained jointly with the UNet (this
works, and DEXTER's spliced token embeddings steer it); it can also be the CLIP's own tower, frozen
(``text_encoder_from_clip``). Joint training lets the UNet start without waiting for the CLIP. Training
timesteps are drawn mostly from the exact 4-step LCM schedule DEXTER samples with (999, 759, 499, 259),
where the UNet's capacity matters; the rest uniformly, so other step counts still work.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from world.captions import random_caption
from world.synthetic import SyntheticWorldConfig, WorldSample

log = logging.getLogger(__name__)


def build_scheduler():
    """LCMScheduler for x0-prediction few-step sampling in latent space."""
    from diffusers import LCMScheduler

    return LCMScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="sample",
        clip_sample=False,
        set_alpha_to_one=True,
        original_inference_steps=50,
        timestep_spacing="leading",
    )


def build_unet(latent_size: int, cross_attention_dim: int, channels: tuple[int, int] = (32, 64),
               latent_channels: int = 4):
    """A small UNet2DConditionModel with cross-attention at every level (about 1 M parameters)."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * len(channels),
        up_block_types=("CrossAttnUpBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=1,
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def build_text_encoder(tokenizer, hidden: int = 64):
    """A fresh CLIPTextModel with the world CLIP's text-tower architecture (for joint training)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    from world.clip import text_config

    return CLIPTextModel(CLIPTextConfig(**text_config(tokenizer, hidden)))


def text_encoder_from_clip(clip_model):
    """A standalone CLIPTextModel with the world CLIP's text tower weights (frozen)."""
    from transformers import CLIPTextModel

    te = CLIPTextModel(clip_model.config.text_config)
    te.load_state_dict(clip_model.text_model.state_dict())
    te.requires_grad_(False)
    return te.eval()


def encode_prompts(text_encoder, tokenizer, prompts: Sequence[str]) -> torch.Tensor:
    """The pipeline's conditioning: last hidden states of prompts padded to model_max_length.

    Differentiable when the encoder has trainable parameters (joint training)."""
    ids = tokenizer(
        list(prompts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
        return_tensors="pt",
    ).input_ids
    return text_encoder(ids).last_hidden_state


def lcm_timesteps(scheduler, steps: int) -> torch.Tensor:
    scheduler.set_timesteps(steps)
    return scheduler.timesteps.clone()


def sample_timesteps(
    n: int, lcm_steps: torch.Tensor, lcm_share: float, num_train: int, g: torch.Generator
) -> torch.Tensor:
    """Mix of the sampler's own timesteps (share ``lcm_share``) and uniform ones."""
    on_grid = torch.rand(n, generator=g) < lcm_share
    grid = lcm_steps[torch.randint(0, len(lcm_steps), (n,), generator=g)]
    uniform = torch.randint(0, num_train, (n,), generator=g)
    return torch.where(on_grid, grid, uniform).long()


def train_unet(
    unet,
    text_encoder,
    tokenizer,
    scheduler,
    cfg: SyntheticWorldConfig,
    samples: list[WorldSample],
    latents: torch.Tensor,
    steps: int,
    batch_size: int = 128,
    lr: float = 1e-3,
    decay_steps: int = 0,
    tune_steps: int = 0,
    tune_lr: float = 0.0,
    lcm_share: float = 0.75,
    sampling_steps: int = 4,
    seed: int = 0,
    start_step: int = 0,
    train_text_encoder: bool = False,
    optimizer_state: dict | None = None,
    callback: Callable[[int, object, list[float]], None] | None = None,
    callback_every: int = 500,
    log_every: int = 50,
) -> list[float]:
    """x0-prediction training in place on scaled ``latents`` of ``samples`` with caption variants.

    Resumable: the random streams are re-derived from (seed, step), so training steps [a, b) give the
    same result whether or not the run was interrupted at a (given the saved optimizer state). After
    ``steps`` come ``tune_steps`` more at ``tune_lr`` (a second, lower cosine cycle: :func:`unet_rate`).
    ``callback(step, optimizer, losses)`` runs every ``callback_every`` steps (evaluation, checkpoints).
    """
    alphas = scheduler.alphas_cumprod
    grid = lcm_timesteps(scheduler, sampling_steps)
    params = list(unet.parameters())
    text_encoder.requires_grad_(train_text_encoder)
    text_encoder.train(train_text_encoder)
    if train_text_encoder:
        params += list(text_encoder.parameters())
    unet.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    losses: list[float] = []
    t0 = time.time()
    total = steps + tune_steps
    rate = lambda step: unet_rate(step, lr, steps, decay_steps, tune_steps, tune_lr)  # noqa: E731
    for step in range(start_step, total):
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        rng = np.random.default_rng([seed, step])
        for group in opt.param_groups:  # a pure function of step (resumable)
            group["lr"] = rate(step)
        idx = torch.randint(0, len(samples), (batch_size,), generator=g)
        captions = [random_caption(cfg, samples[i], rng).text for i in idx.tolist()]
        with torch.set_grad_enabled(train_text_encoder):
            cond = encode_prompts(text_encoder, tokenizer, captions)
        x0 = latents[idx]
        t = sample_timesteps(batch_size, grid, lcm_share, len(alphas), g)
        noise = torch.randn(x0.shape, generator=g)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        loss = F.mse_loss(pred, x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if log_every and (step + 1) % log_every == 0:
            log.info("unet step %d/%d loss %.4f lr %.2e (%.0fs)", step + 1, total, np.mean(losses[-log_every:]),
                     rate(step), time.time() - t0)
        if callback is not None and ((step + 1) % callback_every == 0 or step + 1 == total):
            unet.eval()
            text_encoder.eval()
            callback(step + 1, opt, losses)
            unet.train()
            text_encoder.train(train_text_encoder)
    unet.eval()
    text_encoder.eval()
    text_encoder.requires_grad_(False)
    return losses


def unet_rate(step: int, lr: float, steps: int, decay: int, tune_steps: int, tune_lr: float) -> float:
    """The generator's rate: :func:`lr_at` for the first ``steps``, then a second cosine cycle from ``tune_lr``
    to 0 over ``tune_steps`` (why: the rich world's generator drew squares and crosses from a one-word prompt
    at 0.89-0.90 after its first cycle, at the gate's bar; a second, lower cycle continues it)."""
    if step < steps:
        return lr_at(step, lr, total=steps, decay=decay)
    return lr_at(step - steps, tune_lr, warmup=1, total=tune_steps, decay=tune_steps)


def lr_at(step: int, peak: float, warmup: int = 100, total: int = 0, decay: int = 0) -> float:
    """Linear warm-up, constant, then (``decay`` > 0) a cosine decay to 0 over the last ``decay`` of ``total``
    steps. Before the decay starts the rate depends on ``step`` alone: training N steps is exactly the first N
    steps of any longer run, so a checkpoint of a run is reproduced by ``--unet-steps`` equal to its step, and a
    constant-rate run resumes into a decaying one without a seam."""
    rate = peak * min(1.0, (step + 1) / warmup)
    start = total - decay
    if decay > 0 and step >= start:
        rate *= 0.5 * (1.0 + math.cos(math.pi * (step - start + 1) / decay))
    return rate


@torch.no_grad()
def sample_images(
    unet, vae, text_encoder, tokenizer, scheduler, prompts: Sequence[str], steps: int = 4, seed: int = 0,
    batch_size: int = 64,
) -> torch.Tensor:
    """The pipeline's sampling loop, unrolled (guidance 1, LCM): a fast in-training check.

    Returns N x 3 x H x W in [-1, 1]. The gates use ``StableDiffusionPipeline`` itself instead.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    size = unet.config.sample_size
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        cond = encode_prompts(text_encoder, tokenizer, chunk)
        latents = torch.randn((len(chunk), unet.config.in_channels, size, size), generator=g)
        latents = latents * scheduler.init_noise_sigma
        scheduler.set_timesteps(steps)
        denoised = latents
        for t in scheduler.timesteps:
            pred = unet(latents, t, encoder_hidden_states=cond).sample
            latents, denoised = scheduler.step(pred, t, latents, generator=g, return_dict=False)
        out.append(vae.decode(denoised / vae.config.scaling_factor).sample.clamp(-1, 1))
    return torch.cat(out)


def assemble_pipeline(unet, vae, text_encoder, tokenizer, scheduler):
    """The StableDiffusionPipeline object (no safety checker) that ``save_pretrained`` writes."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
