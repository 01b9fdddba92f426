"""Activation score of a prompt (docs/METHOD.md 1.5): the percentage of N generated images classified as the class.

Same generator setup as the optimisation (LCM, few steps, guidance as configured) but FRESH noise per image
(seeds ``seed, seed+1, ...``), no gradients, the tokenised CLIP path. The paper uses N = 100.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dexter.classifiers import FeatureHeadClassifier
from dexter.loading import SDComponents
from dexter.sampler import initial_latents, sample_images
from dexter.text import encode_prompts


@dataclass(frozen=True)
class ActivationScore:
    prompt: str
    class_index: int
    n: int
    hits: int
    mean_prob: float

    @property
    def score(self) -> float:
        return 100.0 * self.hits / self.n

    def as_dict(self) -> dict:
        return {"prompt": self.prompt, "class_index": self.class_index, "n": self.n, "hits": self.hits,
                "score": self.score, "mean_prob": self.mean_prob}


@torch.no_grad()
def fresh_noise_batches(sd: SDComponents, prompt: str, n: int, seed: int, batch_size: int,
                        inference_steps: int, guidance_scale: float, resolution: int | None = None,
                        pixel_noise: float = 0.0):
    """Yield ``(seeds, images)`` batches of ``n`` images of ``prompt``, image i from seed ``seed + i``.

    The prompt is encoded once; every image has its own initial latent and its own noise between the LCM
    steps, so a score does not depend on the batch size. ``pixel_noise``: see :func:`dexter.sampler.add_pixel_noise`."""
    device = next(sd.unet.parameters()).device
    cond = encode_prompts(sd.text_encoder, sd.tokenizer, [prompt])
    uncond = encode_prompts(sd.text_encoder, sd.tokenizer, [""]) if guidance_scale > 1.0 else None
    side = (resolution or sd.default_resolution) // sd.vae_scale_factor
    shape = (int(sd.unet.config.in_channels), side, side)
    for start in range(0, n, batch_size):
        seeds = list(range(seed + start, seed + min(start + batch_size, n)))
        latents = initial_latents(seeds, shape, device, sd.dtype)
        yield seeds, sample_images(cond.expand(len(seeds), -1, -1), latents, sd.scheduler, sd.unet, sd.vae,
                                   inference_steps, guidance_scale, uncond, [s + 1_000_003 for s in seeds],
                                   pixel_noise=pixel_noise)


@torch.no_grad()
def activation_score(sd: SDComponents, classifier: FeatureHeadClassifier, prompt: str, class_index: int,
                     n: int = 100, seed: int = 0, batch_size: int = 8, inference_steps: int = 4,
                     guidance_scale: float = 1.0, resolution: int | None = None,
                     pixel_noise: float = 0.0) -> ActivationScore:
    """Generate ``n`` images of ``prompt`` and count those whose arg-max class is ``class_index``."""
    if not 0 <= class_index < classifier.num_classes:
        raise ValueError(f"class index {class_index} out of range [0, {classifier.num_classes})")
    if n < 1 or batch_size < 1:
        raise ValueError("n and batch_size must be at least 1")
    hits, prob_sum = 0, 0.0
    for _, images in fresh_noise_batches(sd, prompt, n, seed, batch_size, inference_steps, guidance_scale,
                                         resolution, pixel_noise):
        logits, _ = classifier(images.to(classifier.head.weight.dtype))
        hits += int((logits.argmax(-1) == class_index).sum())
        prob_sum += float(torch.softmax(logits.float(), -1)[:, class_index].sum())
    return ActivationScore(prompt, class_index, n, hits, prob_sum / n)


__all__ = ["ActivationScore", "activation_score", "fresh_noise_batches"]
