"""Stage ``explain``: DEXTER on the audited classifier -> ``outputs/dexter/``.

Reads params.yaml (``dexter`` section with the dataset's overrides, the dataset's model set, ``device``),
the ERM classifier in ``outputs/erm`` (``dro.models.load_classifier``), and writes one folder per class
(``<index:03d>_<name>/keywords.json`` + runs, see ``dexter.outputs``) and a metrics JSON. dvc.yaml runs
it once per class (``--class-index c``) so DVC caches each class; given several classes it optimises them
together, one batched step at a time. A class whose keywords.json exists is skipped, so a rerun after a
kill repeats at most the runs that were in flight.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from stages.common import METRICS_DIR, OUTPUTS_DIR, StageInputError, resolve_device, stage_main
from stages.dro_common import ERM_DIR

DEXTER_DIR = OUTPUTS_DIR / "dexter"


def dexter_config(section):
    """The library config from the validated ``dexter`` params section."""
    from dexter.optimize import DexterConfig

    return DexterConfig(
        mode=section.mode, runs_per_class=section.runs_per_class, steps=section.steps, lr=section.lr,
        adam_eps=section.adam_eps, early_stop=section.early_stop, min_steps=section.min_steps,
        num_feature_neurons=section.num_feature_neurons, images_per_step=section.images_per_step,
        inference_steps=section.inference_steps, guidance_scale=section.guidance_scale,
        resolution=section.resolution, seed=section.seed, max_batch=section.max_batch,
        save_frames=section.save_frames,
    )


@stage_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--classifier", type=Path, default=ERM_DIR, help="a dro.models classifier folder")
    ap.add_argument("--out", type=Path, default=DEXTER_DIR)
    ap.add_argument("--metrics", type=Path, default=METRICS_DIR / "dexter.json")
    ap.add_argument("--class-index", type=int, nargs="+", default=None, help="override dexter.classes")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--skip-absent-classes", action="store_true",
                    help="skip class indices the classifier does not have instead of failing (dvc.yaml fans out "
                         "over dexter.classes, which may name more classes than a smaller world has)")
    args = ap.parse_args(argv)

    from stages.params import load_params

    params = load_params(args.params)
    section, models = params.dexter_settings, params.model_set
    config = dexter_config(section)  # invalid settings fail here, before any model is read
    device = resolve_device(params.device)

    from dexter.classifiers import wrap_pipeline_classifier
    from dexter.pipeline import check_model_specs, explain, load_dexter_models

    check_model_specs(models.stable_diffusion, models.bert, models.lcm_lora)
    if not args.classifier.is_dir():
        raise StageInputError(f"no classifier at {args.classifier} (run the train_erm stage first)")
    from dro.models import ModelError, load_classifier

    try:
        classifier = wrap_pipeline_classifier(load_classifier(args.classifier))
    except ModelError as e:
        raise StageInputError(str(e)) from None
    classes = args.class_index or section.classes or list(range(classifier.num_classes))
    bad = [c for c in classes if not 0 <= c < classifier.num_classes]
    if bad and args.skip_absent_classes:
        print(f"class(es) {bad} skipped: the classifier has {classifier.num_classes} classes", flush=True)
        classes = [c for c in classes if c not in bad]
        if not classes:
            from dro.io import atomic_write_json

            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(args.metrics, {"classes": {}, "skipped": bad, "seconds_this_invocation": 0.0})
            return
    elif bad:
        raise StageInputError(
            f"dexter.classes: {bad} out of range, the classifier has {classifier.num_classes} classes")
    if section.feature_neurons:
        width = classifier.head.in_features
        for c, units in section.feature_neurons.items():
            if any(not 0 <= u < width for u in units):
                raise StageInputError(f"dexter.feature_neurons.{c}: units must be in [0, {width})")

    dexter_models = load_dexter_models(
        classifier, config, sd=models.stable_diffusion, bert=models.bert, lora=models.lcm_lora, device=device,
        dtype=section.dtype, cache_dir=OUTPUTS_DIR / "cache" / "dexter",
        gradient_checkpointing=section.gradient_checkpointing,
    )
    run_info = {"classifier": str(args.classifier), "stable_diffusion": models.stable_diffusion,
                "lcm_lora": models.lcm_lora, "bert": models.bert, "dataset": params.dataset}
    start = time.perf_counter()
    done = explain(dexter_models, args.out, classes, feature_neurons=section.feature_neurons, run_info=run_info,
                   progress=not args.no_progress)
    write_metrics(done, args.metrics, time.perf_counter() - start)


def write_metrics(done: dict, path: Path, seconds: float) -> dict:
    """Per class: keywords, steps and hits of every run (small enough for ``dvc metrics show``)."""
    from dro.io import atomic_write_json

    classes = {}
    for c, kw_path in sorted(done.items()):
        data = json.loads(kw_path.read_text())
        classes[data["class_name"]] = {
            "class_index": c,
            "keywords": " ".join(data["keywords"]),
            "steps": sum(r["steps"] for r in data["runs"]),
            "hits": sum(r["hits"] for r in data["runs"]),
            "runs_stopped_early": sum(bool(r["stopped_early"]) for r in data["runs"]),
        }
        print(f"class {c} ({data['class_name']}): {classes[data['class_name']]['keywords'] or '(no keyword)'}",
              flush=True)
    metrics = {"classes": classes, "seconds_this_invocation": round(seconds, 1)}
    atomic_write_json(path, metrics)
    return metrics


if __name__ == "__main__":
    main()
