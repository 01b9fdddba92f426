"""The shared base: file contracts, fingerprints, the one error root."""

import json

import pytest

from common.artifacts import (
    ArtifactError,
    class_dir,
    class_dirs_with,
    pseudo_groups_file,
    pseudo_groups_meta,
    read_class_attributes,
    read_keywords,
)
from common.errors import UserInputError
from common.fingerprint import code_digest, json_digest, tree_signature


def test_class_folders_and_file_names_are_one_contract(tmp_path):
    assert class_dir(tmp_path, 3, "great white shark") == tmp_path / "003_great_white_shark"
    for c in ("001_b", "000_a"):
        (tmp_path / "explain@x" / c).mkdir(parents=True)
        (tmp_path / "explain@x" / c / "keywords.json").write_text("{}")
    assert [p.name for p in class_dirs_with(tmp_path, "keywords.json")] == ["000_a", "001_b"]
    assert (pseudo_groups_file(), pseudo_groups_meta()) == ("pseudo_groups.csv", "meta.json")
    assert (pseudo_groups_file("dro_random"), pseudo_groups_meta("dro_random")) == (
        "pseudo_groups.dro_random.csv", "meta.dro_random.json")


def test_artifact_readers_say_which_file_and_which_stage(tmp_path):
    with pytest.raises(ArtifactError, match="run the DEXTER stage first"):
        read_keywords(tmp_path / "keywords.json")
    (tmp_path / "keywords.json").write_text(json.dumps({"class_index": 0}))
    with pytest.raises(ArtifactError, match=r"missing \['class_name', 'keywords'\]"):
        read_keywords(tmp_path / "keywords.json")
    with pytest.raises(ArtifactError, match="run the reason stage"):
        read_class_attributes(tmp_path, 0, "circle")
    (tmp_path / "000_circle").mkdir()
    (tmp_path / "000_circle" / "attributes.json").write_text(json.dumps(
        {"class_name": "circle", "attributes": [" water ", ""], "verdict": "biased",
         "alternatives": {"water": ["land", "water", "land"]}}))
    a = read_class_attributes(tmp_path, 0, "circle")
    assert (a.attributes, a.verdict, a.alternatives) == (("water",), "biased", {"water": ("land",)})
    assert issubclass(ArtifactError, UserInputError)


def test_every_reader_of_keywords_json_is_the_one_contract(tmp_path):
    """The reasoning, the audit report and the explain stage's metrics read keywords.json through
    common.artifacts: a malformed file is the same one-line error naming the file, whoever reads it."""
    from dexter.reasoning.errors import ReasoningError
    from dexter.reasoning.inputs import load_class_inputs
    from dro.audit_report import collect_classes
    from stages.explain import write_metrics

    folder = tmp_path / "dexter" / "000_circle"
    folder.mkdir(parents=True)
    (folder / "keywords.json").write_text(json.dumps({"class_index": 0, "class_name": "circle", "keywords": "water"}))
    messages = []
    for read, error in ((lambda: read_keywords(folder / "keywords.json"), ArtifactError),
                        (lambda: load_class_inputs(folder), ReasoningError),
                        (lambda: collect_classes(tmp_path / "dexter", tmp_path / "reasoning"), ArtifactError),
                        (lambda: write_metrics({0: folder / "keywords.json"}, tmp_path / "m.json", 1.0), ArtifactError)):
        with pytest.raises(error) as err:
            read()
        messages.append(str(err.value))
    assert len(set(messages)) == 1 and messages[0].startswith(f"{folder / 'keywords.json'}: keywords")
    assert "\n" not in messages[0]


def test_every_reader_of_attributes_and_verification_is_the_one_contract(tmp_path):
    from common.artifacts import read_verification
    from dro.audit_report import collect_classes

    (tmp_path / "dexter" / "000_circle").mkdir(parents=True)
    (tmp_path / "dexter" / "000_circle" / "keywords.json").write_text(json.dumps(
        {"class_index": 0, "class_name": "circle", "keywords": ["water"]}))
    reasoning = tmp_path / "reasoning" / "000_circle"
    reasoning.mkdir(parents=True)
    (reasoning / "attributes.json").write_text(json.dumps({"class_name": "circle", "attributes": [],
                                                           "verdict": "biased"}))
    with pytest.raises(ArtifactError, match="attributes.json: 'attributes' is empty"):
        collect_classes(tmp_path / "dexter", tmp_path / "reasoning")
    (reasoning / "attributes.json").write_text(json.dumps({"class_name": "circle", "attributes": ["water"]}))
    (reasoning / "verification.json").write_text(json.dumps({"verdict": "biased", "verified": ["water"]}))
    with pytest.raises(ArtifactError, match=r"verification.json: missing \['effects'\] \(not written by the reason"):
        collect_classes(tmp_path / "dexter", tmp_path / "reasoning")
    (reasoning / "verification.json").write_text(json.dumps({"verdict": "biased", "verified": ["water"],
                                                             "effects": []}))
    (audit,) = collect_classes(tmp_path / "dexter", tmp_path / "reasoning")
    assert audit.attributes == ["water"] and audit.verification == read_verification(reasoning / "verification.json")


def test_fingerprints_cover_settings_and_code(tmp_path):
    assert json_digest({"a": 1, "b": [1, 2]}) == json_digest({"b": [1, 2], "a": 1})
    assert json_digest({"a": 1}, 8) != json_digest({"a": 2}, 8) and len(json_digest({}, 8)) == 8
    (tmp_path / "m.py").write_text("x = 1\n")
    before, tree = code_digest(tmp_path), tree_signature(tmp_path, contents=True)
    (tmp_path / "m.py").write_text("x = 2\n")
    assert code_digest(tmp_path) != before and tree_signature(tmp_path, contents=True) != tree
    assert code_digest(tmp_path, extra="torch 2") != code_digest(tmp_path)


def test_every_input_error_of_the_project_derives_from_the_one_root():
    from common.classifier import ModelError
    from common.clip import ClipError
    from common.device import DeviceError
    from common.word_tokenizers import WordTokenizerError
    from dexter.errors import DexterInputError
    from dro.data.base import DatasetError
    from dro.slices import LabellingError
    from stages.common import StageInputError, user_errors
    from stages.params import ParamsError
    from world.manifest import WorldNotCoveredError
    from world.synthetic import WorldSpecError

    for error in (ModelError, ClipError, DeviceError, WordTokenizerError, DexterInputError, DatasetError,
                  LabellingError, StageInputError, ParamsError, WorldNotCoveredError, WorldSpecError):
        assert issubclass(error, UserInputError), error
    assert UserInputError in user_errors()
