"""Stage ``explain``: DEXTER on the audited classifier -> ``outputs/dexter/``.

Reads params.yaml (``dexter`` section with the dataset's overrides, the dataset's model set, ``device``,
``processes``, ``torchrun``), the ERM classifier in ``outputs/erm`` (``common.classifier.load_classifier``), and
writes one folder per class (``<index:03d>_<name>/keywords.json`` + runs, see ``dexter.outputs``) and a
metrics JSON. The classes of ``dexter.classes`` (``all``, indices, ranges) are optimised together, one
batched step at a time (``dexter.max_batch`` runs at most).

Several processes (``processes: N > 1``): the stage launches N torchrun workers (``stages.launch``); worker
r takes every N-th class of the sorted list from r (``dexter.shards.shard``) and writes its classes into
the shared work folder; when all have exited, this process gathers the classes and publishes them as
below. Keywords do not depend on the split (every random draw is seeded by seed, class, run, step and
image); only floating-point summation order within a batched step differs.

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
import logging
import sys
import time
from dataclasses import asdict
from pathlib import Path

from common.device import resolve_device
from stages.common import METRICS_DIR, OUTPUTS_DIR, StageInputError, stage_main
from stages.dro_common import CHECKPOINTS, ERM_DIR

log = logging.getLogger(__name__)

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
                    help="skip class indices the classifier does not have instead of failing")
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw_args)
    work = args.work or WORK_ROOT / args.out.name

    from stages.launch import dist_info
    from stages.params import load_params
    from stages.params.dexter import library_config

    params = load_params(args.params)
    section, models = params.dexter_settings, params.model_set
    config = library_config(section)  # invalid settings fail here, before any model is read
    device = resolve_device(params.device)
    dist = dist_info()

    from dexter.classifiers import wrap_pipeline_classifier
    from dexter.pipeline import check_model_specs, explain

    check_model_specs(models.stable_diffusion, models.bert, models.lcm_lora, config.tiny_vae)
    if not args.classifier.is_dir():
        raise StageInputError(f"no classifier at {args.classifier} (run the train_erm stage first)")
    from common.classifier import load_classifier

    classifier = wrap_pipeline_classifier(load_classifier(args.classifier))
    classes, skipped = resolve_classes(args.class_index, section, classifier.num_classes,
                                       args.skip_absent_classes)
    if not classes:
        from common.io import atomic_write_json

        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.metrics, {"classes": {}, "skipped": skipped, "seconds_this_invocation": 0.0})
        return
    if section.feature_neurons:
        width = classifier.head.in_features
        for c, units in section.feature_neurons.items():
            if any(not 0 <= u < width for u in units):
                raise StageInputError(f"dexter.feature_neurons.{c}: units must be in [0, {width})")

    run_info = {"classifier": str(args.classifier), "stable_diffusion": models.stable_diffusion,
                "lcm_lora": models.lcm_lora, "bert": models.bert, "dataset": params.dataset}
    from dexter import outputs

    fingerprint = run_fingerprint(config, section, run_info, device, args.classifier)
    if dist.is_worker:  # a torchrun worker: its share of the classes, into the work folder the launcher opened
        from dexter.shards import shard
        from stages.launch import worker_device

        if not work_dir_matches(work, fingerprint):
            raise StageInputError(f"{work} was not prepared for these settings (run the stage itself, which "
                                  "launches the workers, not its workers alone)")
        mine = shard(classes, dist.rank, dist.world_size)
        log.info(f"rank {dist.rank}/{dist.world_size}: classes {mine}")
        if mine:
            dexter_models = load_models(classifier, config, section, models, worker_device(device, dist), len(mine))
            explain(dexter_models, work, mine, feature_neurons=section.feature_neurons, run_info=run_info,
                    progress=not args.no_progress)
        return

    gathers = params.processes == 1 or params.torchrun.node_rank == 0
    reused = outputs.open_work_dir(work, fingerprint) if gathers else {}
    for name, n in reused.items():
        log.info(f"{name}: reusing {n} finished run(s) of an interrupted invocation ({work})")
    start = time.perf_counter()
    if params.processes > 1:
        from stages.launch import LaunchFailed, launch

        if device.type == "cuda" and device.index is None and torch_cuda_count() < params.processes:
            raise StageInputError(f"processes: {params.processes} asked for, but this machine has "
                                  f"{torch_cuda_count()} CUDA device(s)")
        try:
            launch("stages.explain", raw_args, params.processes, params.torchrun)
        except LaunchFailed as e:
            log.error(f"error: {e}")
            sys.exit(1)
        if not gathers:
            return
        done = gather(work, classes, classifier.class_names)
    else:
        dexter_models = load_models(classifier, config, section, models, device, len(classes))
        done = explain(dexter_models, work, classes, feature_neurons=section.feature_neurons, run_info=run_info,
                       progress=not args.no_progress)
    done = outputs.publish_work_dir(work, args.out, done)
    write_metrics(done, args.metrics, time.perf_counter() - start, sum(reused.values()))


def load_models(classifier, config, section, models, device, num_classes: int):
    """DEXTER's models with the section's speed options; ``max_batch: auto`` measured on them."""
    from dataclasses import replace

    from dexter.pipeline import load_dexter_models

    dexter_models = load_dexter_models(
        classifier, config, sd=models.stable_diffusion, bert=models.bert, lora=models.lcm_lora, device=device,
        dtype=section.dtype, cache_dir=OUTPUTS_DIR / "cache" / "dexter",
        gradient_checkpointing=section.gradient_checkpointing, channels_last=section.channels_last,
        compile=section.compile,
    )
    if section.max_batch == "auto":
        from dexter.speed import auto_max_batch

        dexter_models.config = replace(config, max_batch=auto_max_batch(dexter_models, num_classes))
    return dexter_models


def resolve_classes(override: list[int] | None, section, num_classes: int, skip_absent: bool
                    ) -> tuple[list[int], list[int]]:
    """The classes to explain and those skipped: ``--class-index`` or ``dexter.classes`` (indices, ranges,
    ``all``), checked against the classifier (out-of-range indices are an error, or skipped with
    ``skip_absent``)."""
    from dexter.errors import DexterInputError
    from dexter.shards import parse_classes

    spec = override if override is not None else section.classes
    try:
        classes = parse_classes(spec)
    except DexterInputError as e:
        raise StageInputError(f"dexter.{e}") from None
    if classes is None:
        return list(range(num_classes)), []
    bad = [c for c in classes if c >= num_classes]
    if bad and skip_absent:
        log.info(f"class(es) {bad} skipped: the classifier has {num_classes} classes")
        return [c for c in classes if c not in bad], bad
    if bad:
        raise StageInputError(f"dexter.classes: {bad} out of range, the classifier has {num_classes} classes")
    return classes, []


def torch_cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


def work_dir_matches(work: Path, fingerprint: str) -> bool:
    """Whether the launcher stamped ``work`` with ``fingerprint`` (workers never empty it themselves)."""
    from dexter.outputs import WORK_STAMP

    try:
        return json.loads((work / WORK_STAMP).read_text())["fingerprint"] == fingerprint
    except (OSError, ValueError, KeyError, TypeError):
        return False


def gather(work: Path, classes: list[int], names) -> dict[int, Path]:
    """After the workers: every class's ``keywords.json`` in the work folder (rank 0's cheap follow-up)."""
    from dexter.outputs import keywords_path

    done = {c: keywords_path(work, c, names[c]) for c in classes}
    missing = [c for c, p in done.items() if not p.exists()]
    if missing:
        raise RuntimeError(f"the workers ended without classes {missing} (in {work})")
    return done


def run_fingerprint(config, section, run_info: dict, device, classifier_dir: Path) -> str:
    """Identity of what produces a class's runs: finished runs are reused only under the same one.

    Not the class list: a class's runs do not depend on which other classes run beside it (or on which
    process), so a rerun with more or fewer classes keeps the finished ones. Covers the DEXTER settings,
    the feature neurons, the dtype and device type (numerics),
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
    tiny = config.tiny_vae
    if tiny is not None:  # its spec is in the config; a local folder's files count too
        models["tiny_vae"] = [tiny, tree_signature(tiny) if Path(tiny).exists() else None]
    parts = {
        "config": asdict(config), "dtype": section.dtype, "feature_neurons": section.feature_neurons,
        "device": device.type, "dataset": run_info["dataset"],
        "classifier": tree_signature(classifier_dir, contents=True), "models": models,
        # the DEXTER core (its top-level modules, not the reasoning) and the shared base
        "code": [code_digest(module_dir(dexter), module_dir(dexter).glob("*.py")), code_digest(module_dir(common))],
    }
    return json_digest(parts)


def write_metrics(done: dict, path: Path, seconds: float, runs_reused: int = 0) -> dict:
    """Per class: keywords, steps and hits of every run (small enough for ``dvc metrics show``)."""
    from common.artifacts import read_keywords
    from common.io import atomic_write_json

    classes = {}
    for c, kw_path in sorted(done.items()):
        data = read_keywords(kw_path)
        classes[data.class_name] = {
            "class_index": c,
            "keywords": " ".join(data.keywords),
            "steps": sum(r.steps for r in data.runs),
            "hits": sum(r.hits for r in data.runs),
            "runs_stopped_early": sum(bool(r.stopped_early) for r in data.runs),
        }
        log.info(f"class {c} ({data.class_name}): {classes[data.class_name]['keywords'] or '(no keyword)'}")
    metrics = {"classes": classes, "seconds_this_invocation": round(seconds, 1),
               "runs_reused_from_interrupted_invocation": runs_reused}
    atomic_write_json(path, metrics)
    return metrics


if __name__ == "__main__":
    main()
