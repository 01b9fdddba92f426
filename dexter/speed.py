"""Options that make a DEXTER step faster without changing what it computes (up to floating-point
rounding), and the automatic batch size.

Attention: diffusers' UNet/VAE attention (``AttnProcessor2_0``) and transformers' CLIP and BERT
(``attn_implementation="sdpa"``) already use PyTorch's ``scaled_dot_product_attention`` by default
(the fused flash / memory-efficient kernels on GPUs); tests/dexter/test_speed.py keeps it that way.

``channels_last`` stores the UNet's and VAE's activations NHWC (faster convolutions on tensor-core GPUs),
``compile`` wraps both in ``torch.compile`` (a slow first step, then fused kernels). Both are off by
default: their effect depends on the GPU and was not measured on one here (bench/RESULTS.md).
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def apply_speed_options(sd, channels_last: bool = False, compile: bool = False) -> None:
    """Apply the options to the UNet and VAE of ``sd`` (``dexter.loading.SDComponents``) in place."""
    if channels_last:
        sd.unet.to(memory_format=torch.channels_last)
        sd.vae.to(memory_format=torch.channels_last)
    if compile:
        sd.unet = torch.compile(sd.unet)
        sd.vae.decoder = torch.compile(sd.vae.decoder)


def auto_max_batch(models, num_classes: int, headroom: float = 0.85) -> int | None:
    """How many runs fit in one step on the models' GPU: the memory of a probe step at batch 1 and 2
    gives the cost per run; the free memory (``torch.cuda.mem_get_info``, times ``headroom``) divides it.
    None (every class in one step) off CUDA, where memory is the host's and the batch is a throughput
    choice."""
    device = models.device
    if device.type != "cuda":
        log.info("dexter: max_batch auto: not on a GPU, all %d classes in one step", num_classes)
        return None
    from dexter.optimize import dexter_step, new_run_state

    peaks = []
    for b in (1, 2):
        states = [new_run_state(models, i % models.classifier.num_classes, "probe", 0) for i in range(b)]
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        dexter_step(models, states)
        torch.cuda.synchronize(device)
        peaks.append(torch.cuda.max_memory_allocated(device) - base)
        del states
    per_run = max(peaks[1] - peaks[0], 1)
    fixed = max(peaks[0] - per_run, 0)
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info(device)
    fit = int((free * headroom - fixed) // per_run)
    batch = max(1, min(fit, num_classes))
    log.info("dexter: max_batch auto: %.0f MiB per run, %.0f MiB free -> %d", per_run / 2**20, free / 2**20, batch)
    return batch


__all__ = ["apply_speed_options", "auto_max_batch"]
