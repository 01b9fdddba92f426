"""Stage ``retrain``: every row of ``dro.methods`` (the registry ``dro.methods.METHODS``: ERM, GroupDRO on true
groups, JTT, DFR, B2T + DRO, DEXTER + DRO / DFR / reweighting / upsampling) and, on the synthetic world, the
ablations' GroupDRO rows, over the retraining seeds -> ``results/`` (metrics.json, table.md, per_seed.json,
group_acc.csv, curves.csv) and the retrained classifiers in ``outputs/retrain/<method>/seed<k>``. On the
synthetic world metrics.json also carries the label stage's ``discovery`` scores.

``dro.mode: full`` trains whole classifiers with the dataset's training settings; ``last_layer`` keeps
the audited ERM model's backbone (``outputs/erm``) and retrains its head over cached features.
Every run checkpoints under ``outputs/checkpoints/retrain/<mode>/<method>/seed<k>`` and resumes; after a kill
the runs already finished are not trained again, but a rerun of a completed stage (``-f``) retrains all.

ERM is trained once: in ``full`` mode the ``erm`` row of seed ``seed`` IS the audited model of the
``train_erm`` stage (``outputs/erm``, trained with that seed and the same settings), evaluated on test
like every row; only the other seeds of ``seeds`` train an ERM model here (``outputs/retrain/erm/``).
If ``train.erm_epochs`` makes the audited model differ from the row, the row is trained as well.

``processes: N > 1`` (full mode): the stage launches N torchrun workers (``stages.launch``) that train
every run together under DistributedDataParallel, each rank a slice of every global batch (same global
batch size, so the same run as one process up to float summation order; group DRO all-reduces its
per-group sums, ``dro.group_dro``). Rank 0 alone writes checkpoints, models and results. ``last_layer``
mode trains a linear head over cached features and stays one process.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from common.device import resolve_device
from stages.common import end_stage_session, stage_main, stage_session
from stages.dro_common import (
    CACHE,
    CHECKPOINTS,
    ERM_DIR,
    LABELS_DIR,
    PREPARED_DIR,
    RESULTS_DIR,
    RETRAIN_DIR,
    full_train_config,
    last_layer_train_config,
    model_spec,
)

log = logging.getLogger(__name__)


def run(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--prepared", type=Path, default=PREPARED_DIR)
    ap.add_argument("--labels", type=Path, default=LABELS_DIR)
    ap.add_argument("--erm", type=Path, default=ERM_DIR)
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    raw_args = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(raw_args)

    from stages.launch import dist_info, init_process_group, worker_device
    from stages.params import load_params

    params = load_params(args.params)
    dist = dist_info()
    if not dist.is_worker and params.processes > 1:
        if params.dro.mode == "full":
            launch_workers(params, raw_args)
            return
        log.info(f"processes: {params.processes} ignored in last_layer mode (a linear head trains in one process)")

    from common.classifier import load_classifier
    from dro.data import open_prepared
    from dro.dfr import DfrSettings
    from dro.evaluate import convention_for
    from dro.methods import get_method, labellings_needed
    from dro.pipeline import DroGrid, JttSettings, load_pseudo_groups, retrain, reuse_erm
    from dro.report import build_metrics, write_results

    device = worker_device(resolve_device(params.device), dist)
    if dist.is_worker:
        init_process_group(device)
    main_rank = dist.rank == 0
    say = log.info if main_rank else _quiet
    datasets = open_prepared(args.prepared)
    methods, mode, d = params.methods, params.dro.mode, params.dro
    seeds = params.retrain_seeds
    source = "synthetic.methods (in place of dro.methods)" if params.is_world and params.synthetic.methods else \
        "dro.methods"
    say(f"rows: {', '.join(methods)} (from {source})")
    pseudo = {lab: load_pseudo_groups(args.labels, datasets, method=lab) for lab in labellings_needed(methods)}
    needs_erm = mode == "last_layer" or any(get_method(m).kind == "dfr" for m in methods)
    audited = load_classifier(args.erm, device) if needs_erm else None
    grid = DroGrid(tuple(d.grid.adjustment), tuple(d.grid.eta)) if params.dataset in d.grid.datasets else None
    say(f"group-DRO rows: {'selected over the grid C ' + str(d.grid.adjustment) + ' x eta ' + str(d.grid.eta) if grid else f'one setting C {d.adjustment}, eta {d.eta} (dro.grid.datasets leaves {params.dataset} out)'}")
    jtt = JttSettings(epochs=d.jtt.epochs, lambda_up=d.jtt.lambda_up)
    dfr = DfrSettings(c_grid=tuple(d.dfr.c_grid), n_fits=d.dfr.n_fits)
    per_seed: dict[str, list[dict]] = {m: [] for m in methods}
    histories: dict[str, list[list[dict]]] = {m: [] for m in methods}
    session = stage_session(CHECKPOINTS / "retrain" / "invocation.json")
    for seed in seeds:
        cfg = full_train_config(params, seed) if mode == "full" else last_layer_train_config(params, seed)
        # DFR retrains the last layer of this seed's ERM row when it ran (full mode), else the audited model
        erm_model = audited
        for method in methods:
            say(f"== {method}, seed {seed}, mode {mode}")
            run_ = None
            row = get_method(method)
            if row.is_audited_model and mode == "full":
                run_ = reuse_erm(args.erm, datasets, model_spec(params), cfg,
                                 convention_for(params.dataset), device, log=say)
            if run_ is None:
                run_ = retrain(method, datasets, model_spec(params), cfg,
                               pseudo=pseudo.get(row.pseudo_from), mode=mode,
                               erm_model=erm_model if row.kind == "dfr" else audited,
                               ckpt_dir=CHECKPOINTS / "retrain" / mode / method / f"seed{seed}",
                               cache_dir=CACHE / "features",
                               model_out=RETRAIN_DIR / method / f"seed{seed}" if main_rank else None,
                               convention=convention_for(params.dataset), device=device,
                               log=say, session=session, grid=grid, jtt=jtt, dfr=dfr)
            if row.is_audited_model and mode == "full" and run_.model is not None:
                erm_model = run_.model.to(device)
            per_seed[method].append({"seed": seed, **run_.metrics})
            histories[method].append(run_.result.history)
    if not main_rank:
        return
    metrics = build_metrics(params.dataset, per_seed, seeds, mode)
    discovery = args.labels / "discovery.json"
    if params.is_world and discovery.exists():
        import json

        metrics["discovery"] = json.loads(discovery.read_text())
    write_results(args.out, metrics, per_seed, histories)
    log.info((args.out / "table.md").read_text())
    if not dist.is_worker:  # the launcher ends the session once every worker is done
        end_stage_session(CHECKPOINTS / "retrain" / "invocation.json")


def _quiet(msg: str) -> None:
    """The log of ranks other than 0 (rank 0 says the same)."""


def launch_workers(params, raw_args: list[str]) -> None:
    """Run this stage in ``processes`` torchrun workers; the session marker is made first so that every
    worker reads the same id, and removed (node 0) when they all succeeded."""
    from stages.launch import LaunchFailed, launch

    marker = CHECKPOINTS / "retrain" / "invocation.json"
    stage_session(marker)
    try:
        launch("stages.retrain", raw_args, params.processes, params.torchrun)
    except LaunchFailed as e:
        log.error(f"error: {e}")
        sys.exit(1)
    if params.torchrun.node_rank == 0:
        end_stage_session(marker)


@stage_main
def main() -> None:
    run()


if __name__ == "__main__":
    main()
