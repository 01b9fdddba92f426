"""The human-readable audit: what DEXTER found per class, what the reasoning made of it, how well the
pseudo-groups match the truth, and whether group DRO fixed the worst group.

It only reads files other stages wrote, so it can be rebuilt at any time without recomputing anything.
Markdown for the repository, plus a self-contained HTML page (images inlined, ``dro.report_page``) to look at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from common.artifacts import (
    ATTRIBUTES_FILE,
    KEYWORDS_FILE,
    VERIFICATION_FILE,
    class_dir,
    class_dirs_with,
    read_attributes,
    read_keywords,
    read_verification,
)


@dataclass
class ClassAudit:
    class_index: int
    class_name: str
    keywords: list[str]
    frames: list[Path]  # DEXTER's optimisation frames (every frame of a run shares one fixed noise)
    report_md: str = ""
    attributes: list[str] = field(default_factory=list)
    verification: dict | None = None  # the reason stage's verification.json of this class
    fresh_frames: list[Path] = field(default_factory=list)  # fresh-noise frames the reasoning captioned
    effects_png: Path | None = None
    pairs_png: Path | None = None


def collect_classes(dexter_dir: Path, reasoning_dir: Path) -> list[ClassAudit]:
    """One entry per explained class, in class-index order. The files are read by :mod:`common.artifacts`
    (their one contract); a class the reasoning has no folder for (``<index:03d>_<name>``) has no attributes."""
    audits = []
    for folder in class_dirs_with(dexter_dir, KEYWORDS_FILE):
        kw = read_keywords(folder / KEYWORDS_FILE)
        frames = sorted(folder.glob("run_*/frames/*.png"))
        audit = ClassAudit(kw.class_index, kw.class_name, list(kw.keywords), frames)
        candidate = class_dir(reasoning_dir, kw.class_index, kw.class_name)
        if (candidate / ATTRIBUTES_FILE).exists():
            audit.attributes = list(read_attributes(candidate / ATTRIBUTES_FILE).attributes)
            report = candidate / "report.md"
            audit.report_md = report.read_text() if report.exists() else ""
            verification = candidate / VERIFICATION_FILE
            audit.verification = read_verification(verification) if verification.exists() else None
            audit.fresh_frames = sorted((candidate / "frames").glob("*.png"))
            audit.effects_png = candidate / "effects.png" if (candidate / "effects.png").exists() else None
            audit.pairs_png = candidate / "counterfactuals.png" if (candidate / "counterfactuals.png").exists() else None
        audits.append(audit)
    return sorted(audits, key=lambda a: a.class_index)


EFFECT_COLUMNS = ("label", "class", "attribute", "test", "effect", "ci_low", "ci_high", "p_value", "p_adjusted",
                  "verified")


def effects_rows(audits: list[ClassAudit]) -> list[dict]:
    """One row per measured effect (``results/effects.csv``, a ``dvc plots`` bar chart)."""
    rows = []
    for a in audits:
        v = a.verification or {}
        for e in v.get("effects", []):
            rows.append({"label": f"{a.class_name}: {e['attribute']} ({e['kind']})", "class": a.class_name,
                         "attribute": e["attribute"], "test": e["kind"], "effect": round(e["effect"], 4),
                         "ci_low": round(e["ci_low"], 4), "ci_high": round(e["ci_high"], 4),
                         "p_value": f"{e['p_value']:.3g}", "p_adjusted": f"{e['p_adjusted']:.3g}",
                         "verified": e["attribute"] in v.get("verified", [])})
    return rows


def verdict_line(a: ClassAudit) -> str:
    v = a.verification
    if v is None:
        return "Verdict: **not tested** (no counterfactual test was run; any attribute below is unverified)"
    if v["verdict"] == "biased":
        return f"Verdict of the counterfactual test: **biased towards {', '.join(v['verified'])}**"
    return "Verdict of the counterfactual test: **no evidence of a shortcut**"


def _effects_table(v: dict) -> list[str]:
    lines = ["| attribute | test | effect | interval | p (Holm) | verified |", "|---|---|---|---|---|---|"]
    for e in v.get("effects", []):
        lines.append(f"| {e['attribute']} | {e['kind']} | {e['effect']:+.2f} | [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}] "
                     f"| {e['p_adjusted']:.2g} | {'yes' if e['attribute'] in v['verified'] else 'no'} |")
    return lines


def frame_grid(frames: list[Path], columns: int = 8, max_frames: int = 32, cell: int = 96) -> Image.Image | None:
    """The last ``max_frames`` frames (the optimisation's most converged images) as one grid."""
    chosen = frames[-max_frames:]
    if not chosen:
        return None
    rows = (len(chosen) + columns - 1) // columns
    grid = Image.new("RGB", (columns * cell, rows * cell), "white")
    for i, path in enumerate(chosen):
        with Image.open(path) as im:
            tile = im.convert("RGB").resize((cell, cell), Image.NEAREST)
        grid.paste(tile, ((i % columns) * cell, (i // columns) * cell))
    return grid


def keywords_by_class(audits: list[ClassAudit]) -> dict[str, list[str]]:
    return {a.class_name: a.keywords for a in audits}


def discovery_markdown(discovery: dict) -> list[str]:
    """The audit scored against the synthetic world's true shortcuts, as a table (see dro.discovery)."""

    def num(v) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = ["| class | true shortcut | audit verdict | attributes handed to labelling | shortcut found | "
             "labelling F1 (conflicting, train) |", "|---|---|---|---|---|---|"]
    for name, c in discovery["classes"].items():
        truth = "none" if c["true_shortcut"] is None else f"{c['true_shortcut']} ({c['correlation']:.2f})"
        if c["true_shortcut"] is not None and not c["biased"]:
            truth += ", at chance"
        found = "-" if "found" not in c else ("yes" if c["found"] else "**no**")
        verdict = c["verdict"]
        if not c["biased"] and verdict == "biased":
            verdict = "**biased** (false positive)"
        lines.append(f"| {name} | {truth} | {verdict} | {', '.join(c['attributes']) or '-'} | {found} | "
                     f"{num(c.get('labelling_f1'))} |")
    fp = discovery["false_positive_classes"]
    lines += ["", f"Shortcut recall **{num(discovery['shortcut_recall'])}** (biased classes whose shortcut value is "
              f"among their attributes), attribute precision **{num(discovery['attribute_precision'])}** "
              f"(attributes that name their class's shortcut value), false-positive classes: "
              f"**{', '.join(fp) if fp else 'none'}**."]
    return lines


def render_markdown(audits: list[ClassAudit], labelling: dict, table_md: str, grid_paths: dict[str, str],
                    pictures: dict[str, dict[str, str]] | None = None, discovery: dict | None = None) -> str:
    """``table_md`` is the retrain stage's worst-group table (results/table.md), shown first; then, on the
    synthetic world, ``discovery`` (results/metrics.json) scored against the truth.

    ``grid_paths``: class -> DEXTER optimisation-frame grid; ``pictures``: class -> {"effects", "pairs",
    "fresh"} image paths (relative to the report) of the counterfactual test and the captioned frames.
    """
    pictures = pictures or {}
    lines = ["# Bias audit", "", "## Worst-group accuracy", "", table_md.strip()]
    if discovery:
        lines += ["", "## Discovery against the world's true shortcuts", "", *discovery_markdown(discovery)]
    lines += ["", "## Per class", ""]
    for a in audits:
        lines += [f"### {a.class_index}: {a.class_name}", "", f"DEXTER keywords: **{', '.join(a.keywords) or '(none)'}**", ""]
        lines += [verdict_line(a), ""]
        v = a.verification
        if v is not None and v.get("effects"):
            lines += _effects_table(v) + [""]
        if v is not None and v.get("skipped"):
            lines += ["Not tested: " + "; ".join(f"{w} ({why})" for w, why in v["skipped"].items()), ""]
        if a.attributes:
            lines += [f"Pseudo-slice attributes used for labelling: {', '.join(a.attributes)}", ""]
        pics = pictures.get(a.class_name, {})
        if "effects" in pics:
            lines += [f"![effect sizes of {a.class_name}]({pics['effects']})", ""]
        if "pairs" in pics:
            lines += ["Counterfactual pairs (same noise; the image with the attribute is framed in red):", "",
                      f"![counterfactual pairs of {a.class_name}]({pics['pairs']})", ""]
        if v is not None:
            cost = v.get("cost_total", v.get("cost", {}))
            lines += [f"Cost: {cost.get('images_generated', 0)} images generated, {cost.get('seconds', 0):.1f} s.", ""]
        if "fresh" in pics:
            lines += ["Captioned frames (fresh noise per image, from each run's final prompt):", "",
                      f"![fresh-noise frames of {a.class_name}]({pics['fresh']})", ""]
        if a.class_name in grid_paths:
            lines += ["Optimisation frames (every frame of a run shares one fixed noise):", "",
                      f"![frames classified as {a.class_name}]({grid_paths[a.class_name]})", ""]
        else:
            lines += ["(no optimisation frame was classified as this class)", ""]
        if a.report_md:
            lines += ["<details><summary>Reasoning report</summary>", "", a.report_md.strip(), "", "</details>", ""]
    if labelling:
        lines += ["## Pseudo-group labelling quality (against true groups)", "", "```json",
                  json.dumps(labelling, indent=2), "```", ""]
    return "\n".join(lines) + "\n"


def render_html(markdown_text: str, base_dir: Path, metrics: dict | None = None) -> str:
    """The page people read (``dro.report_page``): the Markdown rendered, images inlined, the results as a
    chart and a per-group heat map. ``base_dir``: the folder the Markdown's image links are relative to."""
    from dro.report_page import render_page

    return render_page(markdown_text, base_dir, metrics)
