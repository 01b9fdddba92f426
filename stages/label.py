"""Stage ``label``: CLIP zero-shot pseudo-groups for train + val -> ``outputs/labels/``.

Reads the slice attributes per class (``outputs/reasoning/<ccc>_<name>/attributes.json``: attributes,
and where the reasoning wrote them its verdict and each attribute's alternatives) and the CLIP named by
``models.<set>.clip``. Writes ``pseudo_groups.csv`` and ``meta.json`` there (``dro_dexter``), the same
for each ablation row of the synthetic world (``pseudo_groups.<method>.csv``: attributes that need no
discovery, see ``dro.ablations``), and ``metrics/labelling.json``: pseudo-group sizes and, where true
attributes are known, the accuracy and the pooled and per-class F1 of the bias-conflicting slice
(evaluation only: nothing downstream trains on it). On the synthetic world it also scores discovery
against the world's true shortcuts -> ``outputs/labels/discovery.json`` (the retrain stage puts it into
``results/metrics.json``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from common.device import compute_dtype, resolve_device
from stages.common import stage_main
from stages.dro_common import (
    CACHE,
    ERM_DIR,
    LABELLING_METRICS,
    LABELS_DIR,
    PREPARED_DIR,
    REASONING_DIR,
    model_spec,
)

log = logging.getLogger(__name__)


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    ap.add_argument("--reasoning", type=Path, default=REASONING_DIR)
    ap.add_argument("--erm", type=Path, default=ERM_DIR, help="the audited ERM model (B2T captions its mistakes)")
    ap.add_argument("--out", type=Path, default=LABELS_DIR)
    ap.add_argument("--metrics", type=Path, default=LABELLING_METRICS)
    args = ap.parse_args(argv)

    from stages.params import load_params

    params = load_params(args.params)

    from common.clip import ClipEncoder
    from common.io import atomic_write_json
    from dro.ablations import ABLATIONS, ablation_slices
    from dro.data import open_prepared
    from dro.methods import labellings_needed
    from dro.pipeline import label_splits
    from dro.slices import read_attributes
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
    world = params.synthetic.world_config() if params.is_world else None
    settings = dict(templates=templates, class_templates=class_templates, temperature=lab.temperature,
                    cache_dir=CACHE / "clip", out_dir=args.out, batch_size=lab.batch_size,
                    num_workers=params.train.num_workers, log=log.info)
    slices = read_attributes(args.reasoning, info.class_names)
    encoder = ClipEncoder.from_pretrained(params.model_set.clip, device, compute_dtype(device))
    quality = label_splits(datasets, encoder, slices, **settings)
    ablations, peers = {}, {}
    if "dro_b2t" in labellings_needed(params.methods):
        b2t_slices, record = b2t_attributes(params, datasets, encoder, args.erm, args.out, device)
        atomic_write_json(args.out / "b2t.json", record)
        q = label_splits(datasets, encoder, b2t_slices, **settings, method="dro_b2t")
        peers["dro_b2t"] = {split: {k: v[k] for k in ("pseudo_group_counts", "accuracy", "f1_conflicting_pooled")
                                    if k in v} for split, v in q.items()}
    for method in (m for m in params.methods if m in ABLATIONS):
        chosen = ablation_slices(method, info.class_names, world.attribute_values if world else None,
                                 params.seed)
        log.info(f"{method}: attributes {[list(s.attributes) for s in chosen]}")
        q = label_splits(datasets, encoder, chosen, **settings, method=method)
        ablations[method] = {split: {k: v[k] for k in ("pseudo_group_counts", "accuracy", "f1_conflicting_pooled")
                                     if k in v} for split, v in q.items()}
    for split, q in quality.items():
        log.info(f"{split}: pseudo-groups {q['pseudo_group_counts']}"
                 + (f", accuracy vs true {q['accuracy']:.3f}, pooled F1 {q['f1_conflicting_pooled']:.3f}"
                    if q.get("accuracy") is not None else ""))
    if ablations:
        quality["ablations"] = ablations
    if peers:
        quality["peers"] = peers  # the data-using discovery rows (B2T)
    if world is not None:
        from dro.discovery import score_discovery

        discovery = score_discovery(world, slices, quality["train"])
        atomic_write_json(args.out / "discovery.json", discovery)
        log.info(f"discovery: shortcut recall {discovery['shortcut_recall']}, attribute precision "
                 f"{discovery['attribute_precision']}, false-positive classes {discovery['false_positive_classes']}")
    else:
        (args.out / "discovery.json").unlink(missing_ok=True)
    atomic_write_json(args.metrics, quality)


def b2t_attributes(params, datasets, encoder, erm_dir: Path, out_dir: Path, device):
    """The B2T row's keywords: the audited ERM model's validation mistakes, captioned by the reasoning
    backend (offline: CLIP retrieval over its phrase bank; openai: the VLM), scored by CLIP."""
    from common.classifier import load_classifier
    from common.clip import cached_image_embeddings, dataset_key
    from dexter.reasoning import make_backend
    from dro.b2t import b2t_keywords, save_pngs
    from dro.sources import image_source, predict
    from stages.reason import backend_settings

    val, info, spec = datasets["val"], datasets["train"].info, model_spec(params)
    model = load_classifier(erm_dir, device)
    pred = predict(model, image_source(val, spec.image_size, spec.num_workers), device, params.dro.eval_batch_size)
    emb = cached_image_embeddings(encoder, val, CACHE / "clip", params.labelling.batch_size, log.info,
                                  params.train.num_workers)
    kind, settings = backend_settings(params)
    backend = make_backend(kind, **settings)
    images = CACHE / "b2t_images" / dataset_key(val)  # keyed by the split's content: never stale

    def caption(c: int, indices: list[int]) -> list[str]:
        return [t or "" for t in backend.caption(info.class_names[c], save_pngs(val, indices, images))]

    try:
        attributes, record = b2t_keywords(pred, val.y, emb, info.class_names, caption, encoder.encode_text,
                                          seed=params.seed, log=log.info)
    finally:
        close = getattr(backend, "close", None)
        if close:
            close()
    record["captioned_by"] = backend.written_by if hasattr(backend, "written_by") else kind
    return attributes, record


@stage_main
def main() -> None:
    run()


if __name__ == "__main__":
    main()
