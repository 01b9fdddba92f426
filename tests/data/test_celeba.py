"""CelebA loader on fixtures in torchvision's txt layout and in the Kaggle CSV variant."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest
from datafixtures import CELEBA_ATTRIBUTES, CELEBA_COUNTS, celeba_table, write_celeba

from dro.data import DatasetError, open_prepared, write_prepared
from dro.data.celeba import celeba_dir, load_celeba


N = sum(CELEBA_COUNTS.values())


def _counts(records) -> Counter:
    return Counter((r.split, r.y, r.a) for r in records)


@pytest.mark.parametrize(
    ("layout", "zero_one", "image_prefix"),
    [
        ("torchvision", False, "img_align_celeba/"),
        ("torchvision", True, "img_align_celeba/"),
        ("kaggle", False, "img_align_celeba/img_align_celeba/"),
        ("kaggle", True, "img_align_celeba/img_align_celeba/"),
        ("kaggle_flat", False, "img_align_celeba/"),
    ],
)
def test_layouts_give_right_labels_splits_and_groups(
    tmp_path: Path, layout: str, zero_one: bool, image_prefix: str
) -> None:
    folder = write_celeba(tmp_path, layout=layout, zero_one=zero_one)
    info, records = load_celeba(tmp_path)
    assert celeba_dir(tmp_path) == folder
    assert info.class_names == ("not Blond_Hair", "Blond_Hair")
    assert info.attribute_name == "Male"
    assert info.attribute_values == ("not Male", "Male")
    assert _counts(records) == Counter(CELEBA_COUNTS)
    assert all(r.source.startswith(image_prefix) for r in records)
    assert records[0].source == image_prefix + "000001.jpg"


def test_other_target_and_spurious_read_the_right_columns(tmp_path: Path) -> None:
    table = celeba_table(seed=3)
    write_celeba(tmp_path, table=table)
    info, records = load_celeba(tmp_path, target="Smiling", spurious="Eyeglasses")
    smiling, glasses = CELEBA_ATTRIBUTES.index("Smiling"), CELEBA_ATTRIBUTES.index("Eyeglasses")
    assert [r.y for r in records] == [int(v[smiling] == 1) for _, _, v in table]
    assert [r.a for r in records] == [int(v[glasses] == 1) for _, _, v in table]
    assert [r.split for r in records] == [s for _, s, _ in table]
    assert info.class_names == ("not Smiling", "Smiling")
    swapped = load_celeba(tmp_path, target="Male", spurious="Blond_Hair")[1]
    assert _counts(swapped) == Counter({(s, m, b): n for (s, b, m), n in CELEBA_COUNTS.items()})


def test_prepared_round_trip(tmp_path: Path) -> None:
    write_celeba(tmp_path / "c", layout="kaggle")
    info, records = load_celeba(tmp_path / "c")
    write_prepared(tmp_path / "prepared", info, records, root=celeba_dir(tmp_path / "c"))
    splits = open_prepared(tmp_path / "prepared")
    assert splits["train"].group_counts() == {
        "not Blond_Hair|Male=not Male": 4, "not Blond_Hair|Male=Male": 3,
        "Blond_Hair|Male=not Male": 2, "Blond_Hair|Male=Male": 1,
    }
    x, _, _ = splits["test"][0]
    assert tuple(x.shape) == (3, 8, 8)


def test_unknown_attribute_lists_the_valid_ones(tmp_path: Path) -> None:
    write_celeba(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_celeba(tmp_path, target="Blonde_Hair")
    msg = str(err.value)
    assert "'Blonde_Hair'" in msg and "Blond_Hair" in msg and "Young" in msg and "5_o_Clock_Shadow" in msg
    with pytest.raises(DatasetError, match="spurious attribute 'Gender'"):
        load_celeba(tmp_path, spurious="Gender")


def test_truncated_attribute_file_is_detected(tmp_path: Path) -> None:
    folder = write_celeba(tmp_path)
    path = folder / "list_attr_celeba.txt"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-3]) + "\n")
    with pytest.raises(DatasetError, match=f"says {N} images on line 1 but has {N - 3} rows"):
        load_celeba(tmp_path)


def test_mixed_value_conventions_are_refused(tmp_path: Path) -> None:
    folder = write_celeba(tmp_path, layout="kaggle")
    path = folder / "list_attr_celeba.csv"
    text = path.read_text().splitlines()
    text[1] = text[1].replace("-1", "0", 1)  # one 0 among -1/1 values
    path.write_text("\n".join(text) + "\n")
    with pytest.raises(DatasetError, match="not a mix"):
        load_celeba(tmp_path)


def test_missing_images_reported_once(tmp_path: Path) -> None:
    folder = write_celeba(tmp_path)
    os.remove(folder / "img_align_celeba" / "000002.jpg")
    os.remove(folder / "img_align_celeba" / "000005.jpg")
    with pytest.raises(DatasetError, match=rf"2 of {N} image files .* \(first: img_align_celeba/000002.jpg, "):
        load_celeba(tmp_path)


def test_image_name_escaping_the_root_is_refused(tmp_path: Path) -> None:
    table = celeba_table()
    write_celeba(tmp_path / "root", layout="kaggle_flat", table=table)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    attr = tmp_path / "root" / "list_attr_celeba.csv"
    part = tmp_path / "root" / "list_eval_partition.csv"
    attr.write_text(attr.read_text().replace("000003.jpg", "../../secret.jpg"))
    part.write_text(part.read_text().replace("000003.jpg", "../../secret.jpg"))
    with pytest.raises(DatasetError, match="escapes the dataset root"):
        load_celeba(tmp_path / "root")


def test_partition_missing_images_is_an_error(tmp_path: Path) -> None:
    folder = write_celeba(tmp_path)
    path = folder / "list_eval_partition.txt"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:-2]))
    with pytest.raises(DatasetError, match="2 images in the attribute file have no entry in the partition file"):
        load_celeba(tmp_path)


def test_nothing_there_says_where_to_put_files(tmp_path: Path) -> None:
    (tmp_path / "celeba_root").mkdir()
    with pytest.raises(DatasetError) as err:
        load_celeba(tmp_path / "celeba_root")
    msg = str(err.value)
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt", "img_align_celeba/", "list_attr_celeba.csv"):
        assert name in msg
    assert str(tmp_path / "celeba_root" / "celeba") in msg
