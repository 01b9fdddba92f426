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
    """The repo's params (the rich world, spelled out: ``preset: null``)."""
    return yaml.safe_load(PARAMS.read_text())


def test_repo_params_are_valid(raw: dict) -> None:
    params = load_params(PARAMS)
    assert isinstance(params, Params)
    assert params.dataset in ("synthetic", "waterbirds", "celeba")
    assert params.dataset_section.models in params.models
    # the default is the rich world, spelled out; the small preset stays one key away
    assert params.synthetic.preset is None and params.synthetic.world_config().num_cells == 64
    assert parse_params({**raw, "synthetic": {**raw["synthetic"], "preset": "small"}}).synthetic.world_config(
    ).num_cells == 8
    params = parse_params(raw)
    world = params.synthetic.world_config()
    assert world.num_cells == 64 and world.biased_classes == ("circle", "square", "triangle")
    from stages.params.dro import DEFAULT_METHODS

    assert params.methods == [*raw["synthetic"]["methods"], "dro_classname", "dro_random"]
    assert params.retrain_seeds == [0]  # seeds: auto -> one seed on the synthetic world
    # synthetic.methods: null gives the world every row of dro.methods; other datasets never read it
    edited = copy.deepcopy(raw)
    edited["synthetic"]["methods"] = None
    assert parse_params(edited).methods == [*DEFAULT_METHODS, "dro_classname", "dro_random"]
    edited.update(dataset="waterbirds")
    edited["synthetic"]["methods"] = ["erm"]
    assert parse_params(edited).methods == DEFAULT_METHODS


def test_seeds_auto_is_three_on_real_datasets(raw: dict) -> None:
    edited = copy.deepcopy(raw)
    edited.update(dataset="waterbirds", seed=4)
    assert parse_params(edited).retrain_seeds == [4, 5, 6]
    edited["seeds"] = [1, 2]
    assert parse_params(edited).retrain_seeds == [1, 2]


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
    from stages.params.dro import DEFAULT_METHODS

    assert parse_params(edited).methods == DEFAULT_METHODS


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
    (_set("synthetic.methods", ["erm", "nope"]), "synthetic.methods: unknown method 'nope'; known: erm,"),
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


def test_the_worlds_pixel_noise_is_its_renderers_sensor_noise(raw: dict) -> None:
    """Generated world images get back the noise the VAE decodes away: the renderer's, not a second number."""
    from world.synthetic import SENSOR_NOISE

    assert parse_params(raw).dexter_settings.pixel_noise == pytest.approx(SENSOR_NOISE / 255, abs=5e-5)
    assert parse_params(raw).dexter.pixel_noise == 0.0  # real data: none unless asked (the paper)


# params.yaml's deliberate choices where it departs from the schema's defaults, each with the reason it must
# stay. Any other difference (or a key the file does not state) fails: the file states every setting. An
# entry whose key no longer departs fails too (a stale exception), so the list stays the truth.
# Not here any more: ``dexter.classes`` (the schema's default is "all", as the file says; null means the same).
PIPELINE_CHOICES = {
    # The default run's rows on the world: the schema's null (dro.methods) keeps configs that never mention it
    # free of a hidden override; the repository's run keeps to its time budget.
    "synthetic.methods": "the default run's rows, inside its time budget (the schema: null, dro.methods)",
    # A dataset section's ``dexter`` overrides the global section. Its schema default must stay "no override":
    # an override present by default would silently replace the global dexter keys it names for every config
    # that does not state it (a config setting dexter.steps would get the world's 40 steps instead), a second
    # hidden default for the same setting.
    "synthetic.dexter": "the world's models are tiny: short DEXTER runs (the schema: no override)",
}


def _leaves(d, prefix=""):
    """{dotted key: value} down to the leaves (a mapping whose keys are not strings is a value)."""
    if isinstance(d, dict) and d and all(isinstance(k, str) for k in d):
        out = {}
        for k, v in d.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def test_params_yaml_states_every_setting_with_the_schema_default() -> None:
    in_file = yaml.safe_load(PARAMS.read_text())
    defaults = Params.model_validate({"models": in_file["models"]}).model_dump(mode="json")
    stated, schema = _leaves(in_file), _leaves(defaults)

    def chosen(key: str) -> bool:
        return any(key == c or key.startswith(c + ".") for c in PIPELINE_CHOICES)

    missing = sorted(k for k in schema if k not in stated and not chosen(k))
    assert not missing, f"params.yaml does not state {missing}"
    unknown = sorted(k for k in stated if k not in schema and not chosen(k))
    assert not unknown, f"params.yaml states keys the schema lacks: {unknown}"
    differ = {k: (stated[k], schema[k]) for k in schema if k in stated and stated[k] != schema[k] and not chosen(k)}
    assert not differ, f"params.yaml (left) departs from the schema's default (right): {differ}"
    for c in PIPELINE_CHOICES:
        assert any(k == c or k.startswith(c + ".") for k in stated), f"{c} is not in params.yaml"
        in_file = {k: v for k, v in stated.items() if k == c or k.startswith(c + ".")}
        in_schema = {k: v for k, v in schema.items() if k == c or k.startswith(c + ".")}
        assert in_file != in_schema, f"{c} agrees with the schema now: remove it from PIPELINE_CHOICES"


def test_the_dexter_section_is_the_library_config() -> None:
    """Every DexterConfig field is a params key with the library's default, and the stage builds the
    config from the section by name (tau, template, soft_prompt_length reach the library too)."""
    from dataclasses import fields

    from dexter.config import DexterConfig
    from stages.params.dexter import DexterSection, library_config

    section = DexterSection()
    for f in fields(DexterConfig):
        assert f.name in DexterSection.model_fields, f"dexter.{f.name} is not a params key"
        assert getattr(section, f.name) == f.default, f.name
    edited = DexterSection(tau=0.5, template="a photo of a [MASK].", soft_prompt_length=2, adam_eps=1e-6,
                           max_batch=3)
    config = library_config(edited)
    assert (config.tau, config.template, config.soft_prompt_length, config.adam_eps, config.max_batch) == (
        0.5, "a photo of a [MASK].", 2, 1e-6, 3)


def test_the_dro_loss_defaults_are_the_trainers_and_erm_reads_no_dro_setting(raw: dict) -> None:
    from dataclasses import fields

    from dro.config import DRO_SETTINGS, TrainConfig
    from stages.dro_common import full_train_config
    from stages.params.dro import DroSection

    trainer = {f.name: f.default for f in fields(TrainConfig)}
    for name in (*DRO_SETTINGS, "eval_batch_size"):
        assert getattr(DroSection(), name) == trainer[name], name
    edited = copy.deepcopy(raw)
    edited["dro"].update(eta=0.5, adjustment=2.0, normalize_loss=True, balanced_sampling=False, eval_batch_size=7)
    assert full_train_config(parse_params(edited), 0, erm=True) == full_train_config(parse_params(raw), 0, erm=True)
    assert full_train_config(parse_params(edited), 0).eta == 0.5
