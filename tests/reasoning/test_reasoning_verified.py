"""Verified verdicts in the reasoning step: fresh-noise frames, the counterfactual test, reports that quote it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from reasoning_fakes import FakeChatServer, solid, write_class_dir
from verify_fakes import TableProber, world_prober, world_vocabulary

from dexter.reasoning import make_backend, reason_about_class
from dexter.reasoning.audit import Auditor, VerifySettings, candidate_attributes
from dexter.reasoning.inputs import load_class_inputs
from dexter.reasoning.proposals import CounterfactualProposal, parse_counterfactual
from world.synthetic import SyntheticWorldConfig

CFG = SyntheticWorldConfig.from_preset("small")
SETTINGS = VerifySettings(n_images=8, activation_images=8, caption_frames=2)


class ScriptedBackend:
    """Captions, report and attributes without any model; counterfactuals from a fixed proposal."""

    written_by = "a scripted test backend"

    def __init__(self, proposal=None):
        self.proposal, self.evidence = proposal, None

    def caption(self, class_name, images):
        return [f"a picture of something on water ({len(images)})" for _ in images]

    def report(self, evidence):
        self.evidence = evidence
        return "## Key attributes and visual features\nThe class is clearly biased towards yellow.\n"

    def attributes(self, evidence, report):
        return ["yellow", "water"], "Yellow and water everywhere."

    def counterfactuals(self, class_name, attribute, class_names):
        return self.proposal if self.proposal is not None else "nothing to propose"

    def close(self):
        pass


def circle_dir(tmp_path, keywords=("water", "yellow", "circle", "land")):
    # DEXTER's frames are irrelevant now: they are neither captioned nor counted
    return write_class_dir(tmp_path / "dexter", 0, "circle", list(keywords), [[solid((200, 200, 30))] for _ in keywords])


def test_candidates_drop_class_names_and_function_words():
    words, skipped = candidate_attributes(["Water", "circles", "the", "square", "water", "sea"], ["circle", "square"])
    assert words == ["water", "sea"]
    assert set(skipped) == {"circles", "the", "square"} and "class name" in skipped["square"]


def test_reason_with_an_auditor_hands_on_only_verified_attributes(tmp_path):
    backend = ScriptedBackend()
    auditor = Auditor(world_prober(CFG, {0: ("background", 0)}), CFG.shapes, SETTINGS, world_vocabulary(CFG))
    result = reason_about_class(circle_dir(tmp_path), tmp_path / "out", backend, auditor)
    out = tmp_path / "out"

    attrs = json.loads((out / "attributes.json").read_text())
    assert attrs["attributes"] == ["water"] and attrs["verdict"] == "biased"
    assert attrs["alternatives"] == {"water": ["land"]}
    assert {(e["attribute"], e["kind"]) for e in attrs["effects"]} == {(a, k) for a in ("water", "yellow", "land")
                                                                       for k in ("flip", "drop")}
    assert "not verified" in attrs["rationale"] and "yellow" in attrs["rationale"].split("not verified")[1]
    # the report may not contradict the test: the measured verdict opens and closes it, and the backend's
    # claim about yellow (tested, not verified) is quoted as unsupported
    assert result.report.startswith("> Measured on the classifier: **Biased.**")
    assert "does not support" in result.report and '"The class is clearly biased towards yellow."' in result.report
    assert "## Verdict of the counterfactual test" in result.report
    assert "**Biased.**" in result.report and "water" in result.report.split("## Verdict")[1]
    assert backend.evidence.verification["verified"] == ["water"]

    # frames: fresh noise from the runs' final prompts, only images the classifier assigned to the class
    captions = json.loads((out / "captions.json").read_text())
    assert captions and all(k.startswith("frames/run_") for k in captions)
    v = json.loads((out / "verification.json").read_text())
    assert v["skipped"] == {"circle": "a class name (content, not an attribute)"}
    prompts = {a["prompt"]: a for a in v["activation"]["prompts"]}
    assert prompts["a picture of a water."]["score"] == 100.0  # anything on water is a circle
    assert prompts["a picture of a yellow."]["n"] == 8
    assert v["cost_total"]["images_generated"] > 0 and v["cost"]["images_used"] == 8 * 8  # the 2-class world has 8 prompts
    lines = (out / "as_dexter_prompts.txt").read_text().splitlines()
    assert lines[0].startswith("#") and lines[1].split("\t")[3] == "a picture of a water."
    assert (out / "as_captions.txt").read_text().count("\n") == 1 + len(set(captions.values()))
    for png in ("effects.png", "counterfactuals.png"):
        from PIL import Image

        with Image.open(out / png) as im:
            assert im.size[0] > 100 and im.size[1] > 50


def test_no_shortcut_means_no_evidence_whatever_the_backend_says(tmp_path):
    backend = ScriptedBackend()
    auditor = Auditor(world_prober(CFG, {}), CFG.shapes, SETTINGS, world_vocabulary(CFG))
    result = reason_about_class(circle_dir(tmp_path), tmp_path / "out", backend, auditor)
    assert result.attributes.attributes == [] and result.attributes.verdict == "no_evidence"
    assert result.attributes.alternatives == {}
    assert "**No evidence of a shortcut.**" in result.report
    assert "not verified by the test, so not used: yellow, water" in result.attributes.rationale


def test_without_an_auditor_everything_says_unverified(tmp_path):
    result = reason_about_class(circle_dir(tmp_path), tmp_path / "out", ScriptedBackend())
    assert result.attributes.attributes == ["yellow", "water"] and result.attributes.effects == []
    assert result.attributes.rationale.startswith("UNVERIFIED") and "UNVERIFIED" in result.report
    assert not (tmp_path / "out" / "verification.json").exists()


def test_real_data_path_uses_the_backends_proposal(tmp_path):
    proposal = CounterfactualProposal(kind="background", value="water", alternatives=("land",),
                                      template="a picture of a red {class} on {value}")
    auditor = Auditor(world_prober(CFG, {0: ("background", 0)}), CFG.shapes, SETTINGS)  # no vocabulary
    inputs = load_class_inputs(circle_dir(tmp_path, ["water", "sunshine"]))
    v = auditor.verify(inputs, ScriptedBackend(proposal))
    assert v.verified == ["water"]
    assert v.designs[0].flip[0].with_prompt == "a picture of a red square on water"
    assert v.skipped == {"sunshine": "same attribute as 'water', tested once"}
    v2 = auditor.verify(inputs, ScriptedBackend())
    assert v2.verdict == "no_evidence" and v2.skipped["water"] == "nothing to propose"


def test_auditor_rejects_inconsistent_inputs(tmp_path):
    from dexter.reasoning import ReasoningError

    with pytest.raises(ReasoningError, match="classes"):
        Auditor(world_prober(CFG), ["circle", "square"], SETTINGS, world_vocabulary(SyntheticWorldConfig(classes=("circle", "square", "triangle"), colors=("red", "yellow", "purple"), backgrounds=("water", "land", "snow"), shortcuts={})))
    auditor = Auditor(world_prober(CFG), ["circle", "cross"], SETTINGS)
    d = write_class_dir(tmp_path / "dexter", 1, "square", ["land"], [[]])
    with pytest.raises(ReasoningError, match="'square' there but 'cross'"):
        auditor.verify(load_class_inputs(d))


# -- counterfactual proposals ----------------------------------------------------------------------
def test_parse_counterfactual_validates():
    p = parse_counterfactual('Sure: {"kind": "setting", "value": "Water", "alternatives": ["a forest", "a forest"], '
                             '"template": "a photo of a {class} near {value}"}')
    assert p.value == "water" and p.alternatives == ("a forest",)
    assert parse_counterfactual('{"testable": false, "reason": "it is the bird"}').startswith("the language model says")
    for bad, msg in [('{"kind": "k", "value": "v", "alternatives": ["a"], "template": "a {class}"}', "template"),
                     ('{"kind": "k", "value": "v", "alternatives": ["v"], "template": "{class} {value}"}', "repeat"),
                     ('{"kind": "k", "value": "v", "alternatives": [], "template": "{class} {value}"}', "alternatives"),
                     ('{"kind": "k", "value": "v", "alternatives": ["w"], "template": "{class} {value} {x}"}', "slots"),
                     ("no json", "no JSON")]:
        with pytest.raises(ValueError, match=msg):
            parse_counterfactual(bad)


def test_openai_counterfactuals_are_validated_and_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv("CF_KEY", "sk-cf")
    with FakeChatServer() as server:
        b = make_backend("openai", base_url=server.base_url, api_key_env="CF_KEY", timeout_s=2, max_retries=0,
                         cache_dir=tmp_path / "cache")
        server.fail("counterfactual", "malformed")
        p = b.counterfactuals("waterbird", "water", ["landbird", "waterbird"])
        assert isinstance(p, CounterfactualProposal) and p.alternatives == ("a forest", "a desert")
        assert server.count("counterfactual") == 2
        user = [r for r in server.requests if r["kind"] == "counterfactual"][0]["body"]["messages"][1]["content"]
        assert "Keyword to test: water" in user and "landbird" in user
        server.answers["counterfactual"] = '{"testable": false, "reason": "the bird itself"}'
        assert "the bird itself" in b.counterfactuals("waterbird", "beak", ["landbird", "waterbird"])
        server.answers["counterfactual"] = '{"kind": "x"}'
        assert "no valid counterfactual JSON" in b.counterfactuals("waterbird", "wing", ["landbird", "waterbird"])
        b.close()


class WaterEmbedder:
    """Texts about water point one way, everything else another (plus a little per-text spread)."""

    WET = {"sea", "lake", "river", "beach", "harbor", "pond", "waterfall", "ocean", "swamp", "boat", "dock"}

    def embed_texts(self, texts):
        out = []
        for t in texts:
            v = np.array([1.0, 0.0, 0.0]) if set(t.split()) & self.WET else np.array([0.0, 1.0, 0.0])
            v = v + np.array([0, 0, (sum(map(ord, t)) % 7) / 50])
            out.append(v / np.linalg.norm(v))
        return np.array(out)


def test_offline_counterfactuals_come_from_the_bank_groups():
    b = make_backend("offline", bank="general", embedder=WaterEmbedder())
    p = b.counterfactuals("waterbird", "sea", ["landbird", "waterbird"])
    assert p.kind == "setting" and p.value == "the sea" and len(p.alternatives) == 4
    assert not set(" ".join(p.alternatives).split()) & WaterEmbedder.WET  # contrasts, not synonyms
    assert p.template == "a photo of a {class}, {value}"
    assert "not a phrase" in b.counterfactuals("waterbird", "quantum", ["landbird", "waterbird"])
    hair = b.counterfactuals("blond", "beard", ["not blond", "blond"])
    assert hair.kind == "person" and hair.value == "a person with a beard"
    # a plain phrase list (the synthetic world's bank) has no groups: the world's vocabulary is used instead
    assert make_backend("offline", phrases=["a", "b"], embedder=WaterEmbedder()).groups == []


# -- the stage with the real generator path (tiny models) -------------------------------------------
@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from tiny_models import make_tiny_sd

    return make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd")


def test_stage_builds_the_prober_from_params(tmp_path, monkeypatch, tiny_sd, tiny_clip):
    import torch

    from common.classifier import build_classifier, save_classifier
    from stages import reason
    from stages.params import parse_params

    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    save_classifier(build_classifier("small_cnn", ("circle", "square"), 16, width=4), tmp_path / "outputs" / "erm")
    write_class_dir(tmp_path / "outputs" / "dexter", 0, "circle", ["water", "red"], [[], []])
    write_class_dir(tmp_path / "outputs" / "dexter", 1, "square", ["land"], [[]])
    raw = {"dataset": "synthetic", "device": "cpu", "synthetic": {"preset": "small"},
           "models": {"world": {"stable_diffusion": str(tiny_sd), "bert": "none", "clip": str(tiny_clip)}},
           "dexter": {"inference_steps": 2},
           "reasoning": {"verify": {"enabled": True, "n_images": 4, "activation_images": 4, "caption_frames": 1, "batch_size": 16}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    reason.run(parse_params(raw))
    v = json.loads((tmp_path / "outputs" / "reasoning" / "verification.json").read_text())
    assert set(v["classes"]) == {"000_circle", "001_square"}
    circle = v["classes"]["000_circle"]
    assert set(circle["tested"]) == {"water", "red"} and len(circle["effects"]) == 4
    assert circle["cost_total"]["images_generated"] >= 2 * 4  # the runs' prompts, then the counterfactuals
    # 2 contexts x (with, 1 alternative) x 4 images, each counted or set aside by the (tiny, random) CLIP judge
    # (rows of a content the random classifier never recognises are not read at all)
    assert all(e["n"] + e["set_aside_with"] + e["set_aside_without"] == 2 * 2 * 4 * (2 - len(e["rows_out_of_domain"])) // 2
               for e in circle["effects"])


def test_table_prober_counts():
    p = TableProber({"x": {0: 0.25}}, 2)
    assert p.outcomes(["x"], 8)["x"].hits(0) == 2


def test_contradictions_are_found_in_claims_only():
    from dexter.reasoning.summary import contradictions

    v = {"verified": ["water"], "tested": {"water": {}, "yellow": {}, "dark hair": {}}}
    text = ("## Bias hypothesis\nThe classifier relies on yellow. It is not biased towards yellow. Water is a shortcut.\n"
            "Yellow objects appear often. People with dark hair show a strong bias.")
    assert contradictions(text, v) == ["The classifier relies on yellow.", "People with dark hair show a strong bias."]
    none = {"verified": [], "tested": {"red": {}}}
    assert contradictions("The class is biased. It is not biased.", none) == ["The class is biased."]
