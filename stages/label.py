"""Stage ``label``: CLIP zero-shot pseudo-groups for train + val -> ``outputs/labels/``.

Reads the slice attributes per class (``outputs/reasoning/<ccc>_<name>/attributes.json``) and the CLIP
named by ``models.<set>.clip``. Writes ``pseudo_groups.csv`` and ``meta.json`` there, and
``metrics/labelling.json``: pseudo-group sizes and, where true attributes are known, the accuracy and
per-class F1 of the bias-conflicting slice (evaluation only: nothing downstream trains on it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import compute_dtype, resolve_device, stage_main
from stages.dro_common import CACHE, LABELLING_METRICS, LABELS_DIR, PREPARED_DIR, REASONING_DIR, input_errors, log


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    ap.add_argument("--reasoning", type=Path, default=REASONING_DIR)
    ap.add_argument("--out", type=Path, default=LABELS_DIR)
    ap.add_argument("--metrics", type=Path, default=LABELLING_METRICS)
    args = ap.parse_args(argv)

    from stages.params import load_params

    params = load_params(args.params)

    from dro.data import open_prepared
    from dro.io import atomic_write_json
    from dro.pipeline import label_splits
    from dro.slices import ClipEncoder, read_attributes
    from dro.templates import TEMPLATE_SETS, default_templates

    lab = params.labelling
    device = resolve_device(params.device)
    datasets = open_prepared(args.prepared)
    info = datasets["train"].info
    templates, class_templates = default_templates(params.dataset)
    if isinstance(lab.templates, list):
        templates = tuple(lab.templates)
    elif lab.templates != "auto":
        templates = TEMPLATE_SETS[lab.templates]
    if lab.class_templates is not None:
        class_templates = tuple(lab.class_templates)
    with input_errors():
        keywords = read_attributes(args.reasoning, info.class_names)
        encoder = ClipEncoder.from_pretrained(params.model_set.clip, device, compute_dtype(device))
        quality = label_splits(datasets, encoder, keywords, templates, class_templates, lab.temperature,
                               CACHE / "clip", args.out, batch_size=lab.batch_size,
                               num_workers=params.train.num_workers, log=log)
    atomic_write_json(args.metrics, quality)
    for split, q in quality.items():
        log(f"{split}: pseudo-groups {q['pseudo_group_counts']}"
            + (f", accuracy vs true {q['accuracy']:.3f}" if q.get("accuracy") is not None else ""))


@stage_main
def main() -> None:
    run()


if __name__ == "__main__":
    main()
