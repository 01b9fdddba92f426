"""Builders (imported by the tests as ``datafixtures``) for dataset fixtures written in the REAL on-disk formats, with tiny generated JPEGs."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

# The 40 CelebA attributes in the order of the official list_attr_celeba.txt header.
CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()

# (split, y, place) -> count. Deliberately unequal so that a swapped column shows up in the counts.
WATERBIRDS_COUNTS = {
    ("train", 0, 0): 5, ("train", 0, 1): 2, ("train", 1, 0): 1, ("train", 1, 1): 4,
    ("val", 0, 0): 2, ("val", 0, 1): 2, ("val", 1, 0): 2, ("val", 1, 1): 2,
    ("test", 0, 0): 3, ("test", 0, 1): 3, ("test", 1, 0): 3, ("test", 1, 1): 3,
}
# (split, blond, male) -> count.
CELEBA_COUNTS = {
    ("train", 0, 0): 4, ("train", 0, 1): 3, ("train", 1, 0): 2, ("train", 1, 1): 1,
    ("val", 0, 0): 1, ("val", 0, 1): 1, ("val", 1, 0): 1, ("val", 1, 1): 1,
    ("test", 0, 0): 2, ("test", 0, 1): 2, ("test", 1, 0): 2, ("test", 1, 1): 2,
}
SPLIT_CODE = {"train": 0, "val": 1, "test": 2}
LANDBIRDS = ("001.Black_footed_Albatross", "002.Laysan_Albatross")  # real CUB species folder names
WATERBIRD_FOLDERS = ("045.Northern_Fulmar", "050.Eared_Grebe")


def write_jpeg(path: Path, seed: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def truncate_image(path: Path) -> None:
    """Cut a file to half its bytes: the kind of damage an interrupted copy or extraction leaves."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_waterbirds(parent: Path, counts: dict = WATERBIRDS_COUNTS) -> Path:
    """``parent/waterbird_complete95_forest2water2/`` with metadata.csv (all official columns) and images."""
    folder = parent / "waterbird_complete95_forest2water2"
    rows = []
    img_id = 1
    for (split, y, place), n in counts.items():
        for _ in range(n):
            species = (WATERBIRD_FOLDERS if y else LANDBIRDS)[img_id % 2]
            name = f"{species}/{species.split('.')[1]}_{img_id:04d}_{700000 + img_id}.jpg"
            place_file = "/o/ocean/00002178.jpg" if place else "/b/bamboo_forest/00000331.jpg"
            rows.append([img_id, name, y, SPLIT_CODE[split], place, place_file])
            write_jpeg(folder / name, img_id)
            img_id += 1
    write_waterbirds_metadata(folder, rows)
    return folder


def write_waterbirds_metadata(folder: Path, rows: list[list], header: list[str] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header or ["img_id", "img_filename", "y", "split", "place", "place_filename"])
        w.writerows(rows)


def celeba_table(counts: dict = CELEBA_COUNTS, seed: int = 0) -> list[tuple[str, str, list[int]]]:
    """(file name, split, 40 values in +-1) per image; Blond_Hair and Male follow ``counts``, the rest random."""
    rng = np.random.default_rng(seed)
    blond, male = CELEBA_ATTRIBUTES.index("Blond_Hair"), CELEBA_ATTRIBUTES.index("Male")
    table = []
    i = 1
    for (split, b, m), n in counts.items():
        for _ in range(n):
            values = [int(v) for v in rng.choice([-1, 1], size=len(CELEBA_ATTRIBUTES))]
            values[blond] = 1 if b else -1
            values[male] = 1 if m else -1
            table.append((f"{i:06d}.jpg", split, values))
            i += 1
    return table


def write_celeba(
    root: Path, layout: str = "torchvision", zero_one: bool = False, table: list | None = None
) -> Path:
    """Write CelebA fixtures. ``torchvision``: ``root/celeba/`` with txt files and ``img_align_celeba/``.
    ``kaggle``: ``root/`` with CSVs and ``img_align_celeba/img_align_celeba/``. ``kaggle_flat``: CSVs with
    images directly in ``img_align_celeba/``. Returns the folder holding the attribute file."""
    table = table if table is not None else celeba_table()
    if layout == "torchvision":
        folder = root / "celeba"
        images = folder / "img_align_celeba"
        folder.mkdir(parents=True, exist_ok=True)
        lines = [str(len(table)), " ".join(CELEBA_ATTRIBUTES) + " "]  # the official header has a trailing space
        lines += [f"{name} " + " ".join(f"{v:2d}" for v in _values(vals, zero_one)) for name, _, vals in table]
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (folder / "list_eval_partition.txt").write_text(
            "".join(f"{name} {SPLIT_CODE[split]}\n" for name, split, _ in table)
        )
    else:
        folder = root
        images = folder / "img_align_celeba" / ("img_align_celeba" if layout == "kaggle" else "")
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "list_attr_celeba.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", *CELEBA_ATTRIBUTES])
            w.writerows([name, *_values(vals, zero_one)] for name, _, vals in table)
        with open(folder / "list_eval_partition.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image_id", "partition"])
            w.writerows([name, SPLIT_CODE[split]] for name, split, _ in table)
    for i, (name, _, _) in enumerate(table):
        write_jpeg(images / name, i)
    return folder


def _values(vals: list[int], zero_one: bool) -> list[int]:
    return [(v + 1) // 2 for v in vals] if zero_one else vals
