"""Stage ``report``: the audit people read (results/report.md + report.html) and results/keywords.json."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from stages.common import METRICS_DIR, OUTPUTS_DIR, RESULTS_DIR, stage_main


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    from stages.params import load_params

    load_params(args.params)  # validate even though the report only reads files

    from dro.audit_report import collect_classes, frame_grid, keywords_by_class, render_html, render_markdown
    from dro.io import atomic_write_json, atomic_write_text

    audits = collect_classes(OUTPUTS_DIR / "dexter", OUTPUTS_DIR / "reasoning")
    labelling_path = METRICS_DIR / "labelling.json"
    labelling = json.loads(labelling_path.read_text()) if labelling_path.exists() else {}
    table_md = (RESULTS_DIR / "table.md").read_text()
    metrics_path = RESULTS_DIR / "metrics.json"
    discovery = json.loads(metrics_path.read_text()).get("discovery") if metrics_path.exists() else None

    grids, grid_paths = {}, {}
    frames_dir = RESULTS_DIR / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    for audit in audits:
        grid = frame_grid(audit.frames)
        if grid is not None:
            grids[audit.class_name] = grid
            path = frames_dir / f"{audit.class_index:03d}_{audit.class_name}.png"
            grid.save(path)
            grid_paths[audit.class_name] = str(path.relative_to(RESULTS_DIR))

    markdown = render_markdown(audits, labelling, table_md, grid_paths, discovery)
    atomic_write_text(RESULTS_DIR / "report.md", markdown)
    atomic_write_text(RESULTS_DIR / "report.html", render_html(markdown, grids))
    atomic_write_json(RESULTS_DIR / "keywords.json", keywords_by_class(audits))
    print(f"wrote {RESULTS_DIR / 'report.md'} and report.html for {len(audits)} classes")


if __name__ == "__main__":
    main()
