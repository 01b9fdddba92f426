import json

import pytest

from world.manifest import WorldNotCoveredError, check_world_covered, load_manifest


def _write(tmp_path, num_classes=2, image_size=32):
    (tmp_path / "world.json").write_text(
        json.dumps({"num_classes": num_classes, "image_size": image_size, "shapes": ["circle", "square"],
                    "colors": ["red", "yellow"], "backgrounds": ["water", "land"]})
    )


SMALL = dict(shapes=["circle", "square"], colors=["red", "yellow"], backgrounds=["water", "land"])


def test_covered_world_passes(tmp_path):
    _write(tmp_path)
    assert check_world_covered(tmp_path, 32, **SMALL)["num_classes"] == 2
    assert check_world_covered(tmp_path, 32, shapes=["square", "circle"], colors=["yellow", "red"],
                               backgrounds=["land", "water"])  # any subset, any order


@pytest.mark.parametrize(("key", "value", "named"), [
    ("shapes", ["circle", "triangle"], r"synthetic.classes asks for \['triangle'\]"),
    ("colors", ["red", "purple"], r"synthetic.colors asks for \['purple'\]"),
    ("backgrounds", ["water", "snow", "sand"], r"synthetic.backgrounds asks for \['snow', 'sand'\]"),
])
def test_values_the_models_never_saw_fail_loudly(tmp_path, key, value, named):
    _write(tmp_path)
    with pytest.raises(WorldNotCoveredError, match=named + ".*trained on shapes"):
        check_world_covered(tmp_path, 32, **{**SMALL, key: value})


def test_other_image_size_fails_loudly(tmp_path):
    _write(tmp_path)
    with pytest.raises(WorldNotCoveredError, match="image_size=64"):
        check_world_covered(tmp_path, 64, **SMALL)


def test_missing_manifest_names_the_training_command(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m world train"):
        load_manifest(tmp_path)
