"""One interface for group-annotated image classification data.

Every dataset (Waterbirds, CelebA, the synthetic world) is reduced to the same thing: per split, a
list of images with a class ``y`` and a spurious attribute ``a`` (``-1`` where unknown). The
``prepare`` stage writes that list once as a normalised index (``index.csv`` + ``meta.json``);
every later stage opens the prepared index through :func:`open_prepared` and never needs to know
which dataset it is looking at.

The dataset owns its groups (as WILDS datasets do): the TRUE groups ``y x a`` that the oracle trains
on, and the EVALUATION cells that test worst-group accuracy is the minimum over. For Waterbirds and
CelebA the two are the same; the synthetic world trains on (class x bias-aligned/conflicting) and
evaluates over every (class, colour, background) cell (``cell`` per image, ``cell_attributes`` in
the info).
"""

from __future__ import annotations

from common.errors import UserInputError

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

SPLITS = ("train", "val", "test")
INDEX_FILE = "index.csv"
META_FILE = "meta.json"
IMAGES_FILE = "images.npz"  # in-memory datasets (the synthetic world) store their pixels here


class DatasetError(UserInputError, RuntimeError):
    """A dataset is missing, malformed, or asks to read outside its root."""


@dataclass(frozen=True)
class DatasetInfo:
    """What the labels mean. Group index = ``y * len(attribute_values) + a``.

    ``aligned_values``: per class, the attribute values that are bias-ALIGNED, where the dataset knows
    them by construction (the synthetic world); None = estimate them from the training split.
    ``cell_attributes``: ``((name, values), ...)`` of the evaluation cells, cell index =
    ``y`` then each attribute in this order, mixed radix; empty = the cells are the groups.
    """

    name: str
    class_names: tuple[str, ...]
    attribute_name: str
    attribute_values: tuple[str, ...]
    aligned_values: tuple[tuple[int, ...], ...] | None = None
    cell_attributes: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_groups(self) -> int:
        return len(self.class_names) * len(self.attribute_values)

    def group_name(self, g: int) -> str:
        y, a = divmod(g, len(self.attribute_values))
        return f"{self.class_names[y]}|{self.attribute_name}={self.attribute_values[a]}"

    @property
    def num_cells(self) -> int:
        """Number of evaluation cells (the groups when the dataset defines no finer cells)."""
        if not self.cell_attributes:
            return self.num_groups
        n = self.num_classes
        for _, values in self.cell_attributes:
            n *= len(values)
        return n

    def cell_name(self, cell: int) -> str:
        """``circle|color=red,background=water`` (or the group name when cells are the groups)."""
        if not self.cell_attributes:
            return self.group_name(cell)
        parts = []
        for name, values in reversed(self.cell_attributes):
            cell, v = divmod(cell, len(values))
            parts.append(f"{name}={values[v]}")
        return f"{self.class_names[cell]}|{','.join(reversed(parts))}"

    @property
    def cell_names(self) -> list[str]:
        return [self.cell_name(c) for c in range(self.num_cells)]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> DatasetInfo:
        aligned = d.get("aligned_values")
        return cls(
            name=d["name"],
            class_names=tuple(d["class_names"]),
            attribute_name=d["attribute_name"],
            attribute_values=tuple(d["attribute_values"]),
            aligned_values=None if aligned is None else tuple(tuple(v) for v in aligned),
            cell_attributes=tuple((n, tuple(v)) for n, v in d.get("cell_attributes", ())),
        )


@dataclass(frozen=True)
class Record:
    """One image of the normalised index. ``source`` is a path under the root or a row number;
    ``cell`` its evaluation cell where the dataset defines cells (-1 otherwise)."""

    split: str
    y: int
    a: int
    source: str
    cell: int = -1


class GroupImageDataset(torch.utils.data.Dataset):
    """One split. ``__getitem__`` gives ``(image, y, group)``; group is -1 where ``a`` is unknown.

    Images come either from an in-memory uint8 array (N x H x W x 3) or from files under ``root``;
    ``transform`` maps a PIL image to a tensor (default: [0,1] float CHW at native size).
    """

    def __init__(
        self,
        info: DatasetInfo,
        split: str,
        y: Sequence[int],
        a: Sequence[int],
        *,
        pixels: np.ndarray | None = None,
        files: Sequence[Path] | None = None,
        transform: Callable[[Image.Image], torch.Tensor] | None = None,
        cells: Sequence[int] | None = None,
    ) -> None:
        if (pixels is None) == (files is None):
            raise ValueError("give exactly one of pixels= or files=")
        self.info = info
        self.split = split
        self.y = np.asarray(y, dtype=np.int64)
        self.a = np.asarray(a, dtype=np.int64)
        self.pixels = pixels
        self.files = list(files) if files is not None else None
        self.transform = transform
        self.cells = None if cells is None else np.asarray(cells, dtype=np.int64)
        n = len(pixels) if pixels is not None else len(self.files)
        if not len(self.y) == len(self.a) == n:
            raise ValueError(f"{split}: {n} images but {len(self.y)} labels and {len(self.a)} attributes")
        if info.cell_attributes and (self.cells is None or len(self.cells) != n):
            raise ValueError(f"{split}: {info.name} defines evaluation cells, so every image needs its cell")

    def __len__(self) -> int:
        return len(self.y)

    @property
    def groups(self) -> np.ndarray:
        k = len(self.info.attribute_values)
        return np.where(self.a >= 0, self.y * k + self.a, -1)

    @property
    def eval_cells(self) -> np.ndarray:
        """The evaluation cell of every image (-1 unknown): what test worst-group is the minimum over."""
        return self.cells if self.info.cell_attributes else self.groups

    def image(self, i: int) -> Image.Image:
        if self.pixels is not None:
            return Image.fromarray(self.pixels[i])
        path = self.files[i]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except FileNotFoundError as e:
            raise DatasetError(f"image file missing: {path}") from e
        except (UnidentifiedImageError, OSError) as e:
            raise DatasetError(f"corrupt or unreadable image: {path} ({e})") from e

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        im = self.image(i)
        x = self.transform(im) if self.transform is not None else _to_tensor(im)
        return x, int(self.y[i]), int(self.groups[i])

    def with_transform(self, transform: Callable[[Image.Image], torch.Tensor] | None) -> GroupImageDataset:
        return GroupImageDataset(
            self.info, self.split, self.y, self.a,
            pixels=self.pixels, files=self.files, transform=transform, cells=self.cells,
        )

    def group_counts(self) -> dict[str, int]:
        counts = np.bincount(self.groups[self.groups >= 0], minlength=self.info.num_groups)
        out = {self.info.group_name(g): int(c) for g, c in enumerate(counts)}
        unknown = int((self.groups < 0).sum())
        if unknown:
            out["unknown"] = unknown
        return out


def _to_tensor(im: Image.Image) -> torch.Tensor:
    arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def resolve_inside(root: Path, relative: str) -> Path:
    """``root / relative``, refusing anything that would read outside ``root`` (``..``, absolute paths, symlinks out)."""
    root = root.resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise DatasetError(f"path {relative!r} in the metadata escapes the dataset root {root}")
    return candidate


def find_dataset_dir(root: Path, subfolder: str, markers: Sequence[str]) -> Path | None:
    """``root`` or ``root/subfolder``, whichever holds one of the ``markers`` files; None if neither.

    Users point a dataset's root either at the extracted folder itself or at its parent."""
    root = Path(root)
    for candidate in (root, root / subfolder):
        if any((candidate / m).is_file() for m in markers):
            return candidate
    return None


def dataset_dir(root: Path, subfolder: str, markers: Sequence[str], dataset: str, where_to_put: str) -> Path:
    """Like :func:`find_dataset_dir` but raises a :class:`DatasetError` that says where the files go."""
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{dataset}: folder {root} does not exist; {where_to_put}")
    found = find_dataset_dir(root, subfolder, markers)
    if found is None:
        raise DatasetError(
            f"{dataset}: no {' or '.join(markers)} in {root} or {root / subfolder}; {where_to_put}"
        )
    return found


# ---------------------------------------------------------------------------------------------
# The normalised index written by the prepare stage
# ---------------------------------------------------------------------------------------------


def write_prepared(
    out_dir: Path,
    info: DatasetInfo,
    records: Sequence[Record],
    *,
    root: Path | None = None,
    pixels: np.ndarray | None = None,
) -> None:
    """Write ``index.csv``, ``meta.json`` and, for in-memory data, ``images.npz`` (atomically each)."""
    from common.io import atomic_write_json, atomic_writer

    out_dir.mkdir(parents=True, exist_ok=True)
    if pixels is not None:
        with atomic_writer(out_dir / IMAGES_FILE, "wb") as f:
            np.savez(f, pixels=pixels)
    with atomic_writer(out_dir / INDEX_FILE, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "y", "a", "source", "cell"])
        for r in records:
            w.writerow([r.split, r.y, r.a, r.source, r.cell])
    meta = {"info": info.to_json(), "root": str(root.resolve()) if root else None,
            "storage": "npz" if pixels is not None else "files"}
    atomic_write_json(out_dir / META_FILE, meta)


def open_prepared(
    prepared_dir: Path, transform: Callable[[Image.Image], torch.Tensor] | None = None
) -> dict[str, GroupImageDataset]:
    """All splits of a prepared dataset, keyed by split name."""
    prepared_dir = Path(prepared_dir)
    meta_path = prepared_dir / META_FILE
    if not meta_path.exists():
        raise DatasetError(f"no prepared dataset at {prepared_dir} (run the prepare stage first)")
    meta = json.loads(meta_path.read_text())
    info = DatasetInfo.from_json(meta["info"])
    rows: dict[str, list[Record]] = {s: [] for s in SPLITS}
    with open(prepared_dir / INDEX_FILE, newline="") as f:
        for row in csv.DictReader(f):
            rows[row["split"]].append(Record(row["split"], int(row["y"]), int(row["a"]), row["source"],
                                             int(row.get("cell", -1))))
    pixels = None
    if meta["storage"] == "npz":
        with np.load(prepared_dir / IMAGES_FILE) as z:
            pixels = z["pixels"]
    out = {}
    for split, recs in rows.items():
        y = [r.y for r in recs]
        a = [r.a for r in recs]
        cells = [r.cell for r in recs] if info.cell_attributes else None
        if pixels is not None:
            out[split] = GroupImageDataset(info, split, y, a, pixels=pixels[[int(r.source) for r in recs]],
                                           transform=transform, cells=cells)
        else:
            root = Path(meta["root"])
            out[split] = GroupImageDataset(info, split, y, a, files=[root / r.source for r in recs],
                                           transform=transform, cells=cells)
    return out
