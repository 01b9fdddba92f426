"""Stage ``report``: the audit people read (results/report.md + report.html), results/keywords.json,
results/effects.csv (every measured counterfactual effect, a ``dvc plots`` bar chart) and the pipeline's
few DVC metrics (``metrics/summary.json``, see ``dro.report.summary_metrics``)."""

from __future__ import annotations

import argparse
import json
import logging

from stages.common import METRICS_DIR, OUTPUTS_DIR, RESULTS_DIR, stage_main

log = logging.getLogger(__name__)

SUMMARY = METRICS_DIR / "summary.json"


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    from stages.params import load_params

    load_params(args.params)  # validate even though the report only reads files

    from common.io import atomic_write_json, atomic_write_text
    from dro.audit_report import (
        EFFECT_COLUMNS,
        collect_classes,
        effects_rows,
        frame_grid,
        keywords_by_class,
        render_html,
        render_markdown,
    )
    from dro.report import summary_metrics

    audits = collect_classes(OUTPUTS_DIR / "dexter", OUTPUTS_DIR / "reasoning")
    labelling_path = METRICS_DIR / "labelling.json"
    labelling = json.loads(labelling_path.read_text()) if labelling_path.exists() else {}
    table_md = (RESULTS_DIR / "table.md").read_text()
    metrics_path = RESULTS_DIR / "metrics.json"
    results = json.loads(metrics_path.read_text())
    discovery = results.get("discovery")

    grid_paths, pictures = {}, {}
    frames_dir = RESULTS_DIR / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for stale in frames_dir.glob("*.png"):
        stale.unlink()
    for audit in audits:
        stem = f"{audit.class_index:03d}_{audit.class_name}"
        pics = {}
        for key, image in (("effects", _open(audit.effects_png)), ("pairs", _open(audit.pairs_png)),
                           ("fresh", frame_grid(audit.fresh_frames))):
            if image is not None:
                path = frames_dir / f"{stem}_{key}.png"
                image.save(path)
                pics[key] = str(path.relative_to(RESULTS_DIR))
        grid = frame_grid(audit.frames)
        if grid is not None:
            path = frames_dir / f"{stem}.png"
            grid.save(path)
            grid_paths[audit.class_name] = str(path.relative_to(RESULTS_DIR))
        pictures[audit.class_name] = pics

    markdown = render_markdown(audits, labelling, table_md, grid_paths, pictures, discovery)
    atomic_write_text(RESULTS_DIR / "report.md", markdown)
    atomic_write_text(RESULTS_DIR / "report.html", render_html(markdown, RESULTS_DIR, results))
    atomic_write_json(RESULTS_DIR / "keywords.json", keywords_by_class(audits))
    atomic_write_text(RESULTS_DIR / "effects.csv", _csv(effects_rows(audits), EFFECT_COLUMNS))
    atomic_write_json(SUMMARY, summary_metrics(results, labelling))
    log.info(f"wrote {RESULTS_DIR / 'report.md'} and report.html for {len(audits)} classes")


def _open(path):
    from PIL import Image

    if path is None:
        return None
    with Image.open(path) as im:
        return im.convert("RGB")


def _csv(rows: list[dict], columns) -> str:
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
