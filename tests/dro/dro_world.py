"""Small synthetic worlds for the dro tests (16 px, the 2x2 world with a strong background shortcut)."""

from dro.data import write_prepared
from dro.data.world_index import build_synthetic
from world.synthetic import SyntheticWorldConfig


def make_world(directory, correlation=0.98, sizes=None, image_size=16, seed=0):
    shortcuts = {c: {"attribute": "background", "value": v, "correlation": correlation}
                 for c, v in (("circle", "water"), ("square", "land"))}
    cfg = SyntheticWorldConfig.from_preset("small", shortcuts=shortcuts, image_size=image_size, seed=seed,
                                           split_sizes=sizes or {"train": 1000, "val": 200, "test": 400})
    info, records, pixels, _ = build_synthetic(cfg)
    write_prepared(directory, info, records, pixels=pixels)
    return directory
