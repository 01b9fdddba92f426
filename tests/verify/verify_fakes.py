"""Test doubles for the counterfactual test: a world renderer as the generator, classifiers keyed on pixels.

``world_generator`` reads the synthetic world's words out of a prompt ("a picture of a red square on
water") and renders that world image with a style seed taken from the image index, so image ``i`` of two
prompts differs only where their words differ (the counterfactual pair). Words a prompt leaves out
("a picture of a water.") are drawn from the image index too. The shape is ALSO written as a code into
the bottom-right pixel, so a classifier can read the content exactly while another reads the background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dexter.reasoning.world import (
    WORLD_TEMPLATE,  # the reasoning's description of the world, checked against its captions
)
from world.synthetic import SyntheticWorldConfig, WorldSample, render


def parse(cfg: SyntheticWorldConfig, prompt: str, index: int) -> WorldSample:
    words = prompt.lower().replace(".", " ").split()
    rng = np.random.default_rng([index, 99])
    picks = rng.integers(0, [len(cfg.shapes), len(cfg.colors), len(cfg.backgrounds)])

    def find(values: Sequence[str], default: int) -> int:
        return next((i for i, v in enumerate(values) if v in words), int(default))

    return WorldSample(find(cfg.shapes, picks[0]), find(cfg.colors, picks[1]), find(cfg.backgrounds, picks[2]),
                       int(rng.integers(2**31)))


def world_generator(cfg: SyntheticWorldConfig):
    def generate(prompts: Sequence[str], indices: Sequence[int]) -> torch.Tensor:
        out = []
        for p, i in zip(prompts, indices):
            s = parse(cfg, p, i)
            image = render(cfg, s).astype(np.float32) / 255.0
            image[-1, -1, 0] = s.shape / max(len(cfg.shapes) - 1, 1)  # the content code pixel
            out.append(torch.from_numpy(image).permute(2, 0, 1))
        return torch.stack(out)

    return generate


def background_rgb(cfg: SyntheticWorldConfig) -> torch.Tensor:
    """Mean colour of each background's top-left corner (what a background-keyed classifier compares with)."""
    rows = []
    for b in range(len(cfg.backgrounds)):
        patches = [render(cfg, WorldSample(0, 0, b, seed))[:3, :3].reshape(-1, 3).mean(0) for seed in range(8)]
        rows.append(np.mean(patches, axis=0) / 255.0)
    return torch.tensor(np.array(rows), dtype=torch.float32)


def colour_rgb(cfg: SyntheticWorldConfig) -> torch.Tensor:
    from world.synthetic import _RGB

    return torch.tensor([_RGB[c] for c in cfg.colors], dtype=torch.float32) / 255.0


class PixelClassifier(nn.Module):
    """Additive logits from pixel patterns, as a linear head on two kinds of evidence would give them.

    Every class gets 1 when the content code pixel says its shape, plus ``weight`` (2: the shortcut beats the
    shape) when its pattern is present; ``rules`` maps a class to its pattern: ("background", b) - the
    top-left corner looks like background b, or ("color", c) - some pixel has colour c.
    """

    def __init__(self, cfg: SyntheticWorldConfig, rules: dict[int, tuple[str, int]], weight: float = 2.0) -> None:
        super().__init__()
        self.cfg, self.rules, self.weight = cfg, rules, weight
        self.register_buffer("bg", background_rgb(cfg))
        self.register_buffer("fg", colour_rgb(cfg))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        corner = x[:, :, :3, :3].mean((2, 3))
        bg = torch.cdist(corner, self.bg).argmin(1)
        pixels = x.flatten(2).transpose(1, 2)  # (N, HW, 3)
        near = torch.cdist(pixels, self.fg.expand(n, -1, -1)).amin(1) < 0.15  # (N, colours): colour present
        shape = (x[:, 0, -1, -1] * (len(self.cfg.shapes) - 1)).round().long()
        logits = torch.nn.functional.one_hot(shape, len(self.cfg.shapes)).float()
        for c, (what, value) in self.rules.items():
            hit = (bg == value) if what == "background" else near[:, value]
            logits[:, c] += self.weight * hit.float()
        return logits * 4.0


def world_prober(cfg: SyntheticWorldConfig, rules: dict[int, tuple[str, int]] | None = None, batch_size: int = 64,
                 weight: float = 2.0):
    from dexter.verify import Prober

    return Prober(world_generator(cfg), PixelClassifier(cfg, rules or {}, weight), len(cfg.shapes),
                  batch_size=batch_size)


def world_vocabulary(cfg: SyntheticWorldConfig):
    from dexter.reasoning.audit import Vocabulary

    return Vocabulary(tuple(cfg.shapes), {"color": tuple(cfg.colors), "background": tuple(cfg.backgrounds)},
                      WORLD_TEMPLATE)


class TableProber:
    """A prober from plain numbers: prompt -> share of images called each class (deterministic labels)."""

    def __init__(self, rates: dict[str, dict[int, float]], num_classes: int) -> None:
        self.rates, self.num_classes = rates, num_classes
        self.images_generated, self.seconds = 0, 0.0

    def outcomes(self, prompts, n):
        from dexter.verify import PromptOutcomes

        out = {}
        for p in dict.fromkeys(prompts):
            labels = np.full(n, -1)
            start = 0
            for c, share in sorted(self.rates[p].items()):
                k = int(round(share * n))
                labels[start : start + k] = c
                start += k
            labels[labels < 0] = max(set(range(self.num_classes)) - set(self.rates[p]), default=0)
            out[p] = PromptOutcomes(labels, np.eye(self.num_classes)[labels])
        return out

    def images(self, prompt, indices):
        return [np.zeros((4, 4, 3), np.uint8) for _ in indices]
