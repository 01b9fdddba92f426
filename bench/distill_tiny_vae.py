"""Distil a diffusers AutoencoderTiny decoder for a generator's VAE (for ``dexter.tiny_vae`` on a world
that ships none), from prepared images: pixels only, no labels.

    python -m stages.prepare   # data/prepared/images.npz
    python bench/distill_tiny_vae.py --sd data/world/sd --out outputs/taesd_world --seconds 330

Targets: the VAE's decode of the scaled latents of every prepared image. The tiny decoder maps the SAME
scaled latents (the UNet's space: AutoencoderTiny's scaling factor is 1) to the VAE's image, L1 loss,
Adam. Its upsampling matches the VAE's (2 ** (VAE blocks - 1)). The weights are small but are not part of
the project: write them outside the repository or under outputs/.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sd", default="data/world/sd", help="a Stable Diffusion folder (its vae/ is distilled)")
    ap.add_argument("--images", default="data/prepared/images.npz", help="uint8 pixels (N, H, W, 3) under 'pixels'")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=300.0, help="training time budget")
    ap.add_argument("--width", type=int, default=48, help="decoder channels")
    args = ap.parse_args(argv)

    from diffusers import AutoencoderKL, AutoencoderTiny

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(args.sd, subfolder="vae").eval().requires_grad_(False)
    sf = vae.config.scaling_factor
    x = torch.from_numpy(np.load(args.images)["pixels"]).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        z = torch.cat([vae.encode(x[i:i + 256]).latent_dist.sample() for i in range(0, len(x), 256)]) * sf
        target = torch.cat([vae.decode(z[i:i + 256] / sf).sample for i in range(0, len(z), 256)]).clamp(-1, 1)
    blocks = len(vae.config.block_out_channels)
    tiny = AutoencoderTiny(encoder_block_out_channels=(32,) * blocks, decoder_block_out_channels=(args.width,) * blocks,
                           num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(2,) * (blocks - 1) + (1,),
                           latent_channels=int(vae.config.latent_channels))
    opt = torch.optim.Adam(tiny.decoder.parameters(), lr=2e-3)
    perm = torch.randperm(len(z))
    val, train = perm[:300], perm[300:]
    start, step = time.time(), 0
    while time.time() - start < args.seconds:
        idx = train[torch.randint(len(train), (64,))]
        loss = (tiny.decode(z[idx]).sample - target[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
    with torch.no_grad():
        val_l1 = (tiny.decode(z[val]).sample - target[val]).abs().mean()
        base = (target[val] - target[val].mean()).abs().mean()
    print(f"{step} steps, held-out L1 {val_l1.item():.4f} in [-1, 1] (predicting the mean image: {base.item():.4f})")
    tiny.eval().save_pretrained(args.out)


if __name__ == "__main__":
    main()
