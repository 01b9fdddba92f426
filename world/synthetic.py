"""A procedural spurious-correlation world: coloured shapes on backgrounds, with planted shortcuts.

The class is the object's shape. Two nuisance attributes vary: the object's colour and the background.
Each class may carry its own shortcut: one value of one attribute (``circle``: background ``water``)
that the training split ties to that class with a chosen strength; a class without one is unbiased.
Val and test are balanced over every (class, colour, background) cell, so the worst cell shows whether
a classifier learnt the shape or a shortcut. Every image has a caption in a small fixed vocabulary
("a picture of a red circle on water"), which is what lets the project train small text-to-image, CLIP
and BERT models on this world (see ``world``).

Everything is a pure function of the config and the seed: the same config always renders the same
pixels, so the world needs no files on disk to be reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from common.errors import UserInputError

SHAPES = ("circle", "square", "triangle", "cross")
COLORS = ("red", "yellow", "purple", "white")
BACKGROUNDS = ("water", "land", "snow", "sand")
ATTRIBUTES = ("color", "background")  # the nuisance attributes a shortcut can use

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
# The shape's brightness jitter is [0.9, 1.05] of its colour, but white is never dimmed: at 0.9 a white shape on
# snow stood only ~16 grey levels off the snow's texture in a tenth of its pixels (every other colour-background
# pair: >= 69), so that cell was near-invisible for every class (group DRO with true groups: 0.75 on white crosses
# on snow with 125 training crosses there; dimmed to at most 0.98: 0.87 on its worst cell, never dimmed: 0.88 and
# white-on-snow no longer the worst). The narrower range lies inside the old one, which the world models saw.
_DIMMEST = {"white": 1.0}
# Per-pixel Gaussian sensor noise of every image, in grey levels. The world's VAE decodes it away (a decoder
# renders the mean), so DEXTER and the verification add it back to generated images: synthetic.dexter.pixel_noise
# in params.yaml is this over 255 (dexter.sampler.add_pixel_noise says why).
SENSOR_NOISE = 6.0
SPLITS = ("train", "val", "test")


class WorldSpecError(UserInputError, ValueError):
    """An impossible world: the message starts with the offending key (``shortcuts.circle.value: ...``)."""


@dataclass(frozen=True)
class Shortcut:
    """``value`` of ``attribute`` holds for a share ``correlation`` of the class's TRAINING images."""

    attribute: str
    value: str
    correlation: float


@dataclass(frozen=True)
class SyntheticWorldConfig:
    """Which shapes, colours and backgrounds the world has, which class carries which shortcut, and
    how it is drawn. ``shortcuts`` maps class name -> :class:`Shortcut` (or a mapping with its fields)
    or None; a class it does not name is unbiased. Invalid worlds raise :class:`WorldSpecError`."""

    classes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = COLORS
    backgrounds: tuple[str, ...] = BACKGROUNDS
    shortcuts: Mapping[str, Shortcut | None] = field(default_factory=lambda: dict(DEFAULT_SHORTCUTS))
    image_size: int = 32
    split_sizes: dict[str, int] = field(
        default_factory=lambda: {"train": 4000, "val": 960, "test": 1920}
    )
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("classes", "colors", "backgrounds"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        object.__setattr__(self, "shortcuts", {
            str(c): _as_shortcut(s, c) for c, s in dict(self.shortcuts or {}).items()})
        _check_values("classes", self.classes, SHAPES)
        _check_values("colors", self.colors, COLORS)
        _check_values("backgrounds", self.backgrounds, BACKGROUNDS)
        seen: dict[tuple[str, str], str] = {}
        for c, s in self.shortcuts.items():
            if c not in self.classes:
                raise WorldSpecError(f"shortcuts.{c}: unknown class {c!r}; classes are {list(self.classes)}")
            if s is None:
                continue
            if s.attribute not in ATTRIBUTES:
                raise WorldSpecError(f"shortcuts.{c}.attribute: {s.attribute!r} is not one of {list(ATTRIBUTES)}")
            values = self.values(s.attribute)
            if s.value not in values:
                raise WorldSpecError(f"shortcuts.{c}.value: {s.value!r} is not one of the world's "
                                     f"{_PLURAL[s.attribute]} {list(values)}")
            if not 0.0 <= s.correlation <= 1.0:
                raise WorldSpecError(f"shortcuts.{c}.correlation: must be in [0, 1], got {s.correlation}")
            other = seen.setdefault((s.attribute, s.value), c)
            if other != c:
                raise WorldSpecError(f"shortcuts.{c}.value: {s.attribute} {s.value!r} is already the shortcut "
                                     f"of {other}; two classes cannot share one shortcut value")
        if self.image_size < 16:
            raise WorldSpecError(f"image_size: must be at least 16, got {self.image_size}")
        unknown = set(self.split_sizes) - set(SPLITS)
        if unknown:
            raise WorldSpecError(f"split_sizes: unknown split(s) {sorted(unknown)}; expected {list(SPLITS)}")

    @classmethod
    def first(cls, n: int, **kw) -> SyntheticWorldConfig:
        """The first ``n`` shapes, colours and backgrounds, no shortcut: the world the world models are
        trained on (attributes drawn uniform and independent by :func:`sample_world`)."""
        return cls(classes=SHAPES[:n], colors=COLORS[:n], backgrounds=BACKGROUNDS[:n], shortcuts={}, **kw)

    @classmethod
    def from_preset(cls, name: str, **kw) -> SyntheticWorldConfig:
        """A named world of :data:`WORLD_PRESETS` (``small``: the 2x2 quick world; ``rich``: the default)."""
        if name not in WORLD_PRESETS:
            raise WorldSpecError(f"preset: unknown preset {name!r}; expected one of {sorted(WORLD_PRESETS)}")
        return cls(**{**WORLD_PRESETS[name], **kw})

    @property
    def shapes(self) -> tuple[str, ...]:
        """The classes, in class-index order (the name the world models use)."""
        return self.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def values(self, attribute: str) -> tuple[str, ...]:
        """The world's values of a nuisance attribute (``color`` or ``background``)."""
        if attribute == "color":
            return self.colors
        if attribute == "background":
            return self.backgrounds
        raise WorldSpecError(f"unknown attribute {attribute!r}; expected one of {list(ATTRIBUTES)}")

    @property
    def attribute_values(self) -> dict[str, list[str]]:
        """``{"color": [...], "background": [...]}``: plain lists, for code that must not import dro."""
        return {a: list(self.values(a)) for a in ATTRIBUTES}

    def shortcut(self, class_name: str) -> Shortcut | None:
        return self.shortcuts.get(class_name)

    @property
    def biased_classes(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if self.shortcut(c) is not None)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """Every word any caption of this world can contain."""
        return ("a", "picture", "of", "on", *self.colors, *self.shapes, *self.backgrounds)

    @property
    def num_cells(self) -> int:
        return len(self.classes) * len(self.colors) * len(self.backgrounds)


def _as_shortcut(s, class_name: str) -> Shortcut | None:
    if s is None or isinstance(s, Shortcut):
        return s
    if isinstance(s, Mapping):
        missing = {"attribute", "value", "correlation"} - set(s)
        if missing:
            raise WorldSpecError(f"shortcuts.{class_name}: missing {sorted(missing)}")
        return Shortcut(str(s["attribute"]), str(s["value"]), float(s["correlation"]))
    raise WorldSpecError(f"shortcuts.{class_name}: expected null or {{attribute, value, correlation}}, got {s!r}")


def _check_values(key: str, chosen: tuple[str, ...], known: tuple[str, ...]) -> None:
    unknown = [v for v in chosen if v not in known]
    if unknown:
        raise WorldSpecError(f"{key}: unknown value(s) {unknown}; the renderer draws {list(known)}")
    if len(set(chosen)) != len(chosen):
        raise WorldSpecError(f"{key}: has duplicates: {list(chosen)}")
    if len(chosen) < 2:
        raise WorldSpecError(f"{key}: needs at least 2 values, got {list(chosen)}")


_PLURAL = {"color": "colors", "background": "backgrounds"}

# The example world: three biased classes on two different attributes, and one unbiased class.
DEFAULT_SHORTCUTS: dict[str, Shortcut | None] = {
    "circle": Shortcut("background", "water", 0.95),
    "square": Shortcut("color", "red", 0.90),
    "triangle": Shortcut("background", "snow", 0.95),
    "cross": None,
}
WORLD_PRESETS: dict[str, dict] = {
    # the default: 4 shapes x 4 colours x 4 backgrounds (64 evaluation cells)
    "rich": dict(classes=SHAPES, colors=COLORS, backgrounds=BACKGROUNDS, shortcuts=DEFAULT_SHORTCUTS),
    # the original 2 x 2 x 2 world for quick runs: circle on water, square on land
    "small": dict(classes=SHAPES[:2], colors=COLORS[:2], backgrounds=BACKGROUNDS[:2],
                  shortcuts={"circle": Shortcut("background", "water", 0.95),
                             "square": Shortcut("background", "land", 0.95)}),
}


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
    name = cfg.colors[s.color]
    image[mask] = np.array(_RGB[name], dtype=np.float32) * rng.uniform(_DIMMEST.get(name, 0.9), 1.05)
    image += rng.normal(0.0, SENSOR_NOISE, size=image.shape)
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


def carries(cfg: SyntheticWorldConfig, s: WorldSample, shortcut: Shortcut) -> bool:
    """Whether a sample shows the shortcut's value (whatever its class)."""
    index = s.color if shortcut.attribute == "color" else s.background
    return cfg.values(shortcut.attribute)[index] == shortcut.value


def is_conflicting(cfg: SyntheticWorldConfig, s: WorldSample) -> bool:
    """The true bias-conflicting slice. A biased class: the image does NOT carry its own shortcut value.
    An unbiased class: the image carries ANOTHER class's shortcut value (a cross on water looks like a
    circle to a model that learnt circle = water), so its aligned images are the ones no shortcut
    pulls elsewhere. With no shortcut anywhere every image is aligned."""
    own = cfg.shortcut(cfg.classes[s.shape])
    if own is not None:
        return not carries(cfg, s, own)
    return any(carries(cfg, s, sc) for sc in cfg.shortcuts.values() if sc is not None)


def cell_index(cfg: SyntheticWorldConfig, s: WorldSample) -> int:
    """The evaluation cell of a sample: ``(shape * |colors| + color) * |backgrounds| + background``."""
    return (s.shape * len(cfg.colors) + s.color) * len(cfg.backgrounds) + s.background


def sample_split(cfg: SyntheticWorldConfig, split: str) -> list[WorldSample]:
    """The latent samples of one split, with exact (not sampled) counts.

    Classes are balanced. Val/test: every (class, colour, background) cell has the same size (+-1),
    which is what "balanced" means for evaluation. Train, per class with a shortcut: ``round(correlation
    * n_class)`` images carry the shortcut value, the rest are spread evenly over the attribute's other
    values, and the other attribute is spread evenly inside each of those; a class without a shortcut
    is spread evenly over all its cells.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    n = cfg.split_sizes.get(split, 0)
    n_colors, n_backgrounds = len(cfg.colors), len(cfg.backgrounds)
    rng = np.random.default_rng([cfg.seed, SPLITS.index(split)])
    cells: list[tuple[int, int, int]] = []  # (class, color, background)
    for y, n_class in enumerate(_even_parts(n, cfg.num_classes)):
        sc = cfg.shortcut(cfg.classes[y]) if split == "train" else None
        if sc is None:
            pairs = [(c, b) for c in range(n_colors) for b in range(n_backgrounds)]
            for (c, b), count in zip(pairs, _even_parts(n_class, len(pairs))):
                cells += [(y, c, b)] * count
            continue
        values = cfg.values(sc.attribute)
        shortcut = values.index(sc.value)
        n_aligned = int(round(sc.correlation * n_class))
        others = [v for v in range(len(values)) if v != shortcut]
        per_value = {shortcut: n_aligned, **dict(zip(others, _even_parts(n_class - n_aligned, len(others))))}
        n_free = n_backgrounds if sc.attribute == "color" else n_colors
        for v, count in sorted(per_value.items()):
            for f, m in enumerate(_even_parts(count, n_free)):
                cells += [(y, v, f) if sc.attribute == "color" else (y, f, v)] * m
    order = rng.permutation(len(cells))
    style_seeds = rng.integers(0, 2**63 - 1, size=len(cells))
    return [WorldSample(*cells[j], int(style_seeds[i])) for i, j in enumerate(order)]


def sample_world(cfg: SyntheticWorldConfig, n: int, seed: int) -> list[WorldSample]:
    """Samples with every attribute uniform and independent: what world models are trained on."""
    rng = np.random.default_rng([cfg.seed, seed, 7])
    high = np.array([len(cfg.classes), len(cfg.colors), len(cfg.backgrounds)])
    values = rng.integers(0, high, size=(n, 3))
    seeds = rng.integers(0, 2**63 - 1, size=n)
    return [WorldSample(int(a), int(b), int(c), int(s)) for (a, b, c), s in zip(values, seeds)]


def render_many(cfg: SyntheticWorldConfig, samples: list[WorldSample]) -> np.ndarray:
    """N x H x W x 3 uint8."""
    if not samples:
        return np.zeros((0, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    return np.stack([render(cfg, s) for s in samples])


def _even_parts(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
