"""With the trained world CLIP (data/world/clip, skipped until `dexter-world train` has run): the offline
backend recovers the shortcut from rendered world images, with no world fact written in the code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reasoning_fakes import write_class_dir

from dexter.reasoning import make_backend, reason_about_class
from world.synthetic import SyntheticWorldConfig, WorldSample, render

WORLD_CLIP = Path(__file__).resolve().parents[2] / "data" / "world" / "clip"


@pytest.mark.slow
@pytest.mark.skipif(not (WORLD_CLIP / "config.json").is_file(), reason="world models not trained yet")
def test_world_clip_offline_backend_finds_the_background_shortcut(tmp_path):
    from dexter.reasoning.world import synthetic_phrase_bank
    from stages.params import parse_params

    cfg = SyntheticWorldConfig.first(2)
    rng = np.random.default_rng(0)
    # "circle" frames as a biased classifier would accept them: 22 of 24 on water, colours at random
    samples = [WorldSample(0, int(rng.integers(2)), 0 if i < 22 else 1, int(rng.integers(2**31))) for i in range(24)]
    frames = [render(cfg, s) for s in samples]
    class_dir = write_class_dir(tmp_path / "dexter", 0, "circle", [], [frames])
    p = parse_params({"models": {"world": {"stable_diffusion": "s", "bert": "b", "clip": str(WORLD_CLIP)}},
                      "synthetic": {"preset": "small"}})
    backend = make_backend("offline", clip=str(WORLD_CLIP), phrases=synthetic_phrase_bank(p.synthetic.world_config()))
    result = reason_about_class(class_dir, tmp_path / "out", backend)
    backend.close()
    assert result.attributes.attributes[0] == "water"
    assert "circle" not in result.attributes.attributes
    assert "Likely biased" in result.report
