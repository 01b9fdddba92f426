"""The audit on the world's own generator and a classifier trained with NO shortcut: no class is biased.

The classifier (``assets/no_shortcut_erm``, README there) learnt the shapes from data where colour and
background are independent of the class. Every attribute value of every class is tested (not only the
keywords DEXTER would find), with the settings of ``params.yaml``. About 40 s per generator setting on 2 cores.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLASSIFIER = Path(__file__).parent / "assets" / "no_shortcut_erm"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not (REPO / "data" / "world4" / "world.json").exists(),
                                                   reason="world models not trained yet")]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def audit(raw: dict, **dexter_overrides):
    """(prober, every class's verdicts, the params' verify settings) on the repository's params, with the
    world's DEXTER settings overridden."""
    from dexter.reasoning.world import verify_every_value
    from stages.params import parse_params
    from stages.reason import build_prober, verify_settings

    edited = copy.deepcopy(raw)
    edited["synthetic"]["dexter"] = {**(edited["synthetic"]["dexter"] or {}), **dexter_overrides}
    params = parse_params(edited)
    assert params.dataset == "synthetic" and params.synthetic.preset is None  # the rich world
    prober = build_prober(params, CLASSIFIER)
    cfg, settings = params.synthetic.world_config(), verify_settings(params)
    return prober, cfg, settings, verify_every_value(prober, cfg, settings)


def test_a_classifier_without_shortcuts_is_reported_unbiased(raw):
    from dataclasses import replace

    from dexter.reasoning.world import verify_every_value

    prober, cfg, settings, verdicts = audit(raw)
    assert {name: v.verified for name, v in verdicts.items()} == {name: [] for name in cfg.shapes}
    assert all(v.verdict == "no_evidence" for v in verdicts.values())
    # what the flip-context rule removes: yellow squares, triangles and crosses on sand are called circles, no
    # other colour on sand is; counted from one colour, circle "needs" sand (the same images, no regeneration)
    generated = prober.images_generated
    one_context = verify_every_value(prober, cfg, replace(settings, min_flip_contexts=1))
    assert prober.images_generated == generated
    assert "sand" in one_context["circle"].verified


def test_without_the_sensor_noise_the_generators_clean_images_read_as_shortcuts(raw):
    """The world's VAE decodes the renderer's per-pixel noise away. On those clean images this classifier
    recognises triangles on water far more often than on sand, although it recognises real triangles on every
    background: an audit without ``pixel_noise`` reports that as triangle's shortcut."""
    _, _, _, verdicts = audit(raw, pixel_noise=0.0)
    assert "water" in verdicts["triangle"].verified
