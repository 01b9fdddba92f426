"""Check a finished synthetic-world run against the numbers the embedded default promises.

Not a DVC stage: CI runs it after ``dvc repro``, and a user can run it after any synthetic experiment
(``python -m stages.acceptance``). It only reads outputs. The promises depend on the world:

- with a shortcut (train correlation clearly above chance): ERM's worst group <= 0.60, GroupDRO with true
  groups >= 0.85, DEXTER + DRO >= oracle - 0.05 and >= ERM + 0.20, every class's keywords name its shortcut
  value, and the bias-conflicting slice is labelled with F1 >= 0.8 per class;
- without one: DEXTER + DRO must not fall more than 0.05 below ERM;
- always: world CLIP zero-shot accuracy >= 0.95 and generator faithfulness >= 0.9.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from stages.common import METRICS_DIR, RESULTS_DIR

SHORTCUT_MARGIN = 0.1  # correlation above chance by this much counts as a planted shortcut


@dataclass(frozen=True)
class Check:
    name: str
    value: float | str
    target: str
    ok: bool


def _at_least(name: str, value: float, bound: float) -> Check:
    return Check(name, round(value, 4), f">= {bound:.3f}", value >= bound)


def _at_most(name: str, value: float, bound: float) -> Check:
    return Check(name, round(value, 4), f"<= {bound:.3f}", value <= bound)


def acceptance_checks(params, world: dict, labelling: dict, results: dict, keywords: dict) -> list[Check]:
    from dro.data.synthetic import SyntheticWorldConfig

    s = params.synthetic
    cfg = SyntheticWorldConfig(num_classes=s.num_classes, spurious=s.spurious, correlation=s.correlation)
    methods = results["methods"]
    erm = methods["erm"]["worst_group_acc"]
    oracle = methods["groupdro_oracle"]["worst_group_acc"]
    dexter = methods["dro_dexter"]["worst_group_acc"]

    checks = [
        _at_least("world CLIP zero-shot accuracy (min over attributes)", world["clip_accuracy_min"], 0.95),
        _at_least("world generator faithfulness", world["faithfulness"], 0.90),
    ]
    if s.correlation > 1 / s.num_classes + SHORTCUT_MARGIN:
        checks += [
            _at_most("ERM worst-group accuracy", erm, 0.60),
            _at_least("GroupDRO (true groups) worst-group accuracy", oracle, 0.85),
            _at_least("DEXTER + DRO worst-group accuracy vs oracle - 0.05", dexter, oracle - 0.05),
            _at_least("DEXTER + DRO worst-group accuracy vs ERM + 0.20", dexter, erm + 0.20),
        ]
        for c, name in enumerate(cfg.shapes):
            shortcut = cfg.spurious_values[c]
            found = keywords.get(name, [])
            checks.append(Check(f"keywords of {name} name its shortcut {shortcut!r}", " ".join(found) or "-",
                                f"contains {shortcut}", shortcut in found))
            f1 = labelling["train"]["per_class"][name]["f1_conflicting"]
            checks.append(_at_least(f"labelling F1 of {name}'s bias-conflicting slice (train)", f1 or 0.0, 0.8))
    else:
        checks.append(_at_least("DEXTER + DRO worst-group accuracy vs ERM - 0.05 (no shortcut)", dexter, erm - 0.05))
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)

    from stages.params import load_params

    params = load_params(args.params)
    if params.dataset != "synthetic":
        print(f"acceptance numbers are defined for the synthetic world, not {params.dataset}: nothing to check")
        return 0
    read = lambda p: json.loads(Path(p).read_text())  # noqa: E731
    checks = acceptance_checks(
        params,
        world=read(METRICS_DIR / "world.json"),
        labelling=read(METRICS_DIR / "labelling.json"),
        results=read(RESULTS_DIR / "metrics.json"),
        keywords=read(RESULTS_DIR / "keywords.json"),
    )
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.name:<{width}}  {c.value!s:>10}  ({c.target})")
    failed = [c for c in checks if not c.ok]
    print(f"acceptance: {len(checks) - len(failed)} of {len(checks)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
