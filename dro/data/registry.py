"""The dataset kinds the pipeline knows, one entry each: everything that differs between datasets.

Code that would otherwise compare ``dataset == "waterbirds"`` asks the registry instead
(:func:`dataset_kind`): the loader the ``prepare`` stage calls, the title of the results table, the
average-accuracy convention, the CLIP prompt templates of the labelling, how an image is made square,
and whether the dataset is the built-in world (whose world models, gates, vocabulary and ablation rows
only exist there). Adding a dataset kind is one entry here, its loader, and its params section (with its
name in ``stages.params.DatasetName``).

This module imports neither torch nor PIL (the params schema reads it); loaders import what they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Geometry = Literal["waterbirds", "centre_square", "resize"]


@dataclass(frozen=True)
class Prepared:
    """What a loader hands the ``prepare`` stage: the normalised index and where its images live.

    ``root``: the folder the records' sources are relative to (file-backed data); ``pixels``: in-memory
    images (the world); ``decode``: whether every file should be decoded once before training."""

    info: Any  # dro.data.base.DatasetInfo
    records: list
    root: Path | None = None
    pixels: Any = None
    decode: bool = True


@dataclass(frozen=True)
class DatasetKind:
    """One dataset kind.

    ``convention``: the average-accuracy convention its papers report (``dro.evaluate``);
    ``templates``: the CLIP prompt-template set (``dro.templates.TEMPLATE_SETS``); ``class_templates``:
    B2T's class templates; ``geometry``: how an image becomes a square at the evaluation geometry of
    its papers (``dro.sources.load_square``); ``world``: the built-in synthetic world (world models,
    world gates, the world's vocabulary, the ablation rows); ``load(section)``: the loader."""

    name: str
    title: str
    convention: Literal["plain", "train_weighted"]
    templates: str
    class_templates: tuple[str, ...]
    geometry: Geometry
    world: bool
    load: Callable[[Any], Prepared]


def _load_synthetic(section) -> Prepared:
    from dro.data.world_index import build_synthetic

    info, records, pixels, _ = build_synthetic(section.world_config())
    return Prepared(info, records, pixels=pixels, decode=False)


def _load_waterbirds(section) -> Prepared:
    from dro.data.download import ensure_waterbirds
    from dro.data.waterbirds import load_waterbirds

    root = ensure_waterbirds(Path(section.root), download=section.download)
    info, records = load_waterbirds(root)
    return Prepared(info, records, root=root)


def _load_celeba(section) -> Prepared:
    from dro.data.celeba import load_celeba
    from dro.data.download import ensure_celeba

    root = ensure_celeba(Path(section.root), download=section.download)
    info, records = load_celeba(root, target=section.target, spurious=section.spurious)
    return Prepared(info, records, root=root)


def _load_folder(section) -> Prepared:
    from dro.data.folder import FolderSpec, load_folder

    spec = FolderSpec.from_section(section)
    info, records = load_folder(spec)
    return Prepared(info, records, root=spec.root_dir)


KINDS: dict[str, DatasetKind] = {
    "synthetic": DatasetKind("synthetic", "Synthetic", "plain", "world", ("{}",), "resize", True, _load_synthetic),
    "waterbirds": DatasetKind(
        "waterbirds", "Waterbirds", "train_weighted", "imagenet",
        ("{}", "bird on {}", "bird on a {}", "bird and a {}", "fowl on {}", "fowl on a {}", "fowl and a {}"),
        "waterbirds", False, _load_waterbirds),
    "celeba": DatasetKind("celeba", "CelebA", "plain", "imagenet", ("{}", "{} celebrity"), "centre_square", False,
                          _load_celeba),
    "folder": DatasetKind("folder", "Folder dataset", "plain", "imagenet", ("{}",), "centre_square", False,
                          _load_folder),
}


def dataset_kind(name: str) -> DatasetKind:
    """The registry entry of ``name`` (a ``dataset`` value of params.yaml, or a ``DatasetInfo.name``)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; expected one of {list(KINDS)}") from None
