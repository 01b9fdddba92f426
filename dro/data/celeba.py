"""CelebA in torchvision's layout and in the common Kaggle CSV variant (docs/METHOD.md section 5).

torchvision layout (``root/`` or ``root/celeba/``)::

    img_align_celeba/000001.jpg ...
    list_attr_celeba.txt        line 1: image count; line 2: the 40 attribute names; then
                                "000001.jpg -1  1  1 ..." (values +-1, space separated)
    list_eval_partition.txt     "000001.jpg 0" (0 train, 1 val, 2 test)

Kaggle variant (jessicali9530/celeba-dataset)::

    img_align_celeba/img_align_celeba/000001.jpg ...   (or img_align_celeba/000001.jpg)
    list_attr_celeba.csv        "image_id,5_o_Clock_Shadow,..." then "000001.jpg,-1,1,..."
    list_eval_partition.csv     "image_id,partition" then "000001.jpg,0"

Why not ``torchvision.datasets.CelebA``: its constructor md5-checks every annotation file it knows
(attributes, partition, identity, bounding boxes, landmarks) on every load and refuses to start if any
is missing or differs. It therefore cannot read the CSV variant, a copy without the identity/bbox/
landmark files (which this project never uses), or test fixtures. The two files we need are parsed
here in the same way (whitespace-separated, header on line 2); torchvision is still what downloads
CelebA (see :mod:`dro.data.download`).
"""

from __future__ import annotations

import csv
from pathlib import Path

from dro.data.base import DatasetError, DatasetInfo, Record, dataset_dir, find_dataset_dir
from dro.data.waterbirds import check_files_exist

IMAGES = "img_align_celeba"
ATTR_TXT, ATTR_CSV = "list_attr_celeba.txt", "list_attr_celeba.csv"
PART_TXT, PART_CSV = "list_eval_partition.txt", "list_eval_partition.csv"
SPLIT_CODES = {0: "train", 1: "val", 2: "test"}
GDRIVE_FOLDER = "https://drive.google.com/drive/folders/0B7EVK8r0v71pWEZsZE9oNnFzTm8"
KAGGLE = "https://www.kaggle.com/datasets/jessicali9530/celeba-dataset"


def where_to_put(root: Path) -> str:
    root = Path(root)
    return (
        f"put {IMAGES}/ (the extracted img_align_celeba.zip), {ATTR_TXT} and {PART_TXT} in {root / 'celeba'}/ "
        f"(torchvision's layout, files from {GDRIVE_FOLDER}), or the Kaggle download ({KAGGLE}: {ATTR_CSV}, "
        f"{PART_CSV}, {IMAGES}/{IMAGES}/) in {root}/, or set celeba.download: true (needs `pip install gdown`)"
    )


def find_celeba_dir(root: Path) -> Path | None:
    """The folder holding the attribute file: ``root`` or ``root/celeba``; None if neither."""
    return find_dataset_dir(root, "celeba", (ATTR_TXT, ATTR_CSV))


def celeba_dir(root: Path) -> Path:
    """Like :func:`find_celeba_dir` but raises a :class:`DatasetError` that says where the files go."""
    return dataset_dir(root, "celeba", (ATTR_TXT, ATTR_CSV), "CelebA", where_to_put(root))


def load_celeba(
    root: Path, target: str = "Blond_Hair", spurious: str = "Male"
) -> tuple[DatasetInfo, list[Record]]:
    """Records for ``target`` (the class) and ``spurious`` (the attribute); sources relative to :func:`celeba_dir`."""
    folder = celeba_dir(root)
    names, attrs = read_attributes(folder)
    for role, name in (("target", target), ("spurious", spurious)):
        if name not in names:
            raise DatasetError(f"CelebA: {role} attribute {name!r} is not a CelebA attribute; valid: {', '.join(names)}")
    if target == spurious:
        raise DatasetError(f"CelebA: target and spurious are both {target!r}; choose two different attributes")
    partition = read_partition(folder)

    no_split = [f for f in attrs if f not in partition]
    if no_split:
        raise DatasetError(
            f"CelebA: {len(no_split)} images in the attribute file have no entry in the partition file "
            f"(first: {', '.join(no_split[:5])}); the two files in {folder} do not belong together"
        )
    images = _image_dir(folder, next(iter(attrs)))
    prefix = images.relative_to(folder).as_posix()
    ti, si = names.index(target), names.index(spurious)
    records = [
        Record(split=partition[f], y=int(v[ti]), a=int(v[si]), source=f"{prefix}/{f}") for f, v in attrs.items()
    ]
    check_files_exist(folder, [r.source for r in records], "CelebA")
    info = DatasetInfo(
        name="celeba",
        class_names=(f"not {target}", target),
        attribute_name=spurious,
        attribute_values=(f"not {spurious}", spurious),
    )
    return info, records


def read_attributes(folder: Path) -> tuple[list[str], dict[str, list[bool]]]:
    """Attribute names and, per image file name, whether each attribute is present.

    Values are +-1 in the official files; some CSV copies use 0/1. Both are accepted (present = 1), a
    mix of -1 and 0 is refused because it cannot be read unambiguously.
    """
    if (folder / ATTR_TXT).is_file():
        path = folder / ATTR_TXT
        lines = path.read_text(encoding="utf-8").splitlines()
        if len(lines) < 2:
            raise DatasetError(f"CelebA: {path} is too short: expected a count line, a header line and rows")
        try:
            declared = int(lines[0].split()[0])
        except (ValueError, IndexError):
            raise DatasetError(f"CelebA: {path} line 1 should be the image count, got {lines[0][:60]!r}") from None
        names = lines[1].split()
        rows = [(i, line.split()) for i, line in enumerate(lines[2:], start=3) if line.strip()]
        if len(rows) != declared:
            raise DatasetError(
                f"CelebA: {path} says {declared} images on line 1 but has {len(rows)} rows (truncated copy?)"
            )
    elif (folder / ATTR_CSV).is_file():
        path = folder / ATTR_CSV
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        if not table:
            raise DatasetError(f"CelebA: {path} is empty")
        names = [c.strip() for c in table[0][1:]]
        rows = [(i, [c.strip() for c in r]) for i, r in enumerate(table[1:], start=2) if r]
    else:
        raise DatasetError(f"CelebA: no {ATTR_TXT} or {ATTR_CSV} in {folder}; {where_to_put(folder)}")
    if not names:
        raise DatasetError(f"CelebA: {path} has no attribute names in its header")

    attrs: dict[str, list[bool]] = {}
    seen: set[str] = set()
    for line, row in rows:
        if len(row) != len(names) + 1:
            raise DatasetError(
                f"CelebA: {path} line {line}: {len(row) - 1} values for {len(names)} attributes"
            )
        try:
            values = [int(v) for v in row[1:]]
        except ValueError:
            raise DatasetError(f"CelebA: {path} line {line}: attribute values must be -1/1 or 0/1") from None
        seen.update(values)
        attrs[row[0]] = [v == 1 for v in values]
    if not attrs:
        raise DatasetError(f"CelebA: {path} has no image rows")
    if not (seen <= {-1, 1} or seen <= {0, 1}):
        raise DatasetError(
            f"CelebA: {path} has attribute values {sorted(seen)}; expected -1/1 (official) or 0/1, not a mix"
        )
    return names, attrs


def read_partition(folder: Path) -> dict[str, str]:
    """Image file name -> split name, from the txt or the CSV partition file."""
    if (folder / PART_TXT).is_file():
        path = folder / PART_TXT
        rows = [(i, line.split()) for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)]
    elif (folder / PART_CSV).is_file():
        path = folder / PART_CSV
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
        if not table or [c.strip() for c in table[0][:2]] != ["image_id", "partition"]:
            raise DatasetError(f"CelebA: {path} should start with the header 'image_id,partition'")
        rows = [(i, [c.strip() for c in r]) for i, r in enumerate(table[1:], start=2)]
    else:
        raise DatasetError(f"CelebA: no {PART_TXT} or {PART_CSV} in {folder}; {where_to_put(folder)}")
    out: dict[str, str] = {}
    for line, row in rows:
        if not row:
            continue
        if len(row) != 2 or row[1] not in ("0", "1", "2"):
            raise DatasetError(f"CelebA: {path} line {line}: expected '<image> <0|1|2>', got {' '.join(row)!r}")
        out[row[0]] = SPLIT_CODES[int(row[1])]
    return out


def _image_dir(folder: Path, first_image: str) -> Path:
    """``img_align_celeba/img_align_celeba/`` (Kaggle) or ``img_align_celeba/`` (torchvision): whichever holds the images."""
    candidates = [folder / IMAGES / IMAGES, folder / IMAGES]
    for candidate in candidates:
        if (candidate / first_image).is_file():
            return candidate
    for candidate in candidates:
        if candidate.is_dir():
            return candidate  # exists but incomplete: check_files_exist reports the missing files
    raise DatasetError(f"CelebA: no image folder {IMAGES}/ in {folder}; {where_to_put(folder)}")
