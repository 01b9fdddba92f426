"""``results/report.html``: the audit as a page people read, self-contained (one file, no network).

The Markdown report (``results/report.md``) is rendered by markdown-it-py (CommonMark + tables, raw HTML
such as ``<details>`` kept), its images inlined as ``data:`` URIs, and a Jinja2 template adds what Markdown
cannot draw: the results table as a bar chart (worst-group and average accuracy per method, with the std
over seeds as error bars when there is more than one seed) and the per-group test accuracies as a heat map
(methods x groups). Both are plain inline SVG / HTML, so the page needs no script.
"""

from __future__ import annotations

import base64
import mimetypes
from pathlib import Path

from jinja2 import Environment
from markupsafe import Markup

BAR_COLOURS = {"worst_group_acc": "#d95f02", "avg_acc": "#1b9e77"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f3f3f3; }
img { image-rendering: pixelated; max-width: 100%; display: block; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
details { margin: 1em 0; padding: 0.5em; border: 1px solid #ddd; }
.heat td.v { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 1em; vertical-align: middle; }
figure { margin: 1em 0; }
</style>
</head>
<body>
{% if chart %}
<section id="results-chart">
<h2>Worst-group and average test accuracy per method</h2>
<figure>{{ chart }}
<figcaption class="legend">{% for key, label in legend %}<span style="background:{{ colours[key] }}"></span>{{ label }}{% endfor %}
{% if with_std %}; error bars: std over {{ seeds }} seeds{% endif %}</figcaption></figure>
</section>
{% endif %}
{% if heat %}
<section id="group-heatmap">
<h2>Test accuracy per group (%)</h2>
{{ heat }}
</section>
{% endif %}
<main>
{{ body }}
</main>
</body>
</html>
"""


def render_page(markdown_text: str, base_dir: Path, metrics: dict | None = None, title: str = "Bias audit") -> str:
    """The whole page. ``base_dir``: the folder the Markdown's image links are relative to (``results/``);
    ``metrics``: ``results/metrics.json`` (charts are left out where it lacks the numbers)."""
    env = Environment(autoescape=True)
    methods = (metrics or {}).get("methods") or {}
    seeds = len((metrics or {}).get("seeds") or [])
    return env.from_string(PAGE).render(
        title=title, body=Markup(markdown_html(markdown_text, Path(base_dir))),
        chart=Markup(bar_chart_svg(methods)) if methods else None,
        heat=Markup(heat_map_html(methods)) if any(m.get("group_acc") for m in methods.values()) else None,
        legend=[("worst_group_acc", "worst-group"), ("avg_acc", "average")], colours=BAR_COLOURS,
        with_std=seeds > 1, seeds=seeds,
    )


def markdown_html(text: str, base_dir: Path) -> str:
    """Markdown -> HTML (CommonMark, tables, raw HTML blocks), every local image inlined as a data URI."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    tokens = md.parse(text)
    for token in tokens:
        for child in token.children or ():
            if child.type == "image":
                src = child.attrGet("src") or ""
                if not src.startswith(("data:", "http:", "https:")):
                    child.attrSet("src", data_uri(base_dir / src))
    return md.renderer.render(tokens, md.options, {})


def data_uri(path: Path) -> str:
    """A file as a ``data:`` URI; a missing file is an error (a report with a broken image is a bug)."""
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def _label(method: str) -> str:
    from dro.methods import METHODS

    return METHODS[method].label if method in METHODS else method


def _esc(text: str) -> str:
    from markupsafe import escape

    return str(escape(text))


def bar_chart_svg(methods: dict[str, dict], width: int = 760, row: int = 34) -> str:
    """Horizontal grouped bars: per method its worst-group and average accuracy (%), std as error bars."""
    left, right, top = 230, 60, 24
    plot = width - left - right
    height = top + row * len(methods) + 30
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-size="12" font-family="sans-serif">',
           "<title>worst-group and average test accuracy per method</title>"]
    for tick in range(0, 101, 20):
        x = left + plot * tick / 100
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 26}" stroke="#e3e3e3"/>'
                   f'<text x="{x:.1f}" y="{height - 10}" text-anchor="middle">{tick}%</text>')
    bar = (row - 10) / 2
    for i, (name, m) in enumerate(methods.items()):
        y0 = top + i * row
        out.append(f'<text x="{left - 8}" y="{y0 + row / 2:.1f}" text-anchor="end" dominant-baseline="middle">'
                   f'{_esc(_label(name))}</text>')
        for j, key in enumerate(("worst_group_acc", "avg_acc")):
            value = m.get(key)
            if value is None:
                continue
            y = y0 + j * bar
            w = plot * value
            out.append(f'<rect class="bar" data-method="{_esc(name)}" data-metric="{key}" x="{left}" y="{y:.1f}" '
                       f'width="{w:.1f}" height="{bar - 1:.1f}" fill="{BAR_COLOURS[key]}">'
                       f'<title>{_esc(_label(name))}: {"worst-group" if key == "worst_group_acc" else "average"} {100 * value:.1f}%</title></rect>')
            std = m.get(f"{key}_std")
            if std:
                lo, hi = left + plot * max(0.0, value - std), left + plot * min(1.0, value + std)
                yc = y + (bar - 1) / 2
                out.append(f'<line class="err" x1="{lo:.1f}" y1="{yc:.1f}" x2="{hi:.1f}" y2="{yc:.1f}" stroke="#000"/>')
            out.append(f'<text x="{left + w + 4:.1f}" y="{y + bar / 2:.1f}" dominant-baseline="middle" '
                       f'font-size="10">{100 * value:.1f}{f" ± {100 * std:.1f}" if std else ""}</text>')
    out.append("</svg>")
    return "".join(out)


def _heat_colour(value: float) -> str:
    """Red (0) -> yellow (0.5) -> green (1)."""
    v = min(1.0, max(0.0, value))
    if v < 0.5:
        r, g = 230, int(80 + 2 * v * 150)
    else:
        r, g = int(230 - (v - 0.5) * 2 * 150), 200
    return f"rgb({r},{g},90)"


def heat_map_html(methods: dict[str, dict]) -> str:
    """Groups (rows) x methods (columns), each cell coloured by its test accuracy; empty groups are blank.
    Groups run down the page: the rich world has 64 evaluation cells, a handful of methods."""
    groups: list[str] = []
    for m in methods.values():
        groups += [g for g in (m.get("group_acc") or {}) if g not in groups]
    head = "".join(f"<th>{_esc(_label(name))}</th>" for name in methods)
    rows = []
    for g in groups:
        cells = []
        for name, m in methods.items():
            a, s = (m.get("group_acc") or {}).get(g), (m.get("group_acc_std") or {}).get(g)
            if a is None:
                cells.append('<td class="v"></td>')
                continue
            tip = f"{_label(name)}, {g}: {100 * a:.1f}%" + (f" ± {100 * s:.1f}" if s else "")
            cells.append(f'<td class="v" style="background:{_heat_colour(a)}" title="{_esc(tip)}">{100 * a:.0f}</td>')
        rows.append(f"<tr><th>{_esc(g)}</th>{''.join(cells)}</tr>")
    return f'<table class="heat"><thead><tr><th>group</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
