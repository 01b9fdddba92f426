"""Results files other tools read: ``metrics.json``, ``table.md`` (docs/METHOD.md section 6 layout), plot data
(``group_acc.csv``, ``curves.csv``).

``metrics.json``: ``methods.<name>.worst_group_acc`` / ``.avg_acc`` (fractions in [0, 1], mean over
seeds), ``.group_acc`` (per true test group), their ``*_std``, and the average-accuracy convention.
Per-seed numbers go to ``per_seed.json``. None of these is a DVC metric: :func:`summary_metrics` picks the
few numbers that are (see its docstring).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from common.io import atomic_write_json, atomic_write_text
from dro.evaluate import CONVENTION_TEXT, STD_TEXT, aggregate_seeds

# Published worst-group accuracies (%) quoted beside our rows on the real datasets, never computed here:
# the DEXTER paper's slice-discovery-and-debiasing table (Carnemolla et al., NeurIPS 2025, arXiv 2510.14741).
QUOTED_SOURCE = "DEXTER paper (Carnemolla et al., NeurIPS 2025, arXiv 2510.14741), debiasing table, worst-group"
QUOTED = {
    "waterbirds": {"erm": 62.6, "groupdro_oracle": 89.9, "dro_b2t": 90.7, "dro_dexter": 90.5},
    "celeba": {"erm": 47.7, "groupdro_oracle": 90.0, "dro_b2t": 90.4, "dro_dexter": 91.3},
}
GROUPS_TEXT = {"none": "none", "true": "true", "pseudo": "pseudo"}


def dataset_title(dataset: str) -> str:
    """The dataset's column title (``dro.data.registry``); an unknown name is shown as it is."""
    from dro.data.registry import KINDS

    return KINDS[dataset].title if dataset in KINDS else dataset


def build_metrics(dataset: str, per_method_seed: dict[str, list[dict]], seeds: Sequence[int], mode: str) -> dict:
    """Aggregated results; every method also carries what it used (from the registry), so the table and
    any reader of metrics.json see the same columns."""
    from dro.methods import get_method

    methods = {}
    for name, runs in per_method_seed.items():
        m = get_method(name)
        methods[name] = {**aggregate_seeds(runs), "label": m.label,
                         "uses": {"training_data": m.training_data, "groups_in_training": m.train_groups,
                                  "groups_for_selection": m.selection_groups, "pseudo_groups_from": m.pseudo_from,
                                  "data_for_discovery": m.discovery_data, "tuned_on_dro_grid": m.tuned,
                                  "source": m.source}}
        for key in ("selected", "dfr", "jtt"):
            picks = [r[key] for r in runs if key in r]
            if picks:
                methods[name][key] = picks
    convention = next(iter(methods.values()))["avg_acc_convention"]
    return {
        "dataset": dataset, "mode": mode, "seeds": list(seeds), "std": STD_TEXT,
        "avg_acc_convention": convention, "avg_acc_convention_text": CONVENTION_TEXT[convention],
        "methods": methods,
    }


def _pm(m: dict, key: str) -> str:
    return f"{100 * m[key]:.1f} ± {100 * m.get(key + '_std', 0.0):.1f}"


def table_markdown(metrics: dict) -> str:
    """docs/METHOD.md section 6 layout: one row per method, with what it used beside its numbers."""
    dataset = metrics["dataset"]
    title = dataset_title(dataset)
    both = dataset == "waterbirds"
    quoted = QUOTED.get(dataset, {})
    avg_head = ("average, train-weighted | average, plain" if both else "average")
    head = (f"| method | training data | groups in training | groups for selection | data used for discovery "
            f"| {title} worst-group | {avg_head} |" + (" published worst-group (quoted) |" if quoted else ""))
    ncol = head.count("|") - 1
    lines = [
        f"Test accuracy (%), mean ± std over {len(metrics['seeds'])} seed(s) {metrics['seeds']} (sample std, "
        f"ddof=1), retraining mode `{metrics['mode']}`.",
        "",
        head,
        "|" + "---|" * ncol,
    ]
    for name, m in metrics["methods"].items():
        u = m["uses"]
        train_groups = GROUPS_TEXT[u["groups_in_training"]]
        if u["pseudo_groups_from"] and u["groups_in_training"] == "pseudo":
            train_groups += f" ({u['pseudo_groups_from']})"
        cells = [m["label"], u["training_data"], train_groups, GROUPS_TEXT[u["groups_for_selection"]],
                 u["data_for_discovery"], _pm(m, "worst_group_acc")]
        if both:
            cells += [_pm(m, "avg_acc_train_weighted") if m.get("avg_acc_train_weighted") is not None else "n/a",
                      _pm(m, "avg_acc_plain")]
        else:
            cells.append(_pm(m, "avg_acc"))
        if quoted:
            cells.append(f"{quoted[name]:.1f} (quoted)" if name in quoted else "")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        ("Average accuracy, both conventions: train-weighted = per-group test accuracies weighted by TRAINING "
         "group proportions (the group-DRO code's Waterbirds convention); plain = accuracy over all test images."
         if both else f"Convention: {metrics['avg_acc_convention_text']}.")
        + " Worst-group = minimum over the non-empty test evaluation cells (the synthetic world: every "
        "(class, colour, background) cell).",
        "Groups in training / for selection: none, true (the dataset's group labels) or pseudo (CLIP labels "
        "from the keywords named in brackets). Model selection = best validation worst-group accuracy of the "
        "groups a row may see (plain validation accuracy for none; DFR: worst-group of a held-out half of "
        "validation); group-DRO rows are also selected over the grid of C and step size (dro.grid).",
    ]
    if quoted:
        lines.append(f"Published figures are QUOTED, not reproduced here: {QUOTED_SOURCE}; their training "
                     "protocols differ from ours.")
    lines.append("")
    return "\n".join(lines)


def group_acc_csv(metrics: dict) -> str:
    """Per-group test accuracy of every method, one row per (method, group); ``bar`` is a label unique
    per row ("<method>: <group>") so a horizontal bar plot (x=accuracy, y=bar) shows every bar."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["bar", "method", "group", "accuracy"])
    for method, m in metrics["methods"].items():
        for g, acc in m["group_acc"].items():
            if acc is not None:  # empty test groups have no accuracy
                w.writerow([f"{method}: {g}", method, g, f"{acc:.6f}"])
    return buf.getvalue()


def curves_csv(histories: dict[str, list[list[dict]]], key: str = "selection") -> str:
    """Training curves, one row per epoch, one column per method (mean over seeds): the validation score
    each method is selected on (``<method>``: worst-group of the groups it may see, or accuracy for ERM)
    and its training loss (``<method>_train_loss``)."""
    import numpy as np

    methods = list(histories)
    epochs = max((len(h) for runs in histories.values() for h in runs), default=0)

    def column(runs: list[list[dict]], e: int, field: str) -> str:
        vals = []
        for h in runs:
            if e < len(h):
                r = h[e]
                vals.append(r.get("val_worst_group_acc", r["val_acc"]) if field == "score" else r[field])
        return f"{float(np.mean(vals)):.6f}" if vals else ""

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", *methods, *(f"{m}_train_loss" for m in methods)])
    for e in range(epochs):
        w.writerow([e + 1, *(column(histories[m], e, "score") for m in methods),
                    *(column(histories[m], e, "train_loss") for m in methods)])
    return buf.getvalue()


def write_results(out_dir: Path, metrics: dict, per_seed: dict, histories: dict[str, list[list[dict]]]) -> None:
    """``metrics.json``, ``per_seed.json``, ``table.md``, ``group_acc.csv``, ``curves.csv`` (atomically each)."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "curves.csv", curves_csv(histories))
    atomic_write_text(out_dir / "group_acc.csv", group_acc_csv(metrics))
    atomic_write_json(out_dir / "per_seed.json", per_seed)
    atomic_write_text(out_dir / "table.md", table_markdown(metrics))
    atomic_write_json(out_dir / "metrics.json", metrics)


def summary_metrics(results: dict, labelling: dict | None = None) -> dict:
    """The pipeline's DVC metrics: a few numbers whose names never depend on the dataset, its classes or
    attribute values, so every experiment fills the same ``dvc exp show`` columns.

    ``<method>``: ``test/worst_group_acc`` and ``test/avg_acc`` (mean over seeds) for every method run;
    ``labelling``: ``train/conflicting_f1`` (F1 of the bias-conflicting slice, mean over classes) and
    ``train/accuracy`` (aligned/conflicting accuracy), None where the true attributes are unknown. Everything
    else (per group, per class, per seed, timings) stays in the plain files the stages write.
    """
    out: dict = {
        name: {"test/worst_group_acc": m["worst_group_acc"], "test/avg_acc": m["avg_acc"]}
        for name, m in results["methods"].items()
    }
    train = (labelling or {}).get("train") or {}
    f1s = [c["f1_conflicting"] for c in (train.get("per_class") or {}).values() if c.get("f1_conflicting") is not None]
    out["labelling"] = {"train/conflicting_f1": sum(f1s) / len(f1s) if f1s else None,
                        "train/accuracy": train.get("accuracy")}
    return out
