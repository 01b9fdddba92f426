"""Datasets: one normalised index for Waterbirds, CelebA and the synthetic world."""

from dro.data.base import (
    DatasetError,
    DatasetInfo,
    GroupImageDataset,
    Record,
    open_prepared,
    resolve_inside,
    write_prepared,
)

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "GroupImageDataset",
    "Record",
    "open_prepared",
    "resolve_inside",
    "write_prepared",
]
