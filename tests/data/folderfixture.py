"""A tiny dataset in the generic ``folder`` format: synthetic-world images saved as PNG files in a nested
layout, a CSV with image path, class, split and two attribute columns (the world's colour and background).

The pictures are the small world's (2 shapes x 2 colours x 2 backgrounds), so the world's committed
models (``data/world``) can explain and label them, and the shape is tied to the background in train as
in the world: a real shortcut for the audit to find.
"""

from __future__ import annotations

import csv
from pathlib import Path

CSV_COLUMNS = ("path", "label", "part", "color", "background")


def make_folder_dataset(root: Path, sizes: dict[str, int] | None = None, image_size: int = 32) -> Path:
    """Write PNGs under ``root/pictures/<split>/<class>/`` and ``root/labels.csv``; returns root."""
    from PIL import Image

    from world.synthetic import SyntheticWorldConfig, render_many, sample_split

    sizes = sizes or {"train": 60, "val": 24, "test": 32}
    cfg = SyntheticWorldConfig.from_preset("small", image_size=image_size, split_sizes=sizes, seed=0)
    root = Path(root)
    rows = []
    for split, value in (("train", "tr"), ("val", "va"), ("test", "te")):
        samples = sample_split(cfg, split)
        pixels = render_many(cfg, samples)
        for i, (s, px) in enumerate(zip(samples, pixels)):
            name = cfg.classes[s.shape]
            rel = Path("pictures") / split / name / f"{i:04d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(px).save(root / rel)
            rows.append((rel.as_posix(), name, value, cfg.colors[s.color], cfg.backgrounds[s.background]))
    with open(root / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        w.writerows(rows)
    return root


def folder_params(root: Path) -> dict:
    """The ``folder`` params section for :func:`make_folder_dataset`'s layout."""
    return {"root": str(root), "csv": "labels.csv", "image_column": "path", "class_column": "label",
            "split_column": "part", "attribute_columns": ["color", "background"], "class_names": None,
            "splits": {"train": "tr", "val": "va", "test": "te"}, "models": "world",
            "train": {"arch": "small_cnn", "pretrained": False, "image_size": 32, "batch_size": 32,
                      "optimizer": "adam", "lr": 0.001, "epochs": 2, "num_workers": 0}}
