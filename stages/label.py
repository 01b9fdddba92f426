"""Stage ``label``: CLIP zero-shot pseudo-groups for train + val -> ``outputs/labels/``.

Reads the slice attributes per class (``outputs/reasoning/<ccc>_<name>/attributes.json``) and the CLIP
named by ``models.<set>.clip``. Writes ``pseudo_groups.csv`` and ``meta.json`` there, and
``results/labelling_quality.json`` (accuracy and per-class F1 of the bias-conflicting slice where true
attributes are known; a DVC metric, kept outside the ``outputs/labels`` output directory).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.dro_common import CACHE, LABELLING_QUALITY, LABELS_DIR, PREPARED, REASONING_DIR, log
from stages.params import load_params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", type=Path, default=PREPARED)
    ap.add_argument("--reasoning", type=Path, default=REASONING_DIR)
    ap.add_argument("--out", type=Path, default=LABELS_DIR)
    ap.add_argument("--quality", type=Path, default=LABELLING_QUALITY)
    args = ap.parse_args(argv)
    params = load_params(args.params)

    from dro.data import open_prepared
    from dro.io import atomic_write_json
    from dro.pipeline import label_splits, resolve_device
    from dro.slices import ClipEncoder, read_attributes
    from dro.templates import TEMPLATE_SETS, default_templates

    lab = params.labelling
    datasets = open_prepared(args.prepared)
    info = datasets["train"].info
    keywords = read_attributes(args.reasoning, info.class_names)
    templates, class_templates = default_templates(params.dataset)
    if isinstance(lab.templates, list):
        templates = tuple(lab.templates)
    elif lab.templates != "auto":
        templates = TEMPLATE_SETS[lab.templates]
    if lab.class_templates is not None:
        class_templates = tuple(lab.class_templates)
    encoder = ClipEncoder.from_pretrained(params.model_set.clip, resolve_device(params.device))
    quality = label_splits(datasets, encoder, keywords, templates, class_templates, lab.temperature,
                           CACHE / "clip", args.out, batch_size=lab.batch_size, log=log)
    atomic_write_json(args.quality, quality)
    for split, q in quality.items():
        log(f"{split}: pseudo-groups {q['pseudo_group_counts']}"
            + (f", accuracy {q['accuracy']:.3f}" if q.get("accuracy") is not None else ""))


if __name__ == "__main__":
    main()
