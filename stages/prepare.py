"""Stage ``prepare``: materialise (synthetic) or verify (Waterbirds, CelebA) the chosen dataset.

Writes the normalised index every later stage reads (``data/prepared/``) and the group statistics
as a DVC metric (``metrics/data.json``). For Waterbirds and CelebA every image is decoded once
(``dro.data.verify``; good files are remembered by size and time in ``outputs/cache/decoded/``), so a
corrupt file stops the pipeline here, by name, not an epoch into training.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stages.common import METRICS_DIR, OUTPUTS_DIR, PREPARED_DIR, StageInputError, stage_main

DECODED_CACHE = OUTPUTS_DIR / "cache" / "decoded"  # not a DVC output: survives DVC's deletion of data/prepared


def group_statistics(splits) -> dict:
    """Per split: size, group counts and, where the attribute is known, how often it agrees with the class."""
    import numpy as np

    stats = {}
    for name, ds in splits.items():
        known = ds.a >= 0
        entry = {"size": len(ds), "groups": ds.group_counts()}
        if known.any() and len(ds.info.attribute_values) == ds.info.num_classes:
            entry["aligned_fraction"] = round(float(np.mean(ds.y[known] == ds.a[known])), 4)
        stats[name] = entry
    return stats


def check_decodable(root: Path, records, dataset: str) -> None:
    """Decode every image the index will name (the same paths ``open_prepared`` opens)."""
    from dro.data.verify import verify_images

    folder = Path(root).resolve()
    verify_images([folder / r.source for r in records], dataset, cache_file=DECODED_CACHE / f"{dataset}.json",
                  log=lambda msg: print(msg, flush=True))


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=PREPARED_DIR)
    parser.add_argument("--stats", type=Path, default=METRICS_DIR / "data.json")
    args = parser.parse_args()

    from stages.params import load_params

    params = load_params(args.params)

    from dro.data import open_prepared, write_prepared
    from dro.io import atomic_write_json

    section = params.dataset_section
    if params.dataset == "synthetic" and section.models == "world":
        # Fail now, not after training, if the committed world models cannot draw this world.
        from dexter.world.manifest import WorldNotCoveredError, check_world_covered

        try:
            check_world_covered(params.world.root, section.num_classes, section.image_size)
        except WorldNotCoveredError as e:
            raise StageInputError(str(e)) from None
    if params.dataset == "synthetic":
        from dro.data.synthetic import SyntheticWorldConfig
        from dro.data.world_index import build_synthetic

        cfg = SyntheticWorldConfig(
            num_classes=section.num_classes,
            spurious=section.spurious,
            correlation=section.correlation,
            image_size=section.image_size,
            split_sizes={"train": section.train_size, "val": section.val_size, "test": section.test_size},
            seed=section.seed,
        )
        info, records, pixels, _ = build_synthetic(cfg)
        write_prepared(args.out, info, records, pixels=pixels)
    elif params.dataset == "waterbirds":
        from dro.data.download import ensure_waterbirds
        from dro.data.waterbirds import load_waterbirds

        root = ensure_waterbirds(Path(section.root), download=section.download)
        info, records = load_waterbirds(root)
        check_decodable(root, records, info.name)
        write_prepared(args.out, info, records, root=root)
    else:
        from dro.data.celeba import load_celeba
        from dro.data.download import ensure_celeba

        root = ensure_celeba(Path(section.root), download=section.download)
        info, records = load_celeba(root, target=section.target, spurious=section.spurious)
        check_decodable(root, records, info.name)
        write_prepared(args.out, info, records, root=root)

    splits = open_prepared(args.out)
    stats = {"dataset": params.dataset, "splits": group_statistics(splits)}
    atomic_write_json(args.stats, stats)
    for name, s in stats["splits"].items():
        print(f"{name}: {s['size']} images, groups {s['groups']}")


if __name__ == "__main__":
    main()
