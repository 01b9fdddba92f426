"""The audit report shows the verdicts, effect charts, counterfactual pairs, both frame grids and the cost."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import yaml
from verify_fakes import world_prober, world_vocabulary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reasoning"))
from reasoning_fakes import solid, write_class_dir  # noqa: E402

from dexter.reasoning import reason_about_class  # noqa: E402
from dexter.reasoning.audit import Auditor, VerifySettings  # noqa: E402
from world.synthetic import SyntheticWorldConfig  # noqa: E402

CFG = SyntheticWorldConfig.from_preset("small")


class Backend:
    written_by = "test"

    def caption(self, class_name, images):
        return ["a picture of a red circle on water"] * len(images)

    def report(self, evidence):
        return "# Bias report\n\n## Bias hypothesis\nsee below\n"

    def attributes(self, evidence, report):
        return [], "none"


def test_report_stage_renders_verdicts_and_writes_effects_csv(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dexter = tmp_path / "outputs" / "dexter"
    auditor = Auditor(world_prober(CFG, {0: ("background", 0)}), CFG.shapes,
                      VerifySettings(n_images=8, activation_images=8, caption_frames=2), world_vocabulary(CFG))
    for c, name, kws in [(0, "circle", ["water", "yellow"]), (1, "square", ["yellow"])]:
        d = write_class_dir(dexter, c, name, kws, [[solid((40, 80, 170), seed=i) for i in range(2)] for _ in kws])
        reason_about_class(d, tmp_path / "outputs" / "reasoning" / d.name, Backend(), auditor)
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("| method | worst |\n|---|---|\n| ERM | 8 |\n")
    (tmp_path / "results" / "metrics.json").write_text(json.dumps(
        {"methods": {"erm": {"worst_group_acc": 0.08, "avg_acc": 0.63}}}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"synthetic": {"preset": "small"}, "models": {"world": {"stable_diffusion": "s", "bert": "b", "clip": "c"}}}))

    from stages import report

    monkeypatch.setattr("sys.argv", ["report"])
    report.main()
    md = (tmp_path / "results" / "report.md").read_text()
    circle = md.split("### 0: circle")[1].split("### 1: square")[0]
    assert "Verdict of the counterfactual test: **biased towards water**" in circle
    assert "| water | flip | +1.00 |" in circle and "| yellow | drop |" in circle
    assert "![effect sizes of circle](frames/000_circle_effects.png)" in circle
    assert "frames/000_circle_pairs.png" in circle and "frames/000_circle_fresh.png" in circle
    assert "Optimisation frames (every frame of a run shares one fixed noise)" in circle
    assert "Cost:" in circle
    assert "**no evidence of a shortcut**" in md.split("### 1: square")[1]
    for f in ("000_circle_effects.png", "000_circle_pairs.png", "000_circle_fresh.png", "000_circle.png"):
        assert (tmp_path / "results" / "frames" / f).is_file()
    html = (tmp_path / "results" / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 7
    rows = list(csv.DictReader((tmp_path / "results" / "effects.csv").open()))
    assert {(r["class"], r["attribute"], r["test"]) for r in rows} == {
        ("circle", "water", "flip"), ("circle", "water", "drop"), ("circle", "yellow", "flip"),
        ("circle", "yellow", "drop"), ("square", "yellow", "flip"), ("square", "yellow", "drop")}
    assert {r["verified"] for r in rows if r["attribute"] == "water"} == {"True"}
    assert json.loads((tmp_path / "results" / "keywords.json").read_text())["circle"] == ["water", "yellow"]
