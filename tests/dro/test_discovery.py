"""Discovery scored against the world's truth, the ablation attributes, the acceptance checks per world
spec, and the report's discovery table."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from dro.ablations import ablation_slices, classname_slices, random_word_slices
from dro.audit_report import discovery_markdown
from dro.discovery import names_value, score_discovery
from dro.slices import ClassSlices
from world.synthetic import SyntheticWorldConfig

REPO = Path(__file__).resolve().parents[2]
WORLD = SyntheticWorldConfig()  # circle: water, square: red, triangle: snow, cross: unbiased


def _labelling(**f1):
    return {"per_class": {name: {"f1_conflicting": v} for name, v in f1.items()}}


def test_a_perfect_audit_scores_one():
    slices = [ClassSlices("circle", ("water",), {}, "biased"), ClassSlices("square", ("red",), {}, "biased"),
              ClassSlices("triangle", ("on snow",), {}, "biased"), ClassSlices("cross", (), {}, "no_evidence")]
    d = score_discovery(WORLD, slices, _labelling(circle=0.9, square=0.95, triangle=0.85, cross=0.1))
    assert d["shortcut_recall"] == 1.0 and d["attribute_precision"] == 1.0
    assert d["false_positive_classes"] == [] and d["num_false_positive_classes"] == 0
    assert d["labelling_f1"] == {"circle": 0.9, "square": 0.95, "triangle": 0.85}  # biased classes only
    assert d["classes"]["cross"] == {"true_shortcut": None, "correlation": None, "biased": False,
                                     "verdict": "no_evidence", "attributes": []}
    assert d["classes"]["triangle"]["found"] is True and d["classes"]["square"]["true_shortcut"] == "color=red"


def test_a_lucky_or_sloppy_audit_is_caught():
    # no verdicts (older reasoning output): biased iff attributes were handed to labelling
    slices = [ClassSlices("circle", ("water", "circle")), ClassSlices("square", ("land",)),
              ClassSlices("triangle", ("snow",)), ClassSlices("cross", ("yellow",))]
    d = score_discovery(WORLD, slices, _labelling())
    assert d["shortcut_recall"] == pytest.approx(2 / 3)  # square's red missed
    assert d["attribute_precision"] == pytest.approx(2 / 5)  # water, snow of 5 attributes
    assert d["false_positive_classes"] == ["cross"]
    assert d["classes"]["square"]["found"] is False and d["labelling_f1"]["square"] is None


def test_a_shortcut_at_chance_is_not_a_bias():
    world = SyntheticWorldConfig(shortcuts={"circle": {"attribute": "color", "value": "red", "correlation": 0.25}})
    slices = [ClassSlices(c, ()) if c != "circle" else ClassSlices(c, ("red",)) for c in world.classes]
    slices = [s if s.attributes else ClassSlices(s.class_name, (), {}, "no_evidence") for s in slices]
    d = score_discovery(world, slices, _labelling())
    assert d["shortcut_recall"] is None and d["false_positive_classes"] == ["circle"]
    assert d["attribute_precision"] == 0.0


def test_names_value_matches_words_not_substrings():
    assert names_value("on water", "water") and names_value("Water", "water")
    assert not names_value("watery", "water") and not names_value("land", "water")


def test_classname_ablation():
    got = classname_slices(["circle", "square", "cross"])
    assert [s.attributes for s in got] == [("circle",), ("square",), ("cross",)]
    assert got[0].alternatives == {"circle": ("square", "cross")} and all(s.has_alternatives for s in got)


def test_random_ablation_is_seeded_distinct_and_keeps_the_kind():
    values = WORLD.attribute_values
    a = random_word_slices(WORLD.classes, values, seed=0)
    assert a == random_word_slices(WORLD.classes, values, seed=0)
    assert [s.attributes for s in a] != [s.attributes for s in random_word_slices(WORLD.classes, values, seed=1)]
    words = [s.attributes[0] for s in a]
    assert len(set(words)) == 4
    for s in a:
        (word,) = s.attributes
        kind = "color" if word in values["color"] else "background"
        assert set(s.alternatives[word]) == set(values[kind]) - {word}
    many = random_word_slices([f"c{i}" for i in range(10)], {"color": ["red", "yellow"]}, seed=0)
    assert len(many) == 10  # more classes than words: drawn again
    with pytest.raises(ValueError, match="synthetic world"):
        ablation_slices("dro_random", ["a", "b"], None, 0)


def test_discovery_table_reads_at_a_glance():
    slices = [ClassSlices("circle", ("water",), {}, "biased"), ClassSlices("square", ("land",), {}, "biased"),
              ClassSlices("triangle", ("snow",), {}, "biased"), ClassSlices("cross", ("red",), {}, "biased")]
    md = "\n".join(discovery_markdown(score_discovery(WORLD, slices, _labelling(circle=0.91))))
    assert "| circle | background=water (0.95) | biased | water | yes | 0.91 |" in md
    assert "| square | color=red (0.90) | biased | land | **no** | - |" in md
    assert "| cross | none | **biased** (false positive) | red | - | - |" in md
    assert "Shortcut recall **0.67**" in md and "false-positive classes: **cross**" in md


# ---------------------------------------------------------------------------------------------
# acceptance checks per world spec
# ---------------------------------------------------------------------------------------------


def _params(**synthetic):
    from stages.params import parse_params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["synthetic"]["preset"] = None  # the rich world params.yaml spells out (the default)
    raw["synthetic"].update(synthetic)
    return parse_params(copy.deepcopy(raw))


def _results(wg: dict[str, float], discovery: dict) -> dict:
    return {"methods": {m: {"worst_group_acc": v} for m, v in wg.items()}, "discovery": discovery}


GOOD = {"erm": 0.2, "groupdro_oracle": 0.9, "dro_dexter": 0.88, "dro_classname": 0.3, "dro_random": 0.5}


def _discovery(world, found=True, f1=0.9, verdict_of_unbiased="no_evidence", extra=()):
    slices = []
    for c in world.classes:
        s = world.shortcut(c)
        if s is None:
            slices.append(ClassSlices(c, ("red",) if verdict_of_unbiased == "biased" else (), {},
                                      verdict_of_unbiased))
        else:
            slices.append(ClassSlices(c, (s.value if found else "nothing", *extra), {}, "biased"))
    return score_discovery(world, slices, _labelling(**{c: f1 for c in world.classes}))


def _failed(checks) -> list[str]:
    return [c.name for c in checks if not c.ok]


def test_default_world_acceptance():
    from stages.acceptance import acceptance_checks

    params = _params()
    world = params.synthetic.world_config()
    ok = acceptance_checks(params, {"passed": True}, _results(GOOD, _discovery(world)))
    # gates; oracle and DEXTER vs oracle; per biased class: found, nothing else, F1; cross; no false positive;
    # ERM and the ablation margin
    assert _failed(ok) == [] and len(ok) == 1 + 2 + 3 * 3 + 1 + 1 + 2
    bad = acceptance_checks(params, {"passed": False},
                            _results({**GOOD, "erm": 0.6, "dro_random": 0.8}, _discovery(world, found=False, f1=0.5)))
    failed = _failed(bad)
    assert "ERM worst-group accuracy" in failed
    assert "DEXTER + DRO worst-group accuracy vs best ablation + 0.15" in failed
    assert "the audit names circle's shortcut background=water" in failed
    assert "labelling F1 of square's bias-conflicting slice (train)" in failed
    assert "world models pass their quality gates (metrics/world.json: passed)" in failed
    # a right shortcut named beside a wrong attribute, and the unbiased class called biased: the verdicts'
    # false positives
    noisy = _failed(acceptance_checks(params, {"passed": True}, _results(
        GOOD, _discovery(world, extra=("purple",), verdict_of_unbiased="biased"))))
    assert set(noisy) == {"circle: no attribute but its true shortcut value",
                          "square: no attribute but its true shortcut value",
                          "triangle: no attribute but its true shortcut value",
                          "cross (unbiased): no evidence of a shortcut", "no unbiased class reported biased"}


def test_no_shortcut_world_gets_the_checks_that_make_sense():
    from stages.acceptance import acceptance_checks

    params = _params(shortcuts={c: None for c in ("circle", "square", "triangle", "cross")})
    world = params.synthetic.world_config()
    checks = acceptance_checks(params, {"passed": True}, _results({**GOOD, "erm": 0.9}, _discovery(world)))
    assert _failed(checks) == [] and {c.name for c in checks} == {
        "world models pass their quality gates (metrics/world.json: passed)",
        "no class reported biased (no planted shortcut)",
        "DEXTER + DRO worst-group accuracy vs ERM - 0.05 (no shortcut)"}
    fp = acceptance_checks(params, {"passed": True},
                           _results({**GOOD, "erm": 0.95}, _discovery(world, verdict_of_unbiased="biased")))
    assert set(_failed(fp)) == {"no class reported biased (no planted shortcut)",
                                "DEXTER + DRO worst-group accuracy vs ERM - 0.05 (no shortcut)"}


def test_weak_shortcut_skips_the_checks_only_a_strong_one_guarantees():
    from stages.acceptance import acceptance_checks

    weak = {"circle": {"attribute": "background", "value": "water", "correlation": 0.6},
            "square": None, "triangle": None, "cross": None}
    params = _params(shortcuts=weak)
    world = params.synthetic.world_config()
    checks = acceptance_checks(params, {"passed": True}, _results({**GOOD, "erm": 0.8}, _discovery(world)))
    names = {c.name for c in checks}
    assert "ERM worst-group accuracy" not in names and "the audit names circle's shortcut background=water" in names
    assert _failed(checks) == []


def test_small_preset_keeps_its_checks():
    from stages.acceptance import acceptance_checks

    params = _params(preset="small")
    world = params.synthetic.world_config()
    # a quick check, not a benchmark: the first world's basic gate, and no ablation margin (with two values
    # per attribute a random word names the shortcut's kind half the time)
    checks = acceptance_checks(params, {"passed": False, "passed_basic": True}, _results(GOOD, _discovery(world)))
    assert _failed(checks) == [] and len(checks) == 1 + 2 + 2 * 3 + 1 + 1
    assert "DEXTER + DRO worst-group accuracy vs best ablation + 0.15" not in {c.name for c in checks}
