"""A procedural spurious-correlation world: coloured shapes on backgrounds.

The class is the object's shape. One nuisance attribute (the background or the object's colour) is
tied to the class in the training split with a chosen strength and is independent of it in val/test,
so the true groups (class x nuisance value) are known exactly. Every image has a caption in a small
fixed vocabulary ("a picture of a red circle on water"), which is what lets the project train small
text-to-image, CLIP and BERT models on this world (see ``dexter.world``).

Everything is a pure function of the config and the seed: the same config always renders the same
pixels, so the world needs no files on disk to be reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = ("red", "yellow", "purple", "white")
BACKGROUNDS = ("water", "land", "snow", "sand")

_RGB = {
    "red": (215, 40, 40),
    "yellow": (240, 215, 40),
    "purple": (150, 60, 200),
    "white": (245, 245, 245),
}
# Background base colour and the colour of its texture (waves, blotches, ...).
_BACKGROUND_RGB = {
    "water": ((35, 85, 165), (90, 150, 215)),
    "land": ((95, 130, 55), (135, 100, 55)),
    "snow": ((205, 215, 230), (170, 185, 205)),
    "sand": ((200, 170, 110), (225, 200, 140)),
}
SPLITS = ("train", "val", "test")
Spurious = Literal["background", "color"]


@dataclass(frozen=True)
class SyntheticWorldConfig:
    """How the world is drawn and how strongly the shortcut holds in training."""

    num_classes: int = 2
    spurious: Spurious = "background"
    correlation: float = 0.95
    image_size: int = 32
    split_sizes: dict[str, int] = field(
        default_factory=lambda: {"train": 3000, "val": 600, "test": 1200}
    )
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.num_classes <= len(SHAPES):
            raise ValueError(f"num_classes must be in [2, {len(SHAPES)}], got {self.num_classes}")
        if self.spurious not in ("background", "color"):
            raise ValueError(f"spurious must be 'background' or 'color', got {self.spurious!r}")
        if not 0.0 <= self.correlation <= 1.0:
            raise ValueError(f"correlation must be in [0, 1], got {self.correlation}")
        if self.image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {self.image_size}")
        unknown = set(self.split_sizes) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown split(s) {sorted(unknown)}; expected {list(SPLITS)}")

    @property
    def shapes(self) -> tuple[str, ...]:
        return SHAPES[: self.num_classes]

    @property
    def colors(self) -> tuple[str, ...]:
        return COLORS[: self.num_classes]

    @property
    def backgrounds(self) -> tuple[str, ...]:
        return BACKGROUNDS[: self.num_classes]

    @property
    def spurious_values(self) -> tuple[str, ...]:
        """Names of the shortcut attribute's values; value i is aligned with class i."""
        return self.backgrounds if self.spurious == "background" else self.colors

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every word any caption of this world can contain."""
        return ("a", "picture", "of", "on", *self.colors, *self.shapes, *self.backgrounds)


@dataclass(frozen=True)
class WorldSample:
    """The latent description of one image; rendering it is deterministic given ``style_seed``."""

    shape: int
    color: int
    background: int
    style_seed: int


def caption(cfg: SyntheticWorldConfig, s: WorldSample) -> str:
    return (
        f"a picture of a {cfg.colors[s.color]} {cfg.shapes[s.shape]} "
        f"on {cfg.backgrounds[s.background]}"
    )


def render(cfg: SyntheticWorldConfig, s: WorldSample) -> np.ndarray:
    """Draw one sample as an HxWx3 uint8 image."""
    n = cfg.image_size
    rng = np.random.default_rng(s.style_seed)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    image = _background(cfg.backgrounds[s.background], yy, xx, rng)

    radius = rng.uniform(0.22, 0.30)
    cy, cx = 0.5 + rng.uniform(-0.12, 0.12, size=2)
    mask = _shape_mask(cfg.shapes[s.shape], yy - cy, xx - cx, radius)
    color = np.array(_RGB[cfg.colors[s.color]], dtype=np.float32)
    image[mask] = color * rng.uniform(0.9, 1.05)
    image += rng.normal(0.0, 6.0, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _background(name: str, yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base, texture = (np.array(c, dtype=np.float32) for c in _BACKGROUND_RGB[name])
    phase = rng.uniform(0, 2 * np.pi)
    if name == "water":  # horizontal waves
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * (4 * yy + 0.3 * np.sin(6 * xx + phase)) + phase)
    elif name == "land":  # irregular blotches
        weight = 0.5 + 0.25 * (np.sin(9 * xx + phase) + np.sin(7 * yy - 2 * phase))
    elif name == "snow":  # soft diagonal drifts
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * 2 * (xx + yy) + phase)
    else:  # sand: fine ripples
        weight = 0.5 + 0.5 * np.sin(2 * np.pi * 7 * (xx - 0.4 * yy) + phase)
    weight = weight[..., None]
    return base * (1 - weight) + texture * weight


def _shape_mask(name: str, dy: np.ndarray, dx: np.ndarray, r: float) -> np.ndarray:
    if name == "circle":
        return dy**2 + dx**2 <= r**2
    if name == "square":
        side = r * 0.88
        return (np.abs(dy) <= side) & (np.abs(dx) <= side)
    if name == "triangle":  # apex up
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    # cross
    arm = r * 0.35
    return ((np.abs(dy) <= arm) & (np.abs(dx) <= r)) | ((np.abs(dx) <= arm) & (np.abs(dy) <= r))


def sample_split(cfg: SyntheticWorldConfig, split: str) -> list[WorldSample]:
    """The latent samples of one split, with exact (not sampled) group counts.

    Train: classes balanced; in each class ``round(correlation * n_class)`` images carry the aligned
    shortcut value and the rest are spread evenly over the other values. Val/test: every
    (class, shortcut value) group has the same size, which is what "balanced" means for evaluation.
    The attribute that is not the shortcut is uniform and independent of everything.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    n = cfg.split_sizes.get(split, 0)
    k = cfg.num_classes
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    pairs: list[tuple[int, int]] = []  # (class, shortcut value)
    for y, n_class in enumerate(_even_parts(n, k)):
        if split == "train":
            n_aligned = int(round(cfg.correlation * n_class))
            pairs += [(y, y)] * n_aligned
            others = [v for v in range(k) if v != y]
            for v, count in zip(others, _even_parts(n_class - n_aligned, k - 1)):
                pairs += [(y, v)] * count
        else:
            for v, count in enumerate(_even_parts(n_class, k)):
                pairs += [(y, v)] * count
    order = rng.permutation(len(pairs))
    free_values = rng.integers(0, k, size=len(pairs))
    style_seeds = rng.integers(0, 2**63 - 1, size=len(pairs))
    samples = []
    for i, j in enumerate(order):
        y, v = pairs[j]
        free = int(free_values[i])
        color, background = (free, v) if cfg.spurious == "background" else (v, free)
        samples.append(WorldSample(y, color, background, int(style_seeds[i])))
    return samples


def sample_world(cfg: SyntheticWorldConfig, n: int, seed: int) -> list[WorldSample]:
    """Samples with every attribute uniform and independent: what world models are trained on."""
    rng = np.random.default_rng([cfg.seed, seed, 7])
    k = cfg.num_classes
    values = rng.integers(0, k, size=(n, 3))
    seeds = rng.integers(0, 2**63 - 1, size=n)
    return [WorldSample(int(a), int(b), int(c), int(s)) for (a, b, c), s in zip(values, seeds)]


def spurious_value(cfg: SyntheticWorldConfig, s: WorldSample) -> int:
    return s.background if cfg.spurious == "background" else s.color


def render_many(cfg: SyntheticWorldConfig, samples: list[WorldSample]) -> np.ndarray:
    """N x H x W x 3 uint8."""
    if not samples:
        return np.zeros((0, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    return np.stack([render(cfg, s) for s in samples])


def _even_parts(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
