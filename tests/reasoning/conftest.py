"""Fixtures shared by the reasoning tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# the counterfactual-test doubles (a rendered world as the generator, pixel-keyed classifiers) live with the
# verify tests; the reasoning stage tests use them too
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "verify"))


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> Path:
    """A tiny random CLIPModel + CLIPProcessor (the world's vocabulary), saved once per session."""
    from tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("clip") / "clip", image_size=16)
