"""The counterfactual-test tests: plain numbers, a rendered world and tiny models; all offline and fast."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd(tmp_path_factory):
    """A tiny random Stable Diffusion (16 px, LCM scheduler), loaded through the project's loader."""
    from tiny_models import make_tiny_sd

    from dexter.loading import load_sd

    return load_sd(str(make_tiny_sd(tmp_path_factory.mktemp("sd") / "sd")), None)
