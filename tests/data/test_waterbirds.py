"""Waterbirds loader on fixtures in the official layout (metadata.csv + species folders of JPEGs)."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from dro.data import DatasetError, GroupImageDataset, open_prepared, write_prepared
from dro.data.waterbirds import URL, load_waterbirds, waterbirds_dir
from datafixtures import WATERBIRDS_COUNTS, write_jpeg, write_waterbirds_metadata

FOLDER = "waterbird_complete95_forest2water2"


def _counts(records) -> Counter:
    return Counter((r.split, r.y, r.a) for r in records)


def test_reads_classes_attributes_splits_and_group_counts(waterbirds_parent: Path) -> None:
    info, records = load_waterbirds(waterbirds_parent)
    assert info.class_names == ("landbird", "waterbird")
    assert info.attribute_name == "place"
    assert info.attribute_values == ("land", "water")
    assert _counts(records) == Counter(WATERBIRDS_COUNTS)
    first = records[0]
    assert first.source.startswith("001.Black_footed_Albatross/") or first.source.startswith("002.")
    assert (waterbirds_parent / FOLDER / first.source).is_file()


def test_root_may_be_the_folder_or_its_parent(waterbirds_parent: Path) -> None:
    assert waterbirds_dir(waterbirds_parent) == waterbirds_parent / FOLDER
    assert waterbirds_dir(waterbirds_parent / FOLDER) == waterbirds_parent / FOLDER
    assert load_waterbirds(waterbirds_parent)[1] == load_waterbirds(waterbirds_parent / FOLDER)[1]


def test_prepared_index_round_trip_reads_images_and_groups(waterbirds_parent: Path, tmp_path: Path) -> None:
    info, records = load_waterbirds(waterbirds_parent)
    write_prepared(tmp_path / "prepared", info, records, root=waterbirds_dir(waterbirds_parent))
    splits = open_prepared(tmp_path / "prepared")
    train = splits["train"]
    assert train.group_counts() == {
        "landbird|place=land": 5, "landbird|place=water": 2,
        "waterbird|place=land": 1, "waterbird|place=water": 4,
    }
    x, y, g = train[0]
    assert tuple(x.shape) == (3, 8, 8)
    assert g == 2 * y + int(train.a[0])
    assert len(splits["val"]) == 8 and len(splits["test"]) == 12


@pytest.mark.parametrize("kind", ["dotdot", "dotdot_inside_dir", "absolute", "absolute_top", "symlink_out",
                                  "symlink_dir_out"])
def test_paths_escaping_the_root_are_refused(tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "outside.jpg"
    write_jpeg(outside, 0)  # the file exists, so only the escape check can stop it
    folder = tmp_path / "wb" / FOLDER
    write_jpeg(folder / "001.A/ok.jpg", 1)
    if kind == "dotdot":
        bad = "../../outside.jpg"
    elif kind == "dotdot_inside_dir":
        bad = "001.A/../../../outside.jpg"
    elif kind == "absolute":
        bad = str(outside)
    elif kind == "absolute_top":  # '/ok.jpg' must not be read as '<root>/ok.jpg'
        write_jpeg(folder / "ok.jpg", 2)
        bad = "/ok.jpg"
    elif kind == "symlink_dir_out":
        (folder / "002.B").symlink_to(tmp_path, target_is_directory=True)
        bad = "002.B/outside.jpg"
    else:
        (folder / "001.A").joinpath("link.jpg").symlink_to(outside)
        bad = "001.A/link.jpg"
    write_waterbirds_metadata(folder, [[1, "001.A/ok.jpg", 0, 0, 0, "x"], [2, bad, 1, 0, 1, "y"]])
    with pytest.raises(DatasetError, match="escapes the dataset root") as err:
        load_waterbirds(tmp_path / "wb")
    assert repr(bad) in str(err.value)  # names the offending metadata entry


def test_symlink_that_stays_inside_is_accepted(tmp_path: Path) -> None:
    folder = tmp_path / FOLDER
    write_jpeg(folder / "001.A/real.jpg", 1)
    (folder / "001.A/alias.jpg").symlink_to(folder / "001.A/real.jpg")
    write_waterbirds_metadata(folder, [[1, "001.A/alias.jpg", 0, 0, 0, "x"]])
    assert len(load_waterbirds(folder)[1]) == 1


def test_missing_images_are_reported_once_with_count_and_names(waterbirds_parent: Path) -> None:
    _, records = load_waterbirds(waterbirds_parent)
    gone = [records[3].source, records[7].source, records[11].source]
    for source in gone:
        os.remove(waterbirds_parent / FOLDER / source)
    with pytest.raises(DatasetError) as err:
        load_waterbirds(waterbirds_parent)
    msg = str(err.value)
    assert f"3 of {len(records)}" in msg
    assert all(source in msg for source in gone)
    assert "\n" not in msg


def test_missing_folder_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as err:
        load_waterbirds(tmp_path / "nothing")
    assert "does not exist" in str(err.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as err:
        load_waterbirds(tmp_path / "empty")
    msg = str(err.value)
    assert str(tmp_path / "empty" / FOLDER / "metadata.csv") in msg
    assert URL in msg


def test_missing_column_is_named(tmp_path: Path) -> None:
    folder = tmp_path / FOLDER
    write_waterbirds_metadata(folder, [[1, "a.jpg", 0, 0]], header=["img_id", "img_filename", "y", "split"])
    with pytest.raises(DatasetError, match=r"lacks column\(s\) \['place'\]"):
        load_waterbirds(folder)


def test_bad_value_names_line_and_column(tmp_path: Path) -> None:
    folder = tmp_path / FOLDER
    write_jpeg(folder / "a.jpg", 0)
    write_waterbirds_metadata(folder, [[1, "a.jpg", 0, 0, 0, "x"], [2, "a.jpg", 0, 3, 0, "x"]])
    with pytest.raises(DatasetError, match=r"line 3: split='3'"):
        load_waterbirds(folder)


def test_corrupt_image_raises_dataset_error_naming_the_file(waterbirds_parent: Path) -> None:
    info, records = load_waterbirds(waterbirds_parent)
    folder = waterbirds_dir(waterbirds_parent)
    bad = folder / records[0].source
    bad.write_bytes(b"this is not a jpeg")
    ds = GroupImageDataset(info, "train", [records[0].y], [records[0].a], files=[bad])
    with pytest.raises(DatasetError, match=str(bad)):
        ds.image(0)
    with pytest.raises(DatasetError, match="corrupt"):
        ds[0]
