"""Stage ``train_erm``: the ERM classifier DEXTER audits (when the user brings none) -> ``outputs/erm/``.

Selected on plain validation accuracy: no group label is used. Checkpointed every epoch under
``outputs/checkpoints/erm``; rerunning after a kill resumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.dro_common import CHECKPOINTS, ERM_DIR, PREPARED, RESULTS, full_train_config, log, model_spec
from stages.params import load_params


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", type=Path, default=PREPARED)
    ap.add_argument("--out", type=Path, default=ERM_DIR)
    ap.add_argument("--curve", type=Path, default=RESULTS / "plots" / "erm_curve.csv")
    args = ap.parse_args(argv)
    params = load_params(args.params)

    from dro.data import open_prepared
    from dro.pipeline import resolve_device, train_erm_classifier

    datasets = open_prepared(args.prepared)
    _, result = train_erm_classifier(
        datasets, model_spec(params), full_train_config(params, params.seed, erm=True),
        CHECKPOINTS / "erm", args.out, resolve_device(params.device), log=log, curve_csv=args.curve)
    log(f"ERM classifier -> {args.out} (best epoch {result.best_epoch}, val acc {result.best_score:.4f})")


if __name__ == "__main__":
    main()
