"""The params.yaml schema: the repo's file is valid; every mistake is ONE line naming the key."""

from __future__ import annotations

import copy
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from stages.params import Params, ParamsError, load_params, parse_params

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    """The repo's params with the rich world that params.yaml spells out (``preset: null``)."""
    raw = yaml.safe_load(PARAMS.read_text())
    raw["synthetic"]["preset"] = None
    return raw


def test_repo_params_are_valid(raw: dict) -> None:
    params = load_params(PARAMS)
    assert isinstance(params, Params)
    assert params.dataset in ("synthetic", "waterbirds", "celeba")
    assert params.dataset_section.models in params.models
    # the default is the small preset until the rich world's models pass their gates
    assert params.synthetic.preset == "small" and params.synthetic.world_config().num_cells == 8
    params = parse_params(raw)
    world = params.synthetic.world_config()
    assert world.num_cells == 64 and world.biased_classes == ("circle", "square", "triangle")
    assert params.methods == ["erm", "groupdro_oracle", "dro_dexter", "dro_classname", "dro_random"]


def test_small_preset_replaces_the_world_and_its_models(raw: dict) -> None:
    edited = copy.deepcopy(raw)
    edited["synthetic"]["preset"] = "small"
    params = parse_params(edited)
    s = params.synthetic
    assert (s.classes, s.colors, s.backgrounds) == (["circle", "square"], ["red", "yellow"], ["water", "land"])
    assert s.models == "world" and params.model_set.clip == "data/world/clip"
    assert str(params.world_root) == "data/world"
    assert {c: v.value for c, v in s.shortcuts.items()} == {"circle": "water", "square": "land"}
    assert s.train_size == raw["synthetic"]["train_size"]  # only the world and its models are replaced
    assert str(parse_params(raw).world_root) == "data/world4"


def test_ablation_rows_only_on_the_synthetic_world(raw: dict) -> None:
    edited = copy.deepcopy(raw)
    edited["dataset"] = "waterbirds"
    assert parse_params(edited).methods == ["erm", "groupdro_oracle", "dro_dexter"]


def _set(path: str, value) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *parents, leaf = path.split(".")
        for p in parents:
            d = d.setdefault(p, {})
        d[leaf] = value

    return edit


def _drop(path: str) -> Callable[[dict], None]:
    def edit(d: dict) -> None:
        *parents, leaf = path.split(".")
        for p in parents:
            d = d[p]
        del d[leaf]

    return edit


CASES = [
    (_set("foo", 1), "foo: unknown key"),
    (_set("dexter.stepz", 10), "dexter.stepz: unknown key"),
    (_set("synthetic.train.epochz", 3), "synthetic.train.epochz: unknown key"),
    (_set("seed", "abc"), "seed: Input should be a valid integer"),
    (_set("synthetic.image_size", "big"), "synthetic.image_size: Input should be a valid integer"),
    (_set("synthetic.shortcuts.circle.correlation", 1.5),
     "synthetic.shortcuts.circle.correlation: Input should be less than or equal to 1"),
    (_set("synthetic.shortcuts.circle.correlation", -0.1),
     "synthetic.shortcuts.circle.correlation: Input should be greater than or equal to 0"),
    (_set("synthetic.shortcuts.circle.attribute", "texture"),
     "synthetic.shortcuts.circle.attribute: Input should be 'background' or 'color'"),
    (_set("synthetic.shortcuts.circle.value", "lava"), "synthetic: shortcuts.circle.value: 'lava' is not one of"),
    (_set("synthetic.shortcuts.circle.value", "red"), "synthetic: shortcuts.circle.value: 'red' is not one of the "
                                                      "world's backgrounds"),
    (_set("synthetic.shortcuts.triangle.value", "water"), "synthetic: shortcuts.triangle.value: background 'water' "
                                                          "is already the shortcut of circle"),
    (_set("synthetic.shortcuts.hexagon", None), "synthetic: shortcuts.hexagon: unknown class 'hexagon'"),
    (_set("synthetic.classes", ["circle", "hexagon"]), "synthetic: classes: unknown value(s) ['hexagon']"),
    (_set("synthetic.backgrounds", ["water", "land"]), "synthetic: shortcuts.triangle.value: 'snow' is not one of"),
    (_set("synthetic.shortcuts.circle.colour", "red"), "synthetic.shortcuts.circle.colour: unknown key"),
    (_set("synthetic.preset", "huge"), "synthetic.preset: Input should be 'small' or 'rich'"),
    (_set("synthetic.ablations", ["dro_oracle"]), "synthetic.ablations.0: Input should be 'dro_classname' or"),
    (_set("synthetic.num_classes", 2), "synthetic.num_classes: unknown key"),
    (_set("dataset", "imagenet"), "dataset: Input should be 'synthetic', 'waterbirds', 'celeba' or 'folder'"),
    (_set("synthetic.models", "nope"), "synthetic.models names 'nope'"),
    (_drop("models.world.bert"), "models.world.bert: required key is missing"),
    (_set("celeba.spurious", "Blond_Hair"), "celeba: target and spurious must be different"),
    (_set("synthetic.dexter.stepz", 5), "synthetic.dexter.stepz: unknown key"),
    (_set("synthetic.dexter.steps", 0), "synthetic.dexter: steps: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("edit", "expected"), CASES, ids=[c[1].split(":")[0] for c in CASES])
def test_schema_errors_are_one_line_naming_the_key(raw: dict, edit, expected: str) -> None:
    bad = copy.deepcopy(raw)
    edit(bad)
    with pytest.raises(ParamsError) as err:
        parse_params(bad)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("params.yaml: ")
    assert expected in msg


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="file not found"):
        load_params(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("dataset: [unclosed\n")
    with pytest.raises(ParamsError) as err:
        load_params(broken)
    assert "not valid YAML" in str(err.value) and "\n" not in str(err.value)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ParamsError, match="top level must be a mapping"):
        load_params(listing)


def test_a_stage_exits_nonzero_fast_with_the_one_line_message(raw: dict, tmp_path: Path) -> None:
    bad = copy.deepcopy(raw)
    bad["synthetic"]["shortcuts"]["circle"]["correlation"] = 1.5
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "stages.prepare", "--params", str(path), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - start
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "synthetic.shortcuts.circle.correlation" in lines[0] and "Traceback" not in proc.stderr
    assert elapsed < 15, f"took {elapsed:.1f}s: the schema must be checked before heavy imports"
    assert not (tmp_path / "out").exists()  # nothing written before validation


def test_dataset_dexter_overrides_apply_only_to_that_dataset(raw: dict) -> None:
    edited = copy.deepcopy(raw)
    edited["dexter"]["steps"] = 1000
    edited["synthetic"]["dexter"] = {"steps": 120, "early_stop": 0}
    synthetic = parse_params(edited)
    assert (synthetic.dexter_settings.steps, synthetic.dexter_settings.early_stop) == (120, 0)
    assert synthetic.dexter_settings.lr == synthetic.dexter.lr  # keys not overridden are inherited
    edited["dataset"] = "waterbirds"
    assert parse_params(edited).dexter_settings.steps == 1000
