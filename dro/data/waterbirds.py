"""Waterbirds in its official on-disk layout (docs/METHOD.md section 5).

``waterbird_complete95_forest2water2/`` holds the images (``<species folder>/<file>.jpg``) and
``metadata.csv`` with the columns img_id, img_filename, y (1 = waterbird), split (0 train, 1 val,
2 test), place (0 land, 1 water) and place_filename. Group = 2*y + place.

The loader only reads the metadata and checks that every image it names exists inside the dataset
folder; the ``prepare`` stage then decodes each one (:mod:`dro.data.verify`), and training decodes them
again, lazily, through :class:`dro.data.GroupImageDataset`.
"""

from __future__ import annotations

import csv
from pathlib import Path

from dro.data.base import DatasetError, DatasetInfo, Record, dataset_dir, find_dataset_dir, resolve_inside

FOLDER = "waterbird_complete95_forest2water2"
METADATA = "metadata.csv"
URL = "https://downloads.cs.stanford.edu/nlp/data/dro/waterbird_complete95_forest2water2.tar.gz"
REQUIRED_COLUMNS = ("img_id", "img_filename", "y", "split", "place")
SPLIT_CODES = {"0": "train", "1": "val", "2": "test"}

INFO = DatasetInfo(
    name="waterbirds",
    class_names=("landbird", "waterbird"),
    attribute_name="place",
    attribute_values=("land", "water"),
)


def where_to_put(root: Path) -> str:
    """The one sentence every 'not found' error ends with: exactly which files go where."""
    return (
        f"put the extracted folder at {Path(root) / FOLDER}/ so that {Path(root) / FOLDER / METADATA} and the "
        f"species folders (e.g. {FOLDER}/001.Black_footed_Albatross/) sit inside it "
        f"(download {URL} and run `tar -xzf {FOLDER}.tar.gz -C {root}`), or set waterbirds.download: true"
    )


def find_waterbirds_dir(root: Path) -> Path | None:
    """The dataset folder: ``root`` itself if it holds ``metadata.csv``, else ``root/<FOLDER>``; None if neither."""
    return find_dataset_dir(root, FOLDER, (METADATA,))


def waterbirds_dir(root: Path) -> Path:
    """Like :func:`find_waterbirds_dir` but raises a :class:`DatasetError` that says where the files go."""
    return dataset_dir(root, FOLDER, (METADATA,), "Waterbirds", where_to_put(root))


def load_waterbirds(root: Path) -> tuple[DatasetInfo, list[Record]]:
    """Read ``metadata.csv`` into records whose ``source`` is relative to the dataset folder.

    ``root`` may be the dataset folder itself or its parent; :func:`waterbirds_dir` says which folder the
    sources are relative to (pass that as ``root=`` to :func:`dro.data.write_prepared`).
    """
    folder = waterbirds_dir(root)
    meta_path = folder / METADATA
    with open(meta_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing_cols = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing_cols:
            raise DatasetError(
                f"Waterbirds: {meta_path} lacks column(s) {missing_cols} (has {columns}); expected the official "
                f"metadata.csv with columns {list(REQUIRED_COLUMNS) + ['place_filename']}"
            )
        reader.fieldnames = columns
        records = [_record(row, line, meta_path) for line, row in enumerate(reader, start=2)]
    if not records:
        raise DatasetError(f"Waterbirds: {meta_path} has a header but no rows; {where_to_put(folder.parent)}")
    check_files_exist(folder, [r.source for r in records], "Waterbirds")
    return INFO, records


def _record(row: dict[str, str], line: int, meta_path: Path) -> Record:
    def field(name: str, allowed: tuple[str, ...]) -> str:
        value = (row.get(name) or "").strip()
        if value not in allowed:
            raise DatasetError(f"Waterbirds: {meta_path} line {line}: {name}={value!r}, expected one of {list(allowed)}")
        return value

    y = int(field("y", ("0", "1")))
    split = SPLIT_CODES[field("split", tuple(SPLIT_CODES))]
    place = int(field("place", ("0", "1")))
    filename = (row.get("img_filename") or "").strip()
    if not filename:
        raise DatasetError(f"Waterbirds: {meta_path} line {line}: empty img_filename")
    return Record(split=split, y=y, a=place, source=filename)


def check_files_exist(folder: Path, sources: list[str], dataset: str, show: int = 5) -> None:
    """Refuse sources that escape ``folder``; report ALL missing files in one error (count + first few).

    One error for everything is the point: a partial copy missing 3000 images should say so once, not
    fail 3000 times during training.
    """
    missing = []
    resolved_dirs: dict[str, Path] = {}  # resolve each folder once: 200k full resolves take ~10 s here
    try:
        for source in sources:
            parent, _, name = source.rpartition("/")
            if name in ("", ".", "..") or Path(source).is_absolute():
                path = resolve_inside(folder, source)  # raises for absolute paths and escapes
            else:
                if parent not in resolved_dirs:
                    try:
                        resolved_dirs[parent] = resolve_inside(folder, parent or ".")
                    except DatasetError:
                        resolve_inside(folder, source)  # the same refusal, naming the whole path
                        raise
                path = resolved_dirs[parent] / name
                if path.is_symlink():  # a link may point anywhere: resolve it fully
                    path = resolve_inside(folder, source)
            if not path.is_file():
                missing.append(source)
    except DatasetError as e:
        raise DatasetError(
            f"{dataset}: {e} (only files inside the dataset folder are read; if the images live elsewhere "
            f"via a symlink, point the root at the real folder instead)"
        ) from None
    if missing:
        first = ", ".join(missing[:show])
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(sources)} image files named in the metadata are missing under "
            f"{folder} (first: {first}); the copy is incomplete: re-extract the archive there"
        )
