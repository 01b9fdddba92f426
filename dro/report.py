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

from dro.evaluate import CONVENTION_TEXT, aggregate_seeds
from dro.io import atomic_write_json, atomic_write_text

# Row labels and the "data" / "true groups" columns of docs/METHOD.md section 6.
ROWS = {
    "erm": ("ERM", "yes", "no"),
    "groupdro_oracle": ("GroupDRO", "yes", "yes"),
    "dro_dexter": ("DEXTER + DRO", "no", "no"),
    "dro_classname": ("class names + DRO (ablation)", "no", "no"),
    "dro_random": ("random words + DRO (ablation)", "no", "no"),
}


def dataset_title(dataset: str) -> str:
    """The dataset's column title (``dro.data.registry``); an unknown name is shown as it is."""
    from dro.data.registry import KINDS

    return KINDS[dataset].title if dataset in KINDS else dataset


def build_metrics(dataset: str, per_method_seed: dict[str, list[dict]], seeds: Sequence[int], mode: str) -> dict:
    methods = {name: aggregate_seeds(runs) for name, runs in per_method_seed.items()}
    convention = next(iter(methods.values()))["avg_acc_convention"]
    return {
        "dataset": dataset, "mode": mode, "seeds": list(seeds),
        "avg_acc_convention": convention, "avg_acc_convention_text": CONVENTION_TEXT[convention],
        "methods": methods,
    }


def table_markdown(metrics: dict) -> str:
    title = dataset_title(metrics["dataset"])
    lines = [
        f"Test worst-group / average accuracy (%), mean ± std over {len(metrics['seeds'])} seed(s) "
        f"{metrics['seeds']}, retraining mode `{metrics['mode']}`.",
        "",
        f"| method | data | true groups | {title} |",
        "|---|---|---|---|",
    ]
    for name, m in metrics["methods"].items():
        label, data, groups = ROWS.get(name, (name, "?", "?"))
        cell = (f"{100 * m['worst_group_acc']:.1f} ± {100 * m['worst_group_acc_std']:.1f} / "
                f"{100 * m['avg_acc']:.1f} ± {100 * m['avg_acc_std']:.1f}")
        lines.append(f"| {label} | {data} | {groups} | {cell} |")
    lines += [
        "",
        f"Convention: {metrics['avg_acc_convention_text']}. Worst-group = minimum over the non-empty test "
        "evaluation cells (the synthetic world: every (class, colour, background) cell).",
        "Model selection: ERM on validation accuracy; GroupDRO on validation worst-group accuracy of TRUE "
        "groups; DEXTER + DRO (and the ablations) on validation worst-group accuracy of its PSEUDO-groups (no "
        "true group label in its training or selection).",
        "",
    ]
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
