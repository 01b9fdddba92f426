"""``dataset: folder``: a CSV over any layout, checked (one line per mistake) before any image is decoded."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from dro.data import DatasetError, open_prepared, write_prepared
from dro.data.folder import FolderSpec, load_folder
from tests.data.folderfixture import make_folder_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_folder_dataset(tmp_path_factory.mktemp("folder") / "mine", {"train": 12, "val": 8, "test": 8})


def spec(root: Path, **kw) -> FolderSpec:
    base = dict(root=root, csv="labels.csv", image_column="path", class_column="label", split_column="part",
                attribute_columns=("color", "background"), splits={"train": "tr", "val": "va", "test": "te"})
    return FolderSpec(**{**base, **kw})


def copy_with_rows(dataset: Path, tmp_path: Path, edit) -> Path:
    """A copy of the fixture whose CSV rows went through ``edit(rows) -> rows`` (header is rows[0])."""
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows(edit(rows))
    return root


def test_loads_classes_splits_and_joint_attribute(dataset):
    info, records = load_folder(spec(dataset))
    assert info.name == "folder" and info.class_names == ("circle", "square")
    assert info.attribute_name == "color+background"
    assert set(info.attribute_values) <= {f"{c}/{b}" for c in ("red", "yellow") for b in ("water", "land")}
    assert {r.split for r in records} == {"train", "val", "test"} and len(records) == 28
    assert all(r.a >= 0 and r.source.startswith("pictures/") for r in records)


def test_prepared_index_opens_the_images(dataset, tmp_path):
    info, records = load_folder(spec(dataset))
    write_prepared(tmp_path / "prepared", info, records, root=dataset)
    splits = open_prepared(tmp_path / "prepared")
    x, y, g = splits["test"][0]
    assert x.shape == (3, 32, 32) and 0 <= g < info.num_groups


def test_without_attributes_no_true_group_and_evaluation_per_class(dataset, tmp_path):
    info, records = load_folder(spec(dataset, attribute_columns=()))
    assert {r.a for r in records} == {-1} and all(r.cell == r.y for r in records)
    write_prepared(tmp_path / "prepared", info, records, root=dataset)
    test = open_prepared(tmp_path / "prepared")["test"]
    assert (test.groups == -1).all() and (test.eval_cells == test.y).all()
    assert info.cell_names == ["circle|attributes=none", "square|attributes=none"]


def test_class_names_from_a_file_and_indices(dataset, tmp_path):
    root = copy_with_rows(dataset, tmp_path, lambda rows: [rows[0]] + [
        [r[0], "1" if r[1] == "square" else "0", *r[2:]] for r in rows[1:]])
    (root / "classes.txt").write_text("circle\nsquare\n")
    info, records = load_folder(spec(root, class_names="classes.txt"))
    assert info.class_names == ("circle", "square")
    assert [r.y for r in records] == [r.y for r in load_folder(spec(dataset))[1]]


def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_missing_column(dataset):
    with pytest.raises(DatasetError) as e:
        load_folder(spec(dataset, class_column="species"))
    assert "no column 'species'" in _one_line(e) and "folder.class_column" in str(e.value)


def test_unknown_split(dataset, tmp_path):
    root = copy_with_rows(dataset, tmp_path, lambda rows: rows[:2] + [[*rows[2][:2], "holdout", *rows[2][3:]]]
                          + rows[3:])
    with pytest.raises(DatasetError) as e:
        load_folder(spec(root))
    assert "line 3: unknown split 'holdout'" in _one_line(e)


def test_path_outside_the_root(dataset, tmp_path):
    (tmp_path / "secret.png").write_bytes(b"x")
    root = copy_with_rows(dataset, tmp_path, lambda rows: rows[:1] + [["../secret.png", *rows[1][1:]]] + rows[2:])
    with pytest.raises(DatasetError) as e:
        load_folder(spec(root))
    assert "escapes the dataset root" in _one_line(e)


def test_missing_image(dataset, tmp_path):
    root = copy_with_rows(dataset, tmp_path, lambda rows: rows)
    gone = sorted((root / "pictures" / "val").rglob("*.png"))[0]
    gone.unlink()
    with pytest.raises(DatasetError) as e:
        load_folder(spec(root))
    assert "1 of 28 image files" in _one_line(e) and gone.relative_to(root).as_posix() in str(e.value)


def test_unknown_class_in_a_given_list(dataset):
    with pytest.raises(DatasetError) as e:
        load_folder(spec(dataset, class_names=("circle", "triangle")))
    assert "unknown class 'square'" in _one_line(e)


def test_a_split_without_images(dataset, tmp_path):
    root = copy_with_rows(dataset, tmp_path, lambda rows: [r for r in rows if r[2] != "va"])
    with pytest.raises(DatasetError) as e:
        load_folder(spec(root))
    assert "no val image" in _one_line(e)


def test_params_refuse_the_oracle_without_attributes():
    from stages.params import ParamsError, load_params, parse_params
    import yaml

    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["dataset"] = "folder"
    raw["folder"]["attribute_columns"] = []
    with pytest.raises(ParamsError, match="groupdro_oracle trains on true groups"):
        parse_params(raw)
    raw["dro"]["methods"] = ["erm", "dro_dexter"]
    params = parse_params(raw)
    assert not params.is_world and params.methods == ["erm", "dro_dexter"]
    assert load_params().is_world


def test_registry_answers_what_string_compares_used_to():
    from dro.data.registry import KINDS, dataset_kind
    from dro.evaluate import convention_for
    from dro.report import dataset_title
    from dro.templates import IMAGENET_TEMPLATES, WORLD_TEMPLATES, default_templates

    assert convention_for("waterbirds") == "train_weighted" and convention_for("folder") == "plain"
    assert default_templates("synthetic")[0] == WORLD_TEMPLATES and default_templates("folder")[0] == IMAGENET_TEMPLATES
    assert dataset_title("celeba") == "CelebA" and [k for k, v in KINDS.items() if v.world] == ["synthetic"]
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        dataset_kind("imagenet")


def test_prepare_stage_reports_a_bad_csv_in_one_line(dataset, tmp_path):
    import os
    import subprocess
    import sys

    import yaml

    from tests.data.folderfixture import folder_params

    repo = Path(__file__).resolve().parents[2]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["dataset"] = "folder"
    params["folder"] = {**folder_params(str(dataset)), "split_column": "fold"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        f"error: folder: {dataset / 'labels.csv'} has no column 'fold' (folder.split_column); its columns are "
        "['path', 'label', 'part', 'color', 'background']"]
    assert not (tmp_path / "data/prepared").exists()


def test_params_know_every_registered_dataset_kind():
    from typing import get_args

    from dro.data.registry import KINDS
    from stages.params import Params
    from stages.params import DatasetName

    assert set(get_args(DatasetName)) == set(KINDS)
    assert all(name in Params.model_fields for name in KINDS)  # each kind has its params section
