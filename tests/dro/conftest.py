"""Fixtures of the dro tests: a small synthetic world with a strong shortcut."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dro_world import make_world  # noqa: E402

from dro.data import open_prepared  # noqa: E402


@pytest.fixture(scope="session")
def small_world_dir(tmp_path_factory):
    return make_world(tmp_path_factory.mktemp("world") / "prepared")


@pytest.fixture(scope="session")
def small_world(small_world_dir):
    return open_prepared(small_world_dir)
