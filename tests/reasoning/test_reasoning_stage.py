"""The DVC stage ``python -m stages.reason``: every class folder, resume, summary, no key on disk."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml
from reasoning_fakes import FakeChatServer, solid, write_class_dir
from verify_fakes import world_prober

from common.errors import UserInputError
from dexter.reasoning.world import synthetic_phrase_bank
from stages import reason
from stages.params import parse_params

KEY = "sk-stage-SECRET-93e1aa"


def params_for(tmp_path: Path, **reasoning) -> object:
    raw = {
        "dataset": "synthetic",
        "device": "cpu",
        "synthetic": {"preset": "small"},
        "models": {"world": {"stable_diffusion": "none", "bert": "none", "clip": str(tmp_path / "no_clip")}},
        "reasoning": {"verify": {"enabled": True, "n_images": 8, "activation_images": 8, "caption_frames": 2}, **reasoning},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return parse_params(raw)


def fabricate(root: Path, erm: bool = True) -> None:
    write_class_dir(root, 0, "circle", ["water"], [[solid((40, 80, 170), seed=i) for i in range(3)]])
    write_class_dir(root, 1, "square", ["land"], [[solid((90, 130, 50), seed=i) for i in range(2)]])
    if erm:  # the audited classifier's config (its answers come from the test's prober)
        (root.parent / "erm").mkdir(parents=True, exist_ok=True)
        (root.parent / "erm" / "config.json").write_text(json.dumps({"class_names": ["circle", "square"]}))


def prober():
    """The 2-class world rendered, answered by a classifier for which anything on water is a circle."""
    from world.synthetic import SyntheticWorldConfig

    return world_prober(SyntheticWorldConfig.from_preset("small"), {0: ("background", 0)})


def n_captions(root: Path) -> int:
    return sum(len(json.loads(p.read_text())) for p in root.glob("*/captions.json"))


def test_synthetic_phrase_bank_is_the_worlds_caption_vocabulary():
    p = parse_params({"models": {"world": {"stable_diffusion": "s", "bert": "b", "clip": "c"}},
                      "synthetic": {"classes": ["circle", "square", "triangle"], "colors": ["red", "yellow", "purple"],
                                    "backgrounds": ["water", "land", "snow"], "shortcuts": {}, "models": "world"}})
    bank = synthetic_phrase_bank(p.synthetic.world_config())
    assert len(bank) == 27 and len(set(bank)) == 27
    assert "a picture of a purple triangle on snow" in bank
    kind, settings = reason.backend_settings(p)
    assert kind == "offline" and settings["phrases"] == bank and settings["clip"] == "c"


def test_stage_openai_all_classes_resume_and_no_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAGE_KEY", KEY)
    fabricate(tmp_path / "outputs" / "dexter")
    with FakeChatServer() as server:
        params = params_for(tmp_path, backend="openai", base_url=server.base_url, api_key_env="STAGE_KEY",
                            timeout_s=2, max_retries=2)
        summary = reason.run(params, prober=prober())
        n = server.count()
        out = tmp_path / "outputs" / "reasoning"
        assert n_captions(out) == 2 + 2 and n == n_captions(out) + 2 * 2  # 2 fresh frames per run, report + attributes
        # the LLM proposed "water" and "blue waves"; only the verified one is handed on
        assert summary["classes"]["000_circle"]["attributes"] == ["water"]
        assert summary["classes"]["000_circle"]["verdict"] == "biased"
        assert summary["classes"]["001_square"]["class_name"] == "square"
        attrs = json.loads((out / "000_circle" / "attributes.json").read_text())
        assert "blue waves" in attrs["rationale"] and "not verified" in attrs["rationale"]
        report_req = [r for r in server.requests if r["kind"] == "report"][0]["body"]["messages"][-1]["content"]
        assert "Counterfactual test on the classifier itself" in report_req and "water: flip +1.00" in report_req
        for cls in ("000_circle", "001_square"):
            for f in ("captions.json", "report.md", "attributes.json", "verification.json", "effects.png",
                      "as_dexter_prompts.txt", "as_captions.txt"):
                assert (out / cls / f).is_file()
        assert (out / ".cache").is_dir()

        reason.run(params, prober=prober())  # nothing changed: skipped, zero requests
        assert server.count() == n

        # one class's DEXTER output changes: only that class is redone, from the cache where possible
        kw = tmp_path / "outputs" / "dexter" / "001_square" / "keywords.json"
        meta = json.loads(kw.read_text())
        meta["keywords"] = ["land", "grass"]
        kw.write_text(json.dumps(meta))
        reason.run(params, prober=prober())
        assert server.count() == n + 2  # new report and attributes (the captions come from the cache)
        attrs = json.loads((out / "001_square" / "attributes.json").read_text())
        assert attrs["keywords"] == ["land", "grass"]
        v = json.loads((out / "001_square" / "verification.json").read_text())
        assert "grass" in v["skipped"] and "not a value of any attribute kind" in v["skipped"]["grass"]

    for p in tmp_path.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            assert KEY.encode() not in data and base64.b64encode(KEY.encode()) not in data, p


def test_stage_offline_with_tiny_clip(tmp_path, monkeypatch, tiny_clip):
    clip = tiny_clip
    monkeypatch.chdir(tmp_path)
    fabricate(tmp_path / "outputs" / "dexter")
    params = params_for(tmp_path, clip=str(clip))
    summary = reason.run(params, prober=prober())
    assert set(summary["classes"]) == {"000_circle", "001_square"}
    report = (tmp_path / "outputs" / "reasoning" / "000_circle" / "report.md").read_text()
    assert "no language model" in report and "## Verdict of the counterfactual test" in report
    captions = json.loads((tmp_path / "outputs" / "reasoning" / "001_square" / "captions.json").read_text())
    bank = set(synthetic_phrase_bank(params.synthetic.world_config()))
    assert len(captions) == 2 and set(captions.values()) <= bank
    assert all(k.startswith("frames/") for k in captions)  # fresh-noise frames, not DEXTER's
    verification = json.loads((tmp_path / "outputs" / "reasoning" / "verification.json").read_text())
    # water makes squares circles (circle: flip); with two backgrounds, squares need land to stay squares
    # (square: drop): the same dependence seen from each class
    assert verification["biased_classes"] == ["circle", "square"]
    assert verification["classes"]["000_circle"]["decisions"] == {"water": "flip"}
    assert verification["classes"]["001_square"]["decisions"] == {"land": "drop"}

    # a class DEXTER no longer produces disappears from the reasoning outputs too
    import shutil

    shutil.rmtree(tmp_path / "outputs" / "dexter" / "001_square")
    summary = reason.run(params, prober=prober())
    assert set(summary["classes"]) == {"000_circle"}
    assert not (tmp_path / "outputs" / "reasoning" / "001_square").exists()


def test_stage_errors_are_one_line_input_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = params_for(tmp_path)
    with pytest.raises(UserInputError, match="run the DEXTER stage first"):
        reason.run(params)
    fabricate(tmp_path / "outputs" / "dexter", erm=False)
    with pytest.raises(UserInputError, match="no classifier at outputs/erm"):
        reason.run(params)
    fabricate(tmp_path / "outputs" / "dexter")
    with pytest.raises(UserInputError, match="no classifier at outputs/erm.*model.safetensors"):
        reason.run(params)  # the config alone is not a classifier
    with pytest.raises(UserInputError, match="cannot load CLIP"):
        reason.run(params, prober=prober())
    (tmp_path / "outputs" / "erm" / "config.json").write_text(json.dumps({"class_names": ["circle", "cross"]}))
    with pytest.raises(UserInputError, match="not the synthetic world's"):
        reason.run(params, prober=prober())
    (tmp_path / "outputs" / "erm" / "config.json").write_text(json.dumps({"class_names": ["circle", "square"]}))
    monkeypatch.delenv("NO_KEY_HERE", raising=False)
    with pytest.raises(UserInputError, match="NO_KEY_HERE"):
        reason.run(params_for(tmp_path, backend="openai", api_key_env="NO_KEY_HERE"))


def test_stage_main_runs_as_a_module(tmp_path, monkeypatch, capsys):
    """``python -m stages.reason`` path: main() reads params.yaml from the working directory."""
    monkeypatch.chdir(tmp_path)
    params_for(tmp_path)
    monkeypatch.setattr("sys.argv", ["stages.reason"])
    with pytest.raises(SystemExit) as e:
        reason.main()
    assert e.value.code == 2 and "run the DEXTER stage first" in capsys.readouterr().err
