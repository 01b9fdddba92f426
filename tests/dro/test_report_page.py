"""results/report.html is a page: the Markdown rendered (tables, images, <details>), images inlined, the results
as a chart with std error bars and the per-group accuracies as a heat map.

Checked with an HTML parser (the standard library's): a real headless browser cannot be installed offline here
(playwright's Chromium is downloaded from a CDN, not PyPI). Where playwright and its Chromium are installed,
the last test also opens the page in headless Chromium.
"""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pytest
import yaml
from PIL import Image

from dro.methods import get_method
from dro.report import table_markdown


class Page(HTMLParser):
    """Tags with their attributes, and the visible text (outside <style>, <title>, <svg> titles)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self._skip = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("style", "title"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "title"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


METRICS = {
    "dataset": "synthetic", "mode": "full", "seeds": [0, 1], "avg_acc_convention": "plain",
    "avg_acc_convention_text": "average accuracy = plain accuracy over all test images",
    "methods": {
        m: {"worst_group_acc": wg, "worst_group_acc_std": 0.02, "avg_acc": avg, "avg_acc_std": 0.01,
            "group_acc": {"circle|bg=water": wg, "circle|bg=land": 0.9, "square|bg=land": None},
            "group_acc_std": {"circle|bg=water": 0.02, "circle|bg=land": 0.0, "square|bg=land": None}}
        for m, wg, avg in (("erm", 0.08, 0.85), ("groupdro_oracle", 0.9, 0.95), ("dro_dexter", 0.88, 0.94))},
}
for _name, _m in METRICS["methods"].items():  # what build_metrics adds from the method registry
    _row = get_method(_name)
    _m.update({"label": _row.label, "avg_acc_convention": "plain",
               "uses": {"training_data": _row.training_data, "groups_in_training": _row.train_groups,
                        "groups_for_selection": _row.selection_groups, "pseudo_groups_from": _row.pseudo_from,
                        "data_for_discovery": _row.discovery_data, "tuned_on_dro_grid": _row.tuned,
                        "source": _row.source}})


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The files the report stage reads, as the earlier stages write them (two classes, frames, reports)."""
    monkeypatch.chdir(tmp_path)
    for c, name in enumerate(("circle", "square")):
        run = tmp_path / "outputs/dexter" / f"class_{c}" / f"{c:03d}_{name}" / "run_0" / "frames"
        run.mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (16, 16), (40 * i, 90, 200)).save(run / f"{i:03d}.png")
        (run.parent.parent / "keywords.json").write_text(json.dumps(
            {"class_index": c, "class_name": name, "keywords": ["water", "picture"]}))
        reasoning = tmp_path / "outputs/reasoning" / f"{c:03d}_{name}"
        reasoning.mkdir(parents=True)
        (reasoning / "attributes.json").write_text(json.dumps({"class_name": name, "attributes": ["water"]}))
        (reasoning / "report.md").write_text(f"# Bias report: class \"{name}\"\n\n## Evidence\n\n- **water** in 9 of 10 "
                                             "captions\n\n| word | share |\n|---|---|\n| water | 0.9 |\n")
        Image.new("RGB", (40, 20), "white").save(reasoning / "effects.png")
        Image.new("RGB", (40, 20), "red").save(reasoning / "counterfactuals.png")
    (tmp_path / "results").mkdir()
    (tmp_path / "results/table.md").write_text(table_markdown(METRICS))
    (tmp_path / "results/metrics.json").write_text(json.dumps(METRICS))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"synthetic": {"preset": "small"}, "models": {"world": {"stable_diffusion": "s", "bert": "b", "clip": "c"}}}))
    from stages import report

    monkeypatch.setattr("sys.argv", ["report"])
    report.main()
    return tmp_path / "results/report.html"


def test_page_has_the_table_the_images_and_no_raw_markdown(project):
    page = Page(project.read_text(encoding="utf-8"))
    text = "".join(page.text)
    # the results table and the reasoning report's table are HTML tables
    headers = [h for h in text.split("\n") if h.strip()]
    assert len(page.all("table")) >= 3 and "DEXTER + DRO" in text and "GroupDRO" in text
    assert len(page.all("th")) >= 4 and any("Synthetic" in t for t in headers)
    # every image is inlined: effects + pairs + frame grid per class
    images = page.all("img")
    assert len(images) == 6 and all(i["src"].startswith("data:image/png;base64,") for i in images)
    # <details> is an element, headings and emphasis are rendered, no Markdown syntax is left as text
    assert page.all("details") and page.all("summary") and page.all("h1") and page.all("strong")
    for raw in ("![", "](frames/", "|---", "| method |", "**", "<details", "<summary", "\n# ", "\n### "):
        assert raw not in text, f"raw Markdown {raw!r} shown as text"
    assert not page.all("pre"), "nothing is shown as preformatted source"


def test_results_chart_has_a_bar_per_method_and_metric_with_std_and_a_heat_map(project):
    page = Page(project.read_text(encoding="utf-8"))
    bars = [a for a in page.all("rect") if a.get("class") == "bar"]
    assert {(a["data-method"], a["data-metric"]) for a in bars} == {
        (m, k) for m in METRICS["methods"] for k in ("worst_group_acc", "avg_acc")}
    assert len({a["fill"] for a in bars}) == 2  # worst-group and average, told apart by colour
    assert len([a for a in page.all("line") if a.get("class") == "err"]) == 6  # std of every bar (2 seeds)
    heat = [a for a in page.all("table") if a.get("class") == "heat"]
    assert heat
    cells = [a for a in page.all("td") if "background:rgb" in a.get("style", "")]
    assert len(cells) == 6  # 3 methods x 2 non-empty groups; the empty group stays blank


def test_page_opens_in_headless_chromium(project):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (offline machine)")
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch()
        except Exception as e:  # noqa: BLE001 - the browser binary is a separate download
            pytest.skip(f"no headless Chromium installed: {str(e).splitlines()[0]}")
        tab = browser.new_page()
        tab.goto(project.as_uri())
        assert tab.locator("table").count() >= 3
        assert tab.locator("img").count() == 6
        assert tab.evaluate("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        assert "|---" not in tab.inner_text("body") and "![" not in tab.inner_text("body")
        browser.close()
