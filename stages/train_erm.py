"""Stage ``train_erm``: the ERM classifier DEXTER audits -> ``outputs/erm/``; or, when ``classifier.source``
is not ``trained``, the user's own classifier imported there instead (``dro.imported``), not trained.

Selected on plain validation accuracy: no group label is used for training or selection. Its test
accuracy per TRUE group is measured afterwards for the record (``metrics/erm.json``). Checkpointed every
epoch under ``outputs/checkpoints/erm``; rerunning after a kill resumes (a run that finished before the kill
is not trained again). A rerun of a stage that completed (``dvc repro -f train_erm``) trains anew.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from common.device import resolve_device
from stages.common import end_stage_session, stage_main, stage_session
from stages.dro_common import (
    CHECKPOINTS,
    ERM_DIR,
    ERM_METRICS,
    PREPARED_DIR,
    full_train_config,
    model_spec,
)

log = logging.getLogger(__name__)

SESSION = CHECKPOINTS / "erm" / "invocation.json"


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    ap.add_argument("--out", type=Path, default=ERM_DIR)
    ap.add_argument("--metrics", type=Path, default=ERM_METRICS)
    args = ap.parse_args(argv)

    from stages.params import load_params

    params = load_params(args.params)

    from common.io import atomic_write_json
    from dro.data import open_prepared
    from dro.evaluate import convention_for
    from dro.pipeline import evaluate_on_test, train_erm_classifier

    device = resolve_device(params.device)
    datasets = open_prepared(args.prepared)
    spec = model_spec(params)
    cfg = full_train_config(params, params.seed, erm=True)
    if params.classifier.imported:
        import_audited(params, datasets, spec, args.out, args.metrics, device)
        return
    session = stage_session(SESSION)
    model, result = train_erm_classifier(datasets, spec, cfg, CHECKPOINTS / "erm", args.out, device, log=log.info,
                                         session=session)
    test = evaluate_on_test(model, datasets, spec, convention_for(params.dataset), device, cfg.eval_batch_size)
    atomic_write_json(args.metrics, {
        "best_epoch": result.best_epoch, "selection": result.selection, "val_acc": result.best_score,
        "test_worst_group_acc": test["worst_group_acc"], "test_avg_acc": test["avg_acc"],
        "test_group_acc": test["group_acc"], "avg_acc_convention": test["avg_acc_convention"],
    })
    log.info(f"ERM classifier -> {args.out} (best epoch {result.best_epoch}, val acc {result.best_score:.4f}, "
             f"test worst-group {test['worst_group_acc']:.4f}, avg {test['avg_acc']:.4f})")
    end_stage_session(SESSION)


def import_audited(params, datasets, spec, out: Path, metrics: Path, device) -> None:
    """``classifier.source`` is not ``trained``: import the user's classifier into ``out`` instead of training
    one (checked against the dataset's classes before anything is written)."""
    from common.io import atomic_write_json
    from dro.evaluate import convention_for
    from dro.imported import ClassifierSource, import_classifier, save_imported
    from dro.pipeline import evaluate_on_test
    from stages.common import StageInputError

    c = params.classifier
    if c.checkpoint and not Path(c.checkpoint).is_file():
        raise StageInputError(f"classifier.checkpoint: file {c.checkpoint} not found")
    source = ClassifierSource(c.source, c.name, c.checkpoint, c.pretrained)
    info = datasets["train"].info
    model = import_classifier(source, info.class_names, spec.image_size)
    save_imported(model, source, out)
    test = evaluate_on_test(model.to(device), datasets, spec, convention_for(params.dataset), device,
                            params.dro.eval_batch_size)
    atomic_write_json(metrics, {
        "imported": source.describe(), "best_epoch": None, "selection": "imported",
        "test_worst_group_acc": test["worst_group_acc"], "test_avg_acc": test["avg_acc"],
        "test_group_acc": test["group_acc"], "avg_acc_convention": test["avg_acc_convention"],
    })
    log.info(f"audited classifier: {source.describe()} -> {out} (not trained; test worst-group "
             f"{test['worst_group_acc']:.4f}, avg {test['avg_acc']:.4f})")


@stage_main
def main() -> None:
    run()


if __name__ == "__main__":
    main()
