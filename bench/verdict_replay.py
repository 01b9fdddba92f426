"""The counterfactual verdicts of a synthetic-world classifier, for EVERY attribute value, replayable.

The reason stage tests DEXTER's keywords only. To judge a verdict rule on a classifier, this script answers
every prompt of the world once (the classifier's label and the judge's CLIP embedding of each image, as the
stage's prober makes them) and then replays ``verify_class`` over all colours and backgrounds of every class,
with the settings of ``reasoning.verify`` or overrides. Dumping takes ~10 s for the rich world on 2 cores;
a replay takes a second, so rules can be compared on the same images.

    # in a pipeline workspace whose outputs/erm holds the audited classifier
    python bench/verdict_replay.py dump --out /tmp/outcomes.npz
    python bench/verdict_replay.py replay /tmp/outcomes.npz                       # the params' rules
    python bench/verdict_replay.py replay /tmp/outcomes.npz --set visibility_control=false min_flip_classes=1

Prints one line per class: the verified values and, per value, "flip/drop" effects (``*`` = the test passed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def dump(args) -> None:
    from dexter.reasoning.world import synthetic_phrase_bank
    from stages.params import load_params
    from stages.reason import build_prober

    params = load_params(args.params)
    if params.dataset != "synthetic":
        raise SystemExit("error: verdict_replay needs the synthetic world (dataset: synthetic)")
    prompts = synthetic_phrase_bank(params.synthetic.world_config())
    out = build_prober(params, Path(args.classifier)).outcomes(prompts, args.n)
    arrays = {"prompts": np.array(prompts), "labels": np.stack([out[p].labels for p in prompts]),
              "probs": np.stack([out[p].probs for p in prompts])}
    if all(out[p].embeddings is not None for p in prompts):
        arrays["embeddings"] = np.stack([out[p].embeddings for p in prompts])
    np.savez_compressed(args.out, **arrays)
    print(f"{len(prompts)} prompts x {args.n} images -> {args.out}")


class _Replay:
    """A prober that answers from a dump (the images are never regenerated)."""

    def __init__(self, path: Path, judge) -> None:
        from dexter.verify import PromptOutcomes

        data = np.load(path)
        labels, probs = data["labels"], data["probs"]
        emb = data["embeddings"] if "embeddings" in data else None
        self.outcomes_by_prompt = {str(p): PromptOutcomes(labels[i], probs[i], None if emb is None else emb[i])
                                   for i, p in enumerate(data["prompts"])}
        self.judge = judge if emb is not None else None
        self.images_generated, self.seconds = 0, 0.0

    def outcomes(self, prompts, n):
        return {p: self.outcomes_by_prompt[p] for p in prompts}


def _value(text: str):
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(text)
    except ValueError:
        return float(text)


def replay(args) -> None:
    from dataclasses import fields, replace

    from dexter.reasoning.audit import VerifySettings
    from dexter.reasoning.world import verify_every_value
    from stages.params import load_params
    from stages.reason import build_judge, verify_settings

    params = load_params(args.params)
    cfg = params.synthetic.world_config()
    settings = verify_settings(params)
    overrides = dict(item.split("=", 1) for item in args.set)
    unknown = set(overrides) - {f.name for f in fields(VerifySettings)}
    if unknown:
        raise SystemExit(f"error: --set names no reasoning.verify setting: {sorted(unknown)}")
    settings = replace(settings, **{k: _value(v) for k, v in overrides.items()})
    prober = _Replay(args.outcomes, build_judge(params) if params.reasoning.verify.judge else None)
    for name, v in verify_every_value(prober, cfg, settings).items():
        cells = []
        for w in v.tested:
            e = v.effects_of(w)
            cells.append(f"{w} {e['flip'].effect:+.2f}{'*' if e['flip'].passed else ''}"
                         f"/{e['drop'].effect:+.2f}{'*' if e['drop'].passed else ''}")
        print(f"{name:10s} verified {v.verified}  |  " + "  ".join(cells))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump", help="answer every world prompt once and save the answers")
    d.add_argument("--params", default="params.yaml")
    d.add_argument("--classifier", default="outputs/erm")
    d.add_argument("--n", type=int, default=32, help="images per prompt (the stage's reasoning.verify.n_images)")
    d.add_argument("--out", required=True)
    r = sub.add_parser("replay", help="verdicts for every attribute value from a dump")
    r.add_argument("outcomes", type=Path)
    r.add_argument("--params", default="params.yaml")
    r.add_argument("--set", nargs="*", default=[], help="reasoning.verify overrides, e.g. min_flip_classes=1")
    args = parser.parse_args(argv)
    dump(args) if args.command == "dump" else replay(args)


if __name__ == "__main__":
    main()
