"""The world's tiny AutoencoderKL: 32 px images <-> 8 x 8 x 4 latents, in the SD VAE format.

Trained once; the generator is then trained on the VAE's latents of the training images, encoded a
single time (the CPU cost of diffusion training is the UNet alone). ``scaling_factor`` is set to
1 / std of those latents so diffusers' pipeline scales them to unit variance as SD's does.
"""

from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F

from world.schedule import one_cycle

log = logging.getLogger(__name__)


def build_vae(image_size: int = 32, channels: tuple[int, ...] = (16, 32, 64), latent_channels: int = 4):
    """An AutoencoderKL downsampling by 2 ** (len(channels) - 1) (4x for the default: 32 px -> 8 x 8)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(channels),
        up_block_types=("UpDecoderBlock2D",) * len(channels),
        block_out_channels=channels,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=image_size,
        force_upcast=False,
    )


def vae_loss(vae, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Reconstruction MSE (of a posterior sample) + kl_weight * KL; returns (total, mse)."""
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample
    mse = F.mse_loss(recon, x)
    kl = posterior.kl().mean() / x[0].numel()
    return mse + kl_weight * kl, mse


def train_vae(
    images: torch.Tensor,
    steps: int,
    batch_size: int = 64,
    lr: float = 1e-3,
    kl_weight: float = 1e-3,
    seed: int = 0,
    vae=None,
    log_every: int = 50,
):
    """Train on ``images`` (N x 3 x H x W in [-1, 1]); returns (vae, list of per-step MSE)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    vae = vae if vae is not None else build_vae(image_size=images.shape[-1])
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = one_cycle(opt, lr, steps, pct_start=0.05)
    losses: list[float] = []
    t0 = time.time()
    for step in range(steps):
        idx = torch.randint(0, images.shape[0], (batch_size,), generator=g)
        loss, mse = vae_loss(vae, images[idx], kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(mse.detach()))
        if log_every and (step + 1) % log_every == 0:
            log.info("vae step %d/%d mse %.5f (%.0fs)", step + 1, steps, sum(losses[-log_every:]) / log_every,
                     time.time() - t0)
    vae.eval()
    return vae, losses


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Posterior means (unscaled) of ``images``."""
    out = [vae.encode(images[i : i + batch_size]).latent_dist.mean for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def set_scaling_factor(vae, latents: torch.Tensor) -> float:
    """Register 1 / std(latents) as the VAE's scaling_factor (saved in its config) and return it."""
    factor = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=factor)
    return factor
