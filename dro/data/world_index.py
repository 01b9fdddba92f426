"""The synthetic world as a normalised index (records + pixels), ready for ``write_prepared``.

Its groups: ``a`` is the TRUE bias-conflicting flag of each image (see
:func:`world.synthetic.is_conflicting`), so the true group is ``2 * y + conflicting``, the same
layout as the pseudo-groups; the evaluation cells are every (class, colour, background).
"""

from __future__ import annotations

import numpy as np

from dro.data.base import DatasetInfo, Record
from world.synthetic import SPLITS, SyntheticWorldConfig, cell_index, is_conflicting, render_many, sample_split

SLICE_ATTRIBUTE = "shortcut"
SLICE_VALUES = ("aligned", "conflicting")


def world_info(cfg: SyntheticWorldConfig) -> DatasetInfo:
    return DatasetInfo(
        name="synthetic",
        class_names=cfg.classes,
        attribute_name=SLICE_ATTRIBUTE,
        attribute_values=SLICE_VALUES,
        aligned_values=((0,),) * cfg.num_classes,  # a = 0 is bias-aligned by construction
        cell_attributes=(("color", cfg.colors), ("background", cfg.backgrounds)),
    )


def build_synthetic(cfg: SyntheticWorldConfig) -> tuple[DatasetInfo, list[Record], np.ndarray, list[str]]:
    """Render every split. Returns the info, the records (source = row in ``pixels``), the pixels
    (N x H x W x 3 uint8) and each image's caption."""
    from world.synthetic import caption

    records: list[Record] = []
    chunks: list[np.ndarray] = []
    captions: list[str] = []
    for split in SPLITS:
        samples = sample_split(cfg, split)
        start = len(records)
        records += [
            Record(split, s.shape, int(is_conflicting(cfg, s)), str(start + i), cell_index(cfg, s))
            for i, s in enumerate(samples)
        ]
        chunks.append(render_many(cfg, samples))
        captions += [caption(cfg, s) for s in samples]
    return world_info(cfg), records, np.concatenate(chunks), captions
