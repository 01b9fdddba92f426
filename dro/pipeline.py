"""The steps the thin stages call: train the audited ERM model, label slices, retrain several ways.

Each function takes explicit arguments (no params file): the stages translate params.yaml into them.
Which group labels each retraining method may see is declared in ONE registry,
:data:`dro.methods.METHODS` (loss, sampler / weights, groups in training, groups for selection, data
used for discovery), and handed out in one function, :func:`visible_groups`. Data-free rows (DEXTER's
and the ablations' pseudo-groups) see no true group label in training or selection; true groups then
serve one thing only: the final test evaluation, over the dataset's evaluation cells.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from common.artifacts import PSEUDO_GROUPS_FILE, pseudo_groups_file, pseudo_groups_meta
from common.classifier import Classifier, build_classifier, load_classifier, save_classifier
from common.clip import ClipEncoder, cached_image_embeddings, dataset_key
from common.io import atomic_write_json, atomic_writer
from dro.data import GroupImageDataset
from dro.dfr import DfrSettings, fit_dfr_head
from dro.evaluate import Convention, average_accuracy, evaluate_predictions
from dro.labelling_quality import aligned_values_by_lift, labelling_quality, true_conflicting
from dro.last_layer import feature_source, new_head, with_head
from dro.methods import METHODS, get_method  # noqa: F401  (METHODS re-exported: the registry)
from dro.slices import ClassSlices, assign_with_alternatives, class_prototypes, pseudo_group_names
from dro.sources import image_source, predict
from dro.train import SplitData, TrainConfig, TrainResult, train

_log = logging.getLogger(__name__)

ERM_RECORD = "train.json"  # next to the audited ERM model: how it was trained and selected
# The TrainConfig fields that change what ERM learns (the group-DRO-only ones and the evaluation batch
# size do not): with the model spec and the data, they decide whether two ERM runs are the same run.
ERM_SETTINGS = ("epochs", "batch_size", "lr", "seed", "optimizer", "momentum", "weight_decay")


LABELS_FILE = PSEUDO_GROUPS_FILE  # dro_dexter's; an ablation row's is pseudo_groups.<method>.csv
labels_file, meta_file = pseudo_groups_file, pseudo_groups_meta  # the labelling's file names (common.artifacts)


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    image_size: int
    pretrained: bool = False
    num_workers: int = 0
    init: str | None = None  # a saved classifier (the imported audited one) every full retraining starts from


def new_model(spec: ModelSpec, class_names: tuple[str, ...]) -> Classifier:
    """A classifier to train: the one in ``spec.init`` (bring-your-own: retraining starts from it), else a
    fresh ``spec.arch``."""
    if spec.init is None:
        return build_classifier(spec.arch, class_names, spec.image_size, pretrained=spec.pretrained)
    model = load_classifier(spec.init)
    if tuple(model.class_names) != tuple(class_names):
        raise ValueError(f"the classifier in {spec.init} predicts {list(model.class_names)}, the dataset has "
                         f"{list(class_names)}")
    return model.train()


def _split(ds: GroupImageDataset, spec: ModelSpec, groups: np.ndarray | None, num_groups: int,
           source=None) -> SplitData:
    src = source if source is not None else image_source(ds, spec.image_size, spec.num_workers)
    return SplitData(src, ds.y, groups, num_groups if groups is not None else 0)


def true_groups_or_fail(ds: GroupImageDataset, what: str) -> np.ndarray:
    g = ds.groups
    if (g < 0).any():
        raise ValueError(f"{what} needs the true group of every {ds.split} image, but "
                         f"{int((g < 0).sum())} have an unknown attribute")
    return g


# ---------------------------------------------------------------------------------------------
# The audited ERM classifier
# ---------------------------------------------------------------------------------------------


def train_erm_classifier(datasets: dict[str, GroupImageDataset], spec: ModelSpec, cfg: TrainConfig,
                         ckpt_dir: Path, out_dir: Path, device: torch.device,
                         log: Callable[[str], None] = _log.info, session: str | None = None,
                         ) -> tuple[Classifier, TrainResult]:
    """ERM, selected on plain validation accuracy (no groups: the model a user would bring).
    ``session``: see :func:`dro.train.train` (when a finished checkpoint is reused)."""
    info = datasets["train"].info
    torch.manual_seed(cfg.seed)
    model = build_classifier(spec.arch, info.class_names, spec.image_size, pretrained=spec.pretrained)
    result = train(model, _split(datasets["train"], spec, None, 0), _split(datasets["val"], spec, None, 0),
                   replace(cfg, method="erm"), ckpt_dir, device=device, log=log, session=session)
    save_classifier(model, out_dir)
    atomic_write_json(out_dir / ERM_RECORD, {"best_epoch": result.best_epoch, "selection": result.selection,
                                             "best_val_acc": result.best_score, "history": result.history,
                                             "identity": erm_identity(datasets, spec, cfg)})
    return model, result


def erm_identity(datasets: dict[str, GroupImageDataset], spec: ModelSpec, cfg: TrainConfig) -> dict:
    """What decides the ERM model a run trains: its settings, the architecture and the train/val data."""
    data = {s: [dataset_key(datasets[s]), hashlib.sha256(np.ascontiguousarray(datasets[s].y)).hexdigest()[:16]]
            for s in ("train", "val")}
    identity = {"train": {k: getattr(cfg, k) for k in ERM_SETTINGS},
                "model": {"arch": spec.arch, "image_size": spec.image_size, "pretrained": spec.pretrained},
                "data": data}
    return json.loads(json.dumps(identity))  # as it reads back from train.json


def reuse_erm(erm_dir: Path, datasets: dict[str, GroupImageDataset], spec: ModelSpec, cfg: TrainConfig,
              convention: Convention, device: torch.device,
              log: Callable[[str], None] = _log.info) -> MethodRun | None:
    """The ``erm`` row of one seed from the audited model in ``erm_dir`` (the ``train_erm`` stage), when
    that model is exactly what the row would train (same seed, settings, architecture and data): same
    selection (plain validation accuracy), same test evaluation, without training it a second time.
    None when it is not (another seed, ``erm_epochs``, no record): the caller trains the row."""
    path = Path(erm_dir) / ERM_RECORD
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        log(f"erm seed {cfg.seed}: no readable {path}, training it")
        return None
    wanted, found = erm_identity(datasets, spec, cfg), record.get("identity") or {}
    if record.get("imported"):  # a classifier the user brought: the erm row is that model, as it is
        model = load_classifier(erm_dir, device)
        pred = predict(model, image_source(datasets["test"], spec.image_size, spec.num_workers), device,
                       cfg.eval_batch_size)
        metrics = score_on_test(pred, datasets, convention)
        metrics.update({"best_epoch": None, "selection": "imported", "selection_groups": "none",
                        "model": record["imported"]})
        log(f"erm seed {cfg.seed}: the imported classifier ({record['imported']}), not trained: test worst-group "
            f"{metrics['worst_group_acc']:.4f} avg {metrics['avg_acc']:.4f}")
        return MethodRun("erm", cfg.seed, metrics, TrainResult(best_epoch=-1, best_score=float("nan"),
                                                               selection="imported", history=[]), model)
    if found != wanted:
        differ = sorted({f"{part}.{k}" for part in wanted for k in wanted[part]
                         if (found.get(part) or {}).get(k) != wanted[part][k]})
        log(f"erm seed {cfg.seed}: the audited model in {erm_dir} differs ({', '.join(differ)}), training it")
        return None
    model = load_classifier(erm_dir, device)
    pred = predict(model, image_source(datasets["test"], spec.image_size, spec.num_workers), device,
                   cfg.eval_batch_size)
    metrics = score_on_test(pred, datasets, convention)
    metrics.update({"best_epoch": record["best_epoch"], "selection": record["selection"],
                    "selection_groups": "none", "model": str(erm_dir)})
    result = TrainResult(best_epoch=record["best_epoch"], best_score=record["best_val_acc"],
                         selection=record["selection"], history=record["history"])
    log(f"erm seed {cfg.seed}: the audited model in {erm_dir} (same run, not trained again): test worst-group "
        f"{metrics['worst_group_acc']:.4f} avg {metrics['avg_acc']:.4f} (best epoch {result.best_epoch})")
    return MethodRun("erm", cfg.seed, metrics, result, model)


def score_on_test(pred: np.ndarray, datasets: dict[str, GroupImageDataset], convention: Convention) -> dict:
    """Test metrics over the dataset's evaluation cells (evaluation only; the groups for Waterbirds and
    CelebA, every (class, colour, background) for the synthetic world), with the training cell counts
    the Waterbirds convention weights by."""
    info, train, test = datasets["train"].info, datasets["train"], datasets["test"]
    train_cells = train.eval_cells
    train_counts = np.bincount(train_cells[train_cells >= 0], minlength=info.num_cells)
    out = evaluate_predictions(pred, test.y, test.eval_cells, info.cell_names, convention, train_counts)
    # both average-accuracy conventions, labelled (Waterbirds papers quote either one)
    out["avg_acc_plain"] = average_accuracy(pred, test.y, test.eval_cells, info.num_cells, "plain")
    if train_counts.sum() and (train_counts > 0).any():
        try:
            out["avg_acc_train_weighted"] = average_accuracy(pred, test.y, test.eval_cells, info.num_cells,
                                                             "train_weighted", train_counts)
        except ValueError:  # no test cell has training data (cannot happen on the built-in datasets)
            out["avg_acc_train_weighted"] = None
    return out


def evaluate_on_test(model: Classifier, datasets: dict[str, GroupImageDataset], spec: ModelSpec,
                     convention: Convention, device: torch.device, batch_size: int = 512) -> dict:
    pred = predict(model, image_source(datasets["test"], spec.image_size, spec.num_workers), device, batch_size)
    return score_on_test(pred, datasets, convention)


# ---------------------------------------------------------------------------------------------
# Slice labelling
# ---------------------------------------------------------------------------------------------


def label_splits(
    datasets: dict[str, GroupImageDataset],
    encoder: ClipEncoder,
    keywords: Sequence[ClassSlices] | Sequence[Sequence[str]],
    templates: Sequence[str],
    class_templates: Sequence[str],
    temperature: float,
    cache_dir: Path,
    out_dir: Path,
    splits: Sequence[str] = ("train", "val"),
    batch_size: int = 256,
    num_workers: int = 0,
    log: Callable[[str], None] = _log.info,
    method: str = "dro_dexter",
) -> dict:
    """Pseudo-groups of ``method`` for ``splits`` -> ``out_dir/<labels_file(method)>`` + ``<meta_file>``;
    returns the labelling quality (where true attributes are known) that the stage writes as a metric.
    ``keywords``: per class a :class:`ClassSlices` (or a plain list of attributes: B2T's rule)."""
    info = datasets["train"].info
    if len(keywords) != info.num_classes:
        raise ValueError(f"{len(keywords)} keyword lists for {info.num_classes} classes")
    slices = [k if isinstance(k, ClassSlices) else ClassSlices(name, tuple(k))
              for name, k in zip(info.class_names, keywords)]
    protos: dict[tuple[str, ...], torch.Tensor] = {}

    def prototype(phrases: Sequence[str]) -> torch.Tensor:
        key = tuple(phrases)
        if key not in protos:
            protos[key] = class_prototypes(encoder.encode_text, [list(key)], templates, class_templates)[0]
        return protos[key]

    train = datasets["train"]
    aligned = info.aligned_values or aligned_values_by_lift(train.y, train.a, info.num_classes,
                                                            len(info.attribute_values))
    rows, quality = [], {}
    for split in splits:
        ds = datasets[split]
        emb = cached_image_embeddings(encoder, ds, cache_dir, batch_size, log, num_workers)
        a = assign_with_alternatives(emb, ds.y, slices, prototype, temperature, log)
        for i in range(len(ds)):
            rows.append((split, i, int(ds.y[i]), int(a.pseudo_groups[i]), int(a.conflicting[i]),
                         float(a.p_aligned[i])))
        known = ds.a >= 0
        counts = np.bincount(a.pseudo_groups, minlength=2 * info.num_classes)
        for c, name in enumerate(info.class_names):
            n_al, n_cf = counts[2 * c], counts[2 * c + 1]
            if n_al + n_cf and min(n_al, n_cf) == 0 and slices[c].biased:
                log(f"WARNING {method} {split}: every {name} image is labelled "
                    f"{'conflicting' if n_al == 0 else 'aligned'}: the attributes do not separate this class "
                    "(group DRO then has one group for it)")
        quality[split] = {"pseudo_group_counts": dict(zip(pseudo_group_names(info.class_names),
                                                          map(int, counts)))}
        if known.any():
            quality[split].update(labelling_quality(a.conflicting, true_conflicting(ds.y, ds.a, aligned),
                                                    ds.y, known, info.class_names))
    with atomic_writer(out_dir / labels_file(method), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["split", "index", "y", "pseudo_group", "conflicting", "p_aligned"])
        w.writerows(rows)
    atomic_write_json(out_dir / meta_file(method), {
        "method": method, "clip": encoder.name, "temperature": temperature,
        "keywords": {s.class_name: list(s.attributes) for s in slices},
        "alternatives": {s.class_name: {a: list(v) for a, v in s.alternatives.items()} for s in slices},
        "verdicts": {s.class_name: s.verdict for s in slices},
        "rule": {s.class_name: ("alternatives" if s.has_alternatives else "b2t" if s.biased else "unbiased")
                 for s in slices},
        "templates": list(templates), "class_templates": list(class_templates),
        "group_names": pseudo_group_names(info.class_names),
        "aligned_attribute_values": {
            "by": "construction" if info.aligned_values else "train lift P(a|y) > P(a)",
            **{info.class_names[c]: [info.attribute_values[v] for v in vs] for c, vs in enumerate(aligned)}},
    })
    return quality


def load_pseudo_groups(labels_dir: Path, datasets: dict[str, GroupImageDataset],
                       splits: Sequence[str] = ("train", "val"), method: str = "dro_dexter") -> dict[str, np.ndarray]:
    """Pseudo-groups written by :func:`label_splits`, checked against the datasets' sizes and labels."""
    path = Path(labels_dir) / labels_file(method)
    if not path.exists():
        raise FileNotFoundError(f"no pseudo-groups of {method} at {path} (run the label stage first)")
    out = {s: np.full(len(datasets[s]), -1, dtype=np.int64) for s in splits}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            s = row["split"]
            if s in out:
                i = int(row["index"])
                if int(row["y"]) != int(datasets[s].y[i]):
                    raise ValueError(f"{path}: label of {s}[{i}] differs from the dataset (stale labels?)")
                out[s][i] = int(row["pseudo_group"])
    for s, g in out.items():
        if (g < 0).any():
            raise ValueError(f"{path}: {int((g < 0).sum())} {s} images have no pseudo-group (stale labels?)")
    return out


# ---------------------------------------------------------------------------------------------
# Retraining and test evaluation
# ---------------------------------------------------------------------------------------------


@dataclass
class MethodRun:
    method: str
    seed: int
    metrics: dict
    result: TrainResult
    model: Classifier | None = None  # the selected classifier (the ERM row's feeds DFR of the same seed)


@dataclass(frozen=True)
class JttSettings:
    """JTT (docs/METHOD.md section 9.2): identification epochs T and the error set's upweight lambda_up."""

    epochs: int = 1
    lambda_up: int = 20


@dataclass(frozen=True)
class DroGrid:
    """Group DRO's selection grid: generalisation adjustment C x step size eta. The first point is the
    default setting: ties in validation score keep it."""

    adjustment: tuple[float, ...] = (0.0,)
    eta: tuple[float, ...] = (0.01,)

    def points(self) -> list[tuple[float, float]]:
        return [(c, e) for c in self.adjustment for e in self.eta]


def inverse_frequency_weights(groups: np.ndarray) -> np.ndarray:
    """w_i = N / (G * n_{g_i}) over the G present groups: every group carries the same total weight and
    the mean weight is 1 (docs/METHOD.md section 9.4)."""
    groups = np.asarray(groups)
    counts = np.bincount(groups)
    return len(groups) / (np.count_nonzero(counts) * counts[groups].astype(np.float64))


def jtt_repeats(errors: np.ndarray, lambda_up: int) -> np.ndarray:
    """JTT's upsampled training set as repeat counts: lambda_up for the error set, 1 elsewhere."""
    if lambda_up < 1:
        raise ValueError(f"lambda_up must be >= 1, got {lambda_up}")
    return np.where(np.asarray(errors, dtype=bool), lambda_up, 1).astype(np.int64)


def visible_groups(which: str, split: str, datasets: dict[str, GroupImageDataset],
                   pseudo: dict[str, np.ndarray] | None, method: str) -> tuple[np.ndarray | None, int]:
    """The groups (and their number) a method may see on ``split``: none, the true groups, or its pseudo-groups.
    The ONE place group labels are handed to training or selection."""
    info = datasets["train"].info
    if which == "true":
        return true_groups_or_fail(datasets[split], method), info.num_groups
    if which == "pseudo":
        if pseudo is None:
            raise ValueError(f"{method} needs pseudo-groups (run the label stage)")
        return pseudo[split], 2 * info.num_classes
    if which == "none":
        return None, 0
    raise ValueError(f"unknown group visibility {which!r}")


def retrain(
    method: str,
    datasets: dict[str, GroupImageDataset],
    spec: ModelSpec,
    cfg: TrainConfig,
    *,
    pseudo: dict[str, np.ndarray] | None,
    mode: str,
    erm_model: Classifier | None,
    ckpt_dir: Path,
    cache_dir: Path,
    model_out: Path | None,
    convention: Convention,
    device: torch.device,
    log: Callable[[str], None] = _log.info,
    session: str | None = None,
    grid: DroGrid | None = None,
    jtt: JttSettings = JttSettings(),
    dfr: DfrSettings = DfrSettings(),
) -> MethodRun:
    """Train one registered method for one seed and evaluate it on the TEST evaluation cells.

    What it trains and sees comes from :data:`dro.methods.METHODS`: ``train`` methods go through the shared
    trainer (full model, or the head over cached features in ``last_layer`` mode), over ``grid`` when the
    method is ``tuned`` (each point its own checkpoint folder; the best validation score of the groups the
    method may see wins); ``jtt`` trains an identification model first; ``dfr`` fits the head of
    ``erm_model`` on validation features. ``session``: see :func:`dro.train.train`."""
    m = get_method(method)
    if mode not in ("full", "last_layer"):
        raise ValueError(f"unknown mode {mode!r}; expected 'full' or 'last_layer'")
    info = datasets["train"].info
    tg, tng = visible_groups(m.train_groups, "train", datasets, pseudo, method)
    vg, vng = visible_groups(m.selection_groups, "val", datasets, pseudo, method)
    test = datasets["test"]
    if m.kind == "dfr":
        if erm_model is None:
            raise ValueError(f"{method} retrains the last layer of the ERM model: it needs that model")
        feats = {s: feature_source(erm_model, image_source(datasets[s], spec.image_size, spec.num_workers),
                                   cache_dir, f"{info.name}-{s}", device, cfg.eval_batch_size, log)
                 for s in ("val", "test")}
        if m.train_groups != m.selection_groups:
            raise ValueError(f"{method}: DFR balances and selects on the same groups")
        head, record = fit_dfr_head(feats["val"].data, datasets["val"].y, vg, vng, info.num_classes,
                                    cfg.seed, dfr, log)
        pred = predict(head, feats["test"], device, cfg.eval_batch_size)
        model = with_head(erm_model, head.cpu())
        result = TrainResult(best_epoch=0, best_score=record["selection_score"], selection="val_half_worst_group")
        extra = {"dfr": record}
    else:
        feats = None
        if mode == "last_layer":
            if erm_model is None:
                raise ValueError("last_layer mode needs the ERM model whose backbone is kept")
            feats = {s: feature_source(erm_model, image_source(datasets[s], spec.image_size, spec.num_workers),
                                       cache_dir, f"{info.name}-{s}", device, cfg.eval_batch_size, log)
                     for s in ("train", "val", "test")}

        def fit(c: TrainConfig, groups, weights, folder: Path, see_val: bool = True
                ) -> tuple[torch.nn.Module, TrainResult]:
            vgs, vngs = (vg, vng) if see_val else (None, 0)
            if feats is None:
                torch.manual_seed(c.seed)
                net = new_model(spec, info.class_names)
                tr = _split(datasets["train"], spec, groups, tng)
                va = _split(datasets["val"], spec, vgs, vngs)
            else:
                net = new_head(erm_model, c.seed)
                tr = _split(datasets["train"], spec, groups, tng, feats["train"])
                va = _split(datasets["val"], spec, vgs, vngs, feats["val"])
            if weights is not None:
                tr = replace(tr, weights=weights)
            return net, train(net, tr, va, c, folder, device=device, log=log, session=session)

        cfg = replace(cfg, method=m.loss, sampler=m.sampler, reweight=m.reweight)
        extra: dict = {}
        weights = inverse_frequency_weights(tg) if m.reweight else None
        if m.kind == "jtt":
            ident, _ = fit(replace(cfg, method="erm", sampler="default", epochs=jtt.epochs, keep="last"), None, None,
                           ckpt_dir / "identification", see_val=False)  # no group, no selection: epoch T
            src = feats["train"] if feats is not None else image_source(datasets["train"], spec.image_size,
                                                                        spec.num_workers)
            errors = predict(ident, src, device, cfg.eval_batch_size) != datasets["train"].y
            weights = jtt_repeats(errors, jtt.lambda_up)
            extra["jtt"] = {"epochs": jtt.epochs, "lambda_up": jtt.lambda_up, "error_set": int(errors.sum())}
            log(f"jtt: identification model after {jtt.epochs} epoch(s) errs on {int(errors.sum())} of "
                f"{len(errors)} training images; upweighted x{jtt.lambda_up}")
        tuned = m.tuned and grid is not None  # no grid: the one setting in cfg
        points = [(cfg.adjustment, cfg.eta)]
        if tuned:
            points += [p for p in grid.points() if p != points[0]]
        best = None
        for i, (c_adj, eta) in enumerate(points):
            folder = ckpt_dir if i == 0 else ckpt_dir / f"grid_C{c_adj:g}_eta{eta:g}"
            net, res = fit(replace(cfg, adjustment=c_adj, eta=eta), tg, weights, folder)
            if tuned:
                extra.setdefault("grid", []).append({"adjustment": c_adj, "eta": eta, "val_score": res.best_score})
                log(f"{method} grid C={c_adj:g} eta={eta:g}: validation {res.selection} {res.best_score:.4f}")
            if best is None or res.best_score > best[1].best_score:  # ties keep the earlier (default) point
                best = (net, res, c_adj, eta)
        net, result, c_adj, eta = best
        if tuned:
            extra["selected"] = {"adjustment": c_adj, "eta": eta}
        if feats is None:
            model = net
            pred = predict(model, image_source(test, spec.image_size, spec.num_workers), device, cfg.eval_batch_size)
        else:
            pred = predict(net, feats["test"], device, cfg.eval_batch_size)
            model = with_head(erm_model, net.cpu())
    if model_out is not None:
        save_classifier(model.cpu(), model_out)
    metrics = score_on_test(pred, datasets, convention)
    metrics.update({"best_epoch": result.best_epoch, "selection": result.selection,
                    "selection_groups": m.selection_groups, **extra})
    log(f"{method} seed {cfg.seed}: test worst-group {metrics['worst_group_acc']:.4f} "
        f"avg {metrics['avg_acc']:.4f} (best epoch {result.best_epoch})")
    return MethodRun(method, cfg.seed, metrics, result, model)
