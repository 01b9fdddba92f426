"""DEXTER's settings: the one schema of what an explanation run can be told.

Torch-free, so the params schema (``stages/params``) and the CLI read the same type, its field set and its
defaults, without loading a model. The defaults are the paper's slice-discovery settings (single word, 4
runs of at most 1,000 steps, lr 0.1, early stop after 3 consecutive hits, LCM 4 steps, guidance 1.0, 1 image
per step); params.yaml states every one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dexter.errors import DexterInputError
from dexter.presets import PRESETS

SINGLE_TEMPLATE = "a picture of a [MASK]."
MULTI_TEMPLATE = "a picture of a [MASK] with [MASK] and [MASK] and [MASK] and [MASK] and [MASK]."
TEMPLATES = {"single": SINGLE_TEMPLATE, "multi": MULTI_TEMPLATE}

STEP_NOISE = ("fresh", "fixed")


@dataclass(frozen=True)
class DexterConfig:
    """Settings of the optimisation; defaults are the paper's (docs/METHOD.md 1)."""

    mode: str = "single"  # single | multi
    runs_per_class: int = 4
    steps: int = 1000  # step budget per run
    lr: float = 0.1
    adam_eps: float = 1e-4
    early_stop: int = 3  # stop after this many consecutive steps classified as the class (once every
    # mask has a pseudo-label); 0 = never
    min_steps: int = 0  # no early stop before this many steps
    num_feature_neurons: int = 5  # multi-word mode
    images_per_step: int = 1  # images (different initial latents) per step per run
    collect_hits: int = 0  # stop a run once this many images classified as the class were collected (0 = off)
    step_noise: str = "fresh"  # fresh | fixed: the noise the LCM scheduler adds between its steps (see below)
    safety_checker: bool = True  # run the pipeline's safety checker on saved frames (when it ships one)
    inference_steps: int = 4
    guidance_scale: float = 1.0
    resolution: int | None = None  # image side; None = the UNet's native size
    pixel_noise: float = 0.0  # Gaussian noise (std, images in [0, 1]) added to every generated image: the
    # sensor noise of the classifier's training images that the generator's VAE decodes away (the synthetic
    # world: 6/255, its renderer's); 0 = none (the paper). See dexter.sampler.add_pixel_noise.
    seed: int = 0
    soft_prompt_length: int = 1
    tau: float = 1.0
    template: str | None = None  # None = the mode's template
    max_batch: int | None = None  # runs advanced together; None = all classes at once
    save_frames: bool = True
    backprop_steps: int | None = None  # gradient through the last K sampler steps only (changes the method);
    # None = through every step (the paper)
    tiny_vae: str | None = None  # a diffusers AutoencoderTiny (hub id or folder, e.g. madebyollin/taesd for
    # SD v1.x) decodes the step's latents instead of the full VAE decoder (changes the method); None = full VAE

    # step_noise: the initial latent of a run is fixed (the prompt is what changes). The noise the LCM
    # scheduler injects between its steps is drawn FRESH at every optimisation step by default, as in the
    # released code, so the prompt is optimised in expectation over it; it is seeded from (seed, class, run,
    # step, image), so a run is reproducible and gets the same noise whether it is batched with other
    # classes or alone. "fixed" reuses one draw for the whole run (same image for the same prompt).

    def __post_init__(self) -> None:
        if self.mode not in TEMPLATES:
            raise DexterInputError(f"mode must be one of {sorted(TEMPLATES)}, got {self.mode!r}")
        for name in ("runs_per_class", "steps", "images_per_step", "inference_steps", "soft_prompt_length"):
            if getattr(self, name) < 1:
                raise DexterInputError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("early_stop", "min_steps", "collect_hits", "num_feature_neurons"):
            if getattr(self, name) < 0:
                raise DexterInputError(f"{name} must be at least 0, got {getattr(self, name)}")
        for name in ("lr", "adam_eps", "tau"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise DexterInputError(f"{name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.guidance_scale) and self.guidance_scale >= 0):
            raise DexterInputError(f"guidance_scale must be a number >= 0, got {self.guidance_scale!r}")
        if not (isinstance(self.pixel_noise, int | float) and 0 <= self.pixel_noise < 1):
            raise DexterInputError(f"pixel_noise must be a number in [0, 1), got {self.pixel_noise!r}")
        if self.resolution is not None and self.resolution < 1:
            raise DexterInputError(f"resolution must be a positive number of pixels or None, got {self.resolution}")
        if self.step_noise not in STEP_NOISE:
            raise DexterInputError(f"step_noise must be one of {list(STEP_NOISE)}, got {self.step_noise!r}")
        if self.max_batch is not None and self.max_batch < 1:
            raise DexterInputError(f"max_batch must be at least 1 or None, got {self.max_batch}")
        if self.backprop_steps is not None and self.backprop_steps < 1:
            raise DexterInputError(f"backprop_steps must be at least 1 or None, got {self.backprop_steps}")
        if self.tiny_vae is not None and not (isinstance(self.tiny_vae, str) and self.tiny_vae.strip()):
            raise DexterInputError(f"tiny_vae must be a hub id or folder of an AutoencoderTiny, or None; got "
                                   f"{self.tiny_vae!r}")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> DexterConfig:
        """A named setting of the paper (:data:`PRESETS`), with ``overrides`` on top."""
        if name not in PRESETS:
            raise DexterInputError(f"unknown preset {name!r}; presets: {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def template_text(self) -> str:
        return self.template or TEMPLATES[self.mode]


__all__ = ["DexterConfig", "MULTI_TEMPLATE", "SINGLE_TEMPLATE", "STEP_NOISE", "TEMPLATES"]
