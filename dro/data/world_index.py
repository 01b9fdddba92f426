"""The synthetic world as a normalised index (records + pixels), ready for ``write_prepared``."""

from __future__ import annotations

import numpy as np

from dro.data.base import DatasetInfo, Record
from dro.data.synthetic import SPLITS, SyntheticWorldConfig, render_many, sample_split, spurious_value


def world_info(cfg: SyntheticWorldConfig) -> DatasetInfo:
    return DatasetInfo(
        name="synthetic",
        class_names=cfg.shapes,
        attribute_name=cfg.spurious,
        attribute_values=cfg.spurious_values,
    )


def build_synthetic(cfg: SyntheticWorldConfig) -> tuple[DatasetInfo, list[Record], np.ndarray, list[str]]:
    """Render every split. Returns the info, the records (source = row in ``pixels``), the pixels
    (N x H x W x 3 uint8) and each image's caption."""
    from dro.data.synthetic import caption

    records: list[Record] = []
    chunks: list[np.ndarray] = []
    captions: list[str] = []
    for split in SPLITS:
        samples = sample_split(cfg, split)
        start = len(records)
        records += [
            Record(split, s.shape, spurious_value(cfg, s), str(start + i)) for i, s in enumerate(samples)
        ]
        chunks.append(render_many(cfg, samples))
        captions += [caption(cfg, s) for s in samples]
    return world_info(cfg), records, np.concatenate(chunks), captions
