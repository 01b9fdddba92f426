"""The human-readable audit: what DEXTER found per class, what the reasoning made of it, how well the
pseudo-groups match the truth, and whether group DRO fixed the worst group.

It only reads files other stages wrote, so it can be rebuilt at any time without recomputing anything.
Markdown for the repository, plus a self-contained HTML page (images inlined) for people to look at.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image


@dataclass
class ClassAudit:
    class_index: int
    class_name: str
    keywords: list[str]
    frames: list[Path]
    report_md: str = ""
    attributes: list[str] = field(default_factory=list)


def collect_classes(dexter_dir: Path, reasoning_dir: Path) -> list[ClassAudit]:
    """One entry per explained class, in class-index order."""
    audits = []
    for kw_file in sorted(Path(dexter_dir).glob("**/keywords.json")):
        kw = json.loads(kw_file.read_text())
        class_dir = kw_file.parent
        frames = sorted(class_dir.glob("run_*/frames/*.png"))
        audit = ClassAudit(kw["class_index"], kw["class_name"], list(kw["keywords"]), frames)
        for candidate in Path(reasoning_dir).glob("*"):
            attrs = candidate / "attributes.json"
            if attrs.exists() and json.loads(attrs.read_text()).get("class_name") == kw["class_name"]:
                audit.attributes = list(json.loads(attrs.read_text())["attributes"])
                report = candidate / "report.md"
                audit.report_md = report.read_text() if report.exists() else ""
        audits.append(audit)
    return sorted(audits, key=lambda a: a.class_index)


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
                    discovery: dict | None = None) -> str:
    """``table_md`` is the retrain stage's worst-group table (results/table.md), shown first; then, on the
    synthetic world, ``discovery`` (results/metrics.json) scored against the truth."""
    lines = ["# Bias audit", "", "## Worst-group accuracy", "", table_md.strip()]
    if discovery:
        lines += ["", "## Discovery against the world's true shortcuts", "", *discovery_markdown(discovery)]
    lines += ["", "## Per class", ""]
    for a in audits:
        lines += [f"### {a.class_index}: {a.class_name}", "", f"DEXTER keywords: **{', '.join(a.keywords) or '(none)'}**", ""]
        if a.attributes:
            lines += [f"Pseudo-slice attributes used for labelling: {', '.join(a.attributes)}", ""]
        if a.class_name in grid_paths:
            lines += [f"![frames classified as {a.class_name}]({grid_paths[a.class_name]})", ""]
        else:
            lines += ["(no frame was classified as this class)", ""]
        if a.report_md:
            lines += ["<details><summary>Reasoning report</summary>", "", a.report_md.strip(), "", "</details>", ""]
    if labelling:
        lines += ["## Pseudo-group labelling quality (against true groups)", "", "```json",
                  json.dumps(labelling, indent=2), "```", ""]
    return "\n".join(lines) + "\n"


def render_html(markdown_text: str, grids: dict[str, Image.Image]) -> str:
    """A dependency-free page: the Markdown shown as preformatted text sections with the grids inlined."""
    parts = ["<!doctype html><meta charset='utf-8'><title>Bias audit</title>",
             "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
             "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}img{image-rendering:pixelated}</style>"]
    for block in markdown_text.split("\n### "):
        parts.append(f"<pre>{html.escape(block if block.startswith('#') else '### ' + block)}</pre>")
        for name, grid in grids.items():
            if block.split("\n", 1)[0].endswith(f": {name}"):
                parts.append(f"<img alt='{html.escape(name)}' src='data:image/png;base64,{_png_b64(grid)}'>")
    return "\n".join(parts)


def _png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")

