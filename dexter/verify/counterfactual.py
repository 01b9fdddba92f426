"""Counterfactual images: prompts -> images with FRESH seeded noise -> the classifier's answers.

Why fresh noise: DEXTER optimises a prompt against ONE fixed initial noise, so everything that noise
happens to draw (a yellow object, say) shows up in every frame of a run and looks like evidence. Here every
image ``i`` of a prompt starts from its own noise, seeded by ``(seed, i)`` only, so

- image ``i`` of "a red square on water" and image ``i`` of "a red square on land" share their noise: they
  are counterfactual pairs that differ in the attribute word alone;
- a prompt's answers do not depend on which other prompts share its batch, or on which test asked first,
  so one cache serves every test, every class and the activation scores.

The generator is DEXTER's own (``dexter.sampler.sample_images``: same scheduler, steps, guidance, tokenised
CLIP path), run under ``torch.inference_mode``: no graph is kept, so batches can be large.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

NOISE_TAG = 0x7E57  # separates these noise streams from DEXTER's optimisation noise


def image_seeds(seed: int, index: int) -> tuple[int, int]:
    """(initial-latent seed, between-step noise seed) of image ``index``: the same for every prompt."""
    state = np.random.SeedSequence([NOISE_TAG, int(seed) & 0xFFFFFFFF, int(index)]).generate_state(2, np.uint64)
    return int(state[0] >> 1), int(state[1] >> 1)


@dataclass(frozen=True)
class PromptOutcomes:
    """The classifier's answers on the first ``n`` images of one prompt."""

    labels: np.ndarray  # (n,) arg-max class per image
    probs: np.ndarray  # (n, C) softmax probabilities
    embeddings: np.ndarray | None = None  # (n, D) the judge's image embeddings, when the prober has a judge

    def hits(self, class_index: int) -> int:
        return int((self.labels == class_index).sum())

    def mean_prob(self, class_index: int) -> float:
        return float(self.probs[:, class_index].mean()) if len(self.labels) else 0.0


# generate(prompts, indices) -> images (N, 3, H, W) in [0, 1]; row j is image indices[j] of prompts[j]
Generate = Callable[[Sequence[str], Sequence[int]], torch.Tensor]


class Prober:
    """Images of prompts, answered by a classifier, cached per (prompt, image index).

    ``generate`` makes the images (:func:`diffusion_generator` for a Stable Diffusion model; tests pass a
    renderer); ``classifier`` maps [0, 1] images to logits or to ``(logits, features)``. The first
    ``keep_images`` images of every prompt are kept (uint8) for grids and caption frames. With a ``judge``
    (:class:`dexter.verify.judge.ZeroShotJudge`) every image is also embedded once, so comparisons can count
    only the images that show what their prompt asks for.
    """

    def __init__(self, generate: Generate, classifier: Callable, num_classes: int, *, batch_size: int = 32,
                 keep_images: int = 4, judge=None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self._generate, self._classifier, self.judge = generate, classifier, judge
        self._embeddings: dict[str, list[np.ndarray]] = {}
        self.num_classes, self.batch_size, self.keep_images = num_classes, batch_size, keep_images
        self._labels: dict[str, list[int]] = {}
        self._probs: dict[str, list[np.ndarray]] = {}
        self._kept: dict[str, list[np.ndarray]] = {}
        self.images_generated = 0
        self.seconds = 0.0

    def outcomes(self, prompts: Sequence[str], n: int) -> dict[str, PromptOutcomes]:
        """The first ``n`` images of every prompt, generating only those not seen before (batched across prompts)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        jobs = [(p, i) for p in dict.fromkeys(prompts) for i in range(len(self._labels.get(p, ())), n)]
        for start in range(0, len(jobs), self.batch_size):
            self._run(jobs[start : start + self.batch_size])
        return {p: PromptOutcomes(np.array(self._labels[p][:n], dtype=np.int64), np.stack(self._probs[p][:n]),
                                  np.stack(self._embeddings[p][:n]) if self.judge is not None else None)
                for p in dict.fromkeys(prompts)}

    def images(self, prompt: str, indices: Sequence[int]) -> list[np.ndarray]:
        """Images ``indices`` of ``prompt`` as (H, W, 3) uint8 arrays: kept ones reused, others regenerated.

        Regenerating gives the same pixels as the first time, because image ``i``'s noise depends on ``i`` only.
        """
        kept = self._kept.get(prompt, [])
        missing = [i for i in indices if i >= len(kept)]
        fresh: dict[int, np.ndarray] = {}
        if missing:
            start = time.perf_counter()
            with torch.inference_mode():
                for b in range(0, len(missing), self.batch_size):
                    chunk = missing[b : b + self.batch_size]
                    fresh.update(zip(chunk, map(_to_uint8, self._generate([prompt] * len(chunk), chunk))))
            self.seconds += time.perf_counter() - start
            self.images_generated += len(missing)
        return [kept[i] if i < len(kept) else fresh[i] for i in indices]

    def _run(self, jobs: list[tuple[str, int]]) -> None:
        start = time.perf_counter()
        with torch.inference_mode():
            images = self._generate([p for p, _ in jobs], [i for _, i in jobs])
            out = self._classifier(images)
            logits = out[0] if isinstance(out, tuple) else out
            probs = torch.softmax(logits.float(), -1).cpu().numpy()
            embeddings = np.asarray(self.judge.embed_images(images)) if self.judge is not None else None
        if probs.shape != (len(jobs), self.num_classes):
            raise ValueError(f"classifier returned {tuple(probs.shape)} for {len(jobs)} images of "
                             f"{self.num_classes} classes")
        for j, ((prompt, index), row, image) in enumerate(zip(jobs, probs, images)):
            labels = self._labels.setdefault(prompt, [])
            if index != len(labels):  # jobs are generated in index order per prompt
                raise RuntimeError(f"image {index} of {prompt!r} out of order")
            labels.append(int(row.argmax()))
            self._probs.setdefault(prompt, []).append(row)
            if embeddings is not None:
                self._embeddings.setdefault(prompt, []).append(embeddings[j])
            if index < self.keep_images:
                self._kept.setdefault(prompt, []).append(_to_uint8(image))
        self.images_generated += len(jobs)
        self.seconds += time.perf_counter() - start


def _to_uint8(image: torch.Tensor) -> np.ndarray:
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


def diffusion_generator(sd, *, seed: int = 0, inference_steps: int = 4, guidance_scale: float = 1.0,
                        resolution: int | None = None, pixel_noise: float = 0.0) -> Generate:
    """DEXTER's sampler on plain-text prompts: ``sd`` is a :class:`dexter.loading.SDComponents`
    (``pixel_noise``: :func:`dexter.sampler.add_pixel_noise`).

    Text features are computed once per prompt and reused; the images of one call may mix prompts.
    """
    from dexter.sampler import initial_latents, sample_images
    from dexter.text import encode_prompts

    device = next(sd.unet.parameters()).device
    res = resolution or sd.default_resolution
    if res % sd.vae_scale_factor:
        raise ValueError(f"resolution {res} is not a multiple of the VAE factor {sd.vae_scale_factor}")
    side = res // sd.vae_scale_factor
    shape = (int(sd.unet.config.in_channels), side, side)
    text_cache: dict[str, torch.Tensor] = {}
    uncond = None

    def generate(prompts: Sequence[str], indices: Sequence[int]) -> torch.Tensor:
        nonlocal uncond
        with torch.inference_mode():
            missing = [p for p in dict.fromkeys(prompts) if p not in text_cache]
            if missing:
                for p, states in zip(missing, encode_prompts(sd.text_encoder, sd.tokenizer, missing)):
                    text_cache[p] = states
            if guidance_scale > 1.0 and uncond is None:
                uncond = encode_prompts(sd.text_encoder, sd.tokenizer, [""])
            seeds = [image_seeds(seed, i) for i in indices]
            latents = initial_latents([s for s, _ in seeds], shape, device, sd.dtype)
            cond = torch.stack([text_cache[p] for p in prompts])
            return sample_images(cond, latents, sd.scheduler, sd.unet, sd.vae, inference_steps, guidance_scale,
                                 uncond, [s for _, s in seeds], pixel_noise=pixel_noise)

    return generate


__all__ = ["Generate", "NOISE_TAG", "PromptOutcomes", "Prober", "diffusion_generator", "image_seeds"]
