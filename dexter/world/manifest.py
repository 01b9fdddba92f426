"""The world models' manifest (``world.json``): which world they cover, so a mismatch fails loudly.

The committed models are trained on one world (shape/colour/background banks up to ``num_classes``,
one image size). A pipeline asking for a world they do not cover would otherwise run and produce
meaningless keywords; :func:`check_world_covered` stops it with a message naming the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "world.json"


class WorldNotCoveredError(ValueError):
    """The trained world models do not cover the requested synthetic world."""


def load_manifest(world_dir: Path | str) -> dict:
    path = Path(world_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no world manifest; train the world models with `python -m dexter.world train --out {world_dir}`"
        )
    return json.loads(path.read_text())


def check_world_covered(world_dir: Path | str, num_classes: int, image_size: int) -> dict:
    """Raise WorldNotCoveredError unless the models in ``world_dir`` cover this world; return the manifest."""
    manifest = load_manifest(world_dir)
    if num_classes > manifest["num_classes"]:
        raise WorldNotCoveredError(
            f"synthetic.num_classes={num_classes}, but the world models in {world_dir} cover only "
            f"{manifest['num_classes']} classes (shapes {manifest['shapes']}, colors {manifest['colors']}, "
            f"backgrounds {manifest['backgrounds']}); retrain them with "
            f"`python -m dexter.world train --num-classes {num_classes} --out {world_dir}`"
        )
    if image_size != manifest["image_size"]:
        raise WorldNotCoveredError(
            f"synthetic.image_size={image_size}, but the world models in {world_dir} were trained at "
            f"{manifest['image_size']} px; set synthetic.image_size: {manifest['image_size']} or retrain with "
            f"`python -m dexter.world train --image-size {image_size} --out {world_dir}`"
        )
    return manifest
