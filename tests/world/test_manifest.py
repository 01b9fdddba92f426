import json

import pytest

from dexter.world.manifest import WorldNotCoveredError, check_world_covered, load_manifest


def _write(tmp_path, num_classes=2, image_size=32):
    (tmp_path / "world.json").write_text(
        json.dumps({"num_classes": num_classes, "image_size": image_size, "shapes": ["circle", "square"],
                    "colors": ["red", "yellow"], "backgrounds": ["water", "land"]})
    )


def test_covered_world_passes(tmp_path):
    _write(tmp_path)
    assert check_world_covered(tmp_path, 2, 32)["num_classes"] == 2


def test_more_classes_than_trained_fails_loudly(tmp_path):
    _write(tmp_path)
    with pytest.raises(WorldNotCoveredError, match="num_classes=3.*cover only 2"):
        check_world_covered(tmp_path, 3, 32)


def test_other_image_size_fails_loudly(tmp_path):
    _write(tmp_path)
    with pytest.raises(WorldNotCoveredError, match="image_size=64"):
        check_world_covered(tmp_path, 2, 64)


def test_missing_manifest_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m dexter.world train"):
        load_manifest(tmp_path)
