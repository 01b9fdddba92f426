"""Small synthetic worlds for the dro tests (16 px, a strong shortcut)."""

import pytest

from dro.data import open_prepared, write_prepared
from dro.data.synthetic import SyntheticWorldConfig
from dro.data.world_index import build_synthetic


def make_world(directory, correlation=0.98, sizes=None, image_size=16, seed=0):
    cfg = SyntheticWorldConfig(correlation=correlation, image_size=image_size, seed=seed,
                               split_sizes=sizes or {"train": 1000, "val": 200, "test": 400})
    info, records, pixels, _ = build_synthetic(cfg)
    write_prepared(directory, info, records, pixels=pixels)
    return directory


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "prepared")


@pytest.fixture(scope="session")
def small_world(small_world_dir):
    return open_prepared(small_world_dir)
