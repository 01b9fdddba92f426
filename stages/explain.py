"""Stage ``explain``: DEXTER on the audited classifier -> ``outputs/dexter/``.

Reads params.yaml (``dexter`` section with the dataset's overrides, the dataset's model set, ``device``),
the ERM classifier in ``outputs/erm`` (``common.classifier.load_classifier``), and writes one folder per class
(``<index:03d>_<name>/keywords.json`` + runs, see ``dexter.outputs``) and a metrics JSON. dvc.yaml runs
it once per class (``--class-index c``) so DVC caches each class; given several classes it optimises them
together, one batched step at a time.

Crash safety: the runs are written to a work folder under ``outputs/checkpoints/explain/`` (not a DVC
output, so ``dvc repro`` does not delete it before rerunning a killed stage) and moved to ``--out`` only
when every class is finished. A rerun after a kill reuses the finished runs there, so it repeats at most
the runs that were in flight, but only if the work folder was written for the same fingerprint (DEXTER
settings, classifier files, model specs and files, device type, DEXTER code); anything else is discarded.
A finished stage leaves no work folder, so a forced rerun (``dvc repro -f``) computes everything again.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

from common.device import resolve_device
from stages.common import METRICS_DIR, OUTPUTS_DIR, StageInputError, stage_main
from stages.dro_common import CHECKPOINTS, ERM_DIR

DEXTER_DIR = OUTPUTS_DIR / "dexter"
WORK_ROOT = CHECKPOINTS / "explain"  # unfinished classes; survives DVC's deletion of the stage's outputs


@stage_main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--classifier", type=Path, default=ERM_DIR, help="a common.classifier classifier folder")
    ap.add_argument("--out", type=Path, default=DEXTER_DIR)
    ap.add_argument("--metrics", type=Path, default=METRICS_DIR / "dexter.json")
    ap.add_argument("--class-index", type=int, nargs="+", default=None, help="override dexter.classes")
    ap.add_argument("--work", type=Path, default=None,
                    help=f"where unfinished runs are kept until the stage ends (default {WORK_ROOT}/<name of --out>)")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--skip-absent-classes", action="store_true",
                    help="skip class indices the classifier does not have instead of failing (dvc.yaml fans out "
                         "over dexter.classes, which may name more classes than a smaller world has)")
    args = ap.parse_args(argv)
    work = args.work or WORK_ROOT / args.out.name

    from stages.params import load_params
    from stages.params.dexter import library_config

    params = load_params(args.params)
    section, models = params.dexter_settings, params.model_set
    config = library_config(section)  # invalid settings fail here, before any model is read
    device = resolve_device(params.device)

    from dexter.classifiers import wrap_pipeline_classifier
    from dexter.pipeline import check_model_specs, explain, load_dexter_models

    check_model_specs(models.stable_diffusion, models.bert, models.lcm_lora)
    if not args.classifier.is_dir():
        raise StageInputError(f"no classifier at {args.classifier} (run the train_erm stage first)")
    from common.classifier import load_classifier

    classifier = wrap_pipeline_classifier(load_classifier(args.classifier))
    classes = args.class_index or section.classes or list(range(classifier.num_classes))
    bad = [c for c in classes if not 0 <= c < classifier.num_classes]
    if bad and args.skip_absent_classes:
        print(f"class(es) {bad} skipped: the classifier has {classifier.num_classes} classes", flush=True)
        classes = [c for c in classes if c not in bad]
        if not classes:
            from common.io import atomic_write_json

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
    from dexter import outputs

    fingerprint = run_fingerprint(config, section, run_info, classes, device, args.classifier)
    reused = outputs.open_work_dir(work, fingerprint)
    for name, n in reused.items():
        print(f"{name}: reusing {n} finished run(s) of an interrupted invocation ({work})", flush=True)
    start = time.perf_counter()
    done = explain(dexter_models, work, classes, feature_neurons=section.feature_neurons, run_info=run_info,
                   progress=not args.no_progress)
    done = outputs.publish_work_dir(work, args.out, done)
    write_metrics(done, args.metrics, time.perf_counter() - start, sum(reused.values()))


def run_fingerprint(config, section, run_info: dict, classes, device, classifier_dir: Path) -> str:
    """Identity of what produces a class's runs: finished runs are reused only under the same one.

    Covers the DEXTER settings, the classes and their feature neurons, the dtype and device type (numerics),
    the classifier's files (contents), the model specs and, for local model folders, their files (size
    and modification time: re-hashing gigabytes of SD weights on every start would cost more than it
    protects), and the DEXTER code.
    """
    import common
    import dexter
    from common.fingerprint import code_digest, json_digest, module_dir, tree_signature

    models = {}
    for key in ("stable_diffusion", "lcm_lora", "bert"):
        spec = run_info[key]
        models[key] = [spec, tree_signature(spec) if spec is not None and Path(spec).exists() else None]
    parts = {
        "config": asdict(config), "dtype": section.dtype, "feature_neurons": section.feature_neurons,
        "classes": sorted(classes), "device": device.type, "dataset": run_info["dataset"],
        "classifier": tree_signature(classifier_dir, contents=True), "models": models,
        # the DEXTER core (its top-level modules, not the reasoning) and the shared base
        "code": [code_digest(module_dir(dexter), module_dir(dexter).glob("*.py")), code_digest(module_dir(common))],
    }
    return json_digest(parts)


def write_metrics(done: dict, path: Path, seconds: float, runs_reused: int = 0) -> dict:
    """Per class: keywords, steps and hits of every run (small enough for ``dvc metrics show``)."""
    from common.io import atomic_write_json

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
    metrics = {"classes": classes, "seconds_this_invocation": round(seconds, 1),
               "runs_reused_from_interrupted_invocation": runs_reused}
    atomic_write_json(path, metrics)
    return metrics


if __name__ == "__main__":
    main()
