"""Command line: ``python -m world train --out data/world`` and ``python -m world gates``."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import fields
from pathlib import Path


def _bool(text: str) -> bool:
    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return text.lower() in ("true", "1", "yes")


def main(argv: list[str] | None = None) -> int:
    from world.settings import WorldTrainSettings

    parser = argparse.ArgumentParser(prog="python -m world", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train the world models (resumable)")
    train.add_argument("--out", type=Path, default=Path("data/world"))
    train.add_argument("--work", type=Path, default=Path("outputs/world-train"),
                       help="checkpoints and intermediate state")
    train.add_argument("--phases", default="vae,clip,clip_tune,bert,sd",
                       help="comma-separated subset of vae,clip,clip_tune,bert,sd")
    for f in fields(WorldTrainSettings):
        kind = _bool if isinstance(f.default, bool) else type(f.default)
        train.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None)
    gates = sub.add_parser("gates", help="measure the quality gates of trained world models")
    gates.add_argument("--models", type=Path, default=Path("data/world"))
    gates.add_argument("--samples", type=int, default=1200)
    gates.add_argument("--seed", type=int, default=0)
    gates.add_argument("--metrics", type=Path, default=None, help="also write the metrics JSON here")
    gates.add_argument("--threads", type=int, default=2)
    gates.add_argument("--record", action="store_true", help="store the results in the manifest (world.json)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)

    if args.command == "train":
        from world.train import settings_with, train_world

        settings = settings_with(
            WorldTrainSettings(), **{f.name: getattr(args, f.name) for f in fields(WorldTrainSettings)}
        )
        t0 = time.time()
        timings = train_world(args.out, args.work, settings, tuple(p for p in args.phases.split(",") if p))
        logging.info("trained %s in %.0fs", timings, time.time() - t0)
        return 0
    from world.gates import run_gates

    result = run_gates(args.models, n=args.samples, seed=args.seed, metrics_path=args.metrics,
                       threads=args.threads, record=args.record)
    print(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
