"""World images as tensors, and the seeds that keep every training phase independent and reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from world.synthetic import SyntheticWorldConfig, WorldSample, render_many, sample_world

# sample_world seeds: training, in-training validation and the gates' held-out images never overlap.
TRAIN_STREAM = 1
HELDOUT_STREAM = 2
VALIDATION_STREAM = 3  # in-training checks, kept apart from the gates' held-out images


def world_config(num_classes: int, image_size: int = 32, seed: int = 0) -> SyntheticWorldConfig:
    """The world the models are trained on: the first ``num_classes`` shapes, colours and backgrounds.
    Shortcuts do not matter: sample_world draws attributes uniform and independent, so one set of
    models serves every shortcut spec over those values."""
    return SyntheticWorldConfig.first(num_classes, image_size=image_size, seed=seed)


def phase_seed(seed: int, phase: str) -> int:
    """A per-phase seed, so a phase gives the same result whether run alone or after the others."""
    digest = hashlib.sha256(f"{seed}:{phase}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def world_samples(cfg: SyntheticWorldConfig, n: int, stream: int) -> list[WorldSample]:
    return sample_world(cfg, n, seed=stream)


def images_to_tensor(images: np.ndarray) -> torch.Tensor:
    """N x H x W x 3 uint8 -> N x 3 x H x W float in [-1, 1] (the VAE's and diffusers' range)."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0).contiguous()


def render_tensor(cfg: SyntheticWorldConfig, samples: list[WorldSample]) -> torch.Tensor:
    return images_to_tensor(render_many(cfg, samples))


def attribute_array(samples: list[WorldSample]) -> np.ndarray:
    """N x 3 int array of (shape, color, background)."""
    return np.array([(s.shape, s.color, s.background) for s in samples], dtype=np.int64)
