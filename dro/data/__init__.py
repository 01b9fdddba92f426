"""Datasets: one normalised index for Waterbirds, CelebA and the synthetic world.

The names below are imported lazily, so that ``world.synthetic`` (numpy only) can be imported, e.g.
by the params schema to validate a world spec, without loading torch.
"""

from __future__ import annotations

from importlib import import_module

__all__ = [
    "DatasetError",
    "DatasetInfo",
    "GroupImageDataset",
    "Record",
    "open_prepared",
    "resolve_inside",
    "write_prepared",
]


def __getattr__(name: str):
    if name in __all__:
        return getattr(import_module("dro.data.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
