"""Stage ``prepare``: materialise (synthetic) or verify (Waterbirds, CelebA, a folder dataset) the chosen dataset.

Writes the normalised index every later stage reads (``data/prepared/``) and the group statistics
as a DVC metric (``metrics/data.json``). For file-backed datasets every image is decoded once
(``dro.data.verify``; good files are remembered by size and time in ``outputs/cache/decoded/``), so a
corrupt file stops the pipeline here, by name, not an epoch into training.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from stages.common import METRICS_DIR, OUTPUTS_DIR, PREPARED_DIR, stage_main

log = logging.getLogger(__name__)

DECODED_CACHE = OUTPUTS_DIR / "cache" / "decoded"  # not a DVC output: survives DVC's deletion of data/prepared


def group_statistics(splits) -> dict:
    """Per split: size, group counts, where the attribute is known how often the image is bias-aligned,
    and where the dataset has evaluation cells finer than its groups, their number and smallest/largest."""
    import numpy as np

    stats = {}
    for name, ds in splits.items():
        info = ds.info
        known = ds.a >= 0
        entry = {"size": len(ds), "groups": ds.group_counts()}
        if known.any() and info.aligned_values is not None:
            aligned = np.array([a in info.aligned_values[y] for y, a in zip(ds.y[known], ds.a[known])])
            entry["aligned_fraction"] = round(float(aligned.mean()), 4)
        elif known.any() and len(info.attribute_values) == info.num_classes:
            entry["aligned_fraction"] = round(float(np.mean(ds.y[known] == ds.a[known])), 4)
        if info.cell_attributes:
            counts = np.bincount(ds.eval_cells[ds.eval_cells >= 0], minlength=info.num_cells)
            entry["cells"] = {"count": info.num_cells, "empty": int((counts == 0).sum()),
                              "min": int(counts.min()), "max": int(counts.max())}
        stats[name] = entry
    return stats


def check_decodable(root: Path, records, dataset: str) -> None:
    """Decode every image the index will name (the same paths ``open_prepared`` opens)."""
    from dro.data.verify import verify_images

    folder = Path(root).resolve()
    verify_images([folder / r.source for r in records], dataset, cache_file=DECODED_CACHE / f"{dataset}.json",
                  log=log.info)


@stage_main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", type=Path, default=PREPARED_DIR)
    parser.add_argument("--stats", type=Path, default=METRICS_DIR / "data.json")
    args = parser.parse_args()

    from stages.params import load_params

    params = load_params(args.params)

    from common.io import atomic_write_json
    from dro.data import open_prepared, write_prepared

    section = params.dataset_section
    if params.is_world and Path(params.model_set.clip).is_dir():
        # Fail now, not after training, if the committed world models cannot draw this world.
        from world.manifest import check_world_covered

        check_world_covered(params.world_root, section.image_size, shapes=section.classes,
                            colors=section.colors, backgrounds=section.backgrounds)
    if params.is_world and section.preset:
        cfg = section.world_config()
        log.info(f"synthetic.preset={section.preset}: classes {cfg.classes}, colors {cfg.colors}, "
                 f"backgrounds {cfg.backgrounds}, models.{section.models}")
    prepared = params.kind.load(section)  # the dataset's loader (dro.data.registry): checks its index first
    if prepared.decode:
        check_decodable(prepared.root, prepared.records, prepared.info.name)
    write_prepared(args.out, prepared.info, prepared.records, root=prepared.root, pixels=prepared.pixels)

    splits = open_prepared(args.out)
    stats = {"dataset": params.dataset, "splits": group_statistics(splits)}
    if params.is_world:
        stats["shortcuts"] = {c: (None if s is None else {"attribute": s.attribute, "value": s.value,
                                                          "correlation": s.correlation})
                              for c, s in section.world_config().shortcuts.items()}
    atomic_write_json(args.stats, stats)
    for name, s in stats["splits"].items():
        log.info(f"{name}: {s['size']} images, groups {s['groups']}")


if __name__ == "__main__":
    main()
