"""Stage ``world_gates``: the world models' quality gates as a DVC metric (``metrics/world.json``).

World-CLIP zero-shot accuracy on held-out world images (shape, colour, background) and generator
faithfulness in DEXTER's sampling setting (LCM, 4 steps, guidance 1). Also checks, before anything
else, that the committed models cover the world params.yaml asks for, so a mismatch fails loudly.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stages.common import METRICS_DIR, stage_main

log = logging.getLogger(__name__)


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--metrics", type=Path, default=METRICS_DIR / "world.json")
    args = parser.parse_args()

    from stages.params import load_params

    params = load_params(args.params)
    if not params.is_world:
        from common.io import atomic_write_json

        atomic_write_json(args.metrics, {"skipped": f"dataset is {params.dataset}: the world models are not used"})
        log.info(f"world gates skipped: dataset is {params.dataset}")
        return
    section = params.synthetic
    models = params.models[section.models]

    from world.gates import run_gates
    from world.manifest import check_world_covered

    check_world_covered(params.world_root, section.image_size, shapes=section.classes, colors=section.colors,
                        backgrounds=section.backgrounds)
    run_gates(
        params.world_root,
        n=params.world.gate_samples,
        seed=params.world.gate_seed,
        metrics_path=args.metrics,
        clip_dir=models.clip,
        sd_dir=models.stable_diffusion,
        threads=None,  # torch's default, which honours OMP_NUM_THREADS (2 forced threads on a busy core: 10x slower)
    )


if __name__ == "__main__":
    main()
