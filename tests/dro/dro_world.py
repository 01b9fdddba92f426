"""Small synthetic worlds for the dro tests (16 px, a strong shortcut)."""

from dro.data import write_prepared
from dro.data.synthetic import SyntheticWorldConfig
from dro.data.world_index import build_synthetic


def make_world(directory, correlation=0.98, sizes=None, image_size=16, seed=0):
    cfg = SyntheticWorldConfig(correlation=correlation, image_size=image_size, seed=seed,
                               split_sizes=sizes or {"train": 1000, "val": 200, "test": 400})
    info, records, pixels, _ = build_synthetic(cfg)
    write_prepared(directory, info, records, pixels=pixels)
    return directory
