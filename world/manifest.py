"""The world models' manifest (``world.json``): which world they cover, so a mismatch fails loudly.

The committed models are trained on one world (the shapes, colours and backgrounds world.json lists,
one image size). A pipeline asking for a world they do not cover would otherwise run and produce
meaningless keywords; :func:`check_world_covered` stops it with a message naming the problem.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from common.errors import UserInputError

MANIFEST = "world.json"


class WorldNotCoveredError(UserInputError, ValueError):
    """The trained world models do not cover the requested synthetic world."""


def load_manifest(world_dir: Path | str) -> dict:
    path = Path(world_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no world manifest; train the world models with `python -m world train --out {world_dir}`"
        )
    return json.loads(path.read_text())


def check_world_covered(world_dir: Path | str, image_size: int, *, shapes: Sequence[str], colors: Sequence[str],
                        backgrounds: Sequence[str]) -> dict:
    """Raise WorldNotCoveredError unless the models in ``world_dir`` know every shape, colour and
    background the world asks for, at its image size; return the manifest."""
    manifest = load_manifest(world_dir)
    for key, wanted in (("classes", shapes), ("colors", colors), ("backgrounds", backgrounds)):
        known = manifest["shapes" if key == "classes" else key]
        missing = [w for w in wanted if w not in known]
        if missing:
            raise WorldNotCoveredError(
                f"synthetic.{key} asks for {missing}, but the world models in {world_dir} were trained on "
                f"shapes {manifest['shapes']}, colors {manifest['colors']}, backgrounds {manifest['backgrounds']}; "
                f"point synthetic.models at models that cover them, or retrain with "
                f"`python -m world train --num-classes 4 --out {world_dir}`"
            )
    if image_size != manifest["image_size"]:
        raise WorldNotCoveredError(
            f"synthetic.image_size={image_size}, but the world models in {world_dir} were trained at "
            f"{manifest['image_size']} px; set synthetic.image_size: {manifest['image_size']} or retrain with "
            f"`python -m world train --image-size {image_size} --out {world_dir}`"
        )
    return manifest
