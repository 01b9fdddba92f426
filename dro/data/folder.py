"""Bring your own dataset (``dataset: folder``): a CSV naming each image, its class and split, with
optional attribute columns, over any folder layout.

Example (``folder.root: data/pets``, ``folder.csv: labels.csv``)::

    image,class,split,background
    train/cats/001.png,cat,train,indoor
    photos/dog_17.jpg,dog,val,outdoor
    test/x.png,dog,test,

Image paths are relative to ``root`` and must stay inside it. Class names come from the CSV (the
distinct values of the class column, sorted) or from ``class_names`` (a list, or a file with one name a
line; then the class column may also hold 0-based indices into it). Attribute columns are optional and
used ONLY for evaluation and the oracle row: their joint value per image is the TRUE spurious attribute
(groups = class x attribute); an empty cell is an unknown attribute. Without attribute columns every
attribute is unknown: no row may train on true groups, and the test is evaluated per class (worst-group
accuracy is then worst-class accuracy). DEXTER, the labelling and every data-free row never read them.

Everything a user can get wrong in the CSV (missing column, unknown split or class, a path outside the
root, a missing image) is ONE :class:`~dro.data.base.DatasetError` line, raised before any image is decoded.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from dro.data.base import SPLITS, DatasetError, DatasetInfo, Record

# Without attribute columns: every attribute is unknown (a = -1: no true group, no labelling quality), and
# the evaluation cells are the classes (one cell attribute with one value).
NO_ATTRIBUTE = ("attributes", ("none",))


@dataclass(frozen=True)
class FolderSpec:
    """The ``folder`` params section as plain values (see :mod:`stages.params.data`)."""

    root: Path
    csv: str = "metadata.csv"
    image_column: str = "image"
    class_column: str = "class"
    split_column: str = "split"
    attribute_columns: tuple[str, ...] = ()
    class_names: tuple[str, ...] | str | None = None  # the names, a file of names (relative to root), or None
    splits: dict[str, str] = field(default_factory=lambda: {s: s for s in SPLITS})  # our split -> CSV value

    @classmethod
    def from_section(cls, section) -> FolderSpec:
        names = section.class_names
        return cls(root=Path(section.root), csv=section.csv, image_column=section.image_column,
                   class_column=section.class_column, split_column=section.split_column,
                   attribute_columns=tuple(section.attribute_columns),
                   class_names=tuple(names) if isinstance(names, list) else names, splits=dict(section.splits))

    @property
    def root_dir(self) -> Path:
        return self.root.resolve()

    @property
    def csv_path(self) -> Path:
        path = Path(self.csv)
        return path if path.is_absolute() else self.root / path


def load_folder(spec: FolderSpec) -> tuple[DatasetInfo, list[Record]]:
    """Read and check the CSV; records' sources are relative to ``spec.root``. Raises DatasetError."""
    if not spec.root.is_dir():
        raise DatasetError(f"folder: root {spec.root} is not a folder (set folder.root to the folder of your images)")
    csv_path = spec.csv_path
    if not csv_path.is_file():
        raise DatasetError(f"folder: CSV {csv_path} not found (set folder.csv, relative to folder.root {spec.root})")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        wanted = {"image_column": spec.image_column, "class_column": spec.class_column,
                  "split_column": spec.split_column}
        wanted.update({f"attribute_columns[{i}]": c for i, c in enumerate(spec.attribute_columns)})
        for key, column in wanted.items():
            if column not in columns:
                raise DatasetError(f"folder: {csv_path} has no column {column!r} (folder.{key}); its columns are "
                                   f"{columns}")
        reader.fieldnames = columns
        rows = [(line, {k: (v or "").strip() for k, v in row.items() if k is not None})
                for line, row in enumerate(reader, start=2)]
    if not rows:
        raise DatasetError(f"folder: {csv_path} has a header but no rows")
    class_names = _class_names(spec, rows, csv_path)
    split_of = {value: split for split, value in spec.splits.items()}
    attr_values = sorted({_joint(row, spec.attribute_columns) for _, row in rows} - {""})
    records = []
    for line, row in rows:
        where = f"folder: {csv_path} line {line}"
        split = split_of.get(row[spec.split_column])
        if split is None:
            raise DatasetError(f"{where}: unknown split {row[spec.split_column]!r}; expected one of "
                               f"{list(split_of)} (folder.splits maps train/val/test to the CSV's values)")
        source = row[spec.image_column]
        if not source:
            raise DatasetError(f"{where}: empty {spec.image_column!r}")
        y = _class_index(row[spec.class_column], class_names, where)
        if spec.attribute_columns:
            joint = _joint(row, spec.attribute_columns)
            a = attr_values.index(joint) if joint else -1
        else:
            a = -1
        records.append(Record(split=split, y=y, a=a, source=source, cell=-1 if spec.attribute_columns else y))
    empty = [s for s in SPLITS if not any(r.split == s for r in records)]
    if empty:
        raise DatasetError(f"folder: {csv_path} has no {'/'.join(empty)} image; every split needs images "
                           f"(values {[spec.splits[s] for s in empty]} in column {spec.split_column!r})")
    from dro.data.waterbirds import check_files_exist  # the same path check as Waterbirds

    check_files_exist(spec.root, [r.source for r in records], "folder")
    if spec.attribute_columns:
        if not attr_values:
            raise DatasetError(f"folder: every cell of the attribute column(s) {list(spec.attribute_columns)} in "
                               f"{csv_path} is empty")
        info = DatasetInfo("folder", class_names, "+".join(spec.attribute_columns), tuple(attr_values))
    else:
        info = DatasetInfo("folder", class_names, "unknown", ("unknown",), cell_attributes=(NO_ATTRIBUTE,))
    return info, records


def _joint(row: dict[str, str], columns: tuple[str, ...]) -> str:
    """The joint attribute value ('indoor' or 'indoor/red'); '' when any cell is empty (unknown)."""
    values = [row[c] for c in columns]
    return "" if not values or any(v == "" for v in values) else "/".join(values)


def _class_names(spec: FolderSpec, rows: list, csv_path: Path) -> tuple[str, ...]:
    if isinstance(spec.class_names, tuple):
        names = spec.class_names
    elif isinstance(spec.class_names, str):
        path = Path(spec.class_names)
        path = path if path.is_absolute() else spec.root / path
        if not path.is_file():
            raise DatasetError(f"folder: class-names file {path} not found (folder.class_names, relative to the root)")
        names = tuple(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    else:
        values = {row[spec.class_column] for _, row in rows}
        if "" in values:
            line = next(line for line, row in rows if not row[spec.class_column])
            raise DatasetError(f"folder: {csv_path} line {line}: empty {spec.class_column!r}")
        names = tuple(sorted(values))
    if len(set(names)) != len(names):
        raise DatasetError(f"folder: class names repeat: {list(names)}")
    if len(names) < 2:
        raise DatasetError(f"folder: a classifier needs at least 2 classes, found {list(names)} in {csv_path}")
    return names


def _class_index(value: str, names: tuple[str, ...], where: str) -> int:
    if value in names:
        return names.index(value)
    if value.isdigit() and int(value) < len(names):
        return int(value)
    raise DatasetError(f"{where}: unknown class {value!r}; expected one of {list(names)} or an index below "
                       f"{len(names)}")
