"""Results files other tools read: ``metrics.json``, ``table.md`` (METHOD.md section 6 layout), plot data.

``metrics.json``: ``methods.<name>.worst_group_acc`` / ``.avg_acc`` (fractions in [0, 1], mean over
seeds), ``.group_acc`` (per true test group), their ``*_std``, and the average-accuracy convention.
Per-seed numbers go to ``per_seed.json`` so that ``dvc metrics diff`` stays readable.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from dro.evaluate import CONVENTION_TEXT, aggregate_seeds
from dro.io import atomic_write_json, atomic_write_text

# Row labels and the "data" / "true groups" columns of METHOD.md section 6.
ROWS = {
    "erm": ("ERM", "yes", "no"),
    "groupdro_oracle": ("GroupDRO", "yes", "yes"),
    "dro_dexter": ("DEXTER + DRO", "no", "no"),
}
DATASET_TITLES = {"waterbirds": "Waterbirds", "celeba": "CelebA", "synthetic": "Synthetic"}


def build_metrics(dataset: str, per_method_seed: dict[str, list[dict]], seeds: Sequence[int], mode: str) -> dict:
    methods = {name: aggregate_seeds(runs) for name, runs in per_method_seed.items()}
    convention = next(iter(methods.values()))["avg_convention"]
    return {
        "dataset": dataset, "mode": mode, "seeds": list(seeds),
        "avg_convention": convention, "avg_convention_text": CONVENTION_TEXT[convention],
        "methods": methods,
    }


def table_markdown(metrics: dict) -> str:
    title = DATASET_TITLES.get(metrics["dataset"], metrics["dataset"])
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
        f"Convention: {metrics['avg_convention_text']}. Worst-group = minimum over non-empty test groups.",
        "Model selection: ERM on validation accuracy; GroupDRO on validation worst-group accuracy of TRUE "
        "groups; DEXTER + DRO on validation worst-group accuracy of its PSEUDO-groups (no true group label "
        "in its training or selection).",
        "",
    ]
    return "\n".join(lines)


def group_acc_csv(metrics: dict, method: str) -> str:
    """One method's per-group test accuracy, one row per true group (DVC bar plot: x=acc, y=group)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["group", "acc"])
    for g, acc in metrics["methods"][method]["group_acc"].items():
        if acc is not None:  # empty test groups have no accuracy
            w.writerow([g, f"{acc:.6f}"])
    return buf.getvalue()


def curves_csv(history: list[dict]) -> str:
    """Per-epoch training curve: loss, accuracies and the score used for model selection."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["epoch", "train_loss", "train_acc", "val_acc", "val_selection_score"])
    for r in history:
        score = r.get("val_worst_group_acc", r["val_acc"])
        w.writerow([r["epoch"], f"{r['train_loss']:.6f}", f"{r['train_acc']:.6f}", f"{r['val_acc']:.6f}",
                    f"{score:.6f}"])
    return buf.getvalue()


def write_results(out_dir: Path, metrics: dict, per_seed: dict, curves: dict[str, list[dict]]) -> None:
    """``metrics.json``, ``per_seed.json``, ``table.md``, ``plots/group_acc/<method>.csv``,
    ``plots/curves/<method>_seed<k>.csv`` -- each written atomically."""
    out_dir = Path(out_dir)
    for name, history in curves.items():
        atomic_write_text(out_dir / "plots" / "curves" / f"{name}.csv", curves_csv(history))
    for method in metrics["methods"]:
        atomic_write_text(out_dir / "plots" / "group_acc" / f"{method}.csv", group_acc_csv(metrics, method))
    atomic_write_json(out_dir / "per_seed.json", per_seed)
    atomic_write_text(out_dir / "table.md", table_markdown(metrics))
    atomic_write_json(out_dir / "metrics.json", metrics)
