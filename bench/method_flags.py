"""Cost of the two DEXTER flags that change the method (both off by default), measured side by side.

    # seconds per batched step, dexter.backprop_steps null / 1 / 2, on the synthetic world's models
    python bench/method_flags.py backprop --models data/world --classifier outputs/erm
    # seconds per decode with gradient: SD v1's VAE decoder against an AutoencoderTiny (TAESD's architecture)
    python bench/method_flags.py decoder --resolution 128

Random weights for the decoders (cost does not depend on them). The settings alternate round by round, so
a machine shared with other jobs slows them alike; the median over rounds is reported. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _median_times(fns: dict, rounds: int, warmup: int = 1) -> dict[str, float]:
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def backprop(args) -> dict:
    """Median seconds of one batched ``dexter_step`` (every class x ``--runs`` runs) per backprop_steps."""
    from dataclasses import replace

    from common.classifier import load_classifier
    from dexter.classifiers import wrap_pipeline_classifier
    from dexter.config import DexterConfig
    from dexter.pipeline import load_dexter_models
    from dexter.step import dexter_step, new_run_state

    models_dir = Path(args.models)
    clf = wrap_pipeline_classifier(load_classifier(Path(args.classifier)))
    base = DexterConfig(steps=10**9, early_stop=0, safety_checker=False)
    models = load_dexter_models(clf, base, sd=str(models_dir / "sd"), bert=str(models_dir / "bert"),
                                device="cpu", dtype="fp32", cache_dir=Path(args.cache))
    names = clf.class_names

    def step_fn(k):
        cfg = replace(base, backprop_steps=k)

        def run():
            models.config = cfg
            states = [new_run_state(models, c, names[c], r) for c in range(len(names)) for r in range(args.runs)]
            for _ in range(args.steps):
                dexter_step(models, states)
        return run

    fns = {str(k): step_fn(k) for k in (None, 1, 2)}
    med = _median_times(fns, args.rounds)
    runs = len(names) * args.runs
    return {"what": "backprop_steps", "models": str(models_dir), "runs_per_step": runs,
            "inference_steps": base.inference_steps, "threads": torch.get_num_threads(),
            "seconds_per_step": {k: v / args.steps for k, v in med.items()},
            "seconds_per_step_per_run": {k: v / args.steps / runs for k, v in med.items()}}


def decoder(args) -> dict:
    """Median seconds of a decode with gradient to the latents (forward + backward), SD v1's VAE decoder
    against an AutoencoderTiny of TAESD's architecture (diffusers' defaults), and forward only."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    from dexter.sampler import decode_latents

    torch.manual_seed(0)
    full = AutoencoderKL(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         scaling_factor=0.18215).eval().requires_grad_(False)
    tiny = AutoencoderTiny().eval().requires_grad_(False)
    side = args.resolution // 8
    out: dict = {"what": "decoder", "resolution": args.resolution, "threads": torch.get_num_threads(),
                 "parameters_m": {"full_vae_decoder": sum(p.numel() for p in full.decoder.parameters()) / 1e6,
                                  "tiny_vae_decoder": sum(p.numel() for p in tiny.decoder.parameters()) / 1e6}}
    for batch in args.batch:
        latents = torch.randn(batch, 4, side, side)

        def with_grad(vae):
            def run():
                z = latents.clone().requires_grad_(True)
                decode_latents(vae, z).mean().backward()
            return run

        def forward(vae):
            def run():
                with torch.no_grad():
                    decode_latents(vae, latents)
            return run

        med = _median_times({"full_grad": with_grad(full), "tiny_grad": with_grad(tiny),
                             "full_forward": forward(full), "tiny_forward": forward(tiny)}, args.rounds)
        out[f"batch_{batch}"] = {k: round(v, 4) for k, v in med.items()}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    b = sub.add_parser("backprop")
    b.add_argument("--models", default="data/world", help="a folder with sd/ and bert/ (the world's models)")
    b.add_argument("--classifier", default="outputs/erm", help="a classifier folder (common.classifier)")
    b.add_argument("--cache", default="outputs/cache/dexter", help="where the BERT->CLIP map is cached")
    b.add_argument("--runs", type=int, default=4, help="runs per class in the batched step")
    b.add_argument("--steps", type=int, default=3, help="steps per timed round")
    b.add_argument("--rounds", type=int, default=3)
    d = sub.add_parser("decoder")
    d.add_argument("--resolution", type=int, default=128)
    d.add_argument("--batch", type=int, nargs="+", default=[1, 4])
    d.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result = backprop(args) if args.what == "backprop" else decoder(args)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
