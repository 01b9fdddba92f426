"""Fixtures for the dataset tests; the on-disk format writers live in ``datafixtures``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from datafixtures import write_waterbirds


@pytest.fixture
def waterbirds_parent(tmp_path: Path) -> Path:
    write_waterbirds(tmp_path / "waterbirds")
    return tmp_path / "waterbirds"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Make any attempt to open a URL fail the test loudly; returns a counter of attempts."""
    import urllib.request

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"a test tried to use the network: {args!r}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    import torchvision.datasets.utils as tv_utils

    monkeypatch.setattr(tv_utils, "download_url", refuse)
    monkeypatch.setattr(tv_utils, "download_file_from_google_drive", refuse)
    return lambda: len(calls)
